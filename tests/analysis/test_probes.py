"""Cheap reliance probes (singledir.analysis.probes): a probe is exactly a point or subsample of the
full cumulative ablation curve, costs are counted, and the selection/stopping rules."""

import numpy as np
import pandas as pd
import pytest
import torch

from singledir.analysis import probes
from singledir.analysis.auc import normalized_auc
from singledir.engine.ablation import cumulative_ablation_curve
from singledir.models.nets import MLP
from singledir.stats.model_selection import probe_selection_table


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = MLP(12, [10, 10], 4).eval()
    x = torch.randn(200, 12)
    y = model(x).argmax(1)
    y[::5] = (y[::5] + 1) % 4  # not every prediction right: the curve is not flat at 1
    return model, x, y


def test_one_point_probe_equals_full_curve_at_that_fraction(net):
    model, x, y = net
    full = cumulative_ablation_curve(model, x, y, ["relu1", "relu2"], n_orderings=5, n_points=21, seed=3)
    for f in (0.25, 0.5, 0.75):
        k = int(round(f * 20))
        tab, total = probes.ablation_points(model, x, y, ["relu1", "relu2"], [k], 5, seed=3)
        assert total == 20
        ref = full[full["n_ablated"] == k].sort_values("ordering")
        np.testing.assert_array_equal(tab["accuracy"].to_numpy(), ref["accuracy"].to_numpy())
        np.testing.assert_allclose(tab["loss"].to_numpy(), ref["loss"].to_numpy(), rtol=1e-6)


def test_probe_values_and_costs(net):
    model, x, y = net
    tab, curve = probes.measure_probes(model, x, y, ["relu1", "relu2"], [0.25, 0.5], [0.0, 0.5, 1.0],
                                       n_orderings=4, n_points=11, seed=1)
    t = tab.set_index("probe")
    assert list(t.index) == ["point@0.25", "point@0.5", "sparse_auc", "full_auc"]
    # forward passes: orderings x nonzero points + one unablated pass
    assert t.loc["point@0.5", "cost_passes"] == 4 * 1 + 1
    assert t.loc["sparse_auc", "cost_passes"] == 4 * 2 + 1
    assert t.loc["full_auc", "cost_passes"] == 4 * 10 + 1
    assert t.loc["full_auc", "cost_examples"] == 41 * 200
    assert t.loc["point@0.5", "cost_passes"] / t.loc["full_auc", "cost_passes"] < 0.15
    # values are the full curve's: the point probe its mean at 10 units, the AUCs over the points
    assert t.loc["point@0.5", "value"] == pytest.approx(curve[curve["n_ablated"] == 10]["accuracy"].mean())
    aucs = [normalized_auc(c["fraction"].to_numpy(), c["accuracy"].to_numpy()) for _, c in curve.groupby("ordering")]
    assert t.loc["full_auc", "value"] == pytest.approx(np.mean(aucs))
    sp = curve[curve["n_ablated"].isin([0, 10, 20])]
    sparse = [normalized_auc(c["fraction"].to_numpy(), c["accuracy"].to_numpy()) for _, c in sp.groupby("ordering")]
    assert t.loc["sparse_auc", "value"] == pytest.approx(np.mean(sparse))


def test_patience_stop():
    e = [1, 2, 3, 4, 5, 6, 7]
    v = [0.1, 0.5, 0.4, 0.6, 0.3, 0.2, 0.9]
    assert probes.patience_stop(e, v, 2, higher_is_better=True) == 4  # 0.6 at 4, then two worse: stop
    assert probes.patience_stop(e, v, 3, higher_is_better=True) == 7
    assert probes.patience_stop(e, [3, 2, 1, 2, 3, 4, 5], 2, higher_is_better=False) == 3


def test_stop_epochs_reads_the_report_half_at_each_chosen_epoch():
    rows = []
    for ep, (pv, val, rep) in enumerate([(0.5, 1.0, 1.1), (0.7, 0.8, 0.9), (0.6, 0.6, 0.7), (0.4, 0.7, 0.8),
                                         (0.3, 0.9, 0.95)], start=1):
        rows.append({"model": "a", "epoch": ep, "probe": "point@0.5", "value": pv, "val_loss": val,
                     "report_loss": rep, "report_accuracy": 1 - rep / 2})
    s = probes.stop_epochs(pd.DataFrame(rows), ["point@0.5"], patience=2).set_index("rule")
    assert s.loc["point@0.5", "epoch"] == 2 and s.loc["point@0.5", "test_loss"] == pytest.approx(0.9)
    assert s.loc["val_loss", "epoch"] == 3 and s.loc["oracle", "epoch"] == 3
    assert s.loc["val_loss", "test_accuracy"] == pytest.approx(0.65)


def test_probe_selection_table_perfect_and_reversed_probe():
    n = 8
    acc = np.linspace(0.5, 0.9, n)
    rows = []
    for i in range(n):
        for p, v, cost in (("point@0.5", acc[i], 11), ("full_auc", acc[i] ** 2, 201), ("bad", -acc[i], 11)):
            rows.append({"model": f"m{i}", "probe": p, "value": v, "cost_passes": cost, "test_accuracy": acc[i]})
    table, stats = probe_selection_table(pd.DataFrame(rows), ["point@0.5", "bad", "full_auc"], n_boot=200, seed=0,
                                         subset_size=4, n_subsets=200, top=[1], n_perm=100)
    t = table.set_index("probe")
    assert t.loc["point@0.5", "spearman_r"] == pytest.approx(1.0)
    assert t.loc["point@0.5", "top1_percent"] == 100.0 and t.loc["point@0.5", "top1_chance_percent"] == 25.0
    assert t.loc["point@0.5", "top1_null_p"] < 0.05
    assert t.loc["bad", "spearman_r"] == pytest.approx(-1.0) and t.loc["bad", "top1_percent"] == 0.0
    assert t.loc["point@0.5", "r_ratio_to_full"] == pytest.approx(1.0)
    assert t.loc["point@0.5", "cost_fraction_of_full"] == pytest.approx(11 / 201)
    names = {s["statistic"] for s in stats}
    assert {"spearman_point@0.5_vs_test_accuracy", "r_ratio_point@0.5_to_full", "selection_top1_percent_bad",
            "cost_fraction_full_auc_of_full"} <= names


# ---------------------------------------------------------------- claims of our own (singledir.stats.beyond_claims)

def _stats(res, rows, family="mnist"):
    cols = ["figure", "statistic", "value", "ci_low", "ci_high", "n", "unit", "p", "p_min", "chance"]
    path = res / "stats" / f"{family}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)


def _with_converged_arms(rows):
    """The X4 rows plus the figure's per-arm convergence counts (none unconverged), which the
    claims read (singledir.stats.claims.converged): one `networks_unconverged_<arm>_<labels>`
    row per arm a difference names."""
    import re
    nan = float("nan")
    arms = []
    for r in rows:
        m = re.fullmatch(r"\w+?_diff_(.+)_minus_(.+)_(clean|corrupted)", r[1]) if r[0] == "figX4" else None
        if m:
            arms += [f"{m.group(1)}_{m.group(3)}", f"{m.group(2)}_{m.group(3)}"]
    return rows + [("figX4", f"networks_unconverged_{a}", 0, nan, nan, 4, "networks", nan, nan, nan)
                   for a in dict.fromkeys(arms)]


def test_new_claims_verdicts_and_readme_section(tmp_path):
    from singledir.stats import beyond_claims as B, claims as C
    nan = float("nan")
    res = tmp_path / "results"
    _stats(res, _with_converged_arms([
        ("figX1", "headline_fraction", 0.5, nan, nan, 12, "networks", nan, nan, nan),
        ("figX1", "r_ratio_point@0.5_to_full", 0.97, 0.92, 1.05, 12, "networks", nan, nan, nan),
        ("figX1", "cost_fraction_point@0.5_of_full", 0.05, nan, nan, 12, "", nan, nan, nan),
        ("figX1", "spearman_full_auc_vs_test_accuracy", 0.8, 0.5, 0.95, 12, "networks", 0.001, 1e-4, nan),
        ("figX1", "spearman_point@0.5_vs_test_accuracy", 0.78, 0.45, 0.9, 12, "networks", 0.002, 1e-4, nan),
        ("figX1", "selection_top1_percent_point@0.5", 60.0, nan, nan, 12, "networks", 0.01, 0.001, 16.7),
        ("figX1", "networks_failed_excluded", 0, nan, nan, 12, "networks", nan, nan, nan),  # none failed
        ("figX4", "auc_plain_clean", 0.6, 0.55, 0.65, 4, "networks", nan, nan, nan),
        ("figX4", "auc_diff_ablation_noise_0.25_minus_plain_clean", 0.01, -0.01, 0.03, 8, "networks", 0.5, 0.03, nan),
        ("figX4", "auc_diff_ablation_noise_0.75_minus_plain_clean", 0.2, 0.15, 0.25, 8, "networks", 0.03, 0.029, nan),
        ("figX4", "selectivity_diff_selectivity_-10_minus_plain_clean", -0.3, -0.4, -0.2, 8, "networks", 0.03, 0.029,
         nan),
        ("figX4", "selectivity_diff_selectivity_1_minus_plain_clean", 0.1, 0.0, 0.2, 8, "networks", 0.2, 0.029, nan),
    ]))
    table = C.evaluate_claims(C.Sources.from_results(res), B.ALL_CLAIMS).set_index("claim_id")
    keep = table.loc["X1_onepoint_keeps_rank_r_mnist"]
    assert keep["paper_value"] == "new" and keep["verdict"] == "reproduced" and keep["our_value"] == 0.97
    # the strongest strength is judged: q_max 0.75, alpha -10
    noise = table.loc["X4_ablation_noise_raises_auc_mnist"]
    assert noise["verdict"] == "reproduced" and "strength 0.75" in noise["note"]
    assert table.loc["X4_negative_alpha_lowers_selectivity_mnist", "our_value"] == -0.3
    assert table.loc["X1_onepoint_selection_beats_chance_mnist", "verdict"] == "reproduced"
    assert table.loc["X1_onepoint_selection_beats_chance_mnist", "our_value"] == pytest.approx(60 - 16.7)
    assert table.loc["X4_reliance_raises_auc_mnist", "verdict"] == "not run"
    # one X4 row per family; CIFAR-10's figure is off here: its rows are not run
    x4 = table[table["figure"] == "X4"]
    assert set(x4["family"]) == {"mnist", "cifar10"}
    assert set(x4.loc[x4["family"] == "cifar10", "verdict"]) == {"not run"}
    assert {i.replace("_mnist", "_cifar10") for i in x4.index if i.endswith("_mnist")} < set(x4.index)
    assert table.loc["X2_onepoint_stop_vs_val_stop_mnist", "verdict"] == "not run"
    # a probe costing more than 10 % of the full AUC cannot support the claim
    _stats(res, [("figX1", "headline_fraction", 0.5, nan, nan, 12, "networks", nan, nan, nan),
                 ("figX1", "r_ratio_point@0.5_to_full", 0.97, 0.92, 1.05, 12, "networks", nan, nan, nan),
                 ("figX1", "cost_fraction_point@0.5_of_full", 0.2, nan, nan, 12, "", nan, nan, nan),
                 ("figX1", "spearman_full_auc_vs_test_accuracy", 0.8, 0.5, 0.95, 12, "networks", 0.001, 1e-4, nan),
                 ("figX1", "spearman_point@0.5_vs_test_accuracy", 0.78, 0.45, 0.9, 12, "networks", 0.002, 1e-4, nan),
                 ("figX1", "selection_top1_percent_point@0.5", 60.0, nan, nan, 12, "networks", 0.01, 0.001, 16.7),
                 ("figX1", "networks_failed_excluded", 0, nan, nan, 12, "networks", nan, nan, nan)])
    t2 = C.evaluate_claims(C.Sources.from_results(res), B.ALL_CLAIMS)
    row = t2.set_index("claim_id").loc["X1_onepoint_keeps_rank_r_mnist"]
    assert row["verdict"] == "inconclusive" and "more than 0.1" in row["reason"]
    md = B.readme_section(t2, "demo")
    assert md.startswith(B.BEGIN) and md.endswith(B.END)
    assert "### E1, model selection (Fig. X1)" in md and "| MNIST | A one-point probe keeps" in md
    readme = B.update_readme("# x\n\n## Beyond the paper\n\nintro\n", md)
    assert readme.count(B.BEGIN) == 1 and B.update_readme(readme, md) == readme


def test_cifar10_regularizer_claims_compare_with_plain_and_batch_norm(tmp_path):
    from singledir.stats import beyond_claims as B, claims as C
    nan = float("nan")
    res = tmp_path / "results"
    _stats(res, _with_converged_arms([
        ("figX4", "auc_plain_clean", 0.5, 0.45, 0.55, 4, "networks", nan, nan, nan),
        ("figX4", "auc_diff_batch_norm_minus_plain_clean", 0.2, 0.15, 0.25, 8, "networks", 0.03, 0.029, nan),
        ("figX4", "auc_diff_ablation_noise_0.5_minus_plain_clean", 0.25, 0.2, 0.3, 8, "networks", 0.03, 0.029, nan),
        ("figX4", "auc_diff_ablation_noise_0.5_minus_batch_norm_clean", 0.05, -0.01, 0.1, 8, "networks", 0.3,
         0.029, nan),
        ("figX4", "auc_diff_reliance_0.5_minus_batch_norm_clean", -0.1, -0.15, -0.05, 8, "networks", 0.03, 0.029,
         nan),
    ]), family="cifar10")
    table = C.evaluate_claims(C.Sources.from_results(res), B.ALL_CLAIMS).set_index("claim_id")
    assert table.loc["X4_batch_norm_raises_auc_cifar10", "verdict"] == "reproduced"
    assert table.loc["X4_ablation_noise_raises_auc_cifar10", "verdict"] == "reproduced"
    # non-inferiority to batch norm within 0.02 AUC, judged by the CI over seeds
    noise = table.loc["X4_ablation_noise_auc_vs_batch_norm_cifar10"]
    assert noise["verdict"] == "reproduced" and noise["our_value"] == 0.05 and "strength 0.5" in noise["note"]
    assert table.loc["X4_reliance_auc_vs_batch_norm_cifar10", "verdict"] == "not reproduced"
    # MNIST did not run: its rows are not run, and it has no batch-norm rows
    assert table.loc["X4_ablation_noise_raises_auc_mnist", "verdict"] == "not run"
    assert not any(i.startswith("X4_batch_norm") and i.endswith("_mnist") for i in table.index)
    # a regularizer the config did not run is "not run", naming it
    assert table.loc["X4_reliance_raises_auc_cifar10", "verdict"] == "not run"


def test_figX4_script_compares_cifar10_regularizers_with_plain_and_batch_norm(tmp_path):
    """workflow/scripts/figX4_regularizer_auc.py on CIFAR-10's E2 arms (plain without batch norm,
    batch norm, ablation noise, reliance, selectivity; no dropout): the conditions are named from
    the probes' columns, and every regularizer gets differences to plain and to batch norm, batch
    norm to plain only, with the means of the networks' values."""
    import runpy
    from types import SimpleNamespace

    from conftest import REPO
    arms = {"plain": ("none", 0.0, False, 0.40), "batch norm": ("none", 0.0, True, 0.46),
            "ablation_noise 0.5": ("ablation_noise", 0.5, False, 0.61), "reliance 0.5": ("reliance", 0.5, False, 0.57),
            "selectivity -1": ("selectivity", -1.0, False, 0.32)}
    files = []
    for cond, (reg, strength, bn, auc) in arms.items():
        for frac in (0.0, 1.0):
            for seed in (0, 1):
                model = f"{cond.split()[0]}_f{frac}_s{seed}"
                row = dict(model=model, experiment="reg", regularizer=reg, strength=strength, dropout=0.0,
                           batch_norm=bn, corrupted_fraction=frac, seed=seed, epoch=8, probe="full_auc",
                           value=auc + 0.01 * seed + 0.2 * frac, cost_passes=11, test_loss=0.3,
                           test_accuracy=0.9 + 0.01 * seed, train_accuracy=0.95 - 0.7 * frac, mean_selectivity=0.4)
                early = dict(row, epoch=4, value=0.0)  # only the final epoch counts
                path = tmp_path / f"{model}.csv"
                pd.DataFrame([early, row, dict(row, probe="point@0.5", value=0.9)]).to_csv(path, index=False)
                files.append(str(path))
                (tmp_path / "models" / model).mkdir(parents=True)  # every net trained (none left out)
                pd.DataFrame({"epoch": [8], "train_loss": [0.5], "train_accuracy": [0.95 - 0.7 * frac],
                              "test_accuracy": [0.9]}).to_csv(tmp_path / "models" / model / "history.csv", index=False)
    np.savez(tmp_path / "dataset.npz", n_classes=np.int64(10))
    histories = sorted(str(p) for p in (tmp_path / "models").glob("*/history.csv"))
    class Named(SimpleNamespace):  # snakemake's input/output: attributes, items(), iteration over values
        def items(self):
            return vars(self).items()

        def __iter__(self):
            return iter(vars(self).values())

    out = tmp_path / "out"
    sm = SimpleNamespace(input=Named(probes=files, histories=histories, data=str(tmp_path / "dataset.npz")),
                         output=Named(pdf=str(out / "figX4.pdf"), csv=str(out / "figX4.csv"), stats=str(out / "st.csv")),
                         params=SimpleNamespace(bootstrap=50, seed=0, scale="demo", label="stand-in"),
                         log=[str(tmp_path / "figX4.log")])
    runpy.run_path(str(REPO / "workflow" / "scripts" / "figX4_regularizer_auc.py"), init_globals={"snakemake": sm})

    nets = pd.read_csv(out / "figX4.csv")
    assert len(nets) == 20 and set(nets["condition"]) == set(arms)
    # one row per network: the full AUC at the final epoch
    assert sorted(nets.loc[nets["condition"] == "batch norm", "auc"]) == pytest.approx([0.46, 0.47, 0.66, 0.67])
    st = pd.read_csv(out / "st.csv").set_index("statistic")
    for arm in ("clean", "corrupted"):
        for reg in ("ablation_noise_0.5", "reliance_0.5", "selectivity_-1"):
            for ref in ("plain", "batch_norm"):
                assert f"auc_diff_{reg}_minus_{ref}_{arm}" in st.index
        assert f"auc_diff_batch_norm_minus_plain_{arm}" in st.index
    assert not any("minus_batch_norm" in i and i.startswith(("auc_diff_batch_norm", "auc_diff_plain")) for i in st.index)
    assert not any(i.startswith("auc_diff_plain_") for i in st.index)
    # differences of the means over the two networks of each arm
    assert st.loc["auc_diff_ablation_noise_0.5_minus_batch_norm_clean", "value"] == pytest.approx(0.61 - 0.46)
    assert st.loc["auc_diff_batch_norm_minus_plain_clean", "value"] == pytest.approx(0.06)
    assert st.loc["auc_diff_batch_norm_minus_plain_clean", "unit"] == "networks"
    assert st.loc["train_accuracy_diff_reliance_0.5_minus_plain_corrupted", "value"] == pytest.approx(0.0)
    assert (out / "figX4.pdf").stat().st_size > 1000
    assert st.loc["networks_failed_excluded", "value"] == 0 and st.loc["networks_used", "value"] == 20

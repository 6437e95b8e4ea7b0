"""Cheap reliance probes (singledir.analysis.probes): a probe is exactly a point or subsample of the
full cumulative ablation curve, costs are counted, and the selection/stopping rules."""

import numpy as np
import pandas as pd
import pytest
import torch

from singledir.analysis import probes
from singledir.engine.ablation import cumulative_ablation_curve, normalized_auc
from singledir.models.nets import MLP


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


def test_selection_table_perfect_and_reversed_probe():
    n = 8
    acc = np.linspace(0.5, 0.9, n)
    rows = []
    for i in range(n):
        for p, v, cost in (("point@0.5", acc[i], 11), ("full_auc", acc[i] ** 2, 201), ("bad", -acc[i], 11)):
            rows.append({"model": f"m{i}", "probe": p, "value": v, "cost_passes": cost, "test_accuracy": acc[i]})
    table, stats = probes.selection_table(pd.DataFrame(rows), ["point@0.5", "bad", "full_auc"], n_boot=200, seed=0,
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

def _stats(res, rows):
    cols = ["figure", "statistic", "value", "ci_low", "ci_high", "n", "unit", "p", "p_min", "chance"]
    path = res / "stats" / "mnist.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)


def test_new_claims_verdicts_and_readme_section(tmp_path):
    from singledir.stats import beyond_claims as B, claims as C
    nan = float("nan")
    res = tmp_path / "results"
    _stats(res, [
        ("figX1", "headline_fraction", 0.5, nan, nan, 12, "networks", nan, nan, nan),
        ("figX1", "r_ratio_point@0.5_to_full", 0.97, 0.92, 1.05, 12, "networks", nan, nan, nan),
        ("figX1", "cost_fraction_point@0.5_of_full", 0.05, nan, nan, 12, "", nan, nan, nan),
        ("figX1", "spearman_full_auc_vs_test_accuracy", 0.8, 0.5, 0.95, 12, "networks", 0.001, 1e-4, nan),
        ("figX1", "spearman_point@0.5_vs_test_accuracy", 0.78, 0.45, 0.9, 12, "networks", 0.002, 1e-4, nan),
        ("figX1", "selection_top1_percent_point@0.5", 60.0, nan, nan, 12, "networks", 0.01, 0.001, 16.7),
        ("figX4", "auc_plain_clean", 0.6, 0.55, 0.65, 4, "networks", nan, nan, nan),
        ("figX4", "auc_diff_ablation_noise_0.25_minus_plain_clean", 0.01, -0.01, 0.03, 8, "networks", 0.5, 0.03, nan),
        ("figX4", "auc_diff_ablation_noise_0.75_minus_plain_clean", 0.2, 0.15, 0.25, 8, "networks", 0.03, 0.029, nan),
        ("figX4", "selectivity_diff_selectivity_-10_minus_plain_clean", -0.3, -0.4, -0.2, 8, "networks", 0.03, 0.029,
         nan),
        ("figX4", "selectivity_diff_selectivity_1_minus_plain_clean", 0.1, 0.0, 0.2, 8, "networks", 0.2, 0.029, nan),
    ])
    table = C.evaluate_claims(C.Sources.from_results(res), B.ALL_CLAIMS).set_index("claim_id")
    keep = table.loc["X1_onepoint_keeps_rank_r_mnist"]
    assert keep["paper_value"] == "new" and keep["verdict"] == "reproduced" and keep["our_value"] == 0.97
    # the strongest strength is judged: q_max 0.75, alpha -10
    noise = table.loc["X4_ablation_noise_raises_auc"]
    assert noise["verdict"] == "reproduced" and "strength 0.75" in noise["note"]
    assert table.loc["X4_negative_alpha_lowers_selectivity", "our_value"] == -0.3
    assert table.loc["X1_onepoint_selection_beats_chance_mnist", "verdict"] == "reproduced"
    assert table.loc["X1_onepoint_selection_beats_chance_mnist", "our_value"] == pytest.approx(60 - 16.7)
    assert table.loc["X4_reliance_raises_auc", "verdict"] == "not run"
    assert table.loc["X2_onepoint_stop_vs_val_stop_mnist", "verdict"] == "not run"
    # a probe costing more than 10 % of the full AUC cannot support the claim
    _stats(res, [("figX1", "headline_fraction", 0.5, nan, nan, 12, "networks", nan, nan, nan),
                 ("figX1", "r_ratio_point@0.5_to_full", 0.97, 0.92, 1.05, 12, "networks", nan, nan, nan),
                 ("figX1", "cost_fraction_point@0.5_of_full", 0.2, nan, nan, 12, "", nan, nan, nan),
                 ("figX1", "spearman_full_auc_vs_test_accuracy", 0.8, 0.5, 0.95, 12, "networks", 0.001, 1e-4, nan),
                 ("figX1", "spearman_point@0.5_vs_test_accuracy", 0.78, 0.45, 0.9, 12, "networks", 0.002, 1e-4, nan),
                 ("figX1", "selection_top1_percent_point@0.5", 60.0, nan, nan, 12, "networks", 0.01, 0.001, 16.7)])
    t2 = C.evaluate_claims(C.Sources.from_results(res), B.ALL_CLAIMS)
    row = t2.set_index("claim_id").loc["X1_onepoint_keeps_rank_r_mnist"]
    assert row["verdict"] == "inconclusive" and "more than 0.1" in row["reason"]
    md = B.readme_section(t2, "demo")
    assert md.startswith(B.BEGIN) and md.endswith(B.END)
    assert "### E1, model selection (Fig. X1)" in md and "| MNIST | A one-point probe keeps" in md
    readme = B.update_readme("# x\n\n## Beyond the paper\n\nintro\n", md)
    assert readme.count(B.BEGIN) == 1 and B.update_readme(readme, md) == readme

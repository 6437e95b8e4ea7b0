"""Model selection (issue 30): Fig. 4c's design counted before failed nets are left out, its CIs
resampling settings, the gap claim's design gate, "not comparable" rows that keep their value;
Fig. X1 ranking only the nets trained without a reliance regularizer."""
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from singledir.stats import claims as C
from singledir.stats import design as D
from singledir.stats.beyond_claims import ALL_CLAIMS
from singledir.stats.inference import bootstrap_ci, cluster_bootstrap_ci, spearman_r
from singledir.stats.model_selection import (probe_selection_table, regularized_stat_row, spearman_over_settings,
                                             x1_networks)

nan = float("nan")
FAILED = "excluded 2 of 192 nets: sweep_lr1_bs8_s0 diverged at epoch 3 (training loss nan); sweep_lr1_bs8_s1 diverged"


def claim(claim_id):
    return next(c for c in ALL_CLAIMS if c.claim_id == claim_id)


def _fig4c(res, subset, designed, used, *, top1=(15.0, 10.0, 20.0), gap=(1.2, 0.9, 1.5), failed=0, extra=()):
    """results/stats/cifar10.csv as the Fig. 4c script writes it (designed: settings as
    configured; used: left once failed nets are excluded)."""
    rows = [
        dict(statistic="selection_top1_percent", value=top1[0], ci_low=top1[1], ci_high=top1[2], n=used,
             unit="settings", p=0.002, p_min=1 / 1001, chance=100 / subset),
        dict(statistic="selection_gap_to_best_percent", value=gap[0], ci_low=gap[1], ci_high=gap[2], n=used,
             unit="settings", p=0.01, p_min=1 / 1001),
        dict(statistic="selection_gap_to_best_std_percent", value=1.0, n=used, unit="settings"),
        dict(statistic="selection_subset_size", value=subset, n=used, unit="settings"),
        dict(statistic="selection_settings", value=used, n=used, unit="settings"),
        dict(statistic="selection_settings_designed", value=designed, n=2 * designed, unit="networks"),
        dict(statistic="networks_failed_excluded", value=failed, n=2 * designed, unit="networks",
             note=FAILED if failed else ""),
        *extra]
    path = res / "stats" / "cifar10.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).assign(figure="fig4").to_csv(path, index=False)
    return C.Sources.from_results(res)


# ---------------------------------------------------------------- Fig. 4c claims

def test_not_comparable_row_keeps_its_value_ci_and_n(tmp_path):
    """A design other than the paper's (3 of 6 settings) is "not comparable", but the row still
    says what this design gave: value, CI, n, chance (issue 30: it used to drop them)."""
    src = _fig4c(tmp_path / "results", 3, 6, 6, top1=(55.0, 40.0, 70.0), gap=(0.8, 0.2, 1.6))
    top1 = claim("fig4c_selection_top1").evaluate(src)
    assert top1["verdict"] == "not comparable" and "3 of 6" in top1["reason"] and "chance here 33.3 %" in top1["reason"]
    assert (top1["our_value"], top1["ci_low"], top1["ci_high"], top1["n"]) == (55.0, 40.0, 70.0, 6)
    assert math.isfinite(top1["our_value"]) and top1["chance"] == pytest.approx(100 / 3)
    gap = claim("fig4c_selection_gap").evaluate(src)
    assert gap["verdict"] == "not comparable" and "the gap to the best setting depends on the subset size" in gap[
        "reason"]
    assert (gap["our_value"], gap["ci_low"], gap["ci_high"], gap["n"]) == (0.8, 0.2, 1.6, 6)
    assert "0.8 +/- 1 %" in gap["note"]
    row = C.evaluate_claims(src, [claim("fig4c_selection_top1")]).iloc[0]  # what claims.csv gets
    assert row["verdict"] == "not comparable" and np.isfinite(row["our_value"]) and row["n"] == 6


def test_the_papers_design_stays_comparable_when_nets_fail(tmp_path):
    """Two failed repeats of one setting leave 95 of the 96 designed settings: the rows are
    judged (not "not comparable"), the note counts the settings, the reason names the nets."""
    src = _fig4c(tmp_path / "results", 48, 96, 95, failed=2)
    top1 = claim("fig4c_selection_top1").evaluate(src)
    assert top1["verdict"] == "reproduced"  # 13 +/- 10: the CI [10, 20] lies inside [3, 23]
    assert "95 of the sweep's 96 settings left once failed nets were excluded" in top1["note"]
    assert FAILED in top1["reason"] and "2 of 192 nets failed to train" in top1["note"]
    gap = claim("fig4c_selection_gap").evaluate(src)
    assert gap["verdict"] == "reproduced" and "95 of the sweep's 96" in gap["note"]
    # the same failure, counted the old way (settings after exclusion), was "not comparable"
    old = _fig4c(tmp_path / "old", 48, 95, 95, failed=2)
    assert claim("fig4c_selection_top1").evaluate(old)["verdict"] == "not comparable"


def test_not_comparable_row_names_the_failed_nets(tmp_path):
    src = _fig4c(tmp_path / "results", 3, 6, 5, top1=(55.0, 40.0, 70.0), failed=2)
    row = claim("fig4c_selection_top1").evaluate(src)
    assert row["verdict"] == "not comparable" and row["our_value"] == 55.0
    assert FAILED in row["reason"] and "5 of the sweep's 6 settings" in row["note"]


def test_gap_claim_is_judged_by_its_ci_at_the_papers_design(tmp_path):
    assert claim("fig4c_selection_gap").evaluate(_fig4c(tmp_path / "a", 48, 96, 96, gap=(3.5, 2.9, 4.2)))[
        "verdict"] == "not reproduced"  # the CI is disjoint from [-0.1, 2.1]
    row = claim("fig4c_selection_gap").evaluate(_fig4c(tmp_path / "b", 48, 96, 96, gap=(1.5, 0.4, 2.6)))
    assert row["verdict"] == "inconclusive"


def test_selection_statistics_missing_because_too_few_settings_are_left_is_inconclusive(tmp_path):
    """The figure writes no selection statistic when failed nets leave fewer settings than the
    subset size: the rates say so (inconclusive), never "not run"."""
    path = tmp_path / "results" / "stats" / "cifar10.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame([dict(statistic="selection_subset_size", value=48, n=40), dict(statistic="selection_settings", value=40,
                                                                                 n=40),
                  dict(statistic="selection_settings_designed", value=96, n=192),
                  dict(statistic="networks_failed_excluded", value=100, n=192, note="excluded 100 of 192 nets: ...")]
                 ).assign(figure="fig4").to_csv(path, index=False)
    row = claim("fig4c_selection_top5").evaluate(C.Sources.from_results(tmp_path / "results"))
    assert row["verdict"] == "inconclusive" and "too few nets left (92)" in row["reason"]


# ---------------------------------------------------------------- CIs resampling settings

def test_cluster_bootstrap_with_one_row_per_cluster_is_the_plain_bootstrap():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=15), rng.normal(size=15)
    assert cluster_bootstrap_ci(spearman_r, x, y, clusters=np.arange(15), n_boot=300, seed=4) == \
        bootstrap_ci(spearman_r, x, y, n_boot=300, seed=4)
    with pytest.raises(ValueError, match="3 cluster labels for 15 rows"):
        cluster_bootstrap_ci(spearman_r, x, y, clusters=[0, 1, 2])


def test_fig4c_r_resamples_settings_not_repeats():
    """Two near-identical repeats per setting: resampling nets treats 12 points as independent
    and gives a narrower CI than the 6 settings support; resampling settings does not."""
    rng = np.random.default_rng(1)
    auc = rng.normal(size=6)
    acc = 0.5 * auc + rng.normal(size=6)
    nets = pd.DataFrame({"lr": np.repeat([0.1, 0.01, 0.001], 4), "batch_size": np.tile(np.repeat([32, 128], 2), 3),
                         "auc": np.repeat(auc, 2) + rng.normal(0, 1e-3, 12),
                         "test_accuracy": np.repeat(acc, 2) + rng.normal(0, 1e-3, 12)})
    r = spearman_over_settings(nets, ["lr", "batch_size"], n_boot=500, seed=0)
    assert r["n"] == 12 and r["unit"] == "networks in 6 settings (CI: settings resampled)"
    assert r["value"] == pytest.approx(spearman_r(nets["auc"], nets["test_accuracy"]))
    naive = bootstrap_ci(spearman_r, nets["auc"].to_numpy(), nets["test_accuracy"].to_numpy(), n_boot=500, seed=0)
    assert r["ci_high"] - r["ci_low"] > 1.2 * (naive[1] - naive[0])
    assert np.isfinite(r["p"]) and r["p_min"] < 0.05


# ---------------------------------------------------------------- the Fig. 4 script

class _Named(SimpleNamespace):  # snakemake's input/output: attributes, items(), iteration over values
    def items(self):
        return vars(self).items()

    def __iter__(self):
        return iter(vars(self).values())


def _history(root, model, loss, train_acc, test_acc):
    (root / model).mkdir(parents=True)
    pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, loss], "train_accuracy": [0.5, train_acc],
                  "test_loss": [1.0, 0.5], "test_accuracy": [0.5, test_acc]}).to_csv(root / model / "history.csv",
                                                                                     index=False)
    return str(root / model / "history.csv")


def test_fig4c_script_counts_the_designed_settings_before_excluding_failed_nets(tmp_path):
    """A 3 x 2 sweep (2 repeats) whose two repeats of one setting diverged: 6 settings designed,
    5 used; the r's CI resamples settings."""
    import runpy

    from conftest import REPO
    np.savez(tmp_path / "dataset.npz", n_classes=np.int64(10))
    rng = np.random.default_rng(0)
    specs, curves, histories = {}, [], []
    for i, (lr, bs, s) in enumerate([(lr, bs, s) for lr in (0.1, 0.01, 0.001) for bs in (32, 128) for s in (0, 1)]):
        m = f"sweep_lr{lr:g}_bs{bs}_s{s}"
        specs[m] = {"train": {"lr": lr, "batch_size": bs, "seed": s}}
        k = np.arange(11)
        slope = 0.03 + 0.01 * rng.random()
        pd.DataFrame({"model": m, "ordering": "random_0", "n_ablated": k, "fraction": k / 10,
                      "accuracy": np.clip(0.9 - slope * k, 0.1, 1)}).to_csv(tmp_path / f"{m}.csv", index=False)
        curves.append(str(tmp_path / f"{m}.csv"))
        diverged = lr == 0.1 and bs == 32
        histories.append(_history(tmp_path / "models", m, nan if diverged else 0.2, nan if diverged else 0.9,
                                  0.6 + 0.02 * i))
    snap = pd.DataFrame({"model": "early_stopping_s0", "epoch": np.arange(6), "ordering": "random_0",
                         "auc": [1.0, 0.8, 0.7, 0.65, 0.6, 0.62], "train_loss": np.linspace(2, 0.1, 6),
                         "test_loss": [2.3, 1.0, 0.8, 0.7, 0.75, 0.9], "test_accuracy": np.linspace(0.1, 0.8, 6)})
    snap.to_csv(tmp_path / "snap.csv", index=False)
    stopping = [_history(tmp_path / "stop", "early_stopping_s0", 0.1, 0.95, 0.8)]
    out = tmp_path / "out"
    sm = SimpleNamespace(input=_Named(snapshots=[str(tmp_path / "snap.csv")], stopping_histories=stopping,
                                      curves=curves, histories=histories, data=str(tmp_path / "dataset.npz")),
                         output=_Named(pdf=str(out / "f.pdf"), csv=str(out / "f.csv"), stats=str(out / "st.csv")),
                         params=SimpleNamespace(bootstrap=50, seed=0, scale="demo", label="stand-in", specs=specs,
                                                figure={"subset_size": 3, "subsets": 100, "top": [1, 2]}),
                         wildcards=SimpleNamespace(family="cifar10"), log=[str(tmp_path / "f.log")])
    runpy.run_path(str(REPO / "workflow" / "scripts" / "fig4_selection_and_early_stopping.py"),
                   init_globals={"snakemake": sm})
    stats = pd.read_csv(out / "st.csv").set_index("statistic")
    assert stats.loc["selection_settings_designed", "value"] == 6 and stats.loc["selection_settings", "value"] == 5
    assert stats.loc["networks_failed_excluded", "value"] == 2
    r = stats.loc["spearman_auc_vs_test_accuracy"]
    assert r["n"] == 10 and r["unit"] == "networks in 5 settings (CI: settings resampled)" and r["ci_low"] < r["ci_high"]
    assert np.isfinite(stats.loc["selection_top1_percent", "ci_low"])  # the rate's CI: settings resampled
    assert "5 of the sweep's 6 settings left" in (tmp_path / "f.log").read_text()


# ---------------------------------------------------------------- the plan's design check

def _rec(experiment, lr, bs, seed=0):
    return {"model": f"{experiment}_{lr}_{bs}_{seed}", "experiment": experiment, "fraction": 0.0, "seed": seed,
            "lr": lr, "batch_size": bs, "regularizer": "none", "condition": "plain", "units": 100, "epochs": 10,
            "snapshots": 0, "snapshot_spacing": None}


def test_the_early_stopping_net_is_not_a_setting_of_the_sweep():
    """config/laptop.yaml's bug: a 3 x 2 sweep was "7 settings" because Fig. 4's design also
    holds the early-stopping net (lr 0.001, batch 64)."""
    sweep = [_rec("sweep", lr, bs, s) for lr in (1e-4, 1e-3, 1e-2) for bs in (32, 128) for s in (0, 1)]
    fig4 = sweep + [dict(_rec("early_stopping", 1e-3, 64), snapshots=16, snapshot_spacing=1)]
    assert D._settings(fig4) == 6
    why = {b["claim"]: b["why"] for b in D.undecidable_claims({"cifar10": {"fig4": fig4}})}
    assert "Spearman over 6 settings" in why["fig4c_auc_vs_test_accuracy"]
    assert "the sweep has 6 settings, not the paper's 96" in why["fig4c_selection_top1"]
    assert "not the paper's 96" in why["fig4c_selection_gap"]  # the gap is gated by the design too
    assert not any("7 settings" in w for w in why.values())
    paper = [_rec("sweep", lr, bs, s) for lr in range(12) for bs in range(8) for s in (0, 1)]
    paper.append(dict(_rec("early_stopping", 99, 99), snapshots=100, snapshot_spacing=1))
    assert not [c for c in D.undecidable_claims({"cifar10": {"fig4": paper}}) if c["claim"].startswith("fig4c")]


# ---------------------------------------------------------------- Fig. X1: unregularized nets only

def _probe_rows(model, acc, value, regularizer="none", strength=0.0):
    return [{"model": model, "probe": p, "value": v, "cost_passes": c, "test_accuracy": acc,
             "regularizer": regularizer, "strength": strength}
            for p, v, c in (("point@0.5", value, 11), ("full_auc", value, 201))]


def test_a_regularized_nets_row_does_not_enter_x1s_statistic():
    """Six plain/dropout nets whose probe ranks test accuracy perfectly, and two reliance-penalty
    nets trained to a high probe value at a low accuracy: pooled they would pull r down; X1
    ranks the six alone."""
    acc = np.linspace(0.90, 0.95, 6)
    rows = [r for i, a in enumerate(acc) for r in _probe_rows(f"plain_s{i}", a, 0.5 + a)]
    rows += _probe_rows("reliance_s0", 0.80, 2.0, "reliance", 4.0) + _probe_rows("noise_s0", 0.81, 2.1,
                                                                                  "ablation_noise", 0.5)
    nets = pd.DataFrame(rows)
    table, stats = probe_selection_table(nets, ["point@0.5", "full_auc"], n_boot=100, seed=0, subset_size=3,
                                         n_subsets=50, top=[1], n_perm=50)
    t = table.set_index("probe")
    assert t.loc["point@0.5", "n"] == 6 and t.loc["point@0.5", "spearman_r"] == pytest.approx(1.0)
    assert spearman_r(nets.drop_duplicates("model")["value"], nets.drop_duplicates("model")["test_accuracy"]) < 0.5
    r = {s["statistic"]: s for s in stats}["spearman_full_auc_vs_test_accuracy"]
    assert r["n"] == 6 and r["value"] == pytest.approx(1.0)
    kept, left = x1_networks(nets)
    assert set(left["model"]) == {"reliance_s0", "noise_s0"} and kept["model"].nunique() == 6
    row = regularized_stat_row(left, 8)
    assert row["value"] == 2 and row["n"] == 8
    assert row["note"].startswith("left out 2 of 8 nets trained with a reliance regularizer (reliance 4: 1, "
                                  "ablation_noise 0.5: 1)")
    # a table without a regularizer column (nets of Figs. 3/4c only) is ranked whole
    assert x1_networks(nets.drop(columns="regularizer"))[0].shape[0] == len(nets)


def test_x1_claims_say_the_regularized_nets_were_left_out(tmp_path):
    note = "left out 24 of 40 nets trained with a reliance regularizer (reliance 1: 8): ..."
    path = tmp_path / "results" / "stats" / "mnist.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame([
        dict(statistic="spearman_full_auc_vs_test_accuracy", value=0.6, ci_low=0.2, ci_high=0.9, n=16,
             unit="networks", p=0.01, p_min=1e-4),
        dict(statistic="networks_failed_excluded", value=0, n=16, unit="networks"),
        dict(statistic="networks_regularized_excluded", value=24, n=40, unit="networks", note=note),
    ]).assign(figure="figX1").to_csv(path, index=False)
    row = claim("X1_full_auc_predicts_test_accuracy_mnist").evaluate(C.Sources.from_results(tmp_path / "results"))
    assert row["verdict"] == "reproduced" and row["n"] == 16 and note in row["note"]


def test_the_x1_design_counts_only_the_unregularized_clean_nets():
    def net(cond, reg, fraction=0.0, seed=0):
        return {"model": f"{cond}_{fraction}_{seed}", "fraction": fraction, "regularizer": reg, "condition": cond,
                "seed": seed}
    three = [net("plain", "none", seed=s) for s in range(2)] + [net("dropout", "none")]
    regs = [net(r, r, seed=s) for r in ("ablation_noise", "reliance", "selectivity") for s in range(4)]
    corrupted = [net("plain", "none", 1.0, s) for s in range(4)]
    why = {b["claim"]: b["why"] for b in D.undecidable_claims({"mnist": {"figX1": three + regs + corrupted}})}
    # 3 used nets: the smallest p is 1/3, however many regularized nets the figure's inputs hold
    assert "Spearman over the 3 clean-label networks trained without a reliance regularizer (of 19" in why[
        "X1_full_auc_predicts_test_accuracy_mnist"]
    eight = [net("plain", "none", seed=s) for s in range(4)] + [net("dropout", "none", seed=s) for s in range(4)]
    assert D.undecidable_claims({"mnist": {"figX1": eight + regs}}) == []


def test_x1_script_ranks_the_unregularized_nets_and_counts_the_others(tmp_path):
    """Fig. X1's script on 6 plain/dropout nets and 2 regularized ones: its statistics rest on
    the 6, networks_regularized_excluded counts the 2 (by condition), the log says so."""
    import runpy

    from conftest import REPO
    np.savez(tmp_path / "dataset.npz", n_classes=np.int64(10))
    files = []
    nets = [(f"plain_s{i}", "none", 0.0, 0.90 + 0.01 * i) for i in range(3)]
    nets += [(f"dropout_s{i}", "none", 0.0, 0.93 + 0.01 * i) for i in range(3)]
    nets += [("reliance_s0", "reliance", 4.0, 0.5), ("selectivity_s0", "selectivity", -1.0, 0.55)]
    for model, reg, strength, acc in nets:
        v = 2.0 if reg != "none" else acc  # the regularized nets: trained to a high probe value
        rows = [{"model": model, "epoch": 5, "probe": p, "value": v, "cost_passes": c, "test_accuracy": acc,
                 "train_loss": 0.2, "train_accuracy": 0.95, "regularizer": reg, "strength": strength}
                for p, c in (("point@0.5", 11), ("sparse_auc", 31), ("full_auc", 201))]
        pd.DataFrame(rows).to_csv(tmp_path / f"{model}.csv", index=False)
        files.append(str(tmp_path / f"{model}.csv"))
    out = tmp_path / "out"
    beyond = {"probe_fractions": [0.5], "subset_size": 3, "subsets": 50, "top": [1], "headline_fraction": 0.5}
    sm = SimpleNamespace(input=_Named(probes=files, data=str(tmp_path / "dataset.npz")),
                         output=_Named(pdf=str(out / "f.pdf"), csv=str(out / "f.csv"), stats=str(out / "st.csv")),
                         params=SimpleNamespace(bootstrap=50, seed=0, scale="demo", label="stand-in",
                                                figure={"beyond": beyond}),
                         wildcards=SimpleNamespace(family="mnist"), log=[str(tmp_path / "f.log")])
    runpy.run_path(str(REPO / "workflow" / "scripts" / "figX1_probe_selection.py"), init_globals={"snakemake": sm})
    stats = pd.read_csv(out / "st.csv").set_index("statistic")
    r = stats.loc["spearman_full_auc_vs_test_accuracy"]
    assert r["n"] == 6 and r["value"] == pytest.approx(1.0)
    assert stats.loc["networks_regularized_excluded", "value"] == 2
    assert stats.loc["networks_regularized_excluded", "n"] == 8
    assert stats.loc["networks_failed_excluded", "n"] == 6  # failures judged among the nets ranked
    assert "left out 2 of 8 nets trained with a reliance regularizer" in (tmp_path / "f.log").read_text()
    assert (pd.read_csv(out / "f.csv")["n_networks"] == 6).all()

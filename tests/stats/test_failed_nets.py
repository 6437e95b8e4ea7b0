"""Nets that failed to train: chance comes from the data's class count, diverged nets are
named with the epoch they diverged in, and the claims exclude, count and name them."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from singledir.stats import claims as C
from singledir.stats.beyond_claims import ALL_CLAIMS
from singledir.stats.net_tables import (data_class_count, excluded_by_labels, excluded_note, failed_stat_rows,
                                       failure_reason, final_performance, keep_trained, training_failed,
                                       without_failed)


def _histories(tmp_path, finals: dict) -> list:
    paths = []
    for model, (loss, acc) in finals.items():
        (tmp_path / model).mkdir()
        pd.DataFrame({"epoch": [0, 1, 2, 3], "step": [0, 10, 20, 30], "train_loss": [0.7, 0.69, 0.69, loss],
                      "train_accuracy": [0.5, 0.5, 0.5, acc], "test_loss": [0.7, 0.7, 0.7, np.nan],
                      "test_accuracy": [0.5, 0.5, 0.5, np.nan]}).to_csv(tmp_path / model / "history.csv", index=False)
        paths.append(tmp_path / model / "history.csv")
    return paths


def test_two_class_nets_at_chance_fail_and_learned_ones_do_not():
    """With 2 classes chance is 0.5: a net stuck there (loss ln 2) failed, which the old
    10-class assumption (chance 0.1) missed; 0.9 trained."""
    nets = pd.DataFrame({"train_accuracy": [0.5, 0.52, 0.9], "train_loss": [0.6932, 0.69, 0.2]})
    assert training_failed(nets, 2).tolist() == [True, True, False]
    assert training_failed(nets, 10).tolist() == [False, False, False]  # what assuming 10 classes said
    assert failure_reason(0.6932, 0.5, 2) == ("never learned (final training accuracy 0.500 < chance 0.5 + 0.05, "
                                             "2 classes)")
    with pytest.raises(ValueError, match="at least 2"):
        training_failed(nets, 1)


def test_diverged_net_is_named_with_its_epoch_and_counted(tmp_path):
    paths = _histories(tmp_path, {"sweep_lr0.5_bs16_s0": (float("nan"), float("nan")),
                                  "sweep_lr0.01_bs16_s0": (0.1, 0.97), "sweep_lr0.01_bs32_s0": (0.69, 0.5)})
    nets = final_performance(paths, 2).set_index("model")
    assert nets["failed"].to_dict() == {"sweep_lr0.5_bs16_s0": True, "sweep_lr0.01_bs16_s0": False,
                                        "sweep_lr0.01_bs32_s0": True}
    assert nets.loc["sweep_lr0.5_bs16_s0", "failure"] == "diverged at epoch 3 (training loss nan)"
    note = excluded_note(nets.reset_index())
    assert note.startswith("excluded 2 of 3 nets: sweep_lr0.5_bs16_s0 diverged at epoch 3 (training loss nan); "
                           "sweep_lr0.01_bs32_s0 never learned")
    rows = {r["statistic"]: r for r in failed_stat_rows(nets.reset_index())}
    assert rows["networks_failed_excluded"]["value"] == 2 and rows["networks_failed_excluded"]["note"] == note
    assert rows["networks_used"]["value"] == 1
    # only the diverged one, as Figs. 1-2 exclude
    assert excluded_note(nets.reset_index(), "diverged") == ("excluded 1 of 3 nets: sweep_lr0.5_bs16_s0 diverged at "
                                                             "epoch 3 (training loss nan)")
    assert excluded_note(nets.reset_index().assign(failed=False)) == ""


def test_class_count_comes_from_the_prepared_data(tmp_path):
    np.savez(tmp_path / "dataset.npz", x_train=np.zeros((2, 1, 2, 2), np.uint8), n_classes=np.int64(2))
    assert data_class_count(tmp_path / "dataset.npz") == 2
    pd.DataFrame({"split": ["train"] * 3, "path": ["a", "b", "c"], "target": [0, 4, 2]}).to_csv(
        tmp_path / "index.csv.gz", index=False)
    assert data_class_count(tmp_path / "index.csv.gz") == 5


def _claim(claim_id):
    return next(c for c in ALL_CLAIMS if c.claim_id == claim_id)


@pytest.mark.parametrize("claim_id,figure", [("fig3b_auc_vs_generalization_error", "fig3"),
                                             ("fig1b_auc_vs_corruption", "fig1")])
def test_claims_exclude_count_and_name_failed_nets_in_the_reason(tmp_path, claim_id, figure):
    """The figure's statistic already left the failed nets out (n = 22); the claim's reason
    names them and why, whatever the verdict, and its note counts them."""
    res = tmp_path / "results" / "stats"
    res.mkdir(parents=True)
    note = ("excluded 2 of 24 nets: sweep_lr0.5_bs16_s0 diverged at epoch 3 (training loss nan); "
            "sweep_lr0.5_bs16_s1 diverged at epoch 2 (training loss inf)")
    statistic = {"fig3": "spearman_auc_vs_generalization_error", "fig1": "spearman_auc_vs_corrupted_fraction"}[figure]
    rows = [{"figure": figure, "statistic": statistic, "value": -0.7, "ci_low": -0.9, "ci_high": -0.5, "n": 22,
             "unit": "networks", "p": 0.001, "p_min": 1e-4},
            {"figure": figure, "statistic": "networks_failed_excluded", "value": 2, "n": 24, "unit": "networks",
             "note": note},
            {"figure": figure, "statistic": "final_train_accuracy_min_most_corrupted", "value": 1.0, "n": 1,
             "unit": "networks"}]
    pd.DataFrame(rows).to_csv(res / "cifar10.csv", index=False)
    row = _claim(claim_id).evaluate(C.Sources.from_results(tmp_path / "results"))
    assert row["verdict"] == "reproduced" and row["n"] == 22
    assert note in row["reason"]
    assert "2 of 24 nets failed to train and were excluded" in row["note"]
    # none excluded: nothing said
    rows[1].update(value=0, n=22, note=np.nan)
    pd.DataFrame(rows).to_csv(res / "cifar10.csv", index=False)
    row = _claim(claim_id).evaluate(C.Sources.from_results(tmp_path / "results"))
    assert row["reason"] == "" and "excluded" not in row["note"]


# ---------------------------------------------------------------- every figure leaves failed nets out (issue 30)

def _stats_with_one_failed(tmp_path, family, figure, statistic, value=0.3, counted="networks_failed_excluded",
                           n_used=3, extra=()):
    """results/stats/<family>.csv of a figure whose statistic left one failed net out (n_used
    nets or units used): the figure's rows as its script writes them."""
    res = tmp_path / "results" / "stats"
    res.mkdir(parents=True, exist_ok=True)
    note = "excluded 1 of 4 nets: m_s3 diverged at epoch 3 (training loss nan)"
    rows = [{"figure": figure, "statistic": statistic, "value": value, "ci_low": value - 0.2, "ci_high": value + 0.2,
             "n": n_used, "unit": "networks", "p": 0.01, "p_min": 0.001},
            {"figure": figure, "statistic": counted, "value": 1, "n": 4, "unit": "networks", "note": note},
            *[{"figure": figure, **r} for r in extra]]
    pd.DataFrame(rows).to_csv(res / f"{family}.csv", index=False)
    return note


# (claim, family, figure rule, the statistic the claim reads, the failed-net count it reads)
NEWLY_JUDGED = [
    ("fig4a_auc_peak_at_loss_divergence", "mnist", "fig4", None, "stopping_net_failed_excluded"),
    ("fig4b_auc_vs_test_loss_cifar10", "cifar10", "fig4", "spearman_auc_vs_test_loss", "stopping_net_failed_excluded"),
    ("fig4c_selection_gap", "cifar10", "fig4", "selection_gap_to_best_percent", "networks_failed_excluded"),
    ("fig5a_dropout_kept_clean_p0.1", "mnist", "fig5", "relative_accuracy_at_dropout_p0.1_clean",
     "networks_failed_excluded"),
    ("fig6a_batchnorm_selectivity", "cifar10", "fig6", "selectivity_difference_bn_minus_nobn",
     "networks_failed_excluded"),
    ("fig7a_selectivity_vs_impact", "mnist", "fig7", "spearman_selectivity_vs_impact", "networks_failed_excluded"),
    ("fig7b_selectivity_vs_impact", "cifar10", "fig7", "network_mean_spearman_selectivity_vs_impact",
     "networks_failed_excluded"),
    ("figA1_mean_vs_zero_ablation", "cifar10", "figA1", "auc_difference_zero_minus_mean", "networks_failed_excluded"),
    ("figA2a_selectivity_vs_depth", "cifar10", "figA2", "network_mean_spearman_selectivity_vs_depth",
     "networks_failed_excluded"),
    ("figA3a_selectivity_vs_l1_norm", "cifar10", "figA3", "network_mean_within_layer_spearman_selectivity_vs_l1_norm",
     "networks_failed_excluded"),
    ("figA4b_mutual_information_vs_impact", "cifar10", "figA4", "network_mean_spearman_mutual_information_vs_impact",
     "networks_failed_excluded"),
    ("X2_full_auc_stop_vs_val_stop_mnist", "mnist", "figX2", "test_loss_full_auc_minus_val_loss",
     "networks_failed_excluded"),
    ("X4_batch_norm_raises_auc_cifar10", "cifar10", "figX4", "auc_diff_batch_norm_minus_plain_clean",
     "networks_failed_excluded"),
]


# the rows a claim's design gate reads besides its statistic (Fig. 4c's gap: the paper's 48 of 96)
DESIGN_ROWS = {"fig4c_selection_gap": [{"statistic": "selection_subset_size", "value": 48, "n": 96},
                                       {"statistic": "selection_settings", "value": 96, "n": 96}]}


@pytest.mark.parametrize("claim_id,family,figure,statistic,counted", [c for c in NEWLY_JUDGED if c[3]])
def test_every_claim_names_and_counts_the_nets_its_figure_left_out(tmp_path, claim_id, family, figure, statistic,
                                                                   counted):
    """Figs. 4-7, A1-A4 and X2-X4 (issue 30): the claim's n is the figure's (failed nets already
    left out), its reason names them whatever the verdict, its note counts them."""
    # the figures comparing arms also write how many of each arm's nets did not converge
    arms = {"fig6": ["_bn", "_nobn"], "figA1": [""], "figX4": ["_batch_norm_clean", "_plain_clean"]}.get(figure, [])
    note = _stats_with_one_failed(tmp_path, family, figure, statistic, counted=counted,
                                  extra=[*DESIGN_ROWS.get(claim_id, ()),
                                         *({"statistic": f"networks_unconverged{a}", "value": 0, "n": 2,
                                            "unit": "networks"} for a in arms)])
    row = _claim(claim_id).evaluate(C.Sources.from_results(tmp_path / "results"))
    assert row["n"] == 3 and row["our_value"] == pytest.approx(0.3)  # the figure's statistic, not a stand-in
    assert note in row["reason"] and "too few nets left" not in row["reason"]
    assert "1 of 4 nets failed to train and were excluded" in row["note"]


def test_claims_from_tables_without_the_failed_count_are_unchanged(tmp_path):
    """A stats table written before its figure counted failed nets (no networks_failed_excluded
    row) gives the claim as before, with nothing said of failed nets."""
    res = tmp_path / "results" / "stats"
    res.mkdir(parents=True)
    pd.DataFrame([{"figure": "fig7", "statistic": "spearman_selectivity_vs_impact", "value": -0.4, "ci_low": -0.5,
                   "ci_high": -0.3, "n": 300, "unit": "units", "p": 1e-4, "p_min": 1e-4}]).to_csv(
        res / "mnist.csv", index=False)
    row = _claim("fig7a_selectivity_vs_impact").evaluate(C.Sources.from_results(tmp_path / "results"))
    assert row["our_value"] == -0.4 and row["n"] == 300
    assert "excluded" not in row["reason"] and "failed" not in row["note"]


@pytest.mark.parametrize("claim_id,family,figure,counted", [
    ("fig7a_selectivity_vs_impact", "mnist", "fig7", "networks_failed_excluded"),
    ("fig4a_auc_peak_at_loss_divergence", "mnist", "fig4", "stopping_net_failed_excluded"),
    ("fig4b_auc_vs_test_loss_mnist", "mnist", "fig4", "stopping_net_failed_excluded"),
])
def test_a_figure_whose_only_net_failed_makes_its_claims_inconclusive(tmp_path, claim_id, family, figure, counted):
    """Figs. 4a and 7a rest on one net: when it failed, the figure writes only the count (its
    statistics could not be computed) and the claim is inconclusive, saying why, never an error."""
    res = tmp_path / "results" / "stats"
    res.mkdir(parents=True)
    note = "the only net failed to train: selectivity_s0 diverged at epoch 2 (training loss nan)"
    pd.DataFrame([{"figure": figure, "statistic": counted, "value": 1, "n": 1, "unit": "networks", "note": note},
                  {"figure": figure, "statistic": counted.replace("failed_excluded", "used"), "value": 0, "n": 1,
                   "unit": "networks"}]).to_csv(res / f"{family}.csv", index=False)
    row = _claim(claim_id).evaluate(C.Sources.from_results(tmp_path / "results"))
    assert row["verdict"] == "inconclusive" and row["n"] == 0
    assert "too few nets left (0) once those that failed to train are excluded" in row["reason"]
    assert note in row["reason"]


def test_too_few_settings_left_for_model_selection_is_inconclusive(tmp_path):
    """Fig. 4c with failed nets leaving fewer settings than the subset size writes no selection
    statistics; the selection claims say so (inconclusive), the correlation claim still runs."""
    note = _stats_with_one_failed(tmp_path, "cifar10", "fig4", "spearman_auc_vs_test_accuracy", value=0.8)
    src = C.Sources.from_results(tmp_path / "results")
    for claim_id in ("fig4c_selection_top1", "fig4c_selection_gap", "fig4c_selection_beats_chance"):
        row = _claim(claim_id).evaluate(src)
        assert row["verdict"] == "inconclusive" and note in row["reason"], claim_id
        assert "too few nets left (3)" in row["reason"]
    assert note in _claim("fig4c_auc_vs_test_accuracy").evaluate(src)["reason"]


def test_every_claim_of_a_judging_figure_counts_failed_nets():
    """Every claim reads its figure's failed-net count (claims.counting_failed), under the
    statistic its figure writes (Fig. 4a-b: the one early-stopping net)."""
    from singledir.figures import registry
    for claim in ALL_CLAIMS:
        assert getattr(claim.estimate, "counts_failed", False), claim.claim_id
        assert C.figure_rule(claim.figure) in registry.JUDGING_FIGURES
    assert C.figure_rule("A2a") == "figA2" and C.figure_rule("7b") == "fig7" and C.figure_rule("X4") == "figX4"


def test_only_net_note_and_exclusion_by_labels():
    nets = pd.DataFrame({"model": ["a"], "failed": [True], "diverged": [True],
                         "failure": ["diverged at epoch 2 (training loss nan)"]})
    assert excluded_note(nets) == "the only net failed to train: a diverged at epoch 2 (training loss nan)"
    rows = {r["statistic"]: r for r in failed_stat_rows(nets, name="stopping_net")}
    assert rows["stopping_net_failed_excluded"]["value"] == 1 and rows["stopping_net_used"]["value"] == 0
    # clean labels: any failure excludes; corrupted labels: only divergence (not memorizing is data)
    nets = pd.DataFrame({"model": ["clean_chance", "corrupt_chance", "corrupt_nan", "clean_ok"],
                         "failed": [True, True, True, False], "diverged": [False, False, True, False]})
    corrupted = pd.Series({"clean_chance": False, "corrupt_chance": True, "corrupt_nan": True, "clean_ok": False})
    assert excluded_by_labels(nets, corrupted).tolist() == [True, False, True, False]
    table = pd.DataFrame({"model": ["clean_chance", "clean_ok", "clean_ok"], "x": [1, 2, 3]})
    assert without_failed(table, nets)["x"].tolist() == [2, 3]


def test_keep_trained_filters_names_and_logs_the_failed_nets(capsys):
    """The figure scripts' filter: the failed nets' rows are gone, the note names them (and is
    printed for the job's log), the column picks what counts as failed (Figs. X3-X4:
    ``excluded``); with none failed the table is whole, the note empty and the log says so."""
    chance, nan_loss = "at chance (training accuracy 0.10)", "diverged at epoch 2 (training loss nan)"
    nets = pd.DataFrame({"model": ["a", "b", "c"], "failed": [True, True, False], "failure": [chance, nan_loss, ""]})
    nets["excluded"] = [False, True, False]  # a: at chance on corrupted labels, kept by Figs. X3-X4
    table = pd.DataFrame({"model": ["a", "b", "b", "c", "d"], "x": [1, 2, 3, 4, 5]})
    kept, note = keep_trained(table, nets)
    assert kept["x"].tolist() == [4, 5]  # d: not judged, kept (as without_failed)
    assert note == f"excluded 2 of 3 nets: a {chance}; b {nan_loss}"
    assert capsys.readouterr().out == note + "\n"
    kept, note = keep_trained(table, nets, "excluded")
    assert kept["x"].tolist() == [1, 4, 5] and note == f"excluded 1 of 3 nets: b {nan_loss}"
    assert capsys.readouterr().out == note + "\n"
    kept, note = keep_trained(table, nets.assign(failed=False))
    assert kept.equals(table) and note == ""
    assert capsys.readouterr().out == "no net failed to train\n"


# ---------------------------------------------------------------- the figure scripts, run on synthetic inputs

class _Named(SimpleNamespace):  # snakemake's input/output: attributes, items(), iteration over values
    def items(self):
        return vars(self).items()

    def __iter__(self):
        return iter(vars(self).values())


def _histories_of(tmp_path, finals: dict) -> list[str]:
    """models/<model>/history.csv per model: (final train loss, final train accuracy)."""
    out = []
    for model, (loss, acc) in finals.items():
        (tmp_path / "models" / model).mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, loss], "train_accuracy": [0.5, acc],
                      "test_loss": [1.0, 0.5], "test_accuracy": [0.5, 0.8]}).to_csv(
            tmp_path / "models" / model / "history.csv", index=False)
        out.append(str(tmp_path / "models" / model / "history.csv"))
    return out


def _run_figure(tmp_path, script, inputs: dict, finals: dict, figure: dict | None = None, specs: dict | None = None,
                family: str = "cifar10"):
    """Runs workflow/scripts/<script> as its rule would (10 classes); returns (stats, tidy table)
    indexed by statistic, or raises what the script raised."""
    import runpy

    from conftest import REPO
    np.savez(tmp_path / "dataset.npz", n_classes=np.int64(10))
    out = tmp_path / "out"
    sm = SimpleNamespace(input=_Named(**inputs, histories=_histories_of(tmp_path, finals),
                                      data=str(tmp_path / "dataset.npz")),
                         output=_Named(pdf=str(out / "f.pdf"), csv=str(out / "f.csv"), stats=str(out / "st.csv")),
                         params=SimpleNamespace(bootstrap=50, seed=0, scale="demo", label="stand-in",
                                                figure=figure or {}, specs=specs or {}),
                         wildcards=SimpleNamespace(family=family), log=[str(tmp_path / "f.log")])
    runpy.run_path(str(REPO / "workflow" / "scripts" / script), init_globals={"snakemake": sm})
    assert (out / "f.pdf").stat().st_size > 1000
    return pd.read_csv(out / "st.csv").set_index("statistic"), pd.read_csv(out / "f.csv")


def _units(tmp_path, models) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for m in models:
        n = 12
        pd.DataFrame({"model": m, "layer": np.repeat(["conv1", "conv2", "conv3"], 4), "depth": np.repeat([1, 2, 3], 4),
                      "unit": np.tile(range(4), 3), "selectivity": rng.uniform(0, 1, n),
                      "mutual_information": rng.uniform(0, 0.5, n), "impact": rng.normal(0, 0.1, n),
                      "l1_norm": rng.uniform(1, 3, n), "mean_activity": rng.uniform(0.1, 1, n)}).to_csv(
            tmp_path / f"{m}_units.csv", index=False)
        paths.append(str(tmp_path / f"{m}_units.csv"))
    return paths


UNIT_FIGURES = [("unit_importance_scatter.py", "spearman_selectivity_vs_impact",
                 dict(predictor="selectivity", xlabel="Selectivity index", title="Class selectivity vs impact")),
                ("figA2_selectivity_by_depth.py", "spearman_selectivity_vs_depth", None),
                ("figA3_selectivity_vs_l1.py", "spearman_selectivity_vs_l1_norm", None),
                ("fig6_batchnorm_selectivity.py", "selectivity_difference_bn_minus_nobn", None)]
DIVERGED = "diverged at epoch 2 (training loss nan)"


@pytest.mark.parametrize("script,statistic,figure", UNIT_FIGURES)
def test_unit_figures_leave_a_failed_net_out_and_name_it(tmp_path, script, statistic, figure):
    """Figs. 6, 7/A4, A2, A3: the diverged net's units are in neither the table nor the
    statistics (n counts the others' units or nets), and the figure names it."""
    models = ["bn_s0", "bn_s1", "nobn_s0", "nobn_s1"]
    specs = {m: {"model": {"batch_norm": m.startswith("bn")}} for m in models}
    stats, table = _run_figure(tmp_path, script, {"units": _units(tmp_path, models)},
                               {"bn_s0": (0.2, 0.9), "bn_s1": (float("nan"), float("nan")), "nobn_s0": (0.2, 0.9),
                                "nobn_s1": (0.3, 0.85)}, figure, specs)
    assert set(table["model"]) == {"bn_s0", "nobn_s0", "nobn_s1"}
    assert stats.loc["networks_failed_excluded", "value"] == 1 and stats.loc["networks_used", "value"] == 3
    assert stats.loc["networks_failed_excluded", "note"] == f"excluded 1 of 4 nets: bn_s1 {DIVERGED}"
    assert stats.loc[statistic, "n"] == (3 if script.startswith("fig6") else 36)
    assert f"excluded 1 of 4 nets: bn_s1 {DIVERGED}" in (tmp_path / "f.log").read_text()


@pytest.mark.parametrize("script,statistic,figure", UNIT_FIGURES)
def test_unit_figure_whose_only_net_failed_says_so(tmp_path, script, statistic, figure):
    """Fig. 7a's one MNIST net (and any unit figure whose nets all failed): the PDF says why it
    is empty, the statistics count the net, nothing crashes."""
    specs = {"sel_s0": {"model": {"batch_norm": True}}}
    with pytest.raises(SystemExit) as done:
        _run_figure(tmp_path, script, {"units": _units(tmp_path, ["sel_s0"])}, {"sel_s0": (2.3, 0.1)}, figure, specs)
    assert done.value.code == 0
    stats = pd.read_csv(tmp_path / "out" / "st.csv").set_index("statistic")
    assert list(stats.index) == ["networks_failed_excluded", "networks_used"]
    assert stats.loc["networks_failed_excluded", "note"].startswith(
        "the only net failed to train: sel_s0 never learned (final training accuracy 0.100 < chance 0.1 + 0.05")
    assert (tmp_path / "out" / "f.pdf").stat().st_size > 1000 and pd.read_csv(tmp_path / "out" / "f.csv").empty


def test_regularizer_figure_leaves_out_failed_clean_nets_and_keeps_corrupted_ones_at_chance(tmp_path):
    """Fig. X4: a clean-label net at chance (its flat curve scores AUC ~1, issue 30) is left out
    and named; a corrupted-label net at chance stays (not memorizing shuffled labels is what
    the memorization comparison measures); a diverged corrupted one is left out."""
    files, finals = [], {}
    for reg, bn in (("none", False), ("reliance", False)):
        for frac in (0.0, 1.0):
            for seed in (0, 1, 2):
                model = f"{reg}_f{frac}_s{seed}"
                row = dict(model=model, experiment="reg", regularizer=reg, strength=0.5 if reg != "none" else 0.0,
                           dropout=0.0, batch_norm=bn, corrupted_fraction=frac, seed=seed, epoch=8, probe="full_auc",
                           value=0.5 + 0.01 * seed, cost_passes=11, test_loss=0.3, test_accuracy=0.9,
                           train_accuracy=0.95 - 0.8 * frac, mean_selectivity=0.4)
                pd.DataFrame([row]).to_csv(tmp_path / f"{model}.csv", index=False)
                files.append(str(tmp_path / f"{model}.csv"))
                finals[model] = (0.3, 0.95 - 0.8 * frac)  # corrupted: 0.15 on shuffled labels, under chance + 0.05
    finals["reliance_f0.0_s2"] = (2.3, 0.1)  # never learned its clean labels
    finals["none_f1.0_s2"] = (float("inf"), float("nan"))  # diverged
    stats, table = _run_figure(tmp_path, "figX4_regularizer_auc.py", {"probes": files}, finals)
    assert "reliance_f0.0_s2" not in set(table["model"]) and "none_f1.0_s2" not in set(table["model"])
    assert {"reliance_f1.0_s2", "none_f1.0_s0"} <= set(table["model"])  # at chance on shuffled labels: kept
    assert stats.loc["networks_failed_excluded", "value"] == 2 and stats.loc["networks_used", "value"] == 10
    assert stats.loc["networks_failed_excluded", "note"] == (
        "excluded 2 of 12 nets: none_f1.0_s2 diverged at epoch 2 (training loss inf); reliance_f0.0_s2 never learned "
        "(final training accuracy 0.100 < chance 0.1 + 0.05, 10 classes)")
    assert stats.loc["auc_reliance_0.5_clean", "n"] == 2 and stats.loc["auc_reliance_0.5_corrupted", "n"] == 3
    assert stats.loc["auc_plain_corrupted", "n"] == 2


def test_early_stopping_figure_whose_only_net_failed_says_so(tmp_path):
    """Fig. 4a (one MNIST net): if it failed, the figure says "the only net failed to train" and
    writes the count under stopping_net_* (the claims: inconclusive), not a crash on no snapshots."""
    pd.DataFrame({"model": "early_stopping_s0", "epoch": [0, 1, 2], "ordering": "random", "auc": [1.0, 1.0, 1.0],
                  "train_loss": [2.3, 2.3, float("nan")], "test_loss": [2.3, 2.3, float("nan")]}).to_csv(
        tmp_path / "snap.csv", index=False)
    # Fig. 4's rule names its early-stopping net's history stopping_histories (no sweep on MNIST)
    stopping = _histories_of(tmp_path / "stopping", {"early_stopping_s0": (float("nan"), 0.1)})
    stats, table = _run_figure(tmp_path, "fig4_selection_and_early_stopping.py",
                               {"snapshots": [str(tmp_path / "snap.csv")], "stopping_histories": stopping}, {},
                               family="mnist")
    assert table.empty and list(stats.index) == ["stopping_net_failed_excluded", "stopping_net_used"]
    assert stats.loc["stopping_net_failed_excluded", "note"] == (
        "the only net failed to train: early_stopping_s0 diverged at epoch 2 (training loss nan)")


def _curves(tmp_path, models, kind="ablation_zero", n_units=10) -> list[str]:
    paths = []
    for i, m in enumerate(models):
        k = np.arange(n_units + 1)
        rows = [pd.DataFrame({"model": m, "ordering": o, "n_ablated": k, "fraction": k / n_units,
                              "accuracy": np.clip(0.95 - (0.05 + 0.01 * i + 0.02 * j) * k, 0.1, 1)})
                for j, o in enumerate(("random_0", "random_1"))]
        pd.concat(rows).to_csv(tmp_path / f"{m}_{kind}.csv", index=False)
        paths.append(str(tmp_path / f"{m}_{kind}.csv"))
    return paths


def test_mean_ablation_figure_leaves_a_failed_net_out(tmp_path):
    """Fig. A1: the paired zero-vs-mean difference over the nets that trained (n = 2 of 3)."""
    models = ["bn_s0", "bn_s1", "bn_s2"]
    stats, table = _run_figure(tmp_path, "figA1_ablation_methods.py",
                               {"zero": _curves(tmp_path, models), "mean": _curves(tmp_path, models, "ablation_mean")},
                               {"bn_s0": (0.2, 0.9), "bn_s1": (0.2, 0.9), "bn_s2": (float("nan"), float("nan"))})
    assert set(table["model"]) == {"bn_s0", "bn_s1"}
    assert stats.loc["auc_difference_zero_minus_mean", "n"] == 2 and stats.loc["auc_zero", "n"] == 2
    assert stats.loc["networks_failed_excluded", "note"] == f"excluded 1 of 3 nets: bn_s2 {DIVERGED}"


def test_dropout_figure_leaves_a_net_at_chance_out(tmp_path):
    """Fig. 5a (issue 30): a net at chance keeps an "accuracy ratio" of ~1 at the dropout
    fraction; it is left out of the curves and the readings, named and counted."""
    models = ["dropout_p0.2_f0.0_s0", "dropout_p0.2_f0.0_s1", "dropout_p0.2_f1.0_s0", "dropout_p0.2_f1.0_s1"]
    specs = {m: {"model": {"dropout": 0.2}, "labels": {"fraction": float(m.split("_f")[1][:3])}} for m in models}
    finals = {m: (0.2, 0.9) for m in models}
    finals["dropout_p0.2_f1.0_s1"] = (2.3, 0.1)
    stats, table = _run_figure(tmp_path, "fig5_regularizers.py", {"curves": _curves(tmp_path, models)}, finals,
                               specs=specs, family="mnist")
    assert "dropout_p0.2_f1.0_s1" not in set(table["model"])
    assert stats.loc["mean_accuracy_past_dropout_p0.2_corrupted", "n"] == 1
    assert stats.loc["past_dropout_difference_clean_minus_corrupted_p0.2", "n"] == 3
    assert stats.loc["networks_failed_excluded", "note"].startswith(
        "excluded 1 of 4 nets: dropout_p0.2_f1.0_s1 never learned (final training accuracy 0.100")


def test_regularizer_curves_leave_a_failed_clean_net_out(tmp_path):
    """Fig. X3: a clean-label net at chance is left out of its condition's band and statistics."""
    files, finals = [], {}
    for seed in (0, 1, 2):
        model = f"reliance_f0.0_s{seed}"
        f = np.linspace(0, 1, 6)
        pd.DataFrame({"model": model, "regularizer": "reliance", "strength": 0.5, "dropout": 0.0, "batch_norm": False,
                      "corrupted_fraction": 0.0, "fraction": f, "accuracy": 0.9 - 0.5 * f}).to_csv(
            tmp_path / f"{model}.csv", index=False)
        files.append(str(tmp_path / f"{model}.csv"))
        finals[model] = (0.3, 0.9) if seed else (2.3, 0.1)
    stats, table = _run_figure(tmp_path, "figX3_regularizer_curves.py", {"curves": files}, finals,
                               figure={"beyond": {"probe_fractions": [0.5]}})
    assert set(table["model"]) == {"reliance_f0.0_s1", "reliance_f0.0_s2"}
    assert stats.loc["accuracy_at_0.5_reliance_0.5_clean", "n"] == 2
    assert stats.loc["networks_failed_excluded", "note"].startswith("excluded 1 of 3 nets: reliance_f0.0_s0 never")


def test_probe_stopping_figure_leaves_a_diverged_net_out(tmp_path):
    """Fig. X2: the seeds' stopping rules over the nets that trained (n = 2 of 3)."""
    from singledir.analysis import probes
    names = probes.probe_names([0.5])
    files, finals = [], {}
    for seed in (0, 1, 2):
        model = f"probe_stopping_s{seed}"
        rows = [{"model": model, "epoch": e, "probe": p, "value": 0.5 + 0.1 * e - 0.03 * e * e, "val_loss": 1 / e + 0.05 * e,
                 "report_loss": 1 / e + 0.05 * e + 0.01 * seed, "report_accuracy": 0.8} for e in (1, 2, 3, 4)
                for p in names]
        pd.DataFrame(rows).to_csv(tmp_path / f"{model}.csv", index=False)
        files.append(str(tmp_path / f"{model}.csv"))
        finals[model] = (float("nan"), float("nan")) if seed == 2 else (0.3, 0.9)
    stats, table = _run_figure(tmp_path, "figX2_probe_stopping.py", {"probes": files}, finals,
                               figure={"beyond": {"probe_fractions": [0.5], "patience": 1}})
    assert "probe_stopping_s2" not in set(table["model"])
    assert stats.loc["test_loss_full_auc_minus_val_loss", "n"] == 2
    assert stats.loc["networks_failed_excluded", "note"] == f"excluded 1 of 3 nets: probe_stopping_s2 {DIVERGED}"


def test_a_net_given_pretrained_weights_is_not_judged(tmp_path):
    """An empty history (model.weights: e.g. ImageNet's selectivity net, the clean-label
    checkpoint) has no training to judge: it counts as trained, never as failed."""
    from singledir.stats.net_tables import final_accuracies
    (tmp_path / "selectivity_s0").mkdir()
    (tmp_path / "selectivity_s0" / "history.csv").write_text("step,epoch,train_loss,train_top1\n")
    nets = final_accuracies([tmp_path / "selectivity_s0" / "history.csv"], 10)
    assert nets["failed"].tolist() == [False] and excluded_note(nets) == ""

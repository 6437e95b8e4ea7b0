"""The convergence gate of the claims that compare two arms of networks (Figs. 5b, 6, A1,
X4; issue 30) and the memorization gate at every corrupted fraction: a net's convergence is
judged from its own history, and a claim with an unconverged arm is inconclusive, its reason
giving the numbers."""
import numpy as np
import pandas as pd
import pytest

from singledir.stats import claims as C
from singledir.stats.net_tables import (CONVERGED_ABSOLUTE_CHANGE, CONVERGED_RELATIVE_CHANGE, convergence_reason,
                                       convergence_stat_rows, convergence_table, unconverged_note)
from singledir.training.convergence import reference_epoch
from test_claims import all_converged, claim, memo, none_failed, write_stats
from test_failed_nets import _curves, _run_figure


def _history(rows, acc=0.9):
    """A history.csv frame from (epoch, train_loss) rows, final training accuracy ``acc``."""
    return pd.DataFrame({"epoch": [e for e, _ in rows], "train_loss": [l for _, l in rows],
                         "train_accuracy": [0.5] * (len(rows) - 1) + [acc]})


# ---------------------------------------------------------------- the rule, per net

def test_reference_epoch_starts_the_last_tenth_of_training():
    assert [reference_epoch(e) for e in (1, 4, 8, 10, 12, 30, 100, 640)] == [0, 3, 7, 9, 10, 27, 90, 576]


def test_a_settled_net_converged_and_a_learning_one_did_not():
    ok, why, numbers = convergence_reason(_history([(0, 2.3), (90, 0.50), (100, 0.49)]))
    assert ok and why == "" and numbers["reference_epoch"] == 90 and numbers["loss_change"] == pytest.approx(-0.01)
    # the case: still learning at the end (-7.2 % of its loss over the last 10 %)
    ok, why, numbers = convergence_reason(_history([(10, 1.52), (12, 1.41)], acc=0.48))
    assert not ok and why == "training loss 1.52 -> 1.41 (-7.2%) from epoch 10 to 12"
    assert numbers["relative_change"] == pytest.approx(-0.11 / 1.52)
    # just inside / outside the 5 % band; a rising loss is as unsettled as a falling one
    assert convergence_reason(_history([(90, 1.0), (100, 1.0 - 0.99 * CONVERGED_RELATIVE_CHANGE)]))[0]
    assert not convergence_reason(_history([(90, 1.0), (100, 1.0 - 1.01 * CONVERGED_RELATIVE_CHANGE)]))[0]
    assert not convergence_reason(_history([(90, 1.0), (100, 1.2)]))[0]


def test_near_zero_loss_is_judged_by_the_absolute_floor():
    # 0.0035 -> 0.0026 is -26 %, but 0.0009 nats: a fitted net (the demo's probe-stopping MLPs)
    assert convergence_reason(_history([(26, 0.0035), (30, 0.0026)]))[0]
    assert not convergence_reason(_history([(90, 0.10), (100, 0.10 - 2 * CONVERGED_ABSOLUTE_CHANGE)]))[0]


def test_corrupted_label_nets_also_converge_by_memorizing():
    learning = [(90, 0.60), (100, 0.30)]  # -50 %
    assert convergence_reason(_history(learning, acc=0.97), corrupted=True)[0]
    ok, why, _ = convergence_reason(_history(learning, acc=0.80), corrupted=True)
    assert not ok and why.endswith("training accuracy 0.800 < 0.95 on its corrupted labels")
    assert not convergence_reason(_history(learning, acc=0.97), corrupted=False)[0]  # clean: the loss decides


def test_histories_that_cannot_show_convergence_say_why():
    ok, why, _ = convergence_reason(_history([(100, 0.4)]))  # written before the loop recorded epoch 90
    assert not ok and "no row at or before epoch 90 (rows at 100" in why
    ok, why, numbers = convergence_reason(_history([(0, 2.3), (50, 0.6), (100, 0.58)]))  # an older row: compared
    assert ok and numbers["reference_epoch"] == 50
    ok, why, _ = convergence_reason(_history([(90, 0.5), (100, float("nan"))]))
    assert not ok and why.startswith("diverged at epoch 100")
    assert convergence_reason(pd.DataFrame(columns=["epoch", "train_loss", "train_accuracy"]))[0]  # pretrained


def test_stat_rows_count_and_name_each_arms_unconverged_nets(tmp_path):
    paths = []
    for model, rows in {"bn_s0": [(9, 0.30), (10, 0.295)], "bn_s1": [(9, 0.31), (10, 0.30)],
                        "nobn_s0": [(9, 1.60), (10, 1.45)], "nobn_s1": [(9, 1.50), (10, 1.49)]}.items():
        (tmp_path / model).mkdir()
        _history(rows).to_csv(tmp_path / model / "history.csv", index=False)
        paths.append(tmp_path / model / "history.csv")
    conv = convergence_table(paths)
    assert conv.set_index("model")["converged"].to_dict() == {"bn_s0": True, "bn_s1": True, "nobn_s0": False,
                                                               "nobn_s1": True}
    rows = {r["statistic"]: r for r in convergence_stat_rows(conv, {"bn": ["bn_s0", "bn_s1"],
                                                                    "nobn": ["nobn_s0", "nobn_s1"]})}
    assert (rows["networks_unconverged_bn"]["value"], rows["networks_unconverged_bn"]["n"]) == (0, 2)
    assert (rows["networks_unconverged_nobn"]["value"], rows["networks_unconverged_nobn"]["n"]) == (1, 2)
    assert rows["networks_unconverged_nobn"]["note"] == (
        "1 of 2 nets did not converge: nobn_s0 training loss 1.6 -> 1.45 (-9.4%) from epoch 9 to 10")
    assert "nobn: 1 of 2" in unconverged_note(list(rows.values()))
    assert convergence_stat_rows(conv, {"": ["bn_s0"]})[0]["statistic"] == "networks_unconverged"


# ---------------------------------------------------------------- the claims' gate

def _fig5b(res, unconverged_nobn=0, note=""):
    write_stats(res, "cifar10", [
        ("fig5", "auc_difference_bn_minus_nobn", 0.06, 0.04, 0.09, 8, "networks", 2 / 70, 2 / 70),
        none_failed("fig5", 8),
        ("fig5", "networks_unconverged_bn", 0, np.nan, np.nan, 4, "networks"),
        ("fig5", "networks_unconverged_nobn", unconverged_nobn, np.nan, np.nan, 4, "networks")])
    if note:
        t = pd.read_csv(res / "stats" / "cifar10.csv")
        t["note"] = np.where(t["statistic"] == "networks_unconverged_nobn", note, "")
        t.to_csv(res / "stats" / "cifar10.csv", index=False)
    return claim("fig5b_batchnorm_auc").evaluate(C.Sources.from_results(res))


def test_a_claim_whose_arm_has_unconverged_nets_is_inconclusive_with_the_numbers(tmp_path):
    note = ("3 of 4 nets did not converge: batch_norm_bn0_s0 training loss 1.52 -> 1.41 (-7.2%) from epoch 10 to 12; "
            "batch_norm_bn0_s1 training loss 1.6 -> 1.5 (-6.3%) from epoch 10 to 12; batch_norm_bn0_s2 training loss "
            "1.48 -> 1.39 (-6.1%) from epoch 10 to 12")
    row = _fig5b(tmp_path / "a", 3, note)
    assert row["verdict"] == "inconclusive"
    assert "not every net converged" in row["reason"] and f"nobn: {note}" in row["reason"]
    assert "(the CI alone would say reproduced)" in row["reason"]
    assert row["reason"].count("did not converge") == 1  # the batch-norm arm converged: not listed
    # the converged design keeps its verdict, and says both arms converged
    row = _fig5b(tmp_path / "b", 0)
    assert row["verdict"] == "reproduced" and row["reason"] == ""
    assert "all 8 nets converged (bn and nobn)" in row["note"]


def test_fig6_a1_and_x4_claims_read_their_arms(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "cifar10", [
        ("fig6", "selectivity_difference_bn_minus_nobn", -0.1, -0.2, -0.05, 12, "networks", 0.002, 0.002),
        ("fig6", "networks_unconverged_bn", 1, np.nan, np.nan, 6, "networks"),
        *all_converged("fig6", ("nobn",), 6),
        ("figA1", "auc_difference_zero_minus_mean", 0.05, 0.02, 0.08, 6, "networks", 0.03, 0.03),
        *all_converged("figA1", ("",), 6),
        ("figX4", "auc_plain_clean", 0.6, 0.5, 0.7, 4, "networks"),
        ("figX4", "auc_diff_reliance_1_minus_plain_clean", 0.1, 0.05, 0.15, 8, "networks", 0.03, 2 / 70),
        ("figX4", "networks_unconverged_reliance_1_clean", 2, np.nan, np.nan, 4, "networks"),
        *all_converged("figX4", ("plain_clean", "batch_norm_clean"))])
    src = C.Sources.from_results(res)
    fig6 = claim("fig6a_batchnorm_selectivity").evaluate(src)
    assert fig6["verdict"] == "inconclusive" and "bn: 1 of 6 nets did not converge" in fig6["reason"]
    a1 = claim("figA1_mean_vs_zero_ablation").evaluate(src)
    assert a1["verdict"] == "reproduced" and "all 6 nets converged" in a1["note"]
    x4 = claim("X4_reliance_raises_auc_cifar10").evaluate(src)
    assert x4["verdict"] == "inconclusive" and "reliance_1_clean: 2 of 4 nets did not converge" in x4["reason"]
    assert C.diff_arms(C.Estimate(0, 0, 0, 8, statistic="train_accuracy_diff_ablation_noise_0.75_minus_plain_"
                                                         "corrupted")) == ["ablation_noise_0.75_corrupted",
                                                                           "plain_corrupted"]


def test_a_figure_without_the_convergence_rows_is_an_error_naming_them(tmp_path):
    res = tmp_path / "results"
    write_stats(res, "cifar10", [
        ("fig5", "auc_difference_bn_minus_nobn", 0.06, 0.04, 0.09, 8, "networks", 2 / 70, 2 / 70),
        none_failed("fig5", 8)])
    with pytest.raises(C.ClaimsInputError, match="networks_unconverged_bn"):
        claim("fig5b_batchnorm_auc").evaluate(C.Sources.from_results(res))


# ---------------------------------------------------------------- the figure scripts write the rows

def test_batch_norm_figure_counts_unconverged_nets_per_arm(tmp_path):
    """Fig. 5b: the histories (loss 1.0 at epoch 1, then the final one at epoch 2) of a no-BN
    net still learning (1.0 -> 0.5) and three settled nets give networks_unconverged_nobn = 1
    of 2 (named, with its numbers), _bn = 0 of 2."""
    models = ["bn1_s0", "bn1_s1", "bn0_s0", "bn0_s1"]
    specs = {m: {"model": {"batch_norm": m.startswith("bn1")}} for m in models}
    finals = {"bn1_s0": (0.99, 0.9), "bn1_s1": (0.98, 0.9), "bn0_s0": (0.99, 0.9), "bn0_s1": (0.5, 0.9)}
    stats, _ = _run_figure(tmp_path, "fig5_regularizers.py", {"curves": _curves(tmp_path, models)}, finals, specs=specs)
    assert (stats.loc["networks_unconverged_bn", "value"], stats.loc["networks_unconverged_bn", "n"]) == (0, 2)
    assert (stats.loc["networks_unconverged_nobn", "value"], stats.loc["networks_unconverged_nobn", "n"]) == (1, 2)
    assert stats.loc["networks_unconverged_nobn", "note"] == (
        "1 of 2 nets did not converge: bn0_s1 training loss 1 -> 0.5 (-50.0%) from epoch 1 to 2")
    assert "not converged" in (tmp_path / "f.log").read_text()


def test_regularizer_figure_judges_corrupted_nets_by_memorization_too(tmp_path):
    """Fig. X4: per condition and labels; a corrupted-label net whose loss still fell but that
    memorized its labels (training accuracy >= 0.95) converged, one at 0.6 did not."""
    files, finals = [], {}
    for reg in ("none", "reliance"):
        for frac in (0.0, 1.0):
            for seed in (0, 1):
                model = f"{reg}_f{frac}_s{seed}"
                pd.DataFrame([dict(model=model, experiment="reg", regularizer=reg,
                                   strength=0.5 if reg != "none" else 0.0, dropout=0.0, batch_norm=False,
                                   corrupted_fraction=frac, seed=seed, epoch=2, probe="full_auc", value=0.5,
                                   cost_passes=11, test_loss=0.3, test_accuracy=0.9, train_accuracy=0.97,
                                   mean_selectivity=0.4)]).to_csv(tmp_path / f"{model}.csv", index=False)
                files.append(str(tmp_path / f"{model}.csv"))
                finals[model] = (0.99, 0.97) if frac == 0 else (0.3, 0.97)  # corrupted: loss -70 %, memorized
    finals["reliance_f1.0_s1"] = (0.3, 0.6)  # corrupted, still learning, not memorized
    stats, _ = _run_figure(tmp_path, "figX4_regularizer_auc.py", {"probes": files}, finals)
    assert stats.loc["networks_unconverged_plain_corrupted", "value"] == 0
    assert stats.loc["networks_unconverged_reliance_0.5_corrupted", "value"] == 1
    assert "reliance_f1.0_s1 training loss 1 -> 0.3" in stats.loc["networks_unconverged_reliance_0.5_corrupted", "note"]
    assert stats.loc["networks_unconverged_reliance_0.5_clean", "value"] == 0


def test_mean_ablation_figure_counts_its_unconverged_nets(tmp_path):
    models = ["bn_s0", "bn_s1"]
    stats, _ = _run_figure(tmp_path, "figA1_ablation_methods.py",
                           {"zero": _curves(tmp_path, models), "mean": _curves(tmp_path, models, "ablation_mean")},
                           {"bn_s0": (0.99, 0.9), "bn_s1": (0.4, 0.9)})
    assert (stats.loc["networks_unconverged", "value"], stats.loc["networks_unconverged", "n"]) == (1, 2)


# ---------------------------------------------------------------- memorization at every corrupted fraction

def _fig1(res, by_fraction: dict):
    rows = [("fig1", "spearman_auc_vs_corrupted_fraction", -0.94, -1.0, -0.8, 6, "networks", 0.003, 0.0028),
            none_failed("fig1"), memo("fig1", by_fraction[max(by_fraction)])]
    rows += [("fig1", f"final_train_accuracy_min_fraction_{f:g}", a, np.nan, np.nan, 1, "networks", np.nan, np.nan)
             for f, a in by_fraction.items()]
    write_stats(res, "mnist", rows)
    return claim("fig1a_auc_vs_corruption").evaluate(C.Sources.from_results(res))


def test_memorization_gate_holds_at_every_corrupted_fraction(tmp_path):
    # the most-corrupted nets memorized, but those at 20 % and 60 % did not: inconclusive, naming both
    row = _fig1(tmp_path / "a", {0.0: 1.0, 0.2: 0.91, 0.4: 0.99, 0.6: 0.949, 1.0: 0.99})
    assert row["verdict"] == "inconclusive"
    assert ("the nets at corrupted fraction 0.2 (lowest final training accuracy 0.910), 0.6 (lowest final training "
            "accuracy 0.949) did not memorize their labels (< 0.95)") in row["reason"]
    assert "fraction 0.4" not in row["reason"] and ", 0.4 (" not in row["reason"]
    # every corrupted fraction memorized; a clean net below the gate is not gated (fraction 0)
    row = _fig1(tmp_path / "b", {0.0: 0.9, 0.2: 0.96, 1.0: 0.99})
    assert row["verdict"] == "reproduced"
    assert "the nets at every corrupted fraction memorized their labels (final training accuracy >= 0.960)" in row["note"]

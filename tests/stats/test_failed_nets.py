"""Nets that failed to train: chance comes from the data's class count, diverged nets are
named with the epoch they diverged in, and the claims exclude, count and name them."""
import numpy as np
import pandas as pd
import pytest

from singledir.stats import claims as C
from singledir.stats.beyond_claims import ALL_CLAIMS
from singledir.stats.net_tables import (data_class_count, excluded_note, failed_stat_rows, failure_reason,
                                       final_performance, training_failed)


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

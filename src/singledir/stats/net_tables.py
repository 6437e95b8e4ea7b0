"""Per-network tables for figures that compare many networks (Figs. 3, 4c, 5b).

Built from the per-model workflow outputs: ``history.csv`` (loss and accuracy per epoch)
and the tidy ablation curves (:func:`singledir.engine.ablation.cumulative_ablation_curve`).
Each net's history also says whether it trained (:func:`failure_reason`) and whether it
converged (:func:`convergence_table`).
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from singledir.analysis.auc import curve_aucs
from singledir.training.convergence import CONVERGENCE_WINDOW, reference_epoch


def final_performance(history_paths: Iterable[str | os.PathLike], n_classes: int) -> pd.DataFrame:
    """One row per model: the last epoch of its ``models/<family>/<model>/history.csv``.

    Columns: model (the history file's folder name), epoch, train/test loss and accuracy,
    ``failed``, ``diverged`` and ``failure`` (:func:`failure_reason`; chance is
    1 / ``n_classes``, the data's class count, :func:`data_class_count`),
    generalization_error (1 - test accuracy) and generalization_gap (train - test accuracy).
    """
    rows = []
    for path in history_paths:
        last = _last_row(path)
        rows.append({"model": os.path.basename(os.path.dirname(os.fspath(path))), "epoch": int(last["epoch"]),
                     "train_loss": last["train_loss"], "train_accuracy": last["train_accuracy"],
                     "test_loss": last["test_loss"], "test_accuracy": last["test_accuracy"],
                     **_failure_columns(last["train_loss"], last["train_accuracy"], n_classes,
                                        f"epoch {int(last['epoch'])}")})
    out = pd.DataFrame(rows)
    out["generalization_error"] = 1.0 - out["test_accuracy"]
    out["generalization_gap"] = out["train_accuracy"] - out["test_accuracy"]
    return out


def final_accuracies(history_paths: Iterable[str | os.PathLike], n_classes: int) -> pd.DataFrame:
    """One row per model: final train loss, train and test accuracy, ``failed``,
    ``diverged`` and ``failure`` (as :func:`final_performance`).

    Reads epoch-based histories (MNIST/CIFAR-10: train/test accuracy evaluated after the
    last epoch) and step-based ImageNet histories (``train_accuracy`` of the final row,
    measured in eval mode on a fixed subset of the training images with the net's own labels,
    singledir.training.distributed; ``train_top1`` in histories written before that; no test
    accuracy, so nan). An empty history is a net given pretrained weights
    (``model.weights``, e.g. ImageNet's selectivity net: the clean-label checkpoint), not
    trained here: nothing to judge, so it counts as trained (its own training was judged
    where it ran), with nan accuracies.
    """
    rows = []
    for path in history_paths:
        if pd.read_csv(path).empty:
            nan = float("nan")
            rows.append({"model": os.path.basename(os.path.dirname(os.fspath(path))), "train_loss": nan,
                         "train_accuracy": nan, "test_accuracy": nan, "failed": False, "diverged": False,
                         "failure": ""})
            continue
        last = _last_row(path)
        epochs = "epoch" in last and pd.notna(last["epoch"])
        acc = last["train_accuracy"] if "train_accuracy" in last else last["train_top1"]
        rows.append({"model": os.path.basename(os.path.dirname(os.fspath(path))),
                     "train_loss": last["train_loss"], "train_accuracy": acc,
                     "test_accuracy": last["test_accuracy"] if "test_accuracy" in last else float("nan"),
                     **_failure_columns(last["train_loss"], acc, n_classes,
                                        f"epoch {int(last['epoch'])}" if epochs else f"step {int(last['step'])}")})
    return pd.DataFrame(rows)


def _last_row(path: str | os.PathLike) -> pd.Series:
    """The last row of a history (by epoch, or by step for step-based training)."""
    h = pd.read_csv(path)
    if h.empty:
        raise ValueError(f"{path}: empty training history")
    by = "epoch" if "epoch" in h and h["epoch"].notna().any() else "step"
    return h.sort_values(by).iloc[-1]


def _failure_columns(train_loss, train_accuracy, n_classes: int, when: str) -> dict:
    why = failure_reason(train_loss, train_accuracy, n_classes, when)
    return {"failed": bool(why), "diverged": why.startswith("diverged"), "failure": why}


def memorization_rows(nets: pd.DataFrame) -> list[dict]:
    """Stats rows (Figs. 1, 2): per corrupted fraction, the lowest final training
    accuracy of its nets, and ``final_train_accuracy_min_most_corrupted`` for the nets at
    the largest fraction (the memorization gate of the corruption claims)."""
    nan = float("nan")
    rows = []
    for f, g in nets.groupby("corrupted_fraction"):
        rows.append({"statistic": f"final_train_accuracy_min_fraction_{f:g}", "value": float(g["train_accuracy"].min()),
                     "ci_low": nan, "ci_high": nan, "n": len(g), "unit": "networks", "p": nan, "p_min": nan})
    top = nets[nets["corrupted_fraction"] == nets["corrupted_fraction"].max()]
    rows.append({"statistic": "final_train_accuracy_min_most_corrupted", "value": float(top["train_accuracy"].min()),
                 "ci_low": nan, "ci_high": nan, "n": len(top), "unit": "networks", "p": nan, "p_min": nan})
    return rows


# The paper's corrupted-label nets fit their training labels (curves start at ~1.0): a net
# trained on labels of which any fraction is shuffled has memorized them when its final
# training accuracy, against the labels it was trained on, is at least this (the claims'
# memorization gate, at every corrupted fraction; and such a net counts as converged).
MEMORIZATION_THRESHOLD = 0.95

# Convergence (the gate of the claims that compare two arms of networks: Figs. 5b, 6, A1,
# X4). A net has converged when its training loss (whole training set, eval mode, as the
# history records it) changed over the last 10 % of its epochs (from epoch floor(0.9 E), a
# row the loop always records, to the final epoch E) by at most CONVERGED_RELATIVE_CHANGE of
# its value there, or by at most CONVERGED_ABSOLUTE_CHANGE nats (near zero loss a relative
# change is noise: the demo's fitted MLPs went from 0.0035 to 0.0026 nats, -25 %). A net
# trained on corrupted labels has also converged when it memorized them
# (MEMORIZATION_THRESHOLD). Why 5 %: at that rate, training as long again would still lower
# the loss by up to ~40 % (0.95^10); a net still learning (the laptop-scale CIFAR-10
# early-stopping net: 0.267 -> 0.157 nats, -41 %, from epoch 26 to 30) is far above it.
CONVERGED_RELATIVE_CHANGE = 0.05
CONVERGED_ABSOLUTE_CHANGE = 0.01


def convergence_reason(history: pd.DataFrame, corrupted: bool = False) -> tuple[bool, str, dict]:
    """Whether one net's history (``history.csv``) shows a converged net: (converged, why
    not, the numbers). The numbers: reference and final epoch (or step, for step-based
    histories), training loss at both, the change and its relative size, final training
    accuracy. The rule is above :data:`CONVERGED_RELATIVE_CHANGE`. An empty history (a net
    given pretrained weights, not trained here) is not judged and counts as converged; a
    history without a row at or before the reference epoch (only the final row: written before
    the loop recorded that epoch) cannot show convergence, and says so; where the row at
    the reference epoch is missing but an earlier one exists, that one is compared (a longer
    window: stricter)."""
    nan = float("nan")
    numbers = {"reference_epoch": nan, "final_epoch": nan, "loss_reference": nan, "loss_final": nan,
               "loss_change": nan, "relative_change": nan, "train_accuracy": nan}
    if history.empty:
        return True, "", numbers
    by = "epoch" if "epoch" in history and history["epoch"].notna().any() else "step"
    h = history[history[by].notna()].sort_values(by)
    last = h.iloc[-1]
    final_t = int(last[by])
    acc_col = "train_accuracy" if "train_accuracy" in h and pd.notna(last.get("train_accuracy")) else "train_top1"
    acc = float(pd.to_numeric(last.get(acc_col, nan), errors="coerce"))
    loss_final = float(pd.to_numeric(last["train_loss"], errors="coerce"))
    numbers.update(final_epoch=final_t, loss_final=loss_final, train_accuracy=acc)
    if not np.isfinite(loss_final):
        return False, f"diverged at {by} {final_t} (training loss {loss_final})", numbers
    if corrupted and acc >= MEMORIZATION_THRESHOLD:
        return True, "", numbers  # memorized its corrupted labels
    ref_t = reference_epoch(final_t)
    before = h[h[by] <= ref_t]
    if before.empty:
        return False, (f"convergence not shown: its history has no row at or before {by} {ref_t} (rows at "
                       f"{', '.join(str(int(t)) for t in h[by])}; written before the training loop recorded that "
                       f"{by}: retrain it)"), numbers
    ref = before.iloc[-1]
    loss_ref = float(pd.to_numeric(ref["train_loss"], errors="coerce"))
    change = loss_final - loss_ref
    rel = change / loss_ref if loss_ref > 0 else nan
    numbers.update(reference_epoch=int(ref[by]), loss_reference=loss_ref, loss_change=change, relative_change=rel)
    if abs(change) <= max(CONVERGED_RELATIVE_CHANGE * abs(loss_ref), CONVERGED_ABSOLUTE_CHANGE):
        return True, "", numbers
    memo = (f"; training accuracy {acc:.3f} < {MEMORIZATION_THRESHOLD:g} on its corrupted labels" if corrupted
            else "")
    return False, (f"training loss {loss_ref:.3g} -> {loss_final:.3g} ({rel:+.1%}) from {by} {int(ref[by])} to "
                   f"{final_t}{memo}"), numbers


def convergence_table(history_paths: Iterable[str | os.PathLike],
                      corrupted: Mapping[str, bool] | None = None) -> pd.DataFrame:
    """One row per model (the history file's folder name): ``converged``, ``convergence``
    (why not, "" when converged) and the numbers behind it (:func:`convergence_reason`).
    ``corrupted``: model -> whether it was trained on corrupted labels (default: none was)."""
    rows = []
    for path in history_paths:
        model = os.path.basename(os.path.dirname(os.fspath(path)))
        ok, why, numbers = convergence_reason(pd.read_csv(path), bool((corrupted or {}).get(model, False)))
        rows.append({"model": model, "converged": ok, "convergence": why, **numbers})
    return pd.DataFrame(rows, columns=["model", "converged", "convergence", "reference_epoch", "final_epoch",
                                       "loss_reference", "loss_final", "loss_change", "relative_change",
                                       "train_accuracy"])


def convergence_stat_rows(conv: pd.DataFrame, arms: Mapping[str, Iterable[str]], shown: int = 5) -> list[dict]:
    """Stats rows of the convergence gate: per arm (name -> its models, those the figure
    used), ``networks_unconverged_<arm>`` (``networks_unconverged`` for the arm named "") with
    how many of the arm's ``n`` nets did not converge and, in its ``note``, each named with
    its numbers: "2 of 4 nets did not converge: batch_norm_bn0_s0 training loss 1.52 -> 1.41
    (-7.2%) from epoch 10 to 12; ..." (the first ``shown``). ``conv``: :func:`convergence_table`."""
    nan = float("nan")
    by_model = conv.set_index("model")
    rows = []
    for arm, models in arms.items():
        models = list(dict.fromkeys(models))
        bad = [(m, by_model.loc[m, "convergence"]) for m in models if not bool(by_model.loc[m, "converged"])]
        note = ""
        if bad:
            more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
            note = (f"{len(bad)} of {len(models)} nets did not converge: "
                    + "; ".join(f"{m} {why}" for m, why in bad[:shown]) + more)
        rows.append({"statistic": "networks_unconverged" + (f"_{arm}" if arm else ""), "value": len(bad),
                     "ci_low": nan, "ci_high": nan, "n": len(models), "unit": "networks", "p": nan, "p_min": nan,
                     "note": note})
    return rows


def unconverged_note(rows: list[dict]) -> str:
    """For the note under a figure: "not converged: nobn: 3 of 4 nets (converged: ...); ...",
    from :func:`convergence_stat_rows` (its arms' counts), or "" when every net converged."""
    bad = [f"{r['statistic'].removeprefix('networks_unconverged').lstrip('_') or 'nets'}: {r['value']} of {r['n']}"
           for r in rows if r["value"]]
    return (f"not converged: " + ", ".join(bad) + f" nets (converged: {convergence_rule()}); claims comparing "
            "these arms are inconclusive") if bad else ""


def convergence_rule() -> str:
    """The convergence rule in words (figure notes, the claims table's rules, docs)."""
    return (f"training loss changed by at most {CONVERGED_RELATIVE_CHANGE:.0%} (or {CONVERGED_ABSOLUTE_CHANGE:g} "
            f"nats) over the last {CONVERGENCE_WINDOW:.0%} of epochs, or corrupted labels memorized (training "
            f"accuracy >= {MEMORIZATION_THRESHOLD:g})")


# A net "failed to train" when its final training accuracy is within this margin of chance
# (1 / the data's number of classes) or its final loss is not finite (diverged: the training
# loop ends such a net with a history row holding the NaN or inf loss). Such a net's flat
# ablation curve scores the maximal normalized AUC of 1.0 (and a net at chance keeps its
# "accuracy ratio" of ~1), so every figure leaves it out (Figs. 3-7, A1-A4, X1-X4), counts
# and names it (failed_stat_rows); Figs. 1-2 exclude diverged nets only (a corrupted net near
# chance is data there: the claims' memorization gate reports it).
FAILED_MARGIN = 0.05


def data_class_count(path: str | os.PathLike) -> int:
    """The number of classes of a family's prepared data, where chance (1 / classes) comes
    from: ``n_classes`` of ``dataset.npz``, or the largest target + 1 of an image index
    (``index.csv.gz``, as training counts them). Torch-free: figure jobs call it."""
    path = os.fspath(path)
    if path.endswith(".npz"):
        with np.load(path) as f:
            return int(f["n_classes"])
    return int(pd.read_csv(path, usecols=["target"])["target"].max()) + 1


def failure_reason(train_loss, train_accuracy, n_classes: int, when: str = "", margin: float = FAILED_MARGIN) -> str:
    """Why a net failed to train, from its final training loss and accuracy: "diverged at
    <when> (training loss nan)", "never learned (...)" (accuracy below chance + ``margin``,
    chance = 1 / ``n_classes``), or "" when it trained."""
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be at least 2 (got {n_classes}): chance is 1 / the data's class count")
    loss, acc = (float(pd.to_numeric(v, errors="coerce")) for v in (train_loss, train_accuracy))
    at = f" at {when}" if when else ""
    if not np.isfinite(loss):
        return f"diverged{at} (training loss {loss})"
    if not np.isfinite(acc):
        return f"diverged{at} (training accuracy {acc})"
    chance = 1.0 / int(n_classes)
    if acc < chance + margin:
        return (f"never learned (final training accuracy {acc:.3f} < chance {chance:.3g} + {margin:g}, "
                f"{int(n_classes)} classes)")
    return ""


def training_failed(nets: pd.DataFrame, n_classes: int, margin: float = FAILED_MARGIN) -> pd.Series:
    """Per row of a table with ``train_loss`` and ``train_accuracy`` (e.g.
    :func:`final_performance`): True if the net never learned (training accuracy < chance
    + ``margin``, chance = 1 / ``n_classes``, the data's class count) or diverged
    (non-finite train loss or accuracy); :func:`failure_reason` says which."""
    return pd.Series([bool(failure_reason(loss, acc, n_classes, margin=margin))
                      for loss, acc in zip(nets["train_loss"], nets["train_accuracy"])],
                     index=nets.index, name="failed", dtype=bool)


def failed_stat_rows(nets: pd.DataFrame, column: str = "failed", shown: int = 5, name: str = "networks") -> list[dict]:
    """Stats rows reporting how many nets a figure used and how many it excluded
    (``nets[column]`` True), the excluded ones named with their reason (``failure``) in the
    row's ``note``: "excluded 2 of 24 nets: sweep_lr0.5_bs16_s0 diverged at epoch 3 (training
    loss nan); ..." (the first ``shown``, then how many more). The statistics are
    ``<name>_failed_excluded`` and ``<name>_used`` (Fig. 4a-b: ``stopping_net``, its one
    early-stopping net, beside Fig. 4c's sweep)."""
    nan = float("nan")
    failed = nets[column].astype(bool)
    return [{"statistic": f"{name}_failed_excluded", "value": int(failed.sum()), "ci_low": nan, "ci_high": nan,
             "n": len(nets), "unit": "networks", "p": nan, "p_min": nan, "note": excluded_note(nets, column, shown)},
            {"statistic": f"{name}_used", "value": int((~failed).sum()), "ci_low": nan, "ci_high": nan,
             "n": len(nets), "unit": "networks", "p": nan, "p_min": nan}]


def excluded_note(nets: pd.DataFrame, column: str = "failed", shown: int = 5) -> str:
    """"excluded 2 of 24 nets: <model> <reason>; ..." for the rows where ``nets[column]``
    is True (the table's ``model`` column, or its index), "the only net failed to train:
    <model> <reason>" for a figure of one net, or "" when none is."""
    bad = nets[nets[column].astype(bool)]
    if bad.empty:
        return ""
    names = bad["model"] if "model" in bad else pd.Series(bad.index, index=bad.index)
    reasons = bad["failure"] if "failure" in bad else pd.Series("failed to train", index=bad.index)
    parts = [f"{m} {r}" for m, r in list(zip(names, reasons))[:shown]]
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    if len(nets) == 1:
        return "the only net failed to train: " + parts[0]
    return f"excluded {len(bad)} of {len(nets)} nets: " + "; ".join(parts) + more


def without_failed(table: pd.DataFrame, nets: pd.DataFrame, column: str = "failed") -> pd.DataFrame:
    """The rows of a per-model ``table`` (column ``model``: curves, units, probes) whose net
    trained: the models marked ``nets[column]`` (:func:`final_accuracies`) are left out."""
    return table[~table["model"].isin(nets.loc[nets[column].astype(bool), "model"])]


def keep_trained(table: pd.DataFrame, nets: pd.DataFrame, column: str = "failed") -> tuple[pd.DataFrame, str]:
    """The failed-net filter of the figure scripts: the rows of a per-model ``table`` whose
    net trained (:func:`without_failed`) and the note naming the nets left out
    (:func:`excluded_note`, "" when none is). The note, or "no net failed to train", is
    printed: the scripts run under singledir.pipeline.logs.log_to, so it lands in the job's
    log. The caller draws the note under the figure, and when nothing is left, calls
    singledir.figures.plotting.no_net_left (a layer above this one)."""
    note = excluded_note(nets, column)
    print(note or "no net failed to train")
    return without_failed(table, nets, column), note


def excluded_by_labels(nets: pd.DataFrame, corrupted: pd.Series) -> pd.Series:
    """Per row of a :func:`final_accuracies` table, whether a figure comparing clean- and
    corrupted-label arms (Figs. X3-X4) leaves the net out: on clean labels when it failed to
    train, on corrupted labels only when it diverged (as Figs. 1-2: a net that never fits
    shuffled labels is what the memorization comparison measures). ``corrupted``: model ->
    whether it was trained on corrupted labels."""
    on_corrupted = nets["model"].map(corrupted).fillna(False).astype(bool)
    return pd.Series(np.where(on_corrupted, nets["diverged"], nets["failed"]).astype(bool), index=nets.index,
                     name="excluded")


def model_aucs(curves: pd.DataFrame) -> pd.DataFrame:
    """Normalized and raw AUC per (model, ordering) of tidy curves (columns model, ordering, auc, raw_auc)."""
    keep = [c for c in ("model", "ordering", "n_ablated", "fraction", "accuracy", "loss") if c in curves]
    return curve_aucs(curves[keep])


def mean_auc(curves: pd.DataFrame) -> pd.DataFrame:
    """Per model, over its orderings: mean and std of the normalized AUC and the mean raw
    area (columns model, auc, auc_std, raw_auc)."""
    a = model_aucs(curves)
    g = a.groupby("model", sort=False)
    return g["auc"].agg(auc="mean", auc_std="std").join(g["raw_auc"].mean()).reset_index()


def with_corrupted_fraction(paths: Iterable[str | os.PathLike], specs: dict) -> pd.DataFrame:
    """The tidy per-model tables at ``paths`` stacked, with each row's model's
    corrupted-label fraction (from its spec) as column ``corrupted_fraction`` (second)."""
    table = pd.concat([pd.read_csv(p) for p in paths])
    table.insert(1, "corrupted_fraction", table["model"].map(lambda m: specs[m]["labels"]["fraction"]))
    return table


def spec_value(models: Sequence[str], specs: dict, section: str, key: str, default=None) -> list:
    """``specs[m][section][key]`` for each model id (e.g. ('train', 'lr'))."""
    return [specs[m][section].get(key, default) for m in models]


def extremes(nets: pd.DataFrame, by: str, k: int) -> tuple[list[str], list[str]]:
    """Model ids of the k smallest and k largest values of ``by`` (ties: table order).

    With fewer than 2k networks, k shrinks to half of them so the groups never overlap.
    """
    k = max(1, min(int(k), len(nets) // 2))
    order = nets.sort_values(by, kind="stable")["model"].tolist()
    return order[:k], order[-k:]


def curve_matrix(curves: pd.DataFrame, x: str = "n_ablated", y: str = "accuracy") -> tuple[np.ndarray, np.ndarray]:
    """(x values, rows = (model, ordering) x columns = x) for :func:`singledir.figures.plotting.band`."""
    t = curves.pivot_table(index=["model", "ordering"], columns=x, values=y)
    return t.columns.values, t.values


def dropout_readings(curves: pd.DataFrame) -> pd.DataFrame:
    """Fig. 5a, per (model, dropout, corrupted, ordering): ``kept`` = accuracy at exactly
    round(p * N) units ablated / unablated accuracy, and ``past`` = mean accuracy from
    there to all units ablated (trapezoid over the fraction) / the accuracy there.

    ``curves`` has columns model, dropout, corrupted_fraction, ordering, n_ablated,
    fraction, accuracy. A curve without the point round(p * N) is an error (rule
    ablation_curve adds it for dropout nets), never a read at a neighbouring point.
    """
    n_total = int(curves["n_ablated"].max())
    rows = []
    for (model, p, f, o), g in curves.groupby(["model", "dropout", "corrupted_fraction", "ordering"]):
        g = g.sort_values("n_ablated")
        k = int(round(p * n_total))
        at = g.loc[g["n_ablated"] == k, "accuracy"]
        if at.empty:
            raise ValueError(f"{model}: its ablation curve has no point at round({p:g} x {n_total}) = {k} units; "
                             "rerun rule ablation_curve (it adds that point for dropout nets)")
        at_p, base = float(at.iloc[0]), float(g["accuracy"].iloc[0])
        past = g[g["n_ablated"] >= k]
        span = float(past["fraction"].iloc[-1] - past["fraction"].iloc[0])
        mean_past = float(np.trapezoid(past["accuracy"], past["fraction"]) / span) if span > 0 else at_p
        rows.append({"model": model, "dropout": p, "corrupted": f > 0, "ordering": o, "n_at_p": k,
                     "kept": at_p / max(base, 1e-12), "past": mean_past / max(at_p, 1e-12)})
    return pd.DataFrame(rows)


def live_map_summary(units: pd.DataFrame, high_selectivity: float = 0.5) -> pd.DataFrame:
    """Fig. 6, one row per (model, batch_norm): median selectivity and median mutual
    information of the live feature maps, the fraction of live maps with selectivity
    above ``high_selectivity``, and the dead fraction (maps with no activity on the test
    set, selectivity 0 by definition, so left out of the other three); and the same over
    all maps, as the paper's footnote 4 counts them: ``median_selectivity_all_maps`` (dead
    maps at 0) and ``high_selectivity_or_dead_fraction``."""
    rows = []
    for (model, bn), g in units.groupby(["model", "batch_norm"], sort=False):
        dead = g["mean_activity"] <= 0
        live = g[~dead]
        rows.append({"model": model, "batch_norm": bn, "median_selectivity": live["selectivity"].median(),
                     "median_mi": live["mutual_information"].median(),
                     "high_selectivity_fraction": float((live["selectivity"] > high_selectivity).mean())
                     if len(live) else float("nan"),
                     "dead_fraction": float(dead.mean()), "n_maps": len(g),
                     # all maps (paper footnote 4: "a large fraction of feature maps with high class
                     # selectivity -- and dead feature maps"): dead maps at their selectivity of 0
                     "median_selectivity_all_maps": g["selectivity"].where(~dead, 0.0).median(),
                     "high_selectivity_or_dead_fraction": float(((g["selectivity"] > high_selectivity) & ~dead
                                                                 | dead).mean())})
    return pd.DataFrame(rows)

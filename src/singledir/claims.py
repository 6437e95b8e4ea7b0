"""The paper's claims next to ours: one row per claim, with a 95 % bootstrap CI and a verdict.

Each :class:`Claim` names the paper figure, the family whose results test it, what the
paper says (an :class:`Expectation`), the unit of resampling behind the CI, and how our
estimate is computed: most claims read one statistic that a figure rule wrote to
``results/stats/<family>.csv`` (value, CI, n already bootstrapped by that rule); a few
combine a figure's tidy table ``results/<figure>_<family>.csv`` and are bootstrapped here
(:func:`bootstrap_ci`, stratified so each network or layer keeps its size).

When is a claim "reproduced"? (:data:`RULES`, printed under the table in claims.md)

* direction ("< 0", "> 0", "> 0.9"): yes iff the whole 95 % CI lies on the paper's side
  of the reference value. A point estimate on the right side with a CI that crosses the
  reference is "no", with a note.
* value (the paper reports a number, e.g. Spearman -0.728): yes iff (a) the sign agrees
  as for a direction claim (skipped when the paper's own value is not significantly
  different from zero, e.g. Fig. 7a's 0.095 with p = 0.288) and (b) the paper's number
  lies within our 95 % CI widened by a per-claim tolerance (0.1 for correlations, 10
  percentage points for selection rates, the paper's 1.1 % std for the gap to the best
  model, one snapshot interval for epochs).
* negligible ("~ 0", "poor predictor"): yes iff the whole 95 % CI lies inside
  (-0.3, 0.3), i.e. we can rule out more than a weak correlation; a CI that is merely
  wide (too few units) is "no".
* not run: the family or figure was not run (its stats rows / tidy table are absent
  or the family is disabled); never an error. A figure that ran but lacks a statistic
  the claim needs is an error (a broken contract between figure script and claims).
A statistic or CI that is not finite is "no", with a note.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sstats

FAMILY_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "imagenet": "ImageNet"}
COLUMNS = ["claim_id", "figure", "family", "statement", "quantity", "paper_value", "our_value", "ci_low",
           "ci_high", "n", "resampling", "rule", "reproduced", "note"]
NEGLIGIBLE_BOUND = 0.3
CORRELATION_TOL = 0.1

RULES = {
    "direction": "yes iff the whole 95 % CI lies on the paper's side of the reference value",
    "value": ("yes iff the sign agrees (CI excludes 0 on the paper's side, unless the paper's own value was "
              "not significant) and the paper's number lies within our 95 % CI widened by the claim's tolerance"),
    "negligible": f"yes iff the whole 95 % CI lies inside (-{NEGLIGIBLE_BOUND:g}, {NEGLIGIBLE_BOUND:g})",
    "not run": "the family or figure was not run (disabled, or its results are absent)",
}


class NotRun(Exception):
    """The results a claim needs were not produced (family or figure not run)."""


class ClaimsInputError(ValueError):
    """A figure ran but its results lack what a claim needs; the message names both."""


# ---------------------------------------------------------------------------- bootstrap

def bootstrap_ci(statistic: Callable[[list[np.ndarray]], float], strata: Sequence, n_boot: int = 1000,
                 seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(strata)``, resampling rows within each stratum.

    ``strata`` is a list of arrays (rows = the unit of resampling, e.g. the orderings of one
    network, or the units of one layer); every resample draws ``len(s)`` rows with
    replacement from each stratum ``s`` independently, so strata keep their sizes. Resamples
    whose statistic is not finite are dropped; (nan, nan) if none is finite.
    """
    strata = [np.asarray(s) for s in strata]
    if not strata or any(len(s) == 0 for s in strata):
        raise ValueError("bootstrap_ci: every stratum needs at least one row")
    rng = np.random.default_rng(seed)
    vals = np.empty(n_boot)
    for b in range(n_boot):
        vals[b] = statistic([s[rng.integers(0, len(s), len(s))] for s in strata])
    vals = vals[np.isfinite(vals)]
    if not len(vals):
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(vals, alpha)), float(np.quantile(vals, 1 - alpha))


def spearman_r(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); nan when either side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(sstats.rankdata(x), sstats.rankdata(y))[0, 1])


# ---------------------------------------------------------------------------- inputs

@dataclass
class Sources:
    """Where a claim finds its inputs: per-family stats tables and per-figure tidy tables.

    ``stats`` maps family -> results/stats/<family>.csv; ``tables`` maps
    (figure, family) -> results/<figure>_<family>.csv. Only the files passed in are used,
    so a disabled family's stale results are never read.
    """

    stats: dict[str, Path] = field(default_factory=dict)
    tables: dict[tuple[str, str], Path] = field(default_factory=dict)
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike]) -> "Sources":
        """Sort files by name: ``stats/<family>.csv`` or ``<figure>_<family>.csv``."""
        src = cls()
        for p in map(Path, paths):
            if p.parent.name == "stats" and p.suffix == ".csv":
                src.stats[p.stem] = p
            elif m := re.fullmatch(r"(fig[A-Za-z0-9]+)_([a-z0-9]+)\.csv", p.name):
                src.tables[(m.group(1), m.group(2))] = p
            else:
                raise ClaimsInputError(f"claims input {p}: expected results/stats/<family>.csv or "
                                       "results/<figure>_<family>.csv")
        return src

    @classmethod
    def from_results(cls, results: str | os.PathLike) -> "Sources":
        """Every stats and tidy figure table present under a results directory."""
        results = Path(results)
        paths = list((results / "stats").glob("*.csv")) + [
            p for p in results.glob("fig*_*.csv") if re.fullmatch(r"fig[A-Za-z0-9]+_[a-z0-9]+\.csv", p.name)]
        return cls.from_paths(paths)

    def _read(self, path: Path) -> pd.DataFrame:
        if path not in self._cache:
            self._cache[path] = pd.read_csv(path)
        return self._cache[path]

    def stat(self, family: str, figure: str, statistic: str) -> dict:
        """One row of results/stats/<family>.csv as a dict (value, ci_low, ci_high, n, p)."""
        if family not in self.stats:
            raise NotRun(f"{FAMILY_NAMES.get(family, family)} was not run (no results/stats/{family}.csv)")
        path = self.stats[family]
        table = self._read(path)
        rows = table[table["statistic"] == statistic]
        if len(rows) > 1:
            rows = rows[rows["figure"] == figure]
        if len(rows) == 0:
            if not (table["figure"] == figure).any():
                raise NotRun(f"{figure}_{family} was not drawn (no {figure} rows in {path})")
            raise ClaimsInputError(f"{path}: figure {figure} has no statistic {statistic!r} (it has "
                                   f"{sorted(table.loc[table['figure'] == figure, 'statistic'])}); the figure "
                                   f"script must write it, or singledir.claims must read another name")
        return rows.iloc[0].to_dict()

    def table(self, figure: str, family: str) -> pd.DataFrame:
        """The tidy table behind a figure, results/<figure>_<family>.csv."""
        if (figure, family) not in self.tables:
            raise NotRun(f"{figure}_{family} was not drawn (no results/{figure}_{family}.csv)")
        return self._read(self.tables[(figure, family)])


# ---------------------------------------------------------------------------- estimates

@dataclass
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int
    tol: float | None = None  # overrides the claim's tolerance (value claims), e.g. a snapshot interval
    note: str = ""


def from_stat(figure: str, statistic: str) -> Callable[["Sources", str, int, int], Estimate]:
    """Estimate = one row of the family's stats table (its CI was bootstrapped by the figure rule)."""
    def estimate(src: Sources, family: str, n_boot: int, seed: int) -> Estimate:
        r = src.stat(family, figure, statistic)
        return Estimate(float(r["value"]), float(r["ci_low"]), float(r["ci_high"]),
                        int(r["n"]) if pd.notna(r["n"]) else 0)
    return estimate


def selection_rate(k: int) -> Callable[["Sources", str, int, int], Estimate]:
    """Fig. 4c: % of random subselections whose max-AUC setting is a top-k setting. Which k
    are computed is configurable (families.<family>.figures.fig4.top), and with at most k
    settings per random subselection (or in the whole sweep) every pick is trivially in
    the top k: both say "not run"."""
    statistic = f"selection_top{k}_percent"

    def estimate(src: Sources, family: str, n_boot: int, seed: int) -> Estimate:
        try:
            e = from_stat("fig4", statistic)(src, family, n_boot, seed)
        except ClaimsInputError:
            raise NotRun(f"{statistic} was not computed (families.{family}.figures.fig4.top has no {k})") from None
        if e.n <= k:
            raise NotRun(f"not testable at this scale: the sweep has only {e.n} settings, so every pick is in "
                         f"the top {k}")
        try:
            subset = int(src.stat(family, "fig4", "selection_subset_size")["value"])
        except ClaimsInputError:  # tables written before the subset size was recorded
            subset = None
        if subset is not None and subset <= k:
            raise NotRun(f"not testable at this scale: each random subselection has only {subset} settings, so "
                         f"every pick is in the top {k}")
        return e
    return estimate


def auc_peak_vs_min_test_loss(src: Sources, family: str, n_boot: int, seed: int) -> Estimate:
    """Fig. 4a: epoch of the mean-AUC peak minus epoch of the minimum test loss.

    As in the figure script: the first model, trained snapshots only (epoch > 0), the AUC
    averaged over ablation orderings. The CI resamples orderings; the test loss is one
    deterministic curve. Tolerance: one snapshot interval.
    """
    t = src.table("fig4", family)
    t = t[t["model"] == t["model"].iloc[0]]
    t = t[(t["epoch"] > 0) & t["test_loss"].notna()]
    if t.empty:
        return Estimate(math.nan, math.nan, math.nan, 0, note="no trained snapshot with a test loss")
    auc = t.pivot_table(index="ordering", columns="epoch", values="auc")
    epochs = auc.columns.to_numpy(float)
    loss = t.groupby("epoch")["test_loss"].first().reindex(auc.columns).to_numpy(float)
    min_loss_epoch = epochs[int(np.nanargmin(loss))]

    def diff(s):
        return epochs[int(np.nanargmax(np.nanmean(s[0], axis=0)))] - min_loss_epoch

    values = auc.to_numpy(float)
    lo, hi = bootstrap_ci(diff, [values], n_boot, seed)
    step = float(np.median(np.diff(epochs))) if len(epochs) > 1 else 0.0
    peak = diff([values]) + min_loss_epoch
    return Estimate(diff([values]), lo, hi, len(values), tol=step,
                    note=f"AUC peaks at epoch {peak:g}, test loss is lowest at epoch {min_loss_epoch:g}; "
                         f"tolerance one snapshot interval ({step:g} epochs)")


def _dropout_curves(src: Sources, family: str) -> pd.DataFrame:
    """Fig. 5a per (network, ordering): accuracy at the dropout fraction, and mean accuracy past
    it, both relative (to the unablated accuracy, and to the accuracy at the dropout fraction)."""
    c = src.table("fig5", family)
    rows = []
    for (model, p, f, o), g in c.groupby(["model", "dropout", "corrupted_fraction", "ordering"]):
        g = g.sort_values("fraction")
        frac, acc = g["fraction"].to_numpy(float), g["accuracy"].to_numpy(float)
        at_p = acc[frac <= p + 1e-9][-1]
        past = frac >= p - 1e-9
        mean_past = np.trapezoid(acc[past], frac[past]) / max(frac[past][-1] - frac[past][0], 1e-12)
        rows.append({"model": model, "dropout": p, "corrupted": f > 0, "ordering": o,
                     "kept": at_p / max(acc[0], 1e-12), "past": mean_past / max(at_p, 1e-12)})
    return pd.DataFrame(rows)


def dropout_kept(corrupted: bool) -> Callable:
    """Fig. 5a: accuracy kept up to the dropout fraction (relative to unablated), averaged over
    the dropout nets trained on clean or corrupted labels; CI resamples orderings per network."""
    def estimate(src: Sources, family: str, n_boot: int, seed: int) -> Estimate:
        d = _dropout_curves(src, family)
        d = d[d["corrupted"] == corrupted]
        if d.empty:
            raise NotRun(f"fig5_{family} has no {'corrupted' if corrupted else 'clean'}-label dropout nets")
        strata = [g["kept"].to_numpy() for _, g in d.groupby("model")]

        def stat(s):
            return float(np.mean([x.mean() for x in s]))

        lo, hi = bootstrap_ci(stat, strata, n_boot, seed)
        per_p = ", ".join(f"p={p:g}: {g['kept'].mean():.3f}" for p, g in d.groupby("dropout"))
        return Estimate(stat(strata), lo, hi, len(d), note=f"per dropout fraction {per_p}")
    return estimate


def dropout_past_difference(src: Sources, family: str, n_boot: int, seed: int) -> Estimate:
    """Fig. 5a: past the dropout fraction, mean accuracy (relative to the accuracy at the
    dropout fraction) of clean-label nets minus corrupted-label nets, averaged over dropout
    fractions; CI resamples orderings per network."""
    d = _dropout_curves(src, family)
    pairs = [(p, g) for p, g in d.groupby("dropout") if g["corrupted"].nunique() == 2]
    if not pairs:
        raise NotRun(f"fig5_{family} has no dropout fraction with both clean and corrupted nets")
    strata, signs, groups = [], [], []
    for i, (p, g) in enumerate(pairs):
        for m, gm in g.groupby("model"):
            strata.append(gm["past"].to_numpy())
            signs.append(-1.0 if gm["corrupted"].iloc[0] else 1.0)
            groups.append(i)
    signs, groups = np.array(signs), np.array(groups)

    def stat(s):
        means = np.array([x.mean() for x in s])
        diffs = [np.mean(means[(groups == i) & (signs > 0)]) - np.mean(means[(groups == i) & (signs < 0)])
                 for i in range(len(pairs))]
        return float(np.mean(diffs))

    lo, hi = bootstrap_ci(stat, strata, n_boot, seed)
    per_p = ", ".join(
        f"p={p:g}: clean {g.loc[~g['corrupted'], 'past'].mean():.3f} vs corrupted {g.loc[g['corrupted'], 'past'].mean():.3f}"
        for p, g in pairs)
    return Estimate(stat(strata), lo, hi, len(d), note=per_p)


def early_minus_late_layers(predictor: str = "selectivity", figure: str = "fig7") -> Callable:
    """Fig. 7c: mean per-layer Spearman(predictor, impact) of the first third of the unit
    layers minus that of the last third; CI resamples units within each layer."""
    def estimate(src: Sources, family: str, n_boot: int, seed: int) -> Estimate:
        u = src.table(figure, family)
        depths = sorted(u["depth"].unique())
        if len(depths) < 2:
            return Estimate(math.nan, math.nan, math.nan, len(u), note="fewer than two unit layers")
        k = max(1, len(depths) // 3)
        early, late = depths[:k], depths[-k:]
        strata = [u.loc[u["depth"] == d, [predictor, "impact"]].to_numpy(float) for d in depths]

        def rs(s):
            return [spearman_r(a[:, 0], a[:, 1]) for a in s]

        def stat(s):
            r = rs(s)
            return float(np.mean(r[:k]) - np.mean(r[-k:]))

        lo, hi = bootstrap_ci(stat, strata, n_boot, seed)
        r = rs(strata)
        return Estimate(stat(strata), lo, hi, len(u),
                        note=f"mean r of layers {early[0]}-{early[-1]}: {np.mean(r[:k]):.3f}; of layers "
                             f"{late[0]}-{late[-1]}: {np.mean(r[-k:]):.3f}")
    return estimate


# ---------------------------------------------------------------------------- expectations

@dataclass(frozen=True)
class Direction:
    """The paper states a direction: the quantity is above (">") or below ("<") a reference."""

    side: str
    reference: float = 0.0
    kind = "direction"

    @property
    def paper_value(self) -> str:
        return f"{self.side} {self.reference:g}"

    def judge(self, e: Estimate) -> tuple[str, str]:
        lo, hi = _interval(e)
        above = self.side == ">"
        if (lo > self.reference) if above else (hi < self.reference):
            return "yes", ""
        if (e.value > self.reference) if above else (e.value < self.reference):
            return "no", f"direction agrees, but the 95 % CI includes {self.reference:g}"
        return "no", "opposite direction"


@dataclass(frozen=True)
class Value:
    """The paper reports a number; ``tol`` widens our CI; ``signed`` asks for sign agreement."""

    value: float
    tol: float = CORRELATION_TOL
    signed: bool = True
    text: str | None = None
    kind = "value"

    @property
    def paper_value(self) -> str:
        return self.text or f"{self.value:g}"

    def judge(self, e: Estimate) -> tuple[str, str]:
        lo, hi = _interval(e)
        tol = self.tol if e.tol is None else e.tol
        notes = []
        sign_ok = True
        if self.signed and self.value != 0:
            sign_ok = lo > 0 if self.value > 0 else hi < 0
            if not sign_ok:
                notes.append("sign not established (95 % CI includes 0 or is opposite)")
        close = lo - tol <= self.value <= hi + tol
        if not close:
            notes.append(f"paper's {self.value:g} is outside our 95 % CI +/- {tol:g}")
        elif sign_ok:
            notes.append(f"paper's {self.value:g} within our 95 % CI +/- {tol:g}")
        return ("yes" if sign_ok and close else "no"), "; ".join(notes)


@dataclass(frozen=True)
class Negligible:
    """The paper finds no (or only a weak) relationship: the CI must exclude |r| >= bound."""

    bound: float = NEGLIGIBLE_BOUND
    kind = "negligible"

    @property
    def paper_value(self) -> str:
        return "~ 0"

    def judge(self, e: Estimate) -> tuple[str, str]:
        lo, hi = _interval(e)
        if -self.bound < lo and hi < self.bound:
            return "yes", ""
        if abs(e.value) < self.bound:
            return "no", f"estimate is small, but the 95 % CI reaches |r| >= {self.bound:g} (too few samples?)"
        return "no", f"|r| >= {self.bound:g}"


def _interval(e: Estimate) -> tuple[float, float]:
    """Our 95 % CI; a statistic reported without one (e.g. from one deterministic run) counts as a point."""
    lo, hi = e.ci_low, e.ci_high
    if not (np.isfinite(lo) and np.isfinite(hi)):
        lo = hi = e.value
    return lo, hi


Expectation = Direction | Value | Negligible


# ---------------------------------------------------------------------------- claims

@dataclass(frozen=True)
class Claim:
    claim_id: str
    figure: str  # the paper's panel, e.g. "7b"
    family: str
    statement: str
    quantity: str  # what our_value is
    expect: Expectation
    resampling: str  # unit of resampling behind the CI
    estimate: Callable[[Sources, str, int, int], Estimate]
    note: str = ""

    def evaluate(self, src: Sources, n_boot: int = 1000, seed: int = 0) -> dict:
        row = {"claim_id": self.claim_id, "figure": self.figure, "family": self.family,
               "statement": self.statement, "quantity": self.quantity, "paper_value": self.expect.paper_value,
               "resampling": self.resampling, "rule": self.expect.kind}
        notes = [self.note] if self.note else []
        try:
            e = self.estimate(src, self.family, n_boot, seed)
        except NotRun as err:
            return {**row, "our_value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0,
                    "reproduced": "not run", "note": str(err)}
        if e.note:
            notes.append(e.note)
        if not np.isfinite(e.value):
            verdict, why = "no", "statistic is undefined (nan) at this scale"
        else:
            verdict, why = self.expect.judge(e)
        if why:
            notes.append(why)
        return {**row, "our_value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
                "reproduced": verdict, "note": "; ".join(notes)}


UNITS = "units (single-unit ablations)"
NET_ORDERINGS = "networks x ablation orderings"


def _claims() -> list[Claim]:
    out: list[Claim] = []
    for fam, panel in (("mnist", "1a"), ("cifar10", "1b"), ("imagenet", "1c")):
        out.append(Claim(f"fig{panel}_auc_vs_corruption", panel, fam,
                         "Ablation AUC decreases as the fraction of corrupted labels rises",
                         "Spearman r(AUC, corrupted fraction)", Direction("<"), NET_ORDERINGS,
                         from_stat("fig1", "spearman_auc_vs_corrupted_fraction")))
    for fam, panel in (("mnist", "2a"), ("cifar10", "2b")):
        out.append(Claim(f"fig{panel}_noise_vs_corruption", panel, fam,
                         "Robustness to random-direction noise decreases with label corruption",
                         "Spearman r(noise robustness, corrupted fraction)", Direction("<"),
                         "networks x noise repeats",
                         from_stat("fig2", "spearman_noise_robustness_vs_corrupted_fraction")))
    out.append(Claim("fig3b_auc_vs_generalization_error", "3b", "cifar10",
                     "Clean-label nets with a lower ablation AUC generalize worse",
                     "Spearman r(AUC, generalization error)", Direction("<"), "networks",
                     from_stat("fig3", "spearman_auc_vs_generalization_error")))
    out.append(Claim("fig4a_auc_peak_at_loss_divergence", "4a", "mnist",
                     "AUC starts falling where train and test loss diverge",
                     "epoch of AUC peak - epoch of minimum test loss", Value(0.0, signed=False),
                     "ablation orderings", auc_peak_vs_min_test_loss))
    fig4b_note = ("paper text gives -0.728 for the MNIST MLP over training, the Fig. 4 caption for a CIFAR-10 "
                  "ConvNet; both are checked")
    for fam in ("mnist", "cifar10"):
        out.append(Claim(f"fig4b_auc_vs_test_loss_{fam}", "4b", fam,
                         "AUC and test loss are negatively correlated over training",
                         "Spearman r(AUC, test loss) over snapshots", Value(-0.728), "training snapshots",
                         from_stat("fig4", "spearman_auc_vs_test_loss"), note=fig4b_note))
    out.append(Claim("fig4c_auc_vs_test_accuracy", "4c", "cifar10",
                     "AUC and test accuracy are correlated across a hyperparameter sweep",
                     "Spearman r(AUC, test accuracy)", Value(0.914), "networks (hyperparameter settings x repeats)",
                     from_stat("fig4", "spearman_auc_vs_test_accuracy")))
    for k, paper in ((1, 13.0), (5, 83.0), (10, 98.0)):
        out.append(Claim(f"fig4c_selection_top{k}", "4c", "cifar10",
                         f"Picking the max-AUC setting of random subsets selects a top-{k} setting",
                         "% of random subselections", Value(paper, tol=10.0, signed=False, text=f"{paper:g} %"),
                         "hyperparameter settings", selection_rate(k)))
    out.append(Claim("fig4c_selection_gap", "4c", "cifar10",
                     "Test accuracy of the max-AUC pick is close to the best setting's",
                     "mean gap to the best setting (% test accuracy)",
                     Value(1.0, tol=1.1, signed=False, text="1 +/- 1.1 %"), "hyperparameter settings",
                     from_stat("fig4", "selection_gap_to_best_percent")))
    out.append(Claim("fig5a_dropout_kept_clean", "5a", "mnist",
                     "Dropout nets (clean labels) lose little accuracy up to the dropout fraction",
                     "accuracy at the dropout fraction / unablated", Direction(">", 0.9),
                     "ablation orderings (per network)", dropout_kept(False)))
    out.append(Claim("fig5a_dropout_kept_corrupted", "5a", "mnist",
                     "Dropout nets (corrupted labels) lose little accuracy up to the dropout fraction",
                     "accuracy at the dropout fraction / unablated", Direction(">", 0.9),
                     "ablation orderings (per network)", dropout_kept(True)))
    out.append(Claim("fig5a_dropout_past_fraction", "5a", "mnist",
                     "Past the dropout fraction, corrupted-label nets fall faster than clean-label nets",
                     "mean accuracy past p / accuracy at p: clean - corrupted", Direction(">"),
                     "ablation orderings (per network)", dropout_past_difference))
    out.append(Claim("fig5b_batchnorm_auc", "5b", "cifar10",
                     "Nets trained with batch norm are more robust to cumulative ablation",
                     "AUC with BN - AUC without BN", Direction(">"), NET_ORDERINGS,
                     from_stat("fig5", "auc_difference_bn_minus_nobn")))
    out.append(Claim("fig6a_batchnorm_selectivity", "6a", "cifar10",
                     "Batch norm lowers class selectivity", "median selectivity with BN - without BN",
                     Direction("<"), UNITS, from_stat("fig6", "selectivity_difference_bn_minus_nobn")))
    out.append(Claim("fig6b_batchnorm_mutual_information", "6b", "cifar10",
                     "Batch norm raises mutual information", "median MI with BN - without BN",
                     Direction(">"), UNITS, from_stat("fig6", "mi_difference_bn_minus_nobn")))
    sel = "Spearman r(class selectivity, ablation impact on test loss)"
    out.append(Claim("fig7a_selectivity_vs_impact", "7a", "mnist",
                     "Class selectivity barely predicts a unit's importance", sel,
                     Value(0.095, signed=False), UNITS, from_stat("fig7", "spearman_selectivity_vs_impact"),
                     note="paper: r = 0.095, p = 0.288 (not significant), so no sign is required"))
    out.append(Claim("fig7b_selectivity_vs_impact", "7b", "cifar10",
                     "Selective feature maps are, if anything, less important", sel, Value(-0.428), UNITS,
                     from_stat("fig7", "spearman_selectivity_vs_impact")))
    out.append(Claim("fig7c_early_layers_drive_negative_r", "7c", "cifar10",
                     "The negative correlation comes from early layers",
                     "mean per-layer r, first third of layers - last third", Direction("<"),
                     "units within each layer", early_minus_late_layers("selectivity", "fig7")))
    out.append(Claim("fig7d_selectivity_vs_impact", "7d", "imagenet",
                     "Class selectivity does not predict a feature map's importance", sel, Negligible(), UNITS,
                     from_stat("fig7", "spearman_selectivity_vs_impact")))
    out.append(Claim("figA1_mean_vs_zero_ablation", "A1", "cifar10",
                     "Ablating to the mean hurts more than ablating to zero",
                     "AUC (zero ablation) - AUC (mean ablation)", Direction(">"), NET_ORDERINGS,
                     from_stat("figA1", "auc_difference_zero_minus_mean")))
    for fam, panel in (("cifar10", "A2a"), ("imagenet", "A2b")):
        out.append(Claim(f"fig{panel}_selectivity_vs_depth", panel, fam, "Class selectivity rises with depth",
                         "Spearman r(selectivity, layer depth)", Direction(">"), UNITS,
                         from_stat("figA2", "spearman_selectivity_vs_depth")))
    out.append(Claim("figA3a_selectivity_vs_l1_norm", "A3a", "cifar10",
                     "Class selectivity is negatively correlated with the filter L1 norm",
                     "Spearman r(selectivity, filter L1 norm)", Direction("<"), UNITS,
                     from_stat("figA3", "spearman_selectivity_vs_l1_norm")))
    out.append(Claim("figA3b_selectivity_vs_l1_norm", "A3b", "imagenet",
                     "Class selectivity is uncorrelated with the filter L1 norm",
                     "Spearman r(selectivity, filter L1 norm)", Negligible(), UNITS,
                     from_stat("figA3", "spearman_selectivity_vs_l1_norm")))
    for fam, panel in (("mnist", "A4a"), ("cifar10", "A4b"), ("imagenet", "A4d")):
        out.append(Claim(f"fig{panel}_mutual_information_vs_impact", panel, fam,
                         "Mutual information is a poor predictor of a unit's importance",
                         "Spearman r(mutual information, ablation impact on test loss)", Negligible(), UNITS,
                         from_stat("figA4", "spearman_mutual_information_vs_impact")))
    return out


CLAIMS: list[Claim] = _claims()

# Tidy figure tables (figure, family) some claims read besides the stats tables.
TIDY_TABLES = [("fig4", "mnist"), ("fig5", "mnist"), ("fig7", "cifar10")]


def evaluate_claims(src: Sources, n_boot: int = 1000, seed: int = 0,
                    claims: Sequence[Claim] | None = None) -> pd.DataFrame:
    """The claims table: one row per claim, columns :data:`COLUMNS`."""
    rows = [c.evaluate(src, n_boot, seed) for c in (CLAIMS if claims is None else claims)]
    return pd.DataFrame(rows, columns=COLUMNS)


# ---------------------------------------------------------------------------- markdown

def _num(v) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    v = float(v)
    return f"{v:.0f}" if v == int(v) else f"{v:.4g}"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def not_run_phrase(counts) -> str:
    """'1 was not run' / 'n were not run', from the counts of the ``reproduced`` column."""
    n = int(counts.get("not run", 0))
    return f"{n} {'was' if n == 1 else 'were'} not run"


def to_markdown(table: pd.DataFrame, scale: str, labels: dict[str, str] | None = None) -> str:
    """claims.md: the table, a summary count, the verdict rules and the notes."""
    labels = labels or {}
    counts = table["reproduced"].value_counts()
    ran = len(table) - int(counts.get("not run", 0))
    data = ", ".join(f"{FAMILY_NAMES.get(f, f)}: {l}" for f, l in labels.items())
    lines = [
        "# Claims of Morcos et al. (2018), one by one",
        "",
        f"Scale: **{scale}**" + (f" ({data})" if data else "") + ". "
        f"**{int(counts.get('yes', 0))} of {ran}** claims tested are reproduced; "
        f"{int(counts.get('no', 0))} are not; {not_run_phrase(counts)} at this scale.",
        "",
        "Generated by the workflow's `claims` rule (`singledir.claims`) from `results/stats/<family>.csv` and the "
        "tidy figure tables; never edited by hand. Every figure with its caption, this table, the config and the "
        "runtimes: `make report` writes `results/report.html`.",
        "",
        "| # | Fig. | Data | Claim | Paper | Ours [95 % CI] | n | Resampled | Reproduced |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(table.itertuples(index=False), 1):
        ours = _num(r.our_value)
        if ours and _num(r.ci_low):
            ours += f" [{_num(r.ci_low)}, {_num(r.ci_high)}]"
        verdict = {"yes": "**yes**", "no": "no", "not run": "not run"}[r.reproduced]
        lines.append("| " + " | ".join(_cell(x) for x in (
            i, r.figure, FAMILY_NAMES.get(r.family, r.family), f"{r.statement} ({r.quantity})", r.paper_value,
            ours, r.n if r.reproduced != "not run" else "", r.resampling, verdict)) + " |")
    lines += ["", "Rules for *reproduced*:", ""]
    lines += [f"- **{k}**: {v}." for k, v in RULES.items()]
    lines += ["", "Notes (by row number):", ""]
    lines += [f"- {i}. {_cell(r.note)}" for i, r in enumerate(table.itertuples(index=False), 1)
              if r.note and r.reproduced != "not run"]
    not_run: dict[str, list[int]] = {}
    for i, r in enumerate(table.itertuples(index=False), 1):
        if r.reproduced == "not run":
            not_run.setdefault(str(r.note), []).append(i)
    lines += [f"- Not run ({', '.join(map(str, rows))}): {_cell(why)}." for why, rows in not_run.items()]
    return "\n".join(lines) + "\n"

"""The paper's claims next to ours: one row per claim, with a 95 % CI and a verdict.

Each :class:`Claim` names the paper panel, the family whose results test it, what the
paper says (an :class:`Expectation` with its tolerance fixed here, in advance, and
printed in the table), and where our estimate comes from: a statistic that a figure
rule wrote to ``results/stats/<family>.csv``, read by (family, figure, statistic) — a
missing or ambiguous statistic of a figure that ran is an error, never a silent
default. The statistics themselves (bootstrap, Spearman, permutation tests, group
differences) are computed once, by the figure scripts, with :mod:`singledir.stats.inference`.

Verdicts (:data:`VERDICTS`, rules in :data:`RULES`, printed under the table):

* **reproduced** — value claim: the whole 95 % CI lies inside [paper - tol, paper + tol]
  (and the sign is established where the paper's value was significant); direction
  claim: the whole CI lies on the paper's side; "no relation" claim: the whole CI lies
  inside the negligible band. A wide CI can never be reproduced.
* **not reproduced** — the CI is disjoint from the band, or entirely on the wrong side.
* **inconclusive** — anything else; and, whatever the CI, when a gate fails:
  a between-network claim whose permutation test over networks cannot reach p < 0.05
  with this many networks (``p_min``), or whose permutation p is >= 0.05; a corruption
  claim whose most-corrupted nets did not memorize their labels (final training accuracy
  below :data:`MEMORIZATION_THRESHOLD`); a timing claim whose snapshots are sparser than
  its tolerance.
* **not comparable** — the design differs from the paper's in a way that changes the
  statistic's meaning: model-selection rates on subsets other than 48 of 96 settings, or
  a value claim (a number the paper measured on its dataset) tested on stand-in data.
* **not run** — the family or figure was not run.

Every verdict other than *reproduced* has a reason in the ``reason`` column.

*Unit of replication.* Between-network claims (Figs. 1, 2, 3, 4c, 5a clean vs
corrupted, 5b, 6, A1) read statistics over networks (orderings and noise draws averaged
within each net first); ``n`` counts networks. Within-network claims (per-unit
correlations, one net over training) keep units, orderings or snapshots; ``n_unit``
names the unit.
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

from singledir.stats.inference import bootstrap_ci, spearman_r

FAMILY_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "imagenet": "ImageNet"}
COLUMNS = ["claim_id", "figure", "family", "statement", "quantity", "paper_value", "tolerance", "our_value", "ci_low",
           "ci_high", "n", "n_unit", "p", "p_min", "chance", "resampling", "rule", "verdict", "reason", "note"]
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_COMPARABLE, NOT_RUN = (
    "reproduced", "not reproduced", "inconclusive", "not comparable", "not run")
VERDICTS = [REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_COMPARABLE, NOT_RUN]

ALPHA = 0.05
NEGLIGIBLE_BOUND = 0.3
CORRELATION_TOL = 0.1
# The paper's corrupted-label nets fit their training labels (curves start at ~1.0).
MEMORIZATION_THRESHOLD = 0.95
# Fig. 4a: the AUC peak and the test-loss minimum must coincide within 5 % of training.
TIMING_TOL_FRACTION = 0.05
# Section 3.2's design; its top-k rates depend on it.
PAPER_SELECTION_DESIGN = (48, 96)

RULES = {
    REPRODUCED: ("value claim: the whole 95 % CI lies inside [paper - tolerance, paper + tolerance] (sign "
                 "established where the paper's value was significant); direction claim: the whole CI lies on the "
                 "paper's side; no-relation claim: the whole CI lies inside the negligible band"),
    NOT_REPRODUCED: "the 95 % CI is disjoint from the paper's band, or entirely on the wrong side",
    INCONCLUSIVE: ("anything else (a wide CI is never reproduced); also, whatever the CI, a between-network claim "
                   "whose permutation test over networks gives p >= 0.05 or cannot reach p < 0.05 with this many "
                   f"networks, a corruption claim whose most-corrupted nets did not memorize (final training accuracy "
                   f"< {MEMORIZATION_THRESHOLD:g}), and a timing claim whose snapshots are sparser than its tolerance"),
    NOT_COMPARABLE: ("the design differs from the paper's in a way that changes the statistic's meaning "
                     "(model-selection subsets other than 48 of 96 settings; a paper value measured on a dataset "
                     "that we test on stand-in data)"),
    NOT_RUN: "the family or figure was not run (disabled, or its results are absent)",
}


class NotRun(Exception):
    """The results a claim needs were not produced (family or figure not run)."""


class ClaimsInputError(ValueError):
    """A figure ran but its results lack what a claim needs (or are ambiguous); the message names both."""


class NotComparable(Exception):
    """The design differs from the paper's so that the statistic means something else."""


# ---------------------------------------------------------------------------- inputs

@dataclass
class Sources:
    """Where a claim finds its inputs: per-family stats tables and per-figure tidy tables.

    ``stats`` maps family -> results/stats/<family>.csv; ``tables`` maps
    (figure, family) -> results/<figure>_<family>.csv; ``stand_ins`` names the families
    run on stand-in data (value claims there are not comparable). Only the files passed
    in are used, so a disabled family's stale results are never read.
    """

    stats: dict[str, Path] = field(default_factory=dict)
    tables: dict[tuple[str, str], Path] = field(default_factory=dict)
    stand_ins: set = field(default_factory=set)
    n_boot: int = 1000  # for the one claim bootstrapped here (Fig. 7c, from the tidy table)
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_paths(cls, paths: Iterable[str | os.PathLike], stand_ins: Iterable[str] = (), n_boot: int = 1000,
                   seed: int = 0) -> "Sources":
        """Sort files by name: ``stats/<family>.csv`` or ``<figure>_<family>.csv``."""
        src = cls(stand_ins=set(stand_ins), n_boot=n_boot, seed=seed)
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
    def from_results(cls, results: str | os.PathLike, stand_ins: Iterable[str] = (), n_boot: int = 1000,
                     seed: int = 0) -> "Sources":
        """Every stats and tidy figure table present under a results directory."""
        results = Path(results)
        paths = list((results / "stats").glob("*.csv")) + [
            p for p in results.glob("fig*_*.csv") if re.fullmatch(r"fig[A-Za-z0-9]+_[a-z0-9]+\.csv", p.name)]
        return cls.from_paths(paths, stand_ins, n_boot, seed)

    def _read(self, path: Path) -> pd.DataFrame:
        if path not in self._cache:
            self._cache[path] = pd.read_csv(path)
        return self._cache[path]

    def stat(self, family: str, figure: str, statistic: str) -> dict:
        """The one row of results/stats/<family>.csv with this figure and statistic, as a dict.

        NotRun when the family or the figure did not run; ClaimsInputError when the figure
        ran without that statistic, or has it more than once.
        """
        if family not in self.stats:
            raise NotRun(f"{FAMILY_NAMES.get(family, family)} was not run (no results/stats/{family}.csv)")
        path = self.stats[family]
        table = self._read(path)
        of_figure = table[table["figure"] == figure]
        if of_figure.empty:
            raise NotRun(f"{figure}_{family} was not drawn (no {figure} rows in {path})")
        rows = of_figure[of_figure["statistic"] == statistic]
        if len(rows) == 0:
            raise ClaimsInputError(f"{path}: figure {figure} has no statistic {statistic!r} (it has "
                                   f"{sorted(of_figure['statistic'])}); the figure script must write it, or "
                                   f"singledir.stats.claims must read another name")
        if len(rows) > 1:
            raise ClaimsInputError(f"{path}: figure {figure} has {len(rows)} rows of statistic {statistic!r}; "
                                   "each statistic must be written once (rerun the figure rule)")
        return rows.iloc[0].to_dict()

    def has_stat(self, family: str, figure: str, statistic: str) -> bool:
        try:
            self.stat(family, figure, statistic)
            return True
        except (NotRun, ClaimsInputError):
            return False

    def table(self, figure: str, family: str) -> pd.DataFrame:
        """The tidy table behind a figure, results/<figure>_<family>.csv."""
        if (figure, family) not in self.tables:
            raise NotRun(f"{figure}_{family} was not drawn (no results/{figure}_{family}.csv)")
        return self._read(self.tables[(figure, family)])


def stand_in_families(config: dict) -> list[str]:
    """Enabled families whose data is an offline stand-in (scikit-learn digits), not the paper's dataset."""
    out = []
    for fam, cfg in (config.get("families") or {}).items():
        ds = (cfg or {}).get("dataset", {})
        if (cfg or {}).get("enabled", True) and (ds.get("source") == "sklearn_digits" or ds.get("generate")):
            out.append(fam)
    return out


# ---------------------------------------------------------------------------- estimates

def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int
    n_unit: str = ""
    p: float = math.nan
    p_min: float = math.nan
    chance: float = math.nan
    tol: float | None = None  # overrides the expectation's tolerance (value claims), e.g. 5 % of training
    note: str = ""
    caps: list = field(default_factory=list)  # reasons that cap the verdict at "inconclusive"

    @classmethod
    def from_row(cls, r: dict, unit: str = "") -> "Estimate":
        n = _f(r.get("n"))
        u = r.get("unit")
        return cls(_f(r["value"]), _f(r.get("ci_low")), _f(r.get("ci_high")), int(n) if np.isfinite(n) else 0,
                   u if isinstance(u, str) and u else unit, _f(r.get("p")), _f(r.get("p_min")), _f(r.get("chance")))


Estimator = Callable[["Sources", str], Estimate]


def from_stat(figure: str, statistic: str) -> Estimator:
    """Estimate = one row of the family's stats table (value, CI, n, unit, p, p_min)."""
    def estimate(src: Sources, family: str) -> Estimate:
        return Estimate.from_row(src.stat(family, figure, statistic))
    return estimate


def between_networks(estimator: Estimator) -> Estimator:
    """Gate for a between-network statistic: its permutation test over networks must be
    able to reach p < 0.05 (``p_min``) and must reach it (``p``); else at most inconclusive."""
    def estimate(src: Sources, family: str) -> Estimate:
        e = estimator(src, family)
        if not np.isfinite(e.p_min) or not np.isfinite(e.p):
            if np.isfinite(e.value):
                e.caps.append(f"no permutation test over networks (n = {e.n} {e.n_unit or 'networks'})")
            return e
        if e.p_min >= ALPHA:
            e.caps.append(f"too few networks for a 95 % test: with n = {e.n} networks the smallest permutation p "
                          f"is {e.p_min:.3g}")
        elif e.p >= ALPHA:
            e.caps.append(f"permutation test over networks: p = {e.p:.3g} >= {ALPHA:g}")
        return e
    return estimate


def memorized(figure: str, estimator: Estimator) -> Estimator:
    """Gate for a corruption claim: the most-corrupted nets must have memorized their labels."""
    def estimate(src: Sources, family: str) -> Estimate:
        e = estimator(src, family)
        acc = _f(src.stat(family, figure, "final_train_accuracy_min_most_corrupted")["value"])
        if not acc >= MEMORIZATION_THRESHOLD:
            e.caps.append(f"the most-corrupted nets did not memorize their labels (lowest final training accuracy "
                          f"{acc:.3f} < {MEMORIZATION_THRESHOLD:g})")
        else:
            e.note = "; ".join(filter(None, [e.note, f"most-corrupted nets memorized (final training accuracy "
                                                      f">= {acc:.3f})"]))
        return e
    return estimate


def with_failed_count(figure: str, estimator: Estimator) -> Estimator:
    """Adds to the note how many nets the figure excluded because they failed to train."""
    def estimate(src: Sources, family: str) -> Estimate:
        e = estimator(src, family)
        r = src.stat(family, figure, "networks_failed_excluded")
        k = int(_f(r["value"]))
        if k:
            e.note = "; ".join(filter(None, [e.note, f"{k} of {int(_f(r['n']))} nets failed to train and were "
                                                      "excluded"]))
        return e
    return estimate


def selection_rate(k: int) -> Estimator:
    """Fig. 4c: % of random subselections whose max-AUC setting is a top-k setting, with
    its chance rate (k / subset size) and permutation null. Compared with the paper only
    for the paper's design (48 of 96 settings); a k that is not computed
    (families.<family>.figures.fig4.top) is "not run"."""
    statistic = f"selection_top{k}_percent"

    def estimate(src: Sources, family: str) -> Estimate:
        if not src.has_stat(family, "fig4", statistic):
            src.stat(family, "fig4", "selection_subset_size")  # NotRun / error if fig4 itself is missing
            raise NotRun(f"{statistic} was not computed (families.{family}.figures.fig4.top has no {k})")
        e = Estimate.from_row(src.stat(family, "fig4", statistic), "settings")
        subset = int(_f(src.stat(family, "fig4", "selection_subset_size")["value"]))
        settings = int(_f(src.stat(family, "fig4", "selection_settings")["value"]))
        e.note = (f"chance {e.chance:.3g} %; permutation null (AUC shuffled across settings): p = {e.p:.3g}")
        if (subset, settings) != PAPER_SELECTION_DESIGN:
            raise NotComparable(f"subsets of {subset} of {settings} settings, not the paper's 48 of 96: top-{k} rates "
                                f"depend on the subset size (chance here {e.chance:.3g} %, paper's design "
                                f"{100 * k / 48:.3g} %); {e.note}")
        return e
    return estimate


def selection_beats_chance(src: Sources, family: str) -> Estimate:
    """Fig. 4c: the max-AUC pick beats chance — the top-1 rate minus chance, judged by the
    permutation null (AUC shuffled across settings; any design)."""
    e = Estimate.from_row(src.stat(family, "fig4", "selection_top1_percent"), "settings")
    subset = int(_f(src.stat(family, "fig4", "selection_subset_size")["value"]))
    out = Estimate(e.value - e.chance, math.nan, math.nan, e.n, "settings", e.p, e.p_min, e.chance,
                   note=f"top-1 rate {e.value:.3g} % vs chance {e.chance:.3g} % (1 of {subset}); one-sided "
                        f"permutation p = {e.p:.3g} (AUC shuffled across settings)")
    return out


def auc_peak_vs_min_test_loss(src: Sources, family: str) -> Estimate:
    """Fig. 4a: epoch of the AUC peak minus epoch of the minimum test loss (written by the
    figure script, CI over orderings). Tolerance: 5 % of training; snapshots sparser than
    that near the two events cannot resolve the claim (inconclusive)."""
    e = Estimate.from_row(src.stat(family, "fig4", "epoch_auc_peak_minus_min_test_loss"), "ablation orderings")
    epochs = _f(src.stat(family, "fig4", "training_epochs")["value"])
    gap = _f(src.stat(family, "fig4", "snapshot_interval_at_events")["value"])
    peak = _f(src.stat(family, "fig4", "epoch_auc_peak")["value"])
    low = _f(src.stat(family, "fig4", "epoch_min_test_loss")["value"])
    e.tol = TIMING_TOL_FRACTION * epochs
    e.note = (f"AUC peaks at epoch {peak:g}, test loss is lowest at epoch {low:g}; tolerance 5 % of {epochs:g} "
              f"epochs = {e.tol:g}; snapshots {gap:g} epochs apart there")
    if gap > e.tol:
        e.caps.append(f"snapshots {gap:g} epochs apart near the events cannot resolve +/- {e.tol:g} epochs")
    return e


def dropout_stat(p: float, statistic: str, between: bool = False) -> Estimator:
    """Fig. 5a, one dropout fraction p: a statistic the figure script wrote for p (every
    curve read at round(p * N) units); "not run" when p is not in the config's grid."""
    def estimate(src: Sources, family: str) -> Estimate:
        name = statistic.format(p=f"{p:g}")
        if not src.has_stat(family, "fig5", name):
            if family not in src.stats or not (src._read(src.stats[family])["figure"] == "fig5").any():
                return from_stat("fig5", name)(src, family)  # raises NotRun, naming what is missing
            if any(str(s).endswith(f"_p{p:g}") or f"_p{p:g}_" in str(s)
                   for s in src._read(src.stats[family])["statistic"]):
                return from_stat("fig5", name)(src, family)  # p was run, the statistic is missing: an error
            raise NotRun(f"dropout fraction {p:g} is not in this config's dropout grid")
        e = from_stat("fig5", name)(src, family)
        return between_networks(lambda s, f: e)(src, family) if between else e
    return estimate


def early_minus_late_layers(predictor: str = "selectivity", figure: str = "fig7") -> Estimator:
    """Fig. 7c: mean per-layer Spearman(predictor, impact) of the first third of the unit
    layers minus that of the last third; CI resamples units within each layer
    (within-network; read from the figure's tidy table)."""
    def estimate(src: Sources, family: str) -> Estimate:
        u = src.table(figure, family)
        depths = sorted(u["depth"].unique())
        if len(depths) < 2:
            return Estimate(math.nan, math.nan, math.nan, len(u), "units", note="fewer than two unit layers")
        k = max(1, len(depths) // 3)
        early, late = depths[:k], depths[-k:]
        x, y, d = u[predictor].to_numpy(float), u["impact"].to_numpy(float), u["depth"].to_numpy()

        def rs(x, y, d):
            return [spearman_r(x[d == L], y[d == L]) for L in depths]

        def stat(x, y, d):
            r = rs(x, y, d)
            return float(np.mean(r[:k]) - np.mean(r[-k:]))

        lo, hi = bootstrap_ci(stat, x, y, d, n_boot=src.n_boot, seed=src.seed, strata=d)
        r = rs(x, y, d)
        return Estimate(stat(x, y, d), lo, hi, len(u), "units within each layer",
                        note=f"mean r of layers {early[0]}-{early[-1]}: {np.mean(r[:k]):.3f}; of layers "
                             f"{late[0]}-{late[-1]}: {np.mean(r[-k:]):.3f}")
    return estimate


# ---------------------------------------------------------------------------- expectations

def _interval(e: Estimate) -> tuple[float, float] | None:
    """Our 95 % CI, or None when there is none (a statistic without a CI cannot be judged)."""
    lo, hi = e.ci_low, e.ci_high
    return (lo, hi) if (np.isfinite(lo) and np.isfinite(hi)) else None


@dataclass(frozen=True)
class Direction:
    """The paper states a direction: the quantity is above (">") or below ("<") a reference.
    With ``test_only`` the verdict rests on the permutation p alone (no CI, e.g. a
    selection rate against its null)."""

    side: str
    reference: float = 0.0
    test_only: bool = False
    kind = "direction"

    @property
    def paper_value(self) -> str:
        return f"{self.side} {self.reference:g}"

    @property
    def tolerance(self) -> str:
        return ""

    def judge(self, e: Estimate) -> tuple[str, str]:
        if self.test_only:
            if not np.isfinite(e.p):
                return INCONCLUSIVE, "no permutation test"
            right = e.value > self.reference if self.side == ">" else e.value < self.reference
            if right and e.p < ALPHA:
                return REPRODUCED, ""
            return (INCONCLUSIVE, f"permutation p = {e.p:.3g} >= {ALPHA:g}") if right else \
                (NOT_REPRODUCED, "opposite direction")
        ci = _interval(e)
        if ci is None:
            return INCONCLUSIVE, "no confidence interval"
        lo, hi = ci
        above = self.side == ">"
        if (lo > self.reference) if above else (hi < self.reference):
            return REPRODUCED, ""
        if (hi < self.reference) if above else (lo > self.reference):
            return NOT_REPRODUCED, f"the whole 95 % CI is on the wrong side of {self.reference:g}"
        return INCONCLUSIVE, f"the 95 % CI includes {self.reference:g}"


@dataclass(frozen=True)
class Value:
    """The paper reports a number: reproduced iff our CI lies inside [value - tol, value + tol].

    ``signed``: the paper's value was significantly different from 0, so a CI reaching
    the other side of 0 is not reproduced. ``dataset_specific``: the number depends on the
    paper's dataset, so it is not comparable on stand-in data.
    """

    value: float
    tol: float = CORRELATION_TOL
    signed: bool = True
    text: str | None = None
    dataset_specific: bool = True
    tol_text: str | None = None  # when the tolerance is set per run (e.g. 5 % of training)
    kind = "value"

    @property
    def paper_value(self) -> str:
        return self.text or f"{self.value:g}"

    @property
    def tolerance(self) -> str:
        return self.tol_text or f"+/- {self.tol:g}"

    def judge(self, e: Estimate) -> tuple[str, str]:
        tol = self.tol if e.tol is None else e.tol
        lo_band, hi_band = self.value - tol, self.value + tol
        ci = _interval(e)
        if ci is None:
            return INCONCLUSIVE, "no confidence interval"
        lo, hi = ci
        if self.signed and self.value != 0 and ((hi < 0) if self.value > 0 else (lo > 0)):
            return NOT_REPRODUCED, "the whole 95 % CI has the opposite sign"
        if hi < lo_band or lo > hi_band:
            return NOT_REPRODUCED, f"the 95 % CI is disjoint from [{lo_band:g}, {hi_band:g}]"
        if lo_band <= lo and hi <= hi_band:
            if self.signed and self.value != 0 and not ((lo > 0) if self.value > 0 else (hi < 0)):
                return INCONCLUSIVE, "sign not established (95 % CI includes 0)"
            return REPRODUCED, ""
        return INCONCLUSIVE, f"the 95 % CI is not inside [{lo_band:g}, {hi_band:g}]"


@dataclass(frozen=True)
class Negligible:
    """The paper finds no (or only a weak) relationship: the CI must lie inside (-bound, bound)."""

    bound: float = NEGLIGIBLE_BOUND
    kind = "negligible"

    @property
    def paper_value(self) -> str:
        return "~ 0"

    @property
    def tolerance(self) -> str:
        return f"|r| < {self.bound:g}"

    def judge(self, e: Estimate) -> tuple[str, str]:
        ci = _interval(e)
        if ci is None:
            return INCONCLUSIVE, "no confidence interval"
        lo, hi = ci
        if -self.bound < lo and hi < self.bound:
            return REPRODUCED, ""
        if lo >= self.bound or hi <= -self.bound:
            return NOT_REPRODUCED, f"the whole 95 % CI lies beyond |r| = {self.bound:g}"
        return INCONCLUSIVE, f"the 95 % CI reaches |r| >= {self.bound:g}"


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
    estimate: Estimator
    note: str = ""

    def evaluate(self, src: Sources) -> dict:
        row = {"claim_id": self.claim_id, "figure": self.figure, "family": self.family,
               "statement": self.statement, "quantity": self.quantity, "paper_value": self.expect.paper_value,
               "tolerance": self.expect.tolerance, "resampling": self.resampling, "rule": self.expect.kind}
        empty = {"our_value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0, "n_unit": "",
                 "p": math.nan, "p_min": math.nan, "chance": math.nan}
        notes = [self.note] if self.note else []
        try:
            e = self.estimate(src, self.family)
        except NotRun as err:
            return {**row, **empty, "verdict": NOT_RUN, "reason": str(err), "note": "; ".join(notes)}
        except NotComparable as err:
            return {**row, **empty, "verdict": NOT_COMPARABLE, "reason": str(err), "note": "; ".join(notes)}
        if e.tol is not None and isinstance(self.expect, Value):
            row["tolerance"] = f"{self.expect.tolerance} (+/- {e.tol:g})"
        if e.note:
            notes.append(e.note)
        stats = {"our_value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
                 "n_unit": e.n_unit or self.resampling, "p": e.p, "p_min": e.p_min, "chance": e.chance}
        if isinstance(self.expect, Value) and self.expect.dataset_specific and self.family in src.stand_ins:
            return {**row, **stats, "verdict": NOT_COMPARABLE,
                    "reason": f"the paper's {self.expect.paper_value} was measured on "
                              f"{FAMILY_NAMES.get(self.family, self.family)}; this run uses stand-in data",
                    "note": "; ".join(notes)}
        if not np.isfinite(e.value):
            verdict, why = INCONCLUSIVE, "statistic is undefined (nan) at this scale"
        else:
            verdict, why = self.expect.judge(e)
        if e.caps and verdict in (REPRODUCED, NOT_REPRODUCED):
            why = "; ".join(e.caps) + (f" (the CI alone would say {verdict})")
            verdict = INCONCLUSIVE
        elif e.caps:
            why = "; ".join([why] + e.caps)
        return {**row, **stats, "verdict": verdict, "reason": why, "note": "; ".join(notes)}


UNITS = "units (single-unit ablations)"
NETS = "networks (orderings averaged within each)"


def _claims() -> list[Claim]:
    out: list[Claim] = []
    for fam, panel in (("mnist", "1a"), ("cifar10", "1b"), ("imagenet", "1c")):
        out.append(Claim(f"fig{panel}_auc_vs_corruption", panel, fam,
                         "Ablation AUC decreases as the fraction of corrupted labels rises",
                         "Spearman r(AUC, corrupted fraction) over networks", Direction("<"), NETS,
                         memorized("fig1", between_networks(from_stat("fig1", "spearman_auc_vs_corrupted_fraction")))))
    for fam, panel in (("mnist", "2a"), ("cifar10", "2b")):
        out.append(Claim(f"fig{panel}_noise_vs_corruption", panel, fam,
                         "Robustness to random-direction noise decreases with label corruption",
                         "Spearman r(noise robustness, corrupted fraction) over networks", Direction("<"),
                         "networks (noise draws averaged within each)",
                         memorized("fig2", between_networks(
                             from_stat("fig2", "spearman_noise_robustness_vs_corrupted_fraction")))))
    out.append(Claim("fig3b_auc_vs_generalization_error", "3b", "cifar10",
                     "Clean-label nets with a lower ablation AUC generalize worse",
                     "Spearman r(AUC, generalization error) over networks", Direction("<"), NETS,
                     with_failed_count("fig3", between_networks(
                         from_stat("fig3", "spearman_auc_vs_generalization_error")))))
    out.append(Claim("fig4a_auc_peak_at_loss_divergence", "4a", "mnist",
                     "AUC starts falling where train and test loss diverge",
                     "epoch of AUC peak - epoch of minimum test loss",
                     Value(0.0, tol=math.nan, signed=False, text="0 epochs", dataset_specific=False,
                           tol_text="+/- 5 % of training"),
                     "ablation orderings (one network)", auc_peak_vs_min_test_loss))
    fig4b_note = ("paper text gives -0.728 for the MNIST MLP over training, the Fig. 4 caption for a CIFAR-10 "
                  "ConvNet; both are checked")
    for fam in ("mnist", "cifar10"):
        out.append(Claim(f"fig4b_auc_vs_test_loss_{fam}", "4b", fam,
                         "AUC and test loss are negatively correlated over training",
                         "Spearman r(AUC, test loss) over snapshots", Value(-0.728), "training snapshots (one network)",
                         from_stat("fig4", "spearman_auc_vs_test_loss"), note=fig4b_note))
    out.append(Claim("fig4c_auc_vs_test_accuracy", "4c", "cifar10",
                     "AUC and test accuracy are correlated across a hyperparameter sweep",
                     "Spearman r(AUC, test accuracy) over networks", Value(0.914), "networks (settings x repeats)",
                     with_failed_count("fig4", between_networks(from_stat("fig4", "spearman_auc_vs_test_accuracy")))))
    out.append(Claim("fig4c_selection_beats_chance", "4c", "cifar10",
                     "Picking the max-AUC setting of random subsets beats a random pick",
                     "top-1 rate - chance (percentage points)", Direction(">", test_only=True),
                     "permutation null: AUC shuffled across settings", selection_beats_chance))
    for k, paper in ((1, 13.0), (5, 83.0), (10, 98.0)):
        out.append(Claim(f"fig4c_selection_top{k}", "4c", "cifar10",
                         f"Picking the max-AUC setting of random subsets selects a top-{k} setting",
                         "% of random subselections", Value(paper, tol=10.0, signed=False, text=f"{paper:g} %"),
                         "settings (no CI: a rate over subsets of one grid)", selection_rate(k)))
    out.append(Claim("fig4c_selection_gap", "4c", "cifar10",
                     "Test accuracy of the max-AUC pick is close to the best setting's",
                     "mean gap to the best setting (% test accuracy)",
                     Value(1.0, tol=1.1, signed=False, text="1 +/- 1.1 %"), "settings",
                     from_stat("fig4", "selection_gap_to_best_percent")))
    for p in (0.1, 0.2, 0.3):
        for corrupted in (False, True):
            arm = "corrupted" if corrupted else "clean"
            out.append(Claim(f"fig5a_dropout_kept_{arm}_p{p:g}", "5a", "mnist",
                             f"Dropout p = {p:g} nets ({arm} labels) lose little accuracy up to the dropout fraction",
                             f"accuracy at round({p:g} N) units / unablated", Direction(">", 0.9),
                             "ablation orderings within each network",
                             dropout_stat(p, "relative_accuracy_at_dropout_p{p}_" + arm)))
        out.append(Claim(f"fig5a_dropout_past_fraction_p{p:g}", "5a", "mnist",
                         f"Past the dropout fraction p = {p:g}, corrupted-label nets fall faster than clean-label nets",
                         "mean accuracy past p / accuracy at p: clean - corrupted nets", Direction(">"), NETS,
                         dropout_stat(p, "past_dropout_difference_clean_minus_corrupted_p{p}", between=True)))
    out.append(Claim("fig5b_batchnorm_auc", "5b", "cifar10",
                     "Nets trained with batch norm are more robust to cumulative ablation",
                     "AUC with BN - AUC without BN (network means)", Direction(">"), NETS,
                     with_failed_count("fig5", between_networks(from_stat("fig5", "auc_difference_bn_minus_nobn")))))
    out.append(Claim("fig6a_batchnorm_selectivity", "6a", "cifar10",
                     "Batch norm lowers class selectivity",
                     "median selectivity of live maps with BN - without BN (network means)", Direction("<"),
                     "networks (live feature maps summarized within each)",
                     between_networks(from_stat("fig6", "selectivity_difference_bn_minus_nobn"))))
    out.append(Claim("fig6a_batchnorm_high_selectivity", "6a", "cifar10",
                     "Without batch norm a large fraction of feature maps is highly selective; with it, fewer",
                     "fraction of live maps with high selectivity, BN - without BN (network means)", Direction("<"),
                     "networks (live feature maps summarized within each)",
                     between_networks(from_stat("fig6", "high_selectivity_fraction_difference_bn_minus_nobn"))))
    out.append(Claim("fig6b_batchnorm_mutual_information", "6b", "cifar10",
                     "Batch norm raises mutual information",
                     "median MI of live maps with BN - without BN (network means)", Direction(">"),
                     "networks (live feature maps summarized within each)",
                     between_networks(from_stat("fig6", "mi_difference_bn_minus_nobn"))))
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
                     "AUC (zero ablation) - AUC (mean ablation), paired per network", Direction(">"), NETS,
                     between_networks(from_stat("figA1", "auc_difference_zero_minus_mean"))))
    for fam, panel in (("cifar10", "A2a"), ("imagenet", "A2b")):
        out.append(Claim(f"fig{panel}_selectivity_vs_depth", panel, fam, "Class selectivity rises with depth",
                         "Spearman r(selectivity, layer depth)", Direction(">"), UNITS,
                         from_stat("figA2", "spearman_selectivity_vs_depth")))
    within = "mean within-layer Spearman r(selectivity, filter L1 norm)"
    a3_note = ("judged within layers: the pooled r (in the figure) is confounded by fan-in, since L1 norm and "
               "selectivity both grow with depth")
    out.append(Claim("figA3a_selectivity_vs_l1_norm", "A3a", "cifar10",
                     "Class selectivity is negatively correlated with the filter L1 norm", within, Direction("<"),
                     "layers (units within each)",
                     from_stat("figA3", "mean_within_layer_spearman_selectivity_vs_l1_norm"), note=a3_note))
    out.append(Claim("figA3b_selectivity_vs_l1_norm", "A3b", "imagenet",
                     "Class selectivity is uncorrelated with the filter L1 norm", within, Negligible(),
                     "layers (units within each)",
                     from_stat("figA3", "mean_within_layer_spearman_selectivity_vs_l1_norm"), note=a3_note))
    for fam, panel in (("mnist", "A4a"), ("cifar10", "A4b"), ("imagenet", "A4d")):
        out.append(Claim(f"fig{panel}_mutual_information_vs_impact", panel, fam,
                         "Mutual information is a poor predictor of a unit's importance",
                         "Spearman r(mutual information, ablation impact on test loss)", Negligible(), UNITS,
                         from_stat("figA4", "spearman_mutual_information_vs_impact")))
    return out


CLAIMS: list[Claim] = _claims()

# Tidy figure tables (figure, family) some claims read besides the stats tables.
TIDY_TABLES = [("fig7", "cifar10")]


def evaluate_claims(src: Sources, claims: Sequence[Claim]) -> pd.DataFrame:
    """The claims table: one row per claim, columns :data:`COLUMNS`. The workflow's table
    (``results/claims.csv``) has the paper's claims (:data:`CLAIMS`) and ours
    (:data:`singledir.stats.beyond_claims.ALL_CLAIMS` has both)."""
    rows = [c.evaluate(src) for c in claims]
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
    """'1 was not run' / 'n were not run', from the counts of the ``verdict`` column."""
    n = int(counts.get(NOT_RUN, 0))
    return f"{n} {'was' if n == 1 else 'were'} not run"


def verdict_summary(table: pd.DataFrame) -> str:
    """'Of 30 claims tested: 12 reproduced, 3 not reproduced, 10 inconclusive, 5 not comparable; 2 were not run.'"""
    counts = table["verdict"].value_counts()
    ran = len(table) - int(counts.get(NOT_RUN, 0))
    parts = ", ".join(f"**{int(counts.get(v, 0))}** {v}" for v in VERDICTS[:4])
    return f"Of **{ran}** claims tested: {parts}; {not_run_phrase(counts)}."


def _ours(r) -> str:
    ours = _num(r.our_value)
    if ours and _num(r.ci_low):
        ours += f" [{_num(r.ci_low)}, {_num(r.ci_high)}]"
    return ours


def to_markdown(table: pd.DataFrame, scale: str, labels: dict[str, str] | None = None) -> str:
    """claims.md: the table, the count of each verdict, the verdict rules, the reasons and notes."""
    labels = labels or {}
    data = ", ".join(f"{FAMILY_NAMES.get(f, f)}: {l}" for f, l in labels.items())
    lines = [
        "# Claims of Morcos et al. (2018), one by one",
        "",
        f"Scale: **{scale}**" + (f" ({data})" if data else "") + ". " + verdict_summary(table),
        "",
        "Generated by the workflow's `claims` rule (`singledir.stats.claims`) from `results/stats/<family>.csv` and the "
        "tidy figure tables; never edited by hand. Every figure with its caption, this table, the config and the "
        "runtimes: `make report` writes `results/report.html`.",
        "",
        "| # | Fig. | Data | Claim | Paper | Tolerance | Ours [95 % CI] | n | p (min p) | Verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(table.itertuples(index=False), 1):
        ran = r.verdict != NOT_RUN
        n = f"{int(r.n)} {r.n_unit}" if ran and r.n else ""
        p = _num(r.p) + (f" ({_num(r.p_min)})" if _num(r.p_min) else "") if ran else ""
        verdict = f"**{r.verdict}**" if r.verdict == REPRODUCED else r.verdict
        data_label = labels.get(r.family)
        name = FAMILY_NAMES.get(r.family, r.family)
        # the Data column names what actually ran (e.g. a stand-in), when the config labels it
        data_cell = name + (f" ({data_label})" if data_label and data_label.lower() not in
                            (r.family, name.lower()) else "")
        lines.append("| " + " | ".join(_cell(x) for x in (
            i, r.figure, data_cell, f"{r.statement} ({r.quantity})", r.paper_value, r.tolerance or "",
            _ours(r) if ran else "", n, p, verdict)) + " |")
    lines += ["", "Verdicts:", ""]
    lines += [f"- **{k}**: {v}." for k, v in RULES.items()]
    lines += ["", "Reasons and notes (by row number):", ""]
    for i, r in enumerate(table.itertuples(index=False), 1):
        if r.verdict == NOT_RUN:
            continue
        text = "; ".join(str(t) for t in (r.reason, r.note) if isinstance(t, str) and t)
        if text:
            lines.append(f"- {i}. {r.verdict}: {_cell(text)}")
    not_run: dict[str, list[int]] = {}
    for i, r in enumerate(table.itertuples(index=False), 1):
        if r.verdict == NOT_RUN:
            not_run.setdefault(str(r.reason), []).append(i)
    lines += [f"- Not run ({', '.join(map(str, rows))}): {_cell(why)}." for why, rows in not_run.items()]
    return "\n".join(lines) + "\n"


"""The claims table's machinery: where a claim reads its inputs, and how it is judged.

One row per claim, with a 95 % CI and a verdict. The claims themselves are
:data:`singledir.stats.paper_claims.CLAIMS` (the paper's) and
:data:`singledir.stats.beyond_claims.ALL_CLAIMS` (those and ours); the markdown table is
:func:`singledir.stats.claims_markdown.to_markdown`.

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
  claim whose nets at any corrupted fraction did not memorize their labels (final training
  accuracy below :data:`MEMORIZATION_THRESHOLD`, :func:`memorized`); a claim comparing two
  arms of networks (Figs. 5b, 6, A1, X4) with an arm whose nets did not all converge
  (:func:`converged`); a timing claim whose snapshots are sparser than its tolerance.
* **not comparable** — the design differs from the paper's in a way that changes the
  statistic's meaning: model-selection rates and gap on subsets other than 48 of 96
  settings (the sweep's settings counted as designed, before failed nets are left out), or
  a value claim (a number the paper measured on its dataset) tested on stand-in data. The
  row keeps our value, CI and n all the same.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from singledir.stats.net_tables import MEMORIZATION_THRESHOLD, convergence_rule

FAMILY_NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10", "imagenet": "ImageNet"}
COLUMNS = ["claim_id", "figure", "family", "statement", "quantity", "paper_value", "tolerance", "our_value", "ci_low",
           "ci_high", "n", "n_unit", "p", "p_min", "chance", "resampling", "rule", "verdict", "reason", "note"]
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_COMPARABLE, NOT_RUN = (
    "reproduced", "not reproduced", "inconclusive", "not comparable", "not run")
VERDICTS = [REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_COMPARABLE, NOT_RUN]

ALPHA = 0.05
NEGLIGIBLE_BOUND = 0.3
CORRELATION_TOL = 0.1
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
                   f"networks, a corruption claim whose nets at some corrupted fraction did not memorize their labels "
                   f"(final training accuracy < {MEMORIZATION_THRESHOLD:g}), a claim comparing two arms of networks with "
                   f"an arm not every net of which converged ({convergence_rule()}), and a timing claim whose "
                   "snapshots are sparser than its tolerance"),
    NOT_COMPARABLE: ("the design differs from the paper's in a way that changes the statistic's meaning "
                     "(model-selection subsets other than 48 of 96 settings, counted before failed nets are left "
                     "out; a paper value measured on a dataset that we test on stand-in data); our value and CI "
                     "are kept in the row"),
    NOT_RUN: "the family or figure was not run (disabled, or its results are absent)",
}


class NotRun(Exception):
    """The results a claim needs were not produced (family or figure not run)."""


class ClaimsInputError(ValueError):
    """A figure ran but its results lack what a claim needs (or are ambiguous); the message names both."""


class NotComparable(Exception):
    """The design differs from the paper's so that the statistic means something else.

    ``estimate`` (optional): what we measured all the same; the claims table keeps its value,
    CI and n in the row (a "not comparable" row still says what this design gave)."""

    def __init__(self, message: str, estimate: "Estimate | None" = None):
        super().__init__(message)
        self.estimate = estimate


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

    def stats_matching(self, family: str, figure: str, pattern: str) -> dict[str, dict]:
        """The figure's rows whose statistic fully matches ``pattern`` (one group): group ->
        row; empty when the family or figure did not run."""
        if family not in self.stats:
            return {}
        table = self._read(self.stats[family])
        out = {}
        for r in table[table["figure"] == figure].to_dict("records"):
            if m := re.fullmatch(pattern, str(r["statistic"])):
                out[m.group(1)] = r
        return out

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
    excluded: str = ""  # the nets the statistic left out, named with why (always in the reason: with_failed_count)
    statistic: str = ""  # the stats-table row it was read from (the convergence gate finds the arms in its name)

    @classmethod
    def from_row(cls, r: dict, unit: str = "") -> "Estimate":
        n = _f(r.get("n"))
        u = r.get("unit")
        s = r.get("statistic")
        return cls(_f(r["value"]), _f(r.get("ci_low")), _f(r.get("ci_high")), int(n) if np.isfinite(n) else 0,
                   u if isinstance(u, str) and u else unit, _f(r.get("p")), _f(r.get("p_min")), _f(r.get("chance")),
                   statistic=s if isinstance(s, str) else "")


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
    """Gate for a corruption claim: the nets at every corrupted fraction (> 0) must have
    memorized their labels, the same gate at every fraction: final training accuracy, against
    the labels each net was trained on, >= :data:`MEMORIZATION_THRESHOLD` (the paper's curves
    all start at ~1.0; a net that fits only the clean part of 20 %-shuffled labels reaches
    about 0.82). Read from the figure's ``final_train_accuracy_min_fraction_<f>`` rows (the
    lowest of the nets at fraction f, :func:`singledir.stats.net_tables.memorization_rows`);
    a table written before those rows existed is judged by its most-corrupted nets
    (``final_train_accuracy_min_most_corrupted``)."""
    def estimate(src: Sources, family: str) -> Estimate:
        e = estimator(src, family)
        by_fraction = src.stats_matching(family, figure, r"final_train_accuracy_min_fraction_(.+)")
        lowest = {float(f): _f(r["value"]) for f, r in by_fraction.items() if _f(f) > 0}
        if not lowest:  # an older table: its most-corrupted nets only
            acc = _f(src.stat(family, figure, "final_train_accuracy_min_most_corrupted")["value"])
            if not acc >= MEMORIZATION_THRESHOLD:
                e.caps.append(f"the most-corrupted nets did not memorize their labels (lowest final training accuracy "
                              f"{acc:.3f} < {MEMORIZATION_THRESHOLD:g})")
            else:
                e.note = "; ".join(filter(None, [e.note, f"most-corrupted nets memorized (final training accuracy "
                                                          f">= {acc:.3f})"]))
            return e
        short = {f: a for f, a in sorted(lowest.items()) if not a >= MEMORIZATION_THRESHOLD}
        if short:
            e.caps.append("the nets at corrupted fraction " + ", ".join(
                f"{f:g} (lowest final training accuracy {a:.3f})" for f, a in short.items())
                + f" did not memorize their labels (< {MEMORIZATION_THRESHOLD:g})")
        else:
            e.note = "; ".join(filter(None, [e.note, "the nets at every corrupted fraction memorized their labels "
                                             f"(final training accuracy >= {min(lowest.values()):.3f})"]))
        return e
    return estimate


def converged(figure: str, arms: Sequence[str] | Callable[[Estimate], Sequence[str]],
              estimator: Estimator) -> Estimator:
    """Gate for a claim comparing two arms of networks (Figs. 5b, 6, A1, X4): every net of
    every arm must have converged (:func:`singledir.stats.net_tables.convergence_reason`:
    training loss changed by at most 5 % or 0.01 nats over the last 10 % of epochs, or
    corrupted labels memorized), judged by the figure from each net's own history and written
    as ``networks_unconverged_<arm>`` (how many of the arm's n nets did not converge, named
    with their numbers in the row's note). A claim with unconverged nets in either arm is
    inconclusive, its reason giving the count per arm and each net's loss change: a
    comparison of arms trained to different points says something about training, not about
    what the arms differ in. ``arms``: the arm names ("" for Fig. A1's one set of nets), or a
    function of the estimate (X4: :func:`diff_arms` of the statistic's name). A figure that ran
    without the rows is an error naming them (rerun the figure rule)."""
    def estimate(src: Sources, family: str) -> Estimate:
        e = estimator(src, family)
        names = arms(e) if callable(arms) else arms
        bad, total = [], 0
        for arm in names:
            r = src.stat(family, figure, "networks_unconverged" + (f"_{arm}" if arm else ""))
            k, n = int(_f(r["value"])), int(_f(r["n"]))
            total += n
            if k:
                why = r.get("note")
                bad.append(f"{arm or 'nets'}: " + (why if isinstance(why, str) and why else
                                                   f"{k} of {n} nets did not converge"))
        if bad:
            e.caps.append(f"not every net converged (converged: {convergence_rule()}): " + "; ".join(bad))
        else:
            e.note = "; ".join(filter(None, [e.note, f"all {total} nets converged"
                                             + (f" ({' and '.join(a for a in names if a)})" if len(names) > 1 else "")]))
        return e
    return estimate


def diff_arms(e: Estimate) -> list[str]:
    """The two arms of a difference statistic named ``<measure>_diff_<a>_minus_<b>_<labels>``
    (Fig. X4): ["<a>_<labels>", "<b>_<labels>"], the keys of their convergence rows."""
    m = re.fullmatch(r".+?_diff_(.+)_minus_(.+)_(clean|corrupted)", e.statistic)
    if not m:
        raise ClaimsInputError(f"statistic {e.statistic!r} names no two arms (expected "
                               "<measure>_diff_<arm>_minus_<arm>_<clean|corrupted>)")
    return [f"{m.group(1)}_{m.group(3)}", f"{m.group(2)}_{m.group(3)}"]


def with_failed_count(figure: str, estimator: Estimator, statistic: str = "networks_failed_excluded",
                      required: bool = True) -> Estimator:
    """Adds to the note how many nets the figure excluded because they failed to train (or
    diverged), and puts the figure's list of them, each named with its reason
    (``statistic``'s note, :func:`singledir.stats.net_tables.failed_stat_rows`:
    "excluded 2 of 24 nets: sweep_lr0.5_bs16_s0 diverged at epoch 3 (training loss nan); ..."),
    in the claim's reason, whatever the verdict: a claim never rests silently on fewer nets.

    The figure's statistic already left the failed nets out, so the claim's n counts the
    others. With no net left (e.g. the only net failed), or too few for the statistic the
    claim reads (the figure could not write it), the claim is inconclusive and says why,
    never an error. ``required=False`` (:func:`counting_failed`) accepts a stats table
    written before the figure counted failed nets (no ``statistic`` row): nothing is added."""
    def estimate(src: Sources, family: str) -> Estimate:
        if not src.has_stat(family, figure, statistic):
            e = estimator(src, family)  # its own "not run" or missing-statistic error first
            if required:
                src.stat(family, figure, statistic)  # the error naming the missing count
            return e
        r = src.stat(family, figure, statistic)
        k, n = int(_f(r["value"])), int(_f(r["n"]))
        if not k:
            return estimator(src, family)
        named = r.get("note")
        excluded = named if isinstance(named, str) and named else f"excluded {k} of {n} nets that failed to train"
        left = n - k
        try:
            e = estimator(src, family) if left else None
        except ClaimsInputError:  # the figure had too few nets left to write the statistic
            e = None
        except NotComparable as err:  # the row keeps its estimate: it counts and names the failed nets too
            if err.estimate is not None:
                err.estimate.note = "; ".join(filter(None, [err.estimate.note,
                                                            f"{k} of {n} nets failed to train and were excluded"]))
                err.estimate.excluded = excluded
            raise
        if e is None:
            e = Estimate(math.nan, math.nan, math.nan, left, "networks",
                         caps=[f"too few nets left ({left}) once those that failed to train are excluded"])
        e.note = "; ".join(filter(None, [e.note, f"{k} of {n} nets failed to train and were excluded"]))
        e.excluded = excluded
        return e
    estimate.counts_failed = True  # counting_failed leaves it as is
    return estimate


# The paper panels whose figure rule counts its nets under another statistic than
# networks_failed_excluded: Fig. 4a-b rest on the one early-stopping net (Fig. 4c on the sweep).
FAILED_STATISTIC = {"4a": "stopping_net_failed_excluded", "4b": "stopping_net_failed_excluded"}


def figure_rule(panel: str) -> str:
    """The figure rule of a paper panel: "7b" -> "fig7", "A2a" -> "figA2", "X4" -> "figX4"."""
    m = re.match(r"[A-Z]?[0-9]+", panel)
    if not m:
        raise ValueError(f"claim panel {panel!r} names no figure (expected e.g. '7b', 'A2a', 'X4')")
    return "fig" + m.group(0)


def counting_failed(claims: Sequence["Claim"]) -> list["Claim"]:
    """Every claim, its estimate wrapped in :func:`with_failed_count` for its figure (each figure
    leaves out the nets that failed to train and counts them; claims already wrapped stay):
    the failed nets are named in every claim's reason and the claim is inconclusive when none
    is left, without touching each claim's own statistics."""
    return [c if getattr(c.estimate, "counts_failed", False) else
            replace(c, estimate=with_failed_count(figure_rule(c.figure), c.estimate,
                                                  FAILED_STATISTIC.get(c.figure, "networks_failed_excluded"),
                                                  required=False))
            for c in claims]


# ---------------------------------------------------------------------------- expectations

def _interval(e: Estimate) -> tuple[float, float] | None:
    """Our 95 % CI, or None when there is none (a statistic without a CI cannot be judged).
    An unbounded side (+/- inf: an exact test that this design cannot make reject) is a CI."""
    lo, hi = e.ci_low, e.ci_high
    return (lo, hi) if not (np.isnan(lo) or np.isnan(hi)) else None


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

    def _stats(self, e: Estimate) -> dict:
        return {"our_value": e.value, "ci_low": e.ci_low, "ci_high": e.ci_high, "n": e.n,
                "n_unit": e.n_unit or self.resampling, "p": e.p, "p_min": e.p_min, "chance": e.chance}

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
            # what this design gave stays in the row (value, CI, n), only the verdict says "not comparable"
            e = err.estimate
            if e is None:
                return {**row, **empty, "verdict": NOT_COMPARABLE, "reason": str(err), "note": "; ".join(notes)}
            return {**row, **self._stats(e), "verdict": NOT_COMPARABLE,
                    "reason": "; ".join(filter(None, [str(err), e.excluded])),
                    "note": "; ".join(notes + ([e.note] if e.note else []))}
        if e.tol is not None and isinstance(self.expect, Value):
            row["tolerance"] = f"{self.expect.tolerance} (+/- {e.tol:g})"
        if e.note:
            notes.append(e.note)
        stats = self._stats(e)
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
        why = "; ".join(filter(None, [why, e.excluded]))
        return {**row, **stats, "verdict": verdict, "reason": why, "note": "; ".join(notes)}


# Tidy figure tables (figure, family) some claims read besides the stats tables
# (:func:`singledir.stats.paper_claims.early_minus_late_layers`); the workflow passes them in.
TIDY_TABLES = [("fig7", "cifar10")]


def evaluate_claims(src: Sources, claims: Sequence[Claim]) -> pd.DataFrame:
    """The claims table: one row per claim, columns :data:`COLUMNS`. The workflow's table
    (``results/claims.csv``) has the paper's claims (:data:`singledir.stats.paper_claims.CLAIMS`)
    and ours (:data:`singledir.stats.beyond_claims.ALL_CLAIMS` has both)."""
    rows = [c.evaluate(src) for c in claims]
    return pd.DataFrame(rows, columns=COLUMNS)

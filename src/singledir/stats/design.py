"""Can each claim be decided by the design alone? (before any network is trained)

:func:`undecidable_claims` takes a plain description of what a config trains (per family and
figure, one record per network; :func:`singledir.pipeline.claim_design.config_design` builds
it from a config) and returns the claims that can only come out *inconclusive*, whatever the
networks do, with the reason. Two kinds of limit:

* **tests over networks**: a between-network claim (:func:`singledir.stats.claims.between_networks`)
  needs a permutation test whose smallest reachable p (``p_min``) is below 0.05 with this many
  networks per arm: two groups m + k: 2 / C(m + k, m) (balanced), paired n: 2 / 2^n, Spearman
  over n networks: the share of orderings as extreme as the best (ties in x count); a
  non-inferiority claim (X2, X4 accuracy price and AUC vs batch norm) needs its exact one-sided
  test at the margin to reach 2.5 % (paired: 1 / 2^n, two groups: 1 / C(m + k, m)).
* **value claims**: the projected 95 % CI half-width must fit inside the tolerance, under the
  variance assumptions in :data:`ASSUMPTIONS` (printed with the plan): Spearman r over n
  independent rows has a Fisher-z standard error sqrt(1.06 / (n - 3)) (Fieller et al. 1957),
  mapped back at the paper's r; snapshots of one training run count as n / 2 independent
  rows (autocorrelation); networks differ in a per-network r by a standard deviation of
  :data:`NETWORK_SD`; a rate or mean over random subsets of a grid of n settings, resampled
  over settings, has a standard error of SD / sqrt(n) with SD = sqrt(p (1 - p)) for a rate p
  and the paper's 1.1 points for the gap.

Every rule is per claim id (:data:`RULES`); claims of a family or figure the design does not
run are left out (they are *not run*, not undecidable). A rule counts the networks its claim's
statistic actually uses: Fig. 4c's settings are those of the sweep alone (Fig. 4's design
also holds Fig. 4b's early-stopping net), counted as configured (as the figure counts its
design, before failed nets are left out), and a sweep other than the paper's 96 settings
makes the rates and the gap *not comparable*; X1 counts the clean-label nets trained without
a reliance regularizer (:func:`singledir.stats.model_selection.x1_networks`).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import stats as sstats

from singledir.stats.beyond_claims import ALL_CLAIMS
from singledir.stats.claims import PAPER_SELECTION_DESIGN
from singledir.stats.inference import EXACT_LIMIT, permutation_spearman
from singledir.stats.model_selection import UNREGULARIZED

ALPHA = 0.05
NI_ALPHA = 0.025  # one side of a 95 % interval
FISHER_VAR = 1.06  # Spearman's Fisher-z variance factor: Var(z) ~ 1.06 / (n - 3)
SNAPSHOT_EFFECTIVE = 0.5  # snapshots of one run count as this share of independent rows
NETWORK_SD = 0.05  # assumed between-network SD of a per-network Spearman r
GAP_SD = 1.1  # percentage points: the paper's std of the Fig. 4c gap over subsets
ASSUMPTIONS = [
    f"Spearman r over n independent rows: Fisher-z SE sqrt({FISHER_VAR} / (n - 3)), CI mapped back at the paper's r",
    f"snapshots of one training run: autocorrelated, counted as {SNAPSHOT_EFFECTIVE:g} x n independent rows",
    f"a per-network r varies between networks with SD {NETWORK_SD:g}; CI half-width t(0.975, K-1) SD / sqrt(K)",
    f"Fig. 4c rates and gap over subsets of n settings, resampled over settings: SE = SD / sqrt(n), SD = "
    f"sqrt(p (1 - p)) for a rate p, {GAP_SD:g} points for the gap (the paper's std)",
]


# ---------------------------------------------------------------------------- smallest p of a design

def p_min_two_groups(m: int, k: int) -> float:
    """Smallest two-sided permutation p of a difference in means, m vs k networks."""
    if m < 1 or k < 1:
        return 1.0
    return (2.0 if m == k else 1.0) / math.comb(m + k, m)


def p_min_paired(n: int) -> float:
    """Smallest two-sided sign-flip p over n paired networks."""
    return 1.0 if n < 1 else min(1.0, 2.0 / 2 ** n)


def p_min_spearman(x) -> float:
    """Smallest permutation p of Spearman r between the design variable x and any outcome
    (distinct outcomes; ties in x count as the design has them)."""
    x = np.asarray(x, float)
    if len(x) < 3 or np.ptp(x) == 0:
        return 1.0
    if math.factorial(len(x)) > EXACT_LIMIT:
        return 1.0 / (1 + 10000)
    return permutation_spearman(x, np.arange(len(x), dtype=float))[1]


def ni_reachable_paired(n: int) -> bool:
    return n >= 1 and 1.0 / 2 ** n <= NI_ALPHA


def ni_reachable_two_groups(m: int, k: int) -> bool:
    return m >= 1 and k >= 1 and 1.0 / math.comb(m + k, m) <= NI_ALPHA


# ---------------------------------------------------------------------------- projected CI half-widths

def spearman_half_width(r: float, n: float) -> float:
    """Projected 95 % CI half-width of Spearman r at the paper's r over n independent rows
    (the larger side of the Fisher-z interval)."""
    if n <= 3:
        return math.inf
    z, se = math.atanh(max(min(r, 0.999), -0.999)), math.sqrt(FISHER_VAR / (n - 3))
    return max(math.tanh(z + 1.96 * se) - r, r - math.tanh(z - 1.96 * se))


def network_mean_half_width(k: int, sd: float = NETWORK_SD) -> float:
    return math.inf if k < 2 else float(sstats.t.ppf(0.975, k - 1)) * sd / math.sqrt(k)


# ---------------------------------------------------------------------------- rules

Design = dict  # family -> figure -> list of network records (dicts); see the module docstring
Rule = Callable[[list], "str | None"]  # network records of the claim's figure -> why undecidable, or None


def _count(nets, **where) -> int:
    return sum(all(_eq(n.get(k), v) for k, v in where.items()) for n in nets)


def _eq(a, b) -> bool:
    if isinstance(b, bool) or isinstance(a, bool):
        return bool(a) == bool(b)
    try:
        return math.isclose(float(a), float(b))
    except (TypeError, ValueError):
        return a == b


def _two_groups(what: str, m: int, k: int) -> str | None:
    p = p_min_two_groups(m, k)
    if p >= ALPHA:
        return f"{what}: {m} vs {k} networks, the smallest permutation p is {p:.3g} >= {ALPHA:g}"
    return None


def spearman_over_fractions(nets) -> str | None:
    x = [n["fraction"] for n in nets]
    p = p_min_spearman(x)
    return None if p < ALPHA else (f"Spearman over {len(x)} networks at {len(set(x))} corrupted fractions: the "
                                   f"smallest permutation p is {p:.3g} >= {ALPHA:g}")


def spearman_over_networks(nets) -> str | None:
    p = p_min_spearman(np.arange(len(nets)))
    return None if p < ALPHA else f"Spearman over {len(nets)} networks: the smallest permutation p is {p:.3g}"


def dropout_past(p: float) -> Rule:
    def rule(nets):
        at = [n for n in nets if _eq(n.get("dropout"), p)]
        clean = sum(1 for n in at if not n.get("fraction"))
        return _two_groups(f"dropout {p:g}, clean vs corrupted labels", clean, len(at) - clean)
    return rule


def batch_norm_arms(nets) -> str | None:
    bn = _count(nets, batch_norm=True)
    return _two_groups("with vs without batch norm", bn, len(nets) - bn)


def paired_networks(nets) -> str | None:
    p = p_min_paired(len(nets))
    return None if p < ALPHA else (f"paired over {len(nets)} networks: the smallest sign-flip p is {p:.3g} >= "
                                   f"{ALPHA:g} (needs >= 6)")


def paired_non_inferiority(nets) -> str | None:
    n = len(nets)
    return None if ni_reachable_paired(n) else (f"non-inferiority paired over {n} networks: the exact one-sided "
                                                f"sign-flip test cannot reach {NI_ALPHA:g} (1/{2 ** n}; needs >= 6)")


def value_over_units(r: float, tol: float) -> Rule:
    def rule(nets):
        if any(n.get("units") is None for n in nets):
            return None  # unknown unit count (a torchvision model): thousands of feature maps
        units = int(nets[0]["units"])  # one net's units (the claim is about that net)
        hw = spearman_half_width(r, units)
        return None if hw <= tol else (f"Spearman over {units} units: projected 95 % CI half-width {hw:.3f} > "
                                       f"tolerance {tol:g}")
    return rule


def negligible_over_units(bound: float) -> Rule:
    def rule(nets):
        if any(n.get("units") is None for n in nets):
            return None  # unknown unit count (a torchvision model): thousands of feature maps
        units = int(nets[0]["units"])
        hw = spearman_half_width(0.0, units)
        return None if hw < bound else (f"Spearman over {units} units: projected 95 % CI half-width {hw:.3f} >= "
                                        f"the negligible bound {bound:g}")
    return rule


def over_networks(value_tol: tuple[float, float] | None = None) -> Rule:
    """A per-network statistic averaged over K networks (cluster bootstrap): K >= 2, and for a
    value claim a projected half-width within the tolerance."""
    def rule(nets):
        k = len(nets)
        if k < 2:
            return f"a statistic over networks needs >= 2 networks; the design has {k}"
        if value_tol is not None:
            hw = network_mean_half_width(k)
            if hw > value_tol[1]:
                return f"{k} networks: projected 95 % CI half-width {hw:.3f} > tolerance {value_tol[1]:g}"
        return None
    return rule


def snapshots_value(r: float, tol: float) -> Rule:
    def rule(nets):
        if not any(x.get("snapshots") for x in nets):
            return "no network of the figure keeps snapshots over training"
        n = min(int(x.get("snapshots") or 0) for x in nets if x.get("snapshots"))  # the snapshotted net(s)
        hw = spearman_half_width(r, SNAPSHOT_EFFECTIVE * n)
        return None if hw <= tol else (f"Spearman over {n} snapshots (~{SNAPSHOT_EFFECTIVE * n:g} independent): "
                                       f"projected 95 % CI half-width {hw:.3f} > tolerance {tol:g}")
    return rule


def snapshot_timing(tol_fraction: float) -> Rule:
    def rule(nets):
        nets = [x for x in nets if x.get("snapshots")]
        if not nets:
            return "no network of the figure keeps snapshots over training"
        worst = max(float(x.get("snapshot_spacing") or math.inf) for x in nets)
        tol = tol_fraction * max(float(x.get("epochs") or 0) for x in nets)
        return None if worst <= tol else (f"snapshots up to {worst:g} epochs apart cannot resolve +/- {tol:g} epochs")
    return rule


# Fig. 4c's sweep is the figure's "sweep" experiment (singledir.figures.registry: its
# ``curves``); the figure's design also holds the early-stopping net of Fig. 4b, which is
# not a setting of the sweep. Records without an ``experiment`` count (hand-built designs).
SWEEP_EXPERIMENT = "sweep"
PAPER_SETTINGS = PAPER_SELECTION_DESIGN[1]  # section 3.2: subsets of 48 of 96 settings


def sweep_nets(nets) -> list:
    """The Fig. 4c sweep's nets among a Fig. 4 design's records."""
    return [n for n in nets if n.get("experiment", SWEEP_EXPERIMENT) == SWEEP_EXPERIMENT]


def _settings(nets) -> int:
    """Settings (learning rate x batch size) of the sweep, as configured: every net counts, as
    the figure counts its design before any failed net is left out."""
    return len({(n.get("lr"), n.get("batch_size")) for n in sweep_nets(nets)})


def _not_the_papers(n: int, what: str) -> str | None:
    return None if n == PAPER_SETTINGS else (f"the sweep has {n} settings, not the paper's {PAPER_SETTINGS}: {what} "
                                             "depend on the subset size and are not comparable with the paper's")


def settings_value_r(r: float, tol: float) -> Rule:
    def rule(nets):
        n = _settings(nets)
        hw = spearman_half_width(r, n)
        return None if hw <= tol else f"Spearman over {n} settings: projected half-width {hw:.3f} > {tol:g}"
    return rule


def settings_rate(rate_percent: float, tol: float) -> Rule:
    """A top-k rate: the paper's design (96 settings; else "not comparable") and a projected
    half-width within the tolerance."""
    def rule(nets):
        n = _settings(nets)
        p = rate_percent / 100
        hw = 100 * 1.96 * math.sqrt(p * (1 - p) / max(n, 1))
        why = [_not_the_papers(n, "the top-k rates"),
               None if hw <= tol else f"a rate over subsets of {n} settings: projected half-width {hw:.3g} points > "
                                      f"{tol:g}"]
        return "; ".join(w for w in why if w) or None
    return rule


def settings_gap(tol: float) -> Rule:
    """The gap to the best setting: gated as the rates (:func:`settings_rate`)."""
    def rule(nets):
        n = _settings(nets)
        hw = 1.96 * GAP_SD / math.sqrt(max(n, 1))
        why = [_not_the_papers(n, "the gap to the best setting and its spread"),
               None if hw <= tol else f"the gap over {n} settings: projected half-width {hw:.3g} points > {tol:g}"]
        return "; ".join(w for w in why if w) or None
    return rule


def _strongest(nets, regularizer: str, most_negative: bool = False):
    s = sorted({float(n["strength"]) for n in nets if n.get("regularizer") == regularizer})
    return (s[0] if most_negative else s[-1]) if s else None


def regularizer_vs(regularizer: str, reference: str, labels: str, non_inferiority: bool = False,
                   most_negative: bool = False) -> Rule:
    """X4: the regularizer's strongest strength vs the reference arm (plain / batch norm), same labels."""
    def rule(nets):
        corrupted = labels == "corrupted"
        arm = [n for n in nets if bool(n.get("fraction")) == corrupted]
        if regularizer == "batch_norm":
            m = sum(1 for n in arm if n.get("condition") == "batch norm")
        else:
            s = _strongest(arm, regularizer, most_negative)
            if s is None:
                return None  # not run
            m = sum(1 for n in arm if n.get("regularizer") == regularizer and _eq(n.get("strength"), s))
        k = sum(1 for n in arm if n.get("condition") == reference)
        if not m or not k:
            return None
        if non_inferiority:
            return None if ni_reachable_two_groups(m, k) else (
                f"non-inferiority {m} vs {k} networks: the exact one-sided permutation test cannot reach "
                f"{NI_ALPHA:g} (1/{math.comb(m + k, m)})")
        return _two_groups(f"{regularizer} vs {reference} ({labels} labels)", m, k)
    return rule


def _x1(nets) -> str | None:
    """X1 ranks the clean-label nets trained without a reliance regularizer (the figure's
    :func:`singledir.stats.model_selection.x1_networks`): those are the nets counted."""
    used = [n for n in nets if not n.get("fraction") and (n.get("regularizer") or UNREGULARIZED) == UNREGULARIZED]
    p = p_min_spearman(np.arange(len(used)))
    return None if p < ALPHA else (f"Spearman over the {len(used)} clean-label networks trained without a reliance "
                                   f"regularizer (of {len(nets)} in the figure): the smallest permutation p is {p:.3g}")


RULES: dict[str, tuple[str, Rule]] = {}  # claim id -> (figure of the design, rule)


def _rules() -> None:
    for fam, panel in (("mnist", "1a"), ("cifar10", "1b"), ("imagenet", "1c")):
        RULES[f"fig{panel}_auc_vs_corruption"] = ("fig1", spearman_over_fractions)
    for panel in ("2a", "2b"):
        RULES[f"fig{panel}_noise_vs_corruption"] = ("fig2", spearman_over_fractions)
    RULES["fig3b_auc_vs_generalization_error"] = ("fig3", spearman_over_networks)
    RULES["fig4a_auc_peak_at_loss_divergence"] = ("fig4", snapshot_timing(0.05))
    RULES["fig4c_auc_vs_test_accuracy"] = ("fig4", settings_value_r(0.914, 0.1))
    for k, paper in ((1, 13.0), (5, 83.0), (10, 98.0)):
        RULES[f"fig4c_selection_top{k}"] = ("fig4", settings_rate(paper, 10.0))
    RULES["fig4c_selection_gap"] = ("fig4", settings_gap(1.1))
    for p in (0.1, 0.2, 0.3):
        RULES[f"fig5a_dropout_past_fraction_p{p:g}"] = ("fig5", dropout_past(p))
    RULES["fig5b_batchnorm_auc"] = ("fig5", batch_norm_arms)
    for cid in ("fig6a_batchnorm_selectivity", "fig6a_batchnorm_high_selectivity", "fig6b_batchnorm_mutual_information",
                "fig6a_batchnorm_selectivity_all_maps", "fig6a_batchnorm_high_selectivity_or_dead"):
        RULES[cid] = ("fig6", batch_norm_arms)
    RULES["figA1_mean_vs_zero_ablation"] = ("figA1", paired_networks)
    for cid, fig in (("fig7c_early_layers_drive_negative_r", "fig7"), ("figA2a_selectivity_vs_depth", "figA2"),
                     ("figA3a_selectivity_vs_l1_norm", "figA3"), ("figA4b_mutual_information_vs_impact", "figA4")):
        RULES[cid] = (fig, over_networks())
    RULES["fig7b_selectivity_vs_impact"] = ("fig7", over_networks((-0.428, 0.1)))
    RULES["fig7d_selectivity_vs_impact"] = ("fig7", negligible_over_units(0.3))
    RULES["figA4a_mutual_information_vs_impact"] = ("figA4", negligible_over_units(0.3))
    RULES["figA4d_mutual_information_vs_impact"] = ("figA4", negligible_over_units(0.3))
    for fam in ("mnist", "cifar10"):
        RULES[f"X1_full_auc_predicts_test_accuracy_{fam}"] = ("figX1", _x1)
        RULES[f"X1_onepoint_predicts_test_accuracy_{fam}"] = ("figX1", _x1)
        RULES[f"X2_onepoint_stop_vs_val_stop_{fam}"] = ("figX2", paired_non_inferiority)
        RULES[f"X2_full_auc_stop_vs_val_stop_{fam}"] = ("figX2", paired_non_inferiority)
        for reg in ("ablation_noise", "reliance"):
            RULES[f"X4_{reg}_raises_auc_{fam}"] = ("figX4", regularizer_vs(reg, "plain", "clean"))
            RULES[f"X4_{reg}_test_accuracy_price_{fam}"] = ("figX4", regularizer_vs(reg, "plain", "clean", True))
            RULES[f"X4_{reg}_limits_memorization_{fam}"] = ("figX4", regularizer_vs(reg, "plain", "corrupted"))
        RULES[f"X4_negative_alpha_lowers_selectivity_{fam}"] = (
            "figX4", regularizer_vs("selectivity", "plain", "clean", most_negative=True))
        RULES[f"X4_low_selectivity_keeps_test_accuracy_{fam}"] = (
            "figX4", regularizer_vs("selectivity", "plain", "clean", True, most_negative=True))
    RULES["X4_batch_norm_raises_auc_cifar10"] = ("figX4", regularizer_vs("batch_norm", "plain", "clean"))
    for reg in ("ablation_noise", "reliance"):
        RULES[f"X4_{reg}_auc_vs_batch_norm_cifar10"] = ("figX4", regularizer_vs(reg, "batch norm", "clean", True))


_rules()


def undecidable_claims(design: Design, claims=None, value_tolerances: dict | None = None) -> list[dict]:
    """[{claim, figure, family, why}] for every claim of ``claims`` (default: the claims table's,
    :data:`singledir.stats.beyond_claims.ALL_CLAIMS`) that this design cannot decide.

    ``design``: {family: {figure: [network record, ...]}} for the figures the config draws;
    a record has the network's grid values (``fraction``, ``seed``, ``dropout``,
    ``batch_norm``, ``lr``, ``batch_size``, ``strength``), its ``regularizer`` and
    ``condition`` (plain, dropout, batch norm, or the regularizer), ``units`` (analysed
    units), ``epochs``, ``snapshots`` and ``snapshot_spacing`` (largest gap between
    snapshots, in epochs). ``value_tolerances`` overrides a value claim's tolerance by claim
    id (default: the claim's own, so a widened band is seen here).
    """
    if claims is None:
        claims = ALL_CLAIMS
    out = []
    for c in claims:
        if c.claim_id not in RULES:
            continue
        figure, rule = RULES[c.claim_id]
        nets = design.get(c.family, {}).get(figure)
        if not nets:
            continue  # not run by this design
        tol = getattr(c.expect, "tol", None)
        if tol is not None and isinstance(tol, float) and math.isfinite(tol) and c.claim_id in _VALUE_RULES:
            rule = _VALUE_RULES[c.claim_id](tol)
        why = rule(nets)
        if why:
            out.append({"claim": c.claim_id, "figure": c.figure, "family": c.family, "why": why})
    return out


# value claims whose rule depends on the claim's own tolerance (read from the claim, so a
# tolerance widened in paper_claims is what the check uses)
_VALUE_RULES: dict[str, Callable[[float], Rule]] = {
    "fig7a_selectivity_vs_impact": lambda tol: value_over_units(0.095, tol),
    "fig4b_auc_vs_test_loss_mnist": lambda tol: snapshots_value(-0.728, tol),
    "fig4b_auc_vs_test_loss_cifar10": lambda tol: snapshots_value(-0.728, tol),
    "fig4c_auc_vs_test_accuracy": lambda tol: settings_value_r(0.914, tol),
    "fig7b_selectivity_vs_impact": lambda tol: over_networks((-0.428, tol)),
    "fig4c_selection_gap": lambda tol: settings_gap(tol),
    **{f"fig4c_selection_top{k}": (lambda paper: (lambda tol: settings_rate(paper, tol)))(p)
       for k, p in ((1, 13.0), (5, 83.0), (10, 98.0))},
}
for _cid in _VALUE_RULES:
    RULES.setdefault(_cid, ("fig7" if _cid.startswith("fig7") else "fig4", _VALUE_RULES[_cid](0.1)))

"""Claims of our own: the paper's section-5 future work (docs/beyond.md).

Rows of the same claims table (:mod:`singledir.stats.claims`; :data:`ALL_CLAIMS` is the table's
list: the paper's :data:`singledir.stats.paper_claims.CLAIMS`, then these), judged by the same verdict rules;
the paper never measured them, so the "paper value" column says ``new`` and the
tolerance column states the threshold we fixed in advance. Statistics come from the
figure scripts of Figs. X1-X4 (``results/stats/<family>.csv``). Claims about a
regularizer read its strongest configured strength (the largest q_max or lambda, the most
negative alpha), so the rows do not depend on how many strengths a config runs.

:func:`readme_section` turns the claims table into the results section of docs/beyond.md
(``python -m singledir.stats.beyond_claims results/claims.csv docs/beyond.md``, also run by
``make readme-status``): per extension the question, what ran at which scale, and what came
out.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from singledir.io import atomic_path
from singledir.stats.claims import (FAMILY_NAMES, NOT_RUN, Claim, ClaimsInputError, Direction, Estimate,
                                    NotRun, _f, between_networks, converged, counting_failed, diff_arms, from_stat,
                                    with_failed_count)
from singledir.stats.claims_markdown import format_number
from singledir.stats.paper_claims import CLAIMS

COST_LIMIT = 0.10  # "at <= 10 % of its cost"
KEEP_RATIO = 0.90  # "keeps >= 90 % of the full AUC's rank correlation"
# nats of test loss: "no worse than validation-loss stopping"; a non-inferiority claim, judged
# by its CI over seeds alone (a permutation test of "no difference" would not test it)
STOP_TOL = 0.05
ACCURACY_PRICE = -0.01  # "costs less than 1 point of clean test accuracy"
# "at least as robust as batch norm": a non-inferiority margin on the normalized AUC (range 0-1),
# fixed before any CIFAR-10 E2 run; judged by its CI over seeds (as STOP_TOL)
AUC_MARGIN = 0.02


@dataclass(frozen=True)
class New:
    """An expectation of ours (not the paper's): paper_value "new"; judged like ``inner``."""

    inner: "Direction"
    text: str
    kind = "direction"

    @property
    def paper_value(self) -> str:
        return "new"

    @property
    def tolerance(self) -> str:
        return self.text

    def judge(self, e):
        return self.inner.judge(e)


def _headline(src: Sources, family: str) -> float:
    return _f(src.stat(family, "figX1", "headline_fraction")["value"])


def onepoint_keeps_rank_r(src: Sources, family: str) -> Estimate:
    f = _headline(src, family)
    probe = f"point@{f:g}"
    if not src.has_stat(family, "figX1", f"r_ratio_{probe}_to_full"):
        raise ClaimsInputError(f"figX1_{family}: beyond.headline_fraction {f:g} is not one of beyond.probe_fractions")
    e = Estimate.from_row(src.stat(family, "figX1", f"r_ratio_{probe}_to_full"), "networks")
    cost = _f(src.stat(family, "figX1", f"cost_fraction_{probe}_of_full")["value"])
    full = Estimate.from_row(src.stat(family, "figX1", "spearman_full_auc_vs_test_accuracy"))
    e.note = (f"one-point probe at {f:g} of the units; cost {cost:.3g} of the full AUC's; full AUC's r = "
              f"{full.value:.3g} [{full.ci_low:.3g}, {full.ci_high:.3g}]")
    if cost > COST_LIMIT:
        e.caps.append(f"the probe costs {cost:.3g} of the full AUC's forward passes, more than {COST_LIMIT:g}")
    if not full.ci_low > 0:
        e.caps.append("the full AUC's own rank correlation with test accuracy is not established (CI includes 0): "
                      "a ratio to it means nothing")
    return e


def _probe_stat(figure: str, template: str) -> "callable":
    def estimate(src: Sources, family: str) -> Estimate:
        name = template.format(p=f"point@{_headline(src, family):g}")
        return from_stat(figure, name)(src, family)
    return estimate


def probe_selection_beats_chance(src: Sources, family: str) -> Estimate:
    probe = f"point@{_headline(src, family):g}"
    e = Estimate.from_row(src.stat(family, "figX1", f"selection_top1_percent_{probe}"), "networks")
    return Estimate(e.value - e.chance, math.nan, math.nan, e.n, "networks", e.p, e.p_min, e.chance,
                    note=f"top-1 rate {e.value:.3g} % vs chance {e.chance:.3g} %; one-sided permutation p = "
                         f"{e.p:.3g} (probe shuffled across networks)")


def strongest(template: str, regularizer: str, most_negative: bool = False, figure: str = "figX4",
              between: bool = True):
    """The statistic ``template.format(cond=<regularizer>_<strength>)`` at the strongest
    configured strength; NotRun when the figure ran without that regularizer."""
    def estimate(src: Sources, family: str) -> Estimate:
        src.stat(family, figure, "auc_plain_clean") if figure == "figX4" else None  # NotRun if not drawn
        names = src._read(src.stats[family]).query("figure == @figure")["statistic"].astype(str)
        pat = re.compile("^" + re.escape(template).replace(re.escape("{cond}"),
                                                           re.escape(regularizer) + r"_(-?[0-9.eE+-]+)") + "$")
        found = {float(m.group(1)): n for n in names if (m := pat.match(n))}
        if not found:
            raise NotRun(f"{figure}_{family} has no {regularizer} nets in this config")
        s = min(found) if most_negative else max(found)
        e = Estimate.from_row(src.stat(family, figure, found[s]), "networks")
        e.note = f"strength {s:g} (of {sorted(found)})"
        return between_networks(lambda *_: e)(src, family) if between else e
    return estimate


NETS = "networks (seeds)"


def design_gate(estimator):
    """For non-inferiority claims (no worse than a margin), where a permutation p >= 0.05 for
    "no difference" is the expected outcome: only the design is gated. Their CI (written by
    the figure scripts with ``interval="permutation"``) is the inverted exact one-sided test
    at the margin (:func:`singledir.stats.inference.shift_interval_paired` /
    ``shift_interval_two_sample``), so "CI beyond the margin" is that test rejecting at
    2.5 %. With so few networks that it cannot (the CI is unbounded: paired n <= 5, 3 + 3
    networks), the claim is *inconclusive by design*, never passed or failed on a
    bootstrap of a handful of networks. (``p_min`` of the two-sided test of no difference
    does not gate these claims: that test is not the one they make.)"""
    def estimate(src, family):
        e = estimator(src, family)
        if math.isinf(e.ci_low) or math.isinf(e.ci_high):
            e.caps.append(f"inconclusive by design: with n = {e.n} networks the exact one-sided permutation test at "
                          "the margin cannot reach 2.5 % (its CI is unbounded); add networks (paired >= 6, "
                          "two groups >= 4 + 4)")
        return e
    return estimate


def unregularized_only(estimator):
    """X1 ranks only the nets trained without a reliance regularizer (the figure leaves the
    others out: :func:`singledir.stats.model_selection.x1_networks`); the note says how many
    were left out, by condition (the figure's ``networks_regularized_excluded``)."""
    def estimate(src: Sources, family: str) -> Estimate:
        e = estimator(src, family)
        if src.has_stat(family, "figX1", "networks_regularized_excluded"):
            r = src.stat(family, "figX1", "networks_regularized_excluded")
            said = r.get("note")
            if _f(r["value"]) > 0 and isinstance(said, str) and said:
                e.note = "; ".join(filter(None, [e.note, said]))
        return e
    return estimate


def _probe_claims(fam: str) -> list[Claim]:
    return [
        Claim(f"X1_onepoint_keeps_rank_r_{fam}", "X1", fam,
              f"A one-point probe keeps >= {KEEP_RATIO:.0%} of the full AUC's rank correlation with test accuracy "
              f"at <= {COST_LIMIT:.0%} of its cost",
              "r(one-point probe, test acc) / r(full AUC, test acc) over networks",
              New(Direction(">", KEEP_RATIO), f"CI > {KEEP_RATIO:g}; cost <= {COST_LIMIT:g}"), NETS,
              with_failed_count("figX1", unregularized_only(onepoint_keeps_rank_r))),
        Claim(f"X1_full_auc_predicts_test_accuracy_{fam}", "X1", fam,
              "Across the networks probed, a higher training-set ablation AUC goes with higher test accuracy",
              "Spearman r(full AUC, test accuracy) over networks", New(Direction(">"), "CI > 0"), NETS,
              with_failed_count("figX1", unregularized_only(between_networks(
                  from_stat("figX1", "spearman_full_auc_vs_test_accuracy"))))),
        Claim(f"X1_onepoint_predicts_test_accuracy_{fam}", "X1", fam,
              "The one-point probe alone ranks networks by test accuracy",
              "Spearman r(one-point probe, test accuracy) over networks", New(Direction(">"), "CI > 0"), NETS,
              with_failed_count("figX1", unregularized_only(between_networks(
                  _probe_stat("figX1", "spearman_{p}_vs_test_accuracy"))))),
        Claim(f"X1_onepoint_selection_beats_chance_{fam}", "X1", fam,
              "Picking the network with the best one-point probe in random subsets beats a random pick",
              "top-1 rate - chance (percentage points)", New(Direction(">", test_only=True), "permutation p < 0.05"),
              "permutation null: probe shuffled across networks",
              with_failed_count("figX1", unregularized_only(probe_selection_beats_chance))),
        Claim(f"X2_onepoint_stop_vs_val_stop_{fam}", "X2", fam,
              "Stopping at the one-point probe's peak (training data only) is no worse than validation-loss stopping",
              "test loss at the probe's stop - at the validation-loss stop (paired by network)",
              New(Direction("<", STOP_TOL), f"CI < +{STOP_TOL:g} nats"), NETS,
              design_gate(_probe_stat("figX2", "test_loss_{p}_minus_val_loss"))),
        Claim(f"X2_full_auc_stop_vs_val_stop_{fam}", "X2", fam,
              "Stopping at the full AUC's peak is no worse than validation-loss stopping",
              "test loss at the AUC's stop - at the validation-loss stop (paired by network)",
              New(Direction("<", STOP_TOL), f"CI < +{STOP_TOL:g} nats"), NETS,
              design_gate(from_stat("figX2", "test_loss_full_auc_minus_val_loss"))),
    ]


def arms_converged(estimator):
    """An X4 comparison holds only if both arms it compares (read from the statistic's name,
    :func:`singledir.stats.claims.diff_arms`) converged: :func:`singledir.stats.claims.converged`."""
    return converged("figX4", diff_arms, estimator)


def _regularizer_claims(fam: str) -> list[Claim]:
    """The X4 rows of one family: each regularizer against plain training (no batch norm);
    every one requires both arms converged (:func:`arms_converged`)."""
    out = []
    for reg, what in (("ablation_noise", "Ablation-noise training"), ("reliance", "The reliance penalty")):
        out.append(Claim(f"X4_{reg}_raises_auc_{fam}", "X4", fam, f"{what} makes clean-label nets more robust to "
                         "cumulative ablation than plain training", "AUC - plain AUC (clean labels)",
                         New(Direction(">"), "CI > 0"), NETS,
                         arms_converged(strongest("auc_diff_{cond}_minus_plain_clean", reg))))
        out.append(Claim(f"X4_{reg}_test_accuracy_price_{fam}", "X4", fam, f"{what} costs less than 1 point of "
                         "clean test accuracy", "test accuracy - plain (clean labels)",
                         New(Direction(">", ACCURACY_PRICE), f"CI > {ACCURACY_PRICE:g}"), NETS,
                         arms_converged(design_gate(strongest("test_accuracy_diff_{cond}_minus_plain_clean", reg,
                                                              between=False)))))
        out.append(Claim(f"X4_{reg}_limits_memorization_{fam}", "X4", fam, f"{what} hinders memorizing shuffled "
                         "labels", "training accuracy on its shuffled labels - plain's", New(Direction("<"), "CI < 0"),
                         NETS, arms_converged(strongest("train_accuracy_diff_{cond}_minus_plain_corrupted", reg))))
    out.append(Claim(f"X4_negative_alpha_lowers_selectivity_{fam}", "X4", fam,
                     "Class-selectivity regularization with negative alpha lowers mean class selectivity",
                     "mean selectivity - plain (clean labels)", New(Direction("<"), "CI < 0"), NETS,
                     arms_converged(strongest("selectivity_diff_{cond}_minus_plain_clean", "selectivity",
                                              most_negative=True))))
    out.append(Claim(f"X4_low_selectivity_keeps_test_accuracy_{fam}", "X4", fam,
                     "Lowering class selectivity (negative alpha) costs less than 1 point of clean test accuracy "
                     "(the paper's closing conjecture: selective units may even hurt)",
                     "test accuracy - plain (clean labels)",
                     New(Direction(">", ACCURACY_PRICE), f"CI > {ACCURACY_PRICE:g}"), NETS,
                     arms_converged(design_gate(strongest("test_accuracy_diff_{cond}_minus_plain_clean",
                                                          "selectivity", most_negative=True, between=False)))))
    return out


def _batchnorm_claims(fam: str) -> list[Claim]:
    """The CIFAR-10 rows against the batch-norm arm (the paper's default ConvNet; its section
    3.3: batch norm lowers single-direction reliance): does batch norm do so on the E2 nets, and
    does a regularizer aimed at single directions do at least as much (within AUC_MARGIN)?"""
    out = [Claim(f"X4_batch_norm_raises_auc_{fam}", "X4", fam,
                 "Batch norm makes clean-label nets more robust to cumulative ablation than plain training "
                 "(section 3.3, on the E2 nets: the arm the regularizers are compared with)",
                 "AUC - plain AUC (clean labels)", New(Direction(">"), "CI > 0"), NETS,
                 arms_converged(between_networks(from_stat("figX4", "auc_diff_batch_norm_minus_plain_clean"))))]
    for reg, what in (("ablation_noise", "Ablation-noise training"), ("reliance", "The reliance penalty")):
        out.append(Claim(f"X4_{reg}_auc_vs_batch_norm_{fam}", "X4", fam,
                         f"{what} makes clean-label nets at least as robust to cumulative ablation as batch norm "
                         f"(within {AUC_MARGIN:g} AUC)", "AUC - batch-norm AUC (clean labels)",
                         New(Direction(">", -AUC_MARGIN), f"CI > -{AUC_MARGIN:g}"), NETS,
                         arms_converged(design_gate(strongest("auc_diff_{cond}_minus_batch_norm_clean", reg,
                                                              between=False)))))
    return out


def beyond_claims() -> list[Claim]:
    out = _probe_claims("mnist") + _probe_claims("cifar10")
    # E2: MNIST compares with dropout in its figures; CIFAR-10 with batch norm (figX4's statistics)
    return out + _regularizer_claims("mnist") + _regularizer_claims("cifar10") + _batchnorm_claims("cifar10")


# The rows of the claims table (results/claims.csv): the paper's claims, then ours.
ALL_CLAIMS: list[Claim] = CLAIMS + counting_failed(beyond_claims())


# ---------------------------------------------------------------------------- docs/beyond.md section

BEGIN = "<!-- BEGIN beyond-the-paper: generated by `make readme-status` from results/claims.csv; do not edit -->"
END = "<!-- END beyond-the-paper -->"
HEADING = "## Results of the last run"  # in docs/beyond.md, whose title is "# Beyond the paper"
QUESTIONS = {
    "X1": ("E1, model selection (Fig. X1)", "Can a cheap reliance probe on training data (accuracy at one ablation "
           "fraction, a 3-point AUC) rank networks by test accuracy as well as the full ablation AUC, without a "
           "validation set (paper section 5)?"),
    "X2": ("E1, early stopping (Fig. X2)", "Does stopping at a probe's peak (patience rule, training data only) "
           "pick as good an epoch as validation-loss stopping?"),
    "X4": ("E2, regularizers (Figs. X3, X4)", "Do regularizers aimed at single directions (ablation noise with "
           "q ~ U(0, q_max), a reliance penalty, class-selectivity regularization) make nets more robust, at what "
           "test accuracy, and do they stop memorization of shuffled labels?"),
}


def readme_section(table: pd.DataFrame, scale: str) -> str:
    new = table[table["paper_value"] == "new"]
    lines = [BEGIN, "", f"Our own experiments on the paper's section-5 future work (`singledir.stats.beyond_claims`), "
             f"rows of the claims table judged by its verdict rules; scale of this run: **{scale}**. Data and "
             "sizes: `config/demo.yaml` (8x8 digits stand-ins: small MLPs, and for CIFAR-10's E2 the ConvNet on "
             "16x16 colour digits; 2-6 seeds) and `config/config.yaml` (MNIST with the paper's MLP widths, "
             "CIFAR-10 with its ConvNet; comments there give the sizes).", ""]
    for fig, (title, question) in QUESTIONS.items():
        rows = new[new["figure"].isin([fig] if fig != "X4" else ["X3", "X4"])]
        lines += [f"### {title}", "", f"*Question.* {question}", ""]
        not_run = rows[rows["verdict"] == NOT_RUN]
        rows = rows[rows["verdict"] != NOT_RUN]
        if rows.empty:
            lines += ["Not run in this results directory.", ""]
            continue
        lines += ["| Data | Claim | Quantity | Threshold | Ours [95 % CI] | n | p | Verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows.itertuples(index=False):
            ours = format_number(r.our_value) + (f" [{format_number(r.ci_low)}, {format_number(r.ci_high)}]"
                                                 if format_number(r.ci_low) else "")
            n = f"{int(r.n)} {r.n_unit}" if r.verdict != NOT_RUN and r.n else ""
            lines.append("| " + " | ".join(str(x).replace("|", "\\|") for x in (
                FAMILY_NAMES.get(r.family, r.family), r.statement, r.quantity, r.tolerance, ours, n, format_number(r.p),
                r.verdict)) + " |")
        why = [f"- {r.claim_id}: {r.verdict}: {'; '.join(t for t in (r.reason, r.note) if isinstance(t, str) and t)}"
               for r in rows.itertuples(index=False) if isinstance(r.reason, str) and r.reason or
               isinstance(r.note, str) and r.note]
        if len(not_run):
            fams = sorted({FAMILY_NAMES.get(f, f) for f in not_run["family"]})
            why.append(f"- Not run here ({len(not_run)} rows): {', '.join(fams)}.")
        lines += [""] + why + [""]
    lines.append(END)
    return "\n".join(lines)


def update_readme(readme: str, section: str) -> str:
    start, end = readme.find(BEGIN.split(":")[0]), readme.find(END)
    if start >= 0 and end > start:
        return readme[:start] + section + readme[end + len(END):]
    if start >= 0 or end >= 0:
        raise ValueError(f"README: the markers {BEGIN!r} and {END!r} must both be present, in that order")
    m = re.search(rf"^{re.escape(HEADING)}[ \t]*$", readme, flags=re.M)
    if m:
        return readme[:m.end()] + "\n\n" + section + "\n" + readme[m.end():]
    return readme.rstrip("\n") + f"\n\n{HEADING}\n\n{section}\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Regenerate the results section of docs/beyond.md")
    ap.add_argument("claims", nargs="?", default="results/claims.csv")
    ap.add_argument("readme", nargs="?", default="docs/beyond.md", help="the page with the generated section")
    ap.add_argument("--scale", default=None, help="scale name (default: read from results/claims.md)")
    args = ap.parse_args(argv)
    claims = Path(args.claims)
    if not claims.is_file():
        print(f"{claims} not found: run the workflow first (make demo), which writes it", file=sys.stderr)
        return 2
    scale = args.scale
    md = claims.with_suffix(".md")
    if scale is None and md.is_file():
        m = re.search(r"Scale: \*\*([^*]+)\*\*", md.read_text())
        scale = m.group(1) if m else "unknown"
    readme = Path(args.readme)
    old = readme.read_text() if readme.is_file() else ""
    new = update_readme(old, readme_section(pd.read_csv(claims), scale or "unknown"))
    if new != old:
        with atomic_path(readme) as tmp:
            tmp.write_text(new)
    print(f"{readme}: 'Beyond the paper' results {'updated' if new != old else 'already up to date'} from {claims}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

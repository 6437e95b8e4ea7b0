"""The paper's claims (Morcos et al. 2018), one :class:`~singledir.stats.claims.Claim` per
panel and family: what the paper says, the tolerance fixed in advance, and where our
estimate comes from (the verdict machinery is :mod:`singledir.stats.claims`). Grouped as
the paper's figures are: label corruption (Figs. 1-3), AUC over training and for model
selection (Fig. 4), dropout and batch norm (Figs. 5-6), class selectivity (Fig. 7), the
appendix (Figs. A1-A4).
"""

from __future__ import annotations

import math

import numpy as np

from singledir.stats.claims import (PAPER_SELECTION_DESIGN, TIMING_TOL_FRACTION, Claim, Direction, Estimate,
                                    Estimator, Negligible, NotComparable, NotRun, Sources, Value, _f,
                                    between_networks, counting_failed, from_stat, memorized,
                                    with_failed_count)
from singledir.stats.inference import bootstrap_ci, spearman_r


# ---------------------------------------------------------------------------- estimates of one figure

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


# ---------------------------------------------------------------------------- claims

UNITS = "units (single-unit ablations)"
NETS = "networks (orderings averaged within each)"


def corruption_claims() -> list[Claim]:
    """Figs. 1-3: networks that memorize corrupted labels depend more on single directions."""
    out: list[Claim] = []
    for fam, panel in (("mnist", "1a"), ("cifar10", "1b"), ("imagenet", "1c")):
        out.append(Claim(f"fig{panel}_auc_vs_corruption", panel, fam,
                         "Ablation AUC decreases as the fraction of corrupted labels rises",
                         "Spearman r(AUC, corrupted fraction) over networks", Direction("<"), NETS,
                         with_failed_count("fig1", memorized("fig1", between_networks(
                             from_stat("fig1", "spearman_auc_vs_corrupted_fraction"))))))
    for fam, panel in (("mnist", "2a"), ("cifar10", "2b")):
        out.append(Claim(f"fig{panel}_noise_vs_corruption", panel, fam,
                         "Robustness to random-direction noise decreases with label corruption",
                         "Spearman r(noise robustness, corrupted fraction) over networks", Direction("<"),
                         "networks (noise draws averaged within each)",
                         with_failed_count("fig2", memorized("fig2", between_networks(
                             from_stat("fig2", "spearman_noise_robustness_vs_corrupted_fraction"))))))
    out.append(Claim("fig3b_auc_vs_generalization_error", "3b", "cifar10",
                     "Clean-label nets with a lower ablation AUC generalize worse",
                     "Spearman r(AUC, generalization error) over networks", Direction("<"), NETS,
                     with_failed_count("fig3", between_networks(
                         from_stat("fig3", "spearman_auc_vs_generalization_error")))))
    return out


def training_and_selection_claims() -> list[Claim]:
    """Fig. 4: the AUC over training (early stopping) and across a sweep (model selection)."""
    out: list[Claim] = []
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
    return out


def dropout_and_batchnorm_claims() -> list[Claim]:
    """Figs. 5-6: dropout protects only up to its fraction; batch norm discourages single directions."""
    out: list[Claim] = []
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
    return out


def selectivity_claims() -> list[Claim]:
    """Fig. 7: class selectivity is a poor predictor of a unit's importance."""
    out: list[Claim] = []
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
    return out


def appendix_claims() -> list[Claim]:
    """Figs. A1-A4: mean ablation, selectivity by depth and filter norm, mutual information."""
    out: list[Claim] = []
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


# Every claim names and counts the nets its figure left out because they failed to train
# (claims.counting_failed).
CLAIMS: list[Claim] = counting_failed(corruption_claims() + training_and_selection_claims()
                                      + dropout_and_batchnorm_claims() + selectivity_claims() + appendix_claims())

"""The figure registry: every figure this project draws, in one place.

One :class:`Figure` per figure rule (``fig1`` ... ``figA4``, and ``figX1`` ... ``figX4`` beyond
the paper), one :class:`Panel` per family that has it. A panel says which paper panel it
reproduces, which per-model files it reads (by kind, for which experiments), and its
fixed drawing settings. Everything else is derived from here: the experiments each figure
needs (:data:`singledir.pipeline.plan.FIGURES`), the Snakemake rules themselves with their
inputs, params and outputs (``workflow/rules/figures.smk``, ``figures_common.smk``), the
report captions' paper panels and the gallery (:mod:`singledir.figures.report_pages`), and
the figures the unknown-figure rule knows.

Adding a figure touches this registry, its script (``workflow/scripts/<script>``) and its
caption (``workflow/report/<figure>.rst``): ``workflow/rules/figures.smk`` makes one rule per
:data:`FIGURE_LIST` entry, named after it, whose ``script:`` is the entry's. No Snakemake
import, and nothing from :mod:`singledir.pipeline` (plan imports this module).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Per-model files a figure can read, by kind: the path under results/ of one model's file.
KIND_PATHS = {
    "ablation_zero": "analysis/{family}/{model}/ablation_zero.csv",
    "ablation_mean": "analysis/{family}/{model}/ablation_mean.csv",
    "noise": "analysis/{family}/{model}/noise.csv",
    "units": "analysis/{family}/{model}/units.csv",
    "training_auc": "analysis/{family}/{model}/training_auc.csv",
    "probes": "analysis/{family}/{model}/probes.csv",
    "probe_curve": "analysis/{family}/{model}/probe_curve.csv",
    "history": "models/{family}/{model}/history.csv",
}


@dataclass(frozen=True)
class Input:
    """One named input of a figure rule: files of one kind, one per model of the selections
    (experiment names, or ``"exp[var=value]"`` for some grid points; see
    :func:`singledir.pipeline.plan.parse_selection`)."""

    kind: str
    selections: tuple[str, ...]

    def __post_init__(self):
        if self.kind not in KIND_PATHS:
            raise ValueError(f"figure input kind {self.kind!r} is unknown; known kinds: {sorted(KIND_PATHS)}")


@dataclass(frozen=True)
class Panel:
    """A figure of one family: the paper panel it reproduces, its inputs (name -> Input) and
    its fixed settings (name -> value, or a function of the family's config section)."""

    panel: str
    inputs: dict[str, Input]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def selections(self) -> list[str]:
        """The experiment selections the panel reads, in first-use order."""
        out: list[str] = []
        for inp in self.inputs.values():
            out += [s for s in inp.selections if s not in out]
        return out


@dataclass(frozen=True)
class Figure:
    """One figure rule: ``results/<name>_<family>.pdf`` for each family in ``panels``."""

    name: str
    title: str  # the paper's figure title (beyond the paper: what the figure shows)
    script: str  # under workflow/scripts/
    panels: dict[str, Panel]
    beyond: bool = False  # beyond the paper (families.<family>.beyond.enabled turns it off)

    @property
    def caption(self) -> str:
        """The caption template under workflow/report/."""
        return f"{self.name}.rst"


def _ins(**inputs: tuple[str, list[str] | tuple[str, ...]]) -> dict[str, Input]:
    return {name: Input(kind, tuple(sel)) for name, (kind, sel) in inputs.items()}


def _ablation_xlabel(family_cfg: dict) -> str:
    """The ImageNet Fig. 1c x axis names the ablated layers (analysis.ablation_layers)."""
    layers = family_cfg.get("analysis", {}).get("ablation_layers")
    return "Number of feature maps ablated ({})".format(
        f"last {-layers} layers" if isinstance(layers, int) else "chosen layers")


def _beyond(family_cfg: dict) -> dict:
    return family_cfg.get("beyond", {})


BEYOND_REGULARIZER_EXPERIMENTS = ("reg_plain", "reg_dropout", "reg_noise", "reg_reliance", "reg_selectivity")
_CIFAR_REGULARIZERS = ("reg_plain", "reg_batchnorm", "reg_noise", "reg_reliance", "reg_selectivity")
# The CIFAR-10 unit analyses (Figs. 7, A1-A4) use the BN models of the batch-norm experiment
# (clean labels, the paper's default architecture).
_CIFAR_BN = ["batch_norm[batch_norm=true]"]
_SELECTIVITY = dict(predictor="selectivity", xlabel="Selectivity index", title="Class selectivity vs ablation impact")
_MI = dict(predictor="mutual_information", xlabel="Mutual information (bits)",
           title="Mutual information vs ablation impact")

FIGURE_LIST = [
    Figure("fig1", "Memorizing networks are more sensitive to cumulative ablations", "fig1_ablation_by_corruption.py", {
        "mnist": Panel("1a", _ins(curves=("ablation_zero", ["corruption"]), histories=("history", ["corruption"]))),
        "cifar10": Panel("1b", _ins(curves=("ablation_zero", ["corruption"]), histories=("history", ["corruption"]))),
        "imagenet": Panel("1c", _ins(curves=("ablation_zero", ["corruption"]), histories=("history", ["corruption"])),
                          dict(xlabel=_ablation_xlabel, ylabel="Training accuracy (top-5)",
                               title="ResNet: cumulative ablation vs label corruption")),
    }),
    Figure("fig2", "Memorizing networks are more sensitive to random noise", "fig2_noise_by_corruption.py", {
        "mnist": Panel("2a", _ins(curves=("noise", ["corruption"]), histories=("history", ["corruption"]))),
        "cifar10": Panel("2b", _ins(curves=("noise", ["corruption"]), histories=("history", ["corruption"]))),
    }),
    Figure("fig3", "Networks which generalize poorly are more reliant on single directions",
           "fig3_generalization.py", {
               "cifar10": Panel("3a-b", _ins(curves=("ablation_zero", ["generalization"]),
                                             histories=("history", ["generalization"]))),
           }),
    Figure("fig4", "Single direction reliance as a signal for hyperparameter selection and early stopping",
           "fig4_selection_and_early_stopping.py", {
               "mnist": Panel("4a", _ins(snapshots=("training_auc", ["early_stopping"]),
                                          stopping_histories=("history", ["early_stopping"]))),
               "cifar10": Panel("4b-c", _ins(snapshots=("training_auc", ["early_stopping"]),
                                             stopping_histories=("history", ["early_stopping"]),
                                             curves=("ablation_zero", ["sweep"]), histories=("history", ["sweep"]))),
           }),
    Figure("fig5", "Impact of regularizers on networks' reliance upon single directions", "fig5_regularizers.py", {
        "mnist": Panel("5a", _ins(curves=("ablation_zero", ["dropout"]), histories=("history", ["dropout"]))),
        "cifar10": Panel("5b", _ins(curves=("ablation_zero", ["batch_norm"]), histories=("history", ["batch_norm"]))),
    }),
    Figure("fig6", "Batch normalization decreases class selectivity and increases mutual information",
           "fig6_batchnorm_selectivity.py", {
               "cifar10": Panel("6a-b", _ins(units=("units", ["batch_norm"]), histories=("history", ["batch_norm"]))),
           }),
    Figure("fig7", "Selective and non-selective directions are similarly important", "unit_importance_scatter.py", {
        "mnist": Panel("7a", _ins(units=("units", ["selectivity"]), histories=("history", ["selectivity"])), _SELECTIVITY),
        "cifar10": Panel("7b-c", _ins(units=("units", _CIFAR_BN), histories=("history", _CIFAR_BN)), _SELECTIVITY),
        "imagenet": Panel("7d-e", _ins(units=("units", ["selectivity"]), histories=("history", ["selectivity"])),
                          dict(predictor="selectivity", xlabel="Class selectivity index", short="selectivity",
                               title="ResNet: class selectivity vs ablation impact", per_layer_panel=True)),
    }),
    Figure("figA1", "Ablation to zero vs. ablation to the empirical feature map mean", "figA1_ablation_methods.py", {
        "cifar10": Panel("A1", _ins(zero=("ablation_zero", _CIFAR_BN), mean=("ablation_mean", _CIFAR_BN),
                                    histories=("history", _CIFAR_BN))),
    }),
    Figure("figA2", "Class selectivity increases with depth", "figA2_selectivity_by_depth.py", {
        "cifar10": Panel("A2a", _ins(units=("units", _CIFAR_BN), histories=("history", _CIFAR_BN))),
        "imagenet": Panel("A2b", _ins(units=("units", ["selectivity"]), histories=("history", ["selectivity"]))),
    }),
    Figure("figA3", "Class selectivity is uncorrelated with L1-norm", "figA3_selectivity_vs_l1.py", {
        "cifar10": Panel("A3a", _ins(units=("units", _CIFAR_BN), histories=("history", _CIFAR_BN))),
        "imagenet": Panel("A3b", _ins(units=("units", ["selectivity"]), histories=("history", ["selectivity"]))),
    }),
    Figure("figA4", "Mutual information is not a good predictor of unit importance",
           "unit_importance_scatter.py", {
               "mnist": Panel("A4a", _ins(units=("units", ["selectivity"]), histories=("history", ["selectivity"])), _MI),
               "cifar10": Panel("A4b-c", _ins(units=("units", _CIFAR_BN), histories=("history", _CIFAR_BN)), _MI),
               "imagenet": Panel("A4d-e", _ins(units=("units", ["selectivity"]), histories=("history", ["selectivity"])),
                                 dict(predictor="mutual_information", xlabel="Mutual information (bits)", short="MI",
                                      title="ResNet: mutual information vs ablation impact", per_layer_panel=True)),
           }),
    # Beyond the paper (README "Beyond the paper"). X1 selects among clean-label nets (MNIST: of
    # the regularizer grid, as it has no hyperparameter sweep; CIFAR-10: the Fig. 4c sweep and
    # the Fig. 3 ensemble), X2 early-stops the multi-seed probe_stopping nets, X3/X4 compare
    # the regularizers (CIFAR-10's reg_batchnorm: the batch-norm comparison of section 3.3).
    Figure("figX1", "Cheap reliance probes for model selection", "figX1_probe_selection.py", {
        "mnist": Panel("X1", _ins(probes=("probes", [f"{e}[fraction=0.0]" for e in BEYOND_REGULARIZER_EXPERIMENTS]),
                                  curves=("probe_curve",
                                          [f"{e}[fraction=0.0]" for e in BEYOND_REGULARIZER_EXPERIMENTS])),
                       dict(beyond=_beyond)),
        "cifar10": Panel("X1", _ins(probes=("probes", ["sweep", "generalization"]),
                                    curves=("probe_curve", ["sweep", "generalization"])), dict(beyond=_beyond)),
    }, beyond=True),
    Figure("figX2", "Cheap reliance probes for early stopping", "figX2_probe_stopping.py", {
        fam: Panel("X2", _ins(probes=("probes", ["probe_stopping"]), curves=("probe_curve", ["probe_stopping"]),
                              histories=("history", ["probe_stopping"])),
                   dict(beyond=_beyond))
        for fam in ("mnist", "cifar10")
    }, beyond=True),
    Figure("figX3", "Regularizers aimed at single-direction reliance: ablation curves", "figX3_regularizer_curves.py", {
        fam: Panel("X3", _ins(probes=("probes", regs), curves=("probe_curve", regs), histories=("history", regs)),
                   dict(beyond=_beyond))
        for fam, regs in (("mnist", BEYOND_REGULARIZER_EXPERIMENTS), ("cifar10", _CIFAR_REGULARIZERS))
    }, beyond=True),
    Figure("figX4", "Regularizers aimed at single-direction reliance: AUC vs test accuracy",
           "figX4_regularizer_auc.py", {
               fam: Panel("X4", _ins(probes=("probes", regs), curves=("probe_curve", regs), histories=("history", regs)))
               for fam, regs in (("mnist", BEYOND_REGULARIZER_EXPERIMENTS), ("cifar10", _CIFAR_REGULARIZERS))
           }, beyond=True),
]
FIGURES: dict[str, Figure] = {f.name: f for f in FIGURE_LIST}
# Families in the order the report shows them.
FAMILIES = ["mnist", "cifar10", "imagenet"]


def figure(name: str) -> Figure:
    """The registered figure ``name``; an unknown name is an error listing the known ones."""
    if name not in FIGURES:
        raise KeyError(f"{name!r} is not a registered figure; known figures: {', '.join(FIGURES)}")
    return FIGURES[name]


def panel(name: str, family: str) -> Panel:
    """The panel of figure ``name`` for ``family``; a missing one is an error naming both."""
    fig = figure(name)
    if family not in fig.panels:
        raise KeyError(f"figure {name} has no {family} panel; its families: {', '.join(fig.panels)}")
    return fig.panels[family]


def families_of(name: str) -> list[str]:
    """The families that have figure ``name``."""
    return list(figure(name).panels)


def figures_of(family: str) -> list[str]:
    """The figures of ``family``, in registry order."""
    return [f.name for f in FIGURE_LIST if family in f.panels]


def experiments_by_family() -> dict[str, dict[str, list[str]]]:
    """family -> figure -> the experiment selections it reads (plan.FIGURES)."""
    return {fam: {name: panel(name, fam).selections for name in figures_of(fam)} for fam in FAMILIES}


def input_files(name: str, family: str, models_of: Callable[[str], list[str]], results: str = "results"
                ) -> dict[str, list[str]]:
    """Input name -> per-model files of a panel; ``models_of(selection)`` lists the model ids."""
    out = {}
    for key, inp in panel(name, family).inputs.items():
        pattern = KIND_PATHS[inp.kind]
        out[key] = [f"{results}/{pattern.format(family=family, model=m)}" for sel in inp.selections
                    for m in models_of(sel)]
    return out


# Input kinds that carry a net's final training loss and accuracy, and the figures that
# judge from them which nets failed to train (singledir.stats.net_tables.training_failed)
# and leave those out: against chance = 1 / the data's class count, so such a panel's rule
# also reads the family's data file (input ``data``). Every figure judges: a failed net's
# outputs (a flat curve scoring AUC ~1, a unit table of a net at chance) must never flow
# silently into one; Figs. 1-2 leave out diverged nets only (corrupted nets near chance are
# their data). Each panel reads the histories of all the nets it draws (a test checks).
TRAINING_KINDS = ("history", "probes")
JUDGING_FIGURES = tuple(f.name for f in FIGURE_LIST)


def judges_training(name: str, family: str) -> bool:
    """Whether the panel leaves out failed nets, judged from an input of :data:`TRAINING_KINDS`."""
    return name in JUDGING_FIGURES and any(inp.kind in TRAINING_KINDS for inp in panel(name, family).inputs.values())


def settings(name: str, family: str, family_cfg: dict) -> dict:
    """A panel's drawing settings: the registry's (functions evaluated on the family's config
    section), then the config's ``families.<family>.figures.<name>`` (e.g. Fig. 3's extremes)."""
    out = {k: (v(family_cfg) if callable(v) else v) for k, v in panel(name, family).settings.items()}
    out.update(family_cfg.get("figures", {}).get(name, {}))
    return out


def paper_figure(name: str, family: str) -> tuple[str, str]:
    """('Fig. 7b-c', title) of the output ``<name>_<family>``; ('Fig. ?', '') if unregistered."""
    fig = FIGURES.get(name)
    if fig is None:
        return "Fig. ?", ""
    return f"Fig. {fig.panels[family].panel if family in fig.panels else '?'}", fig.title

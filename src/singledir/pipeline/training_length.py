"""Is each experiment trained long enough to converge? The plan's warning, before anything runs.

The claims that compare two arms of networks (Figs. 5b, 6, A1, X4) are *inconclusive* unless
every net of both arms converged (:func:`singledir.stats.claims.converged`, judged after
training from each net's own history). Whether a net will converge cannot be known from a
config, so this is a heuristic on its training length in epochs (passes over its training
images; step-based training: steps x images per step / training images), with the
assumption printed beside the warnings (:data:`ASSUMPTION`):

* clean labels: at least :data:`MIN_EPOCHS_CLEAN` epochs. At 12 epochs the laptop-scale
  CIFAR-10 ConvNet without batch norm ended at 0.48 training accuracy against 0.85 with it
  (issue 30), a comparison of training states;
* corrupted labels (any grid point with fraction > 0): at least :data:`MIN_EPOCHS_CORRUPTED`.
  Memorizing shuffled labels takes several times as many passes as fitting clean ones (Zhang
  et al. 2017); the paper trains them 100 (CIFAR-10) to 640 (MNIST) epochs, and the laptop's
  CIFAR-10 corruption nets had only begun to memorize at 30.

``python -m singledir.pipeline.plan CONFIG`` prints the experiments below these (and
``--json`` lists them under ``convergence_warnings``); the paper config (config/config.yaml)
has none (a test checks). A warning is not an error: the gate after training decides.
"""

from __future__ import annotations

from singledir.pipeline import cost
from singledir.pipeline.plan import enabled_experiments, enabled_families, experiment_specs

MIN_EPOCHS_CLEAN = 20
MIN_EPOCHS_CORRUPTED = 50
ASSUMPTION = (f"assumed: nets need >= {MIN_EPOCHS_CLEAN} epochs on clean labels and >= {MIN_EPOCHS_CORRUPTED} on "
              "corrupted labels to converge (a heuristic; after training, singledir.stats.claims.converged judges "
              "each net's history)")


def training_epochs(spec: dict, n_train: int | None) -> float | None:
    """Passes over the training images of one model spec: ``train.epochs``, or for step-based
    training steps x batch_size x workers / ``n_train`` (None when the data size is unknown)."""
    train = spec["train"]
    if "steps" not in train:
        return float(train["epochs"])
    if not n_train:
        return None
    return float(train["steps"]) * int(train.get("batch_size", 32)) * int(train.get("workers", 1)) / n_train


def convergence_warnings(config: dict) -> list[dict]:
    """[{family, experiment, epochs, labels, minimum, warning}]: the enabled experiments whose
    nets train fewer epochs than :data:`MIN_EPOCHS_CLEAN` (clean labels) or
    :data:`MIN_EPOCHS_CORRUPTED` (some of its nets on corrupted labels)."""
    out = []
    for family in enabled_families(config):
        try:
            n_train = cost.dataset_size(config["families"][family]["dataset"]).n_train
        except (OSError, KeyError, ValueError):
            n_train = None  # only step-based training needs it
        for exp in enabled_experiments(config, family):
            specs = list(experiment_specs(config, family, exp).values())
            corrupted = any(float(s["labels"]["fraction"]) > 0 for s in specs)
            minimum = MIN_EPOCHS_CORRUPTED if corrupted else MIN_EPOCHS_CLEAN
            epochs = [e for e in (training_epochs(s, n_train) for s in specs) if e is not None]
            if not epochs or min(epochs) >= minimum:
                continue
            labels = "corrupted" if corrupted else "clean"
            key = "train.steps" if any("steps" in s["train"] for s in specs) else "train.epochs"
            out.append({"family": family, "experiment": exp, "epochs": min(epochs), "labels": labels,
                        "minimum": minimum,
                        "warning": f"families.{family}.experiments.{exp}: {min(epochs):.3g} epochs, fewer than "
                                   f"{minimum} ({labels} labels): its nets may not converge"
                                   + (" or memorize their labels" if corrupted else "")
                                   + f", and the claims that need it would be inconclusive; a larger {key} avoids it"})
    return out


def summary_lines(config: dict) -> list[str]:
    """The plan's text: a line per experiment likely trained too short, and the assumption."""
    warnings = convergence_warnings(config)
    lines = [f"  training likely too short to converge: {len(warnings) or 'none'}"]
    lines += [f"    WARNING {w['warning']}" for w in warnings]
    lines.append(f"    ({ASSUMPTION})")
    return lines

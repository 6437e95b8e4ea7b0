"""What a config asks for: the models to train, and the figures to draw.

Shared by the Snakemake workflow (``workflow/rules/common.smk``) and the tests, so the
DAG is built from plain, tested functions.

*Experiments* are declared per family under ``families.<family>.experiments``. Each
experiment is a grid: ``grid`` maps variables to lists of values, and every
combination is one model. Grid variables and where they go in the model spec:

=============  ==================  ===========
variable       spec entry          id part
=============  ==================  ===========
fraction       labels.fraction     ``f0.2``
seed           train.seed          ``s3``
dropout        model.dropout       ``p0.1``
lr             train.lr            ``lr0.01``
batch_size     train.batch_size    ``bs128``
batch_norm     model.batch_norm    ``bn1``
width          model.width         ``w0.5``
=============  ==================  ===========

An experiment's ``model`` and ``train`` sections override the family's. The model id
is the experiment name followed by the id parts, e.g. ``corruption_f0.2_s0``.
"""

from __future__ import annotations

import copy
import hashlib
import os
import itertools
import json
from collections import OrderedDict

from .data import DataError, check_dataset_spec

GRID_VARIABLES = OrderedDict([
    ("fraction", ("labels", "fraction", "f")),
    ("dropout", ("model", "dropout", "p")),
    ("batch_norm", ("model", "batch_norm", "bn")),
    ("width", ("model", "width", "w")),
    ("lr", ("train", "lr", "lr")),
    ("batch_size", ("train", "batch_size", "bs")),
    ("seed", ("train", "seed", "s")),
])

# Which experiments each figure of each family needs. Families and figures are added
# here as they are implemented; ``all_figures`` draws every figure whose experiments
# are enabled. An entry may keep only some grid points of an experiment:
# ``"batch_norm[batch_norm=true]"`` (see :func:`parse_selection`).
FIGURES: dict[str, dict[str, list[str]]] = {
    "mnist": {
        "fig1": ["corruption"],
        "fig2": ["corruption"],
        "fig4": ["early_stopping"],
        "fig5": ["dropout"],
        "fig7": ["selectivity"],
        "figA4": ["selectivity"],
    },
    # CIFAR-10 ConvNet (Figs. 1b, 2b, 3, 4b-c, 5b, 6, 7b-c, A1, A2a, A3a, A4b-c): generic rules
    # plus workflow/rules/cifar10.smk. The unit analyses (Figs. 7, A1-A4) use the BN models of
    # the batch-norm experiment (clean labels, the paper's default architecture).
    "cifar10": {
        "fig1": ["corruption"],
        "fig2": ["corruption"],
        "fig3": ["generalization"],
        "fig4": ["early_stopping", "sweep"],
        "fig5": ["batch_norm"],
        "fig6": ["batch_norm"],
        "fig7": ["batch_norm[batch_norm=true]"],
        "figA1": ["batch_norm[batch_norm=true]"],
        "figA2": ["batch_norm[batch_norm=true]"],
        "figA3": ["batch_norm[batch_norm=true]"],
        "figA4": ["batch_norm[batch_norm=true]"],
    },
    # ImageNet ResNet (Figs. 1c, 7d-e, A2b, A3b, A4d-e): its own rules in workflow/rules/imagenet.smk.
    "imagenet": {
        "fig1": ["corruption"],
        "fig7": ["selectivity"],
        "figA2": ["selectivity"],
        "figA3": ["selectivity"],
        "figA4": ["selectivity"],
    },
}


class ConfigError(ValueError):
    """A config value is wrong; the message names the key and the fix."""


def _fmt(value) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return repr(value).rstrip("0").rstrip(".") if value != int(value) else str(value)
    return str(value)


def _merge(base: dict, override: dict | None) -> dict:
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def enabled_families(config: dict) -> list[str]:
    return [name for name, fam in config.get("families", {}).items() if fam.get("enabled", True)]


def enabled_experiments(config: dict, family: str) -> list[str]:
    exps = config["families"][family].get("experiments", {})
    return [name for name, e in exps.items() if e.get("enabled", True)]


def experiment_specs(config: dict, family: str, experiment: str) -> "OrderedDict[str, dict]":
    """Model id -> full model spec for every grid point of one experiment."""
    fam = config["families"][family]
    exp = fam["experiments"][experiment]
    grid = exp.get("grid", {}) or {}
    for var in grid:
        if var not in GRID_VARIABLES:
            raise ConfigError(f"families.{family}.experiments.{experiment}.grid: unknown variable {var!r}; "
                              f"choose from {list(GRID_VARIABLES)}")
    variables = [v for v in GRID_VARIABLES if v in grid]
    base = {
        "family": family,
        "experiment": experiment,
        "model": _merge(fam.get("model", {}), exp.get("model")),
        "train": _merge(fam.get("train", {}), exp.get("train")),
        "labels": {"fraction": float(exp.get("fraction", 0.0))},
    }
    specs: "OrderedDict[str, dict]" = OrderedDict()
    for values in itertools.product(*[grid[v] for v in variables]):
        spec = copy.deepcopy(base)
        parts = [experiment]
        for var, val in zip(variables, values):
            section, key, abbrev = GRID_VARIABLES[var]
            spec[section][key] = val
            parts.append(f"{abbrev}{_fmt(val)}")
        spec["train"].setdefault("seed", 0)
        spec["labels"]["seed"] = int(spec["train"]["seed"])
        every = spec["train"].pop("snapshot_every", None)
        dense = int(spec["train"].pop("snapshot_dense_until", 0) or 0)
        if every:
            epochs = int(spec["train"]["epochs"])
            # every epoch up to `dense` (Fig. 4a resolves the AUC peak early), then every `every`
            early = list(range(1, min(dense, epochs) + 1))
            spec["train"]["snapshot_epochs"] = sorted(set([0] + early + list(range(every, epochs + 1, every))
                                                          + [epochs]))
        spec["id"] = "_".join(parts)
        specs[spec["id"]] = spec
    return specs


def model_specs(config: dict, family: str) -> "OrderedDict[str, dict]":
    """Every model of every enabled experiment of ``family`` (id -> spec)."""
    out: "OrderedDict[str, dict]" = OrderedDict()
    for exp in enabled_experiments(config, family):
        out.update(experiment_specs(config, family, exp))
    return out


def _parse_value(text: str):
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def _same(a, b) -> bool:
    """Grid values compare as numbers (True == 1, 0 == 0.0) when both are numbers."""
    if isinstance(a, (bool, int, float)) and isinstance(b, (bool, int, float)):
        return float(a) == float(b)
    return str(a) == str(b)


def parse_selection(entry: str) -> tuple[str, dict]:
    """Split a FIGURES entry into (experiment, {grid variable: value}).

    ``"corruption"`` selects every model of that experiment; ``"batch_norm[batch_norm=true]"``
    only its grid points with ``batch_norm`` true (several conditions: comma-separated).
    """
    name, bracket, rest = entry.partition("[")
    where: dict = {}
    if bracket:
        if not rest.endswith("]"):
            raise ConfigError(f"figure input {entry!r}: expected 'experiment[variable=value,...]'")
        for item in rest[:-1].split(","):
            var, eq, val = item.partition("=")
            var = var.strip()
            if not eq or var not in GRID_VARIABLES:
                raise ConfigError(f"figure input {entry!r}: {item!r} is not 'variable=value' with a grid "
                                  f"variable from {list(GRID_VARIABLES)}")
            where[var] = _parse_value(val)
    return name.strip(), where


def experiment_models(config: dict, family: str, experiment: str) -> list[str]:
    """Model ids of one experiment (or of a selection ``exp[var=value]`` of its grid points,
    see :func:`parse_selection`); a disabled experiment or family is a clear error."""
    experiment, where = parse_selection(experiment)
    fam = config.get("families", {}).get(family)
    if fam is None or not fam.get("enabled", True):
        raise ConfigError(f"families.{family} is missing or disabled, but a requested target needs it; "
                          f"add/enable it in the config")
    exps = fam.get("experiments", {})
    if experiment not in exps or not exps[experiment].get("enabled", True):
        raise ConfigError(f"families.{family}.experiments.{experiment} is missing or disabled, but a "
                          f"requested figure needs it; enable it in the config")
    specs = experiment_specs(config, family, experiment)
    if not where:
        return list(specs)
    chosen = [m for m, spec in specs.items()
              if all(_same(spec[GRID_VARIABLES[v][0]].get(GRID_VARIABLES[v][1]), val) for v, val in where.items())]
    if not chosen:
        raise ConfigError(f"families.{family}.experiments.{experiment}: no model has {where}, but a requested "
                          f"figure needs those models; add the value to the experiment's grid")
    return chosen


def spec_hash(spec: dict) -> str:
    """Short stable hash of a spec (names the resume directory of a training run)."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:12]


def label_file(spec: dict) -> str:
    lab = spec["labels"]
    return f"labels_f{_fmt(float(lab['fraction']))}_s{int(lab['seed'])}.npz"


def figure_targets(config: dict, results: str = "results") -> list[str]:
    """Every figure PDF the config enables (the ``all_figures`` target list)."""
    out = []
    for family in enabled_families(config):
        exps = set(enabled_experiments(config, family))
        for fig, needs in FIGURES.get(family, {}).items():
            if all(parse_selection(n)[0] in exps for n in needs):
                out.append(f"{results}/{fig}_{family}.pdf")
    return out


def check_config(config: dict) -> None:
    """Semantic checks the JSON schema cannot express; raises :class:`ConfigError`."""
    fams = config.get("families", {})
    for family in enabled_families(config):
        if family not in FIGURES:
            raise ConfigError(f"families.{family}: unknown family; known families are {sorted(FIGURES)}")
        try:
            check_dataset_spec(fams[family]["dataset"])
        except DataError as err:
            raise ConfigError(f"families.{family}.{err}") from None
        for exp in enabled_experiments(config, family):
            for mid, spec in experiment_specs(config, family, exp).items():
                where = f"families.{family}.experiments.{exp}"
                frac = spec["labels"]["fraction"]
                if not 0.0 <= float(frac) <= 1.0:
                    raise ConfigError(f"{where}: corruption fraction {frac} is outside [0, 1]")
                if "steps" in spec["train"]:  # step-based training (the imagenet family)
                    if int(spec["train"]["steps"]) < 1:
                        raise ConfigError(f"{where}.train.steps: must be at least 1 (got {spec['train']['steps']})")
                elif int(spec["train"].get("epochs", 0)) < 1:
                    raise ConfigError(f"{where}.train.epochs: must be at least 1 (got {spec['train'].get('epochs')})")
                p = spec["model"].get("dropout", 0.0)
                if not 0.0 <= float(p) < 1.0:
                    raise ConfigError(f"{where}: dropout {p} is outside [0, 1)")
        if family == "imagenet":
            from .imagenet import config_problems
            for problem in config_problems(config, family):
                raise ConfigError(problem)
        analysis = fams[family].get("analysis", {})
        if analysis.get("precision") == "tf32" and config.get("device", "auto") == "cpu":
            raise ConfigError(f"families.{family}.analysis.precision: tf32 needs a CUDA device but device is 'cpu'; "
                              f"use precision fp32 (exact) or set device to auto/cuda")
        for key in ("ablation_layers", "unit_layers", "noise_layers", "fig3_ablation_layers"):
            layers = analysis.get(key, "all")
            if not isinstance(layers, list):
                continue
            for exp in enabled_experiments(config, family):
                spec = next(iter(experiment_specs(config, family, exp).values()))
                available = unit_layer_names(spec["model"])
                for name in layers:
                    if name not in available:
                        raise ConfigError(f"families.{family}.analysis.{key}: unknown layer {name!r}; "
                                          f"the {exp} models' unit layers are {available}")


def unit_layer_names(model_spec: dict) -> list[str]:
    """Unit layer names of a model spec, without building the model."""
    arch = model_spec.get("arch")
    if arch == "mlp":
        return [f"relu{i}" for i in range(1, len(model_spec.get("hidden", [])) + 1)]
    if arch == "convnet":
        from .models import CONVNET_CHANNELS
        return [f"relu{i}" for i in range(1, len(CONVNET_CHANNELS) + 1)]
    if arch == "torchvision":
        from .resnet import ModelError, unit_layer_names as torchvision_unit_layers
        try:
            return torchvision_unit_layers(model_spec)
        except ModelError as err:
            raise ConfigError(str(err)) from None
    raise ConfigError(f"model.arch: unknown architecture {arch!r}; choose 'mlp', 'convnet' or 'torchvision'")

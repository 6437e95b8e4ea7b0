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
import itertools
import json
from collections import OrderedDict

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
# are enabled.
FIGURES: dict[str, dict[str, list[str]]] = {
    "mnist": {
        "fig1": ["corruption"],
        "fig2": ["corruption"],
        "fig4": ["early_stopping"],
        "fig5": ["dropout"],
        "fig7": ["selectivity"],
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
        if every:
            epochs = int(spec["train"]["epochs"])
            spec["train"]["snapshot_epochs"] = sorted(set([0] + list(range(every, epochs + 1, every)) + [epochs]))
        spec["id"] = "_".join(parts)
        specs[spec["id"]] = spec
    return specs


def model_specs(config: dict, family: str) -> "OrderedDict[str, dict]":
    """Every model of every enabled experiment of ``family`` (id -> spec)."""
    out: "OrderedDict[str, dict]" = OrderedDict()
    for exp in enabled_experiments(config, family):
        out.update(experiment_specs(config, family, exp))
    return out


def experiment_models(config: dict, family: str, experiment: str) -> list[str]:
    """Model ids of one experiment; a disabled experiment is a clear error."""
    exps = config["families"][family].get("experiments", {})
    if experiment not in exps or not exps[experiment].get("enabled", True):
        raise ConfigError(f"families.{family}.experiments.{experiment} is missing or disabled, but a "
                          f"requested figure needs it; enable it in the config")
    return list(experiment_specs(config, family, experiment))


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
            if all(n in exps for n in needs):
                out.append(f"{results}/{fig}_{family}.pdf")
    return out


def check_config(config: dict) -> None:
    """Semantic checks the JSON schema cannot express; raises :class:`ConfigError`."""
    fams = config.get("families", {})
    for family in enabled_families(config):
        if family not in FIGURES:
            raise ConfigError(f"families.{family}: unknown family; known families are {sorted(FIGURES)}")
        for exp in enabled_experiments(config, family):
            for mid, spec in experiment_specs(config, family, exp).items():
                where = f"families.{family}.experiments.{exp}"
                frac = spec["labels"]["fraction"]
                if not 0.0 <= float(frac) <= 1.0:
                    raise ConfigError(f"{where}: corruption fraction {frac} is outside [0, 1]")
                if int(spec["train"].get("epochs", 0)) < 1:
                    raise ConfigError(f"{where}.train.epochs: must be at least 1 (got {spec['train'].get('epochs')})")
                p = spec["model"].get("dropout", 0.0)
                if not 0.0 <= float(p) < 1.0:
                    raise ConfigError(f"{where}: dropout {p} is outside [0, 1)")
        analysis = fams[family].get("analysis", {})
        for key in ("ablation_layers", "unit_layers"):
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
    raise ConfigError(f"model.arch: unknown architecture {arch!r}; choose 'mlp' or 'convnet'")

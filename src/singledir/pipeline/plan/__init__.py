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
strength       train.reg_strength  ``a0.5``
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

from singledir.data.imagenet import config_problems
from singledir.data.check import check_dataset
from singledir.data.sources import DataError
from singledir.figures import registry
from singledir.models.nets import CONVNET_CHANNELS
from singledir.pipeline import cost
from singledir.pipeline.submissions import summary_line as submission_text
from singledir.training.regularizers import check as check_regularizer
from singledir.training.options import RUN_OPTION_KEYS

GRID_VARIABLES = OrderedDict([
    ("fraction", ("labels", "fraction", "f")),
    ("dropout", ("model", "dropout", "p")),
    ("batch_norm", ("model", "batch_norm", "bn")),
    ("width", ("model", "width", "w")),
    ("strength", ("train", "reg_strength", "a")),
    ("lr", ("train", "lr", "lr")),
    ("batch_size", ("train", "batch_size", "bs")),
    ("seed", ("train", "seed", "s")),
])

# Which experiments each figure of each family needs (family -> figure -> selections),
# derived from the figure registry (singledir.figures.registry, where figures are added);
# ``all_figures`` draws every figure whose experiments are enabled. An entry may keep only
# some grid points of an experiment: ``"batch_norm[batch_norm=true]"`` (see :func:`parse_selection`).
FIGURES: dict[str, dict[str, list[str]]] = registry.experiments_by_family()


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
        for key in RUN_OPTION_KEYS:  # speed only: singledir.pipeline.params.training_run_options
            spec["train"].pop(key, None)
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
        beyond = beyond_figures(config, family)
        for fig, needs in FIGURES.get(family, {}).items():
            if registry.figure(fig).beyond and fig not in beyond:  # families.<family>.beyond: enabled, figures
                continue
            if all(parse_selection(n)[0] in exps for n in needs):
                out.append(f"{results}/{fig}_{family}.pdf")
    return out


def beyond_figures(config: dict, family: str) -> list[str]:
    """The beyond-the-paper figures ``family`` may draw: none when ``beyond.enabled`` is false,
    else ``beyond.figures`` (unset: all of the family's figX figures); each is still drawn
    only when its experiments are enabled. An unknown name is an error listing the known ones."""
    b = config["families"][family].get("beyond", {}) or {}
    known = [f for f in FIGURES.get(family, {}) if registry.figure(f).beyond]
    if not b.get("enabled", True):
        return []
    chosen = b.get("figures", known)
    unknown = [f for f in chosen if f not in known]
    if unknown:
        raise ConfigError(f"families.{family}.beyond.figures: {unknown} are not beyond-the-paper figures of "
                          f"{family}; choose from {known}")
    return [f for f in known if f in chosen]


def check_config(config: dict) -> None:
    """Semantic checks the JSON schema cannot express; raises :class:`ConfigError`."""
    fams = config.get("families", {})
    for family in enabled_families(config):
        if family not in FIGURES:
            raise ConfigError(f"families.{family}: unknown family; known families are {sorted(FIGURES)}")
        beyond_figures(config, family)  # an unknown beyond.figures name fails here, naming the key
        try:  # before the cost model reads the data's size (plan summary): every data check is there
            check_dataset(fams[family]["dataset"])
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
                reg = spec["train"].get("regularizer", "none") or "none"
                if reg != "none":  # singledir.training.regularizers hooks the single mode of singledir.training.loop only
                    if spec["model"].get("arch") not in ("mlp", "convnet"):
                        raise ConfigError(f"{where}.train.regularizer: {reg!r} is a training option of the mlp and "
                                          f"convnet models only, not {spec['model'].get('arch')!r}; remove it")
                    try:
                        check_regularizer(reg, float(spec["train"].get("reg_strength", 0.0)),
                                          float(spec["train"].get("reg_q_max", 0.5)))
                    except ValueError as err:
                        raise ConfigError(f"{where}: {err}") from None
        if family == "imagenet":
            specs = {exp: experiment_specs(config, family, exp) for exp in enabled_experiments(config, family)}
            for problem in config_problems(config, specs, family):
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
        return [f"relu{i}" for i in range(1, len(CONVNET_CHANNELS) + 1)]
    if arch == "torchvision":
        # models.resnet loads torchvision (2-3 s): only configs with a torchvision model pay for it
        from singledir.models.resnet import ModelError, unit_layer_names as torchvision_unit_layers
        try:
            return torchvision_unit_layers(model_spec)
        except ModelError as err:
            raise ConfigError(str(err)) from None
    raise ConfigError(f"model.arch: unknown architecture {arch!r}; choose 'mlp', 'convnet' or 'torchvision'")


# --- the plan summary (printed at workflow start, and by ``python -m singledir.pipeline.plan
# CONFIG``, whose program is this package's __main__.py) -------------------------------------

def _fmt_hours(h: float) -> str:
    return f"{h:.2g}" if h < 10 else f"{h:,.0f}"


def _fmt_value(v) -> str:
    text = json.dumps(v) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def _get(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def summary(config: dict, files=(), defaults=(), jobs: int | None = None,
            bench_csv: str = "results/bench.csv", estimated: dict | None = None,
            submissions: dict | None = None) -> str:
    """The plan of a (validated) config as text: per family and experiment the networks,
    their training length, the dataset and its size, the figures they feed and, given
    ``estimated`` (:func:`singledir.pipeline.estimate.estimate` of the config, which builds
    on this module, so the caller computes it), their counted cost, jobs, submissions,
    GPU-hours and the peak memory of a job; the totals, with how the cluster submissions come
    about (``submissions``: :func:`singledir.pipeline.submissions.submission_counts`, when
    given); each rule's peak memory and mem_mb; and every value that came from a schema default."""
    if estimated is None:
        lines = [f"Plan of {', '.join(map(str, files)) or 'the config'} (scale {config.get('scale')}, "
                 f"device {config.get('device')}): cost not estimated here (python -m singledir.pipeline.plan)"]
        return "\n".join(lines + _defaults_lines(config, defaults))
    est = estimated
    by_exp = {(r["family"], r["experiment"]): r for r in est["experiments"]}
    lines = [f"Plan of {', '.join(map(str, files)) or 'the config'} (scale {config.get('scale')}, "
             f"device {config.get('device')}):"]
    rows = [("family", "experiment", "nets", "training", "dataset (train/test, shape)", "figures",
             "train PFLOP", "analysis PFLOP", "jobs", "subm.", "GPU-h", "peak MB/job")]
    nets = 0
    figures = set(figure_targets(config, ""))
    for family, fam in config.get("families", {}).items():
        if not fam.get("enabled", True):
            lines.append(f"  {family}: off (enabled: false)")
            continue
        try:
            data = cost.dataset_size(fam["dataset"])
            data_text = f"{data.name} {data.n_train}/{data.n_test}, {'x'.join(map(str, data.shape))}"
        except (OSError, KeyError, ValueError) as err:
            data_text = f"size unknown ({err})"
        for exp in enabled_experiments(config, family):
            specs = experiment_specs(config, family, exp)
            first = next(iter(specs.values()))
            train = first["train"]
            length = f"{train['steps']} steps" if "steps" in train else f"{train.get('epochs')} epochs"
            feeds = [fig for fig, needs in FIGURES.get(family, {}).items()
                     if any(parse_selection(n)[0] == exp for n in needs) and f"/{fig}_{family}.pdf" in figures]
            pf = est["pflop"].get(family, {}).get(exp, {})
            r = by_exp.get((family, exp), {})
            nets += len(specs)
            rows.append((family, exp, str(len(specs)), length, data_text, ",".join(feeds) or "-",
                         f"{pf.get('training', float('nan')):.3g}", f"{pf.get('analysis', float('nan')):.3g}",
                         str(r.get("jobs", "?")), str(r.get("submissions", "?")),
                         _fmt_hours(r.get("gpu_hours", float("nan"))), f"{r.get('peak_mem_mb', 0):,}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) if i < 6 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    rates = cost.throughputs(config, bench_csv)
    train_total = sum(v["training"] for f in est["pflop"].values() for v in f.values()) * 1e15
    analysis_total = sum(v["analysis"] for f in est["pflop"].values() for v in f.values()) * 1e15
    total = train_total + analysis_total
    jobs_text = f"{jobs} jobs" if jobs is not None else "jobs: see Snakemake's job stats below"
    lines.append(f"  total: {nets} networks, {jobs_text}, {len(figures)} figures; {est['submissions']} submissions")
    if submissions is not None:  # singledir.pipeline.submissions.submission_counts
        lines.append(f"  {submission_text(submissions)}")
    lines.append(f"  estimated cost: {total / 1e15:.3g} PFLOP ({train_total / 1e15:.3g} training + "
                 f"{analysis_total / 1e15:.3g} analysis as the engine computes it; singledir.pipeline.cost)")
    rate, source = rates["cpu"]
    lines.append(f"    {_fmt_hours(total / rate / 3600)} CPU-hours on this machine at {rate:.3g} FLOP/s ({source})")
    lines.append(f"    {_fmt_hours(est['gpu_hours_total'])} GPU-hours on one GPU at {est['gpu_flops_per_s']:.3g} FLOP/s "
                 f"({est['gpu_flops_source']})")
    lines.append(f"      with {est['gpu_step_overhead_s'] * 1e3:.3g} ms per training step whatever its batch "
                 f"({est['gpu_step_overhead_source']})")
    import textwrap

    lines.extend(textwrap.wrap("memory per rule (estimated peak -> mem_mb asked, MB; singledir.pipeline.memory): "
                               + ", ".join(f"{rule} {est['peak_mem_mb'][rule]:,} -> {est['mem_mb'][rule]:,}"
                                           for rule in est["mem_mb"]),
                               width=110, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines + _defaults_lines(config, defaults))


def _defaults_lines(config: dict, defaults) -> list[str]:
    import textwrap

    shown = default_values(config, defaults)
    return textwrap.wrap(f"from schema defaults: {'; '.join(shown) if shown else 'none'}", width=110,
                         initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)


def default_values(config: dict, defaults) -> list[str]:
    """``key=value`` for every value that came from a schema default (empty sections
    omitted), one entry for a setting shared by several experiments of a family:
    ``families.mnist.experiments.{corruption,dropout}.fuse=1``."""
    grouped: "OrderedDict[tuple, list]" = OrderedDict()
    for dotted in defaults:
        value = _get(config, dotted)
        if value == {}:
            continue
        parts = dotted.split(".")
        if len(parts) >= 5 and parts[0] == "families" and parts[2] == "experiments":
            key = (".".join(parts[:3]), ".".join(parts[4:]), _fmt_value(value))
            grouped.setdefault(key, []).append(parts[3])
        else:
            grouped[(dotted, None, _fmt_value(value))] = []
    out = []
    for (head, tail, value), exps in grouped.items():
        if tail is None:
            out.append(f"{head}={value}")
        else:
            names = exps[0] if len(exps) == 1 else "{" + ",".join(exps) + "}"
            out.append(f"{head}.{names}.{tail}={value}")
    return out


def count_jobs(configfiles, snakefile=None, target: str = "all_figures") -> int:
    """Every job of the run (``snakemake -n --forceall TARGET``: as if nothing were done yet)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    snakefile = Path(snakefile or Path(__file__).resolve().parents[4] / "Snakefile")
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else "snakemake", target, "-s", str(snakefile), "-n", "--forceall",
           "--quiet", "rules", "--configfile", *map(str, configfiles)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, SINGLEDIR_QUIET_PLAN="1"))
    m = re.search(r"^total\s+(\d+)", proc.stdout + proc.stderr, re.M)
    if proc.returncode != 0 or not m:
        raise ConfigError(f"snakemake -n failed for {' '.join(map(str, configfiles))}:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return int(m.group(1))

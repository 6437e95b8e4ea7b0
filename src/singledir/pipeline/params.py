"""What a per-model analysis rule (and the Beyond-the-paper probes) gets as Snakemake
``params`` (what defines its numbers) and what reaches its script without being a param
(what only sets speed or memory).

Snakemake reruns a job when its params change (``--rerun-triggers params``), so a rule's
params are exactly the config keys its numbers depend on; a speed knob changed between
runs reruns nothing, and noise scales do not rerun ablation curves.

Speed and memory (:data:`SPEED_KEYS`, read by the scripts through :func:`speed_settings`):

- ``chunk_size``, ``max_rows``: how many examples / perturbed rows one forward pass takes;
- ``method``: the engine path (every path is exact to 1e-5 against the plain definition,
  ``tests/engine/test_engine.py``);
- ``loader_workers``: image-decoding processes;
- ``device`` (top level): where the job computes.

Training has the same split: a model's spec holds what defines its weights, and the
keys that only set speed or placement (:data:`~singledir.training.options.RUN_OPTION_KEYS`:
``checkpoint_every``, ``eval_batch_size``, ``num_workers``, ``nodes``, ``gpus_per_node``,
``threads``, and ``device``) reach the training script through
:func:`training_run_options`.

This holds for the noise curves too: their draws are indexed by (seed, layer,
perturbation, example), not by chunk (:mod:`singledir.engine.noise_source`), so
``chunk_size`` and ``max_rows`` do not change them. (CPU and CUDA generators differ, so
``device`` gives other, statistically equal, noise draws.)
"""

from __future__ import annotations

from typing import Mapping

from singledir.engine.options import EngineOptions
from singledir.training.options import RUN_OPTION_KEYS

SPEED_KEYS = ("chunk_size", "max_rows", "method", "loader_workers")
# Defaults of the speed knobs a family's config may leave out (the schema's).
SPEED_DEFAULTS = {"chunk_size": 1024, "max_rows": 65536, "method": "auto", "loader_workers": 0}

# Per rule, the keys of a family's ``analysis`` section that define its results.
RESULT_KEYS = {
    "ablation_curve": ("ablation_layers", "fig3_ablation_layers", "orderings", "curve_points", "eval_examples",
                       "topk", "precision"),
    "noise_curve": ("noise_layers", "noise_scales", "noise_repeats", "eval_examples", "topk", "precision"),
    "unit_analysis": ("unit_layers", "mi_bins", "impact_per_class", "topk", "precision"),
    "training_auc": ("ablation_layers", "orderings", "curve_points", "eval_examples", "topk", "precision"),
    "analysis_subset": ("train_per_class", "test_per_class", "subset_seed"),
    # the probes are points of the cumulative ablation curve on (a subset of) the training data
    "beyond_probes": ("ablation_layers", "orderings", "curve_points", "eval_examples", "topk", "precision"),
}
# Per rule, the keys of a family's ``beyond`` section that define its results (the rest of
# the section sets the figures' statistics, or probe_group, how many networks one job probes).
BEYOND_RESULT_KEYS = {
    "beyond_probes": ("probe_fractions", "sparse_fractions"),
}
# Rules whose numbers depend on the run's top-level ``seed`` (orderings, subsets, noise,
# the probes' test-set split).
SEEDED = {"ablation_curve", "noise_curve", "training_auc", "beyond_probes"}


def _section(config: Mapping, family: str, section: str) -> Mapping:
    try:
        return config["families"][family].get(section, {}) or {}
    except KeyError:
        raise KeyError(f"families.{family}: no such family in the config; families: "
                       f"{sorted(config.get('families', {}))}") from None


def result_params(config: Mapping, family: str, rule: str) -> dict:
    """The config values rule ``rule`` of ``family`` computes from: its :data:`RESULT_KEYS`
    present in the family's ``analysis`` section, and ``seed`` for the seeded rules. (A
    rule in :data:`BEYOND_RESULT_KEYS` also gets :func:`beyond_result_params`.)"""
    if rule not in RESULT_KEYS:
        raise KeyError(f"result_params: unknown rule {rule!r}; known: {sorted(RESULT_KEYS)}")
    analysis = _section(config, family, "analysis")
    params = {k: analysis[k] for k in RESULT_KEYS[rule] if k in analysis}
    if rule in SEEDED:
        params["seed"] = config["seed"]
    return params


def beyond_result_params(config: Mapping, family: str, rule: str) -> dict:
    """The values of the family's ``beyond`` section rule ``rule`` computes from
    (:data:`BEYOND_RESULT_KEYS`, those present)."""
    if rule not in BEYOND_RESULT_KEYS:
        raise KeyError(f"beyond_result_params: unknown rule {rule!r}; known: {sorted(BEYOND_RESULT_KEYS)}")
    beyond = _section(config, family, "beyond")
    return {k: beyond[k] for k in BEYOND_RESULT_KEYS[rule] if k in beyond}


def speed_settings(config: Mapping, family: str) -> dict:
    """The speed and memory knobs of ``family`` (:data:`SPEED_KEYS`, schema defaults where
    unset) and the run's ``device``: for the scripts, never a param."""
    analysis = _section(config, family, "analysis")
    settings = {k: analysis.get(k, SPEED_DEFAULTS[k]) for k in SPEED_KEYS}
    settings["device"] = config.get("device", "auto")
    return settings


def training_run_options(config: Mapping, family: str, experiment: str) -> dict:
    """The run options of an experiment's training jobs (:data:`RUN_OPTION_KEYS` of its
    merged ``train`` section, and the run's ``device``): read by the training script from
    the config, never a param, and never part of a model's spec
    (:func:`singledir.pipeline.plan.experiment_specs` strips them)."""
    fam = config["families"][family]
    train = {**(fam.get("train") or {}), **((fam["experiments"][experiment].get("train")) or {})}
    options = {k: train[k] for k in RUN_OPTION_KEYS if train.get(k) is not None}
    options["device"] = config.get("device", "auto")
    return options


def training_gpus(config: Mapping, family: str, experiment: str, trains: bool = True) -> int:
    """GPUs a training job asks for (its ``gpu`` resource): ``nodes x gpus_per_node`` of
    its run options; none where the run's device is the CPU or nothing is trained
    (``model.weights``)."""
    options = training_run_options(config, family, experiment)
    if not trains or options["device"] == "cpu":
        return 0
    return int(options.get("nodes", 1)) * int(options.get("gpus_per_node", 0) or 0)


def engine_options(results: Mapping, speed: Mapping):
    """The perturbation engine's options (:class:`singledir.engine.options.EngineOptions`)
    from a rule's result params (``topk``, ``precision``) and the speed knobs
    (``chunk_size``, ``max_rows``, ``method``)."""
    return EngineOptions.from_config({**{k: speed[k] for k in ("chunk_size", "max_rows", "method")},
                                      **{k: results[k] for k in ("topk", "precision") if k in results}})

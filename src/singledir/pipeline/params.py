"""What a per-model analysis rule gets as Snakemake ``params`` (what defines its numbers)
and what reaches its script without being a param (what only sets speed or memory).

Snakemake reruns a job when its params change (``--rerun-triggers params``), so a rule's
params are exactly the config keys its numbers depend on; a speed knob changed between
runs reruns nothing, and noise scales do not rerun ablation curves.

Speed and memory (:data:`SPEED_KEYS`, read by the scripts through :func:`speed_settings`):

- ``chunk_size``, ``max_rows``: how many examples / perturbed rows one forward pass takes;
- ``method``: the engine path (every path is exact to 1e-5 against the plain definition,
  ``tests/test_engine.py``);
- ``loader_workers``: image-decoding processes;
- ``device`` (top level): where the job computes.

This holds for the noise curves too: their draws are indexed by (seed, layer,
perturbation, example), not by chunk (:mod:`singledir.engine.noise_source`), so
``chunk_size`` and ``max_rows`` do not change them. (CPU and CUDA generators differ, so
``device`` gives other, statistically equal, noise draws.)
"""

from __future__ import annotations

from typing import Mapping

from singledir.engine.options import EngineOptions

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
}
# Rules whose numbers depend on the run's top-level ``seed`` (orderings, subsets, noise).
SEEDED = {"ablation_curve", "noise_curve", "training_auc"}


def _analysis(config: Mapping, family: str) -> Mapping:
    try:
        return config["families"][family].get("analysis", {}) or {}
    except KeyError:
        raise KeyError(f"families.{family}: no such family in the config; families: "
                       f"{sorted(config.get('families', {}))}") from None


def result_params(config: Mapping, family: str, rule: str) -> dict:
    """The config values rule ``rule`` of ``family`` computes from: its :data:`RESULT_KEYS`
    present in the family's ``analysis`` section, and ``seed`` for the seeded rules."""
    if rule not in RESULT_KEYS:
        raise KeyError(f"result_params: unknown rule {rule!r}; known: {sorted(RESULT_KEYS)}")
    analysis = _analysis(config, family)
    params = {k: analysis[k] for k in RESULT_KEYS[rule] if k in analysis}
    if rule in SEEDED:
        params["seed"] = config["seed"]
    return params


def speed_settings(config: Mapping, family: str) -> dict:
    """The speed and memory knobs of ``family`` (:data:`SPEED_KEYS`, schema defaults where
    unset) and the run's ``device``: for the scripts, never a param."""
    analysis = _analysis(config, family)
    settings = {k: analysis.get(k, SPEED_DEFAULTS[k]) for k in SPEED_KEYS}
    settings["device"] = config.get("device", "auto")
    return settings


def engine_options(results: Mapping, speed: Mapping):
    """The perturbation engine's options (:class:`singledir.engine.options.EngineOptions`)
    from a rule's result params (``topk``, ``precision``) and the speed knobs
    (``chunk_size``, ``max_rows``, ``method``)."""
    return EngineOptions.from_config({**{k: speed[k] for k in ("chunk_size", "max_rows", "method")},
                                      **{k: results[k] for k in ("topk", "precision") if k in results}})

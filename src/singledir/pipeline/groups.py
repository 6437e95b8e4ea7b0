"""Models that share one job: which models of a config the workflow groups, and the
``model`` wildcard of the per-model rule that leaves the grouped ones to their group rules.

Two rule generators group models of one family:

- fused training (:func:`fusion_groups`; experiment key ``fuse: K``): same-shaped models
  trained at once by :func:`singledir.training.fused.train_group`, one rule per group
  (``train_group_*``, ``workflow/rules/train.smk``) beside the per-model ``train_model``;
- probe groups (:func:`probe_groups`; ``families.<family>.beyond.probe_group: K``): networks
  probed in one process (``beyond_probes_group_*``, ``workflow/rules/beyond.smk``) beside
  the per-network ``beyond_probes``.

A group rule's outputs are its members' usual per-model files, so every downstream rule is
unchanged; the per-model rule's ``model`` wildcard (:func:`ungrouped_member_regex`) excludes
the grouped ids of the same family, so no file has two producing rules. Changing ``fuse``
or ``probe_group`` changes which job produces a file, so Snakemake reruns the regrouped
models. No Snakemake import and no training code (the rules files import this at parse time).
"""

from __future__ import annotations

import copy
import json
import re
from collections import OrderedDict
from typing import Mapping

from singledir.pipeline import plan

# Architectures the fused network (singledir.training.fused.FusedNet) can stack.
FUSABLE_ARCHS = ("mlp", "convnet")
# Spec entries in which members of one fused group may differ (per-member values of the fused step).
_MEMBER_FIELDS = {("train", "seed"), ("train", "lr"), ("train", "weight_decay"), ("model", "dropout")}
# What a model id may be (the workflow's global `model` wildcard).
MODEL_ID_REGEX = r"[A-Za-z0-9_.\-]+"


def _chunks(ids: list[str], k: int) -> list[list[str]]:
    return [ids[start:start + k] for start in range(0, len(ids), k)]


def fusion_key(spec: dict) -> str:
    """Everything that must be equal for two model specs to train fused."""
    s = copy.deepcopy(spec)
    for section, key in _MEMBER_FIELDS:
        s.get(section, {}).pop(key, None)
    for key in ("id", "labels"):
        s.pop(key, None)
    return json.dumps(s, sort_keys=True, default=str)


def fusion_groups(config: dict, family: str) -> "OrderedDict[str, list[str]]":
    """Group id -> member model ids, for the experiments of ``family`` with ``fuse: K`` > 1.

    Models of an experiment are grouped by :func:`fusion_key` (grid variables that
    change the shape or the training schedule, such as width or batch size, split
    groups), in grid order, into groups of at most K. A group of one trains alone (it
    is no group). Group ids are ``<experiment>_g<i>``.
    """
    groups: "OrderedDict[str, list[str]]" = OrderedDict()
    fam = config["families"][family]
    for exp in plan.enabled_experiments(config, family):
        k = int(fam["experiments"][exp].get("fuse", 1) or 1)
        if k <= 1:
            continue
        by_key: "OrderedDict[str, list[str]]" = OrderedDict()
        for mid, spec in plan.experiment_specs(config, family, exp).items():
            arch = spec["model"].get("arch")
            if arch not in FUSABLE_ARCHS:
                raise plan.ConfigError(f"families.{family}.experiments.{exp}.fuse: fused training supports the "
                                       f"architectures {FUSABLE_ARCHS}, not {arch!r}; remove `fuse`")
            if (spec["train"].get("regularizer") or "none") != "none":
                # the fused step computes plain cross-entropy only; never train something else silently
                raise plan.ConfigError(f"families.{family}.experiments.{exp}.fuse: fused training has no "
                                       f"train.regularizer ({spec['train']['regularizer']!r} here; "
                                       "singledir.training.regularizers); remove `fuse` to train these models "
                                       "one by one")
            by_key.setdefault(fusion_key(spec), []).append(mid)
        chunks = [c for ids in by_key.values() for c in _chunks(ids, k) if len(c) > 1]
        groups.update((f"{exp}_g{i}", c) for i, c in enumerate(chunks))
    return groups


def probe_groups(config: dict, family: str) -> dict[str, list[str]]:
    """Group id -> member model ids, when ``families.<family>.beyond.probe_group`` is K > 1:
    the networks needed by the same drawn figX figures, in chunks of K (``{}`` for K = 1).

    Grouping by the figures that need them keeps ``snakemake results/figX1_<family>.pdf``
    from training networks only another figure reads. Group ids are
    ``<figures>_p<i>``, e.g. ``figX1_figX3_p0``.
    """
    k = int(config["families"][family].get("beyond", {}).get("probe_group", 1) or 1)
    if k <= 1:
        return {}
    enabled = set(plan.enabled_experiments(config, family))
    drawn = plan.beyond_figures(config, family)
    needed_by: dict[str, set[str]] = {}
    for fig, needs in plan.FIGURES.get(family, {}).items():
        if fig in drawn and all(plan.parse_selection(n)[0] in enabled for n in needs):
            for sel in needs:
                for m in plan.experiment_models(config, family, sel):
                    needed_by.setdefault(m, set()).add(fig)
    by_figures: dict[str, list[str]] = {}
    for m, figs in needed_by.items():
        by_figures.setdefault("_".join(sorted(figs)), []).append(m)
    return {f"{figs}_p{i}": chunk for figs, ids in by_figures.items() for i, chunk in enumerate(_chunks(ids, k))}


def group_rules(prefix: str, groups_by_family: Mapping[str, Mapping[str, list[str]]]):
    """(rule name, family, group id, member ids) of each group (family -> group id -> member
    ids): one rule per group, named ``<prefix>_<family>_<group id>`` with every character a
    rule name cannot hold as ``_``."""
    for family, groups in groups_by_family.items():
        for gid, members in groups.items():
            yield re.sub(r"\W", "_", f"{prefix}_{family}_{gid}"), family, gid, list(members)


def ungrouped_member_regex(groups_by_family: Mapping[str, Mapping[str, list[str]]]) -> str:
    """The ``model`` wildcard of a per-model rule whose models may be grouped: any model id
    except a member of a group of the same family (family -> group id -> member ids).

    The per-model files are ``.../<family>/<model>/...``: a lookahead refuses a member id
    followed by ``/`` where a lookbehind sees ``<family>/`` before it, so the same id of
    another family, or an id that only starts with a member's, still matches.
    """
    alts = [f"(?<={re.escape(fam)}/)(?:{'|'.join(re.escape(m) for ms in groups.values() for m in ms)})"
            for fam, groups in groups_by_family.items() if any(groups.values())]
    return f"(?!(?:{'|'.join(alts)})/){MODEL_ID_REGEX}" if alts else MODEL_ID_REGEX

"""How many SLURM submissions a run makes: which jobs share one allocation (Snakemake job
groups), how long a grouped job may ask for, and the count the plan prints.

On a cluster every non-local job is one ``sbatch``, unless it belongs to a Snakemake *job
group*: the jobs of one group id that are connected in the DAG form a *connected
component*, and the profile's ``group-components: {GROUP: N}`` merges up to N components
into one group job, one ``sbatch`` (``snakemake/dag.py``: ``_update_group_components``
chunks the components, in no particular order, into chunks of N). The jobs grouped here
never depend on each other (trainings of single models; per-model analyses, which depend on
their training, outside the group; label files), so every job is its own component and a
group of ``J`` jobs with ``group-components`` N makes ``ceil(J / N)`` submissions.

What is grouped (:func:`job_group`; the rules' ``group:`` directives call :func:`active_group`,
which leaves a job ungrouped unless the profile's ``group-components`` for its group is > 1):

========  ====================================================  ==============================
group     rules                                                 families
========  ====================================================  ==============================
train     ``train_model``                                       in-memory (MNIST, CIFAR-10)
analysis  ``ablation_curve``, ``noise_curve``, ``unit_analysis``,  in-memory
          ``training_auc``, ``beyond_probes``
labels    ``corrupt_labels``                                    every family (CPU partition)
========  ====================================================  ==============================

Not grouped: an image family's (ImageNet's) training and analyses, hours to days each; the
fused training groups (``train_group_*``, already several networks per job) and probe groups
(``beyond_probes_group_*``); the image index and subset (one job each, CPU partition).
Snakemake activates groups only for a cluster run and dry runs (``rule.group`` is ``None``
under local execution), so the local profiles run exactly as before.

How Snakemake sizes a group job (``snakemake/resources.py``, ``GroupResources.basic_layered``):
jobs that may run at once form a *layer*, limited by the run's ``--resources``; within a layer
resources add up and runtimes take the maximum, across layers resources take the maximum and
runtimes add up. Without a limit, all N independent jobs would be one layer: N GPUs and N times
the memory. The profile therefore declares ``resources: group_slot: 1`` with
``set-resource-scopes: group_slot: local`` (a *local* resource limits each group job, not the
whole run: the head job's scheduler ignores it for submitted jobs), and every grouped rule asks
for ``group_slot=1``: each layer holds one job, so a group job asks for one job's GPU, the
largest member's memory and CPUs, and the *sum* of its members' runtimes, and runs the members
one after another. (``--resources gpu=1`` would do the same but also cut every job's ``gpu`` to
1, an ImageNet training's 8 included: Snakemake constrains each job's resources by the global
ones.)

Since runtimes add up, a grouped job asks for its *share* of the group's walltime,
:data:`GROUP_WALLTIME_MIN` / N (:func:`grouped_runtime`), never more than it asks alone: a full
group job asks for exactly :data:`GROUP_WALLTIME_MIN`. The SLURM plugin (2.8) submits a group
job like any job (``sbatch`` with the group's resources; its partition, a string resource, must
be the same for all members, which is why CPU and GPU rules are in different groups), and inside
the allocation the job-step plugin starts one Snakemake process that runs the members.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from pathlib import Path
from typing import Mapping

from singledir.data.access import IMAGES, data_form
from singledir.figures import registry

# The walltime (minutes) a full group job asks for: 24 h, the limit of many GPU partitions
# and what one in-memory training job asks for alone. Members get equal shares of it.
GROUP_WALLTIME_MIN = 1440

# Rule -> group, for the families whose data is in memory (the groups of the module docstring).
IN_MEMORY_GROUPS = {
    "train_model": "train",
    "ablation_curve": "analysis",
    "noise_curve": "analysis",
    "unit_analysis": "analysis",
    "training_auc": "analysis",
    "beyond_probes": "analysis",
}
# Rule -> group, for every family (CPU-only jobs of seconds each).
ALL_FAMILY_GROUPS = {"corrupt_labels": "labels"}

# Rules that run in the head job (`localrule: True`, or target rules without a job of their
# own): never submitted. The figure rules (one per registry figure) are local too.
LOCAL_RULES = frozenset({
    "prepare_dataset", "data", "stats_table", "unknown_figure", "claims", "claims_page", "runtime_table",
    "config_page", "figure_gallery", "report_pages", "all_figures", "all",
})

DEFAULT_PROFILE = Path(__file__).resolve().parents[3] / "profiles" / "slurm" / "config.yaml"


def is_local_rule(rule: str) -> bool:
    """Whether the rule's jobs run in the head job (never through ``sbatch``)."""
    return rule in LOCAL_RULES or rule in registry.FIGURES


def job_group(rule: str, dataset_cfg: Mapping) -> str | None:
    """The job group of one job of ``rule`` for a family with dataset section ``dataset_cfg``
    (``None``: submitted alone). The workflow's ``group:`` directives call this."""
    if rule in ALL_FAMILY_GROUPS:
        return ALL_FAMILY_GROUPS[rule]
    if data_form(dataset_cfg) == IMAGES:
        return None
    return IN_MEMORY_GROUPS.get(rule)


def active_group(rule: str, dataset_cfg: Mapping, group_components: Mapping[str, int]) -> str | None:
    """The job's group when the run's ``group-components`` merge more than one job into a
    group job, else ``None``: the local profiles (no group settings) form no groups, and
    their dry runs list jobs as before."""
    group = job_group(rule, dataset_cfg)
    return group if group and int(group_components.get(group, 1)) > 1 else None


def grouped_runtime(own_min: int, group: str | None, group_components: Mapping[str, int]) -> int:
    """The runtime (minutes) a job asks for: its own, or in a group of up to N > 1 jobs its
    share of :data:`GROUP_WALLTIME_MIN`, at most its own."""
    n = int(group_components.get(group, 1)) if group else 1
    if n <= 1:
        return int(own_min)
    return max(1, min(int(own_min), GROUP_WALLTIME_MIN // n))


def load_profile(profile) -> dict:
    """A Snakemake profile's settings: ``profile`` is a mapping (returned as is), a profile
    directory or its ``config.yaml``."""
    if isinstance(profile, Mapping):
        return dict(profile)
    import yaml

    path = Path(profile)
    if path.is_dir():
        path = path / "config.yaml"
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def group_components(profile) -> dict[str, int]:
    """``group-components`` of a profile (group -> components per group job)."""
    given = load_profile(profile).get("group-components") or {}
    return {str(k): int(v) for k, v in dict(given).items()}


def _family_cfgs(config: Mapping) -> dict:
    return {f: c for f, c in (config.get("families") or {}).items() if c.get("enabled", True)}


def submission_counts(config: Mapping, jobs_by_rule: Mapping[str, Mapping[str, int]], profile=DEFAULT_PROFILE) -> dict:
    """The number of submissions (``sbatch`` calls) of a run through ``profile``.

    ``jobs_by_rule``: rule -> {family: jobs} for every job of the run (family ``""`` for jobs
    without one, e.g. the fused ``train_group_*`` rules), as :func:`jobs_by_rule` reads them
    from a dry run. Returns ``{"total": int, "jobs": int (non-local), "local_jobs": int,
    "groups": {group: {"jobs", "per_submission", "submissions"}}, "alone": {rule: jobs}}``;
    ``total`` = the groups' submissions + the jobs submitted alone.
    """
    families = _family_cfgs(config)
    sizes = group_components(profile)
    grouped: Counter = Counter()
    alone: Counter = Counter()
    local = 0
    for rule, per_family in jobs_by_rule.items():
        for family, n in per_family.items():
            if is_local_rule(rule):
                local += n
                continue
            group = job_group(rule, families[family]["dataset"]) if family in families else None
            if group is None:
                alone[rule] += n
            else:
                grouped[group] += n
    groups = {}
    for group, n in sorted(grouped.items()):
        per = max(1, sizes.get(group, 1))
        groups[group] = {"jobs": n, "per_submission": per, "submissions": math.ceil(n / per)}
    total = sum(g["submissions"] for g in groups.values()) + sum(alone.values())
    return {"total": total, "jobs": sum(grouped.values()) + sum(alone.values()), "local_jobs": local,
            "groups": groups, "alone": dict(sorted(alone.items()))}


_JOB_LINE = re.compile(r"^(\s*)(?:local)?(?:rule|checkpoint) (\w+):$")
_GROUP_LINE = re.compile(r"Group job (\S+) \(jobs in lexicogr\. order\):$")


def _dry_run_jobs(text: str, families=()):
    """(rule, family, grouped) of every job a ``snakemake -n`` lists; members of a group job
    are listed indented under its "Group job" line."""
    jobs = []
    for line in text.splitlines():
        m = _JOB_LINE.match(line)
        if m:
            rule = m.group(2)
            family = next((f for f in families if f"_{f}_" in f"_{rule}_"), "")
            jobs.append([rule, family, bool(m.group(1))])
            continue
        fam = re.match(r"\s+wildcards:.*?\bfamily=([\w-]+)", line)
        if fam and jobs:
            jobs[-1][1] = fam.group(1)
    return jobs


def parse_dry_run(text: str, families=()) -> dict[str, dict[str, int]]:
    """rule -> {family: jobs} from the job list a ``snakemake -n`` prints. A job's family is
    its ``family`` wildcard, or for a rule made in a loop (``train_group_mnist_...``) the
    family named in the rule's name, else ``""``."""
    counts: dict[str, Counter] = {}
    for rule, family, _ in _dry_run_jobs(text, families):
        counts.setdefault(rule, Counter())[family] += 1
    return {rule: dict(c) for rule, c in counts.items()}


def dry_run_submissions(text: str) -> int:
    """The submissions a dry run *with the profile's group settings* lists: its group jobs
    plus the non-local jobs outside any group (the check of :func:`submission_counts`)."""
    groups = sum(1 for line in text.splitlines() if _GROUP_LINE.search(line))
    alone = sum(1 for rule, _, grouped in _dry_run_jobs(text) if not grouped and not is_local_rule(rule))
    return groups + alone


def jobs_by_rule(configfiles, snakefile=None, target: str = "all_figures", families=()) -> dict[str, dict[str, int]]:
    """rule -> {family: jobs} of every job of the run (``snakemake -n --forceall TARGET``: as
    if nothing were done yet), read from the dry run's job list."""
    import subprocess
    import sys

    snakefile = Path(snakefile or Path(__file__).resolve().parents[3] / "Snakefile")
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else "snakemake", target, "-s", str(snakefile), "-n", "--forceall",
           "--configfile", *map(str, configfiles)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, SINGLEDIR_QUIET_PLAN="1"))
    out = proc.stdout + proc.stderr
    total = re.search(r"^total\s+(\d+)", out, re.M)
    if proc.returncode != 0 or not total:
        raise RuntimeError(f"snakemake -n failed for {' '.join(map(str, configfiles))}:\n{out[-2000:]}")
    counts = parse_dry_run(out, families)
    listed = sum(sum(c.values()) for c in counts.values())
    if listed != int(total.group(1)):
        raise RuntimeError(f"read {listed} jobs from the dry run's job list, but it says {total.group(1)}")
    return counts


def summary_line(counts: Mapping) -> str:
    """The plan's line: total submissions and how they come about."""
    parts = [f"{g}: {v['jobs']} jobs in {v['submissions']} (up to {v['per_submission']} each)"
             for g, v in counts["groups"].items()]
    alone = sum(counts["alone"].values())
    parts.append(f"{alone} jobs alone")
    return (f"submissions: {counts['total']} (sbatch calls) for {counts['jobs']} cluster jobs "
            f"({'; '.join(parts)}); {counts['local_jobs']} jobs run in the head job")

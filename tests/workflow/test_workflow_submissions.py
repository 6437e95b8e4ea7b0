"""Cluster readiness of the paper config, without a cluster: the login-node data step has
only local jobs, and the submission count the plan prints (singledir.pipeline.submissions)
is the one a real Snakemake dry run with profiles/slurm's group settings lists.
(The demo slice through a real SLURM with these groups: test_workflow_slurm.py.)"""
import re

import pytest

from conftest import REPO, load_yaml
from workflow_runs import snakemake, workflow_rules

from singledir.pipeline import submissions
from singledir.pipeline.config_check import load_config

pytestmark = pytest.mark.slow
PAPER = REPO / "config" / "config.yaml"
PROFILE = load_yaml(REPO / "profiles" / "slurm" / "config.yaml")


def test_the_local_rules_are_the_ones_the_submission_count_leaves_out(tmp_path):
    rules = workflow_rules(tmp_path, configfile=PAPER)
    local = {r["name"] for r in rules if r["local"]}
    assert {"data", "prepare_dataset", "fig1", "all_figures"} <= local
    assert {r["name"] for r in rules if submissions.is_local_rule(r["name"])} == local


def test_the_data_step_prepares_every_in_memory_dataset_in_local_jobs_only(tmp_path):
    out = snakemake(tmp_path, "-n", "--forceall", "data", configfile=PAPER).stdout
    jobs = submissions.parse_dry_run(out, ["mnist", "cifar10", "imagenet"])
    assert jobs == {"prepare_dataset": {"mnist": 1, "cifar10": 1}, "data": {"": 1}}, out[-3000:]
    local = {r["name"] for r in workflow_rules(tmp_path, configfile=PAPER) if r["local"]}
    assert set(jobs) <= local


def _grouped_dry_run(tmp_path):
    """`snakemake -n all_figures` of the paper config with the profile's group settings (the
    SLURM executor itself is not needed: groups are formed in dry runs)."""
    args = ["-n", "--forceall", "all_figures",
            "--group-components", *[f"{g}={n}" for g, n in PROFILE["group-components"].items()],
            "--resources", *[f"{k}={v}" for k, v in PROFILE["resources"].items()],
            "--set-resource-scopes", *[f"{k}={v}" for k, v in PROFILE["set-resource-scopes"].items()]]
    return snakemake(tmp_path, *args, configfile=PAPER, timeout=600).stdout


def test_the_paper_config_submission_count_is_the_dry_runs_and_at_most_150(tmp_path):
    out = _grouped_dry_run(tmp_path)
    config = load_config([PAPER]).config
    counts = submissions.submission_counts(config, submissions.parse_dry_run(out, list(config["families"])),
                                           REPO / "profiles" / "slurm")
    assert counts["total"] == submissions.dry_run_submissions(out)
    assert counts["total"] <= 150
    assert counts["jobs"] + counts["local_jobs"] == int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    # Every group job's members add up to at most the group walltime (Snakemake sums the
    # runtimes of members that run one after another).
    group_minutes, current = [], None
    for line in out.splitlines():
        if "Group job" in line:
            group_minutes.append(0)
            current = len(group_minutes) - 1
        elif re.match(r"(?:local)?rule \w+:$", line):
            current = None
        elif current is not None and (m := re.match(r"\s+resources: .*\bruntime=(\d+)", line)):
            group_minutes[current] += int(m.group(1))
    assert len(group_minutes) == sum(g["submissions"] for g in counts["groups"].values())
    assert max(group_minutes) <= submissions.GROUP_WALLTIME_MIN
    print(f"\npaper config: {counts['jobs']} cluster jobs in {counts['total']} submissions; "
          f"group jobs ask {min(group_minutes)}-{max(group_minutes)} min")

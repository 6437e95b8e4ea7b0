"""Cluster submissions (singledir.pipeline.submissions): which jobs share a group job, the
runtime a grouped job asks for, and the count the plan prints, from job counts and the
profile's group-components. The count is checked against a real Snakemake dry run in
tests/workflow/test_workflow_submissions.py."""
import math

import pytest
import yaml

from singledir.pipeline import submissions as S

MNIST = {"source": "torchvision", "name": "MNIST"}
IMAGENET = {"source": "imagenet", "root": "/data/imagenet"}
CONFIG = {"families": {"mnist": {"dataset": MNIST}, "imagenet": {"dataset": IMAGENET},
                       "off": {"enabled": False, "dataset": MNIST}}}
PROFILE = {"group-components": {"train": 4, "analysis": 10, "labels": 100}}


def test_in_memory_jobs_are_grouped_image_family_jobs_alone_and_labels_always():
    assert S.job_group("train_model", MNIST) == "train"
    assert S.job_group("ablation_curve", MNIST) == "analysis"
    assert S.job_group("beyond_probes", MNIST) == "analysis"
    assert S.job_group("unit_shard", MNIST) is None
    assert S.job_group("train_model", IMAGENET) is None
    assert S.job_group("ablation_curve", IMAGENET) is None
    assert S.job_group("corrupt_labels", IMAGENET) == "labels"
    assert S.job_group("prepare_dataset", MNIST) is None  # a local rule: a grouped rule is never local


def test_a_group_is_formed_only_where_the_profile_sizes_it():
    assert S.active_group("train_model", MNIST, {"train": 12}) == "train"
    assert S.active_group("train_model", MNIST, {"train": 1}) is None
    assert S.active_group("train_model", MNIST, {}) is None  # the local profiles
    assert S.active_group("train_model", IMAGENET, {"train": 12}) is None


def test_a_grouped_job_asks_for_its_share_of_the_group_walltime_never_more_than_alone():
    sizes = {"train": 12, "analysis": 20}
    assert S.grouped_runtime(1440, "train", sizes) == 120
    assert S.grouped_runtime(240, "analysis", sizes) == 72
    assert S.grouped_runtime(30, "analysis", sizes) == 30  # its own is less than the share
    assert S.grouped_runtime(1440, None, sizes) == 1440
    assert S.grouped_runtime(240, "labels", sizes) == 240  # no group-components: a group of one
    # N full members add up to at most the group walltime
    for n in (2, 7, 12, 20, 1000):
        assert n * S.grouped_runtime(10 ** 6, "g", {"g": n}) <= S.GROUP_WALLTIME_MIN


def test_submissions_are_groups_in_chunks_plus_jobs_alone_and_local_jobs_none():
    jobs = {
        "prepare_dataset": {"mnist": 1}, "fig1": {"mnist": 1, "imagenet": 1}, "all_figures": {"": 1},
        "corrupt_labels": {"mnist": 5, "imagenet": 6},
        "train_model": {"mnist": 9, "imagenet": 7},
        "train_group_mnist_corruption_g0": {"mnist": 1},
        "ablation_curve": {"mnist": 18, "imagenet": 6},
        "beyond_probes": {"mnist": 9},
        "unit_shard": {"imagenet": 4},
    }
    got = S.submission_counts(CONFIG, jobs, PROFILE)
    assert got["groups"] == {
        "analysis": {"jobs": 27, "per_submission": 10, "submissions": 3},
        "labels": {"jobs": 11, "per_submission": 100, "submissions": 1},
        "train": {"jobs": 9, "per_submission": 4, "submissions": 3},
    }
    assert got["alone"] == {"ablation_curve": 6, "train_group_mnist_corruption_g0": 1, "train_model": 7,
                            "unit_shard": 4}
    assert got["total"] == 3 + 1 + 3 + 18
    assert got["jobs"] == 27 + 11 + 9 + 18 and got["local_jobs"] == 4
    # without group-components every job is its own submission
    alone = S.submission_counts(CONFIG, jobs, {})
    assert alone["total"] == alone["jobs"] == got["jobs"]
    line = S.summary_line(got)
    assert line.startswith("submissions: 25 ") and "train: 9 jobs in 3 (up to 4 each)" in line


def test_the_count_reads_the_profile_file(tmp_path):
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(PROFILE))
    jobs = {"train_model": {"mnist": 9}}
    assert S.submission_counts(CONFIG, jobs, tmp_path)["total"] == math.ceil(9 / 4)
    assert S.submission_counts(CONFIG, jobs, tmp_path / "config.yaml")["total"] == 3
    assert S.group_components(S.DEFAULT_PROFILE) == {"train": 12, "analysis": 20, "labels": 100}


DRY_RUN = """\
[Sun Dec  6 12:58:08 2026]
localrule prepare_dataset:
    output: results/data/mnist/dataset.npz
    jobid: 3
    wildcards: family=mnist
    resources: tmpdir=/tmp
[Sun Dec  6 12:58:08 2026] Group job train (jobs in lexicogr. order):

    [Sun Dec  6 12:58:08 2026]
    rule train_model:
        output: results/models/mnist/a/model.pt
        jobid: 5
        wildcards: family=mnist, model=a
        resources: tmpdir=/tmp, gpu=1, runtime=120

    [Sun Dec  6 12:58:08 2026]
    rule train_model:
        jobid: 6
        wildcards: family=mnist, model=b
[Sun Dec  6 12:58:08 2026]
rule train_group_mnist_corruption_g0:
    jobid: 7
[Sun Dec  6 12:58:08 2026]
rule train_model:
    jobid: 8
    wildcards: family=imagenet, model=c
[Sun Dec  6 12:58:08 2026]
rule all_figures:
    jobid: 0
"""


def test_a_dry_run_job_list_gives_jobs_by_rule_and_family_and_its_submissions():
    assert S.parse_dry_run(DRY_RUN, ["mnist", "imagenet"]) == {
        "prepare_dataset": {"mnist": 1}, "train_model": {"mnist": 2, "imagenet": 1},
        "train_group_mnist_corruption_g0": {"mnist": 1}, "all_figures": {"": 1}}
    assert S.dry_run_submissions(DRY_RUN) == 3  # the group job, the fused group, the ImageNet training


@pytest.mark.parametrize("rule", ["fig1", "figX4", "stats_table", "claims", "all_figures", "prepare_dataset", "data"])
def test_local_rules_are_never_counted(rule):
    assert S.is_local_rule(rule)
    assert S.submission_counts(CONFIG, {rule: {"mnist": 3}}, PROFILE)["total"] == 0

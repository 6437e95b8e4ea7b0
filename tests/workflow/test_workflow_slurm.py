"""A slice of the demo DAG through profiles/slurm on a real single-node SLURM cluster
(Debian's slurmctld/slurmd/munge, started by .ci/slurm-up.sh and stopped by PID by
.ci/slurm-down.sh). Every non-local job must go through sbatch, and the outputs must
equal those of a local run. CI installs SLURM (.ci/run), so this never skips there."""
import fcntl
import os
import re
import shutil
import stat
import subprocess
import time

import pandas as pd
import pytest
import torch

from conftest import REPO, load_yaml, write_yaml
from workflow_runs import complete_tiny_run, snakemake

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sbatch") is None,
                       reason="SLURM is not installed (apt-get install slurmctld slurmd munge; .ci/run does)"),
]

STATE = "/tmp/singledir-slurm"  # short: slurmd puts sockets under it
TARGET = "results/fig1_mnist.pdf"
# What fig1 needs: the dataset (a local rule), two label files, two models, two ablation curves.
REMOTE_JOBS = {"corrupt_labels": 2, "train_model": 2, "ablation_curve": 2}
LOCAL_JOBS = ["prepare_dataset", "fig1"]
# The profile's job groups (singledir.pipeline.submissions): each pair shares one sbatch.
GROUP_OF = {"corrupt_labels": "labels", "train_model": "train", "ablation_curve": "analysis"}
GPU_GROUPS = {"train", "analysis"}
# The test cluster's partitions (.ci/slurm-up.sh): `debug` stands for the GPU partition, `cpu`
# is the profile's CPU partition as written.
PARTITION = {"labels": "cpu", "train": "debug", "analysis": "debug"}


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.fail("the SLURM test starts slurmctld/slurmd and writes /etc/slurm: run it as root (CI does)")
    with open("/tmp/singledir-slurm-test.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one test cluster per machine at a time
        up = subprocess.run(["bash", REPO / ".ci" / "slurm-up.sh", STATE], capture_output=True, text=True,
                            timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        pids = dict(line.split() for line in open(f"{STATE}/run/started.pids"))
        try:
            yield pids
        finally:
            down = subprocess.run(["bash", REPO / ".ci" / "slurm-down.sh", STATE], capture_output=True,
                                  text=True, timeout=120)
            assert down.returncode == 0, down.stdout + down.stderr
            # Its config is gone too: a stale one makes every later snakemake command wait
            # 9 s in the SLURM plugin's `scontrol show config` for a controller that is gone.
            for conf in ("/etc/slurm/slurm.conf", "/etc/slurm/gres.conf"):
                assert not os.path.exists(conf), f"{conf} left behind by .ci/slurm-down.sh"
            for name, pid in pids.items():
                assert not os.path.exists(f"/proc/{pid}") or \
                    open(f"/proc/{pid}/stat").read().split()[2] == "Z", f"{name} ({pid}) still runs"


def _slurm_job(jobid):
    out = subprocess.run(["scontrol", "show", "job", jobid], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S+)", out))


def test_demo_slice_runs_through_sbatch_and_equals_a_local_run(cluster, tmp_path, tmp_path_factory):
    local, cfgfile, _ = complete_tiny_run(tmp_path_factory)
    assert set(cluster) >= {"slurmctld", "slurmd"}

    # profiles/slurm as a user edits it: this cluster's partition.
    prof = load_yaml(REPO / "profiles" / "slurm" / "config.yaml")
    prof["default-resources"]["slurm_partition"] = "debug"
    assert prof["set-resources"]["corrupt_labels"]["slurm_partition"] == "cpu"  # kept: this cluster has one
    (tmp_path / "profile").mkdir()
    write_yaml(prof, tmp_path / "profile" / "config.yaml")
    # The config as a GPU cluster's user writes it: training asks for one GPU per job
    # (train.gpus_per_node; with device: cpu it would ask for none). Run options set speed
    # only: the numbers stay those of the local run, and neither run reruns the other.
    cfg = load_yaml(cfgfile)
    cfg["device"] = "auto"
    cfg["families"]["mnist"]["train"]["gpus_per_node"] = 1
    gpu_cfgfile = write_yaml(cfg, tmp_path / "gpu.yaml")
    run = tmp_path / "run"
    t0 = time.monotonic()
    # No accounting daemon on this cluster: job states come from squeue (see the profile).
    proc = snakemake(run, TARGET, "--profile", tmp_path / "profile", "--slurm-status-command", "squeue",
                     "--slurm-init-seconds-before-status-checks", "2", cores=None, configfile=gpu_cfgfile,
                     timeout=1200)
    wall = time.monotonic() - t0
    out = proc.stdout + proc.stderr

    # Every non-local job ran in a group job, one sbatch per group (fewer submissions than
    # jobs), completed in SLURM on its partition; local rules ran in this process.
    members = re.findall(r"\n    rule (\w+):\n(?:        .*\n)*?        jobid: (\d+)\n", out)
    alone = re.findall(r"\nrule (\w+):\n", out)
    local_jobs = re.findall(r"\nlocalrule (\w+):\n", out)
    submitted = re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+) \(log: \S*/group_([a-z]+)_", out)
    counts = {}
    for rule, _ in members:
        counts[rule] = counts.get(rule, 0) + 1
    assert counts == REMOTE_JOBS and alone == [], out[-4000:]
    assert sorted(local_jobs) == sorted(LOCAL_JOBS)
    assert sorted(group for _, _, group in submitted) == sorted(set(GROUP_OF.values())), out[-4000:]
    assert len(submitted) < sum(REMOTE_JOBS.values())
    profile_sizes = prof["group-components"]
    for _, slurm_id, group in submitted:
        info = _slurm_job(slurm_id)
        assert info.get("JobState") == "COMPLETED", (group, info)
        assert info.get("Partition") == PARTITION[group], (group, info)
        # gpu=1 (the config's gpus_per_node for training, the profile's set-resources for the
        # analyses) became sbatch --gpus=1 for the GPU groups only: one GPU for the group's
        # jobs, which run one after another (group_slot), not one GPU per member.
        assert (info.get("TresPerJob") == "gres:gpu:1") == (group in GPU_GROUPS), (group, info)
        # The group asks for its members' shares of 24 h (1440 min / group-components each).
        rule = next(r for r, g in GROUP_OF.items() if g == group)
        own = {"corrupt_labels": 30, "train_model": 1440, "ablation_curve": 240}[rule]
        minutes = REMOTE_JOBS[rule] * min(own, 1440 // profile_sizes[group])
        assert info.get("TimeLimit") == f"{minutes // 60:02d}:{minutes % 60:02d}:00", (group, info)
    # The GPU jobs got their (pretend) device from SLURM, and kept it. (Where mknod is not
    # allowed, slurm-up.sh declares plain files, and SLURM sets no CUDA_VISIBLE_DEVICES.)
    log = (run / "results" / "logs" / "train_model" / "mnist" / "corruption_f1.0_s0.log").read_text()
    if stat.S_ISCHR(os.stat(f"{STATE}/dev/gpu0").st_mode):
        assert re.search(r"GPU: keeping CUDA_VISIBLE_DEVICES=\d", log), log[:500]

    # Same numbers as the local run of the same config.
    for rel in ["results/fig1_mnist.csv", "results/stats/mnist/fig1.csv",
                "results/analysis/mnist/corruption_f0.0_s0/ablation_zero.csv",
                "results/analysis/mnist/corruption_f1.0_s0/ablation_zero.csv",
                "results/models/mnist/corruption_f1.0_s0/history.csv"]:
        pd.testing.assert_frame_equal(pd.read_csv(run / rel), pd.read_csv(local / rel), check_exact=True,
                                      obj=rel)
    for frac in ("0.0", "1.0"):
        rel = f"results/models/mnist/corruption_f{frac}_s0/model.pt"
        a = torch.load(run / rel, weights_only=False)["state_dict"]
        b = torch.load(local / rel, weights_only=False)["state_dict"]
        assert all(torch.equal(a[k], b[k]) for k in a), rel
    assert "Nothing to be done" in snakemake(run, "-n", TARGET, configfile=cfgfile).stdout
    print(f"\nSLURM: {sum(REMOTE_JOBS.values())} jobs in {len(submitted)} sbatch submissions, "
          f"{len(local_jobs)} local, {wall:.0f} s wall")

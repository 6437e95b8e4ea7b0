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
from workflow_runs import complete_tiny_run, snakemake, tiny_config

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
    # The fake GPUs cannot run CUDA: a job granted one would stop (singledir.training.cuda_check)
    # unless told that this cluster's GPUs are pretend ones.
    proc = snakemake(run, TARGET, "--profile", tmp_path / "profile", "--slurm-status-command", "squeue",
                     "--slurm-init-seconds-before-status-checks", "2", cores=None, configfile=gpu_cfgfile,
                     timeout=1200, env={"SINGLEDIR_ALLOW_CPU_FALLBACK": "1"})
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
    assert "training on the CPU because SINGLEDIR_ALLOW_CPU_FALLBACK=1" in log, log[:800]

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



# 150 epochs of a small MLP (5 s of CPU; 20-30 s on this shared machine while others work),
# through jobs of cluster.max_job_minutes: 1, whose startup (two Snakemake parses, torch)
# takes a good part of the minute. The first piece is preempted (SIGTERM to the job through
# SLURM), so training takes at least two pieces on any machine; on a busy machine the later
# pieces also run out of time and stop on the budget (measured: 2 pieces and 189 s; under a
# load average of 11, 220 epochs took 7 pieces, 6 stopped by the budget, ~11 min).
PIECES_MODEL = "results/models/mnist/selectivity_s0/model.pt"
PIECES_LOG = "results/logs/train_model/mnist/selectivity_s0.log"
PIECES_EPOCHS = 150


def _pieces_config(tmp_path):
    cfg = tiny_config()
    cfg["device"] = "cpu"
    cfg["cluster"] = {"max_job_minutes": 1}
    exps = cfg["families"]["mnist"]["experiments"]
    for name, exp in exps.items():
        exp["enabled"] = name == "selectivity"
    exps["selectivity"]["train"] = {"epochs": PIECES_EPOCHS, "checkpoint_every": 5}
    return write_yaml(cfg, tmp_path / "pieces.yaml")


def test_training_killed_at_its_time_limit_resumes_to_the_same_weights(cluster, tmp_path):
    """cluster.max_job_minutes: 1 makes train_model ask SLURM for 1 minute. A piece stops
    3 s before SLURM's end of the job (or on SLURM's SIGTERM: the first piece is preempted
    with `scancel --signal=TERM`) with a checkpoint and exits 3; the rule's retries submit
    the next piece, which resumes; the last one writes model.pt and history.csv, bitwise
    those of an uninterrupted local run."""
    cfgfile = _pieces_config(tmp_path)
    prof = load_yaml(REPO / "profiles" / "slurm" / "config.yaml")
    prof["default-resources"]["slurm_partition"] = "debug"
    prof["retries"] = 0  # every retry below is one the pieces add
    (tmp_path / "profile").mkdir()
    write_yaml(prof, tmp_path / "profile" / "config.yaml")
    run, ref = tmp_path / "run", tmp_path / "ref"
    # The data and labels locally first: only training goes through SLURM.
    snakemake(run, PIECES_MODEL, "--omit-from", "train_model", cores=1, configfile=cfgfile)
    # The uninterrupted reference, locally, while the pieces run in SLURM.
    reference = snakemake(ref, PIECES_MODEL, cores=1, configfile=cfgfile, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    t0 = time.monotonic()
    with open(tmp_path / "slurm_run.out", "w") as out_file:
        proc = snakemake(run, PIECES_MODEL, "--profile", tmp_path / "profile", "--slurm-status-command", "squeue",
                         "--slurm-init-seconds-before-status-checks", "2", cores=None, configfile=cfgfile,
                         stdout=out_file, stderr=subprocess.STDOUT)
        # SLURM job id -> its last `scontrol show job`, and the first while it ran (its EndTime
        # is then the time limit's end); the job we signal
        jobs, while_running, preempted = {}, {}, None
        while proc.poll() is None:
            assert time.monotonic() - t0 < 1500, "the pieces did not finish in 25 min"
            out = (tmp_path / "slurm_run.out").read_text()
            for jobid in re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", out):
                info = _slurm_job(jobid)  # kept while SLURM knows the job (MinJobAge: 300 s)
                if info:
                    jobs[jobid] = info
                    if info.get("JobState") == "RUNNING":
                        while_running.setdefault(jobid, info)
            log = run / PIECES_LOG
            running = [j for j, info in jobs.items() if info.get("JobState") == "RUNNING"]
            if preempted is None and running and log.exists() and re.search(r"^epoch 3/", log.read_text(), re.M):
                preempted = running[0]
                subprocess.run(["scancel", "--signal=TERM", preempted], check=True)
            time.sleep(1)
    wall = time.monotonic() - t0
    out = (tmp_path / "slurm_run.out").read_text()
    assert proc.returncode == 0, out[-4000:]
    ref_out = reference.communicate(timeout=600)[0]
    assert reference.returncode == 0, ref_out[-3000:]

    # ceil(1440 min estimated for in-memory training / 1 min) pieces: 1439 retries
    assert "train_model: training in up to 1440 pieces of cluster.max_job_minutes = 1 min, retries: 1439" in out
    submitted = re.findall(r"Job \S+ has been submitted with SLURM jobid (\d+)", out)
    assert len(submitted) >= 2 and preempted in submitted, out[-4000:]  # training did not fit one job
    info = [jobs[j] for j in submitted]
    assert all(i["TimeLimit"] == "00:01:00" for i in info)  # runtime = cluster.max_job_minutes
    # The pieces before the last failed (exit 3; TIMEOUT where Snakemake's wrap-up after the
    # checkpoint overran the minute); the last completed.
    assert all(i["JobState"] in ("FAILED", "TIMEOUT") for i in info[:-1]), info
    assert info[-1]["JobState"] == "COMPLETED", info[-1]
    # Each stop is in its job's log (shown by the profile's show-failed-logs), each further than the last.
    stops = re.findall(r"(?:PieceDone: piece done: the time budget of SLURM job (\d+) is used up \(3 s before its "
                       r"end\)|TrainingInterrupted: signal 15 received) at epoch (\d+), step (\d+)", out)
    stops = list(dict.fromkeys(stops))  # a group job's failed log is shown twice
    assert stops and all(j in submitted for j, _, _ in stops if j), out[-4000:]
    assert "TrainingInterrupted: signal 15 received at epoch" in out  # the preempted piece
    reached = [(int(e), int(s)) for _, e, s in stops]
    assert reached == sorted(set(reached)) and reached[-1] < (PIECES_EPOCHS, 0)
    log = (run / PIECES_LOG).read_text()
    assert "resuming from " in log and f"at epoch {reached[-1][0]}, step {reached[-1][1]}" in log, log[-2000:]
    # The last piece's budget is SLURM's own end of that job (scontrol's EndTime, local time).
    budget = re.search(r"^time budget: SLURM job (\d+) ends at (\S+ \S+) \(limit 1 min\); training stops at "
                       r"\S+ \S+ \(3 s margin\)", log, re.M)
    assert budget and budget[1] == submitted[-1], log[:1000]
    assert budget[2] == while_running[submitted[-1]]["EndTime"].replace("T", " "), budget[0]
    assert f"epoch {PIECES_EPOCHS}/{PIECES_EPOCHS}" in log

    a = torch.load(run / PIECES_MODEL, weights_only=False)["state_dict"]
    b = torch.load(ref / PIECES_MODEL, weights_only=False)["state_dict"]
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    rel = "results/models/mnist/selectivity_s0/history.csv"
    pd.testing.assert_frame_equal(pd.read_csv(run / rel), pd.read_csv(ref / rel), check_exact=True)
    n_budget = sum(1 for j, _, _ in stops if j)
    print(f"\nSLURM: training in {len(submitted)} pieces of 1 min ({n_budget} stopped by the time budget, "
          f"1 preempted), stopped at {reached}, {wall:.0f} s wall")


def test_one_node_training_through_the_mpi_path(cluster, tmp_path):
    """An image-folder training job with `mpi: srun` and train.nodes: 1 (2 DDP processes)
    through sbatch: the job-step plugin runs it in the batch step with the SLURM_* variables
    stripped and no srun of its own, and the launch runs torchrun --standalone there
    (docs/cluster.md, "Several nodes"). First without the pretend-GPU switch: the job, granted
    2 GPUs that CUDA cannot use, stops at its start with one line; then with it, it trains."""
    cfg = load_yaml(REPO / "config" / "demo.yaml")
    for name, fam in cfg["families"].items():
        fam["enabled"] = name == "imagenet"
    cfg["device"] = "auto"
    cfg["families"]["imagenet"]["train"].update(steps=4, log_every=2, checkpoint_every=2, workers=2, nodes=1,
                                                gpus_per_node=2, threads=1)
    cfgfile = write_yaml(cfg, tmp_path / "standin.yaml")
    prof = load_yaml(REPO / "profiles" / "slurm" / "config.yaml")
    prof["default-resources"]["slurm_partition"] = "debug"
    # the plugin wants tasks > 1 for an mpi job; tasks_per_gpu: 0 keeps it from --ntasks-per-gpu;
    # the image family's 64 GB do not fit this node
    prof["set-resources"]["train_model"] = {"mpi": "srun", "tasks": 2, "tasks_per_gpu": 0, "mem_mb": 2000}
    prof["retries"] = 0  # the first run's stop is final
    prof["set-threads"] = {"image_index": 1}  # its 8 decoding threads do not fit this 2-CPU node
    (tmp_path / "profile").mkdir()
    write_yaml(prof, tmp_path / "profile" / "config.yaml")
    model = "results/models/imagenet/corruption_f0.0_s0/model.pt"
    log = tmp_path / "run" / "results" / "logs" / "train_model" / "imagenet" / "corruption_f0.0_s0.log"

    def run(**env):
        return snakemake(tmp_path / "run", model, "--profile", tmp_path / "profile", "--slurm-status-command",
                         "squeue", "--slurm-init-seconds-before-status-checks", "2", cores=None,
                         configfile=cfgfile, timeout=900, check=False, env=env)

    stopped = run()
    said = (stopped.stdout + stopped.stderr)[-4000:]
    assert stopped.returncode != 0 and not (tmp_path / "run" / model).exists(), said
    assert log.is_file() and log.read_text().strip(), said
    last = log.read_text().strip().splitlines()[-1]
    assert last.startswith("singledir.training.cuda_check.CudaUnusable: this job was granted 2 GPU(s) (its gpu "
                           "resource) but torch cannot use CUDA: "), last
    assert "launching" not in log.read_text()  # stopped before torchrun

    log.unlink()
    done = run(SINGLEDIR_ALLOW_CPU_FALLBACK="1")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    jobid = re.findall(r"\nrule train_model:\n(?:    .*\n)*?    jobid: (\d+)\n", out)[0]
    slurm_id = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out))[jobid]
    info = _slurm_job(slurm_id)
    assert info.get("JobState") == "COMPLETED" and info.get("NumTasks") == "2", info
    assert info.get("TresPerJob") == "gres:gpu:2", info
    text = log.read_text()
    assert "training on the CPU because SINGLEDIR_ALLOW_CPU_FALLBACK=1" in text
    assert re.search(r"launching: \S+ -m torch.distributed.run --nproc_per_node=2 --standalone --nnodes=1 ", text)
    assert "2 process(es) on cpu" in text
    history = pd.read_csv(tmp_path / "run" / "results" / "models" / "imagenet" / "corruption_f0.0_s0" / "history.csv")
    assert history["step"].tolist() == [2, 4]

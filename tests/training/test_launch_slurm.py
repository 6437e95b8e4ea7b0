"""Multi-node launch (singledir.training.distributed.launch) in exactly the environment the
SLURM job-step plugin leaves an `mpi` job: every SLURM_* variable removed except the job-id
ones (read from the installed plugin's source, so a plugin upgrade that changes the list
shows up here). One machine cannot show two nodes, so `scontrol` and `srun` are fakes on
PATH: scontrol answers like a real one for a 2-node job, srun records its argv and env and
exits 0. The launch runs for real up to that exec."""
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import snakemake_executor_plugin_slurm_jobstep as jobstep_plugin
from singledir.training.distributed import launch_command, slurm_job_hosts, write_job

REPO = Path(__file__).resolve().parents[2]
JOB_ID = "4242"
NODELIST = "gpu[07-08]"

# What sbatch gives a 2-node job with 8 GPUs and 64 CPUs per node (a real job has more).
SBATCH_ENV = {
    "SLURM_JOB_ID": JOB_ID, "SLURM_JOBID": JOB_ID, "SLURM_JOB_NODELIST": NODELIST, "SLURM_NODELIST": NODELIST,
    "SLURM_NNODES": "2", "SLURM_JOB_NUM_NODES": "2", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "64",
    "SLURM_GPUS_ON_NODE": "8", "SLURM_JOB_GPUS": "0,1,2,3,4,5,6,7", "SLURM_TASKS_PER_NODE": "1(x2)",
    "SLURM_CLUSTER_NAME": "hpc", "SLURM_SUBMIT_DIR": "/home/me/singledir", "SLURM_SUBMIT_HOST": "login1",
    "SLURM_NODEID": "0", "SLURM_PROCID": "0", "SLURM_STEP_ID": "4294967291",
    "SRUN_CPUS_PER_TASK": "64", "SBATCH_GRES": "gpu:8",
    "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7",
}


def plugin_keeps() -> set[str]:
    """The SLURM_* variables the installed job-step plugin keeps (its `keep_slurm` set)."""
    source = Path(jobstep_plugin.__file__).read_text()
    found = re.search(r"keep_slurm = (\{.*?\})", source, re.S)
    assert found, "the job-step plugin no longer has a keep_slurm set: re-read how it builds the job's env"
    assert "if var.startswith(\"SLURM_\") and var not in keep_slurm" in source
    return set(ast.literal_eval(found.group(1)))


def plugin_env(full: dict) -> dict:
    """`full` as the plugin's Popen gets it: its own filter, as written in its source."""
    keep = plugin_keeps()
    return {k: v for k, v in full.items()
            if not (k.startswith("SLURM_") and k not in keep) and not k.startswith(("SRUN_", "SBATCH_"))}


def fake_slurm_bin(tmp_path) -> Path:
    """scontrol and srun for a 2-node job, logging their calls under tmp_path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"""#!/bin/sh
echo "$*" >> {tmp_path}/scontrol.calls
if [ "$1 $2 $3" = "show job {JOB_ID}" ]; then
cat <<EOF
JobId={JOB_ID} JobName=snakejob.train_model
   UserId=me(1000) GroupId=me(1000) MCS_label=N/A
   JobState=RUNNING Reason=None Dependency=(null)
   NumNodes=2 NumCPUs=128 NumTasks=2 CPUs/Task=64 ReqB:S:C:T=0:0:*:*
   ReqNodeList=(null) ExcNodeList=(null)
   NodeList={NODELIST}
   BatchHost=gpu07
   TresPerNode=gres:gpu:8
EOF
elif [ "$1 $2 $3" = "show hostnames {NODELIST}" ]; then
printf 'gpu07\\ngpu08\\n'
else
echo "scontrol: unexpected call: $*" >&2; exit 1
fi
""")
    (bin_dir / "srun").write_text(f"""#!{sys.executable}
import json, os, sys
json.dump({{"argv": sys.argv[1:], "env": dict(os.environ)}}, open({str(tmp_path / 'srun.json')!r}, "w"))
""")
    for exe in ("scontrol", "srun"):
        (bin_dir / exe).chmod(0o755)
    return bin_dir


def _job(tmp_path, device="cpu"):
    return write_job({"id": "resnet50_s0", "device": device, "work_dir": str(tmp_path / "work"),
                      "run": {"threads": 64, "gpus_per_node": 8, "nodes": 2}}, tmp_path / "job.json")


def test_the_plugin_strips_the_node_list_that_the_old_launch_read():
    env = plugin_env({**SBATCH_ENV, "PATH": "/usr/bin"})
    assert "SLURM_JOB_NODELIST" not in env and "SLURM_NODELIST" not in env and "SRUN_CPUS_PER_TASK" not in env
    assert env["SLURM_JOB_ID"] == JOB_ID and env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7"


def test_two_node_launch_in_the_plugins_environment_runs_one_torchrun_per_node(tmp_path):
    bin_dir = fake_slurm_bin(tmp_path)
    job = _job(tmp_path)
    env = plugin_env({**SBATCH_ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}",
                      "PYTHONPATH": str(REPO / "src"), "HOME": str(tmp_path)})
    # the real launch, in a process with only the plugin's environment, up to srun's exec
    code = "import sys; from singledir.training.distributed import launch; launch(sys.argv[1], 2, 8)"
    done = subprocess.run([sys.executable, "-c", code, str(job)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    srun = json.loads((tmp_path / "srun.json").read_text())
    assert srun["argv"] == [
        f"--jobid={JOB_ID}", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1", "--nodelist=gpu07,gpu08",
        "--cpus-per-task=64", "--kill-on-bad-exit=1",
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=8",
        "--nnodes=2", "--rdzv_backend=c10d", "--rdzv_endpoint=gpu07:29400", f"--rdzv_id={JOB_ID}",
        "-m", "singledir.training.distributed", str(job)]
    # the node list came from the job itself, through scontrol
    assert (tmp_path / "scontrol.calls").read_text().splitlines() == [f"show job {JOB_ID}",
                                                                      f"show hostnames {NODELIST}"]
    # srun got the job's id and the workers' settings, and nothing of the stripped step settings
    assert srun["env"]["SLURM_JOB_ID"] == JOB_ID and srun["env"]["PET_SHUTDOWN_TIMEOUT"] == "300"
    assert not any(k in srun["env"] for k in ("SLURM_JOB_NODELIST", "SLURM_CPUS_PER_TASK", "SRUN_CPUS_PER_TASK"))
    assert "launching: srun --jobid=4242 --nodes=2" in done.stdout


def test_a_full_sbatch_environment_still_uses_its_node_list(tmp_path):
    bin_dir = fake_slurm_bin(tmp_path)
    env = {**SBATCH_ENV, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    cmd = launch_command("job.json", 2, 4, env=env)
    assert "--rdzv_endpoint=gpu07:29400" in cmd and "--nodelist=gpu07,gpu08" in cmd
    assert (tmp_path / "scontrol.calls").read_text().splitlines() == [f"show hostnames {NODELIST}"]


def test_one_node_is_torchrun_standalone_without_slurm(tmp_path):
    cmd = launch_command("job.json", 1, 8, env={})
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=8", "--standalone"]
    assert "srun" not in cmd


def test_launch_errors_name_the_cause(tmp_path):
    bin_dir = fake_slurm_bin(tmp_path)
    path = f"{bin_dir}:{os.environ['PATH']}"
    with pytest.raises(RuntimeError, match=r"train.nodes = 2 needs a SLURM job of 2 nodes, and here no SLURM job"):
        launch_command("job.json", 2, 8, env={"PATH": path})
    # the job holds 2 nodes, the config asks for 3
    with pytest.raises(RuntimeError, match=r"train.nodes = 3, but this SLURM job holds 2 node\(s\) \(gpu07,gpu08\)"):
        launch_command("job.json", 3, 8, env=plugin_env({**SBATCH_ENV, "PATH": path}))
    # scontrol refuses (a job id the controller does not know)
    with pytest.raises(RuntimeError, match=r"`scontrol show job 99` failed \(1\): scontrol: unexpected call"):
        slurm_job_hosts({"SLURM_JOB_ID": "99", "PATH": path})
    with pytest.raises(RuntimeError, match="scontrol is not on PATH"):
        slurm_job_hosts({"SLURM_JOB_ID": JOB_ID, "PATH": str(tmp_path / "empty")})

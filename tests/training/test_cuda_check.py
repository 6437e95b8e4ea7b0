"""A job granted a GPU never falls back to the CPU (singledir.training.cuda_check): it stops
at its start with one line naming the cause. torch.cuda.is_available is mocked, the
environment is given explicitly, and nvidia-smi is a fake on PATH."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from singledir.training.cuda_check import CudaUnusable, resolve_device, why_cuda_unusable
from singledir.training.distributed import init_distributed, write_job

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")


def smi_dir(tmp_path, stdout="", code=0, stderr="") -> str:
    """A directory with a fake nvidia-smi that prints ``stdout`` for the driver query."""
    d = tmp_path / f"smi{len(list(tmp_path.glob('smi*')))}"
    d.mkdir()
    (d / "nvidia-smi").write_text(f"""#!/bin/sh
[ "$*" = "--query-gpu=driver_version --format=csv,noheader" ] || {{ echo "unexpected: $*" >&2; exit 9; }}
printf '{stdout}'
printf '{stderr}' >&2
exit {code}
""")
    (d / "nvidia-smi").chmod(0o755)
    return str(d)


def granted(path, **more):
    """A SLURM job's environment, granted one GPU (what setup_torch(gpus=1) records)."""
    return {"SINGLEDIR_GRANTED_GPUS": "1", "SLURM_JOB_ID": "7", "PATH": str(path), **more}


def stop_line(env):
    with pytest.raises(CudaUnusable) as err:
        resolve_device("auto", env)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("this job was granted 1 GPU(s) (its gpu resource) but torch cannot use CUDA: ")
    assert message.endswith("(set device: cpu in the config to use the CPU on purpose)")
    return message


def test_an_empty_or_minus_one_cuda_visible_devices_is_named(no_cuda, tmp_path):
    for value in ("", "-1", "-1,0", "NoDevFiles"):
        msg = stop_line(granted(smi_dir(tmp_path, "580.65.06\\n"), CUDA_VISIBLE_DEVICES=value))
        assert f"CUDA_VISIBLE_DEVICES={value!r} hides every GPU" in msg


def test_a_cpu_only_torch_build_is_named(no_cuda, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.version, "cuda", None)
    msg = stop_line(granted(smi_dir(tmp_path, "580.65.06\\n"), CUDA_VISIBLE_DEVICES="0"))
    assert f"torch {torch.__version__} is a CPU-only torch build" in msg


def test_no_nvidia_smi_is_named(no_cuda, tmp_path):
    (tmp_path / "empty").mkdir()
    msg = stop_line(granted(tmp_path / "empty", CUDA_VISIBLE_DEVICES="0"))
    assert "torch is built for CUDA 13.0, and" in msg and "has no nvidia-smi on PATH (no NVIDIA driver)" in msg


def test_a_driver_older_than_torchs_cuda_is_named_with_both_versions(no_cuda, tmp_path):
    msg = stop_line(granted(smi_dir(tmp_path, "535.104.05\\n535.104.05\\n"), CUDA_VISIBLE_DEVICES="0,1"))
    assert (f"torch {torch.__version__} is built for CUDA 13.0, which needs an NVIDIA driver >= 580.65.06, "
            "and the driver on") in msg
    assert msg.split("the driver on ")[1].split(" is ")[1].startswith("535.104.05;")


def test_a_failing_nvidia_smi_is_named(no_cuda, tmp_path):
    msg = stop_line(granted(smi_dir(tmp_path, "Failed to initialize NVML: Driver/library version mismatch\\n",
                                    code=18)))
    assert "nvidia-smi fails on" in msg and "Failed to initialize NVML: Driver/library version mismatch" in msg


def test_a_new_enough_driver_says_so_and_passes_on_torchs_warning(no_cuda, tmp_path):
    env = granted(smi_dir(tmp_path, "580.82.07\\n"), CUDA_VISIBLE_DEVICES="0")
    assert why_cuda_unusable(env, torch_warning="CUDA initialization: unknown error") == (
        f"torch is built for CUDA 13.0 and the NVIDIA driver on {os.uname().nodename} is 580.82.07, yet torch "
        "finds no usable GPU (torch: CUDA initialization: unknown error)")
    assert "is 580.82.07, yet torch finds no usable GPU" in stop_line(env)


def test_where_no_gpu_was_granted_auto_still_means_the_cpu(no_cuda, tmp_path):
    (tmp_path / "empty").mkdir()
    laptop = {"PATH": str(tmp_path / "empty")}
    assert resolve_device("auto", {**laptop, "SINGLEDIR_GRANTED_GPUS": "1"}).type == "cpu"  # no GPU setup here
    assert resolve_device("auto", {**laptop, "SLURM_JOB_ID": "7"}).type == "cpu"  # a CPU job on a cluster
    assert resolve_device("auto", granted(tmp_path / "empty", SINGLEDIR_GRANTED_GPUS="0")).type == "cpu"
    assert resolve_device("cpu", granted(tmp_path / "empty")).type == "cpu"
    # a machine with nvidia-smi counts as a GPU host even without a scheduler
    with pytest.raises(CudaUnusable, match="nvidia-smi fails"):
        resolve_device("auto", {"SINGLEDIR_GRANTED_GPUS": "1", "PATH": smi_dir(tmp_path, "", code=9)})


def test_device_cuda_without_cuda_names_the_cause_too(no_cuda, tmp_path):
    with pytest.raises(CudaUnusable, match=r"^device: cuda, but torch cannot use CUDA: CUDA_VISIBLE_DEVICES='' "):
        resolve_device("cuda", {"CUDA_VISIBLE_DEVICES": "", "PATH": str(tmp_path)})


def test_the_test_cluster_switch_falls_back_with_a_log_line(no_cuda, tmp_path):
    said = []
    env = granted(tmp_path, CUDA_VISIBLE_DEVICES="0", SINGLEDIR_ALLOW_CPU_FALLBACK="1")
    assert resolve_device("auto", env, log=said.append).type == "cpu"
    assert said and "training on the CPU because SINGLEDIR_ALLOW_CPU_FALLBACK=1" in said[0]


def test_a_usable_gpu_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", granted(tmp_path)).type == "cuda"


# The distributed path: torchrun's workers inherit the grant and check it as well.

def test_a_torchrun_worker_of_a_granted_job_stops(no_cuda, monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    for k, v in granted(tmp_path / "empty", CUDA_VISIBLE_DEVICES="0", LOCAL_RANK="3", WORLD_SIZE="16").items():
        monkeypatch.setenv(k, v)
    with pytest.raises(CudaUnusable, match="has no nvidia-smi on PATH"):
        init_distributed("auto")


def test_the_worker_entry_and_the_launcher_stop_with_the_one_line(tmp_path):
    """`python -m singledir.training.distributed JOB` (what torchrun starts on every GPU)
    and launch() (before starting torchrun), in a SLURM job granted a GPU whose torch
    cannot use CUDA (this machine has none)."""
    if torch.cuda.is_available():
        pytest.skip("CUDA works here")
    (tmp_path / "bin").mkdir()
    job = write_job({"id": "r", "device": "auto", "work_dir": str(tmp_path / "work"), "run": {"threads": 2}},
                    tmp_path / "job.json")
    env = {**granted(f"{tmp_path / 'bin'}:/usr/bin:/bin", CUDA_VISIBLE_DEVICES="0"),
           "PYTHONPATH": str(REPO / "src"), "HOME": str(tmp_path)}
    worker = subprocess.run([sys.executable, "-m", "singledir.training.distributed", str(job)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert worker.returncode != 0
    last = worker.stderr.strip().splitlines()[-1]
    assert last.startswith("singledir.training.cuda_check.CudaUnusable: this job was granted 1 GPU(s)"), last
    code = "import sys; from singledir.training.distributed import launch; launch(sys.argv[1], 1, 8)"
    head = subprocess.run([sys.executable, "-c", code, str(job)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert head.returncode != 0 and "CudaUnusable: this job was granted 1 GPU(s)" in head.stderr
    assert "launching" not in head.stdout  # stopped before torchrun started 8 workers

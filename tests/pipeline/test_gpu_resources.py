"""The GPUs a profile grants the training jobs against the GPUs their config trains on
(singledir.pipeline.gpu_resources), the multi-node resources of a training rule, and the
grant a workflow script records for the CUDA check (singledir.pipeline.runtime)."""
import copy
import os

import pytest
import torch

from conftest import REPO, load_yaml
from singledir.pipeline import runtime
from singledir.pipeline.gpu_resources import (check_training_gpus, granted_gpus, gres_gpus,
                                              training_gpu_resources)
from singledir.training.cuda_check import CudaUnusable

PAPER = load_yaml(REPO / "config" / "config.yaml")
TRAINED = [("mnist", "corruption"), ("imagenet", "corruption")]


def test_gres_and_granted_gpus():
    assert [gres_gpus(g) for g in ("gpu:8", "gpu:a100:4", "gpu", "shard:2,gpu:2", "", None, "gpu:a100")] == \
        [8, 4, 1, 2, 0, 0, 1]
    assert granted_gpus({"gpu": 8}) == 8 and granted_gpus({"gpus": 2}) == 2
    assert granted_gpus({"gpu": 0, "gres": "gpu:8", "nodes": 4}) == 32
    assert granted_gpus({"gres": "gpu:8"}) == 8 and granted_gpus({}) == 0


def test_several_nodes_make_an_mpi_job_with_gpus_per_node():
    one = training_gpu_resources(1, 8)
    assert one["gpu"] == 8 and one["nodes"] == 1 and one["mpi"] is None and one["gres"] is None
    four = training_gpu_resources(4, 32)
    assert four == {"gpu": None, "nodes": 4, "mpi": "srun", "tasks": 4, "tasks_per_gpu": 0, "gres": "gpu:8"}
    assert granted_gpus({k: v for k, v in four.items() if v is not None}) == 32


def test_the_paper_config_and_its_own_resources_agree():
    check_training_gpus(PAPER, TRAINED, {}, None)
    check_training_gpus(PAPER, TRAINED, {"runtime": 60}, 8)  # other overrides; a machine with 8 GPUs


def test_a_profile_granting_fewer_gpus_than_the_config_trains_on_stops_with_both_numbers():
    with pytest.raises(ValueError) as err:
        check_training_gpus(PAPER, TRAINED, {"gpu": 1}, None)
    msg = str(err.value)
    assert msg == ("the profile's set-resources train_model (gpu: 1) grants 1 GPU(s), but families.imagenet "
                   "(experiment corruption) trains on nodes x gpus_per_node = 1 x 8 = 8 GPU(s): remove gpu from "
                   "set-resources train_model in the profile (the rule asks for the config's GPUs itself), or set "
                   "train.gpus_per_node / train.nodes of families.imagenet (experiment corruption) in the config "
                   "to match")
    # the old multi-node recipe (gres for every family's train_model) gives MNIST 8 GPUs
    with pytest.raises(ValueError, match=r"\(gpu: 0, gres: gpu:8\) grants 8 GPU\(s\), but families.mnist "
                                         r"\(experiment corruption\) trains on nodes x gpus_per_node = 1 x 1 = 1"):
        check_training_gpus(PAPER, TRAINED, {"mpi": "srun", "tasks": 2, "gpu": 0, "gres": "gpu:8"}, None)


def test_a_gpu_granted_to_a_cpu_run_is_a_mismatch_too():
    cfg = copy.deepcopy(PAPER)
    cfg["device"] = "cpu"
    with pytest.raises(ValueError, match=r"grants 1 GPU\(s\), but families.mnist \(experiment corruption\) trains "
                                         r"on the CPU \(device: cpu\)"):
        check_training_gpus(cfg, TRAINED, {"gpu": 1}, None)


def test_a_local_gpu_limit_below_one_jobs_need_stops():
    with pytest.raises(ValueError) as err:
        check_training_gpus(PAPER, TRAINED, {}, 1)
    assert str(err.value) == (
        "families.imagenet (experiment corruption) trains on nodes x gpus_per_node = 1 x 8 = 8 GPU(s), but the "
        "profile's resources: gpu: 1 lets no job hold more than 1 (Snakemake would run it on 1 GPU(s) with 8 "
        "processes): set resources: gpu to this machine's GPU count (profiles/local-gpu/config.yaml), or "
        "train.gpus_per_node of families.imagenet (experiment corruption) in the config to at most 1")


def test_a_script_records_its_grant_and_then_never_falls_back_to_the_cpu(monkeypatch, tmp_path):
    """setup_torch(gpus=...) (every GPU script's first call) records the grant; pick_device
    then stops where CUDA is unusable: here SLURM gave the job no device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(runtime, "configure_torch", lambda *a, **k: None)
    monkeypatch.delenv("SINGLEDIR_GRANTED_GPUS", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "12")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    runtime.setup_torch(1, gpus=0)
    assert runtime.pick_device("auto").type == "cpu"  # no gpu resource: the config's auto decides
    runtime.setup_torch(1, gpus=2)
    assert os.environ["SINGLEDIR_GRANTED_GPUS"] == "2"
    with pytest.raises(CudaUnusable, match=r"granted 2 GPU\(s\) .* CUDA_VISIBLE_DEVICES='' hides every GPU"):
        runtime.pick_device("auto")


def test_the_slurm_plugins_submit_a_multi_node_training_job_as_one_mpi_job_of_n_nodes():
    """What the installed SLURM plugin makes of the rule's resources for nodes: 2 x 8 GPUs:
    2 nodes, one task each, 8 GPUs per node (gres), no whole-job --gpus; and the job-step
    plugin runs an `mpi` job in the batch step (no srun of its own)."""
    submit = pytest.importorskip("snakemake_executor_plugin_slurm.submit_string")
    utils = pytest.importorskip("snakemake_executor_plugin_slurm.utils")

    class Resources(dict):
        __getattr__ = dict.__getitem__

    own = {k: v for k, v in training_gpu_resources(2, 16).items() if v is not None}
    job = type("Job", (), {"resources": Resources(own, cpus_per_task=64, runtime=4320, mem_mb=64000),
                           "threads": 64, "name": "train_model", "is_group": lambda self: False})()
    params = dict(run_uuid="u", slurm_logfile="log", comment_str="c", account="", partition="-p gpu", workdir="/w")
    sbatch = (submit.get_submit_command(job, params) + utils.set_gres_string(job)).split()
    assert {"--nodes=2", "--ntasks=2", "--cpus-per-task=64", "--gres=gpu:8"} <= set(sbatch)
    assert not [a for a in sbatch if a.startswith(("--gpus", "--ntasks-per-gpu"))], sbatch
    assert "mpi" in job.resources.keys()  # the job-step plugin's test for its mpi path


def test_a_slurm_job_never_claims_a_device_of_the_node(monkeypatch, tmp_path):
    """In a SLURM job SLURM chose the devices: a multi-node job's gres GPUs (16 over 2 nodes)
    are no claim of 16 of this node's 8, and no lock is taken."""
    from singledir.pipeline.gpu import claim_gpus

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(RuntimeError, match="asks for 16 GPUs"):
        claim_gpus(16, count=8, lock_dir=tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    said = []
    assert claim_gpus(16, count=8, lock_dir=tmp_path, log=said.append) is None
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and not list(tmp_path.glob("gpu*.lock"))
    assert said == ["GPU: a SLURM job without CUDA_VISIBLE_DEVICES; using the devices SLURM gives it"]

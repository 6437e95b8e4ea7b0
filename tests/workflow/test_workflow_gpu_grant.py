"""The GPUs a profile grants the training rules against the config's nodes x gpus_per_node,
through real `snakemake -n` dry runs (what a user types): a profile that gives train_model
1 GPU for 8 training processes, and a local-gpu profile whose machine has fewer GPUs than one
job needs, stop the parse with one line naming both numbers; several nodes become one mpi
job with gres GPUs per node."""
import pytest

from conftest import REPO, load_yaml, write_yaml
from workflow_runs import snakemake

pytestmark = pytest.mark.slow

MODEL = "results/models/imagenet/corruption_f0.0_s0/model.pt"


def standin_config(tmp_path, **train) -> str:
    """The demo's image-folder stand-in alone, training on `train` (nodes, gpus_per_node)."""
    cfg = load_yaml(REPO / "config" / "demo.yaml")
    for name, fam in cfg["families"].items():
        fam["enabled"] = name == "imagenet"
    cfg["device"] = "auto"
    cfg["families"]["imagenet"]["train"].update(workers=16, **train)
    return str(write_yaml(cfg, tmp_path / "standin.yaml"))


def profile(tmp_path, name, **settings) -> str:
    (tmp_path / name).mkdir()
    write_yaml(settings, tmp_path / name / "config.yaml")
    return str(tmp_path / name)


def error_line(proc) -> str:
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-2000:]
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("ValueError in file"))
    return lines[at + 1]


def test_a_profile_granting_one_gpu_to_eight_processes_stops_the_dry_run(tmp_path):
    cfg = standin_config(tmp_path, nodes=1, gpus_per_node=8)
    one_gpu = profile(tmp_path, "one_gpu", **{"set-resources": {"train_model": {"gpu": 1}}})
    proc = snakemake(tmp_path / "run", "-n", MODEL, "--profile", one_gpu, configfile=cfg, check=False)
    assert error_line(proc) == (
        "the profile's set-resources train_model (gpu: 1) grants 1 GPU(s), but families.imagenet (experiment "
        "corruption) trains on nodes x gpus_per_node = 1 x 8 = 8 GPU(s): remove gpu from set-resources train_model "
        "in the profile (the rule asks for the config's GPUs itself), or set train.gpus_per_node / train.nodes of "
        "families.imagenet (experiment corruption) in the config to match")

    # profiles/local-gpu as shipped (resources: gpu: 1, "EDIT" to this machine's count)
    proc = snakemake(tmp_path / "run", "-n", MODEL, "--profile", REPO / "profiles" / "local-gpu", configfile=cfg,
                     check=False)
    assert error_line(proc).startswith(
        "families.imagenet (experiment corruption) trains on nodes x gpus_per_node = 1 x 8 = 8 GPU(s), but the "
        "profile's resources: gpu: 1 lets no job hold more than 1 ")

    # the same config without the override plans the job, asking for its 8 GPUs itself
    proc = snakemake(tmp_path / "run", "-n", MODEL, configfile=cfg)
    job = proc.stdout.split("rule train_model:")[1]
    assert "gpu=8, nodes=1," in job.split("resources:")[1].splitlines()[0]


def test_several_nodes_plan_one_mpi_job_with_gpus_per_node(tmp_path):
    cfg = standin_config(tmp_path, nodes=2, gpus_per_node=8)
    proc = snakemake(tmp_path / "run", "-n", MODEL, configfile=cfg)
    resources = proc.stdout.split("rule train_model:")[1].split("resources:")[1].splitlines()[0]
    assert "nodes=2, mpi=srun, tasks=2, tasks_per_gpu=0, gres=gpu:8," in resources
    assert not [r for r in resources.split(", ") if r.startswith("gpu=")]  # no whole-job --gpus

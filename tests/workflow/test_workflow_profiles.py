"""Execution profiles (profiles/<name>/config.yaml) and the per-job GPU assignment of
profiles/local-gpu (singledir.pipeline.gpu)."""
import os
import re
import subprocess
import sys
import textwrap
import time
from importlib.metadata import version

import pytest
import yaml
from packaging.version import Version

from conftest import REPO, write_yaml
from workflow_runs import gpu_rules, snakemake, tiny_config, workflow_rules

PROFILES = REPO / "profiles"
# Flags the SLURM plugin sets from resources; slurm_extra must never carry them.
MANAGED_FLAGS = ["--gres", "--gpus", "-G", "--mem", "--time", "-t ", "--cpus-per", "--ntasks", "--constraint",
                 "--partition", "-p ", "--account", "-A ", "--nodes", "-N "]


def profile(name) -> dict:
    with open(PROFILES / name / "config.yaml") as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    return workflow_rules(tmp_path_factory.mktemp("rules"))


@pytest.mark.parametrize("name", ["local", "local-gpu", "slurm"])
def test_every_profile_states_its_scheduler_and_resumes(name):
    p = profile(name)
    assert p["scheduler"] in ("greedy", "ilp"), f"profiles/{name}: scheduler must be explicit"
    if p["scheduler"] == "ilp":
        import pulp
        solver = p.get("scheduler-ilp-solver")
        assert solver in pulp.listSolvers(onlyAvailable=True), f"profiles/{name}: ILP solver {solver} not present"
    assert p["rerun-incomplete"] is True
    assert p["keep-going"] is True
    assert p["printshellcmds"] is True
    assert p["show-failed-logs"] is True


def test_local_profile_uses_all_cores_and_no_gpus():
    p = profile("local")
    assert p["cores"] == "all"
    assert "gpu" not in str(p.get("resources", "")) and "set-resources" not in p


TRAINING_RULES = ("train_model", "train_group_")  # they ask for their GPUs themselves, from the config


def _analysis_gpu_rules(rules):
    return [n for n in gpu_rules(rules) if not n.startswith(TRAINING_RULES + ("beyond_probes_group_",))]


def test_gpu_rules_declare_no_gpu_themselves(rules):
    """The demo must run on CPU with profiles/local: only the GPU profiles add gpu=1 to the
    analysis rules; the training rules compute theirs from the config (none with device: cpu)."""
    names = gpu_rules(rules)
    assert {"train_model", "ablation_curve", "noise_curve", "unit_analysis", "training_auc"} <= set(names)
    for r in rules:
        if r["name"] in names and not r["name"].startswith(TRAINING_RULES):
            assert "gpu" not in r["resources"], f"rule {r['name']} declares gpu itself"
        if r["name"].startswith(TRAINING_RULES):
            assert {"gpu", "runtime", "mem_mb"} <= set(r["resources"]), r["name"]


def test_gpu_profiles_give_every_gpu_rule_one_gpu(rules):
    # Probe groups (beyond_probes_group_*), made in loops from the config, inherit
    # beyond_probes' profile resources; test_profiles_dry_run_gpu_resources checks them.
    names = _analysis_gpu_rules(rules)
    local_gpu, slurm = profile("local-gpu"), profile("slurm")
    assert int(local_gpu["resources"]["gpu"]) >= 1
    own = {r["name"]: set(r["resources"]) for r in rules}
    for name in names:
        assert local_gpu["set-resources"][name]["gpu"] == 1, f"profiles/local-gpu: {name} needs gpu: 1"
        res = slurm["set-resources"][name]
        assert res["gpu"] == 1, f"profiles/slurm: {name}"
        for key in ("runtime", "mem_mb"):  # from the profile, or the rule's own (family-dependent)
            assert res.get(key, 0) > 0 or key in own[name], f"profiles/slurm: {name} has no {key}"
    for r in rules:  # only analysis GPU rules get GPUs from a profile; training asks itself
        for prof in (local_gpu, slurm):
            if r["name"] not in names:
                assert "gpu" not in prof["set-resources"].get(r["name"], {}), r["name"]
    for name in set(local_gpu["set-resources"]) | set(slurm["set-resources"]):
        assert name in {r["name"] for r in rules}, f"a profile sets resources of unknown rule {name}"


def test_gpu_rule_scripts_claim_their_gpus(rules):
    """Each GPU job's script hands its gpu resource to setup_torch (singledir.pipeline.gpu), itself or
    through open_model_job, which hands it on; training hands on what its resources grant
    (gpu_resources.granted_gpus: the gpu resource, or gres GPUs per node x nodes for an mpi job)."""
    from workflow_runs import script_path
    jobs = (REPO / "src" / "singledir" / "pipeline" / "jobs.py").read_text()
    assert re.search(r"setup_torch\(\w+, gpus=gpus\)", jobs), "open_model_job must hand gpus to setup_torch"
    for r in rules:
        if r["name"] in gpu_rules(rules):
            text = script_path(r).read_text()
            assert re.search(r"(setup_torch|open_model_job)\([^)]*gpus=(\w+\.resources\.get\(\"gpu\", 0\)"
                             r"|granted_gpus\(\w+\.resources\))", text), r["name"]


def test_figure_and_table_rules_are_local(rules):
    for r in rules:
        if any(o.endswith((".pdf", ".html", ".md")) for o in r["output"]) or r["name"].endswith("stats_table"):
            assert r["local"], f"rule {r['name']} draws a figure or table: make it `localrule: True`"
    assert not any(r["local"] for r in rules if r["name"] in gpu_rules(rules))


def test_slurm_profile():
    assert Version(version("snakemake-executor-plugin-slurm")) >= Version("2.7")
    p = profile("slurm")
    assert p["executor"] == "slurm"
    assert p["jobs"] >= 1
    assert p["retries"] >= 1
    d = p["default-resources"]
    assert {"slurm_partition", "runtime", "mem_mb", "cpus_per_task"} <= set(d)
    text = (PROFILES / "slurm" / "config.yaml").read_text()
    assert "EDIT" in text and "slurm_account" in text and "gpu_model" in text
    extras = [str(v.get("slurm_extra", "")) for v in p["set-resources"].values()] + [str(d.get("slurm_extra", ""))]
    for extra in extras:
        for flag in MANAGED_FLAGS:
            assert flag not in extra + " ", f"slurm_extra must not carry {flag}: use resources"


def _resources_of(proc, rule):
    blocks = re.findall(rf"\n(?:local)?rule {rule}:\n(.*?)\n\n", proc.stdout + proc.stderr + "\n\n", re.S)
    assert blocks, f"no {rule} job planned"
    return [re.search(r"resources: (.*)", b).group(1) for b in blocks]


@pytest.mark.slow
def test_profiles_dry_run_gpu_resources(tmp_path):
    """Snakemake reads the profiles: gpu=1 on analysis jobs with local-gpu only; training
    jobs (fused groups included) ask for train.nodes x train.gpus_per_node GPUs whatever
    the profile, and for none with device: cpu."""
    config = tiny_config()
    config["families"]["mnist"]["experiments"]["corruption"]["fuse"] = 2
    cfg = write_yaml(config, tmp_path / "tiny.yaml")
    targets = ["results/fig1_mnist.pdf", "results/fig7_mnist.pdf"]
    cpu = snakemake(tmp_path, "-n", *targets, "--profile", PROFILES / "local", configfile=cfg)
    gpu = snakemake(tmp_path, "-n", *targets, "--profile", PROFILES / "local-gpu", configfile=cfg)
    for rule in ("ablation_curve", "unit_analysis"):
        assert all("gpu" not in r for r in _resources_of(cpu, rule))
        assert all(re.search(r"\bgpu=1\b", r) for r in _resources_of(gpu, rule))
    assert all("gpu" not in r for r in _resources_of(gpu, "corrupt_labels"))
    training = ("train_model", "train_group_mnist_corruption_g0")
    for proc in (cpu, gpu):  # the tiny config trains on the CPU (device: cpu)
        for rule in training:
            assert all(re.search(r"\bgpu=0\b", r) for r in _resources_of(proc, rule)), rule
    config["device"] = "auto"
    config["families"]["mnist"]["train"]["gpus_per_node"] = 1
    on_gpu = write_yaml(config, tmp_path / "auto.yaml")
    for prof in ("local", "local-gpu"):
        proc = snakemake(tmp_path, "-n", *targets, "--profile", PROFILES / prof, configfile=on_gpu)
        for rule in training:
            assert all(re.search(r"\bgpu=1\b", r) for r in _resources_of(proc, rule)), (prof, rule)


# --- singledir.pipeline.gpu: one device per running job ------------------------------------------

_CLAIM = textwrap.dedent("""
    import os, sys, time
    from singledir.pipeline.gpu import claim_gpus
    devs = claim_gpus(int(sys.argv[1]), count=int(sys.argv[2]), lock_dir=sys.argv[3],
                      wait_s=float(sys.argv[4]), poll_s=0.05, log=lambda m: None)
    print(os.environ.get("CUDA_VISIBLE_DEVICES", "-"), flush=True)
    sys.stdin.readline()  # hold the claim until the test says so
""")


def _claimer(n, count, lock_dir, wait_s=0.0, env=None):
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    return subprocess.Popen([sys.executable, "-c", _CLAIM, str(n), str(count), str(lock_dir), str(wait_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def test_concurrent_jobs_get_different_devices(tmp_path):
    a = _claimer(1, 3, tmp_path)
    dev_a = a.stdout.readline().strip()
    b = _claimer(2, 3, tmp_path)
    dev_b = b.stdout.readline().strip()
    try:
        assert dev_a == "0"
        assert dev_b == "1,2"  # the two devices A does not hold
        c = _claimer(1, 3, tmp_path)  # all three are taken: no device within wait_s
        _, err = c.communicate(timeout=60)
        assert c.returncode != 0 and "no 1 free GPU(s) of 3" in err
        a.kill()  # SIGKILL: the kernel drops A's lock, a new job gets device 0
        a.wait()
        d = _claimer(1, 3, tmp_path)
        assert d.stdout.readline().strip() == "0"
        d.stdin.close()
        d.wait(timeout=60)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait()


def test_waiting_job_gets_the_device_when_it_is_freed(tmp_path):
    a = _claimer(1, 1, tmp_path)
    assert a.stdout.readline().strip() == "0"
    b = _claimer(1, 1, tmp_path, wait_s=60)
    time.sleep(0.5)
    assert b.poll() is None  # still waiting
    a.stdin.close()
    a.wait(timeout=60)
    assert b.stdout.readline().strip() == "0"
    b.stdin.close()
    b.wait(timeout=60)


def test_scheduler_choice_is_kept(tmp_path):
    """SLURM sets CUDA_VISIBLE_DEVICES for --gpus: no lock, no change."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="3")
    p = _claimer(1, 4, tmp_path, env=env)
    assert p.stdout.readline().strip() == "3"
    p.stdin.close()
    p.wait(timeout=60)
    assert not list(tmp_path.glob("gpu*.lock"))


def test_too_many_gpus_is_a_clear_error(tmp_path, monkeypatch):
    from singledir.pipeline.gpu import claim_gpus
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(RuntimeError, match="asks for 3 GPUs .* has 2; lower set-resources gpu"):
        claim_gpus(3, count=2, lock_dir=tmp_path)
    assert claim_gpus(0, count=2, lock_dir=tmp_path) is None
    assert claim_gpus(1, count=0, lock_dir=tmp_path, log=lambda m: None) is None  # no GPU: config device decides
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


@pytest.mark.slow
def test_local_gpu_profile_gives_concurrent_jobs_their_own_device(tmp_path):
    """Two training jobs that run at the same time under profiles/local-gpu claim two
    different devices (two pretend GPUs: SINGLEDIR_GPU_COUNT=2). The config asks for one GPU
    per training job (device: auto, train.gpus_per_node: 1); torch sees no CUDA here, so the
    jobs train on the CPU with their claimed device numbers (SINGLEDIR_ALLOW_CPU_FALLBACK=1:
    pretend GPUs; a job granted a real one would stop, singledir.training.cuda_check)."""
    cfg = tiny_config()
    cfg["device"] = "auto"
    mn = cfg["families"]["mnist"]
    mn["train"]["gpus_per_node"] = 1
    for name, exp in mn["experiments"].items():
        exp["enabled"] = name == "selectivity"
    # Two models on the same label file, so both jobs become ready at the same moment.
    mn["experiments"]["selectivity"].update(grid={"lr": [0.003, 0.01], "seed": [0]},
                                            train={"epochs": 150, "checkpoint_every": 50})
    cfgfile = write_yaml(cfg, tmp_path / "gpu.yaml")
    locks = tmp_path / "locks"
    env = {"SINGLEDIR_GPU_COUNT": "2", "SINGLEDIR_GPU_LOCK_DIR": str(locks), "SINGLEDIR_GPU_WAIT_S": "600",
           "SINGLEDIR_ALLOW_CPU_FALLBACK": "1"}
    run = tmp_path / "run"
    snakemake(run, "--until", "train_model", "all_figures", "--profile", PROFILES / "local-gpu",
              "--resources", "gpu=2", configfile=cfgfile, env=env)
    logs = sorted((run / "results" / "logs" / "train_model" / "mnist").glob("*.log"))
    assert len(logs) == 2
    claimed, spans = [], []
    for log in logs:
        m = re.search(r"GPU: claimed device\(s\) (\d+)", log.read_text())
        assert m, log.read_text()[:500]
        claimed.append(m.group(1))
        bench = run / "results" / "benchmarks" / "train_model" / "mnist" / log.name.replace(".log", ".tsv")
        seconds = float(bench.read_text().splitlines()[1].split("\t")[0])
        end = (run / "results" / "models" / "mnist" / log.stem / "model.pt").stat().st_mtime
        spans.append((end - seconds, end))
    overlap = min(s[1] for s in spans) - max(s[0] for s in spans)
    assert overlap > 0, f"the two training jobs did not run at the same time: {spans}"
    assert sorted(claimed) == ["0", "1"]

"""Beyond the paper in the workflow: figX1 plans only what it needs; a tiny end-to-end run
writes the four figures, their tidy tables and statistics, and the new claims rows."""

import pandas as pd
import pytest

from conftest import REPO, load_yaml, run_snakemake, tiny_mnist_config, write_yaml
from workflow_runs import planned_jobs

BEYOND = ["probe_stopping", "reg_plain", "reg_dropout", "reg_noise", "reg_reliance", "reg_selectivity"]


def _config(tmp_path):
    demo = load_yaml(REPO / "config" / "demo.yaml")["families"]["mnist"]["experiments"]
    exps = {}
    for name in BEYOND:
        e = dict(demo[name])
        e["train"] = {**e.get("train", {}), "epochs": 4}
        e["grid"] = {**e["grid"], "seed": [0, 1] if name == "probe_stopping" else [0]}
        e["model"] = {"hidden": [16, 16]}
        exps[name] = e
    cfg = tiny_mnist_config(tmp_path, **exps)
    cfg["bootstrap"] = 50
    cfg["families"]["mnist"]["beyond"]["subsets"] = 50
    return write_yaml(cfg, tmp_path / "config.yaml")


def _planned(proc) -> dict:
    jobs, on = {}, False
    for line in proc.stdout.splitlines():
        if line.startswith("job ") and "count" in line:
            on = True
            continue
        if on:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                jobs[parts[0]] = int(parts[1])
            elif parts and parts[0] == "total":
                break
    return jobs


@pytest.mark.slow
@pytest.mark.parametrize("probe_group", [1, 24])
def test_figX1_plans_only_what_it_needs(tmp_path, probe_group):
    cfg = _config(tmp_path)
    c = load_yaml(cfg)
    c["families"]["mnist"]["beyond"]["probe_group"] = probe_group
    proc = run_snakemake(tmp_path, "-n", "results/figX1_mnist.pdf", configfile=write_yaml(c, cfg))
    jobs = _planned(proc)
    # the five clean-label nets of the regularizer grid (the plain and dropout ones train fused
    # with their corrupted twins), probed once each; nothing of Figs. 1-7, X2-X4
    assert jobs["train_model"] == 3 and jobs["figX1"] == 1
    if probe_group == 1:
        assert jobs["beyond_probes"] == 5
    else:
        assert jobs == {**jobs, "beyond_probes_group_mnist_figX1_figX3_figX4_p0": 1} and "beyond_probes" not in jobs
    assert not {"ablation_curve", "noise_curve", "unit_analysis", "figX2", "figX3", "figX4", "claims"} & set(jobs)
    planned_outputs = [l for l in proc.stdout.splitlines() if "output:" in l]
    assert not any("probe_stopping" in l or "_f1.0_a" in l for l in planned_outputs)
    assert sum(l.count("probes.csv") for l in planned_outputs) == 5


@pytest.mark.slow
def test_beyond_end_to_end_tiny(tmp_path):
    cfg = _config(tmp_path)
    run_snakemake(tmp_path, "results/claims.csv", configfile=cfg, timeout=1500)
    res = tmp_path / "results"
    for fig in ("figX1", "figX2", "figX3", "figX4"):
        assert (res / f"{fig}_mnist.pdf").stat().st_size > 1000
        assert len(pd.read_csv(res / f"{fig}_mnist.csv")) > 0
    x1 = pd.read_csv(res / "figX1_mnist.csv").set_index("probe")
    assert list(x1.index) == ["point@0.25", "point@0.5", "point@0.75", "sparse_auc", "full_auc"]
    assert (x1["cost_passes"] < x1.loc["full_auc", "cost_passes"]).sum() == 4
    x2 = pd.read_csv(res / "figX2_mnist.csv")
    assert set(x2["rule"]) >= {"val_loss", "oracle", "final", "full_auc"} and x2["model"].nunique() == 2
    x4 = pd.read_csv(res / "figX4_mnist.csv")
    assert set(x4["condition"]) == {"plain", "dropout 0.2", "ablation_noise 0.5", "reliance 0.5", "selectivity -1"}
    claims = pd.read_csv(res / "claims.csv")
    new = claims[(claims["paper_value"] == "new") & (claims["family"] == "mnist")]
    assert len(new) == 14 and "not run" not in set(new["verdict"])
    assert set(claims[(claims["paper_value"] == "new") & (claims["family"] == "cifar10")]["verdict"]) == {"not run"}
    assert set(new["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
    # 1 + 1 networks: no between-network test can decide
    row = new.set_index("claim_id").loc["X4_ablation_noise_raises_auc_mnist"]
    assert row["verdict"] == "inconclusive" and "too few networks" in row["reason"]


def _record_complete_run(workdir, target, configfile):
    """Mark every job `target` needs as run with this config, without running any: the
    jobs' outputs as empty files, then `--touch` (which records each job's params)."""
    dry = run_snakemake(workdir, "-n", target, configfile=configfile).stdout
    for line in dry.splitlines():
        if line.strip().startswith("output:"):
            for path in line.split(":", 1)[1].split(","):
                (workdir / path.strip()).parent.mkdir(parents=True, exist_ok=True)
                (workdir / path.strip()).touch()
    run_snakemake(workdir, "--touch", "--forceall", target, configfile=configfile)


@pytest.mark.slow
@pytest.mark.parametrize("probe_group", [1, 24])
def test_speed_knobs_rerun_no_probe_job(tmp_path, probe_group):
    """chunk_size, max_rows, method and loader_workers only set speed (singledir.pipeline.params):
    after a run, changing them reruns no probe job (rule beyond_probes, or a probe group)
    and no figure, while a key the probes compute from (orderings) reruns them."""
    cfgfile = _config(tmp_path)
    cfg = load_yaml(cfgfile)
    cfg["families"]["mnist"]["beyond"]["probe_group"] = probe_group
    write_yaml(cfg, cfgfile)
    _record_complete_run(tmp_path, "results/figX1_mnist.pdf", cfgfile)

    def planned(edit):
        changed = load_yaml(cfgfile)
        edit(changed["families"]["mnist"]["analysis"])
        changed_file = write_yaml(changed, tmp_path / "changed.yaml")
        return planned_jobs(run_snakemake(tmp_path, "-n", "results/figX1_mnist.pdf", configfile=changed_file))

    assert planned(lambda a: a.update(chunk_size=7, max_rows=99, method="generic", loader_workers=2)) == {}
    probes = "beyond_probes" if probe_group == 1 else "beyond_probes_group_mnist_figX1_figX3_figX4_p0"
    assert planned(lambda a: a.update(orderings=a["orderings"] + 1)) == {
        probes: 5 if probe_group == 1 else 1, "figX1": 1}

"""Helpers for the tests that run the workflow (profiles, reruns, resume, SLURM): clones
of the repository, Snakemake runs, the jobs a dry run plans, the rules of the parsed
workflow, and one complete run of a tiny demo config shared by the whole session."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO, SNAKEMAKE, require_slow_marker, tiny_mnist_config, write_yaml

PYTHON = sys.executable
_SESSION: dict = {}  # results shared by the tests of one session
CLONED = ["Snakefile", "workflow", "config", "profiles", "envs", "pyproject.toml"]


def clone(dst: Path) -> Path:
    """A copy of the workflow part of the repository (what `git clone` would give)."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in CLONED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dst / name)
    return dst


def tiny_config() -> dict:
    """The demo's MNIST family, cut to two corruption models and one selectivity model
    that train in a few epochs, one job per model (all_figures then draws fig1, fig2,
    fig7, figA4)."""
    cfg = tiny_mnist_config(None,
                            corruption={"grid": {"fraction": [0.0, 1.0], "seed": [0]},
                                        "model": {"hidden": [16, 16]}, "fuse": 1},
                            selectivity={"grid": {"seed": [0]}, "model": {"hidden": [8, 8]}, "fuse": 1})
    cfg["bootstrap"] = 50
    mn = cfg["families"]["mnist"]
    mn["train"].update(epochs=3, checkpoint_every=1)
    mn["analysis"].update(orderings=2, curve_points=5, noise_repeats=2,
                          noise_scales=[0.0, 1.0, 10.0])
    return cfg


def snakemake(workdir, *args, configfile=None, snakefile=None, env=None, check=True, timeout=900,
              cores=2, **popen):
    """Run Snakemake on ``workdir`` (its own Snakefile if it is a clone, else the repo's)."""
    require_slow_marker()
    workdir = Path(workdir)
    if snakefile is None:
        snakefile = workdir / "Snakefile" if (workdir / "Snakefile").exists() else REPO / "Snakefile"
    cmd = [SNAKEMAKE, "-s", str(snakefile), "-d", str(workdir)]
    if cores:
        cmd += ["--cores", str(cores)]
    cmd += [str(a) for a in args]
    if configfile:  # last: --configfile takes several values and would swallow targets
        cmd += ["--configfile", str(configfile)]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    if popen:
        return subprocess.Popen(cmd, env=full_env, text=True, **popen)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(proc) -> dict[str, int]:
    """Rule -> number of jobs, from the 'Job stats' table of a (dry) run; {} if none."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    m = re.search(r"Job stats:\njob\s+count\n[- ]+\n(.*?)\ntotal\s+(\d+)", text, re.S)
    assert m, f"no job stats in the Snakemake output:\n{text[-3000:]}"
    jobs = {}
    for line in m.group(1).splitlines():
        rule, count = line.split()
        jobs[rule] = int(count)
    assert sum(jobs.values()) == int(m.group(2))
    return jobs


_RULES_SCRIPT = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
snakefile, configfile, workdir = sys.argv[1:4]
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                      config_settings=ConfigSettings(configfiles=[Path(configfile)]),
                      snakefile=Path(snakefile), workdir=Path(workdir))._workflow
    local = set(wf._localrules)
    out = []
    for r in wf.rules:
        out.append({
            "name": r.name, "file": str(r.snakefile), "lineno": r.lineno,
            "output": [str(o) for o in r.output], "log": [str(l) for l in r.log],
            "benchmark": str(r.benchmark) if r.benchmark else None,
            "script": str(r.script) if r.script else None, "basedir": str(r.basedir),
            "local": r.name in local or r.norun, "cache": bool(r.cache is not None and r.cache.output),
            "conda": str(r.conda_env) if r.conda_env else None,
            "resources": sorted(k for k in r.resources if k not in ("_cores", "_nodes")),
            "params": sorted(k for k in r.params.keys()),
        })
print("JSON" + json.dumps(out))
"""


def workflow_rules(workdir, configfile=REPO / "config" / "demo.yaml", snakefile=REPO / "Snakefile") -> list[dict]:
    """The rules of the parsed workflow (name, output, log, benchmark, script, local, ...);
    parsed once per session and config."""
    require_slow_marker()
    key = ("rules", str(snakefile), str(configfile))
    if key not in _SESSION:
        _SESSION[key] = _parse_rules(workdir, configfile, snakefile)
    return _SESSION[key]


def _parse_rules(workdir, configfile, snakefile):
    proc = subprocess.run([PYTHON, "-c", _RULES_SCRIPT, str(snakefile), str(configfile), str(workdir)],
                          capture_output=True, text=True, timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")), None)
    assert line, f"could not parse the workflow:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(line[4:])


def script_path(rule: dict) -> Path | None:
    if not rule["script"]:
        return None
    return (Path(rule["basedir"].replace("file://", "")) / rule["script"]).resolve()


def gpu_rules(rules: list[dict]) -> list[str]:
    """Rules whose script picks a torch device (itself, or through
    singledir.pipeline.jobs.open_model_job): the ones that should run on a GPU."""
    names = []
    for r in rules:
        path = script_path(r)
        if path is not None and path.suffix == ".py" and re.search(r"\b(pick_device|open_model_job)\(",
                                                                    path.read_text()):
            names.append(r["name"])
    return names




def complete_tiny_run(tmp_path_factory):
    """A clone with a complete `all_figures` run of :func:`tiny_config` through
    profiles/local, with the between-workflow cache on (shared by the session).
    Returns (clone dir, config file, cache dir)."""
    if "complete" not in _SESSION:
        root = tmp_path_factory.mktemp("tiny_complete")
        work = clone(root / "clone")
        cache = root / "output-cache"
        cache.mkdir()
        cfgfile = write_yaml(tiny_config(), root / "tiny.yaml")
        snakemake(work, "all_figures", "--profile", work / "profiles" / "local", "--cache",
                  configfile=cfgfile, env={"SNAKEMAKE_OUTPUT_CACHE": str(cache)})
        _SESSION["complete"] = (work, cfgfile, cache)
    return _SESSION["complete"]

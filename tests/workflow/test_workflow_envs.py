"""envs/*.yaml: the conda environments of the rules list what pyproject.toml lists."""
import re
import subprocess

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from conftest import REPO

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ENVS = REPO / "envs"
# PyPI name -> conda-forge name, where they differ.
CONDA_NAME = {"torch": "pytorch"}
# Packages an environment needs besides the project's dependencies: the interpreter,
# and pip for the post-deploy script's editable install of the checkout.
EXTRA = {"python", "pip"}


def pyproject_requirements() -> dict[str, SpecifierSet]:
    with open(REPO / "pyproject.toml", "rb") as fh:
        proj = tomllib.load(fh)
    reqs = {}
    for line in proj["project"]["dependencies"] + proj["build-system"]["requires"]:
        req = Requirement(line)
        reqs[CONDA_NAME.get(req.name.lower(), req.name.lower())] = req.specifier
    reqs["python"] = SpecifierSet(proj["project"]["requires-python"])
    return reqs


def conda_dependencies(path) -> dict[str, tuple[SpecifierSet, str | None]]:
    with open(path) as fh:
        env = yaml.safe_load(fh)
    assert set(env) <= {"name", "channels", "dependencies"}, path
    assert "conda-forge" in env["channels"]
    deps = {}
    for dep in env["dependencies"]:
        assert isinstance(dep, str), f"{path.name}: no pip section, the post-deploy script installs the package"
        parts = dep.split()
        name, spec, build = parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else None
        assert re.fullmatch(r"[a-z0-9][a-z0-9_.\-]*", name), dep
        assert name not in deps, f"{path.name}: {name} listed twice"
        deps[name] = (SpecifierSet(spec), build)
    return deps


@pytest.mark.parametrize("env", ["cpu", "cuda"])
def test_env_lists_the_pyproject_packages(env):
    deps = conda_dependencies(ENVS / f"{env}.yaml")
    reqs = pyproject_requirements()
    missing = set(reqs) - set(deps)
    extra = set(deps) - set(reqs) - EXTRA
    assert not missing, f"envs/{env}.yaml lacks {sorted(missing)} (in pyproject.toml)"
    assert not extra, f"envs/{env}.yaml lists {sorted(extra)}, which pyproject.toml does not"
    for name, spec in reqs.items():
        assert deps[name][0] == spec, f"envs/{env}.yaml: {name} {deps[name][0]} != pyproject's {spec}"


def test_cpu_and_cuda_builds_of_pytorch():
    assert conda_dependencies(ENVS / "cpu.yaml")["pytorch"][1] == "cpu_*"
    assert conda_dependencies(ENVS / "cuda.yaml")["pytorch"][1] == "cuda*"


def test_rules_use_the_envs():
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    paths = set(re.findall(r'"(\.\./\.\./envs/[\w.-]+\.yaml)"', common))
    assert {"../../envs/cpu.yaml", "../../envs/cuda.yaml"} <= paths
    for p in paths:
        assert (REPO / "workflow" / "rules" / p).resolve().is_file(), p


@pytest.mark.parametrize("env", ["cpu", "cuda"])
def test_post_deploy_installs_the_checkout(env, tmp_path):
    script = ENVS / f"{env}.post-deploy.sh"
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    assert "pip install --no-deps --no-build-isolation -e" in script.read_text()
    # Not a checkout: one clear error, nothing installed.
    proc = subprocess.run(["bash", script], env={"PATH": "/usr/bin:/bin", "SINGLEDIR_ROOT": str(tmp_path)},
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "is not a singledir checkout" in proc.stderr

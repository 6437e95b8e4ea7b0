"""`snakemake --lint` is clean, and every rule logs and benchmarks its jobs."""
import subprocess

import pytest

from conftest import REPO, SNAKEMAKE
from workflow_runs import workflow_rules


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    return workflow_rules(tmp_path_factory.mktemp("lint_rules"))


@pytest.mark.parametrize("config", ["demo.yaml", "config.yaml"])
def test_snakemake_lint_is_clean(tmp_path, config):
    proc = subprocess.run([SNAKEMAKE, "-s", REPO / "Snakefile", "-d", tmp_path, "--lint",
                           "--configfile", REPO / "config" / config], capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    findings = "\n".join(line for line in out.splitlines() if line.startswith("Lints for") or
                         line.startswith("    * "))
    assert proc.returncode == 0 and not findings, f"snakemake --lint ({config}):\n{findings or out[-3000:]}"
    assert "Congratulations, your workflow is in a good condition!" in out


def test_every_rule_with_outputs_has_log_and_benchmark(rules):
    for r in rules:
        if not r["output"]:
            continue  # target rules (all, all_figures, ...) run nothing
        where = f"rule {r['name']} ({r['file']}:{r['lineno']})"
        assert r["log"], f"{where} has no log:"
        if r["cache"]:
            # Snakemake forbids benchmark: on rules eligible for the between-workflow
            # cache; their script writes the same file (singledir.pipeline.runtime.benchmark_to).
            assert r["benchmark"] is None and "benchmark" in r["params"], f"{where}: params.benchmark"
        else:
            assert r["benchmark"], f"{where} has no benchmark:"
        assert r["conda"], f"{where} has no conda: environment"


def test_training_is_cacheable_between_workflows(rules):
    by_name = {r["name"]: r for r in rules}
    assert by_name["train_model"]["cache"]

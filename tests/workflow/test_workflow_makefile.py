"""The README's set-up commands: `make demo` must hand Snakemake a command line it
parses (targets before --configfile, which takes every word up to the next option)."""
import shlex
import subprocess
import sys

import pytest

from conftest import REPO


def _make_lines(target: str, *args: str) -> list[str]:
    proc = subprocess.run(["make", "-n", "-C", str(REPO), target, *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.replace("\\\n", " ")  # join continued recipe lines
    return [line for line in text.splitlines() if "bin/snakemake " in line]


@pytest.mark.slow
def test_make_demo_runs_a_snakemake_command_that_plans_all_figures(tmp_path):
    (line,) = _make_lines("demo", "SNAKEMAKE_ARGS=-n")
    argv = shlex.split(line)
    assert argv[1] == "all_figures" and argv[-1] == "-n"
    # The very command, with this interpreter's snakemake, as a dry run in the checkout.
    proc = subprocess.run([sys.executable, "-m", "snakemake", *argv[1:], "--directory", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "all_figures" in out and "train_model" in out  # a fresh directory: everything is planned


def test_make_report_commands_put_targets_first():
    lines = _make_lines("report")
    assert len(lines) == 2
    for line in lines:
        argv = shlex.split(line)
        assert argv[1:3] == ["all_figures", "report_pages"], line

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


def test_make_test_keeps_the_longest_first_order_and_reports_the_slowest_tests():
    """pytest-xdist's loadgroup hands out the files with the most tests first unless told
    --no-loadscope-reorder: tests/conftest.py's longest-first order would be lost, and a long
    file of few tests left to the end with the other worker idle. The CI log lists the 25
    slowest tests. Both targets share the worker options."""
    for target, extra in (("test", "--durations=25"), ("test-fast", "not slow")):
        (line,) = [ln for ln in subprocess.run(["make", "-n", "-C", str(REPO), target], capture_output=True,
                                               text=True, timeout=60).stdout.splitlines() if " -m pytest " in ln]
        argv = shlex.split(line)
        assert argv[argv.index("--dist") + 1] == "loadgroup" and "--no-loadscope-reorder" in argv, line
        assert extra in argv, line


def test_the_longest_first_list_names_test_files():
    """tests/conftest.py's order (and worker sharing) goes by file name: a renamed or
    mistyped name would silently send its file to the back of the queue."""
    from conftest import LONGEST_FIRST, SAME_WORKER
    files = {p.stem for p in (REPO / "tests").rglob("test_*.py")}
    assert sorted(set(LONGEST_FIRST) - files) == [] and sorted(set(SAME_WORKER) - files) == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)

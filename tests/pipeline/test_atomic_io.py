"""Atomic output (singledir.io): byte-identical torch files, and no temporary file that
outlives the rerun of a job killed mid-write."""
import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
import torch

from singledir.io import atomic_path, save_csv, save_torch, temp_path_of


def test_identical_weights_give_identical_bytes(tmp_path):
    torch.manual_seed(0)
    state = {"state_dict": torch.nn.Linear(5, 3).state_dict(), "spec": {"id": "m"}, "n_classes": 3}
    save_torch(state, tmp_path / "a" / "model.pt")
    save_torch(state, tmp_path / "b" / "model.pt")
    save_torch(state, tmp_path / "other_name.pt")
    a = (tmp_path / "a" / "model.pt").read_bytes()
    assert a == (tmp_path / "b" / "model.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes()
    assert torch.equal(torch.load(tmp_path / "a" / "model.pt")["state_dict"]["weight"], state["state_dict"]["weight"])
    state["state_dict"]["bias"][0] += 1
    save_torch(state, tmp_path / "b" / "model.pt")
    assert (tmp_path / "b" / "model.pt").read_bytes() != a
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["model.pt"]  # no temporary file left


KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from singledir.io import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        with open(tmp, "w") as fh:
            fh.write("step,loss\\n1,0.5\\n")
            fh.flush()
            os.kill(os.getpid(), signal.SIGKILL)  # mid-write: no cleanup runs
""")


def test_sigkill_mid_write_leaves_a_temp_file_that_the_rerun_reuses(tmp_path):
    out = tmp_path / "results" / "history.csv"
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(out)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    leftover = temp_path_of(out)
    assert leftover.name == ".history.csv.tmp.csv" and leftover.exists()
    # The rerun of the job writes the same output through the same temporary name.
    save_csv(pd.DataFrame({"step": [1, 2], "loss": [0.5, 0.25]}), out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["history.csv"]
    assert pd.read_csv(out)["loss"].tolist() == [0.5, 0.25]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_a_failed_write_leaves_nothing_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "table.csv"
    save_csv(pd.DataFrame({"a": [1]}), out)
    with pytest.raises(ZeroDivisionError):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            1 / 0
    assert out.read_text() == "a\n1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_two_live_writers_of_one_file_are_an_error(tmp_path):
    out = tmp_path / "x.csv"
    with atomic_path(out) as tmp:
        tmp.write_text("first")
        with pytest.raises(RuntimeError, match=r"x\.csv: another live process is writing it"):
            with atomic_path(out):
                pass
    assert out.read_text() == "first"

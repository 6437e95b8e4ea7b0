"""The log file of a workflow job, and one-line summaries of what a job read and wrote.

Torch-free (figure and table jobs import it and should start fast); no Snakemake import:
scripts pass plain values (``dict(snakemake.input.items())``, ``list(snakemake.output)``)."""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None):
    """Send stdout and stderr (Python-level) to ``path`` for the duration. An error that
    ends the block is written to the log too (with its traceback), then raised on, so it
    also reaches the console Snakemake shows."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", buffering=1) as fh, contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        try:
            yield
        except Exception:
            traceback.print_exc(file=fh)
            raise


def _as_list(value) -> list[str]:
    return [str(value)] if isinstance(value, (str, os.PathLike)) else [str(v) for v in value]


def io_summary(inputs: Mapping[str, Sequence[str] | str], outputs: Sequence[str]) -> str:
    """'read curves: 6 files of 6 models; histories: ...\\nwrote a.pdf, a.csv': per named input,
    its file count and the number of distinct models (a file's directory names its model)."""
    parts = []
    for name, files in inputs.items():
        files = _as_list(files)
        models = {Path(f).parent.name for f in files}
        parts.append(f"{name}: {len(files)} files of {len(models)} models")
    return f"read {'; '.join(parts) or 'nothing'}\nwrote {', '.join(_as_list(outputs))}"


def table_summary(stats_csv: str | os.PathLike) -> str:
    """One line per statistic of a statistics table: value, 95 % CI, n and unit, p."""
    import pandas as pd

    table = pd.read_csv(stats_csv)
    lines = [f"{len(table)} statistics in {stats_csv}:"]
    for r in table.itertuples(index=False):
        ci = f" [{r.ci_low:.4g}, {r.ci_high:.4g}]" if pd.notna(r.ci_low) and pd.notna(r.ci_high) else ""
        p = f", p = {r.p:.3g}" if pd.notna(getattr(r, "p", float("nan"))) else ""
        lines.append(f"  {r.statistic} = {r.value:.6g}{ci} (n = {r.n} {r.unit}{p})")
    return "\n".join(lines)

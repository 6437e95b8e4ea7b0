"""Atomic file output: a killed job never leaves a half-written file behind.

Every writer goes to a temporary file in the destination directory and is moved into
place with :func:`os.replace`, which is atomic on POSIX file systems.

The temporary file has a fixed name per destination, ``.<name>.tmp<suffix>`` (e.g.
``.history.csv.tmp.csv``), not a random one: a job killed mid-write (SIGKILL, a node
crash) leaves it behind, and the rerun of that job, which writes the same output,
reuses the name and moves it into place, so no stale temporary file outlives the rerun.
Two live writers of one destination would clash on that name; an exclusive lock on the
temporary file (released by the kernel when its holder dies, even by SIGKILL) makes the
second one fail with a clear error instead.

:func:`brief` shortens the error of a file that does not load to one line, for the
messages of the modules that read such files (models, checkpoints).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import os
from pathlib import Path
from typing import Iterator

import pandas as pd


def temp_path_of(path: str | os.PathLike) -> Path:
    """The temporary file :func:`atomic_path` writes before moving it onto ``path``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_of(path)
    umask = os.umask(0)
    os.umask(umask)
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o666 & ~umask)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RuntimeError(f"{path}: another live process is writing it (it holds {tmp}); "
                               "two jobs must not write the same file") from None
        os.ftruncate(fd, 0)  # a leftover of a killed writer
        # An existing leftover keeps its old mode: give the result the permissions a plain open() would.
        os.fchmod(fd, 0o666 & ~umask)
        try:
            yield tmp
            os.replace(tmp, path)
        finally:
            if tmp.exists() and os.path.samestat(os.stat(tmp), os.fstat(fd)):
                tmp.unlink()
    finally:
        os.close(fd)


def write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def torch_bytes(obj) -> bytes:
    """``torch.save`` of ``obj`` into memory. Saved to a file, torch names the archive's
    top folder after the file, so the bytes would depend on the (temporary) file name;
    in memory the name is always ``archive``: equal objects give equal bytes."""
    import torch  # here, so that jobs writing only tables and figures never import it

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save`` atomically; identical objects give byte-identical files."""
    write_bytes(torch_bytes(obj), path)


def save_csv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save a matplotlib figure atomically (format from the suffix of ``path``)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "pdf", bbox_inches="tight")


def brief(err: BaseException) -> str:
    """An exception as one short line, for messages about a file that does not load
    (torch's load errors run to several sentences)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    first = text.split(". ")[0]
    return f"{type(err).__name__}: {first[:200]}"

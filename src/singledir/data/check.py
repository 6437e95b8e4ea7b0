"""Every check a dataset gets before any cost estimate or training, in one place.

:func:`check_dataset` is what the config check runs at workflow start (and
``python -m singledir.pipeline.plan``), before the cost model reads the data's size, and
what ``prepare_dataset`` runs before it loads the data. It reads no pixels, only what a
dataset section points at:

* every source: a known source, a supported torchvision name (:func:`singledir.data.sources.check_dataset_spec`);
* an input path (``dataset.path``, ``dataset.root``) inside the results directory is
  refused: the pipeline owns that directory (a forced rerun deletes and rewrites what is
  there), so it can never hold the only copy of an input;
* an npz source: the file exists and is an npz archive whose array headers read (a truncated
  or non-zip file names itself here, not as ``BadZipFile`` from the cost model); the arrays
  the source reads exist; no array holds Python objects (``allow_pickle`` stays off: loading
  one would run code from the file); images are (N, H, W), (N, H, W, C) or (N, C, H, W)
  numbers, labels one number per image, as many labels as images. With ``read_all`` (the
  ``prepare_dataset`` job, which reads every byte anyway) every member's checksum too.

What needs the pixel and label values (NaN, range, class count) is checked where they are
read, by ``prepare_dataset`` (:func:`singledir.data.sources.load_npz`), before anything is
written; image files are decoded one by one by the image index job
(:func:`unreadable_images`). Every error is a :class:`~singledir.data.sources.DataError`
of one line naming the key, the path and the fix.
"""

from __future__ import annotations

import os
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from singledir.data.sources import DataError, check_dataset_spec
from singledir.io import atomic_path

NPZ_HINT = "write it with numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...) (or x=..., y=...)"
IMAGE_SOURCES = ("imagenet", "imagefolder")


def _expand(path) -> Path:
    return Path(os.path.expanduser(str(path)))


def inside(path, directory) -> bool:
    """Whether ``path`` is ``directory`` or lies under it (symbolic links resolved)."""
    path, directory = _expand(path).resolve(), _expand(directory).resolve()
    return path == directory or directory in path.parents


def npz_headers(path) -> dict[str, tuple[tuple, np.dtype]]:
    """Array name -> (shape, dtype) of an .npz file, read from the array headers only;
    :class:`DataError` naming the file when it is not a readable npz archive."""
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                with zf.open(name) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(fh)
                out[name[:-4] if name.endswith(".npy") else name] = (tuple(shape), np.dtype(dtype))
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError) as err:
        raise DataError(f"dataset.path: {path} is not a readable npz archive ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else 'unreadable'}): it is truncated, or not an npz "
                        f"file; {NPZ_HINT}") from None
    return out


def npz_array_names(spec: dict, keys: Iterable[str]) -> list[tuple[str, str]]:
    """The (images, labels) array pairs the npz source reads from an archive with ``keys``
    (``dataset.arrays`` renames them), as :func:`singledir.data.sources.load_npz` does;
    :class:`DataError` when they are not all there."""
    keys, path = set(keys), spec.get("path")
    arrays = spec.get("arrays", {}) or {}
    names = {k: arrays.get(k, k) for k in ("x_train", "y_train", "x_test", "y_test")}
    if names["x_train"] in keys:
        missing = [v for v in names.values() if v not in keys]
        if missing:
            raise DataError(f"dataset.arrays: {path} lacks arrays {missing}; it has {sorted(keys)}")
        return [(names["x_train"], names["y_train"]), (names["x_test"], names["y_test"])]
    xn, yn = arrays.get("x", "x"), arrays.get("y", "y")
    if xn not in keys or yn not in keys:
        raise DataError(f"dataset.arrays: {path} has arrays {sorted(keys)}; expected "
                        f"x_train/y_train/x_test/y_test or {xn}/{yn} (set dataset.arrays)")
    return [(xn, yn)]


def _check_npz(spec: dict, read_all: bool) -> None:
    path = _expand(spec["path"])
    headers = npz_headers(path)
    for x_name, y_name in npz_array_names(spec, headers):
        for name in (x_name, y_name):
            dtype = headers[name][1]
            if dtype.hasobject or dtype.kind not in "uif":
                what = "Python objects (pickled)" if dtype.hasobject else f"dtype {dtype}"
                raise DataError(f"dataset.path: {path}: array {name!r} holds {what}; the npz source reads numbers "
                                f"only (arrays of objects would need allow_pickle, which runs code from the file). "
                                f"Store one numeric array, e.g. np.stack(images).astype(np.uint8), and save again")
        x_shape, y_shape = headers[x_name][0], headers[y_name][0]
        if len(x_shape) not in (3, 4):
            raise DataError(f"dataset.path: {path}: array {x_name!r} has shape {x_shape}; images must be "
                            "(N, H, W), (N, H, W, C) or (N, C, H, W): one image per row of the first axis "
                            "(reshape flattened images, e.g. x.reshape(-1, 28, 28))")
        if not (len(y_shape) == 1 or (len(y_shape) == 2 and y_shape[1] == 1)):
            raise DataError(f"dataset.path: {path}: array {y_name!r} has shape {y_shape}; labels must be one "
                            "class number per image (shape (N,)), not one-hot rows (use y.argmax(1))")
        if x_shape[0] != y_shape[0]:
            raise DataError(f"dataset.path: {path}: arrays {x_name!r} and {y_name!r} differ in length: "
                            f"{x_shape[0]} images but {y_shape[0]} labels. Every image needs exactly one label: "
                            "fix the archive (or point dataset.arrays at the right pair).")
    if read_all:
        try:
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
            bad = f"({type(err).__name__}: {err})"
        if bad:
            raise DataError(f"dataset.path: {path}: array {bad} is damaged (its checksum does not match): the "
                            f"file is corrupt; {NPZ_HINT}")


def check_dataset(spec: dict, results_dir: str | os.PathLike = "results", read_all: bool = False) -> None:
    """Check a ``dataset`` section before any work (see the module docstring); raises
    :class:`DataError` with one line naming the key, the path and the fix. ``results_dir``
    is the pipeline's output directory (relative paths: to the working directory)."""
    check_dataset_spec(spec)
    source = spec.get("source")
    for key in ("path", "root"):
        given = spec.get(key)
        if key == "root" and (source not in IMAGE_SOURCES + ("torchvision",) or spec.get("generate")):
            continue  # no root read (a generated stand-in's root is set by the workflow, in results)
        if given and inside(given, results_dir):
            raise DataError(f"dataset.{key}: {given} is inside the results directory {results_dir}/, which the "
                            f"pipeline owns (a forced rerun deletes and rewrites what is there). Move the data "
                            f"out of {results_dir}/ (e.g. to data/) and point dataset.{key} there")
    if source == "npz":
        _check_npz(spec, read_all)


# --- image folders: every file decoded once -------------------------------------------

def decode_error(path: str | os.PathLike) -> str | None:
    """Why the image at ``path`` cannot be decoded (``'OSError: Truncated File Read'``),
    or None when it decodes. Every pixel is decoded, as training will (PIL's ``verify``
    checks a file's structure only, and passes a truncated JPEG)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'cannot decode'}"
    return None


def unreadable_images(root: str | os.PathLike, paths: Sequence[str], threads: int = 1,
                      log: Callable[[str], None] = print, every_s: float = 30.0) -> list[tuple[str, str]]:
    """(path, why) of every image under ``root`` (``paths`` relative to it) that does not
    decode, in ``paths`` order. Decoded on ``threads`` threads (PIL releases the GIL while
    decoding); a progress line goes to ``log`` every ``every_s`` seconds and at the end.

    Cost: about 300 images/s per thread for 500x375 JPEGs (ImageNet's typical size; measured
    on one core of a 2-core AMD EPYC development machine), so ImageNet's 1.33 million images
    take about 75 CPU-minutes, once per index. (PIL's reduced-size ``draft`` decoding is 1.6x
    faster and finds truncated JPEGs too, but decodes less than training does.)"""
    root = Path(root)
    bad: list[tuple[str, str]] = []
    start = last = time.monotonic()
    n = len(paths)
    chunk = 4096  # paths in flight at a time: ImageNet's 1.3 million futures at once would hold gigabytes
    with ThreadPoolExecutor(max(1, int(threads))) as pool:
        for lo in range(0, n, chunk):
            part = list(paths[lo:lo + chunk])
            for rel, why in zip(part, pool.map(lambda p: decode_error(root / p), part)):
                if why is not None:
                    bad.append((rel, why))
            now = time.monotonic()
            done = min(lo + chunk, n)
            if now - last >= every_s or done == n:
                last = now
                log(f"decoded {done}/{n} images ({100 * done / max(n, 1):.0f} %, {len(bad)} unreadable) "
                    f"in {now - start:.0f} s on {threads} threads")
    return bad


def check_images(root: str | os.PathLike, paths: Sequence[str], report: str | os.PathLike, threads: int = 1,
                 log: Callable[[str], None] = print) -> None:
    """Decode every image (:func:`unreadable_images`); when some do not decode, write their
    paths (relative to ``root``) with the reason to ``report``, one per line, and raise
    :class:`DataError` naming the count and ``report``. A report of an earlier run is removed."""
    bad = unreadable_images(root, paths, threads, log)
    report = Path(report)
    if not bad:
        report.unlink(missing_ok=True)
        return
    report.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(report) as tmp:
        Path(tmp).write_text("".join(f"{rel}\t{why}\n" for rel, why in bad))
    first, why = bad[0]
    raise DataError(f"dataset.root: {len(bad)} of {len(paths)} images under {root} do not decode (e.g. {first}: "
                    f"{why}); all are listed in {report}. Copy them again from the source, or delete them, "
                    "then rerun")

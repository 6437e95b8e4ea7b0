"""The per-unit analysis streamed over the test set: peak memory that does not depend on
the number of test images.

The plain definition (:func:`singledir.analysis.unit_shards.unit_table`) holds every
feature map of every test image: about 12 GB for CIFAR-10's 10,000 test images at paper
width. Here the test set passes through the model once, batch by batch, and each analysed
layer's output is reduced inside its forward hook (:func:`map_summary`) to what the
statistics need, per image and unit:

- *class selectivity*: per-class running sums of the units' spatial means and per-class
  counts (``np.add.at`` in data order, as the plain definition adds them), so the
  class-conditional means and eq. 1 are the plain definition's to the bit;
- *mean activity*: each map's float32 sum, added image after image into a float32 running
  total and divided as ``numpy.mean`` divides: the same additions in the same order as the
  plain definition's ``mean`` over images and positions (a test checks it is bitwise equal);
- *mutual information*: its bins are equal-count bins of each unit's positive spatial means,
  quantiles that depend on every image at once. The spatial means (8 bytes per image and
  unit: 90 MB for CIFAR-10's 2,816 maps) go to a spill file on local disk (the rule's
  ``tmpdir``), written unit-major per batch, and are read back ``block_bytes`` at a time,
  a block of units over all images, for :func:`singledir.analysis.selectivity.mutual_information`
  itself: the same values through the same function, so the same bits.

The single-unit impact already runs through the engine chunk by chunk
(:func:`singledir.engine.ablation.single_unit_impact`: ``chunk_size`` examples and
``max_rows`` rows per forward pass). What grows with the number of images is the labels
(8 bytes per image), the spill file on disk, and the data set itself, which the arrays
families hold anyway. :func:`unit_analysis_peak_bytes` estimates the peak.
"""

from __future__ import annotations

import os
import tempfile
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from singledir.analysis.selectivity import class_means_from_sums, mutual_information, selectivity_from_class_means
from singledir.analysis.unit_shards import assemble_unit_table
from singledir.data.access import ARRAYS, IMAGES
from singledir.engine.options import EngineOptions
from singledir.models.activations import iter_activations, spatial_mean
from singledir.models.probe import probe_forward

# float64 copies of one layer output made at once inside the hook (rows of a batch)
ROW_BLOCK_BYTES = 32 * 2**20
# spatial means read back from the spill file at once for the mutual information
SPILL_BLOCK_BYTES = 64 * 2**20

Summary = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def map_summary(out: torch.Tensor) -> Summary:
    """The arrays families' reduction of one layer output (b, C, *spatial): per image and
    unit the float64 spatial mean (as :func:`singledir.analysis.selectivity.spatial_average`
    computes it from the float32 map), the float32 sum of the map (what the plain
    ``mean_activity`` adds), and the number of positions (b,). Float64 copies are made
    ``ROW_BLOCK_BYTES`` at a time; each row's mean depends on that row only."""
    a = out.detach().to("cpu", torch.float32).numpy()
    b, c = a.shape[:2]
    a = a.reshape(b, c, -1)
    means, sums = np.empty((b, c)), np.empty((b, c), np.float32)
    step = max(1, ROW_BLOCK_BYTES // max(1, c * a.shape[2] * 8))
    for i in range(0, b, step):
        means[i:i + step] = a[i:i + step].astype(np.float64).mean(-1)
        sums[i:i + step] = a[i:i + step].sum(-1)
    return torch.from_numpy(means), torch.from_numpy(sums), torch.full((b,), a.shape[2], dtype=torch.int64)


def mean_summary(out: torch.Tensor) -> Summary:
    """The image family's reduction: the float32 spatial mean on the model's device
    (:func:`singledir.models.activations.spatial_mean`, as its in-memory test activations
    have always been), in float64; the map's "sum" is that mean over one position."""
    m = spatial_mean(out).double().cpu()
    return m, m, torch.ones(len(m), dtype=torch.int64)


READ_OF_FORM: dict[str, Callable[[torch.Tensor], Summary]] = {ARRAYS: map_summary, IMAGES: mean_summary}


class _LayerStream:
    """One layer's running statistics and spill file."""

    def __init__(self, n_classes: int, spill_path: str):
        self.n_classes, self.spill_path = n_classes, spill_path
        self.class_sums = self.total = None
        self.counts = np.zeros(n_classes, dtype=np.int64)
        self.positions = 0
        self.rows: list[int] = []
        self.spill = open(spill_path, "wb")

    def add(self, summary: Summary, labels: np.ndarray) -> None:
        means, sums, sizes = (t.numpy() for t in summary)
        if self.class_sums is None:
            self.class_sums = np.zeros((self.n_classes, means.shape[1]))
        np.add.at(self.class_sums, labels, means)
        self.counts += np.bincount(labels, minlength=self.n_classes)
        first = 0
        if self.total is None:
            self.total, first = sums[0].copy(), 1
        for row in sums[first:]:  # image after image, as numpy's mean over (images, positions) adds
            self.total = self.total + row
        self.positions += int(sizes.sum())
        np.ascontiguousarray(means.T).tofile(self.spill)  # unit-major per batch
        self.rows.append(len(means))

    def read_units(self, c0: int, c1: int) -> np.ndarray:
        """(N, c1 - c0) spatial means of units c0..c1 from the spill file."""
        n_units, parts, offset = self.class_sums.shape[1], [], 0
        with open(self.spill_path, "rb") as f:
            for b in self.rows:
                f.seek(offset + c0 * b * 8)
                parts.append(np.fromfile(f, dtype=np.float64, count=(c1 - c0) * b).reshape(c1 - c0, b))
                offset += n_units * b * 8
        return np.concatenate(parts, axis=1).T

    def finish(self, labels: np.ndarray, n_bins: int, block_bytes: int) -> pd.DataFrame:
        self.spill.close()
        if self.class_sums is None:
            raise ValueError("unit analysis: the test set has no examples")
        means = class_means_from_sums(self.class_sums, self.counts)
        n_units = means.shape[1]
        # numpy.mean's own division: the float32 (or float64) total by the count as np.intp
        mean_activity = np.true_divide(self.total, np.intp(self.positions), out=self.total, casting="unsafe")
        step = max(1, int(block_bytes) // max(1, 8 * len(labels)))
        mi = np.concatenate([mutual_information(self.read_units(c0, min(n_units, c0 + step)), labels, self.n_classes,
                                                n_bins) for c0 in range(0, n_units, step)])
        return pd.DataFrame({"unit": range(n_units), "selectivity": selectivity_from_class_means(means),
                             "mutual_information": mi, "mean_activity": mean_activity})


def stream_unit_statistics(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                           layers: Sequence[str], n_classes: int, mi_bins: int, *,
                           read: Callable[[torch.Tensor], Summary] = map_summary,
                           device: str | torch.device | None = None, spill_dir: str | os.PathLike | None = None,
                           block_bytes: int = SPILL_BLOCK_BYTES) -> dict[str, pd.DataFrame]:
    """Per layer, the table of :func:`singledir.analysis.unit_shards.unit_statistics` (the
    plain definition, equal to this one) from one pass over labelled ``batches``
    (module docstring). ``read``: :func:`map_summary` (the arrays families) or
    :func:`mean_summary` (images; :data:`READ_OF_FORM`). The spill file lives in a
    temporary folder under ``spill_dir`` (default: the system's), removed on return."""
    layers = list(layers)
    if not layers:
        return {}
    with tempfile.TemporaryDirectory(prefix="unit_stats_", dir=spill_dir) as tmp:
        streams = {name: _LayerStream(n_classes, os.path.join(tmp, f"{i}.f64")) for i, name in enumerate(layers)}
        labels = []
        try:
            for acts, y in iter_activations(model, batches, layers, device=device, read=read):
                if y is None:
                    raise ValueError("unit analysis: the test batches must be (inputs, labels) pairs")
                y = y.cpu().numpy().astype(np.int64)
                if len(y) and (y.min() < 0 or y.max() >= n_classes):
                    raise ValueError(f"unit analysis: test labels run from {y.min()} to {y.max()}, outside "
                                     f"0..{n_classes - 1} ({n_classes} classes)")
                for name in layers:
                    streams[name].add(acts[name], y)
                labels.append(y)
            labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
            return {name: s.finish(labels, mi_bins, block_bytes) for name, s in streams.items()}
        finally:
            for s in streams.values():
                s.spill.close()


def streamed_unit_table(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], x_impact,
                        y_impact, layers: Sequence[str], only: Sequence[str] | None, n_classes: int, mi_bins: int,
                        options: EngineOptions = EngineOptions(), *,
                        read: Callable[[torch.Tensor], Summary] = map_summary,
                        device: str | torch.device | None = None, spill_dir: str | os.PathLike | None = None,
                        block_bytes: int = SPILL_BLOCK_BYTES) -> pd.DataFrame:
    """:func:`singledir.analysis.unit_shards.unit_table` with the test statistics streamed
    over ``batches`` (:func:`stream_unit_statistics`) instead of read from activations held
    in memory; the same table."""
    only = list(layers) if only is None else list(only)
    stats = stream_unit_statistics(model, batches, only, n_classes, mi_bins, read=read, device=device,
                                   spill_dir=spill_dir, block_bytes=block_bytes)
    return assemble_unit_table(model, stats, x_impact, y_impact, layers, only, options)


# Measured on the CPU (docs/cluster.md, "Unit analysis memory"): the Python process with torch,
# numpy, pandas and singledir imported.
IMPORT_BYTES = 560 * 2**20
# Host memory torch's CUDA libraries add to a process that uses the GPU: not measured here
# (no GPU); the usual 1-3 GB of the CUDA context and cuDNN/cuBLAS, taken at the top.
CUDA_HOST_BYTES = 3 * 2**30


def layer_output_shapes(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> list[tuple[int, ...]]:
    """The output shape of one example, ``(C, *spatial)``, of each of ``layers`` (in that
    order), from one forward pass of ``example[:1]``: the ``layer_shapes`` of
    :func:`unit_analysis_peak_bytes`."""
    modules = dict(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}

    def record(name, out):  # returns None: a forward hook's return value would replace the output
        shapes.setdefault(name, tuple(int(d) for d in out.shape[1:]))

    probe_forward(model, example, {n: modules[n] for n in layers}, record)
    return [shapes[n] for n in layers]


def unit_analysis_peak_bytes(layer_shapes: Sequence[Sequence[int]], n_params: int, batch_size: int, n_classes: int,
                             n_bins: int, *, device: str = "cpu", max_rows: int = 65536,
                             impact_shapes: Sequence[Sequence[int]] | None = None, data_bytes: int = 0,
                             block_bytes: int = SPILL_BLOCK_BYTES) -> int:
    """Estimated peak resident memory (bytes) of one unit-analysis job
    (:func:`streamed_unit_table`), an upper bound for the memory request of the rules
    ``unit_analysis`` / ``unit_shard``. It does not depend on the number of test images.

    ``layer_shapes``: the output shape of one example, ``(C, *spatial)``, of every analysed
    layer (its units: n_units = sum of the C); ``impact_shapes``: the same for every layer
    of the forward pass from the first analysed layer on (default ``layer_shapes``), whose
    largest is what the engine repeats ``max_rows`` times; ``n_params``: the model's
    parameters; ``batch_size``: the analysis ``chunk_size``; ``device``: ``"cpu"`` (every
    activation in host memory) or ``"cuda"``; ``data_bytes``: the data the job holds anyway
    (the arrays families' normalized float32 dataset, 4 bytes per pixel of every training
    and test image). With B = ``batch_size``, M = the largest ``layer_shapes`` element
    count and M_impact the largest ``impact_shapes`` one, in bytes (MiB = 2^20 B):

        560 MiB (Python, torch, numpy, pandas) + 8 * n_params + data_bytes
        + max(stream, information, impact)
        + 3 GiB of CUDA host libraries on a GPU
        stream      = 4 * B * M * (4 on the CPU, 1 on a GPU)     forward pass / hook copy
                      + 2 * 32 MiB (float64 row blocks) + 20 * B * n_units + 8 * n_classes * n_units
        information = 2 * block_bytes (64 MiB) + 24 * (n_bins + 1) * n_classes
        impact      = 12 * max(max_rows, B) * M_impact            on the CPU only

    The three phases run one after another (stream, then the information from the spill
    file, then the impact), so the peak is the largest. On the CPU the forward pass holds
    about three maps of the largest layer per image (convolution, batch norm, ReLU); the
    fourth is the allocator's: the second batch leaves the resident set 0.55 such maps
    per image above the first, and it stays there for every later batch (measured
    per batch at paper width: 1,386 MB after the first, 1,530 MB after the second, third
    and fourth). Calibrated on the CPU with the
    paper-width CIFAR-10 ConvNet (tests/analysis/test_unit_stream.py,
    test_unit_analysis_peak_memory_does_not_grow_with_the_test_set): the estimate lies
    above the measured peak and within 1.5 times it."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device: unit_analysis_peak_bytes knows 'cpu' and 'cuda'; got {device!r}")
    on_cpu = device == "cpu"
    elements = [int(np.prod(s[1:], dtype=np.int64)) * int(s[0]) for s in layer_shapes]
    largest = max(elements, default=0)
    n_units = sum(int(s[0]) for s in layer_shapes)
    impact_largest = max((int(np.prod(s, dtype=np.int64)) for s in (impact_shapes or layer_shapes)), default=0)
    b = int(batch_size)
    stream = (4 * b * largest * (4 if on_cpu else 1) + 2 * ROW_BLOCK_BYTES + 20 * b * n_units
              + 8 * n_classes * n_units)
    information = 2 * int(block_bytes) + 24 * (int(n_bins) + 1) * int(n_classes)
    impact = 4 * 3 * max(int(max_rows), b) * impact_largest if on_cpu else 0
    return int(IMPORT_BYTES + 8 * int(n_params) + int(data_bytes) + max(stream, information, impact)
               + (0 if on_cpu else CUDA_HOST_BYTES))

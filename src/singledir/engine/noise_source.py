"""Where the engine's Gaussian noise comes from: draws that depend on what they perturb only.

The noise added to layer ``L``'s activation of example ``i`` under perturbation ``m`` (its
row in the :class:`singledir.engine.batch.PerturbationBatch`, e.g. one (scale, repeat) of a
noise curve) is a function of ``(seed, L, m, i)`` alone, never of how the engine chunks the
work (``chunk_size``, ``max_rows``), which path runs (generic or reference), the order
chunks are evaluated in, or the compute precision: so a speed knob cannot change a noise
curve.

How: the examples are cut into fixed blocks of :data:`BLOCK_EXAMPLES`; for each
(layer, perturbation, block) a fresh generator, seeded with a hash of
``(seed, layer name, m, block)``, draws standard normal values for the whole block in
float32, and a chunk takes the rows it covers. :data:`BLOCK_EXAMPLES` therefore defines
results (changing it changes every draw); a chunk that does not line up with the blocks
only costs redrawing the blocks it touches.

The generator lives on the activation's device: the same device type gives the same draws
on every run, whereas CPU and CUDA generators give different (statistically equal) draws.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence

import torch

# Examples per independently seeded noise block. Result-defining: see the module docstring.
BLOCK_EXAMPLES = 256


def block_seed(seed: int, layer: str, perturbation: int, block: int) -> int:
    """The generator seed of one (layer, perturbation, example block): a stable hash
    (not Python's salted ``hash``), below 2**63."""
    key = f"{int(seed)}/{layer}/{int(perturbation)}/{int(block)}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2 ** 63 - 1)


@dataclass(frozen=True)
class NoiseSource:
    """Seeded standard normal noise indexed by (layer, perturbation, example)."""

    seed: int

    def draw(self, layer: str, perturbations: Sequence[int], start: int, shape: Sequence[int],
             device: torch.device | str = "cpu") -> torch.Tensor:
        """Standard normal noise for ``layer``, float32 of shape ``(M, B, *unit_shape)``
        where ``shape = (M, B, *unit_shape)``: row ``(j, r)`` is the noise of perturbation
        ``perturbations[j]`` on example ``start + r``."""
        m, b, unit = len(perturbations), int(shape[1]), tuple(int(s) for s in shape[2:])
        if int(shape[0]) != m:
            raise ValueError(f"noise: {m} perturbation indices for an activation of {shape[0]} perturbations")
        out = torch.empty((m, b, *unit), dtype=torch.float32, device=device)
        if b == 0:
            return out
        first, last = start // BLOCK_EXAMPLES, (start + b - 1) // BLOCK_EXAMPLES
        gen = torch.Generator(device=out.device)
        for j, p in enumerate(perturbations):
            for block in range(first, last + 1):
                lo = max(start, block * BLOCK_EXAMPLES)
                hi = min(start + b, (block + 1) * BLOCK_EXAMPLES)
                gen.manual_seed(block_seed(self.seed, layer, int(p), block))
                full = torch.randn((BLOCK_EXAMPLES, *unit), generator=gen, dtype=torch.float32, device=out.device)
                out[j, lo - start:hi - start] = full[lo - block * BLOCK_EXAMPLES:hi - block * BLOCK_EXAMPLES]
        return out

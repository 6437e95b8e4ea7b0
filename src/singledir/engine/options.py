"""How the perturbation engine computes: one small value object passed to every entry point.

Which fields can change results:

- ``topk`` defines the accuracy measured (top-1 or top-k correct): it changes results by
  definition.
- ``precision`` can change results: ``"fp32"`` is exact float32; ``"tf32"`` and ``"bf16"``
  are used only after a measured check against fp32 on a subset (``check_examples``
  examples, up to ``check_masks`` perturbations) and refused beyond ``check_tol``
  (:class:`singledir.engine.perturb.PrecisionError`). The check knobs decide only whether
  a reduced precision is accepted, never the numbers computed.
- ``method``, ``chunk_size`` and ``max_rows`` cannot change results beyond float rounding
  (1e-5): every path is exact and agrees with the plain definition
  (:mod:`singledir.engine.reference`) to 1e-5, which ``tests/engine/test_engine.py`` checks at every
  point of every curve (``test_cumulative_curves_equal_reference``: small chunks and row bounds;
  ``test_both_paths_equal_reference_on_arbitrary_masks``: each method;
  ``test_linear_readout_path_equals_reference``: ``max_rows`` below one chunk).
  Noise draws are indexed by (seed, layer, perturbation, example), not by the chunk that
  evaluates them (:mod:`singledir.engine.noise_source`), so noise results do not depend on
  these knobs either (``tests/engine/test_noise_draws.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping

PRECISIONS = ("fp32", "tf32", "bf16")
METHODS = ("auto", "plan", "generic", "reference")


@dataclass(frozen=True)
class EngineOptions:
    """``method``: the engine path (``auto`` = fastest exact; ``plan`` / ``generic`` force
    one; ``reference`` = the plain definition, one full forward pass per perturbation).
    ``precision``: ``fp32`` / ``tf32`` / ``bf16``. ``chunk_size``: examples per forward
    pass. ``max_rows``: rows (perturbations x examples) per forward pass. ``topk``:
    accuracy counts the label among the k largest logits. ``check_*``: the reduced-precision
    check (examples, perturbations, tolerance on accuracy and relative loss)."""

    method: str = "auto"
    precision: str = "fp32"
    chunk_size: int = 1024
    max_rows: int = 65536
    topk: int = 1
    check_examples: int = 512
    check_masks: int = 16
    check_tol: float = 0.01

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: unknown method {self.method!r}; choose one of {METHODS}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision: unknown precision {self.precision!r}; choose one of {PRECISIONS}")
        for name in ("chunk_size", "max_rows", "topk"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}: must be at least 1; got {getattr(self, name)!r}")

    @classmethod
    def from_config(cls, analysis: Mapping) -> "EngineOptions":
        """The options set in a family's ``analysis`` config; missing keys take the
        defaults and keys that are not engine options are ignored."""
        return cls(**{f.name: analysis[f.name] for f in fields(cls) if f.name in analysis})

"""Where the training loop records the row that tells whether a net has converged.

The claims that compare two arms of networks (Figs. 5b, 6, A1, X4) hold only if both arms
are trained out (:func:`singledir.stats.net_tables.convergence_table`): a net's training
loss must barely change over the last :data:`CONVERGENCE_WINDOW` of its epochs. The loop
(:func:`singledir.training.loop.fit`) evaluates only at snapshot epochs and the final epoch,
so it also evaluates at :func:`reference_epoch`, the start of that window: every history has
the two rows the judgement compares. Torch-free, so the figure jobs that judge histories can
import it.
"""

from __future__ import annotations

import math

# The share of training over which the training loss must have settled (the last 10 % of epochs).
CONVERGENCE_WINDOW = 0.1


def reference_epoch(epochs: int) -> int:
    """The epoch at the start of the last :data:`CONVERGENCE_WINDOW` of ``epochs`` epochs:
    floor(0.9 x epochs), so the window is at least 10 % of training and at least one epoch
    (100 -> 90, 12 -> 10, 8 -> 7, 1 -> 0)."""
    # rounded first: 0.9 x 10 is 9.000000000000002 in floating point, 0.9 x 30 is 27.0 or less
    return math.floor(round((1.0 - CONVERGENCE_WINDOW) * int(epochs), 9))

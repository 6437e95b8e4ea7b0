import numpy as np
import pytest

from singledir.data.corruption import corrupt_labels


def test_marginal_and_exact_fraction():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 1000)
    out, chosen = corrupt_labels(y, 0.3, seed=1)
    assert len(chosen) == 300
    assert len(np.unique(chosen)) == 300
    # The multiset of labels (the marginal) is unchanged ...
    assert np.array_equal(np.bincount(out, minlength=10), np.bincount(y, minlength=10))
    # ... only chosen examples can change, and the unchosen ones keep their label.
    untouched = np.setdiff1d(np.arange(1000), chosen)
    assert np.array_equal(out[untouched], y[untouched])
    # Among the chosen, a permutation of 10 classes changes most labels (~90 %).
    assert (out[chosen] != y[chosen]).mean() > 0.8


def test_seeded_and_extremes():
    y = np.arange(100) % 10
    a, _ = corrupt_labels(y, 0.5, seed=3)
    b, _ = corrupt_labels(y, 0.5, seed=3)
    c, _ = corrupt_labels(y, 0.5, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    same, chosen = corrupt_labels(y, 0.0, seed=0)
    assert np.array_equal(same, y) and len(chosen) == 0
    full, chosen = corrupt_labels(y, 1.0, seed=0)
    assert len(chosen) == 100 and np.array_equal(np.sort(full), np.sort(y))


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_fraction_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        corrupt_labels(np.zeros(10, int), bad, seed=0)

import numpy as np
import pytest

from singledir.analysis.selectivity import (class_conditional_means, class_selectivity_index, discretize_activity,
                                   mutual_information, spatial_average)


def test_selectivity_of_constructed_units():
    labels = np.repeat(np.arange(4), 5)  # 4 classes x 5 examples
    acts = np.zeros((20, 4))
    acts[:, 0] = np.where(labels == 2, 3.0, 0.0)  # only one class: selectivity 1
    acts[:, 1] = 1.0  # identical for all classes: 0
    # class means 4, 1, 1, 1 -> (4 - 1) / (4 + 1) = 0.6
    acts[:, 2] = np.where(labels == 0, 4.0, 1.0)
    acts[:, 3] = 0.0  # dead unit: 0 by definition
    sel = class_selectivity_index(acts, labels, 4)
    assert sel == pytest.approx([1.0, 0.0, 0.6, 0.0])


def test_feature_maps_are_averaged_over_space_first():
    labels = np.array([0, 0, 1, 1])
    maps = np.zeros((4, 1, 2, 2))
    maps[:2, 0, 0, 0] = 4.0  # class 0: one element 4 -> spatial mean 1
    maps[2:, 0] = 0.25  # class 1: spatial mean 0.25
    assert spatial_average(maps)[:, 0].tolist() == [1.0, 1.0, 0.25, 0.25]
    assert class_conditional_means(maps, labels, 2)[:, 0].tolist() == [1.0, 0.25]
    assert class_selectivity_index(maps, labels, 2)[0] == pytest.approx((1 - 0.25) / 1.25)


def test_zero_bin_and_quantile_bins():
    a = np.array([0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    b = discretize_activity(a, 4)
    assert b[:4].tolist() == [0, 0, 0, 0]
    assert np.bincount(b[4:]).tolist()[1:] == [2, 2, 2, 2]


def test_mutual_information_bounds():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 500)
    informative = labels + rng.uniform(0, 0.5, len(labels))  # recovers the label exactly
    noise = rng.uniform(0, 1, len(labels))
    mi = mutual_information(np.stack([informative, noise], 1), labels, 4, n_bins=4)
    assert mi[0] == pytest.approx(2.0, abs=0.02)  # log2(4) bits
    assert mi[1] < 0.01  # bias-corrected: near 0 for an unrelated unit


def test_missing_class_is_an_error():
    with pytest.raises(ValueError, match=r"classes \[2\] have no examples"):
        class_conditional_means(np.ones((4, 1)), np.array([0, 1, 0, 1]), 3)

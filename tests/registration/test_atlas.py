"""Tests for mlimaging.registration.atlas: label fusion and multi-atlas segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_array_equal

from mlimaging.data import make_phantom
from mlimaging.metrics import dice
from mlimaging.registration import (
    atlas_segment,
    fuse_labels,
    invert,
    local_weights,
    rigid_matrix,
    warp,
)


def _mean_dice(seg, truth):
    return float(np.mean([dice(seg == k, truth == k) for k in np.unique(truth) if k != 0]))


# --------------------------------------------------------------------------- fusion
def test_majority_vote_worked_example():
    maps = [np.array([[0, 1], [2, 2]]), np.array([[0, 1], [1, 3]]), np.array([[1, 2], [1, 3]])]
    assert_array_equal(fuse_labels(maps), [[0, 1], [1, 3]])


def test_ties_go_to_the_smallest_label():
    maps = [np.array([5, 2]), np.array([3, 7])]
    assert_array_equal(fuse_labels(maps), [3, 2])


def test_weighted_vote_global_and_local():
    maps = [np.array([0, 1, 2]), np.array([0, 1, 1]), np.array([1, 2, 2])]
    assert_array_equal(fuse_labels(maps, weights=[1.0, 1.0, 3.0]), [1, 2, 2])
    local = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 5.0], [1.0, 1.0, 1.0]])
    assert_array_equal(fuse_labels(maps, weights=local), [0, 1, 1])
    # equal weights are a majority vote
    assert_array_equal(fuse_labels(maps, weights=np.full((3, 3), 0.3)), fuse_labels(maps))


def test_local_weights_favour_the_matching_atlas():
    rng = np.random.default_rng(0)
    target = rng.random((20, 20))
    good = target + 0.01 * rng.standard_normal((20, 20))
    bad = target.copy()
    bad[:, 10:] = rng.random((20, 10))  # matches on the left half only
    w = local_weights(target, [good, bad], sigma=1.5)
    assert w.shape == (2, 20, 20) and (w > 0).all()
    assert (w[0, :, 14:] > 10 * w[1, :, 14:]).all()
    # the partly matching atlas counts far more where it matches
    assert np.median(w[1, :, :6]) > 10 * np.median(w[1, :, 14:])
    # invariant to a linear intensity change of an atlas (images are standardised)
    np.testing.assert_allclose(local_weights(target, [3 * good + 2]), local_weights(target, [good]), rtol=1e-8)


# --------------------------------------------------------------------------- segmentation
def test_identical_atlas_gives_its_labels():
    image, labels = make_phantom((40, 40), seed=0, partial_volume=0.7)
    result = atlas_segment(image, [(image, labels)], metric="ssd", transform="rigid")
    assert (result.labels == labels).mean() > 0.995
    assert result.labels.dtype == np.int64


def test_recovers_a_moved_atlas():
    image, labels = make_phantom((48, 48), seed=1, partial_volume=0.7)
    image, labels = np.pad(image, 4), np.pad(labels, 4)
    t = rigid_matrix([0.2, 3.0, -2.0], spatial_dims=2)
    moved_image = warp(image, invert(t))
    moved_labels = warp(labels, invert(t), mode="nearest")
    result = atlas_segment(image, [(moved_image, moved_labels)], transform="rigid", metric="nmi")
    assert _mean_dice(result.propagated[0], labels) > 0.95
    assert set(np.unique(result.propagated[0])) <= set(np.unique(labels))  # nearest: no new labels


def test_multi_atlas_beats_single_atlas():
    shape, v = (48, 48), 0.6
    target, truth = make_phantom(shape, seed=10, variability=v, partial_volume=0.7)
    atlases = [make_phantom(shape, seed=20 + k, variability=v, partial_volume=0.7) for k in range(5)]
    majority = atlas_segment(target, atlases, transform="affine", metric="nmi")
    single = np.mean([_mean_dice(p, truth) for p in majority.propagated])
    assert len(majority.propagated) == 5 and majority.weights is None
    assert _mean_dice(majority.labels, truth) > single + 0.01
    weighted = atlas_segment(target, atlases, transform="affine", metric="nmi", fusion="weighted")
    assert weighted.weights.shape == (5, *shape)
    assert _mean_dice(weighted.labels, truth) > single + 0.01


def test_torch_target_gives_torch_labels():
    image, labels = make_phantom((32, 32), seed=2)
    result = atlas_segment(torch.from_numpy(image), [(image, labels)], transform="rigid", metric="ssd", levels=2)
    assert isinstance(result.labels, torch.Tensor) and result.labels.shape == (32, 32)


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs():
    image, labels = make_phantom((32, 32), seed=0)
    with pytest.raises(ValueError, match="fusion"):
        atlas_segment(image, [(image, labels)], fusion="staple")
    with pytest.raises(ValueError, match="atlases"):
        atlas_segment(image, [])
    with pytest.raises(ValueError, match="pair"):
        atlas_segment(image, [image])
    with pytest.raises(ValueError, match="one shape"):
        atlas_segment(image, [(image, labels[:16])])
    with pytest.raises(ValueError, match="integer"):
        atlas_segment(image, [(image, labels.astype(float))])
    with pytest.raises(ValueError, match="label_maps"):
        fuse_labels([])
    with pytest.raises(ValueError, match="shape"):
        fuse_labels([labels, labels[:16]])
    with pytest.raises(ValueError, match="integer"):
        fuse_labels([image])
    with pytest.raises(ValueError, match="weights"):
        fuse_labels([labels, labels], weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        fuse_labels([labels, labels], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="sigma"):
        local_weights(image, [image], sigma=0)
    with pytest.raises(ValueError, match="shape"):
        local_weights(image, [image[:16]])

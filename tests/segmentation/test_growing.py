"""Tests of mlimaging.segmentation.growing (connected threshold, confidence connected)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from scipy import ndimage as ndi

from mlimaging.data import make_phantom
from mlimaging.segmentation import confidence_region_growing, region_growing, threshold


# --------------------------------------------------------------------------- helpers
def _sitk():
    """SimpleITK, the oracle: only the tests that compare with it skip when it is missing."""
    return pytest.importorskip("SimpleITK")


def _sitk_seeds(seeds):
    return [tuple(int(c) for c in reversed(s)) for s in seeds]  # (row, col, ...) -> (x, y, ...)


def sitk_connected(image, seeds, lower, upper, connectivity=1):
    sitk = _sitk()
    f = sitk.ConnectedThresholdImageFilter
    conn = f.FaceConnectivity if connectivity == 1 else f.FullConnectivity
    out = sitk.ConnectedThreshold(sitk.GetImageFromArray(image), seedList=_sitk_seeds(seeds),
                                  lower=float(lower), upper=float(upper), replaceValue=1,
                                  connectivity=conn)
    return sitk.GetArrayFromImage(out).astype(bool)


def sitk_confidence(image, seeds, multiplier, iterations, radius):
    sitk = _sitk()
    out = sitk.ConfidenceConnected(sitk.GetImageFromArray(image), seedList=_sitk_seeds(seeds),
                                   numberOfIterations=iterations, multiplier=multiplier,
                                   initialNeighborhoodRadius=radius, replaceValue=1)
    return sitk.GetArrayFromImage(out).astype(bool)


def reference_region(image, seeds, lower, upper, connectivity=1):
    """Whole-image labelling, the plain definition."""
    mask = (image >= lower) & (image <= upper)
    labels, _ = ndi.label(mask, ndi.generate_binary_structure(image.ndim, connectivity))
    ids = {labels[tuple(s)] for s in seeds} - {0}
    return np.isin(labels, list(ids))


def smooth(shape, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    image = ndi.gaussian_filter(rng.normal(size=shape), 2.0)
    return (image / image.std()).astype(dtype)


def random_seeds(rng, shape, n):
    return [tuple(int(rng.integers(0, s)) for s in shape) for _ in range(n)]


def spiral(n=21, width=3):
    """A square spiral corridor (one path) of 1s in a 0 image: far from any box guess."""
    coarse = np.zeros((n, n), dtype=np.float32)
    for k in range((n + 1) // 4 + 1):
        a, b = 2 * k, n - 1 - 2 * k
        if a > b:
            break
        coarse[a, a:b + 1] = coarse[b, a:b + 1] = coarse[a:b + 1, a] = coarse[a:b + 1, b] = 1
        if a + 2 <= b - 2:
            coarse[a + 1, a] = 0  # cut the ring ...
            coarse[a + 2, a + 1] = 1  # ... and bridge it to the next one
    return np.kron(coarse, np.ones((width, width), dtype=np.float32))


# ------------------------------------------------------------------- worked examples
IMAGE_2D = np.array([[5, 5, 0, 5],
                     [0, 5, 0, 5],
                     [0, 0, 5, 5]])


def test_worked_example_face_and_full_connectivity():
    face = region_growing(IMAGE_2D, (0, 0), lower=4, upper=6)
    assert_array_equal(face, [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])
    assert face.dtype == bool
    full = region_growing(IMAGE_2D, (0, 0), lower=4, upper=6, connectivity=2)
    assert_array_equal(full, [[1, 1, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]])
    # a second seed adds its own component
    both = region_growing(IMAGE_2D, [(0, 0), (2, 3)], lower=4, upper=6)
    assert_array_equal(both, [[1, 1, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1]])
    # the bounds are inclusive
    assert_array_equal(region_growing(IMAGE_2D, (0, 0), lower=5, upper=5), face)


def test_worked_example_3d_diagonal():
    image = np.zeros((3, 3, 3))
    image[0, 0, 0] = image[1, 1, 1] = image[2, 2, 2] = 1  # corners touch only at vertices
    assert region_growing(image, (1, 1, 1), lower=1, upper=1).sum() == 1
    assert region_growing(image, (1, 1, 1), lower=1, upper=1, connectivity=2).sum() == 1
    assert region_growing(image, (1, 1, 1), lower=1, upper=1, connectivity=3).sum() == 3
    image[0, 1, 1] = 1  # a face neighbour of the centre
    assert region_growing(image, (1, 1, 1), lower=0.5, upper=2).sum() == 2


def test_seed_formats_are_equivalent():
    expected = region_growing(IMAGE_2D, [(0, 0), (2, 3)], lower=4, upper=6)
    for seeds in ([[0, 0], [2, 3]], np.array([[0, 0], [2, 3]]), torch.tensor([[0, 0], [2, 3]]),
                  ((0, 0), (2, 3)), [(np.int64(0), np.int32(0)), (2, 3)]):
        assert_array_equal(region_growing(IMAGE_2D, seeds, lower=4, upper=6), expected)
    single = region_growing(IMAGE_2D, (0, 0), lower=4, upper=6)
    for seeds in ([0, 0], np.array([0, 0]), [(0, 0)], torch.tensor([0, 0])):
        assert_array_equal(region_growing(IMAGE_2D, seeds, lower=4, upper=6), single)
    assert_array_equal(region_growing(torch.from_numpy(IMAGE_2D), (0, 0), lower=4, upper=6), single)


def test_integer_image_fractional_bounds_are_exact():
    image = np.arange(10, dtype=np.uint8).reshape(1, 10).repeat(2, axis=0)
    ours = region_growing(image, (0, 5), lower=2.5, upper=7.9)
    assert_array_equal(ours[0], [0, 0, 0, 1, 1, 1, 1, 1, 0, 0])


def test_integer_image_fractional_bounds_simpleitk_truncates():
    image = np.arange(10, dtype=np.uint8).reshape(1, 10).repeat(2, axis=0)
    # SimpleITK truncates the bounds to the pixel type (keeps 2): same as integer bounds 2..7
    assert_array_equal(sitk_connected(image, [(0, 5)], 2.5, 7.9),
                       region_growing(image, (0, 5), lower=2, upper=7))


# ------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32), (7, 200), (3, 70, 9)])
@pytest.mark.parametrize("connectivity", [1, 2])
def test_equals_whole_image_labelling(shape, connectivity):
    rng = np.random.default_rng(len(shape) * 10 + connectivity)
    image = smooth(shape, seed=int(rng.integers(1000)))
    for _ in range(4):
        seeds = random_seeds(rng, shape, int(rng.integers(1, 4)))
        values = np.array([image[s] for s in seeds])
        lower = np.float32(values.min() - rng.uniform(0, 1.0))
        upper = np.float32(values.max() + rng.uniform(0, 1.0))
        region = region_growing(image, seeds, lower=lower, upper=upper, connectivity=connectivity)
        assert_array_equal(region, reference_region(image, seeds, lower, upper, connectivity))
        assert not (region & ~threshold(image, lower=lower, upper=upper)).any()
        assert all(region[s] for s in seeds)


def test_spiral_region_outgrows_every_box():
    image = spiral()
    assert ndi.label(image)[1] == 1  # one corridor
    for seed in [(0, 0), (31, 31), tuple(np.argwhere(image == 1)[-1])]:
        if image[seed] != 1:
            continue
        region = region_growing(image, seed, lower=0.5, upper=1.5)
        assert_array_equal(region, image == 1)
    # a 3D stack of spirals joined at one end only
    volume = np.stack([spiral()] * 3)
    volume[1] = 0
    volume[1, 0, 0] = 1
    region = region_growing(volume, (2, 31, 31), lower=1, upper=1)
    assert_array_equal(region, volume == 1)


def test_spiral_region_matches_simpleitk():
    image = spiral()
    seed = tuple(np.argwhere(image == 1)[-1])
    assert_array_equal(region_growing(image, seed, lower=0.5, upper=1.5), sitk_connected(image, [seed], 0.5, 1.5))


def test_regrowing_from_any_region_voxel_gives_the_region():
    image = smooth((48, 48), seed=5)
    lower, upper = image[24, 24] - 0.8, image[24, 24] + 0.7
    region = region_growing(image, (24, 24), lower=lower, upper=upper)
    assert 10 < region.sum() < region.size
    rng = np.random.default_rng(0)
    inside = np.argwhere(region)
    for k in rng.integers(0, len(inside), 5):
        assert_array_equal(region_growing(image, tuple(inside[k]), lower=lower, upper=upper), region)


def test_full_connectivity_contains_face_connectivity():
    image = np.random.default_rng(9).random((16, 16, 16))
    image[12, 12, 12] = 0.5
    bounds = dict(lower=0.3, upper=0.9)  # 60% of the voxels: diagonal links matter
    face = region_growing(image, (12, 12, 12), connectivity=1, **bounds)
    edge = region_growing(image, (12, 12, 12), connectivity=2, **bounds)
    full = region_growing(image, (12, 12, 12), connectivity=3, **bounds)
    assert not (face & ~edge).any() and not (edge & ~full).any()
    assert face.sum() < full.sum()


# ------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32)])
@pytest.mark.parametrize("full", [False, True])
def test_connected_threshold_matches_simpleitk_on_smooth_images(shape, full):
    rng = np.random.default_rng(1 + full)
    connectivity = len(shape) if full else 1
    for trial in range(4):
        image = smooth(shape, seed=trial)
        seeds = random_seeds(rng, shape, 1 + trial % 3)
        values = np.array([image[s] for s in seeds])
        lower = np.float32(values.min() - rng.uniform(0, 1.0))
        upper = np.float32(values.max() + rng.uniform(0, 1.0))
        assert_array_equal(region_growing(image, seeds, lower=lower, upper=upper, connectivity=connectivity),
                           sitk_connected(image, seeds, lower, upper, connectivity))


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32)])
def test_connected_threshold_matches_simpleitk_on_phantoms(shape):
    image, labels = make_phantom(shape, seed=0, noise=0.05)
    for label, (lower, upper) in {1: (0.2, 0.4), 2: (0.6, 0.8), 3: (0.9, 1.1)}.items():
        candidates = np.argwhere((labels == label) & (image >= np.float32(lower)) & (image <= np.float32(upper)))
        seeds = [tuple(candidates[len(candidates) // 2]), tuple(candidates[0])]
        for connectivity in (1, len(shape)):
            ours = region_growing(image, seeds, lower=lower, upper=upper, connectivity=connectivity)
            assert_array_equal(ours, sitk_connected(image, seeds, lower, upper, connectivity))
            assert ours.sum() > 1


def test_connected_threshold_matches_simpleitk_on_integer_image():
    image = (smooth((48, 40), seed=3, dtype=np.float64) * 300).astype(np.int16)
    seeds = [(10, 10), (40, 30)]
    lower = int(min(image[s] for s in seeds)) - 150
    upper = int(max(image[s] for s in seeds)) + 150
    for connectivity in (1, 2):
        assert_array_equal(region_growing(image, seeds, lower=lower, upper=upper, connectivity=connectivity),
                           sitk_connected(image, seeds, lower, upper, connectivity))


# ------------------------------------------------------------------------ bad input
@given(st.integers(-5, 12), st.integers(-5, 12))
@settings(max_examples=40, deadline=None)
def test_seed_outside_image_raises_naming_it(row, col):
    image = np.ones((4, 7))
    if 0 <= row < 4 and 0 <= col < 7:
        assert region_growing(image, (row, col), lower=0, upper=2).all()
        return
    with pytest.raises(ValueError, match=rf"seed \({row}, {col}\).*outside"):
        region_growing(image, [(0, 0), (row, col)], lower=0, upper=2)


@given(st.lists(st.integers(0, 2), min_size=1, max_size=5).filter(lambda s: len(s) != 3))
@settings(max_examples=25, deadline=None)
def test_seed_with_wrong_number_of_coordinates_raises(seed):
    with pytest.raises(ValueError, match="coordinates"):
        region_growing(np.ones((3, 3, 3)), [tuple(seed)], lower=0, upper=2)


@given(st.floats(-10, 10), st.floats(0, 5))
@settings(max_examples=40, deadline=None)
def test_seed_intensity_outside_bounds_raises(lower, width):
    image = np.array([[0.0, 1.0], [2.0, 3.0]])
    upper = lower + width
    value = image[1, 0]
    if lower <= value <= upper:
        assert region_growing(image, (1, 0), lower=lower, upper=upper)[1, 0]
    else:
        with pytest.raises(ValueError, match=r"seed \(1, 0\).*intensity"):
            region_growing(image, [(1, 0)], lower=lower, upper=upper)


@given(st.floats(-100, 100, allow_nan=False), st.floats(0.001, 100))
@settings(max_examples=25, deadline=None)
def test_lower_above_upper_raises(upper, gap):
    with pytest.raises(ValueError, match="lower must be <= upper"):
        region_growing(np.zeros((3, 3)), (0, 0), lower=upper + gap, upper=upper)


@pytest.mark.parametrize("seeds", [[], (1.5, 0), [(0, 0), (1, "a")], (True, 0), [[[0, 0]]], "ab"])
def test_bad_seed_values_raise(seeds):
    with pytest.raises(ValueError, match="seed"):
        region_growing(np.zeros((3, 3)), seeds, lower=0, upper=1)


@pytest.mark.parametrize("kwargs", [dict(lower=np.nan, upper=1), dict(lower=0, upper=np.nan),
                                    dict(lower=0, upper=1, connectivity=0),
                                    dict(lower=0, upper=1, connectivity=3),
                                    dict(lower=0, upper=1, connectivity=1.0)])
def test_bad_bounds_and_connectivity_raise(kwargs):
    with pytest.raises(ValueError, match="lower|upper|connectivity"):
        region_growing(np.zeros((3, 3)), (0, 0), **kwargs)


# --------------------------------------------------------------- confidence connected
def test_confidence_worked_example():
    image = np.array([[10.0, 11.0, 30.0],
                      [12.0, 10.0, 31.0],
                      [11.0, 29.0, 30.0]])
    # Box of radius 1 around (0, 0), edges repeated: rows (0, 0, 1) x cols (0, 0, 1)
    # = 10, 10, 11, 10, 10, 11, 12, 12, 10: mean 96/9, sample variance 5/9 (n - 1 = 8).
    # Bounds 96/9 -/+ 2.5 * sqrt(5/9) = [8.80, 12.53]: the five low voxels. One iteration
    # on them (10, 11, 12, 10, 11) keeps them: mean 10.8, std 0.84, bounds [8.7, 12.9].
    expected = [[1, 1, 0], [1, 1, 0], [1, 0, 0]]
    assert_array_equal(confidence_region_growing(image, (0, 0)), expected)
    assert_array_equal(confidence_region_growing(image, (0, 0), iterations=0), expected)


def test_confidence_worked_example_is_simpleitks():
    image = np.array([[10.0, 11.0, 30.0], [12.0, 10.0, 31.0], [11.0, 29.0, 30.0]])
    assert_array_equal(sitk_confidence(image, [(0, 0)], 2.5, 1, 1), confidence_region_growing(image, (0, 0)))


def test_confidence_iteration_zero_is_region_growing_with_box_statistics():
    image = smooth((40, 40), seed=4, dtype=np.float64)
    seeds = [(5, 7), (30, 22)]
    boxes = np.concatenate([image[r - 2:r + 3, c - 2:c + 3].ravel() for r, c in seeds])
    mean, std = boxes.mean(), boxes.std(ddof=1)
    lower = min(mean - 1.5 * std, min(image[s] for s in seeds))
    upper = max(mean + 1.5 * std, max(image[s] for s in seeds))
    for connectivity in (1, 2):
        ours = confidence_region_growing(image, seeds, multiplier=1.5, iterations=0, radius=2,
                                         connectivity=connectivity)
        assert_array_equal(ours, region_growing(image, seeds, lower=lower, upper=upper,
                                                connectivity=connectivity))


def test_confidence_border_seed_repeats_the_edge():
    # Corner seed: ITK's box repeats the edge voxels (mean 5.44, std 4.36), it does not
    # clip the box (mean 4.0, std 4.08). multiplier 1: [1.08, 9.81] keeps 2 and 3, not 1.
    image = np.full((8, 8), 50.0, dtype=np.float32)
    image[:2, :2] = [[10, 1], [2, 3]]
    ours = confidence_region_growing(image, (0, 0), multiplier=1.0, iterations=0)
    assert_array_equal(ours[:2, :2], [[1, 0], [1, 1]])


def test_confidence_border_seed_matches_simpleitk():
    image = np.full((8, 8), 50.0, dtype=np.float32)
    image[:2, :2] = [[10, 1], [2, 3]]
    ours = confidence_region_growing(image, (0, 0), multiplier=1.0, iterations=0)
    assert_array_equal(ours, sitk_confidence(image, [(0, 0)], 1.0, 0, 1))


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32)])
def test_confidence_matches_simpleitk_on_smooth_images(shape):
    rng = np.random.default_rng(len(shape))
    for trial in range(6):
        image = smooth(shape, seed=100 + trial)
        seeds = random_seeds(rng, shape, 1 + trial % 3)
        if trial % 2:
            seeds[0] = (0, *seeds[0][1:])  # a seed on the border
        multiplier = float(rng.uniform(1.0, 3.0))
        iterations, radius = trial % 4, 1 + trial % 2
        ours = confidence_region_growing(image, seeds, multiplier=multiplier, iterations=iterations,
                                         radius=radius)
        assert_array_equal(ours, sitk_confidence(image, seeds, multiplier, iterations, radius))
        assert all(ours[s] for s in seeds)


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32)])
def test_confidence_matches_simpleitk_on_phantoms(shape):
    image, labels = make_phantom(shape, seed=2, noise=0.05)
    for label in (1, 2, 3):
        inside = np.argwhere(labels == label)
        seeds = [tuple(inside[len(inside) // 2]), tuple(inside[len(inside) // 3])]
        for iterations in (1, 3):
            ours = confidence_region_growing(image, seeds, multiplier=2.5, iterations=iterations)
            assert_array_equal(ours, sitk_confidence(image, seeds, 2.5, iterations, 1))
            assert 1 < ours.sum() < ours.size


def test_confidence_matches_simpleitk_on_integer_image_and_radius_zero():
    image = (smooth((48, 48), seed=8, dtype=np.float64) * 400 + 100).astype(np.int16)
    for seeds in ([(10, 12)], [(10, 12), (30, 40), (5, 44)]):
        ours = confidence_region_growing(image, seeds, multiplier=2.0, iterations=2)
        assert_array_equal(ours, sitk_confidence(image, seeds, 2.0, 2, 1))
    seeds = [(10, 12), (11, 12), (10, 13)]
    ours = confidence_region_growing(image, seeds, multiplier=3.0, iterations=1, radius=0)
    assert_array_equal(ours, sitk_confidence(image, seeds, 3.0, 1, 0))


def test_confidence_single_voxel_region_is_kept():
    # The seed's neighbours are far: the region is the seed alone, whose variance is
    # undefined. We stop and keep it (SimpleITK computes NaN bounds and returns nothing).
    image = np.array([[0, 100, 0], [100, 5, 100], [0, 100, 0]], dtype=np.float32)
    region = confidence_region_growing(image, (1, 1), multiplier=0.1, iterations=2)
    assert_array_equal(region, [[0, 0, 0], [0, 1, 0], [0, 0, 0]])


def test_confidence_constant_image_is_one_region():
    image = np.full((5, 6), 3.0)
    assert confidence_region_growing(image, (2, 2), iterations=3).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(multiplier=-1.0), "multiplier"), (dict(multiplier=np.inf), "multiplier"),
    (dict(multiplier=np.nan), "multiplier"), (dict(iterations=-1), "iterations"),
    (dict(iterations=1.5), "iterations"), (dict(radius=-1), "radius"), (dict(radius=0), "radius=0"),
    (dict(connectivity=3), "connectivity")])
def test_confidence_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        confidence_region_growing(np.arange(16.0).reshape(4, 4), (1, 1), **kwargs)


@given(st.integers(-3, 6), st.integers(-3, 6))
@settings(max_examples=25, deadline=None)
def test_confidence_bad_seed_raises_naming_it(row, col):
    image = np.arange(16.0).reshape(4, 4)
    if 0 <= row < 4 and 0 <= col < 4:
        assert confidence_region_growing(image, (row, col))[row, col]
    else:
        with pytest.raises(ValueError, match=rf"seed \({row}, {col}\)"):
            confidence_region_growing(image, (row, col))


def test_confidence_nan_around_seed_raises():
    image = np.zeros((4, 4))
    image[0, 1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        confidence_region_growing(image, (0, 0))

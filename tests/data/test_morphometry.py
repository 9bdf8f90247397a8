"""Tests of mlimaging.data.morphometry: worked examples, invariants, skimage oracle, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose, assert_array_equal
from skimage.measure import regionprops

from mlimaging.data.morphometry import FEATURE_NAMES, digit_features

AREA, WIDTH, HEIGHT, SLANT, THICKNESS, LENGTH = range(6)


def test_feature_names_order():
    assert FEATURE_NAMES == ("area", "width", "height", "slant", "thickness", "length")


# ---------------------------------------------------------------- worked examples by hand


def test_filled_rectangle_area_width_height_exact():
    img = np.zeros((20, 20))
    img[3:15, 5:9] = 1.0  # 12 rows x 4 columns
    f = digit_features(img)[0]
    assert f[AREA] == 48
    assert f[WIDTH] == 4
    assert f[HEIGHT] == 12
    assert f[SLANT] == 0.0  # taller than wide: principal axis vertical
    # wider than tall: the principal axis is horizontal, slant pi/2
    assert digit_features(img.T)[0, SLANT] == pytest.approx(np.pi / 2)


def test_vertical_bar_slant_zero_thickness_and_length():
    img = np.zeros((16, 16))
    img[2:13, 7] = 1.0  # 11 pixels, one wide
    f = digit_features(img)[0]
    assert f[SLANT] == 0.0
    assert f[THICKNESS] == 1.0
    assert f[LENGTH] == 11
    assert f[AREA] == 11 and f[WIDTH] == 1 and f[HEIGHT] == 11


def test_diagonal_slant_sign():
    backslash = np.eye(12)  # top-left to bottom-right: leans left, "\"
    slash = backslash[::-1]  # bottom-left to top-right: leans right (italic), "/"
    assert digit_features(slash)[0, SLANT] == pytest.approx(np.pi / 4)
    assert digit_features(backslash)[0, SLANT] == pytest.approx(-np.pi / 4)


def test_one_pixel_lines_thickness_one_length_pixel_count():
    img = np.zeros((3, 20, 20))
    img[0, 10, 2:17] = 1  # horizontal, 15 px
    img[1][np.arange(3, 17), np.arange(3, 17)] = 1  # diagonal, 14 px
    img[2, 4:9, 5] = 1  # vertical, 5 px
    f = digit_features(img)
    assert_array_equal(f[:, THICKNESS], [1.0, 1.0, 1.0])
    assert_array_equal(f[:, LENGTH], [15, 14, 5])
    assert_array_equal(f[:, AREA], [15, 14, 5])


def test_thickness_grows_with_stroke_width():
    widths = [1, 2, 3, 4, 5]
    img = np.zeros((len(widths), 40, 40))
    for i, w in enumerate(widths):
        img[i, 4:36, 10:10 + w] = 1  # straight bars 32 px long
    thick = digit_features(img)[:, THICKNESS]
    assert np.all(np.diff(thick) > 0.5)
    # area / skeleton length: within 20 % of the true width on long bars
    assert_allclose(thick, widths, rtol=0.2)


def test_threshold_is_strict_and_honoured():
    img = np.zeros((10, 10))
    img[2, 2:6] = 0.7
    img[6, 2:5] = 0.3
    assert digit_features(img)[0, AREA] == 4
    assert digit_features(img, threshold=0.2)[0, AREA] == 7
    assert digit_features(img, threshold=0.7)[0, AREA] == 0  # strictly greater


def test_empty_images_give_zeros():
    batch = np.zeros((3, 12, 12))
    batch[1, 3:8, 4] = 1
    f = digit_features(batch)
    assert_array_equal(f[0], np.zeros(6))
    assert_array_equal(f[2], np.zeros(6))
    assert f[1, AREA] == 5
    assert digit_features(np.zeros((0, 28, 28))).shape == (0, 6)


# ---------------------------------------------------------------- shapes, types


def test_shapes_types_and_torch_input():
    rng = np.random.default_rng(0)
    batch = (rng.random((4, 28, 28)) > 0.7).astype(np.float32)
    f3 = digit_features(batch)
    assert f3.shape == (4, 6) and f3.dtype == np.float64
    assert_array_equal(digit_features(batch[:, None]), f3)  # (N, 1, H, W)
    assert_array_equal(digit_features(torch.from_numpy(batch)), f3)
    assert_array_equal(digit_features(torch.from_numpy(batch)[:, None]), f3)
    assert_array_equal(digit_features(batch > 0.5), f3)  # bool
    one = digit_features(batch[2])
    assert one.shape == (1, 6)
    assert_array_equal(one[0], f3[2])
    img = torch.from_numpy(batch).requires_grad_(True)
    assert digit_features(img).shape == (4, 6)  # tensors needing grad are detached


def test_batch_equals_one_by_one_including_border_strokes():
    """The mosaic trick must give exactly the per-image features."""
    rng = np.random.default_rng(1)
    batch = rng.random((12, 14, 11)) > 0.55
    batch[0] = True  # all foreground, touching every border
    batch[1, :, 0] = True
    together = digit_features(batch)
    alone = np.concatenate([digit_features(b) for b in batch])
    assert_array_equal(together, alone)


def test_input_is_not_modified():
    img = np.zeros((10, 10))
    img[2:8, 3] = 0.9
    copy = img.copy()
    digit_features(img)
    assert_array_equal(img, copy)


# ---------------------------------------------------------------- oracle: skimage regionprops


def test_oracle_regionprops_area_bbox_orientation():
    rng = np.random.default_rng(2)
    checked = 0
    for _ in range(30):
        img = np.zeros((20, 20), dtype=bool)
        r0, c0 = rng.integers(1, 8, size=2)
        img[r0:r0 + 10, c0:c0 + 10] = rng.random((10, 10)) > 0.3
        labels = img.astype(int)
        props = regionprops(labels)[0]
        f = digit_features(img)[0]
        assert f[AREA] == props.area
        r_min, c_min, r_max, c_max = props.bbox
        assert f[HEIGHT] == r_max - r_min and f[WIDTH] == c_max - c_min
        ev = props.inertia_tensor_eigvals
        if ev[0] - ev[1] < 1e-6 * ev[0]:
            continue  # isotropic: no principal axis
        # skimage measures the angle counter-clockwise from the row axis; ours is clockwise
        # from the upward vertical: slant = -orientation modulo pi (compare doubled angles).
        assert_allclose(np.cos(2 * f[SLANT]), np.cos(-2 * props.orientation), atol=1e-9)
        assert_allclose(np.sin(2 * f[SLANT]), np.sin(-2 * props.orientation), atol=1e-9)
        checked += 1
    assert checked > 20


# ---------------------------------------------------------------- properties (hypothesis)

binary_images = arrays(dtype=bool, shape=st.tuples(st.integers(1, 12), st.integers(1, 12)))


@settings(max_examples=40, deadline=None)
@given(binary_images)
def test_property_ranges(img):
    f = digit_features(img)[0]
    h, w = img.shape
    if not img.any():
        assert_array_equal(f, np.zeros(6))
        return
    assert f[AREA] == img.sum()
    assert 1 <= f[WIDTH] <= w and 1 <= f[HEIGHT] <= h
    assert f[AREA] <= f[WIDTH] * f[HEIGHT]
    assert -np.pi / 2 < f[SLANT] <= np.pi / 2 + 1e-12
    assert 1 <= f[LENGTH] <= f[AREA]  # thinning keeps a pixel of every component
    assert f[THICKNESS] >= 1.0


@settings(max_examples=40, deadline=None)
@given(binary_images, st.integers(0, 3), st.integers(0, 3))
def test_property_transpose_flip_translate(img, dr, dc):
    f = digit_features(img)[0]
    ft = digit_features(img.T)[0]
    assert ft[AREA] == f[AREA] and ft[WIDTH] == f[HEIGHT] and ft[HEIGHT] == f[WIDTH]
    # Mirroring left-right mirrors the slant (up to the pi/2 wrap of a horizontal axis).
    fm = digit_features(img[:, ::-1])[0]
    assert fm[AREA] == f[AREA] and fm[WIDTH] == f[WIDTH] and fm[HEIGHT] == f[HEIGHT]
    assert_allclose(np.sin(2 * fm[SLANT]), -np.sin(2 * f[SLANT]), atol=1e-9)
    assert_allclose(np.cos(2 * fm[SLANT]), np.cos(2 * f[SLANT]), atol=1e-9)
    # Translation inside a larger canvas changes nothing.
    h, w = img.shape
    canvas = np.zeros((h + 3, w + 3), dtype=bool)
    canvas[dr:dr + h, dc:dc + w] = img
    assert_allclose(digit_features(canvas)[0], f, atol=1e-12)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "images, match",
    [
        (np.zeros((2, 3, 8, 8)), "one channel"),
        (np.zeros((1, 1, 1, 8, 8)), "shape"),
        (np.zeros(8), "shape"),
        (np.array([["a", "b"], ["c", "d"]]), "numeric"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.zeros((2, 0, 5)), "non-empty"),
    ],
)
def test_bad_images_raise(images, match):
    with pytest.raises(ValueError, match=match):
        digit_features(images)


def test_bad_threshold_raises():
    with pytest.raises(ValueError, match="threshold"):
        digit_features(np.zeros((4, 4)), threshold=float("nan"))

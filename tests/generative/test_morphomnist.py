"""Morpho-MNIST measurements, perturbations and the synthetic causal data (``generative.morphomnist``).

Oracles: scikit-image's pyramid_expand / pyramid_reduce / skeletonize / moments_central /
binary dilation and erosion by a disk, SciPy's distance transform, and the Morpho-MNIST
reference formulas written out with loops. Invariants: shapes of known geometry, monotone
thinning/thickening, the causal data's ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy import ndimage as ndi
from skimage import measure as skmeasure
from skimage import morphology, transform

from mlimaging.data import load_dataset
from mlimaging.generative import _morpho
from mlimaging.generative.morphomnist import (
    causal_mnist,
    fracture,
    intensity_noise,
    measure,
    set_intensity,
    set_thickness,
    swell,
    thicken,
    thickness_noise,
    thin,
    true_intensity,
    true_thickness,
)


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist5k", split="test")
    return ds.data[:40, 0].numpy().astype(np.float64) / 255.0


@pytest.fixture(scope="module")
def causal():
    return causal_mnist(300, seed=3, split="test")


def bar(width: int, height: int = 16, size: int = 28) -> np.ndarray:
    img = np.zeros((size, size))
    r0, c0 = (size - height) // 2, (size - width) // 2
    img[r0:r0 + height, c0:c0 + width] = 1.0
    return img


def parallelogram(theta: float, half_width: float = 1.5, half_height: float = 9.0) -> np.ndarray:
    """A bar sheared so that it leans right by ``theta`` (top to the right)."""
    yy, xx = np.mgrid[0:28, 0:28] + 0.5
    inside = (np.abs(yy - 14) <= half_height) & (np.abs((xx - 14) + np.tan(theta) * (yy - 14)) <= half_width)
    return inside.astype(np.float64)


# ------------------------------------------------------------------------------ oracles: the kernels
def test_expand_and_reduce_equal_skimage_pyramids(digits):
    rng = np.random.default_rng(0)
    for x in (digits[:4], rng.random((3, 20, 28)), (rng.random((2, 28, 28)) > 0.8).astype(float)):
        ref = np.stack([transform.pyramid_expand(a, upscale=4, order=3) for a in x])
        assert_allclose(_morpho.expand(x, 4), ref, atol=1e-12)
        high = (ref > 0.5).astype(float)
        ref_down = np.stack([transform.pyramid_reduce(a, downscale=4, order=3) for a in high])
        assert_allclose(_morpho.reduce(high, 4), ref_down, atol=1e-12)
    assert_allclose(_morpho.expand(digits[:2], 2), np.stack([transform.pyramid_expand(a, upscale=2, order=3)
                                                             for a in digits[:2]]), atol=1e-12)


def test_skeleton_and_distance_equal_skimage_and_scipy_on_the_whole_image(digits):
    mask, _ = _morpho.binarise(_morpho.expand(digits[:10], 4), 0.5)
    skel, dist = _morpho.skeleton(mask), _morpho.inside_distance(mask)
    out = _morpho.outside_distance(mask)
    for k in range(10):
        np.testing.assert_array_equal(skel[k], morphology.skeletonize(mask[k]))
        assert_allclose(dist[k], ndi.distance_transform_edt(mask[k]))
        assert_allclose(out[k], ndi.distance_transform_edt(~mask[k]))


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
def test_offset_render_is_binary_dilation_and_erosion_by_a_disk(digits, radius):
    mask, _ = _morpho.binarise(_morpho.expand(digits[:3], 4), 0.5)
    sdf = np.where(mask, _morpho.inside_distance(mask) - 0.5, 0.5 - _morpho.outside_distance(mask))
    disk = morphology.disk(radius).astype(bool)
    dilated = _morpho.offset_render(sdf, np.full(3, float(radius))) >= 1.0  # fully covered pixels
    eroded = _morpho.offset_render(sdf, np.full(3, -float(radius))) > 0.0  # pixels covered at all
    for k in range(3):
        np.testing.assert_array_equal(dilated[k], ndi.binary_dilation(mask[k], structure=disk))
        np.testing.assert_array_equal(eroded[k], ndi.binary_erosion(mask[k], structure=disk))


def test_skeleton_length_is_the_reference_correlation_formula(digits):
    mask, _ = _morpho.binarise(_morpho.expand(digits[:6], 4), 0.5)
    skel = _morpho.skeleton(mask)
    weights = np.array([[0, 0, 0], [0, 0, 1], [np.sqrt(2), 1, np.sqrt(2)]])
    ref = [np.sum(ndi.correlate(s.astype(float), weights, mode="constant") * s) for s in skel]
    assert_allclose(_morpho.skeleton_length(skel), ref)


def test_slant_equals_skimage_central_moments(digits):
    m = measure(digits[:8])
    for k, x in enumerate(digits[:8]):
        mu = skmeasure.moments_central(transform.pyramid_expand(x, upscale=4, order=3), order=2)
        assert m["slant"][k] == pytest.approx(np.arctan(-mu[1, 1] / mu[2, 0]), abs=1e-9)


def test_bounding_parallelogram_equals_the_reference_loops(digits):
    high = _morpho.expand(digits[:3], 4)
    mom = _morpho.moments(high)
    shear = mom["u11"] / mom["u02"]
    left, right, top, bottom = _morpho.bounding_parallelogram(high, shear, mom["y"], 0.02)
    h, w = high.shape[1:]
    y, x = np.mgrid[0:h, 0:w]
    for k in range(3):
        img = high[k] / high[k].sum()
        hcdf = [img[x + 0.5 < t + shear[k] * (y - mom["y"][k])].sum() for t in range(w)]
        vcdf = [img[y < t].sum() for t in range(h)]
        assert_allclose([left[k], right[k]], np.interp([0.01, 0.99], hcdf, np.arange(w)), atol=1e-9)
        assert_allclose([top[k], bottom[k]], np.interp([0.01, 0.99], vcdf, np.arange(h)), atol=1e-9)


# ------------------------------------------------------------------------ shapes of known geometry
@pytest.mark.parametrize("width", [2, 3, 4, 6])
def test_a_bar_of_width_w_has_thickness_w_and_area_w_times_h(width):
    m = measure(bar(width))
    assert m["thickness"] == pytest.approx(width, abs=0.3)
    assert m["area"] == pytest.approx(width * 16, rel=0.05)
    assert abs(m["slant"]) < 1e-6


@pytest.mark.parametrize("degrees", [-30, -15, 0, 10, 25])
def test_a_sheared_bar_has_the_shear_angle_as_slant(degrees):
    assert np.rad2deg(measure(parallelogram(np.deg2rad(degrees)))["slant"]) == pytest.approx(degrees, abs=1.0)


def test_slant_is_positive_for_a_digit_leaning_right_and_flips_with_the_mirror_image(digits):
    assert measure(parallelogram(0.4))["slant"] > 0
    m, mirrored = measure(digits[:10]), measure(digits[:10, :, ::-1])
    assert_allclose(mirrored["slant"], -m["slant"], atol=1e-9)
    assert_allclose(mirrored["width"], m["width"], atol=1e-6)


@pytest.mark.parametrize(("w", "h"), [(10, 16), (6, 20), (16, 8)])
def test_a_rectangle_has_its_width_and_height(w, h):
    m = measure(bar(w, h))
    assert m["width"] == pytest.approx(w, abs=1.0)
    assert m["height"] == pytest.approx(h, abs=1.0)


def capsule(p0, p1, width: float, size: int = 28) -> np.ndarray:
    """Pixels whose centre lies within ``width / 2`` of the segment p0-p1 (row, column)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    t = np.clip(((yy - p0[0]) * d[0] + (xx - p0[1]) * d[1]) / (d @ d), 0, 1)
    return (np.hypot(yy - p0[0] - t * d[0], xx - p0[1] - t * d[1]) <= width / 2).astype(float)


def test_length_of_a_segment_does_not_depend_on_its_direction():
    # 16 px segments at 0, 45 and 90 degrees: diagonal steps count sqrt 2 (without, 45 degrees gives ~11)
    centre = np.array([13.5, 13.5])
    lengths = []
    for degrees in (0, 45, 90):
        v = 8 * np.array([np.cos(np.deg2rad(degrees)), np.sin(np.deg2rad(degrees))])
        lengths.append(measure(capsule(centre - v, centre + v, 2.0))["length"])
    assert_allclose(lengths, 16.0, atol=1.0)


def test_measure_is_invariant_to_the_value_range_and_translation(digits):
    a = measure(digits[:5])
    b = measure((digits[:5] * 255).astype(np.uint8))
    c = measure(np.roll(digits[:5], (2, -1), axis=(1, 2)))
    for key in ("area", "thickness", "slant", "length"):
        assert_allclose(b[key], a[key], rtol=0.02, atol=0.02)
        assert_allclose(c[key], a[key], rtol=0.01, atol=1e-6)  # equal up to pixels at the threshold
    assert_allclose(b["intensity"], a["intensity"], atol=1.0)


def test_measure_input_forms_agree(digits):
    x = digits[:3]
    batch = measure(x)
    assert set(batch) == {"area", "length", "thickness", "slant", "width", "height", "intensity"}
    for key, value in measure(torch.from_numpy(x[:, None]).float()).items():
        assert_allclose(value, batch[key], rtol=1e-4, atol=1e-4)
    one = measure(x[0])
    assert all(isinstance(v, float) for v in one.values())
    assert one["thickness"] == pytest.approx(batch["thickness"][0])


def test_blank_image_has_no_stroke():
    m = measure(np.zeros((2, 28, 28)))
    assert_allclose(m["area"], 0.0)
    assert np.isnan(m["thickness"]).all() and np.isnan(m["slant"]).all()


# ------------------------------------------------------------------------------------ perturbations
def test_thin_and_thicken_move_the_thickness_monotonically(digits):
    x = digits[:12]
    t0 = measure(x)["thickness"]
    thinner = [measure(thin(x, a))["thickness"] for a in (0.2, 0.4)]
    thicker = [measure(thicken(x, a))["thickness"] for a in (0.5, 1.0)]
    assert np.all(thinner[1] < thinner[0]) and np.all(thinner[0] < t0)
    assert np.all(t0 < thicker[0]) and np.all(thicker[0] < thicker[1])
    # the paper's relations: (1 - a) T and (1 + a) T
    assert np.median(np.abs(thicker[1] - 2 * t0)) < 0.3
    assert np.median(np.abs(thinner[1] - 0.6 * t0)) < 0.3


def test_zero_amount_keeps_the_stroke(digits):
    x = digits[:5]
    assert_allclose(measure(thin(x, 0.0))["thickness"], measure(x)["thickness"], atol=0.15)


@pytest.mark.parametrize("target", [1.5, 2.5, 4.0, 5.0])
def test_set_thickness_reaches_the_target(digits, target):
    got = measure(set_thickness(digits[:20], target))["thickness"]
    assert np.nanmedian(np.abs(got - target)) < 0.1
    assert np.nanquantile(np.abs(got - target), 0.9) < 0.3


def test_set_thickness_per_image_targets_and_types(digits):
    targets = np.linspace(1.5, 4.5, 6)
    out = set_thickness(torch.from_numpy(digits[:6, None]).float(), torch.from_numpy(targets))
    assert isinstance(out, torch.Tensor) and out.shape == (6, 1, 28, 28) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert_allclose(measure(out)["thickness"], targets, atol=0.3)
    u8 = set_thickness((digits[:2] * 255).astype(np.uint8), 3.0)
    assert u8.dtype == np.float32 and u8.max() > 200


def test_set_intensity_sets_the_measured_intensity(digits):
    targets = np.array([70.0, 128.0, 200.0, 255.0])
    out = set_intensity(digits[:4], targets)
    assert_allclose(measure(out)["intensity"], targets, atol=1e-3)
    assert out.max() <= 1.0
    out255 = set_intensity(digits[:4] * 255, targets)
    assert_allclose(out255 / 255, out, atol=1e-5)


def test_swell_and_fracture_are_seeded_and_do_what_they_say(digits):
    x = digits[:6]
    a, b = swell(x, seed=1), swell(x, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, swell(x, seed=2))
    assert np.mean(measure(a)["area"] > measure(thin(x, 0.0))["area"]) >= 0.5
    one_bar = bar(3, 22)
    pieces = [ndi.label(fracture(one_bar, k, seed=0) > 0.5)[1] for k in (0, 1, 2)]
    assert pieces[0] == 1 and pieces[1] == 2 and pieces[2] == 3
    np.testing.assert_array_equal(fracture(x, seed=4), fracture(x, seed=np.random.default_rng(4)))


# ------------------------------------------------------------------------------- the causal data
def test_causal_mnist_measured_thickness_and_intensity_follow_the_scm(causal):
    m = measure(causal["images"])
    t, i = causal["thickness"].numpy(), causal["intensity"].numpy()
    assert np.corrcoef(m["thickness"], t)[0, 1] >= 0.95
    assert np.median(np.abs(m["thickness"] - t)) < 0.1
    assert_allclose(m["intensity"], i, atol=0.5)


def test_causal_mnist_holds_its_ground_truth(causal):
    n = 300
    assert causal["images"].shape == (n, 1, 28, 28) and causal["images"].dtype == torch.float32
    assert float(causal["images"].min()) >= 0.0 and float(causal["images"].max()) <= 1.0
    t, eps_t, eps_i = causal["thickness"].numpy(), causal["eps_t"].numpy(), causal["eps_i"].numpy()
    assert_allclose(t, true_thickness(eps_t), rtol=1e-6)
    assert_allclose(causal["intensity"].numpy(), true_intensity(t, eps_i), rtol=1e-5)
    assert_allclose(intensity_noise(t, causal["intensity"].numpy()), eps_i, atol=1e-3)
    assert_allclose(thickness_noise(t), eps_t, atol=1e-6)
    assert causal["digit"].dtype == torch.int64 and set(causal["digit"].tolist()) <= set(range(10))
    assert len(set(causal["index"].tolist())) == n  # drawn without replacement


def test_causal_mnist_noise_has_the_stated_distributions():
    data = causal_mnist(1, seed=0)  # warm-up of the loader; the noise itself:
    rng = np.random.default_rng(0)
    rng.choice(3500, size=1, replace=False)
    assert data["eps_t"][0] == pytest.approx(rng.gamma(10.0, 1 / 5.0), rel=1e-6)
    draws = causal_mnist(200, seed=5, split="val")
    assert 1.7 < float(draws["eps_t"].mean()) < 2.3  # Gamma(10, rate 5): mean 2, sd 0.63
    assert abs(float(draws["eps_i"].mean())) < 0.25


def test_causal_mnist_is_repeatable_and_takes_a_source(digits):
    a, b = causal_mnist(16, seed=7, split="test"), causal_mnist(16, seed=7, split="test")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not torch.equal(a["images"], causal_mnist(16, seed=8, split="test")["images"])
    own = causal_mnist(5, seed=0, source=(digits[:10], np.arange(10) % 10))
    assert own["images"].shape == (5, 1, 28, 28)
    assert torch.equal(own["digit"], own["index"] % 10)


def test_true_mechanisms_are_monotone_and_bounded():
    t = np.linspace(0.6, 6.0, 50)
    i = true_intensity(t, 0.0)
    assert np.all(np.diff(i) > 0) and np.all((i > 64) & (i < 255))
    assert true_intensity(np.array([2.0, 3.0]), np.array([[0.0], [1.0]])).shape == (2, 2)


# --------------------------------------------------------------------------------------- bad input
bad_shapes = st.sampled_from([(28,), (2, 3, 28, 28), (1, 2, 28, 28, 1), (2, 3), (1, 28, 2)])


@settings(max_examples=15, deadline=None)
@given(shape=bad_shapes)
def test_wrong_shapes_are_rejected(shape):
    with pytest.raises(ValueError, match="image"):
        measure(np.zeros(shape))


@settings(max_examples=20, deadline=None)
@given(row=st.integers(0, 27), col=st.integers(0, 27), value=st.sampled_from([np.nan, np.inf, -np.inf, -0.5, 300.0]))
def test_nan_inf_negative_and_out_of_range_values_are_rejected(row, col, value):
    img = bar(3)
    img[row, col] = value
    for fn in (measure, lambda x: thin(x, 0.5), lambda x: set_intensity(x, 100.0)):
        with pytest.raises(ValueError, match="image"):
            fn(img)


@settings(max_examples=20, deadline=None)
@given(amount=st.one_of(st.floats(max_value=-1e-6, allow_nan=False), st.just(np.nan), st.just(np.inf)))
def test_negative_or_non_finite_amounts_are_rejected(amount):
    img = bar(3)
    for fn, name in ((lambda: thin(img, amount), "amount"), (lambda: thicken(img, amount), "amount"),
                     (lambda: set_thickness(img, amount), "thickness"),
                     (lambda: set_intensity(img, amount), "intensity")):
        with pytest.raises(ValueError, match=name):
            fn()


def test_bad_options_are_rejected():
    img = bar(3)
    with pytest.raises(ValueError, match="amount"):
        thin(img, 1.5)
    with pytest.raises(ValueError, match="scale"):
        measure(img, scale=0)
    with pytest.raises(ValueError, match="threshold"):
        measure(img, threshold=1.0)
    with pytest.raises(ValueError, match="one value per image"):
        set_thickness(np.stack([img, img]), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="num_fractures"):
        fracture(img, -1)
    with pytest.raises(ValueError, match="strength"):
        swell(img, strength=0.5)
    with pytest.raises(ValueError, match="seed"):
        swell(img, seed=-1)
    with pytest.raises(ValueError, match="intensity"):
        intensity_noise(2.0, 300.0)
    with pytest.raises(ValueError, match="n must"):
        causal_mnist(0)
    with pytest.raises(ValueError, match="dtype"):
        measure(np.zeros((28, 28), dtype=complex))

"""Tests for mlimaging.metrics.similarity: SSD, SAD, NCC, MI and NMI (NumPy and torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy import ndimage as ndi
from skimage.metrics import normalized_mutual_information as sk_nmi
from sklearn.metrics import mutual_info_score

from mlimaging.metrics import mutual_information, ncc, normalized_mutual_information, sad, ssd

# The course's worked example.
IM1 = np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1])
IM2 = np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1])
INTEGER_BINS = {"bins": 6, "value_range": (-0.5, 5.5)}  # one bin per integer 0..5


def _h(probabilities):
    return -sum(p * math.log(p) for p in probabilities if p > 0)


def _smooth_pair(seed=1, shape=(48, 48)):
    """A smooth image and a non-monotone, slightly noisy remapping of it."""
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.standard_normal(shape), 3)
    y = np.sin(3 * x / x.std()) + 0.05 * rng.standard_normal(shape)
    return x, y


def _bin_labels(v, bins):
    """Bin index of each voxel as np.histogramdd assigns it (bins over [min, max], last closed)."""
    edges = np.linspace(v.min(), v.max(), bins + 1)
    return np.clip(np.searchsorted(edges, v.ravel(), side="right") - 1, 0, bins - 1)


# --------------------------------------------------------------------------- worked example
def test_worked_example_ssd_sad_cc():
    diffs = [0, 0, 1, 0, 2, 0, 1, 4, 2, 0]  # |im1 - im2|
    assert sum(d * d for d in diffs) == 26  # the course's sum of squared differences
    assert sum(diffs) == 10
    assert_allclose(ssd(IM1, IM2), 26 / 10, rtol=1e-15)
    assert_allclose(sad(IM1, IM2), 10 / 10, rtol=1e-15)
    # means 2.2 and 1.2; sum xy = 29, sum x^2 = 66, sum y^2 = 18
    cov = 29 - 10 * 2.2 * 1.2  # 2.6
    var1 = 66 - 10 * 2.2**2  # 17.6
    var2 = 18 - 10 * 1.2**2  # 3.6
    assert_allclose(ncc(IM1, IM2), cov / math.sqrt(var1 * var2), rtol=1e-12)
    assert_allclose(ncc(IM1, IM2), 0.326637, atol=1e-6)


def test_worked_example_entropies():
    # joint counts of (im1, im2): (1,1) x4, (2,2), (2,1), (2,0), (3,2), (5,1), (4,2) once each
    h_xy = _h([0.4] + [0.1] * 6)
    h_x = _h([0.4, 0.3, 0.1, 0.1, 0.1])  # im1 = 1, 2, 3, 4, 5
    h_y = _h([0.1, 0.6, 0.3])  # im2 = 0, 1, 2
    mi = h_x + h_y - h_xy
    assert_allclose(mutual_information(IM1, IM2, **INTEGER_BINS), mi, rtol=1e-12)
    assert_allclose(normalized_mutual_information(IM1, IM2, **INTEGER_BINS), (h_x + h_y) / h_xy, rtol=1e-12)
    assert_allclose(mi, 0.568362, atol=1e-6)
    # per-image ranges with 3 and 5 bins per integer span give the same counts
    per_image = {"bins": 5, "value_range": ((0.5, 5.5), (-0.5, 2.5))}
    assert_allclose(mutual_information(IM1, IM2, **per_image), mi, rtol=1e-12)
    # torch input, same call: the same exact counts
    t1, t2 = torch.tensor(IM1, dtype=torch.float64), torch.tensor(IM2, dtype=torch.float64)
    assert float(mutual_information(t1, t2, **INTEGER_BINS)) == mutual_information(IM1, IM2, **INTEGER_BINS)
    # the Parzen estimate: the intensities sit on bin centres, so a narrow kernel is exact
    parzen = {"estimator": "parzen", "parzen_sigma": 0.1}
    assert_allclose(float(mutual_information(t1, t2, **INTEGER_BINS, **parzen)), mi, rtol=1e-12)
    nmi_t = normalized_mutual_information(t1, t2, **INTEGER_BINS, **parzen)
    assert_allclose(float(nmi_t), (h_x + h_y) / h_xy, rtol=1e-12)


# --------------------------------------------------------------------------- invariants
def test_identical_images():
    x = np.random.default_rng(0).random((6, 7, 5))
    assert ssd(x, x) == 0.0
    assert sad(x, x) == 0.0
    assert_allclose(ncc(x, x), 1.0, rtol=1e-12)
    assert normalized_mutual_information(x, x) == pytest.approx(2.0, rel=1e-12)
    # MI(x, x) = H(x)
    h = _h(np.bincount(_bin_labels(x, 32), minlength=32) / x.size)
    assert_allclose(mutual_information(x, x), h, rtol=1e-12)


@pytest.mark.parametrize(("a", "b", "expected"), [(2.5, -3.0, 1.0), (0.01, 100.0, 1.0), (-4.0, 1.0, -1.0)])
def test_ncc_affine_invariance(a, b, expected):
    x = np.random.default_rng(1).normal(size=(9, 11))
    assert_allclose(ncc(x, a * x + b), expected, rtol=1e-12)
    y = np.random.default_rng(2).normal(size=(9, 11))
    assert_allclose(ncc(x, a * y + b), expected * ncc(x, y), rtol=1e-10)


def test_ssd_sad_known_values_and_symmetry():
    rng = np.random.default_rng(3)
    x, y = rng.random((5, 6)), rng.random((5, 6))
    assert_allclose(ssd(x, y), np.mean((x - y) ** 2), rtol=1e-14)
    assert_allclose(sad(x, y), np.mean(np.abs(x - y)), rtol=1e-14)
    assert ssd(x, y) == ssd(y, x)
    assert_allclose(ssd(x, x + 0.5), 0.25, rtol=1e-14)  # a constant offset of 0.5 everywhere
    assert_allclose(ncc(x, y), np.corrcoef(x.ravel(), y.ravel())[0, 1], rtol=1e-12)


def test_constant_images():
    x = np.random.default_rng(4).random((8, 8))
    c = np.full((8, 8), 0.1)  # 0.1 is not exact in binary: the mean has rounding
    assert ncc(x, c) == 0.0
    assert ncc(c, c) == 0.0
    assert ncc(torch.tensor(c, dtype=torch.float32), torch.tensor(x, dtype=torch.float32)).item() == 0.0
    assert mutual_information(x, c) == pytest.approx(0.0, abs=1e-12)
    assert normalized_mutual_information(x, c) == pytest.approx(1.0, abs=1e-12)
    assert normalized_mutual_information(c, c) == 1.0
    assert normalized_mutual_information(torch.tensor(c), torch.tensor(c)).item() == 1.0


def test_mi_symmetric():
    x, y = _smooth_pair()
    assert_allclose(mutual_information(x, y), mutual_information(y, x), rtol=1e-12)
    assert_allclose(normalized_mutual_information(x, y), normalized_mutual_information(y, x), rtol=1e-12)
    tx, ty = torch.tensor(x), torch.tensor(y)
    assert_allclose(float(mutual_information(tx, ty)), float(mutual_information(ty, tx)), rtol=1e-12)
    assert mutual_information(x, y) > 0


def test_nmi_invariant_to_relabelling_intensity_levels():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 6, size=(12, 12))
    y = (x + rng.integers(0, 2, size=x.shape)) % 6  # statistically related to x
    perm = np.array([3, 0, 5, 1, 4, 2])  # a permutation of the levels: same min and max
    base = normalized_mutual_information(x, y, bins=6)
    assert 1.0 < base < 2.0
    assert normalized_mutual_information(x, perm[y], bins=6) == pytest.approx(base, rel=1e-12)
    assert mutual_information(perm[x], y, bins=6) == pytest.approx(mutual_information(x, y, bins=6), rel=1e-12)
    # a monotone, non-linear remap that keeps the levels in distinct bins: 0, 1, 8, 27, 64, 125
    cubes = y.astype(float) ** 3
    assert normalized_mutual_information(x, cubes, bins=128) == pytest.approx(
        normalized_mutual_information(x, y, bins=128), rel=1e-12
    )
    # NCC is not invariant to it
    assert abs(ncc(x, cubes) - ncc(x, y)) > 1e-3


def test_inputs_not_modified():
    x, y = _smooth_pair(shape=(10, 10))
    x0, y0 = x.copy(), y.copy()
    tx, ty = torch.tensor(x), torch.tensor(y)
    for f in (ssd, sad, ncc, mutual_information, normalized_mutual_information):
        f(x, y)
        f(tx, ty)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(tx.numpy(), x0)


# --------------------------------------------------------------------------- oracles
@pytest.mark.parametrize(
    ("shape", "bins"), [((40, 50), 32), ((12, 10, 9), 16), ((64,), 7), ((30, 30), 100)]
)
def test_nmi_matches_skimage(shape, bins):
    rng = np.random.default_rng(sum(shape) + bins)
    x = rng.normal(size=shape)
    y = 0.7 * x**2 + 0.3 * rng.normal(size=shape)
    assert_allclose(normalized_mutual_information(x, y, bins=bins), sk_nmi(x, y, bins=bins), rtol=1e-12)


def test_nmi_matches_skimage_on_camera():
    from skimage import data

    ref = data.camera()[200:296, 180:276].astype(np.float64)
    noisy = ref + np.random.default_rng(6).normal(scale=20.0, size=ref.shape)
    for bins in (32, 64):
        assert_allclose(normalized_mutual_information(noisy, ref, bins=bins), sk_nmi(noisy, ref, bins=bins), rtol=1e-12)
    assert normalized_mutual_information(ref, ref, bins=32) > normalized_mutual_information(noisy, ref, bins=32)


@pytest.mark.parametrize("bins", [2, 8, 32])
def test_mi_matches_sklearn_mutual_info_score(bins):
    x, y = _smooth_pair(seed=bins)
    expected = mutual_info_score(_bin_labels(x, bins), _bin_labels(y, bins))
    assert_allclose(mutual_information(x, y, bins=bins), expected, rtol=1e-10)


def test_mi_value_range_clips_into_edge_bins():
    x, y = _smooth_pair(seed=7)
    lo, hi = np.percentile(x, [10, 90])
    bins = 10
    edges = np.linspace(lo, hi, bins + 1)
    labels_x = np.clip(np.searchsorted(edges, np.clip(x, lo, hi).ravel(), side="right") - 1, 0, bins - 1)
    expected = mutual_info_score(labels_x, _bin_labels(y, bins))
    got = mutual_information(x, y, bins=bins, value_range=((lo, hi), (y.min(), y.max())))
    assert_allclose(got, expected, rtol=1e-10)


# --------------------------------------------------------------------------- torch path
def test_torch_matches_numpy_for_ssd_sad_ncc():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(2, 3, 7, 8)), rng.normal(size=(2, 3, 7, 8))
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for f in (ssd, sad, ncc):
        out = f(tx, ty)
        assert isinstance(out, torch.Tensor) and out.ndim == 0 and out.dtype == torch.float64
        assert isinstance(f(x, y), float)
        assert_allclose(out.item(), f(x, y), rtol=1e-10, atol=1e-12)
        # mixed inputs go through torch; float32 stays float32
        assert_allclose(f(tx, y).item(), f(x, y), rtol=1e-10)
        assert f(tx.float(), ty.float()).dtype == torch.float32
        assert_allclose(f(tx.float(), ty.float()).item(), f(x, y), rtol=1e-5, atol=1e-6)


def test_parzen_estimate_approaches_hard_histogram():
    x, y = _smooth_pair()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for f in (mutual_information, normalized_mutual_information):
        hard = f(x, y, bins=16)
        errors = [abs(f(tx, ty, bins=16, estimator="parzen", parzen_sigma=s).item() - hard) for s in (0.5, 0.2, 0.05)]
        assert errors[0] > errors[1] > errors[2]
        assert errors[2] < 2e-3 * hard  # stated tolerance: 0.2 % for parzen_sigma = 0.05
        assert f(tx, ty, bins=16, estimator="parzen").item() < hard  # the default kernel blurs the histogram


@pytest.mark.parametrize("f", [mutual_information, normalized_mutual_information])
@pytest.mark.parametrize("estimator", ["histogram", "parzen"])
def test_same_call_same_value_for_numpy_and_torch(f, estimator):
    """The estimator is a named argument, never chosen by the input type."""
    x, y = _smooth_pair(seed=3, shape=(20, 24))
    for kw in ({}, {"bins": 8}, {"bins": 12, "value_range": ((-0.5, 0.5), (-1.0, 1.0))}):
        kw = {**kw, "estimator": estimator}
        numpy_value = f(x, y, **kw)
        assert isinstance(numpy_value, float)
        t = f(torch.from_numpy(x), torch.from_numpy(y), **kw)
        assert isinstance(t, torch.Tensor) and t.ndim == 0 and t.dtype == torch.float64
        assert t.item() == pytest.approx(numpy_value, rel=1e-12, abs=1e-12)
        assert f(torch.from_numpy(x), y, **kw).item() == pytest.approx(numpy_value, rel=1e-12)  # mixed
        # float32 tensors: the same float32 values as a NumPy float32 array, result rounded to float32
        x32, y32 = x.astype(np.float32), y.astype(np.float32)
        t32 = f(torch.from_numpy(x32), torch.from_numpy(y32), **kw)
        assert t32.dtype == torch.float32
        assert t32.item() == pytest.approx(f(x32, y32, **kw), rel=1e-5)
    # the default is the exact histogram for both input types
    assert f(torch.from_numpy(x), torch.from_numpy(y)).item() == pytest.approx(f(x, y, estimator="histogram"),
                                                                              rel=1e-12)


def test_histogram_estimator_on_torch_matches_skimage_and_has_no_gradient():
    from skimage import data

    camera = data.camera()[::4, ::4].astype(np.float64)
    shifted = np.roll(camera, 3, axis=1)
    expected = sk_nmi(camera, shifted, bins=32)
    tc = torch.from_numpy(camera).requires_grad_(True)
    value = normalized_mutual_information(tc, torch.from_numpy(shifted))
    assert value.item() == pytest.approx(expected, rel=1e-12)
    assert not value.requires_grad  # exact counts are piecewise constant: use estimator="parzen" to optimise
    assert normalized_mutual_information(tc, torch.from_numpy(shifted), estimator="parzen").requires_grad


@pytest.mark.parametrize("estimator", ["hard", "Parzen", None, 1])
def test_bad_estimator_rejected(estimator):
    for f in (mutual_information, normalized_mutual_information):
        with pytest.raises(ValueError, match="estimator must be one of"):
            f(np.arange(6.0), np.arange(6.0), estimator=estimator)


# --------------------------------------------------------------------------- gradients
def _small_pair(seed=9, shape=(3, 4)):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    y = torch.rand(shape, generator=g, dtype=torch.float64)
    return x, y


def test_gradcheck_ssd_sad_ncc():
    x, y = _small_pair()
    y = y + torch.where(y > x, 0.1, -0.1)  # keep |x - y| > 0.1 (SAD is not smooth at 0)
    x.requires_grad_(True)
    y.requires_grad_(True)
    assert torch.autograd.gradcheck(ssd, (x, y))
    assert torch.autograd.gradcheck(sad, (x, y))
    assert torch.autograd.gradcheck(ncc, (x, y))


@pytest.mark.parametrize("f", [mutual_information, normalized_mutual_information])
def test_gradcheck_parzen_mi(f):
    x, y = _small_pair(shape=(3, 3))
    x.requires_grad_(True)
    y.requires_grad_(True)

    def fn(a, b):  # fixed bin edges: gradients do not flow through min / max
        return f(a, b, bins=4, value_range=(-0.2, 1.2), estimator="parzen", parzen_sigma=0.5)

    assert torch.autograd.gradcheck(fn, (x, y))


def test_gradient_step_improves_similarity():
    x_np, _ = _smooth_pair(seed=10, shape=(24, 24))
    rng = np.random.default_rng(11)
    x = torch.from_numpy(x_np)
    y0 = torch.from_numpy(x_np + 0.5 * x_np.std() * rng.normal(size=x_np.shape))
    def parzen_nmi(a, b):
        return normalized_mutual_information(a, b, estimator="parzen")

    for f, sign in ((ssd, -1.0), (sad, -1.0), (ncc, 1.0), (parzen_nmi, 1.0)):
        y = y0.clone().requires_grad_(True)
        value = f(x, y)
        (grad,) = torch.autograd.grad(value, y)
        assert torch.isfinite(grad).all()
        step = 0.1 * x_np.std() / grad.abs().max()
        improved = f(x, y0 + sign * step * grad)
        assert sign * (improved.item() - value.item()) > 0, f.__name__


# --------------------------------------------------------------------------- bad inputs
ALL = (ssd, sad, ncc, mutual_information, normalized_mutual_information)


@pytest.mark.parametrize("f", ALL)
def test_shape_mismatch_names_arguments(f):
    with pytest.raises(ValueError, match=r"x and y must have the same shape"):
        f(np.zeros((3, 4)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"x and y must have the same shape"):
        f(torch.zeros(5), torch.zeros(6))


@pytest.mark.parametrize("f", ALL)
def test_other_bad_inputs(f):
    with pytest.raises(ValueError, match="x is empty"):
        f(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="y must be an image .*scalar"):
        f(np.ones(3), 1.0)
    with pytest.raises(ValueError, match="x must be an image .*scalar"):
        f(torch.tensor(1.0), torch.tensor(1.0))
    with pytest.raises(ValueError, match="y must be a real numeric"):
        f(np.ones(3), np.array(["a", "b", "c"]))
    with pytest.raises(ValueError, match="x must be a real numeric"):
        f(torch.ones(3, dtype=torch.complex64), torch.ones(3))


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    which=st.sampled_from(["x", "y"]),
    bad=st.sampled_from([np.nan, np.inf, -np.inf]),
    as_torch=st.booleans(),
    f=st.sampled_from(ALL),
    data=st.data(),
)
def test_non_finite_rejected(shape, which, bad, as_torch, f, data):
    x = np.linspace(0.0, 1.0, int(np.prod(shape))).reshape(shape)
    y = x[::-1].copy() if x.ndim == 1 else x.copy() + 0.25
    target = x if which == "x" else y
    index = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    target[index] = bad
    if as_torch:
        x, y = torch.from_numpy(x), torch.from_numpy(y)
    with pytest.raises(ValueError, match=f"{which} contains NaN"):
        f(x, y)


@settings(max_examples=30, deadline=None)
@given(
    bins=st.one_of(
        st.integers(max_value=1), st.floats(allow_nan=True), st.booleans(), st.just("32"), st.none()
    ),
    f=st.sampled_from([mutual_information, normalized_mutual_information]),
)
def test_bad_bins_rejected(bins, f):
    with pytest.raises(ValueError, match="bins must be an integer >= 2"):
        f(np.arange(6.0), np.arange(6.0), bins=bins)


@pytest.mark.parametrize(
    "value_range", [(1.0, 0.0), (0.0, 0.0), (0.0, np.nan), (0.0, 1.0, 2.0), ((0, 1), (2, 1)), "ab"]
)
def test_bad_value_range_rejected(value_range):
    with pytest.raises(ValueError, match="value_range"):
        mutual_information(np.arange(6.0), np.arange(6.0), value_range=value_range)


@pytest.mark.parametrize("parzen_sigma", [0.0, -1.0, np.inf, np.nan])
def test_bad_parzen_sigma_rejected(parzen_sigma):
    with pytest.raises(ValueError, match="parzen_sigma"):
        normalized_mutual_information(torch.rand(5), torch.rand(5), parzen_sigma=parzen_sigma)


def test_bad_eps_rejected():
    with pytest.raises(ValueError, match="eps"):
        ncc(np.arange(4.0), np.arange(4.0), eps=-1.0)

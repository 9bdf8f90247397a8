"""Tests for mlimaging.metrics.surface: worked examples, a naive reference, MONAI/MedPy oracles,
the empty-mask policy and hypothesis properties."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose
from scipy import ndimage as ndi

from mlimaging.metrics import _distance
from mlimaging.metrics.surface import (
    average_surface_distance,
    hausdorff_distance,
    rms_surface_distance,
    surface_distances,
)

# ----------------------------------------------------------------------------- helpers


def naive_distances(pred, target, spacing):
    """Slow full-volume reference: scipy erosion (face-connected, border 0) + full EDT."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    structure = ndi.generate_binary_structure(pred.ndim, 1)
    bp = pred & ~ndi.binary_erosion(pred, structure, border_value=0)
    bt = target & ~ndi.binary_erosion(target, structure, border_value=0)
    d_pt = ndi.distance_transform_edt(~bt, sampling=spacing)[bp]
    d_tp = ndi.distance_transform_edt(~bp, sampling=spacing)[bt]
    return d_pt, d_tp


def blob(shape, seed, sigma=2.0, level=0.52):
    rng = np.random.default_rng(seed)
    return ndi.gaussian_filter(rng.random(shape), sigma) > level


def ellipsoid(shape, center, radii):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii, strict=True)) <= 1


@pytest.fixture(params=["default", "tiny-offsets", "no-brute-force"])
def search_mode(request, monkeypatch):
    """Run a test with the default offset search, and with settings that force the
    brute-force and KD-tree fallbacks to handle most voxels."""
    if request.param != "default":
        monkeypatch.setattr(_distance, "_MAX_OFFSETS", {1: 1, 2: 2, 3: 3})
        monkeypatch.setattr(_distance, "_EXTENSIONS", 2)
    if request.param == "no-brute-force":
        monkeypatch.setattr(_distance, "_BRUTE_FORCE_QUERIES", 0)
    _distance._offsets.cache_clear()
    yield request.param
    _distance._offsets.cache_clear()


# ----------------------------------------------------------------------------- worked examples


@pytest.mark.parametrize("k", [1, 2, 5])
def test_1d_segments_offset_by_k(k):
    a = np.zeros(20, bool)
    a[2:6] = True
    b = np.roll(a, k)
    d_ab, d_ba = surface_distances(a, b)
    # boundary of a is {2, 5}, of b {2 + k, 5 + k}
    assert d_ab.tolist() == [k, min(abs(3 - k), k)]
    assert d_ba.tolist() == [min(abs(3 - k), k), k]
    assert hausdorff_distance(a, b) == k


@pytest.mark.parametrize("k", [1, 3])
def test_2d_squares_offset_hd_is_k_and_spacing_scales_exactly(k):
    a = np.zeros((12, 12), bool)
    a[2:6, 2:6] = True
    b = np.roll(a, k, axis=1)
    assert hausdorff_distance(a, b) == k
    assert hausdorff_distance(a, b, spacing=(1.0, 0.7)) == pytest.approx(0.7 * k, rel=1e-15)
    # spacing along the other axis does not change a shift along axis 1
    assert hausdorff_distance(a, b, spacing=(5.0, 1.0)) == k


def test_single_voxels_anisotropic():
    a = np.zeros((4, 5, 6), bool)
    b = np.zeros_like(a)
    a[0, 0, 0] = True
    b[1, 2, 2] = True
    assert surface_distances(a, b)[0].tolist() == [3.0]
    d_ab, d_ba = surface_distances(a, b, spacing=(2.0, 0.5, 3.0))
    assert d_ab.tolist() == d_ba.tolist() == [math.sqrt(4 + 1 + 36)]
    assert hausdorff_distance(a, a) == 0.0
    assert surface_distances(a, a)[0].tolist() == [0.0]


def test_boundary_of_cube_inside_and_touching_the_border():
    inside = np.zeros((5, 5, 5), bool)
    inside[1:4, 1:4, 1:4] = True
    touching = np.ones((3, 3, 3), bool)  # the whole array: outside the array is outside
    for mask in (inside, touching):
        d, _ = surface_distances(mask, mask)
        assert d.size == 26  # all but the centre voxel
        assert not d.any()


def test_assd_pools_both_directions_and_is_not_the_mean_of_means():
    a = np.zeros((1, 9), bool)
    a[0, 1:4] = True  # boundary voxels 1, 2, 3
    b = np.zeros((1, 9), bool)
    b[0, 5] = True  # boundary voxel 5
    assert average_surface_distance(a, b) == (4 + 3 + 2 + 2) / 4
    assert average_surface_distance(a, b) != ((4 + 3 + 2) / 3 + 2) / 2  # MedPy <= 0.4
    assert average_surface_distance(a, b, symmetric=False) == 3.0
    assert average_surface_distance(b, a, symmetric=False) == 2.0
    assert rms_surface_distance(a, b) == pytest.approx(math.sqrt((16 + 9 + 4 + 4) / 4), rel=1e-15)
    assert rms_surface_distance(a, b, symmetric=False) == pytest.approx(math.sqrt(29 / 3), rel=1e-15)
    assert hausdorff_distance(a, b) == 4.0


def test_percentile_is_max_of_directed_linear_percentiles():
    a = np.zeros((1, 9), bool)
    a[0, 1:4] = True
    b = np.zeros((1, 9), bool)
    b[0, 5] = True
    # directed: [4, 3, 2] -> 50th percentile 3; [2] -> 2
    assert hausdorff_distance(a, b, percentile=50) == 3.0
    assert hausdorff_distance(a, b, percentile=25) == 2.5  # linear interpolation
    assert hausdorff_distance(a, b, percentile=0) == 2.0


def test_torch_and_int_inputs_match_numpy():
    a = blob((16, 16), 0)
    b = blob((16, 16), 1)
    expected = surface_distances(a, b, spacing=(0.5, 2.0))
    for x, y in ((torch.from_numpy(a), torch.from_numpy(b)), (a.astype(np.uint8), b.astype(float))):
        got = surface_distances(x, y, spacing=(0.5, 2.0))
        assert got[0].dtype == np.float64
        assert_allclose(got[0], expected[0], rtol=0)
        assert_allclose(got[1], expected[1], rtol=0)


def test_memory_layout_does_not_matter():
    a = blob((14, 12, 10), 4)
    b = blob((14, 12, 10), 5)
    expected = surface_distances(a, b, spacing=(1.0, 2.0, 0.5))
    big_a = np.zeros((28, 12, 10), bool)
    big_a[::2] = a
    big_b = np.zeros((28, 12, 10), bool)
    big_b[::2] = b
    for x, y in ((np.asfortranarray(a), np.asfortranarray(b)), (big_a[::2], big_b[::2])):
        got = surface_distances(x, y, spacing=(1.0, 2.0, 0.5))
        assert_allclose(got[0], expected[0], rtol=0)
        assert_allclose(got[1], expected[1], rtol=0)
    # transposed masks with transposed spacing: same distances, in the transposed C order
    d_t = surface_distances(a.T, b.T, spacing=(0.5, 2.0, 1.0))
    assert_allclose(np.sort(d_t[0]), np.sort(expected[0]), rtol=1e-12)


def test_inputs_are_not_modified():
    a = blob((12, 12, 6), 2)
    b = blob((12, 12, 6), 3)
    a0, b0 = a.copy(), b.copy()
    hausdorff_distance(a, b)
    assert (a == a0).all() and (b == b0).all()


# ----------------------------------------------------------------------------- naive reference


def _random_pairs():
    rng = np.random.default_rng(7)
    pairs = []
    for i in range(24):
        ndim = 1 + i % 3
        shape = tuple(int(n) for n in rng.integers(3, 14 if ndim == 3 else 30, size=ndim))
        p = rng.random(shape) < rng.uniform(0.05, 0.6)
        t = rng.random(shape) < rng.uniform(0.05, 0.6)
        if i % 4 == 0:
            t = ndi.binary_dilation(p) if p.any() else t
        if i % 5 == 0:  # a single far voxel
            t = np.zeros(shape, bool)
            t[tuple(n - 1 for n in shape)] = True
        spacing = tuple(float(s) for s in rng.uniform(0.3, 3.0, size=ndim))
        if p.any() and t.any():
            pairs.append((p, t, spacing))
    return pairs


def test_cropped_computation_equals_naive_full_volume_reference(search_mode):
    for p, t, spacing in _random_pairs():
        got = surface_distances(p, t, spacing=spacing)
        ref = naive_distances(p, t, spacing)
        assert_allclose(got[0], ref[0], rtol=1e-12)
        assert_allclose(got[1], ref[1], rtol=1e-12)


def test_structured_3d_with_far_outliers_equals_reference(search_mode):
    shape = (40, 36, 20)
    spacing = (0.8, 0.8, 2.5)
    t = ellipsoid(shape, (20, 18, 10), (12, 9, 5))
    p = np.roll(t, (2, -1, 2), axis=(0, 1, 2))
    p[0, 0, 0] = p[39, 35, 19] = True  # stray voxels in the corners (touching the border)
    got = surface_distances(p, t, spacing=spacing)
    ref = naive_distances(p, t, spacing)
    assert_allclose(got[0], ref[0], rtol=1e-12)
    assert_allclose(got[1], ref[1], rtol=1e-12)


# ----------------------------------------------------------------------------- oracles

try:  # oracles are test dependencies; without them only these tests are skipped
    import monai.metrics as monai_metrics
except ImportError:  # pragma: no cover
    monai_metrics = None
try:
    import medpy.metric.binary as medpy_binary
except ImportError:  # pragma: no cover
    medpy_binary = None
needs_monai = pytest.mark.skipif(monai_metrics is None, reason="monai not installed")
needs_medpy = pytest.mark.skipif(medpy_binary is None, reason="medpy not installed")


def _oracle_cases():
    cases = []
    for seed in range(3):
        cases.append((blob((32, 32, 16), seed), blob((32, 32, 16), seed + 10), (1.0, 1.0, 1.0)))
        cases.append((blob((32, 32, 16), seed + 20), blob((32, 32, 16), seed + 30), (0.8, 1.1, 2.5)))
    e = ellipsoid((32, 32, 16), (16, 16, 8), (10, 7, 5))
    cases.append((e, ndi.binary_dilation(e, iterations=2), (0.7, 0.7, 3.0)))
    cases.append((e, np.roll(e, (3, 0, 1), axis=(0, 1, 2)), (1.0, 1.0, 1.0)))
    for seed in range(2):
        cases.append((blob((48, 40), seed + 40, 3), blob((48, 40), seed + 50, 3), (1.0, 1.0)))
        cases.append((blob((48, 40), seed + 60, 3), blob((48, 40), seed + 70, 3), (0.5, 1.7)))
    return [c for c in cases if c[0].any() and c[1].any()]


ORACLE_CASES = _oracle_cases()


def _monai(fn, p, t, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = fn(torch.from_numpy(p)[None, None].float(), torch.from_numpy(t)[None, None].float(),
                   include_background=True, **kw)
    return float(value.item())


def test_enough_oracle_cases():
    assert len(ORACLE_CASES) >= 10


@needs_monai
@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
def test_boundary_matches_monai_edges(case):
    from monai.metrics.utils import get_mask_edges

    p, t, _ = ORACLE_CASES[case]
    edges_p, edges_t = get_mask_edges(p, t, crop=False)
    assert (np.asarray(edges_p) == _distance.boundary(p)).all()
    assert (np.asarray(edges_t) == _distance.boundary(t)).all()


@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
@needs_monai
def test_against_monai(case):
    p, t, sp = ORACLE_CASES[case]
    hd = monai_metrics.compute_hausdorff_distance
    asd = monai_metrics.compute_average_surface_distance
    assert_allclose(hausdorff_distance(p, t, spacing=sp), _monai(hd, p, t, spacing=sp), rtol=1e-6)
    # MONAI's distances and its torch.quantile interpolation are float32: allow 2 ulp-ish
    assert_allclose(hausdorff_distance(p, t, spacing=sp, percentile=95),
                    _monai(hd, p, t, spacing=sp, percentile=95), rtol=2e-6)
    assert_allclose(average_surface_distance(p, t, spacing=sp),
                    _monai(asd, p, t, spacing=sp, symmetric=True), rtol=1e-6)
    assert_allclose(average_surface_distance(p, t, spacing=sp, symmetric=False),
                    _monai(asd, p, t, spacing=sp, symmetric=False), rtol=1e-6)


@needs_monai
def test_against_monai_metric_classes():
    from monai.metrics import HausdorffDistanceMetric, SurfaceDistanceMetric

    p, t, sp = ORACLE_CASES[1]
    y_pred = torch.from_numpy(p)[None, None].float()
    y = torch.from_numpy(t)[None, None].float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd95 = HausdorffDistanceMetric(include_background=True, percentile=95)(y_pred, y, spacing=sp)
        assd = SurfaceDistanceMetric(include_background=True, symmetric=True)(y_pred, y, spacing=sp)
    assert_allclose(hausdorff_distance(p, t, spacing=sp, percentile=95), hd95.item(), rtol=2e-6)
    assert_allclose(average_surface_distance(p, t, spacing=sp), assd.item(), rtol=1e-6)


@needs_medpy
@pytest.mark.parametrize("case", range(len(ORACLE_CASES)))
def test_against_medpy(case):
    p, t, sp = ORACLE_CASES[case]
    assert_allclose(hausdorff_distance(p, t, spacing=sp), medpy_binary.hd(p, t, voxelspacing=sp), rtol=1e-6)
    assert_allclose(average_surface_distance(p, t, spacing=sp), medpy_binary.assd(p, t, voxelspacing=sp),
                    rtol=1e-6)
    assert_allclose(average_surface_distance(p, t, spacing=sp, symmetric=False),
                    medpy_binary.asd(p, t, voxelspacing=sp), rtol=1e-6)
    # MedPy's hd95 is the percentile of the pooled distances; ours is the max of the directed ones
    d_pt, d_tp = surface_distances(p, t, spacing=sp)
    assert_allclose(medpy_binary.hd95(p, t, voxelspacing=sp), np.percentile(np.concatenate([d_pt, d_tp]), 95),
                    rtol=1e-6)
    assert_allclose(hausdorff_distance(p, t, spacing=sp, percentile=95),
                    max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)), rtol=1e-12)


@needs_medpy
def test_medpy_hd95_differs_from_directed_definition_somewhere():
    diffs = []
    for p, t, sp in ORACLE_CASES:
        ours = hausdorff_distance(p, t, spacing=sp, percentile=95)
        diffs.append(abs(ours - medpy_binary.hd95(p, t, voxelspacing=sp)) / ours)
        assert ours >= medpy_binary.hd95(p, t, voxelspacing=sp) - 1e-9  # pooled <= max of directed
    assert max(diffs) > 1e-3


# ----------------------------------------------------------------------------- empty masks


def test_both_empty_is_zero_everywhere():
    z = np.zeros((6, 7), bool)
    d_pt, d_tp = surface_distances(z, z)
    assert d_pt.size == d_tp.size == 0
    for fn in (hausdorff_distance, average_surface_distance, rms_surface_distance):
        assert fn(z, z) == 0.0
        assert fn(z, z, empty_distance=float("nan")) == 0.0


def test_one_empty_defaults_to_physical_diagonal():
    z = np.zeros((30, 40, 5), bool)
    m = z.copy()
    m[3:6, 3:6, 1:3] = True
    sp = (0.5, 0.75, 2.0)
    diag = math.sqrt(15**2 + 30**2 + 10**2)
    for fn in (hausdorff_distance, average_surface_distance, rms_surface_distance):
        assert fn(m, z, spacing=sp) == pytest.approx(diag, rel=1e-15)
        assert fn(z, m, spacing=sp) == pytest.approx(diag, rel=1e-15)
        assert fn(z, m) == pytest.approx(math.sqrt(30**2 + 40**2 + 5**2), rel=1e-15)
        assert math.isnan(fn(m, z, empty_distance=float("nan")))
        assert fn(m, z, empty_distance=float("inf")) == math.inf
        assert fn(m, z, empty_distance=3.5) == 3.5
    d_pt, d_tp = surface_distances(m, z)
    assert d_pt.size == 18 and np.isinf(d_pt).all() and d_tp.size == 0
    d_pt, d_tp = surface_distances(z, m)
    assert d_pt.size == 0 and d_tp.size == 18 and np.isinf(d_tp).all()


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_value_error_naming_the_argument():
    a = np.zeros((5, 5), bool)
    a[1:3, 1:3] = True
    with pytest.raises(ValueError, match="shape"):
        hausdorff_distance(a, np.zeros((5, 6), bool))
    with pytest.raises(ValueError, match="pred.*NaN"):
        hausdorff_distance(np.full((5, 5), np.nan), a)
    with pytest.raises(ValueError, match="target.*binary"):
        average_surface_distance(a, a * 2)
    with pytest.raises(ValueError, match="spacing"):
        surface_distances(a, a, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        rms_surface_distance(a, a, spacing=(1.0, -1.0))
    with pytest.raises(ValueError, match="spacing"):
        rms_surface_distance(a, a, spacing=(1.0, float("nan")))
    for q in (-1, 100.5, float("nan"), "high"):
        with pytest.raises(ValueError, match="percentile"):
            hausdorff_distance(a, a, percentile=q)
    with pytest.raises(ValueError, match="empty_distance"):
        average_surface_distance(a, a, empty_distance=-1.0)
    with pytest.raises(ValueError, match="empty_distance"):
        average_surface_distance(a, a, empty_distance="far")
    with pytest.raises(ValueError, match="scalar"):
        surface_distances(np.bool_(True), np.bool_(True))


# ----------------------------------------------------------------------------- properties

masks = st.integers(1, 3).flatmap(
    lambda nd: hnp.array_shapes(min_dims=nd, max_dims=nd, min_side=1, max_side=9 if nd == 3 else 16)
).flatmap(
    lambda shape: st.tuples(
        hnp.arrays(bool, shape), hnp.arrays(bool, shape),
        st.lists(st.floats(0.25, 4.0), min_size=len(shape), max_size=len(shape)),
    )
)


@settings(max_examples=50, deadline=None)
@given(masks)
def test_symmetry_and_ordering(data):
    p, t, sp = data
    hd = hausdorff_distance(p, t, spacing=sp)
    assert hd == hausdorff_distance(t, p, spacing=sp)
    assert average_surface_distance(p, t, spacing=sp) == pytest.approx(
        average_surface_distance(t, p, spacing=sp), rel=1e-12)
    assert rms_surface_distance(p, t, spacing=sp) == pytest.approx(rms_surface_distance(t, p, spacing=sp), rel=1e-12)
    hd95 = hausdorff_distance(p, t, spacing=sp, percentile=95)
    assert hd >= hd95 >= 0.0
    if p.any() and t.any():
        assd = average_surface_distance(p, t, spacing=sp)
        assert assd <= rms_surface_distance(p, t, spacing=sp) * (1 + 1e-12) <= hd * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(masks)
def test_identical_masks_have_zero_distances(data):
    p, _, sp = data
    for fn in (hausdorff_distance, average_surface_distance, rms_surface_distance):
        assert fn(p, p, spacing=sp) == 0.0
    assert not surface_distances(p, p, spacing=sp)[0].any()


@settings(max_examples=50, deadline=None)
@given(masks, st.data())
def test_invariant_to_padding_with_background(data, draw):
    # masks drawn at random often touch the array border: padding must not change anything
    p, t, sp = data
    widths = [tuple(draw.draw(st.integers(0, 3), label="pad") for _ in range(2)) for _ in range(p.ndim)]
    d = surface_distances(p, t, spacing=sp)
    d_pad = surface_distances(np.pad(p, widths), np.pad(t, widths), spacing=sp)
    assert_allclose(d_pad[0], d[0], rtol=1e-12)
    assert_allclose(d_pad[1], d[1], rtol=1e-12)
    if p.any() and t.any():
        ref = naive_distances(p, t, sp)
        assert_allclose(d[0], ref[0], rtol=1e-12)
        assert_allclose(d[1], ref[1], rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
               elements=st.sampled_from([0.0, 1.0, 0.5, 2.0, -1.0, np.nan])),
)
def test_non_binary_inputs_raise(arr):
    ok = np.isin(arr, (0.0, 1.0)).all()
    if ok:
        surface_distances(arr, arr)
    else:
        with pytest.raises(ValueError, match="pred"):
            hausdorff_distance(arr, np.zeros(arr.shape, bool))

"""Tests of mlimaging.data.phantoms: each knob is measured to do what it says."""

from __future__ import annotations

import doctest
import inspect

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from mlimaging.data import PHANTOM_KNOBS, PhantomDataset, make_phantom, phantoms
from mlimaging.data.phantoms import MAX_STRUCTURES, _thick_slices

SHAPES = [(64, 64), (32, 32, 32)]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def interior(labels: np.ndarray, k: int, margin: int) -> np.ndarray:
    """Voxels of label k at least ``margin`` voxels away from any other label."""
    return ndimage.distance_transform_edt(labels == k) > margin


def class_values(n_structures: int = 3, contrast: float = 1.0) -> np.ndarray:
    """Clean intensity of each label, read off a default phantom."""
    clean, labels = make_phantom((64, 64), seed=0, n_structures=n_structures, contrast=contrast)
    return np.array([clean[labels == k][0] for k in range(n_structures + 1)])


# --------------------------------------------------------------------------- general
def test_docstring_examples_run():
    result = doctest.testmod(phantoms, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 8 and result.failed == 0


@pytest.mark.parametrize("shape", SHAPES + [(16, 16), (16, 20, 24), (40, 24)])
def test_shapes_dtypes_and_clean_image(shape):
    image, labels = make_phantom(shape, seed=3)
    assert image.shape == shape and labels.shape == shape
    assert image.dtype == np.float32 and labels.dtype == np.int64
    assert sorted(np.unique(labels).tolist()) == [0, 1, 2, 3]
    # Clean image: piecewise constant, one intensity per label, in [0, 1], well separated.
    values = [np.unique(image[labels == k]) for k in range(4)]
    assert all(len(v) == 1 for v in values)
    values = np.array([v[0] for v in values])
    np.testing.assert_allclose(values, [0.0, 0.3, 0.7, 1.0], atol=1e-6)
    assert image.min() >= 0.0 and image.max() <= 1.0


@pytest.mark.parametrize("n", range(1, MAX_STRUCTURES + 1))
def test_every_label_present_and_intensities_distinct(n):
    image, labels = make_phantom((48, 48), seed=1, n_structures=n)
    assert sorted(np.unique(labels).tolist()) == list(range(n + 1))
    values = class_values(n)
    assert len(np.unique(np.round(values, 6))) == n + 1
    assert np.min(np.diff(np.sort(values))) >= 0.1 - 1e-6


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**40), n=st.integers(1, MAX_STRUCTURES), v=st.floats(0, 1),
       dims=st.lists(st.integers(16, 24), min_size=2, max_size=3))
def test_every_label_present_even_small_and_variable(seed, n, v, dims):
    _, labels = make_phantom(tuple(dims), seed=seed, n_structures=n, variability=v)
    assert sorted(np.unique(labels).tolist()) == list(range(n + 1))


def test_squeezed_out_structure_still_gets_a_voxel(monkeypatch):
    # Safety net: a structure whose rasterised mask is empty (possible only on tiny grids)
    # gets the voxel of its parent's region nearest to its centre.
    real = phantoms._structure_mask
    calls = []

    def empty_third(axes, g):
        calls.append(g)
        mask = real(axes, g)
        return np.zeros_like(mask) if len(calls) == 3 else mask

    monkeypatch.setattr(phantoms, "_structure_mask", empty_third)
    _, labels = make_phantom((32, 32), seed=0)
    _, reference = make_phantom((32, 32), seed=0)  # fourth call onwards: unpatched masks
    assert np.count_nonzero(labels == 3) == 1
    (i, j), = np.argwhere(labels == 3)
    assert reference[i, j] == 3  # at the lesion's centre, inside structure 2
    np.testing.assert_array_equal(labels[labels != 3], np.where(reference == 3, 2, reference)[labels != 3])


@pytest.mark.parametrize("shape", SHAPES)
def test_labels_do_not_depend_on_degradation_knobs(shape):
    _, clean_labels = make_phantom(shape, seed=5, n_structures=5)
    _, labels = make_phantom(shape, seed=5, n_structures=5, noise=0.2, bias_field=0.5, partial_volume=1.5,
                             anisotropy=3.0, artifacts=0.5, contrast=0.3)
    np.testing.assert_array_equal(labels, clean_labels)


def test_deterministic_bit_for_bit():
    kw = dict(noise=0.1, bias_field=0.4, partial_volume=1.0, anisotropy=2.5, artifacts=0.3, contrast=0.6,
              variability=0.7, n_structures=6)
    a = make_phantom((24, 24, 24), seed=11, **kw)
    b = make_phantom((24, 24, 24), seed=11, **kw)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    c = make_phantom((24, 24, 24), seed=12, **kw)
    assert not np.array_equal(a[0], c[0])


def test_knob_streams_are_independent():
    # Noise is added last from its own stream: switching the bias field on does not change it.
    base, _ = make_phantom((48, 48), seed=2, bias_field=0.4)
    noisy, _ = make_phantom((48, 48), seed=2, bias_field=0.4, noise=0.1)
    clean, _ = make_phantom((48, 48), seed=2)
    noisy_only, _ = make_phantom((48, 48), seed=2, noise=0.1)
    np.testing.assert_allclose(noisy - base, noisy_only - clean, atol=1e-6)


def test_phantom_knobs_match_signature():
    params = inspect.signature(make_phantom).parameters
    assert list(PHANTOM_KNOBS) == ["noise", "bias_field", "partial_volume", "anisotropy", "artifacts",
                                   "contrast", "variability"]
    for name, default in PHANTOM_KNOBS.items():
        assert params[name].default == default
    # All knobs at their defaults, passed explicitly, give the clean phantom.
    a = make_phantom((32, 32), seed=0, **PHANTOM_KNOBS)
    b = make_phantom((32, 32), seed=0)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"noise": -0.1}, "noise"),
        ({"bias_field": -1.0}, "bias_field"),
        ({"partial_volume": -0.5}, "partial_volume"),
        ({"anisotropy": 0.5}, "anisotropy"),
        ({"artifacts": -0.01}, "artifacts"),
        ({"contrast": 0.0}, "contrast"),
        ({"contrast": 1.5}, "contrast"),
        ({"variability": -0.1}, "variability"),
        ({"variability": 1.01}, "variability"),
        ({"noise": float("nan")}, "noise"),
        ({"bias_field": float("inf")}, "bias_field"),
        ({"noise": "0.1"}, "noise"),
        ({"n_structures": 0}, "n_structures"),
        ({"n_structures": MAX_STRUCTURES + 1}, "n_structures"),
        ({"n_structures": 2.0}, "n_structures"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"shape": (15, 32)}, "shape"),
        ({"shape": (32,)}, "shape"),
        ({"shape": (16, 16, 16, 16)}, "shape"),
        ({"shape": (32.0, 32)}, "shape"),
        ({"shape": 32}, "shape"),
    ],
)
def test_bad_values_raise_naming_the_argument(kwargs, name):
    call = {"shape": (32, 32), "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=name):
        make_phantom(call.pop("shape"), **call)


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(["noise", "bias_field", "partial_volume", "artifacts"]),
       value=st.floats(max_value=-1e-9, allow_infinity=False, allow_nan=False))
def test_negative_knobs_raise(name, value):
    with pytest.raises(ValueError, match=name):
        make_phantom((16, 16), seed=0, **{name: value})


# --------------------------------------------------------------------------- noise
@pytest.mark.parametrize("shape", SHAPES)
def test_noise_std_inside_a_structure_is_noise_times_range(shape):
    _, labels = make_phantom(shape, seed=4)
    inner = interior(labels, 1, 2)  # the body, away from organs and background
    stds = []
    for noise in (0.0, 0.05, 0.1, 0.2):
        image, _ = make_phantom(shape, seed=4, noise=noise)
        stds.append(float(np.std(image[inner])))
        assert abs(float(np.mean(image[inner])) - 0.3) < 0.1 * noise + 1e-6
    assert stds[0] < 1e-7
    np.testing.assert_allclose(stds[1:], [0.05, 0.1, 0.2], rtol=0.08)


def test_noise_is_gaussian_and_white():
    clean, labels = make_phantom((128, 128), seed=0)
    image, _ = make_phantom((128, 128), seed=0, noise=0.1)
    r = (image.astype(np.float64) - clean).ravel() / 0.1
    assert abs(np.mean(r)) < 0.03 and abs(np.std(r) - 1) < 0.03
    # Gaussian: ~68.3% within one std, excess kurtosis ~0; white: no neighbour correlation.
    assert abs(np.mean(np.abs(r) < 1) - 0.6827) < 0.02
    assert abs(np.mean(r**4) - 3) < 0.2
    n = (image.astype(np.float64) - clean) / 0.1
    assert abs(np.mean(n[:, 1:] * n[:, :-1])) < 0.03


# --------------------------------------------------------------------------- bias field
@pytest.mark.parametrize("shape", SHAPES)
def test_bias_field_low_frequency_variation_grows(shape):
    clean, labels = make_phantom(shape, seed=6)
    inner = interior(labels, 1, 2)
    body = labels > 0
    smooth_std, log_std = [], []
    for b in (0.0, 0.2, 0.4, 0.8):
        image, _ = make_phantom(shape, seed=6, bias_field=b)
        # Low-pass inside the body only (normalised convolution), so organs do not leak in.
        num = ndimage.gaussian_filter(np.where(inner, image, 0.0).astype(np.float64), 4)
        smoothed = num / np.maximum(ndimage.gaussian_filter(inner.astype(np.float64), 4), 1e-12)
        smooth_std.append(float(np.std(smoothed[inner])))
        ratio = image[body].astype(np.float64) / clean[body]
        # Multiplicative field exp(b s), s in [-1, 1]: the ratio stays in [e^-b, e^b].
        assert ratio.min() >= np.exp(-b) - 1e-5 and ratio.max() <= np.exp(b) + 1e-5
        log_std.append(float(np.std(np.log(ratio))))
    assert smooth_std[0] < 1e-6 and all(np.diff(smooth_std) > 0) and smooth_std[-1] > 0.02
    assert log_std[0] < 1e-6
    # The log of the field is b * s(x): its spread is proportional to b.
    np.testing.assert_allclose(np.array(log_std[1:]) / log_std[1], [1, 2, 4], rtol=1e-3)


def test_bias_field_halves_differ():
    clean, labels = make_phantom((96, 96), seed=8)
    image, _ = make_phantom((96, 96), seed=8, bias_field=0.5)
    inner = interior(labels, 1, 2)
    gain = image.astype(np.float64) / np.where(clean > 0, clean, 1)
    halves = [np.mean(gain[:48][inner[:48]]), np.mean(gain[48:][inner[48:]]),
              np.mean(gain[:, :48][inner[:, :48]]), np.mean(gain[:, 48:][inner[:, 48:]])]
    assert max(abs(halves[0] / halves[1] - 1), abs(halves[2] / halves[3] - 1)) > 0.05


# --------------------------------------------------------------------------- partial volume
@pytest.mark.parametrize("shape", SHAPES)
def test_partial_volume_mixes_only_boundary_voxels(shape):
    clean, labels = make_phantom(shape, seed=2)
    values = np.unique(clean)
    boundary = np.zeros(shape, dtype=bool)
    for ax in range(len(shape)):
        d = np.diff(labels, axis=ax) != 0
        lo = [slice(None)] * len(shape)
        hi = [slice(None)] * len(shape)
        lo[ax], hi[ax] = slice(None, -1), slice(1, None)
        boundary[tuple(lo)] |= d
        boundary[tuple(hi)] |= d
    dist = ndimage.distance_transform_edt(~boundary)
    counts = []
    for pv in (0.0, 0.5, 1.0, 2.0):
        image, _ = make_phantom(shape, seed=2, partial_volume=pv)
        intermediate = np.min(np.abs(image[..., None] - values), axis=-1) > 1e-3
        counts.append(int(intermediate.sum()))
        reach = np.ceil(4 * pv) + 1
        assert not np.any(intermediate & (dist > reach))  # only near boundaries
        far = dist > reach
        np.testing.assert_allclose(image[far], clean[far], atol=1e-5)  # interior keeps its class value
        assert abs(float(image.mean()) - float(clean.mean())) < 1e-3  # blur keeps the mean
    assert counts[0] == 0
    assert counts[1] > 0 and all(np.diff(counts) > 0)


# --------------------------------------------------------------------------- anisotropy
def _hf_fraction(image: np.ndarray, axis: int, cut: float = 0.25) -> float:
    """Fraction of the power spectrum above ``cut`` cycles/voxel along ``axis``."""
    power = np.abs(np.fft.fftn(image - image.mean())) ** 2
    f = np.abs(np.fft.fftfreq(image.shape[axis])) > cut
    return float(power.sum(axis=tuple(a for a in range(image.ndim) if a != axis))[f].sum() / power.sum())


@pytest.mark.parametrize("shape", [(64, 64), (40, 40, 40)])
def test_anisotropy_removes_detail_along_last_axis_only(shape):
    last = len(shape) - 1
    hf_last, energy_last, tv_other = [], [], []
    for a in (1.0, 1.5, 2.0, 3.0, 4.0):
        image, _ = make_phantom(shape, seed=0, n_structures=8, anisotropy=a)
        image = image.astype(np.float64)
        hf_last.append(_hf_fraction(image, last))
        energy_last.append(float(np.mean(np.diff(image, axis=last) ** 2)))
        tv_other.append([float(np.mean(np.abs(np.diff(image, axis=ax)))) for ax in range(last)])
        if a >= 2:
            assert hf_last[-1] < 0.2 * min(_hf_fraction(image, ax) for ax in range(last))
    assert all(np.diff(hf_last) < 0) and all(np.diff(energy_last) < 0)
    assert hf_last[-1] < hf_last[0] / 20
    # Blurring along the last axis keeps the total variation along the other axes.
    np.testing.assert_allclose(tv_other, [tv_other[0]] * len(tv_other), rtol=0.03)


def test_thick_slices_worked_examples():
    x = np.array([0.0, 0.0, 4.0, 4.0, 8.0, 8.0])
    # Slabs of 2: means 0, 4, 8 at centres 0.5, 2.5, 4.5, interpolated back (edges clamped).
    np.testing.assert_allclose(_thick_slices(x, 2.0), [0, 1, 3, 5, 7, 8])
    np.testing.assert_allclose(_thick_slices(x, 1.0), x)
    # Slabs of 1.5: [0,1.5) -> 0, [1.5,3) -> 8/3, [3,4.5) -> 16/3, [4.5,6) -> 8.
    np.testing.assert_allclose(_thick_slices(x, 1.5), [0, 4 / 3, 28 / 9, 44 / 9, 20 / 3, 8])
    # The last axis only: each row is processed independently.
    two = np.stack([x, 2 * x])
    np.testing.assert_allclose(_thick_slices(two, 2.0), [[0, 1, 3, 5, 7, 8], [0, 2, 6, 10, 14, 16]])


def test_anisotropy_one_is_identity_and_keeps_mean():
    a, _ = make_phantom((48, 48), seed=1, anisotropy=1.0)
    b, _ = make_phantom((48, 48), seed=1)
    np.testing.assert_array_equal(a, b)
    c, _ = make_phantom((48, 48), seed=1, anisotropy=4.0)  # 4 divides 48: slab means keep the mean
    assert abs(float(c.mean()) - float(b.mean())) < 2e-3


# --------------------------------------------------------------------------- artifacts
@pytest.mark.parametrize("shape", [(96, 96), (48, 48, 24)])
def test_artifacts_add_streaks_outside_structures(shape):
    clean, labels = make_phantom(shape, seed=3)
    far = ndimage.distance_transform_edt(labels == 0) > 3  # background, away from the body
    energies = []
    for art in (0.0, 0.2, 0.4, 0.8):
        image, lab = make_phantom(shape, seed=3, artifacts=art)
        np.testing.assert_array_equal(lab, labels)  # not part of the labels
        diff = image.astype(np.float64) - clean
        energies.append(float(np.mean(diff[far] ** 2)))
        if art:
            assert diff.max() >= 3 * art - 1e-5  # the bright object: +3 x artifacts
    assert energies[0] == 0.0 and energies[1] > 0
    # Outside the disc, the streaks scale linearly with the knob: energy ~ knob^2.
    np.testing.assert_allclose(np.array(energies[1:]) / energies[1], [1, 4, 16], rtol=1e-3)


def test_streaks_are_radial_around_the_bright_object():
    clean, _ = make_phantom((128, 128), seed=7)
    image, _ = make_phantom((128, 128), seed=7, artifacts=0.5)
    diff = image.astype(np.float64) - clean
    cy, cx = ndimage.center_of_mass(diff > 1.0)  # the metal disc
    radii = np.arange(12.0, 30.0, 0.5)
    angles = np.linspace(0, 2 * np.pi, 1440, endpoint=False)
    rr, aa = np.meshgrid(radii, angles, indexing="ij")
    polar = ndimage.map_coordinates(diff, [cy + rr * np.sin(aa), cx + rr * np.cos(aa)], order=1, mode="nearest")
    # Mean absolute derivative per voxel of arc length vs per voxel of radius.
    d_angular = np.mean(np.abs(np.diff(polar, axis=1)) / (rr[:, 1:] * (angles[1] - angles[0])))
    d_radial = np.mean(np.abs(np.diff(polar, axis=0)) / 0.5)
    assert d_angular > 3 * d_radial


# --------------------------------------------------------------------------- contrast
@pytest.mark.parametrize("shape", SHAPES)
def test_contrast_scales_differences_between_neighbours(shape):
    _, labels = make_phantom(shape, seed=0, n_structures=4)
    # Structures 2 and 4 touch; 3 is nested in 2; all lie in the body 1.
    assert np.any(ndimage.binary_dilation(labels == 2) & (labels == 4))
    pairs = [(2, 4), (3, 2), (2, 1)]
    ref = None
    for c in (1.0, 0.5, 0.25, 0.1):
        image, _ = make_phantom(shape, seed=0, n_structures=4, contrast=c)
        diffs = np.array([image[labels == i].mean() - image[labels == j].mean() for i, j in pairs])
        ref = diffs if ref is None else ref
        np.testing.assert_allclose(diffs, c * ref, rtol=1e-5)
        assert np.all(np.abs(diffs) >= 0.2 * c - 1e-6)
        np.testing.assert_allclose(image[labels == 0], 0.0)  # background unchanged
        np.testing.assert_allclose(image[labels == 1], 0.3, atol=1e-6)  # body is the pivot


def test_contrast_with_noise_approximately_proportional():
    _, labels = make_phantom((96, 96), seed=0)
    a, b = interior(labels, 2, 1), interior(labels, 1, 1)
    d = []
    for c in (1.0, 0.5, 0.2):
        image, _ = make_phantom((96, 96), seed=0, contrast=c, noise=0.05)
        d.append(image[a].mean() - image[b].mean())
    np.testing.assert_allclose(d, [0.4, 0.2, 0.08], atol=0.01)


# --------------------------------------------------------------------------- variability
@pytest.mark.parametrize("shape", SHAPES)
def test_variability_zero_gives_identical_geometry(shape):
    _, ref = make_phantom(shape, seed=0, n_structures=8)
    for seed in (1, 2, 12345):
        image, labels = make_phantom(shape, seed=seed, n_structures=8, noise=0.1)
        np.testing.assert_array_equal(labels, ref)


@pytest.mark.parametrize("shape", [(64, 64), (32, 32, 32)])
def test_variability_lowers_dice_between_seeds(shape):
    n = 4
    mean_dice = []
    for v in (0.0, 0.1, 0.4, 1.0):
        scores = []
        for s in range(4):
            _, a = make_phantom(shape, seed=2 * s, n_structures=n, variability=v)
            _, b = make_phantom(shape, seed=2 * s + 1, n_structures=n, variability=v)
            scores.append(np.mean([dice(a == k, b == k) for k in range(1, n + 1)]))
        mean_dice.append(float(np.mean(scores)))
    assert mean_dice[0] == 1.0
    assert all(np.diff(mean_dice) < 0)
    assert mean_dice[1] > 0.9 and mean_dice[-1] < 0.8


def test_variability_changes_outline_not_only_pose():
    # With variability the body is no longer an exact ellipse: the best-fitting ellipse
    # (same second moments) leaves a clearly larger symmetric difference than without.
    def ellipse_misfit(mask: np.ndarray) -> float:
        idx = np.argwhere(mask).astype(float)
        mu, cov = idx.mean(0), np.cov(idx.T)
        grid = np.indices(mask.shape).reshape(2, -1).T - mu
        inside = np.einsum("ni,ij,nj->n", grid, np.linalg.inv(4 * cov), grid) <= 1
        return np.count_nonzero(inside.reshape(mask.shape) ^ mask) / np.count_nonzero(mask)

    base = ellipse_misfit(make_phantom((128, 128), seed=0)[1] > 0)
    varied = [ellipse_misfit(make_phantom((128, 128), seed=s, variability=1.0)[1] > 0) for s in range(4)]
    assert base < 0.02 and np.mean(varied) > 2 * base + 0.01


# --------------------------------------------------------------------------- dataset
def test_phantom_dataset_items():
    ds = PhantomDataset(5, (32, 32), seed=3, noise=0.05, n_structures=4)
    assert len(ds) == 5 and ds.num_classes == 5
    assert ds.knobs == {"n_structures": 4, **PHANTOM_KNOBS, "noise": 0.05}
    image, labels = ds[2]
    assert image.shape == (1, 32, 32) and image.dtype == torch.float32
    assert labels.shape == (32, 32) and labels.dtype == torch.int64
    ref_image, ref_labels = make_phantom((32, 32), seed=ds.item_seed(2), **ds.knobs)
    np.testing.assert_array_equal(image[0].numpy(), ref_image)
    np.testing.assert_array_equal(labels.numpy(), ref_labels)
    # Items differ from each other; the same index gives the same item, cached or not.
    assert not torch.equal(ds[0][0], ds[1][0])
    assert torch.equal(ds[-1][0], ds[4][0])
    uncached = PhantomDataset(5, (32, 32), seed=3, cache=False, noise=0.05, n_structures=4)
    assert torch.equal(uncached[2][0], image) and torch.equal(uncached[2][1], labels)
    # Returned tensors are copies: editing one does not corrupt the cache.
    image.zero_()
    assert not torch.equal(ds[2][0], image)
    # Another dataset seed gives other items.
    assert not torch.equal(PhantomDataset(5, (32, 32), seed=4, noise=0.05, n_structures=4)[2][0], ds[2][0])
    with pytest.raises(IndexError):
        ds[5]


def test_phantom_dataset_3d_and_dataloader():
    ds = PhantomDataset(3, (16, 16, 16), seed=0, variability=0.5)
    images, labels = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert images.shape == (3, 1, 16, 16, 16) and labels.shape == (3, 16, 16, 16)
    assert sorted(torch.unique(labels).tolist()) == [0, 1, 2, 3]
    assert len({ds.item_seed(i) for i in range(3)}) == 3


@pytest.mark.parametrize(
    "kwargs, err, name",
    [
        ({"noise": -1.0}, ValueError, "noise"),
        ({"contrast": 2.0}, ValueError, "contrast"),
        ({"n_structures": 9}, ValueError, "n_structures"),
        ({"shape": (8, 8)}, ValueError, "shape"),
        ({"n": -1}, ValueError, "n"),
        ({"seed": -2}, ValueError, "seed"),
        ({"blur": 1.0}, TypeError, "blur"),
    ],
)
def test_phantom_dataset_bad_arguments(kwargs, err, name):
    call = {"n": 2, "shape": (16, 16), **kwargs}
    with pytest.raises(err, match=name):
        PhantomDataset(call.pop("n"), call.pop("shape"), **call)

"""Tests for mlimaging.metrics.quality: PSNR and SSIM (NumPy and torch)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mlimaging.metrics import psnr, ssim

WANG = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False}


def _camera_pair(seed=0, noise=0.1):
    ref = data.camera()[150:246, 200:296].astype(np.float64) / 255.0
    noisy = np.clip(ref + noise * np.random.default_rng(seed).standard_normal(ref.shape), 0.0, 1.0)
    return noisy, ref


# --------------------------------------------------------------------------- PSNR
def test_psnr_by_hand():
    ref = np.zeros((4, 4))
    x = ref.copy()
    x[0, 0] = 2.0  # MSE = 4 / 16
    assert_allclose(psnr(x, ref, data_range=1.0), 10 * math.log10(1 / 0.25), rtol=1e-14)
    assert_allclose(psnr(x, ref, data_range=255), 10 * math.log10(255**2 / 0.25), rtol=1e-14)
    assert psnr(ref, ref, data_range=1.0) == math.inf
    assert psnr(torch.zeros(3, 3), torch.zeros(3, 3), data_range=1.0).item() == math.inf


@pytest.mark.parametrize("data_range", [1.0, 255.0, 4095.0])
def test_psnr_matches_skimage(data_range):
    noisy, ref = _camera_pair()
    x, r = noisy * data_range, ref * data_range
    expected = peak_signal_noise_ratio(r, x, data_range=data_range)
    assert_allclose(psnr(x, r, data_range=data_range), expected, rtol=1e-12)
    assert_allclose(psnr(torch.from_numpy(x), torch.from_numpy(r), data_range=data_range).item(), expected, rtol=1e-12)
    vol = np.random.default_rng(1).random((6, 7, 8))
    assert_allclose(psnr(vol, vol**2, data_range=1), peak_signal_noise_ratio(vol**2, vol, data_range=1), rtol=1e-12)


def test_psnr_batch_is_per_image():
    rng = np.random.default_rng(2)
    ref = rng.random((3, 2, 8, 8))
    x = ref + rng.normal(scale=[[[[0.01]]], [[[0.1]]], [[[0.3]]]], size=ref.shape)
    out = psnr(x, ref, data_range=1.0)
    assert isinstance(out, np.ndarray) and out.shape == (3,)
    assert_allclose(out, [psnr(x[i], ref[i], data_range=1.0) for i in range(3)], rtol=1e-12)
    assert out[0] > out[1] > out[2]
    out_t = psnr(torch.from_numpy(x), torch.from_numpy(ref), data_range=1.0)
    assert out_t.shape == (3,)
    assert_allclose(out_t.numpy(), out, rtol=1e-12)


# --------------------------------------------------------------------------- SSIM oracles
@pytest.mark.parametrize("opts", [{}, WANG, {"win_size": 5}, {"k1": 0.05, "k2": 0.1}], ids=["default", "wang", "win5", "k"])
def test_ssim_matches_skimage_2d(opts):
    noisy, ref = _camera_pair()
    sk_opts = {("K1" if k == "k1" else "K2" if k == "k2" else k): v for k, v in opts.items()}
    expected = structural_similarity(noisy, ref, data_range=1.0, **sk_opts)
    assert_allclose(ssim(noisy, ref, data_range=1.0, **opts), expected, rtol=1e-6)
    got_t = ssim(torch.from_numpy(noisy), torch.from_numpy(ref), data_range=1.0, **opts)
    assert_allclose(got_t.item(), expected, rtol=1e-6)


@pytest.mark.parametrize("opts", [{}, WANG], ids=["default", "wang"])
def test_ssim_matches_skimage_3d(opts):
    rng = np.random.default_rng(3)
    ref = rng.random((14, 15, 16)) * 100.0
    x = ref + rng.normal(scale=15.0, size=ref.shape)
    expected = structural_similarity(x, ref, data_range=100.0, **opts)
    assert_allclose(ssim(x, ref, data_range=100.0, **opts), expected, rtol=1e-6)
    got_t = ssim(torch.from_numpy(x), torch.from_numpy(ref), data_range=100.0, **opts)
    assert_allclose(got_t.item(), expected, rtol=1e-6)


@pytest.mark.parametrize("opts", [{}, WANG], ids=["default", "wang"])
def test_ssim_full_map_matches_skimage(opts):
    noisy, ref = _camera_pair(seed=4)
    noisy, ref = noisy[:40, :33], ref[:40, :33]
    mssim_sk, map_sk = structural_similarity(noisy, ref, data_range=1.0, full=True, **opts)
    mssim, s_map = ssim(noisy, ref, data_range=1.0, full=True, **opts)
    assert_allclose(mssim, mssim_sk, rtol=1e-6)
    assert_allclose(s_map, map_sk, rtol=1e-6, atol=1e-9)
    mssim_t, map_t = ssim(torch.from_numpy(noisy), torch.from_numpy(ref), data_range=1.0, full=True, **opts)
    assert map_t.shape == noisy.shape
    assert_allclose(map_t.numpy(), map_sk, rtol=1e-6, atol=1e-9)
    assert_allclose(mssim_t.item(), mssim_sk, rtol=1e-6)


def test_ssim_random_images_skimage_float64_and_torch_float32():
    rng = np.random.default_rng(5)
    ref = rng.random((32, 40))
    x = 0.5 * ref + 0.5 * rng.random((32, 40))
    expected = structural_similarity(x, ref, data_range=1.0)
    assert_allclose(ssim(x, ref, data_range=1.0), expected, rtol=1e-6)
    out32 = ssim(torch.from_numpy(x).float(), torch.from_numpy(ref).float(), data_range=1.0)
    assert out32.dtype == torch.float32
    assert_allclose(out32.item(), expected, rtol=1e-4)


# --------------------------------------------------------------------------- SSIM invariants
def test_ssim_identity_and_symmetry():
    noisy, ref = _camera_pair(seed=6)
    assert ssim(ref, ref, data_range=1.0) == pytest.approx(1.0, abs=1e-12)
    assert ssim(torch.from_numpy(ref), torch.from_numpy(ref), data_range=1.0, **WANG).item() == pytest.approx(1.0, abs=1e-12)
    assert_allclose(ssim(noisy, ref, data_range=1.0), ssim(ref, noisy, data_range=1.0), rtol=1e-12)
    assert ssim(noisy, ref, data_range=1.0) < 1.0


def test_ssim_decreases_with_noise():
    _, ref = _camera_pair()
    rng = np.random.default_rng(7)
    z = rng.standard_normal(ref.shape)
    values = [ssim(ref + s * z, ref, data_range=1.0) for s in (0.0, 0.02, 0.05, 0.1, 0.3)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    assert values[0] == pytest.approx(1.0)


def test_ssim_torch_matches_numpy_float64():
    rng = np.random.default_rng(8)
    for shape in [(20, 23), (11, 12, 13)]:
        ref = rng.random(shape)
        x = ref + 0.1 * rng.standard_normal(shape)
        for opts in ({}, WANG, {"win_size": 3, "gaussian_weights": True, "sigma": 0.8}):
            a = ssim(x, ref, data_range=1.0, **opts)
            b = ssim(torch.from_numpy(x), torch.from_numpy(ref), data_range=1.0, **opts)
            assert isinstance(a, float) and b.ndim == 0
            assert_allclose(b.item(), a, rtol=1e-10)


def test_ssim_batch_is_per_image_mean_over_channels():
    rng = np.random.default_rng(9)
    ref = rng.random((2, 3, 12, 13))
    x = ref + 0.1 * rng.standard_normal(ref.shape)
    expected = [np.mean([ssim(x[b, c], ref[b, c], data_range=1.0) for c in range(3)]) for b in range(2)]
    out = ssim(x, ref, data_range=1.0)
    assert isinstance(out, np.ndarray) and out.shape == (2,)
    assert_allclose(out, expected, rtol=1e-12)
    out_t = ssim(torch.from_numpy(x), torch.from_numpy(ref), data_range=1.0)
    assert out_t.shape == (2,)
    assert_allclose(out_t.numpy(), expected, rtol=1e-10)
    # the same as scikit-image with a channel axis
    sk = structural_similarity(x[1], ref[1], data_range=1.0, channel_axis=0)
    assert_allclose(out[1], sk, rtol=1e-6)
    # 3D batch (B, C, H, W, D)
    vol = rng.random((1, 1, 8, 9, 10))
    out3 = ssim(torch.from_numpy(vol), torch.from_numpy(vol**2), data_range=1.0, win_size=5)
    assert_allclose(out3.numpy(), [ssim(vol[0, 0], vol[0, 0] ** 2, data_range=1.0, win_size=5)], rtol=1e-10)


def test_ssim_gradcheck_and_loss_step():
    g = torch.Generator().manual_seed(10)
    ref = torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64)
    x = torch.rand(1, 1, 6, 7, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b, data_range=1.0, win_size=3), (x, ref))
    assert torch.autograd.gradcheck(lambda a: ssim(a, ref, data_range=1.0, win_size=5, **WANG), (x,))
    assert torch.autograd.gradcheck(
        lambda a: ssim(a[0, 0], ref[0, 0], data_range=1.0, win_size=3, full=True)[1].sum(), (x,)
    )
    value = ssim(x, ref, data_range=1.0, win_size=3).sum()
    (grad,) = torch.autograd.grad(value, x)
    better = ssim(x.detach() + 0.05 * grad / grad.abs().max(), ref, data_range=1.0, win_size=3)
    assert better.item() > value.item()


def test_inputs_not_modified():
    noisy, ref = _camera_pair()
    n0, r0 = noisy.copy(), ref.copy()
    ssim(noisy, ref, data_range=1.0, full=True)
    psnr(noisy, ref, data_range=1.0)
    np.testing.assert_array_equal(noisy, n0)
    np.testing.assert_array_equal(ref, r0)


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("f", [psnr, ssim])
def test_shape_and_nan_errors_name_arguments(f):
    with pytest.raises(ValueError, match=r"x and ref must have the same shape"):
        f(np.zeros((8, 8)), np.zeros((8, 9)), data_range=1.0)
    bad = np.zeros((8, 8))
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="ref contains NaN"):
        f(np.zeros((8, 8)), bad, data_range=1.0)
    with pytest.raises(ValueError, match="x contains NaN"):
        f(torch.from_numpy(bad), torch.zeros(8, 8, dtype=torch.float64), data_range=1.0)
    with pytest.raises(ValueError, match="x must be"):
        f(np.zeros((2,) * 6), np.zeros((2,) * 6), data_range=1.0)


@settings(max_examples=30, deadline=None)
@given(
    data_range=st.one_of(
        st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf")), st.booleans(), st.none(), st.text(max_size=2)
    ),
    f=st.sampled_from([psnr, ssim]),
)
def test_bad_data_range(data_range, f):
    with pytest.raises(ValueError, match="data_range"):
        f(np.zeros((8, 8)), np.ones((8, 8)), data_range=data_range)


@settings(max_examples=30, deadline=None)
@given(
    win_size=st.one_of(st.integers(-3, 2), st.integers(2, 20).map(lambda n: 2 * n), st.just(2.5), st.just(True)),
)
def test_bad_win_size(win_size):
    with pytest.raises(ValueError, match="win_size"):
        ssim(np.zeros((9, 9)), np.ones((9, 9)), data_range=1.0, win_size=win_size)


@pytest.mark.parametrize(("shape", "win_size"), [((6, 20), 7), ((20, 20, 4), 5), ((1, 1, 8, 3), 5)])
def test_win_size_larger_than_image(shape, win_size):
    with pytest.raises(ValueError, match="win_size .* larger than the image"):
        ssim(np.zeros(shape), np.zeros(shape), data_range=1.0, win_size=win_size)
    with pytest.raises(ValueError, match="win_size .* larger than the image"):
        ssim(torch.zeros(shape), torch.zeros(shape), data_range=1.0, win_size=win_size)


@pytest.mark.parametrize(("name", "value"), [("sigma", 0.0), ("sigma", -1.0), ("k1", -0.1), ("k2", float("nan"))])
def test_bad_ssim_options(name, value):
    with pytest.raises(ValueError, match=name):
        ssim(np.zeros((9, 9)), np.ones((9, 9)), data_range=1.0, **{name: value})


def test_ssim_rejects_1d():
    with pytest.raises(ValueError, match="x must be a 2D or 3D image"):
        ssim(np.zeros(16), np.zeros(16), data_range=1.0)

"""Tests for mlimaging.registration.warp: conventions, identity, scipy and SimpleITK oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose, assert_array_equal
from scipy import ndimage as ndi

from mlimaging.registration import (
    affine_matrix,
    compose,
    identity,
    invert,
    rigid_matrix,
    sampling_grid,
    voxel_to_physical,
    warp,
)


def _smooth(shape, seed=0):
    return ndi.gaussian_filter(np.random.default_rng(seed).random(shape), 2.0)


def _scipy_warp(image, t, spacing, order):
    """scipy.ndimage.affine_transform with the voxel matrix invert(V) @ T @ V."""
    v = voxel_to_physical(image.shape, spacing=spacing)
    m = (invert(v) @ torch.as_tensor(t, dtype=torch.float64) @ v).numpy()
    d = image.ndim
    return ndi.affine_transform(image, m[:d, :d], m[:d, d], order=order, mode="grid-constant", cval=0)


def _random_affine(d, seed):
    rng = np.random.default_rng(seed)
    r = rigid_matrix(np.r_[rng.uniform(-0.3, 0.3, 1 if d == 2 else 3), rng.uniform(-3, 3, d)], spatial_dims=d)
    a = affine_matrix(np.eye(d, d + 1).ravel() + 0.05 * rng.standard_normal(d * (d + 1)), spatial_dims=d)
    return compose(r, a)


# --------------------------------------------------------------------------- worked examples
def test_translation_by_one_voxel_shifts_the_array():
    img = _smooth((12, 10))
    out = warp(img, rigid_matrix([0.0, 0.0, 2.0], spatial_dims=2), spacing=(1.0, 2.0))  # 2 mm = one column
    assert_allclose(out[:, :-1], img[:, 1:], atol=1e-12)
    assert_array_equal(out[:, -1], 0.0)  # beyond the field of view: zeros


def test_rotation_about_the_centre():
    img = np.zeros((9, 9))
    img[4, 7] = 1.0  # (0, 3) in physical coordinates
    out = warp(img, rigid_matrix([np.pi / 2, 0.0, 0.0], spatial_dims=2), mode="nearest")
    # out(x) = img(R x): R (-3, 0) = (0, -3)... the voxel at x with R x = (0, 3) is x = (3, 0)
    assert_array_equal(np.argwhere(out == 1.0), [[7, 4]])


# --------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("shape", [(13, 17), (9, 11, 8)])
def test_identity_returns_the_input(shape):
    img = _smooth(shape)
    out = warp(img, identity(len(shape)), spacing=(0.7,) * len(shape))
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    assert_allclose(out, img, atol=1e-12)
    t = torch.from_numpy(img).float()
    out_t = warp(t[None, None], identity(len(shape)))
    assert isinstance(out_t, torch.Tensor) and out_t.shape == (1, 1, *shape) and out_t.dtype == torch.float32
    assert_allclose(out_t[0, 0].numpy(), img, atol=1e-6)
    labels = np.random.default_rng(1).integers(0, 7, shape)
    lab = warp(labels, identity(len(shape)), mode="nearest")
    assert lab.dtype == labels.dtype
    assert_array_equal(lab, labels)


def test_compose_equals_successive_warps():
    img = ndi.gaussian_filter(np.random.default_rng(3).random((64, 64)), 4.0)
    img = (img - img.mean()) / img.std()
    a = rigid_matrix([0.3, 1.0, -1.5], spatial_dims=2)
    b = affine_matrix([1.05, 0.02, 3.0, -0.03, 0.97, -3.0], spatial_dims=2)
    twice = warp(warp(img, a), b)
    once = warp(img, compose(a, b))
    inner = (slice(16, -16),) * 2  # away from the zero-padded border
    assert_allclose(twice[inner], once[inner], atol=0.05)  # std 1: two interpolations vs one
    wrong_order = warp(img, compose(b, a))
    assert np.abs(twice[inner] - wrong_order[inner]).max() > 0.3


def test_nearest_never_mixes_labels():
    labels = np.random.default_rng(0).integers(0, 4, (20, 20, 20)) * 3
    out = warp(labels, _random_affine(3, 1), mode="nearest")
    assert set(np.unique(out)) <= {0, 3, 6, 9}


def test_batch_of_transforms_matches_items():
    imgs = torch.tensor(np.stack([_smooth((16, 18), s) for s in range(3)]), dtype=torch.float32)[:, None]
    ts = torch.stack([_random_affine(2, s) for s in range(3)])
    out = warp(imgs, ts)
    for k in range(3):
        assert_allclose(out[k].numpy(), warp(imgs[k], ts[k]).numpy(), atol=1e-6)
    # a single image broadcast to several transforms
    out1 = warp(imgs[:1], ts)
    assert out1.shape == (3, 1, 16, 18)
    assert_allclose(out1[2].numpy(), warp(imgs[0], ts[2]).numpy(), atol=1e-6)


def test_differentiable_in_image_and_transform():
    img = torch.tensor(_smooth((10, 12)), requires_grad=True)
    params = torch.tensor([0.1, 0.3, -0.2], dtype=torch.float64, requires_grad=True)
    out = warp(img, rigid_matrix(params, spatial_dims=2))
    out.square().sum().backward()
    assert img.grad is not None and params.grad is not None
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0
    small = torch.tensor(_smooth((6, 7)), requires_grad=True)
    p = torch.tensor([0.05, 0.13, -0.21], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda im, q: warp(im, rigid_matrix(q, spatial_dims=2)), (small, p))


# --------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("d", [2, 3])
def test_matches_scipy_affine_transform(d):
    shape = (21, 18) if d == 2 else (14, 17, 12)
    spacing = (1.0, 0.8) if d == 2 else (1.2, 0.8, 1.5)
    img = _smooth(shape, seed=d)
    t = _random_affine(d, seed=10 + d)
    assert_allclose(warp(img, t, spacing=spacing), _scipy_warp(img, t, spacing, order=1), atol=1e-10)
    labels = np.random.default_rng(d).integers(0, 5, shape)
    out = warp(labels, t, mode="nearest", spacing=spacing)
    ref = _scipy_warp(labels, t, spacing, order=0)
    assert (out != ref).mean() < 0.002  # only exact rounding ties may differ


def test_output_grid_matches_scipy():
    img = _smooth((20, 24), seed=5)
    t = rigid_matrix([0.1, 1.0, 0.5], spatial_dims=2)
    out = warp(img, t, spacing=(1.0, 1.0), output_shape=(10, 16), output_spacing=(2.0, 1.5))
    v_in = voxel_to_physical((20, 24), spacing=(1.0, 1.0))
    v_out = voxel_to_physical((10, 16), spacing=(2.0, 1.5))
    m = (invert(v_in) @ t @ v_out).numpy()
    ref = ndi.affine_transform(img, m[:2, :2], m[:2, 2], output_shape=(10, 16), order=1, mode="grid-constant")
    assert_allclose(out, ref, atol=1e-10)


def test_matches_simpleitk_resample():
    sitk = pytest.importorskip("SimpleITK")
    shape, spacing = (16, 20, 18), (1.5, 1.0, 1.2)
    img = np.pad(_smooth(shape, seed=7), 4).astype(np.float32)  # zero border: no edge-handling differences
    t = _random_affine(3, seed=4).numpy()
    itk_img = sitk.GetImageFromArray(img)
    itk_img.SetSpacing(spacing[::-1])
    itk_img.SetOrigin([-(n - 1) / 2 * s for n, s in zip(img.shape[::-1], spacing[::-1], strict=True)])
    p = np.eye(3)[::-1]
    itk_t = sitk.AffineTransform(3)
    itk_t.SetMatrix((p @ t[:3, :3] @ p).ravel().tolist())
    itk_t.SetTranslation((p @ t[:3, 3]).tolist())
    ref = sitk.GetArrayFromImage(sitk.Resample(itk_img, itk_img, itk_t, sitk.sitkLinear, 0.0))
    assert_allclose(warp(img, t, spacing=spacing), ref, atol=1e-5)


def test_sampling_grid_values():
    g = sampling_grid(torch.eye(3, dtype=torch.float64), input_shape=(4, 6), output_shape=(4, 6),
                      input_spacing=(1.0, 1.0), output_spacing=(1.0, 1.0))
    assert g.shape == (1, 4, 6, 2)
    # grid_sample order: x = last axis; voxel centres at (2 i + 1) / n - 1
    assert_allclose(g[0, 0, :, 0].numpy(), (2 * np.arange(6) + 1) / 6 - 1, atol=1e-7)
    assert_allclose(g[0, :, 0, 1].numpy(), (2 * np.arange(4) + 1) / 4 - 1, atol=1e-7)


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs():
    img = np.zeros((8, 8))
    with pytest.raises(ValueError, match="mode"):
        warp(img, np.eye(3), mode="cubic")
    with pytest.raises(ValueError, match="padding"):
        warp(img, np.eye(3), padding="wrap")
    with pytest.raises(ValueError, match="spatial"):
        warp(np.zeros((2, 2, 8, 8, 8)), np.eye(3))
    with pytest.raises(ValueError, match="empty"):
        warp(np.zeros((0, 8)), np.eye(3))
    with pytest.raises(ValueError, match="dtype"):
        warp(np.array([["a", "b"], ["c", "d"]]), np.eye(3))
    with pytest.raises(ValueError, match="transform"):
        warp(img, np.eye(2))
    with pytest.raises(ValueError, match="spacing"):
        warp(img, np.eye(3), spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="output_shape"):
        warp(img, np.eye(3), output_shape=(4,))
    with pytest.raises(ValueError, match="batch"):
        warp(torch.zeros(2, 1, 8, 8), torch.eye(3).expand(3, 3, 3))
    with pytest.raises(ValueError, match="batch of transforms"):
        warp(img, torch.eye(3).expand(2, 3, 3))

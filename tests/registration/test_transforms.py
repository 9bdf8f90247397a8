"""Tests for mlimaging.registration.transforms: rigid/affine matrices, composition, inversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from mlimaging.registration import (
    affine_matrix,
    as_transform,
    compose,
    corner_points,
    identity,
    invert,
    rigid_matrix,
    target_registration_error,
    transform_points,
    voxel_to_physical,
)


# --------------------------------------------------------------------------- worked examples
def test_rigid_2d_quarter_turn():
    t = rigid_matrix([math.pi / 2, 1.0, 2.0], spatial_dims=2)
    assert t.dtype == torch.float64 and t.shape == (3, 3)
    # (1, 0) rotates to (0, 1), then moves by (1, 2)
    assert_allclose(transform_points(t, [[1.0, 0.0]]).numpy(), [[1.0, 3.0]], atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_rigid_3d_rotates_about_each_axis(axis):
    params = np.zeros(6)
    params[axis] = math.pi / 2
    t = rigid_matrix(params, spatial_dims=3)
    e = np.eye(3)
    i, j = [k for k in range(3) if k != axis]  # the plane of the other two axes, in increasing order
    # as in 2D: axis i turns towards axis j, and the rotation axis is fixed
    assert_allclose(transform_points(t, e[[i, axis]]).numpy(), e[[j, axis]], atol=1e-12)


def test_rigid_3d_order_is_r0_r1_r2():
    a = [0.3, -0.2, 0.5]
    full = rigid_matrix([*a, 0, 0, 0], spatial_dims=3)
    parts = [rigid_matrix([a[k] if k == j else 0.0 for k in range(3)] + [0, 0, 0], spatial_dims=3) for j in range(3)]
    assert_allclose(full.numpy(), (parts[0] @ parts[1] @ parts[2]).numpy(), atol=1e-12)


def test_rigid_is_orthonormal_and_batched():
    params = torch.tensor(np.random.default_rng(0).uniform(-1, 1, (5, 6)))
    t = rigid_matrix(params, spatial_dims=3)
    assert t.shape == (5, 4, 4)
    r = t[:, :3, :3]
    assert_allclose((r @ r.transpose(1, 2)).numpy(), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    assert_allclose(torch.linalg.det(r).numpy(), np.ones(5), atol=1e-12)
    assert_allclose(t[:, :3, 3].numpy(), params[:, 3:].numpy())
    assert_allclose(t[:, 3].numpy(), np.broadcast_to([0, 0, 0, 1.0], (5, 4)))


def test_affine_matrix_rows_and_identity():
    assert torch.equal(affine_matrix([1, 0, 0, 0, 1, 0], spatial_dims=2), identity(2))
    p = np.arange(12, dtype=float)
    t = affine_matrix(p, spatial_dims=3)
    assert_allclose(t[:3].numpy(), p.reshape(3, 4))
    assert torch.equal(affine_matrix(p.reshape(3, 4), spatial_dims=3), t)


# --------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("d", [2, 3])
def test_compose_with_inverse_is_identity(d):
    rng = np.random.default_rng(d)
    n = d * (d + 1)
    a = affine_matrix(np.eye(d, d + 1).ravel() + 0.2 * rng.standard_normal(n), spatial_dims=d)
    r = rigid_matrix(rng.uniform(-1, 1, 3 if d == 2 else 6) * 5, spatial_dims=d)
    for t in (a, r, compose(a, r)):
        assert_allclose(compose(t, invert(t)).numpy(), np.eye(d + 1), atol=1e-12)
        assert_allclose(compose(invert(t), t).numpy(), np.eye(d + 1), atol=1e-12)
    # rigid inverse is the transposed rotation
    assert_allclose(invert(r)[:d, :d].numpy(), r[:d, :d].T.numpy(), atol=1e-12)


def test_compose_order_applies_last_first():
    shift = rigid_matrix([0.0, 1.0, 0.0], spatial_dims=2)
    turn = rigid_matrix([math.pi / 2, 0.0, 0.0], spatial_dims=2)
    x = [[1.0, 0.0]]
    # compose(turn, shift): shift first -> (2, 0), then turn -> (0, 2)
    assert_allclose(transform_points(compose(turn, shift), x).numpy(), [[0.0, 2.0]], atol=1e-12)
    assert_allclose(transform_points(compose(shift, turn), x).numpy(), [[1.0, 1.0]], atol=1e-12)


def test_invert_batch_and_gradients():
    params = torch.tensor([[0.2, 1.0, -2.0], [-0.4, 0.5, 3.0]], dtype=torch.float64, requires_grad=True)
    t = rigid_matrix(params, spatial_dims=2)
    inv = invert(t)
    assert inv.shape == (2, 3, 3)
    assert_allclose((t @ inv).detach().numpy(), np.broadcast_to(np.eye(3), (2, 3, 3)), atol=1e-12)
    assert torch.autograd.gradcheck(lambda p: rigid_matrix(p, spatial_dims=2), (params,))
    p3 = torch.tensor([0.1, -0.3, 0.2, 1.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: invert(rigid_matrix(p, spatial_dims=3)), (p3,))


def test_voxel_to_physical_centre_is_origin():
    v = voxel_to_physical((5, 7, 4), spacing=(2.0, 1.0, 0.5))
    centre = v @ torch.tensor([2.0, 3.0, 1.5, 1.0], dtype=torch.float64)
    assert_allclose(centre.numpy(), [0, 0, 0, 1])
    first = v @ torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    assert_allclose(first[:3].numpy(), [-4.0, -3.0, -0.75])
    corners = corner_points((5, 7, 4), spacing=(2.0, 1.0, 0.5))
    assert corners.shape == (8, 3)
    assert_allclose(corners.abs().numpy(), np.broadcast_to([4.0, 3.0, 0.75], (8, 3)))


def test_target_registration_error():
    pts = corner_points((11, 11))
    tre = target_registration_error(identity(2), rigid_matrix([0.0, 3.0, 4.0], spatial_dims=2), pts)
    assert_allclose(tre.numpy(), np.full(4, 5.0))
    # a rotation by a about the centre moves a point at radius r by 2 r sin(a / 2)
    a = 0.1
    tre = target_registration_error(rigid_matrix([a, 0, 0], spatial_dims=2), identity(2), pts)
    assert_allclose(tre.numpy(), np.full(4, 2 * math.sqrt(50) * math.sin(a / 2)), rtol=1e-12)


def test_matches_simpleitk_euler_points():
    """The same rotation and translation as an ITK AffineTransform (axes reversed) maps points alike."""
    sitk = pytest.importorskip("SimpleITK")
    t = rigid_matrix([0.2, -0.1, 0.3, 1.0, -2.0, 0.5], spatial_dims=3).numpy()
    p = np.eye(3)[::-1]
    itk = sitk.AffineTransform(3)
    itk.SetMatrix((p @ t[:3, :3] @ p).ravel().tolist())
    itk.SetTranslation((p @ t[:3, 3]).tolist())
    pts = np.random.default_rng(0).uniform(-20, 20, (5, 3))
    ours = transform_points(t, pts).numpy()
    theirs = np.array([itk.TransformPoint(tuple(x[::-1]))[::-1] for x in pts])
    assert_allclose(ours, theirs, atol=1e-10)


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs():
    with pytest.raises(ValueError, match="spatial_dims"):
        rigid_matrix([0, 0, 0], spatial_dims=4)
    with pytest.raises(ValueError, match="params"):
        rigid_matrix([0, 0, 0, 0], spatial_dims=2)
    with pytest.raises(ValueError, match="params"):
        affine_matrix(np.zeros(5), spatial_dims=2)
    with pytest.raises(ValueError, match="NaN"):
        rigid_matrix([np.nan, 0, 0], spatial_dims=2)
    with pytest.raises(ValueError, match="transform"):
        as_transform(np.eye(5))
    with pytest.raises(ValueError, match="last row"):
        as_transform(np.ones((3, 3)))
    with pytest.raises(ValueError, match="3D"):
        as_transform(np.eye(3), spatial_dims=3)
    with pytest.raises(ValueError, match="singular"):
        invert(affine_matrix([1, 0, 0, 2, 0, 0], spatial_dims=2))
    with pytest.raises(ValueError, match="2D or all 3D"):
        compose(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="at least one"):
        compose()
    with pytest.raises(ValueError, match="points"):
        transform_points(np.eye(3), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="shape"):
        voxel_to_physical((4,))
    with pytest.raises(ValueError, match="spacing"):
        voxel_to_physical((4, 4), spacing=(1.0, -1.0))

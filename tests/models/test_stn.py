"""Spatial transformer: identity at initialisation, rigid geometry, gradients, the exam design,
learning to undo a rotation, bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.models import SpatialTransformer, create_model
from mlimaging.models.stn import ExamLocalizer, SmallCNN, affine_theta, rigid_theta
from mlimaging.training import fit


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _pixel_matrix(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The linear part of ``theta`` in pixel units: S A S^-1 with S = diag(W/2, H/2)."""
    s = torch.diag(torch.tensor([w / 2, h / 2], dtype=theta.dtype))
    return s @ theta[..., :2] @ torch.linalg.inv(s)


# ------------------------------------------------------------------ identity at initialisation
@pytest.mark.parametrize("transform", ["affine", "rigid"])
@pytest.mark.parametrize("localizer,size", [("small", (28, 28)), ("small", (20, 36)), ("exam", (16, 64))])
def test_identity_at_initialisation(transform, localizer, size):
    model = SpatialTransformer(transform=transform, localizer=localizer, classifier=nn.Identity())
    x = _rand(3, 1, *size)
    params = model.localize(x)
    identity = [1.0, 0, 0, 0, 1, 0] if transform == "affine" else [0.0, 0, 0]
    assert torch.equal(params, torch.tensor([identity] * 3))  # whatever the input
    out, theta = model.rectify(x, return_theta=True)
    assert torch.allclose(theta, torch.tensor([[1.0, 0, 0], [0, 1, 0]]).expand(3, 2, 3))
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(model(x), x, atol=1e-5, rtol=0)  # Identity classifier


def test_registered_model_rectifies_to_the_input_and_classifies():
    model = create_model("stn", seed=0).eval()
    x = _rand(2, 1, 28, 28)
    torch.testing.assert_close(model.rectify(x), x, atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.classifier(x), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ geometry
@pytest.mark.parametrize("size", [(16, 64), (28, 28), (40, 20)])
def test_rigid_is_an_orthonormal_rotation_in_pixel_units(size):
    h, w = size
    g = torch.Generator().manual_seed(1)
    params = torch.cat([torch.rand(4, 1, generator=g) * 2 * math.pi - math.pi,
                        torch.rand(4, 2, generator=g) - 0.5], dim=1).double()
    theta = rigid_theta(params, size=size)
    r = _pixel_matrix(theta, h, w)
    eye = torch.eye(2, dtype=torch.float64).expand(4, 2, 2)
    torch.testing.assert_close(r.transpose(1, 2) @ r, eye)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(torch.atan2(r[:, 1, 0], r[:, 0, 0]), params[:, 0])
    torch.testing.assert_close(theta[:, :, 2], params[:, 1:])
    # Distances between sampled locations, in pixels, equal distances between output pixels.
    grid = F.affine_grid(theta, [4, 1, h, w], align_corners=False)  # (B, H, W, 2) as (x, y)
    pix = (grid * torch.tensor([w / 2, h / 2], dtype=torch.float64)).reshape(4, -1, 2)
    exact = "donot_use_mm_for_euclid_dist"
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    out = torch.stack([xs, ys], -1).reshape(-1, 2).double()
    torch.testing.assert_close(torch.cdist(pix, pix, compute_mode=exact),
                               torch.cdist(out, out, compute_mode=exact).expand(4, -1, -1))


def test_rigid_quarter_turn_is_rot90_also_on_a_non_square_image():
    x = _rand(2, 1, 12, 12)
    theta = rigid_theta(torch.tensor([[math.pi / 2, 0.0, 0.0]] * 2), size=(12, 12))
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False)
    torch.testing.assert_close(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5, rtol=0)
    # 16 x 64: the central 16 x 16 block turns in place, the rest comes from outside (zero).
    wide = torch.zeros(1, 1, 16, 64)
    wide[..., 24:40] = _rand(1, 1, 16, 16, seed=3)
    theta = rigid_theta(torch.tensor([[math.pi / 2, 0.0, 0.0]]), size=(16, 64))
    out = F.grid_sample(wide, F.affine_grid(theta, [1, 1, 16, 64], align_corners=False),
                        align_corners=False)
    expected = torch.zeros_like(wide)
    expected[..., 24:40] = torch.rot90(wide[..., 24:40], 1, dims=(-2, -1))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_affine_translation_is_a_shift_with_zero_fill():
    x = _rand(1, 1, 10, 16)
    model = SpatialTransformer(transform="affine", classifier=nn.Identity())
    with torch.no_grad():  # output(p) = input(p + t): t = 3 pixels in x (normalised 3 * 2 / W)
        model.localizer.fc2.bias.copy_(torch.tensor([1.0, 0, 3 * 2 / 16, 0, 1, 0]))
    out = model.rectify(x)
    expected = torch.zeros_like(x)
    expected[..., :-3] = x[..., 3:]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_affine_theta_is_row_major():
    params = torch.arange(12.0).reshape(2, 6)
    assert torch.equal(affine_theta(params)[1], torch.tensor([[6.0, 7, 8], [9, 10, 11]]))


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("transform", ["affine", "rigid"])
def test_gradients_flow_to_the_localizer(transform):
    model = create_model("stn", transform=transform, seed=0)
    x, y = _rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])
    F.cross_entropy(model(x), y).backward()
    last = model.localizer.fc2
    assert last.weight.grad.abs().sum() > 0 and last.bias.grad.abs().sum() > 0
    # Behind the zero-initialised layer the gradient is zero until that layer moves.
    assert model.localizer.conv1.weight.grad.abs().sum() == 0
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for name, p in model.localizer.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ------------------------------------------------------------------ the exam design
def test_exam_localizer_layer_shapes_and_parameters():
    loc = ExamLocalizer()
    shapes = {}
    for name in ("conv1", "pool1", "conv2", "pool2", "fc1", "fc2"):
        getattr(loc, name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
    assert loc(torch.zeros(2, 1, 16, 64)).shape == (2, 3)
    assert shapes == {"conv1": (8, 16, 64), "pool1": (8, 8, 32), "conv2": (16, 8, 32),
                      "pool2": (16, 4, 16), "fc1": (32,), "fc2": (3,)}
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in loc.named_children()}
    assert counts == {"conv1": 9 * 8 + 8, "conv2": 9 * 8 * 16 + 16, "fc1": 1024 * 32 + 32,
                      "fc2": 32 * 3 + 3, "pool1": 0, "pool2": 0}
    assert sum(counts.values()) == 34147


def test_exam_stn_runs_on_16x64_and_rejects_other_sizes():
    model = create_model("stn", localizer="exam", transform="rigid", seed=0)
    assert isinstance(model.localizer, ExamLocalizer)
    assert model(_rand(2, 1, 16, 64)).shape == (2, 10)
    with pytest.raises(ValueError, match="16, 64"):
        model(_rand(2, 1, 28, 28))


# ------------------------------------------------------------------ learning
def _blobs(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random images in [0, 1] inside a disc (a rotation loses nothing at the corners)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    disc = np.hypot(yy, xx) < size * 0.42
    out = []
    for _ in range(n):
        im = ndimage.gaussian_filter(rng.standard_normal((size, size)), 3.0)
        out.append((im - im.min()) / (im.max() - im.min()) * disc)
    return np.stack(out).astype(np.float32)


def test_stn_learns_to_undo_a_fixed_rotation():
    size, angle = 24, 30.0
    clean = _blobs(48, size, seed=0)
    rotated = np.stack([ndimage.rotate(im, angle, reshape=False, order=1) for im in clean])
    x, target = torch.from_numpy(rotated)[:, None], torch.from_numpy(clean)[:, None]
    model = SpatialTransformer(transform="rigid", classifier=nn.Identity())
    before = F.mse_loss(model(x), target).item()
    fit(model, TensorDataset(x, target), loss=nn.MSELoss(), metrics=(), epochs=25, batch_size=16,
        optimizer=lambda p: torch.optim.Adam(p, lr=0.01), progress=False, seed=0)
    with torch.no_grad():
        after = F.mse_loss(model(x), target).item()
        alphas = model.localize(x)[:, 0]
    assert after < 0.3 * before
    # scipy turns the images by +30 degrees (counter-clockwise on screen); sampling them at
    # R(-30 deg) p turns them back (the rot90 test above fixes the sign convention).
    assert torch.allclose(alphas, torch.tensor(-math.radians(angle)), atol=math.radians(3))


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("kwargs,match", [
    ({"transform": "similarity"}, "transform"),
    ({"localizer": "big"}, "localizer"),
    ({"classifier": "cnn"}, "classifier"),
    ({"padding_mode": "wrap"}, "padding_mode"),
    ({"num_classes": 0}, "num_classes"),
    ({"in_channels": 0}, "in_channels"),
])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SpatialTransformer(**kwargs)


def test_bad_inputs_raise():
    model = SpatialTransformer()
    with pytest.raises(ValueError, match="shape"):
        model(_rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="shape"):
        model(_rand(1, 28, 28))
    with pytest.raises(ValueError, match="floating"):
        model(torch.zeros(2, 1, 28, 28, dtype=torch.int64))
    with pytest.raises(ValueError, match="4 x 4"):
        model(_rand(2, 1, 2, 28))
    with pytest.raises(ValueError, match="torch.Tensor"):
        model(np.zeros((2, 1, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        rigid_theta(torch.zeros(2, 6), size=(8, 8))
    with pytest.raises(ValueError, match="size"):
        rigid_theta(torch.zeros(2, 3), size=(0, 8))
    with pytest.raises(ValueError, match=r"\(B, 6\)"):
        affine_theta(torch.zeros(6))
    with pytest.raises(ValueError, match="params"):
        affine_theta(torch.zeros(2, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match="num_classes"):
        SmallCNN(num_classes=0)

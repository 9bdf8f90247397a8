"""Learned reconstruction: denoisers, plug-and-play, unrolled networks, CSGM, deep image prior."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.inverse.base import GaussianNoise
from mlimaging.inverse.learned import (
    DnCNN,
    PatchDataset,
    UNetDenoiser,
    default_denoiser,
    load_training_images,
    pnp,
    train_denoiser,
)
from mlimaging.inverse.operators import Blur, Identity, Inpainting, gaussian_kernel
from mlimaging.inverse.solvers import Reconstruction, least_squares, tikhonov


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / float(torch.mean((a - b) ** 2)))


def _smooth_image(n: int = 32) -> torch.Tensor:
    """A smooth test image in [0, 1]: a blurred disc plus a ramp."""
    u = torch.linspace(-1, 1, n)
    r = (u[:, None] ** 2 + u[None, :] ** 2).sqrt()
    x = 0.2 + 0.6 * (r < 0.6).float() + 0.1 * u[None, :]
    return Blur(gaussian_kernel(1.5)).A(x[None, None])


# -- denoisers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["batch", "none"])
def test_dncnn_shapes_and_residual(norm):
    net = DnCNN(channels=2, depth=4, features=8, norm=norm, seed=0).eval()
    x = torch.rand(3, 2, 12, 10, generator=_gen())
    out = net(x, 0.1)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x - net.residual(x))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == (2 if norm == "batch" else 0)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 4


def test_dncnn_seed_is_repeatable_and_leaves_global_rng():
    state = torch.get_rng_state()
    a, b = DnCNN(depth=3, features=4, seed=5), DnCNN(depth=3, features=4, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_dncnn_with_zero_last_layer_is_the_identity():
    net = DnCNN(depth=3, features=4, seed=0)
    nn.init.zeros_(net.body[-1].weight)
    nn.init.zeros_(net.body[-1].bias)
    x = torch.rand(1, 1, 8, 8, generator=_gen())
    assert torch.equal(net(x), x)


def test_unet_denoiser_noise_level_input_and_odd_sizes():
    net = UNetDenoiser(features=(4, 8, 8), blocks=1, seed=0)
    x = torch.rand(2, 1, 13, 10, generator=_gen())
    a, b = net(x, 0.05), net(x, torch.tensor([0.05, 0.05]))
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)
    assert not torch.allclose(net(x, 0.0), net(x, 0.5))  # the level is an input


def test_training_images_hold_out_camera():
    from mlimaging.inverse._denoisers import DEFAULT_TRAIN_IMAGES, HELD_OUT_IMAGES

    assert not set(DEFAULT_TRAIN_IMAGES) & set(HELD_OUT_IMAGES)
    ims = load_training_images(["astronaut", "coins"])
    assert all(t.ndim == 3 and t.shape[0] == 1 and 0 <= float(t.min()) <= float(t.max()) <= 1 for t in ims)


def test_patch_dataset_is_seeded_and_noise_has_the_drawn_level():
    ds = PatchDataset(["coins"], patch_size=24, length=16, sigma=(0.05, 0.05), seed=3, augment=False)
    noisy, clean = ds[7]
    assert torch.equal(noisy, ds[7][0]) and not torch.equal(noisy, ds[8][0])
    assert abs(float((noisy - clean).std()) - 0.05) < 0.01
    cond = PatchDataset(["coins"], patch_size=8, length=2, sigma=0.1, noise_level_input=True)
    inp, _ = cond[0]
    assert inp.shape == (2, 8, 8) and bool(torch.allclose(inp[1], torch.full((8, 8), 0.1)))


@pytest.mark.parametrize("model", ["dncnn", "unet"])
def test_train_denoiser_through_fit_lowers_the_loss(model):
    net = DnCNN(depth=3, features=8, seed=0) if model == "dncnn" else UNetDenoiser(features=(8, 8), blocks=1, seed=0)
    trained, hist = train_denoiser(net, images=["coins"], patch_size=16, patches=64, epochs=3, batch_size=16,
                                   val_patches=16, lr=3e-3)
    assert trained is net and not trained.training
    assert hist["loss"][-1] < hist["loss"][0]
    assert "val_loss" in hist.epochs[-1]


def test_default_denoiser_caches_by_settings(tmp_path):
    kw = dict(depth=2, features=4, patches=32, epochs=1, patch_size=8, batch_size=16)
    a = default_denoiser("dncnn", cache_dir=tmp_path, **kw)
    files = list(tmp_path.glob("inverse_dncnn_*.pt"))
    assert len(files) == 1 and a.meta["settings"]["depth"] == 2
    b = default_denoiser("dncnn", cache_dir=tmp_path, **kw)  # loaded, not retrained
    for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q)
    default_denoiser("dncnn", cache_dir=tmp_path, **{**kw, "features": 6})
    assert len(list(tmp_path.glob("inverse_dncnn_*.pt"))) == 2  # another setting, another file
    ckpt = torch.load(files[0], weights_only=True)
    assert "model" in ckpt and ckpt["meta"]["cpu_seconds"] >= 0


# -- plug-and-play ----------------------------------------------------------------------------------
def test_pnp_with_identity_denoiser_is_landweber_to_least_squares():
    op = Blur(gaussian_kernel(0.5), padding="circular")
    x = torch.rand(1, 1, 12, 12, generator=_gen(), dtype=torch.float64)
    y = op.A(x) + 0.01 * torch.randn(x.shape, generator=_gen(1), dtype=torch.float64)
    rec = pnp(y, op, denoiser=lambda v, s: v, iterations=300, sigma=0.0)
    ls = least_squares(y, op, iterations=200, tol=1e-12)
    assert isinstance(rec, Reconstruction)
    torch.testing.assert_close(rec.x, ls.x, atol=1e-6, rtol=0)
    assert all(b <= a + 1e-12 for a, b in zip(rec.objective, rec.objective[1:], strict=False))  # monotone


@pytest.mark.parametrize("algorithm", ["pgd", "admm"])
def test_pnp_with_linear_shrinkage_equals_tikhonov(algorithm):
    # D(v) = v / (1 + c) = prox of (c / (2 eta)) ||x||^2 -> argmin 1/2||Ax-y||^2 + c/(2 eta)||x||^2
    op = Blur(gaussian_kernel(1.0), padding="circular")
    x = torch.rand(1, 1, 16, 16, generator=_gen(1), dtype=torch.float64)
    y = op.A(x)
    c, eta = 0.3, 0.8
    rec = pnp(y, op, denoiser=lambda v, s: v / (1 + c), algorithm=algorithm, iterations=400, step=eta)
    ref = tikhonov(y, op, lam=c / eta)
    torch.testing.assert_close(rec.x, ref.x, atol=1e-7, rtol=0)


def test_pnp_admm_and_pgd_agree_with_a_cg_linear_step():
    op = Inpainting((torch.rand(1, 1, 12, 12, generator=_gen(2)) > 0.4).double())
    x = torch.rand(1, 1, 12, 12, generator=_gen(3), dtype=torch.float64)
    shrink = lambda v, s: 0.5 * v  # noqa: E731
    a = pnp(op.A(x), op, denoiser=shrink, algorithm="pgd", iterations=200)
    b = pnp(op.A(x), op, denoiser=shrink, algorithm="admm", iterations=200)
    torch.testing.assert_close(a.x, b.x, atol=1e-8, rtol=0)


def test_pnp_blur_denoiser_improves_over_the_measurement():
    x = _smooth_image(32)
    op = Identity(noise=GaussianNoise(0.1, seed=0))
    y = op(x)
    smooth = Blur(gaussian_kernel(1.0), padding="reflect")
    rec = pnp(y, op, denoiser=lambda v, s: smooth.A(v), iterations=1, x_true=x)
    assert rec.psnr[-1] > _psnr(y, x) + 5
    assert len(rec.psnr) == rec.iterations == 1


def test_pnp_deblurring_with_a_smoothing_denoiser_converges_and_improves():
    x = _smooth_image(32)
    op = Blur(gaussian_kernel(2.0), padding="circular", noise=GaussianNoise(0.02, seed=0))
    y = op(x)
    smooth = Blur(gaussian_kernel(0.6), padding="reflect")
    for algorithm in ("pgd", "admm"):
        rec = pnp(y, op, denoiser=lambda v, s: smooth.A(v), algorithm=algorithm, iterations=60, x_true=x)
        assert rec.psnr[-1] > _psnr(y, x)
        assert abs(rec.psnr[-1] - rec.psnr[-2]) < 0.05  # converged


def test_pnp_with_a_network_sigma_schedule_and_eval_mode():
    net = DnCNN(depth=3, features=4, seed=0).train()
    x = _smooth_image(16)
    op = Blur(gaussian_kernel(1.0))
    rec = pnp(op.A(x), op, denoiser=net, iterations=4, sigma=[0.04, 0.03, 0.02, 0.01], x_true=x)
    assert net.training  # restored
    assert len(rec.psnr) == 4 and rec.x.shape == x.shape
    with pytest.raises(ValueError, match="sigma"):
        pnp(op.A(x), op, denoiser=net, iterations=4, sigma=[0.1, 0.2])


def test_pnp_rejects_a_denoiser_that_changes_the_shape():
    with pytest.raises(ValueError, match="denoiser"):
        pnp(torch.zeros(1, 1, 4, 4), Identity(), denoiser=lambda v, s: v[..., :2], iterations=1)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([
    {"algorithm": "fista"}, {"iterations": 0}, {"iterations": 2.5}, {"sigma": -0.1}, {"sigma": float("nan")},
    {"step": 0.0}, {"step": -1.0}, {"denoiser": "dncnn"}, {"cg_iterations": 0},
]))
def test_pnp_bad_input_names_the_argument(bad):
    kw = {"denoiser": lambda v, s: v, "iterations": 2, **bad}
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        pnp(torch.zeros(1, 1, 4, 4), Identity(), **kw)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([torch.zeros(4), torch.full((1, 1, 4, 4), float("nan")), torch.zeros(1, 1, 4, 4).long()]))
def test_pnp_bad_measurement(y):
    with pytest.raises(ValueError, match="y"):
        pnp(y, Identity(), denoiser=lambda v, s: v)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([{"depth": 1}, {"features": 0}, {"norm": "group"}, {"channels": 0}, {"depth": 2.0}]))
def test_dncnn_bad_options(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        DnCNN(**bad)

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
    DIPReconstruction,
    DnCNN,
    MeasurementDataset,
    PatchDataset,
    UNetDenoiser,
    UnrolledNet,
    csgm,
    deep_image_prior,
    default_denoiser,
    load_training_images,
    pnp,
    train_denoiser,
    train_unrolled,
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


def test_bias_free_dncnn_is_positively_homogeneous():
    # Mohan et al. 2020: without additive constants, R(a y, a sigma) = a R(y, sigma) for a >= 0
    net = DnCNN(depth=4, features=8, norm="none", bias=False, sigma_input=True, seed=0).eval()
    assert all(m.bias is None for m in net.modules() if isinstance(m, nn.Conv2d))
    y = torch.rand(2, 1, 12, 12, generator=_gen())
    with torch.no_grad():
        torch.testing.assert_close(net(3.0 * y, 0.3), 3.0 * net(y, 0.1), rtol=1e-5, atol=1e-6)
        assert torch.equal(net.residual(torch.zeros_like(y), 0.0), torch.zeros_like(y))


def test_dncnn_bias_false_needs_no_norm():
    with pytest.raises(ValueError, match="bias"):
        DnCNN(depth=3, features=4, norm="batch", bias=False)
    with pytest.raises(ValueError, match="bias"):
        DnCNN(depth=3, features=4, norm="none", bias=0)


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


def test_default_denoiser_warm_start_continues_from_the_cached_start(tmp_path):
    kw = dict(depth=2, features=4, patches=32, epochs=1, patch_size=8, batch_size=16)
    start = default_denoiser("dncnn", cache_dir=tmp_path, **kw)
    # a vanishing learning rate: the continued network keeps the start's weights (not a fresh initialisation)
    cont = default_denoiser("dncnn", cache_dir=tmp_path, **{**kw, "lr": 1e-12, "seed": 1, "warm_start": kw})
    assert len(list(tmp_path.glob("inverse_dncnn_*.pt"))) == 2  # the start was loaded from the cache, not retrained
    for p, q in zip(start.state_dict().values(), cont.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-8, rtol=0)
    assert cont.meta["warm_start_cpu_seconds"] == pytest.approx(start.meta["cpu_seconds"])
    assert cont.meta["settings"]["warm_start"] == kw


def test_default_denoiser_warm_start_none_keeps_the_cache_key(tmp_path):
    kw = dict(depth=2, features=4, patches=32, epochs=1, patch_size=8, batch_size=16)
    default_denoiser("dncnn", cache_dir=tmp_path, **kw)
    default_denoiser("dncnn", cache_dir=tmp_path, warm_start=None, **kw)  # explicit None: same file
    assert len(list(tmp_path.glob("inverse_dncnn_*.pt"))) == 1


@pytest.mark.parametrize("bad", [5, "epochs", [("epochs", 1)]])
def test_default_denoiser_rejects_a_bad_warm_start(tmp_path, bad):
    with pytest.raises(ValueError, match="warm_start"):
        default_denoiser("dncnn", cache_dir=tmp_path, depth=2, features=4, patches=8, epochs=1, patch_size=8,
                         warm_start=bad)


@pytest.mark.parametrize("bad", [["camera"], ["coins", "shepp_logan_phantom"], "coins", [], [3]])
def test_default_denoiser_refuses_held_out_or_bad_training_images(tmp_path, bad):
    with pytest.raises(ValueError, match="images"):
        default_denoiser("dncnn", cache_dir=tmp_path, depth=2, features=4, patches=8, epochs=1, patch_size=8,
                         images=bad)


def test_default_denoiser_trains_on_the_images_it_is_given(tmp_path):
    net = default_denoiser("dncnn", cache_dir=tmp_path, depth=2, features=4, patches=16, epochs=1, patch_size=8,
                           batch_size=16, images=["coins", "moon"])
    assert net.meta["images"] == ["coins", "moon"] and net.meta["settings"]["images"] == ["coins", "moon"]


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


@pytest.mark.parametrize("algorithm", ["pgd", "admm"])
def test_pnp_step_schedule_equals_a_constant_step(algorithm):
    op = Blur(gaussian_kernel(1.0), padding="circular")
    y = op.A(_smooth_image(16))
    kw = dict(denoiser=lambda v, s: 0.9 * v, algorithm=algorithm, iterations=5)
    a, b = pnp(y, op, step=0.7, **kw), pnp(y, op, step=[0.7] * 5, **kw)
    assert torch.equal(a.x, b.x)
    c = pnp(y, op, step=[0.7, 0.7, 0.7, 0.7, 0.2], **kw)
    assert c.objective[:4] == a.objective[:4]
    assert not torch.equal(c.x, a.x)


def test_pnp_rejects_a_denoiser_that_changes_the_shape():
    with pytest.raises(ValueError, match="denoiser"):
        pnp(torch.zeros(1, 1, 4, 4), Identity(), denoiser=lambda v, s: v[..., :2], iterations=1)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([
    {"algorithm": "fista"}, {"iterations": 0}, {"iterations": 2.5}, {"sigma": -0.1}, {"sigma": float("nan")},
    {"step": 0.0}, {"step": -1.0}, {"step": [0.5]}, {"step": [0.5, 0.0]}, {"denoiser": "dncnn"},
    {"cg_iterations": 0},
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


# -- unrolled proximal gradient ---------------------------------------------------------------------
def test_unrolled_shapes_and_untrained_net_is_landweber():
    op = Blur(gaussian_kernel(1.0), padding="circular")
    net = UnrolledNet(op, iterations=4, features=8, depth=3, seed=0)
    y = op.A(torch.rand(2, 1, 16, 12, generator=_gen()))
    xs = net(y, return_all=True)
    assert len(xs) == 5 and all(x.shape == (2, 1, 16, 12) for x in xs)
    lip = op.norm(y) ** 2
    x = op.A_adjoint(y) / lip
    for _ in range(4):  # zero-initialised last layers and steps 1/L: plain gradient descent
        x = x - op.A_adjoint(op.A(x) - y) / lip
    torch.testing.assert_close(xs[-1], x, atol=1e-6, rtol=1e-5)
    assert float(net.lipschitz) == pytest.approx(lip)


def test_unrolled_shared_has_one_cnn_and_fewer_parameters():
    op = Identity()
    a = UnrolledNet(op, iterations=5, shared=True, features=8, seed=0)
    b = UnrolledNet(op, iterations=5, shared=False, features=8, seed=0)
    assert len(a.prox) == 1 and len(b.prox) == 5
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(b) - 5 == 5 * (n(a) - 5)


def test_measurement_dataset_pairs_are_seeded_and_consistent():
    op = Blur(gaussian_kernel(1.0), padding="circular")
    ds = MeasurementDataset(op, ["coins"], patch_size=16, length=8, noise=0.0, seed=1)
    y, x = ds[2]
    torch.testing.assert_close(y, op.A(x[None])[0])
    noisy = MeasurementDataset(op, ["coins"], patch_size=16, length=8, noise=(0.05, 0.1), seed=1)
    assert torch.equal(noisy[2][0], noisy[2][0]) and torch.equal(noisy[2][1], x)
    assert 0.04 < float((noisy[2][0] - y).std()) < 0.12


def test_unrolled_training_through_fit_lowers_the_loss_and_beats_landweber():
    op = Blur(gaussian_kernel(1.5), padding="circular")
    kw = dict(images=["coins", "moon"], patch_size=24, noise=0.01)
    net, hist = train_unrolled(op, iterations=3, samples=96, epochs=3, batch_size=16, features=8, depth=3,
                               val_samples=16, lr=3e-3, **kw)
    assert hist["loss"][-1] < hist["loss"][0] and hist["val_loss"][-1] < hist["val_loss"][0]
    y, x = MeasurementDataset(op, length=4, seed=9, **kw)[0]
    untrained = UnrolledNet(op, iterations=3, features=8, depth=3, seed=0)
    with torch.no_grad():
        assert _psnr(net(y[None])[0], x) > _psnr(untrained(y[None])[0], x)



def test_noise_conditional_dncnn_uses_the_noise_map_and_requires_sigma():
    net = DnCNN(depth=3, features=8, sigma_input=True, seed=0).eval()
    assert net.body[0].in_channels == 2
    x = torch.rand(2, 1, 12, 12, generator=_gen())
    a, b = net(x, 0.05), net(x, 0.2)
    assert a.shape == x.shape and not torch.allclose(a, b)
    per_sample = net(x, torch.tensor([0.05, 0.2]))  # one level per image = the two calls
    torch.testing.assert_close(per_sample, torch.cat([a[:1], b[1:]]))
    with pytest.raises(ValueError, match="sigma"):
        net(x)


def test_log_uniform_noise_levels_stay_in_range_and_favour_low_levels():
    kw = dict(patch_size=8, length=200, sigma=(0.01, 0.16), noise_level_input=True, seed=0)
    levels = {m: [float(PatchDataset(["coins"], sigma_sampling=m, **kw)[i][0][1, 0, 0]) for i in range(200)]
              for m in ("uniform", "log")}
    assert all(0.01 <= v <= 0.16 for v in levels["log"])
    below = {m: sum(v < 0.04 for v in vals) for m, vals in levels.items()}  # log: P = 1/2; uniform: 1/5
    assert below["log"] > 70 and below["uniform"] < 60
    with pytest.raises(ValueError, match="low > 0"):
        PatchDataset(["coins"], patch_size=8, sigma=(0.0, 0.1), sigma_sampling="log")
    with pytest.raises(ValueError, match="sigma_sampling"):
        PatchDataset(["coins"], patch_size=8, sigma_sampling="normal")

def test_pnp_hqs_is_admm_without_the_dual_update():
    op = Blur(gaussian_kernel(1.0), padding="circular")
    x = _smooth_image(16)
    y = op.A(x)
    shrink = lambda v, s: v / (1.0 + s)  # noqa: E731
    kw = dict(denoiser=shrink, iterations=1, sigma=0.5, step=2.0)
    # one iteration: u starts at 0, so both take the same x- and z-steps
    torch.testing.assert_close(pnp(y, op, algorithm="hqs", **kw).x, pnp(y, op, algorithm="admm", **kw).x)
    # HQS by hand: x = (A^T A + I/eta)^{-1}(A^T y + z/eta), z = D(x)
    z = op.A_adjoint(y) / op.norm(y) ** 2
    for _ in range(3):
        z = shrink(z + tikhonov(y - op.A(z), op, lam=0.5).x, 0.3)
    torch.testing.assert_close(pnp(y, op, algorithm="hqs", denoiser=shrink, iterations=3, sigma=0.3, step=2.0).x,
                               z, atol=1e-6, rtol=1e-5)


def test_unfolded_pnp_starts_as_pnp_hqs_and_fine_tunes_through_fit():
    op = Blur(gaussian_kernel(1.5), padding="circular")
    den = DnCNN(depth=3, features=8, sigma_input=True, seed=0).eval()
    sig, eta = [0.1, 0.05, 0.02], [8.0, 2.0, 0.5]
    net = UnrolledNet(op, iterations=3, denoiser=den, sigma=sig, step=eta).eval()
    y = op.A(_smooth_image(16)) + 0.01 * torch.randn(1, 1, 16, 16, generator=_gen(3))
    with torch.no_grad():
        torch.testing.assert_close(net(y), pnp(y, op, denoiser=den, algorithm="hqs", iterations=3, sigma=sig,
                                               step=eta).x, atol=1e-5, rtol=1e-4)
    assert len(net.prox) == 3 and net.prox[0] is not den
    kw = dict(images=["coins", "moon"], patch_size=24, noise=0.01)
    trained, hist = train_unrolled(op, iterations=3, samples=64, epochs=2, batch_size=16, val_samples=16,
                                   lr=1e-3, denoiser=den, sigma=sig, step=eta, shared=True, **kw)
    assert len(trained.prox) == 1 and hist["loss"][-1] < hist["loss"][0]
    bn = [m for m in trained.prox.modules() if isinstance(m, nn.BatchNorm2d)]
    trained.train()
    assert bn and not any(m.training for m in bn)  # frozen statistics
    torch.testing.assert_close(bn[0].running_mean, den.body[3].running_mean)  # the original is untouched too
    assert not torch.equal(trained.log_sigma.detach(), torch.tensor(sig).log())


def test_plain_unrolled_state_dict_keys_are_unchanged():
    net = UnrolledNet(Identity(), iterations=2, features=4, depth=2, seed=0)
    assert {k for k in net.state_dict() if not k.startswith("prox.")} == {"steps", "lipschitz"}


# -- CSGM -------------------------------------------------------------------------------------------
def _mlp_generator() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 64), nn.Tanh(), nn.Linear(64, 256), nn.Sigmoid(), nn.Unflatten(1, (1, 16, 16)))


def test_csgm_recovers_an_image_in_the_generator_range():
    g = _mlp_generator()
    x = g(torch.randn(2, 4, generator=_gen(1))).detach()
    op = Inpainting((torch.rand(1, 1, 16, 16, generator=_gen(2)) > 0.7).float())  # 30% of the pixels
    rec = csgm(op.A(x), op, generator=g, steps=300, lr=0.1, restarts=4, z_dim=4, x_true=x)
    assert rec.objective[-1] < 1e-6 * rec.objective[0]
    assert rec.psnr[-1] > 60 and rec.psnr[0] < 30
    assert len(rec.objective) == len(rec.psnr) == rec.iterations == 300


def test_csgm_with_a_dcgan_generator_is_seeded_and_leaves_it_in_train_mode():
    from mlimaging.generative import DCGANGenerator

    g = DCGANGenerator(latent_dim=8, image_size=28, width=4).train()
    op = Blur(gaussian_kernel(1.0))
    y = torch.rand(1, 1, 28, 28, generator=_gen())
    a = csgm(y, op, generator=g, steps=5, restarts=2, lam=0.1, seed=3)
    b = csgm(y, op, generator=g, steps=5, restarts=2, lam=0.1, seed=3)
    assert g.training and torch.equal(a.x, b.x) and a.x.shape == (1, 1, 28, 28)
    with pytest.raises(ValueError, match="generator"):
        csgm(torch.zeros(1, 1, 8, 8), Identity(), generator=g, steps=2)  # 28 x 28 images, 8 x 8 measurement


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([{"steps": 0}, {"lr": 0.0}, {"restarts": 0}, {"lam": -1.0}, {"z_dim": 0},
                        {"generator": 3}, {"seed": -1}]))
def test_csgm_bad_input_names_the_argument(bad):
    kw = {"generator": _mlp_generator(), "z_dim": 4, "steps": 2, **bad}
    with pytest.raises(ValueError, match=next(iter(bad))):
        csgm(torch.zeros(1, 1, 16, 16), Identity(), **kw)


# -- deep image prior -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dip_run():
    im = load_training_images(["camera"])[0][None]
    x = torch.nn.functional.interpolate(im, size=(32, 32), mode="area")
    y = x + 0.1 * torch.randn(x.shape, generator=_gen())
    rec = deep_image_prior(y, Identity(), steps=250, lr=0.02, channels=(16, 16), input_channels=8, input_jitter=0.0,
                           window=10, patience=250, stop=False, x_true=x, seed=0)
    return x, y, rec


def test_dip_psnr_rises_then_falls_and_the_variance_rule_stops_near_the_peak(dip_run):
    x, y, rec = dip_run
    assert isinstance(rec, DIPReconstruction) and rec.iterations == 250 and len(rec.psnr) == 250
    peak = max(rec.psnr)
    k = rec.psnr.index(peak)
    assert 10 < k < 200  # rises, then ...
    assert rec.psnr[-1] < peak - 1.0  # ... falls as the network fits the noise
    assert peak > _psnr(y, x) + 1.0
    assert rec.psnr[rec.stop_iteration - 1] > peak - 0.5  # the no-reference rule stops near the peak
    assert rec.psnr[rec.stop_iteration - 1] > rec.psnr[-1] + 0.5
    torch.testing.assert_close(rec.x, rec.x_last if rec.stop_iteration == 250 else rec.x)
    assert len(rec.variance) == 250 - 10 + 1


def test_dip_stops_early_and_is_seeded(dip_run):
    x, y, full = dip_run
    kw = dict(steps=250, lr=0.02, channels=(16, 16), input_channels=8, input_jitter=0.0, window=10, x_true=x)
    rec = deep_image_prior(y, Identity(), patience=20, **kw)
    assert rec.converged and rec.iterations < 250
    assert rec.psnr == full.psnr[: rec.iterations]  # same seed, same run (bit for bit)


def test_dip_discrepancy_rule_stops_when_the_residual_reaches_the_noise(dip_run):
    x, y, full = dip_run
    rec = deep_image_prior(y, Identity(), steps=250, lr=0.02, channels=(16, 16), input_channels=8, input_jitter=0.0,
                           early_stopping="discrepancy", noise_level=0.1, x_true=x)
    k = rec.stop_iteration
    assert rec.converged and rec.iterations == k
    assert rec.objective[k - 1] <= 0.01 and all(v > 0.01 for v in rec.objective[: k - 1])


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([{"steps": 0}, {"lr": -1.0}, {"early_stopping": "psnr"}, {"window": 0},
                        {"early_stopping": "discrepancy"}, {"channels": ()}, {"input_jitter": -0.1},
                        {"seed": 1.5}]))
def test_dip_bad_input_names_the_argument(bad):
    name = "noise_level" if bad == {"early_stopping": "discrepancy"} else next(iter(bad))
    with pytest.raises(ValueError, match=name):
        deep_image_prior(torch.zeros(1, 1, 8, 8), Identity(), **bad)


def test_dip_needs_one_2d_image():
    with pytest.raises(ValueError, match="one 2D image"):
        deep_image_prior(torch.zeros(2, 1, 8, 8), Identity(), steps=1)

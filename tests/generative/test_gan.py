from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.generative.gan import (
    GAN_LOSSES,
    DCGANDiscriminator,
    DCGANGenerator,
    GANStep,
    SampleGrid,
    gan_loss,
    gradient_penalty,
    save_image_grid,
    tile_images,
)
from mlimaging.training import fit

LOG2 = math.log(2.0)


# ------------------------------------------------------------------------------ losses: worked examples
def test_minimax_and_non_saturating_at_an_undecided_discriminator():
    zero = torch.zeros(3)
    for kind in ("minimax", "non_saturating"):  # sigma(0) = 1/2: -log(1/2) - log(1 - 1/2)
        assert gan_loss(kind).discriminator(zero, zero).item() == pytest.approx(2 * LOG2)
    assert gan_loss("minimax").generator(zero).item() == pytest.approx(-LOG2)  # log(1 - 1/2)
    assert gan_loss("non_saturating").generator(zero).item() == pytest.approx(LOG2)  # -log(1/2)


def test_minimax_by_hand():
    # r = log 3 -> sigma = 3/4; f = -log 3 -> sigma = 1/4
    r, f = torch.tensor([math.log(3.0)]), torch.tensor([-math.log(3.0)])
    d = gan_loss("minimax").discriminator(r, f).item()
    assert d == pytest.approx(-math.log(0.75) - math.log(0.75))
    assert gan_loss("minimax").generator(f).item() == pytest.approx(math.log(0.75))
    assert gan_loss("non_saturating").generator(f).item() == pytest.approx(-math.log(0.25))


def test_hinge_by_hand():
    loss = gan_loss("hinge")
    # real: max(0, 1 - 2) = 0, max(0, 1 - 0.5) = 0.5 -> 0.25; fake: max(0, 1 - 3) = 0, max(0, 1 + 0) = 1 -> 0.5
    assert loss.discriminator(torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])).item() == pytest.approx(0.75)
    assert loss.discriminator(torch.tensor([1.0, 5.0]), torch.tensor([-1.0, -4.0])).item() == 0.0  # margins met
    assert loss.generator(torch.tensor([-1.0, 3.0])).item() == pytest.approx(-1.0)


def test_wasserstein_by_hand():
    loss = gan_loss("wgan_gp")
    assert loss.discriminator(torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])).item() == pytest.approx(-3.0)
    assert loss.generator(torch.tensor([0.5, 1.5])).item() == pytest.approx(-1.0)


def test_minimax_discriminator_loss_equals_binary_cross_entropy():
    g = torch.Generator().manual_seed(0)
    r, f = 3 * torch.randn(50, generator=g), 3 * torch.randn(50, generator=g)
    bce = (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
           + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))
    torch.testing.assert_close(gan_loss("minimax").discriminator(r, f), bce)
    torch.testing.assert_close(gan_loss("non_saturating").generator(f),
                               F.binary_cross_entropy_with_logits(f, torch.ones_like(f)))


def test_minimax_generator_saturates_where_non_saturating_does_not():
    f = torch.tensor([-8.0], requires_grad=True)  # D confidently rejects the sample
    (g_mm,) = torch.autograd.grad(gan_loss("minimax").generator(f), f)
    (g_ns,) = torch.autograd.grad(gan_loss("non_saturating").generator(f), f)
    assert abs(g_mm.item()) < 1e-3 < 0.99 < abs(g_ns.item())  # -sigma(f) vs -(1 - sigma(f))
    assert g_ns.item() < 0 and g_mm.item() < 0  # both push f up


def test_every_kind_prefers_a_correct_discriminator():
    right, wrong = (torch.tensor([3.0]), torch.tensor([-3.0])), (torch.tensor([-3.0]), torch.tensor([3.0]))
    for kind in GAN_LOSSES:
        loss = gan_loss(kind)
        assert loss.discriminator(*right) < loss.discriminator(*wrong)
        assert loss.generator(torch.tensor([3.0])) < loss.generator(torch.tensor([-3.0]))  # G wants D fooled


# ------------------------------------------------------------------------------ gradient penalty
def _linear_critic(weight: list[float]) -> nn.Module:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(len(weight), 1))
    with torch.no_grad():
        critic[1].weight.copy_(torch.tensor([weight]))
        critic[1].bias.fill_(0.3)
    return critic


def test_gradient_penalty_vanishes_for_a_unit_norm_linear_critic():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, generator=g)
    critic = _linear_critic((w / w.norm()).tolist())
    real, fake = torch.rand(16, 3, 2, 2, generator=g), torch.randn(16, 3, 2, 2, generator=g)
    assert gradient_penalty(critic, real, fake, generator=g).item() < 1e-12


def test_gradient_penalty_of_a_scaled_linear_critic_is_norm_minus_one_squared():
    critic = _linear_critic([0.0, 3.0, 4.0, 0.0])  # ||w|| = 5 -> (5 - 1)^2
    x = torch.rand(6, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    assert gradient_penalty(critic, x, x.flip(0)).item() == pytest.approx(16.0)


def test_gradient_penalty_matches_autograd_at_the_mixed_points():
    torch.manual_seed(0)
    critic = DCGANDiscriminator(width=4, norm="none")
    g = torch.Generator().manual_seed(3)
    real, fake = torch.rand(5, 1, 28, 28, generator=g), torch.rand(5, 1, 28, 28, generator=g)
    gp = gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(7))
    eps = torch.rand(5, 1, 1, 1, generator=torch.Generator().manual_seed(7))
    norms = []
    for i in range(5):  # one sample at a time: the penalty is per sample
        xi = (eps[i] * real[i] + (1 - eps[i]) * fake[i])[None].requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(xi).sum(), xi)
        norms.append(grad.norm())
    torch.testing.assert_close(gp, (torch.stack(norms) - 1).pow(2).mean())


# ------------------------------------------------------------------------------ networks
@pytest.mark.parametrize("size", [28, 32, 48, 64])
def test_generator_and_discriminator_shapes(size):
    torch.manual_seed(0)
    G = DCGANGenerator(latent_dim=10, image_size=size, channels=3, width=4)
    D = DCGANDiscriminator(image_size=size, channels=3, width=4)
    x = G(torch.randn(2, 10))
    assert x.shape == (2, 3, size, size) and 0 <= x.min() and x.max() <= 1
    assert D(x).shape == (2,)


def test_paper_layout_at_64_pixels():
    G, D = DCGANGenerator(image_size=64, width=128), DCGANDiscriminator(image_size=64, width=128)
    chans = [m.out_channels for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert G.project[1].unflattened_size == (1024, 4, 4) and chans == [512, 256, 128, 3 - 2]  # 4 -> 64 px
    assert [m.out_channels for m in D.modules() if isinstance(m, nn.Conv2d)] == [128, 256, 512, 1024]


def test_conditional_networks_use_the_labels():
    torch.manual_seed(0)
    G = DCGANGenerator(latent_dim=8, width=4, num_classes=10)
    D = DCGANDiscriminator(width=4, num_classes=10)
    G.eval(), D.eval()  # batch norm in eval mode: each image on its own
    z = torch.randn(3, 8)
    a, b = G(z, torch.tensor([0, 1, 2])), G(z, torch.tensor([5, 1, 2]))
    assert not torch.equal(a[0], b[0]) and torch.equal(a[1:], b[1:])
    assert not torch.equal(D(a, torch.tensor([0, 1, 2]))[0], D(a, torch.tensor([3, 1, 2]))[0])


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.integers(-10, 200), st.floats(allow_nan=True), st.none(), st.booleans()))
def test_bad_image_size_is_a_value_error(size):
    if isinstance(size, int) and not isinstance(size, bool) and 28 <= size <= 64 and size % 4 == 0:
        DCGANGenerator(image_size=size, width=2)
        return
    for cls in (DCGANGenerator, DCGANDiscriminator):
        with pytest.raises(ValueError, match="image_size"):
            cls(image_size=size, width=2)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(-3, 12), min_size=1, max_size=4))
def test_bad_labels_are_value_errors(labels):
    G = DCGANGenerator(latent_dim=4, width=2, num_classes=10)
    z = torch.zeros(3, 4)
    if len(labels) == 3 and all(0 <= v < 10 for v in labels):
        assert G(z, torch.tensor(labels)).shape == (3, 1, 28, 28)
        return
    with pytest.raises(ValueError, match="labels"):
        G(z, torch.tensor(labels))


def test_other_bad_inputs():
    G, D = DCGANGenerator(latent_dim=4, width=2), DCGANDiscriminator(width=2)
    for z in (torch.zeros(2, 5), torch.zeros(2, 4, dtype=torch.long), torch.zeros(4), "z"):
        with pytest.raises(ValueError, match="z must"):
            G(z)
    with pytest.raises(ValueError, match="x must"):
        D(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="unconditional"):
        G(torch.zeros(2, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs labels"):
        DCGANGenerator(latent_dim=4, width=2, num_classes=3)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="kind"):
        gan_loss("wasserstein")
    with pytest.raises(ValueError, match="non-empty float"):
        gan_loss("hinge").discriminator(torch.tensor([1, 2]), torch.zeros(2))
    with pytest.raises(ValueError, match="norm"):
        DCGANDiscriminator(norm="spectral")
    with pytest.raises(ValueError, match="batch norm"):
        GANStep(DCGANDiscriminator(width=2), loss="wgan_gp")
    with pytest.raises(ValueError, match="n_critic"):
        GANStep(DCGANDiscriminator(width=2), n_critic=0)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(D, torch.zeros(2, 1, 28, 28), torch.zeros(3, 1, 28, 28))


# ------------------------------------------------------------------------------ the step through fit
def _data(n=32, labels=False):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g)
    return TensorDataset(x, torch.arange(n) % 10) if labels else TensorDataset(x)


def _train(epochs, *, kind="non_saturating", ckpt=None, resume=False, n_critic=1, conditional=False, seed=0,
           ema=None):
    torch.manual_seed(seed)
    k = 10 if conditional else None
    G = DCGANGenerator(latent_dim=8, width=4, num_classes=k)
    D = DCGANDiscriminator(width=4, num_classes=k, norm="layer" if kind == "wgan_gp" else "batch")
    step = GANStep(D, loss=kind, n_critic=n_critic, seed=seed, ema=ema,
                   d_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.5, 0.9)))
    h = fit(G, _data(labels=conditional), step=step, metrics=(), epochs=epochs, batch_size=16, progress=False,
            optimizer=lambda p: torch.optim.Adam(p, lr=1e-3, betas=(0.5, 0.9)), checkpoint_dir=ckpt, resume=resume,
            seed=seed)
    return G, step, h


@pytest.mark.parametrize("kind", GAN_LOSSES)
def test_step_logs_the_losses_and_discriminator_outputs(kind):
    _, _, h = _train(2, kind=kind)
    last = h.epochs[-1]
    for key in ("d_loss", "g_loss", "D(x)", "D(G(z))", "gp"):
        assert math.isfinite(last[key]), key
    assert last["loss"] == pytest.approx(last["g_loss"])  # fit's loss is the generator's
    if kind in ("minimax", "non_saturating"):
        assert 0 < last["D(x)"] < 1 and 0 < last["D(G(z))"] < 1
    assert (last["gp"] > 0) == (kind == "wgan_gp")


@pytest.mark.parametrize("kind,conditional,ema", [("non_saturating", False, 0.9), ("wgan_gp", True, None)])
def test_resume_through_fit_is_exact(tmp_path, kind, conditional, ema):
    G_full, step_full, h_full = _train(3, kind=kind, conditional=conditional, n_critic=2, ema=ema)
    _train(2, kind=kind, ckpt=tmp_path, conditional=conditional, n_critic=2, ema=ema)
    G_res, step_res, h_res = _train(3, kind=kind, ckpt=tmp_path, resume=True, conditional=conditional, n_critic=2,
                                    ema=ema)
    for a, b in zip(G_full.state_dict().values(), G_res.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(step_full.discriminator.state_dict().values(), step_res.discriminator.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert step_res.calls == step_full.calls == 3 * 2
    if ema is not None:
        for a, b in zip(step_full.ema_generator.state_dict().values(), step_res.ema_generator.state_dict().values(),
                        strict=True):
            assert torch.equal(a, b)
    assert h_res["g_loss"] == h_full["g_loss"]
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert set(ckpt["step"]) >= {"discriminator", "d_optimizer", "generator", "calls"}


def test_n_critic_updates_the_generator_every_nth_batch():
    torch.manual_seed(0)
    G = DCGANGenerator(latent_dim=8, width=4)
    step = GANStep(DCGANDiscriminator(width=4), n_critic=3)
    opt = torch.optim.SGD(G.parameters(), lr=0.1)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in G.parameters()]
    changed = []
    for _ in range(6):
        d_before = [p.detach().clone() for p in step.discriminator.parameters()]
        step(G, (x,), optimizer=opt)
        now = [p.detach().clone() for p in G.parameters()]
        changed.append(any(not torch.equal(a, b) for a, b in zip(before, now, strict=True)))
        assert any(not torch.equal(a, b) for a, b in zip(d_before, step.discriminator.parameters(), strict=True))
        before = now
    assert changed == [False, False, True, False, False, True]


def test_ema_generator_is_the_running_average_of_the_iterates():
    torch.manual_seed(0)
    G = DCGANGenerator(latent_dim=8, width=4)
    step = GANStep(DCGANDiscriminator(width=4), ema=0.75)
    opt = torch.optim.SGD(G.parameters(), lr=0.5)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    step(G, (x,), optimizer=opt)
    first = [p.detach().clone() for p in G.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(step.ema_generator.parameters(), first, strict=True))
    step(G, (x,), optimizer=opt)
    for avg, p1, p2 in zip(step.ema_generator.parameters(), first, G.parameters(), strict=True):
        torch.testing.assert_close(avg, 0.75 * p1 + 0.25 * p2)
    assert not step.ema_generator.training
    with pytest.raises(ValueError, match="ema"):
        GANStep(DCGANDiscriminator(width=4), ema=1.0)


def test_a_conditional_step_needs_labels():
    G = DCGANGenerator(latent_dim=4, width=2, num_classes=10)
    step = GANStep(DCGANDiscriminator(width=2, num_classes=10))
    with pytest.raises(ValueError, match="labels"):
        step(G, (torch.rand(4, 1, 28, 28),), optimizer=torch.optim.SGD(G.parameters(), lr=0.1))


def test_a_few_steps_teach_the_discriminator_the_real_images():
    torch.manual_seed(0)
    G = DCGANGenerator(latent_dim=8, width=4)
    step = GANStep(DCGANDiscriminator(width=4, norm="none"), d_optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    x = torch.zeros(16, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0  # one easy "real" image
    opt = torch.optim.SGD(G.parameters(), lr=0.0)  # a frozen generator
    for _ in range(40):
        _, logs = step(G, (x,), optimizer=opt)
    assert logs["D(x)"] > 0.9 and logs["D(G(z))"] < 0.5  # undecided: 0.5 and 0.5
    assert logs["d_loss"] < 0.7 < 2 * LOG2


# ------------------------------------------------------------------------------ grids
def test_tile_images_by_hand():
    images = torch.arange(3.0).reshape(3, 1, 1, 1)
    grid = tile_images(images, ncols=2, padding=1, pad_value=9.0)
    expected = torch.tensor([[9, 9, 9, 9, 9], [9, 0, 9, 1, 9], [9, 9, 9, 9, 9], [9, 2, 9, 9, 9], [9, 9, 9, 9, 9.0]])
    torch.testing.assert_close(grid[0], expected)
    with pytest.raises(ValueError, match="images"):
        tile_images(torch.zeros(0, 1, 2, 2))


def test_sample_grid_saves_one_png_per_epoch_with_fixed_latents(tmp_path):
    from mlimaging.data.io import read_image

    torch.manual_seed(0)
    G = DCGANGenerator(latent_dim=8, width=4)
    grid = SampleGrid(tmp_path / "samples", n=6, ncols=3, seed=1)
    step = GANStep(DCGANDiscriminator(width=4))
    fit(G, _data(), step=step, metrics=(), epochs=2, batch_size=16, progress=False, callbacks=[grid],
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3))
    assert [p.name for p in grid.paths] == ["samples_epoch_001.png", "samples_epoch_002.png"]
    img, _ = read_image(grid.paths[-1])
    assert img.shape == (2 * 30 + 2, 3 * 30 + 2)
    G.eval()
    again = G.sample(6, generator=torch.Generator().manual_seed(1))
    path = save_image_grid(again, tmp_path / "again.png", ncols=3)
    assert (read_image(path)[0] == img).all()  # the same z, the same generator -> the same grid
    assert G.training is False

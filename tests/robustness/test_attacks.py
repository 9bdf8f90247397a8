"""FGSM and PGD: worked examples by hand and invariants (budget, range, loss, model state)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models import create_model
from mlimaging.robustness import FGSM, PGD, attack, fgsm, pgd


def _linear(w: list[float]) -> nn.Module:
    """f(x) = (w . x, 0): class 0's logit is linear, class 1's is zero."""
    lin = nn.Linear(len(w), 2, bias=False)
    lin.weight.data = torch.tensor([w, [0.0] * len(w)])
    return lin


def _cnn(channels: int = 1, dims: int = 2, bn: bool = True, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    conv, norm, pool = (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d) if dims == 2 else \
        (nn.Conv3d, nn.BatchNorm3d, nn.AdaptiveAvgPool3d)
    layers = [conv(channels, 8, 3, padding=1)] + ([norm(8)] if bn else []) + \
        [nn.ReLU(), pool(2), nn.Flatten(), nn.Linear(8 * 2**dims, 5)]
    return nn.Sequential(*layers)


def _data(b: int = 8, c: int = 1, size: int = 8, dims: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, c) + (size,) * dims, generator=g), torch.randint(0, 5, (b,), generator=g)


def _l2(t: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(t.flatten(1), dim=1)


# --------------------------------------------------------------------------- worked examples


def test_fgsm_linear_model_by_hand():
    # d CE(class 0)/dx = -(1 - p0) w, so x moves by -eps sign(w) = (-0.1, +0.1, -0.1)
    model = _linear([1.0, -2.0, 0.5])
    x = torch.full((2, 3), 0.5)
    out = fgsm(model, x, torch.tensor([0, 0]), eps=0.1)
    assert torch.equal(out, torch.tensor([[0.4, 0.6, 0.4]] * 2))
    # class 1: d CE/dx = p0 w, so x moves by +eps sign(w); clipped at the top of the range
    out = fgsm(model, torch.tensor([[0.95, 0.5, 0.5]]), torch.tensor([1]), eps=0.1)
    assert torch.allclose(out, torch.tensor([[1.0, 0.4, 0.6]]))
    # targeted towards class 1: descend CE(class 1), i.e. -eps sign(p0 w)
    out = fgsm(model, x[:1], torch.tensor([1]), eps=0.1, targeted=True)
    assert torch.allclose(out, torch.tensor([[0.4, 0.6, 0.4]]))


def test_fgsm_in_hounsfield_units_with_relative_eps():
    model = _linear([1.0, -1.0])
    x = torch.tensor([[40.0, 3000.0]])
    out = fgsm(model, x, torch.tensor([0]), eps=0.02, valid_range=(-1024, 3071), eps_relative=True)
    # 0.02 of the 4095 HU width is 81.9 HU; the second pixel stops at 3071
    assert torch.allclose(out, torch.tensor([[40.0 - 81.9, 3071.0]]), atol=1e-3)


def test_pgd_linf_linear_model_reaches_the_corner():
    # the gradient sign is constant, so 5 steps of 0.03 end at the corner x - eps sign(w)
    model = _linear([1.0, -2.0, 0.5])
    out = pgd(model, torch.full((1, 3), 0.5), torch.tensor([0]), eps=0.1, alpha=0.03, steps=5, random_start=False)
    assert torch.allclose(out, torch.tensor([[0.4, 0.6, 0.4]]), atol=1e-6)


def test_pgd_l2_linear_model_moves_along_minus_w():
    # the gradient direction is -w / |w| at every point: the result is x - eps w / |w|
    w = torch.tensor([3.0, -4.0])
    model = _linear(w.tolist())
    out = pgd(model, torch.full((1, 2), 0.5), torch.tensor([0]), eps=0.25, alpha=0.1, steps=4, norm="l2",
              random_start=False)
    assert torch.allclose(out, torch.tensor([[0.5 - 0.15, 0.5 + 0.2]]), atol=1e-6)


def test_default_alpha_is_madry_step():
    model = _linear([1.0, -1.0])
    x = torch.full((1, 2), 0.5)
    a = pgd(model, x, torch.tensor([0]), eps=0.1, steps=4, random_start=False)
    b = pgd(model, x, torch.tensor([0]), eps=0.1, alpha=2.5 * 0.1 / 4, steps=4, random_start=False)
    assert torch.equal(a, b)


def test_attack_verb_and_classes_match_functions():
    model, (x, y) = _cnn(bn=False), _data()
    assert torch.equal(attack(model, x, y, eps=0.05), fgsm(model, x, y, eps=0.05))
    assert torch.equal(FGSM(eps=0.05)(model, x, y), fgsm(model, x, y, eps=0.05))
    kw = dict(eps=0.1, alpha=0.02, steps=3, random_start=False)
    assert torch.equal(attack(model, x, y, method="pgd", **kw), pgd(model, x, y, **kw))
    assert torch.equal(PGD(**kw)(model, x, y), pgd(model, x, y, **kw))
    assert torch.equal(PGD(steps=3, random_start=False).with_eps(0.1)(model, x, y),
                       pgd(model, x, y, eps=0.1, steps=3, random_start=False))
    with pytest.raises(ValueError, match="eps"):
        PGD(steps=3)(model, x, y)
    with pytest.raises(ValueError, match="method"):
        attack(model, x, y, method="cw", eps=0.1)
    with pytest.raises(ValueError, match="setting"):
        FGSM(eps=0.1, steps=3)


def test_eps_zero_returns_x():
    model, (x, y) = _cnn(), _data()
    assert torch.equal(fgsm(model, x, y, eps=0.0), x)
    assert torch.equal(pgd(model, x, y, eps=0.0, alpha=0.01, steps=2), x)
    assert torch.equal(pgd(model, x, y, eps=0.0, alpha=0.01, steps=2, norm="l2"), x)


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [False, True])
def test_budget_and_range(norm, random_start):
    model, (x, y) = _cnn(), _data()
    eps = 0.1 if norm == "linf" else 0.5
    out = pgd(model, x, y, eps=eps, alpha=eps / 4, steps=6, norm=norm, random_start=random_start)
    dist = (out - x).flatten(1).abs().amax(1) if norm == "linf" else _l2(out - x)
    assert bool((dist <= eps * (1 + 1e-5)).all())
    assert dist.max() > 0.5 * eps
    assert out.min() >= 0 and out.max() <= 1


def test_per_channel_tensor_ranges_relative_eps():
    lo, hi = torch.tensor([0.0, -1.0, -1024.0]), torch.tensor([1.0, 1.0, 3071.0])
    g = torch.Generator().manual_seed(0)
    x = lo.view(1, 3, 1, 1) + (hi - lo).view(1, 3, 1, 1) * torch.rand(4, 3, 8, 8, generator=g)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(5))
    model(x)
    y = torch.randint(0, 5, (4,), generator=g)
    out = pgd(model, x, y, eps=0.05, steps=5, valid_range=(lo, hi), eps_relative=True)
    width = (hi - lo).view(1, 3, 1, 1)
    rel = ((out - x).abs() / width).amax(dim=(0, 2, 3))
    assert bool((rel <= 0.05 + 1e-5).all()) and bool((rel > 0.02).all())   # same fraction per channel
    assert bool((out >= lo.view(1, 3, 1, 1)).all()) and bool((out <= hi.view(1, 3, 1, 1)).all())
    # L2 in normalised units: ||(x_adv - x) / w|| <= eps
    out = pgd(model, x, y, eps=0.5, steps=5, norm="l2", valid_range=(lo, hi), eps_relative=True)
    assert bool((_l2((out - x) / width) <= 0.5 * (1 + 1e-5)).all())
    out = fgsm(model, x, y, eps=0.05, valid_range=(lo, hi), eps_relative=True)
    assert torch.allclose(((out - x).abs() / width).amax(dim=(0, 2, 3)), torch.full((3,), 0.05), atol=1e-5)


def test_per_sample_range():
    model, (x, y) = _cnn(bn=False), _data(b=4)
    hi = torch.tensor([1.0, 2.0, 4.0, 8.0]).view(4, 1, 1, 1)
    x = x * hi
    out = fgsm(model, x, y, eps=0.1, valid_range=(0.0, hi), eps_relative=True)
    assert torch.allclose((out - x).abs().flatten(1).amax(1), 0.1 * hi.flatten(), rtol=1e-5)
    assert bool((out <= hi).all()) and bool((out >= 0).all())


def test_unbounded_range():
    model, (x, y) = _cnn(bn=False), _data()
    x = 5 * x - 2  # z-scored-like values, no range
    out = fgsm(model, x, y, eps=0.3, valid_range=None)
    assert torch.allclose((out - x).abs(), torch.full_like(x, 0.3), atol=1e-6)


def test_loss_does_not_decrease():
    model, (x, y) = _cnn(), _data(b=16)
    model.eval()
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
    for out in (fgsm(model, x, y, eps=0.03), pgd(model, x, y, eps=0.03, alpha=0.01, steps=5)):
        with torch.no_grad():
            adv = F.cross_entropy(model(out), y, reduction="none")
        assert adv.mean() > clean.mean()
    # a linear model's cross-entropy is convex in x: FGSM raises every sample's loss
    lin, x2 = nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), x.clone()
    out = fgsm(lin, x2, y, eps=0.01, valid_range=None)
    with torch.no_grad():
        assert bool((F.cross_entropy(lin(out), y, reduction="none") > F.cross_entropy(lin(x2), y, reduction="none")).all())


def test_targeted_raises_target_probability():
    model, (x, _) = _cnn(), _data(b=16)
    model.eval()
    target = torch.full((16,), 3)
    with torch.no_grad():
        p0 = model(x).softmax(1)[:, 3]
    for out in (fgsm(model, x, target, eps=0.05, targeted=True),
                pgd(model, x, target, eps=0.05, alpha=0.01, steps=10, targeted=True)):
        with torch.no_grad():
            assert model(out).softmax(1)[:, 3].mean() > p0.mean()


def test_restarts_keep_the_strongest():
    model, (x, y) = _cnn(), _data(b=16)
    model.eval()
    kw = dict(eps=0.05, alpha=0.01, steps=3)
    one = pgd(model, x, y, generator=torch.Generator().manual_seed(7), **kw)
    three = pgd(model, x, y, generator=torch.Generator().manual_seed(7), restarts=3, **kw)
    with torch.no_grad():
        l1, l3 = (F.cross_entropy(model(t), y, reduction="none") for t in (one, three))
        w1, w3 = (model(t).argmax(1) != y for t in (one, three))
    assert bool((w3 >= w1).all())
    same = w3 == w1
    assert bool((l3[same] >= l1[same] - 1e-6).all())
    assert (three - x).abs().max() <= 0.05 + 1e-6


def test_model_state_is_restored_and_x_untouched():
    model, (x, y) = _cnn(), _data()
    model.train()
    model[0].weight.requires_grad_(False)          # a frozen layer stays frozen
    model[1].eval()                                # a BatchNorm kept in eval stays in eval
    model[1].momentum = 0.5
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    x0 = x.clone()
    for fn in (lambda: fgsm(model, x, y, eps=0.1), lambda: pgd(model, x, y, eps=0.1, steps=3, restarts=2)):
        out = fn()
        assert not out.requires_grad and out.data_ptr() != x.data_ptr()
        assert torch.equal(x, x0) and not x.requires_grad
        assert [m.training for m in model.modules()] == modes
        assert [p.requires_grad for p in model.parameters()] == flags
        assert all(p.grad is None for p in model.parameters())
        for k, v in model.state_dict().items():
            assert torch.equal(v, buffers[k]), k


def test_runs_under_no_grad():
    model, (x, y) = _cnn(), _data()
    with torch.no_grad():
        a = fgsm(model, x, y, eps=0.05)
        b = pgd(model, x, y, eps=0.05, steps=2, random_start=False)
    assert torch.equal(a, fgsm(model, x, y, eps=0.05))
    assert torch.equal(b, pgd(model, x, y, eps=0.05, steps=2, random_start=False))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_seeded_generator_is_repeatable(norm):
    model, (x, y) = _cnn(), _data()
    eps = 0.05 if norm == "linf" else 0.5
    a = pgd(model, x, y, eps=eps, steps=2, norm=norm, generator=torch.Generator().manual_seed(3))
    b = pgd(model, x, y, eps=eps, steps=2, norm=norm, generator=torch.Generator().manual_seed(3))
    c = pgd(model, x, y, eps=eps, steps=2, norm=norm, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    dist = _l2(a - x) if norm == "l2" else (a - x).flatten(1).abs().amax(1)
    assert bool((dist <= eps * (1 + 1e-5)).all())


def test_3d_inputs():
    model, (x, y) = _cnn(dims=3), _data(b=4, size=6, dims=3)
    for norm, eps in (("linf", 0.05), ("l2", 0.5)):
        out = pgd(model, x, y, eps=eps, steps=3, norm=norm)
        assert out.shape == x.shape
        dist = (out - x).flatten(1).abs().amax(1) if norm == "linf" else _l2(out - x)
        assert bool((dist <= eps * (1 + 1e-5)).all())


@pytest.mark.parametrize("loss", ["ce", "dice"])
def test_segmentation_unet(loss):
    torch.manual_seed(0)
    model = create_model("unet", spatial_dims=2, in_channels=1, num_classes=3, depth=2, channels=4).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 16, 16, generator=g)
    with torch.no_grad():
        y = model(x).argmax(1)                     # the model's own segmentation: clean loss is low
    out = pgd(model, x, y, eps=0.1, alpha=0.02, steps=5, loss=loss, valid_range=(0.0, 1.0))
    assert (out - x).abs().max() <= 0.1 + 1e-6
    with torch.no_grad():
        agree_clean = (model(x).argmax(1) == y).float().mean()
        agree_adv = (model(out).argmax(1) == y).float().mean()
    assert agree_adv < agree_clean
    # targeted: push every pixel towards label 0
    target = torch.zeros_like(y)
    out = pgd(model, x, target, eps=0.1, alpha=0.02, steps=5, loss=loss, targeted=True)
    with torch.no_grad():
        assert model(out).softmax(1)[:, 0].mean() > model(x).softmax(1)[:, 0].mean()


def test_segmentation_3d_and_callable_loss():
    torch.manual_seed(0)
    model = nn.Conv3d(1, 2, 3, padding=1)
    x = torch.rand(2, 1, 6, 6, 6)
    y = torch.randint(0, 2, (2, 1, 6, 6, 6))       # (B, 1, *spatial) label maps are accepted
    a = pgd(model, x, y, eps=0.05, steps=2, random_start=False)
    b = pgd(model, x, y, eps=0.05, steps=2, random_start=False,
            loss=lambda logits, t: F.cross_entropy(logits, t[:, 0]))
    assert torch.allclose(a, b, atol=1e-6)
    c = pgd(model, x, y, eps=0.05, steps=2, restarts=2, loss=lambda logits, t: F.cross_entropy(logits, t[:, 0]))
    assert c.shape == x.shape


def test_memory_layout_of_the_result_follows_x():
    """2D CPU batches are attacked channels-last internally; the result has x's layout and
    the same values whichever layout x has."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x, y = _data(c=3)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    for fn in (lambda t: fgsm(model, t, y, eps=0.05), lambda t: pgd(model, t, y, eps=0.05, steps=2, random_start=False),
               lambda t: pgd(model, t, y, eps=0.5, steps=2, norm="l2", random_start=False)):
        a, b = fn(x), fn(x_cl)
        assert a.is_contiguous() and b.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(a, b)
    model3, (x3, y3) = _cnn(channels=2, dims=3), _data(b=4, c=2, size=6, dims=3)
    a = pgd(model3, x3, y3, eps=0.05, steps=2, random_start=False)
    b = pgd(model3, x3.contiguous(memory_format=torch.channels_last_3d), y3, eps=0.05, steps=2, random_start=False)
    assert a.is_contiguous() and torch.equal(a, b)


def test_cross_entropy_module_equals_default_loss():
    model, (x, y) = _cnn(), _data()
    kw = dict(eps=0.05, steps=3, restarts=2)
    a = pgd(model, x, y, generator=torch.Generator().manual_seed(0), **kw)
    b = pgd(model, x, y, generator=torch.Generator().manual_seed(0), loss=nn.CrossEntropyLoss(), **kw)
    c = pgd(model, x, y, generator=torch.Generator().manual_seed(0), loss=lambda o, t: F.cross_entropy(o, t), **kw)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_zero_budget_accepts_zero_step():
    """A budget list that starts at 0 with alpha = 2.5 eps / steps gives alpha = 0 there."""
    model, (x, y) = _cnn(), _data()
    assert torch.equal(pgd(model, x, y, eps=0.0, alpha=0.0, steps=3), x)
    with pytest.raises(ValueError, match="alpha"):
        pgd(model, x, y, eps=0.1, alpha=0.0, steps=3)

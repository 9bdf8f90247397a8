"""Adversarial training steps inside fit: smoke runs, robustness gained, exact special cases, resume."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.robustness import (
    PGD,
    FastAdversarialStep,
    PGDAdversarialStep,
    adversarial_step,
    robust_accuracy,
)
from mlimaging.training import TrainStep, fit


def _problem(n: int, seed: int):
    """Feature 0 separates the classes with margin 0.3 (robust); 15 weak features shifted by
    0.1 each (predictive together, but an eps = 0.15 perturbation reverses all of them)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    s = (2 * y - 1).float()
    x = torch.empty(n, 16)
    x[:, 0] = 0.5 + 0.3 * s + 0.03 * torch.randn(n, generator=g)
    x[:, 1:] = 0.5 + 0.1 * s[:, None] + 0.05 * torch.randn(n, 15, generator=g)
    return x.clamp(0, 1), y


def _net(seed: int = 0, bn: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), *([nn.BatchNorm1d(32)] if bn else []), nn.ReLU(), nn.Linear(32, 2))


def _fit(net, data, epochs=6, **kw):
    return fit(net, data, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), epochs=epochs, batch_size=64,
               metrics=(), progress=False, **kw)


@pytest.fixture(scope="module")
def problem():
    return _problem(512, 0), _problem(512, 1)


def test_fast_at_reduces_adversarial_loss_and_gains_robustness(problem):
    (x, y), test = problem
    step = FastAdversarialStep(eps=0.15)
    robust = _net()
    h = _fit(robust, TensorDataset(x, y), step=step)
    assert h["adv_loss"][-1] < 0.8 * h["adv_loss"][0]
    assert h["loss"] == h["adv_loss"]                       # clean_weight 0: trains on x_adv only
    standard = _net()
    _fit(standard, TensorDataset(x, y), loss=nn.CrossEntropyLoss())
    attack = PGD(steps=10, random_start=False)
    rob = robust_accuracy(robust, test, attack, [0.0, 0.15])
    std = robust_accuracy(standard, test, attack, [0.0, 0.15])
    assert rob[0]["accuracy"] > 0.95 and std[0]["accuracy"] > 0.95
    assert rob[1]["accuracy"] > std[1]["accuracy"] + 0.05
    assert rob[1]["accuracy"] > 0.9


def test_pgd_at_with_clean_weight_logs_both_losses(problem):
    (x, y), test = problem
    net = _net(bn=True)
    h = _fit(net, TensorDataset(x, y), step=PGDAdversarialStep(eps=0.15, steps=3, clean_weight=0.5), epochs=4,
             val_data=TensorDataset(*test))
    last = h.epochs[-1]
    assert {"adv_loss", "clean_loss", "loss", "val_loss"} <= set(last)
    assert last["loss"] == pytest.approx(0.5 * last["clean_loss"] + 0.5 * last["adv_loss"], rel=1e-5)
    assert h["adv_loss"][-1] < h["adv_loss"][0]
    assert robust_accuracy(net, test, PGD(steps=10), [0.15])[0]["accuracy"] > 0.85


@pytest.mark.parametrize("kind", ["clean_weight_1", "eps_0"])
def test_degenerate_settings_equal_standard_training(problem, kind):
    """clean_weight = 1, or eps = 0, is standard training: the same weights, bit for bit."""
    (x, y), _ = problem
    ds = TensorDataset(x[:128], y[:128])
    ref = _net()
    _fit(ref, ds, epochs=2, loss=nn.CrossEntropyLoss())
    net = _net()
    step = FastAdversarialStep(eps=0.1, clean_weight=1.0) if kind == "clean_weight_1" else \
        PGDAdversarialStep(eps=0.0, steps=2)
    _fit(net, ds, epochs=2, step=step)
    for a, b in zip(ref.parameters(), net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_step_attacks_with_the_model_in_eval_and_restores_training(problem):
    (x, y), _ = problem
    net = _net(bn=True).train()
    seen = []
    net[1].register_forward_hook(lambda m, i, o: seen.append(m.training))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss, extras = PGDAdversarialStep(eps=0.1, steps=2)(net, (x[:32], y[:32]), optimizer=opt)
    assert seen == [False, False, True]                     # 2 attack forwards in eval, 1 training forward
    assert net.training and all(p.requires_grad for p in net.parameters())
    assert torch.equal(loss, extras["adv_loss"])


def test_seeded_step_resumes_exactly(problem, tmp_path):
    (x, y), _ = problem
    ds = TensorDataset(x[:128], y[:128])
    full = _net()
    _fit(full, ds, epochs=3, step=FastAdversarialStep(eps=0.1, seed=5))
    part = _net()
    _fit(part, ds, epochs=2, step=FastAdversarialStep(eps=0.1, seed=5), checkpoint_dir=tmp_path)
    resumed = _net(seed=1)
    step = FastAdversarialStep(eps=0.1, seed=5)
    _fit(resumed, ds, epochs=3, step=step, checkpoint_dir=tmp_path, resume=True)
    for a, b in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)
    assert "generator" in step.state_dict()


def test_segmentation_step_with_dice_loss():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    y = (x[:, 0] > 0.5).long()
    h = _fit(net, TensorDataset(x, y), epochs=5, step=FastAdversarialStep(eps=0.05, loss="dice"))
    assert h["adv_loss"][-1] < h["adv_loss"][0]


def test_adversarial_step_factory():
    assert isinstance(adversarial_step("fgsm", eps=0.1), FastAdversarialStep)
    step = adversarial_step("pgd", eps=0.2, steps=4, clean_weight=0.25)
    assert isinstance(step, PGDAdversarialStep) and isinstance(step, TrainStep)
    assert (step.alpha, step.steps, step.clean_weight) == (pytest.approx(0.125), 4, 0.25)
    assert FastAdversarialStep(eps=0.2).alpha == pytest.approx(0.25)    # 1.25 eps (Wong et al.)
    with pytest.raises(ValueError, match="kind"):
        adversarial_step("trades", eps=0.1)
    with pytest.raises(ValueError, match="clean_weight"):
        FastAdversarialStep(eps=0.1, clean_weight=1.5)
    with pytest.raises(ValueError, match="eps"):
        PGDAdversarialStep(eps=-0.1)
    with pytest.raises(ValueError, match="steps"):
        PGDAdversarialStep(eps=0.1, steps=0)
    with pytest.raises(ValueError, match="norm"):
        PGDAdversarialStep(eps=0.1, norm="l1")
    with pytest.raises(ValueError, match="alpha"):
        FastAdversarialStep(eps=0.1, alpha=0.0)
    assert FastAdversarialStep(eps=0.0, alpha=0.0).alpha == 0.0

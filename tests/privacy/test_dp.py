"""DP-SGD: per-sample gradients and one step against Opacus, ε against Opacus's accountant,
clipping / averaging / virtual-step invariants, Poisson batches, BatchNorm handling, exact resume,
bad input, and a smoke run through fit."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.privacy.dp import (
    DPSGDStep,
    PoissonBatchSampler,
    check_model,
    make_private,
    per_sample_gradients,
    to_groupnorm,
)

opacus = pytest.importorskip("opacus")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class Tokens(nn.Module):
    """Embedding -> LayerNorm -> mean over tokens -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.norm = nn.LayerNorm(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(self.emb(x)).mean(1))


def _cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(2, 8, 3, stride=2, padding=1), nn.GroupNorm(4, 8), nn.Tanh(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 3))


CASES = {
    "linear": (lambda: nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)),
               lambda g: torch.randn(6, 5, generator=g)),
    "linear-seq": (lambda: nn.Sequential(nn.Linear(5, 4), nn.Flatten(), nn.Linear(12, 3)),
                   lambda g: torch.randn(6, 3, 5, generator=g)),
    "conv-groupnorm": (_cnn, lambda g: torch.randn(6, 2, 8, 8, generator=g)),
    "conv1d": (lambda: nn.Sequential(nn.Conv1d(2, 4, 3, padding="same"), nn.Flatten(),
                                     nn.Linear(4 * 9, 3)), lambda g: torch.randn(6, 2, 9, generator=g)),
    "embedding": (Tokens, lambda g: torch.randint(0, 11, (6, 4), generator=g)),
}


def _opacus_grad_samples(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    from opacus import GradSampleModule

    gsm = GradSampleModule(copy.deepcopy(model))
    nn.CrossEntropyLoss()(gsm(x), y).backward()
    return {k.removeprefix("_module."): p.grad_sample for k, p in gsm.named_parameters()}


# ------------------------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("method", ["hooks", "vmap"])
def test_per_sample_gradients_equal_opacus(case: str, method: str) -> None:
    make, inputs = CASES[case]
    torch.manual_seed(0)
    model = make()
    g = _gen(1)
    x, y = inputs(g), torch.randint(0, 3, (6,), generator=g)
    ours = per_sample_gradients(model, nn.CrossEntropyLoss(), x, y, method=method)
    ref = _opacus_grad_samples(model, x, y)
    assert set(ours) == set(ref)
    for k in ref:
        assert_allclose(ours[k].detach().numpy(), ref[k].numpy(), atol=1e-6, err_msg=k)


@pytest.mark.parametrize("conv", [nn.Conv1d(2, 4, 3, padding="same", padding_mode="reflect"),
                                  nn.Conv2d(2, 4, 3, padding=2, dilation=2, padding_mode="circular"),
                                  nn.Conv2d(2, 4, (3, 2), stride=(2, 1), padding="valid")])
def test_hooks_equal_vmap_for_padding_modes(conv: nn.Module) -> None:
    # Opacus 1.6 unfolds with zero padding whatever the padding_mode; torch.func is the oracle here
    model = nn.Sequential(conv, nn.Flatten(), nn.LazyLinear(3))
    x = torch.randn(5, 2, *([9] if isinstance(conv, nn.Conv1d) else [7, 6]), generator=_gen(11))
    model(x)
    y = torch.randint(0, 3, (5,), generator=_gen(12))
    hooks = per_sample_gradients(model, nn.CrossEntropyLoss(), x, y, method="hooks")
    ref = per_sample_gradients(model, nn.CrossEntropyLoss(), x, y, method="vmap")
    for k in ref:
        assert_allclose(hooks[k].detach().numpy(), ref[k].numpy(), atol=1e-6, err_msg=k)


def test_dp_step_equals_opacus_with_the_same_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
    from opacus.optimizers import optimizer as opacus_optimizer

    torch.manual_seed(0)
    model = _cnn()
    twin = copy.deepcopy(model)
    g = _gen(2)
    x, y = torch.randn(12, 2, 8, 8, generator=g), torch.randint(0, 3, (12,), generator=g)
    sigma, c, expected = 0.7, 0.05, 10.0  # small C: most samples are clipped
    step = DPSGDStep(noise_multiplier=sigma, max_grad_norm=c, expected_batch_size=expected, seed=3)
    noise_gen = torch.Generator()
    noise_gen.set_state(step.generator.get_state())

    def same_noise(std, reference, generator=None, secure_mode=False):
        return torch.normal(0.0, std, reference.shape, generator=noise_gen)

    monkeypatch.setattr(opacus_optimizer, "_generate_noise", same_noise)
    ours_opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    _, logs = step(model, (x, y), optimizer=ours_opt)
    gsm = GradSampleModule(twin)
    ref_opt = DPOptimizer(torch.optim.SGD(gsm.parameters(), lr=0.5, momentum=0.9), noise_multiplier=sigma,
                          max_grad_norm=c, expected_batch_size=int(expected))
    ref_opt.zero_grad()
    nn.CrossEntropyLoss()(gsm(x), y).backward()
    ref_opt.step()
    for (k, p), q in zip(model.named_parameters(), twin.parameters(), strict=True):
        assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-6, err_msg=k)
    assert 0.5 < float(logs["clipped_fraction"]) <= 1.0


def test_epsilon_after_training_equals_opacus_rdp_accountant() -> None:
    from opacus.accountants import RDPAccountant

    g = _gen(3)
    data = TensorDataset(torch.randn(40, 3, generator=g), torch.randint(0, 2, (40,), generator=g))
    private = make_private(nn.Linear(3, 2), lambda p: torch.optim.SGD(p, lr=0.1), data, batch_size=10,
                           target_epsilon=2.0, target_delta=1e-5, epochs=3)
    h = private.fit(progress=False, metrics=())
    ref = RDPAccountant()
    ref.history = [(private.noise_multiplier, private.sample_rate, 3 * private.steps_per_epoch)]
    eps_ref = ref.get_epsilon(1e-5)
    assert_allclose(h["epsilon"][-1], eps_ref, rtol=1e-6)
    assert eps_ref <= 2.0 + 0.02  # sigma calibrated to the target
    assert private.step.steps == 3 * private.steps_per_epoch


# ------------------------------------------------------------------------------------------- invariants
def test_each_clipped_per_sample_gradient_has_norm_at_most_c() -> None:
    torch.manual_seed(0)
    model = _cnn()
    g = _gen(4)
    x, y = torch.randn(8, 2, 8, 8, generator=g) * 5, torch.randint(0, 3, (8,), generator=g)
    c = 0.01
    for i in range(8):  # a batch of one sample with lr 1, divisor 1: the update is the clipped gradient
        net = copy.deepcopy(model)
        before = torch.cat([p.detach().flatten() for p in net.parameters()])
        step = DPSGDStep(noise_multiplier=0.0, max_grad_norm=c, expected_batch_size=1)
        step(net, (x[i:i + 1], y[i:i + 1]), optimizer=torch.optim.SGD(net.parameters(), lr=1.0))
        after = torch.cat([p.detach().flatten() for p in net.parameters()])
        assert float((before - after).norm()) <= c * (1 + 1e-5)
        full = per_sample_gradients(model, nn.CrossEntropyLoss(), x[i:i + 1], y[i:i + 1])
        norm = math.sqrt(sum(float(v.pow(2).sum()) for v in full.values()))
        assert_allclose(float((before - after).norm()), min(norm, c * norm / (norm + 1e-6)), rtol=1e-4)


@pytest.mark.parametrize("case", ["conv-groupnorm", "embedding"])
def test_no_noise_and_huge_clip_norm_give_the_plain_mean_gradient(case: str) -> None:
    make, inputs = CASES[case]
    torch.manual_seed(0)
    model = make()
    twin = copy.deepcopy(model)
    g = _gen(5)
    x, y = inputs(g), torch.randint(0, 3, (6,), generator=g)
    step = DPSGDStep(noise_multiplier=0.0, max_grad_norm=1e6, expected_batch_size=6)
    step(model, (x, y), optimizer=torch.optim.SGD(model.parameters(), lr=1.0))
    opt = torch.optim.SGD(twin.parameters(), lr=1.0)
    nn.CrossEntropyLoss()(twin(x), y).backward()
    opt.step()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-6)


@pytest.mark.parametrize("method", ["hooks", "vmap"])
def test_virtual_steps_give_the_update_of_one_physical_batch(method: str) -> None:
    torch.manual_seed(0)
    model = _cnn()
    twin = copy.deepcopy(model)
    g = _gen(6)
    x, y = torch.randn(11, 2, 8, 8, generator=g), torch.randint(0, 3, (11,), generator=g)
    kw = dict(noise_multiplier=1.0, max_grad_norm=0.1, expected_batch_size=10.0, seed=1, method=method)
    loss_a, logs_a = DPSGDStep(**kw)(model, (x, y), optimizer=torch.optim.SGD(model.parameters(), lr=0.3))
    loss_b, logs_b = DPSGDStep(max_physical_batch_size=4, **kw)(twin, (x, y),
                                                                optimizer=torch.optim.SGD(twin.parameters(), lr=0.3))
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert_allclose(p.detach().numpy(), q.detach().numpy(), atol=1e-6)
    assert_allclose(float(loss_a), float(loss_b), rtol=1e-5)
    assert float(logs_a["clipped_fraction"]) == float(logs_b["clipped_fraction"])


def test_poisson_batches_have_the_expected_size_and_empty_batches_still_step() -> None:
    sampler = PoissonBatchSampler(1000, 0.05, steps=400, seed=0)
    sizes = torch.tensor([len(b) for b in sampler], dtype=torch.float64)
    # Binomial(1000, 0.05): mean 50, sd of the mean of 400 draws ~ 0.34
    assert abs(float(sizes.mean()) - 50) < 2.0
    assert all(len(set(b)) == len(b) for b in PoissonBatchSampler(50, 0.5, steps=5, seed=1))
    g = _gen(7)
    data = TensorDataset(torch.randn(20, 3, generator=g), torch.randint(0, 2, (20,), generator=g))
    private = make_private(nn.Linear(3, 2), lambda p: torch.optim.SGD(p, lr=0.1), data, batch_size=1,
                           noise_multiplier=1.0, epochs=1)
    batches = list(private.train_data)
    assert any(len(b[0]) == 0 for b in batches) and all(b[0].shape[1:] == (3,) for b in batches)
    net = private.model
    before = net.weight.detach().clone()
    empty = next(b for b in batches if len(b[0]) == 0)
    loss, _ = private.step(net, empty, optimizer=torch.optim.SGD(net.parameters(), lr=0.1))
    assert float(loss) == 0.0 and not torch.equal(before, net.weight)  # noise only
    assert len(private.accountant) == 1


def test_resume_continues_exactly(tmp_path) -> None:
    g = _gen(8)
    data = TensorDataset(torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g))

    def run(epochs: int, resume: bool) -> tuple[nn.Module, list[float]]:
        torch.manual_seed(0)
        private = make_private(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)),
                               lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.5), data, batch_size=16,
                               noise_multiplier=0.8, seed=5)
        h = private.fit(epochs=epochs, checkpoint_dir=tmp_path / ("b" if resume else "a"), resume=resume,
                        progress=False, metrics=())
        return private.model, h["epsilon"]

    full, eps_full = run(3, False)
    run(1, True)
    resumed, eps_resumed = run(3, True)
    for p, q in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
    assert eps_full == eps_resumed


# ------------------------------------------------------------------------------------------- BatchNorm
@pytest.mark.parametrize("norm", [nn.BatchNorm2d(4), nn.SyncBatchNorm(4), nn.InstanceNorm2d(4, track_running_stats=True)])
def test_layers_mixing_samples_are_named_or_fixed(norm: nn.Module) -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.ReLU(), norm), nn.Flatten(), nn.Linear(4 * 16, 2))
    data = TensorDataset(torch.randn(8, 1, 6, 6, generator=_gen(9)), torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"1\.1 \({type(norm).__name__}\)"):
        make_private(model, lambda p: torch.optim.SGD(p, lr=0.1), data, batch_size=4, noise_multiplier=1.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    private = make_private(model, opt, data, batch_size=4, noise_multiplier=1.0, fix_model=True, epochs=1)
    check_model(private.model)
    assert {id(p) for p in private.optimizer.param_groups[0]["params"]} == {id(p) for p in model.parameters()}
    private.fit(progress=False, metrics=())


def test_to_groupnorm_uses_the_largest_divisor_up_to_32() -> None:
    net = to_groupnorm(nn.Sequential(nn.BatchNorm1d(48), nn.BatchNorm2d(7), nn.BatchNorm3d(64)))
    assert [m.num_groups for m in net] == [24, 7, 32]


# ------------------------------------------------------------------------------------------- bad input
_DATA = TensorDataset(torch.randn(10, 2), torch.zeros(10, dtype=torch.long))


@settings(max_examples=25, deadline=None)
@given(bad=st.one_of(st.integers(max_value=0), st.integers(min_value=11, max_value=10**6), st.floats(), st.none()))
def test_bad_batch_size_is_a_value_error(bad) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        make_private(nn.Linear(2, 2), lambda p: torch.optim.SGD(p, lr=0.1), _DATA, batch_size=bad,
                     noise_multiplier=1.0)


@settings(max_examples=25, deadline=None)
@given(sigma=st.one_of(st.floats(max_value=-1e-9), st.just(float("nan")), st.just(float("inf"))),
       c=st.one_of(st.floats(max_value=0.0), st.just(float("nan"))))
def test_bad_noise_or_clip_norm_is_a_value_error(sigma: float, c: float) -> None:
    with pytest.raises(ValueError, match="noise_multiplier"):
        make_private(nn.Linear(2, 2), lambda p: torch.optim.SGD(p, lr=0.1), _DATA, batch_size=2,
                     noise_multiplier=sigma)
    with pytest.raises(ValueError, match="max_grad_norm"):
        DPSGDStep(noise_multiplier=1.0, max_grad_norm=c, expected_batch_size=2)


@settings(max_examples=25, deadline=None)
@given(q=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0001), st.just(float("nan"))))
def test_bad_sample_rate_is_a_value_error(q: float) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        PoissonBatchSampler(10, q)


def test_noise_options_are_exclusive_and_epsilon_needs_epochs() -> None:
    opt = lambda p: torch.optim.SGD(p, lr=0.1)  # noqa: E731
    with pytest.raises(ValueError, match="exactly one"):
        make_private(nn.Linear(2, 2), opt, _DATA, batch_size=2)
    with pytest.raises(ValueError, match="exactly one"):
        make_private(nn.Linear(2, 2), opt, _DATA, batch_size=2, noise_multiplier=1.0, target_epsilon=3.0, epochs=1)
    with pytest.raises(ValueError, match="needs epochs"):
        make_private(nn.Linear(2, 2), opt, _DATA, batch_size=2, target_epsilon=3.0)
    step = DPSGDStep(noise_multiplier=1.0, expected_batch_size=2)
    with pytest.raises(ValueError, match="grad_clip"):
        step(nn.Linear(2, 2), (torch.randn(2, 2), torch.zeros(2, dtype=torch.long)),
             optimizer=torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1), grad_clip=1.0)
    with pytest.raises(ValueError, match="y must be"):
        per_sample_gradients(nn.Linear(2, 2), nn.CrossEntropyLoss(), torch.randn(3, 2), torch.zeros(2))


# ------------------------------------------------------------------------------------------- smoke
def test_private_training_learns_and_logs_epsilon_and_clipping() -> None:
    g = _gen(10)
    x = torch.randn(400, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    data = TensorDataset(x, y)
    private = make_private(nn.Linear(2, 2), lambda p: torch.optim.SGD(p, lr=1.0), data, batch_size=100,
                           target_epsilon=8.0, epochs=5, max_physical_batch_size=32, seed=1)
    h = private.fit(data, progress=False)
    assert h["val_accuracy"][-1] > 0.9
    assert 0 < h["epsilon"][0] < h["epsilon"][-1] <= 8.0 + 0.1
    assert all(0.0 <= f <= 1.0 for f in h["clipped_fraction"])

"""Gradient inversion (DLG, iDLG, Inverting Gradients), reconstruction quality and defences."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from mlimaging.data import load_dataset
from mlimaging.metrics import psnr, ssim
from mlimaging.privacy.attacks import (
    defence_curve,
    defend_gradients,
    dlg,
    dlg_lenet,
    idlg,
    idlg_label,
    inverting_gradients,
    reconstruction_quality,
    recover_labels,
    shared_gradients,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """These small double-backward graphs run fastest on one thread (and do not fight other tests for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def digits():
    """The first mnist5k test digit of each class: (10, 1, 28, 28) in [0, 1] and labels 0..9."""
    ds = load_dataset("mnist5k", split="test")
    first: dict[int, torch.Tensor] = {}
    for i in range(len(ds)):
        x, y = ds[i]
        first.setdefault(int(y), x)
        if len(first) == 10:
            break
    return torch.stack([first[c] for c in range(10)]), torch.arange(10)


@pytest.fixture(scope="module")
def net():
    return dlg_lenet(image_size=28, generator=_gen(0))


# --------------------------------------------------------------------------- the paper's setting (target)
def test_idlg_reconstructs_a_digit_above_30_db_with_the_exact_label(net, digits):
    """DLG's setting: one image, sigmoid LeNet with U(-0.5, 0.5) weights; iDLG label, L-BFGS."""
    x, y = digits[0][3:4], digits[1][3:4]
    grads = shared_gradients(net, x, y)
    assert idlg_label(net, grads) == 3
    res = idlg(net, grads, shape=x.shape, iterations=20, seed=0)
    assert res.labels.tolist() == [3]
    q = reconstruction_quality(res.images, x)
    assert q.mean_psnr >= 30.0
    assert q.mean_ssim >= 0.95
    assert res.loss < 1e-3
    assert res.history[-1] < res.history[0]


def test_dlg_with_the_given_label_is_idlg(net, digits):
    x, y = digits[0][7:8], digits[1][7:8]
    grads = shared_gradients(net, x, y)
    a = idlg(net, grads, shape=x.shape, iterations=3, seed=4)
    b = dlg(net, grads, shape=x.shape, labels=[7], iterations=3, seed=4)
    assert torch.equal(a.images, b.images) and a.loss == b.loss


# --------------------------------------------------------------------------- worked examples
def test_idlg_label_on_every_class(net, digits):
    x, y = digits
    for c in range(10):
        assert idlg_label(net, shared_gradients(net, x[c:c + 1], y[c:c + 1])) == c
        wrong = (c + 3) % 10  # the label the client used, not the digit's class
        assert idlg_label(net, shared_gradients(net, x[c:c + 1], torch.tensor([wrong]))) == wrong


def test_idlg_label_by_hand_on_a_linear_layer():
    """Rows of dL/dW are (p_i - [i = y]) h: with h = (1, 2) and p = softmax(0) = 1/3, row y is -2/3 h."""
    model = nn.Linear(2, 3, bias=False)
    h = torch.tensor([1.0, 2.0])
    for y in range(3):
        g = (torch.full((3,), 1 / 3) - F.one_hot(torch.tensor(y), 3))[:, None] * h
        assert idlg_label(model, [g]) == y
        assert idlg_label(model, [-g]) != y or y == idlg_label(model, [-g])  # sign flip: no crash
    # the same gradient from autograd: the model's weights are zero, so p is uniform
    with torch.no_grad():
        model.weight.zero_()
    grads = shared_gradients(model, h[None], torch.tensor([2]))
    torch.testing.assert_close(grads[0], (torch.full((3,), 1 / 3) - F.one_hot(torch.tensor(2), 3))[:, None] * h)


def test_batch_labels_recovered_from_an_untrained_network(net, digits):
    x, y = digits
    idx = torch.tensor([0, 2, 5, 6, 9])
    labels = recover_labels(net, shared_gradients(net, x[idx], y[idx]), shape=x[idx].shape)
    assert labels.tolist() == sorted(y[idx].tolist())


def test_inverting_gradients_improves_a_small_batch_and_keeps_the_box():
    model = dlg_lenet(image_size=8, generator=_gen(0))
    x = torch.rand(2, 1, 8, 8, generator=_gen(1))
    grads = shared_gradients(model, x, torch.tensor([1, 4]))
    short = inverting_gradients(model, grads, shape=x.shape, iterations=1, seed=0)
    res = inverting_gradients(model, grads, shape=x.shape, iterations=150, value_range=(0.0, 1.0), seed=0)
    assert res.labels.tolist() == [1, 4]
    assert res.loss < short.loss
    assert float(res.images.min()) >= 0.0 and float(res.images.max()) <= 1.0
    assert reconstruction_quality(res.images, x).mean_psnr > reconstruction_quality(short.images, x).mean_psnr
    boxed = inverting_gradients(model, grads, shape=x.shape, iterations=5, value_range=(0.25, 0.75), seed=0)
    assert float(boxed.images.min()) >= 0.25 and float(boxed.images.max()) <= 0.75


def test_restarts_keep_the_best_start():
    model = dlg_lenet(image_size=8, generator=_gen(0))
    x = torch.rand(1, 1, 8, 8, generator=_gen(2))
    grads = shared_gradients(model, x, torch.tensor([5]))
    one = inverting_gradients(model, grads, shape=x.shape, iterations=20, restarts=1, seed=3)
    three = inverting_gradients(model, grads, shape=x.shape, iterations=20, restarts=3, seed=3)
    assert three.loss <= one.loss  # the first start of three is the single start
    assert 0 <= three.restart < 3
    d1 = dlg(model, grads, shape=x.shape, iterations=2, restarts=1, seed=3)
    d3 = dlg(model, grads, shape=x.shape, iterations=2, restarts=3, seed=3)
    assert d3.loss <= d1.loss


# --------------------------------------------------------------------------- invariants
def test_the_model_and_inputs_are_left_as_they_were(digits):
    model = dlg_lenet(image_size=28, generator=_gen(1))
    model.train()
    model[0].weight.requires_grad_(False)
    before = [p.detach().clone() for p in model.parameters()]
    flags = [p.requires_grad for p in model.parameters()]
    x, y = digits[0][:2].clone(), digits[1][:2].clone()
    x0 = x.clone()
    grads = shared_gradients(model, x, y)
    g0 = [g.clone() for g in grads]
    dlg(model, grads, shape=x.shape, labels=y, iterations=2)
    inverting_gradients(model, grads, shape=x.shape, labels=y, iterations=3)
    defend_gradients(grads, clip_norm=0.1, noise=0.5, topk=0.2, generator=_gen(0))
    assert model.training and all(m.training for m in model.modules())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.equal(x, x0) and y.tolist() == [0, 1]
    assert all(torch.equal(a, b) for a, b in zip(g0, grads, strict=True))


def test_shared_gradients_equal_a_plain_backward(net, digits):
    x, y = digits[0][:4], digits[1][:4]
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad(set_to_none=True)
    for a, b in zip(shared_gradients(net, x, y), expected, strict=True):
        torch.testing.assert_close(a, b)


def test_seeded_runs_repeat_bit_for_bit(net, digits):
    x, y = digits[0][:2], digits[1][:2]
    grads = shared_gradients(net, x, y)
    a = inverting_gradients(net, grads, shape=x.shape, iterations=5, seed=11)
    b = inverting_gradients(net, grads, shape=x.shape, iterations=5, seed=11)
    c = inverting_gradients(net, grads, shape=x.shape, iterations=5, seed=12)
    assert torch.equal(a.images, b.images) and a.history == b.history
    assert not torch.equal(a.images, c.images)
    n1 = defend_gradients(grads, noise=0.1, generator=_gen(3))
    n2 = defend_gradients(grads, noise=0.1, generator=_gen(3))
    assert all(torch.equal(u, v) for u, v in zip(n1, n2, strict=True))


def test_no_defence_is_the_identity_and_returns_copies():
    g = [torch.randn(4, 3, generator=_gen(0)), torch.randn(5, generator=_gen(1))]
    out = defend_gradients(g)
    assert all(torch.equal(a, b) and a is not b for a, b in zip(out, g, strict=True))
    same = defend_gradients(g, noise=0.0, topk=1.0, clip_norm=1e6)
    assert all(torch.equal(a, b) for a, b in zip(same, g, strict=True))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.37, 0.5, 0.99])
def test_topk_keeps_exactly_k_largest_entries_per_tensor(fraction):
    g = [torch.randn(12, 7, generator=_gen(2)), torch.randn(30, generator=_gen(3)), torch.randn(3, 2, 2, 2)]
    for before, after in zip(g, defend_gradients(g, topk=fraction), strict=True):
        k = math.ceil(fraction * before.numel())
        kept = after != 0
        assert int(kept.sum()) == k
        assert torch.equal(after[kept], before[kept])  # kept entries are unchanged
        dropped = before[~kept].abs()
        assert dropped.numel() == 0 or float(dropped.max()) <= float(before[kept].abs().min())


def test_clipping_bounds_the_global_norm_and_scales_uniformly():
    g = [torch.tensor([3.0, 0.0]), torch.tensor([[0.0, 4.0]])]  # global norm 5
    out = defend_gradients(g, clip_norm=1.0)
    torch.testing.assert_close(out[0], torch.tensor([0.6, 0.0]))
    torch.testing.assert_close(out[1], torch.tensor([[0.0, 0.8]]))
    small = defend_gradients(g, clip_norm=10.0)
    assert all(torch.equal(a, b) for a, b in zip(small, g, strict=True))


def test_noise_has_the_dp_scale():
    g = [torch.zeros(200_000)]
    absolute = defend_gradients(g, noise=0.05, generator=_gen(0))[0]
    relative = defend_gradients(g, noise=0.05, clip_norm=4.0, generator=_gen(0))[0]
    assert float(absolute.std()) == pytest.approx(0.05, rel=0.01)
    assert float(relative.std()) == pytest.approx(0.2, rel=0.01)  # sigma * C
    assert abs(float(absolute.mean())) < 1e-3


def test_stronger_noise_lowers_the_reconstruction_psnr(net, digits):
    x, y = digits[0][5:6], digits[1][5:6]
    rows = defence_curve(net, x, y, defence="noise", strengths=[None, 1e-3, 1e-1], iterations=10, seed=0)
    values = [r["psnr"] for r in rows]
    assert values[0] >= 30.0
    assert values[0] > values[1] > values[2]
    assert [r["strength"] for r in rows] == [None, 1e-3, 1e-1]
    assert rows[0]["labels_correct"] == 1.0
    sparse = defence_curve(net, x, y, defence="topk", strengths=[0.01], iterations=5, seed=0)
    assert sparse[0]["psnr"] < values[0]


def test_quality_matches_best_per_image_and_the_metrics(digits):
    x = digits[0][:4]
    perm = torch.tensor([2, 0, 3, 1])
    noisy = (x[perm] + 0.05 * torch.randn(x.shape, generator=_gen(0))).clamp(0, 1)
    q = reconstruction_quality(noisy, x)
    assert q.match.tolist() == perm.tolist()
    expected_psnr = psnr(noisy.double(), x[perm].double(), data_range=1.0).numpy()
    expected_ssim = ssim(noisy.double(), x[perm].double(), data_range=1.0).numpy()
    np.testing.assert_allclose(q.psnr, expected_psnr, rtol=1e-10)
    np.testing.assert_allclose(q.ssim, expected_ssim, rtol=1e-10)
    assert q.as_dict()["match"] == perm.tolist()
    assert reconstruction_quality(x, x).mean_psnr == math.inf


# --------------------------------------------------------------------------- bad input
_small = dlg_lenet(image_size=8, generator=_gen(0))
_grads = shared_gradients(_small, torch.rand(1, 1, 8, 8, generator=_gen(1)), torch.tensor([2]))


@settings(max_examples=25, deadline=None)
@given(shape=st.one_of(st.tuples(st.integers(-2, 0), st.just(1), st.just(8), st.just(8)),
                       st.tuples(st.just(1), st.just(8), st.just(8)),
                       st.tuples(st.just(1), st.just(1), st.integers(40, 60), st.just(8))))
def test_bad_shape_is_a_value_error(shape):
    with pytest.raises(ValueError, match="shape"):
        dlg(_small, _grads, shape=shape, iterations=1)


@settings(max_examples=25, deadline=None)
@given(name=st.sampled_from(["iterations", "restarts", "lr"]),
       value=st.one_of(st.integers(-5, 0), st.just(float("nan")), st.just(float("inf")), st.just(2.5)))
def test_bad_optimiser_options_name_the_argument(name, value):
    if name == "lr" and isinstance(value, float) and math.isfinite(value):
        return  # 2.5 is a valid step size
    with pytest.raises(ValueError, match=name):
        inverting_gradients(_small, _grads, shape=(1, 1, 8, 8), **{name: value})


@settings(max_examples=25, deadline=None)
@given(labels=st.one_of(st.lists(st.integers(10, 100), min_size=1, max_size=1),
                        st.lists(st.integers(-5, -1), min_size=1, max_size=1),
                        st.lists(st.integers(0, 9), min_size=2, max_size=4)))
def test_bad_labels_are_a_value_error(labels):
    with pytest.raises(ValueError, match="labels"):
        dlg(_small, _grads, shape=(1, 1, 8, 8), labels=labels, iterations=1)


def test_bad_gradients_are_a_value_error():
    with pytest.raises(ValueError, match="gradients"):
        dlg(_small, _grads[:-1], shape=(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"gradients\[0\]"):
        dlg(_small, [torch.zeros(3), *_grads[1:]], shape=(1, 1, 8, 8))
    with pytest.raises(ValueError, match="NaN"):
        idlg_label(_small, [*_grads[:-1], torch.full_like(_grads[-1], float("nan"))])
    with pytest.raises(ValueError, match="gradients"):
        idlg_label(_small, torch.zeros(3))
    with pytest.raises(ValueError, match="model"):
        idlg_label(nn.Sequential(nn.Conv2d(1, 2, 3)), [torch.zeros(2, 1, 3, 3), torch.zeros(2)])
    with pytest.raises(ValueError, match="B = 2"):
        idlg(_small, _grads, shape=(2, 1, 8, 8))


@settings(max_examples=40, deadline=None)
@given(option=st.sampled_from(["clip_norm", "noise", "topk"]),
       value=st.one_of(st.floats(-10, -1e-6), st.just(float("nan")), st.just(float("inf")), st.floats(1.01, 10)))
def test_bad_defences_name_the_argument(option, value):
    if option in ("clip_norm", "noise") and math.isfinite(value) and value > 1:
        return  # a large clipping norm or noise is valid
    with pytest.raises(ValueError, match=option):
        defend_gradients(_grads, **{option: value}, generator=_gen(0))


def test_noise_needs_a_generator_and_quality_needs_matching_batches():
    with pytest.raises(ValueError, match="generator"):
        defend_gradients(_grads, noise=0.1)
    with pytest.raises(ValueError, match="reconstructions"):
        reconstruction_quality(torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="originals"):
        reconstruction_quality(torch.zeros(1, 1, 8, 8), torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="defence"):
        defence_curve(_small, torch.rand(1, 1, 8, 8), torch.tensor([1]), defence="blur", strengths=[1.0])
    with pytest.raises(ValueError, match="num_images|shape"):
        recover_labels(_small, _grads, shape=(0, 1, 8, 8))

"""Property tests with hypothesis: bad budgets, ranges, shapes and settings raise ValueError naming them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.robustness import FGSM, PGD, attack, fgsm, pgd

MODEL = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
X = torch.full((2, 1, 2, 2), 0.5)
Y = torch.tensor([0, 2])
FAST = settings(max_examples=30, deadline=None)


@FAST
@given(eps=st.one_of(st.floats(max_value=-1e-9, allow_nan=False), st.just(math.nan), st.just(math.inf)))
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        fgsm(MODEL, X, Y, eps=eps)
    with pytest.raises(ValueError, match="eps"):
        pgd(MODEL, X, Y, eps=eps, alpha=0.01, steps=2)


@FAST
@given(alpha=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.just(math.nan)))
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        pgd(MODEL, X, Y, eps=0.1, alpha=alpha, steps=2)


@FAST
@given(steps=st.one_of(st.integers(max_value=0), st.floats(allow_nan=False), st.just(True)))
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        pgd(MODEL, X, Y, eps=0.1, alpha=0.01, steps=steps)


@FAST
@given(norm=st.text(max_size=5).filter(lambda s: s.lower() not in ("linf", "l2")))
def test_unknown_norm(norm):
    with pytest.raises(ValueError, match="norm"):
        pgd(MODEL, X, Y, eps=0.1, alpha=0.01, steps=2, norm=norm)


@FAST
@given(lo=st.floats(-10, 10), gap=st.floats(0, 10))
def test_range_with_lo_not_below_hi(lo, gap):
    with pytest.raises(ValueError, match="valid_range"):
        fgsm(MODEL, X, Y, eps=0.1, valid_range=(lo + gap, lo))


@FAST
@given(shift=st.floats(0.01, 100))
def test_x_outside_range(shift):
    with pytest.raises(ValueError, match="valid_range"):
        fgsm(MODEL, X + 0.5 + shift, Y, eps=0.1)
    with pytest.raises(ValueError, match="valid_range"):
        pgd(MODEL, X - 0.5 - shift, Y, eps=0.1, steps=1)


@FAST
@given(b=st.integers(0, 5).filter(lambda b: b != 2))
def test_label_batch_mismatch(b):
    with pytest.raises(ValueError, match="y"):
        fgsm(MODEL, X, torch.zeros(b, dtype=torch.long), eps=0.1)


@FAST
@given(n=st.integers(1, 6).filter(lambda n: n != 1))
def test_range_tensor_with_wrong_length(n):
    # x has C = 1 channel: a 1-D range tensor needs length 1
    with pytest.raises(ValueError, match="valid_range"):
        fgsm(MODEL, X, Y, eps=0.1, valid_range=(torch.zeros(n), torch.ones(n)))


@FAST
@given(shape=st.lists(st.integers(2, 3), min_size=2, max_size=3))
def test_range_tensor_that_does_not_broadcast(shape):
    with pytest.raises(ValueError, match="valid_range"):
        fgsm(MODEL, X, Y, eps=0.1, valid_range=(torch.zeros(shape), torch.ones(shape)))


@pytest.mark.parametrize(("call", "match"), [
    (lambda: fgsm(MODEL, X[0, 0, 0], Y, eps=0.1), "x"),                               # 1-D x
    (lambda: fgsm(MODEL, X.long(), Y, eps=0.1), "floating"),
    (lambda: fgsm(MODEL, X.clone().fill_(math.nan), Y, eps=0.1), "NaN"),
    (lambda: fgsm(MODEL, X, [0, 2], eps=0.1), "y"),
    (lambda: fgsm(MODEL, X, torch.tensor([0, 3]), eps=0.1), r"\[0, 3\)"),              # label >= K
    (lambda: fgsm(MODEL, X, torch.zeros(2, 2, dtype=torch.long), eps=0.1), "shape"),   # y of wrong shape
    (lambda: fgsm(MODEL, X, Y, eps=0.1, valid_range=(0.0,)), "valid_range"),
    (lambda: fgsm(MODEL, X, Y, eps=0.1, valid_range=(0.0, math.inf)), "finite"),
    (lambda: fgsm(MODEL, X, Y, eps=0.1, valid_range=None, eps_relative=True), "eps_relative"),
    (lambda: fgsm(MODEL, X, Y, eps=0.1, loss="mse"), "loss"),
    (lambda: fgsm(MODEL, X, Y, eps=True), "eps"),
    (lambda: pgd(MODEL, X, Y, eps=0.1, steps=2, restarts=0), "restarts"),
    (lambda: pgd(MODEL, X, Y, eps=0.1, steps=2, restarts=2, random_start=False), "random_start"),
    (lambda: pgd(MODEL, X, Y, eps=0.1, steps=2, generator=0), "generator"),
    (lambda: attack(MODEL, X, Y, method="deepfool", eps=0.1), "method"),
    (lambda: PGD(eps=-1.0), "eps"),
    (lambda: FGSM(eps=0.1, alpha=0.1), "alpha"),
])
def test_bad_arguments_name_themselves(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_rounding_slack_at_the_range_edge_is_accepted():
    x = torch.full((2, 1, 2, 2), 1.0 + 1e-7)
    out = fgsm(MODEL, x, Y, eps=0.1)
    assert out.max() <= 1.0

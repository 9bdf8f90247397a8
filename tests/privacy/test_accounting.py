"""Privacy accounting: worked examples, invariants, Opacus oracles (RDP, PRV, noise search), bad input, fit."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy import optimize, special
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.privacy import accounting as acc
from mlimaging.privacy.accounting import (
    DEFAULT_ORDERS,
    EpsilonCallback,
    PRVAccountant,
    RDPAccountant,
    epsilon,
    make_accountant,
    noise_multiplier_for,
    rdp_sampled_gaussian,
    rdp_to_epsilon,
)
from mlimaging.training import TrainStep, fit

opacus_rdp = pytest.importorskip("opacus.accountants.analysis.rdp")
opacus_acc = pytest.importorskip("opacus.accountants")
opacus_utils = pytest.importorskip("opacus.accountants.utils")


def _opacus(kind: str, history, delta: float) -> float:
    a = opacus_acc.RDPAccountant() if kind == "rdp" else opacus_acc.PRVAccountant()
    a.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the largest alpha" and log(0) warnings
        return float(a.get_epsilon(delta))


# --------------------------------------------------------------------------- worked examples
def test_abadi_mnist_setting_equals_opacus():
    """q = 600/60000, sigma = 1.1, 100 epochs, delta = 1e-5 (Abadi et al. 2016's MNIST run)."""
    ours = epsilon(noise_multiplier=1.1, sample_rate=0.01, steps=10_000, delta=1e-5)
    assert_allclose(ours, _opacus("rdp", [(1.1, 0.01, 10_000)], 1e-5), rtol=1e-9)
    ours_prv = epsilon(noise_multiplier=1.1, sample_rate=0.01, steps=10_000, delta=1e-5, accountant="prv")
    assert_allclose(ours_prv, _opacus("prv", [(1.1, 0.01, 10_000)], 1e-5), rtol=1e-6)
    assert ours_prv < ours  # PRV is the tighter accountant


def test_conversion_by_hand():
    # order 8, rdp 1: 1 + log(7/8) - (log 1e-5 + log 8) / 7
    by_hand = 1 + math.log(7 / 8) - (math.log(1e-5) + math.log(8)) / 7
    eps, order = rdp_to_epsilon([0.25, 1.0], [2, 8], delta=1e-5)
    assert order == 8.0
    assert_allclose(eps, by_hand, rtol=1e-14)


def test_integer_order_binomial_by_hand():
    # alpha = 2: A = (1-q)^2 + 2q(1-q) + q^2 e^{1/sigma^2} = 1 + q^2 (e^{1/sigma^2} - 1)
    q, sigma = 0.1, 1.5
    r = rdp_sampled_gaussian(noise_multiplier=sigma, sample_rate=q, orders=[2])
    assert_allclose(r, [math.log1p(q**2 * math.expm1(1 / sigma**2))], rtol=1e-13)


def test_fractional_series_by_quadrature():
    """The two-series formula against the defining integral E_{mu0}[(mu1/mu0)^alpha], numerically."""
    q, sigma, alpha = 0.05, 0.9, 3.5

    def integrand(z):
        ratio = 1 - q + q * math.exp((2 * z - 1) / (2 * sigma**2))
        return ratio**alpha * math.exp(-z * z / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))

    from scipy import integrate

    a, _ = integrate.quad(integrand, -40, 40, points=[0, 0.5, 1], limit=400, epsrel=1e-13)
    r = rdp_sampled_gaussian(noise_multiplier=sigma, sample_rate=q, orders=[alpha])
    assert_allclose(r, [math.log(a) / (alpha - 1)], rtol=1e-9)


# --------------------------------------------------------------------------- invariants
def test_full_batch_is_the_gaussian_mechanism():
    orders = np.asarray(DEFAULT_ORDERS)
    assert_allclose(rdp_sampled_gaussian(noise_multiplier=1.3, sample_rate=1.0), orders / (2 * 1.3**2), rtol=0)
    sigma, steps, delta = 2.0, 50, 1e-5
    by_hand = np.min(steps * orders / (2 * sigma**2) + np.log((orders - 1) / orders)
                     - (math.log(delta) + np.log(orders)) / (orders - 1))
    assert_allclose(epsilon(noise_multiplier=sigma, sample_rate=1.0, steps=steps, delta=delta), by_hand, rtol=1e-14)


def test_fractional_formula_agrees_with_binomial_at_integer_orders():
    for q, sigma in [(0.01, 1.1), (0.3, 0.7), (0.001, 4.0)]:
        for alpha in (2.0, 3.0, 7.0, 20.0):
            binomial = acc._log_a_integer(q, sigma, np.array([alpha]))[0]
            # log A is ~1e-8 for large sigma: compare to the float64 rounding of A itself
            assert_allclose(acc._log_a_fractional(q, sigma, alpha), binomial, rtol=1e-10, atol=1e-15)


def test_rdp_continuous_across_integer_orders():
    r = rdp_sampled_gaussian(noise_multiplier=0.9, sample_rate=0.02, orders=[3 - 1e-7, 3.0, 3 + 1e-7])
    assert_allclose(r, r[1], rtol=1e-5)


@pytest.mark.parametrize("kind", ["rdp", "prv"])
def test_epsilon_monotone(kind):
    base = dict(noise_multiplier=1.0, sample_rate=0.01, steps=1000, delta=1e-5)

    def e(**kw):
        return epsilon(**{**base, **kw}, accountant=kind)

    assert e(noise_multiplier=0.8) > e() > e(noise_multiplier=1.5)
    assert e(steps=100) < e() < e(steps=3000)
    assert e(sample_rate=0.005) < e() < e(sample_rate=0.02)
    assert e(delta=1e-6) > e() > e(delta=1e-4)


def test_zero_steps_spend_nothing():
    assert epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5) == 0.0
    assert epsilon(noise_multiplier=1.0, sample_rate=0.1, steps=0, delta=1e-5, accountant="prv") == 0.0
    assert RDPAccountant().get_epsilon(1e-5) == 0.0 and PRVAccountant().get_epsilon(1e-5) == 0.0


def test_prv_gaussian_mechanism_against_analytic_delta():
    """q = 1: T steps are one Gaussian mechanism with mu = sqrt(T)/sigma, whose exact delta(eps) is
    Phi(-eps/mu + mu/2) - e^eps Phi(-eps/mu - mu/2) (Balle and Wang 2018); PRV brackets the exact eps."""
    sigma, steps, delta = 3.0, 40, 1e-5
    mu = math.sqrt(steps) / sigma
    exact = optimize.brentq(lambda e: special.ndtr(-e / mu + mu / 2) - math.exp(e) * special.ndtr(-e / mu - mu / 2)
                            - delta, 0, 50, xtol=1e-14)
    a = PRVAccountant()
    a.step(noise_multiplier=sigma, sample_rate=1.0, num_steps=steps)
    low, est, up = a.get_epsilon_bounds(delta)
    assert low <= exact <= up
    assert abs(est - exact) < 1e-3


def test_accountant_history_and_split_steps():
    a = RDPAccountant()
    for _ in range(3):
        a.step(noise_multiplier=1.0, sample_rate=0.02, num_steps=100)
    a.step(noise_multiplier=2.0, sample_rate=0.02)
    a.step(noise_multiplier=2.0, sample_rate=0.02, num_steps=0)
    assert a.history == [(1.0, 0.02, 300), (2.0, 0.02, 1)] and a.steps == 301 and len(a) == 2
    one = RDPAccountant()
    one.step(noise_multiplier=1.0, sample_rate=0.02, num_steps=300)
    assert one.get_epsilon(1e-5) < a.get_epsilon(1e-5)
    assert_allclose(one.get_epsilon(1e-5), epsilon(noise_multiplier=1.0, sample_rate=0.02, steps=300, delta=1e-5))


@pytest.mark.parametrize("name", ["rdp", "prv"])
def test_state_dict_roundtrip_weights_only(tmp_path, name):
    a = make_accountant(name)
    a.step(noise_multiplier=1.1, sample_rate=0.01, num_steps=50)
    a.step(noise_multiplier=0.9, sample_rate=0.02, num_steps=20)
    torch.save({"accountant": a.state_dict()}, tmp_path / "a.pt")
    b = make_accountant(name)
    b.load_state_dict(torch.load(tmp_path / "a.pt", weights_only=True)["accountant"])
    assert b.history == a.history and b.get_epsilon(1e-5) == a.get_epsilon(1e-5)
    other = make_accountant("prv" if name == "rdp" else "rdp")
    with pytest.raises(ValueError, match="accountant"):
        other.load_state_dict(a.state_dict())


# --------------------------------------------------------------------------- Opacus oracles
RDP_PAIRS = [(q, s) for q in (1e-3, 0.01, 0.1, 0.5, 1.0) for s in (0.3, 0.7, 1.1, 4.0, 50.0)]


@pytest.mark.parametrize("q,sigma", RDP_PAIRS)
def test_rdp_equals_opacus(q, sigma):
    """Opacus's RDPAccountant pipeline (compute_rdp, then get_privacy_spent), its curve computed once."""
    ours = rdp_sampled_gaussian(noise_multiplier=sigma, sample_rate=q)
    orders = list(DEFAULT_ORDERS)
    theirs = opacus_rdp.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=orders)
    # log A_alpha is a sum near 1 in both codes: agreement to its float64 rounding
    assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    for steps in (1, 100, 10_000):
        for delta in (1e-7, 1e-5, 1e-3):
            got = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                want, _ = opacus_rdp.get_privacy_spent(orders=orders, rdp=theirs * steps, delta=delta)
            assert_allclose(got, want, rtol=1e-6)


def test_rdp_heterogeneous_history_equals_opacus():
    history = [(1.0, 0.01, 500), (0.7, 0.02, 100), (3.0, 0.5, 10)]
    a = RDPAccountant()
    for s, q, n in history:
        a.step(noise_multiplier=s, sample_rate=q, num_steps=n)
    assert_allclose(a.get_epsilon(1e-5), _opacus("rdp", history, 1e-5), rtol=1e-9)


PRV_GRID = [  # (q, sigma, steps, delta)
    (0.01, 1.1, 10_000, 1e-5),
    (0.004, 0.8, 2_000, 1e-5),
    (0.1, 2.0, 100, 1e-5),
    (1.0, 1.0, 10, 1e-5),
    (1.0, 5.0, 100, 1e-6),
    (0.001, 0.5, 1_000, 1e-4),
    (0.5, 0.7, 50, 1e-3),
    (0.01, 10.0, 1_000, 1e-5),
]


@pytest.mark.parametrize("q,sigma,steps,delta", PRV_GRID)
def test_prv_equals_opacus(q, sigma, steps, delta):
    got = epsilon(noise_multiplier=sigma, sample_rate=q, steps=steps, delta=delta, accountant="prv")
    assert_allclose(got, _opacus("prv", [(sigma, q, steps)], delta), rtol=1e-3)


def test_prv_heterogeneous_history_equals_opacus():
    history = [(1.0, 0.01, 300), (0.8, 0.02, 100)]
    a = PRVAccountant()
    for s, q, n in history:
        a.step(noise_multiplier=s, sample_rate=q, num_steps=n)
    assert_allclose(a.get_epsilon(1e-5), _opacus("prv", history, 1e-5), rtol=1e-3)


@pytest.mark.parametrize("target,q,steps", [(1.0, 256 / 60_000, 2_343), (3.0, 0.01, 1_000), (2.0, 0.1, 50)])
def test_noise_multiplier_equals_opacus(target, q, steps):
    ours = noise_multiplier_for(target, 1e-5, q, steps)
    theirs = opacus_utils.get_noise_multiplier(target_epsilon=target, target_delta=1e-5, sample_rate=q, steps=steps)
    assert_allclose(ours, theirs, rtol=1e-6)
    eps = epsilon(noise_multiplier=ours, sample_rate=q, steps=steps, delta=1e-5)
    assert target - 0.01 <= eps <= target


def test_noise_multiplier_prv_equals_opacus():
    ours = noise_multiplier_for(2.0, 1e-5, 0.1, 20, accountant="prv", epsilon_tolerance=0.05)
    theirs = opacus_utils.get_noise_multiplier(target_epsilon=2.0, target_delta=1e-5, sample_rate=0.1, steps=20,
                                               accountant="prv", epsilon_tolerance=0.05)
    assert_allclose(ours, theirs, rtol=1e-3)


# --------------------------------------------------------------------------- bad input
GOOD = dict(noise_multiplier=1.0, sample_rate=0.01, steps=10, delta=1e-5)
not_a_number = st.one_of(st.none(), st.text(max_size=3), st.just(float("nan")), st.just(float("inf")), st.booleans())


@settings(max_examples=40, deadline=None)
@given(q=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0, exclude_min=True), not_a_number))
def test_bad_sample_rate(q):
    with pytest.raises(ValueError, match="sample_rate"):
        epsilon(**{**GOOD, "sample_rate": q})
    with pytest.raises(ValueError, match="sample_rate"):
        RDPAccountant().step(noise_multiplier=1.0, sample_rate=q)


@settings(max_examples=40, deadline=None)
@given(sigma=st.one_of(st.floats(max_value=0.0), not_a_number))
def test_bad_noise_multiplier(sigma):
    with pytest.raises(ValueError, match="noise_multiplier"):
        epsilon(**{**GOOD, "noise_multiplier": sigma})
    with pytest.raises(ValueError, match="noise_multiplier"):
        PRVAccountant().step(noise_multiplier=sigma, sample_rate=0.1)


@settings(max_examples=40, deadline=None)
@given(steps=st.one_of(st.integers(max_value=-1), st.floats(allow_nan=False), st.booleans(), st.text(max_size=2)))
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        epsilon(**{**GOOD, "steps": steps})
    with pytest.raises(ValueError, match="num_steps"):
        RDPAccountant().step(noise_multiplier=1.0, sample_rate=0.1, num_steps=steps)


@settings(max_examples=40, deadline=None)
@given(delta=st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0), not_a_number))
def test_bad_delta(delta):
    with pytest.raises(ValueError, match="delta"):
        epsilon(**{**GOOD, "delta": delta})
    with pytest.raises(ValueError, match="delta"):
        RDPAccountant().get_epsilon(delta)
    with pytest.raises(ValueError, match="delta"):
        EpsilonCallback(RDPAccountant(), delta=delta)


@settings(max_examples=20, deadline=None)
@given(name=st.text(max_size=5).filter(lambda s: s not in ("rdp", "prv")))
def test_bad_accountant(name):
    with pytest.raises(ValueError, match="accountant"):
        epsilon(**GOOD, accountant=name)
    with pytest.raises(ValueError, match="accountant"):
        make_accountant(name)
    with pytest.raises(ValueError, match="accountant"):
        noise_multiplier_for(1.0, 1e-5, 0.01, 100, accountant=name)


def test_bad_noise_search_input():
    with pytest.raises(ValueError, match="target_epsilon"):
        noise_multiplier_for(0.0, 1e-5, 0.01, 100)
    with pytest.raises(ValueError, match="target_epsilon"):
        noise_multiplier_for(0.05, 1e-5, 0.01, 100)  # below the RDP floor (~0.1 at delta 1e-5, order 63)
    with pytest.raises(ValueError, match="steps"):
        noise_multiplier_for(1.0, 1e-5, 0.01, 0)
    with pytest.raises(ValueError, match="epsilon_tolerance"):
        noise_multiplier_for(1.0, 1e-5, 0.01, 10, epsilon_tolerance=0)


def test_bad_state_and_callback_input():
    with pytest.raises(ValueError, match="history"):
        RDPAccountant().load_state_dict({"accountant": "rdp", "history": [[1.0, 0.1]]})
    with pytest.raises(ValueError, match="sample_rate"):
        RDPAccountant().load_state_dict({"accountant": "rdp", "history": [[1.0, 2.0, 3]]})
    with pytest.raises(ValueError, match="accountant"):
        EpsilonCallback(object(), delta=1e-5)
    with pytest.raises(ValueError, match="orders"):
        rdp_sampled_gaussian(noise_multiplier=1.0, sample_rate=0.1, orders=[0.5])
    with pytest.raises(ValueError, match="rdp"):
        rdp_to_epsilon([1.0, 2.0], [2.0], 1e-5)


# --------------------------------------------------------------------------- through fit
class _CountingStep(TrainStep):
    """Stands in for the DP-SGD step: an ordinary step that advances an accountant per batch."""

    def __init__(self, accountant, q: float):
        self.accountant, self.q = accountant, q

    def __call__(self, model, batch, *, optimizer, grad_clip=None):
        x, y = batch
        loss = (model(x) - y).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        self.accountant.step(noise_multiplier=1.0, sample_rate=self.q)
        return loss

    def state_dict(self):
        return {"accountant": self.accountant.state_dict()}

    def load_state_dict(self, state):
        self.accountant.load_state_dict(state["accountant"])


def _data():
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(24, 3, generator=g), torch.randn(24, 1, generator=g))


def _fit(step, epochs, **kw):
    torch.manual_seed(0)
    return fit(nn.Linear(3, 1), _data(), step=step, batch_size=8, epochs=epochs, metrics=(),
               optimizer=lambda p: torch.optim.SGD(p, lr=0.05), progress=False, **kw)


def test_epsilon_callback_records_each_epoch_and_survives_resume(tmp_path):
    q = 8 / 24
    step = _CountingStep(RDPAccountant(), q)
    cb = EpsilonCallback(step, delta=1e-5)  # a step holding .accountant works too
    h = _fit(step, 3, callbacks=[cb])
    expected = [epsilon(noise_multiplier=1.0, sample_rate=q, steps=3 * e, delta=1e-5) for e in (1, 2, 3)]
    assert_allclose(h["epsilon"], expected, rtol=1e-12)
    assert cb.epsilons == h["epsilon"] and step.accountant.steps == 9

    # interrupted after 2 epochs, then resumed to 3: the same epsilons, none missing
    part = _CountingStep(RDPAccountant(), q)
    _fit(part, 2, callbacks=[EpsilonCallback(part.accountant, delta=1e-5)], checkpoint_dir=tmp_path)
    again = _CountingStep(RDPAccountant(), q)
    h2 = _fit(again, 3, callbacks=[EpsilonCallback(again.accountant, delta=1e-5)], checkpoint_dir=tmp_path,
              resume=True)
    assert again.accountant.steps == 9
    assert_allclose(h2["epsilon"], expected, rtol=1e-12)

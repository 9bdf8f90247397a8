"""Tests for Shamir sharing and pairwise-mask secure aggregation (Bonawitz et al., 2017)."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from mlimaging.privacy.smpc import (
    DH_GENERATOR,
    PRIME,
    encode,
    pairwise_masked_sum,
    shamir_reconstruct,
    shamir_share,
)


def _lagrange_eval(points, x):
    """Value at x of the polynomial of degree < len(points) through points, mod PRIME."""
    total = 0
    for i, (xi, yi) in enumerate(points):
        num, den = 1, 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                num = num * (x - xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, PRIME - 2, PRIME)) % PRIME
    return total


# ------------------------------------------------------------------------------------- Shamir
def test_shamir_worked_example_line():
    # f(z) = 3 + 5 z: shares (1, 8), (2, 13), (3, 18); any two give 3.
    pts = [(1, 8), (2, 13), (3, 18)]
    for pair in itertools.combinations(pts, 2):
        assert shamir_reconstruct(pair) == 3
    # a negative slope wraps in the field: f(z) = 10 - z
    assert shamir_reconstruct([(1, 9), (4, 6)]) == 10
    assert shamir_reconstruct([(2, (10 - 2) % PRIME), (20, (10 - 20) % PRIME)]) == 10


@pytest.mark.parametrize(("n", "t"), [(1, 1), (3, 1), (5, 3), (6, 6)])
def test_shamir_any_t_points_reconstruct(n, t):
    g = torch.Generator().manual_seed(n * 10 + t)
    secret = 123456789012345 % PRIME
    pts = shamir_share(secret, n, t, generator=g)
    assert [x for x, _ in pts] == list(range(1, n + 1))
    for subset in itertools.combinations(pts, t):
        assert shamir_reconstruct(subset) == secret
    for subset in itertools.combinations(pts, min(n, t + 1)):
        assert shamir_reconstruct(subset) == secret


def test_shamir_t_minus_1_points_are_consistent_with_any_secret():
    g = torch.Generator().manual_seed(0)
    n, t, secret = 5, 3, 42
    pts = shamir_share(secret, n, t, generator=g)
    known = pts[:2]  # t - 1 points
    for other in (0, 7, PRIME - 1):
        # The degree-(t-1) polynomial through (0, other) and the known points exists, and its
        # value at x = 4 completes a valid set of t points opening `other`.
        y4 = _lagrange_eval([(0, other), *known], 4)
        assert shamir_reconstruct([*known, (4, y4)]) == other
    assert shamir_reconstruct([*known, pts[3]]) == secret
    assert shamir_reconstruct(known) != secret  # too few points open a wrong value


def test_shamir_t_minus_1_shares_are_distributed_independently_of_the_secret():
    g = torch.Generator().manual_seed(1)
    draws = 1500
    for secret in (0, PRIME // 3):
        ys = [shamir_share(secret, 4, 3, generator=g)[1][1] for _ in range(draws)]
        counts = torch.bincount(torch.tensor(ys) % 16, minlength=16).numpy()
        assert chisquare(counts).pvalue > 1e-3


def test_dh_generator_is_a_primitive_root():
    order = PRIME - 1
    factors, q, m = set(), 2, order
    while q * q <= m:
        while m % q == 0:
            factors.add(q)
            m //= q
        q += 1
    if m > 1:
        factors.add(m)
    assert factors == {2, 3, 5, 7, 11, 13, 31, 41, 61, 151, 331, 1321}
    assert all(pow(DH_GENERATOR, order // f, PRIME) != 1 for f in factors)
    ska, skb = 123456789, 987654321
    pka, pkb = pow(DH_GENERATOR, ska, PRIME), pow(DH_GENERATOR, skb, PRIME)
    assert pow(pkb, ska, PRIME) == pow(pka, skb, PRIME)  # both ends agree on s_ab


# ----------------------------------------------------------------------------- pairwise masks
def test_pairwise_masks_cancel_without_dropouts():
    g = torch.Generator().manual_seed(2)
    ups = [torch.randn(500, generator=g) for _ in range(5)]
    out, tr = pairwise_masked_sum(ups, generator=g, return_transcript=True)
    plain = torch.stack(ups).sum(0)
    assert (out - plain).abs().max() <= 5 * 2.0**-17 + 1e-5
    assert tr.survivors == (0, 1, 2, 3, 4) and tr.dropped == () and tr.recovered_secret_keys == {}
    # each masked input alone looks uniform and differs from the encoded update
    for i in range(5):
        assert not torch.equal(tr.masked_inputs[i], encode(ups[i]))
        top = torch.bincount((tr.masked_inputs[i] >> 60) & 15, minlength=16).numpy()
        assert chisquare(top).pvalue > 1e-3
    # the masked inputs sum (in the ring) to the encoded total plus the self-masks only
    assert not torch.equal(tr.masked_inputs.sum(0), encode(torch.stack(ups)).sum(0))


@pytest.mark.parametrize(("dropped", "threshold"), [([1], None), ([0], 3), ([5], 2), ([0, 3], 4), ([1, 2, 4], 3)])
def test_dropped_clients_are_recovered(dropped, threshold):
    g = torch.Generator().manual_seed(3)
    ups = [{"w": torch.randn(3, 4, generator=g), "b": torch.randn(4, generator=g)} for _ in range(6)]
    out, tr = pairwise_masked_sum(ups, dropped=dropped, threshold=threshold, generator=g, return_transcript=True)
    alive = [i for i in range(6) if i not in dropped]
    for k in ("w", "b"):
        plain = sum(ups[i][k] for i in alive)
        assert out[k].shape == plain.shape and out[k].dtype == torch.float32
        assert (out[k] - plain).abs().max() <= 6 * 2.0**-17 + 1e-5
    assert tr.survivors == tuple(alive) and set(tr.recovered_secret_keys) == set(dropped)
    assert tr.masked_inputs.shape == (len(alive), 16)
    assert tr.bytes_sent > 8 * 16 * len(alive)


def test_masked_sum_without_recovery_would_be_garbage():
    # The dropped client's masks really are in the survivors' vectors: summing them plainly fails.
    g = torch.Generator().manual_seed(4)
    ups = [torch.ones(50) for _ in range(4)]
    out, tr = pairwise_masked_sum(ups, dropped=[2], generator=g, return_transcript=True)
    assert torch.equal(out, torch.full((50,), 3.0))
    naive = tr.masked_inputs.sum(0)
    assert (naive != encode(torch.full((50,), 3.0))).all()


def test_masked_sum_is_repeatable():
    ups = [torch.arange(4.0) * c for c in range(3)]
    a = pairwise_masked_sum(ups, generator=torch.Generator().manual_seed(5), return_transcript=True)
    b = pairwise_masked_sum(ups, generator=torch.Generator().manual_seed(5), return_transcript=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].masked_inputs, b[1].masked_inputs)
    c = pairwise_masked_sum(ups, generator=torch.Generator().manual_seed(6), return_transcript=True)
    assert not torch.equal(a[1].masked_inputs, c[1].masked_inputs)
    assert torch.equal(a[0], c[0])


# ---------------------------------------------------------------------------- bad input
@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 6), extra=st.integers(1, 10))
def test_threshold_greater_than_n(n, extra):
    with pytest.raises(ValueError, match="t"):
        shamir_share(5, n, n + extra, generator=None)
    if n >= 2:
        with pytest.raises(ValueError, match="threshold"):
            pairwise_masked_sum([torch.ones(2)] * n, threshold=n + extra)


@settings(max_examples=25, deadline=None)
@given(t=st.integers(-5, 0))
def test_threshold_below_one(t):
    with pytest.raises(ValueError, match="t"):
        shamir_share(5, 3, t, generator=None)
    with pytest.raises(ValueError, match="threshold"):
        pairwise_masked_sum([torch.ones(2)] * 3, threshold=t)


@settings(max_examples=25, deadline=None)
@given(secret=st.one_of(st.integers(max_value=-1), st.integers(min_value=PRIME)))
def test_secret_outside_the_field(secret):
    with pytest.raises(ValueError, match="secret"):
        shamir_share(secret, 3, 2, generator=None)


def test_bad_points_and_dropouts():
    with pytest.raises(ValueError, match="points"):
        shamir_reconstruct([])
    with pytest.raises(ValueError, match="distinct"):
        shamir_reconstruct([(1, 2), (1, 3)])
    with pytest.raises(ValueError, match="x"):
        shamir_reconstruct([(0, 2), (1, 3)])
    with pytest.raises(ValueError, match="points"):
        shamir_reconstruct([(1, 2, 3)])
    ups = [torch.ones(2)] * 4
    with pytest.raises(ValueError, match="dropped"):
        pairwise_masked_sum(ups, dropped=[4])
    with pytest.raises(ValueError, match="dropped"):
        pairwise_masked_sum(ups, dropped=[1, 1])
    with pytest.raises(ValueError, match="dropped"):
        pairwise_masked_sum(ups, dropped=[0, 1], threshold=3)  # 2 survivors < threshold 3
    with pytest.raises(ValueError, match="updates"):
        pairwise_masked_sum([torch.ones(2)])
    with pytest.raises(ValueError, match="frac_bits"):
        pairwise_masked_sum(ups, frac_bits=31)


# ------------------------------------------------------------------------ oracles (SymPy)
def test_shamir_reconstruct_matches_sympy_interpolation():
    sympy = pytest.importorskip("sympy")
    g = torch.Generator().manual_seed(7)
    for secret, n, t in [(0, 4, 2), (PRIME - 1, 5, 4), (2**40 + 17, 7, 5)]:
        pts = shamir_share(secret, n, t, generator=g)
        subset = pts[n - t :]
        z = sympy.Symbol("z")
        value = sympy.Rational(sympy.interpolate([(x, y) for x, y in subset], z).subs(z, 0))
        oracle = int(value.p) * sympy.mod_inverse(int(value.q), PRIME) % PRIME
        assert shamir_reconstruct(subset) == oracle == secret


def test_field_constants_match_sympy():
    sympy = pytest.importorskip("sympy")
    assert sympy.isprime(PRIME) and PRIME == 2**61 - 1
    assert sympy.is_primitive_root(DH_GENERATOR, PRIME)
    assert sympy.primitive_root(PRIME) == DH_GENERATOR  # the smallest one

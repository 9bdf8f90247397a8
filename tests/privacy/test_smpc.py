"""Tests for additive secret sharing, secure sum, Beaver multiplication and secure linear layers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from mlimaging.privacy.smpc import (
    beaver_triple,
    decode,
    encode,
    mul,
    reconstruct,
    secure_linear,
    secure_sum,
    share,
    truncate,
    truncation_pair,
)

RING = 2**64


def _signed(v: int) -> int:
    v %= RING
    return v - RING if v >= 2**63 else v


def _top_bits_uniform(values: torch.Tensor, bits: int = 4) -> float:
    """Chi-square p-value that the top `bits` bits of ring elements are uniform."""
    top = ((values >> (64 - bits)) & (2**bits - 1)).reshape(-1)
    counts = torch.bincount(top, minlength=2**bits).numpy()
    return chisquare(counts).pvalue


# ------------------------------------------------------------------------------ worked examples
def test_three_party_scalar_sharing_by_hand():
    g = torch.Generator().manual_seed(0)
    shares = share(torch.tensor(1.5), 3, generator=g)
    assert shares.shape == (3,) and shares.dtype == torch.int64
    # 1.5 at 16 fractional bits is 1.5 * 65536 = 98304; the last share completes the sum mod 2^64.
    s1, s2, s3 = (int(v) for v in shares)
    assert s3 == _signed(98304 - s1 - s2)
    assert (s1 + s2 + s3) % RING == 98304
    assert reconstruct(shares).item() == 1.5
    # The first two shares are the generator's first draws (64-bit, over the whole int64 range).
    draws = torch.empty(2, dtype=torch.int64).random_(-(2**63), None, generator=torch.Generator().manual_seed(0))
    assert [s1, s2] == draws.tolist()


def test_encode_decode_worked_values():
    assert encode(torch.tensor([1.5, -0.25, 0.0]), frac_bits=4).tolist() == [24, -4, 0]
    assert encode(torch.tensor([1.0]), frac_bits=16).item() == 65536
    assert decode(torch.tensor([-65536 * 3]), frac_bits=16).item() == -3.0
    assert encode(torch.tensor(0.3), frac_bits=0).item() == 0  # rounds to nearest


# ------------------------------------------------------------------------------- ring invariants
def test_torch_int64_arithmetic_wraps_modulo_2_64():
    g = torch.Generator().manual_seed(1)
    a = torch.randint(-(2**63), 2**63 - 1, (50,), generator=g)
    b = torch.randint(-(2**63), 2**63 - 1, (50,), generator=g)
    pa, pb = a.tolist(), b.tolist()
    assert (a + b).tolist() == [_signed(x + y) for x, y in zip(pa, pb, strict=True)]
    assert (a - b).tolist() == [_signed(x - y) for x, y in zip(pa, pb, strict=True)]
    assert (a * b).tolist() == [_signed(x * y) for x, y in zip(pa, pb, strict=True)]
    assert a.sum().item() == _signed(sum(pa))
    m = a.reshape(5, 10) @ b.reshape(10, 5)
    expected = [[_signed(sum(pa[10 * i + k] * pb[5 * k + j] for k in range(10))) for j in range(5)] for i in range(5)]
    assert m.tolist() == expected


@pytest.mark.parametrize("n_parties", [2, 3, 7])
@pytest.mark.parametrize("frac_bits", [0, 8, 16, 30])
def test_reconstruct_share_is_the_fixed_point_round_trip(n_parties, frac_bits):
    g = torch.Generator().manual_seed(n_parties + frac_bits)
    x = torch.randn(4, 5, generator=g, dtype=torch.float64) * 100
    shares = share(x, n_parties, generator=g, frac_bits=frac_bits)
    assert shares.shape == (n_parties, 4, 5)
    out = reconstruct(shares, frac_bits=frac_bits)
    assert torch.equal(out, decode(encode(x, frac_bits=frac_bits), frac_bits=frac_bits))
    assert (out - x).abs().max() <= 2.0 ** (-frac_bits - 1)


def test_wrap_around_large_positive_and_negative_values():
    g = torch.Generator().manual_seed(2)
    big = 2.0**46  # 2^46 * 2^16 = 2^62: the encoding bound
    x = torch.tensor([big, -big, big - 0.5, -(big - 0.25), 3.0], dtype=torch.float64)
    assert torch.equal(reconstruct(share(x, 4, generator=g)), x)
    # Shares are spread over the whole ring, so partial sums wrap; the total is still exact.
    total = secure_sum([x, x, -x], generator=g)  # x + x leaves the signed range; -x brings it back
    assert torch.equal(total, x)
    assert (encode(x) + encode(x))[0] < 0  # the wrap the ring absorbs
    assert torch.equal(secure_sum([torch.tensor([big]), torch.tensor([-big])], generator=g), torch.tensor([0.0]))


@pytest.mark.parametrize("n_parties", [2, 3, 4])
def test_any_n_minus_1_shares_are_uniform_on_the_ring(n_parties):
    g = torch.Generator().manual_seed(3)
    draws = 4000
    for secret in (0.0, 12345.678):
        shares = share(torch.full((draws,), secret), n_parties, generator=g)
        for subset in itertools.combinations(range(n_parties), n_parties - 1):
            for j in subset:
                assert _top_bits_uniform(shares[j]) > 1e-3
                low = torch.bincount((shares[j] & 15), minlength=16).numpy()
                assert chisquare(low).pvalue > 1e-3
            if len(subset) >= 2:  # pairs are jointly uniform (independent)
                i, j = subset[:2]
                joint = ((shares[i] >> 62) & 3) * 4 + ((shares[j] >> 62) & 3)
                assert chisquare(torch.bincount(joint, minlength=16).numpy()).pvalue > 1e-3


def test_all_n_shares_do_reveal_the_secret():
    # The test above could pass vacuously if shares were independent of x: all n do open it.
    g = torch.Generator().manual_seed(4)
    shares = share(torch.full((100,), 7.0), 3, generator=g)
    assert torch.equal(reconstruct(shares), torch.full((100,), 7.0, dtype=torch.float64))


# ---------------------------------------------------------------------------------- secure sum
def test_secure_sum_matches_plain_sum_for_model_updates():
    g = torch.Generator().manual_seed(5)
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.BatchNorm1d(4))
    updates = []
    for _ in range(5):
        upd = {k: (torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 3) for k, v in model.state_dict().items()}
        updates.append(upd)
    total = secure_sum(updates, generator=g)
    assert list(total) == list(updates[0])
    for k, v in total.items():
        plain = sum(u[k] for u in updates)
        assert v.dtype == updates[0][k].dtype and v.shape == plain.shape
        if v.is_floating_point():
            assert (v - plain).abs().max() <= len(updates) * 2.0**-17 + 1e-5  # + float32 rounding
        else:
            assert torch.equal(v, plain)


def test_secure_sum_list_structure_float64_and_single_client():
    g = torch.Generator().manual_seed(6)
    ups = [[torch.randn(3, dtype=torch.float64, generator=g), (torch.randn(2, 2, dtype=torch.float64, generator=g),)] for _ in range(3)]
    out = secure_sum(ups, generator=g, frac_bits=20)
    assert isinstance(out, list) and isinstance(out[1], tuple)
    assert out[0].dtype == torch.float64
    torch.testing.assert_close(out[0], sum(u[0] for u in ups), atol=3 * 2.0**-21, rtol=0)
    torch.testing.assert_close(out[1][0], sum(u[1][0] for u in ups), atol=3 * 2.0**-21, rtol=0)
    one = secure_sum([torch.tensor([1.25, -2.0])], generator=g)  # one client: two parties
    assert torch.equal(one, torch.tensor([1.25, -2.0]))


def test_secure_sum_transcript_views_hide_inputs():
    g = torch.Generator().manual_seed(7)
    d, n_clients = 4000, 3
    ups = [torch.full((d,), float(c + 1)) for c in range(n_clients)]
    total, tr = secure_sum(ups, generator=g, return_transcript=True)
    assert torch.equal(total, torch.full((d,), 6.0))
    assert tr.views.shape == (n_clients, n_clients, d)  # (party, client, element)
    assert tr.partial_sums.shape == (n_clients, d)
    assert torch.equal(tr.views.sum(1), tr.partial_sums)
    assert torch.equal(tr.partial_sums.sum(0), encode(torch.full((d,), 6.0)))
    assert tr.bytes_sent == 8 * d * n_clients * (n_clients + 1)
    # Every party's view of every client's (constant) input looks uniform, and so does a partial sum.
    for j in range(n_clients):
        for c in range(n_clients):
            assert _top_bits_uniform(tr.views[j, c]) > 1e-3
            assert not torch.equal(tr.views[j, c], encode(ups[c]))
        assert _top_bits_uniform(tr.partial_sums[j]) > 1e-3


def test_secure_sum_is_repeatable_with_a_seed_and_uses_n_parties():
    ups = [torch.randn(10, generator=torch.Generator().manual_seed(c)) for c in range(4)]
    a, tra = secure_sum(ups, generator=torch.Generator().manual_seed(0), n_parties=2, return_transcript=True)
    b, trb = secure_sum(ups, generator=torch.Generator().manual_seed(0), n_parties=2, return_transcript=True)
    assert torch.equal(a, b) and torch.equal(tra.views, trb.views)
    assert tra.views.shape == (2, 4, 10)


# -------------------------------------------------------------------------- Beaver and linear
def test_beaver_triple_is_a_ring_product():
    t = beaver_triple((20,), 3, generator=torch.Generator().manual_seed(8))
    a, b, c = (v.sum(0).tolist() for v in (t.a, t.b, t.c))
    assert c == [_signed(x * y) for x, y in zip(a, b, strict=True)]
    assert torch.equal(t.trunc.r.sum(0) >> 16, t.trunc.r_trunc.sum(0))


@pytest.mark.parametrize("n_parties", [2, 3, 5])
def test_beaver_mul_matches_plaintext(n_parties):
    g = torch.Generator().manual_seed(9)
    x = torch.randn(200, dtype=torch.float64, generator=g) * 50
    y = torch.randn(200, dtype=torch.float64, generator=g) * 50
    xs, ys = share(x, n_parties, generator=g), share(y, n_parties, generator=g)
    out = reconstruct(mul(xs, ys, beaver_triple((200,), n_parties, generator=g)))
    # truncation (1 ulp) + encoding error of each factor times the other
    bound = 2.0**-16 + 2.0**-17 * (x.abs() + y.abs() + 1)
    assert ((out - x * y).abs() <= bound).all()
    assert (out - x * y).abs().max() > 0  # fixed point, not a plaintext shortcut
    # products of shared values chain: (x * y) * y
    out2 = reconstruct(mul(mul(xs, ys, beaver_triple((200,), n_parties, generator=g)), ys, beaver_triple((200,), n_parties, generator=g)))
    bound2 = bound * y.abs() + 2.0**-16 + 2.0**-17 * ((x * y).abs() + y.abs() + 1)
    assert ((out2 - x * y * y).abs() <= bound2).all()


def test_truncate_is_floor_up_to_one_ulp():
    g = torch.Generator().manual_seed(10)
    z = torch.randint(-(2**40), 2**40, (500,), generator=g)
    zs = torch.cat([torch.zeros(2, 500, dtype=torch.int64), z.unsqueeze(0)])  # a valid 3-sharing of z
    out = truncate(zs, truncation_pair((500,), 3, generator=g)).sum(0)
    diff = out - (z >> 16)
    assert ((diff == 0) | (diff == 1)).all() and (diff == 1).any() and (diff == 0).any()


def test_secure_linear_matches_torch_linear():
    g = torch.Generator().manual_seed(11)
    layer = torch.nn.Linear(16, 5)
    x = torch.randn(8, 16, generator=g)
    xs = share(x, 3, generator=g)
    out = reconstruct(secure_linear(xs, layer.weight.detach(), layer.bias.detach(), generator=g), dtype=torch.float32)
    torch.testing.assert_close(out, layer(x).detach(), atol=16 * 2.0**-15, rtol=1e-5)
    pair = truncation_pair((8, 5), 3, generator=g)
    no_bias = reconstruct(secure_linear(xs, layer.weight.detach(), pair=pair))
    torch.testing.assert_close(no_bias, (x @ layer.weight.T).detach().double(), atol=16 * 2.0**-15, rtol=1e-5)


# --------------------------------------------------------------------------- bad input (hypothesis)
@settings(max_examples=25, deadline=None)
@given(n=st.integers(-5, 1))
def test_share_rejects_fewer_than_two_parties(n):
    with pytest.raises(ValueError, match="n_parties"):
        share(torch.ones(2), n, generator=None)
    with pytest.raises(ValueError, match="n_parties"):
        beaver_triple((2,), n, generator=None)


@settings(max_examples=25, deadline=None)
@given(f=st.one_of(st.integers(-100, -1), st.integers(31, 200)))
def test_frac_bits_out_of_range(f):
    for call in (
        lambda: encode(torch.ones(1), frac_bits=f),
        lambda: share(torch.ones(1), 2, generator=None, frac_bits=f),
        lambda: secure_sum([torch.ones(1)] * 2, frac_bits=f),
        lambda: decode(torch.ones(1, dtype=torch.int64), frac_bits=f),
    ):
        with pytest.raises(ValueError, match="frac_bits"):
            call()


@settings(max_examples=25, deadline=None)
@given(f=st.integers(0, 30), excess=st.floats(1.01, 1e6))
def test_values_too_large_for_fixed_point(f, excess):
    x = torch.tensor([2.0 ** (62 - f) * excess], dtype=torch.float64)
    with pytest.raises(ValueError, match="x is too large"):
        share(x, 2, generator=None, frac_bits=f)
    ok = torch.tensor([2.0 ** (61 - f)], dtype=torch.float64)
    with pytest.raises(ValueError, match="updates"):
        secure_sum([ok, ok, ok], frac_bits=f)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values(bad):
    with pytest.raises(ValueError, match="finite"):
        encode(torch.tensor([1.0, bad]))


def test_bad_shares_and_structures():
    with pytest.raises(ValueError, match="shares"):
        reconstruct(torch.ones(3, 2))  # float, not int64
    with pytest.raises(ValueError, match="shares"):
        reconstruct(torch.ones(1, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"updates\[1\]"):
        secure_sum([torch.ones(2), torch.ones(3)])
    with pytest.raises(ValueError, match=r"updates\[1\]"):
        secure_sum([{"a": torch.ones(2)}, {"b": torch.ones(2)}])
    with pytest.raises(ValueError, match="updates"):
        secure_sum([])
    with pytest.raises(ValueError, match="updates"):
        secure_sum(torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"updates\[0\]"):
        secure_sum([{"a": np.ones(2)}])
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="x_shares"):
        mul(share(torch.ones(3), 2, generator=g), share(torch.ones(3), 2, generator=g), beaver_triple((4,), 2, generator=g))
    with pytest.raises(ValueError, match="triple"):
        mul(share(torch.ones(3), 2, generator=g), share(torch.ones(3), 2, generator=g), None)
    with pytest.raises(ValueError, match="weight"):
        secure_linear(share(torch.ones(1, 3), 2, generator=g), torch.ones(2, 4))
    with pytest.raises(ValueError, match="bias"):
        secure_linear(share(torch.ones(1, 3), 2, generator=g), torch.ones(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match="pair"):
        secure_linear(share(torch.ones(1, 3), 2, generator=g), torch.ones(2, 3), pair=truncation_pair((2, 1, 2), 2, generator=g, frac_bits=8))

"""Contrastive and triplet losses: worked examples, invariants, oracles (lightly, torch), bad input."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.selfsupervised.losses import (
    InfoNCELoss,
    NTXentLoss,
    TripletLoss,
    batch_hard_triplets,
    covariance_loss,
    info_nce,
    nt_xent,
    semi_hard_triplets,
    triplet_loss,
    variance_loss,
)


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _nt_xent_loop(z1, z2, tau):
    """NT-Xent written as the paper's double loop over the 2N views."""
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    n = n2 // 2
    total = 0.0
    for i in range(n2):
        pos = (i + n) % n2
        sims = [F.cosine_similarity(z[i], z[k], dim=0) / tau for k in range(n2)]
        denom = sum(torch.exp(sims[k]) for k in range(n2) if k != i)
        total = total - torch.log(torch.exp(sims[pos]) / denom)
    return total / n2


# ---------------------------------------------------------------- nt_xent


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0, 2.0])
def test_nt_xent_equals_lightly(tau):
    lightly_loss = pytest.importorskip("lightly.loss")
    for seed, (n, d) in enumerate([(2, 3), (8, 16), (33, 128)]):
        z1, z2 = _randn(n, d, seed=seed), _randn(n, d, seed=seed + 100)
        ours = nt_xent(z1, z2, temperature=tau)
        ref = lightly_loss.NTXentLoss(temperature=tau)(z1, z2)
        torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)


def test_nt_xent_equals_lightly_float32():
    lightly_loss = pytest.importorskip("lightly.loss")
    z1, z2 = _randn(64, 32, seed=1, dtype=torch.float32), _randn(64, 32, seed=2, dtype=torch.float32)
    torch.testing.assert_close(nt_xent(z1, z2, temperature=0.2),
                               lightly_loss.NTXentLoss(temperature=0.2)(z1, z2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("tau", [0.1, 0.7])
def test_nt_xent_value_and_gradient_equal_double_loop(tau):
    z1 = _randn(3, 4, seed=3).requires_grad_()
    z2 = _randn(3, 4, seed=4).requires_grad_()
    ours = nt_xent(z1, z2, temperature=tau)
    g1, g2 = torch.autograd.grad(ours, (z1, z2))
    ref = _nt_xent_loop(z1, z2, tau)
    r1, r2 = torch.autograd.grad(ref, (z1, z2))
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g1, r1, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(g2, r2, rtol=1e-10, atol=1e-12)


def test_nt_xent_identical_views_gives_log_2n_minus_1():
    """All views equal: every logit is 1/tau, so each term is log(2N - 1)."""
    for n in (2, 5):
        z = torch.ones(n, 3, dtype=torch.float64)
        assert nt_xent(z, z, temperature=0.3).item() == pytest.approx(math.log(2 * n - 1), rel=1e-12)


def test_nt_xent_invariances():
    z1, z2 = _randn(6, 5, seed=5), _randn(6, 5, seed=6)
    base = nt_xent(z1, z2, temperature=0.5)
    # scale of each row does not matter (cosine similarity)
    scale = torch.rand(6, 1, dtype=torch.float64) + 0.5
    torch.testing.assert_close(nt_xent(z1 * scale, z2 * 3.0, temperature=0.5), base)
    # swapping the views, and permuting the images jointly, leave it unchanged
    torch.testing.assert_close(nt_xent(z2, z1, temperature=0.5), base)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(nt_xent(z1[perm], z2[perm], temperature=0.5), base)
    # a rotation of the embedding space
    q, _ = torch.linalg.qr(_randn(5, 5, seed=7))
    torch.testing.assert_close(nt_xent(z1 @ q, z2 @ q, temperature=0.5), base)


def test_nt_xent_aligned_views_beat_random_ones():
    z = _randn(16, 8, seed=8)
    aligned = nt_xent(z, z + 1e-3 * _randn(16, 8, seed=9), temperature=0.1)
    shuffled = nt_xent(z, z.roll(1, dims=0), temperature=0.1)
    assert aligned < shuffled


def test_nt_xent_module_twin():
    z1, z2 = _randn(4, 3, seed=10), _randn(4, 3, seed=11)
    assert NTXentLoss(temperature=0.3)(z1, z2) == nt_xent(z1, z2, temperature=0.3)
    assert "temperature=0.3" in repr(NTXentLoss(temperature=0.3))


@settings(max_examples=25, deadline=None)
@given(tau=st.one_of(st.floats(max_value=0.0), st.just(float("nan")), st.just(float("inf"))))
def test_nt_xent_rejects_bad_temperature(tau):
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, temperature=tau)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=tau)


@settings(max_examples=25, deadline=None)
@given(n1=st.integers(0, 5), n2=st.integers(0, 5), d1=st.integers(1, 4), d2=st.integers(1, 4))
def test_nt_xent_rejects_bad_shapes(n1, n2, d1, d2):
    z1, z2 = torch.randn(n1, d1), torch.randn(n2, d2)
    if (n1, d1) == (n2, d2) and n1 >= 2:
        assert torch.isfinite(nt_xent(z1, z2))
        return
    with pytest.raises(ValueError, match="z1"):
        nt_xent(z1, z2)


def test_nt_xent_rejects_non_matrices():
    with pytest.raises(ValueError, match="z1"):
        nt_xent(torch.randn(4, 3, 2), torch.randn(4, 3, 2))
    with pytest.raises(ValueError, match="z2"):
        nt_xent(torch.randn(4, 3), torch.zeros(4, 3, dtype=torch.long))


# ---------------------------------------------------------------- info_nce


def _info_nce_loop(q, p, negs, tau):
    total = 0.0
    for b in range(q.shape[0]):
        nb = negs[b] if negs.ndim == 3 else negs
        pos = torch.exp(F.cosine_similarity(q[b], p[b], dim=0) / tau)
        neg = sum(torch.exp(F.cosine_similarity(q[b], nb[k], dim=0) / tau) for k in range(nb.shape[0]))
        total = total - torch.log(pos / (pos + neg))
    return total / q.shape[0]


@pytest.mark.parametrize("shared", [False, True])
def test_info_nce_equals_loop_and_cross_entropy(shared):
    q, p = _randn(4, 6, seed=12).requires_grad_(), _randn(4, 6, seed=13)
    negs = _randn(5, 6, seed=14) if shared else _randn(4, 5, 6, seed=14)
    ours = info_nce(q, p, negs, temperature=0.2)
    ref = _info_nce_loop(q, p, negs, 0.2)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(ours, q)[0], torch.autograd.grad(ref, q)[0])
    # the same as cross entropy with the positive at index 0
    qn, pn = F.normalize(q, dim=1), F.normalize(p, dim=1)
    nn_ = F.normalize(negs, dim=-1)
    neg = qn @ nn_.T if shared else torch.einsum("bd,bkd->bk", qn, nn_)
    logits = torch.cat([(qn * pn).sum(1, keepdim=True), neg], 1) / 0.2
    torch.testing.assert_close(ours, F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)))


def test_info_nce_module_and_nt_xent_relation():
    """NT-Xent for anchor i is InfoNCE with the 2N - 2 other views as negatives."""
    z1, z2 = _randn(5, 4, seed=15), _randn(5, 4, seed=16)
    z = torch.cat([z1, z2])
    terms = []
    for i in range(10):
        pos = (i + 5) % 10
        negs = z[[k for k in range(10) if k not in (i, pos)]]
        terms.append(info_nce(z[i:i + 1], z[pos:pos + 1], negs, temperature=0.5))
    torch.testing.assert_close(torch.stack(terms).mean(), nt_xent(z1, z2, temperature=0.5))
    assert InfoNCELoss(temperature=0.5)(z1, z2, z1.flip(0)) == info_nce(z1, z2, z1.flip(0), temperature=0.5)


def test_info_nce_rejects_bad_input():
    q = torch.randn(3, 4)
    with pytest.raises(ValueError, match="positive"):
        info_nce(q, torch.randn(2, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="negatives"):
        info_nce(q, q, torch.randn(5, 3))
    with pytest.raises(ValueError, match="negatives"):
        info_nce(q, q, torch.randn(2, 5, 4))
    with pytest.raises(ValueError, match="negatives"):
        info_nce(q, q, torch.randn(4))
    with pytest.raises(ValueError, match="negatives"):
        info_nce(q, q, torch.randn(0, 4))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, q, q, temperature=0)
    with pytest.raises(ValueError, match="query"):
        info_nce(torch.randn(3), q, q)


# ---------------------------------------------------------------- triplet loss


def test_triplet_worked_example_course():
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    n = torch.tensor([[0.0, 0.5], [3.0, 0.0]])
    # squared: max(0, 1 - 0.25 + 1) = 1.75 and max(0, 1 - 9 + 1) = 0
    assert triplet_loss(a, p, n, reduction="none").tolist() == [1.75, 0.0]
    assert triplet_loss(a, p, n).item() == 0.875
    assert triplet_loss(a, p, n, reduction="sum").item() == 1.75
    # plain distances (eps=0): max(0, 1 - 0.5 + 1) = 1.5, max(0, 1 - 3 + 1) = 0
    assert triplet_loss(a, p, n, squared=False, eps=0.0, reduction="none").tolist() == [1.5, 0.0]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin", [1e-3, 0.3, 1.0, 2.5])  # torch needs margin > 0
def test_triplet_plain_equals_torch_triplet_margin_loss(reduction, margin):
    a, p, n = (_randn(32, 7, seed=s) for s in (20, 21, 22))
    p = p.clone()
    p[0] = a[0]  # a zero distance: eps matters here
    for t in (a, p, n):
        t.requires_grad_()
    ours = triplet_loss(a, p, n, margin=margin, squared=False, reduction=reduction)
    ref = torch.nn.TripletMarginLoss(margin=margin, p=2, reduction=reduction)(a, p, n)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    go = torch.autograd.grad(ours.sum(), (a, p, n))
    gr = torch.autograd.grad(ref.sum(), (a, p, n))
    for x, y in zip(go, gr, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-12)
    module = TripletLoss(margin=margin, squared=False, reduction=reduction)
    torch.testing.assert_close(module(a, p, n), ref, rtol=1e-12, atol=1e-12)
    f32 = [t.detach().float() for t in (a, p, n)]
    torch.testing.assert_close(triplet_loss(*f32, margin=margin, squared=False, reduction=reduction),
                               torch.nn.TripletMarginLoss(margin=margin, reduction=reduction)(*f32))


def test_triplet_zero_when_margin_satisfied_and_gradient_sign():
    a = torch.zeros(1, 3, requires_grad=True)
    p = torch.tensor([[0.5, 0.0, 0.0]], requires_grad=True)
    n = torch.tensor([[0.0, 0.7, 0.0]], requires_grad=True)
    loss = triplet_loss(a, p, n, margin=1.0)
    loss.backward()
    # descending the gradient pulls the positive in and pushes the negative out
    assert p.grad[0, 0] > 0 and n.grad[0, 1] < 0
    assert triplet_loss(a, p, 5 * n, margin=1.0).item() == 0.0


@settings(max_examples=25, deadline=None)
@given(margin=st.one_of(st.floats(max_value=-1e-9), st.just(float("nan")), st.just(float("inf"))))
def test_triplet_rejects_bad_margin(margin):
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="margin"):
        triplet_loss(x, x, x, margin=margin)
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=margin)
    with pytest.raises(ValueError, match="margin"):
        semi_hard_triplets(x, torch.tensor([0, 1]), margin=margin)


def test_triplet_rejects_bad_shapes_and_reduction():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="anchor, positive and negative"):
        triplet_loss(x, torch.randn(3, 3), x)
    with pytest.raises(ValueError, match="negative"):
        triplet_loss(x, x, torch.randn(2, 3, 1))
    with pytest.raises(ValueError, match="reduction"):
        triplet_loss(x, x, x, reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        TripletLoss(reduction="max")


# ---------------------------------------------------------------- mining


def _brute_batch_hard(e, y):
    d = torch.cdist(e, e)
    out = []
    for a in range(len(y)):
        pos = [p for p in range(len(y)) if y[p] == y[a] and p != a]
        neg = [n for n in range(len(y)) if y[n] != y[a]]
        if pos and neg:
            out.append((a, max(pos, key=lambda p: d[a, p]), min(neg, key=lambda n: d[a, n])))
    return out


def _brute_semi_hard(e, y, margin):
    d = torch.cdist(e, e) ** 2
    out = []
    for a, p in itertools.permutations(range(len(y)), 2):
        neg = [n for n in range(len(y)) if y[n] != y[a]]
        if y[p] != y[a] or not neg:
            continue
        band = [n for n in neg if d[a, p] < d[a, n] < d[a, p] + margin]
        out.append((a, p, min(band or neg, key=lambda n: d[a, n])))
    return out


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 12), classes=st.integers(1, 4), seed=st.integers(0, 10_000),
       margin=st.floats(0.0, 5.0))
def test_mining_equals_brute_force(b, classes, seed, margin):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(b, 3, generator=g, dtype=torch.float64)  # continuous: no ties
    y = torch.randint(classes, (b,), generator=g)
    got = list(zip(*(t.tolist() for t in batch_hard_triplets(e, y)), strict=True))
    assert got == _brute_batch_hard(e, y)
    got = list(zip(*(t.tolist() for t in semi_hard_triplets(e, y, margin=margin)), strict=True))
    assert got == _brute_semi_hard(e, y, margin)
    for a, p, n in got:
        assert y[a] == y[p] and a != p and y[a] != y[n]


def test_mining_skips_anchors_without_positive_and_feeds_the_loss():
    e = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 2])
    a, p, n = batch_hard_triplets(e, y)
    assert a.tolist() == [0, 1] and p.tolist() == [1, 0] and n.tolist() == [2, 2]
    assert a.dtype == torch.int64
    loss = triplet_loss(e[a], e[p], e[n], margin=1.0)
    loss.backward()  # mining is index-only: gradients flow through the gathered rows
    assert e.grad is not None and e.grad[3].abs().sum() == 0
    # one class only: no negatives, no triplets
    a, p, n = batch_hard_triplets(e, torch.zeros(4, dtype=torch.long))
    assert a.numel() == p.numel() == n.numel() == 0
    a, p, n = semi_hard_triplets(e, torch.arange(4), margin=1.0)
    assert a.numel() == 0


def test_semi_hard_plain_distances_band():
    e = torch.tensor([[0.0], [1.0], [1.5], [3.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor 0, positive 1: d_ap = 1; plain band (1, 2) holds 1.5 -> negative 2
    # squared band (1, 2) holds nothing (2.25, 9) -> hardest negative, also 2
    a, p, n = semi_hard_triplets(e, y, margin=1.0, squared=False)
    assert (a[0].item(), p[0].item(), n[0].item()) == (0, 1, 2)
    a, p, n = semi_hard_triplets(e, y, margin=3.0, squared=False)
    assert n[0].item() == 2


def test_mining_rejects_bad_labels():
    e = torch.randn(4, 2)
    with pytest.raises(ValueError, match="labels"):
        batch_hard_triplets(e, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="labels"):
        batch_hard_triplets(e, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="embeddings"):
        semi_hard_triplets(torch.randn(4), torch.tensor([0, 1, 0, 1]), margin=1.0)


# ---------------------------------------------------------------- VICReg variance and covariance


def test_variance_and_covariance_worked_example():
    # three rows, two features: feature 0 = (0, 1, 2) (variance 1), feature 1 = (0, 0, 3) (variance 3)
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 3.0]], dtype=torch.float64)
    # hinges: max(0, 1 - sqrt(1)) = 0 and max(0, 1 - sqrt(3)) = 0; with gamma 2: (1 + 2 - sqrt 3) / 2
    assert variance_loss(z, eps=0.0).item() == 0.0
    assert variance_loss(z, gamma=2.0, eps=0.0).item() == pytest.approx((1 + 2 - math.sqrt(3)) / 2)
    # centred: (-1, -1), (0, -1), (1, 2); cov_01 = (1 + 0 + 2) / 2 = 1.5; c = 2 * 1.5**2 / 2
    assert covariance_loss(z).item() == pytest.approx(2.25)
    # a constant feature is fully penalised (std sqrt(eps))
    flat = torch.ones(4, 3, dtype=torch.float64)
    assert variance_loss(flat, eps=1e-4).item() == pytest.approx(1 - 1e-2)
    assert covariance_loss(flat).item() == 0.0


@pytest.mark.parametrize("shape", [(2, 1), (8, 16), (64, 33)])
def test_variance_and_covariance_equal_lightly(shape):
    pytest.importorskip("lightly.loss")
    from lightly.loss import vicreg_loss

    z = _randn(*shape, seed=shape[0]) * 0.7
    torch.testing.assert_close(variance_loss(z), vicreg_loss.variance_loss(z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(covariance_loss(z), vicreg_loss.covariance_loss(z), rtol=1e-12, atol=1e-12)


def test_variance_and_covariance_invariances():
    z = _randn(16, 6, seed=3)
    shift = _randn(1, 6, seed=4)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    for f in (variance_loss, covariance_loss):
        torch.testing.assert_close(f(z + shift), f(z))  # a shift of every row changes no (co)variance
        torch.testing.assert_close(f(z[perm]), f(z))  # nor the order of the batch
    # scaled by 10 every standard deviation clears the hinge; orthogonal centred columns have no covariance
    assert variance_loss(z).item() > 0 and variance_loss(10 * z).item() == 0.0
    a = _randn(16, 6, seed=5)
    q, _ = torch.linalg.qr(a - a.mean(0))  # columns orthonormal and orthogonal to the ones vector
    assert covariance_loss(z).item() > 1e-3 and covariance_loss(q).item() < 1e-25
    # the covariance term grows as the square of the scale, the variance term is piecewise linear in it
    torch.testing.assert_close(covariance_loss(3 * z), 81 * covariance_loss(z))


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(0, 1), cols=st.integers(1, 4))
def test_variance_and_covariance_need_two_rows(rows, cols):
    for f in (variance_loss, covariance_loss):
        with pytest.raises(ValueError, match="at least 2 rows"):
            f(torch.zeros(rows, cols))


@pytest.mark.parametrize("bad", [torch.zeros(4), torch.zeros(2, 3, 4), torch.zeros(4, 3, dtype=torch.long), [[0.0]]])
def test_variance_and_covariance_refuse_non_matrices(bad):
    for f in (variance_loss, covariance_loss):
        with pytest.raises(ValueError, match="z must"):
            f(bad)


@pytest.mark.parametrize("kw", [{"gamma": -1.0}, {"eps": float("nan")}, {"gamma": True}, {"eps": "0"}])
def test_variance_rejects_bad_options(kw):
    with pytest.raises(ValueError, match="must be a finite number"):
        variance_loss(torch.zeros(3, 2), **kw)

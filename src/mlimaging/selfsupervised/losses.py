r"""Contrastive and metric-learning losses: NT-Xent, InfoNCE, the triplet loss and triplet mining.

Functions (layer 1) and their ``nn.Module`` twins (layer 2):

- :func:`nt_xent` / :class:`NTXentLoss`: SimCLR's normalised temperature-scaled cross entropy
  (Chen et al. 2020);
- :func:`info_nce` / :class:`InfoNCELoss`: InfoNCE with explicit negatives (Oord et al. 2018);
- :func:`triplet_loss` / :class:`TripletLoss`: the hinge on distances of anchor, positive and
  negative, as the course writes it (squared Euclidean distances by default);
- :func:`batch_hard_triplets`, :func:`semi_hard_triplets`: online triplet mining inside a
  labelled batch (Schroff et al. 2015; Hermans et al. 2017);
- :func:`variance_loss`, :func:`covariance_loss`: VICReg's variance hinge and covariance penalty
  against collapse (Bardes et al. 2022), used by I-JEPA's C-JEPA option.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "InfoNCELoss",
    "NTXentLoss",
    "TripletLoss",
    "batch_hard_triplets",
    "covariance_loss",
    "info_nce",
    "nt_xent",
    "semi_hard_triplets",
    "triplet_loss",
    "variance_loss",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return float(temperature)


def _check_matrix(name: str, z: torch.Tensor) -> None:
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {z.dtype}")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, *, temperature: float = 0.5) -> torch.Tensor:
    r"""NT-Xent, the contrastive loss of SimCLR, averaged over all :math:`2N` views.

    The :math:`2N` projections :math:`z_1, \dots, z_{2N}` (first the rows of ``z1``, then
    those of ``z2``; rows ``i`` of both are the two views of image ``i``) are L2-normalised,
    :math:`s_{ij} = z_i^\top z_j / (\lVert z_i\rVert \lVert z_j\rVert)`, and each view
    :math:`i` is classified against its positive :math:`p(i)` among the :math:`2N - 1` others:

    .. math::

        \ell_i = -\log \frac{\exp(s_{i,p(i)}/\tau)}{\sum_{k \ne i} \exp(s_{ik}/\tau)},
        \qquad \mathcal{L} = \frac{1}{2N} \sum_{i=1}^{2N} \ell_i,

    so both orders :math:`(i, j)` and :math:`(j, i)` of each positive pair count, and the
    :math:`2N - 2` other views are the negatives. One :math:`2N \times 2N` matrix product and
    a log-sum-exp with the self-similarities masked out.

    Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive Learning of Visual
    Representations", ICML 2020, arXiv:2002.05709.

    Parameters
    ----------
    z1, z2
        ``(N, D)`` projections of the two views, ``N >= 2``.
    temperature
        :math:`\tau > 0`.

    Returns
    -------
    torch.Tensor
        The scalar loss; its minimum over unit vectors approaches 0 as :math:`\tau \to 0`,
        and it equals :math:`\log(2N - 1)` when all views coincide.

    Examples
    --------
    >>> import math, torch
    >>> z = torch.ones(4, 8)
    >>> round(nt_xent(z, z, temperature=0.5).item(), 5) == round(math.log(7), 5)
    True
    >>> g = torch.Generator().manual_seed(0)
    >>> z1 = torch.randn(16, 32, generator=g)
    >>> bool(nt_xent(z1, z1 + 0.01, temperature=0.1) < nt_xent(z1, torch.randn(16, 32, generator=g), temperature=0.1))
    True
    """
    tau = _check_temperature(temperature)
    _check_matrix("z1", z1)
    _check_matrix("z2", z2)
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape (N, D), got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    n = z1.shape[0]
    if n < 2:
        raise ValueError(f"z1 needs N >= 2 rows (one negative per pair at least), got N={n}")
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = (z @ z.T) / tau
    sim.fill_diagonal_(float("-inf"))
    positives = (z[:n] * z[n:]).sum(dim=1) / tau
    # each positive appears twice (as (i, i+N) and (i+N, i)): mean over 2N anchors
    return torch.logsumexp(sim, dim=1).mean() - positives.mean()


def info_nce(query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor, *,
             temperature: float = 0.1) -> torch.Tensor:
    r"""InfoNCE: classify each query's positive against explicit negatives by cosine similarity.

    With :math:`s(u, v) = u^\top v / (\lVert u\rVert \lVert v\rVert)`, positive
    :math:`k^+_b` and negatives :math:`k^-_{b,1..K}` of query :math:`q_b`:

    .. math::

        \mathcal{L} = -\frac{1}{B} \sum_b \log
        \frac{\exp(s(q_b, k^+_b)/\tau)}{\exp(s(q_b, k^+_b)/\tau) + \sum_{j=1}^K \exp(s(q_b, k^-_{b,j})/\tau)},

    the cross entropy of the logits ``[positive, negatives]`` with the target at index 0.

    Oord, Li and Vinyals, "Representation Learning with Contrastive Predictive Coding", 2018,
    arXiv:1807.03748.

    Parameters
    ----------
    query, positive
        ``(B, D)``.
    negatives
        ``(B, K, D)`` (negatives per query) or ``(K, D)`` (shared by all queries, a memory bank).
    temperature
        :math:`\tau > 0`.

    Examples
    --------
    >>> import math, torch
    >>> q = torch.tensor([[1.0, 0.0]])
    >>> loss = info_nce(q, q, torch.tensor([[0.0, 1.0]]), temperature=1.0)
    >>> round(loss.item(), 6) == round(-math.log(math.e / (math.e + 1)), 6)
    True
    """
    tau = _check_temperature(temperature)
    _check_matrix("query", query)
    _check_matrix("positive", positive)
    if positive.shape != query.shape:
        raise ValueError(f"positive must have the shape of query {tuple(query.shape)}, got "
                         f"{tuple(positive.shape)}")
    if not isinstance(negatives, torch.Tensor) or not negatives.is_floating_point():
        raise ValueError("negatives must be a floating-point torch.Tensor")
    b, d = query.shape
    if b < 1:
        raise ValueError("query must hold at least one row")
    q = F.normalize(query, dim=1)
    pos = (q * F.normalize(positive, dim=1)).sum(dim=1, keepdim=True)
    if negatives.ndim == 2:
        if negatives.shape[1] != d:
            raise ValueError(f"negatives of shape (K, D) need D={d}, got {tuple(negatives.shape)}")
        neg = q @ F.normalize(negatives, dim=1).T
    elif negatives.ndim == 3:
        if negatives.shape[0] != b or negatives.shape[2] != d:
            raise ValueError(f"negatives of shape (B, K, D) need B={b} and D={d}, got "
                             f"{tuple(negatives.shape)}")
        neg = torch.einsum("bd,bkd->bk", q, F.normalize(negatives, dim=2))
    else:
        raise ValueError(f"negatives must have shape (B, K, D) or (K, D), got {tuple(negatives.shape)}")
    if neg.shape[1] < 1:
        raise ValueError("negatives must hold at least one negative (K >= 1)")
    logits = torch.cat([pos, neg], dim=1) / tau
    return torch.logsumexp(logits, dim=1).mean() - logits[:, 0].mean()


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, *,
                 margin: float = 1.0, squared: bool = True, reduction: str = "mean",
                 eps: float = 1e-6) -> torch.Tensor:
    r"""The triplet loss as the course writes it: pull the positive closer than the negative by a margin.

    .. math::

        \ell(a, p, n) = \max\bigl(0,\; d(a, p) - d(a, n) + \alpha\bigr),

    with :math:`d(u, v) = \lVert u - v\rVert_2^2` (``squared=True``, Schroff et al. 2015) or
    :math:`d(u, v) = \lVert u - v + \epsilon\rVert_2` (``squared=False``; the small
    :math:`\epsilon` is the one of :func:`torch.nn.functional.pairwise_distance`, so the result
    equals :class:`torch.nn.TripletMarginLoss` and the gradient is defined at :math:`u = v`).

    Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding for Face Recognition and
    Clustering", CVPR 2015, arXiv:1503.03832.

    Parameters
    ----------
    anchor, positive, negative
        ``(B, D)`` embeddings (rows are triplets).
    margin
        :math:`\alpha \ge 0`.
    squared
        Squared Euclidean distances (the course) or plain ones.
    reduction
        ``"mean"``, ``"sum"`` or ``"none"`` (the ``(B,)`` per-triplet losses).
    eps
        :math:`\epsilon` of the plain distance.

    Examples
    --------
    >>> import torch
    >>> a, p, n = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    >>> triplet_loss(a, p, n, margin=1.0).item()  # max(0, 1 - 0.25 + 1)
    1.75
    >>> triplet_loss(a, p, 4 * n, margin=1.0).item()  # max(0, 1 - 4 + 1)
    0.0
    """
    for name, t in (("anchor", anchor), ("positive", positive), ("negative", negative)):
        _check_matrix(name, t)
    if positive.shape != anchor.shape or negative.shape != anchor.shape:
        raise ValueError(f"anchor, positive and negative must have the same shape (B, D), got "
                         f"{tuple(anchor.shape)}, {tuple(positive.shape)} and {tuple(negative.shape)}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
            or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    if squared:
        d_ap = (anchor - positive).pow(2).sum(dim=1)
        d_an = (anchor - negative).pow(2).sum(dim=1)
    else:
        d_ap = torch.linalg.vector_norm(anchor - positive + eps, dim=1)
        d_an = torch.linalg.vector_norm(anchor - negative + eps, dim=1)
    return _reduce(torch.clamp_min(d_ap - d_an + margin, 0.0), reduction)


def _pairwise(embeddings: torch.Tensor, labels: torch.Tensor, squared: bool):
    _check_matrix("embeddings", embeddings)
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must have shape (B,) with B={embeddings.shape[0]}, got "
                         f"{tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integer class labels, got {labels.dtype}")
    e = embeddings.detach()
    diff2 = (e.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * e @ e.T).clamp_min(0)
    d = diff2 if squared else diff2.sqrt()
    labels = labels.to(e.device)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=e.device)
    return d, same & ~eye, ~same


def batch_hard_triplets(embeddings: torch.Tensor, labels: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Batch-hard mining: for each anchor its farthest positive and its closest negative.

    .. math::

        p(a) = \arg\max_{p:\, y_p = y_a,\, p \ne a} d(a, p), \qquad
        n(a) = \arg\min_{n:\, y_n \ne y_a} d(a, n)

    (Euclidean :math:`d`; Hermans, Beyer and Leibe 2017, arXiv:1703.07737, after the hard
    mining of Schroff et al. 2015, arXiv:1503.03832). Anchors without a positive or without a
    negative in the batch are skipped. Mining uses the embeddings detached (indices only).

    Returns
    -------
    tuple of torch.Tensor
        ``(a_idx, p_idx, n_idx)``, int64 index tensors of equal length (possibly 0).

    Examples
    --------
    >>> import torch
    >>> e = torch.tensor([[0.0], [1.0], [3.0], [1.5], [10.0]])
    >>> a, p, n = batch_hard_triplets(e, torch.tensor([0, 0, 0, 1, 2]))
    >>> a.tolist(), p.tolist(), n.tolist()
    ([0, 1, 2], [2, 2, 0], [3, 3, 3])
    """
    d, pos, neg = _pairwise(embeddings, labels, squared=True)
    valid = pos.any(1) & neg.any(1)
    p_idx = d.masked_fill(~pos, float("-inf")).argmax(1)
    n_idx = d.masked_fill(~neg, float("inf")).argmin(1)
    a_idx = valid.nonzero().flatten()
    return a_idx, p_idx[a_idx], n_idx[a_idx]


def semi_hard_triplets(embeddings: torch.Tensor, labels: torch.Tensor, *, margin: float = 1.0,
                       squared: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Semi-hard mining: every anchor-positive pair with a negative inside the margin band.

    For each pair :math:`(a, p)` with :math:`y_a = y_p`, :math:`a \ne p`, the negative is the
    closest one farther than the positive but within the margin,

    .. math::

        n(a, p) = \arg\min_{n:\, y_n \ne y_a,\; d(a, p) < d(a, n) < d(a, p) + \alpha} d(a, n),

    and, when no negative lies in that band, the hardest negative
    :math:`\arg\min_{n:\, y_n \ne y_a} d(a, n)`. Schroff, Kalenichenko and Philbin 2015
    (FaceNet), arXiv:1503.03832. Anchors without a positive or a negative are skipped.

    Parameters
    ----------
    embeddings, labels
        ``(B, D)`` embeddings and ``(B,)`` integer labels.
    margin
        :math:`\alpha \ge 0`, the margin of the triplet loss these triplets feed.
    squared
        Measure :math:`d` as the squared Euclidean distance (as :func:`triplet_loss` by
        default) or the plain one, so the band matches the loss's margin.

    Returns
    -------
    tuple of torch.Tensor
        ``(a_idx, p_idx, n_idx)``, int64, one row per anchor-positive pair.

    Examples
    --------
    >>> import torch
    >>> e = torch.tensor([[0.0], [1.0], [0.4], [1.2], [5.0]])
    >>> a, p, n = semi_hard_triplets(e, torch.tensor([0, 0, 1, 1, 2]), margin=1.0)
    >>> a.tolist(), p.tolist(), n.tolist()  # (1, 0) and (2, 3) have no semi-hard negative
    ([0, 1, 2, 3], [1, 0, 3, 2], [3, 3, 0, 0])
    """
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
            or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
    d, pos, neg = _pairwise(embeddings, labels, squared=squared)
    valid_anchor = neg.any(1)
    a_idx, p_idx = (pos & valid_anchor[:, None]).nonzero(as_tuple=True)
    d_ap = d[a_idx, p_idx][:, None]  # (P, 1)
    d_an = d[a_idx]  # (P, B)
    is_neg = neg[a_idx]
    band = is_neg & (d_an > d_ap) & (d_an < d_ap + margin)
    semi = d_an.masked_fill(~band, float("inf")).argmin(1)
    hardest = d_an.masked_fill(~is_neg, float("inf")).argmin(1)
    n_idx = torch.where(band.any(1), semi, hardest)
    return a_idx, p_idx, n_idx


def variance_loss(z: torch.Tensor, *, gamma: float = 1.0, eps: float = 1e-4) -> torch.Tensor:
    r"""VICReg's variance term: a hinge on the standard deviation of every feature over the batch.

    .. math::

        v(Z) = \frac{1}{D} \sum_{d=1}^{D} \max\bigl(0,\; \gamma - \sqrt{\operatorname{Var}(z_{\cdot d}) + \epsilon}\bigr),

    with the unbiased variance over the :math:`N` rows of ``z`` ``(N, D)``. It is zero once every
    feature varies over the batch with a standard deviation of at least ``gamma``, and it pushes
    collapsed (constant) features apart (Bardes, Ponce & LeCun 2022, VICReg, ICLR, arXiv:2105.04906).

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # feature 0: variance 2; feature 1: constant
    >>> round(variance_loss(z, eps=0.0).item(), 6)  # (max(0, 1 - sqrt 2) + max(0, 1 - 0)) / 2
    0.5
    """
    _check_matrix("z", z)
    if z.shape[0] < 2:
        raise ValueError(f"z must have at least 2 rows to have a variance, got {tuple(z.shape)}")
    for name, value in (("gamma", gamma), ("eps", eps)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    std = torch.sqrt(z.var(dim=0) + eps)
    return F.relu(gamma - std).mean()


def covariance_loss(z: torch.Tensor) -> torch.Tensor:
    r"""VICReg's covariance term: the squared off-diagonal covariances of the features, over :math:`D`.

    .. math::

        C(Z) = \frac{1}{N - 1} \sum_{i=1}^{N} (z_i - \bar z)(z_i - \bar z)^\top, \qquad
        c(Z) = \frac{1}{D} \sum_{a \neq b} C(Z)_{ab}^2,

    for ``z`` ``(N, D)``. It decorrelates the features, so that they do not all carry the same
    information (Bardes, Ponce & LeCun 2022, VICReg, ICLR, arXiv:2105.04906).

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # C = [[2, 2], [2, 2]]
    >>> covariance_loss(z).item()  # (2**2 + 2**2) / 2
    4.0
    """
    _check_matrix("z", z)
    if z.shape[0] < 2:
        raise ValueError(f"z must have at least 2 rows to have a covariance, got {tuple(z.shape)}")
    centred = z - z.mean(dim=0)
    cov = centred.T @ centred / (z.shape[0] - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / z.shape[1]


class NTXentLoss(nn.Module):
    r"""Module form of :func:`nt_xent`: ``NTXentLoss(temperature=0.5)(z1, z2)``.

    Examples
    --------
    >>> import torch
    >>> z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    >>> bool(NTXentLoss(temperature=0.2)(z, z) == nt_xent(z, z, temperature=0.2))
    True
    """

    def __init__(self, *, temperature: float = 0.5):
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent(z1, z2, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class InfoNCELoss(nn.Module):
    r"""Module form of :func:`info_nce`: ``InfoNCELoss(temperature=0.1)(query, positive, negatives)``.

    Examples
    --------
    >>> import torch
    >>> q = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    >>> bool(InfoNCELoss()(q, q, -q) == info_nce(q, q, -q))
    True
    """

    def __init__(self, *, temperature: float = 0.1):
        super().__init__()
        self.temperature = _check_temperature(temperature)

    def forward(self, query: torch.Tensor, positive: torch.Tensor,
                negatives: torch.Tensor) -> torch.Tensor:
        return info_nce(query, positive, negatives, temperature=self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class TripletLoss(nn.Module):
    r"""Module form of :func:`triplet_loss`: ``TripletLoss(margin=1.0)(anchor, positive, negative)``.

    Examples
    --------
    >>> import torch
    >>> a, p, n = torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.5]])
    >>> TripletLoss(margin=1.0)(a, p, n).item()
    1.75
    """

    def __init__(self, *, margin: float = 1.0, squared: bool = True, reduction: str = "mean",
                 eps: float = 1e-6):
        super().__init__()
        triplet_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1), margin=margin,
                     squared=squared, reduction=reduction, eps=eps)  # validates the options
        self.margin, self.squared, self.reduction, self.eps = float(margin), squared, reduction, eps

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor,
                negative: torch.Tensor) -> torch.Tensor:
        return triplet_loss(anchor, positive, negative, margin=self.margin, squared=self.squared,
                            reduction=self.reduction, eps=self.eps)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, squared={self.squared}, reduction={self.reduction!r}"

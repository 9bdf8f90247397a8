r"""Triplet network: an embedding where an anchor is closer to a positive than to a negative.

A triplet network (Schroff et al. 2015; the course's "triplet loss") embeds images with one
encoder :math:`f` and asks, for triplets (anchor, positive, negative), that the anchor be
closer to the positive than to the negative by a margin :math:`\alpha`:

.. math::

    \ell(a, p, n) = \max\bigl(0,\; d(f(a), f(p)) - d(f(a), f(n)) + \alpha\bigr),
    \qquad d(u, v) = \lVert u - v \rVert_2^2 \text{ (or } \lVert u - v \rVert_2).

:class:`TripletNet` builds the triplets from the batch. With labels (a supervised
triplet network, as in face recognition) positives share the anchor's class and negatives
do not, mined by :func:`~mlimaging.selfsupervised.losses.batch_hard_triplets` (hardest
positive and hardest negative of each anchor, Hermans et al. 2017),
:func:`~mlimaging.selfsupervised.losses.semi_hard_triplets` (FaceNet) or at random. Without
labels the triplets are self-supervised: two augmented views of each image form the
positive pair and views of the other images are the negatives, i.e. the same mining with
each image's index as its label (instance discrimination).

References
----------
Schroff F., Kalenichenko D., Philbin J. (2015). FaceNet: a unified embedding for face
recognition and clustering. CVPR. arXiv:1503.03832.

Hermans A., Beyer L., Leibe B. (2017). In defense of the triplet loss for person
re-identification. arXiv:1703.07737.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.selfsupervised.losses import batch_hard_triplets, semi_hard_triplets, triplet_loss
from mlimaging.selfsupervised.simclr import (
    Augment,
    _check_augment,
    _DefaultAugment,
    check_encoder,
    check_images,
)

__all__ = ["MINING", "TripletNet", "random_triplets"]

MINING = ("batch_hard", "semi_hard", "random")


def random_triplets(labels: torch.Tensor, *, generator: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""One random triplet per anchor: a uniform positive and a uniform negative.

    For each anchor :math:`a` with at least one positive (:math:`y_p = y_a`, :math:`p \ne a`)
    and one negative (:math:`y_n \ne y_a`) in the batch, :math:`p` and :math:`n` are drawn
    uniformly among them from ``generator`` (on the CPU); other anchors are skipped.

    Returns
    -------
    tuple of torch.Tensor
        ``(a_idx, p_idx, n_idx)``, int64 on ``labels``' device.

    Examples
    --------
    >>> import torch
    >>> a, p, n = random_triplets(torch.tensor([0, 0, 1, 2]), generator=torch.Generator().manual_seed(0))
    >>> a.tolist(), p.tolist()  # only the two 0s have a positive
    ([0, 1], [1, 0])
    >>> bool((torch.tensor([0, 0, 1, 2])[n] != 0).all())
    True
    """
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels!r}")
    lab = labels.cpu()
    same = lab[:, None] == lab[None, :]
    pos = same & ~torch.eye(len(lab), dtype=torch.bool)
    neg = ~same
    valid = pos.any(1) & neg.any(1)
    a_idx = valid.nonzero().flatten()
    u = torch.rand(2, len(lab), generator=generator)[:, a_idx]
    # the k-th True entry of each row, k = floor(u * count): uniform among the candidates
    p_idx = _pick(pos[a_idx], u[0])
    n_idx = _pick(neg[a_idx], u[1])
    dev = labels.device
    return a_idx.to(dev), p_idx.to(dev), n_idx.to(dev)


def _pick(mask: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Column of the ``floor(u * count)``-th True entry of each row of ``mask``."""
    count = mask.sum(1)
    k = (u * count).long().clamp(max=count - 1)
    rank = mask.long().cumsum(1) - 1
    return (mask & (rank == k[:, None])).long().argmax(1)


class TripletNet(nn.Module):
    r"""Triplet network (Schroff et al. 2015): an encoder trained by the triplet loss.

    Embeddings :math:`e = f(x)` (optionally L2-normalised, :math:`e / \lVert e \rVert`, as
    FaceNet) and the mean of :math:`\max(0, d(e_a, e_p) - d(e_a, e_n) + \alpha)` over the
    mined triplets (:func:`~mlimaging.selfsupervised.losses.triplet_loss`).

    - With labels ``y`` in the batch: the embeddings of the batch (of one augmented view
      when ``augment`` is given, else of the images as they are) and triplets mined by class.
    - Without labels: two augmented views of each image, :math:`2B` embeddings labelled by
      their image's index, so the positive of a view is the other view of the same image
      and the negatives are the views of the other images; every view is an anchor.

    Parameters
    ----------
    encoder
        The network :math:`f` with attribute ``feature_dim``.
    margin
        :math:`\alpha \ge 0`.
    mining
        ``"batch_hard"`` (each anchor with its farthest positive and closest negative),
        ``"semi_hard"`` (every positive pair with the closest negative beyond the positive
        but inside the margin) or ``"random"`` (one uniform positive and negative per
        anchor, drawn from the step's generator).
    augment
        ``t(x, *, generator) -> Tensor``; ``None``: no augmentation with labels, and
        :func:`~mlimaging.selfsupervised.augment.simclr_augment` for the views without.
    squared
        Squared Euclidean distances (the course's form) or plain ones.
    normalize
        L2-normalise the embeddings before the distances (then :math:`d \le 4` squared).

    Attributes
    ----------
    feature_dim : int
        The encoder's output width.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.selfsupervised.encoders import SmallCNN
    >>> net = TripletNet(SmallCNN(feature_dim=8, width=4), margin=0.5)
    >>> x, y = torch.rand(6, 1, 28, 28), torch.tensor([0, 0, 1, 1, 2, 2])
    >>> loss, extras = net.ssl_loss(x, y, generator=torch.Generator().manual_seed(0))
    >>> loss.ndim, int(extras["triplets"])  # batch-hard: one triplet per anchor
    (0, 6)
    """

    def __init__(self, encoder: nn.Module, *, margin: float = 1.0, mining: str = "batch_hard",
                 augment: Augment | None = None, squared: bool = True, normalize: bool = True) -> None:
        super().__init__()
        self.feature_dim = check_encoder(encoder)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not math.isfinite(margin) \
                or margin < 0:
            raise ValueError(f"margin must be a finite number >= 0, got {margin!r}")
        if mining not in MINING:
            raise ValueError(f"mining must be one of {MINING}, got {mining!r}")
        for name, value in (("squared", squared), ("normalize", normalize)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be a bool, got {value!r}")
        self.encoder = encoder
        self.margin = float(margin)
        self.mining = mining
        self.squared = squared
        self.normalize = normalize
        self.augment = _check_augment(augment)
        self._default_augment = _DefaultAugment()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representation :math:`h = f(x)`, ``(B, feature_dim)`` (not normalised)."""
        return self.encoder(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The embeddings the loss compares: :math:`f(x)`, L2-normalised if ``normalize``."""
        e = self.encoder(x)
        return F.normalize(e, dim=1) if self.normalize else e

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Triplet indices ``(a_idx, p_idx, n_idx)`` of ``embeddings`` by ``mining``."""
        if self.mining == "batch_hard":
            return batch_hard_triplets(embeddings, labels)
        if self.mining == "semi_hard":
            return semi_hard_triplets(embeddings, labels, margin=self.margin, squared=self.squared)
        return random_triplets(labels, generator=generator)

    def ssl_loss(self, x: torch.Tensor, y: Any = None, *,
                 generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r"""Triplet loss of the batch: triplets by class with labels ``y``, by image without.

        Returns
        -------
        loss : torch.Tensor
            Mean triplet loss over the mined triplets (0, still attached to the graph, when
            the batch holds none).
        extras : dict
            ``triplets``: how many were mined; ``active``: the fraction with a positive loss
            (violating the margin); ``distance_gap``: mean :math:`d(a, n) - d(a, p)`.
        """
        x = check_images(x, min_batch=2)
        if y is None:
            augment = self.augment or self._default_augment
            v1, v2 = augment(x, generator=generator), augment(x, generator=generator)
            e = self.embed(torch.cat([v1, v2]))
            ids = torch.arange(x.shape[0], device=x.device)
            labels = torch.cat([ids, ids])
        else:
            labels = torch.as_tensor(y, device=x.device)
            if labels.ndim != 1 or labels.shape[0] != x.shape[0] or labels.is_floating_point():
                raise ValueError(f"y must be integer class labels of shape ({x.shape[0]},), got "
                                 f"{tuple(labels.shape)} {labels.dtype}")
            views = x if self.augment is None else self.augment(x, generator=generator)
            e = self.embed(views)
        a, p, n = self.mine(e, labels, generator=generator)
        if a.numel() == 0:
            zero = e.sum() * 0.0
            return zero, {"triplets": torch.tensor(0.0), "active": torch.tensor(0.0),
                          "distance_gap": torch.tensor(0.0)}
        per = triplet_loss(e[a], e[p], e[n], margin=self.margin, squared=self.squared, reduction="none")
        with torch.no_grad():
            d_ap = (e[a] - e[p]).pow(2).sum(1)
            d_an = (e[a] - e[n]).pow(2).sum(1)
            if not self.squared:
                d_ap, d_an = d_ap.sqrt(), d_an.sqrt()
            gap = (d_an - d_ap).mean()
            extras = {"triplets": torch.tensor(float(a.numel())),
                      "active": (per > 0).float().mean(), "distance_gap": gap}
        return per.mean(), extras

    def extra_repr(self) -> str:
        return (f"margin={self.margin}, mining={self.mining!r}, squared={self.squared}, "
                f"normalize={self.normalize}")

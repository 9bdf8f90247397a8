r"""SimCLR: contrastive learning of visual representations from two augmented views.

Chen et al. (2020) draw two random augmentations :math:`t, t'` of every image :math:`x_i`
of a batch, encode both with the same encoder :math:`f` and map the representations
:math:`h = f(\tilde x)` through a small projection MLP :math:`g` into the space where the
contrastive loss is taken:

.. math::

    \tilde x_i = t(x_i), \quad \tilde x_i' = t'(x_i), \qquad
    z_i = g(f(\tilde x_i)), \quad z_i' = g(f(\tilde x_i')), \qquad
    \mathcal{L} = \operatorname{NT\text{-}Xent}_\tau(z, z'),

where NT-Xent (:func:`~mlimaging.selfsupervised.losses.nt_xent`) classifies each view's
partner among the :math:`2N - 1` other views by cosine similarity over temperature
:math:`\tau`. After pretraining :math:`g` is thrown away and :math:`h = f(x)` is the
representation, judged by a linear probe.

Reference: Chen T., Kornblith S., Norouzi M., Hinton G. (2020). A simple framework for
contrastive learning of visual representations. ICML. arXiv:2002.05709.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.selfsupervised.losses import nt_xent

__all__ = ["SimCLR", "check_encoder", "check_images", "default_augment"]

#: An augmentation: ``t(x, *, generator) -> Tensor`` on a batch ``(B, C, H, W)``.
Augment = Callable[..., torch.Tensor]


def check_encoder(encoder: Any) -> int:
    """The ``feature_dim`` of ``encoder``, checking that it is an ``nn.Module`` that declares one."""
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"encoder must be an nn.Module mapping (B, C, H, W) to (B, D), got "
                         f"{type(encoder).__name__}")
    dim = getattr(encoder, "feature_dim", None)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"encoder must have an int attribute feature_dim >= 1 (the width D of its "
                         f"output (B, D)), got {dim!r} on {type(encoder).__name__}")
    return dim


def check_images(x: Any, *, min_batch: int = 1) -> torch.Tensor:
    """``x`` if it is a floating-point batch ``(B, C, H, W)`` with at least ``min_batch`` images."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of images (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] < min_batch:
        raise ValueError(f"x must hold at least {min_batch} images, got a batch of {x.shape[0]}")
    return x


def default_augment(x: torch.Tensor) -> Augment:
    """SimCLR's augmentation pipeline for images like ``x`` (its size and channels, values in [0, 1])."""
    from mlimaging.selfsupervised.augment import simclr_augment

    h, w = x.shape[-2:]
    size = int(h) if h == w else (int(h), int(w))
    return simclr_augment(size, channels=int(x.shape[1]))


def _check_augment(augment: Any) -> Augment | None:
    if augment is not None and not callable(augment):
        raise ValueError(f"augment must be None or a callable t(x, *, generator), got {type(augment).__name__}")
    return augment


class _DefaultAugment:
    """The default pipeline, built for each image size and channel count it meets."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, ...], Augment] = {}

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        key = tuple(int(s) for s in x.shape[1:])
        if key not in self._cache:
            self._cache[key] = default_augment(x)
        return self._cache[key](x, generator=generator)


class SimCLR(nn.Module):
    r"""SimCLR (Chen et al. 2020): an encoder :math:`f`, a projection head :math:`g`, NT-Xent.

    The projection head is the paper's two-layer MLP with batch norm,
    :math:`g(h) = W_2\, \operatorname{ReLU}(\operatorname{BN}(W_1 h))`
    (``Linear-BN-ReLU-Linear``). One step draws two views of the batch with ``augment``,
    encodes both in one pass (so batch norm sees all :math:`2N` views, the paper's global
    BN), and returns :math:`\operatorname{NT\text{-}Xent}_\tau(g(f(\tilde x)), g(f(\tilde x')))`.

    Recommended recipe for 28 px digits (mnist5k) with a :class:`SmallCNN` (``width=32``,
    ``feature_dim=128``): batch 256, :math:`\tau = 0.5`, Adam at lr :math:`10^{-3}` with
    weight decay :math:`10^{-6}` (LARS only pays off at batches in the thousands), and an
    augmentation without flips (digits are not natural images: a mirrored 2 is no 2) and with
    milder crops than the natural-image default:
    ``Compose([RandomResizedCrop(28, scale=(0.5, 1.0)), RandomApply(IntensityJitter(0.4, 0.4),
    p=0.8), GaussianBlur(3, sigma=(0.1, 2.0), p=0.5)])`` (from
    :mod:`mlimaging.selfsupervised.augment`). Measured on CPU (seed 0) through
    :func:`~mlimaging.training.fit` and
    :func:`~mlimaging.selfsupervised.evaluation.linear_probe` (100 epochs) on the mnist5k
    test split: 91.1% for the random encoder, then 96.7%, 97.3% and 97.6% after 3, 6 and 10
    epochs; the default :func:`~mlimaging.selfsupervised.augment.simclr_augment` (flips,
    crops down to 20% of the area) gives 95.4% after 3 epochs. An epoch of the 3,500
    training images costs about 30 s of one CPU core.

    Parameters
    ----------
    encoder
        The network :math:`f`, ``(B, C, H, W) -> (B, D)``, with attribute ``feature_dim = D``
        (:class:`~mlimaging.selfsupervised.encoders.SmallCNN`, ``ViTEncoder``, ...).
    projection_dim
        Output width of :math:`g` (where the loss is taken).
    hidden_dim
        Hidden width of :math:`g`.
    temperature
        :math:`\tau > 0` of NT-Xent.
    augment
        A callable ``t(x, *, generator) -> Tensor`` drawing one view of a batch; ``None``
        builds :func:`~mlimaging.selfsupervised.augment.simclr_augment` for the batch's image
        size and channels on first use.

    Attributes
    ----------
    feature_dim : int
        :math:`D`, the width of the representation ``forward`` returns.

    Raises
    ------
    ValueError
        An encoder without ``feature_dim``, a non-positive width or temperature, or an
        ``augment`` that is not callable.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.selfsupervised.encoders import SmallCNN
    >>> model = SimCLR(SmallCNN(feature_dim=16, width=4), projection_dim=8, hidden_dim=16,
    ...                augment=lambda x, *, generator: x + 0.1 * torch.randn(x.shape, generator=generator))
    >>> x = torch.rand(4, 1, 28, 28)
    >>> loss, extras = model.ssl_loss(x, generator=torch.Generator().manual_seed(0))
    >>> loss.ndim, sorted(extras), model(x).shape
    (0, ['alignment', 'negative_cosine', 'positive_cosine'], torch.Size([4, 16]))
    """

    def __init__(self, encoder: nn.Module, *, projection_dim: int = 128, hidden_dim: int = 512,
                 temperature: float = 0.5, augment: Augment | None = None) -> None:
        super().__init__()
        self.feature_dim = check_encoder(encoder)
        for name, value in (("projection_dim", projection_dim), ("hidden_dim", hidden_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
                or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.encoder = encoder
        self.projection_dim = projection_dim
        self.hidden_dim = hidden_dim
        self.temperature = float(temperature)
        self.augment = _check_augment(augment) or _DefaultAugment()
        self.projector = nn.Sequential(
            nn.Linear(self.feature_dim, hidden_dim, bias=False),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, projection_dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representation :math:`h = f(x)`, ``(B, feature_dim)``."""
        return self.encoder(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The projections :math:`z = g(f(x))`, ``(B, projection_dim)``."""
        return self.projector(self.encoder(x))

    def views(self, x: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented views of the batch, drawn in order from ``generator``."""
        return self.augment(x, generator=generator), self.augment(x, generator=generator)

    def ssl_loss(self, x: torch.Tensor, y: torch.Tensor | None = None, *,
                 generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        r"""NT-Xent of the projections of two views of ``x``; labels ``y`` are ignored.

        Returns
        -------
        loss : torch.Tensor
            The scalar loss.
        extras : dict
            ``positive_cosine``: mean cosine similarity of the two views' projections;
            ``negative_cosine``: mean cosine similarity between views of different images;
            ``alignment``: mean :math:`\lVert \hat z_i - \hat z_i' \rVert^2` of the normalised
            projections (Wang & Isola 2020, arXiv:2005.10242), all detached.
        """
        x = check_images(x, min_batch=2)
        v1, v2 = self.views(x, generator=generator)
        z = self.projector(self.encoder(torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        loss = nt_xent(z1, z2, temperature=self.temperature)
        with torch.no_grad():
            u1, u2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
            positive = (u1 * u2).sum(1).mean()
            n = u1.shape[0]
            sim = u1 @ u2.T
            negative = (sim.sum() - sim.diagonal().sum()) / (n * (n - 1))
            alignment = (u1 - u2).pow(2).sum(1).mean()
        return loss, {"positive_cosine": positive, "negative_cosine": negative, "alignment": alignment}

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, projection_dim={self.projection_dim}"

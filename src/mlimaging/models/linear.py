r"""Linear classifiers: logistic regression on raw pixels or on hand-crafted features.

The course's first models. Multinomial logistic regression on the flattened image
:math:`x \in \mathbb{R}^{CHW}` gives class probabilities

.. math::

    p(y = k \mid x) = \operatorname{softmax}(W x + b)_k, \qquad
    W \in \mathbb{R}^{K \times CHW}, \; b \in \mathbb{R}^K,

and, for two classes written with one logit, :math:`p(y = 1 \mid x) = \sigma(w^\top x + b)`
with :math:`\sigma(t) = 1 / (1 + e^{-t})`. The models return the logits :math:`Wx + b`;
the softmax (or sigmoid) lives in the loss (``nn.CrossEntropyLoss`` or
``nn.BCEWithLogitsLoss``). On 28 x 28 MNIST digits one logit costs
:math:`28^2 + 1 = 785` parameters, and each row of :math:`W` reshaped to the image shows
what the model "thinks" a class looks like (:meth:`LogisticRegression.weights_image`).

:class:`FeatureLinear` is the same linear model on six morphometric features
(:func:`mlimaging.data.morphometry.digit_features`) instead of the pixels.

References
----------
Cox D. R. (1958). The regression analysis of binary sequences. Journal of the Royal
Statistical Society B 20(2):215-242. DOI 10.1111/j.2517-6161.1958.tb00292.x.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mlimaging.data.morphometry import FEATURE_NAMES, digit_features
from mlimaging.models._validation import check_input, check_int
from mlimaging.models.registry import register_model

__all__ = ["FeatureLinear", "LogisticRegression"]


class LogisticRegression(nn.Module):
    r"""Logistic regression on raw pixels: flatten, then one linear layer.

    Parameters
    ----------
    input_shape : (C, H, W)
        Shape of one input image (default one 28 x 28 channel, MNIST).
    num_classes : int
        Number of classes :math:`K`; the output is ``(B, K)`` logits for a softmax /
        cross-entropy loss.
    binary : bool
        Only with ``num_classes=2``: output one logit ``(B, 1)``, the log-odds of class 1,
        for a sigmoid / ``nn.BCEWithLogitsLoss`` loss (call it as
        ``loss(logits.squeeze(1), y.float())``; predict class 1 where the logit is > 0).
        This is the classical binary logistic regression with :math:`CHW + 1` parameters.

    Examples
    --------
    >>> import torch
    >>> model = LogisticRegression(input_shape=(1, 28, 28), num_classes=2, binary=True)
    >>> sum(p.numel() for p in model.parameters())
    785
    >>> model(torch.zeros(4, 1, 28, 28)).shape
    torch.Size([4, 1])
    >>> LogisticRegression(num_classes=10).weights_image().shape
    torch.Size([10, 1, 28, 28])
    """

    def __init__(
        self,
        *,
        input_shape: Sequence[int] = (1, 28, 28),
        num_classes: int = 10,
        binary: bool = False,
    ) -> None:
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
        for n, s in zip(("C", "H", "W"), shape, strict=True):
            check_int(s, f"input_shape {n}")
        check_int(num_classes, "num_classes")
        if binary and num_classes != 2:
            raise ValueError(f"binary=True needs num_classes=2, got num_classes={num_classes}")
        self.input_shape: tuple[int, int, int] = shape  # type: ignore[assignment]
        self.num_classes = num_classes
        self.binary = bool(binary)
        self.linear = nn.Linear(math.prod(shape), 1 if binary else num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` (``(B, 1)`` when ``binary``) of images ``x`` ``(B, C, H, W)``."""
        check_input(x, self.input_shape[0])
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"x must have shape (B, {', '.join(map(str, self.input_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return self.linear(x.flatten(1))

    def weights_image(self) -> torch.Tensor:
        """The weights of each output reshaped to the image: a detached ``(K, C, H, W)`` copy.

        ``K`` is ``num_classes`` (1 when ``binary``). Row :math:`k` is the template whose
        dot product with the image gives the logit of class :math:`k`.
        """
        return self.linear.weight.detach().clone().reshape(-1, *self.input_shape)


class FeatureLinear(nn.Module):
    r"""A linear classifier on the six morphometric features of each image.

    .. math::

        \text{logits} = W \, \frac{f(x) - \mu}{\sigma} + b, \qquad W \in \mathbb{R}^{K \times 6},

    with :math:`f` = :func:`~mlimaging.data.morphometry.digit_features` (area, width, height,
    slant, thickness, length of the binarised digit) and :math:`\mu, \sigma` the per-feature
    mean and standard deviation of a training set.

    Design: the features are computed in NumPy (thresholding and skeletonisation are not
    differentiable), so gradients reach :math:`W, b` but not the input image. The
    standardisation :math:`\mu, \sigma` is stored in the buffers ``feature_mean`` and
    ``feature_std`` (saved in the ``state_dict``, not trained); they start as 0 and 1 (no
    standardisation) and are set from data by :meth:`fit_standardizer`, which should be called
    on the training images before training: raw features range from radians to hundreds of
    pixels, a badly conditioned problem for gradient descent.

    Parameters
    ----------
    num_classes : int
        Number of classes :math:`K` (output ``(B, K)`` logits).
    threshold : float
        Binarisation threshold for the features (images in [0, 1]).

    Examples
    --------
    >>> import torch
    >>> images = torch.zeros(8, 1, 28, 28)
    >>> for i in range(8):
    ...     images[i, 0, 4:24, 10:12 + i] = 1.0  # vertical bars, wider and wider
    >>> model = FeatureLinear(num_classes=3).fit_standardizer(images)
    >>> model.feature_mean[:2].tolist()  # area and width
    [110.0, 5.5]
    >>> model(images).shape
    torch.Size([8, 3])
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(self, *, num_classes: int = 10, threshold: float = 0.5) -> None:
        super().__init__()
        check_int(num_classes, "num_classes")
        threshold = float(threshold)
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}")
        self.num_classes = num_classes
        self.threshold = threshold
        self.feature_names = FEATURE_NAMES
        n = len(FEATURE_NAMES)
        self.register_buffer("feature_mean", torch.zeros(n))
        self.register_buffer("feature_std", torch.ones(n))
        self.linear = nn.Linear(n, num_classes)

    def raw_features(self, images: Any) -> torch.Tensor:
        """Unstandardised features ``(B, 6)`` of ``images`` ``(B, 1, H, W)`` (no gradient).

        Returned on the device and with the dtype of the linear layer.
        """
        if isinstance(images, torch.Tensor):
            check_input(images, 1, name="images")
        feats = digit_features(images, threshold=self.threshold)
        w = self.linear.weight
        return torch.as_tensor(feats, dtype=w.dtype, device=w.device)

    def fit_standardizer(self, images: Any) -> FeatureLinear:
        """Set ``feature_mean`` / ``feature_std`` to the statistics of ``images``; return self.

        ``images``: array or tensor ``(N, 1, H, W)`` or ``(N, H, W)`` with ``N >= 1``.
        The standard deviation is the population one; a constant feature gets ``std = 1``.
        """
        feats = digit_features(images, threshold=self.threshold)
        if len(feats) == 0:
            raise ValueError("images must hold at least one image to fit the standardizer")
        mean = feats.mean(axis=0)
        std = feats.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=self.feature_mean.dtype))
        self.feature_std.copy_(torch.as_tensor(std, dtype=self.feature_std.dtype))
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of images ``(B, 1, H, W)``."""
        check_input(images, 1, name="images")
        feats = (self.raw_features(images) - self.feature_mean) / self.feature_std
        return self.linear(feats)


@register_model("logistic_regression", input_shape=(1, 28, 28))
def logistic_regression(
    *, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, binary: bool = False
) -> LogisticRegression:
    """Logistic regression on raw pixels (one linear layer; 785 parameters per logit on MNIST)."""
    return LogisticRegression(input_shape=input_shape, num_classes=num_classes, binary=binary)


@register_model("feature_linear", input_shape=(1, 28, 28))
def feature_linear(*, num_classes: int = 10, threshold: float = 0.5) -> FeatureLinear:
    """Linear model on 6 morphometric digit features (area, width, height, slant, ...)."""
    return FeatureLinear(num_classes=num_classes, threshold=threshold)

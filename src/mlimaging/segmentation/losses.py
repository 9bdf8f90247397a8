r"""Segmentation losses: soft Dice, cross-entropy, and their weighted sum (2D or 3D).

Soft Dice (Milletari et al. 2016) compares the predicted class probabilities :math:`p`
(soft-max of the logits) with the one-hot target :math:`g`, per image :math:`b` and class
:math:`k`, summing over the pixels :math:`i`:

.. math::

    D_{bk} = \frac{2 \sum_i p_{bki}\, g_{bki} + s}{\sum_i p_{bki} + \sum_i g_{bki} + s},
    \qquad
    \mathcal{L}_{\text{Dice}}
    = 1 - \frac{1}{B\,|\mathcal{K}|} \sum_b \sum_{k \in \mathcal{K}} D_{bk},

where :math:`\mathcal{K}` is every class, or every class but the background (label 0) when
``include_background=False``, and :math:`s` (``smooth``) keeps the ratio defined when a
class is absent from both the prediction and the target (then :math:`D_{bk} = 1`). This is
the convention of MONAI's ``DiceLoss(to_onehot_y=True, softmax=True, batch=False)`` with
``smooth_nr = smooth_dr = smooth``. Unlike cross-entropy, the Dice loss is insensitive to
the number of background pixels, which helps with small structures.

``dice_ce_loss`` adds the pixel-wise cross-entropy (mean over pixels, all classes):

.. math::

    \lambda_{\text{Dice}} \mathcal{L}_{\text{Dice}} + \lambda_{\text{CE}} \mathcal{L}_{\text{CE}}.

Inputs: ``logits`` ``(B, K, *spatial)`` floating point; ``target`` an integer label map
``(B, *spatial)`` or ``(B, 1, *spatial)`` with labels in :math:`[0, K)` (a float tensor
holding whole numbers is accepted too). All functions return a scalar tensor and are
differentiable with respect to ``logits``.

References
----------
Milletari F., Navab N., Ahmadi S.-A. (2016). V-Net: fully convolutional neural networks for
volumetric medical image segmentation. 3DV. arXiv:1606.04797.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DiceCELoss", "DiceLoss", "cross_entropy", "dice_ce_loss", "dice_loss"]


def _check_logits(logits: Any) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.ndim < 3 or not logits.is_floating_point():
        raise ValueError(
            "logits must be a floating-point tensor (B, K, *spatial) with at least one spatial "
            f"axis, got {logits.dtype} of shape {tuple(logits.shape)}"
        )
    return logits


def _labels(target: Any, logits: torch.Tensor) -> torch.Tensor:
    """``target`` as a long label map ``(B, *spatial)``, checked against ``logits``."""
    if not isinstance(target, torch.Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}")
    spatial = tuple(logits.shape[2:])
    b = logits.shape[0]
    if target.ndim == logits.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if tuple(target.shape) != (b, *spatial):
        raise ValueError(
            f"target must have shape (B, *spatial) = {(b, *spatial)} or (B, 1, *spatial) "
            f"to match logits {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    if target.is_floating_point():
        if not torch.equal(target, target.round()):
            raise ValueError("target must hold integer labels, got non-integer values")
    elif target.dtype == torch.bool or target.is_complex():
        raise ValueError(f"target must be an integer label map, got dtype {target.dtype}")
    target = target.long()
    k = logits.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= k):
        raise ValueError(
            f"target labels must be in [0, {k}) for logits with {k} classes, got values in "
            f"[{int(target.min())}, {int(target.max())}]"
        )
    return target


def _check_smooth(smooth: float) -> float:
    smooth = float(smooth)
    if not (math.isfinite(smooth) and smooth >= 0):
        raise ValueError(f"smooth must be a finite number >= 0, got {smooth!r}")
    return smooth


def _check_lambda(value: float, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return value


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, include_background: bool = False,
              smooth: float = 1e-5, softmax: bool = True) -> torch.Tensor:
    r"""Soft Dice loss :math:`1 - \operatorname{mean}_{b,k} D_{bk}` (see the module doc).

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, K, *spatial)`` scores; with ``softmax=False``, already probabilities.
    target : torch.Tensor
        Label map ``(B, *spatial)`` or ``(B, 1, *spatial)``, values in ``[0, K)``.
    include_background : bool
        Average over all classes (True) or over classes 1..K-1 (False, needs K >= 2).
    smooth : float
        :math:`s`, added to numerator and denominator.
    softmax : bool
        Apply a soft-max over the class axis first.

    Returns
    -------
    torch.Tensor
        A scalar; 0 for a perfect (one-hot) prediction, at most 1.

    Examples
    --------
    >>> import torch
    >>> target = torch.tensor([[[0, 1], [1, 1]]])          # (1, 2, 2), classes 0 and 1
    >>> probs = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]],   # class 0
    ...                        [[0.0, 1.0], [0.0, 1.0]]]])  # class 1: 2 of the 3 pixels
    >>> round(float(dice_loss(probs, target, softmax=False, smooth=0.0)), 4)  # 1 - 4/5
    0.2
    """
    _check_logits(logits)
    labels = _labels(target, logits)
    smooth = _check_smooth(smooth)
    k = logits.shape[1]
    if not include_background and k < 2:
        raise ValueError("include_background=False needs logits with at least 2 classes, got 1")
    if softmax and k < 2:
        raise ValueError("softmax=True needs logits with at least 2 classes, got 1")
    probs = torch.softmax(logits, dim=1) if softmax else logits
    onehot = F.one_hot(labels, k).movedim(-1, 1).to(probs.dtype)
    if not include_background:
        probs, onehot = probs[:, 1:], onehot[:, 1:]
    axes = tuple(range(2, probs.ndim))
    intersection = (probs * onehot).sum(dim=axes)
    denominator = probs.sum(dim=axes) + onehot.sum(dim=axes)
    dice = (2.0 * intersection + smooth) / (denominator + smooth)
    return 1.0 - dice.mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, *,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Pixel-wise cross-entropy (mean over pixels), :func:`torch.nn.functional.cross_entropy`
    on a checked label map that may carry a channel axis.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, K, *spatial)`` scores.
    target : torch.Tensor
        Label map ``(B, *spatial)`` or ``(B, 1, *spatial)``.
    weight : torch.Tensor, optional
        ``(K,)`` class weights (then the mean is weighted, as in PyTorch).

    Examples
    --------
    >>> import math, torch
    >>> logits = torch.zeros(1, 4, 2, 2)  # uniform over 4 classes
    >>> math.isclose(float(cross_entropy(logits, torch.zeros(1, 2, 2, dtype=torch.long))),
    ...              math.log(4), rel_tol=1e-6)
    True
    """
    _check_logits(logits)
    labels = _labels(target, logits)
    if weight is not None:
        if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (logits.shape[1],):
            raise ValueError(
                f"weight must be a tensor of shape ({logits.shape[1]},), got "
                f"{tuple(weight.shape) if isinstance(weight, torch.Tensor) else weight!r}"
            )
        weight = weight.to(device=logits.device, dtype=logits.dtype)
    return F.cross_entropy(logits, labels, weight=weight)


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, *, include_background: bool = False,
                 smooth: float = 1e-5, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 weight: torch.Tensor | None = None) -> torch.Tensor:
    r""":math:`\lambda_{\text{Dice}}` :func:`dice_loss` (soft-max) + :math:`\lambda_{\text{CE}}`
    :func:`cross_entropy`.

    ``include_background`` and ``smooth`` apply to the Dice term, ``weight`` (class
    weights) to the cross-entropy term only.

    Examples
    --------
    >>> import torch
    >>> logits = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> target = torch.randint(0, 3, (2, 8, 8), generator=torch.Generator().manual_seed(1))
    >>> total = dice_ce_loss(logits, target, lambda_dice=0.5)
    >>> torch.allclose(total, 0.5 * dice_loss(logits, target) + cross_entropy(logits, target))
    True
    """
    lambda_dice = _check_lambda(lambda_dice, "lambda_dice")
    lambda_ce = _check_lambda(lambda_ce, "lambda_ce")
    dice = dice_loss(logits, target, include_background=include_background, smooth=smooth)
    ce = cross_entropy(logits, target, weight=weight)
    return lambda_dice * dice + lambda_ce * ce


class DiceLoss(nn.Module):
    """Module form of :func:`dice_loss`: ``DiceLoss(**options)(logits, target)``.

    Examples
    --------
    >>> import torch
    >>> target = torch.randint(0, 3, (2, 6, 6), generator=torch.Generator().manual_seed(0))
    >>> perfect = 50.0 * torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float()
    >>> float(DiceLoss()(perfect, target)) < 1e-6
    True
    """

    def __init__(self, *, include_background: bool = False, smooth: float = 1e-5,
                 softmax: bool = True) -> None:
        super().__init__()
        self.include_background = bool(include_background)
        self.smooth = _check_smooth(smooth)
        self.softmax = bool(softmax)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The scalar loss."""
        return dice_loss(logits, target, include_background=self.include_background,
                         smooth=self.smooth, softmax=self.softmax)


class DiceCELoss(nn.Module):
    """Module form of :func:`dice_ce_loss`; ``weight`` is a buffer (moves with ``.to``).

    Examples
    --------
    >>> import torch
    >>> loss = DiceCELoss(lambda_ce=0.0)
    >>> logits, target = torch.zeros(1, 2, 4, 4), torch.ones(1, 4, 4, dtype=torch.long)
    >>> round(float(loss(logits, target)), 4)  # p = 1/2 everywhere: D = 2*8/(8+16)
    0.3333
    """

    def __init__(self, *, include_background: bool = False, smooth: float = 1e-5,
                 lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.include_background = bool(include_background)
        self.smooth = _check_smooth(smooth)
        self.lambda_dice = _check_lambda(lambda_dice, "lambda_dice")
        self.lambda_ce = _check_lambda(lambda_ce, "lambda_ce")
        if weight is not None and not isinstance(weight, torch.Tensor):
            weight = torch.as_tensor(weight, dtype=torch.float32)
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The scalar loss."""
        return dice_ce_loss(logits, target, include_background=self.include_background,
                            smooth=self.smooth, lambda_dice=self.lambda_dice,
                            lambda_ce=self.lambda_ce, weight=self.weight)

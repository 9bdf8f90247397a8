r"""The YOLO (v1) loss: a weighted sum of squared errors over the grid (Redmon et al. 2016).

Predictions and targets follow the conventions of :mod:`mlimaging.detection.yolo`: ``pred`` is
``(N, S, S, 5B + C)`` (per cell :math:`B` boxes ``(x, y, sqrt_w, sqrt_h, conf)``, then :math:`C`
class probabilities) and ``target`` is ``(N, S, S, 5 + C)`` from
:func:`~mlimaging.detection.encode_targets`.
"""

from __future__ import annotations

import numbers

import torch

__all__ = ["yolo_loss", "yolo_loss_terms"]


def _xyxy(cells: torch.Tensor, grid: int) -> torch.Tensor:
    """Boxes ``(x, y, sqrt_w, sqrt_h)`` of a grid ``(N, S, S, 4)`` or ``(N, S, S, B, 4)`` -> xyxy in
    image units (the image is [0, 1] x [0, 1])."""
    extra = [1] * (cells.ndim - 4)  # a B axis after (S, S)
    idx = torch.arange(grid, dtype=cells.dtype, device=cells.device)
    rows, cols = idx.view(grid, 1, *extra), idx.view(1, grid, *extra)
    cx = (cols + cells[..., 0]) / grid
    cy = (rows + cells[..., 1]) / grid
    w, h = cells[..., 2] ** 2, cells[..., 3] ** 2
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)


def _paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of boxes a[k] and b[k] (xyxy, broadcast), 0 where both are empty."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    return torch.where(
        union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(union)
    )


def _check(
    pred: torch.Tensor, target: torch.Tensor, lambda_coord: float, lambda_noobj: float
) -> tuple[int, int]:
    for name, t in (("pred", pred), ("targets", target)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point torch.Tensor")
        if t.ndim != 4 or t.shape[1] != t.shape[2]:
            raise ValueError(f"{name} must have shape (N, S, S, channels), got {tuple(t.shape)}")
    if pred.shape[:3] != target.shape[:3]:
        raise ValueError(
            f"pred {tuple(pred.shape)} and targets {tuple(target.shape)} must share (N, S, S)"
        )
    c = target.shape[-1] - 5
    if c < 1 or (pred.shape[-1] - c) < 5 or (pred.shape[-1] - c) % 5:
        raise ValueError(
            f"targets (N, S, S, 5 + C) and pred (N, S, S, 5B + C) do not fit: last axes "
            f"{target.shape[-1]} and {pred.shape[-1]}"
        )
    for name, v in (("lambda_coord", lambda_coord), ("lambda_noobj", lambda_noobj)):
        if (
            isinstance(v, bool)
            or not isinstance(v, numbers.Real)
            or not v >= 0
            or v == float("inf")
        ):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if not torch.isfinite(target).all():
        raise ValueError("targets must be finite")
    return (pred.shape[-1] - c) // 5, c


def yolo_loss_terms(
    pred: torch.Tensor,
    targets: torch.Tensor,
    *,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    rescore: bool = True,
) -> dict[str, torch.Tensor]:
    r"""The four terms of :func:`yolo_loss`, each summed over the grid and averaged over images.

    Returns
    -------
    dict
        ``coord`` (weighted by ``lambda_coord``), ``obj``, ``noobj`` (weighted by
        ``lambda_noobj``), ``cls`` and their sum ``loss`` (scalar tensors); ``iou``: the mean IoU
        of the responsible predictors with their boxes (detached; 0 without objects).

    Examples
    --------
    >>> import torch
    >>> from mlimaging.detection.yolo import encode_targets
    >>> y = encode_targets([{"boxes": torch.tensor([[8.0, 8.0, 24.0, 24.0]]), "labels": torch.tensor([0])}],
    ...                    grid=2, num_classes=2, image_size=32)
    >>> terms = yolo_loss_terms(torch.zeros(1, 2, 2, 12), y)
    >>> sorted(terms)
    ['cls', 'coord', 'iou', 'loss', 'noobj', 'obj']
    """
    nb, nc = _check(pred, targets, lambda_coord, lambda_noobj)
    n, s = pred.shape[0], pred.shape[1]
    targets = targets.to(pred.dtype)
    boxes = pred[..., : 5 * nb].reshape(n, s, s, nb, 5)
    probs = pred[..., 5 * nb :]
    obj = targets[..., 4]  # (N, S, S): 1 where an object's centre falls
    gt = targets[..., :4].unsqueeze(3)  # (N, S, S, 1, 4)
    with torch.no_grad():
        iou = _paired_iou(_xyxy(boxes[..., :4].detach(), s), _xyxy(gt, s))  # (N, S, S, B)
        best = iou.argmax(-1, keepdim=True)  # the first predictor on ties
        resp = torch.zeros_like(iou).scatter_(-1, best, 1.0) * obj.unsqueeze(-1)  # 1^obj_ij
    coord = lambda_coord * (resp.unsqueeze(-1) * (boxes[..., :4] - gt) ** 2).sum()
    conf = boxes[..., 4]
    conf_target = iou if rescore else torch.ones_like(iou)
    obj_term = (resp * (conf - conf_target) ** 2).sum()
    noobj = lambda_noobj * ((1 - resp) * conf**2).sum()
    cls = (obj.unsqueeze(-1) * (probs - targets[..., 5:]) ** 2).sum()
    count = resp.sum()
    mean_iou = (iou * resp).sum() / count if count > 0 else iou.new_zeros(())
    terms = {"coord": coord / n, "obj": obj_term / n, "noobj": noobj / n, "cls": cls / n}
    terms["loss"] = terms["coord"] + terms["obj"] + terms["noobj"] + terms["cls"]
    terms["iou"] = mean_iou.detach()
    return terms


def yolo_loss(
    pred: torch.Tensor,
    targets: torch.Tensor,
    *,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
    rescore: bool = True,
) -> torch.Tensor:
    r"""The YOLO (v1) sum-squared loss of a prediction grid against its target grid.

    .. math::

        \mathcal L = \lambda_{\text{coord}} \sum_{i=0}^{S^2} \sum_{j=0}^{B} \mathbb 1^{\text{obj}}_{ij}
        \Bigl[(x_i - \hat x_i)^2 + (y_i - \hat y_i)^2
        + (\sqrt{w_i} - \sqrt{\hat w_i})^2 + (\sqrt{h_i} - \sqrt{\hat h_i})^2\Bigr]
        + \sum_{i, j} \mathbb 1^{\text{obj}}_{ij} (C_{ij} - \hat C_{ij})^2
        + \lambda_{\text{noobj}} \sum_{i, j} \mathbb 1^{\text{noobj}}_{ij} C_{ij}^2
        + \sum_{i} \mathbb 1^{\text{obj}}_{i} \sum_{c} (p_i(c) - \hat p_i(c))^2

    where :math:`\mathbb 1^{\text{obj}}_i` marks the cells holding an object's centre, and
    :math:`\mathbb 1^{\text{obj}}_{ij}` its *responsible* predictor: of the cell's :math:`B`
    boxes, the one with the highest IoU with the ground-truth box (the first on ties, e.g.
    when all IoUs are 0). :math:`\mathbb 1^{\text{noobj}}_{ij} = 1 - \mathbb 1^{\text{obj}}_{ij}`:
    every other predictor, in cells with or without an object, is pushed to confidence 0.
    Square roots of width and height weigh an error in a small box more than the same error
    in a large one. The sum runs over the grid and is divided by the number of images ``N``.

    Confidence target :math:`\hat C_{ij}`: with ``rescore=True`` (the default, as in the paper,
    where confidence is defined as :math:`\Pr(\text{object}) \cdot \mathrm{IoU}`) the IoU of the
    responsible box with the ground truth, detached from the graph; with ``rescore=False`` it
    is 1 (what some implementations use; confidence then only says "there is an object").

    Parameters
    ----------
    pred : torch.Tensor
        ``(N, S, S, 5B + C)`` from :class:`~mlimaging.detection.YOLO` (sigmoid box values,
        softmax class probabilities).
    targets : torch.Tensor
        ``(N, S, S, 5 + C)`` from :func:`~mlimaging.detection.encode_targets`.
    lambda_coord, lambda_noobj : float
        Weights of the coordinate and no-object terms (the paper's 5 and 0.5).
    rescore : bool
        Confidence target IoU (True) or 1 (False).

    Returns
    -------
    torch.Tensor
        Scalar loss (differentiable with respect to ``pred``).

    Raises
    ------
    ValueError
        Shapes that do not fit, non-float or non-finite targets, negative weights.

    References
    ----------
    Redmon J., Divvala S., Girshick R., Farhadi A. (2016). You Only Look Once: Unified,
    Real-Time Object Detection. CVPR. arXiv:1506.02640 (equation 3).

    Examples
    --------
    A 1 x 1 grid, one predictor, one class, a box half the image wide and high centred in it.
    A perfect prediction costs 0; moving its centre right by 0.1 of the image gives
    IoU = (0.4 x 0.5) / (0.25 + 0.25 - 0.2) = 2/3, so the loss is
    :math:`5 \cdot 0.1^2 + (1 - 2/3)^2 = 0.1611` (coordinates, then confidence 1 against the IoU):

    >>> import torch
    >>> s = 0.5 ** 0.5  # sqrt of the relative width 0.5
    >>> target = torch.tensor([[[[0.5, 0.5, s, s, 1.0, 1.0]]]])
    >>> perfect = torch.tensor([[[[0.5, 0.5, s, s, 1.0, 1.0]]]])
    >>> float(yolo_loss(perfect, target))
    0.0
    >>> shifted = torch.tensor([[[[0.6, 0.5, s, s, 1.0, 1.0]]]])
    >>> round(float(yolo_loss(shifted, target)), 4)
    0.1611
    """
    return yolo_loss_terms(
        pred, targets, lambda_coord=lambda_coord, lambda_noobj=lambda_noobj, rescore=rescore
    )["loss"]

r"""Decoding a YOLO grid into boxes, scores and labels, with class-wise non-maximum suppression.

The grid layout is the one of :mod:`mlimaging.detection.yolo`; the output is one dict per image
in the torchmetrics format (``boxes`` ``(K, 4)`` xyxy pixels, ``scores``, ``labels``), the
input of :func:`mlimaging.detection.mean_average_precision`.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch

from mlimaging.detection.boxes import batched_nms
from mlimaging.detection.yolo import _image_hw

__all__ = ["decode", "grid_boxes"]


def grid_boxes(pred: torch.Tensor, *, boxes_per_cell: int, image_size: Any = 96) -> torch.Tensor:
    r"""All :math:`S^2 B` boxes of a grid in xyxy pixels: ``(N, S, S, B, 4)``.

    Box ``b`` of cell (row :math:`i`, column :math:`j`) with values
    ``(x, y, sqrt_w, sqrt_h)`` has centre :math:`((j + x) W / S, (i + y) H / S)` and size
    :math:`(\text{sqrt\_w}^2 W, \text{sqrt\_h}^2 H)`.

    Examples
    --------
    >>> import torch
    >>> pred = torch.tensor([[[[0.5, 0.5, 0.5, 0.5, 1.0, 1.0]]]])  # S = 1, B = 1, C = 1
    >>> grid_boxes(pred, boxes_per_cell=1, image_size=100)[0, 0, 0, 0].tolist()
    [37.5, 37.5, 62.5, 62.5]
    """
    n, s = pred.shape[0], pred.shape[1]
    h, w = _image_hw(image_size)
    cells = pred[..., : 5 * boxes_per_cell].reshape(n, s, s, boxes_per_cell, 5).to(torch.float64)
    idx = torch.arange(s, dtype=torch.float64, device=pred.device)
    cx = (idx.view(1, s, 1) + cells[..., 0]) * (w / s)
    cy = (idx.view(s, 1, 1) + cells[..., 1]) * (h / s)
    bw, bh = cells[..., 2] ** 2 * w, cells[..., 3] ** 2 * h
    return torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=-1)


def _infer_b(
    pred: torch.Tensor, boxes_per_cell: int | None, num_classes: int | None
) -> tuple[int, int]:
    d = pred.shape[-1]
    for name, v in (("boxes_per_cell", boxes_per_cell), ("num_classes", num_classes)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int or None, got {v!r}")
    if boxes_per_cell is None:
        boxes_per_cell, rem = divmod(d - int(num_classes), 5)  # type: ignore[arg-type]
        if rem:
            raise ValueError(f"pred's last axis {d} is not 5B + {num_classes}")
    if num_classes is None:
        num_classes = d - 5 * int(boxes_per_cell)
    if boxes_per_cell < 1 or num_classes < 1 or 5 * boxes_per_cell + num_classes != d:
        raise ValueError(
            f"pred's last axis {d} does not equal 5 * boxes_per_cell ({boxes_per_cell}) + "
            f"num_classes ({num_classes})"
        )
    return int(boxes_per_cell), int(num_classes)


def decode(
    pred: torch.Tensor,
    *,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.5,
    image_size: Any = 96,
    boxes_per_cell: int | None = None,
    num_classes: int | None = None,
    max_detections: int | None = 100,
) -> list[dict[str, torch.Tensor]]:
    r"""Boxes, scores and labels of a YOLO prediction grid, after class-wise NMS.

    For box :math:`b` of cell :math:`i` and class :math:`c` the class-specific confidence is
    (Redmon et al. 2016, section 2)

    .. math::

        \text{score}_{ibc} = \Pr(\text{class}_c \mid \text{object}) \cdot \text{conf}_{ib}
        = \Pr(\text{class}_c) \cdot \mathrm{IoU}^{\text{truth}}_{\text{pred}}.

    Every (box, class) pair with :math:`\text{score} \ge` ``conf_threshold`` is a candidate (a
    box may thus be reported under two classes); candidates go through greedy NMS per class
    (:func:`~mlimaging.detection.batched_nms`: a box is dropped when it overlaps a
    higher-scoring box of the same class with IoU > ``iou_threshold``), are clipped to the
    image and sorted by decreasing score; at most ``max_detections`` are kept per image.

    Parameters
    ----------
    pred : torch.Tensor
        ``(N, S, S, 5B + C)`` (see :mod:`mlimaging.detection.yolo`).
    conf_threshold : float
        Minimum class-specific score (in [0, 1]).
    iou_threshold : float
        NMS overlap threshold.
    image_size : int or (int, int)
        Image side or ``(height, width)`` in pixels: the scale of the returned boxes.
    boxes_per_cell, num_classes : int, optional
        :math:`B` and :math:`C`; one of them is enough (the other follows from ``5B + C``).
        With neither, :math:`B = 2` (the paper's and :class:`~mlimaging.detection.YOLO`'s default).
    max_detections : int or None
        Keep the best ``max_detections`` per image (None: all).

    Returns
    -------
    list of dict
        One per image: ``boxes`` float32 ``(K, 4)`` xyxy pixels, ``scores`` float32 ``(K,)``,
        ``labels`` int64 ``(K,)``.

    References
    ----------
    Redmon J., Divvala S., Girshick R., Farhadi A. (2016). You Only Look Once: Unified,
    Real-Time Object Detection. CVPR. arXiv:1506.02640.

    Examples
    --------
    A 2 x 2 grid, one box per cell, two classes, on a 64 x 64 image: the top-left cell holds a
    box centred at its middle (16, 16), 16 px wide (sqrt_w = sqrt(16/64) = 0.5), confidence 0.9,
    class 1 with probability 0.8: score 0.72. The other cells have confidence 0.1 (scores below
    0.25).

    >>> import torch
    >>> pred = torch.zeros(1, 2, 2, 7)
    >>> pred[..., 4] = 0.1; pred[..., 5:] = 0.5
    >>> pred[0, 0, 0] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9, 0.2, 0.8])
    >>> out = decode(pred, image_size=64, boxes_per_cell=1)
    >>> out[0]["boxes"].tolist(), [round(s, 2) for s in out[0]["scores"].tolist()], out[0]["labels"].tolist()
    ([[8.0, 8.0, 24.0, 24.0]], [0.72], [1])
    """
    if not isinstance(pred, torch.Tensor) or not pred.is_floating_point():
        raise ValueError("pred must be a floating-point torch.Tensor (N, S, S, 5B + C)")
    if pred.ndim != 4 or pred.shape[1] != pred.shape[2]:
        raise ValueError(f"pred must have shape (N, S, S, 5B + C), got {tuple(pred.shape)}")
    if not torch.isfinite(pred).all():
        raise ValueError("pred must be finite")
    for name, v in (("conf_threshold", conf_threshold), ("iou_threshold", iou_threshold)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v <= 1:
            raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    if max_detections is not None and (
        isinstance(max_detections, bool)
        or not isinstance(max_detections, int)
        or max_detections < 1
    ):
        raise ValueError(f"max_detections must be a positive int or None, got {max_detections!r}")
    if boxes_per_cell is None and num_classes is None:
        boxes_per_cell = 2
    nb, nc = _infer_b(pred, boxes_per_cell, num_classes)
    h, w = _image_hw(image_size)
    pred = pred.detach()
    n, s = pred.shape[0], pred.shape[1]
    boxes = grid_boxes(pred, boxes_per_cell=nb, image_size=(h, w)).reshape(n, s * s * nb, 4)
    conf = pred[..., : 5 * nb].reshape(n, s, s, nb, 5)[..., 4].reshape(n, s * s * nb, 1)
    probs = pred[..., 5 * nb :].unsqueeze(3).expand(n, s, s, nb, nc).reshape(n, s * s * nb, nc)
    scores = conf * probs  # (N, S S B, C)
    out: list[dict[str, torch.Tensor]] = []
    for k in range(n):
        box_idx, label = torch.nonzero(scores[k] >= conf_threshold, as_tuple=True)
        cand_boxes = boxes[k, box_idx]
        cand_boxes = torch.stack(
            [
                cand_boxes[:, 0].clamp(0, w),
                cand_boxes[:, 1].clamp(0, h),
                cand_boxes[:, 2].clamp(0, w),
                cand_boxes[:, 3].clamp(0, h),
            ],
            dim=-1,
        )
        cand_scores = scores[k, box_idx, label]
        keep = batched_nms(cand_boxes, cand_scores, label, float(iou_threshold))
        if max_detections is not None:
            keep = keep[:max_detections]
        out.append(
            {
                "boxes": cand_boxes[keep].to(torch.float32),
                "scores": cand_scores[keep].to(torch.float32),
                "labels": label[keep].to(torch.int64),
            }
        )
    return out

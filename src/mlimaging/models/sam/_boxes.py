r"""Boxes for SAM's automatic masks: IoU, greedy non-maximum suppression, boxes of masks.

Our own implementations of the few box operations segment-anything takes from torchvision
(``box_iou``, ``nms``, ``batched_nms``) and from its own utilities (the box of a mask, the
XYXY to XYWH conversion), so that mlimaging never imports torchvision at run time.

Boxes are ``(x0, y0, x1, y1)`` (XYXY) with :math:`x_0 \le x_1`, :math:`y_0 \le y_1`. The
intersection over union of two boxes :math:`a, b` is

.. math::

    \operatorname{IoU}(a, b) = \frac{|a \cap b|}{|a| + |b| - |a \cap b|}, \qquad
    |a \cap b| = [\min(x_1^a, x_1^b) - \max(x_0^a, x_0^b)]_+ \,
                 [\min(y_1^a, y_1^b) - \max(y_0^a, y_0^b)]_+ .

Greedy NMS (Felzenszwalb et al. 2010, as in R-CNN, Girshick et al. 2014, arXiv:1311.2524)
visits the boxes by decreasing score and keeps a box unless a box kept before it overlaps it
with :math:`\operatorname{IoU} > \tau`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["batched_nms", "box_iou", "box_xyxy_to_xywh", "masks_to_boxes", "nms"]


def _as_boxes(boxes: Any, name: str) -> torch.Tensor:
    t = torch.as_tensor(boxes)
    if t.ndim != 2 or t.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (N, 4) (x0, y0, x1, y1), got {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real numbers, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.float()
    return t


def box_iou(boxes1: Any, boxes2: Any) -> torch.Tensor:
    r"""Pairwise intersection over union of two sets of XYXY boxes.

    .. math::

        \operatorname{IoU}_{ij} = \frac{|a_i \cap b_j|}{|a_i| + |b_j| - |a_i \cap b_j|}

    Parameters
    ----------
    boxes1, boxes2 : Tensor or ndarray, shapes (N, 4) and (M, 4)
        Boxes ``(x0, y0, x1, y1)``; integer boxes are computed in float32.

    Returns
    -------
    Tensor, shape (N, M)
        IoU in the (promoted) floating dtype of the inputs; 0/0 (two empty boxes) is NaN,
        as in torchvision.

    Examples
    --------
    >>> import torch
    >>> box_iou(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
    tensor([[0.1429]])
    """
    a = _as_boxes(boxes1, "boxes1")
    b = _as_boxes(boxes2, "boxes2")
    dtype = torch.promote_types(a.dtype, b.dtype)
    a, b = a.to(dtype), b.to(dtype)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def _check_scores(scores: Any, n: int, name: str = "scores") -> torch.Tensor:
    s = torch.as_tensor(scores)
    if s.ndim != 1 or s.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},) (one per box), got {tuple(s.shape)}")
    if s.is_complex():
        raise ValueError(f"{name} must be real numbers, got dtype {s.dtype}")
    return s


def _check_threshold(iou_threshold: Any) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float, np.floating)):
        raise ValueError(f"iou_threshold must be a number, got {iou_threshold!r}")
    value = float(iou_threshold)
    if not np.isfinite(value):
        raise ValueError(f"iou_threshold must be finite, got {iou_threshold!r}")
    return value


def nms(boxes: Any, scores: Any, iou_threshold: float) -> torch.Tensor:
    r"""Greedy non-maximum suppression, the documented semantics of ``torchvision.ops.nms``.

    Boxes are visited by decreasing score (a stable sort: equal scores in index order); a box
    is kept unless a box kept before it has :math:`\operatorname{IoU} > \tau`
    (``iou_threshold``) with it. IoUs are computed in float64, so the decision at
    :math:`\operatorname{IoU} = \tau` does not depend on float32 rounding.

    Parameters
    ----------
    boxes : Tensor or ndarray, shape (N, 4)
        XYXY boxes.
    scores : Tensor or ndarray, shape (N,)
        One score per box.
    iou_threshold : float
        :math:`\tau`: boxes overlapping a kept box with IoU strictly above it are removed.

    Returns
    -------
    Tensor of int64, shape (K,)
        Indices of the kept boxes, by decreasing score.

    Examples
    --------
    >>> import torch
    >>> boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    >>> nms(boxes, torch.tensor([0.5, 0.9, 0.7]), 0.5)
    tensor([1, 2])
    """
    b = _as_boxes(boxes, "boxes")
    s = _check_scores(scores, b.shape[0])
    tau = _check_threshold(iou_threshold)
    if b.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64)
    order = torch.sort(s.detach().cpu(), descending=True, stable=True).indices
    sb = b.detach().cpu().double()[order]
    area = (sb[:, 2] - sb[:, 0]) * (sb[:, 3] - sb[:, 1])
    n = sb.shape[0]
    suppressed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if i + 1 == n:
            break
        rest = sb[i + 1:]
        lt = torch.maximum(sb[i, :2], rest[:, :2])
        rb = torch.minimum(sb[i, 2:], rest[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        iou = inter / (area[i] + area[i + 1:] - inter)
        suppressed[i + 1:] |= (iou > tau).numpy()
    return order[torch.tensor(keep, dtype=torch.int64)].to(torch.as_tensor(boxes).device)


def batched_nms(boxes: Any, scores: Any, idxs: Any, iou_threshold: float) -> torch.Tensor:
    r"""Greedy NMS within each category, the semantics of ``torchvision.ops.batched_nms``.

    Boxes of different categories (``idxs``) never suppress each other; within a category,
    :func:`nms`. The kept indices of all categories are returned by decreasing score
    (stable: equal scores in index order), as torchvision returns them.

    Parameters
    ----------
    boxes : Tensor or ndarray, shape (N, 4)
        XYXY boxes.
    scores : Tensor or ndarray, shape (N,)
        One score per box.
    idxs : Tensor or ndarray, shape (N,)
        Integer category of each box.
    iou_threshold : float
        IoU above which a box is suppressed by a kept box of its category.

    Returns
    -------
    Tensor of int64, shape (K,)

    Examples
    --------
    >>> import torch
    >>> boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10]])
    >>> batched_nms(boxes, torch.tensor([0.5, 0.9]), torch.tensor([0, 1]), 0.5)
    tensor([1, 0])
    >>> batched_nms(boxes, torch.tensor([0.5, 0.9]), torch.tensor([0, 0]), 0.5)
    tensor([1])
    """
    b = _as_boxes(boxes, "boxes")
    s = _check_scores(scores, b.shape[0])
    c = _check_scores(idxs, b.shape[0], "idxs")
    if c.is_floating_point() and not torch.equal(c, c.round()):
        raise ValueError("idxs must be integer category indices")
    if b.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=b.device)
    keep_mask = torch.zeros(b.shape[0], dtype=torch.bool)
    c = c.detach().cpu()
    for category in torch.unique(c):
        members = torch.nonzero(c == category).flatten()
        kept = nms(b.detach().cpu()[members], s.detach().cpu()[members], iou_threshold)
        keep_mask[members[kept]] = True
    kept = torch.nonzero(keep_mask).flatten()
    order = torch.sort(s.detach().cpu()[kept], descending=True, stable=True).indices
    return kept[order].to(b.device)


def masks_to_boxes(masks: Any) -> torch.Tensor:
    r"""XYXY boxes around binary masks; ``[0, 0, 0, 0]`` for an empty mask.

    For a mask :math:`m` of shape (H, W), :math:`x_0 = \min\{x : m_{yx}\}`,
    :math:`x_1 = \max\{x : m_{yx}\}` (columns; inclusive, so a one-pixel mask at column 3
    has :math:`x_0 = x_1 = 3`) and likewise for the rows :math:`y`. This is
    segment-anything's ``batched_mask_to_box`` (torchvision's ``masks_to_boxes`` has the
    same boxes but no rule for empty masks).

    Parameters
    ----------
    masks : Tensor or ndarray, shape (..., H, W)
        Boolean (or 0/1) masks; any leading batch dimensions.

    Returns
    -------
    Tensor of int64, shape (..., 4)

    Examples
    --------
    >>> import torch
    >>> m = torch.zeros(2, 4, 5, dtype=torch.bool)
    >>> m[0, 1:3, 2:4] = True
    >>> masks_to_boxes(m)
    tensor([[2, 1, 3, 2],
            [0, 0, 0, 0]])
    """
    m = torch.as_tensor(masks)
    if m.ndim < 2:
        raise ValueError(f"masks must have shape (..., H, W), got {tuple(m.shape)}")
    if m.dtype != torch.bool:
        if m.is_complex():
            raise ValueError(f"masks must be boolean or 0/1, got dtype {m.dtype}")
        m = m != 0
    h, w = m.shape[-2:]
    lead = m.shape[:-2]
    if m.numel() == 0:
        return torch.zeros(*lead, 4, dtype=torch.int64, device=m.device)
    flat = m.reshape(-1, h, w)
    rows = flat.any(dim=-1)  # (B, H): row has a pixel
    cols = flat.any(dim=-2)  # (B, W)
    ar_h = torch.arange(h, device=m.device)
    ar_w = torch.arange(w, device=m.device)
    y1 = torch.where(rows, ar_h, -1).amax(dim=-1)
    y0 = torch.where(rows, ar_h, h).amin(dim=-1)
    x1 = torch.where(cols, ar_w, -1).amax(dim=-1)
    x0 = torch.where(cols, ar_w, w).amin(dim=-1)
    out = torch.stack([x0, y0, x1, y1], dim=-1)
    empty = ~rows.any(dim=-1)
    out[empty] = 0
    return out.reshape(*lead, 4)


def box_xyxy_to_xywh(boxes: Any) -> Any:
    r"""Convert XYXY boxes to XYWH: :math:`(x_0, y_0, x_1 - x_0, y_1 - y_0)`.

    Parameters
    ----------
    boxes : Tensor or ndarray, shape (..., 4)

    Returns
    -------
    Tensor or ndarray (as given), shape (..., 4)
        A new array; the input is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> box_xyxy_to_xywh(np.array([2, 1, 5, 7]))
    array([2, 1, 3, 6])
    """
    if isinstance(boxes, torch.Tensor):
        out = boxes.clone()
    else:
        out = np.array(boxes, copy=True)
    if out.ndim < 1 or out.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {tuple(out.shape)}")
    out[..., 2] = out[..., 2] - out[..., 0]
    out[..., 3] = out[..., 3] - out[..., 1]
    return out

r"""Bounding-box operations: area, pairwise IoU, format conversion, clipping and non-maximum suppression.

Conventions (one for the whole ``detection`` area)
--------------------------------------------------
*Boxes* are ``(N, 4)`` tensors in pixels, by default ``xyxy``: :math:`(x_1, y_1, x_2, y_2)`
with :math:`x_1 \le x_2`, :math:`y_1 \le y_2`, :math:`x` along the image width (columns) and
:math:`y` along its height (rows). A pixel grid of width :math:`W` spans :math:`[0, W]`, so a
box around pixel columns :math:`c_0..c_1` is :math:`[c_0, c_1 + 1)`. Other formats:
``xywh`` :math:`(x_1, y_1, w, h)` and ``cxcywh`` :math:`(c_x, c_y, w, h)`.
*Scores* are ``(N,)`` floats; *labels* / *idxs* are ``(N,)`` integers.

Every function takes a torch tensor or a NumPy array and returns a torch tensor. Bad input
(wrong shape, non-finite coordinates, :math:`x_2 < x_1` or :math:`y_2 < y_1`, NaN scores)
raises ``ValueError`` naming the argument.

Why not ``torchvision.ops``
---------------------------
Issue 19 asked for ``torchvision.ops.nms`` and ``box_iou`` as a runtime dependency. PyPI's
``torchvision==0.28.0`` (the release matching our CPU ``torch==2.13``) is a CUDA build: its C
operators do not load on the CPU build of torch, so ``from torchvision.ops import nms`` fails
with "operator torchvision::nms does not exist" (see ``tests/_torchvision_cpu.py``). The
functions below therefore reimplement torchvision's documented semantics and signatures
(``box_area``, ``box_iou``, ``box_convert``, ``nms``, ``batched_nms``, ``clip_boxes_to_image``),
vectorised, and the tests compare them with torchvision's pure-Python ops and with
hand-computed cases. Differences, on purpose:

* ties in ``scores`` are broken by index (a stable sort), so the result is deterministic;
  torchvision's CPU kernel uses an unstable sort;
* :func:`batched_nms` masks the IoU matrix to same-class pairs instead of offsetting each
  class's coordinates by ``idx * (max + 1)``: the same boxes are kept, without the float
  precision lost to large offsets or the overlap that negative coordinates allow;
* boxes are validated (torchvision silently returns garbage for :math:`x_2 < x_1`).

References
----------
Neubeck and Van Gool (2006), "Efficient non-maximum suppression", ICPR,
DOI 10.1109/ICPR.2006.479.
Everingham et al. (2010), "The PASCAL Visual Object Classes (VOC) challenge", IJCV 88,
DOI 10.1007/s11263-009-0275-4 (IoU as the detection overlap criterion).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["batched_nms", "box_area", "box_convert", "box_iou", "clip_boxes", "nms"]

_FORMATS = ("xyxy", "xywh", "cxcywh")
# Rows of the IoU matrix computed at once in nms (bounds the float memory to ~chunk * N).
_CHUNK = 512


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    return x


def _upcast(t: torch.Tensor) -> torch.Tensor:
    # Products of coordinates overflow in half precision / small integer types.
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def _check_boxes(boxes, name: str = "boxes", *, fmt: str = "xyxy") -> torch.Tensor:
    boxes = _as_tensor(boxes, name)
    if boxes.dtype == torch.bool or boxes.is_complex():
        raise ValueError(f"{name} must be real numbers, got dtype {boxes.dtype}")
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")
    if boxes.is_floating_point() and not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if fmt == "xyxy":
        bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"{name} must be xyxy with x2 >= x1 and y2 >= y1; row {i} is {boxes[i].tolist()}"
            )
    elif bool((boxes[:, 2:] < 0).any()):
        raise ValueError(f"{name} in {fmt!r} format must have non-negative width and height")
    return boxes


def _check_scores(scores, n: int, name: str = "scores") -> torch.Tensor:
    scores = _as_tensor(scores, name)
    if scores.ndim != 1 or scores.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},) to match the boxes, got {tuple(scores.shape)}"
        )
    if scores.is_floating_point() and bool(torch.isnan(scores).any()):
        raise ValueError(f"{name} must not contain NaN")
    return scores


def box_area(boxes) -> torch.Tensor:
    r"""Area of each ``xyxy`` box.

    .. math:: A = (x_2 - x_1)(y_2 - y_1)

    Same as ``torchvision.ops.box_area`` (integer boxes give integer areas).

    Parameters
    ----------
    boxes
        ``(N, 4)`` boxes in ``xyxy`` format.

    Returns
    -------
    torch.Tensor
        ``(N,)`` areas.

    Examples
    --------
    >>> box_area(torch.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0]]))
    tensor([6., 0.])
    """
    boxes = _upcast(_check_boxes(boxes))
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _pairwise_iou(
    a: torch.Tensor, b: torch.Tensor, area_a: torch.Tensor, area_b: torch.Tensor
) -> torch.Tensor:
    # Coordinates as contiguous rows: broadcasting (N, 1) against (1, M) per coordinate is ~2x
    # faster than broadcasting (N, 1, 2) against (1, M, 2).
    a, b = a.T.contiguous(), b.T.contiguous()
    w = (
        torch.minimum(a[2, :, None], b[2, None, :]) - torch.maximum(a[0, :, None], b[0, None, :])
    ).clamp_(min=0)
    h = (
        torch.minimum(a[3, :, None], b[3, None, :]) - torch.maximum(a[1, :, None], b[1, None, :])
    ).clamp_(min=0)
    inter = w.mul_(h)
    return inter / (area_a[:, None] + area_b[None, :] - inter)


def box_iou(boxes1, boxes2) -> torch.Tensor:
    r"""Pairwise intersection over union (Jaccard index) of two sets of ``xyxy`` boxes.

    .. math:: \mathrm{IoU}(a, b) = \frac{|a \cap b|}{|a| + |b| - |a \cap b|}

    Same as ``torchvision.ops.box_iou``: two boxes of zero area give ``nan`` (0 / 0).

    Parameters
    ----------
    boxes1, boxes2
        ``(N, 4)`` and ``(M, 4)`` boxes in ``xyxy`` format.

    Returns
    -------
    torch.Tensor
        ``(N, M)`` IoU values in :math:`[0, 1]`, floating point.

    Examples
    --------
    >>> a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    >>> b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    >>> box_iou(a, b)  # 1 / (4 + 4 - 1), 1, 0
    tensor([[0.1429, 1.0000, 0.0000]])
    """
    b1 = _upcast(_check_boxes(boxes1, "boxes1"))
    b2 = _upcast(_check_boxes(boxes2, "boxes2"))
    if not b1.is_floating_point() and not b2.is_floating_point():
        b1, b2 = b1.double(), b2.double()
    dtype = torch.promote_types(b1.dtype, b2.dtype)
    b1, b2 = b1.to(dtype), b2.to(dtype)
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
    return _pairwise_iou(b1, b2, area1, area2)


def box_convert(boxes, in_fmt: str, out_fmt: str) -> torch.Tensor:
    r"""Convert boxes between the ``xyxy``, ``xywh`` and ``cxcywh`` formats.

    .. math::
        w = x_2 - x_1,\quad h = y_2 - y_1,\quad c_x = x_1 + w/2,\quad c_y = y_1 + h/2

    Same signature and results as ``torchvision.ops.box_convert``.

    Parameters
    ----------
    boxes
        ``(N, 4)`` boxes in ``in_fmt``.
    in_fmt, out_fmt
        One of ``"xyxy"``, ``"xywh"``, ``"cxcywh"``.

    Returns
    -------
    torch.Tensor
        ``(N, 4)`` boxes in ``out_fmt`` (a new tensor; the input is not modified).

    Examples
    --------
    >>> box_convert(torch.tensor([[10.0, 20.0, 30.0, 60.0]]), "xyxy", "cxcywh")
    tensor([[20., 40., 20., 40.]])
    >>> box_convert(torch.tensor([[20.0, 40.0, 20.0, 40.0]]), "cxcywh", "xywh")
    tensor([[10., 20., 20., 40.]])
    """
    for arg, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in _FORMATS:
            raise ValueError(f"{arg} must be one of {_FORMATS}, got {fmt!r}")
    boxes = _check_boxes(boxes, fmt=in_fmt)
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        x1, y1, x2, y2 = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    else:
        x1, y1, x2, y2 = a, b, c, d
    if out_fmt == "xyxy":
        out = (x1, y1, x2, y2)
    elif out_fmt == "xywh":
        out = (x1, y1, x2 - x1, y2 - y1)
    else:
        out = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
    return torch.stack(out, dim=-1)


def clip_boxes(boxes, size: tuple[int, int]) -> torch.Tensor:
    r"""Clip ``xyxy`` boxes to an image of ``size = (height, width)``.

    .. math:: x \leftarrow \min(\max(x, 0), W),\quad y \leftarrow \min(\max(y, 0), H)

    Same as ``torchvision.ops.clip_boxes_to_image``.

    Parameters
    ----------
    boxes
        ``(N, 4)`` boxes in ``xyxy`` format.
    size
        ``(height, width)`` of the image, in pixels.

    Returns
    -------
    torch.Tensor
        ``(N, 4)`` clipped boxes (a new tensor).

    Examples
    --------
    >>> clip_boxes(torch.tensor([[-5.0, 2.0, 120.0, 50.0]]), (96, 100))
    tensor([[  0.,   2., 100.,  50.]])
    """
    boxes = _check_boxes(boxes)
    if len(size) != 2 or any(int(s) != s or s <= 0 for s in size):
        raise ValueError(f"size must be (height, width) with positive integers, got {size!r}")
    h, w = int(size[0]), int(size[1])
    x = boxes[:, 0::2].clamp(0, w)
    y = boxes[:, 1::2].clamp(0, h)
    return torch.stack((x[:, 0], y[:, 0], x[:, 1], y[:, 1]), dim=-1)


def _greedy_keep(suppress: np.ndarray) -> np.ndarray:
    """Greedy pass over a boolean matrix (rows/cols in decreasing score order, upper triangle used)."""
    n = suppress.shape[0]
    alive = np.ones(n, dtype=bool)
    for i in range(n):
        if alive[i]:
            alive[i + 1 :] &= ~suppress[i, i + 1 :]
    return np.flatnonzero(alive)


def _nms_sorted(boxes: torch.Tensor, iou_threshold: float, same: torch.Tensor | None) -> np.ndarray:
    """Positions (in the given order) kept by greedy NMS of boxes already sorted by score."""
    n = boxes.shape[0]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppress = np.zeros((n, n), dtype=bool)
    for s in range(0, n, _CHUNK):
        e = min(s + _CHUNK, n)
        # Only the upper triangle (a box is suppressed by higher-scoring ones) is needed.
        iou = _pairwise_iou(boxes[s:e], boxes[s:], area[s:e], area[s:])
        block = iou > iou_threshold
        if same is not None:
            block &= same[s:e, None] == same[None, s:]
        suppress[s:e, s:] = block.numpy()
    return _greedy_keep(suppress)


def _check_threshold(iou_threshold: float) -> float:
    t = float(iou_threshold)
    if not np.isfinite(t):
        raise ValueError(f"iou_threshold must be finite, got {iou_threshold!r}")
    return t


def nms(boxes, scores, iou_threshold: float) -> torch.Tensor:
    r"""Greedy non-maximum suppression.

    Visit the boxes by decreasing score; keep a box unless it overlaps an already kept box
    with :math:`\mathrm{IoU} > \tau` (``iou_threshold``). The IoU matrix is computed once (in
    row blocks) and the greedy pass runs over its boolean mask, so a few thousand boxes take
    milliseconds. Same semantics and signature as ``torchvision.ops.nms``; ties in ``scores``
    are kept in index order (a stable sort).

    Parameters
    ----------
    boxes
        ``(N, 4)`` boxes in ``xyxy`` format.
    scores
        ``(N,)`` scores (no NaN).
    iou_threshold
        Boxes with IoU strictly greater than this with a higher-scoring kept box are discarded.

    Returns
    -------
    torch.Tensor
        int64 indices of the kept boxes, sorted by decreasing score.

    References
    ----------
    Neubeck and Van Gool (2006), "Efficient non-maximum suppression", ICPR.

    Examples
    --------
    >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    >>> nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)  # IoU(0, 1) = 81 / 119 = 0.68
    tensor([0, 2])
    """
    boxes = _upcast(_check_boxes(boxes))
    scores = _check_scores(scores, boxes.shape[0])
    thr = _check_threshold(iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64)
    if not boxes.is_floating_point():
        boxes = boxes.double()
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = _nms_sorted(boxes[order].cpu(), thr, None)
    return order[torch.from_numpy(keep)].to(torch.int64)


def batched_nms(boxes, scores, idxs, iou_threshold: float) -> torch.Tensor:
    r"""Non-maximum suppression done independently per category.

    A box is only suppressed by a higher-scoring kept box of the same ``idxs`` value with
    :math:`\mathrm{IoU} > \tau`. Same result and signature as ``torchvision.ops.batched_nms``
    (which offsets each category's coordinates by ``idx * (max + 1)`` so that categories never
    overlap); here the IoU matrix is masked to same-category pairs instead, which is exact.

    Parameters
    ----------
    boxes
        ``(N, 4)`` boxes in ``xyxy`` format.
    scores
        ``(N,)`` scores (no NaN).
    idxs
        ``(N,)`` integer category of each box.
    iou_threshold
        IoU above which a lower-scoring box of the same category is discarded.

    Returns
    -------
    torch.Tensor
        int64 indices of the kept boxes, sorted by decreasing score.

    Examples
    --------
    >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [1.0, 1.0, 11.0, 11.0]])
    >>> batched_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 1, 0]), 0.5)
    tensor([0, 1])
    """
    boxes = _upcast(_check_boxes(boxes))
    n = boxes.shape[0]
    scores = _check_scores(scores, n)
    idxs = _as_tensor(idxs, "idxs")
    if idxs.ndim != 1 or idxs.shape[0] != n:
        raise ValueError(f"idxs must have shape ({n},) to match the boxes, got {tuple(idxs.shape)}")
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        raise ValueError(f"idxs must be integers, got dtype {idxs.dtype}")
    thr = _check_threshold(iou_threshold)
    if n == 0:
        return torch.empty(0, dtype=torch.int64)
    if not boxes.is_floating_point():
        boxes = boxes.double()
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = _nms_sorted(boxes[order].cpu(), thr, idxs[order].cpu())
    return order[torch.from_numpy(keep)].to(torch.int64)

r"""Automatic ("segment everything") masks: a grid of point prompts, filtered and de-duplicated.

Segment Anything's automatic mask generation (Kirillov et al. 2023, arXiv:2304.02643,
section 4 and appendix A): the image is encoded once; an :math:`n \times n` grid of
foreground points at the cell centres,

.. math::

    p_{ij} = \Big(\frac{2j + 1}{2n} W, \; \frac{2i + 1}{2n} H\Big), \qquad 0 \le i, j < n,

is run through the decoder in batches, three masks per point. A mask is kept when its
predicted IoU exceeds ``pred_iou_thresh`` and its *stability score*, the IoU of the masks
obtained by thresholding its logits :math:`z` at :math:`t \pm \delta`,

.. math::

    \operatorname{stab} = \frac{|\{z > t + \delta\}|}{|\{z > t - \delta\}|},

(:math:`t` = ``sam.mask_threshold`` = 0, :math:`\delta` = ``stability_score_offset``) is at
least ``stability_score_thresh``; duplicates are removed by greedy NMS on the masks' boxes
with the predicted IoU as score. This is segment-anything's ``SamAutomaticMaskGenerator``
with ``output_mode="binary_mask"`` and ``crop_n_layers=0`` (one crop: the whole image), step
for step, so the same model gives the same list of masks in the same order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from mlimaging.models.sam._boxes import batched_nms, box_xyxy_to_xywh, masks_to_boxes
from mlimaging.models.sam.predictor import SAMPredictor, resize_coords

__all__ = ["automatic_masks", "build_point_grid", "remove_small_regions", "stability_score"]


def build_point_grid(points_per_side: int) -> np.ndarray:
    r"""Cell centres of an :math:`n \times n` grid on :math:`[0, 1]^2`, x varying fastest.

    .. math::

        p_{ij} = \Big(\frac{2j + 1}{2n}, \frac{2i + 1}{2n}\Big)

    Parameters
    ----------
    points_per_side : int
        :math:`n`.

    Returns
    -------
    ndarray of float64, shape (n * n, 2)
        ``(x, y)`` pairs, row by row.

    Examples
    --------
    >>> build_point_grid(2)
    array([[0.25, 0.25],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.75, 0.75]])
    """
    n = _check_count(points_per_side, "points_per_side")
    half = 1.0 / (2 * n)
    side = np.linspace(half, 1.0 - half, n)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def stability_score(logits: torch.Tensor, *, threshold: float = 0.0,
                    offset: float = 1.0) -> torch.Tensor:
    r"""Stability of masks under a shift of the binarisation threshold.

    .. math::

        \operatorname{stab}(z) = \frac{|\{z > t + \delta\}|}{|\{z > t - \delta\}|}

    (for :math:`\delta \ge 0` the first mask lies inside the second, so this is their IoU).
    An empty :math:`\{z > t - \delta\}` gives NaN (0/0), as in segment-anything.

    Parameters
    ----------
    logits : Tensor, shape (..., H, W)
        Mask logits.
    threshold : float
        :math:`t`, the mask threshold.
    offset : float
        :math:`\delta`.

    Returns
    -------
    Tensor of float32, shape (...)

    Examples
    --------
    >>> import torch
    >>> stability_score(torch.tensor([[[3.0, 0.5], [-0.5, -3.0]]]))
    tensor([0.3333])
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim < 2:
        raise ValueError("logits must be a Tensor (..., H, W), got "
                         f"{getattr(logits, 'shape', type(logits).__name__)}")
    inner = (logits > threshold + offset).sum(dim=(-2, -1))
    outer = (logits > threshold - offset).sum(dim=(-2, -1))
    return inner.to(torch.float32) / outer.to(torch.float32)


def remove_small_regions(mask: np.ndarray, area_thresh: float, *,
                         mode: str) -> tuple[np.ndarray, bool]:
    r"""Fill small holes or remove small islands of a binary mask (8-connectivity).

    ``mode="holes"``: connected components of the background (8-connected) with fewer than
    ``area_thresh`` pixels become foreground. ``mode="islands"``: foreground components
    with fewer than ``area_thresh`` pixels are removed; if every component is that small,
    the largest is kept. This is segment-anything's ``remove_small_regions`` (which uses
    OpenCV's connected components; here :func:`scipy.ndimage.label`, components numbered in
    raster order).

    Parameters
    ----------
    mask : ndarray of bool, shape (H, W)
    area_thresh : float
        Minimum area (pixels) of a region that is left alone.
    mode : {"holes", "islands"}

    Returns
    -------
    mask : ndarray of bool, shape (H, W)
    changed : bool
        Whether a region was small (the mask was modified).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.ones((5, 5), bool); m[2, 2] = False
    >>> filled, changed = remove_small_regions(m, 2, mode="holes")
    >>> bool(filled.all()), changed
    (True, True)
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    mask = mask.astype(bool)
    holes = mode == "holes"
    working = ~mask if holes else mask
    labels, n = ndimage.label(working, structure=np.ones((3, 3), dtype=int))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area_thresh]
    if not small:
        return mask, False
    fill = [0, *small]
    if not holes:
        fill = [i for i in range(n + 1) if i not in fill]
        if not fill:
            fill = [int(np.argmax(sizes)) + 1]
    return np.isin(labels, fill), True


def _check_count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _small_regions(masks: np.ndarray, boxes: np.ndarray, min_area: float,
                   nms_thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean masks, rescore (1 unchanged, 0 changed), NMS again; returns masks, boxes, keep."""
    new, scores = [], []
    for m in masks:
        m, changed_holes = remove_small_regions(m, min_area, mode="holes")
        m, changed_islands = remove_small_regions(m, min_area, mode="islands")
        new.append(m)
        scores.append(0.0 if (changed_holes or changed_islands) else 1.0)
    new_masks = np.stack(new) if new else masks
    new_boxes = masks_to_boxes(torch.as_tensor(new_masks))
    keep = batched_nms(new_boxes.float(), torch.tensor(scores, dtype=torch.float32),
                       torch.zeros(len(new)), nms_thresh).numpy()
    return new_masks, new_boxes.numpy(), keep


def automatic_masks(sam_or_predictor: Any, image: Any, *, points_per_side: int = 32,
                    points_per_batch: int = 64, pred_iou_thresh: float = 0.88,
                    stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0,
                    box_nms_thresh: float = 0.7, min_mask_region_area: int = 0,
                    window: tuple[float, float] | None = None,
                    progress: bool = False) -> list[dict[str, Any]]:
    r"""Masks of everything in ``image``, as SAM's automatic mask generator returns them.

    See the module docstring for the method. ``min_mask_region_area > 0`` then fills holes
    and removes islands smaller than that area (:func:`remove_small_regions`), and removes new
    duplicates by NMS (threshold ``max(box_nms_thresh, 0.7)``) preferring unchanged masks, as
    segment-anything does with OpenCV.

    Parameters
    ----------
    sam_or_predictor : SAM or SAMPredictor
        The model; a :class:`SAMPredictor` is reused and left holding ``image``, a model gets
        a fresh predictor (an image set on the model is left alone).
    image : ndarray or Tensor, shape (H, W), (H, W, 1) or (H, W, 3)
        RGB uint8, or any image :func:`to_sam_rgb` windows.
    points_per_side : int
        Grid size :math:`n` (:math:`n^2` point prompts).
    points_per_batch : int
        Points decoded together (memory against speed; the result does not depend on it).
    pred_iou_thresh : float
        Keep masks with predicted IoU above it (no filter when <= 0).
    stability_score_thresh : float
        Keep masks with stability score at least it (no filter when <= 0).
    stability_score_offset : float
        :math:`\delta` of the stability score.
    box_nms_thresh : float
        Box IoU above which the lower-scored of two masks is dropped.
    min_mask_region_area : int
        Holes and islands smaller than this are cleaned (0: no cleaning).
    window : tuple of float, optional
        Intensity window for non-uint8 images.
    progress : bool
        Show a progress bar over the point batches.

    Returns
    -------
    list of dict
        One record per mask, by decreasing predicted IoU: ``segmentation`` (bool H x W),
        ``area`` (int pixels), ``bbox`` (XYWH ints, inclusive pixel box), ``predicted_iou``,
        ``point_coords`` (``[[x, y]]``, the prompt), ``stability_score``, ``crop_box``
        (``[0, 0, W, H]``).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from mlimaging.models import create_model
    >>> _ = torch.manual_seed(0)
    >>> image = np.zeros((32, 32), np.float32); image[8:24, 8:24] = 1.0
    >>> records = automatic_masks(create_model("sam_tiny").eval(), image, points_per_side=2,
    ...                           pred_iou_thresh=0.0, stability_score_thresh=0.0)
    >>> all(r["segmentation"].shape == (32, 32) for r in records)
    True
    """
    n = _check_count(points_per_side, "points_per_side")
    batch = _check_count(points_per_batch, "points_per_batch")
    iou_thresh = _check_number(pred_iou_thresh, "pred_iou_thresh")
    stab_thresh = _check_number(stability_score_thresh, "stability_score_thresh")
    offset = _check_number(stability_score_offset, "stability_score_offset")
    nms_thresh = _check_number(box_nms_thresh, "box_nms_thresh")
    min_area = _check_number(min_mask_region_area, "min_mask_region_area")
    if min_area < 0:
        raise ValueError(f"min_mask_region_area must be >= 0, got {min_mask_region_area!r}")
    if isinstance(sam_or_predictor, SAMPredictor):
        predictor = sam_or_predictor
    else:
        predictor = SAMPredictor(sam_or_predictor)
    predictor.set_image(image, window=window)
    assert predictor.original_size is not None
    h, w = predictor.original_size
    threshold = float(predictor.sam.mask_threshold)
    grid = build_point_grid(n) * np.array([[w, h]], dtype=np.float64)

    starts = range(0, len(grid), batch)
    if progress:
        from rich.progress import track

        starts = track(starts, description="automatic masks", total=len(starts))
    kept_masks, kept_iou, kept_points, kept_stab, kept_boxes = [], [], [], [], []
    for start in starts:
        points = grid[start:start + batch]
        resized = torch.as_tensor(resize_coords(points, (h, w), predictor.img_size),
                                  device=predictor.device)
        labels = torch.ones(len(points), dtype=torch.int, device=predictor.device)
        logits, iou, _ = predictor.predict_resized(points=resized[:, None, :],
                                                   point_labels=labels[:, None],
                                                   multimask=True, return_logits=True)
        k = logits.shape[1]
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
        pts = torch.as_tensor(np.repeat(points, k, axis=0))
        if iou_thresh > 0.0:
            keep = (iou > iou_thresh).cpu()
            logits, iou, pts = logits[keep.to(logits.device)], iou[keep.to(iou.device)], pts[keep]
        stab = stability_score(logits, threshold=threshold, offset=offset)
        if stab_thresh > 0.0:
            keep = (stab >= stab_thresh).cpu()
            logits, iou, pts = logits[keep.to(logits.device)], iou[keep.to(iou.device)], pts[keep]
            stab = stab[keep.to(stab.device)]
        binary = logits > threshold
        kept_boxes.append(masks_to_boxes(binary).cpu())
        kept_masks.append(binary.cpu())
        kept_iou.append(iou.cpu())
        kept_points.append(pts)
        kept_stab.append(stab.cpu())

    masks = torch.cat(kept_masks) if kept_masks else torch.zeros(0, h, w, dtype=torch.bool)
    boxes = torch.cat(kept_boxes)
    ious = torch.cat(kept_iou)
    keep = batched_nms(boxes.float(), ious, torch.zeros(len(boxes)), nms_thresh)
    masks_np = masks[keep].numpy()
    boxes_np = boxes[keep].numpy()
    ious_np = ious[keep].numpy()
    points_np = torch.cat(kept_points)[keep].numpy()
    stab_np = torch.cat(kept_stab)[keep].numpy()

    if min_area > 0 and len(masks_np):
        masks_np, boxes_np, order = _small_regions(masks_np, boxes_np, min_area,
                                                   max(nms_thresh, 0.7))
        masks_np, boxes_np = masks_np[order], boxes_np[order]
        ious_np, points_np, stab_np = ious_np[order], points_np[order], stab_np[order]

    records = []
    for i in range(len(masks_np)):
        records.append({
            "segmentation": masks_np[i],
            "area": int(masks_np[i].sum()),
            "bbox": box_xyxy_to_xywh(boxes_np[i]).tolist(),
            "predicted_iou": float(ious_np[i]),
            "point_coords": [points_np[i].tolist()],
            "stability_score": float(stab_np[i]),
            "crop_box": [0, 0, int(w), int(h)],
        })
    return records

r"""Training SAM on images with ground-truth masks: prompts sampled from the masks, SAM's loss, a step for ``fit``.

SAM is trained by simulating a user (Kirillov et al. 2023, appendix A): for each image a
ground-truth mask is chosen, a prompt is drawn from it (a point uniformly inside the mask,
or its bounding box with noise of 10 % of the box side, at most 20 pixels, per coordinate),
and the predicted mask logits :math:`x` are compared with the mask :math:`t` by

.. math::
    \mathcal{L} = 20\,\mathcal{L}_{\text{focal}} + \mathcal{L}_{\text{Dice}}
        + \bigl(\hat u - \operatorname{IoU}(\mathbb{1}[x > 0], t)\bigr)^2,

where :math:`\hat u` is the IoU the model predicts for its mask. With three (multimask)
outputs only the mask of lowest :math:`20\,\mathcal{L}_{\text{focal}} + \mathcal{L}_{\text{Dice}}`
is back-propagated, so the outputs specialise to the nested objects an ambiguous prompt can
mean; unambiguous prompts (several points, a box) use the single-mask output.

- :func:`sample_prompts`: points / boxes from binary masks, seeded by a ``torch.Generator``.
- :func:`sigmoid_focal_loss`, :func:`binary_dice_loss`, :func:`mask_iou`, :func:`sam_loss`.
- :func:`prepare_images`: SAM's preprocessing for batches of float images (window to 0..255,
  three channels, longest side resized to ``img_size``), as :class:`~mlimaging.models.sam.predictor.SAMPredictor`
  does for one image (up to its rounding to uint8 and PIL's resampling).
- :class:`SAMStep`: the training step given to :func:`mlimaging.training.fit` (``step=``).
- :func:`predict_masks`: masks for prompted batches, the same path as training (evaluation).

Not implemented: SAM's iterative refinement rounds (extra points sampled from the error
region, with the previous low-resolution logits as mask prompt).

References
----------
Kirillov A., Mintun E., Ravi N., Mao H., Rolland C., Gustafson L., Xiao T., Whitehead S.,
Berg A. C., Lo W.-Y., Dollar P., Girshick R. (2023). Segment Anything. ICCV.
arXiv:2304.02643.

Lin T.-Y., Goyal P., Girshick R., He K., Dollar P. (2017). Focal loss for dense object
detection. ICCV. arXiv:1708.02002.

Milletari F., Navab N., Ahmadi S.-A. (2016). V-Net: fully convolutional neural networks for
volumetric medical image segmentation. 3DV. arXiv:1606.04797.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models.sam.predictor import postprocess_masks, preprocess_shape
from mlimaging.training.step import TrainStep

__all__ = [
    "PROMPT_KINDS",
    "SAMLossParts",
    "SAMStep",
    "binary_dice_loss",
    "mask_iou",
    "pick_structures",
    "predict_masks",
    "prepare_images",
    "sam_loss",
    "sample_prompts",
    "sigmoid_focal_loss",
]

#: Prompt kinds of :func:`sample_prompts`: one point, several points, a box.
PROMPT_KINDS = ("point", "points", "box")


# --------------------------------------------------------------------------------------- geometry
def _check_masks(masks: Any, name: str = "masks") -> torch.Tensor:
    if not isinstance(masks, torch.Tensor) or masks.ndim != 3:
        got = tuple(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"{name} must be a tensor (B, H, W), got {got}")
    if masks.is_floating_point() and not torch.isfinite(masks).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return masks


def sample_prompts(
    masks: torch.Tensor,
    *,
    kind: str = "point",
    num_points: int | None = None,
    box_jitter: float = 0.1,
    max_jitter: float = 20.0,
    target_size: int | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor | None]:
    r"""Prompts drawn from binary masks, as SAM's training simulates a user.

    - ``"point"`` / ``"points"``: ``num_points`` (1 / default 3) foreground points drawn
      uniformly from the mask's pixels (without replacement when the mask has enough),
      labels 1. A point is the pixel ``(x, y) = (column, row)``.
    - ``"box"``: the mask's bounding box ``(x0, y0, x1, y1)`` (inclusive pixel indices, as
      segment-anything's ``batched_mask_to_box``), each coordinate moved by
      :math:`\epsilon \sim \mathcal{N}(0, (j\,L)^2)` clipped to :math:`\pm` ``max_jitter``
      (:math:`L` the box width for x, height for y; :math:`j` = ``box_jitter``), then kept
      inside the image with :math:`x_0 \le x_1, y_0 \le y_1`.

    With ``target_size`` the coordinates are mapped to the frame of the image resized by
    SAM (longest side ``target_size``, :func:`preprocess_shape`):
    :math:`x' = x\,w'/W,\ y' = y\,h'/H`.

    Parameters
    ----------
    masks
        ``(B, H, W)`` binary masks (nonzero = object); each must be non-empty.
    kind
        ``"point"``, ``"points"`` or ``"box"``.
    num_points
        Points per mask (``"point"``: must be 1 or None; ``"points"``: default 3).
    box_jitter, max_jitter
        Box noise: standard deviation as a fraction of the box side, and its cap in pixels
        (of the input frame). ``box_jitter=0`` gives the exact bounding box.
    target_size
        SAM's input size ``S``; None keeps the input frame.
    generator
        Source of randomness (a seeded ``torch.Generator`` makes prompts repeatable).

    Returns
    -------
    dict
        ``points`` ``(B, N, 2)`` float32 and ``point_labels`` ``(B, N)`` int64 (None for a
        box), ``boxes`` ``(B, 4)`` float32 (None for points): the keyword arguments of
        ``SAM.decode`` / ``SAM.forward``.

    Examples
    --------
    >>> m = torch.zeros(1, 8, 8, dtype=torch.bool)
    >>> m[0, 2:5, 3:7] = True
    >>> sample_prompts(m, kind="box", box_jitter=0.0)["boxes"].tolist()
    [[3.0, 2.0, 6.0, 4.0]]
    >>> p = sample_prompts(m, kind="points", generator=torch.Generator().manual_seed(0))
    >>> p["points"].shape, p["point_labels"].tolist()
    (torch.Size([1, 3, 2]), [[1, 1, 1]])
    >>> x, y = p["points"][0, 0].long().tolist()
    >>> bool(m[0, y, x])
    True
    """
    masks = _check_masks(masks) != 0
    if kind not in PROMPT_KINDS:
        raise ValueError(f"kind must be one of {list(PROMPT_KINDS)}, got {kind!r}")
    b, h, w = masks.shape
    areas = masks.flatten(1).sum(1)
    if b == 0:
        raise ValueError("masks must hold at least one mask, got an empty batch")
    if (areas == 0).any():
        raise ValueError(f"masks: mask(s) {torch.nonzero(areas == 0).flatten().tolist()} are empty; "
                         "prompts need at least one foreground pixel")
    if not (isinstance(box_jitter, numbers.Real) and box_jitter >= 0):
        raise ValueError(f"box_jitter must be a non-negative fraction of the box side, got {box_jitter!r}")
    if not (isinstance(max_jitter, numbers.Real) and max_jitter >= 0):
        raise ValueError(f"max_jitter must be a non-negative number of pixels, got {max_jitter!r}")
    if target_size is None:
        sy = sx = 1.0
    else:
        nh, nw = preprocess_shape(h, w, target_size)
        sy, sx = nh / h, nw / w
    out: dict[str, torch.Tensor | None] = {"points": None, "point_labels": None, "boxes": None}
    if kind == "box":
        rows, cols = masks.any(2), masks.any(1)
        ar_h = torch.arange(h, device=masks.device)
        ar_w = torch.arange(w, device=masks.device)
        y0 = torch.where(rows, ar_h, h).amin(1)
        y1 = torch.where(rows, ar_h, -1).amax(1)
        x0 = torch.where(cols, ar_w, w).amin(1)
        x1 = torch.where(cols, ar_w, -1).amax(1)
        box = torch.stack([x0, y0, x1, y1], 1).float()
        if box_jitter > 0:
            side = torch.stack([x1 - x0 + 1, y1 - y0 + 1] * 2, 1).float()
            noise = torch.randn(b, 4, generator=generator).to(box.device) * side * float(box_jitter)
            box = box + noise.clamp(-float(max_jitter), float(max_jitter))
            lo = torch.minimum(box[:, :2], box[:, 2:])
            hi = torch.maximum(box[:, :2], box[:, 2:])
            limit = box.new_tensor([w - 1, h - 1])
            box = torch.cat([lo.clamp(min=0).minimum(limit), hi.clamp(min=0).minimum(limit)], 1)
        out["boxes"] = box * box.new_tensor([sx, sy, sx, sy])
        return out
    if kind == "point":
        if num_points not in (None, 1):
            raise ValueError(f"num_points must be 1 (or None) for kind='point', got {num_points!r}")
        n = 1
    else:
        n = 3 if num_points is None else num_points
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
        n = int(n)
    points = torch.empty(b, n, 2)
    for i in range(b):
        idx = torch.nonzero(masks[i].flatten()).flatten().cpu()
        if len(idx) >= n:
            pick = idx[torch.randperm(len(idx), generator=generator)[:n]]
        else:
            pick = idx[torch.randint(len(idx), (n,), generator=generator)]
        points[i, :, 0] = (pick % w).float() * sx
        points[i, :, 1] = torch.div(pick, w, rounding_mode="floor").float() * sy
    out["points"] = points.to(masks.device)
    out["point_labels"] = torch.ones(b, n, dtype=torch.long, device=masks.device)
    return out


def pick_structures(labels: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """One binary mask per label map: a nonzero label drawn uniformly among those present.

    A binary mask (labels 0/1) gives itself. Returns a bool tensor ``(B, H, W)``.

    Examples
    --------
    >>> lab = torch.tensor([[[0, 1], [2, 2]]])
    >>> m = pick_structures(lab, generator=torch.Generator().manual_seed(0))
    >>> m.sum().item() in (1, 2)
    True
    """
    labels = _check_masks(labels, "labels")
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError("labels must be integer label maps or binary masks, got non-integer values")
        labels = labels.long()
    out = torch.empty(labels.shape, dtype=torch.bool, device=labels.device)
    for i, lab in enumerate(labels):
        present = torch.unique(lab)
        present = present[present != 0]
        if len(present) == 0:
            raise ValueError(f"labels: sample {i} has no foreground label; every sample needs an object")
        k = present[int(torch.randint(len(present), (1,), generator=generator))]
        out[i] = lab == k
    return out


# --------------------------------------------------------------------------------------- losses
def _pair(logits: Any, targets: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(logits, torch.Tensor) or logits.ndim < 2 or not logits.is_floating_point():
        raise ValueError(f"logits must be a float tensor (..., H, W), got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a tensor, got {type(targets).__name__}")
    try:
        targets = targets.to(logits.dtype).expand_as(logits)
    except RuntimeError:
        raise ValueError(f"targets {tuple(targets.shape)} do not broadcast to logits {tuple(logits.shape)}") from None
    return logits, targets


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, *, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    r"""Focal loss of sigmoid logits, averaged over the last two (pixel) axes.

    .. math::
        \mathcal{L}_{\text{focal}} = \frac{1}{HW}\sum_{ij} -\alpha_t (1 - p_t)^\gamma \log p_t,
        \quad p_t = \begin{cases} \sigma(x) & t = 1 \\ 1 - \sigma(x) & t = 0 \end{cases},
        \quad \alpha_t = \begin{cases} \alpha & t = 1 \\ 1 - \alpha & t = 0 \end{cases}

    (Lin et al. 2017, arXiv:1708.02002); ``alpha < 0`` drops the :math:`\alpha_t` factor.

    Returns the loss per mask, shape ``logits.shape[:-2]``.

    Examples
    --------
    >>> round(sigmoid_focal_loss(torch.zeros(1, 1, 1), torch.ones(1, 1, 1)).item(), 6)  # 0.25 * 0.5**2 * log 2
    0.043322
    """
    logits, targets = _pair(logits, targets)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean((-2, -1))


def binary_dice_loss(logits: torch.Tensor, targets: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    r"""Soft Dice loss of sigmoid logits per mask (Milletari et al. 2016):

    .. math::
        \mathcal{L}_{\text{Dice}} = 1 - \frac{2 \sum_{ij} p_{ij} t_{ij} + s}{\sum_{ij} p_{ij} + \sum_{ij} t_{ij} + s},
        \qquad p = \sigma(x).

    Returns shape ``logits.shape[:-2]``.

    Examples
    --------
    >>> x = torch.tensor([[[20.0, -20.0], [-20.0, -20.0]]])  # p ~ [1, 0, 0, 0]
    >>> round(binary_dice_loss(x, torch.tensor([[[1, 1], [0, 0]]]), smooth=0.0).item(), 4)  # 1 - 2/3
    0.3333
    """
    logits, targets = _pair(logits, targets)
    p = torch.sigmoid(logits)
    inter = (p * targets).sum((-2, -1))
    return 1 - (2 * inter + smooth) / (p.sum((-2, -1)) + targets.sum((-2, -1)) + smooth)


def mask_iou(logits: torch.Tensor, targets: torch.Tensor, *, threshold: float = 0.0) -> torch.Tensor:
    r"""IoU of the binary masks ``logits > threshold`` with ``targets`` (1 when both are empty).

    .. math:: \operatorname{IoU} = |M \cap T| / |M \cup T|

    Examples
    --------
    >>> mask_iou(torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), torch.tensor([[1, 0], [0, 0]])).item()
    0.5
    """
    logits, targets = _pair(logits, targets)
    m, t = logits > threshold, targets > 0.5
    inter = (m & t).sum((-2, -1)).float()
    union = (m | t).sum((-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass
class SAMLossParts:
    """Result of :func:`sam_loss`: the scalar to back-propagate and its parts per sample.

    Attributes: ``loss`` (scalar, mean over samples), ``per_sample`` ``(B,)``, ``focal``,
    ``dice``, ``iou_mse`` ``(B,)`` (of the chosen mask), ``chosen`` ``(B,)`` (index of the
    back-propagated mask), ``iou`` ``(B, k)`` (actual IoU of every predicted mask).
    """

    loss: torch.Tensor
    per_sample: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou_mse: torch.Tensor
    chosen: torch.Tensor
    iou: torch.Tensor


def sam_loss(mask_logits: torch.Tensor, iou_predictions: torch.Tensor, targets: torch.Tensor, *,
             focal_weight: float = 20.0, dice_weight: float = 1.0, iou_weight: float = 1.0,
             supervise_all_iou: bool = True) -> SAMLossParts:
    r"""SAM's training loss for ``k`` predicted masks per sample.

    .. math::
        m_{bj} = w_f\,\mathcal{L}_{\text{focal}}(x_{bj}, t_b) + w_d\,\mathcal{L}_{\text{Dice}}(x_{bj}, t_b),
        \quad j^*_b = \arg\min_j m_{bj},
        \quad \mathcal{L} = \frac1B \sum_b \Bigl[m_{bj^*_b} + w_u\,\overline{(\hat u_{bj} - u_{bj})^2}\Bigr]

    with :math:`u_{bj} = \operatorname{IoU}(\mathbb{1}[x_{bj} > 0], t_b)` (no gradient) and
    the mean over :math:`j` of the IoU error (or only :math:`j^*_b` with
    ``supervise_all_iou=False``). Defaults :math:`w_f : w_d : w_u = 20 : 1 : 1` as in
    Kirillov et al. 2023 (arXiv:2304.02643). Only the chosen mask gets gradient from the
    mask terms (SAM's minimum over the multimask outputs).

    Parameters
    ----------
    mask_logits
        ``(B, k, H, W)`` logits.
    iou_predictions
        ``(B, k)`` predicted IoUs.
    targets
        ``(B, H, W)`` binary masks.

    Examples
    --------
    >>> t = torch.zeros(1, 4, 4); t[0, :2] = 1
    >>> good = 20 * (2 * t - 1)  # confident and right
    >>> parts = sam_loss(torch.stack([-good, good], 1), torch.tensor([[0.0, 1.0]]), t)
    >>> parts.chosen.tolist(), parts.iou.tolist()
    ([1], [[0.0, 1.0]])
    """
    if not isinstance(mask_logits, torch.Tensor) or mask_logits.ndim != 4:
        raise ValueError(f"mask_logits must be a tensor (B, k, H, W), got "
                         f"{tuple(mask_logits.shape) if isinstance(mask_logits, torch.Tensor) else mask_logits!r}")
    b, k = mask_logits.shape[:2]
    if not isinstance(iou_predictions, torch.Tensor) or tuple(iou_predictions.shape) != (b, k):
        raise ValueError(f"iou_predictions must have shape {(b, k)}, got "
                         f"{tuple(iou_predictions.shape) if isinstance(iou_predictions, torch.Tensor) else iou_predictions!r}")
    targets = _check_masks(targets, "targets")
    if tuple(targets.shape) != (b, *mask_logits.shape[2:]):
        raise ValueError(f"targets must have shape {(b, *mask_logits.shape[2:])} (B, H, W of mask_logits), "
                         f"got {tuple(targets.shape)}")
    t = (targets != 0).to(mask_logits.dtype)[:, None]
    focal = sigmoid_focal_loss(mask_logits, t)
    dice = binary_dice_loss(mask_logits, t)
    per_mask = focal_weight * focal + dice_weight * dice
    chosen = per_mask.detach().argmin(1)
    rows = torch.arange(b, device=mask_logits.device)
    with torch.no_grad():
        iou = mask_iou(mask_logits.detach(), t)
    sq = (iou_predictions - iou) ** 2
    iou_term = sq.mean(1) if supervise_all_iou else sq[rows, chosen]
    per_sample = per_mask[rows, chosen] + iou_weight * iou_term
    return SAMLossParts(loss=per_sample.mean(), per_sample=per_sample, focal=focal[rows, chosen].detach(),
                        dice=dice[rows, chosen].detach(), iou_mse=sq[rows, chosen].detach(), chosen=chosen,
                        iou=iou)


# --------------------------------------------------------------------------------------- pre/post
def _window(images: torch.Tensor, window: tuple[float, float] | None) -> torch.Tensor:
    """Each image mapped linearly to 0..255 (clipped), from ``window`` or its 0.5/99.5 percentiles."""
    flat = images.flatten(1).float()
    if window is None:
        q = torch.quantile(flat, flat.new_tensor([0.005, 0.995]), dim=1)
        flat_range = q[1] <= q[0]  # percentiles equal: fall back to the full range, as to_sam_rgb
        lo = torch.where(flat_range, flat.amin(1), q[0])
        hi = torch.where(flat_range, flat.amax(1), q[1])
    else:
        if len(window) != 2 or not float(window[1]) > float(window[0]):
            raise ValueError(f"window must be (low, high) with high > low, got {window!r}")
        lo = flat.new_full((len(flat),), float(window[0]))
        hi = flat.new_full((len(flat),), float(window[1]))
    span = (hi - lo).clamp(min=1e-12)[:, None]
    out = ((flat - lo[:, None]) / span).clamp(0, 1) * 255
    out = torch.where((hi > lo)[:, None], out, torch.zeros_like(out))
    return out.reshape(images.shape)


def prepare_images(images: torch.Tensor, *, img_size: int,
                   window: tuple[float, float] | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    r"""Float images ``(B, 1 or 3, H, W)`` to SAM's 0..255 RGB input before normalisation.

    Each image is windowed, :math:`y = 255\,\operatorname{clip}((x - a)/(b - a), 0, 1)`
    with :math:`(a, b)` = ``window`` or the image's 0.5 and 99.5 percentiles (its minimum and
    maximum when those are equal; a constant image gives 0), as
    :func:`~mlimaging.models.sam.predictor.to_sam_rgb`, replicated to three channels and resized (bilinear; antialiased when
    shrinking) so that its longest side is ``img_size`` (:func:`preprocess_shape`). Pass
    the result to ``sam.normalize_and_pad``.

    Returns the images ``(B, 3, h, w)`` and ``(h, w)``.

    Examples
    --------
    >>> x, size = prepare_images(torch.rand(2, 1, 32, 48), img_size=64)
    >>> tuple(x.shape), size, 0 <= float(x.min()) <= float(x.max()) <= 255
    ((2, 3, 43, 64), (43, 64), True)
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be a tensor (B, 1 or 3, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if not torch.isfinite(images).all():
        raise ValueError("images hold NaN or infinite values")
    size = preprocess_shape(images.shape[-2], images.shape[-1], img_size)
    x = _window(images, window)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if size != tuple(x.shape[-2:]):
        shrink = size[0] < x.shape[-2]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return x.contiguous(), size


def _sam(model: nn.Module) -> nn.Module:
    """The SAM inside a DistributedDataParallel wrapper, or the model itself."""
    inner = getattr(model, "module", model)
    if not all(hasattr(inner, a) for a in ("img_size", "normalize_and_pad", "decode")):
        raise ValueError(f"model must be a SAM (img_size, normalize_and_pad, decode), got {type(inner).__name__}")
    return inner


def _forward(model: nn.Module, images: torch.Tensor, prompts: Mapping[str, Any], *, multimask: bool,
             window: tuple[float, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-resolution logits ``(B, k, H, W)`` and IoU predictions ``(B, k)``; ``model`` is called once."""
    sam = _sam(model)
    s = int(sam.img_size)
    x, size = prepare_images(images, img_size=s, window=window)
    x = sam.normalize_and_pad(x)
    low, iou = model(x, multimask=multimask, **prompts)
    return postprocess_masks(low, img_size=s, input_size=size, original_size=tuple(images.shape[-2:])), iou


def predict_masks(sam: nn.Module, images: torch.Tensor, prompts: Mapping[str, Any], *, multimask: bool = False,
                  window: tuple[float, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary masks ``(B, H, W)`` and their predicted IoU ``(B,)`` for prompted images (no gradient).

    The same pre- and post-processing as :class:`SAMStep`; prompts in SAM's input frame
    (:func:`sample_prompts` with ``target_size=sam.img_size``). With ``multimask`` the mask
    of highest predicted IoU is kept, as SAM does.
    """
    was = sam.training
    sam.eval()
    try:
        with torch.no_grad():
            logits, iou = _forward(sam, images, prompts, multimask=multimask, window=window)
    finally:
        sam.train(was)
    best = iou.argmax(1)
    rows = torch.arange(len(best), device=best.device)
    return logits[rows, best] > float(getattr(sam, "mask_threshold", 0.0)), iou[rows, best]


# --------------------------------------------------------------------------------------- the step
def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        img = next((batch[k] for k in ("image", "input", "x") if k in batch), None)
        msk = next((batch[k] for k in ("mask", "target", "label", "y") if k in batch), None)
        if img is None or msk is None:
            raise ValueError(f"batch must hold an image and a mask, got keys {sorted(batch)}")
        return img, msk
    if isinstance(batch, Sequence) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(f"batch must be (images, masks) or a dict, got {type(batch).__name__}")


class SAMStep(TrainStep):
    r"""Training step of SAM for :func:`mlimaging.training.fit` (``fit(sam, data, step=SAMStep())``).

    For a batch ``(images (B, 1 or 3, H, W) float, masks (B, H, W))`` of label maps or
    binary masks, one step: draws the prompt kind of the batch uniformly from
    ``prompt_kinds``; picks one structure per sample (:func:`pick_structures`); samples its
    prompt (:func:`sample_prompts`, in SAM's input frame); preprocesses the images
    (:func:`prepare_images`, ``normalize_and_pad``); runs ``model`` once; upsamples the
    logits to ``(H, W)`` (SAM's ``postprocess_masks``); computes :func:`sam_loss`; back-propagates,
    clips the gradient norm to ``grad_clip`` and steps the optimiser. One point uses the
    three multimask outputs (lowest loss back-propagated), several points and boxes the
    single-mask output (``multimask="auto"``), as in Kirillov et al. 2023 (arXiv:2304.02643).

    All randomness comes from the step's own ``torch.Generator`` (seeded by ``seed``), saved
    by :meth:`state_dict` so that a resumed run draws exactly the prompts of an uninterrupted
    one. :meth:`validation_loss` is deterministic: the mean loss over the prompt kinds, with
    prompts seeded by ``seed`` and the batch's masks.

    Parameters
    ----------
    prompt_kinds
        Subset of ``("point", "points", "box")``.
    num_points
        Points of the ``"points"`` prompts.
    box_jitter, max_jitter
        Box noise (fraction of the side, cap in pixels), see :func:`sample_prompts`.
    multimask
        ``"auto"``, True or False.
    window
        Intensity window ``(low, high)`` mapped to 0..255, or None for per-image percentiles.
    focal_weight, dice_weight, iou_weight
        Weights of :func:`sam_loss` (20 : 1 : 1).
    seed
        Seed of the step's generator.

    Examples
    --------
    >>> from mlimaging.data import PhantomDataset
    >>> from mlimaging.models import create_model
    >>> from mlimaging.training import fit
    >>> sam = create_model("sam_tiny", seed=0)
    >>> step = SAMStep(prompt_kinds=("box",), seed=0)
    >>> history = fit(sam, PhantomDataset(4, (32, 32), seed=0), step=step, metrics=(), epochs=1, batch_size=2,
    ...               optimizer=lambda p: torch.optim.AdamW(p, lr=1e-3), progress=False)
    >>> sorted(k for k in history.epochs[0] if k not in ("epoch", "lr", "seconds"))
    ['dice_loss', 'focal', 'iou_mse', 'loss', 'mask_iou']
    >>> sorted(step.state_dict()), step.calls
    (['calls', 'generator'], 2)
    """

    def __init__(self, *, prompt_kinds: Sequence[str] = PROMPT_KINDS, num_points: int = 3, box_jitter: float = 0.1,
                 max_jitter: float = 20.0, multimask: bool | str = "auto", window: tuple[float, float] | None = None,
                 focal_weight: float = 20.0, dice_weight: float = 1.0, iou_weight: float = 1.0, seed: int = 0) -> None:
        kinds = tuple(prompt_kinds)
        if not kinds or any(k not in PROMPT_KINDS for k in kinds):
            raise ValueError(f"prompt_kinds must be a non-empty subset of {list(PROMPT_KINDS)}, got {list(kinds)}")
        if multimask not in ("auto", True, False):
            raise ValueError(f"multimask must be 'auto', True or False, got {multimask!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if isinstance(num_points, bool) or not isinstance(num_points, numbers.Integral) or num_points < 1:
            raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
        self.prompt_kinds = kinds
        self.num_points = int(num_points)
        self.box_jitter, self.max_jitter = float(box_jitter), float(max_jitter)
        self.multimask = multimask
        self.window = window
        self.weights = {"focal_weight": float(focal_weight), "dice_weight": float(dice_weight),
                        "iou_weight": float(iou_weight)}
        self.seed = int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.calls = 0

    def _multimask(self, kind: str) -> bool:
        return kind == "point" if self.multimask == "auto" else bool(self.multimask)

    def loss_parts(self, model: nn.Module, images: torch.Tensor, masks: torch.Tensor, *, kind: str,
                   generator: torch.Generator | None) -> SAMLossParts:
        """Pick structures, sample ``kind`` prompts, run ``model`` and return :func:`sam_loss`."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(f"images must be a tensor (B, C, H, W), got "
                             f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
        masks = _check_masks(masks)
        if masks.shape[0] != images.shape[0] or masks.shape[1:] != images.shape[2:]:
            raise ValueError(f"masks must have shape (B, H, W) = {(images.shape[0], *images.shape[2:])}, "
                             f"got {tuple(masks.shape)}")
        target = pick_structures(masks, generator=generator)
        sam = _sam(model)
        prompts = sample_prompts(target, kind=kind, num_points=None if kind == "point" else self.num_points,
                                 box_jitter=self.box_jitter, max_jitter=self.max_jitter,
                                 target_size=int(sam.img_size), generator=generator)
        prompts = {k: v for k, v in prompts.items() if v is not None}
        logits, iou = _forward(model, images.float(), prompts, multimask=self._multimask(kind), window=self.window)
        return sam_loss(logits, iou, target, **self.weights)

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        images, masks = _split(batch)
        kind = self.prompt_kinds[int(torch.randint(len(self.prompt_kinds), (1,), generator=self.generator))]
        optimizer.zero_grad(set_to_none=True)
        parts = self.loss_parts(model, images, masks, kind=kind, generator=self.generator)
        parts.loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        optimizer.step()
        self.calls += 1
        return parts.loss.detach(), {"focal": float(parts.focal.mean()), "dice_loss": float(parts.dice.mean()),
                                     "iou_mse": float(parts.iou_mse.mean()),
                                     "mask_iou": float(parts.iou[torch.arange(len(parts.chosen)), parts.chosen].mean())}

    def validation_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean :func:`sam_loss` over the prompt kinds, prompts seeded by ``seed`` and the masks (repeatable)."""
        images, masks = _split(batch)
        checksum = int((masks.long().flatten(1).sum(1) * torch.arange(1, len(masks) + 1, device=masks.device)).sum())
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + checksum)
        losses = [self.loss_parts(model, images, masks, kind=k, generator=g).loss for k in self.prompt_kinds]
        return torch.stack(losses).mean()

    def state_dict(self) -> dict[str, Any]:
        """The generator's state and the number of steps taken (``weights_only``-safe)."""
        return {"generator": self.generator.get_state(), "calls": self.calls}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (exact resume)."""
        if "generator" not in state:
            raise ValueError(f"state must hold 'generator' (from SAMStep.state_dict), got keys {sorted(state)}")
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).cpu())
        self.calls = int(state.get("calls", 0))

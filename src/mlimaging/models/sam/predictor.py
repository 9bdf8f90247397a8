r"""Prompted SAM inference on one image: preprocessing, encode once, predict masks per prompt.

The Segment Anything predictor (Kirillov et al. 2023, arXiv:2304.02643) encodes an image once
and then answers any number of prompts (points, boxes, a previous mask) with the light prompt
encoder and mask decoder. The image is resized so that its longest side is the encoder's
size :math:`S` (1024 for the official models), with the scale

.. math::

    s = \frac{S}{\max(H, W)}, \qquad
    (H', W') = (\lfloor sH + \tfrac12 \rfloor, \lfloor sW + \tfrac12 \rfloor),

prompts are mapped to that frame by :math:`x' = x\,W'/W`, :math:`y' = y\,H'/H`, the image is
normalised and padded to :math:`S \times S`, and the decoder's low-resolution logits
(:math:`4S/p` per side for patch size :math:`p`) are upsampled bilinearly to :math:`S`,
cropped to :math:`H' \times W'`, upsampled to :math:`H \times W` and thresholded at
``sam.mask_threshold`` (0). For an RGB uint8 image every step is the one of
segment-anything's ``SamPredictor`` (PIL bilinear resize included), so the masks, IoU
predictions and low-resolution logits are those of the reference package.

Other images (2-D gray, one channel, uint16, CT in Hounsfield units, MRI, floats) are first
mapped to 0..255 by :func:`to_sam_rgb` with a window :math:`[l, h]`,

.. math::

    v = 255 \cdot \operatorname{clip}\!\Big(\frac{x - l}{h - l}, 0, 1\Big),

given by ``window=(l, h)`` or the robust 0.5 and 99.5 percentiles of the image, and replicated
to three channels.

Coordinates are in the input image's pixel frame: ``x`` is the column, ``y`` the row, as in
segment-anything (a pixel index; the prompt encoder adds half a pixel to reach its centre).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "SAMPredictor",
    "postprocess_masks",
    "preprocess_shape",
    "resize_boxes",
    "resize_coords",
    "resize_longest_side",
    "to_sam_rgb",
]


# ----------------------------------------------------------------------------- preprocessing
def preprocess_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    r"""Size of an image resized so that its longest side is ``long_side``.

    .. math::

        s = \frac{L}{\max(H, W)}, \qquad (H', W') = (\lfloor sH + \tfrac12 \rfloor,
        \lfloor sW + \tfrac12 \rfloor)

    (segment-anything's ``ResizeLongestSide.get_preprocess_shape``).

    Parameters
    ----------
    height, width : int
        Original size.
    long_side : int
        Target length :math:`L` of the longest side.

    Returns
    -------
    tuple of int
        ``(H', W')``.

    Examples
    --------
    >>> preprocess_shape(300, 400, 1024)
    (768, 1024)
    """
    for name, value in (("height", height), ("width", width), ("long_side", long_side)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def _check_rgb_uint8(image: Any, name: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name} must be an RGB uint8 array (H, W, 3), got shape {shape} "
                         f"and dtype {dtype} (use to_sam_rgb for other images)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {image.shape}")
    return image


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    r"""Resize an RGB uint8 image so that its longest side is ``long_side`` (PIL bilinear).

    The size is :func:`preprocess_shape`; resampling is PIL's bilinear filter (which
    antialiases when shrinking), exactly as segment-anything's ``ResizeLongestSide``.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W, 3)
        RGB image.
    long_side : int
        Target length of the longest side.

    Returns
    -------
    ndarray of uint8, shape (H', W', 3)

    Examples
    --------
    >>> import numpy as np
    >>> resize_longest_side(np.zeros((30, 40, 3), np.uint8), 64).shape
    (48, 64, 3)
    """
    image = _check_rgb_uint8(image)
    new_h, new_w = preprocess_shape(image.shape[0], image.shape[1], long_side)
    if new_h < 1 or new_w < 1:
        raise ValueError(f"image of shape {image.shape[:2]} resized to a longest side of "
                         f"{long_side} would have size {(new_h, new_w)}: its aspect ratio is "
                         "too extreme; crop or pad it first")
    pil = Image.fromarray(np.ascontiguousarray(image))
    return np.array(pil.resize((new_w, new_h), Image.BILINEAR))


def _to_numpy(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def resize_coords(coords: Any, original_size: tuple[int, int], long_side: int) -> np.ndarray:
    r"""Map (x, y) coordinates from an image of ``original_size`` to the resized frame.

    .. math::

        x' = x \, \frac{W'}{W}, \qquad y' = y \, \frac{H'}{H}

    with :math:`(H', W')` = :func:`preprocess_shape` (computed in float64 as
    segment-anything's ``ResizeLongestSide.apply_coords``).

    Parameters
    ----------
    coords : array-like or Tensor, shape (..., 2)
        Points ``(x, y)`` (x = column, y = row).
    original_size : tuple of int
        ``(H, W)`` of the original image.
    long_side : int
        Longest side after resizing.

    Returns
    -------
    ndarray of float64, shape (..., 2)
        A new array.

    Examples
    --------
    >>> resize_coords([[10.0, 20.0]], (300, 400), 1024)
    array([[25.6, 51.2]])
    """
    old_h, old_w = (int(v) for v in original_size)
    new_h, new_w = preprocess_shape(old_h, old_w, long_side)
    out = np.array(_to_numpy(coords), dtype=np.float64, copy=True)
    if out.ndim < 1 or out.shape[-1] != 2:
        raise ValueError(f"coords must have shape (..., 2), got {out.shape}")
    out[..., 0] = out[..., 0] * (new_w / old_w)
    out[..., 1] = out[..., 1] * (new_h / old_h)
    return out


def resize_boxes(boxes: Any, original_size: tuple[int, int], long_side: int) -> np.ndarray:
    r"""Map XYXY boxes to the resized frame (both corners by :func:`resize_coords`).

    Parameters
    ----------
    boxes : array-like or Tensor, shape (4,) or (K, 4)
        Boxes ``(x0, y0, x1, y1)``.
    original_size : tuple of int
        ``(H, W)`` of the original image.
    long_side : int
        Longest side after resizing.

    Returns
    -------
    ndarray of float64, shape (K, 4)

    Examples
    --------
    >>> resize_boxes([0, 0, 400, 300], (300, 400), 1024)
    array([[   0.,    0., 1024.,  768.]])
    """
    b = _to_numpy(boxes)
    if b.ndim < 1 or b.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (4,) or (K, 4), got {b.shape}")
    return resize_coords(b.reshape(-1, 2, 2), original_size, long_side).reshape(-1, 4)


def _check_window(window: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window must be two numbers (low, high), got {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(f"window must be finite with low < high, got {window!r}")
    return lo, hi


def to_sam_rgb(image: Any, *, window: tuple[float, float] | None = None) -> np.ndarray:
    r"""Bring any 2-D image to the RGB uint8 form that SAM expects.

    An RGB uint8 array (H, W, 3) is returned unchanged (unless ``window`` is given), so it
    goes through SAM exactly as in segment-anything. A uint8 gray image (H, W) or (H, W, 1)
    is replicated to three channels as it is (it is already on SAM's 0..255 scale). Any other
    image (uint16, int16 CT in HU, MRI, floats, booleans) is windowed,

    .. math::

        v = \operatorname{round}\Big(255 \cdot \operatorname{clip}\big(\tfrac{x - l}{h - l},
        0, 1\big)\Big),

    with :math:`(l, h)` = ``window`` or the 0.5 and 99.5 percentiles of the image (robust to a
    few extreme voxels; if they coincide, the minimum and maximum; a constant image becomes
    0), then replicated to three channels when it has one. An RGB image that is not uint8
    is windowed with one :math:`(l, h)` for its three channels.

    Parameters
    ----------
    image : ndarray or Tensor, shape (H, W), (H, W, 1) or (H, W, 3)
        The image; NaN or infinite values are an error.
    window : tuple of float, optional
        Intensity window :math:`(l, h)`, :math:`l < h` (for CT, e.g. ``(-160, 240)``).

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)

    Examples
    --------
    >>> import numpy as np
    >>> ct = np.array([[-1000.0, 0.0], [40.0, 1000.0]])
    >>> to_sam_rgb(ct, window=(-160, 240))[..., 0]
    array([[  0, 102],
           [128, 255]], dtype=uint8)
    """
    arr = _to_numpy(image)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"image must be a real-valued array, got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] in (1, 3):
        pass
    elif arr.ndim != 2:
        raise ValueError(
            f"image must have shape (H, W), (H, W, 1) or (H, W, 3), got {arr.shape} "
            "(channel-first? use image.transpose(1, 2, 0); a volume? pass one slice)")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image must not be empty, got shape {arr.shape}")
    if window is None and arr.dtype == np.uint8:
        out = arr
    else:
        values = arr.astype(np.float64)
        if not np.isfinite(values).all():
            raise ValueError("image must be finite (it contains NaN or infinite values)")
        if window is not None:
            lo, hi = _check_window(window)
        else:
            lo, hi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
            if hi <= lo:
                lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            out = np.zeros(arr.shape, dtype=np.uint8)
        else:
            scaled = np.clip((values - lo) / (hi - lo), 0.0, 1.0) * 255.0
            out = np.rint(scaled).astype(np.uint8)
    if out.ndim == 2:
        out = out[..., None]
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def postprocess_masks(low_res_logits: torch.Tensor, *, img_size: int,
                      input_size: tuple[int, int],
                      original_size: tuple[int, int]) -> torch.Tensor:
    r"""Decoder logits to logits at the original image size, as SAM's ``postprocess_masks``.

    Bilinear upsampling (``align_corners=False``) of the :math:`4S/p` logits to
    :math:`S \times S`, crop to the resized image :math:`H' \times W'` (dropping the
    padding), bilinear upsampling to :math:`H \times W`.

    Parameters
    ----------
    low_res_logits : Tensor, shape (B, C, h, w)
        Mask logits from the decoder.
    img_size : int
        Encoder input size :math:`S`.
    input_size : tuple of int
        :math:`(H', W')`, the resized image inside the padded square.
    original_size : tuple of int
        :math:`(H, W)`.

    Returns
    -------
    Tensor, shape (B, C, H, W)
        Logits (threshold at ``sam.mask_threshold`` for masks).

    Examples
    --------
    >>> import torch
    >>> postprocess_masks(torch.zeros(1, 3, 16, 16), img_size=64, input_size=(48, 64),
    ...                   original_size=(30, 40)).shape
    torch.Size([1, 3, 30, 40])
    """
    if not isinstance(low_res_logits, torch.Tensor) or low_res_logits.ndim != 4:
        raise ValueError("low_res_logits must be a Tensor (B, C, h, w), got "
                         f"{getattr(low_res_logits, 'shape', type(low_res_logits).__name__)}")
    x = F.interpolate(low_res_logits, (img_size, img_size), mode="bilinear",
                      align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    return F.interpolate(x, tuple(int(v) for v in original_size), mode="bilinear",
                         align_corners=False)


# ----------------------------------------------------------------------------- prompts
def _as_float(value: Any, name: str) -> np.ndarray:
    arr = _to_numpy(value)
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return arr


def _as_labels(value: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = _to_numpy(value)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise ValueError(f"point_labels must be 0 (background) or 1 (foreground), got dtype "
                         f"{arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"point_labels must have shape {shape} (one label per point), got "
                         f"{arr.shape}")
    values = arr.astype(np.float64)
    bad = ~np.isin(values, (0.0, 1.0))
    if bad.any():
        raise ValueError("point_labels must be 0 (background) or 1 (foreground), got "
                         f"{arr[bad].ravel()[0]!r}")
    return values.astype(np.int32)


def _batch_size(sizes: dict[str, int]) -> int:
    distinct = set(sizes.values())
    if len(distinct) > 1:
        found = ", ".join(f"{k}: {v}" for k, v in sizes.items())
        raise ValueError(f"batched prompts must have the same batch size, got {found}")
    return distinct.pop() if distinct else 1


class SAMPredictor:
    r"""Encode an image once with a SAM model, then predict masks for prompts.

    The equivalent of segment-anything's ``SamPredictor`` for :class:`SAM` (Kirillov et al.
    2023, arXiv:2304.02643); preprocessing and postprocessing are described in the module
    docstring. Prompts are in the pixel frame of the image given to :meth:`set_image`
    (x = column, y = row).

    Parameters
    ----------
    sam : SAM
        The model (anything with ``img_size``, ``mask_threshold``, ``normalize_and_pad``,
        ``encode`` and ``decode`` as :class:`SAM` has them).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from mlimaging.models import create_model
    >>> _ = torch.manual_seed(0)
    >>> predictor = SAMPredictor(create_model("sam_tiny").eval())
    >>> predictor.set_image(np.zeros((40, 60), np.float32))
    >>> masks, iou, low_res = predictor.predict(points=[[30, 20]], point_labels=[1])
    >>> masks.shape, iou.shape, low_res.shape
    ((3, 40, 60), (3,), (3, 32, 32))
    """

    def __init__(self, sam: Any) -> None:
        missing = [a for a in ("img_size", "mask_threshold", "normalize_and_pad", "encode",
                               "decode") if not hasattr(sam, a)]
        if missing:
            raise ValueError(f"sam must be a SAM model, got {type(sam).__name__} without "
                             f"{', '.join(missing)}")
        self.sam = sam
        self.reset_image()

    # -------------------------------------------------------------------------- state
    def reset_image(self) -> None:
        """Forget the image set by :meth:`set_image`."""
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None

    @property
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` has encoded an image."""
        return self.features is not None

    @property
    def device(self) -> torch.device:
        """Device of the model."""
        mean = getattr(self.sam, "pixel_mean", None)
        if isinstance(mean, torch.Tensor):
            return mean.device
        return next(self.sam.parameters()).device

    @property
    def img_size(self) -> int:
        """Encoder input size :math:`S`."""
        return int(self.sam.img_size)

    # -------------------------------------------------------------------------- encode
    @torch.no_grad()
    def set_image(self, image: Any, *, window: tuple[float, float] | None = None) -> None:
        r"""Preprocess and encode ``image`` (once); later :meth:`predict` calls reuse it.

        Parameters
        ----------
        image : ndarray or Tensor, shape (H, W), (H, W, 1) or (H, W, 3)
            RGB uint8 is used as segment-anything uses it; anything else goes through
            :func:`to_sam_rgb` with ``window``.
        window : tuple of float, optional
            Intensity window for non-uint8 images (default: 0.5/99.5 percentiles).
        """
        rgb = to_sam_rgb(image, window=window)
        resized = resize_longest_side(rgb, self.img_size)
        x = torch.as_tensor(resized, device=self.device).permute(2, 0, 1)[None].float()
        x = self.sam.normalize_and_pad(x)
        features = self.sam.encode(x)
        self.reset_image()
        self.features = features
        self.original_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        self.input_size = (int(resized.shape[0]), int(resized.shape[1]))

    # -------------------------------------------------------------------------- predict
    def _low_res_size(self) -> int:
        assert self.features is not None
        return 4 * int(self.features.shape[-1])

    def _check_inside(self, xy: np.ndarray, name: str, what: str) -> None:
        assert self.original_size is not None
        h, w = self.original_size
        outside = (xy[..., 0] < 0) | (xy[..., 0] > w) | (xy[..., 1] < 0) | (xy[..., 1] > h)
        if outside.any():
            x, y = xy[outside][0]
            raise ValueError(f"{name}: {what} (x={x:g}, y={y:g}) lies outside the image, which "
                             f"has x (column) in [0, {w}] and y (row) in [0, {h}]")

    def predict(self, *, points: Any = None, point_labels: Any = None, boxes: Any = None,
                mask_input: Any = None, multimask: bool = True,
                return_logits: bool = False) -> tuple[Any, Any, Any]:
        r"""Masks for prompts on the image given to :meth:`set_image`.

        A single prompt set (points (N, 2), a box (4,), a mask (1, h, w) or (h, w)) gives
        NumPy arrays as ``SamPredictor.predict`` does: masks (C, H, W), IoU predictions
        (C,), low-resolution logits (C, h, w). A batch (points (B, N, 2), boxes (K, 4) or
        masks (B, 1, h, w)) gives torch tensors with a leading batch dimension, on the
        model's device, as ``SamPredictor.predict_torch`` does; the unbatched prompts of the
        call are then shared by every batch item (a point with each of K boxes).
        :math:`C` = 3 with ``multimask`` else 1; :math:`(H, W)` the image size;
        :math:`h = w = 4S/p` (256 for the official models).

        Parameters
        ----------
        points : array-like or Tensor, shape (N, 2) or (B, N, 2), optional
            Point prompts ``(x, y)`` in pixels of the image (x = column, y = row), inside
            :math:`[0, W] \times [0, H]`.
        point_labels : array-like or Tensor, shape (N,) or (B, N), optional
            1 foreground, 0 background; default all 1 (only with ``points``).
        boxes : array-like or Tensor, shape (4,) or (K, 4), optional
            Box prompts ``(x0, y0, x1, y1)`` in pixels, :math:`x_0 \le x_1`, :math:`y_0 \le
            y_1`, inside the image.
        mask_input : array-like or Tensor, shape (h, w), (1, h, w) or (B, 1, h, w), optional
            Low-resolution logits, e.g. one of a previous call's ``low_res_logits``.
        multimask : bool
            Three masks for an ambiguous prompt (True) or one (False).
        return_logits : bool
            Return the upsampled logits instead of thresholded masks.

        Returns
        -------
        masks : ndarray (C, H, W) or Tensor (B, C, H, W)
            Boolean masks (float logits with ``return_logits``).
        iou_predictions : ndarray (C,) or Tensor (B, C)
            The model's predicted IoU of each mask.
        low_res_logits : ndarray (C, h, w) or Tensor (B, C, h, w)
            Decoder logits before upsampling.
        """
        if not self.is_image_set:
            raise ValueError("image: no image is set; call set_image(image) before predict")
        if not isinstance(multimask, bool):
            raise ValueError(f"multimask must be True or False, got {multimask!r}")
        if not isinstance(return_logits, bool):
            raise ValueError(f"return_logits must be True or False, got {return_logits!r}")
        if points is None and point_labels is not None:
            raise ValueError("point_labels were given without points")
        if points is None and boxes is None and mask_input is None:
            raise ValueError("give at least one prompt: points, boxes or mask_input")
        sizes: dict[str, int] = {}
        pts = labels = bxs = masks_in = None
        if points is not None:
            pts = _as_float(points, "points")
            if pts.ndim not in (2, 3) or pts.shape[-1] != 2 or pts.shape[-2] < 1:
                raise ValueError("points must have shape (N, 2) (x, y) with N >= 1, or "
                                 f"(B, N, 2) for a batch of point sets, got {pts.shape}")
            self._check_inside(pts, "points", "point")
            if point_labels is None:
                labels = np.ones(pts.shape[:-1], dtype=np.int32)
            else:
                labels = _as_labels(point_labels, pts.shape[:-1])
            if pts.ndim == 3:
                sizes["points"] = pts.shape[0]
        if boxes is not None:
            bxs = _as_float(boxes, "boxes")
            if bxs.ndim not in (1, 2) or bxs.shape[-1] != 4 or (bxs.ndim == 2 and
                                                                 bxs.shape[0] < 1):
                raise ValueError("boxes must have shape (4,) (x0, y0, x1, y1) or (K, 4) for a "
                                 f"batch of K >= 1 boxes, got {bxs.shape}")
            flat = bxs.reshape(-1, 4)
            bad = (flat[:, 2] < flat[:, 0]) | (flat[:, 3] < flat[:, 1])
            if bad.any():
                raise ValueError("boxes must have x1 >= x0 and y1 >= y0 (x0, y0, x1, y1), got "
                                 f"{flat[bad][0].tolist()}")
            self._check_inside(flat.reshape(-1, 2, 2), "boxes", "box corner")
            if bxs.ndim == 2:
                sizes["boxes"] = bxs.shape[0]
        if mask_input is not None:
            masks_in = _as_float(mask_input, "mask_input")
            low = self._low_res_size()
            if masks_in.ndim == 2:
                masks_in = masks_in[None, None]
            elif masks_in.ndim == 3 and masks_in.shape[0] == 1:
                masks_in = masks_in[None]
            elif masks_in.ndim == 4 and masks_in.shape[1] == 1:
                sizes["mask_input"] = masks_in.shape[0]
            else:
                raise ValueError(f"mask_input must have shape ({low}, {low}), (1, {low}, {low}) "
                                 f"or (B, 1, {low}, {low}), got {masks_in.shape} (pass one "
                                 "mask of a multimask output, e.g. low_res_logits[[best]])")
            if masks_in.shape[-2:] != (low, low):
                raise ValueError(f"mask_input must be {low} x {low} (the decoder's "
                                 f"low-resolution size), got {masks_in.shape[-2:]}")
        batched = bool(sizes)
        b = _batch_size(sizes)
        t_pts = t_labels = t_boxes = t_masks = None
        dev = self.device
        assert self.original_size is not None
        if pts is not None:
            p = resize_coords(pts, self.original_size, self.img_size)
            if p.ndim == 2:
                p, labels = p[None], labels[None]
            t_pts = torch.as_tensor(p, dtype=torch.float, device=dev).expand(b, -1, -1)
            t_labels = torch.as_tensor(labels, dtype=torch.int, device=dev).expand(b, -1)
        if bxs is not None:
            r = resize_boxes(bxs, self.original_size, self.img_size)
            t_boxes = torch.as_tensor(r, dtype=torch.float, device=dev).expand(b, -1)
        if masks_in is not None:
            t_masks = torch.as_tensor(masks_in, dtype=torch.float, device=dev)
            t_masks = t_masks.expand(b, -1, -1, -1)
        masks, iou, low_res = self.predict_resized(
            points=t_pts, point_labels=t_labels, boxes=t_boxes, mask_input=t_masks,
            multimask=multimask, return_logits=return_logits)
        if batched:
            return masks, iou, low_res
        return masks[0].cpu().numpy(), iou[0].cpu().numpy(), low_res[0].cpu().numpy()

    @torch.no_grad()
    def predict_resized(self, *, points: torch.Tensor | None = None,
                        point_labels: torch.Tensor | None = None,
                        boxes: torch.Tensor | None = None,
                        mask_input: torch.Tensor | None = None, multimask: bool = True,
                        return_logits: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""Batched prompts already in the resized :math:`S`-frame (``SamPredictor.predict_torch``).

        No checks or coordinate mapping: points (B, N, 2), labels (B, N), boxes (B, 4),
        masks (B, 1, h, w) go to ``sam.decode`` as they are; the logits are postprocessed to
        the original image size.

        Returns
        -------
        tuple of Tensor
            Masks (B, C, H, W) (bool, or logits with ``return_logits``), IoU predictions
            (B, C), low-resolution logits (B, C, h, w).
        """
        if not self.is_image_set:
            raise ValueError("image: no image is set; call set_image(image) before predict")
        assert self.input_size is not None and self.original_size is not None
        low_res, iou = self.sam.decode(self.features, points=points, point_labels=point_labels,
                                       boxes=boxes, mask_input=mask_input, multimask=multimask)
        masks = postprocess_masks(low_res, img_size=self.img_size, input_size=self.input_size,
                                  original_size=self.original_size)
        if not return_logits:
            masks = masks > self.sam.mask_threshold
        return masks, iou, low_res

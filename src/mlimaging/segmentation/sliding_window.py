r"""Sliding-window inference: run a dense model on windows of a large image and blend them.

A segmentation network trained on patches (the *roi*) of size :math:`r` per axis is applied
to a whole image of size :math:`n` by tiling it with overlapping windows:

- **Placement.** Along each axis the windows start every
  :math:`t = \max(1, \lfloor r (1 - \text{overlap}) \rfloor)` pixels, at
  :math:`0, t, 2t, \dots`, as many as needed for the last one to reach the end, and the last
  start is moved back to :math:`n - r` so that the last window is aligned with the end of
  the image (one window when :math:`r = n`). All combinations of the per-axis starts are
  used.
- **Padding.** An axis shorter than the roi is zero-padded to :math:`r` (half before, the
  rest after) and the padding is cropped from the result.
- **Blending.** Each window's output is multiplied by an importance map :math:`w` and the
  sum over windows is divided by the sum of the maps,

  .. math::

      y(x) = \frac{\sum_{\text{windows } u \ni x} w(x - u)\, f_u(x - u)}
                  {\sum_{\text{windows } u \ni x} w(x - u)},

  with :math:`w = 1` (``blend="constant"``, a plain average of the overlapping predictions)
  or a separable Gaussian centred on the window (``blend="gaussian"``,
  :math:`w(z) = \prod_a \exp(-z_a^2 / 2\sigma_a^2)`, :math:`z_a` measured from the window
  centre :math:`(r_a - 1)/2`, :math:`\sigma_a = \text{sigma\_scale} \cdot r_a`), floored at
  :math:`10^{-3}` so that window borders keep a small positive weight. Predictions near a
  window border, where the network saw padding instead of context, then count less
  (Isensee et al. 2021, nnU-Net).

These are the conventions of MONAI's ``sliding_window_inference`` (``padding_mode=
"constant"``, ``cval=0``); the results agree with it to floating-point rounding.

References
----------
Isensee F., Jaeger P. F., Kohl S. A. A., Petersen J., Maier-Hein K. H. (2021). nnU-Net: a
self-configuring method for deep learning-based biomedical image segmentation. Nature
Methods 18:203-211. DOI 10.1038/s41592-020-01008-z.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["importance_map", "sliding_window_inference", "window_starts"]

#: Smallest weight of the Gaussian importance map (window borders keep this much weight).
MIN_WEIGHT = 1e-3
_BLENDS = ("gaussian", "constant")


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _per_axis(value: Any, ndim: int, name: str) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != ndim:
            raise ValueError(
                f"{name} must have {ndim} values (one per spatial axis), got {value!r}"
            )
        return tuple(value)
    return (value,) * ndim


def window_starts(size: int, roi: int, overlap: float = 0.25) -> list[int]:
    """Start indices of the windows along one axis of ``size`` pixels (``size >= roi``).

    Examples
    --------
    >>> window_starts(100, 32, 0.25)  # step 24, the last window aligned with the end
    [0, 24, 48, 68]
    >>> window_starts(32, 32, 0.5)
    [0]
    """
    size = _check_positive_int(size, "size")
    roi = _check_positive_int(roi, "roi")
    if roi > size:
        raise ValueError(f"roi must be at most size={size} (pad first), got {roi}")
    overlap = float(overlap)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    if roi == size:
        return [0]
    step = max(int(roi * (1 - overlap)), 1)
    count = math.ceil((size - roi) / step) + 1
    return [min(i * step, size - roi) for i in range(count)]


def importance_map(roi_size: Sequence[int], *, blend: str = "gaussian",
                   sigma_scale: float | Sequence[float] = 0.125,
                   dtype: torch.dtype = torch.float32,
                   device: torch.device | str | None = None) -> torch.Tensor:
    r"""The weight of each position of a window, shape ``roi_size`` (see the module doc).

    Examples
    --------
    >>> w = importance_map((5,), sigma_scale=0.2)  # sigma = 1: exp(-z^2 / 2), z = -2..2
    >>> [round(float(v), 4) for v in w]
    [0.1353, 0.6065, 1.0, 0.6065, 0.1353]
    >>> importance_map((2, 3), blend="constant")
    tensor([[1., 1., 1.],
            [1., 1., 1.]])
    """
    roi = tuple(_check_positive_int(r, "roi_size") for r in roi_size)
    if not roi:
        raise ValueError("roi_size must have at least one axis")
    if blend not in _BLENDS:
        raise ValueError(f"blend must be one of {_BLENDS}, got {blend!r}")
    if blend == "constant":
        return torch.ones(roi, dtype=dtype, device=device)
    scales = _per_axis(sigma_scale, len(roi), "sigma_scale")
    if not all(math.isfinite(float(s)) and float(s) > 0 for s in scales):
        raise ValueError(f"sigma_scale must be finite and > 0, got {sigma_scale!r}")
    # Computed in float32 whatever the output dtype (as MONAI does), then cast.
    weight = torch.ones((), dtype=torch.float32, device=device)
    for axis, (r, s) in enumerate(zip(roi, scales, strict=True)):
        z = torch.arange(r, dtype=torch.float32, device=device) - (r - 1) / 2.0
        g = torch.exp(-(z**2) / (2.0 * (float(s) * r) ** 2))
        weight = weight.unsqueeze(-1) * g if axis else g
    return weight.clamp(min=MIN_WEIGHT).to(dtype)


def sliding_window_inference(
    model: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    *,
    roi_size: int | Sequence[int],
    overlap: float = 0.25,
    blend: str = "gaussian",
    batch_size: int = 4,
    sigma_scale: float | Sequence[float] = 0.125,
    progress: bool = False,
) -> torch.Tensor:
    r"""Blend ``model`` over overlapping windows of ``image`` (2D or 3D; see the module doc).

    Parameters
    ----------
    model : callable
        Maps windows ``(N, C, *roi_size)`` to outputs ``(N, K, *roi_size)`` (e.g. logits).
        Call it in ``eval()`` mode and, for inference, under ``torch.no_grad()``: this
        function does neither, so it stays differentiable.
    image : torch.Tensor
        ``(B, C, H, W)`` or ``(B, C, D, H, W)`` floating point, any size (axes shorter than
        the roi are zero-padded).
    roi_size : int or sequence of int
        Window size, one value for all axes or one per spatial axis.
    overlap : float
        Fraction of a window shared with the next one along each axis, in [0, 1).
    blend : {"gaussian", "constant"}
        Importance map used to average the overlapping outputs.
    batch_size : int
        Windows per call of ``model`` (windows of all images of the batch are pooled).
    sigma_scale : float or sequence of float
        Gaussian :math:`\sigma` as a fraction of the roi size (per axis if a sequence).
    progress : bool
        Show a progress bar (rich) over the model calls.

    Returns
    -------
    torch.Tensor
        ``(B, K, *spatial)``, the blended outputs, same spatial size as ``image``.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Conv2d(1, 2, kernel_size=1)  # pointwise: windows change nothing
    >>> image = torch.rand(1, 1, 50, 37)
    >>> with torch.no_grad():
    ...     out = sliding_window_inference(model, image, roi_size=16)
    ...     ref = model(image)
    >>> out.shape, torch.allclose(out, ref, atol=1e-6)
    (torch.Size([1, 2, 50, 37]), True)
    """
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim not in (4, 5) or not image.is_floating_point() or 0 in image.shape:
        raise ValueError(
            "image must be a non-empty floating-point tensor (B, C, H, W) or (B, C, D, H, W), "
            f"got {image.dtype} of shape {tuple(image.shape)}"
        )
    ndim = image.ndim - 2
    roi = tuple(_check_positive_int(r, "roi_size") for r in _per_axis(roi_size, ndim, "roi_size"))
    overlap = float(overlap)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    if blend not in _BLENDS:
        raise ValueError(f"blend must be one of {_BLENDS}, got {blend!r}")
    batch_size = _check_positive_int(batch_size, "batch_size")

    size = tuple(image.shape[2:])
    before = [max(r - s, 0) // 2 for r, s in zip(roi, size, strict=True)]
    after = [max(r - s, 0) - b for r, s, b in zip(roi, size, before, strict=True)]
    if any(before) or any(after):
        pad = [p for axis in reversed(range(ndim)) for p in (before[axis], after[axis])]
        image = F.pad(image, pad, mode="constant", value=0.0)
    padded = tuple(image.shape[2:])

    starts = [window_starts(n, r, overlap) for n, r in zip(padded, roi, strict=True)]
    windows = [tuple(slice(s, s + r) for s, r in zip(corner, roi, strict=True))
               for corner in itertools.product(*starts)]
    weight = importance_map(roi, blend=blend, sigma_scale=sigma_scale, dtype=image.dtype,
                            device=image.device)
    total = torch.zeros(padded, dtype=image.dtype, device=image.device)
    for window in windows:
        total[window] += weight

    jobs = [(b, window) for b in range(image.shape[0]) for window in windows]
    chunks = range(0, len(jobs), batch_size)
    if progress:
        from rich.progress import track

        chunks = track(chunks, description="sliding window", total=len(chunks))
    out: torch.Tensor | None = None
    for first in chunks:
        chunk = jobs[first:first + batch_size]
        batch = torch.stack([image[(b, slice(None), *window)] for b, window in chunk])
        pred = model(batch)
        if not isinstance(pred, torch.Tensor) or pred.ndim != ndim + 2 \
                or tuple(pred.shape[2:]) != roi or pred.shape[0] != len(chunk):
            got = tuple(pred.shape) if isinstance(pred, torch.Tensor) else type(pred).__name__
            raise ValueError(
                f"model must map windows {tuple(batch.shape)} to (N, K, *roi_size) with "
                f"roi_size={roi}, got {got}"
            )
        if out is None:
            out = torch.zeros((image.shape[0], pred.shape[1], *padded), dtype=pred.dtype,
                              device=pred.device)
        for (b, window), p in zip(chunk, pred, strict=True):
            out[(b, slice(None), *window)] += p * weight
    assert out is not None
    out = out / total
    crop = tuple(slice(b, b + s) for b, s in zip(before, size, strict=True))
    return out[(slice(None), slice(None), *crop)]

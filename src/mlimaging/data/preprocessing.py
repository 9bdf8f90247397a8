r"""Image preprocessing for classifiers: value range, channels, size and polarity.

What ``mlimaging train classifier`` does to its training images and ``mlimaging predict``
to a user's image file, in one place so that both always agree:

- :func:`prepare_image`: one image array (any dtype, grayscale or RGB(A), ``(H, W)``,
  ``(H, W, C)`` or ``(C, H, W)``) as a ``(C, H, W)`` float32 tensor in [0, 1];
- :func:`resize_images`: the bilinear resize of ``(B, C, H, W)`` batches (antialiased when
  shrinking);
- :func:`background_level` / :func:`has_light_background`: the mean intensity of an
  image's border against its centre, to notice a dark digit on a light background when
  the model was trained on light digits on a dark background (MNIST's polarity);
- :func:`zscore`: the per-image intensity normalisation of the segmentation networks.

Examples
--------
>>> import numpy as np
>>> x = prepare_image(np.full((28, 28), 255, np.uint8), channels=1, size=(32, 32))
>>> tuple(x.shape), float(x.max())
((1, 32, 32), 1.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mlimaging.utils import as_numpy

__all__ = ["background_level", "has_light_background", "prepare_image", "resize_images", "zscore"]


def resize_images(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of a batch ``(B, C, H, W)`` in [0, 1] to ``size = (H', W')``.

    ``align_corners=False``; antialiased when an axis shrinks; clamped to [0, 1] after
    resampling. The input is returned unchanged when it already has that size.

    Raises
    ------
    ValueError
        If ``x`` is not 4-D or ``size`` is not two positive integers.

    Examples
    --------
    >>> resize_images(torch.ones(2, 1, 8, 8), (4, 6)).shape
    torch.Size([2, 1, 4, 6])
    """
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be two positive integers (H, W), got {size}")
    if x.ndim != 4:
        raise ValueError(f"x must be a batch (B, C, H, W), got shape {tuple(x.shape)}")
    if tuple(x.shape[-2:]) == size:
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink).clamp_(0, 1)


def prepare_image(array: Any, *, channels: int, size: Sequence[int], name: str = "image") -> torch.Tensor:
    r"""One image array as a classifier's input ``(channels, H, W)``, float32 in [0, 1].

    Values: ``uint8`` / ``uint16`` are divided by 255 / 65535, ``bool`` is 0/1, other arrays
    are min-max scaled to [0, 1] unless already inside it. Layout: ``(H, W)`` grayscale,
    ``(H, W, 3|4)`` RGB(A) (alpha dropped) or ``(C, H, W)`` with C in 1, 3. Grayscale to
    RGB repeats the channel; RGB to grayscale is :math:`0.299 R + 0.587 G + 0.114 B`
    (ITU-R BT.601). Then :func:`resize_images` to ``size``.

    Raises
    ------
    ValueError
        If the array is empty, not numeric, not a 2-D image, holds NaN or infinite
        values, or has a channel count that cannot become ``channels``; the message starts
        with ``name``.

    Examples
    --------
    >>> prepare_image(np.full((8, 8), 255, np.uint8), channels=1, size=(4, 4)).shape
    torch.Size([1, 4, 4])
    >>> prepare_image(np.array([[0.0, 10.0], [5.0, 10.0]]), channels=1, size=(2, 2))[0, 1].tolist()
    [0.5, 1.0]
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf" or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty numeric image, got dtype {arr.dtype} shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3):
        arr = np.moveaxis(arr[..., :3], -1, 0)
    elif arr.ndim == 2:
        arr = arr[None]
    elif not (arr.ndim == 3 and arr.shape[0] in (1, 3)):
        raise ValueError(f"{name}: expected a 2-D grayscale or RGB image, got an array of shape {arr.shape}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    else:
        x = arr.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: the image holds NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.shape[0] == 3 and channels == 1:
        t = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2])[None]
    elif t.shape[0] == 1 and channels == 3:
        t = t.expand(3, -1, -1)
    elif t.shape[0] != channels:
        raise ValueError(f"{name}: the model takes {channels} channels, the image has {t.shape[0]}")
    return resize_images(t[None], size)[0].contiguous()


def background_level(x: torch.Tensor) -> tuple[float, float]:
    r"""Mean intensity of the border of ``x`` and of its centre: ``(border, centre)``.

    ``x`` is one image ``(C, H, W)`` or ``(H, W)`` (channels are averaged). The border is
    the frame of width :math:`w = \max(1, \lfloor \min(H, W) / 8 \rfloor)` pixels, the
    centre everything inside it (the whole image when nothing is left inside).

    Examples
    --------
    >>> x = torch.zeros(1, 8, 8)
    >>> x[:, 2:6, 2:6] = 1.0
    >>> background_level(x)
    (0.0, 0.4444444477558136)
    """
    t = torch.as_tensor(x, dtype=torch.float32)
    if t.ndim == 3:
        t = t.mean(0)
    if t.ndim != 2 or t.numel() == 0:
        raise ValueError(f"x must be one image (C, H, W) or (H, W), got shape {tuple(torch.as_tensor(x).shape)}")
    h, w = t.shape
    b = max(1, min(h, w) // 8)
    inner = torch.zeros_like(t, dtype=torch.bool)
    inner[b:h - b, b:w - b] = True
    border = t[~inner]
    centre = t[inner] if inner.any() else t.reshape(-1)
    return float(border.mean()), float(centre.mean())


def has_light_background(x: torch.Tensor) -> bool:
    """Whether an image in [0, 1] looks like a dark object on a light background.

    True when the border (see :func:`background_level`) is brighter than 0.5 and brighter
    than the centre: the polarity opposite to MNIST's light digits on black.

    Examples
    --------
    >>> digit = torch.zeros(1, 28, 28)
    >>> digit[:, 8:20, 12:16] = 1.0
    >>> has_light_background(digit), has_light_background(1.0 - digit)
    (False, True)
    """
    border, centre = background_level(x)
    return border > 0.5 and border > centre


def zscore(image: Any) -> torch.Tensor:
    r"""Per-image z-score :math:`(I - \bar I) / \sigma_I` (all voxels and channels together).

    Accepts a NumPy array or tensor of any shape and returns a float32 tensor; a constant
    image gives zeros.

    Examples
    --------
    >>> zscore(torch.tensor([1.0, 2.0, 3.0]))
    tensor([-1.2247,  0.0000,  1.2247])
    """
    x = torch.as_tensor(as_numpy(image) if not isinstance(image, torch.Tensor) else image).float()
    std = x.std(unbiased=False)
    return (x - x.mean()) / std if float(std) > 0 else torch.zeros_like(x)

"""Image transforms for training: whole-pixel translation, shift augmentation and random
rotation/scaling/translation of digits on a larger canvas."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["ShiftAugment", "distort_digits", "translate"]


def translate(images: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    r"""Translate images by whole pixels, filling with zeros (a new tensor; the input is kept).

    .. math::

        y[\dots, i, j] = \begin{cases} x[\dots, i - d_y, j - d_x] & \text{if inside} \\
        0 & \text{otherwise} \end{cases}

    Parameters
    ----------
    images
        Tensor ``(..., H, W)``.
    dy, dx
        Shift down and right in pixels (negative: up, left).

    Examples
    --------
    >>> x = torch.arange(9.0).reshape(1, 3, 3)
    >>> translate(x, 0, 1)[0].tolist()
    [[0.0, 0.0, 1.0], [0.0, 3.0, 4.0], [0.0, 6.0, 7.0]]
    """
    if not isinstance(images, torch.Tensor) or images.ndim < 2:
        raise ValueError(f"images must be a tensor (..., H, W), got {type(images).__name__}")
    dy, dx = int(dy), int(dx)
    h, w = images.shape[-2:]
    out = torch.zeros_like(images)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    src_r, dst_r = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
    src_c, dst_c = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
    out[..., dst_r, dst_c] = images[..., src_r, src_c]
    return out


class ShiftAugment(Dataset):
    """Images randomly translated by up to ``max_shift`` pixels (data augmentation).

    Item ``i`` is ``(translate(images[i], dy, dx), targets[i])`` with ``dy, dx`` drawn
    uniformly from ``{-max_shift, ..., max_shift}`` by torch's global generator, which
    :func:`~mlimaging.training.fit` seeds: a seeded run is repeatable (``num_workers=0``).

    Examples
    --------
    >>> ds = ShiftAugment(torch.ones(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), max_shift=2)
    >>> ds[0][0].shape, len(ds)
    (torch.Size([1, 8, 8]), 4)
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, *, max_shift: int) -> None:
        if len(images) != len(targets):
            raise ValueError(f"images ({len(images)}) and targets ({len(targets)}) must have the same length")
        if int(max_shift) < 0:
            raise ValueError(f"max_shift must be >= 0, got {max_shift}")
        self.images, self.targets, self.max_shift = images, targets, int(max_shift)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.max_shift
        dy, dx = torch.randint(-s, s + 1, (2,)).tolist() if s else (0, 0)
        return translate(self.images[i], dy, dx), self.targets[i]


def distort_digits(images: torch.Tensor, *, canvas: int, max_angle: float = 45.0,
                   scale: tuple[float, float] = (0.8, 1.2), shift: float = 0.15,
                   seed: int = 0) -> torch.Tensor:
    r"""Place digits ``(N, 1, h, w)`` on a ``canvas`` x ``canvas`` field, randomly rotated
    (uniform in :math:`\pm` ``max_angle`` degrees), scaled (uniform in ``scale``) and
    translated (uniform in :math:`\pm` ``shift``, normalised units: 1 = half the canvas).

    Each output is ``grid_sample`` of the zero-padded digit at :math:`R(\alpha) p / z + t`
    (normalised coordinates; the same seed gives the same distortions).

    Examples
    --------
    >>> import torch
    >>> distort_digits(torch.rand(5, 1, 28, 28), canvas=36, seed=0).shape
    torch.Size([5, 1, 36, 36])
    """
    n, _, h, w = images.shape
    if canvas < max(h, w):
        raise ValueError(f"canvas must be at least the digit size {max(h, w)}, got {canvas}")
    g = torch.Generator().manual_seed(seed)
    top, left = (canvas - h) // 2, (canvas - w) // 2
    x = F.pad(images, (left, canvas - w - left, top, canvas - h - top))
    alpha = (torch.rand(n, generator=g) * 2 - 1) * math.radians(max_angle)
    zoom = scale[0] + torch.rand(n, generator=g) * (scale[1] - scale[0])
    t = (torch.rand(n, 2, generator=g) * 2 - 1) * shift
    c, s = torch.cos(alpha) / zoom, torch.sin(alpha) / zoom
    theta = torch.stack([torch.stack([c, -s, t[:, 0]], 1), torch.stack([s, c, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)

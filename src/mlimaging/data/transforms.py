"""Image transforms for training: whole-pixel translation and shift augmentation."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

__all__ = ["ShiftAugment", "translate"]


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

"""Training samples for dense segmentation networks: z-scored images, random or centred crops."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mlimaging.data.preprocessing import zscore

__all__ = ["SegmentationSamples"]


class SegmentationSamples(Dataset):
    """``(zscore(image), mask)`` pairs of a segmentation dataset, optionally cropped to ``roi_size``.

    Crops are taken at a random position (from torch's global generator, which
    :func:`~mlimaging.training.fit` seeds) or, with ``center=True``, in the middle; axes
    shorter than the window are padded (image 0 after z-scoring, i.e. the mean; mask 0).
    With probability ``foreground`` a random crop is instead centred (as far as the image
    allows) on a random voxel of one foreground class drawn uniformly among those present,
    so that small structures appear in enough crops: the oversampling of nnU-Net
    (Isensee et al. 2021, Nature Methods 18:203-211).

    Examples
    --------
    >>> from mlimaging.data import PhantomDataset
    >>> image, mask = SegmentationSamples(PhantomDataset(2, (32, 40)), roi_size=(16, 48), center=True)[0]
    >>> tuple(image.shape), tuple(mask.shape)
    ((1, 16, 48), (16, 48))
    """

    def __init__(self, base: Dataset, *, roi_size: Sequence[int] | None = None, center: bool = False,
                 foreground: float = 0.0) -> None:
        if not 0.0 <= float(foreground) <= 1.0:
            raise ValueError(f"foreground must be a probability in [0, 1], got {foreground!r}")
        self.base = base
        self.roi_size = None if roi_size is None else tuple(int(r) for r in roi_size)
        self.center = bool(center)
        self.foreground = float(foreground)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.base[i]
        image = zscore(image)
        mask = torch.as_tensor(mask).long()
        if self.roi_size is None:
            return image, mask
        if len(self.roi_size) != mask.ndim:
            raise ValueError(f"roi_size must have {mask.ndim} values (one per spatial axis), got {self.roi_size}")
        pad: list[int] = []
        for s, r in zip(reversed(mask.shape), reversed(self.roi_size), strict=True):
            pad += [0, max(r - s, 0)]
        if any(pad):
            image, mask = F.pad(image, pad), F.pad(mask, pad)
        classes = torch.unique(mask)
        classes = classes[classes > 0]
        if self.center:
            start = [(s - r) // 2 for s, r in zip(mask.shape, self.roi_size, strict=True)]
        elif self.foreground > 0 and len(classes) and float(torch.rand(())) < self.foreground:
            k = classes[int(torch.randint(0, len(classes), ()))]
            voxels = torch.nonzero(mask == k)
            centre = voxels[int(torch.randint(0, len(voxels), ()))].tolist()
            start = [min(max(c - r // 2, 0), s - r) for c, s, r in zip(centre, mask.shape, self.roi_size, strict=True)]
        else:
            start = [int(torch.randint(0, s - r + 1, ())) for s, r in zip(mask.shape, self.roi_size, strict=True)]
        window = tuple(slice(a, a + r) for a, r in zip(start, self.roi_size, strict=True))
        return image[(slice(None), *window)], mask[window]

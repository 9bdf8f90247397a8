"""The patch-classifier pipeline: 17 x 17 patches of z-scored 2D images and their centre labels.

:func:`patch_dataset` builds the training set of a :class:`~mlimaging.models.PatchCNN`;
:func:`patch_predict` labels every pixel of an image from the patch centred on it, which
:meth:`~mlimaging.models.FCN.from_patch_cnn` with ``pad=True`` computes in one dense pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.data.preprocessing import zscore
from mlimaging.utils import as_numpy

__all__ = ["patch_dataset", "patch_predict"]


def _patch_windows(image: Any) -> torch.Tensor:
    """The 17 x 17 patch centred on each pixel of a z-scored 2D image, reflect-padded by 8:
    ``(H * W, 17, 17)`` in C order."""
    from mlimaging.models.patch_cnn import HALF, PATCH_SIZE

    x = F.pad(zscore(image).reshape(1, 1, *as_numpy(image).shape[-2:]), (HALF,) * 4, mode="reflect")
    return x[0, 0].unfold(0, PATCH_SIZE, 1).unfold(1, PATCH_SIZE, 1).reshape(-1, PATCH_SIZE, PATCH_SIZE)


def patch_dataset(images: Sequence[Any], labels: Sequence[Any], *, per_class: int, seed: int) -> TensorDataset:
    """17 x 17 patches of z-scored 2D images (reflect-padded by 8) and their centre labels.

    Up to ``per_class`` centres per class and image, drawn without replacement by
    ``np.random.default_rng(seed)``, so that small structures are not drowned by background.
    """
    rng = np.random.default_rng(seed)
    patches, targets = [], []
    for image, lab in zip(images, labels, strict=True):
        lab = as_numpy(lab).reshape(-1)
        windows = _patch_windows(image)
        for k in np.unique(lab):
            idx = np.flatnonzero(lab == k)
            pick = rng.choice(idx, size=min(per_class, idx.size), replace=False)
            patches.append(windows[torch.from_numpy(pick)])
            targets.append(torch.full((pick.size,), int(k), dtype=torch.long))
    return TensorDataset(torch.cat(patches)[:, None].contiguous(), torch.cat(targets))


def patch_predict(model: nn.Module, image: Any, *, batch_size: int = 1024) -> np.ndarray:
    """Label map of a 2D image by a patch classifier, patch by patch (batches of patches).

    Each pixel is classified from the 17 x 17 patch centred on it in the z-scored image,
    reflect-padded by 8: what :meth:`~mlimaging.models.FCN.from_patch_cnn` with
    ``pad=True`` computes in one dense pass.
    """
    shape = as_numpy(image).shape[-2:]
    windows = _patch_windows(image)[:, None]
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(windows[i:i + batch_size]).argmax(1) for i in range(0, len(windows), batch_size)])
    return out.reshape(shape).numpy().astype(np.int64)

r"""Classical label maps from the known intensities of the structures (the phantom protocol).

- :data:`BASE_KNOBS`: the base test set of the phantoms (noise, intensity inhomogeneity,
  partial volume and shape variability).
- :func:`nominal_intensities`: the clean intensity of each label, what a user knows of the
  imaging protocol.
- :func:`threshold_labels`, :func:`otsu_labels`, :func:`region_growing_labels`: label maps
  by fixed thresholds, multi-level Otsu and one region grown per structure.

Examples
--------
>>> import numpy as np
>>> from mlimaging.data import make_phantom
>>> image, labels = make_phantom((64, 64), seed=0)
>>> lut = nominal_intensities((64, 64), n_structures=3)
>>> [round(v, 2) for v in lut]
[0.0, 0.3, 0.7, 1.0]
>>> bool(np.array_equal(threshold_labels(image, lut), labels))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from mlimaging.utils import as_numpy

__all__ = ["BASE_KNOBS", "nominal_intensities", "otsu_labels", "region_growing_labels", "threshold_labels"]

#: The base test set: noise, intensity inhomogeneity, partial volume and shape variability.
BASE_KNOBS: dict[str, float] = {"noise": 0.08, "bias_field": 0.3, "partial_volume": 1.0, "variability": 0.5}


def nominal_intensities(shape: Sequence[int], *, n_structures: int = 3, contrast: float = 1.0) -> list[float]:
    """Clean intensity of each label (background first) of :func:`~mlimaging.data.make_phantom`:
    what a user knows of the imaging protocol."""
    from mlimaging.data import make_phantom

    image, labels = make_phantom(tuple(shape), seed=0, n_structures=n_structures, contrast=contrast)
    return [float(image[labels == k].mean()) for k in range(n_structures + 1)]


def _intervals_to_labels(intervals: np.ndarray, intensities: Sequence[float]) -> np.ndarray:
    order = np.argsort(np.asarray(intensities))
    return order[intervals].astype(np.int64)


def threshold_labels(image: Any, intensities: Sequence[float]) -> np.ndarray:
    """Labels by fixed thresholds halfway between consecutive nominal intensities."""
    from mlimaging.segmentation import multi_threshold

    lut = np.sort(np.asarray(intensities, dtype=np.float64))
    return _intervals_to_labels(multi_threshold(image, (lut[:-1] + lut[1:]) / 2), intensities)


def otsu_labels(image: Any, intensities: Sequence[float], *, bins: int = 256) -> np.ndarray:
    """Labels by the multi-level Otsu thresholds of the image (one class per structure)."""
    from mlimaging.segmentation import multi_otsu_thresholds, multi_threshold

    thresholds = multi_otsu_thresholds(image, len(intensities), bins=bins)
    return _intervals_to_labels(multi_threshold(image, thresholds), intensities)


def region_growing_labels(image: Any, reference: Any, intensities: Sequence[float]) -> np.ndarray:
    r"""One region grown per structure from one seed, painted in label order.

    The seed of structure :math:`k` is its voxel deepest inside it (largest distance to
    its border, the reference gives the anatomy a user would click on) among those within
    the bounds :math:`I_k \pm \tfrac12 \min_{j \ne k} |I_k - I_j|`; a structure with no
    voxel in bounds stays empty.
    """
    from mlimaging.segmentation import region_growing

    image, reference = as_numpy(image), as_numpy(reference)
    lut = np.asarray(intensities, dtype=np.float64)
    out = np.zeros(reference.shape, dtype=np.int64)
    for k in range(1, len(lut)):
        half = 0.5 * np.min(np.abs(np.delete(lut, k) - lut[k]))
        lower, upper = float(lut[k] - half), float(lut[k] + half)
        candidates = (reference == k) & (image >= np.float32(lower)) & (image <= np.float32(upper))
        if not candidates.any():
            continue
        depth = ndimage.distance_transform_edt(reference == k)
        seed = np.unravel_index(int(np.argmax(np.where(candidates, depth, -1.0))), reference.shape)
        out[region_growing(image, tuple(int(s) for s in seed), lower=lower, upper=upper)] = k
    return out

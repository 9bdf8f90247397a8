"""Input checks shared by the metrics (private)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlimaging.utils import as_numpy, check_spacing

__all__ = ["as_binary_pair", "as_binary", "as_label_map", "image_diagonal", "check_spacing"]


def as_binary(mask: Any, *, name: str) -> np.ndarray:
    """Return ``mask`` as a NumPy bool array; values must be 0/1 (or bool), no NaN.

    Raises ``ValueError`` naming ``name`` otherwise.
    """
    arr = as_numpy(mask)
    if arr.dtype == bool:
        return arr
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array (a binary mask), got a scalar")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN; expected a binary mask")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a numeric or bool binary mask, got dtype {arr.dtype}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = np.unique(arr[~np.isin(arr, (0, 1))])[:5]
        raise ValueError(f"{name} must be binary (0/1 or bool), found values {bad.tolist()}")
    return arr.astype(bool)


def as_binary_pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate two binary masks of the same shape and return them as bool arrays."""
    p = as_binary(pred, name="pred")
    t = as_binary(target, name="target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got pred {p.shape} and target {t.shape}")
    return p, t


def image_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    r"""Length of the image diagonal in physical units, :math:`\sqrt{\sum_i (n_i s_i)^2}`.

    The default distance given to a structure present in only one of two masks.
    """
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True))))


def as_label_map(x: Any, name: str) -> np.ndarray:
    """``x`` as a NumPy integer label map (values >= 0); ValueError naming ``name`` otherwise."""
    arr = as_numpy(x)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be a label map (an array), got a scalar")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected a label map")
    if arr.dtype == bool:
        return arr.view(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be an integer label map, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN; expected an integer label map")
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(f"{name} must be an integer label map, found non-integer values")
        arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError(f"{name} must hold labels >= 0 (0 = background), found {int(arr.min())}")
    return arr

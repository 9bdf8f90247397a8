"""Small helpers shared by several areas (validation, seeding, array conversion)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["as_numpy", "check_spacing", "seed_everything", "package_versions"]


def as_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a NumPy array (tensors are detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_spacing(
    spacing: float | Sequence[float] | None, ndim: int, *, name: str = "spacing"
) -> tuple[float, ...]:
    """Validate a voxel spacing and return it as one positive float per axis.

    ``None`` means 1.0 on every axis; a scalar is repeated on every axis.

    Raises
    ------
    ValueError
        If the spacing has the wrong length, or a value that is not finite and positive.

    Examples
    --------
    >>> check_spacing(None, 3)
    (1.0, 1.0, 1.0)
    >>> check_spacing((0.8, 0.8, 2.5), 3)
    (0.8, 0.8, 2.5)
    """
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        values = (float(spacing),) * ndim  # type: ignore[arg-type]
    else:
        values = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(values) != ndim:
        raise ValueError(f"{name} must have one value per spatial axis ({ndim}), got {len(values)}: {values}")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} values must be finite and positive, got {values}")
    return values


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch and return a ``torch.Generator`` seeded with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def package_versions(names: Sequence[str] = ("mlimaging", "torch", "numpy", "scipy", "scikit-image",
                                             "scikit-learn", "nibabel", "pydicom", "matplotlib")) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` for missing ones)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    return out

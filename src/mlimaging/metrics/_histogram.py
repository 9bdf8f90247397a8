"""Joint intensity histograms and their entropies (private helpers of ``similarity``).

Two estimators of the joint distribution of two images' intensities:

* :func:`hard_joint_histogram` (NumPy): exact counts in equally spaced bins, the
  same binning as ``np.histogramdd`` (and so as scikit-image's NMI).
* :func:`parzen_joint_histogram` (torch): a differentiable Parzen-window estimate
  with a Gaussian kernel; it tends to the hard counts as the kernel narrows.

Both feed :func:`entropies`, the one definition of the entropies in nats.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_bins",
    "check_value_range",
    "entropies",
    "hard_joint_histogram",
    "parzen_joint_histogram",
]

Range = tuple[float, float]


def check_bins(bins: Any) -> int:
    """Return ``bins`` as an int; it must be an integer >= 2 (not a bool)."""
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or int(bins) < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def check_value_range(value_range: Any) -> tuple[Range | None, Range | None]:
    """Parse ``value_range``: None, ``(lo, hi)`` for both images or ``((lo_x, hi_x), (lo_y, hi_y))``.

    Returns one ``(lo, hi)`` (or None, meaning the image's own [min, max]) per image.
    """
    if value_range is None:
        return None, None
    try:
        arr = np.asarray(value_range, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"value_range must be (lo, hi) or ((lo_x, hi_x), (lo_y, hi_y)), got {value_range!r}"
        ) from err
    if arr.shape == (2,):
        arr = np.stack([arr, arr])
    if arr.shape != (2, 2):
        raise ValueError(
            f"value_range must be (lo, hi) or ((lo_x, hi_x), (lo_y, hi_y)), got {value_range!r}"
        )
    if not np.isfinite(arr).all() or not (arr[:, 0] < arr[:, 1]).all():
        raise ValueError(f"value_range needs finite bounds with lo < hi, got {value_range!r}")
    return (float(arr[0, 0]), float(arr[0, 1])), (float(arr[1, 0]), float(arr[1, 1]))


def _own_range(lo: float, hi: float) -> Range:
    """A constant image gets the range [v - 0.5, v + 0.5], as ``np.histogramdd`` does."""
    return (lo - 0.5, hi + 0.5) if lo == hi else (lo, hi)


def hard_joint_histogram(
    a: np.ndarray, b: np.ndarray, bins: int, ranges: tuple[Range | None, Range | None]
) -> np.ndarray:
    """Joint counts of ``(a, b)`` in ``bins x bins`` equally spaced bins (float64).

    Without a range, the bins span each image's [min, max], exactly as
    ``np.histogramdd`` with an integer ``bins`` (the last bin is closed). With a
    range, intensities are first clipped into it, so that every voxel is counted.
    """
    a = a.reshape(-1)
    b = b.reshape(-1)
    ra, rb = ranges
    if ra is not None:
        a = np.clip(a, *ra)
    if rb is not None:
        b = np.clip(b, *rb)
    rng = None
    if ra is not None or rb is not None:
        rng = [
            ra if ra is not None else _own_range(float(a.min()), float(a.max())),
            rb if rb is not None else _own_range(float(b.min()), float(b.max())),
        ]
    hist, _ = np.histogramdd([a, b], bins=bins, range=rng)
    return hist


def _parzen_weights(v: torch.Tensor, rng: Range | None, bins: int, sigma: float) -> torch.Tensor:
    """Soft bin memberships, shape ``(N, bins)``, each row summing to 1."""
    if rng is None:
        detached = v.detach()
        lo, hi = _own_range(float(detached.min()), float(detached.max()))
    else:
        lo, hi = rng
        v = v.clamp(lo, hi)
    width = (hi - lo) / bins
    centres = lo + (torch.arange(bins, dtype=v.dtype, device=v.device) + 0.5) * width
    z = (v[:, None] - centres[None, :]) / (sigma * width)
    # softmax == Gaussian weights normalised per voxel, without underflow for small sigma
    return torch.softmax(-0.5 * z * z, dim=1)


def parzen_joint_histogram(
    x: torch.Tensor,
    y: torch.Tensor,
    bins: int,
    ranges: tuple[Range | None, Range | None],
    sigma: float,
) -> torch.Tensor:
    """Differentiable Parzen-window joint histogram, shape ``(bins, bins)``, summing to N.

    Each voxel spreads a unit mass over the bins with Gaussian weights centred on
    its intensity, of standard deviation ``sigma`` bin widths, renormalised to sum
    to one. The bin edges are constants (an image's own [min, max] is detached).
    Memory is ``O(N * bins)``.
    """
    wx = _parzen_weights(x.reshape(-1), ranges[0], bins, sigma)
    wy = _parzen_weights(y.reshape(-1), ranges[1], bins, sigma)
    return wx.T @ wy


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """:math:`-\\sum p \\log p` with :math:`0 \\log 0 = 0` (finite gradient at p = 0)."""
    safe = torch.where(p > 0, p, torch.ones_like(p))
    return -(p * torch.log(safe)).sum()


def entropies(joint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Marginal and joint entropies ``(H(X), H(Y), H(X, Y))`` in nats of a joint histogram."""
    p = joint / joint.sum()
    return _entropy(p.sum(dim=1)), _entropy(p.sum(dim=0)), _entropy(p)

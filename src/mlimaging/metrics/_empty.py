"""The empty-mask policy of every segmentation metric, in one place (private).

A structure that is missed (empty prediction) or hallucinated (empty reference) must make
an average worse, never vanish from it as a NaN that gets skipped:

=====================  ============================  ===================================
masks                  overlap (Dice, Jaccard, ...)  distances (HD, HD95, ASSD, ...)
=====================  ============================  ===================================
both empty             ``zero_division`` (1.0)       0.0
exactly one empty      0.0                           ``empty_distance`` (image diagonal)
neither empty          the formula                   the formula
=====================  ============================  ===================================

:mod:`~mlimaging.metrics.overlap`, :mod:`~mlimaging.metrics.surface`,
:func:`~mlimaging.metrics.evaluate_segmentation` and :func:`~mlimaging.metrics.mean_dice`
all take their empty cases from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from mlimaging.metrics._validation import image_diagonal

__all__ = ["check_empty_distance", "empty_distance_value", "empty_overlap"]


def empty_overlap(n_pred: int, n_target: int, zero_division: float = 1.0) -> float | None:
    """Overlap score by the policy: ``zero_division`` when both masks are empty, 0.0 when
    exactly one is, ``None`` when neither is (then the formula applies)."""
    if n_pred == 0 and n_target == 0:
        return float(zero_division)
    if n_pred == 0 or n_target == 0:
        return 0.0
    return None


def check_empty_distance(empty_distance: float | None) -> float | None:
    """Validate ``empty_distance``: ``None`` (the image diagonal), or a number >= 0, NaN or inf."""
    if empty_distance is None:
        return None
    try:
        value = float(empty_distance)
    except (TypeError, ValueError):
        raise ValueError(
            f"empty_distance must be a number (or None for the image diagonal), got {empty_distance!r}"
        ) from None
    if value < 0 or value == -math.inf:
        raise ValueError(f"empty_distance must be >= 0, nan or inf, got {value}")
    return value


def empty_distance_value(
    n_pred: int,
    n_target: int,
    shape: Sequence[int],
    spacing: Sequence[float],
    empty_distance: float | None,
) -> float | None:
    """Distance by the policy: 0.0 when both masks are empty, ``empty_distance`` (``None``:
    the image diagonal in the units of ``spacing``) when exactly one is, ``None`` when
    neither is (then the formula applies). ``empty_distance`` must be checked already."""
    if n_pred == 0 and n_target == 0:
        return 0.0
    if n_pred == 0 or n_target == 0:
        return image_diagonal(shape, spacing) if empty_distance is None else float(empty_distance)
    return None

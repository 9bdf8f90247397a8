r"""Overlap metrics between two binary masks: Dice, Jaccard and volume similarity.

With :math:`A` the predicted and :math:`B` the reference (target) foreground,

.. math::

    \text{Dice} = \frac{2|A \cap B|}{|A| + |B|}, \qquad
    \text{Jaccard} = \frac{|A \cap B|}{|A \cup B|}, \qquad
    \text{VS} = 1 - \frac{\big||A| - |B|\big|}{|A| + |B|}.

Empty-mask policy (the same for the three metrics): when **both** masks are empty the
result is ``zero_division`` (default 1.0: nothing to find and nothing found is a perfect
answer); when exactly one is empty the formulas give 0.0.

Masks are NumPy arrays or torch tensors of any shape (2D or 3D images in practice) with
values 0/1 or bool; the result is a Python ``float``.

References
----------
Dice L. R. (1945). Measures of the amount of ecologic association between species.
Ecology 26(3):297-302. DOI 10.2307/1932409.

Taha A. A., Hanbury A. (2015). Metrics for evaluating 3D medical image segmentation:
analysis, selection, and tool. BMC Medical Imaging 15:29. DOI 10.1186/s12880-015-0068-x.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlimaging.metrics._validation import as_binary_pair

__all__ = ["dice", "jaccard", "volume_similarity"]


def overlap_counts(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int, int]:
    """``(|A ∩ B|, |A|, |B|, N)`` for two bool arrays of the same shape (not validated)."""
    inter = int(np.count_nonzero(pred & target))
    return inter, int(np.count_nonzero(pred)), int(np.count_nonzero(target)), int(pred.size)


def dice_from_counts(inter: int, n_pred: int, n_target: int, zero_division: float = 1.0) -> float:
    """Dice from ``|A ∩ B|``, ``|A|``, ``|B|`` (``zero_division`` when both are empty)."""
    den = n_pred + n_target
    return float(zero_division) if den == 0 else 2.0 * inter / den


def jaccard_from_counts(inter: int, n_pred: int, n_target: int, zero_division: float = 1.0) -> float:
    """Jaccard from ``|A ∩ B|``, ``|A|``, ``|B|`` (``zero_division`` when both are empty)."""
    union = n_pred + n_target - inter
    return float(zero_division) if union == 0 else inter / union


def volume_similarity_from_counts(n_pred: int, n_target: int, zero_division: float = 1.0) -> float:
    r"""Volume similarity from ``|A|``, ``|B|`` (``zero_division`` when both are empty).

    Computed as :math:`2\min(|A|, |B|) / (|A| + |B|)`, equal to
    :math:`1 - ||A| - |B|| / (|A| + |B|)` and free of cancellation error.
    """
    den = n_pred + n_target
    return float(zero_division) if den == 0 else 2.0 * min(n_pred, n_target) / den


def dice(pred: Any, target: Any, *, zero_division: float = 1.0) -> float:
    r"""Dice similarity coefficient (Sørensen-Dice, equal to the F1 score of the voxels).

    .. math::

        \text{Dice}(A, B) = \frac{2|A \cap B|}{|A| + |B|} = \frac{2J}{1 + J}

    Parameters
    ----------
    pred, target
        Binary masks of the same shape (0/1 or bool; NumPy or torch).
    zero_division
        Value returned when both masks are empty (default 1.0). If exactly one is empty
        the Dice is 0.0.

    Returns
    -------
    float
        In ``[0, 1]``.

    Notes
    -----
    MONAI's ``DiceMetric``/``compute_dice`` return NaN for an empty target by default
    (``ignore_empty=True``) and 1.0 with ``ignore_empty=False``; here an empty target is
    NaN-free: 1.0 if the prediction is also empty, else 0.0. MedPy's ``dc`` returns NaN
    (with a warning) for two empty masks.

    Raises
    ------
    ValueError
        If the shapes differ, or a mask holds NaN or values other than 0/1.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((4, 4), dtype=bool); a[:2, :] = True        # 8 voxels
    >>> b = np.zeros((4, 4), dtype=bool); b[:2, :3] = True        # 6 voxels, all inside a
    >>> round(dice(a, b), 6)  # 2 * 6 / (8 + 6)
    0.857143
    >>> dice(np.zeros((2, 2)), np.zeros((2, 2)))
    1.0
    """
    p, t = as_binary_pair(pred, target)
    inter, n_p, n_t, _ = overlap_counts(p, t)
    return dice_from_counts(inter, n_p, n_t, zero_division)


def jaccard(pred: Any, target: Any, *, zero_division: float = 1.0) -> float:
    r"""Jaccard index (intersection over union, IoU).

    .. math::

        J(A, B) = \frac{|A \cap B|}{|A \cup B|} = \frac{\text{Dice}}{2 - \text{Dice}}

    Parameters
    ----------
    pred, target
        Binary masks of the same shape (0/1 or bool; NumPy or torch).
    zero_division
        Value returned when both masks are empty (default 1.0). If exactly one is empty
        the index is 0.0.

    Examples
    --------
    >>> jaccard([[1, 1], [0, 0]], [[1, 0], [0, 0]])  # 1 / 2
    0.5
    """
    p, t = as_binary_pair(pred, target)
    inter, n_p, n_t, _ = overlap_counts(p, t)
    return jaccard_from_counts(inter, n_p, n_t, zero_division)


def volume_similarity(pred: Any, target: Any, *, zero_division: float = 1.0) -> float:
    r"""Volume similarity (VS) of Taha & Hanbury (2015): agreement of the two volumes only.

    .. math::

        \text{VS}(A, B) = 1 - \frac{\big||A| - |B|\big|}{|A| + |B|}
                        = 1 - \frac{|FN - FP|}{2TP + FP + FN}

    It ignores where the voxels are: two disjoint masks of equal size have VS = 1.

    Parameters
    ----------
    pred, target
        Binary masks of the same shape (0/1 or bool; NumPy or torch).
    zero_division
        Value returned when both masks are empty (default 1.0). If exactly one is empty
        VS is 0.0.

    References
    ----------
    Taha A. A., Hanbury A. (2015). Metrics for evaluating 3D medical image segmentation:
    analysis, selection, and tool. BMC Medical Imaging 15:29. DOI 10.1186/s12880-015-0068-x.

    Examples
    --------
    >>> volume_similarity([1, 1, 1, 0], [0, 0, 0, 1])  # 1 - |3 - 1| / 4
    0.5
    """
    p, t = as_binary_pair(pred, target)
    _, n_p, n_t, _ = overlap_counts(p, t)
    return volume_similarity_from_counts(n_p, n_t, zero_division)

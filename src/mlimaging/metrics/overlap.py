r"""Overlap metrics between two binary masks: Dice, Jaccard and volume similarity.

With :math:`A` the predicted and :math:`B` the reference (target) foreground,

.. math::

    \text{Dice} = \frac{2|A \cap B|}{|A| + |B|}, \qquad
    \text{Jaccard} = \frac{|A \cap B|}{|A \cup B|}, \qquad
    \text{VS} = 1 - \frac{\big||A| - |B|\big|}{|A| + |B|}.

Empty-mask policy (the same for every overlap metric, kept in ``metrics/_empty.py``):
when **both** masks are empty the result is ``zero_division`` (default 1.0: nothing to
find and nothing found is a perfect answer); when exactly one is empty it is 0.0.

:func:`mean_dice` averages the Dice of the labels of two label maps (the one mean-Dice
helper of the toolkit: training logs, experiments and benchmarks use it).

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

from mlimaging.metrics._empty import empty_overlap
from mlimaging.metrics._validation import as_binary_pair, as_label_map
from mlimaging.utils import as_numpy

__all__ = ["dice", "jaccard", "mean_dice", "volume_similarity"]


def overlap_counts(pred: np.ndarray, target: np.ndarray) -> tuple[int, int, int, int]:
    """``(|A ∩ B|, |A|, |B|, N)`` for two bool arrays of the same shape (not validated)."""
    inter = int(np.count_nonzero(pred & target))
    return inter, int(np.count_nonzero(pred)), int(np.count_nonzero(target)), int(pred.size)


def dice_from_counts(inter: int, n_pred: int, n_target: int, zero_division: float = 1.0) -> float:
    """Dice from ``|A ∩ B|``, ``|A|``, ``|B|`` (``zero_division`` when both are empty)."""
    policy = empty_overlap(n_pred, n_target, zero_division)
    return 2.0 * inter / (n_pred + n_target) if policy is None else policy


def jaccard_from_counts(inter: int, n_pred: int, n_target: int, zero_division: float = 1.0) -> float:
    """Jaccard from ``|A ∩ B|``, ``|A|``, ``|B|`` (``zero_division`` when both are empty)."""
    policy = empty_overlap(n_pred, n_target, zero_division)
    return inter / (n_pred + n_target - inter) if policy is None else policy


def volume_similarity_from_counts(n_pred: int, n_target: int, zero_division: float = 1.0) -> float:
    r"""Volume similarity from ``|A|``, ``|B|`` (``zero_division`` when both are empty).

    Computed as :math:`2\min(|A|, |B|) / (|A| + |B|)`, equal to
    :math:`1 - ||A| - |B|| / (|A| + |B|)` and free of cancellation error.
    """
    policy = empty_overlap(n_pred, n_target, zero_division)
    return 2.0 * min(n_pred, n_target) / (n_pred + n_target) if policy is None else policy


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


def _label_counts(arr: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """How many voxels of ``arr`` hold each of ``labels`` (int64)."""
    top = int(arr.max())
    if top < 1 << 20 and arr.dtype != np.uint64:
        counts = np.bincount(arr.reshape(-1), minlength=top + 1)
        return np.array([counts[k] if k <= top else 0 for k in labels.tolist()], dtype=np.int64)
    values, counts = np.unique(arr, return_counts=True)
    found = dict(zip(values.tolist(), counts.tolist(), strict=True))
    return np.array([found.get(k, 0) for k in labels.tolist()], dtype=np.int64)


def mean_dice(pred: Any, target: Any, *, labels: Any = None) -> float:
    r"""Mean Dice over the labels of two label maps (voxels pooled over the whole array).

    .. math::

        \overline{\text{Dice}} = \frac{1}{|K|} \sum_{k \in K}
            \frac{2 |P_k \cap T_k|}{|P_k| + |T_k|}, \qquad P_k = \{x : \text{pred}(x) = k\}

    Parameters
    ----------
    pred, target
        Integer label maps of the same shape (0 = background; NumPy or torch). A batch
        ``(B, *spatial)`` is pooled as one image (call per item for per-image values).
    labels
        The labels :math:`K` (integers >= 1). Default: every non-zero label present in
        ``pred`` or ``target``, so a missed or a hallucinated structure counts with Dice
        0 (the empty-mask policy of :func:`dice`). Given labels must each be present in
        ``pred`` or ``target`` (a typo or another label encoding is an error, as in
        :func:`~mlimaging.metrics.evaluate_segmentation`).

    Returns
    -------
    float
        In ``[0, 1]``; 1.0 when neither map holds a foreground label (both empty).

    Raises
    ------
    ValueError
        If the shapes differ, a map is not an integer label map >= 0, or a label in
        ``labels`` is < 1, repeated or found in neither map.

    Examples
    --------
    >>> import numpy as np
    >>> target = np.array([[0, 1, 1, 2]])
    >>> mean_dice(np.array([[0, 1, 2, 2]]), target)  # label 1: 2/3, label 2: 2/3
    0.6666666666666666
    >>> mean_dice(np.array([[0, 1, 1, 0]]), target)  # label 2 missed: (1 + 0) / 2
    0.5
    >>> mean_dice(np.zeros((2, 2), int), np.zeros((2, 2), int))
    1.0
    """
    p = as_label_map(pred, "pred")
    t = as_label_map(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got pred {p.shape} and target {t.shape}")
    present = np.union1d(np.unique(p), np.unique(t))
    present = present[present != 0].astype(np.int64)
    if labels is None:
        wanted = present
    else:
        wanted = np.atleast_1d(np.asarray(as_numpy(labels)))
        if wanted.ndim != 1 or wanted.size == 0 or wanted.dtype.kind not in "iu" or (wanted < 1).any():
            raise ValueError(f"labels must be a non-empty sequence of integers >= 1, got {labels!r}")
        if np.unique(wanted).size != wanted.size:
            raise ValueError(f"labels must be unique, got {wanted.tolist()}")
        absent = np.setdiff1d(wanted, present)
        if absent.size:
            raise ValueError(f"labels: {', '.join(map(str, absent.tolist()))} found in neither pred nor target "
                             f"(labels present: {', '.join(map(str, present.tolist())) or 'none'})")
        wanted = wanted.astype(np.int64)
    if wanted.size == 0:
        return float(empty_overlap(0, 0))
    n_p, n_t = _label_counts(p, wanted), _label_counts(t, wanted)
    same = p[p == t]
    inter = _label_counts(same, wanted) if same.size else np.zeros(wanted.size, dtype=np.int64)
    scores = [dice_from_counts(int(i), int(a), int(b)) for i, a, b in zip(inter, n_p, n_t, strict=True)]
    return float(np.mean(scores))

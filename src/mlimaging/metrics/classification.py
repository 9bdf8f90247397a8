r"""Classification metrics computed from the confusion matrix.

Every metric here is a function of the confusion matrix :math:`C` (rows = true class,
columns = predicted class). For class :math:`k` taken one-vs-rest,

.. math::

    TP_k = C_{kk}, \quad FP_k = \sum_i C_{ik} - C_{kk}, \quad
    FN_k = \sum_j C_{kj} - C_{kk}, \quad TN_k = N - TP_k - FP_k - FN_k,

and the per-class scores are

.. math::

    \text{precision}_k = \frac{TP_k}{TP_k + FP_k}, \quad
    \text{recall}_k = \frac{TP_k}{TP_k + FN_k}, \quad
    \text{specificity}_k = \frac{TN_k}{TN_k + FP_k}, \quad
    F_{1,k} = \frac{2\,TP_k}{2\,TP_k + FP_k + FN_k}.

``average`` turns them into one number:

- ``"binary"``: the score of class ``pos_label`` (at most 2 classes);
- ``"macro"``: the unweighted mean over **all** ``num_classes`` classes (a class absent
  from both ``pred`` and ``target`` still counts; this is scikit-learn with
  ``labels=range(num_classes)``);
- ``"micro"``: the score of the pooled counts :math:`\sum_k TP_k, \sum_k FP_k, \dots`
  (for single-label problems micro precision = micro recall = micro F1 = accuracy;
  micro specificity is :math:`\sum_k TN_k / \sum_k (TN_k + FP_k)`);
- ``None``: one score per class (a float64 array of length ``num_classes``).

``zero_division`` is the value used where a denominator is 0 (e.g. precision of a class
that is never predicted). The default 0.0 is what scikit-learn returns with its default
``"warn"``, but no warning is emitted here. With ``zero_division=nan`` such classes are
left out of the macro mean (as in scikit-learn); the mean is NaN if every class is.

Inputs are NumPy arrays or torch tensors. ``target`` holds integer class indices
(any shape; it is flattened). ``pred`` holds either class indices of the same shape, or
scores/logits with one more axis, the class axis at position 1 (``(N, K)`` for
``target`` of shape ``(N,)``, or ``(B, K, *spatial)`` for ``(B, *spatial)``), reduced
by ``argmax``. Binary masks (0/1 or bool) are class-index inputs with two classes.

References
----------
Fawcett T. (2006). An introduction to ROC analysis. Pattern Recognition Letters
27(8):861-874. DOI 10.1016/j.patrec.2005.10.010.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlimaging.utils import as_numpy

__all__ = ["accuracy", "confusion_matrix", "f1_score", "precision", "recall", "specificity"]

_AVERAGES = ("binary", "macro", "micro", None)


def _as_labels(x: np.ndarray, name: str) -> np.ndarray:
    """Flatten ``x`` to int64 class indices; ValueError naming ``name`` otherwise."""
    if x.dtype == bool:
        return x.reshape(-1).astype(np.int64)
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold integer class labels, got dtype {x.dtype}")
    flat = x.reshape(-1)
    if x.dtype.kind == "f":
        if np.isnan(flat).any():
            raise ValueError(f"{name} contains NaN; expected integer class labels")
        if not np.isfinite(flat).all() or (flat != np.round(flat)).any():
            bad = flat[~np.isfinite(flat) | (flat != np.round(flat))][:5]
            raise ValueError(
                f"{name} must hold integer class labels, found values {bad.tolist()} "
                "(for scores/logits give pred one more axis than target, classes on axis 1)"
            )
    if flat.size and flat.min() < 0:
        raise ValueError(f"{name} labels must be >= 0, found {int(flat.min())}")
    return flat.astype(np.int64)


def _prepare(pred: Any, target: Any, num_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate inputs and return flat int64 ``pred``, ``target`` and the number of classes."""
    p = as_numpy(pred.float() if isinstance(pred, torch.Tensor) and pred.dtype == torch.bfloat16 else pred)
    t = as_numpy(target)
    if t.ndim == 0:
        raise ValueError("target must be an array of class labels, got a scalar")
    n_scores = None
    if p.ndim == t.ndim + 1:  # scores / logits, classes on axis 1
        if p.shape[:1] + p.shape[2:] != t.shape:
            raise ValueError(
                f"pred scores of shape {p.shape} do not match target of shape {t.shape}: "
                "expected (N, K, *rest) for target (N, *rest)"
            )
        if p.dtype.kind not in "biuf":
            raise ValueError(f"pred scores must be numeric, got dtype {p.dtype}")
        if p.dtype.kind == "f" and np.isnan(p).any():
            raise ValueError("pred scores contain NaN")
        n_scores = p.shape[1]
        if n_scores < 1:
            raise ValueError("pred scores must have at least one class on axis 1")
        p = np.argmax(p, axis=1) if p.size else np.zeros(t.shape, dtype=np.int64)
    elif p.shape != t.shape:
        raise ValueError(
            f"pred and target must have the same length/shape (or pred scores with one more axis), "
            f"got pred {p.shape} and target {t.shape}"
        )
    tp = _as_labels(t, "target")
    pp = _as_labels(p, "pred")
    if tp.size == 0:
        raise ValueError("pred and target are empty; expected at least one sample")
    observed = int(max(tp.max(), pp.max())) + 1
    if num_classes is None:
        k = max(observed, n_scores or 0)
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        k = int(num_classes)
        if n_scores is not None and n_scores != k:
            raise ValueError(f"pred scores have {n_scores} classes but num_classes={k}")
        for arr, name in ((tp, "target"), (pp, "pred")):
            if arr.max() >= k:
                raise ValueError(f"{name} has label {int(arr.max())} >= num_classes={k}")
    return pp, tp, k


def confusion_matrix(pred: Any, target: Any, *, num_classes: int | None = None) -> np.ndarray:
    r"""Confusion matrix: ``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``.

    .. math::

        C_{ij} = \#\{n : \text{target}_n = i,\ \text{pred}_n = j\}

    Parameters
    ----------
    pred
        Predicted class indices (same shape as ``target``) or scores/logits with the class
        axis at position 1 (reduced by ``argmax``). NumPy or torch.
    target
        True class indices (integers >= 0), any shape (flattened).
    num_classes
        Number of classes ``K``. Default: ``max(label) + 1`` (or the number of score
        columns). Labels ``>= num_classes`` raise ``ValueError``.

    Returns
    -------
    numpy.ndarray
        ``(K, K)`` int64 array.

    Examples
    --------
    >>> confusion_matrix([0, 1, 1, 0], [0, 1, 0, 0])
    array([[2, 1],
           [0, 1]])
    >>> confusion_matrix([[0.9, 0.1], [0.2, 0.8]], [0, 0]).tolist()
    [[1, 1], [0, 0]]
    """
    p, t, k = _prepare(pred, target, num_classes)
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def accuracy(pred: Any, target: Any, *, num_classes: int | None = None) -> float:
    r"""Fraction of correctly classified samples.

    .. math::

        \text{accuracy} = \frac{\operatorname{tr} C}{N}
        \quad\left(= \frac{TP + TN}{N} \text{ for two classes}\right)

    Examples
    --------
    >>> accuracy([0, 1, 1, 0], [0, 1, 0, 0])
    0.75
    """
    p, t, _ = _prepare(pred, target, num_classes)
    return float(np.count_nonzero(p == t) / t.size)


def _counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One-vs-rest TP, FP, FN, TN per class (float64) from a confusion matrix."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return tp, fp, fn, tn


def _ratio(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    out = np.full(np.shape(num), zero_division, dtype=np.float64)
    ok = den > 0
    np.divide(num, den, out=out, where=ok)
    return out


def _check_zero_division(zero_division: float) -> float:
    try:
        z = float(zero_division)
    except (TypeError, ValueError):
        raise ValueError(f"zero_division must be a number in [0, 1] or nan, got {zero_division!r}") from None
    if not (np.isnan(z) or 0.0 <= z <= 1.0):
        raise ValueError(f"zero_division must be a number in [0, 1] or nan, got {zero_division!r}")
    return z


def _score(
    kind: str,
    pred: Any,
    target: Any,
    average: str | None,
    num_classes: int | None,
    zero_division: float,
    pos_label: int,
) -> float | np.ndarray:
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {_AVERAGES}, got {average!r}")
    z = _check_zero_division(zero_division)
    p, t, k = _prepare(pred, target, num_classes)
    if average == "binary":
        if k > 2:
            raise ValueError(
                f"average='binary' needs at most 2 classes, got {k}; use average='macro', 'micro' or None"
            )
        k = 2 if num_classes is None else k
        if isinstance(pos_label, bool) or not isinstance(pos_label, (int, np.integer)) or not 0 <= pos_label < k:
            raise ValueError(f"pos_label must be a class index in [0, {k}), got {pos_label!r}")
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k)
    tp, fp, fn, tn = _counts(cm)
    if average == "micro":
        tp, fp, fn, tn = tp.sum(), fp.sum(), fn.sum(), tn.sum()
    if kind == "precision":
        num, den = tp, tp + fp
    elif kind == "recall":
        num, den = tp, tp + fn
    elif kind == "specificity":
        num, den = tn, tn + fp
    else:  # f1
        num, den = 2 * tp, 2 * tp + fp + fn
    scores = _ratio(num, den, z)
    if average is None:
        return scores
    if average == "micro":
        return float(scores)
    if average == "binary":
        return float(scores[pos_label])
    valid = ~np.isnan(scores)
    return float(scores[valid].mean()) if valid.any() else float("nan")


def precision(
    pred: Any,
    target: Any,
    *,
    average: str | None = "binary",
    num_classes: int | None = None,
    zero_division: float = 0.0,
    pos_label: int = 1,
) -> float | np.ndarray:
    r"""Precision (positive predictive value), :math:`TP / (TP + FP)`.

    See the module docstring for ``average`` (``"binary"``, ``"macro"``, ``"micro"``,
    ``None``) and ``zero_division`` (value where :math:`TP + FP = 0`, default 0.0,
    no warning).

    Examples
    --------
    >>> precision([1, 1, 0, 1], [1, 0, 0, 1])  # TP=2, FP=1
    0.6666666666666666
    >>> precision([0, 2, 1, 2], [0, 1, 1, 2], average=None).tolist()
    [1.0, 1.0, 0.5]
    """
    return _score("precision", pred, target, average, num_classes, zero_division, pos_label)


def recall(
    pred: Any,
    target: Any,
    *,
    average: str | None = "binary",
    num_classes: int | None = None,
    zero_division: float = 0.0,
    pos_label: int = 1,
) -> float | np.ndarray:
    r"""Recall (sensitivity, true positive rate), :math:`TP / (TP + FN)`.

    See the module docstring for ``average`` and ``zero_division`` (value where
    :math:`TP + FN = 0`, default 0.0, no warning).

    Examples
    --------
    >>> recall([1, 0, 0, 1], [1, 1, 0, 1])  # TP=2, FN=1
    0.6666666666666666
    """
    return _score("recall", pred, target, average, num_classes, zero_division, pos_label)


def specificity(
    pred: Any,
    target: Any,
    *,
    average: str | None = "binary",
    num_classes: int | None = None,
    zero_division: float = 0.0,
    pos_label: int = 1,
) -> float | np.ndarray:
    r"""Specificity (true negative rate), :math:`TN / (TN + FP)`.

    See the module docstring for ``average`` and ``zero_division`` (value where
    :math:`TN + FP = 0`, default 0.0, no warning). Micro specificity pools the counts:
    :math:`\sum_k TN_k / \sum_k (TN_k + FP_k)`.

    Examples
    --------
    >>> specificity([1, 1, 0, 0], [1, 0, 0, 0])  # TN=2, FP=1
    0.6666666666666666
    """
    return _score("specificity", pred, target, average, num_classes, zero_division, pos_label)


def f1_score(
    pred: Any,
    target: Any,
    *,
    average: str | None = "binary",
    num_classes: int | None = None,
    zero_division: float = 0.0,
    pos_label: int = 1,
) -> float | np.ndarray:
    r"""F1 score, the harmonic mean of precision and recall.

    .. math::

        F_1 = \frac{2 P R}{P + R} = \frac{2\,TP}{2\,TP + FP + FN}

    The second form is used, so ``zero_division`` applies only where
    :math:`2TP + FP + FN = 0` (class absent from both ``pred`` and ``target``); a class
    with :math:`TP = 0` but some FP or FN scores 0. For binary masks F1 equals the
    Dice coefficient.

    Examples
    --------
    >>> f1_score([1, 1, 0, 1], [1, 0, 1, 1])  # TP=2, FP=1, FN=1
    0.6666666666666666
    >>> f1_score([0, 1, 2, 2], [0, 1, 1, 2], average="micro")
    0.75
    """
    return _score("f1", pred, target, average, num_classes, zero_division, pos_label)

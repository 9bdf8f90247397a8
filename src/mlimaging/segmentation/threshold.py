"""Intensity thresholding: fixed bounds, several intervals, Otsu and multi-level Otsu.

- :func:`threshold`: the voxels with ``lower <= v <= upper`` (bounds keyword-only, as
  :func:`~mlimaging.segmentation.region_growing`).
- :func:`multi_threshold`: a label map with one label per interval between thresholds.
- :func:`otsu_threshold`: Otsu's (1979) threshold maximising the between-class variance.
- :func:`multi_otsu_thresholds`: the multi-level version (Liao, Chen and Chung, 2001).

All functions take NumPy arrays or torch tensors of any dimension and return NumPy.

**Ties at a threshold (one convention for the whole toolkit).** A voxel equal to a
threshold :math:`t` belongs to the class *below* it: the foreground of Otsu's threshold
is ``image > t``, and :func:`multi_threshold` gives a voxel the number of thresholds
strictly below it, ``np.digitize(image, thresholds, right=True)``. This is
scikit-image's convention for ``threshold_otsu`` ("pixels with an intensity higher than
this value are foreground") and it is the partition that Otsu's criterion optimises:
:func:`otsu_threshold` and :func:`multi_otsu_thresholds` (like scikit-image's) return the
centre of the last histogram bin of each lower class. scikit-image's documentation
applies multi-Otsu thresholds with ``np.digitize(image, thresholds)``, which puts ties in
the class above: on its camera image that moves the 201 pixels equal to the Otsu
threshold 102 into the foreground, against ``image > 102``, and it lowers the
between-class variance that the thresholds maximised. :func:`multi_threshold` applied to
Otsu thresholds, ``image > otsu_threshold(image)``, the segmentation pipeline
(``otsu_labels``, ``threshold_labels``) and ``mlimaging segment threshold/otsu`` therefore
all agree voxel for voxel. The exception is :func:`threshold`, which keeps a *closed*
interval ``[lower, upper]`` (SimpleITK's ``BinaryThreshold``, and the bounds of region
growing): ``threshold(image, lower=t)`` also keeps the voxels equal to ``t``.

**Histograms (Otsu).** As scikit-image: an integer image gets one bin per integer
value between its minimum and maximum (``bins`` is ignored), a floating-point image
``bins`` equal-width bins over ``[min, max]``. So an int16 scan and the same values
stored as float64 can get different thresholds (nibabel's ``anatomical.nii``: 7625
from its int16 voxels, 7564.6 from ``get_fdata()``, in both libraries).

**How bounds are compared.** A bound is compared with the voxels at the precision of
the image: for floating-point images it is first rounded to the image dtype (what NumPy
does with a Python scalar, and what SimpleITK does), for integer and boolean images the
comparison is exact (``v >= 2.5`` keeps 3, not 2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral
from typing import Any

import numpy as np

from mlimaging.utils import as_numpy

__all__ = ["threshold", "multi_threshold", "otsu_threshold", "multi_otsu_thresholds"]

# Integer images get one histogram bin per integer value (as scikit-image) when their
# range holds at most this many values (8 MiB per float64 array); wider ranges, where
# scikit-image would allocate one bin per value of the range, use ``bins`` equal-width bins.
_MAX_INTEGER_BINS = 2**20
# Number of float64 elements per block of the multi-Otsu dynamic programme (8 MiB).
_BLOCK_ELEMENTS = 2**20


# ------------------------------------------------------------------------- validation
def _as_image(image: Any, name: str = "image") -> np.ndarray:
    """``image`` as a non-empty real NumPy array (booleans become uint8 views)."""
    arr = as_numpy(image)
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold real numbers (integer or float), got dtype {arr.dtype}")
    if arr.ndim == 0 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty array with at least one axis, got shape {arr.shape}")
    return arr


def _check_bound(value: Any, name: str) -> float:
    arr = np.asarray(as_numpy(value)) if not isinstance(value, str) else np.asarray(None)
    if arr.shape != () or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real number, got {value!r}")
    out = float(arr)
    if math.isnan(out):
        raise ValueError(f"{name} must not be NaN")
    return out


def _check_bounds(lower: Any, upper: Any) -> tuple[float, float]:
    lo = _check_bound(lower, "lower")
    hi = math.inf if upper is None else _check_bound(upper, "upper")
    if lo > hi:
        raise ValueError(f"lower must be <= upper, got lower={lo!r} > upper={hi!r}")
    return lo, hi


def _dtype_bounds(dtype: np.dtype, lower: float, upper: float) -> tuple[Any, Any] | None:
    """Bounds in ``dtype`` such that ``lo <= v <= hi`` (in ``dtype``) is the documented test.

    Floating images: bounds rounded to the nearest value of the dtype. Integer images:
    ``ceil(lower)`` and ``floor(upper)`` clipped to the dtype range, so the comparison is
    exact. Returns ``None`` when no value of the dtype can be in range. ``None`` entries
    in the pair mean "no test needed on that side".
    """
    if dtype.kind == "f":
        with np.errstate(over="ignore"):
            lo, hi = dtype.type(lower), dtype.type(upper)
        return (None if lo == -np.inf else lo), (None if hi == np.inf else hi)
    info = np.iinfo(dtype)
    if lower == math.inf or upper == -math.inf:  # no integer lies above +inf or below -inf
        return None
    lo_int = -math.inf if lower == -math.inf else math.ceil(lower)
    hi_int = math.inf if upper == math.inf else math.floor(upper)
    if lo_int > info.max or hi_int < info.min or lo_int > hi_int:
        return None
    lo_val = None if lo_int <= info.min else dtype.type(lo_int)
    hi_val = None if hi_int >= info.max else dtype.type(hi_int)
    return lo_val, hi_val


def _in_range(image: np.ndarray, lower: float, upper: float) -> np.ndarray:
    """Boolean mask of ``lower <= image <= upper`` (see :func:`_dtype_bounds`)."""
    bounds = _dtype_bounds(image.dtype, lower, upper)
    if bounds is None:
        return np.zeros(image.shape, dtype=bool)
    lo, hi = bounds
    if lo is None and hi is None:
        # Only NaN voxels fail an unbounded test.
        return ~np.isnan(image) if image.dtype.kind == "f" else np.ones(image.shape, dtype=bool)
    if lo is None:
        return np.less_equal(image, hi)
    mask = np.greater_equal(image, lo)
    if hi is not None:
        mask &= np.less_equal(image, hi)
    return mask


# --------------------------------------------------------------------- fixed thresholds
def threshold(image: Any, *, lower: float | None = None, upper: float | None = None) -> np.ndarray:
    r"""Voxels whose intensity lies between ``lower`` and ``upper`` (both included).

    A closed interval, as SimpleITK's ``BinaryThreshold``; to apply an Otsu threshold
    ``t`` use ``image > t`` or :func:`multi_threshold` (ties go to the class below,
    see the module docstring).

    .. math::

        m(x) = [\,l \le I(x)\,] \quad\text{or}\quad m(x) = [\,l \le I(x) \le u\,]

    Parameters
    ----------
    image : array_like or torch.Tensor
        Image of any dimension.
    lower : float, optional
        Smallest intensity kept; ``None`` (default) means no lower bound.
    upper : float, optional
        Largest intensity kept; ``None`` (default) means no upper bound. At least one
        of ``lower`` and ``upper`` must be given.

    Returns
    -------
    numpy.ndarray of bool
        Same shape as ``image``. NaN voxels are never kept.

    Raises
    ------
    ValueError
        If ``image`` is empty or not real, no bound is given, a bound is NaN, or
        ``lower > upper``.

    Notes
    -----
    Bounds are compared at the image's precision: rounded to the dtype of a floating
    image, exactly for integer images (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([[0, 1, 2], [3, 4, 5]])
    >>> threshold(image, lower=2).astype(int)
    array([[0, 0, 1],
           [1, 1, 1]])
    >>> threshold(image, lower=1.5, upper=3).astype(int)
    array([[0, 0, 1],
           [1, 0, 0]])
    >>> threshold(image, upper=1).astype(int)
    array([[1, 1, 0],
           [0, 0, 0]])
    """
    arr = _as_image(image)
    if lower is None and upper is None:
        raise ValueError("threshold needs lower=, upper= or both (keyword arguments)")
    lo, hi = _check_bounds(-math.inf if lower is None else lower, upper)
    return _in_range(arr, lo, hi)


def multi_threshold(image: Any, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    r"""Label map of the intervals between increasing thresholds :math:`t_0 \le \dots \le t_{K-1}`.

    .. math::

        L(x) = \#\{i : I(x) > t_i\} = \begin{cases}
            0 & I(x) \le t_0 \\
            i & t_{i-1} < I(x) \le t_i \\
            K & t_{K-1} < I(x)
        \end{cases}

    A voxel equal to a threshold goes to the interval below it, as
    ``np.digitize(image, thresholds, right=True)``: with one threshold the label is
    ``image > t``, the foreground of :func:`otsu_threshold`, and with the thresholds of
    :func:`multi_otsu_thresholds` the labels are the classes that Otsu's criterion
    optimised (see the module docstring for the convention).

    Parameters
    ----------
    image : array_like or torch.Tensor
        Image of any dimension.
    thresholds : sequence of float
        One or more finite, non-decreasing thresholds.

    Returns
    -------
    numpy.ndarray of int64
        Labels ``0 .. len(thresholds)``, same shape as ``image``.

    Raises
    ------
    ValueError
        If ``image`` is empty or not real, or ``thresholds`` is empty, not 1-D, not
        finite or decreasing. NaN voxels also raise (they belong to no interval).

    Examples
    --------
    >>> import numpy as np
    >>> multi_threshold(np.array([0.0, 1.0, 1.5, 2.0, 3.0]), [1.0, 2.0])
    array([0, 0, 1, 1, 2])
    """
    arr = _as_image(image)
    try:
        t = np.asarray(as_numpy(thresholds), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"thresholds must be a sequence of real numbers, got {thresholds!r}") from exc
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"thresholds must be finite, got {t.tolist()}")
    if np.any(np.diff(t) < 0):
        raise ValueError(f"thresholds must be non-decreasing, got {t.tolist()}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError("image must not contain NaN (a NaN voxel belongs to no interval)")
    # Compare at the image precision, as threshold() does: rounded bounds for floats;
    # for integers v > t  <=>  v > floor(t), exact in float64 for |v| < 2**53.
    if arr.dtype.kind == "f":
        with np.errstate(over="ignore"):
            edges = t.astype(arr.dtype)
    else:
        edges = np.floor(t)
    return np.digitize(arr, edges, right=True).astype(np.int64, copy=False)


# ------------------------------------------------------------------------------- Otsu
def _check_bins(bins: Any) -> int:
    if isinstance(bins, bool) or not isinstance(bins, Integral) or int(bins) < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    return int(bins)


def _histogram(image: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts (int64) and bin centres of ``image`` over its own range ``[min, max]``.

    Integer images whose range holds at most ``_MAX_INTEGER_BINS`` values get one bin
    per integer (``bins`` ignored); other images get ``bins`` equal-width bins with the
    centres in the image's floating dtype, as ``numpy.histogram`` computes the edges.
    """
    flat = image.reshape(-1)
    if flat.dtype.kind in "iu":
        lo, hi = int(flat.min()), int(flat.max())
        if hi - lo < _MAX_INTEGER_BINS:
            if flat.dtype.kind == "u":  # no overflow: every value is >= lo
                shifted = (flat - flat.dtype.type(lo)).astype(np.intp, copy=False)
            else:
                shifted = flat.astype(np.int64) - lo
            counts = np.bincount(shifted, minlength=hi - lo + 1)
            return counts.astype(np.int64, copy=False), np.arange(lo, hi + 1, dtype=np.int64)
        flat = flat.astype(np.float64)
    if not np.all(np.isfinite([flat.min(), flat.max()])):
        raise ValueError("image must be finite (no NaN or infinity) to compute a histogram")
    counts, edges = np.histogram(flat, bins=bins, range=(flat.min(), flat.max()))
    return counts.astype(np.int64, copy=False), (edges[:-1] + edges[1:]) / 2


def _constant_value(image: np.ndarray) -> float | None:
    first = image.reshape(-1)[0]
    return float(first) if np.all(image == first) else None


def otsu_threshold(image: Any, *, bins: int = 256) -> float:
    r"""Otsu's threshold: the histogram bin centre maximising the between-class variance.

    With :math:`n_k` voxels in bin :math:`k` (centre :math:`c_k`), the classes
    :math:`C_0 = \{k \le t\}` and :math:`C_1 = \{k > t\}` have weights
    :math:`\omega_j` and means :math:`\mu_j`; Otsu chooses

    .. math::

        t^* = \arg\max_t\; \sigma_B^2(t) = \omega_0(t)\,\omega_1(t)\,
              \bigl(\mu_0(t) - \mu_1(t)\bigr)^2

    (the first maximiser), and returns :math:`c_{t^*}`: foreground is ``image > t``.

    Parameters
    ----------
    image : array_like or torch.Tensor
        Image of any dimension (2D, 3D, ...).
    bins : int, optional
        Number of equal-width histogram bins over ``[image.min(), image.max()]``
        (default 256). Ignored for integer images whose range holds at most
        :math:`2^{20}` values (all 8- and 16-bit images): they get one bin per
        integer, as in scikit-image.

    Returns
    -------
    float
        The threshold. A constant image returns its value (no threshold separates it).

    Raises
    ------
    ValueError
        If ``image`` is empty, not real or not finite, or ``bins < 2``.

    Notes
    -----
    Gives the same value as ``skimage.filters.threshold_otsu(image, nbins=bins)``
    (same histogram and bin centres; the variance is computed in float64). Boolean
    images are treated as 0/1 integers (threshold 0), where scikit-image histograms
    them as floats.

    References
    ----------
    N. Otsu, "A threshold selection method from gray-level histograms", IEEE Trans.
    Systems, Man, and Cybernetics 9(1):62-66, 1979. DOI: 10.1109/TSMC.1979.4310076

    Examples
    --------
    >>> import numpy as np
    >>> otsu_threshold(np.array([1, 1, 2, 8, 9, 9]))
    2.0
    >>> otsu_threshold(np.full((3, 3), 7.5))
    7.5
    """
    arr = _as_image(image)
    n_bins = _check_bins(bins)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("image must be finite (no NaN or infinity)")
    constant = _constant_value(arr)
    if constant is not None:
        return constant
    counts, centres = _histogram(arr, n_bins)
    n = counts.astype(np.float64)
    moment = n * centres.astype(np.float64)
    w0 = np.cumsum(n)[:-1]
    w1 = np.cumsum(n[::-1])[::-1][1:]
    mu0 = np.cumsum(moment)[:-1] / w0
    mu1 = np.cumsum(moment[::-1])[::-1][1:] / w1
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centres[int(np.argmax(between))])


def _class_scores(cum_n: np.ndarray, cum_s: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``H[i, j] = S(i..j)^2 / P(i..j)`` for ``i`` in ``rows`` and all ``j`` (``-inf`` for j < i)."""
    count = cum_n[None, 1:] - cum_n[rows, None]
    moment = (cum_s[None, 1:] - cum_s[rows, None]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = moment * moment / count
    scores[count <= 0] = -np.inf  # j < i: no class
    return scores


def _multi_otsu_indices(counts: np.ndarray, classes: int) -> np.ndarray:
    """Indices of the bins ending classes 0..classes-2 (lexicographically first optimum)."""
    nonempty = np.flatnonzero(counts)
    m = nonempty.size
    if m == classes:
        return nonempty[:-1]
    c = counts[nonempty]
    # Exact integer prefix sums of the counts and of the first moment in bin-index units.
    cum_n = np.concatenate([[0], np.cumsum(c)])
    cum_s = np.concatenate([[0], np.cumsum(c * nonempty)])
    block = max(1, _BLOCK_ELEMENTS // m)

    # best[k][i]: max of sum_j S_j^2 / P_j splitting nonempty bins i..m-1 into k classes.
    best = [np.empty(0), _class_scores(cum_n, cum_s, np.arange(m))[:, m - 1]]
    for k in range(2, classes):
        tail = np.append(best[k - 1], -np.inf)[1:]  # best[k-1][t + 1]
        out = np.full(m, -np.inf)
        for start in range(0, m - k + 1, block):
            rows = np.arange(start, min(start + block, m - k + 1))
            out[rows] = (_class_scores(cum_n, cum_s, rows) + tail).max(axis=1)
        best.append(out)

    # Greedy left-to-right choice of the first maximiser gives the lexicographically
    # smallest optimal thresholds; each class ends at a nonempty bin.
    ends, start = [], 0
    for k in range(classes, 1, -1):
        tail = np.append(best[k - 1], -np.inf)[1:]
        values = _class_scores(cum_n, cum_s, np.array([start]))[0] + tail
        values[m - k + 1:] = -np.inf
        end = int(np.argmax(values))
        ends.append(end)
        start = end + 1
    return nonempty[np.array(ends)]


def multi_otsu_thresholds(image: Any, classes: int, *, bins: int = 256) -> np.ndarray:
    r"""Multi-level Otsu: ``classes - 1`` thresholds maximising the between-class variance.

    With the histogram split into classes :math:`C_0, \dots, C_{K-1}` of contiguous
    bins, weights :math:`P_j = \sum_{k \in C_j} n_k` and first moments
    :math:`S_j = \sum_{k \in C_j} n_k\,k`, maximising the between-class variance is
    maximising (Liao et al., 2001)

    .. math::

        \sum_{j=0}^{K-1} \frac{S_j^2}{P_j},

    solved exactly by dynamic programming over the non-empty bins in
    :math:`O(K m^2)` for :math:`m` non-empty bins (vectorised, in blocks). Class
    :math:`C_j` ends at bin :math:`t_j`; the thresholds are the bin centres
    :math:`c_{t_j}` (the lexicographically first optimum). Apply them with
    :func:`multi_threshold`.

    Parameters
    ----------
    image : array_like or torch.Tensor
        Image of any dimension.
    classes : int
        Number of classes (>= 2); ``classes - 1`` thresholds are returned.
    bins : int, optional
        Number of histogram bins (default 256), with the same rule as
        :func:`otsu_threshold` (one bin per integer for integer images).

    Returns
    -------
    numpy.ndarray of float64
        The ``classes - 1`` increasing thresholds.

    Raises
    ------
    ValueError
        If ``classes < 2``, ``bins < 2``, the image is empty, not real or not finite,
        or it has fewer non-empty histogram bins than ``classes``.

    Notes
    -----
    Matches ``skimage.filters.threshold_multiotsu(image, classes, nbins=bins)`` except
    where scikit-image (0.26 and earlier) weights its first histogram bin by
    intensity 1 instead of 0 (its ``first_moment[0] = prob[0]``, scikit-image pull
    requests #6596 and #8252): that can move its lowest threshold when the first bin
    holds much of the image. We use the formula above, so our thresholds then have a
    larger between-class variance. ``classes=2`` gives :func:`otsu_threshold`.

    References
    ----------
    P.-S. Liao, T.-S. Chen and P.-C. Chung, "A fast algorithm for multilevel
    thresholding", Journal of Information Science and Engineering 17(5):713-727, 2001.
    DOI: 10.6688/JISE.2001.17.5.1

    Examples
    --------
    >>> import numpy as np
    >>> image = np.array([0, 0, 1, 5, 5, 6, 9, 10, 10])
    >>> multi_otsu_thresholds(image, 3)
    array([1., 6.])
    >>> multi_threshold(image, [1.0, 6.0])
    array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    """
    arr = _as_image(image)
    n_bins = _check_bins(bins)
    if isinstance(classes, bool) or not isinstance(classes, Integral) or int(classes) < 2:
        raise ValueError(f"classes must be an integer >= 2, got {classes!r}")
    classes = int(classes)
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("image must be finite (no NaN or infinity)")
    counts, centres = _histogram(arr, n_bins)
    n_values = int(np.count_nonzero(counts))
    if n_values < classes:
        raise ValueError(
            f"classes={classes} needs at least {classes} non-empty histogram bins, but the image has "
            f"{n_values} (try more bins, or fewer classes)"
        )
    return centres[_multi_otsu_indices(counts, classes)].astype(np.float64)

"""Image similarity measures: SSD, SAD, NCC, mutual information and normalised MI.

Every function takes two images of the same shape, as NumPy arrays or torch tensors:

* NumPy arrays (or anything ``np.asarray`` accepts) give a Python ``float``,
  computed in float64.
* torch tensors give a 0-dim tensor of the input's floating dtype (integer and bool
  tensors become ``torch.get_default_dtype()``), on the input's device and
  differentiable with autograd, so that registration can use them as losses. If
  only one argument is a tensor, the other is converted to it.

Each formula is written once, in torch: NumPy inputs go through it as float64
tensors (``torch.from_numpy``, no copy), so the same call gives the same value for
NumPy and torch input. MI and NMI take the estimator of their joint histogram as a
named argument, the same for both input types: ``estimator="histogram"`` (default:
exact bin counts, the value scikit-image gives; no gradient) or ``"parzen"`` (a
differentiable Parzen-window estimate, what the registration losses use; see
:func:`mutual_information`).

All measures reduce over every element: a batch ``(B, C, *spatial)`` is treated
as one large image (call the function per item for per-image values).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlimaging.metrics._histogram import (
    check_bins,
    check_value_range,
    entropies,
    hard_joint_histogram,
    parzen_joint_histogram,
)

__all__ = ["ssd", "sad", "ncc", "mutual_information", "normalized_mutual_information"]

ArrayLike = Any  # np.ndarray | torch.Tensor | nested sequences


# --------------------------------------------------------------------------- input checks
def _as_tensor(v: Any, name: str) -> torch.Tensor:
    if isinstance(v, torch.Tensor):
        t = v
    else:
        arr = np.asarray(v)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
        t = torch.tensor(arr)
    if t.is_complex():
        raise ValueError(f"{name} must be a real numeric tensor, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    return t


def _check_common(a: Any, b: Any, names: tuple[str, str]) -> None:
    for v, n in zip((a, b), names, strict=True):
        if v.ndim == 0:
            raise ValueError(f"{n} must be an image (an array with at least one axis), got a scalar")
        if (v.numel() if isinstance(v, torch.Tensor) else v.size) == 0:
            raise ValueError(f"{n} is empty; expected an image with at least one voxel")
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got "
            f"{names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)}"
        )
    for v, n in zip((a, b), names, strict=True):
        finite = torch.isfinite(v).all() if isinstance(v, torch.Tensor) else np.isfinite(v).all()
        if not bool(finite):
            raise ValueError(f"{n} contains NaN or infinite values; expected finite intensities")


def _as_pair(
    x: ArrayLike, y: ArrayLike, *, names: tuple[str, str] = ("x", "y")
) -> tuple[Any, Any, bool]:
    """Validate two images and return ``(a, b, is_torch)``.

    torch path (either input a tensor): two floating tensors of a common dtype on one
    device. NumPy path: two float64 arrays (C-contiguous, not copied when already so).
    Raises ``ValueError`` naming the argument for a shape mismatch, NaN/inf, a scalar,
    an empty or a non-numeric input.
    """
    if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor):
        a, b = _as_tensor(x, names[0]), _as_tensor(y, names[1])
        ref = x if isinstance(x, torch.Tensor) else y
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.device != y.device:
            raise ValueError(
                f"{names[0]} and {names[1]} must be on the same device, got {x.device} and {y.device}"
            )
        dtype = torch.promote_types(a.dtype, b.dtype)
        a = a.to(device=ref.device, dtype=dtype)
        b = b.to(device=ref.device, dtype=dtype)
        _check_common(a, b, names)
        return a, b, True
    out = []
    for v, n in zip((x, y), names, strict=True):
        arr = np.asarray(v)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{n} must be a real numeric array, got dtype {arr.dtype}")
        arr = np.asarray(arr, dtype=np.float64)
        out.append(arr if arr.flags.c_contiguous else arr.copy(order="C"))
    _check_common(out[0], out[1], names)
    return out[0], out[1], False


def _torch_pair(x: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Like :func:`_as_pair` but NumPy inputs come back as float64 tensors sharing memory."""
    a, b, is_torch = _as_pair(x, y)
    if not is_torch:
        if not a.flags.writeable:
            a = a.copy()
        if not b.flags.writeable:
            b = b.copy()
        a, b = torch.from_numpy(a), torch.from_numpy(b)
    return a, b, is_torch


def _out(value: torch.Tensor, is_torch: bool) -> torch.Tensor | float:
    return value if is_torch else float(value)


# --------------------------------------------------------------------------- intensity differences
def ssd(x: ArrayLike, y: ArrayLike) -> torch.Tensor | float:
    r"""Mean of squared intensity differences ("sum of squared differences", SSD).

    .. math:: \mathrm{SSD}(x, y) = \frac{1}{N} \sum_{i=1}^{N} (x_i - y_i)^2

    The course's SSD is the *sum*; here it is divided by the number of voxels
    :math:`N` so that values do not grow with the image size (multiply by ``x.size``
    for the sum). Lower is more similar; 0 for identical images. It assumes the
    same intensity mapping in both images (mono-modal registration).

    Parameters
    ----------
    x, y
        Images of the same shape (NumPy or torch; any number of axes).

    Returns
    -------
    float or torch.Tensor
        A float for NumPy inputs (float64), a differentiable 0-dim tensor for torch.

    Examples
    --------
    >>> import numpy as np
    >>> ssd(np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1]), np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1]))
    2.6
    """
    a, b, is_torch = _torch_pair(x, y)
    return _out((a - b).square().mean(), is_torch)


def sad(x: ArrayLike, y: ArrayLike) -> torch.Tensor | float:
    r"""Mean of absolute intensity differences ("sum of absolute differences", SAD).

    .. math:: \mathrm{SAD}(x, y) = \frac{1}{N} \sum_{i=1}^{N} |x_i - y_i|

    Divided by :math:`N` like :func:`ssd`. Less sensitive to a few large
    differences than SSD. The torch gradient is :math:`\operatorname{sign}(x_i - y_i)/N`
    (0 where :math:`x_i = y_i`).

    Parameters
    ----------
    x, y
        Images of the same shape (NumPy or torch).

    Returns
    -------
    float or torch.Tensor
        A float for NumPy inputs, a differentiable 0-dim tensor for torch.

    Examples
    --------
    >>> import numpy as np
    >>> sad(np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1]), np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1]))
    1.0
    """
    a, b, is_torch = _torch_pair(x, y)
    return _out((a - b).abs().mean(), is_torch)


def ncc(x: ArrayLike, y: ArrayLike, *, eps: float | None = None) -> torch.Tensor | float:
    r"""Normalised cross-correlation: the Pearson correlation of the voxel intensities.

    .. math::

        \mathrm{NCC}(x, y) = \frac{\sum_i (x_i - \bar x)(y_i - \bar y)}
        {\sqrt{\sum_i (x_i - \bar x)^2 \, \sum_i (y_i - \bar y)^2}} \in [-1, 1]

    Invariant to a positive affine intensity change of either image
    (:math:`\mathrm{NCC}(x, a x + b) = 1` for :math:`a > 0`, :math:`-1` for :math:`a < 0`),
    so it suits images whose intensities are linearly related. Higher is more
    similar (use ``-ncc`` as a loss).

    A constant image has no correlation with anything: the result is defined as 0
    when either image is constant, i.e. when its standard deviation is at most
    ``eps`` times its largest absolute intensity (which absorbs the rounding of the
    mean of a constant image). The gradient is then 0 as well.

    Parameters
    ----------
    x, y
        Images of the same shape (NumPy or torch).
    eps
        Relative threshold below which an image counts as constant; default
        ``100 * torch.finfo(dtype).eps`` (about 2e-14 in float64, 1e-5 in float32).

    Returns
    -------
    float or torch.Tensor
        A float in [-1, 1] for NumPy inputs, a differentiable 0-dim tensor for torch.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1])
    >>> round(ncc(x, np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1])), 6)
    0.326637
    >>> round(ncc(x, 3 * x + 7), 12), round(ncc(x, -x), 12), ncc(x, np.ones(10))
    (1.0, -1.0, 0.0)
    """
    a, b, is_torch = _torch_pair(x, y)
    if eps is None:
        eps = 100 * torch.finfo(a.dtype).eps
    elif not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and >= 0, got {eps!r}")
    a, b = a.reshape(-1), b.reshape(-1)
    da, db = a - a.mean(), b - b.mean()
    var_a, var_b = da.square().mean(), db.square().mean()
    flat = (var_a <= (eps * a.detach().abs().max()) ** 2) | (var_b <= (eps * b.detach().abs().max()) ** 2)
    one = torch.ones_like(var_a)
    denom = torch.sqrt(torch.where(flat, one, var_a) * torch.where(flat, one, var_b))
    value = torch.where(flat, torch.zeros_like(var_a), (da * db).mean() / denom)
    return _out(value.clamp(-1.0, 1.0), is_torch)


# --------------------------------------------------------------------------- information theory
#: Estimators of the joint intensity histogram behind MI and NMI.
ESTIMATORS = ("histogram", "parzen")


def _joint_entropies(
    x: ArrayLike, y: ArrayLike, bins: int, value_range: Any, parzen_sigma: float, estimator: str
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor | None]:
    """``(H(X), H(Y), H(X, Y))`` and, for torch input, a tensor whose dtype and device the
    result takes (``None`` for NumPy input)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    bins = check_bins(bins)
    ranges = check_value_range(value_range)
    if isinstance(parzen_sigma, bool) or not (np.isfinite(parzen_sigma) and parzen_sigma > 0):
        raise ValueError(f"parzen_sigma must be a positive number of bin widths, got {parzen_sigma!r}")
    if estimator == "parzen":
        a, b, is_torch = _torch_pair(x, y)
        joint = parzen_joint_histogram(a, b, bins, ranges, float(parzen_sigma))
        return entropies(joint), (a if is_torch else None)
    a, b, is_torch = _as_pair(x, y)
    ref = a if is_torch else None
    if is_torch:  # exact counts on the float64 values, as for NumPy input (no gradient)
        a, b = (v.detach().to("cpu", torch.float64).numpy() for v in (a, b))
    return entropies(torch.from_numpy(hard_joint_histogram(a, b, bins, ranges))), ref


def _info_out(value: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor | float:
    """A float for NumPy input; else a 0-dim tensor of ``ref``'s dtype and device."""
    return float(value) if ref is None else value.to(device=ref.device, dtype=ref.dtype)


def mutual_information(
    x: ArrayLike,
    y: ArrayLike,
    *,
    bins: int = 32,
    value_range: tuple[float, float] | tuple[tuple[float, float], tuple[float, float]] | None = None,
    estimator: str = "histogram",
    parzen_sigma: float = 0.5,
) -> torch.Tensor | float:
    r"""Mutual information of the intensities of two images, from their joint histogram, in nats.

    .. math::

        \mathrm{MI}(X, Y) = H(X) + H(Y) - H(X, Y), \qquad
        H(X) = -\sum_a p_X(a) \ln p_X(a), \quad H(X, Y) = -\sum_{a, b} p_{XY}(a, b) \ln p_{XY}(a, b)

    with :math:`p_{XY}` the joint histogram normalised to sum 1 and :math:`p_X`,
    :math:`p_Y` its marginals; natural logarithms (nats; divide by :math:`\ln 2` for
    bits), :math:`0 \ln 0 = 0`. MI is symmetric, :math:`\ge 0`, and 0 when either
    image is constant. It only needs a statistical (not linear) relation between
    intensities, so it suits multi-modal registration (Viola and Wells 1997,
    DOI 10.1023/A:1007958904918; Maes et al. 1997, DOI 10.1109/42.563664).

    Histogram: ``bins`` x ``bins`` equally spaced bins over each image's
    [min, max], or over ``value_range`` after clipping the intensities into it. The
    ``estimator`` is the same for NumPy and torch input, so the same call gives the
    same value for both (torch input: rounded to its dtype):

    * ``"histogram"`` (default): exact hard bin counts (the binning of
      ``np.histogramdd``; last bin closed), as scikit-image. Piecewise constant in the
      intensities: a torch result carries no gradient.
    * ``"parzen"``: a differentiable **Parzen-window** estimate. Voxel :math:`i` adds
      to bin :math:`k` (centre :math:`c_k`, width :math:`w`) the weight
      :math:`\kappa(x_i - c_k) / \sum_l \kappa(x_i - c_l)` with the Gaussian kernel
      :math:`\kappa(t) = \exp(-t^2 / (2 (\sigma w)^2))`, :math:`\sigma` = ``parzen_sigma``
      bin widths; the joint histogram is :math:`\sum_i u_{ik} v_{il}`. As
      ``parzen_sigma`` -> 0 it tends to the hard counts (each voxel to its bin), so
      the two paths then agree (within about 1e-3 for ``parzen_sigma`` <= 0.1 on smooth
      images); the default 0.5 blurs the joint histogram by about one bin, which gives
      smooth gradients but a clearly lower value. The bin edges are constants (no gradient flows through an
      image's min or max); memory is O(N * bins).

    Parameters
    ----------
    x, y
        Images of the same shape (NumPy or torch).
    bins
        Number of bins per image (integer >= 2).
    value_range
        ``(lo, hi)`` for both images, or ``((lo_x, hi_x), (lo_y, hi_y))``; default:
        each image's own [min, max] (a constant image ``v`` gets [v - 0.5, v + 0.5]).
    estimator
        ``"histogram"`` (exact counts) or ``"parzen"`` (differentiable), see above.
    parzen_sigma
        Standard deviation of the Gaussian Parzen kernel in bin widths (``"parzen"`` only).

    Returns
    -------
    float or torch.Tensor
        MI in nats: a float for NumPy inputs, a 0-dim tensor for torch (differentiable
        with ``estimator="parzen"``).

    Examples
    --------
    The course example, with one bin per integer intensity 0..5:

    >>> import numpy as np
    >>> x = np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1])
    >>> y = np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1])
    >>> round(mutual_information(x, y, bins=6, value_range=(-0.5, 5.5)), 6)
    0.568362

    The same call on torch tensors gives the same value; the Parzen estimate is lower
    (blurred histogram) but differentiable:

    >>> import torch
    >>> tx, ty = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    >>> round(float(mutual_information(tx, ty, bins=6, value_range=(-0.5, 5.5))), 6)
    0.568362
    >>> round(float(mutual_information(tx, ty, bins=6, value_range=(-0.5, 5.5), estimator="parzen")), 6)
    0.17368
    """
    (hx, hy, hxy), ref = _joint_entropies(x, y, bins, value_range, parzen_sigma, estimator)
    return _info_out(hx + hy - hxy, ref)


def normalized_mutual_information(
    x: ArrayLike,
    y: ArrayLike,
    *,
    bins: int = 32,
    value_range: tuple[float, float] | tuple[tuple[float, float], tuple[float, float]] | None = None,
    estimator: str = "histogram",
    parzen_sigma: float = 0.5,
) -> torch.Tensor | float:
    r"""Normalised mutual information (Studholme et al. 1999), in [1, 2].

    .. math:: \mathrm{NMI}(X, Y) = \frac{H(X) + H(Y)}{H(X, Y)}

    Studholme, Hill and Hawkes 1999, "An overlap invariant entropy measure of 3D
    medical image alignment", DOI 10.1016/S0031-3203(98)00091-0. It is 1 for
    independent intensities and 2 when each image's bin determines the other's (for
    example NMI(x, x) = 2 for a non-constant x), and unlike MI it does not grow with
    the overlapping area. Same definition as scikit-image's
    ``skimage.metrics.normalized_mutual_information``; with the same ``bins`` and the
    default ``estimator="histogram"`` it gives the same value, for NumPy and torch
    input alike. When both images are constant
    (:math:`H(X, Y) = 0`) it is defined as 1, the value it takes when only one is.

    The histogram, its range and the two estimators are those of
    :func:`mutual_information` (see there for the Parzen kernel).

    Parameters
    ----------
    x, y
        Images of the same shape (NumPy or torch).
    bins
        Number of bins per image (integer >= 2).
    value_range
        ``(lo, hi)`` for both images, or ``((lo_x, hi_x), (lo_y, hi_y))``; default:
        each image's own [min, max].
    estimator
        ``"histogram"`` (default, exact counts, no gradient) or ``"parzen"``
        (differentiable), for NumPy and torch input alike.
    parzen_sigma
        Standard deviation of the Gaussian Parzen kernel in bin widths (``"parzen"`` only).

    Returns
    -------
    float or torch.Tensor
        A float for NumPy inputs, a 0-dim tensor for torch (differentiable with
        ``estimator="parzen"``).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1])
    >>> y = np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1])
    >>> round(normalized_mutual_information(x, y, bins=6, value_range=(-0.5, 5.5)), 6)
    1.325137
    >>> normalized_mutual_information(x, x)
    2.0
    """
    (hx, hy, hxy), ref = _joint_entropies(x, y, bins, value_range, parzen_sigma, estimator)
    zero = hxy <= 0
    value = torch.where(zero, torch.ones_like(hxy), (hx + hy) / torch.where(zero, torch.ones_like(hxy), hxy))
    return _info_out(value, ref)

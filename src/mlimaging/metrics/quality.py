"""Full-reference image quality: peak signal-to-noise ratio and structural similarity.

Both take a test image ``x`` and a reference ``ref`` of the same shape, NumPy or
torch, and an explicit ``data_range`` (images are not always in [0, 1]: CT is in HU).

Shapes (both functions):

* ``ndim`` <= 3 (PSNR) or ``ndim`` in {2, 3} (SSIM): one image, every axis spatial;
  the result is a Python ``float`` for NumPy inputs (float64) or a 0-dim tensor for
  torch.
* ``ndim`` in {4, 5}: a batch ``(B, C, H, W[, D])``; the result has shape ``(B,)``,
  one value per image averaged over its channels (a float64 ``np.ndarray`` or a
  tensor).

torch results keep the input's floating dtype and device and are differentiable
(``1 - ssim(x, ref)`` is a loss). NumPy and torch share the formulas; SSIM filters
with ``scipy.ndimage`` for NumPy and separable convolutions for torch.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

from mlimaging.metrics.similarity import _as_pair

__all__ = ["psnr", "ssim"]

ArrayLike = Any


def _check_data_range(data_range: Any) -> float:
    if isinstance(data_range, torch.Tensor) and data_range.numel() == 1:
        data_range = data_range.item()
    if isinstance(data_range, bool) or not isinstance(data_range, numbers.Real):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}")
    value = float(data_range)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"data_range must be finite and > 0, got {data_range!r}")
    return value


def _reduce_axes(ndim: int, *, max_image_ndim: int, min_image_ndim: int, what: str) -> tuple[int, ...]:
    """Axes averaged per result: all for one image, all but the batch axis for a batch."""
    if min_image_ndim <= ndim <= max_image_ndim:
        return tuple(range(ndim))
    if ndim in (4, 5):
        return tuple(range(1, ndim))
    raise ValueError(
        f"x must be {what} or a (B, C, H, W[, D]) batch, got an array with {ndim} axes"
    )


def _finish(value: Any, axes: tuple[int, ...], ndim: int, is_torch: bool) -> Any:
    batched = len(axes) < ndim
    if is_torch:
        return value
    return np.asarray(value, dtype=np.float64) if batched else float(value)


# --------------------------------------------------------------------------- PSNR
def psnr(x: ArrayLike, ref: ArrayLike, *, data_range: float) -> Any:
    r"""Peak signal-to-noise ratio in decibels.

    .. math::

        \mathrm{PSNR}(x, r) = 10 \log_{10} \frac{R^2}{\mathrm{MSE}(x, r)}, \qquad
        \mathrm{MSE}(x, r) = \frac{1}{N} \sum_i (x_i - r_i)^2

    with :math:`R` = ``data_range``, the span of possible intensities (1 for images
    in [0, 1], 255 for 8-bit, e.g. 4095 for 12-bit CT). Identical images give
    ``inf``. Same value as ``skimage.metrics.peak_signal_noise_ratio(ref, x,
    data_range=R)``.

    Parameters
    ----------
    x
        Test image (NumPy or torch), one image with <= 3 axes or a
        ``(B, C, H, W[, D])`` batch.
    ref
        Reference image of the same shape.
    data_range
        :math:`R`, a positive number (required: it is not guessed from the dtype).

    Returns
    -------
    float, np.ndarray or torch.Tensor
        One value per image (see the module docstring for shapes).

    Examples
    --------
    >>> import numpy as np
    >>> ref = np.zeros((4, 4))
    >>> x = ref.copy(); x[0, 0] = 1.0       # MSE = 1/16
    >>> round(psnr(x, ref, data_range=1.0), 4)  # 10 log10(16)
    12.0412
    >>> psnr(ref, ref, data_range=1.0)
    inf
    """
    r = _check_data_range(data_range)
    a, b, is_torch = _as_pair(x, ref, names=("x", "ref"))
    axes = _reduce_axes(a.ndim, min_image_ndim=1, max_image_ndim=3, what="an image with 1 to 3 axes")
    if is_torch:
        mse = (a - b).square().mean(dim=axes)
        value = 10.0 * torch.log10(r**2 / mse)
    else:
        mse = np.square(a - b).mean(axis=axes)
        with np.errstate(divide="ignore"):
            value = 10.0 * np.log10(r**2 / mse)
    return _finish(value, axes, a.ndim, is_torch)


# --------------------------------------------------------------------------- SSIM
def _gaussian_kernel1d(sigma: float, radius: int) -> np.ndarray:
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def _pad_symmetric(t: torch.Tensor, radius: int, dims: range) -> torch.Tensor:
    """Pad by mirroring including the edge voxel (scipy.ndimage's ``mode='reflect'``)."""
    for d in dims:
        n = t.shape[d]
        idx = torch.cat(
            [torch.arange(radius - 1, -1, -1), torch.arange(n), torch.arange(n - 1, n - 1 - radius, -1)]
        ).to(t.device)
        t = t.index_select(d, idx)
    return t


def _local_stats_torch(
    a: torch.Tensor, b: torch.Tensor, kernel: np.ndarray, n_spatial: int, pad: bool
) -> list[torch.Tensor]:
    """Filtered x, y, x^2, y^2, xy by a separable kernel (valid conv, or same-size if ``pad``)."""
    spatial = a.shape[a.ndim - n_spatial :]
    lead = a.shape[: a.ndim - n_spatial]
    a = a.reshape(-1, 1, *spatial)
    b = b.reshape(-1, 1, *spatial)
    n = a.shape[0]
    t = torch.cat([a, b, a * a, b * b, a * b], dim=0)
    radius = (len(kernel) - 1) // 2
    if pad:
        t = _pad_symmetric(t, radius, range(2, 2 + n_spatial))
    k = torch.as_tensor(kernel, dtype=t.dtype, device=t.device)
    conv = F.conv2d if n_spatial == 2 else F.conv3d
    for axis in range(n_spatial):
        shape = [1, 1] + [len(kernel) if i == axis else 1 for i in range(n_spatial)]
        t = conv(t, k.reshape(shape))
    return [s.reshape(*lead, *s.shape[2:]) for s in t.split(n, dim=0)]


def _local_stats_numpy(
    a: np.ndarray, b: np.ndarray, n_spatial: int, win_size: int, gaussian_weights: bool, sigma: float
) -> list[np.ndarray]:
    """Filtered x, y, x^2, y^2, xy over the spatial axes, mirrored borders (same size)."""
    n_lead = a.ndim - n_spatial
    if gaussian_weights:
        sig = (0.0,) * n_lead + (sigma,) * n_spatial
        rad = (0,) * n_lead + ((win_size - 1) // 2,) * n_spatial
        def filt(v):
            return ndi.gaussian_filter(v, sig, mode="reflect", radius=rad)
    else:
        size = (1,) * n_lead + (win_size,) * n_spatial
        def filt(v):
            return ndi.uniform_filter(v, size, mode="reflect")
    return [filt(v) for v in (a, b, a * a, b * b, a * b)]


def _ssim_map(ux: Any, uy: Any, uxx: Any, uyy: Any, uxy: Any, c1: float, c2: float, cov_norm: float) -> Any:
    """SSIM at every voxel from local (weighted) moments; NumPy arrays or tensors."""
    vx = cov_norm * (uxx - ux * ux)
    vy = cov_norm * (uyy - uy * uy)
    vxy = cov_norm * (uxy - ux * uy)
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def _check_ssim_options(
    win_size: Any, gaussian_weights: bool, sigma: float, k1: float, k2: float, spatial: tuple[int, ...]
) -> int:
    for name, v in (("sigma", sigma), ("k1", k1), ("k2", k2)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma!r}")
    if k1 < 0 or k2 < 0:
        raise ValueError(f"k1 and k2 must be >= 0, got k1={k1!r}, k2={k2!r}")
    if win_size is None:
        win_size = 2 * int(3.5 * sigma + 0.5) + 1 if gaussian_weights else 7
    if isinstance(win_size, bool) or not isinstance(win_size, numbers.Integral):
        raise ValueError(f"win_size must be an odd integer >= 3, got {win_size!r}")
    win_size = int(win_size)
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be an odd integer >= 3, got {win_size}")
    if win_size > min(spatial):
        raise ValueError(
            f"win_size ({win_size}) is larger than the image (spatial shape {spatial}); "
            "pass a smaller odd win_size"
        )
    return win_size


def ssim(
    x: ArrayLike,
    ref: ArrayLike,
    *,
    data_range: float,
    win_size: int | None = None,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    use_sample_covariance: bool = True,
    full: bool = False,
) -> Any:
    r"""Structural similarity index (Wang et al. 2004), mean over the image, 2D or 3D.

    .. math::

        \mathrm{SSIM}(x, r) = \frac{(2 \mu_x \mu_r + C_1)(2 \sigma_{xr} + C_2)}
        {(\mu_x^2 + \mu_r^2 + C_1)(\sigma_x^2 + \sigma_r^2 + C_2)}, \qquad
        C_1 = (k_1 R)^2, \; C_2 = (k_2 R)^2

    computed at every voxel from the local means, variances and covariance in a
    window around it, then averaged over the voxels at least ``(win_size - 1) // 2``
    from the border (the filtered values there do not depend on how the border is
    extended). :math:`R` = ``data_range``. Wang, Bovik, Sheikh and Simoncelli 2004,
    "Image quality assessment: from error visibility to structural similarity",
    DOI 10.1109/TIP.2003.819861. 1 for identical images, symmetric in its arguments,
    at most 1.

    The defaults are scikit-image's ``structural_similarity`` defaults (uniform 7^d
    window, sample covariance with the factor :math:`N_p / (N_p - 1)`,
    :math:`N_p` = ``win_size ** d``) and give its value. ``gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False`` are the settings of Wang et al.: a
    Gaussian window of radius ``(win_size - 1) // 2``, by default
    ``int(3.5 * sigma + 0.5)`` (11 taps for sigma = 1.5), again as scikit-image.
    (With Gaussian weights and an explicit ``win_size``, scikit-image keeps the
    3.5-sigma kernel and only changes the crop; here the kernel is cut to the window.)

    Parameters
    ----------
    x
        Test image (NumPy or torch): 2D or 3D, or a ``(B, C, H, W[, D])`` batch
        (then one SSIM per image, averaged over channels: shape ``(B,)``).
    ref
        Reference image of the same shape.
    data_range
        :math:`R`, the span of possible intensities (required, positive).
    win_size
        Odd window side >= 3, at most the smallest spatial size; default 7, or
        ``2 * int(3.5 * sigma + 0.5) + 1`` with ``gaussian_weights``.
    gaussian_weights
        Weight the window by a Gaussian of standard deviation ``sigma`` (voxels).
    sigma
        Standard deviation of the Gaussian window.
    k1, k2
        Stabilising constants (non-negative).
    use_sample_covariance
        Sample (``N_p - 1``) instead of population normalisation of the moments.
    full
        Also return the SSIM map (same shape as ``x``; borders with mirrored padding,
        scipy's ``mode='reflect'``).

    Returns
    -------
    mssim or (mssim, ssim_map)
        Float / ``(B,)`` ndarray for NumPy, tensor for torch (differentiable).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.random((16, 16))
    >>> ssim(ref, ref, data_range=1.0)
    1.0
    >>> noisy = ref + 0.2 * rng.standard_normal((16, 16))
    >>> round(ssim(noisy, ref, data_range=1.0), 4)
    0.819
    """
    r = _check_data_range(data_range)
    a, b, is_torch = _as_pair(x, ref, names=("x", "ref"))
    axes = _reduce_axes(a.ndim, min_image_ndim=2, max_image_ndim=3, what="a 2D or 3D image")
    n_spatial = a.ndim if len(axes) == a.ndim else a.ndim - 2
    spatial = tuple(a.shape[a.ndim - n_spatial :])
    win_size = _check_ssim_options(win_size, gaussian_weights, sigma, k1, k2, spatial)
    radius = (win_size - 1) // 2
    c1, c2 = (k1 * r) ** 2, (k2 * r) ** 2
    n_window = win_size**n_spatial
    cov_norm = n_window / (n_window - 1) if use_sample_covariance else 1.0
    crop = (slice(None),) * (a.ndim - n_spatial) + (slice(radius, -radius),) * n_spatial

    if is_torch:
        if gaussian_weights:
            kernel = _gaussian_kernel1d(float(sigma), radius)
        else:
            kernel = np.full(win_size, 1.0 / win_size)
        stats = _local_stats_torch(a, b, kernel, n_spatial, pad=full)
        s_map = _ssim_map(*stats, c1, c2, cov_norm)
        inner = s_map[crop] if full else s_map
        mssim = inner.mean(dim=axes)
    else:
        stats = _local_stats_numpy(a, b, n_spatial, win_size, gaussian_weights, float(sigma))
        s_map = _ssim_map(*stats, c1, c2, cov_norm)
        mssim = _finish(s_map[crop].mean(axis=axes, dtype=np.float64), axes, a.ndim, False)
    return (mssim, s_map) if full else mssim

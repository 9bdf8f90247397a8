r"""Differentiable dissimilarity losses for registration (lower is better).

The global measures are the definitions of :mod:`mlimaging.metrics.similarity` (one
formula for NumPy and torch; MI and NMI through its Parzen-window joint histogram),
turned into losses that are 0 or minimal at best alignment:

=====================  ===========================================  =====================
loss                   definition                                   use
=====================  ===========================================  =====================
:func:`ssd_loss`       :math:`\frac1N \sum (f_i - m_i)^2`           same modality
:func:`sad_loss`       :math:`\frac1N \sum |f_i - m_i|`             same modality, outliers
:func:`ncc_loss`       :math:`1 - \mathrm{NCC}(f, m)`               linear intensity relation
:func:`local_ncc_loss` :math:`1 - \overline{\mathrm{NCC}_W}(f, m)`  local linear relation
:func:`mi_loss`        :math:`-\mathrm{MI}(f, m)`                   multi-modal
:func:`nmi_loss`       :math:`2 - \mathrm{NMI}(f, m)`               multi-modal, overlap-robust
=====================  ===========================================  =====================

The global losses take an optional boolean ``mask`` (broadcast to the images' shape):
only the selected voxels count, e.g. the overlap of the fixed image with the warped
moving image's field of view, as ITK's metrics do. :class:`SimilarityLoss` is the
``nn.Module`` form; :func:`similarity_loss` picks a loss by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.metrics import similarity as _sim

__all__ = [
    "LOSSES",
    "SimilarityLoss",
    "local_ncc_loss",
    "mi_loss",
    "ncc_loss",
    "nmi_loss",
    "sad_loss",
    "similarity_loss",
    "ssd_loss",
]


def _masked(fixed: Any, moving: Any, mask: Any) -> tuple[Any, Any]:
    if mask is None:
        return fixed, moving
    f, m, _ = _sim._torch_pair(fixed, moving)
    k = torch.as_tensor(mask, device=f.device)
    if k.dtype != torch.bool:
        raise ValueError(f"mask must be a boolean array, got dtype {k.dtype}")
    try:
        k = torch.broadcast_to(k, f.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(k.shape)} does not broadcast to the images' shape "
                         f"{tuple(f.shape)}") from None
    if int(k.sum()) < 2:
        raise ValueError("mask selects fewer than 2 voxels; the images do not overlap")
    return f[k], m[k]


def _estimator(fixed: Any, moving: Any) -> str:
    """MI/NMI estimator of the losses: Parzen (differentiable) for torch input, exact counts for NumPy."""
    return "parzen" if isinstance(fixed, torch.Tensor) or isinstance(moving, torch.Tensor) else "histogram"


def ssd_loss(fixed: Any, moving: Any, *, mask: Any = None) -> torch.Tensor | float:
    r"""Mean squared difference, :func:`mlimaging.metrics.ssd`: :math:`\frac1N\sum_i (f_i - m_i)^2`.

    Returns a float for NumPy inputs, a differentiable 0-dim tensor for torch.

    Examples
    --------
    >>> import torch
    >>> ssd_loss(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]))
    tensor(0.5000)
    """
    return _sim.ssd(*_masked(fixed, moving, mask))


def sad_loss(fixed: Any, moving: Any, *, mask: Any = None) -> torch.Tensor | float:
    r"""Mean absolute difference, :func:`mlimaging.metrics.sad`: :math:`\frac1N\sum_i |f_i - m_i|`.

    Examples
    --------
    >>> import torch
    >>> sad_loss(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 1.0]))
    tensor(1.)
    """
    return _sim.sad(*_masked(fixed, moving, mask))


def ncc_loss(fixed: Any, moving: Any, *, mask: Any = None) -> torch.Tensor | float:
    r"""One minus the normalised cross-correlation, :math:`1 - \mathrm{NCC}(f, m) \in [0, 2]`.

    NCC is :func:`mlimaging.metrics.ncc` (Pearson correlation over all voxels).

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)
    >>> round(float(ncc_loss(x, 3 * x + 1)), 12), round(float(ncc_loss(x, -x)), 12)
    (0.0, 2.0)
    """
    return 1.0 - _sim.ncc(*_masked(fixed, moving, mask))


def mi_loss(
    fixed: Any,
    moving: Any,
    *,
    mask: Any = None,
    bins: int = 32,
    value_range: Any = None,
    parzen_sigma: float = 0.5,
) -> torch.Tensor | float:
    r"""Negative mutual information, :math:`-\mathrm{MI}(f, m)` in nats.

    MI is :func:`mlimaging.metrics.mutual_information`: Parzen-window joint histogram for
    torch inputs (Gaussian kernel of ``parzen_sigma`` bin widths; Viola and Wells 1997,
    DOI 10.1023/A:1007958904918), exact counts for NumPy.

    Examples
    --------
    >>> import torch
    >>> x = torch.linspace(0, 1, 100)
    >>> abs(float(mi_loss(x, torch.zeros(100)))) < 1e-6  # nothing shared with a constant image
    True
    >>> bool(mi_loss(x, x) < -2.0)  # about -log(32 bins), blurred by the Parzen kernel
    True
    """
    f, m = _masked(fixed, moving, mask)
    return -_sim.mutual_information(
        f, m, bins=bins, value_range=value_range, estimator=_estimator(f, m), parzen_sigma=parzen_sigma
    )


def nmi_loss(
    fixed: Any,
    moving: Any,
    *,
    mask: Any = None,
    bins: int = 32,
    value_range: Any = None,
    parzen_sigma: float = 0.5,
) -> torch.Tensor | float:
    r"""Two minus the normalised mutual information, :math:`2 - \mathrm{NMI}(f, m) \in [0, 1]`.

    .. math:: \mathrm{NMI} = \frac{H(F) + H(M)}{H(F, M)}

    (Studholme, Hill and Hawkes 1999, DOI 10.1016/S0031-3203(98)00091-0), computed by
    :func:`mlimaging.metrics.normalized_mutual_information` (Parzen joint histogram for
    torch inputs).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1])
    >>> nmi_loss(x, x)
    0.0
    """
    f, m = _masked(fixed, moving, mask)
    return 2.0 - _sim.normalized_mutual_information(
        f, m, bins=bins, value_range=value_range, estimator=_estimator(f, m), parzen_sigma=parzen_sigma
    )


def _batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim in (2, 3):
        return x[None, None]
    if x.ndim in (4, 5):
        return x
    raise ValueError(f"{name} must be (H, W), (D, H, W) or (B, C, *spatial), got shape {tuple(x.shape)}")


def local_ncc_loss(fixed: Any, moving: Any, *, window: int = 9, eps: float = 1e-10) -> torch.Tensor | float:
    r"""One minus the mean local (windowed) normalised cross-correlation.

    .. math::

        1 - \frac{1}{|\Omega_W|} \sum_{x \in \Omega_W}
        \frac{\sum_{y \in W(x)} (f_y - \bar f_x)(m_y - \bar m_x)}
             {\sqrt{\sum_{y \in W(x)} (f_y - \bar f_x)^2 \sum_{y \in W(x)} (m_y - \bar m_x)^2}}

    over every cubic window :math:`W(x)` of ``window`` voxels per axis lying inside the
    image (no padding), with :math:`\bar f_x` the window mean: the Pearson correlation of
    :func:`mlimaging.metrics.ncc` per window. Robust to slowly varying intensity changes
    such as a bias field (Avants et al. 2008, DOI 10.1016/j.media.2007.06.004). A window
    as large as the image gives ``ncc_loss``.

    The window statistics are box filters (``avg_pool``) of :math:`f, m, f^2, m^2, f m`
    computed in float64 after subtracting each image's global mean. A window whose
    variance is at most ``eps`` times its mean square (a constant window, up to
    rounding) has correlation 0, as a constant image has in ``ncc``.

    Parameters
    ----------
    fixed, moving
        ``(H, W)``, ``(D, H, W)`` or ``(B, C, *spatial)``, same shape (NumPy or torch).
    window
        Window size in voxels (at most the smallest image side).
    eps
        Relative variance below which a window counts as constant.

    Returns
    -------
    float or torch.Tensor
        Float for NumPy inputs, differentiable 0-dim tensor (the input's dtype) for torch.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(16, 16, generator=torch.Generator().manual_seed(0))
    >>> round(float(local_ncc_loss(x, 2 * x + 1, window=5)), 6)
    0.0
    """
    f, m, is_torch = _sim._torch_pair(fixed, moving)
    out_dtype = f.dtype
    f, m = _batch(f, "fixed"), _batch(m, "moving")
    d = f.ndim - 2
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window > min(f.shape[2:]):
        raise ValueError(f"window must be an int in [1, {min(f.shape[2:])}] (the smallest image side), "
                         f"got {window!r}")
    if isinstance(eps, bool) or not (eps >= 0):
        raise ValueError(f"eps must be a number >= 0, got {eps!r}")
    pool = F.avg_pool2d if d == 2 else F.avg_pool3d
    f, m = f.to(torch.float64), m.to(torch.float64)
    f, m = f - f.detach().mean(), m - m.detach().mean()  # less cancellation in E[x^2] - E[x]^2
    mf, mm = pool(f, window, stride=1), pool(m, window, stride=1)
    sq_f, sq_m = pool(f * f, window, stride=1), pool(m * m, window, stride=1)
    var_f, var_m = (sq_f - mf * mf).clamp_min(0), (sq_m - mm * mm).clamp_min(0)
    cov = pool(f * m, window, stride=1) - mf * mm
    flat = (var_f <= eps * sq_f.detach()) | (var_m <= eps * sq_m.detach())
    one = torch.ones_like(var_f)
    cc = torch.where(flat, torch.zeros_like(cov), cov / torch.sqrt(torch.where(flat, one, var_f * var_m)))
    value = (1.0 - cc.clamp(-1.0, 1.0).mean()).to(out_dtype)
    return value if is_torch else float(value)


#: Losses by the metric name used by :func:`mlimaging.registration.register`.
LOSSES: dict[str, Callable[..., Any]] = {
    "ssd": ssd_loss,
    "sad": sad_loss,
    "ncc": ncc_loss,
    "lncc": local_ncc_loss,
    "mi": mi_loss,
    "nmi": nmi_loss,
}


def similarity_loss(name: str) -> Callable[..., Any]:
    """The loss function for a metric name (``ssd``, ``sad``, ``ncc``, ``lncc``, ``mi``, ``nmi``).

    Examples
    --------
    >>> similarity_loss("nmi") is nmi_loss
    True
    """
    if name not in LOSSES:
        raise ValueError(f"metric must be one of {tuple(LOSSES)}, got {name!r}")
    return LOSSES[name]


class SimilarityLoss(nn.Module):
    """``nn.Module`` form of a registration loss: ``SimilarityLoss("nmi", bins=32)(fixed, moving)``.

    Examples
    --------
    >>> import torch
    >>> SimilarityLoss("ssd")(torch.zeros(4), torch.ones(4))
    tensor(1.)
    """

    def __init__(self, metric: str = "ssd", **kwargs: Any) -> None:
        super().__init__()
        self.metric = metric
        self.fn = similarity_loss(metric)
        self.kwargs = kwargs

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return self.fn(fixed, moving, **{**self.kwargs, **kwargs})

    def extra_repr(self) -> str:
        return f"metric={self.metric!r}" + "".join(f", {k}={v!r}" for k, v in self.kwargs.items())

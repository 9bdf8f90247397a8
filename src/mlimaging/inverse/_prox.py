"""Building blocks of the classical solvers (private): finite differences, the total-variation
norm and its proximal operator, soft thresholding and an orthogonal wavelet transform.

Conventions (shared by :mod:`mlimaging.inverse.solvers`):

- Images are batch-first tensors ``(B, C, H, W)`` or ``(B, C, D, H, W)``; the last ``x.ndim - 2``
  axes are spatial and every ``(b, c)`` image is treated on its own.
- :func:`gradient` takes forward differences with a zero last difference (Neumann boundary), the
  discretisation of Chambolle (2004), scikit-image's ``denoise_tv_chambolle`` and deepinv's
  ``TVPrior``. Its components are stacked on a new *leading* axis: ``gradient(x)[i]`` is the
  difference along spatial axis ``i``.
- :func:`periodic_gradient` uses circular differences instead; it is the regulariser of
  :func:`~mlimaging.inverse.solvers.tikhonov`, because its normal operator is diagonal in Fourier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def spatial_dims(x: Tensor) -> int:
    """Number of spatial axes of a batch-first ``(B, C, *spatial)`` tensor (2 or 3)."""
    return x.ndim - 2


def gradient(x: Tensor) -> Tensor:
    """Forward differences along each spatial axis (Neumann: the last difference is 0), ``(d, *x.shape)``."""
    d = spatial_dims(x)
    g = x.new_zeros((d, *x.shape))
    for i in range(d):
        axis = 2 + i
        n = x.shape[axis]
        g[i].narrow(axis, 0, n - 1).copy_(torch.diff(x, dim=axis))
    return g


def gradient_adjoint(p: Tensor) -> Tensor:
    r"""Adjoint of :func:`gradient` (minus the divergence): :math:`\langle \nabla x, p\rangle = \langle x, \nabla^\top p\rangle`."""
    d = p.shape[0]
    out = torch.zeros_like(p[0])
    for i in range(d):
        axis = 2 + i
        n = p.shape[axis + 1]
        q = p[i].narrow(axis, 0, n - 1)  # the last difference is identically 0: its dual is ignored
        out.narrow(axis, 0, n - 1).sub_(q)
        out.narrow(axis, 1, n - 1).add_(q)
    return out


def periodic_gradient(x: Tensor) -> Tensor:
    """Circular forward differences ``roll(x, -1) - x`` along each spatial axis, ``(d, *x.shape)``."""
    return torch.stack([torch.roll(x, -1, dims=2 + i) - x for i in range(spatial_dims(x))])


def periodic_gradient_adjoint(p: Tensor) -> Tensor:
    """Adjoint of :func:`periodic_gradient`: ``sum_i roll(p_i, 1) - p_i``."""
    return sum(torch.roll(p[i], 1, dims=2 + i) - p[i] for i in range(p.shape[0]))


def gradient_magnitude(g: Tensor, *, isotropic: bool) -> Tensor:
    """Pointwise norm of a gradient field: Euclidean over the components, or the sum of absolute values."""
    return torch.sqrt((g * g).sum(0)) if isotropic else g.abs().sum(0)


def tv_norm(x: Tensor, *, isotropic: bool = True) -> Tensor:
    r"""Total variation :math:`\sum_n \|(\nabla x)_n\|` summed over all pixels and images (a 0-d tensor)."""
    return gradient_magnitude(gradient(x), isotropic=isotropic).sum()


def project_dual(p: Tensor, radius: float, *, isotropic: bool) -> Tensor:
    """Projection onto the dual ball of the TV norm: pointwise ``||p_n||_2 <= radius`` (isotropic) or ``|p_n,i| <= radius``."""
    if not isotropic:
        return p.clamp(-radius, radius)
    norm = torch.sqrt((p * p).sum(0, keepdim=True))
    return p / torch.clamp(norm / radius, min=1.0)


def tv_prox(v: Tensor, weight: float, *, iterations: int = 50, tol: float = 0.0, isotropic: bool = True,
            dual: Tensor | None = None) -> tuple[Tensor, Tensor]:
    r"""Proximal operator of ``weight * TV`` by the fast gradient projection (FGP) on the dual.

    .. math::

        \operatorname{prox}_{w\,\mathrm{TV}}(v) = \arg\min_x \tfrac12\|x - v\|_2^2 + w\,\mathrm{TV}(x)
        = v - w \nabla^\top p^\star,\qquad
        p^\star = \arg\min_{\|p_n\| \le 1} \|v - w \nabla^\top p\|_2^2

    solved by projected gradient with Nesterov momentum, step :math:`1/(4 d\, w)` (the squared norm
    of :math:`\nabla` is at most :math:`4d` in :math:`d` dimensions). Beck & Teboulle (2009), "Fast
    gradient-based algorithms for constrained total variation image denoising and deblurring
    problems", IEEE TIP 18(11), doi:10.1109/TIP.2009.2028250; the dual is Chambolle's (2004).

    Returns ``(x, p)``: pass ``p`` back as ``dual`` to warm-start the next call (FISTA does).
    ``tol`` stops when the relative change of ``x`` falls below it (0: run all iterations).
    """
    if weight <= 0:
        return v.clone(), (dual if dual is not None else v.new_zeros((spatial_dims(v), *v.shape)))
    d = spatial_dims(v)
    step = 1.0 / (4.0 * d * weight)
    p = dual.clone() if dual is not None else v.new_zeros((d, *v.shape))
    r, t = p, 1.0
    x = v - weight * gradient_adjoint(r)
    for _ in range(iterations):
        p_new = project_dual(r + step * gradient(x), 1.0, isotropic=isotropic)
        t_new = (1.0 + (1.0 + 4.0 * t * t) ** 0.5) / 2.0
        r = p_new + ((t - 1.0) / t_new) * (p_new - p)
        p, t = p_new, t_new
        x_new = v - weight * gradient_adjoint(r)
        if tol > 0 and torch.linalg.vector_norm(x_new - x) <= tol * torch.linalg.vector_norm(x_new):
            x = x_new
            break
        x = x_new
    return v - weight * gradient_adjoint(p), p


def soft_threshold(x: Tensor, threshold: float | Tensor) -> Tensor:
    r"""Soft thresholding :math:`\operatorname{sign}(x)\max(|x| - t, 0)`, the proximal operator of :math:`t\|\cdot\|_1`."""
    return torch.sign(x) * torch.clamp(x.abs() - threshold, min=0.0)


class Wavelet:
    """Orthogonal n-D discrete wavelet transform of ``(B, C, *spatial)`` tensors (PyWavelets, periodization).

    ``forward`` returns all coefficients packed in one tensor of the image's shape
    (``pywt.coeffs_to_array``); ``detail`` is the boolean mask of the detail coefficients (everything
    but the coarsest approximation). With an orthogonal wavelet and ``mode="periodization"`` on sizes
    divisible by ``2 ** levels`` the transform is an orthogonal matrix, so ``inverse = forward^T``.
    The transform runs in NumPy on the CPU (in float64) and returns tensors on ``x``'s device and dtype.
    """

    def __init__(self, shape: tuple[int, ...], *, wavelet: str, levels: int) -> None:
        import pywt

        try:
            self.wavelet = pywt.Wavelet(wavelet)
        except ValueError as err:
            raise ValueError(f"wavelet must be a PyWavelets discrete wavelet name (e.g. 'db4'), got {wavelet!r}") from err
        if not self.wavelet.orthogonal:
            raise ValueError(f"wavelet must be orthogonal (db*, sym*, coif*, haar), got {wavelet!r}")
        spatial = shape[2:]
        if any(n % (2 ** levels) for n in spatial):
            raise ValueError(f"levels={levels}: every spatial size must be divisible by 2**levels = {2 ** levels} "
                             f"for an orthogonal periodized transform, got spatial shape {tuple(spatial)}")
        self.levels, self.axes = levels, tuple(range(2, len(shape)))
        self.mode = "periodization"
        coeffs = pywt.wavedecn(np.zeros(shape), self.wavelet, mode=self.mode, level=levels, axes=self.axes)
        array, self.slices = pywt.coeffs_to_array(coeffs, axes=self.axes)
        mask = np.ones(array.shape, dtype=bool)
        mask[self.slices[0]] = False
        self.detail = torch.from_numpy(mask)

    def forward(self, x: Tensor) -> Tensor:
        import pywt

        coeffs = pywt.wavedecn(x.detach().cpu().double().numpy(), self.wavelet, mode=self.mode, level=self.levels,
                               axes=self.axes)
        array, _ = pywt.coeffs_to_array(coeffs, axes=self.axes)
        return torch.from_numpy(array).to(device=x.device, dtype=x.dtype)

    def inverse(self, c: Tensor) -> Tensor:
        import pywt

        coeffs: Any = pywt.array_to_coeffs(c.detach().cpu().double().numpy(), self.slices, output_format="wavedecn")
        return torch.from_numpy(pywt.waverecn(coeffs, self.wavelet, mode=self.mode, axes=self.axes)).to(
            device=c.device, dtype=c.dtype)

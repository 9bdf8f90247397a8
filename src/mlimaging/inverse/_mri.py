r"""Undersampled Cartesian MRI: :math:`y_c = M F (S_c x)` and fastMRI-style sampling masks.

Complex data use the **two-real-channel layout** (as deepinv and fastMRI do): an image is
``(B, 2, H, W)`` (or ``(B, 2, D, H, W)`` for a stack of slices), channel 0 the real part and
channel 1 the imaginary part; k-space is the same without coil maps and ``(B, 2, N, H, W)``
(``(B, 2, N, D, H, W)``) with :math:`N` coils. Every tensor stays real, so solvers, denoisers
and the real inner product work unchanged; that inner product is the real part of the
complex one, for which the adjoint of :math:`F` is :math:`F^{-1}`.

:math:`F` is the **centred orthonormal** 2D DFT over the last two axes,
``fftshift(fft2(ifftshift(x), norm="ortho"))``: the zero frequency sits at index
:math:`\lfloor n/2 \rfloor` (the centre of k-space, where the masks sample densely) and
:math:`F^{-1} = F^H`, so the fully sampled single-coil operator is unitary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from mlimaging.inverse.base import Operator, _check_finite_tensor

__all__ = ["MRI", "cartesian_mask", "fft2c", "ifft2c"]


def fft2c(z: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D DFT of a complex tensor over its last two axes."""
    z = torch.fft.ifftshift(z, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(z, norm="ortho"), dim=(-2, -1))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c` (also its adjoint)."""
    k = torch.fft.ifftshift(k, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=(-2, -1))


def _to_complex(x: torch.Tensor) -> torch.Tensor:
    return torch.complex(x[:, 0], x[:, 1])


def _to_real(z: torch.Tensor) -> torch.Tensor:
    return torch.stack((z.real, z.imag), dim=1)


def cartesian_mask(
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float = 0.08,
    seed: int = 0,
) -> torch.Tensor:
    r"""A random Cartesian undersampling mask with a fully sampled centre (fastMRI's ``RandomMaskFunc``).

    Whole phase-encoding lines (columns, the last axis) are sampled. Of :math:`W` columns,
    the :math:`n_c = \mathrm{round}(W \cdot \text{center\_fraction})` central ones are always
    kept (the low frequencies, starting at :math:`\lfloor (W - n_c + 1)/2 \rfloor`); every
    other column is kept independently with probability

    .. math:: p = \frac{W / R - n_c}{W - n_c},

    so about :math:`W / R` columns are sampled on average for an acceleration :math:`R`
    (Zbontar et al. 2018, "fastMRI: An Open Dataset and Benchmarks for Accelerated MRI",
    arXiv:1811.08839; the variable-density idea of Lustig et al. 2007).

    Parameters
    ----------
    shape : (int, int)
        ``(H, W)`` of k-space.
    acceleration : float
        :math:`R \ge 1`.
    center_fraction : float
        Fraction of fully sampled central columns, in (0, 1].
    seed : int
        Seed of a private ``numpy.random.default_rng`` (the mask is a pure function of the arguments).

    Returns
    -------
    Tensor
        float32 of shape ``(H, W)``, 0/1, constant along each column.

    Examples
    --------
    >>> m = cartesian_mask((8, 16), 4, 0.25, seed=0)
    >>> m[0].int().tolist()
    [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    >>> bool((m == m[0]).all())
    True
    """
    if (
        not isinstance(shape, Sequence)
        or len(shape) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1 for s in shape)
    ):
        raise ValueError(f"shape must be (H, W) with positive ints, got {shape!r}")
    if (
        isinstance(acceleration, bool)
        or not isinstance(acceleration, (int, float))
        or not math.isfinite(acceleration)
        or acceleration < 1
    ):
        raise ValueError(f"acceleration must be a finite number >= 1, got {acceleration!r}")
    if (
        isinstance(center_fraction, bool)
        or not isinstance(center_fraction, (int, float))
        or not (0 < center_fraction <= 1)
    ):
        raise ValueError(f"center_fraction must be in (0, 1], got {center_fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    h, w = int(shape[0]), int(shape[1])
    n_center = max(1, round(w * center_fraction))
    rng = np.random.default_rng(seed)
    if n_center < w:
        prob = max(0.0, (w / acceleration - n_center) / (w - n_center))
        cols = rng.uniform(size=w) < prob
    else:
        cols = np.ones(w, dtype=bool)
    start = (w - n_center + 1) // 2
    cols[start : start + n_center] = True
    return torch.from_numpy(np.broadcast_to(cols, (h, w)).astype(np.float32).copy())


class MRI(Operator):
    r"""Undersampled Cartesian MRI, single- or multi-coil: :math:`y_c = M F (S_c x)`.

    .. math:: A x = \big(M F (S_c \odot x)\big)_{c=1}^{N}, \qquad
              A^\top y = \sum_c \overline{S_c} \odot F^{H} (M y_c),

    with :math:`F` the centred orthonormal 2D DFT (module docstring), :math:`M` the 0/1
    sampling mask and :math:`S_c` the coil sensitivity maps (:math:`N = 1`, :math:`S = 1`
    without them) (Lustig, Donoho & Pauly 2007, "Sparse MRI: the application of compressed
    sensing for rapid MR imaging", doi:10.1002/mrm.21391; Pruessmann et al. 1999 for SENSE).
    k-space is returned at full size with zeros where :math:`M = 0` (as deepinv's ``MRI``,
    whose outputs ours equal). Without coil maps :math:`M F` is a partial isometry, so
    :math:`A^\dagger = A^\top` (zero-filled reconstruction) and :math:`\|A\|_2 = 1`; with a full
    mask :math:`A^\top A = I`. A 5D image ``(B, 2, D, H, W)`` is a stack of slices sharing the
    mask (and coil maps).

    Parameters
    ----------
    mask : array or Tensor
        0/1 values of shape ``(H, W)`` (e.g. :func:`cartesian_mask`).
    sensitivities : array or Tensor, optional
        Coil maps :math:`S`, complex of shape ``(N, H, W)``, or real ``(2, N, H, W)`` in the
        two-channel layout.
    noise : callable, optional
        Noise model; it is applied to the full k-space, then masked again, so unsampled
        entries stay 0.

    Examples
    --------
    >>> import torch
    >>> op = MRI(cartesian_mask((16, 16), 4, 0.25, seed=0))
    >>> x = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> op.A(x).shape, op.norm(x)
    (torch.Size([1, 2, 16, 16]), 1.0)
    >>> full = MRI(torch.ones(16, 16))
    >>> torch.allclose(full.A_adjoint(full.A(x)), x, atol=1e-6)
    True
    """

    def __init__(
        self,
        mask: torch.Tensor | np.ndarray,
        *,
        sensitivities: torch.Tensor | np.ndarray | None = None,
        noise: object = None,
    ) -> None:
        super().__init__(noise=noise)
        m = (
            torch.as_tensor(np.asarray(mask))
            if not isinstance(mask, torch.Tensor)
            else mask.detach()
        )
        if m.ndim != 2 or m.numel() == 0:
            raise ValueError(f"mask must have shape (H, W), got {tuple(m.shape)}")
        if m.is_complex() or not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("mask must contain only 0 and 1 (or booleans)")
        self.register_buffer("mask", m.to(torch.float32))
        if sensitivities is None:
            self.register_buffer("sensitivities", None)
        else:
            s = (
                torch.as_tensor(sensitivities)
                if not isinstance(sensitivities, torch.Tensor)
                else sensitivities.detach()
            )
            if s.is_complex():
                s = torch.stack((s.real, s.imag))
            elif s.ndim == 3:  # real maps
                s = torch.stack((s, torch.zeros_like(s)))
            if s.ndim != 4 or s.shape[0] != 2 or tuple(s.shape[2:]) != tuple(m.shape):
                raise ValueError(
                    f"sensitivities must be complex (N, H, W) or real (2, N, H, W) with (H, W) = {tuple(m.shape)}, "
                    f"got shape {tuple(s.shape)}"
                )
            if not bool(torch.isfinite(s).all()):
                raise ValueError("sensitivities contain NaN or infinite values")
            self.register_buffer("sensitivities", s.to(torch.float32))

    @property
    def coils(self) -> int:
        """Number of coils :math:`N` (0 without coil maps)."""
        return 0 if self.sensitivities is None else int(self.sensitivities.shape[1])

    def _maps(self, x: torch.Tensor, n_slice_dims: int) -> torch.Tensor:
        s = self.sensitivities.to(device=x.device, dtype=x.dtype)
        c = torch.complex(s[0], s[1])  # (N, H, W)
        return c.view(c.shape[0], *[1] * n_slice_dims, *c.shape[1:])

    def _check(self, t: torch.Tensor, name: str, kspace: bool) -> int:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(
                f"{name} must be a real floating-point tensor (two-channel complex layout)"
            )
        extra = 1 if (kspace and self.coils) else 0
        if (
            t.ndim not in (4 + extra, 5 + extra)
            or t.shape[1] != 2
            or tuple(t.shape[-2:]) != tuple(self.mask.shape)
        ):
            layout = "(B, 2, N, [D,] H, W)" if extra else "(B, 2, [D,] H, W)"
            raise ValueError(
                f"{name} must have shape {layout} with (H, W) = {tuple(self.mask.shape)}, got {tuple(t.shape)}"
            )
        if extra and t.shape[2] != self.coils:
            raise ValueError(f"{name} must have {self.coils} coils on axis 2, got {t.shape[2]}")
        return t.ndim - 4 - extra  # number of slice axes

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        n_slice = self._check(x, "x", kspace=False)
        z = _to_complex(x)  # (B, [D,] H, W)
        if self.coils:
            z = z[:, None] * self._maps(x, n_slice)
        return _to_real(fft2c(z) * self.mask.to(device=x.device, dtype=x.dtype))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        n_slice = self._check(y, "y", kspace=True)
        z = ifft2c(_to_complex(y) * self.mask.to(device=y.device, dtype=y.dtype))
        if self.coils:
            z = (z * self._maps(y, n_slice).conj()).sum(1)
        return _to_real(z)

    def A_dagger(self, y: torch.Tensor, **kwargs: object) -> torch.Tensor:  # noqa: N802
        if self.coils:
            return super().A_dagger(y, **kwargs)
        return self.A_adjoint(y)

    def norm(self, x: torch.Tensor, **kwargs: object) -> float:
        if self.coils:
            return super().norm(x, **kwargs)
        _check_finite_tensor(x, "x")
        return 1.0 if bool(self.mask.any()) else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.noise(self.A(_check_finite_tensor(x, "x")))
        return y * self.mask.to(device=y.device, dtype=y.dtype)

    def extra_repr(self) -> str:
        rate = float(self.mask.mean())
        return f"shape={tuple(self.mask.shape)}, sampled={rate:.3f}, coils={self.coils}"

r"""Parallel-beam CT: the discrete Radon transform with an exact adjoint, and filtered backprojection.

Geometry (the one of ``skimage.transform.radon(image, theta, circle=False)``):

* an ``(H, W)`` image is zero-padded, centred, to a ``P x P`` square with
  :math:`P = \lceil \sqrt 2 \max(H, W) \rceil` (so every ray through the image is kept);
  image index :math:`\lfloor n/2 \rfloor` sits at padded index :math:`\lfloor P/2 \rfloor`
  (the rotation centre :math:`o`);
* for an angle :math:`\theta` (degrees), the padded image is rotated by bilinear
  interpolation (zero outside),

  .. math:: \tilde x_\theta[r, c] = x\big(o + \cos\theta\,(r - o) - \sin\theta\,(c - o),\;
            o + \sin\theta\,(r - o) + \cos\theta\,(c - o)\big)

  (row, column), and summed over rows: the detector bin is the column,
  :math:`p_\theta[c] = \sum_r \tilde x_\theta[r, c]`;
* a sinogram is ``(B, C, P, n_angles)`` (detector bins first, as scikit-image).

The rotate-and-sum map is linear with fixed bilinear weights: :class:`CT` rotates with
``torch.nn.functional.grid_sample`` (bilinear, zeros outside) and computes the adjoint with
the transpose of that same sampler (the scatter of the same four weights per sample that
autograd uses for ``grid_sample``'s input gradient): the exact transpose, to rounding, and
differentiable in its input. Angles are processed in chunks to bound memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from mlimaging.inverse.base import Operator, _check_finite_tensor

__all__ = ["CT", "fbp"]

_CHUNK_POINTS = 1 << 21  # samples (angles x P x P) per chunk: bounds the memory of a call
FBP_FILTERS = ("ramp", "shepp-logan", "cosine", "hamming", "hann", None)


def _check_angles(angles: object) -> torch.Tensor:
    a = (
        torch.as_tensor(np.asarray(angles, dtype=np.float64))
        if not isinstance(angles, torch.Tensor)
        else angles.detach()
    )
    if a.ndim != 1 or a.numel() == 0:
        raise ValueError(
            f"angles must be a non-empty 1D sequence of degrees, got shape {tuple(a.shape)}"
        )
    if a.is_complex() or not bool(torch.isfinite(a.to(torch.float64)).all()):
        raise ValueError("angles must be finite real numbers (degrees)")
    return a.to(torch.float64)


def _check_size(image_size: object) -> tuple[int, int]:
    size = (image_size, image_size) if not isinstance(image_size, Sequence) else tuple(image_size)
    if len(size) != 2 or any(
        isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 2 for s in size
    ):
        raise ValueError(f"image_size must be an int >= 2 or (H, W), got {image_size!r}")
    return int(size[0]), int(size[1])


def detector_size(image_size: int | tuple[int, int]) -> int:
    r"""Number of detector bins :math:`P = \lceil \sqrt 2 \max(H, W) \rceil` (scikit-image's)."""
    h, w = _check_size(image_size)
    return int(math.ceil(math.sqrt(2) * max(h, w)))


def _grid_sample_transpose(
    grad: torch.Tensor, zeros: torch.Tensor, grid: torch.Tensor
) -> torch.Tensor:
    """Apply the transpose of ``v -> grid_sample(v, grid)`` (bilinear, zeros, align_corners) to ``grad``."""
    backward = getattr(torch.ops.aten, "grid_sampler_2d_backward", None)
    if backward is not None:  # the op autograd itself uses: no forward pass needed
        return backward(grad, zeros, grid, 0, 0, True, [True, False])[0]
    with torch.enable_grad():  # pragma: no cover (older or other builds)
        v = zeros.detach().requires_grad_(True)
        out = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return torch.autograd.grad(out, v, grad, create_graph=grad.requires_grad)[0]


class CT(Operator):
    r"""Parallel-beam computed tomography: the Radon transform :math:`A = R_\theta` (Radon 1917).

    .. math:: (R x)(\theta, t) = \int x(t \cos\theta - s \sin\theta,\; t \sin\theta + s \cos\theta)\, ds,

    discretised as in the module docstring (bilinear rotation and summation, the detector
    geometry of ``skimage.transform.radon(circle=False)``, whose output ours matches on
    Shepp–Logan). The adjoint :math:`R^\top` is the exact transpose of that matrix (a
    backprojection); :func:`fbp` is the classical filtered-backprojection inverse.

    Parameters
    ----------
    angles : sequence of float
        Projection angles in **degrees** (e.g. ``np.linspace(0, 180, 60, endpoint=False)``).
    image_size : int or (int, int)
        ``N`` (square images) or ``(H, W)``.
    noise : callable, optional
        Noise model.

    Notes
    -----
    Images ``(B, C, H, W)`` give sinograms ``(B, C, P, n_angles)``; volumes
    ``(B, C, D, H, W)`` are projected slice by slice into ``(B, C, D, P, n_angles)``.

    References
    ----------
    J. Radon, "Über die Bestimmung von Funktionen durch ihre Integralwerte längs gewisser
    Mannigfaltigkeiten", Ber. Verh. Sächs. Akad. Wiss. Leipzig 69, 1917.
    A. C. Kak and M. Slaney, *Principles of Computerized Tomographic Imaging*, IEEE Press, 1988.

    Examples
    --------
    >>> import torch
    >>> op = CT([0.0, 90.0], image_size=4)
    >>> op.A(torch.ones(1, 1, 4, 4))[0, 0].T.round(decimals=4) + 0  # column sums, then row sums
    tensor([[0., 4., 4., 4., 4., 0.],
            [0., 0., 4., 4., 4., 4.]])

    (With an even :math:`N` the rotation centre :math:`\lfloor N/2 \rfloor` is off the
    middle by half a pixel, so the 90° projection is shifted by one bin, as scikit-image's.)
    """

    def __init__(
        self,
        angles: Sequence[float] | np.ndarray | torch.Tensor,
        *,
        image_size: int | tuple[int, int],
        noise: object = None,
    ) -> None:
        super().__init__(noise=noise)
        self.register_buffer("angles", _check_angles(angles))
        self.image_size = _check_size(image_size)
        self.n_detectors = detector_size(self.image_size)

    @property
    def n_angles(self) -> int:
        return int(self.angles.numel())

    def _grids(self, device: torch.device, dtype: torch.dtype, channels: int):
        """Yield (angle slice, sampling grid (1, a * P, P, 2)) for ``grid_sample`` (align_corners)."""
        h, w = self.image_size
        p = self.n_detectors
        o = p // 2
        pad_r, pad_c = p // 2 - h // 2, p // 2 - w // 2
        step = max(1, _CHUNK_POINTS // (p * p * max(1, channels)))
        grid = torch.arange(p, device=device, dtype=torch.float64) - o
        r, c = grid.view(1, p, 1), grid.view(1, 1, p)
        for start in range(0, self.n_angles, step):
            theta = torch.deg2rad(self.angles[start : start + step].to(device)).view(-1, 1, 1)
            cos, sin = torch.cos(theta), torch.sin(theta)
            rows = (o - pad_r + cos * r - sin * c) * (2 / (h - 1)) - 1
            cols = (o - pad_c + sin * r + cos * c) * (2 / (w - 1)) - 1
            g = torch.stack((cols, rows), dim=-1).to(dtype)  # (a, P, P, 2), x = column first
            yield slice(start, start + step), g.reshape(1, -1, p, 2)

    def _check(self, t: torch.Tensor, name: str, tail: tuple[int, int], what: str) -> None:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise ValueError(f"{name} must be a real floating-point tensor")
        if t.ndim not in (4, 5) or tuple(t.shape[-2:]) != tail:
            raise ValueError(
                f"{name} must have shape (B, C, [D,] {tail[0]}, {tail[1]}) ({what}), got {tuple(t.shape)}"
            )

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        self._check(x, "x", self.image_size, "the image")
        lead, p = x.shape[:-2], self.n_detectors
        images = x.reshape(1, -1, *self.image_size)  # every image a channel: one grid serves all
        out = []
        for _, grid in self._grids(x.device, x.dtype, images.shape[1]):
            rotated = F.grid_sample(
                images, grid, mode="bilinear", padding_mode="zeros", align_corners=True
            )
            out.append(
                rotated.view(images.shape[1], -1, p, p).sum(dim=2)
            )  # sum over rows: (n, a, P)
        return torch.cat(out, dim=1).transpose(1, 2).reshape(*lead, p, self.n_angles)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        r"""The exact transpose of :meth:`A`: smear each projection along the rows, then
        apply the transpose of the bilinear rotation (a scatter of the same weights: the
        input-gradient of ``grid_sample``, which is differentiable in ``y``)."""
        self._check(y, "y", (self.n_detectors, self.n_angles), "the sinogram")
        lead, p = y.shape[:-2], self.n_detectors
        ys = y.reshape(-1, p, self.n_angles).transpose(1, 2)  # (n, n_angles, P)
        n = ys.shape[0]
        zeros = y.new_zeros(1, n, *self.image_size)
        out = y.new_zeros(1, n, *self.image_size)
        for sl, grid in self._grids(y.device, y.dtype, n):
            smeared = (
                ys[:, sl, None, :]
                .expand(n, grid.shape[1] // p, p, p)
                .reshape(1, n, grid.shape[1], p)
            )
            out = out + _grid_sample_transpose(smeared, zeros, grid)
        return out.reshape(*lead, *self.image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.noise(self.A(_check_finite_tensor(x, "x")))

    def fbp(self, y: torch.Tensor, *, filter: str | None = "ramp") -> torch.Tensor:  # noqa: A002
        """Filtered backprojection of ``y`` onto this operator's image grid (see :func:`fbp`)."""
        if self.image_size[0] != self.image_size[1]:
            raise ValueError("fbp reconstructs square images; image_size is not square")
        return fbp(y, self.angles, filter=filter, image_size=self.image_size[0])

    def extra_repr(self) -> str:
        return f"n_angles={self.n_angles}, image_size={self.image_size}, n_detectors={self.n_detectors}"


def _fourier_filter(size: int, name: str | None, dtype: torch.dtype) -> torch.Tensor:
    """Frequency response of the ramp filter built from its band-limited spatial kernel (Kak & Slaney eq. 3.61)."""
    n = torch.cat((torch.arange(1, size // 2 + 1, 2), torch.arange(size // 2 - 1, 0, -2))).to(
        torch.float64
    )
    h = torch.zeros(size, dtype=torch.float64)
    h[0] = 0.25
    h[1::2] = -1.0 / (math.pi * n) ** 2
    ramp = 2 * torch.fft.fft(h).real
    freq = torch.fft.fftfreq(size, dtype=torch.float64)
    if name == "shepp-logan":
        omega = math.pi * freq[1:]
        ramp[1:] = ramp[1:] * torch.sin(omega) / omega
    elif name == "cosine":
        ramp = ramp * torch.fft.fftshift(
            torch.sin(torch.linspace(0, math.pi, size + 1, dtype=torch.float64)[:-1])
        )
    elif name == "hamming":
        ramp = ramp * torch.fft.fftshift(
            torch.hamming_window(size, periodic=False, dtype=torch.float64)
        )
    elif name == "hann":
        ramp = ramp * torch.fft.fftshift(
            torch.hann_window(size, periodic=False, dtype=torch.float64)
        )
    elif name is None:
        ramp = torch.ones(size, dtype=torch.float64)
    return ramp.to(dtype)


def fbp(
    sinogram: torch.Tensor,
    angles: Sequence[float] | np.ndarray | torch.Tensor,
    *,
    filter: str | None = "ramp",  # noqa: A002
    image_size: int | None = None,
) -> torch.Tensor:
    r"""Filtered backprojection (FBP), the classical inverse of the Radon transform.

    Each projection is convolved with the ramp filter :math:`|\omega|` (optionally windowed),
    then smeared back across the image and summed over angles:

    .. math:: \hat x(u, v) = \frac{\pi}{2 n_\theta} \sum_{\theta} (p_\theta * h)(u\cos\theta - v\sin\theta),

    with :math:`u, v` the column and row offsets from the image centre. The ramp is built from
    its band-limited spatial kernel :math:`h[0] = 1/4`, :math:`h[n] = -1/(\pi n)^2` for odd
    :math:`n` (Kak & Slaney 1988, ch. 3, eq. 61), on projections zero-padded to a power of
    two :math:`\ge \max(64, 2P)`, and the filtered projections are interpolated linearly:
    the algorithm of ``skimage.transform.iradon`` (ours is vectorised over angles, batched
    and differentiable).

    Parameters
    ----------
    sinogram : Tensor
        ``(B, C, P, n_angles)`` or ``(B, C, D, P, n_angles)`` (as :class:`CT` produces).
    angles : sequence of float
        Angles in degrees.
    filter : str or None
        ``"ramp"`` (default), ``"shepp-logan"``, ``"cosine"``, ``"hamming"``, ``"hann"`` or
        ``None`` (unfiltered backprojection).
    image_size : int, optional
        Side of the square output; default :math:`\lfloor P / \sqrt 2 \rfloor` (which recovers
        ``N`` for a sinogram of an ``N x N`` image made by :class:`CT`).

    Returns
    -------
    Tensor
        ``(B, C, [D,] N, N)``.

    References
    ----------
    A. C. Kak and M. Slaney, *Principles of Computerized Tomographic Imaging*, IEEE Press,
    1988, ch. 3 (doi:10.1137/1.9780898719277).

    Examples
    --------
    >>> import numpy as np, torch
    >>> angles = np.linspace(0, 180, 90, endpoint=False)
    >>> x = torch.zeros(1, 1, 32, 32); x[..., 10:22, 12:20] = 1
    >>> rec = fbp(CT(angles, image_size=32).A(x), angles)
    >>> rec.shape, bool((rec - x).abs().mean() < 0.05)
    (torch.Size([1, 1, 32, 32]), True)
    """
    theta = _check_angles(angles)
    if not isinstance(sinogram, torch.Tensor) or not sinogram.is_floating_point():
        raise ValueError("sinogram must be a real floating-point tensor")
    if sinogram.ndim not in (4, 5) or sinogram.shape[-1] != theta.numel():
        raise ValueError(
            f"sinogram must have shape (B, C, [D,] P, n_angles) with n_angles = {theta.numel()}, got {tuple(sinogram.shape)}"
        )
    _check_finite_tensor(sinogram, "sinogram")
    if filter not in FBP_FILTERS:
        raise ValueError(f"filter must be one of {FBP_FILTERS}, got {filter!r}")
    p = sinogram.shape[-2]
    n = int(math.floor(p / math.sqrt(2))) if image_size is None else _check_size(image_size)[0]
    lead = sinogram.shape[:-2]
    s = sinogram.reshape(-1, p, theta.numel())
    size = max(64, int(2 ** math.ceil(math.log2(2 * p))))
    spec = (
        torch.fft.fft(s, n=size, dim=1)
        * _fourier_filter(size, filter, s.dtype).to(s.device)[None, :, None]
    )
    q = torch.fft.ifft(spec, dim=1).real[:, :p]  # (n, P, angles)
    q = torch.cat(
        (q, q.new_zeros(q.shape[0], 1, q.shape[2])), dim=1
    )  # index p: outside the detector
    grid = torch.arange(n, device=s.device, dtype=torch.float64) - n // 2
    rows, cols = grid.view(1, n, 1), grid.view(1, 1, n)
    out = s.new_zeros(s.shape[0], n, n)
    step = max(1, _CHUNK_POINTS // (n * n))
    for start in range(0, theta.numel(), step):
        th = torch.deg2rad(theta[start : start + step].to(s.device)).view(-1, 1, 1)
        t = cols * torch.cos(th) - rows * torch.sin(th) + p // 2  # detector coordinate, (a, N, N)
        t0 = torch.floor(t)
        frac = (t - t0).to(s.dtype)
        t0 = t0.long()
        a = torch.arange(start, start + th.shape[0], device=s.device).view(-1, 1, 1)
        value = 0
        for offset, wt in ((0, 1 - frac), (1, frac)):
            k = t0 + offset
            k = torch.where((k >= 0) & (k < p) & (t >= 0) & (t <= p - 1), k, p)
            flat = (k * theta.numel() + a).reshape(-1)
            value = value + wt * q.reshape(q.shape[0], -1).index_select(1, flat).view(
                q.shape[0], *k.shape
            )
        out = out + value.sum(1)
    out = out * (math.pi / (2 * theta.numel()))
    return out.reshape(*lead, n, n)

"""The optimisation machinery of :func:`mlimaging.registration.register` (private).

The pyramid levels (:class:`_Level`: the fixed image or a sample of its voxels, the moving
image and its central-difference gradient), the transform model about the centre of mass
(:class:`_Model`), and one registration problem (:class:`_Problem`: coarse-to-fine runs from
a start, the full-resolution assessment of a result, and the rotation-probe refinement).
See :mod:`mlimaging.registration.intensity` for the method and its references.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from mlimaging.registration.losses import LOSSES
from mlimaging.registration.transforms import affine_matrix, rigid_matrix
from mlimaging.registration.warp import normalized_theta

_TOL_GRAD, _TOL_CHANGE = 1e-5, 1e-6  # L-BFGS stopping on the normalised loss
#: Below this Gaussian sigma (voxels) a level uses the central-difference image gradient.
CENTRAL_GRADIENT_BELOW = 0.5


#: Percentiles of each image's intensities that bound the MI / NMI joint histogram.
HISTOGRAM_PERCENTILES = (0.5, 99.5)


def robust_range(image: Any) -> tuple[float, float]:
    """Histogram range of an image for MI / NMI: its 0.5 and 99.5 percentiles.

    A few outlier voxels (a hot pixel, a 32767 padding value) would otherwise set the
    bin width and squeeze the anatomy into one or two bins; intensities outside the range
    are clipped into the end bins (as ITK's Mattes MI does with its own limits). Falls
    back to [min, max] when the percentiles coincide and to [v, v + 1] for a constant image.

    Examples
    --------
    >>> img = np.arange(1000.0); img[0] = -1e6
    >>> robust_range(img)
    (4.995, 994.005)
    """
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    arr = arr.astype(np.float64, copy=False).reshape(-1)
    lo, hi = (float(v) for v in np.percentile(arr, HISTOGRAM_PERCENTILES))
    if not hi > lo:
        lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


def _translation(v: torch.Tensor) -> torch.Tensor:
    d = v.shape[0]
    m = torch.eye(d + 1, dtype=v.dtype)
    m[:d, d] = v
    return m


class _Model:
    """Builds ``T(p) = T0 Tr(c) L(p) Tr(-c)`` from the optimised parameter vector ``p``."""

    def __init__(self, kind: str, d: int, t0: torch.Tensor, centre: torch.Tensor, radius: float) -> None:
        self.kind, self.d, self.radius = kind, d, radius
        self.left = t0 @ _translation(centre)
        self.right = _translation(-centre)
        self.n = (3 if d == 2 else 6) if kind == "rigid" else d * (d + 1)

    def matrix(self, p: torch.Tensor) -> torch.Tensor:
        d = self.d
        if self.kind == "rigid":
            n_ang = 1 if d == 2 else 3
            q = torch.cat([p[:n_ang], p[n_ang:] * self.radius])
            local = rigid_matrix(q, spatial_dims=d)
        else:
            m = p.reshape(d, d + 1)
            eye = torch.eye(d, dtype=p.dtype)
            local = affine_matrix(torch.cat([m[:, :d] + eye, m[:, d:] * self.radius], dim=1), spatial_dims=d)
        return self.left @ local @ self.right


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    return ndi.gaussian_filter(img, sigma=sigma, mode="nearest") if sigma > 0 else img


def _pyramid_level(img: np.ndarray, spacing: tuple[float, ...], factor: int,
                   sigma: float) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Smooth (Gaussian, ``sigma`` voxels) and shrink by ``factor``; the physical extent is kept."""
    smooth = _smooth(img, sigma)
    if factor == 1:
        return torch.from_numpy(np.ascontiguousarray(smooth)), spacing
    shape = tuple(max(math.ceil(n / factor), min(n, 8)) for n in img.shape)
    mode = "bilinear" if img.ndim == 2 else "trilinear"
    small = F.interpolate(torch.from_numpy(smooth)[None, None], size=shape, mode=mode, align_corners=False)[0, 0]
    return small, tuple(s * n / m for s, n, m in zip(spacing, img.shape, shape, strict=True))


class _Level:
    """One pyramid level: the fixed image (or a random sample of its voxels) and the moving image.

    With ``central_gradient`` the values are still the linear interpolant of ``moving`` but
    their derivative with respect to the sampling points is the linearly interpolated
    central-difference gradient of ``moving`` (see the module docstring).
    """

    def __init__(self, fixed: torch.Tensor, f_sp: tuple[float, ...], moving: torch.Tensor,
                 m_sp: tuple[float, ...], sampling: float, rng: np.random.Generator, device: Any,
                 *, central_gradient: bool = False) -> None:
        d = fixed.ndim
        self.shape = tuple(fixed.shape)
        self.geometry = {"input_shape": tuple(moving.shape), "output_shape": self.shape,
                         "input_spacing": m_sp, "output_spacing": f_sp}
        self.fixed = fixed.reshape(-1).to(device)
        self.moving = moving[None, None].to(device)
        self.gradient: torch.Tensor | None = None
        if central_gradient:  # d moving / d grid coordinate, channels in grid order (x = last axis)
            grads = [torch.gradient(moving, dim=k)[0] * (moving.shape[k] / 2) for k in range(d)]
            self.gradient = torch.stack(grads[::-1])[None].to(device)
        self.base: torch.Tensor | None = None
        if sampling < 1.0:
            n = min(max(int(round(sampling * self.fixed.numel())), 64), self.fixed.numel())
            idx = torch.from_numpy(np.sort(rng.choice(self.fixed.numel(), size=n, replace=False))).to(device)
            eye = torch.eye(d, d + 1, dtype=torch.float32, device=device)[None]
            base = F.affine_grid(eye, [1, 1, *self.shape], align_corners=False).reshape(-1, d)
            self.base, self.fixed = base[idx], self.fixed[idx]
        self.value_range = (robust_range(fixed), robust_range(moving))

    def sample(self, transform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Moving intensities at the fixed voxels mapped by ``transform``, and which fall inside it."""
        d = len(self.shape)
        theta = normalized_theta(transform, device=self.moving.device, **self.geometry).to(self.moving.dtype)
        if self.base is None:
            grid = F.affine_grid(theta, [1, 1, *self.shape], align_corners=False)
        else:
            grid = (self.base @ theta[0, :, :d].T + theta[0, :, d]).reshape(1, -1, *([1] * (d - 1)), d)
        if self.gradient is None:
            values = F.grid_sample(self.moving, grid, mode="bilinear", padding_mode="border", align_corners=False)
        else:  # value of the interpolant, derivative from the central-difference gradient image
            points = grid.detach()
            with torch.no_grad():
                values = F.grid_sample(self.moving, points, mode="bilinear", padding_mode="border",
                                       align_corners=False)
                slope = F.grid_sample(self.gradient, points, mode="bilinear", padding_mode="border",
                                      align_corners=False)[0].movedim(0, -1)[None]
            values = values + ((grid - points) * slope).sum(dim=-1)[:, None]
        inside = (grid.detach().abs() <= 1.0).all(dim=-1).reshape(-1)
        return values.reshape(-1), inside


#: Refinement probes: rotations moving the points at the image radius by this many (smallest) voxels.
REFINE_PROBE_VOXELS = 2.0
#: At most this many reruns of the finest level from a lower probe.
REFINE_ROUNDS = 2
#: A registration fails when its overlap falls below this fraction of the starting overlap.
MIN_OVERLAP_RATIO = 0.5


def _rotated_starts(t0: torch.Tensor, centre: torch.Tensor, d: int, degrees: float) -> list[torch.Tensor]:
    """``t0`` composed with rotations of +-``degrees`` about each axis through ``centre``."""
    out = []
    axes = 1 if d == 2 else 3
    for axis in range(axes):
        for sign in (1.0, -1.0):
            params = torch.zeros(3 if d == 2 else 6, dtype=torch.float64)
            params[axis] = sign * math.radians(degrees)
            rot = rigid_matrix(params, spatial_dims=d)
            out.append(t0 @ _translation(centre) @ rot @ _translation(-centre))
    return out


class _Problem:
    """The images of one registration and its pyramid; runs the optimiser from a start and assesses results."""

    def __init__(self, f_img: np.ndarray, f_sp: tuple[float, ...], m_img: np.ndarray, m_sp: tuple[float, ...], *,
                 metric: str, sigmas: list[float], sampling: float, seed: int, device: Any, bins: int,
                 parzen_sigma: float) -> None:
        self.metric, self.sigmas, self.sampling, self.seed, self.device = metric, sigmas, sampling, seed, device
        self.f_img, self.f_sp, self.m_img, self.m_sp = f_img, f_sp, m_img, m_sp
        self.loss_fn = LOSSES[metric]
        self.hist = {"bins": bins, "parzen_sigma": parzen_sigma}
        self.levels: list[_Level] | None = None
        #: natural unit of the loss (intensity variance for SSD, deviation for SAD, 1 otherwise)
        self.loss_scale = {"ssd": float(f_img.var()), "sad": float(f_img.std())}.get(metric, 1.0) or 1.0
        self.final_level: _Level | None = None

    def _pyramid(self) -> list[_Level]:
        if self.levels is None:
            rng = np.random.default_rng(self.seed)
            n = len(self.sigmas)
            self.levels = []
            for level, sigma in enumerate(self.sigmas):
                f_l, f_sp_l = _pyramid_level(self.f_img, self.f_sp, 2 ** (n - 1 - level), sigma)
                m_l = torch.from_numpy(np.ascontiguousarray(_smooth(self.m_img, sigma)))
                self.levels.append(_Level(f_l, f_sp_l, m_l, self.m_sp, self.sampling, rng, self.device,
                                          central_gradient=sigma < CENTRAL_GRADIENT_BELOW))
        return self.levels

    def _kwargs(self, lvl: _Level) -> dict[str, Any]:
        return {**self.hist, "value_range": lvl.value_range} if self.metric in ("mi", "nmi") else {}

    def loss(self, lvl: _Level, matrix: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Loss over the fixed voxels that map inside the moving image (None below 16 of them), and the mask."""
        values, inside = lvl.sample(matrix)
        if self.metric == "lncc":
            return self.loss_fn(lvl.fixed.reshape(lvl.shape), values.reshape(lvl.shape)), inside
        if bool(inside.all()):
            return self.loss_fn(lvl.fixed, values, **self._kwargs(lvl)), inside
        if int(inside.sum()) >= 16:
            return self.loss_fn(lvl.fixed[inside], values[inside], **self._kwargs(lvl)), inside
        return None, inside

    def assess(self, matrix: torch.Tensor) -> tuple[float, float]:
        """Loss (at full resolution, the finest level's smoothing, every voxel) and overlap fraction."""
        if self.final_level is None:
            sigma = self.sigmas[-1]
            f_l = torch.from_numpy(np.ascontiguousarray(_smooth(self.f_img, sigma)))
            m_l = torch.from_numpy(np.ascontiguousarray(_smooth(self.m_img, sigma)))
            self.final_level = _Level(f_l, self.f_sp, m_l, self.m_sp, 1.0, np.random.default_rng(0), self.device)
        with torch.no_grad():
            loss, inside = self.loss(self.final_level, matrix.to(torch.float64))
        overlap = float(inside.to(torch.float64).mean())
        return (float(loss) if loss is not None else math.inf), overlap

    def run(self, t0: torch.Tensor, *, kind: str, centre: torch.Tensor, radius: float, its: list[int],
            optimizer: str, learning_rate: float, first_level: int = 0) -> tuple[torch.Tensor, list[list[float]]]:
        """Coarse-to-fine optimisation from ``t0`` (levels ``first_level`` on); the final matrix and the loss history."""
        d = self.f_img.ndim
        model = _Model(kind, d, t0, centre, radius)
        params = torch.zeros(model.n, dtype=torch.float64, requires_grad=True)
        history: list[list[float]] = []
        for level, lvl in enumerate(self._pyramid()):
            if level < first_level:
                continue
            record: list[float] = []
            scale: list[float] = []  # |loss| at the level's start: the optimiser sees a loss of order 1

            def objective(lvl: _Level = lvl, record: list[float] = record, scale: list[float] = scale,
                          first: bool = level == first_level) -> torch.Tensor:
                loss, _ = self.loss(lvl, model.matrix(params))
                if loss is None:  # no overlap: a constant high loss sends the line search back
                    if not scale and first:
                        raise ValueError("fixed and moving do not overlap at the start; use init='com' "
                                         "or a closer initial_transform")
                    # a coarser level already drove the images apart: the run ends there, and the caller's
                    # failure checks (no overlap left) mark it failed rather than raising mid-way
                    return params.sum() * 0.0 + 10.0
                if not scale:
                    scale.append(max(abs(float(loss.detach())), 1e-12))
                record.append(float(loss.detach()))
                return loss / scale[0]

            if optimizer == "lbfgs":
                opt = torch.optim.LBFGS([params], lr=1.0, max_iter=its[level], max_eval=int(its[level] * 1.5) + 1,
                                        tolerance_grad=_TOL_GRAD, tolerance_change=_TOL_CHANGE, history_size=10,
                                        line_search_fn="strong_wolfe")

                def closure(objective: Any = objective, opt: torch.optim.Optimizer = opt) -> torch.Tensor:
                    opt.zero_grad()
                    loss = objective()
                    loss.backward()
                    return loss

                opt.step(closure)
            else:
                opt = torch.optim.Adam([params], lr=learning_rate * 0.5**level)
                for _ in range(its[level]):
                    opt.zero_grad()
                    objective().backward()
                    opt.step()
            history.append(record)
        with torch.no_grad():
            return model.matrix(params.detach()), history

    def refine(self, final: torch.Tensor, history: list[list[float]], loss: float, overlap: float, *, angle: float,
               run_options: dict[str, Any]) -> tuple[torch.Tensor, list[list[float]], float, float, int]:
        """Probe rotations of +-``angle`` (radians) about each axis around ``final``; rerun the finest level from a lower one.

        At most ``REFINE_ROUNDS`` reruns, each kept only when it ends lower than the current
        result (with an intact overlap); their losses extend the finest level's history.
        ``loss`` and ``overlap`` are :meth:`assess` of ``final``. Returns the kept matrix, the
        history, its loss and overlap and the number of reruns kept.
        """
        d = self.f_img.ndim
        history = [list(h) for h in history]
        kept = 0
        for _ in range(REFINE_ROUNDS):
            probes = _rotated_starts(final, run_options["centre"], d, math.degrees(angle))
            probe_losses = [self.assess(p)[0] for p in probes]
            k = int(np.argmin(probe_losses))
            if not probe_losses[k] < loss:
                break
            cand, cand_history = self.run(probes[k], **run_options, first_level=len(self.sigmas) - 1)
            cand_loss, cand_overlap = self.assess(cand)
            if not (cand_loss < loss and cand_overlap >= MIN_OVERLAP_RATIO * overlap):
                break
            final, loss, overlap = cand, cand_loss, cand_overlap
            history[-1].extend(cand_history[-1])
            kept += 1
        return final, history, loss, overlap, kept

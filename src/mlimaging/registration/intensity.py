r"""Intensity-based rigid and affine registration, 2D and 3D, by gradient descent in PyTorch.

:func:`register` finds the transform :math:`T` (fixed to moving physical points, see
:mod:`mlimaging.registration.transforms`) that minimises a dissimilarity loss between
the fixed image :math:`F` and the warped moving image :math:`M \circ T`,

.. math:: \hat T = \arg\min_T \; \mathcal{L}\big(F(x), M(T x)\big)_{x \in \Omega_F \cap T^{-1}\Omega_M},

over the voxels of the fixed image whose image falls inside the moving image's field of
view (as ITK's metrics; the moving image is read with linear interpolation, the border
values extended over the outer half voxel as ITK's interpolator does, so the edge of the
field of view creates no artificial gradient). The transform is parametrised about the fixed image's centre of
mass :math:`c`, :math:`T = T_0 \, \mathrm{Tr}(c)\, L(p)\, \mathrm{Tr}(-c)`, where
:math:`T_0` is the initial transform (by default the translation between the centres of
mass) and :math:`L(p)` a rigid (angles, translation) or affine (:math:`I + D`,
translation) map whose translations are scaled by the image radius so that all
parameters have comparable effect. A Gaussian pyramid (factor 2 per level, smoothing
:math:`\sigma = f/2` voxels at shrink factor :math:`f > 1`, none at full resolution: ITK's usual
2, 1, 0 schedule) is solved coarse to fine with Adam
or L-BFGS (strong Wolfe line search), the loss divided by its value at the start of each
level so that the optimiser's tolerances do not depend on the intensity scale. As in
ITK's v4 registration framework, only the fixed image (the grid on which the loss is
summed) is shrunk; the moving image is smoothed but kept at full resolution, so that it
is interpolated at its own voxel size at every level (interpolating a shrunk moving
image makes the coarse-level loss prefer whole coarse-voxel shifts: minima several mm
from the truth). At levels without smoothing (:math:`\sigma < 0.5` voxel) the gradient
of the moving image is taken by central differences (linearly interpolated, as ITK's
metrics do) instead of the derivative of the linear interpolant: with white noise of
variance :math:`s^2`, the interpolant :math:`n(u) = (1-u)\,n_i + u\,n_{i+1}` at the
fraction :math:`u` of a voxel has :math:`\mathbb E[n\,\partial_u n] = s^2 (2u - 1)`, a
pull towards half-voxel positions (where interpolation averages the noise away), whereas
the central difference gives :math:`\mathbb E[n\,g] = 0` (Pluim, Maintz and Viergever
2000, DOI 10.1109/42.875181).

References: Maes et al. 1997 (multi-modality registration by maximisation of mutual
information, DOI 10.1109/42.563664); Studholme, Hill and Hawkes 1999 (NMI,
DOI 10.1016/S0031-3203(98)00091-0); Liu and Nocedal 1989 (L-BFGS,
DOI 10.1007/BF01589116).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mlimaging.registration._pyramid import (
    MIN_OVERLAP_RATIO,
    REFINE_PROBE_VOXELS,
    _Problem,
    _rotated_starts,
    _translation,
    robust_range,
)
from mlimaging.registration.losses import LOSSES
from mlimaging.registration.transforms import as_transform
from mlimaging.registration.warp import warp
from mlimaging.utils import check_spacing

__all__ = ["RegistrationResult", "RegistrationWarning", "center_of_mass", "centred_to_world", "register",
           "robust_range"]

_TRANSFORMS = ("rigid", "affine")
_OPTIMIZERS = ("adam", "lbfgs")
_INITS = ("com", "identity")
_DEFAULT_ITERATIONS = {"lbfgs": 30, "adam": 100}
#: Default Gaussian sigma (voxels) at full resolution, see ``register(smoothing=...)``.
SMOOTH_FINEST = 0.0


class RegistrationWarning(UserWarning):
    """:func:`register` did not find a transform it can trust (see ``RegistrationResult.message``)."""


@dataclass
class RegistrationResult:
    """Output of :func:`register`.

    Attributes
    ----------
    transform
        ``(d+1, d+1)`` float64 tensor mapping fixed physical points to moving ones (centred
        frames of :mod:`mlimaging.registration.transforms`).
    warped
        The moving image resampled onto the fixed image's grid,
        ``warp(moving, transform, spacing=moving_spacing, output_shape=fixed.shape,
        output_spacing=fixed_spacing)`` (just ``warp(moving, transform)`` with unit spacing
        and equal shapes); same type as ``moving``.
    history
        Loss values, one list per pyramid level (coarse to fine), one value per
        iteration (Adam) or per function evaluation (L-BFGS), of the run kept.
    initial_transform
        The starting transform ``T0`` (centred frames).
    converged
        False when the result is not trusted: the final loss is worse than the loss at
        ``T0``, or the overlap collapsed (below half the starting one), even after the
        restarts; :func:`register` then warns with :class:`RegistrationWarning`.
    message
        ``"converged"`` (and how many restarts were needed) or why the result failed.
    initial_loss, final_loss
        The loss at ``T0`` and at ``transform``, both at full resolution with the finest
        level's smoothing over every fixed voxel that maps inside the moving image.
    initial_overlap, overlap
        Fraction of the fixed voxels that map inside the moving image's field of view at
        ``T0`` and at ``transform``.
    restarts
        Number of restarts from rotated starts that were run (0 when the first run was
        trusted).
    refinements
        Number of reruns of the finest level from a lower probe that were kept (see
        ``register(refine=...)``; 0 when no probe was lower or with ``refine=False``).
    world_transform
        With ``fixed_geometry`` and ``moving_geometry``: the ``(d+1, d+1)`` matrix mapping
        fixed world points to moving world points (LPS, mm); None otherwise.
    """

    transform: torch.Tensor
    warped: Any
    history: list[list[float]] = field(default_factory=list)
    initial_transform: torch.Tensor | None = None
    converged: bool = True
    message: str = "converged"
    initial_loss: float = float("nan")
    final_loss: float = float("nan")
    initial_overlap: float = float("nan")
    overlap: float = float("nan")
    restarts: int = 0
    refinements: int = 0
    world_transform: torch.Tensor | None = None

    @property
    def loss(self) -> float:
        """The last loss value at the finest level."""
        return self.history[-1][-1] if self.history and self.history[-1] else float("nan")


def _as_image(x: Any, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric image, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D or 3D image (one channel), got shape {arr.shape}")
    if min(arr.shape) < 4:
        raise ValueError(f"{name} needs at least 4 voxels per axis, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr.astype(np.float32)


def _physical_axes(shape: Sequence[int], spacing: Sequence[float]) -> list[np.ndarray]:
    return [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)]


def center_of_mass(image: Any, *, spacing: float | Sequence[float] | None = None) -> np.ndarray:
    r"""Intensity centre of mass in physical coordinates (centre of the image = origin).

    .. math:: c = \frac{\sum_i w_i x_i}{\sum_i w_i}, \qquad w_i = |\tilde I_i - b|

    with :math:`\tilde I` the image clipped into its 0.5 and 99.5 percentiles
    (:func:`robust_range`, so that a few outlier voxels do not pull the centre) and :math:`b`
    the background: the centre of the most populated of 32 bins of :math:`\tilde I`, or its
    minimum when that bin is the lowest. So a bright background (a moving image with
    another background than the fixed one) does not pull the centre towards the middle of
    the field of view. The origin for a constant image.

    Examples
    --------
    >>> img = np.zeros((5, 5)); img[4, 2] = 1.0
    >>> center_of_mass(img, spacing=(2.0, 1.0)).tolist()
    [4.0, 0.0]
    """
    arr = _as_image(image, "image").astype(np.float64)
    sp = check_spacing(spacing, arr.ndim)
    lo, hi = robust_range(arr)
    clipped = np.clip(arr, lo, hi)
    counts, edges = np.histogram(clipped, bins=32, range=(lo, hi))
    k = int(np.argmax(counts))
    background = 0.5 * (edges[k] + edges[k + 1]) if k > 0 else lo
    w = np.abs(clipped - background)
    total = w.sum()
    if total <= 0:
        return np.zeros(arr.ndim)
    out = []
    for k, ax in enumerate(_physical_axes(arr.shape, sp)):
        other = tuple(j for j in range(arr.ndim) if j != k)
        out.append(float((w.sum(axis=other) * ax).sum() / total))
    return np.array(out)


def _check_options(transform: str, metric: str, levels: Any, iterations: Any, optimizer: str,
                   init: str, sampling: Any) -> list[int]:
    if transform not in _TRANSFORMS:
        raise ValueError(f"transform must be one of {_TRANSFORMS}, got {transform!r}")
    if metric not in LOSSES:
        raise ValueError(f"metric must be one of {tuple(LOSSES)}, got {metric!r}")
    if optimizer not in _OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {_OPTIMIZERS}, got {optimizer!r}")
    if init not in _INITS:
        raise ValueError(f"init must be one of {_INITS}, got {init!r}")
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 6:
        raise ValueError(f"levels must be an int in [1, 6], got {levels!r}")
    if isinstance(sampling, bool) or not isinstance(sampling, (int, float)) or not 0 < sampling <= 1:
        raise ValueError(f"sampling must be a fraction in (0, 1], got {sampling!r}")
    if metric == "lncc" and sampling < 1:
        raise ValueError("metric 'lncc' needs every voxel (sampling=1)")
    if iterations is None:
        iterations = _DEFAULT_ITERATIONS[optimizer]
    its = [iterations] * levels if isinstance(iterations, (int, np.integer)) else iterations
    try:
        its = list(its)
    except TypeError:
        its = []
    if len(its) != levels or not all(
            isinstance(i, (int, np.integer)) and not isinstance(i, bool) and i >= 1 for i in its):
        raise ValueError(f"iterations must be a positive int or {levels} positive ints (one per level), "
                         f"got {iterations!r}")
    its = [int(i) for i in its]
    return its


def register(
    fixed: Any,
    moving: Any,
    *,
    transform: str = "rigid",
    metric: str = "ssd",
    levels: int = 3,
    iterations: int | Sequence[int] | None = None,
    optimizer: str = "lbfgs",
    spacing: float | Sequence[float] | None = None,
    moving_spacing: float | Sequence[float] | None = None,
    init: str = "com",
    initial_transform: Any = None,
    learning_rate: float = 0.02,
    smoothing: Sequence[float] | None = None,
    sampling: float = 1.0,
    bins: int = 32,
    parzen_sigma: float = 0.5,
    seed: int = 0,
    restarts: int = 2,
    refine: bool = True,
    fixed_geometry: Any = None,
    moving_geometry: Any = None,
) -> RegistrationResult:
    r"""Rigid or affine intensity-based registration of ``moving`` onto ``fixed`` (2D or 3D).

    See the module docstring for the model. The loss is one of
    :mod:`mlimaging.registration.losses` (``"ssd"``, ``"sad"``, ``"ncc"``, ``"nmi"``; also
    ``"mi"`` and ``"lncc"``), computed on the overlap of the two fields of view.

    Parameters
    ----------
    fixed, moving
        2D or 3D single-channel images (NumPy or torch, possibly of different shapes).
    transform
        ``"rigid"`` (rotation + translation) or ``"affine"``.
    metric
        Dissimilarity: ``"ssd"`` / ``"sad"`` (same modality), ``"ncc"`` (linear intensity
        relation), ``"nmi"`` / ``"mi"`` (any statistical relation: multi-modal).
    levels
        Number of pyramid levels (factor 2 between levels).
    iterations
        Per level (int, or one int per level, coarse to fine): Adam steps or L-BFGS
        iterations; default 30 for L-BFGS, 100 for Adam.
    optimizer
        ``"lbfgs"`` (strong Wolfe line search) or ``"adam"`` (``learning_rate`` at the
        coarsest level, halved at each finer level).
    spacing, moving_spacing
        Voxel spacing (mm) of ``fixed`` and of ``moving`` (default: ``spacing``).
    init
        ``"com"``: start from the translation between the intensity centres of mass
        (rotations about the fixed centre of mass); ``"identity"``: from the identity.
    initial_transform
        A ``(d+1, d+1)`` starting transform; overrides ``init``.
    learning_rate
        Adam's step size (radians, or fraction of the image radius for translations).
    smoothing
        Gaussian sigma (voxels of the input grid) per level, coarse to fine, applied to both
        images (the fixed one is then shrunk by the level's factor, the moving one kept at
        full resolution); default :math:`f/2` at shrink factor :math:`f > 1` and none
        (``SMOOTH_FINEST``) at full resolution, as ITK's usual 2, 1, 0 schedule. Smoothing is
        linear, so it keeps the relation that SSD and NCC measure, but not the joint
        distribution that MI and NMI measure: with a non-linear intensity relation
        :math:`m = g(f)`, :math:`G_\sigma * g(f) \ne g(G_\sigma * f)`, and where two classes
        collapse onto one intensity in one image (a background as bright as a tissue), the
        texture that still separates them is averaged away. A final level smoothed by 1
        voxel left registrations with such a background 1.2 to 1.9 voxels off, in a local
        minimum of the loss (``benchmarks/registration.py``, setting ``backgrounds``).
        Levels with a sigma below ``CENTRAL_GRADIENT_BELOW`` (0.5 voxel) use the
        central-difference gradient of the moving image, which removes the noise-driven
        interpolation bias of linear interpolation (module docstring; Pluim, Maintz and
        Viergever 2000, DOI 10.1109/42.875181).
    sampling
        Fraction of the fixed voxels used by the loss (a fixed random subset per level, as
        ITK's random sampling); 1 uses all.
    bins, parzen_sigma
        Joint histogram of ``"mi"`` / ``"nmi"``: bins per image, Parzen kernel width in
        bins. Each image's intensities are first clipped into its 0.5 and 99.5 percentiles
        (:func:`robust_range`), and each level's histogram spans the same percentiles of
        that level's images, so that single outlier voxels set neither the bin width nor
        (after smoothing) steep false edges.
    seed
        Seeds the voxel sampling.
    restarts
        Rounds of restarts tried when the first run fails (final loss worse than at the
        start, or overlap below half the starting one): 0 (none), 1 (rotations of +-15
        degrees about each axis through the fixed centre of mass) or 2 (then +-30 degrees);
        the trusted run with the lowest final loss is kept. Restarts cost a full run each
        (2 per round in 2D, 6 in 3D) but only happen after a failure. When none is trusted
        and the first run's loss was worse than at the start while its transform moved no
        point of the fixed image by more than ``KEEP_START_VOXELS`` (0.1) of the smallest
        voxel, the start was already a minimum (an image registered to itself, or to a copy
        already aligned): the initial transform is returned, converged, and the message says
        so.
    refine
        After the finest level converges (and after the restarts, for the run kept), probe
        the full-resolution loss at the result composed with rotations of +-``angle`` about
        each axis through the fixed centre of mass, the angle that moves the points at the
        image radius by ``REFINE_PROBE_VOXELS`` (2) of the smallest voxels (2 probes in 2D,
        6 in 3D, one loss evaluation each). When a probe's loss is lower than the result's,
        the finest level is rerun from the lowest probe and its result kept if its loss is
        lower (and the overlap intact); at most ``REFINE_ROUNDS`` (2) such reruns. Why: the
        full-resolution loss can have local minima a voxel or two from the optimum that
        the failure checks cannot see (the loss is better than at the start, the overlap
        intact). Rotations are the weak direction: a rotation about the centre of mass
        barely moves the voxels near it, so the loss along an angle is flat and its noise
        makes minima. With a moving background raised to a tissue's intensity
        (``benchmarks/registration.py``, setting ``backgrounds``) one case ended in a
        minimum 3.2 degrees (1.9 voxels) off whose loss was 0.14% above the truth's; a
        probe 2 voxels away was 0.03% lower than it and the rerun found the truth's basin
        (0.5 voxel). Translation probes of 1 and 2 voxels never were lower on the
        benchmark. Costs the probes (about 50 ms each on a 48^3 pair with NMI: +16% to
        +29% of the run time on the benchmark's NMI settings, within timing noise with SSD)
        and a rerun of the finest level where a probe is lower. It reaches only minima
        within its probes' reach, and a lower loss is not always nearer the truth: of 36
        small (28^3) raised-background pairs, 11 ended 1 voxel or more off without it and 8
        with it (4 recovered, 1 moved farther off at a lower loss).
    fixed_geometry, moving_geometry
        :class:`mlimaging.data.ImageGeometry` of each image (spacing, origin, direction):
        register in world coordinates. The start is the world identity (``init="identity"``)
        or the world shift between the centres of mass (``"com"``), i.e.
        :math:`T_0 = G_m^{-1} G_f` (times the shift) with :func:`centred_to_world`, so two
        scans with different origins or directions register; ``result.world_transform``
        maps fixed world points to moving world points. ``initial_transform`` stays in the
        centred frames.

    Returns
    -------
    RegistrationResult
        ``.transform``, ``.warped``, ``.history``, ``.initial_transform``, ``.converged``,
        ``.message``, the initial and final losses and overlaps, ``.world_transform``.

    Warns
    -----
    RegistrationWarning
        When no run (the first, or a restart) is trusted; ``result.converged`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> from mlimaging.data import make_phantom
    >>> from mlimaging.registration import rigid_matrix, warp
    >>> fixed, _ = make_phantom((48, 48), seed=0)
    >>> true = rigid_matrix([0.1, 2.0, -1.5], spatial_dims=2)
    >>> moving = warp(fixed, torch.linalg.inv(true))  # so that moving(true x) = fixed(x)
    >>> result = register(fixed, moving, metric="ssd")
    >>> bool(torch.allclose(result.transform, true, atol=0.05))
    True
    """
    its = _check_options(transform, metric, levels, iterations, optimizer, init, sampling)
    if smoothing is None:
        sigmas = [2 ** (levels - 1 - k) / 2 if k < levels - 1 else SMOOTH_FINEST for k in range(levels)]
    else:
        try:
            sigmas = [float(v) for v in smoothing]
        except (TypeError, ValueError):
            sigmas = []
        if len(sigmas) != levels or not all(np.isfinite(v) and v >= 0 for v in sigmas):
            raise ValueError(f"smoothing must be {levels} non-negative sigmas (one per level), got {smoothing!r}")
    if isinstance(learning_rate, bool) or not (isinstance(learning_rate, (int, float)) and 0 < learning_rate < math.inf):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    is_torch = isinstance(moving, torch.Tensor)
    f_img, m_img = _as_image(fixed, "fixed"), _as_image(moving, "moving")
    d = f_img.ndim
    if m_img.ndim != d:
        raise ValueError(f"fixed and moving must both be 2D or both 3D, got shapes {f_img.shape} and {m_img.shape}")
    if metric == "lncc" and f_img.shape != m_img.shape:
        raise ValueError("metric 'lncc' needs fixed and moving of the same shape")
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or not 0 <= restarts <= 2:
        raise ValueError(f"restarts must be 0, 1 or 2 (rounds of restarts from rotated starts), got {restarts!r}")
    if not isinstance(refine, (bool, np.bool_)):
        raise ValueError(f"refine must be True or False, got {refine!r}")
    if (fixed_geometry is None) != (moving_geometry is None):
        raise ValueError("fixed_geometry and moving_geometry go together: give both or neither")
    g_fixed = g_moving = None
    if fixed_geometry is not None:
        f_sp, g_fixed = _geometry_spacing(fixed_geometry, spacing, f_img, "fixed")
        m_sp, g_moving = _geometry_spacing(moving_geometry, moving_spacing, m_img, "moving")
    else:
        f_sp = check_spacing(spacing, d)
        m_sp = check_spacing(moving_spacing, d, name="moving_spacing") if moving_spacing is not None else f_sp
    device = moving.device if is_torch else torch.device("cpu")

    c_fixed = torch.from_numpy(center_of_mass(f_img, spacing=f_sp))
    c_moving = torch.from_numpy(center_of_mass(m_img, spacing=m_sp))
    if initial_transform is not None:
        t0 = as_transform(initial_transform, name="initial_transform", spatial_dims=d).detach().to(torch.float64).cpu()
    elif g_fixed is not None and g_moving is not None:  # start from the world identity (or world COM shift)
        t0 = torch.linalg.solve(g_moving, g_fixed)
        if init == "com":
            t0 = _translation(c_moving - _apply(t0, c_fixed)) @ t0
    elif init == "com":
        t0 = _translation(c_moving - c_fixed)
    else:
        t0 = torch.eye(d + 1, dtype=torch.float64)
    centre = c_fixed if init == "com" or initial_transform is not None else torch.zeros(d, dtype=torch.float64)
    radius = float(np.linalg.norm([n * s / 2 for n, s in zip(f_img.shape, f_sp, strict=True)]) / math.sqrt(d))
    if metric in ("mi", "nmi"):  # the histogram clips anyway; clipping first keeps outliers' edges out of the gradient
        f_img, m_img = np.clip(f_img, *robust_range(f_img)), np.clip(m_img, *robust_range(m_img))
    problem = _Problem(f_img, f_sp, m_img, m_sp, metric=metric, sigmas=sigmas, sampling=sampling, seed=seed,
                       device=device, bins=bins, parzen_sigma=parzen_sigma)
    run_options = {"kind": transform, "centre": centre, "radius": radius, "its": its, "optimizer": optimizer,
                   "learning_rate": learning_rate}

    initial_loss, initial_overlap = problem.assess(t0)
    if not initial_overlap > 0:
        raise ValueError("fixed and moving do not overlap at the start; use init='com' or a closer initial_transform")
    angle = REFINE_PROBE_VOXELS * min(f_sp) / radius
    refinements = 0
    final, history = problem.run(t0, **run_options)
    final_loss, overlap = problem.assess(final)
    if refine:
        final, history, final_loss, overlap, refinements = problem.refine(
            final, history, final_loss, overlap, angle=angle, run_options=run_options)
    problem_found = _failure(initial_loss, final_loss, initial_overlap, overlap, problem.loss_scale)
    tried = 0
    if problem_found and restarts:
        best: tuple[float, torch.Tensor, list[list[float]], float] | None = None
        for angle in _RESTART_DEGREES[:restarts]:
            for start in _rotated_starts(t0, centre, d, angle):
                tried += 1
                try:
                    cand, cand_history = problem.run(start, **run_options)
                except ValueError:  # no overlap from this start
                    continue
                cand_loss, cand_overlap = problem.assess(cand)
                ok = not _failure(initial_loss, cand_loss, initial_overlap, cand_overlap, problem.loss_scale)
                if ok and (best is None or cand_loss < best[0]):
                    best = (cand_loss, cand, cand_history, cand_overlap)
            if best is not None:
                break
        if best is not None:
            final_loss, final, history, overlap = best
            problem_found = ""
            if refine:
                final, history, final_loss, overlap, refinements = problem.refine(
                    final, history, final_loss, overlap, angle=angle, run_options=run_options)
    kept_start = ""
    if problem_found.startswith(_WORSE) and _largest_move(final, t0, f_img.shape, f_sp) <= KEEP_START_VOXELS * min(
            min(f_sp), min(m_sp)):
        # the run ended a hair from where it started, a hair worse: the start was already a minimum (an image
        # registered to itself, or to a copy already aligned), not a run that wandered off; keep the start
        kept_start = (f"converged: the initial transform kept, already a minimum (the run ended within "
                      f"{_largest_move(final, t0, f_img.shape, f_sp):.3g} mm of it at a loss {final_loss:.6g}, no "
                      f"lower than its {initial_loss:.6g}" + (f"; {tried} restarts from rotated starts found no "
                                                               "lower one" if tried else "") + ")")
        final, final_loss, overlap, problem_found = t0, initial_loss, initial_overlap, ""
    converged = not problem_found
    if kept_start:
        message = kept_start
    elif converged:
        message = "converged" + (f" after {tried} restarts from rotated starts" if tried else "")
    else:
        message = (f"registration failed: {problem_found}" + (f"; {tried} restarts from rotations of "
                   f"{', '.join(f'+-{a:g}' for a in _RESTART_DEGREES[:restarts])} degrees about each axis "
                   "did not help" if tried else "") + "; the transform is not to be trusted (try another metric, "
                   "init or initial_transform)")
        warnings.warn(message, RegistrationWarning, stacklevel=2)

    with torch.no_grad():
        warped = warp(moving, final, spacing=m_sp, output_shape=f_img.shape, output_spacing=f_sp)
    world = None
    if g_fixed is not None and g_moving is not None:
        world = g_moving @ final @ torch.linalg.inv(g_fixed)
    return RegistrationResult(transform=final, warped=warped, history=history, initial_transform=t0,
                              converged=converged, message=message, initial_loss=initial_loss,
                              final_loss=final_loss, initial_overlap=initial_overlap, overlap=overlap,
                              restarts=tried, refinements=refinements, world_transform=world)


#: Restart rotations (degrees, + and - about each axis), one round per entry.
_RESTART_DEGREES = (15.0, 30.0)
def _failure(initial_loss: float, final_loss: float, initial_overlap: float, overlap: float,
             loss_scale: float = 1.0) -> str:
    """Why a result is not trusted ("" when it is); ``loss_scale`` is the loss's natural unit (rounding slack)."""
    if not math.isfinite(final_loss):
        return "the final transform leaves too few fixed voxels inside the moving image"
    if overlap < MIN_OVERLAP_RATIO * initial_overlap:
        return (f"the overlap collapsed: {overlap:.0%} of the fixed voxels map inside the moving image, "
                f"against {initial_overlap:.0%} at the start")
    if final_loss > initial_loss + 1e-4 * abs(initial_loss) + 1e-6 * loss_scale:  # 1e-6: float32 rounding
        return f"{_WORSE} {final_loss:.6g} is worse than at the start ({initial_loss:.6g})"
    return ""


_WORSE = "the final loss"
#: A run whose loss ends worse than at the start but whose transform moved no point of the fixed image by more than
#: this many (smallest) voxels keeps its start (converged): the start was already a minimum.
KEEP_START_VOXELS = 0.1


def _largest_move(a: torch.Tensor, b: torch.Tensor, shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Largest distance (mm) between where two transforms send a point of the fixed image (centred frame).

    The difference of two affine maps is affine, so its largest norm over the image's box is at a corner.
    """
    half = [(n - 1) * s / 2 for n, s in zip(shape, spacing, strict=True)]
    corners = torch.tensor(list(itertools.product(*[(-h, h) for h in half])), dtype=torch.float64)
    diff = (a.double() - b.double())[:-1]
    moved = corners @ diff[:, :-1].T + diff[:, -1]
    return float(moved.norm(dim=1).max())


def _apply(matrix: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    d = point.shape[0]
    return matrix[:d, :d] @ point + matrix[:d, d]


def _geometry_spacing(geometry: Any, spacing: Any, image: np.ndarray, name: str) -> tuple[tuple[float, ...],
                                                                                          torch.Tensor]:
    """Spacing and centred-physical-to-world matrix of an image geometry (checked against ``image``)."""
    option = f"{name}_geometry"
    try:
        g_sp, origin = tuple(float(v) for v in geometry.spacing), np.asarray(geometry.origin, dtype=np.float64)
        direction = np.asarray(geometry.direction, dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"{option} must be an ImageGeometry (spacing, origin, direction), "
                         f"got {type(geometry).__name__}") from None
    d = image.ndim
    if len(g_sp) != d or direction.shape != (d, d) or origin.shape != (d,):
        raise ValueError(f"{option} must describe a {d}D image in a {d}D world, got spacing {g_sp} and "
                         f"direction of shape {direction.shape}")
    if spacing is not None and not np.allclose(check_spacing(spacing, d), g_sp):
        raise ValueError(f"{'spacing' if name == 'fixed' else 'moving_spacing'} {spacing!r} disagrees with "
                         f"{option}.spacing {g_sp}; give one of them")
    return g_sp, torch.from_numpy(centred_to_world(image.shape, g_sp, origin, direction))


def centred_to_world(shape: Sequence[int], spacing: Sequence[float], origin: Any, direction: Any) -> np.ndarray:
    r"""Homogeneous matrix from the centred physical coordinates of this module to world coordinates.

    With :math:`x` the centred physical point of :mod:`mlimaging.registration.transforms`
    (centre of the image = origin, mm, array axis order) and :math:`w = o + D\,\mathrm{diag}(s)\,i`
    the world point of index :math:`i` (:class:`mlimaging.data.ImageGeometry`),

    .. math:: G = \begin{pmatrix} D & o + D\,\mathrm{diag}(s)\,c \\ 0 & 1 \end{pmatrix},
              \qquad c_k = (n_k - 1)/2 .

    A transform :math:`T` between centred frames (fixed to moving) is
    :math:`W = G_m\,T\,G_f^{-1}` between the worlds.

    Examples
    --------
    >>> centred_to_world((3, 5), (2.0, 1.0), (10.0, 0.0), np.eye(2)).tolist()
    [[1.0, 0.0, 12.0], [0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]
    """
    sp = np.asarray(spacing, dtype=np.float64)
    dirs = np.asarray(direction, dtype=np.float64)
    d = sp.size
    c = (np.asarray(shape, dtype=np.float64) - 1) / 2
    g = np.eye(d + 1)
    g[:d, :d] = dirs
    g[:d, d] = np.asarray(origin, dtype=np.float64) + dirs @ (sp * c)
    return g

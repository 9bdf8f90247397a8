"""Synthetic 2D/3D phantoms with the segmentation challenges of the course.

:func:`make_phantom` draws an anatomy-like label map (a body with organs inside it,
neighbouring and nested, one of them small) and renders an image of it in which each
challenge of segmentation can be switched on by one knob:

==================  =========================================================================
knob (default)      what it simulates
==================  =========================================================================
``noise`` (0)       additive Gaussian noise, std ``noise`` x the nominal intensity range 1
``bias_field`` (0)  smooth multiplicative intensity inhomogeneity ``exp(bias_field * s(x))``
``partial_volume``  Gaussian blur of ``partial_volume`` voxels: boundary voxels mix classes
``anisotropy`` (1)  slabs ``anisotropy`` voxels thick along the LAST axis (coarser resolution)
``artifacts`` (0)   a bright (metal-like) disc with radial bright/dark streaks, as in CT
``contrast`` (1)    scales the intensity differences between structures (1 = well separated)
``variability``     random smooth changes of position, size, orientation and outline per seed
==================  =========================================================================

The label map is the ground truth *before* degradation: for a fixed ``seed`` it depends
only on ``shape``, ``n_structures`` and ``variability``, never on the other knobs.

:class:`PhantomDataset` wraps :func:`make_phantom` as a ``torch.utils.data.Dataset``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from scipy import ndimage

__all__ = ["PHANTOM_KNOBS", "MAX_STRUCTURES", "make_phantom", "PhantomDataset"]

#: The challenge knobs of :func:`make_phantom` and their defaults (iterating gives the names).
PHANTOM_KNOBS: dict[str, float] = {
    "noise": 0.0,
    "bias_field": 0.0,
    "partial_volume": 0.0,
    "anisotropy": 1.0,
    "artifacts": 0.0,
    "contrast": 1.0,
    "variability": 0.0,
}

BACKGROUND_INTENSITY = 0.0
NOMINAL_RANGE = 1.0  # the clean image spans [0, 1] at contrast=1 (n_structures >= 3)

# Template anatomy in normalised coordinates ([-1, 1] along every axis; 2D uses the
# first two components): (centre, radii, intensity at contrast=1, parent label, flexibility).
# Children are clipped to their parent; later structures are painted over earlier ones.
_TEMPLATE: tuple[tuple[tuple[float, ...], tuple[float, ...], float, int, float], ...] = (
    ((0.00, 0.00, 0.00), (0.85, 0.72, 0.80), 0.30, 0, 0.5),   # 1 body
    ((-0.12, -0.30, 0.00), (0.42, 0.32, 0.50), 0.70, 1, 1.0),  # 2 large organ
    ((-0.05, -0.34, 0.05), (0.17, 0.17, 0.20), 1.00, 2, 1.0),  # 3 small lesion inside 2
    ((0.05, 0.28, 0.00), (0.32, 0.26, 0.45), 0.50, 1, 1.0),    # 4 organ touching 2
    ((0.50, -0.05, -0.20), (0.18, 0.22, 0.25), 0.90, 1, 1.0),  # 5
    ((-0.55, 0.28, 0.15), (0.16, 0.20, 0.22), 0.60, 1, 1.0),   # 6
    ((0.10, 0.34, -0.10), (0.14, 0.14, 0.18), 0.80, 4, 1.0),   # 7 inside 4
    ((0.48, 0.32, 0.25), (0.14, 0.14, 0.18), 0.40, 1, 1.0),    # 8
)
#: Largest ``n_structures`` accepted by :func:`make_phantom`.
MAX_STRUCTURES = len(_TEMPLATE)

_N_FOURIER = 5  # terms of the smooth random radial deformation
# Independent random streams, one per knob (SeedSequence spawn keys).
_STREAM = {"geometry": 0, "noise": 1, "bias_field": 2, "artifacts": 3}


# --------------------------------------------------------------------------- validation
def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def _check_shape(shape: Any) -> tuple[int, ...]:
    try:
        dims = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be a tuple of 2 or 3 ints >= 16, got {shape!r}") from None
    if len(dims) not in (2, 3) or not all(
        isinstance(d, Integral) and not isinstance(d, bool) and int(d) >= 16 for d in dims
    ):
        raise ValueError(f"shape must be a tuple of 2 or 3 ints >= 16, got {shape!r}")
    return tuple(int(d) for d in dims)


def _check_knobs(n_structures: Any, knobs: dict[str, Any]) -> tuple[int, dict[str, float]]:
    if (isinstance(n_structures, bool) or not isinstance(n_structures, Integral)
            or not 1 <= int(n_structures) <= MAX_STRUCTURES):
        raise ValueError(f"n_structures must be an int in [1, {MAX_STRUCTURES}], got {n_structures!r}")
    out: dict[str, float] = {}
    for name, value in knobs.items():
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        out[name] = float(value)
    limits = {
        "noise": (out["noise"] >= 0, ">= 0"),
        "bias_field": (out["bias_field"] >= 0, ">= 0"),
        "partial_volume": (out["partial_volume"] >= 0, ">= 0"),
        "anisotropy": (out["anisotropy"] >= 1, ">= 1"),
        "artifacts": (out["artifacts"] >= 0, ">= 0"),
        "contrast": (0 < out["contrast"] <= 1, "in (0, 1]"),
        "variability": (0 <= out["variability"] <= 1, "in [0, 1]"),
    }
    for name, (ok, what) in limits.items():
        if not ok:
            raise ValueError(f"{name} must be {what}, got {knobs[name]!r}")
    return int(n_structures), out


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAM[stream],)))


def _grid_axes(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Normalised voxel-centre coordinates in [-1, 1] along every axis."""
    return [(np.arange(n) - (n - 1) / 2.0) / (n / 2.0) for n in shape]


# --------------------------------------------------------------------------- geometry
def _rotation(ndim: int, axis: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    if ndim == 2:
        return np.array([[c, -s], [s, c]])
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + s * k + (1 - c) * (k @ k)  # Rodrigues


def _geometry(ndim: int, seed: int, variability: float) -> list[dict[str, Any]]:
    """Per-structure centre, radii, rotation and deformation (template + variability x draws).

    The draws are made for all template structures in a fixed order whatever ``ndim``
    or ``n_structures``, so with ``variability=0`` the geometry is the template itself.
    """
    rng = _rng(seed, "geometry")
    out: list[dict[str, Any]] = []
    for centre, radii, _, parent, flex in _TEMPLATE:
        shift = np.clip(rng.standard_normal(3), -2.5, 2.5)
        scale = np.clip(rng.standard_normal(3), -2.5, 2.5)
        axis = rng.standard_normal(3)
        angle = float(np.clip(rng.standard_normal(), -2.5, 2.5))
        freqs = rng.standard_normal((_N_FOURIER, 3))
        freqs *= rng.uniform(1.5, 3.5, (_N_FOURIER, 1)) / np.linalg.norm(freqs, axis=1, keepdims=True)
        phases = rng.uniform(0, 2 * np.pi, _N_FOURIER)
        amps = 0.07 * np.clip(rng.standard_normal(_N_FOURIER), -2.5, 2.5)

        v = variability * flex
        c = np.asarray(centre[:ndim]) + v * 0.05 * shift[:ndim]
        if parent:  # children move with their parent
            c = c + (out[parent - 1]["centre"] - np.asarray(_TEMPLATE[parent - 1][0][:ndim]))
        r = np.asarray(radii[:ndim]) * np.exp(v * 0.12 * scale[:ndim])
        rot = _rotation(ndim, axis / np.linalg.norm(axis), v * 0.3 * angle)
        out.append({"centre": c, "radii": r, "rot": rot, "freqs": freqs[:, :ndim],
                    "phases": phases, "amps": v * amps, "parent": parent})
    return out


def _structure_mask(axes: list[np.ndarray], g: dict[str, Any]) -> np.ndarray:
    r"""Voxels with :math:`|p| \le 1 + \sum_j a_j \cos(k_j \cdot p/|p| + \varphi_j)`, where
    :math:`p = R^\top (x - c) / r` (a deformed, rotated ellipse/ellipsoid)."""
    shape = tuple(len(a) for a in axes)
    mask = np.zeros(shape, dtype=bool)
    mmax = 1.0 + float(np.abs(g["amps"]).sum())
    half = mmax * np.sqrt(((g["rot"] * g["radii"]) ** 2).sum(axis=1))  # bounding box half-extents
    box = []
    for ax, n, c, h in zip(axes, shape, g["centre"], half, strict=True):
        lo = int(np.searchsorted(ax, c - h, side="left"))
        hi = int(np.searchsorted(ax, c + h, side="right"))
        if hi <= lo:
            return mask
        box.append(slice(lo, min(hi, n)))
    box = tuple(box)
    x = np.stack(np.meshgrid(*[ax[sl] for ax, sl in zip(axes, box, strict=True)], indexing="ij"))
    x = x - g["centre"].reshape((-1,) + (1,) * len(shape))
    p = np.tensordot(g["rot"].T, x, axes=1) / g["radii"].reshape((-1,) + (1,) * len(shape))
    d = np.sqrt((p**2).sum(axis=0))
    u = p / np.maximum(d, 1e-12)
    m = np.ones_like(d)
    for k, phi, a in zip(g["freqs"], g["phases"], g["amps"], strict=True):
        if a != 0.0:
            m += a * np.cos(np.tensordot(k, u, axes=1) + phi)
    mask[box] = d <= np.maximum(m, 0.4)
    return mask


def _render_labels(shape: tuple[int, ...], n_structures: int, seed: int, variability: float) -> np.ndarray:
    axes = _grid_axes(shape)
    geometry = _geometry(len(shape), seed, variability)
    labels = np.zeros(shape, dtype=np.int64)
    masks: list[np.ndarray] = []
    for k, g in enumerate(geometry[:n_structures], start=1):
        mask = _structure_mask(axes, g)
        if g["parent"]:
            mask &= masks[g["parent"] - 1]
        masks.append(mask)
        labels[mask] = k
    # Guarantee every label: a structure squeezed out entirely gets the voxel of its
    # parent's region (or any non-background voxel) nearest to its centre.
    for k in range(1, n_structures + 1):
        if not np.any(labels == k):
            g = geometry[k - 1]
            host = labels == g["parent"] if np.any(labels == g["parent"]) else labels > 0
            idx = np.argwhere(host)
            centre_idx = g["centre"] * (np.asarray(shape) / 2.0) + (np.asarray(shape) - 1) / 2.0
            labels[tuple(idx[np.argmin(((idx - centre_idx) ** 2).sum(axis=1))])] = k
    return labels


def _intensities(n_structures: int, contrast: float) -> np.ndarray:
    """Look-up table label -> clean intensity; structure intensities are pulled towards
    the body's by ``contrast`` (background stays fixed)."""
    ref = _TEMPLATE[0][2]
    lut = [BACKGROUND_INTENSITY] + [ref + contrast * (t[2] - ref) for t in _TEMPLATE[:n_structures]]
    return np.asarray(lut)


# --------------------------------------------------------------------------- degradations
def _bias_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A low-frequency field in [-1, 1]: a linear ramp plus 3 slow cosines (periods of 1 to
    2 fields of view), scaled to span [-1, 1] over the inscribed ellipse/ellipsoid of the
    field of view, where the body lies, and clipped to [-1, 1] outside it."""
    ndim = len(shape)
    x = np.meshgrid(*_grid_axes(shape), indexing="ij", sparse=True)
    ramp = rng.standard_normal(ndim)
    s = sum(w * xi for w, xi in zip(ramp, x, strict=True))
    for _ in range(3):
        k = rng.standard_normal(ndim)
        k *= rng.uniform(0.5, 1.0) * np.pi / np.linalg.norm(k)
        s = s + rng.uniform(0.5, 1.0) * np.cos(sum(ki * xi for ki, xi in zip(k, x, strict=True)) + rng.uniform(0, 2 * np.pi))
    s = np.broadcast_to(s, shape)
    inside = np.broadcast_to(sum(xi**2 for xi in x) <= 1.0, shape)
    lo, hi = float(s[inside].min()), float(s[inside].max())
    return np.clip(2.0 * (s - lo) / (hi - lo) - 1.0, -1.0, 1.0)


def _thick_slices(image: np.ndarray, factor: float) -> np.ndarray:
    """Average slabs of ``factor`` voxels along the last axis (fractional slab borders are
    weighted exactly), then interpolate linearly between slab centres back onto the grid."""
    n = image.shape[-1]
    edges = np.minimum(np.arange(0.0, n + factor, factor), n)
    edges = np.unique(np.append(edges, n))
    # Exact integral of the voxel-wise constant signal: piecewise-linear cumulative sum.
    cum = np.concatenate([np.zeros(image.shape[:-1] + (1,)), np.cumsum(image, axis=-1)], axis=-1)
    i0 = np.floor(edges).astype(int)
    frac = edges - i0
    i1 = np.minimum(i0 + 1, n)
    c_at = cum[..., i0] * (1 - frac) + cum[..., i1] * frac
    slabs = np.diff(c_at, axis=-1) / np.diff(edges)
    centres = (edges[:-1] + edges[1:]) / 2.0 - 0.5  # in voxel-index coordinates
    j = np.arange(n, dtype=float)
    pos = np.interp(j, centres, np.arange(len(centres), dtype=float))
    k0 = np.floor(pos).astype(int)
    k1 = np.minimum(k0 + 1, len(centres) - 1)
    w = pos - k0
    return slabs[..., k0] * (1 - w) + slabs[..., k1] * w


def _metal(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disc mask (broadcast along the last axis in 3D) and the in-plane streak pattern."""
    plane = labels if labels.ndim == 2 else labels[..., labels.shape[-1] // 2]
    h, w = plane.shape
    radius = max(1.0, 0.035 * min(h, w))
    dist = ndimage.distance_transform_edt(plane == 1)
    cand = np.argwhere(dist >= radius + 2)
    if len(cand):
        cy, cx = cand[rng.integers(len(cand))]
    else:
        cy, cx = np.unravel_index(int(np.argmax(dist)), dist.shape)
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    r = np.hypot(yy, xx)
    disc = r <= radius
    n_streaks = int(rng.integers(6, 11))
    angles = np.sort(rng.uniform(0, np.pi, n_streaks))
    amps = rng.uniform(0.6, 1.0, n_streaks) * np.where(np.arange(n_streaks) % 2 == 0, 1.0, -1.0)
    pattern = np.zeros((h, w))
    for theta, a in zip(angles, amps, strict=True):
        across = yy * math.cos(theta) - xx * math.sin(theta)  # distance to the line at angle theta
        pattern += a * np.exp(-(across**2) / (2 * 0.8**2))
    pattern *= 1.0 / (1.0 + r / (0.3 * min(h, w)))
    pattern[disc] = 0.0
    if labels.ndim == 3:
        disc = np.broadcast_to(disc[..., None], labels.shape)
        pattern = pattern[..., None]
    return disc, pattern


# --------------------------------------------------------------------------- public API
def make_phantom(
    shape: tuple[int, ...],
    *,
    seed: int,
    n_structures: int = 3,
    noise: float = 0.0,
    bias_field: float = 0.0,
    partial_volume: float = 0.0,
    anisotropy: float = 1.0,
    artifacts: float = 0.0,
    contrast: float = 1.0,
    variability: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""A synthetic 2D or 3D image and its label map, with tunable segmentation challenges.

    Geometry: in normalised coordinates (:math:`[-1, 1]` along each axis, so the anatomy
    fills the field of view whatever the shape) structure 1 is an elliptical "body";
    structures 2, 4, 5, 6, 8 are organs inside it (2 and 4 touch), 3 is a small lesion
    nested in 2 and 7 is nested in 4. Each structure is a rotated ellipse/ellipsoid with
    a smoothly deformed radius,

    .. math::
        p = R^\top (x - c) / r, \qquad
        x \in S \iff |p| \le 1 + v \sum_{j=1}^{5} a_j \cos(k_j \cdot p/|p| + \varphi_j),

    where ``variability`` :math:`v` also scales random shifts of :math:`c`, log-scalings
    of :math:`r` and rotation angles; with :math:`v = 0` all seeds give the same labels.

    Image, in this order: piecewise-constant clean image (background 0, body 0.3, organs
    0.4 ... 1.0, all distinct; ``contrast`` :math:`\gamma` maps :math:`I_k \mapsto I_1 +
    \gamma (I_k - I_1)` for every structure :math:`k \ge 1`, background unchanged) ->
    metal disc of intensity :math:`+3\,\text{artifacts}` -> partial volume
    (Gaussian blur, :math:`\sigma` = ``partial_volume`` voxels) -> bias field
    :math:`\times \exp(b\, s(x))`, :math:`s` a random ramp + slow cosines spanning
    :math:`[-1, 1]` over the body's region -> anisotropy along the last axis -> streaks -> Gaussian noise.

    Parameters
    ----------
    shape : tuple of 2 or 3 ints, each >= 16.
    seed : int >= 0. Bit-for-bit deterministic; each knob draws from its own stream, so
        switching one knob on does not change the geometry or the other knobs' draws.
    n_structures : int in ``[1, MAX_STRUCTURES]`` (8).
    noise : float >= 0. Additive Gaussian noise (not Rician) of standard deviation
        ``noise`` x 1.0, the nominal intensity range (the clean image spans [0, 1]).
    bias_field : float >= 0. Multiplicative field ``exp(bias_field * s)``, ``s`` in [-1, 1].
    partial_volume : float >= 0. Gaussian blur sigma in voxels (labels stay crisp).
    anisotropy : float >= 1. Each voxel along the LAST axis becomes the mean of a slab
        ``anisotropy`` voxels thick (non-integer factors: fractional slab borders are
        weighted exactly); slab values are linearly interpolated back to ``shape``.
    artifacts : float >= 0. A small disc ``3 * artifacts`` brighter inside the body and
        6-10 straight streaks through it, alternately bright and dark, of amplitude
        ``artifacts`` decaying with distance; in 3D a rod along the last axis, with the
        same streaks in every slice. Not part of the labels.
    contrast : float in (0, 1]. Scales intensity differences between structures.
    variability : float in [0, 1]. Shape variation between seeds.

    Returns
    -------
    image : float32 ndarray of ``shape``. Not clipped: [0, 1] when every knob is at its
        default; noise, bias field and artifacts may leave that range.
    labels : int64 ndarray of ``shape``: 0 background, 1..n_structures (all present), the
        ground truth before degradation.

    Raises
    ------
    ValueError
        If ``shape``, ``seed`` or a knob is out of range (the message names it).

    References
    ----------
    Collins, D. L. et al. (1998). Design and construction of a realistic digital brain
    phantom. IEEE TMI 17(3), 463-468. DOI 10.1109/42.712135 (simulated noise, intensity
    non-uniformity and partial volume). De Man, B. et al. (1999). Metal streak artifacts
    in X-ray computed tomography: a simulation study. IEEE TNS 46(3), 691-696.
    DOI 10.1109/23.775600.

    Examples
    --------
    >>> image, labels = make_phantom((64, 64), seed=0)
    >>> image.shape, image.dtype, labels.dtype
    ((64, 64), dtype('float32'), dtype('int64'))
    >>> sorted(np.unique(labels).tolist())
    [0, 1, 2, 3]
    >>> [round(float(v), 2) for v in np.unique(image)]
    [0.0, 0.3, 0.7, 1.0]
    >>> noisy, same = make_phantom((64, 64), seed=0, noise=0.1, bias_field=0.3)
    >>> bool(np.array_equal(same, labels))
    True
    """
    shape = _check_shape(shape)
    seed = _check_seed(seed)
    n_structures, k = _check_knobs(n_structures, {
        "noise": noise, "bias_field": bias_field, "partial_volume": partial_volume,
        "anisotropy": anisotropy, "artifacts": artifacts, "contrast": contrast,
        "variability": variability,
    })

    labels = _render_labels(shape, n_structures, seed, k["variability"])
    image = _intensities(n_structures, k["contrast"])[labels]

    pattern = None
    if k["artifacts"] > 0:
        disc, pattern = _metal(labels, _rng(seed, "artifacts"))
        image[disc] += 3.0 * k["artifacts"] * NOMINAL_RANGE
    if k["partial_volume"] > 0:
        image = ndimage.gaussian_filter(image, k["partial_volume"], mode="nearest")
    if k["bias_field"] > 0:
        image *= np.exp(k["bias_field"] * _bias_field(shape, _rng(seed, "bias_field")))
    if k["anisotropy"] > 1:
        image = _thick_slices(image, k["anisotropy"])
    if pattern is not None:
        image += k["artifacts"] * NOMINAL_RANGE * pattern
    if k["noise"] > 0:
        image += k["noise"] * NOMINAL_RANGE * _rng(seed, "noise").standard_normal(shape)
    return image.astype(np.float32), labels


class PhantomDataset(torch.utils.data.Dataset):
    """``n`` phantoms of :func:`make_phantom` as a map-style torch dataset.

    Item ``i`` is made with the seed :meth:`item_seed` ``(i)``, drawn from
    ``np.random.SeedSequence([seed, i])``, and returned as ``(image, labels)``: a float32
    tensor ``(1, *shape)`` and an int64 tensor ``shape``. With ``cache=True`` (default)
    each item is generated once, on first access, and copies are returned afterwards.

    Attributes: ``num_classes`` (``n_structures + 1``), ``knobs`` (every keyword passed
    to :func:`make_phantom`, defaults filled in, ``n_structures`` included), ``shape``.

    Examples
    --------
    >>> ds = PhantomDataset(4, (32, 32), seed=1, noise=0.05)
    >>> len(ds), ds.num_classes
    (4, 4)
    >>> image, labels = ds[0]
    >>> tuple(image.shape), image.dtype, tuple(labels.shape), labels.dtype
    ((1, 32, 32), torch.float32, (32, 32), torch.int64)
    """

    def __init__(self, n: int, shape: tuple[int, ...], seed: int = 0, *, cache: bool = True,
                 **knobs: Any) -> None:
        if isinstance(n, bool) or not isinstance(n, Integral) or int(n) < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}")
        unknown = sorted(set(knobs) - set(PHANTOM_KNOBS) - {"n_structures"})
        if unknown:
            raise TypeError(f"unknown phantom knob(s) {unknown}; expected n_structures or {list(PHANTOM_KNOBS)}")
        self.n = int(n)
        self.shape = _check_shape(shape)
        self.seed = _check_seed(seed)
        n_structures, checked = _check_knobs(knobs.get("n_structures", 3),
                                             {name: knobs.get(name, d) for name, d in PHANTOM_KNOBS.items()})
        self.knobs: dict[str, Any] = {"n_structures": n_structures, **checked}
        self.num_classes = n_structures + 1
        self.cache = bool(cache)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def item_seed(self, i: int) -> int:
        """The ``make_phantom`` seed of item ``i``."""
        return int(np.random.SeedSequence([self.seed, int(i)]).generate_state(2, np.uint32).view(np.uint64)[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(i, bool) or not isinstance(i, Integral):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        i = int(i)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"index out of range for a PhantomDataset of length {self.n}")
        item = self._cache.get(i)
        if item is None:
            item = make_phantom(self.shape, seed=self.item_seed(i), **self.knobs)
            if self.cache:
                self._cache[i] = item
        image, labels = item
        return torch.from_numpy(image.copy()).unsqueeze(0), torch.from_numpy(labels.copy())

"""Batched kernels behind :mod:`mlimaging.generative.morphomnist` (private).

Everything here works on NumPy batches ``(N, H, W)``: the pyramid up/down-sampling as two
small matrices (one per axis), the binarisation, skeleton, distance maps, the
morphometrics and the sub-pixel erosion/dilation used by the perturbations.

Conventions: ``x`` is the column index, ``y`` the row index (pointing down), distances are
in high-resolution pixels unless a name says otherwise, and ``scale`` is the upsampling
factor (4 in Castro et al. 2019).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from scipy import ndimage as ndi

__all__: list[str] = []

# Weights of the skeleton's neighbour steps for its length: each 8-connected pair counted
# once (right, down: 1; the two downward diagonals: sqrt 2), as in Castro et al. 2019.
_SQRT2 = float(np.sqrt(2.0))


# --------------------------------------------------------------------------------------
# Pyramid up- and down-sampling as matrices
# --------------------------------------------------------------------------------------


_TRUNCATE = 4.0  # skimage's Gaussian (scipy.ndimage default): kernel radius 4 sigma


@functools.lru_cache(maxsize=16)
def zoom_matrix(n_in: int, n_out: int) -> np.ndarray:
    """The ``(n_out, n_in)`` matrix of skimage's cubic B-spline ``resize`` along one axis
    (skimage mode ``reflect`` = SciPy ``mirror``, grid-aligned, before its clipping)."""
    zoom = ndi.zoom(np.eye(n_in), (n_out / n_in, 1), order=3, mode="mirror", grid_mode=True)
    zoom.setflags(write=False)
    return zoom


def _gaussian(images: np.ndarray, scale: int) -> np.ndarray:
    """skimage's ``gaussian(sigma=2 scale / 6, mode="reflect")`` on each image of a batch."""
    sigma = 2.0 * scale / 6.0
    out = ndi.gaussian_filter1d(images, sigma, axis=1, mode="reflect", truncate=_TRUNCATE)
    return ndi.gaussian_filter1d(out, sigma, axis=2, mode="reflect", truncate=_TRUNCATE)


def sandwich(a: np.ndarray, x: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ x[k] @ b.T`` for every image ``k`` of ``x`` ``(N, H, W)``, as two large GEMMs."""
    n, h, w = x.shape
    y = (x.reshape(n * h, w) @ b.T).reshape(n, h, -1)  # (N, H, W')
    y = y.transpose(0, 2, 1).reshape(-1, h) @ a.T  # (N W', H')
    return np.ascontiguousarray(y.reshape(n, -1, a.shape[0]).transpose(0, 2, 1))


def expand(images: np.ndarray, scale: int) -> np.ndarray:
    """``skimage.transform.pyramid_expand(order=3)`` of each image of a batch ``(N, H, W)``:
    the cubic B-spline resize to ``(sH, sW)`` clipped to the input's range, then a Gaussian
    of sigma ``2 scale / 6`` (float64; equal to skimage's to 1e-15)."""
    _, h, w = images.shape
    up = sandwich(zoom_matrix(h, scale * h), images, zoom_matrix(w, scale * w))
    lo = images.min(axis=(1, 2), keepdims=True)
    hi = images.max(axis=(1, 2), keepdims=True)
    return _gaussian(np.clip(up, lo, hi), scale)


def reduce(images: np.ndarray, scale: int) -> np.ndarray:
    """``skimage.transform.pyramid_reduce(order=3)`` of each image of a batch ``(N, sH, sW)``:
    a Gaussian of sigma ``2 scale / 6``, then the cubic B-spline resize to
    ``(ceil(sH / scale), ceil(sW / scale))`` clipped to the smoothed image's range."""
    _, h, w = images.shape
    smooth = _gaussian(images, scale)
    lo = smooth.min(axis=(1, 2), keepdims=True)
    hi = smooth.max(axis=(1, 2), keepdims=True)
    down = sandwich(zoom_matrix(h, -(-h // scale)), smooth, zoom_matrix(w, -(-w // scale)))
    return np.clip(down, lo, hi)


# --------------------------------------------------------------------------------------
# Binary image, skeleton and distance maps
# --------------------------------------------------------------------------------------


def binarise(high: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Per image: ``high >= min + threshold (max - min)``; and which images hold a stroke
    at all (``max > min``; a blank image has no stroke and gets an empty mask)."""
    lo = high.min(axis=(1, 2), keepdims=True)
    hi = high.max(axis=(1, 2), keepdims=True)
    has_stroke = (hi - lo).reshape(-1) > 1e-6 * np.maximum(np.abs(hi).reshape(-1), 1.0)
    mask = high >= lo + threshold * (hi - lo)
    mask[~has_stroke] = False
    return mask, has_stroke


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of a non-empty mask grown by one pixel (within the image): the
    skeleton and the distance map computed there equal those of the whole image."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(rows[0] - 1, 0), min(rows[-1] + 2, h)), slice(max(cols[0] - 1, 0), min(cols[-1] + 2, w)))


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen skeleton (``skimage.morphology.skeletonize``) of each binary image."""
    from skimage.morphology import skeletonize

    out = np.zeros_like(mask)
    for k in range(len(mask)):
        if mask[k].any():
            box = _box(mask[k])
            out[k][box] = skeletonize(mask[k][box])
    return out


def inside_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each foreground pixel to the nearest background pixel (0 on the
    background), image by image: ``scipy.ndimage.distance_transform_edt`` of each image
    (pixels beyond the image border do not count as background, as in SciPy). Computed in
    the stroke's bounding box grown by one pixel, which gives the same values: clamping a
    background pixel into that box moves it closer to every stroke pixel."""
    out = np.zeros(mask.shape, dtype=np.float64)
    for k in range(len(mask)):
        if mask[k].any():
            box = _box(mask[k])
            out[k][box] = ndi.distance_transform_edt(mask[k][box])
    return out


def outside_distance(mask: np.ndarray, margin: np.ndarray | None = None) -> np.ndarray:
    """Euclidean distance of each background pixel to the nearest foreground pixel (0 on the
    foreground; ``inf`` for an empty mask). With ``margin`` (one per image) only the pixels
    within the stroke's bounding box grown by ``ceil(margin)`` are computed (exactly: every
    stroke pixel is inside it); those beyond are ``inf``."""
    out = np.full(mask.shape, np.inf)
    h, w = mask.shape[1:]
    for k in range(len(mask)):
        if not mask[k].any():
            continue
        if margin is None:
            out[k] = ndi.distance_transform_edt(~mask[k])
            continue
        if margin[k] <= 0:
            out[k][mask[k]] = 0.0
            continue
        g = int(np.ceil(margin[k])) + 1
        rows, cols = _box(mask[k])
        box = (slice(max(rows.start - g, 0), min(rows.stop + g, h)), slice(max(cols.start - g, 0), min(cols.stop + g, w)))
        out[k][box] = ndi.distance_transform_edt(~mask[k][box])
    return out


def skeleton_length(skel: np.ndarray) -> np.ndarray:
    """Length of each skeleton in pixels: the number of 4-connected neighbour pairs plus
    sqrt 2 times the number of diagonal pairs (each pair counted once)."""
    s = skel
    straight = (s[:, :, :-1] & s[:, :, 1:]).sum(axis=(1, 2)) + (s[:, :-1, :] & s[:, 1:, :]).sum(axis=(1, 2))
    diagonal = (s[:, :-1, :-1] & s[:, 1:, 1:]).sum(axis=(1, 2)) + (s[:, :-1, 1:] & s[:, 1:, :-1]).sum(axis=(1, 2))
    return straight + _SQRT2 * diagonal


def mean_on(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Mean of ``values`` over the pixels ``where`` of each image (NaN where none)."""
    count = where.sum(axis=(1, 2))
    total = np.where(where, values, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def stroke_thickness(mask: np.ndarray, scale: int) -> np.ndarray:
    """``2 mean(distance map on the skeleton) / scale`` per image (NaN without a stroke)."""
    skel = skeleton(mask)
    return 2.0 * mean_on(inside_distance(mask), skel) / scale


# --------------------------------------------------------------------------------------
# Moments and the bounding parallelogram
# --------------------------------------------------------------------------------------


def moments(img: np.ndarray) -> dict[str, np.ndarray]:
    """Centroid and central second moments of each (non-negative) image of a batch."""
    _, h, w = img.shape
    x = np.arange(w, dtype=np.float64)
    y = np.arange(h, dtype=np.float64)
    rows = img.sum(axis=2)  # (N, H)
    cols = img.sum(axis=1)  # (N, W)
    m00 = rows.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = cols @ x / m00
        my = rows @ y / m00
        mxx = cols @ (x * x) / m00
        myy = rows @ (y * y) / m00
        mxy = np.einsum("nij,i,j->n", img, y, x) / m00
    return {"m00": m00, "x": mx, "y": my, "u20": mxx - mx**2, "u02": myy - my**2, "u11": mxy - mx * my}


def bounding_parallelogram(img: np.ndarray, shear: np.ndarray, y_mid: np.ndarray,
                           frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Left, right, top, bottom of the sheared box holding all but ``frac`` of each image's
    mass (``frac / 2`` cut on each side).

    Horizontal: the mass CDF of the sheared coordinate ``u = x + 1/2 - shear (y - y_mid)``
    at the integer locations ``t = 0 .. W-1`` (the mass with ``u < t``); vertical: the mass
    CDF of the rows (the mass with ``y < t``); both inverted by linear interpolation.
    """
    n, h, w = img.shape
    total = img.sum(axis=(1, 2))
    x = np.arange(w, dtype=np.float64)[None, None, :]
    y = np.arange(h, dtype=np.float64)[None, :, None]
    u = x + 0.5 - shear[:, None, None] * (y - y_mid[:, None, None])
    # u < t for integer t  <=>  t >= floor(u) + 1: a pixel counts from location floor(u) + 1 on.
    first = np.clip(np.floor(u).astype(np.int64) + 1, 0, w)
    idx = first + (w + 1) * np.arange(n)[:, None, None]
    hist = np.bincount(idx.ravel(), weights=img.ravel(), minlength=n * (w + 1)).reshape(n, w + 1)
    safe = np.where(total > 0, total, 1.0)[:, None]
    hcdf = np.cumsum(hist, axis=1)[:, :w] / safe
    row_mass = img.sum(axis=2)
    vcdf = np.concatenate([np.zeros((n, 1)), np.cumsum(row_mass, axis=1)[:, :-1]], axis=1) / safe
    half = frac / 2.0
    locs_w, locs_h = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    left, right, top, bottom = (np.full(n, np.nan) for _ in range(4))
    for k in range(n):
        if total[k] > 0:
            left[k], right[k] = np.interp([half, 1.0 - half], hcdf[k], locs_w)
            top[k], bottom[k] = np.interp([half, 1.0 - half], vcdf[k], locs_h)
    return left, right, top, bottom


# --------------------------------------------------------------------------------------
# Sub-pixel erosion and dilation
# --------------------------------------------------------------------------------------


def offset_render(sdf: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """The stroke moved outwards by ``radius`` (negative: inwards) high-resolution pixels,
    rendered with a one-pixel linear ramp: ``clip(sdf + radius + 1/2, 0, 1)``.

    For a whole ``radius`` r > 0 its pixels equal to 1 are exactly the binary dilation by
    ``skimage.morphology.disk(r)``; for r < 0 its pixels above 0 are exactly the binary
    erosion by ``disk(|r|)``. The ramp keeps sub-pixel radii.
    """
    return np.clip(sdf + radius[:, None, None] + 0.5, 0.0, 1.0)


def stroke_pixels(mask: np.ndarray, skel: np.ndarray, k: int, *, prune: float) -> np.ndarray:
    """``(M, 2)`` row/column coordinates of skeleton ``k``'s pixels at least ``prune``
    pixels from its tips and forks (all of them when pruning would leave none)."""
    s = skel[k]
    pts = np.argwhere(s)
    if prune <= 0 or len(pts) == 0:
        return pts
    neighbours = ndi.convolve(s.astype(np.int32), np.ones((3, 3), np.int32), mode="constant") - 1
    special = s & ((neighbours == 1) | (neighbours >= 3))
    if not special.any():
        return pts
    dist = ndi.distance_transform_edt(~special)
    kept = pts[dist[pts[:, 0], pts[:, 1]] >= prune]
    return kept if len(kept) else pts


def local_direction(skel: np.ndarray, centre: np.ndarray, window: float) -> np.ndarray:
    """Unit tangent (row, column) of a skeleton near ``centre``: the principal axis of its
    pixels within ``window`` pixels."""
    pts = np.argwhere(skel).astype(np.float64)
    near = pts[np.hypot(*(pts - centre).T) <= window]
    if len(near) < 2:
        return np.array([1.0, 0.0])
    cov = np.cov((near - near.mean(axis=0)).T)
    eigval, eigvec = np.linalg.eigh(cov)
    return eigvec[:, -1]


# --------------------------------------------------------------------------------------
# Input checks and conversion
# --------------------------------------------------------------------------------------


class Batch:
    """A validated batch: ``x`` float64 ``(N, H, W)`` in [0, 1], and how to give results back
    in the caller's type (NumPy or torch), shape and value range."""

    def __init__(self, x: np.ndarray, *, max_value: float, shape: tuple[int, ...], torch_like: Any) -> None:
        self.x = x
        self.max_value = max_value
        self.shape = shape
        self.torch_like = torch_like

    @property
    def single(self) -> bool:
        return len(self.shape) == 2


def as_batch(image: Any, name: str = "image", *, max_value: float | None = None) -> Batch:
    """Check ``image`` (one ``(H, W)`` image or a batch ``(N, H, W)`` / ``(N, 1, H, W)``,
    NumPy or torch, values in ``[0, max_value]``) and return it as a :class:`Batch`.

    ``max_value=None`` infers the range: 255 for ``uint8`` images or when any value exceeds
    1, else 1.
    """
    torch_like = None
    try:
        import torch

        if isinstance(image, torch.Tensor):
            torch_like = image
            image = image.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a runtime dependency
        pass
    arr = np.asarray(image)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    shape = arr.shape
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ValueError(f"{name} must be (H, W), (N, H, W) or (N, 1, H, W) grayscale, got shape {shape}")
        arr = arr[:, 0]
    elif arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim != 3:
        raise ValueError(f"{name} must be (H, W), (N, H, W) or (N, 1, H, W), got {arr.ndim} dimensions {shape}")
    if arr.shape[1] < 4 or arr.shape[2] < 4:
        raise ValueError(f"{name} must be at least 4x4 pixels, got shape {shape}")
    arr = arr.astype(np.float64)
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or infinite values")
    lo = float(arr.min()) if arr.size else 0.0
    hi = float(arr.max()) if arr.size else 0.0
    if lo < 0:
        raise ValueError(f"{name} must be non-negative (values in [0, 1] or [0, 255]), got minimum {lo:g}")
    if max_value is None:
        kind = torch_like.dtype if torch_like is not None else np.asarray(image).dtype
        max_value = 255.0 if (str(kind).endswith("uint8") or hi > 1.0) else 1.0
    elif not (np.isfinite(max_value) and max_value > 0):
        raise ValueError(f"max_value must be a positive number, got {max_value!r}")
    if hi > max_value:
        raise ValueError(f"{name} must lie in [0, {max_value:g}] (values in [0, 1] or [0, 255]), got maximum {hi:g}")
    return Batch(arr / max_value, max_value=float(max_value), shape=shape, torch_like=torch_like)


def restore(batch: Batch, x: np.ndarray) -> Any:
    """``x`` (``(N, H, W)`` in [0, 1]) back in the caller's range, shape and type (float32)."""
    out = (x * batch.max_value).astype(np.float32).reshape(batch.shape)
    if batch.torch_like is not None:
        import torch

        return torch.from_numpy(out).to(batch.torch_like.device)
    return out


def per_image(value: Any, n: int, name: str, *, low: float | None = None, high: float | None = None,
              strict_low: bool = False) -> np.ndarray:
    """A scalar or one value per image, as a float64 array ``(n,)``, finite and in range."""
    try:
        import torch

        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    arr = arr.reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a number or one value per image ({n}), got shape {np.shape(value)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (np.any(arr <= low) if strict_low else np.any(arr < low)):
        raise ValueError(f"{name} must be {'>' if strict_low else '>='} {low:g}, got minimum {arr.min():g}")
    if high is not None and np.any(arr > high):
        raise ValueError(f"{name} must be <= {high:g}, got maximum {arr.max():g}")
    return arr


def check_scale(scale: int, threshold: float) -> None:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 16:
        raise ValueError(f"scale must be an integer in 1..16, got {scale!r}")
    if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")


# --------------------------------------------------------------------------------------
# The shared first step: upsample, binarise, skeleton, distance map
# --------------------------------------------------------------------------------------


class Morphology:
    """Upsampled image, binary stroke, skeleton and distance map of a batch in [0, 1]."""

    def __init__(self, x: np.ndarray, scale: int, threshold: float) -> None:
        self.scale = scale
        self.high = expand(x, scale)
        self.mask, self.has_stroke = binarise(self.high, threshold)
        self.skeleton = skeleton(self.mask)
        self.distance = inside_distance(self.mask)

    @property
    def thickness(self) -> np.ndarray:
        return 2.0 * mean_on(self.distance, self.skeleton) / self.scale


def stroke_intensity(x: np.ndarray) -> np.ndarray:
    """Median grey level (0-255) of each image's pixels at or above half its range (NaN for a
    blank image): the intensity of Pawlowski et al. (2020)."""
    out = np.full(len(x), np.nan)
    for k in range(len(x)):
        lo, hi = x[k].min(), x[k].max()
        if hi > lo:
            out[k] = 255.0 * np.median(x[k][x[k] >= lo + 0.5 * (hi - lo)])
    return out

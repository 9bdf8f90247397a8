"""Boundary extraction and exact boundary-to-boundary distances (private).

The public functions live in :mod:`mlimaging.metrics.surface`; this module holds the
machinery that makes them fast while staying exact:

1. **Crop.** Only the bounding box of ``pred | target`` is looked at. The box is found
   with two cheap reductions per axis instead of a scan of every voxel's coordinates.
   Cropping to the exact box (no margin) is exact for the face-connected boundary: a
   mask voxel on a face of the box has its outward face-neighbour outside the box,
   hence outside both masks (or outside the array), so treating "outside the crop" as
   "outside the mask" (erosion with ``border_value=0``) gives the same boundary as the
   full array, both for masks touching the array border and for masks that do not.
2. **Boundary.** ``mask & ~erosion(mask)`` with the face-connected structuring
   element, computed with ``2 * ndim`` shifted ``&`` operations on the flattened crop
   inside a zero frame (the frame also keeps the offset look-ups below in bounds).
3. **Distances.** The nearest boundary voxel of the other mask always lies inside the
   same box. Each boundary voxel first looks at the other boundary at a short list of
   integer offsets sorted by *physical* length (0 first): the first offset that hits
   gives the exact distance, because every shorter offset was checked before. Most
   boundary voxels of a reasonable segmentation are resolved within a few voxels, by a
   gather per offset. The voxels left over (far outliers) are resolved exactly by brute
   force when there are very few, otherwise by a KD-tree over the other boundary's
   coordinates scaled by the spacing. No full-volume distance transform is computed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["bounding_box", "boundary", "boundary_distances"]

# Offsets tried per voxel before falling back to brute force / KD-tree. A gather costs
# about 3 ns per voxel and a KD-tree query (with its share of the build) about 1 us, so
# checking the first block of offsets costs at most about what the KD-tree query it
# usually avoids would. Further blocks (half as long, longer offsets) are tried while
# they still resolve enough of the voxels left, up to _EXTENSIONS times the first block.
_MAX_OFFSETS = {1: 32, 2: 80, 3: 124}
_EXTENSIONS = 4
_FAR_SHARE = 0.9  # a block "fails" when it resolves less than 1 - this of its voxels
_BUILD_COST = 20  # KD-tree build cost per reference point, in gathers: after a failed
# block, keep extending while the next block costs less than building the tree would.
_BRUTE_FORCE_QUERIES = 8  # up to this many far voxels, brute force beats building a KD-tree


def bounding_box(mask: np.ndarray) -> tuple[tuple[int, int], ...] | None:
    """Half-open bounding box ``((lo_0, hi_0), ...)`` of the ``True`` voxels, or ``None`` if none."""
    if mask.size == 0:
        return None
    if mask.ndim == 1:
        nz = np.flatnonzero(mask)
        return None if nz.size == 0 else ((int(nz[0]), int(nz[-1]) + 1),)
    if mask.flags.f_contiguous and not mask.flags.c_contiguous:  # e.g. NIfTI data: no copy
        return tuple(reversed(bounding_box(mask.T)))  # type: ignore[arg-type]
    mask = np.ascontiguousarray(mask)
    rows = mask.reshape(mask.shape[0], -1).view(np.uint8).max(axis=1)
    nz = np.flatnonzero(rows)
    if nz.size == 0:
        return None
    lo, hi = int(nz[0]), int(nz[-1]) + 1
    rest = bounding_box(mask[lo:hi].any(axis=0))
    assert rest is not None
    return ((lo, hi), *rest)


def _union_box(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return tuple((min(x[0], y[0]), max(x[1], y[1])) for x, y in zip(a, b, strict=True))


def _padded_boundary(mask: np.ndarray, pad: tuple[int, ...]) -> np.ndarray:
    """Boundary of ``mask`` inside a zero frame at least ``pad`` voxels wide (>= 1 per axis).

    The erosion is computed on the flattened, contiguous framed array: a shift by one
    voxel along axis ``k`` is a shift by ``stride_k`` of the flat array. Shifts that wrap
    around a row only ever pair a voxel with a frame voxel, which is outside the mask, so
    they cannot change the result for voxels of the mask; and the frame makes "outside the
    array" count as outside (erosion with ``border_value=0``). Each ``&`` runs over
    contiguous memory (bandwidth-bound; 64-bit word tricks measured no faster).
    """
    shape = [n + 2 * r for n, r in zip(mask.shape, pad, strict=True)]
    framed = np.zeros(shape, dtype=bool)
    framed[tuple(slice(r, r + n) for r, n in zip(pad, mask.shape, strict=True))] = mask
    flat = framed.reshape(-1)
    interior = flat.copy()
    for k in range(len(shape)):
        step = int(np.prod(shape[k + 1 :]))
        interior[step:] &= flat[:-step]
        interior[:-step] &= flat[step:]
    np.greater(flat, interior, out=interior)  # mask and not interior
    return interior.reshape(shape)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a bool mask: those with a face-neighbour outside it (or outside the array)."""
    framed = _padded_boundary(mask, (1,) * mask.ndim)
    return framed[tuple(slice(1, 1 + n) for n in mask.shape)]


@lru_cache(maxsize=64)
def _offsets(spacing: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Integer offsets sorted by physical length (0 first) and their lengths.

    The list holds every offset shorter than its last one, so scanning it in order and
    stopping at the first hit yields the exact nearest distance.
    """
    ndim = len(spacing)
    s = np.asarray(spacing, dtype=np.float64)
    count = _MAX_OFFSETS.get(ndim, 2 * ndim + 1) * _EXTENSIONS
    radius = float(s.min())
    while True:
        ext = np.floor(radius / s * (1 + 1e-12)).astype(np.int64)
        axes = [np.arange(-e, e + 1) for e in ext]
        grid = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        length2 = ((grid * s) ** 2).sum(axis=1)
        inside = length2 <= radius * radius * (1 + 1e-12)
        if inside.sum() >= count or grid.shape[0] > 50 * count:
            break
        radius *= 1.25
    grid, length2 = grid[inside], length2[inside]
    order = np.argsort(length2, kind="stable")[:count]
    return grid[order], np.sqrt(length2[order])


def _nearest_far(query: np.ndarray, ref: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Exact distances from integer points ``query`` (n, d) to their nearest point of ``ref`` (m, d)."""
    if query.shape[0] <= _BRUTE_FORCE_QUERIES:
        out = np.empty(query.shape[0])
        for i, q in enumerate(query):
            out[i] = np.sqrt(((((ref - q) * spacing) ** 2).sum(axis=1)).min())
        return out
    tree = cKDTree(ref * spacing, leafsize=64, balanced_tree=False, compact_nodes=False)
    return tree.query(query * spacing, k=1)[0]


def _directed(
    src: np.ndarray, dst_flat: np.ndarray, dst_idx: np.ndarray, shape: tuple[int, ...],
    flat_offsets: np.ndarray, lengths: np.ndarray, spacing: np.ndarray,
) -> np.ndarray:
    """Distances from boundary voxels ``src`` (sorted flat indices) to the boundary ``dst_flat``."""
    found, found_at = [], []
    cur = src
    where_buf, hit_buf = np.empty_like(src), np.empty(src.size, dtype=bool)
    step = max(1, len(flat_offsets) // (2 * _EXTENSIONS))
    next_check, entered = 2 * step, cur.size  # the first block is two steps long
    for i, (off, length) in enumerate(zip(flat_offsets.tolist(), lengths.tolist(), strict=True)):
        if i == next_check:  # look further only while it pays off
            few_resolved = cur.size > _FAR_SHARE * entered
            if few_resolved and cur.size * step > _BUILD_COST * dst_idx.size:
                break
            next_check, entered = i + step, cur.size
        n = cur.size
        np.add(cur, off, out=where_buf[:n])
        hit = np.take(dst_flat, where_buf[:n], out=hit_buf[:n])
        if hit.any():
            found.append(cur[hit])
            found_at.append(length)
            cur = cur[~hit]
            if cur.size == 0:
                break
    dist = np.empty(src.size, dtype=np.float64)
    if found:
        counts = [f.size for f in found]
        where = np.searchsorted(src, np.concatenate(found))
        dist[where] = np.repeat(np.asarray(found_at), counts)
    if cur.size:
        query = np.stack(np.unravel_index(cur, shape), axis=1)
        ref = np.stack(np.unravel_index(dst_idx, shape), axis=1)
        dist[np.searchsorted(src, cur)] = _nearest_far(query, ref, spacing)
    return dist


def boundary_distances(
    pred: np.ndarray, target: np.ndarray, spacing: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Distances pred-boundary -> target-boundary and back, in C order of the boundary voxels.

    An empty mask has no boundary voxels (an empty array); the other side's distances are
    then ``inf`` (there is nothing to be near to).
    """
    box_p, box_t = bounding_box(pred), bounding_box(target)
    box = _union_box(box_p, box_t)
    if box is None:
        return np.zeros(0), np.zeros(0)
    crop = tuple(slice(lo, hi) for lo, hi in box)
    if box_p is None or box_t is None:
        n = int(np.count_nonzero(boundary((pred if box_t is None else target)[crop])))
        far = np.full(n, np.inf)
        return (far, np.zeros(0)) if box_t is None else (np.zeros(0), far)

    offsets, lengths = _offsets(tuple(float(s) for s in spacing))
    pad = tuple(int(r) for r in np.maximum(np.abs(offsets).max(axis=0), 1))
    bp = _padded_boundary(pred[crop], pad)
    bt = _padded_boundary(target[crop], pad)
    shape = bp.shape
    bp_flat, bt_flat = bp.reshape(-1), bt.reshape(-1)
    index_type = np.int32 if bp.size < 2**31 else np.int64
    idx_p = np.flatnonzero(bp_flat).astype(index_type, copy=False)
    idx_t = np.flatnonzero(bt_flat).astype(index_type, copy=False)
    strides = np.array([int(np.prod(shape[k + 1 :])) for k in range(len(shape))], dtype=np.int64)
    flat_offsets = offsets @ strides
    s = np.asarray(spacing, dtype=np.float64)
    d_pt = _directed(idx_p, bt_flat, idx_t, shape, flat_offsets, lengths, s)
    d_tp = _directed(idx_t, bp_flat, idx_p, shape, flat_offsets, lengths, s)
    return d_pt, d_tp

r"""Image geometry: where each voxel of an array sits in the scanner's world.

An :class:`ImageGeometry` holds what SimpleITK calls an image's metadata (spacing, origin,
direction) for an array *in the array's own axis order*, so that the voxel with index
:math:`i = (i_0, \dots, i_{d-1})` sits at the world point

.. math:: x = o + D \, \mathrm{diag}(s) \, i ,

with :math:`o` the ``origin`` (world position of voxel 0), :math:`s` the ``spacing`` (mm)
and :math:`D` the ``direction`` matrix whose column :math:`k` is the unit world direction
of array axis :math:`k`. The world frame is **LPS** (x towards the patient's left, y
posterior, z superior), as in DICOM, ITK and SimpleITK; NIfTI affines (RAS) are converted
on reading and writing (:math:`\mathrm{diag}(-1, -1, 1)`).

A 2-D image can sit in 3-D space (one DICOM slice, a 2-D NIfTI): then ``direction`` is
``(3, 2)`` and ``origin`` has 3 values (``world_ndim == 3``, ``ndim == 2``). Plain 2-D
images (PNG) have a 2-D world.

Readers return the geometry of the file (:func:`mlimaging.data.read_image` with
``geometry=True``) and writers take it back (``write_image(..., geometry=g)``), so an
output computed from an input overlays it in any viewer (ITK-SNAP, 3D Slicer, FSLeyes,
napari). A geometry read from NIfTI also remembers the file's qform and sform (codes and
matrices), written back unchanged.

Examples
--------
>>> import numpy as np
>>> g = ImageGeometry(spacing=(2.0, 1.0), origin=(10.0, -5.0), direction=[[0.0, 1.0], [1.0, 0.0]])
>>> g.index_to_world.tolist()
[[0.0, 1.0, 10.0], [2.0, 0.0, -5.0], [0.0, 0.0, 1.0]]
>>> g.transform_index([[1, 3]]).tolist()
[[13.0, -3.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ImageGeometry", "LPS_TO_RAS", "axis_codes"]

#: Flips between the LPS world (DICOM, ITK) and the RAS world (NIfTI, nibabel): x and y change sign.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])

_RAS_LETTERS = (("L", "R"), ("P", "A"), ("I", "S"))


@dataclass(frozen=True)
class NiftiTransforms:
    """The qform and sform of a NIfTI header (RAS, 4x4), with their codes, as read."""

    qform: np.ndarray
    qform_code: int
    sform: np.ndarray
    sform_code: int
    spatial_ndim: int


def _finite_array(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}")
    return arr


@dataclass(frozen=True, eq=False)
class ImageGeometry:
    """Spacing, origin and direction of an image, in the array's axis order (LPS world, mm).

    Parameters
    ----------
    spacing
        One positive value per array (spatial) axis, mm.
    origin
        World position of the voxel with index 0, one value per world axis (default 0).
    direction
        ``(world_ndim, ndim)`` matrix with unit columns: column ``k`` is the world direction
        of array axis ``k`` (default: the identity, ``world_ndim == ndim``).
    nifti
        The qform/sform of the NIfTI file the geometry was read from (kept so that a
        written NIfTI has the same header transforms); set by the reader.

    Raises
    ------
    ValueError
        A spacing that is not finite and positive, a direction whose columns are not unit
        vectors or not linearly independent, or mismatched lengths.
    """

    spacing: tuple[float, ...]
    origin: tuple[float, ...] = ()
    direction: np.ndarray = field(default=None)  # type: ignore[assignment]
    nifti: NiftiTransforms | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        sp = _finite_array(self.spacing, "spacing").ravel()
        if sp.size == 0 or np.any(sp <= 0):
            raise ValueError(f"spacing must be positive, one value per axis, got {sp.tolist()}")
        d = sp.size
        if self.direction is None:
            world = len(self.origin) if len(self.origin) else d
            direction = np.eye(world, d)
        else:
            direction = _finite_array(self.direction, "direction")
        if direction.ndim != 2 or direction.shape[1] != d or direction.shape[0] < d:
            raise ValueError(f"direction must be a (world_ndim, {d}) matrix with world_ndim >= {d}, "
                             f"got shape {direction.shape}")
        norms = np.linalg.norm(direction, axis=0)
        if not np.allclose(norms, 1.0, atol=1e-4):
            raise ValueError(f"direction columns must be unit vectors, got norms {norms.tolist()}")
        if np.linalg.matrix_rank(direction, tol=1e-6) < d:
            raise ValueError(f"direction columns must be linearly independent, got {direction.tolist()}")
        origin = _finite_array(self.origin if len(self.origin) else np.zeros(direction.shape[0]), "origin").ravel()
        if origin.size != direction.shape[0]:
            raise ValueError(f"origin must have {direction.shape[0]} values (world axes), got {origin.tolist()}")
        direction = direction / norms  # exactly unit
        direction.setflags(write=False)
        object.__setattr__(self, "spacing", tuple(float(v) for v in sp))
        object.__setattr__(self, "origin", tuple(float(v) for v in origin))
        object.__setattr__(self, "direction", direction)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_spacing(cls, spacing: Sequence[float]) -> ImageGeometry:
        """Identity direction, origin 0, the given spacing."""
        return cls(spacing=tuple(spacing))

    @classmethod
    def from_index_to_world(cls, matrix: Any, *, nifti: NiftiTransforms | None = None) -> ImageGeometry:
        """From a ``(w+1, d+1)`` homogeneous index-to-world matrix (shear is not representable)."""
        m = _finite_array(matrix, "matrix")
        if m.ndim != 2 or m.shape[0] < m.shape[1] or m.shape[1] < 2:
            raise ValueError(f"matrix must be (w+1, d+1) with w >= d, got shape {m.shape}")
        w, d = m.shape[0] - 1, m.shape[1] - 1
        lin = m[:w, :d]
        spacing = np.linalg.norm(lin, axis=0)
        if np.any(spacing <= 0):
            raise ValueError(f"matrix has a zero column: {m.tolist()}")
        return cls(spacing=tuple(spacing), origin=tuple(m[:w, d]), direction=lin / spacing, nifti=nifti)

    # ------------------------------------------------------------------ properties

    @property
    def ndim(self) -> int:
        """Number of array (spatial) axes."""
        return len(self.spacing)

    @property
    def world_ndim(self) -> int:
        """Number of world axes (3 for a slice placed in 3-D space)."""
        return len(self.origin)

    @property
    def index_to_world(self) -> np.ndarray:
        """``(world_ndim + 1, ndim + 1)`` homogeneous matrix from array index to world (LPS mm)."""
        w, d = self.world_ndim, self.ndim
        m = np.zeros((w + 1, d + 1))
        m[:w, :d] = self.direction * np.asarray(self.spacing)
        m[:w, d] = self.origin
        m[w, d] = 1.0
        return m

    @property
    def is_identity(self) -> bool:
        """Origin 0 and identity direction (the geometry of a file that carries none)."""
        return (self.world_ndim == self.ndim and np.allclose(self.direction, np.eye(self.ndim))
                and np.allclose(self.origin, 0.0))

    @property
    def is_oblique(self) -> bool:
        """Some axis is not aligned with a world axis."""
        return bool(np.any(np.max(np.abs(self.direction), axis=0) < 1 - 1e-6))

    def transform_index(self, index: Any) -> np.ndarray:
        """World points (``(n, world_ndim)``) of array indices ``(n, ndim)`` (fractional allowed)."""
        idx = np.atleast_2d(_finite_array(index, "index"))
        if idx.shape[-1] != self.ndim:
            raise ValueError(f"index must have {self.ndim} values per point, got shape {idx.shape}")
        m = self.index_to_world
        return idx @ m[:-1, :-1].T + m[:-1, -1]

    def axis_codes(self) -> str:
        """Where each array axis points, nibabel's RAS letters (e.g. ``"LAS"``); see :func:`axis_codes`."""
        return axis_codes(self.direction)

    def to_ras_affine(self) -> np.ndarray:
        """The 4x4 NIfTI-style (RAS) affine of this geometry (a 2-D geometry is embedded in 3-D).

        For a 2-D world, the third axis is the world z with unit spacing; for a slice in 3-D
        space, the third column is the slice normal with unit length.
        """
        m3 = np.eye(4)
        lin = self.direction * np.asarray(self.spacing)
        w, d = self.world_ndim, self.ndim
        m3[:w, :d] = lin
        m3[:w, 3] = self.origin
        if d == 2:
            if w == 2:
                m3[2, 2] = 1.0
            else:
                n = np.cross(self.direction[:, 0], self.direction[:, 1])
                m3[:3, 2] = n / np.linalg.norm(n)
        elif d == 1:
            m3[1, 1] = m3[2, 2] = 1.0
        flip = np.diag([-1.0, -1.0, 1.0, 1.0])
        return flip @ m3

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (spacing, origin, direction, frame)."""
        return {"spacing": list(self.spacing), "origin": list(self.origin),
                "direction": self.direction.tolist(), "frame": "LPS (mm); direction columns = array axes",
                "axis_codes": self.axis_codes()}

    def grid_difference(self, other: ImageGeometry, *, spacing: bool = True) -> str:
        """How the voxels of two images of one shape fail to lie at the same world points ("" if they do).

        Compared: the axis directions (1e-3, float32 headers), the origin (a hundredth of the smallest
        voxel) and, with ``spacing``, the spacing (relative 1e-4). Geometries of different world
        dimension (a plane against a slice placed in 3-D) are not comparable and give "".

        Examples
        --------
        >>> a = ImageGeometry((1.0, 1.0, 2.0))
        >>> a.grid_difference(ImageGeometry((1.0, 1.0, 2.0), origin=(0.5, 0.0, 0.0)))
        'origin (0.0, 0.0, 0.0) against (0.5, 0.0, 0.0), up to 0.5 mm apart'
        """
        if self.direction.shape != other.direction.shape:
            return ""
        if spacing and not np.allclose(self.spacing, other.spacing, rtol=1e-4):
            return (f"spacing {tuple(round(v, 4) for v in self.spacing)} against "
                    f"{tuple(round(v, 4) for v in other.spacing)}")
        if not np.allclose(self.direction, other.direction, atol=1e-3):
            return (f"axes pointing to {self.axis_codes()} against {other.axis_codes()} (direction "
                    f"{np.round(self.direction, 4).tolist()} against {np.round(other.direction, 4).tolist()})")
        shift = float(np.max(np.abs(np.subtract(self.origin, other.origin))))
        if shift > 1e-2 * min(min(self.spacing), min(other.spacing)):
            return (f"origin {tuple(round(v, 4) for v in self.origin)} against "
                    f"{tuple(round(v, 4) for v in other.origin)}, up to {shift:.4g} mm apart")
        return ""

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageGeometry):
            return NotImplemented
        return (self.direction.shape == other.direction.shape
                and np.allclose(self.spacing, other.spacing, rtol=1e-6, atol=1e-9)
                and np.allclose(self.origin, other.origin, rtol=1e-6, atol=1e-6)
                and np.allclose(self.direction, other.direction, atol=1e-6))

    def __hash__(self) -> int:  # pragma: no cover - geometries are compared, not hashed
        return hash((self.spacing, self.origin))


def axis_codes(direction: Any) -> str:
    """Orientation letters of each array axis, nibabel's convention (the RAS letter it points to).

    ``direction`` is an LPS direction matrix (columns = array axes). An axis pointing
    towards the patient's left gets ``"L"``, anterior ``"A"``, superior ``"S"`` and so on,
    so a standard NIfTI in RAS+ storage gives ``"RAS"``. A 2-D world uses the first two
    letter pairs.

    Examples
    --------
    >>> axis_codes(np.diag([-1.0, 1.0, 1.0]))   # LPS x axis reversed -> points right
    'RPS'
    """
    d = np.asarray(direction, dtype=np.float64)
    w = d.shape[0]
    ras = d * np.array([-1.0, -1.0, 1.0][:w])[:, None] if w <= 3 else d
    out = []
    for k in range(d.shape[1]):
        j = int(np.argmax(np.abs(ras[:, k])))
        out.append(_RAS_LETTERS[j][1] if ras[j, k] > 0 else _RAS_LETTERS[j][0])
    return "".join(out)

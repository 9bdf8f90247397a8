"""``mlimaging register FIXED MOVING``: rigid or affine registration of two image files.

Thin over :func:`mlimaging.registration.register`, **in world coordinates**: each image's
geometry (spacing, origin, direction; NIfTI affine, DICOM position and orientation, see
:mod:`mlimaging.data.geometry`) is read with it, and the registration starts from the world
identity (shifted to match the centres of mass), so two scans of the same anatomy with
different origins, orientations (LAS against RAS storage) or grids register correctly.
The warped moving image (and optionally its label map, warped with nearest-neighbour
interpolation) is written on the fixed image's grid **with the fixed image's geometry**, so
it overlays the fixed image in any viewer; a label map that stores its geometry must be on the
moving image's voxel grid (else it is refused). ``--save-transform`` writes a JSON file whose
``"frame"`` states what ``"matrix"`` maps: fixed world points to moving world points (LPS,
mm, as ITK); the matrix in the centred frames of :mod:`mlimaging.registration.transforms`
is kept as ``"internal_matrix"``. Two 2-D slices placed in 3-D space (DICOM files, 2-D
NIfTI) are registered in their common plane and the matrix is the 4x4 world transform
(identity along the normal); slices in different planes are registered in their arrays'
own frames, which the JSON's ``"frame"`` then states.

Everything about the outputs is checked before any work: extensions, folders, existing
files (nothing is overwritten without ``--force``), distinct paths, and, once the images
are read, whether the format can hold the result (PNG only for 2-D images with integer
intensities).

When the registration fails (final loss worse than at the start, or the overlap collapsed,
even after restarts from rotated starts: see :func:`~mlimaging.registration.register`), a
red message says why and the exit code is 2; nothing is written unless ``--keep-failed``
(then the outputs are written for inspection, the JSON says ``"converged": false``, and
the exit code is still 2).

Examples
--------
``mlimaging register t1.nii.gz t2.nii.gz --transform rigid --metric nmi --out t2_on_t1.nii.gz``

``mlimaging register target.nii.gz atlas.nii.gz --transform affine --out atlas_warped.nii.gz
--labels atlas_labels.nii.gz --labels-out labels_on_target.nii.gz --save-transform T.json``
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._images import (
    check_format_fits,
    check_label_format,
    check_same_grid,
    for_output,
    label_map,
    read_gray,
    write_output,
)
from mlimaging.cli.app import command, console

if TYPE_CHECKING:  # numpy is imported inside the functions: `mlimaging --help` stays fast
    import numpy as np

__all__ = ["register_cmd"]

_IMAGE_FORMATS = ("nifti", "pil", "npy", "npz")
_INTERNAL_FRAME = ("centred physical frames of mlimaging.registration.transforms: mm, array axis order, "
                   "centre of each image = origin; fixed point -> moving point")


def _check_output(path: Path, option: str, force: bool) -> None:
    from mlimaging.data.io import image_format

    if image_format(path) not in _IMAGE_FORMATS:
        raise ValueError(f"{option} {path}: write .nii or .nii.gz (geometry kept), .png (2D), .npy or .npz")
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give a file name such as warped.nii.gz")
    if path.exists() and not force:
        raise FileExistsError(f"{option} {path} already exists; pass --force to overwrite it")


def _in_plane(f_geom: Any, m_geom: Any) -> tuple[Any, Any, np.ndarray] | None:
    """Two 2-D slices placed in 3-D space, in the fixed slice's plane: 2-D geometries and the lift.

    Returns ``(fixed_2d, moving_2d, lift)`` with in-plane coordinates ``u = E^T (w - o_f)``
    (``E``: orthonormal basis of the fixed slice's axes) and ``lift`` the 4x4 matrix
    ``[[Q, o_f], [0, 1]]``, ``Q = [E, n]``, that maps in-plane (plus normal) coordinates back
    to the world; None when the slices do not lie in one plane (then only array frames are
    possible).
    """
    import numpy as np

    from mlimaging.data import ImageGeometry

    e, _ = np.linalg.qr(f_geom.direction)
    normal = np.cross(e[:, 0], e[:, 1])
    o_f = np.asarray(f_geom.origin)
    m_dir = np.asarray(m_geom.direction)
    off_plane = abs(float(normal @ (np.asarray(m_geom.origin) - o_f)))
    if np.abs(normal @ m_dir).max() > 1e-4 or off_plane > 1e-3 * min(min(f_geom.spacing), min(m_geom.spacing)):
        return None
    two_d = [ImageGeometry(spacing=g.spacing, origin=tuple(e.T @ (np.asarray(g.origin) - o_f)),
                           direction=e.T @ np.asarray(g.direction)) for g in (f_geom, m_geom)]
    lift = np.eye(4)
    lift[:3, :3] = np.column_stack([e, normal])
    lift[:3, 3] = o_f
    return two_d[0], two_d[1], lift


def _lift(world_2d: np.ndarray, lift: np.ndarray) -> np.ndarray:
    """A 2-D in-plane transform as a 3-D world transform (identity along the slice normal)."""
    import numpy as np

    inner = np.eye(4)
    inner[:2, :2], inner[:2, 3] = world_2d[:2, :2], world_2d[:2, 2]
    return lift @ inner @ np.linalg.inv(lift)


@command("register")
def register_cmd(
    fixed: Path = typer.Argument(..., help="Fixed (reference) image file: NIfTI, PNG, DICOM, NPY/NPZ."),
    moving: Path = typer.Argument(..., help="Moving image file, resampled onto the fixed image's grid."),
    out: Path = typer.Option(..., "--out", help="Warped moving image to write (.nii.gz keeps the fixed geometry)."),
    transform: str = typer.Option("rigid", "--transform", help="rigid or affine."),
    metric: str = typer.Option("nmi", "--metric", help="ssd, sad, ncc (same modality) or nmi, mi (multi-modal)."),
    levels: int = typer.Option(3, "--levels", help="Pyramid levels (factor 2 each)."),
    iterations: int | None = typer.Option(None, "--iterations", help="Iterations per level (default 30 L-BFGS, 100 Adam)."),
    optimizer: str = typer.Option("lbfgs", "--optimizer", help="lbfgs or adam."),
    labels: Path | None = typer.Option(None, "--labels", help="Label map of the moving image, warped with nearest neighbour."),
    labels_out: Path | None = typer.Option(None, "--labels-out", help="Where to write the warped label map."),
    save_transform: Path | None = typer.Option(None, "--save-transform", help="Write the transform matrix as JSON."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    keep_failed: bool = typer.Option(False, "--keep-failed",
                                     help="Write the outputs even when the registration failed (exit code still 2)."),
) -> None:
    """Register MOVING to FIXED (rigid or affine) in world coordinates and write the warped image."""
    import numpy as np

    from mlimaging.registration import RegistrationWarning, register, warp

    if (labels is None) != (labels_out is None):
        raise ValueError("--labels and --labels-out go together: give both or neither")
    outputs = [(out, "--out")] + ([(labels_out, "--labels-out")] if labels_out is not None else [])
    for path, option in outputs:
        _check_output(path, option, force)
    if labels_out is not None:
        check_label_format(labels_out, "--labels-out")
    if save_transform is not None:
        if save_transform.suffix.lower() != ".json":
            raise ValueError(f"--save-transform {save_transform}: give a .json file name")
        if save_transform.is_dir():
            raise IsADirectoryError(f"--save-transform {save_transform} is a folder; give a file name such as T.json")
        if save_transform.exists() and not force:
            raise FileExistsError(f"--save-transform {save_transform} already exists; pass --force to overwrite it")
    paths = [p for p, _ in outputs] + ([save_transform] if save_transform is not None else [])
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError("--out, --labels-out and --save-transform must be different files")
    inputs = {fixed.resolve(), moving.resolve()} | ({labels.resolve()} if labels is not None else set())
    for path, option in [(p, o) for p, o in outputs] + ([(save_transform, "--save-transform")]
                                                         if save_transform is not None else []):
        if path.resolve() in inputs:
            raise ValueError(f"{option} {path} is one of the inputs; write the result to another file")

    f_arr, f_geom = read_gray(fixed, "FIXED")
    m_arr, m_geom = read_gray(moving, "MOVING")
    if f_arr.ndim != m_arr.ndim:
        raise ValueError(f"FIXED and MOVING must both be 2D or both 3D, got shapes {f_arr.shape} and {m_arr.shape}")
    lab_arr = None
    if labels is not None:
        lab_arr, lab_geom = read_gray(labels, "--labels")
        if lab_arr.shape != m_arr.shape:
            raise ValueError(f"--labels {labels} has shape {lab_arr.shape}; it must match MOVING {m_arr.shape}")
        check_same_grid(labels, lab_geom, "--labels", moving, m_geom, "MOVING")
        if lab_arr.dtype.kind not in "biu" and not np.array_equal(lab_arr, np.round(lab_arr)):
            raise ValueError(f"--labels {labels} must hold integer labels")
    check_format_fits(out, "--out", f_arr.ndim, f_arr, source="the fixed image")
    if labels_out is not None:
        check_format_fits(labels_out, "--labels-out", f_arr.ndim, np.dtype(np.uint16), source="the label map")

    plane = None
    if f_geom.world_ndim == f_arr.ndim and m_geom.world_ndim == m_arr.ndim:
        where = {"fixed_geometry": f_geom, "moving_geometry": m_geom}
    elif f_geom.world_ndim == m_geom.world_ndim == 3 and (plane := _in_plane(f_geom, m_geom)) is not None:
        where = {"fixed_geometry": plane[0], "moving_geometry": plane[1]}
    else:  # slices in different planes of 3-D space: their arrays' own frames
        where = {"spacing": f_geom.spacing, "moving_spacing": m_geom.spacing}
    in_world = "fixed_geometry" in where
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RegistrationWarning)  # reported below, as the command's outcome
        result = register(f_arr.astype(np.float32), m_arr.astype(np.float32), transform=transform, metric=metric,
                          levels=levels, iterations=iterations, optimizer=optimizer, **where)
    elapsed = time.perf_counter() - start
    failed = not result.converged
    if failed and not keep_failed:
        raise ValueError(f"{result.message}. Nothing was written (--keep-failed writes the outputs anyway).")

    warped = np.asarray(result.warped, dtype=np.float32)
    write_output(out, for_output(out, warped, f_arr.dtype), f_geom)
    grid = {"spacing": m_geom.spacing, "output_shape": f_arr.shape, "output_spacing": f_geom.spacing}
    if lab_arr is not None and labels_out is not None:
        warped_labels = warp(lab_arr.astype(np.int64), result.transform, mode="nearest", **grid)
        write_output(labels_out, label_map(warped_labels), f_geom)
    matrix = result.world_transform.numpy() if in_world else result.transform.numpy()
    if plane is not None:
        matrix = _lift(matrix, plane[2])
    if save_transform is not None:
        save_transform.parent.mkdir(parents=True, exist_ok=True)
        save_transform.write_text(json.dumps({
            "frame": ("world (LPS, mm, as ITK / DICOM): maps fixed world points to moving world points"
                      if in_world else _INTERNAL_FRAME),
            "matrix": matrix.tolist(),
            "internal_matrix": result.transform.tolist(),
            "internal_frame": _INTERNAL_FRAME,
            "transform": transform, "metric": metric,
            "fixed": str(fixed), "moving": str(moving),
            "fixed_geometry": f_geom.to_dict(), "moving_geometry": m_geom.to_dict(),
            "converged": result.converged, "message": result.message,
            "initial_loss": result.initial_loss, "final_loss": result.final_loss,
            "initial_overlap": result.initial_overlap, "overlap": result.overlap,
            "restarts": result.restarts, "refinements": result.refinements,
        }, indent=2))

    text = np.array2string(matrix, precision=4, suppress_small=True)
    frame = "world (LPS mm), fixed -> moving" if in_world else "array frames (slices in different planes)"
    console.print(f"{transform} registration ({metric}), {elapsed:.1f} s, final loss {result.final_loss:.6g}, "
                  f"overlap {result.overlap:.0%}" + (f", {result.restarts} restarts" if result.restarts else ""))
    console.print(f"transform, {frame}:", highlight=False)
    console.print(text, highlight=False)
    console.print(f"warped image -> {out}" + (f", labels -> {labels_out}" if labels_out is not None else "")
                  + (f", transform -> {save_transform}" if save_transform is not None else ""), soft_wrap=True)
    if failed:
        raise ValueError(f"{result.message}. The outputs were written anyway (--keep-failed).")

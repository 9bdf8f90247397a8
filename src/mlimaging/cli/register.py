"""``mlimaging register FIXED MOVING``: rigid or affine registration of two image files.

Thin over :func:`mlimaging.registration.register`. The spacing of each image comes from
its file (NIfTI header, ``.npz`` key); the warped moving image (and optionally its label
map, warped with nearest-neighbour interpolation) is written on the fixed image's grid
with the fixed image's spacing; ``--save-transform`` writes the physical matrix (fixed to
moving points, centre of each image = origin) as JSON. Nothing is overwritten without
``--force``.

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

import numpy as np
import typer

from mlimaging.cli.app import command, console, err_console

__all__ = ["register_cmd"]

_IMAGE_FORMATS = ("nifti", "pil", "npy", "npz")


def _read_gray(path: Path, what: str) -> tuple[np.ndarray, tuple[float, ...]]:
    from mlimaging.data import read_image

    array, spacing = read_image(path)
    if array.ndim != len(spacing) or array.ndim not in (2, 3):
        raise ValueError(f"{what} {path} must be a grayscale 2D or 3D image, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} {path} must hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{what} {path} holds NaN or infinite values")
    return array, spacing


def _check_output(path: Path, option: str, force: bool) -> None:
    from mlimaging.data.io import image_format

    if image_format(path) not in _IMAGE_FORMATS:
        raise ValueError(f"{option} {path}: write .nii or .nii.gz (spacing kept), .png (2D), .npy or .npz")
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give a file name such as warped.nii.gz")
    if path.exists() and not force:
        raise FileExistsError(f"{option} {path} already exists; pass --force to overwrite it")


def _write(path: Path, array: np.ndarray, spacing: tuple[float, ...]) -> None:
    from mlimaging.data import write_image

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_image(path, array, spacing=spacing)
    for w in caught:
        err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)


@command("register")
def register_cmd(
    fixed: Path = typer.Argument(..., help="Fixed (reference) image file: NIfTI, PNG, DICOM, NPY/NPZ."),
    moving: Path = typer.Argument(..., help="Moving image file, resampled onto the fixed image's grid."),
    out: Path = typer.Option(..., "--out", help="Warped moving image to write (.nii.gz keeps the spacing)."),
    transform: str = typer.Option("rigid", "--transform", help="rigid or affine."),
    metric: str = typer.Option("nmi", "--metric", help="ssd, sad, ncc (same modality) or nmi, mi (multi-modal)."),
    levels: int = typer.Option(3, "--levels", help="Pyramid levels (factor 2 each)."),
    iterations: int | None = typer.Option(None, "--iterations", help="Iterations per level (default 30 L-BFGS, 100 Adam)."),
    optimizer: str = typer.Option("lbfgs", "--optimizer", help="lbfgs or adam."),
    labels: Path | None = typer.Option(None, "--labels", help="Label map of the moving image, warped with nearest neighbour."),
    labels_out: Path | None = typer.Option(None, "--labels-out", help="Where to write the warped label map."),
    save_transform: Path | None = typer.Option(None, "--save-transform", help="Write the transform matrix as JSON."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Register MOVING to FIXED (rigid or affine) and write the warped image."""
    from mlimaging.registration import register, warp

    if (labels is None) != (labels_out is None):
        raise ValueError("--labels and --labels-out go together: give both or neither")
    outputs = [(out, "--out")] + ([(labels_out, "--labels-out")] if labels_out is not None else [])
    for path, option in outputs:
        _check_output(path, option, force)
    if save_transform is not None:
        if save_transform.suffix.lower() != ".json":
            raise ValueError(f"--save-transform {save_transform}: give a .json file name")
        if save_transform.exists() and not force:
            raise FileExistsError(f"--save-transform {save_transform} already exists; pass --force to overwrite it")
    paths = [p for p, _ in outputs] + ([save_transform] if save_transform is not None else [])
    if len({p.resolve() for p in paths}) != len(paths):
        raise ValueError("--out, --labels-out and --save-transform must be different files")

    f_arr, f_sp = _read_gray(fixed, "FIXED")
    m_arr, m_sp = _read_gray(moving, "MOVING")
    if f_arr.ndim != m_arr.ndim:
        raise ValueError(f"FIXED and MOVING must both be 2D or both 3D, got shapes {f_arr.shape} and {m_arr.shape}")
    lab_arr = None
    if labels is not None:
        lab_arr, _ = _read_gray(labels, "--labels")
        if lab_arr.shape != m_arr.shape:
            raise ValueError(f"--labels {labels} has shape {lab_arr.shape}; it must match MOVING {m_arr.shape}")
        if lab_arr.dtype.kind not in "biu" and not np.array_equal(lab_arr, np.round(lab_arr)):
            raise ValueError(f"--labels {labels} must hold integer labels")

    start = time.perf_counter()
    result = register(f_arr.astype(np.float32), m_arr.astype(np.float32), transform=transform, metric=metric,
                      levels=levels, iterations=iterations, optimizer=optimizer, spacing=f_sp, moving_spacing=m_sp)
    elapsed = time.perf_counter() - start
    _write(out, np.asarray(result.warped, dtype=np.float32), f_sp)
    grid = {"spacing": m_sp, "output_shape": f_arr.shape, "output_spacing": f_sp}
    if lab_arr is not None and labels_out is not None:
        warped_labels = warp(lab_arr.astype(np.int64), result.transform, mode="nearest", **grid)
        small = warped_labels.min(initial=0) >= 0 and warped_labels.max(initial=0) <= 255
        _write(labels_out, warped_labels.astype(np.uint8 if small else np.int32), f_sp)
    if save_transform is not None:
        save_transform.parent.mkdir(parents=True, exist_ok=True)
        save_transform.write_text(json.dumps({
            "matrix": result.transform.tolist(),
            "convention": "homogeneous matrix mapping fixed physical points (mm, array axis order, "
                          "centre of the image = origin) to moving physical points",
            "transform": transform, "metric": metric,
            "fixed": str(fixed), "moving": str(moving),
            "fixed_spacing": list(f_sp), "moving_spacing": list(m_sp),
            "loss": result.loss,
        }, indent=2))

    matrix = np.array2string(result.transform.numpy(), precision=4, suppress_small=True)
    console.print(f"{transform} registration ({metric}), {elapsed:.1f} s, final loss {result.loss:.6g}")
    console.print(matrix, highlight=False)
    console.print(f"warped image -> {out}" + (f", labels -> {labels_out}" if labels_out is not None else "")
                  + (f", transform -> {save_transform}" if save_transform is not None else ""))

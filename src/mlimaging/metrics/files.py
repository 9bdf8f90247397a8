"""Evaluate segmentations stored as files: pairs of label maps matched by file name."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlimaging.data.io import SUPPORTED_FORMATS, image_format, read_image, strip_image_suffix
from mlimaging.metrics.evaluation import EvaluationResult, evaluate_segmentation

__all__ = ["evaluate_files", "match_files", "stores_position", "stores_spacing"]


def stores_spacing(path: str | Path) -> bool:
    """Whether an image file states its voxel spacing (NIfTI, DICOM, MetaImage, NRRD, MGZ,
    ``.npz`` with a ``spacing`` key); PNG/JPEG/BMP/TIFF and ``.npy`` files do not."""
    fmt = image_format(path)
    if fmt in ("pil", "npy"):
        return False
    if fmt == "npz":
        with np.load(path, allow_pickle=False) as z:
            return "spacing" in z.files
    return fmt is not None or Path(path).is_dir()


def stores_position(path: str | Path) -> bool:
    """Whether an image file states where its voxels are (origin and axis directions, besides the
    spacing): as :func:`stores_spacing`, and an ``.npz`` needs a ``direction`` key."""
    if image_format(path) == "npz":
        with np.load(path, allow_pickle=False) as z:
            return "direction" in z.files
    return stores_spacing(path)


def _images_in(folder: Path) -> dict[str, Path]:
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and image_format(p) is not None:
            files[strip_image_suffix(p.name)] = p
    return files


def match_files(pred: str | Path, target: str | Path) -> list[tuple[str, Path, Path]]:
    """Pair prediction and ground-truth files.

    ``pred`` and ``target`` are two files, or two folders whose image files are
    matched by name (without extension: ``case1.nii.gz`` matches ``case1.nii``).

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If one is a file and the other a folder, a folder holds no images, or
        a file in one folder has no match in the other (the names are listed).
    """
    pred, target = Path(pred), Path(target)
    for name, p in (("PRED", pred), ("GT", target)):
        if not p.exists():
            raise FileNotFoundError(f"{name} path {p} does not exist")
    if pred.is_file() and target.is_file():
        return [(strip_image_suffix(target.name), pred, target)]
    if pred.is_dir() != target.is_dir():
        raise ValueError(f"PRED ({pred}) and GT ({target}) must both be files or both be folders")
    preds, targets = _images_in(pred), _images_in(target)
    if not targets:
        raise ValueError(f"GT folder {target} holds no image files ({SUPPORTED_FORMATS})")
    missing = sorted(set(targets) - set(preds))
    extra = sorted(set(preds) - set(targets))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no prediction for {', '.join(missing[:10])}")
        if extra:
            parts.append(f"no ground truth for {', '.join(extra[:10])}")
        raise ValueError(f"PRED {pred} and GT {target} do not match by file name: " + "; ".join(parts))
    return [(k, preds[k], targets[k]) for k in sorted(targets)]


def evaluate_files(
    pred: str | Path,
    target: str | Path,
    *,
    labels: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
    metrics: Sequence[str] = ("dice", "hd95", "assd"),
    jobs: int = 1,
) -> EvaluationResult:
    """Evaluate label-map files (or folders of them) with :func:`evaluate_segmentation`.

    The spacing of each case comes from its ground-truth file (NIfTI or DICOM header,
    ``.npz`` ``spacing`` key, ...) unless ``spacing`` is given. Distances are in mm
    when the spacing is known (given, or stored in the files) and in voxels for files
    that store none (PNG, JPEG, ``.npy``); the result's ``metadata["distance_units"]``
    says which. A prediction whose shape or spacing differs from its ground truth is
    an error naming the file, and so is one whose origin or axis directions differ
    when both files store them (a mask in another orientation or shifted: its voxels
    do not correspond), and a file that is not one label per voxel (RGB, 4-D).
    """
    pairs = match_files(pred, target)
    preds, targets, spacings, names = [], [], [], []
    for name, p_path, t_path in pairs:
        p, p_geom = read_image(p_path, geometry=True)
        t, t_geom = read_image(t_path, geometry=True)
        for arr, geom, path in ((p, p_geom, p_path), (t, t_geom, t_path)):
            if arr.ndim != geom.ndim:
                raise ValueError(f"{path}: expected a label map (one label per voxel), got shape {arr.shape} for "
                                 f"{geom.ndim} spatial axes (colour, multi-channel or a 4D series)")
        if p.shape != t.shape:
            raise ValueError(f"{p_path}: shape {p.shape} differs from its ground truth {t_path} {t.shape}")
        p_sp, t_sp = p_geom.spacing, t_geom.spacing
        if spacing is None and not np.allclose(p_sp, t_sp, rtol=1e-4, atol=1e-6):
            raise ValueError(f"{p_path}: spacing {tuple(p_sp)} differs from its ground truth {t_path} {tuple(t_sp)}; "
                             "resample it, or pass --spacing to override both")
        if stores_position(p_path) and stores_position(t_path):  # else it is taken to be on its truth's grid
            why = p_geom.grid_difference(t_geom, spacing=False)  # (spacing: checked above, --spacing overrides)
            if why:
                raise ValueError(f"{p_path}: not on its ground truth {t_path}'s voxel grid ({why}); the voxels do not "
                                 "correspond: resample the prediction onto the ground truth's grid")
        for arr, path in ((p, p_path), (t, t_path)):
            if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
                raise ValueError(f"{path}: expected an integer label map, found non-integer values")
        preds.append(p.astype(np.int64))
        targets.append(t.astype(np.int64))
        if spacing is not None:
            spacings.append(tuple(spacing))
        else:  # None: no spacing in the file, distances in voxels
            spacings.append(tuple(t_sp) if stores_spacing(t_path) else None)
        names.append(name)
    return evaluate_segmentation(preds, targets, labels=labels, spacing=spacings, metrics=tuple(metrics),
                                 names=names, jobs=jobs)

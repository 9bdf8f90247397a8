"""``mlimaging sam predict|auto``: Segment Anything (SAM) on an image file with a checkpoint file.

Thin over :mod:`mlimaging.models.sam`: :func:`~mlimaging.models.sam.load_sam_checkpoint` loads an
official-format state dict (SAM ViT-B/L/H, MedSAM, or a ``sam_tiny`` trained here; ``--variant``
checks the file against a named configuration), :class:`~mlimaging.models.sam.SAMPredictor`
encodes the image once and answers the prompts, and ``automatic_masks`` prompts a grid of
points (Kirillov et al. 2023, arXiv:2304.02643).

Images: anything :func:`mlimaging.data.read_image` reads. An RGB PNG/JPEG is used exactly as
segment-anything uses it (``uint8``); a grayscale image, a NIfTI, a DICOM (CT in HU, MRI) is
windowed to 0..255 (``--window LO,HI``, else robust percentiles; an 8-bit grayscale image is used
as it is) and replicated to three channels. A volume is segmented one 2-D slice at a time:
``--slice AXIS:INDEX`` picks it (``--slice 2:12``: the array axis 2 at index 12, in the order
``mlimaging info`` shows the shape). Prompts are in pixel coordinates of that 2-D image:
``X`` is the column (its second array axis), ``Y`` the row (its first), as in segment-anything.

Outputs keep the geometry of the 2-D image they were computed from (for a slice: the volume's
spacing, direction and the slice's own origin), so a ``.nii.gz`` mask overlays that slice of the
scan in any viewer. Nothing is overwritten without ``--force``.

Examples
--------
``mlimaging sam predict photo.png --checkpoint sam_vit_b_01ec64.pth --point 220,310 --out mask.png``

``mlimaging sam predict ct.nii.gz --checkpoint medsam_vit_b.pth --slice 2:40 --box 80,60,200,150
--window -160,240 --out liver.nii.gz``

``mlimaging sam auto photo.png --checkpoint sam_vit_b_01ec64.pth --out masks/``
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._images import label_map, write_output
from mlimaging.cli.app import app, command, console, echo_warnings, err_console

if TYPE_CHECKING:  # NumPy and torch are imported inside the commands: `mlimaging --help` stays fast
    import numpy as np

    from mlimaging.data import ImageGeometry

__all__ = ["sam_app"]

sam_app = typer.Typer(
    help="Segment Anything (SAM) with a checkpoint file: masks for point/box prompts, or every object.",
    no_args_is_help=True,
)
app.add_typer(sam_app, name="sam")

_MASK_FORMATS = ("nifti", "pil", "npy", "npz")
_EXTENSIONS = {"png": ".png", "nii.gz": ".nii.gz", "nii": ".nii", "npz": ".npz", "npy": ".npy"}
#: Files ``sam auto`` writes into its folder (``--force`` replaces these and nothing else).
_AUTO_FILE = re.compile(r"^(mask_\d+|labels)\.(png|nii\.gz|nii|npz|npy)$|^masks\.(json|csv)$")


# ----------------------------------------------------------------------------- parsing
def _numbers(text: str, option: str, count: tuple[int, ...], example: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in count or not all(abs(v) < float("inf") for v in values):
        raise ValueError(f"{option} must be {' or '.join(map(str, count))} comma-separated numbers such as "
                         f"{example}, got {text!r}")
    return values


def _parse_slice(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"--slice must be AXIS:INDEX with non-negative integers, e.g. 2:40, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def _parse_window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    lo, hi = _numbers(text, "--window", (2,), "-160,240")
    if not hi > lo:
        raise ValueError(f"--window LO,HI needs LO < HI, got {text!r}")
    return lo, hi


def _parse_points(points: list[str], shape: tuple[int, int]) -> tuple[list[list[float]], list[int]]:
    """``X,Y[,LABEL]`` strings -> coordinates (x = column, y = row) and labels (1 foreground, 0 background)."""
    coords, labels = [], []
    h, w = shape
    for text in points:
        values = _numbers(text, "--point", (2, 3), "120,80 or 120,80,0")
        x, y = values[0], values[1]
        label = 1 if len(values) == 2 else values[2]
        if label not in (0, 1):
            raise ValueError(f"--point {text!r}: LABEL must be 1 (foreground) or 0 (background), got {label:g}")
        if not (0 <= x < w and 0 <= y < h):
            raise ValueError(f"--point {text!r} is outside the image: X (column) must be in [0, {w}) and "
                             f"Y (row) in [0, {h}) for an image of {h} rows x {w} columns")
        coords.append([x, y])
        labels.append(int(label))
    return coords, labels


def _parse_box(text: str | None, shape: tuple[int, int]) -> list[float] | None:
    if text is None:
        return None
    x0, y0, x1, y1 = _numbers(text, "--box", (4,), "40,30,200,180")
    h, w = shape
    if not x1 > x0:
        raise ValueError(f"--box X0,Y0,X1,Y1 needs X1 > X0 (left to right), got X0={x0:g}, X1={x1:g}")
    if not y1 > y0:
        raise ValueError(f"--box X0,Y0,X1,Y1 needs Y1 > Y0 (top to bottom), got Y0={y0:g}, Y1={y1:g}")
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        raise ValueError(f"--box {text!r} is outside the image: X in [0, {w}] and Y in [0, {h}] for an image "
                         f"of {h} rows x {w} columns")
    return [x0, y0, x1, y1]


# ----------------------------------------------------------------------------- image and geometry
def slice_geometry(geometry: ImageGeometry, axis: int, index: int) -> ImageGeometry:
    r"""The geometry of the 2-D slice ``index`` along array ``axis`` of a 3-D image.

    The slice keeps the other two axes' spacing and world directions; its origin is the world
    point of the slice's first voxel, :math:`o' = o + D_{:,a}\, s_a\, k`, so the slice pixel
    :math:`(i, j)` sits where the volume voxel with :math:`k` inserted at ``axis`` sits.

    Examples
    --------
    >>> from mlimaging.data import ImageGeometry
    >>> g = ImageGeometry(spacing=(2.0, 2.0, 3.0), origin=(10.0, 0.0, -5.0))
    >>> s = slice_geometry(g, 2, 4)
    >>> s.spacing, s.origin, s.direction.shape
    ((2.0, 2.0), (10.0, 0.0, 7.0), (3, 2))
    """
    import numpy as np

    from mlimaging.data import ImageGeometry

    keep = [k for k in range(geometry.ndim) if k != axis]
    direction = np.asarray(geometry.direction)
    origin = np.asarray(geometry.origin) + direction[:, axis] * geometry.spacing[axis] * index
    return ImageGeometry(spacing=tuple(geometry.spacing[k] for k in keep), origin=tuple(origin),
                         direction=direction[:, keep])


def _read_2d(path: Path, slice_: str | None) -> tuple[np.ndarray, ImageGeometry, bool, str]:
    """The 2-D image to segment (RGB ``(H, W, 3)`` or grayscale ``(H, W)``), its geometry, whether it is
    RGB, and a description of it."""
    import numpy as np

    from mlimaging.data import read_image

    array, geometry = read_image(path, geometry=True)
    rgb = array.ndim == 3 and geometry.ndim == 2 and array.shape[-1] in (3, 4)
    if rgb:
        array = array[..., :3]
    elif array.ndim != geometry.ndim or array.ndim not in (2, 3):
        raise ValueError(f"IMAGE {path} has shape {array.shape}; expected a 2-D image (grayscale or RGB) or a "
                         "3-D volume")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"IMAGE {path} must hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"IMAGE {path} holds NaN or infinite values")
    what = f"{path.name} ({'x'.join(map(str, array.shape))}{', RGB' if rgb else ''})"
    if array.ndim == 3 and not rgb:
        if slice_ is None:
            single = [k for k in range(3) if array.shape[k] == 1]
            if not single:
                raise ValueError(f"IMAGE {path} is a 3-D volume of shape {array.shape}: choose the 2-D slice to "
                                 "segment with --slice AXIS:INDEX (e.g. --slice 2:"
                                 f"{array.shape[2] // 2} for the middle slice along axis 2)")
            axis, index = single[0], 0  # a 2-D image stored with a singleton axis (X, Y, 1)
        else:
            axis, index = _parse_slice(slice_)
            if axis > 2:
                raise ValueError(f"--slice {slice_!r}: AXIS must be 0, 1 or 2 for a volume of shape {array.shape}")
            if index >= array.shape[axis]:
                raise ValueError(f"--slice {slice_!r}: INDEX must be below {array.shape[axis]}, the size of axis "
                                 f"{axis} of the volume {array.shape}")
            what = f"{path.name} slice {index} of axis {axis} ({'x'.join(map(str, array.shape))})"
        geometry = slice_geometry(geometry, axis, index)
        array = np.take(array, index, axis=axis)
    elif slice_ is not None:
        raise ValueError(f"--slice applies to 3-D volumes; IMAGE {path} is a 2-D image of shape {array.shape}")
    if min(array.shape[:2]) < 2:
        raise ValueError(f"IMAGE {path}: the 2-D image of shape {array.shape[:2]} is too small to segment")
    return array, geometry, rgb, what


def _window(window: str | None, rgb: bool) -> tuple[float, float] | None:
    lo_hi = _parse_window(window)
    if lo_hi is not None and rgb:
        raise ValueError("--window applies to grayscale images and volumes; an RGB image is used as it is, "
                         "as segment-anything uses it")
    return lo_hi


def _load(checkpoint: Path, variant: str | None) -> Any:
    """The SAM of ``--checkpoint`` (eval mode); every failure to read it names the option."""
    import pickle

    from mlimaging.models.sam import SAM_CONFIGS, load_sam_checkpoint

    if variant is not None and variant not in SAM_CONFIGS:
        raise ValueError(f"--variant must be one of {', '.join(SAM_CONFIGS)}, got {variant!r}")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
    try:
        with err_console.status(f"loading {checkpoint.name}"):
            return load_sam_checkpoint(checkpoint, variant=variant)
    except (ValueError, KeyError, RuntimeError, EOFError, pickle.UnpicklingError, AttributeError) as exc:
        msg = str(exc).strip() or type(exc).__name__
        if "--checkpoint" in msg:
            raise
        prefix = f"checkpoint {checkpoint} "
        if msg.startswith(prefix):  # the loader names the file already: name the option instead
            raise ValueError(f"--checkpoint {checkpoint} {msg[len(prefix):]}") from None
        raise ValueError(f"--checkpoint {checkpoint}: {msg}") from None


def _check_mask_out(out: Path, force: bool) -> None:
    from mlimaging.cli._images import check_label_format
    from mlimaging.data.io import image_format

    if image_format(out) not in _MASK_FORMATS:
        raise ValueError(f"--out {out}: masks are written as .nii.gz or .nii or .npz (geometry kept), .png or .npy")
    check_label_format(out, "--out")
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name such as mask.nii.gz")
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")


def _candidate_paths(out: Path) -> list[Path]:
    from mlimaging.data.io import strip_image_suffix

    stem = strip_image_suffix(out.name)
    suffix = out.name[len(stem):]
    return [out.with_name(f"{stem}-{k}{suffix}") for k in (1, 2, 3)]


def _to_numpy(value: Any) -> np.ndarray:
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _area_mm2(n_pixels: int, geometry: ImageGeometry, image: Path) -> float | None:
    """Area in mm^2 from the pixel spacing, or None for formats that store no spacing (PNG, JPEG, .npy)."""
    from mlimaging.data.io import image_format

    if image_format(image) in ("pil", "npy"):
        return None
    return float(n_pixels * geometry.spacing[0] * geometry.spacing[1])


# ----------------------------------------------------------------------------- sam predict
@command("predict", typer_app=sam_app)
def predict_cmd(
    image: Path = typer.Argument(..., help="Image file (PNG/JPEG RGB or gray, NIfTI, DICOM, NPY/NPZ); a volume "
                                           "needs --slice."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="SAM state dict (official sam_vit_b/l/h .pth, "
                                    "MedSAM, or sam_tiny weights)."),
    out: Path = typer.Option(..., "--out", help="Mask file to write: .nii.gz keeps the geometry, .png for 2-D."),
    point: list[str] | None = typer.Option(None, "--point", help="X,Y[,LABEL]: X column, Y row in pixels; LABEL 1 "
                                           "foreground (default) or 0 background. Repeat for more points."),
    box: str | None = typer.Option(None, "--box", help="X0,Y0,X1,Y1: the object's box in pixels (left, top, right, "
                                   "bottom)."),
    variant: str | None = typer.Option(None, "--variant", help="vit_b, vit_l, vit_h or tiny: check the checkpoint "
                                       "is that model (default: inferred from its shapes)."),
    multimask: bool = typer.Option(False, "--multimask/--best", help="--multimask: also write SAM's three "
                                   "candidate masks as OUT-1, OUT-2, OUT-3; --best (default): only the mask "
                                   "written to --out (for one point, the candidate of highest predicted IoU)."),
    window: str | None = typer.Option(None, "--window", help="LO,HI intensities mapped to 0..255 for gray images "
                                      "and scans, e.g. -160,240 for CT in HU (default: 0.5-99.5 percentiles)."),
    slice_: str | None = typer.Option(None, "--slice", help="AXIS:INDEX of the 2-D slice of a volume to segment, "
                                      "e.g. 2:40."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out (and its candidates) if they exist."),
) -> None:
    """Mask of the object that points and/or a box prompt (one image encoding, SAM's mask decoder)."""
    import numpy as np

    from mlimaging.models.sam.predictor import SAMPredictor

    if not point and box is None:
        raise ValueError("give a prompt: --point X,Y[,LABEL] (repeatable) and/or --box X0,Y0,X1,Y1")
    targets = [out, *(_candidate_paths(out) if multimask else [])]
    for path in targets:
        _check_mask_out(path, force)
    array, geometry, rgb, what = _read_2d(image, slice_)
    shape = array.shape[:2]
    coords, labels = _parse_points(point or [], shape)
    box_xyxy = _parse_box(box, shape)
    win = _window(window, rgb)
    sam = _load(checkpoint, variant)
    # SAM's advice: one point is ambiguous (part, object, whole): ask for three candidates and keep
    # the best by predicted IoU; several points or a box: one mask.
    ask_three = multimask or (len(coords) == 1 and box_xyxy is None)
    predictor = SAMPredictor(sam)
    with echo_warnings(), err_console.status("encoding the image"):
        if rgb:
            predictor.set_image(array)
        else:
            predictor.set_image(array, window=win)
        masks, iou, _ = predictor.predict(
            points=np.asarray(coords, dtype=np.float32) if coords else None,
            point_labels=np.asarray(labels, dtype=np.int64) if coords else None,
            boxes=np.asarray(box_xyxy, dtype=np.float32) if box_xyxy is not None else None,
            multimask=ask_three)
    masks = _to_numpy(masks).reshape(-1, *shape).astype(bool)
    iou = _to_numpy(iou).reshape(-1).astype(float)
    best = int(np.argmax(iou))
    write_output(out, masks[best].astype(np.uint8), geometry)
    n = int(masks[best].sum())
    mm2 = _area_mm2(n, geometry, image)
    console.print(f"{what}: mask of {n} pixels ({100.0 * n / masks[best].size:.1f}%"
                  f"{'' if mm2 is None else f', {mm2:.6g} mm^2'}), predicted IoU {iou[best]:.3f} -> {out}",
                  soft_wrap=True)
    if n == 0:
        err_console.print("[yellow]warning:[/] the mask is empty: check that the prompt lies on the object "
                          "(X is the column, Y the row of the 2-D image) and that the checkpoint suits these images",
                          soft_wrap=True)
    if multimask:
        for k, path in enumerate(targets[1:]):
            write_output(path, masks[k].astype(np.uint8), geometry)
            console.print(f"candidate {k + 1}: {int(masks[k].sum())} pixels, predicted IoU {iou[k]:.3f} -> {path}",
                          soft_wrap=True)


# ----------------------------------------------------------------------------- sam auto
def _check_folder(out: Path, force: bool) -> None:
    """``--out`` must be a new or empty folder, or (with ``--force``) hold only files sam auto writes."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder for the masks, e.g. masks/")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} already exists and is not empty; pass --force to replace its masks")
        foreign = sorted(p.name for p in out.iterdir() if not _AUTO_FILE.match(p.name))
        if foreign:
            raise FileExistsError(f"--out {out} holds files that sam auto did not write ({', '.join(foreign[:3])}"
                                  f"{', ...' if len(foreign) > 3 else ''}); give another folder")


def _clear_folder(out: Path) -> None:
    """Remove a previous run's masks (checked by :func:`_check_folder`), once the new ones are computed."""
    if out.is_dir():
        for p in out.iterdir():
            if _AUTO_FILE.match(p.name):
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


@command("auto", typer_app=sam_app)
def auto_cmd(
    image: Path = typer.Argument(..., help="Image file (PNG/JPEG RGB or gray, NIfTI, DICOM, NPY/NPZ); a volume "
                                           "needs --slice."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="SAM state dict (official sam_vit_b/l/h .pth, "
                                    "MedSAM, or sam_tiny weights)."),
    out: Path = typer.Option(..., "--out", help="Folder to write: mask_001... (one per object), labels (a label "
                             "map), masks.json and masks.csv (area, box, predicted IoU, stability)."),
    points_per_side: int = typer.Option(32, "--points-per-side", min=1, help="Grid of N x N point prompts."),
    pred_iou_thresh: float = typer.Option(0.88, "--pred-iou-thresh", help="Keep masks whose predicted IoU "
                                          "exceeds this."),
    stability_thresh: float = typer.Option(0.95, "--stability-thresh", help="Keep masks whose stability score "
                                           "(IoU between masks thresholded at +-1) exceeds this."),
    box_nms_thresh: float = typer.Option(0.7, "--box-nms-thresh", help="Drop a mask whose box overlaps a better "
                                         "one's by more than this IoU."),
    ext: str | None = typer.Option(None, "--ext", help="png, nii.gz, nii, npz or npy (default: png for PNG/JPEG "
                                   "input, else nii.gz which keeps the geometry)."),
    variant: str | None = typer.Option(None, "--variant", help="vit_b, vit_l, vit_h or tiny: check the checkpoint "
                                       "is that model (default: inferred from its shapes)."),
    window: str | None = typer.Option(None, "--window", help="LO,HI intensities mapped to 0..255 for gray images "
                                      "and scans (default: 0.5-99.5 percentiles)."),
    slice_: str | None = typer.Option(None, "--slice", help="AXIS:INDEX of the 2-D slice of a volume to segment, "
                                      "e.g. 2:40."),
    force: bool = typer.Option(False, "--force", help="Replace the masks in --out if it holds some."),
) -> None:
    """Every object: a grid of point prompts, masks kept by predicted IoU and stability, de-duplicated by NMS."""
    import numpy as np

    from mlimaging.data.io import image_format
    from mlimaging.models.sam.automatic import automatic_masks

    for value, option in ((pred_iou_thresh, "--pred-iou-thresh"), (stability_thresh, "--stability-thresh"),
                          (box_nms_thresh, "--box-nms-thresh")):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{option} must be in [0, 1], got {value}")
    if ext is not None and ext.lstrip(".") not in _EXTENSIONS:
        raise ValueError(f"--ext must be one of {', '.join(_EXTENSIONS)}, got {ext!r}")
    array, geometry, rgb, what = _read_2d(image, slice_)
    if points_per_side > max(array.shape[:2]):  # 100000 asked numpy for 75 GiB and ended in a traceback
        raise ValueError(f"--points-per-side {points_per_side} is more points than the image has pixels per side "
                         f"({array.shape[0]} x {array.shape[1]}); give at most {max(array.shape[:2])}")
    suffix = _EXTENSIONS[ext.lstrip(".")] if ext is not None else (
        ".png" if image_format(image) == "pil" else ".nii.gz")
    win = _window(window, rgb)
    _check_folder(out, force)
    sam = _load(checkpoint, variant)
    with echo_warnings():
        records = automatic_masks(sam, array, points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                                  stability_score_thresh=stability_thresh, box_nms_thresh=box_nms_thresh,
                                  window=win, progress=True)
    _clear_folder(out)
    shape = array.shape[:2]
    labels = np.zeros(shape, dtype=np.int32)
    rows = []
    for k, rec in enumerate(records, start=1):
        mask = _to_numpy(rec["segmentation"]).reshape(shape).astype(bool)
        name = f"mask_{k:03d}{suffix}"
        write_output(out / name, mask.astype(np.uint8), geometry)
        area = int(rec.get("area", mask.sum()))
        rows.append({"label": k, "file": name, "area_pixels": area, "area_mm2": _area_mm2(area, geometry, image),
                     "bbox_xywh": [float(v) for v in _to_numpy(rec["bbox"]).reshape(-1)],
                     "predicted_iou": float(rec["predicted_iou"]), "stability_score": float(rec["stability_score"]),
                     "point_xy": [float(v) for v in _to_numpy(rec["point_coords"]).reshape(-1)[:2]]})
    # Objects overlap (a part inside its whole): paint the largest first, so each pixel gets the
    # label of the smallest object holding it.
    for row in sorted(rows, key=lambda r: -r["area_pixels"]):
        mask = _to_numpy(records[row["label"] - 1]["segmentation"]).reshape(shape).astype(bool)
        labels[mask] = row["label"]
    write_output(out / f"labels{suffix}", label_map(labels), geometry)
    summary = {"image": str(image), "what": what, "checkpoint": str(checkpoint), "points_per_side": points_per_side,
               "pred_iou_thresh": pred_iou_thresh, "stability_thresh": stability_thresh,
               "box_nms_thresh": box_nms_thresh, "window": list(win) if win is not None else None,
               "geometry": geometry.to_dict(), "masks": rows}
    (out / "masks.json").write_text(json.dumps(summary, indent=2))
    with open(out / "masks.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "file", "area_pixels", "area_mm2", "bbox_x", "bbox_y", "bbox_w", "bbox_h",
                         "predicted_iou", "stability_score", "point_x", "point_y"])
        for r in rows:
            writer.writerow([r["label"], r["file"], r["area_pixels"],
                             "" if r["area_mm2"] is None else f"{r['area_mm2']:.6g}", *r["bbox_xywh"],
                             f"{r['predicted_iou']:.6f}", f"{r['stability_score']:.6f}", *r["point_xy"]])
    if not rows:
        err_console.print("[yellow]warning:[/] no mask passed the filters: lower --pred-iou-thresh or "
                          "--stability-thresh, or check that the checkpoint suits these images", soft_wrap=True)
    console.print(f"{what}: {len(rows)} object(s) -> {out} (mask_###{suffix}, labels{suffix}, masks.json, "
                  "masks.csv)", soft_wrap=True)

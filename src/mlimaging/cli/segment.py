"""Segmentation commands: ``segment threshold|otsu|region-grow``, ``train segmenter``, ``predict-seg``.

Thin over :mod:`mlimaging.segmentation` (classical methods), the training engine and
sliding-window inference. Masks are written as NIfTI (``.nii``/``.nii.gz``, spacing kept),
PNG or NumPy, chosen by the extension of ``--out``; nothing is overwritten without
``--force``.

Examples
--------
``mlimaging segment otsu brain.nii.gz --out mask.nii.gz``

``mlimaging segment region-grow ct.nii.gz --seed 120,96,40 --lower 20 --upper 80 --out liver.nii.gz``

``mlimaging train segmenter --data phantoms --model unet --epochs 20 --out runs/unet``

``mlimaging predict-seg --checkpoint runs/unet/model.pt image.nii.gz --out pred.nii.gz``
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import typer

from mlimaging.cli.app import app, command, console, err_console
from mlimaging.cli.train import train_app

__all__ = ["segment_app"]

segment_app = typer.Typer(
    help="Classical segmentation of an image file: thresholds, Otsu, region growing.",
    no_args_is_help=True,
)
app.add_typer(segment_app, name="segment")

_MASK_FORMATS = ("nifti", "pil", "npy", "npz")
_META = "segmenter.json"
_MODEL_FILE = "model.pt"


# ----------------------------------------------------------------------------- file helpers
def _read_gray(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """A grayscale 2D or 3D image and its spacing (``ValueError`` otherwise)."""
    from mlimaging.data import read_image

    array, spacing = read_image(path)
    if array.ndim != len(spacing) or array.ndim not in (2, 3):
        raise ValueError(f"IMAGE {path} must be a grayscale 2D or 3D image, got shape {array.shape} "
                         "(colour or multi-channel images are not supported here)")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"IMAGE {path} holds NaN or infinite values")
    return array, spacing


def _check_out(out: Path, force: bool) -> None:
    from mlimaging.data.io import image_format

    if image_format(out) not in _MASK_FORMATS:
        raise ValueError(f"--out {out}: masks are written as .nii or .nii.gz (spacing kept), .png (2D), .npy or .npz")
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name such as mask.nii.gz")


def _write_mask(out: Path, mask: np.ndarray, spacing: tuple[float, ...]) -> None:
    """Write a label map with the image's spacing (a format without spacing warns in yellow)."""
    from mlimaging.data import write_image

    labels = mask.astype(np.uint8) if mask.max(initial=0) <= 255 else mask.astype(np.int32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_image(out, labels, spacing=spacing)
    for w in caught:
        err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)


def _report(what: str, mask: np.ndarray, out: Path) -> None:
    n = int(np.count_nonzero(mask))
    console.print(f"{what}: {n} of {mask.size} voxels ({100.0 * n / mask.size:.1f}%) -> {out}")


def _parse_seed(text: str, ndim: int) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--seed must be comma-separated voxel indices such as 10,20 or 10,20,5; got {text!r}") from None
    if len(values) != ndim:
        raise ValueError(f"--seed {text!r} has {len(values)} coordinates; the image has {ndim} axes")
    return values


# ----------------------------------------------------------------------------- segment ...
@command("threshold", typer_app=segment_app)
def threshold_cmd(
    image: Path = typer.Argument(..., help="Image file (NIfTI, PNG, DICOM, NPY/NPZ)."),
    lower: float = typer.Option(..., "--lower", help="Lowest intensity kept (included)."),
    upper: float | None = typer.Option(None, "--upper", help="Highest intensity kept (included); default: no limit."),
    out: Path = typer.Option(..., "--out", help="Mask file to write (.nii.gz keeps the spacing, .png for 2D)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Voxels with LOWER <= intensity (<= UPPER): a 0/1 mask."""
    from mlimaging.segmentation import threshold

    _check_out(out, force)
    array, spacing = _read_gray(image)
    mask = threshold(array, lower, upper)
    _write_mask(out, mask, spacing)
    _report(f"threshold [{lower:g}, {'inf' if upper is None else f'{upper:g}'}]", mask, out)


@command("otsu", typer_app=segment_app)
def otsu_cmd(
    image: Path = typer.Argument(..., help="Image file (NIfTI, PNG, DICOM, NPY/NPZ)."),
    out: Path = typer.Option(..., "--out", help="Mask file to write (.nii.gz keeps the spacing, .png for 2D)."),
    classes: int = typer.Option(2, "--classes", min=2, help="Number of classes; above 2, multi-level Otsu and labels 0..K-1."),
    bins: int = typer.Option(256, "--bins", min=2, help="Histogram bins."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Otsu's threshold (0/1 mask), or multi-level Otsu with --classes K (labels 0..K-1)."""
    from mlimaging.segmentation import multi_otsu_thresholds, multi_threshold, otsu_threshold

    _check_out(out, force)
    array, spacing = _read_gray(image)
    if classes == 2:
        t = otsu_threshold(array, bins=bins)
        mask = (array > t).astype(np.uint8)
        what = f"Otsu threshold {t:.6g} (voxels above it)"
    else:
        ts = multi_otsu_thresholds(array, classes, bins=bins)
        mask = multi_threshold(array, ts)
        what = f"multi-level Otsu thresholds {', '.join(f'{v:.6g}' for v in ts)} (non-zero labels)"
    _write_mask(out, mask, spacing)
    _report(what, mask, out)


@command("region-grow", typer_app=segment_app)
def region_grow_cmd(
    image: Path = typer.Argument(..., help="Image file (NIfTI, PNG, DICOM, NPY/NPZ)."),
    seed: list[str] = typer.Option(..., "--seed", help="Seed voxel as indices along the image's axes, in the order "
                                   "`mlimaging info` shows the shape (NIfTI i,j,k; PNG row,column); repeat for more seeds."),
    lower: float = typer.Option(..., "--lower", help="Lowest intensity of the region (included)."),
    upper: float = typer.Option(..., "--upper", help="Highest intensity of the region (included)."),
    out: Path = typer.Option(..., "--out", help="Mask file to write (.nii.gz keeps the spacing, .png for 2D)."),
    connectivity: int = typer.Option(1, "--connectivity", help="1: faces only; up to the number of axes: full."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """The connected region of voxels in [LOWER, UPPER] holding the seeds (SimpleITK's ConnectedThreshold)."""
    from mlimaging.segmentation import region_growing

    _check_out(out, force)
    array, spacing = _read_gray(image)
    seeds = [_parse_seed(s, array.ndim) for s in seed]
    mask = region_growing(array, seeds, lower=lower, upper=upper, connectivity=connectivity)
    _write_mask(out, mask, spacing)
    _report(f"region grown from {len(seeds)} seed(s) in [{lower:g}, {upper:g}]", mask, out)


# ----------------------------------------------------------------------------- train segmenter
def _int_tuple(text: str, n: int, name: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None
    if len(values) == 1:
        values = values * n
    if len(values) != n or min(values) < 1:
        raise ValueError(f"{name} must be one positive integer or {n} of them, got {text!r}")
    return values


def _datasets(data: str, *, spatial_dims: int, size: int | None, n_train: int, seed: int) -> tuple[Any, Any, dict]:
    """Training and validation datasets of ``--data`` and what the checkpoint records of them."""
    from mlimaging.data import PhantomDataset, load_dataset
    from mlimaging.segmentation.pipeline import BASE_KNOBS

    if data == "phantoms":
        side = size or (64 if spatial_dims == 2 else 32)
        shape = (side,) * spatial_dims
        knobs = {"n_structures": 3, **BASE_KNOBS}
        train = PhantomDataset(n_train, shape, seed=2 * seed, **knobs)
        val = PhantomDataset(max(2, n_train // 4), shape, seed=2 * seed + 1, **knobs)
        return train, val, {"data": "phantoms", "phantom_shape": list(shape), "phantom_knobs": knobs,
                            "num_classes": 4, "in_channels": 1, "default_roi": side}
    root = Path(data)
    if not root.is_dir():
        raise FileNotFoundError(f"--data must be 'phantoms' or a folder with images/ and masks/; {root} is not a folder")
    train = load_dataset("segmentation-folder", split="train", root=root, seed=seed)
    val = load_dataset("segmentation-folder", split="val", root=root, seed=seed)
    if len(train) == 0:
        raise ValueError(f"--data {root}: no training images")
    image, mask = train[0]
    if mask.ndim != spatial_dims:
        raise ValueError(f"--spatial-dims is {spatial_dims} but the masks in {root} have {mask.ndim} axes")
    num_classes = 1 + max(int(train[i][1].max()) for i in range(len(train)))
    return train, (val if len(val) else None), {
        "data": str(root), "num_classes": max(num_classes, 2), "in_channels": int(image.shape[0]),
        "default_roi": 64 if spatial_dims == 2 else 32}


def _prepare_out(out: Path, *, resume: bool, force: bool) -> None:
    if resume:
        if not (out / _META).is_file():
            raise FileNotFoundError(f"--resume: {out / _META} not found; there is no training run to resume in {out}")
        return
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} already exists; pass --resume to continue its training, or --force to start over")
        for name in (_META, _MODEL_FILE, "history.json", "checkpoints/last.pt", "checkpoints/best.pt"):
            (out / name).unlink(missing_ok=True)


def _new_meta(model: str, spatial_dims: int, info: dict, *, channels: int | None, depth: int | None,
              roi_size: str | None, **settings: Any) -> dict[str, Any]:
    """What a segmenter checkpoint records: architecture, normalisation, window and training settings."""
    kwargs: dict[str, Any] = {}
    if channels is not None:
        if model not in ("unet", "segnet", "deeplab"):
            raise ValueError(f"--channels applies to unet, segnet and deeplab, not {model}")
        kwargs["channels"] = channels
    if depth is not None:
        if model not in ("unet", "segnet"):
            raise ValueError(f"--depth applies to unet and segnet, not {model}")
        kwargs["depth"] = depth
    roi = _int_tuple(roi_size, spatial_dims, "--roi-size") if roi_size else (info["default_roi"],) * spatial_dims
    if model in ("unet", "segnet") and any(r % 2 ** kwargs.get("depth", 3) for r in roi):
        raise ValueError(f"--roi-size {roi} must be divisible by 2^depth = {2 ** kwargs.get('depth', 3)} for {model}")
    return {"model": model, "model_kwargs": kwargs, "num_classes": info["num_classes"],
            "in_channels": info["in_channels"], "spatial_dims": spatial_dims, "normalisation": "zscore",
            "roi_size": list(roi), **{k: str(v) if k == "data" else v for k, v in settings.items()},
            **{k: v for k, v in info.items() if k.startswith("phantom")}}


@command("segmenter", typer_app=train_app)
def train_segmenter_cmd(
    data: str = typer.Option(..., "--data", help="'phantoms' (synthetic, with noise, bias field, partial volume) "
                             "or a folder with images/ and masks/ (see `mlimaging datasets`)."),
    model: str = typer.Option("unet", "--model", help="unet, segnet, deeplab, fcn or multiscale."),
    spatial_dims: int = typer.Option(2, "--spatial-dims", help="2 or 3."),
    epochs: int = typer.Option(20, "--epochs", min=1, help="Total number of epochs (a resumed run continues up to it)."),
    out: Path = typer.Option(..., "--out", help="Output folder: model.pt, segmenter.json, checkpoints/, history.json."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Start over in an existing --out (its model files are replaced)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    lr: float = typer.Option(3e-3, "--lr", help="Adam learning rate."),
    roi_size: str | None = typer.Option(None, "--roi-size", help="Training window, e.g. 64 or 64,64 (default: "
                                        "the phantom size, or 64 in 2D / 32 in 3D for folders); also used by predict-seg."),
    channels: int | None = typer.Option(None, "--channels", min=1, help="Width of the first level (unet, segnet, deeplab)."),
    depth: int | None = typer.Option(None, "--depth", min=1, help="Number of poolings (unet, segnet)."),
    n_train: int = typer.Option(32, "--n-train", min=1, help="Number of training phantoms (--data phantoms)."),
    size: int | None = typer.Option(None, "--size", min=16, help="Phantom side in voxels (default 64 in 2D, 32 in 3D)."),
    seed: int = typer.Option(0, "--seed", min=0, help="Random seed (weights, data order, phantoms, splits)."),
) -> None:
    """Train a dense segmentation network (Dice + cross-entropy, Adam) with checkpoints and resume."""
    from mlimaging.segmentation.pipeline import (
        DENSE_MODELS,
        SegmentationSamples,
        build_segmenter,
        train_segmenter,
    )
    from mlimaging.training import save_checkpoint

    if model not in DENSE_MODELS:
        raise ValueError(f"--model must be one of {', '.join(DENSE_MODELS)}, got {model!r}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"--spatial-dims must be 2 or 3, got {spatial_dims}")
    _prepare_out(out, resume=resume, force=force)
    saved = json.loads((out / _META).read_text()) if resume else None
    if saved is not None:
        if saved["model"] != model or saved["spatial_dims"] != spatial_dims or saved["data"] != str(data):
            raise ValueError(f"--resume: {out} trains {saved['model']} ({saved['spatial_dims']}D) on {saved['data']}; "
                             "give the same --model, --spatial-dims and --data")
        seed, n_train = saved["seed"], saved["n_train"]
        size = saved["phantom_shape"][0] if "phantom_shape" in saved else size
    train, val, info = _datasets(data, spatial_dims=spatial_dims, size=size, n_train=n_train, seed=seed)
    meta = saved or _new_meta(model, spatial_dims, info, channels=channels, depth=depth, roi_size=roi_size,
                              data=data, seed=seed, batch_size=batch_size, lr=lr, n_train=n_train)
    net = build_segmenter(meta["model"], num_classes=meta["num_classes"], spatial_dims=spatial_dims,
                          in_channels=meta["in_channels"], seed=seed, **meta["model_kwargs"])
    out.mkdir(parents=True, exist_ok=True)
    (out / _META).write_text(json.dumps(meta, indent=2))
    roi = tuple(meta["roi_size"])
    train_set = SegmentationSamples(train, roi_size=roi)
    val_set = SegmentationSamples(val, roi_size=roi, center=True) if val is not None else None
    console.print(f"training {meta['model']} ({spatial_dims}D, {meta['num_classes']} classes) on {len(train)} images "
                  f"of {meta['data']}, windows {'x'.join(map(str, roi))}, {epochs} epochs -> {out}")
    try:
        history = train_segmenter(net, train_set, val_set, epochs=epochs, batch_size=meta["batch_size"], lr=meta["lr"],
                                  seed=meta["seed"], checkpoint_dir=out / "checkpoints", resume=resume, progress=True)
    except KeyboardInterrupt:
        err_console.print(f"[yellow]interrupted[/]: continue with the same command and --resume (checkpoints in {out / 'checkpoints'})")
        raise typer.Exit(130) from None
    save_checkpoint({"model": net.state_dict(), "segmenter": meta}, out / _MODEL_FILE)
    (out / "history.json").write_text(json.dumps(history.epochs, indent=2))
    last = history.epochs[-1]
    shown = ", ".join(f"{k} {last[k]:.4f}" for k in ("loss", "val_loss") if k in last)
    console.print(f"epoch {last['epoch']}: {shown}; model: {out / _MODEL_FILE}")


# ----------------------------------------------------------------------------- predict-seg
def _load_segmenter(checkpoint: Path) -> tuple[Any, dict]:
    """The network of a ``train segmenter`` checkpoint (``model.pt``, or ``checkpoints/*.pt``
    next to its ``segmenter.json``) and its metadata."""
    from mlimaging.segmentation.pipeline import build_segmenter
    from mlimaging.training import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    meta = ckpt.get("segmenter")
    if meta is None:
        for folder in (checkpoint.parent, checkpoint.parent.parent):
            if (folder / _META).is_file():
                meta = json.loads((folder / _META).read_text())
                break
    if not isinstance(meta, dict) or "model" not in ckpt:
        raise ValueError(f"--checkpoint {checkpoint} is not a segmenter checkpoint (model name, settings, normalisation "
                         "and window size are missing); use the model.pt written by `mlimaging train segmenter`")
    net = build_segmenter(meta["model"], num_classes=meta["num_classes"], spatial_dims=meta["spatial_dims"],
                          in_channels=meta["in_channels"], **meta["model_kwargs"])
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"--checkpoint {checkpoint}: the weights do not fit {meta['model']} {meta['model_kwargs']}: {exc}") from None
    return net, meta


@command("predict-seg")
def predict_seg_cmd(
    image: Path = typer.Argument(..., help="Image to segment (NIfTI, PNG, DICOM, NPY/NPZ), any size."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt of `mlimaging train segmenter` (or its checkpoints/*.pt)."),
    out: Path = typer.Option(..., "--out", help="Label map to write (.nii.gz keeps the spacing, .png for 2D)."),
    overlap: float = typer.Option(0.25, "--overlap", help="Overlap of neighbouring windows, in [0, 1)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Segment an image with a trained network, window by window (sliding window, Gaussian blending)."""
    from mlimaging.data import read_image
    from mlimaging.segmentation.pipeline import predict_labels

    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {overlap}")
    _check_out(out, force)
    net, meta = _load_segmenter(checkpoint)
    array, spacing = read_image(image)
    d, c = meta["spatial_dims"], meta["in_channels"]
    if c == 1 and array.ndim == d:
        x = array[None]
    elif array.ndim == d + 1 and array.shape[-1] == c:
        x = np.moveaxis(array, -1, 0)
        spacing = spacing[:d]
    else:
        raise ValueError(f"IMAGE {image} has shape {array.shape}; the model expects a {d}D image with {c} channel(s)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"IMAGE {image} holds NaN or infinite values")
    labels = predict_labels(net, x.astype(np.float32), roi_size=meta["roi_size"], overlap=overlap)
    _write_mask(out, labels, tuple(spacing))
    counts = np.bincount(labels.ravel(), minlength=meta["num_classes"])
    console.print(f"{meta['model']}: voxels per label {dict(enumerate(counts.tolist()))} -> {out}")

"""Segmentation commands: ``segment threshold|otsu|region-grow``, ``train segmenter``, ``predict-seg``.

Thin over :mod:`mlimaging.segmentation` (classical methods), the training engine and
sliding-window inference. Masks are written as NIfTI (``.nii``/``.nii.gz``), NumPy ``.npz``,
PNG or ``.npy``, chosen by the extension of ``--out``; NIfTI and ``.npz`` keep the input's
whole geometry (spacing, origin, direction; a NIfTI's affine with its qform/sform codes),
so a mask overlays its scan in any viewer. Nothing is overwritten without ``--force``.

``train segmenter`` writes the run folder of every ``train`` command
(:mod:`mlimaging.cli._run_folder`): ``config.json``, ``metrics.json`` (the history, with
the validation Dice of every epoch), ``report.html``, ``figures/``, ``checkpoints/`` and
``model.pt`` (the weights of the best validation Dice and what ``predict-seg`` needs).

Examples
--------
``mlimaging segment otsu brain.nii.gz --out mask.nii.gz``

``mlimaging segment region-grow ct.nii.gz --seed-point 120,96,40 --lower 20 --upper 80 --out liver.nii.gz``

``mlimaging train segmenter --dataset phantoms --model unet --epochs 20 --out runs/unet``

``mlimaging predict-seg --checkpoint runs/unet/model.pt image.nii.gz --out pred.nii.gz``
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._images import (
    check_format_fits,
    check_label_format,
    label_map,
    read_gray,
    write_output,
)
from mlimaging.cli._run_folder import (
    ExportBest,
    check_positive,
    open_run,
    prepare_out,
    read_checkpoint,
    resolve_settings,
    run_config,
)
from mlimaging.cli.app import app, command, console, err_console
from mlimaging.cli.train import train_app

if TYPE_CHECKING:  # NumPy and torch are imported inside the commands: `mlimaging --help` stays fast
    import numpy as np

    from mlimaging.data import ImageGeometry

__all__ = ["segment_app"]

segment_app = typer.Typer(
    help="Classical segmentation of an image file: thresholds, Otsu, region growing.",
    no_args_is_help=True,
)
app.add_typer(segment_app, name="segment")

_MASK_FORMATS = ("nifti", "pil", "npy", "npz")
_MODEL_FILE = "model.pt"
RUN_NAME = "train-segmenter"


# ----------------------------------------------------------------------------- file helpers
def _check_out(out: Path, force: bool) -> None:
    from mlimaging.data.io import image_format

    if image_format(out) not in _MASK_FORMATS:
        raise ValueError(f"--out {out}: masks are written as .nii or .nii.gz or .npz (geometry kept), "
                         ".png (2D) or .npy")
    check_label_format(out, "--out")
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name such as mask.nii.gz")
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")


def _write_mask(out: Path, mask: np.ndarray, geometry: ImageGeometry) -> None:
    """Write a label map with the input image's geometry (a format that cannot keep it warns in yellow)."""
    write_output(out, label_map(mask), geometry)


def _report(what: str, mask: np.ndarray, out: Path) -> None:
    import numpy as np
    from rich.markup import escape

    n = int(np.count_nonzero(mask))
    console.print(escape(f"{what}: {n} of {mask.size} voxels ({100.0 * n / mask.size:.1f}%) -> {out}"),
                  soft_wrap=True)


def _parse_point(text: str, ndim: int) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--seed-point must be comma-separated voxel indices such as 10,20 or 10,20,5; "
                         f"got {text!r}") from None
    if len(values) != ndim:
        raise ValueError(f"--seed-point {text!r} has {len(values)} coordinates; the image has {ndim} axes")
    return values


# ----------------------------------------------------------------------------- segment ...
@command("threshold", typer_app=segment_app)
def threshold_cmd(
    image: Path = typer.Argument(..., help="Image file (NIfTI, PNG, DICOM, NPY/NPZ)."),
    lower: float = typer.Option(..., "--lower", help="Lowest intensity kept (included), in the file's units."),
    upper: float | None = typer.Option(None, "--upper", help="Highest intensity kept (included); default: no limit."),
    out: Path = typer.Option(..., "--out", help="Mask file to write (.nii.gz keeps the geometry, .png for 2D)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Voxels with LOWER <= intensity (<= UPPER): a 0/1 mask."""
    from mlimaging.segmentation import threshold

    _check_out(out, force)
    array, geometry = read_gray(image, "IMAGE")
    check_format_fits(out, "--out", array.ndim)
    mask = threshold(array, lower=lower, upper=upper)
    _write_mask(out, mask, geometry)
    _report(f"threshold [{lower:g}, {'inf' if upper is None else f'{upper:g}'}]", mask, out)


@command("otsu", typer_app=segment_app)
def otsu_cmd(
    image: Path = typer.Argument(..., help="Image file (NIfTI, PNG, DICOM, NPY/NPZ)."),
    out: Path = typer.Option(..., "--out", help="Mask file to write (.nii.gz keeps the geometry, .png for 2D)."),
    classes: int = typer.Option(2, "--classes", min=2, help="Number of classes; above 2, multi-level Otsu and labels 0..K-1."),
    bins: int = typer.Option(256, "--bins", min=2, help="Histogram bins."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Otsu's threshold (0/1 mask), or multi-level Otsu with --classes K (labels 0..K-1)."""
    import numpy as np

    from mlimaging.segmentation import multi_otsu_thresholds, multi_threshold, otsu_threshold

    _check_out(out, force)
    array, geometry = read_gray(image, "IMAGE")
    check_format_fits(out, "--out", array.ndim)
    if classes == 2:
        t = otsu_threshold(array, bins=bins)
        mask = (array > t).astype(np.uint8)
        what = f"Otsu threshold {t:.6g} (voxels above it)"
    else:
        ts = multi_otsu_thresholds(array, classes, bins=bins)
        mask = multi_threshold(array, ts)
        what = f"multi-level Otsu thresholds {', '.join(f'{v:.6g}' for v in ts)} (non-zero labels)"
    _write_mask(out, mask, geometry)
    _report(what, mask, out)


@command("region-grow", typer_app=segment_app)
def region_grow_cmd(
    image: Path = typer.Argument(..., help="Image file (NIfTI, PNG, DICOM, NPY/NPZ)."),
    seed_point: list[str] = typer.Option(..., "--seed-point", help="Seed voxel as comma-separated indices along "
                                         "the image's axes, in the order `mlimaging info` shows the shape (NIfTI "
                                         "i,j,k; PNG row,column); repeat for more seeds."),
    lower: float = typer.Option(..., "--lower", help="Lowest intensity of the region (included), in the file's "
                                "units (e.g. HU; `mlimaging info` shows the range)."),
    upper: float = typer.Option(..., "--upper", help="Highest intensity of the region (included), in the file's units."),
    out: Path = typer.Option(..., "--out", help="Mask file to write (.nii.gz keeps the geometry, .png for 2D)."),
    connectivity: int = typer.Option(1, "--connectivity", help="1: faces only; up to the number of axes: full."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """The connected region of voxels in [LOWER, UPPER] holding the seed points (SimpleITK's ConnectedThreshold)."""
    from mlimaging.segmentation import region_growing

    _check_out(out, force)
    array, geometry = read_gray(image, "IMAGE")
    check_format_fits(out, "--out", array.ndim)
    seeds = [_parse_point(s, array.ndim) for s in seed_point]
    mask = region_growing(array, seeds, lower=lower, upper=upper, connectivity=connectivity)
    _write_mask(out, mask, geometry)
    _report(f"region grown from {len(seeds)} seed point(s) in [{lower:g}, {upper:g}]", mask, out)


# ----------------------------------------------------------------------------- train segmenter
#: Settings of a run (``None``: chosen from the data, see :func:`_new_meta`); stored in config.json.
DEFAULTS: dict[str, Any] = {"dataset": "phantoms", "model": "unet", "spatial_dims": 2, "batch_size": 4, "lr": 3e-3,
                            "roi_size": None, "channels": None, "depth": None, "n_train": 32, "size": None, "seed": 0}


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


def _datasets(dataset: str, *, spatial_dims: int, size: int | None, n_train: int, seed: int) -> tuple[Any, Any, dict]:
    """Training and validation datasets of ``--dataset`` and what the checkpoint records of them."""
    from mlimaging.data import PhantomDataset, load_dataset
    from mlimaging.segmentation.classical import BASE_KNOBS

    if dataset == "phantoms":
        side = size or (64 if spatial_dims == 2 else 32)
        shape = (side,) * spatial_dims
        knobs = {"n_structures": 3, **BASE_KNOBS}
        train = PhantomDataset(n_train, shape, seed=2 * seed, **knobs)
        val = PhantomDataset(max(2, n_train // 4), shape, seed=2 * seed + 1, **knobs)
        return train, val, {"dataset": "phantoms", "phantom_shape": list(shape), "phantom_knobs": knobs,
                            "num_classes": 4, "in_channels": 1, "default_roi": side}
    root = Path(dataset)
    if not root.is_dir():
        raise FileNotFoundError(f"--dataset must be 'phantoms' or a folder with images/ and masks/; "
                                f"{root} is not a folder")
    train = load_dataset("segmentation-folder", split="train", root=root, seed=seed)
    val = load_dataset("segmentation-folder", split="val", root=root, seed=seed)
    if len(train) == 0:
        raise ValueError(f"--dataset {root}: no training images")
    image, mask = train[0]
    if mask.ndim != spatial_dims:
        raise ValueError(f"--spatial-dims is {spatial_dims} but the masks in {root} have {mask.ndim} axes")
    num_classes = 1 + max(int(train[i][1].max()) for i in range(len(train)))
    return train, (val if len(val) else None), {
        "dataset": str(root), "num_classes": max(num_classes, 2), "in_channels": int(image.shape[0]),
        "default_roi": 64 if spatial_dims == 2 else 32}


def _new_meta(s: dict[str, Any], info: dict) -> dict[str, Any]:
    """What a segmenter checkpoint records: architecture, normalisation, window and training settings."""
    model, spatial_dims = s["model"], s["spatial_dims"]
    kwargs: dict[str, Any] = {}
    if s["channels"] is not None:
        if model not in ("unet", "segnet", "deeplab"):
            raise ValueError(f"--channels applies to unet, segnet and deeplab, not {model}")
        kwargs["channels"] = s["channels"]
    if s["depth"] is not None:
        if model not in ("unet", "segnet"):
            raise ValueError(f"--depth applies to unet and segnet, not {model}")
        kwargs["depth"] = s["depth"]
    roi = (_int_tuple(s["roi_size"], spatial_dims, "--roi-size") if s["roi_size"]
           else (info["default_roi"],) * spatial_dims)
    if model in ("unet", "segnet") and any(r % 2 ** kwargs.get("depth", 3) for r in roi):
        raise ValueError(f"--roi-size {roi} must be divisible by 2^depth = {2 ** kwargs.get('depth', 3)} for {model}")
    return {"model": model, "model_kwargs": kwargs, "num_classes": info["num_classes"],
            "in_channels": info["in_channels"], "spatial_dims": spatial_dims, "normalisation": "zscore",
            "roi_size": list(roi), "dataset": info["dataset"], "seed": s["seed"],
            **{k: v for k, v in info.items() if k.startswith("phantom")}}


def _command(s: dict[str, Any], epochs: int, out: Path) -> str:
    parts = ["mlimaging", "train", "segmenter", "--dataset", str(s["dataset"]), "--model", s["model"],
             "--spatial-dims", str(s["spatial_dims"]), "--epochs", str(epochs), "--batch-size", str(s["batch_size"]),
             "--lr", str(s["lr"]), "--n-train", str(s["n_train"]), "--seed", str(s["seed"]), "--out", str(out)]
    for key in ("roi_size", "channels", "depth", "size"):
        if s[key] is not None:
            parts += [f"--{key.replace('_', '-')}", str(s[key])]
    return " ".join(parts)


def _segmenter_report(run: Any, history: Any, s: dict[str, Any], meta: dict[str, Any], net: Any, val: Any,
                      n_train: int) -> None:
    """Learning curves (loss, validation Dice) and one validation image with its prediction."""
    from mlimaging.reporting.figures import image_grid, plt
    from mlimaging.segmentation.dense import predict_labels

    has_val = "val_dice" in history.epochs[-1]
    fig, axes = plt.subplots(1, 2 if has_val else 1, figsize=(9 if has_val else 4.5, 3.2), squeeze=False)
    axes = axes[0]
    axes[0].plot(history["epoch"], history["loss"], "o-", ms=3, label="train")
    if has_val:
        axes[0].plot(history["epoch"], history["val_loss"], "s--", ms=3, label="validation")
        axes[1].plot(history["epoch"], history["val_dice"], "o-", ms=3)
        axes[1].set(xlabel="epoch", ylabel="validation Dice (mean of foreground classes)")
    axes[0].set(xlabel="epoch", ylabel="Dice + cross-entropy loss")
    axes[0].legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Learning curves (seed {s['seed']})")
    fig.tight_layout()
    run.figure(fig, "learning-curves", caption=f"Training loss, validation loss and validation Dice per epoch "
               f"(seed {s['seed']}).")
    if val is not None and len(val):
        image, mask = val[0]
        pred = predict_labels(net, image, roi_size=meta["roi_size"])
        show = [image[0], mask, pred]
        if meta["spatial_dims"] == 3:
            show = [v[v.shape[0] // 2] for v in show]
        fig = image_grid([x.numpy() if hasattr(x, "numpy") else x for x in show],
                         titles=["image", "ground truth", "prediction"], ncols=3, labels=[False, True, True])
        run.figure(fig, "validation-example", caption="First validation image (middle slice in 3D), its labels and "
                   f"the prediction of the best weights (sliding window); seed {s['seed']}.")
    best = history.best_epoch
    run.section("Training", f"{meta['model']} ({meta['spatial_dims']}D, {meta['num_classes']} classes) on "
                f"{n_train} training images of {meta['dataset']}, windows {'x'.join(map(str, meta['roi_size']))}, "
                f"Adam lr {s['lr']}, batch {s['batch_size']}, Dice + cross-entropy loss, seed {s['seed']}.")
    run.table("Result", [{"model": meta["model"], "epochs": len(history), "best epoch": best,
                          "val Dice (best)": history.best_value if has_val else None,
                          "val Dice (last)": history.epochs[-1].get("val_dice"), "seed": s["seed"]}],
              caption=f"model.pt holds the weights of the best epoch by validation Dice; seed {s['seed']}.")


@command("segmenter", typer_app=train_app)
def train_segmenter_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder: config.json, metrics.json, report.html, checkpoints/, "
                             "model.pt."),
    dataset: str | None = typer.Option(None, "--dataset", help="'phantoms' (synthetic, with noise, bias field, "
                                       "partial volume; the default) or a folder with images/ and masks/ "
                                       "(see `mlimaging datasets`)."),
    model: str | None = typer.Option(None, "--model", help="unet (default), segnet, deeplab, fcn or multiscale."),
    spatial_dims: int | None = typer.Option(None, "--spatial-dims", help="2 (default) or 3."),
    epochs: int = typer.Option(20, "--epochs", help="Total number of epochs (a resumed run continues up to it)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Windows per step (default: 4)."),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default: 0.003)."),
    roi_size: str | None = typer.Option(None, "--roi-size", help="Training window, e.g. 64 or 64,64 (default: "
                                        "the phantom size, or 64 in 2D / 32 in 3D for folders); also used by predict-seg."),
    channels: int | None = typer.Option(None, "--channels", help="Width of the first level (unet, segnet, deeplab)."),
    depth: int | None = typer.Option(None, "--depth", help="Number of poolings (unet, segnet)."),
    n_train: int | None = typer.Option(None, "--n-train", help="Number of training phantoms (default: 32)."),
    size: int | None = typer.Option(None, "--size", help="Phantom side in voxels (default 64 in 2D, 32 in 3D)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed of weights, data order, phantoms and splits "
                                    "(default: 0)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
) -> None:
    """Train a dense segmentation network (Dice + cross-entropy, Adam) into a run folder with a report."""
    import torch

    from mlimaging.segmentation import DiceCELoss
    from mlimaging.segmentation.dense import DENSE_MODELS, build_segmenter
    from mlimaging.segmentation.samples import SegmentationSamples
    from mlimaging.training import fit, load_checkpoint

    for value, option in ((epochs, "--epochs"), (batch_size, "--batch-size"), (channels, "--channels"),
                          (depth, "--depth"), (n_train, "--n-train")):
        check_positive(value, option, integer=True)
    check_positive(lr, "--lr")
    if size is not None and size < 16:
        raise ValueError(f"--size must be at least 16, got {size}")
    if seed is not None and seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if model is not None and model not in DENSE_MODELS:
        raise ValueError(f"--model must be one of {', '.join(DENSE_MODELS)}, got {model!r}")
    if spatial_dims is not None and spatial_dims not in (2, 3):
        raise ValueError(f"--spatial-dims must be 2 or 3, got {spatial_dims}")
    stored, clear = prepare_out(out, resume=resume, force=force, command="train segmenter")
    given = {"dataset": dataset, "model": model, "spatial_dims": spatial_dims, "batch_size": batch_size, "lr": lr,
             "roi_size": roi_size, "channels": channels, "depth": depth, "n_train": n_train, "size": size,
             "seed": seed}
    s = resolve_settings(given, stored, DEFAULTS)
    train, val, info = _datasets(s["dataset"], spatial_dims=s["spatial_dims"], size=s["size"], n_train=s["n_train"],
                                 seed=s["seed"])
    meta = stored["meta"] if stored is not None else _new_meta(s, info)
    net = build_segmenter(meta["model"], num_classes=meta["num_classes"], spatial_dims=meta["spatial_dims"],
                          in_channels=meta["in_channels"], seed=s["seed"], **meta["model_kwargs"])
    roi = tuple(meta["roi_size"])
    train_set = SegmentationSamples(train, roi_size=roi)
    val_set = SegmentationSamples(val, roi_size=roi, center=True) if val is not None else None
    run = open_run(out, RUN_NAME, {**s, "meta": meta}, stored=stored, clear=clear,
                   command=_command(s, epochs, out), console=err_console)
    console.print(f"training {meta['model']} ({meta['spatial_dims']}D, {meta['num_classes']} classes) on {len(train)} "
                  f"images of {meta['dataset']}, windows {'x'.join(map(str, roi))}, {epochs} epochs -> {out}",
                  soft_wrap=True)
    try:
        history = fit(net, train_set, val_set, loss=DiceCELoss(), optimizer=lambda p: torch.optim.Adam(p, lr=s["lr"]),
                      epochs=epochs, batch_size=s["batch_size"], seed=s["seed"],
                      metrics=("dice",) if val_set is not None else (), monitor="val_dice" if val_set is not None else "loss",
                      checkpoint_dir=out / "checkpoints", resume=stored is not None, run=run, device=device,
                      callbacks=[ExportBest(out / _MODEL_FILE, "segmenter", meta)])
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(f"interrupted: continue with the same command and --resume (checkpoints in {out})")
        raise typer.Exit(130) from None
    net.load_state_dict(load_checkpoint(out / _MODEL_FILE)["model"])
    net.cpu()
    run.log(best_epoch=history.best_epoch, best_val_dice=history.best_value if val_set is not None else None,
            meta=meta)
    _segmenter_report(run, history, s, meta, net, val, len(train))
    report = run.finish()
    last = history.epochs[-1]
    shown = ", ".join(f"{k} {last[k]:.4f}" for k in ("loss", "val_loss", "val_dice") if k in last)
    console.print(f"epoch {last['epoch']}: {shown}; best epoch {history.best_epoch}\nmodel: {out / _MODEL_FILE}\n"
                  f"report: {report}", soft_wrap=True)


# ----------------------------------------------------------------------------- predict-seg
def _load_segmenter(checkpoint: Path) -> tuple[Any, dict]:
    """The network of a ``train segmenter`` checkpoint (``model.pt``, or ``checkpoints/*.pt`` of
    its run folder, whose ``config.json`` holds the settings) and its metadata."""
    from mlimaging.segmentation.dense import build_segmenter

    ckpt = read_checkpoint(checkpoint, "`mlimaging train segmenter`")
    meta = ckpt.get("segmenter")
    if meta is None:  # fit's last.pt / best.pt: the settings live in the run folder above checkpoints/
        meta = run_config(checkpoint).get("config", {}).get("meta")
    if not isinstance(meta, dict) or "model" not in ckpt or "spatial_dims" not in meta:
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
    out: Path = typer.Option(..., "--out", help="Label map to write (.nii.gz keeps the geometry, .png for 2D)."),
    overlap: float = typer.Option(0.25, "--overlap", help="Overlap of neighbouring windows, in [0, 1)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Segment an image with a trained network, window by window (sliding window, Gaussian blending)."""
    import numpy as np

    from mlimaging.data import ImageGeometry, read_image
    from mlimaging.segmentation.dense import predict_labels

    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"--overlap must be in [0, 1), got {overlap}")
    _check_out(out, force)
    net, meta = _load_segmenter(checkpoint)
    array, geometry = read_image(image, geometry=True)
    d, c = meta["spatial_dims"], meta["in_channels"]
    if c == 1 and array.ndim == d:
        x = array[None]
    elif array.ndim == d + 1 and array.shape[-1] == c:
        x = np.moveaxis(array, -1, 0)
        if geometry.ndim > d:  # a channel axis counted as spatial (e.g. .npy): keep the spatial axes' geometry
            geometry = ImageGeometry(spacing=geometry.spacing[:d], origin=geometry.origin,
                                     direction=geometry.direction[:, :d])
    else:
        raise ValueError(f"IMAGE {image} has shape {array.shape}; the model expects a {d}D image with {c} channel(s)")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"IMAGE {image} must hold real numbers, got dtype {x.dtype}")
    check_format_fits(out, "--out", d)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"IMAGE {image} holds NaN or infinite values")
    labels = predict_labels(net, x.astype(np.float32), roi_size=meta["roi_size"], overlap=overlap)
    _write_mask(out, labels, geometry)
    counts = np.bincount(labels.ravel(), minlength=meta["num_classes"])
    console.print(f"{meta['model']}: voxels per label {dict(enumerate(counts.tolist()))} -> {out}", soft_wrap=True)

r"""``mlimaging train detector`` and ``mlimaging detect``: a YOLO grid detector over the engine.

``train detector`` trains a :class:`~mlimaging.detection.YOLO` with
:func:`~mlimaging.detection.train_detector` (through :func:`mlimaging.training.fit`) on canvases
of handwritten digits (:func:`~mlimaging.detection.detection_canvases`: training digits for
training, validation digits for choosing the best epoch by the YOLO loss, test digits for the
final score) or on a YOLO-format folder (``--data``: ``images/`` + ``labels/*.txt`` with
``class cx cy w h``; images made grayscale and resized to ``--canvas``, a seeded
``--val-fraction`` held out for the best epoch and the final score), into a run folder::

    OUT/config.json, metrics.json, report.html, figures/, tables/
    OUT/checkpoints/last.pt, best.pt      fit's checkpoints (resume from last.pt)
    OUT/model.pt                          best weights (lowest validation loss) + the model config

``model.pt`` holds ``{"model": state_dict, "detector": {"config": YOLO config, ...}, "epoch": ...}``
(:func:`~mlimaging.detection.load_detector` reads it; ``torch.load(weights_only=True)``). The run
ends with COCO's mAP@0.5 and mAP@[.5:.95] on the held-out images
(:func:`~mlimaging.detection.mean_average_precision`), printed and in the report.

``detect`` reads PNG/JPG/TIFF/NPY images (:func:`mlimaging.data.read_image`), prepares each as the
training canvases were (:func:`mlimaging.data.preprocessing.prepare_image`: values to [0, 1],
RGB to grayscale by ITU-R BT.601, bilinear resize to the model's square size; a dark object on a
light background is inverted, with a warning, unless ``--invert`` / ``--no-invert`` decide),
decodes the grid (class-specific score :math:`\Pr(c \mid \text{object}) \cdot \text{conf}`
>= ``--conf-threshold``, class-wise NMS at ``--iou-threshold``) and maps each box back to the
original pixels, :math:`x = x' \, W / s`, :math:`y = y' \, H / s` for an image of
:math:`W \times H` resized to :math:`s \times s`. ``--out`` writes JSON (per image: ``boxes`` xyxy
in original pixels, ``scores``, ``labels``); ``--draw`` writes one PNG per image with the boxes
and ``label score``.

References
----------
Redmon J., Divvala S., Girshick R., Farhadi A. (2016). You Only Look Once. CVPR. arXiv:1506.02640.

Examples
--------
``mlimaging train detector --canvas 96 --epochs 12 --out runs/yolo`` then
``mlimaging detect --checkpoint runs/yolo/model.pt page.png --out boxes.json --draw boxes/``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._run_folder import (
    ExportBest,
    check_device,
    check_positive,
    open_run,
    prepare_out,
    read_checkpoint,
    resolve_settings,
)
from mlimaging.cli.app import command, console, err_console
from mlimaging.cli.train import train_app

if TYPE_CHECKING:  # torch and NumPy are imported inside the commands: `mlimaging --help` stays fast
    import numpy as np
    import torch

__all__ = ["detect_cmd", "draw_detections", "load_detector_checkpoint", "train_detector_cmd"]

RUN_NAME = "train-detector"
#: ``None``: :data:`mlimaging.detection.DEFAULT_TRAINING` decides (or, for ``classes``, the labels).
DEFAULTS: dict[str, Any] = {
    "canvas": 96,
    "data": None,
    "classes": None,
    "n_train": None,
    "n_val": 200,
    "n_test": 500,
    "val_fraction": 0.1,
    "grid": None,
    "boxes_per_cell": None,
    "backbone": None,
    "batch_size": None,
    "lr": None,
    "seed": 0,
}
#: Side (pixels) under which --draw enlarges an image by an integer factor, so labels stay legible.
DRAW_MIN_SIDE = 256


# ------------------------------------------------------------------------------ model.pt
def load_detector_checkpoint(path: Path) -> tuple[Any, dict[str, Any]]:
    """The YOLO saved in a ``model.pt`` of ``mlimaging train detector`` (eval mode) and its metadata.

    Raises ``FileNotFoundError`` for a missing file and one-line ``ValueError`` s for a file that
    is not a checkpoint or not a detector's.
    """
    from mlimaging.detection import load_detector

    if not path.exists():
        raise FileNotFoundError(f"--checkpoint {path} does not exist")
    ckpt = read_checkpoint(path, "`mlimaging train detector`")
    if not isinstance(ckpt.get("detector"), dict):
        kinds = sorted(k for k in ckpt if k not in ("model", "epoch"))
        raise ValueError(
            f"--checkpoint {path} is not a detector (it holds {', '.join(kinds) or 'no metadata'}); "
            "use OUT/model.pt of `mlimaging train detector`"
        )
    try:
        net, meta = load_detector(path)
    except ValueError as exc:
        raise ValueError(f"--checkpoint {exc}") from None
    return net, {**meta, "epoch": ckpt.get("epoch")}


# ------------------------------------------------------------------------------ images
def _gray_resized(array: np.ndarray, size: int, name: str) -> torch.Tensor:
    """``(1, size, size)`` in [0, 1] from any 2-D grayscale or RGB(A) array (see the module docstring)."""
    import numpy as np

    from mlimaging.data.preprocessing import prepare_image

    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return prepare_image(arr, channels=1, size=(size, size), name=name)


def _read(path: Path) -> tuple[np.ndarray, torch.Tensor]:
    """The image of ``path`` as a 2-D display array in [0, 1] (original size) and ``(1, H, W)``."""
    import numpy as np

    from mlimaging.data import read_image
    from mlimaging.data.preprocessing import prepare_image

    if path.is_dir():
        raise ValueError(f"IMAGE {path} is a folder; give image files (PNG, JPG, TIFF, NPY)")
    array, _ = read_image(path)
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if not (arr.ndim == 2 or rgb or (arr.ndim == 3 and arr.shape[0] in (1, 3))):
        raise ValueError(
            f"IMAGE {path} must be a 2-D grayscale or RGB image, got an array of shape {arr.shape}"
        )
    h, w = arr.shape[:2] if rgb or arr.ndim == 2 else arr.shape[1:]
    original = prepare_image(arr, channels=1, size=(h, w), name=f"IMAGE {path}")
    return original[0].numpy(), original


def draw_detections(
    image: np.ndarray, det: dict[str, Any], *, min_side: int = DRAW_MIN_SIDE
) -> Any:
    """A PIL RGB image of ``image`` (2-D, [0, 1]) with ``det``'s boxes (xyxy pixels) and ``label score``.

    Images whose longer side is under ``min_side`` are enlarged by the smallest integer factor
    that reaches it (nearest neighbour), boxes with them.

    Examples
    --------
    >>> import numpy as np
    >>> pic = draw_detections(np.zeros((32, 48)), {"boxes": [[2, 2, 20, 20]], "scores": [0.9], "labels": [3]})
    >>> pic.size, pic.mode
    ((288, 192), 'RGB')
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    h, w = image.shape
    k = max(1, math.ceil(min_side / max(h, w)))
    pic = Image.fromarray(
        np.clip(np.rint(np.asarray(image) * 255), 0, 255).astype(np.uint8)
    ).convert("RGB")
    if k > 1:
        pic = pic.resize((w * k, h * k), Image.NEAREST)
    draw = ImageDraw.Draw(pic)
    font = ImageFont.load_default()
    width = max(1, k // 2, round(max(h, w) * k / 300))
    for (x0, y0, x1, y1), s, lab in zip(det["boxes"], det["scores"], det["labels"], strict=True):
        box = [x0 * k, y0 * k, max(x0 * k, x1 * k - 1), max(y0 * k, y1 * k - 1)]
        draw.rectangle(box, outline=(255, 40, 40), width=width)
        text = f"{int(lab)} {float(s):.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        ty = box[1] - (bottom - top) - 3 if box[1] - (bottom - top) - 3 >= 0 else box[1] + width
        draw.rectangle(
            [box[0], ty, box[0] + right - left + 3, ty + bottom - top + 2], fill=(255, 40, 40)
        )
        draw.text((box[0] + 2 - left, ty + 1 - top), text, fill=(255, 255, 255), font=font)
    return pic


# ------------------------------------------------------------------------------ training
def _folder_data(root: Path, canvas: int, val_fraction: float, seed: int) -> tuple[Any, Any, int]:
    """A YOLO folder as (train, val) pairs of (images (N, 1, canvas, canvas), targets), and its class count."""
    import numpy as np
    import torch

    from mlimaging.detection import load_yolo_folder

    if not root.exists():
        raise FileNotFoundError(f"--data {root} does not exist")
    folder = load_yolo_folder(root)
    images, targets = [], []
    for i in range(len(folder)):
        image, t = folder[i]
        h, w = image.shape[-2:]
        images.append(_gray_resized(image.numpy(), canvas, f"--data {folder.files[i]}"))
        scale = torch.tensor([canvas / w, canvas / h, canvas / w, canvas / h])
        targets.append({"boxes": t["boxes"] * scale, "labels": t["labels"]})
    if len(images) < 2:
        raise ValueError(
            f"--data {root} holds {len(images)} image; at least 2 are needed (training and held out)"
        )
    order = np.random.default_rng(seed).permutation(len(images))
    n_val = min(len(images) - 1, max(1, round(val_fraction * len(images))))
    val_idx, train_idx = order[:n_val].tolist(), order[n_val:].tolist()
    stack = torch.stack(images)
    num_classes = 1 + max(
        (int(t["labels"].max()) for t in targets if t["labels"].numel()), default=0
    )
    return (
        (stack[train_idx], [targets[i] for i in train_idx]),
        (stack[val_idx], [targets[i] for i in val_idx]),
        num_classes,
    )


def _command(s: dict[str, Any], epochs: int, out: Path) -> str:
    parts = ["mlimaging", "train", "detector"]
    for key in DEFAULTS:
        if s[key] is not None:
            parts += [f"--{key.replace('_', '-')}", str(s[key])]
    return " ".join([*parts, "--epochs", str(epochs), "--out", str(out)])


def _report_figure(run: Any, images: torch.Tensor, preds: list, targets: list, n: int = 6) -> None:
    from mlimaging.reporting.figures import plt

    n = min(n, len(images))
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4), squeeze=False)
    for ax, img, p, t in zip(axes[0], images[:n], preds[:n], targets[:n], strict=True):
        k = max(1, math.ceil(DRAW_MIN_SIDE / max(img.shape[-2:])))
        ax.imshow(
            draw_detections(
                img[0].numpy(), {key: p[key].tolist() for key in ("boxes", "scores", "labels")}
            )
        )
        for x0, y0, x1, y1 in t["boxes"].tolist():
            ax.add_patch(
                plt.Rectangle(
                    (x0 * k, y0 * k),
                    (x1 - x0) * k,
                    (y1 - y0) * k,
                    fill=False,
                    ec="lime",
                    lw=1,
                    ls="--",
                )
            )
        ax.set_axis_off()
    fig.tight_layout()
    run.figure(
        fig,
        "held-out-detections",
        caption="Held-out images: predictions of score >= 0.25 in red "
        "(label score), true boxes dashed green.",
    )


@command("detector", typer_app=train_app)
def train_detector_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, model.pt, report)."),
    canvas: int | None = typer.Option(
        None,
        "--canvas",
        help="Side of the square training images in pixels "
        "(default 96; --data images are resized to it).",
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        help="Total epochs (default: DEFAULT_TRAINING's; the one-cycle learning rate spans them, "
        "so --resume keeps the run's number).",
    ),
    data: Path | None = typer.Option(
        None,
        "--data",
        help="A YOLO-format folder (images/, labels/*.txt with "
        "'class cx cy w h') instead of digit canvases.",
    ),
    classes: int | None = typer.Option(
        None,
        "--classes",
        help="Number of classes (default: 10 for canvases, the largest label + 1 for --data).",
    ),
    n_train: int | None = typer.Option(
        None, "--n-train", help="Training canvases (default: DEFAULT_TRAINING's)."
    ),
    n_val: int | None = typer.Option(
        None,
        "--n-val",
        help="Validation canvases of validation digits, for the best epoch (default 200).",
    ),
    n_test: int | None = typer.Option(
        None, "--n-test", help="Held-out canvases of test digits scored at the end (default 500)."
    ),
    val_fraction: float | None = typer.Option(
        None,
        "--val-fraction",
        help="--data: share of the images held out "
        "for the best epoch and the final score (default 0.1).",
    ),
    grid: int | None = typer.Option(
        None, "--grid", help="Cells per side S (default: DEFAULT_TRAINING's)."
    ),
    boxes_per_cell: int | None = typer.Option(
        None, "--boxes-per-cell", help="Boxes per cell B (default 2)."
    ),
    backbone: str | None = typer.Option(
        None, "--backbone", help="tiny, small or medium (default small)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Images per step (default 32)."
    ),
    lr: float | None = typer.Option(
        None, "--lr", help="Peak AdamW learning rate of the one-cycle schedule."
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of the canvases, weights and batch order (default 0)."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its last checkpoint."
    ),
    force: bool = typer.Option(
        False, "--force", help="Delete an existing --out run folder and start again."
    ),
) -> None:
    """Train a YOLO detector on digit canvases (or a YOLO folder); model.pt, held-out mAP and a report in --out."""
    import torch
    from rich.table import Table

    from mlimaging.detection import (
        BACKBONES,
        DEFAULT_TRAINING,
        YOLO,
        detection_canvases,
        load_detector,
        mean_average_precision,
        train_detector,
    )

    for value, option in (
        (canvas, "--canvas"),
        (epochs, "--epochs"),
        (classes, "--classes"),
        (n_train, "--n-train"),
        (n_val, "--n-val"),
        (n_test, "--n-test"),
        (grid, "--grid"),
        (boxes_per_cell, "--boxes-per-cell"),
        (batch_size, "--batch-size"),
    ):
        check_positive(value, option, integer=True)
    check_positive(lr, "--lr")
    if val_fraction is not None and not 0 < val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    if backbone is not None and backbone not in BACKBONES:
        raise ValueError(
            f"--backbone must be one of {', '.join(sorted(BACKBONES))}, got {backbone!r}"
        )
    if seed is not None and seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if data is not None and not data.exists():
        raise FileNotFoundError(f"--data {data} does not exist")
    check_device(device)
    stored, clear = prepare_out(out, resume=resume, force=force, command="train detector")
    given = {
        "canvas": canvas,
        "data": None if data is None else str(data),
        "classes": classes,
        "n_train": n_train,
        "n_val": n_val,
        "n_test": n_test,
        "val_fraction": val_fraction,
        "grid": grid,
        "boxes_per_cell": boxes_per_cell,
        "backbone": backbone,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
    }
    s = resolve_settings(given, stored, DEFAULTS)
    for key in ("n_train", "grid", "boxes_per_cell", "backbone", "batch_size", "lr"):
        if s[key] is None:
            s[key] = DEFAULT_TRAINING[key]
    if stored is not None and epochs is not None and epochs != stored.get("epochs"):
        raise ValueError(
            f"--resume: --epochs {epochs} differs from the run's {stored.get('epochs')}; the one-cycle "
            "learning rate spans the whole run, so it cannot be extended: resume without --epochs, or "
            "start a new run"
        )
    epochs = epochs or (stored or {}).get("epochs") or DEFAULT_TRAINING["epochs"]
    if s["canvas"] < s["grid"]:
        raise ValueError(f"--canvas {s['canvas']} must be at least --grid {s['grid']}")
    if s["data"] is not None:
        train, val, found = _folder_data(Path(s["data"]), s["canvas"], s["val_fraction"], s["seed"])
        test = val
        num_classes = s["classes"] or found
        if num_classes < found:
            raise ValueError(
                f"--classes {num_classes} is too few: --data {s['data']} has labels up to {found - 1}"
            )
        source = (
            f"the YOLO folder {s['data']} ({len(train[0])} training images, {len(val[0])} held out)"
        )
    else:
        num_classes = s["classes"] or 10
        if num_classes < 10:
            raise ValueError(f"--classes must be at least 10 for digit canvases, got {num_classes}")
        try:
            make = [
                detection_canvases(n=n, canvas=s["canvas"], seed=s["seed"] + k, split=split)
                for k, (n, split) in enumerate(
                    ((s["n_train"], "train"), (s["n_val"], "val"), (s["n_test"], "test"))
                )
            ]
        except ValueError as exc:
            raise ValueError(f"--canvas {s['canvas']}: {exc}") from None
        train, val, test = ((d.images, d.targets) for d in make)
        source = (
            f"{s['n_train']} canvases of 1-4 training digits ({s['canvas']} px); best epoch by the YOLO loss on "
            f"{s['n_val']} canvases of validation digits; scored on {s['n_test']} canvases of test digits"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s["seed"])
        net = YOLO(
            grid=s["grid"],
            boxes_per_cell=s["boxes_per_cell"],
            num_classes=num_classes,
            in_channels=1,
            image_size=s["canvas"],
            backbone=s["backbone"],
        )
    meta = {"config": dict(net.config), "source": "canvases" if s["data"] is None else s["data"]}
    run = open_run(
        out,
        RUN_NAME,
        {**s, "epochs": epochs, "meta": meta},
        stored=stored,
        clear=clear,
        command=_command(s, epochs, out),
        console=err_console,
    )
    try:
        history = train_detector(
            train,
            val,
            model=net,
            epochs=epochs,
            batch_size=s["batch_size"],
            lr=s["lr"],
            seed=s["seed"],
            progress=True,
            checkpoint_dir=out / "checkpoints",
            resume=stored is not None,
            run=run,
            monitor="val_loss",
            mode="min",
            callbacks=[ExportBest(out / "model.pt", "detector", meta)],
            device=device,
        )[1]
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(
            f"interrupted: continue with `{_command(s, epochs, out)} --resume` (checkpoints in {out})",
            soft_wrap=True,
            highlight=False,
        )
        raise typer.Exit(130) from None
    best, _ = load_detector(out / "model.pt")
    preds = []
    for start in range(0, len(test[0]), 64):
        preds += best.detect(test[0][start : start + 64], conf_threshold=0.01)
    m = mean_average_precision(preds, test[1])
    scores = {"map_50": float(m["map_50"]), "map": float(m["map"]), "map_75": float(m["map_75"])}
    run.log(
        best_epoch=history.best_epoch,
        best_val_loss=history.best_value,
        **{f"test_{k}": v for k, v in scores.items()},
    )
    c = net.config
    run.section(
        "Training",
        f"YOLO (S = {c['grid']}, B = {c['boxes_per_cell']}, C = {c['num_classes']}, backbone "
        f"'{c['backbone']}') on {source}; AdamW with a one-cycle learning rate (peak {s['lr']:g}), batch "
        f"{s['batch_size']}, {epochs} epochs, seed {s['seed']}.",
    )
    run.table(
        "Held-out mAP",
        [{"images": len(test[0]), **scores, "best epoch": history.best_epoch}],
        caption="COCO mAP (101-point interpolation) of the best epoch's weights (model.pt); detections of "
        "score >= 0.01, class-wise NMS at IoU 0.5. map: mAP@[.5:.95].",
    )
    shown = [{k: v[p["scores"] >= 0.25] for k, v in p.items()} for p in preds[:6]]
    _report_figure(run, test[0], shown, test[1])
    report = run.finish()
    table = Table(
        "images",
        "mAP@0.5",
        "mAP@[.5:.95]",
        "mAP@0.75",
        title=f"train detector: best epoch {history.best_epoch} of {len(history)}",
    )
    table.add_row(
        str(len(test[0])),
        f"{scores['map_50']:.4f}",
        f"{scores['map']:.4f}",
        f"{scores['map_75']:.4f}",
    )
    console.print(table)
    console.print(f"model: {out / 'model.pt'}\nreport: {report}", soft_wrap=True)


# ------------------------------------------------------------------------------ detect
@command("detect")
def detect_cmd(
    images: list[Path] = typer.Argument(
        ..., help="Image files (PNG, JPG, TIFF, NPY; grayscale or RGB)."
    ),
    checkpoint: Path = typer.Option(
        ..., "--checkpoint", help="model.pt written by `mlimaging train detector`."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="JSON file of the boxes (xyxy, original pixels), scores and labels per image.",
    ),
    draw: Path | None = typer.Option(
        None, "--draw", help="Folder for one PNG per image with its boxes and labels."
    ),
    conf_threshold: float = typer.Option(
        0.25, "--conf-threshold", help="Smallest class-specific score kept, in [0, 1]."
    ),
    iou_threshold: float = typer.Option(
        0.5,
        "--iou-threshold",
        help="NMS: a box overlapping a better box of its "
        "class by more than this IoU is dropped, in [0, 1].",
    ),
    invert: bool | None = typer.Option(
        None,
        "--invert/--no-invert",
        help="Invert intensities (dark objects on a "
        "light background); default: invert when the border is light, with a warning.",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite --out and the PNGs in --draw."),
) -> None:
    """Detect objects with a trained YOLO: boxes in the images' own pixels, as JSON and drawn PNGs."""
    for value, option in ((conf_threshold, "--conf-threshold"), (iou_threshold, "--iou-threshold")):
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise ValueError(f"{option} must be in [0, 1], got {value}")
    for image in images:
        if not image.exists():
            raise FileNotFoundError(f"IMAGE {image} does not exist")
    if out is not None:
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder; give a file name such as boxes.json")
        if out.exists() and not force:
            raise FileExistsError(f"--out {out} already exists; pass --force to overwrite it")
    names = [f"{p.stem}.png" for p in images]
    if len(set(names)) < len(names):
        names = [f"{k:04d}-{p.stem}.png" for k, p in enumerate(images)]
    if draw is not None:
        if draw.exists() and not draw.is_dir():
            raise ValueError(f"--draw {draw} is a file; give a folder")
        taken = [n for n in names if (draw / n).exists()]
        if taken and not force:
            raise FileExistsError(
                f"--draw {draw} already holds {taken[0]}; pass --force to overwrite"
            )
    net, meta = load_detector_checkpoint(checkpoint)
    _detect_and_write(
        net,
        meta,
        images,
        names,
        out=out,
        draw=draw,
        conf_threshold=conf_threshold,
        iou_threshold=iou_threshold,
        invert=invert,
        checkpoint=checkpoint,
    )


def _detect_and_write(
    net: Any,
    meta: dict[str, Any],
    images: list[Path],
    names: list[str],
    *,
    out: Path | None,
    draw: Path | None,
    conf_threshold: float,
    iou_threshold: float,
    invert: bool | None,
    checkpoint: Path,
) -> None:
    import torch
    from rich.progress import track
    from rich.table import Table

    from mlimaging.data.preprocessing import has_light_background, resize_images

    size = int(net.image_size)
    results = []
    drawings: list[tuple[Any, dict[str, Any], str]] = []
    for path, name in zip(
        track(
            images,
            description="detect",
            console=err_console,
            transient=True,
            disable=len(images) < 4,
        ),
        names,
        strict=True,
    ):
        display, x = _read(path)
        h, w = display.shape
        flip = has_light_background(x) if invert is None else invert
        if flip and invert is None:
            err_console.print(
                f"[yellow]warning:[/] IMAGE {path} looks like dark objects on a light background; "
                "inverted (--no-invert to keep it)",
                highlight=False,
                soft_wrap=True,
            )
        if flip:
            x = 1.0 - x
        det = net.detect(
            resize_images(x[None], (size, size)),
            conf_threshold=conf_threshold,
            iou_threshold=iou_threshold,
        )[0]
        scale = torch.tensor([w / size, h / size, w / size, h / size])
        boxes = det["boxes"] * scale
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, h)
        entry = {
            "image": str(path),
            "width": w,
            "height": h,
            "boxes": [[round(float(v), 2) for v in b] for b in boxes.tolist()],
            "scores": [round(float(v), 4) for v in det["scores"].tolist()],
            "labels": [int(v) for v in det["labels"].tolist()],
            "inverted": bool(flip),
        }
        results.append(entry)
        if draw is not None:  # drawn once every image has been read: a bad one leaves no drawings behind
            drawings.append((display, entry, name))
    if draw is not None:
        draw.mkdir(parents=True, exist_ok=True)
        for display, entry, name in drawings:
            draw_detections(display, entry).save(draw / name)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "checkpoint": str(checkpoint),
            "model": meta["config"],
            "epoch": meta.get("epoch"),
            "conf_threshold": conf_threshold,
            "iou_threshold": iou_threshold,
            "box_format": "xyxy pixels",
            "images": results,
        }
        out.write_text(json.dumps(doc, indent=2))
    table = Table(
        "image",
        "size",
        "detections",
        "labels (score)",
        title=f"detect: YOLO S = {net.grid}, C = {net.num_classes} ({size} px input)",
    )
    for r in results:
        labels = ", ".join(
            f"{lab} ({s:.2f})" for lab, s in zip(r["labels"][:8], r["scores"][:8], strict=True)
        )
        table.add_row(
            Path(r["image"]).name,
            f"{r['width']}x{r['height']}",
            str(len(r["labels"])),
            labels + (" ..." if len(r["labels"]) > 8 else ""),
        )
    console.print(table)
    written = [f"boxes: {out}"] if out is not None else []
    written += [f"drawings: {draw}/"] if draw is not None else []
    if written:
        console.print("\n".join(written), soft_wrap=True, highlight=False)

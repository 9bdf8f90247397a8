r"""Experiment ``detection``: a YOLO grid detector on digit canvases, its grid size, and how the
output grows with the number of classes.

Sections of the report (methods from :mod:`mlimaging.detection`; every training through
:func:`mlimaging.training.fit`, YOLO's step as :class:`~mlimaging.detection.YOLOStep`):

1. **Held-out mAP**: a YOLO (v1, Redmon et al. 2016) trained with
   :func:`~mlimaging.detection.train_detector` on canvases of 1-4 mnist5k digits
   (:func:`~mlimaging.detection.detection_canvases`, training digits), scored on canvases
   of held-out (test-split) digits by :func:`~mlimaging.detection.mean_average_precision`
   (COCO semantics): mAP@0.5 and mAP@[.5:.95]
   (:math:`\frac{1}{10}\sum_{t \in \{.5, .55, \dots, .95\}} \mathrm{mAP}_t`), beside the
   two-stage baseline (connected-component proposals + a LeNet crop classifier,
   :class:`~mlimaging.detection.TwoStageDetector`). Loss terms per epoch.
2. **Predicted and true boxes** on held-out canvases.
3. **Grid size** :math:`S \in \{3, 6, 12\}`: a YOLO v1 cell holds one object, so two digits
   whose centres fall in the same cell cannot both be found; the share of ground-truth boxes
   lost that way bounds the recall, and it grows on crowded canvases (5-8 digits) as the grid
   gets coarser. Each :math:`S` is trained with the same recipe and scored on normal and
   crowded held-out canvases.
4. **Output size and inference time against** :math:`C` (10 -> 1000):
   :math:`S \times S \times (5B + C)` numbers per image for YOLO, against
   :math:`K (4 + C)` for :math:`K` proposals of the two-stage model
   (:func:`~mlimaging.detection.output_size_and_time`): the exam's question of scaling YOLO to
   1,000 classes.

Quick mode trains for a few seconds on a few hundred canvases: its numbers are not converged.
Full mode trains the main detector with :data:`~mlimaging.detection.DEFAULT_TRAINING` (the
recipe of ``benchmarks/detection.py``).

References
----------
Redmon J., Divvala S., Girshick R., Farhadi A. (2016). You Only Look Once: Unified, Real-Time
Object Detection. CVPR. arXiv:1506.02640.

Lin T.-Y. et al. (2014). Microsoft COCO: Common Objects in Context. ECCV. arXiv:1405.0312.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("detection", quick=True, seed=0, out="runs/detection")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

__all__ = ["FULL", "QUICK", "DetectionConfig", "cells_lost", "draw_boxes"]

#: Quick mode (<= 30 s on 2 cores, about 12 CPU s): 200 training canvases for 3 epochs, the
#: ablation on 128 canvases for 2 epochs, the crop classifier on 500 digits for 1 epoch, 64
#: held-out canvases; mAP from detections of score >= 0.05 (a barely trained grid passes
#: hundreds of boxes per image at 0.01, and their NMS would dominate the run).
QUICK: dict[str, Any] = {
    "n_train": 200,
    "epochs": 3,
    "n_test": 64,
    "grids": (3, 6, 12),
    "ablation_n_train": 128,
    "ablation_epochs": 2,
    "crowded_digits": (5, 8),
    "two_stage_n_train": 500,
    "two_stage_epochs": 1,
    "classes": (10, 100, 1000),
    "timing_images": 8,
    "timing_repeats": 1,
    "show": 8,
    "score_threshold": 0.05,
}
#: Full mode: the main detector with ``DEFAULT_TRAINING`` (``None``: its values), each grid size
#: on 2,000 canvases for 8 epochs, the crop classifier on every training digit for 8 epochs.
FULL: dict[str, Any] = {
    "n_train": None,
    "epochs": None,
    "n_test": 500,
    "grids": (3, 6, 12),
    "ablation_n_train": 2000,
    "ablation_epochs": 8,
    "crowded_digits": (5, 8),
    "two_stage_n_train": None,
    "two_stage_epochs": 8,
    "classes": (10, 30, 100, 300, 1000),
    "timing_images": 32,
    "timing_repeats": 3,
    "show": 8,
    "score_threshold": 0.01,
}
#: Detections drawn in the figures: score >= this.
DRAW_THRESHOLD = 0.25


@dataclass
class DetectionConfig(ExperimentConfig):
    """Settings of the ``detection`` experiment; ``None`` takes the quick/full value (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    n_train, epochs
        Training canvases and epochs of the main detector (full mode: ``DEFAULT_TRAINING``).
    n_test
        Held-out canvases (each of the normal and the crowded set).
    grids
        Grid sizes :math:`S` of the ablation.
    ablation_n_train, ablation_epochs
        Training canvases and epochs of each ablation model.
    crowded_digits
        Digits per crowded canvas (inclusive range).
    two_stage_n_train, two_stage_epochs
        Training digits (None: all) and epochs of the two-stage model's crop classifier.
    classes
        Class counts :math:`C` of the output-size and timing comparison.
    timing_images, timing_repeats
        Held-out canvases timed per model, and timing repeats (the fastest counts).
    show
        Canvases drawn with their boxes.
    score_threshold
        Detections scored by mAP: class-specific score >= this (full mode 0.01, as the benchmark).
    """

    n_train: int | None = None
    epochs: int | None = None
    n_test: int | None = None
    grids: tuple[int, ...] | None = None
    ablation_n_train: int | None = None
    ablation_epochs: int | None = None
    crowded_digits: tuple[int, int] | None = None
    two_stage_n_train: int | None = None
    two_stage_epochs: int | None = None
    classes: tuple[int, ...] | None = None
    timing_images: int | None = None
    timing_repeats: int | None = None
    show: int | None = None
    score_threshold: float | None = None


def _resolve(cfg: DetectionConfig) -> dict[str, Any]:
    from mlimaging.detection import DEFAULT_TRAINING

    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    for key in ("n_train", "epochs"):
        if p[key] is None:
            p[key] = DEFAULT_TRAINING[key]
    for key in (
        "n_train",
        "epochs",
        "n_test",
        "ablation_n_train",
        "ablation_epochs",
        "two_stage_epochs",
        "timing_images",
        "timing_repeats",
        "show",
    ):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    for key in ("grids", "classes"):
        if not p[key] or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in p[key]
        ):
            raise ValueError(
                f"{key} must be a non-empty tuple of positive integers, got {p[key]!r}"
            )
    return p


def cells_lost(targets: list[dict[str, torch.Tensor]], *, grid: int, image_size: int) -> float:
    r"""Share of ground-truth boxes that a YOLO v1 grid of ``grid`` cells cannot hold.

    A cell is responsible for the objects whose box centre falls in it and holds one of them,
    so a cell with :math:`m > 1` centres loses :math:`m - 1`:

    .. math:: \text{lost} = \frac{\sum_{\text{cells}} \max(m_{\text{cell}} - 1, 0)}{\sum m}.

    :math:`1 - \text{lost}` bounds the recall of the detector at any IoU threshold.

    Examples
    --------
    >>> t = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [4.0, 4, 12, 12], [60.0, 60, 90, 90]]),
    ...       "labels": torch.tensor([1, 2, 3])}]
    >>> cells_lost(t, grid=3, image_size=96), cells_lost(t, grid=12, image_size=96)
    (0.3333333333333333, 0.0)
    """
    lost = total = 0
    for t in targets:
        b = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(-1, 4)
        if b.shape[0] == 0:
            continue
        c = ((b[:, :2] + b[:, 2:]) / 2 * grid / image_size).floor().clamp(0, grid - 1).long()
        _, counts = torch.unique(c[:, 1] * grid + c[:, 0], return_counts=True)
        lost += int((counts - 1).sum())
        total += b.shape[0]
    return lost / total if total else 0.0


def draw_boxes(
    ax: Any,
    image: Any,
    pred: dict[str, torch.Tensor] | None = None,
    target: dict[str, torch.Tensor] | None = None,
    *,
    min_score: float = DRAW_THRESHOLD,
) -> None:
    """Show ``image`` on ``ax`` with true boxes (green, dashed) and predictions (red, ``label score``).

    Examples
    --------
    >>> fig, ax = plt.subplots()
    >>> draw_boxes(ax, torch.zeros(1, 32, 32), {"boxes": torch.tensor([[2.0, 2, 20, 20]]),
    ...            "scores": torch.tensor([0.9]), "labels": torch.tensor([3])})
    >>> len(ax.patches)
    1
    >>> plt.close(fig)
    """
    from matplotlib.patches import Rectangle

    img = torch.as_tensor(image).squeeze().numpy()
    ax.imshow(img, cmap="gray", vmin=0, vmax=max(1.0, float(img.max())))
    if target is not None:
        for (x0, y0, x1, y1), lab in zip(
            target["boxes"].tolist(), target["labels"].tolist(), strict=True
        ):
            ax.add_patch(
                Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.2, ls="--")
            )
            ax.text(x0, y1, str(lab), color="lime", fontsize=7, va="top", ha="left")
    if pred is not None:
        keep = pred["scores"] >= min_score
        for (x0, y0, x1, y1), lab, s in zip(
            pred["boxes"][keep].tolist(),
            pred["labels"][keep].tolist(),
            pred["scores"][keep].tolist(),
            strict=True,
        ):
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="red", lw=1.2))
            ax.text(
                x0,
                y0,
                f"{lab} {s:.2f}",
                color="white",
                fontsize=6,
                va="bottom",
                ha="left",
                bbox={"facecolor": "red", "alpha": 0.7, "pad": 0.5, "lw": 0},
            )
    ax.set_axis_off()


def _score(
    preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]]
) -> dict[str, float]:
    from mlimaging.detection import mean_average_precision

    m = mean_average_precision(preds, targets)
    return {k: float(m[k]) for k in ("map_50", "map", "map_75")}


def _yolo_predict(
    net: Any, images: torch.Tensor, threshold: float
) -> list[dict[str, torch.Tensor]]:
    out: list[dict[str, torch.Tensor]] = []
    for start in range(0, len(images), 64):
        out += net.detect(images[start : start + 64], conf_threshold=threshold)
    return out


# ------------------------------------------------------------------------------------ sections
def _main_section(
    cfg: DetectionConfig, p: dict[str, Any], run: Run, train: Any, test: Any
) -> tuple[Any, Any]:
    from mlimaging.detection import DEFAULT_TRAINING, train_detector, train_two_stage

    t0 = time.process_time()
    net, hist = train_detector(
        (train.images[: p["n_train"]], train.targets[: p["n_train"]]),
        epochs=p["epochs"],
        seed=cfg.seed,
    )
    yolo_cpu = time.process_time() - t0
    yolo_preds = _yolo_predict(net, test.images, p["score_threshold"])
    t0 = time.process_time()
    two, two_hist = train_two_stage(
        epochs=p["two_stage_epochs"], n_train=p["two_stage_n_train"], seed=cfg.seed
    )
    two_cpu = time.process_time() - t0
    two_preds = two(test.images)
    s = net.config
    settings = {k: DEFAULT_TRAINING[k] for k in ("batch_size", "lr", "weight_decay")}
    not_conv = (
        " Quick mode: a few seconds of training, the numbers are NOT converged."
        if cfg.quick
        else ""
    )
    run.section(
        "1. Held-out mAP",
        f"YOLO (S = {s['grid']}, B = {s['boxes_per_cell']}, C = {s['num_classes']}, backbone "
        f"'{s['backbone']}', {s['image_size']} px) trained through fit on {p['n_train']} canvases of 1-4 "
        f"training digits for {p['epochs']} epochs (AdamW, one-cycle lr {settings['lr']:g}, batch "
        f"{settings['batch_size']}, weight decay {settings['weight_decay']:g}); scored on {len(test)} "
        "canvases of held-out test digits (detections of score >= "
        f"{p['score_threshold']:g}, class-wise NMS at IoU 0.5) with COCO's mAP (101-point interpolation). "
        "The two-stage baseline: connected components of the thresholded canvas as proposals, each "
        f"crop classified by LeNet-5 trained on {p['two_stage_n_train'] or 'all'} single rescaled "
        f"training digits for {p['two_stage_epochs']} epoch(s)." + not_conv,
    )
    rows = [
        {
            "model": f"YOLO (S = {s['grid']})",
            **_score(yolo_preds, test.targets),
            "parameters": sum(q.numel() for q in net.parameters()),
            "training CPU s": yolo_cpu,
        },
        {
            "model": "two-stage (components + LeNet)",
            **_score(two_preds, test.targets),
            "parameters": sum(q.numel() for q in two.parameters()),
            "training CPU s": two_cpu,
        },
    ]
    run.table(
        "Held-out mAP",
        rows,
        caption="map_50: mAP@0.5; map: mAP@[.5:.95]; map_75: mAP@0.75. "
        "Training CPU time is process time (data included), one seed.",
    )
    run.log(yolo=rows[0], two_stage=rows[1], yolo_config=s)
    fig, ax = plt.subplots(figsize=(6, 3.4))
    epochs = np.arange(1, len(hist) + 1)
    for key in ("loss", "coord", "obj", "noobj", "cls"):
        if key in hist.keys():
            ax.plot(epochs, hist[key], "o-" if key == "loss" else ".-", ms=3, label=key)
    ax.set(
        xlabel="epoch",
        ylabel="training loss (per image)",
        yscale="log",
        title="YOLO loss and its terms",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    run.figure(
        fig,
        "training-loss",
        caption="The YOLO loss per epoch and its terms (coordinates x lambda_coord, "
        "object confidence, no-object confidence x lambda_noobj, class probabilities).",
    )
    return (net, yolo_preds), (two, two_preds)


def _boxes_section(
    p: dict[str, Any], run: Run, test: Any, yolo_preds: list, two_preds: list
) -> None:
    n = min(p["show"], len(test))
    run.section(
        "2. Predicted and true boxes",
        f"{n} held-out canvases: true boxes dashed green with their "
        f"label, predictions of score >= {DRAW_THRESHOLD:g} in red with label and score.",
    )
    fig, axes = plt.subplots(2, n, figsize=(2.3 * n, 5.0), squeeze=False)
    for j in range(n):
        draw_boxes(axes[0, j], test.images[j], yolo_preds[j], test.targets[j])
        draw_boxes(axes[1, j], test.images[j], two_preds[j], test.targets[j])
    axes[0, 0].set_title("YOLO", fontsize=8, loc="left")
    axes[1, 0].set_title("two-stage", fontsize=8, loc="left")
    fig.tight_layout()
    run.figure(
        fig,
        "predicted-and-true-boxes",
        caption="Top: YOLO; bottom: the two-stage baseline. Green "
        "dashed: ground truth; red: predictions (label score).",
    )


def _grid_section(
    cfg: DetectionConfig, p: dict[str, Any], run: Run, train: Any, test: Any, crowded: Any
) -> None:
    from mlimaging.detection import train_detector

    size = int(test.images.shape[-1])
    d0, d1 = p["crowded_digits"]
    run.section(
        "3. Grid size",
        f"S in {list(p['grids'])}, each trained the same way ({p['ablation_n_train']} "
        f"canvases of 1-4 digits, {p['ablation_epochs']} epochs) and scored on {len(test)} held-out "
        f"canvases of 1-4 digits and {len(crowded)} crowded ones of {d0}-{d1} digits. A YOLO v1 cell "
        "predicts one object: digits whose centres share a cell are lost, which bounds the recall "
        "('lost to cells', computed from the ground truth alone).",
    )
    rows = []
    for g in run.track(p["grids"], "grid sizes"):
        t0 = time.process_time()
        net, _ = train_detector(
            (train.images[: p["ablation_n_train"]], train.targets[: p["ablation_n_train"]]),
            grid=g,
            epochs=p["ablation_epochs"],
            seed=cfg.seed,
        )
        cpu = time.process_time() - t0
        normal = _score(_yolo_predict(net, test.images, p["score_threshold"]), test.targets)
        crowd = _score(_yolo_predict(net, crowded.images, p["score_threshold"]), crowded.targets)
        rows.append(
            {
                "S": g,
                "output size": int(np.prod(net.output_shape)),
                "lost to cells (1-4 digits)": cells_lost(test.targets, grid=g, image_size=size),
                f"lost to cells ({d0}-{d1} digits)": cells_lost(
                    crowded.targets, grid=g, image_size=size
                ),
                "map_50 (1-4 digits)": normal["map_50"],
                f"map_50 ({d0}-{d1} digits)": crowd["map_50"],
                "map (1-4 digits)": normal["map"],
                f"map ({d0}-{d1} digits)": crowd["map"],
                "training CPU s": cpu,
            }
        )
    run.table(
        "Grid-size ablation",
        rows,
        caption="One seed per row. 'lost to cells': share of true boxes that "
        "share their cell with another box centre (1 - it bounds the recall).",
    )
    run.log(grid_ablation=rows)
    gs = [r["S"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in (
        (axes[0], "lost to cells", "True boxes a grid cannot hold"),
        (axes[1], "map_50", "mAP@0.5 on held-out canvases"),
    ):
        for label, ls in (("1-4 digits", "o-"), (f"{d0}-{d1} digits", "s--")):
            ax.plot(gs, [r[f"{key} ({label})"] for r in rows], ls, label=label)
        ax.set(xscale="log", xlabel="grid size S", title=title, ylim=(0, 1))
        ax.set_xticks(gs, [str(g) for g in gs])
        ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel("share of true boxes")
    axes[1].set_ylabel("mAP@0.5")
    fig.tight_layout()
    run.figure(
        fig,
        "grid-size",
        caption="Left: share of true boxes lost because their centre shares a cell "
        "(from the ground truth); right: mAP@0.5 of a YOLO trained with each S.",
    )
    # one crowded canvas under each grid
    k = int(np.argmax([len(t["labels"]) for t in crowded.targets[:20]]))
    fig, axes = plt.subplots(1, len(gs), figsize=(3 * len(gs), 3.2), squeeze=False)
    for ax, g in zip(axes[0], gs, strict=True):
        draw_boxes(ax, crowded.images[k], None, crowded.targets[k])
        for v in np.linspace(0, size, g + 1):
            ax.axhline(v - 0.5, color="yellow", lw=0.5, alpha=0.6)
            ax.axvline(v - 0.5, color="yellow", lw=0.5, alpha=0.6)
        b = crowded.targets[k]["boxes"]
        c = (b[:, :2] + b[:, 2:]) / 2
        cell = (c * g / size).floor().clamp(0, g - 1).long()
        key = cell[:, 1] * g + cell[:, 0]
        shared = torch.tensor([int((key == v).sum()) > 1 for v in key.tolist()], dtype=torch.bool)
        ax.plot(c[~shared, 0] - 0.5, c[~shared, 1] - 0.5, "o", color="cyan", ms=4)
        ax.plot(c[shared, 0] - 0.5, c[shared, 1] - 0.5, "x", color="red", ms=7, mew=2)
        ax.set_title(
            f"S = {g}: {cells_lost([crowded.targets[k]], grid=g, image_size=size):.0%} lost",
            fontsize=9,
        )
    fig.tight_layout()
    run.figure(
        fig,
        "grid-cells-crowded",
        caption="A crowded canvas under each grid: box centres in cyan, red "
        "crosses where two or more centres share a cell (only one of them can be predicted).",
    )


def _classes_section(p: dict[str, Any], run: Run, test: Any, grid: int) -> None:
    from mlimaging.calc import yolo_output_shape
    from mlimaging.detection import output_size_and_time

    s, _, d = yolo_output_shape(7, 2, 1000)
    run.section(
        "4. Output size and inference time against C",
        "YOLO's output is S x S x (5B + C) whatever "
        f"the image holds: with the paper's S = 7, B = 2 and C = 1000 classes that is 7 x 7 x {d} = "
        f"{s * s * d:,} numbers per image, most of them class probabilities of empty cells. A two-stage "
        "detector proposes K class-agnostic boxes first and classifies only those crops: K (4 + C) "
        "numbers. Both untrained (time does not depend on the weights), YOLO at S = "
        f"{grid}, B = 2; process CPU time per image on {p['timing_images']} held-out canvases with "
        f"the threads torch uses ({torch.get_num_threads()}), the best of {p['timing_repeats']}.",
    )
    rows = output_size_and_time(
        p["classes"],
        images=test.images[: p["timing_images"]],
        grid=grid,
        repeats=p["timing_repeats"],
    )
    run.table(
        "Output size and time against C",
        rows,
        caption="output_size: numbers per image (two-stage: mean "
        "proposals per canvas x (4 + C)); ms_per_image: process CPU ms.",
    )
    run.log(output_size_and_time=rows)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for model, style in (("one-stage", "o-"), ("two-stage", "s--")):
        sel = [r for r in rows if r["model"] == model]
        cs = [r["num_classes"] for r in sel]
        axes[0].plot(cs, [r["output_size"] for r in sel], style, label=model)
        axes[1].plot(cs, [r["ms_per_image"] for r in sel], style, label=model)
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="classes C",
        ylabel="numbers per image",
        title="Output size",
    )
    axes[1].set(xscale="log", xlabel="classes C", ylabel="CPU ms per image", title="Inference time")
    axes[1].set_ylim(bottom=0)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    fig.tight_layout()
    run.figure(
        fig,
        "output-size-and-time",
        caption=f"Output size (left) and inference time (right) against the "
        f"number of classes: YOLO (S = {grid}, B = 2) against connected-component proposals + LeNet.",
    )


@experiment("detection", config=DetectionConfig)
def detection(cfg: DetectionConfig, run: Run) -> None:
    """YOLO on digit canvases: held-out mAP, predicted boxes, grid-size ablation, output size/time vs C."""
    from mlimaging.detection import detection_canvases

    p = _resolve(cfg)
    n_train = max(p["n_train"], p["ablation_n_train"])
    train = detection_canvases(n=n_train, canvas=96, seed=cfg.seed, split="train")
    test = detection_canvases(n=p["n_test"], canvas=96, seed=cfg.seed + 1, split="test")
    crowded = detection_canvases(
        n=p["n_test"], canvas=96, digits=p["crowded_digits"], seed=cfg.seed + 2, split="test"
    )
    (net, yolo_preds), (_, two_preds) = _main_section(cfg, p, run, train, test)
    _boxes_section(p, run, test, yolo_preds, two_preds)
    _grid_section(cfg, p, run, train, test, crowded)
    _classes_section(p, run, test, net.grid)

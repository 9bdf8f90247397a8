"""Object detection (issue 19): mAP speed and equality against torchmetrics; the detector's training row.

Rows:

* ``map_speed``: :func:`mlimaging.detection.mean_average_precision` against torchmetrics'
  ``MeanAveragePrecision`` (its default configuration: pycocotools backend, no per-class
  pass) on the same 1,000 images: ground truths are digit canvases
  (``detection_canvases``, 1-4 digits, 96 px), predictions are synthetic (each true box
  jittered, a wrong class now and then, duplicates and false positives, scores with ties).
  Both sides are timed from the per-image dicts to the result dict (torchmetrics:
  ``update`` + ``compute``), alternating, median of the repeats, process CPU time, the same
  thread count. Equality is checked outside the timing against
  ``MeanAveragePrecision(class_metrics=True)``: every key, including per class, within 1e-4.
  Target: equal, and at most 0.5x torchmetrics' time.
* ``train_map50``: mAP@0.5 >= 0.90 on held-out canvases after <= 15 CPU minutes of training
  (:func:`training_row`): ``DEFAULT_TRAINING`` through ``train_detector`` with a CPU budget,
  the canvases' generation included in the time; 1,000 test canvases made of the test split's
  digits (handwriting never seen in training), detections at confidence >= 0.01.

Run: ``python benchmarks/detection.py`` (``--quick``: 200 images, 2 repeats).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path
from typing import Any

import torch

from _common import alternate, install_torchvision_shim, print_targets  # benchmarks/ is on sys.path
from mlimaging.detection import detection_canvases, mean_average_precision
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "detection.json"
TARGETS = {
    "map_speed_ratio": 0.5,
    "map_tolerance": 1e-4,
    "train_map50": 0.90,
    "train_cpu_minutes": 15,
}


def synthetic_predictions(
    targets: list[dict[str, torch.Tensor]], *, seed: int
) -> list[dict[str, torch.Tensor]]:
    """Detections for each image: jittered true boxes (10% wrong class, 20% duplicated), 0-6 false
    positives, scores rounded to 0.05 (many ties)."""
    g = torch.Generator().manual_seed(seed)
    preds = []
    for t in targets:
        boxes, labels = t["boxes"], t["labels"]
        m = boxes.shape[0]
        dup = torch.rand(m, generator=g) < 0.2
        src = torch.cat([torch.arange(m), torch.arange(m)[dup]])
        wh = (boxes[src, 2:] - boxes[src, :2]).repeat(1, 2)
        jit = boxes[src] + torch.randn(src.numel(), 4, generator=g) * 0.12 * wh
        lab = torch.where(
            torch.rand(src.numel(), generator=g) < 0.1,
            torch.randint(0, 10, (src.numel(),), generator=g),
            labels[src],
        )
        k = int(torch.randint(0, 7, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * 70
        fp = torch.cat([xy, xy + 8 + torch.rand(k, 2, generator=g) * 25], 1)
        b = torch.cat([jit, fp]).clamp(0, 96)
        b = torch.cat([torch.minimum(b[:, :2], b[:, 2:]), torch.maximum(b[:, :2], b[:, 2:])], 1)
        sc = torch.cat(
            [0.5 + 0.5 * torch.rand(src.numel(), generator=g), 0.6 * torch.rand(k, generator=g)]
        )
        preds.append(
            {
                "boxes": b,
                "scores": (sc * 20).round() / 20,
                "labels": torch.cat([lab, torch.randint(0, 10, (k,), generator=g)]),
            }
        )
    return preds


def map_speed(n_images: int, repeats: int) -> dict[str, Any]:
    case = {"case": "map_speed", "images": n_images}
    try:
        install_torchvision_shim()
        import pycocotools  # noqa: F401  (torchmetrics' backend)
        from torchmetrics.detection import MeanAveragePrecision
    except ImportError as e:
        return {
            **case,
            "not_run": f"oracle missing ({e}); pip install torchmetrics pycocotools",
            "passed": False,
        }
    ds = detection_canvases(n=n_images, canvas=96, digits=(1, 4), seed=123, split="test")
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in ds.targets]
    preds = synthetic_predictions(targets, seed=7)

    def run_ours():
        return mean_average_precision(preds, targets)

    def run_tm():
        metric = MeanAveragePrecision()
        metric.update(preds, targets)
        return metric.compute()

    cpu, wall = alternate({"ours": run_ours, "torchmetrics": run_tm}, repeats=repeats)
    ours = run_ours()
    oracle = MeanAveragePrecision(class_metrics=True)
    oracle.update(preds, targets)
    ref = oracle.compute()
    diffs = {}
    for key, value in ref.items():
        a, b = ours[key].double().reshape(-1), value.double().reshape(-1)
        diffs[key] = (
            float((a - b).abs().max())
            if a.shape == b.shape and a.numel()
            else (0.0 if a.shape == b.shape else float("inf"))
        )
    max_diff = max(diffs.values())
    t_ours, t_tm = statistics.median(cpu["ours"]), statistics.median(cpu["torchmetrics"])
    ratio = t_ours / t_tm
    return {
        **case,
        "detections": sum(len(p["scores"]) for p in preds),
        "ground_truths": sum(len(t["labels"]) for t in targets),
        "cpu_s": {"ours": cpu["ours"], "torchmetrics": cpu["torchmetrics"]},
        "wall_s": {"ours": wall["ours"], "torchmetrics": wall["torchmetrics"]},
        "median_cpu_s": {"ours": t_ours, "torchmetrics": t_tm},
        "ratio": ratio,
        "map": float(ours["map"]),
        "map_50": float(ours["map_50"]),
        "map_75": float(ours["map_75"]),
        "torchmetrics_map": float(ref["map"]),
        "max_abs_diff": max_diff,
        "diff_per_key": diffs,
        "passed": ratio <= TARGETS["map_speed_ratio"] and max_diff <= TARGETS["map_tolerance"],
    }


# ----------------------------------------------------------------------------- training row
def training_row(quick: bool) -> dict[str, Any]:
    """mAP@0.5 of the trained detector on held-out canvases (target >= 0.90 after <= 15 CPU min).

    ``train_detector`` with its defaults (``DEFAULT_TRAINING``: YOLO grid 6, B = 2, backbone
    "small", canvases of 1-4 digits from the mnist5k train split) under a 15-CPU-minute cap
    (``CPUBudget``, checked after each epoch), then ``decode`` (conf >= 0.01, class-wise NMS 0.5)
    on 1,000 canvases drawn from the held-out test split's digits (unseen handwriting), scored
    by ``mean_average_precision``. The CPU time counts the canvas generation and the training
    (process time, the benchmark's thread count). ``--quick``: 1,000 canvases, 2 epochs.
    """
    import time

    from _common import CPUBudget
    from mlimaging.detection import DEFAULT_TRAINING, train_detector

    settings = dict(DEFAULT_TRAINING)
    if quick:
        settings.update(n_train=1000, epochs=2)
    t0 = time.process_time()
    train = detection_canvases(n=settings["n_train"], seed=settings["seed"], split="train")
    budget = 60.0 * TARGETS["train_cpu_minutes"] - (time.process_time() - t0)
    net, hist = train_detector(
        (train.images, train.targets),
        callbacks=[CPUBudget(budget)],
        **{k: v for k, v in settings.items() if k != "n_train"},
    )
    cpu = time.process_time() - t0
    test = detection_canvases(n=200 if quick else 1000, seed=2024, split="test")
    preds = []
    for i in range(0, len(test), 100):
        preds += net.detect(test.images[i : i + 100], conf_threshold=0.01)
    m = mean_average_precision(preds, test.targets)
    return {
        "case": "train_map50",
        "settings": settings,
        "epochs_run": len(hist),
        "test_images": len(test),
        "map_50": float(m["map_50"]),
        "map_75": float(m["map_75"]),
        "map": float(m["map"]),
        "cpu_minutes": cpu / 60,
        "final_loss": hist["loss"][-1],
        "passed": bool(
            float(m["map_50"]) >= TARGETS["train_map50"]
            and cpu / 60 <= TARGETS["train_cpu_minutes"]
        ),
    }


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    if "not_run" in r:
        target = (
            "<= 0.5x torchmetrics, equal to 1e-4"
            if r["case"] == "map_speed"
            else ">= 0.90 mAP@0.5, <= 15 CPU min"
        )
        return "not run", target, r["not_run"]
    if r["case"] == "map_speed":
        m = r["median_cpu_s"]
        return (
            f"{r['ratio']:.3f}x",
            "<= 0.5x, |diff| <= 1e-4",
            f"{r['images']} images, {r['detections']} dets, {r['ground_truths']} gts: ours {m['ours']:.3f} s, "
            f"torchmetrics {m['torchmetrics']:.3f} s (median CPU); map {r['map']:.4f} vs {r['torchmetrics_map']:.4f}, "
            f"max |diff| over all keys {r['max_abs_diff']:.1e}",
        )
    return (
        f"{r['map_50']:.3f}",
        ">= 0.90, <= 15 CPU min",
        f"map {r.get('map', float('nan')):.3f}, {r.get('cpu_minutes', float('nan')):.1f} CPU min",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 images, 2 repeats")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="alternating timed repeats (default 7; 2 with --quick)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads for both libraries (default 1)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"default {RESULTS.name} (detection-quick.json with --quick)",
    )
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS.with_name("detection-quick.json") if args.quick else RESULTS
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (2 if args.quick else 7)
    rows = [map_speed(200 if args.quick else 1000, repeats), training_row(args.quick)]
    report = {
        "quick": args.quick,
        "threads": args.threads,
        "repeats": repeats,
        "targets": TARGETS,
        "cases": rows,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "versions": package_versions(
            ("mlimaging", "torch", "numpy", "torchmetrics", "pycocotools")
        ),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=float))
    met = sum(r["passed"] for r in rows)
    print_targets(
        f"Detection (issue 19){' --quick' if args.quick else ''}: {args.threads} thread(s), "
        f"{repeats} alternating repeat(s), process CPU time",
        rows,
        cells,
        summary=f"{met}/{len(rows)} targets met; wrote {args.output}",
        width=200,
    )


if __name__ == "__main__":
    main()

"""Segmentation targets: 2D and 3D U-Net on phantoms, region growing against SimpleITK, FCN against the patch CNN.

1. **2D U-Net** (channels 8, depth 3) trained with ``mlimaging.training.fit`` (Dice + cross-entropy,
   Adam) on 128 x 128 phantoms with noise, bias field, partial volume and shape variability
   (``BASE_KNOBS`` of the ``segmentation`` experiment); Dice, HD95 and ASSD per structure on a
   held-out test set, with fixed thresholds, multi-level Otsu and seeded region growing on the
   same images. Target: U-Net mean Dice over the three structures >= 0.95.
2. **3D U-Net** (channels 8, depth 2) on 64^3 phantoms with the same knobs, trained on 32^3
   random windows (half of them centred on a foreground voxel), applied by sliding window.
   Dice is reported (no target).
3. **Region growing** on a 256^3 phantom against SimpleITK's ``ConnectedThreshold``, with the
   cases, seeds and timing of ``benchmarks/region_growing.py`` (reused). Target: identical
   masks and at most 1.5 x SimpleITK's time, in the same run.
4. **FCN against the patch CNN**: a patch CNN trained on 17 x 17 patches of the 2D training
   set, turned into an FCN with ``FCN.from_patch_cnn``; on each 128 x 128 test image the
   labels of the dense pass are compared with patch-by-patch classification, done one patch
   per call (the naive loop) and in batches of 1,024 patches. Target: identical labels and
   the dense pass at least 20 x faster than patch by patch.

Times are best of ``--repeats`` (``time.perf_counter``). Torch uses ``--threads`` threads
(default 1: on two shared cores, more threads mostly add contention). Writes
``benchmarks/results/segmentation.json`` and prints tables.

Run: ``python benchmarks/segmentation.py`` (about 5 minutes on two cores; ``--quick`` for a
small smoke version whose targets are not meaningful).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from mlimaging.data import PhantomDataset, make_phantom
from mlimaging.metrics import evaluate_segmentation
from mlimaging.models import FCN, create_model
from mlimaging.models.patch_cnn import HALF, PATCH_SIZE
from mlimaging.segmentation.pipeline import (
    BASE_KNOBS,
    SegmentationSamples,
    build_segmenter,
    nominal_intensities,
    otsu_labels,
    patch_dataset,
    patch_predict,
    predict_labels,
    region_growing_labels,
    threshold_labels,
    train_segmenter,
    zscore,
)
from mlimaging.utils import package_versions

sys.path.insert(0, str(Path(__file__).resolve().parent))
import region_growing as rg_bench  # noqa: E402  (the region-growing benchmark's cases and timing)

RESULTS = Path(__file__).resolve().parent / "results" / "segmentation.json"
STRUCTURES = {1: "body", 2: "organ", 3: "lesion"}
FULL = {"size": 128, "n_train": 48, "n_test": 16, "epochs": 20, "size_3d": 64, "n_train_3d": 16, "n_test_3d": 4,
        "epochs_3d": 40, "roi_3d": 32, "rg_size": 256, "patch_per_class": 200, "patch_epochs": 4}
QUICK = {"size": 64, "n_train": 8, "n_test": 4, "epochs": 3, "size_3d": 32, "n_train_3d": 4, "n_test_3d": 2,
         "epochs_3d": 3, "roi_3d": 16, "rg_size": 96, "patch_per_class": 50, "patch_epochs": 1}


def phantoms(n: int, shape: tuple[int, ...], seed: int) -> PhantomDataset:
    return PhantomDataset(n, shape, seed=seed, n_structures=3, **BASE_KNOBS)


def scores(preds: list[np.ndarray], gts: list[np.ndarray]) -> dict:
    """Mean Dice, HD95 and ASSD per structure and their means over structures."""
    res = evaluate_segmentation(preds, gts, labels=list(STRUCTURES), metrics=("dice", "hd95", "assd"))
    per = {STRUCTURES[k]: {m: float(res.values(m, k).mean()) for m in ("dice", "hd95", "assd")} for k in STRUCTURES}
    mean = {m: float(np.mean([v[m] for v in per.values()])) for m in ("dice", "hd95", "assd")}
    return {"per_structure": per, "mean": mean}


def best_time(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def unet_2d(p: dict, seed: int) -> tuple[dict, list, list]:
    shape = (p["size"],) * 2
    train, test = phantoms(p["n_train"], shape, seed), phantoms(p["n_test"], shape, seed + 1)
    net = build_segmenter("unet", num_classes=4, channels=8, depth=3, seed=seed)
    t = time.perf_counter()
    train_segmenter(net, SegmentationSamples(train), epochs=p["epochs"], batch_size=4, lr=3e-3, seed=seed)
    train_s = time.perf_counter() - t
    items = [test[i] for i in range(len(test))]
    gts = [y.numpy() for _, y in items]
    lut = nominal_intensities(shape)
    methods = {
        "U-Net": lambda x, y: predict_labels(net, x),
        "threshold": lambda x, y: threshold_labels(x[0].numpy(), lut),
        "Otsu": lambda x, y: otsu_labels(x[0].numpy(), lut),
        "region growing": lambda x, y: region_growing_labels(x[0].numpy(), y.numpy(), lut),
    }
    out = {}
    for name, fn in methods.items():
        fn(*items[0])  # warm-up
        t = time.perf_counter()
        preds = [fn(x, y) for x, y in items]
        out[name] = {**scores(preds, gts), "inference_ms_per_image": 1e3 * (time.perf_counter() - t) / len(items)}
    out["U-Net"]["training_s"] = train_s
    return out, [train[i] for i in range(len(train))], items


def unet_3d(p: dict, seed: int) -> dict:
    shape = (p["size_3d"],) * 3
    roi = (p["roi_3d"],) * 3
    train, test = phantoms(p["n_train_3d"], shape, seed + 10), phantoms(p["n_test_3d"], shape, seed + 11)
    net = build_segmenter("unet", num_classes=4, spatial_dims=3, channels=8, depth=2, seed=seed)
    t = time.perf_counter()
    train_segmenter(net, SegmentationSamples(train, roi_size=roi, foreground=0.5), epochs=p["epochs_3d"],
                    batch_size=2, lr=1e-2, seed=seed)
    train_s = time.perf_counter() - t
    items = [test[i] for i in range(len(test))]
    t = time.perf_counter()
    preds = [predict_labels(net, x, roi_size=roi) for x, _ in items]
    infer = (time.perf_counter() - t) / len(items)
    lut = nominal_intensities(shape)
    gts = [y.numpy() for _, y in items]
    return {"U-Net 3D": {**scores(preds, gts), "training_s": train_s, "inference_ms_per_volume": 1e3 * infer},
            "threshold": scores([threshold_labels(x[0].numpy(), lut) for x, _ in items], gts),
            "Otsu": scores([otsu_labels(x[0].numpy(), lut) for x, _ in items], gts)}


def region_growing_vs_sitk(p: dict, repeats: int) -> list[dict]:
    shape = (p["rg_size"],) * 3
    image, labels = make_phantom(shape, seed=0, noise=0.05)
    simage = sitk.GetImageFromArray(image)
    rows = []
    for name, (label, intensity) in rg_bench.STRUCTURES.items():
        lower = float(np.float32(intensity - rg_bench.HALF_WIDTH))
        upper = float(np.float32(intensity + rg_bench.HALF_WIDTH))
        seed = rg_bench.pick_seed(image, labels, label, np.float32(lower), np.float32(upper))
        times, out = rg_bench.time_connected(image, simage, seed, lower, upper, repeats)
        same = bool(np.array_equal(out["mlimaging"], sitk.GetArrayViewFromImage(out["SimpleITK"]).astype(bool)))
        rows.append({"case": name, "voxels": int(out["mlimaging"].sum()), "identical": same,
                     "mlimaging_s": times["mlimaging"], "simpleitk_s": times["SimpleITK"],
                     "ratio": times["mlimaging"] / times["SimpleITK"]})
    return rows


def one_patch_per_call(model: nn.Module, image: torch.Tensor) -> np.ndarray:
    """The naive loop: every pixel's 17 x 17 patch through the network on its own."""
    shape = image.shape[-2:]
    x = torch.nn.functional.pad(zscore(image).reshape(1, 1, *shape), (HALF,) * 4, mode="reflect")
    out = np.empty(shape, dtype=np.int64)
    with torch.no_grad():
        for i in range(shape[0]):
            for j in range(shape[1]):
                out[i, j] = int(model(x[..., i:i + PATCH_SIZE, j:j + PATCH_SIZE]).argmax(1))
    return out


def fcn_vs_patch(p: dict, train_items: list, test_items: list, repeats: int, seed: int) -> dict:
    patches = patch_dataset([x for x, _ in train_items], [y for _, y in train_items],
                            per_class=p["patch_per_class"], seed=seed)
    patch = create_model("patch_cnn", num_classes=4, seed=seed)
    train_segmenter(patch, patches, epochs=p["patch_epochs"], batch_size=64, lr=3e-3, seed=seed, loss=nn.CrossEntropyLoss())
    patch.eval()
    fcn = FCN.from_patch_cnn(patch, pad=True, padding_mode="reflect").eval()
    predict_labels(fcn, test_items[0][0])  # warm-up
    batched_s, dense_s, identical, dense_preds = [], [], True, []
    for x, _ in test_items:
        tb, by_patch = best_time(lambda x=x: patch_predict(patch, x, batch_size=1024), repeats)
        td, dense = best_time(lambda x=x: predict_labels(fcn, x), repeats)
        identical &= bool(np.array_equal(by_patch, dense))
        batched_s.append(tb)
        dense_s.append(td)
        dense_preds.append(dense)
    t = time.perf_counter()
    single = one_patch_per_call(patch, test_items[0][0])
    single_s = time.perf_counter() - t
    identical &= bool(np.array_equal(single, dense_preds[0]))
    gts = [y.numpy() for _, y in test_items]
    return {"patches": len(patches), "identical_labels": identical, "patch_cnn_scores": scores(dense_preds, gts)["mean"],
            "one_patch_per_call_s": single_s, "batched_patches_s": float(np.mean(batched_s)),
            "dense_s": float(np.mean(dense_s)), "speedup_vs_one_per_call": single_s / dense_s[0],
            "speedup_vs_batched": float(np.mean(batched_s) / np.mean(dense_s))}


def print_table(title: str, header: list[str], rows: list[list]) -> None:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) + 2 for i, h in enumerate(header)]
    print(f"\n{title}")
    print("".join(f"{h:>{w}}" if i else f"{h:<{w}}" for i, (h, w) in enumerate(zip(header, widths, strict=True))))
    print("-" * sum(widths))
    for r in rows:
        print("".join(f"{v:>{w}}" if i else f"{v:<{w}}" for i, (v, w) in enumerate(zip(r, widths, strict=True))))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke version (targets not meaningful)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    p = QUICK if args.quick else FULL
    t_all = time.perf_counter()

    t = time.perf_counter()
    two_d, train_items, test_items = unet_2d(p, args.seed)
    print(f"2D: done in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    three_d = unet_3d(p, args.seed)
    print(f"3D: done in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    rg = region_growing_vs_sitk(p, args.repeats)
    print(f"region growing: done in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    fcn = fcn_vs_patch(p, train_items, test_items, args.repeats, args.seed)
    print(f"FCN vs patch CNN: done in {time.perf_counter() - t:.0f} s")
    total = time.perf_counter() - t_all

    unet_dice = two_d["U-Net"]["mean"]["dice"]
    targets = [
        {"target": f"2D U-Net mean Dice >= 0.95 ({p['size']}^2, noise + bias field + partial volume)",
         "value": unet_dice, "pass": unet_dice >= 0.95},
        {"target": f"region growing {p['rg_size']}^3: same mask as SimpleITK ConnectedThreshold",
         "value": all(r["identical"] for r in rg), "pass": all(r["identical"] for r in rg)},
        {"target": "region growing: time <= 1.5 x SimpleITK (worst case)",
         "value": max(r["ratio"] for r in rg), "pass": max(r["ratio"] for r in rg) <= 1.5},
        {"target": "FCN = patch CNN labels", "value": fcn["identical_labels"], "pass": fcn["identical_labels"]},
        {"target": "FCN dense pass >= 20 x faster than patch by patch (one patch per call)",
         "value": fcn["speedup_vs_one_per_call"], "pass": fcn["speedup_vs_one_per_call"] >= 20},
        {"target": "FCN dense pass >= 20 x faster than patches in batches of 1024",
         "value": fcn["speedup_vs_batched"], "pass": fcn["speedup_vs_batched"] >= 20},
    ]

    def f(v, d=3):
        return f"{v:.{d}f}" if isinstance(v, float) else str(v)

    s2 = p["size"]
    print_table(f"2D phantoms {s2}x{s2}, {p['n_train']} training / {p['n_test']} test images "
                f"(knobs {BASE_KNOBS}); distances in pixels", ["method", "Dice body", "Dice organ", "Dice lesion",
                "mean Dice", "mean HD95", "mean ASSD", "ms/image"],
                [[m, *(f(r["per_structure"][s]["dice"]) for s in STRUCTURES.values()), f(r["mean"]["dice"]),
                  f(r["mean"]["hd95"], 2), f(r["mean"]["assd"], 2), f(r["inference_ms_per_image"], 1)]
                 for m, r in two_d.items()])
    print(f"U-Net training: {two_d['U-Net']['training_s']:.0f} s")
    s3 = p["size_3d"]
    print_table(f"3D phantoms {s3}^3, {p['n_train_3d']} training / {p['n_test_3d']} test volumes",
                ["method", "Dice body", "Dice organ", "Dice lesion", "mean Dice", "mean HD95"],
                [[m, *(f(r["per_structure"][s]["dice"]) for s in STRUCTURES.values()), f(r["mean"]["dice"]),
                  f(r["mean"]["hd95"], 2)] for m, r in three_d.items()])
    print(f"3D U-Net training: {three_d['U-Net 3D']['training_s']:.0f} s, "
          f"inference {three_d['U-Net 3D']['inference_ms_per_volume']:.0f} ms/volume")
    print_table(f"Region growing on {p['rg_size']}^3 vs SimpleITK ConnectedThreshold (best of {args.repeats})",
                ["case", "voxels", "ours ms", "SimpleITK ms", "ratio", "same"],
                [[r["case"], r["voxels"], f(1e3 * r["mlimaging_s"], 1), f(1e3 * r["simpleitk_s"], 1), f(r["ratio"], 2),
                  "yes" if r["identical"] else "NO"] for r in rg])
    print_table(f"FCN vs patch CNN on {s2}x{s2} images ({fcn['patches']} training patches)",
                ["way", "seconds per image", "dense is faster by"],
                [["one patch per call", f(fcn["one_patch_per_call_s"], 3), f(fcn["speedup_vs_one_per_call"], 1) + "x"],
                 ["batches of 1024 patches", f(fcn["batched_patches_s"], 4), f(fcn["speedup_vs_batched"], 1) + "x"],
                 ["FCN, one dense pass", f(fcn["dense_s"], 4), "1.0x"]])
    print_table("Targets", ["target", "value", "pass"],
                [[t["target"], f(t["value"]), "yes" if t["pass"] else "NO"] for t in targets])
    print(f"\ntotal {total:.0f} s, torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}")

    report = {
        "benchmark": "segmentation", "description": __doc__.splitlines()[0],
        "config": {**p, "knobs": BASE_KNOBS, "repeats": args.repeats, "threads": args.threads, "seed": args.seed,
                   "quick": args.quick},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "simpleitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()},
        "versions": package_versions(("mlimaging", "torch", "numpy", "scipy", "SimpleITK")),
        "unet_2d": two_d, "unet_3d": three_d, "region_growing": rg, "fcn_vs_patch_cnn": fcn,
        "targets": targets, "total_s": total,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")
    return 0 if all(t["pass"] for t in targets) else 1


if __name__ == "__main__":
    raise SystemExit(main())

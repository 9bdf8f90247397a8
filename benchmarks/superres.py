r"""Super-resolution targets of issue 18: x2 PSNR of the five networks against bicubic, ESPCN vs SRCNN speed.

==============  ===================================================================  ==============
case            what is measured                                                     target
==============  ===================================================================  ==============
<model>         PSNR (Y, border of 2 px cut, :func:`~mlimaging.inverse.superres.     >= bicubic
                sr_evaluate`) on the held-out images of ``split_images(seed=0)``      + 1.0 dB
                (centre crops), x2 bicubic degradation, after training on LR/HR
                patches of the other images within a process-CPU budget
best            the best model's PSNR                                                >= bicubic
                                                                                     + 2.0 dB
espcn-speed     inference of ESPCN vs SRCNN at the same output size (one LR image    >= 10x
                -> HR), median process CPU time of alternating repeats, same
                thread count
==============  ===================================================================  ==============

Training recipe (every model): Adam, L1 loss, batches of 16 HR patches of ``patch`` pixels (default 48)
from the 12 training images, at most ``patches`` per image; stopped after the epoch during which the
process CPU time spent in ``fit`` reached ``--cpu-budget`` seconds (one torch thread by default: the
benchmark was written on a 2-core machine shared with other jobs, so process CPU seconds are counted,
not wall time). DBPN is the residual variant (``residual=True``: bicubic added to its output), VDSR
clips the global gradient norm (fit's ``grad_clip``). ``--quick`` uses a 15 CPU-second budget, smaller
crops and fewer timing repeats (targets are then not expected to be met).

Why the speed target is hard: at x2 the paper's SRCNN (9-1-5, 64/32 maps) costs
:math:`81 \cdot 64 + 64 \cdot 32 + 25 \cdot 32 = 8032` multiply-adds per HR pixel, ESPCN (5-3-3, 64/32 maps,
:math:`s^2` output maps) :math:`(25 \cdot 64 + 9 \cdot 64 \cdot 32 + 9 \cdot 32 \cdot 4) / 4 = 5296`: a 1.5x
ratio (5.2x at x4). The paper's 10x+ comes from SRCNN's larger variants (9-5-5) and x3/x4 factors.

Writes ``benchmarks/results/superres.json`` (``superres-quick.json`` with ``--quick``) and prints a table.

Run: ``python benchmarks/superres.py`` (``--quick`` for a short check).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from _common import (  # benchmarks/ is on sys.path when a script runs
    CPUBudget,
    alternate,
    print_targets,
)
from mlimaging.inverse.superres import (
    bicubic_upscale,
    degrade,
    load_sr_image,
    modcrop,
    split_images,
    sr_evaluate,
    sr_pairs,
)
from mlimaging.models import create_model
from mlimaging.training import fit
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "superres.json"
SCALE = 2
TARGETS = {"gain": 1.0, "best_gain": 2.0, "speed": 10.0}
#: Per model: create_model keyword arguments, Adam learning rate, fit's grad_clip.
RECIPES: dict[str, dict[str, Any]] = {
    "srcnn": {"kwargs": {}, "lr": 1e-3, "grad_clip": None},
    "vdsr": {"kwargs": {}, "lr": 1e-4, "grad_clip": 1.0},
    "espcn": {"kwargs": {}, "lr": 1e-3, "grad_clip": None},
    "lapsrn": {"kwargs": {}, "lr": 1e-4, "grad_clip": None},
    "dbpn": {"kwargs": {"residual": True}, "lr": 1e-3, "grad_clip": None},
}


def _crop(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    size = min(size, h, w) - min(size, h, w) % SCALE
    top, left = (h - size) // 2, (w - size) // 2
    return img[..., top:top + size, left:left + size]


def _evaluate(net: torch.nn.Module, tests: list[torch.Tensor]) -> dict[str, float]:
    scores = []
    with torch.no_grad():
        for hr in tests:
            scores.append(sr_evaluate(net.eval()(degrade(hr[None], SCALE)), hr[None], scale=SCALE))
    return {k: statistics.fmean(s[k] for s in scores) for k in ("psnr", "ssim")}


def quality_cases(*, budget: float, patch: int, patches: int, crop: int) -> tuple[list[dict[str, Any]], dict]:
    train_names, test_names = split_images(seed=0)
    data = sr_pairs(train_names, scale=SCALE, patch=patch, max_patches=patches, seed=0)
    tests = [_crop(torch.from_numpy(modcrop(load_sr_image(n), SCALE).copy()), crop) for n in test_names]
    scores = [sr_evaluate(bicubic_upscale(degrade(hr[None], SCALE), SCALE), hr[None], scale=SCALE) for hr in tests]
    bicubic = {k: statistics.fmean(s[k] for s in scores) for k in ("psnr", "ssim")}
    rows = []
    for name, recipe in RECIPES.items():
        net = create_model(name, scale=SCALE, seed=0, **recipe["kwargs"])
        c0 = time.process_time()
        history = fit(net, data, loss=torch.nn.L1Loss(), metrics=(), epochs=10_000, batch_size=16, seed=0,
                      optimizer=lambda p, lr=recipe["lr"]: torch.optim.Adam(p, lr=lr), grad_clip=recipe["grad_clip"],
                      callbacks=[CPUBudget(budget)], progress=False)
        train_cpu = time.process_time() - c0
        score = _evaluate(net, tests)
        gain = score["psnr"] - bicubic["psnr"]
        rows.append({"case": name, "psnr": score["psnr"], "ssim": score["ssim"], "gain_db": gain,
                     "target_db": TARGETS["gain"], "passed": gain >= TARGETS["gain"], "epochs": len(history),
                     "final_loss": history.epochs[-1]["loss"], "train_cpu_s": train_cpu,
                     "parameters": sum(p.numel() for p in net.parameters()), **recipe})
        print(f"{name}: {score['psnr']:.2f} dB ({gain:+.2f} vs bicubic), {len(history)} epochs, "
              f"{train_cpu:.0f} CPU s", flush=True)
    best = max(rows, key=lambda r: r["psnr"])
    rows.append({"case": "best", "model": best["case"], "psnr": best["psnr"], "gain_db": best["gain_db"],
                 "target_db": TARGETS["best_gain"], "passed": best["gain_db"] >= TARGETS["best_gain"]})
    setup = {"train_images": train_names, "test_images": test_names, "n_patches": len(data), "patch": patch,
             "crop": crop, "bicubic": bicubic, "cpu_budget_s": budget}
    return rows, setup


def speed_case(*, size: int, repeats: int) -> dict[str, Any]:
    lr = torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0))
    nets = {name: create_model(name, scale=SCALE, seed=0).eval() for name in ("espcn", "srcnn")}

    def runner(net: torch.nn.Module) -> Any:
        def go() -> None:
            with torch.no_grad():
                net(lr)
        return go

    cpu, wall = alternate({k: runner(v) for k, v in nets.items()}, repeats=repeats)
    ratio = statistics.median(cpu["srcnn"]) / statistics.median(cpu["espcn"])
    return {"case": "espcn-speed", "ratio": ratio, "target": TARGETS["speed"], "passed": ratio >= TARGETS["speed"],
            "lr_size": size, "hr_size": SCALE * size, "repeats": repeats,
            "cpu_s": {k: statistics.median(v) for k, v in cpu.items()},
            "wall_s": {k: statistics.median(v) for k, v in wall.items()}}


def _cells(r: dict[str, Any]) -> tuple[str, str, str]:
    if r["case"] == "espcn-speed":
        return (f"{r['ratio']:.2f}x", f">= {r['target']:.0f}x",
                f"SRCNN {1000 * r['cpu_s']['srcnn']:.0f} ms vs ESPCN {1000 * r['cpu_s']['espcn']:.0f} ms CPU, "
                f"{r['lr_size']}->{r['hr_size']} px")
    if r["case"] == "best":
        return f"{r['gain_db']:+.2f} dB", f">= +{r['target_db']:.1f} dB", f"{r['model']} {r['psnr']:.2f} dB"
    return (f"{r['gain_db']:+.2f} dB", f">= +{r['target_db']:.1f} dB",
            f"{r['psnr']:.2f} dB, SSIM {r['ssim']:.4f}, {r['epochs']} ep, {r['train_cpu_s']:.0f} CPU s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every case (default 1)")
    parser.add_argument("--quick", action="store_true", help="short check: 15 CPU s per model, small crops")
    parser.add_argument("--cpu-budget", type=float, default=None, help="process CPU seconds of training per model "
                        "(default 120; 15 with --quick)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"default {RESULTS.name} (superres-quick.json with --quick)")
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS.with_name("superres-quick.json") if args.quick else RESULTS
    budget = args.cpu_budget or (15.0 if args.quick else 120.0)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows, setup = quality_cases(budget=budget, patch=48, patches=32 if args.quick else 64,
                                crop=96 if args.quick else 192)
    rows.append(speed_case(size=64 if args.quick else 128, repeats=3 if args.quick else 7))
    report = {"benchmark": "superres", "quick": args.quick, "scale": SCALE, "torch_threads": torch.get_num_threads(),
              **setup, "rows": rows, "all_passed": all(r["passed"] for r in rows),
              "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time(),
              "platform": platform.platform(), "processor": platform.processor(),
              "versions": package_versions(("mlimaging", "torch", "numpy"))}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=float))
    print_targets(f"Super-resolution x{SCALE} (issue 18){' --quick' if args.quick else ''}: {len(setup['test_images'])} "
                  f"held-out images ({', '.join(setup['test_images'])}), bicubic {setup['bicubic']['psnr']:.2f} dB, "
                  f"{budget:.0f} CPU s per model, {torch.get_num_threads()} torch thread(s)", rows, _cells,
                  summary=f"{'all targets met' if report['all_passed'] else 'some targets NOT met'}; wrote {args.output} "
                          f"({report['seconds']:.0f} s, {report['cpu_seconds']:.0f} CPU s)", width=160)


if __name__ == "__main__":
    main()

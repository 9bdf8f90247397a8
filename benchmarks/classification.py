"""Classification targets of issue 4: LeNet and logistic regression on mnist5k, a small CNN on digits,
and the training engine's overhead.

Each model is trained by :func:`mlimaging.training.fit` (Adam, cross-entropy, cosine learning-rate
decay to 0) on the training split, watched on the validation split, and scored once, with the
weights of the last epoch, on the test split (``load_dataset(..., seed=SEED)`` splits):

==================  ========  ================================================  ========
case                data      model and training                                target
==================  ========  ================================================  ========
lenet-mnist5k       mnist5k   LeNet-5, 20 epochs, random 2-px shifts            >= 97.0%
logreg-mnist5k      mnist5k   logistic regression on pixels, 15 epochs          >= 88.0%
cnn-digits          digits    LeNet-5 on the 8x8 digits resized to 28x28        >= 98.0%
                              (bilinear), 40 epochs, random 3-px shifts
engine overhead     synthetic ``fit`` vs a bare PyTorch loop, CPU time          <= 5%
==================  ========  ================================================  ========

Repeatability: the logistic-regression case is trained twice and must give bit-identical
weights (``--repeat-all`` does it for every case). The engine overhead reuses
``benchmarks/engine_overhead.py``'s model, data and loops (one torch thread there, as in that
script; the training cases use ``--threads``, 2 by default).

Writes ``benchmarks/results/classification.json`` and prints a table.

Run: ``python benchmarks/classification.py`` (``--quick`` for a smoke run with few epochs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_overhead  # noqa: E402  (benchmarks/engine_overhead.py)
from mlimaging.data.transforms import ShiftAugment  # noqa: E402
from mlimaging.experiments.classification import load_images  # noqa: E402
from mlimaging.models import create_model  # noqa: E402
from mlimaging.training import evaluate, fit  # noqa: E402
from mlimaging.utils import package_versions  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "classification.json"
CASES = [
    {"case": "lenet-mnist5k", "dataset": "mnist5k", "model": "lenet", "epochs": 20, "lr": 2e-3, "batch_size": 64,
     "augment_shift": 2, "image_size": 28, "target": 0.970},
    {"case": "logreg-mnist5k", "dataset": "mnist5k", "model": "logistic_regression", "epochs": 15, "lr": 1e-3,
     "batch_size": 64, "augment_shift": 0, "image_size": 28, "target": 0.880, "repeat": True},
    {"case": "cnn-digits", "dataset": "digits", "model": "lenet", "epochs": 40, "lr": 3e-3, "batch_size": 32,
     "augment_shift": 3, "image_size": 28, "target": 0.980},
]
OVERHEAD_TARGET_PCT = engine_overhead.TARGET_PCT


def weights_digest(model: nn.Module) -> str:
    """SHA-256 of all parameters and buffers, in state_dict order (equal digests: identical weights)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_case(case: dict, *, seed: int, epochs: int) -> dict:
    """Train one case and return its test accuracy, history and weights digest."""
    xtr, ytr, _ = load_images(case["dataset"], "train", seed=seed, image_size=case["image_size"])
    xva, yva, _ = load_images(case["dataset"], "val", seed=seed, image_size=case["image_size"])
    xte, yte, _ = load_images(case["dataset"], "test", seed=seed, image_size=case["image_size"])
    kwargs = {"input_shape": tuple(xtr.shape[1:])} if case["model"] == "logistic_regression" else {}
    model = create_model(case["model"], seed=seed, **kwargs)
    train = ShiftAugment(xtr, ytr, max_shift=case["augment_shift"]) if case["augment_shift"] else TensorDataset(xtr, ytr)
    t0 = time.perf_counter()
    history = fit(model, train, TensorDataset(xva, yva), loss=nn.CrossEntropyLoss(),
                  optimizer=lambda p: torch.optim.Adam(p, lr=case["lr"]),
                  scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs),
                  epochs=epochs, batch_size=case["batch_size"], seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    test = evaluate(model, TensorDataset(xte, yte), metrics=("accuracy",))
    return {"test_accuracy": test["accuracy"], "val_accuracy": history["val_accuracy"][-1], "seconds": seconds,
            "n_train": len(ytr), "n_test": len(yte), "parameters": sum(p.numel() for p in model.parameters()),
            "history": history.epochs, "weights_sha256": weights_digest(model)}


def engine_overhead_pct(*, repeats: int, n_train: int, n_val: int, epochs: int) -> dict:
    """``fit`` vs the bare loop of ``engine_overhead.py``: median CPU (and wall) time, alternating order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train, val = engine_overhead.make_data(n_train, 0), engine_overhead.make_data(n_val, 1)
        runners = {"bare loop": engine_overhead.bare_loop, "fit": engine_overhead.engine}
        kw = {"epochs": epochs, "batch_size": 64, "seed": 0, "device": "cpu"}
        for run in runners.values():  # warm-up
            run(engine_overhead.make_model(), train, val, **{**kw, "epochs": 1})
        cpu: dict[str, list[float]] = {k: [] for k in runners}
        wall: dict[str, list[float]] = {k: [] for k in runners}
        for r in range(repeats):
            for name in (list(runners) if r % 2 == 0 else list(reversed(runners))):
                model = engine_overhead.make_model()
                t0, c0 = time.perf_counter(), time.process_time()
                runners[name](model, train, val, **kw)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    finally:
        torch.set_num_threads(threads)
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    med_wall = {k: statistics.median(v) for k, v in wall.items()}
    return {"overhead_pct": 100.0 * (med_cpu["fit"] / med_cpu["bare loop"] - 1.0),
            "overhead_wall_pct": 100.0 * (med_wall["fit"] / med_wall["bare loop"] - 1.0),
            "median_cpu_s": med_cpu, "median_wall_s": med_wall, "cpu_s": cpu, "wall_s": wall,
            "config": {"repeats": repeats, "n_train": n_train, "n_val": n_val, "epochs": epochs, "threads": 1}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for the training cases")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 epochs per case, small overhead run")
    parser.add_argument("--repeat-all", action="store_true", help="train every case twice and compare the weights")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"default {RESULTS.name} (classification-quick.json with --quick)")
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS.with_name("classification-quick.json") if args.quick else RESULTS
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    for case in CASES:
        epochs = 2 if args.quick else case["epochs"]
        result = train_case(case, seed=args.seed, epochs=epochs)
        if case.get("repeat") or args.repeat_all:
            again = train_case(case, seed=args.seed, epochs=epochs)
            result["repeat_identical"] = (again["weights_sha256"] == result["weights_sha256"]
                                          and again["test_accuracy"] == result["test_accuracy"])
        rows.append({**{k: v for k, v in case.items() if k != "repeat"}, "epochs": epochs, "seed": args.seed,
                     **result, "passed": result["test_accuracy"] >= case["target"]})
    overhead = engine_overhead_pct(repeats=3 if args.quick else 5, n_train=1024 if args.quick else 4096,
                                   n_val=256 if args.quick else 1024, epochs=2)
    report = {
        "benchmark": "classification",
        "quick": args.quick,
        "seed": args.seed,
        "torch_threads": args.threads,
        "cases": rows,
        "engine_overhead": {**overhead, "target_pct": OVERHEAD_TARGET_PCT,
                            "passed": overhead["overhead_pct"] <= OVERHEAD_TARGET_PCT},
        "seconds": time.perf_counter() - started,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "versions": package_versions(("mlimaging", "torch", "numpy")),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Classification benchmark (seed {args.seed}, {args.threads} torch threads"
                        f"{', QUICK' if args.quick else ''})")
    for col in ("case", "train/test", "epochs", "result", "target", "met", "seconds"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for r in rows:
        table.add_row(f"{r['model']} on {r['dataset']}", f"{r['n_train']}/{r['n_test']}", str(r["epochs"]),
                      f"{100 * r['test_accuracy']:.2f}%", f">= {100 * r['target']:.1f}%", "yes" if r["passed"] else "NO",
                      f"{r['seconds']:.1f}")
    table.add_row("engine overhead (fit vs bare loop)", f"{overhead['config']['n_train']}/-", "2",
                  f"{overhead['overhead_pct']:+.1f}% CPU", f"<= {OVERHEAD_TARGET_PCT:.0f}%",
                  "yes" if report["engine_overhead"]["passed"] else "NO", f"{sum(overhead['median_wall_s'].values()):.1f}")
    console = Console()
    console.print(table)
    for r in rows:
        if "repeat_identical" in r:
            console.print(f"{r['case']}: trained twice with seed {r['seed']}: "
                          f"{'bit-identical weights' if r['repeat_identical'] else 'DIFFERENT weights'}")
    console.print(f"engine overhead wall time {overhead['overhead_wall_pct']:+.1f}%; total {report['seconds']:.0f} s; "
                  f"wrote {args.output}")


if __name__ == "__main__":
    main()

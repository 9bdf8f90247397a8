"""Training-engine overhead: ``mlimaging.training.fit`` against a bare PyTorch loop.

The same small CNN (two conv + pool blocks and a linear layer), the same synthetic
1 x 28 x 28 ten-class data (a few thousand images), the same optimizer, batch size and
number of epochs, and the same per-epoch work (training loss, validation loss and
accuracy) go through both: ``fit(progress=False)`` without checkpoints, and a hand-written
loop of ``zero_grad / forward / loss / backward / step``. The two are timed in one process,
alternating (bare, fit, fit, bare, ...) over several repeats, and the medians are compared.
Target: fit at most 5% slower than the bare loop.

Both wall-clock time and the process's CPU time are recorded. By default torch uses one
thread, and the verdict uses CPU time, which is not inflated by other programs competing
for the cores (wall time is reported next to it; on an idle machine the two agree).

Writes ``benchmarks/results/engine_overhead.json`` and prints a table.

Run: ``python benchmarks/engine_overhead.py`` (``--quick`` for a smaller run).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlimaging.training import fit
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "engine_overhead.json"
TARGET_PCT = 5.0


def make_data(n: int, seed: int) -> TensorDataset:
    """Ten classes of 28 x 28 images: a bright 7 x 7 square at one of ten places, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = 0.3 * torch.rand(n, 1, 28, 28, generator=g)
    for k in range(10):
        r, c = divmod(k, 5)
        x[y == k, 0, 3 + 12 * r: 10 + 12 * r, 1 + 5 * c: 8 + 5 * c] += 0.7
    return TensorDataset(x, y)


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 5 * 5, 10),
    )


def make_optimizer(params):
    return torch.optim.SGD(params, lr=0.05, momentum=0.9)


def bare_loop(model, train, val, *, epochs, batch_size, seed, device):
    """The reference: what one writes by hand, with the same per-epoch records as fit."""
    model.to(device)
    optimizer = make_optimizer(model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=g)
    val_loader = DataLoader(val, batch_size=batch_size)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=device)
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            total += loss.detach() * x.shape[0]
        model.eval()
        val_total = torch.zeros((), dtype=torch.float64, device=device)
        preds, targets = [], []
        with torch.no_grad():
            for x, y in val_loader:
                x, y = x.to(device), y.to(device)
                out = model(x)
                val_total += loss_fn(out, y) * x.shape[0]
                preds.append(out.argmax(1))
                targets.append(y)
        acc = (torch.cat(preds) == torch.cat(targets)).double().mean()
        history.append({"epoch": epoch, "loss": float(total) / len(train), "val_loss": float(val_total) / len(val),
                        "val_accuracy": float(acc)})
    return history


def engine(model, train, val, *, epochs, batch_size, seed, device):
    h = fit(model, train, val, loss=nn.CrossEntropyLoss(), optimizer=make_optimizer, epochs=epochs,
            batch_size=batch_size, seed=seed, device=device, metrics=("accuracy",), progress=False)
    return h.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=4096)
    parser.add_argument("--n-val", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="1,024 training images, 3 repeats")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.quick:
        args.n_train, args.n_val, args.repeats = 1024, 256, 3
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    train, val = make_data(args.n_train, 0), make_data(args.n_val, 1)
    runners = {"bare loop": bare_loop, "fit": engine}
    kw = dict(epochs=args.epochs, batch_size=args.batch_size, seed=0, device=args.device)

    engine(make_model(), train, val, **{**kw, "epochs": 1})  # warm-up (allocator, thread pools)
    bare_loop(make_model(), train, val, **{**kw, "epochs": 1})
    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    final: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        order = list(runners) if r % 2 == 0 else list(reversed(runners))
        for name in order:
            model = make_model()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            final[name] = runners[name](model, train, val, **kw)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    overhead_wall = 100.0 * (med["fit"] / med["bare loop"] - 1.0)
    overhead = 100.0 * (med_cpu["fit"] / med_cpu["bare loop"] - 1.0)
    steps = args.epochs * -(-args.n_train // args.batch_size)
    report = {
        "benchmark": "engine_overhead",
        "description": "fit(progress=False, no checkpoints) vs a bare PyTorch loop; same model, data, epochs",
        "config": {k: v for k, v in vars(args).items() if k != "output"},
        "torch_threads": torch.get_num_threads(),
        "steps_per_run": steps,
        "wall_s": times,
        "cpu_s": cpu,
        "median_wall_s": med,
        "median_cpu_s": med_cpu,
        "cpu_ms_per_step": {k: 1000 * v / steps for k, v in med_cpu.items()},
        "overhead_pct": overhead,
        "overhead_wall_pct": overhead_wall,
        "target_pct": TARGET_PCT,
        "within_target": overhead <= TARGET_PCT,
        "final_val_accuracy": {k: v[-1]["val_accuracy"] for k, v in final.items()},
        "platform": platform.platform(),
        "processor": platform.processor(),
        "versions": package_versions(("mlimaging", "torch", "numpy")),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Engine overhead: {args.n_train} images 1x28x28, {args.epochs} epochs, batch "
                        f"{args.batch_size}, {args.device}, median of {args.repeats}")
    for col in ("runner", "CPU s (median)", "wall s (median)", "wall min-max", "CPU ms/step", "val acc"):
        table.add_column(col, justify="right" if col != "runner" else "left")
    for name in runners:
        t = times[name]
        table.add_row(name, f"{med_cpu[name]:.3f}", f"{med[name]:.3f}", f"{min(t):.3f}-{max(t):.3f}",
                      f"{1000 * med_cpu[name] / steps:.2f}", f"{final[name][-1]['val_accuracy']:.3f}")
    console = Console()
    console.print(table)
    verdict = "within" if overhead <= TARGET_PCT else "ABOVE"
    console.print(f"fit overhead: {overhead:+.1f}% CPU time ({verdict} the {TARGET_PCT:.0f}% target), "
                  f"{overhead_wall:+.1f}% wall time; {torch.get_num_threads()} thread(s); wrote {args.output}")


if __name__ == "__main__":
    main()

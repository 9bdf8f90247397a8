"""DP-SGD targets of issue 15: throughput against Opacus, accuracy at ε = 3 on mnist5k, ε against Opacus.

============  ======================================================================  ==========
case          what is measured                                                        target
============  ======================================================================  ==========
throughput    DP-SGD training images per CPU second of the LeNet of                   >= 1.0x
              ``mlimaging.models`` on the mnist5k training digits, logical batch
              256 (Poisson sampling, σ = 1, C = 1, SGD), one epoch through
              ``fit`` against Opacus's ``PrivacyEngine.make_private`` (hooks mode,
              its default) in its own loop, same thread count, alternating repeats
              (median of per-run images / CPU s); Opacus's ghost clipping
              (``grad_sample_mode="ghost"``) is reported beside when it runs
accuracy      test accuracy (1,000 mnist5k test digits) of a DP-SGD model trained     >= 90%
              through ``make_private(...).fit`` on the 3,500 training digits at
              ε = 3, δ = 1e-5 (σ calibrated by the RDP accountant for the recipe's
              epochs; the recipe was chosen on the validation digits)
epsilon       ε after the accuracy run from our accountant against Opacus's           6 digits
              ``RDPAccountant`` for the same (q, σ, steps)
============  ======================================================================  ==========

The recipe follows Tramer & Boneh (2021, arXiv:2011.11660): the library's ``dp_cnn``
(:mod:`mlimaging.models.dp_cnn`: a small tanh CNN with GroupNorm and the input standardised inside),
large batches, a small clipping norm, SGD with momentum and a cosine learning rate; see ``RECIPE``
and, for the alternatives measured on the validation digits, ``TRIED``.

By default torch uses one thread (process CPU time is what the ratio counts on a shared
machine). ``--quick`` times 2 repeats and trains 2 epochs (the accuracy target is then not
expected to be met). ``--only accuracy`` (or ``throughput``) runs one case and keeps the other
cases' rows of the existing results file.

Writes ``benchmarks/results/privacy.json`` (``privacy-quick.json`` with ``--quick``) and prints a table.

Run: ``python benchmarks/privacy.py`` (``--quick`` for a short check).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from _common import alternate, install_torchvision_shim, print_targets  # benchmarks/ is on sys.path
from mlimaging.data import load_dataset
from mlimaging.models import LeNet, create_model
from mlimaging.privacy.dp import make_private
from mlimaging.training import evaluate
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "privacy.json"
TARGETS = {"throughput": 1.0, "accuracy": 0.90, "epsilon_digits": 6}
SPEED = {"batch_size": 256, "noise_multiplier": 1.0, "max_grad_norm": 1.0, "lr": 0.05}

#: The ε = 3 recipe (chosen on the 500 validation digits, see TRIED).
RECIPE: dict[str, Any] = {"model": "dp_cnn", "norm": "group", "batch_size": 512, "epochs": 40, "lr": 2.0, "momentum": 0.9,
                          "max_grad_norm": 0.1, "scheduler": "cosine", "ema": None, "epsilon": 3.0, "delta": 1e-5,
                          "seed": 0}

#: Settings measured (one seed each, eps = 3, SGD momentum 0.9, 40 epochs unless said) with their validation and
#: test accuracy; the benchmark itself runs only RECIPE. ``tanh-cnn`` is ``dp_cnn`` with ``norm="none"``, ``tanh-gn-cnn``
#: is ``dp_cnn`` (same weights for a seed); ``small`` / ``mid`` were two strided 5x5 tanh convolutions of 8 and 16 (6k
#: parameters) or 16 and 32 channels (18k) and a linear classifier, ``-gn`` with GroupNorm (4 groups), since removed.
TRIED: list[dict[str, Any]] = [
    {"model": "tanh-small", "batch_size": 512, "lr": 2.0, "max_grad_norm": 0.1, "val": 0.914, "test": 0.881},
    {"model": "tanh-cnn", "batch_size": 512, "lr": 2.0, "max_grad_norm": 0.1, "val": 0.884, "test": 0.876},
    {"model": "tanh-gn-small", "batch_size": 512, "lr": 2.0, "max_grad_norm": 0.1, "val": 0.906, "test": 0.893},
    {"model": "tanh-small", "batch_size": 1024, "epochs": 60, "lr": 4.0, "max_grad_norm": 0.1, "val": 0.872,
     "test": 0.857},
    {"model": "tanh-gn-small", "batch_size": 512, "lr": 2.0, "max_grad_norm": 0.1, "scheduler": "cosine",
     "val": 0.902, "test": 0.892},
    {"model": "tanh-gn-small", "batch_size": 512, "lr": 10.0, "max_grad_norm": 0.02, "scheduler": "cosine",
     "val": 0.902, "test": 0.891},
    {"model": "tanh-gn-small", "batch_size": 512, "lr": 2.0, "max_grad_norm": 0.1, "scheduler": "cosine",
     "ema": 0.95, "val": 0.902, "test": 0.892},
    {"model": "tanh-gn-mid", "batch_size": 512, "lr": 2.0, "max_grad_norm": 0.1, "scheduler": "cosine",
     "val": 0.916, "test": 0.897},
    {"model": "tanh-gn-cnn", "batch_size": 512, "lr": 2.0, "max_grad_norm": 0.1, "scheduler": "cosine",
     "val": 0.918, "test": 0.903},
    {"model": "tanh-gn-mid", "batch_size": 512, "epochs": 30, "lr": 2.0, "max_grad_norm": 0.1,
     "scheduler": "cosine", "val": 0.910, "test": 0.889},
]


class ParamEMA:
    """fit callback: exponential moving average of the parameters after every step, copied into the
    model when training ends (post-processing of the private iterates: no privacy cost)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model, self.decay = model, decay
        self.shadow = [p.detach().clone() for p in model.parameters()]

    def on_batch_end(self, state: Any) -> None:
        with torch.no_grad():
            for s, p in zip(self.shadow, self.model.parameters(), strict=True):
                s.mul_(self.decay).add_(p, alpha=1 - self.decay)

    def on_fit_end(self, state: Any) -> None:
        with torch.no_grad():
            for s, p in zip(self.shadow, self.model.parameters(), strict=True):
                p.copy_(s)


# ------------------------------------------------------------------------------------------ throughput
def throughput_case(train: Any, *, repeats: int) -> dict[str, Any]:
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader

    b, sigma, c, lr = SPEED["batch_size"], SPEED["noise_multiplier"], SPEED["max_grad_norm"], SPEED["lr"]
    counts: dict[str, list[int]] = {}

    torch.manual_seed(0)
    ours_model = LeNet()
    private = make_private(ours_model, torch.optim.SGD(ours_model.parameters(), lr=lr), train, batch_size=b,
                           noise_multiplier=sigma, max_grad_norm=c, seed=0)

    def ours() -> None:
        seen = []
        private.fit(epochs=1, progress=False, metrics=(),
                    callbacks=[_Counter(seen)])
        counts.setdefault("mlimaging", []).append(sum(seen))

    def opacus_runner(mode: str):
        torch.manual_seed(0)
        model = LeNet()
        engine = PrivacyEngine(accountant="rdp")
        criterion = nn.CrossEntropyLoss()
        kw: dict[str, Any] = {"criterion": criterion, "grad_sample_mode": mode} if mode == "ghost" else {}
        out = engine.make_private(module=model, optimizer=torch.optim.SGD(model.parameters(), lr=lr),
                                  data_loader=DataLoader(train, batch_size=b), noise_multiplier=sigma,
                                  max_grad_norm=c, poisson_sampling=True, **kw)
        if mode == "ghost":
            net, opt, criterion, loader = out
        else:
            net, opt, loader = out
        name = f"opacus-{mode}"

        def run() -> None:
            net.train()
            n = 0
            for x, y in loader:
                opt.zero_grad(set_to_none=True)
                loss = criterion(net(x), y)
                loss.backward()
                opt.step()
                n += len(x)
            counts.setdefault(name, []).append(n)

        return name, run

    runners = {"mlimaging": ours}
    notes: dict[str, str] = {}
    for mode in ("hooks", "ghost"):
        try:
            name, run = opacus_runner(mode)
            run()  # does it run at all?
            counts.pop(name)
            runners[name] = run
        except Exception as exc:  # ghost clipping may not support a layer: report, do not fail
            notes[f"opacus-{mode}"] = f"{type(exc).__name__}: {exc}"[:300]
    cpu, wall = alternate(runners, repeats=repeats)
    rates, wall_rates = {}, {}
    for k in runners:
        n = counts[k][1:]  # the first count is alternate's warm-up
        rates[k] = statistics.median(ni / t for ni, t in zip(n, cpu[k], strict=True))
        wall_rates[k] = statistics.median(ni / t for ni, t in zip(n, wall[k], strict=True))
    ratio = rates["mlimaging"] / rates["opacus-hooks"]
    return {"case": "throughput", "value": ratio, "target": TARGETS["throughput"],
            "passed": ratio >= TARGETS["throughput"], "images_per_cpu_s": rates, "images_per_wall_s": wall_rates,
            "ratio_ghost": rates["mlimaging"] / rates["opacus-ghost"] if "opacus-ghost" in rates else None,
            "wall_ratio": wall_rates["mlimaging"] / wall_rates["opacus-hooks"], "repeats": repeats,
            "notes": notes, **SPEED}


class _Counter:
    """fit callback: the number of images of each batch."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def on_batch_end(self, state: Any) -> None:
        self.seen.append(len(state.target))


# ------------------------------------------------------------------------------------------ accuracy
def accuracy_cases(train: Any, val: Any, test: Any, *, quick: bool) -> list[dict[str, Any]]:
    from opacus.accountants import RDPAccountant

    r = dict(RECIPE, epochs=2) if quick else dict(RECIPE)
    torch.manual_seed(r["seed"])
    model = create_model(r["model"], norm=r["norm"])  # after manual_seed: the weights of earlier runs
    private = make_private(model, lambda p: torch.optim.SGD(p, lr=r["lr"], momentum=r["momentum"]), train,
                           batch_size=r["batch_size"], target_epsilon=r["epsilon"], target_delta=r["delta"],
                           epochs=r["epochs"], max_grad_norm=r["max_grad_norm"], seed=r["seed"])
    kw: dict[str, Any] = {}
    if r["scheduler"] == "cosine":
        kw["scheduler"] = lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, r["epochs"])
    if r["ema"]:
        kw["callbacks"] = [ParamEMA(model, r["ema"])]
    c0, t0 = time.process_time(), time.perf_counter()
    h = private.fit(val, progress=False, **kw)
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    acc = evaluate(model, test)["accuracy"]
    val_acc = evaluate(model, val)["accuracy"]  # of the final (averaged) weights
    steps = private.step.steps
    ref = RDPAccountant()
    ref.history = [(private.noise_multiplier, private.sample_rate, steps)]
    eps_ref = float(ref.get_epsilon(r["delta"]))
    eps = float(h["epsilon"][-1])
    same = f"{eps:.6g}" == f"{eps_ref:.6g}"
    return [
        {"case": "accuracy", "value": acc, "target": TARGETS["accuracy"], "passed": acc >= TARGETS["accuracy"],
         "val_accuracy": val_acc, "epsilon": eps, "noise_multiplier": private.noise_multiplier,
         "sample_rate": private.sample_rate, "steps": steps, "clipped_fraction_last": h["clipped_fraction"][-1],
         "params": sum(p.numel() for p in model.parameters()), "train_cpu_s": cpu, "train_wall_s": wall,
         "recipe": r},
        {"case": "epsilon", "value": eps, "opacus": eps_ref, "relative_difference": abs(eps - eps_ref) / eps_ref,
         "target": TARGETS["epsilon_digits"], "passed": same, "sample_rate": private.sample_rate,
         "noise_multiplier": private.noise_multiplier, "steps": steps, "delta": r["delta"]},
    ]


def _cells(r: dict[str, Any]) -> tuple[str, str, str]:
    if r["case"] == "throughput":
        rates = ", ".join(f"{k} {v:.0f}" for k, v in r["images_per_cpu_s"].items())
        ghost = f"; vs ghost {r['ratio_ghost']:.2f}x" if r["ratio_ghost"] is not None else "; ghost did not run"
        return (f"{r['value']:.2f}x", f">= {r['target']:.1f}x",
                f"images/CPU s: {rates}{ghost} (wall ratio {r['wall_ratio']:.2f}x, {r['repeats']} repeats)")
    if r["case"] == "accuracy":
        return (f"{100 * r['value']:.1f}%", f">= {100 * r['target']:.0f}%",
                f"eps {r['epsilon']:.3f}, sigma {r['noise_multiplier']:.3f}, q {r['sample_rate']:.4f}, "
                f"{r['steps']} steps, val {100 * r['val_accuracy']:.1f}%, {r['params']} params, "
                f"{r['train_cpu_s']:.0f} CPU s")
    return (f"{r['value']:.6g}", "6 digits", f"Opacus RDP {r['opacus']:.6g} (relative difference "
            f"{r['relative_difference']:.1e}) for q {r['sample_rate']:.4f}, sigma {r['noise_multiplier']:.4f}, "
            f"{r['steps']} steps, delta {r['delta']:g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every case (default 1)")
    parser.add_argument("--quick", action="store_true", help="short check: 2 timing repeats, 2 training epochs")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"default {RESULTS.name} (privacy-quick.json with --quick)")
    parser.add_argument("--only", choices=("throughput", "accuracy"), default=None,
                        help="run one case (accuracy includes epsilon); the other rows are kept from --output")
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS.with_name("privacy-quick.json") if args.quick else RESULTS
    torch.set_num_threads(args.threads)
    install_torchvision_shim()
    warnings.filterwarnings("ignore", module="opacus")  # its secure-RNG and full-backward-hook notices
    warnings.filterwarnings("ignore", message=".*Full backward hook.*")
    started = time.perf_counter()
    train, val, test = (load_dataset("mnist5k", split=s) for s in ("train", "val", "test"))
    rows = [throughput_case(train, repeats=2 if args.quick else 5)] if args.only != "accuracy" else []
    rows += accuracy_cases(train, val, test, quick=args.quick) if args.only != "throughput" else []
    kept: list[str] = []
    if args.only is not None and args.output.exists():  # the other cases' rows of the earlier full run
        ran = {r["case"] for r in rows}
        old = [r for r in json.loads(args.output.read_text())["rows"] if r["case"] not in ran]
        kept = [r["case"] for r in old]
        rows = sorted(rows + old, key=lambda r: ("throughput", "accuracy", "epsilon").index(r["case"]))
    report = {"benchmark": "privacy", "only": args.only, "rows_kept_from_earlier_run": kept, "quick": args.quick, "torch_threads": torch.get_num_threads(),
              "n_train": len(train), "n_test": len(test), "rows": rows, "tried": TRIED,
              "all_passed": all(r["passed"] for r in rows), "seconds": time.perf_counter() - started,
              "cpu_seconds": time.process_time(), "platform": platform.platform(),
              "processor": platform.processor(), "versions": package_versions(("mlimaging", "torch", "numpy", "opacus"))}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=float))
    print_targets(f"Privacy (issue 15){' --quick' if args.quick else ''}: DP-SGD on mnist5k ({len(train)} train, "
                  f"{len(test)} test), {torch.get_num_threads()} torch thread(s)", rows, _cells,
                  summary=f"{'all targets met' if report['all_passed'] else 'some targets NOT met'}; wrote {args.output} "
                          f"({report['seconds']:.0f} s, {report['cpu_seconds']:.0f} CPU s)", width=170)


if __name__ == "__main__":
    main()

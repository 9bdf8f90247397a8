"""Generative targets of issue 16: a DCGAN on mnist5k judged by FID in our features, Morpho-MNIST speed, deep SCM.

==============  ===================================================================  ==============
case            what is measured                                                     target
==============  ===================================================================  ==============
dcgan-fid       FID of 500 samples of a class-conditional DCGAN (:data:`RECIPE`:     <= 5x
                non-saturating loss, EMA of the generator's weights, labels drawn
                i.i.d. uniform; at most ``cpu_budget_s`` of process CPU time, one
                torch thread) against 500 test digits, in the 64 features of
                our digit classifier (:func:`~mlimaging.generative.quality.
                mnist_feature_extractor`), as a multiple of the real-vs-real FID of
                the two halves of the test split (same sizes)
dcgan-noise     the same FID as a fraction of the FID of Gaussian-noise images        <= 0.1
                (the real pixels' mean and std, clipped) against the same digits
dcgan-classes   smallest fraction of the 500 samples that our classifier assigns     >= 5%
                to one digit class (no class dropped)
measure-speed   :func:`mlimaging.generative.morphomnist.measure` on the 1,000 test   >= 500 img/s
                digits, in one batch: images per second of process CPU time (the
                budget of 2 cores counts both), wall time recorded beside
scm-thickness   deep SCM (``_scm_case.scm_rows``, trained within ``--scm-budget``    <= 0.3 px
                CPU s): MAE of the measured thickness of do(t) counterfactuals of
                held-out ``causal_mnist`` against the target t (true SCM beside)
scm-intensity   their measured intensity against the true mechanism                  <= 10 grey levels
==============  ===================================================================  ==============

The deep SCM rows run in a child process beside the DCGAN (each with its own CPU clock and
budget; ``--no-scm`` leaves them out).

The training budget counts process CPU seconds (``time.process_time``) with torch fixed to one
thread, because the benchmark was written on a 2-core machine shared with other jobs: wall time
there measures the neighbours. ``--budget`` changes it (900 s = the 15 CPU minutes of the target).
``--quick`` trains for 20 CPU seconds (the targets are then not expected to be met).

Writes ``benchmarks/results/generative.json`` (``generative-quick.json`` with ``--quick``) and prints
a table.

Run: ``python benchmarks/generative.py`` (``--quick`` for a short check).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from _common import CPUBudget, print_targets  # benchmarks/ is on sys.path when a script runs
from mlimaging.data import load_dataset
from mlimaging.generative.gan import DCGANDiscriminator, DCGANGenerator, GANStep
from mlimaging.generative.quality import class_fractions, fid_baselines, mnist_feature_extractor
from mlimaging.training import fit
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "generative.json"
TARGETS = {"dcgan-fid": 5.0, "dcgan-noise": 0.1, "dcgan-classes": 0.05, "measure-speed": 500.0, "scm-thickness": 0.3,
           "scm-intensity": 10.0}

#: Class-conditional DCGAN (Radford et al. 2016; one-hot labels into G and D, Mirza & Osindero 2014) at
#: 28 px, width 32: Adam with learning rate 4e-4 (twice the paper's 2e-4: better at a fixed CPU budget in
#: the pilots), beta1 0.5, for both networks, batch 64, the non-saturating loss; samples from the EMA of
#: the generator's weights (decay 0.995) with labels drawn i.i.d. uniform over the 10 digits.
RECIPE: dict[str, Any] = {"latent_dim": 100, "width": 32, "lr": 4e-4, "d_lr": None, "betas": (0.5, 0.999),
                          "batch_size": 64, "loss": "non_saturating", "ema": 0.995, "conditional": True,
                          "d_norm": "batch", "epochs": 1000, "seed": 0, "samples": 500, "eval_every": 20}


class EpochLog:
    """fit callback: every ``every`` epochs, the FID of the EMA generator on stderr (and in ``self.rows``)."""

    def __init__(self, step: GANStep, xte: torch.Tensor, net: Any, every: int) -> None:
        self.step, self.xte, self.net, self.every = step, xte, net, every
        self.start, self.rows = time.process_time(), []

    def on_epoch_end(self, state: Any) -> None:
        if state.epoch % self.every or self.step.ema_generator is None:
            return
        fake = _sample(self.step.ema_generator, 500, seed=99)
        r = fid_baselines(self.xte, fake, feature_extractor=self.net.features)
        row = {"epoch": state.epoch, "cpu_s": time.process_time() - self.start, "fid": r["fid"],
               "d_loss": state.logs["d_loss"], "g_loss": state.logs["g_loss"]}
        self.rows.append(row)
        print(f"epoch {state.epoch}: FID {r['fid']:.2f} (real-real {r['real_vs_real']:.2f}), d_loss "
              f"{row['d_loss']:.3f}, g_loss {row['g_loss']:.3f}, {row['cpu_s']:.0f} CPU s", file=sys.stderr, flush=True)


def _sample(G: Any, n: int, *, seed: int) -> torch.Tensor:
    """``n`` samples of ``G`` in eval mode; a class-conditional ``G`` gets i.i.d. uniform labels (same seed)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, G.num_classes, (n,), generator=torch.Generator().manual_seed(seed + 10_000)) \
        if G.num_classes else None
    was = G.training
    G.eval()
    try:
        return G.sample(n, generator=g, labels=labels)
    finally:
        G.train(was)


def dcgan_cases(budget: float, recipe: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    r = {**RECIPE, **(recipe or {})}
    c0 = time.process_time()
    net = mnist_feature_extractor(seed=0)
    feature_cpu = time.process_time() - c0
    train = load_dataset("mnist5k", split="train", seed=0)
    xtr, ytr = train.images.float(), torch.as_tensor(train.targets, dtype=torch.long)
    xte = load_dataset("mnist5k", split="test", seed=0).images.float()  # sorted by class: halves interleave
    torch.manual_seed(r["seed"])
    k = 10 if r["conditional"] else None
    G = DCGANGenerator(latent_dim=r["latent_dim"], width=r["width"], num_classes=k)
    D = DCGANDiscriminator(width=r["width"], num_classes=k, norm=r["d_norm"])
    g_lr, d_lr = r["lr"], r["d_lr"] or r["lr"]
    step = GANStep(D, loss=r["loss"], d_optimizer=lambda p: torch.optim.Adam(p, lr=d_lr, betas=r["betas"]),
                   ema=r["ema"], seed=r["seed"])
    log = EpochLog(step, xte, net, r["eval_every"])
    data = TensorDataset(xtr, ytr) if k else TensorDataset(xtr)
    c0, t0 = time.process_time(), time.perf_counter()
    h = fit(G, data, step=step, optimizer=lambda p: torch.optim.Adam(p, lr=g_lr, betas=r["betas"]), metrics=(),
            epochs=r["epochs"], batch_size=r["batch_size"], seed=r["seed"], progress=False,
            callbacks=[CPUBudget(budget), log])
    train_cpu, train_wall = time.process_time() - c0, time.perf_counter() - t0
    fake = _sample(step.ema_generator, r["samples"], seed=r["seed"] + 1)
    q = fid_baselines(xte, fake, feature_extractor=net.features, seed=r["seed"])
    raw = fid_baselines(xte, _sample(G, r["samples"], seed=r["seed"] + 1), feature_extractor=net.features,
                        seed=r["seed"])
    fractions = class_fractions(fake, net)
    common = {"epochs_run": len(h), "train_cpu_s": train_cpu, "train_wall_s": train_wall, "budget_cpu_s": budget,
              "recipe": r, "fid": q["fid"], "real_vs_real": q["real_vs_real"], "noise": q["noise"],
              "precision": q["precision"], "recall": q["recall"], "fid_last_iterate": raw["fid"],
              "feature_net_test_accuracy": net.test_accuracy, "feature_net_cpu_s": feature_cpu, "n": q["n"]}
    ratio, noise_ratio = q["fid"] / q["real_vs_real"], q["fid"] / q["noise"]
    within = train_cpu <= 900.0 + 60.0  # the budget is checked after each epoch (~10 CPU s)
    return [
        {"case": "dcgan-fid", "value": ratio, "target": TARGETS["dcgan-fid"],
         "passed": ratio <= TARGETS["dcgan-fid"] and within, **common, "history": log.rows},
        {"case": "dcgan-noise", "value": noise_ratio, "target": TARGETS["dcgan-noise"],
         "passed": noise_ratio <= TARGETS["dcgan-noise"] and within, "fid": q["fid"], "noise": q["noise"]},
        {"case": "dcgan-classes", "value": min(fractions), "target": TARGETS["dcgan-classes"],
         "passed": min(fractions) >= TARGETS["dcgan-classes"], "fractions": fractions},
    ]


def measure_case(repeats: int) -> dict[str, Any]:
    try:
        from mlimaging.generative.morphomnist import measure
    except ImportError as exc:
        return {"case": "measure-speed", "value": None, "target": TARGETS["measure-speed"], "passed": False,
                "skipped": f"mlimaging.generative.morphomnist.measure is not importable yet ({exc})"}
    x = load_dataset("mnist5k", split="test", seed=0).images.float()
    measure(x[:16])  # warm-up
    cpu, wall = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = measure(x)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
    best_cpu, best_wall = min(cpu), min(wall)
    rate = len(x) / best_cpu
    return {"case": "measure-speed", "value": rate, "target": TARGETS["measure-speed"],
            "passed": rate >= TARGETS["measure-speed"], "images": len(x), "cpu_s": cpu, "wall_s": wall,
            "images_per_wall_s": len(x) / best_wall, "keys": sorted(out) if isinstance(out, dict) else None}


def scm_cases(*, quick: bool, cpu_seconds: float) -> list[dict[str, Any]]:
    """The deep SCM rows of ``_scm_case.scm_rows`` (effectiveness of do(t) counterfactuals on held-out
    causal_mnist, the true SCM beside as the measurement's floor) as two target rows."""
    try:
        from _scm_case import INTENSITY_MAE, THICKNESS_MAE, scm_rows
    except ImportError as exc:
        return [{"case": c, "value": None, "target": TARGETS[c], "passed": False,
                 "skipped": f"the deep SCM case is not importable ({exc})"} for c in ("scm-thickness", "scm-intensity")]
    opts = {"n_train": 300, "n_test": 40, "epochs": 2, "n_soundness": 20} if quick else {}
    deep, true = scm_rows(cpu_seconds=cpu_seconds, **opts)
    floor = {k: v for k, v in true.items() if k not in ("case", "model")}
    rows = []
    for case, key, target in (("scm-thickness", "do_t_thickness_mae", THICKNESS_MAE),
                              ("scm-intensity", "do_t_intensity_mae", INTENSITY_MAE)):
        rows.append({"case": case, "value": deep[key], "target": target, "passed": deep[key] <= target,
                     "true_scm": true[key], "deep_scm": deep, "true_scm_rows": floor})
    return rows


def _scm_in_child(threads: int, quick: bool, cpu_seconds: float) -> list[dict[str, Any]]:
    torch.set_num_threads(threads)
    return scm_cases(quick=quick, cpu_seconds=cpu_seconds)


def _cells(r: dict[str, Any]) -> tuple[str, str, str]:
    if r["case"] in ("scm-thickness", "scm-intensity"):
        unit = "px" if r["case"] == "scm-thickness" else "grey levels"
        if r.get("skipped"):
            return ("skipped", f"<= {r['target']:g} {unit}", r["skipped"])
        d = r["deep_scm"]
        extra = (f"do(i): intensity MAE {d['do_i_intensity_mae']:.2f}, thickness MAE {d['do_i_thickness_mae']:.3f}; "
                 f"composition(10) L1 {d['composition_l1_10']:.4f}; {d['epochs']} epochs, {d['train_cpu_seconds']:.0f} "
                 f"CPU s, {d['n_train']} train / {d['n_test']} test") if r["case"] == "scm-thickness" else \
                (f"intensity of the counterfactual's parent i' vs the true mechanism: MAE {d['do_t_parent_i_mae']:.2f}")
        return (f"{r['value']:.3f} {unit}", f"<= {r['target']:g} {unit}",
                f"do(t) counterfactuals, measured vs true; true SCM (floor) {r['true_scm']:.3f}; " + extra)
    if r.get("skipped"):
        return ("skipped", f">= {r['target']:.0f} img/s", r["skipped"])
    if r["case"] == "dcgan-fid":
        return (f"{r['value']:.2f}x", f"<= {r['target']:.0f}x",
                f"FID {r['fid']:.2f} vs real-vs-real {r['real_vs_real']:.2f} (last iterate {r['fid_last_iterate']:.2f}); "
                f"P {r['precision']:.2f} R {r['recall']:.2f}; {r['epochs_run']} epochs, {r['train_cpu_s']:.0f} CPU s "
                f"(<= 900), {r['train_wall_s']:.0f} s wall")
    if r["case"] == "dcgan-noise":
        return (f"{r['value']:.4f}", f"<= {r['target']:.1f}", f"FID {r['fid']:.2f} vs noise {r['noise']:.1f}")
    if r["case"] == "dcgan-classes":
        return (f"{100 * r['value']:.1f}%", f">= {100 * r['target']:.0f}%",
                "per class " + " ".join(f"{100 * f:.0f}" for f in r["fractions"]) + " %")
    return (f"{r['value']:.0f} img/s", f">= {r['target']:.0f} img/s",
            f"{r['images']} digits in {min(r['cpu_s']):.2f} CPU s ({r['images_per_wall_s']:.0f} img/s wall)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--budget", type=float, default=900.0, help="training budget, process CPU seconds (default "
                        "900 = 15 CPU minutes)")
    parser.add_argument("--scm-budget", type=float, default=300.0, help="deep SCM training budget, process CPU "
                        "seconds (default 300)")
    parser.add_argument("--no-scm", action="store_true", help="leave out the deep SCM rows")
    parser.add_argument("--quick", action="store_true", help="20 CPU s of training, 1 timing repeat")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"default {RESULTS.name} (generative-quick.json with --quick)")
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS.with_name("generative-quick.json") if args.quick else RESULTS
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    budget = 20.0 if args.quick else args.budget
    scm = None
    if not args.no_scm:  # its own process (own CPU clock and budget), beside the DCGAN, to halve the wall time
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"))
        scm = pool.submit(_scm_in_child, args.threads, args.quick, 5.0 if args.quick else args.scm_budget)
    rows = dcgan_cases(budget)
    rows.append(measure_case(1 if args.quick else 3))
    if scm is not None:
        rows += scm.result()
        pool.shutdown()
    report = {"benchmark": "generative", "quick": args.quick, "torch_threads": torch.get_num_threads(),
              "budget_clock": "process CPU seconds (time.process_time), torch threads fixed", "rows": rows,
              "all_passed": all(r["passed"] for r in rows), "seconds": time.perf_counter() - started,
              "cpu_seconds": time.process_time(), "platform": platform.platform(), "processor": platform.processor(),
              "versions": package_versions(("mlimaging", "torch", "numpy", "scipy", "scikit-image"))}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=float))
    print_targets(f"Generative (issue 16){' --quick' if args.quick else ''}: DCGAN on mnist5k (3500 train, 1000 test), "
                  f"{torch.get_num_threads()} torch thread(s), budget {budget:.0f} CPU s", rows, _cells,
                  summary=f"{'all targets met' if report['all_passed'] else 'some targets NOT met'}; wrote {args.output} "
                          f"({report['seconds']:.0f} s, {report['cpu_seconds']:.0f} CPU s)", width=170)


if __name__ == "__main__":
    main()

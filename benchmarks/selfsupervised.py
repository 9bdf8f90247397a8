"""Self-supervised targets of issue 11: SimCLR, MAE and I-JEPA probes on mnist5k, NT-Xent speed.

=================  ===================================================================  ============
case               what is measured                                                     target
=================  ===================================================================  ============
simclr-probe       SimCLR (small CNN encoder) pretrained on the mnist5k training        >= 95.0%
                   images without their labels, then a linear probe on the frozen
                   features with all training labels; test accuracy
simclr-1pct        the same encoder's linear probe with 1% of the labels (35 images,    >= +10 points
                   stratified) minus the same CNN trained from scratch on those
                   labels (encoder + linear head, as many optimiser steps as 10
                   epochs of the full set); mean over 3 labelled subsets/seeds
mae-probe          MAE's ViT encoder pretrained on mnist5k, linear probe with 1% of     >= +10 points
                   the labels, minus the probe of the same ViT randomly initialised;
                   mean over 3 seeds (the probes with all labels are recorded beside)
ijepa-probe        the same for I-JEPA with C-JEPA's variance/covariance regulariser      >= +10 points
                   (``ijepa.IJEPA_OPTIONS``, as ``mlimaging pretrain``); its context
                   encoder is probed, the EMA target encoder's probes are recorded
                   beside
ntxent-speed       forward + backward of ``nt_xent`` on a 512 x 128 batch pair            <= 1.0x
                   against lightly's ``NTXentLoss`` (same input, same thread count,
                   alternating repeats, losses and gradients checked equal); median
                   process CPU time
=================  ===================================================================  ============

Pretraining recipes are those of :mod:`mlimaging.cli.pretrain` (the encoders and method settings
of ``mlimaging pretrain``) with the epochs, learning rates and CPU budgets of :data:`RECIPES` (each
method stops after the epoch that reaches its budget of process CPU time). SimCLR's views keep the
horizontal flip here (``build_method``'s default, as measured in ``results/selfsupervised.json``), where
``mlimaging pretrain`` now leaves it out for the digit datasets. The probes and baselines
are :func:`mlimaging.selfsupervised.evaluation.label_efficiency` with its default settings (the same
stratified, nested subsets for every method; equal optimiser steps on every fraction). By default torch
uses one thread (the benchmark was written on a 2-core machine shared with other jobs; process CPU
time is what is reported). ``--quick`` runs every case with a few epochs (the targets are then not
expected to be met).

I-JEPA as published collapses on mnist5k at this scale (diagnosed on a 2,500/1,000 validation split of
the training images, ``collapse`` in the results): within ~10 AdamW steps the context encoder's layer-normed
patch tokens lose most of their variance over images and positions (18.6 -> 4.5 of at most 64; 0.1 after 100
steps), the predictor then predicts the targets from the target positions alone (at initialisation ~84% of
the target tokens' variance is explained by the position), and the EMA target drifts after it. The
implementation matches the paper's (layer-normed EMA targets, predictor conditioned on the target positions,
multi-block masks); lower or warmed-up learning rates, a 10x slower encoder, batch 64, EMA from 0.99,
standardised inputs and data2vec targets (``IJEPA(targets="data2vec")``) left every validation probe at most
one point above the random encoder's (1% labels: target encoders 20.7-27.2%, context encoders 20.3-22.6%,
random 23.9%, 26.4% on standardised inputs).

The recipe therefore adds C-JEPA's remedy (Mo & Tong 2024, NeurIPS, arXiv:2410.19560): VICReg's variance
hinge and covariance penalty (Bardes et al. 2022) on the context encoder's output, weighted 1 and 0.04 (the
ratio of VICReg's 25 and 1), ``IJEPA(variance_weight=1, covariance_weight=0.04, regularise="tokens")``, with
the EMA momentum rising from 0.99 and batch 64. Validation probes with 1% of the labels (25 images, mean of
3 probe seeds, the same 100 CPU s of pretraining; random encoder 23.9%), target / context encoder:

=============================================================  =============  ==============
recipe (batch 256 and EMA from 0.996 unless stated)             EMA target     context
=============================================================  =============  ==============
I-JEPA as published                                             21.4%          21.0%
+ variance 1, covariance 0.04 on the mean context token         30.7%          22.1%
  the same with covariance 1                                    26.9%          25.5%
  the same at batch 64                                          25.6%          21.7%
  the same with targets standardised per position over batch    30.8%          20.4%
+ variance 1, covariance 0.04 on every context token            29.6%          32.6%
  the same, EMA from 0.99                                       33.8%          32.3%
  the same, covariance 0 (variance only)                        32.1%          32.4%
  the same with covariance 0.25 (EMA 0.996)                     24.5%          24.9%
  EMA from 0.99, batch 128                                      35.0%          32.6%
  EMA from 0.99, batch 128, variance 2                          32.9%          32.4%
  **EMA from 0.99, batch 64 (the recipe)**                      31.9%          **37.0%**
  EMA from 0.98, batch 64                                       36.3%          38.1%
  EMA from 0.95, batch 64                                       32.1%          36.1%
=============================================================  =============  ==============

Standardising the targets alone leaves the prediction loss at ~1 (nothing learnt in the budget). One
pretraining run moves the probe by several points, so the two best batch-64 recipes were repeated on two
more validation splits with other pretraining seeds: EMA from 0.99 gave context probes 37.0, 37.9 and 39.6%
(random 23.9, 24.4, 20.7%: +13.1, +13.5, +18.9 points; EMA target 31.9, 35.1, 37.9%), EMA from 0.98 gave
38.1, 31.4 and 34.0% (target 36.3, 29.8, 33.7%); I-JEPA as published on the second split: 24.3% / 22.0%.
The context encoder probed above the EMA target in every batch-64 run, so the benchmark probes the context
encoder (the paper probes the target encoder; its numbers are in the row as ``other_probe``). On the test
split the recipe gives +10.2 points (context 32.6% vs random 22.4%; EMA target 34.9%; all labels 78.9% vs
64.0%): the target is met, by a thin margin for one pretraining seed (EMA from 0.98, run once on the test
split before the repeats, gave +11.7 with the context and +10.6 with the target encoder).
``--merge`` reruns some cases into an existing results file (rows keep
``from_run``).

Writes ``benchmarks/results/selfsupervised.json`` (``selfsupervised-quick.json`` with ``--quick``)
and prints a table.

Run: ``python benchmarks/selfsupervised.py`` (``--quick`` for a short check).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from _common import (  # benchmarks/ is on sys.path when a script runs
    CPUBudget,
    alternate,
    install_torchvision_shim,
    merge_reports,
    print_targets,
)
from mlimaging.cli.pretrain import build_method, fresh_encoder, load_images
from mlimaging.selfsupervised import evaluation
from mlimaging.selfsupervised.base import SelfSupervisedStep
from mlimaging.selfsupervised.ijepa import IJEPA_OPTIONS
from mlimaging.selfsupervised.losses import nt_xent
from mlimaging.training import fit
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "selfsupervised.json"
TARGETS = {"simclr-probe": 0.95, "simclr-1pct": 0.10, "mae-probe": 0.10, "ijepa-probe": 0.10, "ntxent-speed": 1.0}

#: Pretraining recipes (AdamW; weight decay as in mlimaging.cli.pretrain.WEIGHT_DECAY).
#: Pretraining stops after ``epochs`` or after the epoch that reaches ``cpu_budget_s`` of process CPU time.
RECIPES: dict[str, dict[str, Any]] = {
    "simclr": {"epochs": 8, "lr": 1e-3, "batch_size": 256, "cpu_budget_s": 160.0},
    # MAE needs optimiser steps more than large batches: batch 64 gives ~1,700 steps in 150 CPU s
    "mae": {"epochs": 200, "lr": 1e-3, "batch_size": 64, "cpu_budget_s": 150.0},
    # I-JEPA with C-JEPA's variance/covariance terms on the context tokens and EMA from 0.99 ("options":
    # IJEPA_OPTIONS, as mlimaging pretrain), batch 64 (~4x the optimiser steps of batch 256 in the budget);
    # probe_encoder "context": with the regulariser the context encoder no longer collapses and, on a validation
    # split of the training images (2,500/1,000), probed above the EMA target encoder in every batch-64
    # run (see the module docstring); the target encoder's probes are recorded beside
    "ijepa": {"epochs": 20, "lr": 1e-3, "batch_size": 64, "cpu_budget_s": 100.0, "probe_encoder": "context",
              "options": dict(IJEPA_OPTIONS)},
}
SEEDS = (0, 1, 2)


def _accuracy(result: Any) -> float:
    if isinstance(result, dict):
        for key in ("test_accuracy", "accuracy"):
            if key in result:
                return float(result[key])
    return float(result)


# ----------------------------------------------------------------------------- pretraining
def pretrain(method: str, xtr: torch.Tensor, *, seed: int, quick: bool) -> tuple[torch.nn.Module, dict[str, Any], dict]:
    """Pretrain ``method`` on the unlabelled images ``xtr``; the encoder, its metadata and timings."""
    from mlimaging.cli.pretrain import WEIGHT_DECAY

    r = dict(RECIPES[method])
    if quick:
        r.update(epochs=1, cpu_budget_s=10.0)
    steps = math.ceil(len(xtr) / r["batch_size"]) * r["epochs"]
    torch.manual_seed(seed)
    model, meta = build_method(method, channels=int(xtr.shape[1]), image_size=int(xtr.shape[-1]), total_steps=steps,
                               options=r.get("options"))
    c0, t0 = time.process_time(), time.perf_counter()
    history = fit(model, TensorDataset(xtr), step=SelfSupervisedStep(seed=seed), metrics=(),
                  optimizer=lambda p: torch.optim.AdamW(p, lr=r["lr"], weight_decay=WEIGHT_DECAY[method]),
                  epochs=r["epochs"], batch_size=r["batch_size"], seed=seed, progress=False,
                  callbacks=[CPUBudget(r["cpu_budget_s"])])
    info = {"recipe": r, "epochs_run": len(history), "pretrain_cpu_s": time.process_time() - c0, "pretrain_wall_s": time.perf_counter() - t0,
            "loss_first": history["loss"][0], "loss_last": history["loss"][-1]}
    if r.get("probe_encoder") == "target":  # I-JEPA: the other encoder is probed beside
        info["other_encoder"] = ("context", model.encoder.eval())
        return model.target_encoder.eval(), meta, info
    if r.get("probe_encoder") == "context":
        info["other_encoder"] = ("target", model.target_encoder.eval())
    return model.encoder.eval(), meta, info


def collapse_stats(encoder: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Signs of representation collapse on images ``x``: the total variance of the layer-normed patch
    tokens over images and positions (0 = every token identical; at most the width), the part of it
    that the position explains, and the effective rank (exp of the entropy of the normalised squared
    singular values) of the centred pooled features."""
    from mlimaging.selfsupervised.mae import encode_visible

    with torch.no_grad():
        tokens = torch.nn.functional.layer_norm(encode_visible(encoder, x)[:, 1:], (encoder.dim,))
        pooled = encoder(x)
    total = float(tokens.var(dim=(0, 1), unbiased=False).sum())
    position = float(tokens.mean(0).var(dim=0, unbiased=False).sum())
    sv = torch.linalg.svdvals(pooled - pooled.mean(0))
    p = sv**2 / (sv**2).sum()
    return {"token_variance": total, "position_share": position / total,
            "effective_rank": float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum()))}


def efficiency(encoder: torch.nn.Module, data: dict[str, torch.Tensor], *, fractions: tuple[float, ...],
               supervised: Callable[[int], torch.nn.Module] | None, quick: bool) -> list[dict[str, Any]]:
    """:func:`~mlimaging.selfsupervised.evaluation.label_efficiency` rows of a linear probe (and the
    from-scratch baseline) over :data:`SEEDS`, with the evaluation's default settings."""
    return evaluation.label_efficiency(encoder, (data["xtr"], data["ytr"]), (data["xte"], data["yte"]),
                                       fractions=fractions, seeds=SEEDS, probe="linear", supervised=supervised,
                                       **({"probe_epochs": 20, "fine_tune_epochs": 1} if quick else {}))


def _mean(rows: list[dict[str, Any]], method: str, fraction: float) -> float:
    return statistics.mean(r["accuracy"] for r in rows if r["fraction"] == fraction and
                           (r["method"] == "supervised") == (method == "supervised"))


def simclr_cases(data: dict[str, torch.Tensor], *, quick: bool) -> list[dict[str, Any]]:
    encoder, meta, info = pretrain("simclr", data["xtr"], seed=0, quick=quick)
    c0 = time.process_time()
    full = evaluation.linear_probe(encoder, (data["xtr"], data["ytr"]), (data["xte"], data["yte"]), seed=0,
                                   **({"epochs": 20} if quick else {}))
    rows = [{"case": "simclr-probe", "value": full["accuracy"], "target": TARGETS["simclr-probe"],
             "passed": full["accuracy"] >= TARGETS["simclr-probe"], "n_labels": full["n_labels"], **info,
             "probe_cpu_s": time.process_time() - c0}]
    c0 = time.process_time()
    few = efficiency(encoder, data, fractions=(0.01,), supervised=lambda s: fresh_encoder(meta, seed=s), quick=quick)
    ssl, sup = _mean(few, "simclr", 0.01), _mean(few, "supervised", 0.01)
    rows.append({"case": "simclr-1pct", "value": ssl - sup, "target": TARGETS["simclr-1pct"],
                 "passed": ssl - sup >= TARGETS["simclr-1pct"], "mean_simclr_probe": ssl, "mean_supervised_scratch": sup,
                 "n_labels": few[0]["labels"], "seeds": list(SEEDS), "label_efficiency_rows": few,
                 "cpu_s": time.process_time() - c0})
    return rows


def vit_case(method: str, data: dict[str, torch.Tensor], *, quick: bool) -> dict[str, Any]:
    encoder, meta, info = pretrain(method, data["xtr"], seed=0, quick=quick)
    c0 = time.process_time()
    ours = efficiency(encoder, data, fractions=(0.01, 1.0), supervised=None, quick=quick)
    random_encoder = fresh_encoder(meta, seed=0).eval()
    rand = efficiency(random_encoder, data, fractions=(0.01, 1.0), supervised=None, quick=quick)
    m = {f: (_mean(ours, method, f), _mean(rand, method, f)) for f in (0.01, 1.0)}
    gap = m[0.01][0] - m[0.01][1]
    case = f"{method}-probe"
    sample = data["xtr"][:500]
    extra: dict[str, Any] = {"collapse": {"pretrained": collapse_stats(encoder, sample),
                                          "random": collapse_stats(random_encoder, sample)}}
    other = info.pop("other_encoder", None)
    if other is not None:  # I-JEPA: its other encoder's (context or EMA target) probes beside
        name, encoder_2 = other
        rows = efficiency(encoder_2, data, fractions=(0.01, 1.0), supervised=None, quick=quick)
        extra.update(probe_encoder=info["recipe"]["probe_encoder"], other_encoder=name,
                     other_probe=_mean(rows, method, 0.01), other_probe_all_labels=_mean(rows, method, 1.0),
                     other_rows=rows)
        extra["collapse"][name] = collapse_stats(encoder_2, sample)
    return {"case": case, "value": gap, "target": TARGETS[case], "passed": gap >= TARGETS[case],
            "mean_pretrained_probe": m[0.01][0], "mean_random_probe": m[0.01][1], "n_labels": ours[0]["labels"],
            "probe_all_labels": m[1.0][0], "random_probe_all_labels": m[1.0][1], "seeds": list(SEEDS),
            "pretrained_rows": ours, "random_rows": rand, "probe_cpu_s": time.process_time() - c0, **info, **extra}


# ----------------------------------------------------------------------------- NT-Xent speed
def ntxent_speed(*, repeats: int, iters: int, n: int = 512, dim: int = 128, temperature: float = 0.5) -> dict[str, Any]:
    from lightly.loss import NTXentLoss

    theirs_loss = NTXentLoss(temperature=temperature)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)

    def forward_backward(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[float, torch.Tensor]:
        z1, z2 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
        value = loss_fn(z1, z2)
        value.backward()
        return float(value.detach()), torch.cat([z1.grad, z2.grad])

    def ours(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return nt_xent(z1, z2, temperature=temperature)

    (l1, g1), (l2, g2) = forward_backward(ours), forward_backward(theirs_loss)
    loss_diff, grad_diff = abs(l1 - l2), float((g1 - g2).abs().max())
    if loss_diff > 1e-5 * abs(l2) or grad_diff > 1e-6:
        raise AssertionError(f"nt_xent and lightly's NTXentLoss differ: loss {l1} vs {l2}, max |grad diff| {grad_diff}")

    def timed(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(iters):
                z1, z2 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
                loss_fn(z1, z2).backward()
        return run

    cpu, wall = alternate({"mlimaging": timed(ours), "lightly": timed(theirs_loss),
                           "lightly (A/A copy)": timed(NTXentLoss(temperature=temperature))}, repeats=repeats)
    med = {k: statistics.median(v) / iters for k, v in cpu.items()}
    med_wall = {k: statistics.median(v) / iters for k, v in wall.items()}
    ratio = med["mlimaging"] / med["lightly"]
    return {"case": "ntxent-speed", "value": ratio, "target": TARGETS["ntxent-speed"],
            "passed": ratio <= TARGETS["ntxent-speed"], "median_cpu_s": med, "median_wall_s": med_wall,
            "wall_ratio": med_wall["mlimaging"] / med_wall["lightly"],
            "aa_ratio": med["lightly (A/A copy)"] / med["lightly"], "batch": n, "dim": dim,
            "temperature": temperature, "iterations_per_repeat": iters, "repeats": repeats,
            "loss_abs_difference": loss_diff, "max_abs_grad_difference": grad_diff}


# ----------------------------------------------------------------------------- main
def _cells(r: dict[str, Any]) -> tuple[str, str, str]:
    """Result, target and details texts of one row of the printed table."""
    case = r["case"]
    if case == "simclr-probe":
        shown, target = f"{100 * r['value']:.2f}%", f">= {100 * r['target']:.0f}%"
        details = (f"{r['epochs_run']} epochs, pretrained in {r['pretrain_cpu_s']:.0f} CPU s; "
                   f"probe on {r['n_labels']} labels")
    elif case == "simclr-1pct":
        shown, target = f"{100 * r['value']:+.1f} pts", f">= +{100 * r['target']:.0f} pts"
        details = (f"probe {100 * r['mean_simclr_probe']:.1f}% vs scratch {100 * r['mean_supervised_scratch']:.1f}% "
                   f"(mean of {len(r['seeds'])} seeds, {r['n_labels']} labels)")
    elif case.endswith("-probe"):
        shown, target = f"{100 * r['value']:+.1f} pts", f">= +{100 * r['target']:.0f} pts"
        details = (f"1% labels: probe {100 * r['mean_pretrained_probe']:.1f}% vs random {100 * r['mean_random_probe']:.1f}%; "
                   f"all labels {100 * r['probe_all_labels']:.1f}% vs {100 * r['random_probe_all_labels']:.1f}%; "
                   f"{r['epochs_run']} epochs in {r['pretrain_cpu_s']:.0f} CPU s")
        if "other_probe" in r:
            c, other = r["collapse"], r["other_encoder"]
            details += (f"; {r['probe_encoder']} encoder probed ({other} encoder: {100 * r['other_probe']:.1f}% / "
                        f"{100 * r['other_probe_all_labels']:.1f}%); token variance {r['probe_encoder']} "
                        f"{c['pretrained']['token_variance']:.1f}, {other} {c[other]['token_variance']:.2f}, "
                        f"random {c['random']['token_variance']:.1f}")
    else:
        shown, target = f"{r['value']:.2f}x", f"<= {r['target']:.1f}x"
        details = (", ".join(f"{k} {1000 * v:.2f} ms" for k, v in r["median_cpu_s"].items())
                   + f" CPU (wall ratio {r['wall_ratio']:.2f}x; A/A {r['aa_ratio']:.2f}x); "
                   f"max |grad diff| {r['max_abs_grad_difference']:.1e}")
    return shown, target, details


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads for every case (default 1)")
    parser.add_argument("--quick", action="store_true", help="short check: 1 pretraining epoch per method, "
                        "3 timing repeats")
    parser.add_argument("--only", default=",".join(TARGETS), help="comma-separated cases to run (simclr-probe and "
                        "simclr-1pct run together)")
    parser.add_argument("--merge", action="store_true", help="replace only the rows of the --only cases in an "
                        "existing output file and keep its other rows (each kept row records the run it came from)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"default {RESULTS.name} (selfsupervised-quick.json with --quick)")
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS.with_name("selfsupervised-quick.json") if args.quick else RESULTS
    only = {c.strip() for c in args.only.split(",") if c.strip()}
    unknown = only - set(TARGETS)
    if unknown:
        parser.error(f"--only: unknown case(s) {sorted(unknown)}; choose from {list(TARGETS)}")
    torch.set_num_threads(args.threads)
    install_torchvision_shim()
    started = time.perf_counter()
    xtr, ytr = load_images("mnist5k", "train", root=None, seed=0, size=28)
    xte, yte = load_images("mnist5k", "test", root=None, seed=0, size=28)
    if args.quick:  # a tenth of the images
        xtr, ytr, xte, yte = xtr[::10], ytr[::10], xte[::10], yte[::10]
    data = {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}
    rows: list[dict[str, Any]] = []
    if only & {"simclr-probe", "simclr-1pct"}:
        rows += simclr_cases(data, quick=args.quick)
    for method in ("mae", "ijepa"):
        if f"{method}-probe" in only:
            rows.append(vit_case(method, data, quick=args.quick))
    if "ntxent-speed" in only:
        rows.append(ntxent_speed(repeats=5 if args.quick else 21, iters=3 if args.quick else 10))
    report = {"benchmark": "selfsupervised", "quick": args.quick, "torch_threads": torch.get_num_threads(),
              "n_train": len(ytr), "n_test": len(yte), "rows": rows, "all_passed": all(r["passed"] for r in rows),
              "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time(),
              "platform": platform.platform(), "processor": platform.processor(),
              "versions": package_versions(("mlimaging", "torch", "numpy", "lightly"))}
    if args.merge and args.output.exists():
        report = merge_reports(json.loads(args.output.read_text()), report)
        rows = report["rows"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=float))

    print_targets(f"Self-supervised (issue 11){' --quick' if args.quick else ''}: mnist5k ({len(ytr)} train, "
                  f"{len(yte)} test), {torch.get_num_threads()} torch thread(s)", rows, _cells,
                  summary=f"{'all targets met' if report['all_passed'] else 'some targets NOT met'}; wrote {args.output} "
                          f"({report['seconds']:.0f} s, {report['cpu_seconds']:.0f} CPU s)", width=160)


if __name__ == "__main__":
    main()

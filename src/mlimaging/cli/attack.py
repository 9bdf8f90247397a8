r"""``mlimaging attack fgsm|pgd|invert-gradients``: attacks on a trained classifier.

``fgsm`` and ``pgd`` measure adversarial robustness. They load a ``model.pt`` of ``mlimaging train
classifier`` (as ``mlimaging predict`` does), prepare the images of a dataset split exactly as
training did, attack them at each budget :math:`\varepsilon` of ``--eps`` and write a run folder::

    OUT/config.json, metrics.json, report.html
    OUT/robustness.json                       the table below, with the settings
    OUT/tables/accuracy-under-attack.csv      eps, accuracy, attack success rate, n
    OUT/figures/accuracy-vs-eps.png           the curve (eps 0 is the clean accuracy)
    OUT/figures/adversarial-examples.png      a few attacked images per eps with their predictions

FGSM is :math:`x' = \operatorname{clip}(x + \varepsilon\,\operatorname{sign}\nabla_x
\mathcal{L}(f(x), y))` (Goodfellow et al. 2015); PGD takes ``--steps`` steps of size ``--alpha``
(default :math:`2.5\varepsilon/T`) from a random start, projected on the :math:`L_\infty` (or
:math:`L_2`, ``--norm l2``) ball and on the valid range [0, 1] (Madry et al. 2018). The attack
success rate counts, among the images classified correctly without attack, those the attack
makes wrong.

``invert-gradients`` is the privacy attack (:mod:`mlimaging.privacy.attacks`): it computes the
gradient a federated client would share for one IMAGE, optionally defended (``--defence``),
reconstructs the image from it with DLG / iDLG or Inverting Gradients and writes::

    OUT/config.json, metrics.json, report.html   metrics: PSNR, SSIM, labels, iterations, loss
    OUT/reconstruction.png, reconstruction.npy   the reconstruction (PNG: the first channel)
    OUT/figures/side-by-side.png                 original | reconstruction | difference

Examples
--------
``mlimaging train classifier --dataset mnist5k --model lenet --epochs 10 --out runs/lenet`` then
``mlimaging attack pgd --checkpoint runs/lenet/model.pt --dataset mnist5k --eps 0.1,0.2 --steps 40 --out runs/attack``
or ``mlimaging attack invert-gradients --checkpoint runs/lenet/model.pt digit.png --out runs/inv``.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from mlimaging.cli.app import app, command, console, err_console

if TYPE_CHECKING:  # torch is imported inside the command: `mlimaging --help` stays fast
    import click  # typer >= 0.2x vendors its own click: never import click at run time
    import torch

__all__ = ["attack_app", "attack_cmd", "invert_cmd", "parse_defence", "parse_eps"]

METHODS = ("fgsm", "pgd")
COMMANDS = ("fgsm", "pgd", "invert-gradients")


class _AttackGroup(TyperGroup):
    """The ``attack`` group: an unknown METHOD is one red line and exit code 2, like any bad input."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            err_console.print(f"[bold red]error:[/] METHOD must be one of {', '.join(COMMANDS)}, got {args[0]!r}",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(2)
        return super().resolve_command(ctx, args)


attack_app = typer.Typer(cls=_AttackGroup, no_args_is_help=True,
                         help="Attack a trained classifier: adversarial examples (fgsm, pgd) or gradient inversion.")
app.add_typer(attack_app, name="attack")
NORMS = ("linf", "l2")


def parse_eps(text: str) -> list[float]:
    """The budgets of ``--eps``: comma-separated non-negative numbers, sorted, without repeats.

    Examples
    --------
    >>> parse_eps("0.2, 0.1,0.1")
    [0.1, 0.2]
    """
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--eps must be comma-separated numbers such as 0.1,0.2, got {text!r}") from None
    if not values:
        raise ValueError(f"--eps must hold at least one number, got {text!r}")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise ValueError(f"--eps values must be finite and >= 0, got {bad[0]:g}")
    return sorted(set(values))


def _images(dataset: str, split: str, root: str | None, seed: int, meta: dict[str, Any], n: int | None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    from mlimaging.cli.classify import _split_images
    from mlimaging.data import load_dataset
    from mlimaging.data.preprocessing import resize_images
    from mlimaging.experiments.classification import class_subset

    ds = load_dataset(dataset, split=split, root=root, seed=seed)
    x, y = _split_images(ds)
    pre = meta["preprocess"]
    if len(y) == 0:
        raise ValueError(f"--dataset {dataset}: the {split} split holds no images")
    if x.shape[1] != int(pre["channels"]):
        raise ValueError(f"--dataset {dataset}: {x.shape[1]}-channel images, the model takes {pre['channels']}")
    if int(y.max()) >= len(meta["classes"]):
        raise ValueError(f"--dataset {dataset}: labels up to {int(y.max())}, the model knows {len(meta['classes'])} "
                         "classes")
    x = resize_images(x.float(), tuple(pre["size"]))
    if n is not None and n < len(y):
        idx = class_subset(y, total=n, seed=seed)
        x, y = x[idx], y[idx]
    return x.contiguous(), y


def _figures(run: Any, method: str, rows: list[dict[str, Any]], examples: list[tuple[float, Any, Any]],
             y: Any, classes: list[str]) -> None:
    from mlimaging.reporting.figures import plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot([r["eps"] for r in rows], [r["accuracy"] for r in rows], "o-")
    ax.set(xlabel="epsilon", ylabel="accuracy", ylim=(0, 1.02), title=f"Accuracy under {method.upper()}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    run.figure(fig, "accuracy-vs-eps", caption="Accuracy against the attack's budget (eps 0: clean images).")
    k = len(y)
    fig, axes = plt.subplots(k, len(examples), figsize=(1.4 * len(examples), 1.5 * k), squeeze=False)
    for c, (e, x_adv, pred) in enumerate(examples):
        for r in range(k):
            img = x_adv[r].permute(1, 2, 0).numpy()
            axes[r, c].imshow(img[..., 0] if img.shape[-1] == 1 else img.clip(0, 1), cmap="gray", vmin=0, vmax=1)
            wrong = int(pred[r]) != int(y[r])
            axes[r, c].set_title((f"eps {e:g}\n" if r == 0 else "") + classes[int(pred[r])], fontsize=7,
                                 color="red" if wrong else "black")
            axes[r, c].axis("off")
    fig.tight_layout()
    run.figure(fig, "adversarial-examples", caption="The same images at each eps; titles: prediction, red when wrong.")


def attack_cmd(
    method: str,
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt written by `mlimaging train classifier`."),
    out: Path = typer.Option(..., "--out", help="New folder for the table, curve, examples and report."),
    eps: str = typer.Option("0.05,0.1,0.2,0.3", "--eps", help="Comma-separated budgets in image units ([0, 1])."),
    dataset: str | None = typer.Option(None, "--dataset", help="A dataset of `mlimaging datasets` (default: the "
                                       "model's training dataset)."),
    root: str | None = typer.Option(None, "--root", help="Data folder or file (mnist, medmnist, image-folder)."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    steps: int = typer.Option(40, "--steps", help="PGD steps."),
    alpha: float | None = typer.Option(None, "--alpha", help="PGD step size (default: 2.5 eps / steps)."),
    norm: str = typer.Option("linf", "--norm", help="PGD ball: linf or l2."),
    restarts: int = typer.Option(1, "--restarts", help="PGD random restarts (an image counts as robust only if "
                                 "every restart fails)."),
    n: int | None = typer.Option(None, "--n", help="Attack a stratified subset of N images (default: all)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, the subset and PGD's random start."),
    batch_size: int = typer.Option(500, "--batch-size", help="Images per attack batch."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder written by this command."),
) -> None:
    """Attack a trained classifier with FGSM or PGD: accuracy against eps, curve and examples in --out.

    ``mlimaging attack fgsm`` and ``mlimaging attack pgd`` are this function with ``method`` bound.
    """
    import shutil

    import torch
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from mlimaging.cli.classify import _load_classifier
    from mlimaging.reporting import Run
    from mlimaging.robustness import fgsm, pgd

    if method not in METHODS:
        raise ValueError(f"METHOD must be one of {', '.join(METHODS)}, got {method!r}")
    if norm not in NORMS:
        raise ValueError(f"--norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if method == "fgsm" and norm != "linf":
        raise ValueError("--norm l2 needs pgd (FGSM is the L-infinity attack)")
    budgets = parse_eps(eps)
    for value, option in ((steps, "--steps"), (restarts, "--restarts"), (batch_size, "--batch-size"), (n, "--n")):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be a positive integer, got {value}")
    if alpha is not None and not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"--alpha must be a positive number, got {alpha}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint} does not exist")
    if out.exists():
        if out.is_file():
            raise ValueError(f"--out {out} is a file; give a new folder")
        if any(out.iterdir()):
            written = (out / "robustness.json").is_file()
            if not force:
                raise FileExistsError(f"--out {out} already exists; choose another folder or pass --force")
            if not written:
                raise ValueError(f"--force: {out} was not written by `mlimaging attack`; refusing to delete it")
    model, meta = _load_classifier(checkpoint)
    data_name = dataset or meta.get("dataset") or "mnist5k"
    x, y = _images(data_name, split, root, seed, meta, n)
    if meta.get("dataset") and data_name != meta["dataset"]:  # legitimate (a shift study), but never silent
        err_console.print(f"[yellow]warning:[/] --dataset {data_name} is not the model's training dataset "
                          f"({meta['dataset']}): the clean accuracy measures that shift too", highlight=False,
                          soft_wrap=True)
    if out.exists():
        shutil.rmtree(out)
    settings = {"method": method, "checkpoint": str(checkpoint), "dataset": data_name, "split": split, "eps": budgets,
                "steps": steps if method == "pgd" else 1, "alpha": alpha, "norm": norm, "restarts": restarts,
                "n": len(y), "seed": seed, "model": meta["model"]}
    cmd = (f"mlimaging attack {method} --checkpoint {checkpoint} --dataset {data_name} --split {split} --eps "
           f"{','.join(f'{e:g}' for e in budgets)} --steps {steps} --norm {norm} --restarts {restarts} --seed {seed} "
           f"--out {out}" + (f" --alpha {alpha:g}" if alpha else "") + (f" --n {n}" if n else ""))
    run = Run.create("attack", settings, path=out, command=cmd, console=err_console)

    def predict(images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model(images[i:i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])

    clean_pred = predict(x)
    correct = clean_pred == y
    shown = torch.cat([torch.nonzero(y == c)[:1, 0] for c in torch.unique(y)])[:5]
    examples = [(0.0, x[shown], clean_pred[shown])]
    rows = [{"eps": 0.0, "accuracy": float(correct.float().mean()), "attack success rate": 0.0,
             "max |delta|": 0.0, "n": len(y)}]
    gen = torch.Generator().manual_seed(seed)
    budgets = [e for e in budgets if e > 0]
    batches = [(e, i) for e in budgets for i in range(0, len(y), batch_size)]
    progress = Progress(TextColumn(f"[bold]attack {method}[/]"), TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), TimeRemainingColumn(),
                        console=err_console, transient=True, disable=not err_console.is_terminal)
    adv: dict[float, list[torch.Tensor]] = {e: [] for e in budgets}
    with progress:
        task = progress.add_task("batches", total=len(batches))
        for e, i in batches:
            xb, yb = x[i:i + batch_size], y[i:i + batch_size]
            if method == "fgsm":
                adv[e].append(fgsm(model, xb, yb, eps=e))
            else:
                adv[e].append(pgd(model, xb, yb, eps=e, alpha=alpha if alpha else 2.5 * e / steps, steps=steps,
                                  norm=norm, restarts=restarts, generator=gen))
            progress.advance(task)
    for e in budgets:
        x_adv = torch.cat(adv[e])
        pred = predict(x_adv)
        flipped = correct & (pred != y)
        rows.append({"eps": e, "accuracy": float((pred == y).float().mean()),
                     "attack success rate": float(flipped.sum()) / max(1, int(correct.sum())),
                     "max |delta|": float((x_adv - x).abs().max()), "n": len(y)})
        examples.append((e, x_adv[shown], pred[shown]))
    run.section("Accuracy under attack", f"{method.upper()} on {len(y)} {data_name} {split} images, model "
                f"{meta['model']} ({checkpoint})" + (f", {steps} steps, {norm}, {restarts} restart(s)"
                                                      if method == "pgd" else "") + f"; seed {seed}.")
    run.table("Accuracy under attack", rows, caption="Attack success rate: images classified correctly without "
              "attack and wrongly with it, over those classified correctly.")
    _figures(run, method, rows, examples, y[shown], [str(c) for c in meta["classes"]])
    run.log(rows=rows)
    (out / "robustness.json").write_text(json.dumps({"settings": settings, "rows": rows}, indent=2))
    report = run.finish()
    table = Table("eps", "accuracy", "attack success rate", "n", title=f"{method.upper()} on {meta['model']} "
                  f"({data_name} {split})")
    for r in rows:
        table.add_row(f"{r['eps']:g}", f"{r['accuracy']:.4f}", f"{r['attack success rate']:.4f}", str(r["n"]))
    console.print(table)
    console.print(f"table: {out / 'tables' / 'accuracy-under-attack.csv'}\nreport: {report}", soft_wrap=True)


def _bound(method: str) -> Any:
    """``attack_cmd`` with ``method`` bound, as a function typer can read (signature and annotations)."""

    def cmd(**options: Any) -> None:
        attack_cmd(method, **options)

    sig = inspect.signature(attack_cmd)
    cmd.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])  # type: ignore[attr-defined]
    cmd.__annotations__ = {k: v for k, v in attack_cmd.__annotations__.items() if k != "method"}
    cmd.__name__ = cmd.__qualname__ = f"{method}_cmd"
    return cmd


for _method in METHODS:
    command(_method, typer_app=attack_app, help=f"Attack a trained classifier with {_method.upper()}: accuracy "
            "against eps, curve and examples in --out.")(_bound(_method))


# --------------------------------------------------------------------------- invert-gradients
INVERSIONS = ("dlg", "ig")
DEFENCES = {"noise": "noise", "clip": "clip_norm", "topk": "topk"}
#: What ``attack invert-gradients`` writes in its --out folder (``--force`` deletes nothing else).
INVERT_ENTRIES = frozenset({"config.json", "metrics.json", "report.html", "figures", "tables", "reconstruction.png",
                            "reconstruction.npy", ".config.json.tmp", ".metrics.json.tmp"})


def parse_defence(text: str | None) -> dict[str, float]:
    """``--defence``: comma-separated ``kind:value`` (noise:SIGMA, clip:C, topk:FRACTION) as the keyword
    arguments of :func:`mlimaging.privacy.attacks.defend_gradients`.

    Examples
    --------
    >>> parse_defence("clip:1, noise:0.01,topk:0.1")
    {'clip_norm': 1.0, 'noise': 0.01, 'topk': 0.1}
    >>> parse_defence(None)
    {}
    """
    if text is None or not text.strip():
        return {}
    options: dict[str, float] = {}
    for item in (t.strip() for t in text.split(",") if t.strip()):
        kind, _, value = item.partition(":")
        kind = kind.strip().lower()
        if kind not in DEFENCES or not value.strip():
            raise ValueError(f"--defence must be comma-separated noise:SIGMA, clip:C or topk:FRACTION, got {item!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--defence {kind} needs a number, got {value.strip()!r}") from None
        if not math.isfinite(number) or number < 0 or (kind != "noise" and number == 0):
            raise ValueError(f"--defence {kind} must be a {'non-negative' if kind == 'noise' else 'positive'} "
                             f"number, got {value.strip()}")
        if kind == "topk" and number > 1:
            raise ValueError(f"--defence topk is the fraction of entries kept, in (0, 1], got {number:g}")
        if DEFENCES[kind] in options:
            raise ValueError(f"--defence gives {kind} twice")
        options[DEFENCES[kind]] = number
    return options


def _side_by_side(run: Any, original: Any, reconstruction: Any, title: str) -> None:
    from mlimaging.reporting.figures import plt

    images = [original, reconstruction, (reconstruction - original).abs()]
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    for ax, img, name in zip(axes, images, ("original", "reconstruction", "|difference|"), strict=True):
        img = img.permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[-1] == 1 else img.clip(0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    run.figure(fig, "side-by-side", caption="The image, its reconstruction from the shared gradient, and their "
               "absolute difference (all on [0, 1]).")


@command("invert-gradients", typer_app=attack_app)
def invert_cmd(
    image: Path = typer.Argument(..., help="A 2D grayscale image (PNG, NPY, NIfTI, ...) of the model's input size."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt written by `mlimaging train classifier`."),
    out: Path = typer.Option(..., "--out", help="New folder for the reconstruction, figure, metrics and report."),
    method: str = typer.Option("dlg", "--method", help="dlg: L-BFGS on the L2 gradient distance (label by iDLG); "
                               "ig: Inverting Gradients (cosine distance + TV, signed Adam, box [0, 1])."),
    label: int | None = typer.Option(None, "--label", help="The image's class, given to the attacker (default: the "
                                     "client labels the image with the model's prediction and the attacker recovers "
                                     "it by iDLG)."),
    iterations: int | None = typer.Option(None, "--iterations", help="Optimiser steps (default 100 for dlg, "
                                          "1000 for ig)."),
    restarts: int = typer.Option(1, "--restarts", help="Random starts; the one matching the gradient best is kept."),
    lr: float | None = typer.Option(None, "--lr", help="Step size (default 1 for dlg's L-BFGS, 0.1 for ig)."),
    tv: float = typer.Option(1e-4, "--tv", help="Weight of the total-variation prior (ig)."),
    defence: str | None = typer.Option(None, "--defence", help="Defence applied to the shared gradient: "
                                       "comma-separated clip:C, noise:SIGMA (std SIGMA*C with clip, else SIGMA), "
                                       "topk:FRACTION kept per tensor; e.g. clip:1,noise:0.01."),
    seed: int = typer.Option(0, "--seed", help="Seed of the attack's starts and of the defence's noise."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder written by this command."),
) -> None:
    """Reconstruct IMAGE from the gradient a client would share for it (DLG / iDLG or Inverting Gradients)."""
    import time

    import numpy as np
    import torch

    from mlimaging.cli._images import read_gray, write_output
    from mlimaging.cli._run_folder import check_positive, open_run, prepare_out
    from mlimaging.cli.classify import _load_classifier
    from mlimaging.data.preprocessing import prepare_image
    from mlimaging.privacy.attacks import (
        defend_gradients,
        dlg,
        inverting_gradients,
        reconstruction_quality,
        recover_labels,
        shared_gradients,
    )

    if method not in INVERSIONS:
        raise ValueError(f"--method must be one of {', '.join(INVERSIONS)}, got {method!r}")
    check_positive(iterations, "--iterations", integer=True)
    check_positive(restarts, "--restarts", integer=True)
    check_positive(lr, "--lr")
    if not (math.isfinite(tv) and tv >= 0):
        raise ValueError(f"--tv must be a non-negative number, got {tv}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    defended = parse_defence(defence)
    if not image.is_file():
        raise FileNotFoundError(f"IMAGE {image} does not exist")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint} does not exist")
    name = "`mlimaging attack invert-gradients`"
    _, clear = prepare_out(out, resume=False, force=force, command=name, entries=INVERT_ENTRIES, resumable=False)
    model, meta = _load_classifier(checkpoint)
    pre, classes = meta["preprocess"], [str(c) for c in meta["classes"]]
    array, geometry = read_gray(image, "IMAGE")
    size = tuple(int(s) for s in pre["size"])
    if array.ndim != 2 or tuple(array.shape) != size:
        raise ValueError(f"IMAGE {image} has shape {tuple(array.shape)}; the model takes {size[0]} x {size[1]} "
                         "2D images (resize it first)")
    x = prepare_image(array, channels=int(pre["channels"]), size=size, name=f"IMAGE {image}")[None]
    if label is not None and not 0 <= label < len(classes):
        raise ValueError(f"--label must be a class index in 0..{len(classes) - 1}, got {label}")
    with torch.no_grad():
        client_label = int(model(x).argmax(1)) if label is None else label
    y = torch.tensor([client_label])
    iterations = iterations or (100 if method == "dlg" else 1000)
    lr = lr or (1.0 if method == "dlg" else 0.1)
    settings = {"image": str(image), "checkpoint": str(checkpoint), "model": meta["model"], "method": method,
                "label": label, "client_label": client_label, "iterations": iterations, "restarts": restarts,
                "lr": lr, "tv": tv if method == "ig" else None, "defence": defended, "seed": seed}
    cmd = (f"mlimaging attack invert-gradients --checkpoint {checkpoint} {image} --out {out} --method {method} "
           f"--iterations {iterations} --restarts {restarts} --lr {lr:g} --seed {seed}"
           + (f" --label {label}" if label is not None else "") + (f" --tv {tv:g}" if method == "ig" else "")
           + (f" --defence {defence}" if defended else ""))
    run = open_run(out, "invert-gradients", settings, stored=None, clear=clear, command=cmd, console=err_console)
    start = time.perf_counter()
    grads = defend_gradients(shared_gradients(model, x, y), **defended,
                             generator=torch.Generator().manual_seed(seed))
    given = y if label is not None else recover_labels(model, grads, shape=x.shape)
    progress = err_console.is_terminal
    if method == "dlg":
        res = dlg(model, grads, shape=x.shape, labels=given, iterations=iterations, restarts=restarts, lr=lr,
                  seed=seed, progress=progress)
    else:
        res = inverting_gradients(model, grads, shape=x.shape, labels=given, iterations=iterations,
                                  restarts=restarts, lr=lr, tv_weight=tv, seed=seed, progress=progress)
    seconds = time.perf_counter() - start
    quality = reconstruction_quality(res.images, x)
    recovered = int(res.labels[0])
    rec = res.images[0]
    write_output(out / "reconstruction.png", rec[0].numpy().astype(np.float32), geometry)
    np.save(out / "reconstruction.npy", rec.numpy().astype(np.float32))
    psnr, ssim = float(quality.psnr[0]), float(quality.ssim[0])
    title = f"{method.upper()}: PSNR {psnr:.1f} dB, SSIM {ssim:.3f}, label {classes[recovered]}"
    _side_by_side(run, x[0], rec, title)
    metrics = {"psnr": psnr, "ssim": ssim, "client_label": client_label, "recovered_label": recovered,
               "label_correct": recovered == client_label, "label_given": label is not None,
               "iterations": res.iterations, "restart": res.restart, "gradient_loss": res.loss,
               "seconds": round(seconds, 3)}
    run.section("Gradient inversion", f"{method.upper()} on the gradient that {meta['model']} ({checkpoint}) "
                f"shares for {image} labelled {classes[client_label]}"
                + (f", defended by {defence}" if defended else "") + f"; seed {seed}.")
    run.table("Reconstruction quality", [metrics])
    run.log(metrics)
    report = run.finish()
    console.print(f"{title} ({'given' if label is not None else 'recovered'}; client label "
                  f"{classes[client_label]}), {res.iterations} iterations, {seconds:.1f} s\n"
                  f"reconstruction: {out / 'reconstruction.png'}\nreport: {report}", highlight=False, soft_wrap=True)

"""``mlimaging train classifier`` and ``mlimaging predict``: image classification over the engine.

``train classifier`` loads a dataset (:func:`mlimaging.data.load_dataset`), builds a registered
model (:func:`mlimaging.models.create_model`) sized for it and trains it with
:func:`mlimaging.training.fit` (Adam, cross-entropy) into a run folder::

    OUT/config.json, metrics.json, report.html, figures/, tables/
    OUT/checkpoints/last.pt, best.pt      fit's checkpoints (resume from last.pt)
    OUT/model.pt                          best weights (by validation accuracy) + what predict needs

``model.pt`` holds ``{"model": state_dict, "classifier": meta, "epoch": ...}`` where ``meta``
names the model, its keyword arguments, the class names and the input preprocessing
(channels, size, value range, background polarity); it loads with
``torch.load(weights_only=True)``. ``predict`` reads any image :func:`mlimaging.data.read_image`
reads and prepares it exactly as training did (:mod:`mlimaging.data.preprocessing`: scaled
to [0, 1], channels converted, resized bilinearly), then prints the class and the
probabilities :math:`\\operatorname{softmax}(f_\\theta(x))` per image. An image whose
polarity is the opposite of the training images' (a dark digit on a light background for
a model trained on MNIST) is inverted, with a warning; ``--invert`` / ``--no-invert``
decide instead.

Examples
--------
``mlimaging train classifier --dataset mnist5k --model lenet --epochs 10 --out runs/lenet``
then ``mlimaging predict --checkpoint runs/lenet/model.pt digit.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._run_folder import (
    ExportBest,
    check_device,
    check_positive,
    open_run,
    prepare_out,
    read_checkpoint,
    resolve_settings,
    run_config,
)
from mlimaging.cli.app import command, console, err_console
from mlimaging.cli.train import train_app

if TYPE_CHECKING:  # torch and NumPy are imported inside the commands: `mlimaging --help` stays fast
    import numpy as np
    import torch
    from torch import nn

__all__ = ["predict_cmd", "train_classifier_cmd"]

RUN_NAME = "train-classifier"
DEFAULTS: dict[str, Any] = {"dataset": "mnist5k", "model": "lenet", "lr": 1e-3, "batch_size": 64, "seed": 0,
                            "size": None, "augment_shift": 0, "root": None, "adversarial": None, "eps": None,
                            "adv_steps": None, "dp": False, "epsilon": None, "sigma": None, "delta": None,
                            "max_grad_norm": None, "max_physical_batch": None, "dp_fix_model": False,
                            "noise_multiplier": None, "dp_epochs": None}
ADVERSARIAL = ("fgsm", "pgd")
#: Defaults that replace DEFAULTS' with ``--dp`` (measured on mnist5k with ``--model dp_cnn``, DP-SGD at epsilon 3,
#: one seed, test accuracy after 20 epochs: Adam lr 0.01, B 512, C 0.1: 0.904; lr 0.003: 0.813; lr 0.001: 0.724;
#: 10 epochs, lr 0.01: 0.872). Large Poisson batches and a small clipping norm (Tramer & Boneh 2021,
#: arXiv:2011.11660); the batch is at most a quarter of the training images when not given.
DP_DEFAULTS: dict[str, Any] = {"lr": 1e-2, "batch_size": 512, "max_grad_norm": 0.1}
#: The options that only ``--dp`` takes (``noise_multiplier`` and ``dp_epochs`` are resolved, not given).
DP_OPTIONS = ("epsilon", "sigma", "delta", "max_grad_norm", "max_physical_batch", "dp_fix_model")


# ------------------------------------------------------------------------------ data
def _split_images(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    if getattr(ds, "multilabel", False):
        raise ValueError("--dataset: multi-label datasets are not supported by train classifier (one label per image)")
    if hasattr(ds, "images"):
        x = ds.images
    else:
        x = torch.stack([ds[i][0] for i in range(len(ds))]) if len(ds) else torch.empty(0)
    if x.ndim != 4:
        raise ValueError(f"--dataset: train classifier needs 2-D images (C, H, W), got {tuple(x.shape[1:])}")
    return x, torch.as_tensor(ds.targets, dtype=torch.long).reshape(-1)


# ------------------------------------------------------------------------------ model set-up
def _model_kwargs(name: str, k: int, c: int, h: int, w: int) -> dict[str, Any]:
    from mlimaging.models import model_info

    defaults = model_info(name).defaults
    if "num_classes" not in defaults:
        raise ValueError(f"--model {name!r} is not an image classifier (it takes no num_classes)")
    kwargs: dict[str, Any] = {"num_classes": k}
    if "in_channels" in defaults:
        kwargs["in_channels"] = c
    if "input_shape" in defaults:
        kwargs["input_shape"] = [c, h, w]
    if "input_size" in defaults:
        kwargs["input_size"] = min(h, w)
    return kwargs


def _build(name: str, kwargs: dict[str, Any], seed: int | None = None) -> nn.Module:
    from mlimaging.models import create_model

    kw = {**kwargs, **({"input_shape": tuple(kwargs["input_shape"])} if "input_shape" in kwargs else {})}
    return create_model(name, seed=seed, **kw)


def _fit_model(name: str, k: int, c: int, native: tuple[int, int], size: int | None, seed: int
               ) -> tuple[nn.Module, dict[str, Any], tuple[int, int]]:
    """The model, its kwargs and the input size: native (or ``--size``), else the model's default input."""
    import torch

    from mlimaging.models import model_info

    candidates = [(size, size)] if size is not None else [native, tuple(model_info(name).input_shape[-2:])]
    error: Exception | None = None
    for hw in dict.fromkeys(candidates):
        kwargs = _model_kwargs(name, k, c, *hw)
        try:
            model = _build(name, kwargs, seed)  # a model may refuse the size when built (VGG: >= 32 px)
            with torch.no_grad():
                out = model.eval()(torch.zeros(2, c, *hw))
        except (ValueError, RuntimeError) as exc:
            error = exc
            continue
        model.train()
        if out.ndim != 2 or out.shape[1] != k:
            raise ValueError(f"--model {name!r} is not an image classifier: its output has shape {tuple(out.shape)}, "
                             f"expected (batch, {k})")
        return model, kwargs, hw
    raise ValueError(f"--model {name!r} cannot take {c}-channel images of {candidates[0][0]} x {candidates[0][1]} "
                     f"pixels: {error}")


# ------------------------------------------------------------------------------ run folder
def _figures(run: Any, history: Any, cm: np.ndarray, classes: list[str], seed: int) -> None:
    import numpy as np

    from mlimaging.reporting.figures import plt

    private = "epsilon" in history.keys()
    fig, axes = plt.subplots(1, 3 if private else 2, figsize=(13 if private else 9, 3.2))
    axes[0].plot(history["epoch"], history["loss"], "o-", ms=3, label="train")
    axes[0].plot(history["epoch"], history["val_loss"], "s--", ms=3, label="validation")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy")
    axes[0].legend()
    axes[1].plot(history["epoch"], history["val_accuracy"], "o-", ms=3)
    axes[1].set(xlabel="epoch", ylabel="validation accuracy")
    if private:  # DP-SGD: the privacy spent after each epoch (EpsilonCallback)
        axes[2].plot(history["epoch"], history["epsilon"], "o-", ms=3, color="C3")
        axes[2].set(xlabel="epoch", ylabel="epsilon spent", ylim=(0, None))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Learning curves (seed {seed})")
    fig.tight_layout()
    run.figure(fig, "learning-curves", caption=f"Loss and validation accuracy per epoch (seed {seed}).")
    k = len(classes)
    fig, ax = plt.subplots(figsize=(1.2 + 0.4 * k, 1.0 + 0.4 * k))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        if v and k <= 20:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=6, color="white" if v > cm.max() / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", xticks=range(k), yticks=range(k), title=f"Test confusion matrix (seed {seed})")
    ax.set_xticklabels(classes, fontsize=6, rotation=90)
    ax.set_yticklabels(classes, fontsize=6)
    run.figure(fig, "confusion-matrix", caption=f"Test images of class i (row) predicted as j (column), best weights (seed {seed}).")


# ------------------------------------------------------------------------------ commands
@command("classifier", typer_app=train_app)
def train_classifier_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, model.pt, report)."),
    dataset: str | None = typer.Option(None, "--dataset", help="A dataset of `mlimaging datasets` (default: mnist5k)."),
    root: str | None = typer.Option(None, "--root", help="Data folder or file (mnist, medmnist, image-folder)."),
    model: str | None = typer.Option(None, "--model", help="A classifier of the model registry (default: lenet)."),
    epochs: int = typer.Option(10, "--epochs", help="Total epochs (a resumed run continues up to this number)."),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default: 0.001; 0.01 with --dp)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step (default: 64; with --dp 512, "
                                          "at most a quarter of the training images)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the split, initialisation and batch order (default: 0)."),
    size: int | None = typer.Option(None, "--size", help="Resize images to SIZE x SIZE (default: as stored, or the "
                                    "model's input size when it cannot take them)."),
    augment_shift: int | None = typer.Option(None, "--augment-shift", help="Random translations of up to N pixels "
                                             "during training (default: 0)."),
    adversarial: str | None = typer.Option(None, "--adversarial", help="Adversarial training: fgsm (fast AT, FGSM "
                                           "from a random start, Wong et al. 2020) or pgd (Madry et al. 2018)."),
    eps: float | None = typer.Option(None, "--eps", help="Adversarial training budget (L-infinity, images in [0, 1]; "
                                     "default 0.3)."),
    adv_steps: int | None = typer.Option(None, "--adv-steps", help="PGD steps of --adversarial pgd (default 7; step "
                                         "size 2.5 eps / steps)."),
    dp: bool = typer.Option(False, "--dp", help="Differentially private training (DP-SGD, Abadi et al. 2016): "
                            "Poisson batches of expected size --batch-size, each image's gradient clipped to "
                            "--max-grad-norm, Gaussian noise; epsilon spent printed per epoch. Its own defaults: "
                            "--lr 0.01, --batch-size 512, --max-grad-norm 0.1. Use --model dp_cnn (tanh + "
                            "GroupNorm): --epsilon 3 --epochs 20 reaches about 90% on mnist5k."),
    target_epsilon: float | None = typer.Option(None, "--epsilon", help="--dp: the budget epsilon of the whole "
                                                "run (--epochs); the noise multiplier is solved for it."),
    sigma: float | None = typer.Option(None, "--sigma", help="--dp: the noise multiplier (noise std / clipping "
                                       "norm) instead of --epsilon."),
    delta: float | None = typer.Option(None, "--delta", help="--dp: delta of the guarantee (default 1e-5)."),
    max_grad_norm: float | None = typer.Option(None, "--max-grad-norm", help="--dp: clipping norm C of each "
                                               "image's gradient (default 0.1)."),
    max_physical_batch: int | None = typer.Option(None, "--max-physical-batch", help="--dp: most images per "
                                                  "forward/backward (bounds memory; same update)."),
    dp_fix_model: bool = typer.Option(False, "--dp-fix-model", help="--dp: replace BatchNorm layers by GroupNorm."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
) -> None:
    """Train an image classifier with the training engine; checkpoints, model.pt and a report in --out.

    With --dp it trains with DP-SGD and reports the privacy spent (epsilon at --delta)."""
    import torch
    from rich.table import Table
    from torch import nn
    from torch.utils.data import TensorDataset

    from mlimaging.data import load_dataset
    from mlimaging.data.preprocessing import has_light_background, resize_images
    from mlimaging.data.transforms import ShiftAugment
    from mlimaging.metrics import accuracy, confusion_matrix
    from mlimaging.training import evaluate, fit, load_checkpoint

    check_positive(epochs, "--epochs", integer=True)
    check_positive(lr, "--lr")
    check_positive(batch_size, "--batch-size", integer=True)
    check_positive(size, "--size", integer=True)
    for value, option in ((seed, "--seed"), (augment_shift, "--augment-shift")):
        if value is not None and value < 0:
            raise ValueError(f"{option} must be >= 0, got {value}")
    if adversarial is not None and adversarial not in ADVERSARIAL:
        raise ValueError(f"--adversarial must be one of {', '.join(ADVERSARIAL)}, got {adversarial!r}")
    if adversarial is None and (eps is not None or adv_steps is not None):
        raise ValueError("--eps and --adv-steps need --adversarial fgsm or pgd")
    if adversarial == "fgsm" and adv_steps is not None:
        raise ValueError("--adv-steps needs --adversarial pgd (fast adversarial training takes one FGSM step)")
    check_positive(eps, "--eps")
    check_positive(adv_steps, "--adv-steps", integer=True)
    dp_given = {"epsilon": target_epsilon, "sigma": sigma, "delta": delta, "max_grad_norm": max_grad_norm,
                "max_physical_batch": max_physical_batch, "dp_fix_model": dp_fix_model or None}
    check_device(device)
    stored, clear = prepare_out(out, resume=resume, force=force, command="train classifier")
    _check_dp(dp or bool(stored and stored.get("dp")), adversarial, dp_given)
    given = {"dataset": dataset, "model": model, "lr": lr, "batch_size": batch_size, "seed": seed, "size": size,
             "augment_shift": augment_shift, "root": root, "adversarial": adversarial, "eps": eps, "adv_steps": adv_steps,
             "dp": dp or None, **dp_given}
    private_run = dp or bool(stored and stored.get("dp"))
    s = resolve_settings(given, stored, {**DEFAULTS, **DP_DEFAULTS} if private_run else DEFAULTS)
    step = _adversarial_step(s, nn.CrossEntropyLoss())

    # image-folder resizes while reading, so a folder of mixed image sizes loads with --size
    options = {"size": (s["size"], s["size"])} if s["dataset"] == "image-folder" and s["size"] else {}
    splits = {sp: load_dataset(s["dataset"], split=sp, root=s["root"], seed=s["seed"], **options)
              for sp in ("train", "val", "test")}
    (xtr, ytr), (xva, yva), (xte, yte) = (_split_images(splits[sp]) for sp in ("train", "val", "test"))
    classes = [str(c) for c in (getattr(splits["train"], "classes", None) or range(int(ytr.max()) + 1))]
    c, native = int(xtr.shape[1]), (int(xtr.shape[2]), int(xtr.shape[3]))
    if s["dp"] and stored is None and batch_size is None:  # the --dp default batch on a small training set
        s["batch_size"] = min(s["batch_size"], max(1, len(ytr) // 4))
    net, kwargs, hw = _fit_model(s["model"], len(classes), c, native, s["size"], s["seed"])
    if s["dp"]:
        _check_batchnorm(net, s)
    xtr, xva, xte = (resize_images(x, hw) for x in (xtr, xva, xte))
    if hasattr(net, "fit_standardizer"):
        net.fit_standardizer(xtr)
    light = sum(has_light_background(x) for x in xtr[:256]) > min(len(xtr), 256) / 2
    meta = {"model": s["model"], "model_kwargs": kwargs, "classes": classes, "dataset": s["dataset"],
            "preprocess": {"channels": c, "size": list(hw), "range": [0.0, 1.0], "resize": "bilinear",
                           "background": "light" if light else "dark"}}
    train = ShiftAugment(xtr, ytr, max_shift=s["augment_shift"]) if s["augment_shift"] else TensorDataset(xtr, ytr)
    optimizer: Any = lambda p: torch.optim.Adam(p, lr=s["lr"])  # noqa: E731
    callbacks: list[Any] = [ExportBest(out / "model.pt", "classifier", meta)]
    private = None
    if s["dp"]:
        private = _make_private(net, optimizer, train, s, epochs)
        meta["privacy"] = _privacy_meta(s, private)
        train, step, optimizer = private.train_data, private.step, private.optimizer
        callbacks = [*private.callbacks, _ExportPrivate(out / "model.pt", "classifier", meta)]
    run = open_run(out, RUN_NAME, {**s, "meta": meta}, stored=stored, clear=clear,
                   command=_command(s, epochs, out), console=err_console)
    try:
        history = fit(net, train, TensorDataset(xva, yva), loss=nn.CrossEntropyLoss(),
                      optimizer=optimizer, epochs=epochs, batch_size=s["batch_size"],
                      seed=s["seed"], checkpoint_dir=out / "checkpoints", resume=stored is not None, run=run,
                      monitor="val_accuracy", callbacks=callbacks, device=device, step=step)
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(f"interrupted: continue with the same command and --resume (checkpoints in {out})")
        raise typer.Exit(130) from None
    net.load_state_dict(load_checkpoint(out / "model.pt")["model"])
    spent = _finish_private(private, out / "model.pt", run) if private is not None else None
    test = evaluate(net, TensorDataset(xte, yte), metrics=("accuracy", "f1_score"), loss=nn.CrossEntropyLoss())
    with torch.no_grad():
        pred = torch.cat([net.eval()(xte[i:i + 512].to(device)).argmax(1).cpu() for i in range(0, len(xte), 512)])
    cm = confusion_matrix(pred, yte, num_classes=len(classes))
    chance = _chance_warning(accuracy(pred, yte), yte, len(classes), s)
    run.log(best_epoch=history.best_epoch, best_val_accuracy=history.best_value, test_accuracy=accuracy(pred, yte),
            test_f1_macro=test["f1_score"], test_loss=test["loss"], confusion_matrix=cm, classes=classes)
    run.section("Training", f"{s['model']} on {s['dataset']} ({len(ytr)} training, {len(yva)} validation, {len(yte)} "
                f"test images, {c} x {hw[0]} x {hw[1]}), Adam lr {s['lr']}, batch {s['batch_size']}, seed {s['seed']}"
                + (f"; adversarial training {s['adversarial']} at eps {s['eps']:g}" if s["adversarial"] else "")
                + (f"; {_dp_text(s)}" if s["dp"] else "") + ".")
    result = {"model": s["model"], "epochs": len(history), "best epoch": history.best_epoch,
              "val accuracy (best)": history.best_value, "test accuracy": accuracy(pred, yte),
              "test F1 (macro)": test["f1_score"], "seed": s["seed"]}
    if spent is not None:
        result.update({"epsilon (model.pt)": spent[0], "epsilon (run)": spent[1], "delta": s["delta"]})
    run.table("Result", [result], caption=f"Test scores of the best epoch's weights (model.pt); seed {s['seed']}."
              + (" Epsilon: privacy spent up to the exported epoch, and by the whole run." if spent else ""))
    if chance:
        run.section("Warning", chance)
    _figures(run, history, cm, classes, s["seed"])
    report = run.finish()
    columns = ["model", "dataset", "epochs", "best epoch", "val accuracy", "test accuracy"]
    table = Table(*columns, *(["epsilon"] if spent else []), title="train classifier")
    table.add_row(s["model"], s["dataset"], str(len(history)), str(history.best_epoch), f"{history.best_value:.4f}",
                  f"{accuracy(pred, yte):.4f}", *([f"{spent[1]:.4g}"] if spent else []))
    console.print(table)
    if spent is not None:
        console.print(f"privacy: epsilon {spent[1]:.4g} at delta {s['delta']:g} spent by the run ({spent[0]:.4g} "
                      f"up to the exported epoch {history.best_epoch}); {_dp_text(s)}", highlight=False, soft_wrap=True)
    if chance:
        err_console.print(f"[yellow]warning:[/] {chance}", highlight=False, soft_wrap=True)
    console.print(f"model: {out / 'model.pt'}\nreport: {report}", soft_wrap=True)


def _chance_warning(test_accuracy: float, labels: torch.Tensor, num_classes: int, s: dict[str, Any]) -> str:
    """A warning when the test accuracy is no better than always answering the most frequent class.

    The margin is two binomial standard errors of that baseline (at least 1 point), so a model that
    learned nothing is flagged and one that learned a little is not.
    """
    import torch

    n = max(len(labels), 1)
    majority = float(torch.bincount(labels.long(), minlength=num_classes).max()) / n
    margin = max(0.01, 2.0 * (majority * (1.0 - majority) / n) ** 0.5)
    if test_accuracy > majority + margin:
        return ""
    hint = "more --epochs or another --lr"
    if s.get("dp"):
        hint = "a larger --epsilon, a smaller --sigma, a larger --batch-size or more --epochs"
    return (f"test accuracy {test_accuracy:.4f} is at chance level (always answering the most frequent class scores "
            f"{majority:.4f}): the model did not learn; try {hint}.")


def _command(s: dict[str, Any], epochs: int, out: Path) -> str:
    parts = ["mlimaging", "train", "classifier", "--dataset", s["dataset"], "--model", s["model"], "--epochs",
             str(epochs), "--lr", str(s["lr"]), "--batch-size", str(s["batch_size"]), "--seed", str(s["seed"]),
             "--out", str(out)]
    for key in ("root", "size", "augment_shift", "adversarial", "eps", "adv_steps"):
        if s[key]:
            parts += [f"--{key.replace('_', '-')}", str(s[key])]
    if s["dp"]:
        parts.append("--dp")
        for key in ("epsilon", "sigma", "delta", "max_grad_norm", "max_physical_batch"):
            if s[key] is not None:
                parts += [f"--{key.replace('_', '-')}", str(s[key])]
        if s["dp_fix_model"]:
            parts.append("--dp-fix-model")
    return " ".join(parts)


# ------------------------------------------------------------------------------ differential privacy
def _check_dp(dp: bool, adversarial: str | None, given: dict[str, Any]) -> None:
    """Bad combinations of the ``--dp`` options: one ``ValueError`` naming them."""
    named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if not dp:
        if named:
            raise ValueError(f"{', '.join(named)} {'needs' if len(named) == 1 else 'need'} --dp (differentially "
                             "private training)")
        return
    if adversarial is not None:
        raise ValueError("--dp and --adversarial exclude each other: choose private or adversarial training")
    if given["epsilon"] is not None and given["sigma"] is not None:
        raise ValueError("give one of --epsilon (the budget; sigma is solved for it) and --sigma (the noise), not both")
    check_positive(given["epsilon"], "--epsilon")
    check_positive(given["max_grad_norm"], "--max-grad-norm")
    check_positive(given["max_physical_batch"], "--max-physical-batch", integer=True)
    if given["sigma"] is not None and not (math.isfinite(given["sigma"]) and given["sigma"] > 0):
        raise ValueError(f"--sigma must be a positive number, got {given['sigma']}")
    if given["delta"] is not None and not 0 < given["delta"] < 1:
        raise ValueError(f"--delta must be in (0, 1), got {given['delta']}")


def _check_batchnorm(net: nn.Module, s: dict[str, Any]) -> None:
    """A model with BatchNorm is one line suggesting ``--dp-fix-model`` (unless given)."""
    from torch import nn

    if s["dp_fix_model"]:
        return
    names = [name for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if names:
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        raise ValueError(f"--dp: model {s['model']!r} has BatchNorm layers ({', '.join(names[:3])}{more}), which mix "
                         "the images of a batch so DP-SGD cannot clip each image's gradient; pass --dp-fix-model to "
                         "replace them by GroupNorm, or choose a model without BatchNorm (e.g. --model lenet)")


def _make_private(net: nn.Module, optimizer: Any, train: Any, s: dict[str, Any], epochs: int) -> Any:
    """:func:`~mlimaging.privacy.dp.make_private` with the run's settings; fills in the defaults and, on a fresh
    run, the noise multiplier solved for ``--epsilon`` (kept in the settings so a resumed run adds the same noise)."""
    from torch import nn

    from mlimaging.privacy.dp import make_private

    s["delta"] = 1e-5 if s["delta"] is None else float(s["delta"])
    s["max_grad_norm"] = DP_DEFAULTS["max_grad_norm"] if s["max_grad_norm"] is None else float(s["max_grad_norm"])
    if s["epsilon"] is None and s["sigma"] is None:
        raise ValueError("--dp needs --epsilon E (the budget of the run) or --sigma S (the noise multiplier)")
    if s["batch_size"] > len(train):
        raise ValueError(f"--batch-size {s['batch_size']} is larger than the {len(train)} training images")
    if s["noise_multiplier"] is None:
        budget = {"target_epsilon": s["epsilon"]} if s["sigma"] is None else {"noise_multiplier": float(s["sigma"])}
        s["dp_epochs"] = epochs
    else:  # resumed: the noise of the original run
        budget = {"noise_multiplier": float(s["noise_multiplier"])}
        if s["epsilon"] is not None and epochs > s["dp_epochs"]:
            err_console.print(f"[yellow]warning:[/] the noise was set for epsilon {s['epsilon']:g} over "
                              f"{s['dp_epochs']} epochs; {epochs} epochs spend more", highlight=False, soft_wrap=True)
    private = make_private(net, optimizer, train, batch_size=s["batch_size"], **budget, target_delta=s["delta"],
                           max_grad_norm=s["max_grad_norm"], epochs=epochs, max_physical_batch_size=s["max_physical_batch"],
                           fix_model=bool(s["dp_fix_model"]), loss=nn.CrossEntropyLoss(), seed=s["seed"])
    s["noise_multiplier"] = private.noise_multiplier
    return private


def _privacy_meta(s: dict[str, Any], private: Any) -> dict[str, Any]:
    return {"mechanism": "DP-SGD", "accountant": "rdp", "noise_multiplier": private.noise_multiplier,
            "max_grad_norm": s["max_grad_norm"], "sample_rate": private.sample_rate,
            "steps_per_epoch": private.steps_per_epoch, "delta": s["delta"], "target_epsilon": s["epsilon"],
            "groupnorm": bool(s["dp_fix_model"])}


def _dp_text(s: dict[str, Any]) -> str:
    budget = f"target epsilon {s['epsilon']:g}, " if s["epsilon"] is not None else ""
    return (f"DP-SGD ({budget}noise multiplier {s['noise_multiplier']:.4g}, clipping norm {s['max_grad_norm']:g}, "
            f"delta {s['delta']:g}, Poisson batches of expected size {s['batch_size']})")


class _ExportPrivate(ExportBest):
    """:class:`ExportBest` that also writes the epsilon spent up to the exported epoch into the metadata."""

    def on_epoch_end(self, state: Any) -> None:
        self.meta["privacy"] = {**self.meta["privacy"], "epsilon": state.logs.get("epsilon")}
        super().on_epoch_end(state)


def _finish_private(private: Any, path: Path, run: Any) -> tuple[float, float]:
    """Write the run's total epsilon into ``model.pt`` and the metrics; (epsilon of model.pt, of the run)."""
    from mlimaging.training import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(path)
    total = private.epsilon()
    meta = ckpt["classifier"]
    meta["privacy"] = {**meta["privacy"], "epsilon_run": total, "steps_run": private.accountant.steps}
    save_checkpoint(ckpt, path)
    exported = float(meta["privacy"].get("epsilon") or total)
    run.log(epsilon=total, epsilon_model=exported, delta=private.delta, noise_multiplier=private.noise_multiplier,
            sample_rate=private.sample_rate, dp_steps=private.accountant.steps)
    return exported, total


def _adversarial_step(s: dict[str, Any], loss: Any) -> Any:
    """The fit step of ``--adversarial`` (None without it); fills in the defaults of --eps and --adv-steps."""
    if s["adversarial"] is None:
        return None
    from mlimaging.robustness import FastAdversarialStep, PGDAdversarialStep

    s["eps"] = 0.3 if s["eps"] is None else float(s["eps"])
    if s["adversarial"] == "fgsm":
        return FastAdversarialStep(eps=s["eps"], alpha=1.25 * s["eps"], loss=loss, seed=s["seed"])
    s["adv_steps"] = 7 if s["adv_steps"] is None else int(s["adv_steps"])
    return PGDAdversarialStep(eps=s["eps"], alpha=2.5 * s["eps"] / s["adv_steps"], steps=s["adv_steps"], loss=loss,
                              seed=s["seed"])


def _load_classifier(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    ckpt = read_checkpoint(path, "`mlimaging train classifier`")
    meta = ckpt.get("classifier")
    if meta is None:  # fit's last.pt / best.pt: the settings live in the run folder above checkpoints/
        folder = run_config(path)  # of a classifier run only: a GAN's or a segmenter's was read as one
        meta = folder.get("config", {}).get("meta") if folder.get("experiment") == RUN_NAME else None
    if not isinstance(meta, dict) or "model" not in ckpt:
        raise ValueError(f"--checkpoint {path} does not say how to rebuild the model; use the model.pt written by "
                         "`mlimaging train classifier`")
    model = _build(meta["model"], meta["model_kwargs"])
    if meta.get("privacy", {}).get("groupnorm"):  # trained with --dp --dp-fix-model: BatchNorm became GroupNorm
        from mlimaging.privacy.dp import to_groupnorm

        to_groupnorm(model)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"--checkpoint {path}: the weights do not fit model {meta['model']!r}: {exc}") from None
    return model.eval(), meta


@command("predict")
def predict_cmd(
    images: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, NIfTI, NPY, ...)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt written by `mlimaging train classifier`."),
    invert: bool | None = typer.Option(None, "--invert/--no-invert", help="Use 1 - image, or never (default: "
                                       "invert, with a warning, an image whose background is light when the "
                                       "training images' was dark, or the reverse)."),
    top: int = typer.Option(3, "--top", help="Show the probabilities of the TOP most likely classes per image."),
) -> None:
    """Classify images with a trained classifier: the class and the probabilities per image."""
    import torch
    from rich.table import Table

    from mlimaging.data import read_image
    from mlimaging.data.preprocessing import background_level, has_light_background, prepare_image

    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    model, meta = _load_classifier(checkpoint)
    pre, classes = meta["preprocess"], meta["classes"]
    trained = pre.get("background")  # "dark" or "light"; absent in checkpoints of older versions
    batch = []
    for path in images:
        array, _ = read_image(path)
        x = prepare_image(array, channels=int(pre["channels"]), size=tuple(pre["size"]), name=str(path))
        flip = invert
        if invert is None:
            light = has_light_background(x)
            border, centre = background_level(x)
            if trained is not None and light != (trained == "light"):
                flip = True
                err_console.print(f"[yellow]warning:[/] {path}: its background is {'light' if light else 'dark'} "
                                  f"(border mean {border:.2f}, centre {centre:.2f}) but the model was trained on "
                                  f"{trained} backgrounds; classifying 1 - image (pass --no-invert to keep it)",
                                  highlight=False, soft_wrap=True)
            elif trained is None and light:
                err_console.print(f"[yellow]warning:[/] {path} looks like a dark object on a light background "
                                  f"(border mean {border:.2f}, centre {centre:.2f}); if the model was trained on "
                                  "light digits on black (MNIST), pass --invert", highlight=False, soft_wrap=True)
        batch.append(1.0 - x if flip else x)
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack(batch)), dim=1)
    k = min(top, len(classes))
    table = Table("image", "class", "probability", f"top {k}" if k < len(classes) else "all classes",
                  title=f"{meta['model']} ({checkpoint})")
    for path, p in zip(images, probs, strict=True):
        order = torch.argsort(p, descending=True)[:k].tolist()
        table.add_row(str(path), classes[order[0]], f"{float(p[order[0]]):.4f}",
                      ", ".join(f"{classes[j]}: {float(p[j]):.3f}" for j in order))
    console.print(table)

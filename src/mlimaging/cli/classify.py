"""``mlimaging train classifier`` and ``mlimaging predict``: image classification over the engine.

``train classifier`` loads a dataset (:func:`mlimaging.data.load_dataset`), builds a registered
model (:func:`mlimaging.models.create_model`) sized for it and trains it with
:func:`mlimaging.training.fit` (Adam, cross-entropy) into a run folder::

    OUT/config.json, metrics.json, report.html, figures/, tables/
    OUT/checkpoints/last.pt, best.pt      fit's checkpoints (resume from last.pt)
    OUT/model.pt                          best weights (by validation accuracy) + what predict needs

``model.pt`` holds ``{"model": state_dict, "classifier": meta, "epoch": ...}`` where ``meta``
names the model, its keyword arguments, the class names and the input preprocessing
(channels, size, value range); it loads with ``torch.load(weights_only=True)``.
``predict`` reads any image :func:`mlimaging.data.read_image` reads, scales it to [0, 1],
converts its channels and resizes it (bilinear) exactly as training did, and prints the
class and the probabilities :math:`\\operatorname{softmax}(f_\\theta(x))` per image.

Examples
--------
``mlimaging train classifier --dataset mnist5k --model lenet --epochs 10 --out runs/lenet``
then ``mlimaging predict --checkpoint runs/lenet/model.pt digit.png``.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import typer
from rich.table import Table
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.cli.app import command, console, err_console
from mlimaging.cli.train import train_app

__all__ = ["predict_cmd", "prepare_image", "train_classifier_cmd"]

RUN_NAME = "train-classifier"
#: What a run folder of ``train classifier`` may hold; ``--force`` deletes nothing else.
RUN_ENTRIES = {"config.json", "metrics.json", "report.html", "figures", "tables", "checkpoints", "model.pt",
               ".config.json.tmp", ".metrics.json.tmp"}
DEFAULTS: dict[str, Any] = {"dataset": "mnist5k", "model": "lenet", "lr": 1e-3, "batch_size": 64, "seed": 0,
                            "size": None, "augment_shift": 0, "root": None}


# ------------------------------------------------------------------------------ preprocessing
def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(B, C, H, W)`` to ``size`` (antialiased when shrinking); identity if equal."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink).clamp_(0, 1)


def prepare_image(array: np.ndarray, *, channels: int, size: tuple[int, int], name: str = "image") -> torch.Tensor:
    """One image array as the model's input ``(channels, H, W)`` float32 in [0, 1].

    Values: ``uint8`` / ``uint16`` divided by 255 / 65535, ``bool`` as 0/1, other arrays
    min-max scaled to [0, 1] unless already inside it. Layout: ``(H, W)`` grayscale,
    ``(H, W, 3|4)`` RGB(A) (alpha dropped) or ``(C, H, W)`` with C in 1, 3. Grayscale to
    RGB repeats the channel; RGB to grayscale is :math:`0.299 R + 0.587 G + 0.114 B`.
    Then the bilinear resize that training used.

    Examples
    --------
    >>> prepare_image(np.full((8, 8), 255, np.uint8), channels=1, size=(4, 4)).shape
    torch.Size([1, 4, 4])
    """
    arr = np.asarray(array)
    if arr.dtype.kind not in "biuf" or arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty numeric image, got dtype {arr.dtype} shape {arr.shape}")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] not in (1, 3):
        arr = np.moveaxis(arr[..., :3], -1, 0)
    elif arr.ndim == 2:
        arr = arr[None]
    elif not (arr.ndim == 3 and arr.shape[0] in (1, 3)):
        raise ValueError(f"{name}: expected a 2-D grayscale or RGB image, got an array of shape {arr.shape}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    else:
        x = arr.astype(np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name}: the image holds NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.shape[0] == 3 and channels == 1:
        t = (0.299 * t[0] + 0.587 * t[1] + 0.114 * t[2])[None]
    elif t.shape[0] == 1 and channels == 3:
        t = t.expand(3, -1, -1)
    elif t.shape[0] != channels:
        raise ValueError(f"{name}: the model takes {channels} channels, the image has {t.shape[0]}")
    return _resize(t[None], size)[0].contiguous()


def _split_images(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
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
    from mlimaging.models import model_info

    candidates = [(size, size)] if size is not None else [native, tuple(model_info(name).input_shape[-2:])]
    error: Exception | None = None
    for hw in dict.fromkeys(candidates):
        kwargs = _model_kwargs(name, k, c, *hw)
        model = _build(name, kwargs, seed)
        try:
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


class _ExportBest:
    """fit callback: write ``model.pt`` (weights + classifier metadata) whenever the best epoch improves."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta

    def on_epoch_end(self, state: Any) -> None:
        from mlimaging.training import save_checkpoint

        if state.rank == 0 and state.history.best_epoch == state.epoch:
            model = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
            save_checkpoint({"model": model, "classifier": self.meta, "epoch": state.epoch,
                             "val_accuracy": state.logs.get("val_accuracy")}, self.path)


# ------------------------------------------------------------------------------ run folder
def _check_positive(value: Any, option: str, *, integer: bool = False) -> None:
    if value is None:
        return
    if (integer and int(value) < 1) or not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{option} must be a positive {'integer' if integer else 'number'}, got {value}")


def _prepare_out(out: Path, *, resume: bool, force: bool) -> tuple[dict[str, Any] | None, bool]:
    """Settings of the run to resume (None for a fresh run), and whether ``out`` must be cleared first."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    last = out / "checkpoints" / "last.pt"
    if resume and last.exists():
        cfg_file = out / "config.json"
        if not cfg_file.is_file():
            raise ValueError(f"--resume: {cfg_file} is missing, so the run's settings are unknown")
        return json.loads(cfg_file.read_text())["config"], False
    if not out.exists() or not any(out.iterdir()):
        if resume:
            err_console.print(f"nothing to resume in {out}: starting a new run", highlight=False)
        return None, out.exists()
    if resume:
        raise ValueError(f"--resume: {out} holds no checkpoints/last.pt to resume from")
    if not force:
        raise FileExistsError(f"--out {out} already exists; pass --force to overwrite it or --resume to continue it")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in RUN_ENTRIES)
    if foreign:
        raise ValueError(f"--force: {out} holds files that train classifier did not write ({', '.join(foreign[:5])}); "
                         "refusing to delete them, choose another --out")
    return None, True


def _settings(given: dict[str, Any], stored: dict[str, Any] | None) -> dict[str, Any]:
    if stored is None:
        return {k: (DEFAULTS[k] if given[k] is None else given[k]) for k in DEFAULTS}
    changed = [f"--{k.replace('_', '-')} {given[k]} (the run used {stored.get(k)})"
               for k in DEFAULTS if given[k] is not None and given[k] != stored.get(k)]
    if changed:
        raise ValueError("--resume continues the run with its own settings; these differ: " + "; ".join(changed))
    return {k: stored.get(k, DEFAULTS[k]) for k in DEFAULTS}


def _figures(run: Any, history: Any, cm: np.ndarray, classes: list[str], seed: int) -> None:
    from mlimaging.reporting.figures import plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    axes[0].plot(history["epoch"], history["loss"], "o-", ms=3, label="train")
    axes[0].plot(history["epoch"], history["val_loss"], "s--", ms=3, label="validation")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy")
    axes[0].legend()
    axes[1].plot(history["epoch"], history["val_accuracy"], "o-", ms=3)
    axes[1].set(xlabel="epoch", ylabel="validation accuracy")
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
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default: 0.001)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step (default: 64)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the split, initialisation and batch order (default: 0)."),
    size: int | None = typer.Option(None, "--size", help="Resize images to SIZE x SIZE (default: as stored, or the "
                                    "model's input size when it cannot take them)."),
    augment_shift: int | None = typer.Option(None, "--augment-shift", help="Random translations of up to N pixels "
                                             "during training (default: 0)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
) -> None:
    """Train an image classifier with the training engine; checkpoints, model.pt and a report in --out."""
    from mlimaging.data import load_dataset
    from mlimaging.data.transforms import ShiftAugment
    from mlimaging.metrics import accuracy, confusion_matrix
    from mlimaging.reporting import Run
    from mlimaging.training import evaluate, fit, load_checkpoint

    _check_positive(epochs, "--epochs", integer=True)
    _check_positive(lr, "--lr")
    _check_positive(batch_size, "--batch-size", integer=True)
    _check_positive(size, "--size", integer=True)
    for value, option in ((seed, "--seed"), (augment_shift, "--augment-shift")):
        if value is not None and value < 0:
            raise ValueError(f"{option} must be >= 0, got {value}")
    if resume and force:
        raise ValueError("--resume and --force exclude each other: continue the run, or delete it and start again")
    stored, clear = _prepare_out(out, resume=resume, force=force)
    given = {"dataset": dataset, "model": model, "lr": lr, "batch_size": batch_size, "seed": seed, "size": size,
             "augment_shift": augment_shift, "root": root}
    s = _settings(given, stored)

    splits = {sp: load_dataset(s["dataset"], split=sp, root=s["root"], seed=s["seed"]) for sp in ("train", "val", "test")}
    (xtr, ytr), (xva, yva), (xte, yte) = (_split_images(splits[sp]) for sp in ("train", "val", "test"))
    classes = [str(c) for c in (getattr(splits["train"], "classes", None) or range(int(ytr.max()) + 1))]
    c, native = int(xtr.shape[1]), (int(xtr.shape[2]), int(xtr.shape[3]))
    net, kwargs, hw = _fit_model(s["model"], len(classes), c, native, s["size"], s["seed"])
    xtr, xva, xte = (_resize(x, hw) for x in (xtr, xva, xte))
    if hasattr(net, "fit_standardizer"):
        net.fit_standardizer(xtr)
    meta = {"model": s["model"], "model_kwargs": kwargs, "classes": classes, "dataset": s["dataset"],
            "preprocess": {"channels": c, "size": list(hw), "range": [0.0, 1.0], "resize": "bilinear"}}
    if clear:  # only now, once the data and the model are known to work
        shutil.rmtree(out)
    if stored is None:
        run = Run.create(RUN_NAME, {**s, "meta": meta}, path=out, command=_command(s, epochs, out),
                         console=err_console)
    else:
        previous = json.loads((out / "config.json").read_text())
        previous.pop("error", None)
        run = Run(out, RUN_NAME, previous, console=err_console)
        if (out / "metrics.json").is_file():
            run.metrics = json.loads((out / "metrics.json").read_text())
    train = ShiftAugment(xtr, ytr, max_shift=s["augment_shift"]) if s["augment_shift"] else TensorDataset(xtr, ytr)
    try:
        history = fit(net, train, TensorDataset(xva, yva), loss=nn.CrossEntropyLoss(),
                      optimizer=lambda p: torch.optim.Adam(p, lr=s["lr"]), epochs=epochs, batch_size=s["batch_size"],
                      seed=s["seed"], checkpoint_dir=out / "checkpoints", resume=stored is not None, run=run,
                      monitor="val_accuracy", callbacks=[_ExportBest(out / "model.pt", meta)], device=device)
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(f"interrupted: continue with the same command and --resume (checkpoints in {out})")
        raise typer.Exit(130) from None
    net.load_state_dict(load_checkpoint(out / "model.pt")["model"])
    test = evaluate(net, TensorDataset(xte, yte), metrics=("accuracy", "f1_score"), loss=nn.CrossEntropyLoss())
    with torch.no_grad():
        pred = torch.cat([net.eval()(xte[i:i + 512].to(device)).argmax(1).cpu() for i in range(0, len(xte), 512)])
    cm = confusion_matrix(pred, yte, num_classes=len(classes))
    run.log(best_epoch=history.best_epoch, best_val_accuracy=history.best_value, test_accuracy=accuracy(pred, yte),
            test_f1_macro=test["f1_score"], test_loss=test["loss"], confusion_matrix=cm, classes=classes)
    run.section("Training", f"{s['model']} on {s['dataset']} ({len(ytr)} training, {len(yva)} validation, {len(yte)} "
                f"test images, {c} x {hw[0]} x {hw[1]}), Adam lr {s['lr']}, batch {s['batch_size']}, seed {s['seed']}.")
    run.table("Result", [{"model": s["model"], "epochs": len(history), "best epoch": history.best_epoch,
                          "val accuracy (best)": history.best_value, "test accuracy": accuracy(pred, yte),
                          "test F1 (macro)": test["f1_score"], "seed": s["seed"]}],
              caption=f"Test scores of the best epoch's weights (model.pt); seed {s['seed']}.")
    _figures(run, history, cm, classes, s["seed"])
    report = run.finish()
    table = Table("model", "dataset", "epochs", "best epoch", "val accuracy", "test accuracy", title="train classifier")
    table.add_row(s["model"], s["dataset"], str(len(history)), str(history.best_epoch), f"{history.best_value:.4f}",
                  f"{accuracy(pred, yte):.4f}")
    console.print(table)
    console.print(f"model: {out / 'model.pt'}\nreport: {report}", soft_wrap=True)


def _command(s: dict[str, Any], epochs: int, out: Path) -> str:
    parts = ["mlimaging", "train", "classifier", "--dataset", s["dataset"], "--model", s["model"], "--epochs",
             str(epochs), "--lr", str(s["lr"]), "--batch-size", str(s["batch_size"]), "--seed", str(s["seed"]),
             "--out", str(out)]
    for key in ("root", "size", "augment_shift"):
        if s[key]:
            parts += [f"--{key.replace('_', '-')}", str(s[key])]
    return " ".join(parts)


def _load_classifier(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    from mlimaging.training import load_checkpoint

    try:
        ckpt = load_checkpoint(path)
    except ValueError:
        raise ValueError(f"--checkpoint {path} is not a checkpoint readable with torch.load(weights_only=True); "
                         "use the model.pt written by `mlimaging train classifier`") from None
    meta = ckpt.get("classifier")
    if meta is None:  # fit's last.pt / best.pt: the settings live in the run folder above checkpoints/
        cfg = path.resolve().parent.parent / "config.json"
        if cfg.is_file():
            meta = json.loads(cfg.read_text()).get("config", {}).get("meta")
    if not isinstance(meta, dict) or "model" not in ckpt:
        raise ValueError(f"--checkpoint {path} does not say how to rebuild the model; use the model.pt written by "
                         "`mlimaging train classifier`")
    model = _build(meta["model"], meta["model_kwargs"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"--checkpoint {path}: the weights do not fit model {meta['model']!r}: {exc}") from None
    return model.eval(), meta


@command("predict")
def predict_cmd(
    images: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, NIfTI, NPY, ...)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt written by `mlimaging train classifier`."),
    invert: bool = typer.Option(False, "--invert", help="Use 1 - image (dark digits on a light background)."),
    top: int = typer.Option(3, "--top", help="Show the probabilities of the TOP most likely classes per image."),
) -> None:
    """Classify images with a trained classifier: the class and the probabilities per image."""
    from mlimaging.data import read_image

    if top < 1:
        raise ValueError(f"--top must be >= 1, got {top}")
    model, meta = _load_classifier(checkpoint)
    pre, classes = meta["preprocess"], meta["classes"]
    batch = []
    for path in images:
        array, _ = read_image(path)
        x = prepare_image(array, channels=int(pre["channels"]), size=tuple(pre["size"]), name=str(path))
        batch.append(1.0 - x if invert else x)
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

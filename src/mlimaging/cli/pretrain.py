"""``mlimaging pretrain`` and ``mlimaging probe``: self-supervised pretraining and its evaluation.

``pretrain METHOD`` (``simclr``, ``mae``, ``ijepa``, ``triplet``) builds the method of
:mod:`mlimaging.selfsupervised` for the dataset's images and trains it, without labels, with
:func:`mlimaging.training.fit` and :class:`~mlimaging.selfsupervised.base.SelfSupervisedStep`
into a run folder::

    OUT/config.json, metrics.json, report.html, figures/, tables/
    OUT/checkpoints/last.pt, best.pt      fit's checkpoints (resume from last.pt)
    OUT/model.pt                          the encoder f after the last epoch + how to rebuild it

``model.pt`` holds ``{"encoder": state_dict, "pretrain": meta, "epoch": ...}``; ``meta`` names
the method, the encoder (``encoder_name`` and ``encoder_kwargs`` for a CNN encoder built by
:func:`~mlimaging.selfsupervised.encoders.make_encoder`; ``method_kwargs`` for MAE and I-JEPA,
whose encoder is the method's ViT), the image size and channels; it loads with
``torch.load(weights_only=True)``.

``--resume`` continues from ``OUT/checkpoints/last.pt`` with the run's settings (model, optimiser,
the step's generator of views and masks): an interrupted run resumed with the same ``--epochs``
ends with exactly the weights of an uninterrupted one. A larger ``--epochs`` trains on; I-JEPA's
EMA momentum schedule then spans the new total of steps.

``probe`` rebuilds the encoder from ``model.pt`` and judges its representation
:math:`h = f(x)` on a stratified fraction of the labels: a linear classifier on the frozen
features (:func:`~mlimaging.selfsupervised.evaluation.linear_probe`), fine-tuning of the encoder
with a linear head (``--fine-tune``), or the weighted kNN of Wu et al. (2018) (``--knn``);
``--baseline`` adds the same architecture trained from scratch on the same labels.

Examples
--------
``mlimaging pretrain simclr --dataset mnist5k --epochs 50 --out runs/simclr`` then
``mlimaging probe --checkpoint runs/simclr/model.pt --dataset mnist5k --labels 0.01 --baseline``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._run_folder import (
    check_device,
    check_positive,
    open_run,
    prepare_out,
    read_checkpoint,
    resolve_settings,
)
from mlimaging.cli.app import command, console, err_console

if TYPE_CHECKING:  # torch is imported inside the commands: `mlimaging --help` stays fast
    import torch
    from torch import nn

__all__ = ["METHODS", "build_method", "fresh_encoder", "load_encoder", "load_images", "pretrain_cmd", "probe_cmd"]

RUN_NAME = "pretrain"
METHODS = ("simclr", "mae", "ijepa", "triplet")
DATASETS = ("mnist5k", "digits", "image-folder")
DEFAULTS: dict[str, Any] = {"method": None, "dataset": "mnist5k", "root": None, "size": None, "patch_size": None,
                            "lr": None, "batch_size": 256, "seed": 0, "flip": None}
#: Adam (CNN encoders) or AdamW with weight decay 0.05 (ViT encoders, as MAE and I-JEPA train them).
LR = {"simclr": 1e-3, "triplet": 1e-3, "mae": 1e-3, "ijepa": 1e-3}
#: Contrastive methods want large batches (many negatives); MAE and I-JEPA want optimiser steps (at batch 256
#: MAE stalls at the mean image within a CPU budget where batch 64 learns: benchmarks/selfsupervised.py).
BATCH = {"simclr": 256, "triplet": 256, "mae": 64, "ijepa": 64}
WEIGHT_DECAY = {"simclr": 0.0, "triplet": 0.0, "mae": 0.05, "ijepa": 0.05}
CNN_FEATURES = 128


# ------------------------------------------------------------------------------ data
def load_images(dataset: str, split: str, *, root: str | None, seed: int, size: int | None,
                channels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, C, S, S)`` in [0, 1] and labels of one split; resized to ``size`` (default: as
    stored) and converted to ``channels`` (grey <-> RGB) when given."""
    import torch

    from mlimaging.data import load_dataset
    from mlimaging.data.preprocessing import resize_images

    if dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if dataset == "image-folder" and root is None:
        raise ValueError("--dataset image-folder needs --root: a folder with one subfolder of images per class")
    options = {"size": (size, size)} if dataset == "image-folder" and size else {}
    ds = load_dataset(dataset, split=split, root=root, seed=seed, **options)
    x = ds.images if hasattr(ds, "images") else torch.stack([ds[i][0] for i in range(len(ds))]) if len(ds) else None
    if x is None or x.ndim != 4 or len(x) == 0:
        raise ValueError(f"--dataset {dataset}: the {split} split holds no 2-D images")
    y = torch.as_tensor(ds.targets, dtype=torch.long).reshape(-1)
    if x.shape[-1] != x.shape[-2] and size is None:
        raise ValueError(f"--dataset {dataset}: images are {x.shape[-2]} x {x.shape[-1]}; pass --size to make them square")
    s = size or int(x.shape[-1])
    x = resize_images(x.float(), (s, s))
    if channels is not None and x.shape[1] != channels:
        if channels == 1:
            x = x.mean(1, keepdim=True)
        elif x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        else:
            raise ValueError(f"--dataset {dataset}: {x.shape[1]}-channel images, the encoder takes {channels}")
    return x.contiguous(), y


def patch_size_for(size: int) -> int:
    """A patch size dividing ``size`` whose grid side is closest to 7 (28 px -> 4, 32 -> 4, 64 -> 8)."""
    options = [p for p in range(2, size + 1) if size % p == 0 and size // p >= 4]
    if not options:
        raise ValueError(f"--size {size}: MAE and I-JEPA need images of at least 8 px with a patch size dividing them")
    return min(options, key=lambda p: (abs(size // p - 7), p))


# ------------------------------------------------------------------------------ methods
def build_method(method: str, *, channels: int, image_size: int, patch_size: int | None = None,
                 total_steps: int = 1000, flip: bool = True, options: dict[str, Any] | None = None
                 ) -> tuple[nn.Module, dict[str, Any]]:
    """The self-supervised ``method`` for ``channels`` x ``image_size`` images and the metadata that
    rebuilds its encoder (:func:`load_encoder`). ``flip=False`` leaves horizontal flips out of the
    views of simclr and triplet (digits: a mirrored 2 is no 2). ``options``: more keyword arguments
    of :class:`~mlimaging.selfsupervised.IJEPA` (default
    :data:`~mlimaging.selfsupervised.ijepa.IJEPA_OPTIONS`; ``{}`` gives the
    paper's I-JEPA)."""
    from mlimaging.selfsupervised.augment import simclr_augment
    from mlimaging.selfsupervised.encoders import make_encoder

    meta: dict[str, Any] = {"method": method, "image_size": image_size, "channels": channels}
    if method in ("simclr", "triplet"):
        enc_kwargs = {"in_channels": channels, "feature_dim": CNN_FEATURES}
        encoder = make_encoder("small_cnn", **enc_kwargs)
        # both with SimCLR's augmentations (the method's default pipeline, or the same without flips)
        augment = None if flip else simclr_augment(image_size, channels=channels, flip=False)
        if method == "simclr":
            from mlimaging.selfsupervised.simclr import SimCLR

            model = SimCLR(encoder, augment=augment)
        else:
            from mlimaging.selfsupervised.triplet import TripletNet

            # semi-hard mining: batch-hard mining of self-supervised views collapses more easily
            # (mnist5k, 60 CPU s, linear probe: semi-hard 95.2%, batch-hard 89.9%)
            model = TripletNet(encoder, margin=0.2, mining="semi_hard", augment=augment)
        meta.update(encoder_name="small_cnn", encoder_kwargs=enc_kwargs, method_kwargs={})
    elif method in ("mae", "ijepa"):
        kwargs: dict[str, Any] = {"image_size": image_size, "patch_size": patch_size or patch_size_for(image_size),
                                  "in_channels": channels}
        if method == "mae":
            from mlimaging.selfsupervised.mae import MAE

            model = MAE(**kwargs)
        else:
            from mlimaging.selfsupervised.ijepa import IJEPA, IJEPA_OPTIONS

            kwargs["total_steps"] = int(total_steps)
            kwargs.update(IJEPA_OPTIONS if options is None else options)
            model = IJEPA(**kwargs)
        meta.update(encoder_name="vit", encoder_kwargs={}, method_kwargs=kwargs)
    else:
        raise ValueError(f"METHOD must be one of {', '.join(METHODS)}, got {method!r}")
    meta["feature_dim"] = int(getattr(model, "feature_dim", getattr(model.encoder, "feature_dim", 0)))
    return model, meta


def load_encoder(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The encoder saved in a ``model.pt`` of ``mlimaging pretrain`` (eval mode) and its metadata."""
    ckpt = read_checkpoint(path, "`mlimaging pretrain`")
    meta = ckpt.get("pretrain")
    if not isinstance(meta, dict) or "encoder" not in ckpt or meta.get("method") not in METHODS:
        raise ValueError(f"--checkpoint {path} is not an encoder written by `mlimaging pretrain` (no 'pretrain' "
                         "metadata); use OUT/model.pt of a pretrain run")
    encoder = fresh_encoder(meta)
    try:
        encoder.load_state_dict(ckpt["encoder"])
    except RuntimeError as exc:
        raise ValueError(f"--checkpoint {path}: the weights do not fit the {meta['method']} encoder: "
                         f"{str(exc).splitlines()[0]}") from None
    return encoder.eval(), meta


def fresh_encoder(meta: dict[str, Any], *, seed: int = 0) -> nn.Module:
    """A randomly initialised encoder of the architecture ``meta`` describes."""
    import torch

    torch.manual_seed(seed)
    if meta["method"] in ("simclr", "triplet"):
        from mlimaging.selfsupervised.encoders import make_encoder

        return make_encoder(meta["encoder_name"], **meta["encoder_kwargs"])
    model, _ = build_method(meta["method"], channels=int(meta["channels"]), image_size=int(meta["image_size"]),
                            patch_size=meta["method_kwargs"].get("patch_size"))
    return model.encoder


class ExportEncoder:
    """fit callback: write ``model.pt`` = ``{"encoder": weights, "pretrain": meta, "epoch": ...}`` after
    every epoch (rank 0), so an interrupted run still leaves the last finished epoch's encoder."""

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path, self.meta = path, meta

    def on_epoch_end(self, state: Any) -> None:
        from mlimaging.training import save_checkpoint

        if state.rank == 0:
            method = getattr(state.model, "module", state.model)
            weights = {k: v.detach().cpu() for k, v in method.encoder.state_dict().items()}
            save_checkpoint({"encoder": weights, "pretrain": self.meta, "epoch": state.epoch,
                             "loss": state.logs.get("loss")}, self.path)


def _command(s: dict[str, Any], epochs: int, out: Path) -> str:
    parts = ["mlimaging", "pretrain", s["method"], "--dataset", s["dataset"], "--epochs", str(epochs), "--lr",
             str(s["lr"]), "--batch-size", str(s["batch_size"]), "--seed", str(s["seed"]), "--out", str(out)]
    for key in ("root", "size", "patch_size"):
        if s[key]:
            parts += [f"--{key.replace('_', '-')}", str(s[key])]
    if s["method"] in ("simclr", "triplet"):
        parts.append("--flip" if s["flip"] else "--no-flip")
    return " ".join(parts)


# ------------------------------------------------------------------------------ commands
@command("pretrain")
def pretrain_cmd(
    method: str = typer.Argument(..., help="simclr, mae, ijepa or triplet."),
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, model.pt, report)."),
    dataset: str | None = typer.Option(None, "--dataset", help="mnist5k, digits or image-folder (default: mnist5k)."),
    root: str | None = typer.Option(None, "--root", help="Folder of --dataset image-folder (one subfolder per class)."),
    epochs: int = typer.Option(20, "--epochs", help="Total epochs (a resumed run continues up to this number)."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: 0.001)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per step (default: 256; 64 for mae and ijepa)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the split, initialisation, views and masks "
                                    "(default: 0)."),
    flip: bool | None = typer.Option(None, "--flip/--no-flip", help="Horizontal flips among the views of simclr and "
                                     "triplet (default: off for the digit datasets, on for image-folder)."),
    size: int | None = typer.Option(None, "--size", help="Resize images to SIZE x SIZE (default: as stored)."),
    patch_size: int | None = typer.Option(None, "--patch-size", help="ViT patch size of mae and ijepa (default: a "
                                          "divisor of the size giving about 7 x 7 patches)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
) -> None:
    """Pretrain an encoder without labels (SimCLR, MAE, I-JEPA, triplet); checkpoints, model.pt and a report in --out."""
    import torch
    from rich.table import Table
    from torch.utils.data import TensorDataset

    from mlimaging.selfsupervised.base import SelfSupervisedStep
    from mlimaging.training import fit

    if method not in METHODS:
        raise ValueError(f"METHOD must be one of {', '.join(METHODS)}, got {method!r}")
    check_positive(epochs, "--epochs", integer=True)
    check_positive(lr, "--lr")
    check_positive(batch_size, "--batch-size", integer=True)
    if batch_size is not None and batch_size < 2:
        raise ValueError(f"--batch-size must be at least 2 (contrastive losses, batch norm and I-JEPA's variance term "
                         f"compare the images of a batch), got {batch_size}")
    check_positive(size, "--size", integer=True)
    check_positive(patch_size, "--patch-size", integer=True)
    if seed is not None and seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if dataset is not None and dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    if patch_size is not None and method not in ("mae", "ijepa"):
        raise ValueError(f"--patch-size applies to mae and ijepa, not {method}")
    check_device(device)
    stored, clear = prepare_out(out, resume=resume, force=force, command="pretrain")
    given = {"method": method, "dataset": dataset, "root": root, "size": size, "patch_size": patch_size, "lr": lr,
             "batch_size": batch_size, "seed": seed, "flip": flip}
    s = resolve_settings(given, stored, {**DEFAULTS, "lr": LR[method], "batch_size": BATCH[method]})
    if s["flip"] is None:  # a mirrored digit is another glyph
        s["flip"] = s["dataset"] == "image-folder"

    xtr, _ = load_images(s["dataset"], "train", root=s["root"], seed=s["seed"], size=s["size"])
    xva, _ = load_images(s["dataset"], "val", root=s["root"], seed=s["seed"], size=int(xtr.shape[-1]))
    c, hw = int(xtr.shape[1]), int(xtr.shape[-1])
    if len(xtr) < 2 or len(xtr) % s["batch_size"] == 1:
        raise ValueError(f"--batch-size {s['batch_size']} leaves a last batch of one image of the {len(xtr)} training "
                         "images (contrastive losses and batch norm need two); choose another --batch-size")
    if s["patch_size"] and hw % s["patch_size"]:
        raise ValueError(f"--patch-size {s['patch_size']} does not divide the image size {hw}")
    steps = math.ceil(len(xtr) / s["batch_size"]) * epochs
    torch.manual_seed(s["seed"])
    model, meta = build_method(s["method"], channels=c, image_size=hw, patch_size=s["patch_size"], total_steps=steps,
                               flip=s["flip"])
    meta.update(dataset=s["dataset"], split_seed=s["seed"], root=str(Path(s["root"]).resolve()) if s["root"] else None)
    run = open_run(out, RUN_NAME, {**s, "epochs": epochs, "meta": meta}, stored=stored, clear=clear,
                   command=_command(s, epochs, out), console=err_console)
    wd = WEIGHT_DECAY[s["method"]]
    try:
        history = fit(model, TensorDataset(xtr), TensorDataset(xva), step=SelfSupervisedStep(seed=s["seed"]),
                      optimizer=lambda p: torch.optim.AdamW(p, lr=s["lr"], weight_decay=wd), epochs=epochs,
                      batch_size=s["batch_size"], seed=s["seed"], metrics=(), checkpoint_dir=out / "checkpoints",
                      resume=stored is not None, run=run, monitor="val_loss",
                      callbacks=[ExportEncoder(out / "model.pt", meta)], device=device)
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(f"interrupted: continue with `{_command(s, epochs, out)} --resume` (checkpoints in {out})",
                          soft_wrap=True, highlight=False)
        raise typer.Exit(130) from None
    run.log(final_loss=history["loss"][-1], final_val_loss=history["val_loss"][-1], feature_dim=meta["feature_dim"])
    run.section("Pretraining", f"{s['method']} on {s['dataset']} ({len(xtr)} unlabelled training images, {c} x {hw} x "
                f"{hw}), AdamW lr {s['lr']} weight decay {wd}, batch {s['batch_size']}, seed {s['seed']}; encoder "
                f"{meta['encoder_name']} with {meta['feature_dim']} features.")
    run.table("History", [{"epoch": e, "loss": a, "val_loss": b} for e, a, b in
                          zip(history["epoch"], history["loss"], history["val_loss"], strict=True)],
              caption="Proxy-task loss per epoch (training mean, and validation with fixed views and masks).")
    _loss_figure(run, history, s["method"])
    report = run.finish()
    table = Table("method", "dataset", "epochs", "loss", "val loss", "features", title="pretrain")
    table.add_row(s["method"], s["dataset"], str(len(history)), f"{history['loss'][-1]:.4f}",
                  f"{history['val_loss'][-1]:.4f}", str(meta["feature_dim"]))
    console.print(table)
    console.print(f"encoder: {out / 'model.pt'}\nreport: {report}\nnext: mlimaging probe --checkpoint "
                  f"{out / 'model.pt'} --labels 0.1", soft_wrap=True)


def _loss_figure(run: Any, history: Any, method: str) -> None:
    from mlimaging.reporting.figures import plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(history["epoch"], history["loss"], "o-", ms=3, label="train")
    ax.plot(history["epoch"], history["val_loss"], "s--", ms=3, label="validation")
    ax.set(xlabel="epoch", ylabel=f"{method} loss", title=f"{method} pretraining")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    run.figure(fig, "loss", caption="Proxy-task loss per epoch.")


@command("probe")
def probe_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt written by `mlimaging pretrain`."),
    dataset: str | None = typer.Option(None, "--dataset", help="mnist5k, digits or image-folder (default: the "
                                       "pretraining dataset)."),
    root: str | None = typer.Option(None, "--root", help="Folder of --dataset image-folder (default: the "
                                    "pretraining's)."),
    labels: float = typer.Option(0.1, "--labels", help="Fraction of the training labels used, in (0, 1] "
                                 "(stratified by class)."),
    fine_tune: bool = typer.Option(False, "--fine-tune", help="Fine-tune the encoder with a linear head instead of "
                                   "a linear probe on frozen features."),
    knn: bool = typer.Option(False, "--knn", help="Weighted kNN on the frozen features instead of a linear probe."),
    baseline: bool = typer.Option(False, "--baseline", help="Also train the same encoder from scratch (random "
                                  "initialisation) with a linear head on the same labels."),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs of the probe or fine-tuning (default: the "
                                      "evaluation's own)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the labelled subset and the probe (the train/test split is "
                             "the pretraining's)."),
) -> None:
    """Judge a pretrained encoder on a fraction of the labels: linear probe, fine-tuning or kNN test accuracy."""
    from rich.table import Table

    from mlimaging.selfsupervised import evaluation

    if not (isinstance(labels, float | int) and 0.0 < labels <= 1.0):
        raise ValueError(f"--labels must be a fraction in (0, 1], got {labels}")
    if fine_tune and knn:
        raise ValueError("--fine-tune and --knn exclude each other: choose one evaluation")
    check_positive(epochs, "--epochs", integer=True)
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    encoder, meta = load_encoder(checkpoint)
    name = dataset or meta.get("dataset", "mnist5k")
    size, channels = int(meta["image_size"]), int(meta["channels"])
    if name == meta.get("dataset") and root is None:
        root = meta.get("root")
    split = int(meta.get("split_seed", 0)) if name == meta.get("dataset") else seed  # the pretraining's split:
    xtr, ytr = load_images(name, "train", root=root, seed=split, size=size, channels=channels)  # no test image
    xte, yte = load_images(name, "test", root=root, seed=split, size=size, channels=channels)  # was pretrained on
    kind = "knn" if knn else "fine_tune" if fine_tune else "linear"
    kw = {"probe_epochs": epochs, "fine_tune_epochs": epochs} if epochs is not None else {}
    rows = evaluation.label_efficiency(encoder, (xtr, ytr), (xte, yte), fractions=(labels,), seeds=(seed,), probe=kind,
                                       supervised=(lambda s: fresh_encoder(meta, seed=s)) if baseline else None,
                                       name=meta["method"], **kw)
    shown = {"linear": "linear probe", "knn": "kNN (k=20)", "fine_tune": "fine-tune", "scratch": "trained from scratch"}
    table = Table("encoder", "dataset", "labels", "evaluation", "test accuracy", title=f"probe of {checkpoint}")
    for r in rows:
        encoder_name = "random init" if r["method"] == "supervised" else meta["method"]
        used = 100 * r["labels"] / len(ytr)  # at least one label per class: may exceed --labels
        table.add_row(encoder_name, name, f"{r['labels']} ({used:.3g}%)", shown[r["probe"]], f"{r['accuracy']:.4f}")
    console.print(table)



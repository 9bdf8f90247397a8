r"""Experiment ``classification``: from logistic regression on pixels to LeNet, AlexNet and transfer.

Sections of the report (every model trained by :func:`mlimaging.training.fit`, Adam,
cross-entropy :math:`-\log \operatorname{softmax}(f_\theta(x))_y`):

1. **Models**: logistic regression on raw pixels (and its weight images), a linear model on
   six morphometric features, LeNet and AlexNet; learning curves, confusion matrices and
   the test accuracy table.
2. **Shift test**: the test images translated by ``shift`` pixels (zero fill) in four
   directions. Pixel templates break; pooled convolutional features hold better.
3. **Dense classification**: the trained LeNet rewritten as a fully convolutional network
   (:meth:`mlimaging.models.FCLeNet.from_lenet`) scans a 64 x 64 canvas holding several
   digits in one pass and returns a 9 x 9 map of class scores per class.
4. **Transfer learning**: LeNet pretrained on the first half of the classes (digits 0-4),
   then the other half (5-9) learnt from ``transfer_per_class`` labelled images per class by
   fine-tuning only a new head, by fine-tuning the whole network, or from scratch.

Data: ``mnist5k`` (28 x 28) in full mode, scikit-learn's ``digits`` (8 x 8, resized to
``image_size`` = 28 with bilinear interpolation) in quick mode. Every number depends only on
``seed`` (data split, subsets, initialisations, batch order): the same seed gives the same
report on CPU.

References
----------
LeCun Y., Bottou L., Bengio Y., Haffner P. (1998). Gradient-based learning applied to
document recognition. Proc. IEEE 86(11):2278-2324. DOI 10.1109/5.726791.

Yosinski J., Clune J., Bengio Y., Lipson H. (2014). How transferable are features in deep
neural networks? NeurIPS. arXiv:1411.1792.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("classification", quick=True, seed=0, out="runs/cls")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from mlimaging.data.transforms import ShiftAugment, translate
from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.metrics import accuracy, confusion_matrix
from mlimaging.models import FCLeNet, LeNet, create_model
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt
from mlimaging.training import History, evaluate, fit, freeze, replace_head

__all__ = [
    "ClassificationConfig",
    "ShiftAugment",
    "class_subset",
    "load_images",
    "make_canvas",
    "translate",
]

#: Models of section 1: name -> (epochs in full mode, epochs in quick mode, Adam learning rate).
MODELS: dict[str, tuple[int, int, float]] = {
    "logistic_regression": (15, 10, 3e-3),
    "feature_linear": (15, 10, 5e-2),
    "lenet": (15, 10, 2e-3),
    "alexnet": (10, 3, 1e-3),
}
#: Translations of the shift test, (name, dy, dx) in units of ``shift`` pixels.
DIRECTIONS = (("right", 0, 1), ("left", 0, -1), ("down", 1, 0), ("up", -1, 0))
CANVAS = 64


@dataclass
class ClassificationConfig(ExperimentConfig):
    """Settings of the ``classification`` experiment (``None`` picks the quick/full default).

    Attributes
    ----------
    dataset
        ``"mnist5k"`` (full default) or ``"digits"`` (quick default); any classification
        dataset of :func:`mlimaging.data.load_dataset` with one channel works.
    image_size
        Images smaller than this are resized to it (bilinear); at most 32 (LeNet's input).
    max_train
        Keep at most this many training images (a stratified subset drawn with ``seed``).
    max_test
        Keep at most this many test images (stratified subset).
    epochs
        Epochs of every model of section 1 (default: the per-model values of :data:`MODELS`).
    batch_size
        Mini-batch size of section 1.
    shift
        Translation of the shift test, in pixels.
    transfer_per_class
        Labelled images per new class in the transfer-learning section.
    pretrain_epochs, transfer_epochs
        Epochs of the pretraining on the first classes and of each fine-tuning.
    """

    dataset: str | None = None
    image_size: int = 28
    max_train: int | None = None
    max_test: int | None = None
    epochs: int | None = None
    batch_size: int = 32
    shift: int = 2
    transfer_per_class: int = 50
    pretrain_epochs: int | None = None
    transfer_epochs: int | None = None


# ------------------------------------------------------------------------------------ helpers
def class_subset(targets: torch.Tensor, *, classes: Any = None, per_class: int | None = None,
                 total: int | None = None, seed: int = 0) -> torch.Tensor:
    """Sorted indices of the samples of ``classes``, at most ``per_class`` each or ``total`` in all.

    ``total`` keeps every class's share (a stratified subset, to within one sample per class,
    drawn by :func:`mlimaging.data.datasets.split_indices`).
    The pick is random with ``seed``.

    Examples
    --------
    >>> y = torch.tensor([0, 1, 1, 2, 1])
    >>> class_subset(y, classes=[1], per_class=3, seed=0).tolist()
    [1, 2, 4]
    >>> len(class_subset(y, classes=[1], per_class=2, seed=0))
    2
    """
    y = torch.as_tensor(targets).reshape(-1)
    present = torch.unique(y).tolist()
    classes = present if classes is None else [int(c) for c in classes]
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in classes:
        idx = torch.nonzero(y == c).flatten()
        if len(idx) == 0:
            raise ValueError(f"classes: class {c} has no sample (present: {present})")
        idx = idx[torch.randperm(len(idx), generator=g)]
        chosen.append(idx if per_class is None else idx[:per_class])
    out = torch.cat(chosen)
    if total is not None and total < len(out):
        if total < 1:
            raise ValueError(f"total must be >= 1, got {total}")
        from mlimaging.data.datasets import split_indices

        out = out[torch.as_tensor(split_indices(y[out].numpy(), n_val=0, n_test=total, seed=seed)["test"])]
    return torch.sort(out).values


def load_images(dataset: str, split: str, *, seed: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """All images ``(N, C, S, S)`` float32 in [0, 1], labels ``(N,)`` and class names of a split.

    Images smaller than ``image_size`` are resized to it (bilinear, ``align_corners=False``).
    """
    from mlimaging.data import load_dataset

    ds = load_dataset(dataset, split=split, seed=seed)
    if getattr(ds, "multilabel", False):
        raise ValueError(f"dataset {dataset!r} is multi-label; the classification experiment needs one label per image")
    x = ds.images if hasattr(ds, "images") else torch.stack([ds[i][0] for i in range(len(ds))])
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    if x.ndim != 4:
        raise ValueError(f"dataset {dataset!r} must hold 2-D images (C, H, W), got {tuple(x.shape[1:])}")
    if min(x.shape[-2:]) < image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp_(0, 1)
    return x.contiguous(), y, list(ds.classes)


def make_canvas(digits: torch.Tensor, positions: list[tuple[int, int]], *, size: int = CANVAS) -> torch.Tensor:
    """Paste images ``(n, 1, s, s)`` at ``positions`` (top-left row, col) on a black canvas ``(1, 1, size, size)``.

    Overlapping pixels take the maximum.

    Examples
    --------
    >>> make_canvas(torch.ones(2, 1, 4, 4), [(0, 0), (8, 8)], size=16).sum().item()
    32.0
    """
    if len(digits) != len(positions):
        raise ValueError(f"positions must give one (row, col) per digit: {len(digits)} digits, {len(positions)} positions")
    s = digits.shape[-1]
    canvas = torch.zeros(1, digits.shape[1], size, size)
    for d, (r, c) in zip(digits, positions, strict=True):
        if not (0 <= r <= size - s and 0 <= c <= size - s):
            raise ValueError(f"positions: ({r}, {c}) puts a {s}-pixel digit outside the {size}-pixel canvas")
        canvas[0, :, r:r + s, c:c + s] = torch.maximum(canvas[0, :, r:r + s, c:c + s], d)
    return canvas


def _train(model: nn.Module, train: Dataset, val: Dataset, *, epochs: int, lr: float, cfg: ClassificationConfig,
           batch_size: int | None = None) -> tuple[History, float]:
    t0 = time.perf_counter()
    history = fit(model, train, val, loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=lr),
                  epochs=epochs, batch_size=batch_size or cfg.batch_size, seed=cfg.seed, progress=not cfg.quick)
    return history, time.perf_counter() - t0


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def _n_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------------------------ sections
def _models_section(cfg: ClassificationConfig, run: Run, data: dict[str, Any]) -> dict[str, nn.Module]:
    run.section("1. From pixels to convolutional networks",
                "Four classifiers on the same images, trained with Adam on the cross-entropy loss by the "
                "training engine: logistic regression on the raw pixels, a linear model on six hand-crafted "
                "shape features (area, width, height, slant, stroke thickness and length), LeNet-5 and a "
                "small-input AlexNet. Accuracies are measured on the held-out test split.")
    xtr, ytr, xva, yva, xte, yte = (data[k] for k in ("xtr", "ytr", "xva", "yva", "xte", "yte"))
    train, val = TensorDataset(xtr, ytr), TensorDataset(xva, yva)
    size = xtr.shape[-1]
    models: dict[str, nn.Module] = {}
    histories: dict[str, History] = {}
    rows = []
    for name in run.track(list(MODELS), "models"):
        full_epochs, quick_epochs, lr = MODELS[name]
        epochs = cfg.epochs or (quick_epochs if cfg.quick else full_epochs)
        kwargs: dict[str, Any] = {"num_classes": data["k"]}
        if name == "logistic_regression":
            kwargs["input_shape"] = tuple(xtr.shape[1:])
        elif name == "alexnet":
            kwargs["input_size"] = size
        model = create_model(name, seed=cfg.seed, **kwargs)
        if name == "feature_linear":
            model.fit_standardizer(xtr)
        history, seconds = _train(model, train, val, epochs=epochs, lr=lr, cfg=cfg)
        pred = _predict(model, xte).argmax(1)
        models[name], histories[name] = model, history
        rows.append({"model": name, "parameters": _n_params(model), "epochs": epochs, "lr": lr,
                     "train seconds": round(seconds, 2), "val accuracy": history["val_accuracy"][-1],
                     "test accuracy": accuracy(pred, yte), "seed": cfg.seed})
        data.setdefault("pred", {})[name] = pred
    run.table("Test accuracy", rows, caption=f"{data['name']}: {len(xtr)} training, {len(xva)} validation and "
              f"{len(xte)} test images of {size} x {size} pixels; seed {cfg.seed}.")
    run.log(test_accuracy={r["model"]: r["test accuracy"] for r in rows},
            histories={n: h.epochs for n, h in histories.items()})

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, h in histories.items():
        axes[0].plot(h["epoch"], h["loss"], "-", label=f"{name} (train)")
        axes[0].plot(h["epoch"], h["val_loss"], ":", color=axes[0].lines[-1].get_color())
        axes[1].plot(h["epoch"], h["val_accuracy"], "o-", ms=3, label=name)
    axes[0].set(xlabel="epoch", ylabel="loss (solid: train, dotted: validation)", yscale="log")
    axes[1].set(xlabel="epoch", ylabel="validation accuracy")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Learning curves (seed {cfg.seed})")
    fig.tight_layout()
    run.figure(fig, "learning-curves", caption=f"Training and validation loss, validation accuracy per epoch (seed {cfg.seed}).")

    k = data["k"]
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.4))
    for ax, (name, pred) in zip(np.atleast_1d(axes), data["pred"].items(), strict=True):
        cm = confusion_matrix(pred, yte, num_classes=k)
        ax.imshow(cm, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=5,
                        color="white" if v > cm.max() / 2 else "black")
        ax.set(title=f"{name}\naccuracy {accuracy(pred, yte):.3f}", xlabel="predicted", ylabel="true",
               xticks=range(k), yticks=range(k))
        ax.tick_params(labelsize=6)
    fig.suptitle(f"Confusion matrices on the test split (seed {cfg.seed})")
    fig.tight_layout()
    run.figure(fig, "confusion-matrices", caption=f"Row i, column j: test images of class i predicted as j (seed {cfg.seed}).")

    w = models["logistic_regression"].weights_image()[:, 0]
    fig, axes = plt.subplots(1, k, figsize=(1.2 * k, 1.6))
    for c, ax in enumerate(np.atleast_1d(axes)):
        vmax = float(w[c].abs().max()) or 1.0
        ax.imshow(w[c].numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(data["classes"][c], fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Logistic regression weights per class (red +, blue -; seed {cfg.seed})", fontsize=9)
    run.figure(fig, "logistic-regression-weights",
               caption="Each class's weights reshaped to the image: the template whose dot product with the image "
                       f"gives the class logit (seed {cfg.seed}).")
    return models


def _shift_section(cfg: ClassificationConfig, run: Run, data: dict[str, Any], models: dict[str, nn.Module]) -> None:
    s = cfg.shift
    run.section(f"2. Shift test: translate the test images by {s} pixels",
                "The same test images moved by a few pixels (zero fill). A pixel template (logistic regression) "
                "expects each stroke at its place; convolutions share their weights across positions and pooling "
                "absorbs part of a small shift; the shape features change only where a stroke leaves the image. "
                "None of the models saw shifted digits in training.")
    xte, yte = data["xte"], data["yte"]
    rows = []
    for name, model in models.items():
        row: dict[str, Any] = {"model": name, "original": accuracy(data["pred"][name], yte)}
        for d, dy, dx in DIRECTIONS:
            row[d] = accuracy(_predict(model, translate(xte, dy * s, dx * s)).argmax(1), yte)
        row["mean shifted"] = float(np.mean([row[d] for d, _, _ in DIRECTIONS]))
        row["drop"] = row["original"] - row["mean shifted"]
        row["seed"] = cfg.seed
        rows.append(row)
    run.table("Accuracy under translation", rows,
              caption=f"Test accuracy on the original images and on the images moved {s} px right, left, down "
                      f"and up (seed {cfg.seed}).")
    run.log(shift_accuracy={r["model"]: {"original": r["original"], "shifted": r["mean shifted"]} for r in rows})
    worst, best = max(rows, key=lambda r: r["drop"]), min(rows, key=lambda r: r["drop"])
    run.text(f"Largest drop: {worst['model']} ({worst['original']:.3f} to {worst['mean shifted']:.3f}); smallest: "
             f"{best['model']} ({best['original']:.3f} to {best['mean shifted']:.3f}).")

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1.3, 1]})
    x = np.arange(len(rows))
    axes[0].bar(x - 0.2, [r["original"] for r in rows], 0.4, label="original")
    axes[0].bar(x + 0.2, [r["mean shifted"] for r in rows], 0.4, label=f"shifted by {s} px (mean of 4)")
    axes[0].set_xticks(x, [r["model"] for r in rows], fontsize=7)
    axes[0].set(ylabel="test accuracy", ylim=(0, 1))
    axes[0].legend(fontsize=7)
    example = xte[0, 0]
    gap = torch.full((example.shape[0], 1), 0.5)
    views = [example] + [translate(example, dy * s, dx * s) for _, dy, dx in DIRECTIONS]
    strip = torch.cat([t for v in views for t in (v, gap)][:-1], dim=1)
    axes[1].imshow(strip.numpy(), cmap="gray")
    axes[1].set_title("original, right, left, down, up", fontsize=8)
    axes[1].axis("off")
    fig.suptitle(f"Shift test (seed {cfg.seed})")
    fig.tight_layout()
    run.figure(fig, "shift-test", caption=f"Accuracy before and after a {s}-pixel translation, and one test digit "
               f"moved in the four directions (seed {cfg.seed}).")


def _dense_section(cfg: ClassificationConfig, run: Run, data: dict[str, Any], lenet: LeNet) -> None:
    run.section("3. Dense classification: LeNet as a fully convolutional network",
                "LeNet's fully connected layers rewritten as convolutions (fc1 a 5x5 convolution to 120 "
                "channels, fc2 and fc3 1x1 convolutions) give the same network, which now accepts any image "
                "of at least 32 x 32 pixels. On a 64 x 64 canvas it returns a 9 x 9 map per class: entry "
                "(i, j) is LeNet applied to the 32 x 32 window at (4i, 4j), computed in one pass.")
    fcn = FCLeNet.from_lenet(lenet).eval()
    xte, yte = data["xte"], data["yte"]
    s = xte.shape[-1]
    pad = (32 - s) // 2
    padded = F.pad(xte[:64], (pad, 32 - s - pad, pad, 32 - s - pad))
    diff = float((_predict(fcn, padded).flatten(1) - _predict(lenet, padded)).abs().max())

    g = torch.Generator().manual_seed(cfg.seed)
    picks, seen = [], set()
    for i in torch.randperm(len(xte), generator=g).tolist():
        if int(yte[i]) not in seen:
            picks.append(i)
            seen.add(int(yte[i]))
        if len(picks) == 3:
            break
    cells = [(0, 0), (1, 8), (8, 4)]  # map cells; digit i is centred in window cells[i]
    positions = [(4 * r + pad, 4 * c + pad) for r, c in cells]
    canvas = make_canvas(xte[picks], positions)
    with torch.no_grad():
        probs = torch.softmax(fcn(canvas)[0], dim=0)  # (K, 9, 9)
    labels = [int(yte[i]) for i in picks]
    rows = []
    for (r, c), y in zip(cells, labels, strict=True):
        peak = divmod(int(probs[y].argmax()), probs.shape[-1])
        rows.append({"digit": data["classes"][y], "window cell": f"({r}, {c})",
                     "predicted at its cell": data["classes"][int(probs[:, r, c].argmax())],
                     "p(true class) at its cell": float(probs[y, r, c]),
                     "peak of its class map": f"({peak[0]}, {peak[1]})",
                     "peak within 1 cell": max(abs(peak[0] - r), abs(peak[1] - c)) <= 1, "seed": cfg.seed})
    run.table("Digits on the canvas", rows,
              caption=f"FCLeNet on the 64 x 64 canvas: the class predicted at each digit's window and where that "
                      f"digit's class map peaks. On 32 x 32 inputs FCLeNet and LeNet differ by at most {diff:.2e} "
                      f"(seed {cfg.seed}).")
    run.log(fcn_max_abs_difference=diff, fcn_map_shape=list(probs.shape),
            fcn_correct_at_digits=sum(r["predicted at its cell"] == r["digit"] for r in rows))

    k = probs.shape[0]
    ncol = 6
    fig, axes = plt.subplots(2, ncol, figsize=(1.9 * ncol, 4.0))
    axes = axes.ravel()
    axes[0].imshow(canvas[0, 0].numpy(), cmap="gray")
    for pr, pc in positions:
        axes[0].add_patch(plt.Rectangle((pc - 0.5, pr - 0.5), s, s, fill=False, ec="tab:orange", lw=0.8))
    axes[0].set_title("64 x 64 canvas", fontsize=8)
    for c in range(min(k, 2 * ncol - 1)):
        ax = axes[c + 1]
        ax.imshow(probs[c].numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"p(class {data['classes'][c]})", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"FCLeNet class-score maps, 9 x 9 windows of 32 x 32 px, stride 4 (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "fclenet-score-maps", caption="Softmax probability of each class in every window; each digit "
               f"lights up its own class map at its position (seed {cfg.seed}).")


def _transfer_section(cfg: ClassificationConfig, run: Run, data: dict[str, Any]) -> None:
    k = data["k"]
    source, target = list(range(k // 2)), list(range(k // 2, k))
    names = data["classes"]
    n = cfg.transfer_per_class
    run.section("4. Transfer learning",
                f"LeNet pretrained on classes {names[source[0]]}-{names[source[-1]]} only; then classes "
                f"{names[target[0]]}-{names[target[-1]]} are learnt from {n} labelled images per class in three "
                "ways: a new head trained on the frozen features (head only), the whole pretrained network "
                "fine-tuned with a new head (full), and a fresh LeNet (from scratch). Same data, epochs and "
                "seed for the three; Adam with learning rate 1e-2 for the new head alone, 2e-3 for whole networks.")
    xtr, ytr, xva, yva, xte, yte = (data[k_] for k_ in ("xtr", "ytr", "xva", "yva", "xte", "yte"))
    src = class_subset(ytr, classes=source, seed=cfg.seed)
    src_val = class_subset(yva, classes=source, seed=cfg.seed)
    pre_epochs = cfg.pretrain_epochs or (6 if cfg.quick else 10)
    base = create_model("lenet", num_classes=len(source), seed=cfg.seed)
    _, pre_seconds = _train(base, TensorDataset(xtr[src], ytr[src]), TensorDataset(xva[src_val], yva[src_val]),
                            epochs=pre_epochs, lr=2e-3, cfg=cfg)
    pre_acc = evaluate(base, TensorDataset(xva[src_val], yva[src_val]))["accuracy"]

    offset = target[0]
    tr = class_subset(ytr, classes=target, per_class=n, seed=cfg.seed)
    va, te = class_subset(yva, classes=target, seed=cfg.seed), class_subset(yte, classes=target, seed=cfg.seed)
    train = TensorDataset(xtr[tr], ytr[tr] - offset)
    val, test = TensorDataset(xva[va], yva[va] - offset), TensorDataset(xte[te], yte[te] - offset)
    epochs = cfg.transfer_epochs or (20 if cfg.quick else 30)
    variants: dict[str, nn.Module] = {}
    head = replace_head(copy.deepcopy(base), len(target), seed=cfg.seed)
    freeze(head, trainable=["fc3"])
    variants["head only"] = head
    variants["full fine-tuning"] = replace_head(copy.deepcopy(base), len(target), seed=cfg.seed)
    variants["from scratch"] = create_model("lenet", num_classes=len(target), seed=cfg.seed)
    rows, histories = [], {}
    for name, model in run.track(list(variants.items()), "transfer"):
        trainable = _n_params(model, trainable_only=True)
        lr = 1e-2 if name == "head only" else 2e-3
        history, seconds = _train(model, train, val, epochs=epochs, lr=lr, cfg=cfg)
        histories[name] = history
        rows.append({"method": name, "trainable parameters": trainable, "epochs": epochs, "lr": lr,
                     "train seconds": round(seconds, 2), "test accuracy": evaluate(model, test)["accuracy"],
                     "seed": cfg.seed})
    run.table("Learning new classes from few labels", rows,
              caption=f"{len(tr)} training images ({n} per class), tested on {len(te)} test images of the new classes. "
                      f"Pretraining: {len(src)} images of the first classes, {pre_epochs} epochs, validation accuracy "
                      f"{pre_acc:.3f} (seed {cfg.seed}).")
    run.log(transfer_accuracy={r["method"]: r["test accuracy"] for r in rows}, pretrain_val_accuracy=pre_acc)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, h in histories.items():
        ax.plot(h["epoch"], h["val_accuracy"], "o-", ms=3, label=name)
    ax.set(xlabel="epoch", ylabel="validation accuracy (new classes)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Transfer learning from {n} images per class (seed {cfg.seed})", fontsize=9)
    run.figure(fig, "transfer-learning", caption=f"Validation accuracy per epoch of the three ways to learn the new "
               f"classes (seed {cfg.seed}).")


def _load(cfg: ClassificationConfig) -> dict[str, Any]:
    name = cfg.dataset or ("digits" if cfg.quick else "mnist5k")
    if not 8 <= cfg.image_size <= 32:
        raise ValueError(f"image_size must be between 8 and 32 (LeNet's input), got {cfg.image_size}")
    data: dict[str, Any] = {"name": name}
    for split, key in (("train", "tr"), ("val", "va"), ("test", "te")):
        x, y, classes = load_images(name, split, seed=cfg.seed, image_size=cfg.image_size)
        limit = {"tr": cfg.max_train, "te": cfg.max_test}.get(key)
        if limit is not None and limit < len(y):
            idx = class_subset(y, total=limit, seed=cfg.seed)
            x, y = x[idx], y[idx]
        data["x" + key], data["y" + key] = x, y
    if data["xtr"].shape[1] != 1 or data["xtr"].shape[-1] > 32:
        raise ValueError(f"dataset {name!r}: the experiment needs one-channel images of at most 32 px, got "
                         f"{tuple(data['xtr'].shape[1:])}")
    data["classes"], data["k"] = classes, len(classes)
    return data


@experiment("classification", config=ClassificationConfig)
def classification_experiment(cfg: ClassificationConfig, run: Run) -> None:
    """Logistic regression to LeNet and AlexNet: accuracy, shift test, dense FCLeNet maps, transfer learning."""
    data = _load(cfg)
    run.log(dataset=data["name"], n_train=len(data["ytr"]), n_val=len(data["yva"]), n_test=len(data["yte"]),
            image_size=int(data["xtr"].shape[-1]), seed=cfg.seed)
    models = _models_section(cfg, run, data)
    _shift_section(cfg, run, data, models)
    _dense_section(cfg, run, data, models["lenet"])
    _transfer_section(cfg, run, data)

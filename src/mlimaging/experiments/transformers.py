r"""Experiment ``transformers``: a ViT trained from scratch, and promptable segmentation with SAM.

Sections of the report (every network trained by :func:`mlimaging.training.fit`):

1. **ViT against LeNet at the same time budget** on ``mnist5k``: each model trains until its
   wall-clock budget is spent (checked at epoch ends): test accuracy, parameters, learning
   curves against time. A ViT cuts the image into :math:`p \times p` patches, embeds each
   linearly, adds a learned position embedding and a class token and encodes the
   :math:`N + 1` tokens with multi-head self-attention
   :math:`\operatorname{softmax}(Q K^\top / \sqrt d) V` (Dosovitskiy et al. 2021).
2. **Augmentation and data size**: the same models on fewer and more training images, with
   and without random shifts and rotations. A ViT has weaker built-in priors (no locality,
   no translation equivariance beyond the patch grid), so it needs more data, or
   augmentation to stand in for it.
3. **Patch size** 4, 7 and 14 px: :math:`N = (28 / p)^2` tokens; accuracy and time against
   :math:`N` (attention costs :math:`O(N^2)`).
4. **Attention rollout** (Abnar & Zuidema 2020) of the class token on test digits.
5. **Promptable segmentation**: ``sam_tiny`` trained on 2D phantoms with prompts sampled from
   the ground truth (one point, three points, a jittered box; focal + Dice + IoU loss, as SAM:
   :class:`mlimaging.models.sam.train.SAMStep`); Dice per prompt type on held-out phantoms
   against the U-Net of the ``segmentation`` experiment (same recipe, same training set);
   figures of image, prompts and masks; automatic masks (a grid of point prompts) on a
   phantom and on scikit-image's camera image.

Every number depends only on ``seed``: the same seed gives the same report on CPU (timings
aside, and the time-budget section stops at epoch ends decided by the clock).

References
----------
Dosovitskiy A. et al. (2021). An image is worth 16x16 words: transformers for image
recognition at scale. ICLR. arXiv:2010.11929.

Abnar S., Zuidema W. (2020). Quantifying attention flow in transformers. ACL.
arXiv:2005.00928.

Kirillov A. et al. (2023). Segment Anything. ICCV. arXiv:2304.02643.

Ronneberger O., Fischer P., Brox T. (2015). U-Net. MICCAI. arXiv:1505.04597.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("transformers", quick=True, seed=0, out="runs/tf")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import label_cmap, plt

__all__ = ["FULL", "QUICK", "RandomShiftRotate", "TransformersConfig"]

#: Quick mode: tiny subsets, one epoch, a coarse point grid (every figure and table still written).
QUICK: dict[str, Any] = {
    "n_train": 192, "n_val": 64, "n_test": 128, "budget": 1.0, "max_epochs": 2, "data_sizes": (192,),
    "aug_epochs": 1, "patch_epochs": 1, "patch_sizes": (4, 7, 14), "rollout_digits": 4,
    "phantom_size": 64, "sam_train": 16, "sam_test": 3, "sam_epochs": 1, "unet_epochs": 1, "points_per_side": 4,
}
#: Full mode: all of mnist5k, two-minute budgets, and enough phantoms for SAM to learn the task.
FULL: dict[str, Any] = {
    "n_train": None, "n_val": None, "n_test": None, "budget": 120.0, "max_epochs": 200,
    "data_sizes": (500, 3500), "aug_epochs": 20, "patch_epochs": 15, "patch_sizes": (4, 7, 14),
    "rollout_digits": 8, "phantom_size": 64, "sam_train": 400, "sam_test": 40, "sam_epochs": 30,
    "unet_epochs": 30, "points_per_side": 16,
}
_MASK_CMAP = ListedColormap(["red"])
PROMPT_LABELS = {"point": "1 point", "points": "3 points", "box": "box"}
STRUCTURES = {1: "body", 2: "organ", 3: "lesion"}


@dataclass
class TransformersConfig(ExperimentConfig):
    """Settings of the ``transformers`` experiment; ``None`` takes the quick/full value
    (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    n_train, n_val, n_test
        mnist5k images kept per split (stratified subsets; None: all of 3500 / 500 / 1000).
    budget
        Training seconds given to LeNet and to the ViT in section 1.
    max_epochs
        Epoch cap of section 1 (a model stops at its budget or at this many epochs).
    data_sizes
        Training-set sizes of the augmentation section.
    aug_epochs, patch_epochs
        Epochs over the largest training set of section 2 (smaller sets get as many steps), and
        epochs of every run of section 3.
    patch_sizes
        Patch sides of section 3 (divisors of 28).
    rollout_digits
        Test digits shown with their attention rollout.
    vit
        The registered ViT of sections 1, 2 and 4 (``vit_tiny`` or ``vit_small``).
    lr, weight_decay
        AdamW settings of the ViTs (LeNet: Adam, learning rate 2e-3, as in ``classification``).
    phantom_size, sam_train, sam_test
        Side of the 2D phantoms and their numbers for training and testing.
    sam_epochs, unet_epochs
        Epochs of ``sam_tiny`` and of the U-Net.
    sam_lr, sam_batch_size
        AdamW learning rate and batch size of ``sam_tiny``.
    points_per_side
        Grid of the automatic masks.
    sections
        Any of ``"vit"`` (sections 1-4) and ``"sam"`` (section 5).
    """

    n_train: int | None = None
    n_val: int | None = None
    n_test: int | None = None
    budget: float | None = None
    max_epochs: int | None = None
    data_sizes: tuple[int, ...] | None = None
    aug_epochs: int | None = None
    patch_epochs: int | None = None
    patch_sizes: tuple[int, ...] | None = None
    rollout_digits: int | None = None
    vit: str = "vit_tiny"
    lr: float = 1e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    phantom_size: int | None = None
    sam_train: int | None = None
    sam_test: int | None = None
    sam_epochs: int | None = None
    unet_epochs: int | None = None
    sam_lr: float = 1e-3
    sam_batch_size: int = 8
    points_per_side: int | None = None
    sections: tuple[str, ...] = ("vit", "sam")


def _resolve(cfg: TransformersConfig) -> dict[str, Any]:
    bad = [s for s in cfg.sections if s not in ("vit", "sam")]
    if bad or not cfg.sections:
        raise ValueError(f"sections must be a non-empty selection of ['vit', 'sam'], got {list(cfg.sections)}")
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    if any(28 % int(s) for s in p["patch_sizes"]):
        raise ValueError(f"patch_sizes must divide 28, got {list(p['patch_sizes'])}")
    if not p["budget"] > 0:
        raise ValueError(f"budget must be a positive number of seconds, got {p['budget']!r}")
    return p


# ------------------------------------------------------------------------------------ helpers
class RandomShiftRotate(Dataset):
    r"""Images randomly rotated (uniform in :math:`\pm` ``max_angle`` degrees) and shifted (uniform in
    :math:`\pm` ``max_shift`` pixels) on their own canvas, zero fill (data augmentation).

    Each item draws its distortion seed from torch's global generator, which
    :func:`~mlimaging.training.fit` seeds, and calls :func:`mlimaging.data.transforms.distort_digits`;
    a seeded run is repeatable.

    Examples
    --------
    >>> ds = RandomShiftRotate(torch.rand(3, 1, 28, 28), torch.zeros(3, dtype=torch.long))
    >>> ds[0][0].shape, len(ds)
    (torch.Size([1, 28, 28]), 3)
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, *, max_shift: float = 2.0,
                 max_angle: float = 15.0) -> None:
        if len(images) != len(targets):
            raise ValueError(f"images ({len(images)}) and targets ({len(targets)}) must have the same length")
        if max_shift < 0 or max_angle < 0:
            raise ValueError(f"max_shift and max_angle must be >= 0, got {max_shift}, {max_angle}")
        self.images, self.targets = images, targets
        self.max_shift, self.max_angle = float(max_shift), float(max_angle)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from mlimaging.data.transforms import distort_digits

        img = self.images[i]
        seed = int(torch.randint(2**31 - 1, (1,)))
        shift = self.max_shift / (img.shape[-1] / 2)
        out = distort_digits(img[None], canvas=img.shape[-1], max_angle=self.max_angle, scale=(1.0, 1.0),
                             shift=shift, seed=seed)
        return out[0], self.targets[i]


class _TimeBudget:
    """fit callback: stop after the epoch during which the training time reached ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_epoch_end(self, state: Any) -> None:
        if sum(state.history["seconds"]) >= self.seconds:
            state.stop_training = True


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load_mnist(cfg: TransformersConfig, p: dict[str, Any]) -> dict[str, torch.Tensor]:
    from mlimaging.experiments.classification import class_subset, load_images

    data: dict[str, torch.Tensor] = {}
    for split, key in (("train", "tr"), ("val", "va"), ("test", "te")):
        x, y, _ = load_images("mnist5k", split, seed=cfg.seed, image_size=28)
        limit = p[{"tr": "n_train", "va": "n_val", "te": "n_test"}[key]]
        if limit is not None and limit < len(y):
            idx = class_subset(y, total=limit, seed=cfg.seed)
            x, y = x[idx], y[idx]
        data["x" + key], data["y" + key] = x, y
    return data


def _classifier(name: str, cfg: TransformersConfig, **kwargs: Any) -> tuple[nn.Module, Any]:
    from mlimaging.models import create_model

    model = create_model(name, num_classes=10, seed=cfg.seed, **kwargs)
    if name == "lenet":
        return model, lambda ps: torch.optim.Adam(ps, lr=2e-3)
    return model, lambda ps: torch.optim.AdamW(ps, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _train_classifier(model: nn.Module, opt: Any, train: Dataset, val: Dataset | None, *, epochs: int,
                      cfg: TransformersConfig, budget: float | None = None) -> tuple[Any, float]:
    from mlimaging.training import fit

    t0 = time.perf_counter()
    history = fit(model, train, val, loss=nn.CrossEntropyLoss(), optimizer=opt, epochs=epochs,
                  batch_size=cfg.batch_size, seed=cfg.seed, progress=not cfg.quick,
                  callbacks=[_TimeBudget(budget)] if budget is not None else ())
    return history, time.perf_counter() - t0


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    from mlimaging.training import evaluate

    return float(evaluate(model, TensorDataset(x, y))["accuracy"])


# ------------------------------------------------------------------------------------ ViT sections
def _budget_section(cfg: TransformersConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor]) -> nn.Module:
    run.section("1. ViT against LeNet at the same training-time budget",
                f"LeNet-5 (Adam, 2e-3) and {cfg.vit} (AdamW, {cfg.lr:g}, weight decay {cfg.weight_decay:g}) each "
                f"train on the same {len(data['ytr'])} mnist5k images until {p['budget']:g} s of training (checked "
                f"at the end of each epoch, at most {p['max_epochs']} epochs). Accuracy on {len(data['yte'])} test "
                "images.")
    train, val = TensorDataset(data["xtr"], data["ytr"]), TensorDataset(data["xva"], data["yva"])
    rows, histories, models = [], {}, {}
    for name in run.track(["lenet", cfg.vit], "time budget"):
        model, opt = _classifier(name, cfg)
        history, seconds = _train_classifier(model, opt, train, val, epochs=p["max_epochs"], cfg=cfg,
                                             budget=p["budget"])
        histories[name], models[name] = history, model
        rows.append({"model": name, "parameters": _n_params(model), "epochs": len(history),
                     "train seconds": round(seconds, 2), "val accuracy": history["val_accuracy"][-1],
                     "test accuracy": _accuracy(model, data["xte"], data["yte"]), "seed": cfg.seed})
    run.table("Same time budget", rows, caption=f"Budget {p['budget']:g} s per model; seed {cfg.seed}.")
    run.log(budget_accuracy={r["model"]: r["test accuracy"] for r in rows},
            budget_parameters={r["model"]: r["parameters"] for r in rows},
            budget_histories={n: h.epochs for n, h in histories.items()})
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for name, h in histories.items():
        elapsed = np.cumsum(h["seconds"])
        axes[0].plot(elapsed, h["loss"], "-", label=f"{name} (train)")
        axes[0].plot(elapsed, h["val_loss"], ":", color=axes[0].lines[-1].get_color())
        axes[1].plot(elapsed, h["val_accuracy"], "o-", ms=3, label=name)
    axes[0].set(xlabel="training time (s)", ylabel="loss (solid: train, dotted: val)", yscale="log")
    axes[1].set(xlabel="training time (s)", ylabel="validation accuracy")
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Learning curves against wall-clock time (seed {cfg.seed})")
    fig.tight_layout()
    run.figure(fig, "vit-vs-lenet-learning-curves",
               caption=f"Loss and validation accuracy of LeNet and {cfg.vit} against training time (seed {cfg.seed}).")
    return models[cfg.vit]


def _augmentation_section(cfg: TransformersConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor]) -> None:
    from mlimaging.experiments.classification import class_subset

    sizes = [min(int(n), len(data["ytr"])) for n in p["data_sizes"]]
    # The same number of optimiser steps for every size: aug_epochs passes over the largest set.
    epochs_of = {n: max(1, round(p["aug_epochs"] * max(sizes) / n)) for n in sizes}
    run.section("2. Augmentation and the amount of data",
                f"LeNet and {cfg.vit} trained on {', '.join(map(str, sizes))} images, without and with augmentation "
                "(random rotation within +-15 degrees and shift within +-2 px, drawn anew at every epoch), for the "
                f"same number of optimiser steps whatever the size ({p['aug_epochs']} epochs of the largest set). "
                "A ViT's attention has no locality prior: it gains more from more data, and augmentation stands "
                "in for part of it.")
    rows = []
    runs = [(n, name, aug) for n in sizes for name in ("lenet", cfg.vit) for aug in (False, True)]
    for n, name, aug in run.track(runs, "augmentation"):
        idx = class_subset(data["ytr"], total=n, seed=cfg.seed) if n < len(data["ytr"]) else torch.arange(n)
        x, y = data["xtr"][idx], data["ytr"][idx]
        train = RandomShiftRotate(x, y) if aug else TensorDataset(x, y)
        model, opt = _classifier(name, cfg)
        _, seconds = _train_classifier(model, opt, train, None, epochs=epochs_of[n], cfg=cfg)
        rows.append({"model": name, "training images": n, "augmentation": "on" if aug else "off",
                     "epochs": epochs_of[n], "train seconds": round(seconds, 2),
                     "test accuracy": _accuracy(model, data["xte"], data["yte"]), "seed": cfg.seed})
    run.table("Augmentation and data size", rows, caption=f"Test accuracy on {len(data['yte'])} images; "
              f"seed {cfg.seed}.")
    run.log(augmentation_accuracy=[{k: r[k] for k in ("model", "training images", "augmentation", "test accuracy")}
                                   for r in rows])
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name in ("lenet", cfg.vit):
        for aug, style in (("off", "o--"), ("on", "s-")):
            pts = [(r["training images"], r["test accuracy"]) for r in rows
                   if r["model"] == name and r["augmentation"] == aug]
            ax.plot(*zip(*pts, strict=True), style, label=f"{name}, augmentation {aug}")
    ax.set(xlabel="training images", ylabel="test accuracy", xscale="log" if len(sizes) > 1 else "linear")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"Augmentation and data size (seed {cfg.seed})", fontsize=9)
    run.figure(fig, "augmentation-and-data-size",
               caption=f"Test accuracy against the number of training images, with and without augmentation "
                       f"(seed {cfg.seed}).")


def _patch_section(cfg: TransformersConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor]) -> None:
    run.section("3. Patch size: tokens, accuracy and time",
                f"{cfg.vit} with patches of {', '.join(f'{s} px' for s in p['patch_sizes'])}: a 28 x 28 digit "
                "becomes (28/p)^2 tokens plus the class token. Smaller patches give finer tokens and more of "
                f"them; self-attention costs grow with the square of their number. {p['patch_epochs']} epochs each.")
    train = TensorDataset(data["xtr"], data["ytr"])
    rows = []
    for size in run.track(list(p["patch_sizes"]), "patch sizes"):
        model, opt = _classifier(cfg.vit, cfg, patch_size=int(size))
        history, seconds = _train_classifier(model, opt, train, None, epochs=p["patch_epochs"], cfg=cfg)
        rows.append({"patch size": int(size), "tokens": (28 // int(size)) ** 2 + 1, "parameters": _n_params(model),
                     "epochs": p["patch_epochs"], "seconds per epoch": round(seconds / len(history), 3),
                     "test accuracy": _accuracy(model, data["xte"], data["yte"]), "seed": cfg.seed})
    run.table("Patch-size ablation", rows, caption=f"Tokens include the class token; seed {cfg.seed}.")
    run.log(patch_ablation={str(r["patch size"]): {"tokens": r["tokens"], "accuracy": r["test accuracy"],
                                                  "seconds_per_epoch": r["seconds per epoch"]} for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.0))
    tokens = [r["tokens"] for r in rows]
    axes[0].plot(tokens, [r["test accuracy"] for r in rows], "o-")
    axes[1].plot(tokens, [r["seconds per epoch"] for r in rows], "s-", color="tab:orange")
    for r in rows:
        axes[0].annotate(f"p={r['patch size']}", (r["tokens"], r["test accuracy"]), fontsize=7)
    axes[0].set(xlabel="tokens", ylabel="test accuracy", xscale="log")
    axes[1].set(xlabel="tokens", ylabel="seconds per epoch", xscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Patch-size ablation of {cfg.vit} (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "patch-size-ablation", caption=f"Accuracy and time per epoch against the number of tokens "
               f"(seed {cfg.seed}).")


def _rollout_section(cfg: TransformersConfig, p: dict[str, Any], run: Run, vit: nn.Module,
                     data: dict[str, torch.Tensor]) -> None:
    from mlimaging.models.vit import attention_rollout

    run.section("4. Attention rollout",
                "Rollout multiplies the head-averaged attention matrices of all blocks, each with the identity "
                "added for the residual connection and rows renormalised; the class token's row shows how much "
                "the prediction draws on each patch (Abnar & Zuidema 2020).")
    # One test digit per class first (then the next ones), so the figure shows different digits.
    yte = data["yte"]
    firsts = [int(torch.nonzero(yte == c)[0]) for c in torch.unique(yte).tolist()]
    order = firsts + [i for i in range(len(yte)) if i not in set(firsts)]
    idx = torch.tensor(order[: min(p["rollout_digits"], len(yte))])
    x, y, n = data["xte"][idx], yte[idx], len(idx)
    vit.eval()
    with torch.no_grad():
        logits, attentions = vit(x, return_attention=True)
    maps = attention_rollout(attentions, grid=vit.patch_grid(x.shape[2:]), size=tuple(x.shape[2:]))
    pred = logits.argmax(1)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.0), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(x[i, 0].numpy(), cmap="gray")
        axes[0, i].set_title(f"label {int(y[i])}, pred {int(pred[i])}", fontsize=7)
        axes[1, i].imshow(x[i, 0].numpy(), cmap="gray")
        axes[1, i].imshow(maps[i].numpy(), cmap="inferno", alpha=0.6)
        for ax in axes[:, i]:
            ax.axis("off")
    fig.suptitle(f"Attention rollout of {cfg.vit} (class token to patches; seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "attention-rollout", caption=f"Test digits (top) and the class token's rolled-out attention "
               f"over them (bottom), upsampled from the patch grid (seed {cfg.seed}).")
    run.log(rollout_map_means=[float(m) for m in maps.flatten(1).mean(1)])


# ------------------------------------------------------------------------------------ SAM section
def _phantoms(n: int, size: int, seed: int) -> Any:
    from mlimaging.data import PhantomDataset
    from mlimaging.segmentation.classical import BASE_KNOBS

    return PhantomDataset(n, (size, size), seed=seed, n_structures=3, **BASE_KNOBS)


def _prompt_cases(test: Any, seed: int) -> dict[str, Any]:
    """Every (test phantom, structure) pair with its prompts of each kind, seeded."""
    from mlimaging.models.sam.train import sample_prompts

    images, labels, targets, cases = [], [], [], []
    for i in range(len(test)):
        image, lab = test[i]
        for k in STRUCTURES:
            if (lab == k).any():
                images.append(image)
                labels.append(lab)
                targets.append(lab == k)
                cases.append((i, k))
    target = torch.stack(targets)
    g = torch.Generator().manual_seed(seed)
    prompts = {kind: sample_prompts(target, kind=kind, box_jitter=0.0, generator=g) for kind in PROMPT_LABELS}
    return {"images": torch.stack(images), "labels": torch.stack(labels), "targets": target, "cases": cases,
            "prompts": prompts}


def _to_frame(prompts: dict[str, Any], size: tuple[int, int], img_size: int) -> dict[str, Any]:
    """Prompts of the input frame mapped to SAM's input frame (as ``sample_prompts(target_size=...)``)."""
    from mlimaging.models.sam.train import preprocess_shape

    h, w = preprocess_shape(size[0], size[1], img_size)
    sx, sy = w / size[1], h / size[0]
    scale = {"points": torch.tensor([sx, sy]), "boxes": torch.tensor([sx, sy, sx, sy])}
    out = {}
    for k, v in prompts.items():
        if v is not None:
            out[k] = v * scale[k] if k in scale else v
    return out


def _dice(pred: torch.Tensor, target: torch.Tensor) -> float:
    inter = float((pred & target).sum())
    total = float(pred.sum() + target.sum())
    return 2 * inter / total if total else 1.0


def _sam_section(cfg: TransformersConfig, p: dict[str, Any], run: Run) -> None:
    from mlimaging.experiments.segmentation import _NETWORKS, SegmentationConfig
    from mlimaging.models import create_model
    from mlimaging.models.sam.train import SAMStep, predict_masks
    from mlimaging.segmentation.dense import build_segmenter, predict_labels, train_segmenter
    from mlimaging.segmentation.samples import SegmentationSamples
    from mlimaging.training import fit

    size = p["phantom_size"]
    train = _phantoms(p["sam_train"], size, 1000 * cfg.seed + 500)
    test = _phantoms(p["sam_test"], size, 1000 * cfg.seed + 501)
    run.section("5. Promptable segmentation with SAM",
                f"sam_tiny (128 px input, 64-dim encoder of depth 4) trained from scratch on {len(train)} phantoms of "
                f"{size} x {size} px (the segmentation experiment's base knobs) for {p['sam_epochs']} epochs: per "
                "batch one prompt kind (one point, three points, or the bounding box jittered by 10% of its side), "
                "per image one structure; AdamW with a cosine learning-rate decay; focal + Dice (20:1) + IoU "
                "loss, the lowest-loss mask of the three multimask outputs back-propagated for one point. Tested on "
                f"{len(test)} held-out phantoms, each structure prompted with one point, three points (uniform in "
                "the structure) and its exact bounding box, against the segmentation experiment's U-Net trained on "
                "the same phantoms (no prompt: it labels every structure at once).")
    sam = create_model("sam_tiny", seed=cfg.seed)
    step = SAMStep(seed=cfg.seed)
    t0 = time.perf_counter()
    history = fit(sam, train, step=step, optimizer=lambda ps: torch.optim.AdamW(ps, lr=cfg.sam_lr, weight_decay=0.01),
                  scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=p["sam_epochs"]),
                  epochs=p["sam_epochs"], batch_size=cfg.sam_batch_size, seed=cfg.seed, metrics=(), grad_clip=1.0,
                  progress=not cfg.quick)
    sam_seconds = time.perf_counter() - t0
    sam.eval()
    # An official-format state dict: `mlimaging sam predict IMAGE --checkpoint <run>/sam_tiny.pth ...`
    weights = run.path / "sam_tiny.pth"
    torch.save(sam.state_dict(), weights)
    run.text(f"The trained weights are in {weights.name} (SAM's checkpoint format): "
             f"`mlimaging sam predict IMAGE --checkpoint {weights} --box X0,Y0,X1,Y1 --out mask.nii.gz` "
             "segments a scan's slice with them (`--slice AXIS:INDEX` for a volume).")

    seg = SegmentationConfig()
    arch, kwargs = _NETWORKS["U-Net"]
    unet = build_segmenter(arch, num_classes=4, seed=cfg.seed, **kwargs)
    t0 = time.perf_counter()
    train_segmenter(unet, SegmentationSamples(train), epochs=p["unet_epochs"], batch_size=seg.batch_size, lr=seg.lr,
                    seed=cfg.seed)
    unet_seconds = time.perf_counter() - t0

    cases = _prompt_cases(test, cfg.seed)
    frame = tuple(cases["images"].shape[-2:])
    preds: dict[str, torch.Tensor] = {}
    for kind in PROMPT_LABELS:
        prompts = _to_frame(cases["prompts"][kind], frame, int(sam.img_size))
        preds[PROMPT_LABELS[kind]], _ = predict_masks(sam, cases["images"], prompts, multimask=kind == "point")
    unet_labels = {i: torch.from_numpy(predict_labels(unet, test[i][0])) for i in range(len(test))}
    preds["U-Net"] = torch.stack([unet_labels[i] == k for i, k in cases["cases"]])
    rows, summary = [], {}
    for method, masks in preds.items():
        per = {k: [_dice(m, t) for m, t, (_, kk) in zip(masks, cases["targets"], cases["cases"], strict=True) if kk == k]
               for k in STRUCTURES}
        row = {"method": method, **{f"Dice {STRUCTURES[k]}": float(np.mean(v)) if v else float("nan")
                                    for k, v in per.items()}}
        row["mean Dice"] = float(np.mean([d for v in per.values() for d in v]))
        summary[method] = row["mean Dice"]
        rows.append(row)
    run.table("Dice per prompt type on held-out phantoms", rows,
              caption=f"Means over {len(test)} test phantoms; sam_tiny trained {sam_seconds:.1f} s "
                      f"({p['sam_epochs']} epochs), U-Net {unet_seconds:.1f} s ({p['unet_epochs']} epochs); "
                      f"seed {cfg.seed}.")
    run.log(sam_dice=summary, sam_parameters=_n_params(sam), sam_train_seconds=sam_seconds,
            unet_train_seconds=unet_seconds, sam_history=history.epochs)
    _sam_figures(cfg, run, cases, preds, history)
    _automatic_section(cfg, p, run, sam, test)


def _draw_prompts(ax: Any, prompts: dict[str, Any], j: int) -> None:
    if prompts.get("points") is not None:
        pts = prompts["points"][j].numpy()
        ax.plot(pts[:, 0], pts[:, 1], "*", color="yellow", ms=9, mec="black", mew=0.6)
    if prompts.get("boxes") is not None:
        x0, y0, x1, y1 = prompts["boxes"][j].tolist()
        ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, ec="yellow", lw=1.2))


def _sam_figures(cfg: TransformersConfig, run: Run, cases: dict[str, Any], preds: dict[str, torch.Tensor],
                 history: Any) -> None:
    # One case per structure (first test phantom that has it): image + ground truth, then each method.
    picks = [next(j for j, (_, k) in enumerate(cases["cases"]) if k == s) for s in STRUCTURES
             if any(k == s for _, k in cases["cases"])]
    methods = list(preds)
    fig, axes = plt.subplots(len(picks), 1 + len(methods), figsize=(1.9 * (1 + len(methods)), 1.9 * len(picks)),
                             squeeze=False)
    for r, j in enumerate(picks):
        image = cases["images"][j, 0].numpy()
        target = cases["targets"][j].numpy()
        k = cases["cases"][j][1]
        axes[r, 0].imshow(image, cmap="gray")
        axes[r, 0].contour(target, levels=[0.5], colors="lime", linewidths=0.8)
        axes[r, 0].set_title(f"{STRUCTURES[k]}: ground truth", fontsize=7)
        for c, method in enumerate(methods, start=1):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray")
            pred = preds[method][j].numpy()
            ax.imshow(np.ma.masked_where(~pred, pred), cmap=_MASK_CMAP, alpha=0.5, vmin=0, vmax=1)
            ax.contour(target, levels=[0.5], colors="lime", linewidths=0.6)
            kind = next((kd for kd, lbl in PROMPT_LABELS.items() if lbl == method), None)
            if kind is not None:
                _draw_prompts(ax, cases["prompts"][kind], j)
            ax.set_title(f"{method}: Dice {_dice(preds[method][j], cases['targets'][j]):.2f}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"sam_tiny prompts (yellow) and masks (red) against the ground truth (green); seed {cfg.seed}",
                 fontsize=8)
    fig.tight_layout()
    run.figure(fig, "sam-prompts-and-masks", caption="One held-out phantom per structure: the prompt of each kind, "
               f"SAM's mask and the U-Net's label for that structure (seed {cfg.seed}).")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.0))
    axes[0].plot(history["epoch"], history["loss"], "o-", ms=3, label="total")
    axes[0].plot(history["epoch"], history["dice_loss"], "s--", ms=3, label="Dice loss")
    axes[0].set(xlabel="epoch", ylabel="training loss", yscale="log")
    axes[0].legend(fontsize=7)
    axes[1].plot(history["epoch"], history["mask_iou"], "o-", ms=3)
    axes[1].set(xlabel="epoch", ylabel="IoU of the back-propagated mask")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"sam_tiny training (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "sam-training", caption="Per-epoch means of SAM's loss (focal x 20 + Dice + IoU error) and of "
               f"the IoU of the chosen mask with the ground truth (seed {cfg.seed}).")


def _automatic_section(cfg: TransformersConfig, p: dict[str, Any], run: Run, sam: nn.Module, test: Any) -> None:
    from skimage import data as skdata

    n = p["points_per_side"]
    images = {"phantom": test[0][0][0].numpy(), "camera": skdata.camera()}
    results = {}
    for name, image in images.items():
        masks = sam.automatic_masks(image, points_per_side=n, pred_iou_thresh=0.7, stability_score_thresh=0.8)
        results[name] = masks
    run.text(f"Automatic masks: a {n} x {n} grid of single-point prompts, masks kept when the predicted IoU is at "
             "least 0.7 and the stability score (IoU of the masks thresholded at logits -1 and +1) at least 0.8, "
             "duplicates removed by box NMS at IoU 0.7. The camera image is far from the phantoms sam_tiny saw.")
    rows = [{"image": name, "size": f"{images[name].shape[0]} x {images[name].shape[1]}", "masks": len(m),
             "mean predicted IoU": float(np.mean([d["predicted_iou"] for d in m])) if m else float("nan"),
             "mean area (px)": float(np.mean([d["area"] for d in m])) if m else float("nan")}
            for name, m in results.items()]
    run.table("Automatic masks", rows, caption=f"points_per_side {n}; seed {cfg.seed}.")
    run.log(automatic_masks={name: len(m) for name, m in results.items()})
    fig, axes = plt.subplots(1, 2 * len(images), figsize=(3.0 * 2 * len(images), 3.2))
    for c, (name, image) in enumerate(images.items()):
        axes[2 * c].imshow(image, cmap="gray")
        axes[2 * c].set_title(name, fontsize=8)
        overlay = np.zeros(image.shape[:2], dtype=np.int64)
        for i, d in enumerate(sorted(results[name], key=lambda d: -d["area"]), start=1):
            overlay[np.asarray(d["segmentation"], dtype=bool)] = i
        axes[2 * c + 1].imshow(image, cmap="gray")
        if overlay.max():
            axes[2 * c + 1].imshow(np.ma.masked_equal(overlay, 0), cmap=label_cmap(int(overlay.max())), alpha=0.55,
                                   vmin=0, vmax=int(overlay.max()) + 1, interpolation="nearest")
        axes[2 * c + 1].set_title(f"{len(results[name])} automatic masks", fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"Automatic masks of sam_tiny, {n} x {n} point grid (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "sam-automatic-masks", caption="Each colour is one mask (largest drawn first); the camera image "
               f"tests how the phantom-trained model transfers (seed {cfg.seed}).")


# ------------------------------------------------------------------------------------ experiment
@experiment("transformers", config=TransformersConfig)
def transformers_experiment(cfg: TransformersConfig, run: Run) -> None:
    """ViT from scratch vs LeNet (budget, augmentation, patch size, rollout); sam_tiny with prompts vs U-Net."""
    p = _resolve(cfg)
    run.log(settings=p, torch_threads=torch.get_num_threads())
    if "vit" in cfg.sections:
        data = _load_mnist(cfg, p)
        run.log(n_train=len(data["ytr"]), n_val=len(data["yva"]), n_test=len(data["yte"]))
        vit = _budget_section(cfg, p, run, data)
        _augmentation_section(cfg, p, run, data)
        _patch_section(cfg, p, run, data)
        _rollout_section(cfg, p, run, vit, data)
    if "sam" in cfg.sections:
        _sam_section(cfg, p, run)

r"""Experiment ``selfsupervised``: learn a representation without labels, judge it with few labels.

Sections of the report (all training through :func:`mlimaging.training.fit`, the
self-supervised methods with :class:`~mlimaging.selfsupervised.SelfSupervisedStep`):

1. **Augmentations**: a gallery of SimCLR views of mnist5k digits (full pipeline and crop only)
   and of 2D phantoms (intensity transforms inside an explicit ``valid_range``).
2. **Pretraining** on the mnist5k training images without their labels: SimCLR (NT-Xent on two
   augmented views, Chen et al. 2020) and a triplet network (positives: the other view of the
   same image, Schroff et al. 2015) on a small CNN; MAE (masked-patch reconstruction, He et al.
   2022) and I-JEPA (prediction of EMA-target embeddings of masked blocks, Assran et al. 2023,
   with C-JEPA's variance/covariance terms against collapse, Mo & Tong 2024) on a small ViT. Linear-probe and weighted-kNN accuracy with all labels, against the same
   architectures left at random initialisation.
3. **Label efficiency**: linear probe, kNN (Wu et al. 2018) and fine-tuning with 1%, 10% and
   100% of the labels (nested stratified subsets; 1% is 35 images) against the same CNN trained
   from scratch on the same images; means and spread over seeds.
4. **t-SNE** of test embeddings before and after pretraining.
5. **MAE reconstructions**: original, masked input, reconstruction.
6. **NT-Xent temperature** ablation (0.05 to 1.0) on probe accuracy.
7. **Weak augmentations teach trivial cues**: SimCLR with random crops only against the full
   pipeline, same budget, probe accuracy.
8. **Medical flavour**: SimCLR on unlabelled patches of 2D phantoms (noise, bias field, partial
   volume); the probes then name the tissue at the patch centre (background, body, organ,
   lesion) with few labels, against the CNN trained from scratch.

Every number depends only on ``seed`` (timings aside).

References
----------
Chen T. et al. (2020). A simple framework for contrastive learning of visual representations.
ICML. arXiv:2002.05709.

Schroff F., Kalenichenko D., Philbin J. (2015). FaceNet. CVPR. arXiv:1503.03832.

He K. et al. (2022). Masked autoencoders are scalable vision learners. CVPR. arXiv:2111.06377.

Assran M. et al. (2023). Self-supervised learning from images with a joint-embedding predictive
architecture. CVPR. arXiv:2301.08243.

Wu Z. et al. (2018). Unsupervised feature learning via non-parametric instance discrimination.
CVPR. arXiv:1805.01978.

van der Maaten L., Hinton G. (2008). Visualizing data using t-SNE. JMLR 9.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("selfsupervised", quick=True, seed=0, out="runs/ssl")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

__all__ = ["FULL", "QUICK", "SelfSupervisedConfig"]

METHODS = ("simclr", "triplet", "mae", "ijepa")
TRIPLET_MARGIN = 0.2
#: Batch-size caps per method: MAE needs optimiser steps more than large batches (at batch 128-256 it
#: stalls at the mean image on a CPU budget where batch 64 learns; see benchmarks/selfsupervised.py).
PRETRAIN_BATCH = {"mae": 64, "ijepa": 64}
LABELS = {"simclr": "SimCLR", "triplet": "Triplet", "mae": "MAE", "ijepa": "I-JEPA", "random-cnn": "random CNN",
          "random-vit": "random ViT", "supervised": "supervised (scratch)"}

#: Quick mode: a few hundred digits, one epoch each, one seed, two temperatures (every table and figure written).
QUICK: dict[str, Any] = {
    "n_train": 256, "n_test": 128, "epochs": 1, "ablation_epochs": 1, "ablation_train": 256,
    "temperatures": (0.1, 0.5), "seeds": (0,), "fractions": (0.01, 0.1, 1.0), "probe_epochs": 10,
    "fine_tune_epochs": 1, "tsne_points": 64, "tsne_iter": 250, "width": 8, "feature_dim": 32, "vit_dim": 32,
    "vit_depth": 1, "phantoms": 24,
}
#: Full mode: all 3,500 training digits, the recipe of the paper for each method at CPU scale, 3 seeds.
FULL: dict[str, Any] = {
    "n_train": None, "n_test": None, "epochs": 15, "ablation_epochs": 5, "ablation_train": 2000,
    "temperatures": (0.05, 0.1, 0.2, 0.5, 1.0), "seeds": (0, 1, 2), "fractions": (0.01, 0.1, 1.0),
    "probe_epochs": 50, "fine_tune_epochs": 3, "tsne_points": 600, "tsne_iter": 1000, "width": 16,
    "feature_dim": 128, "vit_dim": 64, "vit_depth": 4, "phantoms": 240,
}


@dataclass
class SelfSupervisedConfig(ExperimentConfig):
    """Settings of the ``selfsupervised`` experiment; ``None`` takes the quick/full value
    (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    n_train, n_test
        mnist5k training images (pretraining, and the labelled pool) and test images
        (stratified subsets; None: all 3,500 / 1,000).
    epochs
        Pretraining epochs of each method.
    ablation_epochs, ablation_train
        Epochs and training images of each SimCLR run of the temperature and augmentation ablations.
    temperatures
        NT-Xent temperatures of the ablation.
    seeds, fractions
        Label-efficiency seeds (subset draws and probe training) and label fractions.
    probe_epochs, fine_tune_epochs
        Epochs of the linear probe and of fine-tuning (as many optimiser steps on every fraction).
    tsne_points, tsne_iter
        Test embeddings shown by t-SNE and its iterations.
    width, feature_dim
        The small CNN's first-stage channels and representation width.
    vit_dim, vit_depth
        Width and depth of the ViT encoder of MAE and I-JEPA (patches of 4 px).
    phantoms
        2D phantoms (64 x 64 px) cut into labelled 32 x 32 patches for section 8 (a third more
        are held out for testing).
    temperature
        SimCLR's NT-Xent temperature (sections 2-4 and 7).
    lr, batch_size
        Adam learning rate and batch size of the pretraining.
    """

    n_train: int | None = None
    n_test: int | None = None
    epochs: int | None = None
    ablation_epochs: int | None = None
    ablation_train: int | None = None
    temperatures: tuple[float, ...] | None = None
    seeds: tuple[int, ...] | None = None
    fractions: tuple[float, ...] | None = None
    probe_epochs: int | None = None
    fine_tune_epochs: int | None = None
    tsne_points: int | None = None
    tsne_iter: int | None = None
    width: int | None = None
    feature_dim: int | None = None
    vit_dim: int | None = None
    vit_depth: int | None = None
    phantoms: int | None = None
    temperature: float = 0.5
    lr: float = 1e-3
    batch_size: int = 128


def _resolve(cfg: SelfSupervisedConfig) -> dict[str, Any]:
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    for key in ("epochs", "ablation_epochs", "ablation_train", "probe_epochs", "fine_tune_epochs", "tsne_points",
                "tsne_iter", "width", "feature_dim", "vit_dim", "vit_depth", "phantoms"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    if not p["temperatures"] or not all(isinstance(t, (int, float)) and t > 0 for t in p["temperatures"]):
        raise ValueError(f"temperatures must be positive numbers, got {p['temperatures']!r}")
    if not p["fractions"] or not all(isinstance(f, (int, float)) and 0 < f <= 1 for f in p["fractions"]):
        raise ValueError(f"fractions must be numbers in (0, 1], got {p['fractions']!r}")
    if not p["seeds"]:
        raise ValueError("seeds must hold at least one seed")
    if p["vit_dim"] % 4:
        raise ValueError(f"vit_dim must be a multiple of 4 (4 attention heads), got {p['vit_dim']}")
    if cfg.batch_size < 4:
        raise ValueError(f"batch_size must be >= 4, got {cfg.batch_size}")
    return p


# ------------------------------------------------------------------------------------ data and models
def _load(cfg: SelfSupervisedConfig, p: dict[str, Any]) -> dict[str, torch.Tensor]:
    from mlimaging.experiments.classification import class_subset, load_images

    data = {}
    for split, key, limit in (("train", "tr", p["n_train"]), ("test", "te", p["n_test"])):
        x, y, _ = load_images("mnist5k", split, seed=cfg.seed, image_size=28)
        if limit is not None and limit < len(y):
            idx = class_subset(y, total=limit, seed=cfg.seed)
            x, y = x[idx], y[idx]
        data["x" + key], data["y" + key] = x, y
    return data


def _seeded(seed: int, build: Any) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _cnn(p: dict[str, Any], seed: int) -> nn.Module:
    from mlimaging.selfsupervised.encoders import SmallCNN

    return _seeded(seed, lambda: SmallCNN(in_channels=1, feature_dim=p["feature_dim"], width=p["width"]))


def _augment(strength: str = "full") -> Any:
    from mlimaging.selfsupervised.augment import simclr_augment

    # no flips: a mirrored digit is another glyph (a flipped 2 is no 2), so flips teach a wrong invariance
    return simclr_augment(28, channels=1, strength=strength, min_scale=0.5, flip=False)


def _build(method: str, cfg: SelfSupervisedConfig, p: dict[str, Any], *, steps: int,
           temperature: float | None = None, strength: str = "full") -> nn.Module:
    from mlimaging.selfsupervised.ijepa import IJEPA, IJEPA_OPTIONS
    from mlimaging.selfsupervised.mae import MAE
    from mlimaging.selfsupervised.simclr import SimCLR
    from mlimaging.selfsupervised.triplet import TripletNet

    vit = dict(image_size=28, patch_size=4, encoder_dim=p["vit_dim"], encoder_depth=p["vit_depth"], encoder_heads=4)
    if method == "simclr":
        return _seeded(cfg.seed, lambda: SimCLR(_cnn(p, cfg.seed), projection_dim=64, hidden_dim=256,
                                                temperature=temperature or cfg.temperature,
                                                augment=_augment(strength)))
    if method == "triplet":
        return _seeded(cfg.seed, lambda: TripletNet(_cnn(p, cfg.seed), margin=TRIPLET_MARGIN, mining="semi_hard",
                                                    augment=_augment()))
    if method == "mae":
        return _seeded(cfg.seed, lambda: MAE(**vit, mask_ratio=0.75, decoder_dim=p["vit_dim"], decoder_depth=1,
                                             decoder_heads=4))
    if method == "ijepa":  # the recipe of `mlimaging pretrain ijepa` and the benchmark: C-JEPA's VICReg terms
        return _seeded(cfg.seed, lambda: IJEPA(**vit, predictor_dim=p["vit_dim"] // 2, predictor_depth=1,
                                               predictor_heads=4, total_steps=max(1, steps), **IJEPA_OPTIONS))
    raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")


def _loader(x: torch.Tensor, batch_size: int, seed: int) -> DataLoader:
    """Unlabelled images in shuffled batches (seeded); the last incomplete batch is dropped when it would be
    smaller than half a batch (contrastive losses need at least two images, BatchNorm too)."""
    b = min(batch_size, len(x))
    drop = len(x) % b != 0 and len(x) % b < b // 2
    return DataLoader(TensorDataset(x), batch_size=b, shuffle=True, drop_last=drop,
                      generator=torch.Generator().manual_seed(seed))


def _pretrain(method: str, cfg: SelfSupervisedConfig, p: dict[str, Any], x: torch.Tensor, *, epochs: int,
              temperature: float | None = None, strength: str = "full") -> tuple[nn.Module, dict[str, Any]]:
    from mlimaging.selfsupervised import SelfSupervisedStep
    from mlimaging.training import fit

    loader = _loader(x, min(cfg.batch_size, PRETRAIN_BATCH.get(method, cfg.batch_size)), cfg.seed)
    model = _build(method, cfg, p, steps=epochs * len(loader), temperature=temperature, strength=strength)
    wd = 0.05 if method in ("mae", "ijepa") else 1e-6
    t0 = time.perf_counter()
    history = fit(model, loader, step=SelfSupervisedStep(seed=cfg.seed), metrics=(), epochs=epochs, seed=cfg.seed,
                  optimizer=lambda ps: torch.optim.AdamW(ps, lr=cfg.lr, weight_decay=wd), grad_clip=3.0,
                  progress=not cfg.quick)
    seconds = time.perf_counter() - t0
    model.eval()
    return model, {"seconds": seconds, "history": history.epochs,
                   "parameters": sum(q.numel() for q in model.encoder.parameters())}


# ------------------------------------------------------------------------------------ sections
def _gallery_section(cfg: SelfSupervisedConfig, run: Run, data: dict[str, torch.Tensor]) -> None:
    from mlimaging.data import PhantomDataset
    from mlimaging.selfsupervised.augment import (
        Compose,
        GaussianNoise,
        IntensityJitter,
        RandomResizedCrop,
    )

    run.section("1. Augmentations", "SimCLR draws two random views of each image; the network must recognise "
                "them as the same image among the batch. Full pipeline: random resized crop (area 50-100%), "
                "intensity jitter (p = 0.8), Gaussian blur (p = 0.5); crop only: the weak "
                "pipeline of section 7. No horizontal flips (SimCLR's default): a mirrored digit is another "
                "glyph. For the phantom the intensity transforms clip to an explicit valid "
                "range, as a CT in Hounsfield units would need.")
    g = torch.Generator().manual_seed(cfg.seed)
    yte = data["yte"]
    idx = [int(torch.nonzero(yte == c)[0]) for c in torch.unique(yte).tolist()[:4]]
    x = data["xte"][idx]
    n_views = 4
    full, crop = _augment("full"), _augment("crop")
    phantom = PhantomDataset(1, (64, 64), seed=cfg.seed, n_structures=3, noise=0.03)[0][0][None]
    med = Compose([RandomResizedCrop(64, scale=(0.4, 1.0)), IntensityJitter(0.3, 0.3, valid_range=(0.0, 1.0)),
                   GaussianNoise(0.03, valid_range=(0.0, 1.0))])
    rows = [(x[i:i + 1], full, f"digit {int(yte[idx[i]])}: full") for i in range(len(idx))]
    rows += [(x[:1], crop, "crop only"), (phantom, med, "phantom")]
    fig, axes = plt.subplots(len(rows), 1 + n_views, figsize=(1.3 * (1 + n_views), 1.35 * len(rows)), squeeze=False)
    for r, (img, t, name) in enumerate(rows):
        views = t(img.expand(n_views, -1, -1, -1).contiguous(), generator=g)
        axes[r, 0].imshow(img[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
        axes[r, 0].set_title(name, fontsize=7)
        for c in range(n_views):
            axes[r, c + 1].imshow(views[c, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c + 1].set_title(f"view {c + 1}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"Augmentation gallery (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "augmentation-gallery", caption="Original (left) and four random views per row: SimCLR's full "
               "pipeline on digits, the crop-only pipeline, and a 2D phantom with crop, intensity jitter and noise "
               "clipped to [0, 1].")


def _pretrain_section(cfg: SelfSupervisedConfig, p: dict[str, Any], run: Run,
                      data: dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
    from mlimaging.selfsupervised.evaluation import knn_accuracy, linear_probe

    run.section("2. Pretraining without labels", f"Each method trains for {p['epochs']} epochs on the "
                f"{len(data['ytr'])} mnist5k training images without their labels (AdamW, lr {cfg.lr:g}, batch "
                f"{cfg.batch_size}; MAE batch {min(cfg.batch_size, PRETRAIN_BATCH['mae'])}, I-JEPA batch "
                f"{min(cfg.batch_size, PRETRAIN_BATCH['ijepa'])}). SimCLR and the triplet network use a small CNN (width {p['width']}, "
                f"{p['feature_dim']}-d features; SimCLR temperature {cfg.temperature:g}; triplet margin {TRIPLET_MARGIN:g} on "
                "L2-normalised embeddings, semi-hard mining, the positive of a view being the other view of its "
                "image); MAE (75% of the 4 x 4 px patches masked) and I-JEPA (4 target blocks, EMA target "
                "encoder from momentum 0.99, with C-JEPA's VICReg variance and covariance terms on the context "
                "tokens against collapse: Mo & Tong 2024; the paper's I-JEPA collapses at this scale) "
                f"a ViT of width {p['vit_dim']} and depth {p['vit_depth']}. Representations are judged by "
                f"a linear probe ({p['probe_epochs']} epochs on the frozen, standardised features) and a weighted "
                f"20-NN vote on all {len(data['ytr'])} training labels, against each architecture at random "
                "initialisation.")
    train, test = (data["xtr"], data["ytr"]), (data["xte"], data["yte"])
    models, infos, rows = {}, {}, []
    for method in run.track(list(METHODS), "pretraining"):
        model, info = _pretrain(method, cfg, p, data["xtr"], epochs=p["epochs"])
        models[method], infos[method] = model, info
    models["random-cnn"] = _cnn(p, cfg.seed)
    models["random-vit"] = _build("mae", cfg, p, steps=1).encoder
    for name, model in models.items():
        enc = model.encoder if hasattr(model, "ssl_loss") else model
        probe = linear_probe(enc, train, test, epochs=p["probe_epochs"], seed=cfg.seed)
        info = infos.get(name, {})
        rows.append({"method": LABELS[name], "encoder": "ViT" if name in ("mae", "ijepa", "random-vit") else "CNN",
                     "encoder parameters": sum(q.numel() for q in enc.parameters()),
                     "pretraining seconds": round(info["seconds"], 2) if info else 0.0,
                     "final loss": info["history"][-1]["loss"] if info else float("nan"),
                     "linear probe": probe["accuracy"], "kNN": knn_accuracy(enc, train, test, k=20)})
    final = infos["triplet"]["history"][-1]["loss"]
    if abs(final - TRIPLET_MARGIN) < 0.02 * TRIPLET_MARGIN:
        run.text(f"The triplet network ends with a loss of {final:.4f}, the margin {TRIPLET_MARGIN:g}: its "
                 "embeddings have collapsed (positives and negatives at the same distance). Hard mining of "
                 "self-supervised views is prone to this (Schroff et al. 2015 mine semi-hard negatives for this "
                 "reason; Hermans et al. 2017, arXiv:1703.07737). Its probes measure what the encoder kept.")
    run.table("Probes after pretraining (all labels)", rows,
              caption=f"Test accuracy on {len(data['yte'])} mnist5k test digits; seed {cfg.seed}.")
    run.log(pretraining={r["method"]: {k: v for k, v in r.items() if k != "method"} for r in rows},
            pretraining_histories={m: infos[m]["history"] for m in METHODS})
    fig, axes = plt.subplots(1, len(METHODS), figsize=(2.6 * len(METHODS), 2.4))
    for ax, m in zip(axes, METHODS, strict=True):
        h = infos[m]["history"]
        ax.plot([r["epoch"] for r in h], [r["loss"] for r in h], "o-", ms=3)
        ax.set(title=LABELS[m], xlabel="epoch", ylabel="loss" if m == METHODS[0] else None)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Pretraining losses (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "pretraining-losses", caption="Per-epoch mean proxy loss of each method.")
    return models, infos


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["probe"], r["fraction"]), []).append(r)
    out = []
    for (method, probe, fraction), rs in groups.items():
        acc = np.array([r["accuracy"] for r in rs])
        out.append({"method": method, "probe": probe, "fraction": fraction, "labels": rs[0]["labels"],
                    "seeds": len(rs), "mean accuracy": float(acc.mean()),
                    "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                    "min": float(acc.min()), "max": float(acc.max())})
    return out


def _label_efficiency_section(cfg: SelfSupervisedConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor],
                              models: dict[str, Any]) -> None:
    from mlimaging.selfsupervised.evaluation import label_efficiency

    n = len(data["ytr"])
    sizes = ", ".join(str(min(n, max(10, round(f * n)))) for f in p["fractions"])
    run.section("3. Label efficiency", f"Fractions {', '.join(f'{f:g}' for f in p['fractions'])} of the "
                f"{n} training labels ({sizes} images: nested stratified subsets, at least one per class), seeds "
                f"{', '.join(map(str, p['seeds']))}. Linear probe and kNN on each pretrained encoder, fine-tuning "
                "(encoder + linear head, end to end) of the SimCLR encoder, and the same CNN trained from scratch "
                "on the same images with the same fine-tuning recipe: the baseline that self-supervision must "
                "beat when labels are few. Trained probes take as many optimiser steps on every fraction.")
    train, test = (data["xtr"], data["ytr"]), (data["xte"], data["yte"])
    common = dict(fractions=p["fractions"], seeds=p["seeds"], probe_epochs=p["probe_epochs"],
                  fine_tune_epochs=p["fine_tune_epochs"], batch_size=64)
    rows = []
    for name in run.track(["simclr", "triplet", "mae", "ijepa", "random-cnn"], "label efficiency"):
        probes = ("linear", "knn", "fine_tune") if name == "simclr" else ("linear", "knn")
        supervised = (lambda s: _cnn(p, 1000 + s)) if name == "simclr" else None
        rows += label_efficiency(models[name], train, test, probe=probes, supervised=supervised, name=LABELS[name],
                                 **common)
    summary = _summarise(rows)
    run.table("Label efficiency", summary, caption=f"Test accuracy, mean, standard deviation, min and max over "
              f"{len(p['seeds'])} seed(s).")
    run.log(label_efficiency=rows)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    styles = {"linear": "-", "knn": ":", "fine_tune": "--", "scratch": "-"}
    colours = {m: plt.cm.tab10(i) for i, m in enumerate(dict.fromkeys(r["method"] for r in summary))}
    for (method, probe) in dict.fromkeys((r["method"], r["probe"]) for r in summary):
        pts = sorted((r for r in summary if r["method"] == method and r["probe"] == probe), key=lambda r: r["labels"])
        xs = [r["labels"] for r in pts]
        mean = np.array([r["mean accuracy"] for r in pts])
        std = np.array([r["std"] for r in pts])
        lw = 2.5 if method == LABELS["supervised"] else 1.3
        ax.errorbar(xs, mean, yerr=std, fmt="o" + styles[probe], ms=3, lw=lw, capsize=3, color=colours[method],
                    label=f"{method}, {probe.replace('_', '-')}" if probe != "scratch" else method)
    ax.set(xscale="log", xlabel="labelled training images", ylabel="test accuracy",
           title=f"Label efficiency on mnist5k (mean +- std over {len(p['seeds'])} seed(s))")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6.5, ncol=2)
    fig.tight_layout()
    run.figure(fig, "label-efficiency", caption="Accuracy against the number of labels: probes of each pretrained "
               "encoder, fine-tuned SimCLR and the CNN trained from scratch (thick line); error bars: standard "
               "deviation over seeds.")


def _tsne_section(cfg: SelfSupervisedConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor],
                  models: dict[str, Any]) -> None:
    from sklearn.manifold import TSNE

    from mlimaging.experiments.classification import class_subset
    from mlimaging.selfsupervised.evaluation import extract_features

    n = min(p["tsne_points"], len(data["yte"]))
    idx = class_subset(data["yte"], total=n, seed=cfg.seed)
    x, y = data["xte"][idx], data["yte"][idx].numpy()
    run.section("4. t-SNE of the representations", f"{len(idx)} test digits embedded by t-SNE (perplexity "
                f"{min(30, (len(idx) - 1) // 3)}, cosine distances as the kNN probe, PCA initialisation), coloured by their label, which no encoder saw. "
                "Before pretraining a random CNN already groups some digits (pixel similarity survives random "
                "convolutions); after SimCLR the classes form separate clusters.")
    panels = [("random-cnn", "CNN before (random)"), ("simclr", "CNN after SimCLR"), ("triplet", "CNN after triplet"),
              ("random-vit", "ViT before (random)"), ("mae", "ViT after MAE"), ("ijepa", "ViT after I-JEPA")]
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.4))
    for ax, (name, title) in zip(axes.flat, panels, strict=True):
        model = models[name]
        feats = extract_features(model.encoder if hasattr(model, "ssl_loss") else model, x).numpy()
        emb = TSNE(n_components=2, perplexity=min(30.0, (len(idx) - 1) / 3), init="pca", metric="cosine",
                   random_state=cfg.seed,
                   max_iter=max(250, p["tsne_iter"])).fit_transform(feats)
        sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes, ticks=range(10), shrink=0.8, label="digit")
    fig.suptitle(f"t-SNE of test embeddings before and after pretraining (seed {cfg.seed})", fontsize=10)
    run.figure(fig, "tsne-before-after", caption="t-SNE of the encoders' features of the same test digits.")


def _mae_section(cfg: SelfSupervisedConfig, run: Run, data: dict[str, torch.Tensor], mae: nn.Module) -> None:
    run.section("5. MAE reconstructions", "The MAE encoder sees only the 25% visible patches; the light decoder "
                "fills in the masked ones from the encoded visible tokens and mask tokens at their positions. The "
                "loss (mean squared error) counts the masked patches only.")
    yte = data["yte"]
    idx = [int(torch.nonzero(yte == c)[0]) for c in torch.unique(yte).tolist()[:8]]
    x = data["xte"][idx]
    masked, recon, _ = mae.reconstruct(x, generator=torch.Generator().manual_seed(cfg.seed))
    err = float(((recon - x) ** 2).mean())
    fig, axes = plt.subplots(3, len(idx), figsize=(1.2 * len(idx), 3.8), squeeze=False)
    for c in range(len(idx)):
        for r, (img, name) in enumerate(((x, "original"), (masked, "masked input"), (recon, "reconstruction"))):
            axes[r, c].imshow(img[c, 0].clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
            if c == 0:
                axes[r, c].set_title(name, fontsize=7, loc="left")
    fig.suptitle(f"MAE on test digits, 75% of the patches masked (seed {cfg.seed})", fontsize=9)
    fig.tight_layout()
    run.figure(fig, "mae-reconstructions", caption="Rows: original, masked input (removed patches black), "
               "reconstruction (visible patches pasted back).")
    run.log(mae_reconstruction_mse=err)


def _ablation_section(cfg: SelfSupervisedConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor],
                      reuse: tuple[nn.Module, dict[str, Any]] | None = None) -> None:
    """Temperature and augmentation ablations; ``reuse`` is section 2's SimCLR (model, info), taken for the
    default temperature when the ablation trains on the same images for as many epochs."""
    from mlimaging.experiments.classification import class_subset
    from mlimaging.selfsupervised.evaluation import knn_accuracy, linear_probe

    n = min(p["ablation_train"], len(data["ytr"]))
    idx = class_subset(data["ytr"], total=n, seed=cfg.seed) if n < len(data["ytr"]) else torch.arange(n)
    xtr, ytr = data["xtr"][idx], data["ytr"][idx]
    test = (data["xte"], data["yte"])
    run.section("6. NT-Xent temperature", f"SimCLR pretrained {p['ablation_epochs']} epoch(s) on {n} images at each "
                "temperature, then probed with their labels. A low temperature sharpens the softmax over negatives "
                "and focuses the loss on the hardest ones; a high one treats all alike (Chen et al. 2020, "
                "section 5.1; Wang & Liu 2021).")

    def probe(model: nn.Module) -> dict[str, float]:
        res = linear_probe(model.encoder, (xtr, ytr), test, epochs=p["probe_epochs"], seed=cfg.seed)
        return {"linear probe": res["accuracy"], "kNN": knn_accuracy(model.encoder, (xtr, ytr), test)}

    temps = [float(t) for t in p["temperatures"]]
    rows, cache = [], {}
    same = reuse is not None and n == len(data["ytr"]) and p["ablation_epochs"] == p["epochs"]
    for t in run.track(temps, "temperature"):
        if same and t == float(cfg.temperature):
            model, info = reuse
        else:
            model, info = _pretrain("simclr", cfg, p, xtr, epochs=p["ablation_epochs"], temperature=t)
        res = probe(model)
        cache[t] = (res, info)
        rows.append({"temperature": t, **res, "final loss": info["history"][-1]["loss"],
                     "seconds": round(info["seconds"], 2)})
    run.table("NT-Xent temperature ablation", rows, caption=f"{n} training images, {len(data['yte'])} test images; "
              f"seed {cfg.seed}.")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(temps, [r["linear probe"] for r in rows], "o-", label="linear probe")
    ax.plot(temps, [r["kNN"] for r in rows], "s--", label="kNN")
    ax.set(xscale="log", xlabel="NT-Xent temperature", ylabel="test accuracy", title="Temperature ablation")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    run.figure(fig, "temperature-ablation", caption="Probe accuracy of SimCLR against its temperature.")

    run.section("7. Weak augmentations teach trivial cues", "With random crops alone, two views of a digit share "
                "their stroke thickness, intensity and blur: the network can match views by these low-level cues "
                "without learning the digit's shape. Colour/intensity distortion and blur remove the shortcut "
                f"(Chen et al. 2020, section 3). Same {p['ablation_epochs']} epoch(s), {n} images, temperature "
                f"{cfg.temperature:g}.")
    full = cache.get(float(cfg.temperature))
    if full is None:
        model, info = _pretrain("simclr", cfg, p, xtr, epochs=p["ablation_epochs"])
        full = (probe(model), info)
    model, info = _pretrain("simclr", cfg, p, xtr, epochs=p["ablation_epochs"], strength="crop")
    crop = (probe(model), info)
    aug_rows = [{"augmentation": name, **res, "final loss": inf["history"][-1]["loss"]}
                for name, (res, inf) in (("crop only", crop), ("full pipeline", full))]
    run.table("Crop only vs full augmentation", aug_rows, caption=f"SimCLR probes; seed {cfg.seed}.")
    d_lin = 100 * (aug_rows[1]["linear probe"] - aug_rows[0]["linear probe"])
    d_knn = 100 * (aug_rows[1]["kNN"] - aug_rows[0]["kNN"])
    run.text(f"Here the full pipeline changes the linear probe by {d_lin:+.1f} and the kNN accuracy by {d_knn:+.1f} "
             "points. Digits are grey-level and centred: the shortcut that crops leave (matching views by their "
             "intensity statistics) is weaker than the colour histograms of natural images that Chen et al. "
             "(2020) report.")
    run.log(temperature_ablation=rows, augmentation_ablation=aug_rows)
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    pos = np.arange(2)
    for k, key in enumerate(("linear probe", "kNN")):
        ax.bar(pos + 0.38 * k, [r[key] for r in aug_rows], width=0.36, label=key)
    ax.set_xticks(pos + 0.19, [r["augmentation"] for r in aug_rows])
    ax.set(ylabel="test accuracy", ylim=(0, 1), title="Augmentation strength")
    ax.legend(fontsize=8)
    fig.tight_layout()
    run.figure(fig, "crop-vs-full-augmentation", caption="Probe accuracy of SimCLR with crop-only views and with the "
               "full pipeline.")


def _phantom_patches(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """32 x 32 patches of ``n`` 64 x 64 phantoms, one centred on a random pixel of each tissue present;
    the label is the tissue at the centre (0 background, 1 body, 2 organ, 3 lesion)."""
    from mlimaging.data import PhantomDataset
    from mlimaging.segmentation.classical import BASE_KNOBS

    ds = PhantomDataset(n, (64, 64), seed=seed, n_structures=3, **BASE_KNOBS)
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for i in range(len(ds)):
        image, labels = ds[i]
        padded = nn.functional.pad(image, (16, 16, 16, 16))
        for k in range(4):
            where = torch.nonzero(labels == k)
            if len(where) == 0:
                continue
            r, c = where[int(torch.randint(len(where), (1,), generator=g))].tolist()
            xs.append(padded[:, r:r + 32, c:c + 32])
            ys.append(k)
    return torch.stack(xs).clamp(0, 1), torch.tensor(ys)


def _phantom_section(cfg: SelfSupervisedConfig, p: dict[str, Any], run: Run, n_digits: int) -> None:
    """Section 8; fine-tuning takes as many optimiser steps as on the ``n_digits`` training digits."""
    from mlimaging.selfsupervised import SelfSupervisedStep
    from mlimaging.selfsupervised.augment import simclr_augment
    from mlimaging.selfsupervised.encoders import SmallCNN
    from mlimaging.selfsupervised.evaluation import label_efficiency
    from mlimaging.selfsupervised.simclr import SimCLR
    from mlimaging.training import fit

    xtr, ytr = _phantom_patches(p["phantoms"], 1000 * cfg.seed + 700)
    xte, yte = _phantom_patches(max(4, p["phantoms"] // 3), 1000 * cfg.seed + 701)
    run.section("8. Medical flavour: phantom patches", f"{len(ytr)} patches of 32 x 32 px cut from {p['phantoms']} "
                "2D phantoms (the segmentation experiment's base knobs: noise, bias field, partial volume, shape "
                f"variability), one centred on each tissue present; {len(yte)} test patches from held-out "
                f"phantoms. SimCLR (temperature {cfg.temperature:g}, {p['epochs']} epochs) learns from the patches "
                "without labels; the probes then name the tissue under the patch centre with 10% or all of the "
                "labels, against the same CNN at random initialisation and trained from scratch.")
    width, dim = p["width"], p["feature_dim"]
    model = _seeded(cfg.seed, lambda: SimCLR(SmallCNN(feature_dim=dim, width=width), projection_dim=64,
                                             hidden_dim=256, temperature=cfg.temperature,
                                             augment=simclr_augment(32, strength="full", min_scale=0.5)))
    fit(model, _loader(xtr, cfg.batch_size, cfg.seed), step=SelfSupervisedStep(seed=cfg.seed), metrics=(),
        epochs=p["epochs"], seed=cfg.seed, optimizer=lambda ps: torch.optim.AdamW(ps, lr=cfg.lr, weight_decay=1e-6),
        grad_clip=3.0, progress=not cfg.quick)
    model.eval()

    def fresh(s: int) -> nn.Module:
        return _seeded(1000 + s, lambda: SmallCNN(feature_dim=dim, width=width))

    steps = max(1, round(p["fine_tune_epochs"] * n_digits / len(ytr)))
    common = dict(fractions=(0.1, 1.0), seeds=(cfg.seed,), probe=("linear", "knn"), probe_epochs=p["probe_epochs"],
                  fine_tune_epochs=steps, batch_size=64)
    rows = label_efficiency(model, (xtr, ytr), (xte, yte), supervised=fresh, name="SimCLR", **common)
    rows += label_efficiency(fresh(cfg.seed), (xtr, ytr), (xte, yte), name="random CNN", **common)
    table = [{"encoder": r["method"], "probe": r["probe"], "labels": r["labels"], "accuracy": r["accuracy"]}
             for r in rows]
    run.table("Phantom patches: tissue at the centre", table, caption=f"Test accuracy on {len(yte)} patches "
              f"(4 classes, chance about 0.25); seed {cfg.seed}.")
    run.log(phantom_patches={"n_train": len(ytr), "n_test": len(yte), "rows": rows})


# ------------------------------------------------------------------------------------ experiment
@experiment("selfsupervised", config=SelfSupervisedConfig)
def selfsupervised_experiment(cfg: SelfSupervisedConfig, run: Run) -> None:
    """SimCLR, triplet, MAE and I-JEPA pretraining on mnist5k; probes and label efficiency vs supervised."""
    p = _resolve(cfg)
    run.log(settings=p, torch_threads=torch.get_num_threads())
    data = _load(cfg, p)
    run.log(n_train=len(data["ytr"]), n_test=len(data["yte"]))
    _gallery_section(cfg, run, data)
    models, infos = _pretrain_section(cfg, p, run, data)
    _label_efficiency_section(cfg, p, run, data, models)
    _tsne_section(cfg, p, run, data, models)
    _mae_section(cfg, run, data, models["mae"])
    _ablation_section(cfg, p, run, data, reuse=(models["simclr"], infos["simclr"]))
    _phantom_section(cfg, p, run, len(data["ytr"]))

r"""Experiment ``segmentation``: classical methods and dense CNNs on phantoms with the real challenges.

Every method segments the same 2D phantoms (noise, a smooth bias field, partial volume and
shape variability; ``BASE_KNOBS``) and, for the breakdown, the same phantoms with one
challenge made harder (``CHALLENGES``):

- **threshold**: fixed thresholds halfway between the structures' nominal intensities,
  :math:`t_k = (I_{(k)} + I_{(k+1)}) / 2` for the sorted intensities :math:`I_{(k)}`;
- **Otsu**: the ``K - 1`` multi-level Otsu thresholds of the image itself;
- **region growing**: one seed per structure (its deepest voxel within bounds, the "click"
  of a user who knows the anatomy), bounds :math:`I_k \pm \tfrac12 \min_j |I_k - I_j|`;
- **patch CNN** (17 x 17 patch -> centre label), **FCN** (the same weights, fully
  convolutional), **SegNet**, **U-Net**, **DeepLab-ASPP** and the two-pathway
  **multiscale** network, all trained with :func:`mlimaging.training.fit` on the union of
  the base and challenge training sets, with the Dice + cross-entropy loss.

Images given to the networks are z-scored per image (:func:`zscore`),
:math:`\tilde I = (I - \bar I) / \sigma_I`, which also makes a network independent of the
scanner's intensity scale. A small 3D set (anisotropic phantoms) compares the classical
methods with a 3D U-Net. Scores come from :func:`mlimaging.metrics.evaluate_segmentation`.

The building blocks live in :mod:`mlimaging.segmentation.dense` (``build_segmenter``,
``train_segmenter``, ``predict_labels``), :mod:`~mlimaging.segmentation.samples`,
:mod:`~mlimaging.segmentation.patches` and :mod:`~mlimaging.segmentation.classical` (the
classical label-map functions), shared with ``mlimaging train segmenter`` / ``predict-seg``
and ``benchmarks/segmentation.py``.

References: Otsu N. (1979) IEEE TSMC 9(1):62-66; Long J., Shelhamer E., Darrell T. (2015)
CVPR, arXiv:1411.4038; Badrinarayanan V. et al. (2017) IEEE TPAMI, arXiv:1511.00561;
Ronneberger O. et al. (2015) MICCAI, arXiv:1505.04597; Chen L.-C. et al. (2017)
arXiv:1706.05587; Kamnitsas K. et al. (2017) MedIA 36:61-78.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import image_grid
from mlimaging.segmentation.classical import (
    BASE_KNOBS,
    nominal_intensities,
    otsu_labels,
    region_growing_labels,
    threshold_labels,
)
from mlimaging.segmentation.dense import build_segmenter, predict_labels, train_segmenter
from mlimaging.segmentation.patches import patch_dataset, patch_predict
from mlimaging.segmentation.samples import SegmentationSamples

__all__ = ["CHALLENGES", "FULL", "QUICK", "SegmentationConfig"]

#: One harder challenge per set, on top of the base knobs.
CHALLENGES: dict[str, dict[str, float]] = {
    "base": {},
    "strong inhomogeneity": {"bias_field": 0.7},
    "limited contrast": {"contrast": 0.35},
    "anisotropy": {"anisotropy": 4.0},
}
STRUCTURE_NAMES = {1: "body", 2: "organ", 3: "lesion"}
METRICS = ("dice", "hd95", "assd")


# ----------------------------------------------------------------------------- experiment
@dataclass
class SegmentationConfig(ExperimentConfig):
    """Sizes left at ``None`` take their quick or full value (:data:`QUICK`, :data:`FULL`).

    The experiment uses the torch thread count it is given (``mlimaging --threads N``).
    """

    size: int | None = None
    n_train: int | None = None
    n_test: int | None = None
    epochs: int | None = None
    patch_epochs: int | None = None
    per_class: int | None = None
    size_3d: int | None = None
    n_train_3d: int | None = None
    n_test_3d: int | None = None
    epochs_3d: int | None = None
    batch_size: int = 4
    lr: float = 3e-3
    lr_3d: float = 1e-2
    methods: tuple[str, ...] = ("threshold", "Otsu", "region growing", "patch CNN", "FCN", "SegNet",
                                "U-Net", "DeepLab-ASPP", "multiscale")


#: Every method the experiment knows (the default of ``SegmentationConfig.methods``).
METHODS = SegmentationConfig.methods


#: Quick mode: 2D phantoms of 64 x 64, 8 per setting for training, 3D volumes of 32^3.
QUICK = {"size": 64, "n_train": 8, "n_test": 3, "epochs": 15, "patch_epochs": 3, "per_class": 60,
         "size_3d": 32, "n_train_3d": 6, "n_test_3d": 2, "epochs_3d": 20}
#: Full mode: 2D phantoms of 96 x 96, 24 per setting, 3D volumes of 48^3.
FULL = {"size": 96, "n_train": 24, "n_test": 8, "epochs": 30, "patch_epochs": 6, "per_class": 200,
        "size_3d": 48, "n_train_3d": 16, "n_test_3d": 4, "epochs_3d": 25}


def _resolve(cfg: SegmentationConfig) -> dict[str, Any]:
    unknown = [m for m in cfg.methods if m not in METHODS]
    if unknown or not cfg.methods:
        raise ValueError(f"methods must be a non-empty selection of {list(METHODS)}, got {list(cfg.methods)}")
    base = QUICK if cfg.quick else FULL
    return {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}


_NETWORKS: dict[str, tuple[str, dict[str, Any]]] = {
    "SegNet": ("segnet", {"channels": 8, "depth": 3}),
    "U-Net": ("unet", {"channels": 8, "depth": 3}),
    "DeepLab-ASPP": ("deeplab", {"channels": 8, "aspp_channels": 16}),
    "multiscale": ("multiscale", {}),
}


def _phantoms(n: int, shape: tuple[int, ...], seed: int, knobs: Mapping[str, float]) -> Any:
    from mlimaging.data import PhantomDataset

    return PhantomDataset(n, shape, seed=seed, n_structures=3, **{**BASE_KNOBS, **knobs})


def _timed(fn: Any, images: Sequence[Any]) -> tuple[list[np.ndarray], float]:
    """Outputs of ``fn(i, image)`` and the mean seconds per image (after one untimed warm-up
    call, which pays for one-time set-up such as oneDNN kernel selection)."""
    if len(images):
        fn(0, images[0])
    t0 = time.perf_counter()
    out = [fn(i, x) for i, x in enumerate(images)]
    return out, (time.perf_counter() - t0) / max(len(images), 1)


def _scores(preds: list[np.ndarray], gts: list[np.ndarray]) -> dict[int, dict[str, float]]:
    from mlimaging.metrics import evaluate_segmentation

    with warnings.catch_warnings():
        # A method that misses a structure scores Dice 0 for it in the tables; the labels are the
        # phantom's own, so the label-set warning (meant for 0/1 against 0/255 files) is noise here.
        warnings.filterwarnings("ignore", message="pred and target hold different labels")
        res = evaluate_segmentation(preds, gts, labels=list(STRUCTURE_NAMES), metrics=METRICS)
    return {lab: {m: res.values(m, lab).mean() for m in METRICS} for lab in STRUCTURE_NAMES}


def _methods_2d(cfg: SegmentationConfig, p: dict[str, Any], run: Run, train: Dataset,
                train_sets: list[Any]) -> dict[str, tuple[Any, float, str]]:
    """Each method as ``(predict(image_tensor, reference, lut) -> labels, training s, note)``."""
    from mlimaging.models import FCN, create_model

    methods: dict[str, tuple[Any, float, str]] = {
        "threshold": (lambda x, ref, lut: threshold_labels(x[0].numpy(), lut), 0.0, "midpoints of nominal intensities"),
        "Otsu": (lambda x, ref, lut: otsu_labels(x[0].numpy(), lut), 0.0, "multi-level Otsu, 4 classes"),
        "region growing": (lambda x, ref, lut: region_growing_labels(x[0].numpy(), ref, lut), 0.0,
                           "one seed per structure"),
    }
    wanted = [m for m in cfg.methods if m not in methods]
    if {"patch CNN", "FCN"} & set(wanted):
        imgs = [ds[i][0] for ds in train_sets for i in range(len(ds))]
        labs = [ds[i][1] for ds in train_sets for i in range(len(ds))]
        patches = patch_dataset(imgs, labs, per_class=p["per_class"], seed=cfg.seed)
        patch = create_model("patch_cnn", num_classes=4, seed=cfg.seed)
        t0 = time.perf_counter()
        train_segmenter(patch, patches, epochs=p["patch_epochs"], batch_size=64, lr=cfg.lr, seed=cfg.seed,
                        loss=nn.CrossEntropyLoss())
        seconds = time.perf_counter() - t0
        fcn = FCN.from_patch_cnn(patch, pad=True, padding_mode="reflect").eval()
        methods["patch CNN"] = (lambda x, ref, lut: patch_predict(patch, x), seconds,
                                f"trained on {len(patches)} patches; inference patch by patch (1024 per call)")
        methods["FCN"] = (lambda x, ref, lut: predict_labels(fcn, x), 0.0, "patch CNN weights, one dense pass")
    for name in run.track([m for m in wanted if m in _NETWORKS], "training networks"):
        arch, kwargs = _NETWORKS[name]
        net = build_segmenter(arch, num_classes=4, seed=cfg.seed, **kwargs)
        t0 = time.perf_counter()
        hist = train_segmenter(net, train, epochs=p["epochs"], batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed)
        seconds = time.perf_counter() - t0
        methods[name] = (lambda x, ref, lut, net=net: predict_labels(net, x), seconds,
                         f"final training loss {hist['loss'][-1]:.3f}")
    return {m: methods[m] for m in cfg.methods if m in methods}


def _section_2d(cfg: SegmentationConfig, p: dict[str, Any], run: Run) -> None:
    shape = (p["size"],) * 2
    run.section("2D phantoms", f"{p['n_train']} training and {p['n_test']} test phantoms of {shape[0]}x{shape[0]} "
                f"pixels per setting; base knobs {BASE_KNOBS}. Networks train on all settings together.")
    train_sets = [_phantoms(p["n_train"], shape, 1000 * cfg.seed + 2 * k, kn) for k, kn in enumerate(CHALLENGES.values())]
    tests = {c: _phantoms(p["n_test"], shape, 1000 * cfg.seed + 2 * k + 1, kn) for k, (c, kn) in enumerate(CHALLENGES.items())}
    luts = {c: nominal_intensities(shape, contrast=kn.get("contrast", 1.0)) for c, kn in CHALLENGES.items()}
    train = SegmentationSamples(ConcatDataset(train_sets))
    methods = _methods_2d(cfg, p, run, train, train_sets)

    results: dict[str, dict[str, Any]] = {}
    for name, (predict, train_s, note) in run.track(list(methods.items()), "predicting"):
        results[name] = {"train_s": train_s, "note": note, "scores": {}, "preds": {}, "infer_s": 0.0}
        for challenge, ds in tests.items():
            items = [ds[i] for i in range(len(ds))]
            preds, per_image = _timed(lambda i, it, c=challenge, f=predict: f(it[0], it[1].numpy(), luts[c]), items)
            results[name]["preds"][challenge] = preds
            results[name]["scores"][challenge] = _scores(preds, [it[1].numpy() for it in items])
            if challenge == "base":
                results[name]["infer_s"] = per_image
    _report_2d(run, results, tests)


def _mean_dice(scores: dict[int, dict[str, float]]) -> float:
    return float(np.mean([s["dice"] for s in scores.values()]))


def _report_2d(run: Run, results: dict[str, dict[str, Any]], tests: dict[str, Any]) -> None:
    rows = [{"method": m, "structure": STRUCTURE_NAMES[lab], **{k: r["scores"]["base"][lab][k] for k in METRICS}}
            for m, r in results.items() for lab in STRUCTURE_NAMES]
    run.table("Base test set: Dice, HD95 and ASSD per structure", rows,
              caption="Means over the base test phantoms (noise, inhomogeneity, partial volume); distances in pixels.")
    summary = [{"method": m, "mean Dice": _mean_dice(r["scores"]["base"]),
                "mean HD95": float(np.mean([s["hd95"] for s in r["scores"]["base"].values()])),
                "mean ASSD": float(np.mean([s["assd"] for s in r["scores"]["base"].values()])),
                "training (s)": r["train_s"], "inference (ms/image)": 1e3 * r["infer_s"], "notes": r["note"]}
               for m, r in results.items()]
    run.table("Summary per method", summary, caption="Means over the three structures of the base test set.")
    breakdown = [{"method": m, **{c: _mean_dice(r["scores"][c]) for c in tests}} for m, r in results.items()]
    run.table("Mean Dice by challenge", breakdown,
              caption="Each column is a test set with one challenge made harder (see CHALLENGES); networks saw all in training.")
    lines = []
    for c in list(tests)[1:]:
        drops = sorted(((b["base"] - b[c], b["method"]) for b in breakdown), reverse=True)
        worst = ", ".join(f"{m} ({-d:+.2f})" for d, m in drops[:3])
        lines.append(f"{c}: largest drops in mean Dice from the base set: {worst}.")
    lines.append("Multi-level Otsu picks its thresholds from the histogram alone: with the background about half "
                 "of the image and the lesion a few percent, the thresholds split the large noisy classes instead "
                 "of separating the small ones. Region growing depends on connected in-range paths, which noise "
                 "and inhomogeneity cut. The networks learn the intensity-shape relation from examples of every "
                 "challenge, and the FCN gives exactly the patch CNN's labels from one dense pass.")
    run.text("\n\n".join(lines))
    # Figure: one case per test set, then image, ground truth and every method.
    images, titles, flags = [], [], []
    for c, ds in tests.items():
        image, gt = ds[0]
        images += [image[0].numpy(), gt.numpy()] + [r["preds"][c][0] for r in results.values()]
        titles += [f"image: {c}", "ground truth"] + list(results)
        flags += [False] + [True] * (1 + len(results))
    fig = image_grid(images, titles=titles, ncols=2 + len(results), labels=flags, size=1.4)
    run.figure(fig, "segmentations-2d", caption="One test phantom per setting (rows): image, ground truth, each method.")
    run.log({"base_mean_dice": {m: b["base"] for m, b in zip(results, breakdown, strict=True)},
             "mean_dice_by_challenge": {b["method"]: {c: b[c] for c in tests} for b in breakdown},
             "training_s": {m: r["train_s"] for m, r in results.items()},
             "inference_ms_per_image": {m: 1e3 * r["infer_s"] for m, r in results.items()}})


def _section_3d(cfg: SegmentationConfig, p: dict[str, Any], run: Run) -> None:
    n = p["size_3d"]
    shape = (n,) * 3
    knobs = {"anisotropy": 3.0}
    run.section("3D phantoms", f"{p['n_train_3d']} training and {p['n_test_3d']} test volumes of {n}^3 voxels, "
                f"base knobs plus anisotropy 3 along the last axis; a 3D U-Net against the classical methods.")
    train = _phantoms(p["n_train_3d"], shape, 1000 * cfg.seed + 20, knobs)
    test = _phantoms(p["n_test_3d"], shape, 1000 * cfg.seed + 21, knobs)
    lut = nominal_intensities(shape)
    net = build_segmenter("unet", num_classes=4, spatial_dims=3, channels=8, depth=2, seed=cfg.seed)
    t0 = time.perf_counter()
    train_segmenter(net, SegmentationSamples(train), epochs=p["epochs_3d"], batch_size=2, lr=cfg.lr_3d, seed=cfg.seed)
    train_s = time.perf_counter() - t0
    methods = {
        "threshold": (lambda x, ref: threshold_labels(x[0].numpy(), lut), 0.0),
        "Otsu": (lambda x, ref: otsu_labels(x[0].numpy(), lut), 0.0),
        "region growing": (lambda x, ref: region_growing_labels(x[0].numpy(), ref, lut), 0.0),
        "3D U-Net": (lambda x, ref: predict_labels(net, x), train_s),
    }
    items = [test[i] for i in range(len(test))]
    gts = [it[1].numpy() for it in items]
    rows, preds_all = [], {}
    for name, (predict, seconds) in methods.items():
        preds, per_image = _timed(lambda i, it, f=predict: f(it[0], it[1].numpy()), items)
        preds_all[name] = preds
        scores = _scores(preds, gts)
        rows.append({"method": name, **{f"Dice {STRUCTURE_NAMES[k]}": s["dice"] for k, s in scores.items()},
                     "mean Dice": _mean_dice(scores),
                     "mean HD95": float(np.mean([s["hd95"] for s in scores.values()])),
                     "mean ASSD": float(np.mean([s["assd"] for s in scores.values()])),
                     "training (s)": seconds, "inference (ms/volume)": 1e3 * per_image})
    run.table("3D test set", rows, caption="Means over test volumes; distances in voxels.")
    images = [items[0][0][0].numpy(), gts[0]] + [preds_all[m][0] for m in methods]
    fig = image_grid(images, titles=["image", "ground truth", *methods], ncols=len(images),
                     labels=[False] + [True] * (len(images) - 1), size=1.6)
    run.figure(fig, "segmentations-3d", caption="Middle slice (first axis) of a 3D test volume and each method.")
    run.log({"3d_mean_dice": {r["method"]: r["mean Dice"] for r in rows}})


@experiment("segmentation", config=SegmentationConfig)
def segmentation_experiment(cfg: SegmentationConfig, run: Run) -> None:
    """Thresholds, Otsu, region growing and dense CNNs on 2D/3D phantoms with the real challenges."""
    p = _resolve(cfg)
    # torch's thread count is set once, by `mlimaging --threads` (mlimaging.utils.set_torch_threads)
    run.log(settings=p, torch_threads=torch.get_num_threads())
    _section_2d(cfg, p, run)
    if p["n_train_3d"] > 0:
        _section_3d(cfg, p, run)

r"""Experiment ``superres``: five super-resolution networks side by side, the losses that shape
them, and through-plane super-resolution of a thick-slice volume.

Sections of the report (networks from :mod:`mlimaging.models.superres`, data, losses and the
papers' evaluation from :mod:`mlimaging.inverse.superres`, every training through
:func:`mlimaging.training.fit`):

1. **Held-out PSNR/SSIM** at :math:`\times 2` and :math:`\times 4`: bicubic, SRCNN (Dong et al.
   2014), VDSR (Kim et al. 2016), ESPCN (Shi et al. 2016), LapSRN (Lai et al. 2017) and DBPN
   (Haris et al. 2018), trained on LR/HR patches of scikit-image's bundled images and scored on
   centre crops of images held out by name (:func:`~mlimaging.inverse.superres.split_images`),
   on the Y channel with a border of ``scale`` pixels cut,
   :math:`\mathrm{PSNR} = 10 \log_{10} 1 / \mathrm{MSE}(Y_{sr}, Y_{hr})`, beside the published
   Set5 numbers (:data:`PUBLISHED_SET5`; networks trained for days on ImageNet/DIV2K-sized sets,
   here CPU-sized networks trained for seconds to minutes: compare orderings and gains over
   bicubic, not decibels).
2. **Parameters, multiply-adds and inference time**: pre-upsampling networks (SRCNN, VDSR) run
   every layer on the :math:`s^2` times larger bicubic image, post-upsampling (ESPCN's sub-pixel
   convolution), progressive (LapSRN) and back-projection (DBPN) networks work at low
   resolution. Multiply-adds per output pixel are counted on the convolutions, for the trained
   (CPU-sized) networks and for the papers' configurations (:data:`PAPER_KWARGS`).
3. **Losses**: one network trained with L2, L1, a perceptual loss (feature distance in a frozen
   classifier trained here to tell the training images apart by texture, Johnson et al. 2016)
   and an adversarial loss (SRGAN, Ledig et al. 2017: L1 content plus a patch discriminator),
   with zoomed crops and a sharpness ratio :math:`\overline{|\nabla \hat y|} /
   \overline{|\nabla y|}` (1: as sharp as the truth; L2's conditional mean is blurrier).
4. **Through-plane** :math:`\times 4`: nibabel's ``anatomical.nii`` (2 mm voxels) or a phantom
   volume made 4x thicker along its last axis by averaging 4 slices
   (:func:`~mlimaging.inverse.superres.through_plane_degrade`, 2 mm -> 8 mm), recovered by a 3D
   VDSR with per-axis scale :math:`(1, 1, 4)` trained on one half of the volume, scored on the
   other half against linear interpolation.

Quick mode trains tiny networks for an epoch or two: its numbers are not converged.

References
----------
Dong C., Loy C. C., He K., Tang X. (2014). Learning a deep convolutional network for image
super-resolution. ECCV. arXiv:1501.00092.

Kim J., Lee J. K., Lee K. M. (2016). Accurate image super-resolution using very deep
convolutional networks. CVPR. arXiv:1511.04587.

Shi W. et al. (2016). Real-time single image and video super-resolution using an efficient
sub-pixel convolutional neural network. CVPR. arXiv:1609.05158.

Lai W.-S., Huang J.-B., Ahuja N., Yang M.-H. (2017). Deep Laplacian pyramid networks for fast
and accurate super-resolution. CVPR. arXiv:1704.03915.

Haris M., Shakhnarovich G., Ukita N. (2018). Deep back-projection networks for
super-resolution. CVPR. arXiv:1803.02735.

Johnson J., Alahi A., Fei-Fei L. (2016). Perceptual losses for real-time style transfer and
super-resolution. ECCV. arXiv:1603.08155.

Ledig C. et al. (2017). Photo-realistic single image super-resolution using a generative
adversarial network. CVPR. arXiv:1609.04802.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("superres", quick=True, seed=0, out="runs/sr")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.experiments._superres_common import (
    _adam,
    _centre,
    _cosine,
    _sharpness,
    _show,
    _texture_window,
    _volume_section,
    conv_macs,
)
from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

__all__ = [
    "FULL",
    "MODELS",
    "PAPER_KWARGS",
    "PUBLISHED_SET5",
    "QUICK",
    "SuperresConfig",
    "conv_macs",
]

MODELS = ("srcnn", "vdsr", "espcn", "lapsrn", "dbpn")
LOSS_KINDS = ("l2", "l1", "perceptual", "adversarial")
UPSAMPLING = {
    "srcnn": "pre (bicubic)",
    "vdsr": "pre (bicubic)",
    "espcn": "post (sub-pixel)",
    "lapsrn": "progressive (x2 levels)",
    "dbpn": "iterative up/down projection",
}
#: Published Set5 PSNR (dB, Y channel) as tabulated by Lai et al. 2017 and Haris et al. 2018 (ESPCN
#: reports no Set5 x2/x4 row there).
PUBLISHED_SET5 = {
    4: {"bicubic": 28.42, "srcnn": 30.48, "vdsr": 31.35, "lapsrn": 31.54, "dbpn": 32.47},
    2: {"bicubic": 33.66, "srcnn": 36.66, "vdsr": 37.53, "lapsrn": 37.52, "dbpn": 38.09},
}
#: The papers' configurations (parameters and multiply-adds only; D-DBPN: 256/64 features, 7 stages).
PAPER_KWARGS: dict[str, dict[str, Any]] = {
    "srcnn": {},
    "vdsr": {},
    "espcn": {},
    "lapsrn": {},
    "dbpn": {"stem_features": 256, "features": 64, "stages": 7},
}
#: Quick mode only: tiny widths laid over the recipes' ``model_kwargs``. Everything else about a
#: network and its training (loss, learning rate and schedule, batch, zero-initialised residual,
#: gradient clipping, and in full mode the widths, patches and epochs) comes from
#: :data:`~mlimaging.inverse.superres.SR_RECIPES` through
#: :func:`~mlimaging.inverse.superres.train_superres`, as ``benchmarks/superres.py`` and the CLI.
QUICK_WIDTHS: dict[str, dict[str, Any]] = {
    "srcnn": {"features": (16, 8)},
    "vdsr": {"depth": 3, "features": 8},
    "espcn": {"features": (16, 8)},
    "lapsrn": {"depth": 2, "features": 8},
    "dbpn": {"stem_features": 8, "features": 8, "stages": 2},
}
#: Full mode: patch side and patches per image of the loss comparison and its texture classifier
#: (the networks section takes its patches from the recipes).
SIDE_DATA = {"patch": 32, "patches": 48}
#: Quick mode: tiny networks, few patches, one epoch (not converged).
QUICK: dict[str, Any] = {
    "models": ("srcnn", "espcn", "dbpn"),
    "patch": 24,
    "patches": 6,
    "epochs": 1,
    "n_test": 2,
    "crop": 64,
    "loss_epochs": 1,
    "classifier_epochs": 1,
    "volume_epochs": 2,
    "timing_size": 64,
    "timing_repeats": 2,
}
#: Full mode: every network trained by its recipe (``SR_RECIPES``: its widths, its patch grid over
#: the whole training images, its epochs; ``None`` = the recipe's) on the training side of the split
#: plus the training-only photographs ``SR_TRAIN_EXTRA`` (quick mode: the split's images only), so
#: the x2 networks are those of ``benchmarks/superres.py`` at ``--epoch-scale 1`` (CPU minutes per
#: network and scale).
#: Not re-measured since the move to the recipes.
FULL: dict[str, Any] = {
    "models": MODELS,
    "patch": None,
    "patches": None,
    "epochs": None,
    "n_test": 4,
    "crop": 192,
    "loss_epochs": 8,
    "classifier_epochs": 4,
    "volume_epochs": 40,
    "timing_size": 256,
    "timing_repeats": 5,
}


@dataclass
class SuperresConfig(ExperimentConfig):
    """Settings of the ``superres`` experiment; ``None`` takes the quick/full value (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    models, scales
        Networks of sections 1-2 (from :data:`MODELS`) and factors (2, 3, 4; LapSRN skips 3).
    patch, patches, epochs, batch_size
        HR patch side (a multiple of every scale), patches per training image, epochs, batch;
        ``None``: the recipe's (full mode; quick mode sets the first three).
    n_test, crop
        Images held out (by name) and the side of their scored centre crops.
    loss_model, loss_scale, loss_epochs, adversarial_weight
        Network, factor and epochs of the loss comparison, and the weight of SRGAN's
        adversarial term.
    classifier_epochs
        Epochs of the texture classifier whose features give the perceptual loss.
    volume, volume_epochs
        ``"anatomical"`` (nibabel's) or ``"phantom"``; epochs of the 3D network.
    timing_size, timing_repeats
        HR side of the timed inference and the repeats (median of process CPU time).
    """

    models: tuple[str, ...] | None = None
    scales: tuple[int, ...] = (2, 4)
    patch: int | None = None
    patches: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    n_test: int | None = None
    crop: int | None = None
    loss_model: str = "vdsr"
    loss_scale: int = 4
    loss_epochs: int | None = None
    adversarial_weight: float = 5e-3
    classifier_epochs: int | None = None
    volume: str = "anatomical"
    volume_epochs: int | None = None
    timing_size: int | None = None
    timing_repeats: int | None = None


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _resolve(cfg: SuperresConfig) -> dict[str, Any]:
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    models = tuple(p["models"]) if not isinstance(p["models"], str) else ()
    if not models or any(m not in MODELS for m in models) or len(set(models)) != len(models):
        raise ValueError(f"models must be distinct names from {MODELS}, got {p['models']!r}")
    scales = tuple(cfg.scales) if isinstance(cfg.scales, (tuple, list)) else ()
    if (
        not scales
        or any(isinstance(s, bool) or s not in (2, 3, 4) for s in scales)
        or len(set(scales)) != len(scales)
    ):
        raise ValueError(f"scales must be distinct factors from (2, 3, 4), got {cfg.scales!r}")
    for key in (
        "loss_epochs",
        "classifier_epochs",
        "volume_epochs",
        "timing_repeats",
    ):
        _positive_int(p[key], key)
    for key, value in (
        ("patches", p["patches"]),
        ("epochs", p["epochs"]),
        ("batch_size", cfg.batch_size),
    ):
        if value is not None:
            _positive_int(value, key)
    _positive_int(p["n_test"], "n_test")
    if p["n_test"] > 8:
        raise ValueError(f"n_test must be at most 8 (16 bundled images), got {p['n_test']}")
    lcm = math.lcm(*scales, cfg.loss_scale if cfg.loss_scale in (2, 3, 4) else 1)
    if p["patch"] is not None and _positive_int(p["patch"], "patch", 8) % lcm:
        raise ValueError(f"patch must be a multiple of every scale ({lcm}), got {p['patch']}")
    if _positive_int(p["crop"], "crop", 32) % lcm:
        raise ValueError(f"crop must be a multiple of every scale ({lcm}), got {p['crop']}")
    if _positive_int(p["timing_size"], "timing_size", 16) % math.lcm(*scales):
        raise ValueError(
            f"timing_size must be a multiple of every scale ({math.lcm(*scales)}), got {p['timing_size']}"
        )
    if cfg.loss_model not in MODELS:
        raise ValueError(f"loss_model must be one of {MODELS}, got {cfg.loss_model!r}")
    if cfg.loss_scale not in (2, 3, 4) or (cfg.loss_model == "lapsrn" and cfg.loss_scale == 3):
        raise ValueError(f"loss_scale must be 2, 3 or 4 (lapsrn: 2 or 4), got {cfg.loss_scale!r}")
    w = cfg.adversarial_weight
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not (0 < w < 1):
        raise ValueError(f"adversarial_weight must be a number in (0, 1), got {w!r}")
    if cfg.volume not in ("anatomical", "phantom"):
        raise ValueError(f"volume must be 'anatomical' or 'phantom', got {cfg.volume!r}")
    p.update(
        models=models,
        scales=scales,
        batch_size=cfg.batch_size,
        loss_model=cfg.loss_model,
        loss_scale=cfg.loss_scale,
        adversarial_weight=float(w),
        volume=cfg.volume,
    )
    return p


def _recipe(name: str, cfg: SuperresConfig, p: dict[str, Any], scale: int) -> dict[str, Any]:
    """``sr_recipe(name)`` with quick mode's tiny widths and the settings given (``None``: the recipe's);
    the patch side and grid stride are rounded down to multiples of ``scale``."""
    from mlimaging.inverse.superres import sr_recipe

    r = sr_recipe(name, epochs=p["epochs"], batch_size=p["batch_size"])
    if cfg.quick:
        r["model_kwargs"] = {**r["model_kwargs"], **QUICK_WIDTHS[name]}
    if p["patch"] is not None:
        r["patch"], r["stride"] = p["patch"], max(p["patch"] // 2, scale)
    r["patch"] -= r["patch"] % scale
    r["stride"] = max(r["stride"] - r["stride"] % scale, scale)
    return r


def _train_sr(
    name: str, recipe: dict[str, Any], data: Any, *, scale: int, seed: int
) -> tuple[nn.Module, Any, float]:
    """A network trained by its recipe (:func:`~mlimaging.inverse.superres.train_superres`): net, history, CPU s."""
    from mlimaging.inverse.superres import train_superres
    from mlimaging.models import create_model

    net = create_model(name, scale=scale, seed=seed, **recipe["model_kwargs"])
    c0 = time.process_time()
    history = train_superres(net, data, name=name, recipe=recipe, seed=seed, progress=False)
    return net.eval(), history, time.process_time() - c0


def _scores(net: Any, tests: list[torch.Tensor], scale: int) -> dict[str, float]:
    from mlimaging.inverse.superres import degrade, sr_evaluate

    with torch.no_grad():
        rows = [sr_evaluate(net(degrade(hr, scale)), hr, scale=scale) for hr in tests]
    return {k: statistics.fmean(r[k] for r in rows) for k in ("psnr", "ssim")}


# ------------------------------------------------------------------------------------ sections
def _models_section(
    cfg: SuperresConfig, p: dict[str, Any], run: Run, train_names: list[str], test_names: list[str]
) -> dict[int, dict[str, Any]]:
    from mlimaging.inverse.superres import (
        SR_TRAIN_EXTRA,
        bicubic_upscale,
        load_sr_image,
        modcrop,
        sr_pairs,
    )

    if not cfg.quick:  # the training-only photographs, as benchmarks/superres.py
        train_names = [*train_names, *SR_TRAIN_EXTRA]
    lcm = math.lcm(*p["scales"])
    tests = [
        _centre(torch.from_numpy(modcrop(load_sr_image(n), lcm).copy()), p["crop"])[None]
        for n in test_names
    ]
    rows, trained, curves, cache = [], {}, {}, {}
    for s in p["scales"]:
        base = _scores(lambda x, s=s: bicubic_upscale(x, s), tests, s)
        pub = PUBLISHED_SET5.get(s, {})
        rows.append(
            {
                "scale": f"x{s}",
                "model": "bicubic",
                "PSNR dB": base["psnr"],
                "SSIM": base["ssim"],
                "gain dB": 0.0,
                "published Set5 PSNR": pub.get("bicubic"),
                "epochs": None,
                "train CPU s": None,
            }
        )
        trained[s] = {"bicubic": base, "tests": tests, "nets": {}}
        recipes: dict[str, dict[str, Any]] = {}
        for name in run.track(p["models"], f"x{s} networks"):
            if name == "lapsrn" and s == 3:
                continue
            recipe = _recipe(name, cfg, p, s)
            key = (s, recipe["patch"], recipe["stride"])
            if key not in cache:  # patches with flips/rotations, as the recipes train
                cache[key] = sr_pairs(
                    train_names,
                    scale=s,
                    patch=recipe["patch"],
                    stride=recipe["stride"],
                    max_patches=p["patches"],
                    augment=True,
                    seed=cfg.seed,
                )
            net, history, cpu = _train_sr(name, recipe, cache[key], scale=s, seed=cfg.seed)
            recipes[name] = recipe
            score = _scores(net, tests, s)
            trained[s]["nets"][name] = {"net": net, **score, "cpu": cpu}
            curves[(s, name)] = history["loss"]
            rows.append(
                {
                    "scale": f"x{s}",
                    "model": name,
                    "PSNR dB": score["psnr"],
                    "SSIM": score["ssim"],
                    "gain dB": score["psnr"] - base["psnr"],
                    "published Set5 PSNR": pub.get(name),
                    "epochs": len(history),
                    "train CPU s": cpu,
                }
            )
    amount = (
        "every patch of the recipe's grid" if p["patches"] is None else f"{p['patches']} patches"
    )
    run.section(
        "1. Held-out PSNR and SSIM",
        f"Trained on {amount} (with flips/rotations) from each of {len(train_names)} bundled images ({', '.join(train_names)}); "
        f"scored on {p['crop']}-pixel centre crops of {len(test_names)} held-out images ({', '.join(test_names)}), "
        "Y channel, border of `scale` pixels cut. Every network trained by its recipe (SR_RECIPES, as "
        "benchmarks/superres.py: the paper's loss, Adam with a cosine schedule, zero-initialised residual for "
        f"VDSR and LapSRN): {_widths(recipes)}. Published: Set5, networks trained for days on large sets: "
        "compare the ordering and the gain over bicubic, not the decibels.",
    )
    if cfg.quick:
        run.text(
            "QUICK MODE: tiny networks trained for one epoch on a few patches; these numbers are not converged "
            "and do not show the papers' ordering. Run without --quick for the full comparison."
        )
    run.table("Held-out PSNR and SSIM", rows)
    _comparison_figure(p, run, trained, test_names)
    _gain_figure(p, run, rows)
    _curves_figure(run, curves)
    run.log(held_out=rows, test_images=test_names, train_images=train_names)
    return trained


def _widths(recipes: dict[str, dict[str, Any]]) -> str:
    def one(m: str, r: dict[str, Any]) -> str:
        widths = ", ".join(f"{k}={v}" for k, v in r["model_kwargs"].items()) or "paper widths"
        return f"{m} ({widths}; {r['loss']}, lr {r['lr']:g}, batch {r['batch_size']}, {r['patch']} px, {r['epochs']} ep)"

    return "; ".join(one(m, r) for m, r in recipes.items())


def _comparison_figure(
    p: dict[str, Any], run: Run, trained: dict[int, dict[str, Any]], test_names: list[str]
) -> None:
    from mlimaging.inverse.superres import bicubic_upscale, degrade, sr_evaluate

    s = max(trained)
    hr = trained[s]["tests"][0]
    side = max(hr.shape[-1] // 3, 16)
    i, j = _texture_window(hr, side, margin=2 * s)
    lr = degrade(hr, s)
    outs = {"bicubic": bicubic_upscale(lr, s)}
    with torch.no_grad():
        outs.update({n: d["net"](lr) for n, d in trained[s]["nets"].items()})
    fig, axes = plt.subplots(1, len(outs) + 1, figsize=(1.7 * (len(outs) + 1), 2.0))
    for ax, (name, img) in zip(axes, outs.items(), strict=False):
        q = sr_evaluate(img, hr, scale=s)["psnr"]
        _show(ax, img[0, 0, i : i + side, j : j + side].clamp(0, 1), f"{name}\n{q:.2f} dB")
    _show(axes[-1], hr[0, 0, i : i + side, j : j + side], "HR")
    run.figure(
        fig,
        f"zoomed-crops-x{s}",
        caption=f"x{s}: a {side}-pixel crop of held-out {test_names[0]} (the window "
        "with the most detail), PSNR of the whole crop.",
    )


def _gain_figure(p: dict[str, Any], run: Run, rows: list[dict[str, Any]]) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    models = list(p["models"])
    width = 0.8 / (len(p["scales"]) + 1)
    for k, s in enumerate(p["scales"]):
        gains = [
            next((r["gain dB"] for r in rows if r["scale"] == f"x{s}" and r["model"] == m), np.nan)
            for m in models
        ]
        ax.bar(np.arange(len(models)) + k * width, gains, width, label=f"ours x{s}")
    pub = PUBLISHED_SET5[4]
    ax.bar(
        np.arange(len(models)) + len(p["scales"]) * width,
        [pub[m] - pub["bicubic"] if m in pub else np.nan for m in models],
        width,
        color="0.7",
        label="published Set5 x4",
    )
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(models)) + width * len(p["scales"]) / 2, models)
    ax.set_ylabel("PSNR gain over bicubic (dB)")
    ax.legend(fontsize=7)
    run.figure(
        fig,
        "psnr-gain-over-bicubic",
        caption="Gain over bicubic on the held-out crops, beside the published "
        "Set5 x4 gains (ESPCN: no published Set5 x4 row).",
    )


def _curves_figure(run: Run, curves: dict[tuple[int, str], list[float]]) -> None:
    scales = sorted({s for s, _ in curves})
    fig, axes = plt.subplots(1, len(scales), figsize=(3.2 * len(scales), 2.6), squeeze=False)
    for ax, s in zip(axes[0], scales, strict=True):
        for (t, name), loss in curves.items():
            if t == s:
                ax.plot(range(1, len(loss) + 1), loss, marker="o", ms=3, label=name)
        ax.set_title(f"x{s}", fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (the recipe's)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    run.figure(
        fig,
        "training-curves",
        caption="Training loss (each recipe's: L2, L1 or Charbonnier) per epoch.",
    )


def _cost_section(
    cfg: SuperresConfig, p: dict[str, Any], run: Run, trained: dict[int, dict[str, Any]]
) -> None:
    from mlimaging.models import create_model

    rows = []
    for s, d in trained.items():
        lr_side = p["timing_size"] // s
        x = torch.rand(1, 1, lr_side, lr_side, generator=torch.Generator().manual_seed(cfg.seed))
        probe = torch.zeros(1, 1, 12, 12)
        for name, entry in d["nets"].items():
            net = entry["net"]
            paper = create_model(name, scale=s, seed=0, **PAPER_KWARGS[name]).eval()
            times = []
            with torch.no_grad():
                net(x)
                for _ in range(p["timing_repeats"]):
                    c0 = time.process_time()
                    net(x)
                    times.append(time.process_time() - c0)
            hr_pixels = (12 * s) ** 2
            rows.append(
                {
                    "scale": f"x{s}",
                    "model": name,
                    "upsampling": UPSAMPLING[name],
                    "parameters": sum(q.numel() for q in net.parameters()),
                    "MACs per HR pixel": conv_macs(net, probe) / hr_pixels,
                    f"CPU ms ({p['timing_size']}px out)": 1000 * statistics.median(times),
                    "PSNR dB": entry["psnr"],
                    "paper parameters": sum(q.numel() for q in paper.parameters()),
                    "paper MACs per HR pixel": conv_macs(paper, probe) / hr_pixels,
                }
            )
    run.section(
        "2. Parameters, multiply-adds and inference time",
        "Pre-upsampling networks (SRCNN, VDSR) convolve the "
        "bicubic image: every layer runs on s^2 times more pixels than the same layer of ESPCN, LapSRN or DBPN. "
        f"Inference: one {p['timing_size']}-pixel output, median process CPU time of {p['timing_repeats']} "
        f"runs with {torch.get_num_threads()} torch thread(s) on a shared machine. Paper columns: the papers' "
        "configurations (SRCNN 9-1-5 64/32, VDSR 20x64, ESPCN 64/32, LapSRN 10x64 per level, D-DBPN "
        "256/64 with 7 stages), counted, not trained.",
    )
    run.table("Parameters, multiply-adds and inference time", rows)
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.0))
    for s in trained:
        sel = [r for r in rows if r["scale"] == f"x{s}"]
        names = [r["model"] for r in sel]
        axes[0].scatter(
            names,
            [r["paper MACs per HR pixel"] for r in sel],
            label=f"paper config x{s}",
            marker="s",
        )
        axes[0].scatter(names, [r["MACs per HR pixel"] for r in sel], label=f"trained x{s}")
        t = [r[f"CPU ms ({p['timing_size']}px out)"] for r in sel]
        axes[1].scatter(
            t, [r["PSNR dB"] - trained[s]["bicubic"]["psnr"] for r in sel], label=f"x{s}"
        )
        for r, tt in zip(sel, t, strict=True):
            axes[1].annotate(
                r["model"], (tt, r["PSNR dB"] - trained[s]["bicubic"]["psnr"]), fontsize=6
            )
    axes[0].set_yscale("log")
    axes[0].set_ylabel("multiply-adds per HR pixel")
    axes[1].set_xlabel(f"CPU ms per {p['timing_size']}-pixel output")
    axes[1].set_ylabel("PSNR gain over bicubic (dB)")
    for ax in axes:
        ax.legend(fontsize=6)
    fig.tight_layout()
    run.figure(
        fig,
        "cost-and-quality",
        caption="Left: multiply-adds per output pixel (log). Right: inference time "
        "against the held-out gain.",
    )
    run.log(cost=rows)


def _side_data(p: dict[str, Any], scale: int) -> tuple[int, int]:
    """Patch side (a multiple of ``scale``) and patches per image of the loss section and its classifier."""
    patch = (
        p["patch"] if p["patch"] is not None else SIDE_DATA["patch"] - SIDE_DATA["patch"] % scale
    )
    return patch, p["patches"] if p["patches"] is not None else SIDE_DATA["patches"]


def _texture_classifier(
    p: dict[str, Any], train_names: list[str], seed: int
) -> tuple[nn.Module, float]:
    """A small CNN trained to tell which training image a patch comes from (the perceptual features)."""
    from mlimaging.inverse.superres import sr_pairs
    from mlimaging.training import fit

    patch, patches = _side_data(p, 2)
    pairs = sr_pairs(train_names, scale=2, patch=patch, max_patches=patches, seed=seed + 1)
    labels = torch.tensor([k for k, _, _ in pairs.positions])
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, len(train_names)),
    )
    fit(
        net,
        TensorDataset(pairs.hr, labels),
        loss=nn.CrossEntropyLoss(),
        metrics=(),
        epochs=p["classifier_epochs"],
        batch_size=32,
        seed=seed,
        optimizer=_adam(2e-3),
        progress=False,
    )
    with torch.no_grad():
        accuracy = float((net.eval()(pairs.hr).argmax(1) == labels).float().mean())
    return net.eval(), accuracy


def _loss_section(
    cfg: SuperresConfig, p: dict[str, Any], run: Run, train_names: list[str], test_names: list[str]
) -> None:
    from mlimaging.inverse.superres import (
        PatchDiscriminator,
        PerceptualLoss,
        SRGANStep,
        bicubic_upscale,
        degrade,
        l1_loss,
        l2_loss,
        load_sr_image,
        modcrop,
        sr_evaluate,
        sr_pairs,
    )
    from mlimaging.inverse.superres.training import zero_last_
    from mlimaging.models import create_model
    from mlimaging.training import fit

    s, name = p["loss_scale"], p["loss_model"]
    recipe = _recipe(name, cfg, p, s)
    patch, patches = _side_data(p, s)
    data = sr_pairs(train_names, scale=s, patch=patch, max_patches=patches, seed=cfg.seed)
    classifier, accuracy = _texture_classifier(p, train_names, cfg.seed)
    perceptual = PerceptualLoss(classifier, layers=["3", "8"])
    hr = _centre(torch.from_numpy(modcrop(load_sr_image(test_names[0]), s).copy()), p["crop"])[None]
    lr_img = degrade(hr, s)
    outputs, rows = {"bicubic": bicubic_upscale(lr_img, s)}, []
    for kind in run.track(LOSS_KINDS, "losses"):
        net = create_model(name, scale=s, seed=cfg.seed, **recipe["model_kwargs"])
        if recipe["zero_last"]:
            zero_last_(net)
        common = dict(
            metrics=(),
            epochs=p["loss_epochs"],
            batch_size=recipe["batch_size"],
            seed=cfg.seed,
            optimizer=_adam(recipe["lr"]),
            scheduler=_cosine(p["loss_epochs"], len(data), recipe["batch_size"]),
            scheduler_interval="step",
            progress=False,
        )
        c0 = time.process_time()
        if kind == "adversarial":
            torch.manual_seed(cfg.seed)
            step = SRGANStep(
                PatchDiscriminator(width=16, n_layers=2),
                content=l1_loss,
                adversarial_weight=p["adversarial_weight"],
            )
            fit(net, data, step=step, **common)
        else:
            fit(
                net,
                data,
                loss={"l2": l2_loss, "l1": l1_loss, "perceptual": perceptual}[kind],
                **common,
            )
        cpu = time.process_time() - c0
        with torch.no_grad():
            outputs[kind] = net.eval()(lr_img)
        q = sr_evaluate(outputs[kind], hr, scale=s)
        rows.append(
            {
                "loss": kind,
                "PSNR dB": q["psnr"],
                "SSIM": q["ssim"],
                "sharpness (1 = HR)": _sharpness(outputs[kind], hr, s),
                "train CPU s": cpu,
            }
        )
    base = sr_evaluate(outputs["bicubic"], hr, scale=s)
    rows.insert(
        0,
        {
            "loss": "bicubic",
            "PSNR dB": base["psnr"],
            "SSIM": base["ssim"],
            "sharpness (1 = HR)": _sharpness(outputs["bicubic"], hr, s),
            "train CPU s": None,
        },
    )
    run.section(
        "3. What the loss rewards",
        f"{name} x{s} trained {p['loss_epochs']} epoch(s) from the same "
        "initialisation with each loss: L2 (MSE), L1, perceptual (mean squared distance of the two ReLU "
        "blocks of a small CNN trained here to tell the training images apart by texture, training "
        f"accuracy {accuracy:.2f}; Johnson et al. 2016) and adversarial (SRGAN: L1 + "
        f"{p['adversarial_weight']:g} x non-saturating loss of a patch discriminator; Ledig et al. 2017). "
        f"Scored on held-out {test_names[0]} ({hr.shape[-1]}-pixel crop). Sharpness: mean gradient "
        "magnitude of the output over that of the truth.",
    )
    run.table("Losses", rows)
    side = max(hr.shape[-1] // 4, 16)
    i, j = _texture_window(hr, side, margin=2 * s)
    fig, axes = plt.subplots(1, len(outputs) + 2, figsize=(1.7 * (len(outputs) + 2), 2.0))
    _show(axes[0], hr[0, 0], f"{test_names[0]} (box)")
    axes[0].add_patch(plt.Rectangle((j, i), side, side, fill=False, color="r", lw=1))
    for ax, (kind, img) in zip(axes[1:], outputs.items(), strict=False):
        _show(ax, img[0, 0, i : i + side, j : j + side].clamp(0, 1), kind)
    _show(axes[-1], hr[0, 0, i : i + side, j : j + side], "HR")
    run.figure(
        fig,
        "losses-zoomed-crops",
        caption=f"Zoomed crops of the x{s} outputs of the same network trained with each loss.",
    )
    run.log(losses=rows, texture_classifier_accuracy=accuracy)


# ------------------------------------------------------------------------------------ experiment
@experiment("superres", config=SuperresConfig)
def superres_experiment(cfg: SuperresConfig, run: Run) -> None:
    """SRCNN, VDSR, ESPCN, LapSRN and DBPN against bicubic at x2/x4, their cost, four losses, through-plane x4."""
    from mlimaging.inverse.superres import split_images

    p = _resolve(cfg)
    run.log(settings=p, torch_threads=torch.get_num_threads(), quick=cfg.quick)
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal t0, c0
        seconds[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()

    train_names, test_names = split_images(n_test=p["n_test"], seed=cfg.seed)
    trained = _models_section(cfg, p, run, train_names, test_names)
    lap("networks")
    _cost_section(cfg, p, run, trained)
    lap("cost")
    _loss_section(cfg, p, run, train_names, test_names)
    lap("losses")
    _volume_section(cfg, p, run)
    lap("through-plane")
    run.log(section_seconds=seconds, section_cpu_seconds=cpu)

"""Experiment ``registration``: known transforms recovered, mono- versus multi-modal similarity,
atlas-based segmentation, and a spatial transformer network on distorted digits.

1. Random rigid and affine transforms applied to a phantom, scikit-image's camera and
   nibabel's ``anatomical.nii`` are recovered with SSD, NCC and NMI: target registration
   error (mm, on the image corners) before and after.
2. Mono- versus multi-modal: the phantom's anatomy imaged with tissue intensities related
   one-to-one but non-monotonically to the first (:data:`OTHER_MODALITY`); SSD fails, NMI
   succeeds; joint histograms before and after registration.
3. Atlas-based segmentation of phantoms with morphological variability: Dice of each
   single atlas, multi-atlas majority vote and locally weighted voting.
4. A spatial transformer (:class:`~mlimaging.models.SpatialTransformer`) in front of the
   same small CNN, trained with :func:`mlimaging.training.fit` on mnist5k digits rotated
   (up to 45 degrees), scaled and translated: accuracy against the CNN alone and the
   rectified inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging import metrics as M
from mlimaging.data.transforms import distort_digits
from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import image_grid, label_cmap, middle_slice, plt

METRICS = ("ssd", "ncc", "nmi")


@dataclass
class RegistrationConfig(ExperimentConfig):
    """Options; ``None`` takes the quick or the full value (given as quick / full)."""

    size: int | None = None  # 2D phantom side, 64 / 96
    camera_size: int | None = None  # camera resampled to this side (then cropped to 2/3), 144 / 192
    cases: int | None = None  # random transforms per (image, transform, metric), 2 / 5
    multimodal_cases: int | None = None  # 3 / 10
    atlases: int | None = None  # 3 / 5
    targets: int | None = None  # 2 / 5
    stn_train: int | None = None  # training digits, 2000 / 3500
    stn_test: int | None = None  # test digits, 500 / 1000
    stn_epochs: int | None = None  # 8 / 20
    canvas: int | None = None  # side of the distorted digits' field, 36 / 42


def _pick(value: int | None, cfg: RegistrationConfig, quick: int, full: int, name: str) -> int:
    if value is None:
        return quick if cfg.quick else full
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return value


# ------------------------------------------------------------------ images and transforms
def _normalise(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    lo, hi = float(img.min()), float(img.max())
    return (img - lo) / (hi - lo if hi > lo else 1.0)


def _images(size: int, camera_size: int, seed: int) -> list[tuple[str, np.ndarray, tuple[float, ...], bool]]:
    """(name, image in [0, 1], spacing, crop) for the phantom, the camera and anatomical.nii.

    ``crop``: the camera fills its whole field of view, so its fixed and moving images are the
    central two thirds of the image and of its warped copy (no black borders from the warp)."""
    import skimage.data
    import skimage.transform

    from mlimaging.data import make_phantom, read_image
    from mlimaging.data.samples import sample_file

    phantom, _ = make_phantom((size, size), seed=seed, n_structures=5, partial_volume=1.0)
    camera = skimage.transform.resize(skimage.data.camera().astype(np.float32) / 255.0,
                                      (camera_size, camera_size), anti_aliasing=True)
    anat, spacing = read_image(sample_file("anatomical.nii"))
    return [("phantom", _normalise(phantom), (1.0, 1.0), False),
            ("camera", _normalise(camera), (512 / camera_size,) * 2, True),
            ("anatomical.nii", _normalise(anat), tuple(float(s) for s in spacing), False)]


def _random_transform(kind: str, shape: tuple[int, ...], spacing: tuple[float, ...],
                      rng: np.random.Generator) -> torch.Tensor:
    """A random rigid (angles up to ~14 degrees, shifts up to 8% of the extent) or affine
    (that rigid part times a linear map within +-0.08 of the identity) physical transform."""
    from mlimaging.registration import affine_matrix, rigid_matrix

    d = len(shape)
    extent = np.asarray(shape) * np.asarray(spacing)
    angles = rng.uniform(-0.25, 0.25, 1 if d == 2 else 3) * (1.0 if d == 2 else 0.6)
    shifts = rng.uniform(-0.08, 0.08, d) * extent
    t = rigid_matrix(np.concatenate([angles, shifts]), spatial_dims=d)
    if kind == "affine":
        lin = np.eye(d) + rng.uniform(-0.08, 0.08, (d, d))
        t = t @ affine_matrix(np.concatenate([lin, np.zeros((d, 1))], axis=1).ravel(), spatial_dims=d)
    return t


def _moving(fixed: np.ndarray, true: torch.Tensor, spacing: tuple[float, ...]) -> np.ndarray:
    """The moving image with ``moving(true x) = fixed(x)``: ``warp(fixed, true^-1)``."""
    from mlimaging.registration import invert, warp

    return warp(fixed, invert(true), spacing=spacing)


def _centre_crop(img: np.ndarray) -> np.ndarray:
    """The central two thirds along each axis (the centre, hence the physical origin, is kept)."""
    return img[tuple(slice(n // 6, n - n // 6) for n in img.shape)]


def _tre(estimated: torch.Tensor, true: torch.Tensor, shape: tuple[int, ...],
         spacing: tuple[float, ...]) -> float:
    """Mean target registration error (mm) over the image corners."""
    from mlimaging.registration import corner_points, target_registration_error

    return float(target_registration_error(estimated, true, corner_points(shape, spacing=spacing)).mean())


#: Tissue intensities of the phantom's "second modality" (labels 0-5). The first modality has
#: 0, 0.3, 0.7, 1.0, 0.5, 0.9: the map between them is one-to-one but not monotonic.
OTHER_MODALITY = np.array([0.0, 0.8, 0.2, 0.5, 1.0, 0.35], dtype=np.float32)


def _other_modality(labels: np.ndarray, partial_volume: float) -> np.ndarray:
    """The phantom's anatomy imaged with :data:`OTHER_MODALITY`'s intensities (same blur)."""
    from scipy import ndimage

    return ndimage.gaussian_filter(OTHER_MODALITY[labels], partial_volume, mode="nearest")


# ------------------------------------------------------------------ 1. known transforms
def _known_transforms(cfg: RegistrationConfig, run: Run) -> None:
    from mlimaging.registration import register

    run.section("1. Recovering known transforms",
                "Each image is warped by a random rigid or affine transform T and registered back "
                "(multi-resolution, 3 levels, L-BFGS, centre-of-mass initialisation). The target "
                "registration error (TRE) is the mean distance, in mm, between the image corners "
                "mapped by T and by the estimate; 'before' uses the identity.")
    size = _pick(cfg.size, cfg, 64, 96, "size")
    cases = _pick(cfg.cases, cfg, 2, 5, "cases")
    rng = np.random.default_rng(cfg.seed)
    rows, example = [], None
    jobs = [(name, src, sp, crop, kind, metric) for name, src, sp, crop in _images(size, _pick(
        cfg.camera_size, cfg, 144, 192, "camera_size"), cfg.seed)
        for kind in ("rigid", "affine") for metric in METRICS]
    for name, src, sp, crop, kind, metric in run.track(jobs, "known transforms"):
        before, after, seconds = [], [], []
        img = _centre_crop(src) if crop else src
        for _ in range(cases):
            true = _random_transform(kind, img.shape, sp, rng)
            moving = _moving(src, true, sp)
            moving = _centre_crop(moving) if crop else moving
            t0 = time.perf_counter()
            result = register(img, moving, transform=kind, metric=metric, spacing=sp)
            seconds.append(time.perf_counter() - t0)
            eye = torch.eye(img.ndim + 1, dtype=torch.float64)
            before.append(_tre(eye, true, img.shape, sp))
            after.append(_tre(result.transform, true, img.shape, sp))
            if example is None and name == "camera" and kind == "rigid" and metric == "ssd":
                example = (img, moving, result.warped)
        voxel = min(sp)
        rows.append({"image": name, "transform": kind, "metric": metric, "cases": cases,
                     "TRE before (mm, median)": float(np.median(before)),
                     "TRE after (mm, median)": float(np.median(after)),
                     "TRE after (mm, max)": float(np.max(after)),
                     "under 1 voxel": float(np.mean(np.asarray(after) < voxel)),
                     "seconds per registration": float(np.mean(seconds))})
    run.table("Target registration error before and after registration", rows,
              caption="Voxel sizes: phantom 1 mm, camera 512/side mm (the image is 512 mm wide), "
              "anatomical.nii 2 mm. 'under 1 voxel': fraction of cases with TRE below the smallest spacing.")
    run.log(tre={f"{r['image']}/{r['transform']}/{r['metric']}": {
        "before": r["TRE before (mm, median)"], "after": r["TRE after (mm, median)"]} for r in rows})
    if example is not None:
        fixed, moving, warped = example
        fig = image_grid([fixed, moving, warped, np.abs(moving - fixed), np.abs(warped - fixed)],
                         titles=["fixed", "moving", "registered", "|moving - fixed|", "|registered - fixed|"],
                         ncols=5, size=2.2)
        run.figure(fig, "camera-rigid", caption="Camera, rigid, SSD: the registered image matches the fixed one "
                   "except where the moving image had no data (outside its field of view).")


# ------------------------------------------------------------------ 2. multi-modal
def _joint_histogram(ax: Any, a: np.ndarray, b: np.ndarray, title: str) -> None:
    hist, _, _ = np.histogram2d(a.ravel(), b.ravel(), bins=48)
    ax.imshow(np.log1p(hist.T), origin="lower", cmap="magma", aspect="auto")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("fixed intensity", fontsize=7)
    ax.set_ylabel("moving intensity", fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def _multimodal(cfg: RegistrationConfig, run: Run) -> None:
    from mlimaging.data import make_phantom
    from mlimaging.registration import register

    run.section("2. Mono- versus multi-modal",
                "The same phantom anatomy imaged with two sets of tissue intensities (background 0, "
                "body 0.3 -> 0.8, organs 0.7 -> 0.2, 1.0 -> 0.5, 0.5 -> 1.0, 0.9 -> 0.35): a one-to-one "
                "but non-monotonic intensity relation, as between two modalities. SSD, which assumes "
                "equal intensities, is pulled to a wrong alignment; NMI only needs the joint histogram "
                "to be sharp and succeeds. The joint histograms answer the course's question on choosing "
                "the dissimilarity measure: points on the diagonal mean the same modality (SSD/SAD), "
                "on a straight line a linear relation (NCC), any other sharp pattern a statistical "
                "relation (MI/NMI); registration makes the histogram sharpest.")
    size = _pick(cfg.size, cfg, 64, 96, "size")
    cases = _pick(cfg.multimodal_cases, cfg, 3, 10, "multimodal_cases")
    rng = np.random.default_rng(cfg.seed + 1)
    fixed, labels = make_phantom((size, size), seed=cfg.seed, n_structures=5, partial_volume=1.0)
    second = _other_modality(labels, 1.0)
    sp = (1.0, 1.0)
    results: dict[str, list[float]] = {"before": [], "same modality, SSD": [],
                                       "two modalities, SSD": [], "two modalities, NMI": []}
    shown = None
    for _ in run.track(range(cases), "multi-modal"):
        true = _random_transform("rigid", fixed.shape, sp, rng)
        mono, multi = _moving(fixed, true, sp), _moving(second, true, sp)
        results["before"].append(_tre(torch.eye(3, dtype=torch.float64), true, fixed.shape, sp))
        r_mono = register(fixed, mono, transform="rigid", metric="ssd")
        r_ssd = register(fixed, multi, transform="rigid", metric="ssd")
        r_nmi = register(fixed, multi, transform="rigid", metric="nmi")
        for key, r in [("same modality, SSD", r_mono), ("two modalities, SSD", r_ssd),
                       ("two modalities, NMI", r_nmi)]:
            results[key].append(_tre(r.transform, true, fixed.shape, sp))
        if shown is None:
            shown = (mono, r_mono.warped, multi, r_ssd.warped, r_nmi.warped)
    rows = [{"case": k, "TRE median (mm)": float(np.median(v)), "TRE max (mm)": float(np.max(v)),
             "under 1 voxel": float(np.mean(np.asarray(v) < 1.0))} for k, v in results.items()]
    run.table("Multi-modal registration (rigid, 1 mm voxels)", rows,
              caption=f"{cases} random rigid transforms; 'before': the identity.")
    run.log(multimodal={k: float(np.median(v)) for k, v in results.items()},
            multimodal_success={k: float(np.mean(np.asarray(v) < 1.0)) for k, v in results.items()})
    assert shown is not None
    mono, mono_reg, multi, ssd_reg, nmi_reg = shown
    fig = image_grid([fixed, multi, ssd_reg, nmi_reg], titles=["fixed", "moving (other modality)",
                     "SSD result", "NMI result"], ncols=4, size=2.2)
    run.figure(fig, "multimodal-images", caption="A moving image of the other modality and its SSD and NMI "
               "registrations.")
    fig, axes = plt.subplots(1, 5, figsize=(14, 3))
    _joint_histogram(axes[0], fixed, mono, "same modality, before")
    _joint_histogram(axes[1], fixed, mono_reg, "same modality, after (SSD)")
    _joint_histogram(axes[2], fixed, multi, "two modalities, before")
    _joint_histogram(axes[3], fixed, ssd_reg, "two modalities, after SSD")
    _joint_histogram(axes[4], fixed, nmi_reg, "two modalities, after NMI")
    fig.tight_layout()
    run.figure(fig, "joint-histograms", caption="Joint histograms (log counts) of fixed and moving intensities. "
               "Same modality: registration concentrates the histogram on the diagonal. Two modalities: "
               "NMI concentrates it on a few clusters off the diagonal (one per tissue); SSD does not.")


# ------------------------------------------------------------------ 3. atlas segmentation
def _mean_dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean Dice over the structures of the target (a label the fusion missed counts as 0)."""
    return M.mean_dice(pred, target, labels=np.unique(target)[1:])


def _atlas(cfg: RegistrationConfig, run: Run) -> None:
    from mlimaging.data import make_phantom
    from mlimaging.registration import atlas_segment, fuse_labels, warp

    run.section("3. Atlas-based segmentation",
                "Phantoms with morphological variability (each seed a different 'subject', also "
                "misaligned by a random rigid transform) are segmented by registering labelled "
                "atlases to them (affine, NMI) and propagating the atlas labels with "
                "nearest-neighbour warping. Single atlas: each atlas alone. Multi-atlas: majority "
                "vote, or votes weighted by the local similarity of each registered atlas to the target.")
    size = _pick(cfg.size, cfg, 64, 96, "size")
    n_atlases = _pick(cfg.atlases, cfg, 3, 5, "atlases")
    n_targets = _pick(cfg.targets, cfg, 2, 5, "targets")
    rng = np.random.default_rng(cfg.seed + 2)
    knobs = {"n_structures": 5, "variability": 0.5, "partial_volume": 1.0, "noise": 0.02}
    atlases = [make_phantom((size, size), seed=1000 + cfg.seed * 100 + i, **knobs) for i in range(n_atlases)]
    rows, shown = [], None
    for j in run.track(range(n_targets), "atlas targets"):
        image, labels = make_phantom((size, size), seed=2000 + cfg.seed * 100 + j, **knobs)
        true = _random_transform("rigid", image.shape, (1.0, 1.0), rng)
        image = warp(image, true)
        labels = warp(labels, true, mode="nearest")
        # One registration per atlas: the weighted run also returns every propagated label map.
        result = atlas_segment(image, atlases, transform="affine", metric="nmi", fusion="weighted")
        single = [_mean_dice(lab, labels) for lab in result.propagated]
        majority, weighted = fuse_labels(result.propagated), result.labels
        rows.append({"target": j, "single atlas (mean)": float(np.mean(single)),
                     "single atlas (best)": float(np.max(single)),
                     "multi-atlas majority": _mean_dice(majority, labels),
                     "multi-atlas weighted": _mean_dice(weighted, labels)})
        if shown is None:
            shown = (image, labels, majority, weighted)
    summary = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "target"}
    rows.append({"target": "mean", **summary})
    run.table("Mean foreground Dice of atlas-based segmentation", rows,
              caption=f"{n_atlases} atlases, {n_targets} targets, 5 structures.")
    run.log(atlas_dice=summary)
    if shown is not None:
        image, labels, majority, weighted = shown
        k = int(labels.max())
        fig, axes = plt.subplots(1, 4, figsize=(9, 2.6))
        for ax, im, title, lab in zip(axes, [image, labels, majority, weighted],
                                      ["target", "ground truth", "majority vote", "weighted vote"],
                                      [False, True, True, True], strict=True):
            if lab:
                ax.imshow(middle_slice(im), cmap=label_cmap(k), vmin=0, vmax=k + 1, interpolation="nearest")
            else:
                ax.imshow(middle_slice(im), cmap="gray")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        run.figure(fig, "atlas-segmentation", caption="A target phantom and its multi-atlas segmentations.")


# ------------------------------------------------------------------ 4. spatial transformer
def _stn(cfg: RegistrationConfig, run: Run) -> None:
    from mlimaging.data import load_dataset
    from mlimaging.models.stn import SmallCNN, SpatialTransformer
    from mlimaging.training import evaluate, fit

    run.section("4. Spatial transformer network",
                "mnist5k digits rotated by up to 45 degrees, scaled by 0.8-1.2 and translated, on a "
                "larger canvas. The same small CNN is trained alone and behind a spatial transformer "
                "(affine localisation network initialised at the identity; Jaderberg et al. 2015), "
                "both with mlimaging.training.fit (Adam, the localiser at a third of the learning rate).")
    n_train = _pick(cfg.stn_train, cfg, 2000, 3500, "stn_train")
    n_test = _pick(cfg.stn_test, cfg, 500, 1000, "stn_test")
    epochs = _pick(cfg.stn_epochs, cfg, 8, 20, "stn_epochs")
    canvas = _pick(cfg.canvas, cfg, 36, 42, "canvas")
    train = load_dataset("mnist5k", split="train", seed=cfg.seed)
    test = load_dataset("mnist5k", split="test", seed=cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)  # random subsets: the splits are sorted by digit
    i_train = torch.randperm(len(train), generator=g)[:n_train]
    i_test = torch.randperm(len(test), generator=g)[:n_test]
    x_train = distort_digits(train.images[i_train], canvas=canvas, seed=cfg.seed * 2 + 1)
    x_test = distort_digits(test.images[i_test], canvas=canvas, seed=cfg.seed * 2 + 2)
    y_test = test.targets[i_test]
    train_set = TensorDataset(x_train, train.targets[i_train])
    test_set = TensorDataset(x_test, y_test)
    n_train, n_test = len(i_train), len(i_test)
    lr = 3e-3
    rows, models = [], {}
    for name in run.track(["CNN", "STN + CNN"], "spatial transformer"):
        torch.manual_seed(cfg.seed)
        if name == "CNN":
            model: nn.Module = SmallCNN()
            opt = torch.optim.Adam(model.parameters(), lr=lr)
        else:
            model = SpatialTransformer(transform="affine")
            opt = torch.optim.Adam([{"params": model.classifier.parameters()},
                                    {"params": model.localizer.parameters(), "lr": lr / 3}], lr=lr)
        t0 = time.perf_counter()
        history = fit(model, train_set, test_set, loss=nn.CrossEntropyLoss(), optimizer=opt,
                      epochs=epochs, batch_size=64, seed=cfg.seed, progress=False)
        seconds = time.perf_counter() - t0
        scores = evaluate(model, test_set)
        models[name] = (model, history)
        rows.append({"model": name, "parameters": sum(p.numel() for p in model.parameters()),
                     "test accuracy": scores["accuracy"], "epochs": epochs, "train images": n_train,
                     "test images": n_test, "seconds": seconds})
    run.table("Distorted digits: CNN alone versus STN + CNN", rows)
    run.log(stn_accuracy=rows[1]["test accuracy"], cnn_accuracy=rows[0]["test accuracy"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, (_, history) in models.items():
        ax.plot(range(1, epochs + 1), history["val_accuracy"], "o-", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.legend()
    ax.grid(alpha=0.3)
    run.figure(fig, "stn-accuracy", caption="Test accuracy per epoch on the distorted digits.")
    stn = models["STN + CNN"][0].eval()
    picks = [int(torch.nonzero(y_test == k)[0]) for k in range(10) if bool((y_test == k).any())]
    with torch.no_grad():
        shown = x_test[picks]
        rectified = stn.rectify(shown)
    n = len(picks)
    fig = image_grid([*shown, *rectified], titles=["input"] * n + ["rectified"] * n, ncols=n)
    run.figure(fig, "stn-rectified", caption="Top: distorted test digits. Bottom: the spatial transformer's "
               "output (what the classifier sees), learnt from the class labels alone.")


@experiment("registration", config=RegistrationConfig)
def registration_experiment(cfg: RegistrationConfig, run: Run) -> None:
    """Rigid/affine registration (TRE per metric), multi-modal NMI, atlas segmentation, STN."""
    # torch's thread count is set once, by `mlimaging --threads` (mlimaging.utils.set_torch_threads)
    for part in (_known_transforms, _multimodal, _atlas, _stn):
        part(cfg, run)

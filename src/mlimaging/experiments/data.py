"""Experiment ``data``: what the embedded datasets and the phantoms look like."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import image_grid, label_cmap, middle_slice, plt

# One degraded setting per segmentation challenge, strong enough to see.
CHALLENGES: dict[str, tuple[dict[str, float], str]] = {
    "noise": ({"noise": 0.15}, "Gaussian noise: intensities of one tissue spread out and overlap their neighbours'."),
    "bias_field": ({"bias_field": 0.6}, "Smooth intensity inhomogeneity: the same tissue is darker on one side than the other."),
    "partial_volume": ({"partial_volume": 1.5}, "Partial volume: boundary voxels mix the intensities of both sides."),
    "anisotropy": ({"anisotropy": 4.0}, "Anisotropic resolution: detail along the last axis is 4x coarser."),
    "artifacts": ({"artifacts": 0.6}, "Streak artifacts from a bright object, as metal causes in CT."),
    "contrast": ({"contrast": 0.25}, "Limited contrast: neighbouring structures have close intensities."),
    "variability": ({"variability": 0.8}, "Morphological variability: shapes differ between subjects (here: another seed)."),
}


@dataclass
class DataConfig(ExperimentConfig):
    datasets: tuple[str, ...] = ("digits", "mnist5k")
    per_class: int = 2
    phantom_size: int = 128


def _dataset_section(cfg: DataConfig, run: Run) -> None:
    from mlimaging.data import load_dataset

    run.section("Embedded datasets", "Samples of each dataset that ships with mlimaging's dependencies (no download).")
    rows = []
    for name in run.track(cfg.datasets, "datasets"):
        splits = {s: load_dataset(name, split=s, seed=cfg.seed) for s in ("train", "val", "test")}
        train = splits["train"]
        targets = np.asarray(train.targets)
        rng = np.random.default_rng(cfg.seed)
        classes = np.unique(targets)
        picks = [int(i) for c in classes for i in rng.choice(np.flatnonzero(targets == c), cfg.per_class, replace=False)]
        images = [train[i][0] for i in picks]
        titles = [str(int(targets[i])) for i in picks]
        fig = image_grid(images, titles=titles, ncols=len(classes), suptitle=f"{name}: {cfg.per_class} training images per class")
        run.figure(fig, f"dataset-{name}", caption=f"{name}: samples of each class from the training split (seed {cfg.seed}).")
        image0 = train[0][0]
        rows.append({
            "dataset": name, "image shape": "x".join(map(str, image0.shape)), "classes": len(classes),
            "train": len(splits["train"]), "val": len(splits["val"]), "test": len(splits["test"]),
            "min": float(image0.min()), "max": float(image0.max()),
        })
    run.table("Dataset splits", rows, caption="Images are float32 (C, H, W) in [0, 1]; splits are stratified by class and fixed by the seed.")
    run.log({f"{r['dataset']}_train": r["train"] for r in rows})


def _phantom_section(cfg: DataConfig, run: Run) -> None:
    from mlimaging.data import make_phantom

    size = 96 if cfg.quick else cfg.phantom_size
    shape = (size, size)
    run.section(
        "Phantoms: the segmentation challenges",
        "Each row: the clean phantom, the same phantom with one challenge switched on, and its label map "
        "(the ground truth before degradation). `make_phantom(shape, seed=..., <knob>=...)` makes them.",
    )
    clean, labels = make_phantom(shape, seed=cfg.seed)
    rows = []
    for knob, (kwargs, what) in run.track(list(CHALLENGES.items()), "phantom challenges"):
        if knob == "variability":
            degraded, deg_labels = make_phantom(shape, seed=cfg.seed + 1, **kwargs)
        else:
            degraded, deg_labels = make_phantom(shape, seed=cfg.seed, **kwargs)
        fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.7))
        k = int(max(labels.max(), deg_labels.max()))
        vmin, vmax = float(clean.min()), float(clean.max())
        axes[0].imshow(middle_slice(clean), cmap="gray", vmin=vmin, vmax=vmax)
        axes[0].set_title("clean")
        axes[1].imshow(middle_slice(degraded), cmap="gray", vmin=vmin, vmax=vmax)
        axes[1].set_title(", ".join(f"{a}={b:g}" for a, b in kwargs.items()))
        axes[2].imshow(middle_slice(deg_labels), cmap=label_cmap(k), vmin=0, vmax=k + 1, interpolation="nearest")
        axes[2].set_title("labels")
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        run.figure(fig, f"phantom-{knob}", caption=what)
        diff = degraded.astype(np.float64) - clean
        rows.append({
            "challenge": knob, "setting": ", ".join(f"{a}={b:g}" for a, b in kwargs.items()),
            "RMS change of the image": float(np.sqrt(np.mean(diff**2))),
            "labels changed (voxels)": int(np.count_nonzero(deg_labels != labels)),
        })
    run.table("Phantom challenges", rows, caption="How much each challenge changes the image; "
              "only morphological variability changes the labels.")

    # A 3D phantom with all challenges at once, shown as three orthogonal slices.
    n3 = 48 if cfg.quick else 96
    vol, vlab = make_phantom((n3, n3, n3), seed=cfg.seed, noise=0.05, bias_field=0.3, partial_volume=1.0, anisotropy=3.0)
    mid = n3 // 2
    views = [vol[mid], vol[:, mid], vol[:, :, mid], vlab[mid], vlab[:, mid], vlab[:, :, mid]]
    titles = ["axis 0", "axis 1", "axis 2"] * 2
    fig = image_grid(views, titles=titles, ncols=3, labels=[False] * 3 + [True] * 3, size=2.2,
                     suptitle="3D phantom: noise, bias field, partial volume, anisotropy along the last axis")
    run.figure(fig, "phantom-3d", caption="Orthogonal middle slices of a 3D phantom and its labels; "
               "slices containing the last axis show its coarser resolution.")
    run.log(phantom_shape_2d=list(shape), phantom_shape_3d=[n3] * 3)


@experiment("data", config=DataConfig)
def data_experiment(cfg: DataConfig, run: Run) -> None:
    """Sample grids of the embedded datasets and one figure per phantom challenge."""
    _dataset_section(cfg, run)
    _phantom_section(cfg, run)

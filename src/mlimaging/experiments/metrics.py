"""Experiment ``metrics``: the pitfalls of segmentation evaluation, and similarity measures by hand."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from mlimaging import metrics as M
from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

# The course's worked example for image similarity.
IM1 = np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1], dtype=float)
IM2 = np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1], dtype=float)


@dataclass
class MetricsConfig(ExperimentConfig):
    size: int = 128


def _disk(shape: tuple[int, ...], centre: tuple[float, ...], radius: float, spacing: tuple[float, ...] | None = None) -> np.ndarray:
    """A disk/ball of ``radius`` (physical units) sampled at voxel centres."""
    spacing = spacing or (1.0,) * len(shape)
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij")
    return sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= radius**2


def _structure_size(cfg: MetricsConfig, run: Run) -> None:
    run.section("1. Structure size", "The same error, one voxel of shift, costs a small structure much more Dice than a large one. "
                "Distances measure the error itself and stay at one voxel.")
    n = cfg.size
    radii = [2, 3, 5, 8, 12, 20, 30, 45] if not cfg.quick else [2, 3, 5, 10, 20, 40]
    rows = []
    for r in radii:
        gt = _disk((n, n), (n / 2, n / 2), r)
        pred = np.roll(gt, 1, axis=1)
        rows.append({"radius (voxels)": r, "voxels": int(gt.sum()), "dice": M.dice(pred, gt),
                     "jaccard": M.jaccard(pred, gt), "hd95": M.hausdorff_distance(pred, gt, percentile=95),
                     "assd": M.average_surface_distance(pred, gt)})
    run.table("Dice of a one-voxel shift by structure size", rows)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["radius (voxels)"] for r in rows], [r["dice"] for r in rows], "o-", label="Dice")
    ax.plot([r["radius (voxels)"] for r in rows], [r["jaccard"] for r in rows], "s--", label="Jaccard")
    ax.set_xscale("log")
    ax.set_xlabel("structure radius (voxels)")
    ax.set_ylabel("overlap after a 1-voxel shift")
    ax.legend()
    ax.grid(alpha=0.3)
    run.figure(fig, "structure-size", caption="Overlap of a disk with itself shifted by one voxel: small structures are punished.")
    run.log(dice_shift_smallest=rows[0]["dice"], dice_shift_largest=rows[-1]["dice"])


def _annotation_noise(cfg: MetricsConfig, run: Run) -> None:
    run.section("2. Annotation noise", "One stray voxel far from the structure drives the Hausdorff distance "
                "but barely moves HD95 or the average surface distance.")
    n = cfg.size
    gt = _disk((n, n), (n / 2, n / 2), n / 5)
    pred = np.roll(gt, 1, axis=0)
    stray = pred.copy()
    stray[4, 4] = True
    rows = []
    for name, p in [("prediction", pred), ("prediction + one stray voxel", stray)]:
        rows.append({"case": name, "dice": M.dice(p, gt), "hd": M.hausdorff_distance(p, gt),
                     "hd95": M.hausdorff_distance(p, gt, percentile=95), "assd": M.average_surface_distance(p, gt)})
    run.table("One stray voxel", rows)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.2))
    axes[0].imshow(gt.astype(int) + 2 * stray.astype(int), cmap="viridis", interpolation="nearest")
    axes[0].set_title("ground truth (1), prediction (2), both (3)")
    axes[0].axis("off")
    keys = ["hd", "hd95", "assd"]
    x = np.arange(len(keys))
    axes[1].bar(x - 0.2, [rows[0][k] for k in keys], 0.4, label=rows[0]["case"])
    axes[1].bar(x + 0.2, [rows[1][k] for k in keys], 0.4, label=rows[1]["case"])
    axes[1].set_xticks(x, keys)
    axes[1].set_ylabel("voxels")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    run.figure(fig, "annotation-noise", caption="A stray voxel in the corner: HD jumps, HD95 and ASSD hardly move.")
    run.log(hd_stray=rows[1]["hd"], hd95_stray=rows[1]["hd95"])


def _empty_masks(cfg: MetricsConfig, run: Run) -> None:
    run.section("3. Empty label maps", "Both empty: Dice 1 and distance 0 (nothing to find, nothing found). "
                "Only one empty: Dice 0 and the image diagonal as distance, so that a missed structure makes the "
                "average worse instead of disappearing from it, as it does where empty cases become NaN and are skipped.")
    n = 64
    gt = _disk((n, n), (32, 32), 10)
    empty = np.zeros_like(gt)
    cases = [("found", np.roll(gt, 1, axis=0), gt), ("missed (pred empty)", empty, gt),
             ("false alarm (target empty)", gt, empty), ("both empty", empty, empty)]
    rows = [{"case": c, "dice": M.dice(p, t), "hd95": M.hausdorff_distance(p, t, percentile=95),
             "assd": M.average_surface_distance(p, t),
             "hd95 (empty_distance=nan)": M.hausdorff_distance(p, t, percentile=95, empty_distance=float("nan"))}
            for c, p, t in cases]
    run.table("Empty-mask policy", rows, caption=f"Image diagonal: {np.hypot(n, n):.2f} voxels.")
    preds = [np.roll(gt, k, axis=0) for k in (1, 2, 1, 3)] + [empty]
    with warnings.catch_warnings():  # the missed case is the point of this table, not a label mix-up
        warnings.filterwarnings("ignore", message="pred and target hold different labels")
        result = M.evaluate_segmentation([p.astype(int) for p in preds], [gt.astype(int)] * 5,
                                         metrics=("dice", "hd95"))
    summary = [s for s in result.summary() if s["metric"] in ("dice", "hd95")]
    dropped = [float(np.mean([r["hd95"] for r in result.rows if not r["pred_empty"]]))]
    run.table("Five cases, one missed: our summary never drops it", summary,
              caption=f"Mean HD95 if the missed case were dropped instead: {dropped[0]:.3f} voxels.")


def _resolution(cfg: MetricsConfig, run: Run) -> None:
    run.section("4. Resolution and spacing", "The same physical shapes (a disk of radius 12 mm and the same disk moved by 2 mm) "
                "sampled on grids of different spacing. With spacing, distances stay in millimetres; "
                "without it they change with the grid. Dice drifts with the sampling.")
    extent = 64.0  # mm
    rows = []
    spacings = [(0.5, 0.5), (1.0, 1.0), (2.0, 2.0), (1.0, 3.0)] if not cfg.quick else [(0.5, 0.5), (1.0, 1.0), (1.0, 3.0)]
    for sp in spacings:
        shape = tuple(int(extent / s) for s in sp)
        gt = _disk(shape, (32.0, 32.0), 12.0, sp)
        pred = _disk(shape, (34.0, 32.0), 12.0, sp)
        rows.append({"spacing (mm)": "x".join(f"{s:g}" for s in sp), "grid": "x".join(map(str, shape)),
                     "dice": M.dice(pred, gt), "hd95 (mm)": M.hausdorff_distance(pred, gt, spacing=sp, percentile=95),
                     "hd95 (voxels, spacing ignored)": M.hausdorff_distance(pred, gt, percentile=95),
                     "assd (mm)": M.average_surface_distance(pred, gt, spacing=sp)})
    run.table("Same shapes, other grids", rows, caption="A true shift of 2 mm: HD95 with spacing stays near 2 mm.")
    fig, ax = plt.subplots(figsize=(5, 3.2))
    labels = [r["spacing (mm)"] for r in rows]
    ax.plot(labels, [r["hd95 (mm)"] for r in rows], "o-", label="HD95 with spacing (mm)")
    ax.plot(labels, [r["hd95 (voxels, spacing ignored)"] for r in rows], "s--", label="HD95 ignoring spacing (voxels)")
    ax.axhline(2.0, color="gray", lw=0.8, ls=":")
    ax.set_xlabel("grid spacing (mm)")
    ax.legend(fontsize=8)
    run.figure(fig, "resolution", caption="Distances need the voxel spacing to mean the same thing on every grid.")


def _similarity(cfg: MetricsConfig, run: Run) -> None:
    run.section("5. Image similarity by hand", "The course's worked example: im1 = [1,2,2,1,2,1,3,5,4,1], "
                "im2 = [1,2,1,1,0,1,2,1,2,1].")
    d = IM1 - IM2
    steps = [
        {"quantity": "differences im1 - im2", "value": " ".join(f"{v:g}" for v in d)},
        {"quantity": "sum of squared differences", "value": float(np.sum(d**2))},
        {"quantity": "SSD (mean over voxels)", "value": M.ssd(IM1, IM2)},
        {"quantity": "sum of absolute differences", "value": float(np.sum(np.abs(d)))},
        {"quantity": "SAD (mean over voxels)", "value": M.sad(IM1, IM2)},
        {"quantity": "means (im1, im2)", "value": f"{IM1.mean():g}, {IM2.mean():g}"},
        {"quantity": "standard deviations (im1, im2)", "value": f"{IM1.std():.4f}, {IM2.std():.4f}"},
        {"quantity": "covariance", "value": float(np.mean((IM1 - IM1.mean()) * (IM2 - IM2.mean())))},
        {"quantity": "CC (normalised cross-correlation)", "value": M.ncc(IM1, IM2)},
    ]
    levels1, levels2 = np.arange(1, 6), np.arange(0, 3)
    joint = np.array([[np.sum((IM1 == a) & (IM2 == b)) for b in levels2] for a in levels1]) / IM1.size
    p1, p2 = joint.sum(1), joint.sum(0)

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-np.sum(p * np.log(p)))

    h1, h2, h12 = entropy(p1), entropy(p2), entropy(joint.ravel())
    steps += [
        {"quantity": "H(im1) (nats)", "value": h1},
        {"quantity": "H(im2) (nats)", "value": h2},
        {"quantity": "H(im1, im2) (nats)", "value": h12},
        {"quantity": "MI = H1 + H2 - H12", "value": M.mutual_information(IM1, IM2, bins=5)},
        {"quantity": "NMI = (H1 + H2) / H12", "value": M.normalized_mutual_information(IM1, IM2, bins=5)},
    ]
    run.table("Intermediate values", steps)
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    ax.imshow(joint, cmap="viridis")
    ax.set_xticks(range(3), levels2)
    ax.set_yticks(range(5), levels1)
    ax.set_xlabel("im2")
    ax.set_ylabel("im1")
    for (i, j), v in np.ndenumerate(joint):
        ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w")
    ax.set_title("joint histogram p(im1, im2)")
    run.figure(fig, "joint-histogram", caption="Joint histogram of the worked example, as probabilities.")
    run.log(ssd=M.ssd(IM1, IM2), sad=M.sad(IM1, IM2), ncc=M.ncc(IM1, IM2),
            nmi=M.normalized_mutual_information(IM1, IM2, bins=5), nmi_by_hand=(h1 + h2) / h12)


@experiment("metrics", config=MetricsConfig)
def metrics_experiment(cfg: MetricsConfig, run: Run) -> None:
    """Pitfalls of segmentation evaluation (size, noise, empty masks, spacing) and similarity by hand."""
    for part in run.track([_structure_size, _annotation_noise, _empty_masks, _resolution, _similarity], "metrics"):
        part(cfg, run)

r"""Rigid / multi-modal registration and multi-atlas segmentation: mlimaging against SimpleITK.

Written to ``benchmarks/results/registration.json`` with a printed table. Rigid 3D settings
(each a few cases; TRE = mean distance over the 8 corners of the fixed image between the
estimated and the true transform; success = TRE under 1 voxel):

1. ``mono_modal``: random rigid transforms (rotations uniform in +-8 degrees about each
   axis, translations in +-5 mm), alternately on phantoms (48^3 voxels of 1.5 mm) and on
   nibabel's ``anatomical.nii`` (2 mm voxels, cropped to 25 x 33 x 17). Each pair is
   "acquired" from one high-resolution source (the phantom rendered at twice the
   resolution, or the volume upsampled twice with cubic splines): the fixed image is the
   2x2x2 block mean of the source, the moving image the block mean of the source resampled
   (cubic) through the inverse transform, both with Gaussian noise (1% of the range).
   Ours with SSD, SimpleITK with ``MeanSquares``.
2. ``multi_modal``: the same cases with the moving intensities remapped non-monotonically,
   :math:`v \mapsto \cos(5 v)` on intensities normalised to [0, 1]; ours with NMI,
   SimpleITK with Mattes MI.
3. ``rotation_15``: as 1 with rotations uniform in +-15 degrees about every axis and
   translations in +-6 mm; ours with NMI (the command line's default), SimpleITK Mattes MI.
4. ``backgrounds``: the cases of 1 with the moving image's background (below 5% of the
   range) raised to 30% of the range, brighter than the dark tissue: a fixed / moving pair
   with different backgrounds; NMI / Mattes MI. On the phantoms the raised background is as
   bright as the body (0.29), which the moving image then shows only through the background's
   noise texture and the small inner structures; without ``refine`` one of the four phantom
   cases (phantom-2) ends 1.9 voxels off (a rotation of 3.2 degrees) without a warning, as it
   does for both SimpleITK set-ups; the refinement's rotation probes recover it
   (``known_gaps`` in the JSON).
5. ``int16_zero_border``: issue 9's case, ``anatomical.nii`` itself (33 x 41 x 25, 2 mm)
   rotated by up to 15 degrees about every axis and shifted by 6 mm (random directions),
   resampled with a zero-filled border (the scan's own background is about 1200) and
   stored as int16; NMI / Mattes MI.

Ours: ``register(transform="rigid")`` with its defaults (3 levels, L-BFGS, 30 iterations per
level, centre-of-mass start, smoothing 2, 1, 0 voxels as ITK's usual schedule, all voxels, restarts
on failure, ``refine=True``: rotation probes around the result and a rerun of the finest level
from a lower one, added on 2026-11-30 for phantom-2 of ``backgrounds``). Until 2026-11-30 the
smoothing default was 2, 1, 1, which left 3 of the 4 phantom cases of ``backgrounds`` 1.2-1.9
voxels off without a warning.
Two SimpleITK configurations, both ``Euler3DTransform`` from the ``MOMENTS`` initialiser,
linear interpolation, all voxels, shrink 4, 2, 1:

* ``sitk_lbfgsb``: ``LBFGSB`` (gradient tolerance 1e-7, 100 iterations per level), Gaussian
  sigma 2, 1, 1 voxels (ours' former default, kept so that this reference does not move),
  Mattes with 32 bins. **LBFGSB ignores the optimiser
  scales** (``SetOptimizerScales*`` has no effect on it), so its angle and translation steps
  are not balanced;
* ``sitk_recommended``: SimpleITK's recommended set-up, ``RegularStepGradientDescent``
  (learning rate 1, minimum step 1e-4, 200 iterations, relaxation 0.5) with
  ``SetOptimizerScalesFromPhysicalShift()``, Mattes MI with 50 bins, sigma 2, 1, 0 voxels.

Images are converted to SimpleITK before the timer starts, and each method runs once on a
warm-up case first. "wrong without warning" counts our results with TRE of 1 voxel or more
that :func:`register` did not flag (``converged`` True, no ``RegistrationWarning``).
Multi-atlas segmentation: phantoms with morphological variability (3D, 40^3); for each
target, 5 atlases registered (affine, NMI) and their labels propagated; mean Dice over
structures of each single atlas, of the majority vote and of locally weighted voting.

Run: ``python benchmarks/registration.py`` (``--quick`` for 2 cases per setting, 1 target).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from mlimaging.data import make_phantom, read_image
from mlimaging.data.samples import sample_file
from mlimaging.metrics import dice
from mlimaging.registration import (
    RegistrationWarning,
    atlas_segment,
    corner_points,
    fuse_labels,
    invert,
    register,
    rigid_matrix,
    target_registration_error,
    voxel_to_physical,
    warp,
)
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "registration.json"
#: Known gaps, written into the JSON (measured with the 8-case run of 2026-11-30).
KNOWN_GAPS = {
    "backgrounds": (
        "On the phantoms the raised background (about 0.30 of the range) is as bright as the phantom's body (0.29), "
        "so the moving image shows the body only through the noise texture of the background (the voxels the 5% "
        "threshold missed) and the small inner structures (3.5% of the volume). On every phantom case the coarsest "
        "level ends 2.5-4.5 voxels off (the second 0.6-4.2); the full-resolution level recovers 3 of 4. Without "
        "register's refinement (refine=False) phantom-2 stays 1.9 voxels off without a warning: a local minimum of "
        "the NMI 3.2 degrees from the truth whose loss is 0.14% above the truth's basin (better than the start, the "
        "overlap intact, so the failure checks cannot see it); a rotation probe of 2 voxels around it is 0.03% lower "
        "and the finest level rerun from there ends 0.5 voxel off (loss 0.19% below the local minimum). Both SimpleITK "
        "configurations miss this case (2.4 and 1.6 mm). The refinement only finds minima within reach of its probes: "
        "on 36 smaller raised-background pairs (28^3, the test suite's generator) 11 end 1-3.3 voxels off without a "
        "warning without it and 8 with it (4 recovered, 1 moved from 0.98 to 1.81 voxels at a lower loss: there the "
        "NMI's minimum is not at the truth). Smoothing the full-resolution level by 1 voxel (the default until "
        "2026-11-30) left 3 phantom cases 1.2-1.9 voxels off, all without a warning."),
    "refine_cost": (
        "The refinement evaluates the full-resolution loss at 6 rotation probes per run (3D) and reruns the finest "
        "level only where a probe is lower (here phantom-2 of backgrounds, +3 s). With refine off and on "
        "interleaved in one process (8 cases per setting, 1 thread): mono_modal (SSD) within timing noise, "
        "multi_modal +28%, rotation_15 +29%, backgrounds +25%, int16_zero_border +16%; in two benchmark runs with it "
        "against the last run without it, the time per setting changed by -10% to +37% (this run: -10%, +16%, +26%, "
        "+34%, +9%). The probes cost about 50 ms each on the 48^3 phantoms with NMI, "
        "most of it the Parzen weights of the joint histogram."),
    "int16_zero_border": (
        "Without smoothing at full resolution the median TRE rose from 0.13 to 0.30 mm (0.15 voxel; SimpleITK "
        "LBFGSB with 2,1,1: 0.26 mm); every case still under 0.2 voxel."),
}
NOISE = 0.01
SHRINK, SIGMAS, SIGMAS_ITK = [4, 2, 1], [2.0, 1.0, 1.0], [2.0, 1.0, 0.0]

try:
    import SimpleITK as sitk
except ImportError:  # pragma: no cover
    sitk = None


# ----------------------------------------------------------------------------- cases
def _block_mean(x: np.ndarray) -> np.ndarray:
    n = [s // 2 for s in x.shape]
    x = x[: 2 * n[0], : 2 * n[1], : 2 * n[2]]
    return x.reshape(n[0], 2, n[1], 2, n[2], 2).mean(axis=(1, 3, 5))


def _acquire(source: np.ndarray, hi_spacing: tuple[float, ...], true: torch.Tensor, rng: np.random.Generator):
    """Fixed and moving images from one high-resolution source (moving(T x) = fixed(x))."""
    v = voxel_to_physical(source.shape, spacing=hi_spacing)
    m = (invert(v) @ invert(true) @ v).numpy()
    moved = ndi.affine_transform(source, m[:3, :3], m[:3, 3], order=3, mode="grid-constant")
    fixed, moving = _block_mean(source), _block_mean(moved)
    scale = NOISE * float(np.ptp(fixed))
    return (fixed + scale * rng.standard_normal(fixed.shape)).astype(np.float32), (
        moving + scale * rng.standard_normal(moving.shape)).astype(np.float32)


def _anatomical_raw() -> tuple[np.ndarray, tuple[float, ...]]:
    arr, spacing = read_image(sample_file("anatomical.nii"))  # found without nibabel.testing
    return np.asarray(arr), tuple(float(s) for s in spacing)


def _anatomical() -> np.ndarray:
    img = _anatomical_raw()[0].astype(np.float64)
    hi = np.percentile(img, 99.9)
    return np.clip(img, 0, hi) / hi


def _rigid(rng: np.random.Generator, degrees: float, mm: float) -> torch.Tensor:
    return rigid_matrix(np.r_[np.deg2rad(rng.uniform(-degrees, degrees, 3)), rng.uniform(-mm, mm, 3)], spatial_dims=3)


def make_cases(n_cases: int, seed: int = 0, *, degrees: float = 8.0, mm: float = 5.0):
    """Acquired pairs (dicts with name, fixed, moving, spacing, true), phantom and anatomical in turn."""
    rng = np.random.default_rng(seed)
    anat_hi = ndi.zoom(_anatomical(), 2, order=3)
    for k in range(n_cases):
        true = _rigid(rng, degrees, mm)
        if k % 2 == 0:
            source, _ = make_phantom((80, 80, 80), seed=k, partial_volume=1.0)
            source = np.pad(source, 8)
            fixed, moving = _acquire(source, (0.75,) * 3, true, rng)
            spacing, name = (1.5,) * 3, f"phantom-{k}"
        else:
            fixed, moving = _acquire(anat_hi, (1.0,) * 3, true, rng)
            fixed, moving = fixed[4:-4, 4:-4, 4:-4], moving[4:-4, 4:-4, 4:-4]
            spacing, name = (2.0,) * 3, f"anatomical-{k}"
        yield {"name": name, "fixed": fixed, "moving": moving, "spacing": spacing, "true": true}


def make_int16_cases(n_cases: int, seed: int = 1):
    """anatomical.nii rotated up to 15 degrees about every axis, shifted 6 mm, zero border, int16."""
    rng = np.random.default_rng(seed)
    arr, spacing = _anatomical_raw()
    fixed = arr.astype(np.float32)
    for k in range(n_cases):
        shift = rng.standard_normal(3)
        shift = 6.0 * shift / np.linalg.norm(shift)
        true = rigid_matrix(np.r_[np.deg2rad(rng.uniform(-15, 15, 3)), shift], spatial_dims=3)
        moving = np.round(np.asarray(warp(fixed, invert(true), spacing=spacing))).astype(np.int16)
        yield {"name": f"anatomical-int16-{k}", "fixed": arr, "moving": moving, "spacing": spacing, "true": true}


def remap(image: np.ndarray) -> np.ndarray:
    """Non-monotonic intensity remapping cos(5 v), v normalised to [0, 1]."""
    v = (image - image.min()) / max(float(np.ptp(image)), 1e-12)
    return np.cos(5.0 * v).astype(np.float32)


def other_background(image: np.ndarray) -> np.ndarray:
    """The background (below 5% of the range) raised to 30% of the range."""
    lo, span = float(image.min()), float(np.ptp(image))
    out = image.copy()
    out[image < lo + 0.05 * span] += 0.3 * span
    return out


# ----------------------------------------------------------------------------- SimpleITK
def _to_sitk(arr: np.ndarray, spacing):
    im = sitk.GetImageFromArray(arr.astype(np.float32))  # numpy axes (z, y, x) = ITK (x, y, z) reversed
    im.SetSpacing([float(s) for s in spacing[::-1]])
    im.SetOrigin([float(-(n - 1) / 2 * s) for n, s in zip(arr.shape[::-1], spacing[::-1], strict=True)])
    return im


SITK_CONFIGS = ("sitk_lbfgsb", "sitk_recommended")


def sitk_register(f, m, metric: str, config: str) -> torch.Tensor | None:
    """SimpleITK rigid registration of prepared images; our (array-axis order) physical matrix, None if it failed."""
    reg = sitk.ImageRegistrationMethod()
    if metric == "ssd":
        reg.SetMetricAsMeanSquares()
    else:
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32 if config == "sitk_lbfgsb" else 50)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    if config == "sitk_lbfgsb":
        reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-7, numberOfIterations=100)
        sigmas = SIGMAS
    else:
        reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4, numberOfIterations=200,
                                                     relaxationFactor=0.5, gradientMagnitudeTolerance=1e-8)
        reg.SetOptimizerScalesFromPhysicalShift()
        sigmas = SIGMAS_ITK
    reg.SetShrinkFactorsPerLevel(SHRINK)
    reg.SetSmoothingSigmasPerLevel(list(sigmas))
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    init = sitk.CenteredTransformInitializer(f, m, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.MOMENTS)
    reg.SetInitialTransform(init, inPlace=True)
    try:
        reg.Execute(f, m)
    except RuntimeError:  # e.g. Mattes MI: "All samples map outside moving image buffer"
        return None
    a = np.array(init.GetMatrix()).reshape(3, 3)
    c, t = np.array(init.GetCenter()), np.array(init.GetTranslation())
    p = np.eye(3)[::-1]
    out = np.eye(4)
    out[:3, :3] = p @ a @ p
    out[:3, 3] = p @ (c + t - a @ c)
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------- runs
def _tre(estimated, case) -> float:
    pts = corner_points(case["fixed"].shape, spacing=case["spacing"])
    return float(target_registration_error(estimated, case["true"], pts).mean())


def _ours(fixed, moving, spacing, metric):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = register(fixed, moving, transform="rigid", metric=metric, spacing=spacing)
    warned = any(issubclass(w.category, RegistrationWarning) for w in caught)
    return result, warned


def warm_up(case) -> None:
    """One untimed run of each method (imports, allocations, thread pools)."""
    fixed, moving = case["fixed"].astype(np.float32), case["moving"].astype(np.float32)
    _ours(fixed, moving, case["spacing"], "nmi")
    if sitk is not None:
        f, m = _to_sitk(fixed, case["spacing"]), _to_sitk(moving, case["spacing"])
        for config in SITK_CONFIGS:
            sitk_register(f, m, "mattes", config)


def run_setting(cases, *, metric: str, transform_moving=None) -> list[dict]:
    rows = []
    itk_metric = "ssd" if metric == "ssd" else "mattes"
    for case in cases:
        fixed = case["fixed"].astype(np.float32)
        moving = case["moving"].astype(np.float32)
        if transform_moving is not None:
            moving = transform_moving(moving)
        vox = float(min(case["spacing"]))
        t0 = time.perf_counter()
        result, warned = _ours(fixed, moving, case["spacing"], metric)
        t_ours = time.perf_counter() - t0
        tre = _tre(result.transform, case)
        row = {"case": case["name"], "voxel_mm": vox, "tre_initial_mm": _tre(torch.eye(4, dtype=torch.float64), case),
               "tre_ours_mm": tre, "time_ours_s": t_ours, "ours_converged": bool(result.converged),
               "ours_warned": warned, "ours_restarts": result.restarts, "ours_refinements": result.refinements,
               "ours_wrong_without_warning": bool(tre >= vox and not warned)}
        line = f"  {case['name']:<20} ours {tre:7.3f} mm ({t_ours:5.2f} s{', warned' if warned else ''})"
        if sitk is not None:
            f, m = _to_sitk(fixed, case["spacing"]), _to_sitk(moving, case["spacing"])  # outside the timing
            for config in SITK_CONFIGS:
                t0 = time.perf_counter()
                matrix = sitk_register(f, m, itk_metric, config)
                elapsed = time.perf_counter() - t0
                row[f"tre_{config}_mm"] = None if matrix is None else _tre(matrix, case)
                row[f"time_{config}_s"] = elapsed
                tre_txt = "failed" if matrix is None else f"{row[f'tre_{config}_mm']:.3f} mm"
                line += f"  {config} {tre_txt} ({elapsed:.2f} s)"
        rows.append(row)
        print(line, flush=True)
    return rows


def run_atlas(n_targets: int, n_atlases: int = 5) -> list[dict]:
    shape = (40, 40, 40)
    rows = []
    for k in range(n_targets):
        target, truth = make_phantom(shape, seed=100 + k, variability=0.6, partial_volume=0.7, noise=0.02)
        atlases = [make_phantom(shape, seed=200 + 10 * k + j, variability=0.6, partial_volume=0.7, noise=0.02)
                   for j in range(n_atlases)]
        t0 = time.perf_counter()
        res = atlas_segment(target, atlases, transform="affine", metric="nmi", fusion="weighted")
        elapsed = time.perf_counter() - t0
        labels = [lab for lab in np.unique(truth) if lab != 0]

        def mean_dice(seg: np.ndarray, labels=labels, truth=truth) -> float:
            return float(np.mean([float(dice(seg == lab, truth == lab)) for lab in labels]))

        single = [mean_dice(p) for p in res.propagated]
        row = {"target": k, "single_atlas_dice": single, "single_atlas_mean": float(np.mean(single)),
               "majority_dice": mean_dice(fuse_labels(res.propagated)),
               "weighted_dice": mean_dice(np.asarray(res.labels)), "time_s": elapsed}
        rows.append(row)
        print(f"  target {k}: single {row['single_atlas_mean']:.3f}  majority {row['majority_dice']:.3f}  "
              f"weighted {row['weighted_dice']:.3f}  ({elapsed:.1f} s)", flush=True)
    return rows


def _summary(rows: list[dict]) -> dict:
    vox = [r["voxel_mm"] for r in rows]
    ours = [r["tre_ours_mm"] for r in rows]
    out = {
        "cases": len(rows),
        "median_tre_initial_mm": statistics.median(r["tre_initial_mm"] for r in rows),
        "success_ours": float(np.mean([t < v for t, v in zip(ours, vox, strict=True)])),
        "median_tre_ours_mm": statistics.median(ours),
        "time_ours_s": sum(r["time_ours_s"] for r in rows),
        "ours_warned": sum(r["ours_warned"] for r in rows),
        "ours_restarted": sum(r["ours_restarts"] > 0 for r in rows),
        "ours_refined": sum(r["ours_refinements"] > 0 for r in rows),
        "ours_wrong_without_warning": sum(r["ours_wrong_without_warning"] for r in rows),
    }
    for config in SITK_CONFIGS:
        if rows and f"tre_{config}_mm" in rows[0]:
            itk = [np.inf if r[f"tre_{config}_mm"] is None else r[f"tre_{config}_mm"] for r in rows]  # failure = worst
            out[f"success_{config}"] = float(np.mean([t < v for t, v in zip(itk, vox, strict=True)]))
            out[f"median_tre_{config}_mm"] = float(statistics.median(itk))
            out[f"time_{config}_s"] = sum(r[f"time_{config}_s"] for r in rows)
            out[f"{config}_exceptions"] = sum(r[f"tre_{config}_mm"] is None for r in rows)
    return out


SETTINGS = {
    "mono_modal": ("mono-modal, rotations <= 8 deg (SSD / MeanSquares)", "ssd"),
    "multi_modal": ("multi-modal cos(5v), rotations <= 8 deg (NMI / Mattes)", "nmi"),
    "rotation_15": ("rotations <= 15 deg about every axis (NMI / Mattes)", "nmi"),
    "backgrounds": ("different backgrounds (NMI / Mattes)", "nmi"),
    "int16_zero_border": ("anatomical.nii int16, zero border, <= 15 deg + 6 mm (NMI / Mattes)", "nmi"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 cases per setting and 1 atlas target")
    parser.add_argument("--cases", type=int, default=8, help="cases per setting (default 8)")
    parser.add_argument("--threads", type=int, default=1, help="threads for torch and SimpleITK (same for both)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if sitk is not None:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    n_cases, n_targets = (2, 1) if args.quick else (args.cases, 2)
    base = list(make_cases(n_cases))
    inputs = {
        "mono_modal": (base, None),
        "multi_modal": (base, remap),
        "rotation_15": (list(make_cases(n_cases, seed=15, degrees=15.0, mm=6.0)), None),
        "backgrounds": (base, other_background),
        "int16_zero_border": (list(make_int16_cases(n_cases)), None),
    }
    warm_up(base[0])
    results = {}
    for key, (title, metric) in SETTINGS.items():
        print(title, flush=True)
        cases, change = inputs[key]
        rows = run_setting(cases, metric=metric, transform_moving=change)
        results[key] = {"title": title, "summary": _summary(rows), "cases": rows}
    print("multi-atlas segmentation (5 atlases, affine NMI)")
    atlas = run_atlas(n_targets)
    s_atlas = {k: float(np.mean([r[k] for r in atlas])) for k in ("single_atlas_mean", "majority_dice", "weighted_dice")}

    targets = {
        f"{key}_success_at_least_sitk_recommended": results[key]["summary"]["success_ours"]
        >= results[key]["summary"].get("success_sitk_recommended", 0.0) for key in SETTINGS
    }
    targets["no_wrong_result_without_warning"] = all(
        results[key]["summary"]["ours_wrong_without_warning"] == 0 for key in SETTINGS)
    targets["multi_atlas_dice_above_single"] = (min(s_atlas["majority_dice"], s_atlas["weighted_dice"])
                                                > s_atlas["single_atlas_mean"])
    record = {
        "benchmark": "registration",
        "quick": args.quick,
        "threads": args.threads,
        "platform": platform.platform(),
        "versions": package_versions(("mlimaging", "torch", "numpy", "scipy", "SimpleITK")),
        "settings": {
            "noise": NOISE, "shrink_factors": SHRINK, "success": "TRE (mean over the 8 fixed corners) < 1 voxel",
            "ours": "register(transform='rigid') defaults: levels=3, optimizer='lbfgs', 30 iterations/level, "
                    "init='com', smoothing 2,1,0 voxels, all voxels, restarts=2 on failure, refine=True (rotation "
                    "probes of 2 voxels around the result, finest level rerun from a lower one)",
            "sitk_lbfgsb": "ImageRegistrationMethod, Euler3DTransform, MOMENTS init, LBFGSB(gradient tol 1e-7, "
                           "100 it/level), Mattes 32 bins or MeanSquares, smoothing 2,1,1 voxels, all voxels, linear",
            "sitk_lbfgsb_note": "LBFGSB ignores the optimizer scales (SetOptimizerScales* have no effect on it), "
                                "so rotation and translation steps are not balanced",
            "sitk_recommended": "ImageRegistrationMethod, Euler3DTransform, MOMENTS init, "
                                "RegularStepGradientDescent(learningRate=1, minStep=1e-4, 200 it, relaxation 0.5) "
                                "with SetOptimizerScalesFromPhysicalShift(), Mattes MI 50 bins (MeanSquares for the "
                                "mono-modal setting), shrink 4,2,1, smoothing 2,1,0 voxels, all voxels, linear",
            "timing": "numpy -> SimpleITK conversion outside the timer; one untimed warm-up run of each method",
        },
        **results,
        "multi_atlas": {"summary": s_atlas, "targets": atlas},
        "targets_met": {k: bool(v) for k, v in targets.items()},
        "known_gaps": KNOWN_GAPS,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2))

    print()
    cols = ["ours"] + [c for c in SITK_CONFIGS if sitk is not None]
    print(f"{'setting':<26}{'':<16}" + "".join(f"{c:>18}" for c in cols))
    for key in SETTINGS:
        s = results[key]["summary"]
        print(f"{key:<26}{'success (<1 vox)':<16}" + "".join(f"{s.get('success_' + c, np.nan):>18.0%}" for c in cols))
        print(f"{'':<26}{'median TRE mm':<16}" + "".join(f"{s.get('median_tre_' + c + '_mm', np.nan):>18.3f}"
                                                       for c in cols))
        print(f"{'':<26}{'time s':<16}" + "".join(f"{s.get('time_' + c + '_s', np.nan):>18.2f}" for c in cols))
        print(f"{'':<26}{'ours warned / wrong w/o warning':<16} {s['ours_warned']} / {s['ours_wrong_without_warning']}"
              f"  (restarted {s['ours_restarted']}, initial median TRE {s['median_tre_initial_mm']:.2f} mm)")
    print("multi-atlas segmentation, mean Dice")
    print(f"{'  single atlas (mean of 5)':<28}{s_atlas['single_atlas_mean']:>12.3f}")
    print(f"{'  majority vote (5)':<28}{s_atlas['majority_dice']:>12.3f}")
    print(f"{'  locally weighted (5)':<28}{s_atlas['weighted_dice']:>12.3f}")
    print("targets:", ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in record["targets_met"].items()))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

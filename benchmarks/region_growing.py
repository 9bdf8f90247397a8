"""Region growing: mlimaging against SimpleITK's ConnectedThreshold (and ConfidenceConnected).

Builds a 256^3 phantom (``make_phantom((256, 256, 256), seed=0, noise=0.05)``: a body, an
organ and a small lesion inside it), puts a seed inside each structure and grows the region
of voxels within the structure's intensity +/- 0.1 (2 noise standard deviations) with face
connectivity, with ``mlimaging.segmentation.region_growing`` and with SimpleITK's
``ConnectedThreshold`` (same seed, reversed to (x, y, z), same bounds). Only the calls are
timed (``time.perf_counter``; the SimpleITK image is converted beforehand), alternating
between the two, best of ``--repeats``. The masks must be identical.

Alongside, the alternatives considered for our implementation, on the same cases:
``scipy.ndimage.label`` on the whole in-range mask, and a breadth-first flood fill from the
seed restricted to the in-range mask (``skimage.segmentation.flood``), both timed with the
thresholding. Finally ``confidence_region_growing`` against ``ConfidenceConnected`` on the
organ. Writes ``benchmarks/results/region_growing.json`` and prints a table.

Run: ``python benchmarks/region_growing.py`` (``--quick`` for a 128^3 phantom).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi
from skimage.segmentation import flood

from mlimaging.data import make_phantom
from mlimaging.segmentation import confidence_region_growing, region_growing
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "region_growing.json"
STRUCTURES = {"lesion (small)": (3, 1.0), "organ (medium)": (2, 0.7), "body (large)": (1, 0.3)}
HALF_WIDTH = 0.1


def pick_seed(image, labels, label, lower, upper):
    """The in-range voxel of the structure nearest its centroid (deterministic)."""
    candidates = np.argwhere((labels == label) & (image >= lower) & (image <= upper))
    centre = candidates.mean(axis=0)
    return tuple(int(c) for c in candidates[np.argmin(((candidates - centre) ** 2).sum(axis=1))])


def best_of(functions, repeats):
    """Best wall time of each function, calls alternating; returns (times, last results)."""
    times = {name: [] for name in functions}
    results = {}
    for _ in range(repeats):
        for name, f in functions.items():
            t = time.perf_counter()
            results[name] = f()
            times[name].append(time.perf_counter() - t)
    return {name: min(ts) for name, ts in times.items()}, results


def label_whole(image, seed, lower, upper):
    labels, _ = ndi.label((image >= lower) & (image <= upper))
    return labels == labels[seed]


def flood_whole(image, seed, lower, upper):
    return flood((image >= lower) & (image <= upper), seed, connectivity=1)


def time_connected(image, simage, seed, lower, upper, repeats):
    """Times and masks of the four ways to grow the region from ``seed``."""
    sitk_seed = [seed[::-1]]  # NumPy (z, y, x) -> SimpleITK (x, y, z)
    face = sitk.ConnectedThresholdImageFilter.FaceConnectivity
    lo, hi = np.float32(lower), np.float32(upper)
    return best_of({
        "mlimaging": lambda: region_growing(image, seed, lower=lower, upper=upper),
        "SimpleITK": lambda: sitk.ConnectedThreshold(simage, seedList=sitk_seed, lower=lower, upper=upper,
                                                     replaceValue=1, connectivity=face),
        "label whole volume": lambda: label_whole(image, seed, lo, hi),
        "BFS flood (skimage)": lambda: flood_whole(image, seed, lo, hi),
    }, repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="128^3 phantom")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    shape = (128,) * 3 if args.quick else (256,) * 3
    t = time.perf_counter()
    image, labels = make_phantom(shape, seed=0, noise=0.05)
    print(f"phantom {shape} {image.dtype} made in {time.perf_counter() - t:.1f} s")
    simage = sitk.GetImageFromArray(image)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()

    rows = []
    for name, (label, intensity) in STRUCTURES.items():
        lower = float(np.float32(intensity - HALF_WIDTH))
        upper = float(np.float32(intensity + HALF_WIDTH))
        seed = pick_seed(image, labels, label, np.float32(lower), np.float32(upper))
        times, out = time_connected(image, simage, seed, lower, upper, args.repeats)
        ours = out["mlimaging"]
        theirs = sitk.GetArrayViewFromImage(out["SimpleITK"]).astype(bool)
        same = bool(np.array_equal(ours, theirs))
        same_alt = bool(np.array_equal(ours, out["label whole volume"]) and
                        np.array_equal(ours, out["BFS flood (skimage)"]))
        rows.append({
            "case": name, "seed": list(seed), "lower": lower, "upper": upper,
            "region_voxels": int(ours.sum()), "identical_to_simpleitk": same,
            "identical_to_alternatives": same_alt,
            "time_s": times, "ratio_vs_simpleitk": times["mlimaging"] / times["SimpleITK"],
        })

    # Confidence connected on the organ.
    organ = next(r for r in rows if r["case"].startswith("organ"))
    seed = tuple(organ["seed"])
    times, out = best_of({
        "mlimaging": lambda: confidence_region_growing(image, seed, multiplier=2.5, iterations=2, radius=1),
        "SimpleITK": lambda: sitk.ConfidenceConnected(simage, seedList=[seed[::-1]], numberOfIterations=2,
                                                      multiplier=2.5, initialNeighborhoodRadius=1,
                                                      replaceValue=1),
    }, args.repeats)
    ours = out["mlimaging"]
    confidence = {
        "case": "organ (medium), confidence connected, multiplier 2.5, 2 iterations, radius 1",
        "seed": list(seed), "region_voxels": int(ours.sum()),
        "identical_to_simpleitk": bool(np.array_equal(
            ours, sitk.GetArrayViewFromImage(out["SimpleITK"]).astype(bool))),
        "time_s": times, "ratio_vs_simpleitk": times["mlimaging"] / times["SimpleITK"],
    }

    header = (f"{'case':<18}{'voxels':>10}{'ours ms':>10}{'SimpleITK ms':>14}{'ratio':>7}"
              f"{'same':>6}{'label all ms':>14}{'BFS ms':>9}")
    print(f"\nConnectedThreshold, face connectivity, {shape}, best of {args.repeats}; "
          f"SimpleITK threads: {threads}, CPUs: {os.cpu_count()}")
    print(header)
    print("-" * len(header))
    for r in rows:
        t = r["time_s"]
        print(f"{r['case']:<18}{r['region_voxels']:>10}{1e3 * t['mlimaging']:>10.1f}"
              f"{1e3 * t['SimpleITK']:>14.1f}{r['ratio_vs_simpleitk']:>7.2f}"
              f"{'yes' if r['identical_to_simpleitk'] else 'NO':>6}"
              f"{1e3 * t['label whole volume']:>14.1f}{1e3 * t['BFS flood (skimage)']:>9.1f}")
    t = confidence["time_s"]
    print(f"\nConfidenceConnected (organ): ours {1e3 * t['mlimaging']:.1f} ms, SimpleITK "
          f"{1e3 * t['SimpleITK']:.1f} ms, ratio {confidence['ratio_vs_simpleitk']:.2f}, "
          f"identical: {confidence['identical_to_simpleitk']}")

    report = {
        "benchmark": "region_growing",
        "description": __doc__.splitlines()[0],
        "config": {"shape": list(shape), "phantom": "make_phantom(shape, seed=0, noise=0.05)",
                   "connectivity": "face", "repeats": args.repeats, "timing": "best of repeats, alternating",
                   "quick": args.quick},
        "simpleitk_threads": threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count()},
        "versions": package_versions(("mlimaging", "numpy", "scipy", "scikit-image", "SimpleITK")),
        "target": "identical masks, mlimaging time <= 1.5 x SimpleITK",
        "connected_threshold": rows,
        "confidence_connected": confidence,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")
    ok = all(r["identical_to_simpleitk"] for r in rows) and confidence["identical_to_simpleitk"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Validation of the PnP settings of ``benchmarks/inverse.py`` on images that are neither camera nor training images.

The pnp-dncnn case's settings (sigma scale, lam, iterations, schedule, self-ensemble) and its denoiser are chosen
here, on the tv-deblur problem (circular Gaussian blur sigma 2, Gaussian noise 0.01, seeded) applied to four grey
images outside the denoiser's training set: scikit-learn's ``flower`` and ``china`` (``load_sample_images``),
matplotlib's ``grace_hopper.jpg`` and scikit-image's ``retina`` (downscaled by 2), centre crops of at most
``--size`` pixels a side. Camera, the test image, is never used. Reported: PnP-HQS minus TV (lam 0.002, FISTA 100
iterations) in dB per image and their mean.

Run: ``python benchmarks/inverse_pnp_validation.py --size 512 --config '{"sigma_scale": 0.8}'`` (one JSON object per
``--config``; keys ``iterations``, ``lam``, ``sigma_start``, ``sigma_scale``, ``self_ensemble``, ``algorithm``;
``--denoiser`` a JSON object of ``default_denoiser`` settings, default the benchmark's; ``--kind unet`` for the U-Net
denoiser, whose settings must then be given).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import torch

from inverse import DEBLUR, DENOISER, PNP  # benchmarks/ is on sys.path
from mlimaging.inverse.base import GaussianNoise
from mlimaging.inverse.learned import SelfEnsemble, default_denoiser, pnp
from mlimaging.inverse.operators import Blur, gaussian_kernel
from mlimaging.inverse.solvers import tv_reconstruct


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return (a[..., :3] @ np.array([0.2125, 0.7154, 0.0721]) if a.ndim == 3 else a) / 255.0


def _crop(a: np.ndarray, n: int) -> np.ndarray:
    h, w = a.shape
    nh, nw = min(h, n), min(w, n)
    i, j = (h - nh) // 2, (w - nw) // 2
    return a[i:i + nh, j:j + nw]


def validation_images(n: int) -> dict[str, torch.Tensor]:
    """flower, china, grace_hopper, retina: grey (1, 1, H, W) float32 in [0, 1], centre crops of at most n."""
    import matplotlib.cbook as cbook
    import matplotlib.image as mpimg
    from skimage import data, transform
    from sklearn.datasets import load_sample_images

    d = load_sample_images()
    out = {f.rsplit("/", 1)[-1].split(".")[0]: _grey(im) for f, im in zip(d.filenames, d.images, strict=True)}
    out["grace_hopper"] = _grey(mpimg.imread(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    out["retina"] = transform.rescale(_grey(data.retina()), 0.5, anti_aliasing=True)
    return {k: torch.from_numpy(_crop(v, n).astype(np.float32))[None, None] for k, v in sorted(out.items())}


def _psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    return 10.0 * math.log10(1.0 / float(torch.mean((x.double() - ref.double()) ** 2)))


def _problem(x: torch.Tensor) -> tuple[Blur, torch.Tensor]:
    op = Blur(gaussian_kernel(DEBLUR["sigma_blur"]), padding="circular", noise=GaussianNoise(DEBLUR["noise"], seed=0))
    return op, op(x)


def pnp_psnr(x: torch.Tensor, den: torch.nn.Module, cfg: dict[str, Any]) -> float:
    op, y = _problem(x)
    n = DEBLUR["noise"]
    sig = [float(v) for v in np.geomspace(cfg["sigma_start"], n, cfg["iterations"])]
    etas = [v * v / (cfg["lam"] * n * n) for v in sig]
    d = SelfEnsemble(den, transforms=cfg["self_ensemble"]) if cfg["self_ensemble"] else den
    rec = pnp(y, op, denoiser=d, algorithm=cfg["algorithm"], iterations=cfg["iterations"],
              sigma=[cfg["sigma_scale"] * v for v in sig], step=etas)
    return _psnr(rec.x, x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="crop side (default 512)")
    parser.add_argument("--config", action="append", default=None, help="JSON overrides of the benchmark's PNP")
    parser.add_argument("--denoiser", default=None, help="JSON default_denoiser settings (default the benchmark's)")
    parser.add_argument("--kind", default="dncnn", choices=("dncnn", "unet"), help="default_denoiser's kind")
    args = parser.parse_args()
    if args.kind != "dncnn" and not args.denoiser:
        parser.error("--kind unet needs --denoiser settings")
    torch.set_num_threads(1)
    ims = validation_images(args.size)
    den = default_denoiser(args.kind, **(json.loads(args.denoiser) if args.denoiser else DENOISER))
    tv = {k: _psnr(tv_reconstruct(*_problem(x)[::-1], lam=DEBLUR["lam"], iterations=DEBLUR["iterations"],
                                  algorithm="fista", inner_iterations=DEBLUR["inner_iterations"]).x, x)
          for k, x in ims.items()}
    print("TV dB:", {k: round(v, 2) for k, v in tv.items()}, flush=True)
    for over in args.config or ["{}"]:
        cfg = {**PNP, **json.loads(over)}
        t0 = time.process_time()
        gain = {k: pnp_psnr(x, den, cfg) - tv[k] for k, x in ims.items()}
        print(over, {k: round(v, 3) for k, v in gain.items()}, f"mean {np.mean(list(gain.values())):+.3f} dB",
              f"({time.process_time() - t0:.0f} CPU s)", flush=True)


if __name__ == "__main__":
    main()

r"""Experiment ``inverse``: classical and learned reconstruction of :math:`y = Ax + n` on six problems.

Methods from :mod:`mlimaging.inverse`; every learned model trains through :func:`mlimaging.training.fit`.

1. **Problems** (images in [0, 1], ``size`` pixels): Shepp–Logan, ``camera`` and a phantom slice
   (:func:`mlimaging.data.make_phantom`) under deblurring (Gaussian :math:`\sigma = 1.5` px), ×2
   downsampling (bicubic), inpainting (a random 50 % mask and a text mask drawn with matplotlib), MRI at 4×
   (:func:`~mlimaging.inverse.cartesian_mask`) and sparse-view CT (60 views), with Gaussian noise of
   ``noise`` (CT: ``noise`` times the sinogram's peak).
2. **Table and grid**: PSNR, SSIM (:mod:`mlimaging.metrics`) and CPU seconds per solver: the baseline
   (:math:`A^\top y/\|A\|^2`, zero filling, FBP), least squares (CGLS), Tikhonov (gradient regulariser), TV
   (PDHG, Chambolle & Pock 2011; CT: FISTA, Beck & Teboulle 2009), wavelet sparsity (FISTA), plug-and-play
   half-quadratic splitting with a noise-conditional DnCNN and DPIR's decreasing noise schedule
   (Venkatakrishnan et al. 2013; Zhang et al. 2017, 2021), that PnP unfolded and fine-tuned end to end (Adler &
   Öktem 2018; Zhang et al. 2020), CSGM with a DCGAN trained on phantom slices (Bora et al. 2017) and the deep
   image prior (Ulyanov
   et al. 2018). :math:`\lambda` is the best of a small grid per case (scaled by :math:`\|A\|^2`), chosen
   against the truth: an oracle, as in the papers' tables.
3. :math:`\lambda` **sweeps**: PSNR against :math:`\lambda` for Tikhonov, TV and wavelets, with the TV images
   at a small, the best and a large :math:`\lambda` (noise against over-smoothing).
4. **Convergence**: objective and PSNR per iteration (TV: PDHG and FISTA; wavelets: ISTA and FISTA; CGLS's
   semi-convergence; PnP; the unrolled network's steps).
5. **Deep image prior**: PSNR over iterations, the ES-WMV variance and the iteration the rule picks.

Every number depends only on ``seed`` (timings aside).

References
----------
Chambolle A., Pock T. (2011). A first-order primal-dual algorithm for convex problems with applications to
imaging. JMIV 40. doi:10.1007/s10851-010-0251-1.

Beck A., Teboulle M. (2009). A fast iterative shrinkage-thresholding algorithm for linear inverse problems.
SIAM J. Imaging Sci. 2(1). doi:10.1137/080716542.

Zhang K., Li Y., Zuo W., Zhang L., Van Gool L., Timofte R. (2021). Plug-and-play image restoration with deep
denoiser prior (DPIR). IEEE TPAMI 44(10). arXiv:2008.13751.

Venkatakrishnan S. V., Bouman C. A., Wohlberg B. (2013). Plug-and-play priors for model based
reconstruction. IEEE GlobalSIP. doi:10.1109/GlobalSIP.2013.6737048.

Adler J., Öktem O. (2018). Learned primal-dual reconstruction. IEEE TMI 37(6). arXiv:1707.06474.

Bora A., Jalal A., Price E., Dimakis A. G. (2017). Compressed sensing using generative models. ICML.
arXiv:1703.03208.

Ulyanov D., Vedaldi A., Lempitsky V. (2018). Deep image prior. CVPR. arXiv:1711.10925.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("inverse", quick=True, seed=0, out="runs/inverse")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlimaging.experiments._inverse_figures import (
    _convergence,
    _dip_figure,
    _grid_figure,
    _problems_figure,
    _show,
    _sweep,
)
from mlimaging.experiments._inverse_solve import (
    LAMBDA,
    PNP,
    SOLVERS,
    TV_ALGORITHM,
    TV_STEP_RATIO,
    UNROLLED_INIT,
    _classical,
    _pnp_schedule,
    _solve_case,
    _sweep_case,
    _timed,
    _unrolled_init,
)
from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.inverse.base import Operator
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

__all__ = [
    "FULL",
    "IMAGES",
    "LAMBDA",
    "PNP",
    "PROBLEMS",
    "QUICK",
    "SOLVERS",
    "TV_ALGORITHM",
    "TV_STEP_RATIO",
    "UNROLLED_INIT",
    "InverseConfig",
    "text_mask",
]

IMAGES = ("shepp-logan", "camera", "phantom")
PROBLEMS = ("deblur", "sr-x2", "inpaint-random", "inpaint-text", "mri-4x", "ct-60")

#: Quick mode (about 15 CPU s): 64 px, two images, three problems, short runs; PnP with a tiny noise-conditional
#: DnCNN trained here in a few seconds (not the cached default); the unrolled network and DIP on one case; no CSGM.
QUICK: dict[str, Any] = {
    "size": 64,
    "images": ("shepp-logan", "camera"),
    "problems": ("deblur", "inpaint-text", "mri-4x"),
    "iterations": 40,
    "ls_iterations": 20,
    "lam_grid": (1.0,),
    "sweep_points": 5,
    "pnp_iterations": 8,
    "denoiser": "tiny",
    "unrolled_problems": ("deblur",),
    "unrolled_iterations": 3,
    "unrolled_samples": 48,
    "unrolled_epochs": 1,
    "unrolled_features": 8,
    "csgm": False,
    "gan_images": 0,
    "gan_epochs": 0,
    "csgm_steps": 0,
    "csgm_images": (),
    "dip_images": ("camera",),
    "dip_problems": ("deblur",),
    "dip_steps": 80,
    "dip_channels": (16, 32, 32),
}
#: Full mode: 96 px, every image and problem; the cached default (noise-conditional) DnCNN, trained once; PnP-HQS
#: with 8 iterations and, per problem, that PnP unfolded (8 steps) and fine-tuned; a DCGAN on 1,000 phantom slices
#: for CSGM; DIP on camera for three problems.
FULL: dict[str, Any] = {
    "size": 96,
    "images": IMAGES,
    "problems": PROBLEMS,
    "iterations": 100,
    "ls_iterations": 40,
    "lam_grid": (0.15, 0.4, 1.0, 2.5),
    "sweep_points": 9,
    "pnp_iterations": 8,
    "denoiser": "default",
    "unrolled_problems": PROBLEMS,
    "unrolled_iterations": 8,
    "unrolled_samples": 64,
    "unrolled_epochs": 1,
    "unrolled_features": 16,
    "csgm": True,
    "gan_images": 1000,
    "gan_epochs": 16,
    "csgm_steps": 200,
    "csgm_images": ("phantom",),
    "dip_images": ("camera",),
    "dip_problems": ("deblur", "inpaint-text", "mri-4x"),
    "dip_steps": 500,
    "dip_channels": (32, 64, 64),
}

GAN_SIZE = 64  # the DCGAN's native side; its samples are resized to ``size``


@dataclass
class InverseConfig(ExperimentConfig):
    """Settings of the ``inverse`` experiment; ``None`` takes the quick/full value (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    size
        Side of the square test images (even, a multiple of 8).
    images, problems
        Subsets of :data:`IMAGES` and :data:`PROBLEMS`.
    noise
        Gaussian noise level (images in [0, 1]; CT: times the sinogram peak).
    iterations, ls_iterations, pnp_iterations
        Iterations of TV and wavelets, of CGLS, of PnP.
    lam_grid
        Factors of :data:`LAMBDA` tried per case (the best PSNR is kept).
    sweep_points
        Values of :math:`\\lambda` in each sweep (0: no sweep).
    denoiser
        ``"default"`` (:func:`~mlimaging.inverse.default_denoiser`, cached), ``"tiny"`` (a small DnCNN trained
        here in seconds) or ``"none"`` (no PnP).
    unrolled_problems, unrolled_iterations, unrolled_samples, unrolled_epochs, unrolled_features
        Problems with an unrolled network, its steps, training patches, epochs and width.
    csgm, gan_images, gan_epochs, csgm_steps, csgm_images
        Whether CSGM runs, the DCGAN's phantom slices and epochs, Adam steps on z, images it is run on.
    dip_images, dip_problems, dip_steps, dip_channels
        Cases of the deep image prior, its maximum steps and its channels per scale.
    """

    size: int | None = None
    images: tuple[str, ...] | None = None
    problems: tuple[str, ...] | None = None
    noise: float = 0.01
    iterations: int | None = None
    ls_iterations: int | None = None
    lam_grid: tuple[float, ...] | None = None
    sweep_points: int | None = None
    pnp_iterations: int | None = None
    denoiser: str | None = None
    unrolled_problems: tuple[str, ...] | None = None
    unrolled_iterations: int | None = None
    unrolled_samples: int | None = None
    unrolled_epochs: int | None = None
    unrolled_features: int | None = None
    csgm: bool | None = None
    gan_images: int | None = None
    gan_epochs: int | None = None
    csgm_steps: int | None = None
    csgm_images: tuple[str, ...] | None = None
    dip_images: tuple[str, ...] | None = None
    dip_problems: tuple[str, ...] | None = None
    dip_steps: int | None = None
    dip_channels: tuple[int, ...] | None = None


def _resolve(cfg: InverseConfig) -> dict[str, Any]:
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    p["noise"] = cfg.noise
    if (
        isinstance(p["size"], bool)
        or not isinstance(p["size"], int)
        or p["size"] < 32
        or p["size"] % 8
    ):
        raise ValueError(f"size must be an int >= 32 and a multiple of 8, got {p['size']!r}")
    for key, valid in (
        ("images", IMAGES),
        ("problems", PROBLEMS),
        ("unrolled_problems", PROBLEMS),
        ("csgm_images", IMAGES),
        ("dip_images", IMAGES),
        ("dip_problems", PROBLEMS),
    ):
        p[key] = tuple(p[key])
        bad = [v for v in p[key] if v not in valid]
        if bad or (key in ("images", "problems") and not p[key]):
            raise ValueError(
                f"{key} must be a non-empty subset of {valid}, got {p[key]!r}"
                if key in ("images", "problems")
                else f"{key} must be a subset of {valid}, got {p[key]!r}"
            )
    for key in (
        "iterations",
        "ls_iterations",
        "pnp_iterations",
        "unrolled_iterations",
        "unrolled_samples",
        "unrolled_epochs",
        "unrolled_features",
        "dip_steps",
    ):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    for key in ("sweep_points", "gan_images", "gan_epochs", "csgm_steps"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 0:
            raise ValueError(f"{key} must be an integer >= 0, got {p[key]!r}")
    if not p["lam_grid"] or any(not (isinstance(v, (int, float)) and v > 0) for v in p["lam_grid"]):
        raise ValueError(
            f"lam_grid must be a non-empty tuple of positive numbers, got {p['lam_grid']!r}"
        )
    if not p["dip_channels"] or any(
        isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in p["dip_channels"]
    ):
        raise ValueError(
            f"dip_channels must be a non-empty tuple of positive ints, got {p['dip_channels']!r}"
        )
    p["dip_channels"] = tuple(p["dip_channels"])
    if p["denoiser"] not in ("default", "tiny", "none"):
        raise ValueError(f"denoiser must be 'default', 'tiny' or 'none', got {p['denoiser']!r}")
    if not (isinstance(cfg.noise, (int, float)) and 0 < cfg.noise < 1):
        raise ValueError(f"noise must be in (0, 1), got {cfg.noise!r}")
    if p["csgm"] and (p["gan_images"] < 64 or p["gan_epochs"] < 1 or p["csgm_steps"] < 1):
        raise ValueError("csgm needs gan_images >= 64, gan_epochs >= 1 and csgm_steps >= 1")
    return p


# ------------------------------------------------------------------------------------ data and operators
def text_mask(
    size: int, text: str = "INVERSE\nPROBLEMS\nIN IMAGING", *, fontsize: float = 13.0
) -> np.ndarray:
    """A 0/1 inpainting mask of ``size`` x ``size`` that hides the pixels under ``text`` (drawn by matplotlib).

    The text is rendered with matplotlib's Agg canvas on a one-inch figure at ``size`` dots per inch (so
    ``fontsize`` is in points of that inch: 72 points span the image); nothing is downloaded.

    Examples
    --------
    >>> m = text_mask(64)
    >>> m.shape, m.dtype, 0.6 < float(m.mean()) < 0.95
    ((64, 64), dtype('float32'), True)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1), dpi=size)
    canvas = FigureCanvasAgg(fig)
    fig.text(
        0.5,
        0.5,
        text,
        ha="center",
        va="center",
        fontsize=fontsize,
        fontweight="bold",
        linespacing=1.1,
        rotation=12,
        color="black",
    )
    canvas.draw()
    ink = np.asarray(canvas.buffer_rgba())[..., :3].astype(np.float32).mean(-1) < 160
    return (~ink).astype(np.float32)


def _load_image(name: str, size: int, seed: int) -> torch.Tensor:
    from skimage import data, transform

    if name == "phantom":
        from mlimaging.data import make_phantom

        img, _ = make_phantom((size, size), seed=seed, n_structures=8, variability=0.5)
    else:
        raw = data.shepp_logan_phantom() if name == "shepp-logan" else data.camera() / 255.0
        img = transform.resize(raw, (size, size), anti_aliasing=True)
    return torch.tensor(np.clip(img, 0, 1), dtype=torch.float32)[None, None]


class _RealImage(Operator):
    """A real one-channel image in the MRI operator's two-channel complex layout: :math:`x \\mapsto (x, 0)`."""

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return torch.cat((x, torch.zeros_like(x)), dim=1)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return y[:, :1]


def _operator(problem: str, size: int, seed: int) -> Operator:
    from mlimaging.inverse import (
        CT,
        MRI,
        Blur,
        Downsample,
        Inpainting,
        cartesian_mask,
        gaussian_kernel,
    )

    if problem == "deblur":
        return Blur(gaussian_kernel(1.5))
    if problem == "sr-x2":
        return Downsample(2, filter="bicubic")
    if problem == "inpaint-random":
        g = torch.Generator().manual_seed(seed + 17)
        return Inpainting((torch.rand(size, size, generator=g) < 0.5).float())
    if problem == "inpaint-text":
        return Inpainting(text_mask(size))
    if problem == "mri-4x":
        return MRI(cartesian_mask((size, size), 4, 0.08, seed=seed)) @ _RealImage()
    return CT(np.linspace(0.0, 180.0, 60, endpoint=False), image_size=size)


def _measure(
    op: Operator, problem: str, x: torch.Tensor, noise: float, seed: int
) -> tuple[torch.Tensor, float]:
    """y = A x + sigma n (MRI: masked again); returns y and the absolute sigma."""
    ax = op.A(x)
    sigma = noise * float(ax.abs().max()) if problem == "ct-60" else noise
    g = torch.Generator().manual_seed(seed + 1000)
    y = ax + sigma * torch.randn(ax.shape, generator=g, dtype=ax.dtype)
    if problem == "mri-4x":
        y = y * op.outer.mask
    return y, sigma


# ------------------------------------------------------------------------------------ learned parts
def _tiny_denoiser(seed: int) -> tuple[nn.Module, dict[str, Any]]:
    from mlimaging.inverse import DnCNN, train_denoiser

    t0 = time.process_time()
    net, hist = train_denoiser(
        DnCNN(depth=4, features=16, norm="none", sigma_input=True, seed=seed),
        patch_size=32,
        patches=768,
        epochs=2,
        sigma=(0.0, 0.2),
        lr=2e-3,
        val_patches=0,
        seed=seed,
    )
    return net, {
        "denoiser": "noise-conditional DnCNN depth 4, 16 features, no batch norm, 768 patches x 2 epochs "
        "(quick)",
        "cpu_seconds": time.process_time() - t0,
        "final_loss": hist["loss"][-1],
    }


def _default_denoiser() -> tuple[nn.Module, dict[str, Any]]:
    from mlimaging.inverse import default_denoiser

    t0 = time.process_time()
    net = default_denoiser("dncnn")
    meta = dict(getattr(net, "meta", {}))
    return net, {
        "denoiser": f"default DnCNN {meta.get('settings', '')}",
        "cpu_seconds": time.process_time() - t0,
        "training_cpu_seconds": meta.get("cpu_seconds"),
        "val_mse": meta.get("val_mse"),
    }


def _phantom_gan(p: dict[str, Any], seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """A DCGAN (width 16, z of 64) trained on ``gan_images`` 64-px phantom slices (seeds held apart from the test)."""
    from torch.utils.data import TensorDataset

    from mlimaging.data import make_phantom
    from mlimaging.generative.gan import DCGANDiscriminator, DCGANGenerator, GANStep
    from mlimaging.training import fit

    t0 = time.process_time()
    x = torch.stack(
        [
            torch.from_numpy(
                make_phantom(
                    (GAN_SIZE, GAN_SIZE), seed=10_000 + seed + i, n_structures=8, variability=0.5
                )[0]
            ).clamp(0, 1)[None]
            for i in range(p["gan_images"])
        ]
    )
    torch.manual_seed(seed)
    G = DCGANGenerator(latent_dim=64, image_size=GAN_SIZE, width=16)
    D = DCGANDiscriminator(image_size=GAN_SIZE, width=16)
    adam = lambda ps: torch.optim.Adam(ps, lr=2e-4, betas=(0.5, 0.999))  # noqa: E731
    # no EMA generator: GANStep's average starts at the first step's weights and, with decay 0.99 over only
    # gan_images / 64 x gan_epochs = 128 steps, keeps 0.99^128 = 28 % of them: its samples are flat grey (pixel
    # std 0.02 against the phantoms' 0.3), and CSGM with it gave 11 dB on every problem.
    step = GANStep(D, loss="non_saturating", d_optimizer=adam, seed=seed)
    hist = fit(
        G,
        TensorDataset(x),
        step=step,
        optimizer=adam,
        epochs=p["gan_epochs"],
        metrics=(),
        batch_size=64,
        seed=seed,
        progress=False,
    )
    return G.eval(), {
        "gan_images": p["gan_images"],
        "epochs": p["gan_epochs"],
        "cpu_seconds": time.process_time() - t0,
        "g_loss": hist["g_loss"][-1],
        "d_loss": hist["d_loss"][-1],
    }


class _Resized(nn.Module):
    """The generator's samples resized (bilinear) to ``size`` x ``size``."""

    def __init__(self, generator: nn.Module, size: int) -> None:
        super().__init__()
        self.generator, self.size, self.latent_dim = generator, size, generator.latent_dim

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.generator(z)
        if x.shape[-1] == self.size:
            return x
        return nn.functional.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False
        )


def _train_learned(
    p: dict[str, Any], seed: int, run: Run, cases: dict[tuple[str, str], dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from mlimaging.inverse import train_unrolled

    learned: dict[str, Any] = {"unrolled": {}}
    cost: list[dict[str, Any]] = []
    if p["denoiser"] != "none":
        learned["denoiser"], info = (
            _tiny_denoiser(seed) if p["denoiser"] == "tiny" else _default_denoiser()
        )
        cost.append(
            {"model": "PnP denoiser", "detail": info["denoiser"], "cpu_s": info["cpu_seconds"]}
        )
    size = p["size"]
    den = learned.get("denoiser")
    for problem in run.track(
        [q for q in p["problems"] if q in p["unrolled_problems"]], "unrolled training"
    ):
        op = next(c["op"] for (_, q), c in cases.items() if q == problem)
        sigma_n = cases[(p["images"][0], problem)]["sigma"]
        # with a denoiser: PnP-HQS unfolded (its schedule; exact HQS data step only for the circular blur, else a
        # gradient step of 1/||A||^2, learned), else small CNN proxes from Landweber
        sigmas, etas = _pnp_schedule(p["unrolled_iterations"], p["noise"], sigma_n)
        kw = (
            {
                "denoiser": den,
                "sigma": sigmas,
                "step": etas if problem == "deblur" or problem in UNROLLED_INIT else None,
                "lr": 5e-4,
            }
            if den is not None
            else {"features": p["unrolled_features"], "depth": 3, "lr": 2e-3}
        )
        if den is not None and problem in UNROLLED_INIT:
            kw.update(_unrolled_init(problem, op))
        (net, hist), cpu = _timed(
            lambda op=op, sigma_n=sigma_n, kw=kw: train_unrolled(
                op,
                iterations=p["unrolled_iterations"],
                patch_size=size,
                samples=p["unrolled_samples"],
                noise=sigma_n,
                epochs=p["unrolled_epochs"],
                batch_size=8,
                val_samples=0,
                seed=seed,
                **kw,
            )
        )
        learned["unrolled"][problem] = net
        cost.append(
            {
                "model": f"unrolled ({problem})",
                "detail": f"{p['unrolled_iterations']} steps"
                f"{' (unfolded PnP-HQS)' if den is not None else ''}, {p['unrolled_samples']} patches x "
                f"{p['unrolled_epochs']} epochs, final MSE {hist['loss'][-1]:.2e}",
                "cpu_s": cpu,
            }
        )
    if p["csgm"] and p["csgm_images"]:
        gen, info = _phantom_gan(p, seed)
        learned["generator"] = _Resized(gen, size)
        learned["gan"] = gen
        cost.append(
            {
                "model": "CSGM generator",
                "detail": f"DCGAN width 16 on {info['gan_images']} phantom slices "
                f"x {info['epochs']} epochs (g {info['g_loss']:.2f}, d {info['d_loss']:.2f})",
                "cpu_s": info["cpu_seconds"],
            }
        )
    return learned, cost


def _pivot(
    p: dict[str, Any], cases: dict[tuple[str, str], dict[str, Any]], key: str, fmt: int
) -> list[dict[str, Any]]:
    rows = []
    for image in p["images"]:
        for problem in p["problems"]:
            res = cases[(image, problem)]["results"]
            row: dict[str, Any] = {
                "image": image,
                "problem": problem,
                "baseline": round(res["baseline"][key], fmt),
            }
            for s in SOLVERS:
                row[s] = round(res[s][key], fmt) if s in res else None
            rows.append(row)
    return rows


def _skipped_solvers(p: dict[str, Any]) -> list[str]:
    notes = []
    if p["denoiser"] == "tiny":
        notes.append(
            "PnP uses a tiny DnCNN trained here in a few seconds (quick mode; the cached default DnCNN "
            "takes about 20 CPU minutes to train once), so its numbers are not representative."
        )
    if p["denoiser"] == "none":
        notes.append("PnP was not run (denoiser='none').")
    if not (p["csgm"] and p["csgm_images"]):
        notes.append(
            "CSGM was not run: it needs a generator of the image class (full mode trains a DCGAN on "
            "phantom slices for a few minutes, beyond the quick budget)."
        )
    else:
        notes.append(
            f"CSGM runs on {', '.join(p['csgm_images'])} only: its DCGAN was trained on phantom slices, and "
            "a GAN prior can only return images in its generator's range."
        )
    notes.append(
        f"DIP runs on {', '.join(p['dip_images'])} for {', '.join(p['dip_problems'])} (about "
        f"{p['dip_steps']} Adam steps each); the unrolled network is trained for "
        f"{', '.join(q for q in p['problems'] if q in p['unrolled_problems']) or 'no problem'}."
    )
    return notes


# ------------------------------------------------------------------------------------ experiment
@experiment("inverse", config=InverseConfig)
def inverse_experiment(cfg: InverseConfig, run: Run) -> None:
    """Deblurring, x2 SR, inpainting, MRI and CT by LS, Tikhonov, TV, wavelets, PnP, unrolled, CSGM and DIP."""
    p = _resolve(cfg)
    run.log(settings=p, torch_threads=torch.get_num_threads())
    cpu: dict[str, float] = {}
    c0 = time.process_time()

    def lap(name: str) -> None:
        nonlocal c0
        cpu[name], c0 = time.process_time() - c0, time.process_time()
        run.log(section_cpu_seconds=cpu)

    cases: dict[tuple[str, str], dict[str, Any]] = {}
    ops = {q: _operator(q, p["size"], cfg.seed) for q in p["problems"]}
    for image in p["images"]:
        truth = _load_image(image, p["size"], cfg.seed)
        for problem in p["problems"]:
            y, sigma = _measure(ops[problem], problem, truth, p["noise"], cfg.seed)
            cases[(image, problem)] = {
                "image": image,
                "problem": problem,
                "truth": truth,
                "op": ops[problem],
                "y": y,
                "sigma": sigma,
            }
    lap("data")
    learned, cost = _train_learned(p, cfg.seed, run, cases)
    lap("training")
    run.section(
        "1. Problems and solvers",
        f"{len(p['images'])} images of {p['size']} px x {len(p['problems'])} "
        f"problems, Gaussian noise {p['noise']:g} (CT: {p['noise']:g} x the sinogram peak). "
        f"Solvers: LS = CGLS ({p['ls_iterations']} it.), Tikhonov (gradient regulariser), TV (PDHG, "
        f"{p['iterations']} it.; CT: FISTA), wavelet (db4, 3 levels, FISTA, {p['iterations']} it.), PnP (HQS with a "
        f"noise-conditional DnCNN, DPIR's schedule sigma {PNP['sigma_start']:g} -> {PNP['sigma_end']:g} x noise, "
        f"{p['pnp_iterations']} it.; inpainting starts from Tikhonov), unrolled (that PnP unfolded, "
        f"{p['unrolled_iterations']} steps, fine-tuned per problem on patches of other images; CT, inpainting "
        "and MRI start from FBP, a Tikhonov fill and zero filling, with HQS data steps by CG), CSGM "
        "(Adam on z, 4 restarts), DIP (ES-WMV stop). Lambda: best of "
        f"{len(p['lam_grid'])} value(s) per case against the truth (oracle).\n\n"
        + " ".join(_skipped_solvers(p)),
    )
    rows = []
    for key in run.track(list(cases), "reconstruction"):
        c = cases[key]
        c["results"] = _solve_case(
            p, c["image"], c["problem"], c["truth"], c["op"], c["y"], learned, cfg.seed, c["sigma"]
        )
        rows += [
            {
                "image": key[0],
                "problem": key[1],
                "solver": s,
                "psnr": r["psnr"],
                "ssim": r["ssim"],
                "cpu_s": r["cpu_s"],
                "lam": r.get("lam"),
            }
            for s, r in c["results"].items()
        ]
        run.log(results=rows)  # kept if a later case fails
    lap("reconstruction")
    _problems_figure(run, p, cases)
    run.table(
        "PSNR (dB)",
        _pivot(p, cases, "psnr", 2),
        caption="Baseline: A^T y / ||A||^2 (deblur, SR, "
        "inpainting), zero filling (MRI), FBP with the ramp filter (CT). Empty: not run on this case.",
    )
    run.table("SSIM", _pivot(p, cases, "ssim", 3))
    times = []
    for problem in p["problems"]:
        row: dict[str, Any] = {"problem": problem}
        for s in ("baseline", *SOLVERS):
            v = [
                cases[(i, problem)]["results"][s]["cpu_s"]
                for i in p["images"]
                if s in cases[(i, problem)]["results"]
            ]
            row[s] = round(float(np.mean(v)), 3) if v else None
        times.append(row)
    run.table(
        "CPU seconds per solve",
        times,
        caption=f"Mean over images, {torch.get_num_threads()} torch "
        "thread(s); Tikhonov, TV and wavelet: the chosen lambda's solve; unrolled: inference only.",
    )
    run.table(
        "Training cost",
        cost,
        caption="CPU seconds (the default denoiser is loaded from its cache when "
        "present: then only the loading is counted).",
    )
    for image in p["images"]:
        _grid_figure(run, p, image, cases)
    lap("tables and grids")

    first = ("camera", "deblur") if ("camera", "deblur") in cases else next(iter(cases))
    if p["sweep_points"]:
        run.section("2. Lambda sweeps")
        picks = [first] + [
            k for k in (("shepp-logan", "mri-4x"), ("shepp-logan", "ct-60")) if k in cases
        ][:1]
        picks = picks if not cfg.quick else picks[:1]
        _sweep(run, p, [(k[0], k[1], _sweep_case(p, cases[k])) for k in picks])
        lap("lambda sweeps")

    run.section("3. Convergence")
    c, res = cases[first], cases[first]["results"]
    norm = float(c["op"].norm(c["op"].A_adjoint(c["y"])))
    conv = {}
    for name, solver, alg in (
        ("TV PDHG", "TV", "pdhg"),
        ("TV FISTA", "TV", "fista"),
        ("wavelet ISTA", "wavelet", "ista"),
        ("wavelet FISTA", "wavelet", "fista"),
    ):
        args = (solver, c["problem"], c["y"], c["op"], c["truth"], res[solver]["lam"], p, norm)
        rec = _classical(*args, algorithm=alg)
        conv[name] = {"objective": rec.objective, "psnr": rec.psnr}
        if alg == "fista":  # F*: FISTA run three times longer
            ref = _classical(*args, algorithm=alg, iterations=3 * p["iterations"])
            conv[f"{solver} reference"] = {"objective": ref.objective}
    from mlimaging.inverse import least_squares

    ls = least_squares(
        c["y"],
        c["op"],
        iterations=3 * p["ls_iterations"],
        tol=0.0,
        x_true=c["truth"],
        data_range=1.0,
    )
    conv["LS long"] = {"psnr": ls.psnr}
    _convergence(run, first[0], first[1], conv, res)
    run.log(convergence={k: {kk: vv[-1] for kk, vv in v.items() if vv} for k, v in conv.items()})
    lap("convergence")

    dip = [(k, cases[k]["results"]["DIP"]) for k in cases if "DIP" in cases[k]["results"]]
    if dip:
        run.section("4. Deep image prior")
        (image, problem), d = next(((k, d) for k, d in dip if d["history"]["curve"]), dip[0])
        _dip_figure(run, image, problem, d, cases[(image, problem)]["results"]["TV"]["psnr"])
        h = d["history"]
        run.log(
            dip={
                "case": f"{image}/{problem}",
                "peak_psnr": max(h["psnr"]),
                "peak_iteration": int(np.argmax(h["psnr"])) + 1,
                "stop_iteration": h["stop"],
                "stop_psnr": h["psnr"][h["stop"] - 1],
                "last_psnr": h["psnr"][-1],
            }
        )
    if "gan" in learned:
        z = torch.randn(
            8, learned["gan"].latent_dim, generator=torch.Generator().manual_seed(cfg.seed)
        )
        with torch.no_grad():
            samples = learned["gan"](z)
        fig, axes = plt.subplots(1, 9, figsize=(11, 1.6))
        _show(axes[0], cases[("phantom", p["problems"][0])]["truth"], "test phantom", 7)
        for ax, s in zip(axes[1:], samples, strict=True):
            _show(ax, s, "G(z)", 7)
        fig.tight_layout()
        run.figure(
            fig,
            "csgm-generator",
            caption="CSGM's prior: samples of the DCGAN trained on phantom slices (64 px) "
            "beside the held-out test phantom.",
        )
    lap("figures")

"""Experiment ``inverse``, its solving part: lambda scales, per-problem solver settings and one case's solves."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from mlimaging.inverse.base import Operator

SOLVERS = ("LS", "Tikhonov", "TV", "wavelet", "PnP", "unrolled", "CSGM", "DIP")

#: Regularisation weight at grid factor 1, per problem, times ||A||^2 (TV and wavelets minimise
#: 1/2 ||Ax - y||^2 + lam R(x); Tikhonov ||Ax - y||^2 + lam ||grad x||^2). CT's ||A||^2 is about 5,600 at 96 px
#: (60 views) and its noise is 1 % of the sinogram peak: its best TV lambda is about 1 in absolute units
#: (as in benchmarks/inverse.py, 128 px: lam 1), so 1.8e-4 x ||A||^2 here.
LAMBDA = {
    "TV": {
        "deblur": 0.006,
        "sr-x2": 0.008,
        "inpaint-random": 0.015,
        "inpaint-text": 0.01,
        "mri-4x": 0.01,
        "ct-60": 1.8e-4,
    },
    "wavelet": {
        "deblur": 0.006,
        "sr-x2": 0.008,
        "inpaint-random": 0.02,
        "inpaint-text": 0.015,
        "mri-4x": 0.01,
        "ct-60": 1.8e-4,
    },
    "Tikhonov": {
        "deblur": 0.02,
        "sr-x2": 0.02,
        "inpaint-random": 0.05,
        "inpaint-text": 0.05,
        "mri-4x": 0.05,
        "ct-60": 2e-4,
    },
}
#: TV's algorithm per problem (default PDHG). CT: FISTA, because PDHG's one pair of steps for K = (A, grad)
#: cannot suit both ||A|| ~ 75 and ||grad|| <= 2 sqrt 2: in 100 iterations its TV dual barely moves (26 dB, below
#: FBP), while FISTA (step 1/||A||^2, TV prox by FGP) reaches 34 dB.
TV_ALGORITHM = {"ct-60": "fista"}
#: PDHG's step ratio r = sqrt(tau / sigma) per problem (default 3). The text mask's holes are filled by TV's
#: diffusion, which needs long primal steps: r = 10 gives camera 96 px 28.3 dB in 40 iterations (r = 3: 18.1 dB).
TV_STEP_RATIO = {"inpaint-text": 10.0}
#: Plug-and-play: half-quadratic splitting with DPIR's schedule (Zhang et al. 2021): sigma_k geometric from
#: PNP["sigma_start"] to PNP["sigma_end"] x the noise, eta_k = sigma_k^2 / (PNP["lam"] sigma_n^2).
PNP = {"sigma_start": 0.2, "sigma_end": 2.0, "lam": 0.23, "cg_iterations": 20}


def _baseline(
    op: Operator, problem: str, y: torch.Tensor, lipschitz: float
) -> tuple[str, torch.Tensor]:
    if problem == "ct-60":
        return "FBP", op.fbp(y, filter="ramp")
    if problem == "mri-4x":
        return "zero-filled", op.A_adjoint(y)
    return "A^T y / ||A||^2", op.A_adjoint(y) / lipschitz


#: Problems whose unfolded network starts from a classical reconstruction and takes HQS data steps by CG
#: (:class:`~mlimaging.inverse.UnrolledNet` ``init=``, ``data_step="hqs"``): 8 gradient steps from A^T y/||A||^2
#: cannot reach FBP on CT (15.6 dB against FBP's 27.2 at 96 px) nor fill the text mask's holes. Untrained, the
#: network is PnP-HQS from that start (phantom 96 px: CT 25.6 -> 28.3 dB, text inpainting 28.6 -> 28.7, MRI
#: 23.9 -> 26.6); fine-tuned on 64 patches of other images at lr 5e-4 it fell below its start (CT 25.4, text 27.1),
#: so these problems fine-tune with UNROLLED_LR only.
UNROLLED_INIT = ("inpaint-random", "inpaint-text", "mri-4x", "ct-60")
UNROLLED_LR = 2e-5


def _unrolled_init(problem: str, op: Operator) -> dict[str, Any]:
    """``init``/``data_step`` settings of the unfolded PnP: FBP (CT), a Tikhonov fill (inpainting), zero filling (MRI)."""
    if problem == "ct-60":
        return {
            "init": lambda y: op.fbp(y, filter="ramp"),
            "data_step": "hqs",
            "cg_iterations": 3,
            "lr": UNROLLED_LR,
        }
    if problem.startswith("inpaint"):
        from mlimaging.inverse import tikhonov

        lam = LAMBDA["Tikhonov"][problem]  # ||A||^2 = 1 for a mask

        def fill(y: torch.Tensor) -> torch.Tensor:
            return tikhonov(y, op, lam=lam, regulariser="gradient", iterations=50).x

        return {"init": fill, "data_step": "hqs", "cg_iterations": 2, "lr": UNROLLED_LR}
    # MRI of a real image: A^T A = Re(F* M F) has eigenvalues 0, 1/2 and 1 (mask and its mirror): 3 CG steps
    return {"init": "adjoint", "data_step": "hqs", "cg_iterations": 3, "lr": UNROLLED_LR}


# ------------------------------------------------------------------------------------ solving
def _scores(est: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    from mlimaging.metrics import psnr, ssim

    est = est.detach().float()
    return float(psnr(est, truth, data_range=1.0)[0]), float(ssim(est, truth, data_range=1.0)[0])


def _timed(fn: Any) -> tuple[Any, float]:
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def _classical(
    solver: str,
    problem: str,
    y: torch.Tensor,
    op: Operator,
    truth: torch.Tensor,
    lam: float,
    p: dict[str, Any],
    norm: float,
    *,
    iterations: int | None = None,
    algorithm: str | None = None,
) -> Any:
    from mlimaging.inverse import least_squares, tikhonov, tv_reconstruct, wavelet_reconstruct

    kw = {"x_true": truth, "data_range": 1.0}
    its = iterations or p["iterations"]
    if solver == "LS":
        return least_squares(y, op, iterations=iterations or p["ls_iterations"], **kw)
    if solver == "Tikhonov":
        return tikhonov(y, op, lam=lam, regulariser="gradient", iterations=50, **kw)
    if solver == "TV":
        alg = algorithm or TV_ALGORITHM.get(problem, "pdhg")
        if alg == "pdhg":
            kw["step_ratio"] = TV_STEP_RATIO.get(problem, 3.0)
        return tv_reconstruct(y, op, lam=lam, iterations=its, algorithm=alg, norm=norm, **kw)
    return wavelet_reconstruct(
        y,
        op,
        lam=lam,
        wavelet="db4",
        levels=3,
        iterations=its,
        algorithm=algorithm or "fista",
        norm=norm,
        **kw,
    )


def _pnp_schedule(iterations: int, noise: float, sigma_n: float) -> tuple[list[float], list[float]]:
    """DPIR's schedule: sigma_k geometric from PNP's start to ``sigma_end`` x ``noise``; eta_k = sigma_k^2/(lam sigma_n^2)."""
    sigmas = [
        float(v) for v in np.geomspace(PNP["sigma_start"], PNP["sigma_end"] * noise, iterations)
    ]
    return sigmas, [v * v / (PNP["lam"] * sigma_n * sigma_n) for v in sigmas]


def _solve_case(
    p: dict[str, Any],
    image: str,
    problem: str,
    truth: torch.Tensor,
    op: Operator,
    y: torch.Tensor,
    learned: dict[str, Any],
    seed: int,
    sigma_n: float,
) -> dict[str, dict[str, Any]]:
    """Every solver that applies to this case: {solver: {x, psnr, ssim, cpu_s, lam, history}}."""
    from mlimaging.inverse import csgm, deep_image_prior, pnp

    norm = float(op.norm(op.A_adjoint(y)))
    lipschitz = norm**2
    out: dict[str, dict[str, Any]] = {}
    (name, base), cpu = _timed(lambda: _baseline(op, problem, y, lipschitz))
    out["baseline"] = {"x": base, "cpu_s": cpu, "method": name}
    for solver in ("LS", "Tikhonov", "TV", "wavelet"):
        grid = (
            (None,)
            if solver == "LS"
            else tuple(LAMBDA[solver][problem] * f * lipschitz for f in p["lam_grid"])
        )
        best = None
        for lam in grid:
            rec, cpu = _timed(
                lambda lam=lam, solver=solver: _classical(
                    solver, problem, y, op, truth, lam or 0.0, p, norm
                )
            )
            score = _scores(rec.x, truth)
            if best is None or score[0] > best["psnr"]:
                best = {
                    "x": rec.x,
                    "psnr": score[0],
                    "ssim": score[1],
                    "cpu_s": cpu,
                    "lam": lam,
                    "history": {"objective": rec.objective, "psnr": rec.psnr},
                }
        out[solver] = best
    # PnP starts inpainting from the Tikhonov fill (from A^T y, whose holes are 0, a denoiser fills them slowly)
    x0 = out["Tikhonov"]["x"] if problem.startswith("inpaint") else None
    if learned.get("denoiser") is not None:
        sigmas, etas = _pnp_schedule(p["pnp_iterations"], p["noise"], sigma_n)
        rec, cpu = _timed(
            lambda: pnp(
                y,
                op,
                denoiser=learned["denoiser"],
                algorithm="hqs",
                iterations=p["pnp_iterations"],
                sigma=sigmas,
                step=etas,
                x0=x0,
                x_true=truth,
                data_range=1.0,
                cg_iterations=PNP["cg_iterations"],
            )
        )
        out["PnP"] = {"x": rec.x, "cpu_s": cpu, "history": {"psnr": rec.psnr}}
    net = learned.get("unrolled", {}).get(problem)
    if net is not None:
        with torch.no_grad():
            xs, cpu = _timed(lambda: net(y, return_all=True))
        out["unrolled"] = {
            "x": xs[-1],
            "cpu_s": cpu,
            "history": {"psnr": [_scores(x, truth)[0] for x in xs[1:]]},
        }
    if learned.get("generator") is not None and image in p["csgm_images"]:
        rec, cpu = _timed(
            lambda: csgm(
                y,
                op,
                generator=learned["generator"],
                steps=p["csgm_steps"],
                lr=0.05,
                restarts=4,
                z_dim=learned["generator"].latent_dim,
                seed=seed,
                x_true=truth,
                data_range=1.0,
            )
        )
        out["CSGM"] = {"x": rec.x, "cpu_s": cpu, "history": {"psnr": rec.psnr}}
    if image in p["dip_images"] and problem in p["dip_problems"]:
        curve = (
            problem == p["dip_problems"][0]
        )  # the curve case runs all steps; the others stop by the rule
        rec, cpu = _timed(
            lambda: deep_image_prior(
                y,
                op,
                steps=p["dip_steps"],
                early_stopping="variance",
                stop=not curve,
                patience=150,
                channels=p["dip_channels"],
                x_true=truth,
                data_range=1.0,
                seed=seed,
            )
        )
        out["DIP"] = {
            "x": rec.x,
            "cpu_s": cpu,
            "history": {
                "psnr": rec.psnr,
                "variance": rec.variance,
                "stop": rec.stop_iteration,
                "curve": curve,
            },
        }
    for r in out.values():
        if "psnr" not in r:
            r["psnr"], r["ssim"] = _scores(r["x"], truth)
    return out


def _sweep_case(p: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    """PSNR against lambda for Tikhonov, TV and wavelets on one case (lambda x ||A||^2, log grid)."""
    op, y, truth, problem = c["op"], c["y"], c["truth"], c["problem"]
    norm = float(op.norm(op.A_adjoint(y)))
    factors = np.logspace(-2, 1.5, p["sweep_points"])
    out: dict[str, Any] = {"baseline": c["results"]["baseline"]["psnr"]}
    for solver in ("Tikhonov", "TV", "wavelet"):
        lams = [float(LAMBDA[solver][problem] * f * norm**2) for f in factors]
        recs = [_classical(solver, problem, y, op, truth, lam, p, norm).x for lam in lams]
        out[solver] = {
            "lam": lams,
            "psnr": [_scores(x, truth)[0] for x in recs],
            "x": recs if solver == "TV" else [],
        }
    return out

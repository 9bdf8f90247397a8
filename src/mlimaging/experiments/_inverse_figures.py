"""Experiment ``inverse``, its figures: problems, solver grids, lambda sweeps, convergence, DIP curve."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from mlimaging.experiments._inverse_solve import SOLVERS
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt


# ------------------------------------------------------------------------------------ figures
def _show(ax: Any, img: torch.Tensor, title: str, fontsize: int = 7) -> None:
    ax.imshow(
        img.detach().float().squeeze().numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_title(title, fontsize=fontsize)
    ax.axis("off")


def _measurement_view(problem: str, y: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    if problem == "ct-60":  # the sinogram, scaled to [0, 1]
        return y / y.max()
    if problem == "sr-x2":
        return y
    return base


def _problems_figure(
    run: Run, p: dict[str, Any], cases: dict[tuple[str, str], dict[str, Any]]
) -> None:
    rows, cols = p["images"], p["problems"]
    fig, axes = plt.subplots(
        len(rows), len(cols) + 1, figsize=(1.7 * (len(cols) + 1), 1.85 * len(rows)), squeeze=False
    )
    for i, image in enumerate(rows):
        _show(axes[i, 0], cases[(image, cols[0])]["truth"], image, 8)
        for j, problem in enumerate(cols):
            c = cases[(image, problem)]
            _show(
                axes[i, j + 1],
                _measurement_view(problem, c["y"], c["results"]["baseline"]["x"]),
                f"{problem}: y"
                if problem in ("sr-x2", "ct-60")
                else f"{problem}: {c['results']['baseline']['method']}",
                7,
            )
    fig.tight_layout()
    run.figure(
        fig,
        "problems",
        caption="Truth and measurement of every problem (CT: the sinogram, angles along x; "
        "MRI: the zero-filled image; otherwise A^T y).",
    )


def _grid_figure(
    run: Run, p: dict[str, Any], image: str, cases: dict[tuple[str, str], dict[str, Any]]
) -> None:
    methods = [
        "baseline",
        *[s for s in SOLVERS if any(s in cases[(image, q)]["results"] for q in p["problems"])],
    ]
    fig, axes = plt.subplots(
        len(p["problems"]),
        len(methods) + 1,
        figsize=(1.45 * (len(methods) + 1), 1.6 * len(p["problems"])),
        squeeze=False,
    )
    for i, problem in enumerate(p["problems"]):
        res = cases[(image, problem)]["results"]
        _show(axes[i, 0], cases[(image, problem)]["truth"], f"{problem}\ntruth", 7)
        for j, m in enumerate(methods):
            ax = axes[i, j + 1]
            if m in res:
                label = res[m].get("method", m) if m == "baseline" else m
                label = "A^T y/L" if label.startswith("A^T") else label
                _show(ax, res[m]["x"], f"{label}\n{res[m]['psnr']:.1f} dB", 7)
            else:
                ax.axis("off")
    fig.tight_layout()
    run.figure(
        fig,
        f"grid-{image}",
        caption=f"{image}: each problem (rows) by each solver (columns), PSNR in the "
        "title; blank where the solver was not run on this case.",
    )


def _sweep(run: Run, p: dict[str, Any], sweeps: list[tuple[str, str, dict[str, Any]]]) -> None:
    fig, axes = plt.subplots(
        1,
        len(sweeps) + 1,
        figsize=(4.2 * len(sweeps) + 5.2, 3.2),
        squeeze=False,
        gridspec_kw={"width_ratios": [1.0] * len(sweeps) + [1.25]},
    )
    for ax, (image, problem, s) in zip(axes[0], sweeps, strict=False):
        for solver, marker in (("Tikhonov", "o"), ("TV", "s"), ("wavelet", "^")):
            lams, ps = s[solver]["lam"], s[solver]["psnr"]
            ax.semilogx(lams, ps, marker + "-", ms=3, label=solver)
            k = int(np.argmax(ps))
            ax.plot(lams[k], ps[k], marker, color="k", ms=6, mfc="none")
        ax.axhline(s["baseline"], color="gray", ls=":", lw=1, label="baseline")
        ax.set(
            xlabel="lambda (x ||A||^2 scale of each solver)",
            ylabel="PSNR (dB)",
            title=f"{image}, {problem}",
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    # thumbnails of TV at a small, the best and a large lambda for the first sweep
    image, problem, s = sweeps[0]
    axes[0, -1].axis("off")
    sub = axes[0, -1].get_subplotspec().subgridspec(1, 3, wspace=0.05)
    for k, (label, idx) in enumerate(
        (
            ("small", 0),
            ("best", int(np.argmax(s["TV"]["psnr"]))),
            ("large", len(s["TV"]["lam"]) - 1),
        )
    ):
        ax = fig.add_subplot(sub[0, k])
        _show(
            ax,
            s["TV"]["x"][idx],
            f"TV {label} lambda\n{s['TV']['lam'][idx]:.2g}: {s['TV']['psnr'][idx]:.1f} dB",
            7,
        )
    fig.tight_layout()
    run.figure(
        fig,
        "lambda-sweeps",
        caption="PSNR against lambda: too small keeps the noise (and, for "
        "inpainting/MRI, the holes and aliasing), too large smooths the image away; circles mark the best. "
        f"Right: TV on {image}, {problem}.",
    )


def _convergence(
    run: Run, image: str, problem: str, conv: dict[str, Any], res: dict[str, Any]
) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    for ax, pair, title in (
        (axes[0], ("TV PDHG", "TV FISTA"), "TV objective"),
        (axes[1], ("wavelet ISTA", "wavelet FISTA"), "wavelet objective"),
    ):
        best = min(min(conv[k]["objective"]) for k in (*pair, pair[0].split()[0] + " reference"))
        for k in pair:
            gap = np.maximum(np.asarray(conv[k]["objective"]) - best, 1e-12) / abs(best)
            ax.semilogy(np.arange(1, len(gap) + 1), gap, label=k)
        ax.set(xlabel="iteration", ylabel="(F_k - F*) / F*", title=f"{title} ({image}, {problem})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[2]
    ax.plot(
        np.arange(1, len(conv["LS long"]["psnr"]) + 1), conv["LS long"]["psnr"], label="LS (CGLS)"
    )
    for k in ("TV PDHG", "TV FISTA", "wavelet FISTA"):
        ax.plot(np.arange(1, len(conv[k]["psnr"]) + 1), conv[k]["psnr"], label=k)
    for k in ("PnP", "unrolled"):
        if k in res:
            h = res[k]["history"]["psnr"]
            ax.plot(np.arange(1, len(h) + 1), h, "o-" if k == "unrolled" else "-", ms=3, label=k)
    ax.set(
        xlabel="iteration (unrolled: learned step)", ylabel="PSNR (dB)", title="PSNR per iteration"
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    run.figure(
        fig,
        "convergence",
        caption="Left, middle: relative objective gap to F*, the best value reached by "
        "FISTA run three times longer (FISTA's acceleration against PDHG / ISTA). Right: PSNR per iteration; CGLS rises then falls as it fits the "
        "noise (semi-convergence), the unrolled network reaches its PSNR in a few learned steps.",
    )


def _dip_figure(run: Run, image: str, problem: str, dip: dict[str, Any], tv_psnr: float) -> None:
    h = dip["history"]
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    it = np.arange(1, len(h["psnr"]) + 1)
    ax.plot(it, h["psnr"], color="C0", label="DIP PSNR")
    ax.axvline(h["stop"], color="C3", ls="--", lw=1, label=f"ES-WMV stop ({h['stop']})")
    ax.axhline(tv_psnr, color="gray", ls=":", lw=1, label=f"TV ({tv_psnr:.1f} dB)")
    k = int(np.argmax(h["psnr"]))
    ax.plot(
        it[k],
        h["psnr"][k],
        "o",
        color="C0",
        mfc="none",
        label=f"peak {h['psnr'][k]:.1f} dB at {it[k]}",
    )
    ax.set(xlabel="Adam step", ylabel="PSNR (dB)", title=f"Deep image prior: {image}, {problem}")
    if h["variance"]:
        ax2 = ax.twinx()
        w = len(it) - len(h["variance"])
        ax2.semilogy(it[w:], h["variance"], color="C2", lw=0.8, alpha=0.7)
        ax2.set_ylabel("running variance (ES-WMV)", color="C2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    run.figure(
        fig,
        "dip-curve",
        caption="The deep image prior's PSNR rises, peaks and falls as the network starts "
        "fitting the noise; the no-reference ES-WMV rule (minimum of the running variance, green) picks the "
        "output without the truth.",
    )

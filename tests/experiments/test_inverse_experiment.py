"""Experiment ``inverse``: a tiny smoke run of every code path (the solvers are tested in tests/inverse/)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

import mlimaging.experiments.inverse  # noqa: F401  (registers the experiment)
from mlimaging.experiments import ExperimentFailed, list_experiments, run_experiment
from mlimaging.experiments.inverse import (
    LAMBDA,
    PNP,
    QUICK,
    SOLVERS,
    TV_ALGORITHM,
    InverseConfig,
    _classical,
    _load_image,
    _measure,
    _operator,
    _pnp_schedule,
    _RealImage,
    _resolve,
    _skipped_solvers,
    text_mask,
)

# The full code path (CSGM and its DCGAN included) on 32-pixel images with a few iterations of everything.
TINY = dict(
    size=32,
    images=("shepp-logan", "phantom"),
    problems=("deblur", "inpaint-random", "ct-60"),
    iterations=10,
    ls_iterations=5,
    lam_grid=(0.5, 2.0),
    sweep_points=3,
    pnp_iterations=3,
    denoiser="tiny",
    unrolled_problems=("deblur", "inpaint-random"),
    unrolled_iterations=2,
    unrolled_samples=8,
    unrolled_epochs=1,
    unrolled_features=4,
    csgm=True,
    gan_images=64,
    gan_epochs=1,
    csgm_steps=4,
    csgm_images=("phantom",),
    dip_images=("phantom",),
    dip_problems=("deblur", "ct-60"),
    dip_steps=12,
    dip_channels=(4, 4),
)
FIGURES = {
    "problems.png",
    "grid-shepp-logan.png",
    "grid-phantom.png",
    "lambda-sweeps.png",
    "convergence.png",
    "dip-curve.png",
    "csgm-generator.png",
}
TABLES = {"psnr-db.csv", "ssim.csv", "cpu-seconds-per-solve.csv", "training-cost.csv"}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inv") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLIMAGING_CACHE", str(tmp_path_factory.mktemp("cache")))
        assert "inverse" in list_experiments()
        run = run_experiment("inverse", quick=True, seed=0, out=folder, **TINY)
    return folder, run


def test_report_holds_every_table_and_figure(tiny_run):
    folder, run = tiny_run
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    assert {p.name for p in (folder / "tables").iterdir()} == TABLES
    html = run.report_path.read_text()
    assert html.count("<img") == len(FIGURES)
    assert "CSGM runs on phantom only" in html and "tiny DnCNN" in html
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["section_cpu_seconds"]) >= {"training", "reconstruction", "convergence"}
    assert (
        1 <= metrics["dip"]["stop_iteration"] <= 12 and metrics["dip"]["case"] == "phantom/deblur"
    )


def test_psnr_table_has_every_case_and_the_solvers_where_they_run(tiny_run):
    folder, _ = tiny_run
    rows = _rows(folder, "psnr-db")
    assert [(r["image"], r["problem"]) for r in rows] == [
        (i, q) for i in TINY["images"] for q in TINY["problems"]
    ]
    for r in rows:
        ran = {s for s in SOLVERS if r[s] != ""}
        expected = {"LS", "Tikhonov", "TV", "wavelet", "PnP"}
        expected |= {"unrolled"} if r["problem"] in TINY["unrolled_problems"] else set()
        expected |= {"CSGM"} if r["image"] == "phantom" else set()
        expected |= (
            {"DIP"} if r["image"] == "phantom" and r["problem"] in ("deblur", "ct-60") else set()
        )
        assert ran == expected, r
        assert all(math.isfinite(float(r[s])) for s in ran | {"baseline"})
    ssim = _rows(folder, "ssim")
    assert all(float(r[s]) <= 1.0 for r in ssim for s in ("baseline", *SOLVERS) if r[s] != "")


def test_numbers_agree_with_what_the_solvers_must_give(tiny_run):
    folder, _ = tiny_run
    psnr = {(r["image"], r["problem"]): r for r in _rows(folder, "psnr-db")}
    for image in TINY["images"]:
        inp = psnr[(image, "inpaint-random")]
        # inpainting is a projection: least squares returns the measurement, A^T y, exactly
        assert float(inp["LS"]) == pytest.approx(float(inp["baseline"]), abs=1e-2)
        # a smoothness prior fills the holes: far above the zero-filled measurement
        assert float(inp["Tikhonov"]) > float(inp["baseline"]) + 3
        assert float(inp["TV"]) > float(inp["baseline"]) + 3
    metrics = json.loads((folder / "metrics.json").read_text())
    lams = {(r["image"], r["problem"], r["solver"]): r["lam"] for r in metrics["results"]}
    # the chosen lambda is one of the grid's values (x ||A||^2 = 1 for a normalised blur)
    assert any(
        lams[("phantom", "deblur", "TV")] == pytest.approx(v, rel=0.02)
        for v in (0.006 * 0.5, 0.006 * 2.0)
    )


def test_unrolled_networks_are_unfolded_pnp_for_every_listed_problem(tiny_run):
    folder, _ = tiny_run
    cost = {r["model"]: r["detail"] for r in _rows(folder, "training-cost")}
    # inpainting included (Inpainting once shadowed nn.Module._apply, so fit's model.to failed on it)
    for problem in TINY["unrolled_problems"]:
        assert "unfolded PnP-HQS" in cost[f"unrolled ({problem})"]


def test_pnp_schedule_is_dpirs_worked_example():
    sigmas, etas = _pnp_schedule(3, 0.01, 0.5)
    end = PNP["sigma_end"] * 0.01
    assert sigmas == pytest.approx([PNP["sigma_start"], math.sqrt(PNP["sigma_start"] * end), end])
    assert etas == pytest.approx([s * s / (PNP["lam"] * 0.25) for s in sigmas])
    assert sigmas[0] > sigmas[1] > sigmas[2] and etas[0] > etas[-1]


def test_csgm_generator_is_the_trained_one_not_a_stale_average():
    # CSGM gave 11 dB on every problem: the experiment used GANStep's EMA generator (decay 0.99, started at the
    # first step's weights), which after 128 steps still held 28 % of them and sampled flat grey. Adam moves a
    # weight with a steady gradient sign by lr = 2e-4 per step: 4 steps (128 slices x 2 epochs, batch 64) move
    # the trained generator by ~4 lr (measured 8.8e-4), the EMA copy by ~lr (2.1e-4).
    from mlimaging.experiments.inverse import FULL, GAN_SIZE, _phantom_gan
    from mlimaging.generative.gan import DCGANGenerator

    gen, _ = _phantom_gan(dict(FULL, gan_images=128, gan_epochs=2), 0)
    torch.manual_seed(0)
    start = DCGANGenerator(latent_dim=64, image_size=GAN_SIZE, width=16)
    moved = max(
        float((a - b).detach().abs().max())
        for a, b in zip(gen.parameters(), start.parameters(), strict=True)
    )
    assert moved > 3 * 2e-4


def test_unrolled_starts_from_fbp_on_ct_and_a_fill_on_inpainting():
    from mlimaging.experiments.inverse import UNROLLED_INIT, _unrolled_init
    from mlimaging.metrics import psnr

    assert {"ct-60", "inpaint-text", "inpaint-random", "mri-4x"} <= set(UNROLLED_INIT)
    x = _load_image("shepp-logan", 32, 0)
    op = _operator("ct-60", 32, 0)
    y, _ = _measure(op, "ct-60", x, 0.01, 0)
    kw = _unrolled_init("ct-60", op)
    assert kw["data_step"] == "hqs"
    torch.testing.assert_close(kw["init"](y), op.fbp(y, filter="ramp"))
    op = _operator("inpaint-text", 32, 0)
    y, _ = _measure(op, "inpaint-text", x, 0.01, 0)
    filled = _unrolled_init("inpaint-text", op)["init"](y)
    zero = op.A_adjoint(y)
    assert float(psnr(filled, x, data_range=1.0)[0]) > float(psnr(zero, x, data_range=1.0)[0]) + 3.0


def test_ct_tv_is_fista_and_beats_fbp_clearly():
    # PDHG's single step pair cannot suit ||A|| ~ 50 and ||grad||: TV must run FISTA on CT, at lambda ~ 1
    assert TV_ALGORITHM["ct-60"] == "fista"
    x = _load_image("shepp-logan", 48, 0)
    op = _operator("ct-60", 48, 0)
    y, _ = _measure(op, "ct-60", x, 0.01, 0)
    norm = float(op.norm(op.A_adjoint(y)))
    lam = LAMBDA["TV"]["ct-60"] * norm**2
    assert 0.2 < lam < 2.0
    p = {"iterations": 60, "ls_iterations": 10}
    tv = _classical("TV", "ct-60", y, op, x, lam, p, norm)
    from mlimaging.metrics import psnr

    fbp = float(psnr(op.fbp(y, filter="ramp"), x, data_range=1.0)[0])
    assert float(psnr(tv.x, x, data_range=1.0)[0]) > fbp + 3.0


def test_quick_mode_says_what_it_skips():
    notes = " ".join(_skipped_solvers(_resolve(InverseConfig(quick=True))))
    assert "CSGM was not run" in notes and "tiny DnCNN" in notes
    assert QUICK["csgm"] is False and QUICK["denoiser"] == "tiny"


def test_text_mask_hides_the_text_only():
    m = text_mask(64)
    assert m.shape == (64, 64) and set(np.unique(m)) == {0.0, 1.0}
    assert 0.05 < 1 - m.mean() < 0.4  # the letters hide part of the image, not most of it
    assert m[0, 0] == 1.0  # corners are kept
    assert not np.array_equal(m, text_mask(64, "A"))
    assert (1 - text_mask(64, "A")).sum() < (1 - m).sum()


def test_real_image_embedding_is_adjoint_and_mri_composition_too():
    g = torch.Generator().manual_seed(0)
    e = _RealImage()
    x, z = (
        torch.rand(2, 1, 8, 8, generator=g, dtype=torch.float64),
        torch.rand(2, 2, 8, 8, generator=g, dtype=torch.float64),
    )
    assert float((e.A(x) * z).sum()) == pytest.approx(float((x * e.A_adjoint(z)).sum()), rel=1e-12)
    op = _operator("mri-4x", 16, 0)
    x = torch.rand(1, 1, 16, 16, generator=g)
    y = torch.rand(1, 2, 16, 16, generator=g)
    assert float((op.A(x) * y).sum()) == pytest.approx(float((x * op.A_adjoint(y)).sum()), rel=1e-5)


@pytest.mark.parametrize(
    "override, match",
    [
        ({"size": 30}, "size must be"),
        ({"problems": ("denoise",)}, "problems must be"),
        ({"images": ()}, "images must be"),
        ({"lam_grid": (0.0,)}, "lam_grid must be"),
        ({"denoiser": "bm3d"}, "denoiser must be"),
        ({"noise": 0.0}, "noise must be"),
        ({"csgm": True, "gan_images": 0}, "csgm needs"),
        ({"dip_channels": ()}, "dip_channels must be"),
    ],
)
def test_bad_settings_are_rejected(tmp_path, override, match):
    with pytest.raises(ExperimentFailed, match=match):
        run_experiment("inverse", quick=True, out=tmp_path / "x", **override)

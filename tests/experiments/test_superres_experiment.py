"""Experiment ``superres``: a tiny smoke run (the networks, losses and data are tested in tests/inverse/ and tests/models/)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import mlimaging.experiments.superres  # noqa: F401  (registers the experiment)
from mlimaging.experiments import ExperimentFailed, list_experiments, run_experiment
from mlimaging.experiments.superres import PUBLISHED_SET5, conv_macs

# The quick run's code path on less data: every network, two scales, tiny crops.
TINY = dict(
    models=("srcnn", "vdsr", "espcn", "lapsrn", "dbpn"),
    patches=2,
    n_test=1,
    crop=48,
    timing_size=32,
    timing_repeats=1,
    volume_epochs=1,
)
FIGURES = {
    "zoomed-crops-x4.png",
    "psnr-gain-over-bicubic.png",
    "training-curves.png",
    "cost-and-quality.png",
    "losses-zoomed-crops.png",
    "through-plane-x4.png",
}
TABLES = {
    "held-out-psnr-and-ssim.csv",
    "parameters-multiply-adds-and-inference-time.csv",
    "losses.csv",
    "through-plane-x4.csv",
}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("superres") / "run"
    assert "superres" in list_experiments()
    run = run_experiment("superres", quick=True, seed=0, out=folder, **TINY)
    return folder, run


def test_report_holds_every_table_and_figure(tiny_run):
    folder, run = tiny_run
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    assert {p.name for p in (folder / "tables").iterdir()} == TABLES
    html = run.report_path.read_text()
    assert html.count("<img") == len(FIGURES)
    assert "not converged" in html
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["section_cpu_seconds"]) == {"networks", "cost", "losses", "through-plane"}
    assert len(metrics["test_images"]) == 1 and len(metrics["train_images"]) == 15


def test_held_out_table_has_bicubic_every_network_and_the_published_numbers(tiny_run):
    folder, _ = tiny_run
    rows = _rows(folder, "held-out-psnr-and-ssim")
    assert [(r["scale"], r["model"]) for r in rows] == [
        (f"x{s}", m)
        for s in (2, 4)
        for m in ("bicubic", "srcnn", "vdsr", "espcn", "lapsrn", "dbpn")
    ]
    for r in rows:
        published = PUBLISHED_SET5[int(r["scale"][1:])].get(r["model"])
        assert (
            (r["published Set5 PSNR"] == "")
            if published is None
            else float(r["published Set5 PSNR"]) == published
        )
        if r["model"] == "bicubic":
            assert float(r["gain dB"]) == 0.0
            bicubic = float(r["PSNR dB"])
        else:
            assert float(r["gain dB"]) == pytest.approx(float(r["PSNR dB"]) - bicubic)
            assert 0 <= float(r["SSIM"]) <= 1 and int(r["epochs"]) == 1
    assert PUBLISHED_SET5[4] == {
        "bicubic": 28.42,
        "srcnn": 30.48,
        "vdsr": 31.35,
        "lapsrn": 31.54,
        "dbpn": 32.47,
    }


def test_pre_upsampling_costs_more_per_pixel_at_x4_than_x2(tiny_run):
    folder, _ = tiny_run
    cost = {
        (r["scale"], r["model"]): r
        for r in _rows(folder, "parameters-multiply-adds-and-inference-time")
    }
    # SRCNN works on the bicubic image: the same multiply-adds per output pixel at any scale.
    # ESPCN works at low resolution: 4x fewer input pixels per output pixel at x4 than at x2.
    srcnn = [float(cost[(s, "srcnn")]["paper MACs per HR pixel"]) for s in ("x2", "x4")]
    assert srcnn == [8032.0, 8032.0]  # 81 * 64 + 64 * 32 + 25 * 32
    espcn = [float(cost[(s, "espcn")]["paper MACs per HR pixel"]) for s in ("x2", "x4")]
    assert espcn[0] == pytest.approx((25 * 64 + 9 * 64 * 32 + 9 * 32 * 4) / 4)
    assert espcn[1] == pytest.approx((25 * 64 + 9 * 64 * 32 + 9 * 32 * 16) / 16)
    assert int(cost[("x2", "vdsr")]["paper parameters"]) == 665921
    assert all(float(r["CPU ms (32px out)"]) >= 0 for r in cost.values())


def test_losses_and_through_plane_tables(tiny_run):
    folder, _ = tiny_run
    assert [r["loss"] for r in _rows(folder, "losses")] == [
        "bicubic",
        "l2",
        "l1",
        "perceptual",
        "adversarial",
    ]
    assert all(float(r["sharpness (1 = HR)"]) > 0 for r in _rows(folder, "losses"))
    rows = {r["method"]: r for r in _rows(folder, "through-plane-x4")}
    assert list(rows) == ["thick slices (nearest)", "linear interpolation", "3D VDSR"]
    # linear interpolation of box-averaged slices beats repeating them on a smooth anatomy
    assert float(rows["linear interpolation"]["PSNR dB"]) > float(
        rows["thick slices (nearest)"]["PSNR dB"]
    )
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["volume_shape"] == [33, 41, 24]


def test_conv_macs_worked_example():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1)
    )
    # conv: 4 maps x 25 positions x 9 taps; transposed: 4 x 25 inputs x 2 maps x 16 taps
    assert conv_macs(net, torch.zeros(3, 1, 5, 5)) == 4 * 25 * 9 + 4 * 25 * 2 * 16


@pytest.mark.parametrize(
    "override, match",
    [
        ({"models": ("srcnn", "edsr")}, "models must be"),
        ({"scales": (8,)}, "scales must be"),
        ({"patch": 30}, "patch must be a multiple"),
        ({"epochs": 0}, "epochs must be"),
        ({"loss_model": "gan"}, "loss_model must be"),
        ({"adversarial_weight": 0.0}, "adversarial_weight must be"),
        ({"volume": "brain"}, "volume must be"),
    ],
)
def test_bad_settings_are_rejected(tmp_path, override, match):
    with pytest.raises(ExperimentFailed, match=match):
        run_experiment("superres", quick=True, out=tmp_path / "x", **override)

"""Smoke runs of the `data` and `metrics` experiments in quick mode, and `run all` on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlimaging.experiments import run_all, run_experiment


def test_data_experiment_quick(tmp_path):
    run = run_experiment("data", quick=True, out=tmp_path / "data")
    figures = {p.stem for p in (tmp_path / "data" / "figures").glob("*.png")}
    assert {"dataset-digits", "dataset-mnist5k"} <= figures
    assert sum(f.startswith("phantom-") for f in figures) >= 7  # one per challenge
    metrics = json.loads((tmp_path / "data" / "metrics.json").read_text())
    assert metrics["mnist5k_train"] == 3500
    html = run.report_path.read_text()
    assert html.count("<img") >= 9 and "data:image/png;base64," in html  # self-contained


def test_metrics_experiment_quick_reproduces_the_worked_example(tmp_path):
    run_experiment("metrics", quick=True, out=tmp_path / "m")
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    # The course's example: im1 = [1,2,2,1,2,1,3,5,4,1], im2 = [1,2,1,1,0,1,2,1,2,1].
    assert metrics["ssd"] == pytest.approx(2.6)  # (0+0+1+0+4+0+1+16+4+0) / 10
    assert metrics["sad"] == pytest.approx(1.0)  # (0+0+1+0+2+0+1+4+2+0) / 10
    assert metrics["nmi"] == pytest.approx(metrics["nmi_by_hand"])
    a = np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1])
    b = np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1])

    def entropy(*xs):
        _, counts = np.unique(np.stack(xs), axis=1, return_counts=True)
        p = counts / counts.sum()
        return -(p * np.log(p)).sum()

    assert metrics["nmi"] == pytest.approx((entropy(a) + entropy(b)) / entropy(a, b))
    # Pitfalls: one voxel of shift costs the smallest structure more Dice than the largest;
    # one stray voxel drives HD far above HD95.
    assert metrics["dice_shift_smallest"] < metrics["dice_shift_largest"]
    assert metrics["hd_stray"] > 10 * metrics["hd95_stray"]


def test_run_all_index_links_reports_and_shows_figures(tmp_path):
    index, entries = run_all(quick=True, out=tmp_path / "all", names=["data", "metrics"])
    assert [e["status"] for e in entries] == ["done", "done"]
    html = index.read_text()
    assert "href='data/report.html'" in html and "href='metrics/report.html'" in html
    assert "src='data/figures/dataset-digits.png'" in html
    for e in entries:
        for f in e["figures"]:
            assert (tmp_path / "all" / f).exists()

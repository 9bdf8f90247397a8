"""Smoke run of the ``registration`` experiment (quick mode, shrunk further) and its helpers."""

from __future__ import annotations

import json

import pytest

from mlimaging.experiments import ExperimentFailed, run_experiment

TINY = {"size": 48, "camera_size": 96, "cases": 1, "multimodal_cases": 1, "atlases": 2,
        "targets": 1, "stn_train": 1000, "stn_test": 200, "stn_epochs": 4, "canvas": 32}


def test_quick_run_writes_report_figures_and_sane_metrics(tmp_path):
    run = run_experiment("registration", quick=True, seed=0, out=tmp_path / "reg", **TINY)
    html = run.report_path.read_text()
    for title in ("Recovering known transforms", "Mono- versus multi-modal",
                  "Atlas-based segmentation", "Spatial transformer network"):
        assert title in html
    figures = {p.stem for p in (run.path / "figures").glob("*.png")}
    assert figures == {"camera-rigid", "joint-histograms", "multimodal-images",
                       "atlas-segmentation", "stn-accuracy", "stn-rectified"}
    assert len(list((run.path / "tables").glob("*.csv"))) == 4
    assert json.loads((run.path / "config.json").read_text())["status"] == "done"
    m = json.loads((run.path / "metrics.json").read_text())

    # Every rigid registration improves on the identity; the phantom is solved to < 0.5 mm.
    assert len(m["tre"]) == 3 * 2 * 3
    for key, v in m["tre"].items():
        assert v["before"] > 1.0, key
        if "/rigid/" in key:
            assert v["after"] < 0.5 * v["before"], key
    assert max(m["tre"][f"phantom/{k}/{s}"]["after"] for k in ("rigid", "affine")
               for s in ("ssd", "ncc", "nmi")) < 0.5

    # Two modalities: NMI under a voxel, SSD not; the same modality is easy for SSD.
    mm = m["multimodal"]
    assert mm["two modalities, NMI"] < 1.0 < mm["two modalities, SSD"]
    assert mm["same modality, SSD"] < 1.0

    # Atlas segmentation: sane Dice values for every strategy.
    assert set(m["atlas_dice"]) == {"single atlas (mean)", "single atlas (best)",
                                    "multi-atlas majority", "multi-atlas weighted"}
    assert all(0.5 < v <= 1.0 for v in m["atlas_dice"].values())
    assert m["atlas_dice"]["single atlas (best)"] >= m["atlas_dice"]["single atlas (mean)"]

    # Both classifiers learn something in four short epochs (chance is 0.1).
    assert 0.3 < m["cnn_accuracy"] <= 1.0
    assert 0.3 < m["stn_accuracy"] <= 1.0


def test_bad_option_fails_with_its_name(tmp_path):
    with pytest.raises(ExperimentFailed, match="cases"):
        run_experiment("registration", quick=True, out=tmp_path / "bad", cases=0)

"""Experiment ``segmentation``: tiny smoke runs (the pieces are tested in tests/segmentation/test_pipeline.py)."""

from __future__ import annotations

import csv
import json

import pytest

from mlimaging.experiments import ExperimentFailed, run_experiment

# A tiny version of the quick run: the same code path on 32 x 32 phantoms, one epoch each.
TINY = dict(size=32, n_train=2, n_test=1, epochs=1, patch_epochs=1, per_class=10,
            size_3d=16, n_train_3d=2, n_test_3d=1, epochs_3d=1)


def test_quick_smoke_run_writes_tables_figures_and_metrics(tmp_path):
    run = run_experiment("segmentation", quick=True, seed=0, out=tmp_path / "seg", **TINY)
    assert run.report_path.exists()
    methods = ["threshold", "Otsu", "region growing", "patch CNN", "FCN", "SegNet", "U-Net",
               "DeepLab-ASPP", "multiscale"]
    with open(tmp_path / "seg" / "tables" / "summary-per-method.csv") as fh:
        summary = {r["method"]: r for r in csv.DictReader(fh)}
    assert list(summary) == methods
    for r in summary.values():
        assert 0.0 <= float(r["mean Dice"]) <= 1.0 and float(r["inference (ms/image)"]) > 0
    assert float(summary["U-Net"]["training (s)"]) > 0 and float(summary["Otsu"]["training (s)"]) == 0
    # The FCN carries the patch CNN's weights: the same labels, hence the same scores.
    assert summary["FCN"]["mean Dice"] == summary["patch CNN"]["mean Dice"]
    with open(tmp_path / "seg" / "tables" / "mean-dice-by-challenge.csv") as fh:
        header = next(csv.reader(fh))
    assert header == ["method", "base", "strong inhomogeneity", "limited contrast", "anisotropy"]
    with open(tmp_path / "seg" / "tables" / "base-test-set-dice-hd95-and-assd-per-structure.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 * len(methods) and {r["structure"] for r in rows} == {"body", "organ", "lesion"}
    assert {p.name for p in (tmp_path / "seg" / "figures").iterdir()} == {"segmentations-2d.png", "segmentations-3d.png"}
    metrics = json.loads((tmp_path / "seg" / "metrics.json").read_text())
    assert set(metrics["3d_mean_dice"]) == {"threshold", "Otsu", "region growing", "3D U-Net"}
    assert metrics["settings"]["size"] == 32 and set(metrics["mean_dice_by_challenge"]) == set(methods)


def test_quick_run_is_repeatable(tmp_path):
    cfg = dict(TINY, n_train_3d=0, methods=("threshold", "U-Net"))
    a = run_experiment("segmentation", quick=True, seed=3, out=tmp_path / "a", **cfg)
    b = run_experiment("segmentation", quick=True, seed=3, out=tmp_path / "b", **cfg)
    ma, mb = (json.loads((r.path / "metrics.json").read_text()) for r in (a, b))
    assert ma["mean_dice_by_challenge"] == mb["mean_dice_by_challenge"]
    assert "3d_mean_dice" not in ma


def test_unknown_method_is_rejected(tmp_path):
    with pytest.raises(ExperimentFailed, match="methods must be"):
        run_experiment("segmentation", quick=True, out=tmp_path / "x", methods=("threshold", "SAM"))

"""Experiment ``detection``: a tiny smoke run as on a base install (the methods are tested in tests/detection/)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

import mlimaging.experiments.detection as detection_experiment  # registers `detection`
from mlimaging.experiments import ExperimentFailed, list_experiments, run_experiment

# The quick run's code path on less data: every section, two class counts.
TINY = dict(
    n_train=32,
    epochs=1,
    n_test=12,
    ablation_n_train=32,
    ablation_epochs=1,
    two_stage_n_train=64,
    two_stage_epochs=1,
    classes=(10, 100),
    timing_images=2,
    timing_repeats=1,
    show=3,
    score_threshold=0.1,
)
FIGURES = {
    "training-loss.png",
    "predicted-and-true-boxes.png",
    "grid-size.png",
    "grid-cells-crowded.png",
    "output-size-and-time.png",
}
TABLES = {
    "held-out-map.csv",
    "grid-size-ablation.csv",
    "output-size-and-time-against-c.csv",
}


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("detection") / "run"
    assert "detection" in list_experiments()
    run = run_experiment("detection", quick=True, seed=0, out=folder, **TINY)
    return folder, run


def test_report_holds_every_table_and_figure(tiny_run):
    folder, run = tiny_run
    assert {p.name for p in (folder / "figures").iterdir()} == FIGURES
    assert {p.name for p in (folder / "tables").iterdir()} == TABLES
    html = run.report_path.read_text()
    assert html.count("<img") == len(FIGURES)
    assert "NOT converged" in html


def test_map_rows_are_probabilities_ordered_by_threshold(tiny_run):
    folder, _ = tiny_run
    rows = _rows(folder, "held-out-map")
    assert [r["model"].split(" ")[0] for r in rows] == ["YOLO", "two-stage"]
    for r in rows:
        m50, m, m75 = float(r["map_50"]), float(r["map"]), float(r["map_75"])
        # mAP@[.5:.95] averages thresholds from .5 up: it cannot exceed mAP@0.5, nor mAP@0.75 it
        assert 0 <= m75 <= m50 <= 1 and m <= m50 + 1e-9
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["yolo_config"]["grid"] == 6 and metrics["yolo_config"]["num_classes"] == 10


def test_grid_ablation_rows_follow_the_formula_and_lose_fewer_boxes_with_more_cells(tiny_run):
    folder, _ = tiny_run
    rows = _rows(folder, "grid-size-ablation")
    assert [int(r["S"]) for r in rows] == [3, 6, 12]
    for r in rows:
        s = int(r["S"])
        assert int(r["output size"]) == s * s * (5 * 2 + 10)
    for key in ("lost to cells (1-4 digits)", "lost to cells (5-8 digits)"):
        lost = [float(r[key]) for r in rows]
        assert lost == sorted(
            lost, reverse=True
        )  # 12 refines 6 refines 3: a finer grid never loses more
    assert (
        float(rows[0]["lost to cells (5-8 digits)"]) > 0
    )  # crowded canvases collide on a 3 x 3 grid


def test_output_size_rows(tiny_run):
    folder, _ = tiny_run
    rows = _rows(folder, "output-size-and-time-against-c")
    one = {int(r["num_classes"]): int(r["output_size"]) for r in rows if r["model"] == "one-stage"}
    two = {
        int(r["num_classes"]): float(r["output_size"]) for r in rows if r["model"] == "two-stage"
    }
    assert one == {10: 6 * 6 * 20, 100: 6 * 6 * 110}
    k = two[10] / 14  # K proposals x (4 + C)
    assert two[100] == pytest.approx(k * 104)
    assert all(float(r["ms_per_image"]) > 0 for r in rows)


def test_cells_lost_worked_example():
    # centres (8, 8) and (20, 8) share cell (0, 0) of a 2 x 2 grid on 64 px; (40, 40) is alone
    t = [
        {
            "boxes": torch.tensor([[4.0, 4, 12, 12], [16.0, 4, 24, 12], [36.0, 36, 44, 44]]),
            "labels": torch.tensor([0, 1, 2]),
        }
    ]
    assert detection_experiment.cells_lost(t, grid=2, image_size=64) == pytest.approx(1 / 3)
    assert detection_experiment.cells_lost(t, grid=8, image_size=64) == 0.0
    assert (
        detection_experiment.cells_lost(
            [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}], grid=3, image_size=64
        )
        == 0.0
    )


@pytest.mark.parametrize(
    "bad", [dict(grids=()), dict(epochs=0), dict(score_threshold=1.5), dict(classes=(0,))]
)
def test_bad_settings_fail_with_a_clear_message(tmp_path, bad):
    with pytest.raises(ExperimentFailed, match="must be"):
        run_experiment("detection", quick=True, out=tmp_path / "bad", **bad)

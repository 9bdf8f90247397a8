from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mlimaging.reporting import Run, format_value, image_grid, slugify, to_jsonable
from mlimaging.reporting.figures import plt


def test_create_writes_config_with_versions_and_command(tmp_path):
    run = Run.create("demo", {"seed": 3, "quick": True}, root=tmp_path, command="mlimaging run demo --seed 3")
    assert run.path.parent == tmp_path and run.path.name.startswith("demo-")
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["config"] == {"seed": 3, "quick": True}
    assert cfg["command"] == "mlimaging run demo --seed 3"
    assert "torch" in cfg["versions"] and "numpy" in cfg["versions"]


def test_runs_in_the_same_second_get_their_own_folders(tmp_path):
    paths = {Run.create("same", {}, root=tmp_path).path for _ in range(3)}
    assert len(paths) == 3


def test_existing_folder_is_never_overwritten(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="taken"):
        Run.create("demo", {}, path=target)
    assert (target / "precious.txt").read_text() == "keep me"


def test_metrics_are_written_at_once(tmp_path):
    run = Run.create("m", {}, root=tmp_path)
    run.log({"a": np.float32(0.5)}, b=2)
    assert json.loads((run.path / "metrics.json").read_text()) == {"a": 0.5, "b": 2}
    run.log(a=0.75)
    assert json.loads((run.path / "metrics.json").read_text())["a"] == 0.75


def test_report_is_self_contained_with_tables_and_figures(tmp_path):
    run = Run.create("report", {"seed": 0}, root=tmp_path)
    run.section("Results", "Some words.")
    csv_path = run.table("Scores", [{"method": "otsu", "dice": 0.81234}, {"method": "unet", "dice": 0.97, "extra": 1}])
    fig = image_grid([np.eye(4), np.ones((4, 4))], titles=["eye", "ones"])
    png = run.figure(fig, "Two images", caption="two images")
    report = run.finish()
    html = report.read_text()
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in html and "figures/" not in html
    assert "otsu" in html and "0.8123" in html and "Some words." in html
    assert csv_path.read_text().splitlines()[0] == "method,dice,extra"
    cfg = json.loads((run.path / "config.json").read_text())
    assert cfg["status"] == "done" and cfg["seconds"] >= 0


def test_failed_run_keeps_what_was_logged(tmp_path):
    run = Run.create("fails", {}, root=tmp_path)
    run.log(partial=1.0)
    run.table("Before the failure", [{"x": 1}])
    html = run.finish(error="Traceback: boom").read_text()
    assert "failed" in html and "boom" in html and "Before the failure" in html
    assert json.loads((run.path / "config.json").read_text())["status"] == "failed"


def test_figure_names_are_unique(tmp_path):
    run = Run.create("figs", {}, root=tmp_path)
    a = run.figure(plt.figure(), "same name")
    b = run.figure(plt.figure(), "same name")
    assert a != b and a.exists() and b.exists()


def test_to_jsonable_and_format_value():
    import torch

    out = to_jsonable({"t": torch.tensor([1.0, 2.0]), "n": np.int64(3), "nan": float("nan"), "tup": (1, 2)})
    assert out == {"t": [1.0, 2.0], "n": 3, "nan": "nan", "tup": [1, 2]}
    json.dumps(out)
    assert format_value(0.123456) == "0.1235"
    assert format_value(1e-5) == "1.000e-05"
    assert format_value(math.inf) == "inf"
    assert slugify("Bias field!") == "bias-field"


def test_track_yields_every_item(tmp_path):
    run = Run.create("t", {}, root=tmp_path)
    assert list(run.track(range(5), "counting")) == [0, 1, 2, 3, 4]
    assert list(run.track((i for i in range(3)), "generator")) == [0, 1, 2]

"""``mlimaging train detector`` and ``mlimaging detect``: run folder, resume, model.pt, held-out mAP,
YOLO-folder training, boxes mapped back to the original pixels, drawings, and one-red-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

import mlimaging.cli.detect  # noqa: F401  (registers `train detector` and `detect`)
from mlimaging.cli.app import app
from mlimaging.cli.detect import draw_detections, load_detector_checkpoint
from mlimaging.detection import YOLO, detection_canvases, write_yolo_folder

runner = CliRunner()
TINY = [
    "--canvas",
    "48",
    "--grid",
    "3",
    "--backbone",
    "tiny",
    "--n-train",
    "16",
    "--n-val",
    "4",
    "--n-test",
    "4",
    "--batch-size",
    "8",
]


def _train(out, *extra):
    return runner.invoke(
        app, ["--threads", "1", "train", "detector", *TINY, "--out", str(out), *extra]
    )


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


@pytest.fixture(scope="module")
def yolo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("yolo") / "run"
    result = _train(out, "--epochs", "1")
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    d = detection_canvases(n=2, canvas=64, seed=3, split="test")
    a = (d.images[0, 0].numpy() * 255).astype(np.uint8)
    Image.fromarray(a).save(folder / "a.png")
    Image.fromarray(np.stack([a, a, a], -1)).resize((96, 72)).save(folder / "b.jpg")
    np.save(folder / "c.npy", d.images[1, 0].numpy() * 1000.0)
    return folder


def test_train_detector_writes_the_run_folder(yolo_run):
    out, output = yolo_run
    for name in (
        "model.pt",
        "checkpoints/last.pt",
        "report.html",
        "config.json",
        "metrics.json",
        "figures/held-out-detections.png",
        "tables/held-out-map.csv",
    ):
        assert (out / name).is_file(), name
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["detector"]["config"] == {
        "grid": 3,
        "boxes_per_cell": 2,
        "num_classes": 10,
        "in_channels": 1,
        "image_size": 48,
        "backbone": "tiny",
    }
    net, meta = load_detector_checkpoint(out / "model.pt")
    assert isinstance(net, YOLO) and not net.training and meta["epoch"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_map"] <= metrics["test_map_50"] <= 1
    assert "mAP@0.5" in output and "model.pt" in output


def test_interrupted_run_resumes_and_refuses_changed_settings(tmp_path, monkeypatch):
    from mlimaging.cli import _run_folder

    out = tmp_path / "run"
    export = _run_folder.ExportBest.on_epoch_end

    def interrupt_after_first_epoch(self, state):
        export(self, state)
        if state.epoch == 1:
            raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(_run_folder.ExportBest, "on_epoch_end", interrupt_after_first_epoch)
        result = _train(out, "--epochs", "2")
    assert result.exit_code == 130 and "--resume" in result.output
    _one_red_line(
        runner.invoke(app, ["train", "detector", "--out", str(out), "--grid", "4", "--resume"])
    )
    _one_red_line(
        runner.invoke(app, ["train", "detector", "--out", str(out), "--epochs", "3", "--resume"])
    )
    result = runner.invoke(
        app, ["--threads", "1", "train", "detector", "--out", str(out), "--resume"]
    )
    assert result.exit_code == 0, result.output
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_existing_out_needs_force(yolo_run):
    out, _ = yolo_run
    _one_red_line(_train(out, "--epochs", "1"))


def test_train_on_a_yolo_folder(tmp_path):
    data = write_yolo_folder(detection_canvases(n=10, canvas=64, seed=0), tmp_path / "data")
    out = tmp_path / "run"
    result = _train(out, "--epochs", "1", "--data", str(data), "--val-fraction", "0.2")
    assert result.exit_code == 0, result.output
    meta = torch.load(out / "model.pt", weights_only=True)["detector"]
    assert meta["config"]["image_size"] == 48 and meta["source"] == str(data)
    labels = [
        int(line.split()[0])
        for f in (data / "labels").iterdir()
        for line in f.read_text().splitlines()
    ]
    assert meta["config"]["num_classes"] == max(labels) + 1
    _one_red_line(_train(tmp_path / "r2", "--data", str(tmp_path / "missing")))
    _one_red_line(_train(tmp_path / "r3", "--data", str(data), "--classes", "1"))


def test_detect_writes_json_and_drawings(yolo_run, pictures, tmp_path):
    out, _ = yolo_run
    files = [str(pictures / n) for n in ("a.png", "b.jpg", "c.npy")]
    result = runner.invoke(
        app,
        [
            "detect",
            "--checkpoint",
            str(out / "model.pt"),
            *files,
            "--out",
            str(tmp_path / "boxes.json"),
            "--draw",
            str(tmp_path / "drawn"),
            "--conf-threshold",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "boxes.json").read_text())
    assert doc["model"]["image_size"] == 48 and doc["conf_threshold"] == 0
    sizes = {(r["width"], r["height"]) for r in doc["images"]}
    assert sizes == {(64, 64), (96, 72)}
    for r in doc["images"]:
        assert len(r["boxes"]) == len(r["scores"]) == len(r["labels"]) > 0
        b = np.array(r["boxes"])
        assert (
            (b[:, 0] <= b[:, 2]).all()
            and (b[:, 2] <= r["width"]).all()
            and (b[:, 3] <= r["height"]).all()
        )
        assert r["scores"] == sorted(r["scores"], reverse=True)
    assert sorted(p.name for p in (tmp_path / "drawn").iterdir()) == ["a.png", "b.png", "c.png"]
    with Image.open(tmp_path / "drawn" / "b.png") as im:
        assert im.size == (96 * 3, 72 * 3) and im.mode == "RGB"  # 96 px < 256: enlarged x3
    # again without --force: refused, nothing overwritten
    _one_red_line(
        runner.invoke(
            app,
            [
                "detect",
                "--checkpoint",
                str(out / "model.pt"),
                files[0],
                "--out",
                str(tmp_path / "boxes.json"),
            ],
        )
    )


def test_boxes_are_mapped_back_to_the_original_pixels(yolo_run, tmp_path, monkeypatch):
    out, _ = yolo_run
    # the model sees 48 x 48; a 96 (wide) x 144 (high) image scales x by 2 and y by 3
    Image.fromarray(np.zeros((144, 96), np.uint8)).save(tmp_path / "tall.png")
    seen = {}

    def fake_detect(self, images, **kw):
        seen["shape"] = tuple(images.shape)
        return [
            {
                "boxes": torch.tensor([[6.0, 8.0, 30.0, 40.0]]),
                "scores": torch.tensor([0.9]),
                "labels": torch.tensor([7]),
            }
        ]

    monkeypatch.setattr(YOLO, "detect", fake_detect)
    result = runner.invoke(
        app,
        [
            "detect",
            "--checkpoint",
            str(out / "model.pt"),
            str(tmp_path / "tall.png"),
            "--out",
            str(tmp_path / "b.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen["shape"] == (1, 1, 48, 48)
    r = json.loads((tmp_path / "b.json").read_text())["images"][0]
    assert r["boxes"] == [[12.0, 24.0, 60.0, 120.0]] and r["labels"] == [7]


def test_light_background_is_inverted_with_a_warning(yolo_run, tmp_path):
    out, _ = yolo_run
    img = np.full((48, 48), 255, np.uint8)
    img[10:30, 20:28] = 0
    Image.fromarray(img).save(tmp_path / "paper.png")
    result = runner.invoke(
        app,
        [
            "detect",
            "--checkpoint",
            str(out / "model.pt"),
            str(tmp_path / "paper.png"),
            "--out",
            str(tmp_path / "p.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "inverted" in result.output
    assert json.loads((tmp_path / "p.json").read_text())["images"][0]["inverted"] is True


def test_draw_detections_worked_example():
    image = np.zeros((40, 30))
    pic = draw_detections(
        image, {"boxes": [[2, 20, 6, 30]], "scores": [0.5], "labels": [1]}, min_side=80
    )
    arr = np.asarray(pic)
    assert pic.size == (60, 80)  # (width, height) enlarged x2: ceil(80 / 40)
    # the box becomes [4, 40, 11, 59] (last pixel inclusive), its label sits above it
    assert tuple(arr[59, 8]) == tuple(arr[50, 4]) == (255, 40, 40)  # bottom and left edges
    assert tuple(arr[50, 8]) == (0, 0, 0)  # inside the box
    assert tuple(arr[75, 50]) == (0, 0, 0)  # outside every box and label


def test_bad_inputs_are_one_red_line(yolo_run, pictures, tmp_path):
    out, _ = yolo_run
    ckpt = str(out / "model.pt")
    good = str(pictures / "a.png")
    (tmp_path / "note.png").write_text("not an image")
    torch.save({"model": {}, "classifier": {"model": "lenet"}}, tmp_path / "classifier.pt")
    cases = [
        ["detect", "--checkpoint", ckpt, str(tmp_path / "missing.png")],
        ["detect", "--checkpoint", str(tmp_path / "missing.pt"), good],
        ["detect", "--checkpoint", str(tmp_path / "classifier.pt"), good],
        ["detect", "--checkpoint", good, good],  # not a checkpoint at all
        ["detect", "--checkpoint", ckpt, str(tmp_path / "note.png")],
        ["detect", "--checkpoint", ckpt, good, "--conf-threshold", "-0.1"],
        ["detect", "--checkpoint", ckpt, good, "--iou-threshold", "1.5"],
        ["detect", "--checkpoint", ckpt, good, "--out", str(tmp_path)],
        ["train", "detector", "--out", str(tmp_path / "t1"), "--epochs", "0"],
        ["train", "detector", "--out", str(tmp_path / "t2"), "--backbone", "huge"],
        [
            "train",
            "detector",
            "--out",
            str(tmp_path / "t3"),
            "--canvas",
            "32",
            "--epochs",
            "1",
            "--n-train",
            "2",
        ],
    ]
    for args in cases:
        _one_red_line(runner.invoke(app, args))


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.one_of(
        st.floats(max_value=-1e-9, allow_nan=False),
        st.floats(min_value=1.0 + 1e-9),
        st.just(float("nan")),
    )
)
def test_thresholds_outside_the_unit_interval_are_refused(yolo_run, pictures, value):
    out, _ = yolo_run
    for option in ("--conf-threshold", "--iou-threshold"):
        result = runner.invoke(
            app,
            [
                "detect",
                "--checkpoint",
                str(out / "model.pt"),
                str(pictures / "a.png"),
                option,
                str(value),
            ],
        )
        _one_red_line(result)

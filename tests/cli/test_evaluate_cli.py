"""`mlimaging evaluate`: files and folders, spacing from headers, outputs and error paths."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.metrics import average_surface_distance, dice, hausdorff_distance

runner = CliRunner()


def _nifti(path, arr, spacing):
    img = nib.Nifti1Image(arr.astype(np.int16), np.diag([*spacing, 1.0]))
    nib.save(img, str(path))
    return path


def _case(seed, shape=(20, 18, 8)):
    rng = np.random.default_rng(seed)
    gt = np.zeros(shape, np.int16)
    gt[4:14, 3:12, 2:6] = 1
    gt[15:19, 13:17, 1:4] = 2
    pred = gt.copy()
    pred[rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(0, shape[2])] = 1
    pred = np.roll(pred, 1, axis=0)
    return pred, gt


def test_evaluate_folders_with_spacing_from_headers(tmp_path):
    spacing = (0.8, 0.8, 2.5)
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    cases = {}
    for i in range(3):
        pred, gt = _case(i)
        _nifti(tmp_path / "pred" / f"case{i}.nii.gz", pred, spacing)
        _nifti(tmp_path / "gt" / f"case{i}.nii", gt, spacing)  # .nii matches .nii.gz by name
        cases[f"case{i}"] = (pred, gt)
    out = tmp_path / "rows.csv"
    result = runner.invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "dice" in result.output and "hd95" in result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6  # 3 cases x labels 1 and 2
    for row in rows:
        pred, gt = cases[row["case"]]
        label = int(row["label"])
        p, t = pred == label, gt == label
        assert float(row["dice"]) == pytest.approx(dice(p, t), rel=1e-9)
        assert float(row["hd95"]) == pytest.approx(hausdorff_distance(p, t, spacing=spacing, percentile=95), rel=1e-6)
        assert float(row["assd"]) == pytest.approx(average_surface_distance(p, t, spacing=spacing), rel=1e-6)


def test_evaluate_files_json_labels_and_explicit_spacing(tmp_path):
    pred, gt = _case(7)
    p = _nifti(tmp_path / "p.nii.gz", pred, (1.0, 1.0, 1.0))
    g = _nifti(tmp_path / "g.nii.gz", gt, (1.0, 1.0, 1.0))
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["evaluate", str(p), str(g), "--labels", "2", "--metrics", "dice,hd",
                                 "--spacing", "2,2,2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = data["rows"] if isinstance(data, dict) else data
    assert [r["label"] for r in rows] == [2]
    expected = hausdorff_distance(pred == 2, gt == 2, spacing=(2, 2, 2))
    assert rows[0]["hd"] == pytest.approx(expected)
    # The existing output is never overwritten without --force.
    again = runner.invoke(app, ["evaluate", str(p), str(g), "--out", str(out)])
    assert again.exit_code == 2 and "--force" in again.output
    forced = runner.invoke(app, ["evaluate", str(p), str(g), "--out", str(out), "--force", "--jobs", "2"])
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("spacing", "spacing"),
        ("shape", "shape"),
        ("missing", "does not exist"),
        ("unmatched", "no prediction for"),
        ("labels", "--labels"),
        ("format", "--format"),
    ],
)
def test_evaluate_errors_are_one_red_line(tmp_path, setup, message):
    pred, gt = _case(1)
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    p = _nifti(tmp_path / "p" / "a.nii.gz", pred, (1.0, 1.0, 2.0))
    g = _nifti(tmp_path / "g" / "a.nii.gz", gt, (1.0, 1.0, 2.0))
    args = ["evaluate", str(p), str(g)]
    if setup == "spacing":
        _nifti(g, gt, (1.0, 1.0, 3.0))
    elif setup == "shape":
        _nifti(g, gt[:-1], (1.0, 1.0, 2.0))
    elif setup == "missing":
        args = ["evaluate", str(tmp_path / "nope.nii.gz"), str(g)]
    elif setup == "unmatched":
        _nifti(tmp_path / "g" / "b.nii.gz", gt, (1.0, 1.0, 2.0))
        args = ["evaluate", str(tmp_path / "p"), str(tmp_path / "g")]
    elif setup == "labels":
        args += ["--labels", "one"]
    elif setup == "format":
        args += ["--format", "xml"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def _flat(text):
    """Output with line wrapping undone (rich wraps titles and warnings at 80 columns)."""
    return " ".join(text.split())


def test_evaluate_warns_about_label_encodings_and_rejects_absent_labels(tmp_path):
    gt = np.zeros((12, 10, 4), np.int16)
    gt[3:8, 2:7, 1:3] = 255  # a 0/255 reference against a 0/1 prediction
    p = _nifti(tmp_path / "p.nii.gz", (gt > 0).astype(np.int16), (1.0, 1.0, 2.0))
    g = _nifti(tmp_path / "g.nii.gz", gt, (1.0, 1.0, 2.0))
    result = runner.invoke(app, ["evaluate", str(p), str(g), "--metrics", "dice"])
    assert result.exit_code == 0, result.output
    text = _flat(result.output)
    assert "warning:" in text and "case 'g' (only in pred: [1]; only in target: [255])" in text
    # A label found in no case is an error naming it (not "both empty, Dice 1").
    result = runner.invoke(app, ["evaluate", str(p), str(g), "--labels", "5"])
    assert result.exit_code == 2, result.output
    assert "labels: 5 found in no prediction and no reference" in _flat(result.output)
    assert "Traceback" not in result.output
    # Same label values on both sides: no warning.
    same = runner.invoke(app, ["evaluate", str(g), str(g), "--metrics", "dice"])
    assert same.exit_code == 0 and "warning" not in same.output


def test_evaluate_table_states_distance_units(tmp_path):
    from PIL import Image

    pred, gt = _case(3)
    p = _nifti(tmp_path / "p.nii.gz", pred, (0.5, 0.5, 2.0))
    g = _nifti(tmp_path / "g.nii.gz", gt, (0.5, 0.5, 2.0))
    files = runner.invoke(app, ["evaluate", str(p), str(g)])
    assert files.exit_code == 0, files.output
    assert "distances in mm (spacing from the files)" in _flat(files.output)
    given = runner.invoke(app, ["evaluate", str(p), str(g), "--spacing", "1,1,1"])
    assert "distances in mm (spacing from --spacing)" in _flat(given.output)
    # PNG stores no spacing: distances are in voxels, and the table says so.
    Image.fromarray(gt[:, :, 2].astype(np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(pred[:, :, 2].astype(np.uint8)).save(tmp_path / "p.png")
    out = tmp_path / "rows.json"
    png = runner.invoke(app, ["evaluate", str(tmp_path / "p.png"), str(tmp_path / "g.png"), "--out", str(out)])
    assert png.exit_code == 0, png.output
    assert "distances in voxels (the files store no spacing; pass --spacing for mm)" in _flat(png.output)
    assert json.loads(out.read_text())["metadata"]["distance_units"] == "voxels"
    # Only overlap metrics: no distance units to state.
    dice_only = runner.invoke(app, ["evaluate", str(p), str(g), "--metrics", "dice"])
    assert "distances" not in dice_only.output

"""`mlimaging evaluate` refuses label maps whose voxels do not correspond to the ground truth's.

Same shape and spacing are not enough: a prediction stored in another orientation, shifted, or
written as RGB / 4-D would otherwise be scored voxel by voxel against the wrong voxels.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.metrics import average_surface_distance, dice

runner = CliRunner()
SHAPE = (16, 14, 6)


def _masks():
    gt = np.zeros(SHAPE, np.uint8)
    gt[3:11, 4:12, 1:5] = 1
    pred = np.zeros(SHAPE, np.uint8)
    pred[4:12, 3:10, 2:5] = 1
    return pred, gt


def _affine():
    aff = np.diag([0.8, 0.8, 2.5, 1.0])
    aff[:3, 3] = [-10.0, 20.0, 5.0]
    return aff


def test_same_world_content_in_another_orientation_is_refused_not_misscored(tmp_path):
    pred, gt = _masks()
    aff = _affine()
    nib.save(nib.Nifti1Image(gt, aff), tmp_path / "gt.nii.gz")
    # The prediction stored with axis 0 reversed (LAS instead of RAS): the same voxels in the world.
    flipped = aff.copy()
    flipped[0, 0] = -aff[0, 0]
    flipped[0, 3] = aff[0, 3] + aff[0, 0] * (SHAPE[0] - 1)
    nib.save(nib.Nifti1Image(pred[::-1].copy(), flipped), tmp_path / "pred.nii.gz")
    world = nib.load(tmp_path / "pred.nii.gz")
    assert np.array_equal(np.asarray(nib.as_closest_canonical(world).dataobj), pred)  # truly the same content
    result = runner.invoke(app, ["evaluate", str(tmp_path / "pred.nii.gz"), str(tmp_path / "gt.nii.gz"),
                                 "--metrics", "dice"])
    assert result.exit_code == 2, result.output
    assert "LAS" in result.output and "RAS" in result.output and "resample" in result.output
    assert "Traceback" not in result.output


def test_shifted_origin_is_refused_and_the_same_grid_is_scored(tmp_path):
    pred, gt = _masks()
    aff = _affine()
    nib.save(nib.Nifti1Image(gt, aff), tmp_path / "gt.nii.gz")
    shifted = aff.copy()
    shifted[:3, 3] += [8.0, 0.0, 0.0]
    nib.save(nib.Nifti1Image(pred, shifted), tmp_path / "moved.nii.gz")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "moved.nii.gz"), str(tmp_path / "gt.nii.gz")])
    assert result.exit_code == 2, result.output
    assert "origin" in result.output and "8 mm" in result.output
    # The same grid up to float32 rounding of the header is accepted, and scored exactly.
    nudged = aff.copy()
    nudged[:3, 3] += 1e-4
    nib.save(nib.Nifti1Image(pred, nudged), tmp_path / "pred.nii.gz")
    out = tmp_path / "rows.csv"
    ok = runner.invoke(app, ["evaluate", str(tmp_path / "pred.nii.gz"), str(tmp_path / "gt.nii.gz"),
                             "--metrics", "dice,assd", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    row = out.read_text().splitlines()[1].split(",")
    header = out.read_text().splitlines()[0].split(",")
    values = dict(zip(header, row, strict=True))
    assert float(values["dice"]) == pytest.approx(dice(pred == 1, gt == 1), rel=1e-12)
    assert float(values["assd"]) == pytest.approx(
        average_surface_distance(pred == 1, gt == 1, spacing=(0.8, 0.8, 2.5)), rel=1e-6)


def test_rgb_and_4d_label_maps_are_refused(tmp_path):
    pred, gt = _masks()
    for name, arr in (("p.png", pred[..., 2]), ("g.png", gt[..., 2])):
        Image.fromarray(np.dstack([arr] * 3)).save(tmp_path / name)
    result = runner.invoke(app, ["evaluate", str(tmp_path / "p.png"), str(tmp_path / "g.png")])
    assert result.exit_code == 2, result.output
    assert "label map" in result.output and "(16, 14, 3)" in result.output
    aff = _affine()
    nib.save(nib.Nifti1Image(np.stack([pred, pred], -1), aff), tmp_path / "p4.nii.gz")
    nib.save(nib.Nifti1Image(np.stack([gt, gt], -1), aff), tmp_path / "g4.nii.gz")
    result = runner.invoke(app, ["evaluate", str(tmp_path / "p4.nii.gz"), str(tmp_path / "g4.nii.gz")])
    assert result.exit_code == 2, result.output
    assert "label map" in result.output and "Traceback" not in result.output


def test_out_folder_is_refused_before_any_work(tmp_path):
    pred, gt = _masks()
    aff = _affine()
    nib.save(nib.Nifti1Image(gt, aff), tmp_path / "gt.nii.gz")
    nib.save(nib.Nifti1Image(pred, aff), tmp_path / "pred.nii.gz")
    (tmp_path / "rows.csv").mkdir()
    for force in ([], ["--force"]):
        result = runner.invoke(app, ["evaluate", str(tmp_path / "pred.nii.gz"), str(tmp_path / "gt.nii.gz"),
                                     "--out", str(tmp_path / "rows.csv"), *force])
        assert result.exit_code == 2, result.output
        assert "is a folder" in result.output and "dice" not in result.output  # no table: nothing computed


@pytest.mark.parametrize("command", [["segment", "otsu"], ["upscale", "--checkpoint", "model.pt"]])
def test_out_folder_is_called_a_folder_not_an_existing_file(tmp_path, command):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "o.png").mkdir()
    result = runner.invoke(app, [*command, str(tmp_path / "a.png"), "--out", str(tmp_path / "o.png")])
    assert result.exit_code == 2, result.output
    assert "is a folder" in result.output and "Traceback" not in result.output

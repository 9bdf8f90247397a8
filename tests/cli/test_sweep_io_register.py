"""`mlimaging register --labels`: a label map stored on another grid than MOVING is refused, not misplaced.

nibabel's ``anatomical.nii`` (a real T1 scan) is the fixed image; the moving image is the same
data under a known rigid motion of its affine (as nibabel's ``make_moved_anat.py``).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import from_matvec
from nibabel.eulerangles import euler2mat
from typer.testing import CliRunner

from mlimaging.cli import app

runner = CliRunner()
ANAT = Path(nib.__file__).parent / "tests" / "data" / "anatomical.nii"


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    root = tmp_path_factory.mktemp("moved")
    img = nib.load(ANAT)
    data = np.asarray(img.dataobj).astype(np.float32)
    affine = from_matvec(euler2mat(0.1, 0.2, 0.3), [3.0, 4.0, 5.0]) @ img.affine
    nib.save(nib.Nifti1Image(data, img.affine), root / "fixed.nii.gz")
    nib.save(nib.Nifti1Image(data, affine), root / "moving.nii.gz")
    mask = (data > np.percentile(data, 60)).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, affine), root / "labels.nii.gz")
    # The same labels in the world, stored with the first axis reversed (as a tool writing RAS+ would).
    flipped = affine.copy()
    flipped[:3, 0] = -affine[:3, 0]
    flipped[:3, 3] = affine[:3, 3] + affine[:3, 0] * (data.shape[0] - 1)
    nib.save(nib.Nifti1Image(mask[::-1].copy(), flipped), root / "labels_flipped.nii.gz")
    return root


def test_labels_on_another_grid_than_moving_are_refused(moved, tmp_path):
    result = runner.invoke(app, ["register", str(moved / "fixed.nii.gz"), str(moved / "moving.nii.gz"),
                                 "--out", str(tmp_path / "w.nii.gz"), "--iterations", "5",
                                 "--labels", str(moved / "labels_flipped.nii.gz"),
                                 "--labels-out", str(tmp_path / "l.nii.gz")])
    assert result.exit_code == 2, result.output
    assert "MOVING's voxel grid" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "w.nii.gz").exists() and not (tmp_path / "l.nii.gz").exists()


def test_labels_on_moving_grid_land_on_the_fixed_anatomy(moved, tmp_path):
    out, lab_out = tmp_path / "w.nii.gz", tmp_path / "l.nii.gz"
    result = runner.invoke(app, ["register", str(moved / "fixed.nii.gz"), str(moved / "moving.nii.gz"),
                                 "--out", str(out), "--labels", str(moved / "labels.nii.gz"),
                                 "--labels-out", str(lab_out)])
    assert result.exit_code == 0, result.output
    fixed = nib.load(moved / "fixed.nii.gz")
    warped_labels = nib.load(lab_out)
    assert np.allclose(warped_labels.affine, fixed.affine)
    data = np.asarray(fixed.dataobj)
    truth = data > np.percentile(data, 60)
    inner = (slice(3, -3),) * 3
    agree = (np.asarray(warped_labels.dataobj)[inner] > 0) == truth[inner]
    assert agree.mean() > 0.99

"""`mlimaging info`: geometry, orientation and non-finite values, on files nobody here wrote."""

from __future__ import annotations

import numpy as np
import pydicom
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import write_image
from mlimaging.data.samples import sample_file

runner = CliRunner()


def _info(*args):
    result = runner.invoke(app, ["info", *map(str, args)], terminal_width=200)
    return result.exit_code, result.output


def test_info_shows_origin_direction_and_codes_of_a_las_nifti():
    code, out = _info(sample_file("anatomical.nii"))
    assert code == 0
    assert "origin (LPS mm) │ -32, 40, -16" in out
    assert "LAS" in out and "qform 2, sform 2" in out
    assert "-610 .. 30393" in out


def test_info_counts_nan_instead_of_printing_a_nan_range(tmp_path):
    a = np.ones((4, 5, 6), np.float32)
    a[0, 0, :3] = np.nan
    a[1, 1, 1] = -np.inf
    write_image(tmp_path / "x.nii.gz", a)
    code, out = _info(tmp_path / "x.nii.gz")
    assert code == 0
    assert "3 NaN, 1 infinite of 120 values" in out
    assert "1 .. 1 (finite values)" in out and "nan .. nan" not in out


def test_info_reads_a_dicom_series_folder_and_asks_which_series(tmp_path):
    template = pydicom.dcmread(sample_file("CT_small.dcm"))
    for uid in ("1.2.3.1", "1.2.3.2"):
        for k in range(3):
            ds = template.copy()
            ds.SeriesInstanceUID = uid
            ds.SOPInstanceUID = f"{uid}.{k}"
            ds.ImagePositionPatient = [0.0, 0.0, 5.0 * k]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.save_as(tmp_path / f"{uid}-{k}.dcm")
    code, out = _info(tmp_path)
    assert code == 2 and "2 DICOM series" in out and "--series" in out
    code, out = _info(tmp_path, "--series", "1.2.3.2")
    assert code == 0 and "3 x 128 x 128" in out and "5, 0.661468, 0.661468" in out

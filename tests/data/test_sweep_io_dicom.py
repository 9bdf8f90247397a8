"""DICOM PALETTE COLOR files: the stored values are indices into colour tables, not intensities."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import read_image


@pytest.fixture(scope="module")
def palette_file():
    path = get_testdata_file("examples_palette.dcm")
    if path is None:
        pytest.skip("pydicom's examples_palette.dcm is not installed")
    return path


def test_palette_colour_is_read_as_the_looked_up_rgb(palette_file):
    ds = pydicom.dcmread(palette_file)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    array, geometry = read_image(palette_file, geometry=True)
    expected = apply_color_lut(ds.pixel_array, ds)
    assert array.shape == (ds.Rows, ds.Columns, 3) and geometry.ndim == 2
    np.testing.assert_array_equal(array, expected)
    assert not np.array_equal(array[..., 0], ds.pixel_array)  # not the raw indices


def test_grayscale_commands_refuse_a_palette_image(palette_file, tmp_path):
    result = CliRunner().invoke(app, ["segment", "otsu", str(palette_file), "--out", str(tmp_path / "m.nii.gz")])
    assert result.exit_code == 2, result.output
    assert "colour" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m.nii.gz").exists()


def test_multiframe_rgb_dicom_is_refused_as_colour_not_as_a_4d_series(tmp_path):
    path = get_testdata_file("SC_rgb_rle_2frame.dcm")
    if path is None:
        pytest.skip("pydicom's SC_rgb_rle_2frame.dcm is not installed")
    result = CliRunner().invoke(app, ["segment", "otsu", str(path), "--out", str(tmp_path / "m.nii.gz")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "(2, 100, 100, 3)" in text and "colour" in text and "nibabel" not in text

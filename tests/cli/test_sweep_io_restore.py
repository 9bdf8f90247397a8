"""`mlimaging restore`: the scores printed are those of the files written; --mask on IMAGE's grid."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
from PIL import Image
from skimage.data import camera
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from mlimaging.cli import app

runner = CliRunner()


def _psnr_column(output: str) -> dict[str, float]:
    rows = {}
    for kind in ("degraded", "restored"):
        match = re.search(rf"{kind} \([^)]*\)\s*[│|]\s*([0-9.]+)", output)
        assert match, output
        rows[kind] = float(match.group(1))
    return rows


def test_psnr_of_a_16_bit_png_is_that_of_the_written_files(tmp_path):
    """A 16-bit PNG stores no negative values: the written result is clipped at 0, and scored so."""
    image = camera()[::4, ::4].astype(np.uint16) * 200 + 37  # 437 .. 51037
    Image.fromarray(image).save(tmp_path / "x.png")
    out = tmp_path / "r.png"
    result = runner.invoke(app, ["restore", str(tmp_path / "x.png"), "--operator", "denoise", "--noise", "0.05",
                                 "--solver", "tikhonov", "--out", str(out)])
    assert result.exit_code == 0, result.output
    shown = _psnr_column(result.output)
    data_range = float(image.max()) - float(image.min())
    for kind, path in (("degraded", tmp_path / "r_degraded.png"), ("restored", out)):
        written = np.asarray(Image.open(path)).astype(np.float64)
        assert written.shape == image.shape and written.min() == 0.0  # some noisy values clipped at 0
        expected = peak_signal_noise_ratio(image.astype(np.float64), written, data_range=data_range)
        assert abs(shown[kind] - expected) < 0.006, (kind, shown[kind], expected)


def test_mask_on_another_grid_than_image_is_refused(tmp_path):
    image = (camera()[::8, ::8][:, :, None] * np.ones(3)).astype(np.float32)  # (64, 64, 3) volume
    affine = np.diag([0.9, 0.9, 3.0, 1.0])
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "x.nii.gz")
    mask = np.ones(image.shape, np.uint8)
    mask[::2] = 0
    shifted = affine.copy()
    shifted[:3, 3] = [0.0, 5.0, 0.0]
    nib.save(nib.Nifti1Image(mask, shifted), tmp_path / "m.nii.gz")
    result = runner.invoke(app, ["restore", str(tmp_path / "x.nii.gz"), "--operator", "inpaint",
                                 "--mask", str(tmp_path / "m.nii.gz"), "--solver", "tikhonov",
                                 "--iterations", "3", "--out", str(tmp_path / "r.nii.gz")])
    assert result.exit_code == 2, result.output
    assert "--mask" in result.output and "IMAGE's voxel grid" in result.output
    nib.save(nib.Nifti1Image(mask, affine), tmp_path / "m.nii.gz")
    result = runner.invoke(app, ["restore", str(tmp_path / "x.nii.gz"), "--operator", "inpaint",
                                 "--mask", str(tmp_path / "m.nii.gz"), "--solver", "tikhonov",
                                 "--iterations", "3", "--out", str(tmp_path / "r.nii.gz")])
    assert result.exit_code == 0, result.output
    assert np.allclose(nib.load(tmp_path / "r.nii.gz").affine, affine)


def test_psnr_of_a_jpeg_result_includes_its_compression(tmp_path):
    image = camera()[::4, ::4]
    Image.fromarray(image).save(tmp_path / "x.png")
    out = tmp_path / "r.jpg"
    result = runner.invoke(app, ["restore", str(tmp_path / "x.png"), "--operator", "blur", "--sigma", "1.5",
                                 "--solver", "tv", "--iterations", "30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    shown = _psnr_column(result.output)
    for kind, path in (("degraded", tmp_path / "r_degraded.jpg"), ("restored", out)):
        written = np.asarray(Image.open(path)).astype(np.float64)
        expected = peak_signal_noise_ratio(image.astype(np.float64), written, data_range=255.0)
        assert abs(shown[kind] - expected) < 0.006, (kind, shown[kind], expected)

"""`mlimaging segment` / `predict-seg`: reports printed as written, bad inputs as one red line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.segmentation.dense import build_segmenter

runner = CliRunner()


@pytest.fixture(scope="module")
def model_pt(tmp_path_factory):
    """A small untrained 2-D U-Net saved as `train segmenter` saves model.pt (no training needed)."""
    meta = {"model": "unet", "model_kwargs": {"channels": 4, "depth": 2}, "num_classes": 3, "in_channels": 1,
            "spatial_dims": 2, "normalisation": "zscore", "roi_size": [16, 16], "dataset": "phantoms", "seed": 0}
    net = build_segmenter("unet", num_classes=3, spatial_dims=2, in_channels=1, seed=0, channels=4, depth=2)
    path = tmp_path_factory.mktemp("seg") / "model.pt"
    torch.save({"model": net.state_dict(), "segmenter": meta, "epoch": 1}, path)
    return path


def test_predict_seg_refuses_complex_values_instead_of_dropping_the_imaginary_part(model_pt, tmp_path):
    np.save(tmp_path / "k.npy", (np.ones((16, 16)) + 1j * np.arange(256).reshape(16, 16)).astype(np.complex64))
    result = runner.invoke(app, ["predict-seg", str(tmp_path / "k.npy"), "--checkpoint", str(model_pt),
                                 "--out", str(tmp_path / "m.npy")])
    assert result.exit_code == 2, result.output
    assert "real numbers" in result.output and "complex64" in result.output
    assert not (tmp_path / "m.npy").exists()


def test_predict_seg_with_a_file_that_is_no_checkpoint_is_one_line(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    result = runner.invoke(app, ["predict-seg", str(tmp_path / "a.png"), "--checkpoint", str(tmp_path / "a.png"),
                                 "--out", str(tmp_path / "m.png")])
    assert result.exit_code == 2, result.output
    assert "train segmenter" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_threshold_report_shows_the_bounds_as_given(tmp_path):
    """Rich markup must not eat "[inf, inf]" (read as a style tag, the report said "threshold : ...")."""
    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(3, 4))
    result = runner.invoke(app, ["segment", "threshold", str(tmp_path / "x.npy"), "--lower", "inf",
                                 "--out", str(tmp_path / "m.npy")])
    assert result.exit_code == 0, result.output
    assert "threshold [inf, inf]: 0 of 12 voxels" in " ".join(result.output.split())
    result = runner.invoke(app, ["segment", "threshold", str(tmp_path / "x.npy"), "--lower", "5",
                                 "--out", str(tmp_path / "[b]m.npy")])
    assert result.exit_code == 0, result.output
    assert "threshold [5, inf]: 7 of 12 voxels (58.3%) -> " in result.output and "[b]m.npy" in result.output


@pytest.mark.parametrize("suffix", [".jpg", ".JPEG"])
def test_masks_are_not_written_as_lossy_jpeg(tmp_path, suffix):
    """JPEG turned a 4-class Otsu map of camera into 5 labels, about a tenth of the pixels changed."""
    from skimage.data import camera

    Image.fromarray(camera()[::4, ::4]).save(tmp_path / "c.png")
    out = tmp_path / f"m{suffix}"
    result = runner.invoke(app, ["segment", "otsu", str(tmp_path / "c.png"), "--classes", "4", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "lossy" in result.output and not out.exists()
    labels_out = tmp_path / f"l{suffix}"
    result = runner.invoke(app, ["register", str(tmp_path / "c.png"), str(tmp_path / "c.png"),
                                 "--out", str(tmp_path / "w.png"), "--labels", str(tmp_path / "c.png"),
                                 "--labels-out", str(labels_out)])
    assert result.exit_code == 2, result.output
    assert "lossy" in result.output and not labels_out.exists() and not (tmp_path / "w.png").exists()

"""sam predict: a JPEG --out is refused (found by a sweep of the CLI: the mask was written as JPEG and
its compression turned the 0/1 mask into values 0, 1 and 2)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlimaging.cli import app

runner = CliRunner()


@pytest.mark.parametrize("name", ["mask.jpg", "mask.JPEG"])
def test_sam_predict_refuses_a_jpeg_mask_before_loading_anything(tmp_path, name):
    image, checkpoint = tmp_path / "missing.png", tmp_path / "missing.pth"  # refused before either is read
    result = runner.invoke(app, ["sam", "predict", str(image), "--point", "1,1", "--checkpoint", str(checkpoint),
                                 "--out", str(tmp_path / name)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --out") and "JPEG" in lines[0], result.output
    assert not (tmp_path / name).exists()


def test_sam_auto_refuses_more_points_per_side_than_pixels(tmp_path):
    """--points-per-side 100000 asked numpy for 75 GiB and ended in a traceback."""
    import numpy as np

    from mlimaging.data import write_image

    write_image(tmp_path / "photo.png", np.zeros((30, 40), dtype=np.uint8))
    result = runner.invoke(app, ["sam", "auto", str(tmp_path / "photo.png"), "--points-per-side", "100000",
                                 "--checkpoint", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "masks")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --points-per-side 100000") and "at most 40" in lines[0]
    assert not (tmp_path / "masks").exists()


def test_sam_names_a_text_file_given_as_checkpoint(tmp_path):
    """torch.load's reason was KeyError('101'), shown as ': 101'."""
    import numpy as np

    from mlimaging.data import write_image

    write_image(tmp_path / "photo.png", np.zeros((30, 40), dtype=np.uint8))
    (tmp_path / "notes.pth").write_text("hello\n")
    result = runner.invoke(app, ["sam", "predict", str(tmp_path / "photo.png"), "--point", "5,5", "--checkpoint",
                                 str(tmp_path / "notes.pth"), "--out", str(tmp_path / "mask.png")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].endswith(": not a PyTorch file"), lines
    assert not (tmp_path / "mask.png").exists()

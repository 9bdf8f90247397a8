"""explain: an --window, --stride or --layer that cannot work is refused before any map is written
(found by a sweep of the CLI: the saliency map was written, then occlusion or grad_cam failed)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import write_image

runner = CliRunner()


@pytest.fixture
def lenet(digits_classifier_run):
    return digits_classifier_run / "model.pt"


@pytest.fixture
def digit(tmp_path):
    image = np.zeros((28, 28), dtype=np.uint8)
    image[6:22, 12:16] = 255
    write_image(tmp_path / "one.png", image)
    return tmp_path / "one.png"


@pytest.mark.parametrize("options, words", [
    (["--method", "saliency,occlusion", "--window", "1000"], "--window 1000"),
    (["--method", "saliency,occlusion", "--stride", "9"], "--stride 9"),
    (["--method", "saliency,grad_cam", "--layer", "fc2"], "--layer fc2"),
])
def test_explain_refuses_a_bad_option_before_writing_any_map(tmp_path, lenet, digit, options, words):
    out = tmp_path / "maps"
    result = runner.invoke(app, ["explain", "--checkpoint", str(lenet), str(digit), *options, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], result.output
    assert not out.exists() or not any(out.iterdir())


def test_explain_still_runs_occlusion_and_grad_cam_with_good_options(tmp_path, lenet, digit):
    out = tmp_path / "maps"
    result = runner.invoke(app, ["explain", "--checkpoint", str(lenet), str(digit), "--method", "occlusion,grad_cam",
                                 "--window", "7", "--stride", "7", "--layer", "conv1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    for m in ("occlusion", "grad_cam"):
        assert np.load(out / f"one_{m}.npy").shape == (8, 8)  # the model input: digits are 8 x 8

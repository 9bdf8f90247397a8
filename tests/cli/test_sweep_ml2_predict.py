"""predict/explain: the last.pt of a run that is not a classifier's is refused in one red line (found by a
sweep of the CLI: a GAN's, SCM's, detector's or encoder's checkpoints/last.pt ended in KeyError 'model', a
segmenter's in many lines of torch's size mismatches, because the run folder's settings were read as a
classifier's)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import write_image

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(trained, digits_classifier_run, phantom_segmenter_run):
    """The run folders by kind, and ``"digit.png"``: the image to classify."""
    gan = trained("gan", ["train", "gan", "--dataset", "digits", "--epochs", "1"])
    image = np.zeros((8, 8), dtype=np.uint8)
    image[2:6, 3:5] = 255
    write_image(gan.parent / "digit.png", image)
    return {"classifier": digits_classifier_run, "segmenter": phantom_segmenter_run, "gan": gan,
            "digit.png": gan.parent / "digit.png"}


@pytest.mark.parametrize("run", ["gan", "segmenter"])
def test_predict_refuses_the_last_checkpoint_of_another_kind_of_run(runs, run):
    result = runner.invoke(app, ["predict", "--checkpoint", str(runs[run] / "checkpoints" / "last.pt"),
                                 str(runs["digit.png"])])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --checkpoint") and "train classifier" in lines[0], lines


def test_explain_refuses_a_gan_last_checkpoint(runs, tmp_path):
    result = runner.invoke(app, ["explain", "--checkpoint", str(runs["gan"] / "checkpoints" / "last.pt"),
                                 str(runs["digit.png"]), "--method", "saliency", "--out", str(tmp_path / "maps")])
    assert result.exit_code == 2, result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert not (tmp_path / "maps").exists()


def test_predict_still_takes_a_classifier_last_checkpoint(runs):
    result = runner.invoke(app, ["predict", "--checkpoint", str(runs["classifier"] / "checkpoints" / "last.pt"),
                                 str(runs["digit.png"])])
    assert result.exit_code == 0, result.output
    assert "lenet" in result.output and "probability" in result.output

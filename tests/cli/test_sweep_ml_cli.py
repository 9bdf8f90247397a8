"""Bad input to the training and model commands, found by a sweep of the CLI as a new user runs it:
each is refused with one red line (exit code 2) or handled, never a traceback or a silent wrong answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import write_image

runner = CliRunner()


def _one_red_line(result):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


TRAIN_COMMANDS = {
    "classifier": ["train", "classifier", "--dataset", "digits", "--epochs", "1"],
    "gan": ["train", "gan", "--dataset", "digits", "--epochs", "1"],
    "scm": ["train", "scm", "--epochs", "1", "--n-train", "64", "--n-val", "16"],
    "detector": ["train", "detector", "--epochs", "1", "--n-train", "8", "--n-val", "4", "--n-test", "4"],
    "pretrain": ["pretrain", "simclr", "--dataset", "digits", "--epochs", "1"],
}
BAD_DEVICES = ["bogus", "cuda:x"] + ([] if torch.cuda.is_available() else ["cuda"])


@pytest.mark.parametrize("device", BAD_DEVICES)
@pytest.mark.parametrize("name", sorted(TRAIN_COMMANDS))
def test_a_device_torch_cannot_use_is_one_red_line_and_no_run_folder(tmp_path, name, device):
    out = tmp_path / "run"
    result = runner.invoke(app, [*TRAIN_COMMANDS[name], "--device", device, "--out", str(out)])
    _one_red_line(result)
    assert "--device" in result.output and device in result.output
    assert not out.exists()  # a rerun with --device cpu needs no --force


@pytest.fixture
def mixed_folder(tmp_path):
    """Two classes of images of different sizes, grey and RGB mixed (a user's photo folder)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for k, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(10):
            h, w = 12 + 3 * i, 20 + i
            img = rng.integers(0, 100, (h, w)) + 150 * k
            img = np.stack([img] * 3, -1) if i % 2 else img
            write_image(root / name / f"{i}.png", img.astype(np.uint8))
    return root


def test_train_classifier_size_resizes_a_folder_of_mixed_image_sizes(tmp_path, mixed_folder):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "classifier", "--dataset", "image-folder", "--root", str(mixed_folder),
                                 "--size", "16", "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = torch.load(out / "model.pt", weights_only=True)["classifier"]
    assert meta["preprocess"]["size"] == [16, 16]
    assert meta["preprocess"]["channels"] == 3  # some images are RGB: all become RGB
    assert meta["classes"] == ["dark", "light"]


def test_train_classifier_without_size_names_the_option(tmp_path, mixed_folder):
    result = runner.invoke(app, ["train", "classifier", "--dataset", "image-folder", "--root", str(mixed_folder),
                                 "--epochs", "1", "--out", str(tmp_path / "run")])
    _one_red_line(result)
    assert "--size" in result.output


@pytest.fixture
def scm_checkpoint(scm_run):
    return scm_run / "model.pt"


def test_counterfactual_warns_on_a_dark_digit_on_a_light_background(tmp_path, scm_checkpoint):
    from mlimaging.generative.morphomnist import causal_mnist

    digit = (255 * causal_mnist(1, seed=3, split="test")["images"][0, 0].numpy()).astype(np.uint8)
    write_image(tmp_path / "bright.png", digit)
    write_image(tmp_path / "dark.png", 255 - digit)
    warning = "dark digit on a light background"
    ok = runner.invoke(app, ["counterfactual", "--checkpoint", str(scm_checkpoint), str(tmp_path / "bright.png"),
                             "--do", "t=3", "--out", str(tmp_path / "cf1.png")])
    assert ok.exit_code == 0, ok.output
    assert warning not in ok.output
    flipped = runner.invoke(app, ["counterfactual", "--checkpoint", str(scm_checkpoint), str(tmp_path / "dark.png"),
                                  "--do", "t=3", "--out", str(tmp_path / "cf2.png")])
    assert flipped.exit_code == 0, flipped.output
    assert warning in flipped.output


@pytest.fixture
def segmenter_2d(phantom_segmenter_run):
    return phantom_segmenter_run / "model.pt"


@pytest.mark.parametrize("shape", [(1, 12), (1, 1)])
def test_explain_a_segmenter_on_an_image_one_pixel_high(tmp_path, segmenter_2d, shape):
    image = np.arange(int(np.prod(shape)), dtype=np.uint8).reshape(shape) * 20
    write_image(tmp_path / "row.png", image)
    result = runner.invoke(app, ["explain", "--checkpoint", str(segmenter_2d), str(tmp_path / "row.png"),
                                 "--method", "saliency", "--out", str(tmp_path / "maps")])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "maps" / "row_saliency.npy").shape == shape
    assert (tmp_path / "maps" / "row_saliency.png").is_file()

"""``mlimaging attack invert-gradients``: gradient inversion of one image from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.cli.attack import parse_defence
from mlimaging.cli.classify import _load_classifier
from mlimaging.metrics import psnr

runner = CliRunner()
TRAIN = ["train", "classifier", "--dataset", "digits", "--model", "lenet", "--batch-size", "64", "--seed", "1"]


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A LeNet trained one epoch on digits, and one digits image of its input size as .npy."""
    root = tmp_path_factory.mktemp("invert")
    result = runner.invoke(app, [*TRAIN, "--epochs", "1", "--out", str(root / "lenet")])
    assert result.exit_code == 0, result.output
    checkpoint = root / "lenet" / "model.pt"
    _, meta = _load_classifier(checkpoint)
    h, w = meta["preprocess"]["size"]
    image = np.random.default_rng(0).random((h, w)).astype(np.float32)
    image[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 1.0
    np.save(root / "digit.npy", image)
    return checkpoint, root / "digit.npy", (h, w)


def _invert(checkpoint, image, out, *extra):
    return runner.invoke(app, ["--threads", "1", "attack", "invert-gradients", "--checkpoint", str(checkpoint), str(image),
                               "--out", str(out), *extra], terminal_width=200)


def test_dlg_writes_the_reconstruction_figure_and_metrics(setup, tmp_path):
    checkpoint, image, (h, w) = setup
    out = tmp_path / "inv"
    result = _invert(checkpoint, image, out, "--iterations", "2", "--seed", "3")
    assert result.exit_code == 0, result.output
    for name in ("reconstruction.png", "reconstruction.npy", "figures/side-by-side.png", "metrics.json",
                 "config.json", "report.html"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recovered_label"] == metrics["client_label"] and metrics["label_correct"] is True
    assert metrics["label_given"] is False and metrics["iterations"] <= 2
    rec = np.load(out / "reconstruction.npy")
    assert rec.shape == (1, h, w) and rec.min() >= 0.0 and rec.max() <= 1.0
    original = np.load(image)[None]
    assert metrics["psnr"] == pytest.approx(float(psnr(rec.astype(np.float64), original.astype(np.float64),
                                                       data_range=1.0)), rel=1e-5)
    assert -1.0 <= metrics["ssim"] <= 1.0
    assert "PSNR" in result.output and "recovered" in result.output
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["method"] == "dlg" and config["seed"] == 3

    # the same seed gives the same reconstruction; --force replaces only this command's folder
    again = _invert(checkpoint, image, out, "--iterations", "2", "--seed", "3", "--force")
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(np.load(out / "reconstruction.npy"), rec)


def test_inverting_gradients_with_a_given_label_and_a_defence(setup, tmp_path):
    checkpoint, image, _ = setup
    out = tmp_path / "ig"
    result = _invert(checkpoint, image, out, "--method", "ig", "--iterations", "6", "--restarts", "2", "--label",
                     "4", "--defence", "clip:1,noise:0.01,topk:0.5")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["client_label"] == 4 and metrics["recovered_label"] == 4 and metrics["label_given"] is True
    assert metrics["iterations"] == 6 and metrics["restart"] in (0, 1)
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["defence"] == {"clip_norm": 1.0, "noise": 0.01, "topk": 0.5} and config["tv"] == 1e-4


@pytest.mark.parametrize("extra, match", [
    (["--method", "gan"], "--method"),
    (["--defence", "blur:1"], "--defence"),
    (["--defence", "topk:2"], "topk"),
    (["--defence", "noise:x"], "noise"),
    (["--iterations", "0"], "--iterations"),
    (["--restarts", "-1"], "--restarts"),
    (["--lr", "-1"], "--lr"),
    (["--tv", "-1"], "--tv"),
    (["--label", "10"], "--label"),
])
def test_bad_options_give_one_red_line(setup, tmp_path, extra, match):
    checkpoint, image, _ = setup
    result = _invert(checkpoint, image, tmp_path / "x", *extra)
    _one_red_line(result)
    assert match in result.output
    assert not (tmp_path / "x").exists()


def test_bad_files_give_one_red_line(setup, tmp_path):
    checkpoint, image, (h, w) = setup
    _one_red_line(_invert(checkpoint, tmp_path / "missing.npy", tmp_path / "a"))
    _one_red_line(_invert(tmp_path / "missing.pt", image, tmp_path / "b"))
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((h + 3, w), np.float32))
    result = _invert(checkpoint, small, tmp_path / "c")
    _one_red_line(result)
    assert "shape" in result.output
    volume = tmp_path / "volume.npy"
    np.save(volume, np.zeros((4, h, w), np.float32))
    _one_red_line(_invert(checkpoint, volume, tmp_path / "d"))
    not_a_model = tmp_path / "junk.pt"
    not_a_model.write_bytes(b"not a checkpoint")
    _one_red_line(_invert(not_a_model, image, tmp_path / "e"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    _one_red_line(_invert(checkpoint, image, busy))
    _one_red_line(_invert(checkpoint, image, busy, "--force"))  # --force deletes only what it wrote
    assert (busy / "notes.txt").read_text() == "mine"
    assert not any((tmp_path / n).exists() for n in "abcde")


def test_unknown_attack_is_one_red_line_and_help_lists_the_commands():
    result = runner.invoke(app, ["attack", "deepfool", "--out", "x"], terminal_width=200)
    _one_red_line(result)
    assert "invert-gradients" in result.output
    listing = runner.invoke(app, ["attack", "--help"], terminal_width=200)
    assert listing.exit_code == 0
    assert all(name in listing.output for name in ("fgsm", "pgd", "invert-gradients"))


def test_parse_defence():
    assert parse_defence("topk:0.1, noise:0") == {"topk": 0.1, "noise": 0.0}
    assert parse_defence("") == {}
    for bad in ("noise", "clip:0", "clip:-1", "topk:0", "noise:inf", "noise:1,noise:2", "fog:1"):
        with pytest.raises(ValueError, match="--defence"):
            parse_defence(bad)

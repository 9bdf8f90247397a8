"""probe: the labels column shows the share of training labels actually used (found by a sweep of the
CLI: --labels 0.0001 used one label per class, 10 of 1079, and the table said '10 (0.01%)')."""

from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.cli.pretrain import load_images

runner = CliRunner()


@pytest.fixture(scope="module")
def encoder(trained):
    return trained("simclr", ["pretrain", "simclr", "--dataset", "digits", "--epochs", "1"]) / "model.pt"


@pytest.mark.parametrize("fraction", [0.0001, 0.1])
def test_probe_shows_the_fraction_of_labels_it_used(encoder, fraction):
    result = runner.invoke(app, ["probe", "--checkpoint", str(encoder), "--labels", str(fraction), "--knn"])
    assert result.exit_code == 0, result.output
    used, percent = re.search(r"│ (\d+) \(([\d.]+)%\)", result.output).groups()
    meta = torch.load(encoder, weights_only=True)["pretrain"]
    _, labels = load_images("digits", "train", root=None, seed=int(meta.get("split_seed", 0)),
                            size=int(meta["image_size"]), channels=int(meta["channels"]))
    assert int(used) >= round(fraction * len(labels))  # at least one label per class
    assert float(percent) == pytest.approx(100 * int(used) / len(labels), rel=5e-3)

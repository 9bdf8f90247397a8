"""morpho: a --json that is a folder is called a folder (found by a sweep of the CLI: it said 'already
exists; pass --force', and with --force 'is a folder')."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import write_image

runner = CliRunner()


def test_morpho_calls_a_json_folder_a_folder(tmp_path):
    image = np.zeros((28, 28), dtype=np.uint8)
    image[6:22, 12:16] = 255
    write_image(tmp_path / "one.png", image)
    (tmp_path / "results").mkdir()
    result = runner.invoke(app, ["morpho", str(tmp_path / "one.png"), "--json", str(tmp_path / "results")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is a folder" in lines[0] and "--force" not in lines[0], lines


def test_morpho_refuses_a_volume_with_negative_values_in_one_red_line(tmp_path):
    """A light-background warning came before the error on the same volume (a scan in signed units)."""
    volume = np.full((4, 28, 28), 200, dtype=np.int16)  # light border: the warning's case
    volume[:, 10:18, 12:16] = -50
    write_image(tmp_path / "scan.nii.gz", volume)
    result = runner.invoke(app, ["morpho", str(tmp_path / "scan.nii.gz")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: IMAGE") and "non-negative" in lines[0], lines

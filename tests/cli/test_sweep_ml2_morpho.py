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

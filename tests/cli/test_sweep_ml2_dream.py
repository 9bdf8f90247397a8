"""dream: a --size too large to dream is one red line (found by a sweep of the CLI: --size 100000 asked
torch for 40 GB and ended in a traceback)."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import write_image

runner = CliRunner()


def test_dream_refuses_an_absurd_size_before_reading_the_checkpoint(tmp_path):
    write_image(tmp_path / "photo.png", np.zeros((40, 50), dtype=np.uint8))
    result = runner.invoke(app, ["dream", "--checkpoint", str(tmp_path / "missing.pt"), str(tmp_path / "photo.png"),
                                 "--layer", "conv2", "--size", "100000", "--out", str(tmp_path / "dream.png")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --size must be at most") and "100000" in lines[0], lines
    assert not (tmp_path / "dream.png").exists()

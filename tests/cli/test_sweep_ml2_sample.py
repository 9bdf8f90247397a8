"""sample: an --n too large to draw is one red line (found by a sweep of the CLI: --n 100000000 asked
torch for 40 GB and ended in a traceback)."""

from __future__ import annotations

from typer.testing import CliRunner

from mlimaging.cli import app

runner = CliRunner()


def test_sample_refuses_an_absurd_n_before_reading_the_checkpoint(tmp_path):
    result = runner.invoke(app, ["sample", "--checkpoint", str(tmp_path / "missing.pt"), "--n", "100000000",
                                 "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --n must be at most") and "100000000" in lines[0], lines
    assert not (tmp_path / "grid.png").exists()


def test_sample_calls_an_out_folder_a_folder(tmp_path):
    """It said 'already exists; pass --force', and with --force 'is a folder'."""
    (tmp_path / "grids").mkdir()
    result = runner.invoke(app, ["sample", "--checkpoint", str(tmp_path / "missing.pt"), "--out",
                                 str(tmp_path / "grids")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is a folder" in lines[0] and "--force" not in lines[0], lines

"""run: a negative --seed is one red line and no run folder (found by a sweep of the CLI: the experiment
started, failed on the seed, exited 1 and left a failed run behind)."""

from __future__ import annotations

from typer.testing import CliRunner

from mlimaging.cli import app

runner = CliRunner()


def test_run_refuses_a_negative_seed_before_making_the_run_folder(tmp_path):
    out = tmp_path / "data-run"
    result = runner.invoke(app, ["run", "data", "--quick", "--seed", "-1", "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == ["error: --seed must be >= 0, got -1"], result.output
    assert not out.exists()


def test_run_names_a_root_that_is_a_file(tmp_path):
    """It said '[Errno 17] File exists: ...'."""
    root = tmp_path / "runs.txt"
    root.write_text("not a folder")
    result = runner.invoke(app, ["run", "data", "--quick", "--root", str(root)])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: --root {root} is a file"), lines
    assert root.read_text() == "not a folder"

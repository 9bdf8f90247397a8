from __future__ import annotations

import re

import numpy as np
import pytest
from typer.testing import CliRunner

import mlimaging
from mlimaging.cli import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert mlimaging.__version__ in result.output


def test_help_lists_every_command_with_one_line():
    result = runner.invoke(app, ["--help"], terminal_width=120)
    assert result.exit_code == 0
    import typer.main

    names = typer.main.get_command(app).list_commands(None)
    assert {"run", "experiments", "datasets", "info"} <= set(names)
    for name in names:
        line = next((ln for ln in result.output.splitlines() if re.search(rf"\b{name}\b\s+\S", ln)), None)
        assert line is not None, f"{name} missing from --help"


def test_experiments_lists_data():
    result = runner.invoke(app, ["experiments"])
    assert result.exit_code == 0 and "data" in result.output


def test_unknown_experiment_is_one_red_line_and_exit_2():
    result = runner.invoke(app, ["run", "nope"])
    assert result.exit_code == 2
    assert "unknown experiment 'nope'" in result.output and "data" in result.output
    assert "Traceback" not in result.output


def test_debug_shows_the_exception():
    result = runner.invoke(app, ["--debug", "run", "nope"])
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)


def test_info_on_a_file(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(3, 4))
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "3 x 4" in result.output and "0 .. 11" in result.output


def test_info_on_a_missing_file(tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path / "missing.nii.gz")])
    assert result.exit_code == 2 and "missing.nii.gz" in result.output and "Traceback" not in result.output


def test_run_writes_report_and_refuses_to_overwrite(isolated_registry, tmp_path):
    @isolated_registry.experiment("tiny")
    def tiny(cfg, run):
        """A tiny experiment."""
        run.log(seed=cfg.seed)

    out = tmp_path / "r"
    result = runner.invoke(app, ["run", "tiny", "--seed", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists() and str(out / "report.html") in result.output.replace("\n", "")
    again = runner.invoke(app, ["run", "tiny", "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_failing_experiment_exit_1_and_report_kept(isolated_registry, tmp_path):
    @isolated_registry.experiment("explodes")
    def explodes(cfg, run):
        """Raises."""
        raise RuntimeError("kaboom")

    result = runner.invoke(app, ["run", "explodes", "--out", str(tmp_path / "e")])
    assert result.exit_code == 1 and "kaboom" in result.output
    assert (tmp_path / "e" / "report.html").exists()


@pytest.mark.parametrize("args", [["datasets"]])
def test_datasets_lists_embedded_data(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "digits" in result.output and "mnist5k" in result.output

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


def test_the_cli_imports_neither_torch_nor_the_heavy_libraries(tmp_path):
    # `mlimaging --help` and `--version` must answer at once: torch (about a second to import),
    # SciPy, matplotlib and nibabel are imported only inside the commands that use them.
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from mlimaging.cli import app; "
            "r = CliRunner(); assert r.invoke(app, ['--help']).exit_code == 0; "
            "assert r.invoke(app, ['segment', '--help']).exit_code == 0; "
            "assert r.invoke(app, ['train', 'segmenter', '--help']).exit_code == 0; "
            "print(sorted(m for m in ('torch', 'scipy', 'matplotlib', 'nibabel', 'pydicom', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_threads_option_sets_torch_threads_once_for_every_command():
    import torch

    result = runner.invoke(app, ["--threads", "1", "datasets"])
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
    from mlimaging.utils import available_cores

    result = runner.invoke(app, ["datasets"])  # default: every core this process may use
    assert result.exit_code == 0 and torch.get_num_threads() == available_cores()
    result = runner.invoke(app, ["--threads", "0", "datasets"])
    assert result.exit_code == 2 and "--threads" in result.output and "Traceback" not in result.output


def test_threads_are_set_in_one_place():
    # No experiment or command changes torch's thread count itself: only mlimaging.utils.set_torch_threads.
    from pathlib import Path

    import mlimaging

    src = Path(mlimaging.__file__).parent
    users = sorted(str(p.relative_to(src)) for p in src.rglob("*.py") if "set_num_threads(" in p.read_text())
    assert users == ["utils.py"], users


def test_every_readme_command_uses_options_the_command_has():
    # The README's tour runs as written: each `mlimaging ...` line names existing commands and options.
    import shlex
    from pathlib import Path

    import typer.main

    readme = Path(__file__).resolve().parents[2] / "README.md"
    root = typer.main.get_command(app)
    lines = [ln.split("  #")[0].split("# ")[0].strip() for ln in readme.read_text().splitlines()
             if ln.startswith(".venv/bin/mlimaging ")]
    assert len(lines) > 15
    for line in lines:
        words = shlex.split(line)[1:]
        cmd, ctx_options = root, {o for p in root.params for o in p.opts}
        while hasattr(cmd, "commands"):  # a group: the next word names a sub-command
            names = [k for k, w in enumerate(words) if not w.startswith("-") and (k == 0 or words[k - 1] != "--threads")]
            if not names:  # `mlimaging --help`
                break
            cmd = cmd.get_command(None, words[names[0]])
            assert cmd is not None, line
            words = words[names[0] + 1:]
        known = ctx_options | {"--help"} | {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
        unknown = [w for w in words if w.startswith("--") and w not in known]
        assert not unknown, f"{line}: unknown option(s) {unknown}"

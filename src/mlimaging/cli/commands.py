"""Commands of the ``mlimaging`` CLI: thin wrappers over the library (no algorithm lives here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from mlimaging.cli.app import command, console, err_console


@command("experiments")
def experiments_cmd() -> None:
    """List the experiments that `mlimaging run` knows."""
    from mlimaging.experiments import get_experiment, list_experiments

    table = Table("experiment", "what it shows")
    for name in list_experiments():
        table.add_row(name, get_experiment(name).description)
    console.print(table)


@command("run")
def run_cmd(
    name: str = typer.Argument(..., help="Experiment name, or 'all' for every experiment and an index page."),
    quick: bool = typer.Option(False, "--quick", help="Small, fast version (about a minute each) on tiny data."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same numbers."),
    out: Path | None = typer.Option(None, "--out", help="Run folder to create (must not exist). Default: runs/<name>-<time>."),
    root: Path = typer.Option(Path("runs"), "--root", help="Parent folder of new runs when --out is not given."),
) -> None:
    """Run an experiment (or all) and write its report."""
    from mlimaging.experiments import ExperimentFailed, run_all, run_experiment

    if name == "all":
        index, entries = run_all(quick=quick, seed=seed, root=root, out=out, console=err_console)
        failed = [e["name"] for e in entries if e["status"] != "done"]
        console.print(f"report: {index}")
        if failed:
            err_console.print(f"[bold red]error:[/] {len(failed)} experiment(s) failed: {', '.join(failed)} (reports kept)")
            raise typer.Exit(1)
        return
    try:
        run = run_experiment(name, quick=quick, seed=seed, root=root, out=out, console=err_console)
    except ExperimentFailed as exc:
        err_console.print(f"[bold red]error:[/] {exc} (report kept at {exc.run.report_path})")
        raise typer.Exit(1) from None
    console.print(f"report: {run.report_path}")


@command("datasets")
def datasets_cmd() -> None:
    """List the datasets that `load_dataset` knows."""
    from mlimaging.data import list_datasets

    for name in list_datasets():
        console.print(name)


@command("info")
def info_cmd(path: Path = typer.Argument(..., help="An image file: NIfTI, DICOM, PNG/JPEG, NPY/NPZ.")) -> None:
    """Show an image file's shape, type, spacing and intensity range."""
    from mlimaging.data import read_image

    array, spacing = read_image(path)
    table = Table(show_header=False)
    table.add_row("file", str(path))
    table.add_row("shape", " x ".join(map(str, array.shape)))
    table.add_row("dtype", str(array.dtype))
    table.add_row("spacing", ", ".join(f"{s:g}" for s in spacing))
    if array.size:
        table.add_row("range", f"{np.min(array):g} .. {np.max(array):g}")
    console.print(table)

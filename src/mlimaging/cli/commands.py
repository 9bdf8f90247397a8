"""Commands of the ``mlimaging`` CLI: thin wrappers over the library (no algorithm lives here)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from mlimaging.cli.app import command, console, echo_warnings, err_console


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

    if seed < 0:  # refused before a run folder is made (the experiment failed on it, leaving a failed run)
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if out is None and root.exists() and not root.is_dir():  # it said "[Errno 17] File exists"
        raise NotADirectoryError(f"--root {root} is a file; give the folder that holds the runs")
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
def info_cmd(
    path: Path = typer.Argument(..., help="An image file (NIfTI, DICOM, MetaImage, NRRD, MGZ, PNG/JPEG, NPY/NPZ) "
                                          "or a folder of DICOM slices."),
    series: str | None = typer.Option(None, "--series", help="Series Instance UID, for a folder holding several."),
) -> None:
    """Show an image's shape, type, geometry (spacing, origin, direction, orientation) and values."""
    import numpy as np

    from mlimaging.data import read_image

    array, geom = read_image(path, geometry=True, series_uid=series)
    table = Table(show_header=False)
    table.add_row("file", str(path))
    table.add_row("shape", " x ".join(map(str, array.shape)))
    table.add_row("dtype", str(array.dtype))
    table.add_row("spacing (mm)", ", ".join(f"{s:g}" for s in geom.spacing))
    table.add_row("origin (LPS mm)", ", ".join(f"{v:g}" for v in geom.origin))
    table.add_row("direction", "\n".join("  ".join(f"{v:+.4f}" for v in row) for row in geom.direction)
                  + "\n(columns: array axes; rows: L, P, S)" * (geom.world_ndim == 3))
    if geom.world_ndim == 3:
        codes = geom.axis_codes()
        table.add_row("orientation", f"{codes} (array axes point to {', '.join(codes)}; nibabel's axis codes)"
                      + (", oblique" if geom.is_oblique else ""))
    if geom.nifti is not None:
        table.add_row("NIfTI codes", f"qform {geom.nifti.qform_code}, sform {geom.nifti.sform_code}")
    if array.size:
        finite = np.isfinite(array) if array.dtype.kind in "fc" else None
        if finite is not None and not finite.all():
            n_nan = int(np.isnan(array).sum())
            n_inf = int(array.size - finite.sum() - n_nan)
            table.add_row("non-finite", f"{n_nan} NaN, {n_inf} infinite of {array.size} values")
            values = array[finite]
        else:
            values = array
        if values.size:
            table.add_row("range", f"{np.min(values):g} .. {np.max(values):g}"
                          + (" (finite values)" if finite is not None and not finite.all() else ""))
        else:
            table.add_row("range", "no finite values")
    console.print(table)


def _int_list(text: str | None, *, name: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, e.g. 1,2,3; got {text!r}") from None


def _float_list(text: str | None, *, name: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated numbers, e.g. 0.8,0.8,2.5; got {text!r}") from None


@command("evaluate")
def evaluate_cmd(
    pred: Path = typer.Argument(..., help="Predicted label map, or a folder of them."),
    gt: Path = typer.Argument(..., help="Ground-truth label map, or a folder matched to PRED by file name."),
    labels: str | None = typer.Option(None, "--labels", help="Labels to evaluate, e.g. 1,2,3 (default: all non-zero)."),
    spacing: str | None = typer.Option(None, "--spacing", help="Voxel spacing, e.g. 0.8,0.8,2.5 (default: from the files)."),
    metrics: str = typer.Option("dice,hd95,assd", "--metrics", help="Comma-separated metric names."),
    out: Path | None = typer.Option(None, "--out", help="Write per-case rows here."),
    fmt: str | None = typer.Option(None, "--format", help="csv or json (default: from --out's extension, else csv)."),
    jobs: int = typer.Option(1, "--jobs", min=1, help="Evaluate cases in this many parallel processes."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Evaluate segmentations: Dice, Hausdorff, surface distances per case and label."""


    from mlimaging.metrics.files import evaluate_files

    fmt = (fmt or (out.suffix.lstrip(".") if out is not None and out.suffix else "csv")).lower()
    if fmt not in ("csv", "json"):
        raise ValueError(f"--format must be csv or json, got {fmt!r}")
    if out is not None and out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name such as rows.{fmt}")
    if out is not None and out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    spacing_values = _float_list(spacing, name="--spacing")
    with echo_warnings():
        result = evaluate_files(pred, gt, labels=_int_list(labels, name="--labels"),
                                spacing=spacing_values, metrics=names, jobs=jobs)
    title = f"{len(result.rows)} rows"
    if result.units_note() is not None:
        title += f"; {result.units_note()}" + (
            " (spacing from --spacing)" if spacing_values is not None else {
                "mm": " (spacing from the files)",
                "voxels": " (the files store no spacing; pass --spacing for mm)",
            }.get(result.metadata["distance_units"], ""))
    table = Table("label", "metric", "mean", "std", "median", "n", "n_empty", title=title)
    for s in result.summary():
        table.add_row(str(s["label"]), s["metric"], f"{s['mean']:.4g}", f"{s['std']:.4g}", f"{s['median']:.4g}",
                      str(s["n"]), str(s["n_empty"]))
    console.print(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        (result.to_csv if fmt == "csv" else result.to_json)(out)
        console.print(f"rows: {out}")

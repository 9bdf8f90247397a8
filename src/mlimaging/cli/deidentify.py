"""``mlimaging deidentify IN OUT``: de-identify DICOM files with the PS3.15 Annex E basic profile.

Thin over :func:`mlimaging.privacy.deidentify.deidentify_dicom`. IN is a DICOM file or a folder
(searched recursively; OUT then mirrors its relative paths). Every attribute of Table E.1-1
is removed, emptied, replaced by a dummy or by a new UID per the Basic Profile, private
attributes are removed, UIDs are replaced consistently across all files of the run (series
stay together), and pixel data is copied unchanged. Files that are not DICOM are skipped with
one yellow line giving their count. Nothing is overwritten without ``--force``.

Examples
--------
``mlimaging deidentify scans/ scans_deid/``

``mlimaging deidentify CT_small.dcm ct_deid.dcm --force``
"""

from __future__ import annotations

from pathlib import Path

import typer

from mlimaging.cli.app import command, console, echo_warnings, err_console

__all__ = ["deidentify_cmd"]


@command("deidentify")
def deidentify_cmd(
    src: Path = typer.Argument(..., metavar="IN", help="A DICOM file or a folder of DICOM files (recursive)."),
    dst: Path = typer.Argument(..., metavar="OUT", help="Output file, or output folder for a folder IN."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing outputs / write into a non-empty OUT."),
    remove_conditional: bool = typer.Option(
        False, "--remove-conditional",
        help="Resolve X/Z, X/D, Z/D, X/Z/D, X/Z/U* to their first action (remove) instead of the "
             "IOD-conformant last one."),
) -> None:
    """De-identify DICOM files (PS3.15 Annex E basic profile): identifying attributes removed or
    replaced, private tags removed, UIDs replaced consistently, pixel data unchanged."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from mlimaging.privacy.deidentify import deidentify_dicom

    if not src.exists():
        raise FileNotFoundError(f"IN {src} does not exist; give a DICOM file or a folder of DICOM files")
    target = dst / src.name if src.is_file() and dst.is_dir() else dst
    if not force and (target.is_file() or (target.is_dir() and any(target.iterdir()))):
        raise FileExistsError(f"OUT {target} already exists; pass --force to overwrite it")
    progress = Progress(TextColumn("[bold]deidentify[/]"), BarColumn(), TextColumn("{task.completed}/{task.total} files"),
                        TimeElapsedColumn(), console=err_console, transient=True, disable=not err_console.is_terminal)
    with progress, echo_warnings():
        task = progress.add_task("files", total=None)

        def advance(i: int, n: int, _path: Path) -> None:
            progress.update(task, completed=i, total=n)

        summary = deidentify_dicom(src, dst, force=force, conformance=not remove_conditional, progress=advance)
    table = Table("", "count", title=f"deidentify {src} -> {dst}")
    for label, count in summary.to_rows():
        table.add_row(label, str(count))
    console.print(table)

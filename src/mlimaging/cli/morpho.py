"""``mlimaging morpho IMAGE...``: Morpho-MNIST measurements of digit images.

Thin over :func:`mlimaging.generative.morphomnist.measure`: reads each image (PNG, NPY,
NIfTI, ... through :func:`mlimaging.cli._images.read_gray`; a 3D array is a stack of 2D
images along its first axis), prints one table row per image and optionally writes the
rows as JSON. Nothing is overwritten without ``--force``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from mlimaging.cli.app import command, console, err_console

__all__ = ["morpho_cmd"]

_COLUMNS = ("area", "length", "thickness", "slant", "width", "height", "intensity")


def _number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@command("morpho")
def morpho_cmd(
    images: list[Path] = typer.Argument(..., help="Digit images (PNG, NPY, NIfTI, ...): 2D, or a 3D stack of 2D "
                                        "images along the first axis; values in [0, 1] or [0, 255]."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the measurements to this JSON file."),
    scale: int = typer.Option(4, "--scale", help="Upsampling factor before binarising (4 in Castro et al. 2019)."),
    max_value: float | None = typer.Option(None, "--max-value", help="Value of full intensity, 1 or 255 "
                                           "(default: 255 for uint8 or any value above 1, else 1)."),
    invert: bool = typer.Option(False, "--invert", help="Measure max - image: for dark strokes on a light background "
                                "(Morpho-MNIST expects light strokes on black, as MNIST)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --json if it exists."),
) -> None:
    """Morpho-MNIST measurements: area, stroke length, thickness, slant, width, height, intensity.

    Definitions (Castro et al. 2019, arXiv:1809.10780): the image is upsampled 4x and
    binarised at half its range; thickness = 2 x mean distance to the outline along the
    skeleton, slant = arctan(-mu11/mu02) (positive when leaning right), intensity = median
    grey level (0-255) of the pixels above half the range (Pawlowski et al. 2020).
    """
    import numpy as np
    import torch
    from rich import box
    from rich.table import Table

    from mlimaging.cli._images import read_gray
    from mlimaging.data.preprocessing import has_light_background
    from mlimaging.generative.morphomnist import measure

    if not 1 <= scale <= 16:
        raise ValueError(f"--scale must be an integer in 1..16, got {scale}")
    if max_value is not None and not (math.isfinite(max_value) and max_value > 0):
        raise ValueError(f"--max-value must be a positive number (1 or 255), got {max_value}")
    if json_out is not None and json_out.is_dir():  # before 'exists': --force cannot help a folder
        raise IsADirectoryError(f"--json {json_out} is a folder; give a file name like morpho.json")
    if json_out is not None and json_out.exists() and not force:
        raise FileExistsError(f"--json {json_out} already exists; pass --force to overwrite it")
    rows: list[dict] = []
    for path in images:
        array, _ = read_gray(path, "IMAGE")
        stack = array if array.ndim == 3 else array[None]
        top = max_value if max_value is not None else (255.0 if stack.dtype == np.uint8 or stack.max() > 1 else 1.0)
        if invert:
            stack = top - stack.astype(np.float64)
        try:
            values = measure(stack, scale=scale, max_value=max_value)
        except ValueError as exc:
            raise ValueError(f"IMAGE {path}: {exc}") from None
        if not invert:  # after measure: an image it refuses gets its one red line, no warning before it
            light = [k for k in range(len(stack))
                     if has_light_background(torch.as_tensor(np.asarray(stack[k], np.float32) / top)[None])]
            if light:
                which = "" if array.ndim == 2 else f" (images {', '.join(map(str, light[:5]))}{', ...' if len(light) > 5 else ''})"
                err_console.print(f"[yellow]warning:[/] {path}{which} looks like a dark object on a light background; "
                                  "Morpho-MNIST measures light strokes on black: pass --invert", highlight=False,
                                  soft_wrap=True)
        for k in range(len(stack)):
            name = str(path) if array.ndim == 2 else f"{path}[{k}]"
            short = path.name if array.ndim == 2 else f"{path.name}[{k}]"
            rows.append({"image": name, "short": short, **{c: _number(values[c][k]) for c in _COLUMNS}})

    table = Table(title="Morpho-MNIST measurements", box=box.SIMPLE_HEAD, pad_edge=False,
                  caption="area px², lengths px, slant degrees (positive: leaning right), intensity 0-255")
    table.add_column("image", overflow="fold")
    for c in _COLUMNS:
        table.add_column(c, justify="right", overflow="fold", min_width=len(c))
    for row in rows:
        cells = [row["short"]]
        for c in _COLUMNS:
            v = row[c]
            if v is None:
                cells.append("-")
            elif c == "slant":
                cells.append(f"{np.rad2deg(v):.1f}")
            elif c == "thickness":
                cells.append(f"{v:.2f}")
            else:
                cells.append(f"{v:.1f}")
        table.add_row(*cells)
    console.print(table)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"units": {"area": "px^2", "length": "px", "thickness": "px", "slant": "rad", "width": "px",
                         "height": "px", "intensity": "grey levels 0-255"}, "scale": scale, "inverted": invert,
               "images": [{k: v for k, v in r.items() if k != "short"} for r in rows]}
        json_out.write_text(json.dumps(doc, indent=2))
        console.print(f"wrote {json_out}", highlight=False, soft_wrap=True)

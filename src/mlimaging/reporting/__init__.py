"""Runs and reports: a run folder with config, metrics, figures and a self-contained HTML page."""

from __future__ import annotations

from mlimaging.reporting.figures import image_grid, label_cmap, middle_slice
from mlimaging.reporting.html import format_value, render_index, render_report
from mlimaging.reporting.run import Run, slugify, to_jsonable

__all__ = [
    "Run",
    "format_value",
    "image_grid",
    "label_cmap",
    "middle_slice",
    "render_index",
    "render_report",
    "slugify",
    "to_jsonable",
]

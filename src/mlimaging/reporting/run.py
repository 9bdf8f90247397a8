"""A run folder: config, metrics, figures and one self-contained HTML report."""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import platform
import re
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mlimaging.reporting.html import render_report
from mlimaging.utils import package_versions

__all__ = ["Run", "slugify", "to_jsonable"]

T = TypeVar("T")


def slugify(text: str) -> str:
    """Lower-case file-name-safe version of ``text`` (``"Bias field!"`` -> ``"bias-field"``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "item"


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, NumPy/torch scalars and arrays, paths and tuples to JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch tensors
        return obj.detach().cpu().tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)  # JSON has no NaN/inf; keep them readable
    return obj


def _torch_threads() -> int | None:
    """torch's intra-op thread count (set by ``mlimaging --threads``), or None if torch is not loaded."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None and hasattr(torch, "get_num_threads") else None


class Run:
    """One experiment run, stored in its own folder.

    The folder holds ``config.json`` (parameters, seed, package versions and the
    command that reproduces the run), ``metrics.json`` (written after every
    :meth:`log`, so nothing is lost when a run fails), ``figures/*.png``,
    ``tables/*.csv`` and ``report.html``: one self-contained page (figures
    inlined) readable offline.

    Use :meth:`create` to make a new run; an existing folder is never overwritten.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     run = Run.create("demo", {"seed": 0}, root=tmp)
    ...     run.log({"accuracy": 0.9})
    ...     csv_path = run.table("Scores", [{"method": "a", "dice": 0.8}])
    ...     report = run.finish()
    ...     report.name
    'report.html'
    """

    def __init__(self, path: Path, name: str, config: Mapping[str, Any], *, console: Console | None = None):
        self.path = Path(path)
        self.name = name
        self.config = dict(config)
        self.metrics: dict[str, Any] = {}
        self.blocks: list[dict[str, Any]] = []
        self.status = "running"
        self.console = console or Console(stderr=True)
        self._started = time.perf_counter()
        self._figure_names: set[str] = set()
        self._table_names: set[str] = set()

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(
        cls,
        name: str,
        config: Any = None,
        *,
        root: str | Path = "runs",
        path: str | Path | None = None,
        command: str | None = None,
        console: Console | None = None,
    ) -> Run:
        """Create ``root/<name>-<timestamp>/`` (or exactly ``path``) and write ``config.json``.

        Raises
        ------
        FileExistsError
            If ``path`` is given and already exists: runs are never overwritten.
        """
        if path is not None:
            folder = Path(path)
            if folder.exists():
                raise FileExistsError(f"run folder {folder} already exists; choose another --out (runs are never overwritten)")
            folder.mkdir(parents=True)
        else:
            root = Path(root)
            root.mkdir(parents=True, exist_ok=True)
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            base = root / f"{name}-{stamp}"
            folder, k = base, 1
            while True:
                try:
                    folder.mkdir()
                    break
                except FileExistsError:
                    k += 1
                    folder = base.with_name(f"{base.name}-{k}")
        cfg = to_jsonable(config) if config is not None else {}
        full = {
            "experiment": name,
            "config": cfg,
            "seed": cfg.get("seed") if isinstance(cfg, dict) else None,
            "command": command,
            "started": _dt.datetime.now().isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": package_versions(),
            "torch_threads": _torch_threads(),
        }
        (folder / "figures").mkdir()
        run = cls(folder, name, full, console=console)
        run._write_json("config.json", full)
        return run

    # ------------------------------------------------------------------ content
    def log(self, metrics: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        """Merge metrics into ``metrics.json`` (written at once)."""
        self.metrics.update(to_jsonable(dict(metrics or {}, **kwargs)))
        self._write_json("metrics.json", self.metrics)

    def section(self, title: str, text: str | None = None) -> None:
        """Start a new section of the report, with an optional paragraph."""
        self.blocks.append({"kind": "section", "title": title})
        if text:
            self.text(text)

    def text(self, text: str) -> None:
        """Add a paragraph (plain text; blank lines separate paragraphs)."""
        self.blocks.append({"kind": "text", "text": text})

    def table(self, title: str, rows: Sequence[Mapping[str, Any]], *, caption: str | None = None) -> Path:
        """Add a table (one dict per row) to the report and write it to ``tables/<title>.csv``."""
        rows = [to_jsonable(dict(r)) for r in rows]
        columns: list[str] = []
        for r in rows:
            columns.extend(c for c in r if c not in columns)
        slug = self._unique(slugify(title), self._table_names)
        (self.path / "tables").mkdir(exist_ok=True)
        out = self.path / "tables" / f"{slug}.csv"
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        self.blocks.append({"kind": "table", "title": title, "columns": columns, "rows": rows, "caption": caption})
        return out

    def figure(self, fig: Any, name: str, *, caption: str | None = None, dpi: int = 100) -> Path:
        """Save a matplotlib figure to ``figures/<name>.png``, close it and add it to the report."""
        import matplotlib.pyplot as plt

        slug = self._unique(slugify(name), self._figure_names)
        out = self.path / "figures" / f"{slug}.png"
        fig.savefig(out, dpi=dpi, bbox_inches="tight")
        plt.close(fig)
        self.blocks.append({"kind": "figure", "path": out, "caption": caption or name})
        return out

    # ------------------------------------------------------------------ progress
    def track(self, iterable: Iterable[T], description: str, *, total: int | None = None) -> Iterator[T]:
        """Iterate with a rich progress bar on this run's console (on a terminal only: in a log
        file or a pipe the items are iterated silently, so the log has no bar remnants)."""
        if not self.console.is_terminal or self.console.is_dumb_terminal:
            yield from iterable
            return
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        progress = Progress(
            TextColumn(f"[bold]{self.name}[/]"), TextColumn("{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        with progress:
            task = progress.add_task(description, total=total)
            for item in iterable:
                yield item
                progress.advance(task)

    # ------------------------------------------------------------------ finishing
    def finish(self, *, error: str | None = None) -> Path:
        """Write ``report.html`` (and ``metrics.json``), marking the run done or failed."""
        self.status = "failed" if error else "done"
        seconds = time.perf_counter() - self._started
        self.config.update(status=self.status, seconds=round(seconds, 3))
        if error:
            self.config["error"] = error
        self._write_json("config.json", self.config)
        self._write_json("metrics.json", self.metrics)
        out = self.path / "report.html"
        out.write_text(render_report(self.name, self.config, self.metrics, self.blocks, error=error))
        return out

    @property
    def report_path(self) -> Path:
        return self.path / "report.html"

    # ------------------------------------------------------------------ helpers
    def _write_json(self, filename: str, data: Any) -> None:
        tmp = self.path / f".{filename}.tmp"
        tmp.write_text(json.dumps(to_jsonable(data), indent=2, sort_keys=False))
        tmp.replace(self.path / filename)

    @staticmethod
    def _unique(slug: str, seen: set[str]) -> str:
        name, k = slug, 1
        while name in seen:
            k += 1
            name = f"{slug}-{k}"
        seen.add(name)
        return name

"""Experiments: functions registered by name, run into a :class:`~mlimaging.reporting.Run`."""

from __future__ import annotations

import dataclasses
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from mlimaging.reporting import Run
from mlimaging.reporting.html import render_index

__all__ = [
    "Experiment",
    "ExperimentConfig",
    "ExperimentFailed",
    "experiment",
    "get_experiment",
    "list_experiments",
    "run_all",
    "run_experiment",
]


@dataclass
class ExperimentConfig:
    """Base configuration: every experiment's config is a dataclass with these fields.

    ``quick`` runs a small version (about a minute on two cores) on tiny data.
    """

    quick: bool = False
    seed: int = 0


@dataclass(frozen=True)
class Experiment:
    name: str
    func: Callable[[Any, Run], None]
    config_class: type
    description: str


class ExperimentFailed(RuntimeError):
    """Raised by :func:`run_experiment` after a failed run has written its report."""

    def __init__(self, message: str, run: Run):
        super().__init__(message)
        self.run = run


_REGISTRY: dict[str, Experiment] = {}


def experiment(name: str, *, config: type = ExperimentConfig, description: str | None = None) -> Callable:
    """Register ``func(config, run)`` as the experiment ``name``.

    ``config`` is a dataclass (a subclass of :class:`ExperimentConfig`); the
    description defaults to the first line of the function's docstring.

    Examples
    --------
    >>> @experiment("hello-doc")
    ... def hello(cfg, run):
    ...     '''Say hello.'''
    ...     run.log(greeting="hello")
    >>> "hello-doc" in list_experiments()
    True
    """
    if not (dataclasses.is_dataclass(config) and issubclass(config, ExperimentConfig)):
        raise TypeError("config must be a dataclass subclass of ExperimentConfig")

    def register(func: Callable[[Any, Run], None]) -> Callable[[Any, Run], None]:
        if name in _REGISTRY and _REGISTRY[name].func is not func:
            raise ValueError(f"experiment {name!r} is already registered")
        doc = description or next(iter((func.__doc__ or "").strip().splitlines()), "")
        _REGISTRY[name] = Experiment(name, func, config, doc)
        return func

    return register


def list_experiments() -> list[str]:
    """Names of the registered experiments, sorted."""
    return sorted(_REGISTRY)


def get_experiment(name: str) -> Experiment:
    """The registered experiment ``name``; a ``ValueError`` lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; choose one of: {', '.join(list_experiments())}") from None


def _command(name: str, config: ExperimentConfig) -> str:
    parts = ["mlimaging", "run", name, "--seed", str(config.seed)]
    if config.quick:
        parts.append("--quick")
    return " ".join(parts)


def run_experiment(
    name: str,
    *,
    quick: bool = False,
    seed: int = 0,
    root: str | Path = "runs",
    out: str | Path | None = None,
    console: Console | None = None,
    **overrides: Any,
) -> Run:
    """Run experiment ``name`` into a new run folder and write its report.

    A failure still writes ``report.html`` (with the traceback and everything
    logged so far) and then raises :class:`ExperimentFailed`.
    """
    exp = get_experiment(name)
    fields = {f.name for f in dataclasses.fields(exp.config_class)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for experiment {name!r}; valid: {sorted(fields)}")
    config = exp.config_class(quick=quick, seed=seed, **overrides)
    run = Run.create(name, config, root=root, path=out, command=_command(name, config), console=console)
    try:
        exp.func(config, run)
    except BaseException as exc:  # KeyboardInterrupt too: keep what was computed
        run.finish(error="".join(traceback.format_exception(exc)))
        if isinstance(exc, Exception):
            raise ExperimentFailed(f"experiment {name!r} failed: {exc}", run) from exc
        raise
    run.finish()
    return run


def run_all(
    *,
    quick: bool = False,
    seed: int = 0,
    root: str | Path = "runs",
    out: str | Path | None = None,
    names: list[str] | None = None,
    console: Console | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Run every experiment (or ``names``) into one folder and write an index ``report.html``.

    Returns the index path and one entry per experiment (``name``, ``status``,
    ``seconds``, ``report``). A failing experiment does not stop the others.
    """
    console = console or Console(stderr=True)
    names = names or list_experiments()
    for n in names:
        get_experiment(n)
    if out is not None:
        folder = Path(out)
        if folder.exists():
            raise FileExistsError(f"output folder {folder} already exists; runs are never overwritten")
        folder.mkdir(parents=True)
    else:
        folder = Run.create("all", {"quick": quick, "seed": seed}, root=root, console=console).path
    entries = []
    for n in names:
        console.print(f"[bold]running[/] {n}")
        t0 = time.perf_counter()
        try:
            run = run_experiment(n, quick=quick, seed=seed, out=folder / n, console=console)
            status = "done"
        except ExperimentFailed as exc:
            run, status = exc.run, "failed"
            console.print(f"[red]{exc}[/] (report kept at {run.report_path})")
        entries.append({
            "name": n, "status": status, "seconds": round(time.perf_counter() - t0, 2),
            "report": f"{n}/report.html", "description": get_experiment(n).description,
            "figures": [f"{n}/figures/{p.name}" for p in sorted(
                (folder / n / "figures").glob("*.png"), key=lambda p: (p.stat().st_mtime_ns, p.name))],
        })
    index = folder / "report.html"
    mode = "quick" if quick else "full"
    index.write_text(render_index(f"mlimaging experiments ({mode} mode, seed {seed})", entries))
    return index, entries

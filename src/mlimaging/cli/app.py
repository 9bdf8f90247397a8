"""The ``mlimaging`` command: typer app, global options and error handling.

Importing this package must stay cheap (``mlimaging --help`` answers in well under a
second): the command modules import torch, NumPy and the library inside the commands
that need them, never at module level.
"""

from __future__ import annotations

import contextlib
import functools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

import mlimaging

__all__ = ["app", "command", "console", "echo_warnings", "err_console", "main"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="mlimaging",
    help="Machine learning for imaging, medical images first: datasets, experiments and reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}

# Errors that come from the user's input: one red line and exit code 2, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def command(*args: Any, typer_app: typer.Typer | None = None, **kwargs: Any) -> Callable[[F], F]:
    """``app.command`` (or ``typer_app.command`` for a sub-app) whose function turns user errors
    into one red line and exit code 2.

    ``mlimaging --debug ...`` shows the traceback instead.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def guarded(*a: Any, **kw: Any) -> Any:
            try:
                return func(*a, **kw)
            except USER_ERRORS as exc:
                if _state["debug"]:
                    raise
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None

        (typer_app or app).command(*args, **kwargs)(guarded)
        return func

    return decorate


@contextlib.contextmanager
def echo_warnings(label: str = "warning") -> Iterator[None]:
    """Record the warnings raised in the block, then print each as one yellow ``label:`` line on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        err_console.print(f"[yellow]{label}:[/] {escape(str(w.message))}", highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"mlimaging {mlimaging.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    threads: int | None = typer.Option(None, "--threads", help="Threads torch may use in every command and "
                                       "experiment (default: the cores available to this process)."),
) -> None:
    """Machine learning for imaging, medical images first."""
    from mlimaging.utils import set_torch_threads

    _state["debug"] = debug
    if threads is not None and threads < 1:
        err_console.print(f"[bold red]error:[/] --threads must be a positive integer, got {threads}", highlight=False)
        raise typer.Exit(2)
    set_torch_threads(threads)


def main() -> None:
    """Entry point of the ``mlimaging`` console script."""
    app()

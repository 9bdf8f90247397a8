"""The ``mlimaging`` command line (typer + rich), thin over the library."""

from __future__ import annotations

from mlimaging.cli import commands as _commands  # noqa: F401  (registers the commands)
from mlimaging.cli.app import app, main

__all__ = ["app", "main"]

"""The ``mlimaging`` command line (typer + rich), thin over the library."""

from __future__ import annotations

# Importing the command modules registers their commands on ``app``.
from mlimaging.cli import calc as _calc  # noqa: F401
from mlimaging.cli import commands as _commands  # noqa: F401
from mlimaging.cli.app import app, main

__all__ = ["app", "main"]

"""The ``mlimaging`` command line (typer + rich), thin over the library."""

from __future__ import annotations

# Importing the command modules registers their commands on ``app``.
from mlimaging.cli import attack as _attack  # noqa: F401
from mlimaging.cli import calc as _calc  # noqa: F401
from mlimaging.cli import classify as _classify  # noqa: F401
from mlimaging.cli import commands as _commands  # noqa: F401
from mlimaging.cli import deidentify as _deidentify  # noqa: F401
from mlimaging.cli import detect as _detect  # noqa: F401
from mlimaging.cli import explain as _explain  # noqa: F401
from mlimaging.cli import fl as _fl  # noqa: F401  (the `fl` group: simulate; deploy registers on fl_app)
from mlimaging.cli import fl_deploy as _fl_deploy  # noqa: F401  (registers `fl deploy` on the `fl` group)
from mlimaging.cli import gan as _gan  # noqa: F401
from mlimaging.cli import morpho as _morpho  # noqa: F401
from mlimaging.cli import pretrain as _pretrain  # noqa: F401
from mlimaging.cli import privacy as _privacy  # noqa: F401
from mlimaging.cli import register as _register  # noqa: F401
from mlimaging.cli import restore as _restore  # noqa: F401
from mlimaging.cli import sam as _sam  # noqa: F401
from mlimaging.cli import scm as _scm  # noqa: F401
from mlimaging.cli import segment as _segment  # noqa: F401
from mlimaging.cli import superres as _superres  # noqa: F401
from mlimaging.cli import train as _train  # noqa: F401  (the `train` group; its commands import it too)
from mlimaging.cli.app import app, main

__all__ = ["app", "main"]

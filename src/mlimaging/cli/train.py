"""``mlimaging train ...``: the sub-command group for training models over the engine.

Each area adds its command to :data:`train_app` from its own CLI module
(``train classifier`` in :mod:`mlimaging.cli.classify`, ``train segmenter`` in
:mod:`mlimaging.cli.segment`).
"""

from __future__ import annotations

import typer

from mlimaging.cli.app import app

__all__ = ["train_app"]

train_app = typer.Typer(
    help="Train a model with the training engine (checkpoints, resume, report).",
    no_args_is_help=True,
)
app.add_typer(train_app, name="train")

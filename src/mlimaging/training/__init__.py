"""The training engine: one loop (:func:`fit`) for every model, loss and data set.

``fit`` trains with checkpoints that resume bit-for-bit, early stopping, gradient clipping,
metrics from :mod:`mlimaging.metrics`, rich progress bars and data-parallel scale-out under
``torchrun``; ``evaluate`` scores a model; ``freeze`` and ``replace_head`` prepare transfer
learning; a :class:`TrainStep` plugs methods whose step is not ``loss(model(x), y)`` into ``fit``.
"""

from __future__ import annotations

from mlimaging.training.callbacks import Callback, EarlyStopping, TrainState
from mlimaging.training.checkpoint import (
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from mlimaging.training.distributed import cleanup_distributed, init_distributed
from mlimaging.training.engine import evaluate, fit
from mlimaging.training.history import History
from mlimaging.training.step import SupervisedStep, TrainStep
from mlimaging.training.transfer import freeze, replace_head, unfreeze

__all__ = [
    "Callback",
    "EarlyStopping",
    "History",
    "SupervisedStep",
    "TrainState",
    "TrainStep",
    "cleanup_distributed",
    "evaluate",
    "fit",
    "freeze",
    "get_rng_state",
    "init_distributed",
    "load_checkpoint",
    "replace_head",
    "save_checkpoint",
    "set_rng_state",
    "unfreeze",
]

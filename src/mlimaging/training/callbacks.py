"""Callbacks: hooks called by :func:`mlimaging.training.fit`, and early stopping."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mlimaging.training.history import History, best_index

__all__ = ["Callback", "EarlyStopping", "TrainState"]


@dataclass
class TrainState:
    """What callbacks see. ``fit`` updates it in place; set ``stop_training = True`` to stop.

    Attributes
    ----------
    model, optimizer, scheduler
        The objects being trained (``model`` is the unwrapped module, not the DDP wrapper).
    epoch, epochs
        Current epoch (1-based) and the total requested.
    batch
        Index of the batch just finished (0-based, within the epoch).
    output, target, loss
        Last batch's model output, target and loss tensor (``loss`` still attached to the graph
        in ``on_batch_end``: call ``.item()`` only if you need the number, it syncs devices).
    logs
        The record of the current epoch (filled at ``on_epoch_end``).
    history
        The :class:`History` so far.
    rank, world_size
        Process rank and number of processes (0 and 1 outside ``torchrun``).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    history: History
    epochs: int
    epoch: int = 0
    batch: int = 0
    output: Any = None
    target: Any = None
    loss: Any = None
    logs: dict[str, Any] = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1
    stop_training: bool = False

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints (rank 0)."""
        return self.rank == 0


class Callback:
    """Base class: override any of the hooks; each receives the :class:`TrainState`.

    Any object with some of these methods works as a callback; subclassing is optional.

    Examples
    --------
    >>> class PrintLoss(Callback):
    ...     def on_epoch_end(self, state):
    ...         print(state.epoch, round(state.logs["loss"], 3))
    """

    def on_epoch_start(self, state: TrainState) -> None:
        """Called before the first batch of each epoch."""

    def on_batch_end(self, state: TrainState) -> None:
        """Called after each optimiser step."""

    def on_epoch_record(self, state: TrainState) -> None:
        """Called when the epoch's record (``state.logs``: losses, validation metrics, lr, seconds)
        is complete, before it enters the history, the checkpoint and the progress line: a callback
        may add scalar values to it (the privacy budget spent, a custom metric)."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after validation, the scheduler step and checkpointing of each epoch."""

    def on_fit_end(self, state: TrainState) -> None:
        """Called once when training ends (also after early stopping)."""


class EarlyStopping(Callback):
    r"""Stop when the monitored value has not improved for ``patience`` epochs.

    An epoch improves on the best so far when :math:`v < v_{best} - \delta` (``mode="min"``)
    or :math:`v > v_{best} + \delta` (``mode="max"``), :math:`\delta` = ``min_delta``. The
    decision is computed from the history alone, so it survives a resume unchanged.

    Parameters
    ----------
    patience
        Number of epochs without improvement after which training stops (>= 1).
    min_delta
        Smallest change that counts as an improvement (>= 0).
    monitor, mode
        Value to watch; ``None`` uses fit's ``monitor``/``mode`` (``"val_loss"``, ``"min"``).

    Examples
    --------
    >>> stop = EarlyStopping(patience=2)
    >>> stop.should_stop(History([{"epoch": e, "val_loss": v} for e, v in enumerate([3, 2, 2.5, 2.1], 1)]))
    True
    """

    def __init__(self, patience: int, *, min_delta: float = 0.0, monitor: str | None = None,
                 mode: str | None = None):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {patience!r}")
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        if mode not in (None, "min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.patience = patience
        self.min_delta = float(min_delta)
        self.monitor = monitor
        self.mode = mode

    def should_stop(self, history: History) -> bool:
        """True when the last ``patience`` epochs brought no improvement."""
        monitor = self.monitor or history.monitor
        mode = self.mode or history.mode
        if not history.epochs:
            return False
        best = best_index([e.get(monitor) for e in history.epochs], mode=mode, min_delta=self.min_delta)
        since = len(history.epochs) - 1 - (best if best is not None else -1)
        return since >= self.patience

    def on_epoch_end(self, state: TrainState) -> None:
        if self.should_stop(state.history):
            state.stop_training = True


def call(callbacks: Iterable[Any], hook: str, state: TrainState) -> None:
    """Call ``hook(state)`` on every callback that defines it."""
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)

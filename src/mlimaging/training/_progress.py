"""One rich progress bar per epoch (batches done, running loss), or nothing at all."""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column


class EpochProgress:
    """Progress display for :func:`~mlimaging.training.fit`; every method is a no-op when disabled.

    While an epoch runs, its bar shows batches done and the running loss (refreshed every
    ``every`` batches only, because reading a tensor's value waits for the device); when the
    epoch ends the bar is replaced by one summary line with the epoch's record.
    """

    def __init__(self, epochs: int, *, enabled: bool, every: int = 10, console: Console | None = None):
        self.enabled, self.every, self.epochs = enabled, every, epochs
        self._progress: Progress | None = None
        self._count = 0
        if enabled:
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}", table_column=Column(no_wrap=True)),
                BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=console or Console(stderr=True), transient=True,
            )
            self._progress.start()

    def start(self, epoch: int, total: int | None) -> Any:
        if self._progress is None:
            return None
        self._count = 0
        return self._progress.add_task("", total=total, epoch=f"{epoch}/{self.epochs}", info="")

    def advance(self, task: Any, loss: torch.Tensor) -> None:
        if self._progress is None:
            return
        self._count += 1
        if self._count % self.every == 1 or self.every == 1:
            self._progress.update(task, advance=1, info=f"loss {float(loss.detach()):.4f}")
        else:
            self._progress.advance(task)

    def finish(self, task: Any, record: dict[str, Any]) -> None:
        if self._progress is None:
            return
        info = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch", "seconds")
                        and isinstance(v, float))
        self._progress.update(task, visible=False)
        self._progress.console.print(f"epoch {record['epoch']}/{self.epochs} ({record['seconds']:.1f} s) {info}",
                                     highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

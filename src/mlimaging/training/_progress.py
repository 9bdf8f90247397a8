"""One rich progress bar per epoch (batches done, running loss), or plain lines, or nothing.

On a terminal each epoch has a live bar that is replaced by the epoch's summary line; when
the output goes to a file or a pipe (``mlimaging ... | tee log``) only the summary lines are
printed, one per epoch, with no control codes and no blank lines.
"""

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
    epoch ends the bar is replaced by one summary line with the epoch's record. Outside a
    terminal there is no bar, only the summary lines.
    """

    def __init__(self, epochs: int, *, enabled: bool, every: int = 10, console: Console | None = None):
        self.enabled, self.every, self.epochs = enabled, every, epochs
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._count = 0
        if enabled and self.console.is_terminal and not self.console.is_dumb_terminal:
            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}", table_column=Column(no_wrap=True)),
                BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=self.console, transient=True,
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
        if not self.enabled:
            return
        info = " ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch", "seconds")
                        and isinstance(v, float))
        if self._progress is not None:
            self._progress.update(task, visible=False)
        self.console.print(f"epoch {record['epoch']}/{self.epochs} ({record['seconds']:.1f} s) {info}",
                           highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        """Print one line (above the bar on a terminal) when progress is enabled."""
        if self.enabled:
            self.console.print(text, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

"""The record of a training run: one dict per epoch, and the best epoch under a monitor."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["History", "best_index"]


def best_index(values: Sequence[float], *, mode: str = "min", min_delta: float = 0.0) -> int | None:
    r"""Index of the best value, counting a new best only when it improves by more than ``min_delta``.

    With ``mode="min"`` value :math:`v_i` becomes the new best when
    :math:`v_i < v_{best} - \delta`; with ``mode="max"`` when :math:`v_i > v_{best} + \delta`.
    NaN (and None) never improve. Ties keep the earlier index.

    Returns ``None`` when no value is finite.

    Examples
    --------
    >>> best_index([3.0, 2.0, 2.0, 2.5])
    1
    >>> best_index([0.5, 0.7, 0.71], mode="max", min_delta=0.05)
    1
    >>> best_index([float("nan")]) is None
    True
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    best: int | None = None
    for i, v in enumerate(values):
        if v is None or isinstance(v, str) or not math.isfinite(v):
            continue
        if best is None:
            best = i
        elif (mode == "min" and v < values[best] - min_delta) or (mode == "max" and v > values[best] + min_delta):
            best = i
    return best


@dataclass
class History:
    """Per-epoch record returned by :func:`mlimaging.training.fit`.

    Attributes
    ----------
    epochs
        One dict per finished epoch with ``epoch`` (1-based), ``loss`` (mean training
        loss per sample), ``val_loss`` and ``val_<metric>`` (when validation data were
        given), ``lr`` (learning rate of the first parameter group during the epoch)
        and ``seconds``.
    monitor, mode
        The value that decides the best epoch (``"val_loss"``, ``"min"`` by default).

    Examples
    --------
    >>> h = History([{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.4}])
    >>> h["val_loss"], h.best_epoch, h.best_value
    ([0.9, 0.4], 2, 0.4)
    """

    epochs: list[dict[str, Any]] = field(default_factory=list)
    monitor: str = "val_loss"
    mode: str = "min"

    def __getitem__(self, key: str) -> list[Any]:
        """All values of ``key``, one per epoch (``None`` where an epoch lacks it)."""
        if not any(key in e for e in self.epochs):
            known = sorted({k for e in self.epochs for k in e})
            raise KeyError(f"history has no {key!r}; recorded keys: {known}")
        return [e.get(key) for e in self.epochs]

    def __len__(self) -> int:
        return len(self.epochs)

    def keys(self) -> list[str]:
        """Recorded keys in first-seen order."""
        out: list[str] = []
        for e in self.epochs:
            out.extend(k for k in e if k not in out)
        return out

    def _best(self) -> int | None:
        if not self.epochs:
            return None
        return best_index([e.get(self.monitor) for e in self.epochs], mode=self.mode)

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch with the best monitored value (``None`` before any finite value)."""
        i = self._best()
        return None if i is None else int(self.epochs[i]["epoch"])

    @property
    def best_value(self) -> float | None:
        """The best monitored value (``None`` before any finite value)."""
        i = self._best()
        return None if i is None else self.epochs[i][self.monitor]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with ``epochs``, ``monitor``, ``mode``, ``best_epoch`` and ``best_value``."""
        return {"epochs": [dict(e) for e in self.epochs], "monitor": self.monitor, "mode": self.mode,
                "best_epoch": self.best_epoch, "best_value": self.best_value}

    def to_json(self, path: str | None = None, *, indent: int = 2) -> str:
        """JSON text of :meth:`to_dict` (NaN/inf written as strings); also written to ``path`` if given."""
        def clean(v: Any) -> Any:
            return str(v) if isinstance(v, float) and not math.isfinite(v) else v

        data = self.to_dict()
        data["epochs"] = [{k: clean(v) for k, v in e.items()} for e in data["epochs"]]
        data["best_value"] = clean(data["best_value"])
        text = json.dumps(data, indent=indent)
        if path is not None:
            with open(path, "w") as fh:
                fh.write(text)
        return text

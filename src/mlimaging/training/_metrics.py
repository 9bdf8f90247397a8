"""Epoch-level metrics for fit/evaluate: resolve names, turn outputs into labels, compute."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from mlimaging import metrics as _m


def _mean_dice(labels: torch.Tensor, targets: torch.Tensor, *, num_classes: int | None = None) -> float:
    """The named metric ``"dice"``: :func:`mlimaging.metrics.mean_dice` of the label maps
    (foreground labels present in either, voxels pooled over the whole validation set)."""
    return _m.mean_dice(labels, targets)


# name -> (function, keyword arguments); multi-class scores are macro averages over all classes
NAMED: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "accuracy": (_m.accuracy, {}),
    "dice": (_mean_dice, {}),
    "f1_score": (_m.f1_score, {"average": "macro"}),
    "precision": (_m.precision, {"average": "macro"}),
    "recall": (_m.recall, {"average": "macro"}),
    "specificity": (_m.specificity, {"average": "macro"}),
}


class MetricSet:
    """Named classification metrics (computed from argmax labels) and callables on raw outputs."""

    def __init__(self, metrics: Any):
        self.items: list[tuple[str, Any]] = []  # (name, str key in NAMED or callable)
        if metrics is None:
            metrics = ()
        if isinstance(metrics, (str, bytes)) or callable(metrics):
            metrics = (metrics,)
        pairs = metrics.items() if isinstance(metrics, Mapping) else ((None, m) for m in metrics)
        for name, m in pairs:
            if isinstance(m, str):
                if m not in NAMED:
                    raise ValueError(f"unknown metric {m!r}; named metrics are {sorted(NAMED)} "
                                     "(or pass a callable (outputs, targets) -> float)")
                self.items.append((name or m, m))
            elif callable(m):
                fname = name or getattr(m, "__name__", None)
                if not fname or fname == "<lambda>":
                    raise ValueError("metrics: give a lambda a name, e.g. metrics={'mae': lambda o, t: ...}")
                self.items.append((fname, m))
            else:
                raise ValueError(f"metrics must hold names or callables (outputs, targets) -> float, got {m!r}")
        names = [n for n, _ in self.items]
        if len(set(names)) != len(names):
            raise ValueError(f"metric names must be unique, got {names}")

    def __bool__(self) -> bool:
        return bool(self.items)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.items]

    @property
    def needs_outputs(self) -> bool:
        """True when a callable needs the raw outputs (else only labels are kept)."""
        return any(not isinstance(m, str) for _, m in self.items)

    def compute(self, kept: torch.Tensor, targets: torch.Tensor, num_classes: int | None) -> dict[str, float]:
        """Metrics of all samples; ``kept`` = raw outputs if :attr:`needs_outputs` else labels."""
        out: dict[str, float] = {}
        labels = to_labels(kept) if self.needs_outputs else kept
        for name, m in self.items:
            try:
                if isinstance(m, str):
                    fn, kw = NAMED[m]
                    value = fn(labels, targets, num_classes=num_classes, **kw)
                else:
                    value = m(kept, targets)
            except ValueError as exc:
                raise ValueError(f"metric {name!r} failed on the validation outputs: {exc} "
                                 "(pass metrics=() when the model is not a classifier)") from exc
            out[name] = float(value.item() if isinstance(value, torch.Tensor) else value)
        return out


def to_labels(output: torch.Tensor) -> torch.Tensor:
    """Class labels from scores: ``argmax`` over axis 1, or ``output > 0`` for one logit per sample."""
    if output.ndim >= 2 and output.shape[1] > 1:
        return output.argmax(1)
    if output.ndim >= 2:
        return (output[:, 0] > 0).long()
    return (output > 0).long()


def num_classes_of(output: torch.Tensor) -> int:
    """Number of classes implied by the output shape (2 for a single logit)."""
    return int(output.shape[1]) if output.ndim >= 2 and output.shape[1] > 1 else 2

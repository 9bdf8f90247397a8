r"""Internals of :mod:`mlimaging.privacy.attacks`: the model as a function of its parameters, the
gradient distances, the total-variation prior, checks of the arguments and the progress bar.

The model is called through :func:`torch.func.functional_call` with detached copies of its
parameters as leaves, so an attack differentiates the dummy's gradient without touching the
model's parameters, their ``requires_grad`` flags or their ``.grad``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__: list[str] = []


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode; the train/eval mode of every submodule is put back afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


class Functional:
    """``model`` as a function of detached leaves of its parameters (``model.parameters()`` order)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        named = list(model.named_parameters())
        self.names = [n for n, _ in named]
        self.leaves = [p.detach().requires_grad_(True) for _, p in named]
        self.buffers = dict(model.named_buffers())

    def gradients(self, x: torch.Tensor, target: torch.Tensor, *, create_graph: bool) -> list[torch.Tensor]:
        """Gradient of the batch-mean cross-entropy w.r.t. the parameters; ``target``: labels
        ``(B,)`` (int) or class probabilities ``(B, K)`` (float, the soft label of DLG)."""
        params = dict(zip(self.names, self.leaves, strict=True))
        logits = torch.func.functional_call(self.model, (params, self.buffers), (x,))
        if target.dtype.is_floating_point:
            loss = torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
        else:
            loss = F.cross_entropy(logits, target)
        grads = torch.autograd.grad(loss, self.leaves, create_graph=create_graph, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.leaves, strict=True)]


def l2_distance(grads: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    r""":math:`\sum_l \lVert g_l - g^*_l \rVert_2^2` (DLG's objective)."""
    return sum(((g - t) ** 2).sum() for g, t in zip(grads, target, strict=True))  # type: ignore[return-value]


def cosine_distance(grads: Sequence[torch.Tensor], target: Sequence[torch.Tensor]) -> torch.Tensor:
    r""":math:`1 - \langle g, g^* \rangle / (\lVert g \rVert \lVert g^* \rVert)` over all parameters."""
    dot = sum((g * t).sum() for g, t in zip(grads, target, strict=True))
    norm_g = torch.sqrt(sum((g * g).sum() for g in grads))
    norm_t = math.sqrt(float(sum((t * t).sum() for t in target)))
    return 1.0 - dot / (norm_g * norm_t + 1e-12)  # type: ignore[operator]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    r"""Anisotropic TV, mean absolute difference of neighbours along each of the last two axes."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy


def last_linear(model: nn.Module) -> tuple[int, int | None, nn.Linear]:
    """Indices (in ``model.parameters()``) of the weight and bias of the last ``nn.Linear``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("model must end with an nn.Linear classification layer (label recovery reads its gradient)")
    fc = linears[-1]
    ids = {id(p): i for i, p in enumerate(model.parameters())}
    bias = ids.get(id(fc.bias)) if fc.bias is not None else None
    return ids[id(fc.weight)], bias, fc


# --------------------------------------------------------------------------- checks
def check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not any(True for _ in model.parameters()):
        raise ValueError("model has no parameters: there is no gradient to invert")


def check_gradients(model: nn.Module, gradients: Any) -> list[torch.Tensor]:
    """``gradients`` as a list of float tensors, one per ``model.parameters()``, of matching shapes."""
    if isinstance(gradients, torch.Tensor) or not isinstance(gradients, Sequence):
        raise ValueError("gradients must be a sequence of tensors, one per model.parameters() in that order, "
                         f"got {type(gradients).__name__}")
    params = list(model.parameters())
    if len(gradients) != len(params):
        raise ValueError(f"gradients must hold one tensor per model parameter ({len(params)}), got {len(gradients)}")
    out = []
    for i, (g, p) in enumerate(zip(gradients, params, strict=True)):
        if not isinstance(g, torch.Tensor) or not g.dtype.is_floating_point:
            raise ValueError(f"gradients[{i}] must be a floating-point tensor, got "
                             f"{getattr(g, 'dtype', type(g).__name__)}")
        if g.shape != p.shape:
            raise ValueError(f"gradients[{i}] must have the shape of its parameter {tuple(p.shape)}, "
                             f"got {tuple(g.shape)}")
        if not bool(torch.isfinite(g).all()):
            raise ValueError(f"gradients[{i}] holds NaN or infinite values")
        out.append(g.detach().to(p.dtype))
    return out


def check_shape(shape: Any) -> tuple[int, int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
        ok = len(dims) == 4 and all(d >= 1 for d in dims) and all(int(s) == float(s) for s in shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"shape must be (B, C, H, W) of positive integers, got {shape!r}")
    return dims  # type: ignore[return-value]


def check_labels(labels: Any, batch: int, num_classes: int) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor):
        try:
            labels = torch.as_tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"labels must be {batch} class indices, got {labels!r}") from None
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer class indices, got dtype {labels.dtype}")
    labels = labels.reshape(-1).long()
    if labels.numel() != batch:
        raise ValueError(f"labels must hold one class per image ({batch}), got {labels.numel()}")
    if bool((labels < 0).any()) or bool((labels >= num_classes).any()):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {labels.tolist()}")
    return labels


def check_positive(value: Any, name: str, *, integer: bool = False, zero: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if not bad:
        bad = not math.isfinite(value) or (value < 0 if zero else value <= 0) or (integer and int(value) != value)
    if bad:
        kind = "integer" if integer else "number"
        raise ValueError(f"{name} must be a {'non-negative' if zero else 'positive'} {kind}, got {value!r}")


def check_range(value_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be (low, high), got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with low < high, got {value_range!r}")
    return lo, hi


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return seed


# --------------------------------------------------------------------------- progress
@contextlib.contextmanager
def progress_bar(total: int, enabled: bool, what: str) -> Iterator[Callable[[], None]]:
    """A rich progress bar of ``total`` steps (a no-op when not enabled); yields ``advance()``."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)

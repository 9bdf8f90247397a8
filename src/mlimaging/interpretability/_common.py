"""Shared plumbing of the attribution methods: input checks, model state, layers, baselines."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from mlimaging.interpretability._targets import _Target, resolve_target

__all__: list[str] = []

#: Input elements per forward (and backward) pass when no batch size is given: about 1 MB of
#: float32, e.g. 334 images of 28 x 28 or one 64^3 volume. Batches that fit the CPU caches
#: run faster than one huge batch (about 2x for LeNet), and memory stays bounded.
ELEMENT_BUDGET = 1 << 18


def auto_chunk(batch_size: int | None, per_image: int, name: str = "batch_size") -> int:
    """Images per pass: ``batch_size`` if given (checked), else :data:`ELEMENT_BUDGET` worth."""
    if batch_size is not None:
        return check_positive_int(batch_size, name)
    return max(1, ELEMENT_BUDGET // max(1, per_image))


def check_model(model: Any) -> nn.Module:
    """``model`` as an ``nn.Module`` (any callable module); ValueError otherwise."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def check_x(x: Any) -> torch.Tensor:
    """A finite floating tensor ``(B, C, *spatial)`` with B >= 1; ValueError otherwise."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor (B, C, *spatial), got {type(x).__name__}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor, got dtype {x.dtype}")
    if x.ndim < 2 or x.shape[0] < 1 or x.numel() == 0:
        raise ValueError(f"x must be (B, C, *spatial) with B >= 1, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    return x


def setup(model: Any, x: Any, target: Any) -> tuple[nn.Module, torch.Tensor, _Target]:
    """The preamble of every attribution: checked ``model`` and ``x``, resolved ``target``."""
    model = check_model(model)
    x = check_x(x)
    return model, x, resolve_target(target, x.shape[0], x.ndim - 2)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` (a Python or NumPy int) as an int >= ``minimum``; ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class Runner:
    """Calls ``model`` on batches, in channels-last layout for 2D/3D batches on the CPU.

    oneDNN's convolutions run faster in that layout (on LeNet about 1.4x for a forward pass
    and 2x for forward plus backward); the values are the same up to the summation order.
    A model that cannot take such strides (``x.view(B, -1)`` on a multi-channel tensor)
    raises a RuntimeError: the batch is then run in its own layout, and so are all later
    ones. The model always gets a copy, so an in-place first layer cannot modify the input.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.fast = True

    def __call__(self, batch: torch.Tensor) -> Any:
        if self.fast and batch.device.type == "cpu" and batch.ndim in (4, 5):
            fmt = torch.channels_last if batch.ndim == 4 else torch.channels_last_3d
            try:
                return self.model(batch.clone(memory_format=fmt))
            except RuntimeError:
                self.fast = False
        return self.model(batch.clone())  # a copy: in-place layers must not touch x

    def built(self, like: torch.Tensor, build: Any) -> Any:
        """Call the model on ``build(memory_format)``, a new batch shaped like ``like``.

        The batch is made for this call only, so it goes to the model without the
        protective copy of :meth:`__call__`; if the channels-last layout fails, it is built
        again in the contiguous layout (an in-place layer may have changed the first one).
        """
        if self.fast and like.device.type == "cpu" and like.ndim in (4, 5):
            fmt = torch.channels_last if like.ndim == 4 else torch.channels_last_3d
            try:
                return self.model(build(fmt))
            except RuntimeError:
                self.fast = False
        return self.model(build(torch.contiguous_format))


@contextlib.contextmanager
def explained(model: nn.Module, *, eval_mode: bool = True) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode with frozen parameters; restore both afterwards.

    Freezing the parameters keeps autograd from computing weight gradients nobody asked
    for; the original ``requires_grad`` flags and the train/eval mode of every submodule
    are put back even when the block raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        if eval_mode:
            model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of the submodules of ``model`` (``model.named_modules()``, root left out).

    Examples
    --------
    >>> from torch import nn
    >>> layer_names(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.Flatten())))
    ['0', '1', '1.0', '1.1']
    """
    return [name for name, _ in model.named_modules() if name]


def resolve_layer(model: nn.Module, layer: Any, *, name: str = "layer") -> tuple[str, nn.Module]:
    """``(dotted name, module)`` of ``layer``: a submodule of ``model`` or its dotted name.

    Raises
    ------
    ValueError
        If the name is unknown (the message lists some valid names) or the module is not a
        submodule of ``model``.

    Examples
    --------
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    >>> resolve_layer(net, "0")[0], resolve_layer(net, net[1])[0]
    ('0', '1')
    """
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for key, module in modules.items():
            if module is layer:
                return key, module
        raise ValueError(
            f"{name} must be a submodule of the model, got a {type(layer).__name__} "
            "that is not part of it"
        )
    if not isinstance(layer, str) or not layer or layer not in modules:
        valid = layer_names(model)
        shown = ", ".join(repr(v) for v in valid[:8]) + (", ..." if len(valid) > 8 else "")
        raise ValueError(
            f"{name} must be a submodule or the dotted name of one, got {layer!r}; "
            f"valid names: {shown or '(the model has no submodules)'}"
        )
    return layer, modules[layer]


def as_baseline(baseline: Any, x: torch.Tensor, name: str = "baseline") -> torch.Tensor:
    """``baseline`` (number or tensor broadcastable to ``x``) as a tensor on x's device."""
    if isinstance(baseline, bool):
        raise ValueError(f"{name} must be a number or a tensor, got {baseline!r}")
    if isinstance(baseline, (int, float)):
        b = torch.tensor(float(baseline), dtype=x.dtype, device=x.device)
    elif isinstance(baseline, torch.Tensor):
        b = baseline.detach().to(device=x.device, dtype=x.dtype)
        try:
            torch.broadcast_shapes(b.shape, x.shape)
        except RuntimeError as err:
            raise ValueError(
                f"{name} of shape {tuple(b.shape)} does not broadcast to x {tuple(x.shape)}"
            ) from err
        if torch.broadcast_shapes(b.shape, x.shape) != x.shape:
            raise ValueError(f"{name} of shape {tuple(b.shape)} would enlarge x {tuple(x.shape)}")
    else:
        raise ValueError(f"{name} must be a number or a tensor, got {type(baseline).__name__}")
    if not bool(torch.isfinite(b).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return b

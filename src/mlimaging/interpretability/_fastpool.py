r"""Index-free max-pooling for the forward-only passes of the perturbation methods.

On the CPU, ``F.max_pool2d`` always runs the kernel that also writes the argmax of every
window (``max_pool2d_with_indices``), indices only a backward pass needs: on LeNet about
half the time of a forward pass goes to its two pools. Occlusion and feature ablation run
thousands of forward passes under ``torch.inference_mode``; inside
:func:`index_free_max_pooling` the model's non-overlapping max-pooling layers
(``nn.MaxPool1d/2d/3d`` with kernel = stride, no padding, dilation 1, floor mode, no
indices) compute

.. math:: y_{c,o} = \max_{j \in \{0..k-1\}^n} x_{c,\,o k + j}

as elementwise maxima of strided views ``x[..., j::k]``, one axis at a time (cropped to
whole windows), in the input's memory layout: on LeNet's 6 x 28 x 28 maps about 6x faster.
Exactness: a maximum involves no rounding, so the values are those of ``max_pool`` (NaN
propagates as there; only the sign of a zero may differ between ``-0.0`` and ``+0.0``
ties). Other layers, subclasses, calls with autograd on (``torch.maximum`` splits the
gradient of ties) and calls from other threads run
the original ``forward``; the original is restored when the block ends.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__: list[str] = []

_POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else (int(value),) * n


def _kernel(module: nn.Module) -> tuple[int, ...] | None:
    """The window of a supported max-pooling layer (kernel = stride), else None."""
    n = _POOLS.get(type(module))  # exact types: a subclass may change forward
    if n is None or module.return_indices or module.ceil_mode:
        return None
    kernel = _tuple(module.kernel_size, n)
    stride = _tuple(module.stride if module.stride else module.kernel_size, n)
    if (
        stride != kernel
        or _tuple(module.padding, n) != (0,) * n
        or _tuple(module.dilation, n) != (1,) * n
    ):
        return None
    return kernel


def slice_max_pool(x: torch.Tensor, kernel: tuple[int, ...]) -> torch.Tensor:
    """Non-overlapping max-pooling of the last ``len(kernel)`` axes by slice maxima.

    One axis at a time (the maximum is separable): the elementwise maximum of the ``k``
    strided views ``x[..., j::k, ...]`` cropped to whole windows, in ``x``'s layout.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> slice_max_pool(x, (2, 2))[0, 0]
    tensor([[ 5.,  7.],
            [13., 15.]])
    """
    n = len(kernel)
    source = x
    for i, k in enumerate(kernel):
        if k == 1:
            continue
        axis = x.ndim - n + i
        whole = x.narrow(axis, 0, (x.shape[axis] // k) * k)
        parts = [whole[(slice(None),) * axis + (slice(j, None, k),)] for j in range(k)]
        out = torch.maximum(parts[0], parts[1])
        for part in parts[2:]:
            torch.maximum(out, part, out=out)
        x = out
    return x.clone() if x is source else x  # a new tensor, as max_pool returns


@contextlib.contextmanager
def index_free_max_pooling(model: nn.Module) -> Iterator[int]:
    """Within the block, ``model``'s supported max-pooling layers skip the argmax.

    Yields the number of layers switched. Only calls in inference mode from the calling
    thread take the index-free path.
    """
    thread = threading.get_ident()
    patched = []
    if not isinstance(model, torch.jit.ScriptModule):
        for module in model.modules():
            kernel = _kernel(module)
            if kernel is None or "forward" in module.__dict__:
                continue
            original = module.forward

            def forward(
                x: Any, *args: Any, _k: Any = kernel, _f: Any = original, **kwargs: Any
            ) -> Any:
                if (
                    args
                    or kwargs
                    or not isinstance(x, torch.Tensor)
                    or x.ndim < len(_k) + 1
                    or not torch.is_inference_mode_enabled()
                    or threading.get_ident() != thread
                    or any(d < k for d, k in zip(x.shape[-len(_k) :], _k, strict=True))
                ):
                    return _f(x, *args, **kwargs)
                return slice_max_pool(x, _k)

            module.forward = forward
            patched.append(module)
    try:
        yield len(patched)
    finally:
        for module in patched:
            del module.forward

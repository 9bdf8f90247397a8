r"""Modified ReLU backward rules of DeconvNet and guided backpropagation.

A ReLU :math:`a = \max(z, 0)` passes the gradient back as :math:`g_z = g_a \, [z > 0]`.
DeconvNet (Zeiler & Fergus 2014) and guided backpropagation (Springenberg et al. 2015)
replace that rule:

.. math::

    g_z^{\text{deconv}} = \max(g_a, 0), \qquad
    g_z^{\text{guided}} = \max(g_a, 0) \, [z > 0].

The rule has to reach every ReLU of the model, whether it is an ``nn.ReLU`` module (in-place
or not), ``F.relu``/``torch.relu``/``Tensor.relu`` called inside ``forward``, or an in-place
``relu_``. Hooks on ``nn.ReLU`` modules (Captum's approach) miss the functional calls, and a
full backward hook on an in-place ReLU sees a rebased graph (captum issue 156). Here a
:class:`torch.overrides.TorchFunctionMode` is active while the forward pass runs: it
intercepts every ReLU call and routes it through an autograd Function with the modified
backward; in-place calls stay in place (``ctx.mark_dirty``). Nothing is patched, so the rule
ends with the ``with`` block, also on error, and other threads are unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

__all__: list[str] = []

RULES = ("deconvnet", "guided_backprop")


class _RuleReLU(torch.autograd.Function):
    """ReLU whose backward follows ``rule`` (0: deconvnet, 1: guided backprop)."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, guided: bool, inplace: bool) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(z)
            out = z.clamp_(min=0)
        else:
            out = z.clamp(min=0)
        ctx.guided = guided
        if guided:
            ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        g = grad.clamp(min=0)
        if ctx.guided:
            (out,) = ctx.saved_tensors
            g = g * (out > 0).to(g.dtype)
        return g, None, None


_OUT_OF_PLACE = {F.relu, torch.relu, torch.Tensor.relu}
_IN_PLACE = {torch.relu_, torch.Tensor.relu_}


class _ReLURuleMode(TorchFunctionMode):
    """Routes every ReLU call made while active through :class:`_RuleReLU`."""

    def __init__(self, guided: bool) -> None:
        super().__init__()
        self.guided = guided

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        if func in _OUT_OF_PLACE or func in _IN_PLACE:
            z = args[0] if args else kwargs["input"]
            inplace = func in _IN_PLACE or bool(
                kwargs.get("inplace", args[1] if len(args) > 1 else False)
            )
            if isinstance(z, torch.Tensor) and z.is_floating_point():
                return _RuleReLU.apply(z, self.guided, inplace)
        return func(*args, **kwargs)


@contextlib.contextmanager
def relu_rule(rule: str) -> Iterator[None]:
    """While active, every ReLU built into the graph back-propagates with ``rule``.

    ``rule`` is ``"deconvnet"`` or ``"guided_backprop"``. Run the forward pass inside the
    block; the backward pass may run inside or after it.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    with _ReLURuleMode(guided=rule == "guided_backprop"):
        yield

"""Argument checks shared by the model families."""

from __future__ import annotations

from typing import Any

import torch


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_input(x: Any, in_channels: int, *, name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a float tensor (B, in_channels, H, W); ValueError otherwise."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{name} must have shape (B, {in_channels}, H, W), got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x

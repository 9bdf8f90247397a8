"""Inverse problems: forward operators, classical and learned reconstruction, deep image prior."""

from __future__ import annotations

__all__: list[str] = []

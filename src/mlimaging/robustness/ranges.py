r"""Intensity ranges and perturbation budgets for adversarial attacks.

Images are not always in :math:`[0, 1]`: CT is in Hounsfield units (about
:math:`[-1024, 3071]`), MRI is often z-scored, and a normalised RGB image has a different
range per channel. An attack therefore takes an explicit ``valid_range = (lo, hi)`` and keeps
:math:`x_{adv} \in [lo, hi]`. The budget ``eps`` is either in the image's own units, or, with
``eps_relative=True``, a fraction of the range width :math:`w = hi - lo`:

.. math::

    \varepsilon_{\text{image}} = \varepsilon \, (hi - lo),

so :math:`\varepsilon = 8/255` means on a CT scan what it means on a :math:`[0, 1]` image. With
per-channel ranges the width, and hence the budget, is per channel (the attack works in the
normalised coordinates :math:`u = (x - lo) / w`; for the :math:`L_\infty` ball this is the same as
a per-channel :math:`\varepsilon w_c`).

Accepted forms of ``lo`` and ``hi``: Python numbers; 0-d tensors; 1-D tensors of length ``C``
(one value per channel, as in a normalisation transform); tensors with as many dimensions as
``x`` that broadcast against it (for example ``(B, 1, 1, 1)`` for one range per sample).
``valid_range=None`` means no range (no clipping; ``eps_relative`` is then an error).

An input outside its range raises :class:`ValueError` (beyond a tolerance of :math:`10^{-5} w`
for rounding): a wrong range is a silent bug (the attack would clip the clean image too).
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import torch

__all__ = ["Bounds", "resolve_range"]

_TOL = 1e-5


def _number(value: Any, name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    """``value`` as a finite float (not a bool), optionally ``> minimum`` / ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, Real | torch.Tensor):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value}")
    return value


def _bound(value: Any, name: str, x: torch.Tensor) -> float | torch.Tensor:
    """One end of the range: a float, or a tensor shaped to broadcast against ``x``."""
    if not isinstance(value, torch.Tensor):
        return _number(value, name)
    if value.is_complex() or value.dtype == torch.bool:
        raise ValueError(f"{name} must hold real numbers, got dtype {value.dtype}")
    if value.numel() == 1 and value.ndim <= 1:
        return _number(value, name)
    t = value.detach().to(device=x.device, dtype=x.dtype)
    if t.ndim == 1:
        if x.ndim < 2 or t.shape[0] != x.shape[1]:
            raise ValueError(f"{name}: a 1-D tensor holds one value per channel, so it needs length "
                             f"C = {x.shape[1] if x.ndim > 1 else '?'}, got length {t.shape[0]}; for one value "
                             f"per sample give shape ({x.shape[0]},{' 1,' * (x.ndim - 1)})")
        t = t.reshape((1, -1) + (1,) * (x.ndim - 2))
    elif t.ndim != x.ndim:
        raise ValueError(f"{name} must be a number, a 1-D per-channel tensor, or a tensor with {x.ndim} "
                         f"dimensions like x {tuple(x.shape)}; got shape {tuple(t.shape)}")
    try:
        torch.broadcast_shapes(t.shape, x.shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(t.shape)} does not broadcast against x of shape "
                         f"{tuple(x.shape)}") from None
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite")
    return t


class Bounds:
    """A resolved intensity range: ``lo``, ``hi`` and ``width`` (floats or broadcastable tensors).

    ``lo``/``hi`` are ``None`` for an unbounded input (``valid_range=None``). Built by
    :func:`resolve_range`.

    Examples
    --------
    >>> import torch
    >>> b = resolve_range((-1024, 3071), torch.zeros(2, 1, 4, 4))
    >>> b.lo, b.hi, b.width
    (-1024.0, 3071.0, 4095.0)
    >>> b.scale(0.5, relative=True)
    2047.5
    """

    def __init__(self, lo: float | torch.Tensor | None, hi: float | torch.Tensor | None):
        self.lo, self.hi = lo, hi
        self.width = None if lo is None or hi is None else hi - lo

    @property
    def bounded(self) -> bool:
        """Whether there is a range to clip to."""
        return self.lo is not None

    def scale(self, value: float, *, relative: bool) -> float | torch.Tensor:
        """``value`` in image units: itself, or ``value * width`` when ``relative``."""
        if not relative:
            return value
        return value * self.width

    def clamp_(self, x: torch.Tensor) -> torch.Tensor:
        """Clip ``x`` into the range in place (no-op when unbounded); returns ``x``."""
        if self.lo is None:
            return x
        if isinstance(self.lo, float) and isinstance(self.hi, float):
            return x.clamp_(self.lo, self.hi)
        lo = self.lo if isinstance(self.lo, torch.Tensor) else torch.tensor(self.lo, dtype=x.dtype, device=x.device)
        hi = self.hi if isinstance(self.hi, torch.Tensor) else torch.tensor(self.hi, dtype=x.dtype, device=x.device)
        return torch.clamp(x, lo, hi, out=x)

    def box(self, x: torch.Tensor, eps: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""The box :math:`[\max(x - \varepsilon, lo), \min(x + \varepsilon, hi)]`: the L-inf ball
        intersected with the range (clamping to it is the exact projection onto both)."""
        lower, upper = x - eps, x + eps
        if self.lo is not None:
            lower = lower.clamp_(min=self.lo) if isinstance(self.lo, float) else torch.maximum(lower, self.lo)
            upper = upper.clamp_(max=self.hi) if isinstance(self.hi, float) else torch.minimum(upper, self.hi)
        return lower, upper

    def check_inside(self, x: torch.Tensor, name: str = "x") -> None:
        """Raise ``ValueError`` when ``x`` leaves the range by more than ``1e-5`` of its width."""
        if self.lo is None:
            return
        tol = _TOL * self.width
        below = x < self.lo - tol
        above = x > self.hi + tol
        if bool(below.any()) or bool(above.any()):
            lo = self.lo if isinstance(self.lo, float) else "per-channel/sample tensor"
            hi = self.hi if isinstance(self.hi, float) else "per-channel/sample tensor"
            raise ValueError(f"{name} has values outside valid_range ({lo}, {hi}): min {float(x.min()):.6g}, "
                             f"max {float(x.max()):.6g}; pass the range the images live in (e.g. "
                             "valid_range=(-1024, 3071) for CT in HU) or valid_range=None for no range")


def resolve_range(valid_range: Any, x: torch.Tensor, *, eps_relative: bool = False) -> Bounds:
    """Check ``valid_range`` against ``x`` and return its :class:`Bounds`.

    Parameters
    ----------
    valid_range
        ``(lo, hi)`` (numbers or tensors, see the module doc) or ``None`` for no range.
    x
        The clean images ``(B, C, *spatial)``.
    eps_relative
        Whether the budget is a fraction of the range (then a range is required).

    Returns
    -------
    Bounds

    Raises
    ------
    ValueError
        ``valid_range`` is not a pair, an end is not finite or does not broadcast, ``lo >= hi``
        somewhere, ``x`` is outside the range, or ``eps_relative`` without a range.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(2, 3, 4, 4)
    >>> b = resolve_range((torch.zeros(3), torch.tensor([1.0, 2.0, 4.0])), x)
    >>> tuple(b.width.shape), b.width.flatten().tolist()
    ((1, 3, 1, 1), [1.0, 2.0, 4.0])
    >>> resolve_range((1.0, 0.0), x)
    Traceback (most recent call last):
    ...
    ValueError: valid_range needs lo < hi, got lo = 1.0 and hi = 0.0
    """
    if valid_range is None:
        if eps_relative:
            raise ValueError("eps_relative=True needs a valid_range (eps is a fraction of its width), got None")
        return Bounds(None, None)
    if isinstance(valid_range, torch.Tensor) and valid_range.ndim >= 1 and valid_range.shape[0] == 2:
        valid_range = (valid_range[0], valid_range[1])
    if not isinstance(valid_range, tuple | list) or len(valid_range) != 2:
        raise ValueError(f"valid_range must be a pair (lo, hi) or None, got {valid_range!r}")
    lo = _bound(valid_range[0], "valid_range lo", x)
    hi = _bound(valid_range[1], "valid_range hi", x)
    if isinstance(lo, float) and isinstance(hi, float):
        if not lo < hi:
            raise ValueError(f"valid_range needs lo < hi, got lo = {lo} and hi = {hi}")
    elif not bool(torch.as_tensor(hi - lo).gt(0).all()):
        raise ValueError("valid_range needs lo < hi everywhere, got lo >= hi for some channel or sample")
    bounds = Bounds(lo, hi)
    bounds.check_inside(x)
    return bounds

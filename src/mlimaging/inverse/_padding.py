r"""Boundary extension as an explicit linear map (a gather) and its exact transpose (a scatter-add).

Padding an axis of length :math:`n` by ``before`` and ``after`` samples reads input sample
:math:`s(k)` for each padded index :math:`k`; the adjoint adds every padded sample back onto
the input sample it was read from. Writing both through one index vector makes the adjoint
exact for every mode and any pad width (also wider than the image), without autograd:

* ``"circular"``: :math:`s(k) = (k - \text{before}) \bmod n` (scipy ``mode="wrap"``);
* ``"reflect"``: mirror about the edge samples, which are not repeated,
  ``d c b | a b c d | c b a`` (torch/NumPy ``reflect``, scipy.ndimage ``mode="mirror"``);
* ``"symmetric"``: mirror with the edge repeated, ``c b a | a b c d | d c b``
  (NumPy ``symmetric``, scipy.ndimage ``mode="reflect"``);
* ``"replicate"``: the edge sample repeated (scipy ``mode="nearest"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

PAD_MODES = ("circular", "reflect", "symmetric", "replicate")


def pad_index(
    n: int, before: int, after: int, mode: str, device: torch.device | None = None
) -> torch.Tensor:
    """Source indices (length ``n + before + after``) of a padded axis of length ``n``."""
    k = torch.arange(-before, n + after, device=device)
    if mode == "circular":
        return torch.remainder(k, n)
    if mode == "replicate":
        return k.clamp(0, n - 1)
    if mode == "reflect":
        if n == 1:
            return torch.zeros_like(k)
        period = 2 * n - 2
        m = torch.remainder(k, period)
        return torch.where(m < n, m, period - m)
    if mode == "symmetric":
        period = 2 * n
        m = torch.remainder(k, period)
        return torch.where(m < n, m, period - 1 - m)
    raise ValueError(f"padding mode must be one of {PAD_MODES}, got {mode!r}")


def pad(x: torch.Tensor, pads: Sequence[tuple[int, int]], mode: str) -> torch.Tensor:
    """Pad the last ``len(pads)`` axes of ``x``; ``pads[i] = (before, after)`` for spatial axis i."""
    d = len(pads)
    for i, (b, a) in enumerate(pads):
        if b == 0 and a == 0:
            continue
        axis = x.ndim - d + i
        x = x.index_select(axis, pad_index(x.shape[axis], b, a, mode, x.device))
    return x


def pad_adjoint(z: torch.Tensor, pads: Sequence[tuple[int, int]], mode: str) -> torch.Tensor:
    """The transpose of :func:`pad`: fold the border samples back onto their sources."""
    d = len(pads)
    for i, (b, a) in enumerate(pads):
        if b == 0 and a == 0:
            continue
        axis = z.ndim - d + i
        n = z.shape[axis] - b - a
        shape = list(z.shape)
        shape[axis] = n
        z = torch.zeros(shape, dtype=z.dtype, device=z.device).index_add(
            axis, pad_index(n, b, a, mode, z.device), z
        )
    return z

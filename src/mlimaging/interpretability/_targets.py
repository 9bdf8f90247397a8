r"""Targets of an attribution: which scalar output of the model is explained.

Every attribution explains one scalar per sample, :math:`y_b = S(f(x)_b)`. The ``target``
argument of every method chooses :math:`S`:

- ``int`` ``c``: the logit of class ``c`` for every sample. On a model whose output has
  spatial axes, ``(B, K, *spatial)`` (segmentation, a fully convolutional classifier), the
  logits of class ``c`` are summed over all positions.
- a 1-D tensor, NumPy array or list of ``B`` class indices: one class per sample.
- :class:`SegmentationTarget` ``(cls, mask)``, or the plain tuple ``(cls, mask)``: for a
  segmentation model with output ``(B, K, *spatial)``, the sum of the class-``cls`` logits
  inside the region ``mask``,

  .. math:: y_b = \sum_{p} m_{b,p} \, f(x)_{b, c_b, p},

  where ``mask`` is ``(*spatial)`` (one region for every sample) or ``(B, *spatial)``, boolean
  or real-valued weights; ``cls`` is an int or ``B`` class indices. ``mask=None`` sums over
  the whole image.
- ``None``: only for a model with one output per sample, ``(B,)`` or ``(B, 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["SegmentationTarget"]


@dataclass(frozen=True)
class SegmentationTarget:
    r"""Class ``cls`` of a segmentation model summed inside a region ``mask``.

    The explained scalar of sample :math:`b` is
    :math:`y_b = \sum_p m_{b,p} \, f(x)_{b, c_b, p}`: "which pixels made the model call this
    region class ``cls``?" (Selvaraju et al. 2017 use the same sum for Grad-CAM of
    segmentation outputs). A plain tuple ``(cls, mask)`` passed as ``target`` means the same.

    Parameters
    ----------
    cls : int or sequence of int or torch.Tensor
        One class for all samples, or one per sample (length ``B``).
    mask : torch.Tensor or numpy.ndarray or None
        Region ``(*spatial)`` shared by the batch or ``(B, *spatial)``, with the spatial shape
        of the model output; boolean or real weights. ``None`` sums over all positions.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.interpretability import SegmentationTarget, saliency
    >>> model = torch.nn.Conv2d(1, 2, kernel_size=1)  # logits of class c: w_c x + b_c
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([1.0, -3.0]).view(2, 1, 1, 1))
    >>> mask = torch.zeros(4, 4, dtype=torch.bool)
    >>> mask[1:3, 1:3] = True
    >>> saliency(model, torch.rand(1, 1, 4, 4), SegmentationTarget(1, mask))[0, 0]
    tensor([[0., 0., 0., 0.],
            [0., 3., 3., 0.],
            [0., 3., 3., 0.],
            [0., 0., 0., 0.]])
    """

    cls: Any
    mask: Any = None


@dataclass
class _Target:
    """A validated target: classes ``(B,)`` (or None) and a mask ``(B or 1, *spatial)``."""

    classes: torch.Tensor | None
    mask: torch.Tensor | None
    batch: int

    def take(self, index: torch.Tensor) -> _Target:
        """The target of the rows ``index`` (sample numbers) of a larger batch."""
        classes = None if self.classes is None else self.classes[index]
        mask = self.mask
        if mask is not None and mask.shape[0] != 1:
            mask = mask[index]
        return _Target(classes, mask, len(index))

    def check_output(self, output: torch.Tensor) -> None:
        """Raise ValueError if ``output`` of the model cannot carry this target."""
        if not isinstance(output, torch.Tensor):
            raise ValueError(
                f"the model must return a tensor, got {type(output).__name__}"
            )
        if output.shape[0] != self.batch:
            raise ValueError(
                f"the model output has batch size {output.shape[0]}, expected {self.batch}"
            )
        if self.classes is None:
            if output.ndim > 2 or (output.ndim == 2 and output.shape[1] != 1):
                raise ValueError(
                    "target=None needs a model with one output per sample ((B,) or (B, 1)), "
                    f"got output shape {tuple(output.shape)}; pass a class index"
                )
            return
        if output.ndim < 2:
            raise ValueError(
                f"target is a class index but the model output is {tuple(output.shape)} "
                "(no class axis); use target=None"
            )
        n_classes = output.shape[1]
        top = int(self.classes.max()) if self.classes.numel() else 0
        if top >= n_classes:
            raise ValueError(
                f"target class {top} is out of range for a model with {n_classes} outputs"
            )
        if self.mask is not None:
            spatial = tuple(output.shape[2:])
            if not spatial:
                raise ValueError(
                    "target has a region mask but the model output "
                    f"{tuple(output.shape)} has no spatial axes"
                )
            if tuple(self.mask.shape[1:]) != spatial:
                raise ValueError(
                    f"target mask must have the spatial shape {spatial} of the model output "
                    f"{tuple(output.shape)}, got {tuple(self.mask.shape[1:])}"
                )

    def scores(self, output: torch.Tensor) -> torch.Tensor:
        """The explained scalar of each row of ``output``: a tensor ``(B,)``."""
        self.check_output(output)
        if self.classes is None:
            return output.reshape(output.shape[0])
        n = output.shape[0]
        spatial = output.shape[2:]
        index = self.classes.to(output.device).view(n, 1, *([1] * len(spatial)))
        picked = output.gather(1, index.expand(n, 1, *spatial)).squeeze(1)
        if not spatial:
            return picked
        if self.mask is not None:
            picked = picked * self.mask.to(device=output.device, dtype=output.dtype)
        return picked.reshape(n, -1).sum(1)


def _as_classes(value: Any, batch: int) -> torch.Tensor:
    """Class indices ``(batch,)`` (int64) from an int, a sequence or a tensor."""
    if isinstance(value, bool):
        raise ValueError(f"target must be a class index, got the bool {value}")
    if isinstance(value, (int, np.integer)):
        if value < 0:
            raise ValueError(f"target must be a non-negative class index, got {value}")
        return torch.full((batch,), int(value), dtype=torch.long)
    if isinstance(value, (torch.Tensor, np.ndarray, Sequence)) and not isinstance(value, str):
        try:
            t = torch.as_tensor(np.asarray(value) if isinstance(value, Sequence) else value)
        except (TypeError, ValueError) as err:
            raise ValueError(f"target must hold class indices, got {value!r}") from err
        if t.ndim == 0:
            return _as_classes(int(t), batch)
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"target must hold integer class indices, got dtype {t.dtype}")
        if t.ndim != 1 or t.shape[0] != batch:
            raise ValueError(
                f"target must be an int or {batch} class indices (one per sample), "
                f"got shape {tuple(t.shape)}"
            )
        if batch and int(t.min()) < 0:
            raise ValueError(f"target class indices must be >= 0, got {int(t.min())}")
        return t.to(torch.long).cpu()
    raise ValueError(
        "target must be an int, a sequence of class indices, a SegmentationTarget or "
        f"(cls, mask), got {type(value).__name__}"
    )


def _as_mask(mask: Any, batch: int, spatial_ndim: int | None) -> torch.Tensor:
    """A region mask ``(1 or batch, *spatial)`` as float32, checked for NaN and emptiness."""
    if not isinstance(mask, (torch.Tensor, np.ndarray)):
        raise ValueError(
            f"target mask must be a tensor or an array, got {type(mask).__name__}"
        )
    m = torch.as_tensor(mask).detach()
    if m.is_complex():
        raise ValueError(f"target mask must be boolean or real, got dtype {m.dtype}")
    m = m.to(torch.float32)
    nd = m.ndim if spatial_ndim is None else spatial_ndim
    if nd < 1 or m.ndim not in (nd, nd + 1):
        raise ValueError(
            f"target mask must have {nd} spatial axes (shared) or a batch axis first, "
            f"got shape {tuple(m.shape)}"
        )
    if m.ndim == nd:
        m = m.unsqueeze(0)
    if m.shape[0] not in (1, batch):
        raise ValueError(
            f"target mask has {m.shape[0]} masks for a batch of {batch} samples"
        )
    if not bool(torch.isfinite(m).all()):
        raise ValueError("target mask contains NaN or infinite values")
    if m.numel() == 0 or bool((m.reshape(m.shape[0], -1) == 0).all(1).any()):
        raise ValueError("target mask selects no position (all zero) for some sample")
    return m


def resolve_target(target: Any, batch: int, spatial_ndim: int | None = None) -> _Target:
    """Validate ``target`` for a batch of ``batch`` samples (see the module docstring).

    ``spatial_ndim`` is the number of spatial axes of the model output (by default the
    mask's own: a shared mask). A mask with ``spatial_ndim`` axes is shared by the batch, one
    with ``spatial_ndim + 1`` is per sample (``B`` or 1 first); the spatial shape itself is
    checked against the output at the forward pass.
    """
    if target is None:
        return _Target(None, None, batch)
    if isinstance(target, tuple) and len(target) == 2 and (
        target[1] is None or isinstance(target[1], (torch.Tensor, np.ndarray))
    ):
        target = SegmentationTarget(*target)
    if isinstance(target, SegmentationTarget):
        classes = _as_classes(target.cls, batch)
        mask = None if target.mask is None else _as_mask(target.mask, batch, spatial_ndim)
        return _Target(classes, mask, batch)
    return _Target(_as_classes(target, batch), None, batch)

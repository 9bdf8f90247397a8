"""The one verb of the package: ``attribute(model, x, target, *, method, **kw)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = ["METHODS", "attribute"]


def _methods() -> dict[str, Callable[..., torch.Tensor]]:
    from mlimaging.interpretability import cam, gradients, perturbation

    return {
        "saliency": gradients.saliency,
        "input_x_gradient": gradients.input_x_gradient,
        "smoothgrad": gradients.smoothgrad,
        "integrated_gradients": gradients.integrated_gradients,
        "deconvnet": gradients.deconvnet,
        "guided_backprop": gradients.guided_backprop,
        "grad_cam": cam.grad_cam,
        "guided_grad_cam": cam.guided_grad_cam,
        "occlusion": perturbation.occlusion,
        "feature_ablation": perturbation.feature_ablation,
    }


#: Names accepted by :func:`attribute`'s ``method``.
METHODS = ("saliency", "input_x_gradient", "smoothgrad", "integrated_gradients", "deconvnet",
           "guided_backprop", "grad_cam", "guided_grad_cam", "occlusion", "feature_ablation")


def attribute(model: nn.Module, x: torch.Tensor, target: Any, *, method: str, **kw: Any
              ) -> torch.Tensor:
    r"""Attribution map of ``x``'s shape by the named ``method``.

    Calls the function of the same name, ``method(model, x, target, **kw)``: one of
    ``saliency``, ``input_x_gradient``, ``smoothgrad``, ``integrated_gradients``,
    ``deconvnet``, ``guided_backprop``, ``grad_cam`` (needs ``layer=``), ``guided_grad_cam``
    (needs ``layer=``), ``occlusion`` (needs ``window=``, ``stride=``) and
    ``feature_ablation`` (needs ``segments=``). Each method's docstring gives its formula
    and paper; e.g. saliency is :math:`|\partial y_c / \partial x|` (Simonyan et al. 2014).

    ``target`` is an int class, one class per sample, or for segmentation models a
    :class:`~mlimaging.interpretability.SegmentationTarget` ``(cls, mask)`` (the sum of the
    class-``cls`` logits inside ``mask``); see :mod:`mlimaging.interpretability._targets`.

    Parameters
    ----------
    model : torch.nn.Module
        The network (left in its original mode, with its ``requires_grad`` flags).
    x : torch.Tensor
        Inputs ``(B, C, *spatial)`` (not modified).
    target : int, sequence of int, SegmentationTarget, (cls, mask) or None
        The explained score of each sample.
    method : str
        One of :data:`METHODS`.
    **kw
        Options of that method.

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape (``grad_cam`` with ``upsample=False`` excepted).

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models import create_model
    >>> model = create_model("lenet").eval()
    >>> x = torch.rand(2, 1, 32, 32)
    >>> attribute(model, x, 3, method="saliency").shape
    torch.Size([2, 1, 32, 32])
    >>> attribute(model, x, [3, 5], method="grad_cam", layer="conv2").shape
    torch.Size([2, 1, 32, 32])
    """
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return _methods()[method](model, x, target, **kw)

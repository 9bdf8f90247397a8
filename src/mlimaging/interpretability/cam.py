r"""Class activation maps: Grad-CAM and guided Grad-CAM.

Both take ``(model, x, target, *, layer, ...)`` like the other attributions; ``layer`` is a
submodule of the model or its dotted name (``"conv2"``, ``"encoder.1.block"``), whose output
``(B, K, *spatial)`` is the feature map that is weighted.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.interpretability._common import Runner, explained, resolve_layer, setup
from mlimaging.interpretability._targets import _Target
from mlimaging.interpretability.gradients import _grad

__all__ = ["grad_cam", "guided_grad_cam"]

INTERPOLATIONS = ("linear", "bilinear", "trilinear", "nearest")


def _mode(interpolation: str, spatial: int) -> str:
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if interpolation == "nearest":
        return "nearest"
    return {1: "linear", 2: "bilinear", 3: "trilinear"}[spatial]


def _prepare(model: Any, x: Any, target: Any, layer: Any, interpolation: str
             ) -> tuple[nn.Module, torch.Tensor, _Target, nn.Module, str]:
    """The checked inputs of a CAM method, its layer module and its upsampling mode."""
    model, x, tgt = setup(model, x, target)
    return model, x, tgt, resolve_layer(model, layer)[1], _mode(interpolation, x.ndim - 2)


def _layer_cam(model: nn.Module, x: torch.Tensor, tgt: _Target, layer: nn.Module,
               relu: bool) -> torch.Tensor:
    """Grad-CAM at the resolution of ``layer``'s output: ``(B, 1, *layer_spatial)``."""
    seen: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: Any, output: Any) -> Any:
        if not isinstance(output, torch.Tensor):
            raise ValueError(
                f"layer must return a tensor, got {type(output).__name__}"
            )
        seen.append(output)
        # the rest of the network gets a copy: a later in-place op (ReLU(inplace=True),
        # `y += skip`) cannot overwrite the activations or rebase their gradient
        return output.clone()

    handle = layer.register_forward_hook(hook)
    try:
        leaf = x.detach().requires_grad_(True)
        out = model(leaf.clone())
    finally:
        handle.remove()
    if len(seen) != 1:
        raise ValueError(
            f"layer must run exactly once in the forward pass, it ran {len(seen)} times"
        )
    acts = seen[0]
    if acts.ndim < 3 or acts.shape[0] != x.shape[0]:
        raise ValueError(
            f"layer output must be (B, K, *spatial) with B = {x.shape[0]}, got "
            f"{tuple(acts.shape)}; choose a convolutional layer"
        )
    scores = tgt.scores(out)
    if not acts.requires_grad:
        raise ValueError("the target score does not depend on the layer output")
    (g,) = torch.autograd.grad(scores.sum(), acts, allow_unused=True)
    if g is None:
        raise ValueError("the target score does not depend on the layer output")
    weights = g.mean(dim=tuple(range(2, g.ndim)), keepdim=True)
    cam = (weights * acts.detach()).sum(1, keepdim=True)
    return cam.clamp(min=0) if relu else cam


def grad_cam(model: nn.Module, x: torch.Tensor, target: Any, *, layer: nn.Module | str,
             relu: bool = True, upsample: bool = True, interpolation: str = "bilinear"
             ) -> torch.Tensor:
    r"""Grad-CAM: feature maps of a layer weighted by their average gradient.

    .. math::

        \alpha_k = \frac{1}{Z} \sum_{p} \frac{\partial y}{\partial A_{k,p}}, \qquad
        L = \mathrm{ReLU}\Big( \sum_k \alpha_k A_k \Big)

    where :math:`A_k` is channel :math:`k` of the layer output and :math:`p` runs over its
    :math:`Z` positions (Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra 2017,
    "Grad-CAM", arXiv:1610.02391). Equal to Captum's ``LayerGradCam`` with
    ``relu_attributions=True`` followed by ``LayerAttribution.interpolate``.

    Parameters
    ----------
    model, x, target
        As for :func:`~mlimaging.interpretability.saliency`.
    layer : torch.nn.Module or str
        The layer (or its dotted name) whose output :math:`A` ``(B, K, *spatial)`` is used;
        usually the last convolutional block. It must run once per forward pass.
    relu : bool
        Keep only positive evidence (default True, as in the paper).
    upsample : bool
        Resize the map to ``x``'s spatial size and repeat it over ``x``'s channels (default),
        so the result has ``x``'s shape; False returns ``(B, 1, *layer_spatial)``.
    interpolation : str
        ``"bilinear"`` (linear along every axis: bilinear in 2D, trilinear in 3D; the
        default) or ``"nearest"``.

    Returns
    -------
    torch.Tensor
        Detached map, ``x``'s shape (or the layer's resolution when ``upsample=False``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    >>> x = torch.rand(2, 1, 8, 8)
    >>> grad_cam(model, x, 2, layer="1").shape
    torch.Size([2, 1, 8, 8])
    >>> bool((grad_cam(model, x, 2, layer=model[1]) >= 0).all())
    True
    """
    model, x, tgt, module, mode = _prepare(model, x, target, layer, interpolation)
    with explained(model):
        cam = _layer_cam(model, x, tgt, module, bool(relu))
    if not upsample:
        return cam
    if cam.ndim != x.ndim:
        raise ValueError(
            f"layer output has {cam.ndim - 2} spatial axes but x has {x.ndim - 2}; "
            "use upsample=False"
        )
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode)
    return cam.expand_as(x).contiguous()


def guided_grad_cam(model: nn.Module, x: torch.Tensor, target: Any, *,
                    layer: nn.Module | str, interpolation: str = "bilinear") -> torch.Tensor:
    r"""Guided Grad-CAM: guided backpropagation masked by the upsampled Grad-CAM map.

    .. math:: G = \mathrm{GB}(x) \odot \mathrm{up}(L)

    with :math:`\mathrm{GB}` from :func:`~mlimaging.interpretability.guided_backprop` and
    :math:`L` the Grad-CAM map of ``layer`` (Selvaraju et al. 2017, arXiv:1610.02391):
    pixel-precise like guided backprop, class-discriminative like Grad-CAM. Equal to Captum's
    ``GuidedGradCam`` with the same ``interpolate_mode``.

    Parameters
    ----------
    model, x, target
        As for :func:`~mlimaging.interpretability.saliency`.
    layer : torch.nn.Module or str
        As for :func:`grad_cam`.
    interpolation : str
        Upsampling of the Grad-CAM map, ``"bilinear"`` (default) or ``"nearest"``.

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
    ...                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    >>> guided_grad_cam(model, torch.rand(2, 1, 8, 8), 0, layer="0").shape
    torch.Size([2, 1, 8, 8])
    """
    model, x, tgt, module, mode = _prepare(model, x, target, layer, interpolation)
    with explained(model):
        cam = _layer_cam(model, x, tgt, module, True)
        guided = _grad(Runner(model), x, tgt, "guided_backprop")
    if cam.ndim != x.ndim:
        raise ValueError(
            f"layer output has {cam.ndim - 2} spatial axes but x has {x.ndim - 2}"
        )
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode=mode)
    return (guided * cam).detach()

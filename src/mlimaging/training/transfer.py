"""Transfer learning: freeze a pretrained network and give it a new classification head.

The usual recipe (Yosinski J. et al. (2014). How transferable are features in deep neural
networks? NeurIPS. arXiv:1411.1792): keep the learned features fixed, replace the last
layer by a freshly initialised one for the new classes, and train only that layer (or a
few top layers).

Freezing sets ``requires_grad=False``; it does not stop BatchNorm layers from updating their
running statistics in train mode (put those modules in ``eval()`` if they must stay fixed).
Build the optimizer after freezing from the trainable parameters only, either
``torch.optim.SGD(filter(lambda p: p.requires_grad, model.parameters()), lr=...)`` or by
passing a factory ``lambda params: torch.optim.SGD(params, lr=...)`` to
:func:`~mlimaging.training.fit`, which gives it only the trainable parameters.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["freeze", "replace_head", "unfreeze"]


def _matches(name: str, prefix: str) -> bool:
    """``prefix`` matches whole name components: ``"fc3"`` matches ``fc3.weight``, not ``fc30.weight``."""
    if prefix.endswith("."):
        return name.startswith(prefix)
    return name == prefix or name.startswith(prefix + ".")


def freeze(model: nn.Module, *, trainable: Iterable[str] = ()) -> list[str]:
    """Freeze every parameter except those under one of the ``trainable`` name prefixes.

    Parameters
    ----------
    model
        The network, modified in place.
    trainable
        Qualified-name prefixes (``"fc3"``, ``"classifier."``, ``"features.4"``) of the parameters
        that stay trainable; a prefix matches whole dotted components. Empty: freeze everything.

    Returns
    -------
    list of str
        Names of the parameters left trainable, in ``named_parameters`` order.

    Raises
    ------
    ValueError
        If a prefix matches no parameter (the message lists the top-level modules).

    Examples
    --------
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> freeze(net, trainable=["2"])
    ['2.weight', '2.bias']
    >>> net[0].weight.requires_grad
    False
    """
    if isinstance(trainable, str):
        trainable = (trainable,)
    prefixes = list(trainable)
    named = list(model.named_parameters())
    for p in prefixes:
        if not isinstance(p, str) or not p:
            raise ValueError(f"trainable must hold non-empty parameter-name prefixes, got {p!r}")
        if not any(_matches(n, p) for n, _ in named):
            top = sorted({n.split(".")[0] for n, _ in named})
            raise ValueError(f"trainable prefix {p!r} matches no parameter of the model; top-level names are {top}")
    kept = []
    for n, param in named:
        keep = any(_matches(n, p) for p in prefixes)
        param.requires_grad_(keep)
        if keep:
            kept.append(n)
    return kept


def unfreeze(model: nn.Module) -> None:
    """Make every parameter trainable again."""
    for p in model.parameters():
        p.requires_grad_(True)


def _is_pointwise_conv(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and all(k == 1 for k in m.kernel_size)


def replace_head(model: nn.Module, num_classes: int, *, seed: int | None = None) -> nn.Module:
    """Replace the last ``nn.Linear`` (or, if there is none, the last 1x1 convolution) by a new one.

    The new layer has the same input size, ``num_classes`` outputs, the same bias setting,
    dtype and device, PyTorch's default initialisation and ``requires_grad=True``.
    "Last" means last in ``model.named_modules()`` order (registration order), which for
    ``nn.Sequential`` and the usual ``features``/``classifier`` layout is the output layer.

    Parameters
    ----------
    model
        The network, modified in place and returned.
    num_classes
        Number of outputs of the new head (>= 1).
    seed
        Seed for the new layer's initialisation (the global RNG is left untouched); ``None``
        draws from the global torch RNG.

    Raises
    ------
    ValueError
        If ``num_classes`` is not a positive integer, or the model has no Linear layer and no
        1x1 convolution.

    Examples
    --------
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10))
    >>> replace_head(net, 3, seed=0)[-1]
    Linear(in_features=32, out_features=3, bias=True)
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    modules = list(model.named_modules())
    found = [(n, m) for n, m in modules if isinstance(m, nn.Linear)]
    if not found:
        found = [(n, m) for n, m in modules if _is_pointwise_conv(m)]
    if not found:
        raise ValueError("model has no nn.Linear layer and no 1x1 convolution to replace as its head")
    name, old = found[-1]
    if not name:  # the model itself is the layer
        raise ValueError("model is itself the head layer; build a new layer instead of replace_head")
    factory = {"device": old.weight.device, "dtype": old.weight.dtype}
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(old.in_features, num_classes, bias=old.bias is not None, **factory)
        else:
            new = type(old)(old.in_channels, num_classes, kernel_size=1, stride=old.stride, padding=old.padding,
                            dilation=old.dilation, groups=1, bias=old.bias is not None, **factory)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
    return model

"""The model registry: every model family registers its variants by name.

A family file (``linear.py``, ``lenet.py``, ...) decorates a builder function
``build(*, num_classes=10, ...) -> nn.Module`` with :func:`register_model`;
:func:`create_model` looks the name up, checks the keyword arguments against the
builder's signature and builds the model, optionally under a fixed seed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "register_model"]


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one model.

    Attributes
    ----------
    name : str
        The registered name (``create_model(name)``).
    input_shape : tuple of int
        The default example input ``(C, H, W)``, without the batch axis.
    description : str
        One line (the builder's first docstring line unless given).
    defaults : dict
        The builder's keyword arguments and their default values.
    builder : callable
        The registered builder function (``create_model`` calls it).
    prompted : bool
        True for a network that takes prompts besides the image (SAM: points, boxes, masks)
        instead of mapping an image to logits; the generic image -> logits tests skip it.
    image_to_image : bool
        True for a network that maps an image to an image of the same kind (super-resolution:
        ``(B, C, h, w) -> (B, C, s h, s w)``) instead of class logits; the generic image ->
        logits tests skip it (its family has its own suite).
    detector : bool
        True for a detector whose output is a grid of boxes and class scores (YOLO:
        ``(B, S, S, 5B + C)``) instead of logits; the generic image -> logits tests skip it
        (:mod:`mlimaging.detection` has its own suite).
    """

    name: str
    input_shape: tuple[int, ...]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    builder: Callable[..., nn.Module] | None = field(default=None, repr=False, compare=False)
    prompted: bool = False
    image_to_image: bool = False
    detector: bool = False


_REGISTRY: dict[str, ModelInfo] = {}


def _identity(builder: Any) -> tuple[str, str]:
    """Where a builder is defined: re-registering from the same place (a module reload)
    replaces the entry instead of failing."""
    return (getattr(builder, "__module__", ""), getattr(builder, "__qualname__", repr(builder)))


def register_model(
    name: str, *, input_shape: Sequence[int], description: str | None = None, prompted: bool = False,
    image_to_image: bool = False, detector: bool = False,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder function under ``name`` (decorator).

    Parameters
    ----------
    name : str
        Registry name, e.g. ``"lenet"``.
    input_shape : sequence of int
        The default example input ``(C, H, W)`` without the batch axis (what the generic
        tests and summaries feed the model).
    description : str, optional
        One line; defaults to the first line of the builder's docstring.
    prompted : bool
        The model takes prompts besides the image (see :attr:`ModelInfo.prompted`).
    image_to_image : bool
        The model outputs an image, not logits (see :attr:`ModelInfo.image_to_image`).
    detector : bool
        The model outputs a detection grid, not logits (see :attr:`ModelInfo.detector`).

    Raises
    ------
    ValueError
        If ``name`` is empty or already taken by a builder defined elsewhere, or ``input_shape`` does
        not hold positive integers.

    Examples
    --------
    >>> from torch import nn
    >>> @register_model("tiny-doc", input_shape=(1, 4, 4))
    ... def tiny(*, num_classes: int = 10) -> nn.Module:
    ...     '''A flatten + linear toy model.'''
    ...     return nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes))
    >>> model_info("tiny-doc").description
    'A flatten + linear toy model.'
    >>> _ = _REGISTRY.pop("tiny-doc")  # keep the registry clean for other examples
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    shape = tuple(input_shape)
    if not shape or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                            for s in shape):
        raise ValueError(f"input_shape must be a sequence of positive ints, got {input_shape!r}")

    def register(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        old = _REGISTRY.get(name)
        if old is not None and _identity(old.builder) != _identity(builder):
            raise ValueError(f"model {name!r} is already registered")
        doc = description or next(iter((builder.__doc__ or "").strip().splitlines()), "")
        defaults = {
            p.name: p.default
            for p in inspect.signature(builder).parameters.values()
            if p.default is not inspect.Parameter.empty
        }
        _REGISTRY[name] = ModelInfo(name, shape, doc.strip(), defaults, builder, bool(prompted),
                                    bool(image_to_image), bool(detector))
        return builder

    return register


def list_models() -> list[str]:
    """Names of the registered models, sorted.

    Examples
    --------
    >>> import mlimaging.models
    >>> {"lenet", "logistic_regression", "vgg16"} <= set(list_models())
    True
    """
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``; a ``ValueError`` lists the valid names.

    Examples
    --------
    >>> import mlimaging.models
    >>> model_info("lenet").input_shape
    (1, 32, 32)
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(list_models())}"
        ) from None


def create_model(name: str, *, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with the builder's keyword arguments.

    Parameters
    ----------
    name : str
        A name from :func:`list_models`.
    seed : int, optional
        When given, the weights are initialised from ``torch.manual_seed(seed)`` inside
        :func:`torch.random.fork_rng`: the same seed gives bit-identical weights, and the
        global random state is left as it was. Without it the global generator is used.
    **kwargs
        Options of the model (``num_classes``, ``in_channels``, ...; see
        ``model_info(name).defaults``).

    Returns
    -------
    torch.nn.Module
        The model, in training mode, on the CPU.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones), an option the model does
        not take (the message names it and the model), or a seed that is not an int.

    Examples
    --------
    >>> import torch
    >>> model = create_model("lenet", num_classes=3, seed=0)
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 3])
    >>> a = create_model("lenet", seed=0).state_dict()
    >>> b = create_model("lenet", seed=0).state_dict()
    >>> all(torch.equal(a[k], b[k]) for k in a)
    True
    """
    info = model_info(name)
    assert info.builder is not None
    params = inspect.signature(info.builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not takes_any:
        valid = [p.name for p in params.values()
                 if p.kind in (inspect.Parameter.KEYWORD_ONLY,
                               inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ValueError(
                f"model {name!r} takes no option(s) {unknown}; valid options: {valid}"
            )
    if seed is None:
        model = info.builder(**kwargs)
    else:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = info.builder(**kwargs)
    if not isinstance(model, nn.Module):
        raise TypeError(f"builder of model {name!r} returned {type(model).__name__}, "
                        "expected an nn.Module")
    return model

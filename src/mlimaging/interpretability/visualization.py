r"""Feature visualisation: filters as images, and inputs optimised to excite a unit.

- :func:`visualize_filters`: a convolution's kernels as an image grid (Zeiler & Fergus 2014).
- :func:`activation_maximization`: gradient ascent on the input to maximise a channel, a layer
  or a class logit, with jitter, octaves and a total-variation penalty (Erhan et al. 2009;
  Olah et al. 2017).
- :func:`deep_dream`: amplify whatever a layer already sees in an image (Mordvintsev et al. 2015).
- :func:`class_model_visualization`: the image that maximises a class score under an L2
  penalty (Simonyan et al. 2014).

All of them leave the model as they found it: its train/eval mode and ``requires_grad`` flags
are restored and every hook is removed, also after an error. Randomness (initial noise,
jitter) comes from a ``torch.Generator`` seeded by ``seed``: a seeded call is repeatable.

References
----------
Erhan D., Bengio Y., Courville A., Vincent P. (2009). Visualizing higher-layer features of a
deep network. Technical report 1341, Université de Montréal.

Simonyan K., Vedaldi A., Zisserman A. (2014). Deep inside convolutional networks: visualising
image classification models and saliency maps. ICLR workshop. arXiv:1312.6034.

Zeiler M. D., Fergus R. (2014). Visualizing and understanding convolutional networks. ECCV.
arXiv:1311.2901.

Mordvintsev A., Olah C., Tyka M. (2015). Inceptionism: going deeper into neural networks.
Google Research Blog.

Olah C., Mordvintsev A., Schubert L. (2017). Feature visualization. Distill.
DOI 10.23915/distill.00007.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.interpretability._common import (
    check_positive_int,
    explained,
    resolve_layer,
)
from mlimaging.interpretability.embeddings import (
    capture,
    model_device,
    run_until,
)

__all__ = ["activation_maximization", "class_model_visualization", "deep_dream", "plot_filters",
           "visualize_filters"]


# --------------------------------------------------------------------------- validation


def _check_float(value: Any, name: str, *, low: float = 0.0, strict: bool = True) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.number))
          and math.isfinite(float(value)) and (value > low if strict else value >= low))
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


def _check_shape(input_shape: Any) -> tuple[int, ...]:
    if input_shape is None:
        raise ValueError("input_shape is required: (C, H, W) or (C, D, H, W), e.g. (1, 28, 28)")
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"input_shape must be (C, H, W) or (C, D, H, W), got {input_shape!r}") from None
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) or (C, D, H, W) with positive sizes, "
                         f"got {input_shape!r}")
    return shape


def _check_range(value_range: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"value_range must be a (low, high) pair, got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite with low < high, got {value_range!r}")
    return lo, hi


def _octave_sizes(spatial: Sequence[int], octaves: int, scale: float) -> list[tuple[int, ...]]:
    """Spatial sizes from the smallest octave to the full size."""
    sizes = [tuple(max(1, round(s / scale ** k)) for s in spatial) for k in range(octaves)]
    return sizes[::-1]


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


def _jitter(x: torch.Tensor, jitter: int, gen: torch.Generator) -> torch.Tensor:
    if jitter == 0:
        return x
    shifts = torch.randint(-jitter, jitter + 1, (x.ndim - 2,), generator=gen).tolist()
    return torch.roll(x, shifts=shifts, dims=tuple(range(2, x.ndim)))


def total_variation(x: torch.Tensor) -> torch.Tensor:
    r"""Anisotropic total variation :math:`\sum_d \operatorname{mean} |x_{i + e_d} - x_i|`
    over the spatial axes ``d`` of a ``(B, C, *spatial)`` tensor (a scalar).

    Examples
    --------
    >>> import torch
    >>> total_variation(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])).item()
    1.0
    """
    tv = x.new_zeros(())
    for d in range(2, x.ndim):
        if x.shape[d] > 1:
            tv = tv + x.diff(dim=d).abs().mean()
    return tv


def _class_score(out: Any, target: int) -> torch.Tensor:
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"target needs a model that returns (B, K) class scores, got {shape}")
    if not 0 <= target < out.shape[1]:
        raise ValueError(f"target must be a class index in [0, {out.shape[1]}), got {target}")
    return out[:, target]


# --------------------------------------------------------------------------- filters


def _first_conv(model: nn.Module) -> tuple[str, nn.Module]:
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return name, module
    raise ValueError("the model has no convolution layer; pass layer= a module with a "
                     "(out, in, *kernel) weight")


def visualize_filters(
    model: nn.Module,
    layer: Any = None,
    *,
    normalize: str = "filter",
    ncols: int | None = None,
    padding: int = 1,
    pad_value: float = 1.0,
) -> torch.Tensor:
    r"""A convolution's kernels as one image grid (Zeiler & Fergus 2014), values in [0, 1].

    Each kernel is scaled to [0, 1] by :math:`(w - \min w) / (\max w - \min w)`, with the
    minimum and maximum taken over the whole filter (``normalize="filter"``, all its input
    channels) or over the whole layer (``"layer"``, which keeps the filters' relative
    strength); a constant filter becomes 0.5. One tile per filter, in colour when the layer
    reads 3 channels and in grey when it reads 1; otherwise one row per filter and one column
    per input channel. 3D kernels show their middle depth slice.

    Parameters
    ----------
    model
        The network.
    layer
        A convolution (module or dotted name); default the first ``ConvNd`` of the model.
    normalize
        ``"filter"`` or ``"layer"``.
    ncols
        Tiles per row (for 1 or 3 input channels); default :math:`\lceil\sqrt{n}\rceil`.
    padding, pad_value
        Pixels between tiles and their value.

    Returns
    -------
    torch.Tensor
        ``(1 or 3, H, W)`` float32 image, detached, on the CPU.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> conv = nn.Conv2d(1, 2, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = conv.weight.copy_(torch.tensor([[[[0., 1.], [2., 3.]]], [[[5., 5.], [5., 5.]]]]))
    >>> grid = visualize_filters(nn.Sequential(conv), padding=0)
    >>> grid[0]
    tensor([[0.0000, 0.3333, 0.5000, 0.5000],
            [0.6667, 1.0000, 0.5000, 0.5000]])
    """
    if normalize not in ("filter", "layer"):
        raise ValueError(f"normalize must be 'filter' or 'layer', got {normalize!r}")
    padding = check_positive_int(padding, "padding", 0)
    if layer is None:
        _, module = _first_conv(model)
    else:
        _, module = resolve_layer(model, layer)
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim not in (4, 5):
        raise ValueError(f"layer must be a 2D or 3D convolution with an (out, in, *kernel) weight, "
                         f"got {type(module).__name__}")
    w = weight.detach().float().cpu()
    if w.ndim == 5:
        w = w[:, :, w.shape[2] // 2]
    n_out, n_in, kh, kw = w.shape
    flat = w.reshape(n_out, -1)
    if normalize == "filter":
        lo, hi = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    else:
        lo, hi = flat.min().expand(n_out, 1, 1, 1), flat.max().expand(n_out, 1, 1, 1)
    span = hi - lo
    w = torch.where(span > 0, (w - lo) / span.clamp_min(1e-30), torch.full_like(w, 0.5))
    if n_in in (1, 3):
        tiles = w  # (n, C, kh, kw)
        cols = ncols if ncols is not None else math.ceil(math.sqrt(n_out))
        cols = check_positive_int(cols, "ncols")
    else:
        tiles = w.reshape(n_out * n_in, 1, kh, kw)
        cols = n_in
    n, c = tiles.shape[:2]
    rows = math.ceil(n / cols)
    grid = torch.full((c, rows * (kh + padding) + padding, cols * (kw + padding) + padding),
                      float(pad_value))
    for k in range(n):
        r, q = divmod(k, cols)
        top, left = padding + r * (kh + padding), padding + q * (kw + padding)
        grid[:, top:top + kh, left:left + kw] = tiles[k]
    return grid


def plot_filters(model: nn.Module, layer: Any = None, *, ax: Any = None, **kw: Any) -> Any:
    """Draw :func:`visualize_filters` (grey or RGB) on ``ax`` and return the ``Figure``.

    Examples
    --------
    >>> from mlimaging.models import create_model
    >>> fig = plot_filters(create_model("lenet"))
    >>> fig.axes[0].images[0].get_array().shape  # 6 filters 5 x 5 in 2 rows of 3
    (13, 19)
    """
    from matplotlib.figure import Figure

    grid = visualize_filters(model, layer, **kw)
    if ax is None:
        fig = Figure(figsize=(4, 4))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if grid.shape[0] == 1:
        ax.imshow(grid[0].numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    return fig


# --------------------------------------------------------------------------- activation maximisation


def activation_maximization(
    model: nn.Module,
    *,
    layer: Any = None,
    channel: int | None = None,
    target: int | None = None,
    steps: int = 128,
    lr: float = 0.05,
    jitter: int = 2,
    octaves: int = 1,
    octave_scale: float = 1.3,
    tv_weight: float = 1e-2,
    l2_weight: float = 0.0,
    input_shape: Sequence[int] | None = None,
    value_range: tuple[float, float] = (0.0, 1.0),
    seed: int = 0,
) -> torch.Tensor:
    r"""The input that maximally excites a unit, by gradient ascent (Erhan et al. 2009).

    .. math::

        x^\star = \arg\max_x \; a(T_t(x)) - \lambda_{TV} \, \mathrm{TV}(x)
        - \lambda_2 \operatorname{mean}(x^2),

    where :math:`a` is the mean activation of ``channel`` of ``layer`` (over its spatial
    positions and the batch), the mean of the whole layer when ``channel`` is ``None``, or
    the logit of class ``target``; :math:`T_t` rolls the image by a random shift of up to
    ``jitter`` pixels per axis at every step (transformation robustness, Olah et al. 2017) and
    TV is :func:`total_variation`. Adam with step ``lr`` from seeded noise around the middle of
    ``value_range``; after each step the image is clipped to ``value_range``. With
    ``octaves > 1`` the optimisation starts on an image ``octave_scale ** (octaves - 1)``
    times smaller, which is upsampled (bilinear) after every ``steps`` iterations
    (``steps * octaves`` in all), so coarse structure forms first.

    Parameters
    ----------
    model
        The network (mode and flags restored afterwards).
    layer, channel
        The layer (module or dotted name) and optionally one channel of it (index along
        dimension 1 of its output).
    target
        A class index instead of a layer: maximise the logit ``model(x)[:, target]``.
    steps, lr
        Iterations per octave and Adam step size.
    jitter
        Maximal random shift in pixels (0: none).
    octaves, octave_scale
        Number of scales and the ratio between successive ones.
    tv_weight, l2_weight
        Weights of the total-variation and L2 penalties.
    input_shape
        ``(C, H, W)`` or ``(C, D, H, W)`` of one input (required).
    value_range
        ``(low, high)``: the image stays inside it.
    seed
        Seeds the initial noise and the jitter.

    Returns
    -------
    torch.Tensor
        ``(1, *input_shape)`` detached image on the model's device.

    Examples
    --------
    >>> from mlimaging.models import create_model
    >>> img = activation_maximization(create_model("lenet"), layer="conv1", channel=0,
    ...                               steps=5, input_shape=(1, 28, 28))
    >>> img.shape, bool(img.min() >= 0 and img.max() <= 1)
    (torch.Size([1, 1, 28, 28]), True)
    """
    if (layer is None) == (target is None):
        raise ValueError("give exactly one of layer= (with an optional channel=) or target= "
                         f"(a class index), got layer={layer!r}, target={target!r}")
    if channel is not None and layer is None:
        raise ValueError("channel needs layer=")
    steps = check_positive_int(steps, "steps")
    lr = _check_float(lr, "lr")
    jitter = check_positive_int(jitter, "jitter", 0)
    octaves = check_positive_int(octaves, "octaves")
    octave_scale = _check_float(octave_scale, "octave_scale", low=1.0)
    tv_weight = _check_float(tv_weight, "tv_weight", strict=False)
    l2_weight = _check_float(l2_weight, "l2_weight", strict=False)
    shape = _check_shape(input_shape)
    lo, hi = _check_range(value_range)
    module = resolve_layer(model, layer)[1] if layer is not None else None
    if target is not None:
        target = check_positive_int(target, "target", 0)
    if channel is not None:
        channel = check_positive_int(channel, "channel", 0)

    gen = torch.Generator().manual_seed(int(seed))
    dev = model_device(model)
    sizes = _octave_sizes(shape[1:], octaves, octave_scale)
    mid, span = (lo + hi) / 2, hi - lo
    x = (mid + 0.05 * span * torch.randn((1, shape[0], *sizes[0]), generator=gen)).clamp(lo, hi)
    x = x.to(dev)

    def objective(inp: torch.Tensor, store: dict) -> torch.Tensor:
        if module is None:
            return _class_score(model(inp), target).mean()
        store.clear()
        run_until(model, inp)
        act = store.get("value")
        if not isinstance(act, torch.Tensor):
            raise ValueError(f"layer {layer!r} did not output a tensor in the forward pass")
        if channel is None:
            return act.mean()
        if act.ndim < 2 or channel >= act.shape[1]:
            raise ValueError(f"channel must be in [0, {act.shape[1] if act.ndim > 1 else 0}) for "
                             f"layer {layer!r} (output shape {tuple(act.shape)}), got {channel}")
        return act[:, channel].mean()

    with explained(model), _maybe_capture(module) as store:
        for k, size in enumerate(sizes):
            if k:
                x = _resize(x, size).clamp(lo, hi)
            x = x.detach().requires_grad_(True)
            opt = torch.optim.Adam([x], lr=lr)
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                value = objective(_jitter(x, jitter, gen), store)
                loss = -value + tv_weight * total_variation(x) + l2_weight * x.pow(2).mean()
                loss.backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(lo, hi)
    return x.detach()


def _maybe_capture(module: nn.Module | None) -> Any:
    return capture(module, stop=True) if module is not None else contextlib.nullcontext({})


# --------------------------------------------------------------------------- DeepDream


def deep_dream(
    model: nn.Module,
    image: Any,
    *,
    layer: Any,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    jitter: int = 4,
    lr: float = 0.01,
    value_range: tuple[float, float] | None = None,
    seed: int = 0,
) -> torch.Tensor:
    r"""DeepDream (Mordvintsev et al. 2015): amplify what ``layer`` sees in ``image``.

    Gradient ascent on :math:`L(x) = \tfrac12 \operatorname{mean}(a_\ell(x)^2)`, the energy of
    the layer's activations, with the gradient normalised by its mean magnitude per image:

    .. math::

        x \leftarrow \operatorname{clip}\Big(x + \eta\,(h - l)\,
        \frac{\nabla_x L(T_t(x))}{\operatorname{mean}|\nabla_x L(T_t(x))| + 10^{-8}},\ l, h\Big),

    with :math:`\eta` = ``lr`` (a fraction of the value range :math:`[l, h]`) and
    :math:`T_t` a random roll of up to ``jitter`` pixels. An octave pyramid runs from the
    image shrunk ``octave_scale ** (octaves - 1)`` times up to full size: at each octave the
    detail the dream added so far is upsampled and added to that octave's image, so the
    patterns grow at several scales.

    Parameters
    ----------
    model
        The network (mode and flags restored; the forward pass stops after ``layer``).
    image
        ``(C, H, W)`` or ``(B, C, H, W)`` (also 3D: ``(B, C, D, H, W)``), tensor or array.
    layer
        Module or dotted name whose activations are amplified.
    octaves, octave_scale
        Number of scales and the ratio between them.
    steps
        Gradient steps per octave.
    jitter
        Maximal random shift in pixels.
    lr
        Step size as a fraction of the value range.
    value_range
        ``(low, high)`` the result stays in; default the input's ``(min, max)``.
    seed
        Seeds the jitter.

    Returns
    -------
    torch.Tensor
        The dreamed image, same shape and dtype as ``image``, detached.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models import create_model
    >>> img = torch.rand(1, 28, 28)
    >>> out = deep_dream(create_model("lenet"), img, layer="conv2", octaves=2, steps=3)
    >>> out.shape == img.shape, bool(out.min() >= img.min() and out.max() <= img.max())
    (True, True)
    """
    x0 = torch.as_tensor(image)
    if not x0.is_floating_point():
        x0 = x0.float()
    if x0.ndim not in (3, 4, 5) or x0.numel() == 0:
        raise ValueError(f"image must be (C, H, W) or (B, C, *spatial) with 2 or 3 spatial axes, "
                         f"got shape {tuple(x0.shape)}")
    if not torch.isfinite(x0).all():
        raise ValueError("image must be finite (found NaN or infinity)")
    squeeze = x0.ndim == 3
    batch = x0.unsqueeze(0) if squeeze else x0
    steps = check_positive_int(steps, "steps")
    octaves = check_positive_int(octaves, "octaves")
    octave_scale = _check_float(octave_scale, "octave_scale", low=1.0)
    jitter = check_positive_int(jitter, "jitter", 0)
    lr = _check_float(lr, "lr")
    if value_range is None:
        lo, hi = float(batch.min()), float(batch.max())
        if lo == hi:
            raise ValueError("image is constant; pass value_range=(low, high) explicitly")
    else:
        lo, hi = _check_range(value_range)
    _, module = resolve_layer(model, layer)
    gen = torch.Generator().manual_seed(int(seed))
    dev = model_device(model)
    base = batch.to(dev, torch.float32).clamp(lo, hi)
    sizes = _octave_sizes(base.shape[2:], octaves, octave_scale)
    detail = torch.zeros((base.shape[0], base.shape[1], *sizes[0]), device=dev)
    x = base
    with explained(model), capture(module, stop=True) as store:
        for size in sizes:
            octave_base = _resize(base, size)
            x = (octave_base + _resize(detail, size)).clamp(lo, hi)
            for _ in range(steps):
                x = x.detach().requires_grad_(True)
                store.clear()
                run_until(model, _jitter(x, jitter, gen))
                act = store.get("value")
                if not isinstance(act, torch.Tensor):
                    raise ValueError(f"layer {layer!r} did not output a tensor in the forward pass")
                energy = 0.5 * act.pow(2).mean() * act.shape[0]  # a per-image mean, summed
                (grad,) = torch.autograd.grad(energy, x)
                norm = grad.abs().flatten(1).mean(1).view(-1, *([1] * (grad.ndim - 1)))
                with torch.no_grad():
                    x = (x + lr * (hi - lo) * grad / (norm + 1e-8)).clamp(lo, hi)
            detail = (x - octave_base).detach()
    out = x.detach().to(device=x0.device, dtype=x0.dtype)
    return out[0] if squeeze else out


# --------------------------------------------------------------------------- class model


def class_model_visualization(
    model: nn.Module,
    target: int,
    *,
    steps: int = 200,
    lr: float = 0.1,
    weight_decay: float = 1e-2,
    input_shape: Sequence[int] | None = None,
    value_range: tuple[float, float] | None = None,
    init_std: float = 0.0,
    seed: int = 0,
) -> torch.Tensor:
    r"""Class model visualisation (Simonyan et al. 2014): the image that scores ``target`` best.

    .. math::

        I^\star = \arg\max_I \; S_c(I) - \lambda \lVert I \rVert_2^2,

    where :math:`S_c` is the *unnormalised* score (logit) of class :math:`c` -- not its
    softmax, which could also grow by lowering the other classes -- and :math:`\lambda` =
    ``weight_decay``. Plain gradient ascent :math:`I \leftarrow I + \eta \nabla_I (S_c(I) -
    \lambda\lVert I\rVert^2)` from the zero image, as in the paper (``init_std > 0`` starts
    from seeded Gaussian noise instead). For a linear score :math:`S_c = w^\top I + b` the
    optimum is :math:`I^\star = w / 2\lambda`. Inputs are usually mean-centred, so zero is
    the mean image; add the dataset mean back to display.

    Parameters
    ----------
    model
        A classifier returning ``(B, K)`` logits (mode and flags restored).
    target
        Class index :math:`c`.
    steps, lr
        Iterations and step size :math:`\eta`.
    weight_decay
        :math:`\lambda \ge 0`.
    input_shape
        ``(C, H, W)`` or ``(C, D, H, W)`` (required).
    value_range
        Optional ``(low, high)`` to clip the image to after every step.
    init_std, seed
        Standard deviation of the initial noise and its seed.

    Returns
    -------
    torch.Tensor
        ``(1, *input_shape)`` detached image.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1., -1., 2., 0.], [0., 0., 0., 1.]]))
    >>> img = class_model_visualization(net, 0, weight_decay=0.5, input_shape=(1, 2, 2))
    >>> torch.allclose(img.flatten(), net[1].weight[0] / (2 * 0.5), atol=1e-6)  # w / 2 lambda
    True
    """
    target = check_positive_int(target, "target", 0)
    steps = check_positive_int(steps, "steps")
    lr = _check_float(lr, "lr")
    weight_decay = _check_float(weight_decay, "weight_decay", strict=False)
    init_std = _check_float(init_std, "init_std", strict=False)
    shape = _check_shape(input_shape)
    bounds = _check_range(value_range) if value_range is not None else None
    gen = torch.Generator().manual_seed(int(seed))
    x = (init_std * torch.randn((1, *shape), generator=gen)).to(model_device(model))
    if bounds is not None:
        x = x.clamp(*bounds)
    with explained(model):
        for _ in range(steps):
            x = x.detach().requires_grad_(True)
            objective = _class_score(model(x), target).sum() - weight_decay * x.pow(2).sum()
            (grad,) = torch.autograd.grad(objective, x)
            with torch.no_grad():
                x = x + lr * grad
                if bounds is not None:
                    x = x.clamp(*bounds)
    return x.detach()

"""Convolution arithmetic, receptive fields, parameter counts and detector output shapes.

The exam formulas of the course, as functions checked against PyTorch's own layers:

- :func:`conv_output_size`, :func:`transposed_conv_output_size`, :func:`pool_output_size`:
  the spatial size after a layer (Dumoulin & Visin, 2016, arXiv:1603.07285).
- :func:`receptive_field` and :func:`summary`: one row per layer of a model with its output
  shape, jump (cumulative stride) and receptive field (Araujo, Norris & Sim, 2019,
  DOI:10.23915/distill.00021), and its parameter count.
- :func:`count_parameters`: the number of (trainable) parameters.
- :func:`yolo_output_shape`: the ``S x S x (5B + C)`` output of YOLO (Redmon et al., 2016,
  arXiv:1506.02640).
"""

from __future__ import annotations

import io
import operator
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import IO, Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "LayerInfo",
    "conv_output_size",
    "count_parameters",
    "pool_output_size",
    "receptive_field",
    "summary",
    "transposed_conv_output_size",
    "yolo_output_shape",
]

IntOrTuple = int | tuple[int, ...]


# --------------------------------------------------------------------------- argument checks
def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {number}")
    return number


def _broadcast(minimums: dict[str, int], **values: Any) -> tuple[list[dict[str, int]], bool]:
    """Per-axis integer arguments: ints are repeated, sequences must agree in length."""
    lengths = {name: len(v) for name, v in values.items() if isinstance(v, (tuple, list))}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{', '.join(lengths)} must have the same number of axes, got lengths {lengths}")
    n_axes = next(iter(lengths.values()), 1)
    if n_axes == 0:
        raise ValueError(f"{next(iter(lengths))} must not be empty")
    axes: list[dict[str, int]] = [{} for _ in range(n_axes)]
    for name, value in values.items():
        seq = value if isinstance(value, (tuple, list)) else [value] * n_axes
        for axis, item in enumerate(seq):
            label = f"{name}[{axis}]" if lengths else name
            axes[axis][name] = _check_int(item, label, minimums[name])
    return axes, bool(lengths)


def _where(axis: int, tuple_mode: bool) -> str:
    return f" (axis {axis})" if tuple_mode else ""


def _finish(out: list[int], tuple_mode: bool) -> IntOrTuple:
    return tuple(out) if tuple_mode else out[0]


# --------------------------------------------------------------------------- output sizes
def conv_output_size(
    size: IntOrTuple,
    kernel: IntOrTuple,
    *,
    padding: IntOrTuple | str = 0,
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
) -> IntOrTuple:
    """Spatial output size of a convolution (as ``torch.nn.ConvNd`` computes it).

    .. math::

        O = \\left\\lfloor \\frac{M + 2P - D(K - 1) - 1}{S} \\right\\rfloor + 1

    for input size :math:`M`, kernel :math:`K`, padding :math:`P`, stride :math:`S` and
    dilation :math:`D` (Dumoulin & Visin, 2016, "A guide to convolution arithmetic for deep
    learning", arXiv:1603.07285).

    Parameters
    ----------
    size, kernel : int or tuple of int
        Input size and kernel size; tuples (one value per spatial axis) give N-D results.
    padding : int, tuple of int, "valid" or "same"
        Zero padding on each side. ``"same"`` (stride 1 only) keeps the size, ``"valid"`` is 0.
    stride, dilation : int or tuple of int
        Step of the kernel and spacing of its taps, >= 1.

    Returns
    -------
    int or tuple of int
        A tuple when any argument is a tuple or list.

    Raises
    ------
    ValueError
        Non-integer or out-of-range arguments (naming the argument), or an effective kernel
        larger than the padded input.

    Examples
    --------
    >>> conv_output_size(28, 5)
    24
    >>> conv_output_size(32, 3, padding=1, stride=2)
    16
    >>> conv_output_size((28, 30), (3, 5), dilation=2)
    (24, 22)
    """
    if isinstance(padding, str):
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be an integer, 'valid' or 'same', got {padding!r}")
        same = padding == "same"
        padding = 0
    else:
        same = False
    mins = {"size": 1, "kernel": 1, "padding": 0, "stride": 1, "dilation": 1}
    axes, tuple_mode = _broadcast(mins, size=size, kernel=kernel, padding=padding, stride=stride, dilation=dilation)
    out = []
    for axis, a in enumerate(axes):
        if same:
            if a["stride"] != 1:
                raise ValueError(f"padding='same' needs stride 1, got stride {a['stride']}{_where(axis, tuple_mode)}")
            out.append(a["size"])
            continue
        k_eff = a["dilation"] * (a["kernel"] - 1) + 1
        padded = a["size"] + 2 * a["padding"]
        if k_eff > padded:
            raise ValueError(
                f"kernel: effective kernel size dilation*(kernel-1)+1 = {k_eff} is larger than the "
                f"padded input size + 2*padding = {padded}{_where(axis, tuple_mode)}"
            )
        out.append((padded - k_eff) // a["stride"] + 1)
    return _finish(out, tuple_mode)


def transposed_conv_output_size(
    size: IntOrTuple,
    kernel: IntOrTuple,
    *,
    padding: IntOrTuple = 0,
    stride: IntOrTuple = 1,
    dilation: IntOrTuple = 1,
    output_padding: IntOrTuple = 0,
) -> IntOrTuple:
    """Spatial output size of a transposed convolution (``torch.nn.ConvTransposeNd``).

    .. math::

        O = (M - 1) S - 2P + D(K - 1) + P_{out} + 1

    with output padding :math:`P_{out} < \\max(S, D)` (Dumoulin & Visin, 2016,
    arXiv:1603.07285, section 4).

    Parameters
    ----------
    size, kernel : int or tuple of int
        Input size and kernel size (tuples give N-D results).
    padding, stride, dilation, output_padding : int or tuple of int
        As in ``torch.nn.ConvTranspose2d``.

    Returns
    -------
    int or tuple of int

    Raises
    ------
    ValueError
        Out-of-range arguments, ``output_padding`` not smaller than stride or dilation, or a
        non-positive output size.

    Examples
    --------
    >>> transposed_conv_output_size(7, 3, stride=2)
    15
    >>> transposed_conv_output_size(16, 4, stride=2, padding=1)
    32
    """
    mins = {"size": 1, "kernel": 1, "padding": 0, "stride": 1, "dilation": 1, "output_padding": 0}
    axes, tuple_mode = _broadcast(
        mins, size=size, kernel=kernel, padding=padding, stride=stride, dilation=dilation, output_padding=output_padding
    )
    out = []
    for axis, a in enumerate(axes):
        m, k, p, s, d, op = (a[n] for n in ("size", "kernel", "padding", "stride", "dilation", "output_padding"))
        if op >= s and op >= d:
            raise ValueError(
                f"output_padding must be smaller than stride or dilation, got output_padding={op}, "
                f"stride={s}, dilation={d}{_where(axis, tuple_mode)}"
            )
        value = (m - 1) * s - 2 * p + d * (k - 1) + op + 1
        if value < 1:
            raise ValueError(f"padding={p} is too large: the output size would be {value}{_where(axis, tuple_mode)}")
        out.append(value)
    return _finish(out, tuple_mode)


def pool_output_size(
    size: IntOrTuple,
    kernel: IntOrTuple,
    *,
    stride: IntOrTuple | None = None,
    padding: IntOrTuple = 0,
    dilation: IntOrTuple = 1,
    ceil_mode: bool = False,
) -> IntOrTuple:
    """Spatial output size of max or average pooling (``torch.nn.MaxPoolNd``).

    .. math::

        O = \\left\\lfloor \\frac{M + 2P - D(K - 1) - 1}{S} \\right\\rfloor + 1

    (ceiling instead of floor with ``ceil_mode``, dropping a last window that would start in
    the right padding, as PyTorch does). The stride defaults to the kernel size, so windows do
    not overlap; the padding may be at most half the kernel.

    Parameters
    ----------
    size, kernel : int or tuple of int
        Input size and window size.
    stride : int or tuple of int, optional
        Defaults to ``kernel``.
    padding, dilation : int or tuple of int
        As in ``torch.nn.MaxPool2d`` (``AvgPool`` has dilation 1).
    ceil_mode : bool
        Round up instead of down.

    Returns
    -------
    int or tuple of int

    Examples
    --------
    >>> pool_output_size(28, 2)
    14
    >>> pool_output_size(7, 2), pool_output_size(7, 2, ceil_mode=True)
    (3, 4)
    >>> pool_output_size((55, 55), 3, stride=2)
    (27, 27)
    """
    if stride is None:
        stride = kernel
    mins = {"size": 1, "kernel": 1, "padding": 0, "stride": 1, "dilation": 1}
    axes, tuple_mode = _broadcast(mins, size=size, kernel=kernel, padding=padding, stride=stride, dilation=dilation)
    out = []
    for axis, a in enumerate(axes):
        m, k, p, s, d = (a[n] for n in ("size", "kernel", "padding", "stride", "dilation"))
        if p > k // 2:
            raise ValueError(f"padding must be at most half the kernel ({k // 2}), got {p}{_where(axis, tuple_mode)}")
        value = (m + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (value - 1) * s >= m + p:
            value -= 1
        if value < 1:
            raise ValueError(
                f"kernel: effective kernel size {d * (k - 1) + 1} is larger than the padded input "
                f"size {m + 2 * p}{_where(axis, tuple_mode)}"
            )
        out.append(value)
    return _finish(out, tuple_mode)


def yolo_output_shape(grid: int | tuple[int, int], boxes: int, classes: int) -> tuple[int, int, int]:
    """Output tensor shape of a YOLO (v1) detector: ``S x S x (5B + C)``.

    Each of the :math:`S \\times S` cells predicts :math:`B` boxes with 5 numbers each
    (:math:`x, y, w, h` and a confidence) and :math:`C` class probabilities shared by the cell:

    .. math::

        S \\times S \\times (5B + C)

    (Redmon, Divvala, Girshick & Farhadi, 2016, "You Only Look Once", arXiv:1506.02640).

    Parameters
    ----------
    grid : int or (int, int)
        Number of cells per side, or (rows, columns).
    boxes : int
        Boxes predicted per cell, >= 1.
    classes : int
        Number of object classes, >= 1.

    Examples
    --------
    >>> yolo_output_shape(7, 2, 20)  # the paper's PASCAL VOC model
    (7, 7, 30)
    >>> yolo_output_shape(11, 4, 10)
    (11, 11, 30)
    """
    if isinstance(grid, (tuple, list)):
        if len(grid) != 2:
            raise ValueError(f"grid must be an integer or (rows, columns), got {grid!r}")
        rows, cols = (_check_int(g, "grid", 1) for g in grid)
    else:
        rows = cols = _check_int(grid, "grid", 1)
    b = _check_int(boxes, "boxes", 1)
    c = _check_int(classes, "classes", 1)
    return rows, cols, 5 * b + c


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters of a model (each shared parameter counted once).

    .. math::

        N = \\sum_{\\theta \\in \\Theta} \\mathrm{numel}(\\theta)

    A ``Conv2d(C_in, C_out, K)`` has :math:`K^2 C_{in} C_{out} + C_{out}` parameters, a
    ``Linear(n, m)`` has :math:`nm + m`.

    Parameters
    ----------
    model : torch.nn.Module
    trainable_only : bool
        Count only parameters with ``requires_grad``.

    Examples
    --------
    >>> count_parameters(nn.Linear(28 * 28, 1))  # logistic regression on 28x28 pixels
    785
    >>> count_parameters(nn.Conv2d(1, 6, 5))
    156
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    total = 0
    for param in model.parameters():
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError("model has uninitialized (lazy) parameters: run one forward pass first")
        if param.requires_grad or not trainable_only:
            total += param.numel()
    return total


# --------------------------------------------------------------------------- receptive fields
@dataclass(frozen=True)
class LayerInfo:
    """One row of :func:`receptive_field`: a leaf layer as it ran in the forward pass.

    Attributes
    ----------
    name : str
        Qualified module name (``"features.0"``), or the class name for a bare layer.
    type : str
        Class name (``"Conv2d"``).
    output_shape : tuple of int
        Output shape without the batch axis.
    jump : int, Fraction, tuple or None
        Distance in input pixels between neighbouring output units (cumulative stride);
        a :class:`fractions.Fraction` after upsampling; ``None`` without a spatial grid.
    receptive_field : int, tuple or None
        Extent in input pixels of the input region one output unit depends on (the largest
        over the units); an int when equal on every axis, else one value per axis.
    params : int
        Parameters of this layer.
    """

    name: str
    type: str
    output_shape: tuple[int, ...]
    jump: int | Fraction | tuple[int | Fraction, ...] | None
    receptive_field: int | tuple[int, ...] | None
    params: int


_BIG = np.iinfo(np.int64).max // 4
_Deps = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
_GLOBAL_TYPES = (nn.Linear, nn.Bilinear, nn.Flatten, nn.LazyLinear)


@dataclass
class _Call:
    name: str
    module: nn.Module
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...]


def _first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or len(input_shape) == 0:
        raise ValueError(f"input_shape must be a sequence like (C, H, W) without the batch axis, got {input_shape!r}")
    return tuple(_check_int(v, "input_shape", 1) for v in input_shape)


def _trace(model: nn.Module, shape: tuple[int, ...]) -> list[_Call]:
    """Run a zero input of shape (1, *shape) and record every leaf module call in order."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    calls: list[_Call] = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
            inp, out = _first_tensor(args), _first_tensor(output)
            calls.append(
                _Call(
                    name or type(module).__name__,
                    module,
                    tuple(inp.shape) if inp is not None else None,
                    tuple(out.shape[1:]) if out is not None else (),
                )
            )

        return hook

    leaves = [(n, m) for n, m in model.named_modules() if next(m.children(), None) is None]
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    dtype = tensors[0].dtype if tensors else torch.get_default_dtype()
    device = tensors[0].device if tensors else torch.device("cpu")
    handles = [m.register_forward_hook(make_hook(n)) for n, m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *shape), dtype=dtype, device=device))
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"input_shape {shape} does not fit the model: {exc}") from exc
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return calls


def _per_axis(value: Any, nd: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * nd


def _window_deps(k: int, s: int, p: int, d: int) -> _Deps:
    """Output o reads inputs o*s - p + d*i, i = 0..k-1 (convolution, pooling, padding)."""
    offsets = d * np.arange(k, dtype=np.int64)[:, None]

    def deps(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = o[None, :] * s - p + offsets
        return q, np.ones(q.shape, dtype=bool)

    return deps


def _scatter_deps(k: int, s: int, p: int, d: int) -> _Deps:
    """Input q writes outputs q*s - p + d*i (transposed convolution, unpooling)."""
    offsets = d * np.arange(k, dtype=np.int64)[:, None]

    def deps(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = o[None, :] + p - offsets
        return t // s, t % s == 0

    return deps


def _resample_deps(ratio: Fraction, mode: str, align_corners: bool) -> _Deps:
    """Interpolation: output o samples input coordinate x(o); it reads the taps around x."""
    num, den = ratio.numerator, ratio.denominator
    taps = {"nearest": (0,), "nearest-exact": (0,), "linear": (0, 1), "bilinear": (0, 1), "trilinear": (0, 1)}
    offsets = taps.get(mode, (-1, 0, 1, 2))  # bicubic

    def deps(o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if mode == "nearest":
            numer, denom = o * num, den
        elif mode == "nearest-exact":
            numer, denom = (2 * o + 1) * num, 2 * den
        elif align_corners:
            numer, denom = o * num, den
        else:  # half-pixel centres: x = (o + 1/2) * ratio - 1/2
            numer, denom = (2 * o + 1) * num - den, 2 * den
        base, exact = numer // denom, numer % denom == 0
        q = np.stack([base + off for off in offsets])
        valid = np.stack([np.ones_like(exact) if off == 0 else ~exact for off in offsets])
        return q, valid

    return deps


def _geometry(module: nn.Module, nd: int, in_sp: tuple[int, ...], out_sp: tuple[int, ...]) -> Any:
    """Per-axis (deps, jump factor) of a spatial layer, "pass", or None when unknown."""
    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        k, s, p, d = (_per_axis(getattr(module, a), nd) for a in ("kernel_size", "stride", "padding", "dilation"))
        return [(_scatter_deps(k[i], s[i], p[i], d[i]), Fraction(1, s[i])) for i in range(nd)]
    if isinstance(module, nn.modules.conv._ConvNd):
        k, s, d = (_per_axis(getattr(module, a), nd) for a in ("kernel_size", "stride", "dilation"))
        if module.padding == "same":
            p = tuple(d[i] * (k[i] - 1) // 2 for i in range(nd))
        else:
            p = _per_axis(0 if module.padding == "valid" else module.padding, nd)
        return [(_window_deps(k[i], s[i], p[i], d[i]), Fraction(s[i])) for i in range(nd)]
    pools = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._LPPoolNd)
    if isinstance(module, pools):
        k = _per_axis(module.kernel_size, nd)
        s = _per_axis(module.stride if module.stride else module.kernel_size, nd)
        p = _per_axis(getattr(module, "padding", 0), nd)
        d = _per_axis(getattr(module, "dilation", 1), nd)
        return [(_window_deps(k[i], s[i], p[i], d[i]), Fraction(s[i])) for i in range(nd)]
    if isinstance(module, nn.modules.pooling._MaxUnpoolNd):
        k, s, p = (_per_axis(getattr(module, a), nd) for a in ("kernel_size", "stride", "padding"))
        return [(_scatter_deps(k[i], s[i], p[i], 1), Fraction(1, s[i])) for i in range(nd)]
    adaptive = (nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
    if isinstance(module, adaptive):
        if any(m % n for m, n in zip(in_sp, out_sp, strict=True)):
            return None  # unequal windows: treated as the whole input
        return [(_window_deps(m // n, m // n, 0, 1), Fraction(m // n)) for m, n in zip(in_sp, out_sp, strict=True)]
    if isinstance(module, nn.Upsample):
        if module.mode == "area":  # adaptive average pooling
            if any(m % n for m, n in zip(in_sp, out_sp, strict=True)):
                return None
            return [(_window_deps(m // n, m // n, 0, 1), Fraction(m // n)) for m, n in zip(in_sp, out_sp, strict=True)]
        geom = []
        for i in range(nd):
            corners = bool(module.align_corners) and module.mode not in ("nearest", "nearest-exact")
            if corners:
                ratio = Fraction(in_sp[i] - 1, out_sp[i] - 1) if out_sp[i] > 1 else Fraction(0)
            elif module.scale_factor is not None and not module.recompute_scale_factor:
                scale = float(_per_axis(module.scale_factor, nd)[i])
                ratio = 1 / Fraction(scale).limit_denominator(10**6)
            else:
                ratio = Fraction(in_sp[i], out_sp[i])
            deps = _resample_deps(ratio, module.mode, corners)
            geom.append((deps, ratio))
        return geom
    if type(module).__module__ == "torch.nn.modules.padding" and hasattr(module, "padding"):
        pad = module.padding  # (left, right) of the last axis first
        return [(_window_deps(1, 1, pad[2 * (nd - 1 - i)], 1), Fraction(1)) for i in range(nd)]
    if in_sp == out_sp:
        return "pass"
    return None


def _axis_fields(steps: list[_Deps | None], sizes: list[int], input_size: int) -> list[int]:
    """Exact receptive-field extent on one axis for every layer of a chain.

    Each output unit's dependency interval [lo, hi] in input pixels is propagated through the
    layers on an unbounded grid (borders and padding do not shrink it). Every layer is
    evaluated on the positions that later layers read, then the extent is the largest
    ``hi - lo + 1`` over the layer's real output units.
    """
    n = len(steps)
    ranges: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    a, b = 0, sizes[-1] - 1
    for i in range(n - 1, -1, -1):
        a, b = min(a, 0), max(b, sizes[i] - 1)
        ranges[i + 1] = (a, b)
        if steps[i] is not None:
            q, valid = steps[i](np.arange(a, b + 1, dtype=np.int64))
            if valid.any():
                a, b = int(q[valid].min()), int(q[valid].max())
    ranges[0] = (min(a, 0), max(b, input_size - 1))
    lo = hi = np.arange(ranges[0][0], ranges[0][1] + 1, dtype=np.int64)
    fields = []
    for i, step in enumerate(steps):
        (a, b), start = ranges[i + 1], ranges[i][0]
        if step is None:  # pointwise layer: same positions
            lo, hi = lo[a - start : b - start + 1], hi[a - start : b - start + 1]
        else:
            q, valid = step(np.arange(a, b + 1, dtype=np.int64))
            idx = np.where(valid, q - start, 0)
            lo = np.where(valid, lo[idx], _BIG).min(axis=0)
            hi = np.where(valid, hi[idx], -_BIG).max(axis=0)
        real_lo, real_hi = lo[-a : sizes[i] - a], hi[-a : sizes[i] - a]
        reached = real_lo < _BIG
        fields.append(int((real_hi - real_lo + 1)[reached].max()) if reached.any() else 0)
    return fields


def _collapse(values: Sequence[Any]) -> Any:
    values = [int(v) if isinstance(v, Fraction) and v.denominator == 1 else v for v in values]
    return values[0] if all(v == values[0] for v in values) else tuple(values)


def receptive_field(model: nn.Module, input_shape: Sequence[int]) -> list[LayerInfo]:
    """Output shape, jump, receptive field and parameters of every layer, in forward order.

    A zero input of shape ``(1, *input_shape)`` is run through the model (in eval mode, no
    gradients) with forward hooks on the leaf modules; one :class:`LayerInfo` is returned per
    leaf call, the last one being the network's output. For convolutions and pooling (1D/2D/3D)
    with kernel :math:`K`, stride :math:`S` and dilation :math:`D`, the jump :math:`j` (input
    pixels between neighbouring output units) and the receptive field :math:`r` follow

    .. math::

        j_{out} = j_{in} S, \\qquad r_{out} = r_{in} + D(K - 1)\\, j_{in},

    starting from :math:`j = r = 1` (Araujo, Norris & Sim, 2019, "Computing receptive fields of
    convolutional neural networks", Distill, DOI:10.23915/distill.00021). The field is computed
    exactly, as the largest extent of the input interval one output unit depends on, on an
    unbounded input (padding and image borders are ignored, as in the formula above).

    Conventions:

    - Transposed convolutions and max-unpooling divide the jump by the stride (a
      :class:`~fractions.Fraction`); their field is the exact worst case over output units
      (an output of ``ConvTranspose(K=4, S=2)`` reads 2 neighbouring inputs).
      ``nn.Upsample`` (nearest, linear, cubic), padding layers and adaptive pooling with
      equal windows are handled too.
    - Layers that keep the spatial shape (activations, normalisation, dropout, ...) pass the
      field through unchanged.
    - ``Linear``, ``Flatten`` and any layer that mixes the spatial axes (or changes them in a
      way not listed above) see the **whole input**: the field becomes the input size and the
      jump ``None``. So do all later layers.
    - The leaf modules are assumed to form a chain. Operations outside modules
      (``F.max_pool2d`` in ``forward``) are invisible: when a layer's input shape differs from
      the previous layer's output, a warning is issued and the field becomes the whole input.
      Branches (residual blocks) are not followed.
    - Inputs without spatial axes (``input_shape=(784,)``) give ``None`` for both.

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : sequence of int
        One input without the batch axis, ``(C, *spatial)``.

    Returns
    -------
    list of LayerInfo

    Raises
    ------
    ValueError
        Bad ``input_shape``, or one the model cannot run.

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2))
    >>> [(r.type, r.output_shape, r.jump, r.receptive_field) for r in receptive_field(net, (1, 32, 32))]
    [('Conv2d', (6, 28, 28), 1, 5), ('ReLU', (6, 28, 28), 1, 5), ('MaxPool2d', (6, 14, 14), 2, 6)]
    """
    shape = _check_input_shape(input_shape)
    calls = _trace(model, shape)
    spatial, nd = shape[1:], len(shape) - 1
    chain: list[Any] = []  # per call: list of per-axis (deps, factor), or "pass"
    previous = spatial
    for call in calls:
        if nd == 0 or (chain and chain[-1] is None):
            chain.append(None)  # no spatial grid (any more): the whole input
            continue
        in_sp = call.in_shape[2:] if call.in_shape is not None and len(call.in_shape) == nd + 2 else None
        out_sp = call.out_shape[1:] if len(call.out_shape) == nd + 1 else None
        geom = None
        if isinstance(call.module, _GLOBAL_TYPES):
            pass
        elif in_sp != previous:
            warnings.warn(
                f"receptive_field: the input of layer {call.name!r} {call.in_shape} is not the previous "
                f"layer's output (spatial size {previous}): an operation outside modules? Its receptive "
                "field and those after it are taken as the whole input.",
                stacklevel=2,
            )
        else:
            geom = _geometry(call.module, nd, in_sp, out_sp) if out_sp is not None else None
            if geom is None:
                warnings.warn(
                    f"receptive_field: {type(call.module).__name__} ({call.name!r}) changes the spatial "
                    "shape in a way not handled: its receptive field and those after it are taken as "
                    "the whole input.",
                    stacklevel=2,
                )
        if geom is not None:
            previous = out_sp
        chain.append(geom)

    n_spatial = next((i for i, g in enumerate(chain) if g is None), len(chain))
    fields: list[list[int]] = []
    jumps: list[list[Fraction]] = []
    if n_spatial:
        sizes = [c.out_shape[1:] for c in calls[:n_spatial]]
        for axis in range(nd):
            steps = [None if g == "pass" else g[axis][0] for g in chain[:n_spatial]]
            fields.append(_axis_fields(steps, [s[axis] for s in sizes], spatial[axis]))
            jump, column = Fraction(1), []
            for g in chain[:n_spatial]:
                jump = jump if g == "pass" else jump * g[axis][1]
                column.append(jump)
            jumps.append(column)
    rows = []
    for i, call in enumerate(calls):
        if i < n_spatial:
            jump = _collapse([jumps[a][i] for a in range(nd)])
            field = _collapse([fields[a][i] for a in range(nd)])
        else:
            jump, field = None, (_collapse(spatial) if nd else None)
        params = sum(p.numel() for p in call.module.parameters())
        rows.append(LayerInfo(call.name, type(call.module).__name__, call.out_shape, jump, field, params))
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, tuple):
        return " x ".join(_fmt(v) for v in value)
    return str(value)


def summary(model: nn.Module, input_shape: Sequence[int], *, file: IO[str] | None = None) -> str:
    """Print a table of the layers (see :func:`receptive_field`) and the parameter totals.

    Columns: layer name, type, output shape (without batch), jump, receptive field,
    parameters; then the total, trainable and non-trainable parameter counts
    (:func:`count_parameters`).

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : sequence of int
        One input without the batch axis, ``(C, *spatial)``.
    file : text stream, optional
        Where to print; standard output by default.

    Returns
    -------
    str
        The printed text (no colour codes).

    Examples
    --------
    >>> net = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2))
    >>> text = summary(net, (1, 32, 32), file=io.StringIO())
    >>> "Total params: 156" in text
    True
    """
    from rich.console import Console
    from rich.table import Table

    rows = receptive_field(model, input_shape)
    table = Table(title=f"input {_fmt(tuple(input_shape))}", title_justify="left")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape", justify="right")
    table.add_column("jump", justify="right")
    table.add_column("receptive field", justify="right")
    table.add_column("params", justify="right")
    for row in rows:
        table.add_row(row.name, row.type, _fmt(row.output_shape), _fmt(row.jump), _fmt(row.receptive_field), f"{row.params:,}")
    total = count_parameters(model)
    trainable = count_parameters(model, trainable_only=True)
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, color_system=None, force_terminal=False, highlight=False)
    console.print(table)
    console.print(f"Total params: {total:,}")
    console.print(f"Trainable params: {trainable:,}")
    console.print(f"Non-trainable params: {total - trainable:,}")
    text = "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"
    (sys.stdout if file is None else file).write(text)
    return text

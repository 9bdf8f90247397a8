"""``mlimaging calc ...`` (conv / pool / yolo arithmetic) and ``mlimaging summary MODEL``.

Thin over :mod:`mlimaging.calc`: each command parses its options, calls the library and prints
the result with the formula and the numbers filled in.
"""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from mlimaging.cli.app import app, command, console, echo_warnings

__all__ = ["calc_app"]

F = TypeVar("F", bound=Callable[..., Any])

calc_app = typer.Typer(
    help="Exam arithmetic: conv/pool output sizes and YOLO output shapes, with the formula.",
    no_args_is_help=True,
)
app.add_typer(calc_app, name="calc")


def _ints(text: str | None, option: str, *, example: str = "28 or 28,30") -> int | tuple[int, ...] | None:
    """'28' -> 28, '28,30' -> (28, 30) (lists are comma-separated in every command; the shape
    notation '28x30' is accepted too); anything else -> ValueError naming the option."""
    if text is None:
        return None
    parts = text.lower().replace(",", "x").replace("*", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{option} must be an integer or comma-separated integers (like {example}), got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _axes(values: dict[str, Any], out: Any) -> list[tuple[str, dict[str, int], int]]:
    """Split per-axis arguments for printing one formula line per axis."""
    n = len(out) if isinstance(out, tuple) else 1
    rows = []
    for axis in range(n):
        one = {k: (v[axis] if isinstance(v, tuple) else v) for k, v in values.items()}
        rows.append((f"axis {axis}: " if n > 1 else "", one, out[axis] if n > 1 else out))
    return rows


def _size_text(out: Any) -> str:
    return " x ".join(map(str, out)) if isinstance(out, tuple) else str(out)


@command(typer_app=calc_app, name="conv")
def conv_cmd(
    size: str = typer.Option(..., "--size", help="Input size M, e.g. 28 or 28,30."),
    kernel: str = typer.Option(..., "--kernel", help="Kernel size K, e.g. 5 or 3x5."),
    stride: str = typer.Option("1", "--stride", help="Stride S."),
    padding: str = typer.Option("0", "--padding", help="Zero padding P on each side."),
    dilation: str = typer.Option("1", "--dilation", help="Dilation D."),
    transposed: bool = typer.Option(False, "--transposed", help="Transposed convolution (ConvTranspose)."),
    output_padding: str = typer.Option("0", "--output-padding", help="Extra size on one side (transposed only)."),
) -> None:
    """Output size of a convolution (or transposed convolution), with the formula."""
    from mlimaging import calc

    values = {
        "M": _ints(size, "--size"),
        "K": _ints(kernel, "--kernel"),
        "S": _ints(stride, "--stride"),
        "P": _ints(padding, "--padding"),
        "D": _ints(dilation, "--dilation"),
    }
    args = {"padding": values["P"], "stride": values["S"], "dilation": values["D"]}
    op = _ints(output_padding, "--output-padding")
    if not transposed and any(v != 0 for v in (op if isinstance(op, tuple) else (op,))):  # was ignored silently
        raise ValueError("--output-padding applies to a transposed convolution only: add --transposed")
    if transposed:
        values["OP"] = _ints(output_padding, "--output-padding")
        out = calc.transposed_conv_output_size(values["M"], values["K"], **args, output_padding=values["OP"])
    else:
        out = calc.conv_output_size(values["M"], values["K"], **args)
    console.print(f"output size: {_size_text(out)}", highlight=False)
    for label, v, o in _axes(values, out):
        if transposed:
            console.print(
                f"{label}(M-1)*S - 2P + D(K-1) + OP + 1 = ({v['M']}-1)*{v['S']} - 2*{v['P']} + "
                f"{v['D']}*({v['K']}-1) + {v['OP']} + 1 = {o}",
                highlight=False,
            soft_wrap=True,
            )
        else:
            console.print(
                f"{label}floor((M + 2P - D(K-1) - 1)/S) + 1 = floor(({v['M']} + 2*{v['P']} - "
                f"{v['D']}*({v['K']}-1) - 1)/{v['S']}) + 1 = {o}",
                highlight=False,
            soft_wrap=True,
            )


@command(typer_app=calc_app, name="pool")
def pool_cmd(
    size: str = typer.Option(..., "--size", help="Input size M, e.g. 28 or 28,30."),
    kernel: str = typer.Option(..., "--kernel", help="Window size K."),
    stride: str | None = typer.Option(None, "--stride", help="Stride S (default: the kernel size)."),
    padding: str = typer.Option("0", "--padding", help="Padding P on each side (at most K/2)."),
    dilation: str = typer.Option("1", "--dilation", help="Dilation D (max pooling)."),
    ceil: bool = typer.Option(False, "--ceil", help="Round up (ceil_mode) instead of down."),
) -> None:
    """Output size of max/average pooling, with the formula."""
    from mlimaging import calc

    values = {
        "M": _ints(size, "--size"),
        "K": _ints(kernel, "--kernel"),
        "S": _ints(stride, "--stride"),
        "P": _ints(padding, "--padding"),
        "D": _ints(dilation, "--dilation"),
    }
    if values["S"] is None:
        values["S"] = values["K"]
    out = calc.pool_output_size(
        values["M"], values["K"], stride=values["S"], padding=values["P"], dilation=values["D"], ceil_mode=ceil
    )
    console.print(f"output size: {_size_text(out)}", highlight=False)
    rounding = "ceil" if ceil else "floor"
    for label, v, o in _axes(values, out):
        numer = v["M"] + 2 * v["P"] - v["D"] * (v["K"] - 1) - 1
        plain = -(-numer // v["S"]) + 1 if ceil else numer // v["S"] + 1
        note = "  (the last window would start in the padding: dropped)" if plain != o else ""
        console.print(
            f"{label}{rounding}((M + 2P - D(K-1) - 1)/S) + 1 = {rounding}(({v['M']} + 2*{v['P']} - "
            f"{v['D']}*({v['K']}-1) - 1)/{v['S']}) + 1 = {o}{note}",
            highlight=False,
            soft_wrap=True,
        )


@command(typer_app=calc_app, name="yolo")
def yolo_cmd(
    grid: int = typer.Option(..., "--grid", help="Cells per side S."),
    boxes: int = typer.Option(..., "--boxes", help="Boxes per cell B."),
    classes: int = typer.Option(..., "--classes", help="Object classes C."),
) -> None:
    """Output shape of a YOLO detector, S x S x (5B + C) (Redmon et al. 2016)."""
    from mlimaging import calc

    rows, cols, depth = calc.yolo_output_shape(grid, boxes, classes)
    console.print(f"{rows} x {cols} x {depth}", highlight=False, soft_wrap=True)
    console.print(f"S x S x (5B + C) = {rows} x {cols} x (5*{boxes} + {classes})", highlight=False, soft_wrap=True)
    console.print(f"values: {rows * cols * depth:,}", highlight=False, soft_wrap=True)


@command("summary")
def summary_cmd(
    model: str = typer.Argument(..., help="Model name (see the model registry)."),
    input: str | None = typer.Option(None, "--input", help="Input shape C,H,W, e.g. 1,32,32 (default: the model's)."),
) -> None:
    """Layer table of a model: output shapes, jump, receptive field, parameters."""
    from mlimaging import calc

    models = importlib.import_module("mlimaging.models")
    if input is None:
        shape = tuple(models.model_info(model).input_shape)
    else:
        parsed = _ints(input, "--input", example="1,32,32")
        shape = parsed if isinstance(parsed, tuple) else (parsed,)
        if any(v < 1 for v in shape):
            raise ValueError(f"--input must have positive sizes (like 1,32,32), got {input!r}")
    net = models.create_model(model)
    with echo_warnings("note"):  # e.g. pooling done in forward() instead of by a module
        text = calc.summary(net, shape, file=io.StringIO())
        console.print(text, markup=False, highlight=False, soft_wrap=True, end="")

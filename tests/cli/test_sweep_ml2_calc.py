"""calc conv: --output-padding without --transposed is one red line (found by a sweep of the CLI: it was
ignored without a word: the plain convolution's size was printed, the option dropped)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlimaging.cli import app

runner = CliRunner()


@pytest.mark.parametrize("op", ["1", "0,1"])
def test_calc_conv_refuses_output_padding_without_transposed(op):
    size = "28" if "," not in op else "28,28"
    result = runner.invoke(app, ["calc", "conv", "--size", size, "--kernel", "5", "--output-padding", op])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --output-padding") and "--transposed" in lines[0]


def test_calc_conv_takes_a_zero_output_padding_without_transposed():
    result = runner.invoke(app, ["calc", "conv", "--size", "28", "--kernel", "5", "--output-padding", "0"])
    assert result.exit_code == 0, result.output
    assert "output size: 24" in result.output

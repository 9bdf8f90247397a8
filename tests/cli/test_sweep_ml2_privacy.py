"""privacy epsilon: a --delta that is not below 1 / N warns (found by a sweep of the CLI: --dataset-size 3500
--delta 0.01 printed an epsilon without a word, though the help itself says delta must be below 1 / N)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mlimaging.cli import app

runner = CliRunner()
ARGS = ["privacy", "epsilon", "--batch-size", "256", "--dataset-size", "3500", "--epochs", "3", "--sigma", "1"]


@pytest.mark.parametrize("delta, warned", [("0.01", True), (str(1 / 3500), True), ("1e-5", False)])
def test_privacy_epsilon_warns_when_delta_is_not_below_one_over_n(delta, warned):
    result = runner.invoke(app, [*ARGS, "--delta", delta])
    assert result.exit_code == 0, result.output
    assert ("is not below 1 / N" in result.output) is warned, result.output
    assert "epsilon = " in result.output


def test_privacy_epsilon_without_n_does_not_warn():
    result = runner.invoke(app, ["privacy", "epsilon", "--sample-rate", "0.01", "--steps", "100", "--sigma", "1",
                                 "--delta", "0.01"])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output

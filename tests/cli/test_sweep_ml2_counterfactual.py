"""counterfactual: do(t) far outside the thicknesses the SCM was trained on warns that the answer is an
extrapolation (found by a sweep of the CLI: do(t=1000) printed 'counterfactual (model) 1000.00' for an image
whose measured thickness was 0.85, without a word)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import write_image

runner = CliRunner()
WARNING = "outside the thicknesses the model was trained on"


@pytest.fixture(scope="module")
def scm(tmp_path_factory, scm_run):
    from mlimaging.generative.morphomnist import causal_mnist

    tmp = tmp_path_factory.mktemp("scm")
    digit = (255 * causal_mnist(1, seed=3, split="test")["images"][0, 0].numpy()).astype(np.uint8)
    write_image(tmp / "digit.png", digit)
    return scm_run / "model.pt", tmp / "digit.png"


@pytest.mark.parametrize("t, warned", [("1000", True), ("0.05", True), ("3", False)])
def test_counterfactual_warns_on_a_thickness_far_outside_training(tmp_path, scm, t, warned):
    checkpoint, digit = scm
    result = runner.invoke(app, ["counterfactual", "--checkpoint", str(checkpoint), str(digit), "--do", f"t={t}",
                                 "--out", str(tmp_path / "cf.png")])
    assert result.exit_code == 0, result.output
    assert (WARNING in result.output) is warned, result.output
    assert (tmp_path / "cf.png").is_file()


def test_counterfactual_negative_thickness_is_one_red_line_without_the_warning(tmp_path, scm):
    checkpoint, digit = scm
    result = runner.invoke(app, ["counterfactual", "--checkpoint", str(checkpoint), str(digit), "--do", "t=-1",
                                 "--out", str(tmp_path / "cf.png")])
    assert result.exit_code == 2, result.output
    assert [ln for ln in result.output.splitlines() if ln.strip()] == ['error: do["t"] (thickness) must be > 0, got '
                                                                        "min -1"]


def test_counterfactual_warns_on_an_observed_thickness_far_outside_training(tmp_path, scm):
    """--t 1000 (the observed thickness, abducted from) was taken without a word."""
    checkpoint, digit = scm
    result = runner.invoke(app, ["counterfactual", "--checkpoint", str(checkpoint), str(digit), "--do", "t=3",
                                 "--t", "1000", "--out", str(tmp_path / "cf.png")])
    assert result.exit_code == 0, result.output
    assert "observed thickness 1000.00 (--t)" in result.output and WARNING in result.output


def test_counterfactual_names_an_observed_intensity_outside_the_support(tmp_path, scm):
    """The error said 'parents["i"] must lie in ...', a name the command line does not have."""
    checkpoint, digit = scm
    result = runner.invoke(app, ["counterfactual", "--checkpoint", str(checkpoint), str(digit), "--do", "t=3",
                                 "--i", "1000", "--out", str(tmp_path / "cf.png")])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --i 1000 lies outside"), lines
    assert not (tmp_path / "cf.png").exists()

"""``mlimaging privacy epsilon``: the accountants from the command line (the accountants are tested in
tests/privacy/test_accounting.py; here the wiring, the oracle on the printed value and bad input)."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import mlimaging.cli.privacy  # noqa: F401  (registers `privacy` on the app)
from mlimaging.cli import app
from mlimaging.privacy.accounting import epsilon

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["privacy", "epsilon", *map(str, args)], terminal_width=200)


def _value(result, name):
    assert result.exit_code == 0, result.output
    return float(re.search(rf"^{name} = (\S+)", result.output, re.M).group(1))


def _one_red_line(result):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


def test_epsilon_equals_opacus_rdp_accountant():
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(1.1, 0.01, 10_000)]
    eps = _value(_run("--sample-rate", 0.01, "--sigma", 1.1, "--steps", 10_000, "--delta", 1e-5), "epsilon")
    assert eps == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-5)  # printed to 6 significant digits


def test_prv_accountant_equals_opacus_and_is_tighter():
    from opacus.accountants import PRVAccountant

    acc = PRVAccountant()
    acc.history = [(1.1, 0.01, 2000)]
    prv = _value(_run("--sample-rate", 0.01, "--sigma", 1.1, "--steps", 2000, "--accountant", "prv"), "epsilon")
    rdp = _value(_run("--sample-rate", 0.01, "--sigma", 1.1, "--steps", 2000), "epsilon")
    assert prv == pytest.approx(acc.get_epsilon(delta=1e-5), rel=1e-3)
    assert prv < rdp


def test_batch_size_and_epochs_are_sample_rate_and_steps():
    a = _value(_run("--batch-size", 256, "--dataset-size", 60_000, "--epochs", 3, "--sigma", 1.0), "epsilon")
    steps = 3 * math.ceil(60_000 / 256)
    b = _value(_run("--sample-rate", 256 / 60_000, "--steps", steps, "--sigma", 1.0), "epsilon")
    assert a == b == pytest.approx(epsilon(noise_multiplier=1.0, sample_rate=256 / 60_000, steps=steps, delta=1e-5),
                                   rel=1e-5)


def test_sigma_for_a_target_epsilon_is_the_smallest_within_the_budget():
    result = _run("--sample-rate", 0.004, "--steps", 2500, "--epsilon", 3, "--delta", 1e-5)
    sigma = _value(result, "sigma")
    spent = epsilon(noise_multiplier=sigma, sample_rate=0.004, steps=2500, delta=1e-5)
    assert spent <= 3.0
    assert epsilon(noise_multiplier=sigma * 0.99, sample_rate=0.004, steps=2500, delta=1e-5) > spent
    assert "spends epsilon" in result.output and f"{spent:.6g}" in result.output


def test_more_noise_spends_less_and_zero_steps_spend_nothing():
    eps = [_value(_run("--sample-rate", 0.02, "--steps", 500, "--sigma", s), "epsilon") for s in (0.8, 1.2, 2.0)]
    assert eps[0] > eps[1] > eps[2] > 0
    assert _value(_run("--sample-rate", 0.02, "--steps", 0, "--sigma", 1.0), "epsilon") == 0


@pytest.mark.parametrize("args, needle", [
    (["--sample-rate", 2, "--sigma", 1, "--steps", 10], "--sample-rate"),
    (["--sample-rate", 0, "--sigma", 1, "--steps", 10], "--sample-rate"),
    (["--sample-rate", 0.1, "--steps", 10], "exactly one of --sigma"),
    (["--sample-rate", 0.1, "--sigma", 1, "--epsilon", 3, "--steps", 10], "exactly one of --sigma"),
    (["--sample-rate", 0.1, "--sigma", 1], "exactly one of --steps"),
    (["--sample-rate", 0.1, "--sigma", 1, "--steps", 10, "--epochs", 2], "exactly one of --steps"),
    (["--sample-rate", 0.1, "--sigma", 1, "--steps", 10, "--delta", 1], "--delta"),
    (["--sample-rate", 0.1, "--sigma", -1, "--steps", 10], "--sigma"),
    (["--sample-rate", 0.1, "--epsilon", 0, "--steps", 10], "--epsilon"),
    (["--sample-rate", 0.1, "--epsilon", 3, "--steps", 0], "at least one step"),
    (["--sample-rate", 0.1, "--sigma", 1, "--steps", 10, "--accountant", "gdp"], "--accountant"),
    (["--batch-size", 10, "--sigma", 1, "--steps", 10], "--dataset-size"),
    (["--batch-size", 100, "--dataset-size", 10, "--sigma", 1, "--steps", 10], "at most --dataset-size"),
    (["--sample-rate", 0.1, "--batch-size", 10, "--dataset-size", 100, "--sigma", 1, "--steps", 10], "not both"),
])
def test_bad_input_is_one_red_line(args, needle):
    result = _run(*args)
    _one_red_line(result)
    assert needle in result.output


@settings(max_examples=25, deadline=None)
@given(q=st.one_of(st.floats(max_value=0.0, allow_nan=False), st.floats(min_value=1.0, exclude_min=True),
                   st.just(float("nan"))),
       sigma=st.floats(min_value=0.1, max_value=10))
def test_any_sample_rate_outside_the_unit_interval_is_refused(q, sigma):
    result = _run("--sample-rate", q, "--sigma", sigma, "--steps", 10)
    _one_red_line(result)
    assert "--sample-rate" in result.output

"""CLI: ``mlimaging morpho IMAGE... [--json OUT]`` (Morpho-MNIST measurements)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from typer.testing import CliRunner

import mlimaging.cli.morpho  # noqa: F401  (registers the command until cli/__init__ imports it)
from mlimaging.cli.app import app
from mlimaging.data import load_dataset, write_image
from mlimaging.generative.morphomnist import measure

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], terminal_width=250)


def assert_user_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "error:" in result.output
    for word in words:
        assert word in result.output


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("mnist5k", split="test")
    return ds.data[:3, 0].numpy()  # uint8


def test_png_and_npy_stack_give_the_library_measurements(digits, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short relative names: the table shows them whole
    png, npy, out = Path("a.png"), Path("s.npy"), Path("m.json")
    write_image(png, digits[0])
    np.save(npy, digits[1:].astype(np.float32) / 255.0)
    result = invoke("morpho", png, npy, "--json", out)
    assert result.exit_code == 0, result.output
    assert "thickness" in result.output and f"{npy}[1]" in result.output
    rows = json.loads(out.read_text())["images"]
    assert [r["image"] for r in rows] == [str(png), f"{npy}[0]", f"{npy}[1]"]
    expected = measure(np.stack([digits[0] / 255.0, *(digits[1:] / 255.0)]))
    for key in ("area", "length", "thickness", "slant", "width", "height", "intensity"):
        assert_allclose([r[key] for r in rows], expected[key], rtol=1e-5, atol=1e-4)
    shown = f"{expected['thickness'][0]:.2f}"
    assert shown in result.output


def test_existing_json_needs_force(digits, tmp_path):
    png, out = tmp_path / "d.png", tmp_path / "m.json"
    write_image(png, digits[0])
    out.write_text("{}")
    assert_user_error(invoke("morpho", png, "--json", out), "already exists", "--force")
    assert out.read_text() == "{}"
    assert invoke("morpho", png, "--json", out, "--force").exit_code == 0
    assert "images" in json.loads(out.read_text())


def test_blank_image_shows_dashes(tmp_path):
    npy = tmp_path / "blank.npy"
    np.save(npy, np.zeros((28, 28), np.float32))
    result = invoke("morpho", npy)
    assert result.exit_code == 0, result.output
    assert "-" in result.output


@pytest.mark.parametrize(("content", "words"), [
    (None, ("missing.png",)),
    (np.full((28, 28), np.nan, np.float32), ("NaN",)),
    (-np.ones((28, 28), np.float32), ("non-negative",)),
    (np.full((28, 28), 1000.0, np.float32), ("[0, 255]",)),
    (np.zeros((2, 3, 28, 28), np.float32), ("2D or 3D",)),
])
def test_bad_input_is_one_red_line(tmp_path, content, words):
    path = tmp_path / ("missing.png" if content is None else "bad.npy")
    if content is not None:
        np.save(path, content)
    assert_user_error(invoke("morpho", path), *words)


def test_bad_options_are_one_red_line(digits, tmp_path):
    png = tmp_path / "d.png"
    write_image(png, digits[0])
    assert_user_error(invoke("morpho", png, "--scale", "0"), "--scale")
    assert_user_error(invoke("morpho", png, "--max-value", "-1"), "--max-value")
    assert_user_error(invoke("morpho", png, "--max-value", "1"), "[0, 1]")


def test_dark_digit_on_light_background_warns_and_invert_measures_it(digits, tmp_path):
    """A dark stroke on white (a scanned digit) is not what Morpho-MNIST measures: a yellow
    warning names the file and --invert; with --invert the measurements are the original's."""
    write_image(tmp_path / "dark.npy", 255 - digits[0])
    warned = invoke("morpho", tmp_path / "dark.npy", "--json", tmp_path / "w.json")
    assert warned.exit_code == 0, warned.output
    assert "dark.npy" in warned.output and "light background" in warned.output and "--invert" in warned.output
    fixed = invoke("morpho", tmp_path / "dark.npy", "--invert", "--json", tmp_path / "f.json")
    assert fixed.exit_code == 0 and "light background" not in fixed.output
    got = json.loads((tmp_path / "f.json").read_text())["images"][0]
    want = measure(digits[0])
    assert_allclose(got["thickness"], want["thickness"][0] if np.ndim(want["thickness"]) else want["thickness"],
                    rtol=1e-6)
    assert json.loads((tmp_path / "f.json").read_text())["inverted"] is True

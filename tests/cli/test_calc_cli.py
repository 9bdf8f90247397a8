"""CLI: ``mlimaging calc conv|pool|yolo`` and ``mlimaging summary MODEL``."""

from __future__ import annotations

import sys
import types
import warnings
from dataclasses import dataclass

import pytest
from torch import nn
from typer.testing import CliRunner

import mlimaging.cli.calc  # noqa: F401  (registers the commands until cli/__init__ imports it)
from mlimaging.calc import count_parameters, receptive_field
from mlimaging.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args), terminal_width=200)


def assert_user_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "error:" in result.output
    for word in words:
        assert word in result.output


def test_calc_conv_prints_size_and_formula():
    result = invoke("calc", "conv", "--size", "28", "--kernel", "5", "--stride", "1", "--padding", "0")
    assert result.exit_code == 0, result.output
    assert "output size: 24" in result.output
    assert "floor((28 + 2*0 - 1*(5-1) - 1)/1) + 1 = 24" in result.output
    result = invoke("calc", "conv", "--size", "32", "--kernel", "3", "--stride", "2", "--padding", "1", "--dilation", "2")
    assert "output size: 15" in result.output  # floor((32 + 2 - 4 - 1)/2) + 1


def test_calc_conv_transposed_and_anisotropic():
    result = invoke("calc", "conv", "--size", "16", "--kernel", "4", "--stride", "2", "--padding", "1", "--transposed")
    assert result.exit_code == 0, result.output
    assert "output size: 32" in result.output and "(16-1)*2 - 2*1 + 1*(4-1) + 0 + 1 = 32" in result.output
    result = invoke("calc", "conv", "--size", "28,30", "--kernel", "3,5")  # lists are comma-separated everywhere
    assert result.exit_code == 0, result.output
    assert invoke("calc", "conv", "--size", "28x30", "--kernel", "3x5").output == result.output  # shape notation too
    assert "output size: 26 x 26" in result.output
    lines = result.output.splitlines()
    assert lines[1].startswith("axis 0: ") and lines[1].endswith("floor((28 + 2*0 - 1*(3-1) - 1)/1) + 1 = 26")
    assert lines[2].startswith("axis 1: ") and lines[2].endswith("floor((30 + 2*0 - 1*(5-1) - 1)/1) + 1 = 26")


def test_calc_pool():
    result = invoke("calc", "pool", "--size", "28", "--kernel", "2")
    assert result.exit_code == 0 and "output size: 14" in result.output
    assert "floor((28 + 2*0 - 1*(2-1) - 1)/2) + 1 = 14" in result.output
    result = invoke("calc", "pool", "--size", "7", "--kernel", "2", "--ceil")
    assert "output size: 4" in result.output and "ceil((7 + 2*0" in result.output
    result = invoke("calc", "pool", "--size", "5", "--kernel", "2", "--padding", "1", "--ceil")
    assert "output size: 3" in result.output and "dropped" in result.output  # torch's ceil-mode rule
    result = invoke("calc", "pool", "--size", "55", "--kernel", "3", "--stride", "2")
    assert "output size: 27" in result.output


def test_calc_yolo_exam_question():
    result = invoke("calc", "yolo", "--grid", "11", "--boxes", "4", "--classes", "10")
    assert result.exit_code == 0, result.output
    assert "11 x 11 x 30" in result.output and "S x S x (5B + C) = 11 x 11 x (5*4 + 10)" in result.output
    result = invoke("calc", "yolo", "--grid", "11", "--boxes", "4", "--classes", "1000")
    assert "11 x 11 x 1020" in result.output and "123,420" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["calc", "conv", "--size", "abc", "--kernel", "3"], ["--size"]),
        (["calc", "conv", "--size", "4", "--kernel", "7"], ["kernel"]),
        (["calc", "conv", "--size", "8", "--kernel", "3", "--stride", "0"], ["stride"]),
        (["calc", "conv", "--size", "8", "--kernel", "3", "--transposed", "--output-padding", "1"], ["output_padding"]),
        (["calc", "conv", "--size", "8x8", "--kernel", "3x3x3"], ["size", "kernel"]),
        (["calc", "pool", "--size", "8", "--kernel", "2", "--padding", "2"], ["padding"]),
        (["calc", "yolo", "--grid", "0", "--boxes", "4", "--classes", "10"], ["grid"]),
    ],
)
def test_calc_bad_input_is_one_red_line_and_exit_2(args, words):
    assert_user_error(invoke(*args), *words)


def test_calc_debug_shows_the_exception():
    result = invoke("--debug", "calc", "conv", "--size", "4", "--kernel", "7")
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)


def test_calc_is_listed_in_help():
    result = invoke("--help")
    assert "calc" in result.output and "summary" in result.output
    result = invoke("calc", "--help")
    assert result.exit_code == 0 and all(c in result.output for c in ("conv", "pool", "yolo"))


# --------------------------------------------------------------------------- summary
@dataclass
class _Info:
    name: str
    input_shape: tuple[int, ...]
    description: str | None = None


def _fake_models() -> types.ModuleType:
    def build() -> nn.Module:
        return nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                             nn.ReLU(), nn.Linear(84, 10))

    def create_model(name: str, **kwargs) -> nn.Module:
        if name != "fakenet":
            raise ValueError(f"unknown model {name!r}; valid names: fakenet")
        return build()

    fake = types.ModuleType("mlimaging.models")
    fake.create_model = create_model
    fake.model_info = lambda name: _Info(name, (1, 32, 32))
    return fake


@pytest.fixture
def fake_models(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlimaging.models", _fake_models())


def test_summary_with_a_fake_registry(fake_models):
    result = invoke("summary", "fakenet", "--input", "1x32x32")
    assert result.exit_code == 0, result.output
    assert "Total params: 61,706" in result.output and "Trainable params: 61,706" in result.output
    pool = next(ln for ln in result.output.splitlines() if "16 x 5 x 5" in ln)
    assert [c.strip() for c in pool.split("│")][2:6] == ["MaxPool2d", "16 x 5 x 5", "4", "16"]
    default = invoke("summary", "fakenet")  # the model's own input shape
    assert default.exit_code == 0 and default.output == result.output
    assert invoke("summary", "fakenet", "--input", "1,32,32").output == result.output


@pytest.mark.parametrize(("args", "words"), [
    (["summary", "fakenet", "--input", "1xabc"], ["--input"]),
    (["summary", "fakenet", "--input", "1x0x32"], ["--input"]),
    (["summary", "fakenet", "--input", "1x28x28"], ["input_shape"]),  # 28x28 does not reach fc1
    (["summary", "nonet"], ["nonet", "fakenet"]),
])  # fmt: skip
def test_summary_bad_input_is_one_red_line(fake_models, args, words):
    assert_user_error(invoke(*args), *words)


def test_summary_with_the_real_lenet():
    models = pytest.importorskip("mlimaging.models")
    info = models.model_info("lenet")
    net = models.create_model("lenet")
    shape = "x".join(map(str, info.input_shape))
    result = invoke("summary", "lenet", "--input", shape)
    assert result.exit_code == 0, result.output
    assert f"Total params: {count_parameters(net):,}" in result.output
    assert invoke("summary", "lenet").output == result.output  # default: the model's input shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pooling inside forward() is reported as a note
        rows = receptive_field(net, info.input_shape)
    assert rows[-1].output_shape == (10,)
    conv1 = next(ln for ln in result.output.splitlines() if "conv1" in ln)
    assert [c.strip() for c in conv1.split("│")][2:6] == ["Conv2d", "6 x 28 x 28", "1", "5"]

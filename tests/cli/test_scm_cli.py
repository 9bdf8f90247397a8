from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import mlimaging.cli.scm  # noqa: F401  (registers `train scm` and `counterfactual`)
from mlimaging.cli.app import app
from mlimaging.cli.scm import load_scm, parse_do
from mlimaging.data import write_image
from mlimaging.generative.morphomnist import causal_mnist

runner = CliRunner()


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


def _train(out, *extra):
    return runner.invoke(app, ["train", "scm", "--n-train", "32", "--n-val", "8", "--latent-dim", "4", "--seed", "1",
                               "--out", str(out), *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scm") / "run"
    result = _train(out, "--epochs", "1")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def digit(tmp_path_factory):
    d = causal_mnist(1, seed=3, split="test")
    path = tmp_path_factory.mktemp("img") / "digit.png"
    write_image(path, np.round(d["images"][0, 0].numpy() * 255).astype(np.uint8))
    return path, d


def test_train_scm_writes_the_run_folder_and_a_weights_only_model(run):
    for name in ("model.pt", "checkpoints/last.pt", "report.html", "config.json", "figures/counterfactuals.png"):
        assert (run / name).is_file(), name
    ckpt = torch.load(run / "model.pt", weights_only=True)
    assert ckpt["scm"]["config"]["latent_dim"] == 4 and ckpt["scm"]["n_train"] == 32
    model, _ = load_scm(run / "model.pt")
    assert not model.training
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 1


def test_train_scm_resume_continues_and_an_existing_out_needs_force(run):
    result = _train(run, "--epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    assert "resumed from epoch 1" in result.output
    _one_red_line(_train(run, "--epochs", "1"))
    _one_red_line(_train(run, "--epochs", "2", "--resume", "--lr", "0.5"))


def test_counterfactual_writes_the_image_and_the_figure(run, digit, tmp_path):
    path, d = digit
    out = tmp_path / "cf.png"
    result = runner.invoke(app, ["counterfactual", str(path), "--checkpoint", str(run / "model.pt"), "--do", "t=3.0",
                                 "--do", "i=200", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and (tmp_path / "cf_figure.png").is_file()
    from mlimaging.data import read_image

    arr, _ = read_image(out)
    assert arr.shape == (28, 28)
    assert "3.00" in result.output and "200.0" in result.output
    # given parents are used as they are; an existing output needs --force
    again = runner.invoke(app, ["counterfactual", str(path), "--checkpoint", str(run / "model.pt"), "--do", "t=2",
                                "--t", f"{float(d['thickness'][0]):.3f}", "--i", f"{float(d['intensity'][0]):.3f}",
                                "--out", str(out)])
    _one_red_line(again)
    forced = runner.invoke(app, ["counterfactual", str(path), "--checkpoint", str(run / "model.pt"), "--do", "t=2",
                                 "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output


@pytest.mark.parametrize("args, match", [
    (["--do", "s=3"], "--do must be PARENT=VALUE"),
    (["--do", "t=abc"], "not a number"),
    (["--do", "t=-1"], "> 0"),
    ([], "--do is required"),
    (["--do", "t=3", "--t", "nan"], "--t must be a finite positive number"),
])
def test_counterfactual_bad_input_is_one_red_line(run, digit, tmp_path, args, match):
    path, _ = digit
    result = runner.invoke(app, ["counterfactual", str(path), "--checkpoint", str(run / "model.pt"),
                                 "--out", str(tmp_path / "o.png"), *args])
    _one_red_line(result)
    assert match in result.output


def test_counterfactual_bad_files_are_one_red_line(run, tmp_path):
    small = tmp_path / "small.png"
    write_image(small, np.zeros((10, 10), np.uint8))
    _one_red_line(runner.invoke(app, ["counterfactual", str(small), "--checkpoint", str(run / "model.pt"),
                                      "--do", "t=3", "--out", str(tmp_path / "a.png")]))
    _one_red_line(runner.invoke(app, ["counterfactual", str(tmp_path / "missing.png"), "--checkpoint",
                                      str(run / "model.pt"), "--do", "t=3", "--out", str(tmp_path / "b.png")]))
    bogus = tmp_path / "bogus.pt"
    torch.save({"x": 1}, bogus)
    result = runner.invoke(app, ["counterfactual", str(small), "--checkpoint", str(bogus), "--do", "t=3", "--out",
                                 str(tmp_path / "c.png")])
    _one_red_line(result)
    assert "train scm" in result.output


def test_train_scm_bad_options_are_one_red_line(tmp_path):
    _one_red_line(_train(tmp_path / "r1", "--epochs", "0"))
    _one_red_line(_train(tmp_path / "r2", "--likelihood", "poisson"))


def test_parse_do():
    assert parse_do(["t=3", "intensity=200"]) == {"t": 3.0, "i": 200.0}
    with pytest.raises(ValueError, match="twice"):
        parse_do(["t=3", "t=4"])

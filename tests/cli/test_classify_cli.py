from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import load_dataset, write_image
from mlimaging.data.preprocessing import prepare_image
from mlimaging.models import create_model

runner = CliRunner()
TRAIN = ["train", "classifier", "--dataset", "digits", "--model", "lenet", "--batch-size", "64", "--seed", "1"]


def _train(out, *extra):
    return runner.invoke(app, [*TRAIN, "--out", str(out), *extra])


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = _train(out, "--epochs", "1")
    assert result.exit_code == 0, result.output
    return out


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def _load_model(out):
    ckpt = torch.load(out / "model.pt", weights_only=True)
    meta = ckpt["classifier"]
    model = create_model(meta["model"], **{**meta["model_kwargs"]})
    model.load_state_dict(ckpt["model"])
    return model.eval(), meta


def test_train_writes_checkpoints_model_and_report(trained):
    for name in ("model.pt", "checkpoints/last.pt", "checkpoints/best.pt", "report.html", "config.json",
                 "figures/learning-curves.png", "figures/confusion-matrix.png"):
        assert (trained / name).is_file(), name
    m = _metrics(trained)
    assert len(m["history"]) == 1 and m["best_epoch"] == 1
    assert 0.0 <= m["test_accuracy"] <= 1.0 and np.asarray(m["confusion_matrix"]).sum() == 359
    ckpt = torch.load(trained / "model.pt", weights_only=True)
    meta = ckpt["classifier"]
    assert meta["model"] == "lenet" and meta["classes"] == [str(k) for k in range(10)]
    assert meta["preprocess"]["channels"] == 1 and meta["preprocess"]["size"] == [8, 8]
    assert meta["preprocess"]["background"] == "dark"  # digits: light strokes on black
    assert json.loads((trained / "config.json").read_text())["seed"] == 1


def test_refuses_to_overwrite_without_force(trained):
    before = (trained / "model.pt").read_bytes()
    result = _train(trained, "--epochs", "1")
    _one_red_line(result)
    assert "already exists" in result.output and "--force" in result.output
    assert (trained / "model.pt").read_bytes() == before


def test_force_starts_again_but_never_deletes_foreign_files(trained, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(trained, out)
    (out / "checkpoints" / "last.pt").unlink()
    result = _train(out, "--epochs", "1", "--force")
    assert result.exit_code == 0, result.output
    assert len(_metrics(out)["history"]) == 1 and (out / "checkpoints" / "last.pt").is_file()
    (out / "notes.txt").write_text("mine")
    result = _train(out, "--epochs", "1", "--force")
    _one_red_line(result)
    assert "notes.txt" in result.output and (out / "notes.txt").exists()


def test_force_checks_data_and_model_before_deleting(trained, tmp_path):
    out = tmp_path / "keep"
    shutil.copytree(trained, out)
    result = _train(out, "--epochs", "1", "--force", "--model", "nope")
    _one_red_line(result)
    assert (out / "model.pt").is_file() and (out / "report.html").is_file()


def test_an_empty_out_folder_is_used(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    result = runner.invoke(app, ["train", "classifier", "--dataset", "digits", "--model", "logistic_regression",
                                 "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = torch.load(out / "model.pt", weights_only=True)["classifier"]
    assert meta["model_kwargs"] == {"num_classes": 10, "input_shape": [1, 8, 8]}


def test_resume_continues_and_matches_an_uninterrupted_run(trained, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(trained, resumed)
    result = runner.invoke(app, ["train", "classifier", "--out", str(resumed), "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed from epoch 1" in result.output
    history = _metrics(resumed)["history"]
    assert [e["epoch"] for e in history] == [1, 2]
    assert history[0] == _metrics(trained)["history"][0]  # epoch 1 was not trained again
    straight = tmp_path / "straight"
    assert _train(straight, "--epochs", "2").exit_code == 0
    a = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings(trained, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(trained, out)
    result = runner.invoke(app, ["train", "classifier", "--out", str(out), "--epochs", "2", "--resume",
                                 "--model", "alexnet"])
    _one_red_line(result)
    assert "--model alexnet" in result.output


def test_predict_prints_class_and_probabilities(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # short relative paths keep the table's rows on one line
    ds = load_dataset("digits", split="test", seed=1)
    paths, expected = [], []
    model, meta = _load_model(trained)
    for i in range(2):
        image, _ = ds[i]
        array = np.round(image[0].numpy() * 255).astype(np.uint8)
        path = Path(f"digit{i}.png")
        write_image(path, array)
        x = prepare_image(array, channels=1, size=(8, 8))
        assert torch.allclose(x, image, atol=1 / 255)  # same preprocessing as training, up to 8-bit rounding
        with torch.no_grad():
            p = torch.softmax(model(x[None]), dim=1)[0]
        paths.append(path)
        expected.append((meta["classes"][int(p.argmax())], f"{float(p.max()):.4f}"))
    result = runner.invoke(app, ["predict", "--checkpoint", str(trained / "model.pt"), *map(str, paths)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    for path, (cls, prob) in zip(paths, expected, strict=True):
        line = next(ln for ln in result.output.splitlines() if path.name in ln)
        cells = [c.strip() for c in line.split("│") if c.strip()]
        assert cells[1] == cls and cells[2] == prob


def test_predict_accepts_fit_checkpoints_of_the_run(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = Path("x.npy")
    np.save(path, np.zeros((8, 8), np.float32))
    result = runner.invoke(app, ["predict", "--checkpoint", str(trained / "checkpoints" / "last.pt"), str(path)])
    assert result.exit_code == 0, result.output
    assert "x.npy" in result.output


@pytest.mark.parametrize("args, needle", [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "1", "--lr", "-1"], "--lr"),
    (["--epochs", "1", "--model", "nope"], "unknown model 'nope'"),
    (["--epochs", "1", "--model", "unet"], "not an image classifier"),
    (["--epochs", "1", "--resume", "--force"], "--resume and --force"),
    (["--epochs", "1", "--resume"], "does not exist"),
])
def test_train_bad_input_is_one_red_line(tmp_path, args, needle):
    result = _train(tmp_path / "bad", *args)
    _one_red_line(result)
    assert needle in result.output


def test_train_unknown_dataset(tmp_path):
    result = runner.invoke(app, ["train", "classifier", "--dataset", "nope", "--epochs", "1", "--out", str(tmp_path / "o")])
    _one_red_line(result)
    assert "unknown dataset 'nope'" in result.output


def test_predict_bad_input_is_one_red_line(trained, tmp_path):
    ckpt = str(trained / "model.pt")
    _one_red_line(runner.invoke(app, ["predict", "--checkpoint", ckpt, str(tmp_path / "missing.png")]))
    (tmp_path / "junk.png").write_text("not an image")
    _one_red_line(runner.invoke(app, ["predict", "--checkpoint", ckpt, str(tmp_path / "junk.png")]))
    np.save(tmp_path / "cube.npy", np.zeros((4, 8, 8, 8)))
    result = runner.invoke(app, ["predict", "--checkpoint", ckpt, str(tmp_path / "cube.npy")])
    _one_red_line(result)
    assert "cube.npy" in result.output
    result = runner.invoke(app, ["predict", "--checkpoint", str(trained / "config.json"), str(tmp_path / "cube.npy")])
    _one_red_line(result)
    assert "--checkpoint" in result.output
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    result = runner.invoke(app, ["predict", "--checkpoint", str(tmp_path / "other.pt"), str(tmp_path / "cube.npy")])
    _one_red_line(result)
    assert "rebuild the model" in result.output


def test_predict_inverts_a_dark_digit_on_a_light_background_with_a_warning(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image, _ = load_dataset("digits", split="test", seed=1)[0]
    array = np.round(image[0].numpy() * 255).astype(np.uint8)
    write_image(Path("light.png"), 255 - array)  # the digit drawn dark on white paper
    write_image(Path("dark.png"), array)
    ckpt = str(trained / "model.pt")

    def row(result, name):
        assert result.exit_code == 0, result.output
        line = next(ln for ln in result.output.splitlines() if name in ln and "│" in ln)
        return [c.strip() for c in line.split("│") if c.strip()][1:3]

    auto = runner.invoke(app, ["predict", "--checkpoint", ckpt, "light.png"], terminal_width=200)
    assert "warning:" in auto.output and "background is light" in auto.output and "--no-invert" in auto.output
    dark = runner.invoke(app, ["predict", "--checkpoint", ckpt, "dark.png"], terminal_width=200)
    assert "warning" not in dark.output
    assert row(auto, "light.png") == row(dark, "dark.png")  # 1 - (255 - x)/255 is x/255 again
    kept = runner.invoke(app, ["predict", "--checkpoint", ckpt, "--no-invert", "light.png"], terminal_width=200)
    assert "warning" not in kept.output
    forced = runner.invoke(app, ["predict", "--checkpoint", ckpt, "--invert", "light.png"], terminal_width=200)
    assert "warning" not in forced.output and row(forced, "light.png") == row(dark, "dark.png")


def test_a_model_that_refuses_the_native_size_falls_back_to_its_default_input():
    """VGG refuses 8 x 8 digits when it is built (input_size >= 32): train classifier then uses
    the model's default input size instead of failing (it resizes the images to it)."""
    from mlimaging.cli.classify import _fit_model

    model, kwargs, hw = _fit_model("vgg11_bn", 10, 1, (8, 8), None, 0)
    assert hw == (32, 32) and kwargs["input_size"] == 32
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_chance_warning_worked_examples():
    from mlimaging.cli.classify import _chance_warning

    labels = torch.tensor([0] * 60 + [1] * 20 + [2] * 20)  # majority 0.6, margin 2 * sqrt(0.24 / 100) = 0.098
    assert "chance level" in _chance_warning(0.6, labels, 3, {"dp": False})
    assert "chance level" in _chance_warning(0.69, labels, 3, {"dp": False})
    assert _chance_warning(0.70, labels, 3, {"dp": False}) == ""
    assert "--epsilon" in _chance_warning(0.1, labels, 3, {"dp": True})
    assert "--epochs" in _chance_warning(0.1, labels, 3, {"dp": False})


def test_a_model_that_learned_nothing_is_flagged(tmp_path):
    out = tmp_path / "stuck"
    result = runner.invoke(app, ["train", "classifier", "--dataset", "digits", "--model", "logistic_regression",
                                 "--epochs", "1", "--lr", "1e-12", "--out", str(out)], terminal_width=300)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "chance level" in result.output
    assert "chance level" in (out / "report.html").read_text()


def test_a_model_that_learned_is_not_flagged(trained):
    assert "chance level" not in (trained / "report.html").read_text()

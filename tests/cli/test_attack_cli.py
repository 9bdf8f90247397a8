"""``mlimaging attack fgsm|pgd`` and ``mlimaging train classifier --adversarial``."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.cli.attack import parse_eps
from mlimaging.cli.classify import _load_classifier
from mlimaging.robustness import fgsm

runner = CliRunner()
TRAIN = ["train", "classifier", "--dataset", "digits", "--model", "lenet", "--batch-size", "64", "--seed", "1"]


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    out = tmp_path_factory.mktemp("attack") / "lenet"
    result = runner.invoke(app, [*TRAIN, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "model.pt"


def _attack(method, checkpoint, out, *extra):
    return runner.invoke(app, ["attack", method, "--checkpoint", str(checkpoint), "--dataset", "digits", "--seed", "1",
                               "--out", str(out), *extra], terminal_width=200)


def _rows(out):
    with open(out / "tables" / "accuracy-under-attack.csv") as fh:
        return list(csv.DictReader(fh))


def test_fgsm_writes_table_curve_examples_and_matches_the_library(lenet, tmp_path):
    out = tmp_path / "fgsm"
    result = _attack("fgsm", lenet, out, "--eps", "0.3,0.1", "--n", "60")
    assert result.exit_code == 0, result.output
    for name in ("robustness.json", "report.html", "config.json", "figures/accuracy-vs-eps.png",
                 "figures/adversarial-examples.png", "tables/accuracy-under-attack.csv"):
        assert (out / name).is_file(), name
    rows = _rows(out)
    assert [float(r["eps"]) for r in rows] == [0.0, 0.1, 0.3]
    assert all(int(r["n"]) == 60 for r in rows)
    acc = [float(r["accuracy"]) for r in rows]
    assert acc[0] > acc[2]  # the attack hurts
    assert all(0.0 <= float(r["attack success rate"]) <= 1.0 for r in rows)
    assert float(rows[1]["max |delta|"]) <= 0.1 + 1e-6
    saved = json.loads((out / "robustness.json").read_text())
    assert saved["settings"]["method"] == "fgsm" and saved["settings"]["n"] == 60
    assert [r["accuracy"] for r in saved["rows"]] == pytest.approx(acc)
    assert "FGSM" in result.output and "0.3" in result.output

    # the same numbers straight from the library, on the images the command prepared
    from mlimaging.cli.attack import _images

    model, meta = _load_classifier(lenet)
    x, y = _images("digits", "test", None, 1, meta, 60)
    x_adv = fgsm(model, x, y, eps=0.3)
    with torch.no_grad():
        assert float((model(x_adv).argmax(1) == y).float().mean()) == pytest.approx(acc[2])
        assert float((model(x).argmax(1) == y).float().mean()) == pytest.approx(acc[0])


def test_pgd_is_at_least_as_strong_as_fgsm_and_force_replaces(lenet, tmp_path):
    out_f, out_p = tmp_path / "f", tmp_path / "p"
    assert _attack("fgsm", lenet, out_f, "--eps", "0.2", "--n", "60").exit_code == 0
    result = _attack("pgd", lenet, out_p, "--eps", "0.2", "--n", "60", "--steps", "10", "--restarts", "2")
    assert result.exit_code == 0, result.output
    fg, pg = float(_rows(out_f)[1]["accuracy"]), float(_rows(out_p)[1]["accuracy"])
    assert pg <= fg + 1 / 60
    assert json.loads((out_p / "robustness.json").read_text())["settings"]["restarts"] == 2
    again = _attack("pgd", lenet, out_p, "--eps", "0.05", "--n", "60", "--steps", "3", "--force")
    assert again.exit_code == 0, again.output
    assert [float(r["eps"]) for r in _rows(out_p)] == [0.0, 0.05]


@pytest.mark.parametrize("extra, match", [
    (["--eps", "-0.1"], "--eps"),
    (["--eps", "a,b"], "--eps"),
    (["--dataset", "no-such-data"], "no-such-data"),
    (["--steps", "0"], "--steps"),
    (["--norm", "l3"], "--norm"),
])
def test_bad_options_give_one_red_line(lenet, tmp_path, extra, match):
    args = ["attack", "pgd", "--checkpoint", str(lenet), "--out", str(tmp_path / "x"), "--n", "20"]
    result = runner.invoke(app, [*args, *extra], terminal_width=200)
    _one_red_line(result)
    assert match in result.output
    assert not (tmp_path / "x").exists()


def test_missing_checkpoint_unknown_method_and_existing_out(lenet, tmp_path):
    _one_red_line(_attack("fgsm", tmp_path / "missing.pt", tmp_path / "a"))
    _one_red_line(_attack("cw", lenet, tmp_path / "b"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    _one_red_line(_attack("fgsm", lenet, busy, "--eps", "0.1"))
    result = _attack("fgsm", lenet, busy, "--eps", "0.1", "--force")
    _one_red_line(result)  # --force deletes only a folder the command wrote
    assert (busy / "notes.txt").read_text() == "mine"


def test_parse_eps():
    assert parse_eps("0.3,0.1, 0.1") == [0.1, 0.3]
    with pytest.raises(ValueError, match="--eps"):
        parse_eps("nan")
    with pytest.raises(ValueError, match="--eps"):
        parse_eps(" , ")


# ----------------------------------------------------------------------------- train classifier --adversarial
def _train_adv(out, *extra):
    return runner.invoke(app, [*TRAIN, "--out", str(out), *extra])


def test_adversarial_training_resumes_exactly(tmp_path):
    one, two, resumed = tmp_path / "one", tmp_path / "two", tmp_path / "resumed"
    adv = ["--adversarial", "pgd", "--eps", "0.3", "--adv-steps", "1"]
    assert _train_adv(one, *adv, "--epochs", "1").exit_code == 0
    result = _train_adv(two, *adv, "--epochs", "2")
    assert result.exit_code == 0, result.output
    cfg = json.loads((two / "config.json").read_text())["config"]
    assert cfg["adversarial"] == "pgd" and cfg["eps"] == 0.3 and cfg["adv_steps"] == 1
    assert "--adversarial pgd --eps 0.3 --adv-steps 1" in json.loads((two / "config.json").read_text())["command"]
    shutil.copytree(one, resumed)
    result = _train_adv(resumed, "--epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    a = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(two / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fast_adversarial_training_differs_from_standard(lenet, tmp_path):
    fast = tmp_path / "fast"
    result = _train_adv(fast, "--adversarial", "fgsm", "--epochs", "1")  # the fixture's settings, plus the attack
    assert result.exit_code == 0, result.output
    cfg = json.loads((fast / "config.json").read_text())["config"]
    assert cfg["eps"] == 0.3 and cfg["adversarial"] == "fgsm" and cfg["adv_steps"] is None  # the default budget
    a = torch.load(lenet, weights_only=True)["model"]
    b = torch.load(fast / "model.pt", weights_only=True)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("extra", [
    ["--adversarial", "cw"],
    ["--eps", "0.3"],
    ["--adversarial", "pgd", "--eps", "-1"],
    ["--adversarial", "fgsm", "--adv-steps", "3"],
])
def test_bad_adversarial_options_give_one_red_line(tmp_path, extra):
    _one_red_line(_train_adv(tmp_path / "x", "--epochs", "1", *extra))
    assert not (tmp_path / "x").exists()


def test_another_dataset_than_the_models_is_a_warning(lenet, tmp_path):
    result = runner.invoke(app, ["attack", "fgsm", "--checkpoint", str(lenet), "--dataset", "mnist5k", "--n", "20",
                                 "--eps", "0.1", "--out", str(tmp_path / "shift")], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "warning: --dataset mnist5k is not the model's training dataset (digits)" in result.output
    same = _attack("fgsm", lenet, tmp_path / "same", "--eps", "0.1", "--n", "20")
    assert same.exit_code == 0 and "warning" not in same.output

"""``mlimaging train classifier --dp``: DP-SGD through the training engine from the command line.

DP-SGD itself is tested in tests/privacy/test_dp.py; here: the epsilon printed per epoch and stored
in the run folder equals the accountant's on the run's (sigma, q, steps); --epsilon solves sigma;
exact resume; BatchNorm models; bad option combinations."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import load_dataset
from mlimaging.privacy.accounting import epsilon

runner = CliRunner()
TRAIN = ["--threads", "1", "train", "classifier", "--dataset", "digits", "--model", "lenet", "--batch-size", "64", "--seed", "1",
         "--lr", "0.01"]
N_TRAIN = len(load_dataset("digits", split="train", seed=1))


def _train(out, *extra):
    return runner.invoke(app, [*TRAIN, "--out", str(out), *map(str, extra)], terminal_width=200)


def _one_red_line(result):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


def _metrics(out):
    return json.loads((out / "metrics.json").read_text())


def _config(out):
    return json.loads((out / "config.json").read_text())["config"]


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "eps3"
    result = _train(out, "--epochs", 2, "--dp", "--epsilon", 3, "--delta", 1e-5, "--max-grad-norm", 1.0)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.fixture(scope="module")
def sigma_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp") / "sigma"
    result = _train(out, "--epochs", 1, "--dp", "--sigma", 1.2, "--max-physical-batch", 16)
    assert result.exit_code == 0, result.output
    return out


def test_epsilon_per_epoch_is_the_accountants_and_within_the_budget(budget_run):
    out, output = budget_run
    cfg = _config(out)
    assert cfg["dp"] is True and cfg["epsilon"] == 3.0 and cfg["delta"] == 1e-5 and cfg["max_grad_norm"] == 1.0
    sigma, q = cfg["noise_multiplier"], 64 / N_TRAIN
    per_epoch = math.ceil(N_TRAIN / 64)
    history = _metrics(out)["history"]
    expected = [epsilon(noise_multiplier=sigma, sample_rate=q, steps=e * per_epoch, delta=1e-5) for e in (1, 2)]
    np.testing.assert_allclose([h["epsilon"] for h in history], expected, rtol=1e-12)
    assert expected[0] < expected[1] <= 3.0
    # sigma is the smallest within the budget: 1 % less noise would overspend
    assert epsilon(noise_multiplier=0.99 * sigma, sample_rate=q, steps=2 * per_epoch, delta=1e-5) > 3.0
    for e, eps in zip((1, 2), expected, strict=True):  # the per-epoch summary line shows it
        assert f"epoch {e}/2" in output and f"epsilon={eps:.4g}" in output
    assert f"epsilon {expected[1]:.4g} at delta 1e-05" in output
    assert _metrics(out)["epsilon"] == pytest.approx(expected[1], rel=1e-12)


def test_model_pt_carries_the_privacy_settings(budget_run):
    out, _ = budget_run
    ckpt = torch.load(out / "model.pt", weights_only=True)
    p = ckpt["classifier"]["privacy"]
    cfg = _config(out)
    assert p["noise_multiplier"] == cfg["noise_multiplier"] and p["max_grad_norm"] == 1.0 and p["delta"] == 1e-5
    assert p["sample_rate"] == pytest.approx(64 / N_TRAIN) and p["target_epsilon"] == 3.0
    history = _metrics(out)["history"]
    assert p["epsilon"] == history[ckpt["epoch"] - 1]["epsilon"]  # spent up to the exported epoch
    assert p["epsilon_run"] == history[-1]["epsilon"] and p["steps_run"] == 2 * math.ceil(N_TRAIN / 64)
    assert (out / "figures" / "learning-curves.png").is_file()
    assert "DP-SGD" in (out / "report.html").read_text()


def test_sigma_and_virtual_steps(sigma_run):
    cfg = _config(sigma_run)
    assert cfg["noise_multiplier"] == 1.2 and cfg["max_physical_batch"] == 16 and cfg["epsilon"] is None
    h = _metrics(sigma_run)["history"][0]
    assert h["epsilon"] == pytest.approx(epsilon(noise_multiplier=1.2, sample_rate=64 / N_TRAIN,
                                                 steps=math.ceil(N_TRAIN / 64), delta=1e-5), rel=1e-12)
    assert 0 <= h["clipped_fraction"] <= 1


def test_resume_is_exact(sigma_run, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(sigma_run, resumed)
    result = runner.invoke(app, ["--threads", "1", "train", "classifier", "--out", str(resumed), "--epochs", "2", "--resume", "--dp"])
    assert result.exit_code == 0, result.output
    assert "resumed from epoch 1" in result.output
    straight = tmp_path / "straight"
    assert _train(straight, "--epochs", 2, "--dp", "--sigma", 1.2, "--max-physical-batch", 16).exit_code == 0
    a = torch.load(resumed / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(straight / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = _metrics(resumed)["history"], _metrics(straight)["history"]
    assert [h["epsilon"] for h in ha] == [h["epsilon"] for h in hb]
    assert ha[0] == _metrics(sigma_run)["history"][0]


def test_resume_keeps_the_noise_of_the_budget_and_warns_past_it(budget_run, tmp_path):
    out, _ = budget_run
    resumed = tmp_path / "more"
    shutil.copytree(out, resumed)
    result = runner.invoke(app, ["--threads", "1", "train", "classifier", "--out", str(resumed), "--epochs", "3", "--resume"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "over 2 epochs" in result.output
    cfg = _config(resumed)
    assert cfg["noise_multiplier"] == _config(out)["noise_multiplier"]
    eps = _metrics(resumed)["history"][-1]["epsilon"]
    assert eps > 3.0  # a third epoch at the same noise overspends the budget set for two
    result = runner.invoke(app, ["--threads", "1", "train", "classifier", "--out", str(resumed), "--epochs", "3", "--resume",
                                 "--epsilon", "8"])
    _one_red_line(result)
    assert "--epsilon 8.0 (the run used 3.0)" in result.output


def _image_folder(root):
    from mlimaging.data import write_image

    g = torch.Generator().manual_seed(0)
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            image = (torch.rand(32, 32, generator=g) * 60).to(torch.uint8)
            image[8:24, 12:20] += 150 if k else 0
            write_image(root / name / f"{i}.png", image.numpy())
    return root


def test_batchnorm_is_one_line_and_dp_fix_model_trains_with_groupnorm(tmp_path):
    data = _image_folder(tmp_path / "data")
    args = ["--threads", "1", "train", "classifier", "--dataset", "image-folder", "--root", str(data), "--model", "vgg11_bn",
            "--epochs", "1", "--batch-size", "8", "--dp", "--sigma", "1.0"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "bn")])
    _one_red_line(result)
    assert "BatchNorm" in result.output and "--dp-fix-model" in result.output
    assert not (tmp_path / "bn").exists()
    out = tmp_path / "gn"
    result = runner.invoke(app, [*args, "--dp-fix-model", "--out", str(out)])
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["classifier"]["privacy"]["groupnorm"] is True
    assert not any("running_mean" in k for k in ckpt["model"])
    result = runner.invoke(app, ["predict", "--checkpoint", str(out / "model.pt"), str(data / "a" / "0.png")],
                           terminal_width=200)
    assert result.exit_code == 0, result.output  # predict rebuilds the GroupNorm model


@pytest.mark.parametrize("args, needle", [
    (["--epsilon", "3"], "--epsilon needs --dp"),
    (["--sigma", "1", "--max-grad-norm", "2"], "--sigma, --max-grad-norm need --dp"),
    (["--dp-fix-model"], "--dp-fix-model needs --dp"),
    (["--dp"], "--dp needs --epsilon E"),
    (["--dp", "--epsilon", "3", "--sigma", "1"], "not both"),
    (["--dp", "--epsilon", "3", "--adversarial", "fgsm"], "--dp and --adversarial"),
    (["--dp", "--epsilon", "-1"], "--epsilon must be a positive number"),
    (["--dp", "--sigma", "0"], "--sigma must be a positive number"),
    (["--dp", "--epsilon", "3", "--delta", "1"], "--delta must be in (0, 1)"),
    (["--dp", "--epsilon", "3", "--max-grad-norm", "0"], "--max-grad-norm"),
    (["--dp", "--epsilon", "3", "--max-physical-batch", "0"], "--max-physical-batch"),
    (["--dp", "--epsilon", "3", "--batch-size", "5000"], "training images"),
])
def test_bad_dp_options_are_one_red_line(tmp_path, args, needle):
    result = _train(tmp_path / "bad", "--epochs", 1, *args)
    _one_red_line(result)
    assert needle in result.output
    assert not (tmp_path / "bad").exists()


def test_dp_cnn_with_the_dp_defaults(tmp_path):
    """`--model dp_cnn --dp --epsilon 3` with nothing else takes the --dp defaults (Adam lr 0.01, clipping norm 0.1,
    batch 512 capped at a quarter of the training images), resizes the 8 x 8 digits to dp_cnn's 28 x 28 and spends at
    most the budget; the checkpoint predicts."""
    out = tmp_path / "dpcnn"
    result = runner.invoke(app, ["--threads", "1", "train", "classifier", "--dataset", "digits", "--model", "dp_cnn",
                                 "--seed", "1", "--epochs", "2", "--dp", "--epsilon", "3", "--out", str(out)],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    cfg = _config(out)
    assert cfg["model"] == "dp_cnn" and cfg["lr"] == 0.01 and cfg["max_grad_norm"] == 0.1
    assert cfg["batch_size"] == min(512, N_TRAIN // 4)
    assert cfg["meta"]["preprocess"]["size"] == [28, 28]
    spent = _metrics(out)["epsilon"]
    q, steps = cfg["batch_size"] / N_TRAIN, 2 * math.ceil(N_TRAIN / cfg["batch_size"])
    assert spent == pytest.approx(epsilon(noise_multiplier=cfg["noise_multiplier"], sample_rate=q, steps=steps,
                                          delta=1e-5), rel=1e-9)
    assert spent <= 3.0
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert not any("running_mean" in k for k in ckpt["model"]) and "std" in ckpt["model"]  # GroupNorm, no BatchNorm
    help_text = " ".join(runner.invoke(app, ["train", "classifier", "--help"]).output.replace("│", " ").split())
    assert "--max-grad-norm 0.1" in help_text and "dp_cnn" in help_text

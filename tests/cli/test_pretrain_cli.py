from __future__ import annotations

import json
import shutil

import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.cli.pretrain import (
    build_method,
    fresh_encoder,
    load_encoder,
    load_images,
    patch_size_for,
)
from mlimaging.selfsupervised.base import SelfSupervisedStep

runner = CliRunner()


def _pretrain(method, out, *extra):
    return runner.invoke(app, ["pretrain", method, "--dataset", "digits", "--seed", "1", "--out", str(out), *extra])


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


def _same_weights(a, b):
    sa = torch.load(a, weights_only=True)["model"]
    sb = torch.load(b, weights_only=True)["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def simclr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "simclr"
    result = _pretrain("simclr", out, "--epochs", "1")
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def simclr_two_epochs(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "simclr2"
    result = _pretrain("simclr", out, "--epochs", "2")
    assert result.exit_code == 0, result.output
    return out


def test_pretrain_writes_checkpoints_encoder_and_report(simclr_run):
    for name in ("model.pt", "checkpoints/last.pt", "report.html", "config.json", "metrics.json", "figures/loss.png"):
        assert (simclr_run / name).is_file(), name
    ckpt = torch.load(simclr_run / "model.pt", weights_only=True)
    meta = ckpt["pretrain"]
    assert meta["method"] == "simclr" and meta["encoder_name"] == "small_cnn"
    assert meta["image_size"] == 8 and meta["channels"] == 1 and meta["dataset"] == "digits"
    assert meta["split_seed"] == 1 and meta["feature_dim"] == 128 and ckpt["epoch"] == 1
    # model.pt holds the encoder f only (not SimCLR's projection head), equal to the method's encoder in last.pt
    last = torch.load(simclr_run / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert set(ckpt["encoder"]) == {k.removeprefix("encoder.") for k in last if k.startswith("encoder.")}
    assert all(torch.equal(v, last[f"encoder.{k}"]) for k, v in ckpt["encoder"].items())
    history = json.loads((simclr_run / "metrics.json").read_text())["history"]
    assert len(history) == 1 and history[0]["loss"] > 0 and "val_loss" in history[0]


def test_load_encoder_rebuilds_the_pretrained_encoder(simclr_run):
    encoder, meta = load_encoder(simclr_run / "model.pt")
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    method, _ = build_method("simclr", channels=1, image_size=8)
    method.encoder.load_state_dict(torch.load(simclr_run / "model.pt", weights_only=True)["encoder"])
    torch.testing.assert_close(encoder(x), method.encoder.eval()(x), rtol=0, atol=0)
    assert encoder(x).shape == (3, meta["feature_dim"])
    assert not torch.equal(fresh_encoder(meta)(x), encoder(x))  # a fresh encoder is not the pretrained one


@pytest.mark.parametrize("method", ["simclr", "triplet"])
def test_views_flip_only_when_asked(method):
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    kinds = {}
    for flip in (True, False):
        model, _ = build_method(method, channels=1, image_size=8, flip=flip)
        augment = model.augment or model._default_augment
        augment(x, generator=torch.Generator())  # a default pipeline is built on first use
        pipeline = next(iter(augment._cache.values())) if hasattr(augment, "_cache") else augment
        kinds[flip] = [type(t).__name__ for t in pipeline.transforms]
    assert "RandomFlip" in kinds[True] and "RandomFlip" not in kinds[False]
    assert [k for k in kinds[True] if k != "RandomFlip"] == kinds[False]


@pytest.mark.parametrize("method", ["mae", "ijepa", "triplet"])
def test_every_method_pretrains_and_probes(method, tmp_path):
    out = tmp_path / method
    result = _pretrain(method, out, "--epochs", "1", "--batch-size", "128")
    assert result.exit_code == 0, result.output
    encoder, meta = load_encoder(out / "model.pt")
    assert meta["method"] == method
    x, _ = load_images("digits", "test", root=None, seed=1, size=None)
    assert encoder(x[:4]).shape == (4, meta["feature_dim"])
    result = runner.invoke(app, ["probe", "--checkpoint", str(out / "model.pt"), "--labels", "0.2", "--epochs", "2"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "linear probe" in result.output and "random init" not in result.output


def test_resume_continues_and_matches_an_uninterrupted_run(simclr_run, simclr_two_epochs, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(simclr_run, out)
    result = runner.invoke(app, ["pretrain", "simclr", "--out", str(out), "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert "resumed from epoch 1" in result.output
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert _same_weights(out / "checkpoints" / "last.pt", simclr_two_epochs / "checkpoints" / "last.pt")
    a = torch.load(out / "model.pt", weights_only=True)["encoder"]
    b = torch.load(simclr_two_epochs / "model.pt", weights_only=True)["encoder"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ctrl_c_leaves_a_resumable_folder(simclr_two_epochs, tmp_path, monkeypatch):
    calls = {"n": 0}
    original = SelfSupervisedStep.__call__

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # digits: 5 steps of 256 per epoch, so in the second epoch
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    out = tmp_path / "ctrl-c"
    monkeypatch.setattr(SelfSupervisedStep, "__call__", interrupted)
    result = _pretrain("simclr", out, "--epochs", "2")
    assert result.exit_code == 130, result.output
    assert "--resume" in result.output and "Traceback" not in result.output
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(SelfSupervisedStep, "__call__", original)
    result = runner.invoke(app, ["pretrain", "simclr", "--out", str(out), "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert _same_weights(out / "checkpoints" / "last.pt", simclr_two_epochs / "checkpoints" / "last.pt")


def test_probe_linear_knn_fine_tune_and_baseline(simclr_run):
    ckpt = str(simclr_run / "model.pt")
    for extra, shown in ((["--knn"], "kNN"), (["--fine-tune", "--epochs", "1"], "fine-tune"),
                         (["--baseline", "--epochs", "1"], "trained from scratch")):
        result = runner.invoke(app, ["probe", "--checkpoint", ckpt, "--labels", "0.1", *extra], terminal_width=200)
        assert result.exit_code == 0, result.output
        assert shown in result.output
        # 10% of the 1,078 training digits (the pretraining's split, seed 1), stratified
        assert "108 (10%)" in result.output
        accuracies = [float(line.split("│")[-2]) for line in result.output.splitlines() if "(10%)" in line]
        assert accuracies and all(0.0 <= a <= 1.0 for a in accuracies)


def test_image_folder_pretrains_and_probes(tmp_path):
    from mlimaging.data import write_image

    g = torch.Generator().manual_seed(0)
    for k, name in enumerate(("disc", "bar")):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(10):
            image = (torch.rand(16, 16, generator=g) * 60).to(torch.uint8)
            image[4:12, 6:10] += 150 if k else 0
            image[6:10, 4:12] += 0 if k else 150
            write_image(tmp_path / "data" / name / f"{i}.png", image.numpy())
    out = tmp_path / "run"
    result = runner.invoke(app, ["pretrain", "mae", "--dataset", "image-folder", "--root", str(tmp_path / "data"),
                                 "--epochs", "1", "--batch-size", "8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = torch.load(out / "model.pt", weights_only=True)["pretrain"]
    assert meta["image_size"] == 16 and meta["method_kwargs"]["patch_size"] == 2  # an 8 x 8 grid
    assert meta["root"] == str((tmp_path / "data").resolve())
    result = runner.invoke(app, ["probe", "--checkpoint", str(out / "model.pt"), "--labels", "1.0", "--knn"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "image-folder" in result.output and "kNN" in result.output


def test_patch_size_gives_about_seven_patches_a_side():
    assert patch_size_for(28) == 4 and patch_size_for(32) == 4 and patch_size_for(64) == 8 and patch_size_for(8) == 2
    with pytest.raises(ValueError, match="--size"):
        patch_size_for(6)


def test_refuses_to_overwrite_without_force(simclr_run):
    before = (simclr_run / "model.pt").read_bytes()
    result = _pretrain("simclr", simclr_run, "--epochs", "1")
    _one_red_line(result)
    assert "already exists" in result.output and "--force" in result.output
    assert (simclr_run / "model.pt").read_bytes() == before


def test_resume_refuses_other_settings(simclr_run, tmp_path):
    out = tmp_path / "r"
    shutil.copytree(simclr_run, out)
    result = runner.invoke(app, ["pretrain", "simclr", "--out", str(out), "--epochs", "2", "--resume", "--lr", "0.5"])
    _one_red_line(result)
    assert "--lr 0.5" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["pretrain", "byol", "--out", "{tmp}/x"], "METHOD must be one of simclr, mae, ijepa, triplet"),
    (["pretrain", "simclr", "--dataset", "cifar", "--out", "{tmp}/x"], "--dataset must be one of"),
    (["pretrain", "simclr", "--dataset", "image-folder", "--out", "{tmp}/x"], "needs --root"),
    (["pretrain", "simclr", "--epochs", "0", "--out", "{tmp}/x"], "--epochs must be a positive integer"),
    (["pretrain", "simclr", "--patch-size", "4", "--out", "{tmp}/x"], "--patch-size applies to mae and ijepa"),
    (["pretrain", "mae", "--dataset", "digits", "--patch-size", "3", "--out", "{tmp}/x"], "does not divide"),
    (["pretrain", "simclr", "--resume", "--out", "{tmp}/x"], "does not exist"),
    (["pretrain", "simclr", "--dataset", "digits", "--batch-size", "1078", "--epochs", "1", "--out", "{tmp}/x"], "last batch of one"),
    (["pretrain", "ijepa", "--dataset", "digits", "--batch-size", "1", "--epochs", "1", "--out", "{tmp}/x"], "at least 2"),
    (["probe", "--checkpoint", "{tmp}/none.pt"], "does not exist"),
    (["probe", "--checkpoint", "{ckpt}", "--labels", "0"], "--labels must be a fraction in (0, 1]"),
    (["probe", "--checkpoint", "{ckpt}", "--labels", "1.5"], "--labels must be a fraction in (0, 1]"),
    (["probe", "--checkpoint", "{ckpt}", "--knn", "--fine-tune"], "exclude each other"),
    (["probe", "--checkpoint", "{last}"], "not an encoder written by `mlimaging pretrain`"),
    (["probe", "--checkpoint", "{text}"], "not a checkpoint readable"),
])
def test_bad_input_is_one_red_line(args, message, simclr_run, tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    fill = {"tmp": tmp_path, "ckpt": simclr_run / "model.pt", "last": simclr_run / "checkpoints" / "last.pt",
            "text": text}
    result = runner.invoke(app, [a.format(**fill) for a in args], terminal_width=300)
    _one_red_line(result)
    assert message in result.output
    assert not (tmp_path / "x").exists()

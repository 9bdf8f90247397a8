from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import mlimaging.cli.gan  # noqa: F401  (registers `train gan` and `sample`)
from mlimaging.cli.app import app
from mlimaging.cli.gan import load_generator
from mlimaging.data.io import read_image

runner = CliRunner()
SMALL = ["--dataset", "digits", "--width", "4", "--latent-dim", "8", "--batch-size", "128", "--seed", "1"]


def _train(out, *extra):
    return runner.invoke(app, ["train", "gan", *SMALL, "--out", str(out), *extra])


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


def _weights(path, key="generator"):
    return torch.load(path, weights_only=True)[key]


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gan") / "run"
    result = _train(out, "--epochs", "2")
    assert result.exit_code == 0, result.output
    return out


def test_train_gan_writes_the_run_folder(gan_run):
    for name in ("model.pt", "checkpoints/last.pt", "report.html", "config.json", "metrics.json",
                 "figures/samples_epoch_001.png", "figures/samples_epoch_002.png", "figures/losses.png",
                 "figures/samples.png", "tables/history.csv"):
        assert (gan_run / name).is_file(), name
    ckpt = torch.load(gan_run / "model.pt", weights_only=True)
    meta = ckpt["gan"]
    assert meta["image_size"] == 28 and meta["channels"] == 1 and meta["latent_dim"] == 8 and meta["width"] == 4
    assert meta["loss"] == "non_saturating" and meta["num_classes"] is None and ckpt["epoch"] == 2
    assert set(ckpt) >= {"generator", "discriminator"}
    last = torch.load(gan_run / "checkpoints" / "last.pt", weights_only=True)
    # model.pt's discriminator is the one the step checkpointed
    for k, v in ckpt["discriminator"].items():
        assert torch.equal(v, last["step"]["discriminator"][k])
    history = json.loads((gan_run / "metrics.json").read_text())["history"]
    assert len(history) == 2 and {"d_loss", "g_loss", "D(x)", "D(G(z))"} <= set(history[0])
    grid, _ = read_image(gan_run / "figures" / "samples_epoch_002.png")
    assert grid.shape == (8 * 30 + 2, 8 * 30 + 2)  # 64 samples, 8 per row, 2 px padding


def test_sample_writes_a_seeded_grid(gan_run, tmp_path):
    args = ["sample", "--checkpoint", str(gan_run / "model.pt"), "--n", "10", "--ncols", "5"]
    a = runner.invoke(app, [*args, "--out", str(tmp_path / "a.png"), "--seed", "3"])
    b = runner.invoke(app, [*args, "--out", str(tmp_path / "b.png"), "--seed", "3"])
    c = runner.invoke(app, [*args, "--out", str(tmp_path / "c.png"), "--seed", "4"])
    assert a.exit_code == b.exit_code == c.exit_code == 0, a.output
    ga, gb, gc = (read_image(tmp_path / f"{n}.png")[0] for n in "abc")
    assert ga.shape == (2 * 30 + 2, 5 * 30 + 2) and (ga == gb).all() and not (ga == gc).all()
    generator, meta = load_generator(gan_run / "model.pt")
    assert not generator.training and meta["epoch"] == 2
    _one_red_line(runner.invoke(app, [*args, "--out", str(tmp_path / "a.png")]))  # exists: needs --force
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "a.png"), "--force"]).exit_code == 0


def test_resume_continues_to_the_weights_of_an_uninterrupted_run(gan_run, tmp_path):
    assert _train(tmp_path / "part", "--epochs", "1").exit_code == 0
    result = _train(tmp_path / "part", "--epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    for key in ("generator", "discriminator"):
        a, b = _weights(gan_run / "model.pt", key), _weights(tmp_path / "part" / "model.pt", key)
        assert all(torch.equal(a[k], b[k]) for k in a), key
    _one_red_line(_train(tmp_path / "part", "--epochs", "3", "--resume", "--width", "8"))


def test_conditional_wgan_gp_run_and_labelled_samples(tmp_path):
    out = tmp_path / "cgan"
    result = _train(out, "--epochs", "1", "--conditional", "--loss", "wgan_gp", "--n-critic", "2", "--ema", "0.5")
    assert result.exit_code == 0, result.output
    ckpt = torch.load(out / "model.pt", weights_only=True)
    meta = ckpt["gan"]
    assert meta["num_classes"] == 10 and meta["norm"] == "layer" and meta["loss"] == "wgan_gp" and meta["ema"] == 0.5
    assert ckpt["generator"].keys() == ckpt["generator_last"].keys()  # the average and the last weights
    assert any(not torch.equal(ckpt["generator"][k], ckpt["generator_last"][k]) for k in ckpt["generator"])
    res = runner.invoke(app, ["sample", "--checkpoint", str(out / "model.pt"), "--n", "4", "--label", "7",
                              "--out", str(tmp_path / "sevens.png")])
    assert res.exit_code == 0, res.output
    _one_red_line(runner.invoke(app, ["sample", "--checkpoint", str(out / "model.pt"), "--label", "10",
                                      "--out", str(tmp_path / "x.png")]))


@pytest.mark.parametrize("extra", [
    ["--epochs", "0"],
    ["--loss", "wasserstein"],
    ["--size", "30"],
    ["--size", "128"],
    ["--lr", "-1"],
    ["--n-critic", "0"],
    ["--ema", "1.5"],
    ["--dataset", "cifar"],
    ["--dataset", "image-folder"],
])
def test_bad_train_options_are_one_red_line(tmp_path, extra):
    _one_red_line(_train(tmp_path / "bad", *extra))
    assert not (tmp_path / "bad" / "model.pt").exists()


def test_out_rules(gan_run, tmp_path):
    _one_red_line(_train(gan_run, "--epochs", "1"))  # exists: --force or --resume
    _one_red_line(_train(tmp_path / "missing", "--resume"))
    _one_red_line(_train(gan_run, "--resume", "--force"))


def test_bad_sample_inputs_are_one_red_line(gan_run, tmp_path):
    _one_red_line(runner.invoke(app, ["sample", "--checkpoint", str(tmp_path / "none.pt"), "--out",
                                      str(tmp_path / "g.png")]))
    _one_red_line(runner.invoke(app, ["sample", "--checkpoint", str(gan_run / "config.json"), "--out",
                                      str(tmp_path / "g.png")]))
    other = tmp_path / "other.pt"
    torch.save({"model": {}}, other)
    _one_red_line(runner.invoke(app, ["sample", "--checkpoint", str(other), "--out", str(tmp_path / "g.png")]))
    for extra in (["--n", "0"], ["--label", "1"], ["--seed", "-1"]):
        _one_red_line(runner.invoke(app, ["sample", "--checkpoint", str(gan_run / "model.pt"), "--out",
                                          str(tmp_path / "g.png"), *extra]))
    _one_red_line(runner.invoke(app, ["sample", "--checkpoint", str(gan_run / "model.pt"), "--out",
                                      str(tmp_path / "g.xyz")]))

"""``mlimaging train superres`` and ``mlimaging upscale``: run folder, resume, model.pt, held-out scores,
upscaling of PNG/NPY/NIfTI with geometry, and one-red-line errors."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from typer.testing import CliRunner

import mlimaging.cli.superres  # noqa: F401  (registers `train superres` and `upscale`)
from mlimaging.cli.app import app
from mlimaging.cli.superres import load_superres, upscale_array, upscaled_geometry
from mlimaging.data.geometry import ImageGeometry
from mlimaging.data.io import read_image, write_image
from mlimaging.inverse.superres import SR_TRAIN_EXTRA

runner = CliRunner()
TINY = ["--model", "espcn", "--scale", "2", "--patch", "16", "--patches", "4", "--batch-size", "8",
        "--eval-crop", "32", "--n-test", "2"]


def _train(out, *extra):
    return runner.invoke(app, ["--threads", "1", "train", "superres", *TINY, "--out", str(out), *extra])


def _one_red_line(result, code=2):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:")


@pytest.fixture(scope="module")
def sr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sr") / "run"
    result = _train(out, "--epochs", "1")
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_superres_writes_the_run_folder(sr_run):
    out, output = sr_run
    for name in ("model.pt", "checkpoints/last.pt", "report.html", "config.json", "metrics.json"):
        assert (out / name).is_file(), name
    ckpt = torch.load(out / "model.pt", weights_only=True)
    meta = ckpt["superres"]
    assert meta["model"] == "espcn" and meta["scale"] == 2 and meta["model_kwargs"] == {"scale": 2, "in_channels": 1}
    assert len(meta["test_images"]) == 2 and not set(meta["test_images"]) & set(meta["train_images"])
    assert set(SR_TRAIN_EXTRA) <= set(meta["train_images"])  # the benchmark's training-only photographs, by default
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_psnr", "test_ssim", "bicubic_psnr", "bicubic_ssim", "gain_db"):
        assert np.isfinite(metrics[key]), key
    assert_allclose(metrics["gain_db"], metrics["test_psnr"] - metrics["bicubic_psnr"], atol=1e-9)
    assert_allclose(meta["held_out_gain_db"], metrics["gain_db"], atol=1e-9)  # what upscale warns from
    assert meta["held_out_images"] == meta["test_images"]
    assert "bicubic PSNR" in output and "mean" in output
    assert "Held-out" in (out / "report.html").read_text()
    # a tiny network trained on 4 patches for one epoch upscales worse than bicubic: it says so
    assert metrics["gain_db"] < 0
    assert "warning:" in output and "below bicubic" in output
    assert "below bicubic" in (out / "report.html").read_text()


def test_no_extra_photos_trains_on_the_split_only_and_resume_keeps_it(tmp_path):
    out = tmp_path / "run"
    assert _train(out, "--epochs", "1", "--no-extra-photos").exit_code == 0
    meta = torch.load(out / "model.pt", weights_only=True)["superres"]
    assert not set(SR_TRAIN_EXTRA) & set(meta["train_images"])
    assert "--no-extra-photos" in json.loads((out / "config.json").read_text())["command"]
    result = _train(out, "--epochs", "2", "--resume", "--extra-photos")
    _one_red_line(result)
    assert "--extra-photos (the run used --no-extra-photos)" in result.output


def test_below_bicubic_warning_worked_example():
    from mlimaging.cli.superres import _below_bicubic_warning

    assert _below_bicubic_warning(0.4) == "" and _below_bicubic_warning(0.0) == ""
    assert "1.25 dB below bicubic" in _below_bicubic_warning(-1.25)


def test_resume_continues_to_more_epochs(sr_run, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(sr_run[0], out)
    result = _train(out, "--epochs", "2", "--resume")
    assert result.exit_code == 0, result.output
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 2
    changed = _train(out, "--epochs", "3", "--resume", "--loss", "l1")  # the run used espcn's recipe loss, l2
    _one_red_line(changed)
    assert "--loss l1" in changed.output
    config = json.loads((out / "config.json").read_text())
    assert "--resume" not in config["command"] and "--model espcn" in config["command"]


def test_loaded_model_reproduces_the_saved_weights(sr_run):
    net, meta = load_superres(sr_run[0] / "model.pt")
    saved = torch.load(sr_run[0] / "model.pt", weights_only=True)["model"]
    for k, v in net.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert meta["epoch"] == 1


def test_upscale_png_doubles_both_sides(sr_run, tmp_path):
    src, out = tmp_path / "in.png", tmp_path / "big.png"
    rng = np.random.default_rng(0)
    write_image(src, rng.integers(0, 256, (12, 10), dtype=np.uint8))
    result = runner.invoke(app, ["upscale", str(src), "--checkpoint", str(sr_run[0] / "model.pt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    big, _ = read_image(out)
    assert big.shape == (24, 20) and big.dtype == np.uint8
    gain = torch.load(sr_run[0] / "model.pt", weights_only=True)["superres"]["held_out_gain_db"]
    assert ("below bicubic" in result.output) == (gain < 0)  # one epoch: a warning exactly when it lost to bicubic


def test_upscale_warns_when_the_checkpoint_lost_to_bicubic(sr_run, tmp_path):
    ckpt = torch.load(sr_run[0] / "model.pt", weights_only=True)
    src = tmp_path / "in.npy"
    np.save(src, np.random.default_rng(4).uniform(0, 1, (8, 8)).astype(np.float32))
    for gain, warned in ((-0.5, True), (1.5, False)):
        ckpt["superres"]["held_out_gain_db"] = gain
        torch.save(ckpt, tmp_path / "model.pt")
        result = runner.invoke(app, ["upscale", str(src), "--checkpoint", str(tmp_path / "model.pt"), "--out",
                                     str(tmp_path / "big.npy"), "--force"])
        assert result.exit_code == 0, result.output
        assert ("0.50 dB below bicubic" in result.output) == warned, result.output


def test_upscale_colour_png_runs_the_network_on_y_and_keeps_the_colours(sr_run, tmp_path):
    from PIL import Image

    from mlimaging.inverse.superres import rgb_to_y

    src, out = tmp_path / "photo.png", tmp_path / "big.png"
    rng = np.random.default_rng(3)
    rgb = np.clip(rng.normal([180, 120, 80], 10, (12, 10, 3)), 0, 255).astype(np.uint8)  # an orange picture
    Image.fromarray(rgb).save(src)
    ckpt = str(sr_run[0] / "model.pt")
    result = runner.invoke(app, ["upscale", str(src), "--checkpoint", ckpt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    big = np.asarray(Image.open(out))
    assert big.shape == (24, 20, 3) and big.dtype == np.uint8
    net, _ = load_superres(sr_run[0] / "model.pt")
    y = rgb_to_y(np.moveaxis(rgb.astype(np.float32) / 255, -1, 0))  # (1, H, W), BT.601
    with torch.no_grad():
        expected = net(torch.from_numpy(y)[None])[0, 0].numpy()
    got = rgb_to_y(np.moveaxis(big.astype(np.float32) / 255, -1, 0))[0]
    inside = np.all((big > 0) & (big < 255), axis=-1)  # where no channel was clipped to the RGB gamut
    assert inside.mean() > 0.5
    assert np.abs(got - expected)[inside].max() < 2.5 / 255  # the network's Y, up to 8-bit rounding of R, G, B
    assert np.all(big[..., 0].astype(int) > big[..., 2])  # still orange: chroma kept
    result = runner.invoke(app, ["upscale", str(src), "--checkpoint", ckpt, "--out", str(tmp_path / "big.nii.gz")])
    assert result.exit_code == 2 and "colour picture" in result.output
    (tmp_path / "bad.png").write_text("not a picture")
    result = runner.invoke(app, ["upscale", str(tmp_path / "bad.png"), "--checkpoint", ckpt, "--out", str(out), "--force"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output


def test_upscale_npy_keeps_units_and_matches_the_network(sr_run, tmp_path):
    src, out = tmp_path / "in.npy", tmp_path / "big.npy"
    x = np.random.default_rng(1).uniform(-100.0, 300.0, (8, 9)).astype(np.float32)
    np.save(src, x)
    result = runner.invoke(app, ["upscale", str(src), "--checkpoint", str(sr_run[0] / "model.pt"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    net, _ = load_superres(sr_run[0] / "model.pt")
    lo, hi = x.min(), x.max()
    with torch.no_grad():
        expected = net(torch.from_numpy((x - lo) / (hi - lo))[None, None])[0, 0].numpy() * (hi - lo) + lo
    assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-3)


def test_upscale_nifti_along_an_axis_overlays_the_input(sr_run, tmp_path):
    src, out = tmp_path / "thick.nii.gz", tmp_path / "fine.nii.gz"
    vol = np.random.default_rng(2).uniform(0, 1000, (6, 7, 5)).astype(np.float32)
    affine = np.array([[0.0, 0.0, 8.0, -20.0], [1.3, 0.0, 0.0, 5.0], [0.0, 1.3, 0.0, 12.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(vol, affine), str(src))
    result = runner.invoke(app, ["upscale", str(src), "--checkpoint", str(sr_run[0] / "model.pt"), "--out", str(out),
                                 "--axis", "2"])
    assert result.exit_code == 0, result.output
    img = nib.load(str(out))
    assert img.shape == (6, 7, 10)
    assert_allclose(img.header.get_zooms()[:3], (1.3, 1.3, 4.0), rtol=1e-6)
    # the two new voxels 2k and 2k+1 are centred on old voxel k (same world position on average)
    old = affine @ np.array([2.0, 3.0, 1.0, 1.0])
    new = (img.affine @ np.array([2.0, 3.0, 2.0, 1.0]) + img.affine @ np.array([2.0, 3.0, 3.0, 1.0])) / 2
    assert_allclose(new, old, atol=1e-5)
    assert_allclose(img.get_sform(), img.get_qform(), atol=1e-5)


def test_upscaled_geometry_worked_example():
    g = upscaled_geometry(ImageGeometry(spacing=(2.0, 3.0), origin=(10.0, 20.0)), 3, (0, 1))
    assert_allclose(g.spacing, (2 / 3, 1.0))
    assert_allclose(g.origin, (10.0 - 2.0 / 3, 20.0 - 1.0))  # (1/(2s) - 1/2) * spacing


def test_upscale_array_volume_of_a_constant_stays_constant():
    from mlimaging.models import create_model

    class Bicubic(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)

    vol = np.full((3, 4, 5), 0.25, np.float32)
    for axis in (0, 1, 2, -1):
        out = upscale_array(Bicubic(), vol, 2, axis=axis)
        shape = list(vol.shape)
        shape[axis] *= 2
        assert out.shape == tuple(shape)
        assert_allclose(out, 0.25, atol=1e-6)
    net = create_model("espcn", scale=2, features=(4, 4), seed=0).eval()
    assert upscale_array(net, vol[0], 2).shape == (8, 10)


@pytest.mark.parametrize("args, needle", [
    (["--model", "unet"], "--model"),
    (["--loss", "ssim"], "--loss"),
    (["--scale", "5"], "--scale"),
    (["--patch", "15"], "--patch"),
    (["--epochs", "0"], "--epochs"),
    (["--degradation", "jpeg"], "--degradation"),
    (["--grad-clip", "-1"], "--grad-clip"),
    (["--model", "lapsrn", "--scale", "3"], "--scale"),
])
def test_train_bad_options_are_one_red_line(tmp_path, args, needle):
    result = runner.invoke(app, ["train", "superres", "--out", str(tmp_path / "r"), *args])
    _one_red_line(result)
    assert needle in result.output


def test_upscale_bad_inputs_are_one_red_line(sr_run, tmp_path):
    ckpt = str(sr_run[0] / "model.pt")
    np.save(tmp_path / "vol.npy", np.zeros((4, 4, 4), np.float32))
    np.save(tmp_path / "img.npy", np.zeros((4, 4), np.float32))
    torch.save({"x": torch.zeros(1)}, tmp_path / "other.pt")
    cases = [
        (["upscale", str(tmp_path / "missing.png"), "--checkpoint", ckpt, "--out", str(tmp_path / "a.png")], "IMAGE"),
        (["upscale", str(tmp_path / "img.npy"), "--checkpoint", str(tmp_path / "none.pt"), "--out",
          str(tmp_path / "b.npy")], "none.pt"),
        (["upscale", str(tmp_path / "img.npy"), "--checkpoint", str(tmp_path / "other.pt"), "--out",
          str(tmp_path / "c.npy")], "superres"),
        (["upscale", str(tmp_path / "vol.npy"), "--checkpoint", ckpt, "--out", str(tmp_path / "d.png")], ".png"),
        (["upscale", str(tmp_path / "vol.npy"), "--checkpoint", ckpt, "--out", str(tmp_path / "e.npy"), "--axis",
          "3"], "--axis"),
        (["upscale", str(tmp_path / "img.npy"), "--checkpoint", ckpt, "--out", str(tmp_path / "img.npy")], "--force"),
    ]
    for args, needle in cases:
        result = runner.invoke(app, args)
        _one_red_line(result)
        assert needle in result.output, (args, result.output)


@settings(max_examples=15, deadline=None)
@given(axis=st.integers().filter(lambda a: not -3 <= a <= 2))
def test_upscale_any_axis_outside_the_volume_is_refused(tmp_path_factory, axis):
    d = tmp_path_factory.mktemp("axis")
    np.save(d / "vol.npy", np.zeros((2, 2, 2), np.float32))
    result = runner.invoke(app, ["upscale", str(d / "vol.npy"), "--checkpoint", str(d / "x.pt"), "--out",
                                 str(d / "o.npy"), "--axis", str(axis)])
    _one_red_line(result)
    assert "--axis" in result.output


def test_upscale_png_of_an_int16_scan_is_unsigned_and_clipped_at_zero(sr_run, tmp_path):
    """int16 stored values (as DICOM's) to PNG: written in the input's integer units, undershoot clipped at 0;
    negative inputs and floats are refused before the network runs."""
    ckpt = str(sr_run[0] / "model.pt")
    x = np.zeros((12, 12), np.int16)
    x[3:9, 3:9] = 2000
    np.save(tmp_path / "mr.npy", x)
    result = runner.invoke(app, ["upscale", str(tmp_path / "mr.npy"), "--checkpoint", ckpt, "--out",
                                 str(tmp_path / "big.png")])
    assert result.exit_code == 0, result.output
    big, _ = read_image(tmp_path / "big.png")
    assert big.shape == (24, 24) and big.dtype.kind == "u" and big.max() > 0
    np.save(tmp_path / "hu.npy", (x - 1000).astype(np.int16))
    np.save(tmp_path / "f.npy", x.astype(np.float32))
    for name, needle in (("hu.npy", "negative"), ("f.npy", "float32")):
        result = runner.invoke(app, ["upscale", str(tmp_path / name), "--checkpoint", ckpt, "--out",
                                     str(tmp_path / "no.png")])
        _one_red_line(result)
        assert needle in result.output and not (tmp_path / "no.png").exists()

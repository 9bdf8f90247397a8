"""``mlimaging explain`` and ``mlimaging dream``: maps written for good input, one red line for bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import load_dataset, write_image
from mlimaging.interpretability import saliency
from mlimaging.segmentation.dense import build_segmenter

runner = CliRunner()


def _one_red_line(result, *needles):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """A LeNet trained one epoch on scikit-learn's digits (8 x 8) and two test digits as PNG."""
    root = tmp_path_factory.mktemp("explain")
    result = runner.invoke(app, ["train", "classifier", "--dataset", "digits", "--model", "lenet", "--epochs", "1",
                                 "--batch-size", "64", "--out", str(root / "run")])
    assert result.exit_code == 0, result.output
    test = load_dataset("digits", split="test")
    paths = []
    for i in range(2):
        x, _ = test[i]
        path = root / f"digit{i}.png"
        write_image(path, (255 * x[0].numpy()).round().astype(np.uint8))
        paths.append(path)
    return root / "run" / "model.pt", paths


def _explain(ckpt, images, out, *extra):
    return runner.invoke(app, ["explain", "--checkpoint", str(ckpt), *map(str, images), "--out", str(out), *extra])


def test_explain_writes_overlays_and_raw_maps(lenet, tmp_path):
    ckpt, images = lenet
    out = tmp_path / "maps"
    result = _explain(ckpt, images, out, "--method", "saliency,grad_cam,occlusion,guided_backprop")
    assert result.exit_code == 0, result.output
    assert result.output.count("predicted") == 2  # the predicted class of each image is printed
    for i in range(2):
        for m in ("saliency", "grad_cam", "occlusion", "guided_backprop"):
            raw = np.load(out / f"digit{i}_{m}.npy")
            assert raw.shape == (8, 8) and np.isfinite(raw).all()  # the classifier's input size
            png = out / f"digit{i}_{m}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the saliency map is the library's on the prepared image, for the printed class
    from mlimaging.cli.classify import _load_classifier
    from mlimaging.data import read_image
    from mlimaging.data.preprocessing import prepare_image

    model, meta = _load_classifier(ckpt)
    x = prepare_image(read_image(images[0])[0], channels=1, size=(8, 8))[None]
    pred = int(model(x).argmax(1))
    np.testing.assert_allclose(np.load(out / "digit0_saliency.npy"), saliency(model, x, pred)[0, 0].numpy(),
                               atol=1e-6)
    assert not (np.load(out / "digit0_grad_cam.npy") < 0).any()  # Grad-CAM keeps positive evidence


def test_explain_target_and_no_overwrite_without_force(lenet, tmp_path):
    ckpt, images = lenet
    out = tmp_path / "maps"
    assert _explain(ckpt, images[:1], out, "--method", "saliency", "--target", "3").exit_code == 0
    first = np.load(out / "digit0_saliency.npy")
    _one_red_line(_explain(ckpt, images[:1], out, "--method", "saliency"), "already exists", "--force")
    result = _explain(ckpt, images[:1], out, "--method", "saliency", "--target", "7", "--force")
    assert result.exit_code == 0 and "explaining class 7" in result.output
    assert not np.allclose(first, np.load(out / "digit0_saliency.npy"))


@pytest.mark.parametrize(("extra", "needles"), [
    (["--method", "saliency,magic"], ["unknown method", "magic", "integrated_gradients"]),
    (["--method", "grad_cam", "--layer", "conv9"], ["conv9", "valid layers", "conv1", "fc3"]),
    (["--method", "saliency", "--target", "10"], ["--target", "0..9"]),
    (["--method", "occlusion", "--window", "0"], ["--window"]),
])
def test_explain_bad_options_are_one_red_line(lenet, tmp_path, extra, needles):
    ckpt, images = lenet
    _one_red_line(_explain(ckpt, images[:1], tmp_path / "m", *extra), *needles)
    assert not (tmp_path / "m").exists()


def test_explain_missing_files_are_one_red_line(lenet, tmp_path):
    ckpt, images = lenet
    _one_red_line(_explain(ckpt, [tmp_path / "nope.png"], tmp_path / "m"), "nope.png")
    _one_red_line(_explain(tmp_path / "nope.pt", images[:1], tmp_path / "m"), "nope.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    _one_red_line(_explain(junk, images[:1], tmp_path / "m"), "junk.pt")


def test_explain_volume_keeps_the_geometry(tmp_path):
    """A 3D segmenter explains a region of a NIfTI volume; the maps carry the scan's affine."""
    net = build_segmenter("unet", num_classes=3, spatial_dims=3, channels=4, depth=2, seed=0)
    meta = {"model": "unet", "model_kwargs": {"channels": 4, "depth": 2}, "num_classes": 3, "in_channels": 1,
            "spatial_dims": 3, "normalisation": "zscore", "roi_size": [16, 16, 16]}
    ckpt = tmp_path / "seg.pt"
    torch.save({"model": net.state_dict(), "segmenter": meta}, ckpt)
    volume = np.random.default_rng(0).normal(size=(12, 14, 10)).astype(np.float32)  # not a multiple of 4: padded
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 7.0)
    scan = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), scan)
    out = tmp_path / "maps"
    result = _explain(ckpt, [scan], out, "--method", "saliency,occlusion", "--window", "4")
    assert result.exit_code == 0, result.output
    assert "explaining class" in result.output
    for m in ("saliency", "occlusion"):
        img = nib.load(out / f"scan_{m}.nii.gz")
        assert img.shape == volume.shape and np.allclose(img.affine, affine)
        assert np.isfinite(img.get_fdata()).all() and np.abs(img.get_fdata()).max() > 0
        assert (out / f"scan_{m}.png").is_file()
    _one_red_line(_explain(ckpt, [scan], tmp_path / "m2", "--method", "saliency", "--target", "3"), "0..2")


def test_dream_writes_an_image_and_checks_the_layer(lenet, tmp_path):
    ckpt, _ = lenet
    image = tmp_path / "photo.png"
    write_image(image, (np.add.outer(np.arange(40), np.arange(60)) * 2).astype(np.uint8))
    out = tmp_path / "dream.png"
    result = runner.invoke(app, ["dream", "--checkpoint", str(ckpt), str(image), "--layer", "conv2", "--out", str(out),
                                 "--size", "60", "--octaves", "1", "--steps", "2"])
    assert result.exit_code == 0, result.output
    from mlimaging.data import read_image

    dreamt = read_image(out)[0]
    assert dreamt.shape == (40, 60) and dreamt.dtype == np.uint8
    base = np.add.outer(np.arange(40), np.arange(60)) * 2
    assert np.abs(dreamt.astype(int) - base).mean() > 0.5  # the dream changed the image
    result = runner.invoke(app, ["dream", "--checkpoint", str(ckpt), str(image), "--layer", "conv7", "--out",
                                 str(tmp_path / "d2.png")])
    _one_red_line(result, "conv7", "valid layers", "conv2")
    _one_red_line(runner.invoke(app, ["dream", "--checkpoint", str(ckpt), str(image), "--layer", "conv2", "--out",
                                      str(out)]), "already exists")
    _one_red_line(runner.invoke(app, ["dream", "--checkpoint", str(ckpt), str(tmp_path / "none.png"), "--layer",
                                      "conv2", "--out", str(tmp_path / "d3.png")]), "none.png")

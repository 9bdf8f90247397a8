"""``mlimaging segment ...``, ``train segmenter`` and ``predict-seg`` on files the tests write."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import make_phantom, read_image, write_image
from mlimaging.segmentation import multi_otsu_thresholds, otsu_threshold, region_growing

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    for f in fragments:
        assert f in result.output


@pytest.fixture
def nifti2d(tmp_path):
    image, labels = make_phantom((48, 40), seed=1, noise=0.02)
    path = tmp_path / "img.nii.gz"
    write_image(path, image, spacing=(0.5, 0.75))
    return path, image, labels


@pytest.fixture
def png2d(tmp_path):
    image, _ = make_phantom((40, 32), seed=4, noise=0.02)
    array = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    path = tmp_path / "img.png"
    write_image(path, array)
    return path, array


def test_threshold_on_nifti_keeps_the_spacing(nifti2d, tmp_path):
    path, image, _ = nifti2d
    out = tmp_path / "t.nii.gz"
    result = invoke("segment", "threshold", path, "--lower", 0.5, "--upper", 0.85, "--out", out)
    assert result.exit_code == 0, result.output
    mask, spacing = read_image(out)
    assert spacing == pytest.approx((0.5, 0.75))
    assert np.array_equal(mask, ((image >= np.float32(0.5)) & (image <= np.float32(0.85))).astype(np.uint8))
    assert f"{int(mask.sum())} of {mask.size} voxels" in result.output


def test_otsu_on_png_two_and_more_classes(png2d, tmp_path):
    path, array = png2d
    result = invoke("segment", "otsu", path, "--out", tmp_path / "o.png")
    assert result.exit_code == 0, result.output
    mask, spacing = read_image(tmp_path / "o.png")
    assert spacing == (1.0, 1.0) and mask.dtype == np.uint8
    assert np.array_equal(mask, (array > otsu_threshold(array)).astype(np.uint8))
    result = invoke("segment", "otsu", path, "--classes", 4, "--out", tmp_path / "o4.png")
    assert result.exit_code == 0, result.output
    labels, _ = read_image(tmp_path / "o4.png")
    expected = np.digitize(array, multi_otsu_thresholds(array, 4), right=True)  # ties go below
    assert np.array_equal(labels, expected) and set(np.unique(labels)) == {0, 1, 2, 3}


def test_region_grow_3d_nifti_with_two_seeds(tmp_path):
    image, labels = make_phantom((24, 24, 20), seed=0)
    path = tmp_path / "vol.nii.gz"
    write_image(path, image, spacing=(0.8, 0.8, 2.5))
    organ = tuple(int(v) for v in np.argwhere(labels == 2)[0])
    lesion = tuple(int(v) for v in np.argwhere(labels == 3)[0])
    out = tmp_path / "rg.nii.gz"
    result = invoke("segment", "region-grow", path, "--seed-point", ",".join(map(str, organ)),
                    "--seed-point", ",".join(map(str, lesion)), "--lower", 0.6, "--upper", 1.1, "--out", out)
    assert result.exit_code == 0, result.output
    mask, spacing = read_image(out)
    assert spacing == pytest.approx((0.8, 0.8, 2.5))
    assert np.array_equal(mask.astype(bool), (labels == 2) | (labels == 3))  # clean phantom: exactly both organs
    assert np.array_equal(mask.astype(bool), region_growing(image, [organ, lesion], lower=0.6, upper=1.1))


def test_no_overwrite_without_force(nifti2d, tmp_path):
    path, image, _ = nifti2d
    out = tmp_path / "t.nii.gz"
    out.write_text("keep me")
    assert_user_error(invoke("segment", "threshold", path, "--lower", 0.5, "--out", out), "already exists", "--force")
    assert out.read_text() == "keep me"
    result = invoke("segment", "threshold", path, "--lower", 0.5, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_image(out)[0], (image >= np.float32(0.5)).astype(np.uint8))


@pytest.mark.parametrize("args, message", [
    (["region-grow", "{img}", "--seed-point", "100,5", "--lower", "0", "--upper", "1"], "outside"),
    (["region-grow", "{img}", "--seed-point", "1,2,3", "--lower", "0", "--upper", "1"], "3 coordinates"),
    (["region-grow", "{img}", "--seed-point", "a,b", "--lower", "0", "--upper", "1"], "--seed-point"),
    (["region-grow", "{img}", "--seed-point", "0,0", "--lower", "0.5", "--upper", "1"], "outside [lower, upper]"),
    (["threshold", "{img}", "--lower", "2", "--upper", "1"], "lower must be <= upper"),
    (["threshold", "{missing}", "--lower", "0"], "missing.nii.gz"),
    (["otsu", "{img}", "--out", "{tmp}/mask.txt"], "--out"),
    (["otsu", "{rgb}"], "grayscale"),
])
def test_bad_input_is_one_red_line_and_exit_2(nifti2d, tmp_path, args, message):
    rgb = tmp_path / "rgb.png"
    write_image(rgb, np.zeros((8, 8, 3), np.uint8))
    subs = {"img": nifti2d[0], "missing": tmp_path / "missing.nii.gz", "tmp": tmp_path, "rgb": rgb}
    args = [a.format(**subs) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "m.nii.gz")]
    result = invoke("segment", *args)
    assert_user_error(result, message)
    assert len([ln for ln in result.output.splitlines() if ln.startswith("error:")]) == 1
    assert not (tmp_path / "m.nii.gz").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny U-Net trained for one epoch on 2D phantoms."""
    out = tmp_path_factory.mktemp("train") / "unet"
    result = invoke("train", "segmenter", "--dataset", "phantoms", "--model", "unet", "--epochs", 1, "--n-train", 4,
                    "--size", 32, "--channels", 4, "--depth", 2, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_train_segmenter_writes_the_run_folder_of_train_classifier(trained):
    ckpt = torch.load(trained / "model.pt", weights_only=True)
    meta = ckpt["segmenter"]
    assert meta["model"] == "unet" and meta["model_kwargs"] == {"channels": 4, "depth": 2}
    assert meta["normalisation"] == "zscore" and meta["roi_size"] == [32, 32] and meta["num_classes"] == 4
    config = json.loads((trained / "config.json").read_text())
    assert config["config"]["meta"] == meta and config["status"] == "done"
    assert config["command"].startswith("mlimaging train segmenter --dataset phantoms --model unet")
    assert (trained / "checkpoints" / "last.pt").exists() and (trained / "report.html").exists()
    assert {"learning-curves.png", "validation-example.png"} <= {p.name for p in (trained / "figures").iterdir()}
    history = json.loads((trained / "metrics.json").read_text())["history"]
    assert [e["epoch"] for e in history] == [1]
    assert 0.0 <= history[0]["val_dice"] <= 1.0  # the validation Dice of every epoch
    assert ckpt["epoch"] == 1 and ckpt["val_dice"] == history[0]["val_dice"]


def test_predict_seg_slides_over_a_larger_image_and_keeps_spacing(trained, tmp_path):
    from mlimaging.cli.segment import _load_segmenter
    from mlimaging.segmentation.pipeline import predict_labels

    image, _ = make_phantom((48, 40), seed=7, noise=0.05)
    path = tmp_path / "big.nii.gz"
    write_image(path, image * 100 + 20, spacing=(0.6, 0.9))  # another intensity scale: z-scoring removes it
    out = tmp_path / "pred.nii.gz"
    result = invoke("predict-seg", "--checkpoint", trained / "model.pt", path, "--out", out)
    assert result.exit_code == 0, result.output
    labels, spacing = read_image(out)
    assert labels.shape == (48, 40) and spacing == pytest.approx((0.6, 0.9))
    net, meta = _load_segmenter(trained / "model.pt")
    expected = predict_labels(net, read_image(path)[0], roi_size=meta["roi_size"])
    assert np.array_equal(labels, expected) and labels.max() < 4
    unscaled = predict_labels(net, image, roi_size=meta["roi_size"])
    assert np.mean(unscaled == labels) > 0.99
    # The engine's checkpoints work too: their settings come from the run folder's config.json.
    result = invoke("predict-seg", "--checkpoint", trained / "checkpoints" / "last.pt", path, "--out", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_image(tmp_path / "p.png")[0], expected)


def test_resume_continues_and_existing_out_needs_resume_or_force(trained, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(trained, out)
    args = ["train", "segmenter", "--dataset", "phantoms", "--model", "unet", "--epochs", 2, "--out", out]
    assert_user_error(invoke(*args), "already exists", "--resume")
    result = invoke(*args, "--resume")
    assert result.exit_code == 0, result.output
    assert "resumed from epoch 1" in result.output
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [e["epoch"] for e in history] == [1, 2] and all("val_dice" in e for e in history)
    assert json.loads((out / "config.json").read_text())["status"] == "done"
    assert_user_error(invoke("train", "segmenter", "--dataset", "phantoms", "--model", "segnet", "--epochs", 3,
                             "--out", out, "--resume"), "--model segnet (the run used unet)")


def test_train_segmenter_3d_phantoms(trained3d, tmp_path):
    vol, _ = make_phantom((20, 18, 16), seed=1)
    write_image(tmp_path / "v.nii.gz", vol, spacing=(1.0, 1.0, 3.0))
    result = invoke("predict-seg", "--checkpoint", trained3d / "model.pt", tmp_path / "v.nii.gz",
                    "--out", tmp_path / "p.nii.gz")
    assert result.exit_code == 0, result.output
    labels, spacing = read_image(tmp_path / "p.nii.gz")
    assert labels.shape == (20, 18, 16) and spacing == pytest.approx((1.0, 1.0, 3.0))


def test_train_segmenter_on_a_folder(tmp_path):
    for i in range(4):
        image, labels = make_phantom((32, 32), seed=i, noise=0.02, n_structures=2)
        write_image(tmp_path / "data" / "images" / f"c{i}.png", (np.clip(image, 0, 1) * 255).astype(np.uint8))
        write_image(tmp_path / "data" / "masks" / f"c{i}.png", labels.astype(np.uint8))
    result = invoke("train", "segmenter", "--dataset", tmp_path / "data", "--model", "fcn", "--epochs", 1,
                    "--roi-size", 24, "--out", tmp_path / "f")
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "f" / "config.json").read_text())["config"]["meta"]
    assert meta["num_classes"] == 3 and meta["roi_size"] == [24, 24] and meta["dataset"] == str(tmp_path / "data")


def test_train_and_predict_errors(trained, tmp_path, nifti2d):
    base = ["train", "segmenter", "--dataset", "phantoms", "--epochs", 1, "--out", tmp_path / "x"]
    assert_user_error(invoke(*base, "--model", "patch_cnn"), "--model must be one of")
    assert_user_error(invoke(*base, "--spatial-dims", 4), "--spatial-dims")
    assert_user_error(invoke(*base, "--roi-size", 30), "divisible by 2^depth")
    assert_user_error(invoke(*base, "--model", "fcn", "--depth", 2), "--depth applies")
    assert_user_error(invoke("train", "segmenter", "--dataset", tmp_path / "nope", "--out", tmp_path / "y"), "nope")
    assert_user_error(invoke(*base[:-2], "--out", tmp_path / "z", "--resume"), "does not exist", "no run to resume")
    (tmp_path / "empty").mkdir()
    assert_user_error(invoke(*base[:-2], "--out", tmp_path / "empty", "--resume"), "no checkpoints/last.pt")
    assert not (tmp_path / "z").exists()
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    pred = ["predict-seg", nifti2d[0], "--out", tmp_path / "p.nii.gz"]
    assert_user_error(invoke(*pred, "--checkpoint", foreign), "not a segmenter checkpoint")
    assert_user_error(invoke(*pred, "--checkpoint", tmp_path / "missing.pt"), "missing.pt")
    vol = tmp_path / "vol.nii.gz"
    write_image(vol, np.zeros((16, 16, 16), np.float32))
    assert_user_error(invoke("predict-seg", vol, "--checkpoint", trained / "model.pt", "--out", tmp_path / "q.nii.gz"),
                      "2D image")
    assert_user_error(invoke(*pred, "--checkpoint", trained / "model.pt", "--overlap", 1.5), "--overlap")


@pytest.fixture
def oblique_las(tmp_path):
    """A 3D NIfTI as scanners write them: LAS (negative x), rotated 20 degrees about z, origin
    (32, -40, -16), anisotropic zooms, sform code 2 (aligned) and qform code 1 (scanner)."""
    import nibabel as nib
    image, _ = make_phantom((24, 20, 16), seed=2, noise=0.02)
    a = np.deg2rad(20.0)
    rotation = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-1.0, 1.0, 1.0]) @ np.diag([0.8, 1.1, 2.5])
    affine[:3, 3] = (32.0, -40.0, -16.0)
    img = nib.Nifti1Image(image.astype(np.float32), affine)
    img.set_sform(affine, code=2)
    img.set_qform(affine, code=1)
    path = tmp_path / "oblique.nii.gz"
    nib.save(img, path)
    return path, affine


@pytest.mark.parametrize("args", [
    ["segment", "threshold", "{img}", "--lower", "0.5"],
    ["segment", "otsu", "{img}", "--classes", "3"],
    ["segment", "region-grow", "{img}", "--seed-point", "12,10,8", "--lower", "0.2", "--upper", "1.2"],
    ["predict-seg", "{img}", "--checkpoint", "{model}"],
])
def test_masks_keep_the_full_geometry_of_an_oblique_las_nifti(oblique_las, tmp_path, args, request):
    import nibabel as nib
    path, affine = oblique_las
    model = request.getfixturevalue("trained3d") / "model.pt" if args[0] == "predict-seg" else None
    out = tmp_path / "mask.nii.gz"
    result = invoke(*[a.format(img=path, model=model) for a in args], "--out", out)
    assert result.exit_code == 0, result.output
    written, source = nib.load(out), nib.load(path)
    assert written.shape == source.shape
    assert np.allclose(written.affine, affine, atol=1e-5)
    assert np.allclose(written.get_sform(), source.get_sform(), atol=1e-5)
    assert np.allclose(written.get_qform(), source.get_qform(), atol=1e-5)
    assert int(written.header["sform_code"]) == 2 and int(written.header["qform_code"]) == 1
    assert np.asarray(written.dataobj).any()  # a mask, not an empty volume


@pytest.fixture(scope="module")
def trained3d(tmp_path_factory):
    """A tiny 3D U-Net trained for one epoch on 3D phantoms."""
    out = tmp_path_factory.mktemp("train3d") / "u3"
    result = invoke("train", "segmenter", "--dataset", "phantoms", "--spatial-dims", 3, "--epochs", 1, "--n-train", 2,
                    "--size", 16, "--channels", 2, "--depth", 1, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_a_3d_mask_to_png_fails_before_any_work(tmp_path, monkeypatch):
    import mlimaging.segmentation as seg

    write_image(tmp_path / "vol.nii.gz", np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    monkeypatch.setattr(seg, "otsu_threshold", lambda *a, **k: pytest.fail("computed before checking --out"))
    result = CliRunner().invoke(app, ["segment", "otsu", str(tmp_path / "vol.nii.gz"), "--out", str(tmp_path / "m.png")])
    assert result.exit_code == 2 and "3D result cannot be written as .png" in result.output
    assert not (tmp_path / "m.png").exists()

"""``mlimaging sam predict|auto`` on files nobody here wrote (scikit-image's pictures, nibabel's scan)
with checkpoints the tests make (``sam_tiny`` weights, and a segment-anything model's state dict)."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import read_image, write_image
from mlimaging.data.samples import sample_file
from mlimaging.models import create_model
from mlimaging.models.sam import load_sam_checkpoint
from mlimaging.models.sam.automatic import automatic_masks
from mlimaging.models.sam.predictor import SAMPredictor

runner = CliRunner()
skdata = pytest.importorskip("skimage.data")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_ok(result):
    assert result.exit_code == 0, result.output
    return result


def assert_user_error(result, *fragments):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())  # rich may wrap a long line
    for f in fragments:
        assert f in text, (f, result.output)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A sam_tiny checkpoint (its state dict, the official file layout) and the images."""
    root = tmp_path_factory.mktemp("sam-cli")
    torch.save(create_model("sam_tiny", seed=0).state_dict(), root / "sam_tiny.pth")
    write_image(root / "astronaut.png", skdata.astronaut())
    write_image(root / "camera.png", skdata.camera())
    return {"ckpt": root / "sam_tiny.pth", "rgb": root / "astronaut.png", "gray": root / "camera.png",
            "scan": sample_file("anatomical.nii")}


@pytest.fixture(scope="module")
def sam(files):
    return load_sam_checkpoint(files["ckpt"])


def predictor_for(sam, image, **kw):
    p = SAMPredictor(sam)
    p.set_image(image, **kw)
    return p


# ----------------------------------------------------------------------------- predict
def test_one_point_on_an_rgb_png_is_the_predictors_best_of_three(files, sam, tmp_path):
    out = tmp_path / "mask.png"
    result = assert_ok(invoke("sam", "predict", files["rgb"], "--checkpoint", files["ckpt"],
                              "--point", "260,140", "--out", out))
    image = read_image(files["rgb"])[0]
    masks, iou, _ = predictor_for(sam, image).predict(points=[[260.0, 140.0]], point_labels=[1], multimask=True)
    best = int(np.argmax(iou))
    mask, spacing = read_image(out)
    assert mask.shape == image.shape[:2] and mask.dtype == np.uint8 and spacing == (1.0, 1.0)
    assert np.array_equal(mask, masks[best].astype(np.uint8))
    assert f"predicted IoU {iou[best]:.3f}" in result.output and "mm^2" not in result.output


def test_box_and_background_point_on_a_gray_png(files, sam, tmp_path):
    out = tmp_path / "mask.npy"
    assert_ok(invoke("sam", "predict", files["gray"], "--checkpoint", files["ckpt"], "--box", "100,40,330,420",
                     "--point", "200,100,0", "--out", out))
    image = read_image(files["gray"])[0]
    masks, iou, _ = predictor_for(sam, image).predict(points=[[200.0, 100.0]], point_labels=[0],
                                                      boxes=[100.0, 40.0, 330.0, 420.0], multimask=False)
    assert len(iou) == 1 and np.array_equal(np.load(out), masks[0].astype(np.uint8))


def test_multimask_writes_the_three_candidates_beside_the_best(files, sam, tmp_path):
    out = tmp_path / "m.png"
    result = assert_ok(invoke("sam", "predict", files["gray"], "--checkpoint", files["ckpt"], "--box", "50,60,300,200",
                              "--multimask", "--out", out))
    image = read_image(files["gray"])[0]
    masks, iou, _ = predictor_for(sam, image).predict(boxes=[50.0, 60.0, 300.0, 200.0], multimask=True)
    for k in range(3):
        assert np.array_equal(read_image(tmp_path / f"m-{k + 1}.png")[0], masks[k].astype(np.uint8))
        assert f"predicted IoU {iou[k]:.3f} -> {tmp_path / f'm-{k + 1}.png'}" in " ".join(result.output.split())
    assert np.array_equal(read_image(out)[0], masks[int(np.argmax(iou))].astype(np.uint8))


def oblique_copy(path, tmp_path):
    """nibabel's scan re-saved with a rotated, shifted affine (25 degrees about x, then 10 about z)."""
    img = nib.load(str(path))
    a, b = np.deg2rad(25.0), np.deg2rad(10.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    affine = img.affine.copy()
    affine[:3, :3] = rz @ rx @ affine[:3, :3] @ np.diag([1.0, 1.5, 0.75])
    affine[:3, 3] += [7.0, -3.0, 11.0]
    out = tmp_path / "oblique.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(img.dataobj), affine), str(out))
    return out


@pytest.mark.parametrize(("oblique", "axis", "index"), [(False, 2, 12), (False, 0, 20), (True, 1, 7)])
def test_a_slice_of_a_scan_is_written_where_that_slice_lies(files, sam, tmp_path, oblique, axis, index):
    scan = oblique_copy(files["scan"], tmp_path) if oblique else files["scan"]
    out = tmp_path / "mask.nii.gz"
    result = assert_ok(invoke("sam", "predict", scan, "--checkpoint", files["ckpt"], "--slice", f"{axis}:{index}",
                              "--point", "15,10", "--window", "0,12000", "--out", out))
    volume = nib.load(str(scan))
    written = nib.load(str(out))
    plane = np.take(np.asanyarray(volume.dataobj), index, axis=axis)
    assert written.shape == plane.shape
    # Every pixel (i, j) of the mask sits, in the world, where voxel (i, j) of that slice sits.
    ij = np.array([[0, 0], [plane.shape[0] - 1, 0], [0, plane.shape[1] - 1], [5, 9]], dtype=float)
    voxels = np.insert(ij, axis, index, axis=1)
    np.testing.assert_allclose(nib.affines.apply_affine(written.affine, np.c_[ij, np.zeros(len(ij))]),
                               nib.affines.apply_affine(volume.affine, voxels), atol=1e-4)
    np.testing.assert_allclose(written.header.get_zooms()[:2], np.delete(volume.header.get_zooms(), axis), rtol=1e-6)
    masks, iou, _ = predictor_for(sam, plane, window=(0.0, 12000.0)).predict(points=[[15.0, 10.0]], multimask=True)
    assert np.array_equal(np.asanyarray(written.dataobj), masks[int(np.argmax(iou))].astype(np.uint8))
    assert f"slice {index} of axis {axis}" in result.output and "mm^2" in result.output


def test_a_dicom_ct_slice_in_hu_keeps_its_place_in_the_scanner(files, sam, tmp_path):
    dcm = sample_file("CT_small.dcm")  # pydicom's 128 x 128 CT slice, rescaled to HU
    out = tmp_path / "mask.nii.gz"
    result = assert_ok(invoke("sam", "predict", dcm, "--checkpoint", files["ckpt"], "--point", "64,70",
                              "--window", "-160,240", "--out", out))
    image, geometry = read_image(dcm, geometry=True)
    mask, written = read_image(out, geometry=True)
    assert written == geometry and geometry.world_ndim == 3  # origin, direction and spacing of the slice
    masks, iou, _ = predictor_for(sam, image, window=(-160.0, 240.0)).predict(points=[[64.0, 70.0]])
    assert np.array_equal(mask, masks[int(np.argmax(iou))].astype(np.uint8))
    n = int(mask.sum())
    assert f"{n * geometry.spacing[0] * geometry.spacing[1]:.6g} mm^2" in result.output


def test_a_segment_anything_checkpoint_gives_segment_anythings_mask(files, tmp_path):
    import importlib.util
    from pathlib import Path

    sa = pytest.importorskip("segment_anything")
    # the SAM tests' small random-weight reference (segment-anything's own modules), loaded by path
    spec = importlib.util.spec_from_file_location(
        "_sam_reference", Path(__file__).resolve().parents[1] / "models" / "sam" / "_sam_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ref = module.reference_sam(seed=3)
    ckpt = tmp_path / "sam_reference.pth"
    torch.save(ref.state_dict(), ckpt)
    out = tmp_path / "mask.png"
    assert_ok(invoke("sam", "predict", files["rgb"], "--checkpoint", ckpt, "--point", "300,200", "--out", out))
    predictor = sa.SamPredictor(ref)
    predictor.set_image(read_image(files["rgb"])[0])
    logits, iou, _ = predictor.predict(point_coords=np.array([[300.0, 200.0]]), point_labels=np.array([1]),
                                       multimask_output=True, return_logits=True)
    expected = logits[int(np.argmax(iou))] > 0.0
    mask = read_image(out)[0].astype(bool)
    differ = mask != expected
    assert np.abs(logits[int(np.argmax(iou))][differ]).max(initial=0.0) < 1e-3  # only ties at the threshold
    assert mask.sum() > 0


# ----------------------------------------------------------------------------- auto
def test_auto_writes_one_file_per_object_a_label_map_and_the_summary(files, sam, tmp_path):
    out = tmp_path / "masks"
    options = ("--points-per-side", 4, "--pred-iou-thresh", 0, "--stability-thresh", 0, "--box-nms-thresh", 1.0)
    result = assert_ok(invoke("sam", "auto", files["gray"], "--checkpoint", files["ckpt"], "--out", out, *options))
    image = read_image(files["gray"])[0]
    records = automatic_masks(sam, image, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                              box_nms_thresh=1.0)
    assert len(records) > 1
    summary = json.loads((out / "masks.json").read_text())
    with open(out / "masks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(summary["masks"]) == len(rows) == len(records)
    assert sorted(p.name for p in out.glob("mask_*.png")) == [r["file"] for r in rows]
    labels = read_image(out / "labels.png")[0]
    for k, (rec, row, entry) in enumerate(zip(records, rows, summary["masks"], strict=True), start=1):
        mask = read_image(out / f"mask_{k:03d}.png")[0].astype(bool)
        assert np.array_equal(mask, rec["segmentation"])
        assert int(row["area_pixels"]) == rec["area"] == entry["area_pixels"] == mask.sum()
        assert entry["bbox_xywh"] == pytest.approx(list(rec["bbox"]))
        assert float(row["predicted_iou"]) == pytest.approx(rec["predicted_iou"], abs=1e-6)
        assert entry["stability_score"] == pytest.approx(rec["stability_score"])
        assert row["area_mm2"] == "" and entry["area_mm2"] is None  # a PNG has no spacing
        assert np.all(mask[labels == k])  # a label is painted only inside its object
    covered = np.any([r["segmentation"] for r in records], axis=0)
    assert np.array_equal(labels > 0, covered)
    areas = np.array([r["area"] for r in records])
    # Where objects overlap, the pixel goes to the smallest of them.
    for k in np.unique(labels[labels > 0]):
        holders = [i for i, r in enumerate(records) if np.any(r["segmentation"][labels == k])]
        assert areas[k - 1] == min(areas[i] for i in holders if np.all(records[i]["segmentation"][labels == k]))
    assert f"{len(records)} object(s)" in result.output


def test_auto_on_a_slice_writes_nifti_with_the_slices_geometry_and_force_replaces(files, tmp_path):
    out = tmp_path / "masks"
    options = ("--pred-iou-thresh", 0, "--stability-thresh", 0, "--box-nms-thresh", 1.0)
    assert_ok(invoke("sam", "auto", files["scan"], "--checkpoint", files["ckpt"], "--slice", "1:20", "--out", out,
                     "--points-per-side", 3, *options))
    volume = nib.load(str(files["scan"]))
    n_first = len(json.loads((out / "masks.json").read_text())["masks"])
    assert n_first == len(list(out.glob("mask_*.nii.gz"))) > 0
    for path in [out / "labels.nii.gz", *out.glob("mask_*.nii.gz")]:
        written = nib.load(str(path))
        assert written.shape == (33, 25)
        np.testing.assert_allclose(nib.affines.apply_affine(written.affine, [[4, 6, 0]]),
                                   nib.affines.apply_affine(volume.affine, [[4, 20, 6]]), atol=1e-4)
    entry = json.loads((out / "masks.json").read_text())["masks"][0]
    assert entry["area_mm2"] == pytest.approx(4.0 * entry["area_pixels"])  # 2 mm x 2 mm pixels
    assert_user_error(invoke("sam", "auto", files["scan"], "--checkpoint", files["ckpt"], "--slice", "1:20",
                             "--out", out, "--points-per-side", 1, *options), "--force")
    assert_ok(invoke("sam", "auto", files["scan"], "--checkpoint", files["ckpt"], "--slice", "1:20", "--out", out,
                     "--points-per-side", 1, "--ext", "npz", "--force", *options))
    n = len(json.loads((out / "masks.json").read_text())["masks"])
    names = sorted(p.name for p in out.iterdir())  # the old masks are gone
    assert names == ["labels.npz", *(f"mask_{k:03d}.npz" for k in range(1, n + 1)), "masks.csv", "masks.json"]
    assert n < n_first and read_image(out / "labels.npz", geometry=True)[1].spacing == (2.0, 2.0)


# ----------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def not_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("not-ckpt")
    (root / "notes.pth").write_text("not a checkpoint")
    torch.save(create_model("lenet").state_dict(), root / "lenet.pth")
    return root


PREDICT_ERRORS = [
    (("rgb", "--point", "512,10"), ("--point", "outside the image", "[0, 512)")),
    (("rgb", "--point", "10,-1"), ("--point", "outside the image")),
    (("rgb", "--point", "10,10,2"), ("--point", "LABEL must be 1", "or 0")),
    (("rgb", "--point", "10"), ("--point", "2 or 3 comma-separated numbers")),
    (("rgb", "--box", "300,10,200,100"), ("--box", "X1 > X0")),
    (("rgb", "--box", "10,300,200,100"), ("--box", "Y1 > Y0")),
    (("rgb", "--box", "10,10,600,100"), ("--box", "outside the image")),
    (("rgb",), ("give a prompt", "--point", "--box")),
    (("rgb", "--point", "5,5", "--window", "0,255"), ("--window", "RGB")),
    (("gray", "--point", "5,5", "--window", "9,3"), ("--window", "LO < HI")),
    (("gray", "--point", "5,5", "--slice", "2:3"), ("--slice", "2-D image")),
    (("scan", "--point", "5,5"), ("--slice AXIS:INDEX", "3-D volume")),
    (("scan", "--point", "5,5", "--slice", "2:25"), ("--slice", "INDEX must be below 25")),
    (("scan", "--point", "5,5", "--slice", "3:1"), ("--slice", "AXIS must be 0, 1 or 2")),
    (("scan", "--point", "5,5", "--slice", "x:1"), ("--slice must be AXIS:INDEX",)),
    (("gray", "--point", "5,5", "--variant", "vit_b"), ("--checkpoint",)),
    (("gray", "--point", "5,5", "--variant", "vit_q"), ("--variant must be one of", "vit_b", "'vit_q'")),
    (("gray", "--point", "5,5", "CKPT", "notes.pth"), ("--checkpoint", "notes.pth")),
    (("gray", "--point", "5,5", "CKPT", "lenet.pth"), ("--checkpoint", "lenet.pth")),
    (("gray", "--point", "5,5", "CKPT", "missing.pth"), ("--checkpoint", "missing.pth")),
]


@pytest.mark.parametrize(("args", "fragments"), PREDICT_ERRORS, ids=[" ".join(a) for a, _ in PREDICT_ERRORS])
def test_predict_bad_input_is_one_red_line(files, not_checkpoints, tmp_path, args, fragments):
    image, *rest = args
    ckpt = files["ckpt"]
    if "CKPT" in rest:
        k = rest.index("CKPT")
        ckpt = not_checkpoints / rest[k + 1]
        rest = rest[:k] + rest[k + 2:]
    out = tmp_path / "mask.png"
    assert_user_error(invoke("sam", "predict", files[image], "--checkpoint", ckpt, *rest, "--out", out), *fragments)
    assert not out.exists()


def test_an_image_of_one_row_is_refused(files, tmp_path):
    np.save(tmp_path / "line.npy", np.arange(10, dtype=np.float32)[None])
    assert_user_error(invoke("sam", "predict", tmp_path / "line.npy", "--checkpoint", files["ckpt"], "--point", "1,0",
                             "--out", tmp_path / "m.png"), "IMAGE", "too small")


def test_another_variants_checkpoint_names_what_was_expected(files, tmp_path):
    result = invoke("sam", "predict", files["gray"], "--checkpoint", files["ckpt"], "--variant", "vit_b",
                    "--point", "5,5", "--out", tmp_path / "m.png")
    assert_user_error(result, "--checkpoint", "vit_b")
    assert "768" in result.output and "64" in result.output  # the expected and the found encoder width


def test_nothing_is_overwritten_without_force(files, tmp_path):
    out = tmp_path / "mask.png"
    out.write_bytes(b"keep me")
    assert_user_error(invoke("sam", "predict", files["gray"], "--checkpoint", files["ckpt"], "--point", "5,5",
                             "--out", out), "already exists", "--force")
    assert out.read_bytes() == b"keep me"
    candidate = tmp_path / "m-2.png"
    candidate.write_bytes(b"keep me too")
    assert_user_error(invoke("sam", "predict", files["gray"], "--checkpoint", files["ckpt"], "--point", "5,5",
                             "--multimask", "--out", tmp_path / "m.png"), "m-2.png", "--force")
    assert candidate.read_bytes() == b"keep me too" and not (tmp_path / "m.png").exists()
    assert_ok(invoke("sam", "predict", files["gray"], "--checkpoint", files["ckpt"], "--point", "5,5",
                     "--out", out, "--force"))
    assert read_image(out)[0].shape == (512, 512)
    assert_user_error(invoke("sam", "predict", files["gray"], "--checkpoint", files["ckpt"], "--point", "5,5",
                             "--out", tmp_path / "mask.txt"), "--out", ".nii.gz")


AUTO_ERRORS = [
    (("--pred-iou-thresh", "1.5"), ("--pred-iou-thresh", "[0, 1]")),
    (("--stability-thresh", "-0.1"), ("--stability-thresh", "[0, 1]")),
    (("--ext", "jpg"), ("--ext must be one of",)),
    (("--slice", "0:1"), ("--slice", "2-D image")),
]


@pytest.mark.parametrize(("args", "fragments"), AUTO_ERRORS, ids=[" ".join(a) for a, _ in AUTO_ERRORS])
def test_auto_bad_input_is_one_red_line(files, tmp_path, args, fragments):
    out = tmp_path / "masks"
    assert_user_error(invoke("sam", "auto", files["gray"], "--checkpoint", files["ckpt"], "--out", out, *args),
                      *fragments)
    assert not out.exists()


def test_auto_never_deletes_what_it_did_not_write(files, tmp_path):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert_user_error(invoke("sam", "auto", files["gray"], "--checkpoint", files["ckpt"], "--out", out,
                             "--force"), "notes.txt", "did not write")
    assert (out / "notes.txt").read_text() == "mine"
    assert_user_error(invoke("sam", "auto", files["gray"], "--checkpoint", files["ckpt"], "--out",
                             out / "notes.txt"), "--out", "is a file")
    assert_user_error(invoke("sam", "auto", files["scan"], "--checkpoint", files["ckpt"], "--out",
                             tmp_path / "other"), "--slice")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    assert_user_error(invoke("sam", "auto", files["gray"], "--checkpoint", tmp_path / "notes.pth", "--out",
                             tmp_path / "other"), "--checkpoint", "notes.pth")
    assert not (tmp_path / "other").exists()  # nothing is created for a run that could not start


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(x=st.floats(-1e4, 1e4, allow_nan=False), y=st.floats(-1e4, 1e4, allow_nan=False))
def test_any_point_is_inside_or_one_red_line(files, tmp_path, x, y):
    # camera.png is 512 x 512: a point outside [0, 512) x [0, 512) is refused before the model is loaded.
    out = tmp_path / f"p{x}_{y}.png"
    if 0 <= x < 512 and 0 <= y < 512:
        return  # inside: computed by the tests above
    assert_user_error(invoke("sam", "predict", files["gray"], "--checkpoint", "no-such-file.pth",
                             "--point", f"{x!r},{y!r}", "--out", out), "--point", "outside the image")


def test_sam_help_imports_neither_torch_nor_numpy(tmp_path):
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from mlimaging.cli import app; r = CliRunner(); "
            "assert r.invoke(app, ['sam', '--help']).exit_code == 0; "
            "assert r.invoke(app, ['sam', 'predict', '--help']).exit_code == 0; "
            "assert r.invoke(app, ['sam', 'auto', '--help']).exit_code == 0; "
            "print(sorted(m for m in ('torch', 'numpy', 'nibabel', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_an_empty_answer_comes_with_a_warning(files, tmp_path):
    """A mask of no pixel, or no object passing the filters, is never written silently."""
    ckpt = tmp_path / "empty.pth"
    state = create_model("sam_tiny", seed=0).state_dict()
    # zero the last upscaling layer: the upscaled embedding is GELU(0) = 0, so every mask logit is 0,
    # not above SAM's threshold 0
    for k in state:
        if k.startswith("mask_decoder.output_upscaling.3."):
            state[k] = torch.zeros_like(state[k])
    torch.save(state, ckpt)
    with torch.no_grad():
        logits, _ = load_sam_checkpoint(ckpt)(torch.zeros(1, 3, 128, 128), boxes=torch.tensor([[10.0, 10, 90, 90]]))
    assert torch.all(logits <= 0)  # the checkpoint really answers nothing
    result = assert_ok(invoke("sam", "predict", files["gray"], "--checkpoint", ckpt, "--box", "100,100,300,300",
                              "--out", tmp_path / "m.png"))
    assert "mask of 0 pixels" in result.output and "warning: the mask is empty" in result.output
    result = assert_ok(invoke("sam", "auto", files["gray"], "--checkpoint", ckpt, "--points-per-side", 2,
                              "--out", tmp_path / "auto"))
    assert "0 object(s)" in result.output and "warning: no mask passed the filters" in result.output

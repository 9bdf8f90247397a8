"""CLI: ``mlimaging register FIXED MOVING --out WARPED [--labels ... --labels-out ...]``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mlimaging.cli import app
from mlimaging.data import make_phantom, read_image, write_image
from mlimaging.registration import (
    corner_points,
    invert,
    rigid_matrix,
    target_registration_error,
    warp,
)

runner = CliRunner()
SPACING = (1.5, 1.0, 2.0)


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], terminal_width=200)


def assert_user_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert "error:" in result.output
    for word in words:
        assert word in result.output


@pytest.fixture
def pair(tmp_path):
    """A 3D phantom pair with anisotropic spacing and a known rigid transform, as NIfTI files."""
    image, labels = make_phantom((24, 28, 16), seed=0, partial_volume=1.0)
    image, labels = np.pad(image, 4).astype(np.float32), np.pad(labels, 4)
    true = rigid_matrix([0.06, -0.05, 0.08, 2.0, -1.5, 2.5], spatial_dims=3)
    moving = warp(image, invert(true), spacing=SPACING)
    moving_labels = warp(labels, invert(true), mode="nearest", spacing=SPACING)
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("fixed", "moving", "labels")}
    write_image(paths["fixed"], image, spacing=SPACING)
    write_image(paths["moving"], moving, spacing=SPACING)
    write_image(paths["labels"], moving_labels.astype(np.uint8), spacing=SPACING)
    return paths, true, image, labels


def test_register_writes_warped_labels_and_transform(pair, tmp_path):
    paths, true, image, labels = pair
    out, lab_out, t_out = tmp_path / "w.nii.gz", tmp_path / "l.nii.gz", tmp_path / "t.json"
    result = invoke("register", paths["fixed"], paths["moving"], "--transform", "rigid", "--metric", "ssd",
                    "--out", out, "--labels", paths["labels"], "--labels-out", lab_out, "--save-transform", t_out)
    assert result.exit_code == 0, result.output
    assert "rigid registration (ssd)" in result.output and str(out) in result.output
    warped, spacing = read_image(out)
    assert warped.shape == image.shape and np.allclose(spacing, SPACING)
    inner = (slice(6, -6),) * 3
    assert np.abs(warped - image)[inner].mean() < 0.01
    warped_labels, lab_spacing = read_image(lab_out)
    assert np.allclose(lab_spacing, SPACING)
    assert (warped_labels[inner] == labels[inner]).mean() > 0.97
    saved = json.loads(t_out.read_text())
    matrix = torch.tensor(saved["matrix"], dtype=torch.float64)
    pts = corner_points(image.shape, spacing=SPACING)
    assert float(target_registration_error(matrix, true, pts).mean()) < 1.0  # mm; voxels of 1 to 2 mm
    assert saved["fixed_spacing"] == list(SPACING) and "centre of the image" in saved["convention"]


def test_nothing_is_overwritten_without_force(pair, tmp_path):
    paths, *_ = pair
    out = tmp_path / "w.nii.gz"
    out.write_bytes(b"keep")
    result = invoke("register", paths["fixed"], paths["moving"], "--out", out, "--levels", "1", "--iterations", "2")
    assert_user_error(result, "already exists", "--force")
    assert out.read_bytes() == b"keep"
    result = invoke("register", paths["fixed"], paths["moving"], "--out", out, "--levels", "1", "--iterations", "2",
                    "--force")
    assert result.exit_code == 0, result.output
    assert read_image(out)[0].shape == read_image(paths["fixed"])[0].shape


def test_bad_input_is_one_red_line(pair, tmp_path):
    paths, *_ = pair
    out = tmp_path / "w.nii.gz"
    assert_user_error(invoke("register", tmp_path / "missing.nii.gz", paths["moving"], "--out", out), "missing")
    assert_user_error(invoke("register", paths["fixed"], paths["moving"], "--out", out, "--metric", "dice"), "metric")
    assert_user_error(invoke("register", paths["fixed"], paths["moving"], "--out", out, "--transform", "spline"),
                      "transform")
    assert_user_error(invoke("register", paths["fixed"], paths["moving"], "--out", out, "--labels", paths["labels"]),
                      "--labels-out")
    assert_user_error(invoke("register", paths["fixed"], paths["moving"], "--out", tmp_path / "w.txt"), "--out")
    flat = tmp_path / "flat.nii.gz"
    write_image(flat, np.zeros((8, 8, 8, 2), np.float32))
    assert_user_error(invoke("register", paths["fixed"], flat, "--out", out), "MOVING", "grayscale")
    small = tmp_path / "small.nii.gz"
    write_image(small, np.zeros((10, 10, 10), np.uint8))
    assert_user_error(invoke("register", paths["fixed"], paths["moving"], "--out", out,
                             "--labels", small, "--labels-out", tmp_path / "l.nii.gz"), "--labels", "shape")
    assert not out.exists()

"""``mlimaging restore``: simulated measurements and their reconstruction, the degraded baseline and the
PSNR/SSIM gain, ``--measured``, intensity round trips, NIfTI geometry (2D slice and 3D volume), and
one-red-line errors."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from typer.testing import CliRunner

import mlimaging.cli.restore  # noqa: F401  (registers `restore`)
from mlimaging.cli.app import app
from mlimaging.cli.restore import degraded_path, to_unit
from mlimaging.data.io import read_image as _read_image
from mlimaging.data.io import write_image
from mlimaging.data.samples import sample_file
from mlimaging.metrics import psnr

runner = CliRunner()


def read_image(path, geometry=False):
    return _read_image(path, geometry=True) if geometry else _read_image(path)[0]


def _restore(*args):
    return runner.invoke(app, ["--threads", "1", "restore", *map(str, args)])


def _ok(result):
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.output


def _one_red_line(result, needle=""):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len([ln for ln in result.output.splitlines() if ln.strip()]) == 1, result.output
    assert result.output.startswith("error:"), result.output
    assert needle in result.output, result.output


def _scores(output):
    """(degraded PSNR, restored PSNR, gain) from the printed table."""
    rows = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"(degraded|restored|gain)\b[^│]*│\s*([-+\d.inf]+)", output)
    }
    return rows["degraded"], rows["restored"], rows["gain"]


@pytest.fixture(scope="module")
def camera_png(tmp_path_factory):
    from skimage import data

    path = tmp_path_factory.mktemp("img") / "camera64.png"
    write_image(path, data.camera()[::8, ::8].copy())
    return path


@pytest.fixture(scope="module")
def blocks_png(tmp_path_factory):
    img = np.full((40, 40), 40, np.uint8)
    img[8:24, 10:30] = 200
    img[26:36, 4:16] = 120
    path = tmp_path_factory.mktemp("img") / "blocks.png"
    write_image(path, img)
    return path, img


@pytest.fixture(scope="module")
def scan():
    return sample_file("anatomical.nii")


@pytest.fixture(scope="module")
def small_scan(scan, tmp_path_factory):
    """Every other voxel of nibabel's anatomical.nii (17 x 21 x 13, 4 mm, LAS): nibabel updates the affine."""
    path = tmp_path_factory.mktemp("scan") / "small.nii.gz"
    nib.save(nib.load(scan).slicer[::2, ::2, ::2], path)
    return path


# ------------------------------------------------------------------------------ worked examples
def test_to_unit_worked_examples():
    unit, back = to_unit(np.array([[0, 51], [255, 102]], np.uint8))
    assert_allclose(unit, [[0.0, 0.2], [1.0, 0.4]], atol=1e-7)
    assert_array_equal(back(unit), [[0, 51], [255, 102]])
    assert back(np.array([-0.3, 1.7])).tolist() == [0, 255]  # clipped to the 8-bit range
    unit, back = to_unit(np.array([[-10, 30, 10]], np.int16))
    assert_allclose(unit, [[0.0, 1.0, 0.5]])
    assert back(np.array([0.25])).tolist() == [0.0] and back(np.array([0.25])).dtype == np.float32
    unit, back = to_unit(np.full((2, 2), 7.0))  # a constant image: no division by zero
    assert_allclose(unit, 0.0) and assert_allclose(back(unit), 7.0)


def test_degraded_path_keeps_double_extensions(tmp_path):
    assert degraded_path(tmp_path / "r.nii.gz") == tmp_path / "r_degraded.nii.gz"
    assert degraded_path(tmp_path / "r.png") == tmp_path / "r_degraded.png"
    assert degraded_path(tmp_path / "r") == tmp_path / "r_degraded"


def test_tv_deblurring_gains_over_the_blurred_image(blocks_png, tmp_path):
    path, img = blocks_png
    out = tmp_path / "r.png"
    output = _ok(
        _restore(
            path,
            "--operator",
            "blur",
            "--sigma",
            "1.5",
            "--noise",
            "0.01",
            "--solver",
            "tv",
            "--lam",
            "0.005",
            "--out",
            out,
        )
    )
    restored, _ = read_image(out, geometry=True)
    degraded, _ = read_image(tmp_path / "r_degraded.png", geometry=True)
    assert (
        restored.dtype == np.uint8 and restored.shape == img.shape and degraded.shape == img.shape
    )
    p_deg = psnr(degraded.astype(float), img.astype(float), data_range=255.0)
    p_res = psnr(restored.astype(float), img.astype(float), data_range=255.0)
    assert p_res > p_deg + 2.0
    printed = _scores(output)
    assert_allclose(printed[:2], (p_deg, p_res), atol=0.1)  # printed before 8-bit rounding
    assert_allclose(printed[2], printed[1] - printed[0], atol=0.011)
    assert "SSIM" in output


def test_noiseless_denoise_least_squares_returns_the_image(blocks_png, tmp_path):
    path, img = blocks_png
    _ok(
        _restore(
            path,
            "--operator",
            "denoise",
            "--noise",
            "0",
            "--solver",
            "ls",
            "--out",
            tmp_path / "r.png",
        )
    )
    assert_array_equal(read_image(tmp_path / "r.png"), img)
    assert_array_equal(read_image(tmp_path / "r_degraded.png"), img)


def test_fully_sampled_mri_is_unitary(blocks_png, tmp_path):
    path, img = blocks_png
    _ok(
        _restore(
            path,
            "--operator",
            "mri",
            "--acceleration",
            "1",
            "--center-fraction",
            "1",
            "--noise",
            "0",
            "--solver",
            "ls",
            "--out",
            tmp_path / "r.png",
        )
    )
    assert np.abs(read_image(tmp_path / "r.png").astype(int) - img).max() <= 1
    assert np.abs(read_image(tmp_path / "r_degraded.png").astype(int) - img).max() <= 1


def test_inpainting_mask_file_keeps_the_observed_pixels(blocks_png, tmp_path):
    path, img = blocks_png
    mask = (np.random.default_rng(0).random(img.shape) < 0.6).astype(np.uint8) * 255
    write_image(tmp_path / "mask.png", mask)
    _ok(
        _restore(
            path,
            "--operator",
            "inpaint",
            "--mask",
            tmp_path / "mask.png",
            "--noise",
            "0",
            "--solver",
            "ls",
            "--out",
            tmp_path / "r.png",
        )
    )
    degraded = read_image(tmp_path / "r_degraded.png")
    assert_array_equal(degraded[mask > 0], img[mask > 0])
    assert (degraded[mask == 0] == 0).all()
    out = tmp_path / "tv.png"
    output = _ok(
        _restore(
            path,
            "--operator",
            "inpaint",
            "--mask",
            tmp_path / "mask.png",
            "--solver",
            "tv",
            "--out",
            out,
        )
    )
    deg, res, _ = _scores(output)
    assert res > deg + 10  # the holes are filled


def test_seed_makes_runs_repeatable(camera_png, tmp_path):
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        _ok(
            _restore(
                camera_png,
                "--operator",
                "inpaint",
                "--keep",
                "0.5",
                "--solver",
                "ls",
                "--iterations",
                "2",
                "--noise",
                "0.01",
                "--seed",
                seed,
                "--out",
                tmp_path / f"{name}.png",
            )
        )
    a, b, c = (read_image(tmp_path / f"{n}_degraded.png") for n in "abc")
    assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs((a > 0).mean() - 0.5) < 0.1  # about --keep of the pixels observed


@pytest.mark.parametrize(
    "operator, extra",
    [
        ("downsample", ["--factor", "2"]),
        ("ct", ["--views", "30"]),
        ("mri", ["--acceleration", "4"]),
        ("motion", ["--length", "5"]),
    ],
)
def test_each_operator_restores_an_odd_sized_image_to_its_shape(operator, extra, tmp_path):
    from skimage import data

    img = (255 * data.shepp_logan_phantom()[::9, ::8][:43, :49]).astype(
        np.uint8
    )  # 43 x 49: odd, not square
    write_image(tmp_path / "phantom.png", img)
    out = tmp_path / "r.png"
    output = _ok(
        _restore(
            tmp_path / "phantom.png",
            "--operator",
            operator,
            *extra,
            "--solver",
            "tv",
            "--iterations",
            "100",
            "--out",
            out,
        )
    )
    assert (
        read_image(out).shape == img.shape
        and read_image(tmp_path / "r_degraded.png").shape == img.shape
    )
    assert _scores(output)[2] > 0, output


def test_wavelet_pads_to_its_levels(blocks_png, tmp_path):
    path, img = blocks_png  # 37 x 38: no multiple of 2**3, the levels need
    write_image(tmp_path / "odd.png", img[:37, :38])
    _ok(
        _restore(
            tmp_path / "odd.png",
            "--operator",
            "blur",
            "--sigma",
            "1",
            "--solver",
            "wavelet",
            "--iterations",
            "10",
            "--out",
            tmp_path / "r.png",
        )
    )
    assert read_image(tmp_path / "r.png").shape == (37, 38)


def test_float_npy_comes_back_in_its_units(tmp_path):
    x = np.linspace(100.0, 300.0, 24 * 20, dtype=np.float32).reshape(24, 20)
    np.save(tmp_path / "x.npy", x)
    _ok(
        _restore(
            tmp_path / "x.npy",
            "--operator",
            "denoise",
            "--noise",
            "0",
            "--solver",
            "ls",
            "--out",
            tmp_path / "r.npy",
        )
    )
    r = np.load(tmp_path / "r.npy")
    assert r.dtype == np.float32
    assert_allclose(r, x, rtol=1e-5)


# ------------------------------------------------------------------------------ learned solvers
class _Shrink(torch.nn.Module):
    """A stand-in for the trained DnCNN (single-channel 2D only, as it): v -> 0.9 v + 0.1 mean(v)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.9))
        self.shapes = []

    def forward(self, v, sigma):
        assert v.ndim == 4 and v.shape[1] == 1
        self.shapes.append(tuple(v.shape))
        return self.w * v + (1 - self.w) * v.mean()


def test_pnp_uses_the_default_denoiser_slice_by_slice(monkeypatch, small_scan, tmp_path):
    import mlimaging.inverse

    net = _Shrink()
    monkeypatch.setattr(mlimaging.inverse, "default_denoiser", lambda **kw: net)
    output = _ok(
        _restore(
            small_scan,
            "--operator",
            "blur",
            "--sigma",
            "0.7",
            "--solver",
            "pnp",
            "--iterations",
            "3",
            "--axis",
            "2",
            "--out",
            tmp_path / "r.nii.gz",
        )
    )
    assert "trains it" in output and "caches it" in output
    assert net.shapes and all(
        s == (13, 1, 17, 21) for s in net.shapes
    )  # the 13 slices across axis 2
    net.shapes.clear()
    _ok(
        _restore(
            small_scan,
            "--operator",
            "mri",
            "--solver",
            "pnp",
            "--iterations",
            "2",
            "--axis",
            "0",
            "--out",
            tmp_path / "m.nii.gz",
        )
    )
    assert net.shapes and all(
        s == (34, 1, 21, 13) for s in net.shapes
    )  # real and imaginary parts of 17 slices


def test_pnp_is_half_quadratic_splitting_and_inpainting_starts_from_the_tikhonov_fill(monkeypatch, blocks_png,
                                                                                         tmp_path):
    import mlimaging.inverse

    path, img = blocks_png
    monkeypatch.setattr(mlimaging.inverse, "default_denoiser", lambda **kw: _Shrink())
    calls = []
    real_pnp = mlimaging.inverse.pnp

    def spy(y, op, **kw):
        calls.append((y, op, kw))
        return real_pnp(y, op, **kw)

    monkeypatch.setattr(mlimaging.inverse, "pnp", spy)
    _ok(_restore(path, "--operator", "inpaint", "--keep", "0.5", "--solver", "pnp", "--iterations", "2",
                 "--out", tmp_path / "i.png"))
    _ok(_restore(path, "--operator", "denoise", "--noise", "0.05", "--solver", "pnp", "--iterations", "2",
                 "--out", tmp_path / "d.png"))
    (y, op, inp), (_, _, den) = calls
    assert inp["algorithm"] == den["algorithm"] == "hqs"
    assert den["x0"] is None
    x0, mask = inp["x0"], op.mask.expand_as(inp["x0"]).bool()
    holes = x0[~mask]
    # the holes are filled (A^T y is 0 there) with values of the image's range, the observed pixels kept
    assert holes.numel() > 0 and float(holes.abs().min()) > 0.1
    assert float(holes.max()) <= img.max() / 255 + 0.05
    assert float((x0[mask] - y.expand_as(x0)[mask]).abs().mean()) < 0.05


def test_deep_image_prior_runs_and_refuses_volumes(blocks_png, scan, tmp_path):
    path, img = blocks_png
    output = _ok(
        _restore(
            path,
            "--operator",
            "denoise",
            "--noise",
            "0.1",
            "--solver",
            "dip",
            "--steps",
            "3",
            "--out",
            tmp_path / "r.png",
        )
    )
    assert "stopped at step" in output and read_image(tmp_path / "r.png").shape == img.shape
    _one_red_line(
        _restore(scan, "--solver", "dip", "--out", tmp_path / "v.nii.gz"), "2D images only"
    )


# ------------------------------------------------------------------------------ --measured
def test_measured_deblurs_the_image_itself(blocks_png, tmp_path):
    path, img = blocks_png
    _ok(
        _restore(
            path,
            "--operator",
            "blur",
            "--sigma",
            "1.5",
            "--noise",
            "0",
            "--solver",
            "ls",
            "--iterations",
            "1",
            "--out",
            tmp_path / "blurred.png",
        )
    )  # a noiseless blurred image to start from
    blurred = read_image(tmp_path / "blurred_degraded.png")
    output = _ok(
        _restore(
            tmp_path / "blurred_degraded.png",
            "--measured",
            "--operator",
            "blur",
            "--sigma",
            "1.5",
            "--solver",
            "tv",
            "--lam",
            "0.002",
            "--out",
            tmp_path / "sharp.png",
        )
    )
    assert "PSNR" not in output and "restored" in output
    assert not (tmp_path / "sharp_degraded.png").exists()
    sharp = read_image(tmp_path / "sharp.png")
    err = lambda a: np.abs(a.astype(float) - img).mean()  # noqa: E731
    assert err(sharp) < 0.8 * err(blurred)


def test_measured_inpainting_needs_the_mask(blocks_png, tmp_path):
    _one_red_line(
        _restore(blocks_png[0], "--measured", "--operator", "inpaint", "--out", tmp_path / "r.png"),
        "--mask",
    )
    _one_red_line(
        _restore(blocks_png[0], "--measured", "--operator", "ct", "--out", tmp_path / "r.png"),
        "--measured",
    )


# ------------------------------------------------------------------------------ NIfTI geometry
def _same_geometry(out, ref):
    a, b = nib.load(out), nib.load(ref)
    assert a.shape == b.shape
    assert_allclose(a.affine, b.affine)
    assert_allclose(a.header.get_zooms(), b.header.get_zooms())
    assert_allclose(a.get_qform(), b.get_qform()) and assert_allclose(a.get_sform(), b.get_sform())
    assert int(a.header["qform_code"]) == int(b.header["qform_code"])
    assert int(a.header["sform_code"]) == int(b.header["sform_code"])


@pytest.mark.parametrize(
    "operator, extra",
    [("blur", ["--sigma", "0.7"]), ("ct", ["--views", "20"]), ("downsample", []), ("inpaint", [])],
)
def test_volume_keeps_its_geometry(small_scan, tmp_path, operator, extra):
    out = tmp_path / "r.nii.gz"
    output = _ok(
        _restore(
            small_scan,
            "--operator",
            operator,
            *extra,
            "--solver",
            "tv",
            "--iterations",
            "30",
            "--out",
            out,
        )
    )
    _same_geometry(out, small_scan)
    _same_geometry(tmp_path / "r_degraded.nii.gz", small_scan)
    truth = np.asarray(nib.load(small_scan).dataobj)
    restored = np.asarray(nib.load(out).dataobj)
    assert restored.dtype == np.float32 and truth.min() - 1 <= np.median(restored) <= truth.max()
    assert _scores(output)[2] > 0, output


def test_full_scan_keeps_its_geometry(scan, tmp_path):
    out = tmp_path / "r.nii.gz"
    output = _ok(
        _restore(
            scan,
            "--operator",
            "denoise",
            "--noise",
            "0.05",
            "--solver",
            "tv",
            "--iterations",
            "20",
            "--out",
            out,
        )
    )
    _same_geometry(out, scan)
    _same_geometry(tmp_path / "r_degraded.nii.gz", scan)
    assert _scores(output)[2] > 0, output


def test_2d_nifti_slice_keeps_its_geometry(scan, tmp_path):
    img = nib.load(scan)
    slice_path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 12], img.affine, img.header), slice_path)
    out = tmp_path / "r.nii.gz"
    _ok(
        _restore(
            slice_path,
            "--operator",
            "mri",
            "--acceleration",
            "2",
            "--solver",
            "tv",
            "--iterations",
            "30",
            "--out",
            out,
        )
    )
    _same_geometry(out, slice_path)
    assert nib.load(out).shape == (33, 41)


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--operator", "sharpen"], "--operator must be one of"),
        (["--solver", "magic"], "--solver must be one of"),
        (["--sigma", "-1"], "--sigma must be positive"),
        (["--sigma", "0"], "--sigma must be positive"),
        (["--operator", "ct", "--views", "0"], "--views must be >= 1"),
        (["--operator", "mri", "--acceleration", "0.5"], "--acceleration must be >= 1"),
        (["--operator", "downsample", "--factor", "0"], "--factor must be >= 1"),
        (["--noise", "-0.1"], "--noise must be >= 0"),
        (["--lam", "-1"], "--lam must be >= 0"),
        (["--keep", "0"], "--keep must be in (0, 1]"),
        (["--iterations", "0"], "--iterations must be >= 1"),
        (["--operator", "motion", "--length", "0.5"], "--length must be >= 1"),
        (["--padding", "zeros"], "--padding must be circular or reflect"),
        (["--seed", "-1"], "--seed must be >= 0"),
    ],
)
def test_bad_options_are_one_red_line(blocks_png, tmp_path, args, needle):
    _one_red_line(_restore(blocks_png[0], *args, "--out", tmp_path / "r.png"), needle)
    assert not (tmp_path / "r.png").exists()


def test_bad_files_are_one_red_line(blocks_png, scan, tmp_path):
    path = blocks_png[0]
    _one_red_line(_restore(tmp_path / "missing.png", "--out", tmp_path / "r.png"), "does not exist")
    write_image(tmp_path / "small.png", np.ones((10, 10), np.uint8))
    _one_red_line(
        _restore(
            path,
            "--operator",
            "inpaint",
            "--mask",
            tmp_path / "small.png",
            "--out",
            tmp_path / "r.png",
        ),
        "must match",
    )
    _one_red_line(
        _restore(
            path,
            "--operator",
            "inpaint",
            "--mask",
            tmp_path / "nope.png",
            "--out",
            tmp_path / "r.png",
        ),
        "--mask",
    )
    write_image(tmp_path / "zero.png", np.zeros((40, 40), np.uint8))
    _one_red_line(
        _restore(
            path,
            "--operator",
            "inpaint",
            "--mask",
            tmp_path / "zero.png",
            "--out",
            tmp_path / "r.png",
        ),
        "zero everywhere",
    )
    _one_red_line(_restore(scan, "--out", tmp_path / "v.png"), "cannot be written")
    _one_red_line(_restore(scan, "--axis", "3", "--out", tmp_path / "v.nii.gz"), "--axis")
    (tmp_path / "exists.png").write_bytes(b"")
    _one_red_line(_restore(path, "--out", tmp_path / "exists.png"), "--force")
    _one_red_line(
        _restore(path, "--out", tmp_path / "r2.png", "--save-degraded", tmp_path / "exists.png"),
        "--force",
    )
    _one_red_line(
        _restore(path, "--out", tmp_path / "r3.png", "--save-degraded", tmp_path / "r3.png"),
        "--save-degraded",
    )


@settings(max_examples=15, deadline=None)
@given(
    option=st.sampled_from(["--sigma", "--views", "--acceleration", "--factor", "--steps"]),
    value=st.integers(-1000, 0),
)
def test_non_positive_sizes_are_refused(tmp_path_factory, option, value):
    tmp = tmp_path_factory.mktemp("bad")
    write_image(tmp / "x.png", np.zeros((8, 8), np.uint8))
    result = _restore(tmp / "x.png", option, value, "--out", tmp / "r.png")
    _one_red_line(result, option)


def test_a_reconstruction_worse_than_its_measurement_is_flagged(blocks_png, tmp_path):
    """TV with a huge lambda flattens the image below the blurred input: the user is told."""
    path, _ = blocks_png
    args = ["--operator", "blur", "--sigma", "1.0", "--noise", "0.01", "--solver", "tv"]
    bad = _ok(_restore(path, *args, "--lam", "50", "--out", tmp_path / "bad.png"))
    assert "warning:" in bad and "below the degraded image" in bad
    good = _ok(_restore(path, *args, "--lam", "0.005", "--out", tmp_path / "good.png"))
    assert "below the degraded image" not in good


# ------------------------------------------------------------------------------ PNG outputs of scanner units
def test_png_output_keeps_a_16_bit_input_16_bit(tmp_path):
    """A uint16 scan (as a DICOM's stored values) restored to PNG comes back as uint16 in its units."""
    img = np.full((32, 32), 1000, np.uint16)
    img[8:24, 8:24] = 3000
    write_image(tmp_path / "scan.png", img)
    _ok(_restore(tmp_path / "scan.png", "--operator", "denoise", "--noise", "0", "--solver", "ls",
                 "--out", tmp_path / "r.png"))
    for name in ("r.png", "r_degraded.png"):
        r = read_image(tmp_path / name)
        assert r.dtype == np.uint16, name
        assert_array_equal(r, img)


def test_png_output_that_cannot_hold_the_units_is_refused_before_any_work(tmp_path):
    """Floats, or integers below 0 (CT in HU), cannot be a PNG: one red line, and nothing is written."""
    np.save(tmp_path / "f.npy", np.linspace(-5.0, 900.0, 24 * 24, dtype=np.float32).reshape(24, 24))
    np.save(tmp_path / "hu.npy", np.linspace(-1000, 400, 24 * 24).astype(np.int16).reshape(24, 24))
    for name, needle in (("f.npy", "float32"), ("hu.npy", "negative")):
        _one_red_line(_restore(tmp_path / name, "--solver", "tv", "--out", tmp_path / "r.png"), needle)
        assert not (tmp_path / "r.png").exists() and not (tmp_path / "r_degraded.png").exists()
    _ok(_restore(tmp_path / "hu.npy", "--solver", "tv", "--out", tmp_path / "hu.nii.gz"))
    assert read_image(tmp_path / "hu.nii.gz").dtype == np.float32

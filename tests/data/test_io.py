"""Image IO: real files shipped with nibabel and pydicom, round trips, and errors."""

from __future__ import annotations

import os
import shutil
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from mlimaging.data import read_image, write_image
from mlimaging.data.io import SUPPORTED_FORMATS, strip_image_suffix

NIB_DATA = os.path.join(os.path.dirname(nib.__file__), "tests", "data")


def _dicom(name: str) -> str:
    """A pydicom test file shipped in the wheel (never downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} not installed")
    return path


def _nib(name: str) -> str:
    path = os.path.join(NIB_DATA, name)
    if not os.path.exists(path):
        pytest.skip(f"nibabel test file {name} not installed")
    return path


# ------------------------------------------------------------------------------ NIfTI


@pytest.mark.parametrize(
    "name",
    ["anatomical.nii", "example4d.nii.gz", "example_nifti2.nii.gz", "functional.nii",
     "standard.nii.gz", "reoriented_anat_moved.nii"],
)
def test_nifti_matches_nibabel(name):
    path = _nib(name)
    arr, spacing = read_image(path)
    img = nib.load(path)
    assert arr.shape == img.shape
    assert isinstance(arr, np.ndarray) and arr.dtype.isnative
    np.testing.assert_array_equal(arr, img.get_fdata())
    zooms = img.header.get_zooms()
    assert len(spacing) == min(arr.ndim, 3)
    assert spacing == tuple(float(z) for z in zooms[:3])
    assert all(type(s) is float for s in spacing)


def test_nifti_keeps_integer_dtype_without_scaling():
    arr, spacing = read_image(_nib("anatomical.nii"))  # stored as big-endian int16
    assert arr.dtype == np.int16
    assert spacing == (2.0, 2.0, 2.0)
    arr, spacing = read_image(_nib("standard.nii.gz"))
    assert arr.dtype == np.uint8 and arr.shape == (4, 5, 7)
    assert spacing == (1.0, 3.0, 2.0)


def test_nifti_applies_scaling_when_not_identity():
    path = _nib("functional.nii")
    img = nib.load(path)
    assert img.dataobj.slope != 1.0 or img.dataobj.inter != 0.0
    arr, spacing = read_image(path)
    assert arr.dtype.kind == "f"
    assert arr.shape == (17, 21, 3, 20)  # genuinely 4-D: kept, spatial spacing only
    assert spacing == (4.0, 4.0, 8.0)
    np.testing.assert_allclose(arr, img.get_fdata())


def test_nifti_4d_keeps_time_axis():
    arr, spacing = read_image(_nib("example4d.nii.gz"))
    assert arr.shape == (128, 96, 24, 2)
    assert arr.dtype == np.int16
    assert spacing == pytest.approx((2.0, 2.0, 2.2), abs=1e-5)


def test_nifti_trailing_singleton_axes_squeezed(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4, 1)
    img = nib.Nifti1Image(data, np.diag([0.5, 0.6, 0.7, 1.0]))
    nib.save(img, tmp_path / "x.nii.gz")
    arr, spacing = read_image(tmp_path / "x.nii.gz")
    assert arr.shape == (2, 3, 4)
    np.testing.assert_array_equal(arr, data[..., 0])
    assert spacing == pytest.approx((0.5, 0.6, 0.7))


def test_cifti_is_rejected():
    path = _nib("row_major.dconn.nii")
    with pytest.raises(ValueError, match="row_major.dconn.nii"):
        read_image(path)


def test_nifti_spacing_agrees_with_simpleitk(tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    data = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    write_image(tmp_path / "v.nii.gz", data, spacing=(0.8, 1.1, 3.0))
    img = sitk.ReadImage(str(tmp_path / "v.nii.gz"))
    assert img.GetSpacing() == pytest.approx((0.8, 1.1, 3.0), rel=1e-6)
    # SimpleITK's array is (z, y, x): the reverse of the NIfTI voxel order we return.
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img).transpose(2, 1, 0), data)


# ------------------------------------------------------------------------------ DICOM


def test_dicom_ct_in_hounsfield_units():
    path = _dicom("CT_small.dcm")
    ds = pydicom.dcmread(path)
    arr, spacing = read_image(path)
    assert float(ds.RescaleIntercept) == -1024.0
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert arr.dtype == np.float32
    assert arr.shape == ds.pixel_array.shape == (128, 128)
    np.testing.assert_array_equal(arr, expected.astype(np.float32))
    assert spacing == tuple(float(v) for v in ds.PixelSpacing)
    assert arr.min() < 0  # air/fat below 0 HU once rescaled


def test_dicom_mr_keeps_integers():
    path = _dicom("MR_small.dcm")
    ds = pydicom.dcmread(path)
    arr, spacing = read_image(path)
    assert "RescaleSlope" not in ds
    assert arr.dtype == ds.pixel_array.dtype == np.int16
    np.testing.assert_array_equal(arr, ds.pixel_array)
    assert spacing == (0.3125, 0.3125) == tuple(float(v) for v in ds.PixelSpacing)


def test_dicom_big_endian_comes_out_native():
    arr_be, sp_be = read_image(_dicom("MR_small_bigendian.dcm"))
    arr, sp = read_image(_dicom("MR_small.dcm"))
    assert arr_be.dtype.isnative and arr_be.dtype == np.int16
    np.testing.assert_array_equal(arr_be, arr)
    assert sp_be == sp


def test_dicom_multiframe_rtdose():
    path = _dicom("rtdose.dcm")
    ds = pydicom.dcmread(path)
    arr, spacing = read_image(path)
    assert arr.shape == (int(ds.NumberOfFrames), *ds.pixel_array.shape[1:]) == (15, 10, 10)
    # Frames 5 mm apart (Grid Frame Offset Vector), 10 mm pixels.
    assert spacing == (5.0, 10.0, 10.0)
    np.testing.assert_allclose(arr, ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)
    assert arr.dtype == np.float32


def test_dicom_multiframe_slice_spacing_from_spacing_between_slices(tmp_path):
    ds = pydicom.dcmread(_dicom("rtdose.dcm"))
    ds.SpacingBetweenSlices = "2.5"
    ds.SliceThickness = "3.0"
    ds.save_as(tmp_path / "a.dcm")
    assert read_image(tmp_path / "a.dcm")[1] == (2.5, 10.0, 10.0)
    del ds.SpacingBetweenSlices
    del ds.GridFrameOffsetVector
    ds.save_as(tmp_path / "b.dcm")
    assert read_image(tmp_path / "b.dcm")[1] == (3.0, 10.0, 10.0)
    del ds.SliceThickness
    ds.save_as(tmp_path / "c.dcm")
    assert read_image(tmp_path / "c.dcm")[1] == (1.0, 10.0, 10.0)


def test_dicom_rgb_and_multiframe_rgb():
    arr, spacing = read_image(_dicom("ExplVR_BigEnd.dcm"))
    assert arr.shape == (60, 80, 3) and arr.dtype == np.uint8
    assert spacing == (1.0, 1.0)
    path = _dicom("SC_rgb_rle_2frame.dcm")
    arr, spacing = read_image(path)
    assert arr.shape == (2, 100, 100, 3)
    np.testing.assert_array_equal(arr, pydicom.dcmread(path).pixel_array)
    assert spacing == (1.0, 1.0, 1.0)


def test_dicom_without_extension_is_detected(tmp_path):
    dst = tmp_path / "IM0001"
    shutil.copy(_dicom("CT_small.dcm"), dst)
    arr, spacing = read_image(dst)
    ref, ref_spacing = read_image(_dicom("CT_small.dcm"))
    np.testing.assert_array_equal(arr, ref)
    assert spacing == ref_spacing


def test_dicom_truncated_pixel_data_raises():
    path = _dicom("MR_truncated.dcm")
    with pytest.raises(ValueError, match="MR_truncated.dcm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read_image(path)


def test_dicom_without_decoder_raises_value_error():
    path = _dicom("JPEG-lossy.dcm")  # 12-bit JPEG Extended: needs an optional decoder
    try:
        _ = pydicom.dcmread(path).pixel_array
    except Exception:
        pass
    else:
        pytest.skip("a decoder for JPEG Extended is installed")
    with pytest.raises(ValueError, match="JPEG-lossy.dcm"):
        read_image(path)


def test_dicom_writing_not_supported(tmp_path):
    with pytest.raises(ValueError, match="(?i)DICOM writing is not supported.*NIfTI"):
        write_image(tmp_path / "x.dcm", np.zeros((4, 4), np.int16))


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64]
)
def test_nifti_round_trip_3d_anisotropic(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(7, 6, 5)) * 50 + 60).astype(dtype)
    spacing = (0.7, 0.9, 3.3)
    path = tmp_path / f"img{suffix}"
    write_image(path, data, spacing=spacing)
    arr, sp = read_image(path)
    assert arr.dtype == dtype
    np.testing.assert_array_equal(arr, data)
    assert sp == pytest.approx(spacing, rel=1e-6)  # float32 zooms
    affine = nib.load(path).affine
    np.testing.assert_allclose(np.diag(affine)[:3], spacing, rtol=1e-6)


def test_nifti_round_trip_2d_and_4d(tmp_path):
    data2 = np.arange(20, dtype=np.float32).reshape(4, 5) / 7
    write_image(tmp_path / "a.nii.gz", data2, spacing=(0.25, 0.5))
    arr, sp = read_image(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(arr, data2)
    assert sp == (0.25, 0.5)
    data4 = np.arange(4 * 5 * 6 * 2, dtype=np.int16).reshape(4, 5, 6, 2)
    write_image(tmp_path / "b.nii.gz", data4, spacing=(1.0, 1.5, 2.0))
    arr, sp = read_image(tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(arr, data4)
    assert sp == (1.0, 1.5, 2.0)


def test_nifti_label_maps_stay_integer(tmp_path):
    labels = np.random.default_rng(2).integers(0, 5, size=(6, 7, 8))  # int64
    write_image(tmp_path / "seg.nii.gz", labels, spacing=(1.0, 1.0, 2.0))
    arr, _ = read_image(tmp_path / "seg.nii.gz")
    assert arr.dtype == np.int32
    np.testing.assert_array_equal(arr, labels)
    write_image(tmp_path / "mask.nii.gz", labels > 2)
    arr, sp = read_image(tmp_path / "mask.nii.gz")
    assert arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, (labels > 2).astype(np.uint8))
    assert sp == (1.0, 1.0, 1.0)


def test_torch_tensor_input(tmp_path):
    t = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    write_image(tmp_path / "t.nii.gz", t, spacing=2.0)
    arr, sp = read_image(tmp_path / "t.nii.gz")
    np.testing.assert_array_equal(arr, t.numpy())
    assert sp == (2.0, 2.0, 2.0)


def test_npz_round_trip_keeps_spacing(tmp_path):
    data = np.random.default_rng(3).normal(size=(3, 4, 5)).astype(np.float32)
    write_image(tmp_path / "a.npz", data, spacing=(0.7, 0.9, 3.3))
    arr, sp = read_image(tmp_path / "a.npz")
    np.testing.assert_array_equal(arr, data)
    assert arr.dtype == np.float32
    assert sp == (0.7, 0.9, 3.3)


def test_npz_other_layouts(tmp_path):
    data = np.arange(12).reshape(3, 4)
    np.savez(tmp_path / "only.npz", volume=data)
    arr, sp = read_image(tmp_path / "only.npz")
    np.testing.assert_array_equal(arr, data)
    assert sp == (1.0, 1.0)
    np.savez(tmp_path / "two.npz", a=data, b=data)
    with pytest.raises(ValueError, match="two.npz"):
        read_image(tmp_path / "two.npz")


def test_npy_round_trip(tmp_path):
    data = np.arange(60, dtype=np.int64).reshape(3, 4, 5)
    write_image(tmp_path / "a.npy", data)
    arr, sp = read_image(tmp_path / "a.npy")
    assert arr.dtype == np.int64
    np.testing.assert_array_equal(arr, data)
    assert sp == (1.0, 1.0, 1.0)
    with pytest.warns(UserWarning, match="spacing"):
        write_image(tmp_path / "b.npy", data, spacing=(1.0, 2.0, 3.0))


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_lossless_pillow_round_trip_uint8(tmp_path, suffix):
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, size=(9, 11), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    for name, data in (("g", gray), ("c", rgb)):
        path = tmp_path / f"{name}{suffix}"
        write_image(path, data)
        arr, sp = read_image(path)
        assert arr.dtype == np.uint8 and arr.shape == data.shape
        np.testing.assert_array_equal(arr, data)
        assert sp == (1.0, 1.0)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_uint16_round_trip(tmp_path, suffix):
    data = np.random.default_rng(5).integers(0, 65536, size=(8, 9), dtype=np.uint16)
    write_image(tmp_path / f"a{suffix}", data)
    arr, _ = read_image(tmp_path / f"a{suffix}")
    assert arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, data)


def test_png_label_maps_round_trip_as_values(tmp_path):
    labels = np.random.default_rng(6).integers(0, 4, size=(10, 12))  # int64 0..3
    write_image(tmp_path / "lab.png", labels)
    arr, _ = read_image(tmp_path / "lab.png")
    assert arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, labels)  # 0/1/2/3, not rescaled
    mask = labels > 1
    write_image(tmp_path / "mask.png", mask)
    arr, _ = read_image(tmp_path / "mask.png")
    np.testing.assert_array_equal(arr, mask.astype(np.uint8))
    big = np.array([[0, 300], [1000, 2]], dtype=np.int32)
    write_image(tmp_path / "big.png", big)
    arr, _ = read_image(tmp_path / "big.png")
    assert arr.dtype == np.uint16
    np.testing.assert_array_equal(arr, big)


def test_png_float_in_unit_range_is_scaled(tmp_path):
    data = np.random.default_rng(7).random((6, 7)).astype(np.float32)
    write_image(tmp_path / "f.png", data)
    arr, _ = read_image(tmp_path / "f.png")
    assert arr.dtype == np.uint8
    np.testing.assert_allclose(arr / 255.0, data, atol=0.5 / 255 + 1e-7)


def test_jpeg_round_trip_is_close(tmp_path):
    yy, xx = np.mgrid[0:32, 0:32]
    data = ((xx + yy) * 4).astype(np.uint8)
    write_image(tmp_path / "a.jpg", data)
    arr, sp = read_image(tmp_path / "a.jpg")
    assert arr.shape == data.shape and arr.dtype == np.uint8 and sp == (1.0, 1.0)
    assert np.abs(arr.astype(int) - data).mean() < 3


@pytest.mark.parametrize(
    "data, match",
    [
        (np.full((4, 4), 2.5, np.float32), r"\[0, 1\]"),
        (np.full((4, 4), -0.1), r"\[0, 1\]"),
        (np.full((4, 4), np.nan), r"\[0, 1\]"),
        (np.full((4, 4), -3, np.int16), "negative"),
        (np.full((4, 4), 70000, np.int32), "65535"),
        (np.zeros((4, 4, 4)), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
    ],
)
def test_png_rejects_what_it_cannot_hold(tmp_path, data, match):
    with pytest.raises(ValueError, match=match):
        write_image(tmp_path / "x.png", data)


def test_pillow_formats_warn_when_spacing_is_dropped(tmp_path):
    with pytest.warns(UserWarning, match="spacing"):
        write_image(tmp_path / "x.png", np.zeros((4, 4), np.uint8), spacing=(0.5, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_image(tmp_path / "y.png", np.zeros((4, 4), np.uint8), spacing=1.0)


def test_pillow_modes_on_read(tmp_path):
    rgba = np.random.default_rng(8).integers(0, 256, size=(5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    arr, sp = read_image(tmp_path / "rgba.png")
    assert arr.shape == (5, 6, 3)
    np.testing.assert_array_equal(arr, rgba[..., :3])
    pal = Image.fromarray(rgba[..., :3], "RGB").quantize(colors=8)
    pal.save(tmp_path / "pal.png")
    arr, _ = read_image(tmp_path / "pal.png")
    np.testing.assert_array_equal(arr, np.asarray(pal.convert("RGB")))
    la = Image.fromarray(rgba[..., :2], "LA")
    la.save(tmp_path / "la.png")
    arr, _ = read_image(tmp_path / "la.png")
    np.testing.assert_array_equal(arr, rgba[..., 0])
    bits = Image.fromarray(rgba[..., 0] > 128)
    assert bits.mode == "1"
    bits.save(tmp_path / "bits.png")
    arr, _ = read_image(tmp_path / "bits.png")
    assert arr.dtype == np.uint8
    np.testing.assert_array_equal(arr, (rgba[..., 0] > 128).astype(np.uint8))


def test_multipage_tiff_is_stacked(tmp_path):
    pages = np.random.default_rng(9).integers(0, 256, size=(3, 5, 6), dtype=np.uint8)
    ims = [Image.fromarray(p) for p in pages]
    ims[0].save(tmp_path / "stack.tif", save_all=True, append_images=ims[1:])
    arr, sp = read_image(tmp_path / "stack.tif")
    np.testing.assert_array_equal(arr, pages)
    assert sp == (1.0, 1.0, 1.0)


# ------------------------------------------------------------------------------ writing options


def test_write_creates_parents_and_honours_overwrite(tmp_path):
    path = tmp_path / "a" / "b" / "c.nii.gz"
    write_image(path, np.zeros((3, 3, 3), np.uint8))
    assert path.is_file()
    write_image(path, np.ones((3, 3, 3), np.uint8))  # overwrite=True by default
    assert read_image(path)[0].max() == 1
    with pytest.raises(FileExistsError):
        write_image(path, np.zeros((3, 3, 3), np.uint8), overwrite=False)


@pytest.mark.parametrize("spacing", [(1.0, 2.0), (1.0, 0.0, 1.0), (1.0, -1.0, 1.0), (1.0, np.nan, 1.0)])
def test_bad_spacing(tmp_path, spacing):
    with pytest.raises(ValueError, match="spacing"):
        write_image(tmp_path / "x.nii.gz", np.zeros((3, 3, 3)), spacing=spacing)


def test_unknown_extension_on_write(tmp_path):
    with pytest.raises(ValueError, match=r"\.xyz.*NIfTI"):
        write_image(tmp_path / "x.xyz", np.zeros((3, 3)))


# ------------------------------------------------------------------------------ read errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        read_image(path)


def test_unknown_extension_on_read(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ValueError) as err:
        read_image(path)
    assert "notes.txt" in str(err.value)
    assert SUPPORTED_FORMATS in str(err.value)


@pytest.mark.parametrize("name", ["bad.nii", "bad.nii.gz", "bad.png", "bad.jpg", "bad.npy",
                                  "bad.npz", "bad.dcm", "bad.tif"])
def test_corrupt_files_raise_value_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(10).bytes(2000))
    with pytest.raises(ValueError) as err:
        read_image(path)
    assert name in str(err.value)
    assert "Supported formats" in str(err.value)


def test_empty_file_raises_value_error(tmp_path):
    path = tmp_path / "empty.nii"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.nii"):
        read_image(path)


def test_truncated_nifti_raises_value_error(tmp_path):
    write_image(tmp_path / "full.nii", np.ones((20, 20, 20), np.float32))
    raw = (tmp_path / "full.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="cut.nii"):
        read_image(tmp_path / "cut.nii")


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        read_image(tmp_path)


def test_strip_image_suffix():
    assert strip_image_suffix("case_01.nii.gz") == "case_01"
    assert strip_image_suffix("case_01.NII") == "case_01"
    assert strip_image_suffix("a.b.png") == "a.b"
    assert strip_image_suffix("x.npy") == "x"
    assert strip_image_suffix("README") == "README"

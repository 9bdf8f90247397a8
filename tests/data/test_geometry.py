"""Image geometry from reading to writing: nibabel and SimpleITK as oracles.

Worked examples and invariants run everywhere; the SimpleITK comparisons skip only
themselves when SimpleITK is missing.
"""

from __future__ import annotations

import copy

import nibabel as nib
import numpy as np
import pydicom
import pytest

from mlimaging.data import ImageGeometry, read_image, write_image
from mlimaging.data.geometry import axis_codes
from mlimaging.data.samples import sample_file


def _rot(axis: int, deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    i, j = [k for k in range(3) if k != axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def _affine(linear: np.ndarray, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = linear
    a[:3, 3] = origin
    return a


OBLIQUE = _affine(_rot(2, 20) @ _rot(0, 10) @ np.diag([0.9, 1.1, 3.0]), (12.5, -30.0, 41.0))
LAS = _affine(np.diag([-2.0, 2.0, 2.0]), (32.0, -40.0, -16.0))
ANISO = _affine(np.diag([0.8, 0.8, 5.0]), (-100.0, -120.0, 7.5))


def _sitk():
    return pytest.importorskip("SimpleITK")


# ----------------------------------------------------------------- worked examples


def test_index_to_world_worked_example():
    g = ImageGeometry(spacing=(2.0, 3.0, 4.0), origin=(1.0, 2.0, 3.0), direction=np.eye(3)[:, [1, 0, 2]])
    # voxel (1, 1, 1): origin + D diag(s) i = (1, 2, 3) + (3, 2, 4)
    assert g.transform_index([1, 1, 1]).tolist() == [[4.0, 4.0, 7.0]]
    assert g.index_to_world.shape == (4, 4)
    assert ImageGeometry.from_index_to_world(g.index_to_world) == g


def test_axis_codes_follow_nibabel():
    for affine in (OBLIQUE, LAS, ANISO, np.diag([1.0, -1.0, -1.0, 1.0])):
        lps = np.diag([-1.0, -1.0, 1.0]) @ affine[:3, :3]
        assert axis_codes(lps / np.linalg.norm(lps, axis=0)) == "".join(nib.aff2axcodes(affine))


@pytest.mark.parametrize("bad", [
    dict(spacing=(1.0, 0.0)), dict(spacing=(1.0, np.nan)), dict(spacing=(1.0, 1.0), origin=(0.0,)),
    dict(spacing=(1.0, 1.0), direction=[[2.0, 0.0], [0.0, 1.0]]),
    dict(spacing=(1.0, 1.0), direction=[[1.0, 1.0], [0.0, 0.0]]),
])
def test_bad_geometry_is_refused(bad):
    with pytest.raises(ValueError):
        ImageGeometry(**bad)


# ----------------------------------------------------------------- NIfTI (nibabel is the oracle)


@pytest.mark.parametrize("affine", [OBLIQUE, LAS, ANISO], ids=["oblique", "LAS", "anisotropic"])
@pytest.mark.parametrize("codes", [(1, 1), (1, 0), (2, 4)])
def test_nifti_affine_and_codes_round_trip(tmp_path, affine, codes):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    img = nib.Nifti1Image(data, None)
    img.set_qform(affine, code=codes[0])
    img.set_sform(affine, code=codes[1])
    src = tmp_path / "in.nii.gz"
    nib.save(img, src)

    arr, g = read_image(src, geometry=True)
    np.testing.assert_allclose(g.to_ras_affine(), nib.load(src).affine, atol=1e-5)
    mask = (arr > 60).astype(np.uint8)  # an output computed from the input
    write_image(tmp_path / "mask.nii.gz", mask, geometry=g)
    out = nib.load(tmp_path / "mask.nii.gz")
    np.testing.assert_allclose(out.affine, nib.load(src).affine, atol=1e-5)
    assert (int(out.header["qform_code"]), int(out.header["sform_code"])) == codes
    np.testing.assert_allclose(out.get_qform(), nib.load(src).get_qform(), atol=1e-5)
    np.testing.assert_allclose(out.header.get_zooms(), nib.load(src).header.get_zooms())
    assert "".join(nib.aff2axcodes(out.affine)) == g.axis_codes()


def test_anatomical_nii_geometry_is_las_with_its_origin(tmp_path):
    arr, g = read_image(sample_file("anatomical.nii"), geometry=True)
    img = nib.load(sample_file("anatomical.nii"))
    assert g.axis_codes() == "LAS" == "".join(nib.aff2axcodes(img.affine))
    assert g.origin == (-32.0, 40.0, -16.0)  # RAS (32, -40, -16) in LPS
    write_image(tmp_path / "m.nii.gz", arr > 0, geometry=g)
    np.testing.assert_array_equal(nib.load(tmp_path / "m.nii.gz").affine, img.affine)


def test_geometry_without_nifti_header_is_written_with_scanner_codes(tmp_path):
    g = ImageGeometry.from_index_to_world(np.diag([-1.0, -1.0, 1.0, 1.0]) @ OBLIQUE)
    write_image(tmp_path / "x.nii", np.zeros((3, 4, 5), np.float32), geometry=g)
    out = nib.load(tmp_path / "x.nii")
    np.testing.assert_allclose(out.affine, OBLIQUE, atol=1e-5)
    assert int(out.header["sform_code"]) == 1 and int(out.header["qform_code"]) == 1
    assert read_image(tmp_path / "x.nii", geometry=True)[1] == g


def test_npz_keeps_the_geometry_and_png_warns_when_it_drops_it(tmp_path):
    g = ImageGeometry(spacing=(1.0, 1.0), origin=(5.0, 6.0), direction=[[0.0, 1.0], [1.0, 0.0]])
    write_image(tmp_path / "x.npz", np.zeros((3, 4)), geometry=g)
    assert read_image(tmp_path / "x.npz", geometry=True)[1] == g
    with pytest.warns(UserWarning, match="origin and direction"):
        write_image(tmp_path / "x.png", np.zeros((3, 4), np.uint8), geometry=g)
    with pytest.raises(ValueError, match="spatial axes"):
        write_image(tmp_path / "y.nii.gz", np.zeros((3, 4, 5)), geometry=g)
    with pytest.raises(ValueError, match="not both"):
        write_image(tmp_path / "z.npz", np.zeros((3, 4)), geometry=g, spacing=(2.0, 2.0))


def test_mgz_geometry_matches_nibabel():
    path = sample_file("test.mgz")
    arr, g = read_image(path, geometry=True)
    np.testing.assert_allclose(g.to_ras_affine(), nib.load(path).affine, atol=1e-5)
    assert arr.shape == nib.load(path).shape


# ----------------------------------------------------------------- SimpleITK oracle: NIfTI and single DICOM


def _sitk_geometry(img):
    """SimpleITK's geometry, in its index (x first) order."""
    d = img.GetDimension()
    return (np.asarray(img.GetSpacing()), np.asarray(img.GetOrigin()),
            np.asarray(img.GetDirection()).reshape(d, d))


@pytest.mark.parametrize("affine", [OBLIQUE, LAS, ANISO], ids=["oblique", "LAS", "anisotropic"])
def test_nifti_geometry_matches_simpleitk(tmp_path, affine):
    sitk = _sitk()
    img = nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), affine)
    nib.save(img, tmp_path / "x.nii.gz")
    _, g = read_image(tmp_path / "x.nii.gz", geometry=True)
    spacing, origin, direction = _sitk_geometry(sitk.ReadImage(str(tmp_path / "x.nii.gz")))
    # NIfTI arrays are in nibabel's (i, j, k) order, which is SimpleITK's index order.
    np.testing.assert_allclose(g.spacing, spacing, rtol=1e-5)
    np.testing.assert_allclose(g.origin, origin, atol=1e-4)
    np.testing.assert_allclose(g.direction, direction, atol=1e-5)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_single_dicom_geometry_matches_simpleitk(name):
    sitk = _sitk()
    path = sample_file(name)
    arr, g = read_image(path, geometry=True)
    img = sitk.ReadImage(str(path))
    spacing, origin, direction = _sitk_geometry(img)
    assert g.ndim == 2 and g.world_ndim == 3
    np.testing.assert_allclose(g.origin, origin, atol=1e-4)
    np.testing.assert_allclose(g.spacing, spacing[:2][::-1], rtol=1e-6)
    np.testing.assert_allclose(g.direction, direction[:, :2][:, ::-1], atol=1e-6)
    np.testing.assert_allclose(arr, sitk.GetArrayFromImage(img)[0], atol=1e-3)


# ----------------------------------------------------------------- DICOM series


def _write_series(folder, *, n=6, step=2.5, row=(1.0, 0.0, 0.0), col=(0.0, 1.0, 0.0), start=(-20.0, 10.0, 30.0),
                  uid="1.2.826.0.1.3680043.8.498.1", description="axial", intercept=-1024.0, seed=0,
                  thickness=1.0):
    """A series of ``n`` slices from pydicom's CT_small.dcm, written in shuffled order."""
    template = pydicom.dcmread(sample_file("CT_small.dcm"))
    rng = np.random.default_rng(seed)
    row, col = np.asarray(row, float), np.asarray(col, float)
    row, col = row / np.linalg.norm(row), col / np.linalg.norm(col)
    normal = np.cross(row, col)
    pixels = template.pixel_array
    folder.mkdir(parents=True, exist_ok=True)
    for k, order in enumerate(rng.permutation(n)):
        ds = copy.deepcopy(template)
        ds.SeriesInstanceUID = uid
        ds.SeriesDescription = description
        ds.SOPInstanceUID = f"{uid}.{order + 1}"
        ds.InstanceNumber = int(n - order)  # misleading on purpose: sort by position, not number
        ds.ImageOrientationPatient = [*row.tolist(), *col.tolist()]
        ds.ImagePositionPatient = (np.asarray(start) + order * step * normal).tolist()
        ds.SliceThickness = thickness  # not the spacing
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = 1.0
        ds.PixelData = (np.roll(pixels, order * 3, axis=1)).astype(pixels.dtype).tobytes()
        ds.save_as(folder / f"file{k:03d}.dcm")
    return row, col, normal


def test_series_folder_is_one_sorted_volume(tmp_path):
    row, col, normal = _write_series(tmp_path / "s", row=(0.9, 0.1, 0.0), col=(-0.1, 0.9, 0.2))
    vol, g = read_image(tmp_path / "s", geometry=True)
    base = pydicom.dcmread(sample_file("CT_small.dcm")).pixel_array
    assert vol.shape == (6, *base.shape) and vol.dtype == np.float32
    for k in range(6):  # slice k is the one at position k along the normal
        np.testing.assert_array_equal(vol[k], np.roll(base, 3 * k, axis=1).astype(np.float32) - 1024.0)
    assert g.spacing[0] == pytest.approx(2.5)  # from the positions, not SliceThickness (1.0)
    np.testing.assert_allclose(g.direction[:, 0], normal, atol=1e-6)
    np.testing.assert_allclose(g.direction[:, 2], row / np.linalg.norm(row), atol=1e-6)
    np.testing.assert_allclose(g.origin, (-20.0, 10.0, 30.0), atol=1e-6)


def test_series_matches_simpleitk_image_series_reader(tmp_path):
    sitk = _sitk()
    _write_series(tmp_path / "s", n=5, step=3.0, row=(0.8, 0.0, 0.6), col=(0.0, 1.0, 0.0), start=(5.0, -7.0, 2.0))
    vol, g = read_image(tmp_path / "s", geometry=True)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "s")))
    img = reader.Execute()
    spacing, origin, direction = _sitk_geometry(img)
    np.testing.assert_allclose(vol, sitk.GetArrayFromImage(img), atol=1e-3)
    # SimpleITK's index order is (x, y, z); our array (and geometry) order is (z, y, x).
    np.testing.assert_allclose(g.spacing, spacing[::-1], rtol=1e-5)
    np.testing.assert_allclose(g.origin, origin, atol=1e-4)
    np.testing.assert_allclose(g.direction, direction[:, ::-1], atol=1e-5)


def test_folder_with_two_series_lists_them_and_series_uid_picks_one(tmp_path):
    _write_series(tmp_path / "mix", n=3, uid="1.2.3.4", description="first")
    template_folder = tmp_path / "other"
    _write_series(template_folder, n=4, uid="1.2.3.5", description="second", seed=1)
    for f in template_folder.iterdir():
        f.rename(tmp_path / "mix" / f"b{f.name}")
    with pytest.raises(ValueError, match=r"2 DICOM series.*1\.2\.3\.4.*first.*3 files.*1\.2\.3\.5"):
        read_image(tmp_path / "mix")
    vol, _ = read_image(tmp_path / "mix", series_uid="1.2.3.5")
    assert vol.shape[0] == 4
    with pytest.raises(ValueError, match="9.9.9"):
        read_image(tmp_path / "mix", series_uid="9.9.9")


def test_series_errors_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    with pytest.raises(ValueError, match="without DICOM files"):
        read_image(tmp_path / "empty")
    _write_series(tmp_path / "dup", n=3)
    f = sorted((tmp_path / "dup").iterdir())
    ds = pydicom.dcmread(f[0])
    ds.SOPInstanceUID = "1.2.3.999"
    ds.save_as(tmp_path / "dup" / "copy.dcm")
    with pytest.raises(ValueError, match="same position"):
        read_image(tmp_path / "dup")


def test_uneven_slice_gaps_warn(tmp_path):
    _write_series(tmp_path / "gap", n=4)
    f = sorted((tmp_path / "gap").iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    ds = pydicom.dcmread(f[-1])
    ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1],
                               float(ds.ImagePositionPatient[2]) + 4.0]
    ds.save_as(f[-1])
    with pytest.warns(UserWarning, match="uneven slice gaps"):
        read_image(tmp_path / "gap")


# ----------------------------------------------------------------- MetaImage and NRRD (SimpleITK writes them)


@pytest.mark.parametrize("name,compress", [("x.mha", False), ("x.mha", True), ("x.mhd", False),
                                           ("x.nrrd", False), ("x.nrrd", True)])
def test_metaimage_and_nrrd_match_simpleitk(tmp_path, name, compress):
    sitk = _sitk()
    data = np.random.default_rng(0).integers(-1000, 2000, size=(5, 6, 7)).astype(np.int16)
    img = sitk.GetImageFromArray(data)
    img.SetSpacing((0.7, 0.9, 2.5))
    img.SetOrigin((10.0, -20.0, 33.0))
    img.SetDirection(tuple((_rot(2, 25) @ _rot(1, -10)).ravel()))
    sitk.WriteImage(img, str(tmp_path / name), compress)
    arr, g = read_image(tmp_path / name, geometry=True)
    back = sitk.ReadImage(str(tmp_path / name))
    spacing, origin, direction = _sitk_geometry(back)
    np.testing.assert_array_equal(arr, sitk.GetArrayFromImage(back))
    assert arr.dtype == np.int16
    np.testing.assert_allclose(g.spacing, spacing[::-1], rtol=1e-6)
    np.testing.assert_allclose(g.origin, origin, atol=1e-5)
    np.testing.assert_allclose(g.direction, direction[:, ::-1], atol=1e-6)


def test_ras_nrrd_is_converted_to_lps(tmp_path):
    payload = np.arange(24, dtype=np.uint8).tobytes()
    header = ("NRRD0004\ntype: uint8\ndimension: 3\nspace: right-anterior-superior\nsizes: 4 3 2\n"
              "space directions: (2,0,0) (0,3,0) (0,0,4)\nencoding: raw\nspace origin: (1,2,3)\n\n")
    (tmp_path / "r.nrrd").write_bytes(header.encode() + payload)
    arr, g = read_image(tmp_path / "r.nrrd", geometry=True)
    assert arr.shape == (2, 3, 4) and arr[1, 2, 3] == 23
    assert g.spacing == (4.0, 3.0, 2.0) and g.origin == (-1.0, -2.0, 3.0)
    assert g.axis_codes() == "SAR"


def test_read_only_formats_refuse_writing(tmp_path):
    for name in ("x.mha", "x.nrrd", "x.mgz"):
        with pytest.raises(ValueError, match="not supported.*NIfTI"):
            write_image(tmp_path / name, np.zeros((3, 3, 3)))


def test_truncated_metaimage_is_a_clear_error(tmp_path):
    (tmp_path / "t.mha").write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
                                     b"ElementDataFile = LOCAL\n" + b"\x00" * 10)
    with pytest.raises(ValueError, match="t.mha.*bytes of data"):
        read_image(tmp_path / "t.mha")


def test_compressed_dicom_without_decoder_names_the_packages_to_install():
    import importlib.util

    if importlib.util.find_spec("pylibjpeg") or importlib.util.find_spec("gdcm"):
        pytest.skip("an optional JPEG decoder is installed here")
    with pytest.raises(ValueError, match=r"JPEG Extended.*pip install pylibjpeg") as err:
        read_image(sample_file("JPEG-lossy.dcm"))  # 12-bit JPEG Extended: Pillow cannot decode it
    assert "Supported formats" not in str(err.value)

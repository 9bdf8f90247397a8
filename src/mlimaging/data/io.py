"""Image IO with geometry: NIfTI, DICOM (files and series folders), MetaImage, NRRD, MGZ,
PNG/JPEG/BMP/TIFF and NumPy files.

:func:`read_image` returns ``(array, spacing)``: the array as stored in the file and one
spacing value per *spatial* axis, in the array's axis order; with ``geometry=True`` it
returns ``(array, ImageGeometry)`` instead, the full geometry (spacing, origin, direction
in the LPS world, see :mod:`mlimaging.data.geometry`). :func:`write_image` takes the
geometry back (``geometry=``), so what is computed from an image overlays it in a viewer.

Format rules
------------
NIfTI (``.nii``, ``.nii.gz``) and FreeSurfer MGH (``.mgz``, ``.mgh``), read with nibabel
    The array is in voxel (storage) order, not reoriented. Integer data keep their dtype;
    the header's ``scl_slope`` / ``scl_inter`` are applied only when they are not the
    identity (nibabel then returns floats). Trailing singleton axes after the third are
    dropped (``(X, Y, Z, 1) -> (X, Y, Z)``); genuinely 4-D data keep their 4 axes and get
    a 3-D geometry. Geometry: nibabel's affine (sform when its code is set, else qform),
    RAS converted to LPS; spacing from ``header.get_zooms()`` (the affine's column norms
    when they disagree). The qform and sform with their codes are remembered and written
    back unchanged. Writing: the geometry's affine (with the input's qform/sform and
    codes when the geometry came from a NIfTI of the same dimension; else both set with
    code 1, scanner; an identity LPS geometry, as from a PNG, gives ``diag(-s0, -s1, s2)``
    as ITK writes it), or, given only ``spacing``, nibabel's diagonal affine
    ``diag(s0, s1, s2)`` (sform code 2);
    ``bool`` is written as ``uint8``, ``int64``/``uint64`` as ``int32``/``uint32`` when
    the values fit, ``float16`` as ``float32``; other dtypes as they are.
DICOM (``.dcm``, ``.dicom``, a file with the ``DICM`` preamble, or a **folder** of slices)
    See :mod:`mlimaging.data.dicom`: rescale slope/intercept applied, geometry from
    *Image Position / Orientation (Patient)*; a folder is one series, its slices sorted
    along the slice normal with the spacing from their positions. Writing DICOM is not
    supported.
MetaImage (``.mha``, ``.mhd``) and NRRD (``.nrrd``, ``.nhdr``)
    Read with the geometry they store (:mod:`mlimaging.data._itk_formats`); arrays in
    ``(z, y, x)`` order as SimpleITK's. Read only.
PNG / JPEG / BMP / TIFF (Pillow)
    Grayscale -> ``(H, W)`` (``uint8``, or ``uint16`` for 16-bit files; bilevel ``"1"``
    images -> ``uint8`` 0/1), colour -> ``(H, W, 3)`` ``uint8`` (alpha dropped, palette
    and other modes converted to RGB). Multi-page TIFFs are stacked into
    ``(pages, H, W[, 3])``. Spacing is 1.0 per spatial axis (these formats carry none).
    Writing: ``(H, W)`` or ``(H, W, 3)``; ``uint8`` and (PNG/TIFF) ``uint16`` written as
    they are; ``bool`` and integer label maps are written with their values unchanged
    (``uint8``, or ``uint16`` when a value exceeds 255), so masks round-trip as label
    values (0/1/2..., *not* scaled to 0/255); float arrays with values in ``[0, 1]`` are
    scaled to ``uint8`` (``round(x * 255)``, so they come back as ``uint8``); any other
    float array raises ``ValueError``. JPEG is lossy. A geometry other than unit spacing,
    identity direction and origin 0 cannot be stored and triggers a warning.
NumPy ``.npy`` / ``.npz``
    ``.npy``: the array, spacing 1.0 per axis (a geometry cannot be stored: a warning when
    it is not the identity). ``.npz``: the array under the key ``image`` (or the only
    array in the file), with the keys ``spacing``, ``origin`` and ``direction`` when
    present.

Errors: a missing file raises ``FileNotFoundError`` naming the path; an unknown extension
or an unreadable / corrupt file raises ``ValueError`` naming the path and listing the
supported formats.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from mlimaging.data.geometry import ImageGeometry, NiftiTransforms
from mlimaging.utils import as_numpy, check_spacing

__all__ = ["SUPPORTED_FORMATS", "read_image", "write_image", "image_format", "strip_image_suffix"]

SUPPORTED_FORMATS = (
    "NIfTI (.nii, .nii.gz), DICOM (.dcm, .dicom, a file with the DICM preamble, or a folder holding a "
    "series; read only), MetaImage (.mha, .mhd; read only), NRRD (.nrrd, .nhdr; read only), "
    "FreeSurfer (.mgz, .mgh; read only), PNG/JPEG/BMP/TIFF (.png, .jpg, .jpeg, .bmp, .tif, .tiff), "
    "NumPy (.npy, .npz)"
)

_PIL_EXTS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
_DICOM_EXTS = {".dcm", ".dicom"}
_READ_ONLY = {".mha": "metaimage", ".mhd": "metaimage", ".nrrd": "nrrd", ".nhdr": "nrrd",
              ".mgz": "mgh", ".mgh": "mgh"}
# Longest first so that ".nii.gz" wins over ".gz"-less matches.
_SUFFIXES = (".nii.gz", ".nii", ".npz", ".npy", ".dcm", ".dicom", *_READ_ONLY, *_PIL_EXTS)


def _unsupported(path: Path, why: str) -> ValueError:
    return ValueError(f"Cannot read '{path}': {why}. Supported formats: {SUPPORTED_FORMATS}.")


def strip_image_suffix(name: str) -> str:
    """``name`` without a supported image extension (``"case1.nii.gz" -> "case1"``)."""
    low = name.lower()
    for suf in sorted(_SUFFIXES, key=len, reverse=True):
        if low.endswith(suf):
            return name[: len(name) - len(suf)]
    return name


def image_format(path: str | os.PathLike) -> str | None:
    """The format of ``path`` from its extension: ``"nifti"``, ``"dicom"``, ``"metaimage"``,
    ``"nrrd"``, ``"mgh"``, ``"pil"``, ``"npy"``, ``"npz"``, or ``None`` when the extension is
    not a supported one."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz") or name.endswith(".nii"):
        return "nifti"
    ext = Path(name).suffix
    if ext in _DICOM_EXTS:
        return "dicom"
    if ext in _READ_ONLY:
        return _READ_ONLY[ext]
    if ext in _PIL_EXTS:
        return "pil"
    if ext in (".npy", ".npz"):
        return ext[1:]
    return None


def _has_dicm_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _native(arr: np.ndarray) -> np.ndarray:
    """``arr`` as a plain, native-byte-order ndarray."""
    arr = np.asarray(arr)
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


@overload
def read_image(path: str | os.PathLike, *, geometry: Literal[False] = ...,
               series_uid: str | None = ...) -> tuple[np.ndarray, tuple[float, ...]]: ...
@overload
def read_image(path: str | os.PathLike, *, geometry: Literal[True],
               series_uid: str | None = ...) -> tuple[np.ndarray, ImageGeometry]: ...


def read_image(path: str | os.PathLike, *, geometry: bool = False,
               series_uid: str | None = None) -> tuple[np.ndarray, Any]:
    """Read an image file (or a DICOM series folder) and return ``(array, spacing)``.

    ``spacing`` has one value per spatial axis of ``array``, in the array's axis order
    (so ``len(spacing) == array.ndim`` for a grayscale 2-D / 3-D image, and one fewer
    for RGB images whose last axis holds the colour channels). See the module docstring
    for the exact rules of each format.

    Parameters
    ----------
    path
        An image file, or a folder of DICOM slices (one series).
    geometry
        Return an :class:`~mlimaging.data.geometry.ImageGeometry` (spacing, origin,
        direction) instead of the spacing alone.
    series_uid
        For a folder holding several DICOM series, the one to read.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the extension is not supported, or the file cannot be read (corrupt, not the
        format its extension says, DICOM without pixel data or without a decoder), or a
        folder holds several DICOM series and ``series_uid`` is not given.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.nii.gz")
    >>> write_image(p, np.zeros((4, 5, 6), np.int16), spacing=(0.5, 0.5, 2.0))
    >>> arr, spacing = read_image(p)
    >>> arr.shape, arr.dtype.name, spacing
    ((4, 5, 6), 'int16', (0.5, 0.5, 2.0))
    >>> _, g = read_image(p, geometry=True)
    >>> g.origin, g.axis_codes()  # written with a spacing only: nibabel's diagonal (RAS) affine
    ((0.0, 0.0, 0.0), 'RAS')
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"No such image file: '{p}'")
    if p.is_dir():
        from mlimaging.data.dicom import read_dicom_series

        try:
            arr, geom = read_dicom_series(p, series_uid=series_uid)
        except FileNotFoundError:
            raise _unsupported(p, "it is a folder without DICOM files (a folder is read as one DICOM "
                                  "series)") from None
        return arr, (geom if geometry else geom.spacing)
    fmt = image_format(p)
    if fmt is None:
        if _has_dicm_preamble(p):
            fmt = "dicom"
        else:
            raise _unsupported(p, f"unknown extension '{''.join(p.suffixes) or '(none)'}'")
    reader = {"nifti": _read_nifti, "mgh": _read_nifti, "dicom": _read_dicom, "pil": _read_pil,
              "npy": _read_npy, "npz": _read_npz, "metaimage": _read_metaimage, "nrrd": _read_nrrd}[fmt]
    try:
        arr, geom = reader(p)
    except FileNotFoundError:
        raise
    except ValueError as e:
        msg = str(e)
        if "Supported formats" in msg or type(e).__name__ == "MissingDecoderError":
            raise  # already complete (a supported format whose decoder is missing needs no format list)
        prefix = f"Cannot read '{p}': "
        raise _unsupported(p, msg[len(prefix):] if msg.startswith(prefix) else msg) from e
    except Exception as e:  # corrupt files make the libraries raise all sorts of errors
        raise _unsupported(p, f"{type(e).__name__}: {e}") from e
    return arr, (geom if geometry else geom.spacing)


def _read_metaimage(p: Path) -> tuple[np.ndarray, ImageGeometry]:
    from mlimaging.data._itk_formats import read_metaimage

    return read_metaimage(p)


def _read_nrrd(p: Path) -> tuple[np.ndarray, ImageGeometry]:
    from mlimaging.data._itk_formats import read_nrrd

    return read_nrrd(p)


def _read_dicom(p: Path) -> tuple[np.ndarray, ImageGeometry]:
    from mlimaging.data.dicom import read_dicom_file

    return read_dicom_file(p)


_RAS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def _read_nifti(p: Path) -> tuple[np.ndarray, ImageGeometry]:
    import nibabel as nib

    img = nib.load(str(p), mmap=False)
    if not isinstance(img, (nib.Nifti1Image, nib.MGHImage)):  # Nifti2Image is a subclass
        raise _unsupported(p, f"not a NIfTI-1/2 or MGH volume (nibabel read it as {type(img).__name__})")
    # Applies scl_slope/scl_inter only when they are not the identity (then floats);
    # integer data without scaling keep their dtype.
    arr = _native(np.asanyarray(img.dataobj))
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    n_spatial = min(arr.ndim, 3)
    zooms = np.asarray(img.header.get_zooms()[:n_spatial], dtype=np.float64)
    lps = _RAS_FLIP @ np.asarray(img.affine, dtype=np.float64)
    lin = lps[:3, :n_spatial]
    norms = np.linalg.norm(lin, axis=0)
    if np.any(norms <= 0) or not np.all(np.isfinite(lps)):
        lin, norms = np.eye(3)[:, :n_spatial] * np.where(zooms > 0, zooms, 1.0), np.where(zooms > 0, zooms, 1.0)
    ok = zooms.size == n_spatial and np.all(np.isfinite(zooms)) and np.all(zooms > 0)
    spacing = zooms if ok and np.allclose(zooms, norms, rtol=1e-5) else norms
    transforms = None
    if isinstance(img, nib.Nifti1Image):
        hdr = img.header
        transforms = NiftiTransforms(qform=np.asarray(hdr.get_qform(), dtype=np.float64),
                                     qform_code=int(hdr["qform_code"]),
                                     sform=np.asarray(hdr.get_sform(), dtype=np.float64),
                                     sform_code=int(hdr["sform_code"]), spatial_ndim=n_spatial)
    geom = ImageGeometry(spacing=tuple(float(v) for v in spacing), origin=tuple(lps[:3, 3]),
                         direction=lin / norms, nifti=transforms)
    return arr, geom


def _pil_frame_to_array(im: Any) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool).astype(np.uint8)
    if mode in ("L", "I", "F") or mode.startswith("I;16"):
        arr = np.asarray(im)
        if mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535:
            arr = arr.astype(np.uint16)  # 16-bit data that Pillow widened to int32
        return _native(arr).copy()
    if mode in ("LA", "La"):
        return np.asarray(im.convert("L")).copy()
    if mode == "RGB":
        return np.asarray(im).copy()
    return np.asarray(im.convert("RGB")).copy()  # RGBA, P, PA, CMYK, YCbCr, LAB, HSV...


def _read_pil(p: Path) -> tuple[np.ndarray, ImageGeometry]:
    from PIL import Image

    with Image.open(p) as im:
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        frames = []
        for k in range(n_frames):
            if n_frames > 1:
                im.seek(k)
            frames.append(_pil_frame_to_array(im))
    if n_frames == 1:
        arr = frames[0]
    else:
        shapes = {f.shape for f in frames}
        if len(shapes) != 1:
            raise _unsupported(p, f"its {n_frames} pages have different shapes {sorted(shapes)}")
        arr = np.stack(frames)
    n_spatial = arr.ndim - (1 if frames[0].ndim == 3 else 0)
    return arr, ImageGeometry.from_spacing((1.0,) * n_spatial)


def _read_npy(p: Path) -> tuple[np.ndarray, ImageGeometry]:
    arr = np.load(p, allow_pickle=False)
    if not isinstance(arr, np.ndarray):
        raise _unsupported(p, "it is not a .npy array file")
    if arr.ndim == 0:
        raise _unsupported(p, "it holds a 0-d array, not an image")
    return _native(arr), ImageGeometry.from_spacing((1.0,) * arr.ndim)


def _read_npz(p: Path) -> tuple[np.ndarray, ImageGeometry]:
    with np.load(p, allow_pickle=False) as z:
        keys = list(z.keys())
        if "image" in keys:
            key = "image"
        else:
            candidates = [k for k in keys if k not in ("spacing", "origin", "direction")]
            if len(candidates) != 1:
                raise _unsupported(
                    p, f"a .npz file needs an 'image' array or a single array, found keys {keys}"
                )
            key = candidates[0]
        arr = _native(z[key])
        meta = {k: np.asarray(z[k], dtype=np.float64) for k in ("spacing", "origin", "direction") if k in keys}
    if arr.ndim == 0:
        raise _unsupported(p, "it holds a 0-d array, not an image")
    if "spacing" not in meta:
        spacing = (1.0,) * arr.ndim
    else:
        values = np.atleast_1d(meta["spacing"]).ravel()
        spacing = check_spacing(tuple(values.tolist()), len(values))
    try:
        geom = ImageGeometry(spacing=spacing, origin=tuple(np.atleast_1d(meta.get("origin", np.zeros(0)))),
                             direction=meta.get("direction"))
    except ValueError as e:
        raise _unsupported(p, f"its geometry keys are inconsistent: {e}") from None
    return arr, geom


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def write_image(
    path: str | os.PathLike,
    array: Any,
    *,
    spacing: float | Sequence[float] | None = None,
    geometry: ImageGeometry | None = None,
    overwrite: bool = True,
) -> None:
    """Write ``array`` (NumPy array or tensor) to ``path``; the extension picks the format.

    Parameters
    ----------
    path
        ``.nii``, ``.nii.gz``, ``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.tif``/``.tiff``,
        ``.npy`` or ``.npz``. Parent folders are created.
    array
        NIfTI: 2 to 7 axes, the first ``min(ndim, 3)`` spatial. PNG & co.: ``(H, W)`` or
        ``(H, W, 3)``. NumPy: any array, every axis counted as spatial.
    spacing
        One value per spatial axis (a scalar is repeated; ``None`` means 1.0), checked
        with :func:`mlimaging.utils.check_spacing`: an identity geometry with this spacing.
    geometry
        The full geometry (from ``read_image(..., geometry=True)`` of the input the array
        was computed from, so the output overlays it): stored by NIfTI (affine, qform and
        sform with their codes) and ``.npz`` (``spacing``, ``origin``, ``direction``
        keys); the other formats cannot store it and warn when it is not the identity
        with unit spacing. Give ``spacing`` or ``geometry``, not both.
    overwrite
        When ``False``, an existing ``path`` raises ``FileExistsError``.

    Raises
    ------
    ValueError
        Unknown extension, DICOM (writing is not supported: use NIfTI), an array shape or
        dtype the format cannot hold (e.g. a float image outside ``[0, 1]`` to PNG), a
        bad spacing, or a geometry whose number of axes does not match the array.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from mlimaging.data import ImageGeometry
    >>> g = ImageGeometry(spacing=(2.0, 2.0, 3.0), origin=(32.0, -40.0, -16.0),
    ...                   direction=np.diag([-1.0, 1.0, 1.0]))
    >>> p = os.path.join(tempfile.mkdtemp(), "mask.nii.gz")
    >>> write_image(p, np.zeros((4, 5, 6), np.uint8), geometry=g)
    >>> read_image(p, geometry=True)[1] == g
    True
    """
    p = Path(path)
    fmt = image_format(p)
    if fmt is None:
        raise ValueError(
            f"Cannot write '{p}': unknown extension '{''.join(p.suffixes) or '(none)'}'. "
            f"Supported formats: {SUPPORTED_FORMATS}."
        )
    if fmt in ("dicom", "metaimage", "nrrd", "mgh"):
        raise ValueError(
            f"Cannot write '{p}': {fmt.upper() if fmt != 'metaimage' else 'MetaImage'} writing is not "
            "supported; write NIfTI (.nii.gz) instead, which keeps the geometry."
        )
    arr = _native(as_numpy(array))
    if arr.dtype == object or arr.dtype.kind not in "biufc":
        raise ValueError(f"Cannot write '{p}': unsupported array dtype {arr.dtype}.")
    if p.exists() and not overwrite:
        raise FileExistsError(f"'{p}' exists and overwrite=False")
    if geometry is not None:
        if not isinstance(geometry, ImageGeometry):
            raise ValueError(f"geometry must be an ImageGeometry (from read_image(..., geometry=True)), "
                             f"got {type(geometry).__name__}")
        if spacing is not None and not np.allclose(check_spacing(spacing, geometry.ndim), geometry.spacing):
            raise ValueError(f"Cannot write '{p}': give spacing or geometry, not both "
                             f"(spacing {spacing} differs from the geometry's {geometry.spacing})")
        spacing = geometry.spacing

    if fmt == "nifti":
        if geometry is not None and 2 <= arr.ndim and geometry.ndim != min(arr.ndim, 3):
            raise ValueError(f"Cannot write '{p}': the geometry has {geometry.ndim} spatial axes, the array "
                             f"{arr.shape} has {min(arr.ndim, 3)}.")
        data, sp = _prepare_nifti(p, arr, spacing)
    elif fmt == "pil":
        data, sp = _prepare_pil(p, arr, spacing, geometry)
    else:
        if arr.ndim < 1:
            raise ValueError(f"Cannot write '{p}': a 0-d array is not an image.")
        n = geometry.ndim if geometry is not None else arr.ndim
        if n > arr.ndim:
            raise ValueError(f"Cannot write '{p}': a {geometry.ndim}-D geometry for an array of shape {arr.shape}.")
        data, sp = arr, check_spacing(spacing, n)
        if fmt == "npy":
            _warn_geometry_dropped(p, sp, geometry)
    if geometry is not None and len(sp) != geometry.ndim:
        raise ValueError(f"Cannot write '{p}': the geometry has {geometry.ndim} spatial axes, the array "
                         f"{data.shape} has {len(sp)}.")

    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "nifti":
        _write_nifti(p, data, sp, geometry)
    elif fmt == "pil":
        _write_pil(p, data)
    elif fmt == "npy":
        with open(p, "wb") as f:  # a file object: np.save would not append ".npy"
            np.save(f, data, allow_pickle=False)
    else:
        extra = {} if geometry is None else {"origin": np.asarray(geometry.origin),
                                             "direction": np.asarray(geometry.direction)}
        with open(p, "wb") as f:
            np.savez_compressed(f, image=data, spacing=np.asarray(sp, dtype=np.float64), **extra)


def _warn_geometry_dropped(p: Path, spacing: tuple[float, ...], geometry: ImageGeometry | None = None) -> None:
    if any(s != 1.0 for s in spacing):
        warnings.warn(
            f"'{p}': this format cannot store the spacing {spacing}; it is dropped "
            "(write .nii.gz or .npz to keep it).",
            UserWarning,
            stacklevel=3,
        )
    elif geometry is not None and not geometry.is_identity:
        warnings.warn(
            f"'{p}': this format cannot store the image's origin and direction; they are dropped, "
            "so the file will not overlay its source in a viewer (write .nii.gz to keep them).",
            UserWarning,
            stacklevel=3,
        )


def _fits(arr: np.ndarray, dtype: Any) -> bool:
    if arr.size == 0:
        return True
    info = np.iinfo(dtype)
    return bool(arr.min() >= info.min and arr.max() <= info.max)


def _prepare_nifti(p: Path, arr: np.ndarray, spacing: Any) -> tuple[np.ndarray, tuple[float, ...]]:
    if not 2 <= arr.ndim <= 7:
        raise ValueError(f"Cannot write '{p}': NIfTI needs 2 to 7 axes, got shape {arr.shape}.")
    sp = check_spacing(spacing, min(arr.ndim, 3))
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype == np.int64 and _fits(arr, np.int32):
        arr = arr.astype(np.int32)
    elif arr.dtype == np.uint64 and _fits(arr, np.uint32):
        arr = arr.astype(np.uint32)
    elif arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return arr, sp


def _write_nifti(p: Path, arr: np.ndarray, spacing: tuple[float, ...], geometry: ImageGeometry | None) -> None:
    import nibabel as nib

    if geometry is None:
        diag = list(spacing) + [1.0] * (3 - len(spacing))
        img = nib.Nifti1Image(arr, np.diag([*diag, 1.0]), dtype=arr.dtype)  # sform code 2 (aligned), as nibabel
    else:
        img = nib.Nifti1Image(arr, None, dtype=arr.dtype)
        if geometry.nifti is not None and geometry.nifti.spatial_ndim == len(spacing):
            _set_nifti_transforms(img, geometry)
        else:
            affine = geometry.to_ras_affine()
            img.set_sform(affine, code=1)  # scanner_anat
            img.set_qform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(p))


def _set_nifti_transforms(img: Any, geometry: ImageGeometry) -> None:
    """The source file's qform and sform, with their codes (exact round trip)."""
    t = geometry.nifti
    assert t is not None
    img.set_qform(t.qform, code=t.qform_code)
    img.set_sform(t.sform, code=t.sform_code)
    # set_qform stores zooms from the qform; keep the geometry's (pixdim) spacing.
    zooms = list(img.header.get_zooms())
    zooms[: len(geometry.spacing)] = geometry.spacing
    img.header.set_zooms(zooms)


def _prepare_pil(p: Path, arr: np.ndarray, spacing: Any,
                 geometry: ImageGeometry | None = None) -> tuple[np.ndarray, tuple[float, ...]]:
    kind = _PIL_EXTS[Path(p.name.lower()).suffix]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ValueError(
            f"Cannot write '{p}': {kind} needs an (H, W) or (H, W, 3) array, got shape "
            f"{arr.shape}; write NIfTI or NPY for other shapes."
        )
    sp = check_spacing(spacing, 2)
    _warn_geometry_dropped(p, sp, geometry)
    sixteen_ok = kind in ("PNG", "TIFF") and arr.ndim == 2
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind in "iu" and arr.dtype not in (np.uint8, np.uint16):
        if arr.size and arr.min() < 0:
            raise ValueError(
                f"Cannot write '{p}': negative values in an integer array; {kind} stores "
                "unsigned values only (write NIfTI or NPY)."
            )
        if _fits(arr, np.uint8):
            arr = arr.astype(np.uint8)
        elif _fits(arr, np.uint16):
            arr = arr.astype(np.uint16)
        else:
            raise ValueError(f"Cannot write '{p}': values above 65535 do not fit {kind}.")
    elif arr.dtype.kind in "fc":
        if arr.dtype.kind == "c":
            raise ValueError(f"Cannot write '{p}': complex arrays cannot be written to {kind}.")
        finite = bool(np.all(np.isfinite(arr)))
        if not finite or (arr.size and (arr.min() < 0.0 or arr.max() > 1.0)):
            raise ValueError(
                f"Cannot write '{p}': float arrays must have values in [0, 1] to be written to "
                f"{kind} (they are scaled to uint8); convert the array to uint8/uint16 yourself "
                "or write NIfTI/NPY to keep the floats."
            )
        arr = np.round(arr.astype(np.float64) * 255.0).astype(np.uint8)
    if arr.dtype == np.uint16 and not sixteen_ok:
        if _fits(arr, np.uint8):
            arr = arr.astype(np.uint8)
        else:
            raise ValueError(
                f"Cannot write '{p}': {kind} {'RGB ' if arr.ndim == 3 else ''}images are 8-bit; "
                "values above 255 need a 2-D PNG or TIFF, or NIfTI/NPY."
            )
    return np.ascontiguousarray(arr), sp


def _write_pil(p: Path, arr: np.ndarray) -> None:
    from PIL import Image

    kind = _PIL_EXTS[Path(p.name.lower()).suffix]
    im = Image.fromarray(arr)
    kwargs: dict[str, Any] = {"quality": 95} if kind == "JPEG" else {}
    im.save(p, format=kind, **kwargs)

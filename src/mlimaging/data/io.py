"""Image IO with voxel spacing: NIfTI, DICOM, PNG/JPEG/BMP/TIFF and NumPy files.

:func:`read_image` returns ``(array, spacing)``: the array as stored in the file and one
spacing value per *spatial* axis, in the array's axis order. :func:`write_image` writes the
same formats (all but DICOM) so that a round trip gives back the values and the spacing.

Format rules
------------
NIfTI (``.nii``, ``.nii.gz``), read with nibabel
    The array is in voxel (storage) order, not reoriented. Integer data keep their dtype;
    the header's ``scl_slope`` / ``scl_inter`` are applied only when they are not the
    identity (nibabel then returns floats). Trailing singleton axes after the third are
    dropped (``(X, Y, Z, 1) -> (X, Y, Z)``). Spacing comes from ``header.get_zooms()`` for
    the first ``min(ndim, 3)`` axes: genuinely 4-D data (time series, multi-channel)
    keep their 4 axes and get the 3 spatial spacings. Writing: the affine is diagonal with
    the spacing; ``bool`` is written as ``uint8``, ``int64``/``uint64`` as ``int32``/
    ``uint32`` when the values fit, ``float16`` as ``float32``; other dtypes as they are.
DICOM (``.dcm``, ``.dicom``, or any file with the ``DICM`` preamble), read with pydicom
    ``pixel_array`` with *Rescale Slope* / *Rescale Intercept* applied (CT in HU), and for
    RT Dose the *Dose Grid Scaling* (Gy); the result is ``float32`` when a scaling is not
    the identity and keeps the stored integer dtype otherwise. Spacing: *Pixel Spacing*
    (row, column); multi-frame data ``(frames, rows, cols)`` get
    ``(slice spacing, row, column)`` where the slice spacing is *Spacing Between Slices*,
    else a uniform *Grid Frame Offset Vector* step (RT Dose), else *Slice Thickness*, else
    1.0. Colour DICOM comes out ``(..., rows, cols, 3)`` RGB. Writing DICOM is not
    supported.
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
    float array raises ``ValueError``. JPEG is lossy. A non-unit spacing cannot be stored
    and triggers a warning.
NumPy ``.npy`` / ``.npz``
    ``.npy``: the array, spacing 1.0 per axis (spacing is not stored; a non-unit spacing
    triggers a warning). ``.npz``: the array under the key ``image`` (or the only array in
    the file), spacing from the key ``spacing`` when present (else 1.0 per axis).

Errors: a missing file raises ``FileNotFoundError`` naming the path; an unknown extension
or an unreadable / corrupt file raises ``ValueError`` naming the path and listing the
supported formats.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlimaging.utils import as_numpy, check_spacing

__all__ = ["SUPPORTED_FORMATS", "read_image", "write_image", "image_format", "strip_image_suffix"]

SUPPORTED_FORMATS = (
    "NIfTI (.nii, .nii.gz), DICOM (.dcm, .dicom, or a file with the DICM preamble; read only), "
    "PNG/JPEG/BMP/TIFF (.png, .jpg, .jpeg, .bmp, .tif, .tiff), NumPy (.npy, .npz)"
)

_PIL_EXTS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
_DICOM_EXTS = {".dcm", ".dicom"}
# Longest first so that ".nii.gz" wins over ".gz"-less matches.
_SUFFIXES = (".nii.gz", ".nii", ".npz", ".npy", ".dcm", ".dicom", *_PIL_EXTS)


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
    """The format of ``path`` from its extension: ``"nifti"``, ``"dicom"``, ``"pil"``,
    ``"npy"``, ``"npz"``, or ``None`` when the extension is not a supported one."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz") or name.endswith(".nii"):
        return "nifti"
    ext = Path(name).suffix
    if ext in _DICOM_EXTS:
        return "dicom"
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


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, tuple[float, ...]]:
    """Read an image file and return ``(array, spacing)``.

    ``spacing`` has one value per spatial axis of ``array``, in the array's axis order
    (so ``len(spacing) == array.ndim`` for a grayscale 2-D / 3-D image, and one fewer
    for RGB images whose last axis holds the colour channels). See the module docstring
    for the exact rules of each format.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the extension is not supported, or the file cannot be read (corrupt, not the
        format its extension says, DICOM without pixel data or without a decoder).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x.nii.gz")
    >>> write_image(p, np.zeros((4, 5, 6), np.int16), spacing=(0.5, 0.5, 2.0))
    >>> arr, spacing = read_image(p)
    >>> arr.shape, arr.dtype.name, spacing
    ((4, 5, 6), 'int16', (0.5, 0.5, 2.0))
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"No such image file: '{p}'")
    if p.is_dir():
        raise _unsupported(p, "it is a directory, not an image file")
    fmt = image_format(p)
    if fmt is None:
        if _has_dicm_preamble(p):
            fmt = "dicom"
        else:
            raise _unsupported(p, f"unknown extension '{''.join(p.suffixes) or '(none)'}'")
    reader = {"nifti": _read_nifti, "dicom": _read_dicom, "pil": _read_pil,
              "npy": _read_npy, "npz": _read_npz}[fmt]
    try:
        return reader(p)
    except (FileNotFoundError, ValueError) as e:
        if isinstance(e, ValueError) and str(p) in str(e):
            raise
        raise _unsupported(p, f"{type(e).__name__}: {e}") from e
    except Exception as e:  # corrupt files make the libraries raise all sorts of errors
        raise _unsupported(p, f"{type(e).__name__}: {e}") from e


def _read_nifti(p: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import nibabel as nib

    img = nib.load(str(p), mmap=False)
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise _unsupported(p, f"not a NIfTI-1/2 volume (nibabel read it as {type(img).__name__})")
    # Applies scl_slope/scl_inter only when they are not the identity (then floats);
    # integer data without scaling keep their dtype.
    arr = _native(np.asanyarray(img.dataobj))
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    n_spatial = min(arr.ndim, 3)
    zooms = img.header.get_zooms()
    spacing = tuple(float(z) for z in zooms[:n_spatial])
    if len(spacing) < n_spatial or not all(np.isfinite(s) and s > 0 for s in spacing):
        spacing = tuple(s if (np.isfinite(s) and s > 0) else 1.0 for s in spacing)
        spacing = spacing + (1.0,) * (n_spatial - len(spacing))
    return arr, spacing


def _dicom_item(seq_parent: Any, sequence: str, keyword: str) -> Any:
    """``seq_parent.<sequence>[0].<keyword>`` or ``None``."""
    seq = seq_parent.get(sequence) if seq_parent is not None else None
    if not seq:
        return None
    return seq[0].get(keyword)


def _dicom_functional(ds: Any, group: str, keyword: str) -> Any:
    """``keyword`` from the shared, else the first per-frame, functional group ``group``."""
    for fg in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(fg)
        if seq:
            value = _dicom_item(seq[0], group, keyword)
            if value is not None:
                return value
    return None


def _positive(value: Any) -> float | None:
    try:
        v = abs(float(value))
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def _read_dicom(p: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(p), force=False)
    except InvalidDicomError:
        if image_format(p) != "dicom":
            raise
        # A .dcm file without the 128-byte preamble (older writers): read it anyway.
        ds = pydicom.dcmread(str(p), force=True)
    if "PixelData" not in ds:
        raise _unsupported(p, "the DICOM file has no pixel data")
    arr = _native(ds.pixel_array)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    n_spatial = arr.ndim - (1 if samples > 1 else 0)

    # Modality scaling: Rescale Slope/Intercept (top level, else functional groups).
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    if slope is None and intercept is None:
        slope = _dicom_functional(ds, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _dicom_functional(ds, "PixelValueTransformationSequence", "RescaleIntercept")
    slope = 1.0 if slope is None else float(slope)
    intercept = 0.0 if intercept is None else float(intercept)
    if ds.get("Modality") == "RTDOSE" and ds.get("DoseGridScaling") is not None:
        slope *= float(ds.DoseGridScaling)
    if slope != 1.0 or intercept != 0.0:
        arr = (arr.astype(np.float64) * slope + intercept).astype(np.float32)

    # In-plane spacing (row, column).
    ps = ds.get("PixelSpacing")
    if ps is None:
        ps = _dicom_functional(ds, "PixelMeasuresSequence", "PixelSpacing")
    if ps is None:
        ps = ds.get("ImagerPixelSpacing")
    row_col = (1.0, 1.0)
    if ps is not None and len(ps) >= 2:
        r, c = _positive(ps[0]), _positive(ps[1])
        row_col = (r or 1.0, c or 1.0)

    if n_spatial == 2:
        return arr, row_col
    if n_spatial == 3 and n_frames > 1:
        between = _positive(ds.get("SpacingBetweenSlices"))
        if between is None:
            between = _positive(_dicom_functional(ds, "PixelMeasuresSequence", "SpacingBetweenSlices"))
        if between is None:
            offsets = ds.get("GridFrameOffsetVector")
            if offsets is not None and len(offsets) == n_frames and n_frames > 1:
                steps = np.diff(np.asarray([float(o) for o in offsets]))
                if np.allclose(steps, steps[0], rtol=1e-4, atol=1e-6):
                    between = _positive(steps[0])
        if between is None:
            between = _positive(ds.get("SliceThickness"))
        if between is None:
            between = _positive(_dicom_functional(ds, "PixelMeasuresSequence", "SliceThickness"))
        return arr, (between or 1.0, *row_col)
    raise _unsupported(p, f"unexpected DICOM pixel array of shape {arr.shape}")


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


def _read_pil(p: Path) -> tuple[np.ndarray, tuple[float, ...]]:
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
    return arr, (1.0,) * n_spatial


def _read_npy(p: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    arr = np.load(p, allow_pickle=False)
    if not isinstance(arr, np.ndarray):
        raise _unsupported(p, "it is not a .npy array file")
    return _native(arr), (1.0,) * arr.ndim


def _read_npz(p: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    with np.load(p, allow_pickle=False) as z:
        keys = list(z.keys())
        if "image" in keys:
            key = "image"
        else:
            candidates = [k for k in keys if k != "spacing"]
            if len(candidates) != 1:
                raise _unsupported(
                    p, f"a .npz file needs an 'image' array or a single array, found keys {keys}"
                )
            key = candidates[0]
        arr = _native(z[key])
        spacing_arr = z["spacing"] if "spacing" in keys else None
    if spacing_arr is None:
        return arr, (1.0,) * arr.ndim
    values = np.atleast_1d(np.asarray(spacing_arr, dtype=np.float64)).ravel()
    return arr, check_spacing(tuple(values.tolist()), len(values))


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def write_image(
    path: str | os.PathLike,
    array: Any,
    *,
    spacing: float | Sequence[float] | None = None,
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
        with :func:`mlimaging.utils.check_spacing`. Stored by NIfTI (affine and zooms) and
        ``.npz``; the other formats cannot store it and warn when it is not all 1.0.
    overwrite
        When ``False``, an existing ``path`` raises ``FileExistsError``.

    Raises
    ------
    ValueError
        Unknown extension, DICOM (writing is not supported: use NIfTI), an array shape or
        dtype the format cannot hold (e.g. a float image outside ``[0, 1]`` to PNG), or a
        bad spacing.
    """
    p = Path(path)
    fmt = image_format(p)
    if fmt is None:
        raise ValueError(
            f"Cannot write '{p}': unknown extension '{''.join(p.suffixes) or '(none)'}'. "
            f"Supported formats: {SUPPORTED_FORMATS}."
        )
    if fmt == "dicom":
        raise ValueError(
            f"Cannot write '{p}': DICOM writing is not supported; write NIfTI (.nii.gz) "
            "instead, which keeps the spacing."
        )
    arr = _native(as_numpy(array))
    if arr.dtype == object or arr.dtype.kind not in "biufc":
        raise ValueError(f"Cannot write '{p}': unsupported array dtype {arr.dtype}.")
    if p.exists() and not overwrite:
        raise FileExistsError(f"'{p}' exists and overwrite=False")

    if fmt == "nifti":
        data, sp = _prepare_nifti(p, arr, spacing)
    elif fmt == "pil":
        data, sp = _prepare_pil(p, arr, spacing)
    else:
        if arr.ndim < 1:
            raise ValueError(f"Cannot write '{p}': a 0-d array is not an image.")
        data, sp = arr, check_spacing(spacing, arr.ndim)
        if fmt == "npy":
            _warn_spacing_dropped(p, sp)

    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "nifti":
        _write_nifti(p, data, sp)
    elif fmt == "pil":
        _write_pil(p, data)
    elif fmt == "npy":
        with open(p, "wb") as f:  # a file object: np.save would not append ".npy"
            np.save(f, data, allow_pickle=False)
    else:
        with open(p, "wb") as f:
            np.savez_compressed(f, image=data, spacing=np.asarray(sp, dtype=np.float64))


def _warn_spacing_dropped(p: Path, spacing: tuple[float, ...]) -> None:
    if any(s != 1.0 for s in spacing):
        warnings.warn(
            f"'{p}': this format cannot store the spacing {spacing}; it is dropped "
            "(write .nii.gz or .npz to keep it).",
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


def _write_nifti(p: Path, arr: np.ndarray, spacing: tuple[float, ...]) -> None:
    import nibabel as nib

    diag = list(spacing) + [1.0] * (3 - len(spacing))
    affine = np.diag([*diag, 1.0])
    img = nib.Nifti1Image(arr, affine, dtype=arr.dtype)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(p))


def _prepare_pil(p: Path, arr: np.ndarray, spacing: Any) -> tuple[np.ndarray, tuple[float, ...]]:
    kind = _PIL_EXTS[Path(p.name.lower()).suffix]
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == 3)):
        raise ValueError(
            f"Cannot write '{p}': {kind} needs an (H, W) or (H, W, 3) array, got shape "
            f"{arr.shape}; write NIfTI or NPY for other shapes."
        )
    sp = check_spacing(spacing, 2)
    _warn_spacing_dropped(p, sp)
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

"""DICOM reading: single files (2-D, multi-frame) and series folders, with their geometry.

A **series folder** (a folder of single-slice files, as scanners export them) is read as
one volume, as SimpleITK's ``ImageSeriesReader`` with GDCM's file-name sorting does:

1. Files are grouped by *Series Instance UID*; a folder with several series raises a
   ``ValueError`` that lists them (UID, description, number of files), unless
   ``series_uid`` picks one.
2. Slices are sorted by their position along the slice normal
   :math:`n = r \\times c` (row and column direction cosines of *Image Orientation
   (Patient)*): :math:`t_k = n \\cdot p_k` with :math:`p_k` the *Image Position
   (Patient)* of slice :math:`k`. All slices must share the orientation and the
   in-plane size.
3. The slice spacing is the distance between consecutive positions along :math:`n`
   (not *Slice Thickness*, which is the thickness of the excited slab, and often differs);
   uneven gaps raise a warning and the mean step is used, as ITK does.
4. *Rescale Slope* / *Intercept* are applied per slice (CT in HU), giving ``float32`` when
   one of them is not the identity.

The array is ``(slices, rows, columns)`` (SimpleITK's ``GetArrayFromImage`` order), with
:class:`~mlimaging.data.geometry.ImageGeometry` in that order: origin = position of the
first slice; direction columns = :math:`n`, the column cosine (down the rows), the row
cosine (along a row).
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from mlimaging.data.geometry import ImageGeometry
from mlimaging.data.io import _native

__all__ = ["read_dicom_file", "read_dicom_series", "list_dicom_series"]


def _item(parent: Any, sequence: str, keyword: str) -> Any:
    seq = parent.get(sequence) if parent is not None else None
    if not seq:
        return None
    return seq[0].get(keyword)


def _functional(ds: Any, group: str, keyword: str) -> Any:
    """``keyword`` from the shared, else the first per-frame, functional group ``group``."""
    for fg in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        seq = ds.get(fg)
        if seq:
            value = _item(seq[0], group, keyword)
            if value is not None:
                return value
    return None


def _tag(ds: Any, keyword: str, group: str) -> Any:
    """``keyword`` at the top level of ``ds``, else from the functional group ``group`` (enhanced DICOM)."""
    value = ds.get(keyword)
    return _functional(ds, group, keyword) if value is None else value


def _positive(value: Any) -> float | None:
    try:
        v = abs(float(value))
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) and v > 0 else None


def _rescale(ds: Any) -> tuple[float, float]:
    slope = ds.get("RescaleSlope")
    intercept = ds.get("RescaleIntercept")
    if slope is None and intercept is None:
        slope = _functional(ds, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = _functional(ds, "PixelValueTransformationSequence", "RescaleIntercept")
    slope = 1.0 if slope is None else float(slope)
    intercept = 0.0 if intercept is None else float(intercept)
    if ds.get("Modality") == "RTDOSE" and ds.get("DoseGridScaling") is not None:
        slope *= float(ds.DoseGridScaling)
    return slope, intercept


def _rescaled(arr: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Modality values ``arr * slope + intercept`` as ``float32`` (computed in float64)."""
    return (arr.astype(np.float64) * slope + intercept).astype(np.float32)


def _pixel_spacing(ds: Any) -> tuple[float, float]:
    ps = _tag(ds, "PixelSpacing", "PixelMeasuresSequence")
    if ps is None:
        ps = ds.get("ImagerPixelSpacing")
    if ps is not None and len(ps) >= 2:
        r, c = _positive(ps[0]), _positive(ps[1])
        return (r or 1.0, c or 1.0)
    return (1.0, 1.0)


def _orientation(ds: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Row cosine (along a row, column index increasing) and column cosine, or ``None``."""
    iop = _tag(ds, "ImageOrientationPatient", "PlaneOrientationSequence")
    if iop is None or len(iop) != 6:
        return None
    v = np.asarray([float(x) for x in iop])
    row, col = v[:3], v[3:]
    if not (np.isfinite(v).all() and np.linalg.norm(row) > 0.5 and np.linalg.norm(col) > 0.5):
        return None
    return row / np.linalg.norm(row), col / np.linalg.norm(col)


def _position(ds: Any) -> np.ndarray | None:
    ipp = _tag(ds, "ImagePositionPatient", "PlanePositionSequence")
    if ipp is None or len(ipp) != 3:
        return None
    p = np.asarray([float(x) for x in ipp])
    return p if np.isfinite(p).all() else None


def _dcmread(p: Path, **kw: Any) -> Any:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(str(p), **kw)
    except InvalidDicomError:
        if p.suffix.lower() not in (".dcm", ".dicom"):
            raise
        return pydicom.dcmread(str(p), force=True, **kw)  # no 128-byte preamble (older writers)


class MissingDecoderError(ValueError):
    """A supported DICOM file whose compressed pixel data no installed decoder can read."""


def _is_palette(ds: Any) -> bool:
    return str(ds.get("PhotometricInterpretation", "")).strip().upper() == "PALETTE COLOR"


def _pixels(ds: Any, p: Path) -> np.ndarray:
    """``ds.pixel_array`` (native byte order; *PALETTE COLOR* indices looked up into RGB, as
    pydicom's ``apply_color_lut``), or a ValueError naming the decoder to install."""
    try:
        arr = ds.pixel_array
        if _is_palette(ds):  # the stored values are indices into the colour tables, not intensities
            try:
                from pydicom.pixels import apply_color_lut
            except ImportError:  # pydicom 2.x
                from pydicom.pixel_data_handlers.util import apply_color_lut

            arr = apply_color_lut(arr, ds)
        return _native(arr)
    except (RuntimeError, NotImplementedError, ImportError) as e:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        raise MissingDecoderError(
            f"Cannot read '{p}': its pixel data are compressed ({name}) and no installed decoder "
            "handles them; install the optional decoders with `pip install pylibjpeg pylibjpeg-libjpeg "
            f"pylibjpeg-openjpeg pylibjpeg-rle` (or `pip install python-gdcm`). pydicom said: {e}"
        ) from e


def read_dicom_file(path: str | os.PathLike) -> tuple[np.ndarray, ImageGeometry]:
    """One DICOM file: ``(array, geometry)``.

    ``pixel_array`` with *Rescale Slope* / *Intercept* applied (and *Dose Grid Scaling*
    for RT Dose): ``float32`` when a scaling is not the identity, else the stored dtype.
    A single frame is ``(rows, cols)`` with a 2-D geometry placed in 3-D space
    (origin = *Image Position (Patient)*, direction columns = column and row cosines);
    multi-frame data are ``(frames, rows, cols)`` with the frame step from *Spacing
    Between Slices*, else a uniform *Grid Frame Offset Vector* step (RT Dose), else the
    per-frame positions, else *Slice Thickness*, else 1. Colour data come out
    ``(..., rows, cols, 3)`` RGB (YBR converted by pydicom; *PALETTE COLOR* indices looked
    up in the file's colour tables, 8- or 16-bit as they store). Files without orientation
    get the identity geometry.
    """
    p = Path(path)
    ds = _dcmread(p)
    if "PixelData" not in ds:
        raise ValueError(f"Cannot read '{p}': the DICOM file has no pixel data")
    arr = _pixels(ds, p)
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    n_spatial = arr.ndim - (1 if samples > 1 or _is_palette(ds) else 0)
    slope, intercept = _rescale(ds)
    if slope != 1.0 or intercept != 0.0:
        arr = _rescaled(arr, slope, intercept)
    row_col = _pixel_spacing(ds)
    orient = _orientation(ds)
    origin = _position(ds)
    if n_spatial == 2:
        if orient is None:
            return arr, ImageGeometry.from_spacing(row_col)
        row, col = orient
        return arr, ImageGeometry(spacing=row_col, origin=tuple(origin if origin is not None else np.zeros(3)),
                                  direction=np.stack([col, row], axis=1))
    if n_spatial == 3 and n_frames > 1:
        between = _positive(ds.get("SpacingBetweenSlices"))
        if between is None:
            between = _positive(_functional(ds, "PixelMeasuresSequence", "SpacingBetweenSlices"))
        if between is None:
            offsets = ds.get("GridFrameOffsetVector")
            if offsets is not None and len(offsets) == n_frames:
                steps = np.diff(np.asarray([float(o) for o in offsets]))
                if np.allclose(steps, steps[0], rtol=1e-4, atol=1e-6):
                    between = _positive(steps[0])
        normal = np.cross(*orient) if orient is not None else None
        frames = ds.get("PerFrameFunctionalGroupsSequence")
        if normal is not None and frames and len(frames) == n_frames:
            pos = [_item(f, "PlanePositionSequence", "ImagePositionPatient") for f in frames]
            if all(q is not None and len(q) == 3 for q in pos):
                pts = np.asarray([[float(x) for x in q] for q in pos])
                origin = pts[0]
                t = pts @ normal
                if between is None and n_frames > 1 and abs(t[1] - t[0]) > 0:
                    between = float(np.mean(np.abs(np.diff(t))))
                if t[-1] < t[0]:
                    normal = -normal
        if between is None:
            between = _positive(ds.get("SliceThickness"))
        if between is None:
            between = _positive(_functional(ds, "PixelMeasuresSequence", "SliceThickness"))
        spacing = (between or 1.0, *row_col)
        if orient is None:
            return arr, ImageGeometry.from_spacing(spacing)
        row, col = orient
        return arr, ImageGeometry(spacing=spacing, origin=tuple(origin if origin is not None else np.zeros(3)),
                                  direction=np.stack([normal, col, row], axis=1))
    raise ValueError(f"Cannot read '{p}': unexpected DICOM pixel array of shape {arr.shape}")


def _scan(folder: Path) -> dict[str, list[tuple[Path, Any]]]:
    """Headers (no pixel data) of the DICOM files in ``folder``, grouped by Series Instance UID."""
    series: dict[str, list[tuple[Path, Any]]] = defaultdict(list)
    for f in sorted(folder.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        try:
            ds = _dcmread(f, stop_before_pixels=True)
        except Exception:  # not DICOM: ignored, as ITK's series scan does
            continue
        if "SeriesInstanceUID" not in ds and "ImagePositionPatient" not in ds:
            continue
        series[str(ds.get("SeriesInstanceUID", ""))].append((f, ds))
    return series


def list_dicom_series(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The DICOM series in ``folder``: one dict per series (``uid``, ``description``, ``files``, ``modality``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"'{folder}' is not a folder")
    return [{"uid": uid, "description": str(items[0][1].get("SeriesDescription", "")),
             "modality": str(items[0][1].get("Modality", "")), "files": len(items)}
            for uid, items in _scan(folder).items()]


def read_dicom_series(folder: str | os.PathLike, *, series_uid: str | None = None
                      ) -> tuple[np.ndarray, ImageGeometry]:
    """Read a folder of DICOM slices as one ``(slices, rows, cols)`` volume with its geometry.

    See the module docstring for the rules (grouping, sorting, spacing, rescaling).

    Parameters
    ----------
    folder
        A folder holding the files of one or more series (other files are ignored).
    series_uid
        The *Series Instance UID* to read when the folder holds several series.

    Raises
    ------
    FileNotFoundError
        No DICOM file in ``folder``.
    ValueError
        Several series and no ``series_uid`` (the message lists them), an unknown
        ``series_uid``, slices of different orientation or size, two slices at the same
        position, or slices without position/orientation.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"'{folder}' is not a folder")
    groups = _scan(folder)
    if not groups:
        raise FileNotFoundError(f"No DICOM files in '{folder}'")
    if series_uid is None:
        if len(groups) > 1:
            listing = "; ".join(f"{uid} ({items[0][1].get('SeriesDescription', 'no description')}, "
                                f"{len(items)} files)" for uid, items in sorted(groups.items()))
            raise ValueError(f"'{folder}' holds {len(groups)} DICOM series; choose one with series_uid "
                             f"(`mlimaging info FOLDER --series UID`), or put each series in its own folder: {listing}")
        series_uid = next(iter(groups))
    if series_uid not in groups:
        raise ValueError(f"series_uid {series_uid!r} is not in '{folder}'; it holds {sorted(groups)}")
    items = groups[series_uid]
    if len(items) == 1:
        return read_dicom_file(items[0][0])

    orients = [_orientation(ds) for _, ds in items]
    positions = [_position(ds) for _, ds in items]
    if any(o is None for o in orients) or any(q is None for q in positions):
        missing = [f.name for (f, _), o, q in zip(items, orients, positions, strict=True) if o is None or q is None]
        raise ValueError(f"DICOM series in '{folder}': slices without Image Position/Orientation (Patient) "
                         f"cannot be stacked: {missing[:5]}")
    row, col = orients[0]  # type: ignore[misc]
    for (f, _), o in zip(items, orients, strict=True):
        if not (np.allclose(o[0], row, atol=1e-4) and np.allclose(o[1], col, atol=1e-4)):  # type: ignore[index]
            raise ValueError(f"DICOM series in '{folder}': {f.name} has a different orientation; "
                             "a series must share one orientation")
    normal = np.cross(row, col)
    t = np.asarray([float(q @ normal) for q in positions])  # type: ignore[operator]
    order = np.argsort(t, kind="stable")
    t_sorted = t[order]
    steps = np.diff(t_sorted)
    if np.any(steps < 1e-4):
        k = int(np.argmin(steps))
        a, b = items[order[k]][0].name, items[order[k + 1]][0].name
        raise ValueError(f"DICOM series in '{folder}': {a} and {b} are at the same position "
                         f"({t_sorted[k]:g} mm along the slice normal); the folder may mix acquisitions")
    mean_step = float(np.mean(steps))
    if not np.allclose(steps, mean_step, rtol=1e-3, atol=1e-3):
        warnings.warn(f"DICOM series in '{folder}': uneven slice gaps (from {steps.min():g} to {steps.max():g} mm); "
                      f"using the mean {mean_step:g} mm as the slice spacing, the volume is not exact",
                      UserWarning, stacklevel=2)

    slices, scaled = [], False
    shape0 = None
    for k in order:
        f = items[k][0]
        ds = _dcmread(f)  # read as _scan read its header
        if "PixelData" not in ds:
            raise ValueError(f"DICOM series in '{folder}': {f.name} has no pixel data")
        a = _pixels(ds, f)
        if shape0 is None:
            shape0 = a.shape
        elif a.shape != shape0:
            raise ValueError(f"DICOM series in '{folder}': {f.name} has shape {a.shape}, others {shape0}")
        slope, intercept = _rescale(ds)
        if slope != 1.0 or intercept != 0.0:
            scaled = True
        slices.append((a, slope, intercept))
    if scaled:
        vol = np.stack([_rescaled(a, s, i) for a, s, i in slices])
    else:
        vol = np.stack([a for a, _, _ in slices])
    first = items[order[0]][1]
    rs, cs = _pixel_spacing(first)
    geometry = ImageGeometry(spacing=(mean_step, rs, cs), origin=tuple(positions[order[0]]),  # type: ignore[arg-type]
                             direction=np.stack([normal, col, row], axis=1))
    return vol, geometry

"""MetaImage (``.mha``/``.mhd``) and NRRD (``.nrrd``/``.nhdr``) readers, with their geometry.

Both formats store the fastest-varying axis (x) first; the array returned is in C order,
``(z, y, x)`` (SimpleITK's ``GetArrayFromImage`` order), and the
:class:`~mlimaging.data.geometry.ImageGeometry` is given in that order (LPS world).

MetaImage: ``NDims``, ``DimSize``, ``ElementType``, ``ElementSpacing``, ``Offset`` (or
``Origin``/``Position``), ``TransformMatrix`` (or ``Rotation``/``Orientation``; row
:math:`k` of the matrix as written is the world direction of image axis :math:`k`, as
ITK's MetaImageIO reads it), ``ElementNumberOfChannels``, ``BinaryDataByteOrderMSB``,
``CompressedData`` (zlib), ``HeaderSize`` and ``ElementDataFile`` (``LOCAL`` or a file
next to the header). NRRD: ``type``, ``dimension``, ``sizes``, ``endian``, ``encoding``
(raw, gzip, bzip2, ascii), ``space`` (LPS or RAS, converted to LPS), ``space directions``,
``space origin``, ``spacings`` (when there are no space directions), ``byte skip``,
``line skip`` and ``data file`` (detached ``.nhdr``). Formats written by ITK, 3D Slicer
and pynrrd are covered; other variants raise ``ValueError``.
"""

from __future__ import annotations

import bz2
import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from mlimaging.data.geometry import ImageGeometry

__all__ = ["read_metaimage", "read_nrrd"]

_MET_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
    "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}


def _geometry_from_xyz(spacing: np.ndarray, origin: np.ndarray, direction: np.ndarray) -> ImageGeometry:
    """ITK-order (x first) spacing/direction -> array-order (last axis = x) geometry."""
    return ImageGeometry(spacing=tuple(spacing[::-1]), origin=tuple(origin), direction=direction[:, ::-1])


def _floats(text: str, n: int | None, key: str, path: Path) -> np.ndarray:
    try:
        vals = np.asarray([float(v) for v in text.split()])
    except ValueError:
        raise ValueError(f"Cannot read '{path}': bad {key} value {text!r}") from None
    if n is not None and vals.size != n:
        raise ValueError(f"Cannot read '{path}': {key} needs {n} values, got {text!r}")
    return vals


def read_metaimage(path: str | Path) -> tuple[np.ndarray, ImageGeometry]:
    """Read a MetaImage file (``.mha`` with its data, or ``.mhd`` header + raw file)."""
    p = Path(path)
    raw = p.read_bytes()
    header: dict[str, str] = {}
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\n", pos)
        end = len(raw) if end < 0 else end
        line = raw[pos:end].decode("latin-1").strip()
        pos = end + 1
        if not line:
            continue
        if "=" not in line:
            raise ValueError(f"Cannot read '{p}': not a MetaImage header line: {line[:60]!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        header[key] = value
        if key == "ElementDataFile":
            break
    else:
        raise ValueError(f"Cannot read '{p}': no ElementDataFile in the MetaImage header")
    try:
        ndim = int(header["NDims"])
        sizes = [int(v) for v in header["DimSize"].split()]
        dtype = np.dtype(_MET_TYPES[header["ElementType"]])
    except KeyError as e:
        raise ValueError(f"Cannot read '{p}': MetaImage header lacks or has an unknown {e}") from None
    if len(sizes) != ndim:
        raise ValueError(f"Cannot read '{p}': DimSize {sizes} does not have NDims={ndim} values")
    channels = int(header.get("ElementNumberOfChannels", "1"))
    msb = header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False")).lower() == "true"
    dtype = dtype.newbyteorder(">" if msb else "<")
    spacing = _floats(header.get("ElementSpacing", header.get("ElementSize", " ".join(["1"] * ndim))),
                      ndim, "ElementSpacing", p)
    origin_text = header.get("Offset", header.get("Origin", header.get("Position")))
    origin = _floats(origin_text, ndim, "Offset", p) if origin_text else np.zeros(ndim)
    matrix_text = header.get("TransformMatrix", header.get("Rotation", header.get("Orientation")))
    direction = (_floats(matrix_text, ndim * ndim, "TransformMatrix", p).reshape(ndim, ndim).T
                 if matrix_text else np.eye(ndim))
    data_file = header["ElementDataFile"]
    if data_file == "LOCAL":
        skip = int(header.get("HeaderSize", "0"))
        payload = raw[pos + max(skip, 0):] if skip >= 0 else raw
    else:
        if data_file.upper().startswith("LIST") or "%" in data_file:
            raise ValueError(f"Cannot read '{p}': multi-file MetaImage data ({data_file}) is not supported")
        target = p.parent / data_file
        if not target.exists():
            raise FileNotFoundError(f"'{p}': its data file '{target}' does not exist")
        payload = target.read_bytes()
        skip = int(header.get("HeaderSize", "0"))
        payload = payload[skip:] if skip > 0 else payload
    count = int(np.prod(sizes)) * channels
    if header.get("CompressedData", "False").lower() == "true":
        payload = zlib.decompress(payload)
    nbytes = count * dtype.itemsize
    if header.get("HeaderSize", "0") == "-1":
        payload = payload[len(payload) - nbytes:]
    if len(payload) < nbytes:
        raise ValueError(f"Cannot read '{p}': {len(payload)} bytes of data, {nbytes} expected for {sizes}")
    arr = np.frombuffer(payload[:nbytes], dtype=dtype).astype(dtype.newbyteorder("="))
    shape = tuple(sizes[::-1]) + ((channels,) if channels > 1 else ())
    return arr.reshape(shape).copy(), _geometry_from_xyz(spacing, origin, direction)


_NRRD_TYPES = {
    "signed char": "i1", "int8": "i1", "int8_t": "i1", "uchar": "u1", "unsigned char": "u1", "uint8": "u1",
    "uint8_t": "u1", "short": "i2", "short int": "i2", "signed short": "i2", "signed short int": "i2",
    "int16": "i2", "int16_t": "i2", "ushort": "u2", "unsigned short": "u2", "unsigned short int": "u2",
    "uint16": "u2", "uint16_t": "u2", "int": "i4", "signed int": "i4", "int32": "i4", "int32_t": "i4",
    "uint": "u4", "unsigned int": "u4", "uint32": "u4", "uint32_t": "u4", "longlong": "i8",
    "long long": "i8", "long long int": "i8", "signed long long": "i8", "signed long long int": "i8",
    "int64": "i8", "int64_t": "i8", "ulonglong": "u8", "unsigned long long": "u8",
    "unsigned long long int": "u8", "uint64": "u8", "uint64_t": "u8", "float": "f4", "double": "f8",
}
_RAS_SPACES = {"right-anterior-superior", "ras", "scanner-xyz", "3d-right-handed"}
_LPS_SPACES = {"left-posterior-superior", "lps"}


def _vectors(text: str) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for token in re.findall(r"\([^)]*\)|none", text):
        out.append(None if token == "none" else np.asarray([float(v) for v in token[1:-1].split(",")]))
    return out


def read_nrrd(path: str | Path) -> tuple[np.ndarray, ImageGeometry]:
    """Read an NRRD file (``.nrrd`` with attached data, or ``.nhdr`` with a data file)."""
    p = Path(path)
    raw = p.read_bytes()
    if not raw.startswith(b"NRRD000"):
        raise ValueError(f"Cannot read '{p}': no NRRD magic line")
    sep = raw.find(b"\n\n")
    head_bytes, payload = (raw, b"") if sep < 0 else (raw[:sep], raw[sep + 2:])
    fields: dict[str, str] = {}
    for line in head_bytes.decode("latin-1").splitlines()[1:]:
        if line.startswith("#") or ":=" in line or ":" not in line:
            continue
        key, value = line.split(":", 1)
        fields[key.strip().lower()] = value.strip()
    try:
        ndim = int(fields["dimension"])
        sizes = [int(v) for v in fields["sizes"].split()]
        dtype = np.dtype(_NRRD_TYPES[fields["type"].lower()])
    except KeyError as e:
        raise ValueError(f"Cannot read '{p}': NRRD header lacks or has an unknown {e}") from None
    encoding = fields.get("encoding", "raw").lower()
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if fields.get("endian", "little").lower() == "big" else "<")
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file:
        if data_file.upper().startswith("LIST") or len(data_file.split()) > 1:
            raise ValueError(f"Cannot read '{p}': multi-file NRRD data is not supported")
        target = p.parent / data_file
        if not target.exists():
            raise FileNotFoundError(f"'{p}': its data file '{target}' does not exist")
        payload = target.read_bytes()
    for _ in range(int(fields.get("line skip", "0"))):
        payload = payload[payload.find(b"\n") + 1:]
    count = int(np.prod(sizes))
    if encoding in ("gzip", "gz"):
        payload = gzip.decompress(payload)
    elif encoding in ("bzip2", "bz2"):
        payload = bz2.decompress(payload)
    elif encoding in ("ascii", "text", "txt"):
        arr = np.asarray(payload.decode("latin-1").split(), dtype=dtype.newbyteorder("="))[:count]
        payload = arr.tobytes()
        dtype = arr.dtype
    elif encoding != "raw":
        raise ValueError(f"Cannot read '{p}': NRRD encoding {encoding!r} is not supported")
    nbytes = count * dtype.itemsize
    skip = int(fields.get("byte skip", "0"))
    payload = payload[len(payload) - nbytes:] if skip == -1 else payload[skip:]
    if len(payload) < nbytes:
        raise ValueError(f"Cannot read '{p}': {len(payload)} bytes of data, {nbytes} expected for {sizes}")
    arr = np.frombuffer(payload[:nbytes], dtype=dtype).astype(dtype.newbyteorder("="))
    arr = arr.reshape(sizes[::-1]).copy()

    space = fields.get("space", "").lower()
    dirs = _vectors(fields.get("space directions", ""))
    spatial = [k for k, v in enumerate(dirs) if v is not None] if dirs else list(range(ndim))
    if dirs and len(dirs) != ndim:
        raise ValueError(f"Cannot read '{p}': 'space directions' needs {ndim} entries")
    if len(spatial) != ndim:  # a non-spatial axis (a vector or time axis): move it last
        nonspatial = [k for k in range(ndim) if k not in spatial]
        arr = np.moveaxis(arr, [ndim - 1 - k for k in nonspatial], list(range(-len(nonspatial), 0)))
    d = len(spatial)
    if dirs:
        lin = np.stack([dirs[k] for k in spatial], axis=1)  # type: ignore[misc]
        spacing = np.linalg.norm(lin, axis=0)
        direction = lin / spacing
    else:
        sp_text = fields.get("spacings")
        spacing = _floats(sp_text, ndim, "spacings", p) if sp_text else np.ones(ndim)
        spacing = np.where(np.isfinite(spacing) & (spacing > 0), spacing, 1.0)
        direction = np.eye(d)
    origin_text = fields.get("space origin")
    origin = (np.asarray([float(v) for v in origin_text.strip("() ").split(",")])
              if origin_text else np.zeros(direction.shape[0]))
    if space in _RAS_SPACES and direction.shape[0] == 3:
        flip = np.array([-1.0, -1.0, 1.0])
        direction, origin = direction * flip[:, None], origin * flip
    elif space and space not in _LPS_SPACES and dirs:
        raise ValueError(f"Cannot read '{p}': NRRD space {space!r} is not supported (LPS or RAS)")
    return arr, _geometry_from_xyz(np.asarray(spacing), origin, direction)


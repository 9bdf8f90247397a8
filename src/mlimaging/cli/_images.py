"""Reading input images and writing outputs for the image commands (``segment``, ``register``, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlimaging.cli.app import echo_warnings

if TYPE_CHECKING:  # NumPy is imported inside the functions: `mlimaging --help` stays fast
    import numpy as np

__all__ = ["as_dtype_of", "check_format_fits", "check_label_format", "check_same_grid", "for_output", "label_map",
           "read_gray", "write_output"]


def read_gray(path: Path, what: str) -> tuple[np.ndarray, Any]:
    """A grayscale 2D or 3D image of real, finite values and its geometry (``ValueError`` naming ``what``)."""
    import numpy as np

    from mlimaging.data import read_image
    from mlimaging.data.io import image_format

    array, geometry = read_image(path, geometry=True)
    if array.ndim != geometry.ndim or array.ndim not in (2, 3):
        # DICOM, PNG/TIFF readers give 4 axes only to colour frames/pages: (frames, rows, cols, 3)
        series = image_format(path) not in ("dicom", "pil", None) and not Path(path).is_dir()
        kind = ("a 4D series: pick one volume, e.g. with nibabel's slicer"
                if series and array.ndim == 4 and geometry.ndim >= 3
                else "colour or multi-channel images are not supported here")
        raise ValueError(f"{what} {path} must be a grayscale 2D or 3D image, got shape {array.shape} ({kind})")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} {path} must hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{what} {path} holds NaN or infinite values")
    return array, geometry


def check_label_format(path: Path, option: str) -> None:
    """Refuse a lossy format (JPEG) for a label map: its compression changes label values."""
    if path.name.lower().endswith((".jpg", ".jpeg")):
        raise ValueError(f"{option} {path}: JPEG is lossy and would change the label values (new labels appear "
                         "at edges); write .png, .nii.gz, .npy or .npz")


def check_same_grid(path: Path, geometry: Any, what: str, ref_path: Path, ref_geometry: Any, ref_what: str) -> None:
    """Refuse an image on another voxel grid than its reference (same shape checked by the caller).

    Checked when both files store their geometry (a PNG or ``.npy`` stores none: it is taken to be on
    the reference's grid) by :meth:`~mlimaging.data.ImageGeometry.grid_difference`.
    """
    from mlimaging.metrics.files import stores_position

    if not (stores_position(path) and stores_position(ref_path)):
        return
    why = geometry.grid_difference(ref_geometry)
    if why:
        raise ValueError(f"{what} {path} is not on {ref_what}'s voxel grid ({why}); resample it onto {ref_what} first")


def check_format_fits(path: Path, option: str, ndim: int, values: Any = None, *, source: str = "IMAGE") -> None:
    """Say before any work when a PNG (or other PIL format) output cannot hold the result.

    Such a file holds a 2-D image; given ``values`` (the input array, whose units and type the
    result is written in, or just its dtype), also only unsigned 8/16-bit intensities: floats,
    wider integers and negative values are refused, naming ``source``, with the formats that keep them.
    """
    import numpy as np

    from mlimaging.data.io import image_format

    if image_format(path) != "pil":
        return
    if ndim != 2:
        raise ValueError(f"{option} {path}: a {ndim}D result cannot be written as {path.suffix}; "
                         "write .nii.gz, .npy or .npz")
    if values is None:
        return
    dtype = values.dtype if isinstance(values, np.ndarray) else np.dtype(values)
    if dtype.kind == "b":
        return
    if dtype.kind not in "iu" or dtype.itemsize > 2:
        raise ValueError(f"{option} {path}: {source} holds {dtype} intensities, which {path.suffix} cannot store; "
                         "write .nii.gz, .npy or .npz")
    if isinstance(values, np.ndarray) and dtype.kind == "i" and values.size and values.min() < 0:
        raise ValueError(f"{option} {path}: {source} holds negative intensities, which {path.suffix} cannot "
                         "store; write .nii.gz, .npy or .npz")


def as_dtype_of(array: np.ndarray, dtype: Any) -> np.ndarray:
    """``array`` in an integer (or bool) ``dtype``, rounded and clipped to its range; other dtypes unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> as_dtype_of(np.array([-3.2, 1.6, 70000.0]), np.uint16).tolist()
    [0, 2, 65535]
    """
    import numpy as np

    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.round(array), info.min, info.max).astype(dtype)
    return array.astype(bool) if dtype.kind == "b" else array


def for_output(path: Path, result: np.ndarray, dtype: Any) -> np.ndarray:
    """``result`` as written to ``path``: to a PNG (or other PIL format), in the input's integer ``dtype``
    with undershoot below 0 clipped (such files store unsigned values; :func:`check_format_fits` has
    refused inputs with negative values); to other formats, unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from pathlib import Path
    >>> for_output(Path("a.png"), np.array([-2.0, 7.6]), np.int16).tolist()
    [0, 8]
    >>> for_output(Path("a.nii.gz"), np.array([-2.0, 7.6]), np.int16).tolist()
    [-2.0, 7.6]
    """
    import numpy as np

    from mlimaging.data.io import image_format

    if image_format(path) != "pil":
        return result
    return as_dtype_of(np.maximum(result, 0) if np.dtype(dtype).kind in "iu" else result, dtype)


def label_map(labels: np.ndarray) -> np.ndarray:
    """A label map as ``uint8`` when its values fit in 0..255, else ``int32``."""
    import numpy as np

    small = labels.min(initial=0) >= 0 and labels.max(initial=0) <= 255
    return labels.astype(np.uint8 if small else np.int32)


def write_output(path: Path, array: np.ndarray, geometry: Any) -> None:
    """Write ``array`` with the input's ``geometry``; a format that cannot keep it warns in yellow."""
    from mlimaging.data import write_image

    with echo_warnings():
        write_image(path, array, geometry=geometry, overwrite=True)

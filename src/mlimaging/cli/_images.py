"""Reading input images and writing outputs for the image commands (``segment``, ``register``, ...)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlimaging.cli.app import echo_warnings

if TYPE_CHECKING:  # NumPy is imported inside the functions: `mlimaging --help` stays fast
    import numpy as np

__all__ = ["check_format_fits", "label_map", "read_gray", "write_output"]


def read_gray(path: Path, what: str) -> tuple[np.ndarray, Any]:
    """A grayscale 2D or 3D image of real, finite values and its geometry (``ValueError`` naming ``what``)."""
    import numpy as np

    from mlimaging.data import read_image

    array, geometry = read_image(path, geometry=True)
    if array.ndim != geometry.ndim or array.ndim not in (2, 3):
        raise ValueError(f"{what} {path} must be a grayscale 2D or 3D image, got shape {array.shape} "
                         "(colour or multi-channel images are not supported here)")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} {path} must hold real numbers, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise ValueError(f"{what} {path} holds NaN or infinite values")
    return array, geometry


def check_format_fits(path: Path, option: str, ndim: int) -> None:
    """A PNG (or other PIL format) output holds a 2-D image only: say so before any work."""
    from mlimaging.data.io import image_format

    if image_format(path) == "pil" and ndim != 2:
        raise ValueError(f"{option} {path}: a {ndim}D result cannot be written as {path.suffix}; "
                         "write .nii.gz, .npy or .npz")


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

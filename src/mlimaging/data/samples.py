"""Sample medical image files shipped inside installed packages (nothing is downloaded).

nibabel's wheel carries small NIfTI, MGH and other files (``anatomical.nii``,
``example4d.nii.gz``, ``test.mgz`` ...) and pydicom's carries DICOM files (``CT_small.dcm``,
``MR_small.dcm`` ...). :func:`sample_file` finds them by name without importing the test
modules of those packages (nibabel's testing module needs a test runner, which a base install
lacks).

Examples
--------
>>> sample_file("anatomical.nii").name
'anatomical.nii'
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["sample_file", "sample_files", "sample_paths"]

# package -> folder inside the installed package that holds its sample files
_LOCATIONS = (("nibabel", ("tests", "data")), ("pydicom", ("data", "test_files")))


def _folders(package: str | None = None) -> list[Path]:
    if package is not None and package not in dict(_LOCATIONS):
        raise ValueError(f"package must be one of {[p for p, _ in _LOCATIONS]}, got {package!r}")
    out = []
    for name, parts in _LOCATIONS:
        if package is not None and name != package:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        folder = Path(spec.origin).parent.joinpath(*parts)
        if folder.is_dir():
            out.append(folder)
    return out


def sample_files() -> list[str]:
    """Names of the sample files available (nibabel's and pydicom's)."""
    return sorted({p.name for folder in _folders() for p in folder.iterdir() if p.is_file()})


def sample_paths(pattern: str = "*", *, package: str | None = None, recursive: bool = True) -> list[Path]:
    """Paths of the shipped sample files whose names match ``pattern``, sorted.

    Parameters
    ----------
    pattern : str
        A glob pattern on the file name, e.g. ``"*.dcm"``.
    package : {"nibabel", "pydicom"}, optional
        Only that package's files (default: both).
    recursive : bool
        Also look in sub-folders (pydicom keeps a few DICOM files in ``dicomdirtests/``).

    Examples
    --------
    >>> all(p.suffix == ".dcm" for p in sample_paths("*.dcm", package="pydicom"))
    True
    """
    return sorted(p for folder in _folders(package) for p in (folder.rglob(pattern) if recursive
                                                              else folder.glob(pattern)) if p.is_file())


def sample_file(name: str) -> Path:
    """Path of the sample file ``name`` shipped with nibabel or pydicom.

    Raises
    ------
    FileNotFoundError
        When no installed package ships a file of that name (the message lists a few).
    """
    for folder in _folders():
        path = folder / name
        if path.is_file():
            return path
    some = ", ".join([n for n in sample_files() if n.endswith((".nii", ".nii.gz", ".dcm", ".mgz"))][:12])
    raise FileNotFoundError(f"No sample file named {name!r} in the installed nibabel/pydicom; some that are: {some}")

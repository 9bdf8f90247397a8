"""mlimaging: machine learning for imaging, medical images first.

Each course area is a subpackage: ``data``, ``metrics``, ``reporting``,
``experiments``, ``cli`` (and more as they land). See ``README.md``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mlimaging")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

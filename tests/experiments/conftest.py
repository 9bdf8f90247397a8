"""Experiment smoke tests run as on a base install: test-only packages cannot be imported.

`make demo` installs only the runtime dependencies, so an experiment (or anything it calls in
``src/``) that imports pytest, an oracle library or a package's test module works here and
fails for users. Every test in this folder runs with those modules made unimportable: each
name below (and its submodules) is blocked for the duration of the test. They are taken out of ``sys.modules`` (so a module another test imported earlier in the
same process is not found there) and a meta-path finder refuses them, so ``import name``
raises ``ModuleNotFoundError``; the previous entries are restored afterwards.
The test bodies keep the ``pytest`` module they bound at import time.
"""

from __future__ import annotations

import importlib.abc
import sys

import pytest

#: Test and benchmark dependencies (pyproject's extras `test` and `bench`), and test modules of
#: runtime packages that import them. Later oracle libraries are added here.
TEST_ONLY_MODULES = (
    "pytest", "hypothesis", "monai", "medpy", "SimpleITK", "captum", "opacus",
    "torchattacks", "deepinv", "torchmetrics", "lightly", "timm", "torchvision",
    "segment_anything", "nibabel.testing", "nibabel.tests",
    "pydicom.tests", "skimage._shared.testing",
)


def _blocked(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m in TEST_ONLY_MODULES)


class _Blocker(importlib.abc.MetaPathFinder):
    """A meta-path finder that refuses the test-only modules."""

    def find_spec(self, fullname, path=None, target=None):
        if _blocked(fullname):
            raise ModuleNotFoundError(f"{fullname} is a test-only package, not installed by `make demo`",
                                      name=fullname)
        return None


@pytest.fixture(autouse=True)
def base_install_only():
    """Make the test-only modules unimportable while the test runs (see the module docstring)."""
    saved = {name: sys.modules.pop(name) for name in [n for n in sys.modules if _blocked(n)]}
    blocker = _Blocker()
    sys.meta_path.insert(0, blocker)
    try:
        yield
    finally:
        sys.meta_path.remove(blocker)
        sys.modules.update(saved)

"""The guard of conftest.py works: test-only imports fail inside experiment tests."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("name", ["pytest", "SimpleITK", "monai", "medpy", "hypothesis", "nibabel.testing"])
def test_test_only_packages_are_unimportable(name):
    with pytest.raises(ImportError):
        importlib.import_module(name)


def test_runtime_packages_and_sample_files_still_import():
    from mlimaging.data.samples import sample_file

    importlib.import_module("nibabel")
    importlib.import_module("pydicom")
    assert sample_file("anatomical.nii").is_file()
    assert sample_file("CT_small.dcm").is_file()
    with pytest.raises(FileNotFoundError, match="no-such-file"):
        sample_file("no-such-file.nii")

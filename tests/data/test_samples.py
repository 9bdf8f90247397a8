"""Sample files shipped inside nibabel's and pydicom's wheels."""

from __future__ import annotations

import pytest


def test_sample_paths_filters_by_pattern_and_package():
    from mlimaging.data.samples import sample_paths

    dicom = sample_paths("*.dcm", package="pydicom")
    assert dicom and all(p.suffix == ".dcm" and "pydicom" in p.parts for p in dicom)
    assert dicom == sorted(dicom)
    top = sample_paths("*.dcm", package="pydicom", recursive=False)
    assert set(top) <= set(dicom) and all(p.parent == top[0].parent for p in top)
    both = sample_paths("*.dcm")
    assert set(dicom) < set(both)  # nibabel ships DICOM files too
    assert any(p.name == "anatomical.nii" for p in sample_paths("*.nii", package="nibabel"))
    with pytest.raises(ValueError, match="package must be one of"):
        sample_paths("*", package="numpy")

"""Data: datasets (embedded and users' files), image IO with voxel spacing, and phantoms.

- :func:`load_dataset` / :func:`list_datasets`: ``digits``, ``mnist5k``, ``mnist``,
  ``medmnist``, ``image-folder``, ``segmentation-folder``.
- :func:`read_image` / :func:`write_image`: NIfTI, DICOM (files and series folders), MetaImage,
  NRRD, MGZ, PNG/JPEG, NPY/NPZ, with spacing or the full :class:`ImageGeometry` (origin,
  direction), so outputs overlay their inputs in a viewer.
- :func:`make_phantom` / :class:`PhantomDataset`: synthetic label maps and images with the
  segmentation challenges of the course (noise, bias field, partial volume, ...).
- :func:`translate` / :class:`ShiftAugment`: whole-pixel shifts and shift augmentation;
  :func:`distort_digits`: random rotation, scaling and translation on a larger canvas.
"""

from __future__ import annotations

from mlimaging.data.datasets import list_datasets, load_dataset
from mlimaging.data.dicom import list_dicom_series, read_dicom_series
from mlimaging.data.geometry import ImageGeometry
from mlimaging.data.io import read_image, write_image
from mlimaging.data.phantoms import PHANTOM_KNOBS, PhantomDataset, make_phantom
from mlimaging.data.transforms import ShiftAugment, distort_digits, translate

__all__ = [
    "ImageGeometry",
    "PHANTOM_KNOBS",
    "PhantomDataset",
    "ShiftAugment",
    "distort_digits",
    "list_datasets",
    "list_dicom_series",
    "load_dataset",
    "make_phantom",
    "read_dicom_series",
    "read_image",
    "translate",
    "write_image",
]

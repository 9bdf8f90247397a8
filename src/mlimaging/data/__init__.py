"""Data: datasets (embedded and users' files), image IO with voxel spacing, and phantoms.

- :func:`load_dataset` / :func:`list_datasets`: ``digits``, ``mnist5k``, ``mnist``,
  ``medmnist``, ``image-folder``, ``segmentation-folder``.
- :func:`read_image` / :func:`write_image`: NIfTI, DICOM, PNG/JPEG, NPY/NPZ with spacing.
- :func:`make_phantom` / :class:`PhantomDataset`: synthetic label maps and images with the
  segmentation challenges of the course (noise, bias field, partial volume, ...).
- :func:`translate` / :class:`ShiftAugment`: whole-pixel shifts and shift augmentation;
  :func:`distort_digits`: random rotation, scaling and translation on a larger canvas.
"""

from __future__ import annotations

from mlimaging.data.datasets import list_datasets, load_dataset
from mlimaging.data.io import read_image, write_image
from mlimaging.data.phantoms import PHANTOM_KNOBS, PhantomDataset, make_phantom
from mlimaging.data.transforms import ShiftAugment, distort_digits, translate

__all__ = [
    "PHANTOM_KNOBS",
    "PhantomDataset",
    "ShiftAugment",
    "distort_digits",
    "list_datasets",
    "load_dataset",
    "make_phantom",
    "read_image",
    "translate",
    "write_image",
]

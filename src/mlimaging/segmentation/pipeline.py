"""Segmentation pipeline: one import for the pieces shared by the ``segmentation`` experiment,
the ``mlimaging train segmenter`` / ``predict-seg`` commands and ``benchmarks/segmentation.py``.

Each piece lives in the module of its purpose; this module only gathers them:

- :mod:`mlimaging.segmentation.dense`: :func:`build_segmenter`, :class:`SameSizeMultiScale`,
  :func:`train_segmenter`, :func:`predict_labels` (dense networks);
- :mod:`mlimaging.segmentation.samples`: :class:`SegmentationSamples` (training crops);
- :mod:`mlimaging.segmentation.patches`: :func:`patch_dataset`, :func:`patch_predict`
  (the patch-classifier pipeline);
- :mod:`mlimaging.segmentation.classical`: :data:`BASE_KNOBS`, :func:`nominal_intensities`,
  :func:`threshold_labels`, :func:`otsu_labels`, :func:`region_growing_labels`;
- :func:`mlimaging.data.preprocessing.zscore`: the per-image normalisation.
"""

from __future__ import annotations

from mlimaging.data.preprocessing import zscore
from mlimaging.segmentation.classical import (
    BASE_KNOBS,
    nominal_intensities,
    otsu_labels,
    region_growing_labels,
    threshold_labels,
)
from mlimaging.segmentation.dense import (
    DENSE_MODELS,
    SameSizeMultiScale,
    build_segmenter,
    predict_labels,
    train_segmenter,
)
from mlimaging.segmentation.patches import patch_dataset, patch_predict
from mlimaging.segmentation.samples import SegmentationSamples

__all__ = [
    "BASE_KNOBS",
    "DENSE_MODELS",
    "SameSizeMultiScale",
    "SegmentationSamples",
    "build_segmenter",
    "nominal_intensities",
    "otsu_labels",
    "patch_dataset",
    "patch_predict",
    "predict_labels",
    "region_growing_labels",
    "threshold_labels",
    "train_segmenter",
    "zscore",
]

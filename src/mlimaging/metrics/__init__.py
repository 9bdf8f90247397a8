"""Evaluation metrics: classification, overlap, surface distance, image similarity and quality.

One definition per metric, written in its docstring with the formula, one policy for
empty masks everywhere (``metrics/_empty.py``; see :mod:`mlimaging.metrics.overlap` and
:mod:`mlimaging.metrics.surface`), and ``spacing`` for anything measured in physical units.
"""

from __future__ import annotations

from mlimaging.metrics.classification import (
    accuracy,
    confusion_matrix,
    f1_score,
    precision,
    recall,
    specificity,
)
from mlimaging.metrics.evaluation import EvaluationResult, evaluate_segmentation
from mlimaging.metrics.overlap import dice, jaccard, mean_dice, volume_similarity
from mlimaging.metrics.quality import psnr, ssim
from mlimaging.metrics.similarity import (
    mutual_information,
    ncc,
    normalized_mutual_information,
    sad,
    ssd,
)
from mlimaging.metrics.surface import (
    average_surface_distance,
    hausdorff_distance,
    rms_surface_distance,
    surface_distances,
)

__all__ = [
    "EvaluationResult",
    "accuracy",
    "average_surface_distance",
    "confusion_matrix",
    "dice",
    "evaluate_segmentation",
    "f1_score",
    "hausdorff_distance",
    "jaccard",
    "mean_dice",
    "mutual_information",
    "ncc",
    "normalized_mutual_information",
    "precision",
    "psnr",
    "recall",
    "rms_surface_distance",
    "sad",
    "specificity",
    "ssd",
    "ssim",
    "surface_distances",
    "volume_similarity",
]

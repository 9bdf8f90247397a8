"""Segmentation: classical methods, losses and inference for dense CNNs.

- :func:`threshold`, :func:`multi_threshold`: fixed intensity bounds and intervals.
- :func:`otsu_threshold`, :func:`multi_otsu_thresholds`: Otsu (1979) and multi-level Otsu
  (Liao et al., 2001), the same values as scikit-image.
- :func:`region_growing`, :func:`confidence_region_growing`: seeded region growing, the same
  masks as SimpleITK's ``ConnectedThreshold`` and ``ConfidenceConnected``.
- :func:`cross_entropy`, :func:`dice_loss`, :func:`dice_ce_loss` (and the modules
  :class:`DiceLoss`, :class:`DiceCELoss`): losses for dense networks.
- :func:`sliding_window_inference`: predict images larger than the training patches.

The networks themselves (``patch_cnn``, ``fcn``, ``segnet``, ``unet``, ``deeplab``,
``multiscale``) are registered in :mod:`mlimaging.models`.
"""

from __future__ import annotations

from mlimaging.segmentation.growing import confidence_region_growing, region_growing
from mlimaging.segmentation.losses import (
    DiceCELoss,
    DiceLoss,
    cross_entropy,
    dice_ce_loss,
    dice_loss,
)
from mlimaging.segmentation.sliding_window import (
    importance_map,
    sliding_window_inference,
    window_starts,
)
from mlimaging.segmentation.threshold import (
    multi_otsu_thresholds,
    multi_threshold,
    otsu_threshold,
    threshold,
)

__all__ = [
    "DiceCELoss",
    "DiceLoss",
    "confidence_region_growing",
    "cross_entropy",
    "dice_ce_loss",
    "dice_loss",
    "importance_map",
    "multi_otsu_thresholds",
    "multi_threshold",
    "otsu_threshold",
    "region_growing",
    "sliding_window_inference",
    "threshold",
    "window_starts",
]

"""Models: one family per file, each registering its variants by name.

- :func:`create_model` / :func:`list_models` / :func:`model_info` / :func:`register_model`:
  the registry (``registry.py``).
- ``logistic_regression``, ``feature_linear`` (``linear.py``): linear models on pixels or on
  morphometric features.
- ``lenet``, ``fc_lenet`` (``lenet.py``): LeNet-5 and its fully convolutional twin.
- ``alexnet`` (``alexnet.py``): AlexNet for 28-64 px images.
- ``vgg11``, ``vgg11_bn``, ``vgg16``, ``vgg16_bn`` (``vgg.py``): VGG A and D with a width
  multiplier.
- ``patch_cnn``, ``fcn`` (``patch_cnn.py``): a 17 x 17 patch classifier and its fully
  convolutional twin (dense classification at full resolution).
- ``segnet`` (``segnet.py``), ``unet`` (``unet.py``), ``deeplab`` (``deeplab.py``,
  dilated convolutions + ASPP), ``multiscale`` (``multiscale.py``, DeepMedic-style two
  pathways): segmentation networks, 2D or 3D (``spatial_dims``).
- ``vit_tiny``, ``vit_small`` (``vit.py``): vision transformers (:class:`ViT`, 2D or 3D) and
  :func:`attention_rollout` for attention maps.
- ``sam_tiny`` (``sam/``): Segment Anything (:class:`SAM`), a prompted network (points, boxes,
  masks -> masks); :func:`load_sam_checkpoint` loads the official ViT-B/L/H and MedSAM files.
- ``dp_cnn`` (``dp_cnn.py``): the tanh CNN with GroupNorm that trains well under DP-SGD.
- ``srcnn``, ``vdsr``, ``espcn``, ``lapsrn``, ``dbpn`` (``superres.py``): super-resolution
  networks, image to image ``(B, C, h, w) -> (B, C, s h, s w)``.
- ``yolo`` (``mlimaging/detection/yolo.py``): the YOLO grid detector, ``(B, S, S, 5B + C)``.

Classifiers take ``num_classes`` (default 10) and, where meaningful, ``in_channels``
(default 1), and return logits ``(B, num_classes)``; ``fc_lenet`` returns a score map
``(B, num_classes, h, w)``, and so do the segmentation networks (``(B, K, d, h, w)`` in 3D).

Examples
--------
>>> import torch
>>> from mlimaging.models import create_model, list_models
>>> "vgg16_bn" in list_models()
True
>>> create_model("alexnet", num_classes=2, seed=0)(torch.zeros(1, 1, 28, 28)).shape
torch.Size([1, 2])
"""

from __future__ import annotations

# ``yolo`` lives in its area (mlimaging.detection.yolo) and registers itself there; imported as a
# module (not ``from ... import``) so that importing mlimaging.detection first also works.
import mlimaging.detection.yolo  # noqa: F401

# Each family file registers its models when imported: every one is imported here explicitly.
from mlimaging.models.alexnet import AlexNet
from mlimaging.models.deeplab import ASPP, DeepLab
from mlimaging.models.dp_cnn import DPCNN
from mlimaging.models.lenet import FCLeNet, LeNet
from mlimaging.models.linear import FeatureLinear, LogisticRegression
from mlimaging.models.multiscale import MultiScaleCNN
from mlimaging.models.patch_cnn import FCN, PatchCNN
from mlimaging.models.registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
)
from mlimaging.models.sam import SAM, SAM_CONFIGS, SAMConfig, infer_sam_config, load_sam_checkpoint
from mlimaging.models.segnet import SegNet
from mlimaging.models.stn import SpatialTransformer
from mlimaging.models.superres import DBPN, ESPCN, SRCNN, VDSR, LapSRN
from mlimaging.models.unet import UNet
from mlimaging.models.vgg import VGG, make_vgg_features
from mlimaging.models.vit import ViT, attention_rollout

__all__ = [
    "LapSRN",
    "VDSR",
    "SRCNN",
    "ESPCN",
    "DBPN",
    "ASPP",
    "DPCNN",
    "FCN",
    "VGG",
    "AlexNet",
    "DeepLab",
    "FCLeNet",
    "FeatureLinear",
    "LeNet",
    "LogisticRegression",
    "ModelInfo",
    "MultiScaleCNN",
    "PatchCNN",
    "SAM",
    "SAMConfig",
    "SAM_CONFIGS",
    "SegNet",
    "SpatialTransformer",
    "UNet",
    "ViT",
    "attention_rollout",
    "create_model",
    "infer_sam_config",
    "list_models",
    "load_sam_checkpoint",
    "make_vgg_features",
    "model_info",
    "register_model",
]

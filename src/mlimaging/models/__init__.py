"""Models: one family per file, each registering its variants by name.

- :func:`create_model` / :func:`list_models` / :func:`model_info` / :func:`register_model`:
  the registry (``registry.py``).
- ``logistic_regression``, ``feature_linear`` (``linear.py``): linear models on pixels or on
  morphometric features.
- ``lenet``, ``fc_lenet`` (``lenet.py``): LeNet-5 and its fully convolutional twin.
- ``alexnet`` (``alexnet.py``): AlexNet for 28-64 px images.
- ``vgg11``, ``vgg11_bn``, ``vgg16``, ``vgg16_bn`` (``vgg.py``): VGG A and D with a width
  multiplier.

Classifiers take ``num_classes`` (default 10) and, where meaningful, ``in_channels``
(default 1), and return logits ``(B, num_classes)``; ``fc_lenet`` returns a score map
``(B, num_classes, h, w)``.

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

# Each family file registers its models when imported: every one is imported here explicitly.
from mlimaging.models.alexnet import AlexNet
from mlimaging.models.lenet import FCLeNet, LeNet
from mlimaging.models.linear import FeatureLinear, LogisticRegression
from mlimaging.models.registry import (
    ModelInfo,
    create_model,
    list_models,
    model_info,
    register_model,
)
from mlimaging.models.vgg import VGG, make_vgg_features

__all__ = [
    "VGG",
    "AlexNet",
    "FCLeNet",
    "FeatureLinear",
    "LeNet",
    "LogisticRegression",
    "ModelInfo",
    "create_model",
    "list_models",
    "make_vgg_features",
    "model_info",
    "register_model",
]

"""Self-supervised learning: representations without labels, judged by probes with few labels.

A method learns an encoder :math:`h = f(x)` through a proxy task, then a linear probe, a kNN
classifier or fine-tuning on a few labels tells how good :math:`h` is.

- ``base.py``: :class:`SelfSupervisedStep`, the training step of every method through
  :func:`mlimaging.training.fit` (``method.ssl_loss(x, y, generator=...)``, an optional
  ``after_step()``), with its generator saved in checkpoints.
- ``losses.py``: :func:`nt_xent` (SimCLR), :func:`info_nce`, :func:`triplet_loss` with
  :func:`batch_hard_triplets` / :func:`semi_hard_triplets` mining, and their module twins;
  VICReg's :func:`variance_loss` and :func:`covariance_loss`.
- ``augment.py``: batched, seeded transforms with explicit intensity ranges
  (:class:`RandomResizedCrop`, :class:`IntensityJitter`, :class:`GaussianBlur`, ...),
  :class:`TwoViews` and the :func:`simclr_augment` preset.
- ``encoders.py``: :class:`SmallCNN`, :class:`ViTEncoder` (the models' ViT without its head).
- ``simclr.py``, ``triplet.py``, ``mae.py``, ``ijepa.py``: :class:`SimCLR`,
  :class:`TripletNet`, :class:`MAE`, :class:`IJEPA`; ``masking.py``: patches and masks.
- ``evaluation.py``: :func:`linear_probe`, :func:`knn_accuracy`, :func:`fine_tune`,
  :func:`label_efficiency`.

Examples
--------
>>> import torch
>>> from mlimaging.selfsupervised import nt_xent
>>> z = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
>>> float(nt_xent(z, z, temperature=0.5)) < float(nt_xent(z, z.flip(0), temperature=0.5))
True
"""

from __future__ import annotations

from mlimaging.selfsupervised.augment import (
    ColorJitter,
    Compose,
    Cutout,
    GaussianBlur,
    GaussianNoise,
    IntensityJitter,
    RandomApply,
    RandomFlip,
    RandomResizedCrop,
    RandomRotation,
    Sobel,
    TwoViews,
    simclr_augment,
)
from mlimaging.selfsupervised.base import SelfSupervisedStep, split_images
from mlimaging.selfsupervised.encoders import SmallCNN, ViTEncoder, list_encoders, make_encoder
from mlimaging.selfsupervised.evaluation import (
    extract_features,
    fine_tune,
    knn_accuracy,
    label_efficiency,
    linear_probe,
    stratified_subsets,
)
from mlimaging.selfsupervised.ijepa import IJEPA
from mlimaging.selfsupervised.losses import (
    InfoNCELoss,
    NTXentLoss,
    TripletLoss,
    batch_hard_triplets,
    covariance_loss,
    info_nce,
    nt_xent,
    semi_hard_triplets,
    triplet_loss,
    variance_loss,
)
from mlimaging.selfsupervised.mae import MAE
from mlimaging.selfsupervised.masking import multi_block_masks, patchify, random_masking, unpatchify
from mlimaging.selfsupervised.simclr import SimCLR
from mlimaging.selfsupervised.triplet import TripletNet

__all__ = [
    "IJEPA",
    "MAE",
    "ColorJitter",
    "Compose",
    "Cutout",
    "GaussianBlur",
    "GaussianNoise",
    "InfoNCELoss",
    "IntensityJitter",
    "NTXentLoss",
    "RandomApply",
    "RandomFlip",
    "RandomResizedCrop",
    "RandomRotation",
    "SelfSupervisedStep",
    "SimCLR",
    "SmallCNN",
    "Sobel",
    "TripletLoss",
    "TripletNet",
    "TwoViews",
    "ViTEncoder",
    "batch_hard_triplets",
    "covariance_loss",
    "extract_features",
    "fine_tune",
    "info_nce",
    "knn_accuracy",
    "label_efficiency",
    "linear_probe",
    "list_encoders",
    "make_encoder",
    "multi_block_masks",
    "nt_xent",
    "patchify",
    "random_masking",
    "semi_hard_triplets",
    "simclr_augment",
    "split_images",
    "stratified_subsets",
    "triplet_loss",
    "unpatchify",
    "variance_loss",
]

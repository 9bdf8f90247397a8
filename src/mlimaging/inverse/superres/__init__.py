r"""Super-resolution: the five networks (registered in :mod:`mlimaging.models`), their losses,
LR/HR patch pairs from bundled images, the bicubic baseline and the papers' evaluation.

- Models (``create_model(name, scale=..., in_channels=...)``): ``srcnn``, ``vdsr``, ``espcn``,
  ``lapsrn``, ``dbpn`` (:mod:`mlimaging.models.superres`, re-exported here as classes).
- Losses (``losses.py``): :func:`l1_loss`, :func:`l2_loss`, :func:`huber`, :func:`charbonnier`,
  :func:`total_variation`, :class:`MultiScaleLoss` (LapSRN), :class:`PerceptualLoss` +
  :func:`load_vgg_features`, :class:`PatchDiscriminator` + :class:`SRGANStep` (adversarial),
  :class:`CompositeLoss` (weighted sum).
- Data and evaluation (``data.py``): :func:`sr_pairs`, :func:`split_images`, :func:`degrade`
  (``"bicubic"``, ``"blur-down"``, ``"kspace"``), :func:`bicubic_upscale`, :func:`sr_evaluate`
  (PSNR/SSIM on Y with a ``scale``-pixel border cut), :func:`rgb_to_y`,
  :func:`through_plane_degrade` (thick slices of a volume for through-plane SR), :func:`dihedral`
  (the flips/rotations of ``sr_pairs(augment=True)``), :class:`SRSelfEnsemble` (the mean over
  those eight transforms at inference, EDSR+'s "x8").
- Training (``training.py``): :data:`SR_RECIPES` (one per model), :func:`sr_recipe`,
  :func:`train_superres` (through :func:`mlimaging.training.fit`), :class:`AdjustableGradientClip`
  (VDSR).

Examples
--------
>>> import torch
>>> from mlimaging.models import create_model
>>> from mlimaging.inverse.superres import bicubic_upscale, degrade, load_sr_image, sr_evaluate
>>> hr = torch.from_numpy(load_sr_image("camera"))[None, :, :96, :96]
>>> lr = degrade(hr, 2)
>>> net = create_model("espcn", scale=2, seed=0)
>>> net(lr).shape == hr.shape
True
>>> round(sr_evaluate(bicubic_upscale(lr, 2), hr, scale=2)["psnr"], 1) > 20
True
"""

from __future__ import annotations

from mlimaging.inverse.superres.data import (
    DEGRADATIONS,
    SR_IMAGES,
    SR_TRAIN_EXTRA,
    SRPairs,
    SRSelfEnsemble,
    bicubic_upscale,
    degrade,
    dihedral,
    load_sr_image,
    modcrop,
    rgb_to_y,
    shave,
    split_images,
    sr_evaluate,
    sr_pairs,
    through_plane_degrade,
)
from mlimaging.inverse.superres.losses import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LOSSES,
    VGG16_LAYERS,
    CompositeLoss,
    MultiScaleLoss,
    PatchDiscriminator,
    PerceptualLoss,
    SRGANStep,
    charbonnier,
    huber,
    l1_loss,
    l2_loss,
    load_vgg_features,
    total_variation,
)
from mlimaging.inverse.superres.training import (
    SR_RECIPES,
    AdjustableGradientClip,
    sr_recipe,
    train_superres,
)
from mlimaging.models.superres import (
    DBPN,
    ESPCN,
    SRCNN,
    VDSR,
    LapSRN,
    pixel_shuffle,
)

__all__ = [
    "DBPN",
    "SR_RECIPES",
    "AdjustableGradientClip",
    "dihedral",
    "sr_recipe",
    "train_superres",
    "DEGRADATIONS",
    "ESPCN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LOSSES",
    "SRCNN",
    "SR_IMAGES",
    "SR_TRAIN_EXTRA",
    "VDSR",
    "VGG16_LAYERS",
    "CompositeLoss",
    "LapSRN",
    "MultiScaleLoss",
    "PatchDiscriminator",
    "PerceptualLoss",
    "SRGANStep",
    "SRPairs",
    "SRSelfEnsemble",
    "bicubic_upscale",
    "charbonnier",
    "degrade",
    "huber",
    "l1_loss",
    "l2_loss",
    "load_sr_image",
    "load_vgg_features",
    "modcrop",
    "pixel_shuffle",
    "rgb_to_y",
    "shave",
    "split_images",
    "sr_evaluate",
    "sr_pairs",
    "through_plane_degrade",
    "total_variation",
]

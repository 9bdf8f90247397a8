"""Inverse problems: forward operators (blur, downsampling, inpainting, MRI, CT) with their
adjoints and noise models; classical and learned reconstruction; the deep image prior;
super-resolution in :mod:`mlimaging.inverse.superres`.
"""

from __future__ import annotations

from mlimaging.inverse.base import (
    ComposedOperator,
    GaussianNoise,
    Operator,
    PoissonNoise,
    conjugate_gradient,
)
from mlimaging.inverse.learned import (
    DEFAULT_TRAIN_IMAGES,
    DIPReconstruction,
    DnCNN,
    MeasurementDataset,
    PatchDataset,
    UNetDenoiser,
    UnrolledNet,
    csgm,
    deep_image_prior,
    default_denoiser,
    load_training_images,
    pnp,
    train_denoiser,
    train_unrolled,
)
from mlimaging.inverse.operators import (
    CT,
    MRI,
    Blur,
    Downsample,
    Identity,
    Inpainting,
    cartesian_mask,
    downsample_filter,
    fbp,
    gaussian_kernel,
    motion_kernel,
)
from mlimaging.inverse.solvers import (
    Reconstruction,
    least_squares,
    tikhonov,
    tv_reconstruct,
    wavelet_reconstruct,
)

__all__ = [
    "ComposedOperator",
    "GaussianNoise",
    "Operator",
    "PoissonNoise",
    "conjugate_gradient",
    "CT",
    "MRI",
    "Blur",
    "Downsample",
    "Identity",
    "Inpainting",
    "cartesian_mask",
    "downsample_filter",
    "fbp",
    "gaussian_kernel",
    "motion_kernel",
    "Reconstruction",
    "least_squares",
    "tikhonov",
    "tv_reconstruct",
    "wavelet_reconstruct",
    "DEFAULT_TRAIN_IMAGES",
    "DIPReconstruction",
    "DnCNN",
    "MeasurementDataset",
    "PatchDataset",
    "UNetDenoiser",
    "UnrolledNet",
    "csgm",
    "deep_image_prior",
    "default_denoiser",
    "load_training_images",
    "pnp",
    "train_denoiser",
    "train_unrolled",
]

"""Registration: transforms in physical space, warping, similarity losses, intensity registration.

- :mod:`~mlimaging.registration.transforms`: ``rigid_matrix``, ``affine_matrix``, ``compose``,
  ``invert`` (homogeneous matrices in physical space; centre of the image = origin).
- :func:`warp`: resampling through a transform (``affine_grid`` / ``grid_sample``).
- :mod:`~mlimaging.registration.losses`: SSD, SAD, NCC (global, local), MI, NMI losses.
- :func:`register`: multi-resolution rigid / affine registration, 2D and 3D, in world
  coordinates with image geometries; warns with :class:`RegistrationWarning` when it fails.
- :func:`atlas_segment`: multi-atlas segmentation with majority or locally weighted voting.
"""

from __future__ import annotations

from mlimaging.registration.atlas import AtlasResult, atlas_segment, fuse_labels, local_weights
from mlimaging.registration.intensity import (
    RegistrationResult,
    RegistrationWarning,
    center_of_mass,
    centred_to_world,
    register,
    robust_range,
)
from mlimaging.registration.losses import (
    LOSSES,
    SimilarityLoss,
    local_ncc_loss,
    mi_loss,
    ncc_loss,
    nmi_loss,
    sad_loss,
    similarity_loss,
    ssd_loss,
)
from mlimaging.registration.transforms import (
    affine_matrix,
    as_transform,
    compose,
    corner_points,
    identity,
    invert,
    rigid_matrix,
    target_registration_error,
    transform_points,
    voxel_to_physical,
)
from mlimaging.registration.warp import normalized_theta, sampling_grid, warp

__all__ = [
    "AtlasResult",
    "atlas_segment",
    "fuse_labels",
    "local_weights",
    "LOSSES",
    "RegistrationResult",
    "RegistrationWarning",
    "SimilarityLoss",
    "center_of_mass",
    "centred_to_world",
    "local_ncc_loss",
    "mi_loss",
    "normalized_theta",
    "ncc_loss",
    "nmi_loss",
    "register",
    "robust_range",
    "sad_loss",
    "similarity_loss",
    "ssd_loss",
    "affine_matrix",
    "as_transform",
    "compose",
    "corner_points",
    "identity",
    "invert",
    "rigid_matrix",
    "sampling_grid",
    "target_registration_error",
    "transform_points",
    "voxel_to_physical",
    "warp",
]

"""Helpers shared by the dense-prediction families (2D or 3D layers, input checks).

``patch_cnn.py``, ``segnet.py``, ``unet.py``, ``deeplab.py`` and ``multiscale.py`` build
their layers through these functions, so that one ``spatial_dims`` switch (2 or 3)
chooses between ``Conv2d``/``Conv3d``, ``BatchNorm2d``/``BatchNorm3d``, and so on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mlimaging.models._validation import check_int

#: Normalisation options of the dense models: batch norm, instance norm (affine) or none.
NORMS = ("batch", "instance", None)

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_BATCH = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_MAXPOOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_UNPOOL = {2: nn.MaxUnpool2d, 3: nn.MaxUnpool3d}


def check_spatial_dims(value: Any) -> int:
    """Return ``value`` if it is 2 or 3; ValueError naming ``spatial_dims`` otherwise."""
    if isinstance(value, bool) or value not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {value!r}")
    return int(value)


def check_norm(norm: Any) -> str | None:
    """Return ``"batch"``, ``"instance"`` or None (``"none"`` is accepted for None)."""
    if norm is None or norm == "none":
        return None
    if norm not in ("batch", "instance"):
        raise ValueError(f"norm must be 'batch', 'instance' or None, got {norm!r}")
    return str(norm)


def check_int_tuple(values: Any, name: str, *, length: int | None = None,
                    minimum: int = 1) -> tuple[int, ...]:
    """A non-empty sequence of ints >= ``minimum`` (of ``length`` items if given) as a tuple."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty sequence of ints, got {values!r}")
    out = tuple(check_int(v, f"each item of {name}", minimum=minimum) for v in values)
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must have {length} items, got {len(out)}: {values!r}")
    return out


def conv(spatial_dims: int, c_in: int, c_out: int, kernel_size: int, *, stride: int = 1,
         padding: int = 0, dilation: int = 1, bias: bool = True) -> nn.Module:
    """``Conv2d`` or ``Conv3d`` with a cubic kernel."""
    return _CONV[spatial_dims](c_in, c_out, kernel_size, stride=stride, padding=padding,
                               dilation=dilation, bias=bias)


def conv_transpose(spatial_dims: int, c_in: int, c_out: int, kernel_size: int,
                   *, stride: int) -> nn.Module:
    """``ConvTranspose2d`` or ``ConvTranspose3d``."""
    return _CONV_T[spatial_dims](c_in, c_out, kernel_size, stride=stride)


def norm_layer(norm: str | None, spatial_dims: int, channels: int) -> nn.Module:
    """BatchNorm, affine InstanceNorm or Identity for ``channels`` feature maps."""
    if norm is None:
        return nn.Identity()
    if norm == "batch":
        return _BATCH[spatial_dims](channels)
    return _INSTANCE[spatial_dims](channels, affine=True)


def conv_block(spatial_dims: int, c_in: int, c_out: int, *, norm: str | None,
               kernel_size: int = 3, stride: int = 1, padding: int = 0,
               dilation: int = 1) -> nn.Sequential:
    """Convolution, normalisation, ReLU; the convolution has a bias only without a norm
    (a norm's shift makes the bias redundant)."""
    return nn.Sequential(
        conv(spatial_dims, c_in, c_out, kernel_size, stride=stride, padding=padding,
             dilation=dilation, bias=norm is None),
        norm_layer(norm, spatial_dims, c_out),
        nn.ReLU(inplace=True),
    )


def max_pool(spatial_dims: int, *, return_indices: bool = False) -> nn.Module:
    """2 x 2 (x 2) max-pooling with stride 2."""
    return _MAXPOOL[spatial_dims](kernel_size=2, stride=2, return_indices=return_indices)


def max_unpool(spatial_dims: int) -> nn.Module:
    """The inverse placement of :func:`max_pool` (values at the recorded indices)."""
    return _UNPOOL[spatial_dims](kernel_size=2, stride=2)


def he_init(model: nn.Module) -> None:
    """He-normal initialisation (He et al. 2015) of every convolution, zero biases:
    :math:`w \\sim \\mathcal{N}(0, 2 / n_{in})`, :math:`n_{in}` = kernel volume x input channels
    (the initialisation of U-Net, SegNet and DeepMedic); norm layers keep weight 1, bias 0."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
            # weight (c_in, c_out, *k): each output pixel sums c_in inputs, one kernel tap each
            std = (2.0 / m.weight.shape[0]) ** 0.5
            nn.init.normal_(m.weight, 0.0, std)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)


def axes_label(spatial_dims: int) -> str:
    """``"H, W"`` or ``"D, H, W"`` for error messages."""
    return "H, W" if spatial_dims == 2 else "D, H, W"


def check_dense_input(x: Any, in_channels: int, spatial_dims: int, *,
                      name: str = "x") -> torch.Tensor:
    """Check that ``x`` is a float tensor ``(B, in_channels, *spatial)``; ValueError otherwise."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != spatial_dims + 2 or x.shape[1] != in_channels:
        raise ValueError(
            f"{name} must have shape (B, {in_channels}, {axes_label(spatial_dims)}), "
            f"got {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    return x


def check_divisible(x: torch.Tensor, factor: int, reason: str, *, name: str = "x") -> None:
    """ValueError naming the spatial size of ``x`` unless every axis is divisible by ``factor``."""
    size = tuple(x.shape[2:])
    if any(s % factor for s in size):
        raise ValueError(
            f"{name} spatial size {size} must be divisible by {factor} ({reason})"
        )

r"""Single-image super-resolution networks: where the network upsamples, and how.

Every model maps a low-resolution batch :math:`(B, C, h, w)` to
:math:`(B, C, s h, s w)` for its ``scale`` :math:`s`, so all are used the same way;
``in_channels`` is 1 (the Y channel, as the papers train and evaluate) or 3 (RGB).

=========  ================================  ==========================  =======  ============
name       upsampling                        paper                       scales   3D
=========  ================================  ==========================  =======  ============
``srcnn``  before the network (bicubic)      Dong et al. 2014            2, 3, 4  yes
``vdsr``   before (bicubic) + residual       Kim et al. 2016             2, 3, 4  yes
``espcn``  at the end (sub-pixel conv)       Shi et al. 2016             2, 3, 4  yes
``lapsrn`` progressive x2 stages             Lai et al. 2017             2, 4, 8  no
``dbpn``   back and forth (projections)      Haris et al. 2018           2, 3, 4  no
=========  ================================  ==========================  =======  ============

Pre-upsampling networks (SRCNN, VDSR) run every layer at the high resolution and pay
:math:`s^2` (2D) more multiply-adds than ESPCN, whose layers all run at the low resolution.

**3D (through-plane SR).** ``srcnn``, ``vdsr`` and ``espcn`` take ``spatial_dims=3`` and a
per-axis ``scale`` such as ``(1, 1, 4)``: an anisotropic volume :math:`(B, C, d, h, w)` with
8 mm slices along the last axis becomes :math:`(B, C, d, h, 4w)`. The pre-upsampling models
interpolate trilinearly (torch has no tricubic mode), ESPCN uses the 3D sub-pixel shuffle
:func:`pixel_shuffle`. A per-axis scale works in 2D too (``scale=(1, 4)``: a sagittal slice).
Each entry of a per-axis scale is 1 or an allowed scale.

References
----------
Dong C., Loy C. C., He K., Tang X. (2014). Image super-resolution using deep convolutional
networks. IEEE TPAMI 38(2). arXiv:1501.00092.

Kim J., Lee J. K., Lee K. M. (2016). Accurate image super-resolution using very deep
convolutional networks. CVPR. arXiv:1511.04587.

Shi W., Caballero J., Huszar F., et al. (2016). Real-time single image and video
super-resolution using an efficient sub-pixel convolutional neural network. CVPR.
arXiv:1609.05158.

Aitken A., Ledig C., Theis L., et al. (2017). Checkerboard artifact free sub-pixel
convolution: a note on sub-pixel convolution, resize convolution and convolution resize.
arXiv:1707.02937.

Lai W.-S., Huang J.-B., Ahuja N., Yang M.-H. (2017). Deep Laplacian pyramid networks for
fast and accurate super-resolution. CVPR. arXiv:1704.03915.

Haris M., Shakhnarovich G., Ukita N. (2018). Deep back-projection networks for
super-resolution. CVPR. arXiv:1803.02735.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models._validation import check_int
from mlimaging.models.registry import register_model

__all__ = [
    "DBPN",
    "ESPCN",
    "SRCNN",
    "VDSR",
    "LapSRN",
    "check_scale",
    "icnr_",
    "pixel_shuffle",
    "upsample_interp",
]

#: Scales each family accepts (LapSRN doubles the size at every level).
SR_SCALES = (2, 3, 4)
LAPSRN_SCALES = (2, 4, 8)
#: The registered example input: a low-resolution 16 x 16 patch, one channel.
SR_INPUT = (1, 16, 16)


# ------------------------------------------------------------------------------ helpers
def _check_dims(spatial_dims: Any, allowed: Sequence[int]) -> int:
    if isinstance(spatial_dims, bool) or spatial_dims not in tuple(allowed):
        raise ValueError(f"spatial_dims must be one of {tuple(allowed)}, got {spatial_dims!r}")
    return int(spatial_dims)


def check_scale(scale: Any, *, allowed: Sequence[int] = SR_SCALES, spatial_dims: int = 2,
                per_axis: bool = True) -> tuple[int, ...]:
    """The per-axis scale of ``scale`` (an int or one int per spatial axis).

    An int :math:`s` gives :math:`(s,) \\times` ``spatial_dims``; a sequence must have one entry
    per spatial axis, each 1 or in ``allowed``, not all 1. ``per_axis=False`` accepts only an int.

    Examples
    --------
    >>> check_scale(2)
    (2, 2)
    >>> check_scale((1, 1, 4), spatial_dims=3)
    (1, 1, 4)
    """
    if isinstance(scale, (int, bool)) or not isinstance(scale, Sequence):
        if isinstance(scale, bool) or not isinstance(scale, int) or scale not in tuple(allowed):
            raise ValueError(f"scale must be one of {tuple(allowed)}, got {scale!r}")
        return (int(scale),) * spatial_dims
    if not per_axis:
        raise ValueError(f"scale must be one of {tuple(allowed)} (an int), got {scale!r}")
    values = tuple(scale)
    ok = (len(values) == spatial_dims
          and all(isinstance(s, int) and not isinstance(s, bool) and (s == 1 or s in allowed) for s in values)
          and any(s > 1 for s in values))
    if not ok:
        raise ValueError(f"scale must be an int in {tuple(allowed)} or {spatial_dims} ints each 1 or in "
                         f"{tuple(allowed)} (not all 1), got {scale!r}")
    return values


def _check_sr_input(x: Any, in_channels: int, spatial_dims: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
    axes = "H, W" if spatial_dims == 2 else "D, H, W"
    if x.ndim != 2 + spatial_dims or x.shape[1] != in_channels:
        raise ValueError(f"x must have shape (B, {in_channels}, {axes}), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    if min(x.shape[2:]) < 1 or x.shape[0] < 1:
        raise ValueError(f"x must be non-empty, got shape {tuple(x.shape)}")
    return x


def _conv(spatial_dims: int) -> type[nn.Module]:
    return nn.Conv2d if spatial_dims == 2 else nn.Conv3d


def upsample_interp(x: torch.Tensor, scale: Sequence[int]) -> torch.Tensor:
    r"""Interpolate ``x`` (B, C, *spatial) by an integer factor per spatial axis.

    2D: bicubic, torch's ``mode="bicubic", antialias=True, align_corners=False``: Keys' cubic
    convolution with :math:`a = -0.5` and pixel centres at :math:`(i + 1/2)/s - 1/2`, the kernel
    of MATLAB's ``imresize`` and PIL's ``BICUBIC`` (equal to PIL to 1e-6; ``antialias=False``
    would use OpenCV's :math:`a = -0.75`). The same interpolation is the bicubic baseline of
    :mod:`mlimaging.inverse.superres`. 3D: trilinear (torch has no tricubic mode). Axes with
    factor 1 are left as they are.

    Examples
    --------
    >>> import torch
    >>> upsample_interp(torch.ones(1, 1, 3, 5), (2, 2)).shape
    torch.Size([1, 1, 6, 10])
    """
    size = [n * s for n, s in zip(x.shape[2:], scale, strict=True)]
    if x.ndim == 4:
        return F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False)
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


def pixel_shuffle(x: torch.Tensor, scale: int | Sequence[int]) -> torch.Tensor:
    r"""Sub-pixel rearrangement (Shi et al. 2016), 2D or 3D, with a per-axis factor.

    .. math:: y[b, c, r_1 i_1 + k_1, \dots, r_n i_n + k_n] = x[b,\; c R + \mathrm{flat}(k_1, \dots, k_n),\; i_1, \dots, i_n]

    with :math:`R = \prod_a r_a` and ``flat`` the row-major index of :math:`(k_1, \dots, k_n)`
    in :math:`r_1 \times \dots \times r_n`: :math:`(B, C R, d_1, \dots, d_n) \to
    (B, C, r_1 d_1, \dots, r_n d_n)`. For 2D and an int factor it is ``torch.nn.PixelShuffle``.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(8.0).view(1, 4, 1, 2)
    >>> torch.equal(pixel_shuffle(x, 2), torch.nn.PixelShuffle(2)(x))
    True
    >>> pixel_shuffle(torch.zeros(1, 4, 3, 3, 3), (1, 1, 4)).shape
    torch.Size([1, 1, 3, 3, 12])
    """
    n = x.ndim - 2
    r = (int(scale),) * n if isinstance(scale, int) else tuple(int(s) for s in scale)
    if len(r) != n or n < 1:
        raise ValueError(f"scale must be an int or {n} ints for a {n}D batch, got {scale!r}")
    big_r = math.prod(r)
    if x.shape[1] % big_r:
        raise ValueError(f"x's channels ({x.shape[1]}) must be a multiple of prod(scale) = {big_r}")
    b, c, spatial = x.shape[0], x.shape[1] // big_r, x.shape[2:]
    y = x.reshape(b, c, *r, *spatial)
    order = [0, 1] + [a for k in range(n) for a in (2 + n + k, 2 + k)]  # (B, C, d1, r1, d2, r2, ...)
    return y.permute(order).reshape(b, c, *[d * s for d, s in zip(spatial, r, strict=True)])


def icnr_(weight: torch.Tensor, bias: torch.Tensor | None, factor: int, *,
          init: Any = nn.init.kaiming_normal_) -> None:
    r"""ICNR initialisation (Aitken et al. 2017) of a convolution feeding a sub-pixel shuffle.

    The weight :math:`(C R, \dots)` is filled by drawing a sub-kernel :math:`W_0` of shape
    :math:`(C, \dots)` with ``init`` and repeating each of its output channels :math:`R` times
    (``factor`` = :math:`R`, the product of the per-axis scales): all :math:`R` sub-pixel maps of
    channel :math:`c` are equal, so conv + :func:`pixel_shuffle` equals nearest-neighbour
    upsampling of the map :math:`c R` at initialisation: no checkerboard artefact. The bias is
    repeated the same way. In place, under ``no_grad``.
    """
    out = weight.shape[0]
    if out % factor:
        raise ValueError(f"the weight's output channels ({out}) must be a multiple of factor={factor}")
    with torch.no_grad():
        sub = torch.empty((out // factor, *weight.shape[1:]), dtype=weight.dtype, device=weight.device)
        init(sub)
        weight.copy_(sub.repeat_interleave(factor, dim=0))
        if bias is not None:
            bias.copy_(bias[::factor].repeat_interleave(factor))


# ------------------------------------------------------------------------------ SRCNN / VDSR
class SRCNN(nn.Module):
    r"""SRCNN (Dong et al. 2014): bicubic upsampling, then patch extraction, non-linear mapping
    and reconstruction (the 9-1-5 network with 64 and 32 filters).

    .. math:: F(y) = W_3 * \max(0, W_2 * \max(0, W_1 * \uparrow_s y + b_1) + b_2) + b_3

    Convolutions use "same" padding (the paper trains on valid convolutions and evaluates the
    centre); the output has the size of the bicubic image. ``padding_mode="replicate"`` extends
    the image by its edge pixels instead of zeros, so the border is not a dark frame the network
    must learn to undo (on 48-pixel training patches a 9-1-5 network's zero-padded band is a
    third of the pixels).

    Parameters
    ----------
    scale : int or tuple of int
        2, 3 or 4, or one factor per spatial axis (see the module docstring).
    in_channels : int
        1 (Y) or 3 (RGB).
    features : tuple of two int
        :math:`n_1, n_2` (64, 32 in the paper).
    kernel_sizes : tuple of three int
        :math:`f_1, f_2, f_3` (9, 1, 5: the "9-1-5" network); odd.
    spatial_dims : int
        2, or 3 for volumes (trilinear pre-upsampling).
    padding_mode : {"zeros", "replicate", "reflect"}
        Padding of the convolutions (torch's ``padding_mode``).

    Examples
    --------
    >>> import torch
    >>> SRCNN(scale=3)(torch.rand(1, 1, 8, 8)).shape
    torch.Size([1, 1, 24, 24])
    """

    def __init__(self, *, scale: int | Sequence[int] = 2, in_channels: int = 1,
                 features: Sequence[int] = (64, 32), kernel_sizes: Sequence[int] = (9, 1, 5),
                 spatial_dims: int = 2, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.spatial_dims = _check_dims(spatial_dims, (2, 3))
        if padding_mode not in ("zeros", "replicate", "reflect"):
            raise ValueError(f"padding_mode must be 'zeros', 'replicate' or 'reflect', got {padding_mode!r}")
        self.scale = check_scale(scale, spatial_dims=self.spatial_dims)
        self.in_channels = check_int(in_channels, "in_channels")
        if len(tuple(features)) != 2:
            raise ValueError(f"features must be two ints (n1, n2), got {features!r}")
        n1, n2 = (check_int(f, "features") for f in features)
        ks = tuple(kernel_sizes)
        if len(ks) != 3 or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0 for k in ks):
            raise ValueError(f"kernel_sizes must be three odd positive ints, got {kernel_sizes!r}")
        conv = _conv(self.spatial_dims)
        self.extract = conv(in_channels, n1, ks[0], padding=ks[0] // 2, padding_mode=padding_mode)
        self.mapping = conv(n1, n2, ks[1], padding=ks[1] // 2, padding_mode=padding_mode)
        self.reconstruct = conv(n2, in_channels, ks[2], padding=ks[2] // 2, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The super-resolved batch ``(B, C, s h, s w)`` of a low-resolution ``(B, C, h, w)``."""
        x = upsample_interp(_check_sr_input(x, self.in_channels, self.spatial_dims), self.scale)
        x = F.relu(self.extract(x))
        x = F.relu(self.mapping(x))
        return self.reconstruct(x)


class VDSR(nn.Module):
    r"""VDSR (Kim et al. 2016): 20 3x3 layers on the bicubic image, learning the residual.

    .. math:: F(y) = \uparrow_s y + r_\theta(\uparrow_s y)

    with :math:`r_\theta` ``depth`` convolutions (ReLU between them, ``features`` channels).
    The paper trains with a high learning rate (0.1) made stable by *adjustable gradient
    clipping*: each gradient component is clipped to :math:`[-\theta/\gamma, \theta/\gamma]`
    with :math:`\gamma` the current learning rate, so the step :math:`\gamma g` never exceeds
    :math:`\theta`. In this toolkit clipping is a training option, not part of the model:
    ``mlimaging.training.fit(..., grad_clip=c)`` clips the global gradient *norm* to a fixed
    :math:`c`; :math:`c = \theta/\gamma` bounds the step norm (hence every component) by :math:`\theta` for a constant
    learning rate (a per-component clip that follows a schedule needs a
    :class:`~mlimaging.training.step.TrainStep`).

    Parameters
    ----------
    scale : int or tuple of int
        2, 3 or 4, or one factor per spatial axis.
    in_channels : int
        1 (Y) or 3 (RGB).
    depth : int
        Number of convolutions (20 in the paper), at least 2.
    features : int
        Channels of the hidden layers (64).
    spatial_dims : int
        2, or 3 (trilinear pre-upsampling).

    Examples
    --------
    >>> import torch
    >>> net = VDSR(scale=2, depth=4, features=8)
    >>> net(torch.rand(1, 1, 8, 8)).shape
    torch.Size([1, 1, 16, 16])
    """

    def __init__(self, *, scale: int | Sequence[int] = 2, in_channels: int = 1, depth: int = 20,
                 features: int = 64, spatial_dims: int = 2) -> None:
        super().__init__()
        self.spatial_dims = _check_dims(spatial_dims, (2, 3))
        self.scale = check_scale(scale, spatial_dims=self.spatial_dims)
        self.in_channels = check_int(in_channels, "in_channels")
        check_int(depth, "depth", minimum=2)
        check_int(features, "features")
        conv = _conv(self.spatial_dims)
        layers: list[nn.Module] = [conv(in_channels, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [conv(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(conv(features, in_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.body:  # He initialisation, as the paper (after He et al. 2015)
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The super-resolved batch: the bicubic image plus the predicted residual."""
        up = upsample_interp(_check_sr_input(x, self.in_channels, self.spatial_dims), self.scale)
        return up + self.body(up)


# ------------------------------------------------------------------------------ ESPCN
class ESPCN(nn.Module):
    r"""ESPCN (Shi et al. 2016): all layers at low resolution, then a sub-pixel convolution.

    .. math:: F(y) = \mathrm{PS}\big(W_3 * \tanh(W_2 * \tanh(W_1 * y + b_1) + b_2) + b_3\big)

    :math:`W_1` 5x5 to 64 maps, :math:`W_2` 3x3 to 32, :math:`W_3` 3x3 to :math:`C R` maps
    (:math:`R = s^2` in 2D, the product of the per-axis scales in general) and PS the periodic
    shuffle (:func:`pixel_shuffle`). :math:`W_3` is ICNR-initialised (:func:`icnr_`): at
    initialisation the output is the nearest-neighbour upsampling of the sub-pixel maps
    :math:`0, R, 2R, \dots` (one per channel): no checkerboard.

    Parameters
    ----------
    scale : int or tuple of int
        2, 3 or 4, or one factor per spatial axis.
    in_channels : int
        1 (Y) or 3 (RGB).
    features : tuple of two int
        Channels of the two hidden layers (64, 32).
    spatial_dims : int
        2, or 3 (3D sub-pixel shuffle, per-axis scale such as ``(1, 1, 4)``).

    Examples
    --------
    >>> import torch
    >>> net = ESPCN(scale=3, features=(8, 4))
    >>> net(torch.rand(1, 1, 5, 5)).shape
    torch.Size([1, 1, 15, 15])
    >>> ESPCN(scale=(1, 1, 4), features=(4, 4), spatial_dims=3)(torch.rand(1, 1, 3, 3, 2)).shape
    torch.Size([1, 1, 3, 3, 8])
    """

    def __init__(self, *, scale: int | Sequence[int] = 2, in_channels: int = 1,
                 features: Sequence[int] = (64, 32), spatial_dims: int = 2) -> None:
        super().__init__()
        self.spatial_dims = _check_dims(spatial_dims, (2, 3))
        self.scale = check_scale(scale, spatial_dims=self.spatial_dims)
        self.in_channels = check_int(in_channels, "in_channels")
        if len(tuple(features)) != 2:
            raise ValueError(f"features must be two ints, got {features!r}")
        n1, n2 = (check_int(f, "features") for f in features)
        conv = _conv(self.spatial_dims)
        self.factor = math.prod(self.scale)
        self.conv1 = conv(in_channels, n1, 5, padding=2)
        self.conv2 = conv(n1, n2, 3, padding=1)
        self.subpixel = conv(n2, in_channels * self.factor, 3, padding=1)
        icnr_(self.subpixel.weight, self.subpixel.bias, self.factor)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The :math:`C R` low-resolution maps before the shuffle."""
        x = _check_sr_input(x, self.in_channels, self.spatial_dims)
        return self.subpixel(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The super-resolved batch ``(B, C, s h, s w)``."""
        return pixel_shuffle(self.features(x), self.scale)


# ------------------------------------------------------------------------------ LapSRN
def _bilinear_kernel(k: int) -> torch.Tensor:
    """A ``k x k`` bilinear-interpolation kernel for a transposed convolution (stride k // 2)."""
    factor = (k + 1) // 2
    centre = factor - 1 if k % 2 == 1 else factor - 0.5
    t = 1 - (torch.arange(k, dtype=torch.float64) - centre).abs() / factor
    return torch.outer(t, t).float()


def _upsample_edge(up: nn.ConvTranspose2d, image: torch.Tensor) -> torch.Tensor:
    """LapSRN's image branch ``up`` (4x4, stride 2, padding 1) on ``image`` replicated by one pixel at
    every edge, the two outermost output pixels cut: at its bilinear initialisation this is
    ``F.interpolate(image, scale_factor=2, mode="bilinear", align_corners=False)`` everywhere,
    where zero padding would darken the first and last row and column by a quarter."""
    return up(F.pad(image, (1, 1, 1, 1), mode="replicate"))[..., 2:-2, 2:-2]


class LapSRN(nn.Module):
    r"""LapSRN (Lai et al. 2017): a Laplacian pyramid of :math:`\times 2` levels.

    Level :math:`l = 1, \dots, \log_2 s` has a *feature branch* (``depth`` 3x3 convolutions
    with leaky ReLU, slope 0.2, then a 4x4 transposed convolution of stride 2) and an *image
    branch* (a 4x4 stride-2 transposed convolution of the previous image, initialised to
    bilinear interpolation, the image's edge pixels replicated so that the border is bilinear
    too):

    .. math:: \hat y_l = \uparrow_2 \hat y_{l-1} + W_{r,l} * f_l, \qquad \hat y_0 = y

    with :math:`f_l` the upsampled features and :math:`W_{r,l}` a 3x3 convolution predicting the
    residual (sub-band) image. Train with the Charbonnier loss at every level:
    ``forward(x, return_all=True)`` (or ``return_all=True`` at construction) returns the list
    :math:`[\hat y_1, \dots, \hat y_L]` (:math:`\times 2, \times 4, \dots`), see
    :class:`mlimaging.inverse.superres.MultiScaleLoss`. 2D only.

    Parameters
    ----------
    scale : int
        2, 4 or 8.
    in_channels : int
        1 (Y) or 3 (RGB).
    depth : int
        Convolutions per level (10 in the paper).
    features : int
        Channels of the feature branch (64).
    return_all : bool
        Default of ``forward``'s ``return_all``.

    Examples
    --------
    >>> import torch
    >>> net = LapSRN(scale=4, depth=2, features=8)
    >>> [o.shape[-1] for o in net(torch.rand(1, 1, 6, 6), return_all=True)]
    [12, 24]
    """

    def __init__(self, *, scale: int = 2, in_channels: int = 1, depth: int = 10, features: int = 64,
                 return_all: bool = False) -> None:
        super().__init__()
        self.scale = check_scale(scale, allowed=LAPSRN_SCALES, per_axis=False)
        self.spatial_dims = 2
        self.in_channels = check_int(in_channels, "in_channels")
        check_int(depth, "depth")
        check_int(features, "features")
        self.return_all = bool(return_all)
        self.levels = int(round(math.log2(self.scale[0])))
        self.embed = nn.Conv2d(in_channels, features, 3, padding=1)
        self.feature_branch = nn.ModuleList()
        self.residual = nn.ModuleList()
        self.image_up = nn.ModuleList()
        for _ in range(self.levels):
            layers: list[nn.Module] = []
            for _ in range(depth):
                layers += [nn.Conv2d(features, features, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            layers += [nn.ConvTranspose2d(features, features, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            self.feature_branch.append(nn.Sequential(*layers))
            self.residual.append(nn.Conv2d(features, in_channels, 3, padding=1))
            up = nn.ConvTranspose2d(in_channels, in_channels, 4, stride=2, padding=1, bias=False)
            with torch.no_grad():
                up.weight.zero_()
                for c in range(in_channels):
                    up.weight[c, c] = _bilinear_kernel(4)
            self.image_up.append(up)
        self._he_init(features)

    def _he_init(self, features: int) -> None:
        r"""He et al. (2015) initialisation for leaky ReLU (slope 0.2), as the paper, zero biases: the
        features keep their scale through the ``depth`` layers of every level (torch's default
        shrinks them about 1.7x per layer, so a 10-layer branch starts with nearly no signal and
        the residual convolution with nearly no gradient). A transposed convolution of stride 2
        sums :math:`C \cdot 4^2 / 2^2` products per output, hence its fan-in."""
        gain = nn.init.calculate_gain("leaky_relu", 0.2)
        for m in [self.embed, *self.feature_branch.modules(), *self.residual]:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=0.2, nonlinearity="leaky_relu")
            elif isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=gain / math.sqrt(features * 4))
            else:
                continue
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, return_all: bool | None = None) -> torch.Tensor | list[torch.Tensor]:
        """The final output, or the list of all levels' outputs when ``return_all``."""
        image = _check_sr_input(x, self.in_channels, 2)
        feats = F.leaky_relu(self.embed(image), 0.2)
        outputs = []
        for branch, residual, up in zip(self.feature_branch, self.residual, self.image_up, strict=True):
            feats = branch(feats)
            image = _upsample_edge(up, image) + residual(feats)
            outputs.append(image)
        return outputs if (self.return_all if return_all is None else return_all) else outputs[-1]


# ------------------------------------------------------------------------------ DBPN
class _Projection(nn.Module):
    r"""An up- (``up=True``) or down-projection unit with error feedback (Haris et al. 2018).

    Up: :math:`H_0 = \mathrm{deconv}(L)`, :math:`L_0 = \mathrm{conv}(H_0)`,
    :math:`H_1 = \mathrm{deconv}(L_0 - L)`, output :math:`H_0 + H_1`. Down swaps the roles.
    """

    def __init__(self, features: int, scale: int, *, up: bool) -> None:
        super().__init__()
        k, s, p = scale + 4, scale, 2  # 6/2/2 for x2, 8/4/2 for x4, as the paper; 7/3/2 for x3
        enlarge = lambda: nn.ConvTranspose2d(features, features, k, stride=s, padding=p)  # noqa: E731
        shrink = lambda: nn.Conv2d(features, features, k, stride=s, padding=p)  # noqa: E731
        self.first, self.back, self.second = (enlarge(), shrink(), enlarge()) if up else (shrink(), enlarge(), shrink())
        self.act = nn.ModuleList([nn.PReLU(features) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h0 = self.act[0](self.first(x))
        back = self.act[1](self.back(h0))
        return h0 + self.act[2](self.second(back - x))


class DBPN(nn.Module):
    r"""D-DBPN (Haris et al. 2018): iterative up- and down-projection with error feedback.

    Initial features (3x3 conv to ``stem_features``, 1x1 to ``features``), then ``stages``
    pairs of up- and down-projection units, densely connected as D-DBPN (the input of each
    unit is the concatenation of all previous units' outputs of its resolution, reduced by a
    1x1 convolution), and a 3x3 reconstruction of the concatenated high-resolution maps
    :math:`[H_1, \dots, H_T]`. An up-projection unit computes

    .. math::

        H_0 = (L_{t-1} * p_t)\!\uparrow_s,\quad L_0 = (H_0 * g_t)\!\downarrow_s,\quad
        H_t = H_0 + \big((L_0 - L_{t-1}) * q_t\big)\!\uparrow_s

    (the back-projected error :math:`L_0 - L_{t-1}` corrects :math:`H_0`); the down-projection
    unit is its mirror. Kernels :math:`s + 4`, stride :math:`s`, padding 2 (the paper's 6/8
    for x2/x4). The paper's D-DBPN has 256/64 features and 7 stages; the default here is a
    small CPU-sized network (32/16, 3 stages). ``residual=True`` adds the bicubic image to the
    output (as the later DBPN-RES; the paper's network has no global residual). 2D only.

    Parameters
    ----------
    scale : int
        2, 3 or 4.
    in_channels : int
        1 (Y) or 3 (RGB).
    stem_features, features : int
        :math:`n_0` and :math:`n_r` (256, 64 in the paper).
    stages : int
        Number of up-projection units :math:`T` (T - 1 down-projections between them), >= 1.
    residual : bool
        Add the bicubic upsampling of the input.

    Examples
    --------
    >>> import torch
    >>> net = DBPN(scale=3, stem_features=8, features=4, stages=2)
    >>> net(torch.rand(1, 1, 5, 5)).shape
    torch.Size([1, 1, 15, 15])
    """

    def __init__(self, *, scale: int = 2, in_channels: int = 1, stem_features: int = 32, features: int = 16,
                 stages: int = 3, residual: bool = False) -> None:
        super().__init__()
        self.scale = check_scale(scale, per_axis=False)
        self.spatial_dims = 2
        self.in_channels = check_int(in_channels, "in_channels")
        check_int(stem_features, "stem_features")
        check_int(features, "features")
        self.stages = check_int(stages, "stages")
        self.residual = bool(residual)
        s = self.scale[0]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_features, 3, padding=1), nn.PReLU(stem_features),
                                  nn.Conv2d(stem_features, features, 1), nn.PReLU(features))
        self.ups = nn.ModuleList([_Projection(features, s, up=True) for _ in range(self.stages)])
        self.downs = nn.ModuleList([_Projection(features, s, up=False) for _ in range(self.stages - 1)])
        # Dense connections: 1x1 reductions of the concatenated earlier outputs (none for the first units).
        self.reduce_low = nn.ModuleList([nn.Sequential(nn.Conv2d(features * (t + 1), features, 1), nn.PReLU(features))
                                         for t in range(1, self.stages)])
        self.reduce_high = nn.ModuleList([nn.Sequential(nn.Conv2d(features * (t + 1), features, 1), nn.PReLU(features))
                                          for t in range(1, self.stages - 1)])
        self.reconstruct = nn.Conv2d(features * self.stages, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The super-resolved batch ``(B, C, s h, s w)``."""
        x = _check_sr_input(x, self.in_channels, 2)
        lows = [self.stem(x)]
        highs = [self.ups[0](lows[0])]
        for t in range(1, self.stages):
            h_in = highs[0] if t == 1 else self.reduce_high[t - 2](torch.cat(highs, 1))
            lows.append(self.downs[t - 1](h_in))
            l_in = self.reduce_low[t - 1](torch.cat(lows, 1))
            highs.append(self.ups[t](l_in))
        out = self.reconstruct(torch.cat(highs, 1))
        return out + upsample_interp(x, self.scale) if self.residual else out


# ------------------------------------------------------------------------------ registry
@register_model("srcnn", input_shape=SR_INPUT, image_to_image=True)
def srcnn(*, scale: int | Sequence[int] = 2, in_channels: int = 1, features: Sequence[int] = (64, 32),
          kernel_sizes: Sequence[int] = (9, 1, 5), spatial_dims: int = 2, padding_mode: str = "zeros") -> SRCNN:
    """SRCNN (Dong et al. 2014): bicubic pre-upsampling, 9-1-5 convolutions, 64/32 filters."""
    return SRCNN(scale=scale, in_channels=in_channels, features=features, kernel_sizes=kernel_sizes,
                 spatial_dims=spatial_dims, padding_mode=padding_mode)


@register_model("vdsr", input_shape=SR_INPUT, image_to_image=True)
def vdsr(*, scale: int | Sequence[int] = 2, in_channels: int = 1, depth: int = 20, features: int = 64,
         spatial_dims: int = 2) -> VDSR:
    """VDSR (Kim et al. 2016): 20 3x3 layers on the bicubic image, residual learning."""
    return VDSR(scale=scale, in_channels=in_channels, depth=depth, features=features, spatial_dims=spatial_dims)


@register_model("espcn", input_shape=SR_INPUT, image_to_image=True)
def espcn(*, scale: int | Sequence[int] = 2, in_channels: int = 1, features: Sequence[int] = (64, 32),
          spatial_dims: int = 2) -> ESPCN:
    """ESPCN (Shi et al. 2016): low-resolution layers + sub-pixel convolution (ICNR init)."""
    return ESPCN(scale=scale, in_channels=in_channels, features=features, spatial_dims=spatial_dims)


@register_model("lapsrn", input_shape=SR_INPUT, image_to_image=True)
def lapsrn(*, scale: int = 2, in_channels: int = 1, depth: int = 10, features: int = 64,
           return_all: bool = False) -> LapSRN:
    """LapSRN (Lai et al. 2017): progressive x2 levels, feature and image branches."""
    return LapSRN(scale=scale, in_channels=in_channels, depth=depth, features=features, return_all=return_all)


@register_model("dbpn", input_shape=SR_INPUT, image_to_image=True)
def dbpn(*, scale: int = 2, in_channels: int = 1, stem_features: int = 32, features: int = 16, stages: int = 3,
         residual: bool = False) -> DBPN:
    """D-DBPN (Haris et al. 2018): dense up/down back-projection units (small CPU default)."""
    return DBPN(scale=scale, in_channels=in_channels, stem_features=stem_features, features=features,
                stages=stages, residual=residual)

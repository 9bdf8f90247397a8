r"""DeepLab-style segmentation: dilated (atrous) convolutions and atrous spatial pyramid pooling.

A 3x3 convolution with dilation (rate) :math:`r` samples its input at offsets
:math:`\{-r, 0, r\}` per axis,

.. math::

    y[i] = \sum_{k=-1}^{1} w[k]\, x[i + r k],

so it covers :math:`2r + 1` pixels per axis with the 9 weights of a 3x3 kernel. Chen et al.
(2017, 2018) use it twice:

- **Backbone with a chosen output stride.** A classification backbone downsamples by 2 in
  each of its stages. From the stage where the total stride would exceed ``output_stride``,
  the stride is removed and the following convolutions are dilated instead (rate 2, then 4,
  ...): the receptive field grows as before but the feature map stays at
  :math:`1/\text{output\_stride}` of the input.
- **ASPP.** Parallel branches look at the same features at several scales: a 1x1
  convolution, a 3x3 convolution per rate in ``rates`` (receptive field :math:`2r+1`), and
  image-level pooling (global average, 1x1 convolution, broadcast back over the map). Their
  outputs are concatenated and projected by a 1x1 convolution.

The logits (a 1x1 convolution after ASPP) are upsampled to the input size by bilinear
(trilinear in 3D) interpolation.

The backbone here has a stem (3x3 conv, :math:`c` channels) and four stages of two 3x3
conv blocks with :math:`2c, 4c, 8c, 8c` channels; stage :math:`s` nominally halves the size
in its first convolution. ``output_stride=4`` keeps the strides of stages 1-2 and replaces
those of stages 3 and 4 by rates 2 and 4; ``output_stride=8`` dilates only stage 4 (rate 2);
``output_stride=16`` keeps all four strides. In a dilated stage the first convolution keeps the
rate of the stage before it and the second uses the new rate (the scheme of the DeepLab
ResNets). Default ASPP rates are (1, 2, 4, 6), suited to feature maps of 8-16 pixels (the
papers use 6, 12, 18 on 65-pixel maps). The image-pooling branch has no normalisation (a
batch norm over a 1 x 1 map fails for batches of one in training). Convolutions are
initialised He-normal (the papers start from an ImageNet-pretrained backbone instead).

References
----------
Chen L.-C., Papandreou G., Schroff F., Adam H. (2017). Rethinking atrous convolution for
semantic image segmentation. arXiv:1706.05587.

Chen L.-C., Zhu Y., Papandreou G., Schroff F., Adam H. (2018). Encoder-decoder with atrous
separable convolution for semantic image segmentation. ECCV. arXiv:1802.02611.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models._dense import (
    check_dense_input,
    check_int_tuple,
    check_norm,
    check_spatial_dims,
    conv,
    conv_block,
    he_init,
)
from mlimaging.models._validation import check_int
from mlimaging.models.registry import register_model

__all__ = ["ASPP", "DeepLab"]

_OUTPUT_STRIDES = (2, 4, 8, 16)
_STAGES = 4


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1 conv, dilated 3x3 convs, image pooling, 1x1 fuse.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input features and of every branch and the output.
    rates : sequence of int
        Dilation of each 3x3 branch (one branch per rate, padding = rate).
    spatial_dims : {2, 3}
        2D or 3D features.
    norm : {"batch", "instance", None}
        Normalisation in the convolutional branches and the projection.

    Examples
    --------
    >>> import torch
    >>> aspp = ASPP(16, 8, rates=(1, 2, 4))
    >>> len(aspp.branches)  # the 1x1 conv and one 3x3 conv per rate
    4
    >>> aspp.branches[3][0].dilation
    (4, 4)
    >>> aspp(torch.zeros(2, 16, 9, 7)).shape
    torch.Size([2, 8, 9, 7])
    """

    def __init__(self, in_channels: int, out_channels: int, *, rates: Sequence[int] = (1, 2, 4, 6),
                 spatial_dims: int = 2, norm: str | None = "batch") -> None:
        super().__init__()
        check_int(in_channels, "in_channels")
        check_int(out_channels, "out_channels")
        self.rates = check_int_tuple(rates, "rates")
        d = check_spatial_dims(spatial_dims)
        norm = check_norm(norm)
        self.branches = nn.ModuleList(
            [conv_block(d, in_channels, out_channels, norm=norm, kernel_size=1)]
            + [conv_block(d, in_channels, out_channels, norm=norm, padding=r, dilation=r)
               for r in self.rates]
        )
        pool = nn.AdaptiveAvgPool2d(1) if d == 2 else nn.AdaptiveAvgPool3d(1)
        self.image_pool = nn.Sequential(pool, conv(d, in_channels, out_channels, 1),
                                        nn.ReLU(inplace=True))
        n_branches = len(self.branches) + 1
        self.project = conv_block(d, n_branches * out_channels, out_channels, norm=norm,
                                  kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused multi-rate features, same spatial size as ``x``."""
        outs = [branch(x) for branch in self.branches]
        outs.append(self.image_pool(x).expand(-1, -1, *x.shape[2:]))
        return self.project(torch.cat(outs, dim=1))


class DeepLab(nn.Module):
    """DeepLab-v3-style network: dilated backbone at ``output_stride``, ASPP, upsampling.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Output channels (logits per pixel).
    spatial_dims : {2, 3}
        2D or 3D images.
    channels : int
        Width :math:`c` of the stem; the stages have :math:`2c, 4c, 8c, 8c` channels.
    output_stride : {2, 4, 8, 16}
        Input size / feature size of the backbone.
    rates : sequence of int
        ASPP rates of the 3x3 branches.
    aspp_channels : int
        Channels of each ASPP branch and of its output.
    norm : {"batch", "instance", None}
        Normalisation after the convolutions.

    Examples
    --------
    >>> import torch
    >>> model = DeepLab(num_classes=3, output_stride=4)
    >>> model(torch.zeros(2, 1, 30, 21)).shape  # any size: logits are upsampled to it
    torch.Size([2, 3, 30, 21])
    >>> model.backbone(torch.zeros(1, 1, 32, 32)).shape  # 1/4 of the input
    torch.Size([1, 64, 8, 8])
    >>> [m.dilation[0] for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    [1, 1, 1, 1, 1, 1, 2, 2, 4]
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
                 channels: int = 8, output_stride: int = 4, rates: Sequence[int] = (1, 2, 4, 6),
                 aspp_channels: int = 32, norm: str | None = "batch") -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.spatial_dims = check_spatial_dims(spatial_dims)
        check_int(channels, "channels")
        check_int(aspp_channels, "aspp_channels")
        if output_stride not in _OUTPUT_STRIDES or isinstance(output_stride, bool):
            raise ValueError(
                f"output_stride must be one of {_OUTPUT_STRIDES}, got {output_stride!r}"
            )
        self.output_stride = int(output_stride)
        norm = check_norm(norm)
        d = self.spatial_dims
        layers: list[nn.Module] = [conv_block(d, in_channels, channels, norm=norm, padding=1)]
        c_in, stride, rate = channels, 1, 1
        for stage in range(1, _STAGES + 1):
            c_out = channels * 2 ** min(stage, 3)
            if stride < self.output_stride:  # a real downsampling stage
                stride *= 2
                layers.append(conv_block(d, c_in, c_out, norm=norm, stride=2, padding=1))
                layers.append(conv_block(d, c_out, c_out, norm=norm, padding=1))
            else:  # the stride becomes dilation: same map size, receptive field as if strided
                new_rate = rate * 2
                layers.append(conv_block(d, c_in, c_out, norm=norm, padding=rate, dilation=rate))
                layers.append(conv_block(d, c_out, c_out, norm=norm, padding=new_rate,
                                         dilation=new_rate))
                rate = new_rate
            c_in = c_out
        self.backbone = nn.Sequential(*layers)
        self.aspp = ASPP(c_in, aspp_channels, rates=rates, spatial_dims=d, norm=norm)
        self.classifier = conv(d, aspp_channels, num_classes, 1)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, *spatial)`` of images ``(B, in_channels, *spatial)``."""
        check_dense_input(x, self.in_channels, self.spatial_dims)
        size = x.shape[2:]
        logits = self.classifier(self.aspp(self.backbone(x)))
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        return F.interpolate(logits, size=size, mode=mode, align_corners=False)


@register_model("deeplab", input_shape=(1, 32, 32))
def deeplab(*, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
            channels: int = 8, output_stride: int = 4, rates: Sequence[int] = (1, 2, 4, 6),
            aspp_channels: int = 32, norm: str | None = "batch") -> DeepLab:
    """DeepLab-v3 style (Chen et al. 2017): dilated backbone at output stride 4, ASPP."""
    return DeepLab(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims,
                   channels=channels, output_stride=output_stride, rates=rates,
                   aspp_channels=aspp_channels, norm=norm)

r"""U-Net: a contracting and an expanding path joined by skip connections, 2D or 3D.

Ronneberger et al. (2015) stack, at each resolution level :math:`l`, two 3x3 convolutions
with ReLU; the contracting path halves the size with a 2x2 max-pool and doubles the
channels, the expanding path doubles the size with a 2x2 "up-convolution" (transposed
convolution with stride 2) that halves the channels, **concatenates** the feature map of
the same level of the contracting path (the skip connection), and convolves again:

.. math::

    d_l = \operatorname{conv}^2\big([\, \operatorname{up}(d_{l+1}),\; e_l \,]\big),
    \qquad e_l = \operatorname{conv}^2(\operatorname{pool}(e_{l-1})),

with :math:`c_l = c \cdot 2^l` channels at level :math:`l = 0, \dots, L` (``channels`` =
:math:`c`, ``depth`` = :math:`L` poolings; the bottleneck is level :math:`L`). The first
convolution of decoder level :math:`l` therefore reads :math:`2 c_l` channels: half from
below, half from the skip. A 1x1 convolution maps :math:`c_0` channels to the logits.

Differences from the paper: 'same' padding (the paper's valid convolutions shrink the map
and need cropped skips), so the output has the input size when every spatial axis is
divisible by :math:`2^L`; an optional batch or instance norm after each convolution; the
defaults are small for the CPU (:math:`c = 8`, :math:`L = 3` instead of 64 and 4).
``spatial_dims=3`` gives the 3D U-Net (Cicek et al. 2016). Convolutions are initialised
He-normal, :math:`\mathcal{N}(0, 2/n_{in})`, as the paper recommends.

References
----------
Ronneberger O., Fischer P., Brox T. (2015). U-Net: convolutional networks for biomedical
image segmentation. MICCAI. arXiv:1505.04597.

Cicek O., Abdulkadir A., Lienkamp S. S., Brox T., Ronneberger O. (2016). 3D U-Net: learning
dense volumetric segmentation from sparse annotation. MICCAI. arXiv:1606.06650.
"""

from __future__ import annotations

import torch
from torch import nn

from mlimaging.models._dense import (
    check_dense_input,
    check_divisible,
    check_norm,
    check_spatial_dims,
    conv,
    conv_block,
    conv_transpose,
    he_init,
    max_pool,
)
from mlimaging.models._validation import check_int
from mlimaging.models.registry import register_model

__all__ = ["UNet"]


def _double_conv(spatial_dims: int, c_in: int, c_out: int, norm: str | None) -> nn.Sequential:
    return nn.Sequential(conv_block(spatial_dims, c_in, c_out, norm=norm, padding=1),
                         conv_block(spatial_dims, c_out, c_out, norm=norm, padding=1))


class UNet(nn.Module):
    """U-Net with 'same' padding and concatenated skip connections, 2D or 3D.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Output channels (logits per pixel).
    spatial_dims : {2, 3}
        2D or 3D images.
    depth : int
        Number of 2x poolings :math:`L` (inputs divisible by :math:`2^L`).
    channels : int
        Channels :math:`c` of level 0, doubling at each level.
    norm : {"batch", "instance", None}
        Normalisation after each 3x3 convolution (None: the paper's plain conv + ReLU).

    Examples
    --------
    >>> import torch
    >>> model = UNet(num_classes=2, depth=2, channels=4)
    >>> model(torch.zeros(1, 1, 12, 16)).shape
    torch.Size([1, 2, 12, 16])
    >>> model.decoders[0][0][0].in_channels  # 4 from below + 4 from the skip
    8
    >>> UNet(spatial_dims=3, depth=1, channels=2)(torch.zeros(1, 1, 4, 6, 8)).shape
    torch.Size([1, 10, 4, 6, 8])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
                 depth: int = 3, channels: int = 8, norm: str | None = "batch") -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.depth = check_int(depth, "depth")
        check_int(channels, "channels")
        norm = check_norm(norm)
        d = self.spatial_dims
        self.widths = [channels * 2**level for level in range(depth + 1)]
        w = self.widths
        self.encoders = nn.ModuleList(
            [_double_conv(d, in_channels, w[0], norm)]
            + [_double_conv(d, w[level - 1], w[level], norm) for level in range(1, depth + 1)]
        )
        self.pool = max_pool(d)
        # ups[l] / decoders[l] bring level l + 1 up to level l.
        self.ups = nn.ModuleList(
            [conv_transpose(d, w[level + 1], w[level], 2, stride=2) for level in range(depth)]
        )
        self.decoders = nn.ModuleList(
            [_double_conv(d, 2 * w[level], w[level], norm) for level in range(depth)]
        )
        self.head = conv(d, w[0], num_classes, 1)
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, *spatial)`` of images ``(B, in_channels, *spatial)``."""
        check_dense_input(x, self.in_channels, self.spatial_dims)
        check_divisible(x, 2**self.depth, f"{self.depth} levels of 2x pooling")
        skips = []
        for level, encoder in enumerate(self.encoders):
            x = encoder(x if level == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()  # the bottleneck
        for level in reversed(range(self.depth)):
            x = torch.cat([self.ups[level](x), skips[level]], dim=1)
            x = self.decoders[level](x)
        return self.head(x)


@register_model("unet", input_shape=(1, 32, 32))
def unet(*, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2, depth: int = 3,
         channels: int = 8, norm: str | None = "batch") -> UNet:
    """U-Net (Ronneberger et al. 2015) with 'same' padding; 2D or 3D, small CPU defaults."""
    return UNet(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims,
                depth=depth, channels=channels, norm=norm)

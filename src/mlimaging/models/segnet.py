r"""SegNet: an encoder-decoder that upsamples by max-unpooling at the recorded indices.

Badrinarayanan et al. (2017) pair every encoder max-pool with a decoder "unpool": the pool
remembers, for each :math:`2 \times 2` window, *where* its maximum was, and the unpool puts
each value of the coarser map back at exactly that position, filling the other three with
zeros. The decoder's convolutions then densify the sparse map. No skip connection copies
features (only the indices travel, a few bits per window), unlike U-Net.

Here, with :math:`c_l = c \cdot 2^l` channels at level :math:`l = 0, \dots, L-1`
(``channels`` = :math:`c`, ``depth`` = :math:`L`):

- encoder level :math:`l`: ``convs_per_block`` 3x3 convolutions ('same' padding) with
  norm and ReLU to :math:`c_l` channels, then a 2x2 max-pool with stride 2 that returns
  its indices;
- decoder level :math:`l` (deepest first): max-unpool with the indices of encoder level
  :math:`l`, then ``convs_per_block`` 3x3 convolutions, the last one going to
  :math:`c_{l-1}` channels (:math:`c_0` at level 0) as in the paper's mirrored decoder;
- a 1x1 convolution to ``num_classes`` logits (the paper's trainable soft-max classifier,
  without the soft-max: it lives in the loss).

The output has the input size; each spatial axis must be divisible by :math:`2^L`.
The paper's network is the VGG-16 encoder (``depth=5``, ``channels=64``, three
convolutions in the three deepest levels); ``spatial_dims=3`` uses 3D pooling/unpooling.
Convolutions are initialised He-normal, as in the paper.

References
----------
Badrinarayanan V., Kendall A., Cipolla R. (2017). SegNet: a deep convolutional
encoder-decoder architecture for image segmentation. IEEE TPAMI 39(12):2481-2495.
DOI 10.1109/TPAMI.2016.2644615.
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
    he_init,
    max_pool,
    max_unpool,
)
from mlimaging.models._validation import check_int
from mlimaging.models.registry import register_model

__all__ = ["SegNet"]


def _stack(spatial_dims: int, widths: list[int], norm: str | None) -> nn.Sequential:
    """3x3 'same' conv blocks through the channel counts ``widths`` (first = input)."""
    return nn.Sequential(*[conv_block(spatial_dims, a, b, norm=norm, padding=1)
                           for a, b in zip(widths[:-1], widths[1:], strict=True)])


class SegNet(nn.Module):
    """SegNet encoder-decoder with pooling indices, 2D or 3D.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Output channels (logits per pixel).
    spatial_dims : {2, 3}
        2D or 3D images.
    depth : int
        Number of pool/unpool levels :math:`L` (inputs divisible by :math:`2^L`).
    channels : int
        Channels :math:`c` of level 0, doubling at each level.
    convs_per_block : int
        3x3 convolutions per encoder and per decoder level.
    norm : {"batch", "instance", None}
        Normalisation after each convolution (the paper uses batch norm).

    Examples
    --------
    >>> import torch
    >>> model = SegNet(num_classes=3, depth=2)
    >>> model(torch.zeros(2, 1, 16, 12)).shape
    torch.Size([2, 3, 16, 12])
    >>> features, indices, sizes = model.encode(torch.zeros(1, 1, 16, 12))
    >>> features.shape, [tuple(i.shape) for i in indices]
    (torch.Size([1, 16, 4, 3]), [(1, 8, 8, 6), (1, 16, 4, 3)])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
                 depth: int = 3, channels: int = 8, convs_per_block: int = 2,
                 norm: str | None = "batch") -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.depth = check_int(depth, "depth")
        check_int(channels, "channels")
        n = check_int(convs_per_block, "convs_per_block")
        norm = check_norm(norm)
        self.widths = [channels * 2**level for level in range(depth)]
        d = self.spatial_dims
        encoders, decoders = [], []
        c_in = in_channels
        for level, c in enumerate(self.widths):
            encoders.append(_stack(d, [c_in] + [c] * n, norm))
            c_out = self.widths[max(level - 1, 0)]
            decoders.append(_stack(d, [c] * n + [c_out], norm))
            c_in = c
        self.encoders = nn.ModuleList(encoders)
        self.decoders = nn.ModuleList(decoders)  # decoders[l] follows the unpool of level l
        self.pool = max_pool(d, return_indices=True)
        self.unpool = max_unpool(d)
        self.classifier = conv(d, self.widths[0], num_classes, 1)
        he_init(self)

    def encode(self, x: torch.Tensor
               ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Size]]:
        """The encoder: the coarsest features, and per level the pooling indices and the
        size of the map before pooling (what the decoder needs to unpool)."""
        check_dense_input(x, self.in_channels, self.spatial_dims)
        check_divisible(x, 2**self.depth, f"{self.depth} levels of 2x pooling")
        indices, sizes = [], []
        for encoder in self.encoders:
            x = encoder(x)
            sizes.append(x.shape)
            x, idx = self.pool(x)
            indices.append(idx)
        return x, indices, sizes

    def decode(self, x: torch.Tensor, indices: list[torch.Tensor],
               sizes: list[torch.Size]) -> torch.Tensor:
        """The decoder: unpool with the indices of each level, deepest first, then convolve;
        returns the logits."""
        for level in reversed(range(self.depth)):
            x = self.unpool(x, indices[level], output_size=sizes[level][2:])
            x = self.decoders[level](x)
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, *spatial)`` of images ``(B, in_channels, *spatial)``."""
        return self.decode(*self.encode(x))


@register_model("segnet", input_shape=(1, 32, 32))
def segnet(*, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
           depth: int = 3, channels: int = 8, convs_per_block: int = 2,
           norm: str | None = "batch") -> SegNet:
    """SegNet (Badrinarayanan et al. 2017): max-unpooling at the encoder's pooling indices."""
    return SegNet(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims,
                  depth=depth, channels=channels, convs_per_block=convs_per_block, norm=norm)

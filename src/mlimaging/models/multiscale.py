r"""Multi-scale (two-pathway) dense CNN in the style of DeepMedic.

Kamnitsas et al. (2017) give the network more context without more computation at full
resolution: a *normal* pathway convolves a patch at full resolution, a *context* pathway
convolves a larger region around the same centre downsampled by a factor :math:`f` (3 in
DeepMedic), the context features are upsampled by repetition to the normal pathway's grid,
both are concatenated, and 1x1 convolutions (the "fully connected" layers applied densely)
give the class scores.

Input convention. The model takes the full-resolution region ``x`` of side :math:`S` per
axis (the context region) and builds both pathways itself:

- context: ``avg_pool(x, f)`` (side :math:`S / f`; :math:`S` must be divisible by :math:`f`);
- normal: the centre crop of ``x`` that drops :math:`m = L (f - 1)` pixels on each side,
  :math:`L` being the number of (valid, unpadded) 3x3 convolutions per pathway.

Each pathway loses :math:`2L` pixels per axis, so the normal pathway gives
:math:`S - 2L(f-1) - 2L = S - 2Lf` outputs and the context pathway
:math:`S/f - 2L`, which the :math:`f`-fold repetition turns into the same
:math:`S - 2Lf`. The grids line up: output :math:`j` is centred on input pixel
:math:`j + Lf`, where the normal pathway sees :math:`2L + 1` full-resolution pixels and the
context pathway the block of :math:`f(2L+1)` pixels starting at :math:`f \lfloor j/f \rfloor`.
With the paper's values (:math:`L = 8`, :math:`f = 3`, :math:`S = 57`) the normal pathway
reads the central 25 pixels, the context pathway 19 downsampled ones, and the output is
:math:`9` per axis, as in DeepMedic. Here the defaults are smaller (:math:`L = 4` layers of
8, 8, 16, 16 channels, two hidden 1x1 layers of 32, batch norm), e.g. :math:`S = 36 \to 12`.
Convolutions are initialised He-normal, as in the paper.

References
----------
Kamnitsas K., Ledig C., Newcombe V. F. J., Simpson J. P., Kane A. D., Menon D. K.,
Rueckert D., Glocker B. (2017). Efficient multi-scale 3D CNN with fully connected CRF for
accurate brain lesion segmentation. Medical Image Analysis 36:61-78.
DOI 10.1016/j.media.2016.10.004.
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

__all__ = ["MultiScaleCNN"]


def _pathway(spatial_dims: int, in_channels: int, channels: tuple[int, ...],
             norm: str | None) -> nn.Sequential:
    widths = (in_channels, *channels)
    return nn.Sequential(*[conv_block(spatial_dims, a, b, norm=norm)
                           for a, b in zip(widths[:-1], widths[1:], strict=True)])


class MultiScaleCNN(nn.Module):
    """Two pathways (full resolution + downsampled context) fused by 1x1 convolutions.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Output channels (logits per output pixel).
    spatial_dims : {2, 3}
        2D or 3D images (DeepMedic is 3D).
    factor : int
        Downsampling factor :math:`f` of the context pathway (average pooling).
    channels : sequence of int
        Channels of the :math:`L` valid 3x3 convolutions of each pathway.
    fc_channels : sequence of int
        Hidden 1x1 layers after the concatenation (may be empty).
    norm : {"batch", "instance", None}
        Normalisation after each convolution.

    Examples
    --------
    >>> import torch
    >>> model = MultiScaleCNN(num_classes=2)  # L = 4, f = 3
    >>> model.output_size(36), model.input_size(12)
    (12, 36)
    >>> model(torch.zeros(1, 1, 36, 45)).shape
    torch.Size([1, 2, 12, 21])
    >>> normal, context = model.pathway_inputs(torch.zeros(1, 1, 36, 36))
    >>> normal.shape, context.shape
    (torch.Size([1, 1, 20, 20]), torch.Size([1, 1, 12, 12]))
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
                 factor: int = 3, channels: Sequence[int] = (8, 8, 16, 16),
                 fc_channels: Sequence[int] = (32, 32), norm: str | None = "batch") -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.factor = check_int(factor, "factor")
        self.channels = check_int_tuple(channels, "channels")
        fc = tuple(fc_channels)
        if fc:
            fc = check_int_tuple(fc, "fc_channels")
        norm = check_norm(norm)
        d = self.spatial_dims
        self.normal = _pathway(d, in_channels, self.channels, norm)
        self.context = _pathway(d, in_channels, self.channels, norm)
        layers: list[nn.Module] = []
        c_in = 2 * self.channels[-1]
        for c_out in fc:
            layers.append(conv_block(d, c_in, c_out, norm=norm, kernel_size=1))
            c_in = c_out
        layers.append(conv(d, c_in, num_classes, 1))
        self.classifier = nn.Sequential(*layers)
        he_init(self)

    @property
    def num_layers(self) -> int:
        """:math:`L`, the number of 3x3 convolutions per pathway."""
        return len(self.channels)

    @property
    def margin(self) -> int:
        """Pixels cropped on each side for the normal pathway, :math:`L (f - 1)`."""
        return self.num_layers * (self.factor - 1)

    def output_size(self, input_size: int) -> int:
        """Output side for an input side :math:`S`: :math:`S - 2Lf`."""
        return input_size - 2 * self.num_layers * self.factor

    def input_size(self, output_size: int) -> int:
        """Input side that gives ``output_size`` (a multiple of :math:`f`): :math:`O + 2Lf`."""
        if output_size < 1 or output_size % self.factor:
            raise ValueError(
                f"output_size must be a positive multiple of factor={self.factor}, "
                f"got {output_size!r}"
            )
        return output_size + 2 * self.num_layers * self.factor

    def pathway_inputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normal-pathway crop and the downsampled context of ``x`` (see module doc)."""
        check_dense_input(x, self.in_channels, self.spatial_dims)
        size = tuple(x.shape[2:])
        smallest = self.input_size(self.factor)
        if any(s % self.factor or s < smallest for s in size):
            raise ValueError(
                f"x spatial size {size} must be divisible by factor={self.factor} and at "
                f"least {smallest} per axis ({self.num_layers} valid 3x3 convolutions per "
                "pathway)"
            )
        m = self.margin
        normal = x[(..., *[slice(m, s - m) for s in size])]
        pool = F.avg_pool2d if self.spatial_dims == 2 else F.avg_pool3d
        context = pool(x, self.factor) if self.factor > 1 else x
        return normal, context

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, *(S - 2Lf))`` of regions ``(B, in_channels, *S)``."""
        normal, context = self.pathway_inputs(x)
        fine = self.normal(normal)
        coarse = self.context(context)
        for axis in range(2, coarse.ndim):  # upsample by repetition, as DeepMedic
            coarse = coarse.repeat_interleave(self.factor, dim=axis)
        return self.classifier(torch.cat([fine, coarse], dim=1))


@register_model("multiscale", input_shape=(1, 36, 36))
def multiscale(*, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
               factor: int = 3, channels: Sequence[int] = (8, 8, 16, 16),
               fc_channels: Sequence[int] = (32, 32), norm: str | None = "batch") -> MultiScaleCNN:
    """DeepMedic-style two-pathway CNN (Kamnitsas et al. 2017): full-res + 3x context."""
    return MultiScaleCNN(in_channels=in_channels, num_classes=num_classes,
                         spatial_dims=spatial_dims, factor=factor, channels=channels,
                         fc_channels=fc_channels, norm=norm)

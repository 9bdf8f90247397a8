r"""Segmentation by dense classification: a 17 x 17 patch classifier and its FCN twin.

The course's classical approach classifies the centre pixel of every 17 x 17 patch with a
small CNN ending in a fully connected layer. :class:`PatchCNN` is that network: three valid
(unpadded) 5 x 5 convolutions shrink the patch :math:`17 \to 13 \to 9 \to 5`, and the
fully connected head reads the whole :math:`5 \times 5` map, which amounts to a fourth
5 x 5 layer giving a single output (the course's "four 5 x 5 convolutions give 1 x 1"):

=========  ===========================================  ==============  ======================
layer      operation                                    output (2D)     parameters (defaults)
=========  ===========================================  ==============  ======================
conv1      conv :math:`c_1` @ 5x5, valid, ReLU          8 x 13 x 13     :math:`25 C c_1 + c_1` = 208
conv2      conv :math:`c_2` @ 5x5, valid, ReLU          16 x 9 x 9      3,216
conv3      conv :math:`c_3` @ 5x5, valid, ReLU          16 x 5 x 5      6,416
fc1        linear :math:`25 c_3 \to h`, ReLU            32              12,832
fc2        linear :math:`h \to K`                       10              330
=========  ===========================================  ==============  ======================

23,002 parameters with the defaults (``channels=(8, 16, 16)``, ``hidden=32``, one input
channel, ten classes). No pooling and no padding: every layer has stride 1, so the receptive
field of the output is :math:`1 + 4 \cdot 4 = 17` pixels, exactly the patch.

:class:`FCN` writes fc1 as a 5 x 5 convolution and fc2 as a 1 x 1 convolution (Long et al.
2015). Because nothing is strided, running it once on an :math:`H \times W` image gives the
dense :math:`(H - 16) \times (W - 16)` map whose entry :math:`(i, j)` is the patch CNN applied
to the patch ``x[..., i:i+17, j:j+17]``, i.e. the class scores of pixel :math:`(i + 8, j + 8)`,
at full resolution and without recomputing the overlap of neighbouring patches.
With ``pad=True`` the image is first padded by 8 pixels on every side, so the map has the
size of the input (pixel :math:`(i, j)` is classified from the 17 x 17 patch centred on it in
the padded image). Both networks also exist in 3D (``spatial_dims=3``: 17 x 17 x 17 patches).

References
----------
Long J., Shelhamer E., Darrell T. (2015). Fully convolutional networks for semantic
segmentation. CVPR. arXiv:1411.4038.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models._dense import (
    check_dense_input,
    check_int_tuple,
    check_spatial_dims,
    conv,
)
from mlimaging.models._validation import check_int
from mlimaging.models.registry import register_model

__all__ = ["FCN", "PATCH_SIZE", "PatchCNN"]

#: Side of the classified patch (the receptive field of both networks).
PATCH_SIZE = 17
#: Kernel side of every layer; three convolutions and the fc head (a fourth 5x5 "layer").
KERNEL = 5
#: Padding that keeps the input size in ``FCN(pad=True)``.
HALF = PATCH_SIZE // 2
_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}


def _features(spatial_dims: int, in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = in_channels
    for c_out in channels:
        layers += [conv(spatial_dims, c_in, c_out, KERNEL), nn.ReLU(inplace=True)]
        c_in = c_out
    return nn.Sequential(*layers)


class PatchCNN(nn.Module):
    """Classify the centre pixel of a 17 x 17 (x 17) patch: three valid 5x5 convs + fc head.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Number of output logits.
    spatial_dims : {2, 3}
        2D patches (B, C, 17, 17) or 3D patches (B, C, 17, 17, 17).
    channels : sequence of 3 ints
        Output channels of conv1, conv2, conv3.
    hidden : int
        Units of the hidden fully connected layer.

    Examples
    --------
    >>> import torch
    >>> model = PatchCNN(num_classes=2)
    >>> model(torch.zeros(4, 1, 17, 17)).shape
    torch.Size([4, 2])
    >>> sum(p.numel() for p in PatchCNN().parameters())
    23002
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
                 channels: Sequence[int] = (8, 16, 16), hidden: int = 32) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.channels = check_int_tuple(channels, "channels", length=3)
        self.hidden = check_int(hidden, "hidden")
        self.features = _features(self.spatial_dims, in_channels, self.channels)
        self.fc1 = nn.Linear(self.channels[-1] * KERNEL**self.spatial_dims, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of patches ``(B, in_channels, 17, 17[, 17])``."""
        check_dense_input(x, self.in_channels, self.spatial_dims)
        if any(s != PATCH_SIZE for s in x.shape[2:]):
            expected = ", ".join([str(PATCH_SIZE)] * self.spatial_dims)
            raise ValueError(
                f"x must have shape (B, {self.in_channels}, {expected}) (patches of "
                f"{PATCH_SIZE} pixels per axis), got {tuple(x.shape)}; use FCN for whole images"
            )
        x = self.features(x).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


class FCN(nn.Module):
    r"""The fully convolutional :class:`PatchCNN`: one pass gives the dense class map.

    Parameters
    ----------
    in_channels, num_classes, spatial_dims, channels, hidden
        As for :class:`PatchCNN`.
    pad : bool
        If False (default) the output is smaller than the input by 16 per axis (valid
        convolutions only: each output is a full 17-pixel patch of the input). If True
        the input is first padded by 8 on each side and the output has the input size.
    padding_mode : {"reflect", "zeros", "replicate"}
        How ``pad=True`` fills the border: mirror without repeating the edge (needs more
        than 8 pixels per axis), zeros, or the edge value repeated.

    Examples
    --------
    >>> import torch
    >>> patch = PatchCNN(num_classes=2).eval()
    >>> fcn = FCN.from_patch_cnn(patch).eval()
    >>> image = torch.rand(1, 1, 40, 40)
    >>> fcn(image).shape
    torch.Size([1, 2, 24, 24])
    >>> torch.allclose(fcn(image)[..., 3, 5], patch(image[..., 3:20, 5:22]), atol=1e-6)
    True
    >>> FCN(pad=True)(image).shape
    torch.Size([1, 10, 40, 40])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
                 channels: Sequence[int] = (8, 16, 16), hidden: int = 32, pad: bool = False,
                 padding_mode: str = "reflect") -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.channels = check_int_tuple(channels, "channels", length=3)
        self.hidden = check_int(hidden, "hidden")
        if padding_mode not in _PAD_MODES:
            raise ValueError(
                f"padding_mode must be one of {sorted(_PAD_MODES)}, got {padding_mode!r}"
            )
        self.pad = bool(pad)
        self.padding_mode = padding_mode
        self.features = _features(self.spatial_dims, in_channels, self.channels)
        self.fc1 = conv(self.spatial_dims, self.channels[-1], hidden, KERNEL)
        self.fc2 = conv(self.spatial_dims, hidden, num_classes, 1)

    @classmethod
    def from_patch_cnn(cls, patch_cnn: PatchCNN, *, pad: bool = False,
                       padding_mode: str = "reflect") -> FCN:
        """An FCN with the weights of ``patch_cnn`` (fc weights reshaped to kernels).

        fc1's weight ``(h, 25 c_3)`` becomes ``(h, c_3, 5, 5)``: the patch CNN flattens its
        ``(c_3, 5, 5)`` map in (channel, row, column) order. The copy has the device and
        dtype of ``patch_cnn`` and shares no storage with it.
        """
        if not isinstance(patch_cnn, PatchCNN):
            raise ValueError(f"patch_cnn must be a PatchCNN, got {type(patch_cnn).__name__}")
        fcn = cls(in_channels=patch_cnn.in_channels, num_classes=patch_cnn.num_classes,
                  spatial_dims=patch_cnn.spatial_dims, channels=patch_cnn.channels,
                  hidden=patch_cnn.hidden, pad=pad, padding_mode=padding_mode)
        ref = patch_cnn.fc1.weight
        fcn.to(device=ref.device, dtype=ref.dtype)
        target = fcn.state_dict()
        fcn.load_state_dict({name: tensor.reshape(target[name].shape).clone()
                             for name, tensor in patch_cnn.state_dict().items()})
        return fcn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class-score map ``(B, num_classes, *spatial)`` of images ``(B, in_channels, *spatial)``:
        the input size minus 16 per axis, or the input size with ``pad=True``."""
        check_dense_input(x, self.in_channels, self.spatial_dims)
        size = tuple(x.shape[2:])
        if self.pad:
            if self.padding_mode == "reflect" and min(size) <= HALF:
                raise ValueError(
                    f"x must have more than {HALF} pixels per axis for reflect padding, "
                    f"got spatial size {size}"
                )
            x = F.pad(x, (HALF, HALF) * self.spatial_dims, mode=_PAD_MODES[self.padding_mode])
        elif min(size) < PATCH_SIZE:
            raise ValueError(
                f"x must have at least {PATCH_SIZE} pixels per axis without padding, got "
                f"spatial size {size} (use pad=True)"
            )
        x = F.relu(self.fc1(self.features(x)))
        return self.fc2(x)


@register_model("patch_cnn", input_shape=(1, PATCH_SIZE, PATCH_SIZE))
def patch_cnn(*, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
              channels: Sequence[int] = (8, 16, 16), hidden: int = 32) -> PatchCNN:
    """Centre-pixel classifier of 17 x 17 patches: three valid 5x5 convs and an fc head."""
    return PatchCNN(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims,
                    channels=channels, hidden=hidden)


@register_model("fcn", input_shape=(1, 24, 24))
def fcn(*, in_channels: int = 1, num_classes: int = 10, spatial_dims: int = 2,
        channels: Sequence[int] = (8, 16, 16), hidden: int = 32, pad: bool = False,
        padding_mode: str = "reflect") -> FCN:
    """Fully convolutional patch CNN: a dense (B, K, H-16, W-16) map, or H x W with pad=True."""
    return FCN(in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims,
               channels=channels, hidden=hidden, pad=pad, padding_mode=padding_mode)

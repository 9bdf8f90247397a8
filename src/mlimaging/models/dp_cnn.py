r"""A small tanh CNN with GroupNorm for differentially private training (DP-SGD).

The end-to-end MNIST CNN of Papernot et al. (2021) that Tramèr & Boneh (2021) train with DP-SGD
as their baseline, with GroupNorm (Wu & He 2018) after each convolution and the input
standardisation inside the model. On a :math:`28 \times 28` input with the defaults
(``width=16``, ``hidden=32``, ``groups=4``):

=======  ==============================================  ============  ==========
layer    operation                                       output        parameters
=======  ==============================================  ============  ==========
std      :math:`(x - \mu) / s`, fixed constants          1 x 28 x 28   0
conv1    conv 16 @ 8x8, stride 2, padding 3              16 x 14 x 14  1,040
norm1    GroupNorm, 4 groups of 4 channels               16 x 14 x 14  32
         tanh, max-pool 2x2 stride 1                     16 x 13 x 13  0
conv2    conv 32 @ 4x4, stride 2                         32 x 5 x 5    8,224
norm2    GroupNorm, 4 groups of 8 channels               32 x 5 x 5    64
         tanh, max-pool 2x2 stride 1, flatten            512           0
fc1      linear 512 -> 32, tanh                          32            16,416
fc2      linear 32 -> 10                                 10            330
=======  ==============================================  ============  ==========

26,106 parameters in all (26,010 with ``norm="none"``). GroupNorm over groups :math:`g` of
channels of one image,

.. math::

    \operatorname{GN}(h)_{c,i,j} = \gamma_c \frac{h_{c,i,j} - \mu_{g(c)}}{\sqrt{\sigma^2_{g(c)} + \epsilon}}
    + \beta_c,

uses each image's own statistics, so one image's gradient does not depend on the others of
the batch: DP-SGD can clip it (BatchNorm, whose statistics mix the batch, cannot be used:
:func:`mlimaging.privacy.dp.check_model` refuses it).

Why this model for DP-SGD:

- **tanh**: DP-SGD clips every image's gradient to a norm :math:`C`, then adds noise of std
  :math:`\sigma C`. Papernot et al. (2021) show that bounded ("tempered sigmoid") activations
  keep the activations, hence the gradients, from growing during training, so clipping
  discards less signal and a ReLU network's accuracy is beaten at the same :math:`\varepsilon`.
- **small**: the noise is added to every parameter; at a fixed budget a network with few
  parameters (26 k here, 62 k for LeNet) has a better signal-to-noise ratio per step.
- **GroupNorm**: normalising each image's activations keeps the scale of the gradients steady
  across layers and steps, so one clipping norm suits the whole run. Measured with DP-SGD at
  :math:`\varepsilon = 3` on mnist5k (``benchmarks/privacy.py``, one seed): 90.3 % test
  accuracy with GroupNorm and a cosine learning rate, 87.6 % without either.
- **fixed standardisation**: the input is standardised with public constants (the MNIST mean
  0.1307 and standard deviation 0.3081 by default), not with statistics of the private
  training images, which would spend privacy budget.

With DP-SGD it trains best with large batches (512), a small clipping norm (0.1), SGD with
momentum 0.9, a large learning rate (2) and a cosine schedule (``benchmarks/privacy.py``: 90.3 %
at :math:`\varepsilon = 3, \delta = 10^{-5}` on 3,500 training digits).

References
----------
Papernot N., Thakurta A., Song S., Chien S., Erlingsson Ú. (2021). Tempered sigmoid
activations for deep learning with differential privacy. AAAI. arXiv:2007.14191.

Tramèr F., Boneh D. (2021). Differentially private learning needs better features (or much
more data). ICLR. arXiv:2011.11660.

Wu Y., He K. (2018). Group normalization. ECCV. arXiv:1803.08494.

Abadi M. et al. (2016). Deep learning with differential privacy. CCS. arXiv:1607.00133.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from mlimaging.models._validation import check_input, check_int
from mlimaging.models.registry import register_model

__all__ = ["DPCNN", "MNIST_MEAN", "MNIST_STD"]

#: Mean and standard deviation of the MNIST training pixels in [0, 1] (public constants).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

NORMS = ("group", "none")


def _feature_side(size: int) -> int:
    """Side of the feature map before ``fc1`` for a ``size`` x ``size`` input."""
    side = (size + 2 * 3 - 8) // 2 + 1 - 1  # conv1 (8x8, stride 2, padding 3), max-pool 2x2 stride 1
    return (side - 4) // 2 + 1 - 1 if side >= 4 else 0  # conv2 (4x4, stride 2), max-pool 2x2 stride 1


def _per_channel(value: float | Sequence[float], name: str, channels: int, *, positive: bool) -> torch.Tensor:
    values = [value] * channels if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    try:
        t = torch.as_tensor([float(v) for v in values], dtype=torch.float32)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number or one number per input channel, got {value!r}") from None
    if len(t) != channels or not torch.isfinite(t).all() or (positive and not (t > 0).all()):
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number or {channels} of them "
                         f"(one per input channel), got {value!r}")
    return t.reshape(1, channels, 1, 1)


class DPCNN(nn.Module):
    r"""Tanh CNN with GroupNorm for DP-SGD (Papernot et al. 2021; Tramèr & Boneh 2021).

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Number of output logits.
    norm : {"group", "none"}
        GroupNorm after each convolution (default), or none (the paper's network).
    width : int
        Channels of conv1; conv2 has ``2 * width`` (default 16, the paper's).
    hidden : int
        Units of the hidden fully connected layer (default 32).
    groups : int
        GroupNorm groups; must divide ``width`` (default 4).
    input_size : int
        Side of the square input, at least 14 (default 28): fixes fc1's input size.
    mean, std : float or sequence of float
        Input standardisation :math:`(x - \mu) / s`, one value or one per channel (default the
        public MNIST constants 0.1307 and 0.3081, for images in [0, 1]). They are buffers: saved in
        the ``state_dict``, never trained.

    Examples
    --------
    >>> import torch
    >>> model = DPCNN()
    >>> sum(p.numel() for p in model.parameters())
    26106
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> from mlimaging.privacy.dp import check_model
    >>> check_model(model)  # no BatchNorm: DP-SGD can clip each image's gradient
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, norm: str = "group", width: int = 16,
                 hidden: int = 32, groups: int = 4, input_size: int = 28,
                 mean: float | Sequence[float] = MNIST_MEAN, std: float | Sequence[float] = MNIST_STD) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}")
        self.norm = norm
        self.width = check_int(width, "width")
        self.hidden = check_int(hidden, "hidden")
        self.groups = check_int(groups, "groups")
        if norm == "group" and width % groups:
            raise ValueError(f"groups must divide width for GroupNorm, got width {width} and groups {groups}")
        self.input_size = check_int(input_size, "input_size", minimum=14)
        side = _feature_side(input_size)
        self.register_buffer("mean", _per_channel(mean, "mean", in_channels, positive=False))
        self.register_buffer("std", _per_channel(std, "std", in_channels, positive=True))
        # Created in this order so that a seed gives the weights of the benchmark's original definition.
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=8, stride=2, padding=3)
        self.norm1 = nn.GroupNorm(groups, width) if norm == "group" else nn.Identity()
        self.conv2 = nn.Conv2d(width, 2 * width, kernel_size=4, stride=2)
        self.norm2 = nn.GroupNorm(groups, 2 * width) if norm == "group" else nn.Identity()
        self.pool = nn.MaxPool2d(2, stride=1)
        self.fc1 = nn.Linear(2 * width * side * side, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, in_channels, input_size, input_size)``."""
        check_input(x, self.in_channels)
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(f"x must have shape (B, {self.in_channels}, {self.input_size}, {self.input_size}) "
                             f"(input_size={self.input_size}), got {tuple(x.shape)}")
        x = (x - self.mean) / self.std
        x = self.pool(torch.tanh(self.norm1(self.conv1(x))))
        x = self.pool(torch.tanh(self.norm2(self.conv2(x))))
        x = torch.tanh(self.fc1(x.flatten(1)))
        return self.fc2(x)


@register_model("dp_cnn", input_shape=(1, 28, 28))
def dp_cnn(*, in_channels: int = 1, num_classes: int = 10, norm: str = "group", width: int = 16, hidden: int = 32,
           groups: int = 4, input_size: int = 28, mean: float | Sequence[float] = MNIST_MEAN,
           std: float | Sequence[float] = MNIST_STD) -> DPCNN:
    """Tanh CNN + GroupNorm for DP-SGD (Tramer & Boneh 2021), 26k parameters on 28 x 28 digits."""
    return DPCNN(in_channels=in_channels, num_classes=num_classes, norm=norm, width=width, hidden=hidden,
                 groups=groups, input_size=input_size, mean=mean, std=std)


r"""AlexNet, scaled down for small images (28 to 64 pixels) and CPU training.

The structure of Krizhevsky et al. (2012): five convolutions with ReLU, three max-pools
(after conv1, conv2 and conv5, overlapping 3x3 windows with stride 2), then three fully
connected layers with dropout before the first two. Changes for small inputs:

- conv1 is 5x5 with stride 1 (the paper's 11x11 stride 4 is for 224 px images), conv2 5x5,
  conv3-5 3x3, all "same"-padded; the pools (3x3, stride 2, padding 1) halve the size,
  rounding up, so the feature map is :math:`\lceil n / 8 \rceil` for an :math:`n` pixel input;
- widths 32-64-96-96-64 channels instead of 96-256-384-384-256, and 256 hidden units in the
  classifier instead of 4096;
- an adaptive average pool to :math:`s \times s`, :math:`s = \lceil \text{input\_size} / 8
  \rceil`, before the classifier (4 x 4 for 28-32 px, 8 x 8 for 64 px): the identity at
  ``input_size`` and any other size (>= 8 px) still works;
- no local response normalisation (it adds little; torchvision leaves it out too).

With the defaults (1 input channel, 10 classes, ``input_size=32``) the model has 576,650
parameters:

.. math::

    \underbrace{832 + 51{,}264 + 55{,}392 + 83{,}040 + 55{,}360}_{\text{conv1-5}}
    + \underbrace{262{,}400 + 65{,}792 + 2{,}570}_{\text{fc6-8}} = 576{,}650.

References
----------
Krizhevsky A., Sutskever I., Hinton G. E. (2012). ImageNet classification with deep
convolutional neural networks. NeurIPS 25. DOI 10.1145/3065386.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlimaging.models._validation import check_input, check_int
from mlimaging.models.registry import register_model

__all__ = ["ALEXNET_WIDTHS", "AlexNet"]

#: Channels of conv1..conv5 and the hidden units of fc6, fc7.
ALEXNET_WIDTHS: tuple[int, ...] = (32, 64, 96, 96, 64)
ALEXNET_HIDDEN = 256


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


class AlexNet(nn.Module):
    r"""Small-input AlexNet: 5 convs (3 max-pools), adaptive pool, 3 fc layers with dropout.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Number of output logits.
    input_size : int
        The image size (pixels per side) the model is built for, >= 8; it sets the pooled
        grid :math:`\lceil \text{input\_size}/8 \rceil` and so the size of fc6.
    dropout : float
        Dropout probability before fc6 and fc7 (0.5 in the paper).

    Examples
    --------
    >>> import torch
    >>> model = AlexNet()
    >>> sum(p.numel() for p in model.parameters())
    576650
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, input_size: int = 32,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.input_size = check_int(input_size, "input_size", minimum=8)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        c1, c2, c3, c4, c5 = ALEXNET_WIDTHS
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=5, padding=2), nn.ReLU(inplace=True), _pool(),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), nn.ReLU(inplace=True), _pool(),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), nn.ReLU(inplace=True), _pool(),
        )
        grid = math.ceil(input_size / 8)
        self.avgpool = nn.AdaptiveAvgPool2d(grid)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * grid * grid, ALEXNET_HIDDEN), nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(ALEXNET_HIDDEN, ALEXNET_HIDDEN), nn.ReLU(inplace=True),
            nn.Linear(ALEXNET_HIDDEN, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, in_channels, H, W)``, H, W >= 8."""
        check_input(x, self.in_channels)
        if min(x.shape[-2:]) < 8:
            raise ValueError(f"x must be at least 8 x 8 for AlexNet, got {tuple(x.shape)}")
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


@register_model("alexnet", input_shape=(1, 32, 32))
def alexnet(*, in_channels: int = 1, num_classes: int = 10, input_size: int = 32,
            dropout: float = 0.5) -> AlexNet:
    """AlexNet (Krizhevsky et al. 2012) for 28-64 px images, widths 32-64-96-96-64, fc 256."""
    return AlexNet(in_channels=in_channels, num_classes=num_classes, input_size=input_size,
                   dropout=dropout)

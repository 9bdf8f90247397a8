r"""VGG networks (configurations A and D: VGG-11 and VGG-16), optionally with batch norm.

Simonyan & Zisserman (2014) stack 3x3 convolutions ("same" padding, ReLU) in five blocks,
each closed by a 2x2 max-pool, the channels doubling from 64 to 512:

- A (VGG-11, 8 convolutions): 64, M, 128, M, 256, 256, M, 512, 512, M, 512, 512, M
- D (VGG-16, 13 convolutions): 64, 64, M, 128, 128, M, 256, 256, 256, M,
  512, 512, 512, M, 512, 512, 512, M

followed by three fully connected layers (4096, 4096, classes) with dropout 0.5 after the
first two. A 3x3 conv with :math:`c_{in}` inputs and :math:`c_{out}` outputs has
:math:`9 c_{in} c_{out} + c_{out}` parameters; for D at full width on RGB input the
convolutions hold 14,714,688 of them and the whole network (224 px, 1000 classes)
138,357,544.

Here, for small images and CPU training:

- ``width`` scales every channel count and the hidden fc size: channels
  :math:`\max(1, \operatorname{round}(c \cdot \text{width}))` and hidden units
  :math:`\max(1, \operatorname{round}(4096 \cdot \text{width}))`. The default
  ``width=1/8`` gives 8-16-32-64-64 channels and 512 hidden units; ``width=1.0`` is the
  paper's network.
- The five pools divide the size by 32, so inputs must be at least 32 x 32. An adaptive
  average pool to :math:`s \times s`, :math:`s = \lfloor \text{input\_size} / 32 \rfloor`,
  sits before the classifier (1 x 1 for 32 px, the paper's 7 x 7 for 224 px); other input
  sizes >= 32 also work.
- ``batch_norm=True`` (``vgg11_bn``, ``vgg16_bn``) puts a BatchNorm2d between each
  convolution and its ReLU (Ioffe & Szegedy 2015), which the paper predates.
- Initialisation: He-normal convolutions (fan-out, ReLU), zero biases, linear weights
  :math:`\mathcal{N}(0, 0.01^2)` (the paper pre-trained A to initialise the deeper nets).

References
----------
Simonyan K., Zisserman A. (2014). Very deep convolutional networks for large-scale image
recognition. ICLR 2015. arXiv:1409.1556.

Ioffe S., Szegedy C. (2015). Batch normalization: accelerating deep network training by
reducing internal covariate shift. ICML. arXiv:1502.03167.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from mlimaging.models._validation import check_input, check_int
from mlimaging.models.registry import register_model

__all__ = ["VGG", "VGG_CONFIGS", "make_vgg_features"]

#: Layer lists of the paper's configurations: an int is a 3x3 conv to that many channels,
#: "M" a 2x2 max-pool.
VGG_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
}
VGG_HIDDEN = 4096


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _check_width(width: float) -> float:
    width = float(width)
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    return width


def make_vgg_features(
    config: str = "D", *, in_channels: int = 3, width: float = 1.0, batch_norm: bool = False
) -> nn.Sequential:
    """The convolutional part of VGG configuration ``config`` ("A" or "D").

    Examples
    --------
    >>> features = make_vgg_features("D", in_channels=3, width=1.0)
    >>> sum(p.numel() for p in features.parameters())
    14714688
    >>> sum(isinstance(m, nn.Conv2d) for m in make_vgg_features("A"))
    8
    """
    if config not in VGG_CONFIGS:
        raise ValueError(f"config must be one of {sorted(VGG_CONFIGS)}, got {config!r}")
    check_int(in_channels, "in_channels")
    width = _check_width(width)
    layers: list[nn.Module] = []
    c_in = in_channels
    for item in VGG_CONFIGS[config]:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        c_out = _scaled(int(item), width)
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        c_in = c_out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    r"""VGG configuration A or D with a width multiplier, for inputs of at least 32 x 32.

    Parameters
    ----------
    config : {"A", "D"}
        VGG-11 or VGG-16.
    in_channels, num_classes : int
        Input channels and output logits.
    width : float
        Multiplier of the paper's channel counts and hidden fc size (default 1/8).
    input_size : int
        The image size the model is built for (>= 32); sets the pooled grid
        :math:`\lfloor \text{input\_size} / 32 \rfloor` before the classifier.
    batch_norm : bool
        BatchNorm2d after every convolution.
    dropout : float
        Dropout probability after fc1 and fc2.

    Examples
    --------
    >>> import torch
    >>> model = VGG("D", width=1 / 8)
    >>> sum(isinstance(m, nn.Conv2d) for m in model.modules())
    13
    >>> model(torch.zeros(2, 1, 32, 32)).shape
    torch.Size([2, 10])
    """

    def __init__(
        self,
        config: str = "D",
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        width: float = 0.125,
        input_size: int = 32,
        batch_norm: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.input_size = check_int(input_size, "input_size", minimum=32)
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.config = config
        self.width = _check_width(width)
        self.features = make_vgg_features(config, in_channels=in_channels, width=width,
                                          batch_norm=batch_norm)
        grid = input_size // 32
        c_last = _scaled(512, width)
        hidden = _scaled(VGG_HIDDEN, width)
        self.avgpool = nn.AdaptiveAvgPool2d(grid)
        self.classifier = nn.Sequential(
            nn.Linear(c_last * grid * grid, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, in_channels, H, W)``, H, W >= 32."""
        check_input(x, self.in_channels)
        if min(x.shape[-2:]) < 32:
            raise ValueError(
                f"x must be at least 32 x 32 for VGG (five 2x2 max-pools), got {tuple(x.shape)}"
            )
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def _builder(name: str, config: str, batch_norm: bool, label: str) -> Callable[..., VGG]:
    def build(*, in_channels: int = 1, num_classes: int = 10, width: float = 0.125,
              input_size: int = 32, dropout: float = 0.5) -> VGG:
        return VGG(config, in_channels=in_channels, num_classes=num_classes, width=width,
                   input_size=input_size, batch_norm=batch_norm, dropout=dropout)

    build.__doc__ = f"{label} (Simonyan & Zisserman 2014), 1/8 of the paper's widths by default."
    build.__name__ = build.__qualname__ = name
    return build


for _name, _config, _bn, _label in (
    ("vgg11", "A", False, "VGG-11, configuration A"),
    ("vgg11_bn", "A", True, "VGG-11 with batch norm"),
    ("vgg16", "D", False, "VGG-16, configuration D"),
    ("vgg16_bn", "D", True, "VGG-16 with batch norm"),
):
    register_model(_name, input_shape=(1, 32, 32))(_builder(_name, _config, _bn, _label))
del _name, _config, _bn, _label

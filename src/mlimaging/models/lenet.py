r"""LeNet-5 and its fully convolutional twin (dense classification by sliding window).

LeNet (LeCun et al. 1998) on a :math:`32 \times 32` input:

=========  ===============================  ============  ==========
layer      operation                        output        parameters
=========  ===============================  ============  ==========
conv1      conv 6 @ 5x5, ReLU               6 x 28 x 28   156
pool1      max-pool 2x2                     6 x 14 x 14   0
conv2      conv 16 @ 5x5, ReLU              16 x 10 x 10  2,416
pool2      max-pool 2x2                     16 x 5 x 5    0
fc1        linear 400 -> 120, ReLU          120           48,120
fc2        linear 120 -> 84, ReLU           84            10,164
fc3        linear 84 -> 10                  10            850
=========  ===============================  ============  ==========

61,706 parameters in all. Differences from the paper, as in the course's version: ReLU
instead of the scaled tanh, max-pooling instead of the trainable sub-sampling layers, a
full connection table in conv2 (the paper's C3 joins each output map to a subset of the
inputs) and a plain linear output instead of the Euclidean RBF units. The models return
logits (the course's code ends with ``log_softmax``; here the softmax lives in
``nn.CrossEntropyLoss``).

The paper centres the 28 x 28 MNIST digits in a 32 x 32 field; :class:`LeNet` does the same
inside ``forward`` (``pad_input=True``), so it trains on ``mnist5k`` directly.

:class:`FCLeNet` writes fc1 as a 5x5 convolution to 120 channels and fc2, fc3 as 1x1
convolutions. On a 32 x 32 input it is LeNet (output ``(B, 10, 1, 1)``); on a larger input
it slides LeNet over the image with stride 4 (the two 2x2 pools) in one pass: a
:math:`64 \times 64` image gives a :math:`9 \times 9` map of class scores,
:math:`(64 - 32)/4 + 1 = 9`, whose entry :math:`(i, j)` is LeNet applied to the crop
``x[..., 4i:4i+32, 4j:4j+32]`` (Long et al. 2015; the course's dense classification).

References
----------
LeCun Y., Bottou L., Bengio Y., Haffner P. (1998). Gradient-based learning applied to
document recognition. Proceedings of the IEEE 86(11):2278-2324. DOI 10.1109/5.726791.

Long J., Shelhamer E., Darrell T. (2015). Fully convolutional networks for semantic
segmentation. CVPR. arXiv:1411.4038.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models._validation import check_input, check_int
from mlimaging.models.registry import register_model

__all__ = ["FCLeNet", "LeNet"]

#: LeNet's input size; the fully connected part needs exactly 16 x 5 x 5 features.
LENET_INPUT = 32


class LeNet(nn.Module):
    """LeNet-5 (ReLU, max-pooling) for 32 x 32 images, padding smaller ones.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for MNIST).
    num_classes : int
        Number of output logits.
    pad_input : bool
        If True (default), inputs smaller than 32 x 32 (e.g. 28 x 28 MNIST) are zero-padded
        to 32 x 32 inside ``forward``, centred as in the paper (an odd difference puts the
        extra pixel at the bottom/right). Inputs larger than 32 are always an error, as are
        inputs other than 32 x 32 when ``pad_input=False``.

    Examples
    --------
    >>> import torch
    >>> model = LeNet()
    >>> sum(p.numel() for p in model.parameters())
    61706
    >>> model(torch.zeros(2, 1, 28, 28)).shape  # padded to 32 x 32 inside
    torch.Size([2, 10])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10,
                 pad_input: bool = True) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.pad_input = bool(pad_input)
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``x`` (B, C, H, W) with H, W <= 32 to (B, C, 32, 32), centred."""
        h, w = x.shape[-2:]
        if h > LENET_INPUT or w > LENET_INPUT:
            raise ValueError(
                f"x must be at most {LENET_INPUT} x {LENET_INPUT} for LeNet, got {h} x {w} "
                "(use FCLeNet for dense classification of larger images)"
            )
        top, left = (LENET_INPUT - h) // 2, (LENET_INPUT - w) // 2
        return F.pad(x, (left, LENET_INPUT - w - left, top, LENET_INPUT - h - top))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, in_channels, H, W)``."""
        check_input(x, self.in_channels)
        if tuple(x.shape[-2:]) != (LENET_INPUT, LENET_INPUT):
            if not self.pad_input:
                raise ValueError(
                    f"x must be (B, {self.in_channels}, 32, 32) with pad_input=False, "
                    f"got {tuple(x.shape)}"
                )
            x = self.pad(x)
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = x.flatten(1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class FCLeNet(nn.Module):
    r"""LeNet with its fully connected layers written as convolutions (no padding).

    Always returns a score map ``(B, num_classes, h, w)`` with
    :math:`h = \lfloor (\lfloor (H - 4)/2 \rfloor - 4)/2 \rfloor - 4`: ``(B, K, 1, 1)``
    for a 32 x 32 input, ``(B, K, 9, 9)`` for 64 x 64. Inputs must be at least 32 x 32.

    Parameters
    ----------
    in_channels, num_classes : int
        As for :class:`LeNet`.

    Examples
    --------
    >>> import torch
    >>> lenet = LeNet().eval()
    >>> fcn = FCLeNet.from_lenet(lenet).eval()
    >>> x = torch.rand(1, 1, 32, 32)
    >>> torch.allclose(fcn(x).flatten(1), lenet(x), atol=1e-5)
    True
    >>> fcn(torch.rand(1, 1, 64, 64)).shape
    torch.Size([1, 10, 9, 9])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Conv2d(16, 120, kernel_size=5)
        self.fc2 = nn.Conv2d(120, 84, kernel_size=1)
        self.fc3 = nn.Conv2d(84, num_classes, kernel_size=1)

    @classmethod
    def from_lenet(cls, lenet: LeNet) -> FCLeNet:
        """An FCLeNet with the weights of ``lenet`` (Linear weights reshaped to kernels).

        fc1's weight ``(120, 400)`` becomes ``(120, 16, 5, 5)``: LeNet flattens its
        ``(16, 5, 5)`` feature map in the same (channel, row, column) order. fc2 and fc3
        become 1x1 kernels. The copy is on the device and dtype of ``lenet``.
        """
        if not isinstance(lenet, LeNet):
            raise ValueError(f"lenet must be a LeNet, got {type(lenet).__name__}")
        fcn = cls(in_channels=lenet.in_channels, num_classes=lenet.num_classes)
        ref = lenet.fc1.weight
        fcn.to(device=ref.device, dtype=ref.dtype)
        state = {}
        for name, tensor in lenet.state_dict().items():
            target = fcn.state_dict()[name]
            state[name] = tensor.reshape(target.shape)
        fcn.load_state_dict(state)
        return fcn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class-score map ``(B, num_classes, h, w)`` of images ``(B, in_channels, H, W)``."""
        check_input(x, self.in_channels)
        if min(x.shape[-2:]) < LENET_INPUT:
            raise ValueError(
                f"x must be at least {LENET_INPUT} x {LENET_INPUT} for FCLeNet (it does not "
                f"pad), got {tuple(x.shape)}"
            )
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


@register_model("lenet", input_shape=(1, 32, 32))
def lenet(*, in_channels: int = 1, num_classes: int = 10, pad_input: bool = True) -> LeNet:
    """LeNet-5 (LeCun et al. 1998) with ReLU; pads 28 x 28 inputs to 32 x 32."""
    return LeNet(in_channels=in_channels, num_classes=num_classes, pad_input=pad_input)


@register_model("fc_lenet", input_shape=(1, 32, 32))
def fc_lenet(*, in_channels: int = 1, num_classes: int = 10) -> FCLeNet:
    """Fully convolutional LeNet: a (B, K, h, w) score map, 9 x 9 on a 64 x 64 input."""
    return FCLeNet(in_channels=in_channels, num_classes=num_classes)

"""Tiny models shared by the interpretability tests.

The "vis" helper's tests (feature visualisation, embeddings, trust checks) may use these
fixtures too: ``lenet`` (the registry LeNet, seeded, eval mode, F.relu inside forward),
``module_lenet`` (a factory: the same weights with nn.ReLU modules, ``inplace`` option),
``seg_net`` (a factory: a small segmentation network with ReLUs of the chosen ``kind``) and
``seg_wrap`` (a forward function for Captum: class logits summed inside a mask).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models import create_model


class ModuleReLULeNet(nn.Module):
    """LeNet with the registry LeNet's weights, its ReLUs as nn.ReLU modules."""

    def __init__(self, lenet: nn.Module, *, inplace: bool = False) -> None:
        super().__init__()
        self.lenet = lenet
        self.relus = nn.ModuleList([nn.ReLU(inplace=inplace) for _ in range(4)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.lenet
        if tuple(x.shape[-2:]) != (32, 32):
            x = m.pad(x)
        x = m.pool1(self.relus[0](m.conv1(x)))
        x = m.pool2(self.relus[1](m.conv2(x)))
        x = self.relus[2](m.fc1(x.flatten(1)))
        x = self.relus[3](m.fc2(x))
        return m.fc3(x)


class TinySegNet(nn.Module):
    """Encoder (conv, ReLU, max-pool, conv, ReLU) - decoder (upsample, conv) with 3 classes.

    ``kind`` is how the ReLUs are called: ``"module"`` (nn.ReLU()), ``"inplace"``
    (nn.ReLU(inplace=True)), ``"functional"`` (F.relu), ``"tensor"`` (Tensor.relu_).
    """

    def __init__(self, kind: str = "module", *, spatial_dims: int = 2) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        pool = nn.MaxPool2d if spatial_dims == 2 else nn.MaxPool3d
        self.kind = kind
        self.enc1 = conv(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=kind == "inplace")
        self.pool = pool(2)
        self.enc2 = conv(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=kind == "inplace")
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.head = conv(6, 3, 1)

    def act(self, z: torch.Tensor, module: nn.Module) -> torch.Tensor:
        if self.kind == "functional":
            return F.relu(z)
        if self.kind == "tensor":
            return z.relu_()
        return module(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.pool(self.act(self.enc1(x), self.relu1))
        h = self.act(self.enc2(h), self.relu2)
        return self.head(self.up(h))


@pytest.fixture
def lenet() -> nn.Module:
    """The registry LeNet (F.relu inside forward), seeded, eval mode."""
    torch.manual_seed(0)
    return create_model("lenet").eval()


@pytest.fixture
def module_lenet():
    """Factory: ``module_lenet(lenet, inplace=False)`` -> LeNet with nn.ReLU modules."""
    return lambda lenet, inplace=False: ModuleReLULeNet(lenet, inplace=inplace).eval()


@pytest.fixture
def seg_net():
    """Factory: ``seg_net(kind, spatial_dims=2, seed=0)`` -> TinySegNet in eval mode.

    The same seed gives the same weights for every ``kind``.
    """

    def make(kind: str = "module", spatial_dims: int = 2, seed: int = 0) -> nn.Module:
        torch.manual_seed(seed)
        return TinySegNet(kind, spatial_dims=spatial_dims).eval()

    return make


@pytest.fixture
def seg_wrap():
    """Factory: ``seg_wrap(model, cls, mask)`` -> f(x) = sum of class logits inside mask.

    The forward function Captum needs for a segmentation model (one scalar per sample).
    """

    def make(model: nn.Module, cls: int, mask: torch.Tensor):
        w = mask.to(torch.float32)

        def forward(x: torch.Tensor) -> torch.Tensor:
            out = model(x)[:, cls]
            return (out * w).reshape(out.shape[0], -1).sum(1)

        return forward

    return make

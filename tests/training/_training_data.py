"""Small models and data sets shared by the training-engine tests (not a test module)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import TensorDataset


def make_data(n: int = 96, *, seed: int = 0, dims: int = 8) -> TensorDataset:
    """A 3-class problem that a small MLP learns quickly: label = argmax of the first 3 features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dims, generator=g)
    y = x[:, :3].argmax(1)
    return TensorDataset(x, y)


def make_mlp(*, seed: int = 0, dropout: float = 0.0, dims: int = 8) -> nn.Module:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(dims, 16), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, 3))
    return nn.Sequential(*layers)

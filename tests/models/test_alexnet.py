"""AlexNet for small images: structure, widths, input sizes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlimaging.models import AlexNet, create_model


def test_structure_five_convs_three_pools_three_fc_with_dropout():
    model = AlexNet()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 96, 96, 64]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5), (3, 3), (3, 3), (3, 3)]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 256), (256, 256),
                                                                  (256, 10)]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2


@pytest.mark.parametrize("size", [28, 32, 40, 64])
def test_input_sizes_28_to_64(size):
    model = create_model("alexnet", seed=0).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, size, size)).shape == (2, 10)


def test_feature_map_is_ceil_size_over_8_and_pool_is_identity_at_input_size():
    model = create_model("alexnet", input_size=64, in_channels=3, seed=0).eval()
    assert model.classifier[1].in_features == 64 * 8 * 8
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape == (1, 64, 8, 8)
        assert torch.equal(model.avgpool(feats), feats)
        assert model.features(torch.rand(1, 3, 28, 28)).shape[-1] == 4  # ceil(28 / 8)


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_size"):
        AlexNet(input_size=4)
    with pytest.raises(ValueError, match="dropout"):
        AlexNet(dropout=-0.1)
    with pytest.raises(ValueError, match="at least 8"):
        AlexNet()(torch.rand(1, 1, 6, 6))

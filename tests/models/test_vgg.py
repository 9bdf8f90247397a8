"""VGG: layer counts, the paper's parameter counts, width multiplier, batch norm, input size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlimaging.models import VGG, create_model, make_vgg_features
from mlimaging.models.vgg import VGG_CONFIGS


def _count(module: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def _paper_conv_params(config: str, in_channels: int = 3) -> int:
    """Parameters of the paper's convolutions, worked out from the layer list: 9 c_in c_out + c_out."""
    total, c_in = 0, in_channels
    for item in VGG_CONFIGS[config]:
        if item != "M":
            total += 9 * c_in * item + item
            c_in = item
    return total


@pytest.mark.parametrize("name, convs", [("vgg11", 8), ("vgg11_bn", 8), ("vgg16", 13),
                                         ("vgg16_bn", 13)])
def test_layer_counts(name, convs):
    model = create_model(name)
    assert _count(model, nn.Conv2d) == convs
    assert _count(model, nn.MaxPool2d) == 5
    assert _count(model, nn.Linear) == 3
    assert _count(model, nn.BatchNorm2d) == (convs if name.endswith("_bn") else 0)


def test_paper_convolutions_at_full_width():
    # D: 1,792 + 36,928 + 73,856 + 147,584 + 295,168 + 2 * 590,080 + 1,180,160
    #    + 5 * 2,359,808 = 14,714,688 (the well-known VGG-16 feature extractor).
    assert _paper_conv_params("D") == 14_714_688
    assert _paper_conv_params("A") == 9_220_480
    for config in ("A", "D"):
        features = make_vgg_features(config, in_channels=3, width=1.0)
        assert sum(p.numel() for p in features.parameters()) == _paper_conv_params(config)


def test_full_vgg16_parameter_count_on_meta_device():
    """The paper's VGG-16 (224 px, 1000 classes): convs + 25088*4096 + 4096*4096 + 4096*1000
    weights and biases = 138,357,544; built on the meta device, so no memory is used."""
    expected = _paper_conv_params("D") + (512 * 7 * 7 * 4096 + 4096) + (4096 * 4096 + 4096) \
        + (4096 * 1000 + 1000)
    assert expected == 138_357_544
    with torch.device("meta"):
        model = create_model("vgg16", width=1.0, num_classes=1000, input_size=224, in_channels=3)
        vgg11 = create_model("vgg11", width=1.0, num_classes=1000, input_size=224, in_channels=3)
    assert sum(p.numel() for p in model.parameters()) == expected
    assert sum(p.numel() for p in vgg11.parameters()) == 132_863_336


def test_width_scales_channels():
    model = VGG("A", width=0.25)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    assert model.classifier[0].out_features == 1024


def test_other_input_sizes():
    model = create_model("vgg11", input_size=64, seed=0).eval()
    assert model.classifier[0].in_features == 64 * 2 * 2
    with torch.no_grad():
        assert model(torch.rand(1, 1, 64, 64)).shape == (1, 10)
        assert model(torch.rand(1, 1, 48, 40)).shape == (1, 10)  # adaptive pool
    with pytest.raises(ValueError, match="at least 32"):
        model(torch.rand(1, 1, 28, 28))
    with pytest.raises(ValueError, match="input_size"):
        create_model("vgg16", input_size=28)


def test_bad_arguments():
    with pytest.raises(ValueError, match="config"):
        make_vgg_features("E")
    with pytest.raises(ValueError, match="width"):
        VGG("D", width=0)
    with pytest.raises(ValueError, match="dropout"):
        VGG("D", dropout=1.0)


def test_batch_norm_updates_running_stats_in_training_only():
    model = create_model("vgg11_bn", seed=0)
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.rand(4, 1, 32, 32)
    with torch.no_grad():
        model.eval()(x)
        assert bn.num_batches_tracked.item() == 0
        model.train()(x)
    assert bn.num_batches_tracked.item() == 1
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))

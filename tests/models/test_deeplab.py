"""DeepLab: dilated convolutions (receptive fields), ASPP branches, output stride, sizes."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
from torch import nn

from mlimaging.models import ASPP, DeepLab, create_model


def _positive(module: nn.Module) -> nn.Module:
    """Positive weights and biases: every ReLU is active, so gradients show the whole field."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                m.weight.abs_().add_(0.01)
                if m.bias is not None:
                    m.bias.fill_(0.01)
    return module.eval()


def _footprint(module: nn.Module, x: torch.Tensor, index: tuple[int, ...]) -> torch.Tensor:
    """Input positions on which output ``index`` (spatial) depends (nonzero gradient)."""
    x = x.clone().requires_grad_(True)
    out = module(x)
    out[(slice(None), slice(None), *index)].sum().backward()
    return x.grad.abs().sum(dim=(0, 1)) > 0


@pytest.mark.parametrize("rate", [1, 2, 3, 5])
def test_aspp_branch_with_rate_r_covers_2r_plus_1(rate):
    aspp = _positive(ASPP(1, 1, rates=(1, 2, 3, 5), norm=None))
    branch = aspp.branches[1 + (1, 2, 3, 5).index(rate)]
    assert branch[0].dilation == (rate, rate) and branch[0].padding == (rate, rate)
    x = torch.rand(1, 1, 21, 21)
    assert branch(x).shape == x.shape  # padding = rate keeps the size
    field = _footprint(branch, x, (10, 10))
    rows, cols = torch.nonzero(field, as_tuple=True)
    assert int(field.sum()) == 9  # 3x3 taps ...
    assert sorted(set(rows.tolist())) == [10 - rate, 10, 10 + rate]  # ... spaced by the rate
    assert sorted(set(cols.tolist())) == [10 - rate, 10, 10 + rate]
    assert int(rows.max() - rows.min()) + 1 == 2 * rate + 1


def test_aspp_1x1_branch_is_pointwise_and_3d_rates():
    aspp = _positive(ASPP(2, 3, rates=(2,), norm=None))
    field = _footprint(aspp.branches[0], torch.rand(1, 2, 7, 7), (3, 4))
    assert torch.nonzero(field).tolist() == [[3, 4]]
    aspp3 = _positive(ASPP(1, 1, rates=(2,), spatial_dims=3, norm=None))
    field3 = _footprint(aspp3.branches[1], torch.rand(1, 1, 9, 9, 9), (4, 4, 4))
    assert int(field3.sum()) == 27
    assert torch.nonzero(field3).min().item() == 2 and torch.nonzero(field3).max().item() == 6


def test_image_pooling_branch_sees_the_whole_image():
    aspp = _positive(ASPP(1, 2, rates=(1,), norm=None))
    x = torch.rand(1, 1, 16, 16)
    y = x.clone()
    y[0, 0, 0, 0] += 1.0  # far outside the 3x3 field of output (15, 15)
    with torch.no_grad():
        assert (aspp(y) - aspp(x))[..., 15, 15].abs().max() > 1e-6
        aspp.image_pool[1].weight.zero_()
        aspp.image_pool[1].bias.zero_()
        assert torch.equal(aspp(y)[..., 15, 15], aspp(x)[..., 15, 15])


def test_aspp_structure_and_parameters():
    aspp = ASPP(64, 32, rates=(1, 2, 4, 6))
    assert len(aspp.branches) == 5  # 1x1 + four rates; + the image pooling branch
    assert aspp.project[0].in_channels == 6 * 32
    expected = (64 * 32 + 64) + 4 * (9 * 64 * 32 + 64) + (64 * 32 + 32) + (6 * 32 * 32 + 64)
    assert sum(p.numel() for p in aspp.parameters()) == expected


@pytest.mark.parametrize("output_stride", [2, 4, 8, 16])
def test_backbone_output_stride(output_stride):
    model = DeepLab(output_stride=output_stride, channels=2).eval()
    with torch.no_grad():
        for size in (32, 30):
            feats = model.backbone(torch.rand(1, 1, size, size))
            expected = size
            for _ in range(output_stride.bit_length() - 1):
                expected = (expected + 1) // 2  # a 3x3 stride-2 conv with padding 1: ceil(n/2)
            assert feats.shape[-2:] == (expected, expected)
            assert feats.shape[1] == 16  # 8c channels at the end


def test_dilation_instead_of_stride_keeps_the_receptive_field():
    """Stem 3 + stages: 93 pixels whatever the output stride (strides -> dilations)."""
    fields = {}
    for output_stride in (4, 8, 16):
        torch.manual_seed(0)
        backbone = _positive(DeepLab(output_stride=output_stride, channels=1, norm=None).backbone)
        x = torch.rand(1, 1, 128, 128)
        centre = 64 // output_stride
        field = _footprint(backbone, x, (centre, centre))
        rows = torch.nonzero(field.any(dim=1)).flatten()
        cols = torch.nonzero(field.any(dim=0)).flatten()
        fields[output_stride] = (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
        assert int(rows.min()) == 64 - 46  # centred on input pixel 64
    assert fields == {4: (93, 93), 8: (93, 93), 16: (93, 93)}


@pytest.mark.parametrize("spatial_dims, size", [(2, (30, 21)), (2, (32, 32)), (3, (12, 9, 16))])
def test_output_is_upsampled_to_the_input_size(spatial_dims, size):
    model = DeepLab(num_classes=3, spatial_dims=spatial_dims).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, *size))
    assert out.shape == (2, 3, *size)


def test_output_is_smooth_interpolation_of_coarse_logits():
    """The logits are computed at 1/4 resolution: a 32 x 32 output is the bilinear
    upsampling of an 8 x 8 map."""
    model = DeepLab(output_stride=4).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        coarse = model.classifier(model.aspp(model.backbone(x)))
        assert coarse.shape[-2:] == (8, 8)
        up = nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear")
        torch.testing.assert_close(model(x), up)


def test_batch_of_one_trains():
    model = DeepLab().train()
    model(torch.rand(1, 1, 32, 32)).sum().backward()


def test_errors():
    with pytest.raises(ValueError, match="output_stride"):
        DeepLab(output_stride=3)
    with pytest.raises(ValueError, match="rates"):
        DeepLab(rates=())
    with pytest.raises(ValueError, match="rates"):
        ASPP(4, 4, rates=(0, 2))
    with pytest.raises(ValueError, match="shape"):
        DeepLab()(torch.rand(1, 2, 32, 32))


def test_registry_defaults():
    model = create_model("deeplab")
    assert model.output_stride == 4 and model.aspp.rates == (1, 2, 4, 6)
    dilations = [m.dilation[0] for m in model.backbone.modules() if isinstance(m, nn.Conv2d)]
    assert dilations == [1, 1, 1, 1, 1, 1, 2, 2, 4]


@pytest.mark.parametrize("module", ["mlimaging.models.deeplab"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

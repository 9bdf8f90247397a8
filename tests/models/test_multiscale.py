"""Multi-scale two-pathway CNN: pathway inputs, aligned grids, receptive fields, sizes."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
from torch import nn

from mlimaging.models import MultiScaleCNN, create_model


def _positive(model: nn.Module) -> nn.Module:
    """Positive weights and biases (no norm): every ReLU active, gradients show the field."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                m.weight.abs_().add_(0.01)
                if m.bias is not None:
                    m.bias.fill_(0.01)
    return model.eval()


def test_pathway_inputs_are_centre_crop_and_block_average():
    model = MultiScaleCNN(factor=3, channels=(4, 4, 4, 4))  # L = 4: margin 4 * 2 = 8
    x = torch.rand(2, 1, 36, 39)
    normal, context = model.pathway_inputs(x)
    assert torch.equal(normal, x[..., 8:28, 8:31])
    blocks = x.reshape(2, 1, 12, 3, 13, 3).mean(dim=(3, 5))  # mean of each 3x3 block
    torch.testing.assert_close(context, blocks, rtol=0, atol=1e-6)


def test_deepmedic_configuration_sizes_3d():
    """The paper: 8 layers, factor 3, a 57^3 region -> normal 25^3, context 19^3, output 9^3."""
    model = MultiScaleCNN(spatial_dims=3, factor=3, channels=(2,) * 8, fc_channels=(),
                          num_classes=2).eval()
    assert model.input_size(9) == 57 and model.output_size(57) == 9
    x = torch.rand(1, 1, 57, 57, 57)
    normal, context = model.pathway_inputs(x)
    assert normal.shape[2:] == (25, 25, 25) and context.shape[2:] == (19, 19, 19)
    with torch.no_grad():
        assert model.normal(normal).shape[2:] == (9, 9, 9)
        assert model.context(context).shape[2:] == (3, 3, 3)
        assert model(x).shape == (1, 2, 9, 9, 9)


def test_receptive_field_is_normal_window_plus_context_block():
    """Output j sees input j+m .. j+m+2L (normal) and f*(j//f) .. f*(j//f + 2L + 1) - 1
    (context), per axis, with m = L (f - 1)."""
    torch.manual_seed(0)
    L, f = 2, 3
    model = _positive(MultiScaleCNN(factor=f, channels=(2, 2), fc_channels=(3,), norm=None))
    size = 24  # output 24 - 2*2*3 = 12
    m = L * (f - 1)
    for i, j in [(0, 0), (4, 7), (11, 5)]:
        x = torch.rand(1, 1, size, size, requires_grad=True)
        model(x)[0, :, i, j].sum().backward()
        field = x.grad[0, 0] != 0

        def axis_sets(k):
            normal = set(range(k + m, k + m + 2 * L + 1))
            start = f * (k // f)
            return normal, set(range(start, start + f * (2 * L + 1)))

        (nr, cr), (nc, cc) = axis_sets(i), axis_sets(j)
        expected = torch.zeros(size, size, dtype=torch.bool)
        for r in range(size):
            for c in range(size):
                expected[r, c] = (r in nr and c in nc) or (r in cr and c in cc)
        assert torch.equal(field, expected), (i, j)


def test_context_features_are_repeated_factor_times():
    """Nearest (repeat) upsampling: with the normal pathway silenced, outputs are constant
    on f x f blocks."""
    torch.manual_seed(1)
    model = MultiScaleCNN(factor=3, channels=(3, 3), fc_channels=(), norm=None).eval()
    with torch.no_grad():
        for p in model.normal.parameters():
            p.zero_()
        out = model(torch.rand(1, 1, 30, 30))  # 30 - 12 = 18 = 6 blocks of 3
    blocks = out.reshape(1, 10, 6, 3, 6, 3)
    assert torch.equal(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))
    assert out.std() > 0


@pytest.mark.parametrize("spatial_dims, size, out", [(2, (36, 45), (12, 21)),
                                                     (3, (27, 30, 27), (3, 6, 3))])
def test_shapes(spatial_dims, size, out):
    model = MultiScaleCNN(num_classes=4, spatial_dims=spatial_dims)
    assert model(torch.rand(2, 1, *size)).shape == (2, 4, *out)


def test_factor_one_uses_the_same_input_twice():
    model = MultiScaleCNN(factor=1, channels=(2, 2))
    x = torch.rand(1, 1, 9, 9)
    normal, context = model.pathway_inputs(x)
    assert torch.equal(normal, x) and torch.equal(context, x)
    assert model(x).shape == (1, 10, 5, 5)


def test_parameters_default():
    model = MultiScaleCNN()
    per_pathway = (72 + 576 + 1152 + 2304) + 2 * (8 + 8 + 16 + 16)
    assert sum(p.numel() for p in model.normal.parameters()) == per_pathway
    assert sum(p.numel() for p in model.parameters()) == 2 * per_pathway + 2 * (1024 + 64) + 330


def test_errors_name_the_size():
    model = MultiScaleCNN()
    with pytest.raises(ValueError, match=r"\(35, 36\).*divisible by factor=3"):
        model(torch.rand(1, 1, 35, 36))
    with pytest.raises(ValueError, match="at least 27"):
        model(torch.rand(1, 1, 24, 36))
    with pytest.raises(ValueError, match="output_size"):
        model.input_size(10)
    with pytest.raises(ValueError, match="factor"):
        MultiScaleCNN(factor=0)
    with pytest.raises(ValueError, match="channels"):
        MultiScaleCNN(channels=())
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(1, 1, 36, 36, 36))


def test_registry():
    model = create_model("multiscale", spatial_dims=3, factor=2)
    assert isinstance(model, MultiScaleCNN) and model.factor == 2 and model.spatial_dims == 3


@pytest.mark.parametrize("module", ["mlimaging.models.multiscale"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

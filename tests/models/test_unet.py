"""U-Net: shapes in 2D and 3D, skip connections, norms, parameter count."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
from torch import nn

from mlimaging.models import UNet, create_model


@pytest.mark.parametrize("spatial_dims, size", [(2, (32, 48)), (2, (8, 8)), (3, (16, 8, 24))])
def test_output_has_input_size(spatial_dims, size):
    model = UNet(num_classes=4, spatial_dims=spatial_dims)
    assert model(torch.rand(2, 1, *size)).shape == (2, 4, *size)


def test_level_sizes_and_channels():
    """Level l works on (H / 2^l) with c 2^l channels; the bottleneck is level depth."""
    model = UNet(depth=3, channels=8).eval()
    seen = []
    hooks = [enc.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))
             for enc in model.encoders]
    with torch.no_grad():
        model(torch.rand(1, 1, 32, 16))
    for h in hooks:
        h.remove()
    assert seen == [(8, 32, 16), (16, 16, 8), (32, 8, 4), (64, 4, 2)]


def test_decoders_read_skip_plus_upsampled_channels():
    model = UNet(depth=3, channels=8)
    for level, (up, dec) in enumerate(zip(model.ups, model.decoders, strict=True)):
        c = 8 * 2**level
        assert (up.in_channels, up.out_channels) == (2 * c, c)
        assert up.kernel_size == (2, 2) and up.stride == (2, 2)
        assert dec[0][0].in_channels == 2 * c  # c from below + c from the skip
        assert dec[0][0].weight.numel() == 9 * (2 * c) * c  # twice a skip-less decoder's
    assert sum(p.numel() for p in model.parameters()) == 121114


@pytest.mark.parametrize("level", [0, 1, 2])
def test_skip_connections_change_the_output(level):
    """Zeroing the skip half of a decoder's input changes the logits; zeroing nothing doesn't."""
    torch.manual_seed(0)
    model = UNet(depth=3, channels=4, norm=None).eval()
    x = torch.rand(1, 1, 16, 16)

    def drop(mode: str):
        def hook(module, inputs):
            z = inputs[0].clone()
            half = z.shape[1] // 2
            if mode == "no skip":
                z[:, half:] = 0.0  # the concatenated skip is the second half
            return (z,)
        return hook

    with torch.no_grad():
        ref = model(x)
        h = model.decoders[level].register_forward_pre_hook(drop("all"))
        same = model(x)
        h.remove()
        h = model.decoders[level].register_forward_pre_hook(drop("no skip"))
        cut = model(x)
        h.remove()
    assert torch.equal(same, ref)
    assert (cut - ref).abs().max() > 1e-4


@pytest.mark.parametrize("norm, kind", [("batch", nn.BatchNorm3d), ("instance", nn.InstanceNorm3d),
                                        (None, None)])
def test_norm_options_3d(norm, kind):
    model = UNet(spatial_dims=3, depth=1, channels=2, norm=norm)
    norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm3d, nn.InstanceNorm3d))]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv3d)]
    if kind is None:
        assert not norms and all(c.bias is not None for c in convs)
    else:
        assert len(norms) == 6 and all(isinstance(m, kind) for m in norms)
        assert all(c.bias is None for c in convs[:-1])  # only the 1x1 head keeps its bias
    assert model(torch.rand(2, 1, 4, 6, 2)).shape == (2, 10, 4, 6, 2)


def test_eval_is_deterministic_and_batch_independent():
    model = UNet().eval()
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        full = model(x)
        assert torch.equal(full, model(x))
        torch.testing.assert_close(full[1:2], model(x[1:2]), rtol=0, atol=1e-5)


def test_errors_name_the_size():
    with pytest.raises(ValueError, match=r"\(12, 16\).*divisible by 8"):
        UNet(depth=3)(torch.rand(1, 1, 12, 16))
    with pytest.raises(ValueError, match="shape"):
        UNet(spatial_dims=3)(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="spatial_dims"):
        UNet(spatial_dims=4)
    with pytest.raises(ValueError, match="channels"):
        UNet(channels=0)


def test_registry_defaults():
    info_model = create_model("unet")
    assert (info_model.depth, info_model.widths) == (3, [8, 16, 32, 64])
    assert create_model("unet", spatial_dims=3, depth=2).spatial_dims == 3


@pytest.mark.parametrize("module", ["mlimaging.models.unet"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

"""SegNet: pooling indices recorded by the encoder, max-unpooling at them in the decoder."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

from mlimaging.models import SegNet, create_model


def test_tiny_pool_unpool_by_hand_2d():
    """A 4x4 map: the pool keeps each window's maximum and its flat index; the unpool puts a
    value back at that index and zeros elsewhere."""
    model = SegNet(depth=1)
    x = torch.tensor([[[[1.0, 2.0, 0.0, 5.0],
                        [3.0, 4.0, 9.0, 0.0],
                        [0.0, 0.0, 1.0, 1.5],
                        [7.0, 0.5, 2.0, 1.0]]]])
    pooled, idx = model.pool(x)
    assert pooled.tolist() == [[[[4.0, 9.0], [7.0, 2.0]]]]
    assert idx.tolist() == [[[[5, 6], [12, 14]]]]  # row * 4 + column of each maximum
    up = model.unpool(torch.tensor([[[[10.0, 20.0], [30.0, 40.0]]]]), idx, output_size=(4, 4))
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 1, 1], expected[0, 0, 1, 2] = 10.0, 20.0
    expected[0, 0, 3, 0], expected[0, 0, 3, 2] = 30.0, 40.0
    assert torch.equal(up, expected)


def test_tiny_pool_unpool_by_hand_3d():
    model = SegNet(depth=1, spatial_dims=3)
    x = torch.zeros(1, 1, 2, 2, 2)
    x[0, 0, 1, 0, 1] = 3.0  # the maximum, flat index 1*4 + 0*2 + 1 = 5
    pooled, idx = model.pool(x)
    assert pooled.item() == 3.0 and idx.item() == 5
    up = model.unpool(torch.full((1, 1, 1, 1, 1), -2.0), idx, output_size=(2, 2, 2))
    assert up[0, 0, 1, 0, 1] == -2.0 and up.abs().sum() == 2.0


def _capture(model: SegNet, x: torch.Tensor):
    """Run the model, recording encoder outputs, decoder inputs and decoder outputs."""
    enc_out, dec_in, dec_out = {}, {}, {}

    def record_encoder(level):
        def hook(module, inputs, output):
            enc_out[level] = output.detach().clone()
        return hook

    def record_decoder(level):
        def hook(module, inputs, output):
            dec_in[level] = inputs[0].detach().clone()
            dec_out[level] = output.detach().clone()
        return hook

    hooks = []
    for level in range(model.depth):
        hooks.append(model.encoders[level].register_forward_hook(record_encoder(level)))
        hooks.append(model.decoders[level].register_forward_hook(record_decoder(level)))
    with torch.no_grad():
        features, indices, _ = model.encode(x)
        model(x)
    for h in hooks:
        h.remove()
    return enc_out, dec_in, dec_out, features, indices


@pytest.mark.parametrize("spatial_dims, size", [(2, (16, 8)), (3, (8, 4, 8))])
def test_decoder_unpools_at_the_encoder_indices(spatial_dims, size):
    torch.manual_seed(0)
    model = SegNet(depth=2, channels=4, spatial_dims=spatial_dims).eval()
    x = torch.randn(2, 1, *size)
    enc_out, dec_in, dec_out, features, indices = _capture(model, x)
    for level in range(model.depth):
        e, idx = enc_out[level], indices[level]
        flat_e, flat_idx = e.flatten(2), idx.flatten(2)
        # the recorded index holds the window maximum of the encoder output
        maxima = e
        for axis in range(2, e.ndim):
            maxima = maxima.unfold(axis, 2, 2)
        maxima = maxima.flatten(e.ndim).amax(-1)
        assert torch.equal(flat_e.gather(2, flat_idx), maxima.flatten(2))
        # the decoder of this level receives the coarser map placed at those indices only
        incoming = features if level == model.depth - 1 else dec_out[level + 1]
        unpooled = dec_in[level].flatten(2)
        assert unpooled.shape == flat_e.shape
        assert torch.equal(unpooled.gather(2, flat_idx), incoming.flatten(2))
        rest = unpooled.clone().scatter_(2, flat_idx, 0.0)
        assert torch.count_nonzero(rest) == 0


def test_output_depends_on_the_indices():
    """Same coarse features, other indices: the decoder output changes (indices matter)."""
    torch.manual_seed(1)
    model = SegNet(depth=1, channels=4).eval()
    with torch.no_grad():
        features, indices, sizes = model.encode(torch.randn(1, 1, 8, 8))
        out = model.decode(features, indices, sizes)
        shifted = [i ^ 1 for i in indices]  # flat index with the column bit flipped: same window
        assert not torch.allclose(out, model.decode(features, shifted, sizes))


@pytest.mark.parametrize("spatial_dims, size", [(2, (32, 24)), (3, (8, 16, 8))])
@pytest.mark.parametrize("convs_per_block", [1, 3])
def test_output_has_input_size(spatial_dims, size, convs_per_block):
    model = SegNet(num_classes=3, spatial_dims=spatial_dims, convs_per_block=convs_per_block)
    assert model(torch.rand(2, 1, *size)).shape == (2, 3, *size)


def test_structure_and_parameters():
    model = SegNet(depth=3, channels=8, convs_per_block=2)
    assert model.widths == [8, 16, 32]
    last_convs = [block[-1][0].out_channels for block in model.decoders]
    assert last_convs == [8, 8, 16]  # decoder l ends at c_{l-1}, the width above it
    counts = [sum(p.numel() for p in m.parameters()) for m in model.encoders]
    assert counts == [72 + 16 + 576 + 16, 1152 + 32 + 2304 + 32, 4608 + 64 + 9216 + 64]
    # without a norm, each BN (2c parameters) becomes a conv bias (c): the normalised convs
    # output 8+8+16+16+32+32 (encoder) and 32+16+16+8+8+8 (decoder) = 200 channels
    assert sum(p.numel() for p in SegNet().parameters()) == 36850
    assert sum(p.numel() for p in SegNet(norm=None).parameters()) == 36850 - 2 * 200 + 200


def test_size_errors_name_the_size():
    with pytest.raises(ValueError, match=r"\(20, 24\).*divisible by 8"):
        SegNet(depth=3)(torch.rand(1, 1, 20, 24))
    with pytest.raises(ValueError, match="shape"):
        SegNet()(torch.rand(1, 1, 16, 16, 16))
    with pytest.raises(ValueError, match="norm"):
        SegNet(norm="layer")
    with pytest.raises(ValueError, match="depth"):
        SegNet(depth=0)


def test_registry():
    model = create_model("segnet", spatial_dims=3, depth=2)
    assert isinstance(model, SegNet) and model.spatial_dims == 3 and model.depth == 2


@pytest.mark.parametrize("module", ["mlimaging.models.segnet"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

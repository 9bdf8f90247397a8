"""PatchCNN and FCN: the 17 x 17 receptive field and the dense = patch-by-patch invariant."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch
import torch.nn.functional as F

from mlimaging.models import FCN, PatchCNN, create_model


def _trained_like(seed: int = 0, **kwargs) -> PatchCNN:
    """A PatchCNN moved away from its initialisation by a few SGD steps."""
    torch.manual_seed(seed)
    model = PatchCNN(**kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)
    shape = (8, model.in_channels) + (17,) * model.spatial_dims
    for _ in range(3):
        x = torch.rand(*shape, generator=g)
        y = torch.randint(0, model.num_classes, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def _patchwise(model: PatchCNN, x: torch.Tensor) -> torch.Tensor:
    """PatchCNN on every 17 x 17 patch of a 2D batch, as a (B, K, H-16, W-16) map."""
    patches = x.unfold(2, 17, 1).unfold(3, 17, 1)  # (B, C, h, w, 17, 17)
    b, c, h, w = patches.shape[:4]
    flat = patches.permute(0, 2, 3, 1, 4, 5).reshape(b * h * w, c, 17, 17)
    return model(flat).reshape(b, h, w, -1).permute(0, 3, 1, 2)


def test_layer_parameter_counts():
    model = PatchCNN()
    convs = [sum(p.numel() for p in m.parameters()) for m in model.features
             if isinstance(m, torch.nn.Conv2d)]
    assert convs == [25 * 1 * 8 + 8, 25 * 8 * 16 + 16, 25 * 16 * 16 + 16]  # 208, 3216, 6416
    assert sum(p.numel() for p in model.fc1.parameters()) == 16 * 25 * 32 + 32  # 12,832
    assert sum(p.numel() for p in model.fc2.parameters()) == 32 * 10 + 10
    assert sum(p.numel() for p in FCN().parameters()) == sum(p.numel() for p in model.parameters())


def test_shapes_17_to_1_through_the_layers():
    model = PatchCNN().eval()
    x = torch.rand(1, 1, 17, 17)
    sizes = []
    for layer in model.features:
        x = layer(x)
        if isinstance(layer, torch.nn.Conv2d):
            sizes.append(x.shape[-1])
    assert sizes == [13, 9, 5]  # the fc head reads the whole 5 x 5 map: a fourth 5x5 "layer"


def test_fcn_receptive_field_is_exactly_17():
    fcn = FCN.from_patch_cnn(_trained_like()).eval()
    x = torch.rand(1, 1, 30, 30)
    with torch.no_grad():
        ref = fcn(x)
        for (r, c), changes in [((16, 16), True), ((0, 0), True), ((17, 5), False),
                                ((5, 17), False)]:
            y = x.clone()
            y[0, 0, r, c] += 1.0
            moved = (fcn(y)[..., 0, 0] - ref[..., 0, 0]).abs().max() > 1e-6
            assert bool(moved) == changes, (r, c)


def test_fcn_equals_patch_cnn_on_every_patch_40x40():
    patch = _trained_like(seed=1, num_classes=3)
    fcn = FCN.from_patch_cnn(patch).eval()
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        dense = fcn(x)
        ref = _patchwise(patch, x)
    assert dense.shape == (2, 3, 24, 24)
    torch.testing.assert_close(dense, ref, rtol=0, atol=1e-5)


def test_fcn_equals_patch_cnn_float64_tight_multichannel():
    patch = _trained_like(seed=2, in_channels=3, num_classes=4).double()
    fcn = FCN.from_patch_cnn(patch).eval()
    assert fcn.fc1.weight.dtype == torch.float64
    x = torch.rand(1, 3, 21, 26, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fcn(x), _patchwise(patch, x), rtol=0, atol=1e-12)


def test_fcn_equals_patch_cnn_in_3d():
    patch = _trained_like(seed=3, spatial_dims=3, num_classes=2)
    fcn = FCN.from_patch_cnn(patch).eval()
    x = torch.rand(1, 1, 18, 19, 17)
    with torch.no_grad():
        dense = fcn(x)
        assert dense.shape == (1, 2, 2, 3, 1)
        for i in range(2):
            for j in range(3):
                ref = patch(x[..., i:i + 17, j:j + 17, :])
                torch.testing.assert_close(dense[..., i, j, 0], ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("mode, torch_mode", [("reflect", "reflect"), ("zeros", "constant"),
                                              ("replicate", "replicate")])
def test_pad_keeps_size_and_is_the_padded_image(mode, torch_mode):
    patch = _trained_like(seed=4)
    fcn = FCN.from_patch_cnn(patch, pad=True, padding_mode=mode).eval()
    plain = FCN.from_patch_cnn(patch).eval()
    x = torch.rand(2, 1, 20, 23)
    with torch.no_grad():
        out = fcn(x)
        padded = F.pad(x, (8, 8, 8, 8), mode=torch_mode)
        assert out.shape == (2, 10, 20, 23)
        torch.testing.assert_close(out, plain(padded), rtol=0, atol=1e-6)
        # pixel (i, j) is classified from the 17 x 17 patch centred on it
        i, j = 0, 11
        torch.testing.assert_close(out[..., i, j], patch(padded[..., i:i + 17, j:j + 17]),
                                   rtol=0, atol=1e-5)


def test_reflect_padding_of_a_constant_image_is_the_constant_patch():
    patch = _trained_like(seed=5)
    fcn = FCN.from_patch_cnn(patch, pad=True).eval()
    x = torch.full((1, 1, 12, 12), 0.3)
    with torch.no_grad():
        out = fcn(x)
        ref = patch(torch.full((1, 1, 17, 17), 0.3))
    torch.testing.assert_close(out, ref[..., None, None].expand_as(out), rtol=0, atol=1e-5)


def test_from_patch_cnn_copies_without_sharing():
    patch = _trained_like(seed=6, in_channels=2, num_classes=5, channels=(4, 6, 7), hidden=9)
    fcn = FCN.from_patch_cnn(patch)
    assert (fcn.in_channels, fcn.num_classes, fcn.channels, fcn.hidden) == (2, 5, (4, 6, 7), 9)
    assert torch.equal(fcn.fc1.weight.reshape(9, 7 * 25), patch.fc1.weight)
    before = fcn.fc1.weight.detach().clone()
    with torch.no_grad():
        patch.fc1.weight.add_(1.0)
    assert torch.equal(fcn.fc1.weight, before)


def test_errors():
    with pytest.raises(ValueError, match="17"):
        PatchCNN()(torch.rand(1, 1, 18, 17))
    with pytest.raises(ValueError, match="shape"):
        PatchCNN(spatial_dims=3)(torch.rand(1, 1, 17, 17))
    with pytest.raises(ValueError, match="at least 17"):
        FCN()(torch.rand(1, 1, 16, 40))
    with pytest.raises(ValueError, match="reflect"):
        FCN(pad=True)(torch.rand(1, 1, 8, 20))
    assert FCN(pad=True, padding_mode="zeros")(torch.rand(1, 1, 3, 2)).shape == (1, 10, 3, 2)
    with pytest.raises(ValueError, match="padding_mode"):
        FCN(padding_mode="circular")
    with pytest.raises(ValueError, match="channels"):
        PatchCNN(channels=(8, 16))
    with pytest.raises(ValueError, match="hidden"):
        PatchCNN(hidden=0)
    with pytest.raises(ValueError, match="patch_cnn"):
        FCN.from_patch_cnn(FCN())
    with pytest.raises(ValueError, match="floating"):
        FCN()(torch.zeros(1, 1, 20, 20, dtype=torch.long))


def test_registry():
    assert isinstance(create_model("patch_cnn"), PatchCNN)
    model = create_model("fcn", pad=True, padding_mode="zeros")
    assert isinstance(model, FCN) and model.pad and model.padding_mode == "zeros"


@pytest.mark.parametrize("module", ["mlimaging.models.patch_cnn"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

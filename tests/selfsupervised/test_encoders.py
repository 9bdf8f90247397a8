"""Encoders of the self-supervised area: SmallCNN, ViTEncoder (timm oracle), make_encoder."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from mlimaging.models import ViT
from mlimaging.selfsupervised.encoders import SmallCNN, ViTEncoder, list_encoders, make_encoder


def _tiny_vit(pool: str = "cls") -> ViT:
    torch.manual_seed(0)
    return ViT(image_size=28, patch_size=7, dim=32, depth=2, heads=4, num_classes=3, pool=pool)


@pytest.mark.parametrize(("channels", "size"), [(1, 8), (1, 28), (3, 33), (1, 64)])
def test_small_cnn_shapes(channels, size):
    net = SmallCNN(in_channels=channels, feature_dim=12, width=4)
    h = net(torch.rand(3, channels, size, size))
    assert h.shape == (3, 12) and net.feature_dim == 12
    assert (h >= 0).all()  # an average of ReLU outputs


def test_small_cnn_eval_features_are_per_image():
    # in eval mode (running BN statistics) an image's features do not depend on its batch
    net = SmallCNN(feature_dim=8, width=4).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(net(x)[2:3], net(x[2:3]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "x", "match"), [
    ({}, torch.rand(2, 3, 28, 28), "shape"),
    ({}, torch.zeros(2, 1, 28, 28, dtype=torch.long), "floating"),
    ({}, torch.rand(2, 1, 3, 3), "4x4"),
    ({}, torch.rand(1, 28, 28), "shape"),
])
def test_small_cnn_bad_input(kwargs, x, match):
    with pytest.raises(ValueError, match=match):
        SmallCNN(**kwargs)(x)


@pytest.mark.parametrize("kwargs", [{"feature_dim": 0}, {"width": -1}, {"in_channels": 1.5}, {"width": True}])
def test_small_cnn_bad_options(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SmallCNN(**kwargs)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_encoder_is_the_vit_without_its_head(pool):
    vit = _tiny_vit(pool).eval()
    enc = ViTEncoder(vit)
    assert enc.pool == pool and enc.feature_dim == 32
    ref = copy.deepcopy(vit)
    ref.head = nn.Identity()
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(enc(x), ref(x), rtol=0, atol=0)
    # another grid: the resampled position embedding, as the ViT does
    x = torch.rand(2, 1, 42, 42)
    torch.testing.assert_close(enc(x), ref(x), rtol=0, atol=0)


def test_vit_encoder_shares_parameters_and_state_dict_keys():
    vit = _tiny_vit()
    enc = ViTEncoder(vit, pool="mean")
    assert set(enc.state_dict()) == {k for k in vit.state_dict() if not k.startswith("head.")}
    missing, unexpected = vit.load_state_dict(enc.state_dict(), strict=False)
    assert sorted(missing) == ["head.bias", "head.weight"] and not unexpected
    # every parameter gets a gradient (none unused), and training the encoder trains the ViT
    enc(torch.rand(2, 1, 28, 28)).sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    before = vit.patch_embed.proj.weight.detach().clone()
    torch.optim.SGD(enc.parameters(), lr=1.0).step()
    assert not torch.equal(vit.patch_embed.proj.weight, before)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_vit_encoder_matches_timm_features(pool):
    timm = pytest.importorskip("timm")
    enc = ViTEncoder(_tiny_vit(), pool=pool).eval()
    ref = timm.models.vision_transformer.VisionTransformer(
        img_size=28, patch_size=7, in_chans=1, num_classes=0, embed_dim=32, depth=2, num_heads=4,
        global_pool="token" if pool == "cls" else "avg", fc_norm=False).eval()
    missing, unexpected = ref.load_state_dict(enc.state_dict(), strict=False)
    assert not missing and not unexpected
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(enc(x), ref(x), rtol=1e-5, atol=1e-5)


def test_vit_encoder_bad_input():
    with pytest.raises(ValueError, match="vit"):
        ViTEncoder(SmallCNN())
    with pytest.raises(ValueError, match="pool"):
        ViTEncoder(_tiny_vit(), pool="max")
    with pytest.raises(ValueError, match="shape"):
        ViTEncoder(_tiny_vit())(torch.rand(2, 3, 28, 28))


def test_make_encoder():
    assert list_encoders()[0] == "small_cnn"
    cnn = make_encoder("small_cnn", in_channels=3, feature_dim=16, width=4)
    assert isinstance(cnn, SmallCNN) and cnn.feature_dim == 16
    vit = make_encoder("vit_tiny", image_size=28, pool="mean")
    assert isinstance(vit, ViTEncoder) and vit.feature_dim == 64 and vit.pool == "mean"
    assert vit(torch.rand(2, 1, 28, 28)).shape == (2, 64)
    with pytest.raises(ValueError, match="small_cnn"):
        make_encoder("resnet1000")

"""The generic suite: every model in ``list_models()`` gets these tests.

A new model is tested automatically once registered; only its parameter count for the
default configuration must be added to ``EXPECTED_PARAMS`` (worked out by hand in a
comment), so that a change of architecture is caught.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mlimaging.models import create_model, list_models, model_info

# 3x3 conv c_in -> c_out: 9 c_in c_out + c_out; linear n -> m: n m + m; BN(c): 2c.
# VGG at width 1/8: channels 64->8, 128->16, 256->32, 512->64, hidden 4096->512, 1x1 pool.
_VGG_CLASSIFIER = (64 * 512 + 512) + (512 * 512 + 512) + (512 * 10 + 10)  # 301,066
_VGG11_CONVS = 80 + 1168 + 4640 + 9248 + 18496 + 3 * 36928  # 1-8-16-32-32-64-64-64-64
_VGG16_CONVS = 80 + 584 + 1168 + 2320 + 4640 + 2 * 9248 + 18496 + 5 * 36928
EXPECTED_PARAMS = {
    "logistic_regression": 28 * 28 * 10 + 10,  # 7,850
    "feature_linear": 6 * 10 + 10,  # 70 (the standardizer is buffers)
    # conv1 1*6*25+6=156, conv2 6*16*25+16=2416, fc1 400*120+120=48120,
    # fc2 120*84+84=10164, fc3 84*10+10=850
    "lenet": 156 + 2416 + 48120 + 10164 + 850,  # 61,706
    "fc_lenet": 156 + 2416 + 48120 + 10164 + 850,  # same weights, as convolutions
    # dp_cnn: conv 8x8 1->16 (1,040), GN(16) 32, conv 4x4 16->32 (8,224), GN(32) 64, fc 32*4*4->32 (16,416),
    # 32->10 (330)
    "dp_cnn": 1040 + 32 + 8224 + 64 + 16416 + 330,  # 26,106
    # STN (affine): localiser conv 5x5 1->8 (208), 5x5 8->16 (3,216), fc 256->32 (8,224), 32->6 (198);
    # SmallCNN conv 3x3 1->16 (160), 3x3 16->32 (4,640), fc 512->64 (32,832), 64->10 (650)
    "stn": (208 + 3216 + 8224 + 198) + (160 + 4640 + 32832 + 650),  # 50,128
    # conv 5x5 1->32, 5x5 32->64, 3x3 64->96, 96->96, 96->64; fc 64*4*4->256->256->10
    "alexnet": (832 + 51264 + 55392 + 83040 + 55360) + (262400 + 65792 + 2570),  # 576,650
    "vgg11": _VGG11_CONVS + _VGG_CLASSIFIER,  # 445,482
    "vgg11_bn": _VGG11_CONVS + _VGG_CLASSIFIER + 2 * (8 + 16 + 32 + 32 + 64 * 4),  # 446,170
    "vgg16": _VGG16_CONVS + _VGG_CLASSIFIER,  # 531,490
    "vgg16_bn": _VGG16_CONVS + _VGG_CLASSIFIER
    + 2 * (8 + 8 + 16 + 16 + 3 * 32 + 6 * 64),  # 532,546
    # 5x5 conv c_in -> c_out: 25 c_in c_out + c_out. conv 1->8, 8->16, 16->16; fc 16*5*5 -> 32 -> 10
    "patch_cnn": 208 + 3216 + 6416 + 12832 + 330,  # 23,002
    "fcn": 208 + 3216 + 6416 + 12832 + 330,  # the same weights, fc1 as a 5x5 conv
    # Dense nets: a conv followed by a norm has no bias (3x3: 9 c_in c_out), BN(c) = 2c.
    # SegNet 8-16-32, two convs per level: encoder 1->8->8, 8->16->16, 16->32->32; decoder
    # 32->32->16, 16->16->8, 8->8->8; classifier 1x1 8->10.
    "segnet": (72 + 576 + 1152 + 2304 + 4608 + 9216) + 2 * (8 + 8 + 16 + 16 + 32 + 32)
    + (9216 + 4608 + 2304 + 1152 + 576 + 576) + 2 * (32 + 16 + 16 + 8 + 8 + 8)
    + (8 * 10 + 10),  # 36,850
    # U-Net 8-16-32-64: encoder 1->8->8 ... 32->64->64, up-convs 2x2 64->32, 32->16, 16->8
    # (4 c_in c_out + c_out), decoders 2c->c->c at c = 32, 16, 8, head 1x1 8->10.
    "unet": (72 + 576 + 1152 + 2304 + 4608 + 9216 + 18432 + 36864)
    + 2 * 2 * (8 + 16 + 32 + 64)
    + (8224 + 2064 + 520)
    + (18432 + 9216 + 4608 + 2304 + 1152 + 576) + 2 * 2 * (32 + 16 + 8)
    + (8 * 10 + 10),  # 121,114
    # DeepLab: stem 1->8; stages 8->16->16, 16->32->32, 32->64->64, 64->64->64; ASPP(64 -> 32):
    # 1x1 + four 3x3 (rates 1, 2, 4, 6) + pooling 1x1 with bias + projection 1x1 6*32 -> 32;
    # classifier 1x1 32->10.
    "deeplab": (72 + 1152 + 2304 + 4608 + 9216 + 18432 + 3 * 36864)
    + 2 * (8 + 2 * 16 + 2 * 32 + 4 * 64)
    + (64 * 32 + 4 * 9 * 64 * 32 + (64 * 32 + 32) + 6 * 32 * 32) + 2 * 6 * 32
    + (32 * 10 + 10),  # 231,810
    # Two pathways of valid 3x3 convs 1->8->8->16->16 with BN, 1x1 layers 32->32->32 (BN),
    # 1x1 32->10.
    "multiscale": 2 * ((72 + 576 + 1152 + 2304) + 2 * (8 + 8 + 16 + 16))
    + (1024 + 64) * 2 + (32 * 10 + 10),  # 10,906
    # ViT (dim D, patch p, N patches, hidden 4D): patch conv p*p*D + D, class token D, position
    # embedding (N + 1) D; per block two LayerNorms 2 * 2D, qkv D*3D + 3D, proj D*D + D,
    # fc1 D*4D + 4D, fc2 4D*D + D; final LayerNorm 2D; head D*10 + 10.
    # vit_tiny D=64, p=7, N=16, 4 blocks: block 128+12480+4160+128+16640+16448 = 49,984.
    "vit_tiny": (49 * 64 + 64) + 64 + 17 * 64 + 4 * 49984 + 128 + (64 * 10 + 10),  # 205,066
    # vit_small D=128, p=4, N=49, 6 blocks: block 256+49536+16512+256+66048+65664 = 198,272.
    "vit_small": (16 * 128 + 128) + 128 + 50 * 128 + 6 * 198272 + 256
    + (128 * 10 + 10),  # 1,199,882
}

# Networks that map an image to logits; prompted ones (SAM), image-to-image ones (super-resolution) and
# detectors (YOLO, tests/detection) have their own tests.
MODELS = [n for n in list_models()
          if not (model_info(n).prompted or model_info(n).image_to_image or model_info(n).detector)]
B = 2


def _input(name: str, *, in_channels: int | None = None, seed: int = 0) -> torch.Tensor:
    shape = list(model_info(name).input_shape)
    if in_channels is not None:
        shape[0] = in_channels
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, *shape, generator=g)  # [0, 1]: like images (features threshold 0.5)


def _check_logits(out: torch.Tensor, num_classes: int, *, spatial_dims: int = 2) -> None:
    assert out.shape[:2] == (B, num_classes)
    dense = 2 + spatial_dims  # (B, K, h, w) in 2D, (B, K, d, h, w) in 3D
    assert out.ndim in (2, dense), f"logits (B, K) or a dense {spatial_dims}D map, got {out.shape}"
    assert torch.isfinite(out).all()


# Models that also exist in 3D (``spatial_dims=3``) are run on a cube built from their 2D
# example input (C, H, W) -> (C, H, H, W).
MODELS_3D = [n for n in MODELS if "spatial_dims" in model_info(n).defaults]


def _input_3d(name: str) -> torch.Tensor:
    c, h, w = model_info(name).input_shape
    g = torch.Generator().manual_seed(0)
    return torch.rand(B, c, h, h, w, generator=g)


def test_hand_checks():
    assert EXPECTED_PARAMS["lenet"] == 61706
    assert EXPECTED_PARAMS["alexnet"] == 576650
    assert EXPECTED_PARAMS["vgg16"] == 531490
    assert EXPECTED_PARAMS["patch_cnn"] == 23002
    assert EXPECTED_PARAMS["segnet"] == 36850
    assert EXPECTED_PARAMS["unet"] == 121114
    assert EXPECTED_PARAMS["deeplab"] == 231810
    assert EXPECTED_PARAMS["multiscale"] == 10906


@pytest.mark.parametrize("name", MODELS)
def test_info(name):
    info = model_info(name)
    assert info.description
    assert len(info.input_shape) == 3
    assert info.defaults.get("num_classes") == 10


@pytest.mark.parametrize("name", MODELS)
def test_forward_shape(name):
    model = create_model(name, seed=0)
    _check_logits(model(_input(name)), 10)


@pytest.mark.parametrize("name", MODELS)
def test_backward_finite_grads(name):
    model = create_model(name, seed=0).train()
    out = model(_input(name))
    target = torch.randint(0, 10, (B, *out.shape[2:]), generator=torch.Generator().manual_seed(1))
    F.cross_entropy(out, target).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for g in grads.values())


@pytest.mark.parametrize("name", MODELS)
def test_parameter_count(name):
    assert name in EXPECTED_PARAMS, (
        f"add the parameter count of {name!r} (default config) to EXPECTED_PARAMS"
    )
    model = create_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert n > 0
    assert n == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", MODELS)
def test_seed_determinism(name):
    a, b = create_model(name, seed=0).eval(), create_model(name, seed=0).eval()
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = _input(name)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    c = create_model(name, seed=1)
    sc = c.state_dict()
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("name", MODELS)
def test_num_classes_honoured(name):
    model = create_model(name, num_classes=3, seed=0).eval()
    with torch.no_grad():
        _check_logits(model(_input(name)), 3)


@pytest.mark.parametrize("name", MODELS)
def test_in_channels_honoured(name):
    if "in_channels" not in model_info(name).defaults:
        pytest.skip(f"{name} takes no in_channels")
    model = create_model(name, in_channels=3, seed=0).eval()
    with torch.no_grad():
        _check_logits(model(_input(name, in_channels=3)), 10)


@pytest.mark.parametrize("name", MODELS)
def test_wrong_channel_count_raises_value_error(name):
    model = create_model(name, seed=0).eval()
    c = model_info(name).input_shape[0]
    with pytest.raises(ValueError, match="shape"):
        model(_input(name, in_channels=c + 1))


@pytest.mark.parametrize("name", MODELS)
def test_bad_num_classes_raises(name):
    with pytest.raises(ValueError, match="num_classes"):
        create_model(name, num_classes=0)


@pytest.mark.parametrize("name", MODELS_3D)
def test_spatial_dims_3d_forward_backward(name):
    assert model_info(name).defaults["spatial_dims"] == 2  # the registered example is 2D
    model = create_model(name, spatial_dims=3, seed=0).train()
    x = _input_3d(name)
    out = model(x)
    _check_logits(out, 10, spatial_dims=3)
    target = torch.randint(0, 10, (B, *out.shape[2:]), generator=torch.Generator().manual_seed(1))
    F.cross_entropy(out, target).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="shape"):  # a 2D batch is not a 3D one
        model(_input(name))


@pytest.mark.parametrize("name", MODELS_3D)
def test_bad_spatial_dims_raises(name):
    with pytest.raises(ValueError, match="spatial_dims"):
        create_model(name, spatial_dims=1)

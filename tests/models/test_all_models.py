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
    # conv 5x5 1->32, 5x5 32->64, 3x3 64->96, 96->96, 96->64; fc 64*4*4->256->256->10
    "alexnet": (832 + 51264 + 55392 + 83040 + 55360) + (262400 + 65792 + 2570),  # 576,650
    "vgg11": _VGG11_CONVS + _VGG_CLASSIFIER,  # 445,482
    "vgg11_bn": _VGG11_CONVS + _VGG_CLASSIFIER + 2 * (8 + 16 + 32 + 32 + 64 * 4),  # 446,170
    "vgg16": _VGG16_CONVS + _VGG_CLASSIFIER,  # 531,490
    "vgg16_bn": _VGG16_CONVS + _VGG_CLASSIFIER
    + 2 * (8 + 8 + 16 + 16 + 3 * 32 + 6 * 64),  # 532,546
}

MODELS = list_models()
B = 2


def _input(name: str, *, in_channels: int | None = None, seed: int = 0) -> torch.Tensor:
    shape = list(model_info(name).input_shape)
    if in_channels is not None:
        shape[0] = in_channels
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, *shape, generator=g)  # [0, 1]: like images (features threshold 0.5)


def _check_logits(out: torch.Tensor, num_classes: int) -> None:
    assert out.shape[:2] == (B, num_classes)
    assert out.ndim in (2, 4), f"logits (B, K) or a dense map (B, K, h, w), got {out.shape}"
    assert torch.isfinite(out).all()


def test_hand_checks():
    assert EXPECTED_PARAMS["lenet"] == 61706
    assert EXPECTED_PARAMS["alexnet"] == 576650
    assert EXPECTED_PARAMS["vgg16"] == 531490


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

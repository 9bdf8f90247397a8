"""The `attribute` dispatcher: every method against Captum on LeNet, shapes, state, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.interpretability import METHODS, SegmentationTarget, attribute

captum_attr = pytest.importorskip("captum.attr")

TARGETS = torch.tensor([3, 1, 4, 1])


@pytest.fixture
def x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 1, 32, 32, generator=g)


def _captum(name: str, lenet, module_lenet, x: torch.Tensor) -> torch.Tensor:
    """Captum's map for method ``name`` (ReLU rules on LeNet with nn.ReLU modules)."""
    relu_model = module_lenet(lenet)
    if name == "saliency":
        return captum_attr.Saliency(lenet).attribute(x, target=TARGETS)
    if name == "input_x_gradient":
        return captum_attr.InputXGradient(lenet).attribute(x, target=TARGETS)
    if name == "smoothgrad":
        torch.manual_seed(7)
        nt = captum_attr.NoiseTunnel(captum_attr.Saliency(lenet))
        return nt.attribute(x, nt_type="smoothgrad", nt_samples=5, stdevs=0.2, target=TARGETS)
    if name == "integrated_gradients":
        return captum_attr.IntegratedGradients(lenet).attribute(x, target=TARGETS, n_steps=20)
    if name == "deconvnet":
        return captum_attr.Deconvolution(relu_model).attribute(x, target=TARGETS)
    if name == "guided_backprop":
        return captum_attr.GuidedBackprop(relu_model).attribute(x, target=TARGETS)
    if name == "grad_cam":
        cam = captum_attr.LayerGradCam(lenet, lenet.conv2).attribute(
            x, target=TARGETS, relu_attributions=True)
        return captum_attr.LayerAttribution.interpolate(cam, (32, 32), "bilinear")
    if name == "guided_grad_cam":
        return captum_attr.GuidedGradCam(relu_model, lenet.conv2).attribute(
            x, target=TARGETS, interpolate_mode="bilinear")
    if name == "occlusion":
        return captum_attr.Occlusion(lenet).attribute(
            x, target=TARGETS, sliding_window_shapes=(1, 6, 6), strides=(1, 4, 4),
            perturbations_per_eval=16)
    if name == "feature_ablation":
        mask = (torch.arange(32)[:, None] // 8 * 4 + torch.arange(32)[None, :] // 8)
        return captum_attr.FeatureAblation(lenet).attribute(
            x, target=TARGETS, feature_mask=mask.view(1, 1, 32, 32))
    raise AssertionError(name)


def _ours(name: str, lenet, x: torch.Tensor) -> torch.Tensor:
    kw = {
        "smoothgrad": {"samples": 5, "sigma": 0.2, "seed": 7},
        "integrated_gradients": {"steps": 20},
        "grad_cam": {"layer": "conv2"},
        "guided_grad_cam": {"layer": lenet.conv2},
        "occlusion": {"window": 6, "stride": 4},
        "feature_ablation": {
            "segments": torch.arange(32)[:, None] // 8 * 4 + torch.arange(32)[None, :] // 8},
    }.get(name, {})
    return attribute(lenet, x, TARGETS, method=name, **kw)


@pytest.mark.parametrize("name", METHODS)
def test_every_method_equals_captum_on_lenet(name, lenet, module_lenet, x):
    xs = x.clone()
    if name == "smoothgrad":
        # sigma is a fraction of each sample's range: give every sample the range [0, 1]
        xs = xs.flatten(1)
        xs[:, 0], xs[:, 1] = 0.0, 1.0
        xs = xs.view_as(x)
    ours = _ours(name, lenet, xs)
    ref = _captum(name, lenet, module_lenet, xs)
    assert ours.shape == xs.shape
    assert ref.abs().max() > 0, "oracle map is all zero: the comparison would be vacuous"
    torch.testing.assert_close(ours, ref.expand_as(xs), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", METHODS)
def test_model_state_and_input_are_left_alone(name, lenet, x):
    lenet.train()
    lenet.conv1.weight.requires_grad_(False)
    before = x.clone()
    out = _ours(name, lenet, x)
    assert lenet.training and all(m.training for m in lenet.modules())
    assert not lenet.conv1.weight.requires_grad and lenet.conv2.weight.requires_grad
    assert torch.equal(x, before)
    assert not out.requires_grad and out.grad_fn is None
    assert all(p.grad is None for p in lenet.parameters())


def test_int_target_and_per_sample_list_agree(lenet, x):
    one = attribute(lenet, x, 2, method="saliency")
    many = attribute(lenet, x, [2, 2, 2, 2], method="saliency")
    torch.testing.assert_close(one, many)
    mixed = attribute(lenet, x, [2, 5, 2, 5], method="saliency")
    torch.testing.assert_close(mixed[0], one[0])
    assert not torch.allclose(mixed[1], one[1])


def test_segmentation_target_tuple_and_dataclass_agree(seg_net):
    model = seg_net("module")
    x = torch.rand(2, 1, 8, 8)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:6] = True
    a = attribute(model, x, (1, mask), method="saliency")
    b = attribute(model, x, SegmentationTarget(1, mask), method="saliency")
    c = attribute(model, x, SegmentationTarget(1, mask.expand(2, 8, 8)), method="saliency")
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    whole = attribute(model, x, 1, method="saliency")  # int: the class over all pixels
    everywhere = attribute(model, x, (1, torch.ones(8, 8)), method="saliency")
    torch.testing.assert_close(whole, everywhere)


@settings(max_examples=25, deadline=None)
@given(method=st.text(max_size=12).filter(lambda s: s not in METHODS))
def test_unknown_method_is_a_value_error(method):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="method"):
        attribute(model, torch.zeros(1, 1, 2, 2), 0, method=method)


@settings(max_examples=25, deadline=None)
@given(target=st.one_of(st.integers(min_value=10, max_value=10**6),
                        st.integers(max_value=-1),
                        st.lists(st.integers(0, 9), min_size=0, max_size=5)
                        .filter(lambda v: len(v) != 2),
                        st.floats(allow_nan=True), st.text(max_size=3)))
def test_bad_targets_are_value_errors(target):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    with pytest.raises(ValueError, match="target"):
        attribute(model, torch.zeros(2, 1, 2, 2), target, method="saliency")


@pytest.mark.parametrize("x", [torch.zeros(3), torch.zeros(2, 4, dtype=torch.long),
                               torch.full((1, 1, 2, 2), float("nan")), "image"])
def test_bad_inputs_are_value_errors(x):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="x"):
        attribute(model, x, 0, method="saliency")


class _ViewNet(torch.nn.Module):
    """Flattens its 3-channel input with .view, which channels-last strides do not allow."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 2, 3)
        self.fc = torch.nn.Linear(3 * 6 * 6 + 2 * 4 * 4, 4)

    def forward(self, x):
        h = torch.relu(self.conv(x))
        return self.fc(torch.cat([x.view(x.shape[0], -1), h.reshape(x.shape[0], -1)], 1))


class _InPlaceInput(torch.nn.Module):
    """Modifies its input in place before a convolution."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 3, 3)

    def forward(self, x):
        x.mul_(2.0)
        return self.conv(x).amax((2, 3))


@pytest.mark.parametrize("name", METHODS)
def test_view_models_and_in_place_inputs_work(name):
    kw = {"grad_cam": {"layer": "conv"}, "guided_grad_cam": {"layer": "conv"},
          "occlusion": {"window": 2, "stride": 2}, "smoothgrad": {"samples": 3, "seed": 0},
          "integrated_gradients": {"steps": 4},
          "feature_ablation": {"segments": torch.arange(36).view(6, 6) // 9}}.get(name, {})
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    model = _ViewNet().eval()
    out = attribute(model, x, 1, method=name, **kw)
    assert out.shape == x.shape and out.is_contiguous() and torch.isfinite(out).all()
    if name == "saliency":  # equals plain autograd in the input's own layout
        leaf = x.clone().requires_grad_()
        model(leaf)[:, 1].sum().backward()
        torch.testing.assert_close(out, leaf.grad.abs())
    x1 = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    before = x1.clone()
    out = attribute(_InPlaceInput().eval(), x1, 2, method=name, **kw)
    assert torch.equal(x1, before) and out.shape == x1.shape


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", METHODS)
def test_channels_last_inputs_give_the_contiguous_maps(name, dims):
    # volumes of a scan arrive in any memory layout; the maps must not depend on it
    conv = torch.nn.Conv2d if dims == 2 else torch.nn.Conv3d
    torch.manual_seed(0)
    net = torch.nn.Sequential(conv(2, 4, 3, padding=1), torch.nn.ReLU(), conv(4, 3, 1)).eval()
    x = torch.rand((2, 2) + (6,) * dims, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros((6,) * dims, dtype=torch.bool)
    mask[1:4, 1:4] = True
    kw = {"grad_cam": {"layer": "0"}, "guided_grad_cam": {"layer": "0"}, "occlusion": {"window": 2, "stride": 2},
          "smoothgrad": {"samples": 3, "seed": 0}, "integrated_gradients": {"steps": 4},
          "feature_ablation": {"segments": torch.arange(6 ** dims).view((6,) * dims) // 8}}.get(name, {})
    layout = torch.channels_last if dims == 2 else torch.channels_last_3d
    plain = attribute(net, x, (1, mask), method=name, **kw)
    last = attribute(net, x.contiguous(memory_format=layout), (1, mask), method=name, **kw)
    torch.testing.assert_close(last, plain, rtol=1e-5, atol=1e-7)

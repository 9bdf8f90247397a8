"""Gradient attributions and Grad-CAM: finite differences, Captum on a segmentation network,
ReLU rules for every way of calling a ReLU, integrated gradients completeness, bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.interpretability import (
    SegmentationTarget,
    deconvnet,
    grad_cam,
    guided_backprop,
    guided_grad_cam,
    input_x_gradient,
    integrated_gradients,
    saliency,
    smoothgrad,
)

captum_attr = pytest.importorskip("captum.attr")

MASK = torch.zeros(8, 8, dtype=torch.bool)
MASK[2:6, 1:5] = True


@pytest.fixture
def xs() -> torch.Tensor:
    return torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(3))


def _smooth_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(12, 4),
                         nn.Softplus()).double().eval()


# --- worked examples and invariants ------------------------------------------------------

def test_gradient_equals_central_finite_differences():
    model = _smooth_model()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    target = [1, 3]
    grad = saliency(model, x, target, abs=False)
    eps = 1e-6
    fd = torch.zeros_like(x)
    with torch.no_grad():
        for b in range(2):
            for i in range(x[b].numel()):
                e = torch.zeros_like(x[b]).view(-1)
                e[i] = eps
                e = e.view_as(x[b])
                up = model((x[b] + e)[None])[0, target[b]]
                down = model((x[b] - e)[None])[0, target[b]]
                fd[b].view(-1)[i] = (up - down) / (2 * eps)
    torch.testing.assert_close(grad, fd, atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(saliency(model, x, target), fd.abs(), atol=1e-7, rtol=1e-6)
    torch.testing.assert_close(input_x_gradient(model, x, target), x * fd, atol=1e-7, rtol=1e-6)


def test_deconvnet_and_guided_rules_by_hand():
    # y = w2 . relu(W1 x): at x = (-1, 2), unit 0 is off (z = -1), unit 1 on (z = 2)
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(2))
        model[2].weight.copy_(torch.tensor([[3.0, -2.0]]))
    x = torch.tensor([[-1.0, 2.0]])
    # ordinary gradient: (0, -2); deconvnet: relu(w2) = (3, 0); guided: relu(w2) * [z > 0]
    torch.testing.assert_close(saliency(model, x, None, abs=False), torch.tensor([[0.0, -2.0]]))
    torch.testing.assert_close(deconvnet(model, x, None), torch.tensor([[3.0, 0.0]]))
    torch.testing.assert_close(guided_backprop(model, x, None), torch.tensor([[0.0, 0.0]]))
    model[2].weight.data[0, 1] = 4.0
    torch.testing.assert_close(guided_backprop(model, x, None), torch.tensor([[0.0, 4.0]]))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_integrated_gradients_completeness_on_lenet(lenet, method):
    # along the path the ReLU/max-pool network is piecewise linear: the quadrature error
    # comes from its kinks and is not monotone in the steps (about 1% at 50-100 steps on this
    # untrained LeNet); 200 steps is well inside 1% for every rule
    x = 4 * torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(5))
    base = torch.full_like(x, 0.25)
    a = integrated_gradients(lenet, x, [0, 7, 9], baseline=base, steps=200, method=method)
    with torch.no_grad():
        gap = lenet(x)[torch.arange(3), [0, 7, 9]] - lenet(base)[torch.arange(3), [0, 7, 9]]
    sums = a.flatten(1).sum(1)
    assert (gap.abs() > 1e-2).all()
    assert ((sums - gap).abs() <= 0.01 * gap.abs()).all(), (sums, gap)


def test_integrated_gradients_completeness_on_a_smooth_model_at_50_steps():
    model = _smooth_model()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = integrated_gradients(model, x, [0, 2])
    with torch.no_grad():
        gap = model(x)[[0, 1], [0, 2]] - model(torch.zeros_like(x))[[0, 1], [0, 2]]
    torch.testing.assert_close(a.flatten(1).sum(1), gap, rtol=1e-8, atol=1e-10)


def test_integrated_gradients_completeness_on_segmentation(seg_net, xs):
    model = seg_net("inplace")
    a = integrated_gradients(model, xs, (2, MASK), steps=64)
    with torch.no_grad():
        f = (model(xs)[:, 2] * MASK).sum((1, 2)) - (model(xs * 0)[:, 2] * MASK).sum((1, 2))
    torch.testing.assert_close(a.flatten(1).sum(1), f, rtol=0.01, atol=1e-4)


def test_integrated_gradients_batching_does_not_change_values(lenet):
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(6))
    full = integrated_gradients(lenet, x, 4, steps=10)
    parts = integrated_gradients(lenet, x, 4, steps=10, internal_batch_size=7)
    torch.testing.assert_close(full, parts, atol=1e-6, rtol=1e-5)


def test_smoothgrad_seeding_batching_and_zero_noise(lenet):
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    a = smoothgrad(lenet, x, 3, samples=6, sigma=0.2, seed=11)
    torch.testing.assert_close(a, smoothgrad(lenet, x, 3, samples=6, sigma=0.2, seed=11,
                                             batch_size=5))
    g = torch.Generator().manual_seed(11)
    torch.testing.assert_close(a, smoothgrad(lenet, x, 3, samples=6, sigma=0.2, generator=g))
    assert not torch.allclose(a, smoothgrad(lenet, x, 3, samples=6, sigma=0.2, seed=12))
    torch.testing.assert_close(smoothgrad(lenet, x, 3, samples=3, sigma=0.0),
                               saliency(lenet, x, 3))


# --- oracles: Captum on a segmentation network with nn.ReLU() modules ----------------------

class _Scalar(nn.Module):
    """Captum's modules need one scalar per sample: class logits summed inside a mask."""

    def __init__(self, model: nn.Module, cls: int, mask: torch.Tensor) -> None:
        super().__init__()
        self.model, self.cls, self.mask = model, cls, mask.float()

    def forward(self, x):
        return (self.model(x)[:, self.cls] * self.mask).flatten(1).sum(1)


@pytest.mark.parametrize("name", ["saliency", "input_x_gradient", "integrated_gradients",
                                  "deconvnet", "guided_backprop", "grad_cam",
                                  "guided_grad_cam", "smoothgrad"])
def test_equals_captum_on_segmentation_network(name, seg_net, xs):
    model = seg_net("module")
    wrapped = _Scalar(model, 1, MASK)
    target = SegmentationTarget(1, MASK)
    if name == "saliency":
        ours, ref = saliency(model, xs, target), captum_attr.Saliency(wrapped).attribute(xs)
    elif name == "input_x_gradient":
        ours = input_x_gradient(model, xs, target)
        ref = captum_attr.InputXGradient(wrapped).attribute(xs)
    elif name == "integrated_gradients":
        ours = integrated_gradients(model, xs, target, baseline=0.1, steps=16)
        ref = captum_attr.IntegratedGradients(wrapped).attribute(xs, baselines=0.1, n_steps=16)
    elif name == "deconvnet":
        ours, ref = deconvnet(model, xs, target), captum_attr.Deconvolution(wrapped).attribute(xs)
    elif name == "guided_backprop":
        ours = guided_backprop(model, xs, target)
        ref = captum_attr.GuidedBackprop(wrapped).attribute(xs)
    elif name == "grad_cam":
        ours = grad_cam(model, xs, target, layer="enc2", upsample=False)
        ref = captum_attr.LayerGradCam(wrapped, model.enc2).attribute(xs, relu_attributions=True)
    elif name == "guided_grad_cam":
        ours = guided_grad_cam(model, xs, target, layer=model.enc2, interpolation="nearest")
        ref = captum_attr.GuidedGradCam(wrapped, model.enc2).attribute(xs)
    else:
        xr = xs.flatten(1).clone()
        xr[:, 0], xr[:, 1] = 0.0, 1.0  # range 1 in every sample: sigma 0.3 is stdev 0.3
        xs = xr.view_as(xs)
        ours = smoothgrad(model, xs, target, samples=4, sigma=0.3, seed=5)
        torch.manual_seed(5)
        ref = captum_attr.NoiseTunnel(captum_attr.Saliency(wrapped)).attribute(
            xs, nt_type="smoothgrad", nt_samples=4, stdevs=0.3)
    assert ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("method", ["riemann_left", "riemann_right", "riemann_middle"])
def test_riemann_integrated_gradients_equal_captum(lenet, method):
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(8))
    ours = integrated_gradients(lenet, x, 5, steps=12, method=method)
    ref = captum_attr.IntegratedGradients(lenet).attribute(x, target=5, n_steps=12,
                                                           method=method)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_trapezoid_differs_from_captum_by_its_weight_sum(lenet):
    """Captum's trapezoid weights are 1/n (sum (n-1)/n); ours 1/(n-1) (sum 1): ratio n/(n-1)."""
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(9))
    n = 10
    ours = integrated_gradients(lenet, x, 5, steps=n, method="riemann_trapezoid")
    ref = captum_attr.IntegratedGradients(lenet).attribute(x, target=5, n_steps=n,
                                                           method="riemann_trapezoid")
    torch.testing.assert_close(ours, ref * n / (n - 1), atol=1e-5, rtol=1e-4)


# --- ReLU rules: nn.ReLU(inplace=True), F.relu and Tensor.relu_ give the nn.ReLU() result ----

@pytest.mark.parametrize("kind", ["inplace", "functional", "tensor"])
@pytest.mark.parametrize("fn", [deconvnet, guided_backprop, saliency])
def test_relu_rules_hold_for_every_relu_call(seg_net, xs, kind, fn):
    ref = fn(seg_net("module"), xs, (1, MASK))
    torch.testing.assert_close(fn(seg_net(kind), xs, (1, MASK)), ref, atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["inplace", "functional", "tensor"])
def test_grad_cam_ignores_in_place_ops_after_the_layer(seg_net, xs, kind):
    # enc1 is followed by a ReLU that may run in place on its output
    ref = grad_cam(seg_net("module"), xs, (1, MASK), layer="enc1", relu=False)
    torch.testing.assert_close(grad_cam(seg_net(kind), xs, (1, MASK), layer="enc1",
                                        relu=False), ref, atol=0, rtol=0)
    ref = guided_grad_cam(seg_net("module"), xs, (1, MASK), layer="enc1")
    torch.testing.assert_close(guided_grad_cam(seg_net(kind), xs, (1, MASK), layer="enc1"),
                               ref, atol=0, rtol=0)


def test_in_place_lenet_equals_captum_and_captum_misses_functional_relus(lenet, module_lenet):
    """Where Captum differs: it hooks nn.ReLU modules only. On the registry LeNet (F.relu in
    forward) its GuidedBackprop and Deconvolution silently return the plain gradient; ours
    apply the rule and equal Captum on the same weights written with nn.ReLU modules."""
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    for ours_fn, cls in ((guided_backprop, captum_attr.GuidedBackprop),
                         (deconvnet, captum_attr.Deconvolution)):
        ours = ours_fn(lenet, x, 3)
        right = cls(module_lenet(lenet)).attribute(x, target=3)
        torch.testing.assert_close(ours, right, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours_fn(module_lenet(lenet, inplace=True), x, 3), ours,
                                   atol=0, rtol=0)
        captum_on_functional = cls(lenet).attribute(x, target=3)
        plain = saliency(lenet, x, 3, abs=False)
        torch.testing.assert_close(captum_on_functional, plain, atol=1e-6, rtol=1e-5)
        assert (captum_on_functional - ours).abs().max() > 1e-3


def test_relu_rule_ends_with_the_call_even_on_error(lenet):
    class Broken(nn.Module):
        def forward(self, x):
            F.relu(x)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        guided_backprop(Broken(), torch.rand(1, 1, 4, 4), 0)
    z = torch.tensor([-1.0, 2.0], requires_grad=True)
    (F.relu(z) * torch.tensor([-3.0, -3.0])).sum().backward()
    torch.testing.assert_close(z.grad, torch.tensor([0.0, -3.0]))  # the ordinary rule


def test_a_score_that_ignores_x_has_zero_gradient():
    class Constant(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([1.0, 2.0]))

        def forward(self, x):
            return self.bias.expand(x.shape[0], 2) + 0 * x.detach().flatten(1)[:, :2]

    x = torch.rand(2, 1, 3, 3)
    assert torch.equal(saliency(Constant(), x, 1), torch.zeros_like(x))
    assert torch.equal(integrated_gradients(Constant(), x, 1, steps=4), torch.zeros_like(x))


def test_grad_cam_is_nonnegative_and_3d(seg_net):
    model = seg_net("inplace", spatial_dims=3)
    x = torch.rand(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(8, 8, 8)
    mask[2:6, 2:6, 2:6] = 1
    cam = grad_cam(model, x, (0, mask), layer="enc2")
    assert cam.shape == x.shape and (cam >= 0).all()
    small = grad_cam(model, x, (0, mask), layer="enc2", upsample=False, relu=False)
    assert small.shape == (2, 1, 4, 4, 4)
    ref = F.interpolate(small.clamp(min=0), size=(8, 8, 8), mode="trilinear")
    torch.testing.assert_close(cam, ref)


# --- bad input -----------------------------------------------------------------------------

@settings(max_examples=20, deadline=None)
@given(steps=st.one_of(st.integers(max_value=0), st.floats(), st.just(True)))
def test_bad_steps(steps):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(model, torch.zeros(1, 1, 2, 2), 0, steps=steps)


@settings(max_examples=20, deadline=None)
@given(sigma=st.one_of(st.floats(max_value=-1e-9), st.just(math.nan), st.just(math.inf)),
       samples=st.integers(1, 3))
def test_bad_sigma(sigma, samples):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="sigma"):
        smoothgrad(model, torch.zeros(1, 1, 2, 2), 0, sigma=sigma, samples=samples)


@settings(max_examples=20, deadline=None)
@given(samples=st.integers(max_value=0))
def test_bad_samples(samples):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="samples"):
        smoothgrad(model, torch.zeros(1, 1, 2, 2), 0, samples=samples)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # a stateless factory
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3).filter(
    lambda s: s not in ([8, 8], [1, 8, 8], [3, 8, 8])))
def test_bad_mask_shapes(seg_net, shape):
    model = seg_net("module")
    with pytest.raises(ValueError, match="mask"):
        saliency(model, torch.zeros(3, 1, 8, 8), (1, torch.ones(shape)))


def test_other_bad_arguments(seg_net):
    model = seg_net("module")
    x = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match="mask"):
        saliency(model, x, (1, torch.zeros(8, 8)))  # empty region
    with pytest.raises(ValueError, match="target"):
        saliency(model, x, (5, MASK))  # 3 classes
    with pytest.raises(ValueError, match="layer"):
        grad_cam(model, x, 0, layer="nope")
    with pytest.raises(ValueError, match="layer"):
        grad_cam(model, x, 0, layer=nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="interpolation"):
        grad_cam(model, x, 0, layer="enc1", interpolation="cubic")
    with pytest.raises(ValueError, match="method"):
        integrated_gradients(model, x, 0, method="simpson")
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients(model, x, 0, baseline=torch.zeros(5, 1, 8, 8))
    with pytest.raises(ValueError, match="model"):
        saliency(lambda z: z, x, 0)

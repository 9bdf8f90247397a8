"""Feature visualisation: filter grids, activation maximisation, DeepDream, class models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.interpretability import (
    activation_maximization,
    class_model_visualization,
    deep_dream,
    plot_filters,
    visualize_filters,
)
from mlimaging.interpretability.visualization import total_variation
from mlimaging.models import create_model


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               for m in model.modules())


def _state(model: nn.Module) -> tuple[list[bool], list[bool]]:
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


# --------------------------------------------------------------------------- worked examples


def test_filter_grid_of_known_weights():
    conv = nn.Conv2d(1, 3, 2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]],
                                        [[[-1.0, -1.0], [1.0, 1.0]]],
                                        [[[3.0, 3.0], [3.0, 3.0]]]]))
    grid = visualize_filters(nn.Sequential(conv), ncols=2, padding=1, pad_value=9.0)
    # 3 tiles in 2 columns: 2 rows; each axis is n * (2 + 1) + 1.
    assert grid.shape == (1, 7, 7)
    torch.testing.assert_close(grid[0, 1:3, 1:3], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    torch.testing.assert_close(grid[0, 1:3, 4:6], torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    torch.testing.assert_close(grid[0, 4:6, 1:3], torch.full((2, 2), 0.5))  # constant filter
    assert (grid[0, 4:6, 4:6] == 9.0).all()  # the empty fourth cell keeps the padding value
    assert (grid[0, 0] == 9.0).all() and (grid[0, :, 3] == 9.0).all()


def test_filter_grid_layer_normalisation_keeps_relative_strength():
    conv = nn.Conv2d(1, 2, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 3.0]).view(2, 1, 1, 1))
    grid = visualize_filters(nn.Sequential(conv), normalize="layer", padding=0)
    torch.testing.assert_close(grid, torch.tensor([[[0.0, 1.0]]]))


def test_filter_grid_rgb_multichannel_and_3d():
    torch.manual_seed(0)
    rgb = nn.Conv2d(3, 5, 3)
    grid = visualize_filters(nn.Sequential(rgb), padding=0, ncols=5)
    assert grid.shape == (3, 3, 15)
    w = rgb.weight.detach()[2]
    torch.testing.assert_close(grid[:, :, 6:9], (w - w.min()) / (w.max() - w.min()))
    lenet = create_model("lenet")
    grid2 = visualize_filters(lenet, "conv2", padding=0)  # 16 filters x 6 inputs of 5 x 5
    assert grid2.shape == (1, 16 * 5, 6 * 5)
    w2 = lenet.conv2.weight.detach()[1]
    torch.testing.assert_close(grid2[0, 5:10, 10:15], ((w2 - w2.min()) / (w2.max() - w2.min()))[2])
    conv3d = nn.Conv3d(1, 2, 3)
    grid3 = visualize_filters(nn.Sequential(conv3d), padding=0)
    w3 = conv3d.weight.detach()[0, 0, 1]
    w_all = conv3d.weight.detach()[0, 0, 1]
    torch.testing.assert_close(grid3[0, :, :3], (w3 - w_all.min()) / (w_all.max() - w_all.min()))


def test_plot_filters_figure():
    fig = plot_filters(create_model("lenet"), "conv1", padding=0, ncols=6)
    assert fig.axes[0].images[0].get_array().shape == (5, 30)


def test_class_model_of_a_linear_score_is_w_over_2_lambda():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    img = class_model_visualization(net, 2, steps=300, lr=0.2, weight_decay=0.25,
                                    input_shape=(3, 2, 2))
    expected = net[1].weight.detach()[2] / (2 * 0.25)
    torch.testing.assert_close(img.flatten(), expected, atol=1e-5, rtol=0)


def test_total_variation_worked_example():
    x = torch.tensor([[[[0.0, 2.0, 2.0], [1.0, 1.0, 1.0]]]])
    # horizontal |diffs|: (2, 0, 0, 0) -> mean 0.5; vertical: (1, 1, 1) -> mean 1.
    assert total_variation(x).item() == pytest.approx(1.5)


# --------------------------------------------------------------------------- oracle


def test_filter_grid_equals_torchvision_make_grid():
    from torchvision.utils import make_grid

    torch.manual_seed(2)
    conv = nn.Conv2d(3, 7, 4)
    grid = visualize_filters(nn.Sequential(conv), ncols=3, padding=2, pad_value=0.5)
    ref = make_grid(conv.weight.detach(), nrow=3, padding=2, pad_value=0.5, normalize=True,
                    scale_each=True)
    torch.testing.assert_close(grid, ref, atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- invariants


def test_activation_maximization_raises_the_channel_and_restores_the_model():
    net = _small_cnn().train()
    net[0].weight.requires_grad_(False)
    before = _state(net)
    params = [p.detach().clone() for p in net.parameters()]
    kw = dict(layer="2", channel=3, steps=40, lr=0.05, jitter=1, input_shape=(1, 12, 12), seed=3)
    img = activation_maximization(net, **kw)
    assert img.shape == (1, 1, 12, 12) and not img.requires_grad
    assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    assert _state(net) == before and _hooks(net) == 0
    assert all(torch.equal(p, q) for p, q in zip(params, net.parameters(), strict=True))

    def channel_mean(x):
        with torch.no_grad():
            return net[:3].eval()(x)[:, 3].mean().item()

    start = (0.5 + 0.05 * torch.randn((1, 1, 12, 12), generator=torch.Generator().manual_seed(3)))
    assert channel_mean(img) > channel_mean(start.clamp(0, 1))
    randoms = torch.rand(50, 1, 12, 12, generator=torch.Generator().manual_seed(5))
    assert channel_mean(img) > max(channel_mean(r[None]) for r in randoms)  # beats random search
    torch.testing.assert_close(activation_maximization(net, **kw), img, rtol=0, atol=0)
    assert not torch.equal(activation_maximization(net, **{**kw, "seed": 4}), img)


def test_activation_maximization_of_a_class_with_octaves():
    net = _small_cnn()
    img = activation_maximization(net, target=1, steps=15, octaves=3, octave_scale=1.5,
                                  tv_weight=0.0, input_shape=(1, 18, 18), value_range=(-1, 1))
    assert img.shape == (1, 1, 18, 18) and float(img.abs().max()) <= 1.0
    with torch.no_grad():
        net.eval()
        assert net(img)[0, 1] > net(torch.zeros(1, 1, 18, 18))[0, 1]


def test_hooks_removed_and_state_restored_after_an_error():
    net = _small_cnn().train()
    with pytest.raises(ValueError, match="channel"):
        activation_maximization(net, layer="0", channel=9, steps=2, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="target"):
        activation_maximization(net, target=7, steps=2, input_shape=(1, 8, 8))
    assert _hooks(net) == 0 and net.training and all(p.requires_grad for p in net.parameters())


def test_deep_dream_shape_range_determinism_and_energy():
    net = _small_cnn().train()
    before = _state(net)
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 24, 24, generator=gen) * 2 - 1
    out = deep_dream(net, image, layer="2", octaves=3, steps=5, jitter=2, lr=0.02, seed=1)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert float(out.min()) >= float(image.min()) and float(out.max()) <= float(image.max())
    assert _state(net) == before and _hooks(net) == 0
    torch.testing.assert_close(deep_dream(net, image, layer="2", octaves=3, steps=5, jitter=2,
                                          lr=0.02, seed=1), out, rtol=0, atol=0)

    def energy(x):
        with torch.no_grad():
            return net[:3].eval()(x).pow(2).mean().item()

    assert energy(out) > energy(image)
    single = deep_dream(net, image[0], layer=net[2], octaves=1, steps=2)  # (C, H, W) in and out
    assert single.shape == image[0].shape
    bounded = deep_dream(net, image, layer="2", steps=3, value_range=(-0.5, 0.5))
    assert float(bounded.abs().max()) <= 0.5


def test_deep_dream_3d_and_layer_past_which_the_model_fails():
    class Partial(nn.Module):  # the head rejects anything: DeepDream must stop at the layer
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv3d(1, 2, 3, padding=1)

        def forward(self, x):
            self.conv(x)
            raise RuntimeError("the rest of the network must not run")

    torch.manual_seed(0)
    vol = torch.rand(1, 1, 8, 8, 8)
    out = deep_dream(Partial(), vol, layer="conv", octaves=2, steps=2)
    assert out.shape == vol.shape


# --------------------------------------------------------------------------- bad input


@settings(max_examples=15, deadline=None)
@given(steps=st.integers(max_value=0))
def test_steps_below_one_are_rejected(steps):
    net = _small_cnn()
    with pytest.raises(ValueError, match="steps"):
        activation_maximization(net, layer="0", steps=steps, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="steps"):
        deep_dream(net, torch.rand(1, 1, 8, 8), layer="0", steps=steps)
    with pytest.raises(ValueError, match="steps"):
        class_model_visualization(net, 0, steps=steps, input_shape=(1, 8, 8))


@settings(max_examples=20, deadline=None)
@given(name=st.text(min_size=1, max_size=8).filter(lambda s: s not in {"0", "1", "2", "3", "4",
                                                                           "5", "6"}))
def test_unknown_layer_name_lists_valid_names(name):
    net = _small_cnn()
    with pytest.raises(ValueError, match=r"valid names: '0', '1'"):
        visualize_filters(net, name)
    with pytest.raises(ValueError, match="layer"):
        deep_dream(net, torch.rand(1, 1, 8, 8), layer=name, steps=1)


@pytest.mark.parametrize("kw, match", [
    (dict(layer="0", target=1), "exactly one"),
    (dict(), "exactly one"),
    (dict(target=0, channel=1), "channel"),
    (dict(layer="0", input_shape=None), "input_shape"),
    (dict(layer="0", input_shape=(8, 8)), "input_shape"),
    (dict(layer="0", lr=0.0), "lr"),
    (dict(layer="0", octaves=2, octave_scale=1.0), "octave_scale"),
    (dict(layer="0", jitter=-1), "jitter"),
    (dict(layer="0", tv_weight=float("nan")), "tv_weight"),
    (dict(layer="0", value_range=(1, 0)), "value_range"),
])
def test_activation_maximization_bad_arguments(kw, match):
    args = dict(steps=1, input_shape=(1, 8, 8))
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        activation_maximization(_small_cnn(), **args)


def test_other_bad_inputs():
    net = _small_cnn()
    with pytest.raises(ValueError, match="convolution"):
        visualize_filters(net, "6")  # a Linear layer
    with pytest.raises(ValueError, match="no convolution"):
        visualize_filters(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match="submodule"):
        visualize_filters(net, nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="normalize"):
        visualize_filters(net, normalize="global")
    with pytest.raises(ValueError, match="constant"):
        deep_dream(net, torch.zeros(1, 1, 8, 8), layer="0")
    with pytest.raises(ValueError, match="finite"):
        deep_dream(net, torch.full((1, 1, 8, 8), float("nan")), layer="0")
    with pytest.raises(ValueError, match="image"):
        deep_dream(net, torch.rand(8, 8), layer="0")
    with pytest.raises(ValueError, match="weight_decay"):
        class_model_visualization(net, 0, weight_decay=-1.0, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="target"):
        class_model_visualization(net, 5, steps=1, input_shape=(1, 8, 8))
    with pytest.raises(ValueError, match="target"):
        class_model_visualization(net, -1, steps=1, input_shape=(1, 8, 8))

"""Occlusion and feature ablation: exhaustive loops, Captum (2D, 3D, segmentation targets,
skipped no-op windows), batching invariance, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.interpretability import SegmentationTarget, feature_ablation, occlusion

captum_attr = pytest.importorskip("captum.attr")


def _tiny(channels: int = 2, classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(channels, 4, 3),
            nn.Tanh(),
            nn.AdaptiveMaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16, classes),
        )
        .double()
        .eval()
    )


def _occlusion_by_loop(model, x, target, window, stride, baseline=0.0):
    """The definition, one window and one sample at a time."""
    out = torch.zeros_like(x)
    count = torch.zeros_like(x)
    h, w = x.shape[2:]
    with torch.no_grad():
        for b in range(x.shape[0]):
            ref = model(x[b : b + 1])[0, target[b]]
            for i in range(math.ceil((h - window[0]) / stride[0]) + 1):
                for j in range(math.ceil((w - window[1]) / stride[1]) + 1):
                    sl = (
                        slice(None),
                        slice(i * stride[0], i * stride[0] + window[0]),
                        slice(j * stride[1], j * stride[1] + window[1]),
                    )
                    xo = x[b].clone()
                    xo[sl] = baseline
                    drop = ref - model(xo[None])[0, target[b]]
                    out[b][sl] += drop
                    count[b][sl] += 1
    return out / count


# --- worked examples and exhaustive loops ----------------------------------------------------


def test_one_pixel_window_equals_the_exhaustive_loop():
    model = _tiny()
    x = torch.randn(2, 2, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = occlusion(model, x, [0, 2], window=1, stride=1)
    torch.testing.assert_close(got, _occlusion_by_loop(model, x, [0, 2], (1, 1), (1, 1)))


@pytest.mark.parametrize(("window", "stride"), [((3, 2), (2, 1)), ((4, 4), (3, 2)), (5, 5)])
def test_clipped_overlapping_windows_equal_the_loop(window, stride):
    model = _tiny()
    x = torch.randn(2, 2, 7, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    win = window if isinstance(window, tuple) else (window, window)
    st_ = stride if isinstance(stride, tuple) else (stride, stride)
    got = occlusion(model, x, 1, window=window, stride=stride, baseline=0.5)
    torch.testing.assert_close(got, _occlusion_by_loop(model, x, [1, 1], win, st_, 0.5))


def test_linear_model_by_hand():
    # y = sum of the pixels: occluding a window drops y by the window's sum
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 1, bias=False))
    nn.init.ones_(model[1].weight)
    x = torch.arange(9.0).view(1, 1, 3, 3)
    got = occlusion(model, x, None, window=(1, 3), stride=1)
    torch.testing.assert_close(got[0, 0], torch.tensor([[3.0] * 3, [12.0] * 3, [21.0] * 3]))
    seg = torch.tensor([[0, 0, 1], [0, 2, 1], [2, 2, 1]])
    got = feature_ablation(model, x, None, segments=seg)
    torch.testing.assert_close(
        got[0, 0], torch.tensor([[4.0, 4.0, 15.0], [4.0, 17.0, 15.0], [17.0, 17.0, 15.0]])
    )


def test_background_windows_are_skipped_without_changing_values(lenet):
    # MNIST-like: a digit on a zero background, occluded with 0; most windows change nothing
    x = torch.zeros(3, 1, 28, 28)
    x[:, :, 8:20, 10:18] = torch.rand(3, 1, 12, 8, generator=torch.Generator().manual_seed(2))
    ours = occlusion(lenet, x, [1, 2, 3], window=4, stride=2)
    ref = captum_attr.Occlusion(lenet).attribute(
        x,
        target=torch.tensor([1, 2, 3]),
        sliding_window_shapes=(1, 4, 4),
        strides=(1, 2, 2),
        perturbations_per_eval=32,
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    assert (ours[:, :, :4] == 0).all()  # windows that only hold background: exactly 0


class _Counting(nn.Module):
    """Counts the forward calls and the images that go through ``inner``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = self.images = 0

    def forward(self, x):
        self.calls += 1
        self.images += x.shape[0]
        return self.inner(x)


def test_a_window_on_background_is_skipped_worked_example():
    # sum model; left half ones, right half background: the two right windows change nothing
    linear = nn.Sequential(nn.Flatten(), nn.Linear(16, 1, bias=False))
    nn.init.ones_(linear[1].weight)
    x = torch.zeros(1, 1, 4, 4)
    x[..., :2] = 1.0
    model = _Counting(linear)
    got = occlusion(model, x, None, window=2, stride=2)
    expected = torch.tensor([[4.0, 4.0, 0.0, 0.0]] * 4)
    torch.testing.assert_close(got[0, 0], expected, rtol=0, atol=0)
    assert model.images == 1 + 2  # f(x), then the two left windows only
    model.images = 0
    dense = occlusion(model, x, None, window=2, stride=2, skip_unchanged=False)
    torch.testing.assert_close(dense, got, rtol=0, atol=0)
    assert model.images == 1 + 4


@pytest.mark.parametrize("baseline", [0.0, "tensor"])
def test_a_fully_baseline_image_costs_one_pass_and_gives_zeros(lenet, baseline):
    g = torch.Generator().manual_seed(5)
    if baseline == "tensor":
        baseline = torch.rand(1, 1, 28, 28, generator=g)
        x = baseline.expand(2, 1, 28, 28).clone()
    else:
        x = torch.zeros(2, 1, 28, 28)
    model = _Counting(lenet)
    got = occlusion(model, x, [3, 7], window=4, stride=2, baseline=baseline)
    assert (got == 0).all()
    assert (model.calls, model.images) == (1, 2)  # f(x) only
    model.calls = 0
    segments = torch.arange(28 * 28).view(28, 28) // 100
    got = feature_ablation(model, x, [3, 7], segments=segments, baseline=baseline)
    assert (got == 0).all() and model.calls == 1


def test_skipping_gives_the_maps_of_evaluating_every_window(lenet, seg_net):
    x = torch.zeros(4, 1, 28, 28)
    g = torch.Generator().manual_seed(6)
    x[:, :, 6:22, 9:19] = torch.rand(4, 1, 16, 10, generator=g)
    x[1] = 0.0  # a blank sample too
    kw = {"window": (5, 3), "stride": (3, 2)}
    torch.testing.assert_close(
        occlusion(lenet, x, [1, 2, 3, 4], **kw),
        occlusion(lenet, x, [1, 2, 3, 4], skip_unchanged=False, **kw),
        rtol=0,
        atol=1e-5,
    )
    seg = (torch.arange(28)[:, None] // 7) * 4 + torch.arange(28)[None, :] // 7
    torch.testing.assert_close(
        feature_ablation(lenet, x, [1, 2, 3, 4], segments=seg),
        feature_ablation(lenet, x, [1, 2, 3, 4], segments=seg, skip_unchanged=False),
        rtol=0,
        atol=1e-5,
    )
    vol = torch.zeros(1, 1, 8, 8, 8)
    vol[..., 2:5, 3:6, 1:4] = torch.rand(1, 1, 3, 3, 3, generator=g)
    net = seg_net("module", spatial_dims=3)
    torch.testing.assert_close(
        occlusion(net, vol, 1, window=3, stride=2),
        occlusion(net, vol, 1, window=3, stride=2, skip_unchanged=False),
        rtol=0,
        atol=1e-5,
    )


def test_batch_size_and_progress_do_not_change_values(seg_net):
    model = seg_net("inplace")
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    a = occlusion(model, x, 1, window=3, stride=2)
    torch.testing.assert_close(
        a, occlusion(model, x, 1, window=3, stride=2, batch_size=3, progress=True)
    )
    seg = torch.arange(64).view(8, 8) // 20
    b = feature_ablation(model, x, 1, segments=seg)
    torch.testing.assert_close(
        b, feature_ablation(model, x, 1, segments=seg, batch_size=1, progress=True)
    )


# --- oracles: Captum --------------------------------------------------------------------------


def _phantom_labels(n: int) -> torch.Tensor:
    """Organs of a toy phantom: background 0, body 1, two 'kidneys' 2 and 3, a 'lesion' 7."""
    yy, xx = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    c = (n - 1) / 2
    lab = torch.zeros(n, n, dtype=torch.long)
    lab[(yy - c) ** 2 + (xx - c) ** 2 < (0.45 * n) ** 2] = 1
    lab[(yy - c) ** 2 + (xx - 0.3 * n) ** 2 < (0.12 * n) ** 2] = 2
    lab[(yy - c) ** 2 + (xx - 0.7 * n) ** 2 < (0.12 * n) ** 2] = 3
    lab[(yy - 0.3 * n) ** 2 + (xx - c) ** 2 < (0.08 * n) ** 2] = 7
    return lab


class _Scalar(nn.Module):
    def __init__(self, model, cls, mask):
        super().__init__()
        self.model, self.cls, self.mask = model, cls, mask.float()

    def forward(self, x):
        return (self.model(x)[:, self.cls] * self.mask).flatten(1).sum(1)


def test_occlusion_equals_captum_on_segmentation_target(seg_net):
    model = seg_net("module")
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(4))
    mask = _phantom_labels(12) == 2
    base = torch.full((1, 1, 12, 12), 0.3)
    ours = occlusion(
        model, x, SegmentationTarget(2, mask), window=(3, 4), stride=(2, 3), baseline=base
    )
    ref = captum_attr.Occlusion(_Scalar(model, 2, mask)).attribute(
        x, sliding_window_shapes=(1, 3, 4), strides=(1, 2, 3), baselines=0.3
    )
    assert ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_occlusion_3d_equals_captum(seg_net):
    model = seg_net("functional", spatial_dims=3)
    x = torch.rand(2, 1, 8, 8, 8, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(8, 8, 8, dtype=torch.bool)
    mask[2:6, 3:5, 1:7] = True
    ours = occlusion(model, x, (0, mask), window=3, stride=2, batch_size=10)
    ref = captum_attr.Occlusion(_Scalar(model, 0, mask)).attribute(
        x, sliding_window_shapes=(1, 3, 3, 3), strides=(1, 2, 2, 2), perturbations_per_eval=8
    )
    assert ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_feature_ablation_of_phantom_organs_equals_captum(seg_net):
    model = seg_net("module")
    n = 16
    x = torch.rand(3, 1, n, n, generator=torch.Generator().manual_seed(6))
    labels = _phantom_labels(n)
    mask = labels == 7  # "why is this the lesion?"
    ours = feature_ablation(model, x, (1, mask), segments=labels)
    ref = captum_attr.FeatureAblation(_Scalar(model, 1, mask)).attribute(
        x, feature_mask=labels.view(1, 1, n, n)
    )
    assert ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    # per-sample label maps (B, *spatial): sample 1 gets its labels shifted
    per_sample = torch.stack([labels, labels.roll(3, 1), labels])
    ours = feature_ablation(model, x, (1, mask), segments=per_sample.numpy())
    ref = captum_attr.FeatureAblation(_Scalar(model, 1, mask)).attribute(
        x, feature_mask=per_sample.unsqueeze(1)
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_feature_ablation_per_channel_segments_equal_captum():
    model = _tiny().float()
    x = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(7))
    seg = torch.zeros(1, 2, 6, 6, dtype=torch.long)
    seg[0, 1] = 5  # all of channel 1 is one feature; channel 0 split in halves
    seg[0, 0, :, 3:] = 2
    ours = feature_ablation(model, x, [0, 2], segments=seg, baseline=-1.0)
    ref = captum_attr.FeatureAblation(model).attribute(
        x, target=torch.tensor([0, 2]), feature_mask=seg, baselines=-1.0
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)


def test_per_pixel_baseline_equals_captum():
    # a baseline tensor that differs per sample, channel and pixel (the where path, not fill)
    model = _tiny().float()
    x = torch.rand(2, 2, 7, 9, generator=torch.Generator().manual_seed(9))
    base = torch.randn(2, 2, 7, 9, generator=torch.Generator().manual_seed(10))
    base[0, :, :3] = x[0, :, :3]  # windows inside this band change nothing: skipped, 0
    ours = occlusion(model, x, [0, 2], window=(3, 2), stride=(2, 1), baseline=base)
    ref = captum_attr.Occlusion(model).attribute(
        x,
        target=torch.tensor([0, 2]),
        sliding_window_shapes=(2, 3, 2),
        strides=(1, 2, 1),
        baselines=base,
    )
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-4)
    seg = torch.arange(63).view(7, 9) // 10
    torch.testing.assert_close(
        feature_ablation(model, x, [0, 2], segments=seg, baseline=base),
        captum_attr.FeatureAblation(model).attribute(
            x, target=torch.tensor([0, 2]), feature_mask=seg.view(1, 1, 7, 9), baselines=base
        ),
        atol=1e-5,
        rtol=1e-4,
    )


class _InPlaceView(nn.Module):
    """Doubles its input in place, then flattens it with .view (channels-last fails there)."""

    def __init__(self, inplace: bool = True):
        super().__init__()
        torch.manual_seed(0)
        self.inplace = inplace
        self.fc = nn.Linear(2 * 5 * 6, 3)

    def forward(self, x):
        x = x.mul_(2.0) if self.inplace else x * 2.0
        flat = x.view(x.shape[0], -1) if self.inplace else x.reshape(x.shape[0], -1)
        return self.fc(torch.tanh(flat))


def test_layout_fallback_rebuilds_the_batch_an_in_place_model_changed():
    # the channels-last batch is doubled in place before .view fails: the contiguous retry
    # must start from a fresh batch, not from the doubled one
    from mlimaging.interpretability._common import Runner

    x = torch.rand(2, 2, 5, 6, generator=torch.Generator().manual_seed(11))
    model, ref_model = _InPlaceView().eval(), _InPlaceView(inplace=False).eval()
    layouts = []

    def build(fmt):
        layouts.append(fmt)
        return x.clone(memory_format=fmt)

    run = Runner(model)
    with torch.no_grad():
        torch.testing.assert_close(run.built(x, build), ref_model(x))
        assert layouts == [torch.channels_last, torch.contiguous_format] and not run.fast
        torch.testing.assert_close(run.built(x, build), ref_model(x))  # contiguous from now on
    assert layouts[2:] == [torch.contiguous_format]


def test_in_place_view_models_give_the_reference_maps():
    # occlusion and ablation of a model that changes its input in place and needs contiguous
    # strides equal those of the same model without either
    x = torch.rand(2, 2, 5, 6, generator=torch.Generator().manual_seed(11))
    before = x.clone()
    ref_model = _InPlaceView(inplace=False).eval()
    model = _InPlaceView().eval()
    for kw in ({"baseline": 0.0}, {"baseline": torch.full((1, 2, 5, 6), 0.25)}):
        got = occlusion(model, x, [1, 2], window=2, stride=1, **kw)
        torch.testing.assert_close(got, occlusion(ref_model, x, [1, 2], window=2, stride=1, **kw))
        seg = torch.arange(30).view(5, 6) // 7
        torch.testing.assert_close(
            feature_ablation(model, x, [1, 2], segments=seg, **kw),
            feature_ablation(ref_model, x, [1, 2], segments=seg, **kw),
        )
    assert torch.equal(x, before)


def test_ablating_every_label_equals_occluding_the_same_tiles():
    model = _tiny()
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    tiles = (torch.arange(6)[:, None] // 2) * 3 + torch.arange(6)[None, :] // 2
    torch.testing.assert_close(
        feature_ablation(model, x, 1, segments=tiles), occlusion(model, x, 1, window=2, stride=2)
    )


# --- bad input -------------------------------------------------------------------------------

_MODEL = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
_X = torch.zeros(1, 1, 4, 4)


@settings(max_examples=30, deadline=None)
@given(window=st.integers(5, 50), stride=st.integers(1, 3))
def test_window_larger_than_the_image(window, stride):
    with pytest.raises(ValueError, match="window"):
        occlusion(_MODEL, _X, 0, window=window, stride=stride)


@settings(max_examples=30, deadline=None)
@given(stride=st.one_of(st.integers(max_value=0), st.floats(0.1, 3.0), st.just(True)))
def test_stride_below_one_or_not_an_int(stride):
    with pytest.raises(ValueError, match="stride"):
        occlusion(_MODEL, _X, 0, window=2, stride=stride)


@settings(max_examples=30, deadline=None)
@given(window=st.integers(1, 3), extra=st.integers(1, 5))
def test_stride_larger_than_window(window, extra):
    with pytest.raises(ValueError, match="stride"):
        occlusion(_MODEL, _X, 0, window=window, stride=window + extra)


@settings(max_examples=30, deadline=None)
@given(window=st.lists(st.integers(1, 4), min_size=0, max_size=4).filter(lambda v: len(v) != 2))
def test_window_with_the_wrong_number_of_axes(window):
    with pytest.raises(ValueError, match="window"):
        occlusion(_MODEL, _X, 0, window=window, stride=1)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=4).filter(
        lambda s: s not in ([4, 4], [1, 4, 4], [1, 1, 4, 4])
    )
)
def test_segments_with_the_wrong_shape(shape):
    with pytest.raises(ValueError, match="segments"):
        feature_ablation(_MODEL, _X, 0, segments=torch.zeros(shape, dtype=torch.long))


@settings(max_examples=30, deadline=None)
@given(flag=st.one_of(st.integers(), st.none(), st.text(max_size=3), st.floats(allow_nan=False)))
def test_skip_unchanged_must_be_a_bool(flag):
    with pytest.raises(ValueError, match="skip_unchanged"):
        occlusion(_MODEL, _X, 0, window=2, skip_unchanged=flag)
    with pytest.raises(ValueError, match="skip_unchanged"):
        feature_ablation(
            _MODEL, _X, 0, segments=torch.zeros(4, 4, dtype=torch.long), skip_unchanged=flag
        )


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="segments"):
        feature_ablation(_MODEL, _X, 0, segments=np.zeros((4, 4)))  # float labels
    with pytest.raises(ValueError, match="segments"):
        feature_ablation(_MODEL, _X, 0, segments=[[0] * 4] * 4)
    with pytest.raises(ValueError, match="batch_size"):
        occlusion(_MODEL, _X, 0, window=2, batch_size=0)
    with pytest.raises(ValueError, match="baseline"):
        occlusion(_MODEL, _X, 0, window=2, baseline=torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="baseline"):
        occlusion(_MODEL, _X, 0, window=2, baseline=float("nan"))
    with pytest.raises(ValueError, match="target"):
        occlusion(_MODEL, _X, 2, window=2)

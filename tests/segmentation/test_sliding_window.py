"""Sliding-window inference: MONAI oracle, pointwise invariant, window placement, errors."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from torch import nn

from mlimaging.segmentation.sliding_window import (
    importance_map,
    sliding_window_inference,
    window_starts,
)


@pytest.fixture(scope="module")
def monai_inferers():
    """MONAI's sliding-window inferer, the oracle: only the tests that use it skip without it."""
    return pytest.importorskip("monai.inferers")


@pytest.fixture(scope="module")
def monai_data_utils():
    """MONAI's window placement and importance maps (oracle)."""
    return pytest.importorskip("monai.data.utils")


def _padded_net(spatial_dims: int, seed: int = 0) -> nn.Module:
    """Zero-padded convolutions: the output near a window border depends on where the
    window is, so blending and placement both show in the result."""
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    torch.manual_seed(seed)
    return nn.Sequential(conv(2, 4, 3, padding=1), nn.Tanh(), conv(4, 3, 3, padding=1)).eval()


CASES_2D = [
    # image size, roi, overlap, blend, sigma_scale, batch_size
    ((50, 37), (16, 16), 0.25, "gaussian", 0.125, 4),
    ((50, 37), (16, 12), 0.5, "constant", 0.125, 3),
    ((10, 40), (16, 12), 0.3, "gaussian", 0.25, 1),  # first axis shorter than the roi: padded
    ((7, 9), (16, 16), 0.25, "gaussian", 0.125, 2),  # image smaller than the roi
    ((64, 64), (32, 24), 0.6, "gaussian", (0.1, 0.2), 5),
    ((33, 20), (33, 8), 0.0, "constant", 0.125, 2),  # roi = size on one axis, no overlap
]


@pytest.mark.parametrize("size, roi, overlap, blend, sigma, batch", CASES_2D)
def test_matches_monai_2d(size, roi, overlap, blend, sigma, batch, monai_inferers):
    net = _padded_net(2)
    x = torch.rand(2, 2, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = sliding_window_inference(net, x, roi_size=roi, overlap=overlap, blend=blend,
                                        batch_size=batch, sigma_scale=sigma)
        ref = monai_inferers.sliding_window_inference(x, roi, batch, net, overlap=overlap,
                                                      mode=blend, sigma_scale=sigma)
    assert ours.shape == (2, 3, *size)
    assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    # and the windows matter: a whole-image pass differs near the window borders
    if blend == "gaussian" and max(roi) < max(size):
        assert not torch.allclose(ours, net(x), atol=1e-4)


@pytest.mark.parametrize("size, roi, overlap, blend", [
    ((20, 17, 23), (8, 8, 8), 0.25, "gaussian"),
    ((6, 17, 12), (8, 8, 8), 0.5, "constant"),
])
def test_matches_monai_3d(size, roi, overlap, blend, monai_inferers):
    net = _padded_net(3, seed=2)
    x = torch.rand(1, 2, *size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = sliding_window_inference(net, x, roi_size=roi, overlap=overlap, blend=blend)
        ref = monai_inferers.sliding_window_inference(x, roi, 4, net, overlap=overlap, mode=blend)
    assert ours.shape == (1, 3, *size)
    assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)


def test_matches_monai_float64(monai_inferers):
    net = _padded_net(2).double()
    x = torch.rand(1, 2, 30, 30, dtype=torch.float64)
    with torch.no_grad():
        ours = sliding_window_inference(net, x, roi_size=12, overlap=0.4)
        ref = monai_inferers.sliding_window_inference(x, 12, 4, net, overlap=0.4, mode="gaussian")
    assert ours.dtype == torch.float64
    assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(1, 30), w=st.integers(1, 30), rh=st.integers(1, 16), rw=st.integers(1, 16),
       overlap=st.floats(0.0, 0.9), blend=st.sampled_from(["gaussian", "constant"]),
       batch=st.integers(1, 7))
def test_pointwise_model_gives_its_full_image_output(h, w, rh, rw, overlap, blend, batch):
    torch.manual_seed(0)
    net = nn.Conv2d(2, 3, kernel_size=1).eval()
    x = torch.rand(2, 2, h, w)
    with torch.no_grad():
        out = sliding_window_inference(net, x, roi_size=(rh, rw), overlap=overlap, blend=blend,
                                       batch_size=batch)
        ref = net(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_pointwise_3d_with_padding():
    net = nn.Conv3d(1, 2, kernel_size=1).eval()
    x = torch.rand(1, 1, 5, 11, 9)
    with torch.no_grad():
        out = sliding_window_inference(net, x, roi_size=(8, 4, 6), overlap=0.5)
        torch.testing.assert_close(out, net(x), rtol=1e-5, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(size=st.integers(1, 200), roi=st.integers(1, 64), overlap=st.floats(0.0, 0.95))
def test_window_starts_cover_and_align(size, roi, overlap):
    roi = min(roi, size)
    starts = window_starts(size, roi, overlap)
    step = max(int(roi * (1 - overlap)), 1)
    assert starts[0] == 0 and starts[-1] == size - roi  # first at 0, last aligned to the end
    assert all(b > a for a, b in zip(starts, starts[1:], strict=False))
    assert all(b - a <= step for a, b in zip(starts, starts[1:], strict=False))  # no gaps
    assert len(starts) == (1 if roi == size else math.ceil((size - roi) / step) + 1)


@settings(max_examples=50, deadline=None)
@given(size=st.integers(1, 200), roi=st.integers(1, 64), overlap=st.floats(0.0, 0.95))
def test_window_starts_match_monai(size, roi, overlap, monai_data_utils):
    roi = min(roi, size)
    starts = window_starts(size, roi, overlap)
    step = max(int(roi * (1 - overlap)), 1)
    slices = monai_data_utils.dense_patch_slices((size,), (roi,), (step if roi < size else roi,))
    assert [s[0].start for s in slices] == starts  # MONAI's placement


def test_window_starts_by_hand():
    assert window_starts(100, 32, 0.25) == [0, 24, 48, 68]
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert window_starts(10, 4, 0.0) == [0, 4, 6]
    assert window_starts(5, 5, 0.9) == [0]


@pytest.mark.parametrize("roi, sigma", [((16, 16), 0.125), ((7, 10), 0.3), ((6, 5, 9), 0.125),
                                        ((64,), 0.125)])
def test_importance_map_matches_monai(roi, sigma, monai_data_utils):
    ours = importance_map(roi, sigma_scale=sigma)
    ref = monai_data_utils.compute_importance_map(roi, mode="gaussian", sigma_scale=sigma)
    assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-6, atol=1e-7)
    assert ours.min() >= 1e-3 and ours.max() <= 1.0
    for axis in range(len(roi)):  # symmetric about the window centre
        torch.testing.assert_close(ours, ours.flip(axis))


def test_importance_map_by_hand():
    w = importance_map((4,), sigma_scale=0.25)  # sigma 1, offsets -1.5, -0.5, 0.5, 1.5
    expected = [math.exp(-1.125), math.exp(-0.125), math.exp(-0.125), math.exp(-1.125)]
    assert_allclose(w.numpy(), expected, rtol=1e-6)
    floor = importance_map((65,), sigma_scale=0.05)  # sigma 3.25: the ends fall below 1e-3
    assert floor[0].item() == pytest.approx(1e-3) and floor[32].item() == 1.0
    assert torch.equal(importance_map((3, 2), blend="constant", dtype=torch.float64),
                       torch.ones(3, 2, dtype=torch.float64))


def test_model_is_called_in_chunks_of_batch_size():
    calls = []

    def model(batch):
        calls.append(batch.shape[0])
        return batch[:, :1] * 2.0

    x = torch.rand(3, 1, 20, 20)
    out = sliding_window_inference(model, x, roi_size=8, overlap=0.25, batch_size=5)
    n_windows = len(window_starts(20, 8, 0.25)) ** 2  # 3 x 3
    assert sum(calls) == 3 * n_windows and max(calls) <= 5
    assert len(calls) == math.ceil(3 * n_windows / 5)
    torch.testing.assert_close(out, 2.0 * x)


def test_differentiable_and_progress():
    net = _padded_net(2)
    x = torch.rand(1, 2, 20, 20, requires_grad=True)
    out = sliding_window_inference(net, x, roi_size=8, progress=True)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_errors():
    net = _padded_net(2)
    x = torch.rand(1, 2, 16, 16)
    with pytest.raises(ValueError, match="image"):
        sliding_window_inference(net, x[0], roi_size=8)
    with pytest.raises(ValueError, match="image"):
        sliding_window_inference(net, x.long(), roi_size=8)
    with pytest.raises(ValueError, match="roi_size"):
        sliding_window_inference(net, x, roi_size=(8, 8, 8))
    with pytest.raises(ValueError, match="roi_size"):
        sliding_window_inference(net, x, roi_size=0)
    with pytest.raises(ValueError, match="overlap"):
        sliding_window_inference(net, x, roi_size=8, overlap=1.0)
    with pytest.raises(ValueError, match="blend"):
        sliding_window_inference(net, x, roi_size=8, blend="linear")
    with pytest.raises(ValueError, match="batch_size"):
        sliding_window_inference(net, x, roi_size=8, batch_size=0)
    with pytest.raises(ValueError, match="sigma_scale"):
        sliding_window_inference(net, x, roi_size=8, sigma_scale=0.0)
    with pytest.raises(ValueError, match="roi_size"):  # the model must keep the window size
        sliding_window_inference(nn.Conv2d(2, 1, 3), x, roi_size=8)
    with pytest.raises(ValueError, match="roi"):
        window_starts(4, 5)


@pytest.mark.parametrize("module", ["mlimaging.segmentation.sliding_window"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

"""Index-free max-pooling of the perturbation passes: equal to max_pool, scoped, exact maps."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.interpretability import occlusion
from mlimaging.interpretability._fastpool import index_free_max_pooling, slice_max_pool

_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def test_worked_example():
    x = torch.tensor([[[[1.0, 5.0, 2.0], [3.0, -1.0, 0.0], [9.0, 9.0, 9.0]]]])
    # floor mode: the last row and column (odd size) are left out, as in nn.MaxPool2d(2)
    assert slice_max_pool(x, (2, 2)).tolist() == [[[[5.0]]]]


@settings(max_examples=60, deadline=None)
@given(
    nd=st.integers(1, 3),
    kernel=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    extra=st.lists(st.integers(0, 4), min_size=3, max_size=3),
    channels=st.integers(1, 5),
    last=st.booleans(),
    nan=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_equals_max_pool_in_any_layout(nd, kernel, extra, channels, last, nan, seed):
    k = tuple(kernel[:nd])
    size = [kk + e for kk, e in zip(k, extra, strict=False)]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, *size, generator=g).round()  # ties included
    if nan:
        x.view(-1)[0] = float("nan")
    if last and nd == 2:
        x = x.contiguous(memory_format=torch.channels_last)
    if last and nd == 3:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    ref = _POOL[nd](x, k)
    got = slice_max_pool(x, k)
    torch.testing.assert_close(got, ref, rtol=0, atol=0, equal_nan=True)
    assert got.data_ptr() != x.data_ptr()  # a new tensor, never the input


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3)
        self.pool = nn.MaxPool2d(2)
        self.overlap = nn.MaxPool2d(3, stride=1)  # not supported: runs the original
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(self.overlap(self.pool(F.relu(self.conv(x)))).flatten(1))


def test_only_inference_mode_calls_are_switched_and_forward_is_restored():
    net = _Net().eval()
    x = torch.rand(2, 1, 14, 14)
    ref = net(x)
    with index_free_max_pooling(net) as switched:
        assert switched == 1 and "forward" in net.pool.__dict__
        assert "forward" not in net.overlap.__dict__
        out = net(x)  # autograd on: the original pooling (its gradient)
        out.sum().backward()
        with torch.inference_mode():
            fast = net(x)
    assert "forward" not in net.pool.__dict__
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(fast, ref.detach(), rtol=0, atol=0)


def test_an_exception_restores_forward():
    net = _Net().eval()
    with pytest.raises(RuntimeError, match="boom"), index_free_max_pooling(net):
        raise RuntimeError("boom")
    assert "forward" not in net.pool.__dict__


def test_occlusion_maps_equal_those_with_max_pool(monkeypatch):
    net = _Net().eval()
    x = torch.rand(3, 1, 14, 14, generator=torch.Generator().manual_seed(1))
    fast = occlusion(net, x, [0, 1, 0], window=3, stride=2)
    import mlimaging.interpretability.perturbation as pert

    monkeypatch.setattr(pert, "index_free_max_pooling", lambda model: contextlib.nullcontext(0))
    slow = occlusion(net, x, [0, 1, 0], window=3, stride=2)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-6)

"""fit(precision="bf16"): autocast forward passes, float32 losses and weights, clean hooks, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.training import Callback, fit
from mlimaging.training.step import SupervisedStep


def _regression(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return TensorDataset(x, 0.5 * x + 0.1)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))


class _Seen(Callback):
    """Records the dtype of what the model returned, and whether autocast was on, after each batch."""

    def __init__(self) -> None:
        self.dtypes: list[torch.dtype] = []
        self.autocast: list[bool] = []

    def on_batch_end(self, state) -> None:
        self.dtypes.append(state.output.dtype)
        self.autocast.append(torch.is_autocast_enabled("cpu"))


def test_bf16_learns_with_float32_outputs_and_weights():
    seen = _Seen()
    net = _net()
    h = fit(net, _regression(), _regression(32, seed=1), loss=nn.MSELoss(), metrics=(), epochs=8, batch_size=16,
            optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), callbacks=[seen], progress=False, precision="bf16")
    assert h["loss"][-1] < 0.2 * h["loss"][0]
    assert h["val_loss"][-1] < 0.05  # a fifth of the MSE of predicting the mean (variance 0.25)
    assert set(seen.dtypes) == {torch.float32}  # outputs cast back: the loss is computed in float32
    assert not any(seen.autocast)  # autocast covers the forward only, not the loss or the backward
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_bf16_forward_really_runs_in_bfloat16():
    """Inside fit the convolutions see bfloat16 (a forward hook on the inner layer records it); after fit, float32."""
    net = _net()
    inner: list[torch.dtype] = []
    net[0].register_forward_hook(lambda m, a, out: inner.append(out.dtype))
    fit(net, _regression(16), loss=nn.MSELoss(), metrics=(), epochs=1, batch_size=16,
        optimizer=lambda p: torch.optim.SGD(p, lr=1e-2), progress=False, precision="bf16")
    assert inner == [torch.bfloat16]
    inner.clear()
    net(torch.zeros(1, 1, 8, 8))
    assert inner == [torch.float32]


def test_bf16_ends_close_to_fp32():
    """Same seed and data: the float32 and mixed-precision runs reach nearly the same loss (bf16 has 8 mantissa
    bits, so not bit-identical)."""
    losses = {}
    for precision in ("fp32", "bf16"):
        h = fit(_net(), _regression(), loss=nn.MSELoss(), metrics=(), epochs=6, batch_size=16,
                optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), progress=False, precision=precision)
        losses[precision] = h["loss"][-1]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.25, abs=2e-3)
    assert losses["bf16"] != losses["fp32"]


def test_hooks_are_removed_and_autocast_left_even_when_the_forward_raises():
    class Fails(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(64, 64)

        def forward(self, x):
            raise RuntimeError("broken forward")

    net = Fails()
    with pytest.raises(RuntimeError, match="broken forward"):
        fit(net, _regression(16), loss=nn.MSELoss(), metrics=(), epochs=1, batch_size=16,
            optimizer=lambda p: torch.optim.SGD(p, lr=1e-2), progress=False, precision="bf16")
    assert not torch.is_autocast_enabled("cpu")
    assert not net._forward_hooks and not net._forward_pre_hooks


def test_custom_step_outputs_in_tuples_are_cast_back():
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y, {"half": y[:, :, :4]}

    seen: list[torch.dtype] = []

    class Step(SupervisedStep):
        def __call__(self, model, batch, *, optimizer, grad_clip=None):
            x, y = batch
            optimizer.zero_grad()
            out, extra = model(x)
            seen.extend([out.dtype, extra["half"].dtype])
            loss = self.loss(out, y)
            loss.backward()
            optimizer.step()
            return loss

    fit(Pair(), _regression(16), step=Step(nn.MSELoss()), epochs=1, batch_size=8, metrics=(),
        optimizer=lambda p: torch.optim.SGD(p, lr=1e-2), progress=False, precision="bf16")
    assert seen == [torch.float32] * 4


def test_resuming_with_another_precision_warns(tmp_path):
    kw = dict(loss=nn.MSELoss(), metrics=(), batch_size=16, progress=False, checkpoint_dir=tmp_path,
              optimizer=lambda p: torch.optim.SGD(p, lr=1e-2))
    fit(_net(), _regression(16), epochs=1, **kw)
    with pytest.warns(UserWarning, match="precision"):
        fit(_net(), _regression(16), epochs=2, resume=True, precision="bf16", **kw)


@pytest.mark.parametrize("bad", ["fp16", "float32", None, 16, "BF16"])
def test_bad_precision_is_refused(bad):
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        fit(_net(), _regression(16), loss=nn.MSELoss(), metrics=(), epochs=1,
            optimizer=lambda p: torch.optim.SGD(p, lr=1e-2), progress=False, precision=bad)


def test_bf16_on_a_cpu_without_native_bfloat16_warns(monkeypatch):
    from mlimaging.training import engine

    monkeypatch.setattr(engine, "_cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated"):
        fit(_net(), _regression(16), loss=nn.MSELoss(), metrics=(), epochs=1,
            optimizer=lambda p: torch.optim.SGD(p, lr=1e-2), progress=False, precision="bf16")

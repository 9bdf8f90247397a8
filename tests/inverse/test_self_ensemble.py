"""Geometric self-ensemble of a denoiser (the x8 of EDSR and DPIR)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.inverse.learned import DnCNN, SelfEnsemble, pnp
from mlimaging.inverse.operators import Blur, gaussian_kernel


def _net(seed: int = 0) -> DnCNN:
    return DnCNN(depth=3, features=6, sigma_input=True, seed=seed).eval()


def test_an_equivariant_denoiser_is_unchanged():
    """A conv with a kernel symmetric under the square's group, zero-padded, commutes with every g."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16)
    den = lambda x, sigma: conv(x) * (1 - sigma)  # noqa: E731
    x = torch.rand(2, 1, 7, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(SelfEnsemble(den)(x, 0.1), den(x, 0.1), atol=1e-6, rtol=0)


def test_equals_the_mean_of_the_eight_transformed_outputs_built_in_numpy():
    net = _net()
    x = torch.rand(1, 1, 9, 6, generator=torch.Generator().manual_seed(1))
    a = x[0, 0].numpy()
    outs = []
    for k in range(4):
        for flip in (False, True):
            v = np.rot90(a, k)
            v = np.fliplr(v) if flip else v
            with torch.no_grad():
                o = net(torch.from_numpy(v.copy())[None, None], 0.05)[0, 0].numpy()
            o = np.fliplr(o) if flip else o
            outs.append(np.rot90(o, -k))
    with torch.no_grad():
        got = SelfEnsemble(net)(x, 0.05)[0, 0].numpy()
    np.testing.assert_allclose(got, np.mean(outs, axis=0), atol=1e-6)


@pytest.mark.parametrize("transforms", [8, 4])
def test_the_ensemble_is_equivariant_although_the_network_is_not(transforms):
    net = _net(3)
    se = SelfEnsemble(net, transforms=transforms)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert not torch.allclose(net(x.flip(-1), 0.1), net(x, 0.1).flip(-1), atol=1e-4)
        torch.testing.assert_close(se(x.flip(-1), 0.1), se(x, 0.1).flip(-1), atol=1e-6, rtol=0)
        torch.testing.assert_close(se(torch.rot90(x, 2, (-2, -1)), 0.1), torch.rot90(se(x, 0.1), 2, (-2, -1)),
                                   atol=1e-6, rtol=0)
        if transforms == 8:
            torch.testing.assert_close(se(torch.rot90(x, 1, (-2, -1)), 0.1), torch.rot90(se(x, 0.1), 1, (-2, -1)),
                                       atol=1e-6, rtol=0)


def test_in_pnp_it_is_a_module_denoiser_put_in_eval_mode_and_restored():
    net = _net().train()
    se = SelfEnsemble(net)
    x = torch.rand(1, 1, 12, 10, generator=torch.Generator().manual_seed(4))
    op = Blur(gaussian_kernel(1.0))
    rec = pnp(op.A(x), op, denoiser=se, algorithm="hqs", iterations=3, sigma=[0.1, 0.05, 0.02], step=[1.0] * 3)
    assert rec.x.shape == x.shape and torch.isfinite(rec.x).all()
    assert net.training and se.training  # restored after
    assert se.meta["self_ensemble"] == 8


@settings(max_examples=10, deadline=None)
@given(st.sampled_from([{"transforms": 2}, {"transforms": 8.0}, {"transforms": "8"}, {"denoiser": 3}]))
def test_bad_options_name_the_argument(bad):
    kw = {"denoiser": _net(), **bad}
    with pytest.raises(ValueError, match="transforms|denoiser"):
        SelfEnsemble(kw.pop("denoiser"), **kw)


def test_bad_input_tensor_is_refused():
    with pytest.raises(ValueError, match="x must be"):
        SelfEnsemble(_net())(torch.zeros(4), 0.1)

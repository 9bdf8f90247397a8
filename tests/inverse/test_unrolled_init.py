"""UnrolledNet's initialiser (``init``) and HQS data step by CG (``data_step="hqs"``) for any operator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.inverse import CT, Downsample
from mlimaging.inverse.learned import DnCNN, UnrolledNet, pnp, train_unrolled
from mlimaging.inverse.operators import Blur, Inpainting, gaussian_kernel


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _mask(size: int = 12, seed: int = 0) -> torch.Tensor:
    return (torch.rand(size, size, generator=_gen(seed)) < 0.5).float()


def test_default_init_is_the_scaled_adjoint_as_before():
    op = Downsample(2, filter="box")
    y = op.A(torch.rand(2, 1, 12, 12, generator=_gen(1)))
    net = UnrolledNet(op, iterations=2, features=4, seed=0).eval()
    explicit = UnrolledNet(
        op, iterations=2, features=4, seed=0, init="adjoint", data_step="auto"
    ).eval()
    with torch.no_grad():
        xs, ex = net(y, return_all=True), explicit(y, return_all=True)
    lipschitz = float(op.norm(op.A_adjoint(y))) ** 2
    torch.testing.assert_close(xs[0], op.A_adjoint(y) / lipschitz, rtol=1e-4, atol=1e-6)
    for a, b in zip(xs, ex, strict=True):
        torch.testing.assert_close(a, b)


def test_dagger_init_is_the_pseudo_inverse():
    op = Downsample(2, filter="box")
    y = op.A(torch.rand(1, 1, 12, 12, generator=_gen(2)))
    net = UnrolledNet(
        op, iterations=1, features=4, seed=0, init="dagger", init_iterations=30
    ).eval()
    with torch.no_grad():
        x0 = net(y, return_all=True)[0]
    torch.testing.assert_close(x0, op.A_dagger(y, iterations=30))
    # A (box downsampling) has full row rank, so the pseudo-inverse is consistent: A A^dagger y = y
    torch.testing.assert_close(op.A(x0), y, rtol=1e-4, atol=1e-5)


def test_hqs_cg_step_on_inpainting_is_the_closed_form():
    # A^T A = diag(m): argmin ||m x - y||^2 / 2 + ||x - z||^2 / (2 eta) = (y + z / eta) / (m + 1 / eta) per pixel;
    # two distinct eigenvalues, so two CG steps are exact (per sample, whatever the batch holds)
    m = _mask()
    op = Inpainting(m)
    y = op.A(torch.rand(3, 1, 12, 12, generator=_gen(3)))
    z = torch.rand(3, 1, 12, 12, generator=_gen(4)) * torch.tensor([1.0, 10.0, 0.0]).view(
        3, 1, 1, 1
    )
    net = UnrolledNet(op, iterations=1, features=4, data_step="hqs", cg_iterations=2)
    eta = torch.tensor(0.5)
    out = net._cg_prox(op.A_adjoint(y), z, eta)
    torch.testing.assert_close(
        out, (op.A_adjoint(y) + z / eta) / (m + 1 / eta), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "make_op",
    [
        lambda: Inpainting(_mask(16)),
        lambda: CT(np.linspace(0.0, 180.0, 8, endpoint=False), image_size=16),
        lambda: Downsample(2, filter="box"),
    ],
)
def test_untrained_unfolded_hqs_equals_pnp_hqs_from_the_same_start(make_op):
    op = make_op()
    y = op.A(torch.rand(1, 1, 16, 16, generator=_gen(5)))
    den = DnCNN(depth=3, features=8, sigma_input=True, seed=0).eval()
    sigma, step = [0.1, 0.05, 0.02], [4.0, 2.0, 1.0]

    def init(v):
        return op.A_dagger(v, iterations=6)

    net = UnrolledNet(
        op,
        iterations=3,
        denoiser=den,
        sigma=sigma,
        step=step,
        init=init,
        data_step="hqs",
        cg_iterations=4,
    ).eval()
    with torch.no_grad():
        a = net(y)
    b = pnp(
        y,
        op,
        denoiser=den,
        algorithm="hqs",
        iterations=3,
        sigma=sigma,
        step=step,
        x0=init(y),
        cg_iterations=4,
    ).x
    torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-4)


def test_fourier_operator_hqs_is_the_auto_step():
    op = Blur(gaussian_kernel(1.0))
    y = op.A(torch.rand(1, 1, 16, 16, generator=_gen(6)))
    den = DnCNN(depth=3, features=8, sigma_input=True, seed=0).eval()
    kw = dict(iterations=2, denoiser=den, sigma=[0.1, 0.05], step=[2.0, 1.0])
    with torch.no_grad():
        torch.testing.assert_close(
            UnrolledNet(op, data_step="hqs", **kw).eval()(y), UnrolledNet(op, **kw).eval()(y)
        )


def test_training_from_a_callable_init_keeps_it_fixed_and_improves_on_it():
    op = Inpainting(_mask(16, seed=7))
    calls = []

    def init(y):
        calls.append(y.requires_grad)
        return op.A_adjoint(y) + (1 - op.mask) * 0.5  # holes filled with grey

    net, hist = train_unrolled(
        op,
        iterations=2,
        images=["coins"],
        patch_size=16,
        samples=32,
        epochs=3,
        features=8,
        val_samples=0,
        init=init,
        data_step="hqs",
        cg_iterations=2,
        lr=3e-3,
    )
    assert calls and not any(calls)  # called on detached measurements
    assert hist["loss"][-1] < hist["loss"][0]


def test_init_returning_the_wrong_shape_is_a_value_error():
    op = Downsample(2, filter="box")
    net = UnrolledNet(op, iterations=1, features=4, init=lambda y: y)  # measurement-sized
    with pytest.raises(ValueError, match="init must return"):
        net(op.A(torch.rand(1, 1, 8, 8)))


@settings(max_examples=20, deadline=None)
@given(
    st.sampled_from(
        [
            {"init": "fbp"},
            {"init": 3},
            {"init": None},
            {"data_step": "cg"},
            {"data_step": None},
            {"cg_iterations": 0},
            {"init_iterations": 0},
            {"cg_iterations": 1.5},
        ]
    )
)
def test_bad_init_options_raise_value_error(kw):
    with pytest.raises(ValueError):
        UnrolledNet(Downsample(2, filter="box"), iterations=1, features=4, **kw)


@settings(max_examples=15, deadline=None)
@given(st.text(min_size=1, max_size=8).filter(lambda s: s not in ("adjoint", "dagger")))
def test_any_other_init_name_is_rejected(name):
    with pytest.raises(ValueError, match="init must be"):
        UnrolledNet(Downsample(2, filter="box"), iterations=1, features=4, init=name)

"""The Operator abstraction: composition, pseudo-inverse, spectral norm, noise models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.inverse.base import (
    ComposedOperator,
    GaussianNoise,
    Operator,
    PoissonNoise,
    conjugate_gradient,
)
from mlimaging.inverse.operators import Blur, Identity


class Matrix(Operator):
    """A dense matrix acting on (B, 1, n) tensors: the reference for the generic machinery."""

    def __init__(self, m: torch.Tensor, **kw) -> None:
        super().__init__(**kw)
        self.register_buffer("m", m)

    def A(self, x):  # noqa: N802
        return x @ self.m.T

    def A_adjoint(self, y):  # noqa: N802
        return y @ self.m


def _rank_deficient(rows: int, cols: int, rank: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, rank, generator=g, dtype=torch.float64) @ torch.randn(
        rank, cols, generator=g, dtype=torch.float64
    )


def test_worked_example_diagonal_matrix():
    op = Matrix(torch.diag(torch.tensor([3.0, 0.5], dtype=torch.float64)))
    x = torch.tensor([[[1.0, 2.0]]], dtype=torch.float64)
    assert torch.equal(op.A(x), torch.tensor([[[3.0, 1.0]]], dtype=torch.float64))
    assert op.norm(x) == pytest.approx(3.0, rel=1e-6)
    torch.testing.assert_close(op.A_dagger(op.A(x)), x)
    assert torch.equal(op(x), op.A(x))  # default noise: none


@pytest.mark.parametrize(("rows", "cols", "rank"), [(6, 4, 4), (4, 6, 4), (6, 5, 3)])
def test_a_dagger_equals_numpy_pinv(rows, cols, rank):
    m = _rank_deficient(rows, cols, rank, seed=rows + cols)
    op = Matrix(m)
    y = torch.randn(3, 1, rows, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = y.numpy() @ np.linalg.pinv(m.numpy()).T
    np.testing.assert_allclose(
        op.A_dagger(y, iterations=200, tol=1e-12).numpy(), expected, rtol=1e-7, atol=1e-9
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_norm_equals_largest_singular_value(seed):
    m = _rank_deficient(7, 5, 5, seed)
    sv = np.linalg.svd(m.numpy(), compute_uv=False)
    assert Matrix(m).norm(
        torch.zeros(1, 1, 5, dtype=torch.float64), iterations=2000, tol=1e-13
    ) == pytest.approx(sv[0], rel=1e-5)


def test_norm_is_seeded_and_of_blur_in_fourier():
    k = torch.tensor([[0.0, 0.2, 0.0], [0.2, 0.4, 0.1], [0.0, 0.1, 0.0]], dtype=torch.float64)
    op = Blur(k, padding="circular")
    x = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    kpad = torch.zeros(8, 8, dtype=torch.float64)
    kpad[:3, :3] = k
    expected = float(torch.fft.fft2(kpad).abs().max())  # circular blur is diagonal in Fourier
    assert op.norm(x, iterations=3000, tol=1e-14) == pytest.approx(expected, rel=1e-6)
    assert op.norm(x, seed=4) == op.norm(x, seed=4)


def test_composition_forward_adjoint_and_noise():
    g = torch.Generator().manual_seed(0)
    m1, m2 = (
        torch.randn(4, 3, generator=g, dtype=torch.float64),
        torch.randn(5, 4, generator=g, dtype=torch.float64),
    )
    op = Matrix(m2, noise=GaussianNoise(0.1, seed=1)) @ Matrix(m1)
    assert isinstance(op, ComposedOperator)
    x = torch.randn(2, 1, 3, generator=g, dtype=torch.float64)
    y = torch.randn(2, 1, 5, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op.A(x), x @ (m2 @ m1).T)
    torch.testing.assert_close(op.A_adjoint(y), y @ (m2 @ m1))
    assert not torch.equal(op(x), op.A(x))  # the outer noise model is applied
    with pytest.raises(TypeError):
        op @ 3  # noqa: B018


def test_conjugate_gradient_solves_spd_system_per_sample():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(6, 6, generator=g, dtype=torch.float64)
    m = q @ q.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(4, 6, generator=g, dtype=torch.float64)
    b[1] = 0  # a zero right-hand side stays zero
    x = conjugate_gradient(lambda v: v @ m, b, iterations=50, tol=1e-12)
    torch.testing.assert_close(x @ m, b)
    assert torch.equal(x[1], torch.zeros(6, dtype=torch.float64))


def test_gaussian_noise_is_seeded_repeatable_and_has_the_right_moments():
    z = torch.zeros(1, 1, 200, 200)
    a, b = GaussianNoise(0.3, seed=5)(z), GaussianNoise(0.3, seed=5)(z)
    assert torch.equal(a, b)
    noise = GaussianNoise(0.3, seed=5)
    first, second = noise(z), noise(z)
    assert not torch.equal(first, second)  # a new draw each call
    noise.reset()
    assert torch.equal(noise(z), first)
    assert float(a.mean()) == pytest.approx(0.0, abs=0.005)
    assert float(a.std()) == pytest.approx(0.3, rel=0.01)
    assert torch.equal(GaussianNoise(0.0)(z), z)
    g = torch.Generator().manual_seed(5)
    assert torch.equal(GaussianNoise(0.3, generator=g)(z), a)
    zc = torch.zeros(1, 1, 200, 200, dtype=torch.complex64)
    assert float(GaussianNoise(0.3)(zc).abs().pow(2).mean()) == pytest.approx(0.09, rel=0.02)


def test_poisson_noise_mean_variance_and_seed():
    z = torch.full((1, 1, 300, 300), 2.0, dtype=torch.float64)
    gain = 0.25
    y = PoissonNoise(gain, seed=2)(z)
    assert torch.equal(y, PoissonNoise(gain, seed=2)(z))
    assert float(y.mean()) == pytest.approx(2.0, rel=0.01)  # E[y] = z
    assert float(y.var()) == pytest.approx(gain * 2.0, rel=0.03)  # Var[y] = g z
    assert torch.equal(torch.remainder(y / gain, 1), torch.zeros_like(y))


def test_identity_noisy_measurement_is_noise_model_of_x():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    y = Identity(noise=GaussianNoise(0.1, seed=9))(x)
    torch.testing.assert_close(y, GaussianNoise(0.1, seed=9)(x))


@settings(max_examples=25, deadline=None)
@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(),
        st.booleans(),
        st.text(max_size=3),
    )
)
def test_bad_noise_parameters_raise_value_error_naming_them(value):
    for cls, name in ((GaussianNoise, "sigma"), (PoissonNoise, "gain")):
        ok = (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and np.isfinite(float(value))
        )
        ok = ok and (value > 0 or (value == 0 and cls is GaussianNoise))
        if ok:
            cls(value)
        else:
            with pytest.raises(ValueError, match=name):
                cls(value)


def test_bad_inputs():
    with pytest.raises(ValueError, match="z"):
        PoissonNoise(1.0)(torch.tensor([[-1.0]]))
    with pytest.raises(ValueError, match="seed or generator"):
        GaussianNoise(1.0, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="reset"):
        GaussianNoise(1.0, generator=torch.Generator()).reset()
    with pytest.raises(ValueError, match="noise"):
        Identity(noise=3)
    op = Identity()
    with pytest.raises(ValueError, match="iterations"):
        Matrix(torch.eye(2)).A_dagger(torch.zeros(1, 1, 2), iterations=0)
    with pytest.raises(ValueError, match="x"):
        op.norm(torch.tensor([float("nan")] * 4).view(1, 1, 4))
    with pytest.raises(NotImplementedError):
        Operator().A(torch.zeros(1, 1))

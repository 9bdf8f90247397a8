"""Classical solvers of mlimaging.inverse: least squares, Tikhonov, TV, wavelets.

Oracles: numpy.linalg.lstsq (least squares, Tikhonov with the regulariser stacked under A),
scikit-image's denoise_tv_chambolle (TV with A = I, 2D and 3D), deepinv's TV objective on a blur
problem, and PyWavelets' soft thresholding (wavelet ISTA with A = I).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from skimage import data
from skimage.restoration import denoise_tv_chambolle

from mlimaging.inverse._prox import (
    gradient,
    gradient_adjoint,
    periodic_gradient,
    periodic_gradient_adjoint,
    tv_norm,
)
from mlimaging.inverse.base import Operator
from mlimaging.inverse.operators import Blur, Identity, gaussian_kernel
from mlimaging.inverse.solvers import least_squares, tikhonov, tv_reconstruct, wavelet_reconstruct


class Matrix(Operator):
    """A dense matrix acting on the flattened spatial axes: (B, C, *shape) -> (B, C, m)."""

    def __init__(self, m: torch.Tensor, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("m", m)
        self.shape = shape

    def A(self, x):  # noqa: N802
        return x.flatten(2) @ self.m.T

    def A_adjoint(self, y):  # noqa: N802
        return (y @ self.m).reshape(*y.shape[:2], *self.shape)


def _dense(op: Operator, shape: tuple[int, ...]) -> np.ndarray:
    """The matrix of a linear operator on (1, 1, *shape) tensors (float64), column by column."""
    n = math.prod(shape)
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, *shape)
    return op.A(eye).reshape(n, -1).T.numpy()


def _camera(size: int, *, noise: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    step = 512 // size
    x = torch.from_numpy(data.camera()[::step, ::step].astype(np.float64) / 255.0)[None, None]
    g = torch.Generator().manual_seed(seed)
    return x, x + noise * torch.randn(x.shape, generator=g, dtype=torch.float64)


def _periodic_difference_matrix(shape: tuple[int, ...]) -> np.ndarray:
    n = math.prod(shape)
    eye = torch.eye(n, dtype=torch.float64).reshape(n, 1, 1, *shape)
    g = periodic_gradient(eye)  # (d, n, 1, 1, *shape)
    return g.permute(1, 0, 2, 3, *range(4, g.ndim)).reshape(n, -1).T.numpy()


# ------------------------------------------------------------------------------ worked examples
def test_least_squares_identity_converges_in_one_step():
    y = torch.arange(16.0).reshape(1, 1, 4, 4)
    rec = least_squares(y, Identity())
    assert rec.iterations == 1 and rec.converged
    assert torch.allclose(rec.x, y)
    assert rec.objective == [0.0]


def test_tv_keeps_a_constant_image():
    y = torch.full((1, 1, 8, 8), 0.3, dtype=torch.float64)
    for algorithm in ("pdhg", "fista"):
        rec = tv_reconstruct(y, Identity(), lam=0.5, iterations=5, algorithm=algorithm)
        assert_allclose(rec.x.numpy(), y.numpy(), atol=1e-12)
        assert rec.objective[-1] == pytest.approx(0.0, abs=1e-20)


def test_tikhonov_gradient_keeps_the_mean_of_a_denoised_image():
    # L^T L annihilates constants, so (I + lam L^T L) x = y preserves the mean exactly
    _, y = _camera(32)
    rec = tikhonov(y, Identity(), lam=5.0, regulariser="gradient")
    assert rec.iterations == 0
    assert float(rec.x.mean()) == pytest.approx(float(y.mean()), rel=1e-12)
    assert float(rec.x.std()) < float(y.std())


# ------------------------------------------------------------------------------ invariants
@pytest.mark.parametrize("shape", [(2, 1, 5, 7), (1, 2, 3, 4, 5)])
def test_gradient_adjoints(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    p = torch.randn((len(shape) - 2, *shape), generator=g, dtype=torch.float64)
    for forward, adjoint in ((gradient, gradient_adjoint), (periodic_gradient, periodic_gradient_adjoint)):
        assert float((forward(x) * p).sum()) == pytest.approx(float((x * adjoint(p)).sum()), rel=1e-12)


def test_least_squares_residual_decreases():
    g = torch.Generator().manual_seed(2)
    m = torch.randn(30, 16, generator=g, dtype=torch.float64)
    y = torch.randn(1, 1, 30, generator=g, dtype=torch.float64)
    obj = least_squares(y, Matrix(m, (4, 4)), iterations=16, tol=0.0).objective
    assert all(b <= a * (1 + 1e-12) for a, b in zip(obj, obj[1:], strict=False))


def test_tv_fista_monotone_and_pdhg_reach_the_same_objective():
    x, _ = _camera(32)
    op = Blur(gaussian_kernel(1.0), padding="circular")
    y = op.A(x) + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mono = tv_reconstruct(y, op, lam=0.01, iterations=150, algorithm="fista", monotone=True, inner_iterations=20)
    pdhg = tv_reconstruct(y, op, lam=0.01, iterations=500, algorithm="pdhg")
    obj = mono.objective
    assert all(b <= a for a, b in zip(obj, obj[1:], strict=False))
    assert pdhg.objective[-1] == pytest.approx(obj[-1], rel=1e-4)
    assert torch.allclose(pdhg.x, mono.x, atol=2e-3)


def test_wavelet_ista_objective_non_increasing_and_fista_agrees():
    x, _ = _camera(32)
    op = Blur(gaussian_kernel(1.0), padding="circular")
    y = op.A(x) + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    ista = wavelet_reconstruct(y, op, lam=0.01, levels=2, algorithm="ista", iterations=200, x_true=x)
    fista = wavelet_reconstruct(y, op, lam=0.01, levels=2, algorithm="fista", iterations=80)
    obj = ista.objective
    assert all(b <= a * (1 + 1e-12) for a, b in zip(obj, obj[1:], strict=False))
    assert fista.objective[-1] <= obj[-1] * (1 + 1e-6)
    assert ista.psnr[-1] > ista.psnr[0] - 1e-9 and len(ista.psnr) == ista.iterations


def test_given_norm_equals_power_iteration():
    _, y = _camera(32)
    op = Blur(gaussian_kernel(1.0), padding="circular")
    auto = tv_reconstruct(y, op, lam=0.02, iterations=10, algorithm="fista")
    given = tv_reconstruct(y, op, lam=0.02, iterations=10, algorithm="fista", norm=op.norm(y))
    assert_allclose(given.x.numpy(), auto.x.numpy(), atol=1e-12)


def test_batch_is_solved_image_by_image():
    _, y1 = _camera(32, seed=5)
    _, y2 = _camera(32, seed=6)
    both = tv_reconstruct(torch.cat([y1, y2]), Identity(), lam=0.05, iterations=20, algorithm="fista")
    one = tv_reconstruct(y2, Identity(), lam=0.05, iterations=20, algorithm="fista")
    assert_allclose(both.x[1:].numpy(), one.x.numpy(), atol=1e-12)


# ------------------------------------------------------------------------------ oracles
def test_least_squares_equals_lstsq():
    g = torch.Generator().manual_seed(7)
    m = torch.randn(20, 12, generator=g, dtype=torch.float64)
    y = torch.randn(1, 1, 20, generator=g, dtype=torch.float64)
    rec = least_squares(y, Matrix(m, (3, 4)), iterations=50, tol=1e-12)
    ref = np.linalg.lstsq(m.numpy(), y.flatten().numpy(), rcond=None)[0]
    assert_allclose(rec.x.flatten().numpy(), ref, rtol=1e-8, atol=1e-10)
    assert rec.converged and rec.iterations <= 13


@pytest.mark.parametrize("regulariser", ["identity", "gradient"])
def test_tikhonov_cg_equals_lstsq(regulariser):
    shape, lam = (4, 5), 0.7
    g = torch.Generator().manual_seed(8)
    m = torch.randn(12, 20, generator=g, dtype=torch.float64)  # under-determined: needs the regulariser
    y = torch.randn(1, 1, 12, generator=g, dtype=torch.float64)
    reg = np.eye(20) if regulariser == "identity" else _periodic_difference_matrix(shape)
    stacked = np.vstack([m.numpy(), math.sqrt(lam) * reg])
    rhs = np.concatenate([y.flatten().numpy(), np.zeros(len(reg))])
    ref = np.linalg.lstsq(stacked, rhs, rcond=None)[0]
    rec = tikhonov(y, Matrix(m, shape), lam=lam, regulariser=regulariser, tol=1e-12)
    assert_allclose(rec.x.flatten().numpy(), ref, rtol=1e-8, atol=1e-10)
    assert rec.objective[-1] == pytest.approx(float(np.sum((stacked @ ref - rhs) ** 2)), rel=1e-10)


@pytest.mark.parametrize("regulariser", ["identity", "gradient"])
def test_tikhonov_fourier_closed_form_equals_lstsq_and_cg(regulariser):
    shape, lam = (8, 8), 0.05
    op = Blur(gaussian_kernel(1.5), padding="circular")
    x, _ = _camera(8, noise=0.0)
    y = op.A(x) + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    reg = np.eye(64) if regulariser == "identity" else _periodic_difference_matrix(shape)
    stacked = np.vstack([_dense(op, shape), math.sqrt(lam) * reg])
    rhs = np.concatenate([y.flatten().numpy(), np.zeros(len(reg))])
    ref = np.linalg.lstsq(stacked, rhs, rcond=None)[0]
    closed = tikhonov(y, op, lam=lam, regulariser=regulariser)
    cg = tikhonov(y, Identity() @ op, lam=lam, regulariser=regulariser, tol=1e-12)  # not a Blur: CG path
    assert closed.iterations == 0 and cg.iterations > 0
    assert_allclose(closed.x.flatten().numpy(), ref, rtol=1e-8, atol=1e-10)
    assert_allclose(cg.x.flatten().numpy(), ref, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("algorithm", ["pdhg", "fista"])
@pytest.mark.parametrize("spatial", [2, 3])
def test_tv_denoising_matches_skimage_chambolle_objective(algorithm, spatial):
    # skimage's denoise_tv_chambolle(f, weight=w) minimises 1/2 ||u - f||^2 + w TV(u) (isotropic,
    # forward differences, Neumann): Chambolle (2004) with lambda = w; its printed energy drops the 1/2.
    lam = 0.08
    if spatial == 2:
        _, y = _camera(64)
    else:
        g = torch.Generator().manual_seed(10)
        y = torch.zeros(1, 1, 12, 12, 12, dtype=torch.float64)
        y[..., 3:9, 3:9, 3:9] = 1.0
        y = y + 0.2 * torch.randn(y.shape, generator=g, dtype=torch.float64)
    ref = torch.from_numpy(denoise_tv_chambolle(y[0, 0].numpy(), weight=lam, eps=1e-9, max_num_iter=3000))[None, None]
    rec = tv_reconstruct(y, Identity(), lam=lam, algorithm=algorithm, iterations=600 if algorithm == "pdhg" else 100,
                         inner_iterations=20, step_ratio=1.0)  # r = 1 suits denoising (see the docstring)

    def objective(u):
        return 0.5 * float(((u - y) ** 2).sum()) + lam * float(tv_norm(u))

    assert rec.objective[-1] == pytest.approx(objective(rec.x), rel=1e-12)
    assert rec.objective[-1] == pytest.approx(objective(ref), rel=1e-3)
    assert rec.objective[-1] <= objective(ref) * (1 + 1e-4)  # ours is about as converged


def test_tv_deblurring_reaches_deepinv_objective():
    dinv = pytest.importorskip("deepinv")  # tests/conftest.py installed the torchvision shim
    x, _ = _camera(32, noise=0.0)
    x = x.float()
    kernel = gaussian_kernel(1.0)
    ours_op = Blur(kernel, padding="circular")
    physics = dinv.physics.BlurFFT(img_size=(1, 32, 32), filter=kernel[None, None].float())
    assert torch.allclose(physics.A(x), ours_op.A(x), atol=1e-5)
    y = physics.A(x) + 0.02 * torch.randn(x.shape, generator=torch.Generator().manual_seed(11))
    lam = 0.01
    fidelity, prior = dinv.optim.data_fidelity.L2(), dinv.optim.prior.TVPrior(def_crit=1e-8, n_it_max=50)
    model = dinv.optim.optim_builder(iteration="PGD", prior=prior, data_fidelity=fidelity, max_iter=200,
                                     early_stop=False, params_algo={"stepsize": 1.0, "lambda": lam})
    with torch.no_grad():
        x_dinv = model(y, physics)

    def dinv_objective(u):
        return float(fidelity(u, y, physics).sum() + lam * prior(u).sum())

    rec = tv_reconstruct(y.double(), ours_op, lam=lam, algorithm="fista", iterations=300, inner_iterations=20)
    ours, theirs = dinv_objective(rec.x.float()), dinv_objective(x_dinv)
    assert ours == pytest.approx(theirs, rel=1e-4)
    assert ours <= theirs * (1 + 1e-5)
    assert rec.objective[-1] == pytest.approx(ours, rel=1e-5)  # same objective definition


@pytest.mark.parametrize(("wavelet", "levels", "shape"), [("db4", 2, (1, 1, 32, 32)), ("haar", 1, (2, 1, 4, 8, 8))])
def test_wavelet_ista_with_identity_is_one_soft_thresholding(wavelet, levels, shape):
    g = torch.Generator().manual_seed(12)
    y = torch.randn(shape, generator=g, dtype=torch.float64)
    lam = 0.5
    rec = wavelet_reconstruct(y, Identity(), lam=lam, wavelet=wavelet, levels=levels, iterations=1, algorithm="ista")
    axes = tuple(range(2, len(shape)))
    coeffs = pywt.wavedecn(y.numpy(), wavelet, mode="periodization", level=levels, axes=axes)
    shrunk = [coeffs[0]] + [{k: pywt.threshold(v, lam, mode="soft") for k, v in d.items()} for d in coeffs[1:]]
    ref = pywt.waverecn(shrunk, wavelet, mode="periodization", axes=axes)
    assert_allclose(rec.x.numpy(), ref, atol=1e-12)
    l1 = sum(np.abs(v).sum() for d in shrunk[1:] for v in d.values())
    assert rec.objective[0] == pytest.approx(0.5 * float(np.sum((ref - y.numpy()) ** 2)) + lam * l1, rel=1e-10)
    # the prox is a fixed point: more ISTA steps change nothing
    more = wavelet_reconstruct(y, Identity(), lam=lam, wavelet=wavelet, levels=levels, iterations=3, algorithm="ista")
    assert_allclose(more.x.numpy(), ref, atol=1e-12)


# ------------------------------------------------------------------------------ bad input
_Y = torch.zeros(1, 1, 8, 8)


@settings(max_examples=25, deadline=None)
@given(lam=st.one_of(st.floats(max_value=-1e-12, allow_nan=False), st.just(float("nan")), st.just(float("inf"))))
def test_bad_lam_raises(lam):
    for solve in (tikhonov, tv_reconstruct, wavelet_reconstruct):
        with pytest.raises(ValueError, match="lam"):
            solve(_Y, Identity(), lam=lam)


@settings(max_examples=25, deadline=None)
@given(iterations=st.one_of(st.integers(max_value=0), st.floats(allow_nan=True), st.booleans()))
def test_bad_iterations_raises(iterations):
    for solve, kw in ((least_squares, {}), (tv_reconstruct, {"lam": 0.1}), (wavelet_reconstruct, {"lam": 0.1})):
        with pytest.raises(ValueError, match="iterations"):
            solve(_Y, Identity(), iterations=iterations, **kw)


@settings(max_examples=20, deadline=None)
@given(index=st.integers(0, 63), value=st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_non_finite_measurement_raises(index, value):
    y = _Y.clone()
    y.view(-1)[index] = value
    for solve, kw in ((least_squares, {}), (tikhonov, {"lam": 0.1}), (tv_reconstruct, {"lam": 0.1})):
        with pytest.raises(ValueError, match="y contains NaN"):
            solve(y, Identity(), **kw)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"x0": torch.zeros(1, 1, 4, 4)}, "x0"),
    ({"x_true": torch.zeros(1, 1, 8, 9)}, "x_true"),
    ({"algorithm": "admm"}, "algorithm"),
    ({"inner_iterations": 0}, "inner_iterations"),
    ({"tol": -1.0}, "tol"),
    ({"norm": 0.0}, "norm"),
    ({"step_ratio": -1.0}, "step_ratio"),
])
def test_bad_tv_options_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        tv_reconstruct(_Y, Identity(), lam=0.1, **kwargs)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"wavelet": "bior2.2"}, "wavelet"),
    ({"wavelet": "not-a-wavelet"}, "wavelet"),
    ({"levels": 4}, "levels"),
    ({"levels": 0}, "levels"),
    ({"algorithm": "pdhg"}, "algorithm"),
])
def test_bad_wavelet_options_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        wavelet_reconstruct(_Y, Identity(), lam=0.1, **kwargs)


def test_bad_operator_and_regulariser_raise():
    with pytest.raises(ValueError, match="operator"):
        least_squares(_Y, lambda x: x)
    with pytest.raises(ValueError, match="regulariser"):
        tikhonov(_Y, Identity(), lam=1.0, regulariser="laplacian")
    with pytest.raises(ValueError, match="y must be a real floating-point"):
        tv_reconstruct(_Y.long(), Identity(), lam=0.1)
    with pytest.raises(ValueError, match="2D or 3D"):
        tv_reconstruct(torch.zeros(1, 1, 8), Identity(), lam=0.1)

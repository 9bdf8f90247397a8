"""Forward operators: adjointness for every operator, oracles (scipy, scikit-image, deepinv), bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from mlimaging.inverse.operators import Blur, Identity, gaussian_kernel, motion_kernel

F64 = torch.float64


def _rand(shape, seed, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _kernel(shape, seed):
    """A random kernel with a dominant centre tap: well conditioned, so A_dagger can meet pinv."""
    k = 0.15 * _rand(shape, seed)
    k[tuple(s // 2 for s in shape)] += 1.0
    return k


# Every operator joins this list: (id, factory, input shape). The invariant tests run on all.
OPERATORS = [
    ("identity-2d", lambda: Identity(), (2, 3, 8, 9)),
    ("identity-3d", lambda: Identity(), (1, 2, 4, 5, 6)),
    *[
        (f"blur-2d-{p}", lambda p=p: Blur(_kernel((4, 5), 1), padding=p), (2, 2, 6, 7))
        for p in ("circular", "reflect", "symmetric", "replicate", "valid")
    ],
    *[
        (f"blur-3d-{p}", lambda p=p: Blur(_kernel((3, 2, 2), 3), padding=p), (1, 2, 4, 5, 3))
        for p in ("circular", "reflect", "valid")
    ],
    (
        "blur-2d-motion-wide-reflect",
        lambda: Blur(motion_kernel(9, 30), padding="reflect"),
        (1, 1, 5, 6),
    ),
    (
        "blur-3d-gaussian-symmetric",
        lambda: Blur(gaussian_kernel(0.8, spatial_dims=3), padding="symmetric"),
        (1, 1, 4, 3, 5),
    ),
]


@pytest.mark.parametrize(
    ("factory", "shape"), [o[1:] for o in OPERATORS], ids=[o[0] for o in OPERATORS]
)
def test_adjointness(factory, shape):
    op = factory().to(F64)
    x = _rand(shape, 10)
    ax = op.A(x)
    y = _rand(tuple(ax.shape), 11)
    lhs = float((ax * y).sum())
    rhs = float((x * op.A_adjoint(y)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)
    assert op.A_adjoint(y).shape == x.shape


def _explicit_matrix(op, shape):
    """The matrix of A on one sample (columns = A of the basis vectors, computed as one batch)."""
    n = int(np.prod(shape[1:]))
    basis = torch.eye(n, dtype=F64).view(n, *shape[1:])
    m = op.A(basis).reshape(n, -1).T
    out_shape = op.A(basis[:1]).shape[1:]
    m_adj = op.A_adjoint(torch.eye(m.shape[0], dtype=F64).view(m.shape[0], *out_shape)).reshape(
        m.shape[0], -1
    )
    return m.numpy(), m_adj.numpy()


@pytest.mark.parametrize(
    ("factory", "shape"), [o[1:] for o in OPERATORS], ids=[o[0] for o in OPERATORS]
)
def test_explicit_matrix_adjoint_norm_and_pinv(factory, shape):
    """A_adjoint is the transpose of A's matrix, norm() its largest singular value, A_dagger its pinv."""
    op = factory().to(F64)
    shape = (1, *shape[1:])
    m, m_adj = _explicit_matrix(op, shape)
    np.testing.assert_allclose(m_adj, m, rtol=1e-10, atol=1e-12)  # rows of A^T e_j = columns of A
    sv = np.linalg.svd(m, compute_uv=False)
    assert op.norm(torch.zeros(shape, dtype=F64), iterations=3000, tol=1e-11) == pytest.approx(
        sv[0], rel=1e-5
    )
    kept = sv[sv > 1e-10 * sv[0]]
    y = _rand((1, m.shape[0]), 13)
    out_shape = op.A(torch.zeros(shape, dtype=F64)).shape
    x_hat = op.A_dagger(y.view(out_shape), iterations=400, tol=1e-12).reshape(-1).numpy()
    if kept[0] / kept[-1] < 1e3:  # CG reaches the pinv on a well-conditioned range
        expected = np.linalg.pinv(m, rcond=1e-10) @ y[0].numpy()
        assert np.linalg.norm(x_hat - expected) <= 1e-6 * np.linalg.norm(expected)
    else:  # near-singular (Gaussian PSFs, a random 3D kernel): the least-squares residual is optimal
        best = np.linalg.lstsq(m, y[0].numpy(), rcond=None)[0]
        r_best, r_hat = (
            np.linalg.norm(m @ best - y[0].numpy()),
            np.linalg.norm(m @ x_hat - y[0].numpy()),
        )
        assert r_hat <= r_best * (1 + 1e-4) + 1e-10


# ---------------------------------------------------------------------------------------------
# Blur


@pytest.mark.parametrize(
    ("padding", "mode"),
    [
        ("circular", "wrap"),
        ("reflect", "mirror"),
        ("symmetric", "reflect"),
        ("replicate", "nearest"),
    ],
)
@pytest.mark.parametrize("kshape", [(3, 3), (4, 5), (2, 6)])
def test_blur_equals_scipy_convolve(padding, mode, kshape):
    rng = np.random.default_rng(0)
    x, k = rng.random((13, 12)), rng.random(kshape)
    ours = Blur(torch.from_numpy(k), padding=padding).A(torch.from_numpy(x)[None, None])[0, 0]
    np.testing.assert_allclose(ours.numpy(), ndi.convolve(x, k, mode=mode), rtol=1e-12, atol=1e-12)


def test_blur_3d_equals_scipy_convolve_and_valid_is_the_cropped_convolution():
    rng = np.random.default_rng(1)
    x, k = rng.random((7, 8, 9)), rng.random((3, 4, 2))
    ours = Blur(torch.from_numpy(k), padding="circular").A(torch.from_numpy(x)[None, None])[0, 0]
    np.testing.assert_allclose(
        ours.numpy(), ndi.convolve(x, k, mode="wrap"), rtol=1e-12, atol=1e-12
    )
    valid = Blur(torch.from_numpy(k), padding="valid").A(torch.from_numpy(x)[None, None])[0, 0]
    full = ndi.convolve(x, k, mode="wrap")
    assert valid.shape == (5, 5, 8)
    np.testing.assert_allclose(valid.numpy(), full[1:6, 1:6, 0:8], rtol=1e-12, atol=1e-12)


def test_blur_worked_example_and_kernels():
    x = torch.zeros(1, 1, 5, 5, dtype=F64)
    x[..., 2, 2] = 1.0
    k = torch.arange(9, dtype=F64).view(3, 3)
    torch.testing.assert_close(Blur(k).A(x)[0, 0, 1:4, 1:4], k)  # impulse response = PSF
    assert float(gaussian_kernel(2.0).sum()) == pytest.approx(1.0, abs=1e-6)
    assert gaussian_kernel(1.0, spatial_dims=3).shape == (9, 9, 9)
    torch.testing.assert_close(gaussian_kernel(1.5), gaussian_kernel(1.5).T)
    mk = motion_kernel(7, 45)
    torch.testing.assert_close(
        mk, mk.T.flip(0).flip(1)
    )  # symmetric about the anti-diagonal... and centre
    assert float(mk.sum()) == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(motion_kernel(1, 10), torch.ones(1, 1))


def test_blur_equals_deepinv():
    dinv = pytest.importorskip("deepinv")
    x = _rand((2, 3, 16, 17), 0, torch.float32)
    for kernel in (gaussian_kernel(1.3), motion_kernel(6, 20), _rand((4, 4), 2, torch.float32)):
        for padding in ("circular", "reflect", "replicate", "valid"):
            theirs = dinv.physics.Blur(filter=kernel[None, None], padding=padding)
            ours = Blur(kernel, padding=padding)
            np.testing.assert_allclose(ours.A(x).numpy(), theirs.A(x).numpy(), rtol=1e-5, atol=1e-6)
            y = ours.A(x)
            np.testing.assert_allclose(
                ours.A_adjoint(y).numpy(), theirs.A_adjoint(y).numpy(), rtol=1e-5, atol=1e-5
            )
    # the Gaussian PSF itself
    theirs_k = dinv.physics.functional.blur.gaussian_blur(sigma=(1.3, 1.3))
    np.testing.assert_allclose(
        gaussian_kernel(1.3).numpy(), theirs_k[0, 0].numpy(), rtol=1e-6, atol=1e-7
    )

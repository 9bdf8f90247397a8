"""Forward operators: adjointness for every operator, oracles (scipy, scikit-image, deepinv), bad input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.inverse.base import GaussianNoise
from mlimaging.inverse.operators import (
    CT,
    MRI,
    Blur,
    Downsample,
    Identity,
    Inpainting,
    cartesian_mask,
    downsample_filter,
    fbp,
    gaussian_kernel,
    motion_kernel,
)

F64 = torch.float64


def _rand(shape, seed, dtype=F64):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _kernel(shape, seed):
    """A random kernel with a dominant centre tap: well conditioned, so A_dagger can meet pinv."""
    k = 0.15 * _rand(shape, seed)
    k[tuple(s // 2 for s in shape)] += 1.0
    return k


def _coils(n, h, w):
    g = torch.Generator().manual_seed(n + h + w)
    return torch.complex(torch.randn(n, h, w, generator=g), torch.randn(n, h, w, generator=g)).to(
        torch.complex128
    )


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
    *[
        (f"downsample-2d-{f}", lambda f=f: Downsample(2, filter=f), (2, 1, 6, 8))
        for f in ("bicubic", "gaussian", "box")
    ],
    ("downsample-3d-box", lambda: Downsample(2, filter="box", spatial_dims=3), (1, 1, 4, 4, 6)),
    ("inpainting-2d", lambda: Inpainting(cartesian_mask((6, 7), 2, 0.3, seed=1)), (2, 2, 6, 7)),
    ("mri-2d", lambda: MRI(cartesian_mask((6, 8), 2, 0.25, seed=2)), (2, 2, 6, 8)),
    (
        "mri-2d-coils",
        lambda: MRI(cartesian_mask((6, 6), 2, 0.3, seed=3), sensitivities=_coils(3, 6, 6)),
        (1, 2, 6, 6),
    ),
    ("ct-2d", lambda: CT([0.0, 30.0, 75.0, 120.0], image_size=8), (1, 1, 8, 8)),
]


@pytest.mark.parametrize(
    ("factory", "shape"), [o[1:] for o in OPERATORS], ids=[o[0] for o in OPERATORS]
)
def test_adjointness(factory, shape):
    op = factory().to(F64)  # every operator is an nn.Module whose .to() moves its buffers
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


# ---------------------------------------------------------------------------------------------
# Downsample and Inpainting


def test_downsample_equals_deepinv():
    dinv = pytest.importorskip("deepinv")
    x = _rand((2, 3, 24, 24), 0, torch.float32)
    for factor in (2, 3, 4):
        for filt in ("bicubic", "gaussian", "bilinear", None):
            for padding in ("circular", "reflect"):
                theirs = dinv.physics.Downsampling(
                    img_size=(3, 24, 24), filter=filt, factor=factor, padding=padding
                )
                ours = Downsample(factor, filter=filt, padding=padding)
                np.testing.assert_allclose(
                    ours.A(x).numpy(), theirs.A(x).numpy(), rtol=1e-5, atol=1e-6
                )
                y = ours.A(x)
                np.testing.assert_allclose(
                    ours.A_adjoint(y).numpy(), theirs.A_adjoint(y).numpy(), rtol=1e-5, atol=1e-6
                )


def test_downsample_worked_examples():
    x = torch.arange(36.0, dtype=F64).view(1, 1, 6, 6)
    torch.testing.assert_close(Downsample(3, filter=None).A(x)[0, 0], x[0, 0, ::3, ::3])
    # box x2 is the 2x2 block average
    torch.testing.assert_close(
        Downsample(2, filter="box").A(x)[0, 0], x[0, 0].view(3, 2, 3, 2).mean((1, 3))
    )
    for f in ("bicubic", "gaussian", "bilinear", "box"):
        k = downsample_filter(2, f, spatial_dims=3)
        assert k.ndim == 3 and float(k.sum()) == pytest.approx(1.0, abs=1e-6)
        const = torch.full((1, 1, 8, 8), 0.7, dtype=F64)
        torch.testing.assert_close(
            Downsample(2, filter=f).A(const), torch.full((1, 1, 4, 4), 0.7, dtype=F64)
        )


def test_inpainting_is_a_projection():
    mask = cartesian_mask((6, 6), 2, 0.3, seed=0)
    op = Inpainting(mask)
    x = _rand((2, 3, 6, 6), 1)
    torch.testing.assert_close(op.A(op.A(x)), op.A(x))
    assert torch.equal(op.A_dagger(op.A(x)), op.A(x))
    assert op.norm(x) == 1.0 and Inpainting(torch.zeros(6, 6)).norm(x) == 0.0
    assert torch.equal(op.A(x)[..., mask == 0], torch.zeros_like(x[..., mask == 0]))


# ---------------------------------------------------------------------------------------------
# MRI


def test_mri_full_mask_is_unitary():
    op = MRI(torch.ones(12, 10, dtype=F64)).to(F64)
    x = _rand((2, 2, 12, 10), 3)
    torch.testing.assert_close(op.A_adjoint(op.A(x)), x)
    torch.testing.assert_close(
        torch.linalg.vector_norm(op.A(x)), torch.linalg.vector_norm(x)
    )  # Parseval
    assert op.norm(x) == 1.0
    assert op.norm(x, iterations=1) == 1.0
    m, _ = _explicit_matrix(op, (1, 2, 12, 10))
    np.testing.assert_allclose(m.T @ m, np.eye(m.shape[0]), atol=1e-12)


def test_mri_worked_example_dc_and_centre():
    op = MRI(torch.ones(4, 4)).to(F64)
    x = torch.zeros(1, 2, 4, 4, dtype=F64)
    x[:, 0] = 1.0  # a constant real image: all energy at the centre of k-space, index (2, 2)
    y = op.A(x)
    assert float(y[0, 0, 2, 2]) == pytest.approx(4.0)  # orthonormal: sum / sqrt(16)
    assert float(y.abs().sum()) == pytest.approx(4.0)


def test_mri_equals_deepinv_single_and_multicoil():
    dinv = pytest.importorskip("deepinv")
    mask = cartesian_mask((16, 12), 4, 0.2, seed=5)
    x = _rand((2, 2, 16, 12), 6, torch.float32)
    theirs, ours = dinv.physics.MRI(mask=mask, img_size=(16, 12)), MRI(mask)
    np.testing.assert_allclose(ours.A(x).numpy(), theirs.A(x).numpy(), rtol=1e-5, atol=1e-6)
    y = ours.A(x)
    np.testing.assert_allclose(
        ours.A_adjoint(y).numpy(), theirs.A_adjoint(y).numpy(), rtol=1e-5, atol=1e-6
    )
    maps = _coils(3, 16, 12).to(torch.complex64)
    theirs = dinv.physics.MultiCoilMRI(mask=mask, coil_maps=maps, img_size=(16, 12))
    ours = MRI(mask, sensitivities=maps)
    np.testing.assert_allclose(ours.A(x).numpy(), theirs.A(x).numpy(), rtol=1e-5, atol=1e-5)
    y = ours.A(x)
    np.testing.assert_allclose(
        ours.A_adjoint(y).numpy(), theirs.A_adjoint(y).numpy(), rtol=1e-5, atol=1e-5
    )


def test_cartesian_mask_fastmri_rules():
    m = cartesian_mask((32, 200), 4, 0.08, seed=7)
    cols = m[0]
    assert m.shape == (32, 200) and bool((m == cols).all())
    n_center = round(200 * 0.08)
    start = (200 - n_center + 1) // 2
    assert bool(cols[start : start + n_center].all())
    assert 200 / 4 * 0.7 <= float(cols.sum()) <= 200 / 4 * 1.3
    assert torch.equal(m, cartesian_mask((32, 200), 4, 0.08, seed=7))
    assert not torch.equal(m, cartesian_mask((32, 200), 4, 0.08, seed=8))
    assert bool(cartesian_mask((4, 10), 1, 0.1).all())  # R = 1: everything
    rates = [float(cartesian_mask((1, 400), 4, 0.08, seed=s).mean()) for s in range(20)]
    assert np.mean(rates) == pytest.approx(0.25, abs=0.02)


def test_mri_noise_stays_on_the_sampled_lines():
    mask = cartesian_mask((8, 8), 4, 0.25, seed=0)
    op = MRI(mask, noise=GaussianNoise(0.1, seed=0))
    y = op(_rand((1, 2, 8, 8), 0, torch.float32))
    assert torch.equal(y[..., mask == 0], torch.zeros_like(y[..., mask == 0]))


# ---------------------------------------------------------------------------------------------
# CT


def _shepp_logan(n):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)


def test_ct_equals_skimage_radon_on_shepp_logan():
    from skimage.transform import radon

    img = _shepp_logan(64)
    angles = np.concatenate((np.linspace(0, 180, 30, endpoint=False), [17.3, 200.0, -45.0]))
    ours = CT(angles, image_size=64).to(F64).A(torch.from_numpy(img)[None, None])[0, 0].numpy()
    theirs = radon(img, angles, circle=False)
    assert ours.shape == theirs.shape == (int(np.ceil(np.sqrt(2) * 64)), len(angles))
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.999
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)  # the same bilinear geometry


def test_ct_worked_example():
    op = CT([0.0, 90.0], image_size=3)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0] = 1.0  # top-left pixel, at padded (1, 1) of the 5 x 5 square (centre 2)
    y = op.A(x)[0, 0]
    # 0 degrees: bin = padded column 1; 90 degrees: bin c samples row 2 * 2 - c, so c = 3
    expected = torch.zeros(5, 2)
    expected[1, 0] = expected[3, 1] = 1.0
    assert torch.equal(y, expected)


def test_fbp_equals_skimage_iradon_and_reconstructs_shepp_logan():
    from skimage.transform import iradon, radon

    img = _shepp_logan(64)
    angles = np.linspace(0, 180, 60, endpoint=False)
    sino = radon(img, angles, circle=False)
    for name in ("ramp", "shepp-logan", "cosine", "hamming", "hann", None):
        ours = fbp(torch.from_numpy(sino)[None, None], angles, filter=name)[0, 0].numpy()
        np.testing.assert_allclose(
            ours, iradon(sino, angles, circle=False, filter_name=name), rtol=1e-9, atol=1e-9
        )

    def psnr(a):
        return 10 * np.log10(1.0 / np.mean((a - img) ** 2))

    op = CT(angles, image_size=64).to(F64)
    ours = op.fbp(op.A(torch.from_numpy(img)[None, None]))[0, 0].numpy()
    theirs = iradon(sino, angles, circle=False)
    assert psnr(ours) == pytest.approx(psnr(theirs), abs=0.05)
    assert psnr(ours) > 25


def test_ct_adjoint_is_differentiable():
    op = CT([10.0, 70.0, 130.0], image_size=6).to(F64)
    y = _rand((1, 1, op.n_detectors, 3), 0).requires_grad_(True)
    assert torch.autograd.gradcheck(op.A_adjoint, (y,))
    x = _rand((1, 1, 6, 6), 1).requires_grad_(True)
    assert torch.autograd.gradcheck(op.A, (x,))


# ---------------------------------------------------------------------------------------------
# bad input


@settings(max_examples=30, deadline=None)
@given(
    st.one_of(
        st.integers(-3, 0), st.floats(allow_nan=True), st.booleans(), st.text(max_size=2), st.none()
    )
)
def test_bad_factor_raises_value_error(factor):
    if isinstance(factor, int) and not isinstance(factor, bool) and factor >= 1:
        return
    with pytest.raises(ValueError, match="factor"):
        Downsample(factor)


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(["blur", "downsample", "mri", "ct", "inpaint"]),
    st.sampled_from(["ndim", "dtype", "nan", "size"]),
)
def test_bad_images_raise_value_error_naming_x(kind, defect):
    ops = {
        "blur": (Blur(gaussian_kernel(1.0)), (1, 1, 8, 8)),
        "downsample": (Downsample(2), (1, 1, 8, 8)),
        "mri": (MRI(torch.ones(8, 8)), (1, 2, 8, 8)),
        "ct": (CT([0.0, 45.0], image_size=8), (1, 1, 8, 8)),
        "inpaint": (Inpainting(torch.ones(8, 8)), (1, 1, 8, 8)),
    }
    op, shape = ops[kind]
    x = torch.zeros(shape)
    if defect == "ndim":
        x = x[0]
    elif defect == "dtype":
        x = x.long()
    elif defect == "nan":
        x[..., 0, 0] = float("nan")
    else:
        x = torch.zeros(*shape[:-1], 7)
    if kind in ("blur", "inpaint") and defect == "size":
        x = torch.zeros(*shape[:-2], 9, 9, 2) if kind == "inpaint" else x[0]
    with pytest.raises(ValueError, match="x"):
        op(x)


def test_bad_constructor_arguments_name_themselves():
    cases = [
        (lambda: Blur(torch.ones(3)), "kernel"),
        (lambda: Blur(torch.full((3, 3), float("nan"))), "kernel"),
        (lambda: Blur(torch.ones(3, 3), padding="zeros"), "padding"),
        (lambda: Downsample(2, filter="lanczos"), "filter"),
        (lambda: Downsample(2, padding="valid"), "padding"),
        (lambda: Downsample(2, spatial_dims=4), "spatial_dims"),
        (lambda: Inpainting(torch.full((3, 3), 0.5)), "mask"),
        (lambda: MRI(torch.ones(4)), "mask"),
        (
            lambda: MRI(torch.ones(4, 4), sensitivities=torch.ones(2, 5, 5, dtype=torch.complex64)),
            "sensitivities",
        ),
        (lambda: CT([], image_size=8), "angles"),
        (lambda: CT([0.0, float("inf")], image_size=8), "angles"),
        (lambda: CT([0.0], image_size=1), "image_size"),
        (lambda: cartesian_mask((8, 8), 0.5, 0.1), "acceleration"),
        (lambda: cartesian_mask((8, 8), 4, 0.0), "center_fraction"),
        (lambda: cartesian_mask((8,), 4, 0.1), "shape"),
        (lambda: gaussian_kernel(-1.0), "sigma"),
        (lambda: gaussian_kernel(1.0, size=0), "size"),
        (lambda: motion_kernel(0.5, 0), "length"),
        (lambda: motion_kernel(3, float("nan")), "angle"),
        (lambda: fbp(torch.zeros(1, 1, 9, 3), [0.0, 1.0]), "sinogram"),
        (lambda: fbp(torch.zeros(1, 1, 9, 2), [0.0, 1.0], filter="ram"), "filter"),
        (lambda: Downsample(2).A(torch.zeros(1, 1, 7, 8)), "factor"),
        (
            lambda: MRI(torch.ones(4, 4), sensitivities=_coils(2, 4, 4)).A_adjoint(
                torch.zeros(1, 2, 3, 4, 4)
            ),
            "coils",
        ),
        (lambda: CT([0.0], image_size=8).A_adjoint(torch.zeros(1, 1, 8, 1)), "y"),
    ]
    for make, name in cases:
        with pytest.raises(ValueError, match=name):
            make()


def test_inpainting_moves_with_to_like_any_module():
    """nn.Module.to/.double() go through Module._apply: an operator must not shadow it."""
    mask = cartesian_mask((5, 6), 2, 0.3, seed=4)
    op = Inpainting(mask).double()
    assert op.mask.dtype == F64
    x = _rand((1, 1, 5, 6), 2)
    torch.testing.assert_close(op.A(x), x * mask.to(F64))

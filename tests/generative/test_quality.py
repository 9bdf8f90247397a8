from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mlimaging.generative.quality import (
    FeatureClassifier,
    PrecisionRecall,
    class_fractions,
    extract_features,
    fid,
    frechet_distance,
    gaussian_frechet_distance,
    mnist_feature_extractor,
    precision_recall,
)


def _torchmetrics_fid():
    # torchmetrics imports torchvision: tests/conftest.py has installed the CPU shim of
    # tests/_torchvision_cpu.py (installing it twice would register its operators twice)
    from torchmetrics.image.fid import _compute_fid

    return _compute_fid


def _spd(d: int, rng: np.random.Generator, *, rank: int | None = None) -> np.ndarray:
    a = rng.standard_normal((d, rank or d))
    return a @ a.T + (0 if rank else 0.1) * np.eye(d)


# ------------------------------------------------------------------------------ closed forms
def test_diagonal_gaussians_by_hand():
    # ||mu_a - mu_b||^2 = 1 + 4 = 5; sum (sqrt(a) - sqrt(b))^2 = (1 - 3)^2 + (2 - 2)^2 = 4
    assert gaussian_frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([9.0, 4.0])) == pytest.approx(9.0)


def test_commuting_covariances_follow_the_eigenvalue_formula():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    a, b = rng.uniform(0.1, 3, 5), rng.uniform(0.1, 3, 5)
    mu_a, mu_b = rng.standard_normal(5), rng.standard_normal(5)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = gaussian_frechet_distance(mu_a, q @ np.diag(a) @ q.T, mu_b, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-10)


def test_general_covariances_equal_the_scipy_sqrtm_formula():
    rng = np.random.default_rng(1)
    for d in (1, 3, 16):
        sa, sb = _spd(d, rng), _spd(d, rng)
        mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
        covmean = scipy.linalg.sqrtm(sa @ sb)
        assert np.abs(covmean.imag).max() < 1e-6  # the check pytorch-fid does
        expected = np.sum((mu_a - mu_b) ** 2) + np.trace(sa + sb - 2 * covmean.real)
        assert gaussian_frechet_distance(mu_a, sa, mu_b, sb) == pytest.approx(expected, rel=1e-8)


def test_singular_covariances_are_fine():
    rng = np.random.default_rng(2)
    sa, sb = _spd(8, rng, rank=3), _spd(8, rng, rank=2)
    value = gaussian_frechet_distance(np.zeros(8), sa, np.zeros(8), sb)
    assert np.isfinite(value) and value >= 0
    assert gaussian_frechet_distance(np.zeros(8), sa, np.zeros(8), sa) == pytest.approx(0.0, abs=1e-9)


def test_sample_frechet_distance_converges_to_the_closed_form():
    rng = np.random.default_rng(3)
    d = 4
    sa, sb = _spd(d, rng) / d, _spd(d, rng) / d
    mu_a, mu_b = rng.standard_normal(d), rng.standard_normal(d)
    n = 200_000
    a = rng.multivariate_normal(mu_a, sa, size=n)
    b = rng.multivariate_normal(mu_b, sb, size=n)
    exact = gaussian_frechet_distance(mu_a, sa, mu_b, sb)
    assert frechet_distance(a, b) == pytest.approx(exact, rel=0.02, abs=0.01)


# ------------------------------------------------------------------------------ oracle: torchmetrics
def test_equals_torchmetrics_fid_formula_on_the_same_features():
    compute_fid = _torchmetrics_fid()
    g = torch.Generator().manual_seed(0)
    for n, d in ((300, 8), (100, 32), (20, 64)):  # the last: fewer samples than features (singular)
        a = torch.randn(n, d, generator=g, dtype=torch.float64)
        b = 0.7 * torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g,
                                                                                    dtype=torch.float64) + 0.3
        mu_a, mu_b = a.mean(0), b.mean(0)
        sig_a, sig_b = torch.from_numpy(np.cov(a.numpy(), rowvar=False)), torch.from_numpy(np.cov(b.numpy(), rowvar=False))
        expected = compute_fid(mu_a, sig_a, mu_b, sig_b).item()
        assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6, abs=1e-6)
        assert frechet_distance(a.numpy().astype(np.float32), b) == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------------------------ invariants
def test_frechet_distance_invariants():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(200, 5, generator=g), torch.randn(150, 5, generator=g) + 1
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))
    shift = torch.randn(5, generator=g)  # a rigid motion of both sets
    assert frechet_distance(a @ q + shift, b @ q + shift) == pytest.approx(frechet_distance(a, b), rel=1e-6)
    assert frechet_distance(a, a + torch.tensor([3.0, 0, 0, 0, 4])) == pytest.approx(25.0, rel=1e-6)
    assert frechet_distance(2 * a, 2 * b) == pytest.approx(4 * frechet_distance(a, b), rel=1e-6)


def test_fid_is_the_frechet_distance_of_the_extracted_features():
    g = torch.Generator().manual_seed(5)
    real, fake = torch.rand(64, 1, 4, 4, generator=g), torch.rand(80, 1, 4, 4, generator=g) ** 2
    flat = nn.Flatten()
    assert fid(real, fake, feature_extractor=flat, batch_size=7) == pytest.approx(
        frechet_distance(real.flatten(1), fake.flatten(1)), rel=1e-9)
    assert fid(real, fake, feature_extractor=lambda x: x.mean((2, 3))) == pytest.approx(
        frechet_distance(real.mean((2, 3, 1))[:, None], fake.mean((2, 3, 1))[:, None]), rel=1e-9)


def test_extract_features_restores_the_module_mode():
    net = FeatureClassifier().train()
    x = torch.rand(5, 1, 28, 28)
    f = extract_features(x, net.features)
    assert f.shape == (5, 64) and f.dtype == torch.float64 and net.training
    with torch.no_grad():
        torch.testing.assert_close(f, net.eval().features(x).double())


# ------------------------------------------------------------------------------ precision / recall
def test_precision_recall_identical_and_far_sets():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x) == PrecisionRecall(1.0, 1.0)
    assert precision_recall(x, x + 1e3) == PrecisionRecall(0.0, 0.0)


def test_precision_recall_by_hand():
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])  # k = 1: every real radius is 1
    fake = torch.tensor([[0.5], [10.0], [3.9], [-2.0]])  # radii 2.5, 6.1, 3.4, 2.5
    pr = precision_recall(real, fake, k=1)
    assert pr.precision == 0.5  # 0.5 and 3.9 lie on the real manifold, 10 and -2 do not
    assert pr.recall == 1.0  # every real point lies in the ball of 0.5 (radius 2.5) or of 3.9


def test_precision_recall_swap_and_mode_collapse():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(300, 2, generator=g)
    collapsed = 0.1 * torch.randn(300, 2, generator=g)  # all samples near one mode
    pr, rp = precision_recall(real, collapsed), precision_recall(collapsed, real)
    assert (pr.precision, pr.recall) == (rp.recall, rp.precision)
    assert pr.precision > 0.95 and pr.recall < 0.3  # faithful but not diverse
    assert precision_recall(real, collapsed, chunk=7) == pr


# ------------------------------------------------------------------------------ bad input
_bad = st.sampled_from([
    np.zeros((5,)), np.zeros((1, 3)), np.full((4, 3), np.nan), np.full((4, 3), np.inf), np.zeros((4, 0)),
    np.zeros((3, 2, 2)), "features", None, [[1.0, 2.0]],
])


@settings(max_examples=30, deadline=None)
@given(_bad, st.booleans())
def test_bad_features_are_value_errors(bad, first):
    good = np.random.default_rng(0).standard_normal((6, 3))
    args = (bad, good) if first else (good, bad)
    with pytest.raises(ValueError):
        frechet_distance(*args)
    with pytest.raises(ValueError):
        precision_recall(*args)


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.integers(-3, 0), st.floats(0.5, 2.5), st.booleans(), st.none()))
def test_bad_k_is_a_value_error(k):
    with pytest.raises(ValueError, match="k must"):
        precision_recall(np.zeros((5, 2)), np.zeros((5, 2)), k=k)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="same feature dimension"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="symmetric"):
        gaussian_frechet_distance([0, 0], [[1, 2], [0, 1]], [0, 0], np.eye(2))
    with pytest.raises(ValueError, match=r"sigma_b must have shape \(2, 2\)"):
        gaussian_frechet_distance([0, 0], np.eye(2), [0, 0], np.eye(3))
    with pytest.raises(ValueError, match="mu_a"):
        gaussian_frechet_distance(np.eye(2), np.eye(2), [0, 0], np.eye(2))
    with pytest.raises(ValueError, match="at least 4 rows"):
        precision_recall(np.zeros((3, 2)), np.zeros((9, 2)), k=3)
    with pytest.raises(ValueError, match="images"):
        fid(torch.zeros(4, 28, 28), torch.zeros(4, 1, 28, 28), feature_extractor=nn.Flatten())
    with pytest.raises(ValueError, match="feature_extractor"):
        fid(torch.zeros(4, 1, 2, 2), torch.zeros(4, 1, 2, 2), feature_extractor="inception")
    with pytest.raises(ValueError, match="NaN"):
        fid(torch.full((4, 1, 2, 2), float("nan")), torch.zeros(4, 1, 2, 2), feature_extractor=nn.Flatten())


# ------------------------------------------------------------------------------ our feature network
def test_mnist_feature_extractor_trains_once_then_loads_from_the_cache(tmp_path):
    net = mnist_feature_extractor(epochs=1, cache_dir=tmp_path)
    files = list(tmp_path.glob("mnist5k_features_*.pt"))
    assert len(files) == 1 and net.test_accuracy > 0.7 and not net.training
    again = mnist_feature_extractor(epochs=1, cache_dir=tmp_path)
    assert again.test_accuracy == net.test_accuracy
    for a, b in zip(net.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    from mlimaging.data import load_dataset

    test = load_dataset("mnist5k", split="test", seed=0)
    x = test.images[::3].float()  # the split is sorted by class: every third image, all classes
    fractions = class_fractions(x, net)
    assert sum(fractions) == pytest.approx(1.0) and len(fractions) == 10 and min(fractions) > 0.03
    # two halves of real digits are far closer in our features than digits and noise
    noise = torch.rand(167, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    real_real = fid(x[::2], x[1::2], feature_extractor=net.features)
    assert real_real < 0.2 * fid(x[1::2], noise, feature_extractor=net.features)
    with pytest.raises(ValueError, match="epochs"):
        mnist_feature_extractor(epochs=0, cache_dir=tmp_path)

"""Tests for mlimaging.registration.losses: equal to mlimaging.metrics, local NCC, oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy import ndimage as ndi

from mlimaging.metrics import mutual_information, ncc, normalized_mutual_information, sad, ssd
from mlimaging.registration import (
    LOSSES,
    SimilarityLoss,
    local_ncc_loss,
    mi_loss,
    ncc_loss,
    nmi_loss,
    sad_loss,
    similarity_loss,
    ssd_loss,
)


def _pair(shape=(24, 20), seed=0):
    rng = np.random.default_rng(seed)
    x = ndi.gaussian_filter(rng.standard_normal(shape), 2)
    y = np.sin(2 * x / x.std()) + 0.1 * rng.standard_normal(shape)
    return x, y


# --------------------------------------------------------------------------- same definitions as metrics
@pytest.mark.parametrize("as_torch", [False, True])
def test_global_losses_equal_metrics(as_torch):
    x, y = _pair()
    a, b = (torch.tensor(x), torch.tensor(y)) if as_torch else (x, y)
    kw = {"bins": 16, "parzen_sigma": 0.3}
    assert_allclose(float(ssd_loss(a, b)), ssd(x, y) if not as_torch else float(ssd(a, b)), rtol=1e-12)
    assert_allclose(float(sad_loss(a, b)), float(sad(a, b)), rtol=1e-12)
    assert_allclose(float(ncc_loss(a, b)), 1 - float(ncc(a, b)), rtol=1e-12)
    est = {"estimator": "parzen" if as_torch else "histogram"}  # the losses' choice
    assert_allclose(float(mi_loss(a, b, **kw)), -float(mutual_information(a, b, **kw, **est)), rtol=1e-12)
    assert_allclose(float(nmi_loss(a, b, **kw)), 2 - float(normalized_mutual_information(a, b, **kw, **est)),
                    rtol=1e-12)
    out = nmi_loss(a, b)
    assert isinstance(out, torch.Tensor) if as_torch else isinstance(out, float)


def test_masked_losses_use_only_selected_voxels():
    x, y = _pair(seed=1)
    mask = np.zeros(x.shape, bool)
    mask[3:15, 2:11] = True
    for name, fn in LOSSES.items():
        if name == "lncc":
            continue
        masked = float(fn(torch.tensor(x), torch.tensor(y), mask=torch.tensor(mask)))
        assert_allclose(masked, float(fn(torch.tensor(x[mask]), torch.tensor(y[mask]))), rtol=1e-12, err_msg=name)
    # voxels outside the mask do not matter
    y2 = y.copy()
    y2[~mask] = 100.0
    assert_allclose(ssd_loss(x, y2, mask=mask), ssd_loss(x, y, mask=mask))


def test_worked_example_from_the_course():
    im1 = np.array([1, 2, 2, 1, 2, 1, 3, 5, 4, 1])
    im2 = np.array([1, 2, 1, 1, 0, 1, 2, 1, 2, 1])
    assert_allclose(ssd_loss(im1, im2), 26 / 10)
    assert_allclose(sad_loss(im1, im2), 10 / 10)
    assert_allclose(ncc_loss(im1, im2), 1 - 0.326637, atol=1e-6)
    assert nmi_loss(im1, im1) == 0.0  # NMI(x, x) = 2


def test_losses_are_minimal_at_alignment_and_differentiable():
    x, _ = _pair((32, 32), seed=2)
    y = np.cos(3 * x / x.std())  # a non-monotonic remapping: same geometry, another "modality"
    fixed = torch.tensor(x)
    for name in ("ssd", "ncc", "lncc"):
        aligned = float(LOSSES[name](fixed, torch.tensor(x)))
        shifted = float(LOSSES[name](fixed, torch.tensor(np.roll(x, 3, axis=0))))
        assert aligned < shifted - 1e-3, name
    for name in ("mi", "nmi"):
        aligned = float(LOSSES[name](fixed, torch.tensor(y)))
        shifted = float(LOSSES[name](fixed, torch.tensor(np.roll(y, 3, axis=0))))
        assert aligned < shifted - 1e-3, name
    for name, fn in LOSSES.items():
        m = torch.tensor(y, requires_grad=True)
        fn(fixed, m).backward()
        assert m.grad is not None and torch.isfinite(m.grad).all() and m.grad.abs().sum() > 0, name


# --------------------------------------------------------------------------- local NCC
def _local_ncc_loop(x, y, w):
    values = []
    for i in range(x.shape[0] - w + 1):
        for j in range(x.shape[1] - w + 1):
            values.append(np.corrcoef(x[i:i + w, j:j + w].ravel(), y[i:i + w, j:j + w].ravel())[0, 1])
    return 1 - np.mean(values)


def test_local_ncc_matches_a_loop_over_windows():
    x, y = _pair((14, 12), seed=3)
    assert_allclose(local_ncc_loss(x, y, window=5), _local_ncc_loop(x, y, 5), rtol=1e-10)
    assert_allclose(float(local_ncc_loss(torch.tensor(x), torch.tensor(y), window=4)), _local_ncc_loop(x, y, 4),
                    rtol=1e-10)


def test_local_ncc_whole_image_window_is_global_ncc():
    x, y = _pair((12, 12), seed=4)
    assert_allclose(local_ncc_loss(x, y, window=12), ncc_loss(x, y), rtol=1e-10)
    x3 = np.random.default_rng(0).random((8, 9, 10))
    y3 = x3 + 0.3 * np.random.default_rng(1).random((8, 9, 10))
    assert_allclose(local_ncc_loss(x3, y3, window=8)
                    , np.mean([ncc_loss(x3[:, j:j + 8, k:k + 8], y3[:, j:j + 8, k:k + 8])
                               for j in range(2) for k in range(3)]), rtol=1e-10)


def test_local_ncc_invariances():
    x, _ = _pair((20, 20), seed=5)
    ramp = np.linspace(1, 3, 20)[:, None] * np.ones((1, 20))
    # invariant to a positive linear change per window: a slow multiplicative bias barely matters
    assert local_ncc_loss(x, 2 * x + 5, window=5) < 1e-10
    assert local_ncc_loss(x, x * ramp, window=5) < 0.05
    assert ncc_loss(x, x * ramp) > 2 * local_ncc_loss(x, x * ramp, window=5)
    # a constant window counts as zero correlation, as in ncc
    flat = x.copy()
    flat[:8, :8] = 1.0
    # 4 x 4 of the 16 x 16 windows lie in the constant block; every other one correlates 1
    assert_allclose(local_ncc_loss(flat, flat, window=5), 16 / 256, atol=1e-12)


def test_local_ncc_batches():
    x = torch.rand(2, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    y = torch.rand(2, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    assert_allclose(float(local_ncc_loss(x, y, window=3)),
                    np.mean([float(local_ncc_loss(x[k, 0], y[k, 0], window=3)) for k in range(2)]), rtol=1e-6)


# --------------------------------------------------------------------------- oracles (SimpleITK metrics)
def _itk_metric(fixed, moving, configure):
    sitk = pytest.importorskip("SimpleITK")
    reg = sitk.ImageRegistrationMethod()
    configure(reg)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(sitk.TranslationTransform(fixed.ndim))
    return reg.MetricEvaluate(sitk.GetImageFromArray(fixed), sitk.GetImageFromArray(moving))


def test_ssd_and_ncc_match_simpleitk_metrics():
    x, y = _pair((20, 22), seed=6)
    mean_squares = _itk_metric(x, y, lambda r: r.SetMetricAsMeanSquares())
    assert_allclose(ssd_loss(x, y), mean_squares, rtol=1e-6)
    # ITK's Correlation metric is -NCC^2
    correlation = _itk_metric(x, y, lambda r: r.SetMetricAsCorrelation())
    assert_allclose(-(1 - ncc_loss(x, y)) ** 2, correlation, rtol=1e-6)


# --------------------------------------------------------------------------- module and errors
def test_module_and_names():
    x, y = _pair()
    loss = SimilarityLoss("nmi", bins=16)
    assert "nmi" in repr(loss) and "bins=16" in repr(loss)
    assert_allclose(float(loss(torch.tensor(x), torch.tensor(y))), float(nmi_loss(torch.tensor(x), torch.tensor(y),
                                                                                    bins=16)))
    assert similarity_loss("sad") is sad_loss
    with pytest.raises(ValueError, match="metric"):
        similarity_loss("dice")


def test_bad_inputs():
    x, y = _pair((10, 10))
    with pytest.raises(ValueError, match="mask"):
        ssd_loss(x, y, mask=np.ones((10, 10)))
    with pytest.raises(ValueError, match="mask"):
        ssd_loss(x, y, mask=np.ones((3, 3), bool))
    with pytest.raises(ValueError, match="overlap"):
        ssd_loss(x, y, mask=np.zeros((10, 10), bool))
    with pytest.raises(ValueError, match="window"):
        local_ncc_loss(x, y, window=11)
    with pytest.raises(ValueError, match="fixed"):
        local_ncc_loss(np.zeros(10), np.zeros(10))
    with pytest.raises(ValueError, match="same shape"):
        ncc_loss(x, y[:5])
    with pytest.raises(ValueError, match="NaN"):
        nmi_loss(np.full((4, 4), np.nan), y[:4, :4])

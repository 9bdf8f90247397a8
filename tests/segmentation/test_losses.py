"""Soft Dice, cross-entropy and Dice + CE: worked examples, MONAI oracle, gradients, errors."""

from __future__ import annotations

import doctest
import importlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from sklearn.metrics import f1_score

from mlimaging.segmentation.losses import (
    DiceCELoss,
    DiceLoss,
    cross_entropy,
    dice_ce_loss,
    dice_loss,
)


@pytest.fixture(scope="module")
def monai_losses():
    """MONAI's losses, the oracle: only the tests that compare with it skip when it is missing."""
    return pytest.importorskip("monai.losses")


def _data(shape, k, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], k, *shape[1:], generator=g, dtype=dtype)
    target = torch.randint(0, k, shape, generator=g)
    return logits, target


def _onehot(target, k):
    return F.one_hot(target, k).movedim(-1, 1).float()


def test_course_worked_example_dice_08():
    """A 4x4 mask of 4 pixels and a prediction of 6 pixels sharing 4: Dice = 8/10 = 0.8."""
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3] = 1
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    pred[0, 1:3, 1:4] = 1
    loss = dice_loss(_onehot(pred, 2), target, softmax=False, smooth=0.0)
    assert loss.item() == pytest.approx(1 - 0.8)
    # with the background (10 of 12 pixels shared, 12 + 10): mean of 0.8 and 20/22
    both = dice_loss(_onehot(pred, 2), target, softmax=False, smooth=0.0, include_background=True)
    assert both.item() == pytest.approx(1 - (0.8 + 20 / 22) / 2)


def test_hard_dice_loss_is_one_minus_mean_f1():
    """On one-hot predictions, D = F1 per class (scikit-learn), averaged over classes."""
    logits, target = _data((1, 9, 7), 4, seed=3)
    pred = logits.argmax(1)
    loss = dice_loss(_onehot(pred, 4), target, softmax=False, smooth=0.0, include_background=True)
    f1 = f1_score(target.flatten().numpy(), pred.flatten().numpy(), average=None, labels=range(4))
    assert loss.item() == pytest.approx(1 - np.mean(f1), abs=1e-6)


@pytest.mark.parametrize("shape", [(2, 6, 5), (3, 4, 3, 5)])  # 2D and 3D label maps
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("smooth", [1e-5, 0.5])
def test_dice_loss_matches_monai(shape, include_background, smooth, monai_losses):
    logits, target = _data(shape, 4, seed=len(shape))
    ours = dice_loss(logits, target, include_background=include_background, smooth=smooth)
    oracle = monai_losses.DiceLoss(to_onehot_y=True, softmax=True,
                                   include_background=include_background,
                                   smooth_nr=smooth, smooth_dr=smooth, batch=False)
    ref = oracle(logits, target[:, None])
    assert_allclose(ours.item(), ref.item(), rtol=1e-6, atol=1e-7)
    # the (B, 1, *spatial) target form gives the same
    assert dice_loss(logits, target[:, None], include_background=include_background,
                     smooth=smooth).item() == ours.item()


def test_dice_loss_on_probabilities_matches_monai(monai_losses):
    logits, target = _data((2, 5, 5), 3, seed=7)
    probs = torch.softmax(logits, 1)
    ours = dice_loss(probs, target, softmax=False, include_background=True)
    ref = monai_losses.DiceLoss(to_onehot_y=True, softmax=False, include_background=True)(
        probs, target[:, None])
    assert_allclose(ours.item(), ref.item(), rtol=1e-6)
    assert_allclose(ours.item(), dice_loss(logits, target, include_background=True).item(),
                    rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 6, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("include_background", [True, False])
def test_dice_ce_loss_matches_monai(shape, include_background, monai_losses):
    logits, target = _data(shape, 3, seed=11)
    ours = dice_ce_loss(logits, target, include_background=include_background,
                        lambda_dice=0.7, lambda_ce=1.3)
    ref = monai_losses.DiceCELoss(to_onehot_y=True, softmax=True,
                                  include_background=include_background,
                                  lambda_dice=0.7, lambda_ce=1.3)(logits, target[:, None])
    assert_allclose(ours.item(), ref.item(), rtol=1e-6)
    module = DiceCELoss(include_background=include_background, lambda_dice=0.7, lambda_ce=1.3)
    assert module(logits, target).item() == ours.item()


def test_perfect_prediction_gives_zero_even_with_absent_classes():
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    target[0, 2:5, 2:6] = 1
    target[1, 0:3, :] = 2  # class 1 absent from image 1, class 2 absent from image 0
    logits = 40.0 * _onehot(target, 3)
    for include_background in (True, False):
        assert dice_loss(logits, target, include_background=include_background).item() < 1e-6
        assert DiceLoss(include_background=include_background)(logits, target).item() < 1e-6
    assert dice_ce_loss(logits, target).item() < 1e-6


def test_worst_prediction_gives_nearly_one():
    target = torch.ones(1, 6, 6, dtype=torch.long)
    logits = 40.0 * _onehot(torch.zeros_like(target), 2)  # all background
    assert dice_loss(logits, target).item() == pytest.approx(1.0, abs=1e-5)


def test_gradcheck_float64():
    logits, target = _data((2, 3, 4), 3, seed=5, dtype=torch.float64)
    logits.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: dice_loss(z, target), (logits,))
    assert torch.autograd.gradcheck(
        lambda z: dice_ce_loss(z, target, include_background=True, lambda_ce=0.5), (logits,))
    probs = torch.rand(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda p: dice_loss(p, target[:1, :3, :3] % 2, softmax=False, smooth=0.1), (probs,))


def test_cross_entropy_is_torch_cross_entropy_with_weights():
    logits, target = _data((2, 5, 4), 3, seed=9)
    w = torch.tensor([0.2, 1.0, 3.0])
    assert cross_entropy(logits, target).item() == F.cross_entropy(logits, target).item()
    assert_allclose(cross_entropy(logits, target[:, None], weight=w).item(),
                    F.cross_entropy(logits, target, weight=w).item(), rtol=1e-6)
    loss = DiceCELoss(lambda_dice=0.0, weight=w)
    assert_allclose(loss(logits, target).item(), F.cross_entropy(logits, target, weight=w).item(),
                    rtol=1e-6)
    loss = loss.to(torch.float64)  # the weight is a buffer: it follows .to()
    assert loss.weight.dtype == torch.float64
    assert loss(logits.double(), target).dtype == torch.float64


def test_float_targets_with_whole_numbers_are_accepted():
    logits, target = _data((1, 4, 4), 3, seed=2)
    assert dice_loss(logits, target.float()).item() == dice_loss(logits, target).item()


def test_errors():
    logits, target = _data((1, 4, 4), 3)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\)"):
        dice_loss(logits, target + 1)
    with pytest.raises(ValueError, match="target must have shape"):
        dice_loss(logits, target[:, :3])
    with pytest.raises(ValueError, match="integer"):
        dice_loss(logits, target.float() + 0.5)
    with pytest.raises(ValueError, match="logits"):
        dice_loss(logits[:, :, 0, 0], target)
    with pytest.raises(ValueError, match="at least 2 classes"):
        dice_loss(logits[:, :1], torch.zeros_like(target))
    with pytest.raises(ValueError, match="smooth"):
        dice_loss(logits, target, smooth=-1.0)
    with pytest.raises(ValueError, match="lambda_ce"):
        dice_ce_loss(logits, target, lambda_ce=-1.0)
    with pytest.raises(ValueError, match="weight"):
        cross_entropy(logits, target, weight=torch.ones(2))
    with pytest.raises(ValueError, match="target"):
        dice_loss(logits, target.numpy())


@settings(max_examples=30, deadline=None)
@given(k=st.integers(2, 4), h=st.integers(1, 5), w=st.integers(1, 5), b=st.integers(1, 3),
       include_background=st.booleans(), seed=st.integers(0, 10_000))
def test_dice_loss_is_in_unit_interval_and_permutation_invariant(k, h, w, b, include_background,
                                                                  seed):
    logits, target = _data((b, h, w), k, seed=seed)
    loss = dice_loss(logits, target, include_background=include_background)
    assert 0.0 <= loss.item() <= 1.0 + 1e-6
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(seed))
    shuffled = dice_loss(logits.flatten(2)[..., perm].reshape(logits.shape),
                         target.flatten(1)[:, perm].reshape(target.shape),
                         include_background=include_background)
    assert_allclose(shuffled.item(), loss.item(), rtol=1e-5, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(k=st.integers(2, 4), h=st.integers(1, 5), w=st.integers(1, 5), b=st.integers(1, 3),
       include_background=st.booleans(), seed=st.integers(0, 10_000))
def test_dice_loss_matches_monai_on_random_shapes(k, h, w, b, include_background, seed, monai_losses):
    logits, target = _data((b, h, w), k, seed=seed)
    loss = dice_loss(logits, target, include_background=include_background)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = monai_losses.DiceLoss(to_onehot_y=True, softmax=True,
                                    include_background=include_background)(logits, target[:, None])
    assert_allclose(loss.item(), ref.item(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("module", ["mlimaging.segmentation.losses"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

"""Tests for mlimaging.metrics.overlap: worked example, invariants, MONAI/MedPy oracles, empty masks."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.testing import assert_allclose

from mlimaging.metrics import dice, f1_score, jaccard, volume_similarity


def test_worked_4x4_example_dice_08():
    # A: 2x2 block (4 pixels); B: 2x3 block containing A (6 pixels). |A ∩ B| = 4.
    a = np.zeros((4, 4), dtype=np.uint8)
    b = np.zeros((4, 4), dtype=np.uint8)
    a[:2, :2] = 1
    b[:2, :3] = 1
    assert dice(a, b) == pytest.approx(2 * 4 / (4 + 6)) == pytest.approx(0.8)
    assert jaccard(a, b) == pytest.approx(4 / 6)
    assert volume_similarity(a, b) == pytest.approx(1 - 2 / 10) == pytest.approx(0.8)
    assert isinstance(dice(a, b), float)
    # torch in, float out, same values
    assert dice(torch.from_numpy(a), torch.from_numpy(b).bool()) == pytest.approx(0.8)


def test_volume_similarity_ignores_position():
    a = np.zeros((3, 4), bool)
    b = np.zeros((3, 4), bool)
    a[0, :2] = True
    b[2, 2:] = True  # disjoint, same size
    assert dice(a, b) == 0.0
    assert volume_similarity(a, b) == 1.0


def test_empty_masks():
    z = np.zeros((3, 3, 3), bool)
    o = z.copy()
    o[1, 1, 1] = True
    for f in (dice, jaccard, volume_similarity):
        assert f(z, z) == 1.0
        assert f(z, z, zero_division=0.0) == 0.0
        assert np.isnan(f(z, z, zero_division=np.nan))
        assert f(z, o) == 0.0
        assert f(o, z) == 0.0
        assert f(o, o) == 1.0


masks = st.integers(1, 3).flatmap(
    lambda nd: st.tuples(*[st.integers(1, 5)] * nd).flatmap(
        lambda shape: st.tuples(arrays(np.bool_, shape), arrays(np.bool_, shape))
    )
)


@settings(max_examples=50, deadline=None)
@given(pair=masks)
def test_invariants(pair):
    a, b = pair
    d, j, vs = dice(a, b), jaccard(a, b), volume_similarity(a, b)
    assert 0.0 <= j <= d <= vs <= 1.0
    assert d == pytest.approx(2 * j / (1 + j))
    assert d == pytest.approx(f1_score(a.ravel(), b.ravel(), num_classes=2, zero_division=1.0))
    assert d == pytest.approx(dice(b, a))
    assert j == pytest.approx(jaccard(b, a))
    # VS = Dice exactly when one mask contains the other
    if (a <= b).all() or (b <= a).all():
        assert vs == pytest.approx(d)
    # complement: the Dice of background equals the F1 of class 0
    assert dice(~a, ~b) == pytest.approx(
        f1_score(a.ravel(), b.ravel(), num_classes=2, pos_label=0, zero_division=1.0)
    )


@pytest.mark.parametrize("seed", range(4))
def test_oracle_medpy(seed):
    mp = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(seed)
    shape = (8, 9) if seed % 2 else (5, 6, 4)
    a = rng.random(shape) < 0.3
    b = rng.random(shape) < 0.4
    assert_allclose(dice(a, b), mp.dc(a, b))
    assert_allclose(jaccard(a, b), mp.jc(a, b))


@pytest.mark.parametrize("seed", range(4))
def test_oracle_monai(seed):
    pytest.importorskip("monai")
    from monai.metrics import DiceMetric, compute_dice

    rng = np.random.default_rng(10 + seed)
    # batch of 3 one-channel 2D masks; the target of item 2 is empty
    pred = rng.random((3, 1, 7, 6)) < 0.4
    target = rng.random((3, 1, 7, 6)) < 0.4
    target[2] = False
    ours = [dice(pred[i, 0], target[i, 0]) for i in range(3)]
    tp, tt = torch.from_numpy(pred).float(), torch.from_numpy(target).float()
    # ignore_empty=False: empty target gives 1.0 if pred also empty else 0.0 (our policy)
    ref = compute_dice(tp, tt, include_background=True, ignore_empty=False).numpy()[:, 0]
    assert_allclose(ours, ref, rtol=1e-6)
    # default ignore_empty=True: NaN for an empty target (we never return NaN by default)
    ref_default = compute_dice(tp, tt, include_background=True).numpy()[:, 0]
    assert np.isnan(ref_default[2])
    assert_allclose(ours[:2], ref_default[:2], rtol=1e-6)
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    metric(tp, tt)
    assert_allclose(ours, metric.aggregate().numpy()[:, 0], rtol=1e-6)


def test_inputs_not_modified_and_any_dtype():
    a = np.array([[0, 1], [1, 1]], dtype=np.float32)
    b = np.array([[1, 1], [0, 0]], dtype=np.int64)
    a0, b0 = a.copy(), b.copy()
    assert dice(a, b) == pytest.approx(2 * 1 / 5)
    np.testing.assert_array_equal(a, a0)
    np.testing.assert_array_equal(b, b0)


@settings(max_examples=30, deadline=None)
@given(
    bad=st.sampled_from([2, -1, 0.5, np.nan]),
    which=st.sampled_from(["pred", "target"]),
    f=st.sampled_from([dice, jaccard, volume_similarity]),
)
def test_bad_values_raise_naming_argument(bad, which, f):
    good = np.zeros((3, 3))
    arr = good.copy()
    arr[1, 2] = bad
    args = (arr, good) if which == "pred" else (good, arr)
    with pytest.raises(ValueError, match=which):
        f(*args)


@settings(max_examples=25, deadline=None)
@given(s1=st.tuples(st.integers(1, 4), st.integers(1, 4)), s2=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_shape_mismatch_raises(s1, s2):
    if s1 == s2:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="same shape"):
            dice(np.zeros(s1), np.zeros(s2))


# --------------------------------------------------------------------------- mean Dice
def test_mean_dice_worked_examples():
    from mlimaging.metrics import mean_dice

    target = np.array([[0, 1, 1, 2]])
    assert mean_dice(np.array([[0, 1, 2, 2]]), target) == pytest.approx(2 / 3)  # 2/3 and 2/3
    assert mean_dice(np.array([[0, 1, 1, 0]]), target) == 0.5  # label 2 missed: (1 + 0) / 2
    assert mean_dice(np.array([[3, 1, 1, 2]]), target) == pytest.approx(2 / 3)  # label 3 hallucinated: 0
    assert mean_dice(np.array([[3, 1, 1, 2]]), target, labels=[1, 2]) == 1.0  # only the labels asked for
    assert mean_dice(np.zeros((2, 2), int), np.zeros((2, 2), int)) == 1.0  # nothing to find, nothing found
    assert mean_dice(torch.tensor([[0, 1, 2, 2]]), torch.tensor([[0, 1, 1, 2]])) == pytest.approx(2 / 3)


@settings(max_examples=40, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 9)), elements=st.integers(0, 4)),
       st.integers(0, 2**31 - 1))
def test_mean_dice_is_the_mean_of_per_label_dice(target, seed):
    from mlimaging.metrics import mean_dice

    rng = np.random.default_rng(seed)
    pred = np.where(rng.random(target.shape) < 0.7, target, rng.integers(0, 5, target.shape))
    labels = sorted(set(np.unique(pred).tolist() + np.unique(target).tolist()) - {0})
    expected = np.mean([dice(pred == k, target == k) for k in labels]) if labels else 1.0
    assert mean_dice(pred, target) == pytest.approx(expected, rel=1e-12)
    big = 70_000  # large label values take the np.unique path: same result
    assert mean_dice(np.where(pred > 0, pred + big, 0), np.where(target > 0, target + big, 0)) == pytest.approx(
        expected, rel=1e-12)


def test_mean_dice_bad_inputs():
    from mlimaging.metrics import mean_dice

    a = np.array([[0, 1], [2, 2]])
    with pytest.raises(ValueError, match="same shape"):
        mean_dice(a, a[:1])
    with pytest.raises(ValueError, match=r"labels: 5 found in neither"):
        mean_dice(a, a, labels=[1, 5])
    for bad in ([0], [1, 1], [], [1.5], [True]):
        with pytest.raises(ValueError, match="labels"):
            mean_dice(a, a, labels=bad)
    with pytest.raises(ValueError, match=r"pred must hold labels >= 0"):
        mean_dice(-a, a)


def test_one_empty_mask_policy_for_overlap_and_distances():
    """The same policy from every entry point (metrics/_empty.py)."""
    from mlimaging.metrics import evaluate_segmentation, hausdorff_distance, mean_dice

    empty = np.zeros((4, 5), dtype=int)
    full = empty.copy()
    full[1:3, 1:4] = 1
    diagonal = math.hypot(4, 5)
    for f in (dice, jaccard, volume_similarity):
        assert f(empty, empty) == 1.0 and f(full, empty) == 0.0 and f(empty, full) == 0.0
        assert f(empty, empty, zero_division=0.5) == 0.5
    assert hausdorff_distance(empty, empty) == 0.0 and hausdorff_distance(full, empty) == diagonal
    assert mean_dice(empty, full) == 0.0
    with pytest.warns(UserWarning, match="only in target"):
        res = evaluate_segmentation([empty, full], [full, full], labels=[1],
                                    metrics=("dice", "precision", "recall", "hd"))
    missed = res.rows[0]
    assert (missed["dice"], missed["precision"], missed["recall"], missed["hd"]) == (0.0, 0.0, 0.0, diagonal)

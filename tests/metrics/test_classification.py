"""Tests for mlimaging.metrics.classification: worked examples, invariants, sklearn/MedPy oracles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from mlimaging.metrics import (
    accuracy,
    confusion_matrix,
    f1_score,
    precision,
    recall,
    specificity,
)

SCORES = {"precision": precision, "recall": recall, "specificity": specificity, "f1": f1_score}

# A 2x2 example worked by hand: TP=3, FN=1, FP=2, TN=4 (N=10).
TARGET_2 = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
PRED_2 = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])


def test_worked_binary_example():
    tp, fn, fp, tn = 3, 1, 2, 4
    assert_array_equal(confusion_matrix(PRED_2, TARGET_2), [[tn, fp], [fn, tp]])
    sens = tp / (tp + fn)  # 0.75
    spec = tn / (tn + fp)  # 2/3
    prec = tp / (tp + fp)  # 0.6
    assert recall(PRED_2, TARGET_2) == pytest.approx(0.75) == pytest.approx(sens)
    assert specificity(PRED_2, TARGET_2) == pytest.approx(2 / 3) == pytest.approx(spec)
    assert precision(PRED_2, TARGET_2) == pytest.approx(0.6) == pytest.approx(prec)
    assert f1_score(PRED_2, TARGET_2) == pytest.approx(2 * prec * sens / (prec + sens))
    assert f1_score(PRED_2, TARGET_2) == pytest.approx(2 / 3)
    assert accuracy(PRED_2, TARGET_2) == pytest.approx((tp + tn) / 10) == pytest.approx(0.7)
    # pos_label=0 swaps the roles: specificity of class 1 is the recall of class 0.
    assert recall(PRED_2, TARGET_2, pos_label=0) == pytest.approx(spec)
    assert specificity(PRED_2, TARGET_2, pos_label=0) == pytest.approx(sens)
    assert precision(PRED_2, TARGET_2, pos_label=0) == pytest.approx(tn / (tn + fn))


def test_worked_multiclass_example():
    target = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(pred, target)
    assert cm.dtype == np.int64
    assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    # class 0: TP=1 FP=1 FN=1 TN=3; class 1: TP=2 FP=1 FN=0 TN=3; class 2: TP=1 FP=0 FN=1 TN=4
    assert_allclose(precision(pred, target, average=None), [1 / 2, 2 / 3, 1])
    assert_allclose(recall(pred, target, average=None), [1 / 2, 1, 1 / 2])
    assert_allclose(specificity(pred, target, average=None), [3 / 4, 3 / 4, 1])
    assert_allclose(f1_score(pred, target, average=None), [2 / 4, 4 / 5, 2 / 3])
    assert precision(pred, target, average="macro") == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    assert specificity(pred, target, average="micro") == pytest.approx(10 / 12)
    for f in (precision, recall, f1_score):
        assert f(pred, target, average="micro") == pytest.approx(4 / 6)
    assert accuracy(pred, target) == pytest.approx(4 / 6)


def test_scores_are_argmaxed_numpy_and_torch():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 4))
    target = rng.integers(0, 4, size=20)
    labels = logits.argmax(1)
    cm = confusion_matrix(labels, target, num_classes=4)
    assert_array_equal(confusion_matrix(logits, target), cm)
    assert_array_equal(confusion_matrix(torch.from_numpy(logits), torch.from_numpy(target)), cm)
    assert accuracy(torch.from_numpy(logits).float(), target) == accuracy(labels, target)
    # segmentation-shaped scores (B, K, H, W) against (B, H, W)
    seg_logits = rng.normal(size=(2, 3, 4, 5))
    seg_target = rng.integers(0, 3, size=(2, 4, 5))
    assert_array_equal(
        confusion_matrix(seg_logits, seg_target), confusion_matrix(seg_logits.argmax(1), seg_target, num_classes=3)
    )
    # score columns fix the number of classes even if the top classes are never predicted
    assert confusion_matrix(np.array([[1.0, 0, 0]]), [0]).shape == (3, 3)


def test_zero_division_values():
    target = np.array([0, 0, 0, 1])
    pred = np.array([0, 0, 0, 0])  # class 1 never predicted: precision is 0/0
    assert precision(pred, target) == 0.0
    assert precision(pred, target, zero_division=1.0) == 1.0
    assert np.isnan(precision(pred, target, zero_division=np.nan))
    assert recall(pred, target) == 0.0  # 0/1, not a zero division
    assert f1_score(pred, target, zero_division=1.0) == 0.0  # 2TP+FP+FN = 1
    # class 2 is absent from both: counted in the macro mean with zero_division, left out if nan
    assert recall(pred, target, average=None, num_classes=3, zero_division=1.0)[2] == 1.0
    assert recall(pred, target, average="macro", num_classes=3) == pytest.approx((1 + 0 + 0) / 3)
    assert recall(pred, target, average="macro", num_classes=3, zero_division=np.nan) == pytest.approx(0.5)


def _sk_specificity(pred, target, k, average, zero_division):
    from sklearn.metrics import multilabel_confusion_matrix

    mcm = multilabel_confusion_matrix(target, pred, labels=np.arange(k))
    tn, fp = mcm[:, 0, 0].astype(float), mcm[:, 0, 1].astype(float)
    if average == "micro":
        tn, fp = tn.sum(), fp.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), zero_division)
    if average is None or average == "micro":
        return s
    return np.nanmean(s) if not np.isnan(s).all() else np.nan


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("zero_division", [0.0, 1.0, np.nan])
def test_oracle_sklearn_multiclass(seed, zero_division):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    k = 5
    n = int(rng.integers(3, 30))
    # few classes actually used, so some classes are missing from pred and/or target
    target = rng.choice([0, 1, 3], size=n)
    pred = rng.choice([0, 1, 2, 3], size=n)
    labels = np.arange(k)
    assert_array_equal(confusion_matrix(pred, target, num_classes=k), sk.confusion_matrix(target, pred, labels=labels))
    assert accuracy(pred, target, num_classes=k) == pytest.approx(sk.accuracy_score(target, pred))
    sk_fns = {"precision": sk.precision_score, "recall": sk.recall_score, "f1": sk.f1_score}
    for average in ("macro", "micro", None):
        for name, ours in SCORES.items():
            got = ours(pred, target, average=average, num_classes=k, zero_division=zero_division)
            if name == "specificity":
                want = _sk_specificity(pred, target, k, average, zero_division)
            else:
                want = sk_fns[name](target, pred, average=average, labels=labels, zero_division=zero_division)
            assert_allclose(got, want, equal_nan=True, err_msg=f"{name} average={average}")


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pos_label", [0, 1])
def test_oracle_sklearn_binary(seed, pos_label):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(100 + seed)
    target = rng.integers(0, 2, size=15)
    pred = rng.integers(0, 2, size=15)
    if seed == 0:
        pred[:] = 1 - pos_label  # pos_label never predicted: zero division in precision
    for zd in (0.0, 1.0):
        kw = {"pos_label": pos_label, "zero_division": zd}
        assert precision(pred, target, **kw) == pytest.approx(sk.precision_score(target, pred, **kw))
        assert recall(pred, target, **kw) == pytest.approx(sk.recall_score(target, pred, **kw))
        assert f1_score(pred, target, **kw) == pytest.approx(sk.f1_score(target, pred, **kw))
        # specificity of pos_label = recall of the other class
        assert specificity(pred, target, **kw) == pytest.approx(
            sk.recall_score(target, pred, pos_label=1 - pos_label, zero_division=zd)
        )


@pytest.mark.parametrize("seed", range(4))
def test_oracle_medpy_binary_masks(seed):
    mp = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(200 + seed)
    shape = (6, 7) if seed % 2 else (4, 5, 3)
    target = rng.random(shape) < 0.4
    pred = rng.random(shape) < 0.5
    assert precision(pred, target) == pytest.approx(mp.precision(pred, target))
    assert recall(pred, target) == pytest.approx(mp.recall(pred, target))
    assert specificity(pred, target) == pytest.approx(mp.specificity(pred, target))
    assert recall(torch.from_numpy(pred), torch.from_numpy(target)) == pytest.approx(mp.sensitivity(pred, target))


labels_st = st.lists(st.integers(0, 4), min_size=1, max_size=30)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_micro_identities_and_ranges(data):
    target = np.array(data.draw(labels_st))
    pred = np.array(data.draw(st.lists(st.integers(0, 4), min_size=len(target), max_size=len(target))))
    acc = accuracy(pred, target)
    for f in (precision, recall, f1_score):
        assert f(pred, target, average="micro") == pytest.approx(acc)
    cm = confusion_matrix(pred, target)
    assert cm.sum() == len(target)
    assert_array_equal(cm.sum(axis=1), np.bincount(target, minlength=cm.shape[0]))
    assert_array_equal(cm.sum(axis=0), np.bincount(pred, minlength=cm.shape[0]))
    for f in SCORES.values():
        s = f(pred, target, average=None)
        assert s.shape == (cm.shape[0],)
        assert ((s >= 0) & (s <= 1)).all()
    # F1 is the harmonic mean of precision and recall where both are defined and positive
    p, r, f1 = (g(pred, target, average=None) for g in (precision, recall, f1_score))
    ok = (p > 0) & (r > 0)
    assert_allclose(f1[ok], 2 * p[ok] * r[ok] / (p[ok] + r[ok]))


@settings(max_examples=30, deadline=None)
@given(labels=labels_st)
def test_perfect_prediction(labels):
    y = np.array(labels)
    assert accuracy(y, y) == 1.0
    cm = confusion_matrix(y, y)
    assert_array_equal(cm, np.diag(np.diag(cm)))
    present = np.bincount(y) > 0
    assert_allclose(recall(y, y, average=None)[present], 1.0)
    assert f1_score(y, y, average="macro", zero_division=1.0) == 1.0


def test_inputs_are_not_modified():
    pred = np.array([[0.2, 0.8], [0.6, 0.4]])
    target = np.array([1, 1])
    before = pred.copy(), target.copy()
    f1_score(pred, target)
    assert_array_equal(pred, before[0])
    assert_array_equal(target, before[1])


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 10), extra=st.integers(1, 5))
def test_length_mismatch_raises(n, extra):
    with pytest.raises(ValueError, match="same length"):
        accuracy(np.zeros(n, int), np.zeros(n + extra, int))


@settings(max_examples=30, deadline=None)
@given(
    bad=st.one_of(st.integers(-100, -1), st.sampled_from([0.5, 1.25, np.nan, np.inf])),
    which=st.sampled_from(["pred", "target"]),
    pos=st.integers(0, 4),
)
def test_bad_label_values_raise_naming_argument(bad, which, pos):
    good = np.zeros(5)
    arr = good.copy()
    arr[pos] = bad
    args = (arr, good) if which == "pred" else (good, arr)
    with pytest.raises(ValueError, match=which):
        confusion_matrix(*args)


def test_other_bad_inputs():
    y = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(y, y, num_classes=2)
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix(y, y, num_classes=0)
    with pytest.raises(ValueError, match="binary"):
        precision(y, y)  # default average="binary" with 3 classes
    with pytest.raises(ValueError, match="average"):
        recall(y, y, average="weighted")
    with pytest.raises(ValueError, match="zero_division"):
        f1_score(y, y, average="macro", zero_division=2.0)
    with pytest.raises(ValueError, match="pos_label"):
        precision([0, 1], [1, 1], pos_label=2)
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="NaN"):
        confusion_matrix(np.array([[0.1, np.nan]]), [0])
    with pytest.raises(ValueError, match="scores"):
        confusion_matrix(np.zeros((3, 2)), np.zeros(4, int))
    with pytest.raises(ValueError, match="2 classes but num_classes=3"):
        confusion_matrix(np.zeros((3, 2)), np.zeros(3, int), num_classes=3)
    with pytest.raises(ValueError, match="target"):
        confusion_matrix(np.array(["a", "b"]), np.array(["a", "b"]))

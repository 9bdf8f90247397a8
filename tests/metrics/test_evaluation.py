"""Tests for mlimaging.metrics.evaluation (evaluate_segmentation and EvaluationResult)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from mlimaging.metrics import (
    dice,
    evaluate_segmentation,
    jaccard,
    precision,
    recall,
    specificity,
    volume_similarity,
)
from mlimaging.metrics.evaluation import METRICS

OVERLAP = ("dice", "jaccard", "volume_similarity", "precision", "recall", "specificity")
SURFACE = ("hd", "hd95", "assd", "asd", "rmssd")


def _example():
    """A 4x4 two-label case worked by hand below."""
    gt = np.array([[1, 1, 1, 0],
                   [1, 1, 1, 0],
                   [0, 0, 0, 0],
                   [0, 0, 2, 2]])
    pred = np.array([[1, 1, 0, 0],
                     [1, 1, 0, 0],
                     [0, 0, 0, 2],
                     [0, 0, 0, 2]])
    return pred, gt


def test_handcrafted_multilabel_example():
    pred, gt = _example()
    res = evaluate_segmentation([pred], [gt], metrics=OVERLAP)
    assert res.labels == (1, 2)
    assert res.metrics == OVERLAP
    assert len(res) == 2
    r1, r2 = res.rows
    # label 1: |A| = 4, |B| = 6, TP = 4, FP = 0, FN = 2, TN = 10
    assert (r1["case"], r1["label"], r1["pred_voxels"], r1["target_voxels"]) == ("case0", 1, 4, 6)
    assert not r1["pred_empty"] and not r1["target_empty"]
    assert r1["dice"] == pytest.approx(0.8)
    assert r1["jaccard"] == pytest.approx(4 / 6)
    assert r1["volume_similarity"] == pytest.approx(1 - 2 / 10)
    assert r1["precision"] == pytest.approx(1.0)
    assert r1["recall"] == pytest.approx(4 / 6)
    assert r1["specificity"] == pytest.approx(1.0)
    # label 2: |A| = 2, |B| = 2, TP = 1, FP = 1, FN = 1, TN = 13
    assert r2["dice"] == pytest.approx(0.5)
    assert r2["jaccard"] == pytest.approx(1 / 3)
    assert r2["volume_similarity"] == pytest.approx(1.0)
    assert r2["precision"] == pytest.approx(0.5)
    assert r2["recall"] == pytest.approx(0.5)
    assert r2["specificity"] == pytest.approx(13 / 14)
    assert list(r1) == ["case", "label", "pred_empty", "target_empty", "pred_voxels", "target_voxels", *OVERLAP]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), nd=st.sampled_from([2, 3]))
def test_rows_agree_with_single_case_functions(seed, nd):
    rng = np.random.default_rng(seed)
    shape = (5, 6) if nd == 2 else (3, 4, 5)
    gt = rng.integers(0, 4, size=shape)
    pred = rng.integers(0, 4, size=shape)
    res = evaluate_segmentation(pred, gt, metrics=OVERLAP, labels=[1, 2, 3])
    for r in res.rows:
        pm, tm = pred == r["label"], gt == r["label"]
        assert r["dice"] == pytest.approx(dice(pm, tm))
        assert r["jaccard"] == pytest.approx(jaccard(pm, tm))
        assert r["volume_similarity"] == pytest.approx(volume_similarity(pm, tm))
        both_empty = not pm.any() and not tm.any()
        zd = 1.0 if both_empty else 0.0
        assert r["precision"] == pytest.approx(precision(pm, tm, zero_division=zd))
        assert r["recall"] == pytest.approx(recall(pm, tm, zero_division=zd))
        assert r["specificity"] == pytest.approx(specificity(pm, tm, zero_division=1.0))


@pytest.mark.filterwarnings("ignore:pred and target hold different labels")
def test_summary_statistics_and_missed_structure_overlap():
    pred, gt = _example()
    missed = pred.copy()
    missed[missed == 2] = 0  # case1: pred lacks label 2
    res = evaluate_segmentation([pred, missed, gt], [gt, gt, gt], metrics=("dice", "recall"), names=["a", "b", "c"])
    assert res.cases == ("a", "b", "c")
    assert [r["case"] for r in res.rows] == ["a", "a", "b", "b", "c", "c"]
    row_b2 = res.rows[3]
    assert row_b2["pred_empty"] and not row_b2["target_empty"]
    assert row_b2["dice"] == 0.0 and row_b2["recall"] == 0.0
    summary = {(s["label"], s["metric"]): s for s in res.summary()}
    assert list(summary) == [(1, "dice"), (1, "recall"), (2, "dice"), (2, "recall")]
    d2 = summary[(2, "dice")]
    values = np.array([0.5, 0.0, 1.0])
    assert d2["n"] == 3 and d2["n_empty"] == 1 and d2["n_nan"] == 0  # the missed case is kept
    assert d2["mean"] == pytest.approx(values.mean())
    assert d2["std"] == pytest.approx(values.std())
    assert (d2["median"], d2["min"], d2["max"]) == (0.5, 0.0, 1.0)
    assert summary[(1, "dice")]["n_empty"] == 0
    assert_allclose(res.values("dice", 2), values)


@pytest.mark.filterwarnings("ignore:pred and target hold different labels")
def test_missed_structure_distance_is_image_diagonal():
    pred, gt = _example()
    missed = pred.copy()
    missed[missed == 2] = 0
    spacing = (2.0, 1.0)
    res = evaluate_segmentation([pred, missed], [gt, gt], spacing=spacing, metrics=("dice", *SURFACE))
    diag = math.hypot(4 * 2.0, 4 * 1.0)
    row = res.rows[3]
    assert (row["case"], row["label"], row["pred_empty"]) == ("case1", 2, True)
    for m in SURFACE:
        assert row[m] == pytest.approx(diag), m
    s = {(x["label"], x["metric"]): x for x in res.summary()}
    assert s[(2, "hd")]["n_empty"] == 1
    assert s[(2, "hd")]["max"] == pytest.approx(diag)
    # empty_distance=nan: the case is still counted and the mean becomes nan
    res_nan = evaluate_segmentation([pred, missed], [gt, gt], spacing=spacing, metrics=("hd95",),
                                    empty_distance=float("nan"))
    s_nan = {(x["label"], x["metric"]): x for x in res_nan.summary()}[(2, "hd95")]
    assert s_nan["n"] == 2 and s_nan["n_nan"] == 1 and math.isnan(s_nan["mean"])
    # explicit empty_distance
    res_100 = evaluate_segmentation([missed], [gt], metrics=("hd",), empty_distance=100.0)
    assert res_100.rows[1]["hd"] == 100.0


def test_surface_metrics_match_single_case_functions_and_hand_values():
    from mlimaging.metrics import average_surface_distance, hausdorff_distance, rms_surface_distance

    gt = np.zeros((12, 12), dtype=np.int64)
    gt[3:8, 3:8] = 1
    pred = np.roll(gt, 2, axis=1)  # the square moved by 2 columns
    res = evaluate_segmentation(pred, gt, metrics=SURFACE, spacing=(1.0, 1.5))
    row = res.rows[0]
    # every boundary point is at most 2 columns = 3 mm from the other boundary; the far
    # sides are exactly 3 mm apart
    assert row["hd"] == pytest.approx(3.0)
    pm, tm = pred == 1, gt == 1
    kw = {"spacing": (1.0, 1.5)}
    assert row["hd"] == pytest.approx(hausdorff_distance(pm, tm, **kw))
    assert row["hd95"] == pytest.approx(hausdorff_distance(pm, tm, percentile=95.0, **kw))
    assert row["assd"] == pytest.approx(average_surface_distance(pm, tm, **kw))
    assert row["asd"] == pytest.approx(average_surface_distance(pm, tm, symmetric=False, **kw))
    assert row["rmssd"] == pytest.approx(rms_surface_distance(pm, tm, **kw))
    assert 0 < row["assd"] <= row["rmssd"] <= row["hd"]


@pytest.mark.filterwarnings("ignore:pred and target hold different labels")
def test_per_case_spacing_scales_distances():
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[2:6, 2:6] = 1
    pred = np.roll(gt, 1, axis=0)
    res = evaluate_segmentation([pred, pred, np.zeros_like(gt)], [gt, gt, gt],
                                spacing=[(1.0, 1.0), (2.0, 2.0), (3.0, 0.5)], metrics=("hd", "assd"))
    r0, r1, r2 = res.rows
    assert r0["hd"] == pytest.approx(1.0)
    assert r1["hd"] == pytest.approx(2 * r0["hd"])
    assert r1["assd"] == pytest.approx(2 * r0["assd"])
    assert r2["hd"] == pytest.approx(math.hypot(10 * 3.0, 10 * 0.5))  # missed: diagonal of case 2
    assert res.metadata["spacing"] == [[1.0, 1.0], [2.0, 2.0], [3.0, 0.5]]
    as_array = evaluate_segmentation([pred, pred, np.zeros_like(gt)], [gt, gt, gt],
                                     spacing=np.array([(1.0, 1.0), (2.0, 2.0), (3.0, 0.5)]), metrics=("hd", "assd"))
    assert as_array.rows == res.rows
    # one tuple for all cases = the same tuple repeated per case
    one = evaluate_segmentation([pred, pred], [gt, gt], spacing=(2.0, 2.0), metrics=("hd",))
    assert [r["hd"] for r in one.rows] == [r1["hd"], r1["hd"]]


def test_jobs_2_equals_jobs_1():
    rng = np.random.default_rng(0)
    gts = [rng.integers(0, 3, size=(6, 7)) for _ in range(3)]
    preds = [np.where(rng.random(g.shape) < 0.8, g, 0) for g in gts]
    metrics = ("dice", "jaccard", "hd95")
    r1 = evaluate_segmentation(preds, gts, metrics=metrics, jobs=1)
    r2 = evaluate_segmentation(preds, gts, metrics=metrics, jobs=2)
    assert r2.rows == r1.rows
    assert r2.summary() == r1.summary()


def test_labels_default_explicit_and_absent():
    gt = np.array([[0, 3], [3, 0]])
    pred = np.array([[5, 3], [0, 0]])
    with pytest.warns(UserWarning, match=r"only in pred: \[5\]"):
        res = evaluate_segmentation(torch.from_numpy(pred), torch.from_numpy(gt), metrics=("dice",))
    assert res.labels == (3, 5)  # union of pred and target, sorted, background excluded
    assert [r["dice"] for r in res.rows] == [pytest.approx(2 / 3), 0.0]
    with pytest.warns(UserWarning, match="different labels"):
        res = evaluate_segmentation([pred], [gt], labels=[5, 3], metrics=("dice",))
    assert [r["label"] for r in res.rows] == [5, 3]  # order as given
    # A requested label that no case holds is an error naming it, not "both empty, Dice 1".
    with pytest.raises(ValueError, match=r"labels: 7 found in no prediction and no reference.*present: 3, 5"):
        evaluate_segmentation([pred], [gt], labels=[3, 7], metrics=("dice", "precision", "specificity"))
    # A label present in some case but absent from both masks of another keeps the
    # both-empty policy (overlap 1) there.
    with pytest.warns(UserWarning, match="case0"):
        res = evaluate_segmentation([pred, gt], [gt, gt], labels=[5], metrics=("dice", "precision", "specificity"))
    row = res.rows[1]
    assert row["pred_empty"] and row["target_empty"]
    assert (row["dice"], row["precision"], row["specificity"]) == (1.0, 1.0, 1.0)


def test_label_sets_that_differ_are_named_per_case():
    gt = np.zeros((6, 6), dtype=np.uint8)
    gt[1:4, 1:4] = 255  # a 0/255 reference ...
    pred = (gt > 0).astype(np.uint8)  # ... against a 0/1 prediction: Dice 0 for both labels
    pred2 = gt.copy()
    with pytest.warns(UserWarning) as caught:
        res = evaluate_segmentation([pred, pred2, pred2], [gt, gt, gt], names=["a", "b", "c"], metrics=("dice",))
    assert len(caught) == 1
    msg = str(caught[0].message)
    assert "1 of 3 cases" in msg
    assert "case 'a' (only in pred: [1]; only in target: [255])" in msg
    assert "'b'" not in msg and "'c'" not in msg
    assert "0/255" in msg
    assert [r["dice"] for r in res.rows if r["case"] == "a"] == [0.0, 0.0]
    # Identical label sets, including both-empty cases: no warning at all.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        evaluate_segmentation([pred2, np.zeros_like(gt)], [gt, np.zeros_like(gt)], metrics=("dice",))


def test_label_mismatch_warning_lists_at_most_ten_cases():
    gt = np.ones((3, 3), dtype=int)
    preds = [np.full((3, 3), 2)] * 12
    with pytest.warns(UserWarning, match=r"12 of 12 cases.*and 2 more cases") as caught:
        evaluate_segmentation(preds, [gt] * 12, metrics=("dice",))
    assert "case11" not in str(caught[0].message) and "case9" in str(caught[0].message)


def test_distance_units_in_metadata_and_table():
    from rich.console import Console

    pred, gt = _example()
    voxels = evaluate_segmentation(pred, gt, metrics=("dice", "hd"))
    mm = evaluate_segmentation(pred, gt, metrics=("dice", "hd"), spacing=(0.5, 0.5))
    overlap_only = evaluate_segmentation(pred, gt, metrics=("dice",))
    assert voxels.metadata["distance_units"] == "voxels"
    assert mm.metadata["distance_units"] == "mm"
    assert (voxels.units_note(), mm.units_note(), overlap_only.units_note()) == (
        "distances in voxels", "distances in mm", None)
    console = Console(width=200, record=True)
    console.print(mm.to_table())
    assert "distances in mm" in console.export_text()
    with pytest.warns(UserWarning, match=r"mixed \(mm for 1 cases, voxels for 1"):
        mixed = evaluate_segmentation([pred, pred], [gt, gt], metrics=("hd",), spacing=[(2.0, 2.0), None])
    assert mixed.metadata["distance_units"].startswith("mixed")
    assert mixed.rows[0]["hd"] == pytest.approx(2 * mixed.rows[2]["hd"])


def test_bool_float_and_3d_maps_and_mixed_shapes():
    gt3 = np.zeros((3, 4, 5), dtype=np.float32)
    gt3[1, 1:3, 1:4] = 1.0
    pred2 = np.zeros((4, 4), dtype=bool)
    pred2[:2, :2] = True
    gt2 = np.zeros((4, 4), dtype=bool)
    gt2[:2, :3] = True
    res = evaluate_segmentation([gt3, pred2], [gt3.copy(), gt2], metrics=("dice",))
    assert [r["dice"] for r in res.rows] == [1.0, pytest.approx(0.8)]


@pytest.mark.filterwarnings("ignore:pred and target hold different labels")
def test_csv_and_json_round_trip(tmp_path):
    pred, gt = _example()
    missed = pred.copy()
    missed[missed == 2] = 0
    metrics = ("dice", "hd")
    kw = {"empty_distance": float("nan")}
    res = evaluate_segmentation([pred, missed], [gt, gt], metrics=metrics, names=["p", "m"], **kw)
    csv_path = res.to_csv(tmp_path / "rows.csv")
    with open(csv_path, newline="") as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(res.rows) == 4
    for got, want in zip(back, res.rows, strict=True):
        assert list(got) == list(want)
        assert got["case"] == want["case"] and int(got["label"]) == want["label"]
        assert (got["pred_empty"] == "True") == want["pred_empty"]
        assert int(got["target_voxels"]) == want["target_voxels"]
        for m in metrics:
            assert_allclose(float(got[m]), want[m], rtol=0, atol=0, equal_nan=True)
    json_path = res.to_json(tmp_path / "res.json")
    text = json_path.read_text()
    assert "NaN" not in text  # strict JSON
    data = json.loads(text)
    assert data["metadata"]["metrics"] == list(metrics)
    assert data["metadata"]["labels"] == [1, 2]
    assert data["metadata"]["cases"] == ["p", "m"]
    assert len(data["rows"]) == 4 and len(data["summary"]) == 2 * len(metrics)
    for got, want in zip(data["rows"], res.rows, strict=True):
        for k, v in want.items():
            if isinstance(v, float) and math.isnan(v):
                assert got[k] is None
            else:
                assert got[k] == v
    assert data["summary"][0] == res.summary()[0]
    with pytest.raises(FileNotFoundError, match="path"):
        res.to_csv(tmp_path / "missing" / "rows.csv")
    table = res.to_table()
    assert table.row_count == len(res.summary())


def test_bad_inputs():
    pred, gt = _example()
    with pytest.raises(ValueError, match="same length"):
        evaluate_segmentation([pred, pred], [gt])
    with pytest.raises(ValueError, match=r"case 'case1'.*shape"):
        evaluate_segmentation([pred, pred[:3]], [gt, gt])
    with pytest.raises(ValueError, match=r"case 'b'"):
        evaluate_segmentation([pred, pred[:3]], [gt, gt], names=["a", "b"])
    with pytest.raises(ValueError, match="valid metrics are: dice, jaccard"):
        evaluate_segmentation(pred, gt, metrics=("dice", "dise"))
    for bad in ([0], [-1], [1.5], [True], [1, 1], []):
        with pytest.raises(ValueError, match="labels"):
            evaluate_segmentation(pred, gt, labels=bad, metrics=("dice",))
    with pytest.raises(ValueError, match=r"targets\[0\].*non-integer"):
        evaluate_segmentation(pred, gt + 0.5, metrics=("dice",))
    with pytest.raises(ValueError, match=r"preds\[0\].*NaN"):
        evaluate_segmentation(np.where(pred > 0, np.nan, 0.0), gt, metrics=("dice",))
    with pytest.raises(ValueError, match=r"preds\[0\].*>= 0"):
        evaluate_segmentation(-pred, gt, metrics=("dice",))
    with pytest.raises(ValueError, match="both"):
        evaluate_segmentation(pred, [gt])
    with pytest.raises(ValueError, match="no foreground"):
        evaluate_segmentation(np.zeros((3, 3), int), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_segmentation(pred, gt, spacing=(1.0, 1.0, 1.0), metrics=("dice",))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_segmentation([pred, pred], [gt, gt], spacing=[(1.0, 1.0)], metrics=("dice",))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_segmentation(pred, gt, spacing="ab", metrics=("dice",))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_segmentation([pred, pred], [gt, gt], spacing=[(1.0, 1.0), 5.0], metrics=("dice",))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_segmentation(pred, gt, spacing=(1.0, -1.0), metrics=("dice",))
    with pytest.raises(ValueError, match="jobs"):
        evaluate_segmentation(pred, gt, jobs=0, metrics=("dice",))
    with pytest.raises(ValueError, match="names"):
        evaluate_segmentation([pred, pred], [gt, gt], names=["x", "x"], metrics=("dice",))
    with pytest.raises(ValueError, match="empty_distance"):
        evaluate_segmentation(pred, gt, empty_distance=-1.0, metrics=("dice",))


@settings(max_examples=30, deadline=None)
@given(name=st.text(min_size=1, max_size=12).filter(lambda s: s not in METRICS))
def test_unknown_metric_names_raise(name):
    pred, gt = _example()
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate_segmentation(pred, gt, metrics=(name,))


@pytest.mark.filterwarnings("ignore:pred and target hold different labels")
@pytest.mark.parametrize("seed", range(6))
def test_shared_distances_equal_scalar_surface_functions(seed):
    from mlimaging.metrics import average_surface_distance, hausdorff_distance, rms_surface_distance

    rng = np.random.default_rng(seed)
    shape = (9, 10) if seed % 2 else (5, 6, 7)
    spacing = tuple(rng.uniform(0.5, 2.0, size=len(shape)))
    gt = rng.integers(0, 3, size=shape) * (rng.random(shape) < 0.5)
    pred = np.where(rng.random(shape) < 0.7, gt, rng.integers(0, 4, size=shape))
    if seed == 0:
        pred[pred == 2] = 0  # a missed structure
    ed = None if seed < 3 else 7.5
    res = evaluate_segmentation(pred, gt, labels=[1, 2, 3], spacing=spacing, metrics=SURFACE, empty_distance=ed)
    for r in res.rows:
        pm, tm = pred == r["label"], gt == r["label"]
        kw = {"spacing": spacing, "empty_distance": ed}
        want = {
            "hd": hausdorff_distance(pm, tm, **kw),
            "hd95": hausdorff_distance(pm, tm, percentile=95, **kw),
            "assd": average_surface_distance(pm, tm, **kw),
            "asd": average_surface_distance(pm, tm, symmetric=False, **kw),
            "rmssd": rms_surface_distance(pm, tm, **kw),
        }
        for m, v in want.items():
            assert r[m] == pytest.approx(v, rel=1e-12), (r["label"], m)


@pytest.mark.filterwarnings("ignore:pred and target hold different labels")
@pytest.mark.parametrize("top", [3, 40, 70000])
def test_default_labels_for_small_and_large_label_values(top):
    gt = np.zeros((3, 4), dtype=np.int64)
    gt[0, :2] = top
    gt[2, 3] = 2
    pred = np.zeros_like(gt)
    pred[0, 1:3] = top
    pred[1, 1] = 1
    res = evaluate_segmentation([pred, gt], [gt, gt], metrics=("dice",))
    assert res.labels == (1, 2, top)
    assert [r["dice"] for r in res.rows[:3]] == [0.0, 0.0, pytest.approx(0.5)]
    assert res.rows[3]["pred_empty"] and res.rows[3]["target_empty"] and res.rows[3]["dice"] == 1.0

"""detection.metrics.mean_average_precision: hand-computed APs, invariants, torchmetrics (pycocotools) oracle, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.detection import mean_average_precision

REC = torch.linspace(
    0.0, 1.0, 101
).tolist()  # the recall thresholds torchmetrics passes to pycocotools


def det(boxes, scores, labels):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def gt(boxes, labels, **extra):
    out = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }
    out.update({k: torch.tensor(v) for k, v in extra.items()})
    return out


def synth(
    n_img: int,
    n_cls: int,
    seed: int,
    *,
    max_gt=6,
    max_det=20,
    size=120.0,
    crowd=False,
    tie_step=0.05,
):
    """Random targets and noisy detections (jittered true boxes, wrong classes, false positives, tied scores)."""
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(n_img):
        m = int(torch.randint(0, max_gt + 1, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 200
        wh = torch.rand(m, 2, generator=g) * size + 2
        gb, gl = torch.cat([xy, xy + wh], 1), torch.randint(0, n_cls, (m,), generator=g)
        t = {"boxes": gb, "labels": gl}
        if crowd:
            t["iscrowd"] = (torch.rand(m, generator=g) < 0.2).long()
        targets.append(t)
        k = int(torch.randint(0, max_det + 1, (1,), generator=g))
        if m:
            src = torch.randint(0, m, (k,), generator=g)
            pb = gb[src] + torch.randn(k, 4, generator=g) * 0.1 * wh[src].repeat(1, 2)
            pl = torch.where(
                torch.rand(k, generator=g) < 0.8,
                gl[src],
                torch.randint(0, n_cls, (k,), generator=g),
            )
        else:
            pb, pl = torch.rand(k, 4, generator=g) * 200, torch.randint(0, n_cls, (k,), generator=g)
        pb = torch.cat(
            [torch.minimum(pb[:, :2], pb[:, 2:]), torch.maximum(pb[:, :2], pb[:, 2:])], 1
        )
        sc = torch.rand(k, generator=g)
        if tie_step:
            sc = torch.round(sc / tie_step) * tie_step
        preds.append({"boxes": pb, "scores": sc, "labels": pl})
    return preds, targets


# ----------------------------------------------------------------------------- worked examples


def test_worked_perfect_and_false_positive_after():
    preds = [det([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.8], [1, 1])]
    targets = [gt([[10, 10, 50, 50]], [1])]
    m = mean_average_precision(preds, targets)
    assert float(m["map"]) == 1.0 and float(m["map_50"]) == 1.0 and float(m["mar_100"]) == 1.0
    assert m["classes"].tolist() == [1] and m["map_per_class"].tolist() == [1.0]


def test_worked_false_positive_first_gives_half():
    # ranks: FP (p=0, r=0), TP (p=1/2, r=1); monotone envelope -> 1/2 at every recall threshold
    preds = [det([[60, 60, 90, 90], [10, 10, 50, 50]], [0.9, 0.8], [0, 0])]
    m = mean_average_precision(preds, [gt([[10, 10, 50, 50]], [0])])
    assert float(m["map"]) == pytest.approx(0.5)
    assert (
        float(m["mar_1"]) == 0.0 and float(m["mar_10"]) == 1.0
    )  # one detection per image: only the FP


def test_worked_half_recall():
    # two objects, one found at rank 1: precision 1 up to recall 1/2, then 0
    preds = [det([[0, 0, 10, 10]], [0.7], [3])]
    targets = [gt([[0, 0, 10, 10], [20, 20, 30, 30]], [3, 3])]
    expected = sum(r <= 0.5 for r in REC) / 101  # 51 of the 101 thresholds
    m = mean_average_precision(preds, targets)
    assert float(m["map"]) == pytest.approx(expected, abs=1e-7)
    assert float(m["mar_100"]) == pytest.approx(0.5)


def test_worked_iou_thresholds():
    # IoU = 62/100 = 0.62: a match at thresholds .50, .55, .60 only -> mAP = 3/10
    m = mean_average_precision([det([[0, 0, 10, 6.2]], [0.5], [0])], [gt([[0, 0, 10, 10]], [0])])
    assert float(m["map"]) == pytest.approx(0.3, abs=1e-6)
    assert float(m["map_50"]) == 1.0 and float(m["map_75"]) == 0.0
    m = mean_average_precision(
        [det([[0, 0, 10, 6.2]], [0.5], [0])],
        [gt([[0, 0, 10, 10]], [0])],
        iou_thresholds=[0.5, 0.6, 0.7],
    )
    assert float(m["map"]) == pytest.approx(2 / 3, abs=1e-6) and float(m["map_75"]) == -1.0


def test_worked_duplicates_and_no_ground_truth():
    # a duplicate of a matched box is a false positive; a class without ground truth is -1 and left out
    preds = [det([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8, 0.95], [0, 0, 7])]
    m = mean_average_precision(preds, [gt([[0, 0, 10, 10]], [0])])
    assert float(m["map"]) == 1.0  # the duplicate comes after full recall
    assert m["classes"].tolist() == [0, 7] and m["map_per_class"].tolist() == [1.0, -1.0]
    none = mean_average_precision([det([], [], [])], [gt([], [])])
    assert float(none["map"]) == -1.0 and none["classes"].numel() == 0


# ----------------------------------------------------------------------------- invariants


def test_invariants_translation_order_and_scale():
    preds, targets = synth(15, 3, 0, tie_step=0)  # distinct scores: image order does not matter
    base = mean_average_precision(preds, targets)
    shift = torch.tensor([13.0, 7.0, 13.0, 7.0])
    moved = mean_average_precision(
        [{**p, "boxes": p["boxes"] + shift} for p in preds],
        [{**t, "boxes": t["boxes"] + shift} for t in targets],
    )
    perm = list(reversed(range(15)))
    shuffled = mean_average_precision([preds[i] for i in perm], [targets[i] for i in perm])
    for key in ("map", "map_50", "map_75", "mar_100"):
        assert float(moved[key]) == pytest.approx(float(base[key]), abs=1e-5)
        assert float(shuffled[key]) == pytest.approx(float(base[key]), abs=1e-12)
    flipped = [{k: v.flip(0) for k, v in p.items()} for p in preds]  # detection order within images
    assert float(mean_average_precision(flipped, targets)["map"]) == pytest.approx(
        float(base["map"]), abs=1e-12
    )
    perfect = [
        {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
        for t in targets
    ]
    assert float(mean_average_precision(perfect, targets)["map"]) == 1.0
    assert 0 <= float(base["map"]) <= float(base["map_50"]) <= 1


# ----------------------------------------------------------------------------- oracle: torchmetrics + pycocotools


def torchmetrics_map(preds, targets, **kw):
    pytest.importorskip(
        "pycocotools", reason="torchmetrics' MeanAveragePrecision backend (pip install pycocotools)"
    )
    from torchmetrics.detection import (
        MeanAveragePrecision,
    )  # conftest installed the torchvision shim

    metric = MeanAveragePrecision(class_metrics=True, **kw)
    metric.warn_on_many_detections = False
    metric.update(preds, targets)
    return metric.compute()


def assert_same(ours, ref):
    assert set(ref) <= set(ours)
    for key, value in ref.items():
        a, b = ours[key].double().reshape(-1), value.double().reshape(-1)
        assert a.shape == b.shape, key
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0, msg=key)


CASES = {
    "random_ties": dict(n_img=40, n_cls=4, seed=1),
    "random_fine_scores": dict(n_img=40, n_cls=6, seed=2, tie_step=0),
    "crowds": dict(n_img=30, n_cls=3, seed=3, crowd=True),
    "more_than_100": dict(n_img=6, n_cls=2, seed=4, max_det=180),
    "large_boxes": dict(n_img=30, n_cls=3, seed=5, size=400.0),  # small, medium and large ranges
    "one_class_dense": dict(n_img=20, n_cls=1, seed=6, max_gt=15, max_det=40),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_oracle_torchmetrics_random(case):
    preds, targets = synth(**CASES[case])
    assert_same(mean_average_precision(preds, targets), torchmetrics_map(preds, targets))


def test_oracle_torchmetrics_edge_cases():
    full = det(
        [[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 11, 11], [30, 30, 50, 45]],
        [0.5, 0.5, 0.5, 0.4],
        [0, 0, 0, 1],
    )
    cases = {
        "no_predictions": (
            [det([], [], []), det([], [], [])],
            [gt([[0, 0, 10, 10]], [0]), gt([[5, 5, 9, 9]], [1])],
        ),
        "image_without_gt": (
            [full, full],
            [gt([[0, 0, 10, 10], [30, 30, 50, 46]], [0, 1]), gt([], [])],
        ),
        "crowded_duplicates_ties": (
            [full],
            [gt([[0, 0, 10, 10], [0.5, 0.5, 10.5, 10.5], [30, 30, 50, 46]], [0, 0, 1])],
        ),
        "class_only_predicted": ([det([[0, 0, 10, 10]], [0.3], [5])], [gt([[0, 0, 10, 10]], [2])]),
        "no_gt_at_all": ([full], [gt([], [])]),
        "crowd_gt": ([full], [gt([[0, 0, 12, 12], [30, 30, 50, 46]], [0, 1], iscrowd=[1, 0])]),
        "given_area": (
            [full],
            [gt([[0, 0, 10, 10], [30, 30, 50, 46]], [0, 1], area=[5000.0, 0.0])],
        ),
    }
    for name, (preds, targets) in cases.items():
        ours, ref = mean_average_precision(preds, targets), torchmetrics_map(preds, targets)
        try:
            assert_same(ours, ref)
        except AssertionError as e:
            raise AssertionError(f"case {name}: {e}") from None


def test_oracle_torchmetrics_custom_thresholds():
    preds, targets = synth(25, 3, 9)
    kw = dict(iou_thresholds=[0.3, 0.5, 0.75], rec_thresholds=[0.0, 0.25, 0.5, 0.75, 1.0])
    assert_same(
        mean_average_precision(preds, targets, **kw), torchmetrics_map(preds, targets, **kw)
    )
    # pycocotools' summarize() reads 'map' at maxDets=100 whatever the caps (-1 when 100 is not one
    # of them), and so does torchmetrics' 'map_per_class'; every other key follows the caps, and
    # so do ours
    ours = mean_average_precision(preds, targets, max_detection_thresholds=[1, 5, 50])
    ref = torchmetrics_map(preds, targets, max_detection_thresholds=[1, 5, 50])
    assert (
        float(ref["map"]) == -1.0 and float(ours["map"]) > 0 and (ours["map_per_class"] > 0).all()
    )
    quirk = ("map", "map_per_class")
    assert_same(
        {k: v for k, v in ours.items() if k not in quirk},
        {k: v for k, v in ref.items() if k not in quirk},
    )


# ----------------------------------------------------------------------------- bad input


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), pos=st.integers(0, 4))
def test_nan_scores_rejected(n, pos):
    preds, targets = synth(2, 2, 0, max_det=5)
    p = det(torch.rand(n, 4).sort(-1).values.tolist(), [0.5] * n, [0] * n)
    p["scores"][pos % n] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        mean_average_precision([p], [gt([[0, 0, 1, 1]], [0])])


@settings(max_examples=25, deadline=None)
@given(x=st.floats(0, 50), d=st.floats(0.01, 30), in_targets=st.booleans())
def test_reversed_boxes_rejected(x, d, in_targets):
    bad = [[x + d, 0.0, x, 5.0]]
    preds, targets = [det([[0, 0, 1, 1]], [0.5], [0])], [gt([[0, 0, 1, 1]], [0])]
    if in_targets:
        targets = [gt(bad, [0])]
    else:
        preds = [det(bad, [0.5], [0])]
    with pytest.raises(ValueError, match="x2 >= x1"):
        mean_average_precision(preds, targets)


def test_malformed_inputs_rejected():
    p, t = det([[0, 0, 1, 1]], [0.5], [0]), gt([[0, 0, 1, 1]], [0])
    with pytest.raises(ValueError, match="one dict per image"):
        mean_average_precision([p, p], [t])
    with pytest.raises(ValueError, match="'scores'"):
        mean_average_precision([{"boxes": p["boxes"], "labels": p["labels"]}], [t])
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        mean_average_precision([{**p, "boxes": torch.zeros(1, 3)}], [t])
    with pytest.raises(ValueError, match="one per box"):
        mean_average_precision([{**p, "labels": torch.tensor([0, 1])}], [t])
    with pytest.raises(ValueError, match="integers"):
        mean_average_precision([p], [{**t, "labels": torch.tensor([0.0])}])
    with pytest.raises(ValueError, match="finite"):
        mean_average_precision([{**p, "boxes": torch.tensor([[0.0, 0, math.inf, 1]])}], [t])
    with pytest.raises(ValueError, match="iou_thresholds"):
        mean_average_precision([p], [t], iou_thresholds=[1.5])
    with pytest.raises(ValueError, match="max_detection_thresholds"):
        mean_average_precision([p], [t], max_detection_thresholds=[10, 1, 100])
    with pytest.raises(ValueError, match="sequences of dicts"):
        mean_average_precision(p, t)

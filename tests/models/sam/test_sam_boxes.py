"""Box helpers for SAM: IoU, greedy NMS, boxes of masks (worked examples, oracles, properties)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.models.sam._boxes import (
    batched_nms,
    box_iou,
    box_xyxy_to_xywh,
    masks_to_boxes,
    nms,
)


def _reference_nms():
    path = Path(__file__).parents[2] / "_torchvision_cpu.py"
    spec = importlib.util.spec_from_file_location("_torchvision_cpu_ref", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_nms


def _random_boxes(rng: np.random.Generator, n: int, *, scale: float = 20.0) -> torch.Tensor:
    xy = rng.integers(0, int(scale), size=(n, 2)).astype(np.float32)
    wh = rng.integers(1, int(scale) // 2, size=(n, 2)).astype(np.float32)
    return torch.from_numpy(np.concatenate([xy, xy + wh], axis=1))


# ------------------------------------------------------------------ worked examples
def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    iou = box_iou(a, b)
    # overlap 1 of areas 4 and 4: 1 / 7; identical boxes: 1; disjoint: 0; nested 1 in 4: 1/4
    expected = torch.tensor([[1 / 7, 1.0, 0.0], [0.0, 0.25, 0.0]])
    torch.testing.assert_close(iou, expected)


def test_nms_by_hand():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 9], [20, 20, 25, 25]])
    scores = torch.tensor([0.9, 0.8, 0.95, 0.1])
    # box 2 (0.95) first; box 0 overlaps it with IoU 0.9 > 0.5 -> out; box 1 vs box 2:
    # inter 9*8=72, union 90 + 100 - 72 = 118 -> 0.61 > 0.5 -> out; box 3 disjoint -> kept.
    assert nms(boxes, scores, 0.5).tolist() == [2, 3]
    # with a threshold 0.7, box 1 (IoU 0.61 with box 2, 81/119 = 0.68 with box 0) survives
    assert nms(boxes, scores, 0.7).tolist() == [2, 1, 3]


def test_nms_iou_equal_to_threshold_is_kept():
    # a 1x1 box inside a 2x1 box: IoU exactly 1/2, suppressed only when 1/2 > threshold
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    assert nms(boxes, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert nms(boxes, torch.tensor([1.0, 0.5]), 0.49).tolist() == [0]


def test_nms_ties_keep_index_order():
    boxes = torch.tensor([[0.0, 0, 1, 1], [10, 10, 11, 11], [0, 0, 1, 1], [20, 20, 21, 21]])
    scores = torch.tensor([0.5, 0.5, 0.5, 0.5])
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 3]


def test_batched_nms_categories_do_not_suppress_each_other():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]])
    scores = torch.tensor([0.2, 0.9, 0.5])
    assert batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [1, 2]
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0]), 0.5).tolist() == [1]


def test_empty_inputs():
    empty = torch.zeros(0, 4)
    assert nms(empty, torch.zeros(0), 0.5).shape == (0,)
    assert batched_nms(empty, torch.zeros(0), torch.zeros(0), 0.5).dtype == torch.int64
    assert box_iou(empty, torch.ones(3, 4)).shape == (0, 3)
    assert masks_to_boxes(torch.zeros(0, 5, 6, dtype=torch.bool)).shape == (0, 4)


def test_masks_to_boxes_by_hand():
    m = np.zeros((3, 6, 7), dtype=bool)
    m[0, 2, 3] = True  # one pixel: x0 = x1 = 3, y0 = y1 = 2
    m[1, 1:5, 0:7] = True  # full width
    expected = [[3, 2, 3, 2], [0, 1, 6, 4], [0, 0, 0, 0]]
    assert masks_to_boxes(m).tolist() == expected
    # leading dimensions are kept; 0/1 integer masks work
    assert masks_to_boxes(torch.as_tensor(m[None].astype(np.uint8))).shape == (1, 3, 4)
    assert masks_to_boxes(m[1]).tolist() == [0, 1, 6, 4]


def test_box_xyxy_to_xywh_does_not_modify_input():
    box = torch.tensor([2, 1, 5, 7])
    assert box_xyxy_to_xywh(box).tolist() == [2, 1, 3, 6]
    assert box.tolist() == [2, 1, 5, 7]
    arr = np.array([[0.5, 1.0, 2.0, 4.0]])
    np.testing.assert_array_equal(box_xyxy_to_xywh(arr), [[0.5, 1.0, 1.5, 3.0]])


# ------------------------------------------------------------------ oracles
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("tau", [0.0, 0.3, 0.7])
def test_nms_matches_reference(seed, tau):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 60)
    scores = torch.from_numpy(rng.integers(0, 6, size=60).astype(np.float32))  # many ties
    expected = _reference_nms()(boxes, scores, tau)
    assert torch.equal(nms(boxes, scores, tau), expected)


def test_torchvision_box_ops_agree():
    pytest.importorskip("segment_anything")  # its import path needs the torchvision shim
    ops = pytest.importorskip("torchvision.ops")
    rng = np.random.default_rng(7)
    a, b = _random_boxes(rng, 30), _random_boxes(rng, 20)
    torch.testing.assert_close(box_iou(a, b), ops.box_iou(a, b))
    scores = torch.from_numpy(rng.random(30).astype(np.float32))
    idxs = torch.from_numpy(rng.integers(0, 3, size=30))
    assert torch.equal(batched_nms(a, scores, idxs, 0.4), ops.batched_nms(a, scores, idxs, 0.4))


def test_mask_boxes_match_segment_anything():
    amg = pytest.importorskip("segment_anything.utils.amg")
    rng = np.random.default_rng(3)
    masks = torch.from_numpy(rng.random((2, 5, 9, 11)) > 0.93)
    masks[0, 1] = False  # an empty mask
    assert torch.equal(masks_to_boxes(masks), amg.batched_mask_to_box(masks))
    assert torch.equal(masks_to_boxes(masks[0, 0]), amg.batched_mask_to_box(masks[0, 0]))
    box = torch.tensor([3, 4, 10, 12])
    assert torch.equal(box_xyxy_to_xywh(box), amg.box_xyxy_to_xywh(box))


# ------------------------------------------------------------------ properties
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.0, 1.0), st.integers(1, 25))
def test_nms_properties(seed, tau, n):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, n)
    scores = torch.from_numpy(rng.random(n).astype(np.float32))
    keep = nms(boxes, scores, tau)
    # the best box is always kept, kept boxes are by decreasing score, and no two kept boxes
    # overlap more than the threshold
    assert keep[0] == torch.argmax(scores)
    assert torch.all(scores[keep][:-1] >= scores[keep][1:])
    iou = box_iou(boxes[keep], boxes[keep]).double()
    iou.fill_diagonal_(0)
    assert bool((iou <= tau + 1e-6).all())
    assert torch.equal(keep, _reference_nms()(boxes, scores, tau))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: nms(torch.zeros(3, 5), torch.zeros(3), 0.5), "boxes"),
        (lambda: nms(torch.zeros(3, 4), torch.zeros(2), 0.5), "scores"),
        (lambda: nms(torch.zeros(3, 4), torch.zeros(3), float("nan")), "iou_threshold"),
        (lambda: batched_nms(torch.zeros(3, 4), torch.zeros(3), torch.zeros(4), 0.5), "idxs"),
        (lambda: masks_to_boxes(torch.zeros(5)), "masks"),
        (lambda: box_xyxy_to_xywh(np.zeros(3)), "boxes"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""detection.boxes: worked examples, invariants, torchvision's Python ops as oracles, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.detection import batched_nms, box_area, box_convert, box_iou, clip_boxes, nms


def random_boxes(n: int, seed: int, *, size: float = 100.0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 3 + 0.5
    return torch.cat([xy, xy + wh], 1).to(dtype)


def loop_nms(boxes, scores, thr, idxs=None):
    """Independent reference: greedy NMS by decreasing score (stable), per class when idxs given."""
    b = boxes.double().tolist()

    def iou(i, j):
        w = max(0.0, min(b[i][2], b[j][2]) - max(b[i][0], b[j][0]))
        h = max(0.0, min(b[i][3], b[j][3]) - max(b[i][1], b[j][1]))
        area = [(q[2] - q[0]) * (q[3] - q[1]) for q in (b[i], b[j])]
        return w * h / (area[0] + area[1] - w * h)

    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            if idxs is not None and int(idxs[i]) != int(idxs[j]):
                continue
            if iou(i, j) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


# ----------------------------------------------------------------------------- worked examples


def test_worked_iou_area_convert():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor(
        [[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [2.0, 0.0, 4.0, 2.0], [0.0, 0.0, 4.0, 1.0]]
    )
    # 1/(4+4-1); identical; touching edge; inter 2*1=2 over 4+4-2
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0, 2 / 6]]))
    torch.testing.assert_close(box_area(b), torch.tensor([4.0, 4.0, 4.0, 4.0]))
    xywh = box_convert(torch.tensor([[10.0, 20.0, 30.0, 60.0]]), "xyxy", "xywh")
    torch.testing.assert_close(xywh, torch.tensor([[10.0, 20.0, 20.0, 40.0]]))
    torch.testing.assert_close(
        box_convert(xywh, "xywh", "cxcywh"), torch.tensor([[20.0, 40.0, 20.0, 40.0]])
    )
    torch.testing.assert_close(
        clip_boxes(torch.tensor([[-5.0, -1.0, 120.0, 50.0]]), (40, 100)),
        torch.tensor([[0.0, 0.0, 100.0, 40.0]]),
    )


def test_worked_nms_chain():
    # A (0.9) suppresses B (IoU 81/119 = 0.68); B would have suppressed C, but B is gone, so C stays.
    boxes = torch.tensor(
        [[0.0, 0, 10, 10], [1.0, 1, 11, 11], [2.5, 2.5, 12.5, 12.5], [50.0, 50, 60, 60]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    assert box_iou(boxes[:1], boxes[2:3]).item() == pytest.approx(56.25 / 143.75)  # 0.39 < 0.5
    assert nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert nms(boxes, scores, 0.3).tolist() == [3, 0]  # C overlaps A by 0.39 > 0.3
    # threshold is strict: IoU exactly 0.5 is not suppressed
    half = torch.tensor([[0.0, 0, 4, 3], [0.0, 0, 4, 1.5]])  # IoU = 6 / 12
    assert nms(half, torch.tensor([1.0, 0.5]), 0.5).tolist() == [0, 1]
    assert nms(half, torch.tensor([1.0, 0.5]), 0.49).tolist() == [0]


def test_worked_batched_nms_and_ties():
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 10]])
    assert batched_nms(
        boxes, torch.tensor([0.5, 0.5, 0.5]), torch.tensor([1, 2, 1]), 0.5
    ).tolist() == [0, 1]
    assert nms(boxes, torch.tensor([0.5, 0.5, 0.5]), 0.5).tolist() == [0]  # ties: first index wins
    # negative coordinates: classes never interact (torchvision's offset trick assumes >= 0)
    neg = torch.tensor([[-100.0, -100, -90, -90], [-89.0, -100, -79, -90]])
    assert batched_nms(neg, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.0).tolist() == [0, 1]


def test_empty_inputs():
    e = torch.zeros(0, 4)
    assert (
        nms(e, torch.zeros(0), 0.5).dtype == torch.int64
        and nms(e, torch.zeros(0), 0.5).numel() == 0
    )
    assert batched_nms(e, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).numel() == 0
    assert box_iou(e, random_boxes(3, 0)).shape == (0, 3)


# ----------------------------------------------------------------------------- invariants


def test_invariants():
    b1, b2 = random_boxes(40, 1), random_boxes(30, 2)
    iou = box_iou(b1, b2)
    assert ((iou >= 0) & (iou <= 1)).all()
    torch.testing.assert_close(box_iou(b2, b1), iou.T)
    torch.testing.assert_close(torch.diag(box_iou(b1, b1)), torch.ones(40))
    # translation and common scaling leave IoU unchanged
    shift = torch.tensor([7.0, -3.0, 7.0, -3.0])
    torch.testing.assert_close(
        box_iou(b1 * 2.5 + shift, b2 * 2.5 + shift), iou, atol=1e-5, rtol=1e-5
    )
    for fmt in ("xywh", "cxcywh"):
        torch.testing.assert_close(
            box_convert(box_convert(b1, "xyxy", fmt), fmt, "xyxy"), b1, atol=1e-5, rtol=0
        )
    # nms output: kept boxes pairwise IoU <= thr, every dropped box overlaps a kept higher-scored one
    s = torch.rand(40, generator=torch.Generator().manual_seed(3))
    keep = nms(b1, s, 0.3)
    k_iou = box_iou(b1[keep], b1[keep]).fill_diagonal_(0)
    assert (k_iou <= 0.3).all()
    assert (s[keep][:-1] >= s[keep][1:]).all()
    dropped = torch.tensor([i for i in range(40) if i not in set(keep.tolist())])
    assert (box_iou(b1[dropped], b1[keep]) > 0.3).any(1).all()
    # inputs not modified
    before = b1.clone()
    nms(b1, s, 0.5), box_convert(b1, "xyxy", "cxcywh"), clip_boxes(b1, (50, 50))
    torch.testing.assert_close(b1, before)


@pytest.mark.parametrize("seed", range(3))
def test_nms_equals_loop_reference(seed):
    boxes = random_boxes(120, seed)
    g = torch.Generator().manual_seed(seed + 10)
    scores = torch.round(torch.rand(120, generator=g) * 10) / 10  # many ties
    idxs = torch.randint(0, 3, (120,), generator=g)
    for thr in (0.0, 0.3, 0.7):
        assert torch.equal(nms(boxes, scores, thr), loop_nms(boxes, scores, thr))
        assert torch.equal(
            batched_nms(boxes, scores, idxs, thr), loop_nms(boxes, scores, thr, idxs)
        )


def test_nms_large_blocks_and_numpy_input():
    boxes, scores = (
        random_boxes(1500, 7, size=400.0),
        torch.rand(1500, generator=torch.Generator().manual_seed(8)),
    )
    keep = nms(boxes.numpy(), scores.numpy(), 0.5)  # > one 512-row block of the IoU matrix
    assert keep.dtype == torch.int64
    k_iou = box_iou(boxes[keep], boxes[keep]).fill_diagonal_(0)
    assert (k_iou <= 0.5).all()
    tv = pytest.importorskip("torchvision.ops")
    assert torch.equal(keep, tv.nms(boxes, scores, 0.5))  # the conftest shim's reference nms


# ----------------------------------------------------------------------------- oracle: torchvision's Python ops


def test_oracle_torchvision_python_ops():
    tv = pytest.importorskip("torchvision.ops")  # tests/conftest.py installed the CPU shim
    b1, b2 = random_boxes(50, 4), random_boxes(60, 5)
    for dtype in (torch.float32, torch.float64):
        torch.testing.assert_close(
            box_iou(b1.to(dtype), b2.to(dtype)), tv.box_iou(b1.to(dtype), b2.to(dtype))
        )
        torch.testing.assert_close(box_area(b1.to(dtype)), tv.box_area(b1.to(dtype)))
    ints = (b1 * 3).round().to(torch.int64)
    torch.testing.assert_close(box_area(ints), tv.box_area(ints))
    torch.testing.assert_close(box_iou(ints, ints), tv.box_iou(ints, ints), check_dtype=False)
    for fin in ("xyxy", "xywh", "cxcywh"):
        src = tv.box_convert(b1, "xyxy", fin)
        for fout in ("xyxy", "xywh", "cxcywh"):
            torch.testing.assert_close(box_convert(src, fin, fout), tv.box_convert(src, fin, fout))
    torch.testing.assert_close(
        clip_boxes(b1 - 20, (60, 70)), tv.clip_boxes_to_image(b1 - 20, (60, 70))
    )
    s = torch.rand(50, generator=torch.Generator().manual_seed(6))
    idxs = torch.randint(0, 4, (50,), generator=torch.Generator().manual_seed(7))
    # batched_nms through torchvision's Python offset trick (non-negative boxes) on the shim's nms
    assert torch.equal(batched_nms(b1, s, idxs, 0.2), tv.batched_nms(b1, s, idxs, 0.2))


# ----------------------------------------------------------------------------- bad input


@settings(max_examples=30, deadline=None)
@given(x1=st.floats(0, 50), dx=st.floats(0.01, 20), y1=st.floats(0, 50), dy=st.floats(0.01, 20))
def test_reversed_boxes_rejected(x1, dx, y1, dy):
    bad = torch.tensor([[x1 + dx, y1, x1, y1 + dy]])  # x2 < x1
    with pytest.raises(ValueError, match="x2 >= x1"):
        box_iou(bad, bad)
    with pytest.raises(ValueError, match="x2 >= x1"):
        nms(bad, torch.ones(1), 0.5)
    with pytest.raises(ValueError, match="x2 >= x1"):
        box_area(torch.tensor([[x1, y1 + dy, x1 + dx, y1]]))  # y2 < y1


@settings(max_examples=30, deadline=None)
@given(
    shape=st.sampled_from([(4,), (3, 5), (2, 4, 1), (0, 3)]),
    what=st.sampled_from(["iou", "nms", "convert"]),
)
def test_wrong_shapes_rejected(shape, what):
    bad = torch.zeros(shape)
    with pytest.raises(ValueError, match="shape"):
        if what == "iou":
            box_iou(bad, torch.zeros(1, 4))
        elif what == "nms":
            nms(bad, torch.zeros(shape[0] if shape else 0), 0.5)
        else:
            box_convert(bad, "xyxy", "xywh")


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 6),
    pos=st.integers(0, 5),
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_non_finite_rejected(n, pos, value):
    boxes, scores = random_boxes(n, 0), torch.rand(n)
    i = pos % n
    b = boxes.clone()
    b[i, pos % 4] = value
    with pytest.raises(ValueError, match="finite"):
        nms(b, scores, 0.5)
    if math.isnan(value):
        s = scores.clone()
        s[i] = value
        with pytest.raises(ValueError, match="NaN"):
            nms(boxes, s, 0.5)
        with pytest.raises(ValueError, match="NaN"):
            batched_nms(boxes, s, torch.zeros(n, dtype=torch.long), 0.5)


def test_other_bad_arguments():
    b = random_boxes(3, 0)
    with pytest.raises(ValueError, match="scores must have shape"):
        nms(b, torch.ones(2), 0.5)
    with pytest.raises(ValueError, match="idxs must have shape"):
        batched_nms(b, torch.ones(3), torch.zeros(2, dtype=torch.long), 0.5)
    with pytest.raises(ValueError, match="idxs must be integers"):
        batched_nms(b, torch.ones(3), torch.zeros(3), 0.5)
    with pytest.raises(ValueError, match="in_fmt"):
        box_convert(b, "xyxyz", "xywh")
    with pytest.raises(ValueError, match="size"):
        clip_boxes(b, (0, 10))
    with pytest.raises(ValueError, match="iou_threshold"):
        nms(b, torch.ones(3), float("nan"))
    with pytest.raises(ValueError, match="torch.Tensor or numpy"):
        box_area([[0, 0, 1, 1]])
    assert np.isnan(box_iou(torch.zeros(1, 4), torch.zeros(1, 4)).item())  # 0/0 like torchvision

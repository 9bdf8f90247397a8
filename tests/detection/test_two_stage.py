"""The two-stage baseline: connected-component proposals, crop classification, output size vs C."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.detection import (
    TwoStageDetector,
    box_iou,
    detection_canvases,
    mean_average_precision,
    output_size_and_time,
    propose,
    train_two_stage,
)


def test_propose_worked_example():
    img = np.zeros((12, 12))
    img[1:4, 2:8] = 1  # a 6 x 3 bar
    img[7:11, 6:9] = 0.5  # a 3 x 4 block
    img[0, 11] = 1  # a speck
    assert propose(img).tolist() == [[2.0, 1.0, 8.0, 4.0], [6.0, 7.0, 9.0, 11.0]]
    assert propose(img, min_size=1).shape == (3, 4)
    assert propose(img, threshold=0.6).tolist() == [[2.0, 1.0, 8.0, 4.0]]


def test_dilation_joins_a_broken_stroke():
    img = np.zeros((10, 20))
    img[2:8, 3:8] = 1
    img[2:8, 9:14] = 1  # one empty column between the halves
    assert propose(img, dilation=0).shape[0] == 2
    assert propose(img, dilation=1).tolist() == [[3.0, 2.0, 14.0, 8.0]]


def test_proposals_are_the_canvas_boxes():
    # Canvases box each digit tightly around its ink (> 0.2), as the proposals do: digits that
    # neither touch nor break into pieces are recovered exactly.
    ds = detection_canvases(n=30, seed=5, split="test")
    exact = total = 0
    for img, t in zip(ds.images, ds.targets, strict=True):
        props = propose(img)
        total += len(t["boxes"])
        if len(props):
            exact += int((box_iou(t["boxes"], props).max(1).values > 0.999).sum())
    assert exact / total >= 0.85


def test_detector_output_format_and_top_k():
    det = TwoStageDetector(num_classes=5, top_k=2, min_score=0.0).eval()
    imgs = torch.zeros(2, 1, 48, 48)
    imgs[0, 0, 5:25, 5:15] = 1
    imgs[0, 0, 30:45, 30:44] = 1
    out = det(imgs)
    assert len(out) == 2
    assert out[0]["boxes"].shape == (4, 4) and out[0]["labels"].dtype == torch.int64
    assert (out[0]["scores"][:-1] >= out[0]["scores"][1:]).all()
    assert out[1]["boxes"].shape == (0, 4) and out[1]["scores"].shape == (0,)
    boxes, crops = det.crops(imgs[0])
    assert crops.shape == (2, 1, 28, 28)
    # the crop frames the ink's longer side in 20 of 28 pixels: ink spans ~20 px of the 28
    cols = np.nonzero(crops[0, 0].numpy().max(0) > 0.2)[0]
    rows = np.nonzero(crops[0, 0].numpy().max(1) > 0.2)[0]
    assert 18 <= np.ptp(rows) + 1 <= 22 and np.ptp(cols) + 1 < np.ptp(rows) + 1


def test_crop_masks_the_neighbours():
    det = TwoStageDetector(num_classes=3).eval()
    img = torch.zeros(1, 40, 40)
    img[0, 10:30, 10:16] = 1  # a thin digit whose square crop reaches its neighbour
    img[0, 10:30, 20:26] = 0.8
    _, crops = det.crops(img)
    assert crops.shape[0] == 2
    assert float(crops[0].max()) == pytest.approx(1.0, abs=1e-6)
    assert float(crops[1].max()) == pytest.approx(0.8, abs=1e-6)  # no 1.0 from the other digit


def test_trained_two_stage_detects_digits():
    det, hist = train_two_stage(epochs=3, n_train=1000, batch_size=32, seed=0)
    assert hist["val_accuracy"][-1] > 0.6
    ds = detection_canvases(n=30, seed=9, split="test")
    m = mean_average_precision(det(ds.images), ds.targets)
    assert float(m["map_50"]) > 0.4


def test_output_size_and_time_rows():
    imgs = torch.zeros(3, 1, 48, 48)
    imgs[:, :, 8:30, 10:22] = 1
    imgs[0, :, 35:45, 30:40] = 1  # image 0 has two objects: mean K = 4/3
    rows = output_size_and_time(
        (10, 1000), images=imgs, grid=3, boxes_per_cell=2, backbone="tiny", repeats=1
    )
    got = {(r["num_classes"], r["model"]): r for r in rows}
    assert got[(10, "one-stage")]["output_size"] == 3 * 3 * (5 * 2 + 10)
    assert got[(1000, "one-stage")]["output_size"] == 3 * 3 * (5 * 2 + 1000)
    assert got[(1000, "two-stage")]["output_size"] == pytest.approx(4 / 3 * (4 + 1000))
    assert all(r["ms_per_image"] >= 0 for r in rows)
    # Both grow with C only through the last layer: 1000 - 10 more outputs of width 16 (tiny) / 84 (LeNet fc3).
    assert got[(1000, "one-stage")]["parameters"] - got[(10, "one-stage")]["parameters"] == 990 * (
        16 + 1
    )
    assert got[(1000, "two-stage")]["parameters"] - got[(10, "two-stage")]["parameters"] == 990 * (
        84 + 1
    )


@settings(max_examples=20, deadline=None)
@given(bad=st.sampled_from(["ndim", "nan", "text", "channels"]))
def test_bad_input_raises(bad):
    img = {
        "ndim": np.zeros((2, 3, 4, 5)),
        "nan": np.full((4, 4), np.nan),
        "text": np.array([["a"]]),
        "channels": np.zeros((3, 8, 8)),
    }[bad]
    with pytest.raises(ValueError, match="image"):
        propose(img)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="top_k"):
        TwoStageDetector(top_k=0)
    with pytest.raises(ValueError, match="images"):
        TwoStageDetector()(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="num_classes"):
        output_size_and_time(
            (0,), images=torch.zeros(1, 1, 16, 16), grid=2, backbone="tiny", repeats=1
        )

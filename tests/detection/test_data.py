"""detection.data: digit canvases (boxes tight, overlap bounded, held-out digits), YOLO folders, collate."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader

from mlimaging.detection import (
    YOLOFolder,
    box_iou,
    collate_detection,
    detection_canvases,
    load_yolo_folder,
    write_yolo_folder,
)
from mlimaging.detection.data import INK_THRESHOLD


@pytest.fixture(scope="module")
def canvases():
    return detection_canvases(n=60, canvas=96, digits=(1, 4), seed=0)


def test_canvas_shapes_and_counts(canvases):
    assert canvases.images.shape == (60, 1, 96, 96) and canvases.images.dtype == torch.float32
    assert 0 <= float(canvases.images.min()) and float(canvases.images.max()) <= 1
    counts = [len(t["labels"]) for t in canvases.targets]
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) == 4
    image, target = canvases[0]
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64
    assert set(torch.cat([t["labels"] for t in canvases.targets]).tolist()) <= set(range(10))


def test_boxes_tight_and_overlap_bounded(canvases):
    for image, t in (canvases[i] for i in range(len(canvases))):
        boxes = t["boxes"]
        assert (
            (boxes[:, :2] >= 0).all()
            and (boxes[:, 2:] <= 96).all()
            and (boxes[:, 2:] > boxes[:, :2]).all()
        )
        if len(boxes) > 1:
            iou = box_iou(boxes, boxes).fill_diagonal_(0)
            assert float(iou.max()) <= 0.1 + 1e-6
        ink = image[0] > INK_THRESHOLD
        inside = torch.zeros_like(ink)
        for x1, y1, x2, y2 in boxes.long().tolist():
            inside[y1:y2, x1:x2] = True
            # tight: every edge row/column of the box holds ink
            assert (
                ink[y1, x1:x2].any()
                and ink[y2 - 1, x1:x2].any()
                and ink[y1:y2, x1].any()
                and ink[y1:y2, x2 - 1].any()
            )
        assert not (ink & ~inside).any()  # no ink outside the boxes


def test_scale_range_changes_box_sizes():
    small = detection_canvases(n=20, canvas=64, digits=(1, 1), scale=(0.5, 0.6), seed=1)
    large = detection_canvases(n=20, canvas=64, digits=(1, 1), scale=(1.8, 2.0), seed=1)
    h = [
        torch.cat([t["boxes"][:, 3] - t["boxes"][:, 1] for t in d.targets]) for d in (small, large)
    ]
    assert (
        float(h[0].max()) <= 0.6 * 28 + 1 and float(h[1].min()) >= 0.6 * 28
    )  # MNIST ink is ~20 of 28 px tall


def test_seeded_and_held_out(canvases):
    again = detection_canvases(n=60, canvas=96, digits=(1, 4), seed=0)
    assert torch.equal(again.images, canvases.images)
    assert all(
        torch.equal(a["boxes"], b["boxes"])
        for a, b in zip(again.targets, canvases.targets, strict=True)
    )
    other = detection_canvases(n=60, canvas=96, seed=1)
    assert not torch.equal(other.images, canvases.images)
    test = detection_canvases(n=60, canvas=96, seed=0, split="test")
    used = [
        set(d.source.indices[torch.cat(d.source_indices).numpy()].tolist())
        for d in (canvases, test)
    ]
    assert used[0] and used[1] and not (used[0] & used[1])  # never the same digit image
    # labels are the source labels of the digits used
    src_labels = canvases.source.targets
    for t, idx in zip(canvases.targets, canvases.source_indices, strict=True):
        assert torch.equal(t["labels"], src_labels[idx])


def test_collate_and_loader(canvases):
    loader = DataLoader(canvases, batch_size=8, collate_fn=collate_detection)
    x, targets = next(iter(loader))
    assert (
        x.shape == (8, 1, 96, 96)
        and len(targets) == 8
        and all(t["boxes"].shape[1] == 4 for t in targets)
    )
    with pytest.raises(ValueError, match="one shape"):
        collate_detection([(torch.zeros(1, 8, 8), {}), (torch.zeros(1, 9, 8), {})])
    with pytest.raises(ValueError, match="empty"):
        collate_detection([])


def test_yolo_round_trip(tmp_path, canvases):
    sub = [canvases[i] for i in range(5)]
    root = write_yolo_folder(sub, tmp_path / "yolo")
    ds = load_yolo_folder(root)
    assert isinstance(ds, YOLOFolder) and len(ds) == 5
    for (img0, t0), (img1, t1) in zip(sub, (ds[i] for i in range(5)), strict=True):
        torch.testing.assert_close(img1, (img0 * 255).round() / 255, atol=1e-6, rtol=0)
        torch.testing.assert_close(t1["boxes"], t0["boxes"], atol=96 * 1e-6, rtol=0)
        assert torch.equal(t1["labels"], t0["labels"])
    with pytest.raises(ValueError, match="not empty"):
        write_yolo_folder(sub, root)
    write_yolo_folder(sub[:2], root, force=True)


def test_yolo_worked_example_and_missing_labels(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(np.zeros((50, 100, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "images" / "b.png")
    (tmp_path / "labels" / "a.txt").write_text("3 0.5 0.5 0.2 0.4\n\n7 0.1 0.2 0.2 0.4\n")
    ds = YOLOFolder(tmp_path)
    image, t = ds[0]
    assert image.shape == (3, 50, 100)
    # cx 50, cy 25, w 20, h 20 -> (40, 15, 60, 35); cx 10, cy 10, w 20, h 20 -> (0, 0, 20, 20)
    torch.testing.assert_close(t["boxes"], torch.tensor([[40.0, 15, 60, 35], [0, 0, 20, 20]]))
    assert t["labels"].tolist() == [3, 7]
    image, t = ds[1]
    assert image.shape == (1, 20, 20) and t["boxes"].shape == (0, 4)  # no label file: no objects


@settings(max_examples=20, deadline=None)
@given(
    line=st.sampled_from(
        [
            "3 0.5 0.5 0.2",
            "x 0.5 0.5 0.2 0.2",
            "-1 0.5 0.5 0.2 0.2",
            "1 0.5 0.5 1.2 0.2",
            "1 a 0.5 0.2 0.2",
            "1 0.5 0.5 0.2 0.2 9",
            "1 nan 0.5 0.2 0.2",
        ]
    )
)
def test_yolo_malformed_line_names_file_and_line(tmp_path_factory, line):
    root = tmp_path_factory.mktemp("bad")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "images" / "a.png")
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n" + line + "\n")
    with pytest.raises(ValueError, match=r"a\.txt:2"):
        YOLOFolder(root)


def test_yolo_missing_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="images/"):
        YOLOFolder(tmp_path)
    (tmp_path / "images").mkdir()
    with pytest.raises(FileNotFoundError, match="no .png"):
        YOLOFolder(tmp_path)


@settings(max_examples=20, deadline=None)
@given(
    kw=st.sampled_from(
        [
            {"n": 0},
            {"n": 2, "canvas": 30},
            {"n": 2, "digits": (3, 1)},
            {"n": 2, "digits": (0, 2)},
            {"n": 2, "scale": (1.0, float("nan"))},
            {"n": 2, "max_overlap": 1.5},
            {"n": 2, "digits": (1.5, 2)},
            {"n": 1, "canvas": 40, "digits": (30, 30), "max_overlap": 0.0},
        ]
    )
)
def test_bad_canvas_arguments(kw):
    kw = {"canvas": 64, "seed": 0, **kw}
    with pytest.raises(ValueError):
        detection_canvases(**kw)

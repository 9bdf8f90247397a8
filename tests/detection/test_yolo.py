"""YOLO: output shape, target encoding, decoding into boxes, the training step, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.calc import yolo_output_shape
from mlimaging.detection.decode import decode, grid_boxes
from mlimaging.detection.loss import yolo_loss
from mlimaging.detection.train import (
    YOLODataset,
    YOLOStep,
    load_detector,
    save_detector,
    train_detector,
)
from mlimaging.detection.yolo import YOLO, encode_targets
from mlimaging.models import create_model, list_models, model_info


def _target(boxes, labels):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}


def _perfect(target_grid: torch.Tensor, boxes_per_cell: int) -> torch.Tensor:
    """The prediction grid a perfect detector gives: the box in predictor 0 with confidence 1
    (the IoU of a perfect box), the other predictors at confidence 0, the one-hot class."""
    n, s, _, d = target_grid.shape
    c = d - 5
    pred = torch.zeros(n, s, s, 5 * boxes_per_cell + c)
    pred[..., :5] = target_grid[..., :5]
    pred[..., 5 * boxes_per_cell :] = target_grid[..., 5:]
    empty = target_grid[..., 4] == 0
    pred[..., 5 * boxes_per_cell :][empty] = 1.0 / c
    return pred


# ------------------------------------------------------------------------------------- model
@pytest.mark.parametrize("grid", [3, 6, 7, 12])
@pytest.mark.parametrize(("b", "c"), [(2, 10), (1, 3)])
def test_output_shape_agrees_with_calc(grid, b, c):
    net = YOLO(grid=grid, boxes_per_cell=b, num_classes=c, backbone="tiny").eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 96, 96))
    assert tuple(out.shape) == (2, *yolo_output_shape(grid, b, c))
    assert net.output_shape == yolo_output_shape(grid, b, c)
    assert ((out[..., : 5 * b] > 0) & (out[..., : 5 * b] < 1)).all()  # sigmoids
    torch.testing.assert_close(out[..., 5 * b :].sum(-1), torch.ones(2, grid, grid))  # softmax


def test_registered_and_skipped_by_the_logits_suite():
    assert "yolo" in list_models()
    info = model_info("yolo")
    assert info.detector and info.input_shape == (1, 96, 96)
    assert info.defaults["num_classes"] == 10 and info.defaults["grid"] == 7


def test_parameter_count_by_hand():
    # grid 7 on 96 px: 3 halvings (96/8 = 12 >= 7 > 96/16). 3x3 conv without bias: 9 c_in c_out, BN(c) 2c.
    # conv 1->16 s2 (144 + 32), 16->32 s2 (4,608 + 64), 32->64 + pool (18,432 + 128); head convs 64->128
    # (73,728 + 256), 128->128 (147,456 + 256), 128->128 dilated (147,456 + 256); 1x1 128 -> 5*2+10 (2,560 + 20).
    expected = 176 + 4672 + 18560 + 73984 + 147712 + 147712 + 2580
    assert expected == 395396
    assert sum(p.numel() for p in create_model("yolo").parameters()) == expected


def test_seeded_weights_and_backward():
    a, b = (
        create_model("yolo", backbone="tiny", seed=0),
        create_model("yolo", backbone="tiny", seed=0),
    )
    assert all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    x = torch.rand(2, 1, 96, 96, generator=torch.Generator().manual_seed(0))
    y = encode_targets(
        [_target([[10, 10, 30, 40]], [3]), _target([], [])], grid=7, num_classes=10, image_size=96
    )
    yolo_loss(a(x), y).backward()
    grads = [p.grad for p in a.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bad_inputs_raise():
    net = YOLO(grid=3, backbone="tiny")
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match="grid"):
        net(torch.zeros(1, 1, 2, 2))
    for kw in ({"num_classes": 0}, {"grid": 0}, {"boxes_per_cell": 0}, {"backbone": "huge"}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            YOLO(**kw)


# ------------------------------------------------------------------------------------- encoding
def test_encode_worked_example():
    # 96 px, 3 x 3 grid (32-px cells). Box (24, 8)-(56, 40): centre (40, 24) -> row 0, column 1,
    # offsets (40/32 - 1, 24/32) = (0.25, 0.75), sqrt(32/96) = 0.5774 for both sides, class 3.
    y = encode_targets([_target([[24, 8, 56, 40]], [3])], grid=3, num_classes=4, image_size=96)
    expected = torch.zeros(1, 3, 3, 9)
    s = math.sqrt(32 / 96)
    expected[0, 0, 1] = torch.tensor([0.25, 0.75, s, s, 1, 0, 0, 0, 1])
    torch.testing.assert_close(y, expected)


def test_encode_keeps_the_largest_box_of_a_cell_and_handles_empty_images():
    t = _target(
        [[0, 0, 10, 10], [2, 2, 30, 30], [1, 1, 6, 6]], [0, 1, 2]
    )  # centres all in cell (0, 0)
    y = encode_targets([t, _target([], [])], grid=2, num_classes=3, image_size=64)
    assert y[0, ..., 4].sum() == 1 and y[0, 0, 0, 6] == 1  # class 1: the 28 x 28 box
    assert y[1].abs().sum() == 0
    ds = YOLODataset(torch.zeros(2, 1, 64, 64), [t, _target([], [])], grid=2, num_classes=3)
    assert ds.dropped == 2


def test_encode_rectangular_image_and_edge_centre():
    # (height, width) = (40, 80), grid 2: a box centred on the right edge stays in the last column.
    y = encode_targets(_target([[70, 0, 90, 20]], [0]), grid=2, num_classes=1, image_size=(40, 80))
    assert y[0, 0, 1, 4] == 1
    torch.testing.assert_close(
        y[0, 0, 1, :4], torch.tensor([1.0, 0.5, math.sqrt(20 / 80), math.sqrt(20 / 40)])
    )


@settings(max_examples=25, deadline=None)
@given(
    bad=st.sampled_from(["x2<x1", "label", "shape", "nan", "labels_len", "not_dict"]),
    grid=st.integers(1, 8),
)
def test_encode_bad_input_raises(bad, grid):
    t = {"boxes": torch.tensor([[1.0, 1.0, 5.0, 5.0]]), "labels": torch.tensor([0])}
    if bad == "x2<x1":
        t["boxes"] = torch.tensor([[5.0, 1.0, 1.0, 5.0]])
    elif bad == "label":
        t["labels"] = torch.tensor([7])
    elif bad == "shape":
        t["boxes"] = torch.ones(1, 3)
    elif bad == "nan":
        t["boxes"] = torch.tensor([[1.0, float("nan"), 5.0, 5.0]])
    elif bad == "labels_len":
        t["labels"] = torch.tensor([0, 1])
    else:
        t = [1, 2, 3]
    with pytest.raises(ValueError, match="targets"):
        encode_targets([t], grid=grid, num_classes=3, image_size=32)


# ------------------------------------------------------------------------------------- decoding
def test_decode_hand_built_grid():
    # 2 x 2 grid on 64 x 64, B = 2, C = 3 (cells of 32 px).
    pred = torch.zeros(1, 2, 2, 13)
    pred[..., 5:10] = 0  # second predictor: confidence 0
    pred[..., 10:] = 1 / 3
    # Cell (0, 0): box centre (16, 16), 16 x 16 (sqrt(16/64) = 0.5), conf 0.9, class 2 prob 0.8 -> 0.72.
    pred[0, 0, 0, :5] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9])
    pred[0, 0, 0, 10:] = torch.tensor([0.1, 0.1, 0.8])
    # Its second predictor: centre (17.6, 16), same size, conf 0.6 -> 0.48 for class 2: IoU with the
    # first = 14.4 * 16 / (2 * 256 - 14.4 * 16) = 0.818 > 0.5, suppressed.
    pred[0, 0, 0, 5:10] = torch.tensor([0.55, 0.5, 0.5, 0.5, 0.6])
    # Cell (1, 1): centre ((1 + 0.25) * 32, (1 + 0.5) * 32) = (40, 48), 32 x 16 (sqrt 0.5, sqrt 0.25),
    # conf 0.5; classes 0 and 1 at 0.6 and 0.4 -> scores 0.3 and 0.2 (the latter under 0.25).
    pred[0, 1, 1, :5] = torch.tensor([0.25, 0.5, math.sqrt(0.5), 0.5, 0.5])
    pred[0, 1, 1, 10:] = torch.tensor([0.6, 0.4, 0.0])
    out = decode(pred, image_size=64, boxes_per_cell=2)
    assert len(out) == 1
    torch.testing.assert_close(
        out[0]["boxes"], torch.tensor([[8.0, 8.0, 24.0, 24.0], [24.0, 40.0, 56.0, 56.0]])
    )
    torch.testing.assert_close(out[0]["scores"], torch.tensor([0.72, 0.3]))
    assert out[0]["labels"].tolist() == [2, 0]
    # With a lower threshold the class-1 copy of the second box appears (class-wise NMS keeps it).
    low = decode(pred, image_size=64, boxes_per_cell=2, conf_threshold=0.15)
    assert sorted(
        zip(
            low[0]["labels"].tolist(), [round(s, 2) for s in low[0]["scores"].tolist()], strict=True
        )
    ) == [(0, 0.3), (1, 0.2), (2, 0.72)]
    # Without suppression (threshold 1) the overlapping second predictor survives.
    assert len(decode(pred, image_size=64, iou_threshold=1.0)[0]["boxes"]) == 3


def test_encode_then_decode_round_trip():
    from mlimaging.detection.data import detection_canvases

    ds = detection_canvases(n=20, seed=3, split="test")
    y = encode_targets(ds.targets, grid=12, num_classes=10, image_size=96)
    out = decode(_perfect(y, 2), image_size=96, boxes_per_cell=2, conf_threshold=0.5)
    for det, t in zip(out, ds.targets, strict=True):
        order = torch.argsort(t["boxes"][:, 0] * 1000 + t["boxes"][:, 1])
        got = torch.argsort(det["boxes"][:, 0] * 1000 + det["boxes"][:, 1])
        torch.testing.assert_close(det["boxes"][got], t["boxes"][order], atol=1e-4, rtol=0)
        assert det["labels"][got].tolist() == t["labels"][order].tolist()
        assert torch.allclose(det["scores"], torch.ones(len(t["labels"])))


def test_grid_boxes_centres():
    pred = torch.zeros(1, 2, 2, 6)
    pred[..., :2] = 0.5
    centres = grid_boxes(pred, boxes_per_cell=1, image_size=(20, 40))[0, :, :, 0, :2]
    torch.testing.assert_close(
        centres,
        torch.tensor(
            [[[10.0, 5.0], [30.0, 5.0]], [[10.0, 15.0], [30.0, 15.0]]], dtype=torch.float64
        ),
    )


def test_decode_bad_input_raises():
    with pytest.raises(ValueError, match="pred"):
        decode(torch.zeros(1, 2, 3, 12))
    with pytest.raises(ValueError, match="last axis"):
        decode(torch.zeros(1, 2, 2, 12), boxes_per_cell=2, num_classes=3)
    with pytest.raises(ValueError, match="conf_threshold"):
        decode(torch.zeros(1, 2, 2, 12), conf_threshold=1.5)
    with pytest.raises(ValueError, match="finite"):
        decode(torch.full((1, 2, 2, 12), float("nan")))


# ------------------------------------------------------------------------------------- training
def test_step_logs_terms_and_train_detector_learns(tmp_path):
    from mlimaging.detection.data import detection_canvases
    from mlimaging.training import Callback

    class StopAfter2(Callback):
        def on_epoch_end(self, state):
            state.stop_training = state.epoch == 2

    ds = detection_canvases(n=32, canvas=48, digits=(1, 2), scale=(0.8, 1.0), seed=0)
    train, val = (ds.images, ds.targets), (ds.images[:8], ds.targets[:8])
    kw = dict(epochs=3, batch_size=8, lr=1e-2, checkpoint_dir=tmp_path / "run")
    net = YOLO(grid=3, num_classes=10, image_size=48, backbone="tiny")
    net, hist = train_detector(train, val, model=net, callbacks=[StopAfter2()], **kw)
    assert len(hist) == 2  # interrupted
    assert {"loss", "coord", "obj", "noobj", "cls", "iou", "val_loss"} <= set(hist.epochs[-1])
    assert hist["loss"][-1] < hist["loss"][0]
    assert not net.training and hist.cpu_seconds > 0
    # Resumed with the same settings, the run continues from last.pt to epoch 3.
    net2 = YOLO(grid=3, num_classes=10, image_size=48, backbone="tiny")
    _, hist2 = train_detector(train, val, model=net2, resume=True, **kw)
    assert [e["epoch"] for e in hist2.epochs] == [1, 2, 3]


def test_yolo_step_equals_the_loss():
    net = YOLO(grid=2, num_classes=2, image_size=32, backbone="tiny").eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    y = encode_targets([_target([[2, 2, 12, 12]], [1])] * 2, grid=2, num_classes=2, image_size=32)
    with torch.no_grad():
        assert torch.equal(YOLOStep().validation_loss(net, (x, y)), yolo_loss(net(x), y))


def test_checkpoint_round_trip(tmp_path):
    net = YOLO(grid=6, boxes_per_cell=1, num_classes=4, backbone="tiny").eval()
    path = save_detector(net, tmp_path / "model.pt", epochs=3, data="mnist5k")
    again, meta = load_detector(path)
    assert again.config == net.config and meta["epochs"] == 3 and meta["data"] == "mnist5k"
    x = torch.rand(1, 1, 96, 96)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a detector checkpoint"):
        load_detector(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        load_detector(tmp_path / "missing.pt")


def _reference_decode(pred, *, b, image_size, conf_threshold, iou_threshold, tv):
    """A cell-by-cell loop over boxes and classes (the paper's description), with torchvision's
    batched_nms (Python offset trick on the CPU shim's nms)."""
    n, s, _, d = pred.shape
    c = d - 5 * b
    cell = image_size / s
    out = []
    for k in range(n):
        boxes, scores, labels = [], [], []
        for i in range(s):
            for j in range(s):
                for p in range(b):
                    x, y, sw, sh, conf = pred[k, i, j, 5 * p : 5 * p + 5].double().tolist()
                    cx, cy, w, h = (
                        (j + x) * cell,
                        (i + y) * cell,
                        sw**2 * image_size,
                        sh**2 * image_size,
                    )
                    box = [
                        max(cx - w / 2, 0),
                        max(cy - h / 2, 0),
                        min(cx + w / 2, image_size),
                        min(cy + h / 2, image_size),
                    ]
                    for cls in range(c):
                        score = conf * float(pred[k, i, j, 5 * b + cls])
                        if score >= conf_threshold:
                            boxes.append(box), scores.append(score), labels.append(cls)
        boxes = torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
        scores, labels = (
            torch.tensor(scores, dtype=torch.float64),
            torch.tensor(labels, dtype=torch.int64),
        )
        keep = tv.batched_nms(boxes, scores, labels, iou_threshold)
        out.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_decode_oracle_reference_loop_and_torchvision_nms(seed):
    tv = pytest.importorskip("torchvision.ops")  # tests/conftest.py installed the CPU shim
    g = torch.Generator().manual_seed(seed)
    b, c, s = 2, 4, 5
    pred = torch.rand(3, s, s, 5 * b + c, generator=g)
    pred[..., 5 * b :] = torch.softmax(4 * torch.randn(3, s, s, c, generator=g), -1)
    ours = decode(
        pred,
        image_size=80,
        boxes_per_cell=b,
        conf_threshold=0.2,
        iou_threshold=0.4,
        max_detections=None,
    )
    ref = _reference_decode(pred, b=b, image_size=80, conf_threshold=0.2, iou_threshold=0.4, tv=tv)
    for a, r in zip(ours, ref, strict=True):
        assert len(a["scores"]) == len(r["scores"]) > 0
        torch.testing.assert_close(a["scores"].double(), r["scores"], atol=1e-6, rtol=0)
        torch.testing.assert_close(a["boxes"].double(), r["boxes"], atol=1e-4, rtol=0)
        assert torch.equal(a["labels"], r["labels"])


def test_evaluate_detector_perfect_and_yolo_paths():
    from torch import nn

    from mlimaging.detection import detection_canvases, evaluate_detector

    ds = detection_canvases(n=6, seed=2, split="test")

    class Oracle(nn.Module):  # returns the ground truth, in order, with score 1
        def __init__(self):
            super().__init__()
            self.k = 0

        def forward(self, x):
            out = [
                {
                    **ds.targets[self.k + i],
                    "scores": torch.ones(len(ds.targets[self.k + i]["labels"])),
                }
                for i in range(len(x))
            ]
            self.k += len(x)
            return out

    res = evaluate_detector(Oracle(), ds, batch_size=4)
    assert float(res["map"]) == pytest.approx(1.0) and len(res["detections"]) == 6
    net = YOLO(grid=6, backbone="tiny").train()
    res = evaluate_detector(net, (ds.images, ds.targets), batch_size=4)
    assert 0.0 <= float(res["map_50"]) <= 1.0 and net.training  # mode restored
    with pytest.raises(ValueError, match="data"):
        evaluate_detector(net, (ds.images, ds.targets[:2]))

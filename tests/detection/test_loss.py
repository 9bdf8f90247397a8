"""yolo_loss: a hand-computed value, zero for a perfect prediction, monotone in the box error."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mlimaging.detection.loss import yolo_loss, yolo_loss_terms
from mlimaging.detection.yolo import encode_targets


def _tiny(x0=0.5, sw0=0.5):
    """2 x 2 grid, B = 2, C = 2; one object (class 0) in cell (0, 1): x = y = 0.5, sqrt w = sqrt h = 0.5."""
    target = torch.zeros(1, 2, 2, 7)
    target[0, 0, 1] = torch.tensor([0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 0.0])
    pred = torch.zeros(1, 2, 2, 12)
    pred[0, 0, 1, :5] = torch.tensor([x0, 0.5, sw0, 0.5, 0.8])  # predictor 0
    pred[0, 0, 1, 5:10] = torch.tensor([0.7, 0.5, 0.5, 0.5, 0.4])  # predictor 1, shifted right
    pred[0, 0, 1, 10:] = torch.tensor([0.7, 0.3])
    pred[0, 0, 0, [4, 9]] = torch.tensor([0.2, 0.0])
    pred[0, 1, 0, [4, 9]] = torch.tensor([0.1, 0.1])
    pred[0, 1, 1, [4, 9]] = torch.tensor([0.0, 0.3])
    return pred, target


def test_hand_computed_exact_box():
    # Predictor 0 is the ground truth (IoU 1) -> responsible: coord 0, obj (0.8 - 1)^2 = 0.04.
    # Predictor 1: centre moved 0.2 cell = 0.1 image on a 0.25-wide box: IoU 0.15*0.25 / (0.125 - 0.0375) = 0.4286;
    # not responsible: no-object 0.5 * 0.4^2 = 0.08. Other cells: 0.5 * (0.2^2 + 0.1^2 + 0.1^2 + 0.3^2) = 0.075.
    # Classes: (0.7 - 1)^2 + 0.3^2 = 0.18. Total 0.375.
    pred, target = _tiny()
    terms = yolo_loss_terms(pred, target)
    expected = {"coord": 0.0, "obj": 0.04, "noobj": 0.155, "cls": 0.18, "loss": 0.375, "iou": 1.0}
    for k, v in expected.items():
        assert float(terms[k]) == pytest.approx(v, abs=1e-6), k
    # The predictors' order does not matter: the responsible one is chosen by IoU.
    swapped = pred.clone()
    swapped[..., :5], swapped[..., 5:10] = pred[..., 5:10], pred[..., :5]
    assert float(yolo_loss(swapped, target)) == pytest.approx(0.375, abs=1e-6)


def test_hand_computed_offset_box():
    # Predictor 0: x = 0.6 (centre 0.8 of the image instead of 0.75), sqrt w = 0.6 (w = 0.36):
    # x-range 0.62..0.98 vs 0.625..0.875 -> inter 0.25 * 0.25, union 0.36 * 0.25 -> IoU 0.6944 > 0.4286:
    # still responsible. coord 5 * (0.1^2 + 0.1^2) = 0.1; obj (0.8 - 0.69444)^2 = 0.011142.
    pred, target = _tiny(x0=0.6, sw0=0.6)
    terms = yolo_loss_terms(pred, target)
    assert float(terms["iou"]) == pytest.approx(0.0625 / 0.09, abs=1e-6)
    assert float(terms["coord"]) == pytest.approx(0.1, abs=1e-6)
    assert float(terms["obj"]) == pytest.approx((0.8 - 0.0625 / 0.09) ** 2, abs=1e-6)
    assert float(terms["loss"]) == pytest.approx(0.1 + 0.011142 + 0.155 + 0.18, abs=1e-5)
    # rescore=False: the confidence target is 1.
    assert float(yolo_loss(pred, target, rescore=False)) == pytest.approx(
        0.1 + 0.04 + 0.155 + 0.18, abs=1e-6
    )
    # The weights scale their terms.
    t2 = yolo_loss_terms(pred, target, lambda_coord=1.0, lambda_noobj=1.0)
    assert float(t2["coord"]) == pytest.approx(0.02, abs=1e-6) and float(
        t2["noobj"]
    ) == pytest.approx(0.31)


def _perfect(y: torch.Tensor, b: int) -> torch.Tensor:
    n, s, _, d = y.shape
    pred = torch.zeros(n, s, s, 5 * b + d - 5)
    pred[..., :5] = y[..., :5]
    pred[..., 5 * b :] = y[..., 5:]
    return pred


@pytest.mark.parametrize(("grid", "b"), [(3, 1), (6, 2), (12, 3)])
def test_zero_for_a_perfect_prediction(grid, b):
    from mlimaging.detection.data import detection_canvases

    ds = detection_canvases(n=16, seed=1, split="test")
    y = encode_targets(ds.targets, grid=grid, num_classes=10, image_size=96)
    assert float(yolo_loss(_perfect(y, b), y)) == 0.0
    noisy = _perfect(y, b) + 0.01
    assert float(yolo_loss(noisy, y)) > 0


def test_increases_with_box_offset():
    _, target = _tiny()
    losses = []
    for shift in (0.0, 0.05, 0.1, 0.2, 0.3, 0.45):
        pred = torch.zeros(1, 2, 2, 12)
        pred[0, 0, 1, :5] = torch.tensor([0.5 + shift, 0.5 - shift / 2, 0.5 + shift / 3, 0.5, 1.0])
        pred[0, 0, 1, 10] = 1.0
        losses.append(float(yolo_loss(pred, target)))
    assert losses[0] == 0.0
    assert all(a < b for a, b in zip(losses, losses[1:], strict=False))


def test_gradient_does_not_flow_through_the_iou_target():
    # d loss / d x of the responsible box is the coordinate term's 2 lambda (x - x_hat) only.
    pred, target = _tiny(x0=0.6)
    pred.requires_grad_(True)
    yolo_loss(pred, target, lambda_coord=5.0).backward()
    assert float(pred.grad[0, 0, 1, 0]) == pytest.approx(2 * 5.0 * 0.1, abs=1e-5)
    assert (
        float(pred.grad[0, 0, 1, 5]) == 0.0
    )  # predictor 1 is not responsible: no coordinate gradient
    # the no-object term pushes its confidence down: 2 * 0.5 * 0.4
    assert float(pred.grad[0, 0, 1, 9]) == pytest.approx(0.4, abs=1e-6)


def test_mean_over_images():
    pred, target = _tiny()
    both = yolo_loss(torch.cat([pred, pred]), torch.cat([target, target]))
    assert float(both) == pytest.approx(float(yolo_loss(pred, target)))


@settings(max_examples=30, deadline=None)
@given(bad=st.sampled_from(["grid", "batch", "channels", "lambda", "nan", "int", "ndim"]))
def test_bad_input_raises(bad):
    pred, target = _tiny()
    kw = {}
    if bad == "grid":
        pred = torch.zeros(1, 3, 3, 12)
    elif bad == "batch":
        pred = torch.zeros(2, 2, 2, 12)
    elif bad == "channels":
        pred = torch.zeros(1, 2, 2, 13)
    elif bad == "lambda":
        kw = {"lambda_noobj": -1.0}
    elif bad == "nan":
        target[0, 0, 0, 0] = float("nan")
    elif bad == "int":
        pred = pred.long()
    else:
        pred = pred[0]
    with pytest.raises(ValueError):
        yolo_loss(pred, target, **kw)

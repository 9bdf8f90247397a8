"""The test-support shim that lets timm and segment-anything import on CPU torch."""

from __future__ import annotations

import pytest
import torch

torchvision_ops = pytest.importorskip("torchvision.ops")


def test_nms_semantics_on_a_hand_example():
    # Box 1 overlaps box 0 with IoU 81/121 > 0.5 and is suppressed; box 2 is disjoint.
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
    scores = torch.tensor([0.8, 0.9, 0.7])
    assert torchvision_ops.nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert torchvision_ops.nms(boxes, scores, 0.7).tolist() == [1, 0, 2]
    labels = torch.tensor([0, 1, 0])  # different classes never suppress each other
    assert sorted(torchvision_ops.batched_nms(boxes, scores, labels, 0.5).tolist()) == [0, 1, 2]

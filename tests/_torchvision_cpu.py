"""Let the oracle packages that import torchvision (timm, segment-anything) import on CPU torch.

PyPI's ``torchvision==0.28.0`` wheel (the one matching ``torch==2.13.0``) is built for CUDA:
its ``_C`` extension links ``libtorch_cuda.so``, so on the CPU build of torch the extension
does not load, and ``import torchvision`` then fails while registering fake kernels for the
``torchvision::nms`` and ``torchvision::qnms`` operators that were never defined. The
oracles only need torchvision's Python parts (PIL resizing, ``box_area``) and ``nms``.

:func:`install` defines those two operators with a plain reference implementation (greedy
NMS by decreasing score, a stable sort, boxes suppressed when IoU > threshold, exactly the
documented semantics of ``torchvision.ops.nms``) and marks the extension as loaded. It does
nothing when torchvision is absent or its extension loads (a matching CPU or CUDA build).
This is test support only: mlimaging itself never imports torchvision.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

_LIB: torch.library.Library | None = None


def reference_nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices kept by greedy NMS, in decreasing score order (xyxy boxes)."""
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes.double()
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        lt = torch.maximum(boxes[i, :2], boxes[:, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = (rb - lt).clamp(min=0).prod(dim=1)
        iou = inter / (area[i] + area - inter)
        suppressed |= iou > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def _extension_loads(origin: Path) -> bool:
    so = next(iter(sorted(origin.parent.glob("_C*.so")) + sorted(origin.parent.glob("_C*.pyd"))), None)
    if so is None:
        return False
    try:
        torch.ops.load_library(str(so))
        return True
    except (OSError, RuntimeError):
        return False


def install() -> bool:
    """Make ``import torchvision`` work on CPU torch; True when the shim was needed."""
    global _LIB
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or _LIB is not None:
        return _LIB is not None
    if _extension_loads(Path(spec.origin)):
        return False
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.impl("nms", reference_nms, "CPU")
    _LIB = lib
    import torchvision.extension

    torchvision.extension._has_ops = lambda: True
    return True

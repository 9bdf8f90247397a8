"""Object detection: boxes and non-maximum suppression, mean average precision, digit canvases,
YOLO-format folders, and a single-shot grid detector (YOLO).

Box conventions (``xyxy`` pixels, ``(N, 4)``) are fixed once in :mod:`mlimaging.detection.boxes`.
"""

from __future__ import annotations

from mlimaging.detection.boxes import batched_nms, box_area, box_convert, box_iou, clip_boxes, nms
from mlimaging.detection.data import (
    DetectionCanvases,
    YOLOFolder,
    collate_detection,
    detection_canvases,
    load_yolo_folder,
    write_yolo_folder,
)
from mlimaging.detection.metrics import mean_average_precision

__all__ = [
    "DetectionCanvases",
    "YOLOFolder",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes",
    "collate_detection",
    "detection_canvases",
    "load_yolo_folder",
    "mean_average_precision",
    "nms",
    "write_yolo_folder",
]

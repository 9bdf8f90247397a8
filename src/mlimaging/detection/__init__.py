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
from mlimaging.detection.decode import decode, grid_boxes
from mlimaging.detection.loss import yolo_loss, yolo_loss_terms
from mlimaging.detection.metrics import mean_average_precision
from mlimaging.detection.train import (
    DEFAULT_TRAINING,
    YOLODataset,
    YOLOStep,
    evaluate_detector,
    load_detector,
    save_detector,
    train_detector,
)
from mlimaging.detection.two_stage import (
    TwoStageDetector,
    output_size_and_time,
    propose,
    train_two_stage,
)
from mlimaging.detection.yolo import BACKBONES, YOLO, encode_targets

__all__ = [
    "BACKBONES",
    "DEFAULT_TRAINING",
    "TwoStageDetector",
    "YOLO",
    "YOLODataset",
    "YOLOStep",
    "decode",
    "encode_targets",
    "evaluate_detector",
    "grid_boxes",
    "load_detector",
    "output_size_and_time",
    "propose",
    "save_detector",
    "train_detector",
    "train_two_stage",
    "yolo_loss",
    "yolo_loss_terms",
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

"""Segment Anything (SAM, Kirillov et al. 2023, arXiv:2304.02643): promptable segmentation.

- :class:`SAM` (``model.py``): image encoder (``image_encoder.py``), prompt encoder
  (``prompt_encoder.py``) and mask decoder (``mask_decoder.py``, ``transformer.py``) with
  the official checkpoint names; ``encode`` / ``decode`` / ``forward`` for training.
- :class:`SAMConfig`, ``SAM_CONFIGS`` (``config.py``): ``vit_b``, ``vit_l``, ``vit_h`` and
  a CPU-sized ``tiny`` (registered as ``create_model("sam_tiny")``).
- :func:`load_sam_checkpoint`, :func:`infer_sam_config` (``checkpoint.py``): official
  ViT-B/L/H and MedSAM files, or our own, with ``weights_only=True``.
- :class:`SAMPredictor`, :func:`to_sam_rgb` (``predictor.py``): encode an image once, then
  masks for point, box and mask prompts in the image's pixel frame, preprocessed as
  segment-anything (other intensity ranges windowed to 0..255 first).
- :func:`automatic_masks` (``automatic.py``): masks of everything from a grid of point
  prompts, filtered by predicted IoU and stability, de-duplicated by box NMS.
- :class:`SAMStep`, :func:`sample_prompts`, :func:`sam_loss`, :func:`predict_masks`
  (``train.py``): training and fine-tuning through :func:`mlimaging.training.fit` with point
  and box prompts sampled from the ground truth (focal + Dice + IoU loss, as SAM).

Examples
--------
>>> import torch
>>> from mlimaging.models.sam import SAM
>>> _ = torch.manual_seed(0)
>>> sam = SAM("tiny").eval()
>>> with torch.no_grad():
...     logits, iou = sam(torch.zeros(1, 3, 128, 128), boxes=torch.tensor([[20.0, 30.0, 90.0, 100.0]]))
>>> logits.shape, iou.shape
(torch.Size([1, 3, 32, 32]), torch.Size([1, 3]))
"""

from __future__ import annotations

from mlimaging.models.sam.automatic import automatic_masks
from mlimaging.models.sam.checkpoint import infer_sam_config, load_sam_checkpoint, variant_of
from mlimaging.models.sam.config import SAM_CONFIGS, SAMConfig
from mlimaging.models.sam.model import SAM, sam_tiny
from mlimaging.models.sam.predictor import SAMPredictor, to_sam_rgb
from mlimaging.models.sam.train import SAMStep, predict_masks, sam_loss, sample_prompts

__all__ = [
    "SAM",
    "SAM_CONFIGS",
    "SAMConfig",
    "SAMPredictor",
    "SAMStep",
    "automatic_masks",
    "infer_sam_config",
    "load_sam_checkpoint",
    "predict_masks",
    "sam_loss",
    "sam_tiny",
    "sample_prompts",
    "to_sam_rgb",
    "variant_of",
]

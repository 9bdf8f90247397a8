r"""Segment Anything (SAM): an image encoder, a prompt encoder and a mask decoder.

SAM (Kirillov et al. 2023) splits promptable segmentation into a heavy image encoder run
once per image and a light decoder run once per prompt:

.. math::

    E = f_{\mathrm{enc}}\Big(\operatorname{pad}\big(\tfrac{x - \mu}{\sigma}\big)\Big), \qquad
    (M, \widehat{\mathrm{IoU}}) = f_{\mathrm{dec}}\big(E + f_{\mathrm{dense}}(m),\;
    [\,t_{\mathrm{out}};\, f_{\mathrm{sparse}}(\text{points}, \text{box})\,]\big),

where :math:`x` is an RGB image on the 0-255 scale whose longer side is the encoder size
:math:`S`, :math:`\mu, \sigma` the per-channel pixel statistics, :math:`m` an optional mask
prompt (low-resolution logits, e.g. a previous prediction) and :math:`M` the
low-resolution mask logits (:math:`4g \times 4g`, :math:`g = S / p`); a pixel is in the
mask when its logit, upsampled to the image, exceeds ``mask_threshold = 0``.

:class:`SAM` holds the three parts with the official checkpoint names (``image_encoder``,
``prompt_encoder``, ``mask_decoder``), so the published ViT-B/L/H files and MedSAM's load
with ``load_state_dict(strict=True)`` (see :func:`~mlimaging.models.sam.load_sam_checkpoint`).
Prompts are in the *encoder frame*: pixel coordinates of the resized, padded
:math:`S \times S` input, x = column, y = row.

References
----------
Kirillov A., Mintun E., Ravi N., Mao H., Rolland C., Gustafson L., Xiao T., Whitehead S.,
Berg A. C., Lo W.-Y., Dollar P., Girshick R. (2023). Segment Anything. ICCV.
arXiv:2304.02643.

Ma J., He Y., Li F., Han L., You C., Wang B. (2024). Segment anything in medical images
(MedSAM). Nature Communications 15, 654. arXiv:2304.12306.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models.registry import register_model
from mlimaging.models.sam.config import SAM_CONFIGS, SAMConfig
from mlimaging.models.sam.image_encoder import ImageEncoder
from mlimaging.models.sam.mask_decoder import MaskDecoder
from mlimaging.models.sam.prompt_encoder import PromptEncoder, check_prompts

__all__ = ["SAM", "sam_tiny"]


class SAM(nn.Module):
    """Segment Anything: ``encode`` images once, ``decode`` any number of prompts.

    Parameters
    ----------
    config : SAMConfig or str
        The sizes, or a key of ``SAM_CONFIGS`` (``"vit_b"``, ``"vit_l"``, ``"vit_h"``,
        ``"tiny"``).

    Attributes
    ----------
    image_encoder, prompt_encoder, mask_decoder : nn.Module
        The three parts (official checkpoint names).
    pixel_mean, pixel_std : Tensor
        ``(3, 1, 1)`` buffers, not saved in the state dict.
    mask_threshold : float
        Logit threshold of a mask pixel (0.0).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> sam = SAM("tiny").eval()
    >>> image = torch.rand(1, 3, 128, 96) * 255  # longer side = img_size
    >>> embeddings = sam.encode(sam.normalize_and_pad(image))
    >>> embeddings.shape
    torch.Size([1, 128, 8, 8])
    >>> points = torch.tensor([[[40.0, 64.0]], [[20.0, 30.0]]])  # two prompts, one point each
    >>> logits, iou = sam.decode(embeddings, points=points, point_labels=torch.ones(2, 1))
    >>> logits.shape, iou.shape
    (torch.Size([2, 3, 32, 32]), torch.Size([2, 3]))
    >>> logits, iou = sam.decode(embeddings, boxes=torch.tensor([[10.0, 20.0, 60.0, 90.0]]), multimask=False)
    >>> logits.shape
    torch.Size([1, 1, 32, 32])
    """

    mask_threshold: float = 0.0

    def __init__(self, config: SAMConfig | str = "vit_b") -> None:
        super().__init__()
        if isinstance(config, str):
            if config not in SAM_CONFIGS:
                raise ValueError(f"config must be a SAMConfig or one of {sorted(SAM_CONFIGS)}, got {config!r}")
            config = SAM_CONFIGS[config]
        if not isinstance(config, SAMConfig):
            raise ValueError(f"config must be a SAMConfig or a name, got {type(config).__name__}")
        self.config = config
        self.image_encoder = ImageEncoder(config)
        self.prompt_encoder = PromptEncoder(config)
        self.mask_decoder = MaskDecoder(config)
        self.reset_pixel_statistics()

    def reset_pixel_statistics(self) -> None:
        """(Re)create the ``pixel_mean`` / ``pixel_std`` buffers from the config, on the model's device."""
        device = self.prompt_encoder.no_mask_embed.weight.device
        device = torch.device("cpu") if device.type == "meta" else device
        for name in ("pixel_mean", "pixel_std"):
            value = torch.tensor(getattr(self.config, name), dtype=torch.float32, device=device).view(3, 1, 1)
            self.register_buffer(name, value, persistent=False)

    @property
    def img_size(self) -> int:
        """Side :math:`S` of the square encoder input."""
        return self.config.img_size

    @property
    def device(self) -> torch.device:
        """The device of the weights."""
        return self.prompt_encoder.no_mask_embed.weight.device

    def normalize_and_pad(self, images: torch.Tensor) -> torch.Tensor:
        r"""``(x - \mu) / \sigma`` per channel, then zero padding at the bottom/right to ``S x S``.

        Parameters
        ----------
        images : Tensor
            ``(B, 3, h, w)`` float RGB on the 0-255 scale, already resized so that
            ``max(h, w) == img_size``.

        Returns
        -------
        Tensor
            ``(B, 3, S, S)``, the encoder input.
        """
        s = self.img_size
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must have shape (B, 3, h, w), got {shape}")
        h, w = images.shape[-2:]
        if not (0 < h <= s and 0 < w <= s):
            raise ValueError(f"images must be at most {s} x {s} (resize the longer side to img_size first), "
                             f"got {h} x {w}")
        if not images.is_floating_point():
            images = images.float()
        x = (images - self.pixel_mean.to(images.dtype)) / self.pixel_std.to(images.dtype)
        return F.pad(x, (0, s - w, 0, s - h))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``(B, prompt_dim, g, g)`` of normalised, padded images ``(B, 3, S, S)``."""
        return self.image_encoder(images)

    def decode(self, embeddings: torch.Tensor, *, points: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_input: torch.Tensor | None = None,
               multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res mask logits and predicted IoU for prompts on encoded images.

        Parameters
        ----------
        embeddings : Tensor
            ``(B, prompt_dim, g, g)`` from :meth:`encode`, or ``(1, ...)`` shared by ``B``
            prompts.
        points, point_labels : Tensor, optional
            ``(B, N, 2)`` pixel coordinates (x, y) in the ``S x S`` frame and ``(B, N)``
            labels: 1 foreground, 0 background, -1 padding.
        boxes : Tensor, optional
            ``(B, 4)`` boxes ``(x0, y0, x1, y1)`` in the ``S x S`` frame.
        mask_input : Tensor, optional
            ``(B, 1, 4g, 4g)`` mask logits (e.g. an earlier low-res output).
        multimask : bool
            Three masks for ambiguous prompts (True) or the single-mask output (False).

        Returns
        -------
        low_res_logits : Tensor
            ``(B, k, 4g, 4g)`` with ``k = 3`` if ``multimask`` else 1.
        iou : Tensor
            ``(B, k)`` predicted IoU of each mask.
        """
        cfg = self.config
        expected = (cfg.prompt_dim, cfg.grid_size, cfg.grid_size)
        if not isinstance(embeddings, torch.Tensor) or embeddings.ndim != 4 or tuple(embeddings.shape[1:]) != expected:
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"embeddings must have shape (B, {', '.join(map(str, expected))}), got {shape}")
        b = check_prompts(points=points, point_labels=point_labels, boxes=boxes, mask_input=mask_input,
                          mask_size=cfg.low_res_size)
        if b is not None and embeddings.shape[0] not in (1, b):
            raise ValueError(f"embeddings must have batch 1 or the prompts' batch {b}, got {embeddings.shape[0]}")
        sparse, dense = self.prompt_encoder.embed(
            points=points, point_labels=point_labels, boxes=boxes, mask_input=mask_input,
            batch_size=embeddings.shape[0] if b is None else b)
        return self.mask_decoder(embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense,
                                 multimask=bool(multimask))

    def forward(self, images: torch.Tensor, *, points: torch.Tensor | None = None,
                point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
                mask_input: torch.Tensor | None = None,
                multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``decode(encode(images), ...)``: ``images`` are normalised and padded ``(B, 3, S, S)``."""
        return self.decode(self.encode(images), points=points, point_labels=point_labels, boxes=boxes,
                           mask_input=mask_input, multimask=multimask)

    # -- the image-level API: thin delegates to mlimaging.models.sam.predictor / .automatic ------------

    def _predictor(self) -> Any:
        predictor = self.__dict__.get("_sam_predictor")
        if predictor is None:
            from mlimaging.models.sam.predictor import SAMPredictor

            predictor = SAMPredictor(self)
            self.__dict__["_sam_predictor"] = predictor  # a plain attribute, not a submodule
        return predictor

    def set_image(self, image: Any, *, window: tuple[float, float] | None = None) -> None:
        """Encode ``image`` once for :meth:`predict` (see ``SAMPredictor.set_image``)."""
        self._predictor().set_image(image, window=window)

    def predict(self, *, points: Any = None, point_labels: Any = None, boxes: Any = None, mask_input: Any = None,
                multimask: bool = True, return_logits: bool = False) -> Any:
        """Masks, IoU predictions and low-res logits in the image frame (see ``SAMPredictor.predict``)."""
        return self._predictor().predict(points=points, point_labels=point_labels, boxes=boxes,
                                         mask_input=mask_input, multimask=multimask, return_logits=return_logits)

    def automatic_masks(self, image: Any, *, points_per_side: int = 32, points_per_batch: int = 64,
                        pred_iou_thresh: float = 0.88, stability_score_thresh: float = 0.95,
                        stability_score_offset: float = 1.0, box_nms_thresh: float = 0.7,
                        min_mask_region_area: int = 0, window: tuple[float, float] | None = None,
                        progress: bool = False) -> list[dict[str, Any]]:
        """Masks of everything in ``image`` from a grid of point prompts (see ``automatic.automatic_masks``)."""
        from mlimaging.models.sam.automatic import automatic_masks

        return automatic_masks(self, image, points_per_side=points_per_side, points_per_batch=points_per_batch,
                               pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
                               stability_score_offset=stability_score_offset, box_nms_thresh=box_nms_thresh,
                               min_mask_region_area=min_mask_region_area, window=window, progress=progress)


@register_model("sam_tiny", input_shape=(3, 128, 128), prompted=True)
def sam_tiny() -> SAM:
    """SAM of ``SAM_CONFIGS["tiny"]``: 128 px, 16 px patches, 64-dim encoder of depth 4, CPU-sized.

    Examples
    --------
    >>> from mlimaging.models import create_model
    >>> sam = create_model("sam_tiny", seed=0)
    >>> sam.img_size, sam.config.encoder_depth
    (128, 4)
    """
    return SAM(SAM_CONFIGS["tiny"])

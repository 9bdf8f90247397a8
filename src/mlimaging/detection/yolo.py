r"""YOLO (v1): a single-shot grid detector, and the encoding of ground truth into its grid.

Conventions (the whole of :mod:`mlimaging.detection` uses them):

- An image of size :math:`H \times W` is cut into an :math:`S \times S` grid; cell
  :math:`(i, j)` is row :math:`i` (down, :math:`y`) and column :math:`j` (right, :math:`x`).
- The network's output for a batch is ``(N, S, S, 5B + C)``: per cell, :math:`B` boxes of five
  numbers ``(x, y, sqrt_w, sqrt_h, confidence)`` at channels ``5b .. 5b + 4``, then :math:`C`
  class probabilities shared by the cell at channels ``5B .. 5B + C - 1``
  (:func:`mlimaging.calc.yolo_output_shape`).
- ``x, y`` in :math:`[0, 1]` are the box centre's offset inside its cell (sigmoid);
  ``sqrt_w, sqrt_h`` in :math:`[0, 1]` are the square roots of the width and height relative
  to the image (sigmoid); the confidence (sigmoid) estimates
  :math:`\Pr(\text{object}) \cdot \mathrm{IoU}^{\text{truth}}_{\text{pred}}`; the class
  probabilities :math:`\Pr(\text{class}_c \mid \text{object})` are a softmax. So the box centre
  in pixels is :math:`c_x = (j + x) W / S`, :math:`c_y = (i + y) H / S` and its size
  :math:`w = \text{sqrt\_w}^2 W`, :math:`h = \text{sqrt\_h}^2 H`.
- Ground truth is a dict per image with ``boxes`` ``(K, 4)`` ``(x1, y1, x2, y2)`` in pixels and
  ``labels`` ``(K,)`` (the torchmetrics format). :func:`encode_targets` turns a list of them
  into the training target ``(N, S, S, 5 + C)``: per cell ``(x, y, sqrt_w, sqrt_h, 1_obj)``
  of the one object whose centre falls in it, then its one-hot class.

Reference: Redmon J., Divvala S., Girshick R., Farhadi A. (2016). You Only Look Once: Unified,
Real-Time Object Detection. CVPR. arXiv:1506.02640.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from mlimaging.calc import yolo_output_shape
from mlimaging.models._validation import check_input, check_int
from mlimaging.models.registry import register_model

__all__ = ["BACKBONES", "YOLO", "encode_targets"]

#: Backbone name -> (channels of the first stage, maximum channels). Each stage is a 3x3
#: conv-BN-LeakyReLU that halves the size; channels double per stage up to the maximum.
BACKBONES: dict[str, tuple[int, int]] = {"tiny": (4, 16), "small": (16, 128), "medium": (24, 192)}


def _conv(
    c_in: int, c_out: int, *, kernel: int = 3, dilation: int = 1, stride: int = 1
) -> nn.Sequential:
    pad = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=pad, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.1, inplace=True),
    )


def _num_downsamplings(image_size: int, grid: int) -> int:
    """The most 2x poolings (at most 5) that keep the feature map at least ``grid`` cells wide."""
    k = 0
    while k < 5 and image_size // 2 ** (k + 1) >= grid:
        k += 1
    return k


class YOLO(nn.Module):
    r"""A YOLO (v1) detector: image ``(N, C_in, H, W)`` -> grid ``(N, S, S, 5B + C)``.

    Each of the :math:`S \times S` cells predicts :math:`B` boxes
    ``(x, y, sqrt_w, sqrt_h, confidence)`` and :math:`C` class probabilities (see the module's
    conventions); the output size is

    .. math::

        S \times S \times (5B + C)

    (:func:`mlimaging.calc.yolo_output_shape`). At test time the class-specific score of box
    :math:`b` of a cell is :math:`\Pr(\text{class}_c \mid \text{object}) \cdot \text{conf}_b`
    (:func:`mlimaging.detection.decode`).

    The backbone is a compact CNN for CPU training on small canvases (the paper's is 24
    convolutions and 2 fully connected layers on 448 x 448): ``k`` stages of 3x3
    conv-BN-LeakyReLU(0.1) that halve the size (by a stride-2 convolution in the first two
    stages, cheap at full resolution; by a 2x2 max-pool after the convolution in later ones),
    with ``k`` the most halvings (up to 5) that leave at least ``S`` cells per side (96 px:
    ``k = 4`` for ``S = 6``, ``k = 3`` for ``S = 7`` or 12, ``k = 5`` for ``S = 3``); then three 3x3 conv-BN-LeakyReLU layers (the last dilated by 2,
    for context), an adaptive average pool to :math:`S \times S` (the identity when the map
    already has ``S`` cells) and a 1x1 convolution to the :math:`5B + C` outputs of each cell.
    A fully convolutional head (instead of the paper's fully connected layers) shares its
    weights between cells, which trains faster on a few thousand images. One training step
    costs about 1/220 CPU second per 96 x 96 image at ``S = 6`` on one thread (1/170 at
    ``S = 7`` or 12); :func:`~mlimaging.detection.train_detector` trains it with the settings
    of :data:`~mlimaging.detection.DEFAULT_TRAINING`.

    Parameters
    ----------
    grid : int
        :math:`S`, cells per side (>= 1).
    boxes_per_cell : int
        :math:`B` (>= 1).
    num_classes : int
        :math:`C` (>= 1).
    in_channels : int
        Channels of the input images.
    image_size : int
        Side of the (square) training images in pixels: sets the number of poolings, and is
        the default pixel scale of :meth:`detect`'s boxes.
    backbone : {"small", "tiny", "medium"}
        Width of the backbone (:data:`BACKBONES`): ``"small"`` (16 -> 128 channels) for
        training on CPU, ``"tiny"`` (4 -> 16) for tests, ``"medium"`` (24 -> 192).

    Attributes
    ----------
    config : dict
        The constructor's arguments: ``YOLO(**model.config)`` rebuilds the architecture (saved
        in checkpoints by :func:`mlimaging.detection.save_detector`).

    References
    ----------
    Redmon J., Divvala S., Girshick R., Farhadi A. (2016). You Only Look Once: Unified,
    Real-Time Object Detection. CVPR. arXiv:1506.02640.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.calc import yolo_output_shape
    >>> net = YOLO(grid=7, boxes_per_cell=2, num_classes=10, backbone="tiny").eval()
    >>> out = net(torch.zeros(3, 1, 96, 96))
    >>> tuple(out.shape[1:]) == yolo_output_shape(7, 2, 10)
    True
    >>> bool(((out >= 0) & (out <= 1)).all())  # sigmoids and a softmax
    True
    """

    def __init__(
        self,
        *,
        grid: int = 7,
        boxes_per_cell: int = 2,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 96,
        backbone: str = "small",
    ) -> None:
        super().__init__()
        self.grid = check_int(grid, "grid")
        self.boxes_per_cell = check_int(boxes_per_cell, "boxes_per_cell")
        self.num_classes = check_int(num_classes, "num_classes")
        self.in_channels = check_int(in_channels, "in_channels")
        self.image_size = check_int(image_size, "image_size")
        if backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {backbone!r}")
        if self.image_size < self.grid:
            raise ValueError(f"image_size ({image_size}) must be at least grid ({grid})")
        self.backbone = backbone
        self.config: dict[str, Any] = dict(
            grid=self.grid,
            boxes_per_cell=self.boxes_per_cell,
            num_classes=self.num_classes,
            in_channels=self.in_channels,
            image_size=self.image_size,
            backbone=backbone,
        )
        first, top = BACKBONES[backbone]
        layers: list[nn.Module] = []
        c_in, c = self.in_channels, first
        for k in range(_num_downsamplings(self.image_size, self.grid)):
            # the first two stages halve the size by a stride-2 convolution (cheap at full
            # resolution), later ones by a 2x2 max-pool
            layers += [_conv(c_in, c, stride=2)] if k < 2 else [_conv(c_in, c), nn.MaxPool2d(2)]
            c_in, c = c, min(2 * c, top)
        layers += [_conv(c_in, c), _conv(c, c), _conv(c, c, dilation=2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(self.grid)
        self.head = nn.Conv2d(c, 5 * self.boxes_per_cell + self.num_classes, 1)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(S, S, 5B + C)`` of one image (:func:`mlimaging.calc.yolo_output_shape`)."""
        return yolo_output_shape(self.grid, self.boxes_per_cell, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The detection grid ``(N, S, S, 5B + C)`` of images ``x`` ``(N, C_in, H, W)``."""
        check_input(x, self.in_channels)
        if min(x.shape[-2:]) < self.grid:
            raise ValueError(
                f"x must be at least {self.grid} pixels per side (the grid), got shape {tuple(x.shape)}"
            )
        raw = self.head(self.pool(self.features(x))).permute(0, 2, 3, 1)  # (N, S, S, 5B + C)
        nb = 5 * self.boxes_per_cell
        boxes = torch.sigmoid(raw[..., :nb])
        probs = torch.softmax(raw[..., nb:], dim=-1)
        return torch.cat([boxes, probs], dim=-1)

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor,
        *,
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.5,
        max_detections: int | None = 100,
    ) -> list[dict[str, torch.Tensor]]:
        """Boxes, scores and labels for each image (eval mode, no gradients).

        ``decode(self(images), image_size=(H, W), ...)``; see :func:`mlimaging.detection.decode`.
        The module's train/eval mode is restored afterwards.

        Examples
        --------
        >>> import torch
        >>> net = YOLO(grid=3, num_classes=2, backbone="tiny")
        >>> dets = net.detect(torch.zeros(2, 1, 48, 48), conf_threshold=0.0)
        >>> len(dets), sorted(dets[0])
        (2, ['boxes', 'labels', 'scores'])
        """
        from mlimaging.detection.decode import decode

        was_training = self.training
        self.eval()
        try:
            pred = self(images)
        finally:
            self.train(was_training)
        return decode(
            pred,
            conf_threshold=conf_threshold,
            iou_threshold=iou_threshold,
            image_size=tuple(images.shape[-2:]),
            max_detections=max_detections,
        )


@register_model("yolo", input_shape=(1, 96, 96), detector=True)
def yolo(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    grid: int = 7,
    boxes_per_cell: int = 2,
    image_size: int = 96,
    backbone: str = "small",
) -> YOLO:
    """YOLO (v1) grid detector, output (N, S, S, 5B + C) (Redmon et al. 2016)."""
    return YOLO(
        grid=grid,
        boxes_per_cell=boxes_per_cell,
        num_classes=num_classes,
        in_channels=in_channels,
        image_size=image_size,
        backbone=backbone,
    )


def _image_hw(image_size: Any) -> tuple[float, float]:
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be a size or (height, width), got {image_size!r}")
        h, w = image_size
    else:
        h = w = image_size
    try:
        h, w = float(h), float(w)
    except (TypeError, ValueError):
        raise ValueError(
            f"image_size must be a positive size or (height, width), got {image_size!r}"
        ) from None
    if not (h > 0 and w > 0) or h == float("inf") or w == float("inf"):
        raise ValueError(f"image_size must be positive and finite, got {image_size!r}")
    return h, w


def encode_targets(
    targets: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    grid: int,
    num_classes: int,
    image_size: int | tuple[int, int],
) -> torch.Tensor:
    r"""Ground-truth boxes -> the YOLO training target ``(N, S, S, 5 + C)``.

    A box ``(x1, y1, x2, y2)`` (pixels) of class :math:`c` belongs to the cell holding its
    centre :math:`(c_x, c_y)`: row :math:`i = \lfloor S c_y / H \rfloor`, column
    :math:`j = \lfloor S c_x / W \rfloor` (clamped to :math:`S - 1`). That cell's target is

    .. math::

        \Bigl(\tfrac{S c_x}{W} - j,\ \tfrac{S c_y}{H} - i,\ \sqrt{\tfrac{x_2 - x_1}{W}},\
        \sqrt{\tfrac{y_2 - y_1}{H}},\ 1,\ \mathbf e_c\Bigr)

    (offsets in the cell, square roots of the relative size, the object indicator
    :math:`\mathbb 1^{\text{obj}}_i`, the one-hot class); cells without an object are all zero.
    A cell predicts one object (Redmon et al. 2016): when several centres fall in one cell, the
    largest box is kept. The number of predictors per cell :math:`B` plays no part: the loss
    chooses the responsible one (:func:`mlimaging.detection.yolo_loss`).

    Parameters
    ----------
    targets : list of dict, or dict
        One dict per image with ``boxes`` ``(K, 4)`` xyxy pixels and ``labels`` ``(K,)``
        integers in ``[0, num_classes)`` (``K`` may be 0). A single dict gives ``N = 1``.
    grid : int
        :math:`S`.
    num_classes : int
        :math:`C`.
    image_size : int or (int, int)
        The images' side, or ``(height, width)``, in pixels.

    Returns
    -------
    torch.Tensor
        float32 ``(N, S, S, 5 + C)``.

    Raises
    ------
    ValueError
        Missing keys, boxes not ``(K, 4)``, ``x2 < x1`` or ``y2 < y1``, non-finite
        coordinates, labels out of range, or a bad grid / class count / image size.

    Examples
    --------
    A 32 x 32 box centred at (40, 24) of class 3 in a 96 x 96 image, 3 x 3 grid (32-px cells):
    cell row 0, column 1; offsets (40/32 - 1, 24/32) = (0.25, 0.75); sqrt(32/96) = 0.577.

    >>> import torch
    >>> t = {"boxes": torch.tensor([[24.0, 8.0, 56.0, 40.0]]), "labels": torch.tensor([3])}
    >>> y = encode_targets([t], grid=3, num_classes=4, image_size=96)
    >>> y.shape
    torch.Size([1, 3, 3, 9])
    >>> [round(v, 3) for v in y[0, 0, 1].tolist()]
    [0.25, 0.75, 0.577, 0.577, 1.0, 0.0, 0.0, 0.0, 1.0]
    >>> float(y[0].sum(-1).count_nonzero())  # one cell holds the object
    1.0
    """
    grid = check_int(grid, "grid")
    num_classes = check_int(num_classes, "num_classes")
    height, width = _image_hw(image_size)
    if isinstance(targets, Mapping):
        targets = [targets]
    if not isinstance(targets, Sequence):
        raise ValueError(
            f"targets must be a list of dicts with 'boxes' and 'labels', got {type(targets).__name__}"
        )
    out = torch.zeros(len(targets), grid, grid, 5 + num_classes)
    for n, t in enumerate(targets):
        if not isinstance(t, Mapping) or "boxes" not in t or "labels" not in t:
            raise ValueError(f"targets[{n}] must be a dict with 'boxes' (K, 4) and 'labels' (K,)")
        boxes = torch.as_tensor(t["boxes"], dtype=torch.float64)
        labels = torch.as_tensor(t["labels"])
        if boxes.numel() == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(
                f"targets[{n}]['boxes'] must have shape (K, 4), got {tuple(boxes.shape)}"
            )
        if labels.ndim != 1 or labels.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"targets[{n}]['labels'] must have shape ({boxes.shape[0]},), got {tuple(labels.shape)}"
            )
        if boxes.shape[0] == 0:
            continue
        if labels.is_floating_point() and not torch.equal(labels, labels.round()):
            raise ValueError(f"targets[{n}]['labels'] must be integers")
        labels = labels.long()
        if not torch.isfinite(boxes).all():
            raise ValueError(f"targets[{n}]['boxes'] must be finite")
        if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
            raise ValueError(
                f"targets[{n}]['boxes'] must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1"
            )
        if (labels < 0).any() or (labels >= num_classes).any():
            raise ValueError(
                f"targets[{n}]['labels'] must lie in [0, {num_classes}), got {labels.tolist()}"
            )
        cx = (boxes[:, 0] + boxes[:, 2]) / 2 * grid / width
        cy = (boxes[:, 1] + boxes[:, 3]) / 2 * grid / height
        col = cx.floor().clamp(0, grid - 1)
        row = cy.floor().clamp(0, grid - 1)
        sw = ((boxes[:, 2] - boxes[:, 0]) / width).clamp(0, 1).sqrt()
        sh = ((boxes[:, 3] - boxes[:, 1]) / height).clamp(0, 1).sqrt()
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        for k in torch.argsort(
            area, stable=True
        ).tolist():  # ascending: the largest box is written last
            i, j = int(row[k]), int(col[k])
            cell = out[n, i, j]
            cell.zero_()
            cell[0] = float((cx[k] - col[k]).clamp(0, 1))
            cell[1] = float((cy[k] - row[k]).clamp(0, 1))
            cell[2], cell[3], cell[4] = float(sw[k]), float(sh[k]), 1.0
            cell[5 + int(labels[k])] = 1.0
    return out

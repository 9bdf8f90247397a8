r"""SAM's prompt encoder: points and boxes to sparse tokens, a mask to a dense map.

**Positions** are encoded with random Fourier features (Tancik et al. 2020): a fixed
Gaussian matrix :math:`G \in \mathbb{R}^{2 \times C/2}`, :math:`G_{ij} \sim \mathcal{N}(0,1)`,
maps a point :math:`u \in [0, 1]^2` (pixel coordinates divided by the input size :math:`S`,
after a shift of half a pixel to the pixel centre) to

.. math::

    \gamma(u) = \big[\sin(2\pi (2u - 1) G),\; \cos(2\pi (2u - 1) G)\big] \in \mathbb{R}^{C}.

The same encoding of the :math:`g \times g` grid of token centres,
:math:`u = ((j + \tfrac12)/g, (i + \tfrac12)/g)`, is the image's position map.

**Sparse prompts**: a point gets :math:`\gamma(u)` plus a learned embedding of its label
(``point_embeddings.0`` background, ``.1`` foreground); a padding point (label -1) is
replaced by ``not_a_point_embed``; a box gives two tokens, its corners' encodings plus
``point_embeddings.2`` (top-left) and ``.3`` (bottom-right). Points without a box get one
padding point appended, as SAM was trained.

**Dense prompt**: a mask of logits :math:`(4g, 4g)` is downscaled 4x by two 2x2 stride-2
convolutions (LayerNorm2d, GELU) and a 1x1 convolution to :math:`C` channels; without a
mask every position gets the learned ``no_mask_embed``.

References
----------
Kirillov A. et al. (2023). Segment Anything. ICCV. arXiv:2304.02643.

Tancik M., Srinivasan P. P., Mildenhall B., et al. (2020). Fourier features let networks
learn high frequency functions in low dimensional domains. NeurIPS. arXiv:2006.10739.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mlimaging.models.sam.config import SAMConfig
from mlimaging.models.sam.image_encoder import LayerNorm2d

__all__ = ["PromptEncoder", "RandomFourierEncoding", "check_prompts"]


class RandomFourierEncoding(nn.Module):
    r"""Random Fourier features :math:`\gamma(u)` of 2-D positions (see the module docstring).

    The Gaussian matrix is a buffer named ``positional_encoding_gaussian_matrix`` (saved in
    the state dict, as in the official checkpoints).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> pe = RandomFourierEncoding(8)
    >>> pe.grid(4, 4).shape
    torch.Size([8, 4, 4])
    >>> centre = pe.encode(torch.tensor([[0.5, 0.5]]))  # u = 1/2 maps to 0: sin 0, cos 1
    >>> centre
    tensor([[0., 0., 0., 0., 1., 1., 1., 1.]])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"channels must be even, got {channels}")
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, channels // 2))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        """Features ``(..., C)`` of positions ``(..., 2)`` normalised to ``[0, 1]`` (x, y)."""
        gauss = self.positional_encoding_gaussian_matrix
        angles = (2 * math.pi) * ((2 * coords.to(gauss.dtype) - 1) @ gauss)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Features ``(C, height, width)`` of the centres of a ``height x width`` grid."""
        gauss = self.positional_encoding_gaussian_matrix
        y = (torch.arange(height, device=gauss.device, dtype=gauss.dtype) + 0.5) / height
        x = (torch.arange(width, device=gauss.device, dtype=gauss.dtype) + 0.5) / width
        coords = torch.stack(torch.broadcast_tensors(x[None, :], y[:, None]), dim=-1)
        return self.encode(coords).permute(2, 0, 1)

    def points(self, xy: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Features of pixel coordinates ``(..., 2)`` (x, y) in an image of ``size = (H, W)``."""
        scale = torch.tensor([1.0 / size[1], 1.0 / size[0]], device=xy.device,
                             dtype=self.positional_encoding_gaussian_matrix.dtype)
        return self.encode(xy.to(scale.dtype) * scale)


def _shape(x: object) -> object:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


def check_prompts(*, points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                  boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                  mask_size: int) -> int | None:
    """Check prompt tensors; return their common batch size (None when no prompt is given).

    Parameters
    ----------
    points : Tensor, optional
        ``(B, N, 2)`` pixel coordinates (x, y), finite.
    point_labels : Tensor, optional
        ``(B, N)`` labels in {1 (foreground), 0 (background), -1 (padding)}; required with
        ``points`` and only with them.
    boxes : Tensor, optional
        ``(B, 4)`` boxes ``(x0, y0, x1, y1)`` with ``x0 <= x1`` and ``y0 <= y1``.
    mask_input : Tensor, optional
        ``(B, 1, mask_size, mask_size)`` float logits.
    mask_size : int
        Side of the mask prompt (``4 * grid``).

    Raises
    ------
    ValueError
        Naming the argument and the expected shape or values.

    Examples
    --------
    >>> import torch
    >>> check_prompts(boxes=torch.tensor([[1.0, 2.0, 5.0, 6.0]]), mask_size=32)
    1
    >>> check_prompts(boxes=torch.tensor([[5.0, 2.0, 1.0, 6.0]]), mask_size=32)
    Traceback (most recent call last):
    ...
    ValueError: boxes must satisfy x0 <= x1 and y0 <= y1 (x0, y0, x1, y1 order), got box 0 = [5.0, 2.0, 1.0, 6.0]
    """
    given = {"points": points, "point_labels": point_labels, "boxes": boxes, "mask_input": mask_input}
    for name, value in given.items():
        if value is not None and not isinstance(value, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor or None, got {type(value).__name__}")
    if (points is None) != (point_labels is None):
        missing = "point_labels" if point_labels is None else "points"
        raise ValueError(f"{missing} must be given together with "
                         f"{'points' if missing == 'point_labels' else 'point_labels'}")
    batch: dict[str, int] = {}
    if points is not None and point_labels is not None:
        if points.ndim != 3 or points.shape[-1] != 2 or points.is_complex() or points.dtype == torch.bool:
            raise ValueError(f"points must have shape (B, N, 2) (x, y pixel coordinates), got {_shape(points)}")
        if not torch.isfinite(points.float()).all():
            raise ValueError("points must be finite (no NaN or inf)")
        if point_labels.shape != points.shape[:2]:
            raise ValueError(f"point_labels must have shape (B, N) = {tuple(points.shape[:2])} to match points, "
                             f"got {_shape(point_labels)}")
        if point_labels.is_complex() or not bool(((point_labels == 1) | (point_labels == 0)
                                                  | (point_labels == -1)).all()):
            raise ValueError("point_labels must hold 1 (foreground), 0 (background) or -1 (padding)")
        batch["points"] = points.shape[0]
    if boxes is not None:
        if boxes.ndim != 2 or boxes.shape[-1] != 4 or boxes.is_complex() or boxes.dtype == torch.bool:
            raise ValueError(f"boxes must have shape (B, 4) (x0, y0, x1, y1 pixels), got {_shape(boxes)}")
        b = boxes.float()
        if not torch.isfinite(b).all():
            raise ValueError("boxes must be finite (no NaN or inf)")
        bad = (b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1])
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise ValueError("boxes must satisfy x0 <= x1 and y0 <= y1 (x0, y0, x1, y1 order), "
                             f"got box {i} = {b[i].tolist()}")
        batch["boxes"] = boxes.shape[0]
    if mask_input is not None:
        if mask_input.ndim != 4 or tuple(mask_input.shape[1:]) != (1, mask_size, mask_size):
            raise ValueError(f"mask_input must have shape (B, 1, {mask_size}, {mask_size}) (low-res logits), "
                             f"got {_shape(mask_input)}")
        if not mask_input.is_floating_point():
            raise ValueError(f"mask_input must be a float tensor of logits, got {mask_input.dtype}")
        if not torch.isfinite(mask_input).all():
            raise ValueError("mask_input must be finite (no NaN or inf)")
        batch["mask_input"] = mask_input.shape[0]
    if len(set(batch.values())) > 1:
        raise ValueError("prompts must share the batch size B, got "
                         + ", ".join(f"{k}: {v}" for k, v in batch.items()))
    return next(iter(batch.values()), None)


class PromptEncoder(nn.Module):
    """Sparse (points, boxes) and dense (mask) prompt embeddings of SAM.

    Parameter names follow the official checkpoints (``pe_layer``, ``point_embeddings.{0..3}``,
    ``not_a_point_embed``, ``mask_downscaling.{0, 1, 3, 4, 6}``, ``no_mask_embed``).

    Parameters
    ----------
    config : SAMConfig
        Uses ``prompt_dim``, ``img_size``, ``grid_size`` and ``mask_in_chans``.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models.sam.config import SAM_CONFIGS
    >>> _ = torch.manual_seed(0)
    >>> encoder = PromptEncoder(SAM_CONFIGS["tiny"])
    >>> sparse, dense = encoder(points=torch.tensor([[[40.0, 60.0]]]), point_labels=torch.tensor([[1]]))
    >>> sparse.shape, dense.shape  # the point and one padding point; no mask
    (torch.Size([1, 2, 128]), torch.Size([1, 128, 8, 8]))
    >>> sparse, _ = encoder(boxes=torch.tensor([[10.0, 10.0, 50.0, 70.0]]))
    >>> sparse.shape  # two corners
    torch.Size([1, 2, 128])
    """

    def __init__(self, config: SAMConfig) -> None:
        super().__init__()
        dim, m = config.prompt_dim, config.mask_in_chans
        self.embed_dim = dim
        self.input_size = (config.img_size, config.img_size)
        self.grid = (config.grid_size, config.grid_size)
        self.mask_size = config.low_res_size
        self.pe_layer = RandomFourierEncoding(dim)
        # 0: background point, 1: foreground point, 2: box top-left, 3: box bottom-right.
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, m // 4, kernel_size=2, stride=2),
            LayerNorm2d(m // 4),
            nn.GELU(),
            nn.Conv2d(m // 4, m, kernel_size=2, stride=2),
            LayerNorm2d(m),
            nn.GELU(),
            nn.Conv2d(m, dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Position map of the image embedding, ``(1, prompt_dim, g, g)``."""
        return self.pe_layer.grid(*self.grid).unsqueeze(0)

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, *, pad: bool) -> torch.Tensor:
        """Tokens ``(B, N (+1), C)`` of points ``(B, N, 2)`` with labels ``(B, N)``."""
        gauss = self.pe_layer.positional_encoding_gaussian_matrix
        dtype = gauss.dtype
        points = points.to(device=gauss.device, dtype=dtype) + 0.5  # pixel centre
        labels = labels.to(points.device)
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        tokens = self.pe_layer.points(points, self.input_size)
        labels = labels[..., None]
        tokens = torch.where(labels == -1, self.not_a_point_embed.weight, tokens)
        background, foreground = self.point_embeddings[0].weight, self.point_embeddings[1].weight
        return tokens + (labels == 0).to(dtype) * background + (labels == 1).to(dtype) * foreground

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Two corner tokens ``(B, 2, C)`` per box ``(B, 4)``."""
        gauss = self.pe_layer.positional_encoding_gaussian_matrix
        corners = (boxes.to(device=gauss.device, dtype=gauss.dtype) + 0.5).reshape(-1, 2, 2)
        corner_types = torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])
        return self.pe_layer.points(corners, self.input_size) + corner_types

    def forward(self, *, points: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                boxes: torch.Tensor | None = None, mask_input: torch.Tensor | None = None,
                batch_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse tokens ``(B, n, C)`` and dense map ``(B, C, g, g)`` of the prompts.

        ``B`` is the prompts' batch size, or ``batch_size`` when none is given. The prompts
        are checked first (:func:`check_prompts` gives the shapes); :meth:`embed` skips it.
        """
        b = check_prompts(points=points, point_labels=point_labels, boxes=boxes, mask_input=mask_input,
                          mask_size=self.mask_size)
        return self.embed(points=points, point_labels=point_labels, boxes=boxes, mask_input=mask_input,
                          batch_size=batch_size if b is None else b)

    def embed(self, *, points: torch.Tensor | None, point_labels: torch.Tensor | None,
              boxes: torch.Tensor | None, mask_input: torch.Tensor | None,
              batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` without the checks, for prompts already checked (``batch_size`` = B)."""
        b = batch_size
        weight = self.no_mask_embed.weight
        parts = [weight.new_zeros(b, 0, self.embed_dim)]
        if points is not None and point_labels is not None:
            parts.append(self.embed_points(points, point_labels, pad=boxes is None))
        if boxes is not None:
            parts.append(self.embed_boxes(boxes))
        sparse = torch.cat(parts, dim=1)
        if mask_input is not None:
            dense = self.mask_downscaling(mask_input.to(device=weight.device, dtype=weight.dtype))
        else:
            dense = weight.reshape(1, -1, 1, 1).expand(b, -1, *self.grid)
        return sparse, dense

r"""SAM's mask decoder: output tokens, the two-way transformer, hypernetwork mask heads.

Learned output tokens, an IoU token and :math:`K + 1` mask tokens (:math:`K` =
``num_multimask_outputs`` = 3), are prepended to the prompt tokens; the image embedding
plus the dense prompt embedding is the image side. After the two-way transformer the
image tokens are upscaled 4x by two transposed 2x2 stride-2 convolutions
(:math:`C \to C/4 \to C/8` channels, LayerNorm2d and GELU between), giving
:math:`E \in \mathbb{R}^{C/8 \times 4g \times 4g}`. Each mask token :math:`t_k` goes
through its own 3-layer MLP (a hypernetwork, ReLU) to :math:`w_k \in \mathbb{R}^{C/8}`,
and the mask logits are the dot products with every pixel,

.. math::

    M_k(y, x) = w_k^\top E(y, x), \qquad
    \widehat{\mathrm{IoU}} = \operatorname{MLP}(t_{\mathrm{iou}}) \in \mathbb{R}^{K + 1}.

With ``multimask=True`` the decoder returns masks :math:`1..K` (the ambiguity-aware
outputs), otherwise mask :math:`0` alone, each with its predicted IoU.

References
----------
Kirillov A. et al. (2023). Segment Anything. ICCV. arXiv:2304.02643.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models.sam.config import SAMConfig
from mlimaging.models.sam.image_encoder import LayerNorm2d
from mlimaging.models.sam.transformer import TwoWayTransformer

__all__ = ["MLP", "MaskDecoder"]


class MLP(nn.Module):
    """``depth`` linear layers ``dim_in -> hidden -> ... -> dim_out`` with ReLU between them.

    Examples
    --------
    >>> import torch
    >>> mlp = MLP(8, 16, 4, depth=3)
    >>> [layer.out_features for layer in mlp.layers]
    [16, 16, 4]
    >>> mlp(torch.zeros(2, 8)).shape
    torch.Size([2, 4])
    """

    def __init__(self, dim_in: int, hidden: int, dim_out: int, *, depth: int) -> None:
        super().__init__()
        sizes = [dim_in] + [hidden] * (depth - 1) + [dim_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    """Masks and IoU predictions from an image embedding and prompt embeddings.

    Parameter names follow the official checkpoints (``transformer.*``, ``iou_token``,
    ``mask_tokens``, ``output_upscaling.{0, 1, 3}``, ``output_hypernetworks_mlps.N.layers.*``,
    ``iou_prediction_head.layers.*``).

    Parameters
    ----------
    config : SAMConfig
        Uses ``prompt_dim``, ``decoder_*``, ``attention_downsample_rate``,
        ``num_multimask_outputs`` and ``iou_head_*``.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models.sam.config import SAM_CONFIGS
    >>> decoder = MaskDecoder(SAM_CONFIGS["tiny"])
    >>> image, pe = torch.zeros(1, 128, 8, 8), torch.zeros(1, 128, 8, 8)
    >>> sparse, dense = torch.zeros(5, 2, 128), torch.zeros(5, 128, 8, 8)
    >>> masks, iou = decoder(image, pe, sparse, dense, multimask=True)  # 5 prompts on one image
    >>> masks.shape, iou.shape
    (torch.Size([5, 3, 32, 32]), torch.Size([5, 3]))
    """

    def __init__(self, config: SAMConfig) -> None:
        super().__init__()
        c = config.prompt_dim
        self.num_mask_tokens = config.num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(depth=config.decoder_depth, dim=c, heads=config.decoder_heads,
                                             mlp_dim=config.decoder_mlp_dim,
                                             downsample=config.attention_downsample_rate)
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(c, c, c // 8, depth=3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(c, config.iou_head_hidden_dim, self.num_mask_tokens,
                                       depth=config.iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                dense: torch.Tensor, *, multimask: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res mask logits ``(B, k, 4g, 4g)`` and IoU ``(B, k)``, ``k = K`` or 1.

        ``image_embeddings`` ``(B or 1, C, g, g)`` (one image is shared by all ``B``
        prompts), ``image_pe`` ``(1, C, g, g)``, ``sparse`` ``(B, n, C)``, ``dense``
        ``(B, C, g, g)``.
        """
        masks, iou = self.predict_all(image_embeddings, image_pe, sparse, dense)
        chosen = slice(1, None) if multimask else slice(0, 1)
        return masks[:, chosen], iou[:, chosen]

    def predict_all(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse: torch.Tensor,
                    dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``K + 1`` masks ``(B, K + 1, 4g, 4g)`` and IoU predictions ``(B, K + 1)``."""
        b = sparse.shape[0]
        if image_embeddings.shape[0] not in (1, b):
            raise ValueError(f"image_embeddings must have batch 1 or the prompts' batch {b}, "
                             f"got {tuple(image_embeddings.shape)}")
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])
        tokens = torch.cat([output_tokens.expand(b, -1, -1), sparse.to(output_tokens.dtype)], dim=1)
        image = image_embeddings + dense
        _, c, h, w = image.shape
        tokens, image = self.transformer(image, image_pe, tokens)
        iou = self.iou_prediction_head(tokens[:, 0])
        mask_tokens = tokens[:, 1:1 + self.num_mask_tokens]
        upscaled = self.output_upscaling(image.transpose(1, 2).reshape(b, c, h, w))
        weights = torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                              dim=1)
        _, c8, hu, wu = upscaled.shape
        masks = (weights @ upscaled.reshape(b, c8, hu * wu)).reshape(b, -1, hu, wu)
        return masks, iou

r"""SAM's two-way transformer: prompt tokens and image tokens attend to each other.

Tokens :math:`t` (output tokens + prompt tokens, with their own encodings :math:`t_0` as
positions) and image tokens :math:`m` (the :math:`g^2` pixels of the image embedding,
positions :math:`P` from the random Fourier map) are updated by each block in four steps,
each followed by a LayerNorm (post-norm, :math:`\epsilon = 10^{-5}`):

.. math::

    t &\leftarrow \operatorname{LN}\big(t + \operatorname{Attn}(t + t_0,\; t + t_0,\; t)\big)
        && \text{self-attention of the tokens}\\
    t &\leftarrow \operatorname{LN}\big(t + \operatorname{Attn}(t + t_0,\; m + P,\; m)\big)
        && \text{tokens to image}\\
    t &\leftarrow \operatorname{LN}\big(t + W_2 \operatorname{ReLU}(W_1 t)\big)
        && \text{MLP on the tokens}\\
    m &\leftarrow \operatorname{LN}\big(m + \operatorname{Attn}(m + P,\; t + t_0,\; t)\big)
        && \text{image to tokens}

(the first block's self-attention uses no positions and no residual: :math:`t \leftarrow
\operatorname{LN}(\operatorname{Attn}(t, t, t))`). After the last block the tokens attend
to the image once more. :math:`\operatorname{Attn}(q, k, v)` is multi-head attention with
linear projections; the cross attentions project to :math:`C / r` channels
(``attention_downsample_rate`` :math:`r = 2`) to save compute.

References
----------
Kirillov A. et al. (2023). Segment Anything. ICCV. arXiv:2304.02643 (Fig. 14).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models.sam.image_encoder import FeedForward

__all__ = ["ProjectedAttention", "TwoWayBlock", "TwoWayTransformer"]


class ProjectedAttention(nn.Module):
    r"""Multi-head attention :math:`W_o\,\operatorname{softmax}(QK^\top/\sqrt{d})V` at width ``dim / downsample``.

    Parameters
    ----------
    dim : int
        Width of the inputs and of the output.
    heads : int
        Number of heads; must divide ``dim // downsample``.
    downsample : int
        Queries, keys and values are projected to ``dim // downsample`` channels.

    Examples
    --------
    >>> import torch
    >>> attn = ProjectedAttention(16, 2, downsample=2)
    >>> attn.q_proj.out_features
    8
    >>> attn(torch.zeros(1, 3, 16), torch.zeros(1, 5, 16), torch.zeros(1, 5, 16)).shape
    torch.Size([1, 3, 16])
    """

    def __init__(self, dim: int, heads: int, *, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        if inner % heads:
            raise ValueError(f"heads ({heads}) must divide the attention width {inner}")
        self.heads = heads
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._split(self.q_proj(q)), self._split(self.k_proj(k)),
                                             self._split(self.v_proj(v)))
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class TwoWayBlock(nn.Module):
    """One block of the two-way transformer (the four steps of the module docstring).

    Examples
    --------
    >>> import torch
    >>> block = TwoWayBlock(16, 2, 32)
    >>> t, m = block(torch.zeros(1, 3, 16), torch.zeros(1, 9, 16), torch.zeros(1, 3, 16), torch.zeros(1, 9, 16))
    >>> t.shape, m.shape
    (torch.Size([1, 3, 16]), torch.Size([1, 9, 16]))
    """

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, downsample: int = 2,
                 skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.skip_first_layer_pe = skip_first_layer_pe
        self.self_attn = ProjectedAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = ProjectedAttention(dim, heads, downsample=downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, mlp_dim, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = ProjectedAttention(dim, heads, downsample=downsample)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor, token_pe: torch.Tensor,
                image_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_layer_pe:
            tokens = self.norm1(self.self_attn(tokens, tokens, tokens))
        else:
            q = tokens + token_pe
            tokens = self.norm1(tokens + self.self_attn(q, q, tokens))
        image_k = image + image_pe
        tokens = self.norm2(tokens + self.cross_attn_token_to_image(tokens + token_pe, image_k, image))
        tokens = self.norm3(tokens + self.mlp(tokens))
        image = self.norm4(image + self.cross_attn_image_to_token(image_k, tokens + token_pe, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    """Stack of :class:`TwoWayBlock` plus a final token-to-image attention.

    Parameter names follow the official checkpoints (``layers.N.*``,
    ``final_attn_token_to_image``, ``norm_final_attn``).

    Parameters
    ----------
    depth, dim, heads, mlp_dim : int
        Blocks, width, heads and MLP width.
    downsample : int
        ``attention_downsample_rate`` of the cross attentions.

    Examples
    --------
    >>> import torch
    >>> transformer = TwoWayTransformer(depth=2, dim=16, heads=2, mlp_dim=32)
    >>> image, pe = torch.zeros(2, 16, 4, 4), torch.zeros(1, 16, 4, 4)
    >>> tokens, image_tokens = transformer(image, pe, torch.zeros(2, 7, 16))
    >>> tokens.shape, image_tokens.shape
    (torch.Size([2, 7, 16]), torch.Size([2, 16, 16]))
    """

    def __init__(self, *, depth: int, dim: int, heads: int, mlp_dim: int, downsample: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayBlock(dim, heads, mlp_dim, downsample=downsample, skip_first_layer_pe=i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = ProjectedAttention(dim, heads, downsample=downsample)
        self.norm_final_attn = nn.LayerNorm(dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated tokens ``(B, N, C)`` and image tokens ``(B, h * w, C)``.

        ``image`` is ``(B, C, h, w)``, ``image_pe`` ``(B or 1, C, h, w)``, ``tokens``
        ``(B, N, C)`` (also used as the tokens' positions).
        """
        image = image.flatten(2).transpose(1, 2)
        image_pe = image_pe.flatten(2).transpose(1, 2)
        token_pe = tokens
        for layer in self.layers:
            tokens, image = layer(tokens, image, token_pe, image_pe)
        attended = self.final_attn_token_to_image(tokens + token_pe, image + image_pe, image)
        return self.norm_final_attn(tokens + attended), image

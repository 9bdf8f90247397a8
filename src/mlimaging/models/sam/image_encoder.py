r"""SAM's image encoder: a plain ViT with windowed and global attention and a conv neck.

The image :math:`x \in \mathbb{R}^{3 \times S \times S}` is cut into :math:`p \times p`
patches by a strided convolution, giving a :math:`g \times g` grid (:math:`g = S/p`) of
tokens of width :math:`D`, plus a learned absolute position embedding. Each block is
pre-norm,

.. math::

    x \leftarrow x + \operatorname{Attn}(\operatorname{LN}(x)), \qquad
    x \leftarrow x + W_2\, \operatorname{GELU}(W_1 \operatorname{LN}(x)),

(LayerNorm :math:`\epsilon = 10^{-6}`). Most blocks attend only inside non-overlapping
:math:`w \times w` windows (the grid is zero-padded at the bottom/right to a multiple of
:math:`w`, the padding dropped afterwards); a few blocks (``global_attn_indexes``) attend
over the whole grid. Attention logits carry *decomposed relative position* terms (Li et
al. 2022, MViTv2): for a query at :math:`(i, j)` and a key at :math:`(k, l)`,

.. math::

    a_{(i,j),(k,l)} = \frac{q_{ij} \cdot k_{kl}}{\sqrt{d}}
        + q_{ij} \cdot R^h_{i-k} + q_{ij} \cdot R^w_{j-l},

with learned tables :math:`R^h, R^w` of :math:`2n - 1` rows (:math:`n` the window or grid
side). A neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d, no biases) maps the grid to
the ``prompt_dim`` channels the decoder reads.

References
----------
Kirillov A. et al. (2023). Segment Anything. ICCV. arXiv:2304.02643.

Li Y., Mao H., Girshick R., He K. (2022). Exploring plain vision transformer backbones for
object detection (ViTDet). ECCV. arXiv:2203.16527.

Li Y., Wu C.-Y., Fan H., Mangalam K., Xiong B., Malik J., Feichtenhofer C. (2022). MViTv2:
improved multiscale vision transformers for classification and detection. CVPR.
arXiv:2112.01526.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models.sam.config import SAMConfig

__all__ = [
    "FeedForward",
    "ImageEncoder",
    "LayerNorm2d",
    "merge_windows",
    "relative_position_bias",
    "split_windows",
]


class LayerNorm2d(nn.Module):
    r"""LayerNorm over the channels of each pixel of a ``(B, C, H, W)`` map.

    .. math::

        y_{c,h,w} = \gamma_c \frac{x_{c,h,w} - \mu_{h,w}}{\sqrt{\sigma^2_{h,w} + \epsilon}}
        + \beta_c,

    with :math:`\mu, \sigma^2` the mean and (biased) variance over :math:`c`.

    Examples
    --------
    >>> import torch
    >>> y = LayerNorm2d(4)(torch.randn(2, 4, 3, 3))
    >>> torch.allclose(y.mean(1), torch.zeros(2, 3, 3), atol=1e-6)
    True
    """

    def __init__(self, channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class FeedForward(nn.Module):
    r"""Two linear layers with an activation between them, :math:`W_2\,\phi(W_1 x)`.

    Examples
    --------
    >>> import torch
    >>> FeedForward(8, 32)(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(self, dim: int, hidden: int, *, activation: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, hidden)
        self.lin2 = nn.Linear(hidden, dim)
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


def split_windows(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Cut a token grid ``(B, H, W, C)`` into ``(B * nH * nW, window, window, C)`` windows.

    The grid is zero-padded at the bottom and right to multiples of ``window``; the padded
    size ``(Hp, Wp)`` is returned for :func:`merge_windows`.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(25.0).reshape(1, 5, 5, 1)
    >>> w, padded = split_windows(x, 3)
    >>> w.shape, padded
    (torch.Size([4, 3, 3, 1]), (6, 6))
    >>> torch.equal(merge_windows(w, 3, padded, (5, 5)), x)
    True
    """
    b, h, w, c = x.shape
    ph, pw = -h % window, -w % window
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window, window, c), (hp, wp)


def merge_windows(windows: torch.Tensor, window: int, padded: tuple[int, int],
                  size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`split_windows`: windows back to a ``(B, H, W, C)`` grid, padding cut."""
    hp, wp = padded
    h, w = size
    nh, nw = hp // window, wp // window
    b = windows.shape[0] // (nh * nw)
    x = windows.view(b, nh, nw, window, window, -1).transpose(2, 3).reshape(b, hp, wp, -1)
    return x[:, :h, :w] if (hp, wp) != (h, w) else x


def _relative_rows(table: torch.Tensor, n: int, name: str) -> torch.Tensor:
    """``R[i - k]`` for ``i, k`` in ``0..n-1``: ``(n, n, d)`` rows of a ``(2n - 1, d)`` table."""
    if table.shape[0] != 2 * n - 1:
        raise ValueError(f"{name} must have {2 * n - 1} rows for a side of {n} tokens, "
                         f"got {tuple(table.shape)}")
    pos = torch.arange(n, device=table.device)
    return table[pos[:, None] - pos[None, :] + (n - 1)]


def relative_position_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                           size: tuple[int, int]) -> torch.Tensor:
    r"""Decomposed relative position terms :math:`q_{ij} \cdot R^h_{i-k} + q_{ij} \cdot R^w_{j-l}`.

    Parameters
    ----------
    q : Tensor
        Queries ``(..., H * W, d)`` of an ``H x W`` grid (row-major), not scaled.
    rel_pos_h, rel_pos_w : Tensor
        Tables ``(2H - 1, d)`` and ``(2W - 1, d)``; row :math:`r + n - 1` holds offset
        :math:`r`.
    size : (int, int)
        The grid ``(H, W)``.

    Returns
    -------
    Tensor
        The additive attention bias ``(..., H * W, H * W)``.

    Examples
    --------
    >>> import torch
    >>> q = torch.ones(1, 4, 2)
    >>> table = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])  # offsets -1, 0, 1
    >>> bias = relative_position_bias(q, table, torch.zeros(3, 2), (2, 2))
    >>> bias[0, 0]  # query (0, 0): keys in row 0 have offset 0, in row 1 offset -1
    tensor([1., 1., 0., 0.])
    """
    h, w = size
    *lead, n, d = q.shape
    grid = q.reshape(*lead, h, w, d)
    bias_h = torch.einsum("...ijc,ikc->...ijk", grid, _relative_rows(rel_pos_h, h, "rel_pos_h"))
    bias_w = torch.einsum("...ijc,jlc->...ijl", grid, _relative_rows(rel_pos_w, w, "rel_pos_w"))
    return (bias_h[..., :, None] + bias_w[..., None, :]).reshape(*lead, n, n)


class _Attention(nn.Module):
    """Multi-head self-attention over a token grid with decomposed relative position terms."""

    def __init__(self, dim: int, heads: int, side: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * side - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * side - 1, dim // heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).view(b, h * w, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = relative_position_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


class _Block(nn.Module):
    """Pre-norm ViT block; attention inside ``window`` x ``window`` windows (0: global)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, window: int, grid: int) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads, window or grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window:
            size = (y.shape[1], y.shape[2])
            windows, padded = split_windows(y, self.window)
            y = merge_windows(self.attn(windows), self.window, padded, size)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    """Non-overlapping ``p x p`` patches to tokens, ``(B, 3, S, S) -> (B, g, g, D)``."""

    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class ImageEncoder(nn.Module):
    """SAM's ViT image encoder, ``(B, 3, S, S) -> (B, prompt_dim, S/p, S/p)``.

    Parameter names follow the official checkpoints (``patch_embed.proj``, ``pos_embed``,
    ``blocks.N.{norm1, attn.qkv, attn.proj, attn.rel_pos_h, attn.rel_pos_w, norm2,
    mlp.lin1, mlp.lin2}``, ``neck.{0, 1, 2, 3}``).

    Parameters
    ----------
    config : SAMConfig
        The sizes (``img_size``, ``patch_size``, ``encoder_*``, ``window_size``,
        ``global_attn_indexes``, ``prompt_dim``).

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models.sam.config import SAM_CONFIGS
    >>> _ = torch.manual_seed(0)
    >>> encoder = ImageEncoder(SAM_CONFIGS["tiny"])
    >>> encoder(torch.zeros(1, 3, 128, 128)).shape
    torch.Size([1, 128, 8, 8])
    >>> [block.window for block in encoder.blocks]  # blocks 1 and 3 attend globally
    [4, 0, 4, 0]
    """

    def __init__(self, config: SAMConfig) -> None:
        super().__init__()
        self.img_size = config.img_size
        grid, dim = config.grid_size, config.encoder_dim
        self.patch_embed = _PatchEmbed(config.patch_size, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(
            _Block(dim, config.encoder_heads, config.encoder_mlp_dim, grid=grid,
                   window=0 if i in config.global_attn_indexes else config.window_size)
            for i in range(config.encoder_depth)
        )
        out = config.prompt_dim
        self.neck = nn.Sequential(
            nn.Conv2d(dim, out, kernel_size=1, bias=False),
            LayerNorm2d(out),
            nn.Conv2d(out, out, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings of normalised, padded images ``(B, 3, S, S)``."""
        s = self.img_size
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != (3, s, s):
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must have shape (B, 3, {s}, {s}) (normalised and padded), got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"images must be a float tensor (normalised), got {images.dtype}")
        x = self.patch_embed(images) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))

r"""Vision transformer (ViT): patches as tokens, a class token and pre-norm self-attention.

Dosovitskiy et al. (2021) cut an image into non-overlapping :math:`p \times p` patches,
embed each linearly (a convolution with kernel = stride = :math:`p`), prepend a learnable
class token and add a learned position embedding:

.. math::

    z_0 = [\, x_{cls};\; x_1 E;\; \dots;\; x_N E \,] + E_{pos},
    \qquad E_{pos} \in \mathbb{R}^{(N + 1) \times D},
    \qquad N = \prod_i H_i / p_i .

Each of the :math:`L` blocks is pre-norm, exactly as the course draws it:

.. math::

    z'_l = z_{l-1} + \operatorname{MSA}(\operatorname{LN}(z_{l-1})), \qquad
    z_l = z'_l + \operatorname{MLP}(\operatorname{LN}(z'_l)),

with multi-head self-attention
:math:`\operatorname{softmax}(Q K^\top / \sqrt{d})\, V` per head (:math:`d = D / h`) and a
two-layer MLP with GELU of hidden width ``mlp_ratio`` :math:`\cdot D`. A final LayerNorm
and a linear head read the class token (``pool="cls"``) or the mean of the patch tokens
(``pool="mean"``). ``spatial_dims=3`` patchifies volumes with a 3D convolution.

The attention uses :func:`torch.nn.functional.scaled_dot_product_attention` (the fused
kernel) unless the attention maps are asked for (``return_attention=True``): then every
layer's :math:`\operatorname{softmax}(Q K^\top / \sqrt{d})` is computed explicitly and
returned. When an input's patch grid differs from the grid of ``image_size`` the position
embedding of the patches is resampled to it (bicubic with antialiasing in 2D, as timm's
``resample_abs_pos_embed``; trilinear in 3D); the class token's entry is kept.

Module names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.i.norm1`` / ``attn.qkv`` / ``attn.proj`` / ``norm2`` /
``mlp.fc1`` / ``mlp.fc2``, ``norm``, ``head``; LayerNorm :math:`\epsilon = 10^{-6}`), so
a state dict loads into either.

:func:`attention_rollout` (Abnar & Zuidema 2020) turns the attention maps into one map of
how much the class token draws on each patch, through all layers.

References
----------
Dosovitskiy A., Beyer L., Kolesnikov A., et al. (2021). An image is worth 16x16 words:
transformers for image recognition at scale. ICLR. arXiv:2010.11929.

Abnar S., Zuidema W. (2020). Quantifying attention flow in transformers. ACL.
arXiv:2005.00928.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models._dense import check_spatial_dims
from mlimaging.models._validation import check_int
from mlimaging.models.registry import register_model

__all__ = ["ViT", "attention_rollout"]

#: LayerNorm epsilon (timm's ViT default).
LN_EPS = 1e-6
POOLS = ("cls", "mean")
HEAD_FUSIONS = ("mean", "max", "min")


def _per_axis(value: Any, name: str, spatial_dims: int) -> tuple[int, ...]:
    """An int, or a sequence of ``spatial_dims`` ints (each >= 1), as a tuple per axis."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != spatial_dims:
            raise ValueError(f"{name} must be an int or {spatial_dims} ints (one per spatial axis), "
                             f"got {value!r}")
    else:
        values = (value,) * spatial_dims
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1 or a tuple of them, got {value!r}")
    return values


def _fmt(size: Sequence[int]) -> str:
    return " x ".join(str(s) for s in size)


class Attention(nn.Module):
    """Multi-head self-attention with one fused ``qkv`` projection (timm's names)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tokens ``(B, T, D)`` -> (tokens, attention ``(B, heads, T, T)`` or None)."""
        b, t, d = x.shape
        q, k, v = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if return_attention:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = attn @ v
        else:
            attn = None
            out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(b, t, d)))
        return out, attn


class Mlp(nn.Module):
    """Linear -> GELU -> dropout -> linear -> dropout."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + MSA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, hidden, dropout)

    def forward(self, x: torch.Tensor, *, return_attention: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, attn = self.attn(self.norm1(x), return_attention=return_attention)
        x = x + y
        return x + self.mlp(self.norm2(x)), attn


class PatchEmbed(nn.Module):
    """Patch embedding: a convolution with kernel = stride = patch size (timm's ``proj``)."""

    def __init__(self, spatial_dims: int, in_channels: int, dim: int, patch_size: tuple[int, ...]) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.proj = conv(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, *spatial)`` -> patch tokens ``(B, N, D)`` in row-major grid order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """Vision transformer classifier, 2D or 3D (Dosovitskiy et al. 2021).

    Parameters
    ----------
    image_size : int or tuple of int
        Input size the position embedding is learned for (one value per spatial axis, or
        one for all); divisible by ``patch_size``. Other sizes that are multiples of the
        patch size are accepted: the position embedding is resampled to their grid.
    patch_size : int or tuple of int
        Patch size :math:`p` per axis (kernel and stride of the patch embedding).
    in_channels : int
        Input channels.
    num_classes : int
        Number of output logits.
    dim : int
        Token width :math:`D`.
    depth : int
        Number of transformer blocks :math:`L`.
    heads : int
        Attention heads :math:`h`; must divide ``dim``.
    mlp_ratio : float
        MLP hidden width as a multiple of ``dim`` (``int(dim * mlp_ratio)``).
    dropout : float
        Dropout in [0, 1) after the position embedding, after the attention projection, in
        the MLP and before the head (timm's ``drop_rate``); attention weights are not dropped.
    spatial_dims : {2, 3}
        Images ``(B, C, H, W)`` or volumes ``(B, C, D, H, W)``.
    pool : {"cls", "mean"}
        The head reads the class token, or the mean of the patch tokens (after the final
        LayerNorm in both cases).

    Attributes
    ----------
    grid_size : tuple of int
        The patch grid of ``image_size``; ``num_patches`` is its product.

    Examples
    --------
    >>> import torch
    >>> model = ViT(image_size=28, patch_size=7, dim=32, depth=2, heads=4).eval()
    >>> model.grid_size, model.pos_embed.shape  # 4 x 4 patches + the class token
    ((4, 4), torch.Size([1, 17, 32]))
    >>> logits, attentions = model(torch.rand(2, 1, 28, 28), return_attention=True)
    >>> logits.shape, len(attentions), attentions[0].shape
    (torch.Size([2, 10]), 2, torch.Size([2, 4, 17, 17]))
    >>> model(torch.rand(1, 1, 42, 42)).shape  # a 6 x 6 grid: position embedding resampled
    torch.Size([1, 10])
    """

    def __init__(self, *, image_size: int | Sequence[int], patch_size: int | Sequence[int],
                 in_channels: int = 1, num_classes: int = 10, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0, dropout: float = 0.0, spatial_dims: int = 2,
                 pool: str = "cls") -> None:
        super().__init__()
        self.spatial_dims = check_spatial_dims(spatial_dims)
        self.image_size = _per_axis(image_size, "image_size", spatial_dims)
        self.patch_size = _per_axis(patch_size, "patch_size", spatial_dims)
        for s, p in zip(self.image_size, self.patch_size, strict=True):
            if s % p:
                raise ValueError(f"image_size must be divisible by patch_size per axis, got image_size "
                                 f"{_fmt(self.image_size)} and patch_size {_fmt(self.patch_size)}")
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        self.dim = check_int(dim, "dim")
        self.depth = check_int(depth, "depth")
        self.heads = check_int(heads, "heads")
        if dim % heads:
            raise ValueError(f"heads must divide dim, got dim={dim} and heads={heads}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0 \
                or int(dim * mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must be a number > 0 with int(dim * mlp_ratio) >= 1, got {mlp_ratio!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.pool = pool
        self.mlp_ratio = float(mlp_ratio)
        self.grid_size = tuple(s // p for s, p in zip(self.image_size, self.patch_size, strict=True))
        self.num_patches = math.prod(self.grid_size)

        self.patch_embed = PatchEmbed(spatial_dims, in_channels, dim, self.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, dim))
        self.pos_drop = nn.Dropout(dropout)
        hidden = int(dim * mlp_ratio)
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head_drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """Truncated normal (std 0.02) for the tokens and linear weights, zero biases (as timm)."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def patch_grid(self, spatial_shape: Sequence[int]) -> tuple[int, ...]:
        """The patch grid of an input of spatial size ``spatial_shape``, checking that it fits.

        Raises
        ------
        ValueError
            If an axis is smaller than one patch or not a multiple of the patch size.
        """
        shape = tuple(int(s) for s in spatial_shape)
        if len(shape) != self.spatial_dims:
            raise ValueError(f"spatial_shape must have {self.spatial_dims} axes, got {shape}")
        if any(s < p for s, p in zip(shape, self.patch_size, strict=True)):
            raise ValueError(f"x is smaller than one patch: image size {_fmt(shape)}, patch_size "
                             f"{_fmt(self.patch_size)}")
        if any(s % p for s, p in zip(shape, self.patch_size, strict=True)):
            raise ValueError(f"x must be a multiple of patch_size on every axis: image size {_fmt(shape)}, "
                             f"patch_size {_fmt(self.patch_size)} (crop or pad the image)")
        return tuple(s // p for s, p in zip(shape, self.patch_size, strict=True))

    def position_embedding(self, grid: Sequence[int]) -> torch.Tensor:
        """The position embedding ``(1, N + 1, D)`` for a patch grid ``grid``.

        ``self.pos_embed`` itself when ``grid`` is :attr:`grid_size`; otherwise the patch
        entries, seen as a ``(D, *grid_size)`` image, are resampled to ``grid`` (bicubic
        with antialiasing in 2D, as timm; trilinear in 3D) and the class token's entry is
        kept.
        """
        grid = tuple(int(g) for g in grid)
        if grid == self.grid_size:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        dtype = patch_pos.dtype
        img = patch_pos.float().reshape(1, *self.grid_size, self.dim).movedim(-1, 1)
        if self.spatial_dims == 2:
            img = F.interpolate(img, size=grid, mode="bicubic", align_corners=False, antialias=True)
        else:
            img = F.interpolate(img, size=grid, mode="trilinear", align_corners=False)
        patch_pos = img.movedim(1, -1).reshape(1, -1, self.dim).to(dtype)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def _check_input(self, x: Any) -> tuple[int, ...]:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
        axes = "H, W" if self.spatial_dims == 2 else "D, H, W"
        if x.ndim != 2 + self.spatial_dims or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, {axes}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
        return self.patch_grid(x.shape[2:])

    def forward(self, x: torch.Tensor, *, return_attention: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, num_classes)`` of ``x`` ``(B, in_channels, *spatial)``.

        With ``return_attention=True``, also the list of every block's attention
        :math:`\\operatorname{softmax}(Q K^\\top / \\sqrt{d})`, each ``(B, heads, N + 1, N + 1)``
        (token 0 is the class token; the patches follow in row-major grid order).
        """
        grid = self._check_input(x)
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        z = self.pos_drop(torch.cat([cls, tokens], dim=1) + self.position_embedding(grid))
        attentions = []
        for block in self.blocks:
            z, attn = block(z, return_attention=return_attention)
            if return_attention:
                attentions.append(attn)
        z = self.norm(z)
        pooled = z[:, 0] if self.pool == "cls" else z[:, 1:].mean(dim=1)
        logits = self.head(self.head_drop(pooled))
        return (logits, attentions) if return_attention else logits


def attention_rollout(attentions: Sequence[torch.Tensor], *, head_fusion: str = "mean",
                      discard_ratio: float = 0.0, grid: Sequence[int] | None = None,
                      size: Sequence[int] | None = None) -> torch.Tensor:
    r"""Attention rollout (Abnar & Zuidema 2020): the class token's attention to each patch.

    Each layer's heads are fused (mean, max or min) into :math:`A_l`, the residual
    connection is accounted for by adding the identity and renormalising the rows, and the
    layers are multiplied through:

    .. math::

        \tilde A_l = \frac{A_l + I}{\lVert A_l + I \rVert_{\text{row}, 1}}, \qquad
        R = \tilde A_L \, \tilde A_{L-1} \cdots \tilde A_1 .

    Row 0 of :math:`R` (the class token) without its first entry, reshaped to the patch
    grid, is the map. Its entries are non-negative and sum, with :math:`R_{00}`, to 1.

    Parameters
    ----------
    attentions : sequence of Tensor
        Every layer's attention ``(B, heads, T, T)``, first layer first, token 0 the class
        token (``ViT.forward(x, return_attention=True)``).
    head_fusion : {"mean", "max", "min"}
        How the heads are fused (the paper averages them).
    discard_ratio : float
        In [0, 1): per image and layer, this fraction of the smallest fused entries is set
        to 0 before adding the identity (never the class token's attention to itself), to
        keep the strongest paths (a common variant for figures; 0 is the paper's rollout).
    grid : sequence of int, optional
        The patch grid (``ViT.patch_grid(x.shape[2:])``); by default the square grid of the
        :math:`T - 1` patches (a ValueError when :math:`T - 1` is not a square).
    size : sequence of int, optional
        Upsample the map to this spatial size (the image's, for overlays): bilinear in 2D,
        trilinear in 3D.

    Returns
    -------
    Tensor
        ``(B, *grid)``, or ``(B, *size)`` when ``size`` is given.

    Examples
    --------
    >>> import torch
    >>> model = ViT(image_size=28, patch_size=7, dim=32, depth=2, heads=4).eval()
    >>> x = torch.rand(1, 1, 28, 28)
    >>> _, attentions = model(x, return_attention=True)
    >>> attention_rollout(attentions).shape
    torch.Size([1, 4, 4])
    >>> attention_rollout(attentions, size=(28, 28)).shape
    torch.Size([1, 28, 28])
    """
    if isinstance(attentions, torch.Tensor) or not isinstance(attentions, Sequence) or not attentions:
        raise ValueError("attentions must be a non-empty list of (B, heads, T, T) tensors, got "
                         f"{type(attentions).__name__}")
    first = attentions[0]
    for a in attentions:
        if not isinstance(a, torch.Tensor) or a.ndim != 4 or a.shape[-1] != a.shape[-2] \
                or a.shape != first.shape or a.shape[-1] < 2:
            shape = tuple(a.shape) if isinstance(a, torch.Tensor) else type(a).__name__
            raise ValueError(f"attentions must all have one shape (B, heads, T, T) with T >= 2, "
                             f"got {shape} (first {tuple(first.shape)})")
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if isinstance(discard_ratio, bool) or not isinstance(discard_ratio, (int, float)) \
            or not 0 <= discard_ratio < 1:
        raise ValueError(f"discard_ratio must be a number in [0, 1), got {discard_ratio!r}")
    b, _, t, _ = first.shape
    n = t - 1
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ValueError(f"grid must be given: {n} patch tokens are not a square grid")
        grid = (side, side)
    grid = tuple(int(g) for g in grid)
    if math.prod(grid) != n or any(g < 1 for g in grid):
        raise ValueError(f"grid must have {n} cells (the patch tokens), got {grid}")

    eye = torch.eye(t, dtype=first.dtype, device=first.device)
    rollout = None
    for a in attentions:
        if head_fusion == "mean":
            fused = a.mean(dim=1)
        elif head_fusion == "max":
            fused = a.amax(dim=1)
        else:
            fused = a.amin(dim=1)
        k = int(t * t * discard_ratio)
        if k:
            flat = fused.reshape(b, -1)
            drop = torch.zeros_like(flat, dtype=torch.bool)
            drop.scatter_(1, flat.topk(k, dim=-1, largest=False).indices, True)
            drop[:, 0] = False  # the class token's attention to itself
            fused = flat.masked_fill(drop, 0).reshape(b, t, t)
        step = fused + eye
        step = step / step.sum(dim=-1, keepdim=True)
        rollout = step if rollout is None else step @ rollout
    assert rollout is not None
    out = rollout[:, 0, 1:].reshape(b, *grid)
    if size is not None:
        size = tuple(int(s) for s in size)
        if len(size) != len(grid) or len(size) not in (2, 3) or any(s < 1 for s in size):
            raise ValueError(f"size must be {len(grid)} positive ints (2D or 3D), got {size}")
        mode = "bilinear" if len(size) == 2 else "trilinear"
        out = F.interpolate(out[:, None], size=size, mode=mode, align_corners=False)[:, 0]
    return out


@register_model("vit_tiny", input_shape=(1, 28, 28))
def vit_tiny(*, num_classes: int = 10, in_channels: int = 1, image_size: int | Sequence[int] = 28,
             patch_size: int | Sequence[int] = 7, spatial_dims: int = 2, dropout: float = 0.0,
             pool: str = "cls") -> ViT:
    """ViT with 64-dim tokens, 4 blocks of 4 heads; 7 px patches (16 tokens + class at 28 px)."""
    return ViT(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
               num_classes=num_classes, dim=64, depth=4, heads=4, dropout=dropout,
               spatial_dims=spatial_dims, pool=pool)


@register_model("vit_small", input_shape=(1, 28, 28))
def vit_small(*, num_classes: int = 10, in_channels: int = 1, image_size: int | Sequence[int] = 28,
              patch_size: int | Sequence[int] = 4, spatial_dims: int = 2, dropout: float = 0.0,
              pool: str = "cls") -> ViT:
    """ViT with 128-dim tokens, 6 blocks of 4 heads; 4 px patches (49 tokens + class at 28 px)."""
    return ViT(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
               num_classes=num_classes, dim=128, depth=6, heads=4, dropout=dropout,
               spatial_dims=spatial_dims, pool=pool)

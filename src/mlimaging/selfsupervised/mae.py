r"""Masked autoencoder (MAE, He et al. 2022): reconstruct the pixels of masked patches.

An image is cut into :math:`N` patches; a random :math:`r = 75\%` of them is removed. The
ViT encoder :math:`f` sees only the :math:`K = \operatorname{round}((1 - r) N)` visible
patches (with their position embeddings and the class token); a light transformer decoder
:math:`g` receives the encoded visible tokens, a shared learnable mask token at every
removed position, and its own (fixed sine-cosine) position embeddings, and predicts each
patch's :math:`p^2 C` pixel values. The loss is the mean squared error on the masked
patches only:

.. math::

    \mathcal{L} = \frac{1}{\sum_{b,n} m_{bn}} \sum_{b,n} m_{bn}\,
    \frac{1}{p^2 C} \lVert \hat x_{bn} - t_{bn} \rVert_2^2,

where :math:`m_{bn} = 1` for a masked patch and the target :math:`t_{bn}` is the patch
itself, or with ``norm_pix_loss`` the patch normalised by its own mean and variance,
:math:`t = (x - \mu) / \sqrt{\sigma^2 + 10^{-6}}`.

After pretraining the decoder is dropped; the representation is the encoder's (all patches
visible): the mean of the patch tokens after the final LayerNorm.

References
----------
He K., Chen X., Xie S., Li Y., Dollar P., Girshick R. (2022). Masked autoencoders are
scalable vision learners. CVPR. arXiv:2111.06377.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mlimaging.models.vit import LN_EPS, Block, ViT
from mlimaging.selfsupervised.masking import (
    num_kept,
    patchify,
    random_masking,
    sincos_position_embedding,
    unpatchify,
)

__all__ = ["MAE", "encode_visible", "masked_patch_loss", "vit_encoder"]


def vit_encoder(*, image_size: int | Sequence[int], patch_size: int | Sequence[int], in_channels: int = 1,
                dim: int = 64, depth: int = 4, heads: int = 4, encoder: ViT | None = None) -> ViT:
    """The ViT feature encoder of MAE / I-JEPA: ``encoder(x) -> (B, dim)``.

    A :class:`~mlimaging.models.ViT` (2D) whose head is the identity and whose pooling is the
    mean of the patch tokens after the final LayerNorm; ``feature_dim`` is set to ``dim``.
    When ``encoder`` is given (a 2D ViT) it is used in place (its head replaced, its pooling
    set to ``"mean"``) and the other arguments are ignored. A new encoder's patch position
    embedding starts from the 2D sine-cosine embedding (learned from there).

    Examples
    --------
    >>> import torch
    >>> f = vit_encoder(image_size=28, patch_size=7, dim=32, depth=1, heads=2)
    >>> f(torch.rand(3, 1, 28, 28)).shape, f.feature_dim
    (torch.Size([3, 32]), 32)
    """
    if encoder is None:
        encoder = ViT(image_size=image_size, patch_size=patch_size, in_channels=in_channels, num_classes=1,
                      dim=dim, depth=depth, heads=heads, pool="mean")
        with torch.no_grad():
            encoder.pos_embed[0, 1:].copy_(sincos_position_embedding(encoder.dim, encoder.grid_size))
            encoder.pos_embed[0, :1].zero_()
    elif not isinstance(encoder, ViT) or encoder.spatial_dims != 2:
        raise ValueError(f"encoder must be a 2D mlimaging.models.ViT, got {type(encoder).__name__}")
    encoder.head = nn.Identity()
    encoder.pool = "mean"
    encoder.feature_dim = encoder.dim
    return encoder


def encode_visible(vit: ViT, x: torch.Tensor, keep_idx: torch.Tensor | None = None) -> torch.Tensor:
    """Tokens ``(B, 1 + K, D)`` of a ViT on the patches ``keep_idx`` ``(B, K)`` of ``x`` only.

    Patch embedding plus position embedding of every patch, then the kept patches are
    gathered (all of them when ``keep_idx`` is None), the class token is prepended and the
    sequence goes through the blocks and the final LayerNorm. Token 0 is the class token.
    """
    grid = vit._check_input(x)
    if grid != vit.grid_size:
        raise ValueError(f"x must have the encoder's image size {vit.image_size}, got {tuple(x.shape[2:])}")
    tokens = vit.patch_embed(x) + vit.pos_embed[:, 1:]
    if keep_idx is not None:
        tokens = tokens.gather(1, keep_idx[..., None].expand(-1, -1, tokens.shape[-1]))
    cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
    z = vit.pos_drop(torch.cat([cls, tokens], dim=1))
    for block in vit.blocks:
        z, _ = block(z)
    return vit.norm(z)


def _patch_targets(patches: torch.Tensor, norm_pix_loss: bool) -> torch.Tensor:
    if not norm_pix_loss:
        return patches
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True, unbiased=True)
    return (patches - mean) / (var + 1e-6).sqrt()


def masked_patch_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, *,
                      norm_pix_loss: bool = False) -> torch.Tensor:
    r"""MAE's loss: the per-patch mean squared error averaged over the masked patches only.

    .. math::

        \mathcal{L} = \frac{\sum_{b,n} m_{bn} \operatorname{mean}_k (\hat x_{bnk} - t_{bnk})^2}
                           {\sum_{b,n} m_{bn}}

    Parameters
    ----------
    pred, target
        Predicted and true patches ``(B, N, P)`` (:func:`~mlimaging.selfsupervised.masking.patchify`
        of the images); with ``norm_pix_loss`` each target patch is normalised by its mean
        and (unbiased) variance first.
    mask
        ``(B, N)`` bool (or 0/1), True at the masked patches; at least one.

    Examples
    --------
    >>> import torch
    >>> pred, target = torch.zeros(1, 2, 4), torch.ones(1, 2, 4)
    >>> target[0, 0] = 9.0  # patch 0 is visible: its error does not count
    >>> float(masked_patch_loss(pred, target, torch.tensor([[False, True]])))
    1.0
    """
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must have the same shape (B, N, P), got {tuple(pred.shape)} "
                         f"and {tuple(target.shape)}")
    if tuple(mask.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"mask must have shape {tuple(pred.shape[:2])}, got {tuple(mask.shape)}")
    m = mask.to(pred.dtype)
    if not float(m.sum()) > 0:
        raise ValueError("mask must mark at least one masked patch")
    per_patch = (pred - _patch_targets(target, norm_pix_loss)).pow(2).mean(dim=-1)
    return (per_patch * m).sum() / m.sum()


class MAE(nn.Module):
    r"""Masked autoencoder with a ViT encoder (He et al. 2022).

    Parameters
    ----------
    image_size, patch_size
        Image and patch size (square ints or (H, W) pairs); the image divisible by the patch.
    in_channels
        Image channels :math:`C`.
    mask_ratio
        Fraction :math:`r \in (0, 1)` of the patches removed; it must leave at least one patch
        visible and one masked.
    encoder_dim, encoder_depth, encoder_heads
        Width, blocks and heads of the ViT encoder (ignored when ``encoder`` is given).
    decoder_dim, decoder_depth, decoder_heads
        Width, blocks and heads of the light decoder.
    norm_pix_loss
        Reconstruct each patch normalised by its own mean and variance.
    encoder
        An existing 2D :class:`~mlimaging.models.ViT` to pretrain (its head is replaced by
        the identity and it pools the mean patch token).

    Attributes
    ----------
    encoder : ViT
        ``encoder(x) -> (B, feature_dim)``: mean of the patch tokens after the final norm.
    feature_dim : int
        The encoder's width.

    Examples
    --------
    >>> import torch
    >>> mae = MAE(image_size=28, patch_size=7, encoder_dim=32, encoder_depth=1, decoder_dim=16,
    ...           decoder_depth=1)
    >>> x = torch.rand(4, 1, 28, 28)
    >>> loss = mae.ssl_loss(x, generator=torch.Generator().manual_seed(0))
    >>> loss.ndim, mae.encoder(x).shape
    (0, torch.Size([4, 32]))
    >>> masked, recon, mask = mae.reconstruct(x, generator=torch.Generator().manual_seed(0))
    >>> recon.shape, float(mask.float().mean())  # 12 of 16 patches masked
    (torch.Size([4, 1, 28, 28]), 0.75)
    """

    def __init__(self, *, image_size: int | Sequence[int], patch_size: int | Sequence[int], in_channels: int = 1,
                 mask_ratio: float = 0.75, encoder_dim: int = 64, encoder_depth: int = 4, encoder_heads: int = 4,
                 decoder_dim: int = 64, decoder_depth: int = 2, decoder_heads: int = 4,
                 norm_pix_loss: bool = False, encoder: ViT | None = None) -> None:
        super().__init__()
        self.encoder = vit_encoder(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
                                   dim=encoder_dim, depth=encoder_depth, heads=encoder_heads, encoder=encoder)
        vit = self.encoder
        self.num_patches = vit.num_patches
        num_kept(self.num_patches, mask_ratio)  # validates the ratio for this grid
        self.mask_ratio = float(mask_ratio)
        for name, value in (("decoder_dim", decoder_dim), ("decoder_depth", decoder_depth),
                            ("decoder_heads", decoder_heads)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if decoder_dim % decoder_heads:
            raise ValueError(f"decoder_heads must divide decoder_dim, got {decoder_dim} and {decoder_heads}")
        if not isinstance(norm_pix_loss, bool):
            raise ValueError(f"norm_pix_loss must be a bool, got {norm_pix_loss!r}")
        self.norm_pix_loss = norm_pix_loss
        self.feature_dim = vit.dim
        self.patch_size = vit.patch_size
        self.image_size = vit.image_size
        self.in_channels = vit.in_channels
        patch_dim = vit.patch_size[0] * vit.patch_size[1] * vit.in_channels

        self.decoder_embed = nn.Linear(vit.dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        pos = torch.cat([torch.zeros(1, decoder_dim), sincos_position_embedding(decoder_dim, vit.grid_size)])
        self.register_buffer("decoder_pos_embed", pos[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(Block(decoder_dim, decoder_heads, 4 * decoder_dim, 0.0)
                                            for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=LN_EPS)
        self.decoder_pred = nn.Linear(decoder_dim, patch_dim)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def _decode(self, latent: torch.Tensor, restore_idx: torch.Tensor) -> torch.Tensor:
        """Encoded ``[cls, visible]`` tokens -> predicted patches ``(B, N, p^2 C)`` in grid order."""
        z = self.decoder_embed(latent)
        b, t, d = z.shape
        masks = self.mask_token.expand(b, self.num_patches + 1 - t, -1)
        seq = torch.cat([z[:, 1:], masks], dim=1).gather(1, restore_idx[..., None].expand(-1, -1, d))
        z = torch.cat([z[:, :1], seq], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            z, _ = block(z)
        return self.decoder_pred(self.decoder_norm(z))[:, 1:]

    def forward_masked(self, x: torch.Tensor, *, generator: torch.Generator | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Predicted patches ``(B, N, p^2 C)`` and the mask ``(B, N)`` (True = removed) of a random masking."""
        keep, mask, restore = random_masking(x.shape[0], self.num_patches, self.mask_ratio, generator=generator,
                                             device=x.device)
        latent = encode_visible(self.encoder, x, keep)
        return self._decode(latent, restore), mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representation ``(B, feature_dim)`` of ``x`` (all patches visible)."""
        return self.encoder(x)

    def ssl_loss(self, x: torch.Tensor, y: Any = None, *, generator: torch.Generator | None = None
                 ) -> torch.Tensor:
        """The masked-patch reconstruction loss of a batch ``(B, C, H, W)``; ``y`` is ignored."""
        pred, mask = self.forward_masked(x, generator=generator)
        return masked_patch_loss(pred, patchify(x, self.patch_size), mask, norm_pix_loss=self.norm_pix_loss)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, *, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Images for figures: ``(masked_input, reconstruction, mask)``, each ``(B, C, H, W)``.

        ``masked_input`` is ``x`` with the removed patches set to 0; ``reconstruction`` is the
        decoder's prediction at the removed patches and ``x`` at the visible ones (with
        ``norm_pix_loss`` the predictions are mapped back to pixels with each true patch's
        mean and standard deviation, as the MAE paper's figures); ``mask`` is True on the
        removed pixels. Runs in eval mode and restores the previous mode.
        """
        was_training = self.training
        self.eval()
        try:
            pred, mask = self.forward_masked(x, generator=generator)
        finally:
            self.train(was_training)
        patches = patchify(x, self.patch_size)
        if self.norm_pix_loss:
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True, unbiased=True) + 1e-6).sqrt()
            pred = pred * std + mean
        m = mask[..., None]
        args = (self.patch_size, self.image_size, self.in_channels)
        masked_input = unpatchify(patches.masked_fill(m, 0.0), *args)
        reconstruction = unpatchify(torch.where(m, pred, patches), *args)
        mask_image = unpatchify(m.expand_as(patches).to(x.dtype), *args).bool()
        return masked_input, reconstruction, mask_image

r"""Configurations of Segment Anything (SAM): the official ViT-B/L/H sizes and a tiny one.

A :class:`SAMConfig` fixes every size that shapes the weights of a SAM network
(Kirillov et al. 2023):

- the **image encoder**, a ViT on :math:`S \times S` images cut into :math:`p \times p`
  patches, so a grid of :math:`g = S / p` tokens per side, of width ``encoder_dim``, with
  ``encoder_depth`` blocks of ``encoder_heads`` heads; blocks attend inside
  ``window_size`` :math:`\times` ``window_size`` windows except those in
  ``global_attn_indexes``, which attend over the whole grid; a neck maps to ``prompt_dim``
  channels;
- the **prompt encoder** of width ``prompt_dim`` with a mask branch of ``mask_in_chans``
  channels;
- the **mask decoder**, a two-way transformer of ``decoder_depth`` blocks, ``decoder_heads``
  heads and MLP width ``decoder_mlp_dim``, cross attention at width
  ``prompt_dim / attention_downsample_rate``, ``num_multimask_outputs`` + 1 mask tokens and
  an IoU head of ``iou_head_depth`` layers.

The image embedding is :math:`(\text{prompt\_dim}, g, g)` and the low-resolution mask
logits are :math:`(4g, 4g)`.

References
----------
Kirillov A., Mintun E., Ravi N., Mao H., Rolland C., Gustafson L., Xiao T., Whitehead S.,
Berg A. C., Lo W.-Y., Dollar P., Girshick R. (2023). Segment Anything. ICCV.
arXiv:2304.02643.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

__all__ = ["SAM_CONFIGS", "SAMConfig"]


def _positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True)
class SAMConfig:
    """Sizes of a SAM network (the defaults are SAM ViT-B, as published).

    Parameters
    ----------
    img_size : int
        Side :math:`S` of the square encoder input (1024 for the official models).
    patch_size : int
        Patch side :math:`p`; ``img_size`` must be a multiple of it.
    encoder_dim, encoder_depth, encoder_heads : int
        Width, number of blocks and heads of the ViT image encoder.
    global_attn_indexes : tuple of int
        Blocks (0-based) with global attention; the others use windows.
    window_size : int
        Window side (in tokens) of the windowed blocks; the grid is zero-padded to a
        multiple of it.
    mlp_ratio : float
        Hidden width of the encoder MLPs over ``encoder_dim``.
    prompt_dim : int
        Channels of the image embedding, the prompt tokens and the decoder (256 official).
    mask_in_chans : int
        Hidden channels of the dense mask-prompt branch (16 official; divisible by 4).
    decoder_depth, decoder_heads, decoder_mlp_dim : int
        Two-way transformer blocks, heads and MLP width (2, 8, 2048 official).
    attention_downsample_rate : int
        Cross attentions of the decoder work at ``prompt_dim / rate`` channels (2 official).
    num_multimask_outputs : int
        Masks predicted for an ambiguous prompt (3 official); one more token gives the
        single-mask output.
    iou_head_depth, iou_head_hidden_dim : int
        Layers and hidden width of the MLP predicting each mask's IoU (3, 256 official).
    pixel_mean, pixel_std : tuple of float
        Per-channel statistics (RGB, 0-255 scale) used by ``normalize_and_pad``.

    Raises
    ------
    ValueError
        For a size that is not a positive int, ``img_size`` not a multiple of
        ``patch_size``, a global index outside the encoder, heads that do not divide a
        width, or ``mask_in_chans`` not a multiple of 4.

    Examples
    --------
    >>> cfg = SAM_CONFIGS["vit_b"]
    >>> cfg.encoder_dim, cfg.encoder_depth, cfg.global_attn_indexes
    (768, 12, (2, 5, 8, 11))
    >>> cfg.grid_size, cfg.low_res_size
    (64, 256)
    >>> SAMConfig(img_size=100, patch_size=16)
    Traceback (most recent call last):
    ...
    ValueError: img_size must be a multiple of patch_size (16), got 100
    """

    img_size: int = 1024
    patch_size: int = 16
    encoder_dim: int = 768
    encoder_depth: int = 12
    encoder_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = field(default=(123.675, 116.28, 103.53))
    pixel_std: tuple[float, float, float] = field(default=(58.395, 57.12, 57.375))

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.type in ("int", int):
                _positive_int(getattr(self, f.name), f.name)
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size must be a multiple of patch_size ({self.patch_size}), "
                             f"got {self.img_size}")
        indexes = tuple(self.global_attn_indexes)
        for i in indexes:
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.encoder_depth:
                raise ValueError(f"global_attn_indexes must hold block indexes in 0..{self.encoder_depth - 1}, "
                                 f"got {self.global_attn_indexes!r}")
        object.__setattr__(self, "global_attn_indexes", tuple(sorted(set(indexes))))
        if not (isinstance(self.mlp_ratio, (int, float)) and not isinstance(self.mlp_ratio, bool)
                and self.mlp_ratio > 0):
            raise ValueError(f"mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        object.__setattr__(self, "mlp_ratio", float(self.mlp_ratio))
        if self.encoder_dim % self.encoder_heads:
            raise ValueError(f"encoder_heads ({self.encoder_heads}) must divide encoder_dim ({self.encoder_dim})")
        if self.prompt_dim % 8:
            raise ValueError(f"prompt_dim must be a multiple of 8 (the upscaling has prompt_dim / 8 channels), "
                             f"got {self.prompt_dim}")
        if self.prompt_dim % self.attention_downsample_rate:
            raise ValueError(f"attention_downsample_rate ({self.attention_downsample_rate}) must divide "
                             f"prompt_dim ({self.prompt_dim})")
        cross = self.prompt_dim // self.attention_downsample_rate
        if self.prompt_dim % self.decoder_heads or cross % self.decoder_heads:
            raise ValueError(f"decoder_heads ({self.decoder_heads}) must divide prompt_dim ({self.prompt_dim}) "
                             f"and the cross-attention width ({cross})")
        if self.mask_in_chans % 4:
            raise ValueError(f"mask_in_chans must be a multiple of 4, got {self.mask_in_chans}")
        for name in ("pixel_mean", "pixel_std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or (name == "pixel_std" and min(value) <= 0):
                raise ValueError(f"{name} must hold 3 numbers (positive for pixel_std), got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)

    @property
    def grid_size(self) -> int:
        """Tokens per side of the image embedding, :math:`g = S / p`."""
        return self.img_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Side of the low-resolution mask logits and of the mask prompt, :math:`4 g`."""
        return 4 * self.grid_size

    @property
    def encoder_mlp_dim(self) -> int:
        """Hidden width of the encoder MLPs, ``int(encoder_dim * mlp_ratio)``."""
        return int(self.encoder_dim * self.mlp_ratio)


SAM_CONFIGS: dict[str, SAMConfig] = {
    "vit_b": SAMConfig(),
    "vit_l": SAMConfig(encoder_dim=1024, encoder_depth=24, encoder_heads=16,
                       global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": SAMConfig(encoder_dim=1280, encoder_depth=32, encoder_heads=16,
                       global_attn_indexes=(7, 15, 23, 31)),
    # CPU-sized: 128 px, an 8 x 8 grid of 16 px patches, windows of 4 x 4 tokens (4 per image)
    # in blocks 0 and 2, global attention in blocks 1 and 3; a decoder of half the official
    # width (128, so 16 upscaled channels) with 8 heads as published (the loader assumes 8).
    "tiny": SAMConfig(img_size=128, patch_size=16, encoder_dim=64, encoder_depth=4, encoder_heads=4,
                      global_attn_indexes=(1, 3), window_size=4, prompt_dim=128, decoder_mlp_dim=512,
                      iou_head_hidden_dim=128),
}

r"""Encoders :math:`f`: the networks whose representation :math:`h = f(x)` a method learns.

Every self-supervised method takes an encoder, an ``nn.Module`` mapping images
``(B, C, H, W)`` to features ``(B, D)`` with an attribute ``feature_dim == D`` (what the
probes of :mod:`mlimaging.selfsupervised.evaluation` read).

- :class:`SmallCNN`: a compact convolutional encoder for 8-64 px images (digits, MNIST,
  MedMNIST, phantom patches), conv-BN-ReLU blocks and a global average pool, the small
  cousin of the ResNet-50 trunk of SimCLR (Chen et al. 2020).
- :class:`ViTEncoder`: the trunk of a :class:`mlimaging.models.ViT` (patch embedding, class
  token, position embedding, blocks, final LayerNorm) without its classification head,
  returning the class token or the mean patch token (Dosovitskiy et al. 2021).
- :func:`make_encoder`: build one by name (``"small_cnn"``, ``"vit_tiny"``, ``"vit_small"``).

References
----------
Chen T., Kornblith S., Norouzi M., Hinton G. (2020). A simple framework for contrastive
learning of visual representations. ICML. arXiv:2002.05709.

Dosovitskiy A., Beyer L., Kolesnikov A., et al. (2021). An image is worth 16x16 words:
transformers for image recognition at scale. ICLR. arXiv:2010.11929.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mlimaging.models.vit import ViT

__all__ = ["SmallCNN", "ViTEncoder", "list_encoders", "make_encoder"]


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _conv_bn_relu(c_in: int, c_out: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    r"""Compact convolutional encoder for small images: :math:`h = \operatorname{GAP}(\phi(x))`.

    Three stages of 3x3 conv-BN-ReLU blocks of widths :math:`w, 2w, 4w` (two blocks per
    stage, a 2x2 max pool between stages), then a 1x1 conv-BN-ReLU to ``feature_dim``
    channels and a global average pool:

    .. math::

        h = \frac{1}{|\Omega|} \sum_{u \in \Omega} \operatorname{ReLU}(\operatorname{BN}(
        W_{1\times 1} * \phi(x)))_u \in \mathbb{R}_{\ge 0}^{D},

    where :math:`\Omega` is the final feature grid (7x7 for 28 px inputs). Like the
    average-pooled ResNet trunk of SimCLR (Chen et al. 2020, arXiv:2002.05709) the
    representation is non-negative and taken before any projection head. Any input of at
    least 4x4 pixels works (the pooling floors odd sizes); it is meant for 8-64 px.

    Parameters
    ----------
    in_channels
        Image channels (1 for grey-level, 3 for RGB).
    feature_dim
        Width :math:`D` of the representation.
    width
        Channels :math:`w` of the first stage.

    Attributes
    ----------
    feature_dim : int
        :math:`D`, the size of ``forward``'s output.

    Examples
    --------
    >>> import torch
    >>> net = SmallCNN(in_channels=1, feature_dim=16, width=4)
    >>> net(torch.rand(2, 1, 28, 28)).shape, net.feature_dim
    (torch.Size([2, 16]), 16)
    """

    def __init__(self, *, in_channels: int = 1, feature_dim: int = 128, width: int = 32) -> None:
        super().__init__()
        self.in_channels = _check_positive_int(in_channels, "in_channels")
        self.feature_dim = _check_positive_int(feature_dim, "feature_dim")
        self.width = _check_positive_int(width, "width")
        w = width
        self.features = nn.Sequential(
            _conv_bn_relu(in_channels, w), _conv_bn_relu(w, w), nn.MaxPool2d(2),
            _conv_bn_relu(w, 2 * w), _conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv_bn_relu(2 * w, 4 * w), _conv_bn_relu(4 * w, 4 * w),
            _conv_bn_relu(4 * w, feature_dim, kernel_size=1),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, feature_dim)`` of images ``(B, in_channels, H, W)``."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
        if min(x.shape[-2:]) < 4:
            raise ValueError(f"x must be at least 4x4 pixels (two 2x2 poolings), got {tuple(x.shape[-2:])}")
        return self.features(x).mean(dim=(-2, -1))


class ViTEncoder(nn.Module):
    r"""The trunk of a vision transformer as an encoder: final-norm token features, no head.

    With :math:`z_L` the tokens after the last block of the ViT (Dosovitskiy et al. 2021,
    arXiv:2010.11929) and its final LayerNorm,

    .. math::

        h = \operatorname{LN}(z_L)_0 \quad (\text{pool="cls"}), \qquad
        h = \frac{1}{N} \sum_{i=1}^{N} \operatorname{LN}(z_L)_i \quad (\text{pool="mean"}).

    The encoder registers the ViT's own submodules and parameters (``patch_embed``,
    ``cls_token``, ``pos_embed``, ``blocks``, ``norm``), shared with ``vit``: training the
    encoder trains ``vit``, whose head is left out (no parameter goes unused, as
    ``DistributedDataParallel`` requires). The state dict keys are the ViT's (timm's) without
    ``head.*``, so ``vit.load_state_dict(encoder.state_dict(), strict=False)`` restores a
    classifier trunk. Inputs of another size than ``vit.image_size`` (multiples of the patch
    size) get the resampled position embedding, as in the ViT.

    Parameters
    ----------
    vit
        A :class:`mlimaging.models.ViT` (e.g. ``create_model("vit_tiny")``).
    pool
        ``"cls"`` (the class token) or ``"mean"`` (the mean of the patch tokens); ``None``
        takes the ViT's own ``pool``.

    Attributes
    ----------
    feature_dim : int
        The token width ``vit.dim``.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models import ViT
    >>> vit = ViT(image_size=28, patch_size=7, dim=32, depth=1, heads=4)
    >>> enc = ViTEncoder(vit, pool="mean")
    >>> enc(torch.rand(2, 1, 28, 28)).shape, enc.feature_dim
    (torch.Size([2, 32]), 32)
    >>> enc.pos_embed is vit.pos_embed  # shared parameters
    True
    """

    # The ViT's input checks and position-embedding resampling, reused on the shared parameters.
    patch_grid = ViT.patch_grid
    position_embedding = ViT.position_embedding
    _check_input = ViT._check_input

    def __init__(self, vit: ViT, *, pool: str | None = None) -> None:
        super().__init__()
        if not isinstance(vit, ViT):
            raise ValueError(f"vit must be a mlimaging.models.ViT, got {type(vit).__name__}")
        pool = vit.pool if pool is None else pool
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls', 'mean' or None (the ViT's), got {pool!r}")
        self.pool = pool
        for name in ("spatial_dims", "image_size", "patch_size", "in_channels", "dim", "grid_size",
                     "num_patches"):
            setattr(self, name, getattr(vit, name))
        self.feature_dim = vit.dim
        self.patch_embed = vit.patch_embed
        self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.pos_drop = vit.pos_drop
        self.blocks = vit.blocks
        self.norm = vit.norm

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All final-norm tokens ``(B, N + 1, dim)`` (token 0 is the class token)."""
        grid = self._check_input(x)
        patches = self.patch_embed(x)
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        z = self.pos_drop(torch.cat([cls, patches], dim=1) + self.position_embedding(grid))
        for block in self.blocks:
            z, _ = block(z)
        return self.norm(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, dim)`` of ``x`` ``(B, in_channels, *spatial)``: class or mean token."""
        z = self.tokens(x)
        return z[:, 0] if self.pool == "cls" else z[:, 1:].mean(dim=1)


_VIT_NAMES = ("vit_tiny", "vit_small")


def list_encoders() -> list[str]:
    """Names :func:`make_encoder` accepts."""
    return ["small_cnn", *_VIT_NAMES]


def make_encoder(name: str, **kwargs: Any) -> nn.Module:
    """Build an encoder by name.

    Parameters
    ----------
    name
        ``"small_cnn"`` (keywords of :class:`SmallCNN`: ``in_channels``, ``feature_dim``,
        ``width``) or a ViT of :mod:`mlimaging.models` (``"vit_tiny"``, ``"vit_small"``;
        keywords of its builder, e.g. ``image_size``, ``patch_size``, ``in_channels``,
        ``pool``), wrapped in a :class:`ViTEncoder`.
    **kwargs
        Options of the encoder.

    Raises
    ------
    ValueError
        Unknown ``name``.

    Examples
    --------
    >>> make_encoder("small_cnn", feature_dim=8, width=4).feature_dim
    8
    >>> make_encoder("vit_tiny", image_size=28).feature_dim
    64
    """
    if name == "small_cnn":
        return SmallCNN(**kwargs)
    if name in _VIT_NAMES:
        from mlimaging.models import create_model

        kwargs.setdefault("num_classes", 1)  # the head is not part of the encoder
        return ViTEncoder(create_model(name, **kwargs))
    raise ValueError(f"unknown encoder name {name!r}; valid names: {list_encoders()}")

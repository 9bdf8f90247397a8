r"""I-JEPA (Assran et al. 2023): predict the embeddings of masked blocks from a context block.

Per image, :math:`M` target blocks :math:`B_1 \dots B_M` and a context block are drawn on
the patch grid (:func:`~mlimaging.selfsupervised.masking.multi_block_masks`; the context
excludes every target). The target encoder :math:`\bar f` (an exponential moving average of
the context encoder, never trained by gradient) encodes the full image; its patch tokens,
layer-normed, are the targets :math:`s_y`. The context encoder :math:`f` encodes only the
context patches; a narrow predictor :math:`g` takes its tokens plus one mask token per
target patch carrying that patch's position embedding, and predicts the target tokens. The
loss is the squared L2 distance in embedding space averaged over the blocks:

.. math::

    \mathcal{L} = \frac{1}{M} \sum_{i=1}^{M} \frac{1}{|B_i|\, D}
    \sum_{j \in B_i} \lVert \hat s_y(j) - s_y(j) \rVert_2^2 ,
    \qquad
    \bar\theta \leftarrow m_t \bar\theta + (1 - m_t)\, \theta,

after every optimiser step, with the momentum :math:`m_t` rising linearly from
``ema[0]`` to ``ema[1]`` over ``total_steps`` updates (constant afterwards). No pixel is
reconstructed and no augmentation is needed.

``targets="data2vec"`` replaces :math:`s_y` by the targets of data2vec (Baevski et al. 2022):
the average over the top :math:`K` blocks of the target encoder of each block's feed-forward
output :math:`a^l` (before its residual connection), each instance-normalised over the patch
tokens of its image per channel,

.. math::

    s_y = \frac{1}{K} \sum_{l = L - K + 1}^{L} \operatorname{IN}(a^l), \qquad
    \operatorname{IN}(a)_{n,d} = \frac{a_{n,d} - \mu_d}{\sqrt{\sigma_d^2 + \epsilon}},

with :math:`\mu_d, \sigma_d^2` the mean and variance of channel :math:`d` over the
:math:`N` patches of that image. It is an option; the default is the published I-JEPA target.

C-JEPA's remedy against collapse (Mo & Tong 2024) is the option ``variance_weight`` /
``covariance_weight`` (both 0 by default: the paper's I-JEPA): VICReg's variance and covariance
terms (Bardes et al. 2022; :func:`~mlimaging.selfsupervised.losses.variance_loss`,
:func:`~mlimaging.selfsupervised.losses.covariance_loss`) on the context encoder's output
:math:`Z` over the batch, the mean context token per image (``regularise="pooled"``, :math:`Z`
is :math:`B \times D`) or every context token (``"tokens"``),

.. math::

    \mathcal{L}_{C} = \mathcal{L} + \lambda_v \frac{1}{D} \sum_{d} \max\bigl(0, 1 -
    \sqrt{\operatorname{Var}(Z_{\cdot d}) + \epsilon}\bigr) + \lambda_c \frac{1}{D}
    \sum_{a \neq b} \operatorname{Cov}(Z)_{ab}^2 ,

so that the context encoder cannot map every image to the same representation while the
predictor reads the targets off their positions (C-JEPA also adds VICReg's invariance between the
mean representations of augmented views; this option has no augmentations and leaves it out). ``standardise_targets=True`` standardises each
target feature per patch position over the batch, :math:`(s_y - \mu_{n,d}) / \sqrt{\sigma^2_{n,d}
+ 10^{-6}}`, which removes the part of the targets that the position alone predicts.

References
----------
Assran M., Duval Q., Misra I., Bojanowski P., Vincent P., Rabbat M., LeCun Y., Ballas N.
(2023). Self-supervised learning from images with a joint-embedding predictive
architecture. CVPR. arXiv:2301.08243.

Baevski A., Hsu W.-N., Xu Q., Babu A., Gu J., Auli M. (2022). data2vec: a general framework
for self-supervised learning in speech, vision and language. ICML. arXiv:2202.03555.

Mo S., Tong S. (2024). Connecting joint-embedding predictive architecture with contrastive
self-supervised learning. NeurIPS. arXiv:2410.19560.

Bardes A., Ponce J., LeCun Y. (2022). VICReg: variance-invariance-covariance regularization for
self-supervised learning. ICLR. arXiv:2105.04906.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models.vit import LN_EPS, Block, ViT
from mlimaging.selfsupervised.losses import covariance_loss, variance_loss
from mlimaging.selfsupervised.mae import encode_visible, vit_encoder
from mlimaging.selfsupervised.masking import multi_block_masks, sincos_position_embedding

__all__ = ["IJEPA", "IJEPA_OPTIONS", "REGULARISED", "TARGETS"]

#: Target kinds: the paper's layer-normed last output, or data2vec's instance-normed top-K average.
TARGETS = ("layernorm", "data2vec")
#: What C-JEPA's variance/covariance terms see: the mean context token per image, or every context token.
REGULARISED = ("pooled", "tokens")
#: I-JEPA's settings beyond the paper's defaults at CPU scale, used by ``mlimaging pretrain ijepa``,
#: ``benchmarks/selfsupervised.py`` and the ``selfsupervised`` experiment: C-JEPA's VICReg variance/covariance
#: terms on the context tokens and a faster EMA (from 0.99). Published I-JEPA collapses on mnist5k at this
#: scale and its probe stays below a random encoder's (benchmarks/selfsupervised.py records what was tried).
IJEPA_OPTIONS: dict[str, Any] = {"variance_weight": 1.0, "covariance_weight": 0.04, "regularise": "tokens",
                                 "ema": (0.99, 1.0)}


def _gather(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """tokens ``(B, N, D)``, idx ``(B, K)`` -> ``(B, K, D)``."""
    return tokens.gather(1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


class IJEPA(nn.Module):
    r"""Image joint-embedding predictive architecture with ViT encoders (Assran et al. 2023).

    Parameters
    ----------
    image_size, patch_size
        Image and patch size (square ints or (H, W) pairs); the image divisible by the patch.
    in_channels
        Image channels.
    encoder_dim, encoder_depth, encoder_heads
        Width, blocks and heads of the ViT context encoder (ignored when ``encoder`` is given).
    predictor_dim, predictor_depth, predictor_heads
        Width (narrower than the encoder), blocks and heads of the predictor.
    ema
        ``(m_0, m_1)`` in [0, 1]: the EMA momentum rises linearly from ``m_0`` to ``m_1``.
    total_steps
        Number of optimiser steps over which the momentum rises (the training length).
    num_targets, target_scale, target_aspect, context_scale
        The multi-block masking (:func:`~mlimaging.selfsupervised.masking.multi_block_masks`).
    encoder
        An existing 2D :class:`~mlimaging.models.ViT` to pretrain as the context encoder.
    targets
        ``"layernorm"`` (I-JEPA: the target encoder's final tokens, layer-normed) or
        ``"data2vec"`` (the instance-normed feed-forward outputs of its top ``top_k`` blocks,
        averaged; Baevski et al. 2022).
    top_k
        Blocks averaged by ``targets="data2vec"`` (at most the encoder depth; unused otherwise).
    variance_weight, covariance_weight
        :math:`\lambda_v, \lambda_c \ge 0` of C-JEPA's VICReg terms on the context encoder's
        output (0: I-JEPA as published); with either > 0 ``ssl_loss`` returns
        ``(loss, {"prediction", "variance", "covariance"})`` and ``fit`` logs the three terms.
    regularise
        ``"pooled"`` (the mean context token per image) or ``"tokens"`` (every context token).
    standardise_targets
        Standardise the targets per position and feature over the batch.

    Attributes
    ----------
    encoder : ViT
        The context encoder: ``encoder(x) -> (B, feature_dim)``, the mean patch token.
    target_encoder : ViT
        The EMA copy (``requires_grad`` False; in the state dict, so checkpoints keep it).
    num_updates : Tensor
        Buffer counting the EMA updates done (the momentum schedule resumes exactly).

    Examples
    --------
    >>> import torch
    >>> model = IJEPA(image_size=28, patch_size=4, encoder_dim=32, encoder_depth=1, predictor_dim=16,
    ...               predictor_depth=1, total_steps=10)
    >>> x = torch.rand(4, 1, 28, 28)
    >>> loss = model.ssl_loss(x, generator=torch.Generator().manual_seed(0))
    >>> loss.backward(); model.after_step()
    >>> round(model.momentum(), 6), int(model.num_updates), model.encoder(x).shape
    (0.9964, 1, torch.Size([4, 32]))
    >>> d2v = IJEPA(image_size=28, patch_size=4, encoder_dim=32, encoder_depth=2, predictor_dim=16,
    ...             predictor_depth=1, targets="data2vec", top_k=2)
    >>> d2v.target_tokens(x).shape  # one target per patch of the 7 x 7 grid
    torch.Size([4, 49, 32])
    >>> cjepa = IJEPA(image_size=28, patch_size=4, encoder_dim=32, encoder_depth=1, predictor_dim=16,
    ...               predictor_depth=1, variance_weight=1.0, covariance_weight=0.04)
    >>> loss, terms = cjepa.ssl_loss(x, generator=torch.Generator().manual_seed(0))
    >>> sorted(terms), bool(loss > terms["prediction"])
    (['covariance', 'prediction', 'variance'], True)
    """

    def __init__(self, *, image_size: int | Sequence[int], patch_size: int | Sequence[int], in_channels: int = 1,
                 encoder_dim: int = 64, encoder_depth: int = 4, encoder_heads: int = 4, predictor_dim: int = 32,
                 predictor_depth: int = 2, predictor_heads: int = 4, ema: Sequence[float] = (0.996, 1.0),
                 total_steps: int = 1000, num_targets: int = 4, target_scale: Sequence[float] = (0.15, 0.2),
                 target_aspect: Sequence[float] = (0.75, 1.5), context_scale: Sequence[float] = (0.85, 1.0),
                 encoder: ViT | None = None, targets: str = "layernorm", top_k: int = 2,
                 variance_weight: float = 0.0, covariance_weight: float = 0.0, regularise: str = "pooled",
                 standardise_targets: bool = False) -> None:
        super().__init__()
        self.encoder = vit_encoder(image_size=image_size, patch_size=patch_size, in_channels=in_channels,
                                   dim=encoder_dim, depth=encoder_depth, heads=encoder_heads, encoder=encoder)
        vit = self.encoder
        if vit.num_patches < 2:
            raise ValueError(f"image_size / patch_size must give at least 2 patches, got grid {vit.grid_size}")
        for name, value in (("predictor_dim", predictor_dim), ("predictor_depth", predictor_depth),
                            ("predictor_heads", predictor_heads)):
            _positive_int(value, name)
        if predictor_dim % predictor_heads:
            raise ValueError(f"predictor_heads must divide predictor_dim, got {predictor_dim} and {predictor_heads}")
        ok = isinstance(ema, Sequence) and not isinstance(ema, str) and len(ema) == 2 and all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v <= 1 for v in ema)
        if not ok:
            raise ValueError(f"ema must be a pair (start, end) of momenta in [0, 1], got {ema!r}")
        self.ema = (float(ema[0]), float(ema[1]))
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        if _positive_int(top_k, "top_k") > len(vit.blocks) and targets == "data2vec":
            raise ValueError(f"top_k must be at most the encoder depth {len(vit.blocks)}, got {top_k}")
        self.targets, self.top_k = targets, top_k
        for name, value in (("variance_weight", variance_weight), ("covariance_weight", covariance_weight)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if regularise not in REGULARISED:
            raise ValueError(f"regularise must be one of {REGULARISED}, got {regularise!r}")
        if not isinstance(standardise_targets, bool):
            raise ValueError(f"standardise_targets must be a bool, got {standardise_targets!r}")
        self.variance_weight, self.covariance_weight = float(variance_weight), float(covariance_weight)
        self.regularise, self.standardise_targets = regularise, standardise_targets
        self.total_steps = _positive_int(total_steps, "total_steps")
        self.mask_options = dict(num_targets=num_targets, target_scale=tuple(target_scale),
                                 target_aspect=tuple(target_aspect), context_scale=tuple(context_scale))
        multi_block_masks(vit.grid_size, **self.mask_options, generator=torch.Generator())  # validates
        self.feature_dim = vit.dim
        self.grid_size = vit.grid_size

        self.target_encoder = copy.deepcopy(vit)
        self.target_encoder.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

        self.predictor_embed = nn.Linear(vit.dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, predictor_dim))
        self.register_buffer("predictor_pos_embed",
                             sincos_position_embedding(predictor_dim, vit.grid_size)[None], persistent=False)
        self.predictor_blocks = nn.ModuleList(Block(predictor_dim, predictor_heads, 4 * predictor_dim, 0.0)
                                              for _ in range(predictor_depth))
        self.predictor_norm = nn.LayerNorm(predictor_dim, eps=LN_EPS)
        self.predictor_proj = nn.Linear(predictor_dim, vit.dim)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        for m in [self.predictor_embed, self.predictor_proj, *self.predictor_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def train(self, mode: bool = True) -> IJEPA:
        super().train(mode)
        self.target_encoder.eval()  # no dropout in the targets
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The representation ``(B, feature_dim)`` of ``x`` (the context encoder, all patches)."""
        return self.encoder(x)

    def predict(self, context: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        """Predictor: context tokens ``(B, K_c, D)`` at ``context_idx`` ``(B, K_c)`` -> predicted
        target tokens ``(B, M, K_t, D)`` at ``target_idx`` ``(B, M, K_t)``."""
        b, m, kt = target_idx.shape
        pos = self.predictor_pos_embed.expand(b, -1, -1)
        z = self.predictor_embed(context) + _gather(pos, context_idx)
        z = z.repeat_interleave(m, dim=0)  # (B M, K_c, d)
        queries = self.mask_token + _gather(pos.repeat_interleave(m, dim=0), target_idx.reshape(b * m, kt))
        z = torch.cat([z, queries], dim=1)
        for block in self.predictor_blocks:
            z, _ = block(z)
        out = self.predictor_proj(self.predictor_norm(z[:, -kt:]))
        return out.reshape(b, m, kt, -1)

    @torch.no_grad()
    def target_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The targets ``(B, N, D)`` of every patch of ``x``: the target encoder's final tokens,
        layer-normed (``targets="layernorm"``), or data2vec's average of the instance-normed
        feed-forward outputs of its top ``top_k`` blocks (``targets="data2vec"``)."""
        vit = self.target_encoder
        if self.targets == "layernorm":
            h = encode_visible(vit, x)[:, 1:]
            return F.layer_norm(h, (h.shape[-1],))
        outputs: list[torch.Tensor] = []  # the top blocks' feed-forward outputs, read during the ordinary pass
        hooks = [b.mlp.register_forward_hook(lambda _m, _i, out: outputs.append(out))
                 for b in vit.blocks[len(vit.blocks) - self.top_k:]]
        try:
            encode_visible(vit, x)
        finally:
            for hook in hooks:
                hook.remove()
        normed = [F.instance_norm(a[:, 1:].transpose(1, 2)).transpose(1, 2) for a in outputs]
        return torch.stack(normed).mean(0)

    def ssl_loss(self, x: torch.Tensor, y: Any = None, *, generator: torch.Generator | None = None
                 ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The embedding-prediction loss of a batch ``(B, C, H, W)``; ``y`` is ignored. With a
        variance or covariance weight, ``(loss, {"prediction", "variance", "covariance"})``."""
        masks = multi_block_masks(self.grid_size, batch=x.shape[0], **self.mask_options, generator=generator)
        ctx_idx, tgt_idx = masks.context.to(x.device), masks.targets.to(x.device)
        b, m, kt = tgt_idx.shape
        full = self.target_tokens(x)
        if self.standardise_targets:
            if b < 2:
                raise ValueError("standardise_targets needs batches of at least 2 images")
            var, mean = torch.var_mean(full, dim=0, unbiased=False)
            full = (full - mean) / torch.sqrt(var + 1e-6)
        targets = _gather(full, tgt_idx.reshape(b, m * kt)).reshape(b, m, kt, -1)
        context = encode_visible(self.encoder, x, ctx_idx)[:, 1:]
        pred = self.predict(context, ctx_idx, tgt_idx)
        loss = (pred - targets).pow(2).mean()
        if not (self.variance_weight or self.covariance_weight):
            return loss
        if b < 2:
            raise ValueError("variance_weight and covariance_weight need batches of at least 2 images")
        z = context.mean(1) if self.regularise == "pooled" else context.reshape(-1, context.shape[-1])
        v, c = variance_loss(z), covariance_loss(z)
        total = loss + self.variance_weight * v + self.covariance_weight * c
        return total, {"prediction": loss.detach(), "variance": v.detach(), "covariance": c.detach()}

    def momentum(self) -> float:
        """The EMA momentum of the next update: linear from ``ema[0]`` to ``ema[1]``."""
        t = min(int(self.num_updates), self.total_steps) / self.total_steps
        return self.ema[0] + t * (self.ema[1] - self.ema[0])

    @torch.no_grad()
    def after_step(self) -> None:
        r"""EMA update of the target encoder, :math:`\bar\theta \leftarrow m \bar\theta + (1 - m) \theta`."""
        m = self.momentum()
        target = dict(self.target_encoder.named_parameters())
        for name, p in self.encoder.named_parameters():
            target[name].mul_(m).add_(p.detach(), alpha=1.0 - m)
        target_buffers = dict(self.target_encoder.named_buffers())
        for name, buf in self.encoder.named_buffers():
            target_buffers[name].copy_(buf)
        self.num_updates += 1

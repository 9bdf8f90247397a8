r"""Patches and masks for masked image modelling (MAE) and joint-embedding prediction (I-JEPA).

An image :math:`x \in \mathbb{R}^{C \times H \times W}` cut into non-overlapping
:math:`p \times p` patches is a sequence of :math:`N = (H / p)(W / p)` vectors of
:math:`p^2 C` values, in row-major grid order (the order of the ViT's patch tokens):

.. math::

    \operatorname{patchify}(x)_{n,\,(a p + b) C + c} = x_{c,\; i p + a,\; j p + b},
    \qquad n = i \, (W / p) + j .

:func:`unpatchify` is its exact inverse. :func:`random_masking` keeps a uniformly random
subset of :math:`K = \operatorname{round}((1 - r) N)` patches per image (MAE's random
sampling: argsort of uniform noise); :func:`multi_block_masks` draws I-JEPA's target blocks
and the context block that excludes them. :func:`sincos_position_embedding` is the fixed
2D sine-cosine position embedding of both papers' decoders/predictors.

References
----------
He K., Chen X., Xie S., Li Y., Dollar P., Girshick R. (2022). Masked autoencoders are
scalable vision learners. CVPR. arXiv:2111.06377.

Assran M., Duval Q., Misra I., Bojanowski P., Vincent P., Rabbat M., LeCun Y., Ballas N.
(2023). Self-supervised learning from images with a joint-embedding predictive
architecture. CVPR. arXiv:2301.08243.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch

__all__ = [
    "BlockMasks",
    "multi_block_masks",
    "num_kept",
    "patchify",
    "random_masking",
    "sincos_position_embedding",
    "unpatchify",
]


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
    else:
        values = (value, value)
    if len(values) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be an int >= 1 or two of them, got {value!r}")
    return values  # type: ignore[return-value]


def _check_ratio(ratio: Any, name: str = "ratio") -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {ratio!r}")
    return float(ratio)


def _check_range(value: Any, name: str, *, low: float, high: float | None) -> tuple[float, float]:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2 \
        and all(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in value)
    if ok:
        a, b = float(value[0]), float(value[1])
        ok = low < a <= b and (high is None or b <= high)
    if not ok:
        upper = "" if high is None else f" <= {high}"
        raise ValueError(f"{name} must be a pair (min, max) with {low} < min <= max{upper}, got {value!r}")
    return a, b


def patchify(x: torch.Tensor, patch_size: int | Sequence[int]) -> torch.Tensor:
    """Cut images ``(B, C, H, W)`` into patches ``(B, N, p_h p_w C)`` (row-major grid).

    Each patch is flattened as ``(p_h, p_w, C)`` (channels last, as MAE).

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> patchify(x, 2)[0, 1]  # the top-right 2 x 2 patch
    tensor([2., 3., 6., 7.])
    >>> torch.equal(unpatchify(patchify(x, 2), 2, (4, 4), 1), x)
    True
    """
    ph, pw = _pair(patch_size, "patch_size")
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor (B, C, H, W), got {shape}")
    b, c, h, w = x.shape
    if h % ph or w % pw:
        raise ValueError(f"x's size {h} x {w} must be divisible by patch_size {ph} x {pw}")
    gh, gw = h // ph, w // pw
    return x.reshape(b, c, gh, ph, gw, pw).permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, ph * pw * c)


def unpatchify(patches: torch.Tensor, patch_size: int | Sequence[int], image_size: int | Sequence[int],
               channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify`: patches ``(B, N, p_h p_w C)`` -> images ``(B, C, H, W)``.

    Examples
    --------
    >>> import torch
    >>> unpatchify(torch.ones(2, 4, 18), 3, 6, 2).shape
    torch.Size([2, 2, 6, 6])
    """
    ph, pw = _pair(patch_size, "patch_size")
    h, w = _pair(image_size, "image_size")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be an int >= 1, got {channels!r}")
    if h % ph or w % pw:
        raise ValueError(f"image_size {h} x {w} must be divisible by patch_size {ph} x {pw}")
    gh, gw = h // ph, w // pw
    expected = (gh * gw, ph * pw * channels)
    if not isinstance(patches, torch.Tensor) or patches.ndim != 3 or tuple(patches.shape[1:]) != expected:
        shape = tuple(patches.shape) if isinstance(patches, torch.Tensor) else type(patches).__name__
        raise ValueError(f"patches must have shape (B, {expected[0]}, {expected[1]}), got {shape}")
    b = patches.shape[0]
    return patches.reshape(b, gh, gw, ph, pw, channels).permute(0, 5, 1, 3, 2, 4).reshape(b, channels, h, w)


def num_kept(num_patches: int, ratio: float) -> int:
    r"""The number of visible patches :math:`K = \operatorname{round}((1 - r) N)`.

    Raises ValueError unless :math:`1 \le K \le N - 1` (at least one patch visible and one
    masked).

    Examples
    --------
    >>> num_kept(16, 0.75), num_kept(49, 0.75)
    (4, 12)
    """
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches < 2:
        raise ValueError(f"num_patches must be an int >= 2, got {num_patches!r}")
    ratio = _check_ratio(ratio)
    keep = round((1.0 - ratio) * num_patches)
    if not 1 <= keep <= num_patches - 1:
        raise ValueError(f"ratio {ratio} keeps {keep} of {num_patches} patches: it must leave at least one "
                         "patch visible and one masked")
    return keep


def random_masking(batch: int, num_patches: int, ratio: float, *, generator: torch.Generator | None = None,
                   device: torch.device | str | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""MAE's per-sample random masking: keep :math:`K = \operatorname{round}((1 - r) N)` patches.

    Uniform noise :math:`u \in [0, 1)^{B \times N}` is drawn from ``generator``; the
    :math:`K` patches of smallest noise are kept. Each sample gets its own subset.

    Parameters
    ----------
    batch, num_patches
        :math:`B` and :math:`N`.
    ratio
        Masking ratio :math:`r \in (0, 1)`.
    generator
        CPU random generator (the draw is made on the CPU and moved to ``device``).
    device
        Device of the returned tensors.

    Returns
    -------
    keep_idx : Tensor
        ``(B, K)`` long, the visible patches in increasing noise order.
    mask : Tensor
        ``(B, N)`` bool, True where a patch is masked (removed).
    restore_idx : Tensor
        ``(B, N)`` long: ``torch.gather(shuffled, 1, restore_idx)`` puts a sequence ordered
        as [kept, masked] (by noise) back in grid order.

    Examples
    --------
    >>> import torch
    >>> keep, mask, restore = random_masking(2, 16, 0.75, generator=torch.Generator().manual_seed(0))
    >>> keep.shape, mask.sum(dim=1).tolist()
    (torch.Size([2, 4]), [12, 12])
    >>> bool(mask.gather(1, keep).any())  # kept patches are not masked
    False
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    keep = num_kept(num_patches, ratio)
    noise = torch.rand(batch, num_patches, generator=generator)
    shuffle = noise.argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    mask = torch.ones(batch, num_patches, dtype=torch.bool)
    mask[:, :keep] = False
    mask = mask.gather(1, restore)
    return shuffle[:, :keep].to(device), mask.to(device), restore.to(device)


class BlockMasks(NamedTuple):
    """I-JEPA masks of a batch: index tensors into the row-major patch grid.

    ``context`` ``(B, K_c)`` long: the context patches (the same count for every sample:
    a random subset when a sample has more); ``targets`` ``(B, M, K_t)`` long: the patches
    of each of the :math:`M` target blocks (one block size per batch, as I-JEPA).
    """

    context: torch.Tensor
    targets: torch.Tensor


def _block_size(grid: tuple[int, int], scale: tuple[float, float], aspect: tuple[float, float],
                generator: torch.Generator | None) -> tuple[int, int]:
    u = torch.rand(2, generator=generator).tolist()
    s = scale[0] + u[0] * (scale[1] - scale[0])
    a = aspect[0] + u[1] * (aspect[1] - aspect[0])
    area = s * grid[0] * grid[1]
    h = min(max(round(math.sqrt(area * a)), 1), grid[0])
    w = min(max(round(math.sqrt(area / a)), 1), grid[1])
    return h, w


def _place(grid: tuple[int, int], size: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
    """A (H, W) bool mask of one block of ``size`` at a uniformly random position."""
    top = int(torch.randint(0, grid[0] - size[0] + 1, (1,), generator=generator))
    left = int(torch.randint(0, grid[1] - size[1] + 1, (1,), generator=generator))
    m = torch.zeros(grid, dtype=torch.bool)
    m[top:top + size[0], left:left + size[1]] = True
    return m


def multi_block_masks(grid: int | Sequence[int], *, batch: int = 1, num_targets: int = 4,
                      target_scale: Sequence[float] = (0.15, 0.2), target_aspect: Sequence[float] = (0.75, 1.5),
                      context_scale: Sequence[float] = (0.85, 1.0), generator: torch.Generator | None = None,
                      max_tries: int = 20) -> BlockMasks:
    r"""I-JEPA's multi-block masking on a patch grid (Assran et al. 2023).

    Per batch one target block size is drawn: scale :math:`s \sim U(\text{target\_scale})`,
    aspect :math:`a \sim U(\text{target\_aspect})`, height
    :math:`h = \operatorname{round}\sqrt{s N a}` and width :math:`w = \operatorname{round}
    \sqrt{s N / a}` (clipped to the grid), and one square context block of scale
    :math:`\sim U(\text{context\_scale})`. Per sample, the :math:`M` target blocks and the
    context block are placed uniformly at random; the context is the context block minus
    every target block. Should that leave no patch, the targets are placed again (up to
    ``max_tries`` times); on a grid too small for that, one patch of the context block is kept
    as context even though a target covers it. All samples then keep the same number of
    context patches, the smallest count, as a random subset of their own.

    Parameters
    ----------
    grid
        Patch grid ``(H_p, W_p)`` (or one int for a square grid); at least 2 patches.
    batch
        Number of samples :math:`B`.
    num_targets
        Target blocks :math:`M` per sample.
    target_scale, context_scale
        Ranges (fractions of :math:`N`, in (0, 1]) of the block areas.
    target_aspect
        Range (> 0) of the target blocks' height / width.
    generator
        CPU random generator.

    Returns
    -------
    BlockMasks
        ``context`` ``(B, K_c)`` and ``targets`` ``(B, M, K_t)`` patch indices (long, CPU;
        each row sorted).

    Examples
    --------
    >>> import torch
    >>> m = multi_block_masks((14, 14), batch=2, generator=torch.Generator().manual_seed(0))
    >>> m.targets.shape[:2], m.context.shape[0]
    (torch.Size([2, 4]), 2)
    >>> any(set(m.context[0].tolist()) & set(t.tolist()) for t in m.targets[0])  # disjoint
    False
    """
    gh, gw = _pair(grid, "grid")
    if gh * gw < 2:
        raise ValueError(f"grid must hold at least 2 patches, got {gh} x {gw}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be an int >= 1, got {batch!r}")
    if isinstance(num_targets, bool) or not isinstance(num_targets, int) or num_targets < 1:
        raise ValueError(f"num_targets must be an int >= 1, got {num_targets!r}")
    if isinstance(max_tries, bool) or not isinstance(max_tries, int) or max_tries < 1:
        raise ValueError(f"max_tries must be an int >= 1, got {max_tries!r}")
    t_scale = _check_range(target_scale, "target_scale", low=0.0, high=1.0)
    t_aspect = _check_range(target_aspect, "target_aspect", low=0.0, high=None)
    c_scale = _check_range(context_scale, "context_scale", low=0.0, high=1.0)
    g = (gh, gw)
    t_size = _block_size(g, t_scale, t_aspect, generator)
    c_size = _block_size(g, c_scale, (1.0, 1.0), generator)

    targets, contexts = [], []
    for _ in range(batch):
        c_block = _place(g, c_size, generator)
        for _ in range(max_tries):
            blocks = [_place(g, t_size, generator) for _ in range(num_targets)]
            covered = torch.stack(blocks).any(dim=0)
            context = c_block & ~covered
            if context.any():
                break
        else:  # a grid too small for these scales: keep one patch of the context block
            candidates = c_block.flatten().nonzero().flatten()
            pick = candidates[torch.randint(0, len(candidates), (1,), generator=generator)]
            context = torch.zeros(gh * gw, dtype=torch.bool)
            context[pick] = True
            context = context.reshape(g)
        targets.append(torch.stack([b.flatten().nonzero().flatten() for b in blocks]))
        contexts.append(context.flatten().nonzero().flatten())
    k = min(len(c) for c in contexts)
    kept = []
    for c in contexts:
        if len(c) > k:
            c = c[torch.randperm(len(c), generator=generator)[:k]].sort().values
        kept.append(c)
    return BlockMasks(context=torch.stack(kept), targets=torch.stack(targets))


def sincos_position_embedding(dim: int, grid: int | Sequence[int]) -> torch.Tensor:
    r"""Fixed 2D sine-cosine position embedding ``(N, dim)`` (MAE, I-JEPA).

    A quarter of the channels encodes the row :math:`i` and a quarter the column :math:`j`,
    each as :math:`\sin(i \omega_k), \cos(i \omega_k)` with
    :math:`\omega_k = 10000^{-k / (D/4)}`, :math:`k = 0 \dots D/4 - 1` (``dim`` not a multiple
    of 4 is computed for the next multiple and truncated).

    Examples
    --------
    >>> sincos_position_embedding(8, (2, 3)).shape
    torch.Size([6, 8])
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be an int >= 1, got {dim!r}")
    gh, gw = _pair(grid, "grid")
    quarter = -(-dim // 4)
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    rows, cols = torch.meshgrid(torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64),
                                indexing="ij")
    a = rows.flatten()[:, None] * omega
    b = cols.flatten()[:, None] * omega
    emb = torch.cat([a.sin(), a.cos(), b.sin(), b.cos()], dim=1)
    return emb[:, :dim].float()

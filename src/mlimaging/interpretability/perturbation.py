r"""Perturbation attributions: occlusion and feature (segment) ablation.

Both replace part of the input by a baseline and record how much the target score drops.
Many perturbed copies go through the model in one forward pass (``batch_size`` images at a
time, under ``torch.inference_mode``); each batch of perturbed copies is gathered from one
copy of ``x`` in the model's layout (channels-last for 2D/3D on the CPU) and filled in place
through broadcast window masks, with no Python loop over windows and no further copy. A
perturbation that leaves a sample unchanged (the
window already equals the baseline, e.g. black background occluded with 0) cannot change the
output of the deterministic eval-mode model: its score drop is exactly 0 and its forward pass
is skipped (``skip_unchanged=False`` evaluates it anyway). In these forward-only passes the
model's non-overlapping max-pooling layers run without the argmax indices the CPU kernel
always computes (:mod:`~mlimaging.interpretability._fastpool`; the same values).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.interpretability._common import Runner, as_baseline, auto_chunk, explained, setup
from mlimaging.interpretability._fastpool import index_free_max_pooling
from mlimaging.interpretability._targets import _Target

__all__ = ["feature_ablation", "occlusion"]


def _per_axis(value: Any, name: str, ndim: int) -> tuple[int, ...]:
    """An int or a sequence of ``ndim`` ints >= 1, as a tuple."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = tuple(value)
        if len(values) != ndim:
            raise ValueError(
                f"{name} must be an int or {ndim} ints (one per spatial axis), got {value!r}"
            )
    else:
        values = (value,) * ndim
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must hold ints >= 1, got {value!r}")
    return tuple(int(v) for v in values)


def _check_flag(value: Any, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")


@contextlib.contextmanager
def _progress(total: int, enabled: bool, what: str) -> Iterator[Any]:
    """A rich progress bar over ``total`` perturbed images (a no-op when not enabled)."""
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(what),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(what, total=total)
        yield lambda n: bar.advance(task, n)


def _score_drops(
    model: nn.Module,
    x: torch.Tensor,
    tgt: _Target,
    base: torch.Tensor,
    masks: Any,
    pairs: torch.Tensor,
    chunk: int,
    advance: Any,
) -> torch.Tensor:
    """:math:`f(x)_b - f(x^{(p)})_b` for each pair ``(p, b)`` of ``pairs`` ``(N, 2)``.

    ``masks(p, b)`` gives the boolean masks of perturbations ``p`` of samples ``b``
    (broadcastable to ``(len(p), C, *spatial)``); ``base`` is the baseline, one value
    (any shape of one element) or a tensor broadcastable to ``x``. Each perturbed batch is
    gathered from a copy of ``x`` in the model's layout and filled in place, then goes to
    the model without a further copy.
    """
    drops = torch.empty(len(pairs), dtype=x.dtype, device=x.device)
    fill = base.reshape(()) if base.numel() == 1 else None
    base = base.expand_as(x)
    sources: dict[torch.memory_format, torch.Tensor] = {}
    run = Runner(model)
    with torch.inference_mode(), index_free_max_pooling(model):
        full = tgt.scores(run(x))
        for start in range(0, len(pairs), chunk):
            p, b = pairs[start : start + chunk].unbind(1)
            m = masks(p, b)

            def build(fmt: torch.memory_format, p: Any = p, b: Any = b, m: Any = m) -> Any:
                if fmt not in sources:
                    sources[fmt] = x.clone(memory_format=fmt)
                batch = sources[fmt][b]  # a new tensor, in the source's layout
                if fill is not None:
                    return batch.masked_fill_(m, fill)
                return batch.copy_(torch.where(m, base[b], batch))

            out = run.built(x, build)
            drops[start : start + len(p)] = full[b] - tgt.take(b.cpu()).scores(out)
            advance(len(p))
    return drops


def occlusion(
    model: nn.Module,
    x: torch.Tensor,
    target: Any,
    *,
    window: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
    progress: bool = False,
    skip_unchanged: bool = True,
) -> torch.Tensor:
    r"""Occlusion: the drop of the target score when a sliding window is set to a baseline.

    .. math::

        A_{b,i} = \frac{1}{|W(i)|} \sum_{w \in W(i)} \big( y_b(x_b) - y_b(x_b^{(w)}) \big)

    where :math:`x^{(w)}` is :math:`x` with window :math:`w` (all channels) replaced by the
    baseline and :math:`W(i)` is the set of windows covering pixel :math:`i` (Zeiler &
    Fergus 2014, arXiv:1311.2901). Windows start at multiples of ``stride`` along each axis,
    :math:`\lceil (D - k)/s \rceil + 1` of them, the last one clipped at the border: the
    semantics of Captum's ``Occlusion`` with ``sliding_window_shapes=(C, *window)``, whose
    values it reproduces. Works for 2D and 3D inputs (any number of spatial axes).

    Parameters
    ----------
    model, x, target
        As for :func:`~mlimaging.interpretability.saliency`.
    window : int or sequence of int
        Window size per spatial axis (one int for all), at most the image size.
    stride : int or sequence of int
        Step between windows per axis, 1 <= stride <= window (every pixel is covered).
    baseline : float or torch.Tensor
        Replacement value: a number or a tensor broadcastable to ``x`` (e.g. a blurred copy).
    batch_size : int, optional
        Occluded images per forward pass; by default as many as hold about
        :data:`~mlimaging.interpretability._common.ELEMENT_BUDGET` input elements, which
        bounds memory for large volumes.
    progress : bool
        Show a rich progress bar (for large volumes).
    skip_unchanged : bool
        Skip the forward pass of every occluded copy whose window already equals the
        baseline in all channels (default). Such a copy *is* :math:`x_b`, so the eval-mode
        model gives :math:`y_b(x_b)` again and its term in the sum is exactly 0: the map is
        the same as without skipping (up to the summation order of the model's kernels in
        batches of another composition). On a zero background occluded with 0 (MNIST
        digits, the air around a CT scan) this saves the passes of the background windows
        (about half of them on 28 x 28 digits, window 4, stride 2). ``False`` evaluates
        every window, as Captum does.

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape (equal over channels).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 1, bias=False))
    >>> nn.init.ones_(model[1].weight)
    Parameter containing:
    tensor([[1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1.]],
           requires_grad=True)
    >>> x = torch.ones(1, 1, 4, 4)
    >>> occlusion(model, x, None, window=2, stride=2)[0, 0]  # each 2x2 window holds 4
    tensor([[4., 4., 4., 4.],
            [4., 4., 4., 4.],
            [4., 4., 4., 4.],
            [4., 4., 4., 4.]])
    """
    model, x, tgt = setup(model, x, target)
    _check_flag(skip_unchanged, "skip_unchanged")
    nd = x.ndim - 2
    if nd < 1:
        raise ValueError(f"x must have spatial axes (B, C, *spatial), got {tuple(x.shape)}")
    size = tuple(x.shape[2:])
    win = _per_axis(window, "window", nd)
    step = _per_axis(stride, "stride", nd)
    for k, s, d in zip(win, step, size, strict=True):
        if k > d:
            raise ValueError(f"window {win} is larger than the image {size}")
        if s > k:
            raise ValueError(
                f"stride {step} must not exceed window {win} (pixels would be left out)"
            )
    base0 = as_baseline(baseline, x)
    base = base0.expand_as(x)
    x0 = x.detach()
    counts = [math.ceil((d - k) / s) + 1 for k, s, d in zip(win, step, size, strict=True)]
    # per-axis window masks (n_i, D_i), clipped at the border
    axis_masks = []
    for n, k, s, d in zip(counts, win, step, size, strict=True):
        pos = torch.arange(d, device=x.device)
        starts = torch.arange(n, device=x.device) * s
        axis_masks.append((pos >= starts[:, None]) & (pos < starts[:, None] + k))
    # which (window, sample) pairs change the input: max-pool of "differs from baseline"
    differs = (x0 != base).any(1, keepdim=True).to(x.dtype)
    pad = []
    for n, k, s, d in reversed(list(zip(counts, win, step, size, strict=True))):
        pad += [0, (n - 1) * s + k - d]
    pool = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1] if nd <= 3 else None
    if pool is None:
        raise ValueError(f"occlusion supports 1 to 3 spatial axes, got {nd}")
    if not skip_unchanged:
        differs = torch.ones_like(differs)
    changed = pool(F.pad(differs, pad), kernel_size=win, stride=step)  # (B, 1, *counts)
    changed = changed.reshape(x.shape[0], -1).T  # (P, B)
    pairs = changed.nonzero()  # (N, 2): window index, sample index, window-major

    unravel = list(counts)

    def masks(p: torch.Tensor, _b: torch.Tensor) -> torch.Tensor:
        idx = []
        rest = p
        for n in reversed(unravel):
            idx.append(rest % n)
            rest = torch.div(rest, n, rounding_mode="floor")
        idx.reverse()
        m = None
        for axis, (am, j) in enumerate(zip(axis_masks, idx, strict=True)):
            shape = [len(p)] + [1] * nd
            shape[axis + 1] = size[axis]
            part = am[j].view(shape)
            m = part if m is None else m & part
        return m.unsqueeze(1)  # (N, 1, *spatial), broadcast over channels

    per_image = x[0].numel()
    chunk = auto_chunk(batch_size, per_image)
    with explained(model), _progress(len(pairs), progress, "occlusion") as advance:
        drops = _score_drops(model, x0, tgt, base0, masks, pairs, chunk, advance)
    grid = torch.zeros(changed.shape, dtype=x.dtype, device=x.device)
    grid[pairs[:, 0], pairs[:, 1]] = drops
    grid = grid.T.reshape(x.shape[0], 1, *counts)
    conv_t = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nd - 1]
    kernel = torch.ones((1, 1, *win), dtype=x.dtype, device=x.device)
    total = conv_t(grid, kernel, stride=step)
    cover = conv_t(torch.ones_like(grid[:1]), kernel, stride=step)
    crop = (slice(None), slice(None)) + tuple(slice(0, d) for d in size)
    attr = total[crop] / cover[crop]
    return attr.expand_as(x).contiguous()


def feature_ablation(
    model: nn.Module,
    x: torch.Tensor,
    target: Any,
    *,
    segments: torch.Tensor | np.ndarray,
    baseline: float | torch.Tensor = 0.0,
    batch_size: int | None = None,
    progress: bool = False,
    skip_unchanged: bool = True,
) -> torch.Tensor:
    r"""Feature ablation: the drop of the target score when a whole segment is ablated.

    .. math:: A_{b,i} = y_b(x_b) - y_b\big(x_b^{(s(i))}\big)

    where :math:`s(i)` is the label of pixel :math:`i` in ``segments`` and :math:`x^{(s)}`
    is :math:`x` with every pixel of label :math:`s` set to the baseline (the ablation
    studies of Zeiler & Fergus 2014, arXiv:1311.2901, on arbitrary regions: superpixels, the
    organs of a phantom). Equal to Captum's ``FeatureAblation`` with ``feature_mask`` =
    ``segments``.

    Parameters
    ----------
    model, x, target
        As for :func:`~mlimaging.interpretability.saliency`.
    segments : torch.Tensor or numpy.ndarray
        Integer label map: ``(*spatial)`` shared by the batch and channels, ``(B, *spatial)``
        per sample, or ``(B or 1, C or 1, *spatial)`` (per channel, as Captum's
        ``feature_mask``). Every label present is ablated once (background included).
    baseline : float or torch.Tensor
        Replacement value, a number or a tensor broadcastable to ``x``.
    batch_size : int, optional
        Ablated images per forward pass (default: about
        :data:`~mlimaging.interpretability._common.ELEMENT_BUDGET` input elements).
    progress : bool
        Show a rich progress bar.
    skip_unchanged : bool
        Skip the forward pass of every ablated copy whose segment already equals the
        baseline (exactly 0 attribution, as for :func:`occlusion`); ``False`` evaluates
        every segment of every sample.

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False))
    >>> nn.init.ones_(model[1].weight)  # doctest: +ELLIPSIS
    Parameter containing:
    ...
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    >>> feature_ablation(model, x, None, segments=torch.tensor([[0, 0], [1, 1]]))[0, 0]
    tensor([[3., 3.],
            [7., 7.]])
    """
    model, x, tgt = setup(model, x, target)
    _check_flag(skip_unchanged, "skip_unchanged")
    nd = x.ndim - 2
    if not isinstance(segments, (torch.Tensor, np.ndarray)):
        raise ValueError(
            f"segments must be an integer tensor or array, got {type(segments).__name__}"
        )
    seg = torch.as_tensor(segments).to(x.device)
    if seg.is_floating_point() or seg.is_complex() or seg.dtype == torch.bool:
        raise ValueError(f"segments must be an integer label map, got dtype {seg.dtype}")
    size = tuple(x.shape[2:])
    if seg.ndim == nd:
        seg = seg.view(1, 1, *seg.shape)
    elif seg.ndim == nd + 1:
        seg = seg.unsqueeze(1)
    elif seg.ndim != x.ndim:
        raise ValueError(
            f"segments must be {size}, (B, *{size}) or (B, C, *{size}), "
            f"got shape {tuple(seg.shape)}"
        )
    if (
        tuple(seg.shape[2:]) != size
        or seg.shape[0] not in (1, x.shape[0])
        or (seg.shape[1] not in (1, x.shape[1]))
    ):
        raise ValueError(
            f"segments of shape {tuple(segments.shape)} do not match x {tuple(x.shape)}"
        )
    seg = seg.long()
    labels = torch.unique(seg)
    code = torch.searchsorted(labels, seg)  # label index per pixel
    base0 = as_baseline(baseline, x)
    base = base0.expand_as(x)
    x0 = x.detach()
    n_labels = len(labels)
    # does ablating label l change sample b? any differing pixel of that label: (L, B)
    code_b = code.expand(x.shape[0], *code.shape[1:])
    if code_b.shape[1] != x.shape[1]:
        code_b = code_b.expand(x.shape[0], x.shape[1], *size)
    differs = (x0 != base).to(x.dtype).reshape(x.shape[0], -1)
    if not skip_unchanged:
        differs = torch.ones_like(differs)
    changed = torch.zeros((x.shape[0], n_labels), dtype=x.dtype, device=x.device)
    changed.scatter_reduce_(1, code_b.reshape(x.shape[0], -1), differs, "amax")
    pairs = changed.T.nonzero()
    seg_b = seg.expand(x.shape[0], *seg.shape[1:])

    def masks(lab: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return seg_b[b] == labels[lab].view(-1, *([1] * (x.ndim - 1)))

    chunk = auto_chunk(batch_size, x[0].numel())
    with explained(model), _progress(len(pairs), progress, "feature ablation") as advance:
        drops = _score_drops(model, x0, tgt, base0, masks, pairs, chunk, advance)
    grid = torch.zeros((x.shape[0], n_labels), dtype=x.dtype, device=x.device)
    grid[pairs[:, 1], pairs[:, 0]] = drops
    idx = code.expand(x.shape[0], *code.shape[1:]).reshape(x.shape[0], -1)
    attr = grid.gather(1, idx).view(x.shape[0], *seg.shape[1:])
    return attr.expand_as(x).contiguous()

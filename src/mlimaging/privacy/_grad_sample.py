r"""Per-sample gradients of the layers DP-SGD trains: one forward, one backward, no per-sample loop.

A forward hook records each trainable layer's input :math:`a_i` and output :math:`z_i`;
``torch.autograd.grad`` of the summed per-sample losses with respect to the outputs gives
:math:`b_i = \partial \ell_i / \partial z_i` (without computing the parameter gradients at
all). The gradient of a layer's weight for sample :math:`i` is then a function of
:math:`(a_i, b_i)` alone:

- Linear: :math:`G_i = b_i a_i^\top`, so :math:`\lVert G_i \rVert_F^2 = \lVert a_i \rVert^2
  \lVert b_i \rVert^2` (the "ghost norm", Goodfellow 2015, Li et al. 2021 arXiv:2110.05679) and
  the clipped sum :math:`\sum_i c_i G_i = (c \odot B)^\top A` is one matrix product: the
  per-sample gradients are never materialised (book-keeping, Bu et al. 2022 arXiv:2210.00038).
- Conv: :math:`G_i[o, c] = a_i[c] \star b_i[o]`, one grouped convolution over the batch.
- GroupNorm / LayerNorm / InstanceNorm: :math:`\partial \gamma = \sum_{\text{positions}} b_i
  \odot \hat a_i`, :math:`\partial \beta = \sum b_i`, with :math:`\hat a_i` the normalised input.
- Embedding: :math:`G_i[v] = \sum_{t: x_{it} = v} b_{it}` (scatter-add).

Models with another trainable layer type use :func:`vmap_grad_samples` (``torch.func``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_NORMS = (nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding, *_NORMS)


def trainable_layers(model: nn.Module) -> tuple[list[tuple[str, nn.Module]], list[str]]:
    """Modules owning trainable parameters, and the names of those the hooks cannot handle."""
    layers, unsupported = [], []
    for name, m in model.named_modules():
        if not any(p.requires_grad for p in m.parameters(recurse=False)):
            continue
        if _supported(m):
            layers.append((name, m))
        else:
            unsupported.append(f"{name or 'model'} ({type(m).__name__})")
    return layers, unsupported


def _supported(m: nn.Module) -> bool:
    if isinstance(m, nn.Embedding):
        return not (m.max_norm is not None or m.scale_grad_by_freq or m.sparse)
    return isinstance(m, SUPPORTED)


class Tape:
    """Forward hooks recording ``(input, output)`` of each layer while active (a context manager)."""

    def __init__(self, layers: list[tuple[str, nn.Module]]) -> None:
        self.layers = layers
        self.calls: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self._handles: list[Any] = []

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.calls.setdefault(id(module), []).append((inputs[0].detach(), output))

    def __enter__(self) -> Tape:
        self.calls = {}
        self._handles = [m.register_forward_hook(self._hook) for _, m in self.layers]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def backprops(tape: Tape, total_loss: torch.Tensor) -> list[tuple[str, nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]]:
    """``(name, layer, [(a, b) per call])`` with :math:`b = \\partial L / \\partial z` for every recorded call."""
    entries, outputs = [], []
    for name, m in tape.layers:
        for a, z in tape.calls.get(id(m), []):
            entries.append((name, m, a))
            outputs.append(z)
    if not outputs:
        return []
    grads = torch.autograd.grad(total_loss, outputs, allow_unused=True)
    grouped: dict[int, tuple[str, nn.Module, list]] = {}
    for (name, m, a), z, b in zip(entries, outputs, grads, strict=True):
        grouped.setdefault(id(m), (name, m, []))[2].append((a, torch.zeros_like(z) if b is None else b))
    return list(grouped.values())


# ------------------------------------------------------------------------- per layer type
def _conv_unfold(m: nn.Module, a: torch.Tensor) -> torch.Tensor:
    """``unfold`` of a Conv1d/Conv2d input: ``(B, C_in k, T)``."""
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        if m.padding != "valid":
            mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
            a = F.pad(a, m._reversed_padding_repeated_twice, mode=mode)
        padding = (0,) * len(m.kernel_size)
    else:
        padding = m.padding
    if isinstance(m, nn.Conv1d):
        return F.unfold(a.unsqueeze(2), (1, m.kernel_size[0]), dilation=(1, m.dilation[0]),
                        padding=(0, padding[0]), stride=(1, m.stride[0]))
    return F.unfold(a, m.kernel_size, dilation=m.dilation, padding=padding, stride=m.stride)


def _conv_weight_samples(m: nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r"""Per-sample weight gradients of a Conv1d/Conv2d, ``(B, *weight.shape)``.

    With one group: one grouped convolution of the inputs (samples as channels) with the
    output gradients as kernels, :math:`G_i[o, c] = a_i[c] \star b_i[o]` (stride and dilation
    swap roles), about twice as fast on CPU as ``unfold`` + batched matrix product, which is
    used for grouped convolutions.
    """
    n = b.shape[0]
    if m.groups > 1:
        cols = _conv_unfold(m, a)  # (B, C_in k, T)
        g = m.groups
        bb = b.reshape(n, g, m.out_channels // g, -1)
        cc = cols.reshape(n, g, cols.shape[1] // g, -1)
        return torch.einsum("ngot,ngkt->ngok", bb, cc).reshape(n, *m.weight.shape)
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        if m.padding != "valid":
            mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
            a = F.pad(a, m._reversed_padding_repeated_twice, mode=mode)
        padding: tuple[int, ...] = (0,) * len(m.kernel_size)
    else:
        padding = tuple(m.padding)
    kernel, stride, dilation = tuple(m.kernel_size), tuple(m.stride), tuple(m.dilation)
    if isinstance(m, nn.Conv1d):
        a, b = a.unsqueeze(2), b.unsqueeze(2)
        kernel, stride, dilation, padding = (1, *kernel), (1, *stride), (1, *dilation), (0, *padding)
    cin, out = a.shape[1], b.shape[1]
    g = F.conv2d(a.transpose(0, 1), b.reshape(n * out, 1, *b.shape[2:]), padding=padding, stride=dilation,
                 dilation=stride, groups=n)  # (C_in, B * out, >= kh, >= kw)
    g = g[:, :, : kernel[0], : kernel[1]].reshape(cin, n, out, *kernel).permute(1, 2, 0, 3, 4)
    return g.reshape(n, *m.weight.shape)


def layer_grad_samples(m: nn.Module, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample gradients ``{param name: (B, *shape)}`` of layer ``m`` from input ``a``, output grad ``b``."""
    out: dict[str, torch.Tensor] = {}
    n = b.shape[0]
    w = getattr(m, "weight", None)
    bias = getattr(m, "bias", None)
    if isinstance(m, nn.Linear):
        if w.requires_grad:
            out["weight"] = torch.einsum("n...o,n...i->noi", b, a)
        if bias is not None and bias.requires_grad:
            out["bias"] = b.reshape(n, -1, b.shape[-1]).sum(1)
    elif isinstance(m, (nn.Conv1d, nn.Conv2d)):
        if w.requires_grad:
            out["weight"] = _conv_weight_samples(m, a, b)
        if bias is not None and bias.requires_grad:
            out["bias"] = b.reshape(n, m.out_channels, -1).sum(2)
    elif isinstance(m, _NORMS):
        if isinstance(m, nn.GroupNorm):
            xhat = F.group_norm(a, m.num_groups, eps=m.eps)
            dims = tuple(range(2, a.ndim))
        elif isinstance(m, nn.LayerNorm):
            xhat = F.layer_norm(a, m.normalized_shape, eps=m.eps)
            dims = tuple(range(1, a.ndim - len(m.normalized_shape)))
        else:
            xhat = F.instance_norm(a, eps=m.eps)
            dims = tuple(range(2, a.ndim))
        if w is not None and w.requires_grad:
            out["weight"] = (b * xhat).sum(dims) if dims else b * xhat
        if bias is not None and bias.requires_grad:
            out["bias"] = b.sum(dims) if dims else b
    elif isinstance(m, nn.Embedding):
        if w.requires_grad:
            d = m.embedding_dim
            gs = torch.zeros(n, *w.shape, dtype=b.dtype, device=b.device)
            idx = a.reshape(n, -1, 1).expand(-1, -1, d)
            gs.scatter_add_(1, idx, b.reshape(n, -1, d))
            if m.padding_idx is not None:
                gs[:, m.padding_idx] = 0
            out["weight"] = gs
    else:  # pragma: no cover - trainable_layers filters these out
        raise ValueError(f"no per-sample gradient rule for {type(m).__name__}")
    return out


def _ghost(m: nn.Module, calls: list) -> bool:
    """Linear layers called once on ``(B, in)`` inputs: norms and sums without per-sample gradients."""
    return isinstance(m, nn.Linear) and len(calls) == 1 and calls[0][0].ndim == 2


def grad_samples(records: list) -> dict[str, torch.Tensor]:
    """``{"layer.param": (B, *shape)}`` over all recorded layers (calls of a shared layer summed)."""
    out: dict[str, torch.Tensor] = {}
    for name, m, calls in records:
        for a, b in calls:
            for pname, g in layer_grad_samples(m, a, b).items():
                key = _key(name, pname)
                out[key] = out[key] + g if key in out else g
    return out


def _key(name: str, pname: str) -> str:
    return f"{name}.{pname}" if name else pname


def clipped_sums(records: list, max_grad_norm: float, n: int,
                 device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    r""":math:`\sum_i c_i g_i` per parameter with :math:`c_i = \min(1, C / (\lVert g_i \rVert + 10^{-6}))`.

    Returns the sums ``{"layer.param": tensor}`` and the per-sample norms :math:`\lVert g_i \rVert` (B,).
    """
    sq = torch.zeros(n, device=device)
    dense: list[tuple[str, dict[str, torch.Tensor]]] = []
    ghost: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    for name, m, calls in records:
        if _ghost(m, calls):
            a, b = calls[0]
            bn = b.pow(2).sum(1)
            if m.weight.requires_grad:
                sq = sq + a.pow(2).sum(1) * bn
            if m.bias is not None and m.bias.requires_grad:
                sq = sq + bn
            ghost.append((name, m, a, b))
            continue
        gs: dict[str, torch.Tensor] = {}
        for a, b in calls:
            for pname, g in layer_grad_samples(m, a, b).items():
                gs[pname] = gs[pname] + g if pname in gs else g
        for g in gs.values():
            sq = sq + g.reshape(n, -1).pow(2).sum(1)
        dense.append((name, gs))
    norms = sq.sqrt()
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    sums: dict[str, torch.Tensor] = {}
    for name, m, a, b in ghost:
        cb = b * factor[:, None]
        if m.weight.requires_grad:
            sums[_key(name, "weight")] = cb.t() @ a
        if m.bias is not None and m.bias.requires_grad:
            sums[_key(name, "bias")] = cb.sum(0)
    for name, gs in dense:
        for pname, g in gs.items():
            sums[_key(name, pname)] = torch.einsum("n,n...->...", factor, g)
    return sums, norms


def vmap_grad_samples(model: nn.Module, loss: Callable[[Any, Any], torch.Tensor], x: torch.Tensor,
                      y: Any) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per-sample gradients of every trainable parameter by ``torch.func.vmap(grad(...))``.

    Returns the gradients and the per-sample losses (B,). Works for any layer whose forward is
    per-sample (no BatchNorm in training mode); slower than the hook rules above.
    """
    from torch.func import functional_call, grad, vmap

    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    frozen = {k: p for k, p in model.named_parameters() if not p.requires_grad}
    buffers = dict(model.named_buffers())

    def one(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: Any) -> tuple[torch.Tensor, torch.Tensor]:
        out = functional_call(model, ({**p, **frozen}, buffers), (xi.unsqueeze(0),))
        value = loss(out, yi.unsqueeze(0))
        return value, value.detach()

    grads, losses = vmap(grad(one, has_aux=True), in_dims=(None, 0, 0), randomness="different")(params, x, y)
    return grads, losses

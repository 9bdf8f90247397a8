r"""Checks that tell whether an attribution map can be trusted.

- :func:`sanity_check`: cascading model-parameter randomisation (Adebayo et al. 2018). A map
  that explains the *model* must change when the model's weights are destroyed; a map that
  stays the same (guided backprop is the known case) only reflects the input, like an edge
  detector.
- :func:`deletion_insertion`: the deletion and insertion curves and their areas (Petsiuk et
  al. 2018). A good map ranks first the pixels whose removal makes the class probability drop
  fastest (small deletion area) and whose insertion makes it rise fastest (large insertion
  area).
- :func:`rank_correlation`: Spearman's rank correlation of maps, sample by sample.

References
----------
Adebayo J., Gilmer J., Muelly M., Goodfellow I., Hardt M., Kim B. (2018). Sanity checks for
saliency maps. NeurIPS. arXiv:1810.03292.

Petsiuk V., Das A., Saenko K. (2018). RISE: randomized input sampling for explanation of
black-box models. BMVC. arXiv:1806.07421.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mlimaging.interpretability._common import (
    check_positive_int,
    explained,
    resolve_layer,
)
from mlimaging.interpretability.embeddings import model_device
from mlimaging.utils import as_numpy

__all__ = ["deletion_insertion", "rank_correlation", "sanity_check"]


# --------------------------------------------------------------------------- rank correlation


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``v`` with ties given the mean of the ranks they span."""
    order = np.argsort(v, kind="mergesort")
    sv = v[order]
    cuts = np.flatnonzero(np.diff(sv) != 0) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(v)]])
    ranks = np.empty(len(v), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def rank_correlation(a: Any, b: Any) -> np.ndarray:
    r"""Spearman's rank correlation of each sample's map in ``a`` with the one in ``b``.

    .. math::

        \rho = \frac{\sum_i (r_i - \bar r)(s_i - \bar s)}
        {\sqrt{\sum_i (r_i - \bar r)^2 \sum_i (s_i - \bar s)^2}},

    the Pearson correlation of the ranks :math:`r, s` of the values (ties get their mean rank,
    as in ``scipy.stats.spearmanr``). Each sample (first axis) is flattened; a map that is
    constant has no ranking and gives ``nan``.

    Parameters
    ----------
    a, b
        Tensors or arrays of the same shape ``(B, ...)``.

    Returns
    -------
    numpy.ndarray
        ``(B,)`` float64 correlations in [-1, 1] (or nan).

    Examples
    --------
    >>> rank_correlation([[1.0, 2.0, 3.0, 4.0]], [[10.0, 20.0, 30.0, 100.0]])
    array([1.])
    >>> rank_correlation([[1.0, 2.0, 3.0]], [[3.0, 2.0, 1.0]])
    array([-1.])
    """
    x = np.asarray(as_numpy(a), dtype=np.float64)
    y = np.asarray(as_numpy(b), dtype=np.float64)
    if x.shape != y.shape or x.ndim < 2 or x[0].size < 2:
        raise ValueError(f"a and b must have the same shape (B, ...) with at least 2 values per "
                         f"sample, got {x.shape} and {y.shape}")
    x, y = x.reshape(len(x), -1), y.reshape(len(y), -1)
    out = np.empty(len(x))
    for i in range(len(x)):
        r = _average_ranks(x[i])
        s = _average_ranks(y[i])
        r -= r.mean()
        s -= s.mean()
        den = math.sqrt(float(r @ r) * float(s @ s))
        out[i] = float(r @ s) / den if den > 0 else math.nan
    return out


# --------------------------------------------------------------------------- sanity check


def _parametrised_leaves(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules()
            if n and not list(m.children()) and any(True for _ in m.parameters(recurse=False))]


def _randomise(module: nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s own parameters from a seeded draw (global RNG untouched)."""
    cuda = sorted({p.device.index or 0 for p in module.parameters() if p.is_cuda})
    with torch.random.fork_rng(devices=cuda), torch.no_grad():
        torch.manual_seed(seed)  # seeds the CPU and CUDA generators; both restored on exit
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            return
        for p in module.parameters(recurse=False):
            std = float(p.std()) if p.numel() > 1 else 0.0
            p.copy_(torch.randn(p.shape) * (std if std > 0 else 1.0) + float(p.mean()))


def _method_fn(method: Any) -> tuple[str, Callable[..., torch.Tensor]]:
    if callable(method):
        return getattr(method, "__name__", "callable"), method
    if isinstance(method, str):
        from mlimaging.interpretability import attribute

        return method, lambda model, x, target, **kw: attribute(model, x, target, method=method, **kw)
    raise ValueError(f"method must be a method name (see attribute) or a callable "
                     f"(model, x, target, **kw) -> map, got {method!r}")


def _map_modules(kw: dict, model: nn.Module, twin: nn.Module) -> dict:
    """Replace submodules of ``model`` among the keyword values by ``twin``'s counterparts."""
    names = {id(m): n for n, m in model.named_modules()}
    twin_modules = dict(twin.named_modules())
    return {k: (twin_modules[names[id(v)]] if isinstance(v, nn.Module) and id(v) in names else v)
            for k, v in kw.items()}


def _ssim_of_maps(m0: torch.Tensor, mk: torch.Tensor) -> np.ndarray:
    from mlimaging.metrics.quality import ssim

    def norm(m: torch.Tensor) -> np.ndarray:
        m = m.abs().sum(1, keepdim=True).double()
        top = m.flatten(1).amax(1).clamp_min(1e-30).view(-1, *([1] * (m.ndim - 1)))
        return (m / top).numpy()

    return np.asarray(ssim(norm(mk), norm(m0), data_range=1.0), dtype=np.float64).reshape(-1)


def sanity_check(
    model: nn.Module,
    x: torch.Tensor,
    target: Any,
    *,
    method: str | Callable[..., torch.Tensor] = "saliency",
    layers: Sequence[Any] | None = None,
    seed: int = 0,
    absolute: bool = True,
    ssim: bool = False,
    return_maps: bool = False,
    **kw: Any,
) -> list[dict[str, Any]] | tuple[list[dict[str, Any]], torch.Tensor]:
    r"""Cascading model-parameter randomisation test (Adebayo et al. 2018).

    The layers are re-initialised one after the other from the top (output) down, each on top
    of the previous ones, and after each the map :math:`E_k(x)` is recomputed and compared
    with the trained model's :math:`E_0(x)` by Spearman's rank correlation of the absolute
    values (as in the paper; ``absolute=False`` keeps the signs),

    .. math:: \rho_k = \operatorname{Spearman}\big(|E_0(x)|, |E_k(x)|\big), \qquad \rho_0 = 1.

    An explanation sensitive to the model falls towards 0 as layers are randomised. Everything
    runs on a deep copy: the caller's model is never modified. A layer is re-initialised with
    its own ``reset_parameters()`` (the default initialisation) under a seeded generator, or,
    if it has none, with Gaussian values of its weights' mean and standard deviation.

    Parameters
    ----------
    model, x, target
        As for :func:`~mlimaging.interpretability.attribute`.
    method
        A name of :func:`~mlimaging.interpretability.attribute` (``"saliency"``,
        ``"guided_backprop"``, ...) or a callable ``(model, x, target, **kw) -> map``.
    layers
        The cascade: modules or dotted names, randomised in the given order. Default: every
        leaf module with parameters, from the last registered to the first.
    seed
        Layer :math:`k` is re-initialised under seed ``seed + k``.
    absolute
        Compare absolute values (default) or signed maps.
    ssim
        Also give the SSIM (Wang et al. 2004) of the maps (absolute values summed over
        channels, scaled to a maximum of 1); needs spatial sizes of at least 7.
    return_maps
        Also return the maps, ``(L + 1, *x.shape)``.
    **kw
        Passed to the method (a ``layer=`` module of ``model`` is mapped to the copy's).

    Returns
    -------
    list of dict
        One row per step: ``step`` (0 = trained model), ``layer`` (the layer randomised last,
        ``"(trained)"`` at step 0), ``spearman`` (mean over the batch, nan-aware),
        ``spearman_per_sample`` (list), and ``ssim`` / ``ssim_per_sample`` when asked.
        With ``return_maps=True``, ``(rows, maps)``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0) and None
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> grad = lambda m, x, t: torch.autograd.grad(m(x.requires_grad_())[:, t].sum(), x)[0]
    >>> rows = sanity_check(net, torch.rand(2, 1, 4, 4), 0, method=grad)
    >>> [(r["step"], r["layer"]) for r in rows]
    [(0, '(trained)'), (1, '3'), (2, '1')]
    >>> rows[0]["spearman"]
    1.0
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty (B, C, *spatial) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    name, fn = _method_fn(method)
    if layers is None:
        names = _parametrised_leaves(model)[::-1]
    else:
        if isinstance(layers, (str, nn.Module)):
            layers = [layers]
        names = [resolve_layer(model, layer, name="layers")[0] for layer in layers]
    if not names:
        raise ValueError("layers is empty (the model has no layer with parameters to randomise)")
    twin = copy.deepcopy(model)
    twin_modules = dict(twin.named_modules())
    twin_kw = _map_modules(kw, model, twin)

    def explain() -> torch.Tensor:
        out = fn(twin, x.detach().clone(), target, **twin_kw)
        if not isinstance(out, torch.Tensor) or out.shape[0] != x.shape[0]:
            raise ValueError(f"method {name!r} must return a tensor with one map per sample "
                             f"({x.shape[0]}), got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)}")
        return out.detach().float().cpu()

    maps = [explain()]
    for k, layer_name in enumerate(names, start=1):
        _randomise(twin_modules[layer_name], int(seed) + k)
        maps.append(explain())
    rows = []
    ref = maps[0].abs() if absolute else maps[0]
    for k, m in enumerate(maps):
        rho = rank_correlation(ref, m.abs() if absolute else m)
        row: dict[str, Any] = {
            "step": k,
            "layer": "(trained)" if k == 0 else names[k - 1],
            "spearman": float(np.nanmean(rho)) if np.isfinite(rho).any() else math.nan,
            "spearman_per_sample": rho.tolist(),
        }
        if ssim:
            s = _ssim_of_maps(maps[0], m)
            row["ssim"] = float(np.mean(s))
            row["ssim_per_sample"] = s.tolist()
        rows.append(row)
    if return_maps:
        return rows, torch.stack(maps)
    return rows


# --------------------------------------------------------------------------- deletion / insertion


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    from scipy.ndimage import gaussian_filter

    arr = x.detach().cpu().double().numpy()
    out = gaussian_filter(arr, sigma=(0, 0, *([sigma] * (x.ndim - 2))), mode="nearest")
    return torch.as_tensor(out, dtype=x.dtype, device=x.device)


def _substrate(value: Any, x: torch.Tensor, sigma: float, name: str) -> torch.Tensor:
    if isinstance(value, str):
        if value != "blur":
            raise ValueError(f"{name} must be a number, a tensor or 'blur', got {value!r}")
        return _blur(x, sigma)
    if isinstance(value, bool) or not isinstance(value, (int, float, torch.Tensor, np.ndarray)):
        raise ValueError(f"{name} must be a number, a tensor or 'blur', got {value!r}")
    t = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    try:
        return torch.broadcast_to(t, x.shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(t.shape)} does not broadcast to x's shape "
                         f"{tuple(x.shape)}") from None


def _targets(target: Any, batch: int) -> torch.Tensor:
    t = torch.as_tensor(target)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.ndim > 1:
        raise ValueError(f"target must be a class index or {batch} class indices, got {target!r}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"target must be one class index or {batch} (one per sample), got {t.numel()}")
    return t


def trapezoid_area(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""Area under ``y`` (last axis) over ``x`` by the trapezoid rule,
    :math:`\sum_k \tfrac12 (y_k + y_{k+1})(x_{k+1} - x_k)`.

    Examples
    --------
    >>> trapezoid_area(np.array([1.0, 0.0]), np.array([0.0, 1.0]))
    array(0.5)
    """
    y = np.asarray(y, dtype=np.float64)
    dx = np.diff(np.asarray(x, dtype=np.float64))
    return np.asarray(((y[..., 1:] + y[..., :-1]) * 0.5 * dx).sum(-1))


def deletion_insertion(
    model: nn.Module,
    x: torch.Tensor,
    target: Any,
    attribution: Any,
    *,
    steps: int = 50,
    baseline: Any = 0.0,
    insertion_baseline: Any = "blur",
    output: str = "softmax",
    blur_sigma: float = 5.0,
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    r"""Deletion and insertion curves of an attribution map and their areas (Petsiuk et al. 2018).

    Pixels (spatial positions; the map is summed over channels) are ranked by decreasing
    attribution. After step :math:`k` of :math:`n`, the top :math:`m_k = \operatorname{round}
    (kP/n)` of the :math:`P` pixels are

    - *deleted*: set to ``baseline`` in the image, starting from the image itself;
    - *inserted*: copied from the image into ``insertion_baseline``, starting from it,

    and the model's probability of the target class is recorded. The areas are
    :math:`\mathrm{AUC} = \int_0^1 p(f)\,df` by the trapezoid rule over the deleted or
    inserted fraction :math:`f_k = m_k / P`. Lower deletion and higher insertion areas mean a
    more faithful map. As in the paper, deletion defaults to a zero (black) substrate and
    insertion starts from a blurred copy (Gaussian, ``blur_sigma`` pixels). Ties in the map
    keep pixel order (stable sort).

    Parameters
    ----------
    model
        A classifier returning ``(B, K)`` scores (mode and flags restored).
    x
        Images ``(B, C, *spatial)``.
    target
        Class index, or one per sample.
    attribution
        Map of ``x``'s shape, ``(B, 1, *spatial)`` or ``(B, *spatial)``.
    steps
        Number of steps :math:`n` (curves have :math:`n + 1` points).
    baseline, insertion_baseline
        Substrates: a number, a tensor broadcastable to ``x``, or ``"blur"``.
    output
        Score recorded: ``"softmax"`` probability (default), ``"sigmoid"`` or raw ``"logit"``.
    blur_sigma
        Standard deviation (pixels) of the blur substrate.
    batch_size
        Perturbed images per forward pass.

    Returns
    -------
    dict
        ``fractions`` ``(n + 1,)``; ``deletion`` and ``insertion`` ``(B, n + 1)`` curves;
        ``deletion_auc`` and ``insertion_auc`` ``(B,)`` (NumPy float64).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[4., 3., 2., 1.], [0., 0., 0., 0.]]))
    >>> x = torch.ones(1, 1, 2, 2)
    >>> res = deletion_insertion(net, x, 0, net[1].weight[0].view(1, 1, 2, 2), steps=4,
    ...                          insertion_baseline=0.0, output="logit")
    >>> res["deletion"].tolist(), res["insertion"].tolist()
    ([[10.0, 6.0, 3.0, 1.0, 0.0]], [[0.0, 4.0, 7.0, 9.0, 10.0]])
    >>> float(res["deletion_auc"][0]), float(res["insertion_auc"][0])
    (3.75, 6.25)
    """
    if not isinstance(x, torch.Tensor) or x.ndim < 3 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty (B, C, *spatial) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    if output not in ("softmax", "sigmoid", "logit"):
        raise ValueError(f"output must be 'softmax', 'sigmoid' or 'logit', got {output!r}")
    if isinstance(blur_sigma, bool) or not isinstance(blur_sigma, (int, float)) or not blur_sigma > 0:
        raise ValueError(f"blur_sigma must be a positive number, got {blur_sigma!r}")
    B, C, spatial = x.shape[0], x.shape[1], tuple(x.shape[2:])
    att = torch.as_tensor(as_numpy(attribution)).detach().float().cpu()
    if tuple(att.shape) == (B, *spatial):
        att = att.unsqueeze(1)
    if att.ndim != x.ndim or att.shape[0] != B or tuple(att.shape[2:]) != spatial \
            or att.shape[1] not in (1, C):
        raise ValueError(f"attribution must have x's shape {tuple(x.shape)}, (B, 1, *spatial) or "
                         f"(B, *spatial), got {tuple(att.shape)}")
    if not torch.isfinite(att).all():
        raise ValueError("attribution must be finite (found NaN or infinity)")
    P = math.prod(spatial)
    if P < 1:
        raise ValueError(f"x has no pixels (spatial shape {spatial})")
    tgt = _targets(target, B)
    dev = model_device(model)
    xd = x.detach().to(dev)
    del_base = _substrate(baseline, xd, float(blur_sigma), "baseline")
    ins_base = _substrate(insertion_baseline, xd, float(blur_sigma), "insertion_baseline")
    counts = torch.tensor([round(k * P / steps) for k in range(steps + 1)], device=dev)
    fractions = (counts.double() / P).cpu().numpy()
    saliency = att.sum(1).reshape(B, P)
    curves = {"deletion": np.empty((B, steps + 1)), "insertion": np.empty((B, steps + 1))}

    with explained(model), torch.no_grad():
        for b in range(B):
            order = torch.argsort(saliency[b], descending=True, stable=True).to(dev)
            rank = torch.empty(P, dtype=torch.long, device=dev)
            rank[order] = torch.arange(P, device=dev)
            for kind, start, fill in (("deletion", xd[b], del_base[b]),
                                      ("insertion", ins_base[b], xd[b])):
                scores = []
                for lo in range(0, steps + 1, batch_size):
                    k = counts[lo:lo + batch_size]
                    mask = (rank.unsqueeze(0) < k.unsqueeze(1)).view(len(k), 1, *spatial)
                    imgs = torch.where(mask, fill.unsqueeze(0), start.unsqueeze(0))
                    out = model(imgs)
                    if not isinstance(out, torch.Tensor) or out.ndim != 2:
                        raise ValueError("deletion_insertion needs a model returning (B, K) scores, "
                                         f"got {getattr(out, 'shape', type(out))}")
                    if not 0 <= int(tgt[b]) < out.shape[1]:
                        raise ValueError(f"target must be in [0, {out.shape[1]}), got {int(tgt[b])}")
                    if output == "softmax":
                        out = out.float().softmax(1)
                    elif output == "sigmoid":
                        out = out.float().sigmoid()
                    scores.append(out[:, int(tgt[b])].double().cpu())
                curves[kind][b] = torch.cat(scores).numpy()
    return {
        "fractions": fractions,
        "deletion": curves["deletion"],
        "insertion": curves["insertion"],
        "deletion_auc": trapezoid_area(curves["deletion"], fractions),
        "insertion_auc": trapezoid_area(curves["insertion"], fractions),
    }

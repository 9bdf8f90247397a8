r"""Gradient attacks on the input: FGSM (Goodfellow et al. 2015) and PGD (Madry et al. 2018).

One verb, ``attack(model, x, y, **kw) -> x_adv``, with an explicit intensity range (see
:mod:`mlimaging.robustness.ranges`). Every attack

* runs the model in eval mode (BatchNorm statistics stay unchanged) with every parameter's
  ``requires_grad`` switched off, so only :math:`\nabla_x L` is computed (no parameter
  gradients), and restores each module's mode and each parameter's flag afterwards;
* never modifies ``x`` (the result is a new tensor, detached);
* takes ``loss`` = ``"ce"`` (default; cross-entropy, pixelwise for ``(B, C, *spatial)`` outputs
  against ``(B, *spatial)`` label maps), ``"dice"`` (soft Dice of
  :func:`mlimaging.segmentation.dice_loss`) or a callable ``(logits, y) -> scalar``;
* with ``targeted=True`` reads ``y`` as the *target* (class or label map) and descends the loss.

The loss is the batch mean (as in torchattacks), which leaves the sign and the normalised
direction of each sample's gradient unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.robustness.ranges import Bounds, _number, resolve_range

__all__ = ["FGSM", "PGD", "attack", "fgsm", "pgd"]

LossArg = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
_NORMS = ("linf", "l2")


# --------------------------------------------------------------------------- helpers


@contextmanager
def _attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and ``requires_grad=False`` on every parameter; both restored on exit."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def _check_xy(model: Any, x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not callable(model):
        raise ValueError(f"model must be a callable nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point tensor (B, C, *spatial), got {got}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (B, C, *spatial) with B >= 1, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a tensor of labels (B,) or label maps (B, *spatial), got {type(y).__name__}")
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must start with the batch size {x.shape[0]} of x, got shape {tuple(y.shape)}")
    return x.detach(), y.detach().to(x.device)


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _step_size(alpha: Any, eps: float) -> float:
    """``alpha`` checked: > 0, or 0 with ``eps = 0`` (no attack)."""
    value = _number(alpha, "alpha", minimum=0.0)
    if value == 0 and eps > 0:
        raise ValueError(f"alpha must be > 0 when eps > 0, got alpha = {value}")
    return value


def _check_norm(norm: Any) -> str:
    key = str(norm).lower() if isinstance(norm, str) else norm
    if key not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    return key


def _ce(logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction=reduction)


def _dice(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    from mlimaging.segmentation.losses import dice_loss  # lazy: segmentation imports SciPy

    return dice_loss(logits, y)


def _resolve_loss(loss: LossArg) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The scalar loss ``(logits, y) -> tensor`` named by ``loss``."""
    if loss is None or (isinstance(loss, str) and loss.lower() == "ce"):
        return _ce
    if (type(loss) is nn.CrossEntropyLoss and loss.weight is None and loss.reduction == "mean"
            and loss.ignore_index == -100 and loss.label_smoothing == 0):
        return _ce  # the same loss; per-sample values for restarts without a loop
    if isinstance(loss, str) and loss.lower() == "dice":
        return _dice
    if callable(loss) and not isinstance(loss, str):
        return loss
    raise ValueError(f"loss must be 'ce', 'dice' or a callable (logits, y) -> scalar, got {loss!r}")


def _prepare_target(logits: torch.Tensor, y: torch.Tensor, fn: Callable) -> torch.Tensor:
    """Check the targets against the first output; squeeze a ``(B, 1, *spatial)`` label map."""
    if fn is not _ce and fn is not _dice:
        return y
    if not isinstance(logits, torch.Tensor) or logits.ndim < 2:
        raise ValueError(f"the model must return logits (B, K, *spatial) for loss 'ce'/'dice', got "
                         f"{tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__}")
    if y.is_floating_point() and y.shape == logits.shape:
        return y  # class probabilities (soft labels)
    if y.ndim == logits.ndim and y.shape[1] == 1:
        y = y[:, 0]
    expected = (logits.shape[0],) + tuple(logits.shape[2:])
    if tuple(y.shape) != expected:
        raise ValueError(f"y must have shape {expected} for logits of shape {tuple(logits.shape)}, got "
                         f"{tuple(y.shape)}")
    if y.is_floating_point():
        if not bool((y == y.round()).all()):
            raise ValueError("y must hold integer class labels (or probabilities shaped like the logits)")
        y = y.long()
    k = logits.shape[1]
    if bool((y < 0).any()) or bool((y >= k).any()):
        raise ValueError(f"y must hold labels in [0, {k}) for {k} output classes, got values in "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y.long()


def _per_sample_loss(fn: Callable, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss of each sample ``(B,)`` (cross-entropy averaged over pixels)."""
    if fn is _ce:
        return _ce(logits, y, "none").reshape(logits.shape[0], -1).mean(1)
    return torch.stack([fn(logits[i : i + 1], y[i : i + 1]).reshape(()) for i in range(logits.shape[0])])


def _success(logits: torch.Tensor, y: torch.Tensor, targeted: bool) -> torch.Tensor | None:
    """Per sample: misclassified (untargeted) or classified as the target; None unless classifying."""
    if logits.ndim != 2 or y.ndim != 1 or y.is_floating_point():
        return None
    hit = logits.argmax(1) == y
    return hit if targeted else ~hit


def _working_copy(x: torch.Tensor) -> torch.Tensor:
    """A copy of ``x`` to attack. 2D and 3D images on the CPU get channels-last strides:
    oneDNN's convolution backward is 1.3-4x faster in that layout (values are the same; the
    kernels' summation order, and so the last bits of a gradient, may differ)."""
    if x.device.type == "cpu" and x.ndim in (4, 5):
        fmt = torch.channels_last if x.ndim == 4 else torch.channels_last_3d
        return torch.empty_like(x, memory_format=fmt).copy_(x)
    return x.clone()


def _restore_layout(adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adv`` detached, in the memory layout of ``x`` (contiguous in, contiguous out)."""
    adv = adv.detach()
    return adv.contiguous() if x.is_contiguous() else adv


def _noise(x: torch.Tensor, generator: torch.Generator | None, kind: str) -> torch.Tensor:
    """Uniform(-1, 1) or standard normal noise like ``x`` (from ``generator``, on its device)."""
    device = generator.device if generator is not None else x.device
    out = torch.empty(x.shape, dtype=x.dtype, device=device)
    out = out.uniform_(-1.0, 1.0, generator=generator) if kind == "uniform" else out.normal_(generator=generator)
    return out.to(x.device)


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-sample L2 norm, shaped ``(B, 1, ..., 1)``."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1).reshape((-1,) + (1,) * (t.ndim - 1))


def _grad(model: Callable, fn: Callable, x: torch.Tensor, y: torch.Tensor, targeted: bool,
          first: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """:math:`\\nabla_x` of the (negated when targeted) loss at ``x``; ``y`` checked when ``first``."""
    x.requires_grad_(True)
    logits = model(x)
    if first:
        y = _prepare_target(logits, y, fn)
    cost = fn(logits, y)
    if not isinstance(cost, torch.Tensor) or cost.ndim != 0:
        raise ValueError("loss must return a scalar tensor")
    if targeted:
        cost = -cost
    (g,) = torch.autograd.grad(cost, x)
    x.requires_grad_(False)
    return g, y


# --------------------------------------------------------------------------- FGSM


def fgsm(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps: float,
         valid_range: Any = (0.0, 1.0), targeted: bool = False, loss: LossArg = None,
         eps_relative: bool = False) -> torch.Tensor:
    r"""Fast gradient sign method (Goodfellow, Shlens & Szegedy 2015, arXiv:1412.6572).

    .. math::

        x_{adv} = \operatorname{clip}_{[lo, hi]}\big(x \pm \varepsilon\,
        \operatorname{sign}(\nabla_x L(f(x), y))\big),

    with :math:`+` (ascend the loss of the true ``y``) or, when ``targeted``, :math:`-` (descend
    the loss of the target ``y``).

    Parameters
    ----------
    model
        The network (an ``nn.Module``: its modes and flags are restored afterwards).
    x
        Clean images ``(B, C, *spatial)`` inside ``valid_range`` (2D or 3D). Not modified.
    y
        Labels ``(B,)`` or label maps ``(B, *spatial)``; the targets when ``targeted``.
    eps
        Budget :math:`\varepsilon \ge 0` (image units, or a fraction of the range width when
        ``eps_relative``).
    valid_range
        ``(lo, hi)``: numbers, per-channel 1-D tensors or tensors broadcastable against ``x``;
        ``None`` for no clipping. ``x`` outside it raises ``ValueError``.
    targeted
        Move towards ``y`` instead of away from it.
    loss
        ``"ce"`` (default), ``"dice"`` or a callable ``(logits, y) -> scalar``.
    eps_relative
        Read ``eps`` as a fraction of ``hi - lo``.

    Returns
    -------
    torch.Tensor
        ``x_adv``, detached, same shape and dtype as ``x``.

    Examples
    --------
    A linear model :math:`f(x) = (w \cdot x, 0)`: the gradient of the loss of class 0 is
    :math:`-w \, (1 - p_0)`, so FGSM moves every pixel by :math:`-\varepsilon\,\mathrm{sign}(w)`:

    >>> import torch
    >>> from torch import nn
    >>> lin = nn.Linear(3, 2, bias=False)
    >>> lin.weight.data = torch.tensor([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]])
    >>> x = torch.full((1, 3), 0.5)
    >>> fgsm(lin, x, torch.tensor([0]), eps=0.1)
    tensor([[0.4000, 0.6000, 0.4000]])
    """
    x, y = _check_xy(model, x, y)
    bounds = resolve_range(valid_range, x, eps_relative=eps_relative)
    e = bounds.scale(_number(eps, "eps", minimum=0.0), relative=eps_relative)
    fn = _resolve_loss(loss)
    xw = _working_copy(x)
    with _attack_mode(model), torch.enable_grad():
        g, _ = _grad(model, fn, xw, y, bool(targeted), first=True)
    adv = xw + e * g.sign()
    return _restore_layout(bounds.clamp_(adv), x)


# --------------------------------------------------------------------------- PGD


def _pgd_once(model: Callable, fn: Callable, x: torch.Tensor, y: torch.Tensor, bounds: Bounds, *,
              eps: float | torch.Tensor, alpha: float | torch.Tensor, steps: int, norm: str,
              random_start: bool, targeted: bool, generator: torch.Generator | None,
              scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One PGD run from one start. ``scale`` (a tensor) is the per-channel width for relative
    L2 budgets (the ball lives in normalised units); ``eps``/``alpha`` are in image units
    otherwise (floats or broadcastable tensors)."""
    if random_start:
        if norm == "linf":
            if generator is None and isinstance(eps, float):
                noise = torch.empty(x.shape, dtype=x.dtype, device=x.device).uniform_(-eps, eps)
            else:
                noise = _noise(x, generator, "uniform").mul_(eps)
        else:
            if generator is None:
                delta = torch.empty(x.shape, dtype=x.dtype, device=x.device).normal_()
                r = torch.zeros((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).uniform_(0, 1)
            else:
                delta = _noise(x, generator, "normal")
                r = _noise(x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)), generator, "uniform")
                r = r.add_(1.0).mul_(0.5)
            noise = delta.mul_(r / _flat_norm(delta) * eps)
            if scale is not None:
                noise.mul_(scale)
        adv = bounds.clamp_(x + noise)
        adv = torch.empty_like(x).copy_(adv)  # the working layout of x (channels-last on CPU)
    else:
        adv = x.clone()
    if norm == "linf":
        lower, upper = bounds.box(x, eps)
        step = -alpha if targeted else alpha
        for i in range(steps):
            g, y = _grad(model, fn, adv, y, False, first=i == 0)
            g.sign_()
            if isinstance(step, float):
                adv.add_(g, alpha=step)
            else:
                adv.addcmul_(g, step)
            torch.clamp(adv, lower, upper, out=adv)
        return adv, y
    delta = torch.empty_like(x)
    for i in range(steps):
        g, y = _grad(model, fn, adv, y, targeted, first=i == 0)
        if scale is not None:
            g.mul_(scale)
        g.div_(_flat_norm(g).add_(1e-10))
        if scale is not None:
            g.mul_(scale)
        adv.add_(g, alpha=alpha)
        torch.sub(adv, x, out=delta)
        dn = _flat_norm(delta if scale is None else delta / scale)
        delta.mul_(torch.clamp(eps / dn, max=1.0))
        bounds.clamp_(torch.add(x, delta, out=adv))
    return adv, y


def pgd(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *, eps: float,
        alpha: float | None = None, steps: int = 10, norm: str = "linf", random_start: bool = True,
        valid_range: Any = (0.0, 1.0), targeted: bool = False, loss: LossArg = None,
        generator: torch.Generator | None = None, restarts: int = 1, eps_relative: bool = False) -> torch.Tensor:
    r"""Projected gradient descent (Madry, Makelov, Schmidt, Tsipras & Vladu 2018, arXiv:1706.06083).

    Start at :math:`x^0 = x` or a random point of the ball, then ``steps`` times

    .. math::

        x^{t+1} = \Pi_{B_\varepsilon(x) \cap [lo, hi]}\big(x^t \pm \alpha\, d(\nabla_x L(f(x^t), y))\big),

    with :math:`d(g) = \operatorname{sign}(g)` and the projection a clip to
    :math:`[\max(x - \varepsilon, lo), \min(x + \varepsilon, hi)]` for ``norm="linf"``, or
    :math:`d(g) = g / \lVert g \rVert_2` and a rescaling of :math:`\delta = x^{t+1} - x` to
    :math:`\lVert \delta \rVert_2 \le \varepsilon` followed by the range clip for ``norm="l2"``
    (sign :math:`-` and target ``y`` when ``targeted``). Random starts: uniform in the
    :math:`L_\infty` ball; for L2 a Gaussian direction scaled to radius :math:`r\varepsilon`,
    :math:`r \sim U(0, 1)` (as torchattacks). With ``restarts > 1`` each sample keeps its
    strongest result: a successful one (misclassified, or classified as the target) over an
    unsuccessful one, then the highest loss (the lowest target loss when ``targeted``).

    Parameters
    ----------
    model, x, y, valid_range, targeted, loss, eps_relative
        As in :func:`fgsm`.
    eps
        Radius :math:`\varepsilon \ge 0` of the ball in ``norm``.
    alpha
        Step size :math:`\alpha > 0` (0 allowed only with ``eps = 0``; same units as ``eps``); default :math:`2.5\varepsilon/`
        ``steps`` (Madry et al.).
    steps
        Number of steps, >= 1.
    norm
        ``"linf"`` or ``"l2"`` (the L2 norm over all of a sample's pixels and channels).
    random_start
        Start from a random point of the ball.
    generator
        Random generator for the start (default: the global one, as torchattacks).
    restarts
        Number of random starts, >= 1 (> 1 needs ``random_start``).

    Returns
    -------
    torch.Tensor
        ``x_adv``, detached, same shape and dtype as ``x``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    >>> x = torch.rand(4, 1, 4, 4); y = torch.tensor([0, 1, 2, 0])
    >>> x_adv = pgd(model, x, y, eps=0.1, alpha=0.02, steps=10)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6), bool(x_adv.min() >= 0), bool(x_adv.max() <= 1)
    (True, True, True)
    >>> ce = nn.functional.cross_entropy
    >>> bool(ce(model(x_adv), y) > ce(model(x), y))
    True
    """
    x, y = _check_xy(model, x, y)
    norm = _check_norm(norm)
    steps = _check_int(steps, "steps")
    restarts = _check_int(restarts, "restarts")
    if restarts > 1 and not random_start:
        raise ValueError(f"restarts = {restarts} needs random_start=True (every restart would be the same)")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    bounds = resolve_range(valid_range, x, eps_relative=eps_relative)
    eps_v = _number(eps, "eps", minimum=0.0)
    alpha_v = 2.5 * eps_v / steps if alpha is None else _step_size(alpha, eps_v)
    fn = _resolve_loss(loss)
    scale = None
    if eps_relative and norm == "l2" and isinstance(bounds.width, torch.Tensor):
        scale, e, a = bounds.width, eps_v, alpha_v  # ball in normalised units
    else:
        e = bounds.scale(eps_v, relative=eps_relative)
        a = bounds.scale(alpha_v, relative=eps_relative)
    kw = dict(eps=e, alpha=a, steps=steps, norm=norm, random_start=bool(random_start), targeted=bool(targeted),
              generator=generator, scale=scale)
    if eps_v == 0:
        return x.clone()  # the ball is {x}
    x_in, x = x, _working_copy(x)
    with _attack_mode(model), torch.enable_grad():
        best, y = _pgd_once(model, fn, x, y, bounds, **kw)
        if restarts == 1:
            return _restore_layout(best, x_in)

        def judge(adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            """Per-sample loss and success (None unless classifying) of a candidate."""
            with torch.no_grad():
                logits = model(adv)
                return _per_sample_loss(fn, logits, y), _success(logits, y, bool(targeted))

        best_loss, best_hit = judge(best)
        sign = -1.0 if targeted else 1.0
        for _ in range(restarts - 1):
            adv, _ = _pgd_once(model, fn, x, y, bounds, **kw)
            cur_loss, hit = judge(adv)
            with torch.no_grad():
                better = sign * cur_loss > sign * best_loss
                if best_hit is not None:
                    better = (hit & ~best_hit) | ((hit == best_hit) & better)
                    best_hit = torch.where(better, hit, best_hit)
                best_loss = torch.where(better, cur_loss, best_loss)
                mask = better.reshape((-1,) + (1,) * (x.ndim - 1))
                best = torch.where(mask, adv, best)
    return _restore_layout(best, x_in)


# --------------------------------------------------------------------------- one verb, two classes


def attack(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, *,
           method: str = "fgsm", **kw: Any) -> torch.Tensor:
    r"""The one verb: ``attack(model, x, y, method="fgsm"|"pgd", **settings) -> x_adv``.

    Calls :func:`fgsm` (Goodfellow et al. 2015) or :func:`pgd` (Madry et al. 2018) with
    ``settings``; see them for the formulas
    (:math:`x_{adv} = \operatorname{clip}(x + \varepsilon\,\operatorname{sign}\nabla_x L)` for FGSM).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> x = torch.full((2, 1, 2, 2), 0.5); y = torch.tensor([0, 1])
    >>> x_adv = attack(model, x, y, method="pgd", eps=0.1, steps=3, random_start=False)
    >>> float((x_adv - x).abs().max()) <= 0.1 + 1e-6
    True
    """
    key = method.lower() if isinstance(method, str) else method
    if key == "fgsm":
        return fgsm(model, x, y, **kw)
    if key == "pgd":
        return pgd(model, x, y, **kw)
    raise ValueError(f"method must be 'fgsm' or 'pgd', got {method!r}")


class _Attack:
    """Settings held for a function; ``__call__(model, x, y)`` runs it."""

    _fn: Callable[..., torch.Tensor]
    _keys: tuple[str, ...]

    def __init__(self, **settings: Any):
        unknown = sorted(set(settings) - set(self._keys))
        if unknown:
            raise ValueError(f"{type(self).__name__} takes no setting(s) {unknown}; valid: {list(self._keys)}")
        if settings.get("eps") is not None:
            _number(settings["eps"], "eps", minimum=0.0)
        self.settings = dict(settings)

    @property
    def eps(self) -> float | None:
        return self.settings.get("eps")

    @property
    def targeted(self) -> bool:
        return bool(self.settings.get("targeted", False))

    def with_eps(self, eps: float) -> _Attack:
        """A copy with budget ``eps`` (and, for PGD without an explicit alpha, its default step)."""
        new = copy.copy(self)
        new.settings = {**self.settings, "eps": eps}
        return new

    def __call__(self, model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.settings.get("eps") is None:
            raise ValueError(f"{type(self).__name__} needs eps (pass eps=... or use with_eps)")
        return type(self)._fn(model, x, y, **self.settings)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"{type(self).__name__}({args})"


class FGSM(_Attack):
    r"""FGSM (Goodfellow et al. 2015) with fixed settings: ``FGSM(eps=...)(model, x, y)``.

    :math:`x_{adv} = \operatorname{clip}_{[lo, hi]}(x + \varepsilon\,\operatorname{sign}\nabla_x L)`;
    the settings are the keyword arguments of :func:`fgsm`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> atk = FGSM(eps=0.05, valid_range=(-1.0, 1.0))
    >>> atk
    FGSM(eps=0.05, valid_range=(-1.0, 1.0))
    >>> x = torch.zeros(3, 1, 2, 2)
    >>> float((atk(model, x, torch.tensor([0, 1, 1])) - x).abs().max())
    0.05000000074505806
    """

    _fn = staticmethod(fgsm)
    _keys = ("eps", "valid_range", "targeted", "loss", "eps_relative")


class PGD(_Attack):
    r"""PGD (Madry et al. 2018) with fixed settings: ``PGD(eps=..., steps=40)(model, x, y)``.

    :math:`x^{t+1} = \Pi_{B_\varepsilon(x) \cap [lo, hi]}(x^t + \alpha\, d(\nabla_x L))`; the
    settings are the keyword arguments of :func:`pgd`.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> atk = PGD(eps=0.1, steps=5, norm="l2", random_start=False)
    >>> x = torch.full((2, 1, 2, 2), 0.5)
    >>> bool(torch.linalg.vector_norm((atk(model, x, torch.tensor([0, 1])) - x).flatten(1), dim=1).max() <= 0.1 + 1e-6)
    True
    """

    _fn = staticmethod(pgd)
    _keys = ("eps", "alpha", "steps", "norm", "random_start", "valid_range", "targeted", "loss", "generator",
             "restarts", "eps_relative")

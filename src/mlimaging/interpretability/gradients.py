r"""Gradient-based attributions: saliency, input x gradient, SmoothGrad, integrated gradients,
DeconvNet and guided backpropagation.

Every function takes ``(model, x, target, ...)`` and returns a detached tensor of ``x``'s
shape. ``target`` chooses the explained scalar :math:`y_b` of each sample (a class index, one
per sample, or :class:`~mlimaging.interpretability.SegmentationTarget` for segmentation
models; see :mod:`mlimaging.interpretability._targets`). During the call the model is in eval
mode with frozen parameters; its mode and ``requires_grad`` flags are restored afterwards,
and ``x`` is never modified.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from mlimaging.interpretability._common import (
    Runner,
    as_baseline,
    auto_chunk,
    check_positive_int,
    explained,
    setup,
)
from mlimaging.interpretability._relu import relu_rule
from mlimaging.interpretability._targets import _Target

__all__ = [
    "deconvnet",
    "guided_backprop",
    "input_x_gradient",
    "integrated_gradients",
    "saliency",
    "smoothgrad",
]

IG_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
              "riemann_trapezoid")


def _grad(model: nn.Module | Runner, x: torch.Tensor, tgt: _Target,
          rule: str | None = None) -> torch.Tensor:
    """:math:`\\partial y_b / \\partial x_b` for every row of ``x`` (model already prepared).

    The samples are independent (eval mode), so the gradient of :math:`\\sum_b y_b` with
    respect to the batch holds each sample's own gradient. The model sees a copy of the leaf
    (an in-place first layer must not touch it, or x), channels-last when ``model`` is a
    :class:`Runner`.
    """
    leaf = x.detach().requires_grad_(True)
    run = model if isinstance(model, Runner) else Runner(model)
    if rule is None:
        out = run(leaf)
    else:
        with relu_rule(rule):
            out = run(leaf)
    scores = tgt.scores(out)
    if not scores.requires_grad:  # the score does not depend on x: its gradient is zero
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(scores.sum(), leaf, allow_unused=True)
    return torch.zeros_like(x) if g is None else g.detach().contiguous()


def _gradient_of(model: Any, x: Any, target: Any, rule: str | None = None) -> torch.Tensor:
    model, x, tgt = setup(model, x, target)
    with explained(model):
        return _grad(Runner(model), x, tgt, rule)


def saliency(model: nn.Module, x: torch.Tensor, target: Any, *, abs: bool = True
             ) -> torch.Tensor:
    r"""Saliency map: the gradient of the target score with respect to the input.

    .. math:: S_b = \left| \frac{\partial y_b}{\partial x_b} \right|

    (Simonyan, Vedaldi & Zisserman 2014, "Deep inside convolutional networks",
    arXiv:1312.6034). The paper takes the maximum over colour channels for display; here
    every channel keeps its own value, as in Captum's ``Saliency``.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    x : torch.Tensor
        Inputs ``(B, C, *spatial)``, floating point.
    target : int, sequence of int, SegmentationTarget or (cls, mask)
        The explained score of each sample.
    abs : bool
        Absolute value of the gradient (default True, the paper's and Captum's default);
        False returns the signed gradient.

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 2, bias=False)
    >>> with torch.no_grad():
    ...     _ = model.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]]))
    >>> saliency(model, torch.zeros(1, 3), 0)
    tensor([[1.0000, 2.0000, 0.5000]])
    """
    g = _gradient_of(model, x, target)
    return g.abs() if abs else g


def input_x_gradient(model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
    r"""Input times gradient: :math:`A_b = x_b \odot \partial y_b / \partial x_b`.

    The first-order Taylor contribution of each input to the score (Shrikumar et al. 2016,
    "Not just a black box", arXiv:1605.01713); for a linear model with zero bias the
    attributions sum to the score.

    Parameters
    ----------
    model, x, target
        As for :func:`saliency`.

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(3, 1, bias=False)
    >>> x = torch.tensor([[1.0, 2.0, 3.0]])
    >>> a = input_x_gradient(model, x, 0)
    >>> torch.allclose(a.sum(), model(x).sum())
    True
    """
    g = _gradient_of(model, x, target)
    return (x.detach() * g).detach()


def smoothgrad(model: nn.Module, x: torch.Tensor, target: Any, *, samples: int = 50,
               sigma: float = 0.15, abs: bool = True, seed: int | None = None,
               generator: torch.Generator | None = None, batch_size: int | None = None
               ) -> torch.Tensor:
    r"""SmoothGrad: the saliency map averaged over noisy copies of the input.

    .. math::

        \hat S_b = \frac{1}{n} \sum_{k=1}^{n} \left|
        \frac{\partial y_b}{\partial x}\Big|_{x_b + \epsilon_k} \right|,
        \qquad \epsilon_k \sim \mathcal N\!\left(0, \big(\sigma (\max x_b - \min x_b)\big)^2
        \right)

    (Smilkov, Thorat, Kim, Viegas & Wattenberg 2017, arXiv:1706.03825). The noise level is
    a fraction ``sigma`` of each sample's intensity range (the paper recommends 10-20%).
    The noise of sample ``b`` copy ``k`` is row ``b * samples + k`` of one normal draw of
    shape ``(B * samples, C, *spatial)``, the layout of Captum's ``NoiseTunnel``, so a
    seeded call reproduces NoiseTunnel(Saliency) after ``torch.manual_seed(seed)``.

    Parameters
    ----------
    model, x, target
        As for :func:`saliency`.
    samples : int
        Number of noisy copies :math:`n` per sample.
    sigma : float
        Noise standard deviation as a fraction of each sample's range, >= 0.
    abs : bool
        Average absolute gradients (default, as Captum's NoiseTunnel over Saliency) or
        signed ones (the paper's mean gradient).
    seed : int, optional
        Seed of a fresh generator for the noise (ignored when ``generator`` is given).
    generator : torch.Generator, optional
        Source of the noise; neither seed nor generator uses torch's global generator.
    batch_size : int, optional
        At most this many noisy images per forward/backward pass (default: about
        :data:`~mlimaging.interpretability._common.ELEMENT_BUDGET` input elements).

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> x = torch.rand(2, 1, 2, 2)
    >>> a = smoothgrad(model, x, 1, samples=8, seed=0)
    >>> a.shape, torch.allclose(a, saliency(model, x, 1))  # a linear model: no change
    (torch.Size([2, 1, 2, 2]), True)
    """
    model, x, tgt = setup(model, x, target)
    n = check_positive_int(samples, "samples")
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (
        np.isfinite(sigma) and sigma >= 0
    ):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    chunk = auto_chunk(batch_size, x[0].numel())
    if generator is None:
        generator = torch.Generator(device=x.device)
        if seed is not None:
            generator.manual_seed(int(seed))
        else:
            generator.seed()
    b = x.shape[0]
    flat = x.detach().reshape(b, -1)
    std = sigma * (flat.max(1).values - flat.min(1).values)
    std = std.repeat_interleave(n).view(b * n, *([1] * (x.ndim - 1)))
    noise = torch.randn((b * n, *x.shape[1:]), generator=generator, dtype=x.dtype,
                        device=x.device)
    noisy = x.detach().repeat_interleave(n, dim=0) + noise * std
    rows = torch.arange(b).repeat_interleave(n)
    total = torch.zeros_like(x)
    with explained(model):
        run = Runner(model)
        for start in range(0, b * n, chunk):
            sl = slice(start, start + chunk)
            g = _grad(run, noisy[sl], tgt.take(rows[sl]))
            if abs:
                g = g.abs()
            total.index_add_(0, rows[sl].to(x.device), g)
    return total / n


def _ig_weights(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes :math:`\\alpha_k` in [0, 1] and weights :math:`w_k`."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if steps < 2:
        raise ValueError(f"steps must be >= 2 for method {method!r}, got {steps}")
    if method == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, steps)
        w = np.full(steps, 1.0 / (steps - 1))
        w[0] /= 2
        w[-1] /= 2
        return alphas, w
    w = np.full(steps, 1.0 / steps)
    if method == "riemann_left":
        return np.linspace(0.0, 1.0 - 1.0 / steps, steps), w
    if method == "riemann_right":
        return np.linspace(1.0 / steps, 1.0, steps), w
    return np.linspace(0.5 / steps, 1.0 - 0.5 / steps, steps), w  # riemann_middle


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: Any, *,
                         baseline: float | torch.Tensor = 0.0, steps: int = 50,
                         method: str = "gausslegendre",
                         internal_batch_size: int | None = None) -> torch.Tensor:
    r"""Integrated gradients along the straight path from a baseline to the input.

    .. math::

        \mathrm{IG}_i(x) = (x_i - x'_i) \int_0^1
        \frac{\partial y}{\partial x_i}\Big|_{x' + \alpha (x - x')} d\alpha
        \approx (x_i - x'_i) \sum_{k=1}^{m} w_k
        \frac{\partial y}{\partial x_i}\Big|_{x' + \alpha_k (x - x')}

    (Sundararajan, Taly & Yan 2017, "Axiomatic attribution for deep networks",
    arXiv:1703.01365). Completeness: :math:`\sum_i \mathrm{IG}_i = y(x) - y(x')` up to the
    quadrature error. The default Gauss-Legendre nodes and weights are Captum's, so the
    values match ``captum.attr.IntegratedGradients``; ``"riemann_trapezoid"`` is the exact
    trapezoid rule (weights :math:`1/(m-1)`, halved at the ends; Captum's variant uses
    :math:`1/m`, whose weights sum to :math:`(m-1)/m`).

    Parameters
    ----------
    model, x, target
        As for :func:`saliency`.
    baseline : float or torch.Tensor
        The reference input :math:`x'`: a number or a tensor broadcastable to ``x``.
    steps : int
        Number of quadrature nodes :math:`m`.
    method : str
        ``"gausslegendre"`` (default), ``"riemann_left"``, ``"riemann_right"``,
        ``"riemann_middle"`` or ``"riemann_trapezoid"``.
    internal_batch_size : int, optional
        At most this many path points (images) per forward/backward pass; by default about
        :data:`~mlimaging.interpretability._common.ELEMENT_BUDGET` input elements (cache-sized
        passes are faster than one pass of all ``steps * B`` images).

    Returns
    -------
    torch.Tensor
        Detached attributions of ``x``'s shape.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    >>> x = torch.tensor([[0.5, -1.0, 2.0]])
    >>> a = integrated_gradients(model, x, None, steps=32)
    >>> gap = (model(x) - model(torch.zeros_like(x))).item()
    >>> abs(a.sum().item() - gap) < 1e-3 * max(1.0, abs(gap))
    True
    """
    model, x, tgt = setup(model, x, target)
    m = check_positive_int(steps, "steps")
    if method not in IG_METHODS:
        raise ValueError(f"method must be one of {IG_METHODS}, got {method!r}")
    chunk = auto_chunk(internal_batch_size, x[0].numel(), "internal_batch_size")
    base = as_baseline(baseline, x)
    alphas, weights = _ig_weights(method, m)
    b = x.shape[0]
    x0 = x.detach()
    delta = x0 - base
    shape = (m, 1) + (1,) * (x.ndim - 1)
    alpha_t = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).view(shape)
    path = (base + alpha_t * delta.unsqueeze(0)).reshape(m * b, *x.shape[1:])
    rows = torch.arange(b).repeat(m)
    grads = torch.empty_like(path)
    with explained(model):
        run = Runner(model)
        for start in range(0, m * b, chunk):
            sl = slice(start, start + chunk)
            grads[sl] = _grad(run, path[sl], tgt.take(rows[sl]))
    w = torch.as_tensor(weights, dtype=x.dtype, device=x.device)
    # reshape, not view: a channels-last input gives channels-last gradients
    total = torch.tensordot(w, grads.reshape(m, -1), dims=1).reshape(x0.shape)
    return (total * delta).detach()


def deconvnet(model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
    r"""DeconvNet: back-propagation with ReLUs that pass only positive gradients.

    At each ReLU the backward pass applies :math:`g_z = \max(g_a, 0)` instead of
    :math:`g_a [z > 0]` (Zeiler & Fergus 2014, "Visualizing and understanding convolutional
    networks", arXiv:1311.2901); all other layers back-propagate as usual. The rule applies
    to ``nn.ReLU`` (in-place or not) and to ``F.relu``/``torch.relu``/``Tensor.relu``/
    ``relu_`` called in ``forward``, through a torch function mode (see ``_relu.py``); other
    activations (LeakyReLU, GELU) keep their gradient.

    Parameters
    ----------
    model, x, target
        As for :func:`saliency`.

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape (signed, as in Captum's ``Deconvolution``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.eye(2))
    ...     _ = model[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
    >>> deconvnet(model, torch.tensor([[-1.0, 1.0]]), None)  # negative gradient blocked
    tensor([[1., 0.]])
    """
    return _gradient_of(model, x, target, "deconvnet")


def guided_backprop(model: nn.Module, x: torch.Tensor, target: Any) -> torch.Tensor:
    r"""Guided backpropagation: ReLUs pass gradients that are positive and where z > 0.

    At each ReLU :math:`g_z = \max(g_a, 0) \, [z > 0]` (Springenberg, Dosovitskiy, Brox &
    Riedmiller 2015, "Striving for simplicity: the all convolutional net",
    arXiv:1412.6806): the usual ReLU gradient combined with the DeconvNet rule. Works for
    every way a model can call a ReLU, as :func:`deconvnet`.

    Parameters
    ----------
    model, x, target
        As for :func:`saliency`.

    Returns
    -------
    torch.Tensor
        Detached map of ``x``'s shape (signed, as in Captum's ``GuidedBackprop``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1))
    >>> with torch.no_grad():
    ...     _ = model[0].weight.copy_(torch.eye(2))
    ...     _ = model[2].weight.copy_(torch.tensor([[1.0, 1.0]]))
    >>> guided_backprop(model, torch.tensor([[-1.0, 1.0]]), None)  # unit 0 is off
    tensor([[0., 1.]])
    """
    return _gradient_of(model, x, target, "guided_backprop")

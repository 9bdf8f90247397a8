r"""Gradient inversion: training images recovered from the gradients a client shares, and defences.

Conventions (the whole module):

- The *shared gradient* is what a FedSGD client sends for a batch ``(x, y)``: the gradient of the
  batch-mean cross-entropy :math:`\mathcal{L}(f_\theta(x), y)` with respect to every parameter, one
  tensor per ``model.parameters()`` in that order (:func:`shared_gradients`). It is computed, and
  attacked, with the model in eval mode (dropout off, BatchNorm on its running statistics).
- Images are ``(B, C, H, W)`` float tensors in a valid intensity range ``value_range`` (``(0, 1)``
  for the classifiers of ``mlimaging train classifier``); reconstructions are returned inside it.
- The model is only read: its parameters, their ``requires_grad`` flags and ``.grad`` are never
  changed (the attacks differentiate detached copies through :func:`torch.func.functional_call`)
  and its train/eval mode is put back. Inputs are never modified.
- Randomness goes through ``seed`` (the attacks' initialisations and restarts) or an explicit
  ``generator`` (the defences' noise); a seeded run is repeatable bit for bit on CPU.

Methods: DLG (Zhu, Liu and Han 2019, arXiv:1906.08935), iDLG's label recovery (Zhao, Mopuri and
Bilen 2020, arXiv:2001.02610), Inverting Gradients (Geiping, Bauermeister, Dröge and Moeller 2020,
arXiv:2003.14053), the batch label counts of Geng et al. 2021 (arXiv:2110.09074), and the defences
DLG evaluates (Gaussian noise, pruning) with DP-style clipping (Abadi et al. 2016).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlimaging.privacy._inversion import (
    Functional,
    check_gradients,
    check_labels,
    check_model,
    check_positive,
    check_range,
    check_seed,
    check_shape,
    cosine_distance,
    eval_mode,
    l2_distance,
    last_linear,
    progress_bar,
    total_variation,
)

__all__ = [
    "InversionResult",
    "ReconstructionQuality",
    "defence_curve",
    "defend_gradients",
    "dlg",
    "dlg_lenet",
    "idlg",
    "idlg_label",
    "inverting_gradients",
    "reconstruction_quality",
    "recover_labels",
    "shared_gradients",
]


@dataclass(frozen=True)
class InversionResult:
    """What a gradient inversion returns.

    Attributes
    ----------
    images
        Reconstructions ``(B, C, H, W)``, inside ``value_range``.
    labels
        Labels ``(B,)``: given, recovered (iDLG / Geng et al.) or the argmax of DLG's soft label.
    loss
        Gradient-matching loss of the kept reconstruction (L2 for DLG, cosine for Inverting
        Gradients, without the TV term).
    iterations
        Optimiser iterations run in the kept restart.
    restart
        Index of the kept restart (the one with the lowest ``loss``).
    history
        ``loss`` at each iteration of the kept restart.
    """

    images: torch.Tensor
    labels: torch.Tensor
    loss: float
    iterations: int
    restart: int
    history: tuple[float, ...]


@dataclass(frozen=True)
class ReconstructionQuality:
    """PSNR / SSIM of reconstructions against their best-matching originals.

    ``match[i]`` is the original assigned to reconstruction ``i``; ``psnr[i]`` and ``ssim[i]`` are
    measured against it. :meth:`as_dict` gives plain floats and lists (for ``metrics.json``).
    """

    psnr: np.ndarray
    ssim: np.ndarray
    match: np.ndarray

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnr))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean(self.ssim))

    def as_dict(self) -> dict[str, Any]:
        return {"psnr": [float(v) for v in self.psnr], "ssim": [float(v) for v in self.ssim],
                "match": [int(v) for v in self.match], "mean_psnr": self.mean_psnr, "mean_ssim": self.mean_ssim}


# --------------------------------------------------------------------------- the victim
def dlg_lenet(*, in_channels: int = 1, image_size: int = 28, num_classes: int = 10,
              generator: torch.Generator | None = None) -> nn.Sequential:
    r"""The victim network of DLG's experiments: three 5x5 convolutions with sigmoids, then one linear layer.

    Convolutions of 12 channels with strides 2, 2, 1 and padding 2, sigmoid activations (twice
    differentiable, unlike ReLU), a linear layer on the flattened features; every weight and bias
    drawn from :math:`\mathcal{U}(-0.5, 0.5)` as in DLG's code (Zhu et al. 2019, arXiv:1906.08935).

    Examples
    --------
    >>> net = dlg_lenet(image_size=28, generator=torch.Generator().manual_seed(0))
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    >>> float(min(p.detach().min() for p in net.parameters())) >= -0.5
    True
    """
    for value, name in ((in_channels, "in_channels"), (image_size, "image_size"), (num_classes, "num_classes")):
        check_positive(value, name, integer=True)
    side = math.ceil(math.ceil(image_size / 2) / 2)
    net = nn.Sequential(
        nn.Conv2d(in_channels, 12, 5, stride=2, padding=2), nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, stride=2, padding=2), nn.Sigmoid(),
        nn.Conv2d(12, 12, 5, stride=1, padding=2), nn.Sigmoid(),
        nn.Flatten(), nn.Linear(12 * side * side, num_classes),
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.rand(p.shape, generator=generator) - 0.5)
    return net


def shared_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    r"""The gradient a client shares for the batch ``(x, y)``: :math:`\nabla_\theta \frac{1}{B}\sum_b
    \mathrm{CE}(f_\theta(x_b), y_b)`, one tensor per ``model.parameters()``.

    Computed in eval mode without touching the model's ``.grad`` or flags.

    Examples
    --------
    >>> net = dlg_lenet(image_size=8, generator=torch.Generator().manual_seed(0))
    >>> grads = shared_gradients(net, torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1)),
    ...                          torch.tensor([3, 5]))
    >>> [tuple(g.shape) for g in grads][-2:]
    [(10, 48), (10,)]
    """
    check_model(model)
    if not isinstance(x, torch.Tensor) or x.ndim < 2 or not x.dtype.is_floating_point:
        raise ValueError(f"x must be a floating-point (B, C, ...) tensor, got {getattr(x, 'shape', type(x))}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x holds NaN or infinite values")
    with eval_mode(model):
        fn = Functional(model)
        with torch.no_grad():
            k = model(x[:1]).shape[-1]
        labels = check_labels(y, len(x), k)
        return tuple(g.detach() for g in fn.gradients(x.detach(), labels, create_graph=False))


# --------------------------------------------------------------------------- labels
def idlg_label(model: nn.Module, gradients: Sequence[torch.Tensor]) -> int:
    r"""The label of a single image from the shared gradient of the last linear layer (iDLG).

    For cross-entropy with softmax and one image, the last layer's weight gradient is
    :math:`\nabla_{W_i} \mathcal{L} = (p_i - \mathbb{1}[i = y])\, h`: every row is a multiple of the
    features :math:`h`, and the multiplier is negative only for the true class :math:`y`.
    The label is the row whose sign differs from all others (its projection on the largest row);
    with two classes, or when that is ambiguous, the row with the smallest sum (features
    :math:`h \ge 0` after a sigmoid or ReLU, the paper's argument). Zhao, Mopuri and Bilen 2020,
    "iDLG: Improved Deep Leakage from Gradients", arXiv:2001.02610.

    Examples
    --------
    >>> net = dlg_lenet(image_size=8, generator=torch.Generator().manual_seed(0))
    >>> x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    >>> [idlg_label(net, shared_gradients(net, x, torch.tensor([c]))) for c in (0, 4, 9)]
    [0, 4, 9]
    """
    check_model(model)
    grads = check_gradients(model, gradients)
    w = grads[last_linear(model)[0]].double()
    if w.shape[0] >= 3:
        proj = w @ w[int(w.norm(dim=1).argmax())]
        neg, pos = proj < 0, proj > 0
        if int(neg.sum()) == 1:
            return int(neg.nonzero()[0, 0])
        if int(pos.sum()) == 1:
            return int(pos.nonzero()[0, 0])
    return int(w.sum(dim=1).argmin())


def recover_labels(model: nn.Module, gradients: Sequence[torch.Tensor], *, shape: Sequence[int],
                   value_range: tuple[float, float] = (0.0, 1.0), seed: int = 0, probes: int = 64) -> torch.Tensor:
    r"""Labels of a batch of ``B`` images (``shape = (B, C, H, W)``) from the last layer's shared gradient.

    One image: :func:`idlg_label` (exact). A batch: the last layer's bias gradient is
    :math:`\partial_{b_i} \mathcal{L} = \bar p_i - n_i / B`, with :math:`\bar p_i` the batch-mean
    softmax probability of class :math:`i` and :math:`n_i` the number of images of class
    :math:`i`, so :math:`n_i \approx B (\hat p_i - \partial_{b_i} \mathcal{L})` where
    :math:`\hat p` is the mean softmax of the model over ``probes`` random images drawn uniformly
    in ``value_range`` (seeded by ``seed``). Without a bias, the weight-gradient row sums
    :math:`\sum_j \partial_{W_{ij}} \mathcal{L}` divided by the probes' mean feature sum
    :math:`\hat S = \sum_j h_j` replace it. The counts are then rounded to sum to ``B`` (take one
    from the class with the largest remaining estimate, ``B`` times): labels may repeat. Geng et
    al. 2021, "Towards General Deep Leakage in Federated Learning", arXiv:2110.09074; the
    estimate is exact when the model's output hardly depends on its input (an untrained network)
    and approximate for a trained one. Returned in increasing class order (the order of the images
    is not in the gradient).

    Examples
    --------
    >>> net = dlg_lenet(image_size=8, generator=torch.Generator().manual_seed(0))
    >>> x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    >>> recover_labels(net, shared_gradients(net, x, torch.tensor([7, 2, 5, 2])), shape=x.shape).tolist()
    [2, 2, 5, 7]
    """
    check_model(model)
    dims = check_shape(shape)
    lo, hi = check_range(value_range)
    check_seed(seed)
    check_positive(probes, "probes", integer=True)
    grads = check_gradients(model, gradients)
    if dims[0] == 1:
        return torch.tensor([idlg_label(model, grads)])
    w_index, b_index, fc = last_linear(model)
    features: list[torch.Tensor] = []
    hook = fc.register_forward_hook(lambda _m, inputs, _o: features.append(inputs[0].detach()))
    try:
        gen = torch.Generator().manual_seed(seed)
        with eval_mode(model), torch.no_grad():
            p_hat = torch.softmax(model(lo + (hi - lo) * torch.rand(probes, *dims[1:], generator=gen)), -1)
    finally:
        hook.remove()
    p_hat = p_hat.double().mean(0)
    if b_index is not None:
        delta = grads[b_index].double()
    else:
        delta = grads[w_index].double().sum(1) / features[0].double().sum(1).mean().clamp_min(1e-12)
    remaining = (dims[0] * (p_hat - delta)).clamp_min(0)
    counts = torch.zeros_like(remaining, dtype=torch.long)
    for _ in range(dims[0]):
        i = int(remaining.argmax())
        counts[i] += 1
        remaining[i] -= 1
    return torch.repeat_interleave(torch.arange(len(counts)), counts)


# --------------------------------------------------------------------------- attacks
def _setup(model: nn.Module, gradients: Any, shape: Any, labels: Any, iterations: Any, restarts: Any, lr: Any,
           value_range: Any, seed: Any) -> tuple[list[torch.Tensor], tuple[int, int, int, int], torch.Tensor | None,
                                                  int, tuple[float, float]]:
    check_model(model)
    grads = check_gradients(model, gradients)
    dims = check_shape(shape)
    check_positive(iterations, "iterations", integer=True)
    check_positive(restarts, "restarts", integer=True)
    check_positive(lr, "lr")
    lo_hi = check_range(value_range)
    check_seed(seed)
    num_classes = last_linear(model)[2].out_features
    with eval_mode(model), torch.no_grad():
        try:
            out = model(torch.zeros(1, *dims[1:]))
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"shape {dims} does not fit the model: {exc}") from None
    if out.ndim != 2 or out.shape[-1] != num_classes:
        raise ValueError(f"model must return (B, {num_classes}) logits for shape {dims}, got {tuple(out.shape)}")
    fixed = None if labels is None else check_labels(labels, dims[0], num_classes)
    return grads, dims, fixed, num_classes, lo_hi


def dlg(model: nn.Module, gradients: Sequence[torch.Tensor], *, shape: Sequence[int],
        labels: torch.Tensor | Sequence[int] | None = None, iterations: int = 100, restarts: int = 1,
        lr: float = 1.0, value_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
        progress: bool = False) -> InversionResult:
    r"""Deep Leakage from Gradients: a dummy image (and soft label) whose gradient matches the shared one.

    .. math::

        x^*, \ell^* = \arg\min_{x', \ell'} \sum_l \lVert \nabla_{\theta_l}
        \mathcal{L}(f_\theta(x'), \operatorname{softmax}(\ell')) - \nabla_{\theta_l}
        \mathcal{L}(f_\theta(x), y) \rVert_2^2

    minimised with L-BFGS (``lr``; 20 inner iterations per step, ``iterations`` steps) from
    :math:`x', \ell' \sim \mathcal{N}(0, 1)`, keeping the iterate with the lowest loss; ``labels``
    given (e.g. by :func:`idlg_label`, which :func:`idlg` does) fix the label instead of optimising
    it (iDLG). The image is unconstrained during the search and clamped to ``value_range`` at the
    end. Each of ``restarts`` draws a new start; the one with the lowest loss is kept. Zhu, Liu and
    Han 2019, "Deep Leakage from Gradients", arXiv:1906.08935.

    Parameters
    ----------
    model
        The network whose gradient was shared (read only).
    gradients
        The shared gradient, one tensor per ``model.parameters()`` (:func:`shared_gradients`).
    shape
        ``(B, C, H, W)`` of the batch to reconstruct.
    labels, iterations, restarts, lr, value_range, seed, progress
        Fixed labels ``(B,)`` or None (soft labels optimised), L-BFGS steps, random restarts, step
        size, valid intensities, seed of the starts, rich progress bar.

    Examples
    --------
    >>> net = dlg_lenet(image_size=8, generator=torch.Generator().manual_seed(0))
    >>> x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    >>> res = dlg(net, shared_gradients(net, x, torch.tensor([3])), shape=x.shape, labels=[3], iterations=4)
    >>> res.images.shape, res.loss < res.history[0]
    (torch.Size([1, 1, 8, 8]), True)
    """
    grads, dims, fixed, k, (lo, hi) = _setup(model, gradients, shape, labels, iterations, restarts, lr,
                                             value_range, seed)
    gen = torch.Generator().manual_seed(seed)
    best: tuple[float, torch.Tensor, torch.Tensor, int, int, list[float]] | None = None
    with eval_mode(model), progress_bar(restarts * iterations, progress, "DLG") as advance:
        fn = Functional(model)
        for r in range(restarts):
            x = torch.randn(dims, generator=gen).requires_grad_(True)
            soft = None if fixed is not None else torch.randn(dims[0], k, generator=gen).requires_grad_(True)
            run = _lbfgs(fn, grads, x, soft, fixed, iterations, lr, advance)
            if best is None or run[0] < best[0]:
                best = (run[0], run[1], run[2], run[3], r, run[4])
    assert best is not None
    loss, image, label, its, r, history = best
    return InversionResult(image.clamp(lo, hi), label, loss, its, r, tuple(history))


def _lbfgs(fn: Functional, target: list[torch.Tensor], x: torch.Tensor, soft: torch.Tensor | None,
           fixed: torch.Tensor | None, iterations: int, lr: float, advance: Any
           ) -> tuple[float, torch.Tensor, torch.Tensor, int, list[float]]:
    """One DLG restart: (best loss, its image, its labels, iterations run, loss history)."""
    params = [x] if soft is None else [x, soft]
    opt = torch.optim.LBFGS(params, lr=lr, max_iter=20, history_size=100, tolerance_grad=1e-10,
                            tolerance_change=1e-12)

    def labels_of(s: torch.Tensor | None) -> torch.Tensor:
        return fixed if s is None else torch.softmax(s, dim=-1)  # type: ignore[return-value]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = l2_distance(fn.gradients(x, labels_of(soft), create_graph=True), target)
        loss.backward()
        return loss

    def snapshot() -> tuple[torch.Tensor, torch.Tensor]:
        lab = fixed if soft is None else soft.detach().argmax(dim=-1)
        return x.detach().clone(), lab.clone()  # type: ignore[union-attr]

    best_loss, best_x, best_y, history, its = math.inf, *snapshot(), [], 0
    for _ in range(iterations):
        before = snapshot()
        value = float(opt.step(closure).detach())
        advance()
        if not math.isfinite(value):
            break
        history.append(value)
        its += 1
        if value < best_loss:
            best_loss, best_x, best_y = value, *before
        if value == 0.0 or (len(history) > 1 and history[-1] == history[-2]):
            break
    final = float(l2_distance(fn.gradients(x.detach(), labels_of(None if soft is None else soft.detach()),
                                           create_graph=False), target))
    if math.isfinite(final) and final < best_loss:
        best_loss, best_x, best_y = final, *snapshot()
    return best_loss, best_x, best_y, its, history


def idlg(model: nn.Module, gradients: Sequence[torch.Tensor], *, shape: Sequence[int], iterations: int = 100,
         restarts: int = 1, lr: float = 1.0, value_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
         progress: bool = False) -> InversionResult:
    r"""iDLG: :func:`dlg` on a single image with its label fixed by :func:`idlg_label`.

    Zhao, Mopuri and Bilen 2020, arXiv:2001.02610: knowing the label removes the soft label from
    the search, so the image converges faster and more reliably.

    Examples
    --------
    >>> net = dlg_lenet(image_size=8, generator=torch.Generator().manual_seed(0))
    >>> x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    >>> idlg(net, shared_gradients(net, x, torch.tensor([6])), shape=x.shape, iterations=2).labels.tolist()
    [6]
    """
    dims = check_shape(shape)
    if dims[0] != 1:
        raise ValueError(f"shape must describe one image for iDLG (B = 1), got B = {dims[0]}; use "
                         "inverting_gradients for batches")
    check_model(model)
    label = torch.tensor([idlg_label(model, gradients)])
    return dlg(model, gradients, shape=dims, labels=label, iterations=iterations, restarts=restarts, lr=lr,
               value_range=value_range, seed=seed, progress=progress)


def inverting_gradients(model: nn.Module, gradients: Sequence[torch.Tensor], *, shape: Sequence[int],
                        labels: torch.Tensor | Sequence[int] | None = None, iterations: int = 2000,
                        restarts: int = 1, lr: float = 0.1, tv_weight: float = 1e-4,
                        value_range: tuple[float, float] = (0.0, 1.0), signed: bool = True, seed: int = 0,
                        progress: bool = False) -> InversionResult:
    r"""Inverting Gradients: match the direction of the shared gradient, with a total-variation prior.

    .. math::

        x^* = \arg\min_{x' \in [a, b]^n} \; 1 - \frac{\langle \nabla_\theta \mathcal{L}(f_\theta(x'), y),
        \nabla_\theta \mathcal{L}(f_\theta(x), y) \rangle}{\lVert \nabla_\theta \mathcal{L}(f_\theta(x'), y)
        \rVert \, \lVert \nabla_\theta \mathcal{L}(f_\theta(x), y) \rVert} + \lambda_{TV}\, \mathrm{TV}(x')

    by Adam on the sign of the gradient (``signed``), learning rate ``lr`` divided by 10 at 3/8, 5/8
    and 7/8 of ``iterations``, from :math:`x' \sim \mathcal{N}(0, 1)` projected on the box
    :math:`[a, b]` = ``value_range`` after every step. ``labels`` None: recovered by
    :func:`recover_labels` (iDLG for one image, distinct labels for a batch). Of ``restarts`` starts
    the one with the lowest cosine loss (without TV) is kept. Geiping, Bauermeister, Dröge and
    Moeller 2020, "Inverting Gradients -- How easy is it to break privacy in federated learning?",
    arXiv:2003.14053.

    Examples
    --------
    >>> net = dlg_lenet(image_size=8, generator=torch.Generator().manual_seed(0))
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    >>> res = inverting_gradients(net, shared_gradients(net, x, torch.tensor([1, 4])), shape=x.shape,
    ...                           iterations=10)
    >>> res.labels.tolist(), res.images.shape, bool(res.images.min() >= 0)
    ([1, 4], torch.Size([2, 1, 8, 8]), True)
    """
    grads, dims, fixed, _, (lo, hi) = _setup(model, gradients, shape, labels, iterations, restarts, lr,
                                             value_range, seed)
    check_positive(tv_weight, "tv_weight", zero=True)
    if fixed is None:
        fixed = recover_labels(model, grads, shape=dims, value_range=(lo, hi), seed=seed)
    gen = torch.Generator().manual_seed(seed)
    milestones = sorted({max(1, int(iterations * f)) for f in (3 / 8, 5 / 8, 7 / 8)})
    best: tuple[float, torch.Tensor, int, list[float]] | None = None
    with eval_mode(model), progress_bar(restarts * iterations, progress, "Inverting Gradients") as advance:
        fn = Functional(model)
        for r in range(restarts):
            x = torch.randn(dims, generator=gen).clamp_(lo, hi).requires_grad_(True)
            opt = torch.optim.Adam([x], lr=lr)
            schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
            history: list[float] = []
            for _ in range(iterations):
                rec = cosine_distance(fn.gradients(x, fixed, create_graph=True), grads)
                loss = rec + tv_weight * total_variation(x) if tv_weight else rec
                (grad,) = torch.autograd.grad(loss, x)
                x.grad = grad.sign() if signed else grad
                opt.step()
                schedule.step()
                with torch.no_grad():
                    x.clamp_(lo, hi)
                history.append(float(rec.detach()))
                advance()
            final = float(cosine_distance(fn.gradients(x.detach(), fixed, create_graph=False), grads))
            if best is None or final < best[0]:
                best = (final, x.detach().clone(), r, history)
    assert best is not None
    return InversionResult(best[1], fixed.clone(), best[0], iterations, best[2], tuple(best[3]))


# --------------------------------------------------------------------------- quality
def reconstruction_quality(reconstructions: torch.Tensor, originals: torch.Tensor, *,
                           data_range: float = 1.0) -> ReconstructionQuality:
    r"""PSNR and SSIM of each reconstruction against the original it matches best.

    The batch order is not in a gradient, so reconstruction :math:`i` is compared with original
    :math:`\pi(i)`, :math:`\pi` maximising :math:`\sum_i \mathrm{PSNR}(\hat x_i, x_{\pi(i)})` (the
    Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`). PSNR and SSIM are
    :func:`mlimaging.metrics.psnr` / :func:`mlimaging.metrics.ssim` (scikit-image's defaults, a 7x7
    window or the largest odd window that fits smaller images).

    Examples
    --------
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> q = reconstruction_quality(x.flip(0), x)
    >>> q.match.tolist(), q.mean_psnr, round(q.mean_ssim, 6)
    ([1, 0], inf, 1.0)
    """
    from scipy.optimize import linear_sum_assignment

    from mlimaging.metrics import psnr, ssim

    for t, name in ((reconstructions, "reconstructions"), (originals, "originals")):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or not t.dtype.is_floating_point or t.numel() == 0:
            raise ValueError(f"{name} must be a non-empty floating-point (B, C, H, W) tensor, got "
                             f"{getattr(t, 'shape', type(t).__name__)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} holds NaN or infinite values")
    if reconstructions.shape != originals.shape:
        raise ValueError(f"reconstructions must have the shape of originals {tuple(originals.shape)}, got "
                         f"{tuple(reconstructions.shape)}")
    check_positive(data_range, "data_range")
    side = min(originals.shape[-2:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"originals must be at least 3 x 3 for SSIM, got {tuple(originals.shape[-2:])}")
    b = len(originals)
    rec = reconstructions.detach().double().cpu()
    ref = originals.detach().double().cpu()
    pairs_rec = rec[:, None].expand(b, b, *rec.shape[1:]).reshape(b * b, *rec.shape[1:])
    pairs_ref = ref[None].expand(b, b, *ref.shape[1:]).reshape(b * b, *ref.shape[1:])
    table = psnr(pairs_rec, pairs_ref, data_range=data_range).reshape(b, b).numpy()
    _, match = linear_sum_assignment(-np.minimum(table, 1e6))
    matched = ref[torch.as_tensor(match)]
    values = table[np.arange(b), match]
    ssims = ssim(rec, matched, data_range=data_range, win_size=win).numpy()
    return ReconstructionQuality(psnr=values, ssim=ssims, match=np.asarray(match))


# --------------------------------------------------------------------------- defences
def defend_gradients(gradients: Sequence[torch.Tensor], *, clip_norm: float | None = None, noise: float = 0.0,
                     topk: float | None = None, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    r"""The shared gradient after clipping, Gaussian noise and top-k sparsification (in that order).

    .. math::

        \tilde g = \operatorname{top}_k\!\left(g \min\!\left(1, \frac{C}{\lVert g \rVert_2}\right)
        + \mathcal{N}(0, \sigma^2 C^2 I)\right)

    - ``clip_norm`` :math:`C`: scale the whole gradient (all tensors together) to L2 norm at most
      :math:`C` (DP-SGD's clipping, Abadi et al. 2016, arXiv:1607.00133).
    - ``noise`` :math:`\sigma`: add Gaussian noise of standard deviation :math:`\sigma C` (the
      noise multiplier of DP-SGD) when ``clip_norm`` is given, else of absolute standard deviation
      :math:`\sigma` (DLG's noise defence, Zhu et al. 2019). Needs an explicit ``generator``.
    - ``topk``: keep, in every tensor, the ``ceil(topk * numel)`` entries of largest magnitude and
      zero the rest (DLG's gradient pruning); applied after the noise, so a DP guarantee survives
      it as post-processing and what travels stays sparse.

    All off (the defaults) returns copies of the input unchanged. Inputs are never modified.

    Examples
    --------
    >>> g = [torch.tensor([3.0, -4.0, 0.5, 0.0])]
    >>> defend_gradients(g, clip_norm=1.0)[0].tolist()  # norm 5.025 -> 1
    [0.5970..., -0.7960..., 0.0995..., 0.0]
    >>> defend_gradients(g, topk=0.5)[0].tolist()
    [3.0, -4.0, 0.0, 0.0]
    >>> n = defend_gradients(g, noise=0.1, generator=torch.Generator().manual_seed(0))[0]
    >>> bool((n - g[0]).abs().max() < 0.5)
    True
    """
    if isinstance(gradients, torch.Tensor) or not isinstance(gradients, Sequence) or not gradients:
        raise ValueError("gradients must be a non-empty sequence of tensors")
    for i, g in enumerate(gradients):
        if not isinstance(g, torch.Tensor) or not g.dtype.is_floating_point:
            raise ValueError(f"gradients[{i}] must be a floating-point tensor, got {type(g).__name__}")
        if not bool(torch.isfinite(g).all()):
            raise ValueError(f"gradients[{i}] holds NaN or infinite values")
    if clip_norm is not None:
        check_positive(clip_norm, "clip_norm")
    check_positive(noise, "noise", zero=True)
    if topk is not None:
        check_positive(topk, "topk")
        if topk > 1:
            raise ValueError(f"topk must be a fraction in (0, 1], got {topk!r}")
    if noise > 0 and not isinstance(generator, torch.Generator):
        raise ValueError("generator must be a torch.Generator when noise > 0 (never the global random state)")
    out = [g.detach().clone() for g in gradients]
    if clip_norm is not None:
        norm = math.sqrt(sum(float(g.double().square().sum()) for g in out))
        scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
        out = [g * scale for g in out]
    if noise > 0:
        std = noise * (clip_norm if clip_norm is not None else 1.0)
        out = [g + std * torch.randn(g.shape, generator=generator, dtype=g.dtype) for g in out]
    if topk is not None and topk < 1:
        sparse = []
        for g in out:
            k = math.ceil(topk * g.numel())
            flat = g.reshape(-1)
            kept = torch.zeros_like(flat)
            idx = torch.topk(flat.abs(), k, sorted=False).indices
            kept[idx] = flat[idx]
            sparse.append(kept.reshape(g.shape))
        out = sparse
    return tuple(out)


_DEFENCES = {"noise": "noise", "clip": "clip_norm", "topk": "topk"}


def defence_curve(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, defence: str,
                  strengths: Sequence[float | None], method: str = "dlg", seed: int = 0,
                  base: Mapping[str, float] | None = None, data_range: float = 1.0, progress: bool = False,
                  **attack_options: Any) -> list[dict[str, Any]]:
    r"""Reconstruction quality against the strength of one defence: the curve of the privacy experiment.

    For each value :math:`s` of ``strengths`` the shared gradient of ``(x, y)`` goes through
    :func:`defend_gradients` with ``defence`` (``"noise"``: :math:`\sigma`, ``"clip"``:
    :math:`C`, ``"topk"``: fraction kept) set to :math:`s` (None: no defence), on top of the fixed
    settings ``base`` (e.g. ``{"clip_norm": 1.0}`` for DP noise), then ``method`` (``"dlg"``, with the
    label recovered by iDLG for one image and the true labels given for a batch, or ``"ig"``,
    :func:`inverting_gradients` with labels recovered) reconstructs the batch with
    ``attack_options`` and the same ``seed``. Rows: ``defence, strength, psnr, ssim, labels_correct,
    loss`` (mean PSNR / SSIM by :func:`reconstruction_quality`, fraction of labels recovered).

    Clipping alone defeats DLG only through the scale: its L2 objective cannot match a rescaled
    gradient with the true label, while the cosine distance of ``"ig"`` ignores the scale, so clip
    with ``method="ig"`` (measured on a 28x28 digit, DLG's LeNet: DLG 79 dB unclipped, 3 dB clipped
    to 1; Inverting Gradients 15.5 and 16.8 dB).

    Examples
    --------
    >>> net = dlg_lenet(image_size=8, generator=torch.Generator().manual_seed(0))
    >>> x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    >>> rows = defence_curve(net, x, torch.tensor([2]), defence="noise", strengths=[None, 0.5], iterations=1)
    >>> rows[0]["psnr"] > rows[1]["psnr"]
    True
    """
    check_model(model)
    if defence not in _DEFENCES:
        raise ValueError(f"defence must be one of {', '.join(_DEFENCES)}, got {defence!r}")
    if method not in ("dlg", "ig"):
        raise ValueError(f"method must be 'dlg' or 'ig', got {method!r}")
    if isinstance(strengths, str) or not isinstance(strengths, Sequence) or not strengths:
        raise ValueError(f"strengths must be a non-empty sequence of numbers (None: no defence), got {strengths!r}")
    base = dict(base or {})
    unknown = set(base) - set(_DEFENCES.values())
    if unknown:
        raise ValueError(f"base must only set {', '.join(_DEFENCES.values())}, got {sorted(unknown)}")
    check_seed(seed)
    clean = shared_gradients(model, x, y)
    rows = []
    with progress_bar(len(strengths), progress, f"defence {defence}") as advance:
        for i, s in enumerate(strengths):
            options = dict(base)
            if s is not None:
                options[_DEFENCES[defence]] = s
            noisy = defend_gradients(clean, **options, generator=torch.Generator().manual_seed(seed + 7919 * i))
            if method == "dlg":
                labels = recover_labels(model, noisy, shape=x.shape) if len(x) == 1 else y
                res = dlg(model, noisy, shape=x.shape, labels=labels, seed=seed, **attack_options)
            else:
                res = inverting_gradients(model, noisy, shape=x.shape, seed=seed, **attack_options)
            q = reconstruction_quality(res.images, x, data_range=data_range)
            correct = float(np.mean(np.sort(res.labels.numpy()) == np.sort(y.reshape(-1).numpy())))
            rows.append({"defence": defence, "strength": s, "psnr": q.mean_psnr, "ssim": q.mean_ssim,
                         "labels_correct": correct, "loss": res.loss})
            advance()
    return rows

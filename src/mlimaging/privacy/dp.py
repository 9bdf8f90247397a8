r"""DP-SGD: differentially private training by per-sample clipping and Gaussian noise.

Abadi M. et al. (2016). Deep Learning with Differential Privacy. CCS. arXiv:1607.00133.

Each step draws a batch :math:`B_t` by Poisson sampling (every sample independently with
probability :math:`q`), computes every sample's gradient :math:`g_i`, clips it to norm
:math:`C`, sums, adds Gaussian noise and divides by the *expected* batch size :math:`qN`:

.. math::

    \tilde g_t = \frac{1}{qN} \Big( \sum_{i \in B_t} g_i \min\big(1, \tfrac{C}{\lVert g_i
    \rVert_2 + 10^{-6}}\big) + \mathcal N(0, \sigma^2 C^2 I) \Big),

then the optimiser steps with :math:`\tilde g_t` (the :math:`10^{-6}` guards a zero
gradient, as in Opacus). The privacy spent after :math:`T` such steps is that of the
sampled Gaussian mechanism composed :math:`T` times (:mod:`mlimaging.privacy.accounting`).

How this module matches Opacus (the anchor): the same clipping formula, the same divisor
(``expected_batch_size``), noise drawn per parameter in the optimiser's parameter order;
with the same noise tensors one step gives the same parameters (tested). It differs in how
the per-sample quantities are computed: linear layers use ghost norms and a reweighted
matrix product, never materialising :math:`B \times` out :math:`\times` in gradients
(:mod:`mlimaging.privacy._grad_sample`), and the parameter gradients of the plain backward
are never computed. BatchNorm (which mixes the samples of a batch, so a sample's gradient
depends on the others and clipping bounds nothing) is an error at :func:`make_private`, not
at the first step, or is replaced by GroupNorm with ``fix_model=True``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mlimaging.privacy._grad_sample import (
    Tape,
    backprops,
    clipped_sums,
    grad_samples,
    trainable_layers,
    vmap_grad_samples,
)
from mlimaging.privacy._poisson import EmptyBatchCollate, PoissonBatchSampler
from mlimaging.training._data import split_batch
from mlimaging.training.step import TrainStep

__all__ = ["DPSGDStep", "PoissonBatchSampler", "PrivateTraining", "check_model", "make_private",
           "per_sample_gradients", "to_groupnorm"]

_BATCHNORM = (nn.modules.batchnorm._BatchNorm,)  # BatchNorm1d/2d/3d, SyncBatchNorm, LazyBatchNorm
_INSTANCENORM = (nn.modules.instancenorm._InstanceNorm,)


# ---------------------------------------------------------------------------------------- checks
def check_model(model: nn.Module) -> None:
    """Raise ``ValueError`` naming every layer that mixes the samples of a batch.

    BatchNorm of any kind normalises with batch statistics (and updates running statistics
    from them); an InstanceNorm with ``track_running_stats=True`` updates running statistics
    from the batch. Either way one sample's gradient depends on the others and per-sample
    clipping no longer bounds a sample's influence.

    Examples
    --------
    >>> from torch import nn
    >>> check_model(nn.Sequential(nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4)))
    >>> check_model(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)))
    Traceback (most recent call last):
    ...
    ValueError: model has layers that mix the samples of a batch, which DP-SGD cannot clip per sample: 1 (BatchNorm2d) mixes samples through batch statistics; pass fix_model=True to replace them (BatchNorm -> GroupNorm, InstanceNorm without running statistics)
    """
    bad = []
    for name, m in model.named_modules():
        if isinstance(m, _BATCHNORM):
            bad.append(f"{name or 'model'} ({type(m).__name__}) mixes samples through batch statistics")
        elif isinstance(m, _INSTANCENORM) and m.track_running_stats:
            bad.append(f"{name or 'model'} ({type(m).__name__}) tracks running statistics of the batch")
    if bad:
        raise ValueError("model has layers that mix the samples of a batch, which DP-SGD cannot clip per sample: "
                         + "; ".join(bad) + "; pass fix_model=True to replace them (BatchNorm -> GroupNorm, "
                         "InstanceNorm without running statistics)")


def _groups(channels: int, max_groups: int = 32) -> int:
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


def to_groupnorm(model: nn.Module) -> nn.Module:
    r"""Replace (in place) every BatchNorm by GroupNorm, and drop InstanceNorm's running statistics.

    A BatchNorm over :math:`C` channels becomes ``GroupNorm(G, C, affine=bn.affine)`` with
    :math:`G` the largest divisor of :math:`C` not above 32 (Wu & He 2018, arXiv:1803.08494,
    use 32 groups; Opacus uses ``min(32, C)``, which fails when 32 does not divide :math:`C`).
    The new layer starts at :math:`\gamma = 1, \beta = 0`, on the BatchNorm's device and
    dtype. An InstanceNorm with ``track_running_stats=True`` becomes the same layer without
    them (it then normalises with each sample's own statistics in evaluation too).

    Examples
    --------
    >>> from torch import nn
    >>> net = to_groupnorm(nn.Sequential(nn.Conv2d(1, 48, 3), nn.BatchNorm2d(48)))
    >>> type(net[1]).__name__, net[1].num_groups, net[1].num_channels
    ('GroupNorm', 24, 48)
    """
    for name, child in list(model.named_children()):
        if isinstance(child, _BATCHNORM):
            ref = next(iter(child.parameters()), None)
            ref = ref if ref is not None else next(iter(child.buffers()), None)
            new: nn.Module = nn.GroupNorm(_groups(child.num_features), child.num_features, eps=child.eps,
                                          affine=child.affine)
            if ref is not None and not isinstance(ref, nn.parameter.UninitializedTensorMixin):
                new = new.to(device=ref.device, dtype=ref.dtype)
            setattr(model, name, new)
        elif isinstance(child, _INSTANCENORM) and child.track_running_stats:
            new = type(child)(child.num_features, eps=child.eps, momentum=child.momentum, affine=child.affine,
                              track_running_stats=False)
            if child.affine:
                new.load_state_dict({"weight": child.weight.detach(), "bias": child.bias.detach()})
            setattr(model, name, new)
        else:
            to_groupnorm(child)
    return model


def _reduction_scale(loss: Any, n: int) -> float:
    reduction = getattr(loss, "reduction", "mean")
    if reduction == "sum":
        return 1.0
    if reduction == "mean":
        return float(n)
    raise ValueError(f"loss must reduce to the batch mean or sum, got reduction={reduction!r}")


def _check_batch(x: Any, y: Any) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 1:
        raise ValueError(f"x must be a batch tensor (B, ...), got {type(x).__name__}")
    if not isinstance(y, torch.Tensor) or y.ndim < 1 or len(y) != len(x):
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be a tensor with the batch size of x ({len(x)}) first, got {got}")


# ---------------------------------------------------------------------------------------- gradients
def per_sample_gradients(model: nn.Module, loss: Callable[[Any, Any], torch.Tensor], x: torch.Tensor,
                         y: torch.Tensor, *, method: str = "auto") -> dict[str, torch.Tensor]:
    r"""Gradient of each sample's loss: :math:`g_i = \nabla_\theta\, \ell(f_\theta(x_i), y_i)`.

    Parameters
    ----------
    model
        Any module whose forward treats samples independently (no BatchNorm in training mode).
    loss
        ``(output, target) -> scalar`` reducing by the batch mean (the default of torch losses)
        or by the sum (a module with ``reduction="sum"``).
    x, y
        A batch ``(B, ...)`` and its targets ``(B, ...)``.
    method
        ``"hooks"``: one forward and one backward to the layers' outputs, then closed forms per
        layer (Linear, Conv1d/2d, GroupNorm, LayerNorm, InstanceNorm, Embedding; see
        :mod:`mlimaging.privacy._grad_sample`); ``"vmap"``: ``torch.func.vmap(grad(...))`` over
        the samples, for any layer; ``"auto"`` (default): hooks when every trainable layer has a
        rule, else vmap.

    Returns
    -------
    dict
        ``{parameter name: (B, *parameter.shape)}`` for every parameter with ``requires_grad``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(3, 2)
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.randn(4, 3, generator=g), torch.tensor([0, 1, 1, 0])
    >>> gs = per_sample_gradients(net, nn.CrossEntropyLoss(), x, y)
    >>> gs["weight"].shape
    torch.Size([4, 2, 3])
    >>> net.zero_grad(); nn.CrossEntropyLoss()(net(x), y).backward()
    >>> torch.allclose(gs["weight"].mean(0), net.weight.grad, atol=1e-6)
    True
    """
    if method not in ("auto", "hooks", "vmap"):
        raise ValueError(f"method must be 'auto', 'hooks' or 'vmap', got {method!r}")
    if not callable(loss):
        raise ValueError(f"loss must be a callable (output, target) -> scalar tensor, got {type(loss).__name__}")
    _check_batch(x, y)
    layers, unsupported = trainable_layers(model)
    if method == "hooks" and unsupported:
        raise ValueError(f"method='hooks' has no per-sample rule for {', '.join(unsupported)}; use method='vmap'")
    if method == "vmap" or (method == "auto" and unsupported):
        return vmap_grad_samples(model, loss, x, y)[0]
    with Tape(layers) as tape:
        out = model(x)
    records = backprops(tape, loss(out, y) * _reduction_scale(loss, len(x)))
    return grad_samples(records)


def _seed(seed: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, stream]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


class DPSGDStep(TrainStep):
    r"""One DP-SGD step for :func:`~mlimaging.training.fit`: clip per sample, sum, add noise, average, step.

    .. math::

        \tilde g = \frac{1}{qN}\Big(\sum_{i \in B} g_i \min\big(1, \tfrac{C}{\lVert g_i \rVert + 10^{-6}}\big)
        + \mathcal N(0, \sigma^2 C^2 I)\Big)

    A logical batch larger than ``max_physical_batch_size`` is processed in chunks whose
    clipped sums add up (virtual steps: the same update, bounded memory); the noise and the
    optimiser step come once per logical batch, as does the accountant's step. An empty
    batch (Poisson sampling allows it) still adds noise and steps.

    Parameters
    ----------
    loss
        ``(output, target) -> scalar`` (batch mean, or ``reduction="sum"``); default cross-entropy.
    noise_multiplier
        :math:`\sigma \ge 0`.
    max_grad_norm
        :math:`C > 0`.
    expected_batch_size
        The divisor :math:`qN`.
    max_physical_batch_size
        Most samples per forward/backward (``None``: the whole batch).
    accountant
        Object with ``step(*, noise_multiplier, sample_rate)`` and ``state_dict``/``load_state_dict``
        (:mod:`mlimaging.privacy.accounting`), stepped once per call; needs ``sample_rate``.
    sample_rate
        :math:`q`, given to the accountant.
    sampler
        The :class:`PoissonBatchSampler` of the loader; its generator is saved in :meth:`state_dict`.
    seed
        Seed of the noise generator.
    method
        Per-sample gradient method (see :func:`per_sample_gradients`).

    Logs ``clipped_fraction`` (share of samples whose norm exceeded :math:`C`) with each step.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(3, 2)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> step = DPSGDStep(noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=8, seed=0)
    >>> g = torch.Generator().manual_seed(0)
    >>> loss, logs = step(net, (torch.randn(8, 3, generator=g), torch.zeros(8, dtype=torch.long)), optimizer=opt)
    >>> sorted(logs), step.steps
    (['clipped_fraction'], 1)
    """

    def __init__(self, *, loss: Callable[[Any, Any], torch.Tensor] | None = None, noise_multiplier: float,
                 max_grad_norm: float = 1.0, expected_batch_size: float, max_physical_batch_size: int | None = None,
                 accountant: Any = None, sample_rate: float | None = None, sampler: PoissonBatchSampler | None = None,
                 seed: int = 0, method: str = "auto") -> None:
        self.loss = nn.CrossEntropyLoss() if loss is None else loss
        if not callable(self.loss):
            raise ValueError(f"loss must be a callable (output, target) -> scalar tensor, got {type(loss).__name__}")
        _reduction_scale(self.loss, 1)
        self.noise_multiplier = _real(noise_multiplier, "noise_multiplier", low=0.0)
        self.max_grad_norm = _real(max_grad_norm, "max_grad_norm", low=0.0, strict=True)
        self.expected_batch_size = _real(expected_batch_size, "expected_batch_size", low=0.0, strict=True)
        if max_physical_batch_size is not None:
            max_physical_batch_size = _int(max_physical_batch_size, "max_physical_batch_size", 1)
        self.max_physical_batch_size = max_physical_batch_size
        if accountant is not None and sample_rate is None:
            raise ValueError("an accountant needs the sample_rate q of the batches")
        self.sample_rate = None if sample_rate is None else _real(sample_rate, "sample_rate", low=0.0, strict=True)
        if method not in ("auto", "hooks", "vmap"):
            raise ValueError(f"method must be 'auto', 'hooks' or 'vmap', got {method!r}")
        self.method, self.accountant, self.sampler = method, accountant, sampler
        self.generator = torch.Generator().manual_seed(_seed(_int(seed, "seed", 0), 1))
        self.steps = 0
        self.last_output: Any = None
        self._plan: tuple[int, list, bool] | None = None

    def _layers(self, model: nn.Module) -> tuple[list, bool]:
        if self._plan is None or self._plan[0] != id(model):
            if isinstance(model, nn.parallel.DistributedDataParallel):
                raise ValueError("DPSGDStep does not run under DistributedDataParallel (torchrun); train in one process")
            check_model(model)
            layers, unsupported = trainable_layers(model)
            if self.method == "hooks" and unsupported:
                raise ValueError(f"method='hooks' has no per-sample rule for {', '.join(unsupported)}")
            self._plan = (id(model), layers, self.method == "vmap" or bool(unsupported))
        return self._plan[1], self._plan[2]

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if grad_clip is not None:
            raise ValueError("grad_clip clips the batch gradient; DP-SGD clips each sample's gradient to "
                             "max_grad_norm instead: leave grad_clip=None")
        x, y = split_batch(batch)
        _check_batch(x, y)
        layers, use_vmap = self._layers(model)
        named = {id(p): k for k, p in model.named_parameters() if p.requires_grad}
        params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        if any(id(p) not in named for p in params):
            raise ValueError("optimizer holds parameters that are not the model's")
        n = len(x)
        chunk = self.max_physical_batch_size or max(n, 1)
        sums: dict[str, torch.Tensor] = {}
        loss_sum = x.new_zeros((), dtype=torch.float64)
        clipped = 0
        outputs = []
        for start in range(0, n, chunk):
            xb, yb = x[start:start + chunk], y[start:start + chunk]
            part, norms, losses, out = self._clipped_part(model, layers, use_vmap, xb, yb)
            for k, v in part.items():
                sums[k] = sums[k] + v if k in sums else v
            loss_sum = loss_sum + losses
            clipped += int((norms > self.max_grad_norm).sum())
            outputs.append(out)
        std = self.noise_multiplier * self.max_grad_norm
        for p in params:
            total = sums.get(named[id(p)])
            total = torch.zeros_like(p) if total is None else total.reshape(p.shape)
            if std > 0:
                noise = torch.normal(0.0, std, p.shape, generator=self.generator, dtype=total.dtype)
                total = total + noise.to(total.device)
            p.grad = (total / self.expected_batch_size).to(p.dtype)
        optimizer.step()
        if self.accountant is not None:
            self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)
        self.steps += 1
        self.last_output = torch.cat(outputs) if outputs else None
        loss = (loss_sum / max(n, 1)).to(x.dtype if x.is_floating_point() else torch.float32)
        return loss, {"clipped_fraction": torch.tensor(clipped / max(n, 1))}

    def _clipped_part(self, model: nn.Module, layers: list, use_vmap: bool, x: torch.Tensor,
                      y: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        n, c = len(x), self.max_grad_norm
        if use_vmap:
            grads, losses = vmap_grad_samples(model, self.loss, x, y)
            norms = torch.stack([g.reshape(n, -1).pow(2).sum(1) for g in grads.values()]).sum(0).sqrt()
            factor = (c / (norms + 1e-6)).clamp(max=1.0)
            sums = {k: torch.einsum("n,n...->...", factor, g) for k, g in grads.items()}
            with torch.no_grad():
                out = model(x).detach()
            return sums, norms, losses.detach().double().sum(), out
        with Tape(layers) as tape:
            out = model(x)
        value = self.loss(out, y)
        scale = _reduction_scale(self.loss, n)
        records = backprops(tape, value * scale)
        sums, norms = clipped_sums(records, c, n, x.device)
        return sums, norms, value.detach().double() * scale, out.detach()

    def validation_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """``loss(model(x), y)`` of one batch."""
        x, y = split_batch(batch)
        return self.loss(model(x), y)

    def state_dict(self) -> dict[str, Any]:
        """Noise generator, step count, the sampler's generator and the accountant (``weights_only``-safe)."""
        state: dict[str, Any] = {"generator": self.generator.get_state(), "steps": self.steps}
        if self.sampler is not None:
            state["sampler"] = self.sampler.state_dict()
        if self.accountant is not None:
            state["accountant"] = self.accountant.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"].cpu().to(torch.uint8))
        self.steps = int(state["steps"])
        if self.sampler is not None and "sampler" in state:
            self.sampler.load_state_dict(state["sampler"])
        if self.accountant is not None and "accountant" in state:
            self.accountant.load_state_dict(state["accountant"])


# ---------------------------------------------------------------------------------------- make_private
@dataclass
class PrivateTraining:
    """What :func:`make_private` returns: everything :func:`~mlimaging.training.fit` needs.

    ``model``, ``optimizer`` (instance or factory), ``train_data`` (the Poisson DataLoader),
    ``step`` (:class:`DPSGDStep`) and ``callbacks`` (the ε logger) go to ``fit``;
    ``noise_multiplier``, ``sample_rate``, ``steps_per_epoch``, ``delta`` and ``accountant``
    describe the privacy. :meth:`fit` calls ``fit`` with them.
    """

    model: nn.Module
    optimizer: Any
    train_data: DataLoader
    step: DPSGDStep
    callbacks: list[Any]
    noise_multiplier: float
    sample_rate: float
    steps_per_epoch: int
    delta: float
    accountant: Any
    epochs: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def fit_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of :func:`~mlimaging.training.fit` (``callbacks`` given here are appended)."""
        callbacks = [*self.callbacks, *overrides.pop("callbacks", ())]
        kwargs: dict[str, Any] = {"step": self.step, "optimizer": self.optimizer, "callbacks": callbacks}
        if self.epochs is not None:
            kwargs["epochs"] = self.epochs
        kwargs.update(overrides)
        if "epochs" not in kwargs:
            raise ValueError("epochs is needed: pass it to make_private or to fit")
        return kwargs

    def fit(self, val_data: Any = None, **kwargs: Any) -> Any:
        """``fit(model, train_data, val_data, step=..., optimizer=..., epochs=..., callbacks=..., **kwargs)``."""
        from mlimaging.training import fit

        return fit(self.model, self.train_data, val_data, **self.fit_kwargs(**kwargs))

    def epsilon(self, delta: float | None = None) -> float:
        """ε spent so far at ``delta`` (default: the target δ)."""
        return float(self.accountant.get_epsilon(self.delta if delta is None else delta))


def make_private(model: nn.Module, optimizer: Any, dataset: Any, *, batch_size: int,
                 noise_multiplier: float | None = None, target_epsilon: float | None = None,
                 target_delta: float = 1e-5, max_grad_norm: float = 1.0, epochs: int | None = None,
                 max_physical_batch_size: int | None = None, accountant: str = "rdp", fix_model: bool = False,
                 loss: Callable[[Any, Any], torch.Tensor] | None = None, seed: int = 0,
                 num_workers: int = 0) -> PrivateTraining:
    r"""Set up DP-SGD training of ``model`` on ``dataset`` through :func:`~mlimaging.training.fit`.

    Batches are drawn by Poisson sampling with rate :math:`q = b / N` (``batch_size`` is the
    expected batch size), :math:`\lceil N / b \rceil` batches per epoch; each step is a
    :class:`DPSGDStep`. With ``target_epsilon`` the noise multiplier is the smallest
    :math:`\sigma` whose ε after ``epochs`` epochs is at most ``target_epsilon`` at
    ``target_delta`` (:func:`mlimaging.privacy.accounting.noise_multiplier_for`).

    Parameters
    ----------
    model
        The network; checked for layers that mix samples (:func:`check_model`), or, with
        ``fix_model=True``, converted by :func:`to_groupnorm` (in place).
    optimizer
        An optimizer instance on ``model``'s parameters or a factory ``params -> Optimizer``.
        An instance is rebuilt with its class and defaults when ``fix_model`` replaced layers.
    dataset
        A map-style dataset of ``(input, target)`` items.
    batch_size
        Expected logical batch size :math:`qN` (also the averaging divisor).
    noise_multiplier, target_epsilon
        Exactly one: :math:`\sigma`, or the ε to reach after ``epochs`` epochs.
    target_delta
        δ of the guarantee (and of the logged ε).
    max_grad_norm
        Clipping norm :math:`C`.
    epochs
        Needed with ``target_epsilon``; otherwise optional (kept for :meth:`PrivateTraining.fit`).
    max_physical_batch_size
        Memory bound of one forward/backward (virtual steps).
    accountant
        ``"rdp"`` or ``"prv"``.
    fix_model
        Replace BatchNorm by GroupNorm instead of raising.
    loss
        Training loss, default ``nn.CrossEntropyLoss()``.
    seed
        Seeds the batch sampler and the noise (separate streams).
    num_workers
        DataLoader worker processes.

    Returns
    -------
    PrivateTraining

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g); y = (x[:, 0] > 0).long()
    >>> private = make_private(nn.Linear(2, 2), lambda p: torch.optim.SGD(p, lr=0.5), TensorDataset(x, y),
    ...                        batch_size=50, noise_multiplier=1.0, epochs=2)
    >>> private.sample_rate, private.steps_per_epoch
    (0.25, 4)
    >>> h = private.fit(progress=False, metrics=())
    >>> len(h), 0 < private.epsilon() < 10
    (2, True)
    """
    from mlimaging.privacy.accounting import EpsilonCallback, make_accountant, noise_multiplier_for

    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")) or isinstance(dataset, DataLoader):
        raise ValueError(f"dataset must be a map-style Dataset (Poisson sampling draws its indices), "
                         f"got {type(dataset).__name__}")
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset is empty; expected at least one sample")
    batch_size = _int(batch_size, "batch_size", 1)
    if batch_size > n:
        raise ValueError(f"batch_size must be at most the dataset size {n}, got {batch_size}")
    if (noise_multiplier is None) == (target_epsilon is None):
        raise ValueError("give exactly one of noise_multiplier and target_epsilon (with epochs)")
    if epochs is not None:
        epochs = _int(epochs, "epochs", 1)
    target_delta = _real(target_delta, "target_delta", low=0.0, strict=True)
    if target_delta >= 1:
        raise ValueError(f"target_delta must be in (0, 1), got {target_delta!r}")
    max_grad_norm = _real(max_grad_norm, "max_grad_norm", low=0.0, strict=True)
    seed = _int(seed, "seed", 0)
    if fix_model:
        before = {id(p) for p in model.parameters()}
        to_groupnorm(model)
        changed = before != {id(p) for p in model.parameters()}
        if changed and isinstance(optimizer, torch.optim.Optimizer):
            if len(optimizer.param_groups) != 1:
                raise ValueError("fix_model replaced layers and the optimizer has several parameter groups; "
                                 "pass an optimizer factory params -> Optimizer instead")
            optimizer = type(optimizer)([p for p in model.parameters() if p.requires_grad], **optimizer.defaults)
    check_model(model)
    q = batch_size / n
    steps_per_epoch = math.ceil(n / batch_size)
    if target_epsilon is not None:
        if epochs is None:
            raise ValueError("target_epsilon needs epochs (the number of epochs the budget must cover)")
        target_epsilon = _real(target_epsilon, "target_epsilon", low=0.0, strict=True)
        noise_multiplier = noise_multiplier_for(target_epsilon, target_delta, q, epochs * steps_per_epoch,
                                                accountant=accountant)
    noise_multiplier = _real(noise_multiplier, "noise_multiplier", low=0.0)
    acct = make_accountant(accountant)
    sampler = PoissonBatchSampler(n, q, steps=steps_per_epoch, seed=_seed(seed, 0))
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=EmptyBatchCollate(dataset),
                        num_workers=_int(num_workers, "num_workers", 0))
    step = DPSGDStep(loss=loss, noise_multiplier=noise_multiplier, max_grad_norm=max_grad_norm,
                     expected_batch_size=q * n, max_physical_batch_size=max_physical_batch_size,
                     accountant=acct, sample_rate=q, sampler=sampler, seed=seed)
    return PrivateTraining(model=model, optimizer=optimizer, train_data=loader, step=step,
                           callbacks=[EpsilonCallback(acct, delta=target_delta)],
                           noise_multiplier=float(noise_multiplier), sample_rate=q, steps_per_epoch=steps_per_epoch,
                           delta=target_delta, accountant=acct, epochs=epochs)


def _int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _real(value: Any, name: str, *, low: float, strict: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if not ok or (float(value) <= low if strict else float(value) < low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low:g}, got {value!r}")
    return float(value)



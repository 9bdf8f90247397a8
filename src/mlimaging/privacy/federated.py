r"""Federated learning in simulation: FedSGD, FedAvg and FedProx over partitioned clients.

Each round the server samples a fraction of the clients, each trains a copy of the global
model on its own data through :func:`mlimaging.training.fit`, and the server replaces the global
weights by the sample-weighted mean of the client weights (optionally computed by secure
aggregation, :func:`mlimaging.privacy.smpc.secure_sum`, so that only the sum is revealed).
:func:`partition` makes IID and non-IID client splits.
"""

from __future__ import annotations

import copy
import math
import numbers
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from mlimaging.privacy._partition import (
    as_dataset,
    partition,
    partition_summary,
    plot_partition,
)
from mlimaging.training import SupervisedStep, evaluate, fit, load_checkpoint, save_checkpoint
from mlimaging.training._data import split_batch

__all__ = ["FLHistory", "ProximalStep", "fedavg", "fedsgd", "partition", "partition_summary",
           "plot_partition", "rounds_to_accuracy"]


@dataclass
class FLHistory:
    """Per-round record of a federated run (one entry per round in every list).

    Attributes
    ----------
    round
        Round numbers 1, 2, ...
    accuracy, loss
        Test accuracy (fraction) and mean test loss of the global model after the round
        (``None`` without ``test_data``).
    train_loss
        Sample-weighted mean of the selected clients' last-epoch training losses.
    clients
        Indices of the clients selected in the round.
    seconds
        Wall time of the round's local training and aggregation (evaluation excluded).
    aggregate_seconds
        The part of ``seconds`` spent aggregating (plain weighted mean or secure sum).
    bytes
        Bytes communicated in the round (see :func:`fedavg`).

    Examples
    --------
    >>> h = FLHistory(round=[1, 2], accuracy=[0.5, 0.75], loss=[0.9, 0.6], train_loss=[1.0, 0.7],
    ...               clients=[[0, 2], [1, 2]], seconds=[0.1, 0.1], bytes=[80, 80])
    >>> h.to_rows()[1]["accuracy"], len(h)
    (0.75, 2)
    """

    round: list[int] = field(default_factory=list)
    accuracy: list[float | None] = field(default_factory=list)
    loss: list[float | None] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    clients: list[list[int]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    aggregate_seconds: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.round)

    def to_rows(self) -> list[dict[str, Any]]:
        """One dict per round: round, accuracy, loss, train_loss, clients (count), seconds,
        aggregate_seconds, bytes (a missing train_loss or aggregate_seconds is ``None``)."""
        n = len(self.round)

        def col(values: list) -> list:
            return list(values) + [None] * (n - len(values))

        return [dict(round=r, accuracy=a, loss=lo, train_loss=t, clients=None if c is None else len(c), seconds=s, aggregate_seconds=g,
                     bytes=b)
                for r, a, lo, t, c, s, g, b in zip(self.round, col(self.accuracy), col(self.loss),
                                                   col(self.train_loss), col(self.clients), col(self.seconds),
                                                   col(self.aggregate_seconds), col(self.bytes), strict=True)]


def rounds_to_accuracy(history: FLHistory, target: float) -> int | None:
    r"""The first round whose test accuracy reaches ``target``: :math:`\min\{t : a_t \ge \tau\}`.

    The measure of McMahan et al. (2017), Table 2 (rounds to reach a target accuracy).

    Parameters
    ----------
    history
        A :class:`FLHistory` recorded with ``test_data``.
    target
        :math:`\tau \in [0, 1]`.

    Returns
    -------
    int or None
        The round number, or ``None`` if no round reached the target.

    References
    ----------
    McMahan B. et al. (2017). Communication-Efficient Learning of Deep Networks from
    Decentralized Data. AISTATS. arXiv:1602.05629.

    Examples
    --------
    >>> h = FLHistory(round=[1, 2, 3], accuracy=[0.5, 0.92, 0.95])
    >>> rounds_to_accuracy(h, 0.9), rounds_to_accuracy(h, 0.99)
    (2, None)
    """
    if not isinstance(history, FLHistory):
        raise ValueError(f"history must be an FLHistory, got {type(history).__name__}")
    if isinstance(target, bool) or not isinstance(target, numbers.Real) or not 0 <= target <= 1:
        raise ValueError(f"target must be an accuracy in [0, 1], got {target!r}")
    if any(a is None for a in history.accuracy):
        raise ValueError("history has no test accuracy; run fedavg/fedsgd with test_data")
    for r, a in zip(history.round, history.accuracy, strict=True):
        if a >= target:
            return int(r)
    return None


class ProximalStep(SupervisedStep):
    r"""FedProx's local step: the task loss plus a proximal term towards the global weights.

    .. math:: h_k(w) = \ell(f_w(x), y) + \frac{\mu}{2} \lVert w - w^t \rVert_2^2

    where :math:`w^t` are the global weights at the start of the round (frozen copies of the
    trainable parameters). With :math:`\mu = 0` it is exactly
    :class:`~mlimaging.training.SupervisedStep`. Logs the proximal term as ``proximal``.

    Parameters
    ----------
    loss
        ``(output, target) -> scalar``.
    mu
        :math:`\mu \ge 0`.
    anchor
        The global model (or its parameters, in ``model.parameters()`` order).

    References
    ----------
    Li T. et al. (2020). Federated Optimization in Heterogeneous Networks. MLSys.
    arXiv:1812.06127.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(2, 1)
    >>> step = ProximalStep(nn.MSELoss(), mu=1.0, anchor=net)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> loss, logs = step(net, (torch.ones(4, 2), torch.zeros(4, 1)), optimizer=opt)
    >>> float(logs["proximal"])  # the weights equal the anchor at the first step
    0.0
    """

    def __init__(self, loss: Callable[[Any, Any], torch.Tensor], *, mu: float,
                 anchor: nn.Module | Iterable[torch.Tensor]):
        super().__init__(loss)
        if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not math.isfinite(mu) or mu < 0:
            raise ValueError(f"mu must be a finite number >= 0, got {mu!r}")
        self.mu = float(mu)
        params = anchor.parameters() if isinstance(anchor, nn.Module) else anchor
        self.anchor = [p.detach().clone() for p in params]

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = split_batch(batch)
        params = list(model.parameters())
        if len(params) != len(self.anchor):
            raise ValueError(f"anchor has {len(self.anchor)} tensors but the model has {len(params)} parameters")
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        task = self.loss(out, y)
        prox = sum(((p - a).pow(2).sum() for p, a in zip(params, self.anchor, strict=True) if p.requires_grad),
                   start=task.new_zeros(()))
        total = task + 0.5 * self.mu * prox
        total.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        optimizer.step()
        self.last_output = out
        return total, {"proximal": (0.5 * self.mu * prox).detach()}


# ------------------------------------------------------------------------------------ FedAvg
def fedavg(
    model: nn.Module,
    dataset: Any,
    parts: list[list[int]],
    *,
    rounds: int,
    fraction: float = 0.1,
    local_epochs: int = 1,
    batch_size: int | str | None = 10,
    lr: float,
    test_data: Any = None,
    seed: int = 0,
    secure: bool | str = False,
    progress: bool = True,
    proximal_mu: float = 0.0,
    optimizer: str | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] = "sgd",
    loss: Callable[[Any, Any], torch.Tensor] | None = None,
    metrics: Any = ("accuracy",),
    device: str | torch.device = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    stop_at: float | None = None,
) -> FLHistory:
    r"""Federated Averaging (McMahan et al. 2017, Algorithm 1), with FedProx as an option.

    Each round :math:`t` the server samples :math:`m = \max(1, \mathrm{round}(C K))` of the
    :math:`K` clients without replacement; each selected client :math:`k` starts from the
    global weights :math:`w^t`, trains ``local_epochs`` (:math:`E`) epochs of mini-batches of
    ``batch_size`` (:math:`B`) with :func:`mlimaging.training.fit`, and the server sets

    .. math:: w^{t+1} = \sum_{k \in S_t} \frac{n_k}{n_{S_t}} w^{t+1}_k, \qquad
              n_{S_t} = \sum_{k \in S_t} n_k

    (:math:`n_k` = the client's sample count). Floating-point buffers (BatchNorm running
    statistics) are averaged the same way; integer buffers (``num_batches_tracked``) take the
    largest client value. With ``proximal_mu`` :math:`= \mu > 0` the local objective is
    FedProx's :math:`\ell + \frac{\mu}{2}\lVert w - w^t\rVert^2` (:class:`ProximalStep`).

    With ``secure=True`` each client's pre-weighted update
    :math:`\frac{n_k}{n_{S_t}} (w^{t+1}_k - w^t)` (all floating entries, flattened) is summed
    by :func:`mlimaging.privacy.smpc.secure_sum` (additive secret sharing; the server learns
    only the sum, within fixed-point precision) and :math:`w^{t+1} = w^t + \text{sum}`.
    With ``secure="paillier"`` the same sum is computed under additively homomorphic
    encryption instead (:func:`mlimaging.privacy.he.paillier_sum`: each client encrypts its
    update with the key holder's public key, the server multiplies the ciphertexts, only the
    sum is decrypted; one 2048-bit key pair per run; needs ``pip install 'mlimaging[he]'``).

    Parameters
    ----------
    model
        The global model; trained in place (it holds the final global weights on return).
    dataset
        A Dataset of ``(x, y)`` pairs, a ``TensorDataset`` or an ``(x, y)`` pair of tensors.
    parts
        One non-empty index list per client (:func:`partition`).
    rounds
        Number of communication rounds (>= 1).
    fraction
        :math:`C \in (0, 1]`, the fraction of clients per round.
    local_epochs
        :math:`E \ge 1`.
    batch_size
        :math:`B`; ``None`` or ``"all"`` for the client's full batch (:math:`B = \infty`).
    lr
        Learning rate of the clients' optimiser.
    test_data
        Optional Dataset (or ``(x, y)``) evaluated after every round: accuracy and mean ``loss``.
    seed
        Seeds the client sampling, every client's data order (via ``fit``) and secure
        aggregation; the same seed and initial weights give the same final weights on CPU.
    secure
        ``True`` or ``"smpc"``: aggregate through secure multi-party computation (additive
        secret sharing); ``"paillier"``: through Paillier encryption; ``False``: plain.
    progress
        A rich progress bar over rounds and one line per round (local training is silent).
    proximal_mu
        FedProx's :math:`\mu \ge 0` (0: plain FedAvg).
    optimizer
        ``"sgd"`` (no momentum, McMahan et al.), ``"adam"``, or a factory ``params -> Optimizer``
        (then ``lr`` is not used); a fresh optimiser per client and round.
    loss
        ``(output, target) -> scalar``; default ``nn.CrossEntropyLoss()``.
    metrics
        Passed to :func:`mlimaging.training.evaluate` on ``test_data``; ``FLHistory.accuracy``
        records its ``"accuracy"`` (``None`` without it: use ``()`` for a model that is not a
        classifier, then only the test loss is recorded).
    device
        Where the clients train.
    checkpoint_dir
        Folder of ``last.pt``, written atomically after every round: the global weights, the
        history and the run's settings.
    resume
        Continue from ``checkpoint_dir/last.pt`` (``model`` gets its weights; rounds done are
        not run again) up to ``rounds``. The client draws are replayed from ``seed``, and each
        client's training is seeded by ``(seed, round, client)``, so a resumed run ends with
        the weights of an uninterrupted one. The checkpoint must come from a run with the same
        seed, number of clients and clients per round.
    stop_at
        Stop after the first round whose test accuracy reaches this value in [0, 1] (needs
        ``test_data`` and the ``"accuracy"`` metric): ``rounds`` is then a cap, as in measuring
        rounds to a target accuracy (:func:`rounds_to_accuracy`). ``None``: run every round.

    Returns
    -------
    FLHistory
        ``bytes`` per round: plain, :math:`2 m P b` (the global state down, the client state
        up; :math:`P` entries of :math:`b` bytes each, 4 for float32); secure, the download
        :math:`m P b`, plus :math:`(m (p - 1) + p) P_f \cdot 8` for the 64-bit shares with
        :math:`p = \max(m, 2)` parties (each client keeps one share of its :math:`P_f` floating
        entries and sends one to each other party; each party sends its sum of shares to the
        server), plus the integer buffers in plain; Paillier, the download plus each client's
        ciphertexts (:attr:`~mlimaging.privacy.he.PaillierSum.ciphertext_bytes`) plus the integer
        buffers in plain.

    Notes
    -----
    The weights are normalised over the selected clients (:math:`n_{S_t}`; Algorithm 1 writes
    :math:`n`, the same when :math:`C = 1`), so the update is a convex combination. ``round``
    is Python's (half to even). Each client's ``fit`` is seeded from ``(seed, round, client)``
    and, as ``fit`` does, re-seeds the global Python/NumPy/torch generators.

    References
    ----------
    McMahan B. et al. (2017). Communication-Efficient Learning of Deep Networks from
    Decentralized Data. AISTATS. arXiv:1602.05629.
    Li T. et al. (2020). Federated Optimization in Heterogeneous Networks. MLSys. arXiv:1812.06127.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g); y = (x[:, 0] > 0).long()
    >>> parts = partition((x, y), num_clients=4)
    >>> net = nn.Linear(2, 2)
    >>> h = fedavg(net, (x, y), parts, rounds=3, fraction=0.5, lr=0.5, test_data=(x, y), progress=False)
    >>> len(h), len(h.clients[0]), h.accuracy[-1] > 0.9
    (3, 2, True)
    """
    rounds = _check_int(rounds, "rounds", 1)
    local_epochs = _check_int(local_epochs, "local_epochs", 1)
    seed = _check_int(seed, "seed", 0)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    if batch_size is not None and batch_size != "all":
        batch_size = _check_int(batch_size, "batch_size", 1)
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if isinstance(proximal_mu, bool) or not isinstance(proximal_mu, numbers.Real) \
            or not math.isfinite(proximal_mu) or proximal_mu < 0:
        raise ValueError(f"proximal_mu must be a finite number >= 0, got {proximal_mu!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    factory = _optimizer_factory(optimizer, float(lr))
    loss = loss if loss is not None else nn.CrossEntropyLoss()
    if not callable(loss):
        raise ValueError(f"loss must be a callable (output, target) -> scalar tensor, got {type(loss).__name__}")
    data = as_dataset(dataset)
    parts = _check_parts(parts, len(data))
    test = as_dataset(test_data, "test_data") if test_data is not None else None
    secure = _check_secure(secure)
    secure_sum = _secure_sum(secure) if secure else None
    _check_stop_at(stop_at, test, metrics)
    device = torch.device(device)
    model.to(device)

    k_total = len(parts)
    m = max(1, int(round(fraction * k_total)))
    rng = np.random.default_rng(seed)
    local = copy.deepcopy(model)
    state_bytes = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    float_entries = sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
    int_bytes = state_bytes - sum(v.numel() * v.element_size() for v in model.state_dict().values()
                                  if v.is_floating_point())
    if secure == "smpc":
        p = max(m, 2)
        round_bytes = m * state_bytes + (m * (p - 1) + p) * float_entries * 8 + m * int_bytes
    elif secure == "paillier":
        round_bytes = m * state_bytes + m * int_bytes  # + the ciphertexts, known after the first sum
    else:
        round_bytes = 2 * m * state_bytes
    history = FLHistory()
    ckpt = None
    if resume:
        if checkpoint_dir is None:
            raise ValueError("resume=True needs the checkpoint_dir of the run to continue")
        history = _restore(Path(checkpoint_dir) / "last.pt", model, {"seed": seed, "clients": k_total, "per_round": m})
        for _ in history.round:  # replay the client draws of the rounds done
            rng.choice(k_total, size=m, replace=False)
    if checkpoint_dir is not None:
        ckpt = Path(checkpoint_dir)
        ckpt.mkdir(parents=True, exist_ok=True)
    bar = _RoundProgress(rounds, enabled=progress)
    try:
        for r in range(len(history) + 1, rounds + 1):
            t0 = time.perf_counter()
            chosen = sorted(int(c) for c in rng.choice(k_total, size=m, replace=False))
            global_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            states, sizes, losses = [], [], []
            for c in chosen:
                state, n_k, last = _train_client(local, model, global_state, _subset(data, parts[c]), loss=loss,
                                                 proximal_mu=proximal_mu, factory=factory,
                                                 local_epochs=local_epochs, batch_size=batch_size,
                                                 seed=_client_seed(seed, r, c), device=device)
                states.append(state)
                sizes.append(n_k)
                losses.append(last)
            weights = [n / sum(sizes) for n in sizes]
            t1 = time.perf_counter()
            if secure_sum is None:
                new_state = _weighted_average(states, weights)
            else:
                gen = torch.Generator().manual_seed(_client_seed(seed, r, k_total))
                new_state = _secure_average(states, weights, global_state, secure_sum, gen)
            model.load_state_dict(new_state)
            t2 = time.perf_counter()
            seconds = t2 - t0
            acc = test_loss = None
            if test is not None:
                res = evaluate(model, test, metrics=metrics, loss=loss, device=device)
                acc, test_loss = res.get("accuracy"), res["loss"]
            history.round.append(r)
            history.accuracy.append(acc)
            history.loss.append(test_loss)
            history.train_loss.append(float(np.dot(weights, losses)))
            history.clients.append(chosen)
            history.seconds.append(seconds)
            history.aggregate_seconds.append(t2 - t1)
            history.bytes.append(int(round_bytes + m * getattr(secure_sum, "ciphertext_bytes", 0)))
            if ckpt is not None:
                save_checkpoint({"round": r, "model": model.state_dict(), "history": asdict(history),
                                 "settings": {"seed": seed, "clients": k_total, "per_round": m}}, ckpt / "last.pt")
            bar.update(history)
            if stop_at is not None:
                if acc is None:
                    raise ValueError("stop_at needs the 'accuracy' metric, but the test metrics gave none")
                if acc >= stop_at:
                    break
    finally:
        bar.close()
    return history


def fedsgd(
    model: nn.Module,
    dataset: Any,
    parts: list[list[int]],
    *,
    rounds: int,
    fraction: float = 0.1,
    lr: float,
    test_data: Any = None,
    seed: int = 0,
    secure: bool | str = False,
    progress: bool = True,
    loss: Callable[[Any, Any], torch.Tensor] | None = None,
    metrics: Any = ("accuracy",),
    device: str | torch.device = "cpu",
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    stop_at: float | None = None,
) -> FLHistory:
    r"""Federated SGD (McMahan et al. 2017, FedSGD): one full-batch gradient per client per round.

    Each selected client :math:`k` computes :math:`g_k = \nabla \ell_k(w^t)`, the gradient of
    its mean loss over all its :math:`n_k` samples at the global weights, and the server steps

    .. math:: w^{t+1} = w^t - \eta \sum_{k \in S_t} \frac{n_k}{n_{S_t}} g_k

    which equals averaging the clients' one-step models :math:`w^t - \eta g_k`, so it runs as
    :func:`fedavg` with :math:`E = 1`, :math:`B = \infty` and plain SGD (up to float rounding).
    With all clients selected it is full-batch gradient descent on the union of their data.

    Parameters
    ----------
    model, dataset, parts, rounds, fraction, test_data, seed, secure, progress, loss, metrics, device, checkpoint_dir, resume, stop_at
        As in :func:`fedavg`.
    lr
        :math:`\eta`, the server (= client) learning rate.

    Returns
    -------
    FLHistory

    References
    ----------
    McMahan B. et al. (2017). Communication-Efficient Learning of Deep Networks from
    Decentralized Data. AISTATS. arXiv:1602.05629.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(200, 2, generator=g); y = (x[:, 0] > 0).long()
    >>> net = nn.Linear(2, 2)
    >>> h = fedsgd(net, (x, y), partition((x, y), num_clients=4), rounds=20, fraction=1.0, lr=1.0,
    ...            test_data=(x, y), progress=False)
    >>> h.accuracy[-1] > 0.9
    True
    """
    return fedavg(model, dataset, parts, rounds=rounds, fraction=fraction, local_epochs=1, batch_size=None,
                  lr=lr, test_data=test_data, seed=seed, secure=secure, progress=progress, proximal_mu=0.0,
                  optimizer="sgd", loss=loss, metrics=metrics, device=device, checkpoint_dir=checkpoint_dir,
                  resume=resume, stop_at=stop_at)


# ----------------------------------------------------------------------------------- helpers
def _restore(path: Path, model: nn.Module, settings: dict[str, int]) -> FLHistory:
    """Load ``path`` (a checkpoint of :func:`fedavg`) into ``model``; its history."""
    state = load_checkpoint(path)
    if not {"model", "history", "settings"} <= set(state):
        raise ValueError(f"{path} is not a checkpoint of fedavg/fedsgd (it lacks model, history or settings)")
    if state["settings"] != settings:
        raise ValueError(f"{path} comes from a run with {state['settings']}; this run has {settings}")
    model.load_state_dict(state["model"])
    return FLHistory(**state["history"])


def _check_stop_at(stop_at: Any, test: Any, metrics: Any) -> None:
    if stop_at is None:
        return
    if isinstance(stop_at, bool) or not isinstance(stop_at, numbers.Real) or not 0 <= stop_at <= 1:
        raise ValueError(f"stop_at must be an accuracy in [0, 1] or None, got {stop_at!r}")
    if test is None:
        raise ValueError("stop_at needs test_data: the stopping rule reads the test accuracy after each round")
    names = [metrics] if isinstance(metrics, str) else list(metrics or ())  # a dict gives its names
    if all(isinstance(n, str) for n in names) and "accuracy" not in names:
        raise ValueError(f"stop_at needs the 'accuracy' metric, got metrics={metrics!r}")


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _train_client(local: nn.Module, anchor: nn.Module, global_state: Mapping[str, torch.Tensor], client_data: Any,
                  *, loss: Callable[[Any, Any], torch.Tensor], proximal_mu: float,
                  factory: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer], local_epochs: int,
                  batch_size: int | str | None, seed: int, device: torch.device
                  ) -> tuple[dict[str, torch.Tensor], int, float]:
    """One client's local update: load ``global_state`` into ``local``, train it with ``fit``.

    Returns the trained state (cloned), the client's sample count and its last-epoch loss.
    """
    local.load_state_dict(global_state)
    n_k = len(client_data)
    step = ProximalStep(loss, mu=proximal_mu, anchor=anchor) if proximal_mu > 0 else None
    h = fit(local, client_data, loss=None if step else loss, step=step, optimizer=factory,
            epochs=local_epochs, batch_size=n_k if batch_size in (None, "all") else batch_size,
            seed=seed, metrics=(), progress=False, device=device)
    return {k: v.detach().clone() for k, v in local.state_dict().items()}, n_k, h["loss"][-1]


def _client_seed(seed: int, rnd: int, client: int) -> int:
    """A well-mixed 31-bit seed for ``(seed, round, client)``."""
    return int(np.random.SeedSequence([seed, rnd, client]).generate_state(1)[0] >> 1)


def _optimizer_factory(optimizer: Any, lr: float) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    if optimizer == "sgd":
        return lambda params: torch.optim.SGD(params, lr=lr)
    if optimizer == "adam":
        return lambda params: torch.optim.Adam(params, lr=lr)
    if callable(optimizer) and not isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    raise ValueError(f"optimizer must be 'sgd', 'adam' or a factory params -> Optimizer, got {optimizer!r}")


def _check_parts(parts: Any, n: int) -> list[list[int]]:
    if not isinstance(parts, (list, tuple)) or len(parts) == 0:
        raise ValueError(f"parts must be a non-empty list of index lists (one per client), got {type(parts).__name__}")
    out = []
    for k, p in enumerate(parts):
        idx = [int(i) for i in p]
        if not idx:
            raise ValueError(f"parts[{k}] is empty; every client needs at least one sample")
        if min(idx) < 0 or max(idx) >= n:
            raise ValueError(f"parts[{k}] holds an index outside [0, {n})")
        out.append(idx)
    return out


def _subset(data: Any, idx: list[int]) -> Any:
    if isinstance(data, TensorDataset):
        t = torch.as_tensor(idx, dtype=torch.long)
        return TensorDataset(*(x[t] for x in data.tensors))
    return Subset(data, idx)


def _weighted_average(states: list[Mapping[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    out = {}
    for name, ref in states[0].items():
        if ref.is_floating_point():
            acc = sum((w * s[name].double() for w, s in zip(weights, states, strict=True)),
                      start=torch.zeros_like(ref, dtype=torch.float64))
            out[name] = acc.to(ref.dtype)
        else:
            out[name] = torch.stack([s[name] for s in states]).amax(0)
    return out


def _check_secure(secure: Any) -> str | bool:
    if secure is True or secure == "smpc":
        return "smpc"
    if secure is False or secure is None:
        return False
    if secure == "paillier":
        return "paillier"
    raise ValueError(f"secure must be False, True / 'smpc' or 'paillier', got {secure!r}")


class _PaillierSum:
    """``secure_sum`` through Paillier encryption: one key pair per run (the key holder's)."""

    def __init__(self) -> None:
        from mlimaging.privacy.he import paillier_keypair, paillier_sum

        self._sum = paillier_sum
        self.keys = paillier_keypair(key_length=2048)
        self.ciphertext_bytes = 0

    def __call__(self, updates: list[torch.Tensor], *, generator: Any = None) -> torch.Tensor:
        res = self._sum(updates, keys=self.keys)
        self.ciphertext_bytes = int(res.ciphertext_bytes)
        return res.total


def _secure_sum(kind: str = "smpc") -> Callable[..., Any]:
    if kind == "paillier":
        return _PaillierSum()
    from mlimaging.privacy.smpc import secure_sum

    return secure_sum


def _secure_average(states, weights, global_state, secure_sum, generator) -> dict[str, torch.Tensor]:
    names = [k for k, v in global_state.items() if v.is_floating_point()]
    updates = [torch.cat([(w * (s[k].double() - global_state[k].double())).reshape(-1) for k in names])
               for w, s in zip(weights, states, strict=True)]
    total = secure_sum(updates, generator=generator)
    if isinstance(total, (list, tuple)):
        total = torch.cat([t.reshape(-1) for t in total])
    total = torch.as_tensor(total).to(torch.float64).reshape(-1)
    out, offset = {}, 0
    for k, ref in global_state.items():
        if k in names:
            n = ref.numel()
            out[k] = (ref.double() + total[offset:offset + n].reshape(ref.shape).to(ref.device)).to(ref.dtype)
            offset += n
        else:
            out[k] = torch.stack([s[k] for s in states]).amax(0)
    return out


class _RoundProgress:
    """A rich bar over rounds on a terminal, plus one summary line per round; no-ops when disabled."""

    def __init__(self, rounds: int, *, enabled: bool):
        self.enabled, self.rounds = enabled, rounds
        self._progress = None
        if not enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = Console(stderr=True)
        if self.console.is_terminal and not self.console.is_dumb_terminal:
            self._progress = Progress(TextColumn("round"), BarColumn(bar_width=24), MofNCompleteColumn(),
                                      TimeElapsedColumn(), console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task("", total=rounds)

    def update(self, h: FLHistory) -> None:
        if not self.enabled:
            return
        info = f"train_loss={h.train_loss[-1]:.4g}"
        if h.accuracy[-1] is not None:
            info += f" test_loss={h.loss[-1]:.4g} accuracy={h.accuracy[-1]:.4g}"
        self.console.print(f"round {h.round[-1]}/{self.rounds} ({h.seconds[-1]:.1f} s, {len(h.clients[-1])} "
                           f"clients) {info}", highlight=False, soft_wrap=True)
        if self._progress is not None:
            self._progress.advance(self._task)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

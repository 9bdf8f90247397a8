r"""Adversarial training as :class:`~mlimaging.training.TrainStep` objects for :func:`~mlimaging.training.fit`.

Each step attacks the batch first (model in eval mode, no parameter gradients, see
:mod:`mlimaging.robustness.attacks`), then trains on the mixture

.. math::

    \ell = \lambda\, L(f_\theta(x), y) + (1 - \lambda)\, L(f_\theta(x_{adv}), y),
    \qquad \lambda = \texttt{clean\_weight} \in [0, 1],

and logs ``adv_loss`` (and ``clean_loss`` when :math:`\lambda > 0`) next to ``loss``.

* :class:`FastAdversarialStep`: "fast is better than free" (Wong, Rice & Kolter 2020,
  arXiv:2001.03994): one FGSM step of size :math:`\alpha = 1.25\varepsilon` from a uniform
  random start in the :math:`L_\infty` ball, projected back onto the ball and the range.
* :class:`PGDAdversarialStep`: PGD adversarial training (Madry et al. 2018, arXiv:1706.06083).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mlimaging.robustness.attacks import (
    LossArg,
    _check_int,
    _check_norm,
    _prepare_target,
    _resolve_loss,
    _step_size,
    pgd,
)
from mlimaging.robustness.ranges import _number
from mlimaging.training import TrainStep
from mlimaging.training._data import split_batch

__all__ = ["FastAdversarialStep", "PGDAdversarialStep", "adversarial_step"]


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel/DataParallel (the attack needs no gradient sync)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel) else model


class _AdversarialStep(TrainStep):
    """Attack the batch, then one optimiser step on the clean/adversarial mixture."""

    def __init__(self, *, eps: float, valid_range: Any, eps_relative: bool, clean_weight: float,
                 loss: LossArg, seed: int | None):
        self.eps = _number(eps, "eps", minimum=0.0)
        self.clean_weight = _number(clean_weight, "clean_weight", minimum=0.0)
        if self.clean_weight > 1:
            raise ValueError(f"clean_weight must be in [0, 1], got {self.clean_weight}")
        self.valid_range = valid_range
        self.eps_relative = bool(eps_relative)
        self.loss = _resolve_loss(loss)
        if seed is not None:
            seed = _check_int(seed, "seed", 0)
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.last_output: Any = None

    def _pgd_settings(self) -> dict[str, Any]:
        """``steps``, ``norm`` and ``random_start`` of the attack (subclasses)."""
        raise NotImplementedError

    def perturb(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The adversarial batch: :func:`~mlimaging.robustness.pgd` with the step's settings
        (``x`` itself when ``eps = 0``)."""
        if self.eps == 0:
            return x.detach()
        return pgd(model, x, y, eps=self.eps, alpha=self.alpha, valid_range=self.valid_range,
                   eps_relative=self.eps_relative, loss=self.loss, generator=self.generator,
                   **self._pgd_settings())

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> tuple[torch.Tensor, Mapping[str, torch.Tensor]]:
        x, y = split_batch(batch)
        x_adv = self.perturb(_unwrap(model), x, y)
        optimizer.zero_grad(set_to_none=True)
        out = model(x_adv)
        y = _prepare_target(out, y, self.loss)
        adv_loss = self.loss(out, y)
        extras = {"adv_loss": adv_loss.detach()}
        total = adv_loss
        if self.clean_weight > 0:
            clean_loss = self.loss(model(x), y)
            extras["clean_loss"] = clean_loss.detach()
            total = self.clean_weight * clean_loss + (1 - self.clean_weight) * adv_loss
        total.backward()
        if grad_clip is not None:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        self.last_output = out
        return total.detach(), extras

    def validation_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The clean loss of one batch (``fit`` calls it in eval mode under no_grad)."""
        x, y = split_batch(batch)
        return self.loss(model(x), y)

    def state_dict(self) -> dict[str, Any]:
        """The random generator's state (when the step has its own ``seed``)."""
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if self.generator is not None and "generator" in state:
            self.generator.set_state(state["generator"])


class FastAdversarialStep(_AdversarialStep):
    r"""Fast adversarial training (Wong, Rice & Kolter 2020): FGSM from a random start.

    .. math::

        \delta_0 \sim U[-\varepsilon, \varepsilon]^d,\quad
        x_{adv} = \Pi_{B_\varepsilon(x) \cap [lo, hi]}\big(x + \delta_0
        + \alpha\,\operatorname{sign}\nabla_x L(f(x + \delta_0), y)\big),\quad \alpha = 1.25\varepsilon,

    then :math:`\ell = \lambda L(f(x), y) + (1 - \lambda) L(f(x_{adv}), y)` (module doc).

    Parameters
    ----------
    eps
        :math:`L_\infty` budget (image units, or a fraction of the range with ``eps_relative``).
    alpha
        Step size; default :math:`1.25\varepsilon` (the paper's choice).
    valid_range, eps_relative
        As in :func:`~mlimaging.robustness.fgsm`.
    clean_weight
        :math:`\lambda \in [0, 1]`; 0 trains on adversarial examples only.
    loss
        ``"ce"`` (default), ``"dice"`` or a callable ``(output, target) -> scalar``: both the
        attack's and the training loss.
    seed
        Seed of the step's own generator for the random start (saved in checkpoints); default:
        the global generator, which :func:`~mlimaging.training.fit` seeds and checkpoints.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from mlimaging.training import fit
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(64, 1, 4, 4, generator=g); y = (x.mean((1, 2, 3)) > 0.5).long()
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    >>> h = fit(net, TensorDataset(x, y), step=FastAdversarialStep(eps=0.05, clean_weight=0.5),
    ...         optimizer=lambda p: torch.optim.SGD(p, lr=0.5), epochs=3, batch_size=16,
    ...         metrics=(), progress=False)
    >>> sorted(k for k in h.epochs[-1] if k.endswith("loss"))
    ['adv_loss', 'clean_loss', 'loss']
    """

    def __init__(self, eps: float, *, alpha: float | None = None, valid_range: Any = (0.0, 1.0),
                 eps_relative: bool = False, clean_weight: float = 0.0, loss: LossArg = None,
                 seed: int | None = None):
        super().__init__(eps=eps, valid_range=valid_range, eps_relative=eps_relative,
                         clean_weight=clean_weight, loss=loss, seed=seed)
        self.alpha = 1.25 * self.eps if alpha is None else _step_size(alpha, self.eps)

    def _pgd_settings(self) -> dict[str, Any]:
        """FGSM step of size ``alpha`` from a uniform random start: one L-inf PGD step."""
        return {"steps": 1, "norm": "linf", "random_start": True}

    def __repr__(self) -> str:
        return f"FastAdversarialStep(eps={self.eps}, alpha={self.alpha}, clean_weight={self.clean_weight})"


class PGDAdversarialStep(_AdversarialStep):
    r"""PGD adversarial training (Madry, Makelov, Schmidt, Tsipras & Vladu 2018).

    .. math::

        \min_\theta \; \mathbb{E}_{(x, y)} \Big[\lambda L(f_\theta(x), y) + (1 - \lambda)
        \max_{\lVert \delta \rVert \le \varepsilon,\; x + \delta \in [lo, hi]} L(f_\theta(x + \delta), y)\Big],

    the inner maximum approximated by :func:`~mlimaging.robustness.pgd` (``steps`` steps of
    size ``alpha`` from a random start).

    Parameters
    ----------
    eps, valid_range, eps_relative, clean_weight, loss, seed
        As in :class:`FastAdversarialStep`.
    alpha
        Step size; default :math:`2.5\varepsilon/\texttt{steps}`.
    steps
        PGD steps per batch (Madry et al.: 40 on MNIST, 7 on CIFAR-10).
    norm
        ``"linf"`` or ``"l2"``.
    random_start
        Start from a random point of the ball (as Madry et al.).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> step = PGDAdversarialStep(eps=0.1, steps=3)
    >>> batch = (torch.rand(8, 1, 2, 2), torch.randint(0, 2, (8,)))
    >>> loss, extras = step(net, batch, optimizer=opt)
    >>> sorted(extras), bool(loss >= 0)
    (['adv_loss'], True)
    """

    def __init__(self, eps: float, *, alpha: float | None = None, steps: int = 10, norm: str = "linf",
                 random_start: bool = True, valid_range: Any = (0.0, 1.0), eps_relative: bool = False,
                 clean_weight: float = 0.0, loss: LossArg = None, seed: int | None = None):
        super().__init__(eps=eps, valid_range=valid_range, eps_relative=eps_relative,
                         clean_weight=clean_weight, loss=loss, seed=seed)
        self.steps = _check_int(steps, "steps")
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else _step_size(alpha, self.eps)
        self.norm = _check_norm(norm)
        self.random_start = bool(random_start)

    def _pgd_settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "norm": self.norm, "random_start": self.random_start}

    def __repr__(self) -> str:
        return (f"PGDAdversarialStep(eps={self.eps}, alpha={self.alpha}, steps={self.steps}, norm={self.norm!r}, "
                f"clean_weight={self.clean_weight})")


def adversarial_step(kind: str = "fgsm", *, eps: float, **kw: Any) -> _AdversarialStep:
    r"""The adversarial training step named ``kind``: ``"fgsm"`` (fast AT, Wong et al. 2020) or
    ``"pgd"`` (Madry et al. 2018), built with ``eps`` and the class's other options ``kw``.

    Both minimise :math:`\lambda L(f(x), y) + (1 - \lambda) L(f(x_{adv}), y)`.

    Examples
    --------
    >>> adversarial_step("pgd", eps=0.3, steps=40)
    PGDAdversarialStep(eps=0.3, alpha=0.01875, steps=40, norm='linf', clean_weight=0.0)
    >>> adversarial_step("fgsm", eps=0.3)
    FastAdversarialStep(eps=0.3, alpha=0.375, clean_weight=0.0)
    """
    key = kind.lower() if isinstance(kind, str) else kind
    classes: dict[str, Callable[..., _AdversarialStep]] = {"fgsm": FastAdversarialStep, "fast": FastAdversarialStep,
                                                            "pgd": PGDAdversarialStep}
    if key not in classes:
        raise ValueError(f"kind must be 'fgsm' or 'pgd', got {kind!r}")
    return classes[key](eps, **kw)

r"""Robust accuracy and attack success rate over a data set, for a list of budgets.

For budgets :math:`\varepsilon_1, \dots` and an attack :math:`A_\varepsilon`,

.. math::

    \mathrm{acc}(\varepsilon) = \frac{1}{n} \sum_i [\hat y(A_\varepsilon(x_i)) = y_i],
    \qquad
    \mathrm{ASR}(\varepsilon) = \frac{\sum_i [\hat y(x_i) = y_i] \, [\hat y(A_\varepsilon(x_i)) \ne y_i]}
    {\sum_i [\hat y(x_i) = y_i]},

(for a targeted attack with targets :math:`t_i`, the success rate counts
:math:`\hat y(A_\varepsilon(x_i)) = t_i` among the samples with :math:`\hat y(x_i) \ne t_i`).
:math:`\varepsilon = 0` gives the clean accuracy. The curve of :math:`\mathrm{acc}(\varepsilon)`
is the usual robustness plot (Goodfellow et al. 2015; Madry et al. 2018).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mlimaging.robustness.attacks import FGSM, PGD, _Attack, _attack_mode, _check_int
from mlimaging.robustness.ranges import _number
from mlimaging.training._data import split_batch

__all__ = ["attack_success_rate", "robust_accuracy"]

AttackArg = str | _Attack | Callable[..., torch.Tensor]


def _loader(data: Any, batch_size: int) -> DataLoader | list[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, tuple | list) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"data: x and y must have the same length, got {x.shape[0]} and {y.shape[0]}")
        return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    raise ValueError(f"data must be a Dataset, a DataLoader or an (x, y) pair of tensors, got {type(data).__name__}")


def _resolve_attack(attack: AttackArg) -> tuple[Callable[[nn.Module, torch.Tensor, torch.Tensor, float], torch.Tensor], bool]:
    """``(run(model, x, y, eps), targeted)`` for a name, an FGSM/PGD object or a callable."""
    if isinstance(attack, str):
        key = attack.lower()
        if key not in ("fgsm", "pgd"):
            raise ValueError(f"attack must be 'fgsm', 'pgd', an FGSM/PGD object or a callable, got {attack!r}")
        attack = FGSM() if key == "fgsm" else PGD()
    if isinstance(attack, _Attack):
        held = attack
        return (lambda model, x, y, eps: held.with_eps(eps)(model, x, y)), held.targeted
    if callable(attack):
        return (lambda model, x, y, eps: attack(model, x, y, eps=eps)), False
    raise ValueError(f"attack must be 'fgsm', 'pgd', an FGSM/PGD object or a callable, got {type(attack).__name__}")


def _targets(targets: Any, y: torch.Tensor, k: int) -> torch.Tensor:
    if targets is None:
        return (y + 1) % k
    if isinstance(targets, int) and not isinstance(targets, bool):
        if not 0 <= targets < k:
            raise ValueError(f"targets must be a class in [0, {k}), got {targets}")
        return torch.full_like(y, targets)
    if callable(targets):
        return targets(y)
    raise ValueError(f"targets must be None, a class index or a callable y -> targets, got {targets!r}")


@contextlib.contextmanager
def _bar(total: int, enabled: bool, what: str) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda: bar.advance(task)


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` in eval mode, without gradients."""
    with _attack_mode(model), torch.no_grad():
        return model(x)


def _counts(model: nn.Module, data: Any, attack: AttackArg, eps_list: Sequence[float], *, batch_size: int,
            progress: bool, targets: Any, classification_only: bool) -> list[dict[str, float]]:
    """Per eps: n, correct (sum of per-sample accuracy), eligible and successful samples."""
    if isinstance(eps_list, int | float):
        eps_list = [eps_list]
    eps_values = [_number(e, "eps_list value", minimum=0.0) for e in eps_list]
    if not eps_values:
        raise ValueError("eps_list must hold at least one budget")
    batch_size = _check_int(batch_size, "batch_size")
    run, targeted = _resolve_attack(attack)
    loader = _loader(data, batch_size)
    params = next(iter(model.parameters()), None) if isinstance(model, nn.Module) else None
    device = params.device if params is not None else torch.device("cpu")
    tally = [{"n": 0.0, "correct": 0.0, "eligible": 0.0, "success": 0.0} for _ in eps_values]
    try:
        total = len(loader) * len(eps_values)
    except TypeError:
        total = None
    with _bar(total, progress, "attack") as advance:
        for batch in loader:
            x, y = split_batch(batch)
            x, y = x.to(device), y.to(device)
            clean_pred = _logits(model, x).argmax(1)
            is_class = clean_pred.ndim == 1
            if classification_only and not is_class:
                raise ValueError("attack_success_rate needs a classifier (logits (B, K)); for segmentation "
                                 "use robust_accuracy (pixel accuracy) or a Dice of the attacked outputs")
            if targeted:
                if not is_class:
                    raise ValueError("a targeted attack needs a classifier here (logits (B, K))")
                k = _logits(model, x[:1]).shape[1]
                goal = _targets(targets, y, k).to(device)
            else:
                goal = y
            for t, eps in zip(tally, eps_values, strict=True):
                x_adv = x if eps == 0 else run(model, x, goal, eps)
                pred = _logits(model, x_adv).argmax(1)
                hit = (pred == y).reshape(y.shape[0], -1).float().mean(1)
                t["n"] += y.shape[0]
                t["correct"] += float(hit.sum())
                if is_class:
                    if targeted:
                        eligible = clean_pred != goal
                        success = eligible & (pred == goal)
                    else:
                        eligible = clean_pred == y
                        success = eligible & (pred != y)
                    t["eligible"] += float(eligible.sum())
                    t["success"] += float(success.sum())
                advance()
    if tally[0]["n"] == 0:
        raise ValueError("data holds no samples")
    return [dict(t, eps=e) for t, e in zip(tally, eps_values, strict=True)]


def robust_accuracy(model: nn.Module, data: Any, attack: AttackArg, eps_list: Sequence[float], *,
                    batch_size: int = 256, progress: bool = False, targets: Any = None) -> list[dict[str, float]]:
    r"""Accuracy under attack for each budget: rows ``{"eps", "accuracy", "n"}``.

    :math:`\mathrm{acc}(\varepsilon) = \frac1n \sum_i [\hat y(A_\varepsilon(x_i)) = y_i]` (module
    doc); :math:`\varepsilon = 0` is the clean accuracy: the robustness curve of Goodfellow et al.
    (2015, arXiv:1412.6572) and Madry et al. (2018, arXiv:1706.06083). For segmentation outputs
    ``(B, K, *spatial)`` the per-sample accuracy is the fraction of correct pixels.

    Parameters
    ----------
    model
        The network (its modes and flags are restored).
    data
        A ``Dataset`` or ``DataLoader`` of ``(x, y)`` batches, or an ``(x, y)`` pair of tensors.
    attack
        ``"fgsm"``/``"pgd"`` (default settings), an :class:`~mlimaging.robustness.FGSM` /
        :class:`~mlimaging.robustness.PGD` object (its ``eps`` replaced by each budget; PGD
        without ``alpha`` uses :math:`2.5\varepsilon/T`), or a callable
        ``(model, x, y, eps=...) -> x_adv``.
    eps_list
        Budgets :math:`\varepsilon \ge 0` (in the attack's units).
    batch_size
        Batch size for a ``Dataset`` or tensors.
    progress
        Show a rich progress bar.
    targets
        For a targeted attack object: ``None`` (class :math:`(y + 1) \bmod K`), a class index
        or a callable ``y -> targets``.

    Returns
    -------
    list of dict
        One row per budget, in the order of ``eps_list``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(64, 1, 2, 2, generator=g); y = (x.flatten(1).mean(1) > 0.5).long()
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> model[1].weight.data = torch.tensor([[-1.0] * 4, [1.0] * 4]); model[1].bias.data = torch.tensor([2.0, -2.0])
    >>> from mlimaging.robustness import FGSM
    >>> rows = robust_accuracy(model, (x, y), FGSM(valid_range=None), [0.0, 0.1, 0.3])
    >>> rows[0]
    {'eps': 0.0, 'accuracy': 1.0, 'n': 64}

    The logit margin is :math:`2|\sum_j x_j - 2|` and FGSM moves the sum by :math:`4\varepsilon`
    towards the boundary (no range to clip to here), so a sample survives iff :math:`|\sum_j x_j - 2| > 4\varepsilon`:

    >>> margin = (x.flatten(1).sum(1) - 2).abs()
    >>> [row["accuracy"] for row in rows] == [float((margin > 4 * e).float().mean()) for e in (0.0, 0.1, 0.3)]
    True
    """
    rows = _counts(model, data, attack, eps_list, batch_size=batch_size, progress=progress, targets=targets,
                   classification_only=False)
    return [{"eps": r["eps"], "accuracy": r["correct"] / r["n"], "n": int(r["n"])} for r in rows]


def attack_success_rate(model: nn.Module, data: Any, attack: AttackArg, eps_list: Sequence[float], *,
                        batch_size: int = 256, progress: bool = False, targets: Any = None) -> list[dict[str, float]]:
    r"""Fraction of the correctly classified samples the attack flips: rows ``{"eps", "success_rate", "n"}``.

    .. math::

        \mathrm{ASR}(\varepsilon) = \frac{\#\{i : \hat y(x_i) = y_i,\ \hat y(A_\varepsilon(x_i)) \ne y_i\}}
        {\#\{i : \hat y(x_i) = y_i\}};

    for a targeted attack the fraction of the samples not already classified as their target
    :math:`t_i` that the attack moves to :math:`t_i`. ``n`` is the denominator (``success_rate``
    is NaN when it is 0). Parameters as in :func:`robust_accuracy`; classifiers only. The rate
    reported for FGSM by Goodfellow et al. (2015) and for PGD by Madry et al. (2018).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(64, 1, 2, 2, generator=g); y = (x.flatten(1).mean(1) > 0.5).long()
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> model[1].weight.data = torch.tensor([[-1.0] * 4, [1.0] * 4]); model[1].bias.data = torch.tensor([2.0, -2.0])
    >>> [row["success_rate"] for row in attack_success_rate(model, (x, y), "fgsm", [0.0, 0.5])]
    [0.0, 1.0]
    """
    rows = _counts(model, data, attack, eps_list, batch_size=batch_size, progress=progress, targets=targets,
                   classification_only=True)
    return [{"eps": r["eps"], "success_rate": r["success"] / r["eligible"] if r["eligible"] else float("nan"),
             "n": int(r["eligible"])} for r in rows]

"""The one extension point of :func:`~mlimaging.training.fit`: a training step object.

Most models train with :math:`\\ell = \\text{loss}(f_\\theta(x), y)`. Methods whose step is
not that (two augmented views, a generator and a discriminator, per-sample clipped and
noised gradients, an attack on the inputs, an EMA target network, prompts sampled from the
ground truth) give ``fit`` a :class:`TrainStep` instead of a loss. The step receives the
model and a batch and does its own forward, backward and optimiser work; ``fit`` keeps
everything else: data order, checkpoints and exact resume, history, progress, early
stopping, schedulers and ``torchrun``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mlimaging.training._data import split_batch

__all__ = ["StepOutput", "SupervisedStep", "TrainStep"]

#: What a step returns: the loss of the batch, or ``(loss, extras)`` where ``extras`` maps
#: names to scalars logged as per-epoch (sample-weighted) means in the history.
StepOutput = torch.Tensor | tuple[torch.Tensor, Mapping[str, Any]]


class TrainStep:
    r"""One optimisation step on one batch, called by :func:`~mlimaging.training.fit`.

    Subclasses implement :meth:`__call__`. ``fit`` calls it once per batch, in training mode,
    with the batch as the loader produced it (moved to the device, not split into input and
    target, so a step may take batches without targets). The step computes its loss, calls
    ``backward``, clips gradients when ``grad_clip`` is set
    (:math:`g \leftarrow g \min(1, c / \lVert g \rVert_2)`) and calls ``optimizer.step()``.

    A step that holds state of its own (a random generator, a second network and its
    optimiser, an EMA copy, a privacy accountant) returns it from :meth:`state_dict` and
    takes it back in :meth:`load_state_dict`: ``fit`` stores it in every checkpoint, so a
    resumed run continues exactly. :meth:`validation_loss`, when a subclass defines it, gives
    ``fit`` the ``val_loss`` of a batch.

    Examples
    --------
    A step that trains on the sum of two losses and logs both:

    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from mlimaging.training import fit
    >>> class TwoLosses(TrainStep):
    ...     def __call__(self, model, batch, *, optimizer, grad_clip=None):
    ...         x, y = batch
    ...         out = model(x)
    ...         mse = (out - y).pow(2).mean()
    ...         l1 = (out - y).abs().mean()
    ...         optimizer.zero_grad(set_to_none=True)
    ...         (mse + l1).backward()
    ...         optimizer.step()
    ...         return mse + l1, {"mse": mse, "l1": l1}
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(32, 3, generator=g); y = x.sum(1, keepdim=True)
    >>> h = fit(nn.Linear(3, 1), TensorDataset(x, y), step=TwoLosses(), metrics=(),
    ...         optimizer=lambda p: torch.optim.SGD(p, lr=0.1), epochs=3, progress=False)
    >>> sorted(k for k in h.epochs[-1] if k not in ("epoch", "lr", "seconds"))
    ['l1', 'loss', 'mse']
    >>> h["loss"][-1] < h["loss"][0]
    True
    """

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> StepOutput:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(model, batch, *, optimizer, "
                                  "grad_clip)")

    def state_dict(self) -> dict[str, Any]:
        """The step's own state (saved in checkpoints); empty by default."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; nothing to do by default."""


class SupervisedStep(TrainStep):
    r"""The default step: :math:`\ell = \text{loss}(f_\theta(x), y)`, backward, clip, step.

    ``fit(model, data, loss=fn, ...)`` runs exactly this step; it is public so that a step
    can extend it (for instance attack the inputs first, then call it).

    Parameters
    ----------
    loss
        Callable ``(output, target) -> scalar tensor``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> step = SupervisedStep(nn.MSELoss())
    >>> batch = (torch.ones(4, 2), torch.zeros(4, 1))
    >>> first = step(net, batch, optimizer=opt); second = step(net, batch, optimizer=opt)
    >>> bool(second < first)
    True
    """

    def __init__(self, loss: Callable[[Any, Any], torch.Tensor]):
        if not callable(loss):
            raise ValueError(f"loss must be a callable (output, target) -> scalar tensor, got {type(loss).__name__}")
        self.loss = loss
        self.last_output: Any = None

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> torch.Tensor:
        x, y = split_batch(batch)
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        value = self.loss(out, y)
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            got = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"loss must return a scalar tensor, got {got}")
        value.backward()
        if grad_clip is not None:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        self.last_output = out
        return value

    def validation_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """``loss(model(x), y)`` of one batch (``fit`` calls it in eval mode under no_grad)."""
        x, y = split_batch(batch)
        return self.loss(model(x), y)

"""The one abstraction of the self-supervised area: a method module and the step that trains it.

Every method (SimCLR, TripletNet, MAE, I-JEPA) is an ``nn.Module`` with

- ``encoder``: the network whose representation :math:`h = f(x)` is kept after pretraining
  (``encoder(x) -> (B, D)``, with ``encoder.feature_dim == D`` or the method's
  ``feature_dim``);
- ``ssl_loss(x, y=None, *, generator) -> loss`` or ``(loss, extras)``: the proxy task's loss
  on a batch of images (labels ``y`` only for methods that use them, such as a triplet
  network that mines triplets by class);
- optionally ``after_step()``: work after each optimiser step (I-JEPA's EMA update of the
  target encoder).

:class:`SelfSupervisedStep` is the :class:`~mlimaging.training.TrainStep` that trains any of
them through :func:`mlimaging.training.fit`; its random generator (augmentations, masks) is
saved in the checkpoints, so an interrupted pretraining resumes exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mlimaging.training.step import StepOutput, TrainStep

__all__ = ["SelfSupervisedStep", "split_images"]


def split_images(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, labels or None)`` from a batch: a tensor, ``(x,)``, ``(x, y)`` or a dict."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0], None
        if len(batch) == 2:
            return batch[0], batch[1]
        raise ValueError(f"a batch must be images, (images,) or (images, labels), got {len(batch)} items")
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in ("input", "image", "x") if k in batch), None)
        if x is None:
            raise ValueError(f"a dict batch needs an image key (input, image, x), got keys {sorted(batch)}")
        y = next((batch[k] for k in ("target", "label", "y") if k in batch), None)
        return x, y
    raise ValueError(f"a batch must be a tensor, a tuple or a dict, got {type(batch).__name__}")


class SelfSupervisedStep(TrainStep):
    r"""Train a self-supervised method through :func:`~mlimaging.training.fit`.

    Each step computes ``loss = model.ssl_loss(x, y, generator=g)`` (labels ``y`` are passed
    when the batch holds them, and ignored by methods that do not use them), back-propagates,
    clips the gradient norm to ``grad_clip``, steps the optimiser, then calls
    ``model.after_step()`` if the method has one (an EMA target update). The generator ``g``
    drives every random choice of the method (augmentations, masks); it is a CPU generator, so
    methods draw on the CPU and move the draws to the images' device. Its state is checkpointed.

    Parameters
    ----------
    seed
        Seed of the step's ``torch.Generator``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from mlimaging.training import fit
    >>> class Denoise(nn.Module):  # a toy method: reconstruct the image from a noisy copy
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 16))
    ...     def ssl_loss(self, x, y=None, *, generator):
    ...         noisy = x + 0.1 * torch.randn(x.shape, generator=generator)
    ...         return (self.encoder(noisy) - x.flatten(1)).pow(2).mean()
    >>> x = torch.rand(32, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> h = fit(Denoise(), TensorDataset(x), step=SelfSupervisedStep(seed=0), metrics=(),
    ...         optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), epochs=5, progress=False)
    >>> h["loss"][-1] < h["loss"][0]
    True
    """

    def __init__(self, *, seed: int = 0):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        self.generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def _method(model: nn.Module) -> nn.Module:
        inner = getattr(model, "module", model)  # DistributedDataParallel wraps the method
        if not hasattr(inner, "ssl_loss"):
            raise ValueError(f"{type(inner).__name__} is not a self-supervised method: it has no "
                             "ssl_loss(x, y=None, *, generator)")
        return inner

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> StepOutput:
        method = self._method(model)
        x, y = split_images(batch)
        optimizer.zero_grad(set_to_none=True)
        result = method.ssl_loss(x, y, generator=self.generator)
        loss, extras = result if isinstance(result, tuple) else (result, {})
        loss.backward()
        if grad_clip is not None:
            params = [p for g in optimizer.param_groups for p in g["params"]]
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        after = getattr(method, "after_step", None)
        if after is not None:
            after()
        return loss, extras

    def validation_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The proxy loss of a batch with a fixed generator (the same masks and views every epoch)."""
        method = self._method(model)
        x, y = split_images(batch)
        result = method.ssl_loss(x, y, generator=torch.Generator().manual_seed(0))
        return result[0] if isinstance(result, tuple) else result

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])

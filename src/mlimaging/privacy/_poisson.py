r"""Poisson sampling of batches (each sample independently with probability :math:`q`).

The privacy analysis of DP-SGD (the sampled Gaussian mechanism, Mironov et al. 2019,
arXiv:1908.10530) assumes every batch is drawn this way: batches have a random size
(:math:`\mathrm{Binomial}(N, q)`, possibly zero) and a sample can appear in several or no
batches of an epoch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.utils.data import Sampler
from torch.utils.data._utils.collate import default_collate

__all__ = ["EmptyBatchCollate", "PoissonBatchSampler"]


class PoissonBatchSampler(Sampler[list[int]]):
    r"""Batches of indices drawn by Poisson sampling: :math:`i \in B_t` with probability ``sample_rate``.

    One pass yields ``steps`` batches (default :math:`\lceil 1/q \rceil`, so an epoch sees
    :math:`N` samples in expectation). The draws come from the sampler's own generator, seeded
    by ``seed``; :meth:`state_dict` captures it (a ``weights_only``-safe tensor), so a resumed
    run draws the same batches as an uninterrupted one.

    Parameters
    ----------
    num_samples
        Size :math:`N` of the dataset.
    sample_rate
        :math:`q \in (0, 1]`.
    steps
        Batches per pass.
    seed
        Seed of the generator.

    Examples
    --------
    >>> s = PoissonBatchSampler(10, 0.3, steps=3, seed=0)
    >>> batches = list(s)
    >>> len(batches), all(0 <= i < 10 for b in batches for i in b)
    (3, True)
    >>> state = s.state_dict(); again = list(s); s.load_state_dict(state)
    >>> list(s) == again
    True
    """

    def __init__(self, num_samples: int, sample_rate: float, *, steps: int | None = None, seed: int = 0) -> None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Real) or not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate must be a number in (0, 1], got {sample_rate!r}")
        if steps is None:
            steps = max(1, math.ceil(1.0 / float(sample_rate) - 1e-9))
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.num_samples, self.sample_rate, self.steps = int(num_samples), float(sample_rate), int(steps)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
            yield mask.nonzero().flatten().tolist()

    def __len__(self) -> int:
        return self.steps

    def state_dict(self) -> dict[str, Any]:
        """The generator state (a uint8 tensor)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.generator.set_state(state["generator"].cpu().to(torch.uint8))


class EmptyBatchCollate:
    """``default_collate``, except that an empty batch becomes zero-length tensors shaped like ``dataset[0]``."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self._empty: Any = None

    def __call__(self, items: list[Any]) -> Any:
        if items:
            return default_collate(items)
        if self._empty is None:
            self._empty = _slice0(default_collate([self.dataset[0]]))
        return self._empty


def _slice0(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj[:0]
    if isinstance(obj, (tuple, list)):
        return type(obj)(_slice0(o) for o in obj)
    if isinstance(obj, Mapping):
        return {k: _slice0(v) for k, v in obj.items()}
    return obj

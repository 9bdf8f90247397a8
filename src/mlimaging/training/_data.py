"""Loaders with a reproducible per-epoch order, batch unpacking and device moves."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler

INPUT_KEYS = ("input", "image", "x")
TARGET_KEYS = ("target", "label", "mask", "y")


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A well-mixed 63-bit seed derived from ``(seed, epoch, stream)`` (NumPy ``SeedSequence``)."""
    state = np.random.SeedSequence([seed, epoch, stream]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(1))


class EpochSampler(Sampler[int]):
    """Indices of epoch ``e``: a permutation seeded by ``(seed, e)``, sharded as ``perm[rank::W]``.

    The order depends only on ``(seed, epoch)``, so a resumed run sees exactly the batches an
    uninterrupted one would, and the union of the W shards of batch ``j`` (batch size b each)
    is batch ``j`` of one process with batch size ``W * b``. With ``pad=True`` the index list
    is padded by wrapping around to a multiple of ``W`` so all ranks take the same number of
    steps (as ``DistributedSampler`` does); evaluation uses ``pad=False``.
    """

    def __init__(self, n: int, *, shuffle: bool, seed: int, rank: int = 0, world_size: int = 1, pad: bool = True):
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.pad = rank, world_size, pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        if self.pad and self.n % self.world_size:
            extra = self.world_size - self.n % self.world_size
            idx += (idx * (extra // self.n + 1))[:extra]
        return idx[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        total = -(-self.n // self.world_size) * self.world_size if self.pad else self.n
        return len(range(self.rank, total, self.world_size))


def make_loader(data: Any, name: str, *, batch_size: int, shuffle: bool, seed: int, num_workers: int,
                rank: int = 0, world_size: int = 1, pad: bool = True, pin_memory: bool = False) -> DataLoader:
    """A DataLoader given as is, or one over a Dataset with an :class:`EpochSampler`."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, IterableDataset):
        return DataLoader(data, batch_size=batch_size, num_workers=num_workers,
                          generator=torch.Generator().manual_seed(seed), pin_memory=pin_memory)
    if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
        raise ValueError(f"{name} must be a torch Dataset (with __len__ and __getitem__) or a DataLoader, "
                         f"got {type(data).__name__}")
    n = len(data)
    if n == 0:
        raise ValueError(f"{name} is empty; expected at least one sample")
    sampler = EpochSampler(n, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, pad=pad)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed), pin_memory=pin_memory)


def set_loader_epoch(loader: DataLoader, epoch: int, seed: int, owned: bool) -> None:
    """Prepare ``loader`` for ``epoch``: ``sampler.set_epoch`` and (our loaders) reseed worker seeds."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    if owned and loader.generator is not None:
        loader.generator.manual_seed(epoch_seed(seed, epoch, 1))


def split_batch(batch: Any) -> tuple[Any, Any]:
    """``(input, target)`` from a 2-tuple/list or a dict with input and target keys."""
    if isinstance(batch, (tuple, list)):
        if len(batch) != 2:
            raise ValueError(f"a batch must be an (input, target) pair, got a {type(batch).__name__} of {len(batch)} items")
        return batch[0], batch[1]
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in INPUT_KEYS if k in batch), None)
        y = next((batch[k] for k in TARGET_KEYS if k in batch), None)
        if x is None or y is None:
            raise ValueError(f"a dict batch needs an input key {INPUT_KEYS} and a target key {TARGET_KEYS}, "
                             f"got keys {sorted(batch)}")
        return x, y
    raise ValueError(f"a batch must be an (input, target) tuple or a dict, got {type(batch).__name__}")


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors (also inside tuples, lists and dicts) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.device == device else obj.to(device, non_blocking=True)
    if isinstance(obj, (tuple, list)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


def batch_len(obj: Any) -> int:
    """Leading dimension of the first tensor in ``obj``."""
    if isinstance(obj, torch.Tensor):
        return obj.shape[0] if obj.ndim else 1
    if isinstance(obj, (tuple, list)):
        return batch_len(obj[0])
    if isinstance(obj, Mapping):
        return batch_len(next(iter(obj.values())))
    raise ValueError(f"cannot find a tensor in the batch to count its samples (got {type(obj).__name__})")

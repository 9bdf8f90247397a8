"""Data-parallel helpers: process group set-up under ``torchrun`` and exact cross-rank gathers.

``torchrun --nproc_per_node=N script.py`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set. :func:`init_distributed` reads them
and joins the process group (gloo on CPU, NCCL on GPU); :func:`mlimaging.training.fit`
calls it itself, so the same script runs with one process or many.

Reference: Li S. et al. (2020). PyTorch Distributed: Experiences on Accelerating Data
Parallel Training. VLDB 13(12). arXiv:2006.15704.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "all_reduce_sum",
    "broadcast_object",
    "cleanup_distributed",
    "gather_objects",
    "gather_tensor",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
]


def is_distributed() -> bool:
    """True when a process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def init_distributed(backend: str | None = None, *, timeout_s: float = 300.0) -> tuple[int, int]:
    """Join the process group described by the ``torchrun`` environment, if any.

    Does nothing (and returns ``(0, 1)``) when ``WORLD_SIZE`` is unset or 1, and nothing
    but report when a group is already initialised.

    Parameters
    ----------
    backend
        ``"gloo"`` or ``"nccl"``; default NCCL when CUDA is available, else gloo.
    timeout_s
        Collective timeout in seconds.

    Returns
    -------
    (rank, world_size)

    Examples
    --------
    >>> init_distributed()  # a plain python process
    (0, 1)
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_available():
        raise ValueError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ValueError(f"WORLD_SIZE={world} but environment variable {key} is not set; start with torchrun")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, init_method="env://", timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def cleanup_distributed() -> None:
    """Destroy the process group if one is initialised (call once at the end of a script).

    All ranks first meet at a barrier: a rank that tears gloo down while a peer still
    talks to it can abort that peer ("terminate called without an active exception").
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all processes (returns ``t`` itself when not distributed)."""
    if is_distributed():
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_tensor(t: torch.Tensor, *, interleave: bool = False) -> torch.Tensor:
    """Concatenate ``t`` (any first-dimension length) from all ranks, on every rank.

    With ``interleave=False`` the result is rank 0's rows, then rank 1's, ... With
    ``interleave=True`` row ``i`` of the result is row ``i // W`` of rank ``i % W``: the
    original order of data sharded as ``indices[rank::W]``.
    """
    if not is_distributed():
        return t
    world = dist.get_world_size()
    n = torch.tensor([t.shape[0]], device=t.device, dtype=torch.int64)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    pad = max(counts)
    padded = t.new_zeros((pad, *t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.contiguous())
    parts = [p[:c] for p, c in zip(parts, counts, strict=True)]
    if not interleave:
        return torch.cat(parts)
    total = sum(counts)
    for r, c in enumerate(counts):
        if c != len(range(r, total, world)):
            raise ValueError(f"cannot interleave: rank {r} holds {c} rows, expected {len(range(r, total, world))}")
    out = t.new_empty((total, *t.shape[1:]))
    for r, p in enumerate(parts):
        out[r::world] = p
    return out


def broadcast_object(obj: Any, *, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """List of every rank's ``obj``, on every rank (``[obj]`` when not distributed)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out

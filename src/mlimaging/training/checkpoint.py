"""Checkpoints: atomic writes, ``weights_only`` loading and RNG state capture.

A checkpoint is a plain dict of ``state_dict``\\ s, numbers, strings, lists and tensors, so
``torch.load(path, weights_only=True)`` reads it without unpickling arbitrary objects.
:func:`mlimaging.training.fit` writes ``last.pt`` every epoch and ``best.pt`` when the
monitored value improves, each with the keys ``model``, ``optimizer``, ``scheduler``,
``epoch``, ``history``, ``monitor``, ``mode``, ``rng`` (one entry per process) and ``config``.
"""

from __future__ import annotations

import os
import random
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlimaging.training.distributed import gather_objects

__all__ = [
    "get_rng_state",
    "load_checkpoint",
    "load_failure_reason",
    "restore_checkpoint",
    "save_checkpoint",
    "set_rng_state",
    "write_checkpoints",
]


def save_checkpoint(obj: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save ``obj`` with ``torch.save`` atomically: write a temp file, fsync, then ``os.replace``.

    A process killed mid-write leaves the previous file intact (plus, at worst, a stray
    ``.tmp`` file), never a truncated checkpoint.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = save_checkpoint({"epoch": 3}, os.path.join(tmp, "last.pt"))
    ...     load_checkpoint(p)["epoch"]
    3
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable checkpoint dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle, ...
        raise ValueError(f"checkpoint {path} could not be read with weights_only=True: "
                         f"{load_failure_reason(exc)}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def load_failure_reason(exc: BaseException) -> str:
    """Why ``torch.load`` failed, in one line: its weights-only message runs over many lines of advice
    (and advises the unsafe ``weights_only=False``), a file that is no pickle gives ``KeyError``.

    Examples
    --------
    >>> load_failure_reason(KeyError(101))
    'not a PyTorch file'
    >>> load_failure_reason(RuntimeError("PytorchStreamReader failed\\n  at line 1"))
    'PytorchStreamReader failed'
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if isinstance(exc, KeyError):  # the legacy unpickler on a file that is no pickle: KeyError('101'), say so
        return "not a PyTorch file"
    if not lines:
        return type(exc).__name__
    if "weights only load failed" in lines[0].lower():  # keep the unpickler's reason, drop the advice
        detail = next((line.split("error:", 1)[1].split(" Please ", 1)[0].strip() for line in lines
                       if "unpickler error:" in line.lower()), "")
        return "not a plain PyTorch state dict" + (f" ({detail})" if detail else "")
    return lines[0]


def get_rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA, when initialised) RNG states as tensors and lists.

    Only ``weights_only``-safe types are used: the NumPy MT19937 key becomes an int64 tensor
    and Python's state a list of ints.

    Examples
    --------
    >>> import torch
    >>> state = get_rng_state()
    >>> a = torch.rand(2)
    >>> set_rng_state(state)
    >>> torch.equal(a, torch.rand(2))
    True
    """
    version, py_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": list(py_state), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`get_rng_state`."""
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    npy = state["numpy"]
    np.random.set_state((npy["name"], npy["keys"].cpu().numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def write_checkpoints(ckdir: Path, model: Any, optimizer: Any, scheduler: Any, history: Any, config: dict,
                      epoch: int, rank: int, *, step_state: dict | None = None) -> None:
    """``last.pt`` (and ``best.pt`` when ``epoch`` is the history's best) of a :func:`fit` run.

    Collective under ``torchrun``: every rank contributes its RNG state; rank 0 writes.
    """
    rng = gather_objects(get_rng_state())  # collective: every rank takes part
    if rank != 0:
        return
    ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "epoch": epoch, "history": [dict(e) for e in history.epochs], "monitor": history.monitor,
            "mode": history.mode, "rng": rng, "config": config}
    if step_state:
        ckpt["step"] = step_state
    save_checkpoint(ckpt, ckdir / "last.pt")
    if history.best_epoch == epoch:
        save_checkpoint(ckpt, ckdir / "best.pt")


def restore_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, history: Any, config: dict,
                       rank: int, world: int, *, step: Any = None) -> int:
    """Load a :func:`fit` checkpoint into the given objects; return the epoch to start from."""
    ckpt = load_checkpoint(path)
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None and ckpt.get("scheduler") is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("step") is not None:
            if step is None or not hasattr(step, "load_state_dict"):
                raise ValueError("it holds the state of a training step, and fit was given no step to restore it into")
            step.load_state_dict(ckpt["step"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"checkpoint {path} does not match the model/optimizer/scheduler given to fit: {exc}") from exc
    old = ckpt.get("config", {})
    changed = [k for k in ("seed", "batch_size", "shuffle", "world_size", "monitor", "mode")
               if k in old and old[k] != config[k]]
    if old.get("precision", "fp32") != config.get("precision", "fp32"):
        changed.append("precision")
    if changed:
        warnings.warn(f"resuming {path} with different {changed}: the run will not match an uninterrupted one",
                      stacklevel=3)
    history.epochs[:] = [dict(e) for e in ckpt["history"]]
    rng = ckpt.get("rng") or []
    if len(rng) == world:
        set_rng_state(rng[rank])
    else:
        warnings.warn(f"{path} holds RNG states of {len(rng)} processes, not {world}; random streams restart",
                      stacklevel=3)
    return int(ckpt["epoch"]) + 1

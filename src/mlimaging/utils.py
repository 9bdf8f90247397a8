"""Small helpers shared by several areas (validation, seeding, array conversion, threads).

NumPy and torch are imported inside the functions that need them, so that the command line
can import this module (for :func:`set_torch_threads`) without paying for either.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["as_numpy", "available_cores", "check_spacing", "package_versions", "seed_everything",
           "set_torch_threads"]


def as_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a NumPy array (tensors are detached and moved to the CPU)."""
    import numpy as np

    torch = sys.modules.get("torch")  # a tensor exists only if torch was imported
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_spacing(
    spacing: float | Sequence[float] | None, ndim: int, *, name: str = "spacing"
) -> tuple[float, ...]:
    """Validate a voxel spacing and return it as one positive float per axis.

    ``None`` means 1.0 on every axis; a scalar is repeated on every axis.

    Raises
    ------
    ValueError
        If the spacing has the wrong length, or a value that is not finite and positive.

    Examples
    --------
    >>> check_spacing(None, 3)
    (1.0, 1.0, 1.0)
    >>> check_spacing((0.8, 0.8, 2.5), 3)
    (0.8, 0.8, 2.5)
    """
    import numpy as np

    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        values = (float(spacing),) * ndim  # type: ignore[arg-type]
    else:
        values = tuple(float(s) for s in spacing)  # type: ignore[union-attr]
    if len(values) != ndim:
        raise ValueError(f"{name} must have one value per spatial axis ({ndim}), got {len(values)}: {values}")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{name} values must be finite and positive, got {values}")
    return values


def seed_everything(seed: int) -> Any:
    """Seed Python, NumPy and PyTorch and return a ``torch.Generator`` seeded with ``seed``."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def package_versions(names: Sequence[str] = ("mlimaging", "torch", "numpy", "scipy", "scikit-image",
                                             "scikit-learn", "nibabel", "pydicom", "matplotlib")) -> dict[str, str]:
    """Installed versions of ``names`` (``"not installed"`` for missing ones)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = "not installed"
    return out


def available_cores() -> int:
    """Number of CPU cores this process may run on (its affinity mask where the OS has one).

    Examples
    --------
    >>> available_cores() >= 1
    True
    """
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # macOS and Windows have no affinity mask
        return max(os.cpu_count() or 1, 1)


def set_torch_threads(threads: int | None = None) -> int:
    """Set the number of threads torch uses for its operators; the one place that does so.

    The command line calls it once with ``mlimaging --threads N`` (experiments and commands
    never change it themselves). ``None`` means :func:`available_cores`. If torch is
    imported already, ``torch.set_num_threads`` is called; otherwise ``OMP_NUM_THREADS`` is
    set, which torch reads when it is first imported (so ``mlimaging --help`` never imports
    torch), and ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (idle threads sleep rather than
    spin, which matters on cores shared with other processes). Returns the number of threads.

    Raises
    ------
    ValueError
        If ``threads`` is not a positive integer.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> set_torch_threads(1), torch.get_num_threads()
    (1, 1)
    >>> _ = set_torch_threads(before)
    """
    if threads is None:
        threads = available_cores()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        # Idle OpenMP threads sleep instead of spinning (unless the user chose otherwise): on
        # cores shared with other processes, spinning threads made a 2-thread AlexNet epoch
        # up to 13x slower than one thread; sleeping ones keep it at about 1x.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return threads

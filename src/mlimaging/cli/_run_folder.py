"""The run folder shared by the ``train ...`` commands: one layout, one resume rule.

Every ``mlimaging train X --out OUT`` writes::

    OUT/config.json, metrics.json, report.html, figures/, tables/   (a reporting.Run)
    OUT/checkpoints/last.pt, best.pt                                (fit's checkpoints)
    OUT/model.pt                                                    best weights + what inference needs

A fresh run needs an empty or missing ``OUT`` (``--force`` clears a folder that holds only
these entries); ``--resume`` needs ``OUT/checkpoints/last.pt`` and ``OUT/config.json`` and
continues with the stored settings (options given again must agree with them).
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RUN_ENTRIES", "ExportBest", "as_option", "check_device", "check_positive", "open_run", "prepare_out",
           "read_checkpoint", "resolve_settings", "run_config"]

#: What a run folder of a ``train`` command (or ``fl simulate``) may hold; ``--force`` deletes nothing else.
RUN_ENTRIES = frozenset({"config.json", "metrics.json", "report.html", "figures", "tables", "checkpoints",
                         "model.pt", "history.json", ".config.json.tmp", ".metrics.json.tmp"})


def check_positive(value: Any, option: str, *, integer: bool = False) -> None:
    """``ValueError`` naming ``option`` unless ``value`` is None or a positive (integer) number."""
    if value is None:
        return
    if (integer and int(value) < 1) or not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{option} must be a positive {'integer' if integer else 'number'}, got {value}")


def check_device(device: str, option: str = "--device") -> None:
    """``ValueError`` naming ``option`` unless torch can put a tensor on ``device`` here.

    Checked before a command creates its run folder, so that ``--device cuda`` on a machine
    without a GPU (or a misspelt device) is one red line instead of a traceback that leaves
    a half-written folder behind.
    """
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{option} {device!r} is not a device; give cpu, cuda, cuda:N or mps") from None
    if dev.type == "cpu":
        return
    try:
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:120]
        raise ValueError(f"{option} {device}: this machine's PyTorch cannot use it ({reason}); "
                         "use --device cpu") from None


def prepare_out(out: Path, *, resume: bool, force: bool, command: str, entries: frozenset[str] = RUN_ENTRIES,
                resumable: bool = True) -> tuple[dict[str, Any] | None, bool]:
    """Settings of the run to resume (None for a fresh run), and whether ``out`` must be cleared first.

    ``entries`` are the names ``command`` writes in a run folder (``--force`` deletes a folder holding
    nothing else); ``resumable=False`` for a command without ``--resume`` (its messages offer none).

    Raises
    ------
    FileNotFoundError
        ``--resume`` on a folder that does not exist.
    FileExistsError
        A fresh run in a non-empty folder without ``--force``.
    ValueError
        ``--resume`` with ``--force``; ``--resume`` on a folder without ``checkpoints/last.pt``
        or ``config.json``; ``--force`` on a folder holding files the command did not write.
    """
    if resume and force:
        raise ValueError("--resume and --force exclude each other: continue the run, or delete it and start again")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    if resume:
        if not out.exists():
            raise FileNotFoundError(f"--resume: {out} does not exist, so there is no run to resume; "
                                    "leave out --resume to start one")
        if not (out / "checkpoints" / "last.pt").is_file():
            raise ValueError(f"--resume: {out} holds no checkpoints/last.pt to resume from")
        cfg_file = out / "config.json"
        if not cfg_file.is_file():
            raise ValueError(f"--resume: {cfg_file} is missing, so the run's settings are unknown")
        return json.loads(cfg_file.read_text())["config"], False
    if not out.exists() or not any(out.iterdir()):
        return None, out.exists()
    if not force:
        hint = " or --resume to continue it" if resumable else ""
        raise FileExistsError(f"--out {out} already exists; pass --force to overwrite it{hint}")
    foreign = sorted(p.name for p in out.iterdir() if p.name not in entries)
    if foreign:
        raise ValueError(f"--force: {out} holds files that {command} did not write ({', '.join(foreign[:5])}); "
                         "refusing to delete them, choose another --out")
    return None, True


def as_option(key: str, value: Any) -> str:
    """The setting ``key`` as typed on the command line: a boolean as its flag (``--x`` / ``--no-x``),
    anything else as ``--x value`` (underscores become dashes)."""
    flag = key.replace("_", "-")
    return (f"--{flag}" if value else f"--no-{flag}") if isinstance(value, bool) else f"--{flag} {value}"


def resolve_settings(given: Mapping[str, Any], stored: Mapping[str, Any] | None,
                     defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The run's settings: ``given`` options over ``defaults`` for a fresh run; the stored ones on
    resume, where an option given again must have the stored value (``ValueError`` lists those
    that differ)."""
    if stored is None:
        return {k: (defaults[k] if given.get(k) is None else given[k]) for k in defaults}

    def used(k: str) -> Any:
        v = stored.get(k)
        return as_option(k, v) if isinstance(v, bool) else v

    changed = [f"{as_option(k, given[k])} (the run used {used(k)})"
               for k in defaults if given.get(k) is not None and given[k] != stored.get(k)]
    if changed:
        raise ValueError("--resume continues the run with its own settings; these differ: " + "; ".join(changed))
    return {k: stored.get(k, defaults[k]) for k in defaults}


def open_run(out: Path, name: str, config: Mapping[str, Any], *, stored: Mapping[str, Any] | None, clear: bool,
             command: str, console: Any) -> Any:
    """The :class:`~mlimaging.reporting.Run` of ``out``: created afresh (after clearing ``out`` when
    ``clear``), or reopened with its config and metrics when resuming."""
    from mlimaging.reporting import Run

    if clear:  # only now, once the data and the model are known to work
        shutil.rmtree(out)
    if stored is None:
        return Run.create(name, config, path=out, command=command, console=console)
    previous = json.loads((out / "config.json").read_text())
    previous.pop("error", None)
    run = Run(out, name, previous, console=console)
    if (out / "metrics.json").is_file():
        run.metrics = json.loads((out / "metrics.json").read_text())
    return run


def read_checkpoint(path: Path, written_by: str) -> dict[str, Any]:
    """:func:`~mlimaging.training.load_checkpoint` of ``--checkpoint path``, its ``ValueError`` turned into
    one line that names the command writing such files (``written_by``)."""
    from mlimaging.training import load_checkpoint

    try:
        return load_checkpoint(path)
    except ValueError:
        raise ValueError(f"--checkpoint {path} is not a checkpoint readable with torch.load(weights_only=True); "
                         f"use the model.pt written by {written_by}") from None


def run_config(checkpoint: Path) -> dict[str, Any]:
    """The ``config.json`` of the run folder that holds ``checkpoints/<checkpoint>`` (``{}`` when there is
    none): fit's ``last.pt`` / ``best.pt`` carry no metadata, their run folder does."""
    cfg = checkpoint.resolve().parent.parent / "config.json"
    return json.loads(cfg.read_text()) if cfg.is_file() else {}


class ExportBest:
    """fit callback: write ``model.pt`` = ``{"model": weights, key: meta, "epoch": ..., monitor: ...}``
    whenever the monitored value reaches a new best (rank 0 only)."""

    def __init__(self, path: Path, key: str, meta: Mapping[str, Any]) -> None:
        self.path, self.key, self.meta = path, key, dict(meta)

    def on_epoch_end(self, state: Any) -> None:
        from mlimaging.training import save_checkpoint

        if state.rank == 0 and state.history.best_epoch == state.epoch:
            model = {k: v.detach().cpu() for k, v in state.model.state_dict().items()}
            monitor = state.history.monitor
            save_checkpoint({"model": model, self.key: self.meta, "epoch": state.epoch,
                             monitor: state.logs.get(monitor)}, self.path)

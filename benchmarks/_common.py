"""Helpers shared by the benchmark scripts (run as ``python benchmarks/<name>.py``, which puts
this folder on ``sys.path``): the torchvision shim for the oracles, a CPU-time budget for
``fit``, alternating side-by-side timing, and the table of targets each script prints."""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def install_torchvision_shim() -> None:
    """timm, segment-anything and lightly import torchvision, whose PyPI wheel (built for CUDA) cannot
    load its C operators on the CPU build of torch, so ``import torchvision`` fails. The test suite's
    shim (tests/_torchvision_cpu.py, also used by tests/conftest.py) defines the two operators that
    import needs; load it by path (tests/ is not a package) before importing the oracles."""
    spec = importlib.util.spec_from_file_location("_torchvision_cpu", ROOT / "tests" / "_torchvision_cpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.install()


class CPUBudget:
    """fit callback: stop after the epoch during which the process CPU time spent in fit reached ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.process_time()

    def on_epoch_end(self, state: Any) -> None:
        if time.process_time() - self.start >= self.seconds:
            state.stop_training = True


def alternate(runners: dict[str, Callable[[], Any]], *, repeats: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """CPU and wall time of each runner, ``repeats`` times, alternating the order (after one warm-up each)."""
    for run in runners.values():
        run()
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    wall: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            runners[name]()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - t0)
    return cpu, wall


def print_targets(title: str, rows: list[dict[str, Any]], cells: Callable[[dict[str, Any]], tuple[str, str, str]],
                  *, summary: str, width: int) -> None:
    """Print one table row per case (case, result, target, met, details; ``cells(row)`` gives the
    result, target and details texts), then the ``summary`` line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("case", "result", "target", "met", "details"):
        table.add_column(col, justify="left" if col in ("case", "details") else "right")
    for r in rows:
        shown, target, details = cells(r)
        table.add_row(r["case"], shown, target, "yes" if r["passed"] else "NO", details)
    console = Console(width=width)
    console.print(table)
    console.print(summary)


def merge_reports(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with the rows of ``new``'s cases replaced (in place, in order); every row kept from
    ``old`` gets ``"from_run"`` (that run's seconds, CPU seconds and versions) and the merged report lists
    the runs in ``"merged_runs"``."""
    if (old.get("quick"), old.get("n_train"), old.get("n_test"), old.get("torch_threads")) != (
            new["quick"], new["n_train"], new["n_test"], new["torch_threads"]):
        raise SystemExit("the existing results were measured with other settings (quick, data or "
                         "threads): rerun every case instead of merging")
    fresh = {r["case"]: r for r in new["rows"]}
    keep = {k: old.get(k) for k in ("seconds", "cpu_seconds", "versions")}
    rows = [fresh.pop(r["case"]) if r["case"] in fresh else {**r, "from_run": r.get("from_run", keep)}
            for r in old["rows"]]
    rows += list(fresh.values())
    runs = old.get("merged_runs", [{"cases": [r["case"] for r in old["rows"]], **keep}])
    runs = [*runs, {"cases": [r["case"] for r in new["rows"]], "seconds": new["seconds"],
                    "cpu_seconds": new["cpu_seconds"], "versions": new["versions"]}]
    return {**new, "rows": rows, "all_passed": all(r["passed"] for r in rows), "merged_runs": runs}

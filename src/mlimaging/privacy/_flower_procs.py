"""Files and processes of :func:`mlimaging.privacy.flower.deploy`: the app it submits, free ports, waiting
for a listener, CPU slots for the ClientApps, CPU accounting, and stopping a whole tree of processes
(zygote, SuperLink, SuperNodes, SuperExecs, app processes) for sure.

Linux only (it reads ``/proc``); a pid is signalled only while its start time matches the one
recorded, so a reused pid is never hit.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["alive"]

INSTALL_HINT = 'Flower is not installed; install the extra: pip install "mlimaging[fl]"'


def _write_app(app_dir: Path, run_config: Mapping[str, Any], app_module: str) -> None:
    """The Flower app that ``flwr run`` submits: ``pyproject.toml`` (components, run config) and the module."""
    app_dir.mkdir(parents=True, exist_ok=True)
    cfg = "\n".join(f"{k} = {json.dumps(v)}" for k, v in run_config.items())
    (app_dir / "pyproject.toml").write_text(f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "mlimaging-flower"
version = "1.0.0"
description = "FedAvg on mnist5k with mlimaging's engine"
license = "MIT"
dependencies = []

[tool.flwr.app]
publisher = "mlimaging"

[tool.flwr.app.components]
serverapp = "{app_module}:server_app"
clientapp = "{app_module}:client_app"

[tool.flwr.app.config]
{cfg}
""")
    (app_dir / f"{app_module}.py").write_text(
        '"""The Flower app: mlimaging\'s ServerApp and ClientApp."""\n\n'
        "from mlimaging.privacy.flower import make_client_app, make_server_app\n\n"
        "server_app = make_server_app()\nclient_app = make_client_app()\n")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: Any, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before listening on port {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:g} s")


def _executable(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise ImportError(f"the Flower executable {name!r} was not found; {INSTALL_HINT}")
    return found


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """``(pid, fields of /proc/pid/stat after the command name)`` of every process (Linux)."""
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                yield int(d), f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue


def _proc_table() -> dict[int, tuple[int, str]]:
    """``pid -> (parent pid, start time)`` of every live (not zombie) process, from /proc (Linux)."""
    return {pid: (int(fields[1]), fields[19]) for pid, fields in _proc_stats() if fields[0] != "Z"}


def _descendants(roots: list[int]) -> dict[int, str]:
    """Every live process below ``roots`` (inclusive), with its start time (so that a reused
    pid is never signalled). Flower starts its SuperExec and app processes in new sessions,
    so process groups alone do not reach them."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = {}, [r for r in roots if r in table]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found[pid] = table[pid][1]
            stack.extend(children.get(pid, []))
    return found


def _signal_tree(tree: Mapping[int, str], sig: int) -> None:
    table = _proc_table()
    for pid, started in tree.items():
        if pid in table and table[pid][1] == started:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def alive(tree: Mapping[int, str]) -> list[int]:
    """The pids of ``tree`` (``pid -> start time``, as :func:`deploy` records them) still running.

    Examples
    --------
    >>> alive({os.getpid(): _proc_table()[os.getpid()][1]}) == [os.getpid()]
    True
    """
    table = _proc_table()
    return [pid for pid, started in tree.items() if pid in table and table[pid][1] == started]


def _with_env(entry: str) -> dict[int, str]:
    """Every live process whose environment holds ``entry`` (``"NAME=value"``), with its start time.
    A process keeps the environment it started with, and forks inherit it, also once orphaned."""
    want, found = entry.encode(), {}
    for pid, (_, started) in _proc_table().items():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if want in f.read().split(b"\0"):
                    found[pid] = started
        except OSError:
            continue
    return found


def _stop(procs: list[subprocess.Popen], seen: dict[int, str], grace: float = 5.0, *,
          env_mark: str | None = None) -> None:
    """SIGTERM every process we started and every descendant seen, SIGKILL what is left after
    ``grace`` s, and reap our direct children. ``env_mark`` (``"NAME=value"`` set in the environment
    of every process of the deployment) also reaches a process that left the tree before it was seen
    (forked by a parent that was being stopped, then orphaned): it is killed and waited for too."""
    seen.update(_descendants([p.pid for p in procs if p.poll() is None]))
    _signal_tree(seen, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for p in procs:
            p.poll()
        if not alive(seen):
            break
        time.sleep(0.1)
    for _ in range(2):  # a process forked while its parent was being stopped can still appear once
        seen.update(_descendants([p.pid for p in procs if p.poll() is None]))
        if env_mark is not None:
            seen.update(_with_env(env_mark))
        _signal_tree(seen, signal.SIGKILL)
        for p in procs:
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + grace  # SIGKILL is not instant: wait until the kernel is done
        while alive(seen) and time.monotonic() < deadline:
            time.sleep(0.05)


def tree_cpu_seconds(roots: list[int], *, by_name: bool = False, labels: Mapping[int, str] | None = None) -> Any:
    """CPU seconds (user + system) used so far by ``roots`` and every process below them, zombies
    included: each process's own time plus that of the children it has already reaped (which
    have left the process table, so nothing is counted twice). ``by_name=True`` returns a dict
    ``{program: seconds}`` (program: the basename of the executable or script, or the module of
    ``python -m``) instead of the total; ``labels`` (``pid -> name``) names processes whose
    command line does not tell (forks of a zygote), and every process below a labelled one gets
    its label.

    Examples
    --------
    >>> tree_cpu_seconds([os.getpid()]) > 0
    True
    """
    tick = os.sysconf("SC_CLK_TCK")
    stats = {pid: (int(fields[1]), sum(int(x) for x in fields[11:15]) / tick) for pid, fields in _proc_stats()}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    labels = labels or {}
    names: dict[str, float] = {}
    stack: list[tuple[int, str | None]] = [(r, None) for r in roots if r in stats]
    done: set[int] = set()
    while stack:
        pid, inherited = stack.pop()
        if pid not in done:
            done.add(pid)
            label = labels.get(pid) or inherited
            name = (label or _program(pid)) if by_name else ""
            names[name] = names.get(name, 0.0) + stats[pid][1]
            stack.extend((c, label) for c in children.get(pid, []))
    return names if by_name else sum(names.values())


class _Child:
    """A process of the deployment that we did not start ourselves (forked by the zygote), watched
    through its pid and start time; ``poll()`` as ``subprocess.Popen``'s (-1 once it is gone)."""

    def __init__(self, pid: int) -> None:
        self.pid = int(pid)
        self.started = _proc_table().get(self.pid, (0, ""))[1]
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not alive({self.pid: self.started}):
            self.returncode = -1
        return self.returncode


def _wait_pids(path: Path, zygote: subprocess.Popen, timeout: float, *, complete: bool) -> dict[str, int]:
    """The ``{name: pid}`` that the zygote writes after each of its stages (``complete``: after the last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = json.loads(path.read_text())
            if got["complete"] or not complete:
                return {k: int(v) for k, v in got["pids"].items()}
        except (FileNotFoundError, ValueError, KeyError):
            pass
        if zygote.poll() is not None:
            raise RuntimeError(f"the deployment's zygote exited with code {zygote.returncode} before forking "
                               f"(see {path.parent / 'zygote.log'})")
        time.sleep(0.05)
    raise TimeoutError(f"the deployment's zygote did not fork its processes within {timeout:g} s")


def _label(name: str) -> str:
    """The program name that the CPU table shows for a process forked by the zygote (``name`` in its spec)."""
    if name == "superlink":
        return "flower-superlink"
    if name.startswith("supernode-"):
        return "flower-supernode"
    return "superexec+ServerApp" if name == "superexec-serverapp" else "superexec+ClientApps"


def _program(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not argv:
        return "?"
    if len(argv) > 2 and argv[1] == "-m":
        return argv[2]
    if len(argv) > 1 and os.path.basename(argv[0]).startswith("python"):
        return os.path.basename(argv[1])
    return os.path.basename(argv[0])


@contextmanager
def _cpu_slot(folder: Path, slots: int, wait: float = 0.02) -> Iterator[int | None]:
    """Hold one of ``slots`` CPU slots (an exclusive ``flock`` on ``folder/cpu-slot-<k>.lock``) for the
    body; wait (checking every ``wait`` s) while all are held. The kernel drops a lock when its process
    dies, so a killed client never keeps a slot. ``slots <= 0``: no limit (yields ``None``).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d, _cpu_slot(Path(d), 2) as k:
    ...     k
    0
    """
    if slots <= 0:
        yield None
        return
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for k in range(slots):
            fd = os.open(folder / f"cpu-slot-{k}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield k
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            return
        time.sleep(wait)

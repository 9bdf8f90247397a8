r"""One warm process that forks every process of a Flower deployment: a zygote.

Started by :func:`mlimaging.privacy.flower.deploy` as ``python .../_flower_zygote.py --spec SPEC.json`` (as
a script, so that ``mlimaging.privacy``'s package imports wait for stage 2). In two stages, it imports
each thing once and ``fork``\ s the deployment's long-lived processes from that warm state: stage 1
imports Flower's SuperLink and SuperNode (about 1.2 CPU s) and forks the ``flower-superlink`` and one
``flower-supernode`` per client, so that the run can be submitted at once; stage 2 imports torch,
Flower's app runtimes and mlimaging, loads the run's data and takes one tiny training step (about 3.5
CPU s), and forks one warm SuperExec (:mod:`mlimaging.privacy._flower_exec`) beside each SuperNode for
the ClientApps and one beside the SuperLink for the ServerApp. Each is still a separate process on
127.0.0.1 running Flower's own entry point (``flower_superlink()``, ``flower_supernode()``, Flower's
SuperExec loop) with its own command line in ``sys.argv`` and its own log file; only the start-up is
shared. Measured on our 2-core machine (CPU seconds, one process each): ``import torch`` 1.65,
``flwr.supernode.cli`` 1.4, the warm SuperExec 2.6 + about 1 s of torch's first step, so the 10
processes of a 4-client deployment paid about 30 CPU s of start-up before, and pay it once now (about
5 s).

Before forking, the zygote shortens the SuperNode's fixed waits (:func:`patch_supernode_waits`):
Flower 1.42's SuperNode sleeps a hard-coded 3 s after every pull that found no message, and 0.5 s
between checks for its ClientApp's reply, so a round's message waited 1.5 s on average (up to 3 s)
before a client saw it. Each child is tied to the zygote and the zygote to the process that started
it (``PR_SET_PDEATHSIG``: ``SIGTERM`` when the parent dies, even by ``SIGKILL``); the zygote reaps its
children, forwards ``SIGTERM``/``SIGINT`` to them and exits once they are all gone. Fork safety:
nothing before a fork opens a gRPC channel, an HTTP client or a thread (checked: the zygote refuses
to fork with more than one thread).

The spec (JSON): ``{"warm": run config or null, "idle_wait": s, "pids": path, "parent": pid of the
process that started the zygote (it dies with it), "children": [{"name",
"role": "superlink" | "supernode" | "exec", "argv": [...], "log": path, "parent": name (exec only),
"task_type": "clientapp" | "serverapp" (exec only)}]}``; after each stage the zygote writes
``{"pids": {name: pid}, "complete": bool}`` to ``pids``. Linux only (``fork``, ``prctl``).

References
----------
Flower 1.42: ``flwr.superlink.cli.flower_superlink``, ``flwr.supernode.cli.flower_supernode``,
``flwr.supernode.start_client_internal`` (the SuperNode's loop and its fixed sleeps).
The zygote pattern: Android's Zygote process (one preloaded VM forked per app).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

__all__ = ["patch_supernode_waits"]

#: Seconds a SuperNode waits after a pull that found no message (Flower 1.42: a fixed 3 s), and between
#: its checks for a ClientApp's reply (Flower: 0.5 s; a lookup in the node's in-memory state).
IDLE_WAIT, REPLY_WAIT = 0.2, 0.05
_FLOWER_TESTED = "1.42."
_log = logging.getLogger(__name__)


class _ShortSleeps:
    """Stands in for the ``time`` module inside one Flower module: every attribute is ``time``'s, except
    that ``sleep(s)`` sleeps ``idle`` for Flower's fixed 3 s waits and ``min(s, reply)`` otherwise."""

    def __init__(self, idle: float, reply: float) -> None:
        self.idle, self.reply = float(idle), float(reply)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(self.idle if seconds >= 3 else min(seconds, self.reply))


def patch_supernode_waits(idle: float = IDLE_WAIT, reply: float = REPLY_WAIT) -> bool:
    r"""Shorten the fixed waits of Flower's SuperNode loop, in this process (and the ones it forks).

    Flower 1.42's ``start_client_internal`` sleeps ``time.sleep(3)`` after every pull from the
    SuperLink that returned no message, and ``time.sleep(0.5)`` while it waits for its ClientApp's
    reply, with no setting for either. A message sent while a node sleeps waits for the end of the
    sleep, on average half of it: :math:`\mathbb{E}[\text{latency}] = T/2` = 1.5 s per round at
    :math:`T = 3` s, 0.25 s at the ``idle`` = 0.5 s that :func:`~mlimaging.privacy.flower.deploy` uses
    (:data:`~mlimaging.privacy.flower.SUPERNODE_IDLE_WAIT`; each idle pull is one small HTTP request
    to the SuperLink, so a shorter wait costs CPU: 4 idle nodes 0.135 CPU s per second at 0.2 s, 0.090
    at 0.5 s). The module's ``time`` is replaced by a stand-in whose ``sleep`` maps 3 s to
    ``idle`` and caps the others at ``reply``; nothing else of Flower changes.

    Guarded: applied only to a Flower 1.42 whose module still uses ``time.sleep(3)`` through a
    module-level ``time``; otherwise nothing is changed, a note is logged and ``False`` returned (the
    deployment then runs with Flower's own waits). Calling it again re-applies the new values;
    :func:`restore_supernode_waits` undoes it.

    Examples
    --------
    >>> patch_supernode_waits(0.2, 0.05)  # doctest: +SKIP
    True
    """
    try:
        import inspect

        import flwr
        from flwr.supernode import start_client_internal as sci
    except ImportError:
        return False
    version = getattr(flwr, "__version__", "")
    current = getattr(sci, "time", None)
    try:
        source = inspect.getsource(sci.start_client_internal)
    except (OSError, TypeError, AttributeError):
        source = ""
    if not (version.startswith(_FLOWER_TESTED) and (current is time or isinstance(current, _ShortSleeps))
            and "time.sleep(3)" in source):
        _log.warning("Flower %s: the SuperNode's idle wait is not the expected `time.sleep(3)` of Flower %sx; "
                     "left unpatched (each round may wait up to 3 s longer)", version, _FLOWER_TESTED)
        return False
    sci.time = _ShortSleeps(idle, reply)
    return True


def restore_supernode_waits() -> None:
    """Undo :func:`patch_supernode_waits` (Flower's own ``time`` module back in place).

    Examples
    --------
    >>> restore_supernode_waits()  # doctest: +SKIP
    """
    try:
        from flwr.supernode import start_client_internal as sci
    except ImportError:
        return
    if isinstance(getattr(sci, "time", None), _ShortSleeps):
        sci.time = time


def _exec_child(name: str, address: str, parent: str, task_type: str, logs: Path) -> dict[str, Any]:
    """A warm SuperExec (:mod:`mlimaging.privacy._flower_exec`) for ``task_type`` tasks served at
    ``address``, which exits with the process ``parent``."""
    return {"name": name, "role": "exec", "parent": parent, "task_type": task_type, "log": str(logs / f"{name}.log"),
            "argv": ["mlimaging.privacy._flower_exec", "--runtime-api-address", address, "--task-type", task_type]}


def deployment_spec(*, port: int, clients: int, logs: Path, pids: Path, warm: dict[str, Any] | None,
                    idle_wait: float = IDLE_WAIT) -> dict[str, Any]:
    """The zygote's spec of a deployment: a SuperLink on ``127.0.0.1:port`` in process isolation with a
    warm SuperExec for its ServerApp, and ``clients`` SuperNodes (free ports, node config
    ``partition-id=k num-partitions=clients``), each with a warm SuperExec for its ClientApps.

    Examples
    --------
    >>> spec = deployment_spec(port=9000, clients=2, logs=Path("logs"), pids=Path("pids.json"), warm=None)
    >>> [c["name"] for c in spec["children"]]
    ['superlink', 'superexec-serverapp', 'supernode-0', 'superexec-0', 'supernode-1', 'superexec-1']
    """
    from mlimaging.privacy._flower_procs import _free_port

    children = [{"name": "superlink", "role": "superlink", "log": str(logs / "superlink.log"),
                 "argv": ["flower-superlink", "--insecure", "--host", "127.0.0.1", "--port", str(port),
                          "--isolation", "process", "--disable-runtime-dependency-installation"]},
                _exec_child("superexec-serverapp", f"127.0.0.1:{port}", "superlink", "serverapp", logs)]
    for k in range(clients):
        node_port = _free_port()
        children.append({"name": f"supernode-{k}", "role": "supernode", "log": str(logs / f"supernode-{k}.log"),
                         "argv": ["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}",
                                  "--node-config", f"partition-id={k} num-partitions={clients}",
                                  "--isolation", "process", "--host", "127.0.0.1", "--port", str(node_port)]})
        children.append(_exec_child(f"superexec-{k}", f"127.0.0.1:{node_port}", f"supernode-{k}", "clientapp", logs))
    return {"warm": warm, "idle_wait": float(idle_wait), "pids": str(pids), "children": children, "parent": os.getpid()}


def _preload_flower() -> None:
    """Stage 1: import what the SuperLink and the SuperNodes run (Flower only; about 1.2 CPU s)."""
    from flwr.superlink import main as superlink_main  # noqa: F401 - the SuperLink's FastAPI app
    from flwr.superlink.cli import flower_superlink  # noqa: F401
    from flwr.supernode.cli import flower_supernode  # noqa: F401


def _preload_apps(warm: dict[str, Any] | None) -> None:
    """Stage 2: import what the SuperExecs and the apps run (torch, mlimaging, Flower's app runtimes) and
    (``warm``) load the run's data and take one tiny training step."""
    import torch  # noqa: F401
    from flwr.clientapp import ClientApp  # noqa: F401
    from flwr.serverapp import ServerApp  # noqa: F401
    from flwr.supercore.superexec import run_superexec  # noqa: F401
    from flwr.superlink.runtime import run_serverapp  # noqa: F401
    from flwr.supernode.runtime import run_clientapp  # noqa: F401

    from mlimaging.privacy import _flower_exec, flower

    if warm is not None:
        _flower_exec._warm_up(flower._config(warm))


def _die_with_parent(parent: int) -> None:
    """``SIGTERM`` this process when ``parent`` (the zygote) dies (Linux ``PR_SET_PDEATHSIG``)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the zygote died before prctl took effect
        os._exit(1)


def _run_child(child: dict[str, Any], parent: int, pids: dict[str, int]) -> None:
    """Body of a forked child: its own log and argv, then Flower's entry point for its role; never returns."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        _die_with_parent(parent)
        fd = os.open(child["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.argv = list(child["argv"])
        role = child["role"]
        if role == "superlink":
            from flwr.superlink.cli.flower_superlink import flower_superlink

            flower_superlink()
        elif role == "supernode":
            from flwr.supernode.cli.flower_supernode import flower_supernode

            flower_supernode()
        elif role == "exec":
            from mlimaging.privacy._flower_exec import serve

            serve(child["argv"][child["argv"].index("--runtime-api-address") + 1],
                  parent_pid=pids.get(child.get("parent", "")), task_type=child.get("task_type", "clientapp"))
        else:
            raise ValueError(f"unknown role {role!r}")
        code = 0
    except SystemExit as e:  # Flower's processes end with flwr_exit -> sys.exit(code)
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - report in the child's log and leave
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _stage(child: dict[str, Any]) -> int:
    return 2 if child["role"] == "exec" else 1


def run(spec: dict[str, Any]) -> int:
    """Preload and fork the children of ``spec`` in two stages (writing their pids after each), then wait until
    they have all exited."""
    children: dict[int, str] = {}
    stopping = {"count": 0}

    def forward(signum: int, frame: Any) -> None:
        stopping["count"] += 1
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM if stopping["count"] == 1 else signal.SIGKILL)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if spec.get("parent"):  # deploy's process: if it is killed outright, the zygote (and so every child) goes too
        _die_with_parent(int(spec["parent"]))
    patched = patch_supernode_waits(float(spec.get("idle_wait", IDLE_WAIT)))
    me, pids = os.getpid(), {}

    def fork_stage(stage: int) -> None:
        if threading.active_count() != 1:
            raise RuntimeError(f"will not fork with {threading.active_count()} threads: {threading.enumerate()}")
        gc.collect()
        gc.freeze()  # keep the preloaded objects' pages shared with the children (no gc writes to them)
        for child in spec["children"]:
            if stopping["count"] or _stage(child) != stage:
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _run_child(child, me, pids)
            children[pid] = child["name"]
            pids[child["name"]] = pid
        tmp = spec["pids"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"pids": pids, "complete": stage == 2}, f)
        os.replace(tmp, spec["pids"])
        print(f"zygote {me}: stage {stage} forked after {time.process_time():.2f} CPU s", flush=True)

    # stage 1: the SuperLink and the SuperNodes need Flower only, so they start (and `flwr run` can submit the
    # run) while stage 2 imports torch and mlimaging and loads the data for the SuperExecs and the apps
    _preload_flower()
    print(f"zygote {me}: SuperNode waits {'shortened' if patched else 'left as Flower has them'}", flush=True)
    fork_stage(1)
    if not stopping["count"]:
        _preload_apps(spec.get("warm"))
        fork_stage(2)
    if stopping["count"]:
        forward(signal.SIGTERM, None)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        name = children.pop(pid, None)
        if name is not None:
            print(f"zygote: {name} (pid {pid}) exited with status {os.waitstatus_to_exitcode(status)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> None:
    """``python .../_flower_zygote.py --spec SPEC.json`` (``python -m`` works too, importing more first)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON file: the children to fork (see the module doc)")
    args = parser.parse_args(argv)
    with open(args.spec) as f:
        spec = json.load(f)
    sys.exit(run(spec))


if __name__ == "__main__":
    # started as a script (so that `mlimaging.privacy`'s package imports wait for stage 2): its folder is not a
    # place to import modules from
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)
    main()

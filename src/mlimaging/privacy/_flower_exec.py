r"""A warm SuperExec in ``--isolation process``: import once, fork a ClientApp or ServerApp per task.

Flower 1.42 runs every ClientApp message as a fresh ``flwr-clientapp`` process that a SuperExec
starts (``flower-superexec``, spawned by the SuperNode in its default ``subprocess`` isolation),
and every run's ServerApp as a fresh ``flwr-serverapp`` (spawned by the SuperLink's SuperExec).
A ``flwr-clientapp`` handles exactly one task (its token) and exits, so every round of every
client pays a new interpreter, ``import torch``, ``import flwr``, ``import mlimaging`` and the
loading of mnist5k (about 3.5 CPU s per client per round on our machine). Flower's own remedy,
warm executor pools, exists only for its Kubernetes executor.

This module is the SuperExec of :func:`mlimaging.privacy.flower.deploy`: one beside each SuperNode
(ClientApp tasks) and one beside the SuperLink (the ServerApp task), all run with
``--isolation process`` and forked, warm, from the deployment's zygote
(:mod:`mlimaging.privacy._flower_zygote`; ``python -m`` this module starts one on its own). It is
Flower's own SuperExec loop (:func:`flwr.supercore.superexec.run_superexec.run_superexec`: acquire
a task from the Runtime API, launch it) with one difference: its executor does not ``exec`` a new
``flwr-clientapp``/``flwr-serverapp``; it ``fork``\ s this process, which has already imported
torch, Flower and mlimaging, loaded the run's data and taken one tiny training step, and the child
runs Flower's own body of that program (:func:`flwr.supernode.runtime.run_clientapp.run_clientapp`
or :func:`flwr.superlink.runtime.run_serverapp`) for the token. Each task still gets its own
process (a crash or ``SIGKILL`` of the app leaves the SuperExec alone), exactly as in Flower's
process isolation; only the start-up is shared. A task of the benchmark's workload costs its
training plus about 0.06 CPU s (fork, Flower's task protocol); each SuperExec asks for a task
every ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL`` s and not while its task runs (:class:`ForkExecutor`).

``python -m mlimaging.privacy._flower_exec --runtime-api-address 127.0.0.1:PORT [--parent-pid PID]
[--warm-config JSON] [--task-type clientapp|serverapp]``. POSIX only (``os.fork``).

References
----------
Flower 1.42, ``flwr.supercore.superexec`` (SuperExec, ``Executor`` protocol),
``flwr.supernode.runtime.run_clientapp`` (the ``flwr-clientapp`` process) and
``flwr.superlink.runtime.run_serverapp`` (the ``flwr-serverapp`` process).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time
import traceback
from typing import Any

#: The task types a :class:`ForkExecutor` can run: Flower's ClientApp and ServerApp.
TASK_TYPES = frozenset({"clientapp", "serverapp"})
#: Seconds between the checks of a serial :class:`ForkExecutor` for the end of its running task (a local
#: ``waitpid``, no request).
SERIAL_CHECK = 0.05


class ForkExecutor:
    """Flower's ``Executor`` protocol: every task runs in a ``fork`` of this process.

    ``launch`` forks; the child resets the signal handlers and Flower's exit handlers inherited
    from the SuperExec (they would close the parent's client and executor), runs Flower's
    ``flwr-clientapp`` body (``run_clientapp``) for a ClientApp task or its ``flwr-serverapp``
    body (``run_serverapp``) for a ServerApp task, and leaves with ``os._exit``. It accepts only
    the task type it was made for (``"clientapp"``, the default, or ``"serverapp"``).
    ``reconcile`` (called by the SuperExec loop before each poll) reaps finished children and, with
    ``serial=True``, first waits for the running one: a SuperNode hands its ClientApp one message
    at a time (it waits for the reply before it pulls again) and a deployment runs one ServerApp,
    so no task can be missed, and the SuperExec stops polling its Runtime API while a task runs
    (each poll is an HTTP request costing about 3 ms of CPU on the two ends). ``close`` sends
    ``SIGTERM`` to the children still running.

    Examples
    --------
    >>> ex = ForkExecutor()
    >>> ex.reconcile(); ex.close(); ex.children
    {}
    """

    def __init__(self, task_type: str = "clientapp", *, serial: bool = True) -> None:
        if task_type not in TASK_TYPES:
            raise ValueError(f"task_type must be one of {sorted(TASK_TYPES)}, got {task_type!r}")
        self.task_type, self.serial = task_type, bool(serial)
        self.children: dict[int, int] = {}  # pid -> task id

    def _accepted(self) -> Any:
        from flwr.supercore.constant import TaskType

        return TaskType.CLIENT_APP if self.task_type == "clientapp" else TaskType.SERVER_APP

    def get_eligible_capacity(self, supported_task_types: set, *, insecure: bool = False,
                              root_certificates_path: str | None = None) -> tuple[set, set[str]]:
        del insecure, root_certificates_path
        return set(supported_task_types) & {self._accepted()}, set()

    def wait_for_capacity(self, task_type: Any = None, *, fab_hash: str | None = None, insecure: bool = False,
                          root_certificates_path: str | None = None) -> None:
        del task_type, fab_hash, insecure, root_certificates_path

    def launch(self, spec: Any) -> Any:
        from flwr.supercore.superexec.executor import LaunchResult

        if spec.task_type != self._accepted():
            return LaunchResult.failed(f"this SuperExec runs {self.task_type} tasks only, not {spec.task_type}")
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run_task(spec)
        self.children[pid] = spec.task_id
        return LaunchResult.accepted()

    def _reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                del self.children[pid]

    def reconcile(self) -> None:
        """Reap finished tasks; with ``serial`` (the default), wait until the running task has finished, so
        that the SuperExec loop asks for no task while one runs (no request every poll interval)."""
        self._reap()
        while self.serial and self.children:
            time.sleep(SERIAL_CHECK)
            self._reap()

    def close(self) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self._reap()


def _run_task(spec: Any) -> None:
    """Body of a forked child: Flower's ``flwr-clientapp`` for one task, then ``os._exit``."""
    code = 1
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(sig, signal.SIG_DFL)
        from flwr.supercore.constant import TaskType
        from flwr.supercore.exit import exit_handler
        from flwr.supercore.tls import validate_and_resolve_root_certificates

        exit_handler.registered_exit_handlers.clear()
        certificates = validate_and_resolve_root_certificates(spec.root_certificates_path, spec.insecure)
        if spec.task_type == TaskType.SERVER_APP:  # what `flwr-serverapp` does, in this fork
            from queue import Queue

            from flwr.supercore.logger import mirror_output_to_queue, restore_output
            from flwr.superlink.runtime import run_serverapp

            log_queue: Queue = Queue()
            mirror_output_to_queue(log_queue)  # the ServerApp's output goes to the SuperLink (`flwr run --stream`)
            run_serverapp(runtime_api_address=spec.runtime_api_address, log_queue=log_queue, token=spec.token,
                          insecure=spec.insecure, certificates=certificates, parent_pid=spec.parent_pid,
                          runtime_dependency_install=False)
            restore_output()
        else:
            from flwr.supernode.runtime.run_clientapp import run_clientapp

            run_clientapp(runtime_api_address=spec.runtime_api_address, token=spec.token, insecure=spec.insecure,
                          certificates=certificates, parent_pid=spec.parent_pid, runtime_dependency_install=False)
        code = 0
    except SystemExit as e:  # flwr_exit ends every task with sys.exit(0 or 1)
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - report and leave; the SuperNode sees the task fail
        traceback.print_exc()
    finally:
        try:
            use = resource.getrusage(resource.RUSAGE_SELF)  # this fork's own CPU since the fork
            print(f"task {spec.task_id} ({spec.task_type}): {use.ru_utime + use.ru_stime:.2f} CPU s", flush=True)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _warm_up(cfg: dict[str, Any]) -> None:
    """Load the run's data (cached for the forked tasks), evaluate 8 test digits and take one tiny local
    step (8 digits), so that torch's one-time costs of a process's first forward, backward and optimizer
    step (about 1 CPU s) are paid here once instead of in every task."""
    import torch
    from torch import nn

    from mlimaging.privacy import flower
    from mlimaging.privacy.federated import _optimizer_factory, _subset, _train_client
    from mlimaging.training import evaluate
    from mlimaging.utils import set_torch_threads

    set_torch_threads(int(cfg["threads"]))
    data, test, parts = flower._data(cfg)
    anchor = flower.initial_model(int(cfg["seed"]))
    evaluate(anchor, _subset(test, list(range(8))), metrics=("accuracy",), loss=nn.CrossEntropyLoss())  # ServerApp's
    _train_client(flower.initial_model(int(cfg["seed"])), anchor, anchor.state_dict(), _subset(data, parts[0][:8]),
                  loss=nn.CrossEntropyLoss(), proximal_mu=0.0, factory=_optimizer_factory("sgd", 0.01), local_epochs=1,
                  batch_size=8, seed=0, device=torch.device("cpu"))


def serve(runtime_api_address: str, *, parent_pid: int | None = None, task_type: str = "clientapp") -> None:
    """Flower's SuperExec loop (``run_superexec``) with a :class:`ForkExecutor` for ``task_type`` tasks."""
    from flwr.supercore.superexec import run_superexec as superexec

    executor = ForkExecutor(task_type)
    # run_superexec builds its executor with get_executor(); Flower offers no way to pass one in.
    superexec.get_executor = lambda *a, **k: executor
    superexec.run_superexec(runtime_api_address=runtime_api_address, insecure=True, parent_pid=parent_pid)


def main(argv: list[str] | None = None) -> None:
    """Warm up (torch, Flower, mlimaging, optionally the run's data), then run Flower's SuperExec loop
    with :class:`ForkExecutor`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api-address", required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--warm-config", default=None, help="run config (JSON) whose data to load before forking")
    parser.add_argument("--task-type", choices=sorted(TASK_TYPES), default="clientapp")
    args = parser.parse_args(argv)

    import torch  # noqa: F401 - imported once here, inherited by every task
    from flwr.app import Message  # noqa: F401
    from flwr.clientapp import ClientApp  # noqa: F401
    from flwr.supernode.runtime import run_clientapp  # noqa: F401

    from mlimaging.privacy import flower

    if args.warm_config:
        _warm_up(flower._config(json.loads(args.warm_config)))
    serve(args.runtime_api_address, parent_pid=args.parent_pid, task_type=args.task_type)


if __name__ == "__main__":
    main()

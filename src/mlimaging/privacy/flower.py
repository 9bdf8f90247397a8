r"""Federated averaging deployed on Flower: a ``ServerApp``, a ``ClientApp`` and a local deployment.

:func:`make_server_app` builds a Flower ``ServerApp`` whose strategy (a subclass of Flower's
``FedAvg``) aggregates the clients' weights with our sample-weighted mean, exactly as
:func:`mlimaging.privacy.fedavg` does, and evaluates the global model on the test digits after
every round. :func:`make_client_app` builds a ``ClientApp`` that trains its partition of mnist5k
(:func:`mlimaging.privacy.partition`, partition id from the SuperNode's ``--node-config``) with
our engine (:func:`mlimaging.training.fit`, FedProx's proximal step when ``proximal-mu > 0``).
:func:`deploy` starts a SuperLink and one SuperNode per client as separate processes on
127.0.0.1, submits the app with Flower's own runner (``flwr run``) and always stops every
process it started.

Flower is optional: ``pip install "mlimaging[fl]"``. Nothing here imports it at module level.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlimaging.privacy.federated import (
    FLHistory,
    _client_seed,
    _optimizer_factory,
    _subset,
    _train_client,
    _weighted_average,
)
from mlimaging.utils import set_torch_threads

__all__ = ["deploy", "initial_model", "make_client_app", "make_server_app"]

INSTALL_HINT = 'Flower is not installed; install the extra: pip install "mlimaging[fl]"'
APP_MODULE = "mlimaging_flower_app"
RUN_DEFAULTS: dict[str, Any] = {
    "num-server-rounds": 5, "num-clients": 4, "seed": 0, "lr": 0.05, "local-epochs": 1, "batch-size": 10,
    "proximal-mu": 0.0, "scheme": "iid", "n-train": 0, "n-test": 0, "out-dir": "", "round-timeout": 120.0,
    "wait-timeout": 120.0, "threads": 1,
}


def _require_flwr() -> Any:
    try:
        import flwr
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return flwr


def initial_model(seed: int = 0) -> nn.Module:
    r"""The global model every run starts from: a LeNet-5 (LeCun et al. 1998) seeded by ``seed``.

    Both the deployment and an in-process :func:`~mlimaging.privacy.fedavg` start from it, so
    they can be compared weight for weight.

    Examples
    --------
    >>> a, b = initial_model(3), initial_model(3)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    from mlimaging.models import create_model

    torch.manual_seed(int(seed))
    return create_model("lenet")


def _config(run_config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(RUN_DEFAULTS)
    cfg.update(run_config)
    return cfg


def _data(cfg: Mapping[str, Any]) -> tuple[Any, Any, list[list[int]]]:
    """(train, test, partition) of mnist5k, the same in every process."""
    from torch.utils.data import TensorDataset

    from mlimaging.experiments.federated import load_mnist
    from mlimaging.privacy._partition import partition

    n_train, n_test = int(cfg["n-train"]) or None, int(cfg["n-test"]) or None
    xtr, ytr, xte, yte = load_mnist(n_train=n_train, n_test=n_test, seed=int(cfg["seed"]))
    parts = partition((xtr, ytr), num_clients=int(cfg["num-clients"]), scheme=str(cfg["scheme"]),
                      seed=int(cfg["seed"]))
    return TensorDataset(xtr, ytr), TensorDataset(xte, yte), parts


# ------------------------------------------------------------------------------- the apps
def make_client_app() -> Any:
    r"""A Flower ``ClientApp`` whose ``train`` runs one client's local update with our engine.

    The client :math:`k` (``partition-id`` in the SuperNode's node config) loads the global
    weights :math:`w^t` from the message, trains ``local-epochs`` epochs of mini-batches of
    ``batch-size`` on its partition with :func:`mlimaging.training.fit` (plain SGD; FedProx's
    :math:`\ell + \frac{\mu}{2}\lVert w - w^t\rVert^2` when ``proximal-mu`` :math:`=\mu > 0`),
    seeded from ``(seed, round, k)`` as :func:`~mlimaging.privacy.fedavg` seeds it, and replies
    with :math:`w^{t+1}_k`, :math:`n_k` and its last-epoch loss.

    References
    ----------
    McMahan B. et al. (2017). Communication-Efficient Learning of Deep Networks from
    Decentralized Data. AISTATS. arXiv:1602.05629.
    Beutel D. J. et al. (2020). Flower: A Friendly Federated Learning Framework. arXiv:2007.14390.

    Examples
    --------
    >>> app = make_client_app()  # doctest: +SKIP
    """
    _require_flwr()
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train()
    def train(msg: Any, context: Any) -> Any:
        cfg = _config(context.run_config)
        set_torch_threads(int(cfg["threads"]))
        pid = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        data, _, parts = _data(cfg)
        global_state = msg.content["arrays"].to_torch_state_dict()
        anchor = initial_model(int(cfg["seed"]))
        anchor.load_state_dict(global_state)
        local = initial_model(int(cfg["seed"]))
        bs = int(cfg["batch-size"])
        state, n_k, last = _train_client(
            local, anchor, global_state, _subset(data, parts[pid]), loss=nn.CrossEntropyLoss(),
            proximal_mu=float(cfg["proximal-mu"]), factory=_optimizer_factory("sgd", float(cfg["lr"])),
            local_epochs=int(cfg["local-epochs"]), batch_size="all" if bs <= 0 else bs,
            seed=_client_seed(int(cfg["seed"]), rnd, pid), device=torch.device("cpu"))
        metrics = MetricRecord({"num-examples": n_k, "train-loss": float(last), "partition-id": pid})
        return Message(RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}), reply_to=msg)

    return app


def _strategy_class() -> type:
    from flwr.app import ArrayRecord, MetricRecord
    from flwr.serverapp.strategy import FedAvg

    class MLImagingFedAvg(FedAvg):
        """Flower's FedAvg with our aggregation (float64 sample-weighted mean, integer buffers
        by max, clients in partition order) and a per-round record."""

        def __init__(self, *, out: Path, **kw: Any):
            super().__init__(**kw)
            self.out, self.history, self._t0 = out, FLHistory(), 0.0

        def configure_train(self, server_round, arrays, config, grid):  # noqa: ANN001
            self._t0 = time.perf_counter()
            msgs = list(super().configure_train(server_round, arrays, config, grid))
            _atomic_json(self.out / "round.json", {"round": server_round, "nodes": len(msgs)})
            return msgs

        def aggregate_train(self, server_round, replies):  # noqa: ANN001
            ok = [m for m in replies if m.has_content() and not m.has_error()]
            if not ok:
                return None, None
            recs = sorted((m.content for m in ok), key=lambda c: int(c["metrics"]["partition-id"]))
            states = [c["arrays"].to_torch_state_dict() for c in recs]
            sizes = [int(c["metrics"]["num-examples"]) for c in recs]
            weights = [n / sum(sizes) for n in sizes]
            t_agg = time.perf_counter()
            new_state = _weighted_average(states, weights)
            self.history.aggregate_seconds.append(time.perf_counter() - t_agg)
            train_loss = float(sum(w * float(c["metrics"]["train-loss"]) for w, c in zip(weights, recs, strict=True)))
            self.history.round.append(int(server_round))
            self.history.train_loss.append(train_loss)
            self.history.clients.append([int(c["metrics"]["partition-id"]) for c in recs])
            self.history.seconds.append(time.perf_counter() - self._t0)
            self.history.bytes.append(int(2 * len(recs) * sum(v.numel() * v.element_size()
                                                              for v in new_state.values())))
            return ArrayRecord(new_state), MetricRecord({"train-loss": train_loss, "num-examples": sum(sizes)})

    return MLImagingFedAvg


def make_server_app() -> Any:
    r"""A Flower ``ServerApp`` running FedAvg (FedProx with ``proximal-mu > 0``) with our aggregation.

    It waits until ``num-clients`` SuperNodes are connected (``wait-timeout`` s), then for
    ``num-server-rounds`` rounds sends :math:`w^t` to every connected node and sets

    .. math:: w^{t+1} = \sum_{k \in S_t} \frac{n_k}{n_{S_t}} w^{t+1}_k

    over the replies :math:`S_t` that arrive within ``round-timeout`` s (a node that died is
    left out of the round; the run goes on while one node replies). The global model is
    evaluated on the test digits after every round; ``out-dir`` receives ``history.json`` (an
    :class:`~mlimaging.privacy.FLHistory`) and ``model.pt`` (the final global ``state_dict``).

    References
    ----------
    McMahan B. et al. (2017). Communication-Efficient Learning of Deep Networks from
    Decentralized Data. AISTATS. arXiv:1602.05629.
    Li T. et al. (2020). Federated Optimization in Heterogeneous Networks. MLSys. arXiv:1812.06127.

    Examples
    --------
    >>> app = make_server_app()  # doctest: +SKIP
    """
    _require_flwr()
    from flwr.app import ArrayRecord, MetricRecord
    from flwr.serverapp import ServerApp

    from mlimaging.training import evaluate

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        cfg = _config(context.run_config)
        set_torch_threads(int(cfg["threads"]))
        out = Path(str(cfg["out-dir"]))
        out.mkdir(parents=True, exist_ok=True)
        _, test, _ = _data(cfg)
        model = initial_model(int(cfg["seed"]))
        k = int(cfg["num-clients"])
        deadline = time.monotonic() + float(cfg["wait-timeout"])
        while len(list(grid.get_node_ids())) < k:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(list(grid.get_node_ids()))} of {k} SuperNodes connected")
            time.sleep(0.2)
        strategy = _strategy_class()(out=out, fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1,
                                     min_evaluate_nodes=0, min_available_nodes=1)
        accuracy: dict[int, tuple[float, float]] = {}

        def central(rnd: int, arrays: Any) -> Any:
            model.load_state_dict(arrays.to_torch_state_dict())
            res = evaluate(model, test, metrics=("accuracy",), loss=nn.CrossEntropyLoss())
            accuracy[rnd] = (float(res["accuracy"]), float(res["loss"]))
            return MetricRecord({"accuracy": accuracy[rnd][0], "loss": accuracy[rnd][1]})

        result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()),
                                num_rounds=int(cfg["num-server-rounds"]), timeout=float(cfg["round-timeout"]),
                                evaluate_fn=central)
        h = strategy.history
        h.accuracy = [accuracy.get(r, (None, None))[0] for r in h.round]
        h.loss = [accuracy.get(r, (None, None))[1] for r in h.round]
        torch.save(result.arrays.to_torch_state_dict(), out / "model.pt")
        _atomic_json(out / "history.json", {"history": h.to_rows(), "clients": h.clients})

    return app


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ deployment
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen, timeout: float, name: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before listening on port {port}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{name} did not listen on 127.0.0.1:{port} within {timeout:g} s")


def _executable(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise ImportError(f"the Flower executable {name!r} was not found; {INSTALL_HINT}")
    return found


def _proc_table() -> dict[int, tuple[int, str]]:
    """``pid -> (parent pid, start time)`` of every live (not zombie) process, from /proc (Linux)."""
    table = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            table[int(d)] = (int(fields[1]), fields[19])
    return table


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


def _stop(procs: list[subprocess.Popen], seen: dict[int, str], grace: float = 5.0) -> None:
    """SIGTERM every process we started and every descendant seen, SIGKILL what is left after
    ``grace`` s, and reap our direct children."""
    seen.update(_descendants([p.pid for p in procs if p.poll() is None]))
    _signal_tree(seen, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for p in procs:
            p.poll()
        if not alive(seen):
            break
        time.sleep(0.1)
    seen.update(_descendants([p.pid for p in procs if p.poll() is None]))
    _signal_tree(seen, signal.SIGKILL)
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + grace  # SIGKILL is not instant: wait until the kernel is done
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.05)


def _write_app(app_dir: Path, run_config: Mapping[str, Any]) -> None:
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
serverapp = "{APP_MODULE}:server_app"
clientapp = "{APP_MODULE}:client_app"

[tool.flwr.app.config]
{cfg}
""")
    (app_dir / f"{APP_MODULE}.py").write_text(
        '"""The Flower app: mlimaging\'s ServerApp and ClientApp."""\n\n'
        "from mlimaging.privacy.flower import make_client_app, make_server_app\n\n"
        "server_app = make_server_app()\nclient_app = make_client_app()\n")


def _check_number(value: Any, name: str, low: float, *, integer: bool = False, strict: bool = False) -> Any:
    kind = numbers.Integral if integer else numbers.Real
    bad = isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) \
        or (value <= low if strict else value < low)
    if bad:
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} {'>' if strict else '>='} {low:g}, got {value!r}")
    return int(value) if integer else float(value)


def deploy(
    *,
    clients: int = 4,
    rounds: int = 5,
    out: str | Path,
    seed: int = 0,
    lr: float = 0.05,
    local_epochs: int = 1,
    batch_size: int | str | None = 10,
    proximal_mu: float = 0.0,
    scheme: str = "iid",
    n_train: int | None = None,
    n_test: int | None = None,
    round_timeout: float = 120.0,
    timeout: float = 1800.0,
    kill: tuple[int, int] | None = None,
    progress: bool = True,
) -> FLHistory:
    r"""Run FedAvg on mnist5k as a real Flower deployment on this machine, and stop it all after.

    Starts, as separate processes on 127.0.0.1 (free ports, insecure mode), one
    ``flower-superlink`` and ``clients`` ``flower-supernode`` processes (node config
    ``partition-id=k``), submits the app (:func:`make_server_app`, :func:`make_client_app`) with
    Flower's own runner ``flwr run``, waits for the run, and in every case (success, error,
    timeout, Ctrl-C) terminates every process group it started (SIGTERM, then SIGKILL). Rounds
    are as in :func:`~mlimaging.privacy.fedavg` with ``fraction=1`` (all connected clients):

    .. math:: w^{t+1} = \sum_{k \in S_t} \frac{n_k}{n_{S_t}} w^{t+1}_k

    where :math:`S_t` are the clients whose replies arrived within ``round_timeout``: a client
    that dies is left out and the run finishes with the others.

    Parameters
    ----------
    clients
        Number of SuperNodes (= partitions of mnist5k), >= 1.
    rounds
        Number of rounds, >= 1.
    out
        Run folder: ``history.json``, ``model.pt`` (final global weights), ``logs/*.log``,
        ``app/`` (the Flower app that was submitted), ``flwr-home/``.
    seed
        Seeds the initial model, the partition and every client's training (as ``fedavg``).
    lr, local_epochs, batch_size, proximal_mu
        The clients' SGD learning rate, :math:`E`, :math:`B` (``None``/``"all"``: full batch)
        and FedProx's :math:`\mu` (0: FedAvg).
    scheme
        :func:`~mlimaging.privacy.partition` scheme: ``"iid"``, ``"shards"`` or ``"dirichlet"``.
    n_train, n_test
        Optional stratified subsets of mnist5k's training and test digits (``None``: all).
    round_timeout
        Seconds the server waits for the replies of a round.
    timeout
        Seconds the whole run may take before everything is stopped (``TimeoutError``).
    kill
        Fault injection ``(partition_id, round)``: SIGKILL that client's SuperNode (and its
        ClientApp) once the round has been sent out, to show the tolerance.
    progress
        Print one line per phase and round.

    Returns
    -------
    FLHistory
        Per round: test accuracy and loss of the global model, the clients that took part.

    References
    ----------
    Beutel D. J. et al. (2020). Flower: A Friendly Federated Learning Framework. arXiv:2007.14390.
    McMahan B. et al. (2017). Communication-Efficient Learning of Deep Networks from
    Decentralized Data. AISTATS. arXiv:1602.05629.

    Examples
    --------
    >>> h = deploy(clients=2, rounds=1, out="/tmp/fl-doc", n_train=200, n_test=100)  # doctest: +SKIP
    >>> len(h)  # doctest: +SKIP
    1
    """
    clients = _check_number(clients, "clients", 1, integer=True)
    rounds = _check_number(rounds, "rounds", 1, integer=True)
    seed = _check_number(seed, "seed", 0, integer=True)
    local_epochs = _check_number(local_epochs, "local_epochs", 1, integer=True)
    lr = _check_number(lr, "lr", 0, strict=True)
    proximal_mu = _check_number(proximal_mu, "proximal_mu", 0)
    round_timeout = _check_number(round_timeout, "round_timeout", 0, strict=True)
    timeout = _check_number(timeout, "timeout", 0, strict=True)
    bs = 0 if batch_size in (None, "all") else _check_number(batch_size, "batch_size", 1, integer=True)
    if scheme not in ("iid", "shards", "dirichlet"):
        raise ValueError(f"scheme must be 'iid', 'shards' or 'dirichlet', got {scheme!r}")
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if v is not None:
            _check_number(v, name, 1, integer=True)
    if kill is not None:
        if not (isinstance(kill, (tuple, list)) and len(kill) == 2):
            raise ValueError(f"kill must be a (partition_id, round) pair, got {kill!r}")
        _check_number(kill[0], "kill[0] (partition id)", 0, integer=True)
        _check_number(kill[1], "kill[1] (round)", 1, integer=True)
        if kill[0] >= clients or kill[1] > rounds:
            raise ValueError(f"kill={kill!r} names a client or round outside {clients} clients and {rounds} rounds")
    _require_flwr()
    superlink_exe, supernode_exe, flwr_exe = (_executable(n) for n in
                                              ("flower-superlink", "flower-supernode", "flwr"))
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("history.json", "round.json", "model.pt"):
        (out / stale).unlink(missing_ok=True)
    logs, home = out / "logs", out / "flwr-home"
    logs.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    run_config = dict(RUN_DEFAULTS, **{
        "num-server-rounds": rounds, "num-clients": clients, "seed": seed, "lr": lr, "local-epochs": local_epochs,
        "batch-size": bs, "proximal-mu": proximal_mu, "scheme": scheme, "n-train": int(n_train or 0),
        "n-test": int(n_test or 0), "out-dir": str(out), "round-timeout": round_timeout})
    _write_app(out / "app", run_config)
    port = _free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "deploy"\n\n[superlink.deploy]\n'
                                      f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    bindir = str(Path(superlink_exe).parent)
    env = dict(os.environ, FLWR_HOME=str(home), PYTHONUNBUFFERED="1",
               PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    say = print if progress else (lambda *a, **k: None)
    procs: list[subprocess.Popen] = []
    seen: dict[int, str] = {}  # every process of the deployment seen so far (pid -> start time)
    files: list[Any] = []

    def start(cmd: list[str], log: str) -> subprocess.Popen:
        f = open(logs / log, "wb")  # noqa: SIM115 - closed in finally
        files.append(f)
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                             cwd=out, start_new_session=True)
        procs.append(p)
        return p

    t_end = time.monotonic() + timeout
    try:
        link = start([superlink_exe, "--insecure", "--host", "127.0.0.1", "--port", str(port),
                      "--disable-runtime-dependency-installation"], "superlink.log")
        _wait_port(port, link, min(60.0, timeout), "flower-superlink")
        say(f"SuperLink on 127.0.0.1:{port}")
        nodes = [start([supernode_exe, "--insecure", "--superlink", f"127.0.0.1:{port}",
                        "--node-config", f"partition-id={k} num-partitions={clients}",
                        "--host", "127.0.0.1", "--port", str(_free_port())], f"supernode-{k}.log")
                 for k in range(clients)]
        say(f"{clients} SuperNodes started")
        runner = start([flwr_exe, "run", str(out / "app"), "deploy", "--stream"], "flwr-run.log")
        killed, last_round = False, 0
        while not (out / "history.json").exists():
            if time.monotonic() > t_end:
                raise TimeoutError(f"the Flower run did not finish within {timeout:g} s (logs in {logs})")
            if link.poll() is not None:
                raise RuntimeError(f"flower-superlink exited with code {link.returncode} (see {logs})")
            if runner.poll() is not None and not (out / "history.json").exists():
                tail = (logs / "flwr-run.log").read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"the Flower run ended (flwr run exit code {runner.returncode}) without a history; "
                                   f"see {logs}: " + " | ".join(tail))
            try:
                r = int(json.loads((out / "round.json").read_text())["round"])
            except (FileNotFoundError, ValueError, KeyError):
                r = 0
            if r != last_round:
                say(f"round {r}/{rounds} sent")
                last_round = r
            seen.update(_descendants([p.pid for p in procs if p.poll() is None]))
            if kill is not None and not killed and r >= kill[1]:
                time.sleep(0.5)  # let the node receive the round's message
                _signal_tree(_descendants([nodes[kill[0]].pid]), signal.SIGKILL)
                killed = True
                say(f"killed SuperNode {kill[0]} in round {r}")
            time.sleep(0.2)
    finally:
        _stop(procs, seen)
        for f in files:
            f.close()
        _atomic_json(out / "processes.json", {"processes": [[pid, st] for pid, st in seen.items()],
                                              "alive_after_stop": alive(seen)})
    data = json.loads((out / "history.json").read_text())
    h = FLHistory()
    for row, ids in zip(data["history"], data["clients"], strict=True):
        h.round.append(row["round"])
        h.accuracy.append(row["accuracy"])
        h.loss.append(row["loss"])
        h.train_loss.append(row["train_loss"])
        h.clients.append(ids)
        h.seconds.append(row["seconds"])
        h.aggregate_seconds.append(row["aggregate_seconds"])
        h.bytes.append(row["bytes"])
    for row in h.to_rows():
        say(f"round {row['round']}: accuracy={row['accuracy']:.4f} clients={row['clients']}")
    return h

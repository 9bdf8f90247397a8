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

With ``secure=True`` the aggregation is Flower's SecAgg+ (``SecAggPlusWorkflow`` with
``secaggplus_mod`` on the clients; Bell et al. 2020): Flower 1.42 implements it only for its
legacy ``Strategy``/``FitIns`` API, so the secure rounds run Flower's ``DefaultWorkflow`` on a
``LegacyContext`` inside the same ``ServerApp``, and the same ``ClientApp`` answers legacy
``FitIns``. The server learns only the weighted sum, which equals our weighted mean up to
SecAgg+'s quantisation step.

Fixed costs of a Flower deployment (Flower 1.42), and what :func:`deploy` does about them; CPU
seconds of the benchmark's 4 clients x 5 rounds (``benchmarks/federated.py``, case ``flower``):

* start-up: every Flower process imports Flower (and the app processes torch and mlimaging).
  One zygote (:mod:`~mlimaging.privacy._flower_zygote`) imports it all and loads the data once
  (about 5 s) and forks the SuperLink, the SuperNodes and a warm SuperExec beside each
  (:mod:`~mlimaging.privacy._flower_exec`; ``--isolation process``) that forks a process per
  ServerApp or ClientApp task instead of starting ``flwr-serverapp``/``flwr-clientapp``;
* polling: a SuperNode waits a fixed 3 s after every empty pull (shortened to
  :data:`SUPERNODE_IDLE_WAIT` by a guarded patch), the SuperExecs ask for tasks every
  :data:`POLL_INTERVAL` s and not at all while their task runs, the ServerApp asks for replies
  every 0.5 s (``poll-interval``; Flower's grid sleeps 3 s); telemetry and the update check are off;
* messages: each array of a message is its own HTTP request; the weights travel as one flat array
  (:mod:`~mlimaging.privacy._flower_arrays`: 5 objects per message instead of 23);
* cores: at most ``parallel`` ClientApps (default: the cores less one) train at once.

Measured: 61 CPU s (3.9x the simulation) before, about 30 s after; see the benchmark's docstring.

Flower is optional: ``pip install "mlimaging[fl]"``. Nothing here imports it at module level.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mlimaging.privacy import _flower_zygote
from mlimaging.privacy._flower_arrays import _pack, _unpack
from mlimaging.privacy._flower_procs import (
    INSTALL_HINT,
    _Child,
    _cpu_slot,
    _descendants,
    _executable,
    _free_port,
    _label,
    _proc_table,  # noqa: F401 - re-exported for the tests
    _signal_tree,
    _stop,
    _wait_pids,
    _wait_port,
    _write_app,
    alive,
    tree_cpu_seconds,
)
from mlimaging.privacy._flower_zygote import deployment_spec
from mlimaging.privacy.federated import (
    FLHistory,
    _client_seed,
    _optimizer_factory,
    _subset,
    _train_client,
    _weighted_average,
)
from mlimaging.utils import available_cores, set_torch_threads

__all__ = ["deploy", "initial_model", "make_client_app", "make_server_app"]

APP_MODULE = "mlimaging_flower_app"
#: Seconds between the SuperExecs' task polls and the ServerApp's reply polls (Flower: 1 s and 3 s). Each poll
#: is an HTTP request costing about 3 ms of CPU (both ends together).
POLL_INTERVAL = 0.5
#: Seconds a SuperNode waits after a pull that found no message (Flower 1.42: a fixed 3 s; see
#: :func:`mlimaging.privacy._flower_zygote.patch_supernode_waits`). Each pull costs about 5.5 ms of CPU (both
#: ends): 4 idle SuperNodes burn 0.135 CPU s per s at 0.2 s, 0.090 at 0.5 s.
SUPERNODE_IDLE_WAIT = 0.5
RUN_DEFAULTS: dict[str, Any] = {
    "num-server-rounds": 5, "num-clients": 4, "seed": 0, "lr": 0.05, "local-epochs": 1, "batch-size": 10,
    "proximal-mu": 0.0, "scheme": "iid", "n-train": 0, "n-test": 0, "out-dir": "", "round-timeout": 120.0,
    "wait-timeout": 120.0, "threads": 1, "poll-interval": POLL_INTERVAL,
    "secure": False, "parallel-clients": 0,
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
    """(train, test, partition) of mnist5k, the same in every process (cached per process: the warm
    SuperExec of :mod:`mlimaging.privacy._flower_exec` loads it once and its forked tasks reuse it)."""
    return _load(int(cfg["n-train"]), int(cfg["n-test"]), int(cfg["seed"]), int(cfg["num-clients"]), str(cfg["scheme"]))


@functools.lru_cache(maxsize=2)
def _load(n_train: int, n_test: int, seed: int, clients: int, scheme: str) -> tuple[Any, Any, list[list[int]]]:
    from torch.utils.data import TensorDataset

    from mlimaging.experiments.federated import load_mnist
    from mlimaging.privacy._partition import partition

    xtr, ytr, xte, yte = load_mnist(n_train=n_train or None, n_test=n_test or None, seed=seed)
    parts = partition((xtr, ytr), num_clients=clients, scheme=scheme, seed=seed)
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
    from flwr.app import Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.train(mods=[_secagg_mod])
    def train(msg: Any, context: Any) -> Any:
        cfg = _config(context.run_config)
        set_torch_threads(int(cfg["threads"]))
        pid = int(context.node_config["partition-id"])
        data, _, parts = _data(cfg)
        legacy = "fitins.parameters" in msg.content.array_records  # SecAgg+ speaks Flower's legacy FitIns
        if legacy:
            from flwr.common import parameters_to_ndarrays
            from flwr.compat.common import recorddict_compat as compat

            fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
            rnd = int(fitins.config["server-round"])
            global_state = _from_ndarrays(parameters_to_ndarrays(fitins.parameters), int(cfg["seed"]))
        anchor = initial_model(int(cfg["seed"]))
        if not legacy:
            rnd = int(msg.content["config"]["server-round"])
            global_state = _unpack(msg.content["arrays"], anchor.state_dict())
        anchor.load_state_dict(global_state)
        local = initial_model(int(cfg["seed"]))
        bs = int(cfg["batch-size"])
        with _cpu_slot(Path(str(cfg["out-dir"])) / "logs", int(cfg["parallel-clients"])):
            t0, c0 = time.perf_counter(), time.process_time()
            state, n_k, last = _train_client(
                local, anchor, global_state, _subset(data, parts[pid]), loss=nn.CrossEntropyLoss(),
                proximal_mu=float(cfg["proximal-mu"]), factory=_optimizer_factory("sgd", float(cfg["lr"])),
                local_epochs=int(cfg["local-epochs"]), batch_size="all" if bs <= 0 else bs,
                seed=_client_seed(int(cfg["seed"]), rnd, pid), device=torch.device("cpu"))
        metrics = {"num-examples": n_k, "train-loss": float(last), "partition-id": pid,
                   "train-seconds": time.perf_counter() - t0, "train-cpu-seconds": time.process_time() - c0}
        if legacy:
            from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

            res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([v.numpy() for v in state.values()]), n_k,
                         metrics)
            return Message(compat.fitres_to_recorddict(res, keep_input=True), reply_to=msg)
        return Message(RecordDict({"arrays": _pack(state), "metrics": MetricRecord(metrics)}), reply_to=msg)

    return app


def _secagg_mod(msg: Any, context: Any, call_next: Any) -> Any:
    """Flower's ``secaggplus_mod`` for the messages of a SecAgg+ round, a pass-through for the rest."""
    from flwr.client.mod import secaggplus_mod
    from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

    if RECORD_KEY_CONFIGS in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def _from_ndarrays(arrays: list[Any], seed: int) -> dict[str, torch.Tensor]:
    """A LeNet ``state_dict`` from Flower's legacy parameter list (the ``state_dict`` values in order)."""
    keys = list(initial_model(seed).state_dict())
    if len(keys) != len(arrays):
        raise ValueError(f"expected {len(keys)} arrays for the model, got {len(arrays)}")
    return {k: torch.from_numpy(a.copy()) for k, a in zip(keys, arrays, strict=True)}


def _strategy_class() -> type:
    from flwr.app import MetricRecord
    from flwr.serverapp.strategy import FedAvg

    class MLImagingFedAvg(FedAvg):
        """Flower's FedAvg with our aggregation (float64 sample-weighted mean, integer buffers
        by max, clients in partition order) and a per-round record."""

        def __init__(self, *, out: Path, layout: Mapping[str, torch.Tensor], **kw: Any):
            super().__init__(**kw)
            self.out, self.layout, self.history, self._t0 = out, layout, FLHistory(), 0.0
            self.client_seconds: list[list[float]] = []  # per round, the clients' local training (wall s)
            self.client_cpu: list[list[float]] = []  # ... and its CPU seconds
            self.times: list[dict[str, float]] = []  # per round, epoch seconds when sent and aggregated

        def configure_train(self, server_round, arrays, config, grid):  # noqa: ANN001
            self._t0 = time.perf_counter()
            self.times.append({"round": server_round, "sent": time.time()})
            msgs = list(super().configure_train(server_round, arrays, config, grid))
            _atomic_json(self.out / "round.json", {"round": server_round, "nodes": len(msgs)})
            return msgs

        def aggregate_train(self, server_round, replies):  # noqa: ANN001
            ok = [m for m in replies if m.has_content() and not m.has_error()]
            if not ok:
                return None, None
            recs = sorted((m.content for m in ok), key=lambda c: int(c["metrics"]["partition-id"]))
            states = [_unpack(c["arrays"], self.layout) for c in recs]
            sizes = [int(c["metrics"]["num-examples"]) for c in recs]
            weights = [n / sum(sizes) for n in sizes]
            t_agg = time.perf_counter()
            new_state = _weighted_average(states, weights)
            self.history.aggregate_seconds.append(time.perf_counter() - t_agg)
            _save_round(self.out, server_round, new_state)
            train_loss = float(sum(w * float(c["metrics"]["train-loss"]) for w, c in zip(weights, recs, strict=True)))
            self.history.round.append(int(server_round))
            self.history.train_loss.append(train_loss)
            self.history.clients.append([int(c["metrics"]["partition-id"]) for c in recs])
            self.client_seconds.append([float(c["metrics"]["train-seconds"]) for c in recs])
            self.client_cpu.append([float(c["metrics"]["train-cpu-seconds"]) for c in recs])
            self.times[-1]["aggregated"] = time.time()
            self.history.seconds.append(time.perf_counter() - self._t0)
            self.history.bytes.append(int(2 * len(recs) * sum(v.numel() * v.element_size()
                                                              for v in new_state.values())))
            return _pack(new_state), MetricRecord({"train-loss": train_loss, "num-examples": sum(sizes)})

    return MLImagingFedAvg


def _polling_grid_class() -> type:
    from flwr.serverapp import Grid

    class PollingGrid(Grid):
        """A ``Grid`` that forwards everything to Flower's, except that ``send_and_receive`` polls the
        SuperLink for replies every ``interval`` s (Flower's HTTP grid sleeps a fixed 3 s between polls,
        which a round pays once: up to 3 s of idle wait per round)."""

        def __init__(self, grid: Any, interval: float):
            self._grid, self._interval = grid, interval

        def set_run(self, run: Any) -> None:
            self._grid.set_run(run)

        @property
        def run(self) -> Any:
            return self._grid.run

        def create_message(self, *args: Any, **kw: Any) -> Any:
            return self._grid.create_message(*args, **kw)

        def get_node_ids(self) -> Any:
            return self._grid.get_node_ids()

        def get_nodes(self) -> Any:
            return self._grid.get_nodes()

        def push_messages(self, messages: Any) -> Any:
            return self._grid.push_messages(messages)

        def pull_messages(self, message_ids: Any) -> Any:
            return self._grid.pull_messages(message_ids)

        def send_and_receive(self, messages: Any, *, timeout: float | None = None) -> Any:
            pending = set(self._grid.push_messages(messages))
            end = None if timeout is None else time.monotonic() + timeout
            replies: list[Any] = []
            while pending and (end is None or time.monotonic() < end):
                got = list(self._grid.pull_messages(pending))
                replies.extend(got)
                pending.difference_update(m.metadata.reply_to_message_id for m in got)
                if pending:
                    time.sleep(self._interval)
            return replies

    return PollingGrid


def _PollingGrid(grid: Any, interval: float) -> Any:  # noqa: N802 - builds the lazily defined class
    return _polling_grid_class()(grid, interval)


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
    from flwr.app import MetricRecord
    from flwr.serverapp import ServerApp

    from mlimaging.training import evaluate

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        t_main = time.time()
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
        t_nodes = time.time()
        if bool(cfg["secure"]):
            state, h, client_seconds, times = _secure_rounds(grid, context, cfg, model, test, out)
            torch.save(state, out / "model.pt")
            _atomic_json(out / "history.json", {
                "history": h.to_rows(), "clients": h.clients, "client_train_seconds": client_seconds,
                "times": {"serverapp_main": t_main, "nodes_connected": t_nodes, "rounds": times,
                          "finished": time.time()}})
            return
        layout = {k: v.detach().clone() for k, v in model.state_dict().items()}  # names, shapes, dtypes
        strategy = _strategy_class()(out=out, layout=layout, fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1,
                                     min_evaluate_nodes=0, min_available_nodes=1)
        accuracy: dict[int, tuple[float, float]] = {}

        def central(rnd: int, arrays: Any) -> Any:
            model.load_state_dict(_unpack(arrays, layout))
            res = evaluate(model, test, metrics=("accuracy",), loss=nn.CrossEntropyLoss())
            accuracy[rnd] = (float(res["accuracy"]), float(res["loss"]))
            return MetricRecord({"accuracy": accuracy[rnd][0], "loss": accuracy[rnd][1]})

        result = strategy.start(grid=_PollingGrid(grid, float(cfg["poll-interval"])), initial_arrays=_pack(layout),
                                num_rounds=int(cfg["num-server-rounds"]), timeout=float(cfg["round-timeout"]),
                                evaluate_fn=central)
        h = strategy.history
        h.accuracy = [accuracy.get(r, (None, None))[0] for r in h.round]
        h.loss = [accuracy.get(r, (None, None))[1] for r in h.round]
        torch.save(_unpack(result.arrays, layout), out / "model.pt")
        _atomic_json(out / "history.json", {"history": h.to_rows(), "clients": h.clients,
                                            "client_train_seconds": strategy.client_seconds,
                                            "client_train_cpu_seconds": strategy.client_cpu,
                                            "times": {"serverapp_main": t_main, "nodes_connected": t_nodes,
                                                      "rounds": strategy.times, "finished": time.time()}})

    return app


#: SecAgg+'s fixed-point encoding: values clipped to +-CLIP, quantised to Q levels (Flower's defaults).
SECAGG_CLIP, SECAGG_LEVELS = 8.0, 1 << 22


def _secure_rounds(grid: Any, context: Any, cfg: Mapping[str, Any], model: nn.Module, test: Any, out: Path
                   ) -> tuple[dict[str, torch.Tensor], FLHistory, list[list[float]], list[dict[str, float]]]:
    r"""FedAvg rounds whose aggregation is Flower's SecAgg+ (Bell et al. 2020; Bonawitz et al. 2017).

    Flower 1.42 implements SecAgg+ only for its legacy (``Strategy``/``FitIns``) API:
    ``SecAggPlusWorkflow`` runs inside a ``DefaultWorkflow`` on a ``LegacyContext`` and talks to
    ``secaggplus_mod`` on the clients. So the secure rounds use Flower's legacy ``FedAvg`` as the
    strategy; the client training is the same ``ClientApp``, which answers the legacy ``FitIns``.
    Each client sends :math:`[r_k, r_k w_k]` with :math:`r_k = n_k / \max_j n_j`, clipped to
    :math:`\pm 8`, stochastically quantised to :math:`2^{22}` levels and masked (pairwise masks from
    Diffie-Hellman keys, Shamir-shared for dropout recovery); the server unmasks only the sums and
    sets :math:`w^{t+1} = \sum_k r_k w_k / \sum_k r_k`, the sample-weighted mean up to the
    quantisation step :math:`\Delta = 16 / 2^{22} pprox 3.8 \cdot 10^{-6}`.
    """
    from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    from mlimaging.training import evaluate

    seed, rounds = int(cfg["seed"]), int(cfg["num-server-rounds"])
    _, _, parts = _data(cfg)
    h, client_seconds, times = FLHistory(), [], []
    n_params = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    accuracy: dict[int, tuple[float, float]] = {}
    final: dict[str, Any] = {}

    class SecureFedAvg(LegacyFedAvg):
        def configure_fit(self, server_round, parameters, client_manager):  # noqa: ANN001
            times.append({"round": server_round, "sent": time.time()})
            self._t0 = time.perf_counter()
            ins = super().configure_fit(server_round, parameters, client_manager)
            _atomic_json(out / "round.json", {"round": server_round, "nodes": len(ins)})
            return ins

        def aggregate_fit(self, server_round, results, failures):  # noqa: ANN001
            if not results:
                return None, {}
            # SecAgg+ has put the unmasked weighted mean into every FitRes; the metrics are the clients'
            recs = sorted((r for _, r in results), key=lambda r: int(r.metrics["partition-id"]))
            sizes = [int(r.num_examples) for r in recs]
            weights = [n / sum(sizes) for n in sizes]
            h.round.append(int(server_round))
            h.train_loss.append(float(sum(w * float(r.metrics["train-loss"]) for w, r in zip(weights, recs,
                                                                                               strict=True))))
            h.clients.append([int(r.metrics["partition-id"]) for r in recs])
            h.seconds.append(time.perf_counter() - self._t0)
            # no aggregate_seconds: SecAgg+ aggregates inside Flower's unmask stage (to_rows reports None)
            h.bytes.append(int(2 * len(recs) * n_params))
            client_seconds.append([float(r.metrics["train-seconds"]) for r in recs])
            times[-1]["aggregated"] = time.time()
            final["state"] = _from_ndarrays(parameters_to_ndarrays(recs[0].parameters), seed)
            _save_round(out, server_round, final["state"])
            return recs[0].parameters, {}

    def central(rnd: int, arrays: list[Any], config: Any) -> tuple[float, dict[str, float]]:
        model.load_state_dict({k: v.float() for k, v in _from_ndarrays(arrays, seed).items()})
        res = evaluate(model, test, metrics=("accuracy",), loss=nn.CrossEntropyLoss())
        accuracy[rnd] = (float(res["accuracy"]), float(res["loss"]))
        return accuracy[rnd][1], {"accuracy": accuracy[rnd][0]}

    strategy = SecureFedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=1, min_evaluate_clients=0, min_available_clients=1,
        initial_parameters=ndarrays_to_parameters([v.numpy() for v in model.state_dict().values()]),
        evaluate_fn=central, on_fit_config_fn=lambda rnd: {"server-round": rnd})
    legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=strategy)
    secagg = SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=0.5, max_weight=float(max(map(len, parts))),
                                clipping_range=SECAGG_CLIP, quantization_range=SECAGG_LEVELS,
                                timeout=float(cfg["round-timeout"]))
    DefaultWorkflow(fit_workflow=secagg)(_PollingGrid(grid, float(cfg["poll-interval"])), legacy)
    if "state" not in final:
        raise RuntimeError("SecAgg+ did not complete a round (too few clients answered; see the SuperLink log)")
    h.accuracy = [accuracy.get(r, (None, None))[0] for r in h.round]
    h.loss = [accuracy.get(r, (None, None))[1] for r in h.round]
    return {k: v.float() if v.is_floating_point() else v for k, v in final["state"].items()}, h, client_seconds, times


def _save_round(out: Path, rnd: int, state: Mapping[str, torch.Tensor]) -> None:
    """The global weights after round ``rnd``: ``out/rounds/round-<rnd>.pt`` (float32)."""
    (out / "rounds").mkdir(exist_ok=True)
    torch.save({k: v.float() if v.is_floating_point() else v for k, v in state.items()},
               out / "rounds" / f"round-{int(rnd)}.pt")


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ deployment
def _check_number(value: Any, name: str, low: float, *, integer: bool = False, strict: bool = False) -> Any:
    kind = numbers.Integral if integer else numbers.Real
    bad = isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) \
        or (value <= low if strict else value < low)
    if bad:
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} {'>' if strict else '>='} {low:g}, got {value!r}")
    return int(value) if integer else float(value)


def default_parallel() -> int:
    """:func:`deploy`'s default ``parallel``: the cores this process may use less one (for the SuperLink,
    the SuperNodes and the ServerApp), at least 1.

    Examples
    --------
    >>> default_parallel() >= 1
    True
    """
    return max(1, available_cores() - 1)


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through deploy's finally, as KeyboardInterrupt does


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
    secure: bool = False,
    parallel: int | None = None,
    progress: bool = True,
) -> FLHistory:
    r"""Run FedAvg on mnist5k as a real Flower deployment on this machine, and stop it all after.

    Starts, as separate processes on 127.0.0.1 (free ports, insecure mode), one
    ``flower-superlink`` and ``clients`` ``flower-supernode`` processes (node config
    ``partition-id=k``; all forked from one warm zygote, :mod:`~mlimaging.privacy._flower_zygote`,
    with a warm SuperExec beside each), submits the app (:func:`make_server_app`, :func:`make_client_app`) with
    Flower's own runner ``flwr run``, waits for the run, and in every case (success, error,
    timeout, Ctrl-C, ``kill``) terminates every process group it started (SIGTERM, then SIGKILL). Rounds
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
        Fault injection ``(partition_id, round)``: SIGKILL that client's SuperNode, its SuperExec
        and its ClientApp as soon as the server starts sending the round, to show the tolerance.
    secure
        Aggregate with Flower's SecAgg+ (pairwise masks, Shamir-shared keys; Bell et al. 2020):
        the server learns only the weighted sum, equal to the plain mean up to SecAgg+'s
        quantisation step (16 / 2^22 for weights in [-8, 8]). Needs ``clients >= 3``.
    parallel
        At most this many ClientApps train at the same time (``None``: the CPU cores this process
        may use, less one for the SuperLink, SuperNodes and ServerApp, at least 1; 0: no limit).
        Clients beyond it wait for a free slot before their local training, as Flower's simulation
        engine admits clients by their CPU resources. On our 2-core machine, shared with other jobs,
        one local update of the benchmark's workload cost 0.76-0.85 CPU s alone, 0.90-1.10 with two
        at once and 1.07 with four (time-sliced caches); the 4 x 5 deployment took 36 CPU s and
        44 s with 2 slots, 32 CPU s and 34 s with 1 (load 4).
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
    if not isinstance(secure, bool):
        raise ValueError(f"secure must be True or False, got {secure!r}")
    if secure and clients < 3:
        raise ValueError(f"secure aggregation needs clients >= 3 (with 2, the sum reveals the other's update), "
                         f"got {clients}")
    if scheme not in ("iid", "shards", "dirichlet"):
        raise ValueError(f"scheme must be 'iid', 'shards' or 'dirichlet', got {scheme!r}")
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if v is not None:
            _check_number(v, name, 1, integer=True)
    parallel = default_parallel() if parallel is None else _check_number(parallel, "parallel", 0, integer=True)
    if kill is not None:
        if not (isinstance(kill, (tuple, list)) and len(kill) == 2):
            raise ValueError(f"kill must be a (partition_id, round) pair, got {kill!r}")
        _check_number(kill[0], "kill[0] (partition id)", 0, integer=True)
        _check_number(kill[1], "kill[1] (round)", 1, integer=True)
        if kill[0] >= clients or kill[1] > rounds:
            raise ValueError(f"kill={kill!r} names a client or round outside {clients} clients and {rounds} rounds")
    _require_flwr()
    flwr_exe = _executable("flwr")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("history.json", "round.json", "model.pt", "timing.json"):
        (out / stale).unlink(missing_ok=True)
    shutil.rmtree(out / "rounds", ignore_errors=True)
    logs, home = out / "logs", out / "flwr-home"
    logs.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    run_config = dict(RUN_DEFAULTS, **{
        "num-server-rounds": rounds, "num-clients": clients, "seed": seed, "lr": lr, "local-epochs": local_epochs,
        "batch-size": bs, "proximal-mu": proximal_mu, "scheme": scheme, "n-train": int(n_train or 0),
        "n-test": int(n_test or 0), "out-dir": str(out), "round-timeout": round_timeout,
        "secure": secure, "parallel-clients": parallel})
    _write_app(out / "app", run_config, APP_MODULE)
    port = _free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "deploy"\n\n[superlink.deploy]\n'
                                      f'address = "127.0.0.1:{port}"\ninsecure = true\n')
    bindir = str(Path(flwr_exe).parent)
    # No telemetry or update check (a local deployment must not phone home; an exiting Flower process would wait
    # up to 4 s for it); the SuperExecs poll for tasks every POLL_INTERVAL s instead of 1 s.
    env = dict(os.environ, FLWR_HOME=str(home), PYTHONUNBUFFERED="1", FLWR_TELEMETRY_ENABLED="0",
               FLWR_DISABLE_UPDATE_CHECK="1", FLWR_SUPEREXEC_TASK_POLL_INTERVAL=str(POLL_INTERVAL),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
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
    times = {"start": time.time()}  # epoch seconds of the phases, written to timing.json
    # `kill PID` (SIGTERM) ends the wait like Ctrl-C does, through the finally below that stops every process
    on_main = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm) if on_main else None
    pids: dict[str, int] = {}
    try:
        # One zygote imports everything once and forks, in two stages, the SuperLink and the SuperNodes (Flower
        # only; the run is submitted meanwhile), then, with torch, mlimaging and the data loaded, a warm SuperExec
        # beside each (the SuperLink's runs the ServerApp, the SuperNodes' the ClientApps): _flower_zygote.
        spec = deployment_spec(port=port, clients=clients, logs=logs, pids=logs / "pids.json",
                               warm={k: run_config[k] for k in ("n-train", "n-test", "seed", "num-clients", "scheme",
                                                                "threads")}, idle_wait=SUPERNODE_IDLE_WAIT)
        _atomic_json(logs / "zygote.json", spec)
        (logs / "pids.json").unlink(missing_ok=True)
        zygote = start([sys.executable, _flower_zygote.__file__, "--spec", str(logs / "zygote.json")], "zygote.log")
        pids = _wait_pids(logs / "pids.json", zygote, min(120.0, timeout), complete=False)  # SuperLink, SuperNodes
        link = _Child(pids["superlink"])
        times["processes_forked"] = time.time()
        _wait_port(port, link, min(60.0, timeout), "flower-superlink")
        times["superlink_listening"] = time.time()
        say(f"SuperLink on 127.0.0.1:{port}, {clients} SuperNodes started")
        runner = start([flwr_exe, "run", str(out / "app"), "deploy", "--stream"], "flwr-run.log")
        pids = _wait_pids(logs / "pids.json", zygote, min(120.0, timeout), complete=True)  # + the SuperExecs
        nodes = [_Child(pids[f"supernode-{k}"]) for k in range(clients)]
        execs = [_Child(pids[f"superexec-{k}"]) for k in range(clients)]
        times["superexecs_forked"] = time.time()
        killed, last_round = False, 0
        while not (out / "history.json").exists():
            if time.monotonic() > t_end:
                raise TimeoutError(f"the Flower run did not finish within {timeout:g} s (logs in {logs})")
            if link.poll() is not None:
                raise RuntimeError(f"flower-superlink exited (see {logs})")
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
            if kill is not None and not killed and r >= kill[1]:  # at once: a warm node answers within a second
                _signal_tree(_descendants([nodes[kill[0]].pid, execs[kill[0]].pid]), signal.SIGKILL)
                killed = True
                say(f"killed SuperNode {kill[0]} in round {r}")
            time.sleep(0.05 if kill is not None and not killed else 0.1)
        times["history_seen"] = time.time()
    finally:
        try:  # CPU time of the whole tree, read before stopping it (nothing orphaned yet)
            times["cpu_by_program"] = tree_cpu_seconds([p.pid for p in procs], by_name=True,
                                                       labels={pid: _label(name) for name, pid in pids.items()}
                                                       | {p.pid: "zygote" for p in procs[:1]})
            times["cpu_seconds"] = sum(times["cpu_by_program"].values())
        except Exception:  # noqa: BLE001 - a measurement must never prevent the cleanup below
            times["cpu_seconds"] = None
        _stop(procs, seen, env_mark=f"FLWR_HOME={home}")
        times["stopped"] = time.time()
        for f in files:
            f.close()
        _atomic_json(out / "processes.json", {"processes": [[pid, st] for pid, st in seen.items()],
                                              "alive_after_stop": alive(seen)})
        _atomic_json(out / "timing.json", times)
        if on_main:
            signal.signal(signal.SIGTERM, previous_sigterm)
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

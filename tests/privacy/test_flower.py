"""The Flower deployment (mlimaging.privacy.flower, `mlimaging fl deploy`).

The deployment tests need Flower (``pip install "mlimaging[fl]"``) and are skipped without it;
the lazy-import and bad-input tests run everywhere. Each deployment test starts real
processes on 127.0.0.1 and is bounded by ``deploy``'s own ``timeout``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mlimaging.privacy import fedavg
from mlimaging.privacy.federated import (
    _client_seed,
    _optimizer_factory,
    _subset,
    _train_client,
    _weighted_average,
)
from mlimaging.privacy.flower import (
    SECAGG_CLIP,
    SECAGG_LEVELS,
    _config,
    _data,
    _proc_table,
    alive,
    deploy,
    initial_model,
)

SMALL = {"n_train": 150, "n_test": 60, "seed": 0, "lr": 0.05, "batch_size": 10, "local_epochs": 1}
OUR_MODULES = {"mlimaging.privacy._flower_exec", "mlimaging.privacy._flower_zygote"}  # the zygote's forks keep its argv
FLOWER_EXES = {"flower-superlink", "flower-supernode", "flower-superexec", "flwr-serverapp", "flwr-clientapp", "flwr"}


def _flower_processes(out=None) -> set[tuple[int, str]]:
    """Live processes running a Flower executable (argv[0] or the script python runs), our warm
    SuperExec (``python -m mlimaging.privacy._flower_exec``) or our zygote and its forks; with ``out``,
    only those of the deployment into ``out`` (its ``FLWR_HOME`` in their environment, which every process
    of a deployment inherits and keeps when orphaned), so that another test worker's deployment or
    zygote running at the same time (``make test`` runs two) is not taken for a leak of this one."""
    found = set()
    mark = f"FLWR_HOME={Path(out) / 'flwr-home'}".encode() if out is not None else None
    for pid, (_, started) in _proc_table().items():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")[:3]]
            if mark is not None:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if mark not in f.read().split(b"\0"):
                        continue
        except OSError:
            continue
        if any(os.path.basename(a) in FLOWER_EXES | {"_flower_zygote.py"} for a in argv[:2]) or set(argv) & OUR_MODULES:
            found.add((pid, started))
    return found


def _simulate(clients: int, rounds: int) -> tuple[torch.nn.Module, object]:
    train, test, parts = _data(_config({"num-clients": clients, "n-train": SMALL["n_train"],
                                        "n-test": SMALL["n_test"], "seed": SMALL["seed"]}))
    model = initial_model(SMALL["seed"])
    h = fedavg(model, train, parts, rounds=rounds, fraction=1.0, local_epochs=1, batch_size=SMALL["batch_size"],
               lr=SMALL["lr"], seed=SMALL["seed"], test_data=test, progress=False)
    return model, h


def _assert_all_stopped(out, before: set) -> None:
    rec = json.loads((out / "processes.json").read_text())
    assert len(rec["processes"]) >= 3  # at least the SuperLink, the SuperNodes and `flwr run`
    assert rec["alive_after_stop"] == []
    assert alive({int(p): s for p, s in rec["processes"]}) == []
    assert _flower_processes(out) - before == set()


def test_deploy_matches_the_simulation(tmp_path):
    """Oracle: 2 clients x 2 rounds on Flower reach the in-process fedavg's weights (atol 1e-5).

    Every client takes part in every round (fraction 1), trains with the seed
    ``(seed, round, partition id)`` as fedavg does, and the server sorts the replies by
    partition id before our float64 weighted mean, so Flower's arrival order does not matter.
    """
    pytest.importorskip("flwr")
    before = _flower_processes()
    out = tmp_path / "dep"
    h = deploy(clients=2, rounds=2, out=out, round_timeout=150, timeout=420, progress=False, **SMALL)
    model, hs = _simulate(2, 2)
    dep = torch.load(out / "model.pt", weights_only=True)
    assert set(dep) == set(model.state_dict())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(dep[k], v, atol=1e-5, rtol=0)
    assert h.clients == hs.clients == [[0, 1], [0, 1]]
    for a, b in zip(h.loss, hs.loss, strict=True):
        assert math.isclose(a, b, abs_tol=1e-5)
    assert h.accuracy == pytest.approx(hs.accuracy, abs=1e-6)
    _assert_all_stopped(out, before)


def test_deploy_survives_a_killed_supernode(tmp_path):
    """SuperLink + 3 SuperNodes, 2 rounds, node 1 SIGKILLed in round 2: the run completes with
    the other two in round 2, and no process of the deployment is left."""
    pytest.importorskip("flwr")
    before = _flower_processes()
    out = tmp_path / "kill"
    t0 = time.monotonic()
    h = deploy(clients=3, rounds=2, out=out, round_timeout=45, timeout=420, kill=(1, 2), progress=False, **SMALL)
    assert time.monotonic() - t0 < 420
    assert h.round == [1, 2]
    assert h.clients == [[0, 1, 2], [0, 2]]
    assert all(0 <= a <= 1 for a in h.accuracy) and all(math.isfinite(x) for x in h.loss)
    assert (out / "model.pt").is_file()
    _assert_all_stopped(out, before)


def test_secure_deploy_equals_plain_aggregation(tmp_path):
    r"""Oracle: Flower's SecAgg+ on 3 SuperNodes x 2 rounds. Each round's global weights equal the plain
    sample-weighted mean of the same three local updates, replayed in-process from the previous
    round's (secure) global weights with the same seeds, within SecAgg+'s fixed-point error: each
    client's :math:`r_k w_k` is stochastically rounded to a step :math:`\Delta = 2 \cdot 8 / 2^{22}`,
    so the unmasked mean :math:`\sum_k r_k w_k / \sum_k r_k` is off by less than
    :math:`K \Delta / \sum_k r_k`."""
    pytest.importorskip("flwr")
    before = _flower_processes()
    out = tmp_path / "sec"
    h = deploy(clients=3, rounds=2, out=out, secure=True, round_timeout=150, timeout=480, progress=False, **SMALL)
    assert h.round == [1, 2] and h.clients == [[0, 1, 2], [0, 1, 2]]
    train, _, parts = _data(_config({"num-clients": 3, "n-train": SMALL["n_train"], "n-test": SMALL["n_test"],
                                     "seed": SMALL["seed"]}))
    sizes = [len(p) for p in parts]
    ratios = [n / max(sizes) for n in sizes]
    atol = len(parts) * (2 * SECAGG_CLIP / SECAGG_LEVELS) / sum(ratios) + 1e-7  # + float32 rounding
    prev = initial_model(SMALL["seed"]).state_dict()
    for rnd in (1, 2):
        states = []
        for pid, idx in enumerate(parts):
            anchor = initial_model(SMALL["seed"])
            anchor.load_state_dict(prev)
            state, _, _ = _train_client(
                initial_model(SMALL["seed"]), anchor, prev, _subset(train, idx), loss=torch.nn.CrossEntropyLoss(),
                proximal_mu=0.0, factory=_optimizer_factory("sgd", SMALL["lr"]), local_epochs=1,
                batch_size=SMALL["batch_size"], seed=_client_seed(SMALL["seed"], rnd, pid), device=torch.device("cpu"))
            states.append(state)
        plain = _weighted_average(states, [n / sum(sizes) for n in sizes])
        secure = torch.load(out / "rounds" / f"round-{rnd}.pt", weights_only=True)
        moved = max(float((plain[k] - prev[k]).abs().max()) for k in plain)
        assert moved > 100 * atol  # the round changed the weights far beyond the tolerance
        for k, v in plain.items():
            torch.testing.assert_close(secure[k], v, atol=atol, rtol=0)
        prev = secure
    log = (out / "logs" / "flwr-run.log").read_text(errors="replace")  # the ServerApp's log, streamed by flwr run
    assert log.count("Secure aggregation commencing") == 2 and "Secure aggregation completed" in log
    final = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(final[k], prev[k]) for k in final)
    _assert_all_stopped(out, before)


def test_deploy_stops_everything_on_timeout(tmp_path):
    """Error path: a run that cannot finish within ``timeout`` raises TimeoutError, and every process of
    the deployment (SuperLink, SuperNodes, warm SuperExecs, app processes) is gone afterwards."""
    pytest.importorskip("flwr")
    before = _flower_processes()
    out = tmp_path / "slow"
    with pytest.raises(TimeoutError, match="did not finish"):
        deploy(clients=2, rounds=50, out=out, timeout=20, progress=False, **SMALL)
    _assert_all_stopped(out, before)


@pytest.mark.parametrize(("sig", "expected"), [(signal.SIGINT, 42), (signal.SIGTERM, 128 + signal.SIGTERM)])
def test_deploy_stops_everything_on_ctrl_c(tmp_path, sig, expected):
    """Ctrl-C (SIGINT) or ``kill`` (SIGTERM) during round 1: deploy raises KeyboardInterrupt /
    SystemExit(143) after stopping every process."""
    pytest.importorskip("flwr")
    before = _flower_processes()
    out = tmp_path / "int"
    # a terminal's Ctrl-C: SIGINT's default handler, also when the test runner was started in the background
    # (a non-interactive shell starts background jobs, and so their children, with SIGINT ignored)
    code = ("import signal, sys, json; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "from mlimaging.privacy.flower import deploy\n"
            "try:\n"
            f"    deploy(clients=2, rounds=50, out={str(out)!r}, timeout=300, progress=False, **{SMALL!r})\n"
            "except KeyboardInterrupt:\n"
            "    sys.exit(42)\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 240
        while not (out / "round.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, "deploy ended before round 1"
        # the leak check below sees this deployment's processes (their FLWR_HOME), so it can fail
        assert len(_flower_processes(out) - before) >= 3
        proc.send_signal(sig)
        # not a speed check: a generous bound (the stop itself takes at most ~3 x 5 s of grace) so that a loaded
        # CI machine (two test workers beside the deployment's processes) cannot fail it; a hang still fails
        try:
            rc = proc.wait(timeout=240)
        except subprocess.TimeoutExpired:
            logs = sorted(p.name for p in out.rglob("*.log"))
            pytest.fail(f"deploy still running 240 s after {sig!r}; logs: {logs}; "
                        f"flower processes: {sorted(set(_flower_processes()) - set(before))}")
        assert rc == expected
    finally:
        if proc.poll() is None:
            proc.kill()
    _assert_all_stopped(out, before)


def test_fork_executor_runs_its_task_type_only():
    """A warm SuperExec forks only for the task type it was made for (ClientApp by default, or ServerApp);
    anything else is refused and nothing is started; an unknown type is a ValueError."""
    pytest.importorskip("flwr")
    from flwr.supercore.constant import TaskType
    from flwr.supercore.superexec.executor import LaunchResultStatus
    from flwr.supercore.superexec.executor.types import ExecutionSpec

    from mlimaging.privacy._flower_exec import ForkExecutor

    def spec(task_type):
        return ExecutionSpec(task_type=task_type, runtime_api_address="127.0.0.1:1", token="ab", insecure=True,
                             root_certificates_path=None, runtime_dependency_install=False, parent_pid=None,
                             suppress_output=True, task_id=1)

    for ex, accepted, refused in ((ForkExecutor(), TaskType.CLIENT_APP, TaskType.SERVER_APP),
                                  (ForkExecutor("serverapp"), TaskType.SERVER_APP, TaskType.CLIENT_APP)):
        assert ex.launch(spec(refused)).status == LaunchResultStatus.FAILED
        assert ex.children == {}
        assert ex.get_eligible_capacity(set(TaskType)) == ({accepted}, set())
        assert ex.get_eligible_capacity({refused}) == (set(), set())
    with pytest.raises(ValueError, match="task_type"):
        ForkExecutor("agentapp")


def test_flwr_is_imported_lazily():
    code = ("import sys, mlimaging.cli, mlimaging.privacy.flower, mlimaging.cli.fl_deploy, "
            "mlimaging.privacy._flower_exec, mlimaging.privacy._flower_zygote; "
            "assert not [m for m in sys.modules if m.split('.')[0] == 'flwr'], 'flwr imported at module level'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_missing_flower_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "flwr", None)  # import flwr -> ImportError
    from mlimaging.privacy.flower import make_client_app, make_server_app

    for build in (make_client_app, make_server_app, lambda: deploy(clients=1, rounds=1, out=tmp_path)):
        with pytest.raises(ImportError, match=r'mlimaging\[fl\]'):
            build()
    res = CliRunner().invoke(_cli_app(), ["fl", "deploy", "--clients", "2", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "mlimaging[fl]" in res.output


def _cli_app():
    from mlimaging.cli import app

    return app


@pytest.mark.parametrize("kw, match", [
    ({"clients": 0}, "clients"), ({"rounds": 0}, "rounds"), ({"lr": 0.0}, "lr"), ({"lr": float("nan")}, "lr"),
    ({"batch_size": 0}, "batch_size"), ({"scheme": "zipf"}, "scheme"), ({"proximal_mu": -1.0}, "proximal_mu"),
    ({"round_timeout": 0}, "round_timeout"), ({"kill": (3, 1)}, "kill"), ({"kill": (0, 9)}, "kill"),
    ({"kill": 1}, "kill"), ({"n_train": 0}, "n_train"), ({"clients": True}, "clients"),
    ({"secure": True}, "secure"), ({"secure": "yes", "clients": 3}, "secure"), ({"parallel": -1}, "parallel"),
    ({"parallel": 1.5}, "parallel"),
])
def test_deploy_rejects_bad_input(tmp_path, kw, match):
    args = {"clients": 2, "rounds": 1, "out": tmp_path / "o", **kw}
    with pytest.raises(ValueError, match=match):
        deploy(**args)
    assert not (tmp_path / "o").exists()  # nothing written, nothing started


@settings(max_examples=25, deadline=None)
@given(clients=st.integers(-5, 0) | st.floats(allow_nan=True) | st.text(max_size=3))
def test_deploy_rejects_any_bad_clients(clients):
    with pytest.raises(ValueError, match="clients"):
        deploy(clients=clients, rounds=1, out="/nonexistent/never-created")


@pytest.mark.parametrize("args, word", [
    (["--clients", "0"], "--clients"), (["--rounds", "0"], "--rounds"), (["--scheme", "zipf"], "--scheme"),
    (["--mu", "-1"], "--mu"), (["--batch-size", "0"], "--batch-size"), (["--parallel", "-2"], "--parallel"),
])
def test_cli_bad_input_is_one_red_line(tmp_path, args, word):
    res = CliRunner().invoke(_cli_app(), ["fl", "deploy", *args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert word in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("flag, expected", [([], None), (["--parallel", "0"], 0), (["--parallel", "3"], 3)])
def test_cli_parallel_reaches_deploy(tmp_path, monkeypatch, flag, expected):
    """--parallel -1 (default) leaves deploy's own default (the cores less one); others pass through."""
    pytest.importorskip("flwr")
    import mlimaging.privacy.flower as flower_module

    seen = {}

    def fake_deploy(**kwargs):
        seen.update(kwargs)
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(flower_module, "deploy", fake_deploy)
    res = CliRunner().invoke(_cli_app(), ["fl", "deploy", *flag, "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "stopped by the test" in res.output
    assert seen["parallel"] == expected and seen["clients"] == 4


def test_cli_reports_a_sigterm_stop(tmp_path, monkeypatch):
    """deploy ends with SystemExit(143) on SIGTERM (after stopping its processes): the CLI says so, exits 143
    and marks the run folder as ended by it."""
    pytest.importorskip("flwr")
    import mlimaging.privacy.flower as flower_module

    def terminated(**kwargs):
        raise SystemExit(143)

    monkeypatch.setattr(flower_module, "deploy", terminated)
    out = tmp_path / "o"
    res = CliRunner().invoke(_cli_app(), ["fl", "deploy", "--out", str(out)])
    assert res.exit_code == 143 and "terminated; every Flower process was stopped" in res.output
    assert "SIGTERM" in (out / "config.json").read_text()


def test_cli_out_folder_rules(tmp_path):
    """An existing --out needs --force (no --resume is offered), which deletes only what fl deploy writes."""
    pytest.importorskip("flwr")  # the checks run once Flower is known to be there
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = CliRunner().invoke(_cli_app(), ["fl", "deploy", "--out", str(out)])
    assert res.exit_code == 2 and "pass --force to overwrite it" in res.output and "--resume" not in res.output
    res = CliRunner().invoke(_cli_app(), ["fl", "deploy", "--out", str(out), "--force"])
    assert res.exit_code == 2 and "fl deploy did not write (keep.txt)" in res.output
    assert (out / "keep.txt").is_file()
    (tmp_path / "f").write_text("x")
    res = CliRunner().invoke(_cli_app(), ["fl", "deploy", "--out", str(tmp_path / "f")])
    assert res.exit_code == 2 and "is a file" in res.output

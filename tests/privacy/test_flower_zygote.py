"""The zygote of the Flower deployment (mlimaging.privacy._flower_zygote) and the SuperNode wait patch.

Needs Flower (``pip install "mlimaging[fl]"``); skipped without it, except the pure-Python parts.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from mlimaging.privacy._flower_procs import _free_port, _label, _proc_table, alive, tree_cpu_seconds
from mlimaging.privacy._flower_zygote import (
    IDLE_WAIT,
    REPLY_WAIT,
    _ShortSleeps,
    deployment_spec,
    patch_supernode_waits,
    restore_supernode_waits,
)


def _gone(tree: dict) -> bool:
    """Wait until no process of ``tree`` is alive; 60 s is a hang bound, not a speed check."""
    deadline = time.monotonic() + 60
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(tree) == []


def _start_zygote(tmp_path, spec: dict) -> subprocess.Popen:
    """The zygote of ``spec`` (written to ``tmp_path/spec.json``), with Flower's telemetry and update check off."""
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1", FLWR_HOME=str(tmp_path))
    return subprocess.Popen([sys.executable, "-m", "mlimaging.privacy._flower_zygote", "--spec",
                             str(tmp_path / "spec.json")], env=env, stdout=subprocess.DEVNULL, start_new_session=True)


def _pids(path, deadline):
    """The zygote's ``{name: pid}`` once it has forked every child (both stages)."""
    while time.monotonic() < deadline:
        try:
            got = json.loads(path.read_text())
            if got["complete"]:
                return got["pids"]
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the zygote wrote no complete {path.name}")


@pytest.fixture
def sci():
    pytest.importorskip("flwr")
    from flwr.supernode import start_client_internal as module

    yield module
    restore_supernode_waits()
    assert module.time is time  # never leaves the patch behind for other tests


def test_patch_shortens_the_supernode_waits_and_is_undone(sci, monkeypatch):
    """Worked example: Flower's fixed 3 s idle wait becomes ``idle``, its 0.5 s reply checks ``reply``;
    shorter sleeps are kept; every other attribute of ``time`` is ``time``'s; restore puts ``time`` back."""
    assert patch_supernode_waits(0.2, 0.05) is True
    assert isinstance(sci.time, _ShortSleeps)
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    for s in (3, 3.0, 0.5, 0.01):
        sci.time.sleep(s)
    assert slept == [0.2, 0.2, 0.05, 0.01]
    assert sci.time.monotonic is time.monotonic and sci.time.time is time.time
    assert patch_supernode_waits(0.4, 0.1) is True  # re-applied with new values, not wrapped twice
    sci.time.sleep(3)
    assert slept[-1] == 0.4
    restore_supernode_waits()
    assert sci.time is time


def test_patch_falls_back_on_an_unknown_flower(sci, monkeypatch, caplog):
    """Guard: another Flower version, or a module that no longer sleeps through ``time``, is left alone
    with a logged note."""
    import flwr

    monkeypatch.setattr(flwr, "__version__", "9.0.0")
    with caplog.at_level(logging.WARNING, logger="mlimaging.privacy._flower_zygote"):
        assert patch_supernode_waits() is False
    assert sci.time is time
    assert "left unpatched" in caplog.text
    monkeypatch.undo()
    monkeypatch.setattr(sci, "time", object())  # a Flower whose loop no longer uses the module `time`
    assert patch_supernode_waits() is False
    assert not isinstance(sci.time, _ShortSleeps)


def test_zygote_children_stop_with_the_zygote(tmp_path):
    """Invariant: every process the zygote forked (SuperLink, SuperNode, warm SuperExecs) runs as its own
    pid, and all of them are gone after the zygote is SIGKILLed (``PR_SET_PDEATHSIG``), without any
    signal sent to them by us."""
    pytest.importorskip("flwr")
    port = _free_port()
    spec = deployment_spec(port=port, clients=1, logs=tmp_path, pids=tmp_path / "pids.json", warm=None)
    zygote = _start_zygote(tmp_path, spec)
    try:
        deadline = time.monotonic() + 120
        pids = _pids(tmp_path / "pids.json", deadline)
        assert sorted(pids) == ["superexec-0", "superexec-serverapp", "superlink", "supernode-0"]
        table = _proc_table()
        tree = {p: table[p][1] for p in pids.values() if p in table}
        assert len(set(pids.values())) == 4 and all(table[p][0] == zygote.pid for p in tree)
        by_name = tree_cpu_seconds([zygote.pid], by_name=True, labels={p: _label(n) for n, p in pids.items()})
        assert {"flower-superlink", "flower-supernode", "superexec+ClientApps", "superexec+ServerApp"} <= set(by_name)
        os.kill(zygote.pid, signal.SIGKILL)
        zygote.wait(timeout=30)
        assert _gone(tree)
    finally:
        if zygote.poll() is None:
            zygote.kill()
            zygote.wait()


def test_zygote_forwards_sigterm_and_exits(tmp_path):
    """``SIGTERM`` to the zygote stops its children and then the zygote itself (exit code 0)."""
    pytest.importorskip("flwr")
    spec = deployment_spec(port=_free_port(), clients=1, logs=tmp_path, pids=tmp_path / "pids.json", warm=None)
    spec["children"] = spec["children"][:1]  # the SuperLink alone
    zygote = _start_zygote(tmp_path, spec)
    try:
        deadline = time.monotonic() + 120
        link = _pids(tmp_path / "pids.json", deadline)["superlink"]
        tree = {link: _proc_table()[link][1]}
        zygote.send_signal(signal.SIGTERM)
        assert zygote.wait(timeout=60) == 0
        assert alive(tree) == []
    finally:
        if zygote.poll() is None:
            zygote.kill()
            zygote.wait()


def test_tree_cpu_seconds_labels_a_process_and_its_descendants():
    """Worked example: a labelled pid (and everything below it) is reported under its label."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        me = os.getpid()
        by_name = tree_cpu_seconds([me], by_name=True, labels={me: "tester"})
        assert set(by_name) == {"tester"}  # the sleeping child inherits the label
        assert by_name["tester"] == pytest.approx(tree_cpu_seconds([me]), abs=0.05)
    finally:
        child.kill()
        child.wait()


def test_deployment_spec_layout():
    """The spec names every process once: the SuperLink (process isolation) with its ServerApp SuperExec, and
    per client a SuperNode on its own port with a ClientApp SuperExec that exits with it."""
    from pathlib import Path

    spec = deployment_spec(port=9092, clients=3, logs=Path("/l"), pids=Path("/l/p.json"), warm={"seed": 0})
    names = [c["name"] for c in spec["children"]]
    assert len(names) == len(set(names)) == 2 + 2 * 3
    link = spec["children"][0]
    assert link["role"] == "superlink" and "--isolation" in link["argv"] and "process" in link["argv"]
    ports = set()
    for k in range(3):
        node = next(c for c in spec["children"] if c["name"] == f"supernode-{k}")
        ex = next(c for c in spec["children"] if c["name"] == f"superexec-{k}")
        port = node["argv"][node["argv"].index("--port") + 1]
        ports.add(port)
        assert ex["parent"] == node["name"] and ex["task_type"] == "clientapp"
        assert ex["argv"][ex["argv"].index("--runtime-api-address") + 1] == f"127.0.0.1:{port}"
        assert f"partition-id={k} num-partitions=3" in node["argv"]
    assert len(ports) == 3 and "9092" not in ports
    assert spec["idle_wait"] == IDLE_WAIT and REPLY_WAIT < 0.5


def _hold_slot(folder, slots, hold, record):
    """Child body: take a CPU slot, append (start, end) of holding it to ``record``, then exit."""
    from mlimaging.privacy._flower_procs import _cpu_slot

    with _cpu_slot(folder, slots, wait=0.005):
        t0 = time.monotonic()
        time.sleep(hold)
        t1 = time.monotonic()
    with open(record, "a") as f:
        f.write(f"{t0} {t1}\n")


def test_cpu_slots_admit_at_most_n_processes(tmp_path):
    """Invariant: 5 processes competing for 2 slots all run, and at no instant do more than 2 hold one."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    record = tmp_path / "rec.txt"
    procs = [ctx.Process(target=_hold_slot, args=(tmp_path / "locks", 2, 0.15, record)) for _ in range(5)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    spans = [tuple(map(float, line.split())) for line in record.read_text().splitlines()]
    assert len(spans) == 5
    events = sorted([(t0, 1) for t0, _ in spans] + [(t1, -1) for _, t1 in spans], key=lambda e: (e[0], e[1]))
    held = peak = 0
    for _, d in events:
        held += d
        peak = max(peak, held)
    assert peak == 2


def test_cpu_slot_of_a_killed_process_is_freed(tmp_path):
    """A client SIGKILLed while training (the deployment's fault test) never keeps its slot: the kernel drops
    its lock, so the next client gets the one slot."""
    from mlimaging.privacy._flower_procs import _cpu_slot

    code = ("import sys, time; from pathlib import Path; from mlimaging.privacy._flower_procs import _cpu_slot\n"
            "with _cpu_slot(Path(sys.argv[1]), 1):\n    print('held', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.kill()
        holder.wait(timeout=30)
        with _cpu_slot(tmp_path, 1) as k:
            assert k == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with _cpu_slot(tmp_path, 0) as k:  # no limit
        assert k is None


def test_flat_weights_round_trip_exactly():
    """Oracle: the flat wire format gives back every tensor bit for bit, in order; mixed dtypes fall back to one
    array per tensor; a flat array of the wrong size is refused."""
    pytest.importorskip("flwr")
    import torch

    from mlimaging.privacy._flower_arrays import _pack, _unpack
    from mlimaging.privacy.flower import initial_model

    state = initial_model(3).state_dict()
    rec = _pack(state)
    assert list(rec) == ["flat"] and rec["flat"].numpy().size == sum(v.numel() for v in state.values())
    back = _unpack(rec, state)
    assert list(back) == list(state)
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in state.items())
    mixed = {"w": torch.randn(2, 3), "n": torch.tensor(7)}
    rec = _pack(mixed)
    assert sorted(rec) == ["n", "w"]
    assert all(torch.equal(_unpack(rec, mixed)[k], v) for k, v in mixed.items())
    with pytest.raises(ValueError, match="does not fit"):
        _unpack(_pack({"a": torch.zeros(4)}), {"a": torch.zeros(5)})


def test_zygote_dies_with_the_process_that_started_it(tmp_path):
    """Invariant: if deploy's own process is SIGKILLed (no finally runs), the zygote and its children still go."""
    pytest.importorskip("flwr")
    code = ("import json, subprocess, sys, time\nfrom pathlib import Path\n"
            "from mlimaging.privacy._flower_procs import _free_port\n"
            "from mlimaging.privacy._flower_zygote import deployment_spec\n"
            "tmp = Path(sys.argv[1])\n"
            "spec = deployment_spec(port=_free_port(), clients=1, logs=tmp, pids=tmp / 'pids.json', warm=None)\n"
            "spec['children'] = spec['children'][:1]\n"
            "(tmp / 'spec.json').write_text(json.dumps(spec))\n"
            "z = subprocess.Popen([sys.executable, '-m', 'mlimaging.privacy._flower_zygote', '--spec',"
            " str(tmp / 'spec.json')], start_new_session=True, stdout=subprocess.DEVNULL)\n"
            "print(z.pid, flush=True)\ntime.sleep(600)\n")
    env = dict(os.environ, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1", FLWR_HOME=str(tmp_path))
    starter = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
    tree = {}
    try:
        zpid = int(starter.stdout.readline())
        deadline = time.monotonic() + 120
        link = _pids(tmp_path / "pids.json", deadline)["superlink"]
        table = _proc_table()
        tree = {p: table[p][1] for p in (zpid, link) if p in table}
        assert len(tree) == 2
        starter.kill()
        starter.wait(timeout=30)
        assert _gone(tree)
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        for pid in alive(tree):
            os.kill(pid, signal.SIGKILL)

"""Federated-learning targets of issue 14: FedAvg against FedSGD, secure aggregation cost, Flower.

==============  ===================================================================  ==============
case            what is measured                                                     target
==============  ===================================================================  ==============
fedavg-rounds   IID, 10 clients, C = 1 (every client every round), LeNet on          <= 0.10
                mnist5k (3,500 training / 1,000 test digits): rounds for FedAvg
                (E = 5, B = 10, SGD lr 0.2) to reach 95% test accuracy, divided by
                FedSGD's rounds (one full-batch gradient per client, lr 0.3). Each
                run stops at the target or at its cap (FedAvg 30, FedSGD 300
                rounds). When FedSGD never reaches 95% the ratio is reported as an
                upper bound, FedAvg's rounds / FedSGD's cap (FedSGD's true count
                is larger); it passes only if that bound is measured <= 0.10.
secure-agg      a FedAvg round of 10 clients (E = 1, B = 10, LeNet-size updates,     <= 2.0x
                61,706 floats) with secure aggregation (additive secret sharing
                over Z_2^64) against plain weighted averaging: whole-round wall
                time (local training + aggregation), alternating repeats, same
                seeds and initial weights; median ratio. Bytes per round and the
                aggregation seconds alone are recorded beside, and (for reading,
                not for the pass rule) where the secure sum's time goes: masking
                per client, adding shares per party, opening at the server.
flower          Flower deployment (``mlimaging fl deploy``: a SuperLink and 4        +-0.5 pt,
                SuperNodes as processes on 127.0.0.1, each with a warm SuperExec,    <= 2x CPU
                all forked from one warm zygote) of FedAvg, 4 clients x 5 rounds,
                every client training its whole partition for E = 5 epochs of
                B = 10 (SGD lr 0.2: the fedavg-rounds setting, chosen before
                measuring), all 3,500 digits: final test accuracy within 0.5 points
                of the in-process ``fedavg`` with the same seeds and settings, and
                CPU time of all the deployment's processes (zygote, SuperLink,
                ServerApp, SuperNodes, SuperExecs, ClientApps, ``flwr run``,
                start-up and shut-down included; read from /proc before they are
                stopped) <= 2x the simulation's (one process, one thread; mean of
                one run before and one after the deployment). Wall times beside:
                on a shared machine the deployment's many processes get a larger
                share of the cores than the one simulation process, so wall time
                is no fair measure there. Recorded too: CPU per program, the
                clients' training CPU, start-up, and each round's wall time
                against its training (the slowest client, or the total over the
                ``parallel`` CPU slots if longer; the difference is the round's
                fixed overhead).
==============  ===================================================================  ==============

Where the Flower deployment's time goes (flower case, CPU s of all its processes against the simulation's, 2-core
machine shared with other jobs, load average beside; Flower 1.42):

=============================================  ==========  =========  =====  ============  ========
change (each on top of the previous)           deployment  simulation ratio  wall (sim) s  load
=============================================  ==========  =========  =====  ============  ========
separate processes (SuperLink, 4 SuperNodes,   60.9        15.8       3.85x  61 (20)       4.6
4 warm SuperExecs, Flower's ServerApp procs)
one zygote forks them all; SuperNode idle      39.4        17.3       2.28x  50 (29)       5.3-6.3
wait 3 -> 0.2 s; no update check
weights as one flat array per message; serial  32.9        16.4       2.01x  35 (17)       4.0
SuperExecs; idle wait 0.5 s
at most 2 ClientApps train at once (CPU slots)  32.5        16.9       1.93x  33 (17)       3.1-4.2
zygote in two stages; 1 slot (the cores less    30.4        16.6       1.83x  34 (21)       3.8-4.1
one, deploy's default); final, run twice        30.4        18.4       1.66x  37 (27)       4.5-5.8
=============================================  ==========  =========  =====  ============  ========

Before, by program: our SuperExecs 36.9 (of which ~15 training, ~5 s start-up each), SuperNodes 8.8, SuperLink
8.0, ``flwr-serverapp`` 5.3, ``flower-superexec`` 1.1, ``flwr run`` 0.8; start-up 21 s (every process imports
Flower, the apps torch and mlimaging), 4.5 s of fixed waits per round (a SuperNode's fixed 3 s idle wait, 0.5 s
polls), shut-down 5.5 s. After (the last run): the zygote's one import of everything and the data 5.0 CPU s; the
ClientApps 18.8 (16.7 of it local training, 20 tasks at about 0.06 s each besides, the rest their SuperExecs'
polls); SuperLink 2.8 and SuperNodes 2.3 (every object of a message is one HTTP request of about 5.5 ms CPU on the
two ends: 23 objects per message before, 5 after; idle pulls every 0.5 s); ServerApp 0.7; ``flwr run`` 0.7.
Start-up 6-9 s, about 0.9 s of fixed overhead per round, shut-down 0.9 s. Clients training at the same time
cost more CPU each on this machine (a local update: 0.76-0.85 CPU s alone, 0.90-1.10 two at once, 1.07 four at
once), hence one training slot on 2 cores. What is left is the zygote (imports 4, data and warm-up 1 CPU s),
Flower's per-request cost (about 6 CPU s for SuperLink, SuperNodes, SuperExec polls and ServerApp) and ``flwr
run``; the simulation's own CPU time varies with the load (15.3-18.8 s for the same work), the deployment's
less (30.4 s in both final runs), so on a quiet machine the ratio is nearer 2x than under load.

By default torch uses one thread (a 2-core machine shared with other jobs). ``--quick`` uses a tenth
of the digits, caps of 3 / 10 rounds and one timing repeat (the targets are then not expected to be met).

Writes ``benchmarks/results/federated.json`` (``federated-quick.json`` with ``--quick``) and prints a table.

Run: ``python benchmarks/federated.py`` (``--quick`` for a short check; ``--cases flower`` reruns only that case
and keeps the other rows of the existing results file, each marked with the run it came from; rows measured with
other settings are not mixed in).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _common import (  # benchmarks/ is on sys.path when a script runs
    alternate,
    merge_reports,
    print_targets,
)
from mlimaging.experiments.federated import load_mnist
from mlimaging.models import create_model
from mlimaging.privacy import fedavg, fedsgd, partition
from mlimaging.utils import package_versions

RESULTS = Path(__file__).resolve().parent / "results" / "federated.json"
TARGET_ACC, RATIO, SECURE = 0.95, 0.10, 2.0
FLOWER_TARGET = "+-0.5 pt, <= 2x CPU"
FEDAVG = {"local_epochs": 5, "batch_size": 10, "lr": 0.2, "cap": 30}
FEDSGD = {"lr": 0.3, "cap": 300}
CASES = ("fedavg-rounds", "secure-agg", "flower")


def until_target(algorithm: str, data: tuple, parts: list[list[int]], *, cap: int, seed: int = 0
                 ) -> dict[str, Any]:
    """Run ``algorithm`` one round at a time (every client each round, C = 1) from a seeded LeNet until
    the test accuracy reaches the target or ``cap`` rounds; round ``t`` uses seed ``seed + t`` for the
    clients' data order (FedSGD's full batches do not depend on it)."""
    xtr, ytr, xte, yte = data
    model = create_model("lenet", num_classes=10, seed=seed)
    acc, seconds, reached = [], 0.0, None
    for t in range(1, cap + 1):
        common = dict(rounds=1, fraction=1.0, test_data=(xte, yte), seed=seed + t, progress=False)
        if algorithm == "fedsgd":
            h = fedsgd(model, (xtr, ytr), parts, lr=FEDSGD["lr"], **common)
        else:
            h = fedavg(model, (xtr, ytr), parts, local_epochs=FEDAVG["local_epochs"], batch_size=FEDAVG["batch_size"],
                       lr=FEDAVG["lr"], **common)
        acc.append(float(h.accuracy[0]))
        seconds += h.seconds[0]
        if acc[-1] >= TARGET_ACC:
            reached = t
            break
    return {"rounds": reached, "cap": cap, "accuracy": acc, "train_seconds": seconds}


def rounds_case(data: tuple, *, quick: bool) -> dict[str, Any]:
    parts = partition((data[0], data[1]), num_clients=10, scheme="iid", seed=0)
    avg = until_target("fedavg", data, parts, cap=3 if quick else FEDAVG["cap"])
    sgd = until_target("fedsgd", data, parts, cap=10 if quick else FEDSGD["cap"])
    if avg["rounds"] is None:
        ratio, bound, passed = None, "FedAvg did not reach the target", False
    elif sgd["rounds"] is None:
        ratio, bound = avg["rounds"] / sgd["cap"], "upper bound (FedSGD did not reach the target within its cap)"
        passed = ratio <= RATIO
    else:
        ratio, bound = avg["rounds"] / sgd["rounds"], "measured"
        passed = ratio <= RATIO
    return {"case": "fedavg-rounds", "ratio": ratio, "ratio_kind": bound, "target": RATIO, "passed": passed,
            "fedavg": {**avg, **{k: v for k, v in FEDAVG.items() if k != "cap"}},
            "fedsgd": {**sgd, "lr": FEDSGD["lr"]}, "clients": 10, "fraction": 1.0, "target_accuracy": TARGET_ACC}


def secure_case(data: tuple, *, repeats: int) -> dict[str, Any]:
    xtr, ytr, _, _ = data
    parts = partition((xtr, ytr), num_clients=10, scheme="iid", seed=0)
    init = create_model("lenet", num_classes=10, seed=0).state_dict()
    last: dict[str, Any] = {}

    def one_round(secure: bool) -> None:
        model = create_model("lenet", num_classes=10, seed=0)
        model.load_state_dict(init)
        last[secure] = fedavg(model, (xtr, ytr), parts, rounds=1, fraction=1.0, local_epochs=1, batch_size=10,
                              lr=FEDAVG["lr"], seed=0, secure=secure, progress=False)

    cpu, wall = alternate({"plain": lambda: one_round(False), "secure": lambda: one_round(True)}, repeats=repeats)
    split = secure_split(len(parts), sum(v.numel() for v in init.values() if v.is_floating_point()), repeats=repeats)
    ratios = [s / p for s, p in zip(wall["secure"], wall["plain"], strict=True)]
    ratio = statistics.median(ratios)
    return {"case": "secure-agg", "ratio": ratio, "target": SECURE, "passed": ratio <= SECURE, "ratios": ratios,
            "wall_plain": wall["plain"], "wall_secure": wall["secure"], "cpu_plain": cpu["plain"],
            "cpu_secure": cpu["secure"], "aggregate_seconds_plain": last[False].aggregate_seconds[0],
            "aggregate_seconds_secure": last[True].aggregate_seconds[0], "bytes_plain": last[False].bytes[0],
            "bytes_secure": last[True].bytes[0],
            "parameters": sum(v.numel() for v in init.values() if v.is_floating_point()), "clients": 10,
            "secure_split": split}


def secure_split(clients: int, d: int, *, repeats: int) -> dict[str, Any]:
    """Informational split of ``secure_sum``'s cost (the secure aggregation of the secure-agg row), timed on its
    own steps for ``clients`` random updates of ``d`` values (median of ``repeats`` runs): per client, the
    masking (fixed-point encoding and splitting into one additive share per party, ``n - 1`` random ring
    vectors); per party, adding the shares it received; at the server, opening the sum of the partial sums
    (ring sum and decoding). The parties' work is on the clients in a deployment (each client is a party)."""
    from mlimaging.privacy.smpc import _encode_clients, _share_ring, decode

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(clients, d, dtype=torch.float64, generator=gen) * 1e-2
    n = max(clients, 2)
    mask, add, open_ = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        enc = _encode_clients(x, 16)
        shares = [_share_ring(enc[c], n, gen) for c in range(clients)]
        t1 = time.perf_counter()
        partial = torch.zeros((n, d), dtype=torch.int64)
        for sh in shares:
            partial += sh
        t2 = time.perf_counter()
        total = decode(partial.sum(0), frac_bits=16)
        t3 = time.perf_counter()
        mask.append((t1 - t0) / clients)
        add.append((t2 - t1) / n)
        open_.append(t3 - t2)
    assert torch.allclose(total, x.sum(0), atol=clients * 2.0 ** -16)
    return {"client_mask_s": statistics.median(mask), "party_sum_s": statistics.median(add),
            "server_open_s": statistics.median(open_), "clients": clients, "parties": n, "values": d}


#: The Flower case's workload, chosen before measuring: every client trains its whole partition for E = 5
#: local epochs of B = 10 with SGD lr 0.2, the FedAvg setting of the fedavg-rounds target (McMahan et al.'s
#: E = 5, B = 10 row), 4 clients x 5 rounds on all 3,500 training digits; the simulation runs the same.
FLOWER = {"clients": 4, "rounds": 5, "seed": 0, "lr": FEDAVG["lr"], "local_epochs": FEDAVG["local_epochs"],
          "batch_size": FEDAVG["batch_size"]}


def _overheads(run: Path, parallel: int) -> dict[str, Any]:
    """Where the deployment's time went, from its ``timing.json`` (deploy) and ``history.json`` (ServerApp):
    start-up until round 1 is sent, each round's wall time against its slowest client's local training
    (the difference is the round's fixed overhead: message delivery, SuperNode polling, the ClientApp
    process, serialisation, aggregation), and shut-down after the last round."""
    t = json.loads((run / "timing.json").read_text())
    hist = json.loads((run / "history.json").read_text())
    rounds = hist["times"]["rounds"]
    walls = [r["aggregated"] - r["sent"] for r in rounds]
    slowest = [max(c) for c in hist["client_train_seconds"]]
    # with `parallel` CPU slots the clients train at most `parallel` at a time: a round's training takes at
    # least max(slowest client, total training / parallel)
    train = [max(max(c), sum(c) / parallel) for c in hist["client_train_seconds"]]
    cpu_train = sum(map(sum, hist.get("client_train_cpu_seconds", [])))
    return {"cpu_seconds": t["cpu_seconds"], "cpu_by_program": t.get("cpu_by_program"),
            "cpu_client_training": cpu_train, "cpu_not_training": t["cpu_seconds"] - cpu_train,
            "startup_s": rounds[0]["sent"] - t["start"], "serverapp_start_s": hist["times"]["serverapp_main"] - t["start"],
            "round_wall_s": walls, "round_slowest_client_train_s": slowest, "round_train_s": train,
            "round_overhead_s": [w - c for w, c in zip(walls, train, strict=True)],
            "client_train_s": hist["client_train_seconds"], "client_train_cpu_s": hist.get("client_train_cpu_seconds"),
            "shutdown_s": t["stopped"] - rounds[-1]["aggregated"], "parallel": parallel}


def flower_case(*, quick: bool) -> dict[str, Any]:
    """``mlimaging fl deploy``'s FedAvg (SuperLink + SuperNodes as processes on 127.0.0.1) against the
    in-process :func:`~mlimaging.privacy.fedavg` with the same seeds, data, partition and settings
    (:data:`FLOWER`); the simulation is timed before and after the deployment and its mean is used."""
    if importlib.util.find_spec("flwr") is None:
        return {"case": "flower", "ratio": None, "target": FLOWER_TARGET, "passed": False,
                "note": 'not run: flwr is not installed (pip install "mlimaging[fl]")'}
    from mlimaging.privacy.flower import _config, _data, default_parallel, deploy, initial_model

    s = dict(FLOWER, **({"clients": 2, "rounds": 2} if quick else {}))
    n_train, n_test = (350, 100) if quick else (None, None)
    train, test, parts = _data(_config({"num-clients": s["clients"], "n-train": n_train or 0, "n-test": n_test or 0,
                                        "seed": s["seed"]}))

    def simulate() -> tuple[Any, float, float]:
        model = initial_model(s["seed"])
        t0, c0 = time.perf_counter(), time.process_time()
        h = fedavg(model, train, parts, rounds=s["rounds"], fraction=1.0, local_epochs=s["local_epochs"],
                   batch_size=s["batch_size"], lr=s["lr"], seed=s["seed"], test_data=test, progress=False)
        return h, time.perf_counter() - t0, time.process_time() - c0

    sim, sim_before, cpu_before = simulate()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        flower = deploy(clients=s["clients"], rounds=s["rounds"], out=Path(tmp) / "run", n_train=n_train, n_test=n_test,
                        progress=False, seed=s["seed"], lr=s["lr"], local_epochs=s["local_epochs"],
                        batch_size=s["batch_size"])
        flower_s = time.perf_counter() - t0
        parts_of_time = _overheads(Path(tmp) / "run", default_parallel())  # deploy ran with its default
    _, sim_after, cpu_after = simulate()
    sim_s, sim_cpu = (sim_before + sim_after) / 2, (cpu_before + cpu_after) / 2
    flower_cpu = parts_of_time["cpu_seconds"]
    gap = abs(flower.accuracy[-1] - sim.accuracy[-1])
    ratio, wall_ratio = flower_cpu / sim_cpu, flower_s / sim_s
    overhead = statistics.mean(parts_of_time["round_overhead_s"])
    return {"case": "flower", "ratio": ratio, "ratio_kind": "CPU seconds (all processes of the deployment)",
            "wall_ratio": wall_ratio, "target": FLOWER_TARGET, "passed": gap <= 0.005 and ratio <= 2.0,
            "accuracy_flower": flower.accuracy[-1], "accuracy_simulation": sim.accuracy[-1], "gap": gap,
            "cpu_seconds_flower": flower_cpu, "cpu_seconds_simulation": sim_cpu, "seconds_flower": flower_s,
            "seconds_simulation": sim_s, "seconds_simulation_runs": [sim_before, sim_after],
            "cpu_seconds_simulation_runs": [cpu_before, cpu_after], "workload": s, "n_train": len(train),
            "profile": parts_of_time, "mean_round_overhead_s": overhead,
            "note": f"acc {flower.accuracy[-1]:.4f} vs {sim.accuracy[-1]:.4f} (gap {100 * gap:.2f} pt); CPU "
                    f"{flower_cpu:.0f} s vs {sim_cpu:.0f} s (wall {flower_s:.0f} s vs {sim_s:.0f} s, {wall_ratio:.2f}x); "
                    f"{parts_of_time['cpu_client_training']:.0f} CPU s in local training; start-up "
                    f"{parts_of_time['startup_s']:.0f} s, per round {overhead:.1f} s overhead + "
                    f"{statistics.mean(parts_of_time['round_train_s']):.1f} s training (wall); "
                    f"{s['clients']} clients x {s['rounds']} rounds, E={s['local_epochs']} B={s['batch_size']}"}


def _split_note(split: dict[str, Any] | None) -> str:
    if not split:
        return ""
    return (f"; secure sum: masking {split['client_mask_s'] * 1e3:.1f} ms per client, adding shares "
            f"{split['party_sum_s'] * 1e3:.1f} ms per party, opening {split['server_open_s'] * 1e3:.1f} ms at the server")


def _cells(r: dict[str, Any]) -> tuple[str, str, str]:
    if r["case"] == "fedavg-rounds":
        a, s = r["fedavg"], r["fedsgd"]
        shown = "-" if r["ratio"] is None else (f"< {r['ratio']:.3f}" if r["ratio_kind"].startswith("upper")
                                                else f"{r['ratio']:.3f}")
        sgd = s["rounds"] if s["rounds"] is not None else f"> {s['cap']} (best acc {max(s['accuracy']):.3f})"
        return shown, f"<= {RATIO:.2f}", (f"FedAvg {a['rounds'] or '> ' + str(a['cap'])} rounds "
                                           f"({a['train_seconds']:.0f} s), FedSGD {sgd} ({s['train_seconds']:.0f} s); "
                                           f"{r['ratio_kind']}")
    if r["case"] == "secure-agg":
        return (f"{r['ratio']:.2f}x", f"<= {SECURE:.1f}x",
                f"round {statistics.median(r['wall_plain']):.2f} s plain / {statistics.median(r['wall_secure']):.2f} "
                f"s secure; aggregation {r['aggregate_seconds_plain'] * 1e3:.1f} / "
                f"{r['aggregate_seconds_secure'] * 1e3:.0f} ms; {r['bytes_plain'] / 1e6:.1f} / "
                f"{r['bytes_secure'] / 1e6:.1f} MB per round" + _split_note(r.get("secure_split")))
    if r["ratio"] is None:
        return "-", str(r["target"]), r["note"]
    return f"{r['ratio']:.2f}x", str(r["target"]), r["note"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short check: a tenth of the digits, small caps")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"default {RESULTS.name} (federated-quick.json with --quick)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"comma-separated cases to run (default all: {','.join(CASES)}); the others' rows are "
                             "kept from the existing output file when there is one")
    args = parser.parse_args()
    if args.output is None:
        args.output = RESULTS.with_name("federated-quick.json") if args.quick else RESULTS
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    if not cases or set(cases) - set(CASES):
        parser.error(f"--cases must name some of {', '.join(CASES)}, got {args.cases!r}")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    data = load_mnist(n_train=350 if args.quick else None, n_test=100 if args.quick else None, seed=0)
    run = {"fedavg-rounds": lambda: rounds_case(data, quick=args.quick),
           "secure-agg": lambda: secure_case(data, repeats=1 if args.quick else 5),
           "flower": lambda: flower_case(quick=args.quick)}
    rows = [run[c]() for c in CASES if c in cases]
    report = {"benchmark": "federated", "quick": args.quick, "cases_run": [c for c in CASES if c in cases],
              "torch_threads": torch.get_num_threads(), "n_train": len(data[1]), "n_test": len(data[3]), "rows": rows,
              "all_passed": all(r["passed"] for r in rows), "seconds": time.perf_counter() - started,
              "cpu_seconds": time.process_time(), "platform": platform.platform(),
              "processor": platform.processor(), "versions": package_versions(("mlimaging", "torch", "numpy"))}
    if set(cases) != set(CASES) and args.output.exists():  # the other cases' rows kept, each with its run
        report = merge_reports(json.loads(args.output.read_text()), report)
        rows = report["rows"]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=float))
    print_targets(f"Federated learning (issue 14){' --quick' if args.quick else ''}: mnist5k ({len(data[1])} train, "
                  f"{len(data[3])} test), {torch.get_num_threads()} torch thread(s)", rows, _cells,
                  summary=f"{'all targets met' if report['all_passed'] else 'some targets NOT met'}; wrote "
                          f"{args.output} ({report['seconds']:.0f} s, {report['cpu_seconds']:.0f} CPU s)", width=180)


if __name__ == "__main__":
    main()

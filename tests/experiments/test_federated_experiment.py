"""Experiment ``federated``: a tiny smoke run (the algorithms are tested in tests/privacy/)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from mlimaging.experiments import ExperimentFailed, list_experiments, run_experiment
from mlimaging.experiments.federated import load_mnist, simulate
from mlimaging.privacy import fedavg, partition

# The quick run's code path on smaller data: 400 digits, 5 clients, 2 of them per round.
TINY = dict(n_train=400, n_test=100, clients=5, fraction=0.4, rounds=4, fedsgd_rounds=4, target=0.3,
            grid=((1, 10), (5, 10)), schemes=("iid", "shards"), secure_rounds=1)
FIGURES = {"partitions.png", "accuracy-vs-round.png", "fedprox.png"}
TABLES = {"partitions.csv", "rounds-to-target-accuracy.csv", "fedprox-against-fedavg.csv",
          "secure-against-plain-aggregation.csv"}
LENET_PARAMS = 61706


def _rows(folder, name):
    with open(folder / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fl") / "run"
    assert "federated" in list_experiments()
    run_experiment("federated", quick=True, seed=0, out=folder, **TINY)
    return folder


def test_writes_every_figure_table_and_the_report(tiny_run):
    assert {p.name for p in (tiny_run / "figures").iterdir()} >= FIGURES
    assert {p.name for p in (tiny_run / "tables").iterdir()} == TABLES
    html = (tiny_run / "report.html").read_text()
    assert "Rounds to reach the target accuracy" in html and "Cost of secure aggregation" in html
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["n_train"] == 400 and metrics["n_test"] == 100


def test_partitions_are_iid_and_pathological(tiny_run):
    rows = {r["scheme"]: r for r in _rows(tiny_run, "partitions")}
    assert set(rows) == {"iid", "shards", "dirichlet"}
    assert int(rows["iid"]["min samples"]) == int(rows["iid"]["max samples"]) == 80
    assert int(rows["iid"]["max labels per client"]) == 10
    assert int(rows["shards"]["max labels per client"]) <= 3  # two label-sorted shards (a shard may straddle)
    assert float(rows["shards"]["mean labels per client"]) < float(rows["iid"]["mean labels per client"])


def test_rounds_table_has_every_configuration_and_fedavg_learns(tiny_run):
    rows = {r["algorithm"]: r for r in _rows(tiny_run, "rounds-to-target-accuracy")}
    assert list(rows) == ["FedSGD", "FedAvg E=1 B=10", "FedAvg E=5 B=10"]
    assert float(rows["FedAvg E=5 B=10"]["u (local steps)"]) == 5 * 80 / 10
    for r in rows.values():
        for s in ("iid", "shards"):
            best = float(r[f"{s} best acc"])
            assert 0 <= best <= 1
            assert r[f"{s} rounds"] == "-" or 1 <= int(r[f"{s} rounds"]) <= 4
            assert (best >= TINY["target"]) == (r[f"{s} rounds"] != "-")  # a run that reached it stopped there
    # 40 local steps per client and round beat one full-batch gradient per round on IID data
    fedavg_rounds, fedsgd_rounds = rows["FedAvg E=5 B=10"]["iid rounds"], rows["FedSGD"]["iid rounds"]
    assert fedavg_rounds != "-" and (fedsgd_rounds == "-" or int(fedavg_rounds) < int(fedsgd_rounds))


def test_secure_aggregation_bytes_follow_the_protocol(tiny_run):
    rows = {r["aggregation"]: r for r in _rows(tiny_run, "secure-against-plain-aggregation")}
    m, p, b = 2, 2, 4  # 2 clients per round, 2 parties, float32
    assert int(rows["plain"]["bytes per round"]) == 2 * m * LENET_PARAMS * b
    assert int(rows["secure"]["bytes per round"]) == m * LENET_PARAMS * b + (m * (p - 1) + p) * LENET_PARAMS * 8
    assert float(rows["secure"]["round s"]) > 0 and float(rows["plain"]["aggregation s"]) >= 0


def test_fedprox_rows_cover_the_non_iid_split(tiny_run):
    rows = _rows(tiny_run, "fedprox-against-fedavg")
    assert [(r["scheme"], r["algorithm"]) for r in rows] == [("shards", "FedAvg"), ("shards", "FedProx mu=0.1")]
    for r in rows:
        assert 0 <= float(r["best accuracy"]) <= 1 and 1 <= int(r["rounds run"]) <= TINY["rounds"]
        reached = r["rounds to target"] != "-"
        assert reached == (float(r["best accuracy"]) >= TINY["target"])
        assert not reached or int(r["rounds run"]) == int(r["rounds to target"])  # stopped at the target


def test_simulate_matches_the_library_and_is_seeded():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 2, generator=g)
    y = (x[:, 0] > 0).long()
    parts = partition((x, y), num_clients=3, seed=0)
    h1 = simulate("fedavg", (x, y), parts, rounds=2, fraction=1.0, lr=0.5, test=(x, y), seed=3,
                  model="logistic_regression_2")
    torch.manual_seed(3)
    net = torch.nn.Linear(2, 2)
    h2 = fedavg(net, (x, y), parts, rounds=2, fraction=1.0, local_epochs=1, batch_size=10, lr=0.5,
                test_data=(x, y), seed=3, progress=False)
    assert h1.accuracy == h2.accuracy and h1.loss == h2.loss
    with pytest.raises(ValueError, match="algorithm"):
        simulate("fedadam", (x, y), parts, rounds=1, fraction=1.0)


def test_load_mnist_is_stratified():
    xtr, ytr, xte, yte = load_mnist(n_train=200, n_test=50, seed=0)
    assert xtr.shape == (200, 1, 28, 28) and len(yte) == 50
    assert torch.bincount(ytr, minlength=10).min() >= 15


@pytest.mark.parametrize(("override", "match"), [({"fraction": 1.5}, "fraction"), ({"rounds": 0}, "rounds"),
                                                 ({"schemes": ("sorted",)}, "schemes"), ({"target": 0.0}, "target")])
def test_bad_settings_fail_with_a_named_setting(tmp_path, override, match):
    with pytest.raises(ExperimentFailed, match=match):
        run_experiment("federated", quick=True, out=tmp_path / "x", **override)


def test_local_steps_count_whole_batches():
    """u = E * ceil(n_k / B): a batch at least as large as a client's data is one full batch per epoch,
    the same as B = inf (35-digit clients with B = 50; the full run has 70-digit clients)."""
    from mlimaging.experiments.federated import _steps

    assert _steps(1, 50, 35.0) == _steps(1, "all", 35.0) == 1.0
    assert _steps(5, 50, 35.0) == 5.0
    assert _steps(5, 10, 35.0) == 20.0  # batches of 10, 10, 10, 5 per epoch

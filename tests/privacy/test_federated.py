"""FedAvg / FedSGD / FedProx: oracles against centralised gradient descent, invariants, bad input, a real run."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from mlimaging.privacy import (
    FLHistory,
    ProximalStep,
    fedavg,
    fedsgd,
    partition,
    rounds_to_accuracy,
)
from mlimaging.training import fit


def data(n: int = 60, d: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, :classes] + 0.3 * torch.randn(n, classes, generator=g)).argmax(1)
    return x, y


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def gd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, steps: int) -> nn.Module:
    """Centralised full-batch gradient descent on the mean cross-entropy (the oracle)."""
    model = copy.deepcopy(model)
    for _ in range(steps):
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    return model


def assert_same_weights(a: nn.Module, b: nn.Module, atol: float = 1e-6) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=atol, rtol=0, msg=k)


# -------------------------------------------------------------------------------------- oracles
@pytest.mark.parametrize("batch_size", [None, "all"])
def test_fedavg_one_client_full_batch_is_gradient_descent(batch_size):
    x, y = data()
    net = mlp()
    expected = gd(net, x, y, lr=0.3, steps=3)
    h = fedavg(net, (x, y), [list(range(60))], rounds=3, fraction=1.0, local_epochs=1, batch_size=batch_size,
               lr=0.3, progress=False)
    assert_same_weights(net, expected)
    assert h.clients == [[0], [0], [0]]


def test_fedsgd_with_all_clients_is_large_batch_sgd_on_the_union():
    x, y = data(90)
    parts = partition((x, y), num_clients=4, scheme="dirichlet", alpha=0.3, seed=1)
    assert len({len(p) for p in parts}) > 1  # unequal n_k: the weighting matters
    net = mlp()
    expected = gd(net, x, y, lr=0.5, steps=4)
    fedsgd(net, (x, y), parts, rounds=4, fraction=1.0, lr=0.5, progress=False)
    assert_same_weights(net, expected, atol=1e-5)


def test_fedsgd_with_a_fraction_steps_on_the_union_of_the_chosen_clients():
    x, y = data(80)
    parts = partition((x, y), num_clients=8, scheme="shards", seed=0)
    net = mlp()
    start = copy.deepcopy(net)
    h = fedsgd(net, (x, y), parts, rounds=1, fraction=0.5, lr=0.5, seed=4, progress=False)
    chosen = h.clients[0]
    assert len(chosen) == 4
    idx = sorted(i for c in chosen for i in parts[c])
    assert_same_weights(net, gd(start, x[idx], y[idx], lr=0.5, steps=1), atol=1e-5)


def test_fedavg_weights_clients_by_sample_count():
    x, y = data(40)
    parts = [list(range(10)), list(range(10, 40))]
    net = mlp()
    w1 = gd(net, x[:10], y[:10], lr=0.2, steps=3).state_dict()
    w2 = gd(net, x[10:], y[10:], lr=0.2, steps=3).state_dict()
    fedavg(net, (x, y), parts, rounds=1, fraction=1.0, local_epochs=3, batch_size=None, lr=0.2, progress=False)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, 0.25 * w1[k] + 0.75 * w2[k], atol=1e-6, rtol=0)


def test_batchnorm_buffers_are_averaged_and_counters_take_the_max():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))
    x, y = data(8)
    parts = [[0, 1], [2, 3, 4, 5, 6, 7]]
    start = copy.deepcopy(net)
    fedavg(net, (x, y), parts, rounds=1, fraction=1.0, batch_size=None, lr=1e-9, progress=False)
    with torch.no_grad():
        h = start[0](x)
    means = [h[p].mean(0) for p in parts]
    expected = sum(len(p) / 8 * (0.9 * start[1].running_mean + 0.1 * m) for p, m in zip(parts, means, strict=True))
    torch.testing.assert_close(net[1].running_mean, expected, atol=1e-6, rtol=0)
    assert int(net[1].num_batches_tracked) == 1
    fedavg(net, (x, y), parts, rounds=1, fraction=1.0, batch_size=2, lr=1e-9, progress=False)
    assert int(net[1].num_batches_tracked) == 1 + 3  # the larger client took 3 batches of 2


def test_proximal_step_gradient_is_task_gradient_plus_mu_times_drift():
    x, y = data(20)
    anchor = mlp(0)
    net = mlp(1)  # away from the anchor, so the proximal term pulls
    mu, lr = 0.7, 0.1
    expected = copy.deepcopy(net)
    expected.zero_grad()
    F.cross_entropy(expected(x), y).backward()
    with torch.no_grad():
        for p, a in zip(expected.parameters(), anchor.parameters(), strict=True):
            p -= lr * (p.grad + mu * (p - a))
    step = ProximalStep(nn.CrossEntropyLoss(), mu=mu, anchor=anchor)
    total, logs = step(net, (x, y), optimizer=torch.optim.SGD(net.parameters(), lr=lr))
    assert_same_weights(net, expected)
    drift = sum((p - a).pow(2).sum() for p, a in zip(mlp(1).parameters(), anchor.parameters(), strict=True))
    torch.testing.assert_close(logs["proximal"], 0.5 * mu * drift)


# ----------------------------------------------------------------------------------- invariants
def test_proximal_step_with_mu_zero_equals_the_supervised_step_in_fit():
    x, y = data()
    a, b = mlp(), mlp()
    kw = dict(optimizer=lambda p: torch.optim.SGD(p, lr=0.2), epochs=2, batch_size=8, metrics=(), progress=False)
    fit(a, TensorDataset(x, y), loss=nn.CrossEntropyLoss(), **kw)
    fit(b, TensorDataset(x, y), step=ProximalStep(nn.CrossEntropyLoss(), mu=0.0, anchor=mlp()), **kw)
    assert_same_weights(a, b, atol=0)


def test_fedprox_mu_zero_equals_fedavg_and_mu_keeps_clients_near_the_global_model():
    x, y = data()
    parts = partition((x, y), num_clients=3, scheme="shards", seed=0)
    kw = dict(rounds=2, fraction=1.0, local_epochs=2, batch_size=5, lr=0.3, progress=False, seed=2)
    a, b = mlp(), mlp()
    fedavg(a, (x, y), parts, **kw)
    fedavg(b, (x, y), parts, proximal_mu=0.0, **kw)
    assert_same_weights(a, b, atol=0)

    def drift(mu: float) -> float:
        net = mlp()
        start = [p.detach().clone() for p in net.parameters()]
        fedavg(net, (x, y), [list(range(60))], rounds=1, fraction=1.0, local_epochs=10, batch_size=None,
               lr=0.3, proximal_mu=mu, progress=False)
        with torch.no_grad():
            return float(sum((p - s).pow(2).sum() for p, s in zip(net.parameters(), start, strict=True)).sqrt())

    d0, d1, d2 = drift(0.0), drift(0.5), drift(2.0)  # lr * mu < 1: the proximal pull is stable
    assert d2 < d1 < d0


def test_same_seed_same_weights_and_client_choice():
    x, y = data(100)
    parts = partition((x, y), num_clients=10, scheme="dirichlet", seed=0)

    def run(seed):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        h = fedavg(net, (x, y), parts, rounds=3, fraction=0.3, local_epochs=2, batch_size=4, lr=0.1, seed=seed,
                   progress=False)
        return net, h

    (n1, h1), (n2, h2), (n3, h3) = run(7), run(7), run(8)
    assert_same_weights(n1, n2, atol=0)
    assert h1.clients == h2.clients and h1.train_loss == h2.train_loss
    assert h1.clients != h3.clients or any(not torch.equal(p, q) for p, q in zip(n1.parameters(), n3.parameters(),
                                                                                 strict=True))


def test_history_records_every_round_and_the_bytes_sent():
    x, y = data()
    net = nn.Linear(4, 3)  # 15 float32 parameters = 60 bytes
    h = fedavg(net, (x, y), partition((x, y), num_clients=6), rounds=3, fraction=0.5, lr=0.5, test_data=(x, y),
               progress=True)
    assert h.round == [1, 2, 3] and len(h) == 3
    assert all(len(c) == 3 and len(set(c)) == 3 for c in h.clients)
    assert h.bytes == [2 * 3 * 60] * 3
    assert all(0 <= a <= 1 for a in h.accuracy) and all(lo > 0 for lo in h.loss)
    rows = h.to_rows()
    assert [r["round"] for r in rows] == [1, 2, 3] and rows[0]["clients"] == 3
    assert set(rows[0]) == {"round", "accuracy", "loss", "train_loss", "clients", "seconds", "aggregate_seconds",
                            "bytes"}
    assert all(0 <= g <= s for g, s in zip(h.aggregate_seconds, h.seconds, strict=True))
    assert fedavg(nn.Linear(4, 3), (x, y), [list(range(60))], rounds=1, lr=0.1, progress=False).accuracy == [None]


def test_regression_with_mse_records_the_test_loss_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    net = nn.Linear(3, 1)
    h = fedsgd(net, (x, y), partition((x, torch.zeros(40, dtype=torch.long)), num_clients=4), rounds=30,
               fraction=1.0, lr=0.3, loss=nn.MSELoss(), metrics=(), test_data=(x, y), progress=False)
    assert h.accuracy == [None] * 30
    assert h.loss[-1] < 0.01 * h.loss[0]
    with pytest.raises(ValueError, match="test accuracy"):
        rounds_to_accuracy(h, 0.5)


def test_secure_aggregation_matches_plain_averaging():
    x, y = data()
    parts = partition((x, y), num_clients=4, seed=0)
    kw = dict(rounds=2, fraction=1.0, batch_size=10, lr=0.3, progress=False)
    plain, secret = mlp(), mlp()
    hp = fedavg(plain, (x, y), parts, **kw)
    hs = fedavg(secret, (x, y), parts, secure=True, **kw)
    assert_same_weights(plain, secret, atol=1e-4)
    # 67 float32 entries; 4 clients = 4 parties: the model down to each, each keeps one share and
    # sends 3 (8 bytes per entry), each party sends its partial sum to the server
    assert hp.bytes[0] == 2 * 4 * 67 * 4 and hs.bytes[0] == 4 * 67 * 4 + (4 * 3 + 4) * 67 * 8
    bn = [nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.Linear(5, 3)) for _ in range(2)]
    bn[1].load_state_dict(bn[0].state_dict())
    fedavg(bn[0], (x, y), parts, **kw)
    fedavg(bn[1], (x, y), parts, secure=True, **kw)
    assert_same_weights(bn[0], bn[1], atol=1e-4)  # running stats too; num_batches_tracked exact
    with pytest.raises(ValueError, match="secure must be"):
        fedsgd(mlp(), (x, y), parts, rounds=1, lr=0.1, secure="rsa", progress=False)


def test_paillier_aggregation_matches_plain_averaging():
    """secure="paillier": the sum of the weighted updates under Paillier encryption gives the
    plain FedAvg weights (fixed point 2^-24), and the round's bytes count the ciphertexts."""
    pytest.importorskip("phe")
    x, y = data()
    parts = partition((x, y), num_clients=3, seed=0)
    kw = dict(rounds=2, fraction=1.0, batch_size=10, lr=0.3, progress=False)
    plain, enc = mlp(), mlp()
    enc.load_state_dict(plain.state_dict())
    hp = fedavg(plain, (x, y), parts, **kw)
    he = fedavg(enc, (x, y), parts, secure="paillier", **kw)
    assert_same_weights(plain, enc, atol=1e-6)
    # 67 float32 entries fit one packed 2048-bit plaintext: one ciphertext (n^2, 512 bytes) per client
    assert hp.bytes[0] == 2 * 3 * 67 * 4 and he.bytes[0] == 3 * 67 * 4 + 3 * 512


# ------------------------------------------------------------------------------ worked examples
def test_rounds_to_accuracy_by_hand():
    h = FLHistory(round=[1, 2, 3, 4], accuracy=[0.2, 0.6, 0.5, 0.9])
    assert h.to_rows()[3] == dict(round=4, accuracy=0.9, loss=None, train_loss=None, clients=None, seconds=None,
                                  aggregate_seconds=None, bytes=None)
    assert rounds_to_accuracy(h, 0.55) == 2
    assert rounds_to_accuracy(h, 0.9) == 4
    assert rounds_to_accuracy(h, 0.95) is None
    assert rounds_to_accuracy(h, 0.0) == 1
    with pytest.raises(ValueError, match="target"):
        rounds_to_accuracy(h, 1.5)
    with pytest.raises(ValueError, match="test accuracy"):
        rounds_to_accuracy(FLHistory(round=[1], accuracy=[None]), 0.5)


# ------------------------------------------------------------------------------------ bad input
XY = data(12)
PARTS = [list(range(6)), list(range(6, 12))]


def call(parts=PARTS, **overrides):
    kw = {**dict(rounds=1, fraction=1.0, lr=0.1, progress=False), **overrides}
    return fedavg(nn.Linear(4, 3), XY, parts, **kw)


@given(st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0001, max_value=1e6), st.just(float("nan"))))
@settings(max_examples=20, deadline=None)
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        call(fraction=fraction)


@given(st.integers(-5, 0))
@settings(max_examples=10, deadline=None)
def test_bad_rounds_and_local_epochs_and_batch_size(n):
    for name in ("rounds", "local_epochs", "batch_size"):
        with pytest.raises(ValueError, match=name):
            call(**{name: n})
    with pytest.raises(ValueError, match="rounds"):
        fedsgd(nn.Linear(4, 3), XY, PARTS, rounds=n, lr=0.1, progress=False)


@given(st.one_of(st.floats(max_value=0.0), st.just(float("inf"))))
@settings(max_examples=15, deadline=None)
def test_bad_lr_and_mu(value):
    with pytest.raises(ValueError, match="lr"):
        call(lr=value)
    if value < 0 or value == float("inf"):
        with pytest.raises(ValueError, match="proximal_mu"):
            call(proximal_mu=value)


def test_bad_parts_optimizer_and_model():
    with pytest.raises(ValueError, match=r"parts\[1\] is empty"):
        call(parts=[list(range(12)), []])
    with pytest.raises(ValueError, match="parts"):
        call(parts=[[0, 12]])
    with pytest.raises(ValueError, match="parts"):
        call(parts=[])
    with pytest.raises(ValueError, match="test_data"):
        call(test_data=3.0)
    with pytest.raises(ValueError, match="batch_size"):
        call(batch_size="full")
    with pytest.raises(ValueError, match="optimizer"):
        call(optimizer="lbfgs")
    with pytest.raises(ValueError, match="model"):
        fedavg("net", XY, PARTS, rounds=1, lr=0.1)
    with pytest.raises(ValueError, match="mu"):
        ProximalStep(nn.MSELoss(), mu=-1.0, anchor=nn.Linear(2, 1))


# ------------------------------------------------------------------------------------ real run
def test_fedavg_on_mnist5k_learns_above_chance():
    from mlimaging.data import load_dataset

    train, test = load_dataset("mnist5k", split="train"), load_dataset("mnist5k", split="test")
    sel = torch.arange(300)
    x, y = train.images[sel], torch.as_tensor(train.targets)[sel]
    xt, yt = test.images[:200], torch.as_tensor(test.targets)[:200]
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Conv2d(8, 16, 5, stride=2), nn.ReLU(),
                        nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    parts = partition((x, y), num_clients=5, scheme="iid", seed=0)
    h = fedavg(net, (x, y), parts, rounds=2, fraction=1.0, local_epochs=2, batch_size=10, lr=0.1,
               test_data=(xt, yt), progress=False)
    assert len(h) == 2 and h.accuracy[-1] > 0.3  # chance is 0.1
    assert h.train_loss[-1] < h.train_loss[0]


# ----------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("algorithm", ["fedavg", "fedsgd"])
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tmp_path, algorithm):
    x, y = data(n=90)
    parts = partition((x, y), num_clients=6, scheme="shards", seed=1)
    run = fedavg if algorithm == "fedavg" else fedsgd
    kw = dict(fraction=0.5, lr=0.3, test_data=(x, y), seed=3, progress=False)
    if algorithm == "fedavg":
        kw.update(local_epochs=2, batch_size=8)
    whole = mlp(0)
    h_whole = run(whole, (x, y), parts, rounds=4, **kw)
    first = mlp(0)
    run(first, (x, y), parts, rounds=2, checkpoint_dir=tmp_path, **kw)
    resumed = mlp(7)  # another initialisation: the checkpoint's weights replace it
    h = run(resumed, (x, y), parts, rounds=4, checkpoint_dir=tmp_path, resume=True, **kw)
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert h.round == [1, 2, 3, 4] and h.clients == h_whole.clients and h.accuracy == h_whole.accuracy


def test_resume_checks_its_checkpoint(tmp_path):
    x, y = data()
    parts = partition((x, y), num_clients=4, seed=0)
    fedavg(mlp(0), (x, y), parts, rounds=1, fraction=0.5, lr=0.1, seed=0, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        fedavg(mlp(0), (x, y), parts, rounds=2, lr=0.1, progress=False, resume=True)
    with pytest.raises(ValueError, match="comes from a run with"):  # another seed
        fedavg(mlp(0), (x, y), parts, rounds=2, fraction=0.5, lr=0.1, seed=1, progress=False,
               checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(FileNotFoundError):
        fedavg(mlp(0), (x, y), parts, rounds=2, lr=0.1, progress=False, checkpoint_dir=tmp_path / "none",
               resume=True)


# ------------------------------------------------------------------------------------ stop_at
def test_stop_at_ends_at_the_first_round_reaching_the_target_and_equals_the_full_run_up_to_it():
    x, y = data()
    parts = partition((x, y), num_clients=4, seed=0)
    kw = dict(fraction=0.5, batch_size=10, lr=0.3, test_data=(x, y), progress=False)
    full_net, short_net = mlp(), mlp()
    short_net.load_state_dict(full_net.state_dict())
    full = fedavg(full_net, (x, y), parts, rounds=8, **kw)
    target = sorted(full.accuracy)[len(full.accuracy) // 2]  # reached somewhere inside the run
    first = rounds_to_accuracy(full, target)
    short = fedavg(short_net, (x, y), parts, rounds=8, stop_at=target, **kw)
    assert first is not None and len(short) == first
    assert short.accuracy == full.accuracy[:first] and short.clients == full.clients[:first]
    assert rounds_to_accuracy(short, target) == first
    # fedsgd passes it through; a target not reached runs every round
    h = fedsgd(mlp(), (x, y), parts, rounds=3, lr=0.1, test_data=(x, y), stop_at=1.0, progress=False)
    assert len(h) == (rounds_to_accuracy(h, 1.0) or 3)
    h = fedsgd(mlp(), (x, y), parts, rounds=3, lr=0.1, test_data=(x, y), stop_at=0.0, progress=False)
    assert len(h) == 1


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.9", [0.9]])
def test_stop_at_rejects_values_that_are_not_accuracies(bad):
    x, y = XY
    with pytest.raises(ValueError, match="stop_at"):
        fedavg(mlp(), (x, y), PARTS, rounds=1, lr=0.1, test_data=(x, y), stop_at=bad, progress=False)


def test_stop_at_needs_a_test_accuracy():
    x, y = XY
    with pytest.raises(ValueError, match="needs test_data"):
        fedavg(mlp(), (x, y), PARTS, rounds=1, lr=0.1, stop_at=0.5, progress=False)
    with pytest.raises(ValueError, match="'accuracy' metric"):
        fedavg(mlp(), (x, y), PARTS, rounds=1, lr=0.1, test_data=(x, y), metrics=(), stop_at=0.5, progress=False)

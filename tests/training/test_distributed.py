"""Data-parallel training: sharding arithmetic in-process, and a real 2-process run under torchrun."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from mlimaging.training import distributed as D
from mlimaging.training import fit, init_distributed, load_checkpoint
from mlimaging.training._data import EpochSampler

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # helpers next to this file (suite uses --import-mode=importlib)
from _ddp_script import problem  # noqa: E402


def test_init_distributed_is_a_no_op_outside_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert init_distributed() == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert init_distributed() == (0, 1)
    assert not dist.is_initialized()


def test_init_distributed_names_missing_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        init_distributed()


def test_helpers_pass_through_in_one_process():
    t = torch.arange(5)
    assert D.gather_tensor(t, interleave=True) is t
    assert torch.equal(D.all_reduce_sum(t), t)
    assert D.broadcast_object({"a": 1}) == {"a": 1} and D.gather_objects(3) == [3]
    assert (D.get_rank(), D.get_world_size(), D.is_distributed()) == (0, 1, False)


def test_epoch_order_depends_only_on_seed_and_epoch():
    def order(seed, epoch):
        s = EpochSampler(50, shuffle=True, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(1, 3) == order(1, 3)
    assert sorted(order(1, 3)) == list(range(50))
    assert order(1, 3) != order(1, 4) and order(1, 3) != order(2, 3)
    assert list(EpochSampler(5, shuffle=False, seed=0)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("n", [64, 61])
def test_shards_of_a_batch_are_the_single_process_batch(n):
    """Batch j of W ranks with batch b == batch j of one process with batch W*b (W = 2, b = 4)."""
    single = EpochSampler(n, shuffle=True, seed=7)
    shards = [EpochSampler(n, shuffle=True, seed=7, rank=r, world_size=2) for r in range(2)]
    for s in [single, *shards]:
        s.set_epoch(2)
    order = list(single)
    parts = [list(s) for s in shards]
    assert len(parts[0]) == len(parts[1]) == len(shards[0]) == -(-n // 2)  # padded to equal length
    for j in range(n // 8):
        union = sorted(parts[0][4 * j: 4 * j + 4] + parts[1][4 * j: 4 * j + 4])
        assert union == sorted(order[8 * j: 8 * j + 8])
    flat = sorted(parts[0] + parts[1])
    assert set(flat) == set(range(n)) and len(flat) == n + n % 2  # one sample repeated when n is odd
    unpadded = [EpochSampler(n, shuffle=False, seed=0, rank=r, world_size=2, pad=False) for r in range(2)]
    assert sorted(list(unpadded[0]) + list(unpadded[1])) == list(range(n))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo")
def test_two_process_ddp_matches_one_process_with_the_global_batch(tmp_path, capfd):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "MASTER_ADDR": "127.0.0.1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}",
           str(HERE / "_ddp_script.py"), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    weights = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["history"] == ranks[1]["history"]  # same History on every rank, seconds included
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # DDP kept them in sync
    # checkpoints (and progress bars) from rank 0 only
    assert len(ranks[0]["saves"]) >= 2 and ranks[1]["saves"] == []
    last = load_checkpoint(tmp_path / "ckpt" / "last.pt")
    assert last["epoch"] == 2 and last["config"]["world_size"] == 2 and len(last["rng"]) == 2
    assert proc.stderr.count("epoch 2/2") + proc.stdout.count("epoch 2/2") == 1

    # strong check: 2 ranks x batch 8 == 1 process x batch 16 (same samples per step, mean gradients)
    model, train, val, kwargs = problem()
    h = fit(model, train, val, batch_size=16, progress=False, **kwargs)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(weights[0][k], v, rtol=1e-5, atol=1e-6)
    for ddp, one in zip(ranks[0]["history"], h.epochs, strict=True):
        assert ddp["loss"] == pytest.approx(one["loss"], rel=1e-5)
        assert ddp["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
        assert ddp["val_accuracy"] == one["val_accuracy"] and ddp["val_f1_score"] == one["val_f1_score"]
        assert ddp["val_order"] == one["val_order"]  # gathered predictions kept the data set order

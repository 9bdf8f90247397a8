"""Run by test_distributed.py under ``torchrun --nproc_per_node=2``: train, then save per-rank results.

Usage: python -m torch.distributed.run --nproc_per_node=2 tests/training/_ddp_script.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

import mlimaging.training.checkpoint as checkpoint
from mlimaging.training import cleanup_distributed, fit


def order_code(outputs, targets):
    """Depends on the order of the gathered targets: equal to one process only if order is kept."""
    return float((targets.double() * torch.arange(len(targets), dtype=torch.float64)).sum())


def problem():
    """Data, a fresh model and the fit settings shared with the single-process reference run.

    64 training samples (4 steps of 16, or of 2 x 8), 31 validation samples (uneven shards).
    """
    g = torch.Generator().manual_seed(0)
    x = torch.randn(95, 1, 6, 6, generator=g)
    y = (x[:, 0, :3].mean((1, 2)) > x[:, 0, 3:].mean((1, 2))).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    kwargs = dict(loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
                  epochs=2, seed=3, shuffle=True, metrics={"accuracy": "accuracy", "f1_score": "f1_score",
                                                           "order": order_code})
    return model, TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:]), kwargs


def main(out: Path) -> None:
    saves = []
    real_save = checkpoint.save_checkpoint

    def counting_save(obj, path):
        saves.append(str(path))
        return real_save(obj, path)

    checkpoint.save_checkpoint = counting_save
    model, train, val, kwargs = problem()
    history = fit(model, train, val, batch_size=8, checkpoint_dir=out / "ckpt", progress=True, **kwargs)
    rank = torch.distributed.get_rank()
    world = torch.distributed.get_world_size()
    torch.save(model.state_dict(), out / f"rank{rank}.pt")
    (out / f"rank{rank}.json").write_text(json.dumps({"world": world, "history": history.epochs, "saves": saves}))
    cleanup_distributed()


if __name__ == "__main__":
    main(Path(sys.argv[1]))

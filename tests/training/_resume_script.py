"""Run by test_resume.py in a subprocess: train and SIGKILL itself in the middle of epoch 3.

Usage: python tests/training/_resume_script.py CHECKPOINT_DIR
"""

from __future__ import annotations

import os
import signal
import sys

import torch
from _training_data import make_data, make_mlp
from torch import nn

from mlimaging.training import Callback, fit


def settings() -> dict:
    """fit settings shared with the in-process reference run (dropout, Adam state, a scheduler)."""
    return dict(loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=0.01),
                scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.7),
                epochs=4, batch_size=16, seed=11, progress=False)


class KillAt(Callback):
    def __init__(self, epoch: int, batch: int):
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, state):
        if state.epoch == self.epoch and state.batch == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    fit(make_mlp(dropout=0.3), make_data(96), make_data(48, seed=1), checkpoint_dir=sys.argv[1],
        callbacks=[KillAt(3, 2)], **settings())
    sys.exit(3)  # never reached

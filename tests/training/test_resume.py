"""Checkpoints and resume: weights_only files, atomic writes, bit-exact continuation."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mlimaging.training import (
    Callback,
    fit,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))  # helpers next to this file (suite uses --import-mode=importlib)
from _resume_script import settings  # noqa: E402
from _training_data import make_data, make_mlp  # noqa: E402


class Interrupt(Callback):
    def __init__(self, epoch, exc=KeyboardInterrupt):
        self.epoch, self.exc = epoch, exc

    def on_epoch_start(self, state):
        if state.epoch == self.epoch:
            raise self.exc()


def train(ckdir=None, *, model_seed=0, **kw):
    model = make_mlp(dropout=0.3, seed=model_seed)
    h = fit(model, make_data(96), make_data(48, seed=1), checkpoint_dir=ckdir, **{**settings(), **kw})
    return model, h


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def strip_seconds(history):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in history.epochs]


@pytest.fixture(scope="module")
def reference():
    return train()


def test_checkpoints_hold_everything_and_load_weights_only(tmp_path, reference):
    model, h = train(tmp_path)
    assert same_weights(model, reference[0])
    last = torch.load(tmp_path / "last.pt", weights_only=True)
    assert set(last) == {"model", "optimizer", "scheduler", "epoch", "history", "monitor", "mode", "rng", "config"}
    assert last["epoch"] == 4 and last["history"] == h.epochs
    assert all(torch.equal(last["model"][k], v) for k, v in model.state_dict().items())
    assert last["scheduler"]["last_epoch"] == 4 and last["optimizer"]["state"]
    assert last["config"]["seed"] == 11 and last["config"]["optimizer"] == "Adam"
    assert last["config"]["scheduler"] == "StepLR" and last["config"]["epochs"] == 4
    assert len(last["rng"]) == 1 and set(last["rng"][0]) >= {"torch", "numpy", "python"}
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == h.best_epoch
    assert best["history"][-1]["val_loss"] == h.best_value
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, reference, exc):
    with pytest.raises(exc):
        train(tmp_path, callbacks=[Interrupt(3, exc)])
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    # a fresh process would build the model with another init: resume must overwrite it
    model, h = train(tmp_path, model_seed=123, resume=True)
    assert same_weights(model, reference[0])
    assert strip_seconds(h) == strip_seconds(reference[1])


def test_killed_subprocess_resumes_exactly(tmp_path, reference):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(HERE / "_resume_script.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2  # killed in epoch 3
    model, h = train(tmp_path, resume=True)
    assert same_weights(model, reference[0])
    assert strip_seconds(h) == strip_seconds(reference[1])


class InterruptMidEpoch(Callback):
    def on_batch_end(self, state):
        if state.epoch == 3 and state.batch == 1:
            raise KeyboardInterrupt


def test_extended_run_interrupted_mid_epoch_resumes_exactly(tmp_path, reference):
    _, h = train(tmp_path, epochs=2)  # a 2-epoch run, later extended to 4 epochs
    assert len(h) == 2
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path, resume=True, callbacks=[InterruptMidEpoch()])
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2
    model, h = train(tmp_path, resume=True)
    assert same_weights(model, reference[0])
    assert strip_seconds(h) == strip_seconds(reference[1])


def test_resume_of_a_finished_run_trains_no_more(tmp_path, reference):
    train(tmp_path)
    model, h = train(tmp_path, model_seed=5, resume=True)
    assert same_weights(model, reference[0]) and len(h) == 4


def test_resume_of_an_early_stopped_run_stays_stopped(tmp_path):
    kw = dict(optimizer=lambda p: torch.optim.SGD(p, lr=0.0), scheduler=None, early_stopping=1)
    _, h = train(tmp_path, **kw)
    assert len(h) == 2
    _, h2 = train(tmp_path, resume=True, **kw)
    assert len(h2) == 2


def test_resume_true_without_checkpoint_starts_fresh(tmp_path, reference):
    model, _ = train(tmp_path / "new", resume=True)
    assert same_weights(model, reference[0])


def test_existing_checkpoint_is_not_overwritten_without_resume(tmp_path):
    train(tmp_path, epochs=1)
    with pytest.raises(ValueError, match="resume=True"):
        train(tmp_path, epochs=1)


def test_resume_into_a_different_model_raises(tmp_path):
    train(tmp_path, epochs=1)
    with pytest.raises(ValueError, match="does not match"):
        fit(torch.nn.Linear(8, 3), make_data(96), checkpoint_dir=tmp_path, resume=True, **settings())


def test_changed_settings_on_resume_warn(tmp_path):
    train(tmp_path, epochs=1)
    with pytest.warns(UserWarning, match="batch_size"):
        train(tmp_path, resume=True, epochs=2, batch_size=8)


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint({"epoch": 1}, tmp_path / "last.pt")

    def broken_save(obj, fh):
        fh.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_corrupt_or_missing_checkpoint_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="weights_only"):
        load_checkpoint(tmp_path / "bad.pt")


def test_a_checkpoint_of_a_whole_module_is_refused_in_one_line(tmp_path):
    # torch.save of a module pickles its class; weights_only refuses it with a long multi-line advice
    torch.save(torch.nn.Linear(2, 1), tmp_path / "module.pt")
    with pytest.raises(ValueError) as info:
        load_checkpoint(tmp_path / "module.pt")
    message = str(info.value)
    assert "weights_only=True" in message and "\n" not in message
    assert "False" not in message and "trust" not in message  # never advise the unsafe way out
    assert "torch.nn.modules.linear.Linear" in message  # but say what the file holds


def test_rng_state_round_trip_survives_weights_only(tmp_path):
    state = get_rng_state()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    save_checkpoint({"rng": state}, tmp_path / "rng.pt")
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)], np.random.randn())
    assert torch.equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2] == again[2] and first[3] == again[3]


class _OpensAFile:
    """Unpickling this object calls ``open(marker, "w")``: a stand-in for any code a crafted
    checkpoint could run (``os.system`` works the same way)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 1, "payload": _OpensAFile(marker)}, path)
    # The payload is live: a plain torch.load runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    # Our loader (weights_only=True) refuses the file before anything runs.
    with pytest.raises(ValueError, match="weights_only=True"):
        load_checkpoint(path)
    assert not marker.exists()
    # So do fit's resume and the commands that read checkpoints, which all load through it.
    shutil.copy(path, tmp_path / "last.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        train(tmp_path, resume=True)
    assert not marker.exists()

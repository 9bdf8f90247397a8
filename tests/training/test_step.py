"""The training-step extension point of ``fit`` (training/step.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.training import History, SupervisedStep, TrainStep, fit


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    return TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5]]))


class NoisyStep(TrainStep):
    """Adds seeded input noise (state: its generator) and logs the MSE and the noise level."""

    def __init__(self, seed=0):
        self.generator = torch.Generator().manual_seed(seed)
        self.calls = 0

    def __call__(self, model, batch, *, optimizer, grad_clip=None):
        x, y = batch
        noise = 0.1 * torch.randn(x.shape, generator=self.generator)
        optimizer.zero_grad(set_to_none=True)
        mse = (model(x + noise) - y).pow(2).mean()
        mse.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        self.calls += 1
        return mse, {"noise_std": noise.std(), "twice": 2 * mse.detach()}

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


def _net():
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def _sgd(p):
    return torch.optim.SGD(p, lr=0.05)


def test_default_step_equals_loss_training():
    """``fit(loss=fn)`` and ``fit(step=SupervisedStep(fn))`` are the same run."""
    a, b = _net(), _net()
    ha = fit(a, _data(), loss=nn.MSELoss(), optimizer=_sgd, epochs=3, metrics=(), progress=False)
    hb = fit(b, _data(), step=SupervisedStep(nn.MSELoss()), optimizer=_sgd, epochs=3, metrics=(), progress=False)
    assert ha["loss"] == hb["loss"]
    assert torch.equal(a.weight, b.weight)


def test_extras_are_sample_weighted_epoch_means():
    step = NoisyStep()
    # 50 samples in batches of 16: 16, 16, 16, 2; 'twice' must average to exactly 2 x loss.
    h = fit(_net(), _data(50), step=step, optimizer=_sgd, epochs=2, batch_size=16, metrics=(), progress=False)
    assert step.calls == 8
    for rec in h.epochs:
        assert rec["twice"] == pytest.approx(2 * rec["loss"], rel=1e-12)
        assert 0.05 < rec["noise_std"] < 0.15


def test_step_state_is_checkpointed_and_resume_is_exact(tmp_path):
    straight = _net()
    fit(straight, _data(), step=NoisyStep(), optimizer=_sgd, epochs=4, batch_size=16, metrics=(), progress=False)
    resumed = _net()
    fit(resumed, _data(), step=NoisyStep(), optimizer=_sgd, epochs=2, batch_size=16, metrics=(), progress=False,
        checkpoint_dir=tmp_path)
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert "generator" in ckpt["step"]
    fresh = _net()  # a new process: new model and a new step whose generator restarts
    h = fit(fresh, _data(), step=NoisyStep(), optimizer=_sgd, epochs=4, batch_size=16, metrics=(),
            progress=False, checkpoint_dir=tmp_path, resume=True)
    assert len(h) == 4
    assert torch.equal(fresh.weight, straight.weight) and torch.equal(fresh.bias, straight.bias)


def test_without_restoring_the_step_state_the_run_differs(tmp_path):
    """The check above can fail: a step that forgets its state does not resume exactly."""

    class Forgetful(NoisyStep):
        def state_dict(self):
            return {}

    straight = _net()
    fit(straight, _data(), step=Forgetful(), optimizer=_sgd, epochs=4, batch_size=16, metrics=(), progress=False)
    fit(_net(), _data(), step=Forgetful(), optimizer=_sgd, epochs=2, batch_size=16, metrics=(), progress=False,
        checkpoint_dir=tmp_path)
    fresh = _net()
    fit(fresh, _data(), step=Forgetful(), optimizer=_sgd, epochs=4, batch_size=16, metrics=(), progress=False,
        checkpoint_dir=tmp_path, resume=True)
    assert not torch.equal(fresh.weight, straight.weight)


def test_validation_loss_of_the_step_and_metrics():
    class WithVal(NoisyStep):
        def validation_loss(self, model, batch):
            x, y = batch
            return (model(x) - y).abs().mean()

    net = _net()
    h = fit(net, _data(), _data(16, seed=1), step=WithVal(), optimizer=_sgd, epochs=2, metrics=(), progress=False)
    x, y = _data(16, seed=1).tensors
    with torch.no_grad():
        assert h["val_loss"][-1] == pytest.approx(float((net(x) - y).abs().mean()), rel=1e-6)
    # without validation_loss, the given loss is used for val_loss (and training uses the step)
    h2 = fit(_net(), _data(), _data(16, seed=1), loss=nn.L1Loss(), step=NoisyStep(), optimizer=_sgd, epochs=1,
             metrics=(), progress=False)
    assert isinstance(h2, History) and "val_loss" in h2.epochs[0]


def test_batches_without_targets():
    """A self-supervised step gets the batch as the loader made it: here only inputs."""

    class Autoencode(TrainStep):
        def __call__(self, model, batch, *, optimizer, grad_clip=None):
            (x,) = batch
            optimizer.zero_grad(set_to_none=True)
            loss = (model(x) - x).pow(2).mean()
            loss.backward()
            optimizer.step()
            return loss

    x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
    h = fit(nn.Linear(3, 3), TensorDataset(x), step=Autoencode(), optimizer=_sgd, epochs=5, metrics=(),
            progress=False)
    assert h["loss"][-1] < h["loss"][0]


def test_bad_steps_raise():
    with pytest.raises(ValueError, match="loss .* or a step"):
        fit(_net(), _data(), optimizer=_sgd, epochs=1, progress=False)
    with pytest.raises(ValueError, match="step must be a TrainStep"):
        fit(_net(), _data(), step=3, optimizer=_sgd, epochs=1, progress=False)

    class Vector(TrainStep):
        def __call__(self, model, batch, *, optimizer, grad_clip=None):
            return torch.ones(2)

    with pytest.raises(ValueError, match="training step must return a scalar"):
        fit(_net(), _data(), step=Vector(), optimizer=_sgd, epochs=1, metrics=(), progress=False)

    class Clash(TrainStep):
        def __call__(self, model, batch, *, optimizer, grad_clip=None):
            return torch.zeros(()), {"val_loss": 1.0}

    with pytest.raises(ValueError, match="clashes"):
        fit(_net(), _data(), step=Clash(), optimizer=_sgd, epochs=1, metrics=(), progress=False)
    with pytest.raises(NotImplementedError, match="must implement"):
        fit(_net(), _data(), step=TrainStep(), optimizer=_sgd, epochs=1, metrics=(), progress=False)


def test_resume_with_step_state_but_no_step(tmp_path):
    fit(_net(), _data(), step=NoisyStep(), optimizer=_sgd, epochs=1, metrics=(), progress=False,
        checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="state of a training step"):
        fit(_net(), _data(), loss=nn.MSELoss(), optimizer=_sgd, epochs=2, metrics=(), progress=False,
            checkpoint_dir=tmp_path, resume=True)

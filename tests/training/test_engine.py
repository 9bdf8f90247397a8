"""fit / evaluate: learning, records, determinism, metrics, callbacks, schedulers, bad input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from mlimaging import metrics as M
from mlimaging.training import Callback, EarlyStopping, History, evaluate, fit

sys.path.insert(0, str(Path(__file__).parent))  # helpers next to this file (suite uses --import-mode=importlib)
from _training_data import make_data, make_mlp  # noqa: E402

CE = nn.CrossEntropyLoss()


@pytest.fixture
def data():
    return make_data(96, seed=0), make_data(48, seed=1)


def sgd(lr=0.1, **kw):
    return lambda p: torch.optim.SGD(p, lr=lr, **kw)


def test_fit_learns_and_records_every_epoch(data):
    train, val = data
    h = fit(make_mlp(), train, val, loss=CE, optimizer=sgd(0.3), epochs=6, batch_size=16, progress=False)
    assert isinstance(h, History) and len(h) == 6
    assert h["epoch"] == [1, 2, 3, 4, 5, 6]
    for e in h.epochs:
        assert set(e) == {"epoch", "loss", "val_loss", "val_accuracy", "lr", "seconds"}
        assert e["lr"] == 0.3 and e["seconds"] >= 0
    assert h["loss"][-1] < 0.7 * h["loss"][0]
    assert h["val_accuracy"][-1] > 0.8
    assert h.best_epoch == int(np.argmin(h["val_loss"])) + 1
    assert h.best_value == min(h["val_loss"])
    back = json.loads(h.to_json())
    assert back["best_epoch"] == h.best_epoch and len(back["epochs"]) == 6


def test_recorded_losses_are_per_sample_means(data):
    """With lr=0 the weights never move: loss = val_loss = the exact mean CE over the data set."""
    train, _ = data
    model = make_mlp()
    h = fit(model, train, train, loss=CE, optimizer=sgd(0.0), epochs=1, batch_size=10, progress=False)  # 96 = 9*10 + 6
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(train.tensors[0]), train.tensors[1]).item()
    assert h["loss"][0] == pytest.approx(expected, rel=1e-6)
    assert h["val_loss"][0] == pytest.approx(expected, rel=1e-6)


def test_seeded_runs_are_bit_identical_and_seed_matters(data):
    train, val = data
    kw = dict(loss=CE, optimizer=sgd(0.1, momentum=0.9), epochs=2, batch_size=16, progress=False)
    runs = []
    for seed in (5, 5, 6):
        model = make_mlp(dropout=0.3)
        h = fit(model, train, val, seed=seed, **kw)
        runs.append((model.state_dict(), h["loss"]))
    assert all(torch.equal(runs[0][0][k], runs[1][0][k]) for k in runs[0][0])
    assert runs[0][1] == runs[1][1]
    assert not all(torch.equal(runs[0][0][k], runs[2][0][k]) for k in runs[0][0])


def test_optimizer_instance_equals_factory(data):
    train, _ = data
    a, b = make_mlp(), make_mlp()
    fit(a, train, loss=CE, optimizer=torch.optim.Adam(a.parameters(), lr=0.01), epochs=2, progress=False)
    fit(b, train, loss=CE, optimizer=lambda p: torch.optim.Adam(p, lr=0.01), epochs=2, progress=False)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


class DictData(Dataset):
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        x, y = self.ds[i]
        return {"image": x, "label": y, "id": i}


def test_dict_batches_train_like_tuples(data):
    train, val = data
    a, b = make_mlp(), make_mlp()
    ha = fit(a, train, val, loss=CE, optimizer=sgd(), epochs=2, batch_size=16, progress=False)
    hb = fit(b, DictData(train), DictData(val), loss=CE, optimizer=sgd(), epochs=2, batch_size=16, progress=False)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert ha["val_accuracy"] == hb["val_accuracy"]


def test_dataloader_is_used_as_is(data):
    train, _ = data
    loader = DataLoader(train, batch_size=7, shuffle=False)
    sizes = []

    class Sizes(Callback):
        def on_batch_end(self, state):
            sizes.append(len(state.target))

    fit(make_mlp(), loader, loss=CE, optimizer=sgd(), epochs=1, batch_size=64, callbacks=[Sizes()], progress=False)
    assert sizes == [7] * 13 + [5]


def test_val_metrics_match_mlimaging_metrics_and_evaluate(data):
    train, val = data
    model = make_mlp()
    h = fit(model, train, val, loss=CE, optimizer=sgd(0.2), epochs=2, batch_size=16, progress=False,
            metrics=("accuracy", "f1_score", "recall"))
    with torch.no_grad():
        logits = model(val.tensors[0])
    pred, target = logits.argmax(1), val.tensors[1]
    assert h["val_accuracy"][-1] == pytest.approx(M.accuracy(pred, target))
    assert h["val_f1_score"][-1] == pytest.approx(M.f1_score(pred, target, average="macro", num_classes=3))
    assert h["val_recall"][-1] == pytest.approx(M.recall(pred, target, average="macro", num_classes=3))
    ev = evaluate(model, val, loss=CE, metrics=("accuracy", "f1_score"), batch_size=5)
    assert ev["accuracy"] == pytest.approx(h["val_accuracy"][-1])
    assert ev["f1_score"] == pytest.approx(h["val_f1_score"][-1])
    assert ev["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-6)


def test_callable_metric_sees_all_outputs_in_order(data):
    train, val = data
    seen = {}

    def top_logit_mean(outputs, targets):
        seen["shapes"] = (tuple(outputs.shape), tuple(targets.shape))
        seen["targets"] = targets.clone()
        return outputs.max(1).values.mean()

    h = fit(make_mlp(), train, val, loss=CE, optimizer=sgd(), epochs=1, batch_size=10, progress=False,
            metrics={"acc": "accuracy", "top": top_logit_mean})
    assert seen["shapes"] == ((48, 3), (48,))
    assert torch.equal(seen["targets"], val.tensors[1])
    assert set(h.epochs[0]) >= {"val_acc", "val_top"} and isinstance(h["val_top"][0], float)


def test_evaluate_worked_example_restores_mode():
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.eye(2))
        net.bias.zero_()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 1])
    net.train()
    out = evaluate(net, TensorDataset(x, y), loss=CE, metrics=("accuracy",), batch_size=3)
    assert out["accuracy"] == 0.75 and net.training
    # CE by hand: -log softmax(x)[y], mean over 4 samples
    by_hand = np.mean([math.log1p(math.exp(-1)), math.log1p(math.exp(-1)), math.log1p(math.exp(1)),
                       math.log1p(math.exp(-3))])
    assert out["loss"] == pytest.approx(by_hand, rel=1e-6)


def test_single_logit_binary_metrics():
    x = torch.tensor([[-2.0], [-1.0], [1.0], [3.0]])
    y = torch.tensor([0, 1, 1, 1])
    out = evaluate(nn.Identity(), TensorDataset(x, y), metrics=("accuracy", "precision"))
    assert out == {"accuracy": 0.75, "precision": pytest.approx(M.precision([0, 0, 1, 1], [0, 1, 1, 1],
                                                                           average="macro"))}


def test_regression_model_with_mse_and_no_metrics():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    h = fit(model, TensorDataset(x, y), TensorDataset(x, y), loss=nn.MSELoss(), optimizer=sgd(0.1), epochs=15,
            batch_size=16, metrics=(), progress=False)
    assert set(h.epochs[0]) == {"epoch", "loss", "val_loss", "lr", "seconds"}
    assert h["val_loss"][-1] < 1e-2 * h["val_loss"][0]


def test_grad_clip_bounds_the_step():
    train = make_data(32)
    steps = {}
    for clip in (None, 0.01):
        model = make_mlp()
        before = torch.cat([p.detach().clone().flatten() for p in model.parameters()])
        fit(model, train, loss=CE, optimizer=sgd(1.0), epochs=1, batch_size=32, grad_clip=clip, progress=False)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        steps[clip] = (after - before).norm().item()
    assert steps[0.01] <= 0.01 * (1 + 1e-5)
    assert steps[None] > 0.05


def test_early_stopping_after_patience_without_improvement(data):
    """lr = 0: val_loss never improves after epoch 1, so patience 2 stops after epoch 3."""
    train, val = data
    h = fit(make_mlp(), train, val, loss=CE, optimizer=sgd(0.0), epochs=10, early_stopping=2, progress=False)
    assert len(h) == 3 and h.best_epoch == 1
    h = fit(make_mlp(), train, val, loss=CE, optimizer=sgd(0.3), epochs=4,
            early_stopping=EarlyStopping(1, min_delta=10.0), progress=False)
    assert len(h) == 2  # no decrease is larger than 10


def test_epoch_scheduler_and_recorded_lr(data):
    train, _ = data
    h = fit(make_mlp(), train, loss=CE, optimizer=sgd(0.4), epochs=3, progress=False,
            scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5))
    assert h["lr"] == [0.4, 0.2, 0.1]


def test_plateau_scheduler_gets_monitored_value(data):
    """ReduceLROnPlateau(patience=0) halves the lr after each epoch whose val_loss is not 50% better."""
    train, val = data
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5, threshold=0.5)
    h = fit(model, train, val, loss=CE, optimizer=opt, scheduler=sched, epochs=4, progress=False)
    assert h["lr"] == [1e-3, 1e-3, 0.5e-3, 0.25e-3]
    assert sched.best == h["val_loss"][0]


def test_step_scheduler_interval(data):
    train, _ = data
    model = make_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    fit(model, train, loss=CE, optimizer=opt, scheduler=sched, scheduler_interval="step", epochs=2, batch_size=32,
        progress=False)
    assert sched.last_epoch == 6 and opt.param_groups[0]["lr"] == 0.5 ** 6


def test_callback_hooks_and_stop_training(data):
    train, _ = data
    calls = []

    class Recorder(Callback):
        def on_epoch_start(self, state):
            calls.append(("start", state.epoch))

        def on_batch_end(self, state):
            calls.append(("batch", state.batch))

        def on_epoch_end(self, state):
            calls.append(("end", state.epoch, round(state.logs["loss"], 6)))
            state.stop_training = state.epoch == 2

        def on_fit_end(self, state):
            calls.append(("fit_end", len(state.history)))

    h = fit(make_mlp(), train, loss=CE, optimizer=sgd(), epochs=5, batch_size=48, callbacks=[Recorder()],
            progress=False)
    assert len(h) == 2
    assert calls == [("start", 1), ("batch", 0), ("batch", 1), ("end", 1, round(h["loss"][0], 6)),
                     ("start", 2), ("batch", 0), ("batch", 1), ("end", 2, round(h["loss"][1], 6)),
                     ("fit_end", 2)]


def test_on_epoch_record_adds_values_to_history_and_checkpoint(tmp_path, data):
    """A callback's on_epoch_record value is in the history, in that epoch's checkpoint and in
    the record the run logs, and comes back on resume."""
    import torch

    train, _ = data

    class Budget(Callback):
        def on_epoch_record(self, state):
            state.logs["budget"] = 10.0 * state.epoch + state.logs["loss"]

    h = fit(make_mlp(), train, loss=CE, optimizer=sgd(), epochs=2, callbacks=[Budget()],
            checkpoint_dir=tmp_path, progress=False)
    assert h["budget"] == [10.0 + h["loss"][0], 20.0 + h["loss"][1]]
    ckpt = torch.load(tmp_path / "last.pt", weights_only=True)
    assert [e["budget"] for e in ckpt["history"]] == h["budget"]
    h2 = fit(make_mlp(), train, loss=CE, optimizer=sgd(), epochs=3, callbacks=[Budget()],
             checkpoint_dir=tmp_path, resume=True, progress=False)
    assert h2["budget"][:2] == h["budget"] and h2["budget"][2] == 30.0 + h2["loss"][2]


def test_run_gets_history_each_epoch(tmp_path, data):
    from mlimaging.reporting import Run

    run = Run.create("train", {"seed": 0}, path=tmp_path / "run")
    train, val = data
    fit(make_mlp(), train, val, loss=CE, optimizer=sgd(), epochs=2, run=run, progress=False)
    logged = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [e["epoch"] for e in logged["history"]] == [1, 2]
    assert "val_accuracy" in logged["history"][0]


def test_progress_bar_shows_each_epoch(capsys, data):
    train, val = data
    fit(make_mlp(), train, val, loss=CE, optimizer=sgd(), epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err
    fit(make_mlp(), train, val, loss=CE, optimizer=sgd(), epochs=2, progress=False)
    assert "epoch" not in capsys.readouterr().err


def test_progress_outside_a_terminal_is_one_clean_line_per_epoch(tmp_path, data):
    import io

    from rich.console import Console

    from mlimaging.training._progress import EpochProgress

    log = io.StringIO()
    bar = EpochProgress(2, enabled=True, console=Console(file=log, force_terminal=False, width=60))
    bar.message("resumed from epoch 0")
    for epoch in (1, 2):
        task = bar.start(epoch, 3)
        for _ in range(3):
            bar.advance(task, torch.tensor(0.5))
        bar.finish(task, {"epoch": epoch, "loss": 0.5, "seconds": 0.1})
    bar.close()
    assert log.getvalue().splitlines() == ["resumed from epoch 0", "epoch 1/2 (0.1 s) loss=0.5",
                                           "epoch 2/2 (0.1 s) loss=0.5"]
    assert "\x1b" not in log.getvalue() and "\r" not in log.getvalue()  # no bar, no cursor moves
    on_tty = io.StringIO()
    bar = EpochProgress(1, enabled=True, console=Console(file=on_tty, force_terminal=True, width=60))
    assert bar._progress is not None  # a terminal gets the live bar
    bar.close()
    # fit says where a resumed run starts again
    train, val = data
    fit(make_mlp(), train, val, loss=CE, optimizer=sgd(), epochs=1, checkpoint_dir=tmp_path, progress=False)
    lines = io.StringIO()
    import mlimaging.training.engine as engine

    made = []

    class Captured(EpochProgress):
        def __init__(self, epochs, *, enabled):
            super().__init__(epochs, enabled=enabled, console=Console(file=lines, force_terminal=False))
            made.append(self)

    original = engine.EpochProgress
    engine.EpochProgress = Captured
    try:
        fit(make_mlp(), train, val, loss=CE, optimizer=sgd(), epochs=2, checkpoint_dir=tmp_path, resume=True)
    finally:
        engine.EpochProgress = original
    assert made and lines.getvalue().splitlines()[0].startswith("resumed from epoch 1")


def test_dice_metric_is_the_mean_dice_of_the_validation_label_maps():
    from mlimaging.metrics import mean_dice

    g = torch.Generator().manual_seed(0)
    # in fit, the named metric "dice" is computed over the whole validation set from argmax labels
    x = torch.randn(8, 1, 6, 6, generator=g)
    y = (x[:, 0] > 0).long()
    net = nn.Conv2d(1, 2, 1)
    h = fit(net, TensorDataset(x, y), TensorDataset(x, y), loss=CE, optimizer=sgd(), epochs=1, metrics=("dice",),
            progress=False)
    with torch.no_grad():
        labels = net(x).argmax(1)
    assert h["val_dice"][0] == pytest.approx(mean_dice(labels, y))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(seed=-1), "seed"),
        (dict(loss="ce"), "loss"),
        (dict(grad_clip=0.0), "grad_clip"),
        (dict(monitor="val_dice"), "monitor"),
        (dict(metrics=("iou",)), "unknown metric"),
        (dict(metrics=(lambda o, t: 0.0,)), "name"),
        (dict(resume=True), "checkpoint_dir"),
        (dict(early_stopping=0), "patience"),
        (dict(optimizer=3), "optimizer"),
        (dict(scheduler_interval="batch"), "scheduler_interval"),
        (dict(grad_clip="1"), "grad_clip"),
        (dict(mode="up"), "mode"),
        (dict(early_stopping=True), "early_stopping"),
        (dict(early_stopping=EarlyStopping(2, monitor="val_dice")), "early_stopping.monitor"),
        (dict(scheduler=5), "scheduler"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match, data):
    train, val = data
    base = dict(loss=CE, optimizer=sgd(), epochs=1, progress=False)
    with pytest.raises(ValueError, match=match):
        fit(make_mlp(), train, val, **{**base, **kwargs})


def test_bad_batches_and_losses_raise(data):
    train, _ = data
    three = TensorDataset(train.tensors[0], train.tensors[1], train.tensors[1])
    with pytest.raises(ValueError, match="pair"):
        fit(make_mlp(), three, loss=CE, optimizer=sgd(), epochs=1, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        fit(make_mlp(), train, loss=nn.CrossEntropyLoss(reduction="none"), optimizer=sgd(), epochs=1,
            progress=False)
    with pytest.raises(ValueError, match="empty"):
        fit(make_mlp(), TensorDataset(torch.zeros(0, 8), torch.zeros(0)), loss=CE, optimizer=sgd(), epochs=1)
    with pytest.raises(ValueError, match="Dataset"):
        fit(make_mlp(), 42, loss=CE, optimizer=sgd(), epochs=1)
    with pytest.raises(ValueError, match="not model's"):
        fit(make_mlp(), train, loss=CE, optimizer=torch.optim.SGD(make_mlp().parameters(), lr=0.1), epochs=1)
    with pytest.raises(ValueError, match="classifier"):  # float regression targets under accuracy
        evaluate(nn.Linear(8, 3), TensorDataset(train.tensors[0], torch.rand(96)))
    with pytest.raises(ValueError, match="loss or at least one metric"):
        evaluate(nn.Linear(8, 3), train, metrics=())


def test_numpy_integers_are_accepted(data):
    train, _ = data
    h = fit(make_mlp(), train, loss=CE, optimizer=sgd(), epochs=np.int64(2), batch_size=np.int32(32), progress=False)
    assert len(h) == 2 and h.monitor == "loss"  # no validation data: the training loss is monitored


@pytest.mark.parametrize(("args", "kwargs"), [((0,), {}), ((1.5,), {}), ((2,), {"min_delta": -1}),
                                              ((2,), {"mode": "up"})])
def test_early_stopping_rejects_bad_settings(args, kwargs):
    with pytest.raises(ValueError):
        EarlyStopping(*args, **kwargs)


def test_digits_end_to_end_with_a_small_cnn():
    """The real embedded data set through fit: a small CNN learns 8x8 digits in a few epochs."""
    from mlimaging.data import load_dataset

    train, val = load_dataset("digits", split="train"), load_dataset("digits", split="val")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(8 * 4 * 4, 10))
    h = fit(net, train, val, loss=CE, optimizer=lambda p: torch.optim.Adam(p, lr=1e-2), epochs=4, batch_size=32,
            metrics=("accuracy", "f1_score"), progress=False)
    assert h["val_accuracy"][-1] > 0.85 and h["val_f1_score"][-1] > 0.85
    assert h["loss"][-1] < h["loss"][0] / 2
    assert evaluate(net, val)["accuracy"] == pytest.approx(h["val_accuracy"][-1])

"""The training loop of mlimaging: :func:`fit` and :func:`evaluate`.

Every experiment trains through :func:`fit`: any ``nn.Module``, any loss
``(output, target) -> scalar``, batches that are ``(input, target)`` pairs or dicts, one
process or many (``torchrun``), with checkpoints that resume bit-for-bit.
"""

from __future__ import annotations

import numbers
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from mlimaging.training import distributed as D
from mlimaging.training._data import (
    batch_len,
    make_loader,
    set_loader_epoch,
    split_batch,
    to_device,
)
from mlimaging.training._metrics import MetricSet, num_classes_of, to_labels
from mlimaging.training._progress import EpochProgress
from mlimaging.training.callbacks import EarlyStopping, TrainState, call
from mlimaging.training.checkpoint import restore_checkpoint, write_checkpoints
from mlimaging.training.history import History
from mlimaging.training.step import SupervisedStep, TrainStep
from mlimaging.utils import seed_everything

__all__ = ["evaluate", "fit"]

LossFn = Callable[[Any, Any], torch.Tensor]


def fit(
    model: nn.Module,
    train_data: Any,
    val_data: Any = None,
    *,
    loss: LossFn | None = None,
    optimizer: torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
    epochs: int,
    step: TrainStep | None = None,
    scheduler: Any = None,
    metrics: Any = ("accuracy",),
    callbacks: Iterable[Any] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    early_stopping: int | EarlyStopping | None = None,
    grad_clip: float | None = None,
    seed: int = 0,
    batch_size: int = 64,
    shuffle: bool = True,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    run: Any = None,
    progress: bool = True,
    monitor: str | None = None,
    mode: str | None = None,
    scheduler_interval: str = "epoch",
    precision: str = "fp32",
) -> History:
    r"""Train ``model`` by mini-batch gradient descent and return its :class:`History`.

    Each step computes :math:`\ell = \text{loss}(f_\theta(x_B), y_B)`, back-propagates,
    optionally clips the global gradient norm to ``grad_clip``
    (:math:`g \leftarrow g \min(1, c / \lVert g \rVert_2)`) and calls ``optimizer.step()``.
    The recorded ``loss`` is the per-sample mean :math:`\sum_B |B| \ell_B / \sum_B |B|`.

    Parameters
    ----------
    model
        Any ``nn.Module``; moved to ``device``.
    train_data, val_data
        A map-style ``Dataset`` (wrapped in a DataLoader of ``batch_size`` whose order is a
        permutation seeded by ``(seed, epoch)``) or a ready ``DataLoader`` (used as is). Items
        or batches are ``(input, target)`` pairs or dicts with an input key (``input``,
        ``image``, ``x``) and a target key (``target``, ``label``, ``mask``, ``y``).
    loss
        Callable ``(output, target) -> scalar tensor`` (``nn.Module`` or function): the
        training loss (through :class:`~mlimaging.training.step.SupervisedStep`) and the
        ``val_loss``. Optional when ``step`` is given.
    optimizer
        An optimizer instance built on ``model``'s parameters, or a factory
        ``lambda params: torch.optim.SGD(params, lr=0.1)``; the factory receives only the
        parameters with ``requires_grad`` (so frozen layers are left out).
    epochs
        Total number of epochs (a resumed run continues up to this number).
    step
        A :class:`~mlimaging.training.step.TrainStep` for methods whose step is not
        ``loss(model(x), y)``: called with ``(model, batch, optimizer=, grad_clip=)`` on every
        batch, it does its own forward, backward and optimiser step and returns the loss, or
        ``(loss, extras)`` whose values are logged as per-epoch means under their names. Its
        ``state_dict()`` is saved in checkpoints and restored on resume. ``val_loss`` comes
        from its ``validation_loss(model, batch)`` if it has one, else from ``loss``.
    scheduler
        An LR scheduler instance or a factory ``lambda opt: StepLR(opt, 10)``; stepped every
        epoch (``ReduceLROnPlateau`` gets the monitored value) or, with
        ``scheduler_interval="step"``, after every optimiser step.
    metrics
        Names from :mod:`mlimaging.metrics` (``"accuracy"``, ``"f1_score"``, ``"precision"``,
        ``"recall"``, ``"specificity"``; macro averages; ``"dice"``: the mean Dice of the
        foreground classes of label maps, for segmentation networks), callables
        ``(outputs_all, targets_all) -> float``, or a dict name -> callable; computed on the
        whole validation set at each epoch end and recorded as ``val_<name>``. Named metrics
        use argmax labels (``output > 0`` for one logit). Use ``()`` for non-classifiers.
    callbacks
        Objects with any of ``on_epoch_start``, ``on_batch_end``, ``on_epoch_record`` (may add
        values to the epoch's record before it enters the history, checkpoint and progress line),
        ``on_epoch_end``, ``on_fit_end`` (see :class:`~mlimaging.training.callbacks.Callback`).
    checkpoint_dir
        Folder for ``last.pt`` (every epoch) and ``best.pt`` (when ``monitor`` improves);
        written atomically, readable with ``torch.load(weights_only=True)``.
    resume
        Continue from ``checkpoint_dir/last.pt`` if it exists (model, optimizer, scheduler,
        history and RNG states), at the next epoch. An interrupted run resumed with the same
        settings ends with exactly the weights of an uninterrupted one.
    early_stopping
        Patience (epochs without improvement of ``monitor``) or an
        :class:`~mlimaging.training.callbacks.EarlyStopping`.
    grad_clip
        Maximum global L2 norm of the gradients (``clip_grad_norm_``).
    seed
        Seeds Python, NumPy and torch (``seed + rank`` per process) and the data order.
    batch_size
        Samples per step and per process (under ``torchrun`` the global batch is
        ``world_size * batch_size``).
    shuffle, num_workers
        Shuffle the training order; DataLoader worker processes.
    device
        ``"cpu"``, ``"cuda"``, ... (under ``torchrun`` with CUDA each process uses ``cuda:LOCAL_RANK``).
    run
        Optional :class:`mlimaging.reporting.Run`: ``run.log({"history": [...]})`` every epoch.
    progress
        Show one rich progress bar per epoch on a terminal, and one summary line per epoch
        (plus "resumed from epoch N" on resume) on a terminal, in a log file or a pipe;
        rank 0 only.
    monitor, mode
        Value deciding ``best.pt``, ``History.best_epoch`` and early stopping: default
        ``"val_loss"`` (``"loss"`` without validation data); mode ``"min"`` for names ending
        in ``loss``, otherwise ``"max"``.
    scheduler_interval
        ``"epoch"`` or ``"step"``.
    precision
        ``"fp32"`` (default) or ``"bf16"``: every forward pass of ``model`` (training and
        validation, custom steps included) runs under ``torch.autocast(device, bfloat16)`` and
        its floating outputs are cast back to float32, so losses, gradients of the loss and the
        optimiser's weights stay float32 (mixed precision, Micikevicius et al. 2018,
        arXiv:1710.03740). On CPUs with AVX512-BF16 a conv net trains about 2x faster (also
        give the model ``memory_format=torch.channels_last``); bfloat16 keeps 8 mantissa bits,
        so evaluate the trained model in float32. Whole forward passes run in bfloat16, so a
        model that also solves something numerically inside its forward (an unrolled
        reconstruction with FFT or conjugate-gradient data steps) should stay in ``"fp32"``: an
        unrolled HQS deblurring net fine-tuned in bfloat16 diverged.

    Returns
    -------
    History
        The same on every process.

    Notes
    -----
    Under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised if needed
    (:func:`~mlimaging.training.distributed.init_distributed`), the model is wrapped in
    ``DistributedDataParallel`` (gradients averaged across processes), each process takes
    ``perm[rank::world_size]`` of every epoch's permutation, losses and metrics are reduced
    over all samples exactly, and only rank 0 logs, shows progress and writes checkpoints.
    With ``W`` processes of batch ``b`` the gradient of a step equals that of one process of
    batch ``W b`` (same samples, up to float rounding). A ready ``DataLoader`` is used as is
    on every process: give it a ``DistributedSampler`` yourself (its ``set_epoch`` is called).

    Reference: Li S. et al. (2020). PyTorch Distributed: Experiences on Accelerating Data
    Parallel Training. VLDB 13(12). arXiv:2006.15704.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 2, generator=g); y = (x[:, 0] > 0).long()
    >>> net = nn.Linear(2, 2)
    >>> h = fit(net, TensorDataset(x, y), TensorDataset(x, y), loss=nn.CrossEntropyLoss(),
    ...         optimizer=lambda p: torch.optim.SGD(p, lr=0.5), epochs=5, batch_size=16, progress=False)
    >>> len(h), h["val_accuracy"][-1] > 0.9
    (5, True)
    """
    epochs = _check_int(epochs, "epochs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    seed = _check_int(seed, "seed", 0)
    num_workers = _check_int(num_workers, "num_workers", 0)
    if loss is not None and not callable(loss):
        raise ValueError(f"loss must be a callable (output, target) -> scalar tensor, got {type(loss).__name__}")
    val_batch_loss = None  # a custom step's own validation loss (model, batch) -> scalar
    user_step = step
    if step is None:
        if loss is None:
            raise ValueError("fit needs a loss (output, target) -> scalar, or a step (a TrainStep)")
        step = SupervisedStep(loss)
    elif not callable(step):
        raise ValueError(f"step must be a TrainStep (callable (model, batch, *, optimizer, grad_clip)), "
                         f"got {type(step).__name__}")
    else:
        val_batch_loss = getattr(step, "validation_loss", None)
    if grad_clip is not None:
        if not isinstance(grad_clip, numbers.Real) or not grad_clip > 0:
            raise ValueError(f"grad_clip must be a positive max norm or None, got {grad_clip!r}")
        grad_clip = float(grad_clip)
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', got {scheduler_interval!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    metric_set = MetricSet(metrics)
    allowed = ["loss"] + (["val_loss"] + [f"val_{n}" for n in metric_set.names] if val_data is not None else [])
    monitor = monitor or ("val_loss" if val_data is not None else "loss")
    if monitor not in allowed:
        raise ValueError(f"monitor must be one of {allowed}, got {monitor!r}")
    mode = mode or ("min" if monitor.endswith("loss") else "max")
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
    if isinstance(early_stopping, int) and not isinstance(early_stopping, bool):
        early_stopping = EarlyStopping(early_stopping)
    elif early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise ValueError(f"early_stopping must be a patience (int) or an EarlyStopping, got {early_stopping!r}")
    if early_stopping is not None and early_stopping.monitor not in (None, *allowed):
        raise ValueError(f"early_stopping.monitor must be one of {allowed}, got {early_stopping.monitor!r}")
    callbacks = list(callbacks)

    rank, world = D.init_distributed()
    device = torch.device(device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if world > 1 and not isinstance(val_data, DataLoader) and hasattr(val_data, "__len__") and len(val_data) < world:
        raise ValueError(f"val_data has {len(val_data)} samples, fewer than the {world} processes")
    seed_everything(seed + rank)
    model.to(device)
    optimizer = _build_optimizer(optimizer, model)
    scheduler = _build_scheduler(scheduler, optimizer)
    config = _config(dict(epochs=epochs, batch_size=batch_size, seed=seed, shuffle=shuffle, grad_clip=grad_clip,
                          monitor=monitor, mode=mode, scheduler_interval=scheduler_interval,
                          num_workers=num_workers, device=str(device),
                          **({"precision": precision} if precision != "fp32" else {})),
                     loss if loss is not None else step, optimizer, scheduler, metric_set, early_stopping, world)

    history = History(monitor=monitor, mode=mode)
    start = 1
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckdir is not None and (ckdir / "last.pt").exists():
        if not resume:
            raise ValueError(f"checkpoint_dir {ckdir} already holds last.pt; pass resume=True to continue "
                             "that run, or choose an empty folder")
        start = restore_checkpoint(ckdir / "last.pt", model, optimizer, scheduler, history, config, rank, world,
                                   step=user_step)

    net: nn.Module = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    pin = device.type == "cuda"
    train_loader = make_loader(train_data, "train_data", batch_size=batch_size, shuffle=shuffle, seed=seed,
                               num_workers=num_workers, rank=rank, world_size=world, pad=True, pin_memory=pin)
    owned = train_loader is not train_data
    val_loader = None
    if val_data is not None:
        val_loader = make_loader(val_data, "val_data", batch_size=batch_size, shuffle=False, seed=seed,
                                 num_workers=num_workers, rank=rank, world_size=world, pad=False, pin_memory=pin)
    val_interleave = world > 1 and val_loader is not val_data

    state = TrainState(model=model, optimizer=optimizer, scheduler=scheduler, history=history, epochs=epochs,
                       rank=rank, world_size=world)
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    step_scheduler = scheduler if scheduler_interval == "step" else None
    bar = EpochProgress(epochs, enabled=progress and rank == 0)
    if start > 1:
        bar.message(f"resumed from epoch {start - 1} ({ckdir / 'last.pt'})")
    stop = early_stopping is not None and early_stopping.should_stop(history)
    if precision == "bf16" and device.type == "cpu" and not _cpu_has_bf16():
        warnings.warn("precision='bf16': this CPU has no native bfloat16 (AVX512-BF16 or AMX), so bfloat16 is "
                      "emulated and training will be slower than with 'fp32'", stacklevel=2)
    hooks = _autocast_forward(model, device.type) if precision == "bf16" else []
    try:
        for epoch in range(start, epochs + 1):
            if stop:
                break
            state.epoch = epoch
            call(callbacks, "on_epoch_start", state)
            set_loader_epoch(train_loader, epoch, seed, owned)
            lr = optimizer.param_groups[0]["lr"]
            t0 = time.perf_counter()
            task = bar.start(epoch, _safe_len(train_loader))
            train_logs = _train_epoch(net, train_loader, step, optimizer, grad_clip, step_scheduler,
                                      device, callbacks, state, bar, task)
            record: dict[str, Any] = {"epoch": epoch, **train_logs}
            if val_loader is not None:
                res = _evaluate_loader(model, val_loader, None if val_batch_loss else loss, metric_set, device,
                                       interleave=val_interleave, batch_loss=val_batch_loss)
                record.update({f"val_{k}": v for k, v in res.items()})
            record["lr"] = float(lr)
            record["seconds"] = time.perf_counter() - t0
            record = D.broadcast_object(record)
            state.logs = record
            call(callbacks, "on_epoch_record", state)  # may add values (e.g. privacy spent) to the record
            history.epochs.append(record)
            if plateau and scheduler_interval == "epoch":
                scheduler.step(record[monitor])
            elif scheduler is not None and scheduler_interval == "epoch":
                scheduler.step()
            if ckdir is not None:
                write_checkpoints(ckdir, model, optimizer, scheduler, history, config, epoch, rank,
                                  step_state=step.state_dict() if hasattr(step, "state_dict") else None)
            if rank == 0 and run is not None:
                run.log({"history": history.epochs})
            bar.finish(task, record)
            state.logs = record
            call(callbacks, "on_epoch_end", state)
            stop = state.stop_training or (early_stopping is not None and early_stopping.should_stop(history))
            if world > 1:
                stop = bool(D.all_reduce_sum(torch.tensor([float(stop)], device=device)).item() > 0)
        call(callbacks, "on_fit_end", state)
    finally:
        for h in hooks:
            h.remove()
        bar.close()
    if world > 1:
        torch.distributed.barrier()
    return history


def evaluate(
    model: nn.Module,
    data: Any,
    *,
    metrics: Any = ("accuracy",),
    loss: LossFn | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
    num_workers: int = 0,
) -> dict[str, float]:
    """Loss and metrics of ``model`` on ``data`` (eval mode, ``torch.no_grad``).

    Parameters
    ----------
    model
        Any ``nn.Module`` (its train/eval mode is restored afterwards).
    data
        A Dataset or DataLoader of ``(input, target)`` pairs or dicts (see :func:`fit`).
    metrics
        As in :func:`fit`; computed over all samples at once.
    loss
        Optional ``(output, target) -> scalar``; reported as the per-sample mean ``"loss"``.
    batch_size, num_workers
        Loader settings when ``data`` is a Dataset.
    device
        Default: the device of the model's first parameter (CPU for parameter-free models).

    Returns
    -------
    dict
        ``{"loss": ..., "<metric>": ...}``. In a process group each process evaluates
        ``data[rank::world_size]`` and all get the metrics of the whole set.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> net = nn.Linear(2, 2)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.eye(2)); _ = net.bias.zero_()
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    >>> evaluate(net, TensorDataset(x, torch.tensor([0, 1, 1, 1])))
    {'accuracy': 0.75}
    """
    batch_size = _check_int(batch_size, "batch_size", 1)
    num_workers = _check_int(num_workers, "num_workers", 0)
    metric_set = MetricSet(metrics)
    if loss is None and not metric_set:
        raise ValueError("evaluate needs a loss or at least one metric")
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    rank, world = D.get_rank(), D.get_world_size()
    loader = make_loader(data, "data", batch_size=batch_size, shuffle=False, seed=0, num_workers=num_workers,
                         rank=rank, world_size=world, pad=False, pin_memory=device.type == "cuda")
    return _evaluate_loader(model, loader, loss, metric_set, device, interleave=world > 1 and loader is not data)


# ---------------------------------------------------------------------------------------- loops
def _autocast_forward(model: nn.Module, device_type: str) -> list[Any]:
    """Hooks running ``model``'s forward under bfloat16 autocast, its floating outputs cast to float32.

    The post-hook runs even when the forward raises (``always_call``), so the autocast region
    never outlives the call."""
    regions: list[Any] = []

    def enter(module: nn.Module, args: Any) -> None:
        region = torch.autocast(device_type, dtype=torch.bfloat16)
        region.__enter__()
        regions.append(region)

    def leave(module: nn.Module, args: Any, out: Any) -> Any:
        regions.pop().__exit__(None, None, None)
        return _as_float32(out)

    return [model.register_forward_pre_hook(enter), model.register_forward_hook(leave, always_call=True)]


def _cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (False when torch cannot tell)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _as_float32(out: Any) -> Any:
    """``out`` with its bfloat16/float16 tensors (also inside tuples, lists and dicts) as float32."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.dtype in (torch.bfloat16, torch.float16) else out
    if isinstance(out, tuple) and hasattr(out, "_fields"):  # a namedtuple
        return type(out)(*(_as_float32(v) for v in out))
    if isinstance(out, (tuple, list)):
        return type(out)(_as_float32(v) for v in out)
    if isinstance(out, dict):
        return type(out)((k, _as_float32(v)) for k, v in out.items())
    return out


def _train_epoch(net, loader, step, optimizer, grad_clip, step_scheduler, device, callbacks,
                 state, bar, task) -> dict[str, float]:
    """One pass over ``loader``: the per-sample mean of the loss and of the step's extras."""
    net.train()
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    total = torch.zeros((), dtype=acc_dtype, device=device)
    extras: dict[str, torch.Tensor] = {}
    count = 0
    for i, batch in enumerate(loader):
        batch = to_device(batch, device)
        result = step(net, batch, optimizer=optimizer, grad_clip=grad_clip)
        value, logs = result if isinstance(result, tuple) else (result, {})
        value = _scalar(value, "the training step")
        if step_scheduler is not None:
            step_scheduler.step()
        n = batch_len(batch)
        total += value.detach() * n
        for k, v in dict(logs).items():
            if k in ("loss", "epoch", "lr", "seconds") or k.startswith("val_"):
                raise ValueError(f"the training step's extra value {k!r} clashes with a name fit records")
            v = torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else v, dtype=acc_dtype, device=device)
            extras[k] = extras.get(k, torch.zeros((), dtype=acc_dtype, device=device)) + v.reshape(()) * n
        count += n
        if callbacks:
            x, y = _split_or_none(batch)
            state.batch, state.output, state.target, state.loss = i, getattr(step, "last_output", None), y, value
            call(callbacks, "on_batch_end", state)
        bar.advance(task, value)
    if count == 0:
        raise ValueError("train_data produced no batches")
    names = sorted(extras)
    sums = D.all_reduce_sum(torch.stack([total, *(extras[k] for k in names), total.new_tensor(count)]))
    logs_out = {"loss": float(sums[0] / sums[-1])}
    logs_out.update({k: float(sums[j + 1] / sums[-1]) for j, k in enumerate(names)})
    return logs_out


def _split_or_none(batch: Any) -> tuple[Any, Any]:
    try:
        return split_batch(batch)
    except ValueError:
        return batch, None


def _evaluate_loader(model, loader, loss_fn, metric_set: MetricSet, device, *, interleave: bool,
                     batch_loss=None) -> dict[str, float]:
    """Loss (``loss_fn(model(x), y)``, or a step's ``batch_loss(model, batch)``) and metrics."""
    was_training = model.training
    model.eval()
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    total = torch.zeros((), dtype=acc_dtype, device=device)
    count = 0
    kept: list[torch.Tensor] = []
    targets: list[torch.Tensor] = []
    num_classes = None
    try:
        with torch.no_grad():
            for batch in loader:
                batch = to_device(batch, device)
                n = batch_len(batch)
                count += n
                if batch_loss is not None:
                    total += _scalar(batch_loss(model, batch), "validation_loss").detach() * n
                if loss_fn is None and not metric_set:
                    continue
                x, y = split_batch(batch)
                out = model(x)
                if loss_fn is not None:
                    total += loss_fn(out, y).detach() * n
                if metric_set:
                    kept.append(out.detach() if metric_set.needs_outputs else to_labels(out))
                    targets.append(y.detach())
                    num_classes = num_classes or num_classes_of(out)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the evaluation data produced no batches")
    result: dict[str, float] = {}
    if loss_fn is not None or batch_loss is not None:
        sums = D.all_reduce_sum(torch.stack([total, total.new_tensor(count)]))
        result["loss"] = float(sums[0] / sums[1])
    if metric_set:
        all_kept = D.gather_tensor(torch.cat(kept), interleave=interleave)
        all_targets = D.gather_tensor(torch.cat(targets), interleave=interleave)
        result.update(metric_set.compute(all_kept, all_targets, num_classes))
    return result


# ---------------------------------------------------------------------------------------- set-up
def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _scalar(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 0:
        raise ValueError(f"{what} must return a scalar tensor, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return type(value).__name__


def _safe_len(loader: DataLoader) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _build_optimizer(optimizer: Any, model: nn.Module) -> torch.optim.Optimizer:
    if not isinstance(optimizer, torch.optim.Optimizer):
        if not callable(optimizer):
            raise ValueError(f"optimizer must be an Optimizer or a factory params -> Optimizer, got {optimizer!r}")
        trainable = [p for p in model.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("model has no trainable parameters (all have requires_grad=False)")
        optimizer = optimizer(trainable)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError(f"the optimizer factory must return a torch Optimizer, got {type(optimizer).__name__}")
    own = {id(p) for p in model.parameters()}
    if any(id(p) not in own for g in optimizer.param_groups for p in g["params"]):
        raise ValueError("optimizer holds parameters that are not model's (was it built before replace_head "
                         "or for another model?); pass a factory lambda params: ... instead")
    return optimizer


def _build_scheduler(scheduler: Any, optimizer: torch.optim.Optimizer) -> Any:
    if scheduler is None:
        return None
    if not hasattr(scheduler, "state_dict"):
        if not callable(scheduler):
            raise ValueError(f"scheduler must be an LR scheduler or a factory optimizer -> scheduler, got {scheduler!r}")
        scheduler = scheduler(optimizer)
    if not hasattr(scheduler, "step") or not hasattr(scheduler, "state_dict"):
        raise ValueError(f"scheduler must have step() and state_dict(), got {type(scheduler).__name__}")
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise ValueError("scheduler was built for a different optimizer; pass a factory lambda opt: ... instead")
    return scheduler


def _name(obj: Any) -> str:
    if obj is None:
        return "None"
    return getattr(obj, "__name__", None) or type(obj).__name__


def _config(settings: Mapping[str, Any], loss, optimizer, scheduler, metric_set, early_stopping, world) -> dict:
    """The plain-dict settings stored in checkpoints (``weights_only``-safe types only)."""
    cfg: dict[str, Any] = dict(settings)
    cfg.update(loss=_name(loss), optimizer=_name(optimizer), lr=float(optimizer.param_groups[0]["lr"]),
               scheduler=_name(scheduler) if scheduler is not None else None, metrics=metric_set.names,
               early_stopping=early_stopping.patience if early_stopping is not None else None,
               world_size=world)
    return cfg

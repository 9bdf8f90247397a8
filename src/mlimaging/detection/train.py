r"""Training YOLO through :func:`mlimaging.training.fit`: a dataset of encoded targets, a training
step that logs the loss terms, a convenience :func:`train_detector`, and checkpoints that carry
the model's configuration (:func:`save_detector` / :func:`load_detector`).
"""

from __future__ import annotations

import numbers
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from mlimaging.detection.loss import yolo_loss_terms
from mlimaging.detection.yolo import YOLO, encode_targets
from mlimaging.training.step import TrainStep

__all__ = [
    "evaluate_detector",
    "DEFAULT_TRAINING",
    "YOLODataset",
    "YOLOStep",
    "load_detector",
    "save_detector",
    "train_detector",
]


class YOLODataset(Dataset):
    r"""Images and their YOLO target grids: item ``k`` is ``(image, encode_targets(targets[k]))``.

    Parameters
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` float images (stored as given; ``uint8`` is divided by 255 on access).
    targets : list of dict
        One dict per image with ``boxes`` ``(K, 4)`` xyxy pixels and ``labels`` ``(K,)``.
    grid, num_classes : int
        :math:`S` and :math:`C` of the detector.

    Attributes
    ----------
    grids : torch.Tensor
        ``(N, S, S, 5 + C)`` encoded once at construction (:func:`~mlimaging.detection.encode_targets`).
    dropped : int
        Ground-truth boxes that share their cell with a larger box (a YOLO v1 cell holds one object).

    Examples
    --------
    >>> import torch
    >>> t = [{"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0]]), "labels": torch.tensor([1])}]
    >>> ds = YOLODataset(torch.zeros(1, 1, 32, 32), t, grid=2, num_classes=3)
    >>> x, y = ds[0]
    >>> tuple(x.shape), tuple(y.shape), ds.dropped
    ((1, 32, 32), (2, 2, 8), 0)
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: Sequence[Mapping[str, Any]],
        *,
        grid: int,
        num_classes: int,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(
                f"images must be a tensor (N, C, H, W), got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
            )
        if len(targets) != len(images):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = list(targets)
        self.grids = encode_targets(
            self.targets, grid=grid, num_classes=num_classes, image_size=tuple(images.shape[-2:])
        )
        total = sum(int(torch.as_tensor(t["labels"]).numel()) for t in self.targets)
        self.dropped = total - int(self.grids[..., 4].sum())

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[k]
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return x, self.grids[k]


class YOLOStep(TrainStep):
    r"""The training step of YOLO: forward, :func:`~mlimaging.detection.yolo_loss`, backward, step.

    The loss is ``loss(model(x), y)`` (:func:`~mlimaging.detection.yolo_loss`); the step exists
    so that ``fit`` logs its terms ``coord``, ``obj``, ``noobj``, ``cls`` and the mean IoU of the
    responsible boxes ``iou`` per epoch, beside the total.

    Parameters
    ----------
    lambda_coord, lambda_noobj, rescore
        As :func:`~mlimaging.detection.yolo_loss`.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.detection.yolo import YOLO, encode_targets
    >>> net = YOLO(grid=2, num_classes=2, backbone="tiny", image_size=32)
    >>> y = encode_targets([{"boxes": torch.tensor([[4.0, 4.0, 12.0, 12.0]]), "labels": torch.tensor([1])}] * 2,
    ...                    grid=2, num_classes=2, image_size=32)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.01)
    >>> loss, logs = YOLOStep()(net, (torch.rand(2, 1, 32, 32), y), optimizer=opt)
    >>> sorted(logs)
    ['cls', 'coord', 'iou', 'noobj', 'obj']
    """

    def __init__(
        self, *, lambda_coord: float = 5.0, lambda_noobj: float = 0.5, rescore: bool = True
    ) -> None:
        self.kwargs = dict(
            lambda_coord=lambda_coord, lambda_noobj=lambda_noobj, rescore=bool(rescore)
        )
        self.last_output: Any = None

    def __call__(
        self,
        model: nn.Module,
        batch: Any,
        *,
        optimizer: torch.optim.Optimizer,
        grad_clip: float | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        terms = yolo_loss_terms(out, y, **self.kwargs)
        terms["loss"].backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], grad_clip
            )
        optimizer.step()
        self.last_output = out.detach()
        return terms["loss"], {k: v.detach() for k, v in terms.items() if k != "loss"}

    def validation_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The YOLO loss of one batch (``fit`` calls it in eval mode under no_grad)."""
        x, y = batch
        return yolo_loss_terms(model(x), y, **self.kwargs)["loss"]


# benchmarks/detection.py (one thread, process CPU time, loaded 2-core machine): these settings train in 3.9 CPU
# minutes (canvas generation included) to mAP@0.5 0.939, mAP@[.5:.95] 0.558 on 1,000 canvases of held-out digits
# (target >= 0.90 in <= 15 CPU minutes). A pilot with the same settings scored 0.956 / 0.580 on 500 other canvases.
DEFAULT_TRAINING: dict[str, Any] = {
    "grid": 6,
    "boxes_per_cell": 2,
    "backbone": "small",
    "n_train": 8000,
    "epochs": 8,
    "batch_size": 32,
    "lr": 2e-3,
    "weight_decay": 5e-4,
    "lambda_coord": 5.0,
    "lambda_noobj": 0.5,
    "rescore": True,
    "seed": 0,
}


def _positive(value: Any, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not value > 0
        or value == float("inf")
    ):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def train_detector(
    train: tuple[torch.Tensor, Sequence[Mapping[str, Any]]] | None = None,
    val: tuple[torch.Tensor, Sequence[Mapping[str, Any]]] | None = None,
    *,
    model: YOLO | None = None,
    num_classes: int = 10,
    grid: int | None = None,
    boxes_per_cell: int | None = None,
    backbone: str | None = None,
    n_train: int | None = None,
    canvas: int = 96,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    weight_decay: float | None = None,
    seed: int | None = None,
    lambda_coord: float | None = None,
    lambda_noobj: float | None = None,
    rescore: bool | None = None,
    progress: bool = False,
    **fit_kwargs: Any,
) -> tuple[YOLO, Any]:
    r"""Train a :class:`~mlimaging.detection.YOLO` through :func:`mlimaging.training.fit`.

    Minimises :func:`~mlimaging.detection.yolo_loss` with AdamW (decoupled weight decay,
    Loshchilov & Hutter 2019) and a one-cycle learning rate (warm-up over the first 10 % of the
    steps to ``lr``, then cosine decay; Smith & Topin 2019), one step per batch
    (:class:`YOLOStep`). Unset options take :data:`DEFAULT_TRAINING`, the settings that met the
    target of ``benchmarks/detection.py``.

    Parameters
    ----------
    train, val : (images, targets), optional
        Images ``(N, C, H, W)`` and one target dict per image (``boxes`` xyxy pixels,
        ``labels``). Default ``train``: ``n_train`` digit canvases of side ``canvas``
        (:func:`~mlimaging.detection.detection_canvases`, split ``"train"``, ``seed``); no
        validation by default.
    model : YOLO, optional
        A detector to train; default a new ``YOLO(grid, boxes_per_cell, num_classes,
        in_channels, image_size, backbone)`` seeded by ``seed``.
    num_classes, grid, boxes_per_cell, backbone
        The new model's :math:`C`, :math:`S`, :math:`B` and backbone.
    n_train, canvas
        Size of the default training set, and the canvases' side.
    epochs, batch_size, lr, weight_decay, seed
        Optimisation; ``seed`` also seeds the weights and the default canvases.
    lambda_coord, lambda_noobj, rescore
        As :func:`~mlimaging.detection.yolo_loss`.
    progress : bool
        Show fit's progress.
    **fit_kwargs
        Further options of :func:`~mlimaging.training.fit` (``checkpoint_dir``, ``resume``,
        ``callbacks``, ``device``, ...).

    Returns
    -------
    (YOLO, History)
        The trained detector in eval mode and fit's history (``loss`` and its terms, and
        ``val_loss`` when ``val`` is given); ``history.cpu_seconds`` is the process CPU time
        of the call (data included).

    References
    ----------
    Redmon J., Divvala S., Girshick R., Farhadi A. (2016). You Only Look Once. arXiv:1506.02640.

    Examples
    --------
    >>> import torch
    >>> t = {"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "labels": torch.tensor([1])}
    >>> images = torch.zeros(8, 1, 32, 32); images[:, :, 4:20, 4:20] = 1
    >>> net, hist = train_detector((images, [t] * 8), model=YOLO(grid=2, num_classes=2, image_size=32,
    ...                            backbone="tiny"), epochs=3, batch_size=4, lr=1e-2)
    >>> len(hist), hist["loss"][-1] < hist["loss"][0]
    (3, True)
    """
    from mlimaging.training import fit

    t0 = time.process_time()
    cfg = dict(DEFAULT_TRAINING)
    given = dict(
        grid=grid,
        boxes_per_cell=boxes_per_cell,
        backbone=backbone,
        n_train=n_train,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        lambda_coord=lambda_coord,
        lambda_noobj=lambda_noobj,
        rescore=rescore,
    )
    cfg.update({k: v for k, v in given.items() if v is not None})
    lr_value = _positive(cfg["lr"], "lr")
    wd = float(cfg["weight_decay"])
    if not wd >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {cfg['weight_decay']!r}")
    if train is None:
        from mlimaging.detection.data import detection_canvases

        train = detection_canvases(
            n=int(cfg["n_train"]), canvas=canvas, seed=int(cfg["seed"]), split="train"
        )
    images, targets = train[0], train[1]
    if model is None:
        with torch.random.fork_rng(devices=[]):  # seeded weights, global state untouched
            torch.manual_seed(int(cfg["seed"]))
            model = YOLO(
                grid=int(cfg["grid"]),
                boxes_per_cell=int(cfg["boxes_per_cell"]),
                num_classes=num_classes,
                in_channels=int(images.shape[1]),
                image_size=int(images.shape[-1]),
                backbone=cfg["backbone"],
            )
    if not isinstance(model, YOLO):
        raise ValueError(f"model must be a YOLO, got {type(model).__name__}")
    train_ds = YOLODataset(images, targets, grid=model.grid, num_classes=model.num_classes)
    val_ds = (
        None
        if val is None
        else YOLODataset(val[0], val[1], grid=model.grid, num_classes=model.num_classes)
    )
    steps = int(cfg["epochs"]) * -(-len(train_ds) // int(cfg["batch_size"]))
    fit_kwargs.setdefault(
        "scheduler",
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr_value, total_steps=steps, pct_start=0.1, anneal_strategy="cos"
        ),
    )
    fit_kwargs.setdefault("scheduler_interval", "step")
    step = YOLOStep(
        lambda_coord=cfg["lambda_coord"], lambda_noobj=cfg["lambda_noobj"], rescore=cfg["rescore"]
    )
    history = fit(
        model,
        train_ds,
        val_ds,
        step=step,
        metrics=(),
        epochs=int(cfg["epochs"]),
        optimizer=lambda p: torch.optim.AdamW(p, lr=lr_value, weight_decay=wd),
        batch_size=int(cfg["batch_size"]),
        seed=int(cfg["seed"]),
        progress=progress,
        **fit_kwargs,
    )
    history.cpu_seconds = time.process_time() - t0
    return model.eval(), history


def evaluate_detector(
    model: nn.Module,
    data: tuple[torch.Tensor, Sequence[Mapping[str, Any]]] | Any,
    *,
    conf_threshold: float = 0.01,
    iou_threshold: float = 0.5,
    batch_size: int = 100,
) -> dict[str, Any]:
    r"""Mean average precision of a detector on images with ground truth.

    Runs ``model`` (a :class:`~mlimaging.detection.YOLO`, whose :meth:`~YOLO.detect` decodes
    with ``conf_threshold`` and class-wise NMS at ``iou_threshold``, or any module mapping
    images to per-image dicts, such as :class:`~mlimaging.detection.TwoStageDetector`) on
    batches of ``batch_size`` images and scores the detections with
    :func:`~mlimaging.detection.mean_average_precision` (COCO: ``map`` over IoU .50:.05:.95,
    ``map_50``, ``map_75``, per class). A low ``conf_threshold`` (0.01) is the usual setting
    for mAP: low-scored detections only extend the precision-recall curve.

    Parameters
    ----------
    model : nn.Module
        The detector.
    data : (images, targets) or DetectionCanvases
        Images ``(N, C, H, W)`` and one dict per image (``boxes`` xyxy pixels, ``labels``), or
        an object with ``images`` and ``targets`` attributes.

    Returns
    -------
    dict
        The result of :func:`~mlimaging.detection.mean_average_precision`, plus ``detections``:
        the list of per-image dicts.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.detection import YOLO
    >>> t = [{"boxes": torch.tensor([[4.0, 4.0, 20.0, 20.0]]), "labels": torch.tensor([1])}]
    >>> res = evaluate_detector(YOLO(grid=2, num_classes=2, image_size=32, backbone="tiny"),
    ...                         (torch.zeros(1, 1, 32, 32), t))
    >>> 0.0 <= float(res["map_50"]) <= 1.0
    True
    """
    from mlimaging.detection.metrics import mean_average_precision

    images, targets = (data.images, data.targets) if hasattr(data, "images") else data
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(targets) != len(images):
        raise ValueError("data must be (images (N, C, H, W), targets: one dict per image)")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    was_training = model.training
    model.eval()
    preds: list[dict[str, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for k in range(0, len(images), batch_size):
                x = images[k : k + batch_size].float()
                if isinstance(model, YOLO):
                    preds += model.detect(
                        x, conf_threshold=conf_threshold, iou_threshold=iou_threshold
                    )
                else:
                    preds += list(model(x))
    finally:
        model.train(was_training)
    result = dict(mean_average_precision(preds, list(targets)))
    result["detections"] = preds
    return result


def save_detector(model: YOLO, path: str | os.PathLike, **meta: Any) -> Path:
    """Save ``model``'s weights with its configuration (and ``meta``) for :func:`load_detector`.

    The file is ``{"model": state_dict, "detector": {"config": model.config, **meta}}``, readable
    with ``torch.load(weights_only=True)``: ``meta`` must hold only numbers, strings, lists,
    dicts and tensors. Written atomically (:func:`mlimaging.training.save_checkpoint`).

    Examples
    --------
    >>> import os, tempfile
    >>> net = YOLO(grid=3, num_classes=2, backbone="tiny")
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = save_detector(net, os.path.join(tmp, "model.pt"), epochs=1)
    ...     again, meta = load_detector(p)
    >>> again.config == net.config, meta["epochs"]
    (True, 1)
    """
    from mlimaging.training import save_checkpoint

    if not isinstance(model, YOLO):
        raise ValueError(f"model must be a YOLO, got {type(model).__name__}")
    return save_checkpoint(
        {"model": model.state_dict(), "detector": {"config": dict(model.config), **meta}}, path
    )


def load_detector(
    path: str | os.PathLike, *, map_location: Any = "cpu"
) -> tuple[YOLO, dict[str, Any]]:
    """The :class:`~mlimaging.detection.YOLO` saved by :func:`save_detector` (eval mode) and its metadata.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a detector checkpoint or its weights do not fit its configuration.
    """
    from mlimaging.training import load_checkpoint

    ckpt = load_checkpoint(path, map_location=map_location)
    meta = ckpt.get("detector")
    if (
        not isinstance(meta, dict)
        or not isinstance(meta.get("config"), dict)
        or "model" not in ckpt
    ):
        raise ValueError(
            f"{path} is not a detector checkpoint (no 'detector' config); write it with save_detector"
        )
    model = YOLO(**meta["config"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(
            f"{path}: the weights do not fit YOLO({meta['config']}): {str(exc).splitlines()[0]}"
        ) from None
    return model.eval(), dict(meta)

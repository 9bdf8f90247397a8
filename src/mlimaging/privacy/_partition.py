"""Split a labelled data set among simulated federated clients (IID, shards, Dirichlet)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset, TensorDataset

__all__ = ["partition", "partition_summary", "plot_partition"]

SCHEMES = ("iid", "shards", "dirichlet")
_MAX_DRAWS = 100  # Dirichlet re-draws before the empty clients are filled by hand


def _check_int(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low \
            or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _is_xy(dataset: Any) -> bool:
    return (isinstance(dataset, (tuple, list)) and len(dataset) == 2
            and all(isinstance(a, (torch.Tensor, np.ndarray)) for a in dataset)
            and len(dataset[0]) == len(dataset[1]))


def as_dataset(dataset: Any, name: str = "dataset") -> Dataset:
    """A ``Dataset``: ``dataset`` itself, or a ``TensorDataset`` of an ``(x, y)`` pair of tensors."""
    if _is_xy(dataset):
        return TensorDataset(torch.as_tensor(dataset[0]), torch.as_tensor(dataset[1]))
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise ValueError(f"{name} must be a Dataset of (x, y) pairs or an (x, y) pair of tensors, "
                         f"got {type(dataset).__name__}")
    return dataset


def _labels(dataset: Any) -> np.ndarray:
    """The integer class labels ``(N,)`` of a Dataset of ``(x, y)``, a TensorDataset or an ``(x, y)`` pair.

    Read without loading the inputs where the data set exposes them (``targets``,
    ``TensorDataset.tensors[1]``, a ``Subset`` of either); otherwise item by item.
    """
    if _is_xy(dataset):
        y = dataset[1]
    elif isinstance(dataset, TensorDataset):
        if len(dataset.tensors) != 2:
            raise ValueError(f"dataset: a TensorDataset must hold (x, y), got {len(dataset.tensors)} tensors")
        y = dataset.tensors[1]
    elif isinstance(dataset, Subset):
        y = _labels(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    elif hasattr(dataset, "targets") and hasattr(dataset, "__len__"):
        y = dataset.targets
    else:
        as_dataset(dataset)
        items = [dataset[i] for i in range(len(dataset))]
        if any(not isinstance(it, (tuple, list)) or len(it) != 2 for it in items):
            raise ValueError("dataset items must be (x, y) pairs to read their labels")
        y = [it[1] for it in items]
    y = np.asarray(y.detach().cpu() if isinstance(y, torch.Tensor) else
                   [int(v) if isinstance(v, torch.Tensor) else v for v in y])
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"dataset labels must be one integer class per sample, got an array of shape "
                         f"{y.shape} and dtype {y.dtype}")
    if y.size and y.min() < 0:
        raise ValueError(f"dataset labels must be >= 0, got {int(y.min())}")
    return y.astype(np.int64)


def partition(
    dataset: Any,
    *,
    num_clients: int,
    scheme: str = "iid",
    shards_per_client: int = 2,
    alpha: float = 0.5,
    seed: int = 0,
) -> list[list[int]]:
    r"""Split the sample indices of ``dataset`` among ``num_clients`` federated clients.

    Every sample goes to exactly one client and none is dropped; each client's list is sorted.

    * ``"iid"``: a seeded shuffle cut into ``num_clients`` parts whose sizes differ by at most one.
    * ``"shards"`` (McMahan et al. 2017's pathological non-IID split): sort the samples by label
      (ties in a seeded random order), cut the sorted list into
      :math:`S = K \cdot s` shards of sizes :math:`\lfloor N/S \rfloor` or
      :math:`\lceil N/S \rceil` (the remainder is spread over the first shards, nothing is
      dropped), and give each client :math:`s` shards drawn at random. A client then holds at
      most ``shards_per_client`` labels when every shard is label-pure.
    * ``"dirichlet"`` (label skew, Hsu et al. 2019): for each class :math:`c` draw client
      proportions :math:`p_c \sim \mathrm{Dir}_K(\alpha \mathbf 1)` and cut the class's shuffled
      samples at :math:`\lfloor N_c \sum_{j \le k} p_{c,j} \rfloor`. Small :math:`\alpha` gives
      clients few classes, :math:`\alpha \to \infty` the IID proportions. If a client ends up
      empty the proportions are re-drawn (up to 100 times); if one is still empty, each empty
      client receives one random sample of the currently largest client.

    Parameters
    ----------
    dataset
        A Dataset of ``(x, y)`` pairs, a ``TensorDataset(x, y)`` or an ``(x, y)`` pair of tensors
        with integer class labels ``y``.
    num_clients
        :math:`K`, from 1 to the number of samples.
    scheme
        ``"iid"``, ``"shards"`` or ``"dirichlet"``.
    shards_per_client
        :math:`s` for ``"shards"`` (McMahan et al. use 2); needs :math:`K s \le N`.
    alpha
        Dirichlet concentration :math:`\alpha > 0` for ``"dirichlet"``.
    seed
        Seed of NumPy's generator; the same seed gives the same split.

    Returns
    -------
    list of list of int
        ``parts[k]``: the sorted sample indices of client ``k``.

    References
    ----------
    McMahan B. et al. (2017). Communication-Efficient Learning of Deep Networks from
    Decentralized Data. AISTATS. arXiv:1602.05629.
    Hsu T.-M. H., Qi H., Brown M. (2019). Measuring the Effects of Non-Identical Data
    Distribution for Federated Visual Classification. arXiv:1909.06335.

    Examples
    --------
    >>> import torch
    >>> y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    >>> x = torch.zeros(8, 1)
    >>> parts = partition((x, y), num_clients=2, scheme="shards", shards_per_client=2, seed=0)
    >>> sorted(i for p in parts for i in p)
    [0, 1, 2, 3, 4, 5, 6, 7]
    >>> [sorted({int(y[i]) for i in p}) for p in parts]
    [[1, 2], [0, 3]]
    >>> [len(p) for p in partition((x, y), num_clients=3)]
    [3, 3, 2]
    """
    labels = _labels(dataset)
    n = len(labels)
    if n == 0:
        raise ValueError("dataset is empty; nothing to partition")
    k = _check_int(num_clients, "num_clients", 1, n)
    seed = _check_int(seed, "seed", 0)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {list(SCHEMES)}, got {scheme!r}")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(n), k)
    elif scheme == "shards":
        s = _check_int(shards_per_client, "shards_per_client", 1)
        if k * s > n:
            raise ValueError(f"shards_per_client={s} with num_clients={k} needs at least {k * s} samples, "
                             f"dataset has {n}")
        perm = rng.permutation(n)
        order = perm[np.argsort(labels[perm], kind="stable")]
        shards = np.array_split(order, k * s)
        chosen = rng.permutation(k * s)
        parts = [np.concatenate([shards[j] for j in chosen[c * s:(c + 1) * s]]) for c in range(k)]
    else:
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not np.isfinite(alpha) or alpha <= 0:
            raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
        parts = _dirichlet(labels, k, float(alpha), rng)
    return [sorted(int(i) for i in p) for p in parts]


def _dirichlet(labels: np.ndarray, k: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    classes = np.unique(labels)
    for _ in range(_MAX_DRAWS):
        buckets: list[list[np.ndarray]] = [[] for _ in range(k)]
        for c in classes:
            idx = rng.permutation(np.flatnonzero(labels == c))
            p = rng.dirichlet(np.full(k, alpha))
            cuts = np.floor(np.cumsum(p)[:-1] * len(idx)).astype(np.int64)
            for j, piece in enumerate(np.split(idx, cuts)):
                buckets[j].append(piece)
        parts = [np.concatenate(b) for b in buckets]
        if all(len(p) for p in parts):
            return parts
    for j in range(k):  # still some empty clients: each takes one sample from the largest
        if len(parts[j]) == 0:
            big = int(np.argmax([len(p) for p in parts]))
            take = int(rng.integers(len(parts[big])))
            parts[j] = parts[big][take:take + 1]
            parts[big] = np.delete(parts[big], take)
    return parts


def partition_summary(dataset: Any, parts: list[list[int]]) -> np.ndarray:
    r"""Label histogram per client: ``H[k, c]`` = number of samples of class ``c`` held by client ``k``.

    .. math:: H_{kc} = \lvert \{ i \in P_k : y_i = c \} \rvert, \qquad
              c = 0, \dots, \max_i y_i

    Parameters
    ----------
    dataset
        As in :func:`partition`.
    parts
        Index lists, one per client (as :func:`partition` returns).

    Returns
    -------
    numpy.ndarray
        ``(num_clients, num_classes)`` int64; its rows sum to the client sizes and its columns
        to the class counts when ``parts`` covers the data set.

    References
    ----------
    McMahan B. et al. (2017). Communication-Efficient Learning of Deep Networks from
    Decentralized Data. AISTATS. arXiv:1602.05629.

    Examples
    --------
    >>> import torch
    >>> y = torch.tensor([0, 1, 1, 2, 2, 2])
    >>> partition_summary((torch.zeros(6, 1), y), [[0, 1], [2, 3, 4, 5]])
    array([[1, 1, 0],
           [0, 1, 3]])
    """
    labels = _labels(dataset)
    if not isinstance(parts, (list, tuple)) or len(parts) == 0:
        raise ValueError(f"parts must be a non-empty list of index lists, got {parts!r}")
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    out = np.zeros((len(parts), num_classes), dtype=np.int64)
    for k, p in enumerate(parts):
        idx = np.asarray(list(p), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(labels)):
            raise ValueError(f"parts[{k}] holds an index outside [0, {len(labels)})")
        out[k] = np.bincount(labels[idx], minlength=num_classes)
    return out


def plot_partition(summary: Any, *, ax: Any = None, title: str | None = None) -> Any:
    r"""Stacked bar chart of a :func:`partition_summary`: one bar per client, one colour per class.

    Bar :math:`k` has height :math:`n_k = \sum_c H_{kc}`, split by class.

    Parameters
    ----------
    summary
        ``(num_clients, num_classes)`` counts.
    ax
        A matplotlib Axes to draw on; a new figure by default.
    title
        Optional axes title.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Hsu T.-M. H., Qi H., Brown M. (2019). Measuring the Effects of Non-Identical Data
    Distribution for Federated Visual Classification. arXiv:1909.06335 (Figure 1).

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_partition(np.array([[3, 0], [1, 2]]))
    >>> len(fig.axes[0].patches)
    4
    """
    from mlimaging.reporting.figures import plt

    h = np.asarray(summary)
    if h.ndim != 2 or h.size == 0 or (h < 0).any():
        raise ValueError(f"summary must be a non-empty (num_clients, num_classes) array of counts, got shape {h.shape}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(max(4.0, 0.25 * h.shape[0] + 2), 3))
    else:
        fig = ax.figure
    cmap = plt.get_cmap("tab10" if h.shape[1] <= 10 else "tab20")
    bottom = np.zeros(h.shape[0])
    clients = np.arange(h.shape[0])
    for c in range(h.shape[1]):
        ax.bar(clients, h[:, c], bottom=bottom, color=cmap(c % cmap.N), label=str(c), width=0.8)
        bottom += h[:, c]
    ax.set_xlabel("client")
    ax.set_ylabel("samples")
    if h.shape[1] <= 20:
        ax.legend(title="class", fontsize="small", ncol=2, bbox_to_anchor=(1.01, 1), loc="upper left")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig

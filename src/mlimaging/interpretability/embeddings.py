r"""Embeddings: a layer's activations as feature vectors, and their t-SNE map.

:func:`embed` runs a model over a dataset and keeps what one layer outputs (a forward hook),
one row per sample. :func:`tsne` maps the rows to 2 (or 3) dimensions with t-distributed
stochastic neighbour embedding (van der Maaten & Hinton 2008), scikit-learn's by default and
openTSNE's (Poličar et al. 2019) above 10,000 points when it is installed.
:func:`plot_embedding` draws the map coloured by class.

The layer helpers :func:`resolve_layer` and :func:`layer_names` live in ``_common`` (shared
with the attribution methods, visualisation and channel ablation) and are re-exported here.

References
----------
van der Maaten L., Hinton G. (2008). Visualizing data using t-SNE. JMLR 9:2579-2605.

Poličar P. G., Stražar M., Zupan B. (2019). openTSNE: a modular Python library for t-SNE
dimensionality reduction and embedding. bioRxiv 731877. DOI 10.1101/731877.
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from mlimaging.interpretability._common import (
    check_positive_int,
    explained,
    layer_names,
    resolve_layer,
)

__all__ = ["embed", "layer_names", "plot_embedding", "resolve_layer", "tsne"]

#: Above this many points :func:`tsne` prefers openTSNE (FFT-accelerated) when installed.
OPENTSNE_THRESHOLD = 10_000


class _StopForward(Exception):
    """Raised by a hook to end a forward pass once the hooked layer has run."""


def _last_parametrised_leaf(model: nn.Module) -> tuple[str, nn.Module]:
    leaves = [(n, m) for n, m in model.named_modules()
              if n and not list(m.children()) and any(True for _ in m.parameters(recurse=False))]
    if not leaves:
        raise ValueError("layer='penultimate' needs a model with at least one layer that has parameters")
    return leaves[-1]


@contextlib.contextmanager
def capture(module: nn.Module, *, stop: bool = False, use_input: bool = False) -> Iterator[dict]:
    """Record ``module``'s output (or first input) in ``store["value"]`` during a forward pass.

    With ``stop=True`` the forward pass ends right after the module (callers wrap the call in
    :func:`run_until`). The hook is removed on exit, also after an error.
    """
    store: dict[str, Any] = {}

    def hook(_m: nn.Module, args: tuple, output: Any = None) -> None:
        store["value"] = args[0] if use_input else output
        if stop:
            raise _StopForward

    handle = (module.register_forward_pre_hook(hook) if use_input
              else module.register_forward_hook(hook))
    try:
        yield store
    finally:
        handle.remove()


def run_until(model: nn.Module, x: torch.Tensor) -> Any:
    """``model(x)``, or ``None`` if a hook ended the pass early with :class:`_StopForward`."""
    try:
        return model(x)
    except _StopForward:
        return None


def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter or buffer (CPU if it has none)."""
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def iter_batches(data: Any, batch_size: int, *, name: str = "data") -> Iterator[tuple[torch.Tensor, Any]]:
    """``(inputs, labels or None)`` batches of a tensor or array, an ``(x, y)`` pair of tensors, a Dataset
    of ``(input, label)`` items or a DataLoader (used as is)."""
    from mlimaging.training._data import split_batch

    if isinstance(data, np.ndarray):
        data = torch.as_tensor(data, dtype=torch.float32)
    if isinstance(data, torch.Tensor):
        if data.ndim < 2 or len(data) == 0:
            raise ValueError(f"{name} must be a non-empty (N, C, *spatial) tensor, got shape "
                             f"{tuple(data.shape)}")
        for i in range(0, len(data), batch_size):
            yield data[i:i + batch_size], None
        return
    if (isinstance(data, (tuple, list)) and len(data) == 2
            and all(isinstance(t, torch.Tensor) for t in data)):
        x, y = data
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"{name} as an (x, y) pair needs as many labels as images, got "
                             f"{len(x)} images and {len(y)} labels")
        for i in range(0, len(x), batch_size):
            yield x[i:i + batch_size], y[i:i + batch_size]
        return
    if isinstance(data, DataLoader):
        loader = data
    elif (hasattr(data, "__len__") and hasattr(data, "__getitem__")
          and not isinstance(data, (str, bytes, np.ndarray))):
        if len(data) == 0:
            raise ValueError(f"{name} is empty; expected at least one sample")
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        raise ValueError(f"{name} must be a tensor, an (x, y) pair of tensors, a Dataset or a "
                         f"DataLoader, got {type(data).__name__}")
    for batch in loader:
        if isinstance(batch, torch.Tensor):
            yield batch, None
        else:
            x, y = split_batch(batch)
            yield x, (torch.as_tensor(y) if y is not None else None)


def embed(
    model: nn.Module,
    data: Any,
    *,
    layer: Any = "penultimate",
    batch_size: int = 256,
    flatten: bool = True,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    r"""Activations of ``layer`` for every sample of ``data``: one feature row per sample.

    A forward hook on ``layer`` records :math:`h_\ell(x_i)` for each input :math:`x_i`; the pass
    stops after the layer, so layers past it never run (the model in eval mode, no gradients).
    ``layer="penultimate"`` hooks the *input* of the last leaf module that has parameters (for
    LeNet, the 84 ReLU outputs that ``fc3`` reads) -- the features a linear read-out sees.

    Parameters
    ----------
    model
        Any ``nn.Module``; its train/eval mode and ``requires_grad`` flags are restored.
    data
        A ``(N, C, *spatial)`` tensor (no labels), an ``(x, y)`` pair of tensors, a Dataset of
        ``(input, label)`` items, or a DataLoader (its order is kept).
    layer
        A submodule, its dotted name (``"fc2"``, ``"features.3"``) or ``"penultimate"``.
    batch_size
        Samples per forward pass when ``data`` is a tensor or a Dataset.
    flatten
        Return ``(N, D)`` rows (default) or the activations' own shape ``(N, *shape)``.
    device
        Where to run; default the device of the model's parameters.

    Returns
    -------
    features : numpy.ndarray
        float32, ``(N, D)`` (or ``(N, *shape)`` with ``flatten=False``).
    labels : numpy.ndarray or None
        int64 ``(N,)`` labels (``None`` when ``data`` is a bare tensor).

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models import create_model
    >>> feats, labels = embed(create_model("lenet"), (torch.rand(5, 1, 28, 28), torch.arange(5)))
    >>> feats.shape, labels.tolist()
    ((5, 84), [0, 1, 2, 3, 4])
    >>> embed(create_model("lenet"), torch.rand(3, 1, 28, 28), layer="conv1", flatten=False)[0].shape
    (3, 6, 28, 28)
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(layer, str) and layer == "penultimate":
        _, module = _last_parametrised_leaf(model)
        use_input = True
    else:
        _, module = resolve_layer(model, layer)
        use_input = False
    dev = torch.device(device) if device is not None else model_device(model)
    feats: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    has_labels = None
    with explained(model), torch.no_grad(), capture(module, stop=True, use_input=use_input) as store:
        for x, y in iter_batches(data, batch_size):
            store.clear()
            run_until(model, x.to(dev))
            if "value" not in store:
                raise ValueError(f"layer {layer!r} did not run in the model's forward pass")
            value = store["value"]
            if isinstance(value, (tuple, list)):
                value = value[0]
            value = value.detach().float().cpu()
            feats.append((value.flatten(1) if flatten else value).numpy())
            if has_labels is None:
                has_labels = y is not None
            if has_labels:
                labels.append(torch.as_tensor(y).reshape(-1).cpu().numpy().astype(np.int64))
    features = np.concatenate(feats, axis=0).astype(np.float32, copy=False)
    return features, (np.concatenate(labels) if has_labels else None)


def _check_features(features: Any) -> np.ndarray:
    from mlimaging.utils import as_numpy

    arr = np.asarray(as_numpy(features), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"features must be a 2D (N, D) array with N >= 2 and D >= 1, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("features must be finite (found NaN or infinity)")
    return arr


def tsne(
    features: Any,
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    n_components: int = 2,
    metric: str = "euclidean",
    max_iter: int = 1000,
    backend: str = "auto",
) -> np.ndarray:
    r"""t-SNE map of feature rows (van der Maaten & Hinton 2008).

    High-dimensional affinities :math:`p_{j|i} \propto \exp(-\lVert x_i - x_j\rVert^2 / 2\sigma_i^2)`,
    with :math:`\sigma_i` set so that the perplexity :math:`2^{H(P_i)}` equals ``perplexity``,
    symmetrised :math:`p_{ij} = (p_{j|i} + p_{i|j}) / 2N`; low-dimensional affinities
    :math:`q_{ij} \propto (1 + \lVert y_i - y_j\rVert^2)^{-1}` (Student t); the map minimises
    :math:`\mathrm{KL}(P \,\Vert\, Q) = \sum_{i \ne j} p_{ij} \log (p_{ij} / q_{ij})`.

    Parameters
    ----------
    features
        ``(N, D)`` NumPy array or tensor, finite, ``N >= 2``.
    perplexity
        Effective number of neighbours; must be positive and below ``N``.
    seed
        Seeds the PCA initialisation's sign and the optimiser: a seeded call is repeatable.
    n_components
        Dimension of the map (2 or 3 for plots).
    metric
        Distance in feature space (``"euclidean"``, ``"cosine"``, ...).
    max_iter
        Gradient-descent iterations (at least 250).
    backend
        ``"sklearn"``, ``"opentsne"`` or ``"auto"``: openTSNE above 10,000 points when
        installed, else scikit-learn (with a warning above 10,000 points, where it is slow).

    Returns
    -------
    numpy.ndarray
        ``(N, n_components)`` float64 coordinates.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.concatenate([np.zeros((10, 5)), np.ones((10, 5))]) + 0.01 * np.arange(100).reshape(20, 5)
    >>> tsne(x, perplexity=5, max_iter=250).shape
    (20, 2)
    """
    arr = _check_features(features)
    n = arr.shape[0]
    if isinstance(perplexity, bool) or not isinstance(perplexity, (int, float, np.number)) \
            or not np.isfinite(perplexity) or not 0 < perplexity < n:
        raise ValueError(f"perplexity must be a number in (0, N) with N = {n} points, got {perplexity!r}")
    n_components = check_positive_int(n_components, "n_components")
    max_iter = check_positive_int(max_iter, "max_iter", 250)
    if backend not in ("auto", "sklearn", "opentsne"):
        raise ValueError(f"backend must be 'auto', 'sklearn' or 'opentsne', got {backend!r}")
    if backend in ("auto", "opentsne"):
        try:
            import openTSNE
        except ImportError:
            if backend == "opentsne":
                raise ImportError("backend='opentsne' needs openTSNE: pip install openTSNE") from None
            openTSNE = None
        if openTSNE is not None and (backend == "opentsne" or n > OPENTSNE_THRESHOLD):
            result = openTSNE.TSNE(n_components=n_components, perplexity=float(perplexity),
                                   metric=metric, n_iter=max_iter, random_state=seed,
                                   n_jobs=1).fit(arr)
            return np.asarray(result, dtype=np.float64)
        if n > OPENTSNE_THRESHOLD:
            warnings.warn(f"t-SNE of {n} points with scikit-learn is slow; install openTSNE for "
                          "the FFT-accelerated version", stacklevel=2)
    try:
        from sklearn.manifold import TSNE
    except ImportError:  # pragma: no cover - scikit-learn is a runtime dependency
        raise ImportError("tsne needs scikit-learn: pip install scikit-learn") from None
    iter_key = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    model = TSNE(n_components=n_components, perplexity=float(perplexity), metric=metric,
                 init="pca", random_state=seed, **{iter_key: max_iter})
    # scikit-learn's OpenMP threads default to every core; alongside torch's own pool that
    # oversubscribes the CPU (a 20-point map took 20 s instead of 0.1 s): use torch's count.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=max(1, torch.get_num_threads())):
        return np.asarray(model.fit_transform(arr), dtype=np.float64)


def plot_embedding(points: Any, labels: Any = None, *, classes: list[str] | None = None,
                   title: str | None = None, ax: Any = None) -> Any:
    """Scatter plot of a 2D map, coloured by class; returns the matplotlib ``Figure``.

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_embedding(np.random.default_rng(0).normal(size=(12, 2)), np.arange(12) % 3)
    >>> len(fig.axes[0].collections)
    3
    """
    import matplotlib
    from matplotlib.figure import Figure

    from mlimaging.utils import as_numpy

    pts = np.asarray(as_numpy(points), dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2:
        raise ValueError(f"points must be (N, 2), got shape {pts.shape}")
    if ax is None:
        fig = Figure(figsize=(5, 5))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    if labels is None:
        ax.scatter(pts[:, 0], pts[:, 1], s=6)
    else:
        lab = np.asarray(as_numpy(labels)).reshape(-1)
        if len(lab) != len(pts):
            raise ValueError(f"labels must have one entry per point ({len(pts)}), got {len(lab)}")
        cmap = matplotlib.colormaps["tab10" if len(np.unique(lab)) <= 10 else "tab20"]
        for k, value in enumerate(np.unique(lab)):
            sel = lab == value
            name = classes[int(value)] if classes is not None else str(value)
            ax.scatter(pts[sel, 0], pts[sel, 1], s=6, color=cmap(k % cmap.N), label=name)
        ax.legend(markerscale=2, fontsize="small", loc="best")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)
    return fig

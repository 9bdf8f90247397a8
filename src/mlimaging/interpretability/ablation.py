r"""Ablation of a trained model: which channels of a layer does the classifier rely on?

:func:`ablate_channels` zeroes one channel of a layer's output at a time (a forward hook) and
measures the test accuracy that is lost, the lesion studies of neuroscience applied to a
network (Zeiler & Fergus 2014 occlude inputs; Morcos et al. 2018 ablate units and show that a
network's reliance on single directions predicts how well it generalises).

References
----------
Morcos A. S., Barrett D. G. T., Rabinowitz N. C., Botvinick M. (2018). On the importance of
single directions for generalization. ICLR. arXiv:1803.06959.

Zeiler M. D., Fergus R. (2014). Visualizing and understanding convolutional networks. ECCV.
arXiv:1311.2901.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mlimaging.interpretability._common import (
    check_positive_int,
    explained,
    resolve_layer,
)
from mlimaging.interpretability.embeddings import (
    iter_batches,
    model_device,
)

__all__ = ["ablate_channels"]


def ablate_channels(
    model: nn.Module,
    data: Any,
    *,
    layer: Any,
    channels: Sequence[int] | None = None,
    batch_size: int = 256,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    r"""Accuracy drop when each channel of ``layer`` is zeroed, one channel at a time.

    For channel :math:`c` of the layer's output :math:`h` (dimension 1), a forward hook sets
    :math:`h_{:, c} = 0` and the accuracy :math:`a_c` on ``data`` is measured;

    .. math:: \Delta_c = a - a_c,

    where :math:`a` is the accuracy of the intact model (positive: the channel helped).
    Predictions are the argmax over dimension 1 of the model's ``(B, K)`` output.

    Parameters
    ----------
    model
        A classifier (mode and ``requires_grad`` flags restored; the hook is removed).
    data
        An ``(x, y)`` pair of tensors, a Dataset of ``(input, label)`` items or a DataLoader.
    layer
        Module or dotted name (``"conv2"``, ``"features.3"``).
    channels
        Channels to ablate; default all of them.
    batch_size
        Samples per forward pass (tensors and Datasets).
    device
        Where to run; default the device of the model's parameters.

    Returns
    -------
    dict
        ``layer`` (dotted name), ``channels`` (int64 array ``(C,)``), ``baseline_accuracy``
        (float), ``accuracy`` and ``drop`` (float64 arrays ``(C,)``), ``n`` (samples).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.eye(2)); _ = net[1].weight.copy_(torch.eye(2))
    >>> x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 2.0]])
    >>> res = ablate_channels(net, (x, torch.tensor([0, 1, 0, 1])), layer="0")
    >>> res["baseline_accuracy"], res["drop"].tolist()
    (1.0, [0.0, 0.5])
    """
    batch_size = check_positive_int(batch_size, "batch_size")
    name, module = resolve_layer(model, layer)
    wanted = None
    if channels is not None:
        wanted = [check_positive_int(c, "channels", 0) for c in channels]
        if not wanted:
            raise ValueError("channels must name at least one channel (or be None for all)")
    dev = torch.device(device) if device is not None else model_device(model)
    state: dict[str, Any] = {"channel": None, "width": None}

    def hook(_m: nn.Module, _inp: tuple, out: Any) -> Any:
        if not isinstance(out, torch.Tensor) or out.ndim < 2:
            raise ValueError(f"layer {name!r} must output a (B, C, ...) tensor to ablate channels")
        state["width"] = out.shape[1]
        c = state["channel"]
        if c is None:
            return None
        out = out.clone()
        out[:, c] = 0
        return out

    correct_base = 0
    correct: np.ndarray | None = None
    n = 0
    handle = module.register_forward_hook(hook)
    try:
        with explained(model), torch.no_grad():
            for x, y in iter_batches(data, batch_size):
                if y is None:
                    raise ValueError("data must carry labels: an (x, y) pair, a Dataset of "
                                     "(input, label) items or a DataLoader of such batches")
                x, y = x.to(dev), torch.as_tensor(y).to(dev).reshape(-1).long()
                state["channel"] = None
                out = model(x)
                if not isinstance(out, torch.Tensor) or out.ndim != 2 or len(out) != len(y):
                    raise ValueError("ablate_channels needs a classifier returning (B, K) scores "
                                     f"with one label per sample, got output "
                                     f"{getattr(out, 'shape', type(out))} and {len(y)} labels")
                if state["width"] is None:
                    raise ValueError(f"layer {name!r} did not run in the model's forward pass")
                if correct is None:
                    if wanted is None:
                        wanted = list(range(state["width"]))
                    bad = [c for c in wanted if c >= state["width"]]
                    if bad:
                        raise ValueError(f"channels must be in [0, {state['width']}) for layer "
                                         f"{name!r}, got {bad}")
                    correct = np.zeros(len(wanted), dtype=np.int64)
                correct_base += int((out.argmax(1) == y).sum())
                for i, c in enumerate(wanted):
                    state["channel"] = c
                    correct[i] += int((model(x).argmax(1) == y).sum())
                n += len(y)
    finally:
        handle.remove()
    if n == 0 or correct is None:
        raise ValueError("data is empty; expected at least one labelled sample")
    base = correct_base / n
    acc = correct / n
    return {
        "layer": name,
        "channels": np.asarray(wanted, dtype=np.int64),
        "baseline_accuracy": float(base),
        "accuracy": acc.astype(np.float64),
        "drop": (base - acc).astype(np.float64),
        "n": n,
    }

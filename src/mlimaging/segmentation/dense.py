r"""Dense segmentation networks: build one by name, train it, predict a label map.

- :func:`build_segmenter`: a same-size dense network by registry name (``unet``, ``segnet``,
  ``deeplab``, ``fcn``, ``multiscale``), 2D or 3D; :class:`SameSizeMultiScale` makes the
  two-pathway network's output the size of its input.
- :func:`train_segmenter`: :func:`mlimaging.training.fit` with Adam and the Dice +
  cross-entropy loss.
- :func:`predict_labels`: z-scored input, sliding-window inference, argmax.

Shared by the ``segmentation`` experiment, ``mlimaging train segmenter`` / ``predict-seg``
and ``benchmarks/segmentation.py``; training crops come from
:class:`mlimaging.segmentation.samples.SegmentationSamples`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from mlimaging.data.preprocessing import zscore

__all__ = ["DENSE_MODELS", "SameSizeMultiScale", "build_segmenter", "predict_labels", "train_segmenter"]

#: Registry names that :func:`build_segmenter` turns into same-size dense networks.
DENSE_MODELS = ("unet", "segnet", "deeplab", "fcn", "multiscale")


class SameSizeMultiScale(nn.Module):
    r"""The two-pathway :class:`~mlimaging.models.MultiScaleCNN` with output the size of its input.

    The input is padded (edge values repeated) by :math:`Lf` on each side, plus up to
    :math:`f - 1` voxels at the end of each axis so that its size is divisible by :math:`f`;
    output :math:`j` of the network is centred on padded voxel :math:`j + Lf`, i.e. on
    input voxel :math:`j`, and the extra voxels are cropped.

    Examples
    --------
    >>> from mlimaging.models import create_model
    >>> net = SameSizeMultiScale(create_model("multiscale", num_classes=2))
    >>> net(torch.zeros(1, 1, 40, 41)).shape
    torch.Size([1, 2, 40, 41])
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, m = self.net.factor, self.net.num_layers * self.net.factor
        size = tuple(x.shape[2:])
        pad: list[int] = []
        for s in reversed(size):
            pad += [m, m + (-s) % f]
        out = self.net(F.pad(x, pad, mode="replicate"))
        return out[(..., *[slice(0, s) for s in size])]


def build_segmenter(name: str, *, num_classes: int, spatial_dims: int = 2, in_channels: int = 1,
                    seed: int | None = None, **kwargs: Any) -> nn.Module:
    """A registered dense network whose logits have the input's spatial size.

    ``fcn`` is built with ``pad=True`` (reflect padding) and ``multiscale`` is wrapped in
    :class:`SameSizeMultiScale`; ``unet``, ``segnet`` and ``deeplab`` are used as they are.

    Raises
    ------
    ValueError
        If ``name`` is not one of :data:`DENSE_MODELS` (``patch_cnn`` classifies patches:
        use ``fcn``).

    Examples
    --------
    >>> build_segmenter("fcn", num_classes=3)(torch.zeros(1, 1, 20, 20)).shape
    torch.Size([1, 3, 20, 20])
    """
    from mlimaging.models import create_model

    if name not in DENSE_MODELS:
        raise ValueError(f"model must be one of {list(DENSE_MODELS)} (dense networks), got {name!r}")
    if name == "fcn":
        kwargs.setdefault("pad", True)
    net = create_model(name, num_classes=num_classes, spatial_dims=spatial_dims,
                       in_channels=in_channels, seed=seed, **kwargs)
    return SameSizeMultiScale(net) if name == "multiscale" else net


def train_segmenter(model: nn.Module, train_data: Dataset, val_data: Dataset | None = None, *,
                    epochs: int, batch_size: int = 8, lr: float = 3e-3, seed: int = 0,
                    loss: Any = None, checkpoint_dir: Any = None, resume: bool = False,
                    progress: bool = False, run: Any = None) -> Any:
    r"""Train a dense network with :func:`~mlimaging.training.fit`: Adam and, by default,
    :math:`\mathcal{L} = \mathcal{L}_{\text{Dice}} + \mathcal{L}_{\text{CE}}`
    (:class:`~mlimaging.segmentation.DiceCELoss`). Returns the ``History``."""
    from mlimaging.segmentation import DiceCELoss
    from mlimaging.training import fit

    return fit(model, train_data, val_data, loss=loss if loss is not None else DiceCELoss(),
               optimizer=lambda p: torch.optim.Adam(p, lr=lr), epochs=epochs, batch_size=batch_size,
               seed=seed, metrics=(), checkpoint_dir=checkpoint_dir, resume=resume, progress=progress, run=run)


def predict_labels(model: nn.Module, image: Any, *, roi_size: Sequence[int] | None = None,
                   overlap: float = 0.25) -> np.ndarray:
    """Label map (int64 NumPy, the image's spatial shape) of a dense network.

    ``image`` is ``(*spatial)`` or ``(C, *spatial)``; it is z-scored, then the model runs on
    the whole image or, with ``roi_size``, by :func:`~mlimaging.segmentation.sliding_window_inference`
    (Gaussian blending), in eval mode without gradients; labels are the argmax over classes.
    """
    from mlimaging.segmentation import sliding_window_inference

    x = zscore(image)
    spatial_dims = len(roi_size) if roi_size is not None else getattr(model, "spatial_dims", None)
    if spatial_dims is None:
        spatial_dims = getattr(getattr(model, "net", None), "spatial_dims", x.ndim)
    if x.ndim == spatial_dims:
        x = x[None]
    model.eval()
    with torch.no_grad():
        if roi_size is None:
            logits = model(x[None])
        else:
            logits = sliding_window_inference(model, x[None], roi_size=tuple(roi_size), overlap=overlap)
    return logits.argmax(1)[0].numpy().astype(np.int64)

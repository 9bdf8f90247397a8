r"""Segmentation pipeline: the pieces shared by the ``segmentation`` experiment, the
``mlimaging train segmenter`` / ``predict-seg`` commands and ``benchmarks/segmentation.py``.

- :func:`zscore`: per-image normalisation :math:`\tilde I = (I - \bar I) / \sigma_I`.
- :func:`build_segmenter`: a same-size dense network by registry name (``unet``, ``segnet``,
  ``deeplab``, ``fcn``, ``multiscale``), 2D or 3D.
- :class:`SegmentationSamples`: random crops with foreground oversampling for training.
- :func:`train_segmenter` (over :func:`mlimaging.training.fit`, Dice + cross-entropy) and
  :func:`predict_labels` (sliding-window inference, argmax).
- :func:`patch_dataset`, :func:`patch_predict`: the classical patch-classifier pipeline.
- :func:`nominal_intensities`, :func:`threshold_labels`, :func:`otsu_labels`,
  :func:`region_growing_labels`: classical label maps from known structure intensities.

Examples
--------
>>> import numpy as np
>>> from mlimaging.data import make_phantom
>>> image, labels = make_phantom((64, 64), seed=0)
>>> lut = nominal_intensities((64, 64), n_structures=3)
>>> [round(v, 2) for v in lut]
[0.0, 0.3, 0.7, 1.0]
>>> bool(np.array_equal(threshold_labels(image, lut), labels))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from mlimaging.utils import as_numpy

__all__ = [
    "BASE_KNOBS",
    "DENSE_MODELS",
    "SameSizeMultiScale",
    "SegmentationSamples",
    "build_segmenter",
    "nominal_intensities",
    "otsu_labels",
    "patch_dataset",
    "patch_predict",
    "predict_labels",
    "region_growing_labels",
    "threshold_labels",
    "train_segmenter",
    "zscore",
]

#: The base test set: noise, intensity inhomogeneity, partial volume and shape variability.
BASE_KNOBS: dict[str, float] = {"noise": 0.08, "bias_field": 0.3, "partial_volume": 1.0, "variability": 0.5}
#: Registry names that :func:`build_segmenter` turns into same-size dense networks.
DENSE_MODELS = ("unet", "segnet", "deeplab", "fcn", "multiscale")

# ----------------------------------------------------------------------------- networks
def zscore(image: Any) -> torch.Tensor:
    r"""Per-image z-score :math:`(I - \bar I) / \sigma_I` (all voxels and channels together).

    Accepts a NumPy array or tensor of any shape and returns a float32 tensor; a constant
    image gives zeros.

    Examples
    --------
    >>> zscore(torch.tensor([1.0, 2.0, 3.0]))
    tensor([-1.2247,  0.0000,  1.2247])
    """
    x = torch.as_tensor(as_numpy(image) if not isinstance(image, torch.Tensor) else image).float()
    std = x.std(unbiased=False)
    return (x - x.mean()) / std if float(std) > 0 else torch.zeros_like(x)


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


class SegmentationSamples(Dataset):
    """``(zscore(image), mask)`` pairs of a segmentation dataset, optionally cropped to ``roi_size``.

    Crops are taken at a random position (from torch's global generator, which
    :func:`~mlimaging.training.fit` seeds) or, with ``center=True``, in the middle; axes
    shorter than the window are padded (image 0 after z-scoring, i.e. the mean; mask 0).
    With probability ``foreground`` a random crop is instead centred (as far as the image
    allows) on a random voxel of one foreground class drawn uniformly among those present,
    so that small structures appear in enough crops: the oversampling of nnU-Net
    (Isensee et al. 2021, Nature Methods 18:203-211).

    Examples
    --------
    >>> from mlimaging.data import PhantomDataset
    >>> image, mask = SegmentationSamples(PhantomDataset(2, (32, 40)), roi_size=(16, 48), center=True)[0]
    >>> tuple(image.shape), tuple(mask.shape)
    ((1, 16, 48), (16, 48))
    """

    def __init__(self, base: Dataset, *, roi_size: Sequence[int] | None = None, center: bool = False,
                 foreground: float = 0.0) -> None:
        if not 0.0 <= float(foreground) <= 1.0:
            raise ValueError(f"foreground must be a probability in [0, 1], got {foreground!r}")
        self.base = base
        self.roi_size = None if roi_size is None else tuple(int(r) for r in roi_size)
        self.center = bool(center)
        self.foreground = float(foreground)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.base[i]
        image = zscore(image)
        mask = torch.as_tensor(mask).long()
        if self.roi_size is None:
            return image, mask
        if len(self.roi_size) != mask.ndim:
            raise ValueError(f"roi_size must have {mask.ndim} values (one per spatial axis), got {self.roi_size}")
        pad: list[int] = []
        for s, r in zip(reversed(mask.shape), reversed(self.roi_size), strict=True):
            pad += [0, max(r - s, 0)]
        if any(pad):
            image, mask = F.pad(image, pad), F.pad(mask, pad)
        classes = torch.unique(mask)
        classes = classes[classes > 0]
        if self.center:
            start = [(s - r) // 2 for s, r in zip(mask.shape, self.roi_size, strict=True)]
        elif self.foreground > 0 and len(classes) and float(torch.rand(())) < self.foreground:
            k = classes[int(torch.randint(0, len(classes), ()))]
            voxels = torch.nonzero(mask == k)
            centre = voxels[int(torch.randint(0, len(voxels), ()))].tolist()
            start = [min(max(c - r // 2, 0), s - r) for c, s, r in zip(centre, mask.shape, self.roi_size, strict=True)]
        else:
            start = [int(torch.randint(0, s - r + 1, ())) for s, r in zip(mask.shape, self.roi_size, strict=True)]
        window = tuple(slice(a, a + r) for a, r in zip(start, self.roi_size, strict=True))
        return image[(slice(None), *window)], mask[window]


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


# ----------------------------------------------------------------------------- patch CNN
def _patch_windows(image: Any) -> torch.Tensor:
    """The 17 x 17 patch centred on each pixel of a z-scored 2D image, reflect-padded by 8:
    ``(H * W, 17, 17)`` in C order."""
    from mlimaging.models.patch_cnn import HALF, PATCH_SIZE

    x = F.pad(zscore(image).reshape(1, 1, *as_numpy(image).shape[-2:]), (HALF,) * 4, mode="reflect")
    return x[0, 0].unfold(0, PATCH_SIZE, 1).unfold(1, PATCH_SIZE, 1).reshape(-1, PATCH_SIZE, PATCH_SIZE)


def patch_dataset(images: Sequence[Any], labels: Sequence[Any], *, per_class: int, seed: int) -> TensorDataset:
    """17 x 17 patches of z-scored 2D images (reflect-padded by 8) and their centre labels.

    Up to ``per_class`` centres per class and image, drawn without replacement by
    ``np.random.default_rng(seed)``, so that small structures are not drowned by background.
    """
    rng = np.random.default_rng(seed)
    patches, targets = [], []
    for image, lab in zip(images, labels, strict=True):
        lab = as_numpy(lab).reshape(-1)
        windows = _patch_windows(image)
        for k in np.unique(lab):
            idx = np.flatnonzero(lab == k)
            pick = rng.choice(idx, size=min(per_class, idx.size), replace=False)
            patches.append(windows[torch.from_numpy(pick)])
            targets.append(torch.full((pick.size,), int(k), dtype=torch.long))
    return TensorDataset(torch.cat(patches)[:, None].contiguous(), torch.cat(targets))


def patch_predict(model: nn.Module, image: Any, *, batch_size: int = 1024) -> np.ndarray:
    """Label map of a 2D image by a patch classifier, patch by patch (batches of patches).

    Each pixel is classified from the 17 x 17 patch centred on it in the z-scored image,
    reflect-padded by 8: what :meth:`~mlimaging.models.FCN.from_patch_cnn` with
    ``pad=True`` computes in one dense pass.
    """
    shape = as_numpy(image).shape[-2:]
    windows = _patch_windows(image)[:, None]
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(windows[i:i + batch_size]).argmax(1) for i in range(0, len(windows), batch_size)])
    return out.reshape(shape).numpy().astype(np.int64)


# ----------------------------------------------------------------------------- classical
def nominal_intensities(shape: Sequence[int], *, n_structures: int = 3, contrast: float = 1.0) -> list[float]:
    """Clean intensity of each label (background first) of :func:`~mlimaging.data.make_phantom`:
    what a user knows of the imaging protocol."""
    from mlimaging.data import make_phantom

    image, labels = make_phantom(tuple(shape), seed=0, n_structures=n_structures, contrast=contrast)
    return [float(image[labels == k].mean()) for k in range(n_structures + 1)]


def _intervals_to_labels(intervals: np.ndarray, intensities: Sequence[float]) -> np.ndarray:
    order = np.argsort(np.asarray(intensities))
    return order[intervals].astype(np.int64)


def threshold_labels(image: Any, intensities: Sequence[float]) -> np.ndarray:
    """Labels by fixed thresholds halfway between consecutive nominal intensities."""
    from mlimaging.segmentation import multi_threshold

    lut = np.sort(np.asarray(intensities, dtype=np.float64))
    return _intervals_to_labels(multi_threshold(image, (lut[:-1] + lut[1:]) / 2), intensities)


def otsu_labels(image: Any, intensities: Sequence[float], *, bins: int = 256) -> np.ndarray:
    """Labels by the multi-level Otsu thresholds of the image (one class per structure)."""
    from mlimaging.segmentation import multi_otsu_thresholds, multi_threshold

    thresholds = multi_otsu_thresholds(image, len(intensities), bins=bins)
    return _intervals_to_labels(multi_threshold(image, thresholds), intensities)


def region_growing_labels(image: Any, reference: Any, intensities: Sequence[float]) -> np.ndarray:
    r"""One region grown per structure from one seed, painted in label order.

    The seed of structure :math:`k` is its voxel deepest inside it (largest distance to
    its border, the reference gives the anatomy a user would click on) among those within
    the bounds :math:`I_k \pm \tfrac12 \min_{j \ne k} |I_k - I_j|`; a structure with no
    voxel in bounds stays empty.
    """
    from mlimaging.segmentation import region_growing

    image, reference = as_numpy(image), as_numpy(reference)
    lut = np.asarray(intensities, dtype=np.float64)
    out = np.zeros(reference.shape, dtype=np.int64)
    for k in range(1, len(lut)):
        half = 0.5 * np.min(np.abs(np.delete(lut, k) - lut[k]))
        lower, upper = float(lut[k] - half), float(lut[k] + half)
        candidates = (reference == k) & (image >= np.float32(lower)) & (image <= np.float32(upper))
        if not candidates.any():
            continue
        depth = ndimage.distance_transform_edt(reference == k)
        seed = np.unravel_index(int(np.argmax(np.where(candidates, depth, -1.0))), reference.shape)
        out[region_growing(image, tuple(int(s) for s in seed), lower=lower, upper=upper)] = k
    return out

r"""A two-stage baseline: class-agnostic proposals, then a classifier on each crop.

Stage 1 proposes boxes without knowing any class: the connected components of the thresholded
image (pixels above ``threshold``, 8-connectivity after a small dilation that joins broken
strokes; :func:`scipy.ndimage.label` and :func:`scipy.ndimage.find_objects`), each boxed tightly
around its ink. Stage 2 cuts each proposal out (a square around the box, as MNIST frames a
digit: the ink's longer side fills 20 of 28 pixels), masks out the other components, resizes it
to 28 x 28 and classifies it with a small CNN (LeNet-5, LeCun et al. 1998) trained on single
digits.

This is the course's answer to "scale YOLO to 1000 classes": YOLO's output grows as
:math:`S^2 (5B + C)` and every cell pays for every class, while here the proposals do not
depend on :math:`C` and only the classifier's last layer grows, once per object
(:func:`output_size_and_time`). R-CNN (Girshick et al. 2014) is the classic of the family, with
selective search as its class-agnostic proposal stage.

The output of :class:`TwoStageDetector` has the format of :func:`~mlimaging.detection.decode`:
one dict per image with ``boxes`` (xyxy pixels), ``scores`` and ``labels``.

References
----------
Girshick R., Donahue J., Darrell T., Malik J. (2014). Rich feature hierarchies for accurate
object detection and semantic segmentation. CVPR. arXiv:1311.2524.

LeCun Y., Bottou L., Bengio Y., Haffner P. (1998). Gradient-based learning applied to document
recognition. Proc. IEEE 86(11). DOI 10.1109/5.726791.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.calc import yolo_output_shape

__all__ = ["TwoStageDetector", "output_size_and_time", "propose", "train_two_stage"]

#: MNIST frames a digit's ink (longer side 20 px) in a 28 x 28 image.
_MNIST_FRAME = 28 / 20


def _check_image(image: Any) -> np.ndarray:
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"image must have shape (H, W) or (1, H, W), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise ValueError("image must hold finite numbers")
    return arr.astype(np.float32, copy=False)


def _components(arr: np.ndarray, threshold: float, dilation: int) -> tuple[np.ndarray, list[Any]]:
    from scipy import ndimage

    ink = arr > threshold
    grown = ndimage.binary_dilation(ink, iterations=dilation) if dilation > 0 else ink
    labels, _ = ndimage.label(grown, structure=np.ones((3, 3), bool))
    labels[~ink] = 0  # keep the ink of each component, not the dilation
    return labels, ndimage.find_objects(labels)


def propose(
    image: Any, *, threshold: float = 0.2, dilation: int = 1, min_size: int = 4
) -> torch.Tensor:
    r"""Class-agnostic box proposals: connected components of the thresholded image.

    The ink :math:`\{p : I(p) > t\}` is dilated ``dilation`` times by a 3 x 3 square (so that
    strokes a pixel apart join), labelled by 8-connectivity, and each component gives the tight
    box of its ink pixels :math:`[c_0, c_1 + 1) \times [r_0, r_1 + 1)` (the box convention of
    :mod:`mlimaging.detection.boxes`). Components whose longer side is below ``min_size``
    pixels are dropped as specks.

    Parameters
    ----------
    image : array or tensor
        ``(H, W)`` or ``(1, H, W)``.
    threshold : float
        Ink threshold :math:`t` (``detection_canvases`` boxes the ink above 0.2).
    dilation : int
        Dilation steps before labelling (0: none).
    min_size : int
        Smallest longer side of a kept box, in pixels.

    Returns
    -------
    torch.Tensor
        float32 ``(K, 4)`` xyxy pixels, in the order of the component labels (row-major scan).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((12, 12)); img[1:4, 2:8] = 1; img[7:11, 6:9] = 1; img[0, 11] = 1
    >>> propose(img).tolist()  # the speck at (0, 11) is dropped
    [[2.0, 1.0, 8.0, 4.0], [6.0, 7.0, 9.0, 11.0]]
    """
    arr = _check_image(image)
    boxes = [b for b, _ in _proposals(arr, threshold, dilation, min_size)[0]]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def _proposals(
    arr: np.ndarray, threshold: float, dilation: int, min_size: int
) -> tuple[list[Any], np.ndarray]:
    labels, slices = _components(arr, threshold, dilation)
    out = []
    for k, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        rows, cols = sl
        if max(rows.stop - rows.start, cols.stop - cols.start) < min_size:
            continue
        out.append(([float(cols.start), float(rows.start), float(cols.stop), float(rows.stop)], k))
    return out, labels


def _crop(arr: np.ndarray, mask: np.ndarray, box: Sequence[float], size: int) -> torch.Tensor:
    """The square around ``box`` (side = longer side x 28/20), masked, resized to ``size``."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * _MNIST_FRAME
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(side / 2, 1.0)
    r0, r1 = int(np.floor(cy - half)), int(np.ceil(cy + half))
    c0, c1 = int(np.floor(cx - half)), int(np.ceil(cx + half))
    h, w = arr.shape
    patch = np.zeros((r1 - r0, c1 - c0), np.float32)
    sr0, sr1, sc0, sc1 = max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    patch[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = (arr * mask)[sr0:sr1, sc0:sc1]
    t = torch.from_numpy(patch)[None, None]
    return F.interpolate(
        t, size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )[0]


class TwoStageDetector(nn.Module):
    r"""Connected-component proposals + a crop classifier (see the module docstring).

    For each proposal box :math:`b` with crop :math:`x_b` the classifier gives
    :math:`p(c \mid x_b) = \operatorname{softmax}(f(x_b))_c`; the detector reports the box under
    its ``top_k`` most probable classes with score :math:`p(c \mid x_b)` (scores below
    ``min_score`` are dropped). Proposals do not overlap by construction (distinct
    components), so no NMS is needed.

    Parameters
    ----------
    classifier : nn.Module
        ``(K, 1, crop_size, crop_size) -> (K, C)`` logits (default: an untrained LeNet-5 with
        ``num_classes`` outputs; train it with :func:`train_two_stage`).
    num_classes : int
        :math:`C` of the default classifier.
    threshold, dilation, min_size
        Of :func:`propose`.
    crop_size : int
        Side of the classifier's input (28: MNIST).
    top_k : int
        Classes reported per proposal (more than one raises recall at low scores, which can
        only raise average precision).
    min_score : float
        Smallest reported score.

    Examples
    --------
    >>> import torch
    >>> det = TwoStageDetector(num_classes=10).eval()
    >>> img = torch.zeros(1, 1, 48, 48); img[0, 0, 10:30, 12:24] = 1
    >>> out = det(img)
    >>> out[0]["boxes"][0].tolist(), len(out[0]["labels"])
    ([12.0, 10.0, 24.0, 30.0], 3)
    """

    def __init__(
        self,
        classifier: nn.Module | None = None,
        *,
        num_classes: int = 10,
        threshold: float = 0.2,
        dilation: int = 1,
        min_size: int = 4,
        crop_size: int = 28,
        top_k: int = 3,
        min_score: float = 0.01,
    ) -> None:
        super().__init__()
        if classifier is None:
            from mlimaging.models import create_model

            classifier = create_model("lenet", num_classes=num_classes)
        if not isinstance(classifier, nn.Module):
            raise ValueError(f"classifier must be an nn.Module, got {type(classifier).__name__}")
        for name, v, lo in (
            ("dilation", dilation, 0),
            ("min_size", min_size, 1),
            ("crop_size", crop_size, 4),
            ("top_k", top_k, 1),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
        for name, v in (("threshold", threshold), ("min_score", min_score)):
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        self.classifier = classifier
        self.threshold, self.dilation, self.min_size = float(threshold), dilation, min_size
        self.crop_size, self.top_k, self.min_score = crop_size, top_k, float(min_score)

    def crops(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposal boxes ``(K, 4)`` of one image and their crops ``(K, 1, crop_size, crop_size)``."""
        arr = _check_image(image)
        props, labels = _proposals(arr, self.threshold, self.dilation, self.min_size)
        boxes = torch.tensor([b for b, _ in props], dtype=torch.float32).reshape(-1, 4)
        if not props:
            return boxes, torch.zeros(0, 1, self.crop_size, self.crop_size)
        crops = torch.stack(
            [_crop(arr, (labels == k).astype(np.float32), b, self.crop_size) for b, k in props]
        )
        return boxes, crops

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Detections of images ``(N, 1, H, W)``: one dict (``boxes``, ``scores``, ``labels``) each."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
            raise ValueError(
                f"images must be a tensor (N, 1, H, W), got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}"
            )
        per_image = [self.crops(img) for img in images]
        counts = [len(b) for b, _ in per_image]
        crops = torch.cat([c for _, c in per_image]) if sum(counts) else None
        probs = torch.softmax(self.classifier(crops), dim=1) if crops is not None else None
        out, start = [], 0
        for (boxes, _), k in zip(per_image, counts, strict=True):
            if k == 0:
                out.append(
                    {
                        "boxes": torch.zeros(0, 4),
                        "scores": torch.zeros(0),
                        "labels": torch.zeros(0, dtype=torch.int64),
                    }
                )
                continue
            p = probs[start : start + k]
            start += k
            top = p.topk(min(self.top_k, p.shape[1]), dim=1)
            box_idx = torch.arange(k).repeat_interleave(top.indices.shape[1])
            scores, labels = top.values.reshape(-1), top.indices.reshape(-1)
            keep = scores >= self.min_score
            order = torch.argsort(scores[keep], descending=True, stable=True)
            out.append(
                {
                    "boxes": boxes[box_idx[keep]][order],
                    "scores": scores[keep][order].float(),
                    "labels": labels[keep][order].long(),
                }
            )
        return out


def _framed_digits(
    source: str,
    split: str,
    *,
    limit: int | None,
    scale: tuple[float, float],
    seed: int,
    threshold: float,
    crop_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits of ``source`` rescaled by a random factor in ``scale`` and framed as proposals are."""
    from mlimaging.data import load_dataset

    ds = load_dataset(source, split=split)
    g = np.random.default_rng(seed)
    order = (
        np.arange(len(ds)) if limit is None else g.permutation(len(ds))[:limit]
    )  # the split is sorted by class
    xs, ys = [], []
    for i in order.tolist():
        img, y = ds[i]
        size = max(4, round(img.shape[-1] * float(g.uniform(*scale))))
        arr = F.interpolate(
            img[None].float(), size=(size, size), mode="bilinear", align_corners=False
        )[0, 0].numpy()
        r, c = np.nonzero(arr > threshold)
        if len(r) == 0:
            continue
        box = [float(c.min()), float(r.min()), float(c.max() + 1), float(r.max() + 1)]
        xs.append(_crop(arr, np.ones_like(arr), box, crop_size))
        ys.append(int(y))
    return torch.stack(xs), torch.tensor(ys)


def train_two_stage(
    *,
    source: str = "mnist5k",
    num_classes: int = 10,
    epochs: int = 8,
    batch_size: int = 64,
    lr: float = 2e-3,
    scale: tuple[float, float] = (0.8, 1.5),
    n_train: int | None = None,
    seed: int = 0,
    progress: bool = False,
    **fit_kwargs: Any,
) -> tuple[TwoStageDetector, Any]:
    r"""Train the crop classifier of a :class:`TwoStageDetector` on single digits through ``fit``.

    Each training digit of ``source`` (split ``"train"``) is rescaled by a random factor in
    ``scale`` (the range of :func:`~mlimaging.detection.detection_canvases`) and framed as the
    detector frames a proposal (the ink box's longer side to 20 of 28 px), so the classifier
    sees crops like those it will get; LeNet-5 is trained with Adam on the cross-entropy
    :math:`-\log p(y \mid x)` and validated on the ``"val"`` split, framed the same way.

    Parameters
    ----------
    source : str
        A single-channel digit dataset of :func:`mlimaging.data.load_dataset`.
    num_classes : int
        Classes of the classifier.
    epochs, batch_size, lr, seed, progress
        Of :func:`~mlimaging.training.fit` (``seed`` also seeds the weights and the rescaling).
    scale : (float, float)
        Range of the random rescaling.
    n_train : int, optional
        Use only ``n_train`` training (and validation) digits, drawn at random (``seed``).
    **fit_kwargs
        Further options of :func:`~mlimaging.training.fit`.

    Returns
    -------
    (TwoStageDetector, History)
        The detector in eval mode and fit's history (``val_accuracy`` per epoch).

    Examples
    --------
    >>> det, hist = train_two_stage(epochs=1, n_train=128)
    >>> len(hist), det.classifier.num_classes
    (1, 10)
    """
    from torch.utils.data import TensorDataset

    from mlimaging.models import create_model
    from mlimaging.training import fit

    if n_train is not None and (
        isinstance(n_train, bool) or not isinstance(n_train, int) or n_train < 1
    ):
        raise ValueError(f"n_train must be a positive int or None, got {n_train!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        det = TwoStageDetector(create_model("lenet", num_classes=num_classes))
    kw = dict(limit=n_train, scale=scale, threshold=det.threshold, crop_size=det.crop_size)
    train = TensorDataset(*_framed_digits(source, "train", seed=seed, **kw))
    val = TensorDataset(*_framed_digits(source, "val", seed=seed + 1, **kw))
    hist = fit(
        det.classifier,
        train,
        val,
        loss=nn.CrossEntropyLoss(),
        optimizer=lambda p: torch.optim.Adam(p, lr=lr),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        **fit_kwargs,
    )
    return det.eval(), hist


def _cpu_time(fn: Any, images: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn(images)
        best = min(best, time.process_time() - t0)
    return best


def output_size_and_time(
    num_classes: Sequence[int] = (10, 100, 1000),
    *,
    images: torch.Tensor | None = None,
    grid: int = 7,
    boxes_per_cell: int = 2,
    backbone: str = "small",
    repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    r"""Output size and inference time of the one-stage and the two-stage detector as :math:`C` grows.

    One-stage (YOLO): the output of an image has :math:`S^2 (5B + C)` numbers, whatever it
    holds. Two-stage: :math:`K (4 + C)` numbers for :math:`K` proposals (a box and :math:`C`
    class scores each; :math:`K` is the mean number of proposals per image of ``images``). Both
    are timed untrained (the time does not depend on the weights) on ``images``, in process CPU
    seconds per image (the best of ``repeats`` runs), with the threads torch is set to use.

    Parameters
    ----------
    num_classes : sequence of int
        The class counts :math:`C` to compare.
    images : torch.Tensor, optional
        ``(N, 1, H, W)``; default 16 digit canvases of 96 px (``detection_canvases``, test split).
    grid, boxes_per_cell, backbone
        The YOLO's :math:`S`, :math:`B` and backbone.
    repeats : int
        Timing runs per model (the fastest counts).
    seed : int
        Seed of the default canvases and of the weights.

    Returns
    -------
    list of dict
        One row per (C, model): ``num_classes``, ``model`` (``"one-stage"`` / ``"two-stage"``),
        ``output_size`` (numbers per image), ``parameters``, ``ms_per_image``.

    Examples
    --------
    >>> import torch
    >>> imgs = torch.zeros(2, 1, 48, 48); imgs[:, :, 8:30, 10:22] = 1
    >>> rows = output_size_and_time((10, 1000), images=imgs, grid=3, backbone="tiny", repeats=1)
    >>> [(r["num_classes"], r["model"], r["output_size"]) for r in rows]
    [(10, 'one-stage', 180), (10, 'two-stage', 14.0), (1000, 'one-stage', 9090), (1000, 'two-stage', 1004.0)]
    """
    from mlimaging.detection.yolo import YOLO

    if images is None:
        from mlimaging.detection.data import detection_canvases

        images = detection_canvases(n=16, seed=seed, split="test").images
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
        raise ValueError("images must be a tensor (N, 1, H, W)")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    rows: list[dict[str, Any]] = []
    n = images.shape[0]
    for c in num_classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
            raise ValueError(f"num_classes must hold positive ints, got {c!r}")
        c = int(c)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            one = YOLO(
                grid=grid,
                boxes_per_cell=boxes_per_cell,
                num_classes=c,
                image_size=images.shape[-1],
                backbone=backbone,
            ).eval()
            two = TwoStageDetector(num_classes=c).eval()
        s, _, d = yolo_output_shape(grid, boxes_per_cell, c)
        with torch.no_grad():
            t_one = _cpu_time(one.detect, images, repeats)
            k = float(np.mean([len(two.crops(img)[0]) for img in images]))
            t_two = _cpu_time(two, images, repeats)
        rows.append(
            {
                "num_classes": c,
                "model": "one-stage",
                "output_size": s * s * d,
                "parameters": sum(p.numel() for p in one.parameters()),
                "ms_per_image": 1e3 * t_one / n,
            }
        )
        rows.append(
            {
                "num_classes": c,
                "model": "two-stage",
                "output_size": k * (4 + c),
                "parameters": sum(p.numel() for p in two.parameters()),
                "ms_per_image": 1e3 * t_two / n,
            }
        )
    return rows

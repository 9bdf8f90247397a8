r"""Detection data: canvases of scattered digits with ground-truth boxes, YOLO-format folders, collate.

Every dataset here yields ``(image, target)``: ``image`` a ``float32`` tensor ``(C, H, W)`` in
``[0, 1]`` and ``target`` a dict with ``boxes`` (``float32 (N, 4)``, ``xyxy`` pixels, see
:mod:`mlimaging.detection.boxes`) and ``labels`` (``int64 (N,)``). Batches of such pairs are
made by :func:`collate_detection` (images stacked, targets kept as a list, since the number of
boxes varies).

YOLO folder format (Redmon et al. 2016; the layout of Ultralytics' datasets)::

    root/images/<stem>.png|jpg|jpeg     one image each
    root/labels/<stem>.txt              one line per object: class cx cy w h

with ``cx, cy, w, h`` normalised by the image width and height to ``[0, 1]``. A missing or
empty label file means an image without objects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mlimaging.detection.boxes import box_iou

__all__ = [
    "DetectionCanvases",
    "YOLOFolder",
    "collate_detection",
    "detection_canvases",
    "load_yolo_folder",
    "write_yolo_folder",
]

# A pixel of a (rescaled) digit counts as ink above this value: the box is tight around it.
INK_THRESHOLD = 0.2
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")


class DetectionCanvases(Dataset):
    """Canvases of digits with their boxes (made by :func:`detection_canvases`).

    Attributes
    ----------
    images
        ``float32 (n, 1, canvas, canvas)`` in ``[0, 1]``.
    targets
        One dict per canvas: ``boxes`` ``float32 (k, 4)`` xyxy pixels, ``labels`` ``int64 (k,)``.
    source_indices
        One ``int64 (k,)`` tensor per canvas: the index of each digit in the source split
        (``source.indices`` maps them to the whole source dataset).
    source
        The digit dataset the canvases were drawn from (one split of it).
    """

    def __init__(
        self,
        images: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
        source_indices: list[torch.Tensor],
        source: Any,
        split: str,
    ) -> None:
        self.images, self.targets, self.source_indices = images, targets, source_indices
        self.source, self.split = source, split

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = self.targets[i]
        return self.images[i], {"boxes": t["boxes"].clone(), "labels": t["labels"].clone()}


def _check_range(value: Any, name: str, *, integer: bool, low: float) -> tuple[float, float]:
    if not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {value!r}")
    a, b = value
    if integer and not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"{name} must be two integers, got {value!r}")
    if not (np.isfinite(a) and np.isfinite(b)) or a < low or b < a:
        raise ValueError(f"{name} must satisfy {low} <= min <= max, got {value!r}")
    return a, b


def _ink_crop(digit: torch.Tensor, factor: float) -> torch.Tensor:
    """Rescale a (H, W) digit by ``factor`` and crop it to its ink (values > INK_THRESHOLD)."""
    h, w = digit.shape
    size = (max(1, round(h * factor)), max(1, round(w * factor)))
    patch = F.interpolate(
        digit[None, None], size=size, mode="bilinear", align_corners=False, antialias=factor < 1
    )
    patch = patch[0, 0].clamp(0, 1)
    ink = patch > INK_THRESHOLD
    rows, cols = ink.any(1).nonzero()[:, 0], ink.any(0).nonzero()[:, 0]
    if rows.numel() == 0:
        return patch[:0, :0]
    return patch[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]


def detection_canvases(
    source: str = "mnist5k",
    *,
    n: int,
    canvas: int = 96,
    digits: tuple[int, int] = (1, 4),
    scale: tuple[float, float] = (0.8, 1.5),
    max_overlap: float = 0.1,
    seed: int,
    split: str = "train",
    source_seed: int = 0,
    max_tries: int = 100,
) -> DetectionCanvases:
    r"""Canvases of ``digits[0]..digits[1]`` handwritten digits, each with its tight box and label.

    Each canvas draws :math:`k \sim U\{d_0..d_1\}` digit images from the ``split`` part of
    ``source`` (:func:`mlimaging.data.load_dataset`), rescales each by
    :math:`s \sim U(s_0, s_1)` (bilinear), crops it to its ink (pixels
    :math:`> 0.2`; the box is tight around the ink) and pastes it (pixel-wise maximum) at a
    uniform position where its IoU with every box already placed is at most ``max_overlap``
    (new positions are drawn up to ``max_tries`` times, then a new digit). Train, val and test
    canvases draw from disjoint digit images (the source's fixed split), so a held-out score
    measures generalisation to unseen handwriting, not to unseen layouts.

    This is the toy detection task of the YOLO paper's grid formulation (Redmon et al.,
    2016, "You only look once: unified, real-time object detection", CVPR,
    arXiv:1506.02640) on multi-digit canvases as in Ba, Mnih and Kavukcuoglu (2015),
    "Multiple object recognition with visual attention", ICLR, arXiv:1412.7755.

    Parameters
    ----------
    source
        A classification dataset of single-channel images (``"mnist5k"``, ``"digits"``).
    n
        Number of canvases.
    canvas
        Side of the square canvas in pixels.
    digits
        Inclusive range of the number of digits per canvas.
    scale
        Range of the rescaling factor (MNIST digits are 28 px: 0.8..1.5 gives 22..42 px).
    max_overlap
        Largest IoU allowed between two boxes of a canvas.
    seed
        Seed of the canvases (a seeded call is bit-for-bit repeatable).
    split
        ``"train"``, ``"val"`` or ``"test"``: the part of the source whose digits are used.
    source_seed
        Seed of the source's fixed train/val/test split.
    max_tries
        Positions tried per digit before another digit is drawn.

    Returns
    -------
    DetectionCanvases
        A dataset of ``(image (1, canvas, canvas), {"boxes", "labels"})``.

    Raises
    ------
    ValueError
        ``n < 1``, ``canvas`` smaller than the largest rescaled digit, bad ranges, a source
        that is not single-channel 2-D, or digits that cannot be placed.

    Examples
    --------
    >>> ds = detection_canvases(n=4, canvas=64, digits=(2, 3), seed=0)
    >>> image, target = ds[0]
    >>> tuple(image.shape), target["boxes"].shape[1], bool((target["boxes"][:, 2:] <= 64).all())
    ((1, 64, 64), 4, True)
    """
    from mlimaging.data import load_dataset

    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(canvas, bool) or not isinstance(canvas, (int, np.integer)) or canvas < 8:
        raise ValueError(f"canvas must be an integer >= 8, got {canvas!r}")
    d0, d1 = _check_range(digits, "digits", integer=True, low=1)
    s0, s1 = _check_range(scale, "scale", integer=False, low=1e-3)
    if not (isinstance(max_overlap, (int, float)) and 0 <= max_overlap <= 1):
        raise ValueError(f"max_overlap must be in [0, 1], got {max_overlap!r}")
    src = load_dataset(source, split=split, seed=source_seed)
    images = getattr(src, "images", None)
    if not isinstance(images, torch.Tensor):
        images = torch.stack([src[i][0] for i in range(len(src))])
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(
            f"source {source!r} must hold single-channel 2-D images, got shape {tuple(images.shape[1:])}"
        )
    labels = torch.as_tensor(src.targets).long()
    if labels.ndim != 1:
        raise ValueError(f"source {source!r} must have one integer label per image")
    side = max(images.shape[2:])
    if round(side * s1) > canvas:
        raise ValueError(
            f"canvas {canvas} is smaller than the largest rescaled digit ({round(side * s1)} px)"
        )
    rng = np.random.default_rng(seed)
    out = torch.zeros(n, 1, canvas, canvas)
    targets, sources = [], []
    for c in range(n):
        k = int(rng.integers(d0, d1 + 1))
        boxes: list[list[float]] = []
        labs: list[int] = []
        used: list[int] = []
        attempts = 0
        while len(boxes) < k:
            attempts += 1
            if attempts > 20 * k:
                raise ValueError(
                    f"could not place {k} digits on a {canvas}px canvas with max_overlap={max_overlap}: "
                    "use a larger canvas, fewer digits or a larger max_overlap"
                )
            j = int(rng.integers(len(images)))
            patch = _ink_crop(images[j, 0], float(rng.uniform(s0, s1)))
            ph, pw = patch.shape
            if ph == 0:
                continue
            for _ in range(max_tries):
                y, x = int(rng.integers(canvas - ph + 1)), int(rng.integers(canvas - pw + 1))
                box = [float(x), float(y), float(x + pw), float(y + ph)]
                if (
                    boxes
                    and float(box_iou(torch.tensor([box]), torch.tensor(boxes)).max()) > max_overlap
                ):
                    continue
                region = out[c, 0, y : y + ph, x : x + pw]
                torch.maximum(region, patch, out=region)
                boxes.append(box)
                labs.append(int(labels[j]))
                used.append(j)
                break
        targets.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.tensor(labs, dtype=torch.int64),
            }
        )
        sources.append(torch.tensor(used, dtype=torch.int64))
    return DetectionCanvases(out, targets, sources, src, split)


# --------------------------------------------------------------------------------------
# Collate
# --------------------------------------------------------------------------------------


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Collate ``(image, target)`` pairs: images stacked to ``(B, C, H, W)``, targets kept as a list.

    Parameters
    ----------
    batch
        ``(image (C, H, W), target dict)`` pairs, all images of one size.

    Returns
    -------
    tuple
        ``(images (B, C, H, W), [target, ...])``.

    Examples
    --------
    >>> t = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    >>> x, ts = collate_detection([(torch.zeros(1, 8, 8), t), (torch.ones(1, 8, 8), t)])
    >>> tuple(x.shape), len(ts)
    ((2, 1, 8, 8), 2)
    """
    if len(batch) == 0:
        raise ValueError("batch must not be empty")
    shapes = {tuple(img.shape) for img, _ in batch}
    if len(shapes) != 1:
        raise ValueError(f"all images of a batch must have one shape, got {sorted(shapes)}")
    return torch.stack([img for img, _ in batch]), [t for _, t in batch]


# --------------------------------------------------------------------------------------
# YOLO-format folders
# --------------------------------------------------------------------------------------


def _parse_label_file(path: Path, width: int, height: int) -> dict[str, torch.Tensor]:
    boxes, labels = [], []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        fields = text.split()
        where = f"{path}:{line_no}"
        if len(fields) != 5:
            raise ValueError(
                f"{where}: expected 5 values 'class cx cy w h', got {len(fields)}: {text!r}"
            )
        try:
            cls = int(fields[0])
        except ValueError:
            raise ValueError(
                f"{where}: class must be a non-negative integer, got {fields[0]!r}"
            ) from None
        try:
            cx, cy, w, h = (float(v) for v in fields[1:])
        except ValueError:
            raise ValueError(f"{where}: cx cy w h must be numbers, got {fields[1:]}") from None
        if cls < 0:
            raise ValueError(f"{where}: class must be a non-negative integer, got {cls}")
        vals = np.array([cx, cy, w, h])
        if not np.all(np.isfinite(vals)) or (vals < 0).any() or (vals > 1).any():
            raise ValueError(f"{where}: cx cy w h must be normalised to [0, 1], got {fields[1:]}")
        boxes.append(
            [
                (cx - w / 2) * width,
                (cy - h / 2) * height,
                (cx + w / 2) * width,
                (cy + h / 2) * height,
            ]
        )
        labels.append(cls)
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


def _read_picture(path: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB"):
                im = im.convert("RGB" if im.mode in ("RGBA", "P", "CMYK", "YCbCr") else "L")
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return torch.tensor(arr, dtype=torch.float32) / 255.0


class YOLOFolder(Dataset):
    """A YOLO-format folder (``images/`` + ``labels/*.txt``) as a detection dataset.

    Labels are parsed when the dataset is made, so a malformed line fails at once with a
    ``ValueError`` naming the file and line; images are read on access (``float32 (C, H, W)``
    in ``[0, 1]``: 1 channel for greyscale files, 3 otherwise).

    Parameters
    ----------
    root
        Folder holding ``images/`` and (optionally) ``labels/``.

    Examples
    --------
    >>> import tempfile
    >>> ds = detection_canvases(n=2, canvas=32, digits=(1, 1), scale=(0.5, 0.8), seed=0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_yolo_folder(ds, d)
    ...     image, target = YOLOFolder(d)[0]
    >>> tuple(image.shape), bool(torch.allclose(target["boxes"], ds[0][1]["boxes"], atol=1e-3))
    ((1, 32, 32), True)
    """

    def __init__(self, root: str | os.PathLike) -> None:
        from PIL import Image, UnidentifiedImageError

        self.root = Path(root)
        img_dir = self.root / "images"
        if not img_dir.is_dir():
            raise FileNotFoundError(
                f"{self.root}: no images/ folder (expected a YOLO folder: images/, labels/)"
            )
        self.files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
        if not self.files:
            raise FileNotFoundError(f"{img_dir}: no .png/.jpg/.jpeg images")
        self.targets: list[dict[str, torch.Tensor]] = []
        for f in self.files:
            try:
                with Image.open(f) as im:
                    width, height = im.size
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"{f}: not a readable image ({e})") from None
            label = self.root / "labels" / f"{f.stem}.txt"
            if label.is_file():
                self.targets.append(_parse_label_file(label, width, height))
            else:
                self.targets.append(
                    {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
                )

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t = self.targets[i]
        return _read_picture(self.files[i]), {
            "boxes": t["boxes"].clone(),
            "labels": t["labels"].clone(),
        }


def load_yolo_folder(root: str | os.PathLike) -> YOLOFolder:
    """Read a YOLO-format folder (``images/``, ``labels/*.txt`` with ``class cx cy w h``).

    Same as :class:`YOLOFolder`; see the module docstring for the format.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_yolo_folder(detection_canvases(n=3, canvas=48, seed=1), d)
    ...     len(load_yolo_folder(d))
    3
    """
    return YOLOFolder(root)


def write_yolo_folder(dataset: Any, root: str | os.PathLike, *, force: bool = False) -> Path:
    r"""Write a detection dataset as a YOLO-format folder (PNG images, normalised labels).

    Box :math:`(x_1, y_1, x_2, y_2)` in an image :math:`W \times H` becomes the line
    ``class cx cy w h`` with :math:`c_x = (x_1 + x_2) / 2W`, :math:`w = (x_2 - x_1) / W` (and
    likewise in :math:`y`), written with 6 decimals. Images are saved as 8-bit PNG
    (rounded to 1/255).

    Parameters
    ----------
    dataset
        Any sequence of ``(image (C, H, W) in [0, 1], {"boxes", "labels"})`` (C = 1 or 3).
    root
        Folder to create; ``images/`` and ``labels/`` are written into it.
    force
        Allow writing into a folder whose ``images/`` or ``labels/`` already hold files.

    Returns
    -------
    pathlib.Path
        ``root``.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     root = write_yolo_folder(detection_canvases(n=2, canvas=48, seed=0), d)
    ...     sorted(p.name for p in (root / "labels").iterdir())
    ['000000.txt', '000001.txt']
    """
    from PIL import Image

    root = Path(root)
    img_dir, lab_dir = root / "images", root / "labels"
    for d in (img_dir, lab_dir):
        if d.is_dir() and any(d.iterdir()) and not force:
            raise ValueError(f"{d} is not empty; pass force=True to write into it")
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    width = max(6, len(str(len(dataset) - 1)))
    for i in range(len(dataset)):
        image, target = dataset[i]
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"dataset[{i}] image must be (1 or 3, H, W), got {tuple(image.shape)}")
        h, w = image.shape[1:]
        arr = (image.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        pic = (
            Image.fromarray(arr[0])
            if arr.shape[0] == 1
            else Image.fromarray(arr.transpose(1, 2, 0))
        )
        stem = f"{i:0{width}d}"
        pic.save(img_dir / f"{stem}.png")
        boxes = torch.as_tensor(target["boxes"], dtype=torch.float64).reshape(-1, 4)
        labels = torch.as_tensor(target["labels"]).reshape(-1)
        lines = []
        for (x1, y1, x2, y2), c in zip(boxes.tolist(), labels.tolist(), strict=True):
            if x2 < x1 or y2 < y1 or x1 < 0 or y1 < 0 or x2 > w or y2 > h:
                raise ValueError(
                    f"dataset[{i}] box {[x1, y1, x2, y2]} is not a valid xyxy box inside {w}x{h}"
                )
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{int(c)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        (lab_dir / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    return root

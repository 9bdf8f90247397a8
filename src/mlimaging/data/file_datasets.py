"""Datasets read from users' files: ``mnist`` (IDX files), ``medmnist`` (``.npz``),
``image-folder`` (one folder per class) and ``segmentation-folder`` (images and masks).

They register themselves with :func:`mlimaging.data.datasets.register_dataset` and are
loaded, like the embedded datasets, with :func:`mlimaging.data.load_dataset`; the splits
follow the rules described in :mod:`mlimaging.data.datasets`.
"""

from __future__ import annotations

import functools
import gzip
import os
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from mlimaging.data.datasets import (
    SPLITS,
    ArrayDataset,
    _array_subset,
    _held_out_size,
    _tensor,
    register_dataset,
    split_indices,
)
from mlimaging.data.io import image_format, read_image, strip_image_suffix

__all__ = ["ImageFolderDataset", "SegmentationFolderDataset", "read_idx"]


# --------------------------------------------------------------------------------------
# MNIST from IDX files
# --------------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzipped.

    The header is a big-endian magic number ``0x0000TTNN`` (``TT`` the element type:
    0x08 ubyte, 0x09 byte, 0x0B short, 0x0C int, 0x0D float, 0x0E double; ``NN`` the number
    of dimensions), then ``NN`` big-endian uint32 sizes, then the data.

    Raises ``ValueError`` naming the file when the magic number is wrong or the data size
    does not match the header.
    """
    p = Path(path)
    with open(p, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise ValueError(f"'{p}': corrupt gzip data ({e})") from e
    if len(raw) < 4:
        raise ValueError(f"'{p}' is not an IDX file: {len(raw)} bytes, too short for a header")
    magic = struct.unpack(">I", raw[:4])[0]
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(f"'{p}' is not an IDX file: bad magic number 0x{magic:08X}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"'{p}': truncated IDX header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"'{p}': the IDX header announces shape {dims} ({expected} bytes of data) but the "
            f"file holds {len(raw) - header} bytes"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    arr = read_idx(path)
    arr.setflags(write=False)
    return arr


def _idx(path: Path) -> np.ndarray:
    st = path.stat()
    return _read_idx_cached(str(path), st.st_mtime_ns, st.st_size)


def _find_mnist_file(root: Path, base: str) -> Path | None:
    names = []
    for b in (base, base.replace("-idx", ".idx")):
        names += [b, b + ".gz"]
    for folder in (root, root / "MNIST" / "raw", root / "raw"):
        for n in names:
            if (folder / n).is_file():
                return folder / n
    return None


def _require_root(root: Any, name: str, what: str) -> Path:
    if root is None:
        raise ValueError(f"dataset '{name}' needs root=: {what}")
    p = Path(root)
    if not p.exists():
        raise FileNotFoundError(f"dataset '{name}': root '{p}' does not exist ({what})")
    return p


@register_dataset("mnist")
def _load_mnist(*, split: str, root: Any = None, seed: int = 0) -> ArrayDataset:
    """MNIST from its IDX files under ``root`` (or ``root/MNIST/raw`` as torchvision lays
    them out): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each plain or ``.gz``.

    ``test`` is the t10k file; ``train`` and ``val`` split the training file, val taking
    1/12 of it (5,000 of 60,000) stratified by digit with ``seed``. Images /255.
    """
    r = _require_root(root, "mnist", "the folder holding the MNIST IDX files")
    prefix = "t10k" if split == "test" else "train"
    bases = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    found = [_find_mnist_file(r, b) for b in bases]
    if any(f is None for f in found):
        missing = [b for b, f in zip(bases, found, strict=True) if f is None]
        raise FileNotFoundError(
            f"MNIST files for split '{split}' not found: expected {missing} (each plain or "
            f".gz) in '{r}' or '{r / 'MNIST' / 'raw'}'"
        )
    img_path, lab_path = found
    images = _idx(img_path)
    labels = _idx(lab_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"'{img_path}': expected uint8 images (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"'{lab_path}': expected uint8 labels (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(
            f"'{img_path}' holds {len(images)} images but '{lab_path}' holds {len(labels)} labels"
        )
    if labels.size and labels.max() > 9:
        raise ValueError(f"'{lab_path}': labels must be digits 0..9, found {int(labels.max())}")
    labels = labels.astype(np.int64)
    if split == "test":
        idx = np.arange(len(labels))
    else:
        n_val = int(round(len(labels) / 12))
        idx = split_indices(labels, n_val=n_val, n_test=0, seed=seed)[split]
    return _array_subset(images[:, None], labels, idx, denominator=255.0,
                         classes=[str(k) for k in range(10)], name="mnist", split=split)


# --------------------------------------------------------------------------------------
# MedMNIST
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _npz_array(path: str, mtime_ns: int, size: int, key: str) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            arr = z[key] if key in files else None
    except Exception as e:
        raise ValueError(f"medmnist: cannot read '{path}' as a .npz file ({type(e).__name__}: {e})") from e
    if arr is None:
        raise ValueError(f"'{path}': key '{key}' missing (keys: {sorted(files)}); a MedMNIST "
                         "file holds train/val/test _images and _labels")
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"'{path}': '{key}' is not an array")
    arr.setflags(write=False)
    return arr


@register_dataset("medmnist")
def _load_medmnist(
    *, split: str, root: Any = None, seed: int = 0, flag: str | None = None,
    is_3d: bool | None = None,
) -> ArrayDataset:
    """A MedMNIST ``.npz`` file: ``root`` is the file, or a folder holding ``<flag>.npz``
    (``flag="pathmnist"``, ``"organmnist3d"``...). The file's own splits are used (``seed``
    is ignored).

    Images: ``(N, H, W)`` grayscale -> ``(1, H, W)``; ``(N, H, W, 3)`` RGB -> ``(3, H, W)``;
    ``(N, D, H, W)`` volumes -> ``(1, D, H, W)``. A 4-D array whose last axis is 3 is read
    as RGB unless the file name / flag ends with ``3d`` or ``is_3d=True``. ``uint8`` values
    are divided by 255 (``uint16`` by 65535; floats must already be in ``[0, 1]``).

    Labels ``(N,)`` or ``(N, 1)`` -> ``int``, classes ``"0" .. str(max label)``. Multi-label
    files (``(N, K)`` with ``K > 1``, e.g. ChestMNIST) give a ``float32`` tensor of the
    ``K`` 0/1 labels per item, ``.targets`` of shape ``(N, K)`` and ``.multilabel=True``.
    """
    r = _require_root(root, "medmnist", "a MedMNIST .npz file, or a folder with flag=")
    if r.is_dir():
        if not flag:
            raise ValueError(f"medmnist: root '{r}' is a folder; pass flag= (e.g. flag='pathmnist') "
                             "to pick <flag>.npz in it, or give the .npz file as root")
        path = r / f"{flag}.npz"
        if not path.is_file():
            present = sorted(f.name for f in r.glob("*.npz"))
            raise FileNotFoundError(f"medmnist: '{path}' not found (.npz files there: {present})")
    else:
        path = r
    st = path.stat()
    key = (str(path), st.st_mtime_ns, st.st_size)
    images = _npz_array(*key, f"{split}_images")
    labels = _npz_array(*key, f"{split}_labels")
    all_labels = [_npz_array(*key, f"{s}_labels") for s in SPLITS]

    if len(images) != len(labels):
        raise ValueError(f"'{path}': {len(images)} {split} images but {len(labels)} labels")
    stem = (flag or strip_image_suffix(path.name)).lower()
    if images.ndim == 3:
        data = images[:, None]
    elif images.ndim == 4:
        rgb = images.shape[-1] == 3 and not stem.endswith("3d") if is_3d is None else not is_3d
        data = np.moveaxis(images, -1, 1) if rgb else images[:, None]
    else:
        raise ValueError(f"'{path}': {split}_images has shape {images.shape}; expected (N, H, W), "
                         "(N, H, W, 3) or (N, D, H, W)")
    if images.dtype == np.uint8:
        denominator = 255.0
    elif images.dtype == np.uint16:
        denominator = 65535.0
    elif images.dtype.kind == "f":
        if images.size and (images.min() < 0 or images.max() > 1):
            raise ValueError(f"'{path}': float images must be in [0, 1]")
        denominator = 1.0
        data = data.astype(np.float32)
    else:
        raise ValueError(f"'{path}': unsupported image dtype {images.dtype}")

    if labels.ndim == 2 and labels.shape[1] > 1:
        multilabel = True
        targets = torch.from_numpy(labels.astype(np.int64))
        classes = [str(k) for k in range(labels.shape[1])]
    else:
        multilabel = False
        if labels.ndim > 2 or (labels.ndim == 2 and labels.shape[1] != 1):
            raise ValueError(f"'{path}': {split}_labels has shape {labels.shape}")
        targets = torch.from_numpy(labels.reshape(-1).astype(np.int64))
        n_classes = max((int(a.max()) + 1 for a in all_labels if a.size), default=0)
        classes = [str(k) for k in range(n_classes)]
    return ArrayDataset(
        _tensor(data), targets, denominator=denominator,
        classes=classes, name="medmnist", split=split, multilabel=multilabel,
    )


# --------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------

_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")


def _is_gray_mode(mode: str) -> bool:
    return mode in _GRAY_MODES or mode.startswith("I;16")


def _list_files(folder: Path, accept: Callable[[Path], bool]) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".") and accept(f))


def _has_split_folders(root: Path) -> bool:
    return (root / "train").is_dir()


def _split_folder(root: Path, split: str, name: str) -> Path:
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"dataset '{name}': '{root}' uses train/val/test subfolders but '{folder}' is missing"
        )
    return folder


def _parse_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    h, w = (int(s) for s in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive (H, W), got {size}")
    return h, w


class ImageFolderDataset(Dataset):
    """Images read lazily from ``files``; ``targets[i]`` is the class index of ``files[i]``.

    Images come out ``(C, H, W)`` float32 in ``[0, 1]``: C = 1 when every image of the
    dataset is grayscale, else 3 (all converted to RGB); 8-bit values / 255, 16-bit / 65535.
    ``size=(H, W)`` resizes with bilinear interpolation.
    """

    def __init__(self, files: list[Path], targets: list[int], *, classes: list[str], rgb: bool,
                 size: tuple[int, int] | None, name: str, split: str) -> None:
        self.files = list(files)
        self.targets = torch.as_tensor(targets, dtype=torch.int64).reshape(-1)
        self.classes = list(classes)
        self.rgb = rgb
        self.size = size
        self.name = name
        self.split = split

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, path: Path) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            if self.rgb:
                im = im.convert("RGB")
            elif im.mode in ("1", "LA", "La"):
                im = im.convert("L")
            if im.mode in ("L", "RGB"):
                denominator = 255.0
            elif im.mode.startswith("I"):
                denominator = 65535.0
                im = Image.fromarray(np.asarray(im).astype(np.float32))
            else:  # "F"
                denominator = 1.0
            if self.size is not None and im.size != (self.size[1], self.size[0]):
                im = im.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.float32) / np.float32(denominator)
        arr = np.clip(arr, 0.0, 1.0)
        return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            arr = self._load(self.files[i])
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read image '{self.files[i]}': {e}") from e
        return torch.from_numpy(np.ascontiguousarray(arr)), int(self.targets[i])

    def __repr__(self) -> str:
        return (f"ImageFolderDataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={self.classes}, channels={3 if self.rgb else 1}, size={self.size})")


def _scan_class_folders(folder: Path) -> dict[str, list[Path]]:
    out = {}
    for d in sorted(folder.iterdir()):
        if d.is_dir() and not d.name.startswith("."):
            out[d.name] = _list_files(d, lambda f: f.suffix.lower() in _IMAGE_EXTS)
    return out


@register_dataset("image-folder")
def _load_image_folder(*, split: str, root: Any = None, seed: int = 0,
                       size: int | Sequence[int] | None = None) -> ImageFolderDataset:
    """Classification images in ``root/<class_name>/*.png|jpg|jpeg|bmp|tif|tiff``; classes are
    the folder names, sorted. Split: stratified 70/15/15 by ``seed``, or the
    ``root/train``, ``root/val``, ``root/test`` subfolders (each ``<class_name>/...``) when
    ``root/train`` exists. All images must have the same size unless ``size=(H, W)`` (or an
    int) is given to resize them (bilinear); otherwise ``ValueError`` names a mismatching file.
    """
    from PIL import Image

    r = _require_root(root, "image-folder", "a folder with one subfolder of images per class")
    target_size = _parse_size(size)
    if _has_split_folders(r):
        per_split = {s: _scan_class_folders(r / s) for s in SPLITS if (r / s).is_dir()}
        _split_folder(r, split, "image-folder")
        classes = sorted(set().union(*per_split.values()))
        all_files = [f for tree in per_split.values() for fs in tree.values() for f in fs]
    else:
        tree = _scan_class_folders(r)
        classes = sorted(tree)
        per_split = {"": tree}
        all_files = [f for fs in tree.values() for f in fs]
    if not all_files:
        raise ValueError(f"image-folder: no images ({', '.join(_IMAGE_EXTS)}) in class subfolders of '{r}'")

    # Headers only: the colour mode and the size of every image.
    any_color = False
    first_size: tuple[int, int] | None = None
    for f in all_files:
        try:
            with Image.open(f) as im:
                mode, wh = im.mode, im.size
        except Exception as e:
            raise ValueError(f"image-folder: cannot read image '{f}' ({type(e).__name__}: {e})") from e
        any_color |= not _is_gray_mode(mode)
        if target_size is None:
            if first_size is None:
                first_size, first_file = wh, f
            elif wh != first_size:
                raise ValueError(
                    f"image-folder: '{f}' is {wh[1]}x{wh[0]} (HxW) but '{first_file}' is "
                    f"{first_size[1]}x{first_size[0]}; pass size=(H, W) (--size on the command line) to resize all images"
                )

    class_index = {c: k for k, c in enumerate(classes)}
    if _has_split_folders(r):
        tree = per_split[split]
        files = [f for c in sorted(tree) for f in tree[c]]
        targets = [class_index[c] for c in sorted(tree) for _ in tree[c]]
    else:
        files = [f for c in classes for f in tree[c]]
        labels = np.asarray([class_index[c] for c in classes for _ in tree[c]], dtype=np.int64)
        n = len(files)
        idx = split_indices(labels, n_val=_held_out_size(n, 0.15), n_test=_held_out_size(n, 0.15),
                            seed=seed)[split]
        files = [files[i] for i in idx]
        targets = labels[idx].tolist()
    return ImageFolderDataset(files, targets, classes=classes, rgb=any_color, size=target_size,
                              name="image-folder", split=split)


# --------------------------------------------------------------------------------------
# Segmentation folders
# --------------------------------------------------------------------------------------


class SegmentationFolderDataset(Dataset):
    """Image/mask pairs read lazily with :func:`~mlimaging.data.io.read_image`.

    Items are ``(image, mask)``: ``image`` float32 ``(C, *spatial)`` scaled to ``[0, 1]`` by
    the min and max of the whole image (all channels together; a constant image gives
    zeros), ``mask`` int64 ``(*spatial)`` with the label values as stored. Channels: an
    image shaped like its mask has C = 1; channels-last ``(*spatial, C)`` (RGB PNG, 4-D
    NIfTI) and channels-first ``(C, *spatial)`` (NPY) arrays are both accepted.
    ``spacing(i)`` gives case ``i``'s spacing (from its image file); ``names[i]`` its name.
    """

    def __init__(self, image_files: list[Path], mask_files: list[Path], names: list[str], *,
                 name: str, split: str, cache: bool = False) -> None:
        self.image_files = list(image_files)
        self.mask_files = list(mask_files)
        self.names = list(names)
        self.name = name
        self.split = split
        self.classes = None
        self.cache = cache
        self._items: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._spacings: dict[int, tuple[float, ...]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def spacing(self, i: int) -> tuple[float, ...]:
        """Spacing of case ``i`` (one value per spatial axis), as read from its image file."""
        i = range(len(self))[i]
        if i not in self._spacings:
            self._load(i)  # the spacing's length depends on the image and mask shapes
        return self._spacings[i]

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, spacing = read_image(self.image_files[i])
        mask, _ = read_image(self.mask_files[i])
        case = f"case '{self.names[i]}' ('{self.image_files[i]}', '{self.mask_files[i]}')"
        if image_format(self.mask_files[i]) == "pil" and mask.ndim == 3 and mask.shape[-1] == 3:
            if not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2])):
                raise ValueError(f"{case}: the mask is a colour image; save masks as grayscale label maps")
            mask = mask[..., 0]
        if mask.dtype.kind == "f":
            if not np.all(np.isfinite(mask)) or not np.array_equal(mask, np.round(mask)):
                raise ValueError(f"{case}: the mask has non-integer values; masks are label maps")
        elif mask.dtype.kind not in "biu":
            raise ValueError(f"{case}: unsupported mask dtype {mask.dtype}")
        mask = mask.astype(np.int64)
        if img.shape == mask.shape:
            img = img[None]
        elif img.ndim == mask.ndim + 1 and img.shape[:-1] == mask.shape:
            img = np.moveaxis(img, -1, 0)
            spacing = spacing[:-1] if len(spacing) == img.ndim else spacing  # NPY channels-last
        elif img.ndim == mask.ndim + 1 and img.shape[1:] == mask.shape:
            spacing = spacing[1:] if len(spacing) == img.ndim else spacing  # NPY channels-first
        else:
            raise ValueError(f"{case}: image shape {img.shape} does not match mask shape {mask.shape}")
        self._spacings[i] = tuple(spacing) if len(spacing) == mask.ndim else (1.0,) * mask.ndim
        if img.dtype.kind == "c":
            raise ValueError(f"{case}: complex images are not supported")
        img = img.astype(np.float64)
        lo, hi = (float(img.min()), float(img.max())) if img.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise ValueError(f"{case}: the image has non-finite values")
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        image_t = torch.from_numpy(np.ascontiguousarray(np.clip(img, 0.0, 1.0), dtype=np.float32))
        return image_t, torch.from_numpy(np.ascontiguousarray(mask))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = range(len(self))[i]
        if i in self._items:
            return self._items[i]
        item = self._load(i)
        if self.cache:
            self._items[i] = item
        return item

    def __repr__(self) -> str:
        return f"SegmentationFolderDataset(name={self.name!r}, split={self.split!r}, n={len(self)})"


def _stems(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"segmentation-folder: folder '{folder}' not found")
    out: dict[str, Path] = {}
    for f in _list_files(folder, lambda f: image_format(f) is not None):
        stem = strip_image_suffix(f.name)
        if stem in out:
            raise ValueError(f"segmentation-folder: '{out[stem]}' and '{f}' have the same name '{stem}'")
        out[stem] = f
    return out


def _pairs(folder: Path, images_dir: str, masks_dir: str) -> tuple[list[str], list[Path], list[Path]]:
    imgs, masks = _stems(folder / images_dir), _stems(folder / masks_dir)
    only_img, only_mask = sorted(set(imgs) - set(masks)), sorted(set(masks) - set(imgs))
    if only_img or only_mask:
        def show(names: list[str], d: dict[str, Path]) -> str:
            return str([d[n].name for n in names[:10]]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        parts = []
        if only_img:
            parts.append(f"images without a mask in '{folder / masks_dir}': {show(only_img, imgs)}")
        if only_mask:
            parts.append(f"masks without an image in '{folder / images_dir}': {show(only_mask, masks)}")
        raise ValueError("segmentation-folder: unmatched files (matched by name without extension); "
                         + "; ".join(parts))
    names = sorted(imgs)
    return names, [imgs[n] for n in names], [masks[n] for n in names]


@register_dataset("segmentation-folder")
def _load_segmentation_folder(*, split: str, root: Any = None, seed: int = 0,
                              images_dir: str = "images", masks_dir: str = "masks",
                              cache: bool = False) -> SegmentationFolderDataset:
    """Images in ``root/<images_dir>`` and label maps in ``root/<masks_dir>``, matched by
    file name without extension (``.nii.gz``, ``.nii``, ``.png``, ``.npy``... any format of
    :func:`~mlimaging.data.io.read_image`). Split: 70/15/15 by ``seed`` (random, not
    stratified), or ``root/train``, ``root/val``, ``root/test`` subfolders, each holding
    ``images/`` and ``masks/``, when ``root/train`` exists. ``cache=True`` keeps loaded
    items in memory. See :class:`SegmentationFolderDataset` for the item format.
    """
    r = _require_root(root, "segmentation-folder", f"a folder with {images_dir}/ and {masks_dir}/")
    if _has_split_folders(r):
        names, image_files, mask_files = _pairs(_split_folder(r, split, "segmentation-folder"),
                                                images_dir, masks_dir)
    else:
        names, image_files, mask_files = _pairs(r, images_dir, masks_dir)
        if not names:
            raise ValueError(f"segmentation-folder: no images in '{r / images_dir}'")
        n = len(names)
        idx = split_indices(n, n_val=_held_out_size(n, 0.15), n_test=_held_out_size(n, 0.15),
                            seed=seed)[split]
        names = [names[i] for i in idx]
        image_files = [image_files[i] for i in idx]
        mask_files = [mask_files[i] for i in idx]
    return SegmentationFolderDataset(image_files, mask_files, names, name="segmentation-folder",
                                     split=split, cache=cache)

r"""Super-resolution data and evaluation: bundled images, degradations, LR/HR patch pairs, the
bicubic baseline, and PSNR/SSIM on the Y channel as the papers report them.

Conventions (fixed once for the whole area):

* Images are float32 in :math:`[0, 1]`, channel-first: ``(C, H, W)`` for one image,
  ``(B, C, H, W)`` for a batch, with ``C`` = 1 (grey or the Y channel) or 3 (RGB).
* ``scale`` :math:`s` is an int; a high-resolution (HR) image is first cropped to a multiple
  of :math:`s` (:func:`modcrop`, bottom/right rows dropped), its low-resolution (LR) version
  has :math:`H/s \times W/s` pixels.
* Bicubic resizing, down (degradation) and up (baseline), is torch's
  ``F.interpolate(mode="bicubic", antialias=True, align_corners=False)``: Keys' kernel with
  :math:`a = -0.5`, widened by :math:`s` when shrinking, pixel centres aligned, i.e. MATLAB's
  ``imresize`` as the SR papers use it (and PIL's ``BICUBIC``, equal to 1e-6). Values are not
  clipped or quantised to 8 bits (the papers round to ``uint8``; here :func:`sr_evaluate`
  clips to the data range).
* Y channel: ITU-R BT.601 as MATLAB's ``rgb2ycbcr``,
  :math:`Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255` for :math:`R, G, B \in [0, 1]`
  (so :math:`Y \in [16/255, 235/255]`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from mlimaging.inverse._denoisers import _dihedral_mean  # SelfEnsemble's mean, for any output size
from mlimaging.metrics import psnr, ssim

__all__ = [
    "DEGRADATIONS",
    "SR_IMAGES",
    "SR_TRAIN_EXTRA",
    "SRPairs",
    "SRSelfEnsemble",
    "bicubic_upscale",
    "degrade",
    "dihedral",
    "load_sr_image",
    "modcrop",
    "rgb_to_y",
    "shave",
    "split_images",
    "sr_evaluate",
    "sr_pairs",
    "through_plane_degrade",
]

#: scikit-image's bundled images used for training and held-out evaluation (no download).
SR_IMAGES = ("astronaut", "camera", "chelsea", "coffee", "rocket", "coins", "moon", "page", "text", "clock",
             "brick", "grass", "gravel", "immunohistochemistry", "cell", "shepp_logan_phantom")
#: Training-only photographs bundled offline with the other dependencies (scikit-learn's
#: ``load_sample_image`` china and flower, matplotlib's sample ``grace_hopper.jpg``, the left view of
#: scikit-image's ``stereo_motorcycle``, PyWavelets' ``pywt.data.aero`` (an aerial photograph) and
#: ``pywt.data.ascent``, both grey 512 x 512). They are not in :data:`SR_IMAGES`, so
#: :func:`split_images` and its held-out images do not change; :func:`load_sr_image` and
#: :func:`sr_pairs` take their names. Natural photographs, unlike half of :data:`SR_IMAGES` (text,
#: page, phantom, cells, coins, moon).
SR_TRAIN_EXTRA = ("china", "flower", "grace_hopper", "motorcycle_left", "aero", "ascent")
DEGRADATIONS = ("bicubic", "blur-down", "kspace")
#: ITU-R BT.601 as MATLAB's ``rgb2ycbcr``: ``[Y, Cb, Cr] = (OFFSET + M @ [R, G, B]) / 255`` for R, G, B in
#: [0, 1] (Y in [16, 235] / 255, Cb and Cr in [16, 240] / 255); the first row is :func:`rgb_to_y`'s.
_YCBCR = ((65.481, 128.553, 24.966), (-37.797, -74.203, 112.0), (112.0, -93.786, -18.214))
_YCBCR_OFFSET = (16.0, 128.0, 128.0)
_BT601 = _YCBCR[0]


# ------------------------------------------------------------------------------ images
def rgb_to_y(x: Any) -> Any:
    r"""The luma :math:`Y = (16 + 65.481 R + 128.553 G + 24.966 B)/255` of RGB in :math:`[0, 1]`.

    ITU-R BT.601, MATLAB's ``rgb2ycbcr`` (the Y channel on which SR papers report PSNR/SSIM).
    ``x`` is ``(3, H, W)`` or ``(B, 3, H, W)`` (NumPy or torch); the channel axis is kept
    (size 1). A one-channel input is returned unchanged (already grey/Y).

    Examples
    --------
    >>> import numpy as np
    >>> float(rgb_to_y(np.ones((3, 1, 1)))[0, 0, 0] * 255)  # white: 16 + 219
    235.0
    """
    if x.ndim not in (3, 4) or x.shape[-3] not in (1, 3):
        raise ValueError(f"x must be (3, H, W) or (B, 3, H, W) (or one channel), got shape {tuple(x.shape)}")
    if x.shape[-3] == 1:
        return x
    r, g, b = x[..., 0:1, :, :], x[..., 1:2, :, :], x[..., 2:3, :, :]
    return (16.0 + _BT601[0] * r + _BT601[1] * g + _BT601[2] * b) / 255.0


def _bundled(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    if name == "grace_hopper":
        from matplotlib.cbook import get_sample_data
        from PIL import Image

        with get_sample_data("grace_hopper.jpg") as f:
            return np.asarray(Image.open(f).convert("RGB"))
    if name in ("aero", "ascent"):
        import pywt.data

        return getattr(pywt.data, name)()
    import skimage.data

    if name == "motorcycle_left":
        return skimage.data.stereo_motorcycle()[0]
    return getattr(skimage.data, name)()


def load_sr_image(name: str, *, channels: str = "y") -> np.ndarray:
    """A bundled image as float32 ``(C, H, W)`` in [0, 1].

    Parameters
    ----------
    name : str
        One of :data:`SR_IMAGES` (scikit-image's) or of the training-only :data:`SR_TRAIN_EXTRA`.
    channels : str
        ``"y"`` (default): the BT.601 luma of colour images (:func:`rgb_to_y`), grey images as
        they are; ``"rgb"``: colour images kept (grey images repeated to three channels).

    Examples
    --------
    >>> load_sr_image("camera").shape
    (1, 512, 512)
    >>> load_sr_image("chelsea", channels="rgb").shape
    (3, 300, 451)
    >>> load_sr_image("china").shape  # training-only (SR_TRAIN_EXTRA)
    (1, 427, 640)
    """
    if name not in SR_IMAGES and name not in SR_TRAIN_EXTRA:
        raise ValueError(f"name must be one of {SR_IMAGES + SR_TRAIN_EXTRA}, got {name!r}")
    if channels not in ("y", "rgb"):
        raise ValueError(f"channels must be 'y' or 'rgb', got {channels!r}")
    img = np.asarray(_bundled(name))
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    img = np.clip(img, 0.0, 1.0)
    img = img[None] if img.ndim == 2 else np.moveaxis(img[..., :3], -1, 0)
    if channels == "y":
        return np.ascontiguousarray(rgb_to_y(img), dtype=np.float32)
    return np.ascontiguousarray(np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img)


def split_images(names: Sequence[str] = SR_IMAGES, *, n_test: int = 4, seed: int = 0) -> tuple[list[str], list[str]]:
    """A held-out split by image: ``(train, test)`` name lists from a seeded permutation.

    No image contributes patches to both lists, so test PSNR measures generalisation to new
    images, not to new patches of the training images.

    Examples
    --------
    >>> train, test = split_images(seed=0)
    >>> len(train), len(test), set(train) & set(test)
    (12, 4, set())
    """
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {names!r}")
    if isinstance(n_test, bool) or not isinstance(n_test, int) or not 1 <= n_test < len(names):
        raise ValueError(f"n_test must be an int in [1, {len(names) - 1}] for {len(names)} images, got {n_test!r}")
    order = np.random.default_rng(seed).permutation(len(names))
    test = sorted(names[i] for i in order[:n_test])
    return [n for n in names if n not in test], test


# ------------------------------------------------------------------------------ degradations
def _check_scale(scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an int >= 1, got {scale!r}")
    return int(scale)


def _as_batch(x: Any, name: str) -> tuple[torch.Tensor, bool]:
    t = torch.as_tensor(x)
    if t.ndim not in (3, 4) or not t.is_floating_point() or t.numel() == 0:
        raise ValueError(f"{name} must be a non-empty float (C, H, W) or (B, C, H, W) image, got "
                         f"{tuple(t.shape)} {t.dtype}")
    return (t[None], True) if t.ndim == 3 else (t, False)


def modcrop(x: Any, scale: int) -> Any:
    """Drop the last rows/columns so that ``H`` and ``W`` are multiples of ``scale``.

    Examples
    --------
    >>> import numpy as np
    >>> modcrop(np.zeros((1, 10, 7)), 3).shape
    (1, 9, 6)
    """
    s = _check_scale(scale)
    h, w = x.shape[-2:]
    if h < s or w < s:
        raise ValueError(f"x ({h} x {w}) must be at least scale={s} pixels on each side")
    return x[..., : h - h % s, : w - w % s]


def degrade(hr: Any, scale: int, *, degradation: str = "bicubic") -> torch.Tensor:
    r"""The low-resolution image of ``hr`` (sides multiples of ``scale``; see :func:`modcrop`).

    * ``"bicubic"``: anti-aliased bicubic shrinking (MATLAB ``imresize``, see the module
      conventions), the degradation of Set5/Set14 benchmarks.
    * ``"blur-down"``: Gaussian blur with :math:`\sigma = s` pixels, then every
      :math:`s`-th sample (:class:`mlimaging.inverse.Downsample` with ``filter="gaussian"``,
      reflected borders): :math:`y = S_s(h * x)`.
    * ``"kspace"``: keep the central :math:`H/s \times W/s` block of the Fourier transform
      (an MRI acquisition with a lower resolution), :math:`y = \mathcal F^{-1}_{n}
      C\, \mathcal F_N x` normalised so that the mean intensity is kept; LR sample :math:`j`
      sits at HR sample :math:`s j` (as ``"blur-down"``), a band-limited image is sampled
      exactly; truncation rings (Gibbs) near edges, as in MRI. The band is ``fftshift``'s: for an
      even LR size one more negative than positive frequency; the real part is returned.

    Returns a float32 tensor ``(C, H/s, W/s)`` or ``(B, C, H/s, W/s)`` like the input.

    Examples
    --------
    >>> import torch
    >>> degrade(torch.ones(1, 8, 8), 2, degradation="kspace")
    tensor([[[1., 1., 1., 1.],
             [1., 1., 1., 1.],
             [1., 1., 1., 1.],
             [1., 1., 1., 1.]]])
    """
    s = _check_scale(scale)
    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    x, single = _as_batch(hr, "hr")
    x = x.float()
    h, w = x.shape[-2:]
    if h % s or w % s:
        raise ValueError(f"hr's size {h} x {w} must be a multiple of scale={s} (use modcrop)")
    if degradation == "bicubic":
        y = F.interpolate(x, size=(h // s, w // s), mode="bicubic", antialias=True, align_corners=False)
    elif degradation == "blur-down":
        from mlimaging.inverse.operators import Downsample

        y = Downsample(s, filter="gaussian", padding="reflect").to(x.dtype).A(x)
    else:
        y = _kspace_crop(x, s)
    return y[0] if single else y


def _kspace_crop(x: torch.Tensor, s: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    n, m = h // s, w // s
    # norm="forward" puts 1/N on the forward transform: the DC coefficient is the mean, and the
    # unnormalised inverse on the smaller grid keeps it.
    k = torch.fft.fftshift(torch.fft.fft2(x, norm="forward"), dim=(-2, -1))
    top, left = h // 2 - n // 2, w // 2 - m // 2
    crop = torch.fft.ifftshift(k[..., top : top + n, left : left + m], dim=(-2, -1))
    return torch.fft.ifft2(crop, norm="forward").real.to(x.dtype)


def through_plane_degrade(x: Any, scale: int, *, axis: int = -1, profile: str = "box") -> torch.Tensor:
    r"""Thick slices along one axis: the anisotropic volume that through-plane SR starts from.

    * ``"box"``: each low-resolution slice is the mean of :math:`s` consecutive slices,
      :math:`y_j = \frac1s \sum_{k=0}^{s-1} x_{s j + k}` (a slice profile of :math:`s` voxels:
      partial-volume averaging of a thick 2D acquisition). Slice :math:`j` is centred at
      :math:`s j + (s - 1)/2`, the convention of trilinear/bicubic upsampling
      (``align_corners=False``), so ``srcnn``/``vdsr``/``espcn`` with ``scale=(1, 1, s)``
      restore it.
    * ``"kspace"``: keep the central :math:`n/s` Fourier coefficients along the axis (mean kept;
      sample :math:`j` at :math:`s j`, as :func:`degrade`'s ``"kspace"``).

    ``x`` is any float array or tensor whose size along ``axis`` is a multiple of ``scale``;
    returns a float32 tensor with that axis divided by ``scale``.

    Examples
    --------
    >>> import torch
    >>> through_plane_degrade(torch.arange(8.0).view(1, 1, 1, 1, 8), 4)
    tensor([[[[[1.5000, 5.5000]]]]])
    """
    s = _check_scale(scale)
    if profile not in ("box", "kspace"):
        raise ValueError(f"profile must be 'box' or 'kspace', got {profile!r}")
    t = torch.as_tensor(x)
    if t.ndim < 1 or not t.is_floating_point() or t.numel() == 0:
        raise ValueError(f"x must be a non-empty float array, got shape {tuple(t.shape)} {t.dtype}")
    if isinstance(axis, bool) or not isinstance(axis, int) or not -t.ndim <= axis < t.ndim:
        raise ValueError(f"axis must be an int in [{-t.ndim}, {t.ndim - 1}], got {axis!r}")
    t = t.float().movedim(axis, -1)
    n = t.shape[-1]
    if n % s:
        raise ValueError(f"x's size along axis {axis} ({n}) must be a multiple of scale={s}")
    if profile == "box":
        y = t.reshape(*t.shape[:-1], n // s, s).mean(-1)
    else:
        k = torch.fft.fftshift(torch.fft.fft(t, norm="forward"), dim=-1)
        m, start = n // s, n // 2 - (n // s) // 2
        y = torch.fft.ifft(torch.fft.ifftshift(k[..., start : start + m], dim=-1), norm="forward").real
    return y.movedim(-1, axis).contiguous()


def bicubic_upscale(lr: Any, scale: int) -> torch.Tensor:
    """The bicubic baseline: ``lr`` enlarged ``scale`` times by MATLAB-``imresize`` bicubic.

    ``F.interpolate(lr, size=(scale*h, scale*w), mode="bicubic", antialias=True,
    align_corners=False)`` (the documented antialias path, Keys' :math:`a = -0.5`, equal to PIL's
    ``BICUBIC``); the same interpolation SRCNN and VDSR apply inside. Not clipped.

    Examples
    --------
    >>> import torch
    >>> bicubic_upscale(torch.ones(1, 1, 3, 4), 2).shape
    torch.Size([1, 1, 6, 8])
    """
    s = _check_scale(scale)
    x, single = _as_batch(lr, "lr")
    h, w = x.shape[-2:]
    y = F.interpolate(x.float(), size=(h * s, w * s), mode="bicubic", antialias=True, align_corners=False)
    return y[0] if single else y


# ------------------------------------------------------------------------------ patch pairs
def dihedral(x: torch.Tensor, k: int, *, inverse: bool = False) -> torch.Tensor:
    """Element ``k`` (0..7) of the dihedral group on the last two axes: ``rot90`` by ``k % 4``
    quarter turns, then a left-right flip when ``k >= 4`` (``k = 0``: the identity); with
    ``inverse``, its inverse (the flip undone first, then the turns):
    ``dihedral(dihedral(x, k), k, inverse=True)`` is ``x``.

    The eight transforms commute with the ``"bicubic"`` degradation of :func:`degrade` (symmetric
    kernel, pixel centres aligned) on patches cut at multiples of ``scale``, so an LR/HR pair
    transformed alike is still a pair: the flips/rotations augmentation of the SR papers. They do
    not commute with ``"blur-down"``/``"kspace"``, whose LR sample :math:`j` sits at HR sample
    :math:`s j` (a flip moves the grid by :math:`s - 1` pixels).

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(4.0).view(1, 2, 2)
    >>> [dihedral(x, k)[0, 0].tolist() for k in (0, 1, 4)]
    [[0.0, 1.0], [1.0, 3.0], [1.0, 0.0]]
    >>> all(torch.equal(dihedral(dihedral(x, k), k, inverse=True), x) for k in range(8))
    True
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < 8:
        raise ValueError(f"k must be an int in 0..7, got {k!r}")
    if inverse:
        y = torch.flip(x, dims=(-1,)) if k >= 4 else x
        return torch.rot90(y, -(k % 4), dims=(-2, -1))
    y = torch.rot90(x, k % 4, dims=(-2, -1))
    return torch.flip(y, dims=(-1,)) if k >= 4 else y


class SRSelfEnsemble(torch.nn.Module):
    r"""Geometric self-ensemble of a super-resolution network ("x8", Lim et al. 2017's EDSR+):
    the mean of its outputs over the eight flips/rotations :math:`g` of the input (:func:`dihedral`),
    each mapped back,

    .. math:: \hat x = \frac{1}{|G|}\sum_{g \in G} g^{-1}\big(f(g\,y)\big),

    for a network :math:`f` from ``(B, C, h, w)`` to ``(B, C, s h, s w)`` (the LR input is
    transformed, the HR output transformed back; :class:`mlimaging.inverse.learned.SelfEnsemble`
    does the same for denoisers, whose output has the input's size). A network trained on flipped
    and rotated patches (``sr_pairs(augment=True)``) is nearly but not exactly equivariant; the mean
    removes the rest of its error's non-equivariant part, at ``transforms`` times the inference
    cost, no training. ``transforms=4``: the identity, the two flips and the half turn (the
    elements ``k`` = 0, 2, 4, 6, which keep height and width). Lim B. et al. (2017). Enhanced deep
    residual networks for single image super-resolution. CVPR workshops. arXiv:1707.02921;
    Timofte R., Rothe R., Van Gool L. (2016). Seven ways to improve example-based single image
    super resolution. CVPR. arXiv:1511.02228.

    Parameters
    ----------
    net : nn.Module or callable
        The network (called on each transformed batch).
    transforms : {8, 4}
        Size of the group averaged over.

    Examples
    --------
    >>> import torch
    >>> up = lambda y: bicubic_upscale(y, 2)  # bicubic is equivariant: the ensemble changes nothing
    >>> y = torch.rand(1, 1, 6, 5)
    >>> bool(torch.allclose(SRSelfEnsemble(up)(y), up(y), atol=1e-6))
    True
    """

    def __init__(self, net: Any, *, transforms: int = 8) -> None:
        super().__init__()
        if not callable(net):
            raise ValueError(f"net must be a callable (B, C, h, w) -> (B, C, s h, s w), got {type(net).__name__}")
        if isinstance(transforms, bool) or not isinstance(transforms, int) or transforms not in (4, 8):
            raise ValueError(f"transforms must be 4 or 8, got {transforms!r}")
        self.net, self.transforms = net, transforms

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if not isinstance(y, torch.Tensor) or y.ndim != 4:
            raise ValueError(f"y must be a (B, C, h, w) tensor, got {getattr(y, 'shape', type(y).__name__)}")
        return _dihedral_mean(self.net, y, self.transforms)


class SRPairs(Dataset):
    """LR/HR patch pairs ``(lr, hr)``: float32 tensors ``(C, p/s, p/s)`` and ``(C, p, p)``.

    Built by :func:`sr_pairs`; ``names`` and ``positions`` say where each patch comes from
    (image index, top, left in HR pixels). With ``augment``, each item is drawn through one of
    the eight flips/rotations (:func:`dihedral`), chosen by a generator seeded with ``seed``
    (one draw per item read: a seeded training run is repeatable).
    """

    def __init__(self, lr: torch.Tensor, hr: torch.Tensor, positions: list[tuple[int, int, int]], *,
                 scale: int, degradation: str, augment: bool = False, seed: int = 0) -> None:
        self.lr, self.hr, self.positions = lr, hr, positions
        self.scale, self.degradation = scale, degradation
        self.augment = bool(augment)
        self._generator = torch.Generator().manual_seed(int(seed))

    def __len__(self) -> int:
        return len(self.hr)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.augment:
            return self.lr[i], self.hr[i]
        k = int(torch.randint(8, (1,), generator=self._generator))
        return dihedral(self.lr[i], k).contiguous(), dihedral(self.hr[i], k).contiguous()


def _load(images: Sequence[Any], channels: str) -> list[np.ndarray]:
    if isinstance(images, (str, np.ndarray, torch.Tensor)) or not isinstance(images, Sequence) or not images:
        raise ValueError("images must be a non-empty list of bundled image names or (C, H, W)/(H, W) arrays")
    out = []
    for i, img in enumerate(images):
        if isinstance(img, str):
            out.append(load_sr_image(img, channels=channels))
            continue
        a = np.asarray(img.detach().cpu() if isinstance(img, torch.Tensor) else img, dtype=np.float32)
        a = a[None] if a.ndim == 2 else a
        if a.ndim != 3 or a.shape[0] not in (1, 3) or not np.isfinite(a).all():
            raise ValueError(f"images[{i}] must be a finite (H, W) or (C, H, W) array with C in (1, 3), "
                             f"got shape {a.shape}")
        out.append(np.ascontiguousarray(rgb_to_y(a) if channels == "y" and a.shape[0] == 3 else a))
    if len({a.shape[0] for a in out}) != 1:
        raise ValueError("images must all have the same number of channels (use channels='y')")
    return out


def sr_pairs(images: Sequence[Any], *, scale: int, patch: int, degradation: str = "bicubic",
             stride: int | None = None, max_patches: int | None = None, channels: str = "y",
             augment: bool = False, seed: int = 0) -> SRPairs:
    r"""LR/HR patch pairs cut from whole images (a ``Dataset`` for :func:`mlimaging.training.fit`).

    Each image is cropped to a multiple of ``scale`` (:func:`modcrop`) and degraded as a whole
    (:func:`degrade`, so patch borders see no artificial edge); HR patches of ``patch`` pixels
    are cut on a grid of step ``stride`` and paired with the aligned LR patches of
    ``patch / scale`` pixels (top-left :math:`(i, j) \to (i/s, j/s)`). With ``max_patches``, a
    seeded random subset of at most that many patches per image is kept.

    Parameters
    ----------
    images
        Bundled names (:data:`SR_IMAGES`; keep training and test images apart with
        :func:`split_images`) or arrays ``(H, W)``/``(C, H, W)`` in [0, 1].
    scale : int
        The SR factor :math:`s \ge 2`.
    patch : int
        HR patch side, a multiple of ``scale``.
    degradation : str
        ``"bicubic"``, ``"blur-down"`` or ``"kspace"`` (see :func:`degrade`).
    stride : int, optional
        Grid step in HR pixels (default ``patch``: non-overlapping), a multiple of ``scale``.
    max_patches : int, optional
        Patches kept per image.
    channels : str
        ``"y"`` (luma, the papers' setting) or ``"rgb"``.
    augment : bool
        Draw each item through a random flip/rotation (:func:`dihedral`; 8x the distinct pairs);
        ``"bicubic"`` degradation only (the others do not commute with flips).
    seed : int
        Seed of the patch subset (and of the augmentation draws).

    Examples
    --------
    >>> data = sr_pairs(["camera"], scale=2, patch=32, max_patches=10, seed=0)
    >>> len(data), data[0][0].shape, data[0][1].shape
    (10, torch.Size([1, 16, 16]), torch.Size([1, 32, 32]))
    """
    s = _check_scale(scale)
    if s < 2:
        raise ValueError(f"scale must be an int >= 2, got {scale!r}")
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < s or patch % s:
        raise ValueError(f"patch must be a positive multiple of scale={s}, got {patch!r}")
    stride = patch if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < s or stride % s:
        raise ValueError(f"stride must be a positive multiple of scale={s}, got {stride!r}")
    if max_patches is not None and (isinstance(max_patches, bool) or not isinstance(max_patches, int)
                                    or max_patches < 1):
        raise ValueError(f"max_patches must be a positive int or None, got {max_patches!r}")
    if degradation not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {degradation!r}")
    if channels not in ("y", "rgb"):
        raise ValueError(f"channels must be 'y' or 'rgb', got {channels!r}")
    if augment and degradation != "bicubic":
        raise ValueError(f"augment=True needs degradation='bicubic' (flips do not commute with {degradation!r}: "
                         "its LR samples are not centred)")
    rng = np.random.default_rng(seed)
    lrs, hrs, positions = [], [], []
    p, q = patch, patch // s
    for k, img in enumerate(_load(images, channels)):
        if min(img.shape[-2:]) < p:
            raise ValueError(f"images[{k}] ({img.shape[-2]} x {img.shape[-1]}) is smaller than patch={p}")
        hr = torch.from_numpy(modcrop(img, s).copy())
        lr = degrade(hr, s, degradation=degradation)
        grid = [(i, j) for i in range(0, hr.shape[-2] - p + 1, stride) for j in range(0, hr.shape[-1] - p + 1, stride)]
        if max_patches is not None and len(grid) > max_patches:
            grid = [grid[i] for i in sorted(rng.choice(len(grid), size=max_patches, replace=False))]
        for i, j in grid:
            hrs.append(hr[:, i : i + p, j : j + p])
            lrs.append(lr[:, i // s : i // s + q, j // s : j // s + q])
            positions.append((k, i, j))
    return SRPairs(torch.stack(lrs).contiguous(), torch.stack(hrs).contiguous(), positions,
                   scale=s, degradation=degradation, augment=augment, seed=seed)


# ------------------------------------------------------------------------------ evaluation
def shave(x: Any, border: int) -> Any:
    """``x[..., b:-b, b:-b]``: the border of ``b`` pixels that SR papers leave out of PSNR/SSIM."""
    if isinstance(border, bool) or not isinstance(border, int) or border < 0:
        raise ValueError(f"border must be an int >= 0, got {border!r}")
    if border == 0:
        return x
    if min(x.shape[-2:]) <= 2 * border:
        raise ValueError(f"x ({tuple(x.shape[-2:])}) is too small to shave a border of {border}")
    return x[..., border:-border, border:-border]


def sr_evaluate(sr: Any, hr: Any, *, scale: int, data_range: float = 1.0, y_channel: bool = True,
                clip: bool = True, border: int | None = None) -> dict[str, float]:
    r"""PSNR and SSIM as the SR papers report them: Y channel, a border of ``scale`` pixels cut.

    .. math::

        \mathrm{PSNR} = 10 \log_{10} \frac{R^2}{\mathrm{MSE}(Y_{sr}, Y_{hr})}

    on :math:`Y` (:func:`rgb_to_y`) with ``border`` (default ``scale``) pixels shaved from each
    side, and SSIM with the Gaussian window of Wang et al. 2004 (:math:`\sigma = 1.5`, 11 taps,
    population moments), both through :mod:`mlimaging.metrics` (:func:`~mlimaging.metrics.psnr`,
    :func:`~mlimaging.metrics.ssim`). ``clip`` clamps the prediction to :math:`[0, R]` first.
    Averages over a batch.

    Parameters
    ----------
    sr, hr
        ``(C, H, W)`` or ``(B, C, H, W)`` (NumPy or torch) of the same shape; C = 1 or 3.
    scale : int
        The SR factor (the default border).
    data_range : float
        :math:`R` (1 for [0, 1] images).
    y_channel : bool
        Convert RGB to Y first (ignored for one channel).
    clip : bool
        Clamp ``sr`` to ``[0, data_range]``.
    border : int, optional
        Pixels shaved from each side (default ``scale``).

    Returns
    -------
    dict
        ``{"psnr": float (dB), "ssim": float}``.

    Examples
    --------
    >>> import torch
    >>> hr = torch.rand(1, 1, 24, 24, generator=torch.Generator().manual_seed(0))
    >>> sr_evaluate(hr, hr, scale=2)["ssim"]
    1.0
    """
    s = _check_scale(scale)
    a, _ = _as_batch(sr, "sr")
    b, _ = _as_batch(hr, "hr")
    if a.shape != b.shape:
        raise ValueError(f"sr and hr must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if clip:
        a = a.clamp(0.0, float(data_range))
    if y_channel and a.shape[1] == 3:
        a, b = rgb_to_y(a), rgb_to_y(b)
    bd = s if border is None else border
    a, b = shave(a.numpy(), bd), shave(b.numpy(), bd)
    p = psnr(a, b, data_range=data_range)
    q = ssim(a, b, data_range=data_range, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return {"psnr": float(np.mean(p)), "ssim": float(np.mean(q))}

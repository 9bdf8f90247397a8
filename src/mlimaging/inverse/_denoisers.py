r"""Learned Gaussian denoisers for plug-and-play reconstruction: DnCNN and a noise-conditional U-Net.

Both are trained on random patches of scikit-image's bundled photographs (``camera`` is held
out: it is the benchmark's test image) with additive Gaussian noise of a random level, through
:func:`mlimaging.training.fit`. A denoiser is called as ``denoiser(x, sigma)`` (the convention of
:func:`mlimaging.inverse.learned.pnp`); :class:`DnCNN` is blind and ignores ``sigma`` unless built with
``sigma_input=True`` (the default of :func:`default_denoiser`), when the noise map is an input channel.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from torch.utils.data import Dataset

__all__ = [
    "DEFAULT_TRAIN_IMAGES",
    "DnCNN",
    "PatchDataset",
    "UNetDenoiser",
    "default_denoiser",
    "grow_dncnn",
    "load_training_images",
    "train_denoiser",
]

#: scikit-image photographs used for training (``camera`` and ``shepp_logan_phantom`` are held out).
DEFAULT_TRAIN_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon",
                        "coins", "clock", "page", "text", "immunohistochemistry", "hubble_deep_field", "cat",
                        "stereo_motorcycle")
HELD_OUT_IMAGES = ("camera", "shepp_logan_phantom")
DENOISER_VERSION = 3  # bump when a network or the training recipe changes (invalidates caches)


# -- validation -------------------------------------------------------------------------------------
def _int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _float(value: object, name: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {value!r}")
    return v


def _sigma_range(value: object, name: str = "sigma") -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
        lo, hi = _float(value[0], name), _float(value[1], name)
    else:
        lo = hi = _float(value, name)
    if lo > hi:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {value!r}")
    return lo, hi


def _seeded(seed: int | None):  # a context that leaves the global RNG untouched when seed is given
    if seed is None:
        return torch.random.fork_rng(devices=[], enabled=False)
    _int(seed, "seed", 0)
    ctx = torch.random.fork_rng(devices=[])

    class _Ctx:
        def __enter__(self) -> None:
            ctx.__enter__()
            torch.manual_seed(seed)

        def __exit__(self, *exc: object) -> None:
            ctx.__exit__(*exc)

    return _Ctx()


def noise_map(sigma: float | Tensor, like: Tensor) -> Tensor:
    """``sigma`` (a float, a (B,) tensor or a (B, 1, *spatial) map) as a (B, 1, *spatial) map like ``like``."""
    if not isinstance(sigma, Tensor):
        sigma = torch.tensor(_float(sigma, "sigma"))
    sigma = sigma.to(device=like.device, dtype=like.dtype)
    shape = (like.shape[0], 1, *like.shape[2:])
    if sigma.ndim == 0:
        return sigma.expand(shape)
    if sigma.ndim == 1 and sigma.shape[0] == like.shape[0]:
        return sigma.view(-1, *([1] * (like.ndim - 1))).expand(shape)
    if sigma.shape == shape:
        return sigma
    raise ValueError(f"sigma must be a float, a ({like.shape[0]},) tensor or a {shape} map, "
                     f"got shape {tuple(sigma.shape)}")


# -- networks --------------------------------------------------------------------------------------
class DnCNN(nn.Module):
    r"""DnCNN: a residual denoising CNN, :math:`D(y) = y - R_\theta(y)`.

    :math:`R_\theta` estimates the noise: a 3 x 3 convolution and ReLU, ``depth - 2`` blocks of
    3 x 3 convolution, batch normalisation and ReLU, and a last 3 x 3 convolution back to the image
    channels (Zhang, Zuo, Chen, Meng & Zhang 2017, "Beyond a Gaussian denoiser: residual learning
    of deep CNN for image denoising", IEEE TIP 26(7), arXiv:1608.03981). Trained with
    :math:`\|R_\theta(x + n) - n\|^2`, which is the MSE of :math:`D`. Blind: ``sigma`` is accepted
    (the :func:`~mlimaging.inverse.learned.pnp` calling convention) and ignored; train it on a
    range of noise levels.

    Parameters
    ----------
    channels : int
        Image channels.
    depth : int
        Number of convolutions (>= 2; 17 in the paper for a known noise level, 20 blind).
    features : int
        Channels of the hidden layers (64 in the paper).
    norm : {"batch", "none"}
        Batch normalisation in the middle blocks (the paper's) or none (then they have a bias).
    bias : bool
        With ``bias=False`` (and ``norm="none"``) no convolution has an additive constant: the
        network is bias-free, :math:`R_\theta` is positively homogeneous,
        :math:`R_\theta(a y, a \sigma) = a R_\theta(y, \sigma)` for :math:`a \ge 0`, which makes a
        denoiser generalise across noise levels and tend to the identity as the noise vanishes
        (Mohan, Kadkhodaie, Simoncelli & Fernandez-Granda 2020, "Robust and interpretable blind
        image denoising via bias-free convolutional neural networks", ICLR, arXiv:1906.05478).
    sigma_input : bool
        Noise-level conditional: the noise map :math:`\sigma` enters as an extra input channel,
        :math:`D(y, \sigma) = y - R_\theta([y, \sigma])` (FFDNet's conditioning: Zhang, Zuo & Zhang
        2018, "FFDNet: toward a fast and flexible solution for CNN-based image denoising", IEEE TIP
        27(9), arXiv:1710.04026), so that a plug-and-play schedule :math:`\sigma_k` is respected.
        Then ``sigma`` is required.
    seed : int, optional
        Initialise the weights from this seed without touching the global RNG.

    Examples
    --------
    >>> import torch
    >>> net = DnCNN(depth=3, features=8, seed=0).eval()
    >>> x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> tuple(net(x).shape), bool(torch.allclose(net(x), x - net.residual(x)))
    ((2, 1, 16, 16), True)
    >>> cond = DnCNN(depth=3, features=8, sigma_input=True, seed=0).eval()
    >>> tuple(cond(x, 0.05).shape)
    (2, 1, 16, 16)
    """

    def __init__(self, *, channels: int = 1, depth: int = 17, features: int = 64, norm: str = "batch",
                 sigma_input: bool = False, bias: bool = True, seed: int | None = None) -> None:
        super().__init__()
        self.channels = _int(channels, "channels")
        self.sigma_input = bool(sigma_input)
        self.depth = _int(depth, "depth", 2)
        self.features = _int(features, "features")
        if norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}")
        self.norm = norm
        if not isinstance(bias, bool) or (not bias and norm != "none"):
            raise ValueError(f"bias must be a bool, and False only with norm='none'; got {bias!r} with norm={norm!r}")
        self.bias = bias
        with _seeded(seed):
            layers: list[nn.Module] = [nn.Conv2d(channels + self.sigma_input, features, 3, padding=1, bias=bias),
                                       nn.ReLU(inplace=True)]
            for _ in range(depth - 2):
                layers.append(nn.Conv2d(features, features, 3, padding=1, bias=bias and norm == "none"))
                if norm == "batch":
                    layers.append(nn.BatchNorm2d(features))
                layers.append(nn.ReLU(inplace=True))
            layers.append(nn.Conv2d(features, channels, 3, padding=1, bias=bias))
            self.body = nn.Sequential(*layers)

    def residual(self, x: Tensor, sigma: float | Tensor | None = None) -> Tensor:
        """The estimated noise :math:`R_\\theta(x)` (:math:`R_\\theta([x, \\sigma])` with ``sigma_input``)."""
        if self.sigma_input:
            if sigma is None:
                raise ValueError("sigma is required by a DnCNN with sigma_input=True")
            return self.body(torch.cat([x, noise_map(sigma, x)], 1))
        return self.body(x)

    def forward(self, x: Tensor, sigma: float | Tensor | None = None) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a (B, {self.channels}, H, W) tensor, got {got}")
        return x - self.residual(x, sigma)


class _Block(nn.Module):
    """Bias-free residual block (conv-ReLU-conv + identity), as in DRUNet."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, padding=1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x)


class UNetDenoiser(nn.Module):
    r"""A small noise-conditional U-Net denoiser in the style of DRUNet: :math:`D(y, \sigma)`.

    The noise level enters as an extra input channel, a constant map :math:`\sigma` (Zhang, Li,
    Zuo, Zhang, Van Gool & Timofte 2021, "Plug-and-play image restoration with deep denoiser
    prior", IEEE TPAMI 44(10), arXiv:2008.13751), so one network serves every noise level
    and :func:`~mlimaging.inverse.learned.pnp` can lower :math:`\sigma` along its iterations.
    Bias-free residual blocks at each of ``len(features)`` scales, 2 x 2 strided convolutions
    down, 2 x 2 transposed convolutions up, skips added (not concatenated); the output is the
    clean image (not the residual). Inputs whose size is not a multiple of
    :math:`2^{\text{scales}-1}` are padded by reflection and cropped back.

    Parameters
    ----------
    channels : int
        Image channels.
    features : sequence of int
        Channels per scale (DRUNet: 64, 128, 256, 512).
    blocks : int
        Residual blocks per scale (DRUNet: 4).
    seed : int, optional
        Initialise the weights from this seed without touching the global RNG.

    Examples
    --------
    >>> import torch
    >>> net = UNetDenoiser(features=(8, 16), blocks=1, seed=0)
    >>> y = torch.rand(2, 1, 15, 17, generator=torch.Generator().manual_seed(0))
    >>> tuple(net(y, 0.1).shape), tuple(net(y, torch.tensor([0.1, 0.2])).shape)
    ((2, 1, 15, 17), (2, 1, 15, 17))
    """

    def __init__(self, *, channels: int = 1, features: Sequence[int] = (32, 64, 128), blocks: int = 2,
                 seed: int | None = None) -> None:
        super().__init__()
        self.channels = _int(channels, "channels")
        feats = [_int(f, "features") for f in features] if isinstance(features, Sequence) else None
        if not feats:
            raise ValueError(f"features must be a non-empty sequence of ints, got {features!r}")
        blocks = _int(blocks, "blocks")
        self.features = tuple(feats)
        with _seeded(seed):
            self.head = nn.Conv2d(channels + 1, feats[0], 3, padding=1, bias=False)
            self.down = nn.ModuleList()
            self.encoders = nn.ModuleList()
            for i, f in enumerate(feats):
                self.encoders.append(nn.Sequential(*[_Block(f) for _ in range(blocks)]))
                if i + 1 < len(feats):
                    self.down.append(nn.Conv2d(f, feats[i + 1], 2, stride=2, bias=False))
            self.up = nn.ModuleList()
            self.decoders = nn.ModuleList()
            for i in range(len(feats) - 1, 0, -1):
                self.up.append(nn.ConvTranspose2d(feats[i], feats[i - 1], 2, stride=2, bias=False))
                self.decoders.append(nn.Sequential(*[_Block(feats[i - 1]) for _ in range(blocks)]))
            self.tail = nn.Conv2d(feats[0], channels, 3, padding=1, bias=False)

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != self.channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a (B, {self.channels}, H, W) tensor, got {got}")
        h, w = x.shape[-2:]
        m = 2 ** (len(self.features) - 1)
        ph, pw = (-h) % m, (-w) % m
        inp = torch.cat([x, noise_map(sigma, x)], 1)
        if ph or pw:
            inp = F.pad(inp, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        z = self.head(inp)
        skips = []
        for i, enc in enumerate(self.encoders):
            z = enc(z)
            if i < len(self.down):
                skips.append(z)
                z = self.down[i](z)
        for up, dec in zip(self.up, self.decoders, strict=True):
            z = dec(up(z) + skips.pop())
        return self.tail(z)[..., :h, :w]


class _SigmaInput(nn.Module):
    """Training adapter: ``net(inp[:, :-1], inp[:, -1:])`` so a noise map can ride in the batch's input."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, inp: Tensor) -> Tensor:
        return self.net(inp[:, :-1], inp[:, -1:])


class SelfEnsemble(nn.Module):
    r"""Geometric self-ensemble of a denoiser: the mean over the 8 flips and quarter turns of the plane.

    .. math:: \hat D_\sigma(x) = \frac{1}{|G|}\sum_{g \in G} g^{-1}\big(D_\sigma(g\,x)\big),

    with :math:`G` the dihedral group of the square (identity, three rotations by 90 degrees and
    their mirror images; ``transforms=4`` keeps the identity, the two flips and the half turn, which
    do not swap height and width). A network trained on randomly flipped and rotated patches is
    nearly but not exactly equivariant; averaging the eight outputs removes the non-equivariant part
    of its error, at eight times the cost ("x8" of Lim et al. 2017, arXiv:1707.02921, and Timofte,
    Rothe & Van Gool 2016, arXiv:1511.02228; used inside plug-and-play by Zhang et al. 2021,
    arXiv:2008.13751). An equivariant denoiser (a pointwise one, say) is returned unchanged.

    Parameters
    ----------
    denoiser : callable
        ``(x, sigma) -> x`` on ``(B, C, H, W)`` (``(B, C, D, H, W)``: the transforms act on the last
        two axes).
    transforms : {8, 4}
        Size of the group averaged over.

    Examples
    --------
    >>> import torch
    >>> net = SelfEnsemble(lambda x, sigma: x * 0.5)
    >>> x = torch.rand(1, 1, 6, 5)
    >>> bool(torch.allclose(net(x, 0.1), x * 0.5))
    True
    """

    def __init__(self, denoiser: Any, *, transforms: int = 8) -> None:
        super().__init__()
        if not callable(denoiser):
            raise ValueError(f"denoiser must be a callable (x, sigma) -> x, got {type(denoiser).__name__}")
        if isinstance(transforms, bool) or not isinstance(transforms, int) or transforms not in (4, 8):
            raise ValueError(f"transforms must be 4 or 8, got {transforms!r}")
        self.denoiser, self.transforms = denoiser, transforms
        self.meta = dict(getattr(denoiser, "meta", {}), self_ensemble=transforms)

    def forward(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim < 3:
            raise ValueError(f"x must be a tensor (B, C, H, W), got {getattr(x, 'shape', type(x).__name__)}")
        return _dihedral_mean(lambda v: self.denoiser(v, sigma), x, self.transforms)


def _dihedral_mean(fn: Any, x: Tensor, transforms: int) -> Tensor:
    r""":math:`\frac{1}{|G|}\sum_{g \in G} g^{-1}(f(g\,x))` over the flips and quarter turns of the last two
    axes (``transforms`` 8: all of them; 4: the identity, the half turn and their flips). ``fn`` may
    scale those axes (a super-resolution network): its outputs are summed as they come."""
    dims = (x.ndim - 2, x.ndim - 1)
    total = None
    for turns in (0, 1, 2, 3) if transforms == 8 else (0, 2):
        for flip in (False, True):
            v = torch.rot90(x, turns, dims)
            v = v.flip(dims[1]) if flip else v
            out = fn(v.contiguous())
            out = out.flip(dims[1]) if flip else out
            out = torch.rot90(out, -turns, dims)
            total = out if total is None else total + out
    return total / transforms


# -- data ------------------------------------------------------------------------------------------
def load_training_images(names: Sequence[str] = DEFAULT_TRAIN_IMAGES) -> list[Tensor]:
    """scikit-image's bundled images as grey float32 tensors ``(1, H, W)`` in [0, 1].

    Colour images are converted with ``skimage.color.rgb2gray`` (alpha dropped); binary ones to 0/1.

    Examples
    --------
    >>> [tuple(t.shape) for t in load_training_images(("camera", "coins"))]
    [(1, 512, 512), (1, 303, 384)]
    """
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.util import img_as_float

    if isinstance(names, str) or not isinstance(names, Sequence) or not names:
        raise ValueError(f"names must be a non-empty sequence of skimage.data image names, got {names!r}")
    out = []
    for name in names:
        loader = getattr(skimage.data, str(name), None)
        if loader is None or not callable(loader):
            raise ValueError(f"names: {name!r} is not an image of skimage.data")
        im = loader()
        im = np.asarray(im[0] if isinstance(im, tuple) else im)  # stereo_motorcycle: (left, right, disparity)
        if im.ndim == 3:
            im = rgb2gray(im[..., :3])
        im = img_as_float(im).astype(np.float32)
        out.append(torch.from_numpy(np.ascontiguousarray(im))[None])
    return out


def _as_images(images: Any) -> list[Tensor]:
    if images is None:
        return load_training_images()
    if isinstance(images, Tensor):
        images = list(images) if images.ndim == 4 else [images]
    if isinstance(images, Sequence) and images and all(isinstance(i, str) for i in images):
        return load_training_images(images)
    if not isinstance(images, Sequence) or not images:
        raise ValueError("images must be a non-empty list of (C, H, W) tensors, a (N, C, H, W) tensor "
                         f"or skimage.data names; got {type(images).__name__}")
    out = []
    for im in images:
        if not isinstance(im, Tensor) or im.ndim != 3 or not im.is_floating_point():
            got = tuple(im.shape) if isinstance(im, Tensor) else type(im).__name__
            raise ValueError(f"images must hold float (C, H, W) tensors, got {got}")
        if not bool(torch.isfinite(im).all()):
            raise ValueError("images contain NaN or infinite values")
        out.append(im.detach().float().cpu())
    return out


def _item_rng(seed: int, index: int) -> tuple[np.random.Generator, torch.Generator]:
    ss = np.random.SeedSequence([seed, index])
    rng = np.random.default_rng(ss)
    g = torch.Generator().manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)))
    return rng, g


def random_patch(images: Sequence[Tensor], size: int | None, rng: np.random.Generator, *,
                 augment: bool = True) -> Tensor:
    """One patch of ``size`` (whole image when None) from a random image, with a random flip/rotation."""
    im = images[int(rng.integers(len(images)))]
    if size is not None:
        h, w = im.shape[-2:]
        if h < size or w < size:
            raise ValueError(f"patch_size {size} is larger than an image of size {(h, w)}")
        i, j = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        im = im[..., i:i + size, j:j + size]
    if augment:
        k = int(rng.integers(8))
        im = torch.rot90(im, k % 4, dims=(-2, -1))
        if k >= 4:
            im = im.flip(-1)
    return im.contiguous()


class _SeededPatches(Dataset):
    """Base of the patch datasets: ``length`` items, item ``i`` drawn from generators seeded by
    ``(seed, i)`` (a random patch of one of ``images``, flipped/rotated when ``augment``)."""

    def __init__(self, images: Any, patch_size: int | None, length: int, augment: bool, seed: int) -> None:
        self.images = _as_images(images)
        self.patch_size = None if patch_size is None else _int(patch_size, "patch_size")
        self.length = _int(length, "length")
        self.augment = bool(augment)
        self.seed = _int(seed, "seed", 0)

    def __len__(self) -> int:
        return self.length

    def _draw(self, index: int) -> tuple[np.random.Generator, torch.Generator, Tensor]:
        """The item's NumPy and torch generators and its clean patch."""
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng, g = _item_rng(self.seed, index)
        return rng, g, random_patch(self.images, self.patch_size, rng, augment=self.augment)


class PatchDataset(_SeededPatches):
    r"""Random noisy/clean patch pairs, :math:`(x + \sigma n, x)`, :math:`\sigma \sim U[\sigma_0, \sigma_1]`.

    Item ``i`` is drawn from generators seeded by ``(seed, i)``: the same index always gives the
    same patch, position, flip/rotation, noise level and noise (so a run through
    :func:`~mlimaging.training.fit` is repeatable and resumable); ``length`` sets how many distinct
    patches an epoch sees.

    Parameters
    ----------
    images : list of Tensor, Tensor or sequence of str, optional
        ``(C, H, W)`` images, a ``(N, C, H, W)`` tensor, or ``skimage.data`` names; default
        :data:`DEFAULT_TRAIN_IMAGES` (grey, camera held out).
    patch_size : int
        Side of the square patches.
    length : int
        Number of items.
    sigma : float or (float, float)
        Noise level or range (images in [0, 1]).
    noise_level_input : bool
        Append the noise map :math:`\sigma` as a last input channel (for :class:`UNetDenoiser`).
    sigma_sampling : {"uniform", "log"}
        Draw :math:`\sigma` uniformly, or log-uniformly (then :math:`\sigma_0 > 0`): more low
        noise levels, where a plug-and-play schedule ends and an MSE-trained denoiser is least
        accurate.
    augment : bool
        Random flips and 90-degree rotations.
    seed : int
        Seed of the items.

    Examples
    --------
    >>> ds = PatchDataset(["coins"], patch_size=8, length=4, sigma=(0.0, 0.1), seed=0)
    >>> noisy, clean = ds[0]
    >>> tuple(noisy.shape), bool(torch.equal(ds[0][0], noisy))
    ((1, 8, 8), True)
    """

    def __init__(self, images: Any = None, *, patch_size: int = 40, length: int = 4096,
                 sigma: float | tuple[float, float] = (0.0, 0.1), noise_level_input: bool = False,
                 augment: bool = True, seed: int = 0, sigma_sampling: str = "uniform") -> None:
        super().__init__(images, _int(patch_size, "patch_size"), length, augment, seed)
        self.sigma = _sigma_range(sigma)
        if sigma_sampling not in ("uniform", "log"):
            raise ValueError(f"sigma_sampling must be 'uniform' or 'log', got {sigma_sampling!r}")
        if sigma_sampling == "log" and self.sigma[0] <= 0:
            raise ValueError(f"sigma_sampling='log' needs a sigma range with low > 0, got {sigma!r}")
        self.sigma_sampling = sigma_sampling
        self.noise_level_input = bool(noise_level_input)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rng, g, clean = self._draw(index)
        lo, hi = self.sigma
        u = float(rng.random())
        s = lo * (hi / lo) ** u if self.sigma_sampling == "log" else lo + (hi - lo) * u
        noisy = clean + s * torch.randn(clean.shape, generator=g)
        if self.noise_level_input:
            noisy = torch.cat([noisy, torch.full_like(clean[:1], s)], 0)
        return noisy, clean


# -- training --------------------------------------------------------------------------------------
def _build(model: str | nn.Module, channels: int, seed: int) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if model == "dncnn":
        cfg = DEFAULT_SETTINGS["dncnn"]
        return DnCNN(channels=channels, depth=cfg["depth"], features=cfg["features"], norm=cfg.get("norm", "batch"),
                     bias=cfg.get("bias", True), sigma_input=cfg.get("sigma_input", False), seed=seed)
    if model == "unet":
        cfg = DEFAULT_SETTINGS["unet"]
        return UNetDenoiser(channels=channels, features=tuple(cfg["features"]), blocks=cfg["blocks"], seed=seed)
    raise ValueError(f"model must be 'dncnn', 'unet' or an nn.Module, got {model!r}")


def train_denoiser(model: str | nn.Module = "dncnn", *, images: Any = None, patch_size: int = 40,
                   patches: int = 4096, sigma: float | tuple[float, float] = (0.0, 0.1), epochs: int = 10,
                   batch_size: int = 32, lr: float = 1e-3, val_patches: int = 256, seed: int = 0,
                   device: str | torch.device = "cpu", progress: bool = False, sigma_sampling: str = "uniform",
                   channels_last: bool = False, **fit_kwargs: Any) -> tuple[nn.Module, Any]:
    r"""Train a Gaussian denoiser on random patches through :func:`mlimaging.training.fit`.

    Minimises the MSE :math:`\mathbb E\,\|D_\theta(x + \sigma n, \sigma) - x\|^2` over the patches
    of a :class:`PatchDataset` (:math:`\sigma` uniform in ``sigma``) with Adam and a cosine
    learning-rate decay over all steps; validation on ``val_patches`` other patches (seed + 1).

    Parameters
    ----------
    model : {"dncnn", "unet"} or nn.Module
        ``"dncnn"``: :class:`DnCNN` (bias-free, no batch norm, noise-map input); ``"unet"``:
        :class:`UNetDenoiser` (32-64-128, 2 blocks), sized as :data:`DEFAULT_SETTINGS`; or a module ``(x, sigma) -> x``. A
        :class:`UNetDenoiser` gets the noise map as input.
    images, patch_size, patches, sigma, sigma_sampling
        As :class:`PatchDataset` (``patches`` is its ``length``).
    epochs, batch_size, lr, seed, device, progress
        Passed to :func:`~mlimaging.training.fit`; ``seed`` also seeds the initial weights and
        the patches.
    val_patches : int
        Size of the validation set (0: none).
    channels_last : bool
        Train with the weights (hence the activations) in ``torch.channels_last`` memory format,
        faster for convolutions on CPU, above all with ``precision="bf16"``; the network is
        returned in the default (contiguous) format.
    **fit_kwargs
        Further options of :func:`~mlimaging.training.fit` (``checkpoint_dir``, ``resume``,
        ``precision="bf16"``: bfloat16 autocast forward passes, about 2x faster on CPUs with
        AVX512-BF16, weights and losses float32, ...).

    Returns
    -------
    (nn.Module, History)
        The trained denoiser in eval mode, and the history (``loss``, ``val_loss``: MSE).

    Examples
    --------
    >>> net, hist = train_denoiser(DnCNN(depth=3, features=8, seed=0), images=["coins"], patch_size=16,
    ...                            patches=64, epochs=2, val_patches=0)
    >>> len(hist), hist["loss"][-1] < hist["loss"][0]
    (2, True)
    """
    from mlimaging.training import fit

    seed = _int(seed, "seed", 0)
    epochs, batch_size, patches = _int(epochs, "epochs"), _int(batch_size, "batch_size"), _int(patches, "patches")
    val_patches = _int(val_patches, "val_patches", 0)
    lr = _float(lr, "lr", positive=True)
    imgs = _as_images(images)
    channels = imgs[0].shape[0]
    net = _build(model, channels, seed)
    conditional = isinstance(net, UNetDenoiser) or bool(getattr(net, "sigma_input", False))
    trainable = _SigmaInput(net) if conditional else net
    kw = dict(patch_size=patch_size, sigma=sigma, noise_level_input=conditional, sigma_sampling=sigma_sampling)
    train = PatchDataset(imgs, length=patches, seed=seed, **kw)
    val = PatchDataset(imgs, length=val_patches, seed=seed + 1, augment=False, **kw) if val_patches else None
    total = epochs * math.ceil(patches / batch_size)
    fit_kwargs.setdefault("scheduler", lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, total))
    fit_kwargs.setdefault("scheduler_interval", "step")
    if channels_last:
        net.to(memory_format=torch.channels_last)
    try:
        history = fit(trainable, train, val, loss=nn.MSELoss(), optimizer=lambda p: torch.optim.Adam(p, lr=lr),
                      epochs=epochs, batch_size=batch_size, seed=seed, metrics=(), device=device,
                      progress=progress, **fit_kwargs)
    finally:
        if channels_last:
            net.to(memory_format=torch.contiguous_format)
    return net.eval(), history


def grow_dncnn(small: DnCNN, big: DnCNN) -> DnCNN:
    r"""Copy a trained :class:`DnCNN` into a deeper and wider one so that both compute the same function.

    Function-preserving growth (Net2Net: Chen, Goodfellow & Shlens 2016, "Net2Net: accelerating
    learning via knowledge transfer", ICLR, arXiv:1511.05641): the small network's convolutions are
    placed at evenly spread depths of ``big``, the other middle layers become identities (a 3 x 3
    delta kernel; exact, since their input is the output of a ReLU, :math:`\max(0, h) = h` for
    :math:`h \ge 0`); each convolution's old output channels read only old input channels (the
    weights from new channels are zero), while the new channels keep ``big``'s own random weights
    and feed nothing at first. Training then grows the new capacity from the small network's
    solution instead of from scratch. Only ``norm="none"`` networks (bias or not).

    Parameters
    ----------
    small, big : DnCNN
        Same ``channels``, ``sigma_input``, ``norm`` ("none") and ``bias``; ``big`` at least as deep
        and as wide. ``big``'s weights are overwritten in place.

    Returns
    -------
    DnCNN
        ``big``.

    Examples
    --------
    >>> import torch
    >>> small = DnCNN(depth=3, features=4, norm="none", bias=False, sigma_input=True, seed=0)
    >>> big = grow_dncnn(small, DnCNN(depth=5, features=8, norm="none", bias=False, sigma_input=True, seed=1))
    >>> x = torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(big(x, 0.1), small(x, 0.1), atol=1e-6))
    True
    """
    same = ("channels", "sigma_input", "norm", "bias")
    if not isinstance(small, DnCNN) or not isinstance(big, DnCNN) or any(
            getattr(small, a) != getattr(big, a) for a in same):
        raise ValueError(f"small and big must be DnCNNs with the same {same}")
    if small.norm != "none":
        raise ValueError("grow_dncnn needs norm='none' networks")
    if big.depth < small.depth or big.features < small.features:
        raise ValueError(f"big ({big.depth} x {big.features}) must be at least as deep and as wide as small "
                         f"({small.depth} x {small.features})")
    s_convs = [m for m in small.body if isinstance(m, nn.Conv2d)]
    b_convs = [m for m in big.body if isinstance(m, nn.Conv2d)]
    n_mid = small.depth - 2
    at = {int(round(v)): i for i, v in enumerate(np.linspace(0, big.depth - 3, n_mid))} if n_mid else {}
    sources: list[nn.Conv2d | None] = [s_convs[0], *[s_convs[1 + at[j]] if j in at else None
                                                       for j in range(big.depth - 2)], s_convs[-1]]
    with torch.no_grad():
        for src, dst in zip(sources, b_convs, strict=True):
            w = dst.weight
            if src is None:  # an identity on the old channels
                old = small.features
                w[:old] = 0
                w[:old, :old, 1, 1] = torch.eye(old)
                if dst.bias is not None:
                    dst.bias[:old] = 0
                continue
            o, i = src.weight.shape[:2]
            if dst is b_convs[-1]:
                w.zero_()
            w[:o] = 0
            w[:o, :i] = src.weight
            if dst.bias is not None:
                dst.bias[:o] = src.bias
    return big


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("MLIMAGING_CACHE", Path.home() / ".cache" / "mlimaging"))


# dncnn: noise-conditional (noise-map channel), bias-free, no batch norm (Mohan et al. 2020), depth 12, 40 features,
# 8192 patches of 48 px x 2 epochs, batch 16, Adam 1e-3 cosine, sigma U[0, 0.2]: 1222 CPU s on two threads, validation
# MSE 1.35e-3 -> 1.23e-3 over the 2 epochs (still falling). Astronaut grey denoised: sigma 0.01 -> 42.64 dB (noisy
# 40.00), 0.03 -> 36.42, 0.1 -> 30.07; PnP-HQS (DPIR schedule, 8 it) on astronaut (blur 2, noise 0.01) 29.21 dB vs TV
# 28.14. The depth-8 batch-norm version before (229 CPU s): 39.13 / 34.06 / 28.55 dB, PnP 27.76 dB.
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "dncnn": {"depth": 12, "features": 40, "norm": "none", "bias": False, "sigma_input": True,
              "sigma_sampling": "uniform", "patch_size": 48, "patches": 8192, "sigma": [0.0, 0.2], "epochs": 2,
              "batch_size": 16, "lr": 1e-3, "seed": 0, "warm_start": None, "images": None, "precision": None,
              "channels_last": None},
    "unet": {"features": [32, 64, 128], "blocks": 2, "patch_size": 48, "patches": 4096, "sigma": [0.0, 0.1],
             "epochs": 8, "batch_size": 32, "lr": 1e-3, "seed": 0, "sigma_sampling": None, "warm_start": None,
             "images": None, "precision": None, "channels_last": None},
}


def default_denoiser(kind: str = "dncnn", *, cache_dir: str | os.PathLike | None = None, retrain: bool = False,
                     progress: bool = False, **settings: Any) -> nn.Module:
    r"""The trained default denoiser of ``kind``, cached on disk (trained once, then loaded).

    Trained by :func:`train_denoiser` on :data:`DEFAULT_TRAIN_IMAGES` (``camera`` held out) with
    :data:`DEFAULT_SETTINGS` updated by ``settings``; cached in ``cache_dir`` (default
    ``$MLIMAGING_CACHE`` or ``~/.cache/mlimaging``) as
    ``inverse_{kind}_v{version}_{hash}.pt``, where the hash covers every setting, so a change of
    setting trains a new one. The checkpoint loads with ``torch.load(weights_only=True)`` and its
    ``meta`` holds the settings, the final validation MSE and the training CPU seconds.

    Parameters
    ----------
    kind : {"dncnn", "unet"}
        :class:`DnCNN` or :class:`UNetDenoiser`.
    cache_dir : path, optional
        Cache folder.
    retrain : bool
        Train even when cached.
    progress : bool
        Show fit's progress.
    **settings
        Overrides of :data:`DEFAULT_SETTINGS` (``depth``, ``features``, ``epochs``, ``patches``, ...).
        ``warm_start`` (a dict of such overrides, default None) continues the training of that
        default denoiser (loaded from the cache, trained first if absent) instead of starting from
        random weights: a longer schedule in stages, each cached (a DnCNN of another ``depth`` or
        ``features`` starts from the smaller one grown by :func:`grow_dncnn`); ``meta["warm_start_cpu_seconds"]``
        then holds the CPU seconds of the stages before. ``images`` (``skimage.data`` names,
        default None: :data:`DEFAULT_TRAIN_IMAGES`) trains on other bundled images; ``camera``
        and ``shepp_logan_phantom`` are refused. ``precision`` (None: float32, or ``"bf16"``:
        bfloat16 autocast forward passes in :func:`~mlimaging.training.fit`) and ``channels_last``
        (None or a bool) set how it is trained, not the network (evaluated in float32).

    Returns
    -------
    nn.Module
        In eval mode; ``meta`` attribute with the checkpoint's metadata.
    """
    import time

    from mlimaging.training import load_checkpoint, save_checkpoint

    if kind not in DEFAULT_SETTINGS:
        raise ValueError(f"kind must be one of {sorted(DEFAULT_SETTINGS)}, got {kind!r}")
    unknown = set(settings) - set(DEFAULT_SETTINGS[kind])
    if unknown:
        raise ValueError(f"settings: unknown option(s) {sorted(unknown)} for {kind!r}; "
                         f"expected some of {sorted(DEFAULT_SETTINGS[kind])}")
    cfg = {**DEFAULT_SETTINGS[kind], **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()}}
    if cfg.get("warm_start") is not None and not isinstance(cfg["warm_start"], dict):
        raise ValueError(f"warm_start must be a dict of settings or None, got {cfg['warm_start']!r}")
    if cfg.get("images") is not None:
        ims = cfg["images"]
        if isinstance(ims, str) or not isinstance(ims, (list, tuple)) or not ims or not all(
                isinstance(i, str) for i in ims):
            raise ValueError(f"images must be a non-empty list of skimage.data names or None, got {ims!r}")
        if set(ims) & set(HELD_OUT_IMAGES):
            raise ValueError(f"images must not contain the held-out test images {HELD_OUT_IMAGES}, got {ims!r}")
        cfg["images"] = list(ims)
    train_images = list(DEFAULT_TRAIN_IMAGES) if cfg.get("images") is None else cfg["images"]
    # unset options (None) stay out of the hash, so that adding an option keeps older cache keys
    if cfg.get("precision") not in (None, "fp32", "bf16"):
        raise ValueError(f"precision must be None, 'fp32' or 'bf16', got {cfg['precision']!r}")
    if cfg.get("channels_last") is not None and not isinstance(cfg["channels_last"], bool):
        raise ValueError(f"channels_last must be a bool or None, got {cfg['channels_last']!r}")
    optional = ("warm_start", "images", "precision", "channels_last", "sigma_sampling")
    hashed = {k: v for k, v in cfg.items() if not (k in optional and v is None)}
    key = hashlib.sha256(json.dumps({"kind": kind, "v": DENOISER_VERSION, "images": DEFAULT_TRAIN_IMAGES, **hashed},
                                    sort_keys=True).encode()).hexdigest()[:12]
    path = _cache_dir(cache_dir) / f"inverse_{kind}_v{DENOISER_VERSION}_{key}.pt"
    if kind == "dncnn":
        net: nn.Module = DnCNN(depth=cfg["depth"], features=cfg["features"], norm=cfg.get("norm", "batch"),
                               bias=cfg.get("bias", True), sigma_input=cfg.get("sigma_input", False),
                               seed=cfg["seed"])
    else:
        net = UNetDenoiser(features=tuple(cfg["features"]), blocks=cfg["blocks"], seed=cfg["seed"])
    if path.is_file() and not retrain:
        ckpt = load_checkpoint(path)
        net.load_state_dict(ckpt["model"])
        net.meta = dict(ckpt["meta"])
        return net.eval()
    start_meta = None
    if cfg.get("warm_start") is not None:  # continue from another default denoiser (trained first if not cached)
        start = default_denoiser(kind, cache_dir=cache_dir, progress=progress, **cfg["warm_start"])
        if isinstance(start, DnCNN) and (start.depth, start.features) != (net.depth, net.features):
            grow_dncnn(start, net)  # a larger network: grown from the start, computing the same function
        else:
            net.load_state_dict(start.state_dict())
        start_meta = start.meta
    t0 = time.process_time()
    net, hist = train_denoiser(net, patch_size=cfg["patch_size"], patches=cfg["patches"],
                               sigma=tuple(cfg["sigma"]), epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                               lr=cfg["lr"], seed=cfg["seed"], progress=progress,
                               sigma_sampling=cfg.get("sigma_sampling") or "uniform", images=train_images,
                               channels_last=bool(cfg.get("channels_last")),
                               **({"precision": cfg["precision"]} if cfg.get("precision") else {}))
    meta = {"kind": kind, "version": DENOISER_VERSION, "settings": cfg, "images": train_images,
            "val_mse": float(hist["val_loss"][-1]), "cpu_seconds": time.process_time() - t0,
            "threads": torch.get_num_threads()}
    if start_meta is not None:
        meta["warm_start_cpu_seconds"] = float(start_meta["cpu_seconds"]) + float(
            start_meta.get("warm_start_cpu_seconds", 0.0))
    if not math.isfinite(meta["val_mse"]):
        raise ValueError("the denoiser did not train (non-finite validation loss)")
    save_checkpoint({"model": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "meta": meta}, path)
    net.meta = meta
    return net.eval()

r"""Batched, seeded image augmentations for self-supervised learning (no PIL round trip).

Every transform is a callable ``t(x, *, generator) -> Tensor`` on a ``(B, C, H, W)`` float
tensor (1-channel or RGB, on any device). It returns a new tensor (``x`` is never modified)
and draws one set of random parameters per sample from ``generator``, a CPU
``torch.Generator`` (the draws are moved to ``x``'s device), so the same generator state gives
the same output. Intensity transforms take an explicit ``valid_range = (lo, hi)``: images are
not always in :math:`[0, 1]` (CT is in Hounsfield units, about :math:`[-1000, 2000]`); their
strengths are fractions of :math:`hi - lo` and their output is clamped into the range.

- geometry: :class:`RandomResizedCrop`, :class:`RandomFlip`, :class:`RandomRotation`;
- intensity: :class:`IntensityJitter`, :class:`ColorJitter` (RGB), :class:`GaussianNoise`,
  :class:`GaussianBlur`, :class:`Cutout`, and the deterministic :class:`Sobel`;
- composition: :class:`Compose`, :class:`RandomApply`, :class:`TwoViews` and the SimCLR
  pipeline :func:`simclr_augment` (Chen et al. 2020, arXiv:2002.05709).

Examples
--------
>>> import torch
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.rand(8, 1, 28, 28, generator=g)
>>> v1, v2 = TwoViews(simclr_augment(28))(x, generator=g)
>>> v1.shape, bool(v1.min() >= 0 and v1.max() <= 1), bool((v1 != v2).any())
(torch.Size([8, 1, 28, 28]), True, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "ColorJitter",
    "Compose",
    "Cutout",
    "GaussianBlur",
    "GaussianNoise",
    "IntensityJitter",
    "RandomApply",
    "RandomFlip",
    "RandomResizedCrop",
    "RandomRotation",
    "Sobel",
    "Transform",
    "TwoViews",
    "simclr_augment",
]


# ---------------------------------------------------------------- validation and draws


def _check_images(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x must be a torch.Tensor of shape (B, C, H, W), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating-point tensor, got {x.dtype}")
    return x


def _check_generator(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        return torch.default_generator
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU torch.Generator, got one on {generator.device}")
    return generator


def _number(name: str, value: object, *, low: float = 0.0, high: float = math.inf,
            low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        lo = "(" if low_open else "["
        raise ValueError(f"{name} must be in {lo}{low}, {high}], got {value!r}")
    return float(value)


def _interval(name: str, value: object, *, low: float = 0.0, high: float = math.inf,
              low_open: bool = False) -> tuple[float, float]:
    """A number (used as a fixed value) or an ordered pair ``(a, b)`` inside ``[low, high]``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        v = _number(name, value, low=low, high=high, low_open=low_open)
        return v, v
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"{name} must be a number or a pair (min, max), got {value!r}")
    a = _number(name, value[0], low=low, high=high, low_open=low_open)
    b = _number(name, value[1], low=low, high=high, low_open=low_open)
    if a > b:
        raise ValueError(f"{name} must be ordered (min <= max), got {value!r}")
    return a, b


def _probability(p: object) -> float:
    return _number("p", p, low=0.0, high=1.0)


def _valid_range(valid_range: object) -> tuple[float, float]:
    if not isinstance(valid_range, (tuple, list)) or len(valid_range) != 2:
        raise ValueError(f"valid_range must be a pair (lo, hi), got {valid_range!r}")
    lo, hi = valid_range
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"valid_range must hold two finite numbers, got {valid_range!r}")
    if not lo < hi:
        raise ValueError(f"valid_range must satisfy lo < hi, got {valid_range!r}")
    return float(lo), float(hi)


def _uniform(g: torch.Generator, n: int, interval: tuple[float, float],
             like: torch.Tensor) -> torch.Tensor:
    """``n`` draws of U(a, b) on the CPU generator, moved to ``like``'s device and dtype."""
    a, b = interval
    u = torch.rand(n, generator=g, dtype=torch.float64)
    return (a + (b - a) * u).to(device=like.device, dtype=like.dtype)


def _bernoulli(g: torch.Generator, n: int, p: float, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=g) < p).to(device)


class Transform:
    """Base class: validates ``x`` and the generator, then calls ``self.apply(x, generator)``."""

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(_check_images(x), _check_generator(generator))

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


# ---------------------------------------------------------------- geometry


class RandomResizedCrop(Transform):
    r"""Crop a random area fraction and aspect ratio, resized to ``size`` (bilinear, per sample).

    For each sample, an area fraction :math:`s \sim U(\text{scale})` and an aspect ratio
    :math:`r = w/h` with :math:`\log r \sim U(\log \text{ratio})` give a crop of
    :math:`w = \sqrt{s r H W}`, :math:`h = \sqrt{s H W / r}` pixels (each at most the image
    side), at a uniformly random position inside the image; it is resampled to ``size`` through
    one affine grid (``affine_grid`` + ``grid_sample``). Bilinear weights are convex, so the
    output stays inside the input's range. The crop of SimCLR (Chen et al. 2020,
    arXiv:2002.05709) after Szegedy et al. 2015.

    Parameters
    ----------
    size
        Output ``(height, width)`` or one int for a square.
    scale
        Range of the area fraction, inside ``(0, 1]``.
    ratio
        Range of the aspect ratio :math:`w/h`, positive.

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(2, 3, 32, 32)
    >>> RandomResizedCrop(16)(x, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 16, 16])
    """

    def __init__(self, size: int | tuple[int, int], scale: tuple[float, float] = (0.2, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)):
        if isinstance(size, int) and not isinstance(size, bool):
            size = (size, size)
        if not isinstance(size, (tuple, list)) or len(size) != 2 or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in size):
            raise ValueError(f"size must be a positive int or a pair of positive ints, got {size!r}")
        self.size = (int(size[0]), int(size[1]))
        self.scale = _interval("scale", scale, low=0.0, high=1.0, low_open=True)
        self.ratio = _interval("ratio", ratio, low=0.0, low_open=True)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        s = _uniform(generator, b, self.scale, x)
        log_r = _uniform(generator, b, (math.log(self.ratio[0]), math.log(self.ratio[1])), x)
        r = log_r.exp()
        w_frac = (s * r * h / w).sqrt().clamp(max=1.0)
        h_frac = (s / r * w / h).sqrt().clamp(max=1.0)
        cx = (2 * _uniform(generator, b, (0.0, 1.0), x) - 1) * (1 - w_frac)
        cy = (2 * _uniform(generator, b, (0.0, 1.0), x) - 1) * (1 - h_frac)
        zero = torch.zeros_like(s)
        theta = torch.stack([torch.stack([w_frac, zero, cx], 1),
                             torch.stack([zero, h_frac, cy], 1)], 1)
        grid = F.affine_grid(theta, [b, x.shape[1], *self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomFlip(Transform):
    r"""Mirror each sample with probability ``p``: left-right, or up-down with ``vertical=True``.

    .. math:: y[c, i, j] = x[c, i, W - 1 - j] \quad (\text{or } x[c, H - 1 - i, j])

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(3.0).reshape(1, 1, 1, 3)
    >>> RandomFlip(p=1.0)(x, generator=torch.Generator()).flatten().tolist()
    [2.0, 1.0, 0.0]
    """

    def __init__(self, p: float = 0.5, *, vertical: bool = False):
        self.p = _probability(p)
        self.vertical = bool(vertical)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        flip = _bernoulli(generator, x.shape[0], self.p, x.device).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(-2 if self.vertical else -1), x)


class RandomRotation(Transform):
    r"""Rotate each sample about the image centre by a random angle :math:`\theta \sim U(\text{degrees})`.

    Pixel coordinates :math:`(u, v)` relative to the centre are sampled at
    :math:`R_\theta (u, v)^\top` with bilinear interpolation; points that fall outside the
    image take the value ``fill`` (choose it inside your ``valid_range``: -1000 HU for air).
    With the row axis pointing down, a positive angle turns the image clockwise on screen
    (90 degrees is ``torch.rot90(x, -1, (-2, -1))``).

    Parameters
    ----------
    degrees
        A number :math:`d \ge 0` for :math:`U(-d, d)`, or a pair ``(min, max)``.
    fill
        Value outside the rotated image.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 5, 5); x[0, 0, 2, 4] = 1.0
    >>> y = RandomRotation((90.0, 90.0))(x, generator=torch.Generator())
    >>> [int(i) for i in (y[0, 0] > 0.5).nonzero()[0]]  # the right-middle pixel moved to the bottom
    [4, 2]
    """

    def __init__(self, degrees: float | tuple[float, float], *, fill: float = 0.0):
        if isinstance(degrees, (int, float)) and not isinstance(degrees, bool):
            d = _number("degrees", degrees, low=0.0, high=360.0)
            degrees = (-d, d)
        self.degrees = _interval("degrees", degrees, low=-360.0, high=360.0)
        self.fill = _number("fill", fill, low=-math.inf)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        angle = _uniform(generator, b, self.degrees, x) * (math.pi / 180.0)
        cos, sin = angle.cos(), angle.sin()
        zero = torch.zeros_like(cos)
        # sampling grid in normalised coordinates: inverse rotation, corrected for the aspect
        theta = torch.stack([torch.stack([cos, sin * h / w, zero], 1),
                             torch.stack([-sin * w / h, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, [b, c, h, w], align_corners=False)
        out = F.grid_sample(x - self.fill, grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)
        return out + self.fill


# ---------------------------------------------------------------- intensity


class IntensityJitter(Transform):
    r"""Random contrast and brightness for grey-level (or any-channel) images, clamped into ``valid_range``.

    .. math::

        y = \operatorname{clip}_{[lo, hi]}\bigl(\bar x + c\,(x - \bar x) + b\,(hi - lo)\bigr),
        \quad c \sim U(\max(0, 1 - \text{contrast}), 1 + \text{contrast}),\;
        b \sim U(-\text{brightness}, \text{brightness}),

    with :math:`\bar x` the sample's mean. Brightness is a fraction of the range, so the same
    settings mean the same on :math:`[0, 1]` images and on CT in HU.

    Examples
    --------
    >>> import torch
    >>> x = torch.full((2, 1, 4, 4), 0.5)
    >>> y = IntensityJitter(brightness=2.0, contrast=0.0)(x, generator=torch.Generator().manual_seed(0))
    >>> bool(y.min() >= 0.0 and y.max() <= 1.0)
    True
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, *,
                 valid_range: tuple[float, float] = (0.0, 1.0)):
        self.brightness = _number("brightness", brightness)
        self.contrast = _number("contrast", contrast)
        self.valid_range = _valid_range(valid_range)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        lo, hi = self.valid_range
        c = _uniform(generator, b, (max(0.0, 1 - self.contrast), 1 + self.contrast), x).view(-1, 1, 1, 1)
        shift = _uniform(generator, b, (-self.brightness, self.brightness), x).view(-1, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        return (mean + c * (x - mean) + shift * (hi - lo)).clamp(lo, hi)


_GRAY = (0.299, 0.587, 0.114)


class ColorJitter(Transform):
    r"""Random brightness, contrast, saturation and hue of RGB images (fixed order), clamped into ``valid_range``.

    With :math:`u = (x - lo)/(hi - lo)` in :math:`[0, 1]` and :math:`\gamma(u)` its luma
    (:math:`0.299 R + 0.587 G + 0.114 B`), each sample draws factors
    :math:`f_b, f_c, f_s \sim U(\max(0, 1 - s), 1 + s)` for the strengths and
    :math:`\eta \sim U(-\text{hue}, \text{hue})`, then, clipping to :math:`[0, 1]` after each:

    .. math::

        u \leftarrow f_b u, \quad
        u \leftarrow f_c u + (1 - f_c)\,\overline{\gamma(u)}, \quad
        u \leftarrow f_s u + (1 - f_s)\,\gamma(u), \quad
        u \leftarrow \text{YIQ}^{-1} R_{2\pi\eta} \text{YIQ}\, u,

    the hue shift being a rotation of the chroma plane (I, Q) of YIQ space. As in SimCLR's
    colour distortion (Chen et al. 2020, arXiv:2002.05709).

    Examples
    --------
    >>> import torch
    >>> x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> y = ColorJitter(0.4, 0.4, 0.4, 0.1)(x, generator=torch.Generator().manual_seed(1))
    >>> y.shape, bool(y.min() >= 0 and y.max() <= 1)
    (torch.Size([2, 3, 8, 8]), True)
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.1, *, valid_range: tuple[float, float] = (0.0, 1.0)):
        self.brightness = _number("brightness", brightness)
        self.contrast = _number("contrast", contrast)
        self.saturation = _number("saturation", saturation)
        self.hue = _number("hue", hue, high=0.5)
        self.valid_range = _valid_range(valid_range)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if x.shape[1] != 3:
            raise ValueError(f"x must be RGB (3 channels) for ColorJitter, got {x.shape[1]} channels")
        b = x.shape[0]
        lo, hi = self.valid_range
        fb, fc, fs = (_uniform(generator, b, (max(0.0, 1 - s), 1 + s), x).view(-1, 1, 1, 1)
                      for s in (self.brightness, self.contrast, self.saturation))
        eta = _uniform(generator, b, (-self.hue, self.hue), x)
        gray_w = torch.tensor(_GRAY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        u = ((x - lo) / (hi - lo)).clamp(0, 1)
        u = (fb * u).clamp(0, 1)
        mean_gray = (u * gray_w).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        u = (fc * u + (1 - fc) * mean_gray).clamp(0, 1)
        u = (fs * u + (1 - fs) * (u * gray_w).sum(1, keepdim=True)).clamp(0, 1)
        yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]], dtype=x.dtype, device=x.device)
        cos, sin = (2 * math.pi * eta).cos(), (2 * math.pi * eta).sin()
        rot = torch.zeros(b, 3, 3, dtype=x.dtype, device=x.device)
        rot[:, 0, 0] = 1
        rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
        m = torch.linalg.inv(yiq) @ rot @ yiq  # (B, 3, 3)
        u = torch.einsum("bij,bjhw->bihw", m, u).clamp(0, 1)
        return lo + (hi - lo) * u


class GaussianNoise(Transform):
    r"""Additive Gaussian noise with a standard deviation given as a fraction of the range.

    .. math:: y = \operatorname{clip}_{[lo, hi]}\bigl(x + \sigma (hi - lo)\,\varepsilon\bigr),
        \quad \varepsilon \sim \mathcal N(0, I),

    :math:`\sigma` fixed, or drawn per sample from :math:`U(\sigma_{min}, \sigma_{max})`.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 64, 64)
    >>> y = GaussianNoise(0.01, valid_range=(-1000.0, 1000.0))(x, generator=torch.Generator().manual_seed(0))
    >>> 15.0 < y.std().item() < 25.0  # 0.01 of a 2000 HU range
    True
    """

    def __init__(self, sigma: float | tuple[float, float] = 0.05, *,
                 valid_range: tuple[float, float] = (0.0, 1.0)):
        self.sigma = _interval("sigma", sigma)
        self.valid_range = _valid_range(valid_range)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        lo, hi = self.valid_range
        sigma = _uniform(generator, x.shape[0], self.sigma, x).view(-1, 1, 1, 1)
        noise = torch.randn(x.shape, generator=generator, dtype=torch.float64)
        noise = noise.to(device=x.device, dtype=x.dtype)
        return (x + sigma * (hi - lo) * noise).clamp(lo, hi)


def _gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    t = torch.arange(kernel_size, dtype=sigma.dtype, device=sigma.device) - (kernel_size - 1) / 2
    k = torch.exp(-t.pow(2) / (2 * sigma.view(-1, 1).pow(2)))
    return k / k.sum(dim=1, keepdim=True)  # (B, k)


def _separable(x: torch.Tensor, kx: torch.Tensor, ky: torch.Tensor) -> torch.Tensor:
    """Per-sample separable correlation: ``kx`` (B, k) along W, ``ky`` (B, k) along H, replicate padding."""
    b, c, h, w = x.shape
    k = kx.shape[1]
    r = k // 2
    flat = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
    wx = kx.repeat_interleave(c, dim=0).view(b * c, 1, 1, k)
    wy = ky.repeat_interleave(c, dim=0).view(b * c, 1, k, 1)
    out = F.conv2d(F.conv2d(flat, wx, groups=b * c), wy, groups=b * c)
    return out.view(b, c, h, w)


class GaussianBlur(Transform):
    r"""Blur each sample, with probability ``p``, by a Gaussian of random width :math:`\sigma \sim U(\text{sigma})`.

    .. math:: y = x * (g_\sigma \otimes g_\sigma), \qquad
        g_\sigma[t] \propto \exp\bigl(-t^2 / (2\sigma^2)\bigr),\;
        t = -\tfrac{k-1}{2}, \dots, \tfrac{k-1}{2},

    a separable convolution (one pass along W, one along H) with replicate padding and
    normalised kernels, so the output stays inside the input's range. SimCLR blurs with
    :math:`k \approx` 10% of the image side, :math:`\sigma \in [0.1, 2]`, ``p = 0.5``.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 7, 7); x[0, 0, 3, 3] = 1.0
    >>> y = GaussianBlur(5, sigma=1.0, p=1.0)(x, generator=torch.Generator())
    >>> round(y.sum().item(), 5), bool(y[0, 0, 3, 3] < 1.0)
    (1.0, True)
    """

    def __init__(self, kernel_size: int, sigma: float | tuple[float, float] = (0.1, 2.0),
                 p: float = 0.5):
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 \
                or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
        self.kernel_size = kernel_size
        self.sigma = _interval("sigma", sigma, low=0.0, low_open=True)
        self.p = _probability(p)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        chosen = _bernoulli(generator, b, self.p, x.device).view(-1, 1, 1, 1)
        sigma = _uniform(generator, b, self.sigma, x)
        k = _gaussian_kernels(sigma, self.kernel_size)
        return torch.where(chosen, _separable(x, k, k), x)


class Cutout(Transform):
    r"""Erase, with probability ``p``, one ``size`` x ``size`` square per sample, centred on a random pixel.

    .. math:: y[c, i, j] = \text{fill} \text{ if } |i - i_0| \text{ and } |j - j_0| \text{ fall in the square, else } x[c, i, j]

    The square may extend past the border (then only its inside part is erased). DeVries and
    Taylor, "Improved Regularization of Convolutional Neural Networks with Cutout", 2017,
    arXiv:1708.04552.

    Examples
    --------
    >>> import torch
    >>> y = Cutout(2, p=1.0)(torch.ones(1, 1, 6, 6), generator=torch.Generator().manual_seed(0))
    >>> 1 <= int((y == 0).sum()) <= 4
    True
    """

    def __init__(self, size: int, p: float = 1.0, *, fill: float = 0.0):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int (pixels), got {size!r}")
        self.size = size
        self.p = _probability(p)
        self.fill = _number("fill", fill, low=-math.inf)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        chosen = _bernoulli(generator, b, self.p, x.device).view(-1, 1, 1)
        cy = torch.randint(h, (b,), generator=generator).to(x.device).view(-1, 1, 1)
        cx = torch.randint(w, (b,), generator=generator).to(x.device).view(-1, 1, 1)
        top, left = cy - self.size // 2, cx - self.size // 2
        ii = torch.arange(h, device=x.device).view(1, -1, 1)
        jj = torch.arange(w, device=x.device).view(1, 1, -1)
        inside = (ii >= top) & (ii < top + self.size) & (jj >= left) & (jj < left + self.size)
        return x.masked_fill((inside & chosen).unsqueeze(1), self.fill)


class Sobel(Transform):
    r"""Sobel gradient magnitude of each channel (deterministic; the generator is unused).

    .. math::

        G_x = \begin{pmatrix} -1 & 0 & 1 \\ -2 & 0 & 2 \\ -1 & 0 & 1 \end{pmatrix} \star x, \quad
        G_y = G_x^\top\text{-kernel} \star x, \quad y = \sqrt{G_x^2 + G_y^2},

    with replicate padding (a constant image gives 0 everywhere). An ideal step of height
    :math:`h` gives :math:`4h` on the two pixels beside it. Sobel and Feldman 1968.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(4, 4).reshape(1, 1, 4, 4)
    >>> Sobel()(x)[0, 0, 0].tolist()
    [0.0, 4.0, 4.0, 0.0]
    """

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is not None:
            _check_generator(generator)
        return self.apply(_check_images(x), None)

    def apply(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        b, c, h, w = x.shape
        deriv = torch.tensor([-1.0, 0.0, 1.0], dtype=x.dtype, device=x.device).expand(b, 3)
        smooth = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device).expand(b, 3)
        gx = _separable(x, deriv, smooth)
        gy = _separable(x, smooth, deriv)
        return torch.sqrt(gx.pow(2) + gy.pow(2))


# ---------------------------------------------------------------- composition


class Compose(Transform):
    """Apply transforms in order, all drawing from the same generator.

    Examples
    --------
    >>> import torch
    >>> t = Compose([RandomFlip(p=1.0), RandomFlip(p=1.0)])
    >>> x = torch.rand(2, 1, 4, 4)
    >>> torch.equal(t(x, generator=torch.Generator()), x)
    True
    """

    def __init__(self, transforms: Sequence[Callable[..., torch.Tensor]]):
        transforms = list(transforms)
        for t in transforms:
            if not callable(t):
                raise ValueError(f"transforms must be callables t(x, *, generator), got {t!r}")
        self.transforms = transforms

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = x
        for t in self.transforms:
            out = t(out, generator=generator)
        return out if out is not x else x.clone()


class RandomApply(Transform):
    """Apply ``transform`` to each sample with probability ``p`` (to the chosen sub-batch).

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(4, 1, 2, 2)
    >>> y = RandomApply(GaussianNoise(0.5), p=0.0)(x, generator=torch.Generator())
    >>> torch.equal(y, x)
    True
    """

    def __init__(self, transform: Callable[..., torch.Tensor], p: float = 0.5):
        if not callable(transform):
            raise ValueError(f"transform must be a callable t(x, *, generator), got {transform!r}")
        self.transform = transform
        self.p = _probability(p)

    def apply(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        chosen = _bernoulli(generator, x.shape[0], self.p, x.device)
        out = x.clone()
        idx = chosen.nonzero().flatten()
        if idx.numel():
            y = self.transform(x[idx], generator=generator)
            if y.shape[1:] != x.shape[1:]:
                raise ValueError("transform inside RandomApply must keep the image shape, got "
                                 f"{tuple(y.shape[1:])} from {tuple(x.shape[1:])}")
            out[idx] = y
        return out


class TwoViews:
    """Two independently augmented views of the same batch: ``v1, v2 = TwoViews(t)(x, generator=g)``.

    Examples
    --------
    >>> import torch
    >>> v1, v2 = TwoViews(GaussianNoise(0.1))(torch.full((2, 1, 4, 4), 0.5), generator=torch.Generator())
    >>> v1.shape == v2.shape, bool((v1 != v2).any())
    (True, True)
    """

    def __init__(self, transform: Callable[..., torch.Tensor]):
        if not callable(transform):
            raise ValueError(f"transform must be a callable t(x, *, generator), got {transform!r}")
        self.transform = transform

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        x = _check_images(x)
        generator = _check_generator(generator)
        return self.transform(x, generator=generator), self.transform(x, generator=generator)

    def __repr__(self) -> str:
        return f"TwoViews({self.transform!r})"


def simclr_augment(image_size: int | tuple[int, int], *, channels: int = 1,
                   valid_range: tuple[float, float] = (0.0, 1.0), strength: str = "full",
                   min_scale: float = 0.2, flip: bool = True) -> Compose:
    r"""SimCLR's augmentation pipeline on batched tensors, or its crop-only ablation.

    ``strength="full"``: random resized crop (area in ``[min_scale, 1]``), horizontal flip
    (p = 0.5; ``flip=False`` leaves it out, for images whose mirror image means something
    else: digits, or left and right in a scan), jitter with p = 0.8 (:class:`IntensityJitter` 0.4/0.4 for 1 channel,
    :class:`ColorJitter` 0.4/0.4/0.4/0.1 for RGB), Gaussian blur (kernel about 10% of the side,
    :math:`\sigma \in [0.1, 2]`, p = 0.5). ``strength="crop"``: the crop alone, the weak
    augmentation with which contrastive learning can solve its task by trivial cues such as
    intensity histograms (Chen et al. 2020, arXiv:2002.05709, section 3).

    Examples
    --------
    >>> import torch
    >>> t = simclr_augment(28, strength="crop")
    >>> len(t.transforms), t(torch.rand(2, 1, 28, 28), generator=torch.Generator()).shape
    (1, torch.Size([2, 1, 28, 28]))
    >>> len(simclr_augment(28).transforms), len(simclr_augment(28, flip=False).transforms)
    (4, 3)
    """
    if strength not in ("full", "crop"):
        raise ValueError(f"strength must be 'full' or 'crop', got {strength!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not isinstance(flip, bool):
        raise ValueError(f"flip must be a bool, got {flip!r}")
    vr = _valid_range(valid_range)
    min_scale = _number("min_scale", min_scale, low=0.0, high=1.0, low_open=True)
    crop = RandomResizedCrop(image_size, scale=(min_scale, 1.0))
    if strength == "crop":
        return Compose([crop])
    side = min(crop.size)
    kernel = max(3, int(0.1 * side) // 2 * 2 + 1)
    jitter = (ColorJitter(0.4, 0.4, 0.4, 0.1, valid_range=vr) if channels == 3
              else IntensityJitter(0.4, 0.4, valid_range=vr))
    flips = [RandomFlip(0.5)] if flip else []
    return Compose([crop, *flips, RandomApply(jitter, p=0.8), GaussianBlur(kernel, sigma=(0.1, 2.0), p=0.5)])

r"""Losses for super-resolution: what the training rewards shapes what the network draws.

Pixel losses (:func:`charbonnier`, L1 and L2 through :mod:`mlimaging.metrics`, Huber), the
total-variation prior (:func:`total_variation`), the multi-scale loss of LapSRN
(:class:`MultiScaleLoss`), a perceptual loss in the feature space of a frozen network
(:class:`PerceptualLoss`, :func:`load_vgg_features`), an SRGAN-style adversarial loss with a
patch discriminator (:class:`PatchDiscriminator`, :class:`SRGANStep` for
:func:`mlimaging.training.fit`) and their weighted sum (:class:`CompositeLoss`).

L2 is the MSE whose minimiser is the conditional mean: averaging the plausible textures gives
blurry edges. L1 and Charbonnier (its smooth version) are the median and keep edges sharper;
perceptual and adversarial losses reward textures that look right rather than the mean.

References
----------
Lai W.-S. et al. (2017). Deep Laplacian pyramid networks for fast and accurate
super-resolution. CVPR. arXiv:1704.03915 (Charbonnier loss at every level).

Johnson J., Alahi A., Fei-Fei L. (2016). Perceptual losses for real-time style transfer and
super-resolution. ECCV. arXiv:1603.08155.

Ledig C., Theis L., Huszar F., et al. (2017). Photo-realistic single image super-resolution
using a generative adversarial network. CVPR. arXiv:1609.04802.

Isola P., Zhu J.-Y., Zhou T., Efros A. A. (2017). Image-to-image translation with conditional
adversarial networks (PatchGAN). CVPR. arXiv:1611.07004.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.metrics import sad, ssd
from mlimaging.training.step import StepOutput, TrainStep

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LOSSES",
    "VGG16_LAYERS",
    "CompositeLoss",
    "MultiScaleLoss",
    "PatchDiscriminator",
    "PerceptualLoss",
    "SRGANStep",
    "charbonnier",
    "huber",
    "l1_loss",
    "l2_loss",
    "load_vgg_features",
    "total_variation",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Indices of the ReLU outputs in torchvision's ``vgg16().features`` (and
#: ``make_vgg_features("D")``): ``relu2_2`` is the layer of Johnson et al., ``relu5_3`` ~ SRGAN's.
VGG16_LAYERS = {"relu1_2": "3", "relu2_2": "8", "relu3_3": "15", "relu4_3": "22", "relu5_3": "29"}


def _pair(output: Any, target: Any) -> None:
    if not isinstance(output, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(f"output and target must be tensors, got {type(output).__name__} and {type(target).__name__}")
    if output.shape != target.shape:
        raise ValueError(f"output and target must have the same shape, got {tuple(output.shape)} "
                         f"and {tuple(target.shape)}")


# ------------------------------------------------------------------------------ pixel losses
def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r""":math:`\frac1N \sum_i |x_i - y_i|` (:func:`mlimaging.metrics.sad`)."""
    _pair(output, target)
    return sad(output, target)


def l2_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r""":math:`\frac1N \sum_i (x_i - y_i)^2`, the MSE (:func:`mlimaging.metrics.ssd`)."""
    _pair(output, target)
    return ssd(output, target)


def huber(output: torch.Tensor, target: torch.Tensor, *, delta: float = 0.01) -> torch.Tensor:
    r"""Huber loss: quadratic below ``delta``, linear above (``F.huber_loss``).

    .. math:: \frac1N \sum_i \begin{cases} \tfrac12 d_i^2 & |d_i| \le \delta \\
              \delta (|d_i| - \tfrac12 \delta) & \text{otherwise} \end{cases}
    """
    _pair(output, target)
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    return F.huber_loss(output, target, delta=float(delta))


def charbonnier(output: torch.Tensor, target: torch.Tensor, *, eps: float = 1e-3) -> torch.Tensor:
    r"""Charbonnier loss (Lai et al. 2017), a differentiable L1.

    .. math:: \rho(x, y) = \frac1N \sum_i \sqrt{(x_i - y_i)^2 + \varepsilon^2}

    with :math:`\varepsilon = 10^{-3}` as LapSRN. Its value at :math:`x = y` is :math:`\varepsilon`.

    Examples
    --------
    >>> import torch
    >>> round(charbonnier(torch.tensor([3.0]), torch.tensor([-1.0]), eps=3.0).item(), 4)  # sqrt(16 + 9)
    5.0
    """
    _pair(output, target)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    return torch.sqrt((output - target).square() + eps * eps).mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    r"""Anisotropic total variation, a smoothness prior on the output (not a fidelity term).

    .. math:: \mathrm{TV}(x) = \frac1{N_v} \sum |x_{i+1,j} - x_{i,j}| + \frac1{N_h} \sum |x_{i,j+1} - x_{i,j}|

    (means over the vertical and horizontal differences of a ``(B, C, H, W)`` batch).

    Examples
    --------
    >>> import torch
    >>> total_variation(torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])).item()  # vertical 0, horizontal 1
    1.0
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or min(x.shape[-2:]) < 2:
        raise ValueError(f"x must be a (B, C, H, W) tensor with H, W >= 2, got {getattr(x, 'shape', type(x))}")
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


#: Built-in terms of :class:`CompositeLoss`: ``(output, target) -> scalar``.
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": l1_loss,
    "l2": l2_loss,
    "mse": l2_loss,
    "huber": huber,
    "charbonnier": charbonnier,
    "tv": lambda output, target: total_variation(output),
}


class MultiScaleLoss(nn.Module):
    r"""A loss at every level of a progressive network (LapSRN's ``return_all=True`` output).

    .. math:: \mathcal L = \sum_{l=1}^{L} \rho\big(\hat y_l, \; y\!\downarrow_{s / 2^l}\big)

    with the targets made by bicubic shrinking of the HR image to each level's size (as Lai et
    al.; anti-aliased, :func:`mlimaging.inverse.superres.degrade`'s kernel). A single tensor
    output is just :math:`\rho(\hat y, y)`.

    Parameters
    ----------
    loss : callable
        :math:`\rho` (default :func:`charbonnier`).

    Examples
    --------
    >>> import torch
    >>> hr = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> half = torch.nn.functional.interpolate(hr, size=(4, 4), mode="bicubic", antialias=True)
    >>> MultiScaleLoss(l1_loss)([half, hr], hr).item()
    0.0
    """

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = charbonnier) -> None:
        super().__init__()
        if not callable(loss):
            raise ValueError(f"loss must be callable, got {type(loss).__name__}")
        self.loss = loss

    def forward(self, output: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            return self.loss(output, target)
        if not output:
            raise ValueError("output must be a tensor or a non-empty list of tensors")
        total = output[0].new_zeros(())
        for out in output:
            t = target
            if out.shape[-2:] != target.shape[-2:]:
                t = F.interpolate(target, size=out.shape[-2:], mode="bicubic", antialias=True, align_corners=False)
            total = total + self.loss(out, t)
        return total


# ------------------------------------------------------------------------------ perceptual
class _Stop(Exception):
    pass


class PerceptualLoss(nn.Module):
    r"""Feature distance in chosen layers of a frozen network (Johnson et al. 2016).

    .. math:: \mathcal L(x, y) = \sum_{l} w_l \, \frac{1}{N_l} \lVert \phi_l(x) - \phi_l(y) \rVert^2

    :math:`\phi_l` the output of the module named ``layers[l]`` (``dict(network.named_modules())``
    keys, e.g. ``"8"`` for relu2_2 of a VGG16 ``features``, see :data:`VGG16_LAYERS`). The network
    is copied, frozen (no gradients for its weights) and kept in eval mode; gradients still flow
    to :math:`x`. Any image network works: a classifier trained in this toolkit, a self-supervised
    encoder, or a VGG loaded from the user's checkpoint (:func:`load_vgg_features`); nothing is
    downloaded. The forward pass stops after the deepest requested layer.

    Parameters
    ----------
    network : nn.Module
        The feature network (called on ``(B, C, H, W)``).
    layers : sequence of str
        Module names whose outputs are compared.
    weights : sequence of float, optional
        :math:`w_l` (default 1 each).
    distance : str
        ``"l2"`` (squared, mean) or ``"l1"``.
    mean, std : sequence of float, optional
        Per-channel normalisation applied to both images first (e.g. :data:`IMAGENET_MEAN`,
        :data:`IMAGENET_STD` for an ImageNet VGG).
    in_channels : int, optional
        Channels the network expects; a one-channel (Y) image is repeated to it.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1))
    >>> loss = PerceptualLoss(net, layers=["1"])
    >>> x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> loss(x, x).item()
    0.0
    >>> all(not p.requires_grad for p in loss.network.parameters())
    True
    """

    def __init__(self, network: nn.Module, layers: Sequence[str], *, weights: Sequence[float] | None = None,
                 distance: str = "l2", mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 in_channels: int | None = None) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise ValueError(f"network must be an nn.Module, got {type(network).__name__}")
        layers = [str(n) for n in layers] if not isinstance(layers, str) else [layers]
        modules = dict(network.named_modules())
        missing = [n for n in layers if n not in modules or n == ""]
        if not layers or missing:
            raise ValueError(f"layers must name modules of network, unknown: {missing or layers}; "
                             f"valid: {[n for n in modules if n][:20]}")
        self.layers = layers
        self.weights = [1.0] * len(layers) if weights is None else [float(w) for w in weights]
        if len(self.weights) != len(layers):
            raise ValueError(f"weights must have one value per layer ({len(layers)}), got {weights!r}")
        if distance not in ("l1", "l2"):
            raise ValueError(f"distance must be 'l1' or 'l2', got {distance!r}")
        self.distance = distance
        self.in_channels = in_channels
        self.network = copy.deepcopy(network).eval()
        for p in self.network.parameters():
            p.requires_grad_(False)
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together")
        if mean is not None:
            self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        else:
            self.mean = self.std = None
        self._features: dict[str, torch.Tensor] = {}
        named = dict(self.network.named_modules())
        order = {name: i for i, name in enumerate(named)}
        self._last = max(layers, key=lambda n: order[n])
        for name in set(layers):
            named[name].register_forward_hook(self._hook(name))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            self._features[name] = output.clone()  # a later in-place ReLU must not change it
            if name == self._last and all(n in self._features for n in self.layers):
                raise _Stop

        return hook

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.network.eval()  # frozen: batch-norm statistics and dropout stay fixed
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The requested layers' outputs for ``x``, in the order of ``layers``."""
        if self.in_channels is not None and x.shape[1] == 1 and self.in_channels != 1:
            x = x.expand(-1, self.in_channels, *x.shape[2:])
        if self.mean is not None:
            x = (x - self.mean) / self.std
        self._features = {}
        try:
            self.network(x)
        except _Stop:
            pass
        feats, self._features = self._features, {}
        return [feats[n] for n in self.layers]

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        _pair(output, target)
        with torch.no_grad():
            ref = self.features(target)
        total = output.new_zeros(())
        for w, a, b in zip(self.weights, self.features(output), ref, strict=True):
            d = a - b
            total = total + w * (d.square().mean() if self.distance == "l2" else d.abs().mean())
        return total


def load_vgg_features(path: str | os.PathLike, *, config: str = "D", batch_norm: bool = False) -> nn.Sequential:
    """A VGG ``features`` network with the weights of a user's checkpoint file (no download).

    The file is a ``state_dict`` of torchvision's ``vgg16()`` / ``vgg11()`` (keys
    ``features.N.weight``), of its ``features`` alone (``N.weight``), or a dict holding one under
    ``"state_dict"`` or ``"model"``; read with ``torch.load(weights_only=True)``. Built by
    :func:`mlimaging.models.make_vgg_features` (same layer indices as torchvision), frozen, eval
    mode. Use :data:`VGG16_LAYERS` and ImageNet normalisation with :class:`PerceptualLoss`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file holds no matching VGG ``features`` weights.
    """
    from mlimaging.models import make_vgg_features

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"path: no VGG checkpoint file at {str(file)!r}")
    state = torch.load(file, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"path: expected a state_dict in {str(file)!r}, got {type(state).__name__}")
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    net = make_vgg_features(config, in_channels=3, width=1.0, batch_norm=batch_norm)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"path: {str(file)!r} does not hold VGG-{config} features weights "
                         f"(batch_norm={batch_norm}): {str(err).splitlines()[0]}") from None
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()


# ------------------------------------------------------------------------------ composition
class CompositeLoss(nn.Module):
    r"""A weighted sum of loss terms, :math:`\mathcal L = \sum_k \lambda_k \mathcal L_k(x, y)`.

    Names are looked up in ``losses`` first, then in the built-ins :data:`LOSSES` (``l1``,
    ``l2``/``mse``, ``huber``, ``charbonnier``, ``tv``). Terms that need a network (a
    :class:`PerceptualLoss`) are passed in ``losses``. The adversarial term lives in
    :class:`SRGANStep`, whose content loss can be a ``CompositeLoss``. After each call
    :attr:`last` holds the unweighted value of every term (floats, for logging).

    Examples
    --------
    >>> import torch
    >>> loss = CompositeLoss({"l1": 1.0, "l2": 0.5})
    >>> x, y = torch.tensor([[[[1.0, 3.0]]]]), torch.zeros(1, 1, 1, 2)
    >>> loss(x, y).item()  # 1.0 * 2 + 0.5 * 5
    4.5
    >>> loss.last
    {'l1': 2.0, 'l2': 5.0}
    """

    def __init__(self, weights: Mapping[str, float], *,
                 losses: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] | None = None) -> None:
        super().__init__()
        if not isinstance(weights, Mapping) or not weights:
            raise ValueError(f"weights must be a non-empty mapping name -> weight, got {weights!r}")
        extra = dict(losses or {})
        self.terms: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {}
        self.weights: dict[str, float] = {}
        for name, w in weights.items():
            fn = extra.get(name, LOSSES.get(name))
            if fn is None:
                hint = " (pass losses={'perceptual': PerceptualLoss(network, layers)})" if name == "perceptual" else ""
                raise ValueError(f"weights: unknown loss {name!r}; built-in: {sorted(LOSSES)}, given: "
                                 f"{sorted(extra)}{hint}")
            if isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0:
                raise ValueError(f"weights[{name!r}] must be a number >= 0, got {w!r}")
            self.terms[name], self.weights[name] = fn, float(w)
        self.term_modules = nn.ModuleDict({k: v for k, v in extra.items() if isinstance(v, nn.Module)})
        self.last: dict[str, float] = {}

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total, last = output.new_zeros(()), {}
        for name, fn in self.terms.items():
            value = fn(output, target)
            last[name] = float(value.detach())
            total = total + self.weights[name] * value
        self.last = last
        return total


# ------------------------------------------------------------------------------ adversarial
class PatchDiscriminator(nn.Module):
    r"""A small patch discriminator: one real/fake logit per overlapping image patch.

    ``n_layers`` 4x4 stride-2 convolutions (``width``, doubling, leaky ReLU 0.2, batch norm after
    the first as SRGAN's discriminator), then a 3x3 convolution to one channel: an input
    ``(B, C, H, W)`` gives logits ``(B, 1, H / 2^n, W / 2^n)`` (PatchGAN, Isola et al. 2017),
    each seeing a patch of the image (70 pixels for ``n_layers=3``), so it judges local
    texture, not the global layout. ``norm="none"`` drops batch norm.

    Examples
    --------
    >>> import torch
    >>> PatchDiscriminator(width=4)(torch.rand(2, 1, 32, 32)).shape
    torch.Size([2, 1, 4, 4])
    """

    def __init__(self, *, in_channels: int = 1, width: int = 32, n_layers: int = 3, norm: str = "batch") -> None:
        super().__init__()
        for value, name in ((in_channels, "in_channels"), (width, "width"), (n_layers, "n_layers")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if norm not in ("batch", "none"):
            raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}")
        layers: list[nn.Module] = []
        c_in, c = in_channels, width
        for i in range(n_layers):
            layers.append(nn.Conv2d(c_in, c, 4, stride=2, padding=1, bias=(i == 0 or norm == "none")))
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(c))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in, c = c, c * 2
        layers.append(nn.Conv2d(c_in, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (B, {self.in_channels}, H, W), got {getattr(x, 'shape', type(x))}")
        return self.net(x)


def _split_pair(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        batch = (batch.get("input", batch.get("x")), batch.get("target", batch.get("y")))
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("SRGANStep needs (lr, hr) batches")
    return batch[0], batch[1]


class SRGANStep(TrainStep):
    r"""SRGAN training step (Ledig et al. 2017) for :func:`mlimaging.training.fit`; fit's model is
    the generator :math:`G` (any SR network), batches are ``(lr, hr)`` pairs.

    1. Discriminator: :math:`\ell_D(D(y), D(G(x)))` with :math:`G(x)` detached;
    2. generator: :math:`\ell_{content}(G(x), y) + \lambda\, \ell_G(D(G(x)))`,

    :math:`\ell_D, \ell_G` from :func:`mlimaging.generative.gan.gan_loss` (non-saturating by
    default: :math:`-\log D(G(x))`, SRGAN's choice) and :math:`\lambda` = ``adversarial_weight``
    (:math:`10^{-3}` in SRGAN, whose content loss is a VGG feature loss: pass a
    :class:`CompositeLoss` or :class:`PerceptualLoss`). Logs ``content``, ``adversarial`` and
    ``d_loss``. :meth:`state_dict` holds the discriminator and its optimiser (exact resume).
    ``fit``'s ``grad_clip`` clips the generator's gradients.

    Parameters
    ----------
    discriminator : nn.Module
        E.g. :class:`PatchDiscriminator` (logits, any shape).
    content : callable
        The pixel/perceptual loss ``(sr, hr) -> scalar`` (default :func:`l1_loss`).
    adversarial_weight : float
        :math:`\lambda \ge 0`.
    loss : str
        A :func:`~mlimaging.generative.gan.gan_loss` kind.
    d_optimizer : Optimizer or factory, optional
        Default Adam (lr 1e-4, betas (0.9, 0.999), as SRGAN).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from mlimaging.models.superres import ESPCN
    >>> from mlimaging.training import fit
    >>> g = torch.Generator().manual_seed(0)
    >>> hr = torch.rand(8, 1, 16, 16, generator=g)
    >>> lr = torch.nn.functional.avg_pool2d(hr, 2)
    >>> step = SRGANStep(PatchDiscriminator(width=4, n_layers=2))
    >>> h = fit(ESPCN(features=(4, 4)), TensorDataset(lr, hr), step=step, metrics=(), epochs=1,
    ...         batch_size=4, progress=False, optimizer=lambda p: torch.optim.Adam(p, lr=1e-4))
    >>> sorted(k for k in h.epochs[-1] if k in ("adversarial", "content", "d_loss", "loss"))
    ['adversarial', 'content', 'd_loss', 'loss']
    """

    def __init__(self, discriminator: nn.Module, *, content: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = l1_loss,
                 adversarial_weight: float = 1e-3, loss: str = "non_saturating",
                 d_optimizer: torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None
                 ) -> None:
        from mlimaging.generative.gan import gan_loss

        if not isinstance(discriminator, nn.Module):
            raise ValueError(f"discriminator must be an nn.Module, got {type(discriminator).__name__}")
        if not callable(content):
            raise ValueError(f"content must be a callable (sr, hr) -> scalar, got {type(content).__name__}")
        if isinstance(adversarial_weight, bool) or not isinstance(adversarial_weight, (int, float)) \
                or not adversarial_weight >= 0:
            raise ValueError(f"adversarial_weight must be a number >= 0, got {adversarial_weight!r}")
        self.gan = gan_loss(loss)
        if self.gan.kind == "wgan_gp":
            raise ValueError("loss='wgan_gp' needs a gradient penalty SRGANStep does not add; use "
                             "'non_saturating', 'minimax' or 'hinge'")
        self.discriminator, self.content, self.weight = discriminator, content, float(adversarial_weight)
        if d_optimizer is None:
            d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-4, betas=(0.9, 0.999))
        elif not isinstance(d_optimizer, torch.optim.Optimizer):
            d_optimizer = d_optimizer(discriminator.parameters())
        self.d_optimizer = d_optimizer

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> StepOutput:
        lr, hr = _split_pair(batch)
        D = self.discriminator.to(hr.device).train()
        sr = model(lr)
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss = self.gan.discriminator(D(hr), D(sr.detach()))
        d_loss.backward()
        self.d_optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        content = self.content(sr, hr)
        for p in D.parameters():
            p.requires_grad_(False)
        try:
            adversarial = self.gan.generator(D(sr))
        finally:
            for p in D.parameters():
                p.requires_grad_(True)
        total = content + self.weight * adversarial
        total.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        optimizer.step()
        return total.detach(), {"content": content.detach(), "adversarial": adversarial.detach(),
                                "d_loss": d_loss.detach()}

    def validation_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The content loss of one batch (``fit``'s ``val_loss``)."""
        lr, hr = _split_pair(batch)
        return self.content(model(lr), hr)

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "d_optimizer": self.d_optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])

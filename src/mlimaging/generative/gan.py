r"""Generative adversarial networks: DCGAN, the four classic losses and the two-network step.

A GAN (Goodfellow et al. 2014) trains a generator :math:`G` mapping noise :math:`z \sim p_z`
to images against a discriminator (critic) :math:`D` that tells real images from generated
ones, in the minimax game

.. math::

    \min_G \max_D \; V(D, G) = \mathbb{E}_{x \sim p_{data}}[\log \sigma(D(x))]
    + \mathbb{E}_{z \sim p_z}[\log(1 - \sigma(D(G(z))))],

where :math:`D` returns a logit and :math:`\sigma` is the logistic function. For a fixed
:math:`G` the best discriminator is :math:`\sigma(D^*(x)) = p_{data}(x) / (p_{data}(x) + p_g(x))`
and the game's value is :math:`2\,\mathrm{JSD}(p_{data} \Vert p_g) - \log 4`.

Conventions of this module:

- Images are in :math:`[0, 1]` (the data sets' range). The generator ends with
  :math:`\tfrac12(\tanh(a) + 1)` and the discriminator maps its input to :math:`2x - 1` first,
  which is DCGAN's :math:`\tanh` output on :math:`[-1, 1]` data up to that fixed affine map.
- :class:`GANStep` plugs the game into :func:`mlimaging.training.fit`: ``fit``'s model is the
  generator (and fit's optimiser is the generator's); the step holds the discriminator, its
  optimiser and its random generator, all saved in fit's checkpoints, so a resumed run ends
  with exactly the weights of an uninterrupted one.

References
----------
Goodfellow I. et al. (2014). Generative adversarial nets. NeurIPS. arXiv:1406.2661.

Radford A., Metz L., Chintala S. (2016). Unsupervised representation learning with deep
convolutional generative adversarial networks. ICLR. arXiv:1511.06434.

Mirza M., Osindero S. (2014). Conditional generative adversarial nets. arXiv:1411.1784.

Arjovsky M., Chintala S., Bottou L. (2017). Wasserstein GAN. ICML. arXiv:1701.07875.

Gulrajani I. et al. (2017). Improved training of Wasserstein GANs. NeurIPS. arXiv:1704.00028.

Miyato T., Kataoka T., Koyama M., Yoshida Y. (2018). Spectral normalization for generative
adversarial networks. ICLR. arXiv:1802.05957 (the hinge loss as used there; Lim & Ye 2017,
arXiv:1705.02894).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.training.step import StepOutput, TrainStep

__all__ = [
    "GAN_LOSSES",
    "DCGANDiscriminator",
    "DCGANGenerator",
    "GANLoss",
    "GANStep",
    "SampleGrid",
    "gan_loss",
    "gradient_penalty",
    "save_image_grid",
    "tile_images",
]

GAN_LOSSES = ("minimax", "non_saturating", "hinge", "wgan_gp")
MIN_SIZE, MAX_SIZE = 28, 64


# ------------------------------------------------------------------------------------ losses
@dataclass(frozen=True)
class GANLoss:
    r"""The two players' losses of one GAN objective, on discriminator logits (critic values).

    ``discriminator(real, fake)`` and ``generator(fake)`` take the outputs :math:`D(x)` on a
    batch of real images and :math:`D(G(z))` on a batch of generated ones and return scalar
    means; both players minimise their loss. See :func:`gan_loss` for the formulas.
    """

    kind: str

    def discriminator(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The discriminator's (critic's) loss; for ``wgan_gp`` without the gradient penalty."""
        real, fake = _logits(real, "real"), _logits(fake, "fake")
        if self.kind in ("minimax", "non_saturating"):
            return F.softplus(-real).mean() + F.softplus(fake).mean()
        if self.kind == "hinge":
            return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
        return fake.mean() - real.mean()

    def generator(self, fake: torch.Tensor) -> torch.Tensor:
        """The generator's loss on :math:`D(G(z))`."""
        fake = _logits(fake, "fake")
        if self.kind == "minimax":
            return -F.softplus(fake).mean()
        if self.kind == "non_saturating":
            return F.softplus(-fake).mean()
        return -fake.mean()

    @property
    def probabilities(self) -> bool:
        """True when :math:`D` outputs logits of a probability (minimax, non-saturating)."""
        return self.kind in ("minimax", "non_saturating")


def gan_loss(kind: str = "non_saturating") -> GANLoss:
    r"""The discriminator and generator losses of a GAN objective.

    With :math:`r = D(x)` on real images, :math:`f = D(G(z))` on generated ones and
    :math:`\log \sigma(a) = -\operatorname{softplus}(-a)`:

    ==================  ===========================================================  =====================================
    ``kind``            discriminator (critic) loss                                  generator loss
    ==================  ===========================================================  =====================================
    ``minimax``         :math:`-\mathbb{E}[\log\sigma(r)] - \mathbb{E}[\log(1-\sigma(f))]`  :math:`\mathbb{E}[\log(1-\sigma(f))]`
    ``non_saturating``  same as minimax                                              :math:`-\mathbb{E}[\log\sigma(f)]`
    ``hinge``           :math:`\mathbb{E}[\max(0, 1-r)] + \mathbb{E}[\max(0, 1+f)]`   :math:`-\mathbb{E}[f]`
    ``wgan_gp``         :math:`\mathbb{E}[f] - \mathbb{E}[r]` (+ :func:`gradient_penalty`)  :math:`-\mathbb{E}[f]`
    ==================  ===========================================================  =====================================

    The minimax generator loss saturates: when :math:`D` rejects the samples
    (:math:`\sigma(f) \to 0`) its gradient :math:`-\sigma(f)\,\nabla f` vanishes, which is why
    Goodfellow et al. (2014) train :math:`G` on the non-saturating loss, whose gradient
    :math:`-(1 - \sigma(f))\,\nabla f` is largest there. ``wgan_gp`` is the Wasserstein critic
    of Arjovsky et al. (2017) with the gradient penalty of Gulrajani et al. (2017), which
    :class:`GANStep` adds; the hinge loss is the one of Miyato et al. (2018).

    Parameters
    ----------
    kind
        ``"minimax"``, ``"non_saturating"``, ``"hinge"`` or ``"wgan_gp"``.

    Returns
    -------
    GANLoss
        With ``discriminator(real, fake)`` and ``generator(fake)``.

    Examples
    --------
    At :math:`D = 0` everywhere (:math:`\sigma = 1/2`) the discriminator's loss is
    :math:`2 \log 2` and the minimax generator's :math:`-\log 2`:

    >>> import math, torch
    >>> zero = torch.zeros(4)
    >>> round(gan_loss("minimax").discriminator(zero, zero).item(), 4), round(2 * math.log(2), 4)
    (1.3863, 1.3863)
    >>> round(gan_loss("minimax").generator(zero).item(), 4), round(gan_loss("non_saturating").generator(zero).item(), 4)
    (-0.6931, 0.6931)
    >>> gan_loss("hinge").discriminator(torch.tensor([2.0, 0.5]), torch.tensor([-3.0, 0.0])).item()
    0.75
    >>> gan_loss("wgan_gp").discriminator(torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])).item()
    -3.0
    """
    if kind not in GAN_LOSSES:
        raise ValueError(f"kind must be one of {', '.join(GAN_LOSSES)}, got {kind!r}")
    return GANLoss(kind)


def gradient_penalty(critic: Callable[..., torch.Tensor], real: torch.Tensor, fake: torch.Tensor, *,
                     labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     create_graph: bool = True) -> torch.Tensor:
    r"""The WGAN-GP gradient penalty of Gulrajani et al. (2017).

    .. math::

        \mathrm{GP} = \mathbb{E}_{\hat x}\big[(\lVert \nabla_{\hat x} D(\hat x) \rVert_2 - 1)^2\big],
        \qquad \hat x = \epsilon x + (1 - \epsilon) \tilde x, \quad \epsilon \sim U[0, 1],

    one :math:`\epsilon` per pair of a real image :math:`x` and a generated one
    :math:`\tilde x`. A 1-Lipschitz critic whose gradient has norm 1 almost everywhere (the
    optimal critic of the Wasserstein-1 dual) has :math:`\mathrm{GP} = 0`. The critic loss is
    :math:`\mathbb{E}[D(\tilde x)] - \mathbb{E}[D(x)] + \lambda\,\mathrm{GP}` with
    :math:`\lambda = 10` in the paper. Batch normalisation in the critic makes the penalty
    of one sample depend on the others: use layer normalisation or none.

    Parameters
    ----------
    critic
        Callable ``critic(images)`` (or ``critic(images, labels)`` when ``labels`` is given)
        returning one value per image.
    real, fake
        Batches of the same shape ``(B, ...)``; ``fake`` is detached here.
    labels
        Class labels passed to a conditional critic.
    generator
        Random generator of :math:`\epsilon` (CPU).
    create_graph
        Keep the graph so that the penalty can be back-propagated (training).

    Examples
    --------
    A linear critic :math:`D(x) = \langle w, x \rangle` with :math:`\lVert w \rVert = 1` is
    1-Lipschitz with unit gradient everywhere:

    >>> import torch
    >>> from torch import nn
    >>> critic = nn.Sequential(nn.Flatten(), nn.Linear(4, 1))
    >>> with torch.no_grad():
    ...     _ = critic[1].weight.copy_(torch.tensor([[0.5, 0.5, 0.5, 0.5]]))
    >>> g = torch.Generator().manual_seed(0)
    >>> x, y = torch.rand(8, 1, 2, 2, generator=g), torch.rand(8, 1, 2, 2, generator=g)
    >>> gradient_penalty(critic, x, y, generator=g).item() < 1e-12
    True
    """
    if not isinstance(real, torch.Tensor) or not isinstance(fake, torch.Tensor):
        raise ValueError("real and fake must be tensors")
    if real.shape != fake.shape or real.ndim < 2 or real.shape[0] == 0:
        raise ValueError(f"real and fake must be non-empty batches of the same shape, got {tuple(real.shape)} and "
                         f"{tuple(fake.shape)}")
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    eps = torch.rand(shape, generator=generator, dtype=real.dtype).to(real.device)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    out = critic(mixed) if labels is None else critic(mixed, labels)
    (grad,) = torch.autograd.grad(out.sum(), mixed, create_graph=create_graph)
    return (grad.flatten(1).norm(dim=1) - 1.0).pow(2).mean()


# ------------------------------------------------------------------------------------ networks
def _ladder(image_size: Any) -> tuple[int, int]:
    """``(start, n)``: the smallest side (>= 4) reached by halving ``image_size`` ``n`` times."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or not MIN_SIZE <= image_size <= MAX_SIZE:
        raise ValueError(f"image_size must be an int in [{MIN_SIZE}, {MAX_SIZE}] (DCGAN for 28-64 px), got {image_size!r}")
    if image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 (two stride-2 stages at least), got {image_size}")
    start, n = image_size, 0
    while start % 2 == 0 and start // 2 >= 4:
        start, n = start // 2, n + 1
    return start, n


def _check_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _classes(num_classes: Any) -> int:
    if num_classes is None:
        return 0
    return _check_int(num_classes, "num_classes", 2)


def _dcgan_init(module: nn.Module) -> None:
    """DCGAN's initialisation: conv and linear weights ~ N(0, 0.02), norm scales ~ N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def _check_labels(labels: Any, n: int, num_classes: int, device: torch.device) -> torch.Tensor | None:
    if not num_classes:
        if labels is not None:
            raise ValueError("labels were given to an unconditional network (num_classes=None)")
        return None
    if labels is None:
        raise ValueError(f"a class-conditional network (num_classes={num_classes}) needs labels")
    labels = torch.as_tensor(labels, device=device)
    if labels.shape != (n,) or labels.is_floating_point():
        raise ValueError(f"labels must be {n} integer class indices, got {labels.dtype} of shape {tuple(labels.shape)}")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got values in [{int(labels.min())}, "
                         f"{int(labels.max())}]")
    return labels.long()


class DCGANGenerator(nn.Module):
    r"""The DCGAN generator of Radford et al. (2016) for square images of 28 to 64 pixels.

    :math:`z \in \mathbb{R}^{d}` (with the one-hot class appended when ``num_classes`` is
    set, as in Mirza & Osindero 2014) is projected to a :math:`s_0 \times s_0` map of
    :math:`2^{n-1} w` channels (batch norm, ReLU), then :math:`n` transposed convolutions
    (4 x 4, stride 2) double the side and halve the channels (batch norm and ReLU between
    them) up to the image size :math:`s = s_0 2^n` (:math:`s_0 \in [4, 7]` for 28-64 px:
    28 = 7·2², 32 = 4·2³, 64 = 4·2⁴), and the output is :math:`\tfrac12(\tanh(a)+1) \in [0, 1]`.
    Weights are drawn as in the paper, :math:`\mathcal{N}(0, 0.02)`.

    Parameters
    ----------
    latent_dim
        Dimension :math:`d` of :math:`z \sim \mathcal{N}(0, I)` (100 in the paper).
    image_size
        Side of the square images, a multiple of 4 in [28, 64].
    channels
        Image channels (1 grey, 3 RGB).
    width
        Channels :math:`w` of the last hidden layer (64 for the paper's 64 px model, which
        starts from 512 channels at 4 x 4).
    num_classes
        Make the generator class-conditional on this many classes (``forward(z, labels)``).

    Examples
    --------
    >>> import torch
    >>> torch.manual_seed(0) is not None
    True
    >>> G = DCGANGenerator(latent_dim=16, image_size=28, width=8)
    >>> x = G(torch.randn(2, 16, generator=torch.Generator().manual_seed(0)))
    >>> tuple(x.shape), bool(x.min() >= 0) and bool(x.max() <= 1)
    ((2, 1, 28, 28), True)
    """

    def __init__(self, *, latent_dim: int = 100, image_size: int = 28, channels: int = 1, width: int = 64,
                 num_classes: int | None = None) -> None:
        super().__init__()
        start, n = _ladder(image_size)
        self.latent_dim = _check_int(latent_dim, "latent_dim")
        self.channels = _check_int(channels, "channels")
        self.width = _check_int(width, "width")
        self.image_size = image_size
        self.num_classes = _classes(num_classes) or None
        c = width * 2 ** (n - 1)
        self.project = nn.Sequential(nn.Linear(latent_dim + (self.num_classes or 0), c * start * start, bias=False),
                                     nn.Unflatten(1, (c, start, start)), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        layers: list[nn.Module] = []
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(inplace=True)]
            c //= 2
        layers.append(nn.ConvTranspose2d(c, channels, 4, 2, 1))
        self.upsample = nn.Sequential(*layers)
        _dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim or not z.is_floating_point():
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z must be a float tensor of shape (B, {self.latent_dim}), got {got}")
        labels = _check_labels(labels, z.shape[0], self.num_classes or 0, z.device)
        if labels is not None:
            z = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)
        return 0.5 * (torch.tanh(self.upsample(self.project(z))) + 1.0)

    def sample(self, n: int, *, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` images from :math:`z \\sim \\mathcal{N}(0, I)` drawn with ``generator`` (CPU), without
        gradients, in the network's current mode (call ``eval()`` first for inference)."""
        _check_int(n, "n")
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        with torch.no_grad():
            return self(z, labels)


def _norm(kind: str, c: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(c)
    if kind == "layer":
        return nn.GroupNorm(1, c)
    return nn.Identity()


class DCGANDiscriminator(nn.Module):
    r"""The DCGAN discriminator (critic) of Radford et al. (2016) for 28-64 px images.

    The image, mapped to :math:`2x - 1` (with one constant map per class appended when
    ``num_classes`` is set), passes :math:`n` convolutions (4 x 4, stride 2) that halve the
    side and double the channels, from :math:`w` up to :math:`2^{n-1} w`, with LeakyReLU(0.2)
    (normalisation after every convolution but the first), and a linear layer gives one logit
    (critic value) per image: :math:`D(x) \in \mathbb{R}`, :math:`\sigma(D(x))` the probability
    that :math:`x` is real for the minimax and non-saturating losses.

    Parameters
    ----------
    image_size, channels, width, num_classes
        As for :class:`DCGANGenerator`.
    norm
        ``"batch"`` (DCGAN), ``"layer"`` (layer norm over channels and space, as Gulrajani et
        al. use for WGAN-GP, where batch norm is invalid) or ``"none"``.

    Examples
    --------
    >>> import torch
    >>> D = DCGANDiscriminator(image_size=32, width=8, num_classes=10, norm="layer")
    >>> D(torch.rand(3, 1, 32, 32), torch.tensor([0, 4, 9])).shape
    torch.Size([3])
    """

    def __init__(self, *, image_size: int = 28, channels: int = 1, width: int = 64, num_classes: int | None = None,
                 norm: str = "batch") -> None:
        super().__init__()
        start, n = _ladder(image_size)
        if norm not in ("batch", "layer", "none"):
            raise ValueError(f"norm must be 'batch', 'layer' or 'none', got {norm!r}")
        self.channels = _check_int(channels, "channels")
        self.width = _check_int(width, "width")
        self.image_size, self.norm = image_size, norm
        self.num_classes = _classes(num_classes) or None
        c_in, c = channels + (self.num_classes or 0), width
        layers: list[nn.Module] = [nn.Conv2d(c_in, c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(n - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=norm == "none"), _norm(norm, 2 * c), nn.LeakyReLU(0.2, inplace=True)]
            c *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * start * start, 1)
        _dcgan_init(self)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        size, ch = self.image_size, self.channels
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (ch, size, size) \
                or not x.is_floating_point():
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a float tensor of shape (B, {ch}, {size}, {size}), got {got}")
        labels = _check_labels(labels, x.shape[0], self.num_classes or 0, x.device)
        h = 2.0 * x - 1.0
        if labels is not None:
            maps = F.one_hot(labels, self.num_classes).to(h.dtype)[:, :, None, None].expand(-1, -1, size, size)
            h = torch.cat([h, maps], dim=1)
        return self.head(self.features(h).flatten(1)).squeeze(1)


# ------------------------------------------------------------------------------------ the step
def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        return batch[0], (batch[1] if len(batch) == 2 else None)
    if isinstance(batch, Mapping):
        x = next((batch[k] for k in ("input", "image", "x") if k in batch), None)
        if x is None:
            raise ValueError(f"a dict batch needs an image key (input, image, x), got keys {sorted(batch)}")
        return x, next((batch[k] for k in ("target", "label", "y") if k in batch), None)
    raise ValueError(f"a batch must be images, (images,), (images, labels) or a dict, got {type(batch).__name__}")


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in optimizer.param_groups for p in g["params"]]


class GANStep(TrainStep):
    r"""Train a GAN through :func:`mlimaging.training.fit`: ``fit``'s model is the generator.

    On every batch of real images :math:`x` (with labels :math:`y` for a conditional GAN,
    whose fakes take the same labels) the step draws :math:`z \sim \mathcal{N}(0, I)` from its
    own random generator, makes :math:`\tilde x = G(z)` and

    1. updates the discriminator on :math:`\ell_D(D(x), D(\tilde x))` (plus
       :math:`\lambda\,\mathrm{GP}` for ``wgan_gp``, :func:`gradient_penalty`);
    2. every ``n_critic``-th batch, updates the generator on :math:`\ell_G(D(G(z)))` with the
       updated discriminator (the same :math:`z`, as in the DCGAN reference code).

    It returns the generator loss as fit's ``loss`` and logs the extras ``d_loss``,
    ``g_loss`` (on batches without a generator update: :math:`\ell_G` of the critic step's
    fakes), ``D(x)`` and ``D(G(z))`` (mean :math:`\sigma(D)` for the minimax and
    non-saturating losses, the mean critic value for hinge and WGAN-GP) and ``gp``.
    :meth:`state_dict` holds the discriminator, its optimiser, the random generator and the
    batch counter, so checkpoints resume exactly. One process only (the discriminator is not
    wrapped for ``torchrun``).

    Parameters
    ----------
    discriminator
        The discriminator or critic, ``D(x)`` or ``D(x, labels)`` -> one value per image.
    loss
        A :func:`gan_loss` kind or a :class:`GANLoss`.
    d_optimizer
        Optimiser of the discriminator, or a factory ``params -> Optimizer``; default Adam
        with learning rate 2e-4 and :math:`\beta = (0.5, 0.999)` (DCGAN).
    n_critic
        Discriminator updates per generator update (5 in Gulrajani et al. 2017).
    gp_weight
        :math:`\lambda` of the gradient penalty (``wgan_gp`` only).
    seed
        Seed of the step's random generator (latents and penalty mixing weights).
    ema
        Keep an exponential moving average of the generator's weights,
        :math:`\bar\theta \leftarrow \beta \bar\theta + (1 - \beta)\theta` after every generator
        update (buffers copied), in :attr:`ema_generator` (Yazıcı et al. 2019, arXiv:1806.04498:
        the average of the iterates samples better than the last iterate); ``None`` keeps none.

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from mlimaging.training import fit
    >>> torch.manual_seed(0) is not None
    True
    >>> G = DCGANGenerator(latent_dim=8, width=4)
    >>> step = GANStep(DCGANDiscriminator(width=4), loss="non_saturating", seed=0)
    >>> x = torch.rand(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    >>> h = fit(G, TensorDataset(x), step=step, metrics=(), epochs=2, batch_size=16, progress=False,
    ...         optimizer=lambda p: torch.optim.Adam(p, lr=2e-4, betas=(0.5, 0.999)))
    >>> sorted(k for k in h.epochs[-1] if k not in ("epoch", "lr", "seconds"))
    ['D(G(z))', 'D(x)', 'd_loss', 'g_loss', 'gp', 'loss']
    """

    def __init__(self, discriminator: nn.Module, *, loss: str | GANLoss = "non_saturating",
                 d_optimizer: torch.optim.Optimizer | Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer] | None = None,
                 n_critic: int = 1, gp_weight: float = 10.0, seed: int = 0, ema: float | None = None) -> None:
        if not isinstance(discriminator, nn.Module):
            raise ValueError(f"discriminator must be an nn.Module, got {type(discriminator).__name__}")
        self.loss = loss if isinstance(loss, GANLoss) else gan_loss(loss)
        self.n_critic = _check_int(n_critic, "n_critic")
        if not (isinstance(gp_weight, (int, float)) and not isinstance(gp_weight, bool) and gp_weight >= 0):
            raise ValueError(f"gp_weight must be a number >= 0, got {gp_weight!r}")
        self.gp_weight = float(gp_weight)
        self.seed = _check_int(seed, "seed", 0)
        if self.loss.kind == "wgan_gp" and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                               for m in discriminator.modules()):
            raise ValueError("wgan_gp needs a critic without batch norm (the gradient penalty is per sample): "
                             "use DCGANDiscriminator(norm='layer') or norm='none'")
        self.discriminator = discriminator
        if d_optimizer is None:
            d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        elif not isinstance(d_optimizer, torch.optim.Optimizer):
            if not callable(d_optimizer):
                raise ValueError(f"d_optimizer must be an Optimizer or a factory params -> Optimizer, got {d_optimizer!r}")
            d_optimizer = d_optimizer(discriminator.parameters())
        own = {id(p) for p in discriminator.parameters()}
        if not isinstance(d_optimizer, torch.optim.Optimizer) or any(id(p) not in own for p in _params(d_optimizer)):
            raise ValueError("d_optimizer must be an Optimizer over the discriminator's parameters")
        self.d_optimizer = d_optimizer
        self.generator = torch.Generator().manual_seed(self.seed)
        self.calls = 0
        if ema is not None and not (isinstance(ema, float) and 0.0 < ema < 1.0):
            raise ValueError(f"ema must be a decay in (0, 1) or None, got {ema!r}")
        self.ema = ema
        self.ema_generator: nn.Module | None = None
        self._pending_ema: Mapping[str, Any] | None = None

    # -------------------------------------------------------------------- one batch
    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> StepOutput:
        x, y = _split(batch)
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point() or len(x) == 0:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"the real images must be a non-empty float batch (B, C, H, W), got {got}")
        G = getattr(model, "module", model)
        D = self.discriminator
        conditional = bool(getattr(G, "num_classes", None))
        if conditional and y is None:
            raise ValueError("a class-conditional generator needs batches of (images, labels)")
        labels = y if conditional else None
        self._to(x.device)
        self.calls += 1
        update_g = self.calls % self.n_critic == 0
        z = torch.randn(len(x), G.latent_dim, generator=self.generator).to(x.device)
        with torch.set_grad_enabled(update_g):
            fake = model(z, labels) if conditional else model(z)

        # discriminator (critic)
        d_args = (labels,) if conditional else ()
        self.d_optimizer.zero_grad(set_to_none=True)
        d_real, d_fake = D(x, *d_args), D(fake.detach(), *d_args)
        d_loss = self.loss.discriminator(d_real, d_fake)
        gp = torch.zeros((), device=x.device)
        if self.loss.kind == "wgan_gp" and self.gp_weight > 0:
            gp = gradient_penalty(D, x, fake, labels=labels, generator=self.generator)
        (d_loss + self.gp_weight * gp).backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(D.parameters(), grad_clip)
        self.d_optimizer.step()

        # generator
        if update_g:
            D.requires_grad_(False)
            try:
                g_loss = self.loss.generator(D(fake, *d_args))
                optimizer.zero_grad(set_to_none=True)
                g_loss.backward()
            finally:
                D.requires_grad_(True)
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(_params(optimizer), grad_clip)
            optimizer.step()
            if self.ema is not None:
                self._update_ema(G)
        else:
            g_loss = self.loss.generator(d_fake.detach())
        show = torch.sigmoid if self.loss.probabilities else (lambda t: t)
        extras = {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(), "D(x)": show(d_real.detach()).mean(),
                  "D(G(z))": show(d_fake.detach()).mean(), "gp": gp.detach()}
        return g_loss.detach(), extras

    def _update_ema(self, G: nn.Module) -> None:
        if self.ema_generator is None:
            import copy

            self.ema_generator = copy.deepcopy(G).eval().requires_grad_(False)
            pending, self._pending_ema = self._pending_ema, None
            if pending is None:  # the first update: the average starts at the iterate
                return
            self.ema_generator.load_state_dict(pending)
        with torch.no_grad():
            for avg, p in zip(self.ema_generator.parameters(), G.parameters(), strict=True):
                avg.lerp_(p, 1.0 - self.ema)
            for avg, b in zip(self.ema_generator.buffers(), G.buffers(), strict=True):
                avg.copy_(b)

    def _to(self, device: torch.device) -> None:
        """Move the discriminator and its optimiser's state to ``device`` (once, at the first batch)."""
        p = next(self.discriminator.parameters(), None)
        if p is None or p.device == device:
            return
        self.discriminator.to(device)
        for state in self.d_optimizer.state.values():
            for k, v in state.items():
                if isinstance(v, torch.Tensor) and k != "step":
                    state[k] = v.to(device)

    # -------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": {k: v.detach().cpu() for k, v in self.discriminator.state_dict().items()},
                "d_optimizer": self.d_optimizer.state_dict(), "generator": self.generator.get_state(),
                "calls": self.calls, "loss": self.loss.kind, "n_critic": self.n_critic,
                "ema": None if self.ema_generator is None else
                {k: v.detach().cpu() for k, v in self.ema_generator.state_dict().items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("loss", self.loss.kind) != self.loss.kind:
            raise ValueError(f"the checkpoint was trained with the {state['loss']} loss, this step uses "
                             f"{self.loss.kind}")
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.generator.set_state(state["generator"])
        self.calls = int(state["calls"])
        if state.get("ema") is not None:
            if self.ema is None:
                raise ValueError("the checkpoint holds an EMA generator, this step keeps none: pass ema=")
            if self.ema_generator is None:  # built from the generator at the next update
                self._pending_ema = state["ema"]
            else:
                self.ema_generator.load_state_dict(state["ema"])


# ------------------------------------------------------------------------------------ sample grids
def tile_images(images: torch.Tensor, *, ncols: int = 8, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """Tile a batch ``(N, C, H, W)`` into one image ``(C, rows·(H+p)+p, ncols·(W+p)+p)``, row by row.

    Examples
    --------
    >>> import torch
    >>> tile_images(torch.zeros(5, 1, 4, 4), ncols=3, padding=1).shape
    torch.Size([1, 11, 16])
    """
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty batch (N, C, H, W), got {got}")
    _check_int(ncols, "ncols")
    _check_int(padding, "padding", 0)
    n, c, h, w = images.shape
    ncols = min(ncols, n)
    rows = -(-n // ncols)
    p = padding
    grid = images.new_full((c, rows * (h + p) + p, ncols * (w + p) + p), float(pad_value))
    for i in range(n):
        r, col = divmod(i, ncols)
        grid[:, p + r * (h + p):p + r * (h + p) + h, p + col * (w + p):p + col * (w + p) + w] = images[i]
    return grid


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, *, ncols: int = 8, padding: int = 2) -> Path:
    """Write a batch of images in [0, 1] as one grid PNG (8-bit; grey or RGB) and return its path."""
    from mlimaging.data.io import write_image

    grid = tile_images(images.detach().float().cpu().clamp(0, 1), ncols=ncols, padding=padding)
    arr = grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_image(path, arr)
    return path


class SampleGrid:
    """fit callback: after every epoch, save a grid of the generator's samples for a fixed, seeded
    :math:`z` as ``folder/<prefix><epoch:03d>.png`` (rank 0; the generator in eval mode, then back).

    A class-conditional generator gets labels ``i mod num_classes`` (with ``ncols`` = number of
    classes, one class per column). The latents are drawn from ``seed`` alone, so the grids of a
    run show the same :math:`z` at every epoch, also across a resume.

    Parameters
    ----------
    folder
        Where the PNGs go (created).
    n, ncols
        Samples per grid and per row.
    seed
        Seed of the fixed latents.
    prefix
        File name prefix.
    """

    def __init__(self, folder: str | os.PathLike, *, n: int = 64, ncols: int = 8, seed: int = 0,
                 prefix: str = "samples_epoch_") -> None:
        self.folder = Path(folder)
        self.n, self.ncols = _check_int(n, "n"), _check_int(ncols, "ncols")
        self.seed, self.prefix = _check_int(seed, "seed", 0), prefix
        self.paths: list[Path] = []

    def on_epoch_end(self, state: Any) -> None:
        if getattr(state, "rank", 0) != 0:
            return
        G = getattr(state.model, "module", state.model)
        k = getattr(G, "num_classes", None)
        labels = torch.arange(self.n) % k if k else None
        was = G.training
        G.eval()
        try:
            device = next(G.parameters()).device
            images = G.sample(self.n, generator=torch.Generator().manual_seed(self.seed),
                              labels=None if labels is None else labels.to(device))
        finally:
            G.train(was)
        self.paths.append(save_image_grid(images, self.folder / f"{self.prefix}{state.epoch:03d}.png", ncols=self.ncols))


def _logits(t: Any, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.numel() == 0:
        got = f"{t.dtype} tensor of {t.numel()} values" if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a non-empty float tensor of discriminator outputs, got {got}")
    return t


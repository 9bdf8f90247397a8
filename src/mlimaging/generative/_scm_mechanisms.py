"""The mechanisms of the deep structural causal model of :mod:`mlimaging.generative.scm`.

Two invertible (normalising-flow) mechanisms for the scalar parents, so that abduction of their
exogenous noise is exact, and a conditional VAE for the image:

* :class:`ThicknessFlow`: :math:`t = f_t(u_t)`, :math:`u_t \\sim \\mathcal N(0, 1)`;
* :class:`IntensityFlow`: :math:`i = f_i(u_i; t)`, :math:`u_i \\sim \\mathcal N(0, 1)`;
* :class:`ConditionalVAE`: :math:`x \\sim p_\\theta(x \\mid z, t, i)`, :math:`z \\sim \\mathcal N(0, I)`,
  with the amortised posterior :math:`q_\\phi(z \\mid x, t, i)`.

Pawlowski N., Castro D. C., Glocker B. (2020). Deep Structural Causal Models for Tractable
Counterfactual Inference. NeurIPS. arXiv:2006.06485.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConditionalVAE", "IntensityFlow", "ThicknessFlow"]

_LOG_2PI = math.log(2 * math.pi)


def _std_normal_log_prob(u: torch.Tensor) -> torch.Tensor:
    return -0.5 * (u.square() + _LOG_2PI)


class ThicknessFlow(nn.Module):
    r"""Unconditional flow for a positive scalar: a sinh-arcsinh transform, an affine map and ``exp``.

    .. math::
        t = f_t(u) = \exp\!\big(m + e^{s}\, g(u)\big), \qquad
        g(u) = \sinh\!\big((\operatorname{asinh} u + \epsilon)\, e^{-\delta}\big),
        \qquad u \sim \mathcal N(0, 1),

    with learned :math:`m, s, \epsilon, \delta` (:math:`g` is the sinh-arcsinh transform of
    Jones & Pewsey 2009, monotone for every :math:`\epsilon, \delta`: it adds skewness and tail
    weight to the log-normal). ``exp`` keeps :math:`t > 0`. The density is
    :math:`\log p(t) = \log \mathcal N(u) - \log |f_t'(u)|` with :math:`u = f_t^{-1}(t)`.

    Parameters
    ----------
    loc, scale
        Initial mean and standard deviation of :math:`\log t`.

    Examples
    --------
    >>> import torch
    >>> flow = ThicknessFlow(loc=0.9, scale=0.25)
    >>> u = torch.tensor([-1.0, 0.0, 2.0])
    >>> t = flow(u)
    >>> bool((t > 0).all()), torch.allclose(flow.inverse(t), u, atol=1e-5)
    (True, True)
    """

    def __init__(self, *, loc: float = 0.0, scale: float = 1.0):
        super().__init__()
        if not (math.isfinite(loc) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"loc must be finite and scale positive, got loc={loc}, scale={scale}")
        self.loc = nn.Parameter(torch.tensor(float(loc)))
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.skew = nn.Parameter(torch.tensor(0.0))
        self.log_tail = nn.Parameter(torch.tensor(0.0))

    def _sas(self, u: torch.Tensor) -> torch.Tensor:
        return torch.sinh((torch.asinh(u) + self.skew) * torch.exp(-self.log_tail))

    def _sas_inv(self, y: torch.Tensor) -> torch.Tensor:
        return torch.sinh(torch.asinh(y) * torch.exp(self.log_tail) - self.skew)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`t = f_t(u)`."""
        return torch.exp(self.loc + torch.exp(self.log_scale) * self._sas(u))

    def inverse(self, t: torch.Tensor) -> torch.Tensor:
        """:math:`u = f_t^{-1}(t)` (abduction)."""
        return self._sas_inv((torch.log(t) - self.loc) * torch.exp(-self.log_scale))

    def log_prob(self, t: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(t)` per element (change of variables)."""
        log_t = torch.log(t)
        y = (log_t - self.loc) * torch.exp(-self.log_scale)
        a = torch.asinh(y) * torch.exp(self.log_tail) - self.skew
        u = torch.sinh(a)
        # du/dt = cosh(a) e^{tail} / sqrt(1 + y^2) * e^{-s} / t
        log_det = (torch.log(torch.cosh(a)) + self.log_tail - 0.5 * torch.log1p(y.square())
                   - self.log_scale - log_t)
        return _std_normal_log_prob(u) + log_det


class IntensityFlow(nn.Module):
    r"""Conditional flow for a bounded scalar given a positive one: affine in logit space, then sigmoid.

    .. math::
        i = f_i(u; t) = l + (h - l)\,\sigma\!\big(a(t) + e^{b(t)} u\big), \qquad u \sim \mathcal N(0, 1),

    where :math:`a, b` are outputs of a small MLP of the standardised :math:`t` and :math:`(l, h)`
    is the fixed support of :math:`i`. Causal Morpho-MNIST's true mechanism,
    :math:`i = 64 + 191\,\sigma(0.5\,\epsilon_i + 2t - 5)`, is of this form (:math:`l = 64`,
    :math:`h = 255`, :math:`a = 2t - 5`, :math:`e^b = 0.5`). For fixed :math:`t` the map is
    strictly increasing in :math:`u`, so :math:`u = f_i^{-1}(i; t)` is exact.

    Parameters
    ----------
    low, high
        Support :math:`(l, h)` of :math:`i`.
    t_mean, t_std
        Standardisation of :math:`t` fed to the MLP.
    hidden
        Width of the MLP.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> flow = IntensityFlow(low=60.0, high=255.0, t_mean=2.5, t_std=0.6)
    >>> t = torch.tensor([1.5, 2.5, 3.5]); u = torch.tensor([0.3, -1.0, 2.0])
    >>> i = flow(u, t)
    >>> bool(((i > 60) & (i < 255)).all()), torch.allclose(flow.inverse(i, t), u, atol=1e-4)
    (True, True)
    """

    def __init__(self, *, low: float = 0.0, high: float = 255.0, t_mean: float = 0.0, t_std: float = 1.0,
                 hidden: int = 16):
        super().__init__()
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"low < high (finite) expected, got low={low}, high={high}")
        if not (math.isfinite(t_std) and t_std > 0):
            raise ValueError(f"t_std must be positive, got {t_std}")
        self.register_buffer("low", torch.tensor(float(low)))
        self.register_buffer("high", torch.tensor(float(high)))
        self.register_buffer("t_mean", torch.tensor(float(t_mean)))
        self.register_buffer("t_std", torch.tensor(float(t_std)))
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 2))
        with torch.no_grad():  # start near the identity in logit space: a = 0, e^b = 1
            self.net[2].weight.mul_(0.1)
            self.net[2].bias.zero_()

    def _ab(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net(((t - self.t_mean) / self.t_std).unsqueeze(-1))
        return out[..., 0], out[..., 1]

    def forward(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:math:`i = f_i(u; t)`."""
        a, b = self._ab(t)
        return self.low + (self.high - self.low) * torch.sigmoid(a + torch.exp(b) * u)

    def _logit(self, i: torch.Tensor) -> torch.Tensor:
        p = ((i - self.low) / (self.high - self.low)).clamp(1e-6, 1 - 1e-6)
        return torch.log(p) - torch.log1p(-p)

    def inverse(self, i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:math:`u = f_i^{-1}(i; t)` (abduction)."""
        a, b = self._ab(t)
        return (self._logit(i) - a) * torch.exp(-b)

    def log_prob(self, i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(i \\mid t)` per element (change of variables)."""
        a, b = self._ab(t)
        y = self._logit(i)
        u = (y - a) * torch.exp(-b)
        # di/du = (h - l) sigma(y) (1 - sigma(y)) e^b
        log_det = torch.log(self.high - self.low) + F.logsigmoid(y) + F.logsigmoid(-y) + b
        return _std_normal_log_prob(u) - log_det


class ConditionalVAE(nn.Module):
    r"""Conditional VAE of an image given its parents: the image mechanism of the deep SCM.

    Encoder :math:`q_\phi(z \mid x, c) = \mathcal N(\mu_\phi, \operatorname{diag}\sigma^2_\phi)` and
    decoder :math:`p_\theta(x \mid z, c)` with :math:`c` the standardised parents, broadcast as
    extra channels at every resolution. The loss is the negative ELBO per image,

    .. math::
        -\mathcal L(x) = -\mathbb E_{q_\phi}\big[\log p_\theta(x \mid z, c)\big]
        + \mathrm{KL}\big(q_\phi(z \mid x, c)\,\Vert\,\mathcal N(0, I)\big).

    The decoder mean is :math:`\mu_\theta(z, c) = g(c_k)\,\sigma(s_\theta(z, c))`: a shape
    :math:`\sigma(s_\theta)` in [0, 1] times, when ``gain`` names a parent :math:`c_k`, an explicit
    learned gain :math:`g(c_k) = \sigma(\mathrm{MLP}(c_k)) \in (0, 1)` (the shape network then does
    not see :math:`c_k`, so :math:`c_k` acts on the image only as a brightness; :math:`g \equiv 1`
    without ``gain``). Likelihoods: Bernoulli (binary cross-entropy on intensities in [0, 1]) or
    Gaussian, :math:`x = \mu_\theta(z, c) + g(c_k)\,\sigma\,u_x` with
    :math:`u_x \sim \mathcal N(0, I)` and :math:`\sigma` a learned per-pixel scale
    (:math:`\ge 0.01`) or a fixed one. The Gaussian decoder is an affine flow of the exogenous
    :math:`u_x`, so :meth:`noise` abducts it exactly and :meth:`decode_noise` puts it back under
    other parents (Pawlowski et al. 2020).

    Kingma D. P., Welling M. (2014). Auto-Encoding Variational Bayes. ICLR. arXiv:1312.6114.

    Parameters
    ----------
    image_size
        Side of the square single-channel images (a multiple of 4).
    cond_dim
        Number of parents :math:`c`.
    latent_dim, width
        Size of :math:`z`; channels of the first convolution (the second has twice as many).
    likelihood
        ``"bernoulli"`` or ``"gaussian"``.
    sigma
        Gaussian only: a fixed pixel scale :math:`\sigma > 0`; ``None`` (default) learns one per pixel.
    gain
        Index :math:`k` of the parent that acts as the decoder's gain, or ``None`` (default).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> vae = ConditionalVAE(image_size=28, cond_dim=2, latent_dim=4, width=8)
    >>> x = torch.rand(3, 1, 28, 28); c = torch.zeros(3, 2)
    >>> mu, logvar = vae.encode(x, c)
    >>> tuple(mu.shape), tuple(vae.decode(mu, c).shape)
    ((3, 4), (3, 1, 28, 28))
    >>> g = ConditionalVAE(image_size=8, cond_dim=2, latent_dim=2, width=2, likelihood="gaussian", gain=1)
    >>> x = torch.rand(2, 1, 8, 8); c = torch.randn(2, 2); z = torch.zeros(2, 2)
    >>> torch.allclose(g.decode_noise(z, c, g.noise(x, z, c)), x, atol=1e-5)
    True
    """

    def __init__(self, *, image_size: int = 28, cond_dim: int = 2, latent_dim: int = 16, width: int = 32,
                 likelihood: str = "bernoulli", sigma: float | None = None, gain: int | None = None):
        super().__init__()
        for name, v, low in (("image_size", image_size, 4), ("cond_dim", cond_dim, 1), ("latent_dim", latent_dim, 1),
                             ("width", width, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        if likelihood not in ("bernoulli", "gaussian"):
            raise ValueError(f"likelihood must be 'bernoulli' or 'gaussian', got {likelihood!r}")
        if sigma is not None and (likelihood != "gaussian" or not (math.isfinite(sigma) and sigma > 0)):
            raise ValueError(f"sigma must be None or a positive number with likelihood='gaussian', got {sigma!r} "
                             f"with likelihood={likelihood!r}")
        if gain is not None and (isinstance(gain, bool) or not isinstance(gain, int) or not 0 <= gain < cond_dim
                                 or cond_dim < 2):
            raise ValueError(f"gain must be None or a parent index in [0, cond_dim) with cond_dim >= 2, got {gain!r}")
        self.image_size, self.cond_dim, self.latent_dim, self.likelihood = image_size, cond_dim, latent_dim, likelihood
        self.gain = gain
        w, s4, c = width, image_size // 4, cond_dim
        cd = c - (gain is not None)  # the shape decoder's condition
        self.enc1 = nn.Conv2d(1 + c, w, 4, 2, 1)
        self.enc2 = nn.Conv2d(w + c, 2 * w, 4, 2, 1)
        self.enc_fc = nn.Sequential(nn.Linear(2 * w * s4 * s4 + c, 256), nn.ReLU(), nn.Linear(256, 2 * latent_dim))
        self.dec_fc = nn.Sequential(nn.Linear(latent_dim + cd, 256), nn.ReLU(), nn.Linear(256, 2 * w * s4 * s4),
                                    nn.ReLU())
        self.dec1 = nn.ConvTranspose2d(2 * w + cd, w, 4, 2, 1)
        self.dec2 = nn.ConvTranspose2d(w + cd, 1, 4, 2, 1)
        self._w = w
        if gain is not None:
            self.gain_net = nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1))
        if likelihood == "gaussian":
            log_sigma = torch.full((1, image_size, image_size), math.log(0.1 if sigma is None else sigma))
            if sigma is None:
                self.log_sigma = nn.Parameter(log_sigma)
            else:
                self.register_buffer("log_sigma", log_sigma)

    @staticmethod
    def _with(h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, c[:, :, None, None].expand(-1, -1, *h.shape[-2:])], 1)

    def _shape_cond(self, c: torch.Tensor) -> torch.Tensor:
        if self.gain is None:
            return c
        return torch.cat([c[:, :self.gain], c[:, self.gain + 1:]], 1)

    def encode(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of :math:`q_\\phi(z \\mid x, c)`, each ``(B, latent_dim)``."""
        h = F.leaky_relu(self.enc1(self._with(x, c)), 0.2)
        h = F.leaky_relu(self.enc2(self._with(h, c)), 0.2)
        out = self.enc_fc(torch.cat([h.flatten(1), c], 1))
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)

    def decode_logits(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Pre-sigmoid shape :math:`s_\\theta(z, c)` ``(B, 1, S, S)``."""
        s4 = self.image_size // 4
        cs = self._shape_cond(c)
        h = self.dec_fc(torch.cat([z, cs], 1)).view(-1, 2 * self._w, s4, s4)
        h = F.leaky_relu(self.dec1(self._with(h, cs)), 0.2)
        return self.dec2(self._with(h, cs))

    def gain_of(self, c: torch.Tensor) -> torch.Tensor:
        """The gain :math:`g(c_k)` ``(B, 1, 1, 1)`` (ones without ``gain``)."""
        if self.gain is None:
            return torch.ones(c.shape[0], 1, 1, 1, dtype=c.dtype, device=c.device)
        return torch.sigmoid(self.gain_net(c[:, self.gain:self.gain + 1]))[:, :, None, None]

    def decode(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Decoder mean :math:`\\mathbb E[x \\mid z, c] = g(c_k)\\,\\sigma(s_\\theta(z, c))` in [0, 1]."""
        return self.gain_of(c) * torch.sigmoid(self.decode_logits(z, c))

    def sigma(self) -> torch.Tensor:
        """Per-pixel scale :math:`\\sigma` of the Gaussian likelihood (``(1, S, S)``)."""
        return torch.exp(self.log_sigma).clamp_min(0.01)

    def scale(self, c: torch.Tensor) -> torch.Tensor:
        """Standard deviation :math:`g(c_k)\\,\\sigma` of the Gaussian likelihood (``(B, 1, S, S)``)."""
        if self.likelihood != "gaussian":
            raise ValueError("scale() needs likelihood='gaussian'")
        return self.gain_of(c) * self.sigma()

    def noise(self, x: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Abducted decoder noise :math:`u_x = (x - \\mu_\\theta(z, c)) / (g(c_k)\\,\\sigma)` (Gaussian)."""
        return (x - self.decode(z, c)) / self.scale(c)

    def decode_noise(self, z: torch.Tensor, c: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """:math:`x = \\mu_\\theta(z, c) + g(c_k)\\,\\sigma\\,u_x` (the inverse of :meth:`noise`)."""
        return self.decode(z, c) + self.scale(c) * u

    def negative_elbo(self, x: torch.Tensor, c: torch.Tensor, *, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction term and KL of the negative ELBO, each per image ``(B,)`` (one sample of
        :math:`z` by reparameterisation, drawn with ``generator``)."""
        mu, logvar = self.encode(x, c)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        logits = self.decode_logits(z, c)
        if self.likelihood == "bernoulli" and self.gain is None:
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        elif self.likelihood == "bernoulli":
            p = (self.gain_of(c) * torch.sigmoid(logits)).clamp(1e-6, 1 - 1e-6)
            rec = -(x * torch.log(p) + (1 - x) * torch.log1p(-p)).flatten(1).sum(1)
        else:
            g = self.gain_of(c)
            std = g * self.sigma()
            rec = (0.5 * ((x - g * torch.sigmoid(logits)) / std).square() + torch.log(std)
                   + 0.5 * _LOG_2PI).flatten(1).sum(1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)
        return rec, kl

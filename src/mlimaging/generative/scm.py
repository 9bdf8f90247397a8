r"""Deep structural causal models of images and their counterfactuals.

The causal graph of causal Morpho-MNIST (Pawlowski et al. 2020): stroke thickness :math:`t`
causes intensity :math:`i`, and both cause the image :math:`x`,

.. math::
    t := f_t(u_t), \qquad i := f_i(u_i;\, t), \qquad x := f_x(u_x;\, t, i),

with independent exogenous noise :math:`u_t, u_i, u_x`. :class:`DeepSCM` learns the mechanisms:
normalising flows for :math:`t` and :math:`i \mid t` (invertible, so their noise is abducted
exactly) and a conditional VAE for :math:`x \mid t, i`, whose exogenous noise is the latent
:math:`z` (abducted by the encoder mean) plus, optionally, the decoder's residual.
:class:`TrueSCM` holds the known mechanisms of :func:`mlimaging.generative.morphomnist.causal_mnist`
(the ground truth against which counterfactuals and soundness metrics are checked).

Both implement one interface: ``abduct(image, parents) -> noise`` and
``predict(noise, do) -> {"image", "t", "i"}``; :func:`counterfactual` is abduction, action and
prediction over it, and :func:`causal_effects` the total, direct and indirect effects of :math:`t`.

Conventions: images ``(B, 1, S, S)`` float in [0, 1]; ``parents`` maps ``"t"`` (thickness, > 0,
pixels) and ``"i"`` (intensity, grey levels 0-255) to tensors ``(B,)`` (a float or a 0-d tensor
broadcasts over the batch).

References: Pawlowski N., Castro D. C., Glocker B. (2020). Deep Structural Causal Models for
Tractable Counterfactual Inference. NeurIPS. arXiv:2006.06485. Pearl J. (2009). Causality, 2nd ed.,
ch. 7 (abduction-action-prediction); Pearl J. (2001). Direct and indirect effects. UAI.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mlimaging.generative._scm_mechanisms import ConditionalVAE, IntensityFlow, ThicknessFlow
from mlimaging.training.step import TrainStep

__all__ = ["PARENTS", "ConditionalVAE", "DeepSCM", "IntensityFlow", "SCMStep", "ThicknessFlow", "TrueSCM",
           "causal_effects", "counterfactual", "scm_batch"]

#: The parents of the image, in causal order.
PARENTS = ("t", "i")
_ALIASES = {"thickness": "t", "intensity": "i"}


# ----------------------------------------------------------------------------------------- checks
def _check_images(image: Any, name: str = "image") -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor (B, 1, H, W), got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[1] != 1 or image.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B, 1, H, W) with B >= 1 (or (1, H, W)), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor in [0, 1], got dtype {image.dtype}")
    if not torch.isfinite(image).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return image


def _as_values(value: Any, n: int, name: str, like: torch.Tensor) -> torch.Tensor:
    try:
        v = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a number or a tensor of shape ({n},), got {type(value).__name__}") from None
    if v.ndim == 0:
        v = v.expand(n)
    if v.shape != (n,):
        raise ValueError(f"{name} must be a number or a tensor of shape ({n},), got shape {tuple(v.shape)}")
    if not torch.isfinite(v).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if name.endswith('["t"]') and not (v > 0).all():
        raise ValueError(f"{name} (thickness) must be > 0, got min {float(v.min()):g}")
    return v.clone()


def _check_values(values: Any, n: int, name: str, like: torch.Tensor, *, required: bool) -> dict[str, torch.Tensor]:
    if not isinstance(values, Mapping):
        raise ValueError(f"{name} must be a dict mapping parent names {PARENTS} to values, got {type(values).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in values.items():
        k = _ALIASES.get(key, key)
        if k not in PARENTS:
            raise ValueError(f"{name}: unknown parent {key!r}; expected one of {PARENTS} (or 'thickness', 'intensity')")
        if k in out:
            raise ValueError(f"{name} gives parent {k!r} twice")
        out[k] = _as_values(value, n, f'{name}["{k}"]', like)
    missing = [p for p in PARENTS if p not in out]
    if required and missing:
        raise ValueError(f"{name} must give every parent {PARENTS}; missing {missing}")
    return out


def check_inputs(image: Any, parents: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Validated ``(B, 1, H, W)`` images and parents ``{"t": (B,), "i": (B,)}`` (``ValueError`` otherwise)."""
    x = _check_images(image)
    return x, _check_values(parents, x.shape[0], "parents", x, required=True)


def scm_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(images, t, i)`` of a batch: a tuple ``(images, t, i)`` or a dict with ``images`` (or ``image``)
    and ``t``/``thickness`` and ``i``/``intensity`` (as :func:`~mlimaging.generative.morphomnist.causal_mnist`
    returns)."""
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[0], batch[1], batch[2]
    if isinstance(batch, Mapping):
        x = batch.get("images", batch.get("image"))
        t = batch.get("t", batch.get("thickness"))
        i = batch.get("i", batch.get("intensity"))
        if x is not None and t is not None and i is not None:
            return x, t, i
    raise ValueError("an SCM batch must be a tuple (images, t, i) or a dict with 'images', 'thickness' and "
                     f"'intensity', got {type(batch).__name__}")


# ----------------------------------------------------------------------------------------- deep SCM
class DeepSCM(nn.Module):
    r"""Deep SCM of causal Morpho-MNIST: flows for :math:`t` and :math:`i \mid t`, a conditional VAE for the image.

    .. math::
        t = f_t(u_t), \quad i = f_i(u_i; t), \quad x \sim p_\theta(x \mid z, t, i), \quad
        u_t, u_i \sim \mathcal N(0, 1),\; z \sim \mathcal N(0, I),

    (:class:`ThicknessFlow`, :class:`IntensityFlow`, :class:`ConditionalVAE`). Training maximises
    :math:`\log p(t) + \log p(i \mid t) + \mathrm{ELBO}(x \mid t, i)` (the three parts have
    disjoint parameters); :meth:`forward` returns the per-sample terms and :class:`SCMStep` trains
    it with :func:`mlimaging.training.fit`.

    Abduction (:meth:`abduct`) inverts the flows exactly and takes the posterior mean
    :math:`z = \mu_\phi(x, t, i)` (and the decoder residual :math:`x - \mathbb E[x \mid z, t, i]`);
    prediction (:meth:`predict`) pushes the noise through the mechanisms with the intervened
    parents fixed. This is the "conditional VAE" image mechanism of Pawlowski et al. (2020).

    Parameters
    ----------
    image_size, latent_dim, width, likelihood, sigma
        Passed to :class:`ConditionalVAE`.
    gain
        If true, the intensity acts on the image as an explicit learned gain
        (:class:`ConditionalVAE` with ``gain=1``: :math:`\mathbb E[x \mid z, t, i] = g(i)\,
        \sigma(s_\theta(z, t))`); the default ``False`` conditions the whole decoder on both parents.
    t_mean, t_std, i_mean, i_std
        Standardisation of the parents fed to the networks.
    i_low, i_high
        Support of the intensity (:class:`IntensityFlow`).
    log_t_mean, log_t_std
        Initial location and scale of :math:`\log t` (:class:`ThicknessFlow`).

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> scm = DeepSCM(latent_dim=4, width=8)
    >>> x = torch.rand(2, 1, 28, 28); pa = {"t": torch.tensor([2.0, 3.0]), "i": torch.tensor([120.0, 200.0])}
    >>> noise = scm.abduct(x, pa)
    >>> out = scm.predict(noise, {})                  # no intervention: the parents come back
    >>> torch.allclose(out["t"], pa["t"]) and torch.allclose(out["i"], pa["i"], atol=1e-3)
    True
    """

    parents = PARENTS

    def __init__(self, *, image_size: int = 28, latent_dim: int = 16, width: int = 32, likelihood: str = "bernoulli",
                 sigma: float | None = None, gain: bool = False, t_mean: float = 2.5, t_std: float = 0.65, i_mean: float = 180.0, i_std: float = 50.0,
                 i_low: float = 0.0, i_high: float = 255.0, log_t_mean: float = 0.9, log_t_std: float = 0.25):
        super().__init__()
        for name, v in (("t_std", t_std), ("i_std", i_std)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be positive, got {v}")
        self._config = dict(image_size=image_size, latent_dim=latent_dim, width=width, likelihood=likelihood,
                            sigma=None if sigma is None else float(sigma), gain=bool(gain),
                            t_mean=float(t_mean), t_std=float(t_std), i_mean=float(i_mean), i_std=float(i_std),
                            i_low=float(i_low), i_high=float(i_high), log_t_mean=float(log_t_mean),
                            log_t_std=float(log_t_std))
        self.thickness = ThicknessFlow(loc=log_t_mean, scale=log_t_std)
        self.intensity = IntensityFlow(low=i_low, high=i_high, t_mean=t_mean, t_std=t_std)
        self.image = ConditionalVAE(image_size=image_size, cond_dim=2, latent_dim=latent_dim, width=width,
                                    likelihood=likelihood, sigma=sigma, gain=1 if gain else None)
        self.register_buffer("pa_mean", torch.tensor([float(t_mean), float(i_mean)]))
        self.register_buffer("pa_std", torch.tensor([float(t_std), float(i_std)]))

    @classmethod
    def from_data(cls, thickness: torch.Tensor, intensity: torch.Tensor, *, margin: float = 0.05,
                  **kwargs: Any) -> DeepSCM:
        """A model whose standardisation, intensity support and initial thickness flow come from the
        training parents (support: the observed range widened by ``margin`` (default 5%) of its width
        on each side, within [0, 255], so that held-out intensities a little beyond the training
        range can still be abducted; :meth:`abduct` rejects intensities outside the support)."""
        t = torch.as_tensor(thickness, dtype=torch.float64).reshape(-1)
        i = torch.as_tensor(intensity, dtype=torch.float64).reshape(-1)
        if t.numel() < 2 or t.shape != i.shape:
            raise ValueError(f"thickness and intensity must be 1-D of the same length >= 2, got {tuple(t.shape)} "
                             f"and {tuple(i.shape)}")
        if not (torch.isfinite(t).all() and torch.isfinite(i).all() and (t > 0).all()):
            raise ValueError("thickness must be finite and > 0 and intensity finite")
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 10:
            raise ValueError(f"margin must be a number in [0, 10), got {margin!r}")
        span = float(i.max() - i.min()) or 1.0
        stats = dict(t_mean=float(t.mean()), t_std=float(t.std()) or 1.0, i_mean=float(i.mean()),
                     i_std=float(i.std()) or 1.0, i_low=max(0.0, float(i.min()) - margin * span),
                     i_high=min(255.0, float(i.max()) + margin * span), log_t_mean=float(t.log().mean()),
                     log_t_std=float(t.log().std()) or 1.0)
        if stats["i_high"] <= float(i.max()):
            stats["i_high"] = float(i.max()) + max(margin, 0.02) * span
        return cls(**{**stats, **kwargs})

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (plain types: checkpoint metadata to rebuild the model)."""
        return dict(self._config)

    def _cond(self, t: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
        return (torch.stack([t, i], 1) - self.pa_mean) / self.pa_std

    def _check_support(self, i: torch.Tensor, name: str) -> None:
        low, high = float(self.intensity.low), float(self.intensity.high)
        if not ((i > low) & (i < high)).all():
            raise ValueError(f"{name} must lie in the model's intensity support ({low:.1f}, {high:.1f}), got values in "
                             f"[{float(i.min()):.1f}, {float(i.max()):.1f}]")

    def forward(self, image: torch.Tensor, t: torch.Tensor, i: torch.Tensor, *,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        r"""Per-sample training terms ``(B,)``: ``nll_t`` :math:`= -\log p(t)`, ``nll_i``
        :math:`= -\log p(i \mid t)`, ``rec`` and ``kl`` of the image's negative ELBO."""
        c = self._cond(t, i)
        rec, kl = self.image.negative_elbo(image, c, generator=generator)
        return {"nll_t": -self.thickness.log_prob(t), "nll_i": -self.intensity.log_prob(i, t), "rec": rec, "kl": kl}

    @torch.no_grad()
    def abduct(self, image: torch.Tensor, parents: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Exogenous noise of each sample: ``t`` (:math:`u_t`), ``i`` (:math:`u_i`), ``z`` (posterior
        mean) and ``residual``: the decoder noise :math:`u_x = (x - \\mathbb E[x \\mid z, t, i]) /
        \\mathrm{sd}[x \\mid z, t, i]` of a Gaussian likelihood (:meth:`ConditionalVAE.noise`), the
        plain difference :math:`x - \\mathbb E[x \\mid z, t, i]` of a Bernoulli one."""
        x, pa = check_inputs(image, parents)
        self._check_support(pa["i"], 'parents["i"]')
        c = self._cond(pa["t"], pa["i"])
        z, _ = self.image.encode(x, c)
        res = self.image.noise(x, z, c) if self.image.likelihood == "gaussian" else x - self.image.decode(z, c)
        return {"t": self.thickness.inverse(pa["t"]), "i": self.intensity.inverse(pa["i"], pa["t"]), "z": z,
                "residual": res}

    @torch.no_grad()
    def predict(self, noise: Mapping[str, torch.Tensor], do: Mapping[str, Any], *,
                decoder_noise: bool = False) -> dict[str, torch.Tensor]:
        r"""Push the noise through the mechanisms with the parents in ``do`` fixed.

        :math:`t' = \text{do}_t` or :math:`f_t(u_t)`; :math:`i' = \text{do}_i` or :math:`f_i(u_i; t')`;
        :math:`x' = \mathbb E[x \mid z, t', i']`, or with ``decoder_noise`` (Gaussian likelihood) the
        abducted decoder noise put back, :math:`x' = \mu' + \mathrm{sd}' \cdot u_x` with
        :math:`u_x = (x - \mu)/\mathrm{sd}` (so the null intervention returns :math:`x`), clipped to [0, 1].
        """
        z = noise["z"]
        act = _check_values(do, z.shape[0], "do", z, required=False)
        t = act["t"] if "t" in act else self.thickness(noise["t"])
        if "i" in act:
            self._check_support(act["i"], 'do["i"]')
            i = act["i"]
        else:
            i = self.intensity(noise["i"], t)
        c = self._cond(t, i)
        if decoder_noise:
            if self.image.likelihood != "gaussian":
                raise ValueError("decoder_noise=True needs a Gaussian likelihood (a Bernoulli decoder's noise "
                                 "cannot be abducted)")
            x = self.image.decode_noise(z, c, noise["residual"]).clamp(0.0, 1.0)
        else:
            x = self.image.decode(z, c)
        return {"image": x, "t": t, "i": i}

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """``n`` draws ``{"image", "t", "i"}`` from the model (decoder means)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        dev = self.pa_mean.device
        u = torch.randn(2 + self.image.latent_dim, n, generator=generator).to(dev)
        noise = {"t": u[0], "i": u[1], "z": u[2:].T.contiguous()}
        return self.predict(noise, {})


class SCMStep(TrainStep):
    r"""The :class:`~mlimaging.training.step.TrainStep` of :class:`DeepSCM`: maximum likelihood.

    .. math::
        \ell = \frac{1}{B}\sum_{b}\Big[-\log p(t_b) - \log p(i_b \mid t_b)
        + \mathrm{rec}_b + \beta\,\mathrm{KL}_b\Big],

    (:math:`\mathrm{rec} + \mathrm{KL}` is the image's negative ELBO; ``beta`` :math:`= 1`, the
    default, is maximum likelihood, :math:`\beta < 1` trades prior fit for sharper reconstructions,
    Higgins et al. 2017), with the VAE's :math:`z` drawn from the step's own seeded generator (saved in checkpoints, so a
    resumed run continues exactly). Logs ``nll_t``, ``nll_i``, ``rec`` and ``kl``. Batches are
    ``(images, t, i)`` tuples or dicts (:func:`scm_batch`).

    Examples
    --------
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from mlimaging.training import fit
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(16, 1, 28, 28, generator=g)
    >>> t = 2 + torch.rand(16, generator=g); i = 100 + 100 * torch.rand(16, generator=g)
    >>> _ = torch.manual_seed(0)
    >>> scm = DeepSCM.from_data(t, i, latent_dim=4, width=8)
    >>> h = fit(scm, TensorDataset(x, t, i), step=SCMStep(seed=0), metrics=(), epochs=2, batch_size=8,
    ...         optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), progress=False)
    >>> sorted(k for k in h.epochs[-1] if k not in ("epoch", "lr", "seconds"))
    ['kl', 'loss', 'nll_i', 'nll_t', 'rec']
    """

    def __init__(self, *, seed: int = 0, beta: float = 1.0):
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (math.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a positive number, got {beta!r}")
        self.seed, self.beta = seed, float(beta)
        self.generator = torch.Generator().manual_seed(seed)

    def _terms(self, model: nn.Module, batch: Any, generator: torch.Generator
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, t, i = scm_batch(batch)
        terms = model(x, t.to(x.dtype), i.to(x.dtype), generator=generator)
        parts = {k: v.mean() for k, v in terms.items()}
        return sum(self.beta * v if k == "kl" else v for k, v in parts.items()), parts

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        optimizer.zero_grad(set_to_none=True)
        loss, parts = self._terms(model, batch, self.generator)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        optimizer.step()
        return loss.detach(), {k: v.detach() for k, v in parts.items()}

    def validation_loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """The loss with :math:`z` drawn from a generator seeded afresh (the same draws every epoch)."""
        return self._terms(model, batch, torch.Generator().manual_seed(self.seed))[0]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.generator.set_state(state["generator"])


# ----------------------------------------------------------------------------------------- true SCM
def _logit(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


class TrueSCM:
    r"""The known SCM of causal Morpho-MNIST (Pawlowski et al. 2020), with the interface of :class:`DeepSCM`.

    .. math::
        t = 0.5 + \epsilon_t, \qquad i = 64 + 191\,\sigma(0.5\,\epsilon_i + 2t - 5), \qquad
        x = \operatorname{set\_intensity}(\operatorname{set\_thickness}(x_0, t), i),

    :math:`\epsilon_t \sim \Gamma(10, 5)`, :math:`\epsilon_i \sim \mathcal N(0, 1)`. Abduction
    inverts the parents' equations exactly; the image noise is the observed image itself with
    its parents. Prediction applies :func:`~mlimaging.generative.morphomnist.set_thickness` only where
    :math:`t` changes and then :func:`~mlimaging.generative.morphomnist.set_intensity` where
    :math:`t` or :math:`i` changes (relative tolerance ``tol``); unchanged samples come back
    bit for bit, so the null intervention is the identity.

    Examples
    --------
    >>> import torch
    >>> scm = TrueSCM()
    >>> x = torch.zeros(2, 1, 28, 28); x[:, :, 6:22, 12:15] = 0.5
    >>> noise = scm.abduct(x, {"t": torch.tensor([2.0, 3.0]), "i": torch.tensor([100.0, 200.0])})
    >>> out = scm.predict(noise, {"i": 150.0})        # only the intensity changes
    >>> out["t"].tolist(), out["i"].tolist()
    ([2.0, 3.0], [150.0, 150.0])
    >>> i_t = scm.predict(noise, {"t": 2.5})["i"]    # do(t) moves i through its mechanism
    >>> bool(i_t[0] > 100 and i_t[1] < 200)
    True
    """

    parents = PARENTS

    def __init__(self, *, tol: float = 1e-5):
        self.tol = float(tol)

    @staticmethod
    def intensity_mechanism(eps_i: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:math:`i = 64 + 191\\,\\sigma(0.5\\,\\epsilon_i + 2t - 5)`."""
        return 64.0 + 191.0 * torch.sigmoid(0.5 * eps_i + 2.0 * t - 5.0)

    @torch.no_grad()
    def abduct(self, image: torch.Tensor, parents: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """``t`` (:math:`\\epsilon_t`), ``i`` (:math:`\\epsilon_i`), and the image with its parents."""
        x, pa = check_inputs(image, parents)
        t, i = pa["t"], pa["i"]
        if not (t > 0.5).all():
            raise ValueError(f'parents["t"] must be > 0.5 (t = 0.5 + eps_t), got min {float(t.min()):g}')
        if not ((i > 64) & (i < 255)).all():
            raise ValueError(f'parents["i"] must lie in (64, 255), got [{float(i.min()):g}, {float(i.max()):g}]')
        eps_i = (_logit((i.double() - 64.0) / 191.0) - 2.0 * t.double() + 5.0) / 0.5
        return {"t": t - 0.5, "i": eps_i.to(i.dtype), "image": x.clone(), "t_obs": t, "i_obs": i}

    def _changed(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return (new - old).abs() > self.tol * old.abs().clamp_min(1.0)

    @torch.no_grad()
    def predict(self, noise: Mapping[str, torch.Tensor], do: Mapping[str, Any], **_: Any) -> dict[str, torch.Tensor]:
        """Counterfactual ``{"image", "t", "i"}`` under ``do`` with the morphological mechanisms."""
        from mlimaging.generative.morphomnist import set_intensity, set_thickness

        x0, t0, i0 = noise["image"], noise["t_obs"], noise["i_obs"]
        act = _check_values(do, x0.shape[0], "do", x0, required=False)
        t = act["t"] if "t" in act else t0.clone()
        new_t = self._changed(t, t0)
        if "i" in act:
            i = act["i"]
        else:
            i = torch.where(new_t, self.intensity_mechanism(noise["i"].double(), t.double()).to(t.dtype), i0)
        new_i = self._changed(i, i0)
        x = x0.clone()
        for b in torch.nonzero(new_t | new_i).flatten().tolist():
            img = x0[b]
            if new_t[b]:
                img = set_thickness(img, float(t[b]))
            x[b] = torch.as_tensor(set_intensity(img, float(i[b])), dtype=x.dtype).reshape(x0[b].shape)
        return {"image": x, "t": t, "i": i}


# ----------------------------------------------------------------------------------------- inference
def counterfactual(model: Any, image: torch.Tensor, parents: Mapping[str, Any], do: Mapping[str, Any], *,
                   decoder_noise: bool | None = None) -> dict[str, torch.Tensor]:
    r"""Counterfactual images and parents by abduction, action and prediction (Pearl 2009, ch. 7).

    1. Abduction: :math:`u = \text{model.abduct}(x, \text{pa})` (exogenous noise of each sample);
    2. action: replace the mechanisms of the parents in ``do`` by constants;
    3. prediction: :math:`x', \text{pa}' = \text{model.predict}(u, \text{do})`.

    So :math:`\text{do}(t)` moves :math:`i` through its mechanism with the same :math:`u_i`
    (:math:`i' = f_i(u_i; t')`), while :math:`\text{do}(i)` leaves :math:`t` unchanged
    (:math:`i` does not cause :math:`t`). ``do={}`` is the null intervention (a reconstruction).

    Parameters
    ----------
    model
        A :class:`DeepSCM`, a :class:`TrueSCM`, or any object with ``abduct`` and ``predict``.
    image
        ``(B, 1, H, W)`` (or ``(1, H, W)``) in [0, 1].
    parents
        Observed ``{"t": ..., "i": ...}`` of each image (floats broadcast over the batch).
    do
        Intervened parents, e.g. ``{"t": 3.0}`` or ``{"i": torch.tensor([...])}``.
    decoder_noise
        Add the abducted decoder residual (Gaussian :class:`DeepSCM` only): the counterfactual
        keeps the image's own exogenous noise, as Pawlowski et al. (2020) do. ``None`` (default):
        True for a :class:`DeepSCM` with a Gaussian likelihood, False otherwise. On held-out causal
        Morpho-MNIST it lowers the do(t) intensity error of a Gaussian model from about 12 to 7
        grey levels (the decoder mean is blurred, so its measured intensity reads low).

    Returns
    -------
    dict
        ``{"image": (B, 1, H, W), "t": (B,), "i": (B,)}``.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> scm = DeepSCM(latent_dim=4, width=8)
    >>> x = torch.rand(3, 1, 28, 28)
    >>> cf = counterfactual(scm, x, {"t": 2.0, "i": 150.0}, do={"t": 3.0})
    >>> tuple(cf["image"].shape), cf["t"].tolist()
    ((3, 1, 28, 28), [3.0, 3.0, 3.0])
    """
    if not (hasattr(model, "abduct") and hasattr(model, "predict")):
        raise ValueError(f"model must have abduct(image, parents) and predict(noise, do), got {type(model).__name__}")
    x, pa = check_inputs(image, parents)
    _check_values(do, x.shape[0], "do", x, required=False)
    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        noise = model.abduct(x, pa)
        if decoder_noise is None:
            image_mech = getattr(model, "image", None) if isinstance(model, DeepSCM) else None
            decoder_noise = getattr(image_mech, "likelihood", None) == "gaussian"
        kw = {"decoder_noise": True} if decoder_noise else {}
        return model.predict(noise, do, **kw)
    finally:
        if was_training:
            model.train()


def causal_effects(model: Any, image: torch.Tensor, parents: Mapping[str, Any], *, t: Any,
                   reference: Any = None, outcomes: Mapping[str, Callable[[torch.Tensor], Any]] | None = None
                   ) -> list[dict[str, Any]]:
    r"""Total, natural direct and natural indirect effects of thickness on the image, per unit then averaged.

    For each sample (unit) with abducted noise :math:`u`, let :math:`i(\tau) = f_i(u_i; \tau)` and
    :math:`Y(\tau, \iota)` be an outcome of the counterfactual image
    :math:`f_x(u_x; \tau, \iota)`. With the treatment :math:`\tau_1` = ``t`` and the reference
    :math:`\tau_0` = ``reference`` (default: each sample's observed :math:`t`),

    .. math::
        \mathrm{TE} = \overline{Y(\tau_1, i(\tau_1)) - Y(\tau_0, i(\tau_0))}, \quad
        \mathrm{NDE} = \overline{Y(\tau_1, i(\tau_0)) - Y(\tau_0, i(\tau_0))}, \quad
        \mathrm{NIE} = \overline{Y(\tau_0, i(\tau_1)) - Y(\tau_0, i(\tau_0))},

    the mean over samples (Pearl 2001): the direct effect holds the mediator :math:`i` at the
    value it takes under the reference, the indirect one moves only :math:`i`. With no
    interaction :math:`\mathrm{TE} = \mathrm{NDE} + \mathrm{NIE}`. ``image_l1`` reports the same
    three contrasts as mean absolute pixel differences :math:`\overline{|x_a - x_b|}` (a size, not
    a signed effect). The ``i`` row is the effect of :math:`t` on the intensity parent itself
    (direct by the graph: its NIE is 0).

    Parameters
    ----------
    model, image, parents
        As for :func:`counterfactual`.
    t
        Treatment value :math:`\tau_1` (float or ``(B,)``).
    reference
        Reference :math:`\tau_0`; default: the observed thickness.
    outcomes
        Name -> function ``images (B, 1, H, W) -> (B,)``; default: the measured thickness and
        intensity of :mod:`mlimaging.generative.morphomnist` (``measure`` and the image intensity).

    Returns
    -------
    list of dict
        One row per outcome: ``outcome``, ``total``, ``direct``, ``indirect``.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> scm = DeepSCM(latent_dim=4, width=8)
    >>> x = torch.rand(4, 1, 28, 28)
    >>> rows = causal_effects(scm, x, {"t": 2.0, "i": 150.0}, t=3.0, outcomes={"mean": lambda im: im.mean((1, 2, 3))})
    >>> [r["outcome"] for r in rows], rows[-1]["indirect"]
    (['mean', 'image_l1', 'i'], 0.0)
    """
    x, pa = check_inputs(image, parents)
    n = x.shape[0]
    t1 = _as_values(t, n, 't', x)
    if not (t1 > 0).all():
        raise ValueError("t (thickness) must be > 0")
    t0 = pa["t"] if reference is None else _as_values(reference, n, "reference", x)
    if not (t0 > 0).all():
        raise ValueError("reference (thickness) must be > 0")
    if outcomes is None:
        outcomes = _default_outcomes()
    if not isinstance(outcomes, Mapping) or not all(callable(f) for f in outcomes.values()):
        raise ValueError("outcomes must map names to functions images -> (B,) values")
    was_training = getattr(model, "training", None)
    if was_training is not None:
        model.eval()
    try:
        noise = model.abduct(x, pa)
        y11 = model.predict(noise, {"t": t1})
        y00 = model.predict(noise, {"t": t0})
        y10 = model.predict(noise, {"t": t1, "i": y00["i"]})
        y01 = model.predict(noise, {"t": t0, "i": y11["i"]})
    finally:
        if was_training:
            model.train()
    rows = []
    for name, f in outcomes.items():
        v = {k: torch.as_tensor(f(y["image"]), dtype=torch.float64).reshape(-1)
             for k, y in (("11", y11), ("00", y00), ("10", y10), ("01", y01))}
        rows.append({"outcome": name, "total": float((v["11"] - v["00"]).mean()),
                     "direct": float((v["10"] - v["00"]).mean()), "indirect": float((v["01"] - v["00"]).mean())})

    def l1(a: dict, b: dict) -> float:
        return float((a["image"] - b["image"]).abs().mean())

    rows.append({"outcome": "image_l1", "total": l1(y11, y00), "direct": l1(y10, y00), "indirect": l1(y01, y00)})
    te_i = float((y11["i"] - y00["i"]).double().mean())
    rows.append({"outcome": "i", "total": te_i, "direct": te_i, "indirect": 0.0})
    return rows


def _default_outcomes() -> dict[str, Callable[[torch.Tensor], Any]]:
    from mlimaging.generative.soundness import measured_intensity, measured_thickness

    return {"thickness": measured_thickness, "intensity": measured_intensity}

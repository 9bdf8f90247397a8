r"""Experiment ``generative``: GANs, Morpho-MNIST and deep structural causal models.

Sections of the report (models and metrics from :mod:`mlimaging.generative`, training through
:func:`mlimaging.training.fit` with the two-network :class:`~mlimaging.generative.gan.GANStep`
and the :class:`~mlimaging.generative.scm.SCMStep`):

1. **DCGAN on mnist5k** (Radford et al. 2016): samples for one fixed :math:`z` over training,
   the losses and :math:`D`'s outputs per epoch, and the FID in the features of our own digit
   classifier (:func:`~mlimaging.generative.quality.mnist_feature_extractor`; Inception weights
   cannot be downloaded),

   .. math::
       \mathrm{FID} = \lVert \mu_r - \mu_g \rVert^2 + \operatorname{Tr}\big(\Sigma_r + \Sigma_g
       - 2 (\Sigma_r \Sigma_g)^{1/2}\big),

   beside two baselines at equal set sizes: two halves of the real test split (the floor) and
   Gaussian noise (a generator that learnt nothing), with precision and recall (Kynkäänniemi et
   al. 2019) and the share of each digit class among the samples.
2. **Minimax against non-saturating** generator loss (Goodfellow et al. 2014): the same
   initialisation trained with each; after every batch, :math:`D(G(z))` on a fixed :math:`z` and
   the norm of the generator's gradient of both losses,
   :math:`\lVert\nabla_\theta \mathbb{E}\log(1 - \sigma(f))\rVert` (minimax, vanishing as
   :math:`\sigma(f) \to 0`) and :math:`\lVert\nabla_\theta (-\mathbb{E}\log\sigma(f))\rVert`.
3. **Morpho-MNIST** (Castro et al. 2019): histograms of the measurements (area, length,
   thickness, slant, width, height, intensity) on mnist5k and on ``causal_mnist``, and the
   measured thickness and intensity of ``causal_mnist`` against the true :math:`t` and
   :math:`i` the SCM set.
4. **Deep SCM** (Pawlowski et al. 2020) on ``causal_mnist``,
   :math:`t := f_t(u_t),\ i := f_i(u_i; t),\ x := f_x(u_x; t, i)`, with flows for the parents
   and a conditional VAE for the image: training curves and counterfactual grids (abduction,
   action, prediction), rows of :math:`\mathrm{do}(t)` and :math:`\mathrm{do}(i)`, each digit
   beside the true SCM's counterfactual.
5. **Soundness** (Monteiro et al. 2023): composition (:math:`m` null interventions),
   reversibility and effectiveness per parent, for the VAE-based image mechanism and for the
   true SCM (the zero reference of composition and reversibility). The scm module offers no
   GAN-based image mechanism, so there is no such row.
6. **Causal effects** of thickness (Pearl 2001): total, natural direct and natural indirect
   effects on the measured thickness and intensity, for the deep and the true SCM.

Every number depends only on ``seed`` (timings aside).

References
----------
Goodfellow I. et al. (2014). Generative adversarial nets. NeurIPS. arXiv:1406.2661.

Radford A., Metz L., Chintala S. (2016). Unsupervised representation learning with deep
convolutional generative adversarial networks. ICLR. arXiv:1511.06434.

Heusel M. et al. (2017). GANs trained by a two time-scale update rule converge to a local Nash
equilibrium. NeurIPS. arXiv:1706.08500.

Kynkäänniemi T. et al. (2019). Improved precision and recall metric for assessing generative
models. NeurIPS. arXiv:1904.06991.

Castro D. C., Tan J., Kainz B., Konukoglu E., Glocker B. (2019). Morpho-MNIST: quantitative
assessment and diagnostics for representation learning. JMLR 20(178). arXiv:1809.10780.

Pawlowski N., Castro D. C., Glocker B. (2020). Deep structural causal models for tractable
counterfactual inference. NeurIPS. arXiv:2006.06485.

Monteiro M., Ribeiro F. D. S., Pawlowski N., Castro D. C., Glocker B. (2023). Measuring
axiomatic soundness of counterfactual image models. ICLR. arXiv:2303.01274.

Pearl J. (2001). Direct and indirect effects. UAI.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("generative", quick=True, seed=0, out="runs/gen")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

__all__ = ["FULL", "QUICK", "GenerativeConfig", "SaturationProbe"]

#: Quick mode: a few hundred images, one epoch of each model, small networks.
QUICK: dict[str, Any] = {
    "n_train": 256, "epochs": 1, "width": 16, "latent_dim": 32, "n_fid": 200, "feature_epochs": 1,
    "n_saturation": 192, "saturation_epochs": 1, "n_morpho": 300, "n_causal": 256, "scm_epochs": 1, "scm_width": 8,
    "n_test": 16, "m": 2, "n_cf": 2,
}
#: Full mode: all 3,500 training digits, the DCGAN's width 64 and 20 epochs, 4,000 causal digits.
FULL: dict[str, Any] = {
    "n_train": None, "epochs": 20, "width": 64, "latent_dim": 100, "n_fid": 1000, "feature_epochs": 12,
    "n_saturation": 1024, "saturation_epochs": 2, "n_morpho": None, "n_causal": 4000, "scm_epochs": 30,
    "scm_width": 32, "n_test": 200, "m": 10, "n_cf": 4,
}
MEASURES = ("area", "length", "thickness", "slant", "width", "height", "intensity")


@dataclass
class GenerativeConfig(ExperimentConfig):
    """Settings of the ``generative`` experiment; ``None`` takes the quick/full value (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    n_train, epochs, width, latent_dim
        mnist5k training digits of the DCGAN (None: all 3,500), its epochs, width and size of z.
    n_fid
        Real test digits of the FID (two halves of ``n_fid / 2``) and the number of samples compared.
    feature_epochs
        Epochs of our digit classifier whose features give the FID (cached on disk).
    n_saturation, saturation_epochs
        Digits and epochs of each run of the minimax against non-saturating comparison.
    n_morpho
        mnist5k training digits measured (None: all).
    n_causal, scm_epochs, scm_width, scm_latent
        causal_mnist training samples and the deep SCM's epochs, VAE width and latent size.
    n_test
        Held-out causal_mnist samples of the soundness and effect tables.
    m
        Null interventions of the composition axiom.
    n_cf
        Digits in each counterfactual grid.
    do_t, do_i
        Interventions of the grids: thickness (pixels) and intensity (grey levels 0-255, kept inside
        the deep SCM's support).
    treatment_t
        Thickness :math:`\\tau_1` of the causal effects (reference: each sample's observed :math:`t`).
    lr, batch_size
        Adam learning rate (DCGAN: betas (0.5, 0.999)) and batch size of the DCGAN.
    scm_lr
        Adam learning rate of the deep SCM.
    """

    n_train: int | None = None
    epochs: int | None = None
    width: int | None = None
    latent_dim: int | None = None
    n_fid: int | None = None
    feature_epochs: int | None = None
    n_saturation: int | None = None
    saturation_epochs: int | None = None
    n_morpho: int | None = None
    n_causal: int | None = None
    scm_epochs: int | None = None
    scm_width: int | None = None
    scm_latent: int = 16
    n_test: int | None = None
    m: int | None = None
    n_cf: int | None = None
    do_t: tuple[float, ...] = (1.5, 2.5, 3.5, 4.5)
    do_i: tuple[float, ...] = (90.0, 140.0, 190.0, 240.0)
    treatment_t: float = 3.5
    lr: float = 2e-4
    batch_size: int = 64
    scm_lr: float = 1e-3


def _resolve(cfg: GenerativeConfig) -> dict[str, Any]:
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    p["scm_latent"], p["batch_size"] = cfg.scm_latent, cfg.batch_size
    for key in ("epochs", "width", "latent_dim", "n_fid", "feature_epochs", "n_saturation", "saturation_epochs",
                "n_causal", "scm_epochs", "scm_width", "scm_latent", "n_test", "m", "n_cf", "batch_size"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    for key in ("n_train", "n_morpho"):
        if p[key] is not None and (isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 16):
            raise ValueError(f"{key} must be an integer >= 16 or None (all), got {p[key]!r}")
    if p["n_fid"] < 16 or p["n_test"] < 4 or p["n_causal"] < 16:
        raise ValueError(f"n_fid must be >= 16, n_test >= 4 and n_causal >= 16, got {p['n_fid']}, {p['n_test']} and "
                         f"{p['n_causal']}")
    for key, values, low, high in (("do_t", cfg.do_t, 0.5, 10.0), ("do_i", cfg.do_i, 0.0, 255.0)):
        if not values or not all(isinstance(v, (int, float)) and np.isfinite(v) and low < v < high for v in values):
            raise ValueError(f"{key} must be numbers in ({low:g}, {high:g}), got {values!r}")
    if not (isinstance(cfg.treatment_t, (int, float)) and 0.5 < cfg.treatment_t < 10):
        raise ValueError(f"treatment_t must be a thickness in (0.5, 10) pixels, got {cfg.treatment_t!r}")
    for key in ("lr", "scm_lr"):
        if not (isinstance(getattr(cfg, key), (int, float)) and getattr(cfg, key) > 0):
            raise ValueError(f"{key} must be positive, got {getattr(cfg, key)!r}")
    p.update(do_t=tuple(float(v) for v in cfg.do_t), do_i=tuple(float(v) for v in cfg.do_i),
             treatment_t=float(cfg.treatment_t), lr=float(cfg.lr), scm_lr=float(cfg.scm_lr))
    return p


# ------------------------------------------------------------------------------------ data
def _digits(split: str, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from mlimaging.experiments.classification import class_subset, load_images

    x, y, _ = load_images("mnist5k", split, seed=0, image_size=28)
    if n is not None and n < len(y):
        idx = class_subset(y, total=n, seed=seed)
        x, y = x[idx], y[idx]
    return x, y


def _adam(lr: float) -> Any:
    return lambda ps: torch.optim.Adam(ps, lr=lr, betas=(0.5, 0.999))


def _gan(p: dict[str, Any], seed: int, loss: str) -> tuple[nn.Module, Any]:
    from mlimaging.generative.gan import DCGANDiscriminator, DCGANGenerator, GANStep

    torch.manual_seed(seed)
    G = DCGANGenerator(latent_dim=p["latent_dim"], image_size=28, width=p["width"])
    D = DCGANDiscriminator(image_size=28, width=p["width"])
    return G, GANStep(D, loss=loss, d_optimizer=_adam(p["lr"]), seed=seed)


def _show(ax: Any, img: Any, title: str | None = None, fontsize: int = 7) -> None:
    ax.imshow(np.asarray(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=fontsize)


# ------------------------------------------------------------------------------------ 1. DCGAN
def _grid_epochs(epochs: int, k: int = 4) -> list[int]:
    """Up to ``k`` epochs spread over training, always the first and the last."""
    return sorted({int(round(e)) for e in np.linspace(1, epochs, min(k, epochs))})


def _dcgan_section(cfg: GenerativeConfig, p: dict[str, Any], run: Run, xtr: torch.Tensor, feature_net: Any
                   ) -> None:
    from mlimaging.data.io import read_image
    from mlimaging.generative.gan import SampleGrid
    from mlimaging.generative.quality import class_fractions, fid_baselines
    from mlimaging.training import fit

    G, step = _gan(p, cfg.seed, "non_saturating")
    grids = SampleGrid(Path(run.path) / "samples", n=64, ncols=8, seed=cfg.seed)
    t0 = time.perf_counter()
    history = fit(G, TensorDataset(xtr), step=step, optimizer=_adam(p["lr"]), epochs=p["epochs"], metrics=(),
                  batch_size=p["batch_size"], seed=cfg.seed, progress=not cfg.quick, callbacks=[grids])
    seconds = time.perf_counter() - t0
    run.section("1. DCGAN on mnist5k", f"DCGAN generator and discriminator (width {p['width']}, z of size "
                f"{p['latent_dim']}) trained with the non-saturating loss for {p['epochs']} epoch(s) on {len(xtr)} "
                f"mnist5k training digits (Adam lr {p['lr']:g}, betas (0.5, 0.999), batch {p['batch_size']}; "
                f"{seconds:.1f} s). The same 64 latent vectors are drawn after every epoch.")
    shown = [e for e in _grid_epochs(len(grids.paths)) if e <= len(grids.paths)]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), squeeze=False)
    for ax, e in zip(axes[0], shown, strict=True):
        grid, _ = read_image(grids.paths[e - 1])
        ax.imshow(np.asarray(grid), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(f"epoch {e}", fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    run.figure(fig, "gan-samples-over-training", caption="Samples of one fixed z after the shown epochs (every epoch's "
               "grid is in samples/ of the run folder).")
    ep = history["epoch"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(ep, history["g_loss"], "o-", ms=3, label="generator (non-saturating)")
    a.plot(ep, history["d_loss"], "s-", ms=3, label="discriminator")
    a.axhline(2 * np.log(2), color="gray", lw=0.8, ls=":", label="D loss at D = 1/2 (2 log 2)")
    b.plot(ep, history["D(x)"], "o-", ms=3, label="D(x)")
    b.plot(ep, history["D(G(z))"], "s-", ms=3, label="D(G(z))")
    a.set(xlabel="epoch", ylabel="loss", title="losses (epoch means)")
    b.set(xlabel="epoch", ylabel="probability real", ylim=(0, 1), title="discriminator outputs")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    run.figure(fig, "gan-losses", caption="Generator and discriminator losses and D's mean output on real and "
               "generated digits, per epoch.")
    run.table("DCGAN history", [{k: e[k] for k in ("epoch", "g_loss", "d_loss", "D(x)", "D(G(z))", "seconds")}
                                for e in history.epochs])

    xte, _ = _digits("test", None, cfg.seed)
    real = xte[:p["n_fid"]]
    G.eval()
    fake = G.sample((len(real) + 1) // 2, generator=torch.Generator().manual_seed(cfg.seed + 1))
    q = fid_baselines(real, fake, feature_extractor=feature_net.features, seed=cfg.seed)
    fractions = class_fractions(fake, feature_net)
    rows = [{"images": f"DCGAN samples ({p['epochs']} epochs)", "FID": q["fid"], "precision": q["precision"],
             "recall": q["recall"]},
            {"images": "real vs real (two test halves)", "FID": q["real_vs_real"], "precision": float("nan"),
             "recall": float("nan")},
            {"images": "Gaussian noise (real mean and std)", "FID": q["noise"], "precision": float("nan"),
             "recall": float("nan")}]
    run.table("FID with our digit classifier", rows, caption=f"{q['n']} images per set; features: the 64 penultimate "
              f"units of our mnist5k classifier ({p['feature_epochs']} epochs, test accuracy "
              f"{feature_net.test_accuracy:.3f}); not comparable with Inception FIDs. Precision and recall: k = 3 "
              "nearest-neighbour manifolds (Kynkäänniemi et al. 2019).")
    run.table("Digit classes among the samples", [{"class": c, "fraction": f} for c, f in enumerate(fractions)],
              caption="Share of each class by our classifier's argmax (mode collapse leaves classes empty).")
    run.log(gan={"fid": q["fid"], "real_vs_real": q["real_vs_real"], "noise": q["noise"], "precision": q["precision"],
                 "recall": q["recall"], "min_class_fraction": min(fractions), "seconds": seconds,
                 "history": history.epochs})


# ------------------------------------------------------------------------------------ 2. saturation
class SaturationProbe:
    r"""fit callback of :class:`~mlimaging.generative.gan.GANStep` runs: after every batch, :math:`D(G(z))`
    on a fixed :math:`z` and the norm of the generator's gradient of the minimax and the
    non-saturating losses.

    .. math::
        g_{mm} = \big\lVert \nabla_\theta \tfrac1n \textstyle\sum \log(1 - \sigma(D(G_\theta(z)))) \big\rVert_2,
        \qquad g_{ns} = \big\lVert \nabla_\theta \tfrac1n \textstyle\sum -\log \sigma(D(G_\theta(z))) \big\rVert_2.

    The networks run as in the step (training mode, batch statistics); their batch-norm buffers
    are restored afterwards, and no parameter's ``.grad`` is touched, so training is unchanged.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from mlimaging.generative.gan import DCGANDiscriminator, DCGANGenerator
    >>> _ = torch.manual_seed(0)
    >>> G, D = DCGANGenerator(latent_dim=8, width=4), DCGANDiscriminator(width=4)
    >>> probe = SaturationProbe(D, n=16, seed=0)
    >>> probe.on_batch_end(SimpleNamespace(model=G))
    >>> sorted(probe.records[0]), probe.records[0]["grad_minimax"] > 0
    (['D(G(z))', 'grad_minimax', 'grad_non_saturating'], True)
    """

    def __init__(self, discriminator: nn.Module, *, n: int = 64, seed: int = 0) -> None:
        self.discriminator, self.n, self.seed = discriminator, int(n), int(seed)
        self.records: list[dict[str, float]] = []

    def on_batch_end(self, state: Any) -> None:
        from mlimaging.generative.gan import gan_loss

        G, D = getattr(state.model, "module", state.model), self.discriminator
        params = [q for q in G.parameters() if q.requires_grad]
        buffers = [(b, b.detach().clone()) for m in (G, D) for b in m.buffers()]
        z = torch.randn(self.n, G.latent_dim, generator=torch.Generator().manual_seed(self.seed))
        z = z.to(params[0].device)
        was = D.training
        D.train(G.training)
        D.requires_grad_(False)
        try:
            f = D(G(z))
            norms = {}
            for kind in ("minimax", "non_saturating"):
                grads = torch.autograd.grad(gan_loss(kind).generator(f), params, retain_graph=True)
                norms[kind] = float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))
        finally:
            D.requires_grad_(True)
            D.train(was)
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
        self.records.append({"D(G(z))": float(torch.sigmoid(f.detach()).mean()),
                             "grad_minimax": norms["minimax"], "grad_non_saturating": norms["non_saturating"]})


def _saturation_section(cfg: GenerativeConfig, p: dict[str, Any], run: Run, xtr: torch.Tensor) -> None:
    from mlimaging.training import fit

    x = xtr[:p["n_saturation"]]
    runs: dict[str, list[dict[str, float]]] = {}
    for kind in ("minimax", "non_saturating"):
        G, step = _gan(p, cfg.seed, kind)  # the same initialisation for both
        probe = SaturationProbe(step.discriminator, n=32, seed=cfg.seed + 2)
        fit(G, TensorDataset(x), step=step, optimizer=_adam(p["lr"]), epochs=p["saturation_epochs"], metrics=(),
            batch_size=p["batch_size"], seed=cfg.seed, progress=False, callbacks=[probe])
        runs[kind] = probe.records
    run.section("2. Minimax against non-saturating generator loss", "One initialisation trained with each generator "
                "loss (the discriminator's loss is the same), on "
                f"{len(x)} digits for {p['saturation_epochs']} epoch(s). Early on the discriminator rejects the "
                "samples easily (D(G(z)) near 0); there the minimax loss log(1 - D(G(z))) is flat and its gradient "
                "vanishes, while the non-saturating loss -log D(G(z)) gives its largest gradient. After every batch "
                "both gradients are measured at the current networks of each run, on 32 fixed latent vectors.")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for kind, style in (("minimax", "-"), ("non_saturating", "--")):
        rec = runs[kind]
        b = np.arange(1, len(rec) + 1)
        axes[0].plot(b, [r["D(G(z))"] for r in rec], style, label=f"trained with {kind}")
        axes[1 if kind == "minimax" else 2].semilogy(b, [r["grad_minimax"] for r in rec], "-", label="minimax")
        axes[1 if kind == "minimax" else 2].semilogy(b, [r["grad_non_saturating"] for r in rec], "--",
                                                     label="non-saturating")
    axes[0].set(xlabel="batch", ylabel="mean D(G(z))", ylim=(0, 1), title="discriminator on the samples")
    axes[1].set(xlabel="batch", ylabel="||grad of the generator loss||", title="run trained with minimax")
    axes[2].set(xlabel="batch", title="run trained with non-saturating")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    run.figure(fig, "minimax-vs-non-saturating", caption="Left: D's mean probability on samples of a fixed z, per "
               "batch. Middle and right: the norm of the generator's gradient of each loss at the same networks.")
    rows = []
    for kind, rec in runs.items():
        last = rec[-1]
        rows.append({"trained with": kind, "batches": len(rec), "D(G(z)) first batch": rec[0]["D(G(z))"],
                     "D(G(z)) last batch": last["D(G(z))"], "min D(G(z))": min(r["D(G(z))"] for r in rec),
                     "batches with D(G(z)) < 0.1": sum(r["D(G(z))"] < 0.1 for r in rec),
                     "grad minimax, last": last["grad_minimax"], "grad non-saturating, last": last["grad_non_saturating"],
                     "ratio ns / minimax, last": last["grad_non_saturating"] / last["grad_minimax"]})
    run.table("Early saturation of the minimax loss", rows, caption="D's mean probability on the fixed samples and the "
              "generator's gradient norm of each loss after the last batch. Per sample the two gradients differ by "
              "the factors D(G(z)) (minimax) and 1 - D(G(z)) (non-saturating), so the ratio grows as D rejects the "
              "samples.")
    run.log(saturation=runs)


# ------------------------------------------------------------------------------------ 3. Morpho-MNIST
def _morpho_section(cfg: GenerativeConfig, p: dict[str, Any], run: Run, causal: dict[str, Any]) -> None:
    from mlimaging.generative.morphomnist import measure

    x, _ = _digits("train", p["n_morpho"], cfg.seed)
    t0 = time.perf_counter()
    plain = measure(x.numpy(), max_value=1.0)
    per_second = len(x) / max(time.perf_counter() - t0, 1e-9)
    synth = measure(causal["images"].numpy(), max_value=1.0)
    run.section("3. Morpho-MNIST measurements", f"Area, length, thickness (twice the mean distance-transform value on "
                "the skeleton), slant, width, height and intensity of each digit, from its 4x upsampled binarised "
                f"stroke (Castro et al. 2019): {len(x)} mnist5k training digits ({per_second:.0f} images/s) and "
                f"{len(causal['images'])} causal_mnist digits, whose thickness and intensity the SCM set.")
    units = {"area": "px^2", "length": "px", "thickness": "px", "slant": "rad", "width": "px", "height": "px",
             "intensity": "0-255"}
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.4))
    for ax, key in zip(axes.flat, MEASURES, strict=False):
        a, b = plain[key][np.isfinite(plain[key])], synth[key][np.isfinite(synth[key])]
        bins = np.histogram_bin_edges(np.concatenate([a, b]), bins=30)
        ax.hist(a, bins=bins, alpha=0.6, density=True, label="mnist5k")
        ax.hist(b, bins=bins, alpha=0.6, density=True, label="causal_mnist")
        ax.set(xlabel=f"{key} ({units[key]})", yticks=[])
    axes.flat[0].legend(fontsize=7)
    axes.flat[-1].axis("off")
    fig.tight_layout()
    run.figure(fig, "morpho-histograms", caption="Distributions of the measurements (densities) on mnist5k and on "
               "causal_mnist, whose thickness and intensity the SCM drew.")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for ax, key, unit in ((axes[0], "thickness", "px"), (axes[1], "intensity", "grey levels")):
        true = causal[key].double().numpy()
        ax.scatter(true, synth[key], s=4, alpha=0.5)
        lim = [float(true.min()), float(true.max())]
        ax.plot(lim, lim, "k:", lw=0.8)
        ax.set(xlabel=f"true {key} ({unit})", ylabel=f"measured {key} ({unit})")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    run.figure(fig, "causal-mnist-measured-vs-true", caption="Measured against true thickness and intensity of "
               "causal_mnist (the dotted line is equality).")
    rows = []
    for name, values in (("mnist5k", plain), ("causal_mnist", synth)):
        for key in MEASURES:
            v = values[key][np.isfinite(values[key])]
            rows.append({"data": name, "measure": key, "unit": units[key], "mean": float(v.mean()),
                         "std": float(v.std()), "p5": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95))})
    run.table("Morpho-MNIST measurements", rows)
    agree = []
    for key, true in (("thickness", causal["thickness"]), ("intensity", causal["intensity"])):
        t, mv = true.double().numpy(), synth[key]
        ok = np.isfinite(mv)
        agree.append({"parent": key, "Pearson r": float(np.corrcoef(t[ok], mv[ok])[0, 1]),
                      "MAE": float(np.abs(t[ok] - mv[ok]).mean()), "n": int(ok.sum())})
    run.table("Measured against true parents of causal_mnist", agree, caption="The measurements are the pseudo-oracles "
              "of the effectiveness axiom in section 5.")
    run.log(morpho={"images_per_second": per_second, "agreement": agree})


# ------------------------------------------------------------------------------------ 4-6. deep SCM
def _train_scm(cfg: GenerativeConfig, p: dict[str, Any], train: dict[str, Any]) -> tuple[nn.Module, Any, float]:
    from mlimaging.generative.scm import DeepSCM, SCMStep
    from mlimaging.training import fit

    torch.manual_seed(cfg.seed)
    model = DeepSCM.from_data(train["thickness"], train["intensity"], latent_dim=p["scm_latent"], width=p["scm_width"],
                              likelihood="gaussian")
    t0 = time.perf_counter()
    history = fit(model, TensorDataset(train["images"], train["thickness"], train["intensity"]),
                  step=SCMStep(seed=cfg.seed), optimizer=lambda ps: torch.optim.Adam(ps, lr=p["scm_lr"]),
                  epochs=p["scm_epochs"], metrics=(), batch_size=64, seed=cfg.seed, progress=not cfg.quick)
    return model.eval(), history, time.perf_counter() - t0


def _in_support(model: Any, data: dict[str, Any]) -> dict[str, Any]:
    """The samples whose intensity lies inside the deep SCM's intensity support (abduction needs it)."""
    low, high = float(model.intensity.low), float(model.intensity.high)
    keep = (data["intensity"] > low) & (data["intensity"] < high)
    return {k: v[keep] if isinstance(v, torch.Tensor) and len(v) == len(keep) else v for k, v in data.items()}


def _intensities(model: Any, values: tuple[float, ...]) -> list[float]:
    low, high = float(model.intensity.low), float(model.intensity.high)
    return sorted({min(max(v, low + 1.0), high - 1.0) for v in values})


def _scm_section(cfg: GenerativeConfig, p: dict[str, Any], run: Run, model: Any, history: Any, seconds: float,
                 test: dict[str, Any]) -> None:
    from mlimaging.generative.scm import TrueSCM, counterfactual

    run.section("4. Deep structural causal model", f"Flows for t and i | t and a conditional VAE (width "
                f"{p['scm_width']}, {p['scm_latent']} latents, Gaussian likelihood; counterfactuals keep the image's abducted noise) for the image given (t, i), "
                f"trained by maximum likelihood (the ELBO for the image) on {p['n_causal']} "
                f"causal_mnist samples for {p['scm_epochs']} epoch(s) (Adam lr {p['scm_lr']:g}; {seconds:.1f} s). "
                "Counterfactuals by abduction (invert the flows, encode z), action (fix the intervened parent) and "
                "prediction (decode): do(t) changes i through its mechanism with the same u_i, do(i) leaves t "
                "alone. Each digit's row from the deep SCM is followed by the true SCM's (the morphological "
                "mechanisms, the ground truth).")
    keys = [k for k in ("nll_t", "nll_i", "rec", "kl") if k in history.epochs[-1]]
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    for k in keys:
        ax.plot(history["epoch"], history[k], "o-", ms=3, label=k)
    ax.set(xlabel="epoch", ylabel="per-sample mean", title="deep SCM training terms")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    run.figure(fig, "scm-training", caption="-log p(t), -log p(i | t), and the image's reconstruction and KL terms.")
    n = min(p["n_cf"], len(test["images"]))
    x, pa = test["images"][:n], {"t": test["thickness"][:n], "i": test["intensity"][:n]}
    truth = TrueSCM()
    cf_rows = []
    for parent, values in (("t", p["do_t"]), ("i", _intensities(model, p["do_i"]))):
        columns = [None] + [{parent: v} for v in values]
        fig, axes = plt.subplots(2 * n, len(columns), figsize=(1.25 * len(columns), 1.3 * 2 * n), squeeze=False)
        for c, do in enumerate(columns):
            for r, (name, scm) in enumerate((("deep", model), ("true", truth))):
                out = {"image": x, "t": pa["t"], "i": pa["i"]} if do is None else counterfactual(scm, x, pa, do)
                for d in range(n):
                    title = f"{'data' if do is None else name}: t={float(out['t'][d]):.1f} i={float(out['i'][d]):.0f}"
                    _show(axes[2 * d + r, c], out["image"][d, 0], title, fontsize=5)
                if do is not None:
                    cf_rows.append({"model": name, "do": f"{parent}={list(do.values())[0]:g}",
                                    "mean t'": float(out["t"].mean()), "mean i'": float(out["i"].mean())})
        for c, do in enumerate(columns):
            axes[0, c].set_title(("observed" if do is None else f"do({parent}={do[parent]:g})") + "\n" +
                                 axes[0, c].get_title(), fontsize=6)
        fig.tight_layout()
        run.figure(fig, f"counterfactuals-do-{parent}", caption=f"Counterfactuals under do({parent}) of {n} held-out "
                   "digits: rows alternate deep SCM and true SCM; titles give the parents the model predicts.")
    run.table("Counterfactual parents", cf_rows, caption="Mean predicted parents of the counterfactuals in the grids.")


def _soundness_section(cfg: GenerativeConfig, p: dict[str, Any], run: Run, model: Any, test: dict[str, Any]) -> None:
    from mlimaging.generative.scm import PARENTS, TrueSCM, causal_effects
    from mlimaging.generative.soundness import (
        composition,
        effectiveness,
        measured_intensity,
        measured_thickness,
        reversibility,
    )

    truth = TrueSCM()
    models = {"deep SCM (conditional VAE)": model, "true SCM": truth}
    predictor = {"t": measured_thickness, "i": measured_intensity}
    rows, curves = [], {}
    for name, scm in models.items():
        comp = composition(scm, test, m=p["m"])["l1"]
        curves[name] = comp
        for parent in PARENTS:
            eff = effectiveness(scm, test, parent, predictor=predictor, reference=truth, seed=cfg.seed)["mae"]
            rows.append({"model": name, "parent": parent, "composition L1 (1)": comp[0],
                         f"composition L1 ({p['m']})": comp[-1],
                         "reversibility L1": reversibility(scm, test, parent, seed=cfg.seed)["l1"][0],
                         "effectiveness MAE t (px)": eff["t"], "effectiveness MAE i (grey)": eff["i"]})
    run.section("5. Soundness of the counterfactuals", f"The axioms of Monteiro et al. (2023) on {len(test['images'])} "
                "held-out causal_mnist samples: composition, the mean absolute pixel change (images in [0, 1]) after "
                f"1 and {p['m']} null interventions; reversibility, after an intervention on the parent (values of "
                "other samples) and its undoing; effectiveness, the mean absolute error of the measured thickness and "
                "intensity of the counterfactuals against the parents the true SCM gives them (do(t) moves i through "
                "the true mechanism). The true SCM is the zero reference of composition and reversibility (its "
                "do(t) reversibility is not exactly 0: thinning then thickening a stroke loses sub-pixel detail); "
                "its effectiveness is the measurement's own error. The scm module offers no GAN-based image mechanism, "
                "so only the VAE-based one is measured.")
    run.table("Soundness per model and parent", rows)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, comp in curves.items():
        ax.plot(range(1, len(comp) + 1), comp, "o-", ms=3, label=name)
    ax.set(xlabel="null interventions m", ylabel="mean |x_m - x|", title="composition")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    run.figure(fig, "composition", caption="Distance to the original after m repeated null interventions.")

    pa = {"t": test["thickness"], "i": test["intensity"]}
    effects = []
    for name, scm in models.items():
        for r in causal_effects(scm, test["images"], pa, t=p["treatment_t"]):
            effects.append({"model": name, **r})
    run.section("6. Direct, indirect and total effects of thickness", f"For each held-out sample, t moved from its "
                f"observed value to {p['treatment_t']:g} px: total effect TE = Y(t1, i(t1)) - Y(t0, i(t0)); natural "
                "direct effect NDE = Y(t1, i(t0)) - Y(t0, i(t0)) (intensity held at its reference value); natural "
                "indirect effect NIE = Y(t0, i(t1)) - Y(t0, i(t0)) (only the mediator moves) (Pearl 2001), averaged. "
                "Outcomes: the measured thickness and intensity of the counterfactual image, the mean absolute pixel "
                "change (image_l1, a size), and the intensity parent itself (i).")
    run.table("Causal effects of thickness", effects)
    run.log(soundness=rows, composition=curves, effects=effects)


# ------------------------------------------------------------------------------------ experiment
@experiment("generative", config=GenerativeConfig)
def generative_experiment(cfg: GenerativeConfig, run: Run) -> None:
    """DCGAN and FID, minimax vs non-saturating loss, Morpho-MNIST, deep SCM counterfactuals and their soundness."""
    from mlimaging.generative.morphomnist import causal_mnist
    from mlimaging.generative.quality import mnist_feature_extractor

    p = _resolve(cfg)
    run.log(settings=p, torch_threads=torch.get_num_threads())
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t0, c0 = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal t0, c0
        seconds[name], cpu[name] = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()

    xtr, _ = _digits("train", p["n_train"], cfg.seed)
    feature_net = mnist_feature_extractor(seed=0, epochs=p["feature_epochs"])
    lap("feature classifier")
    _dcgan_section(cfg, p, run, xtr, feature_net)
    lap("DCGAN and FID")
    _saturation_section(cfg, p, run, xtr)
    lap("minimax vs non-saturating")
    train = causal_mnist(p["n_causal"], seed=cfg.seed, split="train")
    test = causal_mnist(p["n_test"], seed=cfg.seed + 1, split="test")
    lap("causal_mnist")
    _morpho_section(cfg, p, run, train)
    lap("Morpho-MNIST")
    model, history, scm_seconds = _train_scm(cfg, p, train)
    test = _in_support(model, test)
    _scm_section(cfg, p, run, model, history, scm_seconds, test)
    lap("deep SCM and counterfactuals")
    _soundness_section(cfg, p, run, model, test)
    lap("soundness and effects")
    run.log(section_seconds=seconds, section_cpu_seconds=cpu, n_train=len(xtr), n_causal=p["n_causal"], n_test=p["n_test"])

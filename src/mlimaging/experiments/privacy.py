r"""Experiment ``privacy``: DP-SGD accuracy against epsilon, gradient inversion, HE inference, k-anonymity.

Sections of the report (methods from :mod:`mlimaging.privacy`; training through
:func:`mlimaging.training.fit`, DP-SGD as :func:`~mlimaging.privacy.dp.make_private`'s step):

1. **Accuracy against** :math:`\varepsilon`: the ``dp_cnn`` model (:mod:`mlimaging.models.dp_cnn`: a tanh
   CNN with GroupNorm, Papernot et al. 2021, Tramer & Boneh 2021) trained with DP-SGD (Abadi et al. 2016) on
   mnist5k at :math:`\varepsilon \in \{1, 3, 8\}`, :math:`\delta = 10^{-5}`, with the recipe of
   ``benchmarks/privacy.py`` (Poisson batches of 512, clipping norm 0.1, SGD lr 2 with momentum 0.9 and a cosine
   schedule, 40 epochs), the noise multiplier :math:`\sigma` solved by the RDP accountant for the run's epochs,
   against non-private training of the same model.
   Opacus's MNIST example reports 94.6 % at :math:`\varepsilon` 1.19, 96.8 % at 3.0 and 97.1 % at
   7.1 on the full MNIST (60,000 images; mnist5k has 3,500): the same ordering is expected here,
   at lower accuracies (a 17 times smaller training set pays more noise per image).
2. **Clipping and noise ablation**: test accuracy against the clipping norm :math:`C` at a fixed
   :math:`\sigma`, and against :math:`\sigma` (with the :math:`\varepsilon` it spends) at a fixed
   :math:`C`.
3. **Gradient inversion**: test digits recovered from the gradient a FedSGD client would share, by
   DLG (Zhu et al. 2019, labels by iDLG, Zhao et al. 2020) one image at a time and by Inverting
   Gradients (Geiping et al. 2020) for the whole batch, on DLG's sigmoid LeNet; then the PSNR of
   DLG's reconstruction against the strength of three defences of the shared gradient (Gaussian
   noise, DP clipping + noise, top-k sparsification).
4. **Homomorphic encryption** (only when TenSEAL / ``phe`` are installed, ``pip install
   'mlimaging[he]'``; otherwise the report says so): encrypted against plain accuracy and latency
   per image of a logistic regression and of a CryptoNet (square activations, Gilad-Bachrach et al.
   2016) under CKKS; Paillier aggregation of client updates.
5. **k-anonymity**: a synthetic imaging-metadata table before and after full-domain
   generalisation + suppression and Mondrian (LeFevre et al. 2006); information loss (NCP,
   discernibility) against :math:`k`.
6. **De-identification** of pydicom's shipped DICOM files with the PS3.15 Annex E basic profile.

Every number depends only on ``seed`` (timings aside).

References
----------
Abadi M. et al. (2016). Deep Learning with Differential Privacy. CCS. arXiv:1607.00133.

Papernot N., Thakurta A., Song S., Chien S., Erlingsson U. (2021). Tempered Sigmoid Activations for Deep
Learning with Differential Privacy. AAAI. arXiv:2007.14191.

Tramer F., Boneh D. (2021). Differentially Private Learning Needs Better Features (or Much More Data). ICLR.
arXiv:2011.11660.

Zhu L., Liu Z., Han S. (2019). Deep Leakage from Gradients. NeurIPS. arXiv:1906.08935.

Geiping J., Bauermeister H., Dröge H., Moeller M. (2020). Inverting Gradients -- How easy is it to
break privacy in federated learning? NeurIPS. arXiv:2003.14053.

Gilad-Bachrach R. et al. (2016). CryptoNets. ICML, PMLR 48:201-210.

LeFevre K., DeWitt D. J., Ramakrishnan R. (2006). Mondrian Multidimensional K-Anonymity. ICDE.
doi:10.1109/ICDE.2006.101.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("privacy", quick=True, seed=0, out="runs/privacy")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import tempfile
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

__all__ = ["FULL", "HE_PACKAGES", "OPACUS_MNIST", "QUICK", "PrivacyConfig", "missing_packages", "train_private"]

#: Opacus's MNIST example (README of examples/mnist.py): (epsilon, test accuracy) on the full MNIST.
OPACUS_MNIST = ((1.19, 0.946), (3.0, 0.968), (7.1, 0.971))

#: The model of sections 1 and 2 (a registered name of :mod:`mlimaging.models`).
MODEL = "dp_cnn"

#: Quick mode (<= 30 s on 2 cores): 1,000 training and 300 test digits, two epochs per model, few attack
#: iterations on 12 x 12 digits, HE on 2 images, a 400-row table. DP-SGD: B 100, lr 4, C 0.1 (dp_cnn, seed 0, on
#: the 300 test digits at eps 1 / 3 / 8: 0.38 / 0.52 / 0.57; lr 1, C 0.5: 0.34 / 0.51 / 0.59; lr 2, C 0.1: 0.35 /
#: 0.44 / 0.53; B 200, lr 2, C 0.1: 0.27 / 0.32 / 0.34).
QUICK: dict[str, Any] = {
    "n_train": 1000, "n_test": 300, "epochs": 2, "batch_size": 100, "lr": 4.0, "max_grad_norm": 0.1,
    "epsilons": (1.0, 3.0, 8.0), "clip_norms": (0.1, 1.0), "sigmas": (0.5, 2.0),
    "attack_images": 2, "attack_size": 12, "dlg_iterations": 8, "ig_iterations": 40, "ig_restarts": 1,
    "defence_strengths": {"noise": (None, 1e-2, 1e-1), "dp": (None, 1e-2, 1.0), "topk": (None, 0.1)},
    "he_images": 2, "he_cryptonet": False, "paillier_values": 200,
    "table_rows": 400, "ks": (2, 5, 10), "dicom_files": 3,
}
#: Full mode: all 3,500 training and 1,000 test digits, 40 epochs, 28 x 28 attacks, HE on 50 images. DP-SGD: the
#: recipe of ``benchmarks/privacy.py`` (``RECIPE``, chosen at epsilon 3 on mnist5k's 500 validation digits: 0.918
#: validation, 0.903 test accuracy; alternatives in its ``TRIED``): B 512, lr 2, momentum 0.9, cosine, C 0.1.
#: Measured (seed 0, 1,000 test digits) at eps 1 / 3 / 8: 0.725 / 0.904 / 0.934, non-private 0.971 (before, with LeNet
#: (ReLU, no normalisation), B 500, lr 2, C 0.1, 30 epochs: 0.66 / 0.845 / 0.845). Sections 1-2 (12 trainings) take
#: about 10 CPU minutes.
FULL: dict[str, Any] = {
    "n_train": None, "n_test": None, "epochs": 40, "batch_size": 512, "lr": 2.0, "max_grad_norm": 0.1,
    "epsilons": (1.0, 3.0, 8.0), "clip_norms": (0.05, 0.1, 0.5, 1.0, 5.0), "sigmas": (0.5, 1.0, 2.0, 4.0),
    "attack_images": 4, "attack_size": 28, "dlg_iterations": 100, "ig_iterations": 2000, "ig_restarts": 2,
    "defence_strengths": {"noise": (None, 1e-4, 1e-3, 1e-2, 1e-1), "dp": (None, 1e-2, 1e-1, 0.5, 1.0),
                          "topk": (None, 0.5, 0.2, 0.1, 0.01)},
    "he_images": 50, "he_cryptonet": True, "paillier_values": 7850,
    "table_rows": 2000, "ks": (2, 5, 10, 20, 50), "dicom_files": 20,
}


@dataclass
class PrivacyConfig(ExperimentConfig):
    """Settings of the ``privacy`` experiment; ``None`` takes the quick/full value (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    n_train, n_test
        mnist5k training and test digits (stratified subsets; None: all 3,500 / 1,000).
    epochs, batch_size, lr, max_grad_norm
        DP-SGD: epochs, expected (Poisson) batch size, SGD learning rate (momentum 0.9, cosine
        schedule), clipping norm :math:`C`.
    delta
        :math:`\\delta` of every guarantee.
    epsilons
        Target budgets of section 1.
    clip_norms, sigmas
        Section 2's grids (at :math:`\\sigma = 1` and at the default :math:`C`).
    attack_images, attack_size, dlg_iterations, ig_iterations, ig_restarts
        Section 3: digits attacked, their side in pixels, DLG's L-BFGS steps, Inverting Gradients'
        Adam steps and restarts.
    defence_strengths
        Per defence (``noise``: absolute std, ``dp``: noise multiplier at clipping norm 1, ``topk``:
        fraction kept) the strengths tried; None is no defence.
    he_images, he_cryptonet, paillier_values
        Section 4: images encrypted, whether the CryptoNet runs (about a second per image), values
        per client update summed under Paillier.
    table_rows, ks
        Section 5: rows of the synthetic table and the k values.
    dicom_files
        Section 6: pydicom test files de-identified (0: skip).
    """

    n_train: int | None = None
    n_test: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    max_grad_norm: float | None = None
    delta: float = 1e-5
    epsilons: tuple[float, ...] | None = None
    clip_norms: tuple[float, ...] | None = None
    sigmas: tuple[float, ...] | None = None
    attack_images: int | None = None
    attack_size: int | None = None
    dlg_iterations: int | None = None
    ig_iterations: int | None = None
    ig_restarts: int | None = None
    defence_strengths: dict[str, tuple] | None = None
    he_images: int | None = None
    he_cryptonet: bool | None = None
    paillier_values: int | None = None
    table_rows: int | None = None
    ks: tuple[int, ...] | None = None
    dicom_files: int | None = None


def _resolve(cfg: PrivacyConfig) -> dict[str, Any]:
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    for key in ("epochs", "batch_size", "attack_images", "attack_size", "dlg_iterations", "ig_iterations",
                "ig_restarts", "he_images", "paillier_values", "table_rows"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    if isinstance(p["dicom_files"], bool) or not isinstance(p["dicom_files"], int) or p["dicom_files"] < 0:
        raise ValueError(f"dicom_files must be an integer >= 0, got {p['dicom_files']!r}")
    for key in ("lr", "max_grad_norm"):
        if not p[key] > 0:
            raise ValueError(f"{key} must be > 0, got {p[key]!r}")
    for key in ("epsilons", "clip_norms", "sigmas", "ks"):
        if not p[key] or any(not v > 0 for v in p[key]):
            raise ValueError(f"{key} must be a non-empty tuple of positive numbers, got {p[key]!r}")
    if not 0 < cfg.delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {cfg.delta!r}")
    unknown = set(p["defence_strengths"]) - {"noise", "dp", "topk"}
    if unknown:
        raise ValueError(f"defence_strengths keys must be among 'noise', 'dp', 'topk', got {sorted(unknown)}")
    return p


#: The optional extra ``he`` (``pip install 'mlimaging[he]'``): section 4 runs only when both are importable.
HE_PACKAGES = ("tenseal", "phe")


def missing_packages(names: tuple[str, ...]) -> list[str]:
    """The names among ``names`` that cannot be imported (:func:`importlib.util.find_spec`; nothing is imported).

    Examples
    --------
    >>> missing_packages(("numpy", "surely_not_a_package_here"))
    ['surely_not_a_package_here']
    """
    return [m for m in names if importlib.util.find_spec(m) is None]


# ------------------------------------------------------------------------------------ training
def _model(seed: int) -> nn.Module:
    from mlimaging.models import create_model

    return create_model(MODEL, num_classes=10, seed=seed)


def _test_accuracy(model: nn.Module, data: TensorDataset) -> float:
    from mlimaging.training import evaluate

    return float(evaluate(model, data, metrics=("accuracy",))["accuracy"])


def train_private(train: TensorDataset, test: TensorDataset, *, epochs: int, batch_size: int, lr: float,
                  max_grad_norm: float, delta: float, target_epsilon: float | None = None,
                  noise_multiplier: float | None = None, seed: int = 0) -> dict[str, Any]:
    r"""Train a fresh, seeded :data:`MODEL` (``dp_cnn``) with DP-SGD on ``train`` and return its test accuracy and privacy.

    :func:`~mlimaging.privacy.dp.make_private` with SGD (momentum 0.9, cosine learning rate) and
    Poisson batches of expected size ``batch_size``; exactly one of ``target_epsilon`` (the noise
    multiplier is solved for ``epochs``) and ``noise_multiplier``. Returns ``epsilon`` (spent at
    ``delta``), ``noise_multiplier``, ``sample_rate``, ``steps``, ``accuracy`` (on ``test``), the
    per-epoch ``history`` (validation on ``test``) and ``seconds``.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(64, 1, 28, 28, generator=g); y = torch.arange(64) % 10
    >>> r = train_private(TensorDataset(x, y), TensorDataset(x, y), epochs=1, batch_size=32, lr=0.1,
    ...                   max_grad_norm=1.0, delta=1e-5, noise_multiplier=1.0)
    >>> r["steps"], 0 < r["epsilon"] < 20
    (2, True)
    """
    from mlimaging.privacy.dp import make_private

    model = _model(seed)
    budget = {"target_epsilon": target_epsilon} if noise_multiplier is None else {"noise_multiplier": noise_multiplier}
    private = make_private(model, lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9), train, batch_size=batch_size,
                           **budget, target_delta=delta, max_grad_norm=max_grad_norm, epochs=epochs, seed=seed)
    t0 = time.perf_counter()
    history = private.fit(test, progress=False, metrics=("accuracy",),
                          scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs))
    return {"epsilon": private.epsilon(), "noise_multiplier": private.noise_multiplier,
            "sample_rate": private.sample_rate, "steps": private.step.steps, "accuracy": _test_accuracy(model, test),
            "history": history, "seconds": time.perf_counter() - t0}


def _train_plain(train: TensorDataset, test: TensorDataset, *, epochs: int, seed: int) -> dict[str, Any]:
    from mlimaging.training import fit

    model = _model(seed)
    t0 = time.perf_counter()
    history = fit(model, train, test, loss=nn.CrossEntropyLoss(), optimizer=lambda p: torch.optim.Adam(p, lr=1e-3),
                  epochs=epochs, batch_size=64, seed=seed, progress=False)
    return {"accuracy": _test_accuracy(model, test), "history": history, "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------ sections
def _epsilon_section(cfg: PrivacyConfig, p: dict[str, Any], run: Run, train: TensorDataset,
                     test: TensorDataset) -> dict[str, Any]:
    run.section("1. Accuracy against epsilon", f"{MODEL} (a tanh CNN with GroupNorm, Papernot et al. 2021, Tramer & "
                f"Boneh 2021) trained with DP-SGD on {len(train)} mnist5k digits: Poisson "
                f"batches of expected size {p['batch_size']}, each digit's gradient clipped to C = "
                f"{p['max_grad_norm']:g}, Gaussian noise sigma C, SGD (lr {p['lr']:g}, momentum 0.9, cosine), "
                f"{p['epochs']} epoch(s); sigma solved by the RDP accountant so that the run spends the target "
                f"epsilon at delta = {cfg.delta:g}. Test accuracy on {len(test)} digits. For context, Opacus's "
                "MNIST example reports 94.6 % at epsilon 1.19, 96.8 % at 3.0 and 97.1 % at 7.1 on the full MNIST "
                "(60,000 training images, 17 times more than here: at the same epsilon each step may then be far "
                "less noisy), so the expected ordering, not the values, is compared.")
    runs = {}
    for eps in run.track(p["epsilons"], "DP-SGD runs"):
        runs[eps] = train_private(train, test, epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"],
                                  max_grad_norm=p["max_grad_norm"], delta=cfg.delta, target_epsilon=eps, seed=cfg.seed)
    plain = _train_plain(train, test, epochs=p["epochs"], seed=cfg.seed)
    rows = [{"training": f"DP-SGD, epsilon {eps:g}", "epsilon spent": r["epsilon"], "delta": cfg.delta,
             "noise multiplier": r["noise_multiplier"], "sample rate": r["sample_rate"], "steps": r["steps"],
             "test accuracy": r["accuracy"], "seconds": r["seconds"]} for eps, r in runs.items()]
    rows.append({"training": f"non-private ({MODEL}, Adam, batch 64)", "epsilon spent": float("inf"), "delta": 0.0,
                 "noise multiplier": 0.0, "sample rate": None, "steps": None, "test accuracy": plain["accuracy"],
                 "seconds": plain["seconds"]})
    accs = [runs[e]["accuracy"] for e in sorted(runs)] + [plain["accuracy"]]
    ordered = all(a <= b for a, b in zip(accs[:-1], accs[1:], strict=True))
    run.table("Accuracy against epsilon", rows, caption="One seed per row. Ordering (accuracy non-decreasing in "
              f"epsilon, non-private last, as in Opacus's MNIST numbers): {'holds' if ordered else 'does NOT hold'}.")
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    eps = sorted(runs)
    axes[0].plot(eps, [runs[e]["accuracy"] for e in eps], "o-", label=f"DP-SGD, mnist5k ({len(train)} digits)")
    axes[0].axhline(plain["accuracy"], color="C2", ls="--", lw=1.2, label="non-private, mnist5k")
    axes[0].plot(*zip(*OPACUS_MNIST, strict=True), "x:", color="grey", label="Opacus example, full MNIST (context)")
    axes[0].set(xscale="log", xlabel=f"epsilon (delta = {cfg.delta:g})", ylabel="test accuracy", ylim=(0, 1),
                title="Accuracy against the privacy budget")
    axes[0].set_xticks(eps, [f"{e:g}" for e in eps], minor=False)
    axes[0].xaxis.set_minor_locator(plt.NullLocator())
    axes[0].legend(fontsize="small", loc="lower right")
    for e in eps:
        h = runs[e]["history"]
        axes[1].plot(h["epsilon"], h["val_accuracy"], "o-", ms=3, label=f"target {e:g}")
    axes[1].set(xlabel="epsilon spent so far", ylabel="test accuracy", ylim=(0, 1), title="During training (per epoch)")
    axes[1].legend(fontsize="small")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    run.figure(fig, "accuracy-vs-epsilon", caption="Test accuracy against epsilon (left; Opacus's full-MNIST numbers "
               "in grey for context) and against the budget spent after each epoch (right).")
    run.log(dp={f"{e:g}": {k: v for k, v in r.items() if k != "history"} for e, r in runs.items()},
            nonprivate_accuracy=plain["accuracy"], ordering_holds=ordered)
    return runs


def _ablation_section(cfg: PrivacyConfig, p: dict[str, Any], run: Run, train: TensorDataset,
                      test: TensorDataset) -> None:
    sigma = 1.0
    run.section("2. Clipping norm and noise", f"Same training, one knob at a time: the clipping norm C at sigma = "
                f"{sigma:g} (the noise std is sigma C, so a smaller C clips more and adds less noise; the budget is "
                f"the same for every C), and the noise multiplier sigma at C = {p['max_grad_norm']:g} (more noise, "
                "smaller epsilon).")
    common = dict(epochs=p["epochs"], batch_size=p["batch_size"], lr=p["lr"], delta=cfg.delta, seed=cfg.seed)
    rows = []
    for c in run.track(p["clip_norms"], "clipping norms"):
        r = train_private(train, test, max_grad_norm=c, noise_multiplier=sigma, **common)
        rows.append({"knob": "clipping norm", "C": c, "sigma": sigma, "epsilon": r["epsilon"],
                     "test accuracy": r["accuracy"],
                     "clipped fraction (last epoch)": r["history"]["clipped_fraction"][-1]})
    for s in run.track(p["sigmas"], "noise multipliers"):
        r = train_private(train, test, max_grad_norm=p["max_grad_norm"], noise_multiplier=s, **common)
        rows.append({"knob": "noise multiplier", "C": p["max_grad_norm"], "sigma": s, "epsilon": r["epsilon"],
                     "test accuracy": r["accuracy"],
                     "clipped fraction (last epoch)": r["history"]["clipped_fraction"][-1]})
    run.table("Clipping and noise ablation", rows, caption="One seed per row; epsilon at delta "
              f"{cfg.delta:g} after {p['epochs']} epoch(s).")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    clip = [r for r in rows if r["knob"] == "clipping norm"]
    noise = [r for r in rows if r["knob"] == "noise multiplier"]
    axes[0].plot([r["C"] for r in clip], [r["test accuracy"] for r in clip], "o-")
    axes[0].set(xscale="log", xlabel="clipping norm C", ylabel="test accuracy", ylim=(0, 1),
                title=f"sigma = {sigma:g} (epsilon {clip[0]['epsilon']:.2f})")
    axes[1].plot([r["sigma"] for r in noise], [r["test accuracy"] for r in noise], "o-", color="C1")
    for r in noise:
        axes[1].annotate(f"eps {r['epsilon']:.2g}", (r["sigma"], r["test accuracy"]), fontsize=7,
                         textcoords="offset points", xytext=(3, 4))
    axes[1].set(xscale="log", xlabel="noise multiplier sigma", ylabel="test accuracy", ylim=(0, 1),
                title=f"C = {p['max_grad_norm']:g}")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    run.figure(fig, "clipping-and-noise", caption="Test accuracy against the clipping norm (left) and the noise "
               "multiplier, annotated with the epsilon it spends (right).")


def _attack_section(cfg: PrivacyConfig, p: dict[str, Any], run: Run, test: TensorDataset) -> None:
    import torch.nn.functional as F

    from mlimaging.privacy.attacks import (
        defence_curve,
        dlg_lenet,
        idlg,
        inverting_gradients,
        reconstruction_quality,
        shared_gradients,
    )

    s, n = p["attack_size"], p["attack_images"]
    labels = test.tensors[1]
    first = [int(torch.nonzero(labels == c)[0]) for c in torch.unique(labels).tolist()]  # one digit per class first
    idx = torch.as_tensor((first + [i for i in range(len(labels)) if i not in first])[:n])
    x, y = test.tensors[0][idx], labels[idx]
    if s != x.shape[-1]:
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)
    net = dlg_lenet(image_size=s, generator=torch.Generator().manual_seed(cfg.seed))
    run.section("3. Gradient inversion", f"{n} test digits ({s} x {s}) recovered from the gradient a FedSGD client "
                "shares, on DLG's sigmoid LeNet with uniform(-0.5, 0.5) weights. DLG (Zhu et al. 2019): L-BFGS "
                f"on the L2 gradient distance, {p['dlg_iterations']} steps, one image per gradient, its label by "
                "iDLG (Zhao et al. 2020). Inverting Gradients (Geiping et al. 2020): cosine distance + TV prior, "
                f"signed Adam, {p['ig_iterations']} steps, {p['ig_restarts']} restart(s), the whole batch from one "
                "gradient. PSNR / SSIM against the best-matching original.")
    dlg_images, dlg_rows = [], []
    for i in run.track(range(n), "DLG"):
        res = idlg(net, shared_gradients(net, x[i:i + 1], y[i:i + 1]), shape=x[i:i + 1].shape,
                   iterations=p["dlg_iterations"], seed=cfg.seed)
        q = reconstruction_quality(res.images, x[i:i + 1])
        dlg_images.append(res.images[0])
        dlg_rows.append((q.mean_psnr, q.mean_ssim, int(res.labels[0]) == int(y[i])))
    ig = inverting_gradients(net, shared_gradients(net, x, y), shape=x.shape, iterations=p["ig_iterations"],
                             restarts=p["ig_restarts"], seed=cfg.seed)
    q_ig = reconstruction_quality(ig.images, x)
    ig_images = ig.images[torch.as_tensor(np.argsort(q_ig.match))]  # reconstruction of original j in column j
    ig_psnr = q_ig.psnr[np.argsort(q_ig.match)]
    fig, axes = plt.subplots(3, n, figsize=(1.6 * n + 1, 5.2), squeeze=False)
    for j in range(n):
        for row, (img, title) in enumerate(((x[j], f"label {int(y[j])}"), (dlg_images[j], f"{dlg_rows[j][0]:.1f} dB"),
                                            (ig_images[j], f"{ig_psnr[j]:.1f} dB"))):
            axes[row, j].imshow(img[0].detach().numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row, j].set_title(title, fontsize=8)
            axes[row, j].set_xticks([])
            axes[row, j].set_yticks([])
    for row, name in enumerate(("original", "DLG", "Inv. Grad.")):
        axes[row, 0].set_ylabel(name)
    fig.tight_layout()
    run.figure(fig, "inversion-gallery", caption="Originals (top), DLG one image per gradient (middle), Inverting "
               "Gradients on the batch's gradient (bottom); PSNR against the original above each.")
    rows = [{"attack": "DLG (+iDLG label)", "images per gradient": 1, "mean PSNR dB": float(np.mean([r[0] for r in dlg_rows])),
             "mean SSIM": float(np.mean([r[1] for r in dlg_rows])),
             "labels recovered": float(np.mean([r[2] for r in dlg_rows]))},
            {"attack": "Inverting Gradients", "images per gradient": n, "mean PSNR dB": q_ig.mean_psnr,
             "mean SSIM": q_ig.mean_ssim, "labels recovered": float(np.mean(
                 np.sort(ig.labels.numpy()) == np.sort(y.numpy())))}]
    run.table("Gradient inversion", rows, caption="Reconstruction quality against the originals (best match).")
    curves = {}
    names = {"noise": ("Gaussian noise (std)", "noise", None), "dp": ("DP: clip to 1 + noise (sigma)", "noise",
                                                                      {"clip_norm": 1.0}),
             "topk": ("top-k sparsification (fraction kept)", "topk", None)}
    for key in run.track(list(p["defence_strengths"]), "defences"):
        label, defence, base = names[key]
        curves[key] = defence_curve(net, x[:1], y[:1], defence=defence, strengths=list(p["defence_strengths"][key]),
                                    method="dlg", base=base, seed=cfg.seed, iterations=p["dlg_iterations"])
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    table = []
    for ax, (key, rows_k) in zip(axes[0], curves.items(), strict=True):
        none = [r for r in rows_k if r["strength"] is None]
        some = [r for r in rows_k if r["strength"] is not None]
        ax.plot([r["strength"] for r in some], [min(r["psnr"], 80.0) for r in some], "o-")
        for r in none:
            ax.axhline(min(r["psnr"], 80.0), color="grey", ls="--", lw=1,
                       label="clipping only" if names[key][2] else "no defence")
        ax.set(xlabel=names[key][0], ylabel="DLG PSNR (dB)", title=key)
        if some:
            ax.set_xscale("log")
        if key == "topk":
            ax.invert_xaxis()  # stronger to the right: fewer entries kept
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        off = "clip only" if names[key][2] else "none"
        table += [{"defence": names[key][0], "strength": r["strength"] if r["strength"] is not None else off,
                   "PSNR dB": r["psnr"], "SSIM": r["ssim"], "label recovered": r["labels_correct"]} for r in rows_k]
    fig.tight_layout()
    run.figure(fig, "psnr-vs-defence", caption="DLG's reconstruction PSNR of one digit against the strength of each "
               "defence applied to the shared gradient (stronger to the right; PSNR capped at 80 dB in the plot).")
    run.table("PSNR against defence strength", table, caption="DLG on the first digit, same seed for every strength.")
    run.log(inversion={"dlg_psnr": rows[0]["mean PSNR dB"], "ig_psnr": q_ig.mean_psnr, "defences": table})


def _he_section(cfg: PrivacyConfig, p: dict[str, Any], run: Run, train: TensorDataset, test: TensorDataset) -> None:
    missing = missing_packages(HE_PACKAGES)
    run.section("4. Homomorphic encryption", "Encrypted inference under CKKS (TenSEAL): the client encrypts a "
                "digit, the server evaluates the model on the ciphertext with a public context, the client "
                "decrypts the scores. Paillier (phe) sums the clients' updates of federated learning so that only "
                "the sum is decrypted.")
    if missing:
        run.text(f"Skipped: {' and '.join(missing)} not installed. Install the optional extra with "
                 "`pip install 'mlimaging[he]'` (TenSEAL and phe) and run the experiment again.")
        run.log(he={"skipped": missing})
        return
    from mlimaging.models import create_model
    from mlimaging.privacy.he import CryptoNet, evaluate_encrypted, paillier_sum
    from mlimaging.training import fit

    models: dict[str, nn.Module] = {"logistic regression": create_model("logistic_regression", num_classes=10,
                                                                          input_shape=(1, 28, 28), seed=cfg.seed)}
    if p["he_cryptonet"]:
        models["CryptoNet (x^2 activations)"] = CryptoNet(seed=cfg.seed)
    rows = []
    for name, model in run.track(list(models.items()), "encrypted inference"):
        fit(model, train, test, loss=nn.CrossEntropyLoss(), optimizer=lambda q: torch.optim.Adam(q, lr=1e-3),
            epochs=p["epochs"], batch_size=64, seed=cfg.seed, progress=False)
        ev = evaluate_encrypted(model.eval(), test.tensors, n=p["he_images"])
        rows.append({"model": name, "images": ev.n, "plain accuracy": ev.plain_accuracy,
                     "encrypted accuracy": ev.encrypted_accuracy, "agreement": ev.agreement,
                     "max score error": ev.max_abs_error, "ms per image (encrypted)": 1e3 * ev.seconds,
                     "ms per image (plain)": 1e3 * ev.plain_seconds, "KB sent": ev.query_bytes / 1e3,
                     "KB received": ev.reply_bytes / 1e3})
    run.table("Encrypted against plain inference", rows, caption="CKKS at 128-bit security (mlimaging.privacy.he "
              "defaults); latency per image = encryption + server evaluation + decryption, one thread.")
    g = torch.Generator().manual_seed(cfg.seed)
    updates = [0.01 * torch.randn(p["paillier_values"], generator=g) for _ in range(3)]
    res = paillier_sum(updates, key_length=1024 if cfg.quick else 2048)
    err = float((res.total - torch.stack(updates).sum(0)).abs().max())
    run.table("Paillier aggregation", [{"clients": res.clients, "values per client": p["paillier_values"],
                                        "key bits": 1024 if cfg.quick else 2048,
                                        "ciphertexts per client": res.ciphertexts,
                                        "encrypt s (all clients)": res.encrypt_seconds,
                                        "aggregate s": res.aggregate_seconds, "decrypt s": res.decrypt_seconds,
                                        "KB per client": res.ciphertext_bytes / 1e3, "max error": err}],
              caption="Three clients' updates summed under Paillier with slot packing; error against the plain sum.")
    run.log(he={"models": rows, "paillier_max_error": err})


def _anonymity_section(cfg: PrivacyConfig, p: dict[str, Any], run: Run) -> None:
    from mlimaging.privacy.anonymity import (
        Hierarchy,
        age_hierarchy,
        discernibility_metric,
        generalize_to_k,
        k_anonymity,
        l_diversity,
        mondrian,
        normalized_certainty_penalty,
        site_hierarchy,
        synthetic_metadata,
    )

    table = synthetic_metadata(p["table_rows"], seed=cfg.seed)
    qi = ["age", "sex", "site"]
    hierarchies = {"age": age_hierarchy(), "sex": Hierarchy([lambda v: "*"]), "site": site_hierarchy()}
    run.section("5. k-anonymity of image metadata", f"A synthetic table of {len(table)} imaging studies (age, sex, "
                "site, scanner, diagnosis); quasi-identifiers age, sex and site, sensitive attribute diagnosis. "
                "Full-domain generalisation (age bands, site -> region -> country) with at most 5 % of the rows "
                "suppressed, choosing the least information loss (NCP, Xu et al. 2006), against strict Mondrian "
                "(LeFevre et al. 2006).")
    rows = [{"table": "original", "k": "-", "k-anonymity": k_anonymity(table, qi),
             "l-diversity": l_diversity(table, qi, "diagnosis"), "rows kept": len(table), "NCP": 0.0,
             "discernibility": discernibility_metric(table, table, qi), "levels": "-"}]
    examples = {}
    for k in run.track(p["ks"], "k values"):
        anon, levels = generalize_to_k(table, hierarchies, int(k), max_suppression=0.05)
        rows.append({"table": "generalised + suppressed", "k": int(k), "k-anonymity": k_anonymity(anon, qi),
                     "l-diversity": l_diversity(anon, qi, "diagnosis"), "rows kept": len(anon),
                     "NCP": normalized_certainty_penalty(table, anon, qi),
                     "discernibility": discernibility_metric(table, anon, qi),
                     "levels": ", ".join(f"{c} {v}" for c, v in levels.items())})
        mond = mondrian(table, qi, int(k), hierarchies={"site": hierarchies["site"]})
        rows.append({"table": "Mondrian", "k": int(k), "k-anonymity": k_anonymity(mond, qi),
                     "l-diversity": l_diversity(mond, qi, "diagnosis"), "rows kept": len(mond),
                     "NCP": normalized_certainty_penalty(table, mond, qi),
                     "discernibility": discernibility_metric(table, mond, qi), "levels": "-"})
        examples.setdefault("k", (int(k), anon))
    run.table("k-anonymity before and after", rows, caption="k-anonymity = smallest equivalence class on (age, sex, "
              "site); l-diversity = fewest distinct diagnoses in a class; NCP in [0, 1] (0: no loss).")
    k0, anon = examples["k"]
    shown = table.loc[anon.index[:8]].reset_index()
    after = anon.loc[anon.index[:8]].reset_index()
    run.table("Example rows", [{"row": int(a["index"]), **{f"{c} (before)": a[c] for c in qi},
                                **{f"{c} (k={k0})": b[c] for c in qi}, "diagnosis": a["diagnosis"]}
                               for (_, a), (_, b) in zip(shown.iterrows(), after.iterrows(), strict=True)],
              caption=f"The first rows before and after generalisation to k = {k0}.")
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    for method, style in (("generalised + suppressed", "o-"), ("Mondrian", "s--")):
        pts = [(r["k"], r["NCP"]) for r in rows if r["table"] == method]
        ax.plot(*zip(*pts, strict=True), style, label=method)
    ax.set(xscale="log", xlabel="k", ylabel="information loss (NCP)", ylim=(0, None), title="Information loss against k")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    run.figure(fig, "information-loss-vs-k", caption="Normalised certainty penalty of the k-anonymous tables.")
    run.log(anonymity=rows)


def _deidentify_section(cfg: PrivacyConfig, p: dict[str, Any], run: Run) -> None:
    from mlimaging.data.samples import sample_paths
    from mlimaging.privacy.deidentify import deidentify_dicom

    # the files shipped inside pydicom's wheel (get_testdata_files would also try to download pydicom-data's)
    files = [f for f in sample_paths("*.dcm", package="pydicom") if f.stat().st_size < 2_000_000][:p["dicom_files"]]
    run.section("6. De-identification of DICOM files", f"{len(files)} of pydicom's shipped DICOM files through the "
                "PS3.15 Annex E basic application-level confidentiality profile (mlimaging deidentify): identifying "
                "attributes removed, emptied or replaced by dummies, UIDs replaced consistently, private attributes "
                "removed, pixel data unchanged.")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i, f in enumerate(files):
            (src / f"{i:03d}_{Path(f).name}").write_bytes(Path(f).read_bytes())
        summary = deidentify_dicom(src, Path(tmp) / "out", uid_key=f"seed-{cfg.seed}")
    run.table("De-identification summary", [{"what": k, "count": v} for k, v in summary.to_rows()],
              caption="Counts over all files.")
    run.log(deidentify=dict(summary.to_rows()))


@experiment("privacy", config=PrivacyConfig)
def privacy_experiment(cfg: PrivacyConfig, run: Run) -> None:
    """DP-SGD accuracy against epsilon on mnist5k; gradient inversion and defences; HE inference; k-anonymity."""
    from mlimaging.experiments.federated import load_mnist

    p = _resolve(cfg)
    run.log(settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()},
            torch_threads=torch.get_num_threads())
    xtr, ytr, xte, yte = load_mnist(n_train=p["n_train"], n_test=p["n_test"], seed=cfg.seed)
    train, test = TensorDataset(xtr, ytr), TensorDataset(xte, yte)
    run.log(n_train=len(ytr), n_test=len(yte))
    seconds: dict[str, float] = {}
    sections = (("accuracy vs epsilon", lambda: _epsilon_section(cfg, p, run, train, test)),
                ("clipping and noise", lambda: _ablation_section(cfg, p, run, train, test)),
                ("gradient inversion", lambda: _attack_section(cfg, p, run, test)),
                ("homomorphic encryption", lambda: _he_section(cfg, p, run, train, test)),
                ("k-anonymity", lambda: _anonymity_section(cfg, p, run)))
    for name, section in sections:
        t0 = time.perf_counter()
        section()
        seconds[name] = time.perf_counter() - t0
    if p["dicom_files"] and not missing_packages(("pydicom",)):
        t0 = time.perf_counter()
        _deidentify_section(cfg, p, run)
        seconds["de-identification"] = time.perf_counter() - t0
    run.log(section_seconds=seconds)

r"""Experiment ``robustness``: adversarial examples and adversarial training, digits and phantoms.

Sections of the report (attacks from :mod:`mlimaging.robustness`, training through
:func:`mlimaging.training.fit`; the adversarial steps are
:class:`~mlimaging.robustness.FastAdversarialStep` and :class:`~mlimaging.robustness.PGDAdversarialStep`):

1. **Accuracy against** :math:`\varepsilon`: LeNet trained on mnist5k, attacked on the test
   digits by FGSM, :math:`x' = \operatorname{clip}_{[0,1]}(x + \varepsilon \operatorname{sign}
   \nabla_x \mathcal{L}(f(x), y))` (Goodfellow et al. 2015), and by PGD with 10 and 40 steps of
   size :math:`\alpha = 2.5 \varepsilon / T` projected on the :math:`L_\infty` ball (Madry et al.
   2018), for :math:`\varepsilon \in \{0, .05, .1, .15, .2, .25, .3\}`: the curve of the PyTorch
   FGSM tutorial.
2. **Adversarial digits**: one digit per :math:`\varepsilon` with the model's prediction.
3. **Adversarial training**: the same LeNet trained on FGSM-with-random-start examples (fast
   adversarial training, Wong et al. 2020) and on PGD examples (Madry et al. 2018), against
   standard training: clean and robust accuracy.
4. **Medical example**: the segmentation U-Net on 2D phantoms shown as CT in Hounsfield units
   (:math:`\mathrm{HU} = 2000 I - 1000`: air -1000, body -400, organ 400, lesion 1000), valid
   range [-1024, 3071] HU and :math:`\varepsilon` in HU; mean Dice against :math:`\varepsilon`
   (untargeted PGD on the pixel-wise cross-entropy), and the smallest :math:`\varepsilon` of a
   grid for which a targeted PGD (lesion pixels pushed to the label around the lesion) erases
   the lesion from the prediction.
5. **Gradient-masking check** (Athalye et al. 2018): an attack with more PGD steps or random
   restarts must never be weaker than FGSM; a model whose PGD accuracy exceeds its FGSM accuracy
   gives a false sense of robustness. One row per model and :math:`\varepsilon` with a pass/fail
   column.

Every number depends only on ``seed`` (timings aside).

References
----------
Goodfellow I., Shlens J., Szegedy C. (2015). Explaining and harnessing adversarial examples.
ICLR. arXiv:1412.6572.

Madry A., Makelov A., Schmidt L., Tsipras D., Vladu A. (2018). Towards deep learning models
resistant to adversarial attacks. ICLR. arXiv:1706.06083.

Wong E., Rice L., Kolter J. Z. (2020). Fast is better than free: revisiting adversarial
training. ICLR. arXiv:2001.03994.

Athalye A., Carlini N., Wagner D. (2018). Obfuscated gradients give a false sense of security.
ICML. arXiv:1802.00420.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("robustness", quick=True, seed=0, out="runs/rob")  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import label_cmap, plt

__all__ = ["FULL", "QUICK", "EpsRamp", "HUSegmenter", "RobustnessConfig", "attack_images"]

#: Intensity mapping of the phantoms to CT-like Hounsfield units, and the CT range.
HU_SCALE, HU_OFFSET, HU_RANGE = 2000.0, -1000.0, (-1024.0, 3071.0)
STRUCTURES = {1: "body", 2: "organ", 3: "lesion"}

#: Quick mode: 1,500 training digits, three epochs, 150 test digits, small phantoms; robust accuracy at train_eps only.
QUICK: dict[str, Any] = {
    "n_train": 1500, "n_test": 150, "epochs": 3, "at_epochs": 3, "at_steps": 3, "masking_n": 50, "restarts": 2,
    "phantoms": 12, "phantom_size": 48, "seg_epochs": 16, "hu_eps": (0.0, 10.0, 40.0, 160.0),
    "erase_eps": (20.0, 80.0, 320.0, 1280.0),
}
#: Full mode: all 3,500 training and 1,000 test digits, the tutorial's eps grid everywhere.
FULL: dict[str, Any] = {
    "n_train": None, "n_test": None, "epochs": 15, "at_epochs": 15, "at_steps": 10, "masking_n": 500, "restarts": 5,
    "phantoms": 24, "phantom_size": 64, "seg_epochs": 40, "hu_eps": (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0),
    "erase_eps": (10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1280.0),
}


@dataclass
class RobustnessConfig(ExperimentConfig):
    """Settings of the ``robustness`` experiment; ``None`` takes the quick/full value (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    n_train, n_test
        mnist5k training and test digits (stratified subsets; None: all 3,500 / 1,000).
    epochs, at_epochs
        Epochs of standard training and of each adversarial training.
    at_steps
        PGD steps of PGD adversarial training (step size :math:`2.5 \\varepsilon / T`).
    masking_n, restarts
        Test digits of the gradient-masking check and random restarts of its strongest PGD.
    phantoms, phantom_size, seg_epochs
        Training phantoms (a third as many are held out), their side in pixels and the U-Net's epochs.
    hu_eps, erase_eps
        :math:`\\varepsilon` in HU of the Dice curve and the grid searched for the smallest lesion-erasing one.
    eps_list
        :math:`\\varepsilon` of the digit curves (fractions of the [0, 1] range).
    train_eps
        :math:`\\varepsilon` of adversarial training (and the robust accuracy of its table).
    clean_weight
        Weight of the clean loss in adversarial training, :math:`w \\mathcal{L}(x) + (1 - w) \\mathcal{L}(x')`.
    lr, batch_size
        Adam learning rate and batch size of the classifiers.
    """

    n_train: int | None = None
    n_test: int | None = None
    epochs: int | None = None
    at_epochs: int | None = None
    at_steps: int | None = None
    masking_n: int | None = None
    restarts: int | None = None
    phantoms: int | None = None
    phantom_size: int | None = None
    seg_epochs: int | None = None
    hu_eps: tuple[float, ...] | None = None
    erase_eps: tuple[float, ...] | None = None
    eps_list: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
    train_eps: float = 0.2
    clean_weight: float = 0.0
    lr: float = 2e-3
    batch_size: int = 32


def _resolve(cfg: RobustnessConfig) -> dict[str, Any]:
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    for key in ("epochs", "at_epochs", "at_steps", "masking_n", "restarts", "phantoms", "phantom_size", "seg_epochs"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    for key, values in (("eps_list", cfg.eps_list), ("hu_eps", p["hu_eps"]), ("erase_eps", p["erase_eps"])):
        if not values or not all(isinstance(e, (int, float)) and np.isfinite(e) and e >= 0 for e in values):
            raise ValueError(f"{key} must be non-negative numbers, got {values!r}")
    if not 0 < cfg.train_eps <= 1:
        raise ValueError(f"train_eps must be in (0, 1], got {cfg.train_eps!r}")
    if not 0 <= cfg.clean_weight <= 1:
        raise ValueError(f"clean_weight must be in [0, 1], got {cfg.clean_weight!r}")
    if p["phantom_size"] < 32 or p["phantom_size"] % 8:
        raise ValueError(f"phantom_size must be a multiple of 8 and >= 32, got {p['phantom_size']}")
    p["eps_list"] = tuple(float(e) for e in cfg.eps_list)
    return p


# ------------------------------------------------------------------------------------ attacks
def _alpha(eps: float, steps: int) -> float:
    return 2.5 * eps / steps


def attack_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, method: str, eps: float, steps: int = 40,
                  alpha: float | None = None, restarts: int = 1, valid_range: Any = (0.0, 1.0), targeted: bool = False,
                  loss: Any = None, seed: int = 0, batch_size: int = 500) -> torch.Tensor:
    r"""Adversarial images of ``x`` by FGSM or :math:`L_\infty` PGD, in batches; ``eps = 0`` returns ``x``.

    PGD takes ``steps`` steps of size ``alpha`` (default :math:`2.5 \varepsilon / T`, Madry et al.
    2018) from a random start drawn by a generator seeded with ``seed``; FGSM is one step of size
    :math:`\varepsilon` (Goodfellow et al. 2015). Shared by the experiment, ``mlimaging attack``
    and the benchmark.

    Examples
    --------
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> x, y = torch.rand(3, 1, 2, 2), torch.tensor([0, 1, 0])
    >>> x_adv = attack_images(net, x, y, method="pgd", eps=0.1, steps=3)
    >>> bool((x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
    """
    from mlimaging.robustness import fgsm, pgd

    if method not in ("fgsm", "pgd"):
        raise ValueError(f"method must be 'fgsm' or 'pgd', got {method!r}")
    if not eps > 0:
        return x.clone()
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(x), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        vr = valid_range
        if isinstance(vr, tuple) and any(isinstance(v, torch.Tensor) and v.ndim and len(v) == len(x) for v in vr):
            vr = tuple(v[i:i + batch_size] if isinstance(v, torch.Tensor) and v.ndim else v for v in vr)
        common = dict(eps=eps, valid_range=vr, targeted=targeted, loss=loss)
        if method == "fgsm":
            out.append(fgsm(model, xb, yb, **common))
        else:
            out.append(pgd(model, xb, yb, alpha=alpha if alpha is not None else _alpha(eps, steps), steps=steps,
                           generator=gen, restarts=restarts, **common))
    return torch.cat(out)


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, **attack: Any) -> float:
    x_adv = attack_images(model, x, y, **attack) if attack else x
    return float((_predict(model, x_adv) == y).float().mean())


# ------------------------------------------------------------------------------------ data and models
def _load(cfg: RobustnessConfig, p: dict[str, Any]) -> dict[str, torch.Tensor]:
    from mlimaging.experiments.classification import class_subset, load_images

    data = {}
    for split, key, limit in (("train", "tr", p["n_train"]), ("test", "te", p["n_test"])):
        x, y, _ = load_images("mnist5k", split, seed=cfg.seed, image_size=28)
        if limit is not None and limit < len(y):
            idx = class_subset(y, total=limit, seed=cfg.seed)
            x, y = x[idx], y[idx]
        data["x" + key], data["y" + key] = x, y
    return data


class EpsRamp:
    r"""fit callback: the adversarial step's budget ramps up linearly over the first ``ramp`` epochs,
    :math:`\varepsilon_e = \varepsilon \min(1, e / \text{ramp})`, its step size following
    (:math:`\alpha_e = \alpha \varepsilon_e / \varepsilon`); early full-budget attacks stall training
    (Gowal et al. 2018, arXiv:1810.12715, ramp up their budget the same way).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from mlimaging.robustness import PGDAdversarialStep
    >>> step = PGDAdversarialStep(eps=0.3, steps=5)
    >>> EpsRamp(step, ramp=3).on_epoch_start(SimpleNamespace(epoch=1))
    >>> round(step.eps, 3), round(step.alpha, 3)
    (0.1, 0.05)
    """

    def __init__(self, step: Any, *, ramp: int) -> None:
        self.step, self.eps, self.alpha, self.ramp = step, float(step.eps), float(step.alpha), max(1, int(ramp))

    def on_epoch_start(self, state: Any) -> None:
        f = min(1.0, state.epoch / self.ramp)
        self.step.eps, self.step.alpha = self.eps * f, self.alpha * f


def _train_lenet(cfg: RobustnessConfig, data: dict[str, torch.Tensor], *, epochs: int, step: Any = None
                 ) -> tuple[nn.Module, float]:
    from mlimaging.models import create_model
    from mlimaging.training import fit

    model = create_model("lenet", num_classes=10, seed=cfg.seed)
    t0 = time.perf_counter()
    fit(model, TensorDataset(data["xtr"], data["ytr"]), loss=nn.CrossEntropyLoss(), step=step, metrics=(),
        optimizer=lambda ps: torch.optim.Adam(ps, lr=cfg.lr), epochs=epochs, batch_size=cfg.batch_size,
        seed=cfg.seed, progress=not cfg.quick, callbacks=[EpsRamp(step, ramp=(epochs + 1) // 2)] if step else ())
    return model.eval(), time.perf_counter() - t0


# ------------------------------------------------------------------------------------ sections
METHODS = {"FGSM": {"method": "fgsm"}, "PGD-10": {"method": "pgd", "steps": 10},
           "PGD-40": {"method": "pgd", "steps": 40}}


def _curve_section(cfg: RobustnessConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor],
                   model: nn.Module, seconds: float) -> dict[str, list[float]]:
    xte, yte = data["xte"], data["yte"]
    run.section("1. Accuracy against epsilon", f"LeNet trained for {p['epochs']} epochs on {len(data['ytr'])} "
                f"mnist5k digits (Adam, lr {cfg.lr:g}, {seconds:.1f} s), attacked on {len(yte)} test digits in "
                "[0, 1]. FGSM takes one step of size epsilon along the sign of the input gradient of the "
                "cross-entropy; PGD-T takes T steps of size 2.5 epsilon / T from a random start, each projected "
                "back on the L-infinity ball of radius epsilon and on the valid range [0, 1].")
    curves: dict[str, list[float]] = {}
    for name in run.track(list(METHODS), "accuracy against eps"):
        curves[name] = [_accuracy(model, xte, yte, eps=e, seed=cfg.seed, **METHODS[name]) for e in p["eps_list"]]
    rows = [{"eps": e, **{name: curves[name][k] for name in METHODS}} for k, e in enumerate(p["eps_list"])]
    run.table("LeNet test accuracy against eps", rows, caption=f"{len(yte)} test digits; seed {cfg.seed}.")
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for (name, accs), style in zip(curves.items(), ("o-", "s--", "^:"), strict=True):
        ax.plot(p["eps_list"], accs, style, ms=4, label=name)
    ax.set(xlabel="epsilon (L-infinity, images in [0, 1])", ylabel="test accuracy", ylim=(0, 1.02),
           title="LeNet on mnist5k under attack")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    run.figure(fig, "accuracy-vs-eps", caption="Test accuracy of the standard LeNet against the attack's budget.")
    run.log(curves={"eps": p["eps_list"], **curves})
    return curves


def _examples_section(cfg: RobustnessConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor],
                      model: nn.Module) -> None:
    run.section("2. Adversarial digits", "The same test digits perturbed by PGD-40 at each epsilon, with the "
                "model's prediction and its probability. At the budgets where the accuracy collapses the digits "
                "remain obvious to a human reader.")
    yte = data["yte"]
    idx = [int(torch.nonzero(yte == c)[0]) for c in torch.unique(yte).tolist()[:5]]
    x, y = data["xte"][idx], yte[idx]
    eps = p["eps_list"]
    fig, axes = plt.subplots(len(idx), len(eps), figsize=(1.35 * len(eps), 1.45 * len(idx)), squeeze=False)
    for c, e in enumerate(eps):
        x_adv = attack_images(model, x, y, method="pgd", eps=e, steps=40, seed=cfg.seed)
        with torch.no_grad():
            prob = torch.softmax(model.eval()(x_adv), 1)
        for r in range(len(idx)):
            k = int(prob[r].argmax())
            axes[r, c].imshow(x_adv[r, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_title(f"{k} ({float(prob[r, k]):.2f})", fontsize=7, color="black" if k == int(y[r]) else "red")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(f"eps {e:g}\n{k} ({float(prob[r, k]):.2f})", fontsize=7,
                                     color="black" if k == int(y[r]) else "red")
            if c == 0:
                axes[r, c].set_ylabel(f"digit {int(y[r])}", fontsize=7)
    fig.tight_layout()
    run.figure(fig, "adversarial-digits", caption="Columns: epsilon; titles: predicted class (probability), red "
               "when wrong.")


def _training_section(cfg: RobustnessConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor],
                      standard: tuple[nn.Module, float]) -> dict[str, nn.Module]:
    from mlimaging.robustness import FastAdversarialStep, PGDAdversarialStep

    eps, steps = cfg.train_eps, p["at_steps"]
    run.section("3. Adversarial training", f"LeNet trained for {p['at_epochs']} epochs on adversarial examples at "
                f"epsilon {eps:g}, ramped up linearly over the first {(p['at_epochs'] + 1) // 2} epoch(s) (clean-loss weight "
                f"{cfg.clean_weight:g}): fast adversarial training (FGSM from a "
                "uniform random start in the epsilon ball, step 1.25 epsilon; Wong et al. 2020) and PGD "
                f"adversarial training ({steps} steps of 2.5 epsilon / {steps}; Madry et al. 2018), against "
                "standard training. Robust accuracy is measured with PGD-40 and FGSM on the test digits.")
    models = {"standard": standard}
    fast = FastAdversarialStep(eps=eps, alpha=1.25 * eps, loss=nn.CrossEntropyLoss(), clean_weight=cfg.clean_weight,
                               seed=cfg.seed)
    madry = PGDAdversarialStep(eps=eps, alpha=_alpha(eps, steps), steps=steps, loss=nn.CrossEntropyLoss(),
                               clean_weight=cfg.clean_weight, seed=cfg.seed)
    for name, step in run.track([("fast-AT (FGSM-RS)", fast), ("PGD-AT", madry)], "adversarial training"):
        models[name] = _train_lenet(cfg, data, epochs=p["at_epochs"], step=step)
    xte, yte = data["xte"], data["yte"]
    # quick mode: the training budget only (the PGD-40 evaluations dominate its time)
    checks = sorted({eps} if cfg.quick else {eps, *(e for e in (0.1, 0.3) if e in p["eps_list"])})
    rows = []
    for name, (model, seconds) in models.items():
        row: dict[str, Any] = {"training": name, "epochs": p["epochs"] if name == "standard" else p["at_epochs"],
                               "seconds": round(seconds, 2), "clean": _accuracy(model, xte, yte)}
        for e in checks:
            row[f"FGSM {e:g}"] = _accuracy(model, xte, yte, method="fgsm", eps=e)
            row[f"PGD-40 {e:g}"] = _accuracy(model, xte, yte, method="pgd", eps=e, steps=40, seed=cfg.seed)
        rows.append(row)
    run.table("Standard vs adversarial training", rows, caption=f"Test accuracy on {len(yte)} digits, clean and "
              f"under attack at each epsilon; seed {cfg.seed}.")
    run.log(adversarial_training=rows)
    return {name: m for name, (m, _) in models.items()}


def _masking_section(cfg: RobustnessConfig, p: dict[str, Any], run: Run, data: dict[str, torch.Tensor],
                     models: dict[str, nn.Module]) -> None:
    n = min(p["masking_n"], len(data["yte"]))
    x, y = data["xte"][:n], data["yte"][:n]
    r = p["restarts"]
    run.section("5. Gradient-masking check", f"On {n} test digits: FGSM, PGD-10, PGD-40 and PGD-40 with {r} random "
                "restarts (a digit counts as robust only if every restart fails). An iterative attack explores the "
                "epsilon ball further than FGSM's single step, so its accuracy must not be higher; if it were, the "
                "gradient would be masked (flat, noisy or misleading) and the robustness an artefact "
                "(Athalye et al. 2018). 'pass' means: every PGD accuracy <= FGSM's, PGD-40 <= PGD-10 (one digit of "
                "slack between independent random starts), and the restarts <= PGD-40.")
    attacks = {"FGSM": {"method": "fgsm"}, "PGD-10": {"method": "pgd", "steps": 10},
               "PGD-40": {"method": "pgd", "steps": 40}, f"PGD-40 x{r}": {"method": "pgd", "steps": 40, "restarts": r}}
    checks = sorted({cfg.train_eps, max(p["eps_list"])} - {0.0})
    rows = []
    for name, model in run.track(list(models.items()), "gradient masking"):
        for e in checks:
            acc = {a: _accuracy(model, x, y, eps=e, seed=cfg.seed, **kw) for a, kw in attacks.items()}
            fg, p10, p40, prs = (round(v * n) for v in acc.values())  # robust digits under each attack
            # one digit of slack between independent random starts; the restarts keep PGD-40's first run
            ok = max(p10, p40, prs) <= fg + 1 and p40 <= p10 + 1 and prs <= p40
            rows.append({"model": name, "eps": e, **acc, "check": "pass" if ok else "FAIL"})
    run.table("Gradient-masking check", rows, caption=f"Accuracy under each attack ({n} test digits); tolerance one "
              "digit between independent attacks.")
    run.log(gradient_masking=rows)


# ------------------------------------------------------------------------------------ medical example
class HUSegmenter(nn.Module):
    """A segmenter trained on z-scored images, taking images in HU: :math:`f((x - \\bar x) / \\sigma_x)` per image.

    The z-score is differentiable, so attacks see the whole pipeline, and invariant to the
    affine map from phantom intensities to HU.

    Examples
    --------
    >>> model = HUSegmenter(nn.Conv2d(1, 4, 3, padding=1))
    >>> x = torch.rand(2, 1, 16, 16)
    >>> torch.allclose(model(x), model(2000 * x - 1000), atol=1e-4)
    True
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.ndim))
        mean = x.mean(dims, keepdim=True)
        std = x.std(dims, keepdim=True, unbiased=False).clamp_min(1e-6)
        return self.net((x - mean) / std)


def _erase_target(labels: torch.Tensor) -> torch.Tensor:
    """The label map with each lesion pixel given the most frequent label of the ring around the lesion."""
    from scipy import ndimage

    out = labels.clone()
    lesion = labels.numpy() == 3
    if lesion.any():
        ring = ndimage.binary_dilation(lesion, iterations=2) & ~lesion
        around = labels.numpy()[ring]
        out[torch.from_numpy(lesion)] = int(np.bincount(around, minlength=4).argmax()) if around.size else 2
    return out


def _near_lesion(labels: torch.Tensor, margin: int = 2) -> torch.Tensor:
    """Boolean map of the lesion dilated by ``margin`` pixels: where an erased lesion must not be predicted."""
    from scipy import ndimage

    return torch.from_numpy(ndimage.binary_dilation(labels.numpy() == 3, iterations=margin))


def _region_ce(region: torch.Tensor) -> Any:
    """Cross-entropy averaged over the pixels of ``region`` only: the targeted attack changes the lesion's
    neighbourhood and leaves the rest of the prediction to itself."""

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_pixel = nn.functional.cross_entropy(logits, target, reduction="none")
        return per_pixel[:, region].mean()

    return loss


def _medical_section(cfg: RobustnessConfig, p: dict[str, Any], run: Run) -> None:
    from mlimaging.data import PhantomDataset
    from mlimaging.metrics import mean_dice
    from mlimaging.segmentation.classical import BASE_KNOBS
    from mlimaging.segmentation.dense import build_segmenter, train_segmenter
    from mlimaging.segmentation.samples import SegmentationSamples

    size, n = p["phantom_size"], p["phantoms"]
    erase_steps = 20 if cfg.quick else 40
    train = PhantomDataset(n, (size, size), seed=1000 * cfg.seed + 40, n_structures=3, **BASE_KNOBS)
    test = PhantomDataset(max(2, n // 3), (size, size), seed=1000 * cfg.seed + 41, n_structures=3, **BASE_KNOBS)
    run.section("4. Medical example: a U-Net on CT-like phantoms", f"A 2D U-Net (8 channels, depth 3) trained for "
                f"{p['seg_epochs']} epochs (Dice + cross-entropy) on {n} phantoms of {size} x {size} pixels with "
                "noise, bias field and partial volume, z-scored per image. The phantoms are shown to the attacks "
                f"in Hounsfield units, HU = {HU_SCALE:g} I {HU_OFFSET:+g} (air -1000, body -400, organ 400, lesion "
                f"1000; noise about {HU_SCALE * BASE_KNOBS['noise']:.0f} HU), valid range [{HU_RANGE[0]:g}, "
                f"{HU_RANGE[1]:g}] HU, so epsilon is in HU. Untargeted PGD-20 maximises the pixel-wise "
                f"cross-entropy; the targeted PGD-{erase_steps} pushes the lesion's pixels to the label around them.")
    net = build_segmenter("unet", num_classes=4, seed=cfg.seed, channels=8, depth=3)
    train_segmenter(net, SegmentationSamples(train), epochs=p["seg_epochs"], batch_size=4, lr=3e-3, seed=cfg.seed)
    model = HUSegmenter(net).eval()
    items = [test[i] for i in range(len(test))]
    x = torch.stack([(HU_SCALE * im + HU_OFFSET).clamp(*HU_RANGE) for im, _ in items])
    y = torch.stack([lab for _, lab in items])
    ce = nn.CrossEntropyLoss()
    rows = []
    for e in run.track(list(p["hu_eps"]), "attacking the U-Net"):
        x_adv = attack_images(model, x, y, method="pgd", eps=e, steps=20, valid_range=HU_RANGE, loss=ce, seed=cfg.seed)
        pred = _predict(model, x_adv)
        per = {name: float(np.mean([mean_dice(pr.numpy(), gt.numpy(), labels=[k]) for pr, gt in zip(pred, y,
                                    strict=True)])) for k, name in STRUCTURES.items()}
        rows.append({"eps (HU)": e, "mean Dice": float(np.mean(list(per.values()))),
                     **{f"Dice {k}": v for k, v in per.items()}})
    run.table("U-Net Dice against eps (HU)", rows, caption=f"Means over {len(items)} test phantoms; untargeted "
              f"PGD-20 (step 2.5 eps / 20); seed {cfg.seed}.")

    erase_rows, shown = [], None
    for i in range(len(items)):
        region = _near_lesion(y[i])
        clean = _predict(model, x[i:i + 1])[0]
        if not (clean[region] == 3).any():
            continue  # no lesion found to erase
        target = _erase_target(y[i])[None]
        found = None
        for e in p["erase_eps"]:
            x_adv = attack_images(model, x[i:i + 1], target, method="pgd", eps=e, steps=erase_steps, valid_range=HU_RANGE,
                                  loss=_region_ce(region), targeted=True, seed=cfg.seed)
            pred = _predict(model, x_adv)
            if not (pred[0][region] == 3).any():
                found = (e, x_adv, pred)
                break
        erase_rows.append({"phantom": i, "lesion pixels": int((y[i] == 3).sum()),
                           "detected lesion pixels": int((clean[region] == 3).sum()),
                           "smallest erasing eps (HU)": found[0] if found else float("nan"),
                           "fraction of lesion-organ contrast": found[0] / (0.3 * HU_SCALE) if found else float("nan")})
        if found and shown is None:
            shown = (i, found)
    run.table("Smallest perturbation that erases the lesion", erase_rows, caption=f"Targeted PGD-{erase_steps} towards the label "
              "map without the lesion (cross-entropy over the lesion and a 2-pixel margin), eps searched on "
              f"{', '.join(f'{e:g}' for e in p['erase_eps'])} HU; erased: no lesion pixel predicted within the "
              "margin; NaN: not erased within the grid. The lesion-organ contrast is 600 HU (0.3 in phantom units).")
    run.log(medical={"dice": rows, "erase": erase_rows})
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    hu = [r["eps (HU)"] for r in rows]
    ax.plot(hu, [r["mean Dice"] for r in rows], "o-", label="mean")
    for k in STRUCTURES.values():
        ax.plot(hu, [r[f"Dice {k}"] for r in rows], ".--", label=k)
    ax.set(xscale="symlog", xlabel="epsilon (HU)", ylabel="Dice", ylim=(0, 1.02), title="U-Net under PGD-20")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    run.figure(fig, "dice-vs-eps", caption="Dice of the U-Net on the test phantoms against the budget in HU.")
    if shown is not None:
        i, (e, x_adv, pred) = shown
        clean = _predict(model, x[i:i + 1])[0]
        delta = (x_adv - x[i:i + 1])[0, 0].numpy()
        fig, axes = plt.subplots(1, 5, figsize=(12, 2.8))
        panels = [(x[i, 0].numpy(), "image (HU)", "gray"), (clean.numpy(), "prediction", None),
                  (delta, f"perturbation (|d| <= {e:g} HU)", "RdBu_r"), (x_adv[0, 0].numpy(), "attacked image", "gray"),
                  (pred[0].numpy(), "prediction after attack", None)]
        for ax, (img, title, cmap) in zip(axes, panels, strict=True):
            if cmap is None:
                ax.imshow(img, cmap=label_cmap(3), vmin=0, vmax=4, interpolation="nearest")
            elif cmap == "RdBu_r":
                ax.imshow(img, cmap=cmap, vmin=-e, vmax=e)
            else:
                ax.imshow(img, cmap=cmap, vmin=-1100, vmax=1300)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
        fig.tight_layout()
        run.figure(fig, "lesion-erased", caption=f"Test phantom {i}: the smallest eps of the grid ({e:g} HU) whose "
                   "targeted PGD removes the lesion from the U-Net's prediction.")


# ------------------------------------------------------------------------------------ experiment
@experiment("robustness", config=RobustnessConfig)
def robustness_experiment(cfg: RobustnessConfig, run: Run) -> None:
    """FGSM and PGD on LeNet and a U-Net; fast and PGD adversarial training; a gradient-masking check."""
    p = _resolve(cfg)
    run.log(settings=p, torch_threads=torch.get_num_threads())
    data = _load(cfg, p)
    run.log(n_train=len(data["ytr"]), n_test=len(data["yte"]))
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    standard = _train_lenet(cfg, data, epochs=p["epochs"])
    _curve_section(cfg, p, run, data, *standard)
    _examples_section(cfg, p, run, data, standard[0])
    seconds["LeNet, curves and digits"], t0 = time.perf_counter() - t0, time.perf_counter()
    models = _training_section(cfg, p, run, data, standard)
    seconds["adversarial training"], t0 = time.perf_counter() - t0, time.perf_counter()
    _medical_section(cfg, p, run)
    seconds["U-Net on phantoms"], t0 = time.perf_counter() - t0, time.perf_counter()
    _masking_section(cfg, p, run, data, models)
    seconds["gradient-masking check"] = time.perf_counter() - t0
    run.log(section_seconds=seconds)

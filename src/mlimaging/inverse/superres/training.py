r"""Training recipes for the five SR networks, run through :func:`mlimaging.training.fit`.

One recipe per registered model (:data:`SR_RECIPES`), after its paper but sized for a CPU
budget of a few minutes (one torch thread): Adam with a cosine-annealed learning rate instead of
the papers' SGD/step schedules over days of GPU time, the papers' losses (MSE for SRCNN, VDSR and
ESPCN, Charbonnier at every level for LapSRN, L1 for DBPN), flips/rotations of the patches
(:func:`~mlimaging.inverse.superres.sr_pairs` with ``augment=True``), and VDSR's adjustable
gradient clipping (:class:`AdjustableGradientClip`). :func:`train_superres` applies a recipe
(any field can be overridden); ``mlimaging train superres`` and ``benchmarks/superres.py`` use it.

References
----------
Dong et al. 2014 (arXiv:1501.00092), Kim et al. 2016 (arXiv:1511.04587), Shi et al. 2016
(arXiv:1609.05158), Lai et al. 2017 (arXiv:1704.03915), Haris et al. 2018 (arXiv:1803.02735);
Kingma D. P., Ba J. (2015). Adam: a method for stochastic optimization. ICLR. arXiv:1412.6980;
Loshchilov I., Hutter F. (2017). SGDR: stochastic gradient descent with warm restarts. ICLR.
arXiv:1608.03983 (cosine annealing).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mlimaging.inverse.superres.losses import LOSSES, MultiScaleLoss
from mlimaging.training.step import SupervisedStep

__all__ = ["SR_RECIPES", "AdjustableGradientClip", "sr_recipe", "train_superres", "zero_last_"]

#: Per model: ``create_model`` keyword arguments, loss (a :data:`LOSSES` name), Adam learning
#: rate (cosine-annealed to ``lr * final_lr`` over the epochs), batch size, HR patch side,
#: epochs over the patch set, adjustable gradient clipping :math:`\theta` (VDSR) or ``None``,
#: ``zero_last``: start the output layer at zero (:func:`zero_last_`), so a residual network
#: starts from its interpolation (VDSR: bicubic; LapSRN: bilinear at every level) instead of that
#: plus the noise of a random deep branch, and ``last_lr``: the output layer's learning rate
#: relative to ``lr`` (SRCNN's paper: 0.1 under SGD), ``precision``: fit's ``"fp32"`` or ``"bf16"``
#: (bfloat16 autocast forward passes, about 2x faster on CPUs with AVX512-BF16; the model is
#: evaluated in float32 after), ``channels_last``: train in that memory format (about 20% more on
#: this CPU; the weights go back to the default layout after). Patch side and grid ``stride`` are for
#: :func:`~mlimaging.inverse.superres.sr_pairs`. The epochs are those of ``benchmarks/superres.py
#: --epoch-scale 2.5`` divided by 2.5 (x2, the 12 training images of ``split_images(seed=0)`` plus
#: the training-only photographs :data:`~mlimaging.inverse.superres.SR_TRAIN_EXTRA`: 6324 patches
#: of 48 px, 4035 of 32 px for VDSR; at that scale each training takes a few CPU minutes on one
#: torch thread, LapSRN, the paper's size in bfloat16, about forty). Departures from the papers, said plainly, with the
#: probes behind them (seed 0, x2 gain over bicubic on two *training-side* images, astronaut and
#: gravel, left out of the probes' training set, never the test images): Adam + cosine instead of
#: SGD/step decay; SRCNN pads by replicating the edge
#: (zero padding -0.31 dB, replicate +0.14 dB; on the held-out images at 2310 steps only +0.89 ->
#: +0.95 dB, for a third more CPU per step) and keeps one learning rate (``last_lr=0.1``:
#: -0.63 dB); LapSRN at lr 1e-3 with zero-initialised residual convolutions, the paper's 10 layers
#: of 64 features per level trained with bfloat16 forward passes in channels_last (earlier in float32
#: at 5 of 32, then 8 of 48: the paper's size made 4x fewer steps per CPU second than 5 of 32, +0.06
#: dB after 362 steps, 112 CPU s, against +1.84 dB after 1086 steps, 79 CPU s; centre crops; bfloat16
#: makes its steps about as cheap as 8 of 48 in float32); VDSR's last layer starts at zero
#: (the paper: He initialisation) and, under Adam, whose step is already about ``lr``, adjustable
#: clipping only trims outliers (the paper pairs it with SGD at lr 0.1: ``optimizer="sgd"``).
#:
#: Training data and LapSRN's size, chosen on the *whole* astronaut and gravel images (their mean
#: gain; one seed, 10 split images in training, plus the extra photographs where said):
#:
#: ========================================================  =======  =======  =========
#: probe (LapSRN, x2)                                        steps    CPU s    val. gain
#: ========================================================  =======  =======  =========
#: 5x32, split images only                                   1448     99       +2.15 dB
#: 5x32, + china, flower, grace_hopper, motorcycle_left      1480     111      +2.40 dB
#: 5x32, + the four, 8 epochs                                2368     185      +2.54 dB
#: 5x32, + the four, + copies shrunk to 0.7 (bicubic)        1287     105      +2.35 dB
#: 8x48, + the four                                          1480     252      +2.60 dB
#: 8x48, + the four, 10 epochs                               2960     519      +2.75 dB
#: DBPN (32/16, 3 stages, residual), + the four              1184     211      +1.74 dB
#: 8x48, + the four, bf16 + channels_last                    1480     124      +2.59 dB
#: 10x64, + the four, bf16 + channels_last, 10 epochs        2960     485      +2.74 dB
#: 10x64, bf16, 96 px patches (stride 48, batch 4), 10 ep.   2480     408      +2.61 dB
#: 10x64, + the four, bf16 + channels_last, 25 epochs        7400     1200     +2.88 dB
#: the same, + PyWavelets' aero and ascent (the six)        8650     1393     +2.99 dB
#: the same, 40 epochs (now)                                 13840    2328     +3.05 dB
#: ========================================================  =======  =======  =========
#:
#: The four photographs help at an equal number of steps (astronaut +0.47 dB, gravel +0.03 dB);
#: shrunk copies (Timofte et al.'s scale augmentation) did not (not used); scikit-image's
#: hubble_deep_field and retina (mostly black sky and smooth fundus, 4650 patches) were not probed
#: to the end for lack of time and are not used; the larger LapSRN gains +0.2 dB at equal steps
#: for 2.3x the CPU. DBPN's small CPU size stays behind LapSRN at equal CPU. bfloat16 (fit's
#: ``precision="bf16"``) costs nothing in quality (+2.59 against +2.60 dB at 1480 steps) for half
#: the CPU; the paper's 10x64 gains nothing over 8x48 at 2960 steps (+2.74 against +2.75 dB) but
#: goes on to +2.88 dB at 7400 steps (astronaut +3.25, gravel +2.52: the texture does not move);
#: two more grey photographs bundled with PyWavelets (aero, ascent; 800 patches more) add +0.11 dB
#: (astronaut +3.40, gravel +2.58; x8 +3.17 against +3.08 dB), and 40 epochs instead of 25 another
#: +0.06 dB (astronaut +3.49, gravel +2.60; x8 +3.23 dB; the rule set before the probe: adopt at
#: +0.05 dB or more);
#: 96 px patches (48 px LR, less of each patch near its zero-padded edge; the same pixels per
#: step, fewer patches on the grid: 2480 steps) lose 0.13 dB. The geometric self-ensemble (x8,
#: :class:`~mlimaging.inverse.superres.SRSelfEnsemble`) adds +0.16 to +0.20 dB to every probe (+3.08 dB for the recipe), at 8x the
#: inference; ``benchmarks/superres.py --self-ensemble`` reports it as its own row. The probes
#: are kept in ``benchmarks/results/superres-probe.json`` (``benchmarks/superres.py --probe``).
#: On the held-out images the chosen 10x64 recipe does not carry its validation lead over: +1.49 dB
#: (x8: +1.70 dB) against +1.59 dB for 8x48 in float32; with the six extra photographs +1.56 dB
#: (x8: +1.68 dB), and at 40 epochs +1.42 dB (x8: +1.50 dB) (``benchmarks/superres.py``'s docstring).
SR_RECIPES: dict[str, dict[str, Any]] = {
    "srcnn": {"model_kwargs": {"padding_mode": "replicate"}, "optimizer": "adam", "loss": "l2", "lr": 1e-3,
              "final_lr": 0.01, "batch_size": 16, "patch": 48, "stride": 24, "epochs": 4, "clip_theta": None,
              "zero_last": False, "last_lr": 1.0, "precision": "fp32", "channels_last": False},
    "vdsr": {"model_kwargs": {}, "optimizer": "adam", "loss": "l2", "lr": 2e-4, "final_lr": 0.01, "batch_size": 8,
             "patch": 32, "stride": 32, "epochs": 1, "clip_theta": 1e-3, "zero_last": True, "last_lr": 1.0,
             "precision": "fp32", "channels_last": False},
    "espcn": {"model_kwargs": {}, "optimizer": "adam", "loss": "l2", "lr": 1e-3, "final_lr": 0.01,
              "batch_size": 16, "patch": 48, "stride": 24, "epochs": 10, "clip_theta": None, "zero_last": False,
              "last_lr": 1.0, "precision": "fp32", "channels_last": False},
    "lapsrn": {"model_kwargs": {"depth": 10, "features": 64}, "optimizer": "adam", "loss": "charbonnier", "lr": 1e-3,
               "final_lr": 0.01, "batch_size": 16, "patch": 48, "stride": 24, "epochs": 16, "clip_theta": None,
               "zero_last": True, "last_lr": 1.0, "precision": "bf16", "channels_last": True},
    "dbpn": {"model_kwargs": {"residual": True}, "optimizer": "adam", "loss": "l1", "lr": 1e-3, "final_lr": 0.01,
             "batch_size": 16, "patch": 48, "stride": 24, "epochs": 2, "clip_theta": None, "zero_last": False,
             "last_lr": 1.0, "precision": "fp32", "channels_last": False},
}


def sr_recipe(model: str, **overrides: Any) -> dict[str, Any]:
    """A copy of ``SR_RECIPES[model]`` with ``overrides`` applied (``None`` values ignored).

    Examples
    --------
    >>> sr_recipe("espcn", lr=1e-2)["lr"]
    0.01
    """
    if model not in SR_RECIPES:
        raise ValueError(f"model must be one of {tuple(SR_RECIPES)}, got {model!r}")
    unknown = set(overrides) - set(SR_RECIPES[model])
    if unknown:
        raise ValueError(f"unknown recipe fields {sorted(unknown)}; known: {sorted(SR_RECIPES[model])}")
    recipe = {k: (dict(v) if isinstance(v, dict) else v) for k, v in SR_RECIPES[model].items()}
    recipe.update({k: v for k, v in overrides.items() if v is not None})
    return recipe


def _output_layers(model: nn.Module) -> list[nn.Module]:
    """The layer(s) writing the output: every level's residual convolution of a LapSRN, else the last convolution."""
    residual = getattr(model, "residual", None)
    if isinstance(residual, nn.ModuleList):
        return list(residual)
    return [[m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))][-1]]


def zero_last_(model: nn.Module) -> nn.Module:
    r"""Zero the layer that writes a residual network's correction, so training starts at its
    interpolation path: the last convolution (VDSR: :math:`F(y) = \uparrow_s y`; DBPN-RES: the
    bicubic image), or every level's residual convolution of a LapSRN (each level then outputs
    the bilinear upsampling of the previous one: :math:`\hat y_l = \uparrow_2 \hat y_{l-1}`).
    In place; returns ``model``.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models import create_model
    >>> net = zero_last_(create_model("lapsrn", scale=4, depth=1, features=4, seed=0))
    >>> all(float(r.weight.abs().sum()) == 0 for r in net.residual)
    True
    """
    with torch.no_grad():
        for layer in _output_layers(model):
            layer.weight.zero_()
            if layer.bias is not None:
                layer.bias.zero_()
    return model


class AdjustableGradientClip(SupervisedStep):
    r"""VDSR's adjustable gradient clipping (Kim et al. 2016) as a training step.

    Each gradient component is clipped to :math:`[-\theta/\gamma, \theta/\gamma]` with
    :math:`\gamma` the optimiser's *current* learning rate (first parameter group), so that a
    plain SGD step :math:`\gamma g` never moves a weight by more than :math:`\theta` whatever the
    schedule; this is what let VDSR train 20 layers with a learning rate of 0.1. Then the
    optional global-norm clip of ``fit(grad_clip=...)`` and ``optimizer.step()``.

    Parameters
    ----------
    loss
        ``(output, target) -> scalar``.
    theta : float
        :math:`\theta > 0`, the largest step of one weight.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Linear(1, 1, bias=False)
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.5)
    >>> step = AdjustableGradientClip(lambda out, y: (out - y).pow(2).mean(), theta=0.1)
    >>> w = net.weight.item()
    >>> _ = step(net, (torch.ones(1, 1), torch.full((1, 1), 100.0)), optimizer=opt)
    >>> round(net.weight.item() - w, 6)  # the step is theta, however large the gradient
    0.1
    """

    def __init__(self, loss: Callable[[Any, Any], torch.Tensor], *, theta: float) -> None:
        super().__init__(loss)
        if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0:
            raise ValueError(f"theta must be a number > 0, got {theta!r}")
        self.theta = float(theta)

    def __call__(self, model: nn.Module, batch: Any, *, optimizer: torch.optim.Optimizer,
                 grad_clip: float | None = None) -> torch.Tensor:
        bound = self.theta / float(optimizer.param_groups[0]["lr"])
        params = [p for g in optimizer.param_groups for p in g["params"]]
        hook_step = _ClipBeforeStep(optimizer, params, bound)
        return super().__call__(model, batch, optimizer=hook_step, grad_clip=grad_clip)


class _ClipBeforeStep:
    """The optimiser seen by :class:`SupervisedStep`: clamps every gradient, then steps."""

    def __init__(self, optimizer: torch.optim.Optimizer, params: list[torch.Tensor], bound: float) -> None:
        self.optimizer, self.params, self.bound = optimizer, params, bound
        self.param_groups = optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.grad.clamp_(-self.bound, self.bound)
        self.optimizer.step()


def _loss(name: str, model_name: str | None) -> Callable[[Any, Any], torch.Tensor]:
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {name!r}")
    if model_name == "lapsrn":  # a loss at every level of the pyramid (x2 has one level)
        return MultiScaleLoss(LOSSES[name])
    return LOSSES[name]


def train_superres(model: nn.Module, train_data: Any, val_data: Any = None, *, name: str,
                   recipe: Mapping[str, Any] | None = None, epochs: int | None = None, seed: int = 0,
                   **fit_kwargs: Any) -> Any:
    r"""Train an SR network with its recipe (:data:`SR_RECIPES`) through :func:`~mlimaging.training.fit`.

    Adam (Kingma & Ba 2015) with a learning rate annealed per optimiser step from :math:`\gamma_0` =
    ``lr`` to :math:`\gamma_0 f` (``final_lr`` = :math:`f`) by a cosine,

    .. math:: \gamma_e = \gamma_0 \Big(f + (1 - f)\,\tfrac12\big(1 + \cos(\pi t / T)\big)\Big),

    the recipe's loss (LapSRN: at every level, :class:`~mlimaging.inverse.superres.MultiScaleLoss`;
    LapSRN's ``return_all`` is switched on during training and restored after),
    and :class:`AdjustableGradientClip` when ``clip_theta`` is set; ``precision="bf16"`` is fit's
    mixed precision (forward passes under bfloat16 autocast, weights and losses float32), and
    ``channels_last`` trains in that memory format, the model put back in the default one after.

    Parameters
    ----------
    model
        The network (for instance ``create_model(name, scale=2, **recipe["model_kwargs"])``).
    train_data, val_data
        LR/HR pairs (:func:`~mlimaging.inverse.superres.sr_pairs`, ``augment=True`` for the
        training set).
    name : str
        The recipe: ``"srcnn"``, ``"vdsr"``, ``"espcn"``, ``"lapsrn"`` or ``"dbpn"``.
    recipe : mapping, optional
        The recipe to use (default ``sr_recipe(name)``).
    epochs : int, optional
        Overrides the recipe's epochs (the schedule follows).
    seed : int
        fit's seed.
    **fit_kwargs
        Passed to :func:`~mlimaging.training.fit` (``checkpoint_dir``, ``resume``, ``callbacks``,
        ``run``, ``progress``, ``device``, ``monitor``, ``grad_clip`` ...).

    Returns
    -------
    History
        fit's history.

    Examples
    --------
    >>> from mlimaging.models import create_model
    >>> from mlimaging.inverse.superres import sr_pairs
    >>> data = sr_pairs(["camera"], scale=2, patch=16, max_patches=8, augment=True)
    >>> net = create_model("espcn", scale=2, features=(8, 4), seed=0)
    >>> h = train_superres(net, data, name="espcn", epochs=2, progress=False)
    >>> len(h)
    2
    """
    from mlimaging.training import fit

    r = dict(sr_recipe(name) if recipe is None else recipe)
    n_epochs = int(r["epochs"] if epochs is None else epochs)
    if n_epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {n_epochs}")
    lr, final = float(r["lr"]), float(r["final_lr"])
    if not lr > 0 or not 0 <= final <= 1:
        raise ValueError(f"recipe lr must be > 0 and final_lr in [0, 1], got {lr} and {final}")
    loss = _loss(r["loss"], name)
    step = AdjustableGradientClip(loss, theta=r["clip_theta"]) if r.get("clip_theta") else None
    if r.get("zero_last"):
        zero_last_(model)

    batch = int(r["batch_size"])
    total = n_epochs * -(-len(train_data) // batch)  # optimiser steps (the schedule is per step)

    def schedule(opt: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.LambdaLR(opt, _Cosine(total, final))

    last_lr = float(r.get("last_lr", 1.0))
    if not last_lr > 0:
        raise ValueError(f"recipe last_lr must be > 0, got {last_lr}")
    last_ids = {id(q) for m in _output_layers(model) for q in m.parameters()}

    def groups(p: Any) -> list[Any]:  # the parameters, or two groups: the output layer's lr is lr * last_lr
        p = list(p)
        if last_lr == 1:
            return p
        rest, last = [q for q in p if id(q) not in last_ids], [q for q in p if id(q) in last_ids]
        return [{"params": rest}] + ([{"params": last, "lr": lr * last_lr}] if last else [])

    if r.get("optimizer", "adam") == "sgd":  # VDSR's: momentum 0.9, weight decay 1e-4
        def optimizer(p: Any) -> torch.optim.Optimizer:
            return torch.optim.SGD(groups(p), lr=lr, momentum=0.9, weight_decay=1e-4)
    elif r.get("optimizer", "adam") == "adam":
        def optimizer(p: Any) -> torch.optim.Optimizer:
            return torch.optim.Adam(groups(p), lr=lr)
    else:
        raise ValueError(f"recipe optimizer must be 'adam' or 'sgd', got {r['optimizer']!r}")
    precision = r.get("precision", "fp32")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"recipe precision must be 'fp32' or 'bf16', got {precision!r}")
    channels_last = bool(r.get("channels_last", False))
    fit_kwargs.setdefault("metrics", ())
    pyramid = hasattr(model, "return_all")  # LapSRN: train on every level's output, then restore
    before = getattr(model, "return_all", None)
    if pyramid:
        model.return_all = True
    if channels_last:
        model.to(memory_format=torch.channels_last)
    try:
        return fit(model, train_data, val_data, loss=loss, step=step, epochs=n_epochs, seed=seed,
                   optimizer=optimizer, scheduler=schedule, scheduler_interval="step", batch_size=batch,
                   precision=precision, **fit_kwargs)
    finally:
        if pyramid:
            model.return_all = before
        if channels_last:  # the trained weights back in the default layout (same values)
            model.to(memory_format=torch.contiguous_format)


class _Cosine:
    """Picklable ``LambdaLR`` factor: cosine from 1 to ``final`` over ``steps``."""

    def __init__(self, steps: int, final: float) -> None:
        self.steps, self.final = max(int(steps), 1), final

    def __call__(self, e: int) -> float:
        import math

        t = min(e, self.steps) / self.steps
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * t))

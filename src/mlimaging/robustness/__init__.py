r"""Adversarial robustness: attacks on the input and adversarial training.

* :func:`fgsm` (Goodfellow et al. 2015) and :func:`pgd` (Madry et al. 2018, L-inf and L2,
  restarts), the one verb :func:`attack`, and the classes :class:`FGSM` and :class:`PGD`
  holding settings. Every attack takes an explicit intensity range ``valid_range`` (CT is in
  HU, not in [0, 1]) and a budget in image units or, with ``eps_relative=True``, as a fraction
  of the range width (:mod:`mlimaging.robustness.ranges`).
* Adversarial training steps for :func:`mlimaging.training.fit`: :class:`FastAdversarialStep`
  (Wong et al. 2020) and :class:`PGDAdversarialStep` (Madry et al. 2018), or
  :func:`adversarial_step` by name.
* :func:`robust_accuracy` and :func:`attack_success_rate` over a data set and a list of budgets.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from mlimaging.robustness import fgsm
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
>>> ct = torch.full((1, 1, 2, 2), 40.0)                      # soft tissue, in HU
>>> x_adv = fgsm(model, ct, torch.tensor([1]), eps=8 / 255, valid_range=(-1024, 3071),
...              eps_relative=True)
>>> round(float((x_adv - ct).abs().max()), 2)                 # 8/255 of the 4095 HU range
128.47
"""

from __future__ import annotations

from mlimaging.robustness.adversarial_training import (
    FastAdversarialStep,
    PGDAdversarialStep,
    adversarial_step,
)
from mlimaging.robustness.attacks import FGSM, PGD, attack, fgsm, pgd
from mlimaging.robustness.evaluation import attack_success_rate, robust_accuracy
from mlimaging.robustness.ranges import Bounds, resolve_range

__all__ = [
    "FGSM",
    "PGD",
    "Bounds",
    "FastAdversarialStep",
    "PGDAdversarialStep",
    "adversarial_step",
    "attack",
    "attack_success_rate",
    "fgsm",
    "pgd",
    "resolve_range",
    "robust_accuracy",
]

"""Deep SCM case of benchmarks/generative.py: effectiveness of counterfactuals on held-out causal Morpho-MNIST.

Target (issue 16): measured thickness of do(t) counterfactuals has MAE <= 0.3 px against the target
t; their measured intensity has MAE <= 10 grey levels against the true mechanism
i' = 64 + 191 sigmoid(0.5 eps_i + 2 t' - 5) (with each sample's true eps_i). The true SCM (the
morphological mechanisms) gives the floor of the measurement. Also: do(i) (measured intensity vs i,
measured thickness vs the unchanged t) and the soundness axioms (Monteiro et al. 2023) of both models.

Every held-out sample is evaluated: ``n_outside_support`` counts samples whose intensity lies
outside the deep SCM's intensity support (they cannot be abducted and are left out; 0 at the
defaults), ``n_unmeasurable`` the blank counterfactuals that ``measure`` cannot read (left out of
the mean).

Pilots (4000 train / 300 held-out, seeds 0/1, one thread, 120 CPU s each, ~31 epochs, Adam 1e-3,
batch 64; do(t) MAE of the measured thickness in px / intensity in grey levels; "+u_x": the
counterfactual keeps the abducted decoder noise):

=====================================================  ==============  ==============
image mechanism                                        decoder mean    + u_x
=====================================================  ==============  ==============
Bernoulli (the earlier default)                        0.199 / 20.9    n/a
Gaussian, learned per-pixel sigma                      0.200 / 12.1    0.175 / 6.86
Gaussian, fixed sigma 0.05                             0.193 / 8.85    0.162 / 6.12
Gaussian, learned sigma, explicit intensity gain       0.273 / 19.6    0.292 / 10.0
Gaussian, sigma 0.05, explicit intensity gain          0.159 / 9.36    0.203 / 9.12
=====================================================  ==============  ==============

The Bernoulli mean is blurred, so the measured intensity of its counterfactuals reads low (bias
-20.6 grey levels); a Gaussian decoder is sharper, and its abducted noise u_x restores the detail
(bias -2.3). Chosen: Gaussian with learned sigma and u_x (:data:`SCM_OPTIONS`, :data:`DECODER_NOISE`);
the fixed sigma 0.05 was piloted after the final run had started: it is as good within one seed's
noise, and meets both targets even without u_x.

``scm_rows()`` returns the rows; ``python benchmarks/_scm_case.py`` runs it once and prints them.
"""

from __future__ import annotations

import time
from typing import Any

import torch

THICKNESS_MAE = 0.3
INTENSITY_MAE = 10.0
#: The deep SCM's image mechanism (DeepSCM keyword arguments) and training options, chosen by the
#: pilots in the module docstring at equal CPU budget; DECODER_NOISE: counterfactuals keep the
#: abducted decoder noise u_x (as Pawlowski et al. 2020 do), not only z.
SCM_OPTIONS: dict[str, Any] = {"likelihood": "gaussian"}
TRAIN_OPTIONS: dict[str, Any] = {"lr": 1e-3, "batch_size": 64, "beta": 1.0}
DECODER_NOISE = True


def train_deep_scm(train: dict[str, Any], *, epochs: int, seed: int = 0, cpu_seconds: float | None = None,
                   progress: bool = False, options: dict[str, Any] | None = None,
                   train_options: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """A :class:`~mlimaging.generative.scm.DeepSCM` (keyword ``options``, default :data:`SCM_OPTIONS`)
    trained through fit on a causal_mnist dict (``train_options``: lr, batch_size, beta)."""
    from torch.utils.data import TensorDataset

    from mlimaging.generative.scm import DeepSCM, SCMStep
    from mlimaging.training import fit

    callbacks = []
    if cpu_seconds is not None:
        from _common import CPUBudget

        callbacks.append(CPUBudget(cpu_seconds))
    opt = {**TRAIN_OPTIONS, **(train_options or {})}
    torch.manual_seed(seed)
    model = DeepSCM.from_data(train["thickness"], train["intensity"], **(SCM_OPTIONS if options is None else options))
    data = TensorDataset(train["images"], train["thickness"], train["intensity"])
    history = fit(model, data, step=SCMStep(seed=seed, beta=opt["beta"]), metrics=(), epochs=epochs,
                  batch_size=opt["batch_size"], seed=seed, optimizer=lambda p: torch.optim.Adam(p, lr=opt["lr"]),
                  callbacks=callbacks, progress=progress)
    return model.eval(), history


def _effects(model: Any, test: dict[str, Any], seed: int, **kw: Any) -> dict[str, float]:
    from mlimaging.generative.morphomnist import true_intensity
    from mlimaging.generative.scm import counterfactual
    from mlimaging.generative.soundness import measured_intensity, measured_thickness

    g = torch.Generator().manual_seed(seed)
    perm_t, perm_i = torch.randperm(len(test["images"]), generator=g), torch.randperm(len(test["images"]), generator=g)
    keep = torch.ones(len(test["images"]), dtype=torch.bool)
    support = getattr(model, "intensity", None)
    if isinstance(support, torch.nn.Module):  # a deep SCM abducts only intensities inside its support
        inside = (test["intensity"] > support.low) & (test["intensity"] < support.high)
        keep = inside & inside[perm_i]
    x, t = test["images"][keep], test["thickness"].double()[keep]
    t_new, i_new = test["thickness"].double()[perm_t][keep], test["intensity"].double()[perm_i][keep]
    pa = {"t": test["thickness"][keep], "i": test["intensity"][keep]}
    cf_t = counterfactual(model, x, pa, {"t": t_new.float()}, **kw)
    cf_i = counterfactual(model, x, pa, {"i": i_new.float()}, **kw)
    i_true = torch.as_tensor(true_intensity(t_new, test["eps_i"].double()[keep]), dtype=torch.float64)

    excluded = 0

    def mae(a, b):  # a blank counterfactual has no measurement (NaN): counted, left out of the mean
        nonlocal excluded
        d = (torch.as_tensor(a, dtype=torch.float64) - b).abs()
        excluded = max(excluded, int((~torch.isfinite(d)).sum()))
        return float(d[torch.isfinite(d)].mean())

    out = {"do_t_thickness_mae": mae(measured_thickness(cf_t["image"]), t_new),
            "do_t_intensity_mae": mae(measured_intensity(cf_t["image"]), i_true),
            "do_t_parent_i_mae": mae(cf_t["i"].double(), i_true),
            "do_i_intensity_mae": mae(measured_intensity(cf_i["image"]), i_new),
            "do_i_thickness_mae": mae(measured_thickness(cf_i["image"]), t)}
    out["n_unmeasurable"], out["n_outside_support"] = excluded, int((~keep).sum())
    return out


def scm_rows(*, n_train: int = 4000, n_test: int = 300, epochs: int = 200, cpu_seconds: float = 300.0,
             seed: int = 0, n_soundness: int = 100, data: tuple[dict, dict] | None = None) -> list[dict[str, Any]]:
    """Train the deep SCM within ``cpu_seconds`` of CPU time and measure it and the true SCM on
    ``n_test`` held-out samples (digits of mnist5k's test split); ``data``: already drawn
    ``(train, test)`` causal_mnist dicts (drawing them takes ~10 ms a sample)."""
    from mlimaging.generative.morphomnist import causal_mnist
    from mlimaging.generative.scm import TrueSCM
    from mlimaging.generative.soundness import composition, reversibility

    t0 = time.perf_counter()
    if data is None:
        data = (causal_mnist(n_train, seed=seed, split="train"), causal_mnist(n_test, seed=seed + 1, split="test"))
    train, test = data
    n_train, n_test = len(train["images"]), len(test["images"])
    data_seconds = time.perf_counter() - t0
    c0 = time.process_time()
    model, history = train_deep_scm(train, epochs=epochs, seed=seed, cpu_seconds=cpu_seconds)
    train_cpu = time.process_time() - c0
    small = {k: v[:n_soundness] for k, v in test.items()}
    rows = []
    for name, m in (("deep SCM (conditional VAE)", model), ("true SCM (morphological)", TrueSCM())):
        kw = {"decoder_noise": DECODER_NOISE} if m is model else {}
        row: dict[str, Any] = {"case": "deep_scm", "model": name, "n_test": n_test, **_effects(m, test, seed, **kw)}
        row["composition_l1_1"], *_, row["composition_l1_10"] = composition(m, small, m=10, **kw)["l1"]
        for p in ("t", "i"):
            row[f"reversibility_l1_{p}"] = reversibility(m, small, p, seed=seed, **kw)["l1"][0]
        if m is model:
            row.update(options={**SCM_OPTIONS, **TRAIN_OPTIONS, "decoder_noise": DECODER_NOISE}, epochs=len(history), train_cpu_seconds=round(train_cpu, 1), n_train=n_train,
                       final_loss=history["loss"][-1], data_seconds=round(data_seconds, 1))
            row["met"] = bool(row["do_t_thickness_mae"] <= THICKNESS_MAE and row["do_t_intensity_mae"] <= INTENSITY_MAE)
        rows.append(row)
    return rows


if __name__ == "__main__":
    import json
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    for r in scm_rows():
        print(json.dumps(r, indent=1))

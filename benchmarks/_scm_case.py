"""Deep SCM case of benchmarks/generative.py: effectiveness of counterfactuals on held-out causal Morpho-MNIST.

Target (issue 16): measured thickness of do(t) counterfactuals has MAE <= 0.3 px against the target
t; their measured intensity has MAE <= 10 grey levels against the true mechanism
i' = 64 + 191 sigmoid(0.5 eps_i + 2 t' - 5) (with each sample's true eps_i). The true SCM (the
morphological mechanisms) gives the floor of the measurement. Also: do(i) (measured intensity vs i,
measured thickness vs the unchanged t) and the soundness axioms (Monteiro et al. 2023) of both models.

``scm_rows()`` returns the rows; ``python benchmarks/_scm_case.py`` runs it once and prints them.
"""

from __future__ import annotations

import time
from typing import Any

import torch

THICKNESS_MAE = 0.3
INTENSITY_MAE = 10.0


def train_deep_scm(train: dict[str, Any], *, epochs: int, seed: int = 0, cpu_seconds: float | None = None,
                   progress: bool = False) -> tuple[Any, Any]:
    """A :class:`~mlimaging.generative.scm.DeepSCM` trained through fit on a causal_mnist dict."""
    from torch.utils.data import TensorDataset

    from mlimaging.generative.scm import DeepSCM, SCMStep
    from mlimaging.training import fit

    callbacks = []
    if cpu_seconds is not None:
        from _common import CPUBudget

        callbacks.append(CPUBudget(cpu_seconds))
    torch.manual_seed(seed)
    model = DeepSCM.from_data(train["thickness"], train["intensity"])
    data = TensorDataset(train["images"], train["thickness"], train["intensity"])
    history = fit(model, data, step=SCMStep(seed=seed), metrics=(), epochs=epochs, batch_size=64, seed=seed,
                  optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), callbacks=callbacks, progress=progress)
    return model.eval(), history


def _effects(model: Any, test: dict[str, Any], seed: int) -> dict[str, float]:
    from mlimaging.generative.morphomnist import true_intensity
    from mlimaging.generative.scm import counterfactual
    from mlimaging.generative.soundness import measured_intensity, measured_thickness

    x, t, i = test["images"], test["thickness"].double(), test["intensity"].double()
    g = torch.Generator().manual_seed(seed)
    t_new = t[torch.randperm(len(t), generator=g)]
    i_new = i[torch.randperm(len(i), generator=g)]
    pa = {"t": test["thickness"], "i": test["intensity"]}
    cf_t = counterfactual(model, x, pa, {"t": t_new.float()})
    cf_i = counterfactual(model, x, pa, {"i": i_new.float()})
    i_true = torch.as_tensor(true_intensity(t_new, test["eps_i"].double()), dtype=torch.float64)

    def mae(a, b):
        d = (torch.as_tensor(a, dtype=torch.float64) - b).abs()
        return float(d[torch.isfinite(d)].mean())

    return {"do_t_thickness_mae": mae(measured_thickness(cf_t["image"]), t_new),
            "do_t_intensity_mae": mae(measured_intensity(cf_t["image"]), i_true),
            "do_t_parent_i_mae": mae(cf_t["i"].double(), i_true),
            "do_i_intensity_mae": mae(measured_intensity(cf_i["image"]), i_new),
            "do_i_thickness_mae": mae(measured_thickness(cf_i["image"]), t)}


def scm_rows(*, n_train: int = 4000, n_test: int = 300, epochs: int = 40, cpu_seconds: float = 300.0,
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
        row: dict[str, Any] = {"case": "deep_scm", "model": name, "n_test": n_test, **_effects(m, test, seed)}
        row["composition_l1_1"], *_, row["composition_l1_10"] = composition(m, small, m=10)["l1"]
        for p in ("t", "i"):
            row[f"reversibility_l1_{p}"] = reversibility(m, small, p, seed=seed)["l1"][0]
        if m is model:
            row.update(epochs=len(history), train_cpu_seconds=round(train_cpu, 1), n_train=n_train,
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

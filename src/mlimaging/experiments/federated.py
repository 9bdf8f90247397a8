r"""Experiment ``federated``: FedSGD against FedAvg, non-IID clients, FedProx and secure aggregation.

Sections of the report (algorithms from :mod:`mlimaging.privacy`; local training through
:func:`mlimaging.training.fit`):

1. **Partitions**: label histograms of the IID, shards (McMahan et al. 2017's pathological
   non-IID: two label-sorted shards per client) and Dirichlet (Hsu et al. 2019,
   :math:`p_c \sim \mathrm{Dir}_K(\alpha \mathbf 1)`) splits of mnist5k.
2. **Rounds to a target accuracy** (the shape of McMahan et al.'s Table 2): FedSGD and FedAvg
   with local epochs :math:`E \in \{1, 5\}` and batch sizes :math:`B \in \{10, 50, \infty\}`
   on each partition; the first round :math:`\min\{t : a_t \ge \tau\}` whose test accuracy
   reaches the target :math:`\tau`, and the speed-up over FedSGD. FedAvg's
   :math:`u = E n_k / B` local steps per round need far fewer rounds; non-IID data slows both.
3. **FedProx on non-IID data** (Li et al. 2020): the local objective
   :math:`\ell + \frac{\mu}{2} \lVert w - w^t \rVert^2` against plain FedAvg on the skewed splits.
4. **Cost of secure aggregation**: time and bytes per round of additive secret sharing
   (:func:`mlimaging.privacy.secure_sum`) against plain averaging, same seeds.

Every number depends only on ``seed`` (timings aside).

References
----------
McMahan B., Moore E., Ramage D., Hampson S., Agüera y Arcas B. (2017). Communication-Efficient
Learning of Deep Networks from Decentralized Data. AISTATS. arXiv:1602.05629.

Hsu T.-M. H., Qi H., Brown M. (2019). Measuring the Effects of Non-Identical Data Distribution
for Federated Visual Classification. arXiv:1909.06335.

Li T., Sahu A. K., Zaheer M., Sanjabi M., Talwalkar A., Smith V. (2020). Federated Optimization
in Heterogeneous Networks. MLSys. arXiv:1812.06127.

Bonawitz K. et al. (2017). Practical Secure Aggregation for Privacy-Preserving Machine Learning.
CCS. arXiv:1611.04482.

Examples
--------
>>> from mlimaging.experiments import run_experiment
>>> run = run_experiment("federated", quick=True, seed=0, out="runs/fl")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mlimaging.experiments.registry import ExperimentConfig, experiment
from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

__all__ = ["ALGORITHMS", "FULL", "LR", "QUICK", "FederatedConfig", "load_mnist", "simulate"]

ALGORITHMS = ("fedsgd", "fedavg", "fedprox")
#: Client learning rates of plain SGD (no momentum, as McMahan et al.): FedSGD takes one full-batch
#: gradient step per round and tolerates a large rate; FedAvg and FedProx take many small-batch steps.
LR = {"fedsgd": 0.3, "fedavg": 0.2, "fedprox": 0.2}

#: Quick mode: 700 training and 200 test digits, 10 clients, C = 0.3, a reduced grid (<= 30 s on 2 cores).
QUICK: dict[str, Any] = {
    "n_train": 700, "n_test": 200, "clients": 10, "fraction": 0.3, "rounds": 6, "fedsgd_rounds": 6,
    "target": 0.6, "grid": ((1, 10), (5, 10)), "schemes": ("iid", "shards"), "secure_rounds": 2,
}
#: Full mode: all 3,500 training and 1,000 test digits, 50 clients of 70 digits (so B = 50 is not a full
#: batch), C = 0.2 (10 clients and 20% of the data per round), E x B of McMahan et al.'s Table 2 (FedAvg
#: with E = 1, B = inf is FedSGD, its first row). Runs stop at the target; the caps bound the rest.
#: Seed 0 (18 min on a shared 2-core machine, one torch thread): to 95%, FedSGD 189 / 282 / 173 rounds
#: (IID / shards / Dirichlet), FedAvg E=5 B=10 20 / 49 / 20 (9.4x / 5.8x / 8.7x fewer); E=1 B=50 stops at
#: 94.4% / 89.9% / 94.0% within 100 rounds; FedProx (mu 0.1) 57 and 27 rounds against FedAvg's 49 and 20.
FULL: dict[str, Any] = {
    "n_train": None, "n_test": None, "clients": 50, "fraction": 0.2, "rounds": 100, "fedsgd_rounds": 500,
    "target": 0.95, "grid": ((5, "all"), (1, 50), (5, 50), (1, 10), (5, 10)),
    "schemes": ("iid", "shards", "dirichlet"), "secure_rounds": 5,
}


@dataclass
class FederatedConfig(ExperimentConfig):
    """Settings of the ``federated`` experiment; ``None`` takes the quick/full value (:data:`QUICK`, :data:`FULL`).

    Attributes
    ----------
    n_train, n_test
        mnist5k training and test digits (stratified subsets; None: all 3,500 / 1,000).
    clients, fraction
        :math:`K` clients and the fraction :math:`C` sampled per round.
    rounds, fedsgd_rounds
        Round caps of FedAvg/FedProx and of FedSGD.
    target
        Test accuracy :math:`\\tau` whose first round is reported.
    grid
        ``(E, B)`` pairs of FedAvg; ``B = "all"`` is the client's full batch.
    schemes
        Partitions compared (``"iid"``, ``"shards"``, ``"dirichlet"``).
    secure_rounds
        Rounds timed with and without secure aggregation.
    alpha, mu
        Dirichlet concentration and FedProx's proximal weight.
    """

    n_train: int | None = None
    n_test: int | None = None
    clients: int | None = None
    fraction: float | None = None
    rounds: int | None = None
    fedsgd_rounds: int | None = None
    target: float | None = None
    grid: tuple | None = None
    schemes: tuple[str, ...] | None = None
    secure_rounds: int | None = None
    alpha: float = 0.5
    mu: float = 0.1


def _resolve(cfg: FederatedConfig) -> dict[str, Any]:
    base = QUICK if cfg.quick else FULL
    p = {k: getattr(cfg, k) if getattr(cfg, k) is not None else v for k, v in base.items()}
    for key in ("clients", "rounds", "fedsgd_rounds", "secure_rounds"):
        if isinstance(p[key], bool) or not isinstance(p[key], int) or p[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {p[key]!r}")
    if not 0 < p["fraction"] <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {p['fraction']!r}")
    if not 0 < p["target"] <= 1:
        raise ValueError(f"target must be an accuracy in (0, 1], got {p['target']!r}")
    bad = [s for s in p["schemes"] if s not in ("iid", "shards", "dirichlet")]
    if bad or not p["schemes"]:
        raise ValueError(f"schemes must be among 'iid', 'shards', 'dirichlet', got {p['schemes']!r}")
    if not cfg.alpha > 0 or not cfg.mu >= 0:
        raise ValueError(f"alpha must be > 0 and mu >= 0, got alpha={cfg.alpha!r}, mu={cfg.mu!r}")
    return p


# ------------------------------------------------------------------------------------ shared helpers
def load_mnist(*, n_train: int | None = None, n_test: int | None = None, seed: int = 0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mnist5k's training and test digits ``(N, 1, 28, 28)`` in [0, 1] and labels, optionally as
    stratified subsets of ``n_train`` and ``n_test`` digits (seeded).

    Examples
    --------
    >>> xtr, ytr, xte, yte = load_mnist(n_train=100, n_test=50)
    >>> tuple(xtr.shape), len(yte)
    ((100, 1, 28, 28), 50)
    """
    from mlimaging.experiments.classification import class_subset, load_images

    out = []
    for split, limit in (("train", n_train), ("test", n_test)):
        x, y, _ = load_images("mnist5k", split, seed=seed, image_size=28)
        if limit is not None and limit < len(y):
            idx = class_subset(y, total=limit, seed=seed)
            x, y = x[idx], y[idx]
        out += [x, y]
    return out[0], out[1], out[2], out[3]


def simulate(algorithm: str, train: tuple[torch.Tensor, torch.Tensor], parts: list[list[int]], *, rounds: int,
             fraction: float, local_epochs: int = 1, batch_size: int | str = 10, lr: float | None = None,
             mu: float = 0.1, secure: bool = False, test: Any = None, seed: int = 0, model: str = "lenet",
             progress: bool = False, checkpoint_dir: Any = None, resume: bool = False,
             stop_at: float | None = None) -> Any:
    r"""One federated run of a fresh, seeded registry ``model`` (default LeNet) on ``train`` split by ``parts``.

    ``"fedsgd"`` is :func:`~mlimaging.privacy.fedsgd` (one full-batch gradient per client,
    :math:`w^{t+1} = w^t - \eta \sum_k \frac{n_k}{n} g_k`); ``"fedavg"`` is
    :func:`~mlimaging.privacy.fedavg` with :math:`E` = ``local_epochs`` and :math:`B` =
    ``batch_size``; ``"fedprox"`` adds the proximal term :math:`\frac{\mu}{2}\lVert w - w^t\rVert^2`
    (Li et al. 2020). ``lr`` defaults to :data:`LR`. ``checkpoint_dir``, ``resume`` and ``stop_at``
    (stop at the first round whose test accuracy reaches it) are those of :func:`~mlimaging.privacy.fedavg`. Shared by the experiment, ``mlimaging fl simulate`` and the
    benchmark (McMahan et al. 2017).

    Returns
    -------
    FLHistory

    Examples
    --------
    >>> from mlimaging.privacy import partition
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(60, 2, generator=g); y = (x[:, 0] > 0).long()
    >>> h = simulate("fedavg", (x, y), partition((x, y), num_clients=3), rounds=2, fraction=1.0,
    ...              lr=0.5, test=(x, y), model="logistic_regression_2")
    >>> len(h), h.accuracy[-1] > 0.8
    (2, True)
    """
    from mlimaging.privacy import fedavg, fedsgd

    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    net = _make_model(model, seed)
    lr = LR[algorithm] if lr is None else lr
    common = dict(rounds=rounds, fraction=fraction, lr=lr, test_data=test, seed=seed, secure=secure, progress=progress,
                  checkpoint_dir=checkpoint_dir, resume=resume, stop_at=stop_at)
    if algorithm == "fedsgd":
        return fedsgd(net, train, parts, **common)
    return fedavg(net, train, parts, local_epochs=local_epochs, batch_size=batch_size,
                  proximal_mu=mu if algorithm == "fedprox" else 0.0, **common)


def _make_model(name: str, seed: int) -> torch.nn.Module:
    if name == "logistic_regression_2":  # a 2-feature linear classifier for examples and tests
        torch.manual_seed(seed)
        return torch.nn.Linear(2, 2)
    from mlimaging.models import create_model

    return create_model(name, num_classes=10, seed=seed)


def _label(e: int, b: Any) -> str:
    return f"FedAvg E={e} B={'inf' if b in (None, 'all') else b}"


# ------------------------------------------------------------------------------------ sections
def _partition_section(cfg: FederatedConfig, p: dict[str, Any], run: Run, ytr: torch.Tensor) -> dict[str, list]:
    from mlimaging.privacy import partition, partition_summary, plot_partition

    run.section("1. Partitions", f"{len(ytr)} mnist5k training digits split among K = {p['clients']} clients. "
                "IID: a seeded shuffle. Shards (McMahan et al. 2017): sort by label, cut into 2K shards, two "
                f"per client. Dirichlet (Hsu et al. 2019): class proportions drawn from Dir(alpha = {cfg.alpha:g}).")
    parts, rows = {}, []
    schemes = ("iid", "shards", "dirichlet")
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for scheme, ax in zip(schemes, axes, strict=True):
        parts[scheme] = partition((ytr, ytr), num_clients=p["clients"], scheme=scheme, alpha=cfg.alpha, seed=cfg.seed)
        h = partition_summary((ytr, ytr), parts[scheme])
        plot_partition(h[:min(len(h), 20)], ax=ax, title=scheme)
        if ax is not axes[-1] and ax.get_legend() is not None:
            ax.get_legend().remove()
        labels = (h > 0).sum(1)
        rows.append({"scheme": scheme, "clients": len(h), "min samples": int(h.sum(1).min()),
                     "max samples": int(h.sum(1).max()), "mean labels per client": float(labels.mean()),
                     "max labels per client": int(labels.max())})
    fig.tight_layout()
    run.figure(fig, "partitions", caption="Label histogram per client (first 20 clients shown), one colour per digit.")
    run.table("Partitions", rows, caption="Samples and distinct labels per client.")
    return parts


def _rounds_section(cfg: FederatedConfig, p: dict[str, Any], run: Run, data: tuple, parts: dict[str, list]
                    ) -> dict[str, dict[str, Any]]:
    from mlimaging.privacy import rounds_to_accuracy

    xtr, ytr, xte, yte = data
    m = max(1, int(round(p["fraction"] * p["clients"])))
    run.section("2. Rounds to reach the target accuracy", f"LeNet, K = {p['clients']} clients, C = {p['fraction']:g} "
                f"({m} clients per round), target test accuracy {p['target']:g} on {len(yte)} test digits. FedSGD "
                f"(lr {LR['fedsgd']:g}, at most {p['fedsgd_rounds']} rounds) against FedAvg (SGD lr {LR['fedavg']:g}, "
                f"at most {p['rounds']} rounds); each run stops at the first round that reaches the target; '-' = not "
                "reached within the cap. FedAvg with E = 1, B = inf is FedSGD (one full-batch gradient per client, "
                "averaged; the same weights, tested), so FedSGD is that row. McMahan et al. (2017), Table 2: "
                "more local computation (larger E, smaller B) needs far fewer rounds; non-IID data slows both.")
    n_k = len(ytr) / p["clients"]
    same = [b for _, b in p["grid"] if b not in (None, "all") and b >= n_k]
    if same:
        run.text(f"With {len(ytr)} digits over {p['clients']} clients an IID or shards client holds about {n_k:.0f} "
                 f"digits, so B = {', '.join(str(b) for b in sorted(set(same)))} is one full batch per epoch there: "
                 "the same run as B = inf (only Dirichlet's larger clients tell them apart).")
    runs = [("FedSGD", "fedsgd", 1, "all", p["fedsgd_rounds"])] + \
           [(_label(e, b), "fedavg", e, b, p["rounds"]) for e, b in p["grid"]]
    histories: dict[str, dict[str, Any]] = {s: {} for s in p["schemes"]}
    rows = []
    for name, algo, e, b, cap in run.track(runs, "configurations"):
        row: dict[str, Any] = {"algorithm": name, "u (local steps)": _steps(e, b, n_k)}
        for scheme in p["schemes"]:
            h = simulate(algo, (xtr, ytr), parts[scheme], rounds=cap, fraction=p["fraction"], local_epochs=e,
                         batch_size=b, test=(xte, yte), seed=cfg.seed, stop_at=p["target"])
            histories[scheme][name] = h
            r = rounds_to_accuracy(h, p["target"])
            row[f"{scheme} rounds"] = r if r is not None else "-"
            row[f"{scheme} best acc"] = max(h.accuracy)
        rows.append(row)
    base = {s: rounds_to_accuracy(histories[s]["FedSGD"], p["target"]) for s in p["schemes"]}
    for row in rows:
        for s in p["schemes"]:
            r = row[f"{s} rounds"]
            row[f"{s} speed-up"] = (f"{base[s] / r:.1f}x" if base[s] and r != "-" else
                                    f">{p['fedsgd_rounds'] / r:.1f}x" if r != "-" and not base[s] else "-")
    run.table("Rounds to target accuracy", rows, caption=f"Target {p['target']:g}; speed-up = FedSGD's rounds / "
              "the algorithm's ('>' when FedSGD never reached the target: a lower bound from its cap); best acc = the "
              "highest test accuracy of the run (at or above the target when it stopped there).")
    fig, axes = plt.subplots(1, len(p["schemes"]), figsize=(4.6 * len(p["schemes"]), 3.4), squeeze=False)
    for scheme, ax in zip(p["schemes"], axes[0], strict=True):
        for name, h in histories[scheme].items():
            ax.plot(h.round, h.accuracy, label=name, lw=1.2)
        ax.axhline(p["target"], color="grey", ls=":", lw=1)
        ax.set(xlabel="round", ylabel="test accuracy", title=scheme, ylim=(0, 1), xscale="log")
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    run.figure(fig, "accuracy-vs-round", caption="Test accuracy of the global model after each round (log rounds); "
               "a curve ends where its run reached the target.")
    run.log(rounds_to_target={s: {n: rounds_to_accuracy(h, p["target"]) for n, h in hs.items()}
                              for s, hs in histories.items()})
    return histories


def _steps(e: int, b: Any, n_k: float) -> float:
    r"""Local SGD steps per round of a client holding ``n_k`` digits: :math:`u = E \lceil n_k / B \rceil`
    (McMahan et al.'s :math:`u = E n_k / B` counted in whole batches; a batch at least as large as the
    client's data is one full batch, as with :math:`B = \infty`).

    >>> _steps(5, 10, 35.0), _steps(1, 50, 35.0), _steps(5, "all", 35.0)
    (20.0, 1.0, 5.0)
    """
    return float(e) if b in (None, "all") else float(e * math.ceil(n_k / b))


def _fedprox_section(cfg: FederatedConfig, p: dict[str, Any], run: Run, data: tuple, parts: dict[str, list],
                     histories: dict[str, dict[str, Any]]) -> None:
    from mlimaging.privacy import rounds_to_accuracy

    xtr, ytr, xte, yte = data
    e, b = p["grid"][-1]
    skewed = [s for s in ("shards", "dirichlet") if s in p["schemes"]] or ["shards"]
    run.section("3. FedProx on non-IID data", f"FedAvg against FedProx (mu = {cfg.mu:g}, Li et al. 2020) with E = {e}, "
                f"B = {b} on the non-IID splits: the proximal term keeps each client's weights near the global ones, "
                "limiting client drift.")
    rows = []
    fig, ax = plt.subplots(figsize=(5.4, 3.4))
    for scheme in skewed:
        plain = histories.get(scheme, {}).get(_label(e, b))
        if plain is None:
            plain = simulate("fedavg", (xtr, ytr), parts[scheme], rounds=p["rounds"], fraction=p["fraction"],
                             local_epochs=e, batch_size=b, test=(xte, yte), seed=cfg.seed, stop_at=p["target"])
        prox = simulate("fedprox", (xtr, ytr), parts[scheme], rounds=p["rounds"], fraction=p["fraction"],
                        local_epochs=e, batch_size=b, mu=cfg.mu, test=(xte, yte), seed=cfg.seed, stop_at=p["target"])
        for name, h, style in (("FedAvg", plain, "-"), (f"FedProx mu={cfg.mu:g}", prox, "--")):
            r = rounds_to_accuracy(h, p["target"])
            rows.append({"scheme": scheme, "algorithm": name, "rounds to target": r if r is not None else "-",
                         "rounds run": len(h), "best accuracy": max(h.accuracy),
                         "accuracy std (last half)": float(np.std(h.accuracy[len(h) // 2:]))})
            ax.plot(h.round, h.accuracy, style, lw=1.2, label=f"{name} ({scheme})")
    ax.axhline(p["target"], color="grey", ls=":", lw=1)
    ax.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title="FedAvg vs FedProx, non-IID")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    run.figure(fig, "fedprox", caption="Test accuracy per round on the non-IID splits.")
    run.table("FedProx against FedAvg", rows, caption=f"Target {p['target']:g}; each run stops at the target or "
              "after the round cap; std over the last half of the rounds run (oscillation from client drift).")


def _secure_section(cfg: FederatedConfig, p: dict[str, Any], run: Run, data: tuple, parts: dict[str, list]) -> None:
    xtr, ytr, _, _ = data
    e, b = p["grid"][0]
    run.section("4. Cost of secure aggregation", f"{p['secure_rounds']} FedAvg rounds (E = {e}, B = {b}, "
                f"C = {p['fraction']:g}) with plain weighted averaging and with additive secret sharing over the "
                "ring Z_2^64 (Bonawitz et al. 2017's setting: the server learns only the sum), alternating, same "
                "seeds. Round time = local training + aggregation.")
    times: dict[str, list[dict[str, float]]] = {"plain": [], "secure": []}
    weights = {}
    for order in (("plain", "secure"), ("secure", "plain")):
        for mode in order:
            h = simulate("fedavg", (xtr, ytr), parts["iid"], rounds=p["secure_rounds"], fraction=p["fraction"],
                         local_epochs=e, batch_size=b, secure=mode == "secure", seed=cfg.seed)
            times[mode].append({"round": float(np.mean(h.seconds)), "agg": float(np.mean(h.aggregate_seconds)),
                                "bytes": float(np.mean(h.bytes))})
            weights[mode] = h
    rows = []
    for mode, ts in times.items():
        rows.append({"aggregation": mode, "round s": float(np.median([t["round"] for t in ts])),
                     "aggregation s": float(np.median([t["agg"] for t in ts])),
                     "bytes per round": int(ts[0]["bytes"]), "MB per round": ts[0]["bytes"] / 1e6})
    ratio = rows[1]["round s"] / rows[0]["round s"]
    run.table("Secure against plain aggregation", rows, caption=f"Medians over 2 alternating repeats; secure/plain "
              f"round time {ratio:.2f}x, bytes {rows[1]['bytes per round'] / rows[0]['bytes per round']:.1f}x.")
    run.log(secure_round_ratio=ratio, secure_bytes_ratio=rows[1]["bytes per round"] / rows[0]["bytes per round"])


@experiment("federated", config=FederatedConfig)
def federated_experiment(cfg: FederatedConfig, run: Run) -> None:
    """FedSGD vs FedAvg rounds to a target on IID and non-IID mnist5k; FedProx; secure aggregation cost."""
    p = _resolve(cfg)
    run.log(settings={k: (list(v) if isinstance(v, tuple) else v) for k, v in p.items()},
            torch_threads=torch.get_num_threads())
    data = load_mnist(n_train=p["n_train"], n_test=p["n_test"], seed=cfg.seed)
    run.log(n_train=len(data[1]), n_test=len(data[3]))
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    parts = _partition_section(cfg, p, run, data[1])
    seconds["partitions"], t0 = time.perf_counter() - t0, time.perf_counter()
    histories = _rounds_section(cfg, p, run, data, parts)
    seconds["rounds to target"], t0 = time.perf_counter() - t0, time.perf_counter()
    _fedprox_section(cfg, p, run, data, parts, histories)
    seconds["fedprox"], t0 = time.perf_counter() - t0, time.perf_counter()
    _secure_section(cfg, p, run, data, parts)
    seconds["secure aggregation"] = time.perf_counter() - t0
    run.log(section_seconds=seconds)

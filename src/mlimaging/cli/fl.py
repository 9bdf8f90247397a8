r"""``mlimaging fl ...``: federated learning from the command line.

``fl simulate`` partitions a dataset among ``--clients`` simulated clients (IID, McMahan et al.
2017's label shards, or Dirichlet label skew), trains a fresh LeNet with FedSGD, FedAvg or
FedProx (:mod:`mlimaging.privacy`; optionally with secure aggregation) and writes a run folder::

    OUT/config.json, metrics.json, report.html
    OUT/history.json                      the per-round record (FLHistory) and the settings
    OUT/tables/history.csv                round, accuracy, loss, train_loss, clients, seconds, bytes
    OUT/tables/partition.csv              label histogram per client
    OUT/figures/accuracy-vs-round.png     test accuracy per round (with --target as a line)
    OUT/figures/partition.png             the clients' label histograms

A deployment on Flower (``fl deploy``) registers on the same :data:`fl_app` from its own module.

Examples
--------
``mlimaging fl simulate --clients 10 --scheme shards --algorithm fedavg --rounds 50 --out runs/fl``
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from mlimaging.cli._run_folder import check_positive, open_run, prepare_out
from mlimaging.cli.app import app, command, console, err_console

__all__ = ["fl_app", "parse_batch_size", "simulate_cmd"]

fl_app = typer.Typer(help="Federated learning: simulate FedSGD, FedAvg and FedProx over partitioned clients.",
                     no_args_is_help=True)
app.add_typer(fl_app, name="fl")

SCHEMES = ("iid", "shards", "dirichlet")
DATASETS = ("mnist5k", "digits")


def parse_batch_size(text: str) -> int | str:
    """``--batch-size``: a positive integer, or ``all`` for each client's full batch.

    Examples
    --------
    >>> parse_batch_size("10"), parse_batch_size("ALL")
    (10, 'all')
    """
    t = str(text).strip().lower()
    if t in ("all", "inf"):
        return "all"
    try:
        b = int(t)
    except ValueError:
        raise ValueError(f"--batch-size must be a positive integer or 'all', got {text!r}") from None
    if b < 1:
        raise ValueError(f"--batch-size must be a positive integer or 'all', got {text!r}")
    return b


def _command(s: dict[str, Any], out: Path) -> str:
    parts = ["mlimaging", "fl", "simulate", "--dataset", s["dataset"], "--clients", str(s["clients"]), "--scheme",
             s["scheme"], "--algorithm", s["algorithm"], "--rounds", str(s["rounds"]), "--fraction", str(s["fraction"]),
             "--local-epochs", str(s["local_epochs"]), "--batch-size", str(s["batch_size"]), "--lr", str(s["lr"]),
             "--seed", str(s["seed"])]
    if s["algorithm"] == "fedprox":
        parts += ["--mu", str(s["mu"])]
    if s["scheme"] == "dirichlet":
        parts += ["--alpha", str(s["alpha"])]
    if s["target"] is not None:
        parts += ["--target", str(s["target"])]
    if s["secure"]:
        parts.append("--secure")
    return " ".join(parts + ["--out", str(out)])


@command("simulate", typer_app=fl_app)
def simulate_cmd(
    ctx: typer.Context,  # tells the options given on the command line from defaults (for --resume)
    out: Path = typer.Option(..., "--out", help="Run folder (report, history, figures)."),
    clients: int = typer.Option(10, "--clients", help="Number of simulated clients K."),
    scheme: str = typer.Option("iid", "--scheme", help="Partition: iid, shards (2 label shards per client) or "
                               "dirichlet (label skew)."),
    algorithm: str = typer.Option("fedavg", "--algorithm", help="fedavg, fedsgd or fedprox."),
    rounds: int = typer.Option(50, "--rounds", help="Communication rounds."),
    fraction: float = typer.Option(0.1, "--fraction", help="Fraction C of the clients sampled per round, in (0, 1]."),
    local_epochs: int = typer.Option(5, "--local-epochs", help="Local epochs E of fedavg/fedprox (fedsgd: 1)."),
    batch_size: str = typer.Option("10", "--batch-size", help="Local batch size B of fedavg/fedprox, or 'all' "
                                   "(fedsgd: all)."),
    lr: float | None = typer.Option(None, "--lr", help="Client SGD learning rate (default: 0.3 fedsgd, 0.2 fedavg "
                                    "and fedprox)."),
    mu: float = typer.Option(0.1, "--mu", help="FedProx proximal weight mu (fedprox only)."),
    alpha: float = typer.Option(0.5, "--alpha", help="Dirichlet concentration (--scheme dirichlet)."),
    secure: bool = typer.Option(False, "--secure", help="Aggregate by additive secret sharing (the server sees only "
                                "the sum)."),
    target: float | None = typer.Option(None, "--target", help="Report the first round whose test accuracy reaches "
                                        "this value in (0, 1]."),
    dataset: str = typer.Option("mnist5k", "--dataset", help="mnist5k or digits."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, partition, initialisation and client sampling."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out after its last finished round, "
                                "up to --rounds (a checkpoint is written after every round)."),
) -> None:
    """Simulate federated training (FedSGD, FedAvg, FedProx) over partitioned clients; report in --out."""
    from rich.table import Table

    from mlimaging.experiments.federated import ALGORITHMS, LR, simulate
    from mlimaging.privacy import partition, partition_summary, plot_partition, rounds_to_accuracy
    from mlimaging.reporting.figures import plt

    if algorithm not in ALGORITHMS:
        raise ValueError(f"--algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"--scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")
    check_positive(clients, "--clients", integer=True)
    check_positive(rounds, "--rounds", integer=True)
    check_positive(local_epochs, "--local-epochs", integer=True)
    check_positive(lr, "--lr")
    check_positive(alpha, "--alpha")
    if not (math.isfinite(fraction) and 0 < fraction <= 1):
        raise ValueError(f"--fraction must be in (0, 1], got {fraction}")
    if not (math.isfinite(mu) and mu >= 0):
        raise ValueError(f"--mu must be a finite number >= 0, got {mu}")
    if target is not None and not (math.isfinite(target) and 0 < target <= 1):
        raise ValueError(f"--target must be an accuracy in (0, 1], got {target}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    b = parse_batch_size(batch_size)
    if algorithm == "fedsgd":
        local_epochs, b = 1, "all"
    stored, clear = prepare_out(out, resume=resume, force=force, command="fl simulate")
    if stored is not None:  # the run's own settings; --rounds may extend it
        # by name: typer may carry its own copy of click, whose ParameterSource is another enum
        given = {k for k in ctx.params if getattr(ctx.get_parameter_source(k), "name", "") == "COMMANDLINE"}
        now = {"dataset": dataset, "clients": clients, "scheme": scheme, "algorithm": algorithm, "fraction": fraction,
               "local_epochs": local_epochs, "batch_size": b, "lr": lr, "mu": mu, "alpha": alpha, "secure": secure,
               "target": target, "seed": seed}
        changed = [f"--{k.replace('_', '-')} {now[k]} (the run used {stored.get(k)})" for k in sorted(given & set(now))
                   if now[k] != stored.get(k)]
        if changed:
            raise ValueError("--resume continues the run with its own settings; these differ: " + "; ".join(changed))
        dataset, clients, scheme, algorithm = stored["dataset"], stored["clients"], stored["scheme"], stored["algorithm"]
        fraction, local_epochs, b, lr = stored["fraction"], stored["local_epochs"], stored["batch_size"], stored["lr"]
        mu, alpha, secure, target, seed = stored["mu"], stored["alpha"], stored["secure"], stored["target"], stored["seed"]

    xtr, ytr, xte, yte = _load(dataset, seed)
    if clients > len(ytr):
        raise ValueError(f"--clients {clients} exceeds the {len(ytr)} training images of {dataset}")
    parts = partition((xtr, ytr), num_clients=clients, scheme=scheme, alpha=alpha, seed=seed)
    s = {"dataset": dataset, "clients": clients, "scheme": scheme, "algorithm": algorithm, "rounds": rounds,
         "fraction": fraction, "local_epochs": local_epochs, "batch_size": b, "lr": LR[algorithm] if lr is None else lr,
         "mu": mu, "alpha": alpha, "secure": secure, "target": target, "seed": seed, "model": "lenet"}
    run = open_run(out, "fl-simulate", s, stored=stored, clear=clear, command=_command(s, out), console=err_console)
    try:
        h = simulate(algorithm, (xtr, ytr), parts, rounds=rounds, fraction=fraction, local_epochs=local_epochs,
                     batch_size=b, lr=s["lr"], mu=mu, secure=secure, test=(xte, yte), seed=seed, progress=True,
                     checkpoint_dir=out / "checkpoints", resume=stored is not None)
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(f"interrupted: continue with `{_command(s, out)} --resume` (a checkpoint per round in "
                          f"{out / 'checkpoints'})", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    reached = rounds_to_accuracy(h, target) if target is not None else None
    summary = partition_summary((xtr, ytr), parts)
    run.log(final_accuracy=h.accuracy[-1], best_accuracy=max(h.accuracy), final_loss=h.loss[-1],
            rounds_to_target=reached, mean_round_seconds=sum(h.seconds) / len(h),
            mean_aggregate_seconds=sum(h.aggregate_seconds) / len(h), bytes_per_round=h.bytes[0],
            total_bytes=sum(h.bytes), n_train=len(ytr), n_test=len(yte))
    (out / "history.json").write_text(json.dumps({"settings": s, "history": h.to_rows(),
                                                  "clients": h.clients}, indent=1))
    m = max(1, int(round(fraction * clients)))
    run.section("Federated simulation", f"{algorithm} on {dataset} ({len(ytr)} training, {len(yte)} test images), "
                f"K = {clients} clients ({scheme} partition), {m} per round (C = {fraction:g}), E = {local_epochs}, "
                f"B = {b}, SGD lr {s['lr']:g}{f', mu {mu:g}' if algorithm == 'fedprox' else ''}, "
                f"{'secure' if secure else 'plain'} aggregation, seed {seed}. Final test accuracy "
                f"{h.accuracy[-1]:.4f}" + (f"; target {target:g} reached in round {reached}." if reached else
                                           f"; target {target:g} not reached." if target else "."))
    run.table("History", h.to_rows(), caption="Per round: test accuracy and loss of the global model, clients' "
              "training loss, wall seconds (aggregation part) and bytes communicated.")
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(h.round, h.accuracy, "o-", ms=3, label=algorithm)
    if target is not None:
        ax.axhline(target, color="grey", ls=":", label=f"target {target:g}")
    ax.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title=f"{algorithm}, {scheme}, K = {clients}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    run.figure(fig, "accuracy-vs-round", caption="Test accuracy of the global model after each round.")
    run.figure(plot_partition(summary[:50], title=f"{scheme} partition"), "partition",
               caption="Label histogram per client (first 50 clients).")
    run.table("Partition", [{"client": k, **{f"label {c}": int(v) for c, v in enumerate(row)}}
                            for k, row in enumerate(summary)], caption="Samples of each label per client.")
    report = run.finish()
    table = Table("algorithm", "scheme", "clients", "rounds", "accuracy", "rounds to target", "s/round", "MB/round",
                  title="fl simulate")
    table.add_row(algorithm, scheme, str(clients), str(len(h)), f"{h.accuracy[-1]:.4f}",
                  "-" if reached is None else str(reached), f"{sum(h.seconds) / len(h):.2f}", f"{h.bytes[0] / 1e6:.2f}")
    console.print(table)
    console.print(f"report: {report}", soft_wrap=True)


def _load(dataset: str, seed: int) -> tuple[Any, Any, Any, Any]:
    if dataset == "mnist5k":
        from mlimaging.experiments.federated import load_mnist

        return load_mnist(seed=seed)
    from mlimaging.experiments.classification import load_images

    xtr, ytr, _ = load_images(dataset, "train", seed=seed, image_size=8)
    xte, yte, _ = load_images(dataset, "test", seed=seed, image_size=8)
    return xtr, ytr, xte, yte

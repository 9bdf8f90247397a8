r"""``mlimaging fl deploy``: FedAvg on a real Flower deployment on this machine.

Starts a SuperLink and one SuperNode per client as separate processes on 127.0.0.1, runs the
app with Flower's runner (:func:`mlimaging.privacy.flower.deploy`), stops every process it
started, and writes a run folder::

    OUT/config.json, metrics.json, report.html
    OUT/history.json                      the per-round record and the clients of each round
    OUT/model.pt                          the final global weights
    OUT/tables/history.csv, OUT/figures/accuracy-vs-round.png
    OUT/logs/*.log, OUT/app/, OUT/flwr-home/   Flower's logs, the app it ran, its home folder

Needs Flower: ``pip install "mlimaging[fl]"``.

Examples
--------
``mlimaging fl deploy --clients 4 --rounds 5 --out runs/fl-deploy``
"""

from __future__ import annotations

import math
import shutil
import signal
from pathlib import Path

import typer

from mlimaging.cli._run_folder import RUN_ENTRIES, check_positive, prepare_out
from mlimaging.cli.app import command, console, err_console
from mlimaging.cli.fl import SCHEMES, fl_app, parse_batch_size

__all__ = ["deploy_cmd"]

#: What ``fl deploy`` writes besides a run folder's usual entries (``--force`` deletes only these).
DEPLOY_ENTRIES = frozenset({"history.json", "round.json", "round.tmp", "history.tmp", "processes.json", "logs",
                            "app", "flwr-home", "timing.json", "timing.tmp", "processes.tmp", "rounds"})


def _fail(message: str, code: int) -> None:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@command("deploy", typer_app=fl_app)
def deploy_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (report, history, Flower logs)."),
    clients: int = typer.Option(4, "--clients", help="Number of SuperNodes (one mnist5k partition each)."),
    rounds: int = typer.Option(5, "--rounds", help="Communication rounds."),
    scheme: str = typer.Option("iid", "--scheme", help="Partition: iid, shards or dirichlet."),
    local_epochs: int = typer.Option(1, "--local-epochs", help="Local epochs E."),
    batch_size: str = typer.Option("10", "--batch-size", help="Local batch size B, or 'all'."),
    lr: float = typer.Option(0.05, "--lr", help="Client SGD learning rate."),
    mu: float = typer.Option(0.0, "--mu", help="FedProx proximal weight mu (0: FedAvg)."),
    round_timeout: float = typer.Option(120.0, "--round-timeout", help="Seconds the server waits for a round's "
                                        "replies (a client that died is left out)."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Seconds the whole run may take."),
    seed: int = typer.Option(0, "--seed", help="Seed of the initial model, the partition and the clients."),
    secure: bool = typer.Option(False, "--secure", help="Aggregate with Flower's SecAgg+ (needs --clients >= 3)."),
    parallel: int = typer.Option(-1, "--parallel", help="At most this many clients train at once (-1: the CPU "
                                 "cores less one, at least 1; 0: no limit)."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
) -> None:
    """Deploy FedAvg on Flower (SuperLink + one SuperNode per client on 127.0.0.1); report in --out."""
    from rich.table import Table

    from mlimaging.privacy.flower import deploy
    from mlimaging.reporting import Run
    from mlimaging.reporting.figures import plt

    if scheme not in SCHEMES:
        raise ValueError(f"--scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    check_positive(clients, "--clients", integer=True)
    check_positive(rounds, "--rounds", integer=True)
    check_positive(local_epochs, "--local-epochs", integer=True)
    check_positive(lr, "--lr")
    check_positive(round_timeout, "--round-timeout")
    check_positive(timeout, "--timeout")
    if not (math.isfinite(mu) and mu >= 0):
        raise ValueError(f"--mu must be a finite number >= 0, got {mu}")
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if parallel < -1:
        raise ValueError(f"--parallel must be -1 (the cores less one), 0 (no limit) or a number of clients, got {parallel}")
    if secure and clients < 3:
        raise ValueError(f"--secure needs --clients >= 3 (with 2, the sum reveals the other's update), got {clients}")
    b = parse_batch_size(batch_size)
    try:
        import flwr  # noqa: F401
    except ImportError:
        _fail('fl deploy needs Flower, which is not installed: pip install "mlimaging[fl]"', 2)
    _, clear = prepare_out(out, resume=False, force=force, command="fl deploy", entries=RUN_ENTRIES | DEPLOY_ENTRIES,
                           resumable=False)
    if clear:
        shutil.rmtree(out)
    s = {"clients": clients, "rounds": rounds, "scheme": scheme, "local_epochs": local_epochs, "batch_size": b,
         "lr": lr, "mu": mu, "round_timeout": round_timeout, "seed": seed, "secure": secure, "parallel": parallel,
         "model": "lenet", "dataset": "mnist5k"}
    cmd = (f"mlimaging fl deploy --clients {clients} --rounds {rounds} --scheme {scheme} --local-epochs "
           f"{local_epochs} --batch-size {b} --lr {lr} --mu {mu} --seed {seed}{' --secure' if secure else ''} --parallel "
           f"{parallel} --out {out}")
    run = Run.create("fl-deploy", s, path=out, command=cmd, console=err_console)
    try:
        h = deploy(clients=clients, rounds=rounds, out=out, seed=seed, lr=lr, local_epochs=local_epochs,
                   batch_size=b, proximal_mu=mu, scheme=scheme, round_timeout=round_timeout, timeout=timeout,
                   secure=secure, parallel=None if parallel == -1 else parallel)
    except (KeyboardInterrupt, SystemExit) as e:  # Ctrl-C, or deploy's SIGTERM handler (kill PID); all stopped
        sigterm = isinstance(e, SystemExit)
        if sigterm and e.code != 128 + signal.SIGTERM:
            raise
        run.finish(error="terminated (SIGTERM)" if sigterm else "interrupted")
        err_console.print(f"{'terminated' if sigterm else 'interrupted'}; every Flower process was stopped; "
                          f"partial run folder {out}", highlight=False, soft_wrap=True)
        raise typer.Exit(128 + signal.SIGTERM if sigterm else 130) from None
    except (RuntimeError, TimeoutError, ImportError) as e:  # the deployment failed; its processes are stopped
        run.finish(error=str(e))
        _fail(str(e), 1)
    run.log(final_accuracy=h.accuracy[-1], best_accuracy=max(h.accuracy), final_loss=h.loss[-1],
            mean_round_seconds=sum(h.seconds) / len(h), total_seconds=sum(h.seconds))
    run.section("Flower deployment", f"FedAvg{f' (FedProx, mu {mu:g})' if mu > 0 else ''} on mnist5k as a Flower "
                f"deployment: one SuperLink and {clients} SuperNodes on 127.0.0.1 ({scheme} partition), E = "
                f"{local_epochs}, B = {b}, SGD lr {lr:g}, seed {seed}"
                f"{'; aggregation by Flower SecAgg+ (the server sees only the sum)' if secure else ''}. "
                f"Final test accuracy {h.accuracy[-1]:.4f}.")
    run.table("History", h.to_rows(), caption="Per round: test accuracy and loss of the global model, clients' "
              "training loss, clients that replied, wall seconds and bytes sent and received.")
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    ax.plot(h.round, h.accuracy, "o-", ms=3, label="Flower FedAvg")
    ax.set(xlabel="round", ylabel="test accuracy", ylim=(0, 1), title=f"Flower deployment, K = {clients}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    run.figure(fig, "accuracy-vs-round", caption="Test accuracy of the global model after each round.")
    report = run.finish()
    table = Table("clients", "rounds", "accuracy", "s/round", title="fl deploy")
    table.add_row(str(clients), str(len(h)), f"{h.accuracy[-1]:.4f}", f"{sum(h.seconds) / len(h):.2f}")
    console.print(table)
    console.print(f"report: {report}", soft_wrap=True)

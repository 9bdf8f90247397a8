r"""``mlimaging privacy ...``: the privacy budget of DP-SGD from the command line.

``privacy epsilon`` answers the two questions asked before a private training run, with the
accountants of :mod:`mlimaging.privacy.accounting`:

* given the noise multiplier :math:`\sigma` (``--sigma``), the sample rate :math:`q`
  (``--sample-rate``, or ``--batch-size`` over ``--dataset-size``), the number of steps
  :math:`T` (``--steps``, or ``--epochs`` of :math:`\lceil 1/q \rceil` steps) and
  :math:`\delta`: the :math:`\varepsilon` spent (:func:`~mlimaging.privacy.accounting.epsilon`);
* given a target ``--epsilon`` instead of ``--sigma``: the smallest :math:`\sigma` that spends
  at most that (:func:`~mlimaging.privacy.accounting.noise_multiplier_for`, by bisection).

``--accountant rdp`` (default; Mironov 2017, equal to Opacus's RDP accountant) or ``prv``
(Gopi, Lee and Wutschitz 2021: tighter, an upper bound within ``eps_error = 0.01``).

Examples
--------
``mlimaging privacy epsilon --sample-rate 0.01 --sigma 1.1 --steps 10000 --delta 1e-5``
(Abadi et al.'s MNIST setting: :math:`\varepsilon \approx 5.63`) and
``mlimaging privacy epsilon --batch-size 256 --dataset-size 60000 --epochs 10 --epsilon 3``.
"""

from __future__ import annotations

import math

import typer

from mlimaging.cli.app import app, command, console, err_console

__all__ = ["epsilon_cmd", "privacy_app"]

privacy_app = typer.Typer(help="Differential privacy: the budget (epsilon) of DP-SGD, or the noise for a budget.",
                          no_args_is_help=True)
app.add_typer(privacy_app, name="privacy")

ACCOUNTANTS = ("rdp", "prv")


def _sample_rate(sample_rate: float | None, batch_size: int | None, dataset_size: int | None) -> float:
    if sample_rate is not None:
        if batch_size is not None or dataset_size is not None:
            raise ValueError("give --sample-rate, or --batch-size with --dataset-size, not both")
        if not (math.isfinite(sample_rate) and 0 < sample_rate <= 1):
            raise ValueError(f"--sample-rate must be in (0, 1], got {sample_rate}")
        return float(sample_rate)
    if batch_size is None or dataset_size is None:
        raise ValueError("give --sample-rate Q, or --batch-size B with --dataset-size N (then Q = B / N)")
    if batch_size < 1 or dataset_size < 1:
        raise ValueError(f"--batch-size and --dataset-size must be positive integers, got {batch_size} and {dataset_size}")
    if batch_size > dataset_size:
        raise ValueError(f"--batch-size {batch_size} must be at most --dataset-size {dataset_size}")
    return batch_size / dataset_size


def _steps(steps: int | None, epochs: float | None, q: float) -> int:
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of --steps T and --epochs E (E epochs of ceil(1 / sample rate) steps)")
    if steps is not None:
        if steps < 0:
            raise ValueError(f"--steps must be >= 0, got {steps}")
        return int(steps)
    if not (math.isfinite(epochs) and epochs > 0):
        raise ValueError(f"--epochs must be a positive number, got {epochs}")
    return int(round(epochs * math.ceil(1 / q)))


@command("epsilon", typer_app=privacy_app)
def epsilon_cmd(
    sample_rate: float | None = typer.Option(None, "--sample-rate", help="Poisson sampling rate q in (0, 1]: "
                                             "expected batch size over dataset size."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Expected batch size B (with --dataset-size; "
                                          "q = B / N)."),
    dataset_size: int | None = typer.Option(None, "--dataset-size", help="Training set size N (with --batch-size)."),
    steps: int | None = typer.Option(None, "--steps", help="Number of noisy steps T."),
    epochs: float | None = typer.Option(None, "--epochs", help="Instead of --steps: epochs of ceil(1 / q) steps."),
    sigma: float | None = typer.Option(None, "--sigma", help="Noise multiplier sigma (noise std / clipping norm): "
                                       "prints the epsilon spent."),
    target_epsilon: float | None = typer.Option(None, "--epsilon", help="Instead of --sigma: the budget; prints the "
                                                "smallest sigma that spends at most it."),
    delta: float = typer.Option(1e-5, "--delta", help="delta of the (epsilon, delta) guarantee; below 1 / N."),
    accountant: str = typer.Option("rdp", "--accountant", help="rdp (Renyi DP, as Opacus's default) or prv "
                                   "(privacy loss random variables, tighter)."),
) -> None:
    """Epsilon spent by DP-SGD (--sigma), or the noise multiplier for a target epsilon (--epsilon)."""
    from mlimaging.privacy.accounting import epsilon, noise_multiplier_for

    if accountant not in ACCOUNTANTS:
        raise ValueError(f"--accountant must be one of {', '.join(ACCOUNTANTS)}, got {accountant!r}")
    if (sigma is None) == (target_epsilon is None):
        raise ValueError("give exactly one of --sigma S (prints epsilon) and --epsilon E (prints sigma)")
    if not (math.isfinite(delta) and 0 < delta < 1):
        raise ValueError(f"--delta must be in (0, 1), got {delta}")
    q = _sample_rate(sample_rate, batch_size, dataset_size)
    t = _steps(steps, epochs, q)
    if dataset_size is not None and delta >= 1 / dataset_size:
        err_console.print(f"[yellow]warning:[/] --delta {delta:g} is not below 1 / N = {1 / dataset_size:.3g}: such a "
                          "guarantee allows publishing some training records in full; choose delta well below "
                          "1 / N", highlight=False, soft_wrap=True)
    where = f"sample rate {q:.6g}, {t} steps, delta {delta:g}, {accountant.upper()} accountant"
    if sigma is not None:
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"--sigma must be a positive number, got {sigma}")
        with err_console.status("accounting", spinner="dots"):
            eps = epsilon(noise_multiplier=sigma, sample_rate=q, steps=t, delta=delta, accountant=accountant)
        console.print(f"epsilon = {eps:.6g}  (sigma {sigma:g}, {where})", highlight=False, soft_wrap=True)
        return
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"--epsilon must be a positive number, got {target_epsilon}")
    if t < 1:
        raise ValueError("--epsilon needs at least one step (--steps >= 1)")
    with err_console.status("searching the noise multiplier", spinner="dots"):
        s = noise_multiplier_for(target_epsilon, delta, q, t, accountant=accountant)
        spent = epsilon(noise_multiplier=s, sample_rate=q, steps=t, delta=delta, accountant=accountant)
    console.print(f"sigma = {s:.6g}  (spends epsilon {spent:.6g} <= {target_epsilon:g}; {where})", highlight=False,
                  soft_wrap=True)

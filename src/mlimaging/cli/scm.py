"""``mlimaging train scm`` and ``mlimaging counterfactual``: the deep structural causal model of
causal Morpho-MNIST and its counterfactual images.

``train scm`` draws the synthetic data of Pawlowski et al. (2020) with
:func:`~mlimaging.generative.morphomnist.causal_mnist` (digits of mnist5k's train split for
training, of its test split for validation), trains a :class:`~mlimaging.generative.scm.DeepSCM`
with :func:`mlimaging.training.fit` and :class:`~mlimaging.generative.scm.SCMStep`, and writes a
run folder::

    OUT/config.json, metrics.json, report.html, figures/, tables/
    OUT/checkpoints/last.pt, best.pt      fit's checkpoints (resume from last.pt)
    OUT/model.pt                          the best epoch's weights + {"scm": the model's config}

``model.pt`` loads with ``torch.load(weights_only=True)``; ``DeepSCM(**ckpt["scm"]["config"])``
rebuilds the model. ``counterfactual`` reads one 28 x 28 grey image, takes its observed parents
(``--t``, ``--i``, or measured by :func:`~mlimaging.generative.morphomnist.measure`), and writes the
counterfactual under ``--do`` and a side-by-side figure.

Examples
--------
``mlimaging train scm --epochs 20 --out runs/scm`` then
``mlimaging counterfactual --checkpoint runs/scm/model.pt digit.png --do t=3.0 --out cf.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._run_folder import (
    ExportBest,
    check_device,
    check_positive,
    open_run,
    prepare_out,
    read_checkpoint,
    resolve_settings,
)
from mlimaging.cli.app import command, console, err_console
from mlimaging.cli.train import train_app

if TYPE_CHECKING:  # torch is imported inside the commands: `mlimaging --help` stays fast
    from mlimaging.generative.scm import DeepSCM

__all__ = ["counterfactual_cmd", "load_scm", "parse_do", "train_scm_cmd"]

RUN_NAME = "scm"
DEFAULTS: dict[str, Any] = {"n_train": 4000, "n_val": 500, "lr": 1e-3, "batch_size": 64, "seed": 0, "latent_dim": 16,
                            "likelihood": "gaussian"}


def _command(s: dict[str, Any], epochs: int, out: Path) -> str:
    return (f"mlimaging train scm --epochs {epochs} --n-train {s['n_train']} --n-val {s['n_val']} --lr {s['lr']} "
            f"--batch-size {s['batch_size']} --seed {s['seed']} --latent-dim {s['latent_dim']} "
            f"--likelihood {s['likelihood']} --out {out}")


def load_scm(path: Path) -> tuple[DeepSCM, dict[str, Any]]:
    """The :class:`~mlimaging.generative.scm.DeepSCM` of a ``model.pt`` written by ``train scm`` (eval mode)."""
    from mlimaging.generative.scm import DeepSCM

    ckpt = read_checkpoint(path, "`mlimaging train scm`")
    meta = ckpt.get("scm")
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) or "model" not in ckpt:
        raise ValueError(f"--checkpoint {path} is not a model written by `mlimaging train scm` (no 'scm' metadata); "
                         "use OUT/model.pt of a train scm run")
    model = DeepSCM(**meta["config"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"--checkpoint {path}: the weights do not fit the deep SCM: {str(exc).splitlines()[0]}") from None
    return model.eval(), meta


@command("scm", typer_app=train_app)
def train_scm_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, model.pt, report)."),
    epochs: int = typer.Option(20, "--epochs", help="Total epochs (a resumed run continues up to this number)."),
    n_train: int | None = typer.Option(None, "--n-train", help="Training samples of causal Morpho-MNIST (default "
                                       "4000; drawing them takes about 10 ms each)."),
    n_val: int | None = typer.Option(None, "--n-val", help="Validation samples, from mnist5k's test digits "
                                     "(default 500)."),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate (default 0.001)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Samples per step (default 64)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the data, initialisation, batch order and "
                                    "latent draws (default 0)."),
    latent_dim: int | None = typer.Option(None, "--latent-dim", help="Size of the VAE's latent z (default 16)."),
    likelihood: str | None = typer.Option(None, "--likelihood", help="gaussian (default: sharper images; "
                                          "counterfactuals keep the image's abducted noise) or bernoulli."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
) -> None:
    """Train the deep SCM of causal Morpho-MNIST (t -> i, (t, i) -> image); checkpoints, model.pt and a report."""
    import torch
    from rich.table import Table
    from torch.utils.data import TensorDataset

    from mlimaging.generative.morphomnist import causal_mnist
    from mlimaging.generative.scm import DeepSCM, SCMStep
    from mlimaging.training import fit, load_checkpoint

    check_positive(epochs, "--epochs", integer=True)
    for value, option in ((n_train, "--n-train"), (n_val, "--n-val"), (batch_size, "--batch-size"),
                          (latent_dim, "--latent-dim")):
        check_positive(value, option, integer=True)
    check_positive(lr, "--lr")
    if seed is not None and seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if likelihood is not None and likelihood not in ("bernoulli", "gaussian"):
        raise ValueError(f"--likelihood must be bernoulli or gaussian, got {likelihood!r}")
    check_device(device)
    stored, clear = prepare_out(out, resume=resume, force=force, command="train scm")
    given = {"n_train": n_train, "n_val": n_val, "lr": lr, "batch_size": batch_size, "seed": seed,
             "latent_dim": latent_dim, "likelihood": likelihood}
    s = resolve_settings(given, stored, DEFAULTS)
    err_console.print(f"drawing {s['n_train']} + {s['n_val']} causal Morpho-MNIST samples ...", highlight=False)
    train = causal_mnist(s["n_train"], seed=s["seed"], split="train")
    val = causal_mnist(s["n_val"], seed=s["seed"] + 1, split="test")
    torch.manual_seed(s["seed"])
    model = DeepSCM.from_data(train["thickness"], train["intensity"], latent_dim=s["latent_dim"],
                              likelihood=s["likelihood"])
    meta = {"config": model.config, "data": "causal_mnist", "n_train": s["n_train"], "seed": s["seed"]}
    run = open_run(out, RUN_NAME, {**s, "meta": meta}, stored=stored, clear=clear, command=_command(s, epochs, out),
                   console=err_console)
    keys = ("images", "thickness", "intensity")
    try:
        history = fit(model, TensorDataset(*(train[k] for k in keys)), TensorDataset(*(val[k] for k in keys)),
                      step=SCMStep(seed=s["seed"]), optimizer=lambda p: torch.optim.Adam(p, lr=s["lr"]), epochs=epochs,
                      batch_size=s["batch_size"], seed=s["seed"], metrics=(), checkpoint_dir=out / "checkpoints",
                      resume=stored is not None, run=run, monitor="val_loss",
                      callbacks=[ExportBest(out / "model.pt", "scm", meta)], device=device)
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(f"interrupted: continue with `{_command(s, epochs, out)} --resume` (checkpoints in {out})",
                          soft_wrap=True, highlight=False)
        raise typer.Exit(130) from None
    model.load_state_dict(load_checkpoint(out / "model.pt")["model"])
    model.cpu().eval()
    run.log(best_epoch=history.best_epoch, best_val_loss=history.best_value, final_loss=history["loss"][-1])
    run.section("Training", f"Deep SCM on causal Morpho-MNIST ({s['n_train']} training, {s['n_val']} validation "
                f"samples), conditional VAE with {s['latent_dim']} latents and a {s['likelihood']} likelihood, Adam lr "
                f"{s['lr']}, batch {s['batch_size']}, seed {s['seed']}.")
    run.table("History", [{k: e.get(k) for k in ("epoch", "loss", "nll_t", "nll_i", "rec", "kl", "val_loss")}
                          for e in history.epochs], caption="Negative log-likelihood terms per epoch (nats per sample).")
    _figures(run, model, val)
    report = run.finish()
    table = Table("epochs", "best epoch", "val loss", "nll t", "nll i", "rec", "kl", title="train scm")
    last = history.epochs[-1]
    table.add_row(str(len(history)), str(history.best_epoch), f"{history.best_value:.2f}", f"{last['nll_t']:.3f}",
                  f"{last['nll_i']:.3f}", f"{last['rec']:.1f}", f"{last['kl']:.1f}")
    console.print(table)
    console.print(f"model: {out / 'model.pt'}\nreport: {report}\nnext: mlimaging counterfactual --checkpoint "
                  f"{out / 'model.pt'} IMAGE --do t=3.0 --out cf.png", soft_wrap=True)


def _figures(run: Any, model: Any, val: dict[str, Any]) -> None:
    """A counterfactual grid: rows of validation images under do(t) and do(i)."""
    import torch

    from mlimaging.generative.scm import counterfactual
    from mlimaging.reporting.figures import plt

    k = min(4, len(val["images"]))
    x, pa = val["images"][:k], {"t": val["thickness"][:k], "i": val["intensity"][:k]}
    low, high = float(model.intensity.low), float(model.intensity.high)
    columns = [("observed", None)] + [(f"do(t={t:g})", {"t": t}) for t in (1.5, 2.5, 3.5)] + \
        [(f"do(i={i:g})", {"i": i}) for i in (max(low + 1, 80.0), min(high - 1, 220.0))]
    fig, axes = plt.subplots(k, len(columns), figsize=(1.3 * len(columns), 1.3 * k), squeeze=False)
    for c, (title, do) in enumerate(columns):
        imgs = x if do is None else counterfactual(model, x, pa, do)["image"]
        for r in range(k):
            axes[r, c].imshow(torch.as_tensor(imgs[r, 0]).numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
        axes[0, c].set_title(title, fontsize=8)
    fig.tight_layout()
    run.figure(fig, "counterfactuals", caption="Validation images (first column) and their counterfactuals under "
               "interventions on thickness (intensity follows through its mechanism) and on intensity.")


def parse_do(items: list[str]) -> dict[str, float]:
    """``["t=3.0", "i=200"]`` -> ``{"t": 3.0, "i": 200.0}`` (``ValueError`` naming ``--do``)."""
    import math

    from mlimaging.generative.scm import PARENTS

    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = {"thickness": "t", "intensity": "i"}.get(name.strip(), name.strip())
        if not sep or name not in PARENTS:
            raise ValueError(f"--do must be PARENT=VALUE with PARENT t (thickness) or i (intensity), got {item!r}")
        try:
            v = float(value)
        except ValueError:
            raise ValueError(f"--do {item!r}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise ValueError(f"--do {item!r}: the value must be finite")
        if name in out:
            raise ValueError(f"--do sets {name} twice")
        out[name] = v
    if not out:
        raise ValueError("--do is required: at least one intervention such as --do t=3.0")
    return out


@command("counterfactual")
def counterfactual_cmd(
    image: Path = typer.Argument(..., help="A 28 x 28 grey image (PNG, NIfTI, .npy ...), digit bright on dark."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt written by `mlimaging train scm`."),
    do: list[str] = typer.Option([], "--do", help="Intervention PARENT=VALUE: t=3.0 (thickness, px) or i=200 "
                                 "(intensity, grey levels); repeat for both."),
    t: float | None = typer.Option(None, "--t", help="Observed thickness of IMAGE (default: measured)."),
    i: float | None = typer.Option(None, "--i", help="Observed intensity of IMAGE in grey levels (default: measured)."),
    out: Path = typer.Option(..., "--out", help="Counterfactual image to write (its side-by-side figure goes next "
                             "to it as OUT_figure.png)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
) -> None:
    """Counterfactual of a digit image under do(t) / do(i) by abduction, action and prediction."""
    import numpy as np
    import torch
    from rich.table import Table

    from mlimaging.cli._images import check_format_fits, read_gray, write_output
    from mlimaging.data.preprocessing import has_light_background
    from mlimaging.generative.morphomnist import measure
    from mlimaging.generative.scm import counterfactual

    interventions = parse_do(do)
    for value, option in ((t, "--t"), (i, "--i")):
        if value is not None and not (np.isfinite(value) and value > 0):
            raise ValueError(f"{option} must be a finite positive number, got {value}")
    figure = out.with_name(out.name.split(".")[0] + "_figure.png")
    for path in (out, figure):
        if path.exists() and not force:
            raise FileExistsError(f"--out: {path} already exists; pass --force to overwrite it")
    check_format_fits(out, "--out", 2)
    model, _ = load_scm(checkpoint)
    array, geometry = read_gray(image, "IMAGE")
    size = model.image.image_size
    if array.shape != (size, size):
        raise ValueError(f"IMAGE {image} must be {size} x {size} (the model's image size), got shape {array.shape}")
    a = array.astype(np.float64)
    scale = 255.0 if (array.dtype == np.uint8 or a.max() > 1.0) else 1.0
    if a.min() < 0 or a.max() > scale:
        raise ValueError(f"IMAGE {image} must hold values in [0, 1] or [0, 255], got [{a.min():g}, {a.max():g}]")
    x = torch.as_tensor(a / scale, dtype=torch.float32)[None, None]
    if has_light_background(x[0]):  # the measured t and i would be the background's
        err_console.print(f"[yellow]warning:[/] {image} looks like a dark digit on a light background; the SCM models "
                          "light strokes on black (Morpho-MNIST): invert the image first", highlight=False,
                          soft_wrap=True)
    measured = measure(x.numpy()[0, 0], max_value=1.0)
    t_obs = float(np.asarray(measured["thickness"]).reshape(-1)[0]) if t is None else t
    i_obs = float(np.asarray(measured["intensity"]).reshape(-1)[0]) if i is None else i
    if not np.isfinite(t_obs) or not np.isfinite(i_obs):
        raise ValueError(f"IMAGE {image}: no stroke to measure (blank image); give --t and --i")
    low, high = float(model.intensity.low), float(model.intensity.high)
    if i is not None and not low < i < high:  # the library named it parents["i"]
        raise ValueError(f"--i {i:g} lies outside the model's intensity support ({low:.1f}, {high:.1f})")
    if i is None and not low < i_obs < high:
        clipped = min(max(i_obs, low + 0.5), high - 0.5)
        err_console.print(f"[yellow]warning:[/] measured intensity {i_obs:.1f} lies outside the model's support "
                          f"({low:.1f}, {high:.1f}); using {clipped:.1f}", highlight=False)
        i_obs = clipped
    # the thickness flow has no support: far outside training, abduction and the decoder extrapolate
    log_mean, log_sd = float(model.config["log_t_mean"]), float(model.config["log_t_std"])
    t_low, t_high = np.exp(log_mean - 4 * log_sd), np.exp(log_mean + 4 * log_sd)
    trained = (f"lies outside the thicknesses the model was trained on (about {t_low:.2f} to {t_high:.2f} px, log t "
               "within 4 sd of its training mean): the counterfactual is an extrapolation")
    if not t_low <= t_obs <= t_high:
        err_console.print(f"[yellow]warning:[/] the observed thickness {t_obs:.2f} ({'--t' if t is not None else 'measured'})"
                          f" {trained}", highlight=False, soft_wrap=True)
    if "t" in interventions and interventions["t"] > 0 and not t_low <= interventions["t"] <= t_high:  # t <= 0: refused
        err_console.print(f"[yellow]warning:[/] do(t={interventions['t']:g}) {trained}", highlight=False,
                          soft_wrap=True)
    cf = counterfactual(model, x, {"t": t_obs, "i": i_obs}, interventions)
    result = cf["image"][0, 0].numpy().astype(np.float32)
    write_output(out, np.round(result * 255).astype(np.uint8) if out.suffix.lower() in (".png", ".jpg", ".jpeg",
                                                                                       ".bmp", ".tif", ".tiff")
                 else result, geometry)
    after = measure(result[None], max_value=1.0)
    _side_by_side(figure, x[0, 0].numpy(), result, (t_obs, i_obs), (float(cf["t"][0]), float(cf["i"][0])),
                  interventions)
    table = Table("", "t (thickness, px)", "i (intensity)", title=f"counterfactual of {image.name}")
    table.add_row("observed", f"{t_obs:.2f}", f"{i_obs:.1f}")
    table.add_row("counterfactual (model)", f"{float(cf['t'][0]):.2f}", f"{float(cf['i'][0]):.1f}")
    table.add_row("counterfactual (measured)", f"{float(np.asarray(after['thickness']).reshape(-1)[0]):.2f}",
                  f"{float(np.asarray(after['intensity']).reshape(-1)[0]):.1f}")
    console.print(table)
    console.print(f"counterfactual: {out}\nfigure: {figure}", soft_wrap=True)


def _side_by_side(path: Path, before: Any, after: Any, pa: tuple[float, float], pa_cf: tuple[float, float],
                  do: dict[str, float]) -> None:
    from mlimaging.reporting.figures import plt

    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.8))
    axes[0].imshow(before, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"observed\nt={pa[0]:.2f}, i={pa[1]:.0f}", fontsize=9)
    axes[1].imshow(after, cmap="gray", vmin=0, vmax=1)
    what = ", ".join(f"{k}={v:g}" for k, v in do.items())
    axes[1].set_title(f"do({what})\nt={pa_cf[0]:.2f}, i={pa_cf[1]:.0f}", fontsize=9)
    diff = axes[2].imshow(after - before, cmap="RdBu_r", vmin=-1, vmax=1)
    axes[2].set_title("difference", fontsize=9)
    fig.colorbar(diff, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)

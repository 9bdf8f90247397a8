"""``mlimaging train gan`` and ``mlimaging sample``: train a DCGAN, then draw images from it.

``train gan`` trains :class:`~mlimaging.generative.gan.DCGANGenerator` against
:class:`~mlimaging.generative.gan.DCGANDiscriminator` with :func:`mlimaging.training.fit` and
:class:`~mlimaging.generative.gan.GANStep` into a run folder::

    OUT/config.json, metrics.json, report.html, tables/
    OUT/figures/samples_epoch_001.png ...   a grid of samples per epoch, fixed seeded z
    OUT/figures/losses.png, samples.png     loss curves, D outputs; the last samples
    OUT/checkpoints/last.pt                 fit's checkpoint (the step holds D and its optimiser)
    OUT/model.pt                            generator + discriminator after the last epoch
                                            (with --ema: the generator is the weights' moving average)

``model.pt`` holds ``{"generator": state_dict, "discriminator": state_dict, "gan": meta,
"epoch": ...}`` (``meta``: latent size, image size and channels, widths, classes, loss, data
set); it loads with ``torch.load(weights_only=True)``. ``--resume`` continues from
``checkpoints/last.pt`` exactly. On ``mnist5k`` the run ends with the FID of 500 samples in the
features of our digit classifier (:func:`~mlimaging.generative.quality.mnist_feature_extractor`),
beside the real-vs-real and noise baselines (:func:`~mlimaging.generative.quality.fid_baselines`).

``sample`` rebuilds the generator from ``model.pt`` and writes a grid of ``--n`` samples.

Examples
--------
``mlimaging train gan --dataset mnist5k --epochs 20 --out runs/gan`` then
``mlimaging sample --checkpoint runs/gan/model.pt --n 64 --out grid.png --seed 1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._run_folder import (
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
    from torch import nn

__all__ = ["gan_images", "load_generator", "sample_cmd", "train_gan_cmd"]

RUN_NAME = "gan"
LOSSES = ("minimax", "non_saturating", "hinge", "wgan_gp")
DEFAULTS: dict[str, Any] = {"dataset": "mnist5k", "root": None, "size": None, "loss": "non_saturating",
                            "conditional": False, "n_critic": None, "latent_dim": 100, "width": 64, "lr": None,
                            "batch_size": 64, "seed": 0, "ema": None}
#: Adam as DCGAN (lr 2e-4, beta1 0.5) and as WGAN-GP (lr 1e-4, betas (0, 0.9), 5 critic steps per G step).
ADAM = {"wgan_gp": (1e-4, (0.0, 0.9))}
FID_SAMPLES = 1000  # real test images (two halves of 500) and 500 samples


def gan_images(dataset: str, split: str, *, root: str | None, seed: int, size: int | None) -> tuple[Any, Any]:
    """Images in [0, 1] and labels of a split at a DCGAN size: ``size``, or as stored when that is a
    multiple of 4 in [28, 64], or 28 for smaller images (8 x 8 digits)."""
    from mlimaging.cli.pretrain import load_images

    x, y = load_images(dataset, split, root=root, seed=seed, size=size)
    if size is None and x.shape[-1] < 28:
        x, y = load_images(dataset, split, root=root, seed=seed, size=28)
    s = int(x.shape[-1])
    if not (28 <= s <= 64 and s % 4 == 0):
        raise ValueError(f"--dataset {dataset}: images are {s} x {s}; DCGAN takes 28-64 px in steps of 4, pass --size")
    return x, y


def _networks(meta: dict[str, Any]) -> tuple[nn.Module, nn.Module]:
    from mlimaging.generative.gan import DCGANDiscriminator, DCGANGenerator

    common = {"image_size": meta["image_size"], "channels": meta["channels"], "width": meta["width"],
              "num_classes": meta["num_classes"]}
    return (DCGANGenerator(latent_dim=meta["latent_dim"], **common),
            DCGANDiscriminator(norm=meta["norm"], **common))


def load_generator(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The generator saved in a ``model.pt`` of ``mlimaging train gan`` (eval mode) and its metadata."""
    ckpt = read_checkpoint(path, "`mlimaging train gan`")
    meta = ckpt.get("gan")
    if not isinstance(meta, dict) or "generator" not in ckpt:
        raise ValueError(f"--checkpoint {path} is not a GAN written by `mlimaging train gan` (no 'gan' metadata); "
                         "use OUT/model.pt of a train gan run")
    generator, _ = _networks(meta)
    try:
        generator.load_state_dict(ckpt["generator"])
    except RuntimeError as exc:
        raise ValueError(f"--checkpoint {path}: the weights do not fit the generator: {str(exc).splitlines()[0]}") from None
    return generator.eval(), {**meta, "epoch": ckpt.get("epoch")}


class ExportGAN:
    """fit callback: write ``model.pt`` (generator, discriminator, metadata) after every epoch (rank 0)."""

    def __init__(self, path: Path, meta: dict[str, Any], step: Any) -> None:
        self.path, self.meta, self.step = path, meta, step

    def on_epoch_end(self, state: Any) -> None:
        from mlimaging.training import save_checkpoint

        if state.rank == 0:
            g = getattr(state.model, "module", state.model)
            cpu = lambda m: {k: v.detach().cpu() for k, v in m.state_dict().items()}  # noqa: E731
            ema = self.step.ema_generator
            weights = {"generator": cpu(g)} if ema is None else {"generator": cpu(ema), "generator_last": cpu(g)}
            save_checkpoint({**weights, "discriminator": cpu(self.step.discriminator), "gan": self.meta,
                             "epoch": state.epoch, "g_loss": state.logs.get("g_loss"),
                             "d_loss": state.logs.get("d_loss")}, self.path)


def _command(s: dict[str, Any], epochs: int, out: Path) -> str:
    parts = ["mlimaging", "train", "gan", "--dataset", s["dataset"], "--epochs", str(epochs), "--loss", s["loss"],
             "--n-critic", str(s["n_critic"]), "--latent-dim", str(s["latent_dim"]), "--width", str(s["width"]),
             "--lr", str(s["lr"]), "--batch-size", str(s["batch_size"]), "--seed", str(s["seed"]), "--out", str(out)]
    for key in ("root", "size"):
        if s[key]:
            parts += [f"--{key}", str(s[key])]
    if s["conditional"]:
        parts.append("--conditional")
    if s["ema"]:
        parts += ["--ema", str(s["ema"])]
    return " ".join(parts)


# ------------------------------------------------------------------------------ commands
@command("gan", typer_app=train_app)
def train_gan_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, model.pt, sample grids, report)."),
    dataset: str | None = typer.Option(None, "--dataset", help="mnist5k, digits or image-folder (default: mnist5k)."),
    root: str | None = typer.Option(None, "--root", help="Folder of --dataset image-folder (one subfolder per class)."),
    size: int | None = typer.Option(None, "--size", help="Resize images to SIZE x SIZE, 28-64 in steps of 4 (default: "
                                    "as stored; 28 for smaller images)."),
    epochs: int = typer.Option(20, "--epochs", help="Total epochs (a resumed run continues up to this number)."),
    loss: str | None = typer.Option(None, "--loss", help="minimax, non_saturating, hinge or wgan_gp (default: "
                                    "non_saturating)."),
    conditional: bool | None = typer.Option(None, "--conditional/--unconditional", help="Condition G and D on the "
                                            "class label (default: unconditional)."),
    n_critic: int | None = typer.Option(None, "--n-critic", help="Discriminator steps per generator step (default: 1; "
                                        "5 for wgan_gp)."),
    latent_dim: int | None = typer.Option(None, "--latent-dim", help="Size of z (default: 100)."),
    width: int | None = typer.Option(None, "--width", help="Channels of the last hidden layer of G and first of D "
                                     "(default: 64)."),
    lr: float | None = typer.Option(None, "--lr", help="Adam learning rate of both networks (default: 2e-4; 1e-4 "
                                    "for wgan_gp)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Real images per step (default: 64)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the split, initialisation, batch order and z "
                                    "(default: 0)."),
    ema: float | None = typer.Option(None, "--ema", help="Also keep an exponential moving average of the generator's "
                                     "weights with this decay (e.g. 0.999); model.pt's generator is then the average "
                                     "(generator_last: the last weights). Default: none."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
) -> None:
    """Train a DCGAN (optionally class-conditional); sample grids per epoch, model.pt and a report in --out."""
    import torch
    from rich.table import Table
    from torch.utils.data import TensorDataset

    from mlimaging.generative.gan import GANStep, SampleGrid
    from mlimaging.training import fit

    if loss is not None and loss not in LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    for value, option in ((epochs, "--epochs"), (n_critic, "--n-critic"), (latent_dim, "--latent-dim"),
                          (width, "--width"), (batch_size, "--batch-size"), (size, "--size")):
        check_positive(value, option, integer=True)
    check_positive(lr, "--lr")
    if ema is not None and not 0.0 < ema < 1.0:
        raise ValueError(f"--ema must be a decay in (0, 1), got {ema}")
    if seed is not None and seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if size is not None and not (28 <= size <= 64 and size % 4 == 0):
        raise ValueError(f"--size must be a multiple of 4 in [28, 64] (DCGAN), got {size}")
    check_device(device)
    stored, clear = prepare_out(out, resume=resume, force=force, command="train gan")
    given = {"dataset": dataset, "root": root, "size": size, "loss": loss, "conditional": conditional,
             "n_critic": n_critic, "latent_dim": latent_dim, "width": width, "lr": lr, "batch_size": batch_size,
             "seed": seed, "ema": ema}
    kind = loss or (stored or {}).get("loss") or DEFAULTS["loss"]
    lr_default, betas = ADAM.get(kind, (2e-4, (0.5, 0.999)))
    s = resolve_settings(given, stored, {**DEFAULTS, "lr": lr_default, "n_critic": 5 if kind == "wgan_gp" else 1})

    xtr, ytr = gan_images(s["dataset"], "train", root=s["root"], seed=s["seed"], size=s["size"])
    k = int(ytr.max()) + 1 if s["conditional"] else None
    if s["conditional"] and k < 2:
        raise ValueError(f"--conditional needs at least two classes; --dataset {s['dataset']} has {k}")
    meta = {"latent_dim": s["latent_dim"], "image_size": int(xtr.shape[-1]), "channels": int(xtr.shape[1]),
            "width": s["width"], "num_classes": k, "norm": "layer" if s["loss"] == "wgan_gp" else "batch",
            "loss": s["loss"], "dataset": s["dataset"], "split_seed": s["seed"], "ema": s["ema"]}
    torch.manual_seed(s["seed"])
    generator, discriminator = _networks(meta)
    adam = lambda p: torch.optim.Adam(p, lr=s["lr"], betas=betas)  # noqa: E731
    step = GANStep(discriminator, loss=s["loss"], d_optimizer=adam, n_critic=s["n_critic"], seed=s["seed"],
                   ema=s["ema"])
    run = open_run(out, RUN_NAME, {**s, "epochs": epochs, "meta": meta}, stored=stored, clear=clear,
                   command=_command(s, epochs, out), console=err_console)
    grids = SampleGrid(out / "figures", n=100 if k == 10 else 64, ncols=k if k and k <= 16 else 8, seed=s["seed"])
    try:
        history = fit(generator, TensorDataset(xtr, ytr), step=step, optimizer=adam, epochs=epochs, metrics=(),
                      batch_size=s["batch_size"], seed=s["seed"], checkpoint_dir=out / "checkpoints",
                      resume=stored is not None, run=run, callbacks=[grids, ExportGAN(out / "model.pt", meta, step)],
                      device=device)
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(f"interrupted: continue with `{_command(s, epochs, out)} --resume` (checkpoints in {out})",
                          soft_wrap=True, highlight=False)
        raise typer.Exit(130) from None
    last = history.epochs[-1]
    run.log(final_g_loss=last["g_loss"], final_d_loss=last["d_loss"], final_D_x=last["D(x)"],
            final_D_G_z=last["D(G(z))"])
    run.section("Training", f"DCGAN ({s['loss']} loss{', class-conditional' if k else ''}) on {s['dataset']} "
                f"({len(xtr)} training images, {meta['channels']} x {meta['image_size']} x {meta['image_size']}), "
                f"z of size {s['latent_dim']}, width {s['width']}, Adam lr {s['lr']} betas {betas}, batch "
                f"{s['batch_size']}, {s['n_critic']} discriminator step(s) per generator step, seed {s['seed']}.")
    run.table("History", [{k2: e[k2] for k2 in ("epoch", "g_loss", "d_loss", "D(x)", "D(G(z))", "gp")}
                          for e in history.epochs],
              caption="Per-epoch means: generator and discriminator losses, D on real and generated images "
                      "(probabilities for minimax and non-saturating, critic values otherwise), gradient penalty.")
    _loss_figure(run, history, s["loss"])
    generator = (step.ema_generator if step.ema_generator is not None else generator).eval()
    quality = _quality(generator, s, k, device) if s["dataset"] == "mnist5k" else None
    _samples_figure(run, grids.paths[-1] if grids.paths else None)
    if quality is not None:
        run.log(**{f"fid_{key}" if key != "fid" else "fid": v for key, v in quality.items()})
        run.table("Quality", [quality], caption=f"FID of {quality['n']} samples against {quality['n']} real test "
                  "images in the features of our digit classifier (not comparable with Inception FIDs), beside two "
                  "halves of the test split (real vs real) and Gaussian noise; precision and recall (k = 3).")
    report = run.finish()
    table = Table("loss", "dataset", "epochs", "g_loss", "d_loss", "D(x)", "D(G(z))",
                  *(["FID", "real vs real", "noise"] if quality else []), title="train gan")
    table.add_row(s["loss"], s["dataset"], str(len(history)), f"{last['g_loss']:.4f}", f"{last['d_loss']:.4f}",
                  f"{last['D(x)']:.3f}", f"{last['D(G(z))']:.3f}",
                  *([f"{quality['fid']:.2f}", f"{quality['real_vs_real']:.2f}", f"{quality['noise']:.1f}"]
                    if quality else []))
    console.print(table)
    console.print(f"model: {out / 'model.pt'}\nsamples: {out / 'figures'}\nreport: {report}\nnext: mlimaging sample "
                  f"--checkpoint {out / 'model.pt'} --n 64 --out grid.png", soft_wrap=True)


def _quality(generator: Any, s: dict[str, Any], k: int | None, device: str) -> dict[str, float]:
    import torch

    from mlimaging.generative.quality import fid_baselines, mnist_feature_extractor

    xte, _ = gan_images(s["dataset"], "test", root=s["root"], seed=s["seed"], size=s["size"])
    xte = xte[:FID_SAMPLES]
    n = (len(xte) + 1) // 2
    labels = (torch.arange(n) % k).to(device) if k else None
    fake = generator.sample(n, generator=torch.Generator().manual_seed(s["seed"] + 1), labels=labels).cpu()
    net = mnist_feature_extractor()
    return fid_baselines(xte, fake, feature_extractor=net.features, seed=s["seed"])


def _loss_figure(run: Any, history: Any, loss: str) -> None:
    from mlimaging.reporting.figures import plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot(history["epoch"], history["g_loss"], "o-", ms=3, label="generator")
    a.plot(history["epoch"], history["d_loss"], "s-", ms=3, label="discriminator")
    a.set(xlabel="epoch", ylabel=f"{loss} loss", title="losses")
    b.plot(history["epoch"], history["D(x)"], "o-", ms=3, label="D(x)")
    b.plot(history["epoch"], history["D(G(z))"], "s-", ms=3, label="D(G(z))")
    b.set(xlabel="epoch", title="discriminator outputs")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    run.figure(fig, "losses", caption="Generator and discriminator losses, and D's mean output on real and generated "
               "images, per epoch.")


def _samples_figure(run: Any, path: Path | None) -> None:
    if path is None:
        return
    from mlimaging.data.io import read_image
    from mlimaging.reporting.figures import plt

    grid, _ = read_image(path)
    fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.axis("off")
    run.figure(fig, "samples", caption=f"Samples after the last epoch (fixed z; every epoch's grid: {path.parent.name}/"
               "samples_epoch_*.png).")


#: Most samples ``sample`` draws (at once, into one grid image).
MAX_SAMPLES = 10_000


@command("sample")
def sample_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt written by `mlimaging train gan`."),
    out: Path = typer.Option(..., "--out", help="Grid image to write (.png, .jpg, .tif ...)."),
    n: int = typer.Option(64, "--n", help=f"Number of samples (at most {MAX_SAMPLES})."),
    ncols: int = typer.Option(8, "--ncols", help="Samples per row of the grid."),
    seed: int = typer.Option(0, "--seed", help="Seed of z."),
    label: int | None = typer.Option(None, "--label", help="Class of every sample (conditional GAN; default: "
                                     "classes in turn)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
) -> None:
    """Draw --n images from a trained GAN and write them as one grid image."""
    import torch

    from mlimaging.generative.gan import save_image_grid

    check_positive(n, "--n", integer=True)
    if n > MAX_SAMPLES:  # all are drawn at once: 10^8 asked for 40 GB and ended in a traceback
        raise ValueError(f"--n must be at most {MAX_SAMPLES} (one grid image), got {n}")
    check_positive(ncols, "--ncols", integer=True)
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    if out.is_dir():  # before 'exists': --force cannot help a folder
        raise IsADirectoryError(f"--out {out} is a folder; give an image file name such as grid.png")
    if out.exists() and not force:
        raise FileExistsError(f"--out {out} already exists; pass --force to overwrite it")
    generator, meta = load_generator(checkpoint)
    k = meta.get("num_classes")
    if label is not None and not k:
        raise ValueError(f"--label needs a class-conditional GAN; {checkpoint} is unconditional")
    if label is not None and not 0 <= label < k:
        raise ValueError(f"--label must be in [0, {k - 1}], got {label}")
    labels = None if not k else (torch.full((n,), label) if label is not None else torch.arange(n) % k)
    images = generator.sample(n, generator=torch.Generator().manual_seed(seed), labels=labels)
    path = save_image_grid(images, out, ncols=ncols)
    console.print(f"{n} samples of {checkpoint} (epoch {meta['epoch']}, seed {seed}): {path}", soft_wrap=True,
                  highlight=False)

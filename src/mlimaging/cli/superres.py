r"""``mlimaging train superres`` and ``mlimaging upscale``: single-image super-resolution over the engine.

``train superres`` trains a registered SR network (``srcnn``, ``vdsr``, ``espcn``, ``lapsrn``,
``dbpn``; :mod:`mlimaging.models.superres`) with :func:`mlimaging.training.fit` on LR/HR patch
pairs (:func:`~mlimaging.inverse.superres.sr_pairs`) of scikit-image's bundled images, held out
by image (:func:`~mlimaging.inverse.superres.split_images`), plus the training-only photographs
:data:`~mlimaging.inverse.superres.SR_TRAIN_EXTRA` (as the benchmark; ``--no-extra-photos``
leaves them out), into a run folder::

    OUT/config.json, metrics.json, report.html, tables/
    OUT/checkpoints/last.pt, best.pt      fit's checkpoints (resume from last.pt)
    OUT/model.pt                          best weights (lowest validation loss) + what upscale needs

``model.pt`` holds ``{"model": state_dict, "superres": meta, "epoch": ...}`` (``meta``: the model
name and keyword arguments, the scale, loss, degradation and image split; at the end of training
its held-out gain over bicubic, ``held_out_gain_db``, which ``upscale`` warns about when negative); it loads with
``torch.load(weights_only=True)``. The run ends with PSNR and SSIM on the held-out images
(Y channel, a border of ``scale`` pixels cut, :func:`~mlimaging.inverse.superres.sr_evaluate`)
beside the bicubic baseline,

.. math:: \mathrm{PSNR} = 10 \log_{10} \frac{1}{\mathrm{MSE}(Y_{sr}, Y_{hr})},

printed and in the report.

``upscale`` reads a colour picture (PNG, JPEG, TIFF ...: its BT.601 luma Y goes through a
one-channel network, its chroma is enlarged bicubically, as the papers do colour; written as 8-bit
RGB) or a grayscale image (PNG, TIFF, NPY, NIfTI ...), scales its values to [0, 1]
(8/16-bit images by 255/65535, others by their minimum and maximum), runs the network and writes
the result in the input's units and type. A 2D image grows ``scale`` times along both axes. A 3D
volume grows along ``--axis`` only (through-plane SR of thick slices): every plane spanned by
``--axis`` and the lower remaining axis is super-resolved by the 2D network, then brought back to
its size along that other axis by anti-aliased bicubic shrinking (the degradation the network
inverts). Upscaled axes get spacing :math:`\Delta / s` and the voxel centres of
``align_corners=False`` interpolation, so new voxel :math:`j` lies at old index
:math:`(j + 1/2)/s - 1/2`; the NIfTI qform/sform (or the geometry) are updated accordingly and the
output overlays the input.

References
----------
Dong et al. 2014 (arXiv:1501.00092), Kim et al. 2016 (arXiv:1511.04587), Shi et al. 2016
(arXiv:1609.05158), Lai et al. 2017 (arXiv:1704.03915), Haris et al. 2018 (arXiv:1803.02735).

Examples
--------
``mlimaging train superres --model espcn --scale 2 --epochs 20 --out runs/sr`` then
``mlimaging upscale photo.png --checkpoint runs/sr/model.pt --out big.png`` or
``mlimaging upscale thick.nii.gz --checkpoint runs/sr/model.pt --axis 2 --out fine.nii.gz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli._run_folder import (
    ExportBest,
    as_option,
    check_positive,
    open_run,
    prepare_out,
    read_checkpoint,
    resolve_settings,
)
from mlimaging.cli.app import command, console, err_console
from mlimaging.cli.train import train_app

if TYPE_CHECKING:  # torch and NumPy are imported inside the commands: `mlimaging --help` stays fast
    import numpy as np
    from torch import nn

__all__ = ["load_superres", "train_superres_cmd", "upscale_array", "upscale_cmd", "upscale_colour", "upscaled_geometry"]

RUN_NAME = "train-superres"
MODELS = ("srcnn", "vdsr", "espcn", "lapsrn", "dbpn")
TRAIN_LOSSES = ("l1", "l2", "mse", "huber", "charbonnier")
#: ``None``: the model's recipe (:data:`mlimaging.inverse.superres.SR_RECIPES`) decides; ``patches``
#: ``None``: every patch of the recipe's grid.
DEFAULTS: dict[str, Any] = {"model": "espcn", "scale": 2, "loss": None, "patch": None, "stride": None,
                            "patches": None, "lr": None, "batch_size": None, "seed": 0, "degradation": "bicubic",
                            "n_test": 4, "eval_crop": 256, "grad_clip": None, "extra_photos": True}
RECIPE_KEYS = ("loss", "patch", "stride", "lr", "batch_size")


# ------------------------------------------------------------------------------ model.pt
def load_superres(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network saved in a ``model.pt`` of ``mlimaging train superres`` (eval mode) and its metadata."""
    from mlimaging.models import create_model

    ckpt = read_checkpoint(path, "`mlimaging train superres`")
    meta = ckpt.get("superres")
    if not isinstance(meta, dict) or "model" not in ckpt:
        raise ValueError(f"--checkpoint {path} is not a super-resolution model written by `mlimaging train superres` "
                         "(no 'superres' metadata); use OUT/model.pt of a train superres run")
    net = create_model(meta["model"], **meta["model_kwargs"])
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ValueError(f"--checkpoint {path}: the weights do not fit {meta['model']}: "
                         f"{str(exc).splitlines()[0]}") from None
    return net.eval(), {**meta, "epoch": ckpt.get("epoch")}


# ------------------------------------------------------------------------------ upscaling
def _to_unit(array: np.ndarray) -> tuple[np.ndarray, Any]:
    """Values in [0, 1] and the inverse map back to the input's units and dtype."""
    import numpy as np

    if array.dtype in (np.uint8, np.uint16) or array.dtype == bool:
        top = 1.0 if array.dtype == bool else float(np.iinfo(array.dtype).max)
        dtype = np.uint8 if array.dtype == bool else array.dtype
        return array.astype(np.float32) / top, lambda y: np.clip(np.rint(y * top), 0, top).astype(dtype)
    lo, hi = float(array.min()), float(array.max())
    width = hi - lo if hi > lo else 1.0
    return ((array.astype(np.float64) - lo) / width).astype(np.float32), \
        lambda y: (y.astype(np.float64) * width + lo).astype(np.float32)


def upscale_array(net: nn.Module, array: np.ndarray, scale: int, *, axis: int = -1) -> np.ndarray:
    """``array`` (2D, values in [0, 1]) enlarged ``scale`` times by ``net``; a 3D volume along ``axis`` only.

    3D: each plane spanned by ``axis`` and the lower remaining axis goes through the 2D network and is
    shrunk back along that other axis by anti-aliased bicubic interpolation (see the module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from mlimaging.models import create_model
    >>> net = create_model("espcn", scale=2, features=(4, 4), seed=0).eval()
    >>> upscale_array(net, np.zeros((4, 5, 3), np.float32), 2, axis=2).shape
    (4, 5, 6)
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        if array.ndim == 2:
            return net(torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None])[0, 0].numpy()
        ax = axis % 3
        other, stack = (a for a in range(3) if a != ax)
        vol = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(stack, other, ax)
        n = vol.shape[1]
        planes = []
        for k in range(vol.shape[0]):
            sr = net(vol[k][None, None])  # (1, 1, s n, s m)
            planes.append(F.interpolate(sr, size=(n, sr.shape[-1]), mode="bicubic", antialias=True,
                                        align_corners=False)[0, 0])
        out = torch.stack(planes)  # (stack, other, s * m)
        order = [0, 0, 0]
        order[stack], order[other], order[ax] = 0, 1, 2
        return out.permute(*order).contiguous().numpy()


def upscale_colour(net: nn.Module, rgb: np.ndarray, scale: int) -> np.ndarray:
    r"""An 8-bit RGB picture ``(H, W, 3)`` enlarged ``scale`` times, as the SR papers do colour.

    A one-channel network (trained on the Y channel) super-resolves the luma :math:`Y` of BT.601
    YCbCr; the chroma :math:`C_b, C_r` are enlarged by bicubic interpolation (the eye is far less
    sensitive to their detail); the result goes back to RGB, clipped and rounded to ``uint8``. A
    three-channel network gets the RGB picture itself.

    Examples
    --------
    >>> import numpy as np
    >>> from mlimaging.models import create_model
    >>> net = create_model("espcn", scale=2, features=(4, 4), seed=0).eval()
    >>> grey = np.full((5, 6, 3), 90, np.uint8)  # R = G = B: chroma neutral, so the output stays grey
    >>> out = upscale_colour(net, grey, 2)
    >>> out.shape, out.dtype, bool(np.all(out[..., 0] == out[..., 1]) and np.all(out[..., 1] == out[..., 2]))
    ((10, 12, 3), dtype('uint8'), True)
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from mlimaging.inverse.superres.data import _YCBCR, _YCBCR_OFFSET  # BT.601, as rgb_to_y

    x = rgb.astype(np.float64) / 255.0
    if getattr(net, "in_channels", 1) == 3:
        with torch.no_grad():
            out = net(torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0), dtype=np.float32))[None])[0]
        return np.clip(np.rint(np.moveaxis(out.numpy(), 0, -1) * 255.0), 0, 255).astype(np.uint8)
    m = np.asarray(_YCBCR) / 255.0
    offset = np.asarray(_YCBCR_OFFSET) / 255.0
    ycc = x @ m.T + offset
    y = upscale_array(net, ycc[..., 0].astype(np.float32), scale)
    with torch.no_grad():
        chroma = torch.from_numpy(np.ascontiguousarray(np.moveaxis(ycc[..., 1:], -1, 0), dtype=np.float32))[None]
        chroma = F.interpolate(chroma, scale_factor=scale, mode="bicubic", align_corners=False)[0].numpy()
    ycc_big = np.concatenate([y[None], chroma], axis=0).astype(np.float64)  # (3, sH, sW)
    big = np.moveaxis(np.tensordot(np.linalg.inv(m), ycc_big - offset[:, None, None], axes=1), 0, -1)
    return np.clip(np.rint(big * 255.0), 0, 255).astype(np.uint8)


def _colour_picture(path: Path) -> np.ndarray | None:
    """The RGB pixels ``(H, W, 3)`` of a colour PNG/JPEG/TIFF ... picture (alpha dropped), else None."""
    import numpy as np

    from mlimaging.data.io import image_format

    if image_format(path) != "pil":
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"):
                return None
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError):  # not a picture PIL can read: the grayscale reader says why, in one line
        return None
    if rgb.ndim != 3 or (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
        return None  # grey stored as colour: the grayscale path keeps its single channel
    return rgb


def upscaled_geometry(geometry: Any, scale: int, axes: tuple[int, ...]) -> Any:
    r"""The geometry of an image enlarged ``scale`` times along ``axes`` (centres aligned).

    New index :math:`j` along an upscaled axis is old index :math:`(j + 1/2)/s - 1/2`: spacing
    :math:`\Delta/s`, origin moved by :math:`(1/(2s) - 1/2)\,\Delta` along that axis' direction;
    NIfTI qform/sform are multiplied by the same index transform (codes kept).

    Examples
    --------
    >>> from mlimaging.data.geometry import ImageGeometry
    >>> g = upscaled_geometry(ImageGeometry(spacing=(1.0, 8.0)), 2, (1,))
    >>> g.spacing, g.origin
    ((1.0, 4.0), (0.0, -2.0))
    """
    import dataclasses

    import numpy as np

    from mlimaging.data.geometry import ImageGeometry

    t = np.eye(geometry.ndim + 1)
    for a in axes:
        t[a, a], t[a, -1] = 1.0 / scale, 0.5 / scale - 0.5
    m = np.asarray(geometry.index_to_world, dtype=np.float64) @ t
    spacing = tuple(float(v) / scale if k in axes else float(v) for k, v in enumerate(geometry.spacing))
    nifti = geometry.nifti
    if nifti is not None:
        t4 = np.eye(4)
        t4[:geometry.ndim, :geometry.ndim], t4[:geometry.ndim, 3] = t[:-1, :-1], t[:-1, -1]
        nifti = dataclasses.replace(nifti, qform=nifti.qform @ t4, sform=nifti.sform @ t4)
    return ImageGeometry(spacing=spacing, origin=tuple(float(v) for v in m[:-1, -1]),
                         direction=np.asarray(geometry.direction), nifti=nifti)


# ------------------------------------------------------------------------------ training
def _crop(img: Any, size: int, scale: int) -> Any:
    h, w = img.shape[-2:]
    side = min(size, h, w)
    side -= side % scale
    top, left = (h - side) // 2, (w - side) // 2
    return img[..., top:top + side, left:left + side]


def _held_out(net: nn.Module, names: list[str], s: dict[str, Any], device: str) -> list[dict[str, Any]]:
    import torch

    from mlimaging.inverse.superres import (
        bicubic_upscale,
        degrade,
        load_sr_image,
        modcrop,
        sr_evaluate,
    )

    rows = []
    with torch.no_grad():
        for name in names:
            hr = _crop(torch.from_numpy(modcrop(load_sr_image(name), s["scale"]).copy()), s["eval_crop"],
                       s["scale"])[None]
            lr = degrade(hr, s["scale"], degradation=s["degradation"])
            ours = sr_evaluate(net.eval()(lr.to(device)).cpu(), hr, scale=s["scale"])
            base = sr_evaluate(bicubic_upscale(lr, s["scale"]), hr, scale=s["scale"])
            rows.append({"image": name, "size": int(hr.shape[-1]), "psnr": ours["psnr"], "ssim": ours["ssim"],
                         "bicubic_psnr": base["psnr"], "bicubic_ssim": base["ssim"],
                         "gain_db": ours["psnr"] - base["psnr"]})
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim", "gain_db")}
    return [*rows, {"image": "mean", "size": None, **mean}]


def _command(s: dict[str, Any], epochs: int, out: Path) -> str:
    parts = ["mlimaging", "train", "superres"]
    parts += [as_option(key, s[key]) for key in DEFAULTS if s[key] is not None]
    return " ".join([*parts, "--epochs", str(epochs), "--out", str(out)])


@command("superres", typer_app=train_app)
def train_superres_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder (checkpoints, model.pt, report)."),
    model: str | None = typer.Option(None, "--model", help="srcnn, vdsr, espcn, lapsrn or dbpn (default: espcn)."),
    scale: int | None = typer.Option(None, "--scale", help="Upscaling factor: 2, 3 or 4 (lapsrn: 2, 4, 8; default 2)."),
    epochs: int | None = typer.Option(None, "--epochs", help="Total epochs (default: the model's recipe; a resumed "
                                      "run continues up to this number)."),
    loss: str | None = typer.Option(None, "--loss", help=f"{', '.join(TRAIN_LOSSES)} (default: the model's recipe)."),
    patch: int | None = typer.Option(None, "--patch", help="HR patch side in pixels, a multiple of --scale (default: "
                                     "the model's recipe, 32 or 48)."),
    stride: int | None = typer.Option(None, "--stride", help="Step of the patch grid in HR pixels, a multiple of "
                                      "--scale (default: the model's recipe)."),
    patches: int | None = typer.Option(None, "--patches", help="Most patches cut from each image (default: all)."),
    lr: float | None = typer.Option(None, "--lr", help="Initial Adam learning rate, cosine-annealed (default: the "
                                    "model's recipe)."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Patches per step (default: the model's "
                                          "recipe)."),
    seed: int | None = typer.Option(None, "--seed", help="Seed of the image split, patches, initialisation and batch "
                                    "order (default 0)."),
    degradation: str | None = typer.Option(None, "--degradation", help="bicubic, blur-down or kspace (default: "
                                           "bicubic)."),
    n_test: int | None = typer.Option(None, "--n-test", help="Bundled images held out for validation and the final "
                                      "PSNR/SSIM (default 4)."),
    eval_crop: int | None = typer.Option(None, "--eval-crop", help="Side of the centre crop of each held-out image "
                                         "scored at the end (default 256)."),
    grad_clip: float | None = typer.Option(None, "--grad-clip", help="Clip the global gradient norm to this value "
                                           "(VDSR's high-learning-rate recipe; default: none)."),
    extra_photos: bool | None = typer.Option(None, "--extra-photos/--no-extra-photos", help="Also train on the "
                                             "bundled training-only photographs SR_TRAIN_EXTRA (china, flower, "
                                             "grace_hopper, motorcycle_left, aero, ascent), as the benchmark does "
                                             "(default: on)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    force: bool = typer.Option(False, "--force", help="Delete an existing --out run folder and start again."),
) -> None:
    """Train a super-resolution network; model.pt, held-out PSNR/SSIM vs bicubic and a report in --out."""
    from rich.table import Table

    from mlimaging.inverse.superres import (
        DEGRADATIONS,
        SR_TRAIN_EXTRA,
        split_images,
        sr_pairs,
        sr_recipe,
        train_superres,
    )
    from mlimaging.models import create_model
    from mlimaging.training import load_checkpoint, save_checkpoint

    if model is not None and model not in MODELS:
        raise ValueError(f"--model must be one of {', '.join(MODELS)}, got {model!r}")
    if loss is not None and loss not in TRAIN_LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(TRAIN_LOSSES)}, got {loss!r}")
    if degradation is not None and degradation not in DEGRADATIONS:
        raise ValueError(f"--degradation must be one of {', '.join(DEGRADATIONS)}, got {degradation!r}")
    for value, option in ((epochs, "--epochs"), (scale, "--scale"), (patch, "--patch"), (stride, "--stride"),
                          (patches, "--patches"),
                          (batch_size, "--batch-size"), (n_test, "--n-test"), (eval_crop, "--eval-crop")):
        check_positive(value, option, integer=True)
    check_positive(lr, "--lr")
    check_positive(grad_clip, "--grad-clip")
    if seed is not None and seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    stored, clear = prepare_out(out, resume=resume, force=force, command="train superres")
    given = {"model": model, "scale": scale, "loss": loss, "patch": patch, "stride": stride, "patches": patches, "lr": lr,
             "batch_size": batch_size, "seed": seed, "degradation": degradation, "n_test": n_test,
             "eval_crop": eval_crop, "grad_clip": grad_clip, "extra_photos": extra_photos}
    s = resolve_settings(given, stored, DEFAULTS)
    if stored is not None and "extra_photos" not in stored:
        s["extra_photos"] = False  # a run folder from before the option trained without them
    recipe = sr_recipe(s["model"])
    s.update({k: recipe[k] for k in RECIPE_KEYS if s[k] is None})
    recipe.update({k: s[k] for k in RECIPE_KEYS})
    epochs = epochs or (stored or {}).get("epochs") or recipe["epochs"]
    for key in ("patch", "stride"):
        if s[key] % s["scale"]:
            raise ValueError(f"--{key} must be a multiple of --scale {s['scale']}, got {s[key]}")
    if s["eval_crop"] <= 2 * s["scale"] + 1:
        raise ValueError(f"--eval-crop must exceed twice --scale (the border cut before scoring), got {s['eval_crop']}")
    kwargs = {"scale": s["scale"], "in_channels": 1, **recipe["model_kwargs"]}
    try:
        net = create_model(s["model"], seed=s["seed"], **kwargs)
    except ValueError as exc:
        raise ValueError(f"--scale {s['scale']} does not fit --model {s['model']}: {exc}") from None
    train_names, test_names = split_images(n_test=s["n_test"], seed=s["seed"])
    if s["extra_photos"]:
        train_names = [*train_names, *SR_TRAIN_EXTRA]
    train = sr_pairs(train_names, scale=s["scale"], patch=s["patch"], stride=s["stride"], max_patches=s["patches"],
                     degradation=s["degradation"], augment=s["degradation"] == "bicubic", seed=s["seed"])
    val = sr_pairs(test_names, scale=s["scale"], patch=s["patch"], max_patches=s["patches"] or 32,
                   degradation=s["degradation"], seed=s["seed"])
    meta = {"model": s["model"], "model_kwargs": kwargs, "scale": s["scale"], "channels": "y", "loss": s["loss"],
            "degradation": s["degradation"], "train_images": train_names, "test_images": test_names,
            "range": [0.0, 1.0]}
    run = open_run(out, RUN_NAME, {**s, "epochs": epochs, "meta": meta}, stored=stored, clear=clear,
                   command=_command(s, epochs, out), console=err_console)
    try:
        history = train_superres(net, train, val, name=s["model"], recipe=recipe, epochs=epochs,
                                 grad_clip=s["grad_clip"], seed=s["seed"], checkpoint_dir=out / "checkpoints",
                                 resume=stored is not None, run=run, monitor="val_loss", mode="min",
                                 callbacks=[ExportBest(out / "model.pt", "superres", meta)], device=device)
    except KeyboardInterrupt:
        run.finish(error="interrupted; continue with --resume")
        err_console.print(f"interrupted: continue with `{_command(s, epochs, out)} --resume` (checkpoints in {out})",
                          soft_wrap=True, highlight=False)
        raise typer.Exit(130) from None
    best = load_checkpoint(out / "model.pt")
    net.load_state_dict(best["model"])
    rows = _held_out(net.to(device), test_names, s, device)
    mean = rows[-1]
    run.log(best_epoch=history.best_epoch, best_val_loss=history.best_value, test_psnr=mean["psnr"],
            test_ssim=mean["ssim"], bicubic_psnr=mean["bicubic_psnr"], bicubic_ssim=mean["bicubic_ssim"],
            gain_db=mean["gain_db"])
    clip = f" (gradient norm clipped to {s['grad_clip']})" if s["grad_clip"] else ""
    aug = ", random flips/rotations" if train.augment else ""
    run.section("Training", f"{s['model']} x{s['scale']} on {len(train)} LR/HR patch pairs ({s['patch']} px) of "
                f"{len(train_names)} bundled images ({s['degradation']} degradation), {s['loss']} loss{aug}, Adam lr "
                f"{s['lr']}{clip}, batch {s['batch_size']}, seed {s['seed']}; validation on {len(val)} patches of the "
                f"held-out images {', '.join(test_names)}.")
    run.table("Held-out", rows, caption=f"PSNR (dB) and SSIM on the Y channel, {s['scale']}-pixel border cut, centre "
              f"crops of at most {s['eval_crop']} px of the held-out images, best epoch's weights (model.pt) beside "
              "bicubic upscaling.")
    worse = _below_bicubic_warning(mean["gain_db"])
    if worse:
        run.section("Warning", worse)
    # upscale reads the held-out gain from model.pt and warns when < 0
    best["superres"] = {**best["superres"], "held_out_gain_db": float(mean["gain_db"]),
                        "held_out_images": list(test_names)}
    save_checkpoint(best, out / "model.pt")
    report = run.finish()
    table = Table("image", "PSNR", "SSIM", "bicubic PSNR", "bicubic SSIM", "gain (dB)",
                  title=f"train superres: {s['model']} x{s['scale']}, best epoch {history.best_epoch} of {len(history)}")
    for r in rows:
        table.add_row(r["image"], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['bicubic_psnr']:.2f}",
                      f"{r['bicubic_ssim']:.4f}", f"{r['gain_db']:+.2f}")
    console.print(table)
    if worse:
        err_console.print(f"[yellow]warning:[/] {worse}", highlight=False, soft_wrap=True)
    console.print(f"model: {out / 'model.pt'}\nreport: {report}", soft_wrap=True)


def _below_bicubic_warning(gain_db: float) -> str:
    """A warning when the network upscales the held-out images worse than plain bicubic interpolation."""
    if gain_db >= 0.0:
        return ""
    return (f"the network is {-gain_db:.2f} dB below bicubic interpolation on the held-out images: it is not "
            "trained enough to be worth using (more --epochs; `mlimaging upscale` with this model.pt would "
            "degrade images).")


def _warn_if_below_bicubic(meta: dict[str, Any], checkpoint: Path) -> None:
    """Say on stderr when ``checkpoint``'s network scored below bicubic on its held-out images."""
    gain = meta.get("held_out_gain_db")
    if gain is not None and gain < 0.0:
        err_console.print(f"[yellow]warning:[/] --checkpoint {checkpoint} scored {-gain:.2f} dB below bicubic "
                          "interpolation on its held-out images: this output is likely worse than plain bicubic "
                          "upscaling (train it longer)", highlight=False, soft_wrap=True)


@command("upscale")
def upscale_cmd(
    image: Path = typer.Argument(..., help="Grayscale image or volume (PNG, TIFF, NPY, NIfTI ...) or colour picture "
                                 "(its Y channel super-resolved, chroma bicubic)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt written by `mlimaging train superres`."),
    out: Path = typer.Option(..., "--out", help="Output file (.png, .npy, .nii.gz ...)."),
    axis: int = typer.Option(-1, "--axis", help="3D volumes: the axis to refine (thick slices), -3..2."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out."),
) -> None:
    """Super-resolve an image with a trained network (a volume along --axis; geometry updated)."""
    from mlimaging.cli._images import check_format_fits, for_output, read_gray, write_output

    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name such as big.png")
    if out.exists() and not force:
        raise FileExistsError(f"--out {out} already exists; pass --force to overwrite it")
    if not image.exists():
        raise FileNotFoundError(f"IMAGE {image} does not exist")
    rgb = _colour_picture(image)  # a colour photograph: Y through the network, chroma bicubic (upscale_colour)
    if rgb is not None:
        from mlimaging.data.io import image_format

        if image_format(out) != "pil":
            raise ValueError(f"--out {out}: IMAGE {image} is a colour picture; write it as .png, .jpg or .tif")
    else:
        array, geometry = read_gray(image, "IMAGE")
        if array.ndim == 3 and not -3 <= axis <= 2:
            raise ValueError(f"--axis must be in -3..2 for a 3D volume, got {axis}")
        # written in IMAGE's units and, to a PNG, in its integer type: refused before any work
        check_format_fits(out, "--out", array.ndim, array)
    net, meta = load_superres(checkpoint)
    _warn_if_below_bicubic(meta, checkpoint)
    s = int(meta["scale"])
    if rgb is not None:
        from PIL import Image

        big = upscale_colour(net, rgb, s)
        Image.fromarray(big).save(out)
        console.print(f"{image} {tuple(rgb.shape)} -> {out} {tuple(big.shape)}: {meta['model']} x{s} (epoch "
                      f"{meta['epoch']}) on the Y channel, Cb/Cr bicubic", soft_wrap=True, highlight=False)
        return
    unit, back = _to_unit(array)
    result = back(upscale_array(net, unit, s, axis=axis))
    axes = (0, 1) if array.ndim == 2 else (axis % 3,)
    result = for_output(out, result, array.dtype)
    write_output(out, result, upscaled_geometry(geometry, s, axes))
    console.print(f"{image} {tuple(array.shape)} -> {out} {tuple(result.shape)}: {meta['model']} x{s} (epoch "
                  f"{meta['epoch']}), spacing {tuple(round(v, 6) for v in geometry.spacing)} -> "
                  f"{tuple(round(v / s, 6) if k in axes else round(v, 6) for k, v in enumerate(geometry.spacing))}",
                  soft_wrap=True, highlight=False)

r"""``mlimaging explain`` and ``mlimaging dream``: why a trained network decided what it did.

``explain`` loads a ``model.pt`` of ``mlimaging train classifier`` or ``mlimaging train
segmenter`` and computes one attribution map per image and method with
:func:`mlimaging.interpretability.attribute` (saliency, integrated gradients, guided
backpropagation, Grad-CAM, occlusion, ...). A classifier explains the score of ``--target``
(default: the predicted class) on the image prepared exactly as ``predict`` prepares it
(scaled to [0, 1], channels converted, resized to the training size); a segmenter explains
the sum of the logits of class ``--target`` inside the region it predicts for that class
(default: the foreground label with the most voxels), on the z-scored image at its own
size, 2D or 3D. For each image and method it writes into ``--out``:

- ``NAME_METHOD.png``: the map over the image (a 3D map: the slice through the centre of
  the explained region);
- ``NAME_METHOD.npy``: the raw map (the model input's spatial shape), or for a volume
  ``NAME_METHOD.nii.gz`` with the input's geometry (affine, spacing), so it overlays the
  scan in any viewer.

``dream`` runs DeepDream (Mordvintsev et al. 2015) with
:func:`mlimaging.interpretability.deep_dream`: gradient ascent on the input to amplify what
layer ``--layer`` responds to, over an image pyramid, and writes the dreamt image. LeNet
checkpoints take images of at most 32 x 32 pixels, so ``dream`` runs their fully convolutional
twin (:class:`mlimaging.models.FCLeNet`, same weights, same layer names) on images of any size.

Examples
--------
``mlimaging explain --checkpoint runs/lenet/model.pt digit.png --method saliency,grad_cam --out explain/``
then ``mlimaging dream --checkpoint runs/lenet/model.pt photo.png --layer conv2 --out dream.png``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mlimaging.cli.app import command, console, err_console

if TYPE_CHECKING:  # torch and NumPy are imported inside the commands: `mlimaging --help` stays fast
    import numpy as np
    import torch
    from torch import nn

__all__ = ["DEFAULT_METHODS", "dream_cmd", "explain_cmd"]

DEFAULT_METHODS = "saliency,guided_backprop,grad_cam,occlusion"
#: Methods that need a layer (the default is the last convolution with a kernel larger than 1).
LAYER_METHODS = ("grad_cam", "guided_grad_cam")
#: Largest ``dream --size`` (the longer side in pixels).
MAX_DREAM_SIZE = 4096


# ----------------------------------------------------------------------------- helpers
def _known_methods() -> tuple[str, ...]:
    from mlimaging import interpretability

    known = getattr(interpretability, "METHODS", None)
    if known is None:
        known = ("saliency", "input_x_gradient", "smoothgrad", "integrated_gradients", "deconvnet",
                 "guided_backprop", "grad_cam", "guided_grad_cam", "occlusion")
    return tuple(m for m in known if m != "feature_ablation")  # needs segments: not a command-line method


def _parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    known = _known_methods()
    unknown = [m for m in methods if m not in known]
    if unknown or not methods:
        raise ValueError(f"--method: unknown method(s) {unknown or [text]}; choose from {', '.join(known)}")
    return list(dict.fromkeys(methods))


def _layers(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


def _check_layer(model: nn.Module, layer: str, option: str = "--layer") -> None:
    names = _layers(model)
    if layer not in names:
        raise ValueError(f"{option}: the model has no layer {layer!r}; valid layers: {', '.join(names)}")


def _default_layer(model: nn.Module) -> str:
    """The last convolution whose kernel is larger than 1 (Grad-CAM's usual choice)."""
    from torch import nn

    convs = [name for name, m in model.named_modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and max(m.kernel_size) > 1]
    if not convs:
        raise ValueError("--layer: the model has no convolution with a kernel larger than 1; give --layer "
                         f"(valid layers: {', '.join(_layers(model))})")
    return convs[-1]


def _check_layer_output(model: nn.Module, layer: str, x: torch.Tensor, shown: str) -> None:
    """Refuse a Grad-CAM layer whose output has no spatial axes (a linear layer), before any map is written."""
    import torch

    seen: list[tuple[int, ...]] = []
    handle = dict(model.named_modules())[layer].register_forward_hook(
        lambda m, i, o: seen.append(tuple(o.shape) if hasattr(o, "shape") else ()))
    try:
        with torch.no_grad():
            model(x[None])
    finally:
        handle.remove()
    if seen and 0 < len(seen[0]) < 3:
        raise ValueError(f"--layer {shown}: its output {seen[0]} has no spatial axes (a fully connected layer); "
                         "grad_cam needs a convolutional layer")


def _occlusion_window(x: torch.Tensor, window: int | None, stride: int | None) -> tuple[int, int]:
    """The occlusion window and stride for input ``x`` (C, *spatial): the options or their defaults."""
    w = window or max(2, -(-min(x.shape[1:]) // 7))  # ceil(side / 7): 4 px for 28, 169 windows
    return w, stride or max(1, w // 2)


def _checkpoint_kind(path: Path) -> str:
    from mlimaging.cli._run_folder import read_checkpoint, run_config

    ckpt = read_checkpoint(path, "`mlimaging train classifier` or `train segmenter`")
    for kind in ("segmenter", "classifier"):
        if kind in ckpt:
            return kind
    # fit's checkpoints/last.pt: the run folder says
    return "segmenter" if run_config(path).get("experiment") == "train-segmenter" else "classifier"


class _Padded:
    """Factory of a module that pads its input (replicate) to a multiple of ``m`` per spatial axis,
    runs ``net`` and crops the logits back: a segmenter then takes any image size."""

    @staticmethod
    def wrap(net: nn.Module, m: int) -> nn.Module:
        import torch.nn.functional as F
        from torch import nn

        class Padded(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.net = net

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                size = x.shape[2:]
                pad: list[int] = []
                for s in reversed(size):
                    pad += [0, (-s) % m]
                out = self.net(F.pad(x, pad, mode="replicate") if any(pad) else x)
                return out[(..., *[slice(0, s) for s in size])]

        return Padded().eval()


def _segmenter_input(path: Path, meta: dict[str, Any]) -> tuple[torch.Tensor, Any]:
    import numpy as np

    from mlimaging.cli._images import read_gray
    from mlimaging.data.preprocessing import zscore

    d = int(meta["spatial_dims"])
    if int(meta["in_channels"]) != 1:
        raise ValueError(f"--checkpoint: explain takes one-channel segmenters, this one has {meta['in_channels']} channels")
    array, geometry = read_gray(path, "IMAGE")
    if array.ndim != d:
        raise ValueError(f"IMAGE {path} has shape {array.shape}; the segmenter expects a {d}D image")
    return zscore(np.asarray(array, dtype=np.float32))[None], geometry


def _classifier_input(path: Path, meta: dict[str, Any], invert: bool | None) -> torch.Tensor:
    from mlimaging.data import read_image
    from mlimaging.data.preprocessing import has_light_background, prepare_image

    pre = meta["preprocess"]
    array, _ = read_image(path)
    x = prepare_image(array, channels=int(pre["channels"]), size=tuple(pre["size"]), name=f"IMAGE {path}")
    flip = invert
    if invert is None and pre.get("background") is not None:
        flip = has_light_background(x) != (pre["background"] == "light")
        if flip:
            err_console.print(f"[yellow]warning:[/] {path}: its background polarity is the opposite of the training "
                              "images'; explaining 1 - image (pass --no-invert to keep it)", highlight=False,
                              soft_wrap=True)
    return 1.0 - x if flip else x


def _overlay(path: Path, image: np.ndarray, amap: np.ndarray, title: str, region: np.ndarray | None = None) -> None:
    """PNG of ``amap`` over ``image`` (both 2D): signed maps in red/blue, unsigned ones in hot colours."""
    import numpy as np

    from mlimaging.reporting.figures import plt

    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.3))
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("input", fontsize=9)
    axes[1].imshow(image, cmap="gray")
    vmax = float(np.abs(amap).max()) or 1.0
    if amap.min() < 0:
        shown = axes[1].imshow(amap, cmap="RdBu_r", vmin=-vmax, vmax=vmax, alpha=0.6)
    else:
        shown = axes[1].imshow(np.ma.masked_less_equal(amap, 0.02 * vmax), cmap="hot", vmin=0, vmax=vmax, alpha=0.7)
    if region is not None and region.any() and min(region.shape) >= 2:  # contour needs a 2 x 2 grid
        axes[1].contour(region.astype(float), levels=[0.5], colors="cyan", linewidths=0.8)
    axes[1].set_title(title, fontsize=9)
    fig.colorbar(shown, ax=axes[1], fraction=0.046)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _progress(items: list[Any], description: str) -> Any:
    """Iterate with a rich progress bar on stderr (a terminal only)."""
    from rich.progress import track

    return track(items, description=description, console=err_console, transient=True,
                 disable=not err_console.is_terminal)


# ----------------------------------------------------------------------------- explain
@command("explain")
def explain_cmd(
    images: list[Path] = typer.Argument(..., help="Image files (PNG, NIfTI, DICOM, NPY, ...)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt of `mlimaging train classifier` or "
                                    "`mlimaging train segmenter`."),
    out: Path = typer.Option(..., "--out", help="Folder for the overlays (PNG) and raw maps (NPY; NIfTI for volumes)."),
    method: str = typer.Option(DEFAULT_METHODS, "--method", help="Comma-separated attribution methods."),
    target: int | None = typer.Option(None, "--target", help="Class to explain (default: the predicted class; for a "
                                      "segmenter, the foreground label with the most predicted voxels)."),
    layer: str | None = typer.Option(None, "--layer", help="Layer of grad_cam and guided_grad_cam (default: the last "
                                     "convolution with a kernel larger than 1)."),
    window: int | None = typer.Option(None, "--window", help="Occlusion window in pixels (default: a seventh of the "
                                      "smallest side, rounded up, at least 2)."),
    stride: int | None = typer.Option(None, "--stride", help="Occlusion stride (default: half the window)."),
    invert: bool | None = typer.Option(None, "--invert/--no-invert", help="Classifiers: use 1 - image, or never "
                                       "(default: as `predict`, invert an image of the opposite polarity)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing maps in --out."),
) -> None:
    """Attribution maps of a trained classifier or segmenter: overlays (PNG) and raw maps (NPY/NIfTI)."""
    import numpy as np
    import torch

    from mlimaging.cli._images import write_output
    from mlimaging.data.io import strip_image_suffix
    from mlimaging.interpretability import attribute

    methods = _parse_methods(method)
    for value, option in ((window, "--window"), (stride, "--stride")):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be a positive integer, got {value}")
    missing = [p for p in images if not p.exists()]
    if missing:
        raise FileNotFoundError(f"IMAGE {missing[0]} does not exist")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder")
    kind = _checkpoint_kind(checkpoint)
    if kind == "classifier":
        from mlimaging.cli.classify import _load_classifier

        model, meta = _load_classifier(checkpoint)
        classes = [str(c) for c in meta["classes"]]
    else:
        from mlimaging.cli.segment import _load_segmenter

        net, meta = _load_segmenter(checkpoint)
        model = _Padded.wrap(net.eval(), 16)
        classes = [str(c) for c in range(int(meta["num_classes"]))]
    if target is not None and not 0 <= target < len(classes):
        raise ValueError(f"--target must be a class index in 0..{len(classes) - 1}, got {target}")
    prefix = "net." if kind == "segmenter" else ""
    if any(m in LAYER_METHODS for m in methods):
        if layer is None:
            layer = _default_layer(model)[len(prefix):]
        _check_layer(model, prefix + layer)

    stems = [strip_image_suffix(p.name) for p in images]
    if len(set(stems)) != len(stems):
        raise ValueError("IMAGE: two images share a file name; their maps would overwrite each other")
    inputs = []
    for p in images:
        if kind == "classifier":
            inputs.append((_classifier_input(p, meta, invert), None))
        else:
            inputs.append(_segmenter_input(p, meta))
    volume = [x.ndim == 4 for x, _ in inputs]
    outputs = [out / f"{s}_{m}{'.nii.gz' if v else '.npy'}" for s, v in zip(stems, volume, strict=True) for m in methods]
    for p, (x, _) in zip(images, inputs, strict=True):  # refused before any map is written
        size = tuple(x.shape[1:])
        if "occlusion" in methods:
            w, s = _occlusion_window(x, window, stride)
            if w > min(size):
                raise ValueError(f"--window {w} is larger than {p} as the model sees it ({' x '.join(map(str, size))})")
            if s > w:
                raise ValueError(f"--stride {s} must not exceed the occlusion window {w} (pixels would be left out)")
    if any(m in LAYER_METHODS for m in methods):
        _check_layer_output(model, prefix + layer, inputs[0][0], layer)
    existing = [p for p in outputs if p.exists() or p.with_suffix("").with_suffix(".png").exists()]
    if existing and not force:
        raise FileExistsError(f"{existing[0]} already exists; pass --force to overwrite the maps in {out}")
    out.mkdir(parents=True, exist_ok=True)

    jobs = [(i, m) for i in range(len(images)) for m in methods]
    targets: dict[int, Any] = {}
    # volumes: occlusion shows its own bar (one live display at a time), so no bar over the jobs
    bar = not any(volume)
    for i, m in (_progress(jobs, "explaining") if bar else jobs):
        x, geometry = inputs[i]
        xb = x[None]
        if i not in targets:
            with torch.no_grad():
                logits = model(xb)
            if kind == "classifier":
                probs = torch.softmax(logits, 1)[0]
                pred = int(probs.argmax())
                c = pred if target is None else target
                targets[i] = (torch.tensor([c]), c, None)
                console.print(f"{images[i]}: predicted {classes[pred]} (p = {float(probs[pred]):.3f}); explaining "
                              f"class {classes[c]}", highlight=False, soft_wrap=True)
            else:
                labels = logits.argmax(1)[0]
                counts = torch.bincount(labels.flatten(), minlength=len(classes))
                c = target if target is not None else (int(counts[1:].argmax()) + 1 if counts[1:].any() else 0)
                region = labels == c
                if not region.any():
                    raise ValueError(f"--target {c}: the segmenter predicts no voxel of class {c} in {images[i]}; "
                                     "there is no region to explain")
                targets[i] = ((c, region[None]), c, region.numpy())
                console.print(f"{images[i]}: predicted voxels per class {dict(enumerate(counts.tolist()))}; explaining "
                              f"class {c} in its {int(region.sum())} predicted voxels", highlight=False, soft_wrap=True)
        tgt, c, region = targets[i]
        kw: dict[str, Any] = {}
        if m in LAYER_METHODS:
            kw["layer"] = prefix + layer
        if m == "occlusion":
            w, s = _occlusion_window(x, window, stride)
            kw.update(window=w, stride=s, progress=not bar and err_console.is_terminal)
        amap = attribute(model, xb, tgt, method=m, **kw).detach()[0]
        amap = (amap[0] if amap.shape[0] == 1 else amap).numpy().astype(np.float32)
        stem = out / f"{stems[i]}_{m}"
        if volume[i]:
            write_output(stem.with_suffix(".nii.gz"), amap, geometry)
            k = int(np.argmax(region.sum(axis=(1, 2)))) if region is not None else amap.shape[0] // 2
            shown, image2d, region2d = amap[k], x[0, k].numpy(), region[k] if region is not None else None
            where = f", slice {k} of axis 0"
        else:
            np.save(stem.with_suffix(".npy"), amap)
            shown = amap.mean(0) if amap.ndim == 3 else amap
            image2d = x.mean(0).numpy()
            region2d, where = region, ""
        _overlay(stem.with_suffix(".png"), image2d, shown, f"{m}, class {classes[c]}{where}", region2d)
    console.print(f"{len(outputs)} map(s) and overlays -> {out}", soft_wrap=True)


# ----------------------------------------------------------------------------- dream
@command("dream")
def dream_cmd(
    image: Path = typer.Argument(..., help="Image to dream on (PNG, JPEG, NPY, ...; 2D)."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="model.pt of `mlimaging train classifier`."),
    layer: str = typer.Option(..., "--layer", help="Layer whose activations to amplify (e.g. conv2 for LeNet)."),
    out: Path = typer.Option(..., "--out", help="Dreamt image to write (.png)."),
    octaves: int = typer.Option(4, "--octaves", help="Scales of the image pyramid."),
    octave_scale: float = typer.Option(1.4, "--octave-scale", help="Size ratio of successive octaves (> 1)."),
    steps: int = typer.Option(10, "--steps", help="Gradient-ascent steps per octave."),
    jitter: int = typer.Option(2, "--jitter", help="Random shift in pixels before each step."),
    size: int = typer.Option(256, "--size", help="Resize the image so that its longer side has SIZE pixels "
                          f"(at most {MAX_DREAM_SIZE})."),
    seed: int = typer.Option(0, "--seed", help="Seed of the jitter."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """DeepDream: amplify what a layer of a trained classifier sees in an image."""
    import numpy as np

    from mlimaging.cli.classify import _load_classifier
    from mlimaging.data import read_image, write_image
    from mlimaging.data.io import image_format
    from mlimaging.data.preprocessing import prepare_image
    from mlimaging.interpretability import deep_dream
    from mlimaging.models import FCLeNet, LeNet

    for value, option in ((octaves, "--octaves"), (steps, "--steps"), (size, "--size")):
        if value < 1:
            raise ValueError(f"{option} must be a positive integer, got {value}")
    if size > MAX_DREAM_SIZE:  # --size 100000 asked for 40 GB and ended in a traceback
        raise ValueError(f"--size must be at most {MAX_DREAM_SIZE} pixels, got {size}")
    if jitter < 0:
        raise ValueError(f"--jitter must be >= 0, got {jitter}")
    if not octave_scale > 1.0:
        raise ValueError(f"--octave-scale must be > 1, got {octave_scale}")
    if image_format(out) != "pil":
        raise ValueError(f"--out {out}: the dream is written as an image file (.png, .jpg)")
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")
    if not image.exists():
        raise FileNotFoundError(f"IMAGE {image} does not exist")
    model, meta = _load_classifier(checkpoint)
    if isinstance(model, LeNet):
        model = FCLeNet.from_lenet(model).eval()
    _check_layer(model, layer)
    array, _ = read_image(image)
    c = int(meta["preprocess"]["channels"])
    h, w = (array.shape[:2] if array.ndim == 2 or array.shape[-1] in (3, 4) else array.shape[1:3])
    scale = size / max(h, w)
    hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = prepare_image(array, channels=c, size=hw, name=f"IMAGE {image}")
    smallest = min(hw) / octave_scale ** (octaves - 1)
    if smallest < 32:
        raise ValueError(f"--octaves {octaves} with --octave-scale {octave_scale} shrinks the image to {smallest:.0f} "
                         "pixels, below the 32 the network needs; use fewer octaves or a larger --size")
    with err_console.status(f"dreaming: {octaves} octaves x {steps} steps", spinner="dots"):
        dreamt = deep_dream(model, x[None], layer=layer, octaves=octaves, octave_scale=octave_scale, steps=steps,
                            jitter=jitter, seed=seed).detach()[0]
    arr = dreamt.clamp(0, 1).numpy()
    arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
    write_image(out, (255 * arr).round().astype(np.uint8), overwrite=True)
    console.print(f"dream of layer {layer} ({octaves} octaves x {steps} steps, {hw[0]} x {hw[1]} px) -> {out}",
                  soft_wrap=True)

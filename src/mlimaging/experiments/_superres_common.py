r"""Helpers of the ``superres`` experiment: multiply-add counting, crops and figures, and the
through-plane section (a thick-slice volume recovered by a 3D network against linear
interpolation). See :mod:`mlimaging.experiments.superres`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from mlimaging.reporting import Run
from mlimaging.reporting.figures import plt

__all__ = ["conv_macs"]


# ------------------------------------------------------------------------------------ helpers
def conv_macs(net: nn.Module, x: torch.Tensor) -> int:
    r"""Multiply-adds of the convolutions of one forward pass of ``net`` on ``x`` (per batch item).

    A convolution costs :math:`N_{out} \cdot (C_{in}/g) \prod k` (output elements times the
    kernel's input taps), a transposed convolution :math:`N_{in} \cdot (C_{out}/g) \prod k`;
    interpolation, activations and additions are not counted.

    Examples
    --------
    >>> import torch
    >>> conv_macs(torch.nn.Conv2d(1, 2, 3, padding=1), torch.zeros(1, 1, 4, 4))  # 2 * 16 outputs x 9 taps
    288
    """
    total = [0]

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        taps = math.prod(module.kernel_size)
        if isinstance(module, (nn.ConvTranspose2d, nn.ConvTranspose3d)):
            total[0] += inputs[0][0].numel() * module.out_channels // module.groups * taps
        else:
            total[0] += output[0].numel() * module.in_channels // module.groups * taps

    kinds = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    try:
        with torch.no_grad():
            net(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total[0]


def _adam(lr: float) -> Any:
    return lambda params: torch.optim.Adam(params, lr=lr)


def _cosine(epochs: int, n: int, batch: int) -> Any:
    steps = epochs * math.ceil(n / batch)
    return lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))


def _centre(img: torch.Tensor, size: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    side = min(size, h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return img[..., top : top + side, left : left + side]


def _sharpness(sr: torch.Tensor, hr: torch.Tensor, border: int) -> float:
    def grad(x: torch.Tensor) -> float:
        x = x[..., border:-border, border:-border].clamp(0, 1).double()
        return float(
            ((x[..., 1:, :-1] - x[..., :-1, :-1]) ** 2 + (x[..., :-1, 1:] - x[..., :-1, :-1]) ** 2)
            .sqrt()
            .mean()
        )

    return grad(sr) / grad(hr)


def _show(ax: Any, img: Any, title: str | None = None, **kw: Any) -> None:
    ax.imshow(
        np.asarray(img),
        cmap="gray",
        vmin=kw.pop("vmin", 0.0),
        vmax=kw.pop("vmax", 1.0),
        interpolation="nearest",
        **kw,
    )
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def _texture_window(hr: torch.Tensor, side: int, margin: int) -> tuple[int, int]:
    """Top-left corner of the ``side``-pixel window with the most gradient energy (the zoomed
    crop), at least ``margin`` pixels from the image's border (where SR outputs are not scored)."""
    g = hr[0, 0].double()
    e = torch.zeros_like(g)
    e[1:, 1:] = (g[1:, 1:] - g[:-1, 1:]).abs() + (g[1:, 1:] - g[1:, :-1]).abs()
    inner = e[margin : e.shape[0] - margin, margin : e.shape[1] - margin]
    side = min(side, *inner.shape)
    step = max(side // 4, 1)
    pooled = nn.functional.avg_pool2d(inner[None, None], side, stride=step)[0, 0]
    i, j = divmod(int(pooled.argmax()), pooled.shape[1])
    return margin + i * step, margin + j * step


def _load_volume(kind: str, seed: int) -> tuple[np.ndarray, tuple[float, ...]]:
    if kind == "anatomical":
        import nibabel as nib

        from mlimaging.data.samples import sample_file

        img = nib.load(sample_file("anatomical.nii"))
        vol = np.asarray(img.get_fdata(), dtype=np.float64)
        spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    else:
        from mlimaging.data.phantoms import make_phantom

        vol, _ = make_phantom(
            (48, 48, 48), seed=seed, n_structures=8, partial_volume=1.0, variability=0.5
        )
        spacing = (1.0, 1.0, 1.0)
    lo, hi = np.percentile(vol, [0.5, 99.5])
    vol = np.clip((vol - lo) / (hi - lo), 0, 1).astype(np.float32)
    return vol[..., : vol.shape[-1] - vol.shape[-1] % 4], spacing


def _volume_section(cfg: Any, p: dict[str, Any], run: Run) -> None:
    from mlimaging.inverse.superres import through_plane_degrade
    from mlimaging.metrics import psnr, ssim
    from mlimaging.models import create_model
    from mlimaging.models.superres import upsample_interp
    from mlimaging.training import fit

    s = 4
    vol, spacing = _load_volume(p["volume"], cfg.seed)
    thick = through_plane_degrade(vol, s, axis=-1)
    half = vol.shape[0] // 2
    hr_train, hr_test = torch.from_numpy(vol[:half]), torch.from_numpy(vol[half + 1 :])
    lr_train, lr_test = thick[:half], thick[half + 1 :]
    # training blocks: 16-voxel in-plane windows of the training half, with flips
    k = min(16, half, vol.shape[1])
    lrs, hrs = [], []
    for a in range(0, half - k + 1, 4):
        for b in range(0, vol.shape[1] - k + 1, 4):
            for flip in ((), (0,), (1,), (0, 1)):
                lrs.append(
                    lr_train[a : a + k, b : b + k].flip(flip)
                    if flip
                    else lr_train[a : a + k, b : b + k]
                )
                hrs.append(
                    hr_train[a : a + k, b : b + k].flip(flip)
                    if flip
                    else hr_train[a : a + k, b : b + k]
                )
    data = TensorDataset(
        torch.stack(lrs)[:, None].contiguous(), torch.stack(hrs)[:, None].contiguous()
    )
    kwargs = {"depth": 3, "features": 8} if cfg.quick else {"depth": 6, "features": 16}
    net = create_model("vdsr", scale=(1, 1, s), spatial_dims=3, seed=cfg.seed, **kwargs)
    c0 = time.process_time()
    fit(
        net,
        data,
        loss=nn.L1Loss(),
        metrics=(),
        epochs=p["volume_epochs"],
        batch_size=8,
        seed=cfg.seed,
        optimizer=_adam(1e-3),
        scheduler=_cosine(p["volume_epochs"], len(data), 8),
        scheduler_interval="step",
        progress=False,
    )
    cpu = time.process_time() - c0
    x = lr_test[None, None]
    with torch.no_grad():
        outs = {
            "thick slices (nearest)": x.repeat_interleave(s, dim=-1),
            "linear interpolation": upsample_interp(x, (1, 1, s)),
            "3D VDSR": net.eval()(x),
        }
    truth = hr_test.numpy().astype(np.float64)
    rows = []
    for method, out in outs.items():
        a = out[0, 0].clamp(0, 1).numpy().astype(np.float64)
        rows.append(
            {
                "method": method,
                "PSNR dB": float(psnr(a, truth, data_range=1.0)),
                "SSIM": float(ssim(a, truth, data_range=1.0)),
            }
        )
    thin, thickness = spacing[2], spacing[2] * s
    run.section(
        "4. Through-plane x4",
        f"{'nibabel anatomical.nii' if p['volume'] == 'anatomical' else 'Phantom'} "
        f"{tuple(vol.shape)} at {spacing} mm; every {s} slices averaged into one ({thin:g} mm -> "
        f"{thickness:g} mm, {thick.shape[-1]} thick slices). A 3D VDSR ({kwargs['depth']} layers, "
        f"{kwargs['features']} features, scale (1, 1, {s}): trilinear pre-upsampling along the slice axis "
        f"only) trained {p['volume_epochs']} epochs ({cpu:.1f} CPU s) on {len(data)} blocks (with flips) of "
        f"the first {half} planes along axis 0; scored on the other {vol.shape[0] - half - 1} planes.",
    )
    run.table("Through-plane x4", rows)
    j = hr_test.shape[1] // 2
    panels = {
        "truth": truth[:, j],
        **{m: o[0, 0, :, j].clamp(0, 1).numpy() for m, o in outs.items()},
    }
    fig, axes = plt.subplots(2, len(panels), figsize=(1.9 * len(panels), 4.0))
    aspect = spacing[2] / spacing[0]
    for c, (m, img) in enumerate(panels.items()):
        _show(axes[0, c], img.T, m, aspect=aspect, origin="lower")
        err = np.abs(img - truth[:, j]).T
        _show(
            axes[1, c],
            err,
            f"|error| (max {err.max():.2f})" if c else "",
            vmax=0.3,
            aspect=aspect,
            origin="lower",
        )
    axes[1, 0].set_visible(False)
    run.figure(
        fig,
        "through-plane-x4",
        caption="A plane through the held-out half across the slices (slice axis "
        "vertical); bottom: absolute errors (0 to 0.3).",
    )
    run.log(through_plane=rows, volume_shape=list(vol.shape), volume_train_cpu_s=cpu)

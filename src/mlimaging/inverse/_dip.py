r"""The deep image prior (Ulyanov, Vedaldi & Lempitsky 2018) with no-reference early stopping."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from ._denoisers import _float, _int, _seeded
from .base import Operator
from .solvers import Reconstruction, _progress, _psnr_fn, _setup

__all__ = ["DIPReconstruction", "deep_image_prior"]

EARLY_STOPPING = ("variance", "discrepancy", None)


@dataclass
class DIPReconstruction(Reconstruction):
    """Result of :func:`~mlimaging.inverse.learned.deep_image_prior`: a Reconstruction plus the stopping rule's trace.

    Attributes
    ----------
    stop_iteration : int
        The iteration (1-based) whose output is ``x``: the one the rule chose (the last one when
        ``early_stopping=None``).
    variance : list of float
        The windowed running variance of the outputs after each iteration (from iteration
        ``window`` on; rule ``"variance"``).
    x_last : Tensor
        The output of the last iteration run.
    """

    stop_iteration: int = 0
    variance: list[float] = field(default_factory=list)
    x_last: Tensor | None = None


def _block(cin: int, cout: int, k: int = 3, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, padding_mode="reflect" if k > 1 else "zeros"),
            nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True)]


class _SkipNet(nn.Module):
    """Ulyanov et al.'s encoder-decoder with skip connections ("skip" architecture), small."""

    def __init__(self, cin: int, cout: int, channels: tuple[int, ...], skip: int) -> None:
        super().__init__()
        self.skip = skip
        self.down, self.skips, self.up = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        c = cin
        for ch in channels:
            self.skips.append(nn.Sequential(*_block(c, skip, 1)) if skip else nn.Identity())
            self.down.append(nn.Sequential(*_block(c, ch, 3, 2), *_block(ch, ch)))
            c = ch
        for i in reversed(range(len(channels))):
            target = channels[i - 1] if i > 0 else channels[0]
            self.up.append(nn.Sequential(nn.BatchNorm2d(c + skip), *_block(c + skip, target), *_block(target, target, 1)))
            c = target
        self.out = nn.Conv2d(c, cout, 1)

    def forward(self, z: Tensor) -> Tensor:
        skips = []
        for skip, down in zip(self.skips, self.down, strict=True):
            skips.append(skip(z))
            z = down(z)
        for up in self.up:
            z = F.interpolate(z, scale_factor=2.0, mode="bilinear", align_corners=False)
            s = skips.pop()
            z = up(torch.cat([z, s], 1) if self.skip else z)
        return torch.sigmoid(self.out(z))


def deep_image_prior(y: Tensor, operator: Operator, *, steps: int = 2000, lr: float = 0.01,
                     early_stopping: str | None = "variance", window: int = 50, patience: int = 200,
                     noise_level: float | None = None, tau: float = 1.0, stop: bool = True,
                     channels: tuple[int, ...] = (32, 64, 64), skip: int = 4, input_channels: int = 32,
                     input_jitter: float = 1.0 / 30.0, x_true: Tensor | None = None, data_range: float | None = None,
                     seed: int = 0, progress: bool = False) -> DIPReconstruction:
    r"""Deep image prior: fit an untrained encoder-decoder from fixed noise to one measurement.

    .. math::

        \hat\theta = \arg\min_\theta \|A f_\theta(z) - y\|_2^2, \qquad \hat x = f_{\hat\theta}(z)

    with :math:`z` fixed uniform noise in :math:`[0, 0.1]` (jittered by
    :math:`\mathcal N(0, \text{input\_jitter}^2)` at each step) and :math:`f_\theta` a U-Net-like
    "skip" network with a sigmoid output (images in [0, 1]), trained by Adam (Ulyanov, Vedaldi &
    Lempitsky 2018, "Deep image prior", CVPR, arXiv:1711.10925). The network fits natural-image
    structure before noise, so the PSNR against the truth rises, peaks and then falls as it fits
    the noise: it must stop early. Two no-reference rules choose the output:

    ``"variance"`` (ES-WMV)
        The running variance of the outputs over a window of :math:`W` iterations,
        :math:`V_t = \frac1W \sum_{i=t-W+1}^{t} \tfrac1n\|x_i - \bar x_t\|^2`, falls while the
        network converges to the image and rises when it starts to fit noise; the output at the
        minimum of :math:`V` is returned, and the run stops after ``patience`` iterations without
        a new minimum (Wang, Li, Zhuang, Chen, Liang & Sun 2021/2023, "Early stopping for deep
        image prior", TMLR, arXiv:2112.06074).
    ``"discrepancy"``
        Morozov's discrepancy principle: stop at the first iteration where the residual reaches
        the noise level, :math:`\tfrac1m\|Ax_t - y\|^2 \le \tau\sigma^2` (needs ``noise_level``
        :math:`\sigma`).

    This is a per-measurement optimisation (one image, one network), not dataset training, so it
    is a plain optimiser loop rather than :func:`~mlimaging.training.fit`.

    Parameters
    ----------
    y : Tensor
        One measurement, batch size 1.
    operator : Operator
        :math:`A`; :math:`A^\top y` must be a 2D image ``(1, C, H, W)``.
    steps : int
        Maximum number of Adam steps.
    lr : float
        Adam learning rate.
    early_stopping : {"variance", "discrepancy", None}
        The stopping rule (None: return the last output).
    window, patience : int
        ES-WMV's window :math:`W` and patience.
    noise_level, tau : float
        :math:`\sigma` and :math:`\tau` of the discrepancy principle.
    stop : bool
        Stop the iterations when the rule fires (False: run all ``steps``, e.g. to draw the whole
        PSNR curve; the rule still chooses the output).
    channels : tuple of int
        Channels per scale of the network (its depth is ``len(channels)``; the image is padded by
        reflection to a multiple of :math:`2^{\text{depth}}` and cropped back).
    skip, input_channels : int
        Channels of the skip connections and of the input noise.
    input_jitter : float
        Standard deviation of the per-step perturbation of :math:`z` (0: none).
    x_true, data_range : Tensor, float, optional
        Reference image for the PSNR curve.
    seed : int
        Seeds the network weights, :math:`z` and the jitter (the global RNG is not touched).
    progress : bool
        Show a progress bar.

    Returns
    -------
    DIPReconstruction
        ``x`` (the chosen output), ``objective`` (:math:`\tfrac1m\|Ax_t - y\|^2`, the MSE
        minimised), ``psnr`` (with ``x_true``), ``stop_iteration``, ``variance``, ``x_last``;
        ``converged`` says whether the rule fired.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.inverse.operators import Identity
    >>> x = torch.zeros(1, 1, 16, 16); x[..., 4:12, 4:12] = 0.8
    >>> y = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    >>> rec = deep_image_prior(y, Identity(), steps=20, channels=(8, 8), input_channels=8, window=5, x_true=x)
    >>> tuple(rec.x.shape), len(rec.psnr) == rec.iterations, 1 <= rec.stop_iteration <= rec.iterations
    ((1, 1, 16, 16), True, True)
    """
    y, aty, _, x_true = _setup(y, operator, None, x_true)
    if aty.ndim != 4 or aty.shape[0] != 1:
        raise ValueError(f"deep_image_prior reconstructs one 2D image at a time: operator.A_adjoint(y) must be "
                         f"(1, C, H, W), got {tuple(aty.shape)}")
    if early_stopping not in EARLY_STOPPING:
        raise ValueError(f"early_stopping must be 'variance', 'discrepancy' or None, got {early_stopping!r}")
    steps, window, patience = _int(steps, "steps"), _int(window, "window"), _int(patience, "patience")
    lr, tau, input_jitter = _float(lr, "lr", positive=True), _float(tau, "tau"), _float(input_jitter, "input_jitter")
    skip, input_channels, seed = _int(skip, "skip", 0), _int(input_channels, "input_channels"), _int(seed, "seed", 0)
    if not isinstance(channels, (tuple, list)) or not channels:
        raise ValueError(f"channels must be a non-empty tuple of ints, got {channels!r}")
    chans = tuple(_int(c, "channels") for c in channels)
    if early_stopping == "discrepancy":
        if noise_level is None:
            raise ValueError("noise_level (the noise standard deviation) is needed by early_stopping='discrepancy'")
        noise_level = _float(noise_level, "noise_level", positive=True)
    psnr = _psnr_fn(x_true, data_range)
    t0 = time.perf_counter()
    h, w = aty.shape[-2:]
    m = 2 ** len(chans)
    hp, wp = h + (-h) % m, w + (-w) % m
    g = torch.Generator().manual_seed(seed)
    with _seeded(seed):
        net = _SkipNet(input_channels, aty.shape[1], chans, skip).to(device=aty.device, dtype=aty.dtype)
    z0 = (0.1 * torch.rand(1, input_channels, hp, wp, generator=g)).to(device=aty.device, dtype=aty.dtype)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rec = DIPReconstruction(aty)
    recent: list[Tensor] = []
    best_var, since_best, chosen, chosen_step = math.inf, 0, None, 0
    with _progress(steps, progress, "deep image prior") as advance:
        for k in range(steps):
            z = z0
            if input_jitter > 0:
                z = z0 + input_jitter * torch.randn(z0.shape, generator=g).to(z0)
            x = net(z)[..., :h, :w]
            loss = torch.mean((operator.A(x) - y) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            x = x.detach()
            value = float(loss.detach())
            rec.objective.append(value)  # residual of x_k, the output this step fitted
            if psnr is not None:
                rec.psnr.append(psnr(x))
            rec.iterations = k + 1
            advance()
            fired = False
            if early_stopping == "variance":
                recent.append(x)
                if len(recent) > window:
                    recent.pop(0)
                if len(recent) == window:
                    stack = torch.stack(recent)
                    var = float((stack - stack.mean(0)).pow(2).mean())
                    rec.variance.append(var)
                    if var < best_var:
                        best_var, since_best, chosen, chosen_step = var, 0, x, k + 1
                    else:
                        since_best += 1
                        fired = since_best >= patience
            elif early_stopping == "discrepancy":
                if chosen is None and value <= tau * noise_level**2:
                    chosen, chosen_step, fired = x, k + 1, True
            if fired:
                rec.converged = True
                if stop:
                    break
    rec.x_last = x
    if chosen is None:
        chosen, chosen_step = x, rec.iterations
    rec.x, rec.stop_iteration = chosen, chosen_step
    rec.seconds = time.perf_counter() - t0
    return rec

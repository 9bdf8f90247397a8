r"""Learned reconstruction: plug-and-play denoisers, unrolled networks, GAN priors, deep image prior.

Every method takes ``(y, operator)`` like the classical solvers of
:mod:`mlimaging.inverse.solvers` and returns the same :class:`~mlimaging.inverse.solvers.Reconstruction`
(estimate, per-iteration history, PSNR against ``x_true`` when given).

==============================  ==========================================  =========================
method                          prior                                       trained on
==============================  ==========================================  =========================
:func:`pnp`                     a Gaussian denoiser used as a prox          patches (any operator)
:class:`UnrolledNet`            K learned proximal-gradient steps           (y, x) pairs of one operator
:func:`csgm`                    the range of a generator :math:`G(z)`       the generator's data only
:func:`deep_image_prior`        the architecture of an untrained CNN        nothing (one measurement)
==============================  ==========================================  =========================

Conventions: a *denoiser* is a callable ``(x, sigma) -> x`` on ``(B, C, H, W)`` tensors
(:class:`DnCNN` ignores ``sigma``, :class:`UNetDenoiser` takes it as a noise-map input); images
are in [0, 1] for the networks trained here; ``sigma`` is in the same units.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._denoisers import (
    DEFAULT_TRAIN_IMAGES,
    DnCNN,
    PatchDataset,
    SelfEnsemble,
    UNetDenoiser,
    _as_images,
    _float,
    _int,
    _seeded,
    _SeededPatches,
    default_denoiser,
    load_training_images,
    train_denoiser,
)
from ._dip import DIPReconstruction, deep_image_prior
from .base import Operator
from .solvers import (
    Reconstruction,
    _fourier_diagonal,
    _progress,
    _psnr_fn,
    _setup,
    _transfer,
    tikhonov,
)

__all__ = [
    "DEFAULT_TRAIN_IMAGES",
    "DIPReconstruction",
    "DnCNN",
    "MeasurementDataset",
    "PatchDataset",
    "SelfEnsemble",
    "UNetDenoiser",
    "UnrolledNet",
    "csgm",
    "deep_image_prior",
    "default_denoiser",
    "load_training_images",
    "pnp",
    "train_denoiser",
    "train_unrolled",
]

Denoiser = Callable[[Tensor, Any], Tensor]


def _schedule(value: float | Sequence[float], iterations: int, name: str, *, positive: bool = False) -> list[float]:
    if isinstance(value, (Sequence, np.ndarray, Tensor)) and not isinstance(value, str):
        values = [_float(float(s), name, positive=positive) for s in value]
        if len(values) != iterations:
            raise ValueError(f"{name} must be a number or one value per iteration ({iterations}), "
                             f"got {len(values)} values")
        return values
    return [_float(value, name, positive=positive)] * iterations


def _denoise(denoiser: Denoiser, v: Tensor, sigma: float) -> Tensor:
    """``denoiser(v, sigma)``, run in the dtype of a module denoiser's parameters and returned in ``v``'s."""
    param = next(denoiser.parameters(), None) if isinstance(denoiser, nn.Module) else None
    if param is None or param.dtype == v.dtype:
        return denoiser(v, sigma)
    out = denoiser(v.to(param.dtype), sigma)
    return out.to(v.dtype) if isinstance(out, Tensor) else out


class _EvalMode:
    """Put a module denoiser in eval mode for the duration (restored after)."""

    def __init__(self, denoiser: Any) -> None:
        self.module = denoiser if isinstance(denoiser, nn.Module) else None

    def __enter__(self) -> None:
        if self.module is not None:
            self.was_training = self.module.training
            self.module.eval()

    def __exit__(self, *exc: object) -> None:
        if self.module is not None:
            self.module.train(self.was_training)


# -- plug-and-play ----------------------------------------------------------------------------------
def pnp(y: Tensor, operator: Operator, *, denoiser: Denoiser, algorithm: str = "pgd", iterations: int = 50,
        sigma: float | Sequence[float] = 0.02, step: float | Sequence[float] | None = None, x0: Tensor | None = None,
        x_true: Tensor | None = None, data_range: float | None = None, cg_iterations: int = 50,
        progress: bool = False) -> Reconstruction:
    r"""Plug-and-play reconstruction: a proximal algorithm with a denoiser in place of the prox.

    With :math:`f(x) = \tfrac12\|Ax - y\|^2`, step :math:`\eta` and denoiser :math:`D_\sigma`:

    ``"pgd"`` (proximal gradient)
        :math:`x_{k+1} = D_{\sigma_k}\big(x_k - \eta A^\top(Ax_k - y)\big)`.
    ``"admm"``
        :math:`x_{k+1} = \mathrm{prox}_{\eta f}(z_k - u_k) = (A^\top A + I/\eta)^{-1}(A^\top y + (z_k - u_k)/\eta)`,
        :math:`z_{k+1} = D_{\sigma_k}(x_{k+1} + u_k)`, :math:`u_{k+1} = u_k + x_{k+1} - z_{k+1}`;
        the estimate is :math:`z`. The linear step is :func:`~mlimaging.inverse.solvers.tikhonov`
        on the residual (closed form in Fourier for a circular blur or the identity, else
        ``cg_iterations`` of CG).
    ``"hqs"`` (half-quadratic splitting)
        ADMM without the dual variable (:math:`u \equiv 0`):
        :math:`x_{k+1} = \mathrm{prox}_{\eta_k f}(z_k)`, :math:`z_{k+1} = D_{\sigma_k}(x_{k+1})`, the
        algorithm of DPIR (Zhang et al. 2021) with :math:`\sigma_k` decreasing geometrically from
        :math:`49/255` to the measurement noise :math:`\sigma_n` and
        :math:`\eta_k = \sigma_k^2/(\lambda\sigma_n^2)`; it needs a noise-conditional denoiser
        (:class:`UNetDenoiser`, or :class:`DnCNN` with ``sigma_input=True``).

    When :math:`D_\sigma = \mathrm{prox}_{\eta g}` both are the classical algorithms for
    :math:`\min f + g` and share its minimiser; a denoiser trained for Gaussian noise of level
    :math:`\sigma` plays the prox of a prior of strength :math:`\sigma^2/\eta` (Venkatakrishnan,
    Bouman & Wohlberg 2013, "Plug-and-play priors for model based reconstruction", IEEE GlobalSIP,
    doi:10.1109/GlobalSIP.2013.6737048; Zhang et al. 2021, arXiv:2008.13751, for the decreasing
    :math:`\sigma_k`). Larger :math:`\sigma` smooths more.

    Parameters
    ----------
    y : Tensor
        Measurements ``(B, ...)``.
    operator : Operator
        The forward operator :math:`A`.
    denoiser : callable
        ``(x, sigma) -> x`` on ``(B, C, H, W)`` (e.g. :class:`DnCNN`, :class:`UNetDenoiser`, or
        :func:`default_denoiser`); run under ``no_grad`` and, for a module, in eval mode.
    algorithm : {"pgd", "admm", "hqs"}
        See above.
    iterations : int
        Number of iterations.
    sigma : float or sequence of float
        Denoiser noise level, or one per iteration (a decreasing schedule often helps).
    step : float or sequence of float, optional
        :math:`\eta`, or one per iteration (default :math:`1/\|A\|_2^2`, the largest step of a
        convergent gradient descent on :math:`f`). For ADMM and HQS, :math:`\eta_k =
        \sigma_k^2/(\lambda \sigma_n^2)` with the measurement noise :math:`\sigma_n` is the
        half-quadratic-splitting schedule of Zhang et al. (2021).
    x0 : Tensor, optional
        Starting point (default :math:`A^\top y/\|A\|^2`).
    x_true, data_range : Tensor, float, optional
        Reference for the PSNR history (``data_range`` defaults to the span of ``x_true``).
    cg_iterations : int
        CG steps of the ADMM linear step when it has no closed form.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Reconstruction
        ``objective`` holds the data misfit :math:`\tfrac12\|Ax_k - y\|^2` (a plug-and-play
        prior has no explicit objective).

    Examples
    --------
    With :math:`D(v) = v/(1 + c)`, the prox of :math:`\tfrac{c}{2\eta}\|x\|^2`, both algorithms
    converge to the Tikhonov solution:

    >>> import torch
    >>> from mlimaging.inverse.operators import Blur, gaussian_kernel
    >>> op = Blur(gaussian_kernel(1.0))
    >>> y = op.A(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    >>> shrink = lambda v, sigma: v / 1.5
    >>> a = pnp(y, op, denoiser=shrink, algorithm="pgd", iterations=300)
    >>> b = pnp(y, op, denoiser=shrink, algorithm="admm", iterations=300)
    >>> bool(torch.allclose(a.x, b.x, atol=1e-4))
    True
    """
    y, aty, x0, x_true = _setup(y, operator, x0, x_true)
    if not callable(denoiser):
        raise ValueError(f"denoiser must be a callable (x, sigma) -> x, got {type(denoiser).__name__}")
    if algorithm not in ("pgd", "admm", "hqs"):
        raise ValueError(f"algorithm must be 'pgd', 'admm' or 'hqs', got {algorithm!r}")
    iterations = _int(iterations, "iterations")
    cg_iterations = _int(cg_iterations, "cg_iterations")
    sigmas = _schedule(sigma, iterations, "sigma")
    psnr = _psnr_fn(x_true, data_range)
    t0 = time.perf_counter()
    lipschitz = float(operator.norm(aty)) ** 2
    if lipschitz == 0.0:
        raise ValueError("operator has norm 0 (A x = 0 for every x): nothing to reconstruct")
    etas = [1.0 / lipschitz] * iterations if step is None else _schedule(step, iterations, "step", positive=True)
    x = aty / lipschitz if x0 is None else x0.clone()
    rec = Reconstruction(x)
    with torch.no_grad(), _EvalMode(denoiser), _progress(iterations, progress, f"PnP ({algorithm})") as advance:
        z, u = x, torch.zeros_like(x)
        for k in range(iterations):
            if algorithm == "pgd":
                x = _denoise(denoiser, x - etas[k] * operator.A_adjoint(operator.A(x) - y), sigmas[k])
                est = x
            else:
                v = z - u
                d = tikhonov(y - operator.A(v), operator, lam=1.0 / etas[k], iterations=cg_iterations).x
                x = v + d
                z = _denoise(denoiser, x + u, sigmas[k])
                if algorithm == "admm":
                    u = u + x - z
                est = z
            if not isinstance(est, Tensor) or est.shape != aty.shape:
                got = tuple(est.shape) if isinstance(est, Tensor) else type(est).__name__
                raise ValueError(f"denoiser must return a tensor of the input's shape {tuple(aty.shape)}, got {got}")
            rec.objective.append(0.5 * float(torch.sum((operator.A(est) - y) ** 2)))
            if psnr is not None:
                rec.psnr.append(psnr(est))
            rec.iterations = k + 1
            advance()
    rec.x, rec.seconds = est, time.perf_counter() - t0
    return rec


# -- unrolled proximal gradient ---------------------------------------------------------------------
class _ProxCNN(nn.Module):
    """A small residual CNN :math:`v + R(v)`; the last layer starts at zero (so it starts as the identity)."""

    def __init__(self, channels: int, features: int, depth: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True)]
        last = nn.Conv2d(features, channels, 3, padding=1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def forward(self, v: Tensor) -> Tensor:
        return v + self.body(v)


class UnrolledNet(nn.Module):
    r"""Learned proximal gradient: ``iterations`` unrolled steps with CNN proxes, trained end to end.

    .. math::

        x_0 = A^\top y / L, \qquad
        x_{k+1} = D_k\big(x_k - \eta_k A^\top(Ax_k - y)\big), \quad k = 0, \dots, K-1,

    with :math:`L = \|A\|_2^2`, learned steps :math:`\eta_k = e^{s_k}/L` (:math:`s_k = 0` at the
    start) and small residual CNNs :math:`D_k(v) = v + R_k(v)` whose last layer starts at zero, so
    the untrained network is :math:`K` steps of gradient descent (Landweber). ``shared=True`` uses
    one :math:`D` for every step (a recurrent network; fewer parameters). The operator is part of
    the network: it is trained for one :math:`A` (Gregor & LeCun 2010, "Learning fast
    approximations of sparse coding", ICML, for unrolling; Adler & Öktem 2018, "Learned
    primal-dual reconstruction", IEEE TMI 37(6), arXiv:1707.06474, for learned proximal operators
    around a physics model). Train it with :func:`train_unrolled` (through
    :func:`~mlimaging.training.fit`).

    **Deep unfolding of plug-and-play** (``denoiser=``): the proxes start as copies of a trained
    noise-conditional denoiser :math:`D(\cdot, \sigma)` (one copy with ``shared=True``) with
    learned noise levels :math:`\sigma_k = e^{\ell_k}` (start: ``sigma``) and steps
    :math:`\eta_k = e^{s_k}\eta^0_k` (start: ``step``, default :math:`1/L`); for an operator diagonal
    in Fourier (circular :class:`~mlimaging.inverse.operators.Blur`, ``Identity``) the data step is
    exact, the half-quadratic splitting of :func:`pnp` (``algorithm="hqs"``):

    .. math::

        x_{k+1} = D_k\big((A^\top A + I/\eta_k)^{-1}(A^\top y + x_k/\eta_k),\ \sigma_k\big),

    otherwise the gradient step above. Untrained, it *is* :func:`pnp` with that denoiser and
    schedule; training end to end then fits the denoisers, noise levels and steps to the
    operator (Zhang, Van Gool & Timofte 2020, "Deep unfolding network for image
    super-resolution", CVPR, arXiv:2003.10428). Batch-norm statistics of the denoiser stay frozen.

    **Initialiser** (``init``): :math:`x_0 = A^\top y/L` (``"adjoint"``, the default),
    :math:`x_0 = A^\dagger y` by ``init_iterations`` conjugate-gradient steps on the normal
    equations (``"dagger"``, :meth:`~mlimaging.inverse.base.Operator.A_dagger`), or any fixed
    reconstruction ``init(y)`` (e.g. filtered backprojection for CT, a Tikhonov fill for
    inpainting), computed without gradients. A few unrolled steps cannot travel far: started from
    a classical reconstruction, the network only has to improve on it (Jin, McCann, Froustey &
    Unser 2017, "Deep convolutional neural network for inverse problems in imaging", IEEE TIP
    26(9), arXiv:1611.03679, learn a correction of FBP; Adler & Öktem 2018 start from FBP too).

    **Data step** (``data_step``): ``"auto"`` is the behaviour above (exact HQS step in Fourier
    with a denoiser, else the gradient step); ``"gradient"`` always takes the gradient step;
    ``"hqs"`` always takes the HQS step :math:`\arg\min_x \|Ax - y\|^2/2 + \|x - x_k\|^2/(2\eta_k)`,
    exact in Fourier and otherwise ``cg_iterations`` conjugate-gradient steps on
    :math:`(A^\top A + I/\eta_k)\,x = A^\top y + x_k/\eta_k` from :math:`x_k` (per sample,
    differentiable), as DPIR does for any :math:`A` (Zhang et al. 2021, arXiv:2008.13751).

    Parameters
    ----------
    operator : Operator
        The forward operator :math:`A` (a submodule; not trained).
    iterations : int
        :math:`K`.
    shared : bool
        One CNN for all steps.
    channels : int
        Channels of :math:`A^\top y` (1 grey; 2 for the MRI operator's real layout).
    features, depth : int
        Width and number of convolutions of each CNN (unused with ``denoiser``).
    seed : int, optional
        Initialise the weights from this seed without touching the global RNG.
    denoiser : nn.Module, optional
        A trained denoiser ``(x, sigma) -> x`` (e.g. :func:`default_denoiser`; copied, not
        modified) whose copies are the proxes.
    sigma, step : float or sequence of float
        With ``denoiser``: the starting noise levels :math:`\sigma_k` and steps :math:`\eta^0_k`
        (one value or one per iteration), as in :func:`pnp`.
    init : {"adjoint", "dagger"} or callable
        The starting point :math:`x_0` (see above); a callable maps ``y`` to a tensor shaped
        like :math:`A^\top y` and is not trained.
    init_iterations : int
        CG steps of ``init="dagger"``.
    data_step : {"auto", "gradient", "hqs"}
        The data-consistency step (see above).
    cg_iterations : int
        CG steps of the HQS data step for an operator that is not diagonal in Fourier.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.inverse.operators import Blur, gaussian_kernel
    >>> op = Blur(gaussian_kernel(1.0))
    >>> net = UnrolledNet(op, iterations=3, features=8, seed=0)
    >>> y = op.A(torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    >>> tuple(net(y).shape), len(net.steps)
    ((2, 1, 16, 16), 3)

    Unfolded plug-and-play: untrained, it equals :func:`pnp` (HQS) with the same schedule:

    >>> den = DnCNN(depth=3, features=8, sigma_input=True, seed=0).eval()
    >>> unfolded = UnrolledNet(op, iterations=3, denoiser=den, sigma=[0.1, 0.05, 0.02], step=[4.0, 2.0, 1.0]).eval()
    >>> with torch.no_grad():
    ...     a = unfolded(y)
    >>> b = pnp(y, op, denoiser=den, algorithm="hqs", iterations=3, sigma=[0.1, 0.05, 0.02], step=[4.0, 2.0, 1.0]).x
    >>> bool(torch.allclose(a, b, atol=1e-5))
    True

    Fine-tuned with the bare denoiser (8x cheaper steps), the proxes can still be wrapped in the
    test-time :class:`SelfEnsemble` afterwards; untrained, that is :func:`pnp` with the ensembled
    denoiser:

    >>> unfolded.prox = nn.ModuleList(SelfEnsemble(p) for p in unfolded.prox)
    >>> with torch.no_grad():
    ...     a8 = unfolded(y)
    >>> b8 = pnp(y, op, denoiser=SelfEnsemble(den), algorithm="hqs", iterations=3, sigma=[0.1, 0.05, 0.02],
    ...          step=[4.0, 2.0, 1.0]).x
    >>> bool(torch.allclose(a8, b8, atol=1e-5)), bool(torch.allclose(a8, a, atol=1e-3))
    (True, False)

    Started from a classical reconstruction (here :math:`A^\dagger y`), the untrained network with
    CNN proxes (which start as the identity) and no steps left to take returns it unchanged:

    >>> from mlimaging.inverse.operators import Downsample
    >>> ds = Downsample(2, filter="box")
    >>> yd = ds.A(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1)))
    >>> warm = UnrolledNet(ds, iterations=1, features=8, seed=0, init="dagger", data_step="hqs").eval()
    >>> with torch.no_grad():
    ...     bool(torch.allclose(warm(yd, return_all=True)[0], ds.A_dagger(yd, iterations=20), atol=1e-6))
    True
    """

    def __init__(self, operator: Operator, *, iterations: int = 5, shared: bool = False, channels: int = 1,
                 features: int = 32, depth: int = 4, seed: int | None = None, denoiser: nn.Module | None = None,
                 sigma: float | Sequence[float] = 0.05, step: float | Sequence[float] | None = None,
                 init: str | Callable[[Tensor], Tensor] = "adjoint", init_iterations: int = 20,
                 data_step: str = "auto", cg_iterations: int = 5) -> None:
        super().__init__()
        if not isinstance(operator, Operator):
            raise ValueError(f"operator must be an mlimaging.inverse.Operator, got {type(operator).__name__}")
        if not (callable(init) or init in ("adjoint", "dagger")):
            raise ValueError(f"init must be 'adjoint', 'dagger' or a callable y -> x0, got {init!r}")
        if data_step not in ("auto", "gradient", "hqs"):
            raise ValueError(f"data_step must be 'auto', 'gradient' or 'hqs', got {data_step!r}")
        self.init = init if isinstance(init, str) else "callable"
        self._init_fn = None if isinstance(init, str) else init
        self.init_iterations = _int(init_iterations, "init_iterations")
        self.data_step = data_step
        self.cg_iterations = _int(cg_iterations, "cg_iterations")
        self.iterations = _int(iterations, "iterations")
        self.shared = bool(shared)
        channels, features, depth = _int(channels, "channels"), _int(features, "features"), _int(depth, "depth", 2)
        self.operator = operator
        for p in operator.parameters():
            p.requires_grad_(False)
        n = 1 if self.shared else self.iterations
        if denoiser is None:
            with _seeded(seed):
                self.prox = nn.ModuleList(_ProxCNN(channels, features, depth) for _ in range(n))
        else:
            if not isinstance(denoiser, nn.Module):
                raise ValueError(f"denoiser must be an nn.Module (x, sigma) -> x, got {type(denoiser).__name__}")
            self.prox = nn.ModuleList(copy.deepcopy(denoiser) for _ in range(n))
            for p in self.prox.parameters():
                p.requires_grad_(True)
            sigmas = _schedule(sigma, self.iterations, "sigma", positive=True)
            self.log_sigma = nn.Parameter(torch.log(torch.tensor(sigmas, dtype=torch.float64)).float())
            etas = [0.0] * self.iterations if step is None else _schedule(step, self.iterations, "step",
                                                                           positive=True)
            self.register_buffer("base_steps", torch.tensor(etas))  # 0: 1/||A||^2
        self.fourier = _fourier_diagonal(operator)
        self.steps = nn.Parameter(torch.zeros(self.iterations))
        self.register_buffer("lipschitz", torch.zeros(()))  # ||A||^2, computed on the first call
        self._symbol: tuple[tuple[Any, ...], Tensor] | None = None

    @property
    def conditional(self) -> bool:
        """Whether the proxes are a (noise-conditional) denoiser with learned noise levels."""
        return hasattr(self, "log_sigma")

    def train(self, mode: bool = True) -> UnrolledNet:
        """As ``nn.Module.train``; batch-norm layers of a plugged-in denoiser keep their statistics (eval)."""
        super().train(mode)
        if self.conditional:
            for m in self.prox.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def _data_prox(self, aty: Tensor, z: Tensor, eta: Tensor) -> Tensor:
        """:math:`(A^\\top A + I/\\eta)^{-1}(A^\\top y + z/\\eta)` in Fourier (circular blur, identity)."""
        key = (tuple(aty.shape[1:]), aty.dtype, aty.device)
        if self._symbol is None or self._symbol[0] != key:
            with torch.no_grad():
                self._symbol = (key, _transfer(self.operator.AtA, aty[:1]))
        dims = tuple(range(2, aty.ndim))
        spectrum = torch.fft.rfftn(aty + z / eta, dim=dims) / (self._symbol[1] + 1.0 / eta)
        return torch.fft.irfftn(spectrum, s=aty.shape[2:], dim=dims)

    def _cg_prox(self, aty: Tensor, z: Tensor, eta: Tensor) -> Tensor:
        """``cg_iterations`` CG steps on :math:`(A^\\top A + I/\\eta)x = A^\\top y + z/\\eta` from ``z``, per sample."""
        op = self.operator

        def normal(v: Tensor) -> Tensor:
            return op.A_adjoint(op.A(v)) + v / eta

        def dot(a: Tensor, b: Tensor) -> Tensor:
            return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))

        x = z
        r = aty + z / eta - normal(z)
        p, rs = r, dot(r, r)
        for _ in range(self.cg_iterations):
            mp = normal(p)
            curvature = dot(p, mp)
            alpha = torch.where(curvature > 0, rs / torch.where(curvature > 0, curvature, 1.0), 0.0)
            x, r = x + alpha * p, r - alpha * mp
            rs_new = dot(r, r)
            p = r + torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, 1.0), 0.0) * p
            rs = rs_new
        return x

    def _initial(self, y: Tensor, aty: Tensor) -> Tensor:
        """:math:`x_0`: :math:`A^\\top y/L`, :math:`A^\\dagger y` or ``init(y)`` (the last two without gradients)."""
        if self.init == "adjoint":
            return aty / self.lipschitz
        with torch.no_grad():
            if self.init == "dagger":
                x0 = self.operator.A_dagger(y.detach(), iterations=self.init_iterations)
            else:
                x0 = self._init_fn(y.detach())
        if not isinstance(x0, Tensor) or x0.shape != aty.shape:
            got = tuple(x0.shape) if isinstance(x0, Tensor) else type(x0).__name__
            raise ValueError(f"init must return a tensor shaped like A^T y {tuple(aty.shape)}, got {got}")
        return x0.detach().to(aty.dtype)

    def _data(self, y: Tensor, aty: Tensor, x: Tensor, eta: Tensor) -> Tensor:
        op = self.operator
        hqs = self.data_step == "hqs" or (self.data_step == "auto" and self.conditional and self.fourier)
        if not hqs:
            return x - eta * op.A_adjoint(op.A(x) - y)
        return self._data_prox(aty, x, eta) if self.fourier else self._cg_prox(aty, x, eta)

    def forward(self, y: Tensor, *, return_all: bool = False) -> Tensor | list[Tensor]:
        op = self.operator
        aty = op.A_adjoint(y)
        if float(self.lipschitz) == 0.0:
            with torch.no_grad():
                self.lipschitz.fill_(float(op.norm(aty.detach())) ** 2)
        x = self._initial(y, aty)
        xs = [x]
        for k in range(self.iterations):
            prox = self.prox[0 if self.shared else k]
            if not self.conditional:
                eta = torch.exp(self.steps[k]) / self.lipschitz
                x = prox(self._data(y, aty, x, eta))
            else:
                base = self.base_steps[k] if float(self.base_steps[k]) > 0 else 1.0 / self.lipschitz
                eta = torch.exp(self.steps[k]) * base
                v = self._data(y, aty, x, eta)
                x = prox(v, torch.exp(self.log_sigma[k]).expand(v.shape[0]))
            xs.append(x)
        return xs if return_all else x


def _noise_range(value: object) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2 or _float(value[0], "noise") > _float(value[1], "noise"):
            raise ValueError(f"noise must be a number or a (low, high) pair with low <= high, got {value!r}")
        return float(value[0]), float(value[1])
    v = _float(value, "noise")
    return v, v


class MeasurementDataset(_SeededPatches):
    r"""``(y, x)`` pairs made on the fly: :math:`y = A x + \sigma n` for random patches :math:`x`.

    Item ``i`` comes from generators seeded by ``(seed, i)`` (patch, flip/rotation, noise level and
    noise), so a run through :func:`~mlimaging.training.fit` is repeatable and resumable. The
    noise is added here (Gaussian, level ``noise`` or uniform in a range), not by the operator's
    noise model (which keeps a state).

    Parameters
    ----------
    operator : Operator
        :math:`A`.
    images : optional
        As :class:`PatchDataset` (default: the bundled training images, camera held out).
    patch_size : int or None
        Side of the square patches (None: whole images, which must then share a size).
    length : int
        Number of items.
    noise : float or (float, float)
        Noise level :math:`\sigma` or a range to draw it from.
    augment : bool
        Random flips and 90-degree rotations.
    seed : int
        Seed of the items.

    Examples
    --------
    >>> from mlimaging.inverse.operators import Blur, gaussian_kernel
    >>> ds = MeasurementDataset(Blur(gaussian_kernel(1.0)), ["coins"], patch_size=16, length=8, noise=0.01)
    >>> y, x = ds[3]
    >>> tuple(y.shape), tuple(x.shape)
    ((1, 16, 16), (1, 16, 16))
    """

    def __init__(self, operator: Operator, images: Any = None, *, patch_size: int | None = 64, length: int = 1024,
                 noise: float | tuple[float, float] = 0.01, augment: bool = True, seed: int = 0) -> None:
        if not isinstance(operator, Operator):
            raise ValueError(f"operator must be an mlimaging.inverse.Operator, got {type(operator).__name__}")
        super().__init__(images, patch_size, length, augment, seed)
        self.operator = operator
        self.noise = _noise_range(noise)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rng, g, x = self._draw(index)
        lo, hi = self.noise
        s = lo + (hi - lo) * float(rng.random())
        with torch.no_grad():
            ax = self.operator.A(x[None])[0]
        return ax + s * torch.randn(ax.shape, generator=g, dtype=ax.dtype), x


def train_unrolled(operator: Operator, *, iterations: int = 5, shared: bool = False, images: Any = None,
                   patch_size: int = 64, samples: int = 1024, noise: float | tuple[float, float] = 0.01,
                   epochs: int = 10, batch_size: int = 16, lr: float = 1e-3, val_samples: int = 64,
                   features: int = 32, depth: int = 4, seed: int = 0, device: str | torch.device = "cpu",
                   progress: bool = False, denoiser: nn.Module | None = None,
                   sigma: float | Sequence[float] = 0.05, step: float | Sequence[float] | None = None,
                   init: str | Callable[[Tensor], Tensor] = "adjoint", init_iterations: int = 20,
                   data_step: str = "auto", cg_iterations: int = 5,
                   **fit_kwargs: Any) -> tuple[UnrolledNet, Any]:
    r"""Train an :class:`UnrolledNet` for ``operator`` end to end through :func:`~mlimaging.training.fit`.

    Minimises :math:`\mathbb E\,\|\mathrm{Net}_\theta(Ax + \sigma n) - x\|^2` over a
    :class:`MeasurementDataset` of ``samples`` patches (validation: ``val_samples`` others, seed
    + 1), Adam with a cosine decay of the learning rate over all steps.

    Parameters
    ----------
    operator : Operator
        :math:`A`.
    iterations, shared, features, depth, denoiser, sigma, step, init, init_iterations, data_step, cg_iterations
        As :class:`UnrolledNet` (``denoiser``: start from plug-and-play with it and fine-tune;
        ``init``: start each reconstruction from a classical one, e.g. ``init="dagger"`` or
        ``init=lambda y: op.fbp(y)`` for CT).
    images, patch_size, samples, noise
        As :class:`MeasurementDataset` (``samples`` is its ``length``).
    epochs, batch_size, lr, seed, device, progress, **fit_kwargs
        Passed to :func:`~mlimaging.training.fit`; ``seed`` also seeds the weights and the data.
    val_samples : int
        Validation items (0: none).

    Returns
    -------
    (UnrolledNet, History)
        The trained network in eval mode, and the history (``loss``, ``val_loss``: MSE).

    Examples
    --------
    >>> from mlimaging.inverse.operators import Blur, gaussian_kernel
    >>> net, hist = train_unrolled(Blur(gaussian_kernel(1.0)), iterations=2, images=["coins"],
    ...                            patch_size=16, samples=32, epochs=2, features=8, val_samples=0)
    >>> hist["loss"][-1] < hist["loss"][0]
    True
    """
    from mlimaging.training import fit

    seed = _int(seed, "seed", 0)
    epochs, batch_size, samples = _int(epochs, "epochs"), _int(batch_size, "batch_size"), _int(samples, "samples")
    val_samples = _int(val_samples, "val_samples", 0)
    lr = _float(lr, "lr", positive=True)
    imgs = _as_images(images)
    net = UnrolledNet(operator, iterations=iterations, shared=shared, channels=imgs[0].shape[0],
                      features=features, depth=depth, seed=seed, denoiser=denoiser, sigma=sigma, step=step,
                      init=init, init_iterations=init_iterations, data_step=data_step, cg_iterations=cg_iterations)
    train = MeasurementDataset(operator, imgs, patch_size=patch_size, length=samples, noise=noise, seed=seed)
    val = (MeasurementDataset(operator, imgs, patch_size=patch_size, length=val_samples, noise=noise,
                              augment=False, seed=seed + 1) if val_samples else None)
    total = epochs * math.ceil(samples / batch_size)
    fit_kwargs.setdefault("scheduler", lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, total))
    fit_kwargs.setdefault("scheduler_interval", "step")
    history = fit(net, train, val, loss=nn.MSELoss(), optimizer=lambda p: torch.optim.Adam(p, lr=lr), epochs=epochs,
                  batch_size=batch_size, seed=seed, metrics=(), device=device, progress=progress, **fit_kwargs)
    return net.eval(), history


def _db(data_range: float, mse: float) -> float:
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


# -- GAN prior --------------------------------------------------------------------------------------
def csgm(y: Tensor, operator: Operator, *, generator: nn.Module, steps: int = 500, lr: float = 0.05,
         restarts: int = 5, z_dim: int | None = None, lam: float = 0.0, seed: int = 0,
         x_true: Tensor | None = None, data_range: float | None = None, progress: bool = False) -> Reconstruction:
    r"""Compressed sensing with a generative prior: search the generator's latent space.

    .. math::

        \hat z = \arg\min_z \|A G(z) - y\|_2^2 + \lambda \|z\|_2^2, \qquad \hat x = G(\hat z)

    by Adam on :math:`z` from ``restarts`` seeded starts :math:`z_0 \sim \mathcal N(0, I)`, keeping
    per sample the restart with the smallest final objective (Bora, Jalal, Price & Dimakis 2017,
    "Compressed sensing using generative models", ICML, arXiv:1703.03208). The estimate is always
    in the generator's range, so the prior only covers its training distribution: a DCGAN trained
    on MNIST digits (:class:`mlimaging.generative.DCGANGenerator`) reconstructs digits and nothing
    else. This is a per-measurement optimisation (only :math:`z` is optimised; the generator is
    frozen and run in eval mode), not dataset training, so it is a plain optimiser loop rather than
    :func:`~mlimaging.training.fit`.

    Parameters
    ----------
    y : Tensor
        Measurements ``(B, ...)``.
    operator : Operator
        :math:`A`.
    generator : nn.Module
        :math:`G`: ``(N, z_dim) -> (N, C, H, W)``.
    steps : int
        Adam steps per restart (the restarts run together as one batch).
    lr : float
        Adam learning rate.
    restarts : int
        Random starts per sample.
    z_dim : int, optional
        Latent dimension (default ``generator.latent_dim``).
    lam : float
        Weight :math:`\lambda` of the Gaussian latent prior.
    seed : int
        Seed of the starting latents.
    x_true, data_range, progress
        As in :func:`pnp`.

    Returns
    -------
    Reconstruction
        ``objective``: the chosen restart's objective after each step (summed over the batch);
        ``psnr``: its PSNR when ``x_true`` is given.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from mlimaging.inverse.operators import Identity
    >>> G = nn.Sequential(nn.Linear(2, 16), nn.Unflatten(1, (1, 4, 4)))
    >>> y = G(torch.tensor([[0.5, -1.0]])).detach()
    >>> rec = csgm(y, Identity(), generator=G, steps=300, lr=0.1, restarts=2, z_dim=2)
    >>> rec.objective[-1] < 1e-6
    True
    """
    y = y if isinstance(y, Tensor) else torch.as_tensor(y)
    if not isinstance(generator, nn.Module) and not callable(generator):
        raise ValueError(f"generator must be an nn.Module (z -> image), got {type(generator).__name__}")
    y, aty, _, x_true = _setup(y, operator, None, x_true)
    steps, restarts = _int(steps, "steps"), _int(restarts, "restarts")
    lr, lam, seed = _float(lr, "lr", positive=True), _float(lam, "lam"), _int(seed, "seed", 0)
    if z_dim is None:
        z_dim = getattr(generator, "latent_dim", None)
        if z_dim is None:
            raise ValueError("z_dim must be given for a generator without a latent_dim attribute")
    z_dim = _int(z_dim, "z_dim")
    psnr = _psnr_fn(x_true, data_range)
    t0 = time.perf_counter()
    b = y.shape[0]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(restarts * b, z_dim, generator=g).to(device=y.device, dtype=y.dtype).requires_grad_(True)
    target = y.repeat(restarts, *([1] * (y.ndim - 1)))
    opt = torch.optim.Adam([z], lr=lr)
    losses, mses = [], []
    dr = 1.0
    if x_true is not None and data_range is None:
        dr = float(x_true.max() - x_true.min()) or 1.0
    elif x_true is not None:
        dr = _float(data_range, "data_range", positive=True)
    with _EvalMode(generator), _progress(steps, progress, "CSGM") as advance:
        for _ in range(steps):
            x = generator(z)
            if x.shape[1:] != aty.shape[1:]:
                raise ValueError(f"generator outputs {tuple(x.shape[1:])} per sample; the operator expects "
                                 f"{tuple(aty.shape[1:])}")
            per = (operator.A(x) - target).pow(2).flatten(1).sum(1) + lam * z.pow(2).sum(1)
            (grad,) = torch.autograd.grad(per.sum(), z)
            z.grad = grad
            opt.step()
            losses.append(per.detach().view(restarts, b))
            if x_true is not None:
                diff = x.detach().view(restarts, b, *x.shape[1:]) - x_true
                mses.append(diff.double().pow(2).flatten(2).mean(2))
            advance()
        with torch.no_grad():  # the objective at the final z decides the restart
            x = generator(z)
            final = ((operator.A(x) - target).pow(2).flatten(1).sum(1) + lam * z.pow(2).sum(1)).view(restarts, b)
    choice = final.argmin(0)
    cols = torch.arange(b, device=choice.device)
    xs = x.detach().view(restarts, b, *x.shape[1:])
    rec = Reconstruction(xs[choice, cols], iterations=steps)
    rec.objective = [float(v[choice, cols].sum()) for v in losses[1:]] + [float(final[choice, cols].sum())]
    if psnr is not None:
        rec.psnr = [_db(dr, float(m[choice, cols].mean())) for m in mses[1:]] + [psnr(rec.x)]
    rec.seconds = time.perf_counter() - t0
    return rec

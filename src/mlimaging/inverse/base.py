r"""The forward-operator abstraction of :mod:`mlimaging.inverse`: :math:`y = N(A x)`.

Conventions (shared by every operator and solver of the area):

* An :class:`Operator` is a ``torch.nn.Module`` (so its masks, kernels and coil maps are
  buffers that follow ``.to(device)`` and ``state_dict``) with a **linear** map
  :meth:`Operator.A`, its **true adjoint** :meth:`Operator.A_adjoint` for the real inner
  product :math:`\langle u, v \rangle = \sum_i u_i v_i` over all entries of the tensors
  (complex data are stored as two real channels, so this is the real part of the complex
  inner product, the one for which the adjoint of a Fourier transform is its inverse), and a
  noise model :attr:`Operator.noise`. Calling the operator simulates a measurement,
  ``op(x) = noise(A(x))``.
* Tensors are batch-first, ``(B, C, *spatial)``. Inner products, step sizes and stopping
  tests in :meth:`Operator.A_dagger` and :meth:`Operator.norm` are **per sample** (one value
  per batch element), so a batch converges like its samples would one by one.
* Solvers take ``(y, operator)`` and need only ``A``, ``A_adjoint``, ``A_dagger`` and
  ``norm``; operators compose with ``@``: ``(op2 @ op1).A(x) = op2.A(op1.A(x))``.

References
----------
M. R. Hestenes and E. Stiefel, "Methods of conjugate gradients for solving linear systems",
J. Res. Nat. Bur. Standards 49(6), 1952 (conjugate gradient on the normal equations).
R. von Mises and H. Pollaczek-Geiringer, "Praktische Verfahren der Gleichungsauflösung",
ZAMM 9, 1929 (power iteration).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["ComposedOperator", "GaussianNoise", "Operator", "PoissonNoise", "conjugate_gradient"]


def _check_finite_tensor(x: object, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name} must be batch-first (B, C, *spatial), got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def _check_positive(value: object, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {expected}, got {value!r}")
    return v


def _batch_dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Per-sample real inner product, shape (B, 1, ..., 1) broadcastable against u."""
    prod = (u.conj() * v).real if u.is_complex() else u * v
    return prod.flatten(1).sum(1).view(-1, *([1] * (u.ndim - 1)))


def _make_generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator:
    if generator is not None and seed is not None:
        raise ValueError("give either seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        return generator
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    g = torch.Generator()
    g.manual_seed(0 if seed is None else seed)
    return g


def _reset(noise: GaussianNoise | PoissonNoise) -> None:
    if noise._seed is None:
        raise ValueError(
            "reset() needs the noise model to own its generator (give seed, not generator)"
        )
    noise.generator.manual_seed(noise._seed)


class GaussianNoise(nn.Module):
    r"""Additive white Gaussian noise, :math:`y = z + \sigma \varepsilon`, :math:`\varepsilon \sim \mathcal N(0, I)`.

    Parameters
    ----------
    sigma : float
        Standard deviation :math:`\sigma \ge 0` (0 gives noiseless measurements).
    seed : int, optional
        Seed of the module's own CPU generator (default 0): two instances with the same seed
        draw the same sequence; :meth:`reset` rewinds it. Never touches the global RNG.
    generator : torch.Generator, optional
        A CPU generator to draw from instead (exclusive with ``seed``).

    Notes
    -----
    Noise is drawn on the CPU in float64 and then moved to ``z``'s device and dtype, so a
    seeded run is bit-for-bit repeatable on every device. Complex ``z`` gets
    :math:`\sigma (\varepsilon_1 + i \varepsilon_2)/\sqrt 2` (variance :math:`\sigma^2` per entry).

    Examples
    --------
    >>> import torch
    >>> noise = GaussianNoise(0.1, seed=3)
    >>> a = noise(torch.zeros(1, 1, 4, 4))
    >>> noise.reset()
    >>> bool(torch.equal(a, noise(torch.zeros(1, 1, 4, 4))))
    True
    """

    def __init__(
        self, sigma: float, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.sigma = _check_positive(sigma, "sigma", allow_zero=True)
        self._seed = (0 if seed is None else seed) if generator is None else None
        self.generator = _make_generator(seed, generator)

    def reset(self) -> None:
        """Rewind the generator to its seed (not available with a caller's ``generator``)."""
        _reset(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        eps = torch.randn(z.shape, generator=self.generator, dtype=torch.float64)
        if z.is_complex():
            eps = torch.complex(
                eps, torch.randn(z.shape, generator=self.generator, dtype=torch.float64)
            ) / math.sqrt(2)
        return z + self.sigma * eps.to(device=z.device, dtype=z.dtype)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class PoissonNoise(nn.Module):
    r"""Poisson (photon-counting) noise, :math:`y = g \cdot \mathrm{Poisson}(z / g)`.

    :math:`\mathbb E[y] = z` and :math:`\mathrm{Var}[y] = g z`: the gain :math:`g` is the
    value of one photon, so a smaller gain means more photons and relatively less noise.

    Parameters
    ----------
    gain : float
        :math:`g > 0`.
    seed : int, optional
        Seed of the module's own CPU generator (default 0); :meth:`reset` rewinds it.
    generator : torch.Generator, optional
        A CPU generator to draw from instead (exclusive with ``seed``).

    Raises
    ------
    ValueError
        When ``z`` has negative, NaN or complex entries.

    Examples
    --------
    >>> import torch
    >>> y = PoissonNoise(0.5, seed=0)(torch.full((1, 1, 2, 2), 2.0))
    >>> bool(((y / 0.5) == (y / 0.5).round()).all())  # multiples of the gain
    True
    """

    def __init__(
        self, gain: float, *, seed: int | None = None, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.gain = _check_positive(gain, "gain")
        self._seed = (0 if seed is None else seed) if generator is None else None
        self.generator = _make_generator(seed, generator)

    def reset(self) -> None:
        """Rewind the generator to its seed (not available with a caller's ``generator``)."""
        _reset(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.is_complex():
            raise ValueError(
                "PoissonNoise needs a real, non-negative input z, got a complex tensor"
            )
        if not bool(torch.isfinite(z).all()) or bool((z < 0).any()):
            raise ValueError("PoissonNoise needs a finite, non-negative input z (photon counts)")
        rate = z.detach().to(device="cpu", dtype=torch.float64) / self.gain
        counts = torch.poisson(rate, generator=self.generator)
        return (counts * self.gain).to(device=z.device, dtype=z.dtype)

    def extra_repr(self) -> str:
        return f"gain={self.gain}"


class Operator(nn.Module):
    r"""A linear forward operator :math:`A` with a noise model: a measurement is :math:`y = N(Ax)`.

    Subclasses implement :meth:`A` and :meth:`A_adjoint` (the true adjoint,
    :math:`\langle A x, y\rangle = \langle x, A^\top y\rangle`) and may override
    :meth:`A_dagger` with a closed form. Everything else (noisy measurement, composition,
    pseudo-inverse, spectral norm) is generic.

    Parameters
    ----------
    noise : callable, optional
        The noise model :math:`N`, applied by ``op(x)``; ``None`` (default) is noiseless.
        :class:`GaussianNoise` and :class:`PoissonNoise` are the two provided.

    Examples
    --------
    A 2 x 2 matrix as an operator on (B, 1, 2) tensors:

    >>> import torch
    >>> class Matrix(Operator):
    ...     def __init__(self, m):
    ...         super().__init__()
    ...         self.register_buffer("m", m)
    ...     def A(self, x):
    ...         return x @ self.m.T
    ...     def A_adjoint(self, y):
    ...         return y @ self.m
    >>> op = Matrix(torch.tensor([[2.0, 0.0], [0.0, 0.5]], dtype=torch.float64))
    >>> round(op.norm(torch.zeros(1, 1, 2, dtype=torch.float64)), 6)
    2.0
    >>> op.A_dagger(torch.tensor([[[2.0, 1.0]]], dtype=torch.float64)).round(decimals=6)
    tensor([[[1., 2.]]], dtype=torch.float64)
    >>> (op @ op).A(torch.ones(1, 1, 2, dtype=torch.float64))
    tensor([[[4.0000, 0.2500]]], dtype=torch.float64)
    """

    def __init__(self, *, noise: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        if noise is not None and not callable(noise):
            raise ValueError(
                f"noise must be callable (e.g. GaussianNoise) or None, got {type(noise).__name__}"
            )
        self.noise = noise if noise is not None else nn.Identity()

    # -- the maths a subclass provides ---------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802 (the maths' name)
        """The linear map :math:`x \\mapsto Ax`."""
        raise NotImplementedError(f"{type(self).__name__} must implement A")

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        """The adjoint :math:`y \\mapsto A^\\top y`."""
        raise NotImplementedError(f"{type(self).__name__} must implement A_adjoint")

    # -- generic ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A noisy measurement :math:`N(Ax)`."""
        return self.noise(self.A(x))

    def AtA(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        r""":math:`A^\top A x` (the normal operator)."""
        return self.A_adjoint(self.A(x))

    def __matmul__(self, other: Operator) -> ComposedOperator:
        if not isinstance(other, Operator):
            return NotImplemented
        return ComposedOperator(self, other)

    def A_dagger(  # noqa: N802
        self,
        y: torch.Tensor,
        *,
        iterations: int = 100,
        tol: float = 1e-6,
        x0: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""The pseudo-inverse :math:`A^\dagger y`: the minimum-norm least-squares solution.

        Solves the normal equations :math:`A^\top A x = A^\top y` by the conjugate gradient
        (Hestenes & Stiefel 1952), per sample, from :math:`x_0 = 0`: the iterates stay in
        :math:`\mathrm{range}(A^\top)`, so the limit is the minimum-norm solution
        :math:`A^\dagger y`. Operators with a closed form override this.

        Parameters
        ----------
        y : Tensor
            Measurements.
        iterations : int
            Maximum number of CG steps (>= 1).
        tol : float
            Stop when every sample's residual :math:`\|A^\top y - A^\top A x\|` is below
            ``tol`` times :math:`\|A^\top y\|`.
        x0 : Tensor, optional
            Starting point (then the limit is the least-squares solution closest to ``x0``).

        Returns
        -------
        Tensor
            :math:`A^\dagger y`, shaped like :math:`A^\top y`.
        """
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
        tol = _check_positive(tol, "tol", allow_zero=True)
        b = self.A_adjoint(y)
        return conjugate_gradient(self.AtA, b, x0=x0, iterations=iterations, tol=tol)

    def norm(
        self,
        x: torch.Tensor,
        *,
        iterations: int = 100,
        tol: float = 1e-7,
        seed: int = 0,
    ) -> float:
        r"""The spectral norm :math:`\|A\|_2 = \sqrt{\lambda_{\max}(A^\top A)}` (not squared).

        Power iteration on :math:`A^\top A` (von Mises 1929) from a seeded Gaussian vector:
        :math:`v_{k+1} = A^\top A v_k / \|A^\top A v_k\|`, stopped when the Rayleigh quotient
        :math:`\langle v, A^\top A v\rangle` changes by less than ``tol`` (relative).
        deepinv's ``compute_norm`` returns the square :math:`\|A\|_2^2`; this returns
        :math:`\|A\|_2`, so a gradient step size is :math:`1/\|A\|_2^2` = ``1 / op.norm(x)**2``.

        Parameters
        ----------
        x : Tensor
            An example input: only its shape (one sample is used), dtype and device matter.
        iterations : int
            Maximum number of iterations.
        tol : float
            Relative change of the Rayleigh quotient at which to stop.
        seed : int
            Seed of the starting vector (the global RNG is not touched).

        Returns
        -------
        float
            :math:`\|A\|_2`.
        """
        _check_finite_tensor(x, "x")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be an int >= 1, got {iterations!r}")
        g = torch.Generator().manual_seed(seed)
        shape = (1, *x.shape[1:])
        v = torch.randn(shape, generator=g, dtype=torch.float64)
        if x.is_complex():
            v = torch.complex(v, torch.randn(shape, generator=g, dtype=torch.float64))
        v = v.to(device=x.device, dtype=x.dtype)
        v = v / torch.linalg.vector_norm(v)
        lam = 0.0
        with torch.no_grad():
            for _ in range(iterations):
                w = self.AtA(v)
                new = float(_batch_dot(v, w).sum())
                n = float(torch.linalg.vector_norm(w))
                if n == 0.0:
                    return 0.0
                v = w / n
                if abs(new - lam) <= tol * abs(new):
                    lam = new
                    break
                lam = new
        return math.sqrt(max(lam, 0.0))


def conjugate_gradient(
    normal: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    *,
    x0: torch.Tensor | None = None,
    iterations: int = 100,
    tol: float = 1e-6,
) -> torch.Tensor:
    r"""Solve :math:`M x = b` for a symmetric positive semi-definite :math:`M`, per sample, by CG.

    Parameters
    ----------
    normal : callable
        :math:`x \mapsto M x` (e.g. ``op.AtA`` or ``lambda x: op.AtA(x) + lam * x``).
    b : Tensor
        Right-hand side, batch-first.
    x0 : Tensor, optional
        Starting point (default zeros).
    iterations, tol : int, float
        At most ``iterations`` steps; a sample stops once
        :math:`\|b - M x\| \le \mathrm{tol}\,\|b\|`.

    Returns
    -------
    Tensor
        The solution, shaped like ``b``.

    Examples
    --------
    >>> import torch
    >>> m = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> x = conjugate_gradient(lambda v: v @ m, torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    >>> torch.allclose(x @ m, torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    True
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - normal(x) if x0 is not None else b.clone()
    p = r.clone()
    rs = _batch_dot(r, r)
    stop = (tol * torch.sqrt(_batch_dot(b, b))) ** 2
    for _ in range(iterations):
        active = rs > stop
        if not bool(active.any()):
            break
        mp = normal(p)
        denom = _batch_dot(p, mp)
        alpha = torch.where(
            active & (denom > 0), rs / torch.where(denom > 0, denom, torch.ones_like(denom)), 0.0
        )
        x = x + alpha * p
        r = r - alpha * mp
        rs_new = _batch_dot(r, r)
        beta = torch.where(active, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), 0.0)
        p = torch.where(active, r + beta * p, p)
        rs = torch.where(active, rs_new, rs)
    return x


class ComposedOperator(Operator):
    r"""The composition :math:`A = A_2 A_1` (``op2 @ op1``), adjoint :math:`A_1^\top A_2^\top`.

    The noise model is ``outer``'s (the last one applied). Build it with ``@``.

    Examples
    --------
    >>> import torch
    >>> from mlimaging.inverse.operators import Identity
    >>> op = Identity() @ Identity()
    >>> bool(torch.equal(op.A(torch.ones(1, 1, 2, 2)), torch.ones(1, 1, 2, 2)))
    True
    """

    def __init__(self, outer: Operator, inner: Operator) -> None:
        super().__init__(noise=outer.noise)
        self.outer = outer
        self.inner = inner

    def A(self, x: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self.outer.A(self.inner.A(x))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:  # noqa: N802
        return self.inner.A_adjoint(self.outer.A_adjoint(y))

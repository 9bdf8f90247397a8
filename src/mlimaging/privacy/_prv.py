r"""Numerical composition of privacy loss random variables (Gopi, Lee and Wutschitz 2021, arXiv:2106.02848).

Private helpers of :mod:`mlimaging.privacy.accounting` (see :class:`~mlimaging.privacy.accounting.PRVAccountant`
for the formulas). The privacy loss of one Poisson-subsampled Gaussian step is
:math:`Y = \ell(Z) = \log(1 - q + q\,e^{(2Z - 1)/(2\sigma^2)})` with
:math:`Z \sim (1-q)\,\mathcal N(0, \sigma^2) + q\,\mathcal N(1, \sigma^2)`; :math:`\ell` is
increasing, so :math:`P(Y \le t) = P(Z \le x(t))` with :math:`x(t) = \sigma^2 z(t) + \tfrac12`,
:math:`z(t) = \log((e^t - 1 + q) / q)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import fft, integrate, special

_U_MAX = 40.0  # standard-normal mass beyond 40 sigma is below 1e-300


def _threshold(t: np.ndarray, q: float, sigma: float) -> np.ndarray:
    """x(t): the Z below which the loss is <= t (-inf for t <= log(1 - q))."""
    t = np.asarray(t, dtype=float)
    floor = math.log1p(-q) if q < 1 else -math.inf
    out = np.full(t.shape, -math.inf)
    ok = t > floor
    tt = t[ok]
    # z = log(e^t - (1 - q)) - log q, written without overflow for large t
    z = tt + np.log1p(-(1 - q) * np.exp(-tt)) - math.log(q)
    out[ok] = sigma**2 * z + 0.5
    return out


def _cdf_sf(t: np.ndarray, q: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """P(Y <= t) and P(Y > t), each computed directly (no 1 - x cancellation in either tail)."""
    x = _threshold(t, q, sigma)
    cdf = q * special.ndtr((x - 1) / sigma) + (1 - q) * special.ndtr(x / sigma)
    sf = q * special.ndtr((1 - x) / sigma) + (1 - q) * special.ndtr(-x / sigma)
    return cdf, sf


def _loss(x: np.ndarray | float, q: float, sigma: float) -> np.ndarray:
    return np.logaddexp(math.log1p(-q) if q < 1 else -math.inf, math.log(q) + (2 * np.asarray(x) - 1) / (2 * sigma**2))


def _truncated_mean(q: float, sigma: float, t_min: float, t_max: float, mass: float) -> float:
    """E[Y | t_min < Y <= t_max] by adaptive quadrature over each Gaussian component of Z."""
    x_lo, x_hi = (float(v) for v in _threshold(np.array([t_min, t_max]), q, sigma))
    total = 0.0
    for weight, mu in ((1 - q, 0.0), (q, 1.0)):
        if weight == 0:
            continue
        lo = max((x_lo - mu) / sigma, -_U_MAX)
        hi = min((x_hi - mu) / sigma, _U_MAX)
        if hi <= lo:
            continue
        points = [u for u in (-mu / sigma, (0.5 - mu) / sigma, 0.0) if lo < u < hi]
        value, _ = integrate.quad(
            lambda u, mu=mu: float(_loss(mu + sigma * u, q, sigma)) * math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi),
            lo, hi, points=points or None, limit=500, epsabs=1e-15, epsrel=1e-13)
        total += weight * value
    return total / mass


def _discretise(q: float, sigma: float, t_min: float, dt: float, size: int) -> tuple[np.ndarray, float]:
    """pmf of Y truncated to [t_min, t_max] on the bins centred at t_min + k dt, and the mean-preserving shift."""
    t_max = t_min + (size - 1) * dt
    centres = t_min + dt * np.arange(size)
    edges = np.clip(np.concatenate([centres - dt / 2, [centres[-1] + dt / 2]]), t_min, t_max)
    cdf, sf = _cdf_sf(edges, q, sigma)
    lower = cdf < 0.5
    # bin mass from whichever tail is small at its edges (both formulas agree to rounding)
    pmf = np.where(lower[1:], cdf[1:] - cdf[:-1], sf[:-1] - sf[1:])
    mass = float(pmf.sum())
    if not mass > 0:
        raise ArithmeticError(f"the privacy loss (q={q}, sigma={sigma}) has no mass on [{t_min:.3g}, {t_max:.3g}]")
    pmf = pmf / mass
    shift = _truncated_mean(q, sigma, t_min, t_max, mass) - float(centres @ pmf)
    if abs(shift) >= dt / 2:
        raise ArithmeticError(f"the discretised privacy loss (q={q}, sigma={sigma}) is off by {shift:.3g}, more than "
                              f"half the mesh {dt:.3g}: increase eps_error")
    return pmf, shift


def _epsilon_at(ts: np.ndarray, pmf: np.ndarray, delta: float) -> float:
    r"""Smallest eps >= 0 with delta(eps) = sum_{t_j > eps} p_j (1 - e^{eps - t_j}) <= delta, exact between grid points."""
    start = max(int(np.searchsorted(ts, 0.0)) - 1, 0)  # only eps >= 0 is wanted: skip e^{-t} for t << 0
    t, p = ts[start:], pmf[start:]
    d1 = np.cumsum(p[::-1])[::-1]                   # sum_{j >= i} p_j
    d2 = np.cumsum((p * np.exp(-t))[::-1])[::-1]    # sum_{j >= i} p_j e^{-t_j}
    delta_at_grid = d1 - np.exp(t) * d2             # delta(t_i)
    below = np.flatnonzero(delta_at_grid <= delta)
    if below.size == 0:
        raise ArithmeticError("delta is below what the discretisation resolves: increase delta or lower delta_error")
    i = int(below[0])
    if i == 0:  # delta(t_0) <= delta already at t_0 < 0
        return 0.0
    # between t_{i-1} and t_i the sum runs over j >= i: solve d1_i - e^eps d2_i = delta
    return max(math.log((d1[i] - delta) / d2[i]), 0.0)


def compose_epsilon(history: Sequence[tuple[float, float, int]], delta: float, *, eps_error: float,
                    delta_error: float, half_width: float, mesh: float) -> tuple[float, float, float]:
    """(lower, estimate, upper) of epsilon for a history of (sigma, q, steps) on the grid [-half_width, half_width]."""
    t_min = math.floor(-half_width / mesh) * mesh
    t_max = math.ceil(half_width / mesh) * mesh
    size = int(round((t_max - t_min) / mesh)) + 1
    if size % 2:
        size += 1
    if np.finfo(np.float64).eps * size > delta - delta_error:
        raise ValueError(f"delta={delta} is too small for a grid of {size} points (float64 rounding would dominate)")
    # circular convolution on a zero-padded ring of a fast FFT length (>= size: aliasing only gets rarer)
    ring = fft.next_fast_len(size, real=True)
    spectrum = np.ones(ring // 2 + 1, dtype=complex)
    total_shift, total_steps = 0.0, 0
    for sigma, q, n in history:
        pmf, shift = _discretise(q, sigma, t_min, mesh, size)
        spectrum *= fft.rfft(pmf, n=ring) ** n
        total_shift += n * shift
        total_steps += n
    circular = fft.irfft(spectrum, n=ring)
    # the sum of N variables on t_min + k*mesh lies on N*t_min + J*mesh; window index i holds J = i - (N-1)*t_min/mesh
    offset = int(round(t_min / mesh))
    composed = circular[(np.arange(size) - (total_steps - 1) * offset) % ring]
    ts = t_min + mesh * np.arange(size) + total_shift
    upper = _epsilon_at(ts, composed, delta - delta_error) + eps_error
    lower = _epsilon_at(ts, composed, delta + delta_error) - eps_error
    return lower, _epsilon_at(ts, composed, delta), upper

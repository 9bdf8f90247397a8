r"""Shamir secret sharing over the prime field :math:`\mathbb{F}_p`, :math:`p = 2^{61} - 1`.

Private helper of :mod:`mlimaging.privacy.smpc` (public names are re-exported there).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

#: The Mersenne prime :math:`2^{61} - 1`; secrets and shares are integers in ``[0, PRIME)``.
PRIME = (1 << 61) - 1


def _check_int(value, name: str, *, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
    return int(value)


def _random_field(count: int, generator: torch.Generator | None) -> list[int]:
    if count == 0:
        return []
    draws = torch.randint(0, PRIME, (count,), dtype=torch.int64, generator=generator)
    return [int(v) for v in draws.tolist()]


def shamir_share(
    secret: int, n: int, t: int, *, generator: torch.Generator | None
) -> list[tuple[int, int]]:
    r"""Split an integer secret into ``n`` Shamir shares, any ``t`` of which reconstruct it.

    The dealer draws a random polynomial of degree :math:`t - 1` over :math:`\mathbb{F}_p`
    (:math:`p = 2^{61} - 1`) with the secret as constant term and hands party :math:`i` the
    point :math:`(i, f(i))`:

    .. math::

        f(z) = s + \sum_{k=1}^{t-1} a_k z^k \bmod p, \qquad a_k \sim U(\mathbb{F}_p),
        \qquad \text{share}_i = (i, f(i)),\ i = 1, \dots, n.

    Any :math:`t - 1` points are consistent with every secret (they are uniform and
    independent of :math:`s`), so they reveal nothing (Shamir, 1979).

    Parameters
    ----------
    secret : int
        The secret, an integer in ``[0, p)``.
    n : int
        Number of shares (parties), ``n >= 1``.
    t : int
        Threshold, ``1 <= t <= n``.
    generator : torch.Generator or None
        Source of the random coefficients (``None``: torch's global generator).

    Returns
    -------
    list of (int, int)
        The points ``(i, f(i))`` for ``i = 1 .. n``.

    References
    ----------
    A. Shamir, "How to share a secret", Communications of the ACM 22(11), 612-613, 1979.
    DOI: 10.1145/359168.359176.

    Examples
    --------
    >>> import torch
    >>> points = shamir_share(42, 5, 3, generator=torch.Generator().manual_seed(0))
    >>> len(points), shamir_reconstruct(points[1:4]), shamir_reconstruct(points[::2])
    (5, 42, 42)
    """
    n = _check_int(n, "n", low=1)
    t = _check_int(t, "t", low=1)
    if t > n:
        raise ValueError(f"t (threshold) must be <= n={n}, got {t}")
    secret = _check_int(secret, "secret", low=0, high=PRIME - 1)
    coeffs = [secret, *_random_field(t - 1, generator)]
    points = []
    for i in range(1, n + 1):
        acc = 0
        for c in reversed(coeffs):  # Horner's rule
            acc = (acc * i + c) % PRIME
        points.append((i, acc))
    return points


def shamir_reconstruct(points: Sequence[tuple[int, int]]) -> int:
    r"""Recover a Shamir-shared secret by Lagrange interpolation at zero.

    .. math::

        s = f(0) = \sum_{i \in S} y_i \prod_{j \in S, j \ne i} \frac{x_j}{x_j - x_i} \bmod p.

    With at least ``t`` points of a degree-:math:`(t-1)` sharing the result is the secret;
    with fewer it is a value unrelated to the secret (Shamir, 1979).

    Parameters
    ----------
    points : sequence of (int, int)
        Distinct nonzero abscissae ``x`` in ``[1, p)`` and ordinates ``y`` in ``[0, p)``.

    Returns
    -------
    int
        The interpolated value at zero, in ``[0, p)``.

    References
    ----------
    A. Shamir, "How to share a secret", Communications of the ACM 22(11), 612-613, 1979.

    Examples
    --------
    >>> shamir_reconstruct([(1, 8), (2, 13)])  # the line f(z) = 3 + 5 z
    3
    """
    pts = list(points)
    if not pts:
        raise ValueError("points must be a non-empty sequence of (x, y) pairs, got []")
    xs, ys = [], []
    for k, pair in enumerate(pts):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"points[{k}] must be an (x, y) pair, got {pair!r}")
        xs.append(_check_int(pair[0], f"points[{k}][0] (x)", low=1, high=PRIME - 1))
        ys.append(_check_int(pair[1], f"points[{k}][1] (y)", low=0, high=PRIME - 1))
    if len(set(xs)) != len(xs):
        raise ValueError(f"points must have distinct x coordinates, got {xs}")
    secret = 0
    for i, (xi, yi) in enumerate(zip(xs, ys, strict=True)):
        num, den = 1, 1
        for j, xj in enumerate(xs):
            if j != i:
                num = num * xj % PRIME
                den = den * (xj - xi) % PRIME
        secret = (secret + yi * num * pow(den, PRIME - 2, PRIME)) % PRIME
    return secret

r"""Secure multi-party computation: additive secret sharing over :math:`\mathbb{Z}_{2^{64}}`,
Beaver multiplication, secure sum and pairwise-mask secure aggregation.

Ring elements are ``torch.int64`` tensors: torch's int64 add, subtract, multiply, sum and
matmul wrap modulo :math:`2^{64}` (two's complement), which is ring arithmetic. Reals use a
fixed-point encoding with ``frac_bits`` fractional bits (16 by default). **Shares** are a
stacked ``int64`` tensor ``(n_parties, *x.shape)``: party ``j`` holds ``shares[j]`` and the
secret is ``shares.sum(0)`` in the ring. Papers: Beaver (1991), Shamir (1979), Mohassel &
Zhang (SecureML, 2017), Bonawitz et al. (2017, arXiv:1611.04482); see each function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ._shamir import PRIME, _check_int, shamir_reconstruct, shamir_share

__all__ = [
    "BeaverTriple", "DH_GENERATOR", "MaskedSumTranscript", "PRIME", "SecureSumTranscript",
    "TruncationPair", "beaver_triple", "decode", "encode", "mul", "pairwise_masked_sum",
    "reconstruct", "secure_linear", "secure_sum", "shamir_reconstruct", "shamir_share", "share",
    "truncate", "truncation_pair",
]

MAX_FRAC_BITS = 30
#: Largest magnitude of an encoded value, :math:`2^{62}`: one bit of headroom for sums.
_RING_BOUND = float(2**62)


# ---------------------------------------------------------------------------------- helpers
def _check_frac_bits(frac_bits) -> int:
    return _check_int(frac_bits, "frac_bits", low=0, high=MAX_FRAC_BITS)


def _check_parties(n_parties) -> int:
    return _check_int(n_parties, "n_parties", low=2)


def _check_shares(shares, name: str = "shares") -> torch.Tensor:
    if not isinstance(shares, torch.Tensor) or shares.dtype != torch.int64:
        got = shares.dtype if isinstance(shares, torch.Tensor) else type(shares).__name__
        raise ValueError(f"{name} must be an int64 tensor of shape (n_parties, ...), got {got}")
    if shares.ndim == 0 or shares.shape[0] < 2:
        raise ValueError(f"{name} must have a leading party axis of size >= 2, got {tuple(shares.shape)}")
    return shares


def _random_ring(shape, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform elements of Z_{2^64}: int64 drawn over the dtype's full range (torch's 64-bit path,
    ``random_(-2**63, None)``; 2.7x faster than two 32-bit ``randint`` words per element)."""
    shape = tuple(int(s) for s in shape)
    return torch.empty(shape, dtype=torch.int64).random_(-(2**63), None, generator=generator)


# --------------------------------------------------------------------------------- encoding
def encode(x, *, frac_bits: int = 16) -> torch.Tensor:
    r"""Fixed-point encode reals into the ring :math:`\mathbb{Z}_{2^{64}}`.

    .. math:: \operatorname{enc}(x) = \operatorname{round}(x \cdot 2^{f}) \bmod 2^{64},
              \qquad |x| \cdot 2^{f} \le 2^{62}.

    Negative numbers are two's complement ring elements. The rounding error is at most
    :math:`2^{-f-1}`.

    Parameters
    ----------
    x : torch.Tensor, numpy.ndarray or number
        Finite real values.
    frac_bits : int, optional
        Number of fractional bits :math:`f`, in ``[0, 30]``.

    Returns
    -------
    torch.Tensor
        ``int64`` tensor of the same shape.

    Examples
    --------
    >>> import torch
    >>> encode(torch.tensor([1.5, -0.25]), frac_bits=4)
    tensor([24, -4])
    """
    frac_bits = _check_frac_bits(frac_bits)
    x = torch.as_tensor(x)
    if x.is_complex():
        raise ValueError(f"x must be real, got dtype {x.dtype}")
    x = x.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite (no NaN or inf)")
    scaled = torch.round(x * float(2**frac_bits))
    if scaled.numel() and scaled.abs().max() > _RING_BOUND:
        raise ValueError(
            f"x is too large for the fixed-point range: |x| must be <= 2^{62 - frac_bits} "
            f"with frac_bits={frac_bits}, got max |x| = {x.abs().max().item():.6g}"
        )
    return scaled.to(torch.int64)


def decode(v: torch.Tensor, *, frac_bits: int = 16, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""Decode ring elements (two's complement ``int64``) back to reals.

    .. math:: \operatorname{dec}(v) = \frac{v_{\text{signed}}}{2^{f}}.

    Parameters
    ----------
    v : torch.Tensor
        ``int64`` ring elements.
    frac_bits : int, optional
        Number of fractional bits :math:`f`, in ``[0, 30]``.
    dtype : torch.dtype, optional
        Floating output dtype (default ``float64``).

    Returns
    -------
    torch.Tensor
        Real tensor of the same shape.

    Examples
    --------
    >>> import torch
    >>> decode(torch.tensor([24, -4]), frac_bits=4)
    tensor([ 1.5000, -0.2500], dtype=torch.float64)
    """
    frac_bits = _check_frac_bits(frac_bits)
    if not isinstance(v, torch.Tensor) or v.dtype != torch.int64:
        raise ValueError(f"v must be an int64 tensor, got {getattr(v, 'dtype', type(v).__name__)}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    return (v.to(torch.float64) / float(2**frac_bits)).to(dtype)


# ------------------------------------------------------------------------- additive sharing
def _share_ring(v: torch.Tensor, n_parties: int, generator) -> torch.Tensor:
    masks = _random_ring((n_parties - 1, *v.shape), generator)
    return torch.cat([masks, (v - masks.sum(0)).unsqueeze(0)])


def share(x, n_parties: int, *, generator: torch.Generator | None, frac_bits: int = 16) -> torch.Tensor:
    r"""Additively secret-share reals among ``n_parties`` over :math:`\mathbb{Z}_{2^{64}}`.

    The first :math:`n - 1` shares are uniform on the ring; the last completes the sum:

    .. math::

        s_1, \dots, s_{n-1} \sim U(\mathbb{Z}_{2^{64}}), \qquad
        s_n = \operatorname{enc}(x) - \sum_{j<n} s_j \bmod 2^{64}.

    Any :math:`n - 1` shares are uniform and independent, so they reveal nothing about
    :math:`x`.

    Parameters
    ----------
    x : torch.Tensor, numpy.ndarray or number
        Values to share (encoded with :func:`encode`).
    n_parties : int
        Number of parties, ``>= 2``.
    generator : torch.Generator or None
        Random source for the masks (``None``: torch's global generator).
    frac_bits : int, optional
        Fixed-point fractional bits, in ``[0, 30]``.

    Returns
    -------
    torch.Tensor
        ``int64`` shares of shape ``(n_parties, *x.shape)``; party ``j`` holds ``shares[j]``.

    Examples
    --------
    >>> import torch
    >>> s = share(torch.tensor([1.0, -2.5]), 3, generator=torch.Generator().manual_seed(0))
    >>> s.shape, reconstruct(s)
    (torch.Size([3, 2]), tensor([ 1.0000, -2.5000], dtype=torch.float64))
    """
    n_parties = _check_parties(n_parties)
    return _share_ring(encode(x, frac_bits=frac_bits), n_parties, generator)


def reconstruct(shares: torch.Tensor, *, frac_bits: int = 16, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""Open additive shares: sum them in the ring and decode.

    .. math:: x = \operatorname{dec}\Big(\sum_{j=1}^{n} s_j \bmod 2^{64}\Big).

    ``reconstruct(share(x))`` equals ``decode(encode(x))`` exactly.

    Parameters
    ----------
    shares : torch.Tensor
        ``int64`` tensor of shape ``(n_parties, ...)``.
    frac_bits : int, optional
        Fixed-point fractional bits used when sharing.
    dtype : torch.dtype, optional
        Floating output dtype (default ``float64``).

    Returns
    -------
    torch.Tensor
        The secret, shape ``shares.shape[1:]``.

    Examples
    --------
    >>> import torch
    >>> reconstruct(torch.tensor([2**63 - 1, 2]), frac_bits=0)  # wraps around the ring
    tensor(-9.2234e+18, dtype=torch.float64)
    """
    return decode(_check_shares(shares).sum(0), frac_bits=frac_bits, dtype=dtype)


# ------------------------------------------------------------------------ truncation, Beaver
@dataclass(frozen=True)
class TruncationPair:
    r"""Dealer-made shares of a random ring element :math:`r` and of :math:`\lfloor r / 2^f \rfloor`.

    Attributes
    ----------
    r, r_trunc : torch.Tensor
        ``int64`` shares, shape ``(n_parties, *shape)``.
    frac_bits : int
        The :math:`f` used for ``r_trunc``.

    Examples
    --------
    >>> truncation_pair((5,), 2, generator=None, frac_bits=8).r_trunc.shape
    torch.Size([2, 5])
    """

    r: torch.Tensor
    r_trunc: torch.Tensor
    frac_bits: int


@dataclass(frozen=True)
class BeaverTriple:
    r"""Dealer-made shares of :math:`a, b` uniform on the ring and :math:`c = a b`, plus a
    :class:`TruncationPair` for rescaling the product. Use each triple once.

    Attributes
    ----------
    a, b, c : torch.Tensor
        ``int64`` shares, shape ``(n_parties, *shape)``.
    trunc : TruncationPair
        Truncation pair of the same shape.

    Examples
    --------
    >>> beaver_triple((4,), 3, generator=None).c.shape
    torch.Size([3, 4])
    """

    a: torch.Tensor
    b: torch.Tensor
    c: torch.Tensor
    trunc: TruncationPair


def truncation_pair(
    shape, n_parties: int, *, generator: torch.Generator | None, frac_bits: int = 16
) -> TruncationPair:
    r"""Trusted dealer: shares of a uniform :math:`r \in \mathbb{Z}_{2^{64}}` and of
    :math:`r' = \lfloor r_{\text{signed}} / 2^f \rfloor` (an arithmetic shift).

    Used by :func:`truncate`; see there for the error analysis.

    Parameters
    ----------
    shape, n_parties, generator, frac_bits
        Shape of the values, number of parties (``>= 2``), random source, shift :math:`f`.

    Examples
    --------
    >>> import torch
    >>> pair = truncation_pair((2,), 3, generator=torch.Generator().manual_seed(0))
    >>> bool(((pair.r.sum(0) >> 16) == pair.r_trunc.sum(0)).all())
    True
    """
    n_parties = _check_parties(n_parties)
    frac_bits = _check_frac_bits(frac_bits)
    r = _random_ring(shape, generator)
    return TruncationPair(
        _share_ring(r, n_parties, generator), _share_ring(r >> frac_bits, n_parties, generator), frac_bits
    )


def truncate(z_shares: torch.Tensor, pair: TruncationPair) -> torch.Tensor:
    r"""Divide a shared value by :math:`2^f` (fixed-point rescaling) with a truncation pair.

    The parties open the masked value :math:`m = z + r` (uniform, so it reveals nothing about
    :math:`z`); party 0 adds the public :math:`\lfloor m / 2^f \rfloor` and everyone subtracts
    its share of :math:`r' = \lfloor r / 2^f \rfloor`:

    .. math::

        \lfloor z / 2^f \rfloor \approx \lfloor m / 2^f \rfloor - \lfloor r / 2^f \rfloor.

    If :math:`|z| < 2^{\ell}`, the result is off by at most one unit in the last place
    (:math:`2^{-f}` after decoding) except with probability at most
    :math:`2^{\ell - 64}` (when :math:`z + r` wraps around the signed range), as in the
    two-party analysis of SecureML (Mohassel & Zhang, 2017), whose two shares are here
    :math:`m` and :math:`-r`.

    Parameters
    ----------
    z_shares : torch.Tensor
        ``int64`` shares ``(n_parties, *shape)`` of a value at scale :math:`2^{2f}`.
    pair : TruncationPair
        Fresh pair of the same shape and number of parties.

    Returns
    -------
    torch.Tensor
        Shares of :math:`\lfloor z / 2^f \rfloor`.

    References
    ----------
    P. Mohassel, Y. Zhang, "SecureML", IEEE S&P 2017. DOI: 10.1109/SP.2017.12.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> z = share(torch.tensor([3.0]), 2, generator=g, frac_bits=8)  # 3 * 2^8 = 768 at f=8
    >>> reconstruct(truncate(z, truncation_pair((1,), 2, generator=g, frac_bits=4)), frac_bits=4)
    tensor([3.], dtype=torch.float64)
    """
    z_shares = _check_shares(z_shares, "z_shares")
    if not isinstance(pair, TruncationPair):
        raise ValueError(f"pair must be a TruncationPair, got {type(pair).__name__}")
    if pair.r.shape != z_shares.shape:
        raise ValueError(f"pair has shape {tuple(pair.r.shape)}, z_shares has {tuple(z_shares.shape)}")
    opened = (z_shares + pair.r).sum(0)  # every party publishes z_j + r_j
    out = -pair.r_trunc
    out[0] += opened >> pair.frac_bits
    return out


def beaver_triple(
    shape, n_parties: int, *, generator: torch.Generator | None, frac_bits: int = 16
) -> BeaverTriple:
    r"""Trusted dealer: a multiplication triple :math:`c = a b` over :math:`\mathbb{Z}_{2^{64}}`.

    .. math:: a, b \sim U(\mathbb{Z}_{2^{64}}), \qquad c = a b \bmod 2^{64},

    each additively shared among the parties, plus a :class:`TruncationPair` for the
    fixed-point rescaling of the product (Beaver, 1991).

    Parameters
    ----------
    shape, n_parties, generator, frac_bits
        Shape of the operands, number of parties (``>= 2``), random source, fixed-point
        fractional bits of the operands (``[0, 30]``).

    References
    ----------
    D. Beaver, "Efficient multiparty protocols using circuit randomization", CRYPTO 1991,
    LNCS 576, 420-432. DOI: 10.1007/3-540-46766-1_34.

    Examples
    --------
    >>> import torch
    >>> t = beaver_triple((4,), 3, generator=torch.Generator().manual_seed(0))
    >>> bool((t.a.sum(0) * t.b.sum(0) == t.c.sum(0)).all())
    True
    """
    n_parties = _check_parties(n_parties)
    a, b = _random_ring(shape, generator), _random_ring(shape, generator)
    return BeaverTriple(
        _share_ring(a, n_parties, generator),
        _share_ring(b, n_parties, generator),
        _share_ring(a * b, n_parties, generator),
        truncation_pair(shape, n_parties, generator=generator, frac_bits=frac_bits),
    )


def mul(x_shares: torch.Tensor, y_shares: torch.Tensor, triple: BeaverTriple) -> torch.Tensor:
    r"""Multiply two shared fixed-point tensors elementwise with a Beaver triple.

    The parties open :math:`d = x - a` and :math:`e = y - b` (masked by uniform :math:`a, b`,
    so they reveal nothing), then compute shares of

    .. math:: x y = c + d\, b + e\, a + d\, e

    (party 0 adds the public :math:`d e`), and rescale the product from scale :math:`2^{2f}`
    to :math:`2^{f}` with :func:`truncate`. Error: at most :math:`2^{-f}` beyond the
    encoding error, except with probability :math:`\le |xy| 2^{2f-64}` (Beaver, 1991;
    truncation analysis of Mohassel & Zhang, 2017).

    Parameters
    ----------
    x_shares, y_shares : torch.Tensor
        ``int64`` shares ``(n_parties, *shape)`` from :func:`share` with the triple's
        ``frac_bits``.
    triple : BeaverTriple
        A fresh triple of the same shape (never reuse one: it would leak).

    Returns
    -------
    torch.Tensor
        Shares of :math:`x y`, same shape.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = share(torch.tensor([1.5, -2.0]), 3, generator=g)
    >>> y = share(torch.tensor([4.0, 0.25]), 3, generator=g)
    >>> reconstruct(mul(x, y, beaver_triple((2,), 3, generator=g)))
    tensor([ 6.0000, -0.5000], dtype=torch.float64)
    """
    x_shares, y_shares = _check_shares(x_shares, "x_shares"), _check_shares(y_shares, "y_shares")
    if not isinstance(triple, BeaverTriple):
        raise ValueError(f"triple must be a BeaverTriple, got {type(triple).__name__}")
    for name, s in (("x_shares", x_shares), ("y_shares", y_shares)):
        if s.shape != triple.a.shape:
            raise ValueError(f"{name} has shape {tuple(s.shape)}, the triple has {tuple(triple.a.shape)}")
    d = (x_shares - triple.a).sum(0)  # opened
    e = (y_shares - triple.b).sum(0)  # opened
    z = triple.c + d * triple.b + e * triple.a
    z[0] += d * e
    return truncate(z, triple.trunc)


def secure_linear(
    x_shares: torch.Tensor, weight, bias=None, *, pair: TruncationPair | None = None,
    generator: torch.Generator | None = None, frac_bits: int = 16,
) -> torch.Tensor:
    r"""Secure inference of a linear layer on shared inputs with plaintext (model-owner) weights.

    Each party multiplies its share by the encoded weights locally (linear, so no
    interaction), the product is rescaled once with a truncation pair, and party 0 adds the
    encoded bias:

    .. math::

        [y] = \operatorname{trunc}_f\big([x]\, \operatorname{enc}(W)^\top\big)
              + \operatorname{enc}(b) \approx x W^\top + b.

    Error per output :math:`\le 2^{-f} + 2^{-f-1}(1 + \sum_k |x_k| + |W_{ok}|)` (truncation
    plus encoding), except with probability :math:`\le |x W^\top| 2^{2f-64}` (SecureML).

    Parameters
    ----------
    x_shares : torch.Tensor
        ``int64`` shares ``(n_parties, ..., in_features)``.
    weight : torch.Tensor
        Plaintext ``(out_features, in_features)``.
    bias : torch.Tensor, optional
        Plaintext ``(out_features,)``.
    pair : TruncationPair, optional
        Fresh pair of shape ``(n_parties, ..., out_features)``; made by the dealer from
        ``generator`` when omitted.
    generator : torch.Generator or None
        Random source of the dealer when ``pair`` is omitted.
    frac_bits : int, optional
        Fixed-point fractional bits of ``x_shares``, in ``[0, 30]``.

    Returns
    -------
    torch.Tensor
        Shares of :math:`x W^\top + b`, shape ``(n_parties, ..., out_features)``.

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = share(torch.tensor([[1.0, 2.0]]), 2, generator=g)
    >>> w, b = torch.tensor([[0.5, -1.0], [2.0, 0.25]]), torch.tensor([0.0, 1.0])
    >>> reconstruct(secure_linear(x, w, b, generator=g))
    tensor([[-1.5000,  3.5000]], dtype=torch.float64)
    """
    x_shares = _check_shares(x_shares, "x_shares")
    frac_bits = _check_frac_bits(frac_bits)
    weight = torch.as_tensor(weight)
    if weight.ndim != 2 or x_shares.ndim < 2 or weight.shape[1] != x_shares.shape[-1]:
        raise ValueError(f"weight must be (out_features, in_features of x), got {tuple(weight.shape)}")
    z = x_shares @ encode(weight, frac_bits=frac_bits).T  # local, wraps mod 2^64
    if pair is None:
        pair = truncation_pair(z.shape[1:], z.shape[0], generator=generator, frac_bits=frac_bits)
    elif isinstance(pair, TruncationPair) and pair.frac_bits != frac_bits:
        raise ValueError(f"pair.frac_bits must equal frac_bits={frac_bits}, got {pair.frac_bits}")
    out = truncate(z, pair)
    if bias is not None:
        bias = torch.as_tensor(bias)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
        out[0] += encode(bias, frac_bits=frac_bits)
    return out


# ------------------------------------------------------------------------ model-update trees
def _leaves(obj, path: str):
    if isinstance(obj, torch.Tensor):
        yield path, obj
    elif isinstance(obj, Mapping):
        for k in obj:
            yield from _leaves(obj[k], f"{path}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for k, v in enumerate(obj):
            yield from _leaves(v, f"{path}[{k}]")
    else:
        raise ValueError(f"{path} must be a tensor or a list/tuple/dict of tensors, got {type(obj).__name__}")


def _rebuild(template, it):
    if isinstance(template, torch.Tensor):
        return next(it)
    if isinstance(template, Mapping):
        return type(template)((k, _rebuild(template[k], it)) for k in template)
    return type(template)(_rebuild(v, it) for v in template)


def _flatten_updates(updates, *, min_clients: int):
    """Stack the clients' updates into a float64 matrix (n_clients, D) and a rebuild function."""
    if not isinstance(updates, Sequence) or isinstance(updates, (str, bytes)) or isinstance(updates, torch.Tensor):
        raise ValueError(f"updates must be a list with one update per client, got {type(updates).__name__}")
    if len(updates) < min_clients:
        raise ValueError(f"updates must hold at least {min_clients} client update(s), got {len(updates)}")
    ref = list(_leaves(updates[0], "updates[0]"))
    if not ref:
        raise ValueError("updates[0] holds no tensors")
    rows = []
    for c, upd in enumerate(updates):
        leaves = list(_leaves(upd, f"updates[{c}]"))
        if [(p.split("]", 1)[1], t.shape) for p, t in leaves] != [(p.split("]", 1)[1], t.shape) for p, t in ref]:
            raise ValueError(f"updates[{c}] must have the same structure and shapes as updates[0]")
        if any(t.is_complex() for _, t in leaves):
            raise ValueError(f"updates[{c}] must hold real tensors, got a complex one")
        rows.append(torch.cat([t.detach().to("cpu", torch.float64).reshape(-1) for _, t in leaves]))
    x = torch.stack(rows)

    def rebuild(flat: torch.Tensor):
        parts, start = [], 0
        for _, t in ref:
            piece = flat[start : start + t.numel()].reshape(t.shape)
            start += t.numel()
            if not t.dtype.is_floating_point:
                piece = torch.round(piece)
            parts.append(piece.to(t.device, t.dtype))
        return _rebuild(updates[0], iter(parts))

    return x, rebuild


def _encode_clients(x: torch.Tensor, frac_bits: int) -> torch.Tensor:
    enc = encode(x, frac_bits=frac_bits)
    if x.numel() and x.sum(0).abs().max() * 2.0**frac_bits > _RING_BOUND:  # partial sums may wrap
        raise ValueError(f"updates: the sum is too large for the fixed-point range with frac_bits={frac_bits}")
    return enc


# -------------------------------------------------------------------------------- secure sum
@dataclass(frozen=True)
class SecureSumTranscript:
    r"""What the parties of :func:`secure_sum` saw and sent.

    Attributes
    ----------
    views : torch.Tensor
        ``int64`` ``(n_parties, n_clients, D)``: ``views[j, c]`` is the share party ``j``
        received from client ``c`` (uniform on the ring for any :math:`n-1` parties).
    partial_sums : torch.Tensor
        ``int64`` ``(n_parties, D)``: what each party sends to the aggregator.
    bytes_sent : int
        Every share (also a client's share to itself) and partial sum, 8 bytes per element.

    Examples
    --------
    >>> _, tr = secure_sum([torch.ones(2)] * 3, return_transcript=True)
    >>> tr.views.shape, tr.partial_sums.shape, tr.bytes_sent
    (torch.Size([3, 3, 2]), torch.Size([3, 2]), 192)
    """

    views: torch.Tensor
    partial_sums: torch.Tensor
    bytes_sent: int


def secure_sum(
    updates, *, generator: torch.Generator | None = None, frac_bits: int = 16,
    n_parties: int | None = None, return_transcript: bool = False,
):
    r"""Sum the clients' updates with additive secret sharing; only the sum is ever opened.

    Client :math:`c` shares its encoded update among :math:`n` parties,
    party :math:`j` adds the shares it received, and the aggregator opens only the sum of
    the partial sums:

    .. math::

        p_j = \sum_{c} s_{c,j}, \qquad
        \sum_c x_c \approx \operatorname{dec}\Big(\sum_{j=1}^{n} p_j \bmod 2^{64}\Big),

    exact up to the encoding: the error per element is at most :math:`C \cdot 2^{-f-1}` for
    :math:`C` clients. No coalition of :math:`n - 1` parties learns anything beyond the sum
    (secure aggregation for federated learning: Bonawitz et al., 2017, arXiv:1611.04482).

    Parameters
    ----------
    updates : list
        One update per client: a tensor, or a list/tuple/dict (e.g. a ``state_dict``) of
        tensors with the same structure and shapes for every client.
    generator : torch.Generator or None, optional
        Random source of the shares.
    frac_bits : int, optional
        Fixed-point fractional bits, in ``[0, 30]``.
    n_parties : int, optional
        Number of computing parties; default: one per client (at least 2). The cost is
        :math:`O(C \, n \, D)` random ring elements.
    return_transcript : bool, optional
        Also return a :class:`SecureSumTranscript`.

    Returns
    -------
    sum or (sum, SecureSumTranscript)
        The plain-sum equivalent, with the structure and dtypes of ``updates[0]``
        (integer leaves are rounded back to their integer dtype).

    Examples
    --------
    >>> import torch
    >>> ups = [{"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([0.5, -4.0])}]
    >>> secure_sum(ups, generator=torch.Generator().manual_seed(0))
    {'w': tensor([ 1.5000, -2.0000])}
    """
    frac_bits = _check_frac_bits(frac_bits)
    x, rebuild = _flatten_updates(updates, min_clients=1)
    n_clients = x.shape[0]
    n = max(n_clients, 2) if n_parties is None else _check_parties(n_parties)
    enc = _encode_clients(x, frac_bits)
    partial = torch.zeros((n, x.shape[1]), dtype=torch.int64)
    views = [] if return_transcript else None
    for c in range(n_clients):
        shares = _share_ring(enc[c], n, generator)  # client c -> share j goes to party j
        partial += shares
        if views is not None:
            views.append(shares)
    total = rebuild(decode(partial.sum(0), frac_bits=frac_bits))  # the aggregator's only opening
    if not return_transcript:
        return total
    d = x.shape[1]
    transcript = SecureSumTranscript(
        views=torch.stack(views, 1), partial_sums=partial, bytes_sent=8 * d * n * (n_clients + 1)
    )
    return total, transcript


# ------------------------------------------------------------- pairwise masks (Bonawitz 2017)
#: Primitive root of :math:`\mathbb{F}_p^*`, p = 2^61 - 1, used for the simulated key agreement.
DH_GENERATOR = 37


def _prg(seed: int, d: int) -> torch.Tensor:
    return _random_ring((d,), torch.Generator().manual_seed(int(seed)))


@dataclass(frozen=True)
class MaskedSumTranscript:
    r"""What the server of :func:`pairwise_masked_sum` saw.

    Attributes
    ----------
    masked_inputs : torch.Tensor
        ``int64`` ``(len(survivors), D)``: the masked vectors :math:`y_i` the survivors sent.
    survivors, dropped : tuple of int
        Client indices.
    recovered_secret_keys : dict
        Dropped client -> its key-agreement secret, rebuilt from ``threshold`` Shamir shares.
    bytes_sent : int
        Masked vectors, public keys and Shamir shares, 8 bytes per element.

    Examples
    --------
    >>> _, tr = pairwise_masked_sum([torch.ones(2)] * 3, dropped=[0], return_transcript=True)
    >>> tr.survivors, tr.masked_inputs.shape
    ((1, 2), torch.Size([2, 2]))
    """

    masked_inputs: torch.Tensor
    survivors: tuple
    dropped: tuple
    recovered_secret_keys: dict
    bytes_sent: int


def pairwise_masked_sum(
    updates, *, dropped=(), threshold: int | None = None, generator: torch.Generator | None = None,
    frac_bits: int = 16, return_transcript: bool = False,
):
    r"""Secure aggregation with pairwise masks and dropout recovery (Bonawitz et al., 2017).

    Each pair of clients :math:`i < j` agrees on a seed :math:`s_{ij}` (simulated
    Diffie-Hellman over :math:`\mathbb{F}_p^*`, :math:`p = 2^{61}-1`:
    :math:`s_{ij} = g^{sk_i sk_j}`); client :math:`i` also draws a self-mask seed
    :math:`b_i`, Shamir-shares :math:`sk_i` and :math:`b_i` (threshold :math:`t`) among all
    clients, and sends

    .. math::

        y_i = \operatorname{enc}(x_i) + \operatorname{PRG}(b_i)
              + \sum_{j > i} \operatorname{PRG}(s_{ij}) - \sum_{j < i} \operatorname{PRG}(s_{ij})
              \bmod 2^{64}.

    The pairwise masks cancel in :math:`\sum_{i \in U} y_i` except those shared with the
    dropped clients :math:`D`. The survivors :math:`U` reveal, for each dropped :math:`k`,
    shares of :math:`sk_k` (the server recomputes :math:`s_{kj}`) and, for each survivor,
    shares of :math:`b_i`; the server removes those masks and opens
    :math:`\sum_{i \in U} x_i`. Clients drop after sharing their keys, before sending :math:`y_i`.

    Parameters
    ----------
    updates : list
        One update per client (tensor or list/tuple/dict of tensors), at least 2 clients.
    dropped : int or iterable of int, optional
        Indices of clients that drop out.
    threshold : int, optional
        Shamir threshold :math:`t` (default :math:`\lfloor C/2 \rfloor + 1`), ``1 <= t <= C``;
        at least :math:`t` clients must survive.
    generator : torch.Generator or None, optional
        Random source of keys, self-mask seeds and Shamir coefficients.
    frac_bits : int, optional
        Fixed-point fractional bits, in ``[0, 30]``.
    return_transcript : bool, optional
        Also return a :class:`MaskedSumTranscript`.

    Returns
    -------
    sum or (sum, MaskedSumTranscript)
        Sum of the survivors' updates, structured like ``updates[0]``.

    References
    ----------
    K. Bonawitz et al., "Practical secure aggregation for privacy-preserving machine
    learning", ACM CCS 2017. arXiv:1611.04482.

    Examples
    --------
    >>> import torch
    >>> ups = [torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([4.0])]
    >>> pairwise_masked_sum(ups, dropped=[1], generator=torch.Generator().manual_seed(0))
    tensor([5.])
    """
    frac_bits = _check_frac_bits(frac_bits)
    x, rebuild = _flatten_updates(updates, min_clients=2)
    n, d = x.shape
    t = n // 2 + 1 if threshold is None else _check_int(threshold, "threshold", low=1)
    if t > n:
        raise ValueError(f"threshold must be <= the number of clients {n}, got {t}")
    drop = []
    for k in [dropped] if isinstance(dropped, int) else dropped:
        k = _check_int(k, "dropped", low=0, high=n - 1)
        if k in drop:
            raise ValueError(f"dropped must not repeat a client, got {k} twice")
        drop.append(k)
    survivors = [i for i in range(n) if i not in drop]
    if len(survivors) < t:
        raise ValueError(f"dropped leaves {len(survivors)} clients, fewer than threshold={t}")
    enc = _encode_clients(x[survivors], frac_bits)

    # Round 0-1: keys, self-mask seeds, Shamir shares of both (share k goes to client k).
    sk = [1 + v for v in torch.randint(0, PRIME - 2, (n,), generator=generator).tolist()]
    pk = [pow(DH_GENERATOR, s, PRIME) for s in sk]
    b = torch.randint(0, PRIME, (n,), generator=generator).tolist()
    sk_shares = [shamir_share(s, n, t, generator=generator) for s in sk]
    b_shares = [shamir_share(s, n, t, generator=generator) for s in b]

    # Round 2: the survivors mask their inputs.
    masked = torch.empty((len(survivors), d), dtype=torch.int64)
    for row, i in enumerate(survivors):
        y = enc[row] + _prg(b[i], d)
        for j in range(n):
            if j != i:
                mask = _prg(pow(pk[j], sk[i], PRIME), d)
                y = y + mask if j > i else y - mask
        masked[row] = y

    # Round 3: unmasking with t shares from the survivors.
    helpers = survivors[:t]
    total = masked.sum(0)
    for i in survivors:
        total -= _prg(shamir_reconstruct([b_shares[i][h] for h in helpers]), d)
    recovered = {}
    for k in drop:
        sk_k = shamir_reconstruct([sk_shares[k][h] for h in helpers])
        recovered[k] = sk_k
        for i in survivors:  # y_i holds +PRG(s_ik) if k > i, -PRG(s_ik) if k < i
            mask = _prg(pow(pk[i], sk_k, PRIME), d)
            total = total - mask if k > i else total + mask
    result = rebuild(decode(total, frac_bits=frac_bits))
    if not return_transcript:
        return result
    bytes_sent = 8 * (len(survivors) * d + n + 2 * n * (n - 1) + t * (len(survivors) + len(drop)))
    return result, MaskedSumTranscript(masked, tuple(survivors), tuple(drop), recovered, bytes_sent)

r"""Paillier encryption (``phe``) for additive aggregation of federated updates.

Implementation of :func:`mlimaging.privacy.he.paillier_sum` (re-exported there).
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["PaillierSum", "paillier_keypair", "paillier_sum"]


def _phe():
    try:
        import phe
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("Paillier needs phe: pip install 'mlimaging[he]'") from e
    return phe


def paillier_keypair(*, key_length: int = 2048) -> tuple[Any, Any]:
    r"""Generate a Paillier key pair with ``phe``: ``(public_key, private_key)``.

    The public key is :math:`n = pq` (``key_length`` bits, :math:`p, q` random primes) with
    generator :math:`g = n + 1`; encryption is :math:`E(m) = g^m r^n \bmod n^2` with a fresh
    random :math:`r`. 2048 bits (about 112-bit security, NIST SP 800-57) is the minimum for
    real use; shorter keys are for tests and demonstrations only.

    Parameters
    ----------
    key_length
        Bits of :math:`n`: an integer >= 128, multiple of 8.

    Examples
    --------
    >>> pk, sk = paillier_keypair(key_length=256)
    >>> pk.n.bit_length(), sk.decrypt(pk.encrypt(3) + pk.encrypt(4))
    (256, 7)
    """
    if not isinstance(key_length, numbers.Integral) or isinstance(key_length, bool) \
            or key_length < 128 or key_length % 8:
        raise ValueError(f"key_length must be an integer >= 128 and a multiple of 8, got {key_length!r}")
    return _phe().generate_paillier_keypair(n_length=int(key_length))


@dataclass
class PaillierSum:
    """Result of :func:`paillier_sum`: the decrypted sum and what it cost.

    Attributes
    ----------
    total
        :math:`\\sum_c x_c`, with the shape and type (NumPy or torch, dtype) of the first update.
    clients
        Number of updates summed.
    keygen_seconds
        Key generation (0 when ``keys`` were given).
    encrypt_seconds
        Encoding and encryption of all clients' updates (divide by ``clients`` for one).
    aggregate_seconds
        The server's ciphertext products.
    decrypt_seconds
        Decryption and decoding of the sum.
    ciphertexts
        Ciphertexts per client (the update's size divided by ``values_per_ciphertext``).
    values_per_ciphertext
        Values packed in one plaintext (1 without packing).
    ciphertext_bytes
        Bytes one client sends: ``ciphertexts`` times the size of :math:`n^2`.
    precision
        :math:`2^{-f}`, the fixed-point step of the encoding.
    """

    total: Any
    clients: int
    keygen_seconds: float
    encrypt_seconds: float
    aggregate_seconds: float
    decrypt_seconds: float
    ciphertexts: int
    values_per_ciphertext: int
    ciphertext_bytes: int
    precision: float


def _check_updates(updates: Any) -> tuple[np.ndarray, Any]:
    if isinstance(updates, (torch.Tensor, np.ndarray)) or not isinstance(updates, (list, tuple)) or not updates:
        raise ValueError("updates must be a non-empty list of arrays or tensors (one per client), "
                         f"got {type(updates).__name__}")
    rows, first = [], updates[0]
    for i, u in enumerate(updates):
        if not isinstance(u, (torch.Tensor, np.ndarray)):
            raise ValueError(f"updates[{i}] must be a NumPy array or a torch tensor, got {type(u).__name__}")
        floating = u.is_floating_point() if isinstance(u, torch.Tensor) else np.issubdtype(u.dtype, np.floating)
        if not floating:
            raise ValueError(f"updates[{i}] must be floating point, got dtype {u.dtype}")
        if tuple(u.shape) != tuple(first.shape):
            raise ValueError(f"updates[{i}] has shape {tuple(u.shape)}, expected {tuple(first.shape)} like updates[0]")
        a = u.detach().cpu().double().numpy() if isinstance(u, torch.Tensor) else u.astype(np.float64)
        if a.size == 0:
            raise ValueError("updates must not be empty arrays")
        if not np.isfinite(a).all():
            raise ValueError(f"updates[{i}] must be finite (no NaN or inf)")
        rows.append(a.reshape(-1))
    return np.stack(rows), first


def paillier_sum(
    updates: Any,
    *,
    key_length: int = 2048,
    frac_bits: int = 24,
    max_abs: float | None = None,
    pack: bool = True,
    keys: tuple[Any, Any] | None = None,
) -> PaillierSum:
    r"""Sum the clients' updates under Paillier encryption; only the sum is decrypted.

    Each value is encoded in fixed point, :math:`q = \operatorname{round}(x \, 2^f)`, each
    client encrypts its encoded update with the public key, the server multiplies the
    ciphertexts, which adds the plaintexts (Paillier's homomorphism),

    .. math:: E(a) \, E(b) \bmod n^2 = E(a + b \bmod n), \qquad
              \sum_c x_c \approx 2^{-f} \, D\Big(\prod_c E(q_c) \bmod n^2\Big),

    and the key holder decrypts the product: the sum of the rounded values, exactly, so the
    error per entry is at most :math:`C \, 2^{-f-1}` for :math:`C` clients.

    With ``pack=True`` (batching as in BatchCrypt, Zhang et al. 2020) each value is offset to
    :math:`u = q + B \in [0, 2B]` with :math:`B = \lceil \text{max\_abs} \cdot 2^f \rceil`,
    and :math:`s = \lfloor (\text{key\_length} - 1) / w \rfloor` values of
    :math:`w = \operatorname{bitlen}(2BC)` bits each are packed in one plaintext
    :math:`\sum_j u_j 2^{w j}`; a sum of :math:`C` such plaintexts cannot carry from one slot
    into the next, and the decrypted slots minus :math:`CB` are the sums. This divides the
    number of encryptions (the cost: one :math:`r^n \bmod n^2` each) by :math:`s` (about 70
    for 2048-bit keys) and gives the same sum as ``pack=False`` bit for bit. Without packing
    each value is one ``phe`` ``EncryptedNumber`` (integer encoding of :math:`q`).

    Parameters
    ----------
    updates
        One floating-point NumPy array or torch tensor per client, all of the same shape
        (e.g. flattened model updates).
    key_length
        Bits of the modulus :math:`n` when ``keys`` is not given (see :func:`paillier_keypair`).
    frac_bits
        :math:`f \in [0, 52]`: the fixed-point precision :math:`2^{-f}`.
    max_abs
        The bound :math:`|x| \le` ``max_abs`` agreed in advance (sets the slot width); default:
        the largest magnitude in ``updates`` (this simulation knows every update; a deployment
        fixes the bound beforehand, e.g. from the clipping norm, since it reveals it).
    pack
        Pack several values per ciphertext.
    keys
        ``(public_key, private_key)`` from :func:`paillier_keypair` (reuse across rounds).

    Returns
    -------
    PaillierSum
        The sum (``total``) and timings, ciphertext counts and sizes.

    Raises
    ------
    ValueError
        Bad updates (shapes, dtypes, non-finite), a value above ``max_abs``, or values too large
        for ``frac_bits`` (:math:`|x| \, 2^f \ge 2^{62}`) or for the key (a packed slot wider
        than the plaintext, or a sum beyond ``phe``'s range :math:`n/3`).

    References
    ----------
    Paillier P. (1999). Public-Key Cryptosystems Based on Composite Degree Residuosity Classes.
    EUROCRYPT. DOI 10.1007/3-540-48910-X_16.
    Zhang C. et al. (2020). BatchCrypt: Efficient Homomorphic Encryption for Cross-Silo
    Federated Learning. USENIX ATC.

    Examples
    --------
    >>> import numpy as np
    >>> ups = [np.array([0.5, -1.25, 2.0]), np.array([1.0, 0.25, -3.0])]
    >>> res = paillier_sum(ups, key_length=256)
    >>> res.total, res.clients, res.ciphertexts
    (array([ 1.5, -1. , -1. ]), 2, 1)
    """
    x, first = _check_updates(updates)
    if not isinstance(frac_bits, numbers.Integral) or isinstance(frac_bits, bool) or not 0 <= frac_bits <= 52:
        raise ValueError(f"frac_bits must be an integer in [0, 52], got {frac_bits!r}")
    c, d = x.shape
    peak = float(np.abs(x).max())
    if max_abs is None:
        max_abs = peak
    elif isinstance(max_abs, bool) or not isinstance(max_abs, numbers.Real) or not np.isfinite(max_abs) or max_abs < 0:
        raise ValueError(f"max_abs must be a finite number >= 0, got {max_abs!r}")
    elif peak > max_abs:
        raise ValueError(f"updates have values up to {peak:.6g}, above max_abs={max_abs:g}")
    if max_abs * 2.0 ** frac_bits >= 2.0 ** 62:
        raise ValueError(f"values up to {max_abs:.6g} are too large for frac_bits={frac_bits}: |x| * 2^frac_bits "
                         "must stay below 2^62 (lower frac_bits)")
    q = np.rint(x * 2.0 ** frac_bits).astype(np.int64)  # exact: scaling by a power of two
    t0 = time.perf_counter()
    if keys is None:
        pk, sk = paillier_keypair(key_length=key_length)
    else:
        if not (isinstance(keys, tuple) and len(keys) == 2 and hasattr(keys[0], "raw_encrypt")
                and hasattr(keys[1], "raw_decrypt")):
            raise ValueError("keys must be a (public_key, private_key) pair from paillier_keypair() "
                             "(a private key is needed to decrypt the sum)")
        pk, sk = keys
    keygen = time.perf_counter() - t0 if keys is None else 0.0
    bound = max(1, int(np.ceil(max_abs * 2.0 ** frac_bits)))
    if c * bound > pk.max_int:
        raise ValueError(f"the sum of {c} values up to {max_abs:g} at frac_bits={frac_bits} exceeds the "
                         f"plaintext range of a {pk.n.bit_length()}-bit key (n/3): use a longer key or lower frac_bits")
    nbytes = (pk.nsquare.bit_length() + 7) // 8
    if pack:
        width = (2 * bound * c).bit_length()
        per = (pk.n.bit_length() - 1) // width
        if per < 1:
            raise ValueError(f"a packed slot needs {width} bits, more than a {pk.n.bit_length()}-bit key holds")
        total, times = _packed_sum(q, pk, sk, bound=bound, width=width, per=per)
    else:
        per = 1
        total, times = _phe_sum(q, pk, sk)
    out = total.astype(np.float64) / 2.0 ** frac_bits
    n_ct = -(-d // per)
    if isinstance(first, torch.Tensor):
        out_t: Any = torch.from_numpy(out.reshape(tuple(first.shape))).to(first.dtype)
    else:
        out_t = out.reshape(first.shape).astype(first.dtype)
    return PaillierSum(total=out_t, clients=c, keygen_seconds=keygen, encrypt_seconds=times[0],
                       aggregate_seconds=times[1], decrypt_seconds=times[2], ciphertexts=n_ct,
                       values_per_ciphertext=per, ciphertext_bytes=n_ct * nbytes, precision=2.0 ** -frac_bits)


def _phe_sum(q: np.ndarray, pk: Any, sk: Any) -> tuple[np.ndarray, tuple[float, float, float]]:
    """One phe EncryptedNumber per value: E(q) with phe's integer encoding; + multiplies ciphertexts."""
    t0 = time.perf_counter()
    enc = [[pk.encrypt(int(v)) for v in row] for row in q]
    t1 = time.perf_counter()
    acc = enc[0]
    for row in enc[1:]:
        acc = [a + b for a, b in zip(acc, row, strict=True)]
    t2 = time.perf_counter()
    total = np.array([sk.decrypt(a) for a in acc], dtype=object)
    t3 = time.perf_counter()
    return total, (t1 - t0, t2 - t1, t3 - t2)


def _packed_sum(q: np.ndarray, pk: Any, sk: Any, *, bound: int, width: int,
                per: int) -> tuple[np.ndarray, tuple[float, float, float]]:
    c, d = q.shape
    t0 = time.perf_counter()
    cts = []
    for row in q:
        u = [int(v) + bound for v in row]  # in [0, 2 bound]
        cts.append([pk.raw_encrypt(_pack(u[i:i + per], width)) for i in range(0, d, per)])
    t1 = time.perf_counter()
    n2 = pk.nsquare
    acc = cts[0]
    for row in cts[1:]:
        acc = [a * b % n2 for a, b in zip(acc, row, strict=True)]  # E(a) E(b) = E(a + b)
    t2 = time.perf_counter()
    mask, offset, total = (1 << width) - 1, c * bound, []
    for i, ct in enumerate(acc):
        m = sk.raw_decrypt(ct)
        for j in range(min(per, d - i * per)):
            total.append(((m >> (width * j)) & mask) - offset)
    t3 = time.perf_counter()
    return np.array(total, dtype=object), (t1 - t0, t2 - t1, t3 - t2)


def _pack(values: list[int], width: int) -> int:
    out = 0
    for j, v in enumerate(values):
        out |= v << (width * j)
    return out

r"""CKKS with TenSEAL: the context factory, encryption and the encrypted linear algebra.

Implementation of :mod:`mlimaging.privacy.he` (see its docstring for the scheme and the
parameter trade-offs); the public names are re-exported there.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["MAX_MODULUS_BITS", "CKKSContext", "ckks_context", "ckks_decrypt", "ckks_encrypt", "encrypted_dot",
           "encrypted_linear"]

#: Largest total modulus :math:`\log_2 Q` per ``poly_modulus_degree`` and security level
#: (HomomorphicEncryption.org standard, ternary secrets, classical attacks).
MAX_MODULUS_BITS: dict[int, dict[int, int]] = {
    128: {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881},
    192: {1024: 19, 2048: 37, 4096: 75, 8192: 152, 16384: 305, 32768: 611},
    256: {1024: 14, 2048: 29, 4096: 58, 8192: 118, 16384: 237, 32768: 476},
}

def _tenseal():
    try:
        import tenseal
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("CKKS needs TenSEAL: pip install 'mlimaging[he]'") from e
    return tenseal



# ----------------------------------------------------------------------------------- context
@dataclass(frozen=True)
class CKKSContext:
    """A TenSEAL CKKS context with the parameters it was made from (:func:`ckks_context`).

    The TenSEAL context holds only the public keys (encryption, relinearisation, Galois); the
    secret key is kept apart in ``secret_key``, so :meth:`public` (what the client sends to the
    server) is the same context without it, at no copying cost.

    Attributes
    ----------
    context
        The public ``tenseal.Context`` (no secret key inside).
    poly_modulus_degree
        :math:`N`.
    coeff_mod_bit_sizes
        Bit sizes of the modulus chain :math:`(q_0, q_1, \\dots, q_L, p)`.
    scale_bits
        :math:`k`, the scale :math:`\\Delta = 2^k`.
    secret_key
        The client's ``tenseal`` secret key, or ``None`` (the server's view).
    """

    context: Any
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    secret_key: Any = field(default=None, repr=False)

    @property
    def slots(self) -> int:
        """Reals per ciphertext, :math:`N / 2`."""
        return self.poly_modulus_degree // 2

    @property
    def depth(self) -> int:
        """Multiplicative depth :math:`L` (middle primes): rescalings available."""
        return len(self.coeff_mod_bit_sizes) - 2

    @property
    def max_value(self) -> float:
        r"""Largest magnitude a result can have, :math:`2^{\log_2 q_0 - k - 1}` (decryption is
        modulo :math:`q_0` after the last rescaling)."""
        return float(2.0 ** (self.coeff_mod_bit_sizes[0] - self.scale_bits - 1))

    @property
    def has_secret_key(self) -> bool:
        """Whether this context can decrypt (the client's); a :meth:`public` one cannot."""
        return self.secret_key is not None

    @property
    def has_galois_keys(self) -> bool:
        """Whether rotations (dot products, sums, matrix products) are possible."""
        return bool(self.context.has_galois_keys())

    def public(self) -> CKKSContext:
        """The same context without the secret key: what the server receives (public,
        relinearisation and Galois keys)."""
        return CKKSContext(self.context, self.poly_modulus_degree, self.coeff_mod_bit_sizes, self.scale_bits)


def ckks_context(
    *,
    poly_modulus_degree: int = 8192,
    coeff_mod_bit_sizes: Sequence[int] = (60, 40, 60),
    scale_bits: int = 40,
    galois_keys: bool = True,
    security_level: int = 128,
) -> CKKSContext:
    r"""Make a CKKS context (keys included) with TenSEAL.

    The parameters trade security, depth, precision and speed:

    * ``poly_modulus_degree`` :math:`N` (a power of two, 1024 to 32768): :math:`N/2` slots;
      the total modulus :math:`\sum` ``coeff_mod_bit_sizes`` must not exceed the bound of the
      security standard for :math:`N` (218 bits for 8192 at 128-bit security; see the module
      docstring);
    * ``coeff_mod_bit_sizes`` :math:`(q_0, k, \dots, k, p)`: the number of middle primes is
      the multiplicative depth; each middle prime equals the scale, so rescaling keeps
      :math:`\Delta = 2^k`; :math:`q_0 - k` bits hold the integer part of the results
      (:attr:`CKKSContext.max_value`); the special prime :math:`p` must be at least as large
      as every other prime;
    * ``scale_bits`` :math:`k`: about :math:`k` bits of fixed-point precision (less the noise
      of the operations, around 10 to 20 bits).

    Parameters
    ----------
    poly_modulus_degree
        :math:`N`.
    coeff_mod_bit_sizes
        At least two bit sizes, each in [20, 60].
    scale_bits
        :math:`k`, with :math:`0 < k < q_0`; every middle prime must have :math:`k` bits.
    galois_keys
        Generate the rotation keys (needed by :func:`encrypted_dot`, :func:`encrypted_linear`
        and the convolution).
    security_level
        128, 192 or 256 bits: the table the modulus size is checked against.

    Returns
    -------
    CKKSContext
        The client's context (it holds the secret key).

    Raises
    ------
    ImportError
        Without TenSEAL (``pip install 'mlimaging[he]'``).
    ValueError
        Invalid or insecure parameters.

    Examples
    --------
    >>> ctx = ckks_context(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 60), scale_bits=40)
    >>> ctx.slots, ctx.depth, ctx.max_value, ctx.has_secret_key, ctx.public().has_secret_key
    (4096, 1, 524288.0, True, False)
    >>> ckks_context(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 40, 40, 60))
    Traceback (most recent call last):
    ...
    ValueError: coeff_mod_bit_sizes sum to 240 bits, above the 218 bits allowed for 128-bit security with poly_modulus_degree=8192 (use a larger poly_modulus_degree or fewer/smaller primes)
    """
    if security_level not in MAX_MODULUS_BITS:
        raise ValueError(f"security_level must be one of 128, 192, 256, got {security_level!r}")
    table = MAX_MODULUS_BITS[security_level]
    if isinstance(poly_modulus_degree, bool) or poly_modulus_degree not in table:
        raise ValueError(f"poly_modulus_degree must be one of {sorted(table)}, got {poly_modulus_degree!r}")
    bits = tuple(coeff_mod_bit_sizes) if isinstance(coeff_mod_bit_sizes, Sequence) else None
    if bits is None or len(bits) < 2 or not all(_is_int(b) and 20 <= b <= 60 for b in bits):
        raise ValueError("coeff_mod_bit_sizes must be a sequence of at least two integers in [20, 60], "
                         f"got {coeff_mod_bit_sizes!r}")
    bits = tuple(int(b) for b in bits)
    if not _is_int(scale_bits) or not 0 < scale_bits < bits[0]:
        raise ValueError(f"scale_bits must be an integer in (0, {bits[0]}) (below the first prime's "
                         f"{bits[0]} bits), got {scale_bits!r}")
    if any(b != scale_bits for b in bits[1:-1]):
        raise ValueError(f"the middle coeff_mod_bit_sizes must all equal scale_bits={scale_bits} (each "
                         f"rescaling divides by one of them), got {list(bits[1:-1])}")
    if bits[-1] < max(bits[:-1]):
        raise ValueError(f"the last (special) prime must be at least as large as the others, got {list(bits)}")
    limit = table[poly_modulus_degree]
    if sum(bits) > limit:
        raise ValueError(f"coeff_mod_bit_sizes sum to {sum(bits)} bits, above the {limit} bits allowed for "
                         f"{security_level}-bit security with poly_modulus_degree={poly_modulus_degree} "
                         "(use a larger poly_modulus_degree or fewer/smaller primes)")
    ts = _tenseal()
    try:
        ctx = ts.context(ts.SCHEME_TYPE.CKKS, poly_modulus_degree=int(poly_modulus_degree),
                         coeff_mod_bit_sizes=list(bits))
    except ValueError as e:
        raise ValueError(f"TenSEAL rejected the CKKS parameters (poly_modulus_degree={poly_modulus_degree}, "
                         f"coeff_mod_bit_sizes={list(bits)}): {e}") from e
    ctx.global_scale = 2.0 ** int(scale_bits)
    if galois_keys:
        ctx.generate_galois_keys()
    secret = ctx.secret_key()
    ctx.make_context_public()  # the secret key lives apart, in CKKSContext.secret_key
    return CKKSContext(ctx, int(poly_modulus_degree), bits, int(scale_bits), secret)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_context(context: Any, *, secret: bool = False, galois: bool = False) -> CKKSContext:
    if not isinstance(context, CKKSContext):
        raise ValueError(f"context must be a CKKSContext from ckks_context(), got {type(context).__name__}")
    if secret and not context.has_secret_key:
        raise ValueError("context has no secret key: only the key owner (the client's context, not its "
                         "public() copy) can encrypt images for decryption and decrypt results")
    if galois and not context.has_galois_keys:
        raise ValueError("context has no Galois keys: rotations (dot products, matrix products, "
                         "convolutions) need ckks_context(galois_keys=True)")
    return context


def _as_float_array(x: Any, name: str, *, ndim: int | None = None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
            raise ValueError(f"{name} must be a real tensor, got dtype {x.dtype}")
        arr = x.detach().cpu().double().numpy()
    else:
        arr = np.asarray(x)
        if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return arr


def _check_range(arr: np.ndarray, context: CKKSContext, name: str) -> None:
    peak = float(np.abs(arr).max())
    if peak >= context.max_value:
        raise ValueError(
            f"{name} has values up to {peak:.4g}, too large for the CKKS parameters: results must stay below "
            f"2^(q0 - scale_bits - 1) = {context.max_value:g} (q0 = {context.coeff_mod_bit_sizes[0]} bits, "
            f"scale_bits = {context.scale_bits}); raise the first prime or lower scale_bits")


# ------------------------------------------------------------------------------- vector ops
def ckks_encrypt(context: CKKSContext, x: Any) -> Any:
    r"""Encrypt a real vector (NumPy or torch, 1-D, at most :math:`N/2` entries) under CKKS.

    Each entry goes to one slot, scaled by :math:`\Delta = 2^k`.

    Parameters
    ----------
    context
        A :class:`CKKSContext` (the public key suffices to encrypt).
    x
        Finite reals with :math:`|x_i| <` :attr:`CKKSContext.max_value`.

    Returns
    -------
    tenseal.CKKSVector

    Examples
    --------
    >>> import numpy as np
    >>> ctx = ckks_context()
    >>> np.round(ckks_decrypt(ctx, ckks_encrypt(ctx, [1.5, -2.0, 3.25])), 4)
    array([ 1.5 , -2.  ,  3.25])
    """
    context = _check_context(context)
    arr = _as_float_array(x, "x", ndim=1)
    if arr.size > context.slots:
        raise ValueError(f"x has {arr.size} entries, more than the {context.slots} slots of "
                         f"poly_modulus_degree={context.poly_modulus_degree}")
    _check_range(arr, context, "x")
    return _tenseal().ckks_vector(context.context, arr.tolist())


def ckks_decrypt(context: CKKSContext, vector: Any) -> np.ndarray:
    """Decrypt a ``tenseal.CKKSVector`` with the secret key of ``context``: a float64 array.

    ``vector`` may come from the server (linked to a public context, or serialised as
    ``bytes``): it is decrypted with ``context``'s secret key.

    Examples
    --------
    >>> ctx = ckks_context()
    >>> ckks_decrypt(ctx.public(), ckks_encrypt(ctx, [1.0]))
    Traceback (most recent call last):
    ...
    ValueError: context has no secret key: only the key owner (the client's context, not its public() copy) can encrypt images for decryption and decrypt results
    """
    context = _check_context(context, secret=True)
    ts = _tenseal()
    if isinstance(vector, (bytes, bytearray)):
        vector = ts.ckks_vector_from(context.context, bytes(vector))
    if not isinstance(vector, ts.CKKSVector):
        raise ValueError(f"vector must be a tenseal.CKKSVector or its serialised bytes, got {type(vector).__name__}")
    return np.asarray(vector.decrypt(context.secret_key), dtype=np.float64)


def _check_vector(x: Any, name: str = "x") -> Any:
    ts = _tenseal()
    if not isinstance(x, ts.CKKSVector):
        raise ValueError(f"{name} must be an encrypted tenseal.CKKSVector (ckks_encrypt), got {type(x).__name__}")
    if not x.context().has_galois_keys():
        raise ValueError(f"{name}'s context has no Galois keys: rotations need ckks_context(galois_keys=True)")
    return x


def encrypted_dot(x: Any, weight: Any, bias: float = 0.0) -> Any:
    r"""Encrypted dot product :math:`E(x) \mapsto E(\langle w, x \rangle + b)` with plain :math:`w, b`.

    One plaintext-ciphertext product (one level) and :math:`\log_2(N/2)` rotations to sum the
    slots; the result is in slot 0.

    Parameters
    ----------
    x
        A ``tenseal.CKKSVector`` of size :math:`D`.
    weight
        :math:`w \in \mathbb{R}^D` (NumPy or torch).
    bias
        :math:`b`.

    Returns
    -------
    tenseal.CKKSVector
        One slot.

    Examples
    --------
    >>> import numpy as np
    >>> ctx = ckks_context()
    >>> x, w = np.array([0.5, -1.0, 2.0]), np.array([2.0, 1.0, 0.25])
    >>> y = encrypted_dot(ckks_encrypt(ctx, x), w, bias=1.0)
    >>> round(float(ckks_decrypt(ctx, y)[0]), 4), float(x @ w + 1.0)
    (1.5, 1.5)
    """
    x = _check_vector(x)
    w = _as_float_array(weight, "weight", ndim=1)
    if w.size != x.size():
        raise ValueError(f"weight has {w.size} entries but x encrypts {x.size()}")
    if isinstance(bias, bool) or not isinstance(bias, numbers.Real) or not math.isfinite(bias):
        raise ValueError(f"bias must be a finite real number, got {bias!r}")
    out = x.dot(w.tolist())
    return out + float(bias) if bias != 0 else out


def encrypted_linear(x: Any, weight: Any, bias: Any = None) -> Any:
    r"""Encrypted linear layer :math:`E(x) \mapsto E(W x + b)`, one ciphertext in, one out.

    TenSEAL's vector-matrix product (one level; about one rotation per input, so the cost
    grows with ``in_features``); the bias is encrypted under the public key and added. For few outputs of a long input (logistic regression on
    pixels) :func:`encrypted_dot` per output is faster but gives one ciphertext per output.

    Parameters
    ----------
    x
        A ``tenseal.CKKSVector`` of size ``in_features``.
    weight
        :math:`W`, shape ``(out_features, in_features)`` (``nn.Linear.weight``'s layout).
    bias
        :math:`b`, shape ``(out_features,)``, or ``None``.

    Returns
    -------
    tenseal.CKKSVector
        ``out_features`` slots.

    Examples
    --------
    >>> import numpy as np
    >>> ctx = ckks_context()
    >>> W, b = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, 3.0]]), np.array([0.1, 0.2, 0.3])
    >>> np.round(ckks_decrypt(ctx, encrypted_linear(ckks_encrypt(ctx, [1.0, -2.0]), W, b)), 4)
    array([-2.9, -1.8, -5.7])
    """
    x = _check_vector(x)
    w = _as_float_array(weight, "weight", ndim=2)
    if w.shape[1] != x.size():
        raise ValueError(f"weight must have shape (out_features, {x.size()}), got {w.shape}")
    out = x.mm(w.T.tolist())
    if bias is not None:
        b = _as_float_array(bias, "bias", ndim=1)
        if b.size != w.shape[0]:
            raise ValueError(f"bias must have {w.shape[0]} entries (out_features), got {b.size}")
        # Encrypted with the public key and added as a ciphertext: TenSEAL 0.3 encodes a plain
        # list into the unused slots too, which corrupts a following vector-matrix product.
        out = out + _tenseal().ckks_vector(out.context(), b.tolist())
    return out

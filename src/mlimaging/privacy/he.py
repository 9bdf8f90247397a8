r"""Homomorphic encryption: CKKS inference (TenSEAL) and Paillier aggregation (``phe``).

**CKKS** (Cheon, Kim, Kim, Song 2017) encrypts vectors of *approximate* real numbers. With
ring dimension :math:`N` (``poly_modulus_degree``) a plaintext is a polynomial of
:math:`\mathbb{Z}_Q[X]/(X^N + 1)`; the canonical embedding packs :math:`N/2` reals
:math:`z \in \mathbb{R}^{N/2}` (the *slots*) into one polynomial, scaled by
:math:`\Delta = 2^{k}` (``scale_bits``) and rounded,

.. math:: m(X) = \big\lfloor \Delta \cdot \tau^{-1}(z) \big\rceil, \qquad
          \operatorname{Dec}(\operatorname{Enc}(z)) = z + e, \quad |e| \approx 2^{-k} \cdot \text{noise},

and additions and multiplications act slot-wise (SIMD). A product has scale :math:`\Delta^2`;
*rescaling* divides it by the next prime of the modulus chain
:math:`Q = q_0 q_1 \cdots q_L` (``coeff_mod_bit_sizes`` lists the bit sizes of :math:`q_0`,
the :math:`L` middle primes of :math:`k` bits each, and the special key-switching prime), so
**each multiplication consumes one level** and a circuit of multiplicative depth :math:`L`
needs :math:`L` middle primes. Sums of slots (a dot product) rotate the slots, which needs
the *Galois keys*. After the last rescaling the modulus is :math:`q_0`, so results must
satisfy :math:`|y| < 2^{\log_2 q_0 - k - 1}` (:attr:`CKKSContext.max_value`), and the
precision is about :math:`k - \log_2(\text{noise})` bits.

Security / precision trade-off (:func:`ckks_context`): for 128-bit security the Homomorphic
Encryption Standard (Albrecht et al. 2018) bounds :math:`\log_2 Q` by :math:`N`:

=========================  ====  ====  ====  ====  =====  =====
``poly_modulus_degree``    1024  2048  4096  8192  16384  32768
max :math:`\log_2 Q`       27    54    109   218   438    881
=========================  ====  ====  ====  ====  =====  =====

A larger :math:`N` allows more levels (depth) and larger scales (precision) at the same
security, and gives :math:`N/2` slots, but every operation costs about :math:`N \log N`.

**Encrypted inference** (client-server): the client holds the secret key, encrypts an image
and sends it with a *public* copy of the context (:meth:`CKKSContext.public`: no secret key);
the server evaluates the plain model's layers on the ciphertext and returns encrypted scores;
the client decrypts them and takes the argmax (no sigmoid or softmax is evaluated under
encryption: the argmax of the logits is the prediction). Two models:

* logistic regression (:func:`encrypted_logistic_regression`): one encrypted dot product per
  class, :math:`s_k = \langle w_k, x \rangle + b_k`, depth 1;
* the CryptoNets recipe (Gilad-Bachrach et al. 2016): :class:`CryptoNet`, a convolution, the
  square activation :math:`x^2`, a fully connected layer, :math:`x^2`, a fully connected layer,
  all polynomial, hence computable under CKKS (:func:`encrypted_cryptonet`, depth 6).

:func:`encrypted_predict` runs the protocol on a batch of images and times it;
:func:`evaluate_encrypted` compares encrypted against plain predictions and accuracy.

**Paillier** (Paillier 1999): additively homomorphic, :math:`E(a) E(b) \bmod n^2 = E(a + b)`,
for secure aggregation of federated updates: :func:`paillier_sum`.

TenSEAL and ``phe`` are optional (``pip install 'mlimaging[he]'``); they are imported inside
the functions that need them.

References
----------
Cheon J. H., Kim A., Kim M., Song Y. (2017). Homomorphic Encryption for Arithmetic of
Approximate Numbers. ASIACRYPT. DOI 10.1007/978-3-319-70694-8_15.
Gilad-Bachrach R. et al. (2016). CryptoNets: Applying Neural Networks to Encrypted Data with
High Throughput and Accuracy. ICML, PMLR 48:201-210.
Benaissa A. et al. (2021). TenSEAL: A Library for Encrypted Tensor Operations Using
Homomorphic Encryption. arXiv:2104.03152.
Albrecht M. et al. (2018). Homomorphic Encryption Security Standard. HomomorphicEncryption.org.
Paillier P. (1999). Public-Key Cryptosystems Based on Composite Degree Residuosity Classes.
EUROCRYPT. DOI 10.1007/3-540-48910-X_16.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from mlimaging.privacy._he_ckks import (
    CKKSContext,
    _check_context,
    _check_range,
    _check_vector,
    _is_int,
    _tenseal,
    ckks_context,
    ckks_decrypt,
    ckks_encrypt,
    encrypted_dot,
    encrypted_linear,
)
from mlimaging.privacy._he_paillier import PaillierSum, paillier_keypair, paillier_sum

__all__ = [
    "CKKSContext",
    "CryptoNet",
    "HEEvaluation",
    "HEPrediction",
    "PaillierSum",
    "ckks_context",
    "ckks_decrypt",
    "ckks_encrypt",
    "encrypted_cryptonet",
    "encrypted_dot",
    "encrypted_linear",
    "encrypted_logistic_regression",
    "encrypted_predict",
    "evaluate_encrypted",
    "paillier_keypair",
    "paillier_sum",
]


# Defaults of encrypted_predict (128-bit security, scale 2^40, results below 2^19): depth 1 at
# N = 8192 for logistic regression, depth 6 at N = 16384 for the CryptoNet (see encrypted_predict).
_LINEAR_PARAMS = dict(poly_modulus_degree=8192, coeff_mod_bit_sizes=(60, 40, 60), scale_bits=40)
_CRYPTONET_PARAMS = dict(poly_modulus_degree=16384, coeff_mod_bit_sizes=(60, 40, 40, 40, 40, 40, 40, 60),
                         scale_bits=40)


# ------------------------------------------------------------------------------------ models
class CryptoNet(nn.Module):
    r"""A small convolutional network with square activations (the CryptoNets recipe).

    .. math:: f(x) = W_2 \big(W_1 \operatorname{vec}\big((K * x + c)^{\odot 2}\big) + b_1\big)^{\odot 2} + b_2

    Every operation is a polynomial, so the network can be evaluated on CKKS ciphertexts
    (:func:`encrypted_cryptonet`); Gilad-Bachrach et al. (2016) replaced ReLU by :math:`x^2`
    and max pooling by sums for the same reason. The defaults follow TenSEAL's MNIST tutorial:
    one convolution of 4 channels, 7 x 7, stride 3 (28 x 28 -> 4 x 8 x 8 = 256 values), 64
    hidden units, 10 classes; multiplicative depth 6 under TenSEAL (convolution, packing of the
    channels, square, matrix product, square, matrix product). Train it in plain with
    :func:`mlimaging.training.fit`.

    Parameters
    ----------
    image_size
        Height = width of the single-channel input.
    channels, kernel_size, stride
        The convolution (no padding).
    hidden
        Units of the hidden fully connected layer.
    num_classes
        Outputs (logits).
    seed
        Seeds the initial weights (PyTorch's default initialisation) without touching the
        global random state; ``None`` draws them from it.

    References
    ----------
    Gilad-Bachrach R. et al. (2016). CryptoNets: Applying Neural Networks to Encrypted Data with
    High Throughput and Accuracy. ICML, PMLR 48:201-210.

    Examples
    --------
    >>> import torch
    >>> net = CryptoNet(seed=0)
    >>> net(torch.zeros(2, 1, 28, 28)).shape, net.conv_output_size
    (torch.Size([2, 10]), 8)
    >>> torch.equal(net.fc2.weight, CryptoNet(seed=0).fc2.weight)
    True
    """

    def __init__(self, *, image_size: int = 28, channels: int = 4, kernel_size: int = 7, stride: int = 3,
                 hidden: int = 64, num_classes: int = 10, seed: int | None = None) -> None:
        super().__init__()
        for name, v in (("image_size", image_size), ("channels", channels), ("kernel_size", kernel_size),
                        ("stride", stride), ("hidden", hidden), ("num_classes", num_classes)):
            if not _is_int(v) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if kernel_size > image_size:
            raise ValueError(f"kernel_size={kernel_size} is larger than image_size={image_size}")
        self.image_size = int(image_size)
        self.conv_output_size = (image_size - kernel_size) // stride + 1
        with torch.random.fork_rng(enabled=seed is not None):  # a seed leaves the global RNG untouched
            if seed is not None:
                torch.manual_seed(seed)
            self.conv = nn.Conv2d(1, channels, kernel_size, stride=stride)
            self.fc1 = nn.Linear(channels * self.conv_output_size ** 2, hidden)
            self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``x`` ``(B, 1, image_size, image_size)``."""
        return self.layers(x)[-1]

    def layers(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The intermediate values: convolution, its square, hidden layer, its square, logits."""
        s = self.image_size
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or tuple(x.shape[1:]) != (1, s, s):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a tensor of shape (B, 1, {s}, {s}), got {shape}")
        c = self.conv(x)
        c2 = c * c
        h = self.fc1(c2.flatten(1))
        h2 = h * h
        return [c, c2, h, h2, self.fc2(h2)]


def _linear_params(model: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) of a model that is one linear layer on the flattened input."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    others = [type(m).__name__ for m in model.modules()
              if not isinstance(m, nn.Linear) and any(True for _ in m.parameters(recurse=False))]
    if len(linears) != 1 or others:
        raise ValueError("model must be a logistic regression (one nn.Linear on the flattened image, e.g. "
                         f"mlimaging.models.LogisticRegression), got {type(model).__name__} with {len(linears)} "
                         f"linear layer(s) and parameters in {others or 'no other layer'}")
    lin = linears[0]
    w = lin.weight.detach().cpu().double().numpy()
    b = lin.bias.detach().cpu().double().numpy() if lin.bias is not None else np.zeros(w.shape[0])
    return w, b


def encrypted_logistic_regression(model: nn.Module, x: Any) -> list[Any]:
    r"""Server side of encrypted logistic regression: one encrypted score per class.

    .. math:: E(x) \mapsto \big(E(\langle w_k, x \rangle + b_k)\big)_{k=1}^{K}

    with :func:`encrypted_dot` (depth 1; :math:`K` products and :math:`K \log_2(N/2)`
    rotations, much cheaper than a vector-matrix product over 784 pixels). The client
    decrypts the :math:`K` scores and takes the argmax (binary model, one logit: class 1 where
    the logit is > 0). The sigmoid/softmax is not evaluated under encryption: it does not
    change the argmax.

    Parameters
    ----------
    model
        One ``nn.Linear`` on the flattened image (``mlimaging.models.LogisticRegression``).
    x
        The encrypted flattened image, a ``tenseal.CKKSVector`` of ``in_features`` slots.

    Returns
    -------
    list of tenseal.CKKSVector
        :math:`K` ciphertexts of one slot each.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> ctx = ckks_context()
    >>> lin = nn.Linear(4, 3); x = torch.tensor([0.1, 0.9, 0.3, 0.0])
    >>> scores = [ckks_decrypt(ctx, s)[0] for s in encrypted_logistic_regression(lin, ckks_encrypt(ctx, x))]
    >>> torch.allclose(torch.tensor(scores, dtype=torch.float32), lin(x).detach(), atol=1e-4)
    True
    """
    w, b = _linear_params(model)
    return [encrypted_dot(x, w[k], float(b[k])) for k in range(w.shape[0])]


def encrypted_cryptonet(model: CryptoNet, x: Any, windows: int) -> Any:
    r"""Server side of the CryptoNet on an im2col-encoded encrypted image.

    The client encodes the image with ``tenseal.im2col_encoding`` (each of the ``windows``
    kernel-sized windows is one row of a matrix, flattened into the slots) and encrypts it;
    then per output channel :math:`j` one plaintext product with the replicated kernel and
    rotations sum each window (``CKKSVector.conv2d_im2col``), plus the bias :math:`c_j`; the
    channels are packed into one ciphertext in the order of ``flatten`` (channel, row, column),
    squared, multiplied by :math:`W_1` (:func:`encrypted_linear`), squared, multiplied by
    :math:`W_2`. Depth 6.

    Parameters
    ----------
    model
        A trained :class:`CryptoNet`.
    x
        The encrypted im2col encoding (``tenseal.CKKSVector``).
    windows
        The number of windows, returned by ``tenseal.im2col_encoding``.

    Returns
    -------
    tenseal.CKKSVector
        The ``num_classes`` encrypted logits.
    """
    if not isinstance(model, CryptoNet):
        raise ValueError(f"model must be a CryptoNet, got {type(model).__name__}")
    x = _check_vector(x)
    expected = model.conv_output_size ** 2
    if not _is_int(windows) or windows != expected:
        raise ValueError(f"windows must be {expected} (the conv output positions of the model), got {windows!r}")
    k = model.conv.weight.detach().cpu().double().numpy()
    c = model.conv.bias.detach().cpu().double().numpy()
    ts = _tenseal()
    chans = [x.conv2d_im2col(k[j, 0].tolist(), windows) + float(c[j]) for j in range(k.shape[0])]
    h = ts.CKKSVector.pack_vectors(chans)
    h.square_()
    h = encrypted_linear(h, model.fc1.weight, model.fc1.bias)
    h.square_()
    return encrypted_linear(h, model.fc2.weight, model.fc2.bias)


# ------------------------------------------------------------------------- protocol and timing
@dataclass
class HEPrediction:
    """Encrypted predictions of :func:`encrypted_predict` and their costs.

    Attributes
    ----------
    scores
        Decrypted scores (logits), float64 ``(n, K)``.
    predictions
        Argmax of ``scores`` (one logit: ``scores[:, 0] > 0``), int64 ``(n,)``.
    encrypt_seconds, evaluate_seconds, decrypt_seconds
        Mean seconds per image: the client's encoding and encryption, the server's evaluation,
        the client's decryption (each including its (de)serialisation).
    seconds
        Their sum: the mean latency per image (transport excluded).
    query_bytes, reply_bytes
        Mean bytes per image sent to the server (ciphertext) and back.
    """

    scores: np.ndarray
    predictions: np.ndarray
    encrypt_seconds: float
    evaluate_seconds: float
    decrypt_seconds: float
    seconds: float
    query_bytes: float
    reply_bytes: float


def _check_images(images: Any) -> torch.Tensor:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a tensor (n, C, H, W), got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point (n, C, H, W), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (n, C, H, W) with n >= 1, got {tuple(images.shape)}")
    if not torch.isfinite(images).all():
        raise ValueError("images must be finite (no NaN or inf)")
    return images.detach().cpu().float()


def _plain_values(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[str, torch.Tensor]]]:
    """Plain logits and the intermediate values whose range CKKS must hold."""
    with torch.no_grad():
        if isinstance(model, CryptoNet):
            vals = model.layers(x)
            return vals[-1], list(zip(("convolution", "its square", "hidden layer", "its square", "logits"),
                                      vals, strict=True))
        w, b = _linear_params(model)
        out = model(x.flatten(1)) if isinstance(model, nn.Linear) else model(x)
        flat = x.flatten(1).double().numpy()
        if out.ndim != 2 or flat.shape[1] != w.shape[1]:
            raise ValueError(f"images flatten to {flat.shape[1]} values but the model's linear layer takes "
                             f"{w.shape[1]}")
        ref = flat @ w.T + b
        if not np.allclose(out.double().numpy(), ref, rtol=1e-4, atol=1e-4):
            raise ValueError("model is not a logistic regression: its output is not one linear layer on the "
                             "flattened image")
        return out, [("logits", out)]


def encrypted_predict(model: nn.Module, images: Any, *, context: CKKSContext | None = None) -> HEPrediction:
    r"""Classify images under CKKS, simulating the client-server protocol, and time it.

    Per image: the client encrypts it (flattened for logistic regression; im2col-encoded for
    a :class:`CryptoNet`) with its secret-key context and serialises the ciphertext; the server
    loads it under :meth:`CKKSContext.public` (no secret key), evaluates
    :func:`encrypted_logistic_regression` or :func:`encrypted_cryptonet` and serialises the
    encrypted scores; the client decrypts them and takes the argmax.

    Default parameters (128-bit security, scale :math:`2^{40}`, results below :math:`2^{19}`):
    logistic regression :math:`N = 8192`, ``coeff_mod_bit_sizes=(60, 40, 60)`` (depth 1);
    CryptoNet :math:`N = 16384`, ``(60, 40, 40, 40, 40, 40, 40, 60)`` (depth 6, 360 of the
    438 bits allowed). Why not :math:`N = 8192` for the CryptoNet, as in TenSEAL's tutorial
    (``(31, 26, 26, 26, 26, 26, 26, 31)``, scale :math:`2^{26}`, 218 bits)? Every rotation
    adds key-switching noise, an absolute error of roughly :math:`2^{21 - k}` here (measured:
    :math:`3 \cdot 10^{-6}` after the convolution at :math:`k = 40`), so 26-bit primes leave
    about 5 bits of precision, which the two squares amplify: on a trained network and an mnist5k
    image, 24-, 25- and 26-bit primes gave logits (up to 114) wrong by 14 to 37, and with a
    31-bit :math:`q_0` results above :math:`2^{31 - 26 - 1} = 16` overflow. The price is about 2 to 3 times the latency.

    Parameters
    ----------
    model
        A logistic regression (one ``nn.Linear`` on the flattened image, e.g.
        ``mlimaging.models.LogisticRegression``, or a bare ``nn.Linear``, applied to the
        flattened image) or a :class:`CryptoNet`; used in eval mode.
    images
        ``(n, C, H, W)`` floating-point tensor (NumPy accepted).
    context
        The client's :class:`CKKSContext` (with its secret key); default: the parameters above.

    Returns
    -------
    HEPrediction

    Raises
    ------
    ValueError
        Bad images or model, a context without secret or Galois keys, or CKKS parameters whose
        range :attr:`CKKSContext.max_value` the images or the model's plain intermediate values
        on them exceed (the simulation knows both; a deployment fixes the parameters on
        training data with a margin).

    Examples
    --------
    >>> import torch
    >>> from mlimaging.models import LogisticRegression
    >>> model = LogisticRegression(input_shape=(1, 4, 4), num_classes=3)
    >>> x = torch.rand(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> res = encrypted_predict(model, x)
    >>> res.scores.shape, bool((res.predictions == model(x).argmax(1).numpy()).all())
    ((2, 3), True)
    >>> bool(abs(res.scores - model(x).detach().numpy()).max() < 1e-4)
    True
    """
    x = _check_images(images)
    is_cnn = isinstance(model, CryptoNet)
    if is_cnn and tuple(x.shape[1:]) != (1, model.image_size, model.image_size):
        raise ValueError(f"images must have shape (n, 1, {model.image_size}, {model.image_size}) for this "
                         f"CryptoNet, got {tuple(x.shape)}")
    was_training = model.training if isinstance(model, nn.Module) else False
    if isinstance(model, nn.Module):
        model.eval()
    try:
        _, checks = _plain_values(model, x)
        if context is None:
            context = ckks_context(**(_CRYPTONET_PARAMS if is_cnn else _LINEAR_PARAMS))
        context = _check_context(context, secret=True, galois=True)
        _check_range(x.double().numpy(), context, "images")
        for name, value in checks:
            _check_range(value.double().numpy(), context, f"the model's {name} on these images")
        return _run_protocol(model, x, context)
    finally:
        if was_training:
            model.train()


def _run_protocol(model: nn.Module, x: torch.Tensor, context: CKKSContext) -> HEPrediction:
    ts = _tenseal()
    server = context.public()
    is_cnn = isinstance(model, CryptoNet)
    if is_cnn:
        k, s = model.conv.kernel_size[0], model.conv.stride[0]
        need = model.conv_output_size ** 2 * k * k
        if need > context.slots:
            raise ValueError(f"the im2col encoding needs {need} slots, more than the {context.slots} of "
                             f"poly_modulus_degree={context.poly_modulus_degree}")
    else:
        d = x[0].numel()
        if d > context.slots:
            raise ValueError(f"images have {d} pixels, more than the {context.slots} slots of "
                             f"poly_modulus_degree={context.poly_modulus_degree}")
    n = x.shape[0]
    scores, t_enc, t_eval, t_dec, q_bytes, r_bytes = [], 0.0, 0.0, 0.0, 0, 0
    for i in range(n):
        t0 = time.perf_counter()
        if is_cnn:  # client: encode and encrypt
            enc, windows = ts.im2col_encoding(context.context, x[i, 0].double().tolist(), k, k, s)
        else:
            enc = ts.ckks_vector(context.context, x[i].flatten().double().tolist())
        query = enc.serialize()
        t1 = time.perf_counter()
        enc_s = ts.ckks_vector_from(server.context, query)  # server: public keys only
        if is_cnn:
            replies = [encrypted_cryptonet(model, enc_s, windows).serialize()]
        else:
            replies = [r.serialize() for r in encrypted_logistic_regression(model, enc_s)]
        t2 = time.perf_counter()
        if is_cnn:  # client: decrypt
            s_i = ckks_decrypt(context, replies[0])
        else:
            s_i = np.array([ckks_decrypt(context, r)[0] for r in replies])
        t3 = time.perf_counter()
        scores.append(s_i)
        t_enc, t_eval, t_dec = t_enc + t1 - t0, t_eval + t2 - t1, t_dec + t3 - t2
        q_bytes, r_bytes = q_bytes + len(query), r_bytes + sum(len(r) for r in replies)
    sc = np.stack(scores)
    pred = (sc[:, 0] > 0).astype(np.int64) if sc.shape[1] == 1 else sc.argmax(1).astype(np.int64)
    return HEPrediction(scores=sc, predictions=pred, encrypt_seconds=t_enc / n, evaluate_seconds=t_eval / n,
                        decrypt_seconds=t_dec / n, seconds=(t_enc + t_eval + t_dec) / n,
                        query_bytes=q_bytes / n, reply_bytes=r_bytes / n)


@dataclass
class HEEvaluation:
    """Encrypted against plain inference on ``n`` labelled images (:func:`evaluate_encrypted`).

    Attributes
    ----------
    n
        Images evaluated.
    plain_accuracy, encrypted_accuracy
        Accuracy of the plain model and of the decrypted encrypted predictions.
    agreement
        Fraction of images whose encrypted prediction equals the plain one.
    max_abs_error
        Largest :math:`|s_\\text{enc} - s_\\text{plain}|` over all scores (CKKS noise).
    seconds, encrypt_seconds, evaluate_seconds, decrypt_seconds
        Mean seconds per image (see :class:`HEPrediction`).
    plain_seconds
        Mean seconds per image of the plain model (one batch).
    query_bytes, reply_bytes
        Mean ciphertext bytes per image, to the server and back.
    """

    n: int
    plain_accuracy: float
    encrypted_accuracy: float
    agreement: float
    max_abs_error: float
    seconds: float
    encrypt_seconds: float
    evaluate_seconds: float
    decrypt_seconds: float
    plain_seconds: float
    query_bytes: float
    reply_bytes: float

    def to_dict(self) -> dict[str, float]:
        """The fields as a plain dict (for tables and JSON)."""
        return asdict(self)


def evaluate_encrypted(model: nn.Module, data: Any, *, n: int = 100,
                       context: CKKSContext | None = None) -> HEEvaluation:
    r"""Encrypted against plain accuracy and per-image latency on the first ``n`` images.

    .. math:: \text{agreement} = \frac{1}{n} \sum_{i=1}^{n} [\hat y^\text{enc}_i = \hat y^\text{plain}_i]

    Parameters
    ----------
    model
        A logistic regression or a :class:`CryptoNet` (see :func:`encrypted_predict`).
    data
        A Dataset of ``(image, label)`` pairs (e.g. ``load_dataset("mnist5k", split="test")``)
        or an ``(images, labels)`` pair of tensors.
    n
        Number of images (the first ``n``; all if fewer).
    context
        As in :func:`encrypted_predict`.

    Returns
    -------
    HEEvaluation

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.rand(3, 1, 4, 4, generator=g); y = torch.tensor([0, 1, 0])
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    >>> ev = evaluate_encrypted(model, (x, y), n=3)
    >>> ev.n, ev.agreement, ev.encrypted_accuracy == ev.plain_accuracy, ev.seconds > 0
    (3, 1.0, True, True)
    """
    if not _is_int(n) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    x, y = _take(data, int(n))
    was_training = model.training if isinstance(model, nn.Module) else False
    res = encrypted_predict(model, x, context=context)
    model.eval()
    try:
        t0 = time.perf_counter()
        with torch.no_grad():
            plain = (model(x.flatten(1)) if isinstance(model, nn.Linear) else model(x)).double().numpy()
        plain_seconds = (time.perf_counter() - t0) / len(x)
    finally:
        if was_training:
            model.train()
    p_pred = (plain[:, 0] > 0).astype(np.int64) if plain.shape[1] == 1 else plain.argmax(1)
    yy = y.numpy()
    return HEEvaluation(
        n=len(x), plain_accuracy=float((p_pred == yy).mean()), encrypted_accuracy=float((res.predictions == yy).mean()),
        agreement=float((p_pred == res.predictions).mean()), max_abs_error=float(np.abs(plain - res.scores).max()),
        seconds=res.seconds, encrypt_seconds=res.encrypt_seconds, evaluate_seconds=res.evaluate_seconds,
        decrypt_seconds=res.decrypt_seconds, plain_seconds=plain_seconds, query_bytes=res.query_bytes,
        reply_bytes=res.reply_bytes)


def _take(data: Any, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], (torch.Tensor, np.ndarray)):
        x, y = (torch.as_tensor(v) for v in data)
        if len(x) != len(y):
            raise ValueError(f"data has {len(x)} images but {len(y)} labels")
        x, y = x[:n], y[:n]
    elif hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        m = min(n, len(data))
        if m == 0:
            raise ValueError("data is empty")
        items = [data[i] for i in range(m)]
        x = torch.stack([torch.as_tensor(it[0]) for it in items])
        y = torch.as_tensor([int(it[1]) for it in items])
    else:
        raise ValueError(f"data must be a Dataset of (image, label) or an (images, labels) pair, got {type(data).__name__}")
    if len(x) == 0:
        raise ValueError("data is empty")
    if y.ndim != 1 or y.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor, got shape {tuple(y.shape)} dtype {y.dtype}")
    return _check_images(x), y.long()

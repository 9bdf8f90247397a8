r"""Quality of generated images: Fréchet distance (FID), precision and recall of distributions.

Both compare two sets of images through the features :math:`\phi(x) \in \mathbb{R}^D` of a
trained network. The FID of Heusel et al. (2017) uses Inception-v3's pool features; the
Inception weights cannot be downloaded here, so :func:`fid` takes any ``feature_extractor``
(an ``nn.Module`` or a callable): a user's own Inception-v3 checkpoint gives the standard FID,
and :func:`mnist_feature_extractor` trains (once, cached) a small digit classifier whose
penultimate features give an FID *of our features*. Values with different extractors are not
comparable with each other, nor with published FIDs.

References
----------
Heusel M., Ramsauer H., Unterthiner T., Nessler B., Hochreiter S. (2017). GANs trained by a
two time-scale update rule converge to a local Nash equilibrium. NeurIPS. arXiv:1706.08500.

Dowson D. C., Landau B. V. (1982). The Fréchet distance between multivariate normal
distributions. Journal of Multivariate Analysis 12(3):450-455.
DOI 10.1016/0047-259X(82)90077-X.

Kynkäänniemi T., Karras T., Laine S., Lehtinen J., Aila T. (2019). Improved precision and
recall metric for assessing generative models. NeurIPS. arXiv:1904.06991.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "FeatureClassifier",
    "PrecisionRecall",
    "class_fractions",
    "extract_features",
    "fid",
    "fid_baselines",
    "frechet_distance",
    "gaussian_frechet_distance",
    "mnist_feature_extractor",
    "precision_recall",
]

FEATURE_VERSION = 1  # bump when FeatureClassifier or its recipe changes (invalidates caches)


# ------------------------------------------------------------------------------------ helpers
def _matrix(x: Any, name: str, *, min_rows: int = 1) -> torch.Tensor:
    """``x`` as a finite float64 tensor of shape (N, D), N >= ``min_rows``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a NumPy array or torch tensor of shape (N, D), got {type(x).__name__}")
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, D) with D >= 1, got {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (samples), got {x.shape[0]}")
    if x.dtype == torch.bool or x.is_complex():
        raise ValueError(f"{name} must hold real numbers, got {x.dtype}")
    x = x.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def _sqrtm_psd(s: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = torch.linalg.eigh(0.5 * (s + s.T))
    return (v * w.clamp_min(0).sqrt()) @ v.T


# ------------------------------------------------------------------------------------ Fréchet distance
def gaussian_frechet_distance(mu_a: Any, sigma_a: Any, mu_b: Any, sigma_b: Any) -> float:
    r"""Squared Fréchet (2-Wasserstein) distance between :math:`\mathcal{N}(\mu_a, \Sigma_a)` and
    :math:`\mathcal{N}(\mu_b, \Sigma_b)` (Dowson & Landau 1982).

    .. math::

        d^2 = \lVert \mu_a - \mu_b \rVert_2^2 + \operatorname{Tr}\big(\Sigma_a + \Sigma_b
        - 2 (\Sigma_a \Sigma_b)^{1/2}\big),
        \qquad \operatorname{Tr}(\Sigma_a \Sigma_b)^{1/2}
        = \operatorname{Tr}\big(\Sigma_a^{1/2} \Sigma_b \Sigma_a^{1/2}\big)^{1/2}.

    The trace term is computed from the symmetric matrix :math:`\Sigma_a^{1/2} \Sigma_b
    \Sigma_a^{1/2}` (similar to :math:`\Sigma_a \Sigma_b`, so with the same eigenvalues) by two
    symmetric eigen-decompositions in float64, with eigenvalues clipped at 0: no complex parts
    and no failure on singular covariances (fewer samples than features). The result is clipped
    at 0 (rounding can give :math:`-10^{-12}` for equal Gaussians).

    Parameters
    ----------
    mu_a, mu_b
        Means, shape ``(D,)``.
    sigma_a, sigma_b
        Symmetric positive semi-definite covariances, shape ``(D, D)``.

    Returns
    -------
    float

    Examples
    --------
    In one dimension :math:`d^2 = (\mu_a - \mu_b)^2 + (\sigma_a - \sigma_b)^2`:

    >>> gaussian_frechet_distance([0.0], [[1.0]], [1.0], [[4.0]])
    2.0
    """
    mus = [_vector(mu_a, "mu_a"), _vector(mu_b, "mu_b")]
    sigmas = []
    d = mus[0].shape[0]
    if mus[1].shape[0] != d:
        raise ValueError(f"mu_a and mu_b must have the same length, got {d} and {mus[1].shape[0]}")
    for sigma, name in ((sigma_a, "sigma_a"), (sigma_b, "sigma_b")):
        s = _matrix(sigma if isinstance(sigma, torch.Tensor) else np.asarray(sigma, dtype=np.float64), name)
        if s.shape != (d, d):
            raise ValueError(f"{name} must have shape ({d}, {d}) to match the means, got {tuple(s.shape)}")
        if not torch.allclose(s, s.T, rtol=1e-5, atol=1e-8 * max(1.0, float(s.abs().max()))):
            raise ValueError(f"{name} must be a symmetric covariance matrix")
        sigmas.append(s)
    root_a = _sqrtm_psd(sigmas[0])
    inner = root_a @ sigmas[1] @ root_a
    tr_sqrt = torch.linalg.eigvalsh(0.5 * (inner + inner.T)).clamp_min(0).sqrt().sum()
    value = (mus[0] - mus[1]).pow(2).sum() + sigmas[0].trace() + sigmas[1].trace() - 2.0 * tr_sqrt
    return max(float(value), 0.0)


def _vector(x: Any, name: str) -> torch.Tensor:
    arr = x if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must have shape (D,), got {tuple(arr.shape)}")
    return _matrix(arr.reshape(1, -1), name)[0]


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    r"""Fréchet distance between two sets of features, each fitted by a Gaussian.

    With the sample means :math:`\mu` and unbiased covariances :math:`\Sigma` (divisor
    :math:`N - 1`) of each set,

    .. math::

        \mathrm{FD} = \lVert \mu_a - \mu_b \rVert_2^2 + \operatorname{Tr}\big(\Sigma_a + \Sigma_b
        - 2 (\Sigma_a \Sigma_b)^{1/2}\big)

    (:func:`gaussian_frechet_distance`); on Inception-v3 pool features it is the FID of Heusel
    et al. (2017). It is biased upwards at small :math:`N` (even two samples of one
    distribution are at a positive distance), so compare values at equal set sizes.

    Parameters
    ----------
    feats_a, feats_b
        Arrays or tensors ``(N_a, D)`` and ``(N_b, D)``, at least 2 rows each.

    Returns
    -------
    float

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> a = torch.randn(20000, 2, generator=g)
    >>> b = 2 * torch.randn(20000, 2, generator=g) + torch.tensor([3.0, 0.0])
    >>> round(frechet_distance(a, a + torch.tensor([3.0, 4.0])), 6)  # a shift: ||(3, 4)||^2
    25.0
    >>> abs(frechet_distance(a, b) - 11.0) < 0.5  # N(0, I) vs N((3, 0), 4I): 3^2 + 2 (2 - 1)^2 = 11
    True
    """
    a, b = _matrix(feats_a, "feats_a", min_rows=2), _matrix(feats_b, "feats_b", min_rows=2)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feats_a and feats_b must have the same feature dimension, got {a.shape[1]} and {b.shape[1]}")
    return gaussian_frechet_distance(a.mean(0), torch.cov(a.T).reshape(a.shape[1], -1), b.mean(0),
                                     torch.cov(b.T).reshape(b.shape[1], -1))


def extract_features(images: Any, feature_extractor: Callable[[torch.Tensor], torch.Tensor], *,
                     batch_size: int = 256, device: str | torch.device | None = None) -> torch.Tensor:
    """Features ``(N, D)`` (float64, CPU) of images ``(N, C, H, W)`` by batches, without gradients.

    An ``nn.Module`` extractor runs in eval mode (its mode is restored afterwards); outputs with
    more than two dimensions are flattened per image.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or len(images) == 0:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a non-empty batch (N, C, H, W), got {got}")
    if not callable(feature_extractor):
        raise ValueError(f"feature_extractor must be an nn.Module or a callable images -> (B, D) features, got "
                         f"{type(feature_extractor).__name__}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    images = images.float()
    if not torch.isfinite(images).all():
        raise ValueError("images hold NaN or infinite values")
    module = feature_extractor if isinstance(feature_extractor, nn.Module) else getattr(feature_extractor, "__self__", None)
    if device is None:
        p = next(module.parameters(), None) if isinstance(module, nn.Module) else None
        device = p.device if p is not None else torch.device("cpu")
    was = module.training if isinstance(module, nn.Module) else None
    if isinstance(module, nn.Module):
        module.eval()
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                f = feature_extractor(images[i:i + batch_size].to(device))
                if not isinstance(f, torch.Tensor) or f.shape[0] != len(images[i:i + batch_size]):
                    raise ValueError("feature_extractor must return one feature vector per image (B, D)")
                out.append(f.reshape(f.shape[0], -1).to("cpu", torch.float64))
    finally:
        if was is not None:
            module.train(was)
    return torch.cat(out)


def fid(real: Any, fake: Any, *, feature_extractor: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int = 256, device: str | torch.device | None = None) -> float:
    r"""Fréchet distance between the features of real and generated images (FID).

    .. math::

        \mathrm{FID} = \lVert \mu_r - \mu_g \rVert_2^2 + \operatorname{Tr}\big(\Sigma_r + \Sigma_g
        - 2 (\Sigma_r \Sigma_g)^{1/2}\big)

    of :math:`\phi(x)` over the real and over the generated images (Heusel et al. 2017). The
    original uses Inception-v3's 2048 pool features; its weights cannot be downloaded here, so
    pass a ``feature_extractor``: an Inception-v3 you hold (a checkpoint of your own, loaded
    into an ``nn.Module`` returning the pool features) for the standard FID, or the classifier
    of :func:`mnist_feature_extractor` (``feature_extractor=clf.features``) for digits. The value
    depends on the extractor and on the set sizes: compare FIDs computed with one extractor at
    equal sizes (real-vs-real of two halves of a test set gives the noise floor).

    Parameters
    ----------
    real, fake
        Images ``(N, C, H, W)`` as the extractor expects them (for ours: in [0, 1]).
    feature_extractor
        ``nn.Module`` or callable ``images -> (B, D)`` features (run without gradients; an
        ``nn.Module`` in eval mode).
    batch_size, device
        Feature extraction batch size and device (default: the extractor's).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> real = torch.rand(500, 1, 8, 8, generator=g)
    >>> mean_pool = nn.Sequential(nn.AvgPool2d(4), nn.Flatten())  # 4 features per image
    >>> fid(real, real, feature_extractor=mean_pool) < 1e-9
    True
    >>> fid(real, 0.5 * real, feature_extractor=mean_pool) > fid(real, real.flip(0), feature_extractor=mean_pool)
    True
    """
    fr = extract_features(real, feature_extractor, batch_size=batch_size, device=device)
    ff = extract_features(fake, feature_extractor, batch_size=batch_size, device=device)
    return frechet_distance(fr, ff)


def fid_baselines(real: Any, fake: Any, *, feature_extractor: Callable[[torch.Tensor], torch.Tensor],
                  seed: int = 0, k: int = 3) -> dict[str, float]:
    r"""FID of generated images beside its two baselines, at equal set sizes, plus precision and recall.

    ``real`` is split into interleaved halves :math:`A` (even indices) and :math:`B` (odd). With
    :math:`n = |B|`:

    - ``fid``: :math:`\mathrm{FID}(B, \text{fake}_{1..n})`, the generated images against real ones;
    - ``real_vs_real``: :math:`\mathrm{FID}(A, B)`, the floor a perfect generator reaches at
      this :math:`n` (the estimator's bias);
    - ``noise``: :math:`\mathrm{FID}(B, N)` for :math:`n` images of Gaussian noise with the real
      pixels' mean and standard deviation, clipped to [0, 1] (a generator that learnt nothing);
    - ``precision``, ``recall``: :func:`precision_recall` of the fakes against :math:`B`.

    Parameters
    ----------
    real, fake
        Images ``(N, C, H, W)`` in [0, 1]; ``fake`` holds at least ``len(real) // 2`` images.
    feature_extractor
        As for :func:`fid`.
    seed
        Seed of the noise images.
    k
        Neighbourhood size of precision and recall.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> g = torch.Generator().manual_seed(0)
    >>> real = torch.rand(200, 1, 8, 8, generator=g) ** 2
    >>> fake = torch.rand(100, 1, 8, 8, generator=g) ** 2  # a perfect generator
    >>> quantiles = lambda x: x.flatten(1).sort(dim=1).values[:, ::8]  # 8 features per image
    >>> r = fid_baselines(real, fake, feature_extractor=quantiles)
    >>> r["fid"] < 2 * r["real_vs_real"] < 0.1 * r["noise"], r["n"]
    (True, 100)
    """
    if isinstance(real, np.ndarray):
        real = torch.from_numpy(real)
    if isinstance(fake, np.ndarray):
        fake = torch.from_numpy(fake)
    for t, name in ((real, "real"), (fake, "fake")):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be images (N, C, H, W), got {got}")
    half_a, half_b = real[0::2].float(), real[1::2].float()
    n = len(half_b)
    if n < k + 1 or len(fake) < n:
        raise ValueError(f"fake must hold at least len(real) // 2 = {n} images and real at least {2 * (k + 1)}, "
                         f"got {len(fake)} and {len(real)}")
    g = torch.Generator().manual_seed(seed)
    noise = (real.float().mean() + real.float().std() * torch.randn(half_b.shape, generator=g)).clamp(0, 1)
    fa, fb = (extract_features(x, feature_extractor) for x in (half_a, half_b))
    ff, fn = (extract_features(x, feature_extractor) for x in (fake[:n].float(), noise))
    pr = precision_recall(fb, ff, k=k)
    return {"fid": frechet_distance(fb, ff), "real_vs_real": frechet_distance(fa, fb),
            "noise": frechet_distance(fb, fn), "precision": pr.precision, "recall": pr.recall, "n": n}


# ------------------------------------------------------------------------------------ precision / recall
class PrecisionRecall(NamedTuple):
    """Precision (fidelity) and recall (coverage) of a generated distribution, in [0, 1]."""

    precision: float
    recall: float


def _kth_radius(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance of each row of ``x`` to its ``k``-th nearest other row."""
    out = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i:i + chunk], x)
        out.append(d.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself (0)
    return torch.cat(out)


def _covered(query: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, chunk: int) -> torch.Tensor:
    """For each query row: is it inside some ball ``B(support_j, radii_j)``?"""
    out = []
    for i in range(0, len(query), chunk):
        d = torch.cdist(query[i:i + chunk], support)
        out.append((d <= radii[None, :]).any(dim=1))
    return torch.cat(out)


def precision_recall(real_features: Any, fake_features: Any, *, k: int = 3, chunk: int = 1024) -> PrecisionRecall:
    r"""Improved precision and recall of Kynkäänniemi et al. (2019) on k-NN manifolds of features.

    Each set approximates its manifold by the union of balls centred at its samples with
    radius the distance to the sample's :math:`k`-th nearest neighbour in the same set:

    .. math::

        f(\phi, \Phi) = \mathbb{1}\big[\exists\, \phi' \in \Phi:
        \lVert \phi - \phi' \rVert_2 \le \lVert \phi' - \mathrm{NN}_k(\phi', \Phi) \rVert_2\big],

    .. math::

        \text{precision} = \frac{1}{|\Phi_g|} \sum_{\phi_g \in \Phi_g} f(\phi_g, \Phi_r), \qquad
        \text{recall} = \frac{1}{|\Phi_r|} \sum_{\phi_r \in \Phi_r} f(\phi_r, \Phi_g).

    Precision is the fraction of generated samples that fall on the real manifold (fidelity),
    recall the fraction of real samples that fall on the generated one (coverage; mode
    collapse lowers it). Identical sets give (1, 1); sets far apart give (0, 0).

    Parameters
    ----------
    real_features, fake_features
        ``(N_r, D)`` and ``(N_g, D)`` features (e.g. :func:`extract_features`), more than ``k``
        rows each.
    k
        Neighbourhood size (3 in the paper).
    chunk
        Rows per block of the distance matrices (memory only).

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    >>> precision_recall(x, x)
    PrecisionRecall(precision=1.0, recall=1.0)
    >>> precision_recall(x, x + 100.0)
    PrecisionRecall(precision=0.0, recall=0.0)
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    r = _matrix(real_features, "real_features", min_rows=k + 1)
    g = _matrix(fake_features, "fake_features", min_rows=k + 1)
    if r.shape[1] != g.shape[1]:
        raise ValueError(f"real_features and fake_features must have the same dimension, got {r.shape[1]} and "
                         f"{g.shape[1]}")
    precision = _covered(g, r, _kth_radius(r, k, chunk), chunk).double().mean()
    recall = _covered(r, g, _kth_radius(g, k, chunk), chunk).double().mean()
    return PrecisionRecall(float(precision), float(recall))


# ------------------------------------------------------------------------------------ our feature network
class FeatureClassifier(nn.Module):
    r"""A small digit classifier whose penultimate layer gives the features of our FID.

    conv 3 x 3 (16) - ReLU - max-pool 2 - conv 3 x 3 (32) - ReLU - max-pool 2 - linear (64)
    - ReLU = :meth:`features` :math:`\phi(x) \in \mathbb{R}^{64}`; a linear layer to the class
    logits (``forward``). Inputs are grey images in [0, 1] (RGB ones are averaged to grey),
    resized to 28 x 28 (bilinear) when their size differs.

    Examples
    --------
    >>> import torch
    >>> net = FeatureClassifier()
    >>> net.features(torch.rand(2, 1, 32, 32)).shape, net(torch.rand(2, 1, 28, 28)).shape
    (torch.Size([2, 64]), torch.Size([2, 10]))
    """

    def __init__(self, num_classes: int = 10, feature_dim: int = 64) -> None:
        super().__init__()
        self.num_classes, self.feature_dim = num_classes, feature_dim
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(32 * 7 * 7, feature_dim), nn.ReLU())
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, feature_dim)``."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be a float batch of grey or RGB images (B, 1 or 3, H, W), got {got}")
        if x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        if x.shape[-2:] != (28, 28):
            x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def class_fractions(images: Any, classifier: nn.Module, *, num_classes: int = 10, batch_size: int = 256) -> list[float]:
    """Fraction of ``images`` assigned to each class by ``classifier``'s argmax (a mode-collapse check)."""
    logits = extract_features(images, classifier, batch_size=batch_size)
    counts = torch.bincount(logits.argmax(1), minlength=num_classes)[:num_classes].double()
    return (counts / len(logits)).tolist()


def _cache_dir(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("MLIMAGING_CACHE", Path.home() / ".cache" / "mlimaging"))


def mnist_feature_extractor(*, seed: int = 0, epochs: int = 12, cache_dir: str | os.PathLike | None = None,
                            retrain: bool = False, progress: bool = False) -> FeatureClassifier:
    r"""Our digit feature network: a :class:`FeatureClassifier` trained on mnist5k, cached on disk.

    Trained through :func:`mlimaging.training.fit` on the 3,500 training images of ``mnist5k``
    (split seed 0; Adam, learning rate 1e-3, batch 64, cross-entropy, ``epochs`` epochs (12),
    ``seed``): about 10-20 s on one CPU core, about 97% test accuracy. The weights are cached in
    ``cache_dir`` (default ``$MLIMAGING_CACHE`` or ``~/.cache/mlimaging``) as
    ``mnist5k_features_v{version}_seed{seed}_e{epochs}.pt`` (``weights_only``-loadable, with the
    test accuracy in ``meta``); later calls load it. It is the stand-in for Inception-v3 in
    :func:`fid` on digits (``feature_extractor=net.features``) and the judge of
    :func:`class_fractions`.

    Returns
    -------
    FeatureClassifier
        In eval mode, with ``test_accuracy`` set.
    """
    from mlimaging.training import fit, load_checkpoint, save_checkpoint

    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    path = _cache_dir(cache_dir) / f"mnist5k_features_v{FEATURE_VERSION}_seed{seed}_e{epochs}.pt"
    net = FeatureClassifier()
    if path.is_file() and not retrain:
        ckpt = load_checkpoint(path)
        net.load_state_dict(ckpt["model"])
        net.test_accuracy = float(ckpt["meta"]["test_accuracy"])
        return net.eval()
    from torch.utils.data import TensorDataset

    from mlimaging.data import load_dataset

    train, test = (load_dataset("mnist5k", split=s, seed=0) for s in ("train", "test"))
    torch.manual_seed(seed)
    net = FeatureClassifier()
    xtr, ytr = train.images.float(), torch.as_tensor(train.targets, dtype=torch.long)
    fit(net, TensorDataset(xtr, ytr), loss=nn.CrossEntropyLoss(), metrics=(), epochs=epochs, seed=seed,
        optimizer=lambda p: torch.optim.Adam(p, lr=1e-3), batch_size=64, progress=progress)
    net.eval()
    with torch.no_grad():
        acc = float((net(test.images.float()).argmax(1) == torch.as_tensor(test.targets)).double().mean())
    net.test_accuracy = acc
    meta = {"dataset": "mnist5k", "split_seed": 0, "seed": seed, "epochs": epochs, "version": FEATURE_VERSION,
            "test_accuracy": acc, "feature_dim": net.feature_dim}
    save_checkpoint({"model": {k: v.detach().cpu() for k, v in net.state_dict().items()}, "meta": meta}, path)
    if not math.isfinite(acc):
        raise ValueError("the feature classifier did not train (non-finite accuracy)")
    return net

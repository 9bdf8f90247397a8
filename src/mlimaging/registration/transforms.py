r"""Rigid and affine transforms as homogeneous matrices in physical space (2D and 3D, torch).

Conventions (shared by :func:`mlimaging.registration.warp` and
:func:`mlimaging.registration.register`):

* **Physical coordinates**, in mm, in the array's axis order: voxel index
  :math:`i = (i_0, \dots, i_{d-1})` of an image of shape :math:`(n_0, \dots, n_{d-1})` and
  spacing :math:`s` sits at

  .. math:: x_k = \left(i_k - \tfrac{n_k - 1}{2}\right) s_k ,

  so the **centre of the image is the origin** (:func:`voxel_to_physical` gives this map
  as a matrix). An image covers :math:`[-n_k s_k / 2, n_k s_k / 2]` along axis :math:`k`.
* A transform is a :math:`(d+1) \times (d+1)` homogeneous matrix
  :math:`T = \begin{pmatrix} A & t \\ 0 & 1 \end{pmatrix}` acting on column vectors,
  :math:`x \mapsto A x + t`, or a batch ``(B, d+1, d+1)``. As in ITK and
  ``scipy.ndimage.affine_transform``, the transform used for warping maps **output (fixed)
  points to input (moving) points**: ``warp(moving, T)(x) = moving(T x)``.
* Rotations are about the origin (the image centre); angles are in radians.

Every function accepts NumPy arrays or torch tensors and returns torch tensors
(float64 unless the input was a floating tensor), differentiable with autograd.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mlimaging.utils import check_spacing

__all__ = [
    "affine_matrix",
    "as_transform",
    "compose",
    "corner_points",
    "identity",
    "invert",
    "rigid_matrix",
    "target_registration_error",
    "transform_points",
    "voxel_to_physical",
]


def _check_dims(spatial_dims: Any) -> int:
    if isinstance(spatial_dims, bool) or spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    return int(spatial_dims)


def _as_float_tensor(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x if x.is_floating_point() else x.to(torch.float64)
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
        t = torch.as_tensor(arr, dtype=torch.float64)
    if not bool(torch.isfinite(t.detach()).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _params(params: Any, n: int, spatial_dims: int, what: str) -> torch.Tensor:
    p = _as_float_tensor(params, "params")
    if p.ndim == 0 or p.shape[-1] != n:
        raise ValueError(
            f"params for a {spatial_dims}D {what} transform must have {n} values in their last "
            f"axis, got shape {tuple(p.shape)}"
        )
    return p


def _homogeneous(a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Stack ``A`` (..., d, d) and ``t`` (..., d) into (..., d+1, d+1)."""
    d = a.shape[-1]
    top = torch.cat([a, t.unsqueeze(-1)], dim=-1)
    bottom = torch.zeros(*a.shape[:-2], 1, d + 1, dtype=a.dtype, device=a.device)
    bottom[..., 0, d] = 1.0
    return torch.cat([top, bottom], dim=-2)


def _axis_rotation(angle: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """3x3 rotation in the plane of axes (i, j): ``x_i' = c x_i - s x_j``, ``x_j' = s x_i + c x_j``."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rows = [[one, zero, zero], [zero, one, zero], [zero, zero, one]]
    rows[i][i], rows[i][j], rows[j][i], rows[j][j] = c, -s, s, c
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def rigid_matrix(params: Any, *, spatial_dims: int) -> torch.Tensor:
    r"""Homogeneous matrix of a rigid transform (rotation about the origin, then translation).

    2D, ``params = (theta, t0, t1)``:

    .. math:: T = \begin{pmatrix} \cos\theta & -\sin\theta & t_0 \\ \sin\theta & \cos\theta & t_1 \\
              0 & 0 & 1 \end{pmatrix}

    3D, ``params = (a0, a1, a2, t0, t1, t2)``: :math:`R = R_0(a_0) R_1(a_1) R_2(a_2)`, where
    :math:`R_k(a)` rotates by :math:`a` about array axis :math:`k` (in the plane of the
    other two axes, taken in increasing order, as in 2D), so :math:`R_2` is applied first.
    Angles in radians, translations in mm, in the array's axis order (see the module's
    conventions).

    Parameters
    ----------
    params
        ``(..., 3)`` in 2D or ``(..., 6)`` in 3D (NumPy or torch); leading axes are a batch.
    spatial_dims
        2 or 3.

    Returns
    -------
    torch.Tensor
        ``(..., d+1, d+1)``, differentiable with respect to ``params``.

    Examples
    --------
    >>> import math
    >>> rigid_matrix([math.pi / 2, 1.0, 2.0], spatial_dims=2).round(decimals=6)
    tensor([[ 0., -1.,  1.],
            [ 1.,  0.,  2.],
            [ 0.,  0.,  1.]], dtype=torch.float64)
    """
    d = _check_dims(spatial_dims)
    p = _params(params, 3 if d == 2 else 6, d, "rigid")
    if d == 2:
        c, s = torch.cos(p[..., 0]), torch.sin(p[..., 0])
        a = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
        return _homogeneous(a, p[..., 1:])
    r = _axis_rotation(p[..., 0], 1, 2) @ _axis_rotation(p[..., 1], 0, 2) @ _axis_rotation(p[..., 2], 0, 1)
    return _homogeneous(r, p[..., 3:])


def affine_matrix(params: Any, *, spatial_dims: int) -> torch.Tensor:
    r"""Homogeneous matrix of an affine transform from its top ``d`` rows ``[A | t]``.

    .. math:: T = \begin{pmatrix} A & t \\ 0 & 1 \end{pmatrix}, \qquad
              \text{params} = (A_{00}, \dots, A_{0,d-1}, t_0, A_{10}, \dots, t_{d-1})

    (row-major, 6 values in 2D, 12 in 3D; ``(..., d, d+1)`` is accepted too). The identity is
    ``(1, 0, 0, 0, 1, 0)`` in 2D, the initialisation of a spatial transformer's
    localisation network (Jaderberg et al. 2015, arXiv:1506.02025).

    Parameters
    ----------
    params
        ``(..., d*(d+1))`` or ``(..., d, d+1)``, NumPy or torch.
    spatial_dims
        2 or 3.

    Returns
    -------
    torch.Tensor
        ``(..., d+1, d+1)``, differentiable with respect to ``params``.

    Examples
    --------
    >>> affine_matrix([2.0, 0.0, 1.0, 0.0, 1.0, -1.0], spatial_dims=2)
    tensor([[ 2.,  0.,  1.],
            [ 0.,  1., -1.],
            [ 0.,  0.,  1.]], dtype=torch.float64)
    """
    d = _check_dims(spatial_dims)
    p = _as_float_tensor(params, "params")
    if p.ndim >= 2 and tuple(p.shape[-2:]) == (d, d + 1):
        p = p.reshape(*p.shape[:-2], d * (d + 1))
    p = _params(p, d * (d + 1), d, "affine")
    m = p.reshape(*p.shape[:-1], d, d + 1)
    return _homogeneous(m[..., :d], m[..., d])


def identity(spatial_dims: int, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The ``(d+1, d+1)`` identity transform.

    Examples
    --------
    >>> identity(2).shape
    torch.Size([3, 3])
    """
    d = _check_dims(spatial_dims)
    return torch.eye(d + 1, dtype=dtype)


def as_transform(transform: Any, *, name: str = "transform", spatial_dims: int | None = None) -> torch.Tensor:
    """Validate a homogeneous matrix ``(d+1, d+1)`` or batch ``(B, d+1, d+1)`` and return it as a tensor.

    Raises ``ValueError`` (naming ``name``) unless ``d`` is 2 or 3 (or ``spatial_dims``), the
    values are finite and the last row is ``(0, ..., 0, 1)``.

    Examples
    --------
    >>> as_transform(np.eye(4)).dtype
    torch.float64
    """
    t = _as_float_tensor(transform, name)
    if t.ndim not in (2, 3) or t.shape[-1] != t.shape[-2] or t.shape[-1] not in (3, 4):
        raise ValueError(
            f"{name} must be a (d+1, d+1) homogeneous matrix or a batch (B, d+1, d+1) with d = 2 or 3, "
            f"got shape {tuple(t.shape)}"
        )
    d = t.shape[-1] - 1
    if spatial_dims is not None and d != spatial_dims:
        raise ValueError(f"{name} must be a {spatial_dims}D transform ({spatial_dims + 1}x{spatial_dims + 1}), "
                         f"got {d + 1}x{d + 1}")
    last = t.detach()[..., d, :]
    expected = torch.zeros(d + 1, dtype=t.dtype, device=t.device)
    expected[d] = 1
    if not bool(torch.allclose(last, expected.expand_as(last), atol=1e-6)):
        raise ValueError(f"{name} must have last row (0, ..., 0, 1), got {last.tolist()}")
    return t


def compose(*transforms: Any) -> torch.Tensor:
    r"""Compose transforms as a matrix product, in the order given.

    .. math:: \mathrm{compose}(T_1, T_2, \dots, T_k) = T_1 T_2 \cdots T_k, \qquad
              x \mapsto T_1(T_2(\cdots T_k(x)))

    With the pull-back convention of :func:`~mlimaging.registration.warp`,
    ``warp(warp(image, T1), T2)`` approximates ``warp(image, compose(T1, T2))`` (one
    interpolation instead of two). Batches broadcast.

    Examples
    --------
    >>> a = rigid_matrix([0.3, 1.0, 0.0], spatial_dims=2)
    >>> bool(torch.allclose(compose(a, invert(a)), identity(2)))
    True
    """
    if not transforms:
        raise ValueError("compose needs at least one transform")
    mats = [as_transform(t, name=f"transforms[{i}]") for i, t in enumerate(transforms)]
    sizes = {m.shape[-1] for m in mats}
    if len(sizes) != 1:
        raise ValueError(f"transforms must all be 2D or all 3D, got matrix sizes {sorted(sizes)}")
    dtype = mats[0].dtype
    for m in mats[1:]:
        dtype = torch.promote_types(dtype, m.dtype)
    out = mats[0].to(dtype)
    for m in mats[1:]:
        out = out @ m.to(dtype=dtype, device=out.device)
    return out


def invert(transform: Any) -> torch.Tensor:
    r"""Inverse of a homogeneous transform.

    .. math:: T^{-1} = \begin{pmatrix} A^{-1} & -A^{-1} t \\ 0 & 1 \end{pmatrix}

    Raises ``ValueError`` when :math:`A` is singular (or nearly so).

    Examples
    --------
    >>> (invert(affine_matrix([2.0, 0.0, 1.0, 0.0, 1.0, 0.0], spatial_dims=2)) + 0.0).tolist()
    [[0.5, 0.0, -0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    t = as_transform(transform)
    d = t.shape[-1] - 1
    a, b = t[..., :d, :d], t[..., :d, d]
    cond = torch.linalg.cond(a.detach())
    if not bool(torch.isfinite(cond).all()) or bool((cond > 1e12).any()):
        raise ValueError("transform is singular (its linear part A has no inverse)")
    a_inv = torch.linalg.inv(a)
    return _homogeneous(a_inv, -(a_inv @ b.unsqueeze(-1)).squeeze(-1))


def voxel_to_physical(shape: Sequence[int], *, spacing: float | Sequence[float] | None = None) -> torch.Tensor:
    r"""Homogeneous matrix mapping voxel indices to physical points (centre of the image = origin).

    .. math:: V = \begin{pmatrix} S & -S c \\ 0 & 1 \end{pmatrix}, \quad S = \mathrm{diag}(s),
              \quad c_k = (n_k - 1)/2

    A transform ``T`` (fixed to moving, physical) acts on indices as
    ``invert(V_moving) @ T @ V_fixed``: the matrix and offset that
    ``scipy.ndimage.affine_transform`` takes.

    Examples
    --------
    >>> voxel_to_physical((3, 5), spacing=(2.0, 1.0))
    tensor([[ 2.,  0., -2.],
            [ 0.,  1., -2.],
            [ 0.,  0.,  1.]], dtype=torch.float64)
    """
    dims = tuple(int(n) for n in shape)
    if len(dims) not in (2, 3) or any(n < 1 for n in dims):
        raise ValueError(f"shape must have 2 or 3 positive sizes, got {tuple(shape)}")
    s = torch.tensor(check_spacing(spacing, len(dims)), dtype=torch.float64)
    c = torch.tensor([(n - 1) / 2 for n in dims], dtype=torch.float64)
    return _homogeneous(torch.diag(s), -s * c)


def corner_points(shape: Sequence[int], *, spacing: float | Sequence[float] | None = None) -> torch.Tensor:
    r"""Physical coordinates of the :math:`2^d` corner voxel centres, :math:`\pm (n_k - 1) s_k / 2`.

    Handy landmarks for the target registration error of a global transform.

    Examples
    --------
    >>> corner_points((3, 5))
    tensor([[-1., -2.],
            [-1.,  2.],
            [ 1., -2.],
            [ 1.,  2.]], dtype=torch.float64)
    """
    v = voxel_to_physical(shape, spacing=spacing)
    d = v.shape[0] - 1
    half = -v[:d, d]
    signs = torch.cartesian_prod(*([torch.tensor([-1.0, 1.0], dtype=torch.float64)] * d))
    return signs * half


def transform_points(transform: Any, points: Any) -> torch.Tensor:
    r"""Apply a transform to points: :math:`y = A x + t`.

    Parameters
    ----------
    transform
        ``(d+1, d+1)`` matrix.
    points
        ``(N, d)`` physical points (NumPy or torch).

    Returns
    -------
    torch.Tensor
        ``(N, d)`` transformed points.

    Examples
    --------
    >>> transform_points(rigid_matrix([0.0, 1.0, 2.0], spatial_dims=2), [[0.0, 0.0]])
    tensor([[1., 2.]], dtype=torch.float64)
    """
    t = as_transform(transform)
    if t.ndim != 2:
        raise ValueError(f"transform must be a single (d+1, d+1) matrix, got shape {tuple(t.shape)}")
    d = t.shape[-1] - 1
    p = _as_float_tensor(points, "points")
    if p.ndim != 2 or p.shape[1] != d:
        raise ValueError(f"points must have shape (N, {d}), got {tuple(p.shape)}")
    dtype = torch.promote_types(t.dtype, p.dtype)
    t, p = t.to(dtype), p.to(dtype=dtype, device=t.device)
    return p @ t[:d, :d].T + t[:d, d]


def target_registration_error(estimated: Any, true: Any, points: Any) -> torch.Tensor:
    r"""Target registration error: distance between the points mapped by two transforms.

    .. math:: \mathrm{TRE}_j = \lVert \hat T x_j - T x_j \rVert_2

    (Fitzpatrick, West and Maurer 1998, DOI 10.1109/42.736021). With both transforms in
    physical space (mm) the errors are in mm.

    Parameters
    ----------
    estimated, true
        ``(d+1, d+1)`` matrices.
    points
        ``(N, d)`` physical points, e.g. landmarks or the image corners.

    Returns
    -------
    torch.Tensor
        ``(N,)`` distances.

    Examples
    --------
    >>> target_registration_error(identity(2), rigid_matrix([0.0, 3.0, 4.0], spatial_dims=2), [[1.0, 1.0]])
    tensor([5.], dtype=torch.float64)
    """
    return (transform_points(estimated, points) - transform_points(true, points)).norm(dim=1)

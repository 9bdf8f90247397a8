r"""Resampling an image through a rigid or affine transform (``affine_grid`` + ``grid_sample``).

Coordinate conventions (those of :mod:`mlimaging.registration.transforms`): physical
coordinates in mm, in the array's axis order, with the **centre of the image as origin**,
voxel :math:`i` at :math:`x_k = (i_k - (n_k - 1)/2) s_k`; the transform maps output
(fixed) points to input (moving) points, so

.. math:: \mathrm{warp}(I, T)(x) = I(T x) = I(A x + t).

Internally the physical transform becomes the normalised ``theta`` of
:func:`torch.nn.functional.affine_grid` with ``align_corners=False`` (normalised
coordinate :math:`u_k \in [-1, 1]` spans the outer edges of the border voxels, so
:math:`x_k = u_k n_k s_k / 2`) and the axes reversed (``grid_sample`` orders them
``x, y, z`` = last array axis first):

.. math:: \theta = P \, D_\text{in}^{-1} \begin{pmatrix} A D_\text{out} & t \end{pmatrix}
          \begin{pmatrix} P & 0 \\ 0 & 1 \end{pmatrix}, \qquad D = \mathrm{diag}(n_k s_k / 2),

with :math:`P` the axis reversal. Points mapped outside the input read zeros (or the
border / a reflection, see ``padding``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mlimaging.registration.transforms import as_transform
from mlimaging.utils import check_spacing

__all__ = ["normalized_theta", "sampling_grid", "warp"]

_MODES = ("bilinear", "nearest")
_PADDING = ("zeros", "border", "reflection")


def _half_extent(shape: Sequence[int], spacing: Sequence[float]) -> torch.Tensor:
    return torch.tensor([n * s / 2 for n, s in zip(shape, spacing, strict=True)], dtype=torch.float64)


def normalized_theta(
    transform: torch.Tensor,
    *,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    input_spacing: Sequence[float],
    output_spacing: Sequence[float],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The ``affine_grid`` matrix ``theta`` ``(B, d, d+1)`` (float64) of a physical transform.

    :math:`\theta = P D_\text{in}^{-1} (A D_\text{out} \mid t)` with axes reversed by
    :math:`P` (see the module docstring); ``align_corners=False``.

    Examples
    --------
    >>> normalized_theta(torch.eye(3), input_shape=(4, 8), output_shape=(4, 8),
    ...                  input_spacing=(1.0, 1.0), output_spacing=(1.0, 1.0))[0]
    tensor([[1., 0., 0.],
            [0., 1., 0.]], dtype=torch.float64)
    """
    t = transform if transform.ndim == 3 else transform.unsqueeze(0)
    d = t.shape[-1] - 1
    t = t.to(device=device, dtype=torch.float64) if device is not None else t.to(torch.float64)
    d_in = _half_extent(input_shape, input_spacing).to(t.device)
    d_out = _half_extent(output_shape, output_spacing).to(t.device)
    lin = t[:, :d, :d] * d_out[None, None, :] / d_in[None, :, None]
    shift = t[:, :d, d] / d_in[None, :]
    return torch.cat([lin.flip(-1).flip(-2), shift.flip(-1).unsqueeze(-1)], dim=-1)


def sampling_grid(
    transform: torch.Tensor,
    *,
    input_shape: Sequence[int],
    output_shape: Sequence[int],
    input_spacing: Sequence[float],
    output_spacing: Sequence[float],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The ``grid_sample`` grid ``(B, *output_shape, d)`` that resamples an input through ``transform``.

    ``transform`` is a ``(d+1, d+1)`` or ``(B, d+1, d+1)`` physical transform (output to input,
    see the module's conventions). Grid values outside :math:`[-1, 1]` fall outside the
    input's field of view, which gives the overlap mask of registration.

    Examples
    --------
    >>> g = sampling_grid(torch.eye(3), input_shape=(4, 6), output_shape=(4, 6),
    ...                   input_spacing=(1.0, 1.0), output_spacing=(1.0, 1.0))
    >>> g.shape, float(g[0, 0, 0, 0]), float(g[0, 0, 0, 1])  # (x, y) of voxel (0, 0)
    (torch.Size([1, 4, 6, 2]), -0.8333333134651184, -0.75)
    """
    theta = normalized_theta(transform, input_shape=input_shape, output_shape=output_shape,
                             input_spacing=input_spacing, output_spacing=output_spacing, device=device)
    size = (theta.shape[0], 1, *(int(n) for n in output_shape))
    return F.affine_grid(theta.to(dtype), list(size), align_corners=False)


def warp(
    image: Any,
    transform: Any,
    *,
    mode: str = "bilinear",
    spacing: float | Sequence[float] | None = None,
    output_shape: Sequence[int] | None = None,
    output_spacing: float | Sequence[float] | None = None,
    padding: str = "zeros",
) -> Any:
    r"""Resample ``image`` through a physical rigid/affine ``transform``: :math:`J(x) = I(T x)`.

    Linear (``"bilinear"``, trilinear in 3D) or nearest-neighbour (``"nearest"``, for label
    maps: labels are never mixed) interpolation with
    :func:`torch.nn.functional.grid_sample`; see the module docstring for the coordinate
    conventions (centre of the image = origin, transform maps output to input points, as
    ``scipy.ndimage.affine_transform`` and ITK's ``Resample``). Differentiable with respect
    to both the image and the transform.

    Parameters
    ----------
    image
        NumPy array or torch tensor: ``(*spatial)``, ``(C, *spatial)`` or
        ``(B, C, *spatial)``, where the number of spatial axes ``d`` is given by the
        transform.
    transform
        ``(d+1, d+1)`` homogeneous matrix, or ``(B, d+1, d+1)`` for a ``(B, C, *spatial)``
        image (one transform per item; ``B = 1`` images are broadcast).
    mode
        ``"bilinear"`` or ``"nearest"``.
    spacing
        Voxel spacing of ``image`` (mm, one per spatial axis; default 1).
    output_shape, output_spacing
        Grid of the result; default: the input's shape and spacing (so that
        ``warp(image, identity)`` returns ``image``).
    padding
        Value read outside the input: ``"zeros"`` (default), ``"border"`` or ``"reflection"``.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same type, device and layout as ``image`` with the output spatial shape. Floating
        images keep their dtype; integer images keep it with ``"nearest"`` and become
        float32 with ``"bilinear"``.

    Examples
    --------
    >>> import numpy as np
    >>> from mlimaging.registration import rigid_matrix
    >>> img = np.zeros((5, 5)); img[2, 3] = 1.0
    >>> out = warp(img, rigid_matrix([0.0, 0.0, 1.0], spatial_dims=2))  # reads I(x + (0, 1))
    >>> [tuple(map(int, p)) for p in np.argwhere(out > 0.5)]
    [(2, 2)]
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if padding not in _PADDING:
        raise ValueError(f"padding must be one of {_PADDING}, got {padding!r}")
    t = as_transform(transform)
    d = t.shape[-1] - 1
    is_numpy = not isinstance(image, torch.Tensor)
    if is_numpy:
        arr = np.asarray(image)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"image must be a real numeric array, got dtype {arr.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(arr))
    else:
        x = image
        if x.is_complex():
            raise ValueError(f"image must be real, got dtype {x.dtype}")
    if x.ndim not in (d, d + 1, d + 2):
        raise ValueError(
            f"image must have shape (*spatial), (C, *spatial) or (B, C, *spatial) with {d} spatial "
            f"axes for a {d}D transform, got shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise ValueError(f"image is empty, got shape {tuple(x.shape)}")
    lead = x.ndim - d
    batch = x if lead == 2 else (x.unsqueeze(0) if lead == 1 else x[None, None])
    in_shape = tuple(batch.shape[2:])
    sp_in = check_spacing(spacing, d)
    out_shape = in_shape if output_shape is None else tuple(int(n) for n in output_shape)
    if len(out_shape) != d or any(n < 1 for n in out_shape):
        raise ValueError(f"output_shape must have {d} positive sizes, got {output_shape!r}")
    sp_out = sp_in if output_spacing is None else check_spacing(output_spacing, d, name="output_spacing")

    if t.ndim == 3:
        if lead != 2:
            raise ValueError("a batch of transforms (B, d+1, d+1) needs a (B, C, *spatial) image")
        if batch.shape[0] not in (1, t.shape[0]):
            raise ValueError(
                f"transform batch ({t.shape[0]}) and image batch ({batch.shape[0]}) must match"
            )
        batch = batch.expand(t.shape[0], *batch.shape[1:])

    integer = not batch.is_floating_point()
    if integer:
        work_dtype = torch.float64 if mode == "nearest" else torch.get_default_dtype()
    else:
        work_dtype = batch.dtype
    src = batch.to(work_dtype)
    grid = sampling_grid(
        t, input_shape=in_shape, output_shape=out_shape, input_spacing=sp_in,
        output_spacing=sp_out, dtype=work_dtype, device=src.device,
    )
    if grid.shape[0] != src.shape[0]:
        grid = grid.expand(src.shape[0], *grid.shape[1:])
    out = F.grid_sample(src, grid, mode=mode, padding_mode=padding, align_corners=False)
    if integer and mode == "nearest":
        out = out.round().to(batch.dtype)
    if lead == 1:
        out = out[0]
    elif lead == 0:
        out = out[0, 0]
    return out.numpy() if is_numpy else out

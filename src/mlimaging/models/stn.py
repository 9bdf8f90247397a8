r"""Spatial transformer networks: a localisation network that rectifies its input before a classifier.

A :class:`SpatialTransformer` (Jaderberg et al. 2015) has three parts:

1. a *localisation network* :math:`f_\text{loc}` predicting transformation parameters
   :math:`\phi = f_\text{loc}(x)` from the image itself: rigid
   :math:`\phi = (\alpha, t_x, t_y)` or affine :math:`\phi \in \mathbb{R}^6`;
2. a *grid generator*: for every output pixel :math:`p` (normalised coordinates,
   :math:`[-1, 1]` across the image, ``align_corners=False``) the input location
   :math:`q = A_\phi\, p + b_\phi` (``torch.nn.functional.affine_grid``);
3. a *sampler*: the rectified image :math:`\tilde x(p) = x(q)` by bilinear interpolation,
   zero outside (``grid_sample``); it is differentiable in :math:`x` and in :math:`\phi`,
   so the localiser learns from the classification loss alone, without any label of pose.

The last layer of the localiser starts with zero weights and the identity as bias, so an
untrained network passes its input through unchanged and learning starts from "do nothing".

Rigid parameterisation. Normalised coordinates scale the two axes differently on a
non-square image (:math:`p_\text{pixels} = S\,p` with :math:`S = \operatorname{diag}(W/2, H/2)`
in (x, y) order), so a rotation written directly in them would shear a :math:`16 \times 64`
image. :func:`rigid_theta` rotates in pixel units instead,

.. math::
    A = S^{-1} R(\alpha) S, \qquad
    R(\alpha) = \begin{pmatrix} \cos\alpha & -\sin\alpha \\ \sin\alpha & \cos\alpha \end{pmatrix},
    \qquad b = (t_x, t_y),

so that :math:`S A S^{-1} = R(\alpha)` is orthonormal with determinant 1: distances between
sampled pixels are preserved. The translation :math:`(t_x, t_y)` is in normalised units
(1 = half the width, half the height).

The course's exam design (2020): *two convolutions, two max-pools and two fully connected
layers estimating a 2D rigid transformation for an input of size* :math:`16 \times 64`
(``localizer="exam"``, :class:`ExamLocalizer`), one input channel:

=========  ====================================  ============  ==========
layer      operation                             output        parameters
=========  ====================================  ============  ==========
input                                            1 x 16 x 64
conv1      conv 8 @ 3x3, padding 1, ReLU         8 x 16 x 64   80
pool1      max-pool 2x2                          8 x 8 x 32    0
conv2      conv 16 @ 3x3, padding 1, ReLU        16 x 8 x 32   1,168
pool2      max-pool 2x2                          16 x 4 x 16   0
fc1        linear 1024 -> 32, ReLU               32            32,800
fc2        linear 32 -> 3 (zero weights,         3             99
           bias (0, 0, 0))                       (alpha, tx, ty)
=========  ====================================  ============  ==========

34,147 parameters (:math:`9 \cdot 1 \cdot 8 + 8`, :math:`9 \cdot 8 \cdot 16 + 16`,
:math:`1024 \cdot 32 + 32`, :math:`32 \cdot 3 + 3`).

The default localiser (``localizer="small"``) takes any input of at least 4 x 4 pixels and,
as the paper's MNIST localisation networks, max-pools *before* each convolution (it needs the
pose, not the detail, and costs a sixteenth of a full-resolution one):

=========  =========================================  ==============  =====================
layer      operation                                  output (28x28)  parameters
=========  =========================================  ==============  =====================
conv1      max-pool 2, conv 8 @ 5x5, padding 2, ReLU  8 x 14 x 14     208
conv2      max-pool 2, conv 16 @ 5x5, padding 2, ReLU 16 x 7 x 7      3,216
pool       adaptive average pool to 4 x 4             16 x 4 x 4      0
fc1        linear 256 -> 32, ReLU                     32              8,224
fc2        linear 32 -> 6 (affine) or 3 (rigid)       6 or 3          198 or 99
=========  =========================================  ==============  =====================

and the default classifier (:class:`SmallCNN`): conv 16 @ 3x3 (160), max-pool, conv 32 @ 3x3
(4,640), max-pool, adaptive average pool to 4 x 4, linear 512 -> 64 (32,832), linear 64 -> 10
(650): 38,282 parameters. The registered ``stn`` model (affine, one channel, ten classes) has
11,846 + 38,282 = 50,128 parameters.

References
----------
Jaderberg M., Simonyan K., Zisserman A., Kavukcuoglu K. (2015). Spatial transformer
networks. NeurIPS. arXiv:1506.02025.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlimaging.models._validation import check_input, check_int
from mlimaging.models.registry import register_model

__all__ = [
    "EXAM_INPUT",
    "ExamLocalizer",
    "SmallCNN",
    "SpatialTransformer",
    "affine_theta",
    "rigid_theta",
]

#: The exam design's input size (H, W).
EXAM_INPUT = (16, 64)
#: Number of parameters of each transformation model.
N_PARAMS = {"rigid": 3, "affine": 6}
_IDENTITY = {"rigid": (0.0, 0.0, 0.0), "affine": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)}


def _check_params(params: Any, n: int, name: str = "params") -> torch.Tensor:
    if not isinstance(params, torch.Tensor) or not params.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got {type(params).__name__}")
    if params.ndim != 2 or params.shape[1] != n:
        raise ValueError(f"{name} must have shape (B, {n}), got {tuple(params.shape)}")
    return params


def _check_size(size: Any) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must hold positive ints (H, W), got {size!r}")
    return h, w


def rigid_theta(params: torch.Tensor, *, size: tuple[int, int]) -> torch.Tensor:
    r"""``affine_grid`` matrices ``(B, 2, 3)`` of rigid transforms ``(alpha, tx, ty)``.

    .. math::
        \theta = \bigl[\, S^{-1} R(\alpha) S \;\big|\; (t_x, t_y)^\top \bigr], \qquad
        S = \operatorname{diag}(W/2,\ H/2),

    i.e. a rotation by :math:`\alpha` radians in pixel units (orthonormal however unequal
    ``H`` and ``W`` are) and a translation in normalised units. Differentiable in ``params``.

    Parameters
    ----------
    params : Tensor (B, 3)
        Angle (radians), :math:`t_x`, :math:`t_y`.
    size : (H, W)
        The image size (sets the aspect ratio of :math:`S`).

    Examples
    --------
    >>> import math, torch
    >>> theta = rigid_theta(torch.tensor([[math.pi / 6, 0.1, 0.0]]), size=(16, 64))
    >>> S = torch.diag(torch.tensor([64 / 2, 16 / 2]))
    >>> R = S @ theta[0, :, :2] @ torch.linalg.inv(S)  # back in pixel units
    >>> torch.allclose(R.T @ R, torch.eye(2), atol=1e-6), round(float(torch.linalg.det(R)), 4)
    (True, 1.0)
    """
    params = _check_params(params, 3)
    h, w = _check_size(size)
    alpha, tx, ty = params.unbind(1)
    c, s = torch.cos(alpha), torch.sin(alpha)
    # S^{-1} R S: entry (i, j) is R_ij * s_j / s_i with s = (W/2, H/2).
    row0 = torch.stack([c, -s * (h / w), tx], dim=1)
    row1 = torch.stack([s * (w / h), c, ty], dim=1)
    return torch.stack([row0, row1], dim=1)


def affine_theta(params: torch.Tensor) -> torch.Tensor:
    r"""``affine_grid`` matrices ``(B, 2, 3)`` from six affine parameters (row-major).

    .. math:: \theta = \begin{pmatrix} a_1 & a_2 & a_3 \\ a_4 & a_5 & a_6 \end{pmatrix},

    in normalised coordinates; ``(1, 0, 0, 0, 1, 0)`` is the identity.

    Examples
    --------
    >>> import torch
    >>> affine_theta(torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]]))
    tensor([[[1., 0., 0.],
             [0., 1., 0.]]])
    """
    return _check_params(params, 6).reshape(-1, 2, 3)


class ExamLocalizer(nn.Module):
    """The exam's localisation network for ``16 x 64`` inputs (table in the module docstring).

    Two 3x3 convolutions (8 and 16 channels, padding 1, ReLU) each followed by a 2x2
    max-pool, then linear 1024 -> ``hidden`` -> ``n_params``.

    Examples
    --------
    >>> import torch
    >>> loc = ExamLocalizer()
    >>> loc(torch.zeros(2, 1, 16, 64)).shape
    torch.Size([2, 3])
    >>> sum(p.numel() for p in loc.parameters())
    34147
    """

    def __init__(self, *, in_channels: int = 1, n_params: int = 3, hidden: int = 32) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        check_int(n_params, "n_params")
        check_int(hidden, "hidden")
        h, w = EXAM_INPUT
        self.conv1 = nn.Conv2d(in_channels, 8, kernel_size=3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * (h // 4) * (w // 4), hidden)
        self.fc2 = nn.Linear(hidden, n_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Parameters ``(B, n_params)`` of images ``(B, in_channels, 16, 64)``."""
        check_input(x, self.in_channels)
        if tuple(x.shape[-2:]) != EXAM_INPUT:
            raise ValueError(f"x must have shape (B, {self.in_channels}, 16, 64) for the exam "
                             f"localiser, got {tuple(x.shape)}")
        x = self.pool1(F.relu(self.conv1(x)))
        x = self.pool2(F.relu(self.conv2(x)))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class _SmallLocalizer(nn.Module):
    """Default localiser: (max-pool 2, 5x5 conv, ReLU) twice, adaptive 4 x 4 pool, two linear layers."""

    def __init__(self, *, in_channels: int, n_params: int, hidden: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=5, padding=2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(16 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, n_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(F.max_pool2d(x, 2, ceil_mode=True)))
        x = F.relu(self.conv2(F.max_pool2d(x, 2, ceil_mode=True)))
        return self.fc2(F.relu(self.fc1(self.pool(x).flatten(1))))


class SmallCNN(nn.Module):
    """A small CNN classifier for any input of at least 4 x 4 pixels (the STN's default head).

    conv 16 @ 3x3 -> ReLU -> max-pool 2 -> conv 32 @ 3x3 -> ReLU -> max-pool 2 -> adaptive
    average pool 4 x 4 -> linear 512 -> 64 -> ReLU -> linear 64 -> ``num_classes``.
    Used alone it is the plain-CNN baseline of the ``registration`` experiment.

    Examples
    --------
    >>> import torch
    >>> net = SmallCNN(num_classes=3)
    >>> net(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 3])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, hidden: int = 64) -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        check_int(hidden, "hidden")
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(32 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` of images ``(B, in_channels, H, W)``, H, W >= 4."""
        check_input(x, self.in_channels)
        if min(x.shape[-2:]) < 4:
            raise ValueError(f"x must be at least 4 x 4 pixels, got {tuple(x.shape)}")
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc2(F.relu(self.fc1(self.pool(x).flatten(1))))


class SpatialTransformer(nn.Module):
    r"""A spatial transformer (localiser + affine sampler) in front of a classifier.

    ``forward(x) = classifier(rectify(x))`` with ``rectify(x)`` the input resampled on the
    grid :math:`q = \theta(f_\text{loc}(x))\,(p, 1)^\top` (see the module docstring).

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Logits of the default classifier.
    transform : {"affine", "rigid"}
        Parameterisation predicted by the localiser: 6 affine parameters, or
        ``(alpha, tx, ty)`` through :func:`rigid_theta`.
    localizer : {"small", "exam"}
        ``"small"``: the default localiser, any input size (>= 4 x 4). ``"exam"``: the
        course's exam design (:class:`ExamLocalizer`), inputs of exactly 16 x 64.
    classifier : nn.Module, optional
        The network applied to the rectified image; default :class:`SmallCNN`
        (``in_channels``, ``num_classes``). ``nn.Identity()`` makes the module a pure
        transformer whose output is the rectified image.
    padding_mode : {"zeros", "border", "reflection"}
        What ``grid_sample`` reads outside the input.

    Attributes
    ----------
    localizer : nn.Module
        Maps ``x`` to parameters ``(B, P)``; its last linear layer (``localizer.fc2``) starts at
        zero weights and the identity bias.

    Examples
    --------
    >>> import torch
    >>> stn = SpatialTransformer(transform="rigid")
    >>> x = torch.rand(2, 1, 28, 28)
    >>> stn(x).shape
    torch.Size([2, 10])
    >>> torch.allclose(stn.rectify(x), x, atol=1e-5)  # the identity at initialisation
    True
    >>> exam = SpatialTransformer(transform="rigid", localizer="exam", classifier=torch.nn.Identity())
    >>> exam(torch.rand(1, 1, 16, 64)).shape  # the rectified image
    torch.Size([1, 1, 16, 64])
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, transform: str = "affine",
                 localizer: str = "small", classifier: nn.Module | None = None,
                 padding_mode: str = "zeros") -> None:
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels")
        self.num_classes = check_int(num_classes, "num_classes")
        if transform not in N_PARAMS:
            raise ValueError(f"transform must be one of {sorted(N_PARAMS)}, got {transform!r}")
        if localizer not in ("small", "exam"):
            raise ValueError(f"localizer must be 'small' or 'exam', got {localizer!r}")
        if classifier is not None and not isinstance(classifier, nn.Module):
            raise ValueError(f"classifier must be an nn.Module or None, got {type(classifier).__name__}")
        if padding_mode not in ("zeros", "border", "reflection"):
            raise ValueError(f"padding_mode must be 'zeros', 'border' or 'reflection', got {padding_mode!r}")
        self.transform = transform
        self.localizer_kind = localizer
        self.padding_mode = padding_mode
        n = N_PARAMS[transform]
        if localizer == "exam":
            self.localizer: nn.Module = ExamLocalizer(in_channels=in_channels, n_params=n)
        else:
            self.localizer = _SmallLocalizer(in_channels=in_channels, n_params=n)
        self.classifier = classifier if classifier is not None else SmallCNN(
            in_channels=in_channels, num_classes=num_classes)
        self.reset_localizer()

    def reset_localizer(self) -> None:
        """Set the localiser's last layer to zero weights and the identity bias."""
        last = self.localizer.fc2
        with torch.no_grad():
            last.weight.zero_()
            last.bias.copy_(torch.tensor(_IDENTITY[self.transform], dtype=last.bias.dtype))

    def _check(self, x: Any) -> torch.Tensor:
        check_input(x, self.in_channels)
        if min(x.shape[-2:]) < 4:
            raise ValueError(f"x must be at least 4 x 4 pixels, got {tuple(x.shape)}")
        if self.localizer_kind == "exam" and tuple(x.shape[-2:]) != EXAM_INPUT:
            raise ValueError(f"x must have shape (B, {self.in_channels}, 16, 64) with "
                             f"localizer='exam', got {tuple(x.shape)}")
        return x

    def localize(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted transformation parameters ``(B, 3)`` (rigid) or ``(B, 6)`` (affine)."""
        return self.localizer(self._check(x))

    def theta(self, params: torch.Tensor, *, size: tuple[int, int]) -> torch.Tensor:
        """The ``(B, 2, 3)`` sampling matrices of parameters from :meth:`localize`."""
        if self.transform == "rigid":
            return rigid_theta(params, size=size)
        return affine_theta(params)

    def rectify(self, x: torch.Tensor, *, return_theta: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """The input warped by its predicted transform, same shape as ``x`` (for figures).

        With ``return_theta=True`` also returns the ``(B, 2, 3)`` matrices used.
        """
        params = self.localize(x)
        theta = self.theta(params, size=tuple(x.shape[-2:]))
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode=self.padding_mode,
                            align_corners=False)
        return (out, theta) if return_theta else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``classifier(rectify(x))``: logits ``(B, num_classes)`` with the default classifier."""
        return self.classifier(self.rectify(x))


@register_model("stn", input_shape=(1, 28, 28))
def stn(*, in_channels: int = 1, num_classes: int = 10, transform: str = "affine",
        localizer: str = "small") -> SpatialTransformer:
    """Spatial transformer (Jaderberg et al. 2015): affine/rigid localiser + small CNN."""
    return SpatialTransformer(in_channels=in_channels, num_classes=num_classes,
                              transform=transform, localizer=localizer)

"""Figure helpers (matplotlib with the Agg backend, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mlimaging.utils import as_numpy  # noqa: E402

__all__ = ["image_grid", "label_cmap", "middle_slice", "plt"]


def middle_slice(image: Any) -> np.ndarray:
    """A 2D view of an image: itself if 2D, its middle slice along the first axis if 3D.

    A leading channel axis of size 1 is dropped.
    """
    arr = as_numpy(image)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        return arr
    while arr.ndim > 2:
        arr = arr[arr.shape[0] // 2]
    return arr


def label_cmap(n_labels: int) -> matplotlib.colors.ListedColormap:
    """A qualitative colormap with black for background (label 0)."""
    base = plt.get_cmap("tab10")
    colors = [(0, 0, 0, 1)] + [base(i % 10) for i in range(max(n_labels, 1))]
    return matplotlib.colors.ListedColormap(colors)


def image_grid(
    images: Sequence[Any],
    *,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    cmap: str | Any = "gray",
    labels: Sequence[bool] | None = None,
    size: float = 1.6,
    suptitle: str | None = None,
) -> plt.Figure:
    """A grid of images (2D arrays, or 3D shown by their middle slice).

    ``labels[i]`` marks image ``i`` as a label map, drawn with :func:`label_cmap`.
    """
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols)) if n else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if suptitle else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = middle_slice(images[i])
        if labels is not None and labels[i]:
            k = int(img.max()) if img.size else 0
            ax.imshow(img, cmap=label_cmap(k), vmin=0, vmax=k + 1 if k else 1, interpolation="nearest")
        else:
            ax.imshow(img, cmap=cmap, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig

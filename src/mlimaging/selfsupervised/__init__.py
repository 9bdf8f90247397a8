"""Self-supervised learning: representations without labels, judged by probes with few labels.

- ``base.py``: :class:`SelfSupervisedStep`, the training step of every method through
  :func:`mlimaging.training.fit` (``method.ssl_loss(x, y, generator=...)``).
"""

from __future__ import annotations

from mlimaging.selfsupervised.base import SelfSupervisedStep, split_images

__all__ = ["SelfSupervisedStep", "split_images"]

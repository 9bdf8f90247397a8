"""Generative and causal models: GANs and their quality metrics, Morpho-MNIST, deep
structural causal models, counterfactuals and their soundness.
"""

from __future__ import annotations

__all__: list[str] = []

"""Interpretability: attributions, feature visualisation, embeddings and trust checks.

Attributions share one verb, ``attribute(model, x, target, *, method, **kw)``, returning a
map of ``x``'s shape, and one function per method with the same ``(model, x, target, ...)``
signature:

- gradients (``gradients.py``): :func:`saliency`, :func:`input_x_gradient`,
  :func:`smoothgrad`, :func:`integrated_gradients`, :func:`deconvnet`,
  :func:`guided_backprop`;
- class activation maps (``cam.py``): :func:`grad_cam`, :func:`guided_grad_cam`;
- perturbation (``perturbation.py``): :func:`occlusion`, :func:`feature_ablation`.

``target`` is an int class, one class index per sample, or for a segmentation model a
:class:`SegmentationTarget` ``(cls, mask)`` (or the tuple ``(cls, mask)``): the sum of the
class-``cls`` logits inside ``mask``. An int target on a model with spatial outputs sums the
class over all positions.

The ReLU rules of DeconvNet and guided backprop reach ``nn.ReLU`` (in-place or not) and
``F.relu``/``torch.relu``/``Tensor.relu`` calls alike (``_relu.py``).
"""

from mlimaging.interpretability._dispatch import METHODS, attribute
from mlimaging.interpretability._targets import SegmentationTarget
from mlimaging.interpretability.ablation import ablate_channels
from mlimaging.interpretability.cam import grad_cam, guided_grad_cam
from mlimaging.interpretability.embeddings import embed, plot_embedding, tsne
from mlimaging.interpretability.gradients import (
    deconvnet,
    guided_backprop,
    input_x_gradient,
    integrated_gradients,
    saliency,
    smoothgrad,
)
from mlimaging.interpretability.perturbation import feature_ablation, occlusion
from mlimaging.interpretability.trust import (
    deletion_insertion,
    rank_correlation,
    sanity_check,
)
from mlimaging.interpretability.visualization import (
    activation_maximization,
    class_model_visualization,
    deep_dream,
    plot_filters,
    visualize_filters,
)

__all__ = [
    "METHODS",
    "SegmentationTarget",
    "attribute",
    "deconvnet",
    "feature_ablation",
    "grad_cam",
    "guided_backprop",
    "guided_grad_cam",
    "input_x_gradient",
    "integrated_gradients",
    "occlusion",
    "saliency",
    "smoothgrad",
    # feature visualisation, embeddings, trust checks, ablation
    "ablate_channels",
    "activation_maximization",
    "class_model_visualization",
    "deep_dream",
    "deletion_insertion",
    "embed",
    "plot_embedding",
    "plot_filters",
    "rank_correlation",
    "sanity_check",
    "tsne",
    "visualize_filters",
]

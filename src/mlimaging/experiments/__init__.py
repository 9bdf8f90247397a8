"""Experiments: one recipe per course unit, registered by name and run into a report.

``mlimaging experiments`` lists them; ``mlimaging run NAME [--quick]`` runs one.
"""

from __future__ import annotations

from mlimaging.experiments import classification as _classification  # noqa: E402,F401

# Each module registers its experiment with @experiment; import them explicitly here.
from mlimaging.experiments import data as _data  # noqa: E402,F401
from mlimaging.experiments import detection as _detection  # noqa: E402,F401
from mlimaging.experiments import federated as _federated  # noqa: E402,F401
from mlimaging.experiments import generative as _generative  # noqa: E402,F401
from mlimaging.experiments import interpretability as _interpretability  # noqa: E402,F401
from mlimaging.experiments import inverse as _inverse  # noqa: E402,F401
from mlimaging.experiments import metrics as _metrics  # noqa: E402,F401
from mlimaging.experiments import privacy as _privacy  # noqa: E402,F401
from mlimaging.experiments import registration as _registration  # noqa: E402,F401
from mlimaging.experiments import robustness as _robustness  # noqa: E402,F401
from mlimaging.experiments import segmentation as _segmentation  # noqa: E402,F401
from mlimaging.experiments import selfsupervised as _selfsupervised  # noqa: E402,F401
from mlimaging.experiments import superres as _superres  # noqa: E402,F401
from mlimaging.experiments import transformers as _transformers  # noqa: E402,F401
from mlimaging.experiments.registry import (
    Experiment,
    ExperimentConfig,
    ExperimentFailed,
    experiment,
    get_experiment,
    list_experiments,
    run_all,
    run_experiment,
)

__all__ = [
    "Experiment",
    "ExperimentConfig",
    "ExperimentFailed",
    "experiment",
    "get_experiment",
    "list_experiments",
    "run_all",
    "run_experiment",
]

"""Privacy-preserving machine learning: federated learning (FedSGD, FedAvg, FedProx) and
client partitions; secure multi-party computation for secure aggregation.
"""

from __future__ import annotations

from mlimaging.privacy.federated import (
    FLHistory,
    ProximalStep,
    fedavg,
    fedsgd,
    partition,
    partition_summary,
    plot_partition,
    rounds_to_accuracy,
)

__all__ = [
    "FLHistory",
    "ProximalStep",
    "fedavg",
    "fedsgd",
    "partition",
    "partition_summary",
    "plot_partition",
    "rounds_to_accuracy",
]

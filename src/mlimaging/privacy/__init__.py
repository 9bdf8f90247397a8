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
from mlimaging.privacy.smpc import (
    BeaverTriple,
    MaskedSumTranscript,
    SecureSumTranscript,
    TruncationPair,
    beaver_triple,
    decode,
    encode,
    mul,
    pairwise_masked_sum,
    reconstruct,
    secure_linear,
    secure_sum,
    shamir_reconstruct,
    shamir_share,
    share,
    truncate,
    truncation_pair,
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
    "BeaverTriple",
    "MaskedSumTranscript",
    "SecureSumTranscript",
    "TruncationPair",
    "beaver_triple",
    "decode",
    "encode",
    "mul",
    "pairwise_masked_sum",
    "reconstruct",
    "secure_linear",
    "secure_sum",
    "shamir_reconstruct",
    "shamir_share",
    "share",
    "truncate",
    "truncation_pair",
]

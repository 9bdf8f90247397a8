"""Shared test fixtures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Helper scripts and data modules run by the tests (in subprocesses or by path), not test modules:
# keep --doctest-modules from importing them.
collect_ignore_glob = ["training/_*.py"]

# Two cores shared by two pytest workers: one thread each avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture
def isolated_registry(monkeypatch):
    """A copy of the experiment registry, so a test can register experiments without leaking them."""
    from mlimaging.experiments import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry

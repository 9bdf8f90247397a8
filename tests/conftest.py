"""Shared test fixtures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

# Helper scripts and data modules run by the tests (in subprocesses or by path), not test modules:
# keep --doctest-modules from importing them.
collect_ignore_glob = ["_*.py", "training/_*.py"]

# timm and segment-anything (oracles) import torchvision, whose PyPI wheel cannot load its C ops
# on the CPU build of torch: define the two ops its import needs (see _torchvision_cpu.py).
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

_spec = importlib.util.spec_from_file_location("_torchvision_cpu", Path(__file__).with_name("_torchvision_cpu.py"))
_torchvision_cpu = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_torchvision_cpu)
_torchvision_cpu.install()

# Two cores shared by two pytest workers: one thread each avoids oversubscription.
torch.set_num_threads(1)


@pytest.fixture
def isolated_registry(monkeypatch):
    """A copy of the experiment registry, so a test can register experiments without leaking them."""
    from mlimaging.experiments import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry

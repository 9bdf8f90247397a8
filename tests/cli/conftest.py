"""The CLI sets torch's thread count (``mlimaging --threads``, default: every core available);
restore the test process's setting after each test so CLI tests do not change the others."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    yield
    torch.set_num_threads(threads)
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp

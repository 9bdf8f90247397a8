"""Runs trained once for several test files, and the torch thread count.

The CLI sets torch's thread count (``mlimaging --threads``, default: every core available);
restore the test process's setting after each test so CLI tests do not change the others."""

from __future__ import annotations

import functools
import os
from pathlib import Path

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


def train_run(tmp_path_factory: pytest.TempPathFactory, name: str, args: list[str]) -> Path:
    """The run folder of ``mlimaging *args --out <tmp>/run``, which must succeed; torch's thread count is
    restored after it (a fixture wider than a test runs before :func:`_restore_torch_threads`)."""
    from typer.testing import CliRunner

    from mlimaging.cli import app

    out, threads = tmp_path_factory.mktemp(name) / "run", torch.get_num_threads()
    try:
        result = CliRunner().invoke(app, [*args, "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """:func:`train_run` for test files: ``trained(name, args)`` is the run folder."""
    return functools.partial(train_run, tmp_path_factory)


# The smallest run of each kind that several test files need, trained once per session.
@pytest.fixture(scope="session")
def digits_classifier_run(trained):
    return trained("classifier", ["train", "classifier", "--dataset", "digits", "--epochs", "1"])


@pytest.fixture(scope="session")
def phantom_segmenter_run(trained):
    return trained("segmenter", ["train", "segmenter", "--dataset", "phantoms", "--epochs", "1",
                                 "--n-train", "2", "--size", "32", "--channels", "4"])


@pytest.fixture(scope="session")
def scm_run(trained):
    return trained("scm", ["train", "scm", "--epochs", "1", "--n-train", "64", "--n-val", "16"])

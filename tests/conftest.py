"""Shared test helpers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dask
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist workers on two cores: keep each torch process to one thread.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)


class _CountingScheduler:
    """A dask scheduler that counts compute calls and fails past ``max_computes``."""

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):  # type: ignore[no-untyped-def]
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations were triggered: {self.total_computes} "
                f"(allowed {self.max_computes})"
            )
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[_CountingScheduler]:
    """Fail the test if code inside the block computes a dask graph (as cf-xarray does)."""
    scheduler = _CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


@pytest.fixture
def no_dask_compute():  # type: ignore[no-untyped-def]
    return raise_if_dask_computes

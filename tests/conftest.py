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


def record_message(request: pytest.FixtureRequest, error: str, message: str) -> None:
    """Append a catalogue case's error to ``$XCORRDIFF_ERRORS_TABLE`` (JSON lines), if set.

    ``docs/make_errors.py`` renders docs/errors.md from these records, so the messages in
    the catalogue are the ones the tests saw.
    """
    path = os.environ.get("XCORRDIFF_ERRORS_TABLE")
    if not path:
        return
    import json

    record = {
        "id": request.node.callspec.id,
        "test": request.node.nodeid,
        "error": error,
        "message": message,
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests (bitwise comparisons with one-thread workers)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

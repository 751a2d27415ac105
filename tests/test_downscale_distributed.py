"""downscale() on a dask.distributed LocalCluster: one model load per worker, same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_data, tiny_model, two_worker_cluster

import xcorrdiff.inference.api
from xcorrdiff.inference.api import downscale

pytestmark = pytest.mark.numerics

pytest.importorskip("distributed")


def _loads() -> int:
    return xcorrdiff.inference.api.cache_info()["loads"]


def test_model_loaded_once_per_worker_and_numbers_unchanged(tmp_path: Path) -> None:
    path = tiny_model().save(tmp_path / "model")
    lr, _ = tiny_data(6)
    kw = {"n_ensemble": 2, "num_steps": 2, "seed": 4, "device": "cpu", "member_batch_size": 1}
    ens = downscale(lr.chunk(time=1), path, **kw)  # type: ignore[arg-type]
    local = ens.compute(scheduler="sync")
    with two_worker_cluster() as client:
        remote = ens.compute()
        loads = client.run(_loads)
        again = downscale(lr.chunk(time=2), path, **kw).compute()  # type: ignore[arg-type]
        loads_after = client.run(_loads)
    assert len(loads) == 2
    assert all(n <= 1 for n in loads.values()) and sum(loads.values()) >= 1
    assert loads_after == loads  # the second call reuses each worker's cached model
    for name in ("t2m", "u10m"):
        np.testing.assert_array_equal(local[name].values, remote[name].values)
        np.testing.assert_array_equal(local[name].values, again[name].values)

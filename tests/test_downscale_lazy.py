"""downscale() on dask: nothing computed until asked, chunking-invariant, streamed to zarr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes, tiny_data, tiny_model
from dask.callbacks import Callback

from xcorrdiff.config import SAMPLERS
from xcorrdiff.inference.api import downscale


def _run(lr: xr.Dataset, **kw: Any) -> xr.Dataset:
    kw = {"n_ensemble": 2, "num_steps": 3, "device": "cpu", "member_batch_size": 1, **kw}
    return downscale(lr, tiny_model(), **kw)


def test_dask_input_gives_dask_output_without_computing() -> None:
    lr, _ = tiny_data(4)
    lazy = lr.chunk(time=2)
    with raise_if_dask_computes():
        ens = _run(lazy, return_mean=True, seed=3)
    for name in ("t2m", "u10m", "t2m_mean"):
        assert isinstance(ens[name].data, da.Array)
    assert ens["t2m"].chunks == ((2,), (2, 2), (32,), (48,))
    # One graph key holds the model reference, shared by all blocks.
    model_keys = [k for k in ens.__dask_graph__() if str(k).startswith("xcorrdiff-model-")]
    assert len(model_keys) == 1


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_same_numbers_whatever_the_time_chunking(sampler: str) -> None:
    """Row-wise evaluation (member_batch_size=1): bitwise equal across dask chunkings, for
    every sampler (the stochastic ones draw from each (time, member)'s own stream).

    Numpy-backed input takes another interpolation code path in the regrid step (equal to
    about 1e-6 in normalized units), so it is compared to a tolerance.
    """
    lr, _ = tiny_data(4)
    sampler_args = {"sampler": sampler, "num_steps": max(3, SAMPLERS[sampler].min_steps)}
    whole = _run(lr.chunk(time=4), seed=1, **sampler_args).compute()
    for chunks in (1, 3):
        lazy = _run(lr.chunk(time=chunks), seed=1, **sampler_args).compute()
        for name in ("t2m", "u10m"):
            np.testing.assert_array_equal(whole[name].values, lazy[name].values)
    eager = _run(lr, seed=1, **sampler_args)
    for name in ("t2m", "u10m"):
        np.testing.assert_allclose(whole[name].values, eager[name].values, atol=1e-3, rtol=0)


def test_to_zarr_streams_chunk_by_chunk(tmp_path: Path) -> None:
    """Writing holds at most two sample blocks in memory at once (of six)."""
    lr, _ = tiny_data(6)
    ens = _run(lr.chunk(time=1), seed=2)
    with raise_if_dask_computes():
        delayed = ens.to_zarr(tmp_path / "out.zarr", compute=False, consolidated=False)
    held: list[int] = []

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        cache = state["cache"]
        names = (str(k[0] if isinstance(k, tuple) else k) for k in cache)
        held.append(sum(1 for name in names if name.startswith("xcorrdiff-sample-")))

    with Callback(posttask=posttask):
        dask.compute(delayed, scheduler="sync")
    assert 1 <= max(held) <= 2
    back = xr.open_zarr(tmp_path / "out.zarr", consolidated=False)
    np.testing.assert_array_equal(back["t2m"].values, ens["t2m"].values)
    assert back["t2m"].attrs["units"] == "K"
    assert back.attrs["sampler"] == "euler"

"""Dataset ⇄ array ⇄ tensor conversion (xcorrdiff.data.convert)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from xcorrdiff.data.convert import array_to_dataset, dataset_to_array, to_tensor

N_TIME, NY, NX = 5, 4, 6


def _dataset(chunked: bool = False) -> xr.Dataset:
    rng = np.random.default_rng(0)
    times = pd.date_range("2020-01-01", periods=N_TIME, freq="6h")
    lat = np.linspace(20, 30, NY)[:, None] + np.zeros((NY, NX))
    ds = xr.Dataset(
        {
            "t2m": (("time", "y", "x"), rng.normal(280, 5, (N_TIME, NY, NX)), {"units": "K"}),
            # Stored (x, y, time): the stack must transpose it.
            "u10": (("x", "y", "time"), rng.normal(0, 3, (NX, NY, N_TIME)), {"units": "m s-1"}),
            "orography": (("y", "x"), rng.normal(500, 100, (NY, NX)), {"units": "m"}),
            "lsm": (("y", "x"), rng.integers(0, 2, (NY, NX)).astype(np.int8)),
        },
        coords={
            "time": times,
            "y": np.arange(NY) * 2.0,
            "x": np.arange(NX) * 3.0,
            "lat": (("y", "x"), lat),
        },
        attrs={"title": "test"},
    )
    return ds.chunk(time=2) if chunked else ds


@pytest.mark.parametrize("chunked", [False, True])
def test_dataset_to_array_stacks_channels_in_order(chunked: bool, no_dask_compute) -> None:
    ds = _dataset(chunked)
    names = ["u10", "t2m", "orography", "lsm"]
    with no_dask_compute():
        array = dataset_to_array(ds, names)
    assert isinstance(array, da.Array) is chunked
    assert array.shape == (N_TIME, 4, NY, NX)
    assert array.dtype == np.float32
    values = np.asarray(array)
    ref = _dataset()
    np.testing.assert_allclose(values[:, 0], ref["u10"].transpose("time", "y", "x"), rtol=1e-6)
    np.testing.assert_allclose(values[:, 1], ref["t2m"], rtol=1e-6)
    # Invariants are broadcast along time, integers cast.
    for t in range(N_TIME):
        np.testing.assert_allclose(values[t, 2], ref["orography"], rtol=1e-6)
        np.testing.assert_array_equal(values[t, 3], ref["lsm"].astype(np.float32))


def test_dataset_to_array_dask_keeps_time_chunks_for_invariants() -> None:
    array = dataset_to_array(_dataset(chunked=True), ["t2m", "orography"])
    assert isinstance(array, da.Array)
    assert array.chunks[0] == (2, 2, 1)
    # One chunk per time block and channel: a time block is read without the others.
    assert array.numblocks == (3, 2, 1, 1)


def test_dataset_to_array_defaults_to_all_variables_and_dtype() -> None:
    array = dataset_to_array(_dataset(), dtype=np.float64)
    assert array.shape == (N_TIME, 4, NY, NX)
    assert array.dtype == np.float64


def test_dataset_to_array_custom_dims() -> None:
    ds = _dataset().rename(time="valid_time", y="rlat", x="rlon")
    array = dataset_to_array(ds, ["t2m"], dims=("valid_time", "rlat", "rlon"))
    assert array.shape == (N_TIME, 1, NY, NX)


def test_dataset_to_array_missing_variable_lists_available() -> None:
    with pytest.raises(KeyError, match=r"\['q2m'\] not found.*available variables.*'t2m'"):
        dataset_to_array(_dataset(), ["t2m", "q2m"])


def test_dataset_to_array_wrong_dims() -> None:
    ds = _dataset()
    ds["z"] = (("level", "time", "y", "x"), np.zeros((2, N_TIME, NY, NX)))
    with pytest.raises(ValueError, match=r"variable 'z' has dims .*'level'.*sel\(level"):
        dataset_to_array(ds, ["t2m", "z"])
    ds["profile"] = (("time", "y"), np.zeros((N_TIME, NY)))
    with pytest.raises(ValueError, match="variable 'profile' has dims"):
        dataset_to_array(ds, ["profile"])


def test_dataset_to_array_needs_time_dimension() -> None:
    ds = _dataset()[["orography"]]
    with pytest.raises(ValueError, match=r"no time dimension 'time'.*expand_dims"):
        dataset_to_array(ds)


def test_dataset_to_array_rejects_dataarray() -> None:
    with pytest.raises(TypeError, match=r"must be an xarray\.Dataset, got DataArray"):
        dataset_to_array(_dataset()["t2m"])  # type: ignore[arg-type]


def test_to_tensor_shares_memory_and_casts() -> None:
    array = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    tensor = to_tensor(array)
    assert tensor.dtype == torch.float32
    array[0, 0, 0, 0] = -1.0
    assert tensor[0, 0, 0, 0].item() == -1.0  # zero copy
    ints = to_tensor(np.ones((2, 2), dtype=np.int16))
    assert ints.dtype == torch.float32
    # A read-only broadcast view (an invariant) is copied, not shared.
    view = np.broadcast_to(np.ones((1, 2)), (3, 2))
    assert to_tensor(view, dtype=torch.float64).shape == (3, 2)


def test_to_tensor_channels_last() -> None:
    tensor = to_tensor(np.zeros((2, 3, 4, 5), dtype=np.float32), channels_last=True)
    assert tensor.shape == (2, 3, 4, 5)
    assert tensor.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match=r"channels_last needs a 4-D.*\(3, 4\)"):
        to_tensor(np.zeros((3, 4)), channels_last=True)


def test_to_tensor_refuses_to_compute_dask() -> None:
    with pytest.raises(TypeError, match=r"lazy dask array.*compute\(\)"):
        to_tensor(da.zeros((2, 2)))
    with pytest.raises(TypeError, match="dtype <U1"):
        to_tensor(np.array(["a"]))


@pytest.mark.parametrize("chunked", [False, True])
def test_array_to_dataset_round_trip(chunked: bool, no_dask_compute) -> None:
    ds = _dataset(chunked)
    names = ["t2m", "u10", "orography"]
    array = dataset_to_array(ds, names, dtype=np.float64)
    with no_dask_compute():
        back = array_to_dataset(array, names, template=ds)
    assert isinstance(back["t2m"].data, da.Array) is chunked
    expected = _dataset()[names].transpose("time", "y", "x")
    expected["orography"] = expected["orography"].broadcast_like(expected["t2m"])
    xr.testing.assert_allclose(back.compute(), expected)
    assert back["t2m"].attrs == {"units": "K"}
    assert back["lat"].dims == ("y", "x")
    assert back.attrs == {"title": "test"}


def test_array_to_dataset_member_tensor_attrs_and_coords() -> None:
    ds = _dataset()
    ensemble = torch.randn(3, N_TIME, 2, NY, NX)
    out = array_to_dataset(
        ensemble,
        ["t2m", "u10"],
        template=ds,
        coords={"member": np.arange(3)},
        attrs={"t2m": {"long_name": "2 m temperature"}},
    )
    assert out["t2m"].dims == ("member", "time", "y", "x")
    np.testing.assert_array_equal(out["u10"].values, ensemble[:, :, 1].numpy())
    assert out["t2m"].attrs == {"units": "K", "long_name": "2 m temperature"}
    np.testing.assert_array_equal(out["member"], np.arange(3))
    np.testing.assert_array_equal(out["time"], ds["time"])


def test_array_to_dataset_errors() -> None:
    ds = _dataset()
    with pytest.raises(ValueError, match=r"array has 2 channels.*variables names 3"):
        array_to_dataset(np.zeros((N_TIME, 2, NY, NX)), ["a", "b", "c"])
    with pytest.raises(ValueError, match=r"expected 4-D \(time, channel, y, x\) or 5-D"):
        array_to_dataset(np.zeros((2, NY, NX)), ["a", "b"])
    with pytest.raises(
        ValueError, match="template coordinate 'time' has 5 values but the array has 3"
    ):
        array_to_dataset(np.zeros((3, 1, NY, NX)), ["t2m"], template=ds)
    # An explicit coordinate overrides the template's.
    out = array_to_dataset(
        np.zeros((3, 1, NY, NX)), ["t2m"], template=ds, coords={"time": ds["time"][:3].values}
    )
    assert out.sizes["time"] == 3

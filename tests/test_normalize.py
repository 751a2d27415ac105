"""Tests for xcorrdiff.data.normalize: fitting, exact inverse, laziness, serialisation."""

from __future__ import annotations

import json

import dask.array
import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

from xcorrdiff.data.normalize import Normalizer, VariableStats


def make_dataset(chunked: bool, dtype: str = "float32") -> xr.Dataset:
    rng = np.random.default_rng(42)
    shape = (6, 16, 20)
    dims = ("time", "y", "x")
    t2m = 285.0 + 12.0 * rng.standard_normal(shape)
    u10 = 3.0 + 4.0 * rng.standard_normal(shape)
    tp = rng.gamma(0.3, 2.0, shape) * (rng.random(shape) < 0.4)
    t2m[0, :2, :3] = np.nan  # missing values are ignored when fitting
    ds = xr.Dataset(
        {
            "t2m": (dims, t2m.astype(dtype), {"units": "K"}),
            "u10": (dims, u10.astype(dtype), {"units": "m s-1"}),
            "tp": (dims, tp.astype(dtype), {"units": "mm h-1"}),
        },
        coords={"time": np.arange(shape[0])},
    )
    return ds.chunk({"time": 2, "y": 8}) if chunked else ds


def reference_stats(ds: xr.Dataset, name: str, transform: str = "none") -> tuple[float, float]:
    values = ds[name].values.astype(np.float64)
    if transform == "log1p":
        values = np.log1p(values)
    return float(np.nanmean(values)), float(np.nanstd(values))


@pytest.fixture(params=[False, True], ids=["numpy", "dask"])
def chunked(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_fit_matches_float64_reference(chunked: bool) -> None:
    ds = make_dataset(chunked)
    with raise_if_dask_computes(max_computes=1) as scheduler:
        norm = Normalizer.fit(ds, transforms={"tp": "log1p"})
    assert scheduler.total_computes == (1 if chunked else 0)  # one pass over all variables
    assert norm.variables == ("t2m", "u10", "tp")
    for name in ("t2m", "u10", "tp"):
        transform = "log1p" if name == "tp" else "none"
        mean, std = reference_stats(make_dataset(False), name, transform)
        assert norm.stats[name].mean == pytest.approx(mean, rel=1e-12)
        assert norm.stats[name].std == pytest.approx(std, rel=1e-12)
        assert norm.stats[name].transform == transform


def test_fit_accumulates_in_float64() -> None:
    # float32 data with a large offset: float32 accumulation would lose the small spread.
    rng = np.random.default_rng(0)
    values = (1.0e4 + 1e-2 * rng.standard_normal(200_000)).astype(np.float32)
    ds = xr.Dataset({"p": ("n", values)}).chunk({"n": 50_000})
    norm = Normalizer.fit(ds)
    reference = values.astype(np.float64)
    assert norm.stats["p"].mean == pytest.approx(reference.mean(), rel=1e-14)
    assert norm.stats["p"].std == pytest.approx(reference.std(), rel=1e-9)


def test_fit_selected_variables_in_order() -> None:
    norm = Normalizer.fit(make_dataset(False), variables=["u10", "t2m"])
    assert norm.variables == ("u10", "t2m")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact_and_lazy(chunked: bool, dtype: str) -> None:
    ds = make_dataset(chunked, dtype)
    norm = Normalizer.fit(ds, transforms={"tp": "log1p"})
    with raise_if_dask_computes():
        normalized = norm.normalize(ds)
        restored = norm.denormalize(normalized)
    for name in norm.variables:
        assert normalized[name].dtype == np.dtype(dtype)
        assert restored[name].dtype == np.dtype(dtype)
        assert isinstance(normalized[name].data, type(ds[name].data))
        assert normalized[name].attrs == ds[name].attrs
        np.testing.assert_allclose(restored[name].values, ds[name].values, rtol=1e-6, atol=1e-6)
    # The normalized fields have zero mean and unit variance (of the transformed values).
    t2m = normalized["t2m"].values.astype(np.float64)
    assert np.nanmean(t2m) == pytest.approx(0.0, abs=1e-5)
    assert np.nanstd(t2m) == pytest.approx(1.0, rel=1e-5)
    expected_tp = (
        np.log1p(ds["tp"].values.astype(np.float64)) - norm.stats["tp"].mean
    ) / norm.stats["tp"].std
    np.testing.assert_allclose(normalized["tp"].values, expected_tp, rtol=1e-5, atol=1e-5)


def test_integer_data_becomes_float() -> None:
    ds = xr.Dataset({"count": ("n", np.arange(10, dtype=np.int16))})
    norm = Normalizer.fit(ds)
    out = norm.normalize(ds)
    assert out["count"].dtype == np.float32
    np.testing.assert_allclose(norm.denormalize(out)["count"].values, np.arange(10), atol=1e-5)


def test_dataarray_and_pass_through_of_other_variables(chunked: bool) -> None:
    ds = make_dataset(chunked)
    norm = Normalizer.fit(ds, variables=["t2m"])
    with raise_if_dask_computes():
        out_ds = norm.normalize(ds)
        out_da = norm.normalize(ds["t2m"])
    xr.testing.assert_identical(out_ds["u10"], ds["u10"])
    assert isinstance(out_da, xr.DataArray)
    xr.testing.assert_identical(out_da, out_ds["t2m"])


def test_normalize_array_matches_dataset_path(chunked: bool) -> None:
    ds = make_dataset(False).fillna(280.0)
    norm = Normalizer.fit(ds, transforms={"tp": "log1p"})
    names = ["tp", "t2m", "u10"]  # any channel order
    stacked = np.stack([ds[name].values for name in names], axis=1)  # (time, channel, y, x)
    array = dask.array.from_array(stacked, chunks=(2, 3, 8, 8)) if chunked else stacked
    with raise_if_dask_computes():
        normalized = norm.normalize_array(array, names, channel_axis=1)
        restored = norm.denormalize_array(normalized, names, channel_axis=1)
    assert type(normalized) is type(array)
    assert normalized.dtype == np.float32
    expected = np.stack([norm.normalize(ds)[name].values for name in names], axis=1)
    np.testing.assert_allclose(np.asarray(normalized), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(restored), stacked, rtol=1e-6, atol=1e-6)
    # The default channel axis is -3: (..., channel, y, x).
    np.testing.assert_allclose(
        norm.normalize_array(stacked[0], names), expected[0], rtol=1e-6, atol=1e-6
    )


def test_center_scale_vectors() -> None:
    norm = Normalizer.from_stats(mean={"a": 1.0, "b": 2.0}, std={"a": 3.0, "b": 4.0})
    mean, std = norm.center_scale(["b", "a"])
    np.testing.assert_array_equal(mean, [2.0, 1.0])
    np.testing.assert_array_equal(std, [4.0, 3.0])
    assert norm.select(["b"]).variables == ("b",)


def test_to_dict_from_dict_json_round_trip() -> None:
    norm = Normalizer.fit(make_dataset(False), transforms={"tp": "log1p"})
    text = json.dumps(norm.to_dict())
    again = Normalizer.from_dict(json.loads(text))
    assert again == norm
    assert again.variables == norm.variables


def test_from_stats_earth2studio_form() -> None:
    stats = {"t2m": {"mean": 285.0, "std": 12.0}, "tp": {"mean": 0.1, "std": 0.5}}
    norm = Normalizer.from_stats(stats, transforms={"tp": "log1p"})
    assert norm.stats["t2m"] == VariableStats(mean=285.0, std=12.0)
    assert norm.stats["tp"].transform == "log1p"
    same = Normalizer.from_stats(
        mean={"t2m": 285.0, "tp": 0.1}, std={"t2m": 12.0, "tp": 0.5}, transforms={"tp": "log1p"}
    )
    assert same == norm


# --- errors --------------------------------------------------------------------------------


def test_fit_zero_variance_is_an_error(chunked: bool) -> None:
    ds = make_dataset(chunked).assign(lsm=(("time", "y", "x"), np.full((6, 16, 20), 0.1)))
    with pytest.raises(ValueError, match=r"variable 'lsm' has zero variance \(constant 0\.1"):
        Normalizer.fit(ds)


def test_fit_all_nan_is_an_error() -> None:
    ds = xr.Dataset({"q": ("n", np.full(5, np.nan))})
    with pytest.raises(ValueError, match=r"variable 'q' has no finite values"):
        Normalizer.fit(ds)


def test_fit_log1p_needs_values_above_minus_one() -> None:
    ds = xr.Dataset({"tp": ("n", np.array([0.0, 1.0, -1.0, 2.0]))})
    with pytest.raises(
        ValueError,
        match=r"variable 'tp' has values from -1\.0 to .*the 'log1p' transform needs values > -1",
    ):
        Normalizer.fit(ds, transforms={"tp": "log1p"})


def test_fit_missing_variable_lists_available() -> None:
    with pytest.raises(
        KeyError,
        match=r"\['q2m'\] are not in the data; available data variables: \['t2m', 'tp', 'u10'\]",
    ):
        Normalizer.fit(make_dataset(False), variables=["t2m", "q2m"])


def test_fit_unknown_transform() -> None:
    with pytest.raises(
        ValueError,
        match=r"transform for variable 'tp' must be one of \['none', 'log1p', 'asinh', 'fourth_root', 'logit'\], got 'sqrt'",
    ):
        Normalizer.fit(make_dataset(False), transforms={"tp": "sqrt"})  # type: ignore[dict-item]
    with pytest.raises(
        ValueError, match=r"transforms names variable\(s\) \['snow'\] that are not fitted"
    ):
        Normalizer.fit(make_dataset(False), transforms={"snow": "log1p"})


def test_normalize_missing_variable_in_data_and_in_normalizer() -> None:
    ds = make_dataset(False)
    norm = Normalizer.fit(ds)
    with pytest.raises(
        KeyError, match=r"\['u10'\] are not in the data; available data variables: \['t2m', 'tp'\]"
    ):
        norm.normalize(ds.drop_vars("u10"))
    with pytest.raises(
        KeyError, match=r"no statistics for variable\(s\) \['q2m'\]; it has \['t2m', 'u10', 'tp'\]"
    ):
        norm.normalize(ds.assign(q2m=ds["t2m"]), variables=["q2m"])


def test_normalize_array_wrong_channel_count() -> None:
    norm = Normalizer.from_stats(mean={"a": 0.0, "b": 0.0}, std={"a": 1.0, "b": 1.0})
    with pytest.raises(
        ValueError, match=r"array has 3 channels on axis -3 \(shape \(3, 4, 5\)\), expected 2"
    ):
        norm.normalize_array(np.zeros((3, 4, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"channel_axis 5 is out of range"):
        norm.normalize_array(np.zeros((2, 4, 5)), channel_axis=5)


def test_invalid_statistics() -> None:
    with pytest.raises(
        ValueError, match=r"statistics for variable 'a': std must be positive, got 0\.0"
    ):
        Normalizer.from_stats({"a": {"mean": 1.0, "std": 0.0}})
    with pytest.raises(
        ValueError, match=r"statistics for variable 'a' must be a mapping with 'mean' and 'std'"
    ):
        Normalizer.from_stats({"a": {"mean": 1.0}})
    with pytest.raises(ValueError, match=r"mean and std must name the same variables"):
        Normalizer.from_stats(mean={"a": 1.0}, std={"b": 1.0})
    with pytest.raises(ValueError, match=r"not both and not neither"):
        Normalizer.from_stats()
    with pytest.raises(ValueError, match=r"format 'xcorrdiff.normalizer'"):
        Normalizer.from_dict({"a": {"mean": 1.0, "std": 2.0}})
    with pytest.raises(ValueError, match=r"unnamed DataArray"):
        Normalizer.fit(xr.DataArray(np.arange(3.0)))

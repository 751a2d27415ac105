"""Tests for xcorrdiff.data.units: CF units parsing and conversion."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

from xcorrdiff.data.units import convert_units, parse_units, unit_conversion


def _dataset(chunked: bool) -> xr.Dataset:
    rng = np.random.default_rng(0)
    shape = (4, 5, 6)
    dims = ("time", "y", "x")
    ds = xr.Dataset(
        {
            "t2m": (
                dims,
                (15 + 5 * rng.standard_normal(shape)).astype("float32"),
                {"units": "degC", "long_name": "2 m temperature"},
            ),
            "u10": (dims, rng.standard_normal(shape), {"units": "m/s"}),
            "tp": (dims, rng.gamma(1.0, 2.0, shape), {"units": "mm h-1"}),
            "refc": (dims, 30 * rng.random(shape), {"units": "dBZ"}),
            "orog": (("y", "x"), rng.integers(0, 3000, (5, 6)).astype("int16"), {"units": "m"}),
            "sp": (dims, 1e5 + rng.standard_normal(shape), {"units": "Pa"}),
        }
    )
    return ds.chunk({"time": 2}) if chunked else ds


@pytest.mark.parametrize(
    ("units", "expected"),
    [
        ("K", "kelvin"),
        ("degC", "degree_Celsius"),
        ("m s-1", "meter / second"),
        ("m/s", "meter / second"),
        ("kg m-2", "kilogram / meter ** 2"),
        ("mm h-1", "millimeter / hour"),
        ("m2 s-2", "meter ** 2 / second ** 2"),
        ("m", "meter"),
        ("Pa", "pascal"),
        ("1", "dimensionless"),
        ("", "dimensionless"),
    ],
)
def test_parse_units_cf_spellings(units: str, expected: str) -> None:
    assert str(parse_units(units)) == expected


@pytest.mark.parametrize(
    ("source", "target", "scale", "offset"),
    [
        ("degC", "K", 1.0, 273.15),
        ("K", "degC", 1.0, -273.15),
        ("m/s", "m s-1", 1.0, 0.0),
        ("mm h-1", "m s-1", 1e-3 / 3600, 0.0),
        ("hPa", "Pa", 100.0, 0.0),
        ("%", "1", 0.01, 0.0),
        ("1", "1", 1.0, 0.0),
        ("dBZ", "dBZ", 1.0, 0.0),
        ("km", "m", 1000.0, 0.0),
    ],
)
def test_unit_conversion_factors(source: str, target: str, scale: float, offset: float) -> None:
    got_scale, got_offset = unit_conversion(source, target)
    assert got_scale == pytest.approx(scale, rel=1e-12)
    assert got_offset == pytest.approx(offset, rel=1e-12, abs=1e-12)


def test_water_equivalent_is_opt_in() -> None:
    with pytest.raises(ValueError, match=r"'kg m-2 s-1'.*'mm h-1'.*water_equivalent=True"):
        unit_conversion("kg m-2 s-1", "mm h-1")
    scale, offset = unit_conversion("kg m-2 s-1", "mm h-1", water_equivalent=True)
    assert (scale, offset) == pytest.approx((3600.0, 0.0))
    assert unit_conversion("m", "kg m-2", water_equivalent=True) == pytest.approx((1000.0, 0.0))


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_convert_units_values_attrs_dtypes(chunked: bool) -> None:
    ds = _dataset(chunked)
    target = {"t2m": "K", "u10": "m s-1", "tp": "m s-1", "refc": "dBZ", "orog": "km", "sp": "hPa"}
    with raise_if_dask_computes():
        out = convert_units(ds, target)
    for name, units in target.items():
        assert out[name].attrs["units"] == units
        assert isinstance(out[name].data, type(ds[name].data))
    assert out["t2m"].attrs["long_name"] == "2 m temperature"
    assert out["t2m"].dtype == np.float32
    assert out["orog"].dtype == np.float32  # int16 → float32, not rejected
    np.testing.assert_allclose(out["t2m"].values, ds["t2m"].values + np.float32(273.15), rtol=1e-7)
    np.testing.assert_allclose(out["tp"].values, ds["tp"].values / 3.6e6, rtol=1e-12)
    np.testing.assert_array_equal(out["refc"].values, ds["refc"].values)
    np.testing.assert_allclose(out["orog"].values, ds["orog"].values / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(out["sp"].values, ds["sp"].values / 100.0, rtol=1e-12)
    # The input is untouched.
    assert ds["t2m"].attrs["units"] == "degC"


@pytest.mark.parametrize("chunked", [False, True], ids=["numpy", "dask"])
def test_convert_units_dataarray(chunked: bool) -> None:
    da = _dataset(chunked)["t2m"]
    with raise_if_dask_computes():
        by_string = convert_units(da, "K")
        by_mapping = convert_units(da, {"t2m": "K"})
    xr.testing.assert_identical(by_string, by_mapping)
    assert by_string.name == "t2m"
    np.testing.assert_allclose(convert_units(by_string, "degC").values, da.values, atol=2e-5)


def test_convert_units_passes_other_variables_through() -> None:
    ds = _dataset(False)
    out = convert_units(ds, {"t2m": "K"})
    xr.testing.assert_identical(out["u10"], ds["u10"])


def test_missing_variable_names_it_and_lists_available() -> None:
    with pytest.raises(KeyError, match=r"\['q2m'\].*available data variables: \['orog'"):
        convert_units(_dataset(False), {"q2m": "kg kg-1"})


def test_missing_units_attribute() -> None:
    ds = _dataset(False)
    del ds["u10"].attrs["units"]
    with pytest.raises(ValueError, match=r"variable 'u10' has no 'units' attribute.*'m s-1'"):
        convert_units(ds, {"u10": "m s-1"})


def test_unknown_units() -> None:
    ds = _dataset(False)
    ds["u10"].attrs["units"] = "furlongs per fortnightly"
    with pytest.raises(ValueError, match=r"units of variable 'u10' 'furlongs per fortnightly'"):
        convert_units(ds, {"u10": "m s-1"})


def test_incompatible_units_name_variable_and_both_units() -> None:
    with pytest.raises(
        ValueError, match=r"variable 't2m' from 'degC' .* to 'm s-1'.*dimensions differ"
    ):
        convert_units(_dataset(False), {"t2m": "m s-1"})


@pytest.mark.parametrize(("source", "target"), [("dBZ", "1"), ("1", "dBZ"), ("dBZ", "mm h-1")])
def test_logarithmic_units_only_convert_to_themselves(source: str, target: str) -> None:
    with pytest.raises(ValueError, match=r"'dBZ' is logarithmic"):
        unit_conversion(source, target)
    with pytest.raises(ValueError, match=r"logarithmic"):
        parse_units("dBZ")


def test_parse_units_errors() -> None:
    with pytest.raises(ValueError, match=r"units of variable 'x' are missing"):
        parse_units(None, name="x")
    with pytest.raises(TypeError, match=r"must be a string, got int"):
        parse_units(3)  # type: ignore[arg-type]


def test_convert_units_rejects_non_numeric() -> None:
    ds = xr.Dataset({"flag": ("x", np.array(["a", "b"]), {"units": "1"})})
    with pytest.raises(TypeError, match=r"variable 'flag' has dtype <U1"):
        convert_units(ds, {"flag": "1"})

"""CF ``units`` attributes → pint units, and conversion to the units a model expects.

Units are parsed with cf-xarray's pint registry (:data:`cf_xarray.units.units`), which
understands the UDUNITS spellings found in CF files (``"m s-1"``, ``"kg m-2"``,
``"degC"``, ``"1"``). Every pint conversion between such units is affine,
``target = scale * source + offset``, so :func:`convert_units` asks pint for the two
numbers once and applies them with plain xarray arithmetic: lazy on dask, dtype-preserving
(float32 stays float32), attributes kept.

Logarithmic radar reflectivity (``dBZ``) has no linear relation to anything else; it is
accepted as a unit of its own that converts only to itself.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any, overload

import numpy as np
import pint
import xarray as xr
from cf_xarray.units import units as _registry

__all__ = [
    "LOGARITHMIC_UNITS",
    "convert_units",
    "parse_units",
    "unit_conversion",
    "value_in_units",
]

#: Logarithmic units that pint cannot convert linearly; each converts only to itself.
LOGARITHMIC_UNITS: frozenset[str] = frozenset({"dBZ", "dBz", "dbz", "DBZ"})

_LOGARITHMIC_CANONICAL = "dBZ"
_WATER_DENSITY_KG_M3 = 1000.0


def _canonical_logarithmic(units: str) -> str | None:
    """Return ``"dBZ"`` for any accepted spelling of it, else None."""
    return _LOGARITHMIC_CANONICAL if units.strip() in LOGARITHMIC_UNITS else None


def parse_units(units: str | pint.Unit | None, *, name: Hashable | None = None) -> pint.Unit:
    """Parse a CF/UDUNITS ``units`` string into a pint unit.

    Parameters
    ----------
    units
        A units string as found in a CF ``units`` attribute (``"K"``, ``"m s-1"``,
        ``"kg m-2"``, ``"1"``), or a pint unit (returned unchanged). An empty string
        means dimensionless.
    name
        The variable the units belong to, named in error messages.

    Returns
    -------
    pint.Unit
        The unit in cf-xarray's registry.

    Raises
    ------
    ValueError
        If ``units`` is None (the variable has no units), a logarithmic unit such as
        ``"dBZ"`` (not representable in pint; see :func:`unit_conversion`), or a string
        pint cannot parse.

    Examples
    --------
    >>> parse_units("m s-1")
    <Unit('meter / second')>
    >>> parse_units("1")
    <Unit('dimensionless')>
    """
    where = f" of variable {name!r}" if name is not None else ""
    if isinstance(units, pint.Unit):
        return units
    if units is None:
        raise ValueError(
            f"units{where} are missing; expected a CF units string such as 'K' or 'm s-1'. "
            f"Set them with ds[{name!r}].attrs['units'] = '...'"
        )
    if not isinstance(units, str):
        raise TypeError(
            f"units{where} must be a string, got {type(units).__name__} {units!r}; "
            "expected a CF units string such as 'K' or 'm s-1'"
        )
    if _canonical_logarithmic(units) is not None:
        raise ValueError(
            f"units{where} {units!r} are logarithmic and have no pint representation; "
            "use unit_conversion() or convert_units(), which convert 'dBZ' only to 'dBZ'"
        )
    text = units.strip()
    if text == "":
        return _registry.dimensionless
    try:
        parsed = _registry.parse_units(text)
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError) as exc:
        raise ValueError(
            f"units{where} {units!r} are not known to the CF/pint unit registry; expected "
            "a CF units string such as 'K', 'degC', 'm s-1', 'kg m-2', 'Pa' or '1'"
        ) from exc
    except (AttributeError, TypeError, ValueError, AssertionError) as exc:
        raise ValueError(
            f"units{where} {units!r} could not be parsed; expected a CF units string "
            "such as 'K', 'degC', 'm s-1', 'kg m-2', 'Pa' or '1'"
        ) from exc
    if not isinstance(parsed, pint.Unit):  # pragma: no cover - defensive
        raise ValueError(f"units{where} {units!r} did not parse to a unit: {parsed!r}")
    return parsed


def unit_conversion(
    source: str,
    target: str,
    *,
    name: Hashable | None = None,
    water_equivalent: bool = False,
) -> tuple[float, float]:
    """Return ``(scale, offset)`` such that ``value_in_target = scale * value + offset``.

    Parameters
    ----------
    source, target
        CF units strings.
    name
        The variable converted, named in error messages.
    water_equivalent
        Also allow converting a mass per area (``kg m-2``, ``kg m-2 s-1``) to a depth of
        liquid water (``mm``, ``m``, ``mm h-1``) and back, with a density of
        1000 kg m-3: the usual precipitation conversion.

    Returns
    -------
    tuple of float
        ``(1.0, 0.0)`` for equal units; ``(1.0, -273.15)`` for ``K`` → ``degC``.

    Raises
    ------
    ValueError
        If either unit is unknown, or the two are not convertible (different
        dimensionality, or a logarithmic unit against anything but itself).

    Examples
    --------
    >>> unit_conversion("mm h-1", "m s-1")
    (2.7777777777777776e-07, 0.0)
    >>> unit_conversion("degC", "K")
    (1.0, 273.15)
    >>> unit_conversion("kg m-2 s-1", "mm h-1", water_equivalent=True)
    (3600.0, 0.0)
    """
    where = f" for variable {name!r}" if name is not None else ""
    log_source, log_target = _canonical_logarithmic(source), _canonical_logarithmic(target)
    if log_source is not None or log_target is not None:
        if log_source is not None and log_source == log_target:
            return 1.0, 0.0
        raise ValueError(
            f"cannot convert units{where} from {source!r} to {target!r}: 'dBZ' is "
            "logarithmic and converts only to 'dBZ'; convert reflectivity yourself if "
            "the model expects another quantity"
        )
    source_unit = parse_units(source, name=name)
    target_unit = parse_units(target, name=name)
    if source_unit == target_unit:
        return 1.0, 0.0
    try:
        zero = _registry.Quantity(0.0, source_unit).to(target_unit).magnitude
        one = _registry.Quantity(1.0, source_unit).to(target_unit).magnitude
    except pint.errors.DimensionalityError as exc:
        if water_equivalent:
            scale = _water_equivalent_scale(source_unit, target_unit)
            if scale is not None:
                return scale, 0.0
        hint = (
            "mass per area and water depth convert with water_equivalent=True"
            if not water_equivalent and _water_equivalent_scale(source_unit, target_unit)
            else "check that the variable is the quantity the model expects "
            "(e.g. a rate versus an accumulation)"
        )
        raise ValueError(
            f"cannot convert units{where} from {source!r} ({source_unit.dimensionality}) "
            f"to {target!r} ({target_unit.dimensionality}): the dimensions differ; {hint}"
        ) from exc
    return float(one - zero), float(zero)


def _water_equivalent_scale(source: pint.Unit, target: pint.Unit) -> float | None:
    """Scale from mass per area to liquid-water depth (or back), or None if not such a pair."""
    density = _registry.Quantity(_WATER_DENSITY_KG_M3, "kg m-3")
    one = _registry.Quantity(1.0, source)
    for candidate in (one / density, one * density):
        if candidate.dimensionality == target.dimensionality:
            return float(candidate.to(target).magnitude)
    return None


def _convert_dataarray(
    da: xr.DataArray, target: str, name: Hashable, water_equivalent: bool, difference: bool
) -> xr.DataArray:
    source = da.attrs.get("units")
    if source is None:
        raise ValueError(
            f"variable {name!r} has no 'units' attribute; expected units convertible to "
            f"{target!r}. Set them with ds[{name!r}].attrs['units'] = '...'"
        )
    scale, offset = unit_conversion(
        str(source), target, name=name, water_equivalent=water_equivalent
    )
    if difference:  # a difference of temperatures has no offset: 0.3 degC is 0.3 K
        offset = 0.0
    if not np.issubdtype(da.dtype, np.floating):
        if not np.issubdtype(da.dtype, np.number) or np.issubdtype(da.dtype, np.complexfloating):
            raise TypeError(
                f"variable {name!r} has dtype {da.dtype}; expected a real numeric dtype "
                "to convert units"
            )
        da = da.astype(np.result_type(da.dtype, np.float32))
    if (scale, offset) != (1.0, 0.0):
        converted = da * scale + offset if offset != 0.0 else da * scale
        # NumPy's weak Python-scalar promotion keeps float32 as float32.
        da = converted.astype(da.dtype, copy=False)
    else:
        da = da.copy(deep=False)
    da.attrs = {**da.attrs, "units": target}
    return da


@overload
def convert_units(
    obj: xr.Dataset,
    target_units: Mapping[Hashable, str],
    *,
    water_equivalent: bool = ...,
    difference: bool = ...,
) -> xr.Dataset: ...


@overload
def convert_units(
    obj: xr.DataArray,
    target_units: str | Mapping[Hashable, str],
    *,
    water_equivalent: bool = ...,
    difference: bool = ...,
) -> xr.DataArray: ...


def convert_units(
    obj: xr.Dataset | xr.DataArray,
    target_units: str | Mapping[Hashable, str],
    *,
    water_equivalent: bool = False,
    difference: bool = False,
) -> xr.Dataset | xr.DataArray:
    """Convert variables to the units a model expects.

    Parameters
    ----------
    obj
        A Dataset, or a DataArray; numpy- or dask-backed. Each converted variable must
        carry a CF ``units`` attribute.
    target_units
        ``{variable: units}``. Variables of ``obj`` not named here pass through
        unchanged. For a DataArray a single units string is accepted too.
    water_equivalent
        Allow mass per area ↔ liquid-water depth (density 1000 kg m-3), e.g.
        ``kg m-2 s-1`` → ``mm h-1`` for precipitation; see :func:`unit_conversion`.
    difference
        The values are differences (errors, standard deviations, increments): converted by
        the scale alone, without the offset (``0.3 degC`` is ``0.3 K``, not ``273.45 K``).

    Returns
    -------
    Dataset or DataArray
        The same type as ``obj``, with converted values (lazy for dask input),
        attributes kept and ``units`` set to the target units. Floating dtypes are kept;
        integer dtypes become floating (``int8``/``int16`` → float32, wider →
        float64).

    Raises
    ------
    KeyError
        If a variable named in ``target_units`` is not in ``obj``.
    ValueError
        If a variable has no ``units`` attribute, unknown units, or units that cannot be
        converted to the target.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"t2m": ("x", [0.0, 10.0], {"units": "degC"})})
    >>> convert_units(ds, {"t2m": "K"})["t2m"].values
    array([273.15, 283.15])
    """
    if isinstance(obj, xr.DataArray):
        if isinstance(target_units, str):
            return _convert_dataarray(obj, target_units, obj.name, water_equivalent, difference)
        if obj.name not in target_units:
            raise KeyError(
                f"target_units has no entry for DataArray {obj.name!r}; got units for "
                f"{sorted(map(str, target_units))}. Pass a units string, or name the array"
            )
        return _convert_dataarray(
            obj, target_units[obj.name], obj.name, water_equivalent, difference
        )
    if not isinstance(obj, xr.Dataset):
        raise TypeError(f"obj must be an xarray Dataset or DataArray, got {type(obj).__name__}")
    if isinstance(target_units, str):
        raise TypeError(
            f"target_units for a Dataset must be a mapping {{variable: units}}, got the "
            f"string {target_units!r}"
        )
    missing = [name for name in target_units if name not in obj.data_vars]
    if missing:
        raise KeyError(
            f"variable(s) {[str(m) for m in missing]} from target_units are not in the "
            f"dataset; available data variables: {sorted(map(str, obj.data_vars))}"
        )
    converted = {
        name: _convert_dataarray(obj[name], units, name, water_equivalent, difference)
        for name, units in target_units.items()
    }
    return obj.assign(converted)


def value_in_units(value: float | str | None, units: str, *, name: Hashable, side: str) -> float:
    """A bound in ``units``: a number (already in them), ``None`` (no bound: ``∓inf``), or a
    quantity string pint parses (``"0 mm h-1"``, ``"273.15 K"``, ``"inf"``).

    Raises
    ------
    ValueError
        Not a number or a quantity, or one whose units do not convert to ``units``.
    """
    if value is None:
        return -math.inf if side == "low" else math.inf
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(
            f"the {side} bound of {name!r} is {value!r}; expected a number in {units!r}, a "
            "quantity string such as '0 mm h-1', or None"
        )
    if not isinstance(value, str):
        return float(value)
    try:
        quantity: Any = _registry.Quantity(value)
    except Exception as exc:
        raise ValueError(
            f"the {side} bound of {name!r} is {value!r}, which pint cannot parse: {exc}"
        ) from exc
    if quantity.dimensionless and str(quantity.units) in ("dimensionless", ""):
        return float(quantity.magnitude)
    scale, offset = unit_conversion(str(quantity.units), units, name=name, water_equivalent=True)
    return float(quantity.magnitude) * scale + offset

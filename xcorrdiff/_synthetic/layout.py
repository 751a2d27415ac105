"""Dataset layout of :mod:`xcorrdiff.tutorial`: CF metadata, coordinates, global attributes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff._synthetic.domain import Domain
from xcorrdiff._synthetic.physics import HR_VARIABLES

RECIPE_ATTR = "xcorrdiff_recipe"

_LEVEL_NAMES = {"500": "500 hPa", "850": "850 hPa"}


def lr_metadata(name: str) -> dict[str, str]:
    """CF ``units``, ``long_name`` and ``standard_name`` of an LR variable."""
    if name == "t2m":
        return {"units": "K", "long_name": "2 m temperature", "standard_name": "air_temperature"}
    if name == "tcwv":
        return {
            "units": "kg m-2",
            "long_name": "total column water vapour",
            "standard_name": "atmosphere_mass_content_of_water_vapor",
        }
    if name in ("u10m", "v10m"):
        return wind_metadata(name[0], "10 m")
    kind, level = name[0], _LEVEL_NAMES[name[1:]]
    if kind in "uv":
        return wind_metadata(kind, level)
    if kind == "z":
        return {
            "units": "m2 s-2",
            "long_name": f"geopotential at {level}",
            "standard_name": "geopotential",
        }
    return {
        "units": "K",
        "long_name": f"temperature at {level}",
        "standard_name": "air_temperature",
    }


def wind_metadata(kind: str, level: str) -> dict[str, str]:
    """CF attributes of an earth-relative wind component ``kind`` (``u``/``v``) at ``level``."""
    direction = "eastward" if kind == "u" else "northward"
    where = f"{level} " if level == "10 m" else ""
    at = "" if level == "10 m" else f" at {level}"
    return {
        "units": "m s-1",
        "long_name": f"{where}{direction} wind{at}",
        "standard_name": f"{direction}_wind",
    }


HR_METADATA: dict[str, dict[str, str]] = {
    "t2m": lr_metadata("t2m"),
    "u10m": wind_metadata("u", "10 m"),
    "v10m": wind_metadata("v", "10 m"),
    "precip": {
        "units": "mm h-1",
        "long_name": "precipitation rate",
        "standard_name": "lwe_precipitation_rate",
    },
}


def hr_coords(domain: Domain) -> dict[str, Any]:
    """CF coordinates of the HR grid (``y``, ``x``, 2-D ``lat``/``lon``, static fields, ``crs``)."""
    axis = {"units": "m"}
    return {
        "y": (
            "y",
            domain.y,
            {
                **axis,
                "axis": "Y",
                "standard_name": "projection_y_coordinate",
                "long_name": "y coordinate of projection",
            },
        ),
        "x": (
            "x",
            domain.x,
            {
                **axis,
                "axis": "X",
                "standard_name": "projection_x_coordinate",
                "long_name": "x coordinate of projection",
            },
        ),
        "lat": (
            ("y", "x"),
            domain.lat,
            {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"},
        ),
        "lon": (
            ("y", "x"),
            domain.lon,
            {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
        ),
        "orography": (
            ("y", "x"),
            domain.orography,
            {
                "units": "m",
                "standard_name": "surface_altitude",
                "long_name": "orography (surface height above sea level)",
            },
        ),
        "land_sea_mask": (
            ("y", "x"),
            domain.land_sea_mask,
            {
                "units": "1",
                "standard_name": "land_binary_mask",
                "long_name": "land-sea mask (1 over land, 0 over sea)",
            },
        ),
        "crs": ((), np.int32(0), domain.projection.cf_attrs()),
    }


def lr_coords(domain: Domain) -> dict[str, Any]:
    """CF coordinates of the LR grid."""
    return {
        "lat": (
            "lat",
            domain.lr_lat,
            {
                "units": "degrees_north",
                "standard_name": "latitude",
                "long_name": "latitude",
                "axis": "Y",
            },
        ),
        "lon": (
            "lon",
            domain.lr_lon,
            {
                "units": "degrees_east",
                "standard_name": "longitude",
                "long_name": "longitude",
                "axis": "X",
            },
        ),
    }


def time_coord(times: np.ndarray) -> tuple[str, np.ndarray, dict[str, str]]:
    """The ``time`` coordinate."""
    return ("time", times, {"standard_name": "time", "long_name": "time"})


def global_attrs(recipe: Mapping[str, Any], title: str) -> dict[str, Any]:
    """Global attributes: CF conventions, seeds and the full recipe as JSON."""
    return {
        "title": title,
        "Conventions": "CF-1.10",
        "source": "xcorrdiff.tutorial.make_synthetic (known-truth synthetic data)",
        "seed": recipe["seed"],
        "domain_seed": recipe["domain_seed"],
        "factor": recipe["factor"],
        "xcorrdiff_version": str(recipe["xcorrdiff_version"]),
        RECIPE_ATTR: json.dumps(recipe),
    }


def hr_dataset(
    domain: Domain,
    data: Mapping[str, Any],
    dims: tuple[str, ...],
    coords: Mapping[str, Any],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """An HR data set of :data:`HR_VARIABLES` with the HR grid's coordinates."""
    variables = {
        name: (dims, data[name], {**HR_METADATA[name], "grid_mapping": "crs"})
        for name in HR_VARIABLES
    }
    return xr.Dataset(variables, coords={**coords, **hr_coords(domain)}, attrs=dict(attrs))


def static_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Global attributes of the static fields: the domain's, not the weather's."""
    kept = {k: attrs[k] for k in ("Conventions", "domain_seed", "factor") if k in attrs}
    return {"title": "xcorrdiff synthetic toy atmosphere: static HR fields", **kept}

"""Units of the variable names of NVIDIA's Earth2Studio packages, which carry none.

:data:`PACKAGE_UNITS` covers the generic CorrDiff package's ERA5-style names (surface
fields and u, v, z, t on the usual pressure levels); :data:`ERA5_HRRR_UNITS` adds what
``CorrDiffEra5Hrrr`` names: more pressure levels, specific humidity, and HRRR's outputs on
its hybrid levels (u, v, t, q, geopotential height Z, pressure p), ``mslp`` and ``refc``.
"""

from __future__ import annotations

__all__ = ["ERA5_HRRR_UNITS", "PACKAGE_UNITS"]

_PACKAGE_LEVELS = (250, 500, 700, 850, 925, 1000)
_LEVELS = (1000, 925, 850, 700, 500, 300, 250, 200, 100, 50)
_HYBRID = (*range(1, 12), 13, 15, 20, 25, 30)

#: Units of the generic Earth2Studio / NGC CorrDiff package's variable names.
PACKAGE_UNITS: dict[str, str] = {
    **{f"{c}{lev}": "m s-1" for c in ("u", "v") for lev in _PACKAGE_LEVELS},
    **{f"z{lev}": "m2 s-2" for lev in _PACKAGE_LEVELS},
    **{f"t{lev}": "K" for lev in _PACKAGE_LEVELS},
    **dict.fromkeys(("u10m", "v10m", "u100m", "v100m"), "m s-1"),
    **dict.fromkeys(("t2m", "d2m"), "K"),
    "tcwv": "kg m-2",
    "sp": "Pa",
    "msl": "Pa",
}

#: Units of the ERA5 inputs and HRRR outputs of a ``CorrDiffEra5Hrrr`` package.
ERA5_HRRR_UNITS: dict[str, str] = {
    **PACKAGE_UNITS,
    "mslp": "Pa",
    "refc": "dBZ",
    **{f"{c}{lev}": "m s-1" for c in "uv" for lev in _LEVELS},
    **{f"z{lev}": "m2 s-2" for lev in _LEVELS},
    **{f"t{lev}": "K" for lev in _LEVELS},
    **{f"q{lev}": "kg kg-1" for lev in _LEVELS},
    **{f"{c}{lev}hl": "m s-1" for c in "uv" for lev in _HYBRID},
    **{f"t{lev}hl": "K" for lev in _HYBRID},
    **{f"q{lev}hl": "kg kg-1" for lev in _HYBRID},
    **{f"Z{lev}hl": "m" for lev in _HYBRID},
    **{f"p{lev}hl": "Pa" for lev in _HYBRID},
}

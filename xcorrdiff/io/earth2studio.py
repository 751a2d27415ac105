"""Earth2Studio / NGC CorrDiff packages: ``*.mdlus`` networks plus JSON and netCDF metadata.

:func:`read_package` turns a package directory into the arguments of
:class:`~xcorrdiff.model.CorrDiffModel` (it does not import the model class, so the model
may import this module).
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff._model_dir import read_netcdf
from xcorrdiff.config import SamplerConfig
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.prepare import VariableSpec
from xcorrdiff.nn.physicsnemo import load_physicsnemo

__all__ = ["REQUIRED_FILES", "read_package"]

# Units of the variable names used by Earth2Studio/NGC CorrDiff packages (which carry none).
_E2S_UNITS = {
    **{f"{c}{lev}": "m s-1" for c in ("u", "v") for lev in (250, 500, 700, 850, 925, 1000)},
    **{f"z{lev}": "m2 s-2" for lev in (250, 500, 700, 850, 925, 1000)},
    **{f"t{lev}": "K" for lev in (250, 500, 700, 850, 925, 1000)},
    "u10m": "m s-1",
    "v10m": "m s-1",
    "u100m": "m s-1",
    "v100m": "m s-1",
    "t2m": "K",
    "d2m": "K",
    "tcwv": "kg m-2",
    "sp": "Pa",
    "msl": "Pa",
}


#: The files every package holds (``input_latlon_grid.nc`` and ``invariants.nc`` optional).
REQUIRED_FILES = (
    "diffusion.mdlus",
    "regression.mdlus",
    "metadata.json",
    "stats.json",
    "output_latlon_grid.nc",
)


def read_package(package_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The :class:`~xcorrdiff.model.CorrDiffModel` keyword arguments of a package directory
    (see :meth:`~xcorrdiff.model.CorrDiffModel.from_earth2studio` for its layout and errors)."""
    root = Path(package_dir)
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"package_dir={os.fspath(root)!r} lacks {missing}; an Earth2Studio CorrDiff "
            f"package holds {list(REQUIRED_FILES)} (plus optional input_latlon_grid.nc, "
            "invariants.nc)"
        )
    metadata = json.loads((root / "metadata.json").read_text(encoding="utf-8"))
    stats = json.loads((root / "stats.json").read_text(encoding="utf-8"))
    inputs = [str(v) for v in metadata["input_variables"]]
    outputs = [str(v) for v in metadata["output_variables"]]
    grid = _output_grid(root / "output_latlon_grid.nc")
    invariants = _invariants(root, metadata, grid)
    invariant_names = list(map(str, invariants.data_vars)) if invariants is not None else []
    input_stats = _stats(stats, "input", inputs)
    input_stats.update(_stats(stats, "invariants", invariant_names))
    regression = load_physicsnemo(root / "regression.mdlus")
    diffusion = load_physicsnemo(root / "diffusion.mdlus")
    hr_mean = bool(metadata.get("hr_mean_conditioning", True))
    n_cond = len(inputs) + len(invariant_names)
    return {
        "regression": regression,
        "diffusion": diffusion,
        "input_variables": [VariableSpec(name=v, units=_E2S_UNITS.get(v, "")) for v in inputs],
        "output_variables": [VariableSpec(name=v, units=_E2S_UNITS.get(v, "")) for v in outputs],
        "grid": grid,
        "input_grid": read_netcdf(root / "input_latlon_grid.nc")
        if (root / "input_latlon_grid.nc").is_file()
        else None,
        "invariants": invariants,
        "input_normalizer": Normalizer.from_stats(input_stats),
        "output_normalizer": Normalizer.from_stats(_stats(stats, "output", outputs)),
        "sampler": _sampler(metadata),
        "conditioning": {
            "hr_mean": hr_mean,
            "global_lowres": _global_lowres(diffusion, n_cond, len(outputs), hr_mean),
        },
        "provenance": {
            "source": "earth2studio",
            "package_dir": os.fspath(root.resolve()),
            "metadata": metadata,
        },
    }


def _stats(stats: Mapping[str, Any], name: str, variables: Sequence[str]) -> dict[Hashable, Any]:
    table = stats.get(name, {})
    absent = [v for v in variables if v not in table]
    if absent:
        raise KeyError(
            f"stats.json has no {name!r} statistics for {absent}; it has {sorted(table)}"
        )
    return {v: table[v] for v in variables}


def _output_grid(path: Path) -> xr.Dataset:
    """The HR grid ``(y, x)`` with 2-D ``lat``/``lon`` (1-D axes are meshed)."""
    with xr.open_dataset(path) as ds:
        lat = np.asarray(ds["lat"].values)
        lon = np.asarray(ds["lon"].values)
    if lat.ndim == 1 and lon.ndim == 1:
        lat, lon = np.meshgrid(lat, lon, indexing="ij")
    return xr.Dataset(
        coords={
            "lat": (("y", "x"), lat, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east", "standard_name": "longitude"}),
            "y": np.arange(lat.shape[0]),
            "x": np.arange(lat.shape[1]),
        }
    )


def _invariants(root: Path, metadata: Mapping[str, Any], grid: xr.Dataset) -> xr.Dataset | None:
    """``invariants.nc`` on the HR grid's dims and coordinates, or None."""
    if not (root / "invariants.nc").is_file():
        return None
    invariants = read_netcdf(root / "invariants.nc")
    names = metadata.get("invariant_variables") or list(map(str, invariants.data_vars))
    invariants = invariants[names]
    inv_dims = invariants[names[0]].dims[-2:]
    invariants = invariants.reset_coords(drop=True)
    invariants = invariants.drop_vars(list(invariants.indexes))
    invariants = invariants.rename_dims(dict(zip(inv_dims, ("y", "x"), strict=True)))
    return invariants.assign_coords(grid.coords)


def _sampler(metadata: Mapping[str, Any]) -> SamplerConfig:
    return SamplerConfig(
        sampler=metadata.get("solver", "euler"),
        num_steps=int(metadata.get("number_of_steps", 18)),
        sigma_min=float(metadata.get("sigma_min") or 0.002),
        sigma_max=float(metadata.get("sigma_max") or 800.0),
    )


def _global_lowres(diffusion: Any, n_cond: int, n_out: int, hr_mean: bool) -> bool:
    """Whether the diffusion network takes the whole-domain inputs on every patch, read
    from its input channel count."""
    expected_plain = n_cond + (n_out if hr_mean else 0)
    grid_channels = int(getattr(diffusion, "grid_channels", 0))
    diffusion_in = int(getattr(diffusion, "img_in_channels", expected_plain + grid_channels))
    return diffusion_in - grid_channels == expected_plain + n_cond

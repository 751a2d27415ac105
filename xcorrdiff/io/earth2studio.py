"""Earth2Studio / NGC CorrDiff packages: ``*.mdlus`` networks plus JSON and netCDF metadata.

:func:`read_package` turns a package directory into the arguments of
:class:`~xcorrdiff.model.CorrDiffModel`; :func:`write_package` writes a model as such a
package (neither imports the model class, so the model may import this module).

A package written by xcorrdiff also carries, in ``metadata.json`` under ``"xcorrdiff"``, what
the generic layout has no field for (units, long names, the full sampler settings, the regrid
method);
Earth2Studio ignores it and :func:`read_package` uses it, so a round trip gives the same
model, bit for bit.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff._model_dir import read_netcdf
from xcorrdiff.config import SAMPLERS, SamplerConfig
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.prepare import VariableSpec
from xcorrdiff.data.regrid import latlon_names
from xcorrdiff.io.e2s_units import PACKAGE_UNITS
from xcorrdiff.io.era5_hrrr import find_era5_hrrr_package, read_era5_hrrr_package
from xcorrdiff.nn.physicsnemo import load_physicsnemo, save_physicsnemo

__all__ = ["REQUIRED_FILES", "check_exportable", "read_package", "write_package"]

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
    variant = find_era5_hrrr_package(root)
    if variant is not None:
        return read_era5_hrrr_package(variant)
    missing = [name for name in REQUIRED_FILES if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"package_dir={os.fspath(root)!r} lacks {missing}; an Earth2Studio CorrDiff "
            f"package holds {list(REQUIRED_FILES)} (plus optional input_latlon_grid.nc, "
            "invariants.nc)"
        )
    metadata = json.loads((root / "metadata.json").read_text(encoding="utf-8"))
    stats = json.loads((root / "stats.json").read_text(encoding="utf-8"))
    extra = metadata.get("xcorrdiff") or {}
    units = {**PACKAGE_UNITS, **extra.get("variable_units", {})}
    long_names = extra.get("long_names", {})
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
        "input_variables": [
            VariableSpec(name=v, units=units.get(v, ""), long_name=long_names.get(v, ""))
            for v in inputs
        ],
        "output_variables": [
            VariableSpec(name=v, units=units.get(v, ""), long_name=long_names.get(v, ""))
            for v in outputs
        ],
        "grid": grid,
        "input_grid": read_netcdf(root / "input_latlon_grid.nc")
        if (root / "input_latlon_grid.nc").is_file()
        else None,
        "invariants": invariants,
        "input_normalizer": Normalizer.from_stats(input_stats),
        "output_normalizer": Normalizer.from_stats(_stats(stats, "output", outputs)),
        "sampler": SamplerConfig.from_dict(extra["sampler"])
        if "sampler" in extra
        else _sampler(metadata),
        "regrid_method": str(extra.get("regrid_method", "bilinear")),
        "output_bounds": extra.get("output_bounds"),
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
    renames = {a: b for a, b in zip(inv_dims, ("y", "x"), strict=True) if a != b}
    invariants = invariants.rename_dims(renames)
    return invariants.assign_coords(grid.coords)


def _sampler(metadata: Mapping[str, Any]) -> SamplerConfig:
    """What Earth2Studio 0.19's ``CorrDiff`` samples the package with: its
    ``sampler_type`` (default ``"stochastic"``) picks PhysicsNeMo's ``stochastic_sampler``
    — Heun steps without churn, whatever ``solver`` says — or ``deterministic_sampler``
    with ``solver`` (also without churn)."""
    kind = metadata.get("sampler_type", "stochastic")
    if kind not in ("stochastic", "deterministic"):
        raise ValueError(
            f"metadata.json: sampler_type={kind!r} is invalid; Earth2Studio's CorrDiff takes "
            "'stochastic' or 'deterministic'"
        )
    solver = "heun" if kind == "stochastic" else str(metadata.get("solver", "euler"))
    if solver not in ("euler", "heun"):
        raise ValueError(
            f"metadata.json: solver={solver!r} is invalid; Earth2Studio's CorrDiff takes "
            "'euler' or 'heun'"
        )
    return SamplerConfig(
        sampler=solver,  # type: ignore[arg-type]
        num_steps=int(metadata.get("number_of_steps", 18)),
        sigma_min=float(metadata.get("sigma_min") or 0.002),
        sigma_max=float(metadata.get("sigma_max") or 800.0),
        s_churn=0.0,
    )


def package_sampler(model: Any) -> tuple[dict[str, Any], str | None]:
    """The package's sampler fields for ``model``, and a note when Earth2Studio will not
    sample it as the model does (it runs Heun without churn, or, for a model without
    HR-mean conditioning, Euler or Heun without churn; always the Karras schedule)."""
    own = model.sampler
    hr_mean = bool(model.conditioning.get("hr_mean", True))
    exact_deterministic = not hr_mean and own.sampler in ("euler", "heun")
    kind = "deterministic" if exact_deterministic else "stochastic"
    fields = {"sampler_type": kind, "solver": own.sampler if exact_deterministic else "heun"}
    churn = own.s_churn if own.s_churn is not None else SAMPLERS[own.sampler].default_noise
    same = own.sampler == fields["solver"] and churn == 0 and own.noise_scale is None
    if same:
        return fields, None
    return fields, (
        f"Earth2Studio will sample this package with {fields['solver']} steps without churn "
        f"({kind} sampler), not with the model's {own.sampler!r} (churn {churn:g}"
        + (", a calibrated noise scale" if own.noise_scale is not None else "")
        + "); xcorrdiff's reader restores the model's own sampler"
    )


def _global_lowres(diffusion: Any, n_cond: int, n_out: int, hr_mean: bool) -> bool:
    """Whether the diffusion network takes the whole-domain inputs on every patch, read
    from its input channel count."""
    expected_plain = n_cond + (n_out if hr_mean else 0)
    grid_channels = int(getattr(diffusion, "grid_channels", 0))
    diffusion_in = int(getattr(diffusion, "img_in_channels", expected_plain + grid_channels))
    return diffusion_in - grid_channels == expected_plain + n_cond


def check_exportable(model: Any) -> None:
    """Raise when the generic package cannot hold ``model`` as it is.

    Raises
    ------
    ValueError
        Naming what the Earth2Studio layout has no field for: a normalization transform
        (``log1p``), a residual scale, a land-only (``observed``) mask, a grid without
        latitude/longitude.
    """
    transforms = {
        name: stats.transform
        for norm in (model.input_normalizer, model.output_normalizer)
        for name, stats in norm.stats.items()
        if stats.transform != "none"
    }
    problems = []
    if model.regression is None:
        problems.append(
            "no regression network (a rectified-flow DiT: the CorrDiff package holds a "
            "regression and a residual diffusion network)"
        )
    if transforms:
        problems.append(f"normalization transforms {transforms} (stats.json holds mean/std only)")
    if model.residual_scale is not None and any(v != 1.0 for v in model.residual_scale.values()):
        problems.append("a residual scale (train with residual_scaling=False)")
    if model.observed is not None:
        problems.append("a land-only mask of observed points (Earth2Studio has none)")
    if model.regression_patch is not None and model.regression is not None:
        problems.append("a regression trained on patches (PhysicsNeMo's runs on the whole domain)")
    if model.regression_skip() is not None:
        problems.append("an input skip in the regression (train with input_skip=False)")
    if model.diffusion is None:
        problems.append("no diffusion network (fit the diffusion stage first)")
    elif model.conditioning.get("global_lowres", True):
        problems.append(
            "a diffusion network that takes the whole-domain input on every patch "
            "(Earth2Studio's CorrDiff gives it none: train with global_lowres=False)"
        )
    if model.time_features:
        problems.append(f"time features {list(model.time_features)} (the package has no field)")
    if model.lead_times:
        problems.append("lead times (the generic package has no field for them)")
    try:
        latlon_names(model.grid, role="the model's grid")
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError(
            "this model cannot be written as an Earth2Studio package without changing its "
            f"results: it has {'; '.join(problems)}. Save it with format='xcorrdiff' instead"
        )


def write_package(model: Any, folder: Path) -> None:
    """Write ``model`` into the (empty) ``folder`` in the Earth2Studio package layout."""
    check_exportable(model)
    sampler, note = package_sampler(model)
    if note is not None:
        warnings.warn(note, UserWarning, stacklevel=3)
    save_physicsnemo(model.regression, folder / "regression.mdlus")
    save_physicsnemo(model.diffusion, folder / "diffusion.mdlus")
    invariants = list(model.invariant_names)
    stats = {
        "input": _stats_table(model.input_normalizer, model.input_names),
        "output": _stats_table(model.output_normalizer, model.output_names),
        "invariants": _stats_table(model.input_normalizer, invariants),
    }
    variables = (*model.input_variables, *model.output_variables)
    metadata = {
        "input_variables": list(model.input_names),
        "output_variables": list(model.output_names),
        "invariant_variables": invariants,
        "number_of_steps": model.sampler.num_steps,
        **sampler,
        "hr_mean_conditioning": bool(model.conditioning.get("hr_mean", True)),
        "sigma_min": model.sampler.sigma_min,
        "sigma_max": model.sampler.sigma_max,
        "xcorrdiff": {
            "variable_units": {v.name: v.units for v in variables},
            "long_names": {v.name: v.long_name for v in variables},
            "sampler": model.sampler.to_dict(),
            "regrid_method": model.regrid_method,
            "output_bounds": model.config_dict()["output_bounds"],
        },
    }
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    (folder / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    lat, lon = latlon_names(model.grid, role="the model's grid")
    grid = xr.Dataset({"lat": model.grid[lat].variable, "lon": model.grid[lon].variable})
    _clean(grid).to_netcdf(folder / "output_latlon_grid.nc")
    if model.input_grid is not None:
        # Earth2Studio refuses a 1-D input grid that is not increasing (South to North)
        ascending = model.input_grid.sortby(list(model.input_grid.indexes))
        _clean(ascending).to_netcdf(folder / "input_latlon_grid.nc")
    if model.invariants is not None:
        _clean(model.invariants.reset_coords(drop=True)).to_netcdf(folder / "invariants.nc")


def _stats_table(normalizer: Normalizer, names: Sequence[str]) -> dict[str, dict[str, float]]:
    return {n: {"mean": normalizer.stats[n].mean, "std": normalizer.stats[n].std} for n in names}


def _clean(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    for var in ds.variables.values():
        var.attrs = {k: v for k, v in var.attrs.items() if isinstance(v, str | int | float)}
        var.encoding = {}
    return ds

"""Earth2Studio's ``CorrDiffEra5Hrrr`` packages: a rectified-flow DiT from ERA5 to HRRR.

The layout (Earth2Studio 0.19, ``CorrDiffEra5Hrrr.load_model``), under a variant folder
(``x_pred/``): ``metadata.json`` (``era5_variables``, ``output_variables``, ``checkpoint``,
``network`` {``kind``, ``prediction_type``, ``time_scale``}, ``sampler`` {``num_steps``,
``solver``, ``shift``, ``t_max``, ``x0v_clip``, ``amp``}, ``scalar_conditions``
{``presence_flags``, ``day_of_year``}, ``hrrr_window`` {``rows``, ``cols``}), ``stats.json``
(``era5`` and ``hrrr``: ``{variable: {"mean", "std"}}``), the DiT checkpoint (``.mdlus``),
``hrrr_lat.npy``/``hrrr_lon.npy`` (the output grid, 2-D), ``era5_lat.npy``/``era5_lon.npy``
(the native input grid, 1-D) and ``invariants.npy`` (normalized, ``(n, H, W)``).

:func:`read_era5_hrrr_package` turns it into :class:`~xcorrdiff.model.CorrDiffModel`
arguments: no regression, a :class:`~xcorrdiff.nn.FlowDiT` that takes xcorrdiff's condition
(the ERA5 inputs regridded bilinearly onto the HRRR grid and normalized, the invariants,
the cosine of the solar zenith angle as a time feature) in the package's channel order,
the HRRR grid with its Lambert-conformal ``y``/``x`` (metres) and 2-D ``lat``/``lon``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from xcorrdiff.config import SamplerConfig
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.prepare import VariableSpec
from xcorrdiff.data.time_features import feature_stats
from xcorrdiff.io.e2s_units import ERA5_HRRR_UNITS

__all__ = ["find_era5_hrrr_package", "read_era5_hrrr_package"]

#: HRRR's native Lambert-conformal axes (metres): 1059 rows, 1799 columns, 3 km apart.
HRRR_Y = np.linspace(-1587306.1525566636, 1586693.8474433364, 1059)
HRRR_X = np.linspace(-2697520.1425219304, 2696479.8574780696, 1799)
_FILES = ("metadata.json", "stats.json", "hrrr_lat.npy", "hrrr_lon.npy", "era5_lat.npy",
          "era5_lon.npy", "invariants.npy")  # fmt: skip


def find_era5_hrrr_package(root: Path) -> Path | None:
    """The variant folder of a ``CorrDiffEra5Hrrr`` package under ``root`` (``root`` itself
    or ``root/x_pred``: a ``metadata.json`` with a ``network`` entry), else None."""
    for folder in (root, root / "x_pred", *sorted(p for p in root.glob("*") if p.is_dir())):
        try:
            metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(metadata, dict) and isinstance(metadata.get("network"), dict):
            return folder
    return None


def _fail(folder: Path, what: str) -> ValueError:
    return ValueError(f"CorrDiffEra5Hrrr package {os.fspath(folder)!r}: {what}")


def _variables(folder: Path, names: Sequence[str], role: str) -> list[VariableSpec]:
    unknown = [n for n in names if n not in ERA5_HRRR_UNITS]
    if unknown:
        raise _fail(
            folder,
            f"{role} {unknown} have no known units; xcorrdiff knows {sorted(ERA5_HRRR_UNITS)}",
        )
    return [VariableSpec(name=str(n), units=ERA5_HRRR_UNITS[n]) for n in names]


def _stats(folder: Path, stats: Mapping[str, Any], group: str, names: Sequence[str]) -> dict:
    table = stats.get(group, {})
    missing = [n for n in names if n not in table]
    if missing:
        raise _fail(folder, f"stats.json[{group!r}] lacks {missing}")
    return {n: {"mean": float(table[n]["mean"]), "std": float(table[n]["std"])} for n in names}


def _grid(folder: Path, metadata: Mapping[str, Any]) -> xr.Dataset:
    lat, lon = (np.load(folder / f"hrrr_{c}.npy", allow_pickle=False) for c in ("lat", "lon"))
    rows, cols = metadata["hrrr_window"]["rows"], metadata["hrrr_window"]["cols"]
    y, x = HRRR_Y[rows[0] : rows[1]], HRRR_X[cols[0] : cols[1]]
    if lat.ndim != 2 or lat.shape != lon.shape or lat.shape != (y.size, x.size):
        raise _fail(
            folder, f"hrrr_lat.npy/hrrr_lon.npy have shapes {lat.shape}/{lon.shape}; expected "
            f"the hrrr_window's {(y.size, x.size)}",
        )  # fmt: skip
    return xr.Dataset(coords={
        "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
        "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
        "lat": (("y", "x"), lat.astype(np.float64), {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": (("y", "x"), lon.astype(np.float64), {"units": "degrees_east", "standard_name": "longitude"}),
    })  # fmt: skip


def _flow(folder: Path, metadata: Mapping[str, Any], n_in: int, n_inv: int) -> Any:
    from xcorrdiff.nn import DiT, load_physicsnemo
    from xcorrdiff.nn.flow_dit import FlowDiT

    network, sampler = metadata["network"], metadata.get("sampler", {})
    if network.get("kind") != "rectified_flow":
        raise _fail(folder, f"network kind {network.get('kind')!r} is not supported; xcorrdiff "
                    "runs the 'rectified_flow' networks (an 'edm' DiT is not implemented)")  # fmt: skip
    dit = load_physicsnemo(folder / str(metadata["checkpoint"]))
    if not isinstance(dit, DiT):
        raise _fail(folder, f"{metadata['checkpoint']} holds a {type(dit).__name__}, not a DiT")
    scalars = metadata.get("scalar_conditions", {})
    # the package's conditioning: ERA5, cos zenith, invariants; ours: inputs, invariants, cos zenith
    order = [*range(n_in), n_in + n_inv, *range(n_in, n_in + n_inv)]
    flow = FlowDiT(
        dit.config, len(metadata["output_variables"]), order,
        prediction=network.get("prediction_type", "x0"),
        time_scale=float(network.get("time_scale", 999.0)),
        day_of_year=bool(scalars.get("day_of_year", True)),
        presence_flags=len(scalars.get("presence_flags", [])),
        t_max=float(sampler.get("t_max", 0.99)), shift=float(sampler.get("shift", 1.0)),
        x0v_clip=float(sampler.get("x0v_clip", 0.05)),
    )  # fmt: skip
    flow.dit.load_state_dict(dit.state_dict())
    return flow


def read_era5_hrrr_package(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The :class:`~xcorrdiff.model.CorrDiffModel` keyword arguments of a
    ``CorrDiffEra5Hrrr`` variant folder (see the module's description for its files)."""
    folder = Path(folder)
    missing = [n for n in _FILES if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CorrDiffEra5Hrrr package {os.fspath(folder)!r} lacks {missing}; it holds "
            f"{list(_FILES)} and the DiT checkpoint named in metadata.json"
        )
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    stats = json.loads((folder / "stats.json").read_text(encoding="utf-8"))
    if not (folder / str(metadata.get("checkpoint"))).is_file():
        raise FileNotFoundError(
            f"CorrDiffEra5Hrrr package {os.fspath(folder)!r}: the checkpoint "
            f"{metadata.get('checkpoint')!r} named in metadata.json is missing"
        )
    inputs = _variables(folder, metadata["era5_variables"], "era5_variables")
    outputs = _variables(folder, metadata["output_variables"], "output_variables")
    grid = _grid(folder, metadata)
    invariants = np.load(folder / "invariants.npy", allow_pickle=False).astype(np.float32)
    if invariants.ndim != 3 or invariants.shape[1:] != tuple(grid.sizes.values()):
        raise _fail(
            folder,
            f"invariants.npy has shape {invariants.shape}; expected (n, *{tuple(grid.sizes.values())})",
        )
    names = [f"invariant_{k}" for k in range(invariants.shape[0])]
    input_stats = {
        **_stats(folder, stats, "era5", [v.name for v in inputs]),
        **{n: {"mean": 0.0, "std": 1.0} for n in names},
        **feature_stats(("cos_zenith",)),
    }
    output_stats = _stats(folder, stats, "hrrr", [v.name for v in outputs])
    fields = {
        n: (("y", "x"), invariants[k], {"units": "1", "long_name": "normalized invariant"})
        for k, n in enumerate(names)
    }
    era5 = {c: np.load(folder / f"era5_{c}.npy", allow_pickle=False) for c in ("lat", "lon")}
    solver = metadata.get("sampler", {})
    sampler = SamplerConfig(
        sampler=solver.get("solver", "heun"),
        num_steps=int(solver.get("num_steps", 50)),
        s_churn=0.0,
    )
    return {
        "regression": None,
        "diffusion": _flow(folder, metadata, len(inputs), len(names)),
        "input_variables": inputs,
        "output_variables": outputs,
        "grid": grid,
        "input_grid": xr.Dataset(coords=era5),
        "invariants": xr.Dataset(fields, coords=grid.coords),
        "time_features": ("cos_zenith",),
        "input_normalizer": Normalizer.from_stats(input_stats),
        "output_normalizer": Normalizer.from_stats(output_stats),
        "sampler": sampler,
        "conditioning": {"hr_mean": False, "global_lowres": False},
        "provenance": {
            "source": "earth2studio CorrDiffEra5Hrrr",
            "package_dir": os.fspath(folder.resolve()),
            "metadata": metadata,
        },
    }

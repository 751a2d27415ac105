"""``xcorrdiff verify``: score an ensemble store against the truth, as a table and figures.

Per variable: CRPS (and fair CRPS), MAE and RMSE of the ensemble mean, spread and the
spread-skill ratio (:func:`xcorrdiff.verify.verify`); the fraction of truths ranked outside
the ensemble (``rank_outside``: the two end bins of the rank histogram, ``2/(M+1)`` for a
calibrated ensemble); and the members' power in the highest third of wavenumbers relative
to the truth's (``high_k_power_ratio``, 1 when the members are as sharp as the truth).

``--climate`` scores a climate record instead, in one streamed pass over the store
(:func:`xcorrdiff.verify.accumulate`): per variable, Perkins' score, the log histogram
distance, the ratio of standard deviations and the 1 % and 99 % quantile biases per point
over time (averaged over the points), RALSD and the finest octave's power ratio;
``--indices TXx,SU,...`` adds a row per climate index with its bias and CRPS (xclim).
With ``--figures``, ``--climate`` adds quantile–quantile plots and the power ratio per
wavelength band.

``--threshold NAME=T1,T2`` adds, for that variable, the Brier score of ``x >= T`` and its
fractions skill score over ``--windows``. A TRUTH of station observations (1-D latitude and
longitude on a station dimension) scores the ensemble interpolated to the stations
(:func:`xcorrdiff.verify.at_stations`); spectra and FSS need a grid and are left out there.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

from xcorrdiff.cli.options import CommandError, Handler, open_dataset, path, subcommand

__all__ = ["add_verify", "score_table"]

EXAMPLES = """examples:
  xcorrdiff verify ensemble.zarr truth.nc
  xcorrdiff verify ensemble.zarr truth.zarr --format csv --out scores.csv
  xcorrdiff verify ensemble.zarr truth.nc --variables t2m,precip --figures figures/
  xcorrdiff verify ensemble.zarr truth.nc --area-weights --format json
  xcorrdiff verify ensemble.zarr truth.nc --threshold precip=1,10 --windows 1,9,33
  xcorrdiff verify ensemble.zarr stations.nc --threshold t2m=273.15
  xcorrdiff verify ensemble.zarr truth.zarr --climate --indices TXx,Rx1day --format csv
"""

COLUMNS = (
    "crps", "crps_fair", "mae", "rmse", "spread", "spread_skill", "rank_outside",
    "high_k_power_ratio",
)  # fmt: skip


def _variables(ens: Any, truth: Any, text: str | None) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()] if text else None
    common = [str(n) for n in ens.data_vars if n in truth.data_vars and "member" in ens[n].dims]
    chosen = names or common
    missing = [n for n in chosen if n not in common]
    if missing or not chosen:
        raise CommandError(
            f"--variables: {missing or 'none'} are not variables of both ENSEMBLE (with a "
            f"member dimension) and TRUTH; both have {common}"
        )
    return chosen


def _area_weights(ens: Any) -> Any:
    import numpy as np

    if "lat" not in ens.coords:
        raise CommandError("--area-weights needs a 'lat' coordinate on ENSEMBLE; it has none")
    return np.cos(np.deg2rad(ens["lat"]))


def _thresholds(items: list[str] | None, names: list[str]) -> dict[str, list[float]]:
    """``--threshold NAME=T1,T2`` options as ``{name: [T1, T2]}``."""
    chosen: dict[str, list[float]] = {}
    for item in items or []:
        name, _, values = item.partition("=")
        try:
            levels = [float(v) for v in values.split(",")]
        except ValueError:
            levels = []
        if name not in names or not levels or not all(map(math.isfinite, levels)):
            raise CommandError(
                f"--threshold {item!r} is invalid; expected NAME=T1[,T2...] with NAME one of "
                f"{names} and finite numbers in its units, e.g. --threshold {names[0]}=1,10"
            )
        chosen[name] = levels
    return chosen


def _windows(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(w < 1 or w % 2 == 0 for w in sizes):
        raise CommandError(f"--windows {text!r} is invalid; expected odd sides >= 1, e.g. 1,9,33")
    return sizes


def station_dim(truth: Any) -> str | None:
    """The station dimension when TRUTH holds point observations, else None."""
    from xcorrdiff.data.grids import latlon_names

    try:
        lat, lon = (truth[n] for n in latlon_names(truth, role="TRUTH"))
    except ValueError:
        return None
    return str(lat.dims[0]) if lat.ndim == 1 and lat.dims == lon.dims else None


def score_table(
    ens: Any,
    truth: Any,
    names: list[str],
    weights: Any = None,
    thresholds: dict[str, list[float]] | None = None,
    windows: tuple[int, ...] = (1, 5, 17),
) -> dict[str, dict]:
    """``{variable: {column: value}}``: the scores in :data:`COLUMNS`, then per threshold
    ``brier>=T`` and (on a grid) ``fss>=T,wN``; at stations, spectra are NaN and FSS absent."""
    from xcorrdiff import verify

    gridded = station_dim(truth) is None
    ens, truth = ens[names], truth[names]
    table = verify.verify(ens, truth, weights=weights).compute()
    rows: dict[str, dict[str, float]] = {}
    for name in names:
        row = {k: float(table[k].sel(variable=name)) for k in COLUMNS[:6]}
        ranks = verify.rank_histogram(ens[name], truth[name], normalize=True).compute()
        row["rank_outside"] = float(ranks.isel(rank=0) + ranks.isel(rank=-1))
        row["high_k_power_ratio"] = math.nan
        if gridded:
            dims = ens[name].dims[-2:]
            power = verify.high_wavenumber_power(ens[name], dims=dims)
            row["high_k_power_ratio"] = power / verify.high_wavenumber_power(truth[name], dims=dims)
        for level in (thresholds or {}).get(name, []):
            row[f"brier>={level:g}"] = float(verify.brier_score(ens[name], truth[name], level))
            if gridded:
                scores = verify.fss(ens[name], truth[name], level, list(windows),
                                    spatial_dims=ens[name].dims[-2:]).values  # fmt: skip
                row.update(
                    {f"fss>={level:g},w{w}": float(x) for w, x in zip(windows, scores, strict=True)}
                )
        rows[name] = row
    return rows


def _grid_dims(ens: Any, name: str) -> Any:
    """The two spatial dims when a grid spacing can be found there, else None (no spectra)."""
    from xcorrdiff.verify import grid_spacing

    dims = tuple(ens[name].dims[-2:])
    try:
        grid_spacing(ens[name], dims)
    except ValueError:
        return None
    return dims


def _distribution_rows(ens: Any, truth: Any, names: list[str]) -> dict[str, dict[str, float]]:
    from xcorrdiff import verify

    sums = verify.accumulate(ens, truth, spatial_dims=_grid_dims(ens, names[0]))
    maps = verify.scores_from_sums(sums, per_point=True, quantiles=[0.01, 0.99])
    pooled = verify.scores_from_sums(sums)
    rows: dict[str, dict[str, float]] = {}
    for name in names:
        columns = ("perkins", "log_histogram_distance", "std_ratio")
        row = {c: float(maps[c].sel(variable=name).mean()) for c in columns}
        for q in (0.01, 0.99):
            bias = maps["quantile_bias"].sel(variable=name, quantile=q)
            row[f"q{round(q * 100):02d}_bias"] = float(bias.mean())
        if "ralsd" in pooled:
            row["ralsd_db"] = float(pooled["ralsd"].sel(variable=name))
            row["power_ratio_finest"] = float(pooled["band_power_ratio"].sel(variable=name)[0])
        rows[name] = row
    return rows


def climate_table(ens: Any, truth: Any, names: list[str], indices: list[str]) -> dict[str, dict]:
    """``{row: {column: value}}`` of ``--climate``: per variable, the distribution scores
    per point over time (averaged over the points) and the spectral distances, from one
    streamed pass (:func:`xcorrdiff.verify.accumulate`); per ``--indices`` index a row
    ``index:<name>`` with its mean bias and CRPS (:func:`xcorrdiff.verify.climate_indices`)."""
    from xcorrdiff import verify

    rows: dict[str, dict[str, float]] = {}
    if names:
        rows |= _distribution_rows(ens[names], truth[names], names)
    if indices:
        scores = verify.climate_indices(ens, truth, indices)
        for index in indices:
            rows[f"index:{index}"] = {
                "index_bias": float(scores[f"{index}_bias"].mean()),
                "index_crps": float(scores[f"{index}_crps"].mean()),
            }
    return rows


def _format(rows: dict[str, dict[str, float]], kind: str) -> str:
    columns = list(dict.fromkeys(c for row in rows.values() for c in row))
    rows = {v: {c: row.get(c, math.nan) for c in columns} for v, row in rows.items()}
    if kind == "json":
        clean = {
            v: {k: (x if math.isfinite(x) else None) for k, x in r.items()} for v, r in rows.items()
        }
        return json.dumps(clean, indent=2) + "\n"
    if kind == "csv":
        out = io.StringIO()
        out.write(",".join(("variable", *columns)) + "\n")
        for name, row in rows.items():
            out.write(",".join((name, *(f"{row[c]:.6g}" for c in columns))) + "\n")
        return out.getvalue()
    width = max(len(n) for n in rows) + 2
    lines = [f"{'variable':<{width}}" + "".join(f"{c:>20}" for c in columns)]
    for name, row in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f"{row[c]:>20.4f}" for c in columns))
    return "\n".join(lines) + "\n"


def _panels(
    ens: Any, truth: Any, thresholds: dict[str, list[float]], windows: list[int]
) -> dict[str, tuple[list[str], Any]]:
    """``{file stem: (variables, draw(ax, name))}`` of the figures that apply."""
    from xcorrdiff import plot

    names = [str(n) for n in ens.data_vars]
    panels = {
        "rank_histograms": (names, lambda ax, n: plot.rank_histogram(ens[n], truth[n], ax=ax)),
        "spread_skill": (names, lambda ax, n: plot.spread_skill(ens[n], truth[n], ax=ax)),
    }
    if thresholds:
        panels["reliability"] = (list(thresholds), lambda ax, n: plot.reliability(
            ens[n], truth[n], thresholds[n][0], ax=ax))  # fmt: skip
    if station_dim(truth) is None:
        panels["spectra"] = (names, lambda ax, n: plot.spectra(
            truth[n], members=ens[n], ax=ax, dims=ens[n].dims[-2:]))  # fmt: skip
        if thresholds:
            panels["fss"] = (list(thresholds), lambda ax, n: plot.fss(
                ens[n], truth[n], thresholds[n], windows, ax=ax,
                spatial_dims=ens[n].dims[-2:]))  # fmt: skip
    return panels


def _climate_panels(ens: Any, truth: Any) -> dict[str, tuple[list[str], Any]]:
    """``--climate --figures``: quantile–quantile plots, and the power ratio per band where
    the grid spacing is known."""
    from xcorrdiff import plot

    names = [str(n) for n in ens.data_vars]
    panels = {"quantile_quantile": (names, lambda ax, n: plot.quantile_quantile(
        ens[n], truth[n], ax=ax))}  # fmt: skip
    dims = _grid_dims(ens, names[0])
    if dims is not None:
        panels["band_power"] = (names, lambda ax, n: plot.band_power(
            ens[n], truth[n], dims=dims, ax=ax))  # fmt: skip
    return panels


def _figures(
    folder: Path, ens: Any, truth: Any, thresholds: dict[str, list[float]], windows: list[int],
    climate: bool = False,
) -> list[Path]:  # fmt: skip
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    panels = _panels(ens, truth, thresholds, windows)
    if climate:
        panels |= _climate_panels(ens, truth)
    for stem, (names, draw) in panels.items():
        fig = Figure(figsize=(4.2 * len(names), 3.6), layout="constrained")
        for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names, strict=True):
            draw(ax, name)
            ax.set_title(name)
        paths.append(folder / f"{stem}.png")
        fig.savefig(paths[-1], dpi=72)
    return paths


def _verify(args: argparse.Namespace) -> int:
    from xcorrdiff._files import write_text_atomic

    if args.figures is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:
            raise CommandError("--figures needs matplotlib: pip install xcorrdiff[plot]") from exc
    ens = open_dataset(args.ensemble, "ENSEMBLE")
    truth = open_dataset(args.truth, "TRUTH")
    names = _variables(ens, truth, args.variables)
    thresholds, windows = _thresholds(args.threshold, names), _windows(args.windows)
    if station_dim(truth) is not None:
        if args.area_weights:
            raise CommandError("--area-weights weighs grid points; TRUTH holds stations")
        ens = _at_stations(ens[names], truth)
    weights = _area_weights(ens) if args.area_weights else None
    indices = [i.strip() for i in args.indices.split(",") if i.strip()] if args.indices else []
    if (args.climate or indices) and station_dim(truth) is not None:
        raise CommandError("--climate and --indices score grids over time; TRUTH holds stations")
    if args.climate or indices:
        rows = _climate(ens.chunk({"member": -1}), truth, names if args.climate else [], indices)
    else:
        ens, truth = ens[names].chunk({"member": -1}), truth[names]
        rows = score_table(ens, truth, names, weights, thresholds, tuple(windows))
    text = _format(rows, args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(args.out), text)
    if args.figures is not None:
        chosen = (ens[names], truth[names])
        _figures(Path(args.figures), *chosen, thresholds, windows, climate=args.climate)
    return 0


def _climate(ens: Any, truth: Any, names: list[str], indices: list[str]) -> dict[str, dict]:
    try:
        return climate_table(ens, truth, names, indices)
    except (ImportError, ValueError) as exc:
        raise CommandError(f"--climate/--indices: {exc}") from exc


def _at_stations(ens: Any, truth: Any) -> Any:
    from xcorrdiff.verify import at_stations

    try:
        return at_stations(ens, truth)
    except ValueError as exc:
        raise CommandError(f"TRUTH holds stations, but {exc}") from exc


def add_verify(subparsers: Any) -> Handler:
    p = subcommand(
        subparsers,
        "verify",
        "score an ensemble against the truth: CRPS, spread-skill, ranks, spectra, thresholds",
        (
            "Score ENSEMBLE (a store with a member dimension, e.g. from xcorrdiff downscale) "
            "against TRUTH (any file or store xarray opens, same grid and times, or station "
            "observations) and print one row per variable; optionally write the figures."
        ),
        EXAMPLES,
    )
    p.add_argument("ensemble", metavar="ENSEMBLE", type=path, help="ensemble store (member, ...)")
    p.add_argument("truth", metavar="TRUTH", type=path, help="the truth on the same grid")
    p.add_argument("--variables", default=None, help="comma-separated (default: all shared)")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text")
    p.add_argument(
        "--out",
        "--output",
        type=path,
        default=None,
        help="write the table here (default stdout)",
    )
    p.add_argument("--figures", type=path, default=None, help="folder for the PNG figures")
    p.add_argument(
        "--area-weights", action="store_true", help="weigh the means by cos(lat) (spatial weights)"
    )
    p.add_argument(
        "--threshold",
        action="append",
        metavar="NAME=T1[,T2...]",
        help="add Brier and FSS columns for x >= T (the variable's units); repeatable",
    )
    p.add_argument(
        "--windows", default="1,5,17", help="FSS neighbourhood sides in grid points (odd)"
    )
    p.add_argument(
        "--climate",
        action="store_true",
        help="climate scores instead: distributions per point over time, quantile biases, "
        "RALSD and the finest octave's power ratio, in one streamed pass",
    )
    p.add_argument(
        "--indices",
        default=None,
        metavar="TXx,SU,...",
        help="climate indices' bias and CRPS through xclim (pip install xcorrdiff[climate])",
    )
    return _verify

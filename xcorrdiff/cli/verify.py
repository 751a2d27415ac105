"""``xcorrdiff verify``: score an ensemble store against the truth, as a table and figures.

Per variable: CRPS (and fair CRPS), MAE and RMSE of the ensemble mean, spread and the
spread-skill ratio (:func:`xcorrdiff.verify.verify`); the fraction of truths ranked outside
the ensemble (``rank_outside``: the two end bins of the rank histogram, ``2/(M+1)`` for a
calibrated ensemble); and the members' power in the highest third of wavenumbers relative
to the truth's (``high_k_power_ratio``, 1 when the members are as sharp as the truth).

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


def _figures(
    folder: Path, ens: Any, truth: Any, thresholds: dict[str, list[float]], windows: list[int]
) -> list[Path]:
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, (names, draw) in _panels(ens, truth, thresholds, windows).items():
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
    ens, truth = ens[names].chunk({"member": -1}), truth[names]
    rows = score_table(ens, truth, names, weights, thresholds, tuple(windows))
    text = _format(rows, args.format)
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(args.out), text)
    if args.figures is not None:
        _figures(Path(args.figures), ens, truth, thresholds, windows)
    return 0


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
    return _verify

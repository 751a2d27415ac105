"""``xcorrdiff verify``: score an ensemble store against the truth, as a table and figures.

Per variable: CRPS (and fair CRPS), MAE and RMSE of the ensemble mean, spread and the
spread-skill ratio (:func:`xcorrdiff.verify.verify`); the fraction of truths ranked outside
the ensemble (``rank_outside``: the two end bins of the rank histogram, ``2/(M+1)`` for a
calibrated ensemble); and the members' power in the highest third of wavenumbers relative
to the truth's (``high_k_power_ratio``, 1 when the members are as sharp as the truth).
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
  xcorrdiff verify ensemble.zarr truth.zarr --format csv --output scores.csv
  xcorrdiff verify ensemble.zarr truth.nc --variables t2m,precip --figures figures/
  xcorrdiff verify ensemble.zarr truth.nc --area-weights --format json
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


def score_table(ens: Any, truth: Any, names: list[str], weights: Any = None) -> dict[str, dict]:
    """``{variable: {column: value}}`` of the scores in :data:`COLUMNS`."""
    from xcorrdiff import verify

    ens, truth = ens[names], truth[names]
    table = verify.verify(ens, truth, weights=weights).compute()
    rows: dict[str, dict[str, float]] = {}
    for name in names:
        row = {k: float(table[k].sel(variable=name)) for k in COLUMNS[:6]}
        ranks = verify.rank_histogram(ens[name], truth[name], normalize=True).compute()
        row["rank_outside"] = float(ranks.isel(rank=0) + ranks.isel(rank=-1))
        dims = ens[name].dims[-2:]
        power = verify.high_wavenumber_power(ens[name], dims=dims)
        row["high_k_power_ratio"] = power / verify.high_wavenumber_power(truth[name], dims=dims)
        rows[name] = row
    return rows


def _format(rows: dict[str, dict[str, float]], kind: str) -> str:
    if kind == "json":
        clean = {
            v: {k: (x if math.isfinite(x) else None) for k, x in r.items()} for v, r in rows.items()
        }
        return json.dumps(clean, indent=2) + "\n"
    if kind == "csv":
        out = io.StringIO()
        out.write(",".join(("variable", *COLUMNS)) + "\n")
        for name, row in rows.items():
            out.write(",".join((name, *(f"{row[c]:.6g}" for c in COLUMNS))) + "\n")
        return out.getvalue()
    width = max(len(n) for n in rows) + 2
    lines = [f"{'variable':<{width}}" + "".join(f"{c:>20}" for c in COLUMNS)]
    for name, row in rows.items():
        lines.append(f"{name:<{width}}" + "".join(f"{row[c]:>20.4f}" for c in COLUMNS))
    return "\n".join(lines) + "\n"


def _figures(folder: Path, ens: Any, truth: Any, names: list[str]) -> list[Path]:
    from matplotlib.figure import Figure

    from xcorrdiff import plot

    folder.mkdir(parents=True, exist_ok=True)
    panels = {
        "rank_histograms": lambda ax, n: plot.rank_histogram(ens[n], truth[n], ax=ax),
        "spectra": lambda ax, n: plot.spectra(
            truth[n], members=ens[n], ax=ax, dims=ens[n].dims[-2:]
        ),
        "spread_skill": lambda ax, n: plot.spread_skill(ens[n], truth[n], ax=ax),
    }
    paths = []
    for stem, draw in panels.items():
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
    weights = _area_weights(ens) if args.area_weights else None
    ens = ens.chunk({"member": -1})
    text = _format(score_table(ens, truth, names, weights), args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_text_atomic(Path(args.output), text)
    if args.figures is not None:
        _figures(Path(args.figures), ens, truth, names)
    return 0


def add_verify(subparsers: Any) -> Handler:
    p = subcommand(
        subparsers,
        "verify",
        "score an ensemble against the truth: CRPS, spread-skill, ranks, spectra",
        (
            "Score ENSEMBLE (a store with a member dimension, e.g. from xcorrdiff downscale) "
            "against TRUTH (any file or store xarray opens, same grid and times) and print "
            "one row per variable; optionally write the figures."
        ),
        EXAMPLES,
    )
    p.add_argument("ensemble", metavar="ENSEMBLE", type=path, help="ensemble store (member, ...)")
    p.add_argument("truth", metavar="TRUTH", type=path, help="the truth on the same grid")
    p.add_argument("--variables", default=None, help="comma-separated (default: all shared)")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text")
    p.add_argument(
        "--output", type=path, default=None, help="write the table here (default stdout)"
    )
    p.add_argument("--figures", type=path, default=None, help="folder for the PNG figures")
    p.add_argument(
        "--area-weights", action="store_true", help="weigh the means by cos(lat) (spatial weights)"
    )
    return _verify

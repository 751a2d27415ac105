"""The demo's figures: maps, spectra, rank histograms and spread-skill, as PNG files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["write_figures"]


def _spread_skill_panel(
    ax: Any, members: xr.DataArray, oracle: xr.DataArray, truth: xr.DataArray
) -> None:
    from xcorrdiff import plot

    plot.spread_skill(oracle, truth, ax=ax, label="oracle")
    plot.spread_skill(members, truth, ax=ax, label="CorrDiff")
    top = max(max(np.nanmax(line.get_xdata()), np.nanmax(line.get_ydata())) for line in ax.lines)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)


def write_figures(
    folder: Path,
    *,
    lr_nearest: xr.Dataset,
    mean: xr.Dataset,
    members: xr.Dataset,
    truth: xr.Dataset,
    oracle: xr.Dataset,
    dpi: int,
) -> list[Path]:
    from matplotlib.figure import Figure

    from xcorrdiff import plot

    names = [str(n) for n in members.data_vars]
    cmaps = {"t2m": "inferno", "precip": "Blues"}
    paths: list[Path] = []

    fig = Figure(figsize=(11.0, 2.2 * len(names)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(names), 5, squeeze=False))
    for row, name in zip(axes, names, strict=True):
        plot.maps(
            inputs=lr_nearest[name].isel(time=0) if name in lr_nearest else None,
            mean=mean[name].isel(time=0),
            members=members[name].isel(time=0),
            truth=truth[name].isel(time=0),
            cmap=cmaps.get(name, "viridis"),
            axes=row if name in lr_nearest else row[1:],
        )
        if name not in lr_nearest:
            row[0].set_visible(False)
        titles = ["input (LR)", "regression mean", "member 0", "member 1", "truth"]
        for ax, title in zip(row, titles, strict=True):
            ax.set_title(f"{name}: {title}", fontsize=8)
            ax.set_xlabel("")
            ax.set_ylabel("")
            ax.set_xticks([])
            ax.set_yticks([])
    paths.append(folder / "maps.png")
    fig.savefig(paths[-1], dpi=dpi)

    panels: list[tuple[str, Callable[[Any, str], Any]]] = [
        (
            "spectra",
            lambda ax, n: plot.spectra(truth[n], members=members[n], regression=mean[n], ax=ax),
        ),
        ("rank_histograms", lambda ax, n: plot.rank_histogram(members[n], truth[n], ax=ax)),
        (
            "spread_skill",
            lambda ax, n: _spread_skill_panel(ax, members[n], oracle[n], truth[n]),
        ),
    ]
    for stem, draw in panels:
        fig = Figure(figsize=(4.2 * len(names), 3.6), layout="constrained")
        row = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)[0])
        for ax, name in zip(row, names, strict=True):
            draw(ax, name)
            ax.set_title(name)
            handles, labels = ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles, strict=True))  # one 1:1 line, one entry
            ax.legend(unique.values(), unique.keys(), fontsize=7)
        paths.append(folder / f"{stem}.png")
        fig.savefig(paths[-1], dpi=dpi)
    return paths

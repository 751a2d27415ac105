"""Verification plots: spread-skill curves, rank histograms, reliability diagrams, FSS
curves, power spectra, maps; for climate output, quantile–quantile plots, maps of a climate
index's bias and the power ratio per wavelength band.

matplotlib is optional (``pip install xcorrdiff[plot]``) and imported only when a plot is
drawn. Every function draws on ``ax`` (or a new figure) and returns the matplotlib Axes
(an array of Axes for :func:`maps`), so plots compose and are easy to test.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from xcorrdiff import verify

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "band_power",
    "fss",
    "index_bias_map",
    "maps",
    "quantile_quantile",
    "rank_histogram",
    "reliability",
    "spectra",
    "spread_skill",
]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "xcorrdiff.plot needs matplotlib; install it with `pip install xcorrdiff[plot]`"
        ) from exc
    return plt


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    _, new_ax = _pyplot().subplots()
    return new_ax


def _one_variable(
    obj: xr.Dataset | xr.DataArray, variable: Hashable | None, argname: str
) -> xr.DataArray:
    if isinstance(obj, xr.DataArray):
        return obj
    if variable is None:
        if len(obj.data_vars) == 1:
            return next(iter(obj.data_vars.values()))
        raise ValueError(
            f"{argname} is a Dataset with variables {list(obj.data_vars)}; pass variable= "
            "to choose the one to plot"
        )
    if variable not in obj.data_vars:
        raise ValueError(f"variable {variable!r} not in {argname} (has {list(obj.data_vars)})")
    return obj[variable]


def spread_skill(
    forecast: xr.Dataset | xr.DataArray,
    obs: xr.Dataset | xr.DataArray,
    *,
    member_dim: str = "member",
    dim: str | Iterable[Hashable] | None = None,
    bins: int | np.ndarray = 10,
    variable: Hashable | None = None,
    ax: Axes | None = None,
    label: str | None = None,
) -> Axes:
    """RMSE of the ensemble mean against the (corrected) spread, binned by spread.

    Draws :func:`xcorrdiff.verify.spread_skill_curve` with the 1:1 line of a calibrated
    ensemble (the CorrDiff paper's spread-skill panel). Points below the line: over-dispersed;
    above: under-dispersed.
    """
    f = _one_variable(forecast, variable, "forecast")
    o = _one_variable(obs, f.name if isinstance(obs, xr.Dataset) else None, "obs")
    curve = verify.spread_skill_curve(f, o, member_dim=member_dim, dim=dim, bins=bins)
    extra = [d for d in curve.dims if d not in ("statistic", "spread_bin")]
    if extra:
        raise ValueError(
            f"the spread-skill curve keeps dims {extra}; pass dim=None (pool all) to plot one curve"
        )
    spread_b = curve.sel(statistic="spread").values
    rmse_b = curve.sel(statistic="rmse").values
    ax = _axes(ax)
    ax.plot(spread_b, rmse_b, "o-", label=label or str(f.name or "ensemble"))
    top = float(np.nanmax(np.r_[spread_b, rmse_b])) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=1, label="1:1 (calibrated)")
    units = f.attrs.get("units")
    suffix = f" [{units}]" if units else ""
    ax.set_xlabel(f"spread{suffix}")
    ax.set_ylabel(f"RMSE of ensemble mean{suffix}")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.legend()
    return ax


def rank_histogram(
    forecast: xr.Dataset | xr.DataArray,
    obs: xr.Dataset | xr.DataArray,
    *,
    member_dim: str = "member",
    dim: str | Iterable[Hashable] | None = None,
    seed: int = 0,
    variable: Hashable | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Bar chart of rank frequencies with the flat line :math:`1/(M+1)` of a calibrated ensemble."""
    f = _one_variable(forecast, variable, "forecast")
    o = _one_variable(obs, f.name if isinstance(obs, xr.Dataset) else None, "obs")
    freq = verify.rank_histogram(f, o, member_dim=member_dim, dim=dim, seed=seed, normalize=True)
    if freq.ndim != 1:
        raise ValueError(f"the rank histogram keeps dims {freq.dims[1:]}; pass dim=None to plot it")
    ax = _axes(ax)
    ranks = freq["rank"].values
    ax.bar(ranks, freq.values, width=0.9, color="tab:blue")
    ax.axhline(1.0 / ranks.size, color="k", ls="--", lw=1, label="calibrated")
    ax.set_xlabel("rank of observation")
    ax.set_ylabel("frequency")
    ax.set_title(str(f.name) if f.name is not None else "rank histogram")
    ax.legend()
    return ax


def reliability(
    forecast: xr.Dataset | xr.DataArray,
    obs: xr.Dataset | xr.DataArray,
    threshold: float,
    *,
    member_dim: str = "member",
    bins: int | Sequence[float] = 10,
    variable: Hashable | None = None,
    ax: Axes | None = None,
    label: str | None = None,
) -> Axes:
    """Reliability diagram of ``x >= threshold`` (all dims pooled), with the diagonal of a
    reliable ensemble and the number of cases per bin as grey bars on a second axis."""
    f = _one_variable(forecast, variable, "forecast")
    o = _one_variable(obs, f.name if isinstance(obs, xr.Dataset) else None, "obs")
    table = verify.reliability(f, o, threshold, member_dim=member_dim, bins=bins).compute()
    ax = _axes(ax)
    units = f.attrs.get("units", "")
    event = f"{f.name or 'x'} >= {threshold:g} {units}".strip()
    counts = ax.twinx()
    counts.bar(table["probability_bin"], table["samples"], width=0.8 / table.sizes["probability_bin"],
               color="0.85", zorder=0)  # fmt: skip
    counts.set_yscale("log")
    counts.set_ylabel("cases")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="reliable")
    ax.plot(table["forecast_probability"], table["observed_frequency"], "o-",
            label=label or str(f.name or "ensemble"))  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("forecast probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(event)
    ax.legend(loc="upper left")
    return ax


def fss(
    forecast: xr.Dataset | xr.DataArray,
    obs: xr.Dataset | xr.DataArray,
    thresholds: float | Iterable[float],
    windows: Iterable[int],
    *,
    member_dim: str = "member",
    spatial_dims: tuple[Hashable, Hashable] = ("y", "x"),
    variable: Hashable | None = None,
    ax: Axes | None = None,
) -> Axes:
    """FSS against the neighbourhood size, one curve per threshold, each with its useful-skill
    level :math:`0.5 + f_o/2` (Roberts & Lean 2008; :math:`f_o` the observed base rate)."""
    f = _one_variable(forecast, variable, "forecast")
    o = _one_variable(obs, f.name if isinstance(obs, xr.Dataset) else None, "obs")
    levels = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    sizes = np.asarray(list(windows))
    scores = verify.fss(f, o, levels.tolist(), sizes.tolist(), member_dim=member_dim,
                        spatial_dims=spatial_dims).compute()  # fmt: skip
    ax = _axes(ax)
    units = f.attrs.get("units", "")
    for k, level in enumerate(levels):
        line = ax.plot(sizes, scores.isel(threshold=k), "o-", label=f">= {level:g} {units}")[0]
        base = float((o >= level).where(o.notnull()).mean())
        ax.axhline(0.5 + base / 2, color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("window (grid points)")
    ax.set_ylabel("fractions skill score")
    ax.set_ylim(0, 1)
    ax.set_title(str(f.name) if f.name is not None else "FSS")
    ax.legend()
    return ax


def _mean_spectrum(
    field: xr.DataArray, dims: tuple[Hashable, Hashable], keep: Iterable[Hashable] = ()
) -> xr.DataArray:
    spec = verify.power_spectrum(field, dims=dims)
    average = [d for d in spec.dims if d != "wavenumber" and d not in set(keep)]
    return spec.mean(average).isel(wavenumber=slice(1, None))  # drop k = 0 for log axes


def spectra(
    truth: xr.DataArray,
    *,
    members: xr.DataArray | None = None,
    regression: xr.DataArray | None = None,
    member_dim: str = "member",
    dims: tuple[Hashable, Hashable] = ("y", "x"),
    ax: Axes | None = None,
) -> Axes:
    """Radial power spectra on log-log axes: truth, the regression mean and each member.

    Each spectrum (:func:`xcorrdiff.verify.power_spectrum`) is averaged over every dim but
    the wavenumber (members: over all but ``member_dim``, one thin line per member).
    The x axis is the wavelength in km.
    """
    ax = _axes(ax)
    if members is not None:
        per_member = _mean_spectrum(members, dims, keep=[member_dim])
        for i in range(per_member.sizes[member_dim]):
            line = per_member.isel({member_dim: i})
            ax.loglog(
                line["wavenumber"] * 1e3,
                line.values,
                color="tab:orange",
                lw=0.7,
                alpha=0.6,
                label="members" if i == 0 else None,
            )
    if regression is not None:
        spec = _mean_spectrum(regression, dims)
        ax.loglog(
            spec["wavenumber"] * 1e3, spec.values, color="tab:green", lw=1.5, label="regression"
        )
    spec = _mean_spectrum(truth, dims)
    ax.loglog(spec["wavenumber"] * 1e3, spec.values, color="k", lw=2, label="truth")
    ax.set_xlabel("wavenumber [cycles / km]")
    units = truth.attrs.get("units")
    ax.set_ylabel(f"power spectral density [({units})² m]" if units else "power spectral density")
    ax.legend()
    return ax


def maps(
    *,
    inputs: xr.DataArray | None = None,
    mean: xr.DataArray | None = None,
    members: xr.DataArray | None = None,
    truth: xr.DataArray | None = None,
    member_dim: str = "member",
    members_shown: int = 2,
    cmap: str = "viridis",
    axes: np.ndarray | None = None,
) -> np.ndarray:
    """A row of maps with one colour scale: input, ensemble mean, a few members, truth.

    Each field must be 2-D (``members``: 2-D plus ``member_dim``); select a time first,
    e.g. ``ens.isel(time=0)``.

    Returns
    -------
    numpy.ndarray of Axes
        One per panel, in the order input, mean, members, truth.
    """
    panels: list[tuple[str, xr.DataArray]] = []
    if inputs is not None:
        panels.append(("input", inputs))
    if mean is not None:
        panels.append(("ensemble mean", mean))
    if members is not None:
        if member_dim not in members.dims:
            raise ValueError(
                f"members has no member dimension {member_dim!r} (dims {members.dims}); "
                "pass member_dim="
            )
        for i in range(min(members_shown, members.sizes[member_dim])):
            panels.append((f"member {i}", members.isel({member_dim: i})))
    if truth is not None:
        panels.append(("truth", truth))
    if not panels:
        raise ValueError("maps needs at least one of inputs=, mean=, members=, truth=")
    for title, field in panels:
        if field.ndim != 2:
            raise ValueError(
                f"maps: the {title} field has dims {field.dims}; expected 2-D (y, x); "
                "select one time first, e.g. .isel(time=0)"
            )
    finite = [np.asarray(f.values)[np.isfinite(f.values)] for _, f in panels]
    vmin = min(float(v.min()) for v in finite if v.size)
    vmax = max(float(v.max()) for v in finite if v.size)
    if axes is None:
        _, axes = _pyplot().subplots(
            1, len(panels), figsize=(3.2 * len(panels), 3.0), squeeze=False, constrained_layout=True
        )
    flat = np.asarray(axes).ravel()
    if flat.size < len(panels):
        raise ValueError(f"maps needs {len(panels)} axes, got {flat.size}")
    image = None
    for ax, (title, field) in zip(flat, panels, strict=False):
        image = field.plot.pcolormesh(ax=ax, vmin=vmin, vmax=vmax, cmap=cmap, add_colorbar=False)
        ax.set_title(title)
        ax.set_aspect("equal")
    if image is not None:
        flat[0].figure.colorbar(
            image,
            ax=list(flat[: len(panels)]),
            shrink=0.8,
            label=str(panels[-1][1].attrs.get("units", "")),
        )
    return flat[: len(panels)]


# --- climate output -----------------------------------------------------------------------


def quantile_quantile(
    forecast: xr.Dataset | xr.DataArray,
    obs: xr.Dataset | xr.DataArray,
    *,
    variable: Hashable | None = None,
    quantiles: Sequence[float] | None = None,
    member_dim: str = "member",
    ax: Axes | None = None,
) -> Axes:
    """Quantiles of the members' pooled values against the truth's (every point and time;
    NaN dropped), on a 1:1 line: above it the forecast is too high at that quantile.

    ``quantiles`` default: 99 from 0.5 % to 99.5 % and the 0.1 % and 99.9 % tails.
    """
    f = _one_variable(forecast, variable, "forecast")
    o = _one_variable(obs, variable, "obs")
    if member_dim not in f.dims:
        raise ValueError(f"forecast has no member dimension {member_dim!r} (dims {f.dims})")
    p = np.asarray(quantiles if quantiles is not None else
                   [0.001, *np.linspace(0.005, 0.995, 99), 0.999])  # fmt: skip
    qf = np.nanquantile(np.asarray(f.values, dtype=np.float64), p)
    qo = np.nanquantile(np.asarray(o.values, dtype=np.float64), p)
    ax = _axes(ax)
    ax.plot(qo, qf, "o", color="tab:orange", ms=3, label="members")
    low, high = min(qo.min(), qf.min()), max(qo.max(), qf.max())
    ax.plot([low, high], [low, high], color="k", lw=1, label="1:1")
    units = o.attrs.get("units")
    suffix = f" [{units}]" if units else ""
    ax.set_xlabel(f"truth quantile{suffix}")
    ax.set_ylabel(f"forecast quantile{suffix}")
    ax.legend()
    return ax


def index_bias_map(
    scores: xr.Dataset, index: str, *, cmap: str = "RdBu_r", ax: Axes | None = None
) -> Axes:
    """Map of ``<index>_bias`` from :func:`xcorrdiff.verify.climate_indices` (2-D: average
    the periods first), on a colour scale symmetric about zero."""
    name = f"{index}_bias"
    if name not in scores.data_vars:
        raise ValueError(
            f"scores has no {name!r} (it has {list(scores.data_vars)}); pass the result of "
            "xcorrdiff.verify.climate_indices with that index"
        )
    bias = scores[name]
    if bias.ndim != 2:
        raise ValueError(f"{name} has dims {bias.dims}; expected 2-D (y, x): average the periods")
    limit = float(np.nanmax(np.abs(bias.values))) or 1.0
    ax = _axes(ax)
    bias.plot.pcolormesh(ax=ax, cmap=cmap, vmin=-limit, vmax=limit,
                         cbar_kwargs={"label": f"{name} [{bias.attrs.get('units', '')}]"})  # fmt: skip
    ax.set_title(f"{index} bias")
    ax.set_aspect("equal")
    return ax


def band_power(
    forecast: xr.Dataset | xr.DataArray,
    obs: xr.Dataset | xr.DataArray,
    *,
    variable: Hashable | None = None,
    bands: Sequence[tuple[float, float]] | None = None,
    dims: tuple[Hashable, Hashable] = ("y", "x"),
    member_dim: str = "member",
    ax: Axes | None = None,
) -> Axes:
    """The forecast's power over the truth's per wavelength band
    (:func:`xcorrdiff.verify.band_power_ratio`), one marker per band at its geometric
    centre, on a log wavelength axis with the line of 1."""
    f = _one_variable(forecast, variable, "forecast")
    o = _one_variable(obs, variable, "obs")
    ratio = verify.band_power_ratio(f, o, bands=bands, dims=dims, member_dim=member_dim)
    centre = np.sqrt(ratio["wavelength_min"].values * ratio["wavelength_max"].values) / 1e3
    ax = _axes(ax)
    ax.semilogx(centre, ratio.values, "o-", color="tab:orange", label="members / truth")
    ax.axhline(1.0, color="k", lw=1)
    ax.set_xlabel("wavelength band centre [km]")
    ax.set_ylabel("power ratio")
    ax.legend()
    return ax

"""Ensemble verification (numpy + xarray, no torch): CRPS, spread-skill, rank histograms,
spectra, Brier score, reliability, fractions skill score, values at stations, and the
distribution diagnostics of climate output (:mod:`xcorrdiff.verify.distributions`), and
their streaming form over long stores (:mod:`xcorrdiff.verify.streaming`).

Every score takes a Dataset or DataArray, numpy- or dask-backed (dask stays lazy), with the
same argument names: ``member_dim`` (the ensemble dimension, default ``"member"``) and
``dim`` (dimensions to average over; ``None`` all, ``[]`` none). The numpy kernels live in
:mod:`xcorrdiff.verify.kernels`.

>>> import xcorrdiff.verify as xv
>>> xv.crps(ens, truth)                       # doctest: +SKIP
>>> xv.verify(ens, truth).to_dataframe()      # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from xcorrdiff.verify import kernels
from xcorrdiff.verify.distributions import (
    autocorrelation_ratio,
    interannual_ratio,
    log_histogram_distance,
    perkins,
    quantile_bias,
    std_ratio,
    wasserstein,
)
from xcorrdiff.verify.scores import (
    crps,
    crps_gaussian,
    mae,
    rank_histogram,
    rmse,
    spread,
    spread_skill,
    spread_skill_curve,
)
from xcorrdiff.verify.spectra import (
    band_power_ratio,
    grid_spacing,
    high_wavenumber_power,
    power_spectrum,
    ralsd,
)
from xcorrdiff.verify.streaming import accumulate, merge_sums, scores_from_sums
from xcorrdiff.verify.summary import histogram, verify
from xcorrdiff.verify.thresholds import brier_score, fss, reliability

__all__ = [
    "accumulate",
    "at_stations",
    "autocorrelation_ratio",
    "band_power_ratio",
    "brier_score",
    "climate_indices",
    "crps",
    "crps_gaussian",
    "fss",
    "grid_spacing",
    "high_wavenumber_power",
    "histogram",
    "interannual_ratio",
    "kernels",
    "log_histogram_distance",
    "mae",
    "merge_sums",
    "perkins",
    "power_spectrum",
    "quantile_bias",
    "ralsd",
    "rank_histogram",
    "reliability",
    "rmse",
    "scores_from_sums",
    "spread",
    "spread_skill",
    "spread_skill_curve",
    "std_ratio",
    "verify",
    "wasserstein",
]


def __getattr__(name: str) -> Any:
    # at_stations lives with the grid code in xcorrdiff.data, which loads pint and
    # cf-xarray; verification imports it only when it is used. climate_indices needs the
    # optional xclim, which its module imports on the first call.
    if name == "at_stations":
        return importlib.import_module("xcorrdiff.data.points").at_stations
    if name == "climate_indices":
        return importlib.import_module("xcorrdiff.verify.indices").climate_indices
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

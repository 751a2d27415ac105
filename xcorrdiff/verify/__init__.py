"""Ensemble verification (numpy + xarray, no torch): CRPS, spread-skill, rank histograms,
spectra, Brier and fractions skill scores.

Every score takes a Dataset or DataArray, numpy- or dask-backed (dask stays lazy), with the
same argument names: ``member_dim`` (the ensemble dimension, default ``"member"``) and
``dim`` (dimensions to average over; ``None`` all, ``[]`` none). The numpy kernels live in
:mod:`xcorrdiff.verify.kernels`.

>>> import xcorrdiff.verify as xv
>>> xv.crps(ens, truth)                       # doctest: +SKIP
>>> xv.verify(ens, truth).to_dataframe()      # doctest: +SKIP
"""

from __future__ import annotations

from xcorrdiff.verify import kernels
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
from xcorrdiff.verify.spectra import grid_spacing, high_wavenumber_power, power_spectrum
from xcorrdiff.verify.summary import histogram, verify
from xcorrdiff.verify.thresholds import brier_score, fss

__all__ = [
    "brier_score",
    "crps",
    "crps_gaussian",
    "fss",
    "grid_spacing",
    "high_wavenumber_power",
    "histogram",
    "kernels",
    "mae",
    "power_spectrum",
    "rank_histogram",
    "rmse",
    "spread",
    "spread_skill",
    "spread_skill_curve",
    "verify",
]

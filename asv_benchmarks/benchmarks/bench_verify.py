"""Verification benchmarks: CRPS (ours vs scores), rank histogram, power spectrum.

The headline case is the issue's: 200,000 points x 32 members, float64, numpy-backed,
per-point CRPS. ``asv_benchmarks/compare_crps.py`` prints the same comparison side by side.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

import xcorrdiff.verify as xv

try:
    from scores.probability import crps_for_ensemble
except ImportError:  # scores is a test extra; its benchmarks are skipped without it
    crps_for_ensemble = None


class CRPS:
    """``crps`` on 200,000 points x 32 members against scores' ``crps_for_ensemble``."""

    params = (("member-last", "member-first"), (False, True))
    param_names = ("layout", "fair")
    timeout = 120

    def setup(self, layout: str, fair: bool) -> None:
        rng = np.random.default_rng(0)
        num_points, num_members = 200_000, 32
        if layout == "member-last":
            self.forecast = xr.DataArray(
                rng.normal(size=(num_points, num_members)), dims=("point", "member")
            )
        else:
            self.forecast = xr.DataArray(
                rng.normal(size=(num_members, num_points)), dims=("member", "point")
            )
        self.obs = xr.DataArray(rng.normal(size=num_points), dims="point")

    def time_xcorrdiff(self, layout: str, fair: bool) -> None:
        xv.crps(self.forecast, self.obs, dim=[], fair=fair)

    def peakmem_xcorrdiff(self, layout: str, fair: bool) -> None:
        xv.crps(self.forecast, self.obs, dim=[], fair=fair)

    def time_scores(self, layout: str, fair: bool) -> None:
        if crps_for_ensemble is None:
            raise NotImplementedError("scores is not installed")
        crps_for_ensemble(
            self.forecast,
            self.obs,
            "member",
            method="fair" if fair else "ecdf",
            preserve_dims="all",
        )

    def peakmem_scores(self, layout: str, fair: bool) -> None:
        self.time_scores(layout, fair)


class CRPSDask:
    """Lazy CRPS on a chunked ensemble (member, time, y, x), computed with threads."""

    timeout = 120

    def setup(self) -> None:
        rng = np.random.default_rng(1)
        self.forecast = xr.DataArray(
            rng.normal(size=(32, 8, 128, 128)), dims=("member", "time", "y", "x")
        ).chunk(time=2)
        self.obs = xr.DataArray(rng.normal(size=(8, 128, 128)), dims=("time", "y", "x")).chunk(
            time=2
        )

    def time_crps_dask(self) -> None:
        xv.crps(self.forecast, self.obs).compute(scheduler="threads")


class OtherScores:
    """Rank histogram, spread-skill and power spectrum on a CorrDiff-shaped ensemble."""

    timeout = 120

    def setup(self) -> None:
        rng = np.random.default_rng(2)
        coords = {"y": np.arange(128) * 2e3, "x": np.arange(128) * 2e3}
        self.forecast = xr.DataArray(
            rng.normal(size=(16, 4, 128, 128)), dims=("member", "time", "y", "x"), coords=coords
        )
        self.obs = xr.DataArray(
            rng.normal(size=(4, 128, 128)), dims=("time", "y", "x"), coords=coords
        )

    def time_rank_histogram(self) -> None:
        xv.rank_histogram(self.forecast, self.obs)

    def time_spread_skill(self) -> None:
        xv.spread_skill(self.forecast, self.obs)

    def time_power_spectrum(self) -> None:
        xv.power_spectrum(self.forecast)

"""Data-preparation benchmarks: regridding LR fields onto the HR grid, normalization.

Inputs come from :func:`xcorrdiff.tutorial.make_synthetic` (an ERA5-like 12-variable LR
grid and a Lambert-conformal HR grid with 2-D lat/lon).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

import xcorrdiff.tutorial as tutorial
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.regrid import regrid


class Regrid:
    """LR (lat, lon) -> HR grid: bilinear onto curvilinear 2-D lat/lon, conservative onto
    a rectilinear grid of the same size."""

    params = ((64, 128), ("bilinear", "conservative"))
    param_names = ("hr_size", "method")
    timeout = 180

    def setup(self, hr_size: int, method: str) -> None:
        self.lr, hr = tutorial.make_synthetic(n_times=16, hr_shape=(hr_size, hr_size), factor=8)
        if method == "bilinear":
            self.target = hr
        else:
            lat, lon = hr["lat"].values, hr["lon"].values
            self.target = xr.Dataset(
                coords={
                    "lat": np.linspace(lat.min(), lat.max(), hr_size),
                    "lon": np.linspace(lon.min(), lon.max(), hr_size),
                }
            )
        self.method: Any = method

    def time_regrid(self, hr_size: int, method: str) -> None:
        regrid(self.lr, self.target, method=self.method).compute()

    def peakmem_regrid(self, hr_size: int, method: str) -> None:
        regrid(self.lr, self.target, method=self.method).compute()


class Normalize:
    """Fit statistics and normalize / denormalize the HR fields, numpy- and dask-backed."""

    params = (("numpy", "dask"),)
    param_names = ("backend",)
    timeout = 120

    def setup(self, backend: str) -> None:
        _, hr = tutorial.make_synthetic(n_times=64, hr_shape=(128, 128), factor=8)
        self.hr = hr.chunk(time=16) if backend == "dask" else hr
        self.norm = Normalizer.fit(self.hr)
        self.normalized = self.norm.normalize(self.hr).compute()

    def time_fit(self, backend: str) -> None:
        Normalizer.fit(self.hr)

    def time_normalize(self, backend: str) -> None:
        self.norm.normalize(self.hr).compute()

    def time_denormalize(self, backend: str) -> None:
        self.norm.denormalize(self.normalized).compute()

"""From files on disk to a verified ensemble: ERA5 in, land-only observations out.

The path a user with real files takes, run on stand-ins written in the sources' own layouts
(this machine has no network, so the files are made from the known-truth synthetic data):

* ``era5.nc`` — ERA5 as the CDS writes it: ``valid_time``, descending ``latitude``, 0–360
  ``longitude``, short names (``u10``, ``v10``, ``t2m``, ``tcwv``), int16 packing;
* ``obs.nc`` — km-scale gridded observations on a Lambert conformal grid (2-D
  ``lat``/``lon``, a ``crs`` grid mapping), land only: NaN over the sea; precipitation in
  ``kg m-2 s-1``.

Then, as a user would: open both lazily, split the record (the last 20 % held out), train
(the masked loss skips the sea; precipitation through a fourth-root transform and bounded
below by 0 mm/h), downscale the held-out times to zarr, verify against the observations
(NaN skipped) and against bilinear interpolation.

Usage::

    python examples/real_data.py [--out DIR] [--n-times 384] [--members 8]

Measured on a shared 2-core CPU machine with the defaults: see docs/user-guide/real-data.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.data.regrid import regrid
from xcorrdiff.data.units import convert_units
from xcorrdiff.train.config import TrainConfig

ERA5 = {"u10m": "u10", "v10m": "v10", "t2m": "t2m", "tcwv": "tcwv"}
OUTPUTS = ["t2m", "u10m", "precip"]


def write_files(folder: Path, n_times: int) -> tuple[Path, Path]:
    """The stand-ins for the user's files, in the sources' own layouts."""
    lr, hr = xcorrdiff.tutorial.make_synthetic(n_times=n_times, hr_shape=(64, 64), factor=8)
    era5 = lr[list(ERA5)].rename(ERA5).rename(time="valid_time", lat="latitude", lon="longitude")
    era5 = era5.assign_coords(longitude=np.mod(era5.longitude.values, 360.0))
    packing = {
        str(v): {"dtype": "int16", "scale_factor": float(era5[v].std()) / 3000,
                 "add_offset": float(era5[v].mean()), "_FillValue": np.int16(-32767)}
        for v in era5.data_vars
    }  # fmt: skip
    era5.to_netcdf(folder / "era5.nc", encoding=packing)
    land = hr.land_sea_mask > 0.5
    obs = hr[OUTPUTS].assign({v: hr[v].where(land) for v in OUTPUTS})
    obs["precip"] = (obs.precip / 3600.0).assign_attrs(
        units="kg m-2 s-1", long_name="precipitation"
    )
    obs = obs.drop_vars(["orography", "land_sea_mask"]).assign(orography=hr.orography)
    obs.to_netcdf(folder / "obs.nc")
    return folder / "era5.nc", folder / "obs.nc"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--n-times", type=int, default=384)
    parser.add_argument("--members", type=int, default=8)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    folder = args.out or Path(tempfile.mkdtemp(prefix="xcorrdiff-real-"))
    folder.mkdir(parents=True, exist_ok=True)
    era5_path, obs_path = folder / "era5.nc", folder / "obs.nc"
    if not era5_path.is_file():
        write_files(folder, args.n_times)

    # --- the user's part -------------------------------------------------------------------
    lr = xr.open_dataset(era5_path, chunks={})  # valid_time, latitude, packed: taken as is
    obs = xr.open_dataset(obs_path, chunks={})  # NaN over the sea
    split = int(0.8 * lr.sizes["valid_time"])
    config = TrainConfig(
        preset="tiny", batch_size=8, patch_shape=(32, 32), learning_rate=5e-3, lr_rampup=0,
        lr_decay=1.0, ema_halflife=200, regression_duration=3072, diffusion_duration=1024,
        validation_every=10**6, output_transforms={"precip": "fourth_root"},
        output_bounds={"precip": ("0 mm h-1", None)},
    )  # fmt: skip
    start = time.perf_counter()
    if not (folder / "model").is_dir():  # a rerun with the same --out reuses the model
        model = lr.isel(valid_time=slice(None, split)).corrdiff.fit(
            obs.isel(time=slice(None, split)), config=config, progress=False
        )
        model.save(folder / "model")
    fit_s = time.perf_counter() - start
    test_lr, truth = lr.isel(valid_time=slice(split, None)), obs.isel(time=slice(split, None))
    start = time.perf_counter()
    xcorrdiff.downscale_to_zarr(
        test_lr.chunk(valid_time=8), folder / "ensemble.zarr", model=folder / "model",
        n_ensemble=args.members, seed=0, return_mean=True, overwrite=True,
    )  # fmt: skip
    downscale_s = time.perf_counter() - start
    ens = xr.open_zarr(folder / "ensemble.zarr", consolidated=False)
    in_mm_h = {"precip": "mm h-1"}  # verified in mm/h: easier to read than kg m-2 s-1
    scores = convert_units(ens[OUTPUTS], in_mm_h, water_equivalent=True).corrdiff.verify(
        convert_units(truth[OUTPUTS].load(), in_mm_h, water_equivalent=True)
    )

    # --- the report -----------------------------------------------------------------------
    land = truth.t2m.notnull().any("time")
    bilinear = regrid(test_lr.rename(valid_time="time")[["t2m", "u10"]], truth)
    print(f"files: {folder}; fit {fit_s:.0f} s, downscale {downscale_s:.0f} s "
          f"({ens.sizes['time']} times x {args.members} members)")  # fmt: skip
    table = scores.reset_coords(drop=True).to_dataframe().T
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    for name, lr_name in (("t2m", "t2m"), ("u10m", "u10")):
        mae_mean = float(np.abs(ens[f"{name}_mean"] - truth[name]).where(land).mean())
        mae_bilinear = float(np.abs(bilinear[lr_name] - truth[name]).where(land).mean())
        print(
            f"{name}: regression-mean MAE over land {mae_mean:.3f} vs bilinear {mae_bilinear:.3f}"
        )
    on_land = int(sum(int((ens[v].isnull() & land).sum()) for v in OUTPUTS))
    off_sea = int(sum(int((ens[v].notnull() & ~land).sum()) for v in OUTPUTS))
    print(f"NaN on land: {on_land}; values over the sea: {off_sea}; "
          f"lowest precipitation {float(ens.precip.min()):.3g} kg m-2 s-1")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

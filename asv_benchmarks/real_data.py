"""The real-data case of the skill benchmarks: NWS daily maximum temperature over the southern
Appalachians, built from Debian's packages (nothing derived is committed).

Sources, both public and reachable here through Debian's archive (``apt-get download``):

* ``python-grib-doc`` — ``examples/ds.maxt.bin``: the NWS National Digital Forecast Database
  (NDFD) CONUS grid of daily maximum temperature, 5 km Lambert conformal, 689 × 1073, four
  days (valid 2011-09-30 to 2011-10-03, one forecast issued 2011-09-29 22 UTC). NWS data are
  public domain.
* ``r-cran-fields`` — ``data/PRISMelevation.rda``: PRISM elevation of the continental US on a
  1/24° grid (the package is GPL-2+, so only this script, not a derived file, is committed).

:func:`build` extracts a 128 × 128 window (650 km) centred at (36.0° N, 84.2° W), next to
the Great Smoky Mountains — inland, so no sea point — and PRISM elevation interpolated bilinearly to
its points, and writes ``ndfd_appalachians.nc`` (``tmax(time, y, x)`` in K, ``orography``, 2-D
``lat``/``lon``). Each source file is checked against its SHA-256 before it is used.
Reading GRIB and RData needs ``pip install pygrib rdata`` (only here; the benchmarks read the
netCDF file).

The *small case* is committed: :func:`write_small` cuts the central 64 × 64 window of the
temperature alone (no terrain, so nothing of the GPL package) into
``tests/fixtures/ndfd_tmax_small.nc``, which the guard test of training
(``tests/test_real_skill.py``) and ``real_skill.py --case small`` read from a clean clone.

Usage::

    python asv_benchmarks/real_data.py [--out asv_benchmarks/data] [--small]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

#: The files used, inside their packages, and their SHA-256.
SOURCES = {
    "python-grib-doc": (
        "usr/share/doc/python-grib-doc/examples/ds.maxt.bin",
        "2b152564c64437d3775e44dfdb447ba09332bad9c1b2280bc9942a1c94f205f3",
    ),
    "r-cran-fields": (
        "usr/lib/R/site-library/fields/data/PRISMelevation.rda",
        "8b9b25424cffd01c09dfd4efcfbdbdb47d3f1f2d5f06e2f2836da9abc46f5d4c",
    ),
}
CENTER = (36.0, -84.2)
SIDE = 128
DEFAULT_OUT = Path(__file__).resolve().parent / "data"
FILE = "ndfd_appalachians.nc"
SMALL = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ndfd_tmax_small.nc"
SMALL_SIDE = 64


def _fetch(package: str, folder: Path) -> Path:
    """``package``'s file of :data:`SOURCES`, downloaded and unpacked, checksum verified."""
    inner, digest = SOURCES[package]
    subprocess.run(["apt-get", "download", package], cwd=folder, check=True, capture_output=True)
    (deb,) = folder.glob(f"{package}_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder / package)], check=True)
    path = folder / package / inner
    found = hashlib.sha256(path.read_bytes()).hexdigest()
    if found != digest:
        raise ValueError(f"{path.name} from {deb.name} has SHA-256 {found}; expected {digest}")
    return path


def _window(lat: np.ndarray, lon: np.ndarray) -> tuple[slice, slice]:
    """The :data:`SIDE`-square window of the NDFD grid centred on :data:`CENTER`."""
    distance = (lat - CENTER[0]) ** 2 + ((lon - CENTER[1]) * np.cos(np.deg2rad(CENTER[0]))) ** 2
    i, j = np.unravel_index(int(np.argmin(distance)), lat.shape)
    return slice(i - SIDE // 2, i + SIDE // 2), slice(j - SIDE // 2, j + SIDE // 2)


def _tmax(path: Path) -> xr.Dataset:
    import pygrib

    rows, cols = None, None
    fields, times = [], []
    for message in pygrib.open(str(path)):
        lat, lon = message.latlons()
        if rows is None:
            rows, cols = _window(lat, lon)
        values = np.ma.filled(message.values[rows, cols].astype(np.float32), np.nan)
        fields.append(values)
        times.append(np.datetime64(message.validDate.replace(hour=0), "ns"))
    assert rows is not None and cols is not None
    if np.isnan(np.stack(fields)).any():
        raise ValueError("the window holds missing (sea) points; move CENTER inland")
    return xr.Dataset(
        {
            "tmax": (
                ("time", "y", "x"),
                np.stack(fields),
                {"units": "K", "long_name": "daily maximum temperature (NDFD)"},
            )
        },
        coords={
            "time": times,
            "y": ("y", 5079.406 * np.arange(SIDE), {"units": "m"}),
            "x": ("x", 5079.406 * np.arange(SIDE), {"units": "m"}),
            "lat": (("y", "x"), lat[rows, cols], {"units": "degrees_north"}),
            "lon": (("y", "x"), lon[rows, cols], {"units": "degrees_east"}),
        },
    )


def _orography(path: Path, grid: xr.Dataset) -> xr.DataArray:
    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Unknown encoding. Assumed ASCII."
        prism = rdata.read_rda(str(path))["PRISMelevation"]
    elevation = xr.DataArray(
        np.asarray(prism["z"], dtype=np.float64),
        dims=("lon", "lat"),
        coords={"lon": np.asarray(prism["x"]), "lat": np.asarray(prism["y"])},
    )
    at = elevation.interp(lat=grid["lat"], lon=grid["lon"]).drop_vars(["lat", "lon"])
    if at.isnull().any():
        raise ValueError("PRISM elevation is missing at some window points")
    return at.astype(np.float32).assign_attrs(units="m", long_name="elevation (PRISM)")


def build(out: Path = DEFAULT_OUT) -> Path:
    """Write ``out/ndfd_appalachians.nc`` (see the module docstring); return its path."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ds = _tmax(_fetch("python-grib-doc", folder))
        ds["orography"] = _orography(_fetch("r-cran-fields", folder), ds)
    ds.attrs = {
        "title": "NWS NDFD daily maximum temperature, southern Appalachians window",
        "source": "python-grib-doc examples/ds.maxt.bin; r-cran-fields PRISMelevation",
        "built_by": "asv_benchmarks/real_data.py",
    }
    target = out / FILE
    partial = target.with_suffix(".partial.nc")
    ds.to_netcdf(partial)
    partial.replace(target)
    return target


def load(out: Path = DEFAULT_OUT) -> xr.Dataset:
    """The case as a Dataset, built first when missing (which needs pygrib and rdata)."""
    path = out / FILE
    if not path.is_file():
        try:
            build(out)
        except ImportError as exc:
            raise ImportError(
                f"{path} is missing and building it needs pygrib and rdata ({exc}); run "
                "`pip install pygrib rdata && python asv_benchmarks/real_data.py` once, in "
                "this environment or any other"
            ) from exc
    return xr.open_dataset(path).load()


def write_small(ds: xr.Dataset, path: Path = SMALL) -> Path:
    """Write the small case: the central :data:`SMALL_SIDE`-square window of ``tmax`` with
    its grid (NWS data, public domain), compressed."""
    start = (SIDE - SMALL_SIDE) // 2
    window = {"y": slice(start, start + SMALL_SIDE), "x": slice(start, start + SMALL_SIDE)}
    small = ds[["tmax"]].isel(window)
    small = small.assign_coords(y=small.y - small.y[0], x=small.x - small.x[0])
    small.attrs = {
        "title": "NWS NDFD daily maximum temperature, 64 x 64 at 5 km, southern Appalachians",
        "source": "python-grib-doc examples/ds.maxt.bin (NWS NDFD, public domain)",
        "built_by": "asv_benchmarks/real_data.py --small",
    }
    encoding = {"tmax": {"zlib": True, "complevel": 9}}
    partial = path.with_suffix(".partial.nc")
    small.to_netcdf(partial, encoding=encoding)
    partial.replace(path)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--small", action="store_true", help="also write the small case")
    args = parser.parse_args()
    print(built := build(args.out))
    if args.small:
        print(write_small(xr.open_dataset(built).load()))

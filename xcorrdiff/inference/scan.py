"""One pass over the input before anything is written: finite, believable, and fingerprinted.

:func:`scan_input` reads the model's input variables (in the model's units) one time chunk
at a time, as one dask computation, and returns per chunk the count of NaN/inf values, the
smallest and largest value of each variable and a SHA-256 fingerprint of the values. The
counts and ranges are checked (:func:`check_scans`) before a store is created; the
fingerprints are recorded beside each finished chunk so that a resumed run can tell whether
its input is still the one the chunk was computed from.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from xcorrdiff.data.plausibility import ExpectedRange
from xcorrdiff.inference.settings import FILL_HINT

__all__ = ["ChunkScan", "check_scans", "grid_digest", "scan_input"]


@dataclass(frozen=True)
class ChunkScan:
    """What one time chunk of the input holds.

    Attributes
    ----------
    digest : str
        ``"sha256:<hex>"`` of the chunk's values (name, dtype, shape and bytes per variable).
    nonfinite : dict of str to int
        NaN/inf count per variable.
    low, high : dict of str to float
        Smallest and largest finite value per variable (NaN when none is finite).
    """

    digest: str
    nonfinite: dict[str, int]
    low: dict[str, float]
    high: dict[str, float]


def _scan_block(names: Sequence[str], *blocks: np.ndarray) -> ChunkScan:
    digest = hashlib.sha256()
    nonfinite, low, high = {}, {}, {}
    for name, block in zip(names, blocks, strict=True):
        values = np.ascontiguousarray(block)
        digest.update(f"{name}:{values.dtype}:{values.shape}".encode())
        digest.update(values.tobytes())
        finite = np.isfinite(values)
        nonfinite[name] = int(values.size - np.count_nonzero(finite))
        kept = values[finite]
        low[name] = float(kept.min()) if kept.size else float("nan")
        high[name] = float(kept.max()) if kept.size else float("nan")
    return ChunkScan("sha256:" + digest.hexdigest(), nonfinite, low, high)


def scan_input(ds: xr.Dataset, bounds: Sequence[tuple[int, int]]) -> list[ChunkScan]:
    """Scan each ``[start, stop)`` time chunk of ``ds``'s variables (one dask computation).

    Parameters
    ----------
    ds : xarray.Dataset
        The inputs, in the model's units, with a ``time`` dimension first.
    bounds : sequence of (int, int)
        The time chunks.
    """
    names = [str(n) for n in ds.data_vars]
    tasks = []
    scan = dask.delayed(_scan_block, pure=True)
    for start, stop in bounds:
        part = ds.isel(time=slice(start, stop))
        blocks = [dask.delayed(np.asarray)(part[n].data) for n in names]
        tasks.append(scan(names, *blocks))
    return list(dask.compute(*tasks))


def grid_digest(ds: xr.Dataset) -> str:
    """``"sha256:<hex>"`` of the coordinates other than time (the input grid)."""
    digest = hashlib.sha256()
    for name in sorted(map(str, ds.coords)):
        if "time" in ds[name].dims or name == "time":
            continue
        values = np.ascontiguousarray(ds[name].values)
        digest.update(f"{name}:{values.dtype}:{values.shape}".encode())
        digest.update(values.tobytes() if values.dtype.kind != "O" else repr(values).encode())
    return "sha256:" + digest.hexdigest()


def check_scans(
    scans: Sequence[ChunkScan],
    bounds: Sequence[tuple[int, int]],
    times: np.ndarray,
    ranges: Sequence[ExpectedRange] | None,
) -> None:
    """Refuse NaN/inf anywhere, and (with ``ranges``) values the model cannot believe.

    Raises
    ------
    ValueError
        Naming the variables and counts (NaN/inf, with the first time affected), or the
        variable, its range and the expected one (see :mod:`xcorrdiff.data.plausibility`).
    """
    bad: dict[str, int] = {}
    first: dict[str, str] = {}
    for scan, (start, _) in zip(scans, bounds, strict=True):
        for name, count in scan.nonfinite.items():
            if count:
                bad[name] = bad.get(name, 0) + count
                first.setdefault(name, str(times[start]))
    if bad:
        where = ", ".join(f"{n!r} from time chunk starting {t}" for n, t in first.items())
        raise ValueError(f"lr has NaN/inf values in {bad} (variable: count; {where}); {FILL_HINT}")
    if ranges is None:
        return
    for expected in ranges:
        lows = [s.low[expected.name] for s in scans]
        highs = [s.high[expected.name] for s in scans]
        expected.check(float(np.nanmin(lows)), float(np.nanmax(highs)))

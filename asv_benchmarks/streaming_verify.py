"""Streaming verification of a decade of daily output: memory, time per year, equality.

Writes a synthetic zarr store of ``--years`` (default 10) years of daily output on a
``--size`` × ``--size`` grid (default 128) with ``--members`` members (default 16) and its
truth, float32, chunked by ``--chunk`` days (default 32) — about 4 GB for the defaults —
then, each in a fresh process:

* ``xcorrdiff.verify.accumulate`` over the first 2, 5 and 10 years (``--runs``): seconds
  and the process's peak resident memory (``ru_maxrss``), and seconds per year (linear
  time: the same for every length);
* on the first year, loaded whole, the one-shot scores (``verify``, ``rank_histogram``,
  ``perkins`` and ``std_ratio`` pooled, ``ralsd``, ``band_power_ratio``) against
  ``scores_from_sums`` of the same year: the largest relative difference.

The fields: a red-noise field per day (cumulated Gaussian noise, smooth as weather) with
a seasonal cycle, and the truth and each member that field plus independent unit Gaussian
noise, so the ensemble is calibrated (spread/skill near 1); the data matter little to the
cost. The store is kept in ``--store``
(default: a temporary folder, removed at the end).

Usage::

    python asv_benchmarks/streaming_verify.py [--years 10] [--runs 2 5 10] [--members 16]
        [--size 128] [--chunk 32] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DAYS_PER_YEAR = 365


def _block(seed: int, days: int, size: int, members: int, start: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng([seed, start])
    noise = rng.standard_normal((days, size, size), dtype=np.float32)
    field = np.cumsum(np.cumsum(noise, -1), -2) / size
    season = 10 * np.sin(2 * np.pi * (start + np.arange(days)) / DAYS_PER_YEAR)
    centre = 280 + season[:, None, None] + field
    truth = centre + rng.standard_normal((days, size, size), dtype=np.float32)
    spread = rng.standard_normal((members, days, size, size), dtype=np.float32)
    return truth.astype(np.float32), (centre + spread).astype(np.float32)


def write_store(path: Path, years: int, size: int, members: int, chunk: int) -> None:
    """The store, written one chunk of days at a time (constant memory)."""
    import xarray as xr

    days = years * DAYS_PER_YEAR
    coords = {
        "time": xr.date_range("2001-01-01", periods=days, freq="D", calendar="noleap",
                              use_cftime=True),
        "y": ("y", np.arange(size) * 2000.0, {"units": "m"}),
        "x": ("x", np.arange(size) * 2000.0, {"units": "m"}),
    }  # fmt: skip
    for start in range(0, days, chunk):
        n = min(chunk, days - start)
        truth, ens = _block(0, n, size, members, start)
        block = xr.Dataset(
            {"t2m": (("member", "time", "y", "x"), ens), "t2m_truth": (("time", "y", "x"), truth)},
            coords={**coords, "time": coords["time"][start : start + n]},
        ).chunk(member=-1, time=chunk, y=-1, x=-1)
        if start == 0:
            block.to_zarr(path, mode="w", consolidated=False)
        else:
            block.to_zarr(path, append_dim="time", consolidated=False)


def _open(path: Path, years: int):  # type: ignore[no-untyped-def]
    import xarray as xr

    store = xr.open_zarr(path, consolidated=False).isel(time=slice(0, years * DAYS_PER_YEAR))
    return store[["t2m"]], store[["t2m_truth"]].rename(t2m_truth="t2m")


def child_accumulate(path: Path, years: int) -> dict[str, float]:
    from xcorrdiff.verify import accumulate, scores_from_sums

    forecast, obs = _open(path, years)
    edges = {"t2m": np.linspace(250, 310, 61)}
    start = time.perf_counter()
    scores = scores_from_sums(accumulate(forecast, obs, edges=edges))
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB
    return {"years": years, "seconds": seconds, "peak_mib": peak,
            "crps": float(scores["crps"][0]), "spread_skill": float(scores["spread_skill"][0])}  # fmt: skip


def child_check(path: Path) -> dict[str, float]:
    """The largest relative difference of the streamed and one-shot scores on one year."""
    import xcorrdiff.verify as xv

    forecast, obs = _open(path, 1)
    forecast, obs = forecast.load(), obs.load()
    edges = np.linspace(250, 310, 61)
    streamed = xv.scores_from_sums(xv.accumulate(forecast, obs, edges={"t2m": edges}))
    table = xv.verify(forecast, obs)
    pairs = [(streamed[k], table[k]) for k in ("crps", "crps_fair", "mae", "rmse", "spread",
                                               "spread_skill")]  # fmt: skip
    f, o = forecast["t2m"], obs["t2m"]
    pairs += [
        (streamed["rank_histogram"][0], xv.rank_histogram(f, o)),
        (streamed["perkins"][0], xv.perkins(f, o, bins=edges, dim=None)),
        (streamed["std_ratio"][0], xv.std_ratio(f, o, dim=None)),
        (streamed["ralsd"][0], xv.ralsd(f, o)),
        (streamed["band_power_ratio"][0], xv.band_power_ratio(f, o)),
    ]
    worst = max(
        float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float)) / np.abs(np.asarray(b, float))))
        for a, b in pairs
    )  # fmt: skip
    return {"scores_compared": len(pairs), "max_relative_difference": worst}


def _child(args: list[str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--runs", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--child", choices=("accumulate", "check"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "accumulate":
        print(json.dumps(child_accumulate(args.store, args.years)))
        return
    if args.child == "check":
        print(json.dumps(child_check(args.store)))
        return
    keep = args.store is not None
    store = args.store or Path(tempfile.mkdtemp(prefix="xcorrdiff-stream-")) / "decade.zarr"
    try:
        if not store.exists():
            start = time.perf_counter()
            write_store(store, args.years, args.size, args.members, args.chunk)
            print(f"store written in {time.perf_counter() - start:.0f} s")
        size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**30
        print(f"{store}: {args.years} years, {args.members} members, {args.size}², "
              f"{size:.2f} GiB on disk, {args.chunk}-day chunks")  # fmt: skip
        print(f"{'years':>5} {'seconds':>8} {'s/year':>7} {'peak MiB':>9} {'CRPS':>7} {'SSR':>6}")
        for years in args.runs:
            r = _child(["--child", "accumulate", "--store", str(store), "--years", str(years)])
            print(f"{years:5d} {r['seconds']:8.1f} {r['seconds'] / years:7.1f} "
                  f"{r['peak_mib']:9.0f} {r['crps']:7.4f} {r['spread_skill']:6.3f}")  # fmt: skip
        check = _child(["--child", "check", "--store", str(store)])
        print(f"first year, streamed vs one-shot: {check['scores_compared']} scores, largest "
              f"relative difference {check['max_relative_difference']:.1e}")  # fmt: skip
    finally:
        if not keep:
            shutil.rmtree(store.parent, ignore_errors=True)


if __name__ == "__main__":
    main()

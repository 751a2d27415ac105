"""Side-by-side CRPS timing and peak memory: xcorrdiff.verify.crps vs scores.

Run from the repository root::

    .venv/bin/python asv_benchmarks/compare_crps.py [--points 200000] [--members 32] [--repeat 7]

Prints the best-of-``repeat`` wall time of each implementation on the same float64
ensemble (numpy-backed, per-point scores, no averaging), the speed-up, and the peak
memory each allocates (tracemalloc) relative to the size of the input ensemble.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import xarray as xr

import xcorrdiff.verify as xv


def _best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _peak_bytes(fn: Callable[[], object]) -> int:
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    result = fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--layout",
        choices=["member-last", "member-first"],
        default="member-last",
        help="memory layout of the ensemble (CorrDiff output is member-first)",
    )
    args = parser.parse_args()

    try:
        from scores.probability import crps_for_ensemble
    except ImportError as exc:  # pragma: no cover
        raise SystemExit("this comparison needs scores: pip install scores") from exc

    rng = np.random.default_rng(0)
    if args.layout == "member-last":
        values = rng.normal(size=(args.points, args.members))
        forecast = xr.DataArray(values, dims=("point", "member"))
    else:
        values = rng.normal(size=(args.members, args.points))
        forecast = xr.DataArray(values, dims=("member", "point"))
    obs = xr.DataArray(rng.normal(size=args.points), dims="point")
    input_bytes = forecast.nbytes

    candidates: dict[str, Callable[[], object]] = {
        "xcorrdiff.verify.crps": lambda: xv.crps(forecast, obs, dim=[]),
        "scores crps_for_ensemble": lambda: crps_for_ensemble(
            forecast, obs, "member", method="ecdf", preserve_dims="all"
        ),
        "xcorrdiff (fair)": lambda: xv.crps(forecast, obs, dim=[], fair=True),
        "scores (fair)": lambda: crps_for_ensemble(
            forecast, obs, "member", method="fair", preserve_dims="all"
        ),
    }
    ours = candidates["xcorrdiff.verify.crps"]()
    theirs = candidates["scores crps_for_ensemble"]()
    max_diff = float(np.nanmax(np.abs(np.asarray(ours) - np.asarray(theirs))))

    print(
        f"CRPS of {args.points:,} points x {args.members} members float64 ({args.layout}), "
        f"input {input_bytes / 2**20:.1f} MiB; best of {args.repeat}"
    )
    print(f"{'implementation':<28}{'time [s]':>10}{'peak [MiB]':>12}{'peak/input':>12}")
    timings = {}
    for name, fn in candidates.items():
        timings[name] = _best_time(fn, args.repeat)
        peak = _peak_bytes(fn)
        print(f"{name:<28}{timings[name]:>10.4f}{peak / 2**20:>12.1f}{peak / input_bytes:>12.2f}")
    speedup = timings["scores crps_for_ensemble"] / timings["xcorrdiff.verify.crps"]
    speedup_fair = timings["scores (fair)"] / timings["xcorrdiff (fair)"]
    print(f"speed-up vs scores: ecdf {speedup:.1f}x, fair {speedup_fair:.1f}x")
    print(f"max |xcorrdiff - scores| = {max_diff:.2e}")


if __name__ == "__main__":
    main()

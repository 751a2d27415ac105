"""Downscale a multi-year synthetic "projection" on a dask LocalCluster, resumably.

Makes ``--n-times`` 6-hourly LR time steps of the known-truth synthetic atmosphere (2920
steps = 2 years), builds a small CorrDiff model with *random weights* on the right
variables and grid (training one is not the point here: the cost per time step depends on
the network's size, not its weights), saves it, and runs
:func:`xcorrdiff.inference.api.downscale_to_zarr` on a ``LocalCluster`` of ``--workers``
single-threaded worker processes. Prints the throughput (time steps per second, in all and
per worker) and each worker's peak resident memory.

Usage::

    python examples/downscale_projection.py [--n-times 2920] [--side 32] [--factor 8] \\
        [--channels 4] [--members 4] [--steps 4] [--time-chunk 16] [--workers 2] [--out DIR]

Measured with the defaults on a shared 2-core CPU machine (load average 4.6-6.3): 265 s,
11.0 time steps/s (5.5 per worker), 457 MiB peak resident memory per worker; see
docs/user-guide/distributed.md.

Kill it and run it again with the same ``--out``: the saved model is reused, finished
chunks are kept and only the others are computed.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from collections.abc import Hashable, Iterable
from pathlib import Path

import numpy as np
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig, SamplerConfig
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.prepare import VariableSpec, grid_of, static_fields
from xcorrdiff.inference.api import downscale_to_zarr
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.train import build_diffusion, build_regression
from xcorrdiff.train.config import TrainConfig

INPUTS = ["t2m", "u10m", "v10m"]
OUTPUTS = ["t2m", "u10m", "v10m"]


def random_model(lr: xr.Dataset, hr: xr.Dataset, channels: int) -> CorrDiffModel:
    """A CorrDiff model with random weights on ``hr``'s grid, normalized with data stats."""
    shape = (hr.sizes["y"], hr.sizes["x"])
    cfg = TrainConfig(
        regression=NetworkConfig(
            model_channels=channels, channel_mult=(1, 2), num_blocks=1, embedding_type="zero"
        ),
        diffusion=NetworkConfig(model_channels=channels, channel_mult=(1, 2), num_blocks=1),
        patch_shape=shape,
    )
    invariants = static_fields(hr)
    n_in = len(INPUTS) + len(invariants.data_vars)
    torch.manual_seed(0)
    regression = build_regression(cfg, shape=shape, in_channels=n_in, out_channels=len(OUTPUTS))
    diffusion = build_diffusion(cfg, shape=shape, in_channels=n_in, out_channels=len(OUTPUTS))

    def stats(ds: xr.Dataset, names: Iterable[Hashable]) -> dict[Hashable, dict[str, float]]:
        return {n: {"mean": float(ds[n].mean()), "std": float(ds[n].std()) + 1e-3} for n in names}

    return CorrDiffModel(
        regression=regression.eval(),
        diffusion=diffusion.eval(),
        input_variables=[VariableSpec(name=n, units=lr[n].attrs["units"]) for n in INPUTS],
        output_variables=[VariableSpec(name=n, units=hr[n].attrs["units"]) for n in OUTPUTS],
        grid=grid_of(hr[OUTPUTS]),
        invariants=invariants,
        input_normalizer=Normalizer.from_stats(
            {**stats(lr, INPUTS), **stats(invariants, invariants.data_vars)}
        ),
        output_normalizer=Normalizer.from_stats(stats(hr, OUTPUTS)),
        sampler=SamplerConfig(num_steps=4),
    )


def _peak_rss_mib() -> float:
    """Peak resident memory of this process since it started (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-times", type=int, default=2920, help="6-hourly LR time steps")
    parser.add_argument("--side", type=int, default=32, help="HR grid side (pixels)")
    parser.add_argument("--factor", type=float, default=8, help="HR/LR resolution ratio")
    parser.add_argument("--channels", type=int, default=4, help="UNet model_channels")
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--steps", type=int, default=4, help="Euler steps")
    parser.add_argument("--time-chunk", type=int, default=16, help="time steps per task")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (1 thread)")
    parser.add_argument("--out", type=Path, default=None, help="folder for model and store")
    args = parser.parse_args()

    from dask.distributed import Client, LocalCluster

    root = args.out or Path(tempfile.mkdtemp(prefix="xcorrdiff-projection-"))
    root.mkdir(parents=True, exist_ok=True)
    lr, hr = xcorrdiff.tutorial.make_synthetic(
        n_times=args.n_times, hr_shape=(args.side, args.side), factor=args.factor, seed=0
    )
    lr = lr[INPUTS]
    model_dir = root / "model"
    if not (model_dir / "config.json").is_file():  # a rerun resumes with the same model
        random_model(lr, hr.isel(time=slice(64)), args.channels).save(model_dir)
    del hr
    years = args.n_times / (4 * 365.25)
    print(
        f"LR {dict(lr.sizes)} ({years:.1f} years, 6-hourly) -> HR {args.side}x{args.side}, "
        f"{args.members} members, {args.steps} Euler steps, {args.time_chunk} times/task, "
        f"model {root / 'model'} (random weights)"
    )

    with (
        LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True,
            dashboard_address=":0", env={"OMP_NUM_THREADS": "1"},
        ) as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        start = time.perf_counter()
        run = downscale_to_zarr(
            lr, root / "projection.zarr", model_dir, args.members, num_steps=args.steps,
            time_chunk=args.time_chunk, device="cpu", seed=0,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        peaks = client.run(_peak_rss_mib)

    n_done = sum(min(args.time_chunk, args.n_times - i * args.time_chunk) for i in run.computed)
    ens = run.open()
    print(f"store {run.store}: {dict(ens.sizes)}, {len(run.computed)} chunks computed, "
          f"{len(run.skipped)} found done")  # fmt: skip
    if n_done:
        rate = n_done / elapsed
        print(
            f"wall {elapsed:.1f} s for {n_done} time steps: {rate:.2f} time steps/s, "
            f"{rate / args.workers:.2f} per worker, {rate * args.members:.1f} member-fields/s"
        )
    for address, peak in sorted(peaks.items()):
        print(f"worker {address}: peak resident memory {peak:.0f} MiB")
    finite = bool(np.isfinite(ens["t2m"].isel(time=slice(-4, None)).values).all())
    print(f"last times finite: {finite}")


if __name__ == "__main__":
    main()

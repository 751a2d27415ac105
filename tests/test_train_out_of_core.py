"""Out-of-core training: fit streams from a zarr store several times its memory budget.

A child process trains the regression on a 512 MiB zarr store (LR inputs regridded lazily,
normalization statistics in one dask pass, time blocks read one at a time) and reports how
far its resident memory rose above what it held before the run. A warm-up run on the first
times of the same store comes first, so that imports, allocator pools and oneDNN caches are
not counted; then the kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) and the
peak (``VmHWM``) is read after the full run. Loading the store (or any full-length array
derived from it) would raise the peak by at least the store's size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import dask.array as da
import pytest
import xarray as xr

from xcorrdiff.tutorial import make_synthetic

MIB = 2**20
BUDGET = 128 * MIB  # allowed rise of the peak RSS during training
SIDE = 64  # HR grid side
N_TIMES = 8192  # 4 outputs x 64 x 64 float32 = 64 KiB per time: a 512 MiB HR store
CHUNK = 64  # times per zarr chunk

_CHILD = """
import json, sys
import torch, xarray as xr
from xcorrdiff.config import NetworkConfig
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train import fit_regression

def status(field):
    with open("/proc/self/status") as f:
        line = next(l for l in f if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

torch.set_num_threads(1)
root = sys.argv[1]
lr, hr = xr.open_zarr(root + "/lr.zarr"), xr.open_zarr(root + "/hr.zarr")
net = NetworkConfig(
    model_channels=4, channel_mult=(1, 2), embedding_type="zero", bottleneck_attention=False
)

def run(lr, hr, samples, name):
    config = TrainConfig(
        regression=net, batch_size=2, regression_duration=samples, validation_fraction=0.001,
        validation_every=10**9, checkpoint_every=10**9, checkpoint_dir=root + '/' + name,
        device="cpu",
    )
    fit_regression(lr, hr, config=config, invariants=[], progress=False)

run(lr.isel(time=slice(0, {chunk})), hr.isel(time=slice(0, {chunk})), 8, "warm-up")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
base = status("VmRSS")
run(lr, hr, 64, "run")
print(json.dumps({{"base": base, "peak": status("VmHWM")}}))
"""


def _store(template: xr.Dataset, names: list[str], n_times: int, seed: int) -> xr.Dataset:
    """``template``'s grid and attributes with ``n_times`` random (lazy) time steps."""
    rs = da.random.RandomState(seed)
    first = template[names[0]]
    shape = (n_times, *first.shape[1:])
    data = {
        name: (
            first.dims,
            (rs.standard_normal(shape, chunks=(CHUNK, *shape[1:])) + i).astype("float32"),
            template[name].attrs,
        )
        for i, name in enumerate(names)
    }
    coords = {k: v for k, v in template.coords.items() if "time" not in v.dims}
    times = xr.date_range("2000-01-01", periods=n_times, freq="h")
    return xr.Dataset(data, coords=coords).assign_coords(time=times)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self (Linux)")
def test_training_streams_a_store_larger_than_its_memory_budget(tmp_path: Path) -> None:
    lr0, hr0 = make_synthetic(n_times=2, hr_shape=(SIDE, SIDE), factor=8)
    hr = _store(hr0, ["t2m", "u10m", "v10m", "precip"], N_TIMES, seed=0)
    lr = _store(lr0, ["t2m", "u10m", "v10m", "tcwv"], N_TIMES, seed=1)
    with dask.config.set(scheduler="threads"):
        hr.to_zarr(tmp_path / "hr.zarr", mode="w")
        lr.to_zarr(tmp_path / "lr.zarr", mode="w")
    assert hr.nbytes >= 4 * BUDGET

    child = textwrap.dedent(_CHILD.format(chunk=CHUNK))
    done = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    memory = json.loads(done.stdout.strip().splitlines()[-1])
    rise = memory["peak"] - memory["base"]
    assert rise <= BUDGET, (
        f"training on a {hr.nbytes / MIB:.0f} MiB store raised the peak RSS by "
        f"{rise / MIB:.0f} MiB (budget {BUDGET / MIB:.0f} MiB)"
    )

"""Shared test helpers: dask compute counting, thread pinning, the toy model and data."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two xdist workers on two cores: keep each torch process to one thread (set before
    # torch is imported, and inherited by the processes tests start).
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import dask
import pytest
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig, SamplerConfig
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.prepare import VariableSpec, grid_of, static_fields
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.train import build_diffusion, build_regression
from xcorrdiff.train.config import TrainConfig

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


class _CountingScheduler:
    """A dask scheduler that counts compute calls and fails past ``max_computes``."""

    def __init__(self, max_computes: int = 0) -> None:
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):  # type: ignore[no-untyped-def]
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations were triggered: {self.total_computes} "
                f"(allowed {self.max_computes})"
            )
        return dask.get(dsk, keys, **kwargs)


@contextlib.contextmanager
def raise_if_dask_computes(max_computes: int = 0) -> Iterator[_CountingScheduler]:
    """Fail the test if code inside the block computes a dask graph (as cf-xarray does)."""
    scheduler = _CountingScheduler(max_computes)
    with dask.config.set(scheduler=scheduler):
        yield scheduler


@contextlib.contextmanager
def two_worker_cluster() -> Iterator[object]:
    """A dask.distributed client on two worker processes of one thread each (one torch
    thread too), no dashboard; the caller skips when distributed is absent."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
            env={"OMP_NUM_THREADS": "1"},
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        yield client


@pytest.fixture
def no_dask_compute():  # type: ignore[no-untyped-def]
    return raise_if_dask_computes


def record_message(request: pytest.FixtureRequest, error: str, message: str) -> None:
    """Append a catalogue case's error to ``$XCORRDIFF_ERRORS_TABLE`` (JSON lines), if set.

    ``docs/make_errors.py`` renders docs/errors.md from these records, so the messages in
    the catalogue are the ones the tests saw.
    """
    path = os.environ.get("XCORRDIFF_ERRORS_TABLE")
    if not path:
        return
    import json

    record = {
        "id": request.node.callspec.id,
        "test": request.node.nodeid,
        "error": error,
        "message": message,
    }
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module's tests (bitwise comparisons with one-thread workers)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- the toy atmosphere and a random-weight model on it (shared by the downscaling tests) ---

HR_SHAPE = (32, 48)
INPUTS = ("t2m", "u10m", "tcwv")
OUTPUTS = ("t2m", "u10m")


@functools.lru_cache(maxsize=1)
def _synthetic() -> tuple[xr.Dataset, xr.Dataset]:
    return xcorrdiff.tutorial.make_synthetic(n_times=6, hr_shape=HR_SHAPE, factor=4, seed=3)


def tiny_data(n_times: int = 6) -> tuple[xr.Dataset, xr.Dataset]:
    """LR inputs ``(time, lat, lon)`` and HR truth ``(time, y, x)`` of the toy atmosphere."""
    lr, hr = _synthetic()
    return lr[list(INPUTS)].isel(time=slice(n_times)), hr.isel(time=slice(n_times))


def _perturb(net: torch.nn.Module, seed: int, scale: float = 0.05) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net.eval()


@functools.lru_cache(maxsize=4)
def tiny_model(
    global_lowres: bool = True,
    hr_mean: bool = True,
    residual_scale: tuple[float, float] | None = None,
) -> CorrDiffModel:
    """A random-weight CorrDiff model on the toy atmosphere's 32×48 HR grid."""
    lr, hr = _synthetic()
    net = {"model_channels": 4, "channel_mult": (1, 2), "num_blocks": 1}
    cfg = TrainConfig(
        regression=NetworkConfig(**net, embedding_type="zero"),
        diffusion=NetworkConfig(**net),
        patch_shape=(16, 16),
        hr_mean_conditioning=hr_mean,
    )
    invariants = static_fields(hr)
    n_in = len(INPUTS) + len(invariants.data_vars)
    torch.manual_seed(0)
    regression = build_regression(cfg, shape=HR_SHAPE, in_channels=n_in, out_channels=2)
    diffusion = build_diffusion(cfg, shape=HR_SHAPE, in_channels=n_in, out_channels=2)
    if not global_lowres:  # a network whose condition lacks the whole-domain channels
        kwargs = dict(diffusion.config)
        kwargs["img_in_channels"] -= n_in
        diffusion = type(diffusion)(**kwargs)

    def stats(ds: xr.Dataset, names: list[str]) -> dict[str, dict[str, float]]:
        return {n: {"mean": float(ds[n].mean()), "std": float(ds[n].std()) + 1e-3} for n in names}

    return CorrDiffModel(
        regression=_perturb(regression, 1),
        diffusion=_perturb(diffusion, 2),
        input_variables=[VariableSpec(name=n, units=lr[n].attrs["units"]) for n in INPUTS],
        output_variables=[
            VariableSpec(name=n, units=hr[n].attrs["units"], long_name=hr[n].attrs["long_name"])
            for n in OUTPUTS
        ],
        grid=grid_of(hr[list(OUTPUTS)]),
        invariants=invariants,
        input_normalizer=Normalizer.from_stats(
            {**stats(lr, list(INPUTS)), **stats(invariants, list(invariants.data_vars))}
        ),
        output_normalizer=Normalizer.from_stats(stats(hr, list(OUTPUTS))),
        sampler=SamplerConfig(num_steps=4),
        conditioning={"hr_mean": hr_mean, "global_lowres": global_lowres},
        residual_scale=dict(zip(OUTPUTS, residual_scale, strict=True)) if residual_scale else None,
    )

"""Fault runs: a process killed (SIGKILL) during training or during a zarr write resumes to
results bitwise equal to an uninterrupted run, with no orphan files and no duplicate log rows.

The victims run in subprocesses with one torch thread (as the parent), killed at a moment
the parent picks by watching their output on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import tiny_data, tiny_model

from xcorrdiff.cli import main
from xcorrdiff.config import NetworkConfig
from xcorrdiff.train import fit_regression
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic

pytestmark = [
    pytest.mark.numerics,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"),
]


def _kill_when(command: list[str], ready: Callable[[], bool], timeout: float = 120.0) -> None:
    """Start ``command``, SIGKILL it as soon as ``ready()``; it must not finish first."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None:
                raise AssertionError(f"finished before the kill: {process.stderr.read()[-2000:]!r}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise AssertionError("the victim never reached the kill point")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL


# --- training ------------------------------------------------------------------------------

TRAIN = """
import sys, torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_fault_runs import train
train({directory!r})
"""
SAMPLES = 200


def _config(directory: str) -> TrainConfig:
    net = {"model_channels": 8, "channel_mult": (1, 2), "num_blocks": 1, "dropout": 0.1}
    return TrainConfig(
        regression=NetworkConfig(**net, embedding_type="zero"),  # type: ignore[arg-type]
        diffusion=NetworkConfig(**net),  # type: ignore[arg-type]
        batch_size=2, patch_shape=(8, 8), learning_rate=1e-3, lr_rampup=8, ema_halflife=8,
        regression_duration=SAMPLES, validation_fraction=0.25, validation_every=60,
        checkpoint_every=40, checkpoint_dir=directory, seed=7,
    )  # fmt: skip


def train(directory: str) -> Any:
    lr, hr = make_synthetic(n_times=16, hr_shape=(16, 16), factor=4, seed=3)
    return fit_regression(lr, hr, config=_config(directory), output_variables=["t2m", "u10m"],
                          progress=False)  # fmt: skip


def _log(directory: Path) -> list[dict[str, Any]]:
    path = directory / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_sigkill_during_training_resumes_bitwise_without_duplicates(tmp_path: Path) -> None:
    straight = train(str(tmp_path / "straight"))
    victim = tmp_path / "victim"

    def past_a_checkpoint() -> bool:  # killed between checkpoints, rows past the last one logged
        rows = [r for r in _log(victim) if r["event"] == "step"]
        return len(rows) > 0 and rows[-1]["samples"] > 40 and rows[-1]["samples"] % 40 != 0

    script = TRAIN.format(tests=str(Path(__file__).parent), directory=str(victim))
    _kill_when([sys.executable, "-c", script], past_a_checkpoint)
    resumed = train(str(victim))
    for key, value in straight.regression.state_dict().items():
        assert torch.equal(value, resumed.regression.state_dict()[key]), key
    rows = [(r["event"], r["samples"]) for r in _log(victim)]
    assert len(rows) == len(set(rows))
    assert rows == [(r["event"], r["samples"]) for r in _log(tmp_path / "straight")]
    assert sorted(p.name for p in victim.iterdir()) == [
        "log.jsonl",
        "regression-checkpoint.safetensors",
    ]


# --- zarr writing --------------------------------------------------------------------------


def _downscale_args(lr_path: Path, model: Path, out: Path) -> list[str]:
    return ["downscale", str(lr_path), "--model", str(model), "--members", "3", "--steps", "12",
            "--seed", "2", "--device", "cpu", "--time-chunk", "1", "--quiet", "--out", str(out)]  # fmt: skip


def test_sigkill_during_a_zarr_write_resumes_bitwise(tmp_path: Path) -> None:
    lr, _ = tiny_data(6)
    lr.to_netcdf(tmp_path / "lr.nc")
    model = tiny_model().save(tmp_path / "model")
    assert main(_downscale_args(tmp_path / "lr.nc", model, tmp_path / "straight.zarr")) == 0
    out = tmp_path / "victim.zarr"
    done = out / ".xcorrdiff" / "done"

    def two_chunks_done() -> bool:
        return done.is_dir() and len([p for p in done.iterdir() if p.name.isdigit()]) >= 2

    code = f"import sys; from xcorrdiff.cli import main; sys.exit(main({_downscale_args(tmp_path / 'lr.nc', model, out)!r}))"
    _kill_when([sys.executable, "-c", code], two_chunks_done)
    status = xr.open_zarr(out, consolidated=False).attrs["xcorrdiff_status"]
    assert status.startswith("incomplete")
    assert main([*_downscale_args(tmp_path / "lr.nc", model, out), "--resume"]) == 0
    resumed = xr.open_zarr(out, consolidated=False)
    straight = xr.open_zarr(tmp_path / "straight.zarr", consolidated=False)
    for name in ("t2m", "u10m"):
        np.testing.assert_array_equal(resumed[name].values, straight[name].values)
    assert resumed.attrs == straight.attrs
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]

"""Data-parallel training: 2 CPU processes (gloo, torchrun) against one process.

The ranks of a run sharded over 2 processes must hold identical weights, equal to those of
one process trained on the same global batches (each step the concatenation of the ranks'
batches), and a checkpoint written by rank 0 must resume in a single process.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

from xcorrdiff.config import NetworkConfig
from xcorrdiff.data.batching import PairedBatchStream
from xcorrdiff.train.checkpoint import read_checkpoint
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.distributed import local_batch_size
from xcorrdiff.train.loop import StreamBatches, run_stage
from xcorrdiff.tutorial import make_synthetic

pytestmark = pytest.mark.numerics

WORLD_SIZE = 2
OUTPUTS = ["t2m", "u10m", "v10m"]

# Run by torchrun in each of the 2 processes: a toy network through run_stage, then
# fit_regression and fit_diffusion; every rank saves its weights.
_WORKER = """
import sys
from pathlib import Path

import torch

sys.path.insert(0, {tests!r})
import test_train_ddp as t
from xcorrdiff.train import fit_diffusion, fit_regression
from xcorrdiff.train.distributed import init_distributed

out = Path(sys.argv[1])
ctx = init_distributed("cpu")
assert ctx.world_size == {world_size}, ctx
toy = t.toy_run(out / "toy", t.toy_batches(ctx.rank, ctx.world_size), duration=t.TOY_SAMPLES)
torch.save(toy.net.state_dict(), out / f"toy-{{ctx.rank}}.pt")
lr, hr = t.synthetic()
model = fit_regression(
    lr, hr, config=t.fit_config(out / "fit", t.FIT_SAMPLES), output_variables=t.OUTPUTS,
    progress=False,
)
torch.save(model.regression.state_dict(), out / f"fit-{{ctx.rank}}.pt")
model = fit_diffusion(model, lr, hr, config=t.fit_config(out / "fit", 8), progress=False)
torch.save(model.diffusion.state_dict(), out / f"diffusion-{{ctx.rank}}.pt")
torch.distributed.destroy_process_group()
"""

TOY_SAMPLES = 24  # steps of 3 or 4 samples
FIT_SAMPLES = 16  # 4 steps of 4


class _Toy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(2, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _toy_loss(net: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return ((net(batch["condition"]) - batch["target"]) ** 2).mean()


def toy_batches(rank: int, world_size: int) -> StreamBatches:
    """Rank ``rank``'s shard, in blocks of 3 times: batches of 2 and 1 (uneven steps)."""
    rng = np.random.default_rng(0)
    condition = rng.normal(size=(16, 2, 4, 4)).astype("float32")
    target = (condition[:, :1] * 0.5 + 0.1).astype("float32")
    stream = PairedBatchStream(
        condition,
        target,
        batch_size=local_batch_size(4, world_size),
        block_size=3,
        rank=rank,
        world_size=world_size,
        seed=3,
    )
    return StreamBatches(stream)


def toy_run(directory: Path, batches: Any, duration: int) -> Any:
    config = TrainConfig(
        learning_rate=1e-2,
        lr_rampup=0,
        batch_size=4,
        checkpoint_every=8,
        checkpoint_dir=str(directory),
    )
    return run_stage(
        stage="regression",
        net=_Toy(),
        loss_fn=_toy_loss,
        batches=batches,
        config=config,
        duration=duration,
        fingerprint={"toy": 1},
        device=torch.device("cpu"),
        progress=False,
    )


def synthetic() -> tuple[xr.Dataset, xr.Dataset]:
    return make_synthetic(n_times=16, hr_shape=(16, 16), factor=4, seed=3)


def fit_config(directory: Path, duration: int) -> TrainConfig:
    net = {"model_channels": 8, "channel_mult": (1, 2), "num_blocks": 1, "dropout": 0.0}
    return TrainConfig(
        regression=NetworkConfig(**net, embedding_type="zero"),  # type: ignore[arg-type]
        diffusion=NetworkConfig(**net),  # type: ignore[arg-type]
        batch_size=4,
        learning_rate=1e-3,
        lr_rampup=8,
        ema_halflife=8,
        regression_duration=duration,
        diffusion_duration=duration,
        patch_shape=(8, 8),
        patches_per_sample=2,
        validation_fraction=0.25,
        validation_every=8,
        checkpoint_every=8,
        checkpoint_dir=str(directory),
        device="cpu",
        seed=7,
    )


class _Merged:
    """One process standing in for ``world_size`` ranks: each step joins their batches."""

    world_size = 1

    def __init__(self, parts: list[StreamBatches]) -> None:
        self.parts = parts

    @classmethod
    def of_stream(cls, stream: PairedBatchStream, world_size: int) -> _Merged:
        parts = []
        for rank in range(world_size):
            shard = copy.copy(stream)  # blocks are the same: block_size is the global batch
            shard.rank, shard.world_size = rank, world_size
            shard.batch_size = stream.batch_size // world_size
            parts.append(StreamBatches(shard))
        return cls(parts)

    def __next__(self) -> dict[str, torch.Tensor]:
        batches = [next(p) for p in self.parts]
        return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}

    def state_dict(self) -> dict[str, Any]:
        return self.parts[0].state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for part in self.parts:
            part.load_state_dict(state)

    def close(self) -> None:
        for part in self.parts:
            part.close()


def _load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)  # type: ignore[no-any-return]


def _assert_close(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


def _launch(out: Path) -> None:
    """Run the worker under torchrun (2 CPU processes, gloo)."""
    script = out / "worker.py"
    tests = str(Path(__file__).parent)
    script.write_text(textwrap.dedent(_WORKER.format(tests=tests, world_size=WORLD_SIZE)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # rendezvous on a free local port
        f"--nproc_per_node={WORLD_SIZE}",
        str(script),
        str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_torchrun_two_cpu_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One launch (about 10 s on 2 cores) serves every check, whichever xdist worker runs it.
    ddp_run = tmp_path / "ddp"
    ddp_run.mkdir()
    _launch(ddp_run)
    _check_toy(ddp_run, tmp_path / "toy")
    _check_toy_resume(ddp_run, tmp_path / "resume")
    _check_fit_regression(ddp_run, tmp_path / "fit", monkeypatch)
    _check_fit_diffusion(ddp_run)


def _check_toy(ddp_run: Path, tmp_path: Path) -> None:
    """Ranks agree, and equal one process trained on the concatenated batches."""
    rank0, rank1 = _load(ddp_run / "toy-0.pt"), _load(ddp_run / "toy-1.pt")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    merged = _Merged([toy_batches(r, WORLD_SIZE) for r in range(WORLD_SIZE)])
    single = toy_run(tmp_path / "single", merged, duration=TOY_SAMPLES)
    _assert_close(single.net.state_dict(), rank0)
    # Blocks of 3 times give steps of 2 + 1 or 2 + 2 samples: weighting each rank's mean
    # loss by its share makes the gradient the mean over the global batch all the same.
    log = [json.loads(line) for line in (ddp_run / "toy" / "log.jsonl").read_text().splitlines()]
    assert [r["samples"] for r in log] == [h["samples"] for h in single.history]
    sizes = np.diff([0] + [r["samples"] for r in log])
    assert {3, 4} <= set(sizes.tolist()), sizes
    # float32 losses of two reduction orders (a float64 rank-weighted mean against one float32
    # mean), a few optimizer steps apart: relative differences of a few float32 ulps.
    ddp_loss = np.array([r["loss"] for r in log])
    single_loss = np.array([h["loss"] for h in single.history])
    np.testing.assert_allclose(ddp_loss, single_loss, rtol=1e-6)


def _check_toy_resume(ddp_run: Path, tmp_path: Path) -> None:
    """Rank 0's checkpoint resumes in one process."""
    # Straight: one process on the global batches for 40 samples. Resumed: the DDP run's
    # checkpoint (24 samples or a little more), continued by one process.
    straight = toy_run(
        tmp_path / "straight",
        _Merged([toy_batches(r, WORLD_SIZE) for r in range(WORLD_SIZE)]),
        duration=TOY_SAMPLES + 16,
    )
    resumed_dir = tmp_path / "resumed"
    resumed_dir.mkdir(parents=True)
    name = "regression-checkpoint.safetensors"
    (resumed_dir / name).write_bytes((ddp_run / "toy" / name).read_bytes())
    resumed = toy_run(
        resumed_dir,
        _Merged([toy_batches(r, WORLD_SIZE) for r in range(WORLD_SIZE)]),
        duration=TOY_SAMPLES + 16,
    )
    assert resumed.resumed_from == read_checkpoint(ddp_run / "toy" / name)["samples"] >= 24
    assert (resumed.samples, resumed.steps) == (straight.samples, straight.steps)
    _assert_close(resumed.net.state_dict(), straight.net.state_dict())


def _check_fit_regression(ddp_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xcorrdiff import train
    from xcorrdiff.train import parts

    rank0, rank1 = _load(ddp_run / "fit-0.pt"), _load(ddp_run / "fit-1.pt")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    lr, hr = synthetic()
    kw: dict[str, Any] = {"output_variables": OUTPUTS, "progress": False}
    with monkeypatch.context() as patch:
        patch.setattr(
            parts, "StreamBatches", lambda stream, **_: _Merged.of_stream(stream, WORLD_SIZE)
        )
        single = train.fit_regression(lr, hr, config=fit_config(tmp_path, FIT_SAMPLES), **kw)
    _assert_close(single.regression.state_dict(), rank0)
    # The checkpoint holds global progress: a single process (another sharding) resumes it.
    more = train.fit_regression(lr, hr, config=fit_config(ddp_run / "fit", FIT_SAMPLES + 8), **kw)
    assert more.provenance["regression"]["samples"] == FIT_SAMPLES + 8
    log = (ddp_run / "fit" / "log.jsonl").read_text()
    assert '"samples": 24' in log


def _check_fit_diffusion(ddp_run: Path) -> None:
    rank0, rank1 = _load(ddp_run / "diffusion-0.pt"), _load(ddp_run / "diffusion-1.pt")
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # Each rank draws its own noise; the checkpoint keeps every rank's stream.
    state = read_checkpoint(ddp_run / "fit" / "diffusion-checkpoint.safetensors")
    assert state["world_size"] == WORLD_SIZE and state["samples"] == 8
    noise = [r["generators"]["noise"] for r in state["rng_ranks"]]
    assert not torch.equal(noise[0], noise[1])
    assert torch.equal(noise[0], state["rng"]["generators"]["noise"])


def test_batch_size_must_divide_among_ranks() -> None:
    with pytest.raises(ValueError, match=r"batch_size 6 is not divisible by the world size 4"):
        local_batch_size(6, 4)

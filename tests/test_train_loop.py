"""The stage loop: non-finite handling, logging, checkpoints (toy network, random data)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array
import numpy as np
import pytest
import torch

from xcorrdiff.data.batching import PairedBatchStream
from xcorrdiff.train.config import RUNTIME_ONLY, OptimizationConfig, TrainConfig
from xcorrdiff.train.loop import (
    CheckpointMismatchError,
    NonFiniteError,
    StageResult,
    StreamBatches,
    run_stage,
)


class _Toy(torch.nn.Module):
    """A 1×1 convolution; ``poison_at`` makes the forward of that call return NaN.

    Its initial weights come from a fixed seed, never from the global stream: two toys are
    the same network whatever ran before (a resume test compares two of them bitwise).
    """

    def __init__(self, poison_at: int | None = None) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(2, 1, 1)
        self.calls = 0
        self.poison_at = poison_at

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.conv(x)
        if self.calls == self.poison_at:
            out = out * float("nan")
        return out


def _loss(net: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return ((net(batch["condition"]) - batch["target"]) ** 2).mean()


def _batches(seed: int = 0) -> StreamBatches:
    rng = np.random.default_rng(0)
    condition = rng.normal(size=(12, 2, 4, 4)).astype("float32")
    target = (condition[:, :1] * 0.5).astype("float32")
    return StreamBatches(PairedBatchStream(condition, target, batch_size=2, seed=seed))


def _config(tmp_path: Path | None = None, **kw: object) -> TrainConfig:
    base: dict[str, object] = {
        "learning_rate": 1e-2,
        "lr_rampup": 0,
        "validation_every": 4,
        "checkpoint_every": 8,
        "checkpoint_dir": None if tmp_path is None else str(tmp_path),
    }
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _run(
    net: torch.nn.Module, config: TrainConfig, duration: int = 20, **kw: object
) -> StageResult:
    torch.manual_seed(0)
    kw.setdefault("batches", _batches())
    return run_stage(
        stage="regression",
        net=net,
        loss_fn=_loss,
        config=config,
        duration=duration,
        fingerprint={"toy": 1},
        device=torch.device("cpu"),
        progress=False,
        **kw,  # type: ignore[arg-type]
    )


def test_training_reduces_the_loss_and_logs(tmp_path: Path) -> None:
    result = _run(_Toy(), _config(tmp_path), duration=200, validate=lambda ema: {"val": 1.0})
    losses = [h["loss"] for h in result.history if h["event"] == "step"]
    assert result.samples == 200 and result.steps == 100 and result.skipped == 0
    assert np.mean(losses[-10:]) < 0.2 * np.mean(losses[:10])
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if r["event"] == "step"]
    assert {"loss", "lr", "grad_norm", "patches_per_s", "samples", "step"} <= set(steps[0])
    assert [r["samples"] for r in lines if r["event"] == "validation"] == [
        *range(4, 200, 4),
        200,
    ]
    # The EMA differs from the raw weights but is close to them.
    assert not torch.equal(result.ema.conv.weight, result.net.conv.weight)
    assert torch.allclose(result.ema.conv.weight, result.net.conv.weight, atol=0.1)


def test_nonfinite_loss_stops_with_stage_and_step() -> None:
    with pytest.raises(
        NonFiniteError, match=r"regression stage: non-finite loss \(nan\) at step 3"
    ):
        _run(_Toy(poison_at=3), _config())


def test_nonfinite_gradient_stops_with_stage_and_step() -> None:
    net = _Toy()
    step = {"n": 0}

    def poison(grad: torch.Tensor) -> torch.Tensor:
        step["n"] += 1
        return grad * math.inf if step["n"] == 5 else grad

    net.conv.weight.register_hook(poison)
    with pytest.raises(
        NonFiniteError, match=r"regression stage: non-finite gradient norm .* step 5"
    ):
        _run(net, _config())


def test_skip_mode_skips_and_counts_poisoned_batches(tmp_path: Path) -> None:
    net = _Toy(poison_at=3)
    result = _run(net, _config(tmp_path, on_nonfinite="skip"), duration=20)
    assert result.skipped == 1
    assert result.steps == 10
    assert all(torch.isfinite(p).all() for p in result.net.parameters())
    assert all(torch.isfinite(p).all() for p in result.ema.parameters())
    skipped = [r for r in result.history if r["event"] == "skipped"]
    assert [r["step"] for r in skipped] == [3]
    assert "non-finite loss" in skipped[0]["reason"]


def test_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    _run(_Toy(), _config(tmp_path), duration=8)
    assert (tmp_path / "regression-checkpoint.safetensors").is_file()
    with pytest.raises(CheckpointMismatchError, match=r"holds a regression checkpoint of another"):
        run_stage(
            stage="regression",
            net=_Toy(),
            loss_fn=_loss,
            batches=_batches(),
            config=_config(tmp_path),
            duration=16,
            fingerprint={"toy": 2},
            device=torch.device("cpu"),
            progress=False,
        )


def test_checkpoints_leave_no_temporary_files(tmp_path: Path) -> None:
    _run(_Toy(), _config(tmp_path), duration=40)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "log.jsonl",
        "regression-checkpoint.safetensors",
    ]


@pytest.mark.numerics
def test_resume_is_bitwise_identical_on_toy(tmp_path: Path) -> None:
    straight = _run(_Toy(), _config(tmp_path / "a"), duration=20)
    _run(_Toy(), _config(tmp_path / "b"), duration=10)
    torch.manual_seed(123)  # a different global state must not matter: it is restored
    resumed = run_stage(
        stage="regression",
        net=_Toy(),
        loss_fn=_loss,
        batches=_batches(),
        config=_config(tmp_path / "b"),
        duration=20,
        fingerprint={"toy": 1},
        device=torch.device("cpu"),
        progress=False,
    )
    assert resumed.resumed_from == 10
    for a, b in zip(
        straight.net.state_dict().values(), resumed.net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    for a, b in zip(
        straight.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_compile_failure_falls_back_to_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("inductor backend unavailable")

    monkeypatch.setattr(torch, "compile", lambda net, **kw: _Broken())
    with pytest.warns(RuntimeWarning, match=r"torch.compile failed .*eagerly"):
        result = _run(_Toy(), _config(compile=True), duration=8)
    assert result.steps == 4 and result.skipped == 0


def test_bf16_autocast_and_channels_last_train() -> None:
    result = _run(_Toy(), _config(precision="bf16", channels_last=True), duration=40)
    losses = [h["loss"] for h in result.history if h["event"] == "step"]
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert result.net.conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.numerics
def test_dataloader_workers_resume_exactly(tmp_path: Path) -> None:
    def run(directory: Path, duration: int) -> StageResult:
        return run_stage(
            stage="regression",
            net=_Toy(),
            loss_fn=_loss,
            batches=StreamBatches(_batches().stream, num_workers=1),
            config=_config(directory, num_workers=1),
            duration=duration,
            fingerprint={"toy": 1},
            device=torch.device("cpu"),
            progress=False,
        )

    straight = run(tmp_path / "a", 20)
    run(tmp_path / "b", 10)
    resumed = run(tmp_path / "b", 20)
    assert resumed.resumed_from == 10 and resumed.samples == 20
    for a, b in zip(
        straight.net.state_dict().values(), resumed.net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


class _Killed(BaseException):
    """Stands for a kill: not an ``Exception``, so nothing in the loop handles it."""


def _dying_loss(at_call: int) -> Any:
    calls = {"n": 0}

    def loss(net: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == at_call:
            raise _Killed
        return _loss(net, batch)

    return loss


def _step_rows(path: Path) -> list[tuple[str, int]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(r["event"], r["samples"]) for r in rows]


@pytest.mark.numerics
def test_resume_after_a_kill_leaves_no_duplicate_log_rows(tmp_path: Path) -> None:
    straight = _run(_Toy(), _config(tmp_path / "a"), duration=20)
    with pytest.raises(_Killed):  # killed at step 6 (samples 12); the checkpoint is at 8
        run_stage(stage="regression", net=_Toy(), loss_fn=_dying_loss(6), batches=_batches(),
                  config=_config(tmp_path / "b"), duration=20, fingerprint={"toy": 1},
                  device=torch.device("cpu"), progress=False)  # fmt: skip
    assert ("step", 10) in _step_rows(tmp_path / "b" / "log.jsonl")  # a row past the checkpoint
    resumed = _run(_Toy(), _config(tmp_path / "b"), duration=20)
    assert resumed.resumed_from == 8
    rows = _step_rows(tmp_path / "b" / "log.jsonl")
    assert len(rows) == len(set(rows))
    assert rows == _step_rows(tmp_path / "a" / "log.jsonl")
    for a, b in zip(
        straight.net.state_dict().values(), resumed.net.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_orphan_temporary_checkpoints_are_removed(tmp_path: Path) -> None:
    tmp_path.mkdir(exist_ok=True)
    orphan = tmp_path / ".regression-checkpoint.safetensors.k1ll3d.tmp"
    orphan.write_bytes(b"half a checkpoint")
    other = tmp_path / "notes.tmp"  # not ours: kept
    other.write_text("mine")
    _run(_Toy(), _config(tmp_path), duration=8)
    assert not orphan.exists() and other.read_text() == "mine"


def test_mismatch_names_only_the_differing_fields(tmp_path: Path) -> None:
    big = {"network": {"channels": 32, "mult": [1, 2]}, "lr": 0.01, "notes": "x" * 2000}
    toy = {"stage": "regression", "loss_fn": _loss, "config": _config(tmp_path), "duration": 8,
           "device": torch.device("cpu"), "progress": False}  # fmt: skip
    run_stage(net=_Toy(), batches=_batches(), fingerprint=big, **toy)  # type: ignore[arg-type]
    changed = {**big, "lr": 0.02, "network": {"channels": 64, "mult": [1, 2]}}
    with pytest.raises(CheckpointMismatchError) as info:
        run_stage(net=_Toy(), batches=_batches(), fingerprint=changed, **toy)  # type: ignore[arg-type]
    message = str(info.value)
    assert "lr: checkpoint has 0.01, this run has 0.02" in message
    assert "network.channels: checkpoint has 32, this run has 64" in message
    assert "notes" not in message and "mult" not in message and len(message) < 400


def test_a_damaged_checkpoint_is_an_error_naming_it(tmp_path: Path) -> None:
    _run(_Toy(), _config(tmp_path), duration=8)
    path = tmp_path / "regression-checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(
        ValueError, match=r"regression-checkpoint.safetensors' is damaged .*SHA-256.*delete it"
    ):
        _run(_Toy(), _config(tmp_path), duration=16)
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(ValueError, match=r"is damaged \(not a readable safetensors file"):
        _run(_Toy(), _config(tmp_path), duration=16)


def test_errors_in_dataloader_workers_arrive_unwrapped() -> None:
    rng = np.random.default_rng(0)
    condition = rng.normal(size=(12, 2, 4, 4)).astype("float32")
    target = (condition[:, :1] * 0.5).astype("float32")
    target[5, 0, 1, 1] = np.nan
    stream = PairedBatchStream(
        dask.array.from_array(condition, chunks=(4, -1, -1, -1)),
        dask.array.from_array(target, chunks=(4, -1, -1, -1)),
        batch_size=2,
        seed=0,
    )
    with pytest.raises(ValueError) as info:
        _run(
            _Toy(),
            _config(num_workers=1),
            duration=24,
            batches=StreamBatches(stream, num_workers=1),
        )
    message = str(info.value)
    assert message.startswith("target has non-finite (NaN/inf) values in the block of times")
    assert "DataLoader worker" not in message and "Traceback" not in message


def test_a_new_config_field_refuses_resume_unless_marked_runtime_only(tmp_path: Path) -> None:
    """The resume fingerprint is derived by rule: a field someone adds counts by default."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Extended(OptimizationConfig):
        new_knob: int = 0
        new_runtime_knob: int = dataclasses.field(default=0, metadata=RUNTIME_ONLY)

    def run(config: TrainConfig, duration: int) -> StageResult:
        torch.manual_seed(0)
        return run_stage(
            stage="regression", net=_Toy(), loss_fn=_loss, batches=_batches(), config=config,
            duration=duration, fingerprint={"train": config.fingerprint()},
            device=torch.device("cpu"), progress=False,
        )  # fmt: skip

    base = _config(tmp_path)
    extended = Extended(**dataclasses.asdict(base.optimization))
    run(base.replace(optimization=extended), 8)
    runtime_change = dataclasses.replace(extended, new_runtime_knob=5)
    resumed = run(base.replace(optimization=runtime_change), 16)
    assert resumed.resumed_from == 8
    changed = dataclasses.replace(extended, new_knob=1)
    with pytest.raises(CheckpointMismatchError, match=r"optimization\.new_knob: checkpoint has 0"):
        run(base.replace(optimization=changed), 24)


def test_stage_fingerprints_hold_the_whole_config_fingerprint() -> None:
    from xcorrdiff.train.parts import stage_fingerprint as _fingerprint

    config = _config(None, batch_size=2)
    assert _fingerprint("regression", config, {})["train"] == config.fingerprint()
    assert "device" not in config.fingerprint()["runtime"]
    assert config.fingerprint()["data"]["batch_size"] == 2


def test_stream_seeds_are_named_independent_and_refuse_unknown_names() -> None:
    from xcorrdiff.train.streams import STREAMS, stream_seed

    seeds = {name: stream_seed(7, name) for name in STREAMS}
    assert len(set(seeds.values())) == len(STREAMS)  # no two streams share a seed
    assert stream_seed(7, "diffusion.noise") == seeds["diffusion.noise"]  # reproducible
    assert stream_seed(8, "diffusion.noise") != seeds["diffusion.noise"]
    with pytest.raises(ValueError, match=r"name='diffusion.nosie' is not a training stream"):
        stream_seed(7, "diffusion.nosie")

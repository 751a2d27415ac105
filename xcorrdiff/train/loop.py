"""The training loop shared by both CorrDiff stages: one flat loop of short steps.

One optimizer step: learning rate from the closed-form schedule, forward under optional
bfloat16 autocast, a check that the loss is finite, backward, gradient clipping (which also
yields the gradient norm, checked for finiteness), Adam step, EMA update. Non-finite values
stop training with :class:`NonFiniteError` naming the stage and the step, or, with
``on_nonfinite="skip"``, skip the batch and count it. PhysicsNeMo's CorrDiff example
silently replaces NaN/inf gradients by zero instead.

Everything the loop changes lives in one :class:`_Run` (network, EMA, optimizer, counters,
log); the steps are plain functions of it. Checkpoints (:mod:`xcorrdiff.train.checkpoint`)
hold the network, its EMA, the optimizer, the counters, every RNG state and the data
position, so a resumed run continues exactly as an uninterrupted one would (bitwise on CPU).

With an initialized process group (:mod:`xcorrdiff.train.distributed`) the network is
wrapped in DistributedDataParallel; each rank's mean loss is weighted by its share of the
global batch (gathered every step), so the averaged gradient is that of the mean over the
global batch even when the ranks' batches differ in size. Counters are global, rank 0
alone logs and writes checkpoints (holding every rank's random state), and all ranks wait
for it.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from xcorrdiff._checks import autocast
from xcorrdiff.nn import SongUNet, maybe_compile, set_channels_last
from xcorrdiff.train.batches import BatchSource, StreamBatches, batch_size
from xcorrdiff.train.checkpoint import (
    JsonlLog,
    capture_rng,
    describe_difference,
    read_checkpoint,
    remove_orphans,
    restore_rng,
    write_checkpoint,
)
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.distributed import current, rank_seed
from xcorrdiff.train.schedule import ema_beta, learning_rate, update_ema

__all__ = [
    "BatchSource",
    "CheckpointMismatchError",
    "NonFiniteError",
    "StageResult",
    "StreamBatches",
    "run_stage",
]

Stage = str  # "regression", "diffusion" or "regression-fold<k>"
LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]
ValidateFn = Callable[[torch.nn.Module], Mapping[str, float]]
CHECKPOINT_FORMAT = "xcorrdiff-training-checkpoint-1"


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN or infinite during training."""


class CheckpointMismatchError(ValueError):
    """A checkpoint directory holds the checkpoint of another model."""


@dataclass
class StageResult:
    """What a stage returns.

    Attributes
    ----------
    net, ema : torch.nn.Module
        The trained network and its exponential moving average (the one to use).
    samples, steps : int
        Training samples and optimizer steps done, resumed ones included.
    skipped : int
        Batches skipped because of a non-finite loss or gradient.
    history : list of dict
        The records written to the JSON-lines log during this call.
    resumed_from : int or None
        Samples already done in the checkpoint this call resumed from.
    """

    net: torch.nn.Module
    ema: torch.nn.Module
    samples: int
    steps: int
    skipped: int
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: int | None = None


@dataclass
class _Run:
    """Everything one stage's loop reads and changes."""

    stage: Stage
    net: torch.nn.Module
    ema: torch.nn.Module
    optimizer: torch.optim.Optimizer
    params: list[torch.nn.Parameter]
    batches: BatchSource
    config: TrainConfig
    device: torch.device
    fingerprint: dict[str, Any]
    generators: dict[str, torch.Generator]
    validate: ValidateFn | None
    checkpoint: Path | None
    log: JsonlLog
    rank: int
    world_size: int
    samples: int = 0
    steps: int = 0
    skipped: int = 0
    resumed_from: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def record(self, event: str, **values: Any) -> None:
        entry = {
            "stage": self.stage,
            "event": event,
            "step": self.steps,
            "samples": self.samples,
            **values,
        }
        self.history.append(entry)
        self.log.write(entry)


def run_stage(
    *,
    stage: Stage,
    net: torch.nn.Module,
    loss_fn: LossFn,
    batches: BatchSource,
    config: TrainConfig,
    duration: int,
    fingerprint: Mapping[str, Any],
    device: torch.device,
    generators: dict[str, torch.Generator] | None = None,
    validate: ValidateFn | None = None,
    patches_per_sample: int = 1,
    progress: bool = True,
    seed: int | None = None,
) -> StageResult:
    """Train ``net`` for ``duration`` samples, resuming from the stage's checkpoint if any.

    Parameters
    ----------
    stage : {"regression", "diffusion"} or str
        Name used in messages, in the log and in the checkpoint file name (a cross-fit
        regression's is ``"regression-fold<k>"``).
    net : torch.nn.Module
        The network to train, already on ``device`` (its initial weights are overwritten
        when resuming).
    loss_fn : callable
        ``loss_fn(net, batch) -> loss``: a scalar, already averaged over the batch.
    batches : BatchSource
        Endless iterator of batches with ``state_dict``/``load_state_dict``.
    config : TrainConfig
        Optimizer, schedule, EMA, precision, checkpoint and validation settings.
    duration : int
        Total samples for the stage (a resumed run counts the ones already done).
    fingerprint : mapping
        JSON-able description of the model being trained; a checkpoint with another
        fingerprint is refused.
    device : torch.device
        Where the batches go.
    generators : dict of str to torch.Generator, optional
        Random streams used by ``loss_fn``; saved and restored with the checkpoint.
    validate : callable, optional
        ``validate(ema) -> {"name": value}``, run every ``validation_every`` samples and at
        the end.
    patches_per_sample : int, default 1
        Patches per sample, to report patches/s.
    progress : bool, default True
        Show a tqdm progress bar.
    seed : int, optional
        Seed of torch's global stream (dropout) for a fresh run; default
        ``config.runtime.seed``. Training runs inside :func:`torch.random.fork_rng`, so the
        caller's stream is kept.

    Returns
    -------
    StageResult

    Raises
    ------
    NonFiniteError
        A non-finite loss or gradient with ``on_nonfinite == "raise"``.
    CheckpointMismatchError
        The checkpoint directory holds a checkpoint of this stage for another model.
    """
    cuda = [device.index or 0] if device.type == "cuda" else []
    generators = dict(generators or {})
    rank, world_size = current()
    _check_sharding(batches, world_size)
    with torch.random.fork_rng(devices=cuda):
        # A fresh run draws dropout from a stream seeded by the configuration; a resumed run
        # restores the stream from the checkpoint. Ranks other than 0 draw their own.
        torch.manual_seed(rank_seed(config.runtime.seed if seed is None else seed, rank))
        if rank > 0:
            for g in generators.values():
                g.manual_seed(rank_seed(g.initial_seed(), rank))
        run = _start(stage, net, batches, config, device, fingerprint, generators, validate)
        run.resumed_from = _resume(run)
        run.log.rewind(stage, run.samples)  # records past the checkpoint are redone
        _train(run, loss_fn, duration, patches_per_sample, progress)
    run.net.eval()
    return StageResult(**{f.name: getattr(run, f.name) for f in dataclasses.fields(StageResult)})


def _check_sharding(batches: BatchSource, world_size: int) -> None:
    shards = getattr(batches, "world_size", world_size)
    if shards != world_size:
        raise ValueError(
            f"the batch stream is sharded for world_size={shards} but {world_size} processes "
            "train; build the stream with rank=torch.distributed.get_rank() and "
            "world_size=torch.distributed.get_world_size()"
        )


def _start(
    stage: Stage,
    net: torch.nn.Module,
    batches: BatchSource,
    config: TrainConfig,
    device: torch.device,
    fingerprint: Mapping[str, Any],
    generators: dict[str, torch.Generator],
    validate: ValidateFn | None,
) -> _Run:
    """A fresh run: memory format, optimizer, EMA copy, checkpoint path and log."""
    if config.runtime.channels_last:
        if any(isinstance(m, SongUNet) for m in net.modules()):
            set_channels_last(net)  # NHWC end to end, inputs converted on entry
        else:
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    params = [p for p in net.parameters() if p.requires_grad]
    opt = config.optimization
    rank, world_size = current()
    directory = config.runtime.checkpoint_dir
    folder = Path(directory) if directory is not None else None
    return _Run(
        stage=stage,
        net=net,
        ema=copy.deepcopy(net).eval().requires_grad_(False),
        optimizer=torch.optim.Adam(params, lr=opt.learning_rate, betas=opt.betas),
        params=params,
        batches=batches,
        config=config,
        device=device,
        fingerprint=json.loads(json.dumps(dict(fingerprint))),
        generators=generators,
        validate=validate,
        checkpoint=folder / f"{stage}-checkpoint.safetensors" if folder else None,
        log=JsonlLog(folder / "log.jsonl" if folder and rank == 0 else None),
        rank=rank,
        world_size=world_size,
    )


def _resume(run: _Run) -> int | None:
    """Load the stage's checkpoint if there is one; the samples it had done, else None."""
    path = run.checkpoint
    if path is not None and run.rank == 0:
        remove_orphans(path)  # temporaries of a run killed while writing
    if path is None or not path.exists():
        return None
    state = read_checkpoint(path)
    if state.get("fingerprint") != run.fingerprint:
        found = describe_difference(state.get("fingerprint") or {}, run.fingerprint)
        raise CheckpointMismatchError(
            f"checkpoint_dir={run.config.runtime.checkpoint_dir!r} holds a {run.stage} "
            f"checkpoint of another model ({found}); use a new checkpoint_dir, or delete the "
            "old checkpoint to start afresh"
        )
    run.net.load_state_dict(state["net"])
    run.ema.load_state_dict(state["ema"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.batches.load_state_dict(state["data"])
    run.samples, run.steps, run.skipped = state["samples"], state["steps"], state["skipped"]
    saved_ranks = state.get("rng_ranks") or [state["rng"]]
    if run.rank < len(saved_ranks):
        restore_rng(saved_ranks[run.rank], run.generators)
    else:  # resumed with more processes: this rank's streams start afresh
        torch.manual_seed(rank_seed(run.config.runtime.seed, run.rank, run.samples))
        for g in run.generators.values():
            g.manual_seed(rank_seed(g.initial_seed(), run.rank, run.samples))
    return run.samples


def _save(run: _Run) -> None:
    """Rank 0 writes (atomically); every rank's random state goes in; all ranks wait."""
    if run.checkpoint is None:
        return
    rng = capture_rng(run.generators)
    extra: dict[str, Any] = {}
    if run.world_size > 1:
        gathered: list[Any] = [None] * run.world_size
        torch.distributed.all_gather_object(gathered, rng)
        extra = {"world_size": run.world_size, "rng_ranks": gathered}
    if run.rank == 0:
        state = {
            "format": CHECKPOINT_FORMAT,
            "stage": run.stage,
            "fingerprint": run.fingerprint,
            "samples": run.samples,
            "steps": run.steps,
            "skipped": run.skipped,
            "net": run.net.state_dict(),
            "ema": run.ema.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "data": run.batches.state_dict(),
            "rng": rng,
            "config": run.config.to_dict(),
        }
        write_checkpoint(run.checkpoint, {**state, **extra})
    if run.world_size > 1:
        torch.distributed.barrier()


def _validate(run: _Run) -> None:
    if run.validate is not None:
        values = {k: float(v) for k, v in run.validate(run.ema).items()}
        run.record("validation", **values)


def _wrap(run: _Run) -> torch.nn.Module:
    """The module the loss calls: DistributedDataParallel when distributed, compiled on request.

    Gradients are averaged over ranks during backward; the weights start equal
    (DistributedDataParallel broadcasts rank 0's) and stay equal.
    """
    wrapped: torch.nn.Module = run.net
    if run.world_size > 1:
        ids = [run.device.index or 0] if run.device.type == "cuda" else None
        wrapped = torch.nn.parallel.DistributedDataParallel(run.net, device_ids=ids)
    return maybe_compile(wrapped) if run.config.runtime.compile else wrapped


def _train(
    run: _Run, loss_fn: LossFn, duration: int, patches_per_sample: int, progress: bool
) -> None:
    """Steps until ``duration`` samples, with validation and checkpoints on their periods."""
    train_net = _wrap(run)
    schedule = run.config.schedule
    bar = tqdm(
        total=duration,
        initial=min(run.samples, duration),
        unit="sample",
        desc=run.stage,
        disable=not progress or run.rank > 0,
        dynamic_ncols=True,
    )
    run.net.train()
    try:
        while run.samples < duration:
            size, loss, rate = _step(run, train_net, loss_fn, patches_per_sample)
            bar.update(size)
            bar.set_postfix(loss=f"{loss:.4g}", patches_s=f"{rate:.1f}", refresh=False)
            if run.samples < duration and _crossed(run.samples, size, schedule.validation_every):
                _validate(run)
            if run.samples < duration and _crossed(run.samples, size, schedule.checkpoint_every):
                _save(run)
        if run.resumed_from is None or run.resumed_from < duration:
            _validate(run)
        _save(run)
    finally:
        bar.close()
        close = getattr(run.batches, "close", None)
        if callable(close):
            close()


def _crossed(samples: int, size: int, period: int) -> bool:
    """Whether the last step (``size`` samples, ending at ``samples``) crossed a period."""
    return (samples - size) // period != samples // period


def _step(
    run: _Run, train_net: torch.nn.Module, loss_fn: LossFn, patches_per_sample: int
) -> tuple[int, float, float]:
    """One optimizer step (or a skipped batch): the global batch size, loss and patches/s."""
    started = time.perf_counter()
    batch = next(run.batches)
    opt, schedule = run.config.optimization, run.config.schedule
    lr = learning_rate(
        run.samples,
        base=opt.learning_rate,
        rampup=schedule.lr_rampup,
        decay=schedule.lr_decay,
        decay_rate=schedule.lr_decay_rate,
    )
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.optimizer.zero_grad(set_to_none=True)
    with autocast(run.device, run.config.runtime.precision):
        loss = loss_fn(train_net, batch)
    size, loss_value, weight = _global_loss(loss, batch_size(batch), run.world_size)
    problem, grad_norm = _backward(run, loss, loss_value, weight)
    run.steps += 1
    run.samples += size
    if problem is None:
        run.optimizer.step()
        beta = ema_beta(
            run.samples, size, halflife=opt.ema_halflife, rampup_ratio=opt.ema_rampup_ratio
        )
        update_ema(run.ema, run.net, beta)
    else:
        _skip(run, problem)
    rate = size * patches_per_sample / max(time.perf_counter() - started, 1e-9)
    run.record("step", loss=loss_value, lr=lr, grad_norm=grad_norm, patches_per_s=rate)
    return size, loss_value, rate


def _backward(
    run: _Run, loss: torch.Tensor, loss_value: float, weight: float
) -> tuple[str | None, float]:
    """Backward and clipping; what went wrong (None when all is finite) and the grad norm."""
    if not math.isfinite(loss_value):
        return f"non-finite loss ({loss_value})", math.nan
    (loss if weight == 1.0 else loss * weight).backward()
    grad_norm = float(_clipped_grad_norm(run.params, run.config.optimization.grad_clip))
    if not math.isfinite(grad_norm):
        return f"non-finite gradient norm ({grad_norm})", grad_norm
    return None, grad_norm


def _skip(run: _Run, problem: str) -> None:
    if run.config.optimization.on_nonfinite == "raise":
        raise NonFiniteError(
            f"{run.stage} stage: {problem} at step {run.steps} (sample {run.samples}); "
            "training stopped. Check the data for NaN/inf, lower learning_rate or set "
            "grad_clip, or pass on_nonfinite='skip' to skip such batches"
        )
    run.optimizer.zero_grad(set_to_none=True)
    run.skipped += 1
    run.record("skipped", reason=problem)


def _clipped_grad_norm(params: list[torch.nn.Parameter], max_norm: float | None) -> torch.Tensor:
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(
        grads, max_norm=math.inf if max_norm is None else max_norm, error_if_nonfinite=False
    )


def _global_loss(loss: torch.Tensor, local_size: int, world_size: int) -> tuple[int, float, float]:
    """``(global batch size, global mean loss, weight of this rank's loss)``.

    DistributedDataParallel averages gradients over ranks; weighting each rank's mean loss
    by ``local_size * world_size / global_size`` makes the average the gradient of the mean
    over the global batch even when the ranks' batches differ in size.
    """
    if world_size == 1:
        return local_size, float(loss.detach()), 1.0
    value = float(loss.detach())
    totals = torch.tensor(
        [float(local_size), local_size * value], dtype=torch.float64, device=loss.device
    )
    torch.distributed.all_reduce(totals)
    global_size = round(float(totals[0]))
    return global_size, float(totals[1]) / global_size, local_size * world_size / global_size

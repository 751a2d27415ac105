"""The training loop shared by both CorrDiff stages.

One optimizer step: learning rate from the closed-form schedule, forward under optional bf16
autocast, a check that the loss is finite, backward, gradient clipping (which also yields
the gradient norm, checked for finiteness), Adam step, EMA update. Non-finite values stop
training with :class:`NonFiniteError` naming the stage and the step, or, with
``on_nonfinite="skip"``, skip the batch and count it. PhysicsNeMo's CorrDiff example
silently replaces NaN/inf gradients by zero instead.

Checkpoints (:mod:`xcorrdiff.training.state`) hold the network, its EMA, the optimizer, the
counters, every RNG state and the data position, so that a resumed run continues exactly
as an uninterrupted one would (bitwise on CPU).

With an initialized process group (:mod:`xcorrdiff.training.distributed`) the network is
wrapped in DistributedDataParallel; each rank's mean loss is weighted by its share of the
global batch (gathered every step), so the averaged gradient is that of the mean over the
global batch even when the ranks' batches differ in size. Counters are global, rank 0
alone logs and writes checkpoints (holding every rank's random state), and all ranks wait
for it.
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from tqdm.auto import tqdm

from xcorrdiff._files import write_text_atomic
from xcorrdiff.config import TrainConfig
from xcorrdiff.nn import SongUNet, set_channels_last
from xcorrdiff.training.distributed import current, rank_seed
from xcorrdiff.training.schedule import ema_beta, learning_rate, update_ema
from xcorrdiff.training.state import (
    capture_rng,
    read_checkpoint,
    remove_orphans,
    restore_rng,
    write_checkpoint,
)

__all__ = [
    "BatchSource",
    "CheckpointMismatchError",
    "NonFiniteError",
    "StageResult",
    "run_stage",
]

Stage = Literal["regression", "diffusion"]
LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]
ValidateFn = Callable[[torch.nn.Module], Mapping[str, float]]


class NonFiniteError(FloatingPointError):
    """A loss or gradient became NaN or infinite during training."""


class CheckpointMismatchError(ValueError):
    """A checkpoint directory holds the checkpoint of another model."""


class BatchSource(Protocol):
    """What :func:`run_stage` needs from a data stream: batches and a resumable position."""

    def __next__(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


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


def resolve_device(device: str, *, local_rank: int | None = None) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; other strings as ``torch.device``.

    With ``local_rank`` (a distributed run), ``"auto"`` and ``"cuda"`` mean
    ``cuda:local_rank``.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and local_rank is not None and torch.cuda.is_available():
        device = f"cuda:{local_rank}"
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"device={device!r} is invalid; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return resolved


def maybe_compile(net: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """``torch.compile(net)`` when enabled; eager ``net`` (with a warning) if it fails."""
    if not enabled:
        return net
    try:
        return torch.compile(net)  # type: ignore[return-value]
    except Exception as exc:  # compile support differs by platform and version
        warnings.warn(
            f"torch.compile failed ({type(exc).__name__}: {exc}); training in eager mode",
            RuntimeWarning,
            stacklevel=2,
        )
        return net


def autocast(device: torch.device, precision: str) -> Any:
    """The autocast context for ``precision`` (``nullcontext`` for fp32)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


class JsonlLog:
    """Append-only JSON-lines log (one record a line, flushed at once)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, allow_nan=True) + "\n")

    def rewind(self, stage: str, samples: int) -> int:
        """Drop ``stage``'s records past ``samples``: the steps an interrupted run did after
        its last checkpoint, which the resumed run does again. Returns how many were dropped.

        The log is rewritten atomically; a partial last line (a kill mid-write) goes too.
        """
        if self.path is None or not self.path.is_file():
            return 0
        kept, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if record.get("stage") == stage and record.get("samples", 0) > samples:
                dropped += 1
            else:
                kept.append(line + "\n")
        if dropped:
            write_text_atomic(self.path, "".join(kept))
        return dropped


def _differences(found: Any, expected: Any, path: str = "") -> list[str]:
    """The leaves where two nested JSON values differ, as ``path: a != b`` lines."""
    if isinstance(found, Mapping) and isinstance(expected, Mapping):
        out = []
        for key in sorted(set(found) | set(expected), key=str):
            where = f"{path}.{key}" if path else str(key)
            if key not in found:
                out.append(f"{where}: absent in the checkpoint, {expected[key]!r} in this run")
            elif key not in expected:
                out.append(f"{where}: {found[key]!r} in the checkpoint, absent in this run")
            else:
                out.extend(_differences(found[key], expected[key], where))
        return out
    if found == expected:
        return []
    short = [repr(v) if len(repr(v)) <= 80 else f"{repr(v)[:77]}..." for v in (found, expected)]
    return [f"{path or 'value'}: checkpoint has {short[0]}, this run has {short[1]}"]


def _describe_difference(found: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    diffs = _differences(found, expected)
    more = f"; and {len(diffs) - 6} more" if len(diffs) > 6 else ""
    return "; ".join(diffs[:6]) + more


def _nonfinite_grad_norm(params: list[torch.nn.Parameter], max_norm: float | None) -> torch.Tensor:
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(
        grads, max_norm=math.inf if max_norm is None else max_norm, error_if_nonfinite=False
    )


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
    stage : {"regression", "diffusion"}
        Name used in messages, in the log and in the checkpoint file name.
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
        ``validate(ema) -> {"name": value}``, run every ``config.validation_every`` samples
        and at the end.
    patches_per_sample : int, default 1
        Patches per sample, to report patches/s.
    progress : bool, default True
        Show a tqdm progress bar.
    seed : int, optional
        Seed of torch's global stream (dropout) for a fresh run; default ``config.seed``.
        Training runs inside :func:`torch.random.fork_rng`, so the caller's stream is kept.

    Returns
    -------
    StageResult

    Raises
    ------
    NonFiniteError
        A non-finite loss or gradient with ``config.on_nonfinite == "raise"``.
    CheckpointMismatchError
        ``config.checkpoint_dir`` holds a checkpoint of this stage for another model.
    """
    cuda = [device.index or 0] if device.type == "cuda" else []
    generators = dict(generators or {})
    rank, _ = current()
    with torch.random.fork_rng(devices=cuda):
        # A fresh run draws dropout from a stream seeded by the configuration; a resumed run
        # restores the stream from the checkpoint. The caller's global state is left as is.
        # In a distributed run, ranks other than 0 draw from streams of their own.
        torch.manual_seed(rank_seed(config.seed if seed is None else seed, rank))
        if rank > 0:
            for g in generators.values():
                g.manual_seed(rank_seed(g.initial_seed(), rank))
        return _run_stage(
            stage=stage,
            net=net,
            loss_fn=loss_fn,
            batches=batches,
            config=config,
            duration=duration,
            fingerprint=fingerprint,
            device=device,
            generators=generators,
            validate=validate,
            patches_per_sample=patches_per_sample,
            progress=progress,
        )


def _run_stage(
    *,
    stage: Stage,
    net: torch.nn.Module,
    loss_fn: LossFn,
    batches: BatchSource,
    config: TrainConfig,
    duration: int,
    fingerprint: Mapping[str, Any],
    device: torch.device,
    generators: dict[str, torch.Generator],
    validate: ValidateFn | None,
    patches_per_sample: int,
    progress: bool,
) -> StageResult:
    if config.channels_last:
        if any(isinstance(m, SongUNet) for m in net.modules()):
            set_channels_last(net)  # NHWC end to end, inputs converted on entry
        else:
            net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.learning_rate, betas=config.betas)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    samples = steps = skipped = 0
    fingerprint = json.loads(json.dumps(dict(fingerprint)))
    rank, world_size = current()
    shards = getattr(batches, "world_size", world_size)
    if shards != world_size:
        raise ValueError(
            f"the batch stream is sharded for world_size={shards} but {world_size} processes "
            "train; build the stream with rank=torch.distributed.get_rank() and "
            "world_size=torch.distributed.get_world_size()"
        )

    directory = Path(config.checkpoint_dir) if config.checkpoint_dir is not None else None
    ckpt_path = directory / f"{stage}-checkpoint.safetensors" if directory else None
    log = JsonlLog(directory / "log.jsonl" if directory and rank == 0 else None)
    resumed_from: int | None = None

    if ckpt_path is not None and rank == 0:
        remove_orphans(ckpt_path)  # temporaries of a run killed while writing
    if ckpt_path is not None and ckpt_path.exists():
        state = read_checkpoint(ckpt_path)
        if state.get("fingerprint") != fingerprint:
            raise CheckpointMismatchError(
                f"checkpoint_dir={config.checkpoint_dir!r} holds a {stage} checkpoint of another "
                f"model ({_describe_difference(state.get('fingerprint') or {}, fingerprint)}); "
                "use a new checkpoint_dir, or delete the old checkpoint to start afresh"
            )
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        batches.load_state_dict(state["data"])
        samples, steps, skipped = state["samples"], state["steps"], state["skipped"]
        saved_ranks = state.get("rng_ranks") or [state["rng"]]
        if rank < len(saved_ranks):
            restore_rng(saved_ranks[rank], generators)
        else:  # resumed with more processes: this rank's streams start afresh
            torch.manual_seed(rank_seed(config.seed, rank, samples))
            for g in generators.values():
                g.manual_seed(rank_seed(g.initial_seed(), rank, samples))
        resumed_from = samples
    # Records past the checkpoint (or of a run that left none) are redone by this run.
    log.rewind(stage, samples)

    def save() -> None:
        """Rank 0 writes (atomically); every rank's random state goes in; all ranks wait."""
        if ckpt_path is None:
            return
        rng = capture_rng(generators)
        extra: dict[str, Any] = {}
        if world_size > 1:
            gathered: list[Any] = [None] * world_size
            torch.distributed.all_gather_object(gathered, rng)
            extra = {"world_size": world_size, "rng_ranks": gathered}
        if rank == 0:
            write_checkpoint(
                ckpt_path,
                {
                    "format": "xcorrdiff-training-checkpoint-1",
                    "stage": stage,
                    "fingerprint": fingerprint,
                    "samples": samples,
                    "steps": steps,
                    "skipped": skipped,
                    "net": net.state_dict(),
                    "ema": ema.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "data": batches.state_dict(),
                    "rng": rng,
                    "config": config.to_dict(),
                    **extra,
                },
            )
        if world_size > 1:
            torch.distributed.barrier()

    history: list[dict[str, Any]] = []

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        log.write(entry)

    def run_validation() -> dict[str, float]:
        if validate is None:
            return {}
        values = {k: float(v) for k, v in validate(ema).items()}
        record({"stage": stage, "event": "validation", "step": steps, "samples": samples, **values})
        return values

    wrapped: torch.nn.Module = net
    if world_size > 1:
        # Gradients are averaged over ranks during backward; the weights start equal
        # (DistributedDataParallel broadcasts rank 0's) and stay equal.
        wrapped = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index or 0] if device.type == "cuda" else None
        )
    train_net = maybe_compile(wrapped, config.compile)
    bar = tqdm(
        total=duration,
        initial=min(samples, duration),
        unit="sample",
        desc=stage,
        disable=not progress or rank > 0,
        dynamic_ncols=True,
    )
    net.train()
    last_time = time.perf_counter()
    try:
        while samples < duration:
            batch = next(batches)
            local_size = _batch_size(batch)
            lr = learning_rate(
                samples,
                base=config.learning_rate,
                rampup=config.lr_rampup,
                decay=config.lr_decay,
                decay_rate=config.lr_decay_rate,
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, config.precision):
                try:
                    loss = loss_fn(train_net, batch)
                except Exception as exc:
                    if train_net is wrapped:
                        raise
                    # torch.compile fails lazily, at the first call: fall back to eager.
                    warnings.warn(
                        f"torch.compile failed ({type(exc).__name__}: {exc}); {stage} stage "
                        "continues in eager mode",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    train_net = wrapped
                    loss = loss_fn(train_net, batch)
            batch_size, loss_value, weight = _global_loss(loss, local_size, world_size)
            problem = None if math.isfinite(loss_value) else f"non-finite loss ({loss_value})"
            grad_norm = math.nan
            if problem is None:
                (loss if weight == 1.0 else loss * weight).backward()
                grad_norm = float(_nonfinite_grad_norm(params, config.grad_clip))
                if not math.isfinite(grad_norm):
                    problem = f"non-finite gradient norm ({grad_norm})"
            steps += 1
            samples += batch_size
            if problem is not None:
                if config.on_nonfinite == "raise":
                    raise NonFiniteError(
                        f"{stage} stage: {problem} at step {steps} (sample {samples}); "
                        "training stopped. Check the data for NaN/inf, lower learning_rate or "
                        "set grad_clip, or pass on_nonfinite='skip' to skip such batches"
                    )
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                record(
                    {
                        "stage": stage,
                        "event": "skipped",
                        "step": steps,
                        "samples": samples,
                        "reason": problem,
                    }
                )
            else:
                optimizer.step()
                update_ema(
                    ema,
                    net,
                    ema_beta(
                        samples,
                        batch_size,
                        halflife=config.ema_halflife,
                        rampup_ratio=config.ema_rampup_ratio,
                    ),
                )
            now = time.perf_counter()
            elapsed, last_time = max(now - last_time, 1e-9), now
            rate = batch_size * patches_per_sample / elapsed
            record(
                {
                    "stage": stage,
                    "event": "step",
                    "step": steps,
                    "samples": samples,
                    "loss": loss_value,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "patches_per_s": rate,
                }
            )
            bar.update(batch_size)
            bar.set_postfix(loss=f"{loss_value:.4g}", patches_s=f"{rate:.1f}", refresh=False)
            crossed = (samples - batch_size) // config.validation_every != (
                samples // config.validation_every
            )
            if crossed and samples < duration:
                run_validation()
            if (samples - batch_size) // config.checkpoint_every != (
                samples // config.checkpoint_every
            ) and samples < duration:
                save()
            last_time = time.perf_counter()  # throughput excludes validation and checkpoints
        if resumed_from is None or resumed_from < duration:
            run_validation()
        save()
    finally:
        bar.close()
        close = getattr(batches, "close", None)
        if callable(close):
            close()
    net.eval()
    return StageResult(
        net=net,
        ema=ema,
        samples=samples,
        steps=steps,
        skipped=skipped,
        history=history,
        resumed_from=resumed_from,
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


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Mapping):
        first = next(iter(batch.values()))
        return int(first.shape[0])
    if isinstance(batch, (tuple, list)):
        return int(batch[0].shape[0])
    return int(batch.shape[0])


@dataclass
class _WorkerError:
    """An exception raised in a DataLoader worker, sent to the training process as is."""

    error: BaseException


class _Forwarding(torch.utils.data.IterableDataset):
    """Iterates a stream in a DataLoader worker and forwards its exception as an item.

    PyTorch re-raises a worker's exception as a new one whose message starts with "Caught
    ValueError in DataLoader worker process 0" followed by the worker's traceback; the
    training process raises the original exception instead (same type, same message).
    """

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from self.stream
        except Exception as exc:
            try:
                pickle.dumps(exc)
            except Exception:  # an exception that cannot travel: keep its type name and text
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            yield _WorkerError(exc)


class StreamBatches:
    """Endless, resumable iteration over a :class:`~xcorrdiff.data.batching.PairedBatchStream`.

    Epochs follow each other; the position (epoch, batches consumed) is what the training
    loop has *consumed*, so a checkpoint resumes at the next unseen batch even when batches
    are prepared ahead in DataLoader workers.

    With a stream sharded over ranks (``world_size > 1``) every rank takes the same number
    of batches per epoch — the fewest any rank's shard holds, so up to ``world_size - 1``
    blocks of an epoch may go unused — and the position counts *global* steps of the epoch,
    the same on every rank. A checkpoint therefore resumes under another world size at the
    same epoch and step (exactly for the same world size; with another one, the rest of that
    epoch follows the new sharding, so a few of its samples may be seen twice or not at all).

    Parameters
    ----------
    stream : PairedBatchStream
        The batch stream (``set_epoch``, ``state_dict``, ``load_state_dict``, ``len``).
    num_workers : int, default 0
        DataLoader worker processes; 0 iterates in this process (the stream still reads
        the next block in a background thread).
    device : torch.device, optional
        Tensors of each batch are moved there.
    """

    def __init__(self, stream: Any, *, num_workers: int = 0, device: torch.device | None = None):
        if len(stream) == 0:
            raise ValueError(
                "the batch stream yields no batch per epoch; use a smaller batch_size or more "
                "training times"
            )
        self.stream = stream
        self.num_workers = num_workers
        self.device = device
        self.epoch = 0
        self.position = 0
        self._iterator: Iterator[Any] | None = None
        self._steps: int | None = None
        num_blocks = len(getattr(stream, "blocks", ()))
        if self.world_size > 1 and num_blocks < self.world_size:
            raise ValueError(
                f"the batch stream has {num_blocks} blocks of times, fewer than the "
                f"{self.world_size} ranks; use a smaller block_size/batch_size, more training "
                "times, or fewer processes"
            )

    @property
    def world_size(self) -> int:
        """Ranks the stream is sharded over (1 when it is not)."""
        return int(getattr(self.stream, "world_size", 1))

    def steps_per_epoch(self, epoch: int) -> int:
        """Batches every rank takes in ``epoch``: the fewest of any rank's shard."""
        counts = []
        for rank in range(self.world_size):
            shadow = copy.copy(self.stream)
            shadow.rank = rank
            shadow.set_epoch(epoch)
            counts.append(len(shadow))
        return min(counts)

    def __iter__(self) -> StreamBatches:
        return self

    def __next__(self) -> Any:
        while True:
            if self.world_size > 1:
                if self._steps is None:
                    self._steps = self.steps_per_epoch(self.epoch)
                if self.position >= self._steps:  # the end of the epoch for every rank
                    self.close()
                    self.epoch += 1
                    self.position = 0
                    self._steps = None
                    continue
            if self._iterator is None:
                self.stream.load_state_dict(self.state_dict())
                if self.num_workers > 0:
                    loader = torch.utils.data.DataLoader(
                        _Forwarding(self.stream), batch_size=None, num_workers=self.num_workers
                    )
                    self._iterator = iter(loader)
                else:
                    self._iterator = iter(self.stream)
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._iterator = None
                self.epoch += 1
                self.position = 0
                self._steps = None
                continue
            if isinstance(batch, _WorkerError):  # the worker's own error, not torch's wrapper
                self.close()
                raise batch.error
            self.position += 1
            if self.device is not None and isinstance(batch, Mapping):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            return batch

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "position", "seed"}``, the position in global steps of the epoch."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.stream.seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.close()
        self.epoch = int(state["epoch"])
        # A position saved under another world size may lie past this sharding's epoch.
        self.position = min(int(state["position"]), self.steps_per_epoch(self.epoch))
        self._steps = None

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if callable(close):
            close()
        self._iterator = None

"""What the training loop reads batches from: an endless, resumable stream.

:class:`StreamBatches` iterates a :class:`~xcorrdiff.data.batching.PairedBatchStream` epoch
after epoch, in this process or in DataLoader workers, and remembers the position the loop
has *consumed* so that a checkpoint resumes at the next unseen batch.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

__all__ = ["BatchSource", "StreamBatches", "batch_size"]


class BatchSource(Protocol):
    """What :func:`run_stage` needs from a data stream: batches and a resumable position."""

    def __next__(self) -> Any: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def batch_size(batch: Any) -> int:
    """Samples in a batch (a mapping, a sequence or a tensor of them)."""
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

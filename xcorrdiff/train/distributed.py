"""Data-parallel training across processes (``torchrun``, or any launcher setting ``RANK``).

A training run is distributed when ``torch.distributed`` is initialized, or when the
environment variables of a launcher (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``, ``LOCAL_RANK``) say ``WORLD_SIZE > 1``; :func:`init_distributed` then
initializes the default process group (``nccl`` on CUDA, ``gloo`` on CPU) and leaves it
initialized for the rest of the program. Each rank trains on its own shard of the data
(:class:`~xcorrdiff.data.batching.PairedBatchStream` ``rank=``/``world_size=``) with
``batch_size / world_size`` samples per step, so that one optimizer step still sees the
configured (global) ``batch_size``; a ``batch_size`` not divisible by the world size is an
error (no gradient accumulation).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from xcorrdiff._checks import resolve_device

__all__ = ["DistributedContext", "current", "init_distributed", "local_batch_size", "rank_seed"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a data-parallel run.

    Attributes
    ----------
    rank, world_size : int
        This process's rank and the number of processes (``0, 1`` without distribution).
    local_rank : int
        Rank on this node (selects the GPU).
    device : torch.device
        Where this rank trains.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        """More than one process takes part."""
        return self.world_size > 1


def current() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialized default process group, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from exc


def init_distributed(device: str | None = None) -> DistributedContext:
    """The distributed context of this process, initializing the process group if needed.

    Parameters
    ----------
    device : str, optional
        ``TrainConfig.runtime.device``. In a distributed run ``None`` and ``"cuda"`` mean
        ``cuda:LOCAL_RANK``; an explicit ``"cuda:N"`` is kept.

    Returns
    -------
    DistributedContext

    Raises
    ------
    ValueError
        ``WORLD_SIZE > 1`` but ``MASTER_ADDR``/``MASTER_PORT`` are not set, or ``RANK``
        is missing.
    """
    rank, world_size = current()
    if world_size == 1 and _env_int("WORLD_SIZE", 1) > 1:
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ValueError(
                f"WORLD_SIZE={os.environ['WORLD_SIZE']} asks for distributed training but "
                f"{missing} are not set; launch with torchrun --nproc_per_node N (which sets "
                "them) or set them yourself"
            )
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        local_rank = _env_int("LOCAL_RANK", 0)
        resolved = resolve_device(device, local_rank=local_rank)
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
        rank, world_size = current()
    if world_size == 1:
        return DistributedContext(0, 1, 0, resolve_device(device))
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    local_rank = _env_int("LOCAL_RANK", rank % count if count else 0)
    resolved = resolve_device(device, local_rank=local_rank)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    return DistributedContext(rank, world_size, local_rank, resolved)


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Samples per rank and step: ``batch_size / world_size``.

    Raises
    ------
    ValueError
        ``batch_size`` is not a multiple of ``world_size``.

    Examples
    --------
    >>> local_batch_size(8, 4)
    2
    """
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the world size {world_size}; each "
            f"rank takes batch_size / world_size samples per step, so use a multiple of "
            f"{world_size} (e.g. {max(batch_size // world_size, 1) * world_size}) or another "
            "number of processes"
        )
    return batch_size // world_size


def rank_seed(seed: int, rank: int, *extra: int) -> int:
    """A seed for ``rank``'s random streams: ``seed`` itself for rank 0, mixed otherwise."""
    if rank == 0 and not extra:
        return int(seed)
    state = np.random.SeedSequence([int(seed), int(rank), *map(int, extra)]).generate_state(2)
    return (int(state[0]) << 31) ^ int(state[1])

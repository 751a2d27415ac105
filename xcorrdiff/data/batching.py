"""Paired (condition, target) samples → training batches, streamed from dask/zarr.

A :class:`PairedBatchStream` turns a prepared condition ``(time, C_in, H, W)`` (low-resolution
inputs already on the high-resolution grid, plus invariants) and a target
``(time, C_out, H, W)`` into torch batches. Like xbatcher, the plan of an epoch is pure
index arithmetic: which *blocks* of times (whole dask chunks, merged up to ``block_size``)
come in which order, and which times form each batch. Data are read one block at a time —
one ``dask.compute`` per block — and the next block is read in a background thread while the
current one is used, so at most two blocks are in memory.

Each batch holds the full-domain fields of ``batch_size`` times and, for each time,
``patches_per_sample`` random patch corners. CorrDiff's diffusion stage evaluates the
regression mean μ once per time on the full domain and cuts the residual ``target − μ`` at
every corner (Mardani et al. 2025, "multi-iteration patching"), so one regression pass serves
``patches_per_sample`` diffusion samples.

Randomness depends on ``(seed, epoch, block, batch)`` only: the same seed gives the same
batches whether or not blocks are prefetched, and the same *set* of batches for any number
of DataLoader workers or DDP ranks (only their order changes).

Examples
--------
>>> import numpy as np
>>> condition = np.random.default_rng(0).normal(size=(10, 3, 32, 32)).astype("float32")
>>> target = np.random.default_rng(1).normal(size=(10, 2, 32, 32)).astype("float32")
>>> stream = PairedBatchStream(condition, target, batch_size=4, patch_shape=(16, 16),
...                            patches_per_sample=3, seed=0)
>>> batch = next(iter(stream))
>>> tuple(batch["condition"].shape), tuple(batch["offsets"].shape)
((4, 3, 32, 32), (4, 3, 2))
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Hashable, Iterator, Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import pandas as pd
import torch
from torch.utils.data import IterableDataset, get_worker_info

from xcorrdiff.data.batch_inputs import (
    Source,
    as_array,
    check_times,
    make_blocks,
    round_robin,
    seed_of,
    time_chunks,
)
from xcorrdiff.data.convert import to_tensor
from xcorrdiff.diffusion.patching import extract_patches, random_patch_offsets

__all__ = ["PairedBatchStream"]


# --- the stream --------------------------------------------------------------------------


class PairedBatchStream(IterableDataset[dict[str, torch.Tensor]]):
    """Shuffled, seeded, resumable batches of paired (condition, target) samples.

    Parameters
    ----------
    condition : xarray.Dataset, xarray.DataArray, numpy.ndarray or dask.array.Array
        Prepared network input on the high-resolution grid, ``(time, C_in, H, W)``
        (a Dataset is stacked with :func:`~xcorrdiff.data.convert.dataset_to_array`;
        invariants without time are broadcast). Normalized, finite values.
    target : same types as ``condition``
        High-resolution truth, ``(time, C_out, H, W)``, normalized.
    condition_variables, target_variables : sequence of str, optional
        Variables (Dataset), channel labels (DataArray) or names of the channels (array),
        in channel order. Default: all data variables / channels.
    batch_size : int
        Times per batch ``B``.
    patch_shape : tuple of int, optional
        ``(h, w)`` of the training patches; default: the whole domain ``(H, W)``.
    patches_per_sample : int, default 1
        Patch corners ``k`` drawn for each time.
    time_indices : sequence of int, optional
        Positions along time to use (e.g. the training part of :func:`split_times`);
        default: all.
    shuffle : bool, default True
        Shuffle the block order and the times inside each block, anew every epoch.
        ``False`` keeps time order (validation).
    seed : int, default 0
        Seed of every random draw (block order, times, patch corners).
    block_size : int, optional
        Minimum number of times read at once; blocks are whole time chunks of the dask
        arrays, consecutive chunks merged until they hold ``block_size`` times. Default:
        ``batch_size``. For numpy input, the block length.
    drop_last : bool, default False
        Drop a block's last batch when it has fewer than ``batch_size`` times.
    prefetch : bool, default True
        Read the next block in a background thread while the current one is used.
    return_patches : bool, default False
        Also return the patches cut at ``offsets`` (for a regression stage trained on
        patches).
    check_finite : bool, default True
        Check each block when it is read and raise on NaN/inf, naming the variable and
        the count. The check runs per block (no extra pass over the data), so a bad value
        is reported when its block is first reached.
    missing_target : bool, default False
        NaN in the target marks a missing value (ocean of a land-only data set, outside a
        radar's range) instead of an error: each batch then carries ``"mask"`` (1 where
        observed, 0 where missing, shaped like ``"target"``) and the target holds 0 where
        it is missing. Infinities still raise.
    rank, world_size : int, default 0, 1
        Distributed data parallel: each rank takes every ``world_size``-th block of the
        epoch's block order.
    scheduler : str, optional
        Dask scheduler for block reads. Default: dask's configured scheduler in the main
        process and ``"synchronous"`` inside DataLoader workers (which are already parallel).
    channels_last : bool, default False
        Return ``condition`` and ``target`` in torch's ``channels_last`` memory format (the
        shape stays ``(B, C, H, W)``).
    dims : tuple of str, default ``("time", "y", "x")``
        Dimension names of xarray input.
    dtype : numpy dtype, default float32
        Dtype of the tensors.

    Yields
    ------
    dict of str to torch.Tensor
        ``"condition"`` ``(B, C_in, H, W)``, ``"target"`` ``(B, C_out, H, W)``,
        ``"offsets"`` ``(B, k, 2)`` int64 top-left ``(y, x)`` corners of the patches,
        ``"time_index"`` ``(B,)`` int64 positions along the input's time axis; with
        ``return_patches``, ``"condition_patches"`` ``(B * k, C_in, h, w)`` and
        ``"target_patches"`` ``(B * k, C_out, h, w)``, ordered time-major (patch ``j`` of
        time ``b`` at ``b * k + j``).

    Raises
    ------
    ValueError
        Time coordinates of ``condition`` and ``target`` differ or do not overlap; spatial
        shapes differ; ``patch_shape`` is larger than the domain; a block holds NaN/inf.

    Attributes
    ----------
    blocks : list of numpy.ndarray
        Sorted time positions of each block (whole chunks); :meth:`block_order` gives the
        order in which this rank reads them.
    condition_variables, target_variables : list of str
        Channel names, used in error messages.
    times : pandas.Index or None
        The time coordinate of xarray input.
    domain_shape, patch_shape : tuple of int
        ``(H, W)`` and ``(h, w)``.
    num_blocks_loaded : int
        Blocks read by this process so far (a diagnostic).

    Notes
    -----
    Epochs are explicit, as with :class:`torch.utils.data.DistributedSampler`: iterating
    in the main process (or a ``DataLoader`` with ``num_workers=0``) yields the rest of
    the current epoch and then advances to the next one; with ``num_workers > 0`` the
    workers hold copies, so call :meth:`set_epoch` before each epoch and pass the number of
    batches consumed to :meth:`state_dict` (``persistent_workers=True`` would keep stale
    copies: leave it off). Use ``DataLoader(stream, batch_size=None)``: the stream already
    batches. Blocks are split across workers without overlap, and a resumed stream
    continues DataLoader's round-robin exactly where it stopped.
    """

    def __init__(
        self,
        condition: Source,
        target: Source,
        *,
        condition_variables: Sequence[Hashable] | None = None,
        target_variables: Sequence[Hashable] | None = None,
        batch_size: int,
        patch_shape: tuple[int, int] | None = None,
        patches_per_sample: int = 1,
        time_indices: Sequence[int] | np.ndarray | None = None,
        shuffle: bool = True,
        seed: int = 0,
        block_size: int | None = None,
        drop_last: bool = False,
        prefetch: bool = True,
        return_patches: bool = False,
        check_finite: bool = True,
        missing_target: bool = False,
        rank: int = 0,
        world_size: int = 1,
        scheduler: str | None = None,
        channels_last: bool = False,
        dims: Sequence[Hashable] = ("time", "y", "x"),
        dtype: Any = np.float32,
    ) -> None:
        super().__init__()
        dims3 = tuple(dims)
        if len(dims3) != 3:
            raise ValueError(f"dims must name (time, y, x); got {dims3!r}")
        for arg, value in (
            ("batch_size", batch_size),
            ("patches_per_sample", patches_per_sample),
            ("world_size", world_size),
        ):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{arg} must be a positive integer; got {value!r}")
        if block_size is not None and (
            not isinstance(block_size, (int, np.integer)) or block_size < 1
        ):
            raise ValueError(f"block_size must be a positive integer or None; got {block_size!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}); got {rank!r}")
        self.dtype = np.dtype(dtype)

        self._condition, self.condition_variables, condition_times = as_array(
            condition, condition_variables, name="condition", dims=dims3, dtype=self.dtype
        )
        self._target, self.target_variables, target_times = as_array(
            target, target_variables, name="target", dims=dims3, dtype=self.dtype
        )
        check_times(condition_times, target_times, self._condition.shape, self._target.shape)
        if self._condition.shape[2:] != self._target.shape[2:]:
            raise ValueError(
                f"condition has spatial shape {self._condition.shape[2:]} but target has "
                f"{self._target.shape[2:]}; regrid the condition onto the target grid first"
            )
        n_times = self._target.shape[0]
        self.times: pd.Index | None = target_times if target_times is not None else condition_times
        self.domain_shape: tuple[int, int] = (
            int(self._target.shape[2]),
            int(self._target.shape[3]),
        )
        patch = self.domain_shape if patch_shape is None else tuple(patch_shape)
        if len(patch) != 2 or any(int(side) != side or side < 1 for side in patch):
            raise ValueError(f"patch_shape must be two positive ints (h, w); got {patch_shape!r}")
        self.patch_shape: tuple[int, int] = (int(patch[0]), int(patch[1]))
        if self.patch_shape[0] > self.domain_shape[0] or self.patch_shape[1] > self.domain_shape[1]:
            raise ValueError(
                f"patch_shape {self.patch_shape} is larger than the domain {self.domain_shape}; "
                "use a smaller patch or pad the domain"
            )

        if time_indices is None:
            indices = np.arange(n_times, dtype=np.int64)
        else:
            indices = np.unique(np.asarray(time_indices, dtype=np.int64))
            if len(indices) != len(np.asarray(time_indices)):
                raise ValueError("time_indices lists a time twice; expected unique positions")
            if len(indices) and (indices[0] < 0 or indices[-1] >= n_times):
                raise ValueError(
                    f"time_indices must lie in [0, {n_times}); got values from {indices[0]} "
                    f"to {indices[-1]}"
                )
        if len(indices) == 0:
            raise ValueError("no time to draw batches from: time_indices is empty")

        self.batch_size = int(batch_size)
        self.patches_per_sample = int(patches_per_sample)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.prefetch = prefetch
        self.return_patches = return_patches
        self.check_finite = check_finite
        self.missing_target = missing_target
        self.rank = rank
        self.world_size = world_size
        self.scheduler = scheduler
        self.channels_last = channels_last
        self.block_size = int(block_size or batch_size)
        bounds = time_chunks([self._condition, self._target], n_times, self.block_size)
        self.blocks: list[np.ndarray] = make_blocks(bounds, indices, self.block_size)
        self.num_blocks_loaded = 0
        self._epoch = 0
        self._position = 0

    # --- the plan (index arithmetic only) ------------------------------------------------

    def block_order(self, epoch: int | None = None) -> list[int]:
        """Ids of the blocks (indices into :attr:`blocks`) this rank reads, in order.

        Parameters
        ----------
        epoch : int, optional
            Default: the current epoch.
        """
        epoch = self._epoch if epoch is None else epoch
        order = np.arange(len(self.blocks))
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        return [int(b) for b in order[self.rank :: self.world_size]]

    def _block_batches(self, epoch: int, block: int) -> list[np.ndarray]:
        """Time positions of each batch of ``block`` in ``epoch``."""
        times = self.blocks[block]
        if self.shuffle:
            times = np.random.default_rng([self.seed, epoch, block, 0]).permutation(times)
        count = (
            len(times) // self.batch_size if self.drop_last else -(-len(times) // self.batch_size)
        )
        return [times[i * self.batch_size : (i + 1) * self.batch_size] for i in range(count)]

    def _num_batches(self, block: int) -> int:
        n = len(self.blocks[block])
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (all workers together)."""
        return sum(self._num_batches(b) for b in self.block_order(self._epoch))

    # --- epoch and position ----------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """The epoch the next iteration draws from."""
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (call before each epoch with workers)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0; got {epoch}")
        self._epoch = int(epoch)
        self._position = 0

    def state_dict(self, position: int | None = None) -> dict[str, int]:
        """Where the stream stands: ``{"epoch", "position", "seed"}``.

        Parameters
        ----------
        position : int, optional
            Batches of the current epoch already consumed. Default: the count kept by
            iteration in this process; pass the training loop's own count when the stream
            runs in DataLoader workers.
        """
        return {
            "epoch": self._epoch,
            "position": self._position if position is None else int(position),
            "seed": self.seed,
        }

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Continue from a :meth:`state_dict`: the next batch is batch ``position + 1``.

        Raises
        ------
        ValueError
            The state was saved with another seed, or its position is past the epoch.
        """
        if "seed" in state and int(state["seed"]) != self.seed:
            raise ValueError(
                f"state was saved with seed {state['seed']} but this stream has seed "
                f"{self.seed}; construct the stream with seed={state['seed']} to resume"
            )
        epoch, position = int(state["epoch"]), int(state["position"])
        self.set_epoch(epoch)
        if not 0 <= position <= len(self):
            raise ValueError(
                f"state position {position} is outside epoch {epoch}, which has {len(self)} batches"
            )
        self._position = position

    # --- reading ---------------------------------------------------------------------------

    def _read_block(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        """Load one block, ``(n, C_in, H, W)`` and ``(n, C_out, H, W)``, with one compute."""
        times = self.blocks[block]
        contiguous = times[-1] - times[0] + 1 == len(times)
        sel: slice | np.ndarray = slice(int(times[0]), int(times[-1]) + 1) if contiguous else times
        parts = [self._condition[sel], self._target[sel]]
        lazy = [i for i, p in enumerate(parts) if isinstance(p, da.Array)]
        if lazy:
            scheduler = self.scheduler
            if scheduler is None and get_worker_info() is not None:
                scheduler = "synchronous"
            loaded = dask.compute(*(parts[i] for i in lazy), scheduler=scheduler)
            for i, value in zip(lazy, loaded, strict=True):
                parts[i] = value
        condition, target = (np.ascontiguousarray(p, dtype=self.dtype) for p in parts)
        self.num_blocks_loaded += 1
        if self.check_finite:
            self._raise_if_nonfinite(
                target, self.target_variables, "target", times, allow_nan=self.missing_target
            )
            self._raise_if_nonfinite(condition, self.condition_variables, "condition", times)
        return condition, target

    def _raise_if_nonfinite(
        self,
        values: np.ndarray,
        names: Sequence[str],
        role: str,
        times: np.ndarray,
        *,
        allow_nan: bool = False,
    ) -> None:
        bad = np.isinf(values) if allow_nan else ~np.isfinite(values)
        if not bad.any():
            return
        counts = bad.sum(axis=(0, 2, 3))
        found = ", ".join(f"{names[int(c)]!r}: {int(counts[c])}" for c in np.flatnonzero(counts))
        first = int(times[np.flatnonzero(bad.any(axis=(1, 2, 3)))[0]])
        label = f" ({self.times[first]})" if self.times is not None else ""
        raise ValueError(
            f"{role} has non-finite (NaN/inf) values in the block of times {times[0]}..{times[-1]}: "
            f"{found} (first at time position {first}{label}); fill them or drop those times "
            "(e.g. time_indices=...) before training"
        )

    def _make_batch(
        self,
        condition: np.ndarray,
        target: np.ndarray,
        block_times: np.ndarray,
        batch_times: np.ndarray,
        generator: torch.Generator,
    ) -> dict[str, torch.Tensor]:
        rows = np.searchsorted(block_times, batch_times)
        target = target[rows]
        batch = {"condition": to_tensor(condition[rows], channels_last=self.channels_last)}
        if self.missing_target:
            observed = ~np.isnan(target)
            batch["mask"] = to_tensor(observed.astype(self.dtype), channels_last=self.channels_last)
            target = np.where(observed, target, 0).astype(self.dtype)
        batch["target"] = to_tensor(target, channels_last=self.channels_last)
        n = len(batch_times)
        offsets = random_patch_offsets(
            self.domain_shape, self.patch_shape, n * self.patches_per_sample, generator
        )
        batch["offsets"] = torch.as_tensor(offsets, dtype=torch.int64).reshape(
            n, self.patches_per_sample, 2
        )
        batch["time_index"] = torch.from_numpy(batch_times.astype(np.int64))
        if self.return_patches:
            for key in [k for k in ("condition", "target", "mask") if k in batch]:
                batch[f"{key}_patches"] = extract_patches(
                    batch[key], batch["offsets"], self.patch_shape
                )
        return batch

    def _iter_blocks(
        self, epoch: int, blocks: Sequence[int], skip: int
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``blocks`` in order, without the first ``skip``; one block ahead."""
        plan: list[tuple[int, int, list[np.ndarray]]] = []
        for block in blocks:
            batches = self._block_batches(epoch, block)
            start = min(skip, len(batches))
            skip -= start
            if start < len(batches):
                plan.append((block, start, batches))
        if not plan:
            return
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1) if self.prefetch else None
        try:
            pending = pool.submit(self._read_block, plan[0][0]) if pool else None
            for i, (block, start, batches) in enumerate(plan):
                data = pending.result() if pending is not None else self._read_block(block)
                if pool is not None and i + 1 < len(plan):
                    pending = pool.submit(self._read_block, plan[i + 1][0])
                for j in range(start, len(batches)):
                    generator = torch.Generator().manual_seed(
                        seed_of(self.seed, epoch, block, j + 1)
                    )
                    yield self._make_batch(*data, self.blocks[block], batches[j], generator)
                del data
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        epoch = self._epoch
        blocks = self.block_order(epoch)
        info = get_worker_info()
        if info is None:
            for batch in self._iter_blocks(epoch, blocks, self._position):
                self._position += 1
                yield batch
            self._epoch, self._position = epoch + 1, 0
            return
        # DataLoader worker: shards in the cyclic order DataLoader reads them, rotated so a
        # resumed stream continues with the shard that was next.
        shards = [blocks[s :: info.num_workers] for s in range(info.num_workers)]
        counts = [sum(self._num_batches(b) for b in shard) for shard in shards]
        done, next_shard = round_robin(counts, self._position)
        shard = (info.id + next_shard) % info.num_workers
        yield from self._iter_blocks(epoch, shards[shard], done[shard])

"""What a :class:`~xcorrdiff.data.batching.PairedBatchStream` is built from: its inputs as
arrays, their times, the plan of blocks, the per-block seeds and the patches of a batch."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import torch
import xarray as xr

from xcorrdiff.data.convert import dataset_to_array
from xcorrdiff.diffusion.patching import extract_patches

__all__ = [
    "ArrayLike",
    "Source",
    "as_array",
    "check_times",
    "extract_sample_patches",
    "make_blocks",
    "round_robin",
    "seed_of",
    "time_chunks",
    "time_span",
]

ArrayLike = np.ndarray | da.Array
Source = xr.Dataset | xr.DataArray | np.ndarray | da.Array


def as_array(
    obj: Source,
    variables: Sequence[Hashable] | None,
    *,
    name: str,
    dims: tuple[Hashable, Hashable, Hashable],
    dtype: np.dtype[Any],
) -> tuple[ArrayLike, list[str], pd.Index | None]:
    """``(array (time, channel, y, x), channel names, time coordinate or None)``."""
    time_dim, y_dim, x_dim = dims
    if isinstance(obj, xr.Dataset):
        array = dataset_to_array(obj, variables, dims=dims, dtype=dtype)
        if isinstance(variables, str):
            variables = [variables]
        names = [str(v) for v in (obj.data_vars if variables is None else variables)]
        times = obj.indexes.get(time_dim)
        return array, names, times
    if isinstance(obj, xr.DataArray):
        if obj.ndim == 3:
            obj = obj.expand_dims("channel", axis=1)
            if obj.name is not None:
                obj = obj.assign_coords(channel=[obj.name])
        channel_dims = [d for d in obj.dims if d not in dims]
        if obj.ndim != 4 or len(channel_dims) != 1 or not {time_dim, y_dim, x_dim} <= set(obj.dims):
            raise ValueError(
                f"{name} DataArray has dims {obj.dims}; expected ({time_dim!r}, <channel>, "
                f"{y_dim!r}, {x_dim!r}) or ({time_dim!r}, {y_dim!r}, {x_dim!r})"
            )
        channel_dim = channel_dims[0]
        if variables is not None:
            obj = obj.sel({channel_dim: list(variables)})
        obj = obj.transpose(time_dim, channel_dim, y_dim, x_dim)
        if channel_dim in obj.coords:
            names = [str(v) for v in obj[channel_dim].values]
        else:
            names = [f"{name}[{i}]" for i in range(obj.shape[1])]
        data = obj.data
        array = data.astype(dtype, copy=False) if isinstance(data, da.Array) else data
        return array, names, obj.indexes.get(time_dim)
    if isinstance(obj, (np.ndarray, da.Array)):
        if obj.ndim != 4:
            raise ValueError(
                f"{name} array has shape {obj.shape}; expected 4-D (time, channel, y, x)"
            )
        if variables is not None and len(list(variables)) != obj.shape[1]:
            raise ValueError(
                f"{name}_variables names {len(list(variables))} channels {list(variables)} "
                f"but the {name} array has {obj.shape[1]} (shape {obj.shape})"
            )
        names = (
            [str(v) for v in variables]
            if variables is not None
            else [f"{name}[{i}]" for i in range(obj.shape[1])]
        )
        return obj, names, None
    raise TypeError(
        f"{name} must be an xarray Dataset/DataArray or a numpy/dask array of shape "
        f"(time, channel, y, x); got {type(obj).__name__}"
    )


def check_times(
    condition_times: pd.Index | None,
    target_times: pd.Index | None,
    condition_shape: tuple[int, ...],
    target_shape: tuple[int, ...],
) -> None:
    if condition_times is not None and target_times is not None:
        if condition_times.equals(target_times):
            return
        common = condition_times.intersection(target_times)
        if len(common) == 0:
            raise ValueError(
                "condition and target have no common time: condition has "
                f"{len(condition_times)} times {time_span(condition_times)}, target has "
                f"{len(target_times)} times {time_span(target_times)}"
            )
        raise ValueError(
            f"condition and target time coordinates differ: {len(condition_times)} and "
            f"{len(target_times)} times, {len(common)} in common; align them first, e.g. "
            "condition, target = xr.align(condition, target, join='inner')"
        )
    if condition_shape[0] != target_shape[0]:
        raise ValueError(
            f"condition has {condition_shape[0]} times (shape {condition_shape}) but target "
            f"has {target_shape[0]} (shape {target_shape}); expected paired samples"
        )


def time_span(times: pd.Index) -> str:
    return f"from {times[0]} to {times[-1]}" if len(times) else "(none)"


def time_chunks(arrays: Sequence[ArrayLike], n_times: int, default: int) -> np.ndarray:
    """Chunk boundaries along time shared by all arrays: ``[0, ..., n_times]``."""
    bounds = {0, n_times}
    lazy = False
    for array in arrays:
        if isinstance(array, da.Array):
            lazy = True
            bounds.update(np.cumsum(array.chunks[0]).tolist())
    if not lazy:
        bounds.update(range(0, n_times, max(default, 1)))
    return np.array(sorted(bounds), dtype=np.int64)


def make_blocks(bounds: np.ndarray, indices: np.ndarray, min_size: int) -> list[np.ndarray]:
    """Group sorted time positions by chunk, merging whole chunks up to ``min_size`` times."""
    chunk_of = np.searchsorted(bounds, indices, side="right") - 1
    cut = np.flatnonzero(np.diff(chunk_of)) + 1
    groups = np.split(indices, cut) if len(indices) else []
    blocks: list[np.ndarray] = []
    current: list[np.ndarray] = []
    size = 0
    for group in groups:
        current.append(group)
        size += len(group)
        if size >= min_size:
            blocks.append(np.concatenate(current))
            current, size = [], 0
    if current:
        tail = np.concatenate(current)
        if blocks:
            blocks[-1] = np.concatenate([blocks[-1], tail])
        else:
            blocks.append(tail)
    return blocks


def seed_of(*entropy: int) -> int:
    """A 63-bit seed for a torch Generator from ``(seed, epoch, block, ...)``."""
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def round_robin(counts: Sequence[int], position: int) -> tuple[list[int], int]:
    """Batches each shard has yielded after ``position`` batches of a round-robin merge.

    DataLoader (``in_order=True``) takes one batch from each worker in turn and skips
    exhausted workers. Returns the per-shard counts and the shard that comes next.
    """
    done = [0] * len(counts)
    shard = 0
    remaining = min(position, sum(counts))
    while remaining > 0:
        if done[shard] < counts[shard]:
            done[shard] += 1
            remaining -= 1
        shard = (shard + 1) % len(counts)
    return done, shard


def extract_sample_patches(
    x: torch.Tensor, offsets: torch.Tensor, patch_shape: Sequence[int]
) -> torch.Tensor:
    """Cut each sample's own patches, as laid out in a batch's ``"offsets"``.

    A thin alias of :func:`~xcorrdiff.diffusion.patching.extract_patches` that only takes
    per-sample ``(B, k, 2)`` corners; prefer ``extract_patches``, which also takes shared
    ``(n, 2)`` ones.

    Parameters
    ----------
    x : torch.Tensor
        Fields ``(B, C, H, W)``.
    offsets : torch.Tensor
        Integer ``(B, k, 2)`` top-left ``(y, x)`` corners, ``k`` per sample.
    patch_shape : (int, int)
        Patch size ``(h, w)``.

    Returns
    -------
    torch.Tensor
        ``(B * k, C, h, w)``, time-major: patch ``j`` of sample ``b`` at row ``b * k + j``.

    Raises
    ------
    ValueError
        ``offsets`` is not ``(B, k, 2)`` with the batch size of ``x``, or a patch reaches
        outside the domain.
    """
    if offsets.ndim != 3:
        raise ValueError(
            f"offsets must have shape (B, k, 2), one set of corners per sample, got shape "
            f"{tuple(offsets.shape)}; use xcorrdiff.diffusion.extract_patches for shared "
            "(n, 2) corners"
        )
    return extract_patches(x, offsets, patch_shape)

"""Training batches from paired data (xcorrdiff.data.batching)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader

from xcorrdiff.data.batch_inputs import extract_sample_patches
from xcorrdiff.data.batching import PairedBatchStream
from xcorrdiff.data.convert import dataset_to_array
from xcorrdiff.data.split import split_times
from xcorrdiff.diffusion import extract_patches

N_TIME, NY, NX = 24, 16, 12
COND_VARS = ["u10", "v10", "orography"]
TARGET_VARS = ["t2m", "tp"]


def _pair(n_time: int = N_TIME, chunk: int | None = None) -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(42)
    times = pd.date_range("2021-01-01", periods=n_time, freq="1h")
    coords = {"time": times, "y": np.arange(NY), "x": np.arange(NX)}
    field = ("time", "y", "x")
    condition = xr.Dataset(
        {
            "u10": (field, rng.normal(size=(n_time, NY, NX))),
            "v10": (field, rng.normal(size=(n_time, NY, NX))),
            "orography": (("y", "x"), rng.normal(size=(NY, NX))),
        },
        coords=coords,
    )
    target = xr.Dataset(
        {
            "t2m": (field, rng.normal(size=(n_time, NY, NX)), {"units": "K"}),
            "tp": (field, rng.normal(size=(n_time, NY, NX)), {"units": "mm"}),
        },
        coords=coords,
    )
    if chunk is not None:
        condition, target = condition.chunk(time=chunk), target.chunk(time=chunk)
    return condition, target


def _reference() -> tuple[np.ndarray, np.ndarray]:
    condition, target = _pair()
    return (
        np.asarray(dataset_to_array(condition, COND_VARS)),
        np.asarray(dataset_to_array(target, TARGET_VARS)),
    )


def _stream(condition: Any, target: Any, **kwargs: Any) -> PairedBatchStream:
    defaults: dict[str, Any] = {"batch_size": 4, "patch_shape": (8, 8), "patches_per_sample": 3}
    if isinstance(condition, xr.Dataset):
        defaults |= {"condition_variables": COND_VARS, "target_variables": TARGET_VARS}
    return PairedBatchStream(condition, target, **(defaults | kwargs))


def _times(batches: list[dict[str, torch.Tensor]]) -> list[list[int]]:
    return [b["time_index"].tolist() for b in batches]


def _flat(times: list[list[int]]) -> list[int]:
    return [t for batch in times for t in batch]


def _seen(batches: Any) -> list[int]:
    """Time positions of an epoch's batches, in the order seen."""
    return _flat(_times(list(batches)))


def _assert_same_batches(
    a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]
) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=0)


@pytest.fixture(params=["numpy", "dask", "zarr"])
def pair(request: pytest.FixtureRequest, tmp_path: Any) -> tuple[xr.Dataset, xr.Dataset]:
    condition, target = _pair()
    if request.param == "dask":
        return condition.chunk(time=5), target.chunk(time=5)
    if request.param == "zarr":
        condition.chunk(time=5).to_zarr(tmp_path / "condition.zarr", consolidated=False)
        target.chunk(time=5).to_zarr(tmp_path / "target.zarr", consolidated=False)
        return (
            xr.open_zarr(tmp_path / "condition.zarr", consolidated=False),
            xr.open_zarr(tmp_path / "target.zarr", consolidated=False),
        )
    return condition, target


# --- content and layout --------------------------------------------------------------------


def test_batches_hold_the_right_samples(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    condition_ref, target_ref = _reference()
    stream = _stream(*pair, return_patches=True)
    batches = list(stream)
    seen = []
    for batch in batches:
        b = len(batch["time_index"])
        assert batch["condition"].shape == (b, 3, NY, NX)
        assert batch["target"].shape == (b, 2, NY, NX)
        assert batch["offsets"].shape == (b, 3, 2)
        assert batch["offsets"].dtype == torch.int64
        assert batch["condition"].dtype == torch.float32
        assert batch["condition_patches"].shape == (b * 3, 3, 8, 8)
        assert batch["target_patches"].shape == (b * 3, 2, 8, 8)
        index = batch["time_index"].numpy()
        np.testing.assert_array_equal(batch["condition"].numpy(), condition_ref[index])
        np.testing.assert_array_equal(batch["target"].numpy(), target_ref[index])
        offsets = batch["offsets"].numpy()
        assert (offsets >= 0).all()
        assert (offsets[..., 0] <= NY - 8).all() and (offsets[..., 1] <= NX - 8).all()
        # Patch j of sample i sits at row i * k + j, cut at its own corner.
        i, j = b - 1, 2
        y, x = offsets[i, j]
        np.testing.assert_array_equal(
            batch["target_patches"][i * 3 + j].numpy(),
            target_ref[index[i], :, y : y + 8, x : x + 8],
        )
        seen.extend(index.tolist())
    # One epoch: every time exactly once.
    assert sorted(seen) == list(range(N_TIME))
    # numpy: blocks of 4 times; dask/zarr: the chunks of 5 (and 4) times, batches of 4 and 1.
    expected = [4] * 6 if isinstance(pair[1]["t2m"].data, np.ndarray) else [5, 5, 5, 5, 4]
    assert [len(b) for b in stream.blocks] == expected
    assert len(batches) == len(stream) == sum(-(-n // 4) for n in expected)


def test_default_patch_is_the_whole_domain_and_channels_last() -> None:
    condition, target = _reference()
    batch = next(iter(PairedBatchStream(condition, target, batch_size=2, channels_last=True)))
    assert batch["offsets"].shape == (2, 1, 2)
    assert not batch["offsets"].any()
    assert batch["condition"].shape == (2, 3, NY, NX)
    assert batch["condition"].is_contiguous(memory_format=torch.channels_last)


def test_extract_sample_patches_uses_each_samples_corners() -> None:
    x = torch.arange(2 * 1 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    offsets = torch.tensor([[[0, 0], [2, 3]], [[1, 1], [3, 4]]])
    patches = extract_sample_patches(x, offsets, (2, 2))
    assert patches.shape == (4, 1, 2, 2)
    torch.testing.assert_close(patches[1], x[0, :, 2:4, 3:5])
    torch.testing.assert_close(patches[3], x[1, :, 3:5, 4:6])
    assert torch.equal(patches, extract_patches(x, offsets, (2, 2)))
    with pytest.raises(ValueError, match=r"need x of shape \(1, C, H, W\)"):
        extract_sample_patches(x, offsets[:1], (2, 2))
    with pytest.raises(ValueError, match=r"offsets must have shape \(B, k, 2\)"):
        extract_sample_patches(x, offsets[0], (2, 2))


def test_dataarray_and_array_inputs() -> None:
    condition, target = _pair()
    stacked = condition.to_array("channel").transpose("time", "channel", "y", "x")
    stream = PairedBatchStream(stacked, target["t2m"], batch_size=4, seed=3)
    assert stream.condition_variables == COND_VARS
    assert stream.target_variables == ["t2m"]
    batch = next(iter(stream))
    np.testing.assert_allclose(
        batch["target"][:, 0].numpy(), target["t2m"].values[batch["time_index"].numpy()], rtol=1e-6
    )
    arrays = PairedBatchStream(
        da.from_array(_reference()[0], chunks=(6, -1, -1, -1)), _reference()[1], batch_size=6
    )
    assert arrays.target_variables == ["target[0]", "target[1]"]
    assert [len(b) for b in arrays.blocks] == [6, 6, 6, 6]


# --- streaming, laziness, memory ----------------------------------------------------------


class _CountingReader:
    """An array-like that records which time ranges are read (a stand-in for a zarr store)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.shape = values.shape
        self.dtype = values.dtype
        self.ndim = values.ndim
        self.reads: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        start, stop, _ = key[0].indices(self.shape[0])
        if stop > start:  # dask reads an empty slice once, for its metadata
            with self._lock:
                self.reads.append((start, stop))
        return self.values[key]


def test_construction_is_lazy_and_each_block_is_computed_once(no_dask_compute) -> None:
    condition, target = _pair(chunk=4)
    with no_dask_compute():
        stream = _stream(condition, target)
    assert [len(b) for b in stream.blocks] == [4] * 6
    with no_dask_compute(max_computes=6) as scheduler:
        batches = list(stream)
    assert scheduler.total_computes == 6  # one compute per block, none for the whole array
    assert len(batches) == 6


def test_blocks_are_whole_chunks_merged_to_the_batch_size() -> None:
    condition, target = _pair(chunk=3)
    stream = _stream(condition, target, batch_size=4)
    bounds = set(range(0, N_TIME + 1, 3))
    for block in stream.blocks:
        assert block[0] in bounds and block[-1] + 1 in bounds  # whole chunks
        assert len(block) >= 4
        np.testing.assert_array_equal(block, np.arange(block[0], block[-1] + 1))
    # A short tail joins the last block: 24 = 6 + 6 + 6 + 6.
    assert [len(b) for b in stream.blocks] == [6, 6, 6, 6]


def test_memory_is_bounded_to_two_blocks() -> None:
    condition_ref, target_ref = _reference()
    reader = _CountingReader(target_ref)
    target = da.from_array(reader, chunks=(4, -1, -1, -1))
    stream = PairedBatchStream(condition_ref, target, batch_size=2, seed=1)
    assert reader.reads == []  # constructing reads nothing
    block_of_chunk = {(int(b[0]), int(b[-1]) + 1): i for i, b in enumerate(stream.blocks)}
    order = stream.block_order()
    block_ends = [int(b[-1]) for b in stream.blocks]
    for batch in stream:
        current = order.index(int(np.searchsorted(block_ends, int(batch["time_index"][0]))))
        loaded = {order.index(block_of_chunk[r]) for r in reader.reads}
        # Everything read so far is the current block, earlier ones, or the one prefetched.
        assert max(loaded) <= current + 1
    assert Counter(reader.reads) == Counter(block_of_chunk.keys())  # each chunk read once
    assert stream.num_blocks_loaded == 6


# --- randomness -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_reproducible_and_independent_of_prefetch(chunked: bool) -> None:
    condition, target = _pair(chunk=4 if chunked else None)
    a = list(_stream(condition, target, seed=7, prefetch=True))
    b = list(_stream(condition, target, seed=7, prefetch=False))
    _assert_same_batches(a, b)
    c = list(_stream(condition, target, seed=8))
    assert _times(a) != _times(c)


def test_epochs_reshuffle_and_advance() -> None:
    condition, target = _reference()
    stream = PairedBatchStream(condition, target, batch_size=4, block_size=8, seed=0)
    first = _times(list(stream))
    assert stream.state_dict() == {"epoch": 1, "position": 0, "seed": 0}
    second = _times(list(stream))
    assert first != second
    assert sorted(_flat(first)) == sorted(_flat(second)) == list(range(N_TIME))
    stream.set_epoch(0)
    assert _times(list(stream)) == first


def test_no_shuffle_keeps_time_order() -> None:
    condition, target = _reference()
    stream = PairedBatchStream(condition, target, batch_size=5, shuffle=False)
    assert _seen(list(stream)) == list(range(N_TIME))


def test_drop_last() -> None:
    condition, target = _reference()
    stream = PairedBatchStream(condition, target, batch_size=4, block_size=6, drop_last=True)
    batches = list(stream)
    assert len(batches) == len(stream) == 4
    assert all(len(b["time_index"]) == 4 for b in batches)


# --- resuming -------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_resume_continues_exactly(chunked: bool) -> None:
    condition, target = _pair(chunk=4 if chunked else None)
    reference = list(_stream(condition, target, seed=5, batch_size=2))
    stopped = _stream(condition, target, seed=5, batch_size=2)
    iterator = iter(stopped)
    for _ in range(5):
        next(iterator)
    state = stopped.state_dict()
    assert state == {"epoch": 0, "position": 5, "seed": 5}
    resumed = _stream(condition, target, seed=5, batch_size=2)
    resumed.load_state_dict(state)
    _assert_same_batches(list(resumed), reference[5:])


def test_resume_into_the_next_epoch_and_errors() -> None:
    condition, target = _reference()
    stream = PairedBatchStream(condition, target, batch_size=4, seed=2)
    list(stream)
    second_epoch = _times(list(stream))
    fresh = PairedBatchStream(condition, target, batch_size=4, seed=2)
    fresh.load_state_dict({"epoch": 1, "position": 2, "seed": 2})
    assert _times(list(fresh)) == second_epoch[2:]
    with pytest.raises(ValueError, match="saved with seed 3 but this stream has seed 2"):
        fresh.load_state_dict({"epoch": 0, "position": 0, "seed": 3})
    with pytest.raises(ValueError, match="position 99 is outside epoch 0, which has 6 batches"):
        fresh.load_state_dict({"epoch": 0, "position": 99, "seed": 2})


# --- DataLoader workers and ranks --------------------------------------------------------------


def _loader_batches(stream: PairedBatchStream, num_workers: int) -> list[dict[str, torch.Tensor]]:
    loader = DataLoader(stream, batch_size=None, num_workers=num_workers)
    return list(loader)


def test_two_workers_see_every_time_exactly_once(pair: tuple[xr.Dataset, xr.Dataset]) -> None:
    condition, target = pair
    stream = _stream(condition, target, batch_size=3, seed=11)
    next(iter(stream))  # the main process reads first (zarr starts its IO thread), then forks
    stream.set_epoch(0)
    batches = _loader_batches(stream, num_workers=2)
    seen = _seen(batches)
    assert sorted(seen) == list(range(N_TIME))
    assert len(batches) == len(stream)
    # The same batches (times and patch corners) as in the main process, in another order.
    single = list(_stream(condition, target, batch_size=3, seed=11))
    by_times = {tuple(b["time_index"].tolist()): b for b in single}
    for batch in batches:
        expected = by_times[tuple(batch["time_index"].tolist())]
        torch.testing.assert_close(batch["offsets"], expected["offsets"])
        torch.testing.assert_close(batch["target"], expected["target"])


def test_resume_with_two_workers() -> None:
    condition, target = _pair(chunk=3)
    # Uneven shards: 7 blocks of 3 times and one of 3, batches of 2 → 2 batches per block.
    full = _loader_batches(_stream(condition, target, batch_size=2, seed=4), num_workers=2)
    for position in (5, 8):
        resumed = _stream(condition, target, batch_size=2, seed=4)
        resumed.load_state_dict(resumed.state_dict(position=position))
        _assert_same_batches(_loader_batches(resumed, num_workers=2), full[position:])


def test_ranks_split_blocks_without_overlap() -> None:
    condition, target = _reference()
    seen = []
    for rank in range(2):
        stream = PairedBatchStream(
            condition, target, batch_size=4, block_size=4, rank=rank, world_size=2, seed=9
        )
        assert len(stream) == 3
        seen.extend(_seen(list(stream)))
    assert sorted(seen) == list(range(N_TIME))


# --- validation split ---------------------------------------------------------------------------


def test_split_times_fraction_at_the_end() -> None:
    train, val = split_times(10, validation_fraction=0.3)
    assert train.tolist() == list(range(7))
    assert val.tolist() == [7, 8, 9]


def test_split_times_blocks_and_gap() -> None:
    train, val = split_times(20, validation_fraction=0.2, num_blocks=2)
    assert val.tolist() == [8, 9, 18, 19]
    assert train.tolist() == [*range(8), *range(10, 18)]
    train, val = split_times(20, validation_fraction=0.2, num_blocks=2, gap=2)
    assert train.tolist() == [*range(6), *range(12, 16)]
    assert not set(train) & set(val)


@pytest.mark.parametrize("chunked", [False, True])
def test_split_times_explicit_and_with_the_stream(chunked: bool) -> None:
    condition, target = _pair(chunk=4 if chunked else None)
    train, val = split_times(condition["time"], validation_times=condition["time"][[3, 10]])
    assert val.tolist() == [3, 10]
    assert len(train) == N_TIME - 2
    stream = _stream(condition, target, batch_size=3, time_indices=train)
    # Chunk [8, 12) keeps 8, 9, 11: that block is read with a fancy index.
    assert any(np.diff(block).max() > 1 for block in stream.blocks)
    batches = list(stream)
    assert sorted(_seen(batches)) == train.tolist()
    target_ref = _reference()[1]
    for batch in batches:
        np.testing.assert_array_equal(
            batch["target"].numpy(), target_ref[batch["time_index"].numpy()]
        )


def test_split_times_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of validation_fraction and validation_times"):
        split_times(10)
    with pytest.raises(ValueError, match=r"validation_fraction must be in \(0, 1\); got 1.5"):
        split_times(10, validation_fraction=1.5)
    times = pd.date_range("2021-01-01", periods=4, freq="1D")
    with pytest.raises(KeyError, match="1 of validation_times are not in times"):
        split_times(times, validation_times=[times[0], pd.Timestamp("2030-01-01")])
    with pytest.raises(ValueError, match="no training time left"):
        split_times(4, validation_fraction=0.5, gap=2)


# --- bad input -----------------------------------------------------------------------------------


def test_patch_larger_than_domain() -> None:
    condition, target = _reference()
    with pytest.raises(
        ValueError, match=r"patch_shape must be two positive ints \(h, w\); got \(8,\)"
    ):
        PairedBatchStream(condition, target, batch_size=2, patch_shape=(8,))  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"patch_shape \(32, 8\) is larger than the domain \(16, 12\)"
    ):
        PairedBatchStream(condition, target, batch_size=2, patch_shape=(32, 8))


@pytest.mark.parametrize("chunked", [False, True])
def test_nan_in_target_is_reported_when_its_block_is_read(chunked: bool) -> None:
    condition, target = _pair()
    target["tp"][13, 2:4, 5] = np.nan
    if chunked:
        condition, target = condition.chunk(time=4), target.chunk(time=4)
    stream = _stream(condition, target, shuffle=False, block_size=4)  # construction: fine
    iterator = iter(stream)
    for _ in range(3):  # blocks 0..2 are clean
        next(iterator)
    with pytest.raises(
        ValueError,
        match=r"target has non-finite .* 12\.\.15: 'tp': 2 \(first at time position 13 \(2021-01-01 13:00:00\)\)",
    ):
        list(iterator)


def test_time_coordinates_must_match() -> None:
    condition, target = _pair()
    with pytest.raises(
        ValueError, match=r"time coordinates differ: 20 and 24 times, 20 in common.*xr\.align"
    ):
        _stream(condition.isel(time=slice(4, None)), target)
    shifted = condition.assign_coords(time=condition["time"] + pd.Timedelta("365D"))
    with pytest.raises(ValueError, match="no common time: condition has 24 times from 2022-01-01"):
        _stream(shifted, target)
    arrays = _reference()
    with pytest.raises(ValueError, match=r"condition has 24 times .* but target has 20"):
        PairedBatchStream(arrays[0], arrays[1][:20], batch_size=2)
    with pytest.raises(ValueError, match=r"spatial shape \(16, 12\) but target has \(16, 10\)"):
        PairedBatchStream(arrays[0], arrays[1][..., :10], batch_size=2)


def test_argument_errors() -> None:
    condition, target = _pair()
    with pytest.raises(KeyError, match=r"\['q'\] not found.*available variables"):
        _stream(condition, target, target_variables=["q"])
    arrays = _reference()
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        PairedBatchStream(*arrays, batch_size=0)
    with pytest.raises(ValueError, match=r"shape \(24, 16, 12\); expected 4-D"):
        PairedBatchStream(arrays[0][:, 0], arrays[1], batch_size=2)
    with pytest.raises(ValueError, match=r"time_indices must lie in \[0, 24\)"):
        PairedBatchStream(*arrays, batch_size=2, time_indices=[0, 30])
    with pytest.raises(TypeError, match="got list"):
        PairedBatchStream([1, 2], arrays[1], batch_size=2)  # type: ignore[arg-type]

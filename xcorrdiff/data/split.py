"""Training and validation times: blocks at the end of the record, with an optional gap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from xcorrdiff.data.batch_inputs import time_span

__all__ = ["split_times"]


def split_times(
    times: int | Sequence[Any] | np.ndarray | pd.Index | xr.DataArray,
    *,
    validation_fraction: float | None = None,
    validation_times: Sequence[Any] | np.ndarray | pd.Index | xr.DataArray | None = None,
    num_blocks: int = 1,
    gap: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split time positions into training and validation sets.

    Either hold out ``validation_fraction`` of the times in ``num_blocks`` contiguous
    blocks (one block: the end of the record, as CorrDiff holds out its last year; several:
    evenly spread, the last ending the record, so every season is validated), or hold out
    explicit ``validation_times``.

    Parameters
    ----------
    times : int, sequence, numpy array, pandas Index or xarray.DataArray
        The time coordinate, or just the number of times.
    validation_fraction : float, optional
        Fraction in ``(0, 1)`` of the times to hold out (at least one time).
    validation_times : sequence, optional
        Coordinate values to hold out; each must be in ``times``.
    num_blocks : int, default 1
        Number of contiguous validation blocks with ``validation_fraction``.
    gap : int, default 0
        Times on each side of a validation block dropped from training, so that
        autocorrelated neighbours do not leak into training.

    Returns
    -------
    train, validation : numpy.ndarray of int64
        Sorted positions along time, disjoint; pass ``train`` as ``time_indices`` of
        :class:`PairedBatchStream`, or use ``ds.isel(time=...)``.

    Raises
    ------
    ValueError
        Neither or both of ``validation_fraction``/``validation_times``; a fraction outside
        ``(0, 1)``; no training time left.
    KeyError
        A validation time is not in ``times``.

    Examples
    --------
    >>> train, val = split_times(10, validation_fraction=0.2)
    >>> val.tolist()
    [8, 9]
    >>> train, val = split_times(10, validation_fraction=0.4, num_blocks=2, gap=1)
    >>> train.tolist(), val.tolist()
    ([0, 1, 6], [3, 4, 8, 9])
    """
    if (validation_fraction is None) == (validation_times is None):
        raise ValueError(
            "pass exactly one of validation_fraction and validation_times; got "
            f"validation_fraction={validation_fraction!r} and validation_times="
            f"{'None' if validation_times is None else '...'}"
        )
    if isinstance(times, (int, np.integer)):
        if validation_times is not None:
            raise ValueError("validation_times needs the time coordinate as times, not a count")
        index = pd.RangeIndex(int(times))
    else:
        index = pd.Index(np.asarray(times))
    n = len(index)
    positions = np.arange(n, dtype=np.int64)

    if validation_fraction is not None:
        if not 0 < validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction!r}")
        if not isinstance(num_blocks, (int, np.integer)) or num_blocks < 1:
            raise ValueError(f"num_blocks must be a positive integer; got {num_blocks!r}")
        n_val = max(1, round(validation_fraction * n))
        if n_val < num_blocks:
            raise ValueError(
                f"num_blocks={num_blocks} is more than the {n_val} validation times "
                f"({validation_fraction} of {n})"
            )
        sizes = np.diff(np.round(np.linspace(0, n_val, num_blocks + 1)).astype(np.int64))
        ends = np.round(np.linspace(0, n, num_blocks + 1)[1:]).astype(np.int64)
        validation = np.concatenate(
            [positions[e - s : e] for s, e in zip(sizes, ends, strict=True)]
        )
    else:
        wanted = pd.Index(np.asarray(validation_times))
        found = index.get_indexer(wanted)
        if (found < 0).any():
            missing = wanted[found < 0]
            raise KeyError(
                f"{len(missing)} of validation_times are not in times, e.g. "
                f"{list(missing[:3])}; times span {time_span(index)}"
            )
        validation = np.unique(found).astype(np.int64)

    excluded = np.zeros(n, dtype=bool)
    excluded[validation] = True
    if gap > 0:
        starts = validation[np.r_[True, np.diff(validation) > 1]]
        ends = validation[np.r_[np.diff(validation) > 1, True]]
        for start, end in zip(starts, ends, strict=True):
            excluded[max(0, start - gap) : min(n, end + gap + 1)] = True
    train = positions[~excluded]
    if len(train) == 0:
        raise ValueError(
            f"no training time left: {len(validation)} of {n} times are validation and "
            f"gap={gap}; hold out fewer times"
        )
    return train, np.sort(validation)

"""The ``.corrdiff`` accessor: thin facades that validate, delegate and return labeled results.

Each method is a few lines; the work lives in ``xcorrdiff.data``, ``xcorrdiff.verify`` and
the pipeline modules. The accessor's ``__init__`` only stores the object.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import xarray as xr

T = TypeVar("T", xr.Dataset, xr.DataArray)


class _CorrDiffAccessor(Generic[T]):
    def __init__(self, obj: T) -> None:
        self._obj: T = obj

    # --- data layer ---------------------------------------------------------------------

    # --- verification -------------------------------------------------------------------


@xr.register_dataset_accessor("corrdiff")
class CorrDiffDatasetAccessor(_CorrDiffAccessor[xr.Dataset]):
    """``ds.corrdiff``: downscaling and verification methods on a Dataset."""


@xr.register_dataarray_accessor("corrdiff")
class CorrDiffDataArrayAccessor(_CorrDiffAccessor[xr.DataArray]):
    """``da.corrdiff``: the same methods on a DataArray."""

"""The ``.corrdiff`` accessor: thin facades that validate, delegate and return labeled results.

Each method is a few lines; the work lives in ``xcorrdiff.data``, ``xcorrdiff.verify`` and
the pipeline modules. The accessor's ``__init__`` only stores the object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

import xarray as xr

if TYPE_CHECKING:
    from xcorrdiff.data.regrid import RegridBackend, RegridMethod

T = TypeVar("T", xr.Dataset, xr.DataArray)


class _CorrDiffAccessor(Generic[T]):
    def __init__(self, obj: T) -> None:
        self._obj: T = obj

    # --- data layer ---------------------------------------------------------------------

    def regrid(
        self,
        target: xr.Dataset | xr.DataArray,
        method: RegridMethod = "bilinear",
        *,
        backend: RegridBackend | None = None,
    ) -> T:
        """Regrid onto the grid carried by ``target``; see :func:`xcorrdiff.data.regrid.regrid`.

        Parameters
        ----------
        target
            A Dataset or DataArray carrying the target grid: 1-D ``lat``/``lon``
            (rectilinear) or 2-D ``lat``/``lon`` on ``(y, x)`` (curvilinear).
        method
            ``"bilinear"`` (default), ``"nearest"`` or ``"conservative"`` (rectilinear
            targets only).
        backend
            ``None`` (xarray interpolation, or xarray-regrid for conservative), or
            ``"xesmf"`` when xesmf is installed.

        Returns
        -------
        Dataset or DataArray
            The same type as the object, on the target grid; lazy for dask input.

        Examples
        --------
        >>> on_hr = lr.corrdiff.regrid(hr, method="bilinear")  # doctest: +SKIP
        """
        from xcorrdiff.data.regrid import regrid

        return regrid(self._obj, target, method, backend=backend)

    # --- verification -------------------------------------------------------------------


@xr.register_dataset_accessor("corrdiff")
class CorrDiffDatasetAccessor(_CorrDiffAccessor[xr.Dataset]):
    """``ds.corrdiff``: downscaling and verification methods on a Dataset."""


@xr.register_dataarray_accessor("corrdiff")
class CorrDiffDataArrayAccessor(_CorrDiffAccessor[xr.DataArray]):
    """``da.corrdiff``: the same methods on a DataArray."""

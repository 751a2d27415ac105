"""The ``.corrdiff`` accessor: thin facades that validate, delegate and return labeled results.

Each method is a few lines; the work lives in ``xcorrdiff.data``, ``xcorrdiff.verify`` and
the pipeline modules. The accessor's ``__init__`` only stores the object. ``downscale`` and
``downscale_to_zarr`` are the functions of :mod:`xcorrdiff.inference.api` themselves, bound
to the Dataset: the same arguments, spelled out in one place, the same documentation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

import xarray as xr

from xcorrdiff.inference import api as _api  # light: the pipeline loads on the first call
from xcorrdiff.train import api as _train_api  # light: the stages load on the first call

if TYPE_CHECKING:
    from collections.abc import Hashable, Sequence

    from xcorrdiff.data.regrid import RegridBackend, RegridEdge, RegridMethod

T = TypeVar("T", xr.Dataset, xr.DataArray)
P = ParamSpec("P")
R = TypeVar("R")


def _method(fn: Callable[Concatenate[xr.Dataset, P], R]) -> Callable[Concatenate[Any, P], R]:
    """``fn`` as an accessor method: called with the accessor's Dataset first; ``fn``'s name,
    docstring and signature (``help``, IDEs and the docs show every argument after the
    first), and its types for type checkers."""

    @functools.wraps(fn)
    def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        return fn(self._obj, *args, **kwargs)

    return method


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
        edge: RegridEdge = "raise",
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
        edge
            ``"raise"`` (default) refuses target points outside the source;
            ``"nearest"`` fills those within one source cell of its edge from the edge.

        Returns
        -------
        Dataset or DataArray
            The same type as the object, on the target grid; lazy for dask input.

        Examples
        --------
        >>> on_hr = lr.corrdiff.regrid(hr, method="bilinear")  # doctest: +SKIP
        """
        from xcorrdiff.data.regrid import regrid

        return regrid(self._obj, target, method, backend=backend, edge=edge)

    # --- verification -------------------------------------------------------------------

    def crps(
        self,
        obs: xr.Dataset | xr.DataArray,
        *,
        member_dim: str = "member",
        dim: str | list[str] | tuple[str, ...] | None = None,
        fair: bool = False,
        weights: xr.DataArray | None = None,
        member_weights: xr.DataArray | None = None,
    ) -> T:
        """Ensemble CRPS against ``obs``; see :func:`xcorrdiff.verify.crps`.

        ``weights`` are spatial weights of the mean (e.g. cos(lat)); ``member_weights``
        weigh the members.

        Examples
        --------
        >>> ens.corrdiff.crps(hr)  # doctest: +SKIP
        """
        from xcorrdiff.verify import crps

        return crps(
            self._obj, obs, member_dim=member_dim, dim=dim, fair=fair, weights=weights,
            member_weights=member_weights,
        )  # fmt: skip

    def spread_skill(
        self,
        obs: xr.Dataset | xr.DataArray,
        *,
        member_dim: str = "member",
        dim: str | list[str] | tuple[str, ...] | None = None,
        corrected: bool = True,
        weights: xr.DataArray | None = None,
    ) -> T:
        """Spread-skill ratio (1 when calibrated); see :func:`xcorrdiff.verify.spread_skill`."""
        from xcorrdiff.verify import spread_skill

        return spread_skill(
            self._obj, obs, member_dim=member_dim, dim=dim, corrected=corrected, weights=weights
        )

    def rank_histogram(
        self,
        obs: xr.Dataset | xr.DataArray,
        *,
        member_dim: str = "member",
        dim: str | list[str] | tuple[str, ...] | None = None,
        seed: int = 0,
        normalize: bool = False,
    ) -> T:
        """Rank histogram of ``obs`` among the members; see :func:`xcorrdiff.verify.rank_histogram`."""
        from xcorrdiff.verify import rank_histogram

        return rank_histogram(
            self._obj, obs, member_dim=member_dim, dim=dim, seed=seed, normalize=normalize
        )

    def brier_score(
        self,
        obs: xr.Dataset | xr.DataArray,
        threshold: float | Sequence[float],
        *,
        member_dim: str = "member",
        dim: str | list[str] | tuple[str, ...] | None = None,
        fair: bool = False,
        weights: xr.DataArray | None = None,
    ) -> T:
        """Brier score of ``x >= threshold``; see :func:`xcorrdiff.verify.brier_score`."""
        from xcorrdiff.verify import brier_score

        return brier_score(
            self._obj, obs, threshold, member_dim=member_dim, dim=dim, fair=fair, weights=weights
        )

    def fss(
        self,
        obs: xr.Dataset | xr.DataArray,
        threshold: float | Sequence[float],
        window: int | Sequence[int],
        *,
        member_dim: str = "member",
        spatial_dims: Sequence[Hashable] = ("y", "x"),
        dim: str | list[str] | tuple[str, ...] | None = None,
    ) -> T:
        """Fractions skill score; see :func:`xcorrdiff.verify.fss`."""
        from xcorrdiff.verify import fss

        return fss(
            self._obj, obs, threshold, window, member_dim=member_dim, spatial_dims=spatial_dims,
            dim=dim,
        )  # fmt: skip

    def reliability(
        self,
        obs: xr.Dataset | xr.DataArray,
        threshold: float | Sequence[float],
        *,
        member_dim: str = "member",
        dim: str | list[str] | tuple[str, ...] | None = None,
        bins: int | Sequence[float] = 10,
    ) -> xr.Dataset:
        """Reliability diagram of ``x >= threshold``; see :func:`xcorrdiff.verify.reliability`."""
        from xcorrdiff.verify import reliability

        return reliability(self._obj, obs, threshold, member_dim=member_dim, dim=dim, bins=bins)

    def at_stations(self, stations: xr.Dataset | xr.DataArray) -> T:
        """Bilinear values at the stations' points; see :func:`xcorrdiff.verify.at_stations`."""
        from xcorrdiff.verify import at_stations

        return at_stations(self._obj, stations)

    def power_spectrum(
        self,
        *,
        dims: tuple[str, str] = ("y", "x"),
        spacing: tuple[float, float] | None = None,
        window: str | None = None,
        detrend: str | None = None,
    ) -> T:
        """Radial power spectrum over ``dims``; see :func:`xcorrdiff.verify.power_spectrum`."""
        from xcorrdiff.verify import power_spectrum

        return power_spectrum(self._obj, dims=dims, spacing=spacing, window=window, detrend=detrend)

    def verify(
        self,
        obs: xr.Dataset | xr.DataArray,
        *,
        member_dim: str = "member",
        dim: str | list[str] | tuple[str, ...] | None = None,
        weights: xr.DataArray | None = None,
    ) -> xr.Dataset:
        """All scalar scores, one row per variable; see :func:`xcorrdiff.verify.verify`."""
        from xcorrdiff.verify import verify

        return verify(self._obj, obs, member_dim=member_dim, dim=dim, weights=weights)


@xr.register_dataset_accessor("corrdiff")
class CorrDiffDatasetAccessor(_CorrDiffAccessor[xr.Dataset]):
    """``ds.corrdiff``: downscaling and verification methods on a Dataset."""

    # The training and downscaling functions themselves (every argument spelled out once, in
    # xcorrdiff.train.api and xcorrdiff.inference.api), called with this Dataset first.
    fit = _method(_train_api.fit)
    downscale = _method(_api.downscale)
    downscale_to_zarr = _method(_api.downscale_to_zarr)

    def climate_indices(
        self,
        obs: xr.Dataset,
        indices: Sequence[str] | None = None,
        *,
        member_dim: str = "member",
        variables: Mapping[str, Hashable] | None = None,
        freq: str = "YS",
        per_period: bool = False,
    ) -> xr.Dataset:
        """Climate indices' bias and CRPS against ``obs`` (xclim, the ``xcorrdiff[climate]``
        extra); see :func:`xcorrdiff.verify.climate_indices`.

        >>> ens.corrdiff.climate_indices(truth, ["TXx", "Rx1day"])  # doctest: +SKIP
        """
        from xcorrdiff.verify.indices import climate_indices

        return climate_indices(
            self._obj, obs, indices, member_dim=member_dim, variables=variables, freq=freq,
            per_period=per_period,
        )  # fmt: skip


@xr.register_dataarray_accessor("corrdiff")
class CorrDiffDataArrayAccessor(_CorrDiffAccessor[xr.DataArray]):
    """``da.corrdiff``: the same methods on a DataArray."""

"""Ensemble scores on xarray objects: thin ``xr.apply_ufunc`` wrappers over the kernels.

Every function takes a Dataset or a DataArray, numpy- or dask-backed, and returns the same
type; dask inputs stay lazy (``apply_ufunc(..., dask="parallelized")`` and xarray
reductions). Arguments are named alike everywhere: ``member_dim`` names the ensemble
dimension, ``dim`` the dimensions to average over (``None``: all of them but the member
dimension, giving one scalar per variable; ``[]``: keep every dimension).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import xarray as xr

from xcorrdiff.verify import kernels
from xcorrdiff.verify._xarray import (
    T,
    XarrayLike,
    check_member_weights,
    check_numeric,
    check_type,
    map_pairs,
    match_units,
    reduce_dims,
    single_chunk,
    units_attrs,
)

__all__ = [
    "crps",
    "crps_gaussian",
    "mae",
    "rank_histogram",
    "rmse",
    "spread",
    "spread_skill",
    "spread_skill_curve",
]

Dim = str | Iterable[Hashable] | None


# --- CRPS ---------------------------------------------------------------------------------


def crps(
    forecast: T,
    obs: XarrayLike,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    fair: bool = False,
    weights: xr.DataArray | None = None,
    member_weights: xr.DataArray | None = None,
) -> T:
    r"""Continuous ranked probability score of an ensemble, averaged over ``dim``.

    At each point, with the valid (non-NaN) members :math:`x_1, \dots, x_M` and the
    observation :math:`y`,

    .. math::

        \mathrm{CRPS} = \frac{1}{M}\sum_{i=1}^{M}|x_i - y|
            - \frac{1}{2K}\sum_{i=1}^{M}\sum_{j=1}^{M}|x_i - x_j|
        = \frac{1}{M}\sum_{i}|x_i - y| - \frac{1}{K}\sum_{i=1}^{M}(2i - M - 1)\,x_{(i)},

    :math:`K = M^2` (the CRPS of the empirical CDF) or, with ``fair=True``,
    :math:`K = M(M-1)` (the fair CRPS, an unbiased estimate of the CRPS of the distribution
    the members are drawn from; Ferro 2014). The right-hand form uses the sorted members
    :math:`x_{(1)} \le \dots \le x_{(M)}`: one O(M log M) sort per point instead of the
    O(M²) pair sum. The score is then averaged over ``dim``, skipping NaN points.

    Parameters
    ----------
    forecast : Dataset or DataArray
        Ensemble with dimension ``member_dim``.
    obs : Dataset or DataArray
        Observations; their dims must be among the forecast's (without ``member_dim``).
        Aligned with the forecast on common coordinates (inner join).
    member_dim : str, default "member"
        The ensemble dimension.
    dim : str, list of str or None
        Dimensions to average over. ``None``: all (a scalar per variable); ``[]``: none.
    fair : bool, default False
        The fair (``M(M-1)``) spread term instead of the ECDF (``M²``) one.
    weights : DataArray, optional
        Spatial (or any non-member) weights of the average over ``dim``, as xskillscore's
        ``weights``: e.g. ``np.cos(np.deg2rad(lat))`` for area weights. Non-negative, finite,
        on dims of the score (:func:`weighted_mean`).
    member_weights : DataArray, optional
        Non-negative member weights with dimension ``member_dim`` (as properscoring's
        ``crps_ensemble``); need not sum to one. With weights :math:`w_i`, the means become
        weighted means and :math:`K = W^2` (or :math:`W^2 - \sum w_i^2` if fair).

    Returns
    -------
    Dataset or DataArray
        The CRPS, in the units of the variable; same type as ``forecast``.

    Raises
    ------
    ValueError
        Forecast without ``member_dim``; obs with dims the forecast lacks or with no
        coordinates in common with it; ``member_weights`` without ``member_dim``; ``weights``
        on dims the score lacks, or negative.
    TypeError
        A non-numeric variable.

    Notes
    -----
    NaN members are skipped (as scores' ``crps_for_ensemble``); a NaN observation gives
    NaN; with ``fair=True`` a point with fewer than two valid members gives NaN. A member
    dimension split over several dask chunks is rechunked, with a warning.

    References
    ----------
    Hersbach (2000), Weather and Forecasting 15, 559–570. Gneiting & Raftery (2007), JASA
    102, 359–378. Ferro (2014), QJRMS 140, 1917–1923.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ens = xr.DataArray([[0.0, 1.0]], dims=("time", "member"))
    >>> obs = xr.DataArray([0.0], dims="time")
    >>> float(crps(ens, obs))
    0.25
    """

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        f = single_chunk(f, [member_dim], "crps")
        args: list[xr.DataArray] = [f, o]
        core: list[list[Hashable]] = [[member_dim], []]
        if member_weights is not None:
            checked = check_member_weights(member_weights, f, member_dim)
            args.append(single_chunk(checked, [member_dim], "crps member_weights"))
            core.append([member_dim])
        score = xr.apply_ufunc(
            kernels.crps_ensemble,
            *args,
            input_core_dims=core,
            kwargs={"fair": fair},
            dask="parallelized",
            output_dtypes=[np.float64],
        )
        dims = reduce_dims(score.dims, dim, "CRPS")
        mean = weighted_mean(score, dims, weights)
        return mean.assign_attrs(units_attrs(f, "fair CRPS" if fair else "CRPS"))

    return map_pairs(forecast, obs, member_dim, per_variable)


def crps_gaussian(mu: T, sigma: XarrayLike, obs: XarrayLike, *, dim: Dim = None) -> T:
    r"""CRPS of a normal forecast :math:`\mathcal{N}(\mu, \sigma^2)`, averaged over ``dim``.

    .. math::

        \mathrm{CRPS} = \sigma\left[z\,(2\Phi(z) - 1) + 2\varphi(z) - \frac{1}{\sqrt\pi}\right],
        \qquad z = \frac{y - \mu}{\sigma}

    (Gneiting et al. 2005, eq. 5), with :math:`\Phi, \varphi` the standard normal CDF and
    density. Broadcasts ``mu``, ``sigma`` and ``obs`` (inner join on coordinates).

    Parameters
    ----------
    mu, sigma : Dataset or DataArray
        Mean and standard deviation (``sigma >= 0``) of the forecast.
    obs : Dataset or DataArray
        Observations.
    dim : str, list of str or None
        Dimensions to average over; ``None`` all, ``[]`` none.

    Returns
    -------
    Dataset or DataArray
        Same type as ``mu``.
    """
    for arg, argname in ((mu, "mu"), (sigma, "sigma"), (obs, "obs")):
        check_type(arg, argname)
        for da in arg.data_vars.values() if isinstance(arg, xr.Dataset) else [arg]:
            check_numeric(da, argname)
    obs = _in_units_of(mu, obs)
    mu_a, sigma_a, obs_a = xr.align(mu, sigma, obs, join="inner", copy=False)
    score = xr.apply_ufunc(
        kernels.crps_gaussian,
        mu_a,
        sigma_a,
        obs_a,
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    return score.mean(reduce_dims(list(score.dims), dim, "CRPS"))


def _in_units_of(mu: XarrayLike, obs: XarrayLike) -> XarrayLike:
    """``obs`` converted to the units of ``mu``, variable by variable."""
    if isinstance(mu, xr.DataArray) and isinstance(obs, xr.DataArray):
        return match_units(mu, obs, "mu", "obs")
    if isinstance(mu, xr.Dataset) and isinstance(obs, xr.Dataset):
        common = [name for name in obs.data_vars if name in mu.data_vars]
        return obs.assign({name: match_units(mu[name], obs[name], "mu", "obs") for name in common})
    return obs


# --- ensemble mean errors and spread --------------------------------------------------------


def weighted_mean(
    score: xr.DataArray, dims: Sequence[Hashable], weights: xr.DataArray | None
) -> xr.DataArray:
    """The mean of ``score`` over ``dims``, NaN points skipped, weighted by ``weights``.

    ``weights`` (xskillscore's meaning: spatial weights such as ``cos(lat)``) must be a
    finite, non-negative DataArray on dims of ``score``; with ``None`` the plain mean.
    """
    if weights is None:
        return score.mean(dims)
    problem = _weights_problem(weights, score.dims)
    if problem is not None:
        raise (TypeError if problem.startswith("must be an") else ValueError)(f"weights {problem}")
    return score.weighted(weights).mean(dims)


def _weights_problem(weights: object, dims: Sequence[Hashable]) -> str | None:
    """What is wrong with spatial ``weights`` for a score on ``dims`` (None: nothing)."""
    if not isinstance(weights, xr.DataArray):
        return (
            "must be an xarray.DataArray of spatial weights (e.g. cos(lat)), got "
            f"{type(weights).__name__}"
        )
    extra = [d for d in weights.dims if d not in dims]
    values = np.asarray(weights.values, dtype=np.float64)
    if extra:
        return (
            f"has dims {list(weights.dims)} but the score has {list(dims)}: {extra} are not "
            "among them. weights are spatial weights of the mean (as xskillscore's); member "
            "weights of the CRPS are member_weights="
        )
    if not np.isfinite(values).all() or (values < 0).any():
        return "must be finite and non-negative (e.g. cos(lat) area weights)"
    return None


def _float64(da: xr.DataArray) -> xr.DataArray:
    """Accumulate in float64 (lazy for dask; no copy for float64 input)."""
    return da.astype(np.float64, copy=False)


def _moments(
    f: xr.DataArray, o: xr.DataArray, member_dim: str, corrected: bool
) -> tuple[xr.DataArray, xr.DataArray]:
    """Per point: the (corrected) unbiased ensemble variance and the squared mean error."""
    f, o = _float64(f), _float64(o)
    count = f.count(member_dim)
    # By hand: NaN denominators where too few members are valid (a sea point), so no
    # 0/0 and no RuntimeWarning from numpy or dask's nanvar.
    mean = f.sum(member_dim) / count.where(count > 0)
    variance = ((f - mean) ** 2).sum(member_dim) / (count - 1).where(count > 1)
    if corrected:
        variance = variance * (count + 1) / count
    sq_error = (mean - o) ** 2
    valid = variance.notnull() & sq_error.notnull()
    return variance.where(valid), sq_error.where(valid)


def mae(
    forecast: T,
    obs: XarrayLike,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    weights: xr.DataArray | None = None,
) -> T:
    r"""Mean absolute error of the ensemble mean: :math:`\langle|\bar x - y|\rangle_{dim}`.

    :math:`\bar x` is the mean of the valid members. Same arguments as :func:`crps`
    (``weights``: spatial weights of the mean).
    """

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        err = abs(_float64(f).mean(member_dim) - _float64(o))
        return weighted_mean(err, reduce_dims(err.dims, dim, "MAE"), weights).assign_attrs(
            units_attrs(f, "MAE of the ensemble mean")
        )

    return map_pairs(forecast, obs, member_dim, per_variable)


def rmse(
    forecast: T,
    obs: XarrayLike,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    weights: xr.DataArray | None = None,
) -> T:
    r"""Root-mean-square error of the ensemble mean: :math:`\sqrt{\langle(\bar x - y)^2\rangle}`.

    The mean runs over ``dim`` (weighted by the spatial ``weights``); same arguments as
    :func:`crps`.
    """

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        sq = (_float64(f).mean(member_dim) - _float64(o)) ** 2
        mean = weighted_mean(sq, reduce_dims(sq.dims, dim, "RMSE"), weights)
        return (mean**0.5).assign_attrs(units_attrs(f, "RMSE of the ensemble mean"))

    return map_pairs(forecast, obs, member_dim, per_variable)


def spread(
    forecast: T,
    obs: XarrayLike,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    corrected: bool = True,
    weights: xr.DataArray | None = None,
) -> T:
    r"""Ensemble spread :math:`\sqrt{\frac{M+1}{M}\langle s^2\rangle}` (see :func:`spread_skill`).

    Averaged over the points where ``obs`` is valid, so it pairs with :func:`rmse`.
    """

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        variance, _ = _moments(f, o, member_dim, corrected)
        dims = reduce_dims(variance.dims, dim, "spread")
        return (weighted_mean(variance, dims, weights) ** 0.5).assign_attrs(
            units_attrs(f, "ensemble spread")
        )

    return map_pairs(forecast, obs, member_dim, per_variable)


def spread_skill(
    forecast: T,
    obs: XarrayLike,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    corrected: bool = True,
    weights: xr.DataArray | None = None,
) -> T:
    r"""Spread-skill ratio: ensemble spread over the RMSE of the ensemble mean.

    With :math:`M` valid members, their mean :math:`\bar x` and unbiased variance
    :math:`s^2 = \frac{1}{M-1}\sum_i (x_i - \bar x)^2`, averaged over ``dim``,

    .. math::

        \mathrm{SSR} = \frac{\sqrt{\left\langle \frac{M+1}{M}\, s^2 \right\rangle}}
            {\sqrt{\left\langle (\bar x - y)^2 \right\rangle}} .

    For a perfect ensemble (members and observation exchangeable draws from one
    distribution of variance :math:`\sigma^2`), :math:`E[s^2] = \sigma^2` and
    :math:`E[(\bar x - y)^2] = \sigma^2 (M+1)/M`, so SSR = 1 at every :math:`M` (Fortin et
    al. 2014; Mardani et al. 2025, Fig. 2). ``corrected=False`` drops the
    :math:`(M+1)/M` factor; a perfect ensemble then scores :math:`\sqrt{M/(M+1)}`
    (0.82 at M = 2).

    Parameters
    ----------
    forecast, obs, member_dim, dim, weights
        As in :func:`crps` (``weights``: spatial weights of both means).
    corrected : bool, default True
        Apply the finite-ensemble factor :math:`(M+1)/M`.

    Returns
    -------
    Dataset or DataArray
        The dimensionless ratio, same type as ``forecast``.

    References
    ----------
    Fortin, Abaza, Anctil & Turcotte (2014), J. Hydrometeorology 15, 1708–1713.
    Mardani et al. (2025), Communications Earth & Environment 6, 124 (CorrDiff).
    """

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        variance, sq_error = _moments(f, o, member_dim, corrected)
        dims = reduce_dims(variance.dims, dim, "spread-skill ratio")
        ratio = (
            weighted_mean(variance, dims, weights) / weighted_mean(sq_error, dims, weights)
        ) ** 0.5
        return ratio.assign_attrs(long_name="spread-skill ratio", units="1")

    return map_pairs(forecast, obs, member_dim, per_variable)


def spread_skill_curve(
    forecast: T,
    obs: XarrayLike,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    bins: int | np.ndarray = 10,
    corrected: bool = True,
) -> T:
    r"""Binned spread against binned error, as in the CorrDiff paper's spread-skill figure.

    Points are grouped by their spread :math:`\sigma_p = \sqrt{\frac{M+1}{M}s_p^2}`; for
    each bin :math:`B`,

    .. math::

        \text{spread}_B = \sqrt{\langle \sigma_p^2\rangle_{p \in B}},\qquad
        \text{rmse}_B = \sqrt{\langle (\bar x_p - y_p)^2\rangle_{p \in B}},

    and a calibrated ensemble lies on the diagonal.

    Parameters
    ----------
    forecast, obs, member_dim
        As in :func:`crps`.
    dim : str, list of str or None
        Dimensions pooled into the bins; ``None`` pools all of them.
    bins : int or array of edges, default 10
        Explicit, increasing edges of the spread (variable units), or a number of
        equal-count bins. A number computes quantiles of the spread (a dask compute);
        pass edges to stay lazy.
    corrected : bool, default True
        Apply the :math:`(M+1)/M` factor to the spread.

    Returns
    -------
    Dataset or DataArray
        Dims ``("statistic", "spread_bin", ...)``: ``statistic`` is
        ``["spread", "rmse", "count"]``; ``spread_bin`` carries the bin edges as
        ``spread_lower``/``spread_upper`` coordinates. Empty bins are NaN.
    """

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        variance, sq_error = _moments(f, o, member_dim, corrected)
        dims = reduce_dims(variance.dims, dim, "spread-skill curve")
        sigma = variance**0.5
        if np.ndim(bins) == 0:
            num_bins = int(bins)
            if num_bins < 1:
                raise ValueError(f"bins must be a positive number or edges, got {bins}")
            quantiles = np.linspace(0.0, 1.0, num_bins + 1)
            # Equal-count edges pooled over every point (ties merge bins).
            edges = np.unique(np.asarray(sigma.quantile(quantiles).values, dtype=np.float64))
            if edges.size < 2:
                edges = np.array([edges[0], edges[0] + 1.0])
        else:
            edges = np.asarray(bins, dtype=np.float64)
            if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
                raise ValueError(f"bins edges must be 1-D and strictly increasing, got {edges}")
        lower = xr.DataArray(edges[:-1], dims="spread_bin")
        upper = xr.DataArray(edges[1:], dims="spread_bin")
        last = xr.DataArray(np.arange(edges.size - 1) == edges.size - 2, dims="spread_bin")
        in_bin = (sigma >= lower) & ((sigma < upper) | (last & (sigma <= upper)))
        count = in_bin.sum(dims)
        spread_b = variance.where(in_bin).mean(dims) ** 0.5
        rmse_b = sq_error.where(in_bin).mean(dims) ** 0.5
        out = xr.concat([spread_b, rmse_b, count.astype(np.float64)], dim="statistic")
        return out.assign_coords(
            statistic=["spread", "rmse", "count"],
            spread_lower=("spread_bin", edges[:-1]),
            spread_upper=("spread_bin", edges[1:]),
        ).assign_attrs(units_attrs(f, "spread-skill curve"))

    return map_pairs(forecast, obs, member_dim, per_variable)


# --- rank histogram -----------------------------------------------------------------------


def _global_index(template: xr.DataArray, dims: list[Hashable]) -> xr.DataArray:
    """Linear index of every point over ``dims``, chunked like ``template`` (lazy)."""
    index = xr.DataArray(np.int64(0))
    stride = 1
    for d in reversed(dims):
        n = template.sizes[d]
        if template.chunks is not None:
            import dask.array as dsa

            values = dsa.arange(n, chunks=template.chunksizes[d], dtype=np.int64) * stride
        else:
            values = np.arange(n, dtype=np.int64) * stride
        index = index + xr.DataArray(values, dims=[d])
        stride *= n
    return index


def rank_histogram(
    forecast: T,
    obs: XarrayLike,
    *,
    member_dim: str = "member",
    dim: Dim = None,
    seed: int = 0,
    normalize: bool = False,
) -> T:
    r"""Rank (Talagrand) histogram: where the observation falls among the members.

    At each point the rank is :math:`r = \#\{i: x_i < y\} + U`, with :math:`U` uniform on
    :math:`\{0, \dots, \#\{i: x_i = y\}\}` (random tie-breaking, Hamill 2001), so
    :math:`r \in \{0, \dots, M\}`; the histogram counts the ranks over ``dim``. A
    calibrated ensemble gives a flat histogram, :math:`1/(M+1)` per rank. Points where the
    observation or any member is NaN are not counted.

    The tie draw is a counter-based hash of ``seed`` and each point's position, so the
    result does not depend on chunking.

    Parameters
    ----------
    forecast, obs, member_dim, dim
        As in :func:`crps`.
    seed : int, default 0
        Seed of the tie-breaking draw.
    normalize : bool, default False
        Return frequencies (summing to one over ``rank``) instead of counts.

    Returns
    -------
    Dataset or DataArray
        New dimension ``rank`` (0 … M) first; counts (int64) or frequencies.

    References
    ----------
    Hamill (2001), Monthly Weather Review 129, 550–560.
    """

    def per_variable(f: xr.DataArray, o: xr.DataArray) -> xr.DataArray:
        f = single_chunk(f, [member_dim], "rank_histogram")
        point_dims = [d for d in f.dims if d != member_dim]
        index = _global_index(f, point_dims)
        ranks = xr.apply_ufunc(
            kernels.rank_ties_random,
            f,
            o,
            index,
            input_core_dims=[[member_dim], [], []],
            kwargs={"seed": seed},
            dask="parallelized",
            output_dtypes=[np.int64],
        )
        num_members = f.sizes[member_dim]
        rank = xr.DataArray(np.arange(num_members + 1), dims="rank", name="rank")
        dims = reduce_dims(ranks.dims, dim, "rank histogram")
        counts = (ranks == rank).sum(dims).assign_coords(rank=rank.values)
        if normalize:
            result = (counts / counts.sum("rank")).assign_attrs(long_name="rank frequency")
        else:
            result = counts.assign_attrs(long_name="rank count")
        return result.transpose("rank", ...)

    return map_pairs(forecast, obs, member_dim, per_variable)

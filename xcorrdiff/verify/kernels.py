"""Numpy kernels for ensemble verification: CRPS, ranks, radial power spectra.

Every kernel takes plain :class:`numpy.ndarray` objects with the *core* dimensions last
(member last for ensembles, ``(y, x)`` last for fields) and broadcasts the leading
dimensions. The xarray layer in :mod:`xcorrdiff.verify.scores` moves the core dimensions
there with ``xr.apply_ufunc(..., dask="parallelized")``, so these functions never see
xarray or dask. All sums are accumulated in float64.
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = [
    "crps_ensemble",
    "crps_gaussian",
    "power_spectrum",
    "radial_bins",
    "rank_ties_random",
    "uniform_from_index",
]

_BLOCK_ROWS = 2048  # rows (points) per block: one sorted block stays in L2 cache


# --- CRPS ---------------------------------------------------------------------------------


def crps_ensemble(
    forecast: np.ndarray,
    obs: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    fair: bool = False,
) -> np.ndarray:
    r"""CRPS of an ensemble against observations, by the sorted O(M log M) form.

    With members :math:`x_1, \dots, x_M` (NaN members dropped, so :math:`M` is the number
    of valid members at each point) and observation :math:`y`,

    .. math::

        \mathrm{CRPS} = \frac{1}{M}\sum_{i=1}^{M}|x_i - y|
            - \frac{1}{2K}\sum_{i=1}^{M}\sum_{j=1}^{M}|x_i - x_j|,

    with :math:`K = M^2` for the empirical CDF (``fair=False``; Gneiting & Raftery 2007) and
    :math:`K = M(M-1)` for the fair, unbiased score (``fair=True``; Ferro 2014). With the
    members sorted, :math:`x_{(1)} \le \dots \le x_{(M)}`, the double sum is

    .. math::

        \sum_{i,j}|x_i - x_j| = 2\sum_{i=1}^{M}(2i - M - 1)\,x_{(i)}

    (Hersbach 2000), one sort and one dot product per point. With member weights
    :math:`w_i \ge 0`, :math:`W = \sum_i w_i` (as properscoring's ``crps_ensemble``),

    .. math::

        \mathrm{CRPS} = \frac{1}{W}\sum_i w_i|x_i - y|
            - \frac{1}{2K_w}\sum_{i,j} w_i w_j |x_i - x_j|,\qquad
        \sum_{i,j} w_i w_j|x_i - x_j| = 2\sum_i w_{(i)}x_{(i)}\,(W_{<i} - W_{>i}),

    where :math:`W_{<i}` (:math:`W_{>i}`) is the weight of the members sorted before
    (after) member :math:`i`, :math:`K_w = W^2` (ECDF) or :math:`W^2 - \sum_i w_i^2` (fair).

    Parameters
    ----------
    forecast : numpy.ndarray, shape ``(..., member)``
        Ensemble members on the last axis. NaN members are skipped.
    obs : numpy.ndarray, shape broadcastable to ``forecast.shape[:-1]``
        Observations. A NaN observation gives NaN.
    weights : numpy.ndarray, optional, shape broadcastable to ``forecast.shape``
        Non-negative member weights (need not be normalised). A NaN weight on a valid
        member gives NaN.
    fair : bool, default False
        Use the fair (unbiased) spread term.

    Returns
    -------
    numpy.ndarray, shape ``forecast.shape[:-1]``, float64
        The CRPS at each point. NaN where the observation is NaN, where no member is
        valid, or (``fair=True``) where fewer than two members are valid.
    """
    forecast = np.asarray(forecast)
    lead_shape = forecast.shape[:-1]
    num_members = forecast.shape[-1]
    rows = forecast.reshape(-1, num_members)  # a view whenever the leading dims merge
    y_rows = np.broadcast_to(np.asarray(obs, dtype=np.float64), lead_shape).reshape(-1)
    w_rows = None
    if weights is not None:
        w_rows = np.broadcast_to(np.asarray(weights, dtype=np.float64), forecast.shape)
        w_rows = w_rows.reshape(-1, num_members)
    out = np.empty(rows.shape[0], dtype=np.float64)
    coeffs = 2.0 * np.arange(1, num_members + 1, dtype=np.float64) - num_members - 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        for start in range(0, rows.shape[0], _BLOCK_ROWS):
            stop = min(start + _BLOCK_ROWS, rows.shape[0])
            y = y_rows[start:stop]
            if w_rows is None:
                out[start:stop] = _crps_block(rows[start:stop], y, coeffs, fair)
            else:
                out[start:stop] = _crps_block_weighted(
                    rows[start:stop], y, w_rows[start:stop], fair
                )
    return out.reshape(lead_shape)


def _crps_block(block: np.ndarray, y: np.ndarray, coeffs: np.ndarray, fair: bool) -> np.ndarray:
    """Unweighted CRPS of one block of rows ``(rows, member)``; NaN rows take a slow path."""
    num_members = block.shape[-1]
    x = np.array(block, dtype=np.float64, order="C")  # contiguous float64 copy of the block
    x.sort(axis=-1)  # NaN sorts last
    spread = x @ coeffs  # Σ (2i − M − 1) x_(i), half the pair sum
    x -= y[:, None]
    np.abs(x, out=x)
    abs_err = x.sum(axis=-1)
    denom = num_members * (num_members - 1.0) if fair else float(num_members) ** 2
    result = abs_err / num_members - spread / denom
    has_nan = np.isnan(result)
    if has_nan.any():
        # Rows with NaN members (or a NaN observation): count the valid members.
        rows = np.flatnonzero(has_nan)
        xs = np.sort(np.asarray(block[rows], dtype=np.float64), axis=-1)
        valid = ~np.isnan(xs)
        count = valid.sum(axis=-1).astype(np.float64)
        rank = np.arange(1, num_members + 1, dtype=np.float64)
        c = np.where(valid, 2.0 * rank - count[:, None] - 1.0, 0.0)
        x0 = np.where(valid, xs, 0.0)
        spread_nan = (c * x0).sum(axis=-1)
        abs_nan = np.where(valid, np.abs(xs - y[rows, None]), 0.0).sum(axis=-1)
        denom_nan = count * (count - 1.0) if fair else count**2
        result[rows] = abs_nan / count - spread_nan / denom_nan
    return result


def _crps_block_weighted(block: np.ndarray, y: np.ndarray, w: np.ndarray, fair: bool) -> np.ndarray:
    """Member-weighted CRPS of one block of rows ``(rows, member)``."""
    x = np.asarray(block, dtype=np.float64)
    order = np.argsort(x, axis=-1)
    xs = np.take_along_axis(x, order, axis=-1)
    ws = np.take_along_axis(np.asarray(w, dtype=np.float64), order, axis=-1)
    valid = ~np.isnan(xs)
    ws = np.where(valid, ws, 0.0)
    x0 = np.where(valid, xs, 0.0)
    total = ws.sum(axis=-1)
    cum = np.cumsum(ws, axis=-1)
    before_minus_after = 2.0 * cum - ws - total[:, None]  # W_<i − W_>i
    pair_sum = 2.0 * (ws * x0 * before_minus_after).sum(axis=-1)
    abs_err = (ws * np.where(valid, np.abs(xs - y[:, None]), 0.0)).sum(axis=-1)
    denom = total**2 - (ws**2).sum(axis=-1) if fair else total**2
    return abs_err / total - pair_sum / (2.0 * denom)


def crps_gaussian(mu: np.ndarray, sigma: np.ndarray, obs: np.ndarray) -> np.ndarray:
    r"""Closed-form CRPS of a normal forecast :math:`\mathcal{N}(\mu, \sigma^2)`.

    .. math::

        \mathrm{CRPS} = \sigma\left[z\,(2\Phi(z) - 1) + 2\varphi(z)
            - \frac{1}{\sqrt{\pi}}\right],\qquad z = \frac{y - \mu}{\sigma}

    (Gneiting et al. 2005, eq. 5). ``sigma = 0`` gives :math:`|y - \mu|`.
    """
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    obs = np.asarray(obs, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (obs - mu) / sigma
        pdf = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
        out = sigma * (z * (2.0 * special.ndtr(z) - 1.0) + 2.0 * pdf - 1.0 / np.sqrt(np.pi))
    return np.where(sigma == 0, np.abs(obs - mu), out)


# --- ranks --------------------------------------------------------------------------------


def uniform_from_index(index: np.ndarray, seed: int) -> np.ndarray:
    """Uniform numbers in ``[0, 1)`` from integer point indices (splitmix64 hash).

    A counter-based generator: the number for a point depends only on its global index and
    the seed, so results do not depend on chunking or on the order of evaluation.
    """
    with np.errstate(over="ignore"):
        z = np.asarray(index).astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / 2.0**53)


def rank_ties_random(
    forecast: np.ndarray, obs: np.ndarray, index: np.ndarray, seed: int = 0
) -> np.ndarray:
    r"""Rank of the observation among the members, ties broken at random.

    .. math::

        r = \#\{i: x_i < y\} + U\{0, \dots, \#\{i: x_i = y\}\}

    so :math:`r \in \{0, \dots, M\}`. The tie draw comes from
    :func:`uniform_from_index` of each point's global ``index``.

    Parameters
    ----------
    forecast : numpy.ndarray, shape ``(..., member)``
    obs : numpy.ndarray, broadcastable to ``forecast.shape[:-1]``
    index : numpy.ndarray of int, broadcastable to ``forecast.shape[:-1]``
        Global linear index of each point.
    seed : int
        Seed of the tie-breaking draw.

    Returns
    -------
    numpy.ndarray of int64, shape ``forecast.shape[:-1]``
        The rank, or ``-1`` where the observation or any member is NaN.
    """
    forecast = np.asarray(forecast)
    lead_shape = forecast.shape[:-1]
    y = np.broadcast_to(np.asarray(obs), lead_shape)[..., None]
    below = (forecast < y).sum(axis=-1)
    ties = (forecast == y).sum(axis=-1)
    u = uniform_from_index(np.broadcast_to(index, lead_shape), seed)
    rank = below + np.floor(u * (ties + 1)).astype(np.int64)
    invalid = np.isnan(y[..., 0]) | np.isnan(forecast).any(axis=-1)
    return np.where(invalid, -1, rank).astype(np.int64)


# --- power spectra ------------------------------------------------------------------------


def radial_bins(
    shape: tuple[int, int], spacing: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Radial wavenumber bin of every 2-D FFT mode.

    Parameters
    ----------
    shape : (ny, nx)
    spacing : (dy, dx)
        Grid spacing in metres.

    Returns
    -------
    bin_index : numpy.ndarray of int, shape ``(ny, nx)``
        ``round(|k| / dk)`` for each mode of ``numpy.fft.fft2``.
    wavenumber : numpy.ndarray, shape ``(num_bins,)``
        Bin centres ``b · dk`` in cycles per metre.
    dk : float
        Bin width, the coarser of the two fundamental wavenumbers ``1 / (n · d)``.
    """
    (ny, nx), (dy, dx) = shape, spacing
    ky = np.fft.fftfreq(ny, d=dy)
    kx = np.fft.fftfreq(nx, d=dx)
    k = np.hypot(ky[:, None], kx[None, :])
    dk = max(1.0 / (ny * dy), 1.0 / (nx * dx))
    bin_index = np.rint(k / dk).astype(np.int64)
    return bin_index, dk * np.arange(bin_index.max() + 1), dk


def _detrend(field: np.ndarray, detrend: str | None) -> np.ndarray:
    if detrend is None:
        return field
    if detrend == "constant":
        return field - field.mean(axis=(-2, -1), keepdims=True)
    ny, nx = field.shape[-2:]
    yy, xx = np.meshgrid(
        np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64), indexing="ij"
    )
    design = np.stack([np.ones(ny * nx), yy.ravel(), xx.ravel()], axis=1)  # a + b y + c x
    flat = field.reshape(-1, ny * nx).T
    coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
    return field - (design @ coef).T.reshape(field.shape)


def power_spectrum(
    field: np.ndarray,
    spacing: tuple[float, float],
    *,
    window: str | None = None,
    detrend: str | None = None,
) -> np.ndarray:
    r"""Radial power spectral density of 2-D fields, normalised so that Parseval holds.

    With the discrete Fourier transform :math:`\hat f(\mathbf{k})` of an
    :math:`N_y \times N_x` field and the radial bins :math:`B_b = \{\mathbf{k}: \mathrm{round}
    (|\mathbf{k}|/\Delta k) = b\}` of width :math:`\Delta k`,

    .. math::

        E(k_b) = \frac{1}{\Delta k}\sum_{\mathbf{k} \in B_b}
            \frac{|\hat f(\mathbf{k})|^2}{(N_y N_x)^2},\qquad
        \sum_b E(k_b)\,\Delta k = \frac{1}{N_y N_x}\sum_{y,x} f(y, x)^2 .

    ``E`` has units of ``field² · m`` (per cycle per metre). Bin 0 holds the mean.

    Parameters
    ----------
    field : numpy.ndarray, shape ``(..., y, x)``
    spacing : (dy, dx)
        Grid spacing in metres.
    window : {"hann", None}
        Hann taper, scaled to unit mean square so the total power is preserved on average.
    detrend : {"constant", "linear", None}
        Remove the mean or a least-squares plane before the transform.

    Returns
    -------
    numpy.ndarray, shape ``(..., num_bins)``, float64
        The spectrum at the wavenumbers of :func:`radial_bins`. NaN where the field has NaN.
    """
    f = _detrend(np.asarray(field, dtype=np.float64), detrend)
    ny, nx = f.shape[-2:]
    if window == "hann":
        taper = np.outer(np.hanning(ny), np.hanning(nx))
        f = f * (taper / np.sqrt(np.mean(taper**2)))
    power = np.abs(np.fft.fft2(f, axes=(-2, -1))) ** 2 / float(ny * nx) ** 2
    bin_index, wavenumber, dk = radial_bins((ny, nx), spacing)
    num_bins = wavenumber.size
    lead_shape = power.shape[:-2]
    flat = power.reshape(-1, ny * nx)
    num_rows = flat.shape[0]
    # One bincount over (row, bin) pairs: row r, bin b → r * num_bins + b.
    labels = (np.arange(num_rows)[:, None] * num_bins + bin_index.ravel()[None, :]).ravel()
    summed = np.bincount(labels, weights=flat.ravel(), minlength=num_rows * num_bins)
    return summed.reshape(*lead_shape, num_bins) / dk

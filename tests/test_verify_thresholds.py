"""Brier score and fractions skill score against brute-force loops in float64."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

import xcorrdiff.verify as xv


def ensemble(seed: int, nan: bool = True) -> tuple[xr.DataArray, xr.DataArray]:
    """Rain-like fields (many zeros) on (member, time, y, x), NaN sea and a NaN member."""
    rng = np.random.default_rng(seed)
    members = np.maximum(rng.gamma(0.6, 2.0, size=(5, 3, 9, 11)) - 0.5, 0.0)
    truth = np.maximum(rng.gamma(0.6, 2.0, size=(3, 9, 11)) - 0.5, 0.0)
    if nan:
        truth[:, :3, :4] = np.nan  # the sea
        members[:, :, :3, :4] = np.nan
        members[2, 1, 5, 5] = np.nan  # one missing member
    coords = {"time": np.arange(3), "y": np.arange(9), "x": np.arange(11)}
    dims = ("member", "time", "y", "x")
    ens = xr.DataArray(members, dims=dims, coords=coords, name="precip")
    return ens, xr.DataArray(truth, dims=dims[1:], coords=coords, name="precip")


def brier_loops(members: np.ndarray, truth: np.ndarray, thr: float, fair: bool) -> float:
    scores = []
    for index in np.ndindex(truth.shape):
        column = members[(slice(None), *index)]
        column = column[~np.isnan(column)]
        if np.isnan(truth[index]) or column.size == 0 or (fair and column.size < 2):
            continue
        p = np.mean(column >= thr)
        score = (p - float(truth[index] >= thr)) ** 2
        if fair:
            score -= p * (1 - p) / (column.size - 1)
        scores.append(score)
    return float(np.mean(scores))


def fss_loops(members: np.ndarray, truth: np.ndarray, thr: float, window: int) -> float:
    half = window // 2
    num = den = 0.0
    for t in range(truth.shape[0]):
        for i in range(truth.shape[1]):
            for j in range(truth.shape[2]):
                if np.isnan(truth[t, i, j]):
                    continue
                ys = slice(max(i - half, 0), i + half + 1)
                xs = slice(max(j - half, 0), j + half + 1)
                f = members[:, t, ys, xs]
                o = truth[t, ys, xs]
                f, o = f[~np.isnan(f)], o[~np.isnan(o)]
                if f.size == 0:
                    continue
                pf, po = np.mean(f >= thr), np.mean(o >= thr)
                num += (pf - po) ** 2
                den += pf**2 + po**2
    return 1 - num / den


@pytest.mark.parametrize("fair", [False, True])
def test_brier_score_against_loops(fair: bool) -> None:
    ens, truth = ensemble(0)
    result = xv.brier_score(ens, truth, [0.0, 0.5, 2.0], fair=fair)
    assert result.dims == ("threshold",)
    for k, thr in enumerate([0.0, 0.5, 2.0]):
        expected = brier_loops(ens.values, truth.values, thr, fair)
        assert float(result[k]) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("thr", "window"), [(0.1, 1), (0.5, 3), (2.0, 5), (1.0, 21)])
def test_fss_against_loops(thr: float, window: int) -> None:
    ens, truth = ensemble(1)
    expected = fss_loops(ens.values, truth.values, thr, window)
    assert float(xv.fss(ens, truth, thr, window)) == pytest.approx(expected, rel=1e-12)


def test_fss_known_values() -> None:
    """A perfect ensemble scores 1; no event anywhere is NaN; a displaced event is found by
    a window wide enough to cover the displacement."""
    truth = xr.DataArray(np.zeros((1, 15, 15)), dims=("time", "y", "x"), name="r")
    truth[0, 7, 3] = 10.0
    moved = truth.roll(x=4).expand_dims(member=2)
    perfect = truth.expand_dims(member=3)
    assert float(xv.fss(perfect, truth, 1.0, 3)) == 1.0
    assert np.isnan(float(xv.fss(perfect, truth, 100.0, 3)))
    scores = xv.fss(moved, truth, 1.0, [1, 3, 9, 15])
    assert float(scores.sel(window=1)) == 0.0
    assert float(scores.sel(window=3)) == 0.0
    assert 0 < float(scores.sel(window=9)) < float(scores.sel(window=15)) <= 1.0


def test_fss_keeps_dims_and_stays_lazy_without_warnings() -> None:
    ens, truth = ensemble(2)
    eager = xv.fss(ens, truth, [0.5, 1.0], [1, 3], dim=[])
    assert eager.dims == ("time", "threshold", "window")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with raise_if_dask_computes():
            lazy = xv.fss(ens.chunk(time=1), truth.chunk(time=1), [0.5, 1.0], [1, 3], dim=[])
            brier = xv.brier_score(ens.chunk(time=1), truth.chunk(time=1), 0.5, dim=["y", "x"])
        np.testing.assert_allclose(lazy.values, eager.transpose(*lazy.dims).values, rtol=1e-12)
        expected = xv.brier_score(ens, truth, 0.5, dim=["y", "x"])
        np.testing.assert_allclose(brier.values, expected.values, rtol=1e-12)
    for t in range(3):
        by_time = fss_loops(ens.values[:, t : t + 1], truth.values[t : t + 1], 1.0, 3)
        value = float(eager.sel(threshold=1.0, window=3).isel(time=t))
        assert value == pytest.approx(by_time, rel=1e-12)


def test_datasets_and_accessors() -> None:
    ens, truth = ensemble(3, nan=False)
    ds, obs = ens.to_dataset(), truth.to_dataset()
    assert float(ds.corrdiff.fss(obs, 0.5, 3).precip) == float(xv.fss(ens, truth, 0.5, 3))
    assert float(ens.corrdiff.brier_score(truth, 0.5)) == float(xv.brier_score(ens, truth, 0.5))


def test_bad_thresholds_and_windows() -> None:
    ens, truth = ensemble(4)
    with pytest.raises(ValueError, match=r"window=2 is invalid; expected an odd integer"):
        xv.fss(ens, truth, 0.5, 2)
    with pytest.raises(ValueError, match=r"threshold=nan is invalid; expected a finite"):
        xv.brier_score(ens, truth, float("nan"))
    with pytest.raises(ValueError, match=r"spatial_dims=\('lat', 'lon'\) is invalid"):
        xv.fss(ens, truth, 0.5, 3, spatial_dims=("lat", "lon"))


def reliability_loops(
    members: np.ndarray, truth: np.ndarray, thr: float, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per bin: observed frequency, mean forecast probability, number of cases."""
    n = edges.size - 1
    hits, probs, counts = np.zeros(n), np.zeros(n), np.zeros(n)
    for index in np.ndindex(truth.shape):
        column = members[(slice(None), *index)]
        column = column[~np.isnan(column)]
        if np.isnan(truth[index]) or column.size == 0:
            continue
        p = np.mean(column >= thr)
        k = n - 1 if p == 1.0 else next(b for b in range(n) if edges[b] <= p < edges[b + 1])
        hits[k] += truth[index] >= thr
        probs[k] += p
        counts[k] += 1
    with np.errstate(invalid="ignore"):
        return hits / counts, probs / counts, counts


@pytest.mark.parametrize("bins", [5, [0.0, 0.2, 0.5, 0.7, 1.0]])
def test_reliability_against_loops(bins: int | list[float]) -> None:
    ens, truth = ensemble(5)
    result = xv.reliability(ens, truth, [0.3, 1.0], bins=bins)
    edges = np.linspace(0, 1, 6) if isinstance(bins, int) else np.asarray(bins)
    np.testing.assert_allclose(result["probability_bin"], (edges[1:] + edges[:-1]) / 2)
    for k, thr in enumerate([0.3, 1.0]):
        freq, prob, count = reliability_loops(ens.values, truth.values, thr, edges)
        one = result.isel(threshold=k)
        np.testing.assert_array_equal(one["samples"].values, count)
        np.testing.assert_allclose(one["observed_frequency"].values, freq, rtol=1e-12)
        np.testing.assert_allclose(one["forecast_probability"].values, prob, rtol=1e-12)
    assert int(result["samples"].sum()) == 2 * int(truth.count())


def test_reliability_of_a_dataset_is_lazy_and_labels_variables() -> None:
    ens, truth = ensemble(6)
    ds = xr.Dataset({"precip": ens, "snow": ens * 0.5})
    obs = xr.Dataset({"precip": truth, "snow": truth * 0.5})
    with raise_if_dask_computes():
        lazy = xv.reliability(ds.chunk(time=1), obs.chunk(time=1), 0.5, dim=["y", "x"])
    assert list(lazy["variable"].values) == ["precip", "snow"]
    assert lazy["observed_frequency"].dims == ("variable", "time", "probability_bin")
    eager = xv.reliability(ens, truth, 0.5, dim=["y", "x"])
    xr.testing.assert_allclose(lazy.sel(variable="precip", drop=True).compute(), eager)
    with pytest.raises(ValueError, match=r"bins=\[0.0, 0.7\] is invalid"):
        xv.reliability(ens, truth, 0.5, bins=[0.0, 0.7])


def test_agrees_with_the_scores_package() -> None:
    """Brier (plain and fair) equals scores' brier_score_for_ensemble; for one member and
    events away from the edges (where cut and zero-padded windows agree) FSS equals scores'
    fss_2d with zero padding."""
    scores_probability = pytest.importorskip("scores.probability")
    scores_spatial = pytest.importorskip("scores.spatial")
    ens, truth = ensemble(7, nan=False)
    for fair in (False, True):
        ref = scores_probability.brier_score_for_ensemble(
            ens, truth, "member", [0.5, 2.0], fair_correction=fair
        )
        ours = xv.brier_score(ens, truth, [0.5, 2.0], fair=fair)
        np.testing.assert_allclose(ours.values, ref.values, rtol=1e-12)
    rng = np.random.default_rng(0)
    f, o = np.zeros((40, 50)), np.zeros((40, 50))
    f[8:32, 8:42] = rng.gamma(0.5, 2.0, size=(24, 34))
    o[8:32, 8:42] = rng.gamma(0.5, 2.0, size=(24, 34))
    fcst, obs = xr.DataArray(f, dims=("y", "x")), xr.DataArray(o, dims=("y", "x"))
    for window in (1, 3, 7):
        ref = scores_spatial.fss_2d(
            fcst, obs, event_threshold=1.0, window_size=(window, window), spatial_dims=("y", "x"),
            zero_padding=True, threshold_operator=np.greater_equal,
        )  # fmt: skip
        ours = xv.fss(fcst.expand_dims(member=1), obs, 1.0, window)
        assert float(ours) == pytest.approx(float(ref), rel=1e-12)

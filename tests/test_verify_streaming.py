"""Streaming verification: the sums of :func:`accumulate`, merged or resumed, give the
one-shot functions' scores on the same data (to float64 rounding), on any chunking."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import xcorrdiff.verify as xv
import xcorrdiff.verify.streaming as xs

POOLED = ["crps", "crps_fair", "mae", "rmse", "spread", "spread_skill"]


@pytest.fixture(scope="module")
def pair() -> tuple[xr.Dataset, xr.Dataset]:
    """Two variables on a 2 km grid, 40 days, 5 members: precipitation with dry ties
    (zeros in members and truth), temperature; NaN in a member and in the truth."""
    rng = np.random.default_rng(0)
    t, m, ny, nx = 40, 5, 12, 16
    coords = {
        "time": xr.date_range("2001-01-01", periods=t, freq="D"),
        "y": ("y", np.arange(ny) * 2000.0, {"units": "m"}),
        "x": ("x", np.arange(nx) * 2000.0, {"units": "m"}),
    }
    pr_f = np.where(rng.random((m, t, ny, nx)) < 0.4, 0.0, rng.gamma(2, 1, (m, t, ny, nx)))
    pr_o = np.where(rng.random((t, ny, nx)) < 0.4, 0.0, rng.gamma(2, 1.2, (t, ny, nx)))
    t2m_o = 280 + rng.normal(size=(t, ny, nx)).cumsum(-1)
    t2m_f = t2m_o + rng.normal(size=(m, t, ny, nx)) * 1.5
    pr_f[1, 3, 2, 2] = np.nan
    pr_o[5, 4, 4] = np.nan
    dims = ("member", "time", "y", "x")
    forecast = xr.Dataset({"pr": (dims, pr_f), "t2m": (dims, t2m_f)}, coords=coords)
    obs = xr.Dataset({"pr": (dims[1:], pr_o), "t2m": (dims[1:], t2m_o)}, coords=coords)
    return forecast, obs


def _edges(sums: xr.Dataset, name: str) -> np.ndarray:
    signature = json.loads(sums.attrs["xcorrdiff_sums"])["signature"]
    return np.asarray(signature["edges"][signature["variables"].index(name)])


def _close(a: object, b: object) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_the_sums_give_the_one_shot_scores(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    sums = xs.accumulate(forecast, obs, batch=7)
    pooled, maps = xs.scores_from_sums(sums), xs.scores_from_sums(sums, per_point=True)
    table, per_point = xv.verify(forecast, obs), xv.verify(forecast, obs, dim="time")
    for score in POOLED:
        _close(pooled[score], table[score])
        _close(maps[score], per_point[score].transpose("variable", "y", "x"))
    for k, name in enumerate(["pr", "t2m"]):  # the members' own error, by hand
        squares = ((forecast[name] - obs[name]) ** 2).mean("member")
        _close(pooled["rmse_members"][k], np.sqrt(squares.mean()))
        _close(maps["rmse_members"][k], np.sqrt(squares.mean("time")))
    ranks = xv.rank_histogram(forecast, obs)
    for k, name in enumerate(["pr", "t2m"]):
        f, o, edges = forecast[name], obs[name], _edges(sums, name)
        np.testing.assert_array_equal(pooled["rank_histogram"][k], ranks[name])
        for score in (xv.perkins, xv.log_histogram_distance):
            _close(pooled[score.__name__][k], score(f, o, bins=edges, dim=None))
            _close(maps[score.__name__][k], score(f, o, bins=edges))
        _close(pooled["std_ratio"][k], xv.std_ratio(f, o, dim=None))
        _close(maps["std_ratio"][k], xv.std_ratio(f, o))
        _close(pooled["ralsd"][k], xv.ralsd(f, o))
        _close(pooled["band_power_ratio"][k], xv.band_power_ratio(f, o))
        exact = xv.quantile_bias(f, o, dim=None, quantiles=[0.05, 0.5, 0.95])
        binned = xs.scores_from_sums(sums, quantiles=[0.05, 0.5, 0.95])["quantile_bias"][k]
        width = edges[1] - edges[0]
        assert np.all(np.abs(binned.values - exact.values) <= 2 * width)


def test_chunking_merging_and_lazy_input_give_the_same_sums(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    edges = {"pr": np.linspace(0, 20, 41), "t2m": np.linspace(260, 300, 41)}
    whole = xs.accumulate(forecast, obs, edges=edges, batch=40)
    for other in (
        xs.accumulate(forecast, obs, edges=edges, batch=3),
        xs.accumulate(forecast.chunk(time=9), obs.chunk(time=9), edges=edges),
    ):
        xr.testing.assert_allclose(other.drop_attrs(), whole.drop_attrs(), rtol=1e-12)
    halves = [
        xs.accumulate(forecast.isel(time=part)[names], obs.isel(time=part), edges=edges)
        for part, names in ((slice(0, 25), ["pr", "t2m"]), (slice(25, 40), ["t2m", "pr"]))
    ]  # the second piece lists its variables the other way round
    merged = xs.scores_from_sums(xs.merge_sums(*halves))
    expected = xs.scores_from_sums(whole)
    for score in (*POOLED, "perkins", "std_ratio", "ralsd", "band_power_ratio"):
        _close(merged[score], expected[score])
    # Ties (dry points) are drawn by position in each piece; continuous t2m has none.
    np.testing.assert_array_equal(merged["rank_histogram"][1], expected["rank_histogram"][1])
    assert merged.attrs["times"] == 40


def test_accumulate_on_a_distributed_client(pair) -> None:  # type: ignore[no-untyped-def]
    distributed = pytest.importorskip("distributed")
    forecast, obs = pair
    local = xs.accumulate(forecast, obs, batch=10)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=":0"):  # fmt: skip
        remote = xs.accumulate(forecast.chunk(time=10), obs.chunk(time=10))
    xr.testing.assert_allclose(remote, local, rtol=1e-12)


def test_a_stopped_run_resumes_where_it_stopped(
    pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    state = tmp_path / "sums.npz"
    original, calls = xs._chunk_sums, []

    def stopping(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 7:  # the fourth chunk's second variable
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(xs, "_chunk_sums", stopping)
    with pytest.raises(KeyboardInterrupt):
        xs.accumulate(forecast, obs, batch=10, state=state)
    assert json.loads(str(np.load(state)["__meta__"]))["done"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["sums.npz"]  # no temporary file left
    monkeypatch.setattr(xs, "_chunk_sums", original)
    resumed = xs.accumulate(forecast, obs, batch=10, state=state)
    xr.testing.assert_allclose(resumed, xs.accumulate(forecast, obs, batch=10), rtol=1e-12)
    with pytest.raises(ValueError, match=r"was written for other data or settings \(its starts"):
        xs.accumulate(forecast, obs, batch=8, state=state)
    foreign = tmp_path / "notes.npz"
    foreign.write_bytes(b"not a state")
    with pytest.raises(ValueError, match=r"exists but is not a state of accumulate"):
        xs.accumulate(forecast, obs, state=foreign)
    assert foreign.read_bytes() == b"not a state"  # left as it is


def test_bad_input_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    forecast, obs = pair
    with pytest.raises(ValueError, match=r"obs variable 'pr' has no dim 'step'"):
        xs.accumulate(forecast, obs, dim="step")
    with pytest.raises(ValueError, match=r"edges\['pr'\] = \[1.0, 0.0\] is invalid"):
        xs.accumulate(forecast, obs, edges={"pr": [1.0, 0.0]})
    with pytest.raises(ValueError, match=r"batch=0 is invalid; expected an integer >= 1"):
        xs.accumulate(forecast, obs, batch=0)
    with pytest.raises(ValueError, match=r"spatial dims \('x', 'y'\) must be the obs' last two"):
        xs.accumulate(forecast, obs, spatial_dims=("x", "y"))
    with pytest.raises(ValueError, match=r"sums is not a result of xcorrdiff.verify.accumulate"):
        xs.scores_from_sums(obs)
    a = xs.accumulate(forecast, obs, batch=20)
    b = xs.accumulate(forecast, obs, batch=20, seed=1)
    with pytest.raises(
        ValueError, match=r"merge_sums: sums\[1\] differs from sums\[0\] in \['seed'\]"
    ):
        xs.merge_sums(a, b)

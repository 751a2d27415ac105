"""The exact station posterior of the known-truth data (``xcorrdiff.tutorial.oracle_posterior``)
against brute force: the noise covariance from the generator's own filter applied to every
unit impulse, conditioning with dense float64 matrices, and the oracle ensemble's members."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import xarray as xr

from xcorrdiff._synthetic import fields
from xcorrdiff._synthetic.physics import conditional, noise_model
from xcorrdiff._synthetic.posterior import noise_covariance
from xcorrdiff.data.points import locate_points
from xcorrdiff.tutorial import _lr_inputs, make_synthetic, oracle_ensemble, oracle_posterior


@functools.lru_cache(maxsize=1)
def _case() -> tuple[xr.Dataset, xr.Dataset]:
    return make_synthetic(n_times=2, hr_shape=(16, 16), factor=4, seed=3)


def _points(hr: xr.Dataset, rows: list[float], cols: list[float], prefix: str) -> xr.Dataset:
    """Stations at fractional grid positions (bilinear lat/lon of the grid)."""
    y = xr.DataArray(np.interp(rows, np.arange(hr.sizes["y"]), hr["y"].values))
    x = xr.DataArray(np.interp(cols, np.arange(hr.sizes["x"]), hr["x"].values))
    lat, lon = hr["lat"].interp(y=y, x=x).values, hr["lon"].interp(y=y, x=x).values
    names = [f"{prefix}{k}" for k in range(len(rows))]
    return xr.Dataset(coords={"station": names, "lat": ("station", lat), "lon": ("station", lon)})


def _impulse_responses() -> tuple[np.ndarray, tuple[int, int]]:
    """The generator's noise filter applied to every unit impulse: ``(3, N, ny·nx)``."""
    lr, _ = _case()
    domain, physics, _, _ = _lr_inputs(lr)
    model = noise_model(domain, physics)
    py, px = model.shape
    impulses = np.eye(py * px, dtype=np.float32).reshape(py * px, py, px)
    ny, nx = domain.hr_shape
    out = [
        fields.synthesize(impulses, model.amp[c])[:, :ny, :nx].reshape(py * px, ny * nx)
        for c in range(3)
    ]
    return np.stack(out).astype(np.float64), (ny, nx)


def test_noise_covariance_is_that_of_the_generators_filter() -> None:
    responses, (ny, nx) = _impulse_responses()
    lr, _ = _case()
    domain, physics, _, _ = _lr_inputs(lr)
    model = noise_model(domain, physics)
    iy, ix = np.divmod(np.arange(ny * nx), nx)
    for channel in range(3):
        brute = responses[channel].T @ responses[channel]
        cov = noise_covariance(model, channel)
        ours = cov[(iy[:, None] - iy[None]) % cov.shape[0], (ix[:, None] - ix[None]) % cov.shape[1]]
        np.testing.assert_allclose(ours, brute, rtol=1e-5, atol=1e-6 * brute.max())


def _dense_operator(hr: xr.Dataset, points: xr.Dataset) -> np.ndarray:
    where = locate_points(hr, points["lat"].values, points["lon"].values)
    op = np.zeros((points.sizes["station"], hr.sizes["y"] * hr.sizes["x"]))
    for iy, ix, w in where.corners():
        np.add.at(op, (np.arange(op.shape[0]), iy * hr.sizes["x"] + ix), w)
    return op


def test_posterior_equals_dense_float64_conditioning() -> None:
    lr, hr = _case()
    used = _points(hr, [3.2, 8.0, 12.7, 5.5], [4.1, 9.3, 2.2, 12.0], "A")
    targets = _points(hr, [3.9, 9.0, 1.5, 14.2], [4.6, 9.0, 13.1, 7.7], "B")
    truth = hr.corrdiff.at_stations(used)
    obs = truth[["t2m", "u10m"]].assign(
        t2m_error=("station", [0.3, 0.2, 0.5, 0.3], {"units": "K"}),
        u10m_error=xr.full_like(truth["u10m"], 0.4),
    )
    obs["u10m"][1, 2] = np.nan  # a missing observation takes no part
    law = oracle_posterior(lr, targets, obs)

    responses, _ = _impulse_responses()
    domain, physics, arrays, _ = _lr_inputs(lr)
    cond = conditional({k: np.asarray(v) for k, v in arrays.items()}, domain, physics)
    h_a, h_b = _dense_operator(hr, used), _dense_operator(hr, targets)
    for name, channel, mean_key, std_key in (("t2m", 0, "t2m_mean", "t2m_std"),
                                             ("u10m", 1, "u_mean", "wind_std"),
                                             ("v10m", 2, "v_mean", "wind_std")):  # fmt: skip
        kernel = responses[channel].T @ responses[channel]
        for t in range(2):
            std = cond[std_key][t].astype(np.float64).ravel()
            mean = cond[mean_key][t].astype(np.float64).ravel()
            sigma = kernel * std[:, None] * std[None]
            mean_b, cov_bb = h_b @ mean, h_b @ sigma @ h_b.T
            if name in obs:
                y = obs[name].values[t].astype(np.float64)
                err = np.broadcast_to(obs[f"{name}_error"].values, obs[name].shape)[t]
                keep = ~np.isnan(y)
                ha = h_a[keep]
                system = ha @ sigma @ ha.T + np.diag(err[keep] ** 2)
                cross = h_b @ sigma @ ha.T
                mean_b = mean_b + cross @ np.linalg.solve(system, y[keep] - ha @ mean)
                cov_bb = cov_bb - cross @ np.linalg.solve(system, cross.T)
            np.testing.assert_allclose(law[f"{name}_mean"].values[t], mean_b, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(law[f"{name}_std"].values[t], np.sqrt(np.diag(cov_bb)),
                                       rtol=1e-4, atol=1e-5)  # fmt: skip
    assert law["t2m_mean"].attrs["units"] == "K"
    assert list(law["station"].values) == ["B0", "B1", "B2", "B3"]


def test_prior_matches_the_oracle_ensemble_at_stations() -> None:
    lr, hr = _case()
    targets = _points(hr, [2.5, 7.0, 11.3], [3.5, 12.2, 6.6], "B")
    law = oracle_posterior(lr, targets)
    members = oracle_ensemble(lr, n_ensemble=400, seed=2).compute().corrdiff.at_stations(targets)
    for name in ("t2m", "u10m", "v10m"):
        std = law[f"{name}_std"].values
        mean_error = members[name].mean("member").values - law[f"{name}_mean"].values
        assert np.all(np.abs(mean_error) < 5 * std / np.sqrt(400)), name
        np.testing.assert_allclose(members[name].std("member").values, std, rtol=0.15)


def test_an_accurate_observation_pins_its_point_and_informs_its_neighbour() -> None:
    lr, hr = _case()
    used = _points(hr, [8.3], [7.6], "A")
    near = _points(hr, [8.3, 9.3, 8.3], [7.6, 7.6, 15.0], "B")
    truth = hr.corrdiff.at_stations(used)
    obs = truth[["t2m"]].assign(t2m_error=("station", [1e-3], {"units": "K"}))
    prior, law = oracle_posterior(lr, near), oracle_posterior(lr, near, obs)
    np.testing.assert_allclose(law["t2m_mean"].values[:, 0], truth["t2m"].values[:, 0], atol=1e-2)
    assert np.all(law["t2m_std"].values[:, 0] < 0.01 * prior["t2m_std"].values[:, 0])
    assert np.all(law["t2m_std"].values[:, 1] < prior["t2m_std"].values[:, 1])
    np.testing.assert_allclose(law["u10m_std"], prior["u10m_std"])  # t2m says nothing of u10m


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.assign(precip=o["t2m"]), "precip"),
        (lambda o: o.drop_vars("t2m_error"), "t2m_error"),
        (lambda o: o.assign(t2m=o["t2m"].assign_attrs(units="degC")), "units 'degC'"),
        (lambda o: o.assign(t2m_error=o["t2m_error"] * 0), "must be finite and > 0"),
        (lambda o: o.isel(time=[0]), "lack 1 of lr's times"),
        (lambda o: o.drop_vars("lat"), "1-D 'lat' and 'lon'"),
    ],
)
def test_what_the_exact_law_cannot_take_is_refused(change, message) -> None:  # type: ignore[no-untyped-def]
    lr, hr = _case()
    used = _points(hr, [8.3], [7.6], "A")
    obs = hr.corrdiff.at_stations(used)[["t2m"]]
    obs = obs.assign(t2m_error=xr.full_like(obs["t2m"], 0.3))
    with pytest.raises(ValueError, match=message):
        oracle_posterior(lr, used, change(obs))

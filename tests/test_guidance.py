"""Observation-guided sampling (DPS): the operator and misfit by hand, the sampler's pull
toward observations, downscale with observations, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import OUTPUTS, tiny_data, tiny_model

from xcorrdiff.cli import main
from xcorrdiff.diffusion import (
    StationGuidance,
    ancestral,
    dpmpp_2m,
    edm_sigmas,
    euler,
    heun,
    initial_state,
)
from xcorrdiff.inference.api import downscale, downscale_to_zarr
from xcorrdiff.inference.store import read_request

KW = {"num_steps": 4, "device": "cpu", "seed": 5}


def _guidance(values: torch.Tensor, strength: float = 1.0) -> StationGuidance:
    """Two stations on a (1, 2, 6, 7) state: one between four points, one on a point."""
    rows = torch.tensor([[1, 4], [1, 4], [2, 5], [2, 5]])
    cols = torch.tensor([[2, 0], [3, 1], [2, 0], [3, 1]])
    w = torch.tensor([[0.3 * 0.6, 1.0], [0.3 * 0.4, 0.0], [0.7 * 0.6, 0.0], [0.7 * 0.4, 0.0]],
                     dtype=torch.float64)  # fmt: skip
    return StationGuidance(
        rows=rows, cols=cols, weights=w, values=values, sigma=torch.tensor(0.5, dtype=torch.float64),
        mean=torch.zeros(1, 2, 6, 7, dtype=torch.float64), scale=None, strength=strength,
    )  # fmt: skip


def test_operator_and_misfit_by_hand() -> None:
    field = torch.arange(2 * 6 * 7, dtype=torch.float64).reshape(1, 2, 6, 7)
    values = torch.tensor([[[10.0, float("nan")], [60.0, 70.0]]], dtype=torch.float64)
    guide = _guidance(values)
    at = guide.at_stations(field)
    f = field[0].numpy()
    expected_0 = [0.3 * (0.6 * f[c, 1, 2] + 0.4 * f[c, 1, 3]) + 0.7 * (0.6 * f[c, 2, 2]
                  + 0.4 * f[c, 2, 3]) for c in (0, 1)]  # fmt: skip
    np.testing.assert_allclose(at[0, :, 0].numpy(), expected_0, rtol=1e-12)
    np.testing.assert_allclose(at[0, :, 1].numpy(), f[:, 4, 0], rtol=1e-12)
    errors = np.array([10.0 - expected_0[0], 60.0 - expected_0[1], 70.0 - f[1, 4, 0]])
    np.testing.assert_allclose(guide.misfit(field)[0].numpy().ravel(),
                               [errors[0], 0.0, errors[1], errors[2]], rtol=1e-12)  # fmt: skip
    sigma = torch.tensor(2.0, dtype=torch.float64)
    expected = 0.5 * 3.0 * np.sum(errors**2 / (0.25 + 4.0 / 5.0))
    assert float(_guidance(values, strength=3.0)(field, sigma)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("sample", "spread_tolerance"),
    [(euler, 0.05), (heun, 0.05), (dpmpp_2m, 0.05), (ancestral, 0.1)],
)
def test_guided_samples_follow_the_exact_posterior_of_gaussian_data(
    sample, spread_tolerance
) -> None:  # type: ignore[no-untyped-def]
    """Unit-normal data, whose exact denoiser is D(x, σ) = x / (1 + σ²): for a station on a
    grid point observing y with error σ_y, the posterior is N(y / (1 + σ_y²), σ_y² /
    (1 + σ_y²)), and the guided samples (ζ = 1) have that mean and spread; far from the
    stations they equal the unguided samples bit for bit. Both samplers follow the guided
    slope (Heun's corrector included): the mean is within 0.01 at any step count; the
    spread at y = 2.5 converges with the steps, 0.34 (Euler) and 0.54 (Heun) with 16, 0.438
    and 0.455 with 128, against the exact 0.447; DPM-Solver++(2M) 0.47 with 32 and the
    re-noising ancestral sampler, first order and stochastic, 0.41 with 128 (its tolerance
    10 %: unguided too it converges slowly, std 0.64, 0.89, 0.94, 0.99 of 1 with 16, 64,
    128, 512 steps)."""
    n = 4000
    sigmas = edm_sigmas(128, dtype=torch.float64)
    gens = [torch.Generator().manual_seed(k) for k in range(n)]

    def denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x / (1 + sigma**2)

    values = torch.tensor([[[1.5, -2.0], [0.5, 2.5]]], dtype=torch.float64).expand(n, 2, 2)
    guide = _guidance(values.clone())
    guide = StationGuidance(**{**guide.__dict__, "mean": guide.mean.expand(n, 2, 6, 7)})
    x = initial_state(gens, (2, 6, 7), sigmas)

    def run(**kw):  # type: ignore[no-untyped-def]  # fresh streams: ancestral draws noise
        streams = [torch.Generator().manual_seed(1000 + k) for k in range(n)]
        return sample(denoiser, x.clone(), sigmas, generators=streams, **kw)

    plain = run()
    guided = run(guidance=guide)
    for c, y in ((0, -2.0), (1, 2.5)):
        at = guided[:, c, 4, 0].numpy()
        mean, std = y / 1.25, np.sqrt(0.25 / 1.25)
        assert abs(at.mean() - mean) < 4 * std / np.sqrt(n) + 0.01
        assert at.std() == pytest.approx(std, rel=spread_tolerance)
    assert plain[:, 1, 4, 0].std() == pytest.approx(1.0, rel=spread_tolerance)
    torch.testing.assert_close(guided[..., :, 5:], plain[..., :, 5:], rtol=0, atol=0)
    torch.testing.assert_close(run(guidance=None), plain, rtol=0, atol=0)


@pytest.fixture(scope="module")
def case() -> tuple[xr.Dataset, xr.Dataset, xr.Dataset]:
    lr, hr = tiny_data(2)
    rng = np.random.default_rng(1)
    iy, ix = rng.integers(1, 31, 12), rng.integers(1, 47, 12)
    points = xr.Dataset(coords={"station": [f"S{k}" for k in range(12)],
                                "lat": ("station", hr["lat"].values[iy, ix]),
                                "lon": ("station", hr["lon"].values[iy, ix])})  # fmt: skip
    return lr, hr, hr[list(OUTPUTS)].corrdiff.at_stations(points)


def _misfit(ens: xr.Dataset, obs: xr.Dataset) -> float:
    at = ens[list(OUTPUTS)].corrdiff.at_stations(obs)
    return float(np.mean([float(np.abs(at[v] - obs[v]).mean()) for v in OUTPUTS]))


def test_downscale_with_observations(case: tuple[xr.Dataset, xr.Dataset, xr.Dataset]) -> None:
    lr, _, obs = case
    model = tiny_model()
    plain = downscale(lr, model, 3, **KW)
    assert xr.Dataset.equals(plain, downscale(lr, model, 3, **KW, observations=None))
    guided = downscale(lr, model, 3, **KW, observations=obs, guidance_scale=2.0)
    assert _misfit(guided, obs) < 0.5 * _misfit(plain, obs)
    assert guided.attrs["guidance_scale"] == 2.0 and guided.attrs["n_stations"] == 12
    lazy = downscale(lr.chunk(time=1), model, 3, **KW, observations=obs, guidance_scale=2.0)
    xr.testing.assert_allclose(lazy.compute(), guided, rtol=1e-4, atol=1e-4)
    # Observations of one variable at one time guide that time and variable only.
    one = obs[["t2m"]].isel(time=[0])
    partial = downscale(lr, model, 3, **KW, observations=one, guidance_scale=2.0)
    xr.testing.assert_equal(partial.isel(time=1), plain.isel(time=1))
    assert not partial["t2m"].isel(time=0).equals(plain["t2m"].isel(time=0))


def test_observation_errors_weigh_the_pull(case: tuple[xr.Dataset, xr.Dataset, xr.Dataset]) -> None:
    """A station with a huge error has almost no pull: guided values there stay unguided."""
    lr, _, obs = case
    model = tiny_model()
    errors = xr.full_like(obs[["t2m"]].isel(time=0, drop=True), 1e6).rename(t2m="t2m_error")
    errors["t2m_error"].attrs["units"] = "K"
    loose = obs[["t2m"]].assign(t2m_error=errors["t2m_error"])
    plain = downscale(lr, model, 2, **KW)
    guided = downscale(lr, model, 2, **KW, observations=loose, guidance_scale=2.0)
    xr.testing.assert_allclose(guided, plain, rtol=0, atol=1e-3)


def test_bad_observations_are_refused(case: tuple[xr.Dataset, xr.Dataset, xr.Dataset]) -> None:
    lr, _, obs = case
    model = tiny_model()
    with pytest.raises(
        ValueError,
        match=r"observations hold variables \['tp'\] that are not outputs of the model; the model outputs \['t2m', 'u10m'\]",
    ):
        downscale(lr, model, 2, **KW, observations=obs.rename(t2m="tp"))
    with pytest.raises(ValueError, match=r"guidance_scale=0 is invalid"):
        downscale(lr, model, 2, **KW, observations=obs, guidance_scale=0)
    with pytest.raises(ValueError, match=r"observations= with region= is not supported"):
        downscale(
            lr,
            model,
            2,
            **KW,
            observations=obs,
            region={"y": slice(-31000, 0), "x": slice(None, None)},
        )
    with pytest.raises(ValueError, match=r"need 1-D 'lat' coordinates on a station dimension"):
        downscale(lr, model, 2, **KW, observations=obs.drop_vars("lat"))
    far = obs.assign_coords(lat=obs["lat"] + 30)
    with pytest.raises(ValueError, match=r"12 of 12 stations lie outside the grid: S0"):
        downscale(lr, model, 2, **KW, observations=far)
    with pytest.raises(ValueError, match=r"cannot convert units for variable 't2m'"):
        downscale(lr, model, 2, **KW, observations=obs.assign(t2m=obs.t2m.assign_attrs(units="m")))


def test_guided_stores_resume_only_with_the_same_observations(
    case: tuple[xr.Dataset, xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    lr, _, obs = case
    model = tiny_model()
    kw = {**KW, "observations": obs, "guidance_scale": 2.0}
    downscale_to_zarr(lr, tmp_path / "g.zarr", model, 2, **kw)
    stored = xr.open_zarr(tmp_path / "g.zarr", consolidated=False)
    xr.testing.assert_allclose(stored.load(), downscale(lr, model, 2, **kw), atol=1e-4)
    assert read_request(tmp_path / "g.zarr")["guidance_scale"] == 2.0  # type: ignore[index]
    moved = obs.assign(t2m=obs.t2m + 1.0)
    with pytest.raises(ValueError, match="observations_digest: store has"):
        downscale_to_zarr(lr, tmp_path / "g.zarr", model, 2, **{**kw, "observations": moved},
                          resume=True)  # fmt: skip
    with pytest.raises(ValueError, match=r"guidance_scale: store has 2\.0, this call 0\.0"):
        downscale_to_zarr(lr, tmp_path / "g.zarr", model, 2, **KW, resume=True)


def test_cli_downscale_with_observations(
    case: tuple[xr.Dataset, xr.Dataset, xr.Dataset], tmp_path: Path
) -> None:
    lr, _, obs = case
    model_dir = tiny_model().save(tmp_path / "model")
    lr.to_netcdf(tmp_path / "lr.nc")
    obs.to_netcdf(tmp_path / "obs.nc")
    args = ["downscale", str(tmp_path / "lr.nc"), "--model", str(model_dir), "--members", "2",
            "--steps", "4", "--seed", "5", "--device", "cpu", "--quiet"]  # fmt: skip
    out = tmp_path / "cli.zarr"
    assert main([*args, "--out", str(out), "--observations", str(tmp_path / "obs.nc"),
                 "--guidance-scale", "2"]) == 0  # fmt: skip
    expected = downscale(lr, model_dir, 2, **KW, observations=obs, guidance_scale=2.0)
    xr.testing.assert_allclose(
        xr.open_zarr(out, consolidated=False).load()[list(OUTPUTS)], expected, atol=1e-4
    )
    assert main([*args, "--out", str(tmp_path / "bad.zarr"), "--observations",
                 str(tmp_path / "obs.nc"), "--guidance-scale", "0"]) == 2  # fmt: skip


def test_observation_values_and_errors_are_checked(
    case: tuple[xr.Dataset, xr.Dataset, xr.Dataset],
) -> None:
    lr, _, obs = case
    model = tiny_model()
    with pytest.raises(TypeError, match=r"observations must be an xarray\.Dataset of station"):
        downscale(lr, model, 2, **KW, observations=obs["t2m"])  # type: ignore[arg-type]
    errors = xr.zeros_like(obs["t2m"]).assign_attrs(units="K")
    with pytest.raises(ValueError, match="observation errors must be positive where there are"):
        downscale(lr, model, 2, **KW, observations=obs[["t2m"]].assign(t2m_error=errors))
    no_time = lr.isel(time=0, drop=True)
    with (
        pytest.warns(UserWarning, match="keyed by position"),
        pytest.raises(ValueError, match="observations have a 'time' dimension but the input"),
    ):
        downscale(no_time, model, 2, **KW, observations=obs)


# --- observations as users bring them: never silently wrong ---------------------------------


def test_errors_are_differences(case: tuple[xr.Dataset, xr.Dataset, xr.Dataset]) -> None:
    """0.3 in degC is an error of 0.3 K (not 273.45 K, which switched guidance off); an error
    without units is a number in its variable's units."""
    lr, _, obs = case
    model = tiny_model()

    def guided(error: xr.DataArray) -> xr.Dataset:
        return downscale(lr, model, 2, **KW, observations=obs.assign(t2m_error=error))

    kelvin = guided(xr.full_like(obs.t2m, 0.3).assign_attrs(units="K"))
    for units in ("degC", "delta_degC", None):
        error = xr.full_like(obs.t2m, 0.3).assign_attrs({} if units is None else {"units": units})
        xr.testing.assert_equal(guided(error)[list(OUTPUTS)], kelvin[list(OUTPUTS)])
    unguided = downscale(lr, model, 2, **KW)
    assert _misfit(kelvin, obs) < 0.8 * _misfit(unguided, obs)


def test_duplicate_stations_merge_when_they_agree(
    case: tuple[xr.Dataset, xr.Dataset, xr.Dataset],
) -> None:
    lr, _, obs = case
    model = tiny_model()
    once = downscale(lr, model, 2, **KW, observations=obs)
    twice = xr.concat(
        [obs, obs.isel(station=[3, 5]).assign_coords(station=["D3", "D5"])], "station"
    )
    xr.testing.assert_equal(downscale(lr, model, 2, **KW, observations=twice)[list(OUTPUTS)],
                            once[list(OUTPUTS)])  # fmt: skip
    holes = twice.copy(deep=True)
    holes["t2m"][{"station": 3}] = np.nan  # the duplicate fills it
    xr.testing.assert_equal(downscale(lr, model, 2, **KW, observations=holes)[list(OUTPUTS)],
                            once[list(OUTPUTS)])  # fmt: skip
    conflicting = twice.copy(deep=True)
    conflicting["u10m"][{"station": -1}] += 5.0
    with pytest.raises(ValueError, match=r"stations 'S5' and 'D5' lie at the same point"):
        downscale(lr, model, 2, **KW, observations=conflicting)


def test_implausible_or_misdated_observations_are_refused(
    case: tuple[xr.Dataset, xr.Dataset, xr.Dataset],
) -> None:
    lr, _, obs = case
    model = tiny_model()
    celsius = obs.assign(t2m=obs.t2m - 273.15)  # still labelled K
    with pytest.raises(ValueError, match=r"observations variable 't2m' has values .* Celsius"):
        downscale(lr, model, 2, **KW, observations=celsius)
    assert downscale(lr, model, 2, **KW, observations=celsius, check_plausibility=False) is not None
    dated = obs.assign_coords(time=obs.time + np.timedelta64(1, "D"))
    with pytest.raises(ValueError, match=r"none of them a time of the input"):
        downscale(lr, model, 2, **KW, observations=dated)
    partly = obs.isel(time=[0])  # one of the two times: used where it is
    assert downscale(lr, model, 2, **KW, observations=partly).attrs["guidance_scale"] == 1.0


@pytest.mark.parametrize("sample", [euler, dpmpp_2m])
def test_the_pull_is_not_taken_through_untrained_noise_levels(sample) -> None:  # type: ignore[no-untyped-def]
    """A denoiser exact for unit-normal data but for a tiny wiggle above σ = 20, where a
    network is never trained: its value (≤ 1e-3) leaves unguided samples as they were, its
    Jacobian (multiplied by σ² ≈ 6·10⁵ at σ_max) would wreck the pull. Taken at the trusted
    level (σ = 10, the default) the guided samples are those of the clean denoiser; taken
    through the wiggle (``trusted_sigma=inf``) they are not."""
    n, sigmas = 500, edm_sigmas(4, dtype=torch.float64)

    def clean(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return x / (1 + sigma**2)

    def wiggly(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return clean(x, sigma) + (1e-3 * torch.sin(x) if float(sigma) > 20 else 0.0)

    values = torch.tensor([[[1.5, -2.0], [0.5, 2.5]]], dtype=torch.float64).expand(n, 2, 2)
    guide = _guidance(values.clone())
    x = initial_state([torch.Generator().manual_seed(k) for k in range(n)], (2, 6, 7), sigmas)

    def run(denoiser, trusted: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
        far = StationGuidance(**{**guide.__dict__, "mean": guide.mean.expand(n, 2, 6, 7),
                                 "trusted_sigma": trusted})  # fmt: skip
        return sample(denoiser, x.clone(), sigmas, guidance=far)

    reference = run(clean, 10.0)
    assert float((run(wiggly, 10.0) - reference).abs().max()) < 1e-2
    at_station = (run(wiggly, float("inf")) - reference)[:, :, 4, 0]  # Euler 0.78, 2M 37
    assert float(at_station.square().mean().sqrt()) > 0.3

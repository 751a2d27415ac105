"""Power spectra (Parseval, peaks, slopes, grid spacing), the spectral distances of climate
output (RALSD, power per band) and histograms."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

import xcorrdiff.verify as xv


def _field(values: np.ndarray, dx: float = 2_000.0, name: str = "t2m") -> xr.DataArray:
    ny, nx = values.shape[-2:]
    lead = [f"d{i}" for i in range(values.ndim - 2)]
    return xr.DataArray(
        values,
        dims=[*lead, "y", "x"],
        coords={
            "y": ("y", np.arange(ny) * dx, {"units": "m"}),
            "x": ("x", np.arange(nx) * dx, {"units": "m"}),
        },
        name=name,
        attrs={"units": "K"},
    )


@pytest.mark.parametrize("shape", [(32, 32), (24, 40)])
def test_parseval(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(0)
    values = 3.0 + rng.normal(size=(2, *shape))
    field = _field(values)
    spec = xv.power_spectrum(field)
    dk = float(spec["wavenumber"][1])
    total = (spec * dk).sum("wavenumber")
    np.testing.assert_allclose(total, (values**2).mean(axis=(-2, -1)), rtol=1e-12)
    # Bin 0 holds the mean; with detrend="constant" it is gone and the total is the variance.
    detrended = xv.power_spectrum(field, detrend="constant")
    assert np.all(np.abs(detrended.isel(wavenumber=0)) < 1e-20)
    np.testing.assert_allclose(
        (detrended * dk).sum("wavenumber"), values.var(axis=(-2, -1)), rtol=1e-12
    )
    assert spec.attrs["units"] == "(K)**2 m"
    assert spec["wavenumber"].attrs["units"] == "m-1"


def test_sine_peaks_at_its_physical_wavenumber() -> None:
    nx, dx = 64, 2_500.0
    wavelength = nx * dx / 8  # 20 km
    x = np.arange(nx) * dx
    values = np.broadcast_to(np.sin(2 * np.pi * x / wavelength), (48, nx))
    spec = xv.power_spectrum(_field(np.array(values), dx=dx))
    peak = spec.idxmax("wavenumber")
    assert float(peak) == pytest.approx(1.0 / wavelength, rel=1e-12)
    assert float(spec["wavelength"].sel(wavenumber=peak)) == pytest.approx(wavelength)
    # All the power (mean square 1/2) sits in the peak bin.
    dk = float(spec["wavenumber"][1])
    assert float(spec.max() * dk) == pytest.approx(0.5, rel=1e-12)


def test_kolmogorov_slope_recovered() -> None:
    n, dx = 256, 3_000.0
    rng = np.random.default_rng(1)
    ky = np.fft.fftfreq(n, d=dx)
    kx = np.fft.fftfreq(n, d=dx)
    k = np.hypot(ky[:, None], kx[None, :])
    k[0, 0] = np.inf
    # E(k) ∝ k^(-5/3) summed over annuli of ~2πk modes → |f̂|² ∝ k^(-8/3) per mode.
    amplitude = k ** (-4.0 / 3.0)
    phases = np.exp(2j * np.pi * rng.random((4, n, n)))
    values = np.real(np.fft.ifft2(amplitude * phases))
    spec = xv.power_spectrum(_field(values, dx=dx)).mean("d0")
    kk = spec["wavenumber"].values
    band = (kk > 4 / (n * dx)) & (kk < 0.4 / dx)  # well inside the resolved range
    slope = np.polyfit(np.log(kk[band]), np.log(spec.values[band]), 1)[0]
    assert slope == pytest.approx(-5.0 / 3.0, abs=0.1)


def test_window_and_linear_detrend() -> None:
    ny, nx = 40, 50
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    plane = 2.0 + 0.3 * yy - 0.1 * xx
    spec = xv.power_spectrum(_field(plane), detrend="linear")
    assert float(abs(spec).max()) < 1e-20  # a plane is removed exactly
    rng = np.random.default_rng(2)
    noise = rng.normal(size=(200, ny, nx))
    hann = xv.power_spectrum(_field(noise), window="hann").mean("d0")
    dk = float(hann["wavenumber"][1])
    # The taper is scaled to unit mean square: white-noise power preserved on average.
    assert float((hann * dk).sum()) == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ValueError, match=r"window='hamming'; expected 'hann' or None"):
        xv.power_spectrum(_field(noise), window="hamming")


def test_degrees_converted_to_metres() -> None:
    lat = np.linspace(40.0, 50.0, 11)
    lon = np.linspace(0.0, 20.0, 21)
    da = xr.DataArray(
        np.zeros((11, 21)),
        dims=("lat", "lon"),
        coords={
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    )
    dy, dx = xv.grid_spacing(da, ("lat", "lon"))
    assert dy == pytest.approx(np.deg2rad(1.0) * 6_371_000.0)
    assert dx == pytest.approx(np.deg2rad(1.0) * 6_371_000.0 * np.cos(np.deg2rad(45.0)))
    km = _field(np.zeros((4, 4)), dx=2.0).assign_coords(
        x=("x", np.arange(4) * 2.0, {"units": "km"}), y=("y", np.arange(4) * 2.0, {"units": "km"})
    )
    assert xv.grid_spacing(km) == (2_000.0, 2_000.0)
    spec = xv.power_spectrum(da, dims=("lat", "lon"))
    assert float(spec["wavenumber"][1]) == pytest.approx(1.0 / (11 * dy))


def test_ensemble_dataset_dask_lazy() -> None:
    rng = np.random.default_rng(3)
    ens = xr.Dataset(
        {
            "t2m": _field(rng.normal(size=(3, 2, 16, 20))).rename(d0="member", d1="time"),
            "u10": _field(rng.normal(size=(3, 2, 16, 20))).rename(d0="member", d1="time"),
        }
    )
    eager = xv.power_spectrum(ens)
    assert eager["t2m"].dims == ("member", "time", "wavenumber")
    with raise_if_dask_computes():
        lazy = xv.power_spectrum(ens.chunk(member=1, time=1))
    xr.testing.assert_allclose(lazy.compute(), eager)
    with raise_if_dask_computes(), pytest.warns(UserWarning, match=r"along \['y'\]"):
        split = xv.power_spectrum(ens["t2m"].chunk(y=8))
    xr.testing.assert_allclose(split.compute(), eager["t2m"])
    xr.testing.assert_identical(ens.corrdiff.power_spectrum(), eager)


def test_spectrum_bad_input() -> None:
    field = _field(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"needs a 1-D coordinate on dim 'y'.*spacing="):
        xv.power_spectrum(field.drop_vars("y"))
    with pytest.raises(
        ValueError, match=r"field has dims \('y', 'x'\), expected the spatial dims \('lat', 'lon'\)"
    ):
        xv.power_spectrum(field, dims=("lat", "lon"), spacing=(1.0, 1.0))
    with pytest.raises(ValueError, match=r"not uniformly spaced"):
        xv.power_spectrum(field.assign_coords(x=[0.0, 1.0, 3.0, 7.0]))
    with pytest.raises(TypeError, match=r"field variable 'flag' has dtype bool"):
        xv.power_spectrum((field > 0).rename("flag"))
    ds = xr.Dataset({"t2m": field, "station_id": ("s", np.arange(3.0))})
    with pytest.raises(ValueError, match=r"variable 'station_id' has dims \('s',\), expected both"):
        xv.power_spectrum(ds)


# --- spectral distances --------------------------------------------------------------------


def _climate_pair(seed: int = 4) -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(seed)
    red = rng.normal(size=(3, 4, 24, 32)).cumsum(-1).cumsum(-2)  # red spectra, as weather's
    forecast = _field(red).rename(d0="member", d1="time")
    obs = _field(rng.normal(size=(4, 24, 32)).cumsum(-1).cumsum(-2)).rename(d0="time")
    return forecast, obs


def test_ralsd_and_band_ratio_equal_the_spectra_by_hand() -> None:
    forecast, obs = _climate_pair()
    options = {"window": "hann", "detrend": "linear"}
    spec_f = xv.power_spectrum(forecast, **options).values  # (member, time, k)
    spec_o = xv.power_spectrum(obs, **options).values
    k = xv.power_spectrum(obs, **options)["wavenumber"].values
    nyquist = 1 / (2 * 2_000.0)
    bins = [b for b in range(k.size) if 0 < k[b] <= nyquist * (1 + 1e-12)]
    pooled = [spec_f[:, :, b].mean() for b in range(k.size)]
    truth = [spec_o[:, b].mean() for b in range(k.size)]
    squares = [(10 * np.log10(pooled[b]) - 10 * np.log10(truth[b])) ** 2 for b in bins]
    assert np.isclose(float(xv.ralsd(forecast, obs)), np.sqrt(sum(squares) / len(bins)), rtol=1e-10)
    member = xv.ralsd(forecast, obs, per_member=True)
    for m in range(3):
        mine = [spec_f[m, :, b].mean() for b in range(k.size)]
        squares = [(10 * np.log10(mine[b] / truth[b])) ** 2 for b in bins]
        assert np.isclose(float(member[m]), np.sqrt(sum(squares) / len(bins)), rtol=1e-10)
    ratio = xv.band_power_ratio(forecast, obs)
    # Octaves from the 4 km Nyquist wavelength while they fit the 48 km side: 4, 8, 16, 32 km.
    assert ratio["wavelength_min"].values.tolist() == [4e3, 8e3, 16e3, 32e3]
    for j, (short, long) in enumerate(zip(ratio["wavelength_min"].values,
                                          ratio["wavelength_max"].values, strict=True)):  # fmt: skip
        inside = [b for b in bins if short <= 1 / k[b] < long]
        expected = sum(pooled[b] for b in inside) / sum(truth[b] for b in inside)
        assert inside and np.isclose(float(ratio[j]), expected, rtol=1e-10)


def test_spectral_distances_see_scale_and_small_scale_noise() -> None:
    _, obs = _climate_pair()
    scaled = (2 * obs).expand_dims(member=2)
    assert np.isclose(float(xv.ralsd(scaled, obs)), 20 * np.log10(2), rtol=1e-10)
    np.testing.assert_allclose(xv.band_power_ratio(scaled, obs).values, 4.0, rtol=1e-10)
    # Grid-scale noise raises the shortest octave's power and leaves the largest scales be.
    rng = np.random.default_rng(5)
    noisy = obs.expand_dims(member=2) + rng.normal(size=(2, *obs.shape)) * obs.std().item() * 0.2
    ratio = xv.band_power_ratio(noisy, obs).values
    assert ratio[0] > 2 and abs(ratio[-1] - 1) < 0.05
    assert (
        float(xv.ralsd(noisy, obs)) > 1.0 and float(xv.ralsd(obs.expand_dims(member=1), obs)) == 0
    )


def test_spectral_distances_dataset_lazy_and_bad_bands() -> None:
    forecast, obs = _climate_pair()
    eager = xv.band_power_ratio(forecast, obs, bands=[(4e3, 10e3), (10e3, 50e3)])
    with raise_if_dask_computes():
        lazy = xv.band_power_ratio(
            forecast.to_dataset().chunk(time=1), obs.to_dataset(), bands=[(4e3, 10e3), (10e3, 50e3)]
        )
    xr.testing.assert_allclose(lazy["t2m"].compute(), eager)
    with pytest.raises(
        ValueError, match=r"bands: \(8000.0, 4000.0\) is invalid; expected \(shortest"
    ):
        xv.band_power_ratio(forecast, obs, bands=[(8e3, 4e3)])
    with pytest.raises(ValueError, match=r"bands: \(1000.0, 3000.0\) holds no resolved wavenumber"):
        xv.band_power_ratio(forecast, obs, bands=[(1e3, 3e3)])


# --- histograms ----------------------------------------------------------------------------


def test_histogram_density_and_counts() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=(4, 1000))
    da = xr.DataArray(values, dims=("member", "point"))
    edges = np.linspace(-5, 5, 21)
    pdf = xv.histogram(da, bins=edges)
    expected, _ = np.histogram(values, bins=edges, density=True)
    np.testing.assert_allclose(pdf.values, expected, rtol=1e-12)
    assert pdf.dims == ("bin",)
    counts = xv.histogram(da, bins=edges, dim="point", density=False)
    assert counts.dims == ("bin", "member")
    np.testing.assert_array_equal(counts.sum("bin"), [1000] * 4)
    # Values on the last edge are counted; NaN is not.
    edge_case = xr.DataArray([0.0, 1.0, np.nan], dims="p")
    np.testing.assert_array_equal(
        xv.histogram(edge_case, bins=np.array([0.0, 0.5, 1.0]), density=False), [1, 1]
    )


def test_histogram_log_bins_heavy_tail_and_lazy() -> None:
    rng = np.random.default_rng(5)
    rain = np.where(rng.random(5000) < 0.6, 0.0, rng.lognormal(0.0, 1.5, 5000))
    da = xr.DataArray(rain, dims="point", name="tp")
    pdf = xv.histogram(da, bins=30, log=True)
    edges = np.append(pdf["bin_lower"].values, pdf["bin_upper"].values[-1])
    np.testing.assert_allclose(np.diff(np.log(edges)), np.diff(np.log(edges))[0])
    assert edges[0] == pytest.approx(rain[rain > 0].min())
    assert float((pdf * (pdf["bin_upper"] - pdf["bin_lower"])).sum()) == pytest.approx(1.0)
    with raise_if_dask_computes():
        lazy = xv.histogram(da.chunk(point=1000), bins=edges, log=True)
    xr.testing.assert_allclose(lazy.compute(), pdf)

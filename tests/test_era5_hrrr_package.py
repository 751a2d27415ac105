"""Earth2Studio's ``CorrDiffEra5Hrrr`` package layout read by ``from_earth2studio`` and run by
``downscale``: its conditioning equal to Earth2Studio's, its members those of our
rectified-flow integrators (which equal Earth2Studio's, ``tests/test_rectified_flow.py``),
labeled, reproducible, chunking-invariant, regions, zarr, round trips and refusals.

The package and Earth2Studio's outputs are the fixtures of
``tests/fixtures/make_era5_hrrr_fixtures.py``.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.diffusion.rectified_flow import flow_heun, flow_initial_state, flow_times, velocity
from xcorrdiff.inference.blocks import member_seed, time_keys
from xcorrdiff.io.era5_hrrr import HRRR_X, HRRR_Y
from xcorrdiff.nn import FlowDiT
from xcorrdiff.nn.flow_dit import year_phase_conditions

PACKAGE = Path(__file__).parent / "fixtures" / "era5_hrrr" / "package"
REFERENCE = PACKAGE.parent / "reference.npz"
NAMES = ["u10m", "v10m", "t2m"]
UNITS = {"u10m": "m s-1", "v10m": "m s-1", "t2m": "K"}


@functools.lru_cache(maxsize=1)
def _model() -> xcorrdiff.CorrDiffModel:
    return xcorrdiff.CorrDiffModel.from_earth2studio(PACKAGE, device="cpu")


def era5() -> xr.Dataset:
    """The two ERA5 times Earth2Studio ran, on its native grid, in CF units."""
    ref = np.load(REFERENCE)
    lat = np.load(PACKAGE / "x_pred" / "era5_lat.npy")
    lon = np.load(PACKAGE / "x_pred" / "era5_lon.npy")
    data = {
        v: (("time", "lat", "lon"), ref["era5"][:, k], {"units": UNITS[v]})
        for k, v in enumerate(NAMES)
    }
    return xr.Dataset(
        data, coords={"time": ref["times"].astype("datetime64[ns]"), "lat": lat, "lon": lon}
    )


def test_the_package_becomes_a_whole_field_model_on_the_hrrr_grid() -> None:
    model = _model()
    assert model.regression is None and isinstance(model.diffusion, FlowDiT)
    assert model.output_names == tuple(NAMES) and model.shape == (16, 24)
    assert [v.units for v in model.output_variables] == ["m s-1", "m s-1", "K"]
    np.testing.assert_allclose(model.grid["y"].values, HRRR_Y[500:516])
    np.testing.assert_allclose(model.grid["x"].values, HRRR_X[900:924])
    assert model.grid["lat"].dims == ("y", "x")
    np.testing.assert_allclose(
        model.grid["lat"].values, np.load(PACKAGE / "x_pred" / "hrrr_lat.npy"), rtol=1e-7
    )
    flow = model.diffusion
    assert (flow.shift, flow.t_max, flow.x0v_clip, flow.time_scale) == (12.0, 0.99, 0.05, 999.0)
    assert (model.sampler.sampler, model.sampler.num_steps) == ("heun", 4)
    assert "rectified-flow DiT" in repr(model)
    with pytest.raises(ValueError, match=r"no regression stage"):
        model.regression_mean(era5())


def test_our_conditioning_equals_earth2studio_s() -> None:
    """Our bilinear regridding, normalization and cosine zenith angle against Earth2Studio's
    ``preprocess_input`` (its own bilinear interpolation and PhysicsNeMo's zenith angle)."""
    model, ref = _model(), np.load(REFERENCE)
    condition = model.prepare(era5())
    order = model.diffusion.condition_order.numpy()
    for k in range(2):
        ours = np.stack([
            condition[v].values[k] if "time" in condition[v].dims else condition[v].values
            for v in model.condition_variables
        ])[order]  # fmt: skip
        theirs = ref[f"cond_concat_{k}"][0]
        np.testing.assert_allclose(ours[:3], theirs[:3], atol=1e-5)  # ERA5, normalized
        np.testing.assert_allclose(ours[3], theirs[3], atol=1e-4)  # cos zenith
        np.testing.assert_array_equal(ours[4:], theirs[4:])  # invariants
        scalars = year_phase_conditions(condition["time"].values[k : k + 1], 1, True)
        np.testing.assert_allclose(scalars, ref[f"cond_vec_{k}"], atol=1e-6)


@torch.no_grad()
def _direct_members(model, lr: xr.Dataset, n: int, seed: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Members by hand: our condition, the pipeline's random streams, Heun in float32."""
    condition = model.prepare(lr)
    stacked = np.stack([np.broadcast_to(condition[v].values if "time" in condition[v].dims
                        else condition[v].values[None], (lr.sizes["time"], 16, 24))
                        for v in model.condition_variables], axis=1)  # fmt: skip
    keys = time_keys(lr["time"].values, lr.sizes["time"])
    scalars = torch.from_numpy(year_phase_conditions(lr["time"].values, 1, True))
    net, times = model.diffusion, flow_times(4, t_max=0.99, shift=12.0)
    out = np.empty((n, lr.sizes["time"], 3, 16, 24), np.float32)
    for t in range(lr.sizes["time"]):
        gens = [torch.Generator().manual_seed(member_seed(seed, int(keys[t]), m)) for m in range(n)]
        cond = torch.from_numpy(np.ascontiguousarray(stacked[t : t + 1], np.float32)).expand(
            n, -1, -1, -1
        )

        def v(x, s, cond=cond, t=t):  # type: ignore[no-untyped-def]
            return velocity(
                x, net(x, s, cond, scalars[t : t + 1].expand(n, -1)), s, prediction="x0", clip=0.05
            )

        out[:, t] = flow_heun(v, flow_initial_state(gens, (3, 16, 24), times), times).numpy()
    mean = np.array([model.output_normalizer.stats[v].mean for v in NAMES], np.float32)
    std = np.array([model.output_normalizer.stats[v].std for v in NAMES], np.float32)
    return out * std[:, None, None] + mean[:, None, None]


def test_downscale_returns_labeled_members_of_our_integrator() -> None:
    model, lr = _model(), era5()
    ens = lr.corrdiff.downscale(model=model, n_ensemble=2, seed=3, device="cpu")
    assert ens["t2m"].dims == ("member", "time", "y", "x") and ens["t2m"].attrs["units"] == "K"
    assert ens["lat"].dims == ("y", "x")
    expected = _direct_members(model, lr, 2, 3)
    for k, name in enumerate(NAMES):
        np.testing.assert_allclose(ens[name].values, expected[:, :, k], rtol=1e-6, atol=1e-4)
    assert float(ens["t2m"].std("member").mean()) > 0.1  # members differ
    assert "rectified-flow DiT" in ens.attrs["source"]
    crps = ens.corrdiff.crps(ens.isel(member=0, drop=True))  # verification runs on it
    assert all(np.isfinite(float(crps[name])) for name in NAMES)


def test_an_era5_file_as_users_have_it_gives_the_same_members() -> None:
    """ERA5 as its files come: longitudes 0–360 (the package's grid is -180–180), another
    variable beside, t2m in degrees Celsius: regridded and converted, the same members."""
    model, lr = _model(), era5()
    native = lr.corrdiff.downscale(model=model, n_ensemble=2, seed=5, device="cpu")
    theirs = lr.assign_coords(lon=lr["lon"] % 360)
    theirs = theirs.assign(
        t2m=(theirs["t2m"] - 273.15).assign_attrs(units="degC"),
        sp=xr.full_like(theirs["t2m"], 9.0e4).assign_attrs(units="Pa"),
    )
    assert float(theirs["lon"].min()) > 180
    out = theirs.corrdiff.downscale(model=model, n_ensemble=2, seed=5, device="cpu")
    assert out["t2m"].attrs["units"] == "K"
    for name in NAMES:
        np.testing.assert_allclose(out[name].values, native[name].values, rtol=1e-5, atol=2e-3)


def test_members_are_reproducible_per_time_and_member_and_invariant_to_chunking() -> None:
    model, lr = _model(), era5()
    whole = lr.corrdiff.downscale(model=model, n_ensemble=3, seed=1, device="cpu")
    one = lr.isel(time=[1]).corrdiff.downscale(model=model, n_ensemble=2, seed=1, device="cpu")
    lazy = lr.chunk(time=1).corrdiff.downscale(
        model=model, n_ensemble=3, seed=1, device="cpu", member_batch_size=1
    )
    for name in NAMES:
        np.testing.assert_array_equal(one[name].values, whole[name].values[:2, 1:])
        np.testing.assert_array_equal(lazy[name].compute().values, whole[name].values)


def test_a_region_is_the_whole_domain_s_members_there(tmp_path: Path) -> None:
    model, lr = _model(), era5()
    whole = lr.corrdiff.downscale(model=model, n_ensemble=2, seed=0, device="cpu")
    y, x = model.grid["y"].values, model.grid["x"].values
    region = {"y": slice(y[2], y[9]), "x": slice(x[5], x[19])}
    part = lr.corrdiff.downscale(model=model, n_ensemble=2, seed=0, device="cpu", region=region)
    for name in NAMES:
        np.testing.assert_array_equal(part[name].values, whole[name].values[..., 2:10, 5:20])
    store = xcorrdiff.downscale_to_zarr(
        lr.chunk(time=1), tmp_path / "ens.zarr", model=model, n_ensemble=2, seed=0, device="cpu"
    )
    written = xr.open_zarr(store.store)
    np.testing.assert_array_equal(written["t2m"].values, whole["t2m"].values)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"prediction": "eps"}, r"prediction='eps' is invalid; expected 'x0' or 'flow'"),
        ({"condition_order": [0, 1]}, r"condition_order has 2 channels but the DiT takes 9 = 3"),
        ({"presence_flags": 2}, r"4 scalar conditions .* but the DiT takes condition_dim=3"),
    ],
)
def test_a_flow_dit_refuses_a_layout_its_dit_does_not_take(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FlowDiT(**{**_model().diffusion.config, **change})


def test_it_is_not_written_as_a_generic_corrdiff_package(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"has no regression network \(a rectified-flow DiT"):
        _model().save(tmp_path / "pkg", format="earth2studio")
    assert not (tmp_path / "pkg").exists()


def test_the_model_saves_and_loads_with_the_same_members(tmp_path: Path) -> None:
    model, lr = _model(), era5().isel(time=[0])
    model.save(tmp_path / "model")
    again = xcorrdiff.load_model(tmp_path / "model", device="cpu")
    assert again.regression is None and isinstance(again.diffusion, FlowDiT)
    a = lr.corrdiff.downscale(model=model, n_ensemble=1, device="cpu")
    b = lr.corrdiff.downscale(model=again, n_ensemble=1, device="cpu")
    np.testing.assert_array_equal(a["u10m"].values, b["u10m"].values)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"return_mean": True}, r"return_mean=True \(it has no regression mean\)"),
        ({"patch_shape": (8, 8)}, r"patch_shape=\(8, 8\) \(the DiT takes its whole domain\)"),
        ({"sampler": "dpmpp_2m"}, r"sampler='dpmpp_2m' \(it samples with \['euler', 'heun'\]\)"),
        ({"s_churn": 1.0}, r"churn or re-noising"),
    ],
)
def test_downscale_refuses_what_the_model_does_not_do(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        era5().corrdiff.downscale(model=_model(), n_ensemble=1, device="cpu", **options)


def test_an_input_without_datetimes_is_refused_by_name() -> None:
    lr = era5().assign_coords(time=[0.0, 6.0])
    with pytest.raises(ValueError, match=r"conditions on the day of the year: the input needs"):
        lr.corrdiff.downscale(model=_model(), n_ensemble=1, device="cpu")


def _copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(PACKAGE, tmp_path / "package"))


@pytest.mark.parametrize("name", ["stats.json", "invariants.npy", "hrrr_lat.npy", "dit.mdlus"])
def test_a_package_missing_a_file_is_refused_naming_it(tmp_path: Path, name: str) -> None:
    root = _copy(tmp_path)
    (root / "x_pred" / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        xcorrdiff.CorrDiffModel.from_earth2studio(root)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"era5_variables": ["u10m", "v10m", "sst_anomaly"]},
            r"era5_variables \['sst_anomaly'\] have no known units",
        ),
        ({"network": {"kind": "edm"}}, r"network kind 'edm' is not supported"),
        (
            {"hrrr_window": {"rows": [0, 10], "cols": [0, 24]}},
            r"expected the hrrr_window's \(10, 24\)",
        ),
    ],
)
def test_a_package_of_unknown_content_is_refused_naming_the_field(
    tmp_path: Path, change: dict, match: str
) -> None:
    root = _copy(tmp_path)
    meta = root / "x_pred" / "metadata.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), **change}))
    with pytest.raises(ValueError, match=match):
        xcorrdiff.CorrDiffModel.from_earth2studio(root)


def test_an_input_lacking_a_package_variable_is_refused_by_name() -> None:
    with pytest.raises(KeyError, match=r"lr lacks the model's input variables \['t2m'\]"):
        era5().drop_vars("t2m").corrdiff.downscale(model=_model(), n_ensemble=1, device="cpu")


def test_its_ensemble_spread_can_be_calibrated() -> None:
    """calibrate scales the initial noise of a rectified-flow model as of an EDM one."""
    model, lr = _model(), era5()
    truth = lr.corrdiff.downscale(model=model, n_ensemble=1, seed=99, device="cpu")
    truth = truth.isel(member=0, drop=True)[NAMES]
    tuned = xcorrdiff.calibrate(model, lr, truth, scales=(1.0, 1.5), n_ensemble=2, device="cpu")
    record = tuned.provenance["calibration"]
    assert len(tuned.sampler.noise_scale) == 3 and record["candidates"] == [1.0, 1.5]
    wide = lr.corrdiff.downscale(model=xcorrdiff.inference.calibrate.with_noise_scale(
        model, (1.5, 1.5, 1.5)), n_ensemble=2, seed=0, device="cpu")  # fmt: skip
    plain = lr.corrdiff.downscale(model=model, n_ensemble=2, seed=0, device="cpu")
    assert not np.array_equal(wide["t2m"].values, plain["t2m"].values)

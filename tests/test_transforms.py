"""Per-variable transforms (exact inverses) and physical bounds on the output."""

from __future__ import annotations

from pathlib import Path

import dask.array
import numpy as np
import pytest
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.transforms import TRANSFORMS
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic

DOMAIN = {
    "none": np.linspace(-50, 50, 101),
    "log1p": np.linspace(0, 50, 101),
    "asinh": np.linspace(-50, 50, 101),
    "fourth_root": np.linspace(0, 50, 101),
    "logit": np.linspace(0.01, 0.99, 99),
}


@pytest.mark.parametrize("kind", sorted(TRANSFORMS))
def test_inverse_undoes_forward(kind: str) -> None:
    spec = TRANSFORMS[kind]
    x = DOMAIN[kind]
    np.testing.assert_allclose(spec.inverse(spec.forward(x)), x, rtol=1e-12, atol=1e-12)
    lazy = spec.inverse(spec.forward(dask.array.from_array(x, chunks=10)))
    assert isinstance(lazy, dask.array.Array)
    np.testing.assert_allclose(lazy.compute(), x, rtol=1e-12, atol=1e-12)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(spec.inverse(spec.forward(x32)), x32, rtol=1e-5, atol=1e-5)


def test_edges_of_the_domains() -> None:
    assert np.isfinite(TRANSFORMS["logit"].forward(np.array([0.0, 1.0]))).all()
    with np.errstate(invalid="ignore"):
        assert np.isnan(TRANSFORMS["fourth_root"].forward(np.array(-1.0)))
    assert TRANSFORMS["fourth_root"].inverse(np.array(-2.0)) == 0.0


def test_normalizer_mixes_transforms_across_channels() -> None:
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "precip": (("t", "y", "x"), rng.gamma(0.5, 2.0, (6, 4, 4))),
            "hurs": (("t", "y", "x"), rng.uniform(0.05, 0.95, (6, 4, 4))),
            "u": (("t", "y", "x"), rng.normal(0, 5, (6, 4, 4))),
        }
    )
    transforms = {"precip": "fourth_root", "hurs": "logit", "u": "asinh"}
    norm = Normalizer.fit(ds, list(ds.data_vars), transforms=transforms)
    z = norm.normalize(ds)
    for name in ds.data_vars:
        assert abs(float(z[name].mean())) < 1e-9 and abs(float(z[name].std()) - 1) < 1e-9
    xr.testing.assert_allclose(norm.denormalize(z), ds)
    stacked = np.stack([ds[v].values for v in ds.data_vars], axis=1)
    back = norm.denormalize_array(
        norm.normalize_array(stacked, list(ds.data_vars)), list(ds.data_vars)
    )
    np.testing.assert_allclose(back, stacked, rtol=1e-10, atol=1e-10)


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> tuple[xcorrdiff.CorrDiffModel, xr.Dataset]:
    lr, hr = make_synthetic(n_times=8, hr_shape=(16, 16), factor=4, seed=7)
    config = TrainConfig(
        regression=NetworkConfig(model_channels=8, channel_mult=(1, 2), embedding_type="zero"),
        diffusion=NetworkConfig(model_channels=8, channel_mult=(1, 2)),
        batch_size=2, patch_shape=(8, 8), regression_duration=2, diffusion_duration=2,
        output_transforms={"precip": "asinh"},
        output_bounds={"precip": ("0 kg m-2 s-1", None), "t2m": (None, "8 degC")},
    )  # fmt: skip
    model = lr.corrdiff.fit(hr, config=config, output_variables=["t2m", "precip"], progress=False)
    return model, lr


def test_bounds_clip_members_and_means_in_the_model_units(
    bounded: tuple[xcorrdiff.CorrDiffModel, xr.Dataset], tmp_path: Path
) -> None:
    model, lr = bounded
    assert model.output_bounds == {"precip": (0.0, np.inf), "t2m": (-np.inf, 281.15)}
    loaded = xcorrdiff.load_model(model.save(tmp_path / "m"))
    assert loaded.output_bounds == model.output_bounds
    assert loaded.output_normalizer.stats["precip"].transform == "asinh"
    ens = lr.isel(time=slice(0, 2)).corrdiff.downscale(
        model=loaded, n_ensemble=3, num_steps=4, return_mean=True
    )
    for name in ("precip", "precip_mean"):
        assert float(ens[name].min()) >= 0.0
    for name in ("t2m", "t2m_mean"):
        assert float(ens[name].max()) <= 281.15 + 1e-3
    assert float(ens.t2m.max()) == pytest.approx(281.15, abs=1e-3)  # the bound is reached


def test_bad_bounds(bounded: tuple[xcorrdiff.CorrDiffModel, xr.Dataset]) -> None:
    model, _ = bounded
    lr, hr = make_synthetic(n_times=4, hr_shape=(16, 16), factor=4, seed=7)
    with pytest.raises(ValueError, match=r"output_bounds names \['snow'\].*output variables"):
        lr.corrdiff.fit(hr, config=TrainConfig(output_bounds={"snow": (0, None)}), progress=False)
    with pytest.raises(ValueError, match=r"cannot convert units for variable 't2m' from 'meter'"):
        lr.corrdiff.fit(
            hr, config=TrainConfig(output_bounds={"t2m": ("3 m", None)}), progress=False
        )
    with pytest.raises(ValueError, match=r"low < high.*crossed \{'t2m': \(300.0, 200.0\)\}"):
        xcorrdiff.CorrDiffModel(**{**_parts(model), "output_bounds": {"t2m": (300.0, 200.0)}})
    with pytest.raises(ValueError, match=r"output_bounds\['t2m'\]=\(1, 2, 3\) is invalid"):
        TrainConfig(output_bounds={"t2m": (1, 2, 3)})


def _parts(model: xcorrdiff.CorrDiffModel) -> dict[str, object]:
    return {
        "regression": model.regression, "diffusion": model.diffusion,
        "input_variables": model.input_variables, "output_variables": model.output_variables,
        "grid": model.grid, "input_normalizer": model.input_normalizer,
        "output_normalizer": model.output_normalizer, "invariants": model.invariants,
    }  # fmt: skip

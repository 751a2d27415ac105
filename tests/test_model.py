"""CorrDiffModel: exact save/load round trip, atomic writes, Earth2Studio package import."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig, SamplerConfig
from xcorrdiff.data.normalize import Normalizer
from xcorrdiff.data.prepare import VariableSpec
from xcorrdiff.model import CorrDiffModel, load_model
from xcorrdiff.train import build_diffusion, build_regression
from xcorrdiff.train.config import TrainConfig

FIXTURES = Path(__file__).parent / "fixtures" / "physicsnemo_nn"


def _grid(ny: int = 16, nx: int = 16) -> xr.Dataset:
    lat, lon = np.meshgrid(np.linspace(40, 41, ny), np.linspace(5, 6.5, nx), indexing="ij")
    return xr.Dataset(
        coords={
            "y": ("y", np.arange(ny) * 2000.0, {"units": "m"}),
            "x": ("x", np.arange(nx) * 2000.0, {"units": "m"}),
            "lat": (("y", "x"), lat, {"units": "degrees_north"}),
            "lon": (("y", "x"), lon, {"units": "degrees_east"}),
        }
    )


def _perturb(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


def _model(**kw: Any) -> CorrDiffModel:
    cfg = TrainConfig(
        regression=NetworkConfig(model_channels=8, channel_mult=(1, 2), embedding_type="zero"),
        diffusion=NetworkConfig(model_channels=8, channel_mult=(1, 2)),
        patch_shape=(8, 8),
    )
    grid = _grid()
    invariants = xr.Dataset(
        {"orography": (("y", "x"), np.linspace(0, 900, 256).reshape(16, 16), {"units": "m"})},
        coords=grid.coords,
    )
    inputs = [VariableSpec(name="t2m", units="K", long_name="2 m temperature")]
    outputs = [
        VariableSpec(name="t2m", units="K", long_name="2 m temperature"),
        VariableSpec(name="u10m", units="m s-1", long_name="10 m eastward wind"),
    ]
    return CorrDiffModel(
        regression=_perturb(
            build_regression(cfg, shape=(16, 16), in_channels=2, out_channels=2), 1
        ),
        diffusion=_perturb(build_diffusion(cfg, shape=(16, 16), in_channels=2, out_channels=2), 2),
        input_variables=inputs,
        output_variables=outputs,
        grid=grid,
        input_grid=xr.Dataset(coords={"lat": [39.0, 40.5, 42.0], "lon": [4.0, 5.5, 7.0]}),
        invariants=invariants,
        input_normalizer=Normalizer.from_stats(
            {"t2m": {"mean": 280.0, "std": 5.0}, "orography": {"mean": 450.0, "std": 260.0}}
        ),
        output_normalizer=Normalizer.from_stats(
            {"t2m": {"mean": 281.0, "std": 6.0}, "u10m": {"mean": 1.0, "std": 3.0}}
        ),
        sampler=SamplerConfig(num_steps=9),
        provenance={"note": "unit test"},
        **kw,
    )


def _outputs(model: CorrDiffModel) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(2, 2, 16, 16, generator=g)
    x = torch.randn(2, 2, 16, 16, generator=g)
    assert model.diffusion is not None
    with torch.no_grad():
        mean = model.regression(torch.zeros_like(x), cond)
        diffusion_cond = torch.cat([mean, cond, cond], dim=1)
        denoised = model.diffusion(x, diffusion_cond, torch.tensor([0.5, 3.0]))
    return mean, denoised


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    model = _model()
    path = model.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "diffusion.safetensors",
        "grid_hr.nc",
        "grid_input.nc",
        "invariants.nc",
        "regression.safetensors",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary directory left
    loaded = load_model(path)
    for a, b in ((model.regression, loaded.regression), (model.diffusion, loaded.diffusion)):
        assert a is not None and b is not None and type(a) is type(b)
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for a, b in zip(_outputs(model), _outputs(loaded), strict=True):
        assert torch.equal(a, b)
    assert loaded.input_variables == model.input_variables
    assert loaded.output_variables == model.output_variables
    assert loaded.condition_variables == ("t2m", "orography")
    assert loaded.input_normalizer == model.input_normalizer
    assert loaded.output_normalizer == model.output_normalizer
    assert loaded.sampler == SamplerConfig(num_steps=9)
    assert loaded.conditioning == model.conditioning
    assert loaded.residual_scale is None
    xr.testing.assert_identical(loaded.grid, model.grid)
    assert loaded.invariants is not None and model.invariants is not None
    np.testing.assert_array_equal(loaded.invariants["orography"], model.invariants["orography"])
    assert loaded.invariants["orography"].attrs["units"] == "m"
    config = json.loads((path / "config.json").read_text())
    assert config["xcorrdiff_version"] == xcorrdiff.__version__
    assert config["networks"]["diffusion"]["class"] == "EDMPrecondSuperResolution"
    assert config["output_variables"][1] == {
        "name": "u10m",
        "units": "m s-1",
        "long_name": "10 m eastward wind",
    }
    assert config["provenance"] == {"note": "unit test"}


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    model = _model()
    model.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match=r"already exists; pass overwrite=True"):
        model.save(tmp_path / "m")
    regression_only = CorrDiffModel(
        regression=model.regression,
        diffusion=None,
        input_variables=model.input_variables,
        output_variables=model.output_variables,
        grid=model.grid,
        invariants=model.invariants,
        input_normalizer=model.input_normalizer,
        output_normalizer=model.output_normalizer,
    )
    regression_only.save(tmp_path / "m", overwrite=True)
    assert not (tmp_path / "m" / "diffusion.safetensors").exists()
    assert load_model(tmp_path / "m").diffusion is None
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_saved_files_follow_the_umask(tmp_path: Path) -> None:
    """Not private (mkdtemp, safetensors): others can read a model saved under umask 022."""
    old = os.umask(0o022)
    try:
        path = _model().save(tmp_path / "m")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in path.iterdir()}
    assert set(modes.values()) == {0o644}, modes


def test_load_rejects_what_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"is not a CorrDiff model directory"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match=r"has format 'something-else'; expected"):
        load_model(tmp_path)


def test_residual_scale_round_trip_and_validation(tmp_path: Path) -> None:
    model = _model(residual_scale={"u10m": 0.3, "t2m": 0.125})
    loaded = load_model(model.save(tmp_path / "model"))
    assert loaded.residual_scale == {"u10m": 0.3, "t2m": 0.125}
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["residual_scale"] == {"u10m": 0.3, "t2m": 0.125}
    with pytest.raises(ValueError, match=r"residual_scale has scales for \['t2m'\]; expected one "
                       r"for each output variable \['t2m', 'u10m'\]"):  # fmt: skip
        _model(residual_scale={"t2m": 1.0})
    with pytest.raises(ValueError, match=r"invalid scales \{'u10m': 0.0\}; expected positive"):
        _model(residual_scale={"t2m": 1.0, "u10m": 0.0})
    with pytest.raises(ValueError, match=r"invalid scales \{'t2m': nan\}"):
        _model(residual_scale={"t2m": float("nan"), "u10m": 1.0})


def test_model_validates_channel_counts() -> None:
    model = _model()
    with pytest.raises(ValueError, match=r"takes 6 input channels but the model has 1 condition"):
        CorrDiffModel(
            regression=model.regression,
            diffusion=None,
            input_variables=model.input_variables,
            output_variables=model.output_variables,
            grid=model.grid,
            input_normalizer=model.input_normalizer,
            output_normalizer=model.output_normalizer,
        )


def _write_package(root: Path) -> None:
    root.mkdir()
    shutil.copy(FIXTURES / "regression_mini_unet.mdlus", root / "regression.mdlus")
    shutil.copy(FIXTURES / "edm_sr_legacy_keys.mdlus", root / "diffusion.mdlus")
    (root / "metadata.json").write_text(
        json.dumps(
            {
                "input_variables": ["t2m", "tcwv"],
                "output_variables": ["t2m", "u10m"],
                "number_of_steps": 8,
                "solver": "euler",
                "hr_mean_conditioning": False,
                "sigma_min": 0.002,
                "sigma_max": 800,
            }
        )
    )
    (root / "stats.json").write_text(
        json.dumps(
            {
                "input": {"t2m": {"mean": 285.0, "std": 8.0}, "tcwv": {"mean": 20.0, "std": 9.0}},
                "output": {"t2m": {"mean": 286.0, "std": 7.5}, "u10m": {"mean": 0.5, "std": 3.0}},
                "invariants": {"elev_mean": {"mean": 300.0, "std": 400.0}},
            }
        )
    )
    lat, lon = np.meshgrid(np.linspace(22, 25, 32), np.linspace(119, 122, 32), indexing="ij")
    xr.Dataset(
        {"lat": (("south_north", "west_east"), lat), "lon": (("south_north", "west_east"), lon)}
    ).to_netcdf(root / "output_latlon_grid.nc")
    xr.Dataset(
        coords={"lat": np.arange(21.0, 26.01, 0.25), "lon": np.arange(118.0, 123.01, 0.25)}
    ).to_netcdf(root / "input_latlon_grid.nc")
    xr.Dataset(
        {"elev_mean": (("south_north", "west_east"), np.linspace(0, 3000, 1024).reshape(32, 32))}
    ).to_netcdf(root / "invariants.nc")


def test_from_earth2studio_package(tmp_path: Path) -> None:
    _write_package(tmp_path / "pkg")
    model = CorrDiffModel.from_earth2studio(tmp_path / "pkg")
    assert model.input_names == ("t2m", "tcwv")
    assert model.invariant_names == ("elev_mean",)
    assert model.output_names == ("t2m", "u10m")
    assert [v.units for v in model.input_variables] == ["K", "kg m-2"]
    assert model.shape == (32, 32)
    assert model.conditioning == {"hr_mean": False, "global_lowres": False}
    # No sampler_type: Earth2Studio's default "stochastic" sampler, Heun without churn,
    # whatever "solver" says (tests/test_earth2studio_reference.py runs the real one).
    sampler = model.sampler
    assert (sampler.sampler, sampler.num_steps, sampler.s_churn) == ("heun", 8, 0.0)
    assert model.input_normalizer.stats["elev_mean"].std == 400.0
    assert model.output_normalizer.stats["u10m"].mean == 0.5
    assert model.input_grid is not None and model.input_grid.sizes["lat"] == 21
    assert model.invariants is not None
    np.testing.assert_allclose(model.invariants["elev_mean"].values[-1, -1], 3000.0)
    assert model.grid["lat"].dims == ("y", "x")

    # The networks are PhysicsNeMo's: same outputs as the reference fixtures.
    ref = np.load(FIXTURES / "regression_mini_unet.npz")
    with torch.no_grad():
        out = model.regression(torch.from_numpy(ref["x"]), torch.from_numpy(ref["img_lr"]))
    np.testing.assert_allclose(out.numpy(), ref["out"], rtol=1e-5, atol=1e-5)
    ref = np.load(FIXTURES / "edm_sr_legacy_keys.npz")
    assert model.diffusion is not None
    with torch.no_grad():
        out = model.diffusion(
            torch.from_numpy(ref["x"]),
            torch.from_numpy(ref["img_lr"]),
            torch.from_numpy(ref["sigma"]),
        )
    np.testing.assert_allclose(out.numpy(), ref["out"], rtol=1e-5, atol=1e-5)

    # And the imported model saves and loads like any other.
    loaded = load_model(model.save(tmp_path / "imported"))
    assert loaded.diffusion is not None
    with torch.no_grad():
        again = loaded.diffusion(
            torch.from_numpy(ref["x"]),
            torch.from_numpy(ref["img_lr"]),
            torch.from_numpy(ref["sigma"]),
        )
    assert torch.equal(again, out)
    assert loaded.conditioning == model.conditioning


def test_from_earth2studio_names_missing_files(tmp_path: Path) -> None:
    _write_package(tmp_path / "pkg")
    (tmp_path / "pkg" / "stats.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks \['stats.json'\]"):
        CorrDiffModel.from_earth2studio(tmp_path / "pkg")


@pytest.mark.parametrize("variant", ["x_pred", ""])
def test_from_earth2studio_recognises_a_dit_package_and_names_its_missing_files(
    tmp_path: Path, variant: str
) -> None:
    """Earth2Studio's CorrDiffEra5Hrrr layout (``<variant>/metadata.json`` with a
    ``network`` entry) is read by its own reader, which names the files it lacks
    (tests/test_era5_hrrr_package.py runs a complete one)."""
    folder = tmp_path / "era5_hrrr" / variant
    folder.mkdir(parents=True)
    metadata = {"checkpoint": "dit.mdlus", "network": {"kind": "rectified_flow",
                "prediction_type": "x0"}, "hrrr_window": {"rows": [0, 8], "cols": [0, 8]}}  # fmt: skip
    (folder / "metadata.json").write_text(json.dumps(metadata))
    (folder / "stats.json").write_text("{}")
    with pytest.raises(
        FileNotFoundError, match=r"CorrDiffEra5Hrrr package .* lacks \['hrrr_lat.npy'"
    ):
        CorrDiffModel.from_earth2studio(tmp_path / "era5_hrrr")

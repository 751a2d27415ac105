"""CorrDiffModel.save(format="earth2studio") and from_earth2studio: a bit-identical round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.config import NetworkConfig, SamplerConfig
from xcorrdiff.io.earth2studio import REQUIRED_FILES
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.tutorial import make_synthetic


@pytest.fixture(scope="module")
def trained() -> tuple[xcorrdiff.CorrDiffModel, xr.Dataset]:
    lr, hr = make_synthetic(n_times=8, hr_shape=(16, 16), factor=4, seed=4)
    config = TrainConfig(
        regression=NetworkConfig(model_channels=8, channel_mult=(1, 2), embedding_type="zero"),
        diffusion=NetworkConfig(model_channels=8, channel_mult=(1, 2)),
        batch_size=2, patch_shape=(8, 8), regression_duration=2, diffusion_duration=2,
        residual_scaling=False,  # Earth2Studio's CorrDiff does not scale the residual
        input_skip=False,  # nor skip the inputs
        global_lowres=False,  # nor give the network the whole-domain input
    )  # fmt: skip
    model = lr.corrdiff.fit(hr, config=config, output_variables=["t2m", "u10m"], progress=False)
    # The sampler Earth2Studio runs on a package with HR-mean conditioning: Heun, no churn.
    model.sampler = SamplerConfig(sampler="heun", num_steps=12, s_churn=0.0)
    return model, lr


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
    )


def test_round_trip_is_bit_identical(
    trained: tuple[xcorrdiff.CorrDiffModel, xr.Dataset], tmp_path: Path
) -> None:
    model, lr = trained
    path = model.save(tmp_path / "pkg", format="earth2studio")
    assert set(REQUIRED_FILES) <= {p.name for p in path.iterdir()}
    assert {"invariants.nc", "input_latlon_grid.nc"} <= {p.name for p in path.iterdir()}
    back = xcorrdiff.CorrDiffModel.from_earth2studio(path, device="cpu")

    assert back.diffusion is not None and model.diffusion is not None
    assert _same_weights(back.regression, model.regression)
    assert _same_weights(back.diffusion, model.diffusion)
    assert back.input_variables == model.input_variables
    assert back.output_variables == model.output_variables
    assert back.input_normalizer.stats == model.input_normalizer.stats
    assert back.output_normalizer.stats == model.output_normalizer.stats
    assert back.sampler == model.sampler and back.conditioning == model.conditioning
    assert back.invariant_names == model.invariant_names
    assert back.invariants is not None and model.invariants is not None
    for name in model.invariant_names:
        np.testing.assert_array_equal(back.invariants[name].values, model.invariants[name].values)
    np.testing.assert_array_equal(back.grid.lat.values, model.grid.lat.values)

    kw = {"n_ensemble": 2, "num_steps": 12, "seed": 3}
    ours = lr.isel(time=slice(0, 2)).corrdiff.downscale(model=model, **kw)
    theirs = lr.isel(time=slice(0, 2)).corrdiff.downscale(model=back, **kw)
    for name in model.output_names:
        np.testing.assert_array_equal(theirs[name].values, ours[name].values)

    # Written again, the package says the same.
    again = back.save(tmp_path / "pkg2", format="earth2studio")
    for document in ("metadata.json", "stats.json"):
        assert json.loads((again / document).read_text()) == json.loads(
            (path / document).read_text()
        )


def test_what_the_package_cannot_hold_is_refused(
    trained: tuple[xcorrdiff.CorrDiffModel, xr.Dataset], tmp_path: Path
) -> None:
    demo = xcorrdiff.load_model("demo", device="cpu")  # log1p precipitation, residual scale
    with pytest.raises(
        ValueError, match=r"transforms \{'precip': 'log1p'\}.*residual scale.*format='xcorrdiff'"
    ):
        demo.save(tmp_path / "demo_pkg", format="earth2studio")
    assert not (tmp_path / "demo_pkg").exists()
    model, _ = trained
    with pytest.raises(ValueError, match=r"format='netcdf' is invalid"):
        model.save(tmp_path / "x", format="netcdf")  # type: ignore[arg-type]


def test_overwrite_replaces_only_a_package_xcorrdiff_wrote(
    trained: tuple[xcorrdiff.CorrDiffModel, xr.Dataset], tmp_path: Path
) -> None:
    model, _ = trained
    path = model.save(tmp_path / "pkg", format="earth2studio")
    model.save(path, format="earth2studio", overwrite=True)
    (tmp_path / "nvidia").mkdir()
    (tmp_path / "nvidia" / "metadata.json").write_text(json.dumps({"input_variables": []}))
    with pytest.raises(FileExistsError, match=r"did not write"):
        model.save(tmp_path / "nvidia", format="earth2studio", overwrite=True)
    assert (tmp_path / "nvidia" / "metadata.json").is_file()


def test_the_package_says_which_sampler_earth2studio_runs(
    trained: tuple[xcorrdiff.CorrDiffModel, xr.Dataset], tmp_path: Path
) -> None:
    """Earth2Studio 0.19 samples a package with HR-mean conditioning with PhysicsNeMo's
    stochastic sampler (Heun, no churn) whatever its ``solver``: the export says so and
    warns when the model samples otherwise; a package without xcorrdiff's own record reads
    as what Earth2Studio runs."""
    model, _ = trained
    path = model.save(tmp_path / "heun", format="earth2studio")  # no warning: the same
    metadata = json.loads((path / "metadata.json").read_text())
    assert (metadata["sampler_type"], metadata["solver"]) == ("stochastic", "heun")
    euler = copy.copy(model)
    euler.sampler = SamplerConfig(sampler="euler", num_steps=8)
    with pytest.warns(
        UserWarning, match=r"heun steps without churn .* not with the model's 'euler'"
    ):
        path = euler.save(tmp_path / "euler", format="earth2studio")
    metadata = json.loads((path / "metadata.json").read_text())
    assert (metadata["sampler_type"], metadata["solver"]) == ("stochastic", "heun")
    del metadata["xcorrdiff"]  # a package NVIDIA or Earth2Studio wrote
    (path / "metadata.json").write_text(json.dumps({**metadata, "solver": "euler"}))
    read = xcorrdiff.CorrDiffModel.from_earth2studio(path, device="cpu").sampler
    assert (read.sampler, read.num_steps, read.s_churn) == ("heun", 8, 0.0)
    (path / "metadata.json").write_text(json.dumps({**metadata, "sampler_type": "deterministic",
                                                    "solver": "euler"}))  # fmt: skip
    read = xcorrdiff.CorrDiffModel.from_earth2studio(path, device="cpu").sampler
    assert (read.sampler, read.s_churn) == ("euler", 0.0)
    (path / "metadata.json").write_text(json.dumps({**metadata, "sampler_type": "ode"}))
    with pytest.raises(ValueError, match=r"sampler_type='ode' is invalid"):
        xcorrdiff.CorrDiffModel.from_earth2studio(path, device="cpu")
    (path / "metadata.json").write_text(json.dumps({**metadata, "sampler_type": "deterministic",
                                                    "solver": "dpm"}))  # fmt: skip
    with pytest.raises(ValueError, match=r"solver='dpm' is invalid"):
        xcorrdiff.CorrDiffModel.from_earth2studio(path, device="cpu")

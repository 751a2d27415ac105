"""The catalogue of bad input (docs/errors.md), executed: each class of mistake raises its
error, naming what is wrong and the fix, and writes nothing to disk.

Every case runs in a fresh working directory holding copies of the shared files (input
data, a saved model, an existing store, a foreign folder); the whole tree, file sizes and
modification times included, must be unchanged afterwards. docs/errors.md lists every case
of this table and of the command-line table of ``test_cli_contract.py`` (checked below).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from conftest import record_message, tiny_data, tiny_model
from test_cli_contract import BAD_INPUTS, MISUSES

import xcorrdiff
import xcorrdiff.verify as xv
from xcorrdiff.config import NetworkConfig, SamplerConfig, StudentConfig
from xcorrdiff.inference.api import downscale, downscale_to_zarr
from xcorrdiff.model import CorrDiffModel, load_model
from xcorrdiff.nn import CheckpointError, load_physicsnemo
from xcorrdiff.train import CheckpointMismatchError, NonFiniteError, fit_diffusion, fit_regression
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.distillation import distill
from xcorrdiff.tutorial import make_synthetic

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
KW: dict[str, Any] = {"n_ensemble": 2, "num_steps": 2, "device": "cpu"}


@dataclass
class Ctx:
    """What a case may use: shared data, and its own working directory ``work``."""

    work: Path
    lr: xr.Dataset
    train_lr: xr.Dataset
    train_hr: xr.Dataset

    @property
    def model_dir(self) -> Path:
        return self.work / "model"

    def config(self, **kw: Any) -> TrainConfig:
        net = {"model_channels": 4, "channel_mult": (1, 2), "num_blocks": 1}
        base = {"regression": NetworkConfig(**net, embedding_type="zero"),  # type: ignore[arg-type]
                "diffusion": NetworkConfig(**net), "patch_shape": (8, 8), "batch_size": 2,  # type: ignore[arg-type]
                "regression_duration": 4, "diffusion_duration": 4, "validation_fraction": 0.0,
                "checkpoint_dir": str(self.work / "ckpt-new")}  # fmt: skip
        return TrainConfig(**{**base, **kw})

    def edit_model(self, edit: Callable[[dict[str, Any]], Any]) -> Path:
        config = json.loads((self.model_dir / "config.json").read_text())
        edit(config)
        (self.model_dir / "config.json").write_text(json.dumps(config))
        return self.model_dir


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalogue")
    lr, _ = tiny_data(3)
    model = tiny_model().save(root / "model")
    lr.to_netcdf(root / "lr.nc")
    downscale_to_zarr(lr, root / "ours.zarr", model, **KW)
    (root / "foreign").mkdir()
    (root / "foreign" / "thesis.tex").write_text("years of work")
    train_lr, train_hr = make_synthetic(n_times=8, hr_shape=(16, 16), factor=4, seed=1)
    fit_regression(train_lr, train_hr, config=Ctx(root, lr, train_lr, train_hr).config(
        checkpoint_dir=str(root / "ckpt")), output_variables=["t2m"], progress=False)  # fmt: skip
    return root


def _with(ds: xr.Dataset, name: str, index: tuple[int, ...], value: float) -> xr.Dataset:
    out = ds.copy(deep=True)
    out[name][index] = value
    return out


def _flip(path: Path, offset: int = -50) -> Path:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))
    return path


def _ens() -> tuple[xr.DataArray, xr.DataArray]:
    rng = np.random.default_rng(0)
    ens = xr.DataArray(rng.normal(size=(4, 3, 5)) + 280, dims=("member", "time", "x"), name="t2m",
                       attrs={"units": "K"})  # fmt: skip
    obs = xr.DataArray(
        rng.normal(size=(3, 5)) + 280, dims=("time", "x"), name="t2m", attrs={"units": "K"}
    )
    return ens, obs


def _shifted_truth() -> tuple[xr.Dataset, xr.Dataset]:
    """A tiny ensemble on 2-D lat/lon and a truth whose latitudes are half a cell off."""
    lat = np.add.outer(np.arange(3.0), np.zeros(4)) + 45.0
    lon = np.add.outer(np.zeros(3), np.arange(4.0)) + 7.0
    coords = {"lat": (("y", "x"), lat), "lon": (("y", "x"), lon)}
    ens = xr.Dataset({"t2m": (("member", "y", "x"), np.zeros((2, 3, 4)), {"units": "K"})}, coords)
    truth = ens.isel(member=0, drop=True).assign_coords(lat=(("y", "x"), lat + 0.5))
    return ens, truth


def _w(values: list[float]) -> xr.DataArray:
    return xr.DataArray(np.asarray(values, dtype=float), dims="member")


def _obs(c: Ctx, **changes: Any) -> xr.Dataset:
    """Two stations on the tiny model's grid observing t2m at the input's times."""
    times = c.lr["time"].values
    obs = xr.Dataset(
        {"t2m": (("time", "station"), np.full((times.size, 2), 280.0), {"units": "K"})},
        coords={"time": times, "station": ["a", "b"], "lat": ("station", [45.0, 45.2]),
                "lon": ("station", [7.0, 7.3])},
    )  # fmt: skip
    return obs.assign(**changes)


def _mdlus(c: Ctx, args: dict[str, Any]) -> Path:
    import io
    import zipfile

    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buffer)
    path = c.work / "net.mdlus"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("args.json", json.dumps(args))
        z.writestr("model.pt", buffer.getvalue())
    return path


def _dit_package(c: Ctx) -> Path:
    """The layout of Earth2Studio's CorrDiffEra5Hrrr package (``x_pred/metadata.json``)."""
    folder = c.work / "era5_hrrr"
    (folder / "x_pred").mkdir(parents=True, exist_ok=True)
    metadata = {"checkpoint": "dit.mdlus", "network": {"kind": "rectified_flow"}}
    (folder / "x_pred" / "metadata.json").write_text(json.dumps(metadata))
    return folder


E = ValueError
# (id, class of mistake, action, exception, message regex)
CASES: list[tuple[str, str, Callable[[Ctx], Any], type[BaseException], str]] = [
    # --- downscale arguments
    ("members-zero", "ensemble size below 1", lambda c: downscale(c.lr, c.model_dir, **{**KW, "n_ensemble": 0}), E, r"n_ensemble=0 is invalid; expected an integer >= 1"),
    ("seed-negative", "negative seed", lambda c: downscale(c.lr, c.model_dir, seed=-1, **KW), E, r"seed=-1 is invalid"),
    ("sampler-unknown", "unknown sampler", lambda c: downscale(c.lr, c.model_dir, sampler="ddim", **KW), E, r"sampler='ddim' is invalid; expected None \(the model's\) or one of \['euler', 'heun', 'dpmpp_2m', 'ancestral'\]"),
    ("sampler-student-missing", "student=True for a model without a student", lambda c: downscale(c.lr, c.model_dir, student=True, n_ensemble=2, device="cpu"), E, r"student=True but this model has no distilled student; distil one with xcorrdiff.train.distill"),
    ("sampler-student-with-steps", "sampler settings beside the student", lambda c: downscale(c.lr, _with_student(), student=True, **KW), E, r"\['num_steps'\] may not be passed with student=True"),
    ("distill-steps-indivisible", "a student step count that does not divide the teacher's", lambda c: distill(tiny_model(), c.train_lr, c.train_hr, 3, config=c.config(), progress=False), E, r"steps=3 is invalid for a teacher of 4 steps; expected a divisor of 4 below it"),
    ("distill-stochastic-teacher", "distilling a stochastic sampler", lambda c: distill(_with_sampler("ancestral"), c.train_lr, c.train_hr, 2, config=c.config(), progress=False), E, r"model.sampler.sampler='ancestral' is stochastic"),
    ("sampler-noise-mismatch", "churn for a sampler without it", lambda c: downscale(c.lr, c.model_dir, sampler="dpmpp_2m", s_churn=0.5, **KW), E, r"s_churn=0.5 does not apply to sampler='dpmpp_2m'; it is an argument of \['euler', 'heun'\]"),
    ("steps-too-few", "too few steps for the sampler", lambda c: downscale(c.lr, c.model_dir, **{**KW, "sampler": "heun", "num_steps": 4}), E, r"num_steps=4 is too few for sampler='heun': it needs at least 12"),
    ("steps-zero", "no sampler steps", lambda c: downscale(c.lr, c.model_dir, **{**KW, "num_steps": 0}), E, r"num_steps=0 is invalid"),
    ("churn-negative", "negative churn", lambda c: downscale(c.lr, c.model_dir, s_churn=-1.0, **KW), E, r"s_churn=-1.0 is invalid; expected a finite number >= 0"),
    ("patch-larger-than-grid", "patch larger than the HR grid", lambda c: downscale(c.lr, c.model_dir, patch_shape=(64, 16), **KW), E, r"larger than the model's HR grid \(32, 48\)"),
    ("patch-indivisible", "patch sides not divisible by the network's factor", lambda c: downscale(c.lr, c.model_dir, patch_shape=(15, 16), **KW), E, r"expected sides divisible by 2"),
    ("overlap-too-large", "overlap as large as the patch", lambda c: downscale(c.lr, c.model_dir, patch_shape=(16, 16), overlap=16, **KW), E, r"overlap=16 must be smaller than the patch sides"),
    ("overlap-without-patch", "overlap without patches", lambda c: downscale(c.lr, c.model_dir, overlap=4, **KW), E, r"overlap=4 needs patch_shape"),
    ("member-batch-zero", "member batch below 1", lambda c: downscale(c.lr, c.model_dir, member_batch_size=0, **KW), E, r"member_batch_size=0 is invalid"),
    ("device-invalid", "unknown device", lambda c: downscale(c.lr, c.model_dir, **{**KW, "device": "tpu"}), E, r"device='tpu' is invalid"),
    ("half-precision-on-cpu", "float16 inference on the CPU", lambda c: downscale(c.lr, c.model_dir, precision="float16", **KW), E, r"needs a CUDA device"),
    ("plausibility-flag", "check_plausibility not a bool", lambda c: downscale(c.lr, c.model_dir, check_plausibility="no", **KW), E, r"check_plausibility='no' is invalid; expected True or False"),
    # --- downscale input
    ("input-not-a-dataset", "a DataArray or array instead of a Dataset", lambda c: downscale(c.lr["t2m"], c.model_dir, **KW), TypeError, r"lr must be an xarray.Dataset, got DataArray"),
    ("input-lacks-variables", "input variables missing", lambda c: downscale(c.lr.drop_vars("tcwv"), c.model_dir, **KW), KeyError, r"lacks the model's input variables \['tcwv'\]"),
    ("input-nan-numpy", "NaN in numpy input", lambda c: downscale(_with(c.lr, "u10m", (0, 1, 1), np.nan), c.model_dir, **KW), E, r"lr variable 'u10m' has 1 NaN/inf values"),
    ("input-nan-dask", "NaN in dask input, written to zarr", lambda c: downscale_to_zarr(_with(c.lr, "t2m", (2, 1, 1), np.nan).chunk(time=1), c.work / "o.zarr", c.model_dir, **KW), E, r"NaN/inf values in \{'t2m': 1\}"),
    ("input-fifty-sigma", "a value far outside the training range", lambda c: downscale(_with(c.lr, "tcwv", (0, 1, 1), 1e30), c.model_dir, **KW), E, r"'tcwv' has values from .* standard deviations from the training mean"),
    ("input-physical-bounds", "Kelvin numbers labelled degC", lambda c: downscale(c.lr.assign(t2m=c.lr.t2m.assign_attrs(units="degC")), c.model_dir, **KW), E, r"outside the physical range of an absolute temperature .* Kelvin numbers labelled 'degC'"),
    ("input-units-wrong-quantity", "units of another quantity", lambda c: downscale(c.lr.assign(t2m=c.lr.t2m.assign_attrs(units="m s-1")), c.model_dir, **KW), E, r"cannot convert units for variable 't2m' from 'm s-1'"),
    ("input-units-missing", "no units attribute", lambda c: downscale(c.lr.assign(t2m=c.lr.t2m.drop_attrs()), c.model_dir, **KW), E, r"variable 't2m' has no 'units' attribute"),
    ("input-grid-too-small", "input grid not covering the domain", lambda c: downscale(c.lr.isel(lat=slice(0, 4)), c.model_dir, **KW), E, r"outside the source domain"),
    ("input-repeated-times", "repeated time stamps", lambda c: downscale(c.lr.isel(time=[0, 1, 1]), c.model_dir, **KW), E, r"repeats stamps .* identical noise"),
    # --- models
    ("no-model", "no model given or set", lambda c: downscale(c.lr, **KW), E, r"no model: pass model="),
    ("regression-only-model", "a model without its diffusion stage", lambda c: downscale(c.lr, xcorrdiff.CorrDiffModel(**{**vars(tiny_model()), "diffusion": None}) if False else _regression_only(), **KW), E, r"model has no diffusion network"),
    ("model-path-not-a-model", "a folder that is not a model", lambda c: downscale(c.lr, c.work / "foreign", **KW), FileNotFoundError, r"is not a saved CorrDiff model directory"),
    ("model-config-garbled", "config.json not JSON", lambda c: ((c.model_dir / "config.json").write_text("{"), load_model(c.model_dir)), E, r"config.json is not valid JSON"),
    ("model-format-unknown", "a JSON file of another format", lambda c: load_model(c.edit_model(lambda d: d.update(format="other"))), E, r"has format 'other'; expected 'xcorrdiff-model'"),
    ("model-weights-bit-flip", "a flipped bit in the weights", lambda c: (_flip(c.model_dir / "diffusion.safetensors"), load_model(c.model_dir)), E, r"diffusion.safetensors is damaged: its SHA-256 differs"),
    ("model-weights-truncated", "a truncated weight file", lambda c: ((c.model_dir / "regression.safetensors").write_bytes(b"12345678"), load_model(c.model_dir)), E, r"regression.safetensors is damaged: its size differs"),
    ("model-file-missing", "a file of the model missing", lambda c: ((c.model_dir / "grid_hr.nc").unlink(), load_model(c.model_dir)), FileNotFoundError, r"grid_hr.nc is missing"),
    ("model-path-outside", "a config naming a file outside the model", lambda c: load_model(c.edit_model(lambda d: d["grid"].update(file="../lr.nc"))), E, r"'\.\./lr\.nc' is not a plain file name inside the directory"),
    ("model-network-too-large", "a network size beyond the machine", lambda c: load_model(c.edit_model(lambda d: d["networks"]["diffusion"]["kwargs"].update(model_channels=4096, channel_mult=[64, 64, 64]))), E, r"would take .* more than the .* allowed"),
    ("model-network-out-of-bounds", "a network argument out of bounds", lambda c: load_model(c.edit_model(lambda d: d["networks"]["regression"]["kwargs"].update(num_blocks=10**6))), E, r"num_blocks=1000000 is invalid; expected an integer in \[1, 64\]"),
    ("model-network-not-its-weights", "a network that does not match its weights", lambda c: load_model(c.edit_model(lambda d: d["networks"]["regression"]["kwargs"].update(model_channels=8))), E, r"does not match the tensors of regression.safetensors"),
    ("model-save-over-foreign", "saving a model over a foreign folder", lambda c: tiny_model().save(c.work / "foreign", overwrite=True), FileExistsError, r"holds \['thesis.tex'\], which xcorrdiff did not write"),
    ("model-save-exists", "saving over an existing model unasked", lambda c: tiny_model().save(c.model_dir), FileExistsError, r"already exists; pass overwrite=True"),
    ("mdlus-unsupported-class", "a PhysicsNeMo checkpoint of another network", lambda c: load_physicsnemo(_mdlus(c, {"__name__": "FNO", "__module__": "x", "__args__": {}})), CheckpointError, r"'FNO'.*supported classes"),
    ("mdlus-crafted-size", "a PhysicsNeMo checkpoint with a crafted size", lambda c: load_physicsnemo(_mdlus(c, {"__name__": "SongUNet", "__module__": "x", "__args__": {"img_resolution": 16, "in_channels": 2, "out_channels": 1, "model_channels": 10**7}})), CheckpointError, r"model_channels=10000000 is invalid"),
    ("mdlus-not-an-archive", "a file that is not a checkpoint", lambda c: load_physicsnemo(c.work / "lr.nc"), CheckpointError, r"neither a zip nor a tar"),
    # --- zarr output
    ("store-empty-path", "an empty store path", lambda c: downscale_to_zarr(c.lr, "", c.model_dir, **KW), E, r"store='' is empty"),
    ("store-working-directory", "the working directory as the store", lambda c: downscale_to_zarr(c.lr, ".", c.model_dir, overwrite=True, **KW), E, r"is the working directory or one of its parents"),
    ("store-holds-the-input", "a store path holding the input", lambda c: downscale_to_zarr(xr.open_dataset(c.work / "lr.nc"), c.work, c.model_dir, overwrite=True, **KW), E, r"is the working directory|is the input"),
    ("store-parent-missing", "a store in a folder that does not exist", lambda c: downscale_to_zarr(c.lr, c.work / "no" / "o.zarr", c.model_dir, **KW), E, r"does not exist; create it first"),
    ("store-verify-no-outputs", "verify_against without the output variables", lambda c: downscale_to_zarr(c.lr, c.work / "o.zarr", c.model_dir, verify_against=tiny_data(3)[1][["v10m", "precip"]], **KW), E, r"verify_against holds none of the output variables \['t2m', 'u10m'\]"),
    ("store-verify-short-truth", "verify_against missing output times", lambda c: downscale_to_zarr(c.lr, c.work / "o.zarr", c.model_dir, verify_against=tiny_data(2)[1], **KW), E, r"the truth of 't2m' covers only part of the output \(dim: \(output, shared\) sizes \{'time': \(3, 2\)\}\)"),
    ("store-exists", "an existing store without resume or overwrite", lambda c: downscale_to_zarr(c.lr, c.work / "ours.zarr", c.model_dir, resume=False, **KW), FileExistsError, r"already exists; pass resume=True"),
    ("store-overwrite-foreign", "overwriting a folder xcorrdiff did not write", lambda c: downscale_to_zarr(c.lr, c.work / "foreign", c.model_dir, overwrite=True, **KW), FileExistsError, r"a folder xcorrdiff did not write"),
    ("store-overwrite-foreign-files", "overwriting our store holding foreign files", lambda c: ((c.work / "ours.zarr" / "notes.txt").write_text("x"), downscale_to_zarr(c.lr, c.work / "ours.zarr", c.model_dir, overwrite=True, **KW)), FileExistsError, r"also holds \['notes.txt'\]"),
    ("store-resume-foreign", "resuming a folder that is not a store", lambda c: downscale_to_zarr(c.lr, c.work / "foreign", c.model_dir, **KW), E, r"holds no xcorrdiff request record"),
    ("store-resume-other-request", "resuming with other arguments", lambda c: downscale_to_zarr(c.lr, c.work / "ours.zarr", c.model_dir, **{**KW, "seed": 4}), E, r"seed: store has 0, this call 4"),
    ("store-resume-changed-input", "resuming with other input values", lambda c: downscale_to_zarr(_with(c.lr, "t2m", (1, 1, 1), 281.0), c.work / "ours.zarr", c.model_dir, **KW), E, r"input differs from the one .* was written from"),
    ("store-time-chunk-zero", "a time chunk below 1", lambda c: downscale_to_zarr(c.lr, c.work / "o.zarr", c.model_dir, time_chunk=0, **KW), E, r"time_chunk=0 is invalid"),
    ("store-no-time-dimension", "zarr output of a single time without a time dimension", lambda c: downscale_to_zarr(c.lr.isel(time=0), c.work / "o.zarr", c.model_dir, **KW), E, r"needs an xarray.Dataset with a 'time' dimension"),
    ("store-flag-not-bool", "resume/overwrite not a bool", lambda c: downscale_to_zarr(c.lr, c.work / "o.zarr", c.model_dir, overwrite="yes", **KW), E, r"overwrite='yes' is invalid; expected True or False"),
    # --- resources
    ("memory-ensemble", "an ensemble larger than memory", lambda c: downscale(c.lr, c.model_dir, **{**KW, "n_ensemble": 10**9}), MemoryError, r"the whole ensemble .* needs about .* pass dask-backed input"),
    ("memory-member-batch", "a member batch larger than memory", lambda c: downscale(c.lr, c.model_dir, member_batch_size=10**12, **KW), MemoryError, r"member_batch_size=1000000000000 needs about .* use member_batch_size <="),
    # --- training
    ("train-preset-unknown", "an unknown preset", lambda c: TrainConfig(preset="huge"), E, r"preset='huge' is not a known preset"),  # type: ignore[arg-type]
    ("train-batch-zero", "a configuration value out of range", lambda c: TrainConfig(batch_size=0), E, r"batch_size=0 is invalid; expected an integer >= 1"),
    ("train-no-common-time", "lr and hr without a common time", lambda c: fit_regression(c.train_lr.assign_coords(time=c.train_lr.time + pd.Timedelta(days=9999)), c.train_hr, config=c.config(), progress=False), E, r"lr and hr have no common time"),
    ("train-inf-target", "infinite values in the targets", lambda c: fit_regression(c.train_lr, _with(c.train_hr, "u10m", (1, 2, 2), np.inf), config=c.config(), output_variables=["u10m"], progress=False), E, r"hr variable 'u10m' has 1 infinite values"),
    ("train-all-nan-target", "an output with no data at all", lambda c: fit_regression(c.train_lr, c.train_hr.assign(u10m=c.train_hr.u10m * np.nan), config=c.config(), output_variables=["u10m"], progress=False), E, r"hr variables \['u10m'\] have no data \(all NaN\) at every training time"),
    ("train-mixed-calendars", "LR and HR in different calendars", lambda c: fit_regression(c.train_lr.convert_calendar("noleap"), c.train_hr, config=c.config(), output_variables=["u10m"], progress=False), E, r"mixed calendars: lr uses 'noleap', hr uses 'proleptic_gregorian'.*convert_calendar"),
    ("train-transform-domain", "a transform the data leave the domain of", lambda c: fit_regression(c.train_lr, c.train_hr, config=c.config(output_transforms={"u10m": "fourth_root"}), output_variables=["u10m"], progress=False), E, r"the 'fourth_root' transform needs values >= 0"),
    ("train-bounds-units", "bounds in units of another quantity", lambda c: fit_regression(c.train_lr, c.train_hr, config=c.config(output_bounds={"u10m": ("3 K", None)}), output_variables=["u10m"], progress=False), E, r"cannot convert units for variable 'u10m' from 'kelvin'"),
    ("guidance-scale", "a guidance scale that is not positive", lambda c: downscale(c.lr, c.model_dir, observations=xr.Dataset(), guidance_scale=-1.0, **KW), E, r"guidance_scale=-1.0 is invalid; expected a positive number"),
    ("observations-unknown-variable", "observations of a variable the model does not output", lambda c: downscale(c.lr, c.model_dir, observations=xr.Dataset({"tp": ("station", [1.0])}, coords={"lat": ("station", [0.0]), "lon": ("station", [0.0])}), **KW), E, r"observations hold variables \['tp'\] that are not outputs of the model; the model outputs \['t2m', 'u10m'\]"),
    ("observations-celsius-labelled-kelvin", "observation values in degC labelled K", lambda c: downscale(c.lr, c.model_dir, observations=_obs(c, t2m=_obs(c).t2m - 273.15), **KW), E, r"observations variable 't2m' has values from 6.85 to 6.85 K, outside the physical range .*Celsius numbers labelled 'K'"),
    ("observations-other-times", "observations on none of the input's times", lambda c: downscale(c.lr, c.model_dir, observations=_obs(c).assign_coords(time=_obs(c).time + np.timedelta64(3, "D")), **KW), E, r"observations have 3 times from 2000-01-04.* none of them a time of the input \(3 times from 2000-01-01"),
    ("observations-duplicate-conflict", "two stations at one point with different values", lambda c: downscale(c.lr, c.model_dir, observations=_obs(c).assign_coords(lat=("station", [45.0, 45.0]), lon=("station", [7.0, 7.0])).assign(t2m=(("time", "station"), [[280.0, 283.0]] * 3, {"units": "K"})), **KW), E, r"stations 'a' and 'b' lie at the same point \(45.00000, 7.00000\) with different 't2m': 280.0 versus 283.0"),
    ("observations-error-not-a-difference", "an observation error in units of another quantity", lambda c: downscale(c.lr, c.model_dir, observations=_obs(c, t2m_error=("station", [0.3, 0.3], {"units": "m"})), **KW), E, r"cannot convert units for variable 't2m_error' from 'm'"),
    ("verify-truth-on-another-grid", "a truth on a grid shifted from the ensemble's", lambda c: xcorrdiff.verify.crps(*_shifted_truth()), E, r"obs variable 't2m' is not on the forecast's grid: its 'lat' differs"),
    ("lead-time-plain-model", "forecasts with lead times for a model without them", lambda c: downscale(c.lr.expand_dims(lead_time=[np.timedelta64(6, "h")]), c.model_dir, **KW), E, r"lr has a 'lead_time' dimension but the model is not lead-time-aware"),
    ("train-lead-time-truth", "forecast inputs with a truth without lead times", lambda c: fit_regression(c.train_lr.expand_dims(lead_time=[np.timedelta64(0, "h")]), c.train_hr, config=c.config(), output_variables=["t2m"], progress=False), E, r"lr has lead times \['0 days 00:00:00'\] but hr has \[\]"),
    ("region-outside-grid", "a region box outside the model's grid", lambda c: downscale(c.lr, c.model_dir, region={"lat": (-80.0, -79.0), "lon": (0.0, 1.0)}, **KW), E, r"holds no point of the model's grid"),
    ("package-era5-hrrr-incomplete", "an Earth2Studio CorrDiffEra5Hrrr (DiT, rectified-flow) package missing files", lambda c: CorrDiffModel.from_earth2studio(_dit_package(c)), FileNotFoundError, r"CorrDiffEra5Hrrr package '.*x_pred' lacks \['stats.json', 'hrrr_lat.npy'"),
    ("export-not-representable", "an Earth2Studio export of what the package cannot hold", lambda c: load_model("demo").save(c.work / "pkg", format="earth2studio"), E, r"cannot be written as an Earth2Studio package.*format='xcorrdiff'"),
    ("train-units-missing", "training data without units", lambda c: fit_regression(c.train_lr, c.train_hr.assign(t2m=c.train_hr.t2m.drop_attrs()), config=c.config(), output_variables=["t2m"], progress=False), E, r"hr variable 't2m' has no 'units' attribute"),
    ("train-grid-indivisible", "an HR grid the network cannot halve", lambda c: fit_regression(c.train_lr, c.train_hr.isel(y=slice(0, 15)), config=c.config(), output_variables=["t2m"], progress=False), E, r"is not divisible by 2"),
    ("train-transform-unknown-variable", "a transform for a variable that is not an output", lambda c: fit_regression(c.train_lr, c.train_hr, config=c.config(output_transforms={"tp": "log1p"}), output_variables=["t2m"], progress=False), E, r"output_transforms names \['tp'\], which are not output variables"),
    ("train-checkpoint-of-another-model", "a checkpoint directory of another model", lambda c: fit_regression(c.train_lr, c.train_hr, config=c.config(checkpoint_dir=str(c.work / "ckpt")), output_variables=["u10m"], progress=False), CheckpointMismatchError, r"holds a regression checkpoint of another model .*outputs"),
    ("train-checkpoint-damaged", "a damaged training checkpoint", lambda c: (_flip(c.work / "ckpt" / "regression-checkpoint.safetensors"), fit_regression(c.train_lr, c.train_hr, config=c.config(checkpoint_dir=str(c.work / "ckpt")), output_variables=["t2m"], progress=False)), E, r"is damaged .*delete it to start the stage afresh"),
    ("train-nonfinite-loss", "a loss that becomes NaN", lambda c: fit_regression(c.train_lr, c.train_hr, config=c.config(learning_rate=1e30, lr_rampup=0, regression_duration=8, checkpoint_dir=None), output_variables=["t2m"], progress=False), NonFiniteError, r"regression stage: non-finite"),
    ("train-diffusion-without-model", "fit_diffusion without a regression model", lambda c: fit_diffusion("model", c.train_lr, c.train_hr), TypeError, r"model must be a CorrDiffModel"),  # type: ignore[arg-type]
    ("train-time-features-unknown", "a time feature that does not exist", lambda c: TrainConfig(time_features=("solar_angle",)), E, r"time_features=\('solar_angle',\) is invalid; expected distinct names among \['cos_zenith'"),
    # --- verification
    ("verify-units-incompatible", "truth in units of another quantity", lambda c: xv.crps(_ens()[0], _ens()[1].assign_attrs(units="m s-1")), E, r"obs variable 't2m' is in 'm s-1', which does not convert"),
    ("verify-units-one-sided", "units on one side only", lambda c: xv.crps(_ens()[0], _ens()[1].drop_attrs()), E, r"obs variable 't2m' has no 'units' attribute but forecast has 'K'"),
    ("verify-weights-negative", "negative member weights", lambda c: xv.crps(*_ens(), member_weights=_w([1, -1, 1, 1])), E, r"member_weights has negative values"),
    ("verify-weights-zero", "member weights all zero", lambda c: xv.crps(*_ens(), member_weights=_w([0, 0, 0, 0])), E, r"member_weights are all zero"),
    ("verify-weights-nan", "NaN member weights", lambda c: xv.crps(*_ens(), member_weights=_w([1, np.nan, 1, 1])), E, r"member_weights has 1 NaN/inf values"),
    ("verify-weights-length", "member weights of the wrong length", lambda c: xv.crps(*_ens(), member_weights=_w([1, 1, 1])), E, r"member_weights has 3 values along 'member' but the forecast has 4 members"),
    ("verify-spatial-weights-dims", "spatial weights on the member dimension", lambda c: xv.crps(*_ens(), weights=_w([1, 1, 1, 1])), E, r"member weights of the CRPS are member_weights="),
    ("verify-no-member-dim", "a forecast without a member dimension", lambda c: xv.crps(_ens()[1], _ens()[1]), E, r"forecast has no member dimension 'member'"),
    ("verify-obs-extra-dims", "observations with dimensions the forecast lacks", lambda c: xv.crps(_ens()[0], _ens()[1].expand_dims(level=2)), E, r"has dims \['level'\] that forecast variable"),
    ("verify-no-common-coords", "forecast and truth at different times", lambda c: xv.crps(_ens()[0].assign_coords(time=[0, 1, 2]), _ens()[1].assign_coords(time=[5, 6, 7])), E, r"no common coordinates along dim 'time'"),
    ("verify-threshold", "a threshold that is not a finite number", lambda c: xv.brier_score(*_ens(), "hot"), E, r"threshold='hot' is invalid; expected a finite number"),
    ("verify-fss-window", "an even FSS window", lambda c: xv.fss(*_ens(), 280.0, 4, spatial_dims=("time", "x")), E, r"window=4 is invalid; expected an odd integer >= 1"),
    ("verify-fss-spatial-dims", "FSS on dims the data lacks", lambda c: xv.fss(*_ens(), 280.0, 3), E, r"spatial_dims=\('y', 'x'\) is invalid for obs dims"),
    ("verify-reliability-bins", "reliability bins that do not span 0 to 1", lambda c: xv.reliability(*_ens(), 280.0, bins=[0.0, 0.5]), E, r"bins=\[0.0, 0.5\] is invalid; expected a number of equal bins"),
    ("verify-stations-outside", "a station outside the grid", lambda c: xv.at_stations(c.train_hr, xr.Dataset(coords={"station": ["Oslo"], "lat": ("station", [59.9]), "lon": ("station", [10.7])})), E, r"1 of 1 stations lie outside the grid: Oslo \(59.9000, 10.7000\)"),
    # --- options
    ("options-unknown", "an unknown option", lambda c: xcorrdiff.set_options(modle="x"), E, r"set_options got unknown option\(s\) \['modle'\]"),
    ("options-model-type", "a model option of the wrong type", lambda c: xcorrdiff.set_options(model=3), TypeError, r"model=3 is invalid; expected a CorrDiffModel"),
]  # fmt: skip


def _with_student() -> xcorrdiff.CorrDiffModel:
    model = copy.copy(tiny_model())
    model.student = copy.deepcopy(model.diffusion)
    model.student_config = StudentConfig(sampler=SamplerConfig(num_steps=2, sigma_min=0.5))
    return model


def _with_sampler(name: str) -> xcorrdiff.CorrDiffModel:
    model = copy.copy(tiny_model())
    model.sampler = SamplerConfig(sampler=name, num_steps=4)  # type: ignore[arg-type]
    return model


def _regression_only() -> xcorrdiff.CorrDiffModel:
    model = tiny_model()
    return xcorrdiff.CorrDiffModel(
        regression=model.regression, diffusion=None, input_variables=model.input_variables,
        output_variables=model.output_variables, grid=model.grid, invariants=model.invariants,
        input_normalizer=model.input_normalizer, output_normalizer=model.output_normalizer,
    )  # fmt: skip


def _tree(root: Path) -> dict[str, Any]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    } | {str(p.relative_to(root)): "dir" for p in root.rglob("*") if p.is_dir()}


@pytest.mark.parametrize(
    ("action", "error", "match"),
    [pytest.param(action, error, match, id=name) for name, _, action, error, match in CASES],
)
def test_catalogue(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
    action: Callable[[Ctx], Any], error: type[BaseException], match: str,
) -> None:  # fmt: skip
    work = Path(shutil.copytree(template, tmp_path / "work", symlinks=True))
    monkeypatch.chdir(work)
    lr, _ = tiny_data(3)
    train_lr, train_hr = make_synthetic(n_times=8, hr_shape=(16, 16), factor=4, seed=1)
    ctx = Ctx(work, lr, train_lr, train_hr)
    with pytest.raises(error) as info:
        action(ctx)
        ctx.__dict__["before"] = None  # not reached
    message = str(info.value.args[0]) if isinstance(info.value, KeyError) else str(info.value)
    assert re.search(match, message), message
    record_message(request, type(info.value).__name__, message)
    before = _tree(template)
    after = _tree(work)
    # What the case itself damaged (to provoke the error) is not a write of the library's.
    damaged = {k for k in before if k not in after or before[k] != after[k]}
    allowed = {"model/config.json", "model/diffusion.safetensors", "model/regression.safetensors",
               "model/grid_hr.nc", "ours.zarr/notes.txt", "ckpt/regression-checkpoint.safetensors"}  # fmt: skip
    assert damaged <= allowed, sorted(damaged - allowed)
    made = {"ours.zarr/notes.txt", "net.mdlus", "era5_hrrr", "era5_hrrr/x_pred",
            "era5_hrrr/x_pred/metadata.json"}  # written by the cases themselves  # fmt: skip
    assert set(after) - set(before) <= made, sorted(set(after) - set(before))


def _documented() -> set[str]:
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", DOC.read_text(), flags=re.M))


def test_the_catalogue_document_lists_every_case_and_nothing_else() -> None:
    ids = (
        {c[0] for c in CASES}
        | {f"cli-{m[0]}" for m in MISUSES}
        | {f"cli-{b[0]}" for b in BAD_INPUTS}
    )
    documented = _documented()
    assert sorted(ids - documented) == [] and sorted(documented - ids) == []
    assert len(documented) >= 60

"""One downscale request (xcorrdiff.inference.request): built once from a call's arguments;
the provenance attributes and a zarr store's resume record follow from it by rule; one name
per option across the function, its mirrors and the command line."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_data, tiny_model

import xcorrdiff
from xcorrdiff.cli import build_parser
from xcorrdiff.config import RUNTIME_ONLY
from xcorrdiff.inference.api import (
    DEFAULTS,
    OPTIONS,
    DownscaleRequest,
    downscale,
    downscale_to_zarr,
)
from xcorrdiff.inference.handles import resolve_model
from xcorrdiff.inference.request import make_request
from xcorrdiff.model import CorrDiffModel

KW: dict[str, Any] = {"n_ensemble": 1, "num_steps": 2, "seed": 4, "device": "cpu"}


@pytest.fixture(scope="module")
def model() -> CorrDiffModel:
    return tiny_model()


def _request(model: CorrDiffModel, **kw: Any) -> DownscaleRequest:
    return make_request(resolve_model(model), model, {**DEFAULTS, **KW, **kw})


def test_the_fingerprint_is_every_field_but_the_runtime_only(model: CorrDiffModel) -> None:
    request = _request(model, region={"y": slice(None, 16)}, patch_shape=(16, 16))
    runtime = {name for name, _, runtime in request.leaves() if runtime}
    assert runtime == {
        "model_id", "sampler_source", "check_plausibility", "device", "precision",
        "member_batch_size", "explicit_batch", "threads",
    }  # fmt: skip
    fingerprint = request.fingerprint()
    assert fingerprint["region"] == [0, 16, 0, 48] and fingerprint["patch_shape"] == [16, 16]
    assert set(fingerprint) == {name for name, _, _ in request.leaves()} - runtime
    plain = _request(model).fingerprint()
    assert _request(model, member_batch_size=1, check_plausibility=False).fingerprint() == plain


def test_a_new_field_joins_the_fingerprint_unless_marked_runtime_only(model) -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Extended(DownscaleRequest):
        new_knob: int = 3
        new_runtime_knob: int = dataclasses.field(default=0, metadata=RUNTIME_ONLY)

    base = _request(model)
    request = Extended(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    assert request.fingerprint()["new_knob"] == 3
    assert "new_runtime_knob" not in request.fingerprint()
    assert request.attrs()["new_runtime_knob"] == 0  # still in the provenance


def test_the_provenance_is_the_request(model: CorrDiffModel, tmp_path: Path) -> None:
    lr, _ = tiny_data(1)
    ens = downscale(lr, model, **KW, region={"y": slice(None, 16)})
    attrs = _request(model, region={"y": slice(None, 16)}).attrs()
    assert {k: ens.attrs[k] for k in attrs} == attrs
    assert ens.attrs["region"] == [0, 16, 0, 48] and ens.attrs["overlap"] == 0
    assert ens.attrs["precision"] == "float32" and ens.attrs["return_mean"] == 0
    assert "patch_shape" not in ens.attrs and "observations_digest" not in ens.attrs  # None
    xr.Dataset(attrs=ens.attrs).to_netcdf(tmp_path / "attrs.nc")  # netCDF-safe values


def test_a_resumed_store_refuses_another_region(model: CorrDiffModel, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    store = tmp_path / "ens.zarr"
    a, b = {"y": slice(None, 16)}, {"y": slice(16, None)}
    downscale_to_zarr(lr, store, model, **KW, region=a)
    before = sorted(p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match=r"region: store has \[0, 16, 0, 48\], this call \[16, 32"):
        downscale_to_zarr(lr, store, model, **KW, region=b)
    assert sorted(p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()) == before
    run = downscale_to_zarr(lr, store, model, **KW, region=b, overwrite=True)
    fresh = downscale(lr, model, **KW, region=b)
    stored = run.open().load()
    np.testing.assert_array_equal(stored["y"].values, fresh["y"].values)
    np.testing.assert_allclose(stored["t2m"].values, fresh["t2m"].values, rtol=1e-6)


def test_runtime_fields_do_not_block_a_resume(model: CorrDiffModel, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model, **KW, member_batch_size=1)
    run = downscale_to_zarr(lr, store, model, **KW, member_batch_size=2, check_plausibility=False)
    assert run.computed == () and run.skipped == (0, 1)


# --- one name per option ------------------------------------------------------------------


def _keywords(fn: Any) -> dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(fn).parameters.items() if n in OPTIONS}


def test_every_entry_point_takes_every_option_with_the_same_default() -> None:
    assert OPTIONS[:3] == ("n_ensemble", "seed", "sampler") and len(OPTIONS) == 19
    for fn in (
        downscale,
        downscale_to_zarr,
        xcorrdiff.downscale,
        xr.Dataset.corrdiff.downscale,
        xr.Dataset.corrdiff.downscale_to_zarr,
        xr.Dataset().corrdiff.downscale,  # bound: the Dataset is lr
    ):
        assert _keywords(fn) == DEFAULTS, fn
    assert list(inspect.signature(xr.Dataset().corrdiff.downscale).parameters)[:2] == [
        "model",
        "n_ensemble",
    ]


def test_the_command_line_has_a_flag_per_option_named_after_it() -> None:
    parser, _ = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {a.dest: a.option_strings for a in sub.choices["downscale"]._actions}
    for name in set(OPTIONS) - {"dtype"}:  # dtype: an alias of --precision
        assert name in flags, name
        dashed = "--" + name.replace("_", "-")
        assert flags[name][0] == (
            "--no-plausibility-check" if name == "check_plausibility" else dashed
        )
    assert "--dtype" in flags["precision"] and "--members" in flags["n_ensemble"]


# --- set_options(device=) everywhere --------------------------------------------------------


def test_the_device_option_holds_for_loading_fitting_and_the_mean(tmp_path: Path) -> None:
    path = tiny_model().save(tmp_path / "m")
    lr, hr = tiny_data(2)
    cfg = xcorrdiff.TrainConfig(preset="tiny", regression_duration=1, diffusion_duration=1)
    with xcorrdiff.set_options(device="cuda:7"):
        for call in (
            lambda: xcorrdiff.load_model(path),
            lambda: tiny_model().regression_mean(lr),
            lambda: lr.corrdiff.fit(hr, config=cfg, progress=False),
        ):
            with pytest.raises(ValueError, match=r"device='cuda:7' was requested but CUDA is not"):
                call()

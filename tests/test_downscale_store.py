"""downscale_to_zarr never loses data and never resumes into a stale or damaged store.

Findings of issue 15, each with a test that failed before: ``overwrite=True`` deleted any
directory; a rerun with corrected input kept the old results; an unfinished store looked
finished; a damaged chunk was trusted on resume; a NaN in dask input or one absurd value
was found only after the store was created (or not at all).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr
from conftest import tiny_data, tiny_model

from xcorrdiff.inference.api import downscale_to_zarr
from xcorrdiff.inference.store import _FAIL_ENV, STATUS_ATTR, read_markers

pytestmark = [pytest.mark.numerics, pytest.mark.usefixtures("one_torch_thread")]

KW: dict[str, Any] = {"n_ensemble": 2, "num_steps": 2, "seed": 5, "device": "cpu", "time_chunk": 2}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model().save(tmp_path_factory.mktemp("store") / "model")


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# --- only our own data is ever deleted -----------------------------------------------------


def test_overwrite_refuses_folders_xcorrdiff_did_not_write(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match=r"a folder xcorrdiff did not write.*refusing"):
        downscale_to_zarr(lr, foreign, model_dir, overwrite=True, **KW)
    assert (foreign / "chapter1.tex").read_text() == "years of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    with pytest.raises(FileExistsError, match=r"exists and is not a folder"):
        downscale_to_zarr(lr, a_file, model_dir, overwrite=True, **KW)
    assert a_file.read_text() == "keep"


def test_overwrite_refuses_our_store_holding_foreign_files(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model_dir, **KW)
    (store / "my-notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"also holds \['my-notes.txt'\]"):
        downscale_to_zarr(lr, store, model_dir, overwrite=True, **{**KW, "seed": 6})
    assert (store / "my-notes.txt").read_text() == "mine"
    (store / "my-notes.txt").unlink()
    run = downscale_to_zarr(lr, store, model_dir, overwrite=True, **{**KW, "seed": 6})
    assert run.computed == (0,) and run.open().attrs["seed"] == 6


@pytest.mark.parametrize("name", ["", "   ", ".", "..", "~"])
def test_paths_that_cannot_be_a_store_are_refused(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    lr, _ = tiny_data(2)
    work = tmp_path / "work"
    work.mkdir()
    (work / "input.nc").write_text("data")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path))
    before = _tree(tmp_path)
    with pytest.raises(
        ValueError, match=r"is empty|working directory or one of its parents|is /|is "
    ):
        downscale_to_zarr(lr, name, model_dir, overwrite=True, **KW)
    assert _tree(tmp_path) == before


def test_the_input_and_its_folder_are_refused(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    folder = tmp_path / "data"
    folder.mkdir()
    lr.to_netcdf(folder / "lr.nc")
    with xr.open_dataset(folder / "lr.nc") as opened:
        for target in (folder, folder / "lr.nc", tmp_path):
            with pytest.raises(ValueError, match=r"is the input .* or a folder holding it"):
                downscale_to_zarr(opened, target, model_dir, overwrite=True, **KW)
    assert (folder / "lr.nc").is_file()


def test_a_missing_parent_folder_is_refused(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    with pytest.raises(ValueError, match=r"the folder .*nope does not exist; create it first"):
        downscale_to_zarr(lr, tmp_path / "nope" / "ens.zarr", model_dir, **KW)
    assert not (tmp_path / "nope").exists()


# --- every check before the first byte ----------------------------------------------------


def test_nan_in_dask_input_is_found_before_the_store_is_created(
    model_dir: Path, tmp_path: Path
) -> None:
    lr, _ = tiny_data(4)
    bad = lr.copy(deep=True)
    bad["t2m"][3, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf values in \{'t2m': 1\}.*2000-01-01T12:00"):
        downscale_to_zarr(bad.chunk(time=1), tmp_path / "ens.zarr", model_dir, **KW)
    assert list(tmp_path.iterdir()) == []


def test_an_absurd_value_is_refused_instead_of_nan_output(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(4)
    bad = lr.copy(deep=True)
    bad["u10m"][2, 3, 3] = 1e30
    with pytest.raises(ValueError, match=r"lr variable 'u10m' has values from .* to 1e\+30 m s-1"):
        downscale_to_zarr(bad.chunk(time=1), tmp_path / "ens.zarr", model_dir, **KW)
    assert list(tmp_path.iterdir()) == []
    # The expert's switch passes the check; the network's NaN is then an error, not output.
    with pytest.raises(FloatingPointError, match=r"produced NaN/inf from finite input"):
        downscale_to_zarr(bad, tmp_path / "ens.zarr", model_dir, check_plausibility=False, **KW)
    assert list(tmp_path.iterdir()) == []  # the store it created held nothing: removed


def test_a_failure_before_the_first_chunk_leaves_nothing(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lr, _ = tiny_data(4)
    monkeypatch.setenv(_FAIL_ENV, "0")
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="injected"):
        downscale_to_zarr(lr, tmp_path / "ens.zarr", model_dir, **KW)
    assert list(tmp_path.iterdir()) == []


# --- resume that cannot be stale -----------------------------------------------------------


def _interrupted(
    model_dir: Path, store: Path, lr: xr.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(_FAIL_ENV, "2")
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="injected"):
        downscale_to_zarr(lr, store, model_dir, **KW)
    monkeypatch.delenv(_FAIL_ENV)


def test_an_unfinished_store_says_so(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lr, _ = tiny_data(6)
    store = tmp_path / "ens.zarr"
    _interrupted(model_dir, store, lr, monkeypatch)
    status = xr.open_zarr(store, consolidated=False).attrs[STATUS_ATTR]
    assert status.startswith("incomplete: 0 of 3 time chunks written")  # set before any write
    downscale_to_zarr(lr, store, model_dir, **KW)
    assert xr.open_zarr(store, consolidated=False).attrs[STATUS_ATTR] == "complete"


def test_rerun_with_corrected_input_refuses_or_recomputes_exactly_the_changed_chunks(
    model_dir: Path, tmp_path: Path
) -> None:
    lr, _ = tiny_data(6)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model_dir, **KW)
    corrected = lr.copy(deep=True)
    corrected["t2m"][3] += 0.5  # time 3: chunk 1; same time stamps
    with pytest.raises(ValueError, match=r"input differs .* at 1 of its 3 finished time chunks"):
        downscale_to_zarr(corrected, store, model_dir, **KW)
    run = downscale_to_zarr(corrected, store, model_dir, recompute_changed=True, **KW)
    assert (run.computed, run.changed, run.skipped) == ((1,), (1,), (0, 2))
    fresh = downscale_to_zarr(corrected, tmp_path / "fresh.zarr", model_dir, **KW)
    for name in ("t2m", "u10m"):
        np.testing.assert_array_equal(run.open()[name].values, fresh.open()[name].values)


def test_a_damaged_chunk_is_recomputed_not_trusted(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(6)
    reference = downscale_to_zarr(lr, tmp_path / "reference.zarr", model_dir, **KW)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model_dir, **KW)
    chunk = next((store / "t2m" / "c").glob("*/1/*/*"))  # member 0, time chunk 1
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    chunk.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"1 finished time chunks \[1\] no longer match"):
        run = downscale_to_zarr(lr, store, model_dir, **KW)
    assert (run.computed, run.repaired) == ((1,), (1,))
    for name in ("t2m", "u10m"):
        np.testing.assert_array_equal(run.open()[name].values, reference.open()[name].values)


def test_markers_record_input_fingerprints_and_checksums(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(4)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model_dir, **KW)
    markers = read_markers(store)
    assert sorted(markers) == [0, 1]
    for marker in markers.values():
        assert marker["input_digest"].startswith("sha256:")
        assert sorted(marker["sha256"]) == ["t2m", "u10m"]
    assert markers[0]["input_digest"] != markers[1]["input_digest"]


def test_orphan_temporary_markers_are_removed_on_resume(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lr, _ = tiny_data(6)
    store = tmp_path / "ens.zarr"
    _interrupted(model_dir, store, lr, monkeypatch)
    orphan = store / ".xcorrdiff" / "done" / f".000002.{os.getpid()}.tmp"
    orphan.write_text("{")
    downscale_to_zarr(lr, store, model_dir, **KW)
    assert not orphan.exists()


def test_a_failed_overwrite_before_the_first_chunk_leaves_nothing(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lr, _ = tiny_data(4)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model_dir, **KW)
    monkeypatch.setenv(_FAIL_ENV, "0")
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="injected"):
        downscale_to_zarr(lr, store, model_dir, overwrite=True, **{**KW, "seed": 8})
    assert (
        list(tmp_path.iterdir()) == []
    )  # the old store was replaced as asked; the new one held nothing


def test_overwrite_replaces_a_store_of_an_older_version(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model_dir, **KW)
    record = store / ".xcorrdiff" / "request.json"
    old = json.loads(record.read_text())
    old.pop("arrays")  # as written before the request listed its arrays
    record.write_text(json.dumps(old))
    run = downscale_to_zarr(lr, store, model_dir, overwrite=True, **{**KW, "seed": 9})
    assert run.open().attrs["seed"] == 9

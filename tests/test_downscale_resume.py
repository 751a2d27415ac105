"""downscale_to_zarr(): a run interrupted after k chunks resumes bitwise, without redoing them.

Interruptions are injected with the private ``XCORRDIFF_TEST_FAIL_AFTER_CHUNKS`` variable:
a write task raises once the store holds that many finished chunks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pytest
import torch
import xarray as xr
from conftest import tiny_data, tiny_model, two_worker_cluster
from dask.callbacks import Callback

from xcorrdiff.cli import main
from xcorrdiff.inference.api import downscale, downscale_to_zarr
from xcorrdiff.inference.handles import worker_device
from xcorrdiff.inference.store import _FAIL_ENV, done_chunks, read_request

pytestmark = [pytest.mark.numerics, pytest.mark.usefixtures("one_torch_thread")]

KW: dict[str, Any] = {"n_ensemble": 2, "num_steps": 2, "seed": 5, "device": "cpu"}
VARIABLES = ("t2m", "u10m")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model().save(tmp_path_factory.mktemp("resume") / "model")


@pytest.fixture(scope="module")
def reference(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run: 6 times in chunks of 2 (3 chunks)."""
    store = tmp_path_factory.mktemp("reference") / "ens.zarr"
    lr, _ = tiny_data(6)
    run = downscale_to_zarr(lr, store, model_dir, time_chunk=2, **KW)
    assert run.computed == (0, 1, 2) and run.skipped == ()
    return store


class _CountSamples(Callback):
    """Counts the sampling tasks the local scheduler runs."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        name = key[0] if isinstance(key, tuple) else key
        self.count += str(name).startswith("xcorrdiff-sample")


def _chunk_files(store: Path, index: int) -> dict[str, int]:
    """The zarr chunk files of time chunk ``index`` and their modification times."""
    files = [p for v in VARIABLES for p in (store / v / "c").glob(f"*/{index}/*/*")]
    assert files, f"no chunk files of time chunk {index} in {store}"
    return {str(p): p.stat().st_mtime_ns for p in files}


def _assert_same(store: Path, reference: Path) -> None:
    got, want = xr.open_zarr(store, consolidated=False), xr.open_zarr(reference, consolidated=False)
    assert dict(got.sizes) == dict(want.sizes)
    for name in VARIABLES:
        np.testing.assert_array_equal(got[name].values, want[name].values)
    np.testing.assert_array_equal(got["time"].values, want["time"].values)
    assert got.attrs == want.attrs


def test_interrupted_run_resumes_without_recomputing(
    model_dir: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "ens.zarr"
    lr, _ = tiny_data(6)
    monkeypatch.setenv(_FAIL_ENV, "2")
    with (
        dask.config.set(scheduler="sync"),
        pytest.raises(RuntimeError, match=r"injected failure before chunk [0-2]"),
    ):
        downscale_to_zarr(lr, store, model_dir, time_chunk=2, **KW)
    monkeypatch.delenv(_FAIL_ENV)
    done = sorted(done_chunks(store))
    assert len(done) == 2
    (todo,) = {0, 1, 2} - set(done)
    before = {k: v for i in done for k, v in _chunk_files(store, i).items()}
    unfinished = xr.open_zarr(store, consolidated=False)["t2m"].isel(time=2 * todo)
    assert np.isnan(unfinished.values).all()

    with _CountSamples() as counter:
        run = downscale_to_zarr(lr, store, model_dir, time_chunk=2, **KW)
    assert (run.computed, run.skipped, run.n_chunks) == ((todo,), tuple(done), 3)
    assert counter.count == 1  # one sampling task: the unfinished chunk only
    after = {k: v for i in done for k, v in _chunk_files(store, i).items()}
    assert after == before  # finished regions were not rewritten
    _assert_same(store, reference)
    expected = downscale(lr.chunk(time=2), model_dir, **KW).compute()
    for name in VARIABLES:
        np.testing.assert_array_equal(run.open()[name].values, expected[name].values)

    again = downscale_to_zarr(lr, store, model_dir, time_chunk=2, **KW)
    assert (again.computed, again.skipped) == ((), (0, 1, 2))


def test_resume_on_a_distributed_cluster(
    model_dir: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("distributed")
    store = tmp_path / "ens.zarr"
    lr, _ = tiny_data(6)
    monkeypatch.setenv(_FAIL_ENV, "1")
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="injected"):
        downscale_to_zarr(lr, store, model_dir, time_chunk=2, **KW)
    monkeypatch.delenv(_FAIL_ENV)
    with two_worker_cluster():
        run = downscale_to_zarr(lr, store, model_dir, time_chunk=2, **KW)
    (done,) = run.skipped
    assert run.computed == tuple(i for i in range(3) if i != done)
    _assert_same(store, reference)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"seed": 6}, r"seed: store has 5, this call 6"),
        ({"n_ensemble": 3}, r"n_ensemble: store has 2, this call 3"),
        ({"num_steps": 3, "sampler": "dpmpp_2m"}, r"sampler: store has 'euler'.*num_steps"),
        ({"time_chunk": 3}, r"time_chunk: store has 2, this call 3"),
        ({"times": 5}, r"n_times: store has 6, this call 5; time_digest"),
    ],
)
def test_resume_refuses_another_request(
    model_dir: Path, reference: Path, change: dict[str, Any], match: str
) -> None:
    kw = {**KW, "time_chunk": 2, **change}
    lr, _ = tiny_data(kw.pop("times", 6))
    before = sorted(p.stat().st_mtime_ns for p in reference.rglob("*") if p.is_file())
    with pytest.raises(ValueError, match=match):
        downscale_to_zarr(lr, reference, model_dir, **kw)
    assert sorted(p.stat().st_mtime_ns for p in reference.rglob("*") if p.is_file()) == before


def test_a_store_written_before_a_request_key_existed_resumes(
    model_dir: Path, tmp_path: Path
) -> None:
    """A store recorded without ``student`` (written before students existed) sampled with
    the teacher: it resumes under student=False, and not under a student."""
    lr, _ = tiny_data(2)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model_dir, time_chunk=1, **KW)
    record = store / ".xcorrdiff" / "request.json"
    old = json.loads(record.read_text())
    del old["student"]
    record.write_text(json.dumps(old))
    run = downscale_to_zarr(lr, store, model_dir, time_chunk=1, **KW)
    assert run.computed == () and run.skipped == (0, 1)


def test_existing_store_needs_resume_or_overwrite(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    store = tmp_path / "ens.zarr"
    downscale_to_zarr(lr, store, model_dir, time_chunk=1, **KW)
    with pytest.raises(FileExistsError, match="already exists; pass resume=True"):
        downscale_to_zarr(lr, store, model_dir, time_chunk=1, resume=False, **KW)
    run = downscale_to_zarr(lr, store, model_dir, time_chunk=1, overwrite=True, **{**KW, "seed": 9})
    assert run.computed == (0, 1) and read_request(store)["seed"] == 9  # type: ignore[index]
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(ValueError, match="holds no xcorrdiff request record"):
        downscale_to_zarr(lr, other, model_dir, **KW)


def test_bad_arguments_write_nothing(model_dir: Path, tmp_path: Path) -> None:
    lr, _ = tiny_data(2)
    store = tmp_path / "ens.zarr"
    with pytest.raises(ValueError, match=r"time_chunk=0 is invalid; expected an integer >= 1"):
        downscale_to_zarr(lr, store, model_dir, time_chunk=0, **KW)
    with pytest.raises(ValueError, match=r"needs an xarray.Dataset with a 'time' dimension"):
        downscale_to_zarr(lr.isel(time=0), store, model_dir, **KW)
    with pytest.raises(ValueError, match=r"n_ensemble=0 is invalid"):
        downscale_to_zarr(lr, store, model_dir, **{**KW, "n_ensemble": 0})
    assert not store.exists()


def test_cli_resume(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lr, _ = tiny_data(4)
    lr.to_netcdf(tmp_path / "lr.nc")

    def args(out: Path, *extra: str) -> list[str]:
        return [
            "downscale", str(tmp_path / "lr.nc"), "--model", str(model_dir), "--members", "2",
            "--steps", "2", "--seed", "5", "--device", "cpu", "--time-chunk", "1",
            "--out", str(out), *extra,
        ]  # fmt: skip

    assert main(args(tmp_path / "full.zarr", "--quiet")) == 0
    monkeypatch.setenv(_FAIL_ENV, "3")
    with pytest.raises(RuntimeError, match="injected"):
        main(args(tmp_path / "cut.zarr", "--quiet", "--workers", "1"))
    monkeypatch.delenv(_FAIL_ENV)
    assert main(args(tmp_path / "cut.zarr", "--quiet")) == 2
    assert "pass --resume" in capsys.readouterr().err
    assert main(args(tmp_path / "cut.zarr", "--resume")) == 0
    assert "wrote 1 of 4 time chunks, 3 found done" in capsys.readouterr().err
    _assert_same(tmp_path / "cut.zarr", tmp_path / "full.zarr")
    assert main(args(tmp_path / "cut.zarr", "--resume", "--mode", "w")) == 2
    assert "contradict" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("requested", "environ", "worker_name", "expected"),
    [
        ("cpu", {"LOCAL_RANK": "1"}, 3, "cpu"),
        ("cuda:1", {"LOCAL_RANK": "0"}, 0, "cuda:1"),
        ("cuda", {"LOCAL_RANK": "5", "CUDA_VISIBLE_DEVICES": "0,1"}, 0, "cuda:1"),
        ("cuda", {"SLURM_LOCALID": "2"}, None, "cuda:0"),
        ("cuda", {"CUDA_VISIBLE_DEVICES": "3,0,1,2"}, 1, "cuda:0"),
        ("cuda", {}, 3, "cuda:1"),
        ("cuda", {}, "tcp://10.0.0.1:3456", "cuda:0"),
    ],
)
def test_worker_device_pins_one_gpu_per_worker(
    requested: str, environ: dict[str, str], worker_name: object, expected: str
) -> None:
    device = worker_device(requested, environ=environ, worker_name=worker_name, device_count=2)
    assert device == torch.device(expected)

"""downscale_to_zarr(verify_against=truth): each task scores what it wrote; the sums give
the one-shot scores of the finished store, after an interruption and resume too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_data, tiny_model, two_worker_cluster

import xcorrdiff.verify as xv
from xcorrdiff.inference.api import downscale_to_zarr
from xcorrdiff.inference.store import _FAIL_ENV

pytestmark = [pytest.mark.usefixtures("one_torch_thread")]

KW: dict[str, Any] = {"n_ensemble": 3, "num_steps": 2, "seed": 5, "device": "cpu", "time_chunk": 2}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model().save(tmp_path_factory.mktemp("verify") / "model")


def _one_shot(store: xr.Dataset, truth: xr.Dataset, sums: xr.Dataset) -> None:
    """The streamed scores equal the one-shot ones on the written store."""
    scores = xv.scores_from_sums(sums)
    names = [str(n) for n in scores["variable"].values]
    ens = store[names]
    table = xv.verify(ens, truth[names])
    for score in ("crps", "crps_fair", "mae", "rmse", "spread", "spread_skill"):
        np.testing.assert_allclose(scores[score].values, table[score].values, rtol=1e-10)
    for k, name in enumerate(names):
        ranks = xv.rank_histogram(ens[name], truth[name])
        np.testing.assert_array_equal(scores["rank_histogram"][k].values, ranks.values)
        np.testing.assert_allclose(
            float(scores["ralsd"][k]), float(xv.ralsd(ens[name], truth[name])), rtol=1e-10
        )


def test_the_store_is_scored_as_it_is_written(model_dir: Path, tmp_path: Path) -> None:
    lr, hr = tiny_data(6)
    run = downscale_to_zarr(lr, tmp_path / "ens.zarr", model_dir, verify_against=hr, **KW)
    assert run.verification is not None and run.computed == (0, 1, 2)
    assert sorted(p.name for p in (tmp_path / "ens.zarr/.xcorrdiff/verify").iterdir()) == [
        "000000.npz", "000001.npz", "000002.npz",
    ]  # fmt: skip
    _one_shot(run.open().load(), hr, run.verification)


def test_a_resumed_store_is_scored_whole(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lr, hr = tiny_data(6)
    store = tmp_path / "ens.zarr"
    monkeypatch.setenv(_FAIL_ENV, "1")  # stops after one chunk, written without scoring
    with pytest.raises(RuntimeError, match="injected failure"):
        downscale_to_zarr(lr, store, model_dir, **KW)
    monkeypatch.delenv(_FAIL_ENV)
    assert not (store / ".xcorrdiff/verify").exists()
    run = downscale_to_zarr(lr, store, model_dir, verify_against=hr, **KW)
    assert run.skipped and sorted(run.skipped + run.computed) == [0, 1, 2]
    # The chunks finished without scoring are scored from the store at the end.
    saved = sorted(int(p.stem) for p in (store / ".xcorrdiff/verify").iterdir())
    assert saved == list(run.computed)
    _one_shot(run.open().load(), hr, run.verification)


def test_truth_that_cannot_score_is_refused_before_writing(model_dir: Path, tmp_path: Path) -> None:
    lr, hr = tiny_data(6)
    store = tmp_path / "ens.zarr"
    with pytest.raises(ValueError, match=r"verify_against holds none of the output variables"):
        downscale_to_zarr(
            lr, store, model_dir, verify_against=hr.rename(t2m="tas", u10m="u", v10m="v"), **KW
        )
    with pytest.raises(ValueError, match=r"the truth of 't2m' covers only part of the output"):
        downscale_to_zarr(lr, store, model_dir, verify_against=hr.isel(time=slice(4)), **KW)
    assert not store.exists()


def test_scored_on_a_distributed_cluster(model_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    lr, hr = tiny_data(6)
    with two_worker_cluster():
        run = downscale_to_zarr(lr, tmp_path / "ens.zarr", model_dir, verify_against=hr, **KW)
    assert run.computed == (0, 1, 2)
    _one_shot(run.open().load(), hr, run.verification)

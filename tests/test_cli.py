"""The ``xcorrdiff`` command line: downscale a file into a zarr store; clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import tiny_data, tiny_model

from xcorrdiff.cli import main
from xcorrdiff.inference.api import downscale


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    lr, _ = tiny_data(3)
    lr.to_netcdf(root / "lr.nc")
    bad = lr.copy(deep=True)
    bad["t2m"][0, 0, :2] = np.nan
    bad.to_netcdf(root / "nan.nc")
    lr.drop_vars("tcwv").to_netcdf(root / "missing.nc")
    return {"root": root, "lr": root / "lr.nc", "nan": root / "nan.nc",
            "missing": root / "missing.nc", "model": tiny_model().save(root / "model")}  # fmt: skip


def _args(files: dict[str, Path], out: Path, *extra: str, source: str = "lr") -> list[str]:
    return [
        "downscale", str(files[source]), "--model", str(files["model"]), "--members", "2",
        "--steps", "2", "--out", str(out), "--device", "cpu", "--quiet", *extra,
    ]  # fmt: skip


def test_downscale_writes_the_ensemble(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ens.zarr"
    assert main(_args(files, out, "--seed", "3", "--times", "2000-01-01T06:00/")) == 0
    ens = xr.open_zarr(out, consolidated=False)
    assert dict(ens.sizes) == {"member": 2, "time": 2, "y": 32, "x": 48}
    assert ens.attrs["seed"] == 3 and ens.attrs["num_steps"] == 2
    assert ens["t2m"].attrs["units"] == "K"
    lr, _ = tiny_data(3)
    expected = downscale(lr.isel(time=slice(1, None)), tiny_model(), 2, num_steps=2, seed=3,
                         device="cpu")  # fmt: skip
    np.testing.assert_allclose(ens["t2m"].values, expected["t2m"].values, atol=1e-3)


def test_existing_output_is_refused_and_mode_w_replaces_only_our_stores(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ens.zarr"
    out.mkdir()
    (out / "keep.txt").write_text("not a store")
    assert main(_args(files, out)) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "not a store"
    # Before: --mode w deleted any folder. Now only a store xcorrdiff wrote.
    assert main(_args(files, out, "--mode", "w")) == 2
    assert "a folder xcorrdiff did not write" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "not a store"
    (out / "keep.txt").unlink()  # an empty folder may be used
    assert main(_args(files, out, "--mode", "w")) == 0
    assert xr.open_zarr(out, consolidated=False).sizes["member"] == 2
    assert main(_args(files, out, "--mode", "w", "--seed", "1")) == 0  # our store: replaced
    assert xr.open_zarr(out, consolidated=False).attrs["seed"] == 1


@pytest.mark.parametrize(
    ("source", "extra", "match"),
    [
        ("nan", (), r"NaN/inf values in \{'t2m': 2\}"),
        ("missing", (), r"lacks the model's input variables \['tcwv'\]"),
        (
            "lr",
            ("--members", "0"),
            r"argument --n-ensemble/--members: expected an integer >= 1, got '0'",
        ),
        ("lr", ("--times", "1999-01-01/1999-02-01"), r"selects no time"),
    ],
)
def test_bad_input_writes_nothing(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    source: str,
    extra: tuple[str, ...],
    match: str,
) -> None:
    out = tmp_path / "ens.zarr"
    assert main(_args(files, out, *extra, source=source)) == 2
    err = capsys.readouterr().err
    assert err.startswith("xcorrdiff downscale: error:")
    assert __import__("re").search(match, err), err
    assert not out.exists()


def test_bad_model_and_input_paths(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _args(files, tmp_path / "o.zarr")
    args[args.index("--model") + 1] = str(tmp_path)
    assert main(args) == 2
    assert "not a saved CorrDiff model directory" in capsys.readouterr().err
    args = _args(files, tmp_path / "o.zarr")
    args[1] = str(tmp_path / "nope.nc")
    assert main(args) == 2
    assert "does not exist" in capsys.readouterr().err


def test_help_lists_subcommands() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "xcorrdiff.cli", "--help"], capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    assert "downscale" in out.stdout
    with pytest.raises(SystemExit) as info:
        main(["downscale", "--help"])
    assert info.value.code == 0

"""The command line's contract, case by case: one line on stderr, exit 2 for a misuse and 1
for the environment, and nothing written, removed or changed on disk.

Each case runs ``xcorrdiff downscale`` in a fresh working directory holding the input
files, a saved model and a few existing folders; the whole tree is compared before and
after.
"""

from __future__ import annotations

import errno
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import record_message, tiny_data, tiny_model

from xcorrdiff.cli import main
from xcorrdiff.inference.api import downscale_to_zarr

SYS = "/sys/xcorrdiff-contract.zarr"  # no file can be made there, even by root (Linux)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files every case starts from (copied into each case's working directory)."""
    root = tmp_path_factory.mktemp("contract")
    lr, _ = tiny_data(3)
    lr.to_netcdf(root / "lr.nc")
    variants = {
        "nan.nc": lambda d: d["t2m"].__setitem__((0, 0, 0), np.nan),
        "huge.nc": lambda d: d["u10m"].__setitem__((1, 2, 2), 1e30),
        "kelvin-as-celsius.nc": lambda d: d["t2m"].attrs.update(units="degC"),
        "wrong-units.nc": lambda d: d["t2m"].attrs.update(units="m s-1"),
    }
    for name, change in variants.items():
        bad = lr.copy(deep=True)
        change(bad)
        bad.to_netcdf(root / name)
    lr.drop_vars("tcwv").to_netcdf(root / "missing.nc")
    lr.isel(time=[0, 1, 1]).to_netcdf(root / "repeated.nc")
    (root / "garbage.nc").write_bytes(b"not a netcdf file at all" * 10)
    model = tiny_model().save(root / "model")
    shutil.copytree(model, root / "damaged-model")
    weights = root / "damaged-model" / "diffusion.safetensors"
    data = bytearray(weights.read_bytes())
    data[-50] ^= 1
    weights.write_bytes(bytes(data))
    (root / "foreign").mkdir()
    (root / "foreign" / "thesis.tex").write_text("years of work")
    (root / "a-file").write_text("not a folder")
    downscale_to_zarr(lr, root / "ours.zarr", model, n_ensemble=2, num_steps=2, device="cpu")
    return root


def _run(argv: list[str], cwd: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    status = main(argv)
    return status, capsys.readouterr().err


def _tree(root: Path) -> dict[str, Any]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.is_dir())
        for p in sorted(root.rglob("*"))
    }


def _files(root: Path) -> dict[str, Any]:
    """Like :func:`_tree` without folder times (making and removing a store touches them)."""
    return {k: v for k, v in _tree(root).items() if not v[2]} | {
        k: v[2] for k, v in _tree(root).items() if v[2]
    }


BASE = ["lr.nc", "--model", "model", "--members", "2", "--steps", "2", "--device", "cpu", "--quiet"]

# (id, extra arguments or a full argument list, expected message as a regex)
MISUSES: list[tuple[str, list[str], str]] = [
    (
        "members-zero",
        ["--out", "o.zarr", "--members", "0"],
        r"--members: expected an integer >= 1, got '0'",
    ),
    (
        "members-negative",
        ["--out", "o.zarr", "--members", "-3"],
        r"--members: expected an integer >= 1",
    ),
    (
        "members-text",
        ["--out", "o.zarr", "--members", "many"],
        r"--members: expected an integer, got 'many'",
    ),
    ("steps-zero", ["--out", "o.zarr", "--steps", "0"], r"--steps: expected an integer >= 1"),
    ("seed-negative", ["--out", "o.zarr", "--seed", "-1"], r"--seed: expected an integer >= 0"),
    (
        "time-chunk-zero",
        ["--out", "o.zarr", "--time-chunk", "0"],
        r"--time-chunk: expected an integer >= 1",
    ),
    ("workers-zero", ["--out", "o.zarr", "--workers", "0"], r"--workers: expected an integer >= 1"),
    (
        "member-batch-zero",
        ["--out", "o.zarr", "--member-batch-size", "0"],
        r"--member-batch-size: expected an integer >= 1",
    ),
    (
        "overlap-negative",
        ["--out", "o.zarr", "--overlap", "-2"],
        r"--overlap: expected an integer >= 0",
    ),
    (
        "churn-negative",
        ["--out", "o.zarr", "--churn", "-1"],
        r"--churn: expected a finite number >= 0",
    ),
    ("churn-nan", ["--out", "o.zarr", "--churn", "nan"], r"--churn: expected a finite number >= 0"),
    (
        "patch-zero",
        ["--out", "o.zarr", "--patch-shape", "0x8"],
        r"--patch-shape: expected YxX with positive sides",
    ),
    ("patch-text", ["--out", "o.zarr", "--patch-shape", "big"], r"--patch-shape: expected YxX"),
    (
        "patch-too-large",
        ["--out", "o.zarr", "--patch-shape", "64x64"],
        r"patch_shape=\(64, 64\) is larger than the model's HR grid",
    ),
    (
        "patch-indivisible",
        ["--out", "o.zarr", "--patch-shape", "15x15"],
        r"expected sides divisible by 2",
    ),
    (
        "overlap-without-patch",
        ["--out", "o.zarr", "--overlap", "2"],
        r"overlap=2 needs patch_shape",
    ),
    (
        "sampler-unknown",
        ["--out", "o.zarr", "--sampler", "ddim"],
        r"--sampler: invalid choice: 'ddim'",
    ),
    ("dtype-unknown", ["--out", "o.zarr", "--dtype", "float64"], r"--dtype: invalid choice"),
    (
        "fp16-on-cpu",
        ["--out", "o.zarr", "--dtype", "float16"],
        r"half-precision inference\) needs a CUDA device",
    ),
    ("mode-unknown", ["--out", "o.zarr", "--mode", "a"], r"--mode: invalid choice: 'a'"),
    (
        "region-garbled",
        ["--out", "o.zarr", "--region", "y=0-64"],
        r"--region: expected NAME=A:B\[,NAME=C:D\]",
    ),
    (
        "region-open-box",
        ["--out", "o.zarr", "--region", "lat=44:,lon=5:8"],
        r"--region: a lat/lon box needs both ends of each",
    ),
    (
        "region-unknown-dim",
        ["--out", "o.zarr", "--region", "row=0:10"],
        r"region has keys \['row'\]; expected slices of the grid's dimensions",
    ),
    (
        "fill-unknown",
        ["--out", "o.zarr", "--fill-missing", "zero"],
        r"--fill-missing: invalid choice: 'zero'",
    ),
    (
        "resume-and-mode-w",
        ["--out", "o.zarr", "--resume", "--mode", "w"],
        r"--resume and --overwrite \(--mode w\) contradict",
    ),
    (
        "resume-and-overwrite",
        ["--out", "o.zarr", "--resume", "--overwrite"],
        r"--resume and --overwrite \(--mode w\) contradict",
    ),
    (
        "unknown-option",
        ["--out", "o.zarr", "--colour", "red"],
        r"unrecognized arguments: --colour red",
    ),
    ("no-out", [], r"the following arguments are required: --out"),
    ("out-empty", ["--out", ""], r"--out: expected a path, got an empty string"),
    (
        "out-cwd",
        ["--out", ".", "--mode", "w"],
        r"--out='\.' is the working directory or one of its parents",
    ),
    (
        "out-parent",
        ["--out", "..", "--mode", "w"],
        r"--out='\.\.' is the working directory or one of its parents",
    ),
    ("out-is-input", ["--out", "lr.nc", "--mode", "w"], r"--out='lr.nc' is the input 'lr.nc'"),
    ("out-is-model", ["--out", "model", "--mode", "w"], r"--out='model' is the input 'model'"),
    ("out-folder-missing", ["--out", "missing/o.zarr"], r"the folder .*missing does not exist"),
    (
        "out-exists",
        ["--out", "foreign"],
        r"--out 'foreign' already exists; .*--resume.*--overwrite",
    ),
    (
        "out-foreign-mode-w",
        ["--out", "foreign", "--mode", "w"],
        r"store='.*/foreign' is a folder xcorrdiff did not write",
    ),
    ("out-file-mode-w", ["--out", "a-file", "--mode", "w"], r"exists and is not a folder"),
    ("resume-foreign", ["--out", "foreign", "--resume"], r"holds no xcorrdiff request record"),
    (
        "resume-other-request",
        ["--out", "ours.zarr", "--resume", "--seed", "3"],
        r"seed: store has 0, this call 3",
    ),
    (
        "resume-other-members",
        ["--out", "ours.zarr", "--resume", "--members", "3"],
        r"n_ensemble: store has 2, this call 3",
    ),
    (
        "model-missing",
        ["--out", "o.zarr", "--model", "nowhere"],
        r"--model: .*'nowhere' is not a saved CorrDiff model directory",
    ),
    (
        "model-not-a-model",
        ["--out", "o.zarr", "--model", "foreign"],
        r"--model: .*is not a saved CorrDiff model directory",
    ),
    (
        "model-damaged",
        ["--out", "o.zarr", "--model", "damaged-model"],
        r"--model: .*diffusion.safetensors is damaged",
    ),
    (
        "members-beyond-memory",
        ["--out", "o.zarr", "--members", "1000000000"],
        r"one time chunk of the ensemble \(1000000000 members .* use fewer members",
    ),
    ("device-unknown", ["--out", "o.zarr", "--device", "tpu"], r"device='tpu' is invalid"),
    (
        "times-none",
        ["--out", "o.zarr", "--times", "1999-01-01/1999-02-01"],
        r"--times '1999-01-01/1999-02-01' selects no time",
    ),
    (
        "times-garbage",
        ["--out", "o.zarr", "--times", "yesterday"],
        r"--times 'yesterday' is not a time",
    ),
]
# (id, input file, expected message)
BAD_INPUTS: list[tuple[str, str, str]] = [
    ("input-missing", "nope.nc", r"INPUT 'nope.nc' does not exist"),
    ("input-garbage", "garbage.nc", r"INPUT 'garbage.nc' could not be opened by xarray"),
    ("input-lacks-variable", "missing.nc", r"lacks the model's input variables \['tcwv'\]"),
    ("input-nan", "nan.nc", r"NaN/inf values in \{'t2m': 1\}"),
    ("input-absurd-value", "huge.nc", r"'u10m' has values from .* to 1e\+30 m s-1, outside the physical range"),
    ("input-kelvin-labelled-celsius", "kelvin-as-celsius.nc", r"'t2m' has values .* outside the physical range of an absolute temperature.*Kelvin numbers labelled 'degC'"),
    ("input-units-wrong-quantity", "wrong-units.nc", r"cannot convert units for variable 't2m' from 'm s-1'"),
    ("input-repeated-times", "repeated.nc", r"repeats stamps \['2000-01-01T06:00:00"),
]  # fmt: skip

CASES = [pytest.param(BASE + extra, match, id=f"cli-{name}") for name, extra, match in MISUSES] + [
    pytest.param([source, *BASE[1:], "--out", "o.zarr"], match, id=f"cli-{name}")
    for name, source, match in BAD_INPUTS
]


def test_the_table_has_at_least_thirty_misuses() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize(("argv", "match"), CASES)
def test_misuse_is_one_line_exit_2_and_writes_nothing(
    template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], argv: list[str], match: str, request: pytest.FixtureRequest,
) -> None:  # fmt: skip
    work = Path(shutil.copytree(template, tmp_path / "work", symlinks=True))
    monkeypatch.chdir(work)
    before = _tree(tmp_path)
    status, err = _run(["downscale", *argv], work, capsys)
    assert status == 2, err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("xcorrdiff downscale: error: "), err
    assert re.search(match, err), err
    assert _tree(tmp_path) == before
    record_message(request, "exit 2", err.strip())


def test_no_subcommand_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, err = _run([], Path.cwd(), capsys)
    assert status == 2 and len(err.splitlines()) == 1
    assert "the following arguments are required: COMMAND" in err


@pytest.mark.skipif(sys.platform != "linux", reason="/sys takes no new files on Linux")
def test_a_read_only_location_is_exit_1_naming_it(
    template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(template)
    before = _tree(template)
    status, err = _run(["downscale", *BASE, "--out", SYS], template, capsys)
    assert status == 1, err
    assert len(err.splitlines()) == 1
    assert re.search(
        r"xcorrdiff downscale: error: cannot write or read /sys/xcorrdiff-contract", err
    )
    assert _tree(template) == before
    assert not Path(SYS).exists()


def test_a_full_disk_is_exit_1_and_keeps_a_resumable_store(
    template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import xcorrdiff.inference.store as store_module

    work = Path(shutil.copytree(template, tmp_path / "work"))
    monkeypatch.chdir(work)
    real = store_module._write_chunk
    calls = {"n": 0}

    def full_after_one(path: str, index: int, *args: Any) -> int:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", f"{path}/t2m/c/0/{index}")
        return real(path, index, *args)

    monkeypatch.setattr(store_module, "_write_chunk", full_after_one)
    status, err = _run(["downscale", *BASE, "--out", "ens.zarr", "--time-chunk", "1"], work, capsys)
    assert status == 1 and len(err.splitlines()) == 1, err
    assert "cannot write or read" in err and "No space left on device" in err
    assert "1 finished time chunks are kept in ens.zarr" in err and "--resume" in err
    monkeypatch.setattr(store_module, "_write_chunk", real)  # space freed
    status, err = _run(
        ["downscale", *BASE, "--out", "ens.zarr", "--time-chunk", "1", "--resume"], work, capsys
    )
    assert status == 0, err
    status, err = _run(
        ["downscale", *BASE, "--out", "straight.zarr", "--time-chunk", "1"], work, capsys
    )
    import xarray as xr

    resumed = xr.open_zarr(work / "ens.zarr", consolidated=False)
    straight = xr.open_zarr(work / "straight.zarr", consolidated=False)
    for name in ("t2m", "u10m"):
        np.testing.assert_array_equal(resumed[name].values, straight[name].values)
    assert not list((work / "ens.zarr").rglob("*.tmp"))


def test_a_full_disk_before_the_first_chunk_leaves_nothing(
    template: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import xcorrdiff.inference.store as store_module

    work = Path(shutil.copytree(template, tmp_path / "work"))
    monkeypatch.chdir(work)
    before = _files(tmp_path)

    def full(path: str, index: int, *args: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(store_module, "_write_chunk", full)
    status, err = _run(["downscale", *BASE, "--out", "ens.zarr"], work, capsys)
    assert status == 1 and "No space left on device" in err and "--resume" not in err
    assert _files(tmp_path) == before  # the store it made (holding nothing) is gone

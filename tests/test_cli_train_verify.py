"""``xcorrdiff train`` and ``xcorrdiff verify`` end to end on tiny data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import OUTPUTS, tiny_data, tiny_model

import xcorrdiff
from xcorrdiff import verify
from xcorrdiff.cli import main
from xcorrdiff.inference.api import downscale

RUN_TOML = """
input_variables = ["t2m", "u10m", "tcwv"]
output_variables = ["t2m", "u10m"]

[train]
preset = "tiny"
batch_size = 2
patch_shape = [16, 16]
patches_per_sample = 1
lr_rampup = 0
validation_every = 4
checkpoint_every = 4

[train.model]
regression = {model_channels = 4, channel_mult = [1, 2], num_blocks = 1, embedding_type = "zero"}
diffusion = {model_channels = 4, channel_mult = [1, 2], num_blocks = 1}

[train.schedule]
regression_duration = 8
diffusion_duration = 4
"""


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-cli")
    lr, hr = tiny_data(6)
    lr.to_zarr(root / "lr.zarr", consolidated=False)
    hr.to_netcdf(root / "hr.nc")
    (root / "run.toml").write_text(RUN_TOML)
    return {"root": root, "lr": root / "lr.zarr", "hr": root / "hr.nc", "toml": root / "run.toml"}


def _train(pairs: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["train", str(pairs["lr"]), str(pairs["hr"]), "--out", str(out), "--config",
                 str(pairs["toml"]), "--device", "cpu", "--quiet", *extra])  # fmt: skip


def test_train_writes_a_model_that_downscales(pairs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert _train(pairs, out, "--seed", "2") == 0
    model = xcorrdiff.load_model(out)
    assert model.output_names == OUTPUTS and model.diffusion is not None
    config = model.provenance["config"]
    assert config["runtime"]["seed"] == 2 and config["schedule"]["regression_duration"] == 8
    log = (tmp_path / "model.checkpoints" / "log.jsonl").read_text().splitlines()
    folds = {f"regression-fold{j}" for j in range(3)}  # the tiny preset cross-fits short records
    assert {json.loads(line)["stage"] for line in log} == {"regression", "diffusion", *folds}
    lr, _ = tiny_data(2)
    ens = downscale(lr, out, 2, num_steps=2, device="cpu")
    assert ens["t2m"].dims == ("member", "time", "y", "x") and np.isfinite(ens["t2m"]).all()


def test_train_distills_a_student_that_downscale_uses(
    pairs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "model"
    assert _train(pairs, out, "--distill", "2") == 0
    model = xcorrdiff.load_model(out)
    assert model.student is not None and model.student_config is not None
    assert model.student_config.sampler.num_steps == 2  # of the default 12 Euler steps
    assert model.provenance["student"]["samples"] == 4  # the diffusion stage's duration
    ens_path = tmp_path / "ens.zarr"
    assert main(["downscale", str(pairs["lr"]), "--model", str(out), "--members", "2",
                 "--student", "--out", str(ens_path), "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    ens = xr.open_zarr(ens_path, consolidated=False)
    assert ens.attrs["student"] and ens.attrs["num_steps"] == 2
    lr = xr.open_zarr(pairs["lr"], consolidated=False)
    expected = downscale(lr, out, 2, student=True, device="cpu")
    np.testing.assert_allclose(ens["t2m"].values, expected["t2m"].values, rtol=1e-5)


def test_train_resumes_from_its_checkpoint_directory(
    pairs: dict[str, Path], tmp_path: Path
) -> None:
    first = tmp_path / "model"
    assert _train(pairs, first) == 0
    steps = len((tmp_path / "model.checkpoints" / "log.jsonl").read_text().splitlines())
    # The same command again (the model replaced): both stages are complete in the
    # checkpoints, so nothing is trained twice and the networks are the same.
    assert _train(pairs, first, "--overwrite") == 0
    again = (tmp_path / "model.checkpoints" / "log.jsonl").read_text().splitlines()
    assert len(again) == steps
    a = xcorrdiff.load_model(first)
    assert a.diffusion is not None


def test_train_misuse_is_one_line_and_writes_nothing(
    pairs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    out.mkdir()
    assert _train(pairs, out) == 2
    assert "--out" in capsys.readouterr().err and not any(out.iterdir())
    assert main(["train", "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "LR and HR missing" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatch_size = 0\n")
    assert main(["train", str(pairs["lr"]), str(pairs["hr"]), "--out", str(tmp_path / "m"),
                 "--config", str(bad), "--quiet"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch_size=0 is invalid" in err
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.checkpoints").exists()
    (tmp_path / "typo.toml").write_text('lr = "x"\nepochs = 3\n')
    assert main(["train", "--config", str(tmp_path / "typo.toml")]) == 2
    assert "unknown keys ['epochs']" in capsys.readouterr().err


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verify-cli")
    lr, hr = tiny_data(3)
    ens = downscale(lr, tiny_model(), 4, num_steps=2, device="cpu")
    ens.to_zarr(root / "ens.zarr", consolidated=False)
    hr[list(OUTPUTS)].to_netcdf(root / "truth.nc")
    return {"root": root, "ens": root / "ens.zarr", "truth": root / "truth.nc"}


def test_verify_json_matches_the_library(stores: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "scores.json"
    args = ["verify", str(stores["ens"]), str(stores["truth"]), "--format", "json"]
    assert main([*args, "--output", str(out)]) == 0
    table = json.loads(out.read_text())
    ens = xr.open_zarr(stores["ens"], consolidated=False)
    truth = xr.open_dataset(stores["truth"])
    for name in OUTPUTS:
        assert table[name]["crps"] == pytest.approx(float(verify.crps(ens[name], truth[name])))
        ssr = float(verify.spread_skill(ens[name], truth[name]))
        assert table[name]["spread_skill"] == pytest.approx(ssr)
        assert 0 <= table[name]["rank_outside"] <= 1 and table[name]["high_k_power_ratio"] > 0
    weighted = tmp_path / "weighted.json"
    assert main([*args, "--area-weights", "--output", str(weighted)]) == 0
    area = np.cos(np.deg2rad(ens["lat"]))
    expected = float(verify.crps(ens["t2m"], truth["t2m"], weights=area))
    assert json.loads(weighted.read_text())["t2m"]["crps"] == pytest.approx(expected)


def test_verify_text_csv_and_figures(
    stores: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib")
    args = ["verify", str(stores["ens"]), str(stores["truth"]), "--variables", "t2m"]
    assert main([*args, "--figures", str(tmp_path / "fig")]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:3] == ["variable", "crps", "crps_fair"]
    assert text.splitlines()[1].startswith("t2m")
    names = sorted(p.name for p in (tmp_path / "fig").iterdir())
    assert names == ["rank_histograms.png", "spectra.png", "spread_skill.png"]
    assert main([*args, "--threshold", "t2m=273", "--figures", str(tmp_path / "fig2")]) == 0
    names = sorted(p.name for p in (tmp_path / "fig2").iterdir())
    assert "reliability.png" in names and "fss.png" in names
    capsys.readouterr()
    assert main([*args, "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("variable,crps,") and rows[1].startswith("t2m,")


def test_verify_climate_matches_the_library(stores: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("xclim")
    out = tmp_path / "climate.json"
    args = ["verify", str(stores["ens"]), str(stores["truth"]), "--climate", "--indices", "TXx"]
    assert main([*args, "--format", "json", "--output", str(out)]) == 0
    table = json.loads(out.read_text())
    ens = xr.open_zarr(stores["ens"], consolidated=False)
    truth = xr.open_dataset(stores["truth"])
    names = list(OUTPUTS)
    sums = verify.accumulate(ens[names], truth[names])
    maps = verify.scores_from_sums(sums, per_point=True, quantiles=[0.01, 0.99])
    pooled = verify.scores_from_sums(sums)
    for k, name in enumerate(names):
        assert table[name]["perkins"] == pytest.approx(float(maps["perkins"][k].mean()))
        q99 = float(maps["quantile_bias"][k].sel(quantile=0.99).mean())
        assert table[name]["q99_bias"] == pytest.approx(q99)
        assert table[name]["ralsd_db"] == pytest.approx(float(pooled["ralsd"][k]))
    index = verify.climate_indices(ens, truth, ["TXx"])
    assert table["index:TXx"]["index_bias"] == pytest.approx(float(index["TXx_bias"].mean()))
    assert main([*args[:3], "--indices", "TXX"]) == 2  # an unknown index: one line, exit 2
    pytest.importorskip("matplotlib")
    figures = tmp_path / "figures"
    assert main([*args[:3], "--climate", "--figures", str(figures), "--out", str(out)]) == 0
    assert sorted(p.name for p in figures.iterdir()) == [
        "band_power.png", "quantile_quantile.png", "rank_histograms.png", "spectra.png",
        "spread_skill.png",
    ]  # fmt: skip


def test_verify_threshold_columns_match_the_library(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "scores.json"
    args = ["verify", str(stores["ens"]), str(stores["truth"]), "--format", "json"]
    assert (
        main([*args, "--threshold", "t2m=270,275", "--windows", "1,3", "--output", str(out)]) == 0
    )
    table = json.loads(out.read_text())
    ens = xr.open_zarr(stores["ens"], consolidated=False)["t2m"]
    truth = xr.open_dataset(stores["truth"])["t2m"]
    for level in (270, 275):
        brier = float(verify.brier_score(ens, truth, level))
        assert table["t2m"][f"brier>={level}"] == pytest.approx(brier, rel=1e-12)
        fss = verify.fss(ens, truth, level, [1, 3]).values
        assert np.isfinite(fss).all()
        assert table["t2m"][f"fss>={level},w3"] == pytest.approx(float(fss[1]), rel=1e-12)
    assert table["u10m"]["brier>=270"] is None  # a column another variable asked for


def test_verify_at_stations(
    stores: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = xr.open_dataset(stores["truth"])
    lat, lon = truth["lat"].values, truth["lon"].values
    points = [(3, 4), (10, 12), (20, 7)]
    stations = xr.Dataset(
        coords={"station": ["A", "B", "C"], "lat": ("station", [lat[p] for p in points]),
                "lon": ("station", [lon[p] for p in points])}
    )  # fmt: skip
    obs = verify.at_stations(truth[list(OUTPUTS)], stations)
    obs.to_netcdf(tmp_path / "stations.nc")
    args = ["verify", str(stores["ens"]), str(tmp_path / "stations.nc"), "--format", "json"]
    assert main([*args, "--threshold", "t2m=273", "--output", str(tmp_path / "s.json")]) == 0
    table = json.loads((tmp_path / "s.json").read_text())
    ens = xr.open_zarr(stores["ens"], consolidated=False)
    at = ens["t2m"].isel(y=xr.DataArray([3, 10, 20]), x=xr.DataArray([4, 12, 7]))
    expected = float(verify.crps(at, truth["t2m"].isel(y=xr.DataArray([3, 10, 20]),
                                                       x=xr.DataArray([4, 12, 7]))))  # fmt: skip
    assert table["t2m"]["crps"] == pytest.approx(expected, rel=1e-5)
    assert table["t2m"]["high_k_power_ratio"] is None and "fss>=273,w1" not in table["t2m"]
    assert main([*args, "--area-weights"]) == 2
    assert "TRUTH holds stations" in capsys.readouterr().err


def test_verify_misuse_is_one_line(
    stores: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["verify", str(stores["ens"]), str(stores["truth"])]
    assert main([*args, "--variables", "precip"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "['precip'] are not variables of both" in err
    assert main(["verify", str(tmp_path / "nope.zarr"), str(stores["truth"])]) == 2
    assert "ENSEMBLE" in capsys.readouterr().err
    assert main([*args, "--threshold", "t2m=warm"]) == 2
    assert "--threshold 't2m=warm' is invalid" in capsys.readouterr().err
    assert main([*args, "--windows", "2"]) == 2
    assert "--windows '2' is invalid" in capsys.readouterr().err


def test_help_lists_the_four_commands_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "train", "downscale", "verify"):
        assert command in out
    for command in ("demo", "train", "downscale", "verify"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert f"examples:\n  xcorrdiff {command} " in capsys.readouterr().out

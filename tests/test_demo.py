"""The demo: scores against known truth, output folder, progress, CLI errors.

Fast: a random-weight model on the 32×48 toy domain, two members, one Euler step. The
packaged model's quality is the ``make demo`` job, not a test.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from conftest import HR_SHAPE, OUTPUTS, tiny_model

import xcorrdiff
from xcorrdiff.cli import main
from xcorrdiff.config import SamplerConfig, StudentConfig
from xcorrdiff.data.regrid import regrid
from xcorrdiff.demo import (
    DEMO_MODEL_DIR,
    MARKER,
    METRICS,
    DemoResult,
    check_criteria,
    demo_scores,
    format_tables,
    high_wavenumber_power,
    run_demo,
)

FACTOR = 4  # the toy domain of test_downscale.tiny_model


def _run(out: Path, **kwargs: object) -> tuple[DemoResult, str]:
    stream = io.StringIO()
    options: dict[str, object] = {
        "model": tiny_model(),
        "n_ensemble": 2,
        "n_times": 1,
        "num_steps": 1,
        "hr_shape": HR_SHAPE,
        "factor": FACTOR,
        "figures": False,
        "progress": False,
        "stream": stream,
        **kwargs,
    }
    result = run_demo(out, **options)  # type: ignore[arg-type]
    return result, stream.getvalue()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    return _run(out, n_times=2, figures=True, progress=True)


# --- scores against known truth -------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> tuple[xr.Dataset, xr.Dataset, xr.Dataset, xr.Dataset]:
    lr, hr = xcorrdiff.tutorial.make_synthetic(n_times=4, hr_shape=(48, 48), factor=4, seed=5)
    names = ["t2m", "u10m"]
    oracle = xcorrdiff.tutorial.oracle_ensemble(lr, n_ensemble=16, seed=2)[names].compute()
    mean = xcorrdiff.tutorial.oracle_mean(lr)[names]
    return lr, hr[names], oracle, mean


def test_oracle_as_forecast_scores_like_the_oracle(synthetic: tuple[xr.Dataset, ...]) -> None:
    lr, truth, oracle, mean = synthetic
    bilinear = regrid(lr[["t2m", "u10m"]], truth)
    scores = demo_scores(truth, oracle, mean, oracle, bilinear, mean)
    assert list(scores["variable"].values) == ["t2m", "u10m"]
    assert set(METRICS) <= set(scores.data_vars)
    np.testing.assert_allclose(scores["crps"], scores["crps_oracle"])
    np.testing.assert_allclose(scores["mae_mean"], scores["mae_oracle_mean"])
    # Samples of the true distribution are calibrated, with the truth's small-scale power;
    # the exact conditional mean beats interpolation and the members beat it.
    assert np.all(np.abs(scores["spread_skill"] - 1) < 0.15)
    assert np.all(np.abs(scores["power_members"] - 1) < 0.25)
    assert np.all(scores["mae_mean"] < scores["mae_bilinear"])
    assert np.all(scores["crps"] < scores["mae_mean"])
    # The toy atmosphere's E[hr|lr] keeps sub-grid terrain detail: most of the truth's
    # small-scale power, so even the ideal regression misses the "below half" criterion.
    assert np.all(scores["power_mean"] > 0.5)
    missed = {(c.variable, c.metric) for c in check_criteria(scores) if not c.passed}
    assert missed == {("t2m", "power_mean"), ("u10m", "power_mean")}


def test_variables_missing_from_the_input_have_no_bilinear_score(
    synthetic: tuple[xr.Dataset, ...],
) -> None:
    lr, truth, oracle, mean = synthetic
    bilinear = regrid(lr[["t2m"]], truth)
    scores = demo_scores(truth, oracle, mean, oracle, bilinear)
    assert np.isnan(float(scores["mae_bilinear"].sel(variable="u10m")))
    metrics = {c.metric for c in check_criteria(scores) if c.variable == "u10m"}
    assert "mae_mean" not in metrics  # no bilinear to beat
    assert "spread_skill" in metrics  # a wind: calibration is checked


def test_high_wavenumber_power_separates_smooth_from_rough() -> None:
    rng = np.random.default_rng(0)
    coords = {"y": np.arange(64) * 2000.0, "x": np.arange(64) * 2000.0}
    rough = xr.DataArray(rng.standard_normal((3, 64, 64)), dims=("time", "y", "x"), coords=coords)
    smooth = rough.rolling(y=5, center=True, min_periods=1).mean()
    smooth = smooth.rolling(x=5, center=True, min_periods=1).mean()
    base = high_wavenumber_power(rough)
    assert base > 0
    assert high_wavenumber_power(2 * rough) == pytest.approx(4 * base)
    assert high_wavenumber_power(smooth) < 0.1 * base
    with pytest.raises(ValueError, match="fraction=0"):
        high_wavenumber_power(rough, fraction=0)


def test_criteria_pass_and_miss_on_their_bounds() -> None:
    values = {
        "mae_bilinear": [1.0, np.nan],
        "mae_mean": [0.9, 0.5],
        "mae_oracle_mean": [0.8, 0.4],
        "crps": [0.95, 0.4],
        "crps_oracle": [0.5, 0.3],
        "spread_skill": [0.5, 1.3],
        "spread_skill_oracle": [1.0, 1.0],
        "power_mean": [0.4, 0.6],
        "power_oracle_mean": [0.8, 0.8],
        "power_members": [1.4, 0.6],
        "power_oracle": [1.0, 1.0],
    }
    scores = xr.Dataset(
        {k: ("variable", np.array(v)) for k, v in values.items()},
        coords={"variable": ["t2m", "u10m"]},
    )
    scores["units"] = ("variable", ["K", "m s-1"])
    result = {(c.variable, c.metric): c.passed for c in check_criteria(scores)}
    assert result == {
        ("t2m", "mae_mean"): True,
        ("t2m", "crps"): False,  # 0.95 is not below the regression mean's 0.9
        ("t2m", "power_mean"): True,
        ("t2m", "power_members"): True,
        ("u10m", "crps"): True,
        ("u10m", "spread_skill"): False,  # 1.3 > 1.25 (t2m's 0.5 is not held to it)
        ("u10m", "power_mean"): False,
        ("u10m", "power_members"): False,  # 0.6 < 1/1.5
    }
    text = format_tables(scores, check_criteria(scores))
    assert "4 of 8 quality criteria pass" in text
    assert "u10m spread_skill (0.8 to 1.25)" in text
    assert text.count("MISS") == 4


# --- the run ----------------------------------------------------------------------------


def test_demo_writes_store_figures_and_summary(
    demo_run: tuple[DemoResult, str],
) -> None:
    result, text = demo_run
    out = result.out
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER, "demo.zarr", "maps.png", "rank_histograms.png", "spectra.png", "spread_skill.png"]
    )
    assert all(p.stat().st_size > 1000 for p in result.figures)
    store = xr.open_zarr(out / "demo.zarr", consolidated=False)
    assert dict(store.sizes) == {"member": 2, "time": 2, "y": HR_SHAPE[0], "x": HR_SHAPE[1]}
    for name in OUTPUTS:
        assert store[name].dims == ("member", "time", "y", "x")
        for suffix in ("mean", "truth", "bilinear"):
            assert store[f"{name}_{suffix}"].dims == ("time", "y", "x")
    # The truth is the held-out data: weather seed 1, not the training seed.
    _, hr = xcorrdiff.tutorial.make_synthetic(n_times=2, hr_shape=HR_SHAPE, factor=FACTOR, seed=1)
    np.testing.assert_array_equal(store["t2m_truth"].values, hr["t2m"].values)
    scores = xr.open_zarr(out / "demo.zarr", group="scores", consolidated=False).load()
    xr.testing.assert_allclose(scores[list(METRICS)], result.scores[list(METRICS)])
    summary = json.loads((out / MARKER).read_text())
    assert summary["settings"]["data_seed"] == 1
    assert summary["scores"]["t2m"]["crps"] == pytest.approx(float(scores["crps"][0]))
    assert len(summary["criteria"]) == len(result.criteria)
    # One table per variable, and the progress bar counted every network evaluation.
    for name in OUTPUTS:
        assert f"\n{name} [" in text
    assert "4/4" in text  # 2 times x 2 members x 1 step
    assert result.report in text


def test_demo_is_reproducible_and_overwrites_its_own_output(
    demo_run: tuple[DemoResult, str], tmp_path: Path
) -> None:
    first, _ = demo_run
    out = Path(shutil.copytree(first.out, tmp_path / "out"))  # the shared run stays as it is
    again, _ = _run(out, n_times=2, overwrite=True)
    xr.testing.assert_allclose(again.scores, first.scores)
    assert not (out / "maps.png").exists()  # replaced whole, figures=False this time
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_demo_samples_with_the_models_sampler(tmp_path: Path) -> None:
    model = copy.copy(tiny_model())
    scales = (1.1,) * len(model.output_names)  # as xcorrdiff.calibrate records them
    model.sampler = SamplerConfig(sampler="heun", num_steps=12, noise_scale=scales)
    result, text = _run(tmp_path / "out", model=model, num_steps=None, progress=True)
    assert "2 members, 12 Heun steps (noise calibrated), weather seed 1" in result.report
    assert "46/46" in text  # 1 time x 2 members x 23 evaluations (Heun: 2 per step, 1 on the last)
    settings = json.loads((result.out / MARKER).read_text())["settings"]
    assert settings["sampler"] == "heun" and settings["num_steps"] == 12
    assert settings["noise_scale"] == list(scales) and settings["student_noise_scale"] is None


def test_demo_puts_the_student_beside_the_teacher(tmp_path: Path) -> None:
    """A model with a distilled student: its members are scored too (same seed), and the
    report ends with both seconds per member; without one, no student rows."""
    model = copy.copy(tiny_model())
    model.student = copy.deepcopy(model.diffusion)
    model.student_config = StudentConfig(sampler=SamplerConfig(num_steps=2, sigma_min=0.5))
    result, _ = _run(tmp_path / "out", model=model, num_steps=4)
    assert "CRPS, distilled student's members" in result.report
    assert "with 4 sampler steps" in result.report
    assert "with the 2-step distilled student" in result.report
    summary = json.loads((result.out / MARKER).read_text())
    assert summary["settings"]["student_steps"] == 2
    assert summary["settings"]["noise_scale"] is None  # not calibrated: no suffix either
    assert "(noise calibrated)" not in result.report
    assert summary["scores"]["u10m"]["crps_student"] > 0
    assert "downscale (student)" in summary["seconds"]
    plain, _ = _run(tmp_path / "plain", num_steps=4)
    assert "student" not in plain.report
    assert np.isnan(plain.scores["crps_student"]).all()


def test_existing_output_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"already exists.*overwrite"):
        _run(out)
    with pytest.raises(FileExistsError, match="did not write"):
        _run(out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        _run(file, overwrite=True)


def test_nothing_is_left_behind_on_error(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=r"synthetic domain of hr_shape=\(32, 32\).* is not on the model.s HR grid \(32, 48\): its sizes",
    ):
        _run(tmp_path / "out", hr_shape=(32, 32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_ensemble": 1}, "n_ensemble=1 is invalid; expected an integer >= 2"),
        ({"n_times": 0}, "n_times=0 is invalid"),
        ({"num_steps": 0}, "num_steps=0 is invalid"),
        ({"seed": -1}, "seed=-1 is invalid"),
    ],
)
def test_bad_counts_are_refused(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _run(tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_packaged_demo_model_loads_by_name() -> None:
    model = xcorrdiff.load_model("demo")
    assert model.output_names == ("t2m", "u10m", "v10m", "precip")
    assert model.shape == (128, 128) and model.diffusion is not None
    # What examples/train_demo_model.py makes: scaled residuals, and the sampler chosen by
    # docs/performance.md's table: 4 DPM-Solver++(2M) steps from 80, its initial noise
    # calibrated by xcorrdiff.calibrate on another weather seed (its student's is not).
    assert model.residual_scale is not None and set(model.residual_scale) == set(model.output_names)
    chosen = model.provenance["calibration"]["chosen"]
    scales = tuple(chosen[n] for n in model.output_names)
    assert model.sampler == SamplerConfig(
        sampler="dpmpp_2m", num_steps=4, sigma_max=80.0, noise_scale=scales
    )
    assert model.student_config is not None and model.student_config.sampler.noise_scale is None
    size = sum(p.stat().st_size for p in DEMO_MODEL_DIR.iterdir())
    assert size <= 20e6, f"the packaged model is {size / 1e6:.1f} MB; the limit is 20 MB"


# --- command line -----------------------------------------------------------------------


def test_cli_members_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--members", "0", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert (
        "xcorrdiff demo: error: argument --n-ensemble/--members: expected an integer >= 2, got '0'"
        in err
    )
    assert len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["demo", "--out", str(blocker / "out"), "--quiet"]) == 2
    assert "is not writable" in capsys.readouterr().err


def test_cli_existing_out_asks_for_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "out").mkdir()
    assert main(["demo", "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--overwrite" in err


def test_cli_bad_device(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["demo", "--out", str(out), "--device", "tpu", "--quiet"]) == 2
    assert "device='tpu' is invalid" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_lists_demo() -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0


def test_downscale_resolves_the_packaged_demo_model_by_name() -> None:
    from xcorrdiff.inference.handles import resolve_model
    from xcorrdiff.model import DEMO_MODEL_DIR

    ref = resolve_model("demo")
    assert ref.path is not None
    assert Path(ref.path) == DEMO_MODEL_DIR

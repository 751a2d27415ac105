"""Distillation of the diffusion network into a few-step student (xcorrdiff.train.distill):
its levels, its targets, the stage, the bundle and sampling with it."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_data, tiny_model

import xcorrdiff.verify as xv
from xcorrdiff.config import NetworkConfig, SamplerConfig, StudentConfig
from xcorrdiff.diffusion import edm_sigmas, euler
from xcorrdiff.inference.api import downscale
from xcorrdiff.inference.calibrate import calibrate
from xcorrdiff.model import CorrDiffModel, load_model
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.distillation import distill, step_targets, student_levels, teacher_states

KW = {"device": "cpu"}


def _config(folder: Path | None = None) -> TrainConfig:
    net = {"model_channels": 4, "channel_mult": (1, 2), "num_blocks": 1}
    return TrainConfig(
        regression=NetworkConfig(**net, embedding_type="zero"),  # type: ignore[arg-type]
        diffusion=NetworkConfig(**net),  # type: ignore[arg-type]
        patch_shape=(16, 16), patches_per_sample=2, batch_size=2, learning_rate=1e-3,
        lr_rampup=2, ema_halflife=2, validation_fraction=0.0, seed=5,
        checkpoint_dir=None if folder is None else str(folder), device="cpu",
    )  # fmt: skip


@pytest.fixture(scope="module")
def student_model(tmp_path_factory: pytest.TempPathFactory) -> CorrDiffModel:
    """The tiny random model with a 2-step student distilled for 8 samples."""
    model = copy.deepcopy(tiny_model())
    lr, hr = tiny_data()
    folder = tmp_path_factory.mktemp("student")
    return distill(model, lr, hr, 2, config=_config(folder), duration=8, progress=False)


@pytest.mark.parametrize(("n", "steps"), [(4, 1), (4, 2), (12, 3), (12, 4), (12, 6)])
def test_the_student_levels_are_every_rth_teacher_level(n: int, steps: int) -> None:
    teacher = SamplerConfig(sampler="dpmpp_2m", num_steps=n, sigma_max=80.0)
    own = student_levels(teacher, steps)
    assert (own.sampler, own.num_steps, own.sigma_max) == ("euler", steps, 80.0)
    levels = edm_sigmas(steps, sigma_min=own.sigma_min, sigma_max=80.0).numpy()
    full = edm_sigmas(n, sigma_min=teacher.sigma_min, sigma_max=80.0).numpy()
    np.testing.assert_allclose(levels, full[:: n // steps], rtol=1e-12)


@pytest.mark.parametrize("steps", [0, 3, 4, 5])
def test_a_step_count_that_does_not_divide_the_teachers_is_refused(steps: int) -> None:
    with pytest.raises(ValueError, match=f"steps={steps} is invalid for a teacher of 4 steps"):
        student_levels(SamplerConfig(sampler="euler", num_steps=4), steps)


@pytest.mark.parametrize(("sampler", "n", "steps"), [("euler", 6, 2), ("dpmpp_2m", 4, 2),
                                                     ("dpmpp_2m", 4, 1), ("heun", 12, 3)])  # fmt: skip
def test_a_student_that_meets_its_targets_lands_on_the_teachers_sample(
    sampler: str, n: int, steps: int
) -> None:
    """Gaussian data N(0.3, 0.5²) with its exact denoiser as the teacher: a student whose
    denoised fields are the targets, stepped by Euler on its own levels, retraces the
    teacher's trajectory and ends on its sample."""

    def teacher(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return 0.3 + (x - 0.3) * 0.25 / (sigma**2 + 0.25)

    g = torch.Generator().manual_seed(0)
    x = torch.randn((3, 2, 5, 5), generator=g, dtype=torch.float64) * 80.0
    sigmas = edm_sigmas(n, sigma_max=80.0)
    states = teacher_states(teacher, x, sigmas, sampler, n // steps)
    levels = sigmas[:: n // steps].tolist()
    targets = step_targets(states, levels)
    assert len(states) == steps + 1 and len(targets) == steps
    calls = iter(targets)
    own = student_levels(SamplerConfig(sampler=sampler, num_steps=n, sigma_max=80.0), steps)
    schedule = edm_sigmas(steps, sigma_min=own.sigma_min, sigma_max=80.0)
    landed = euler(lambda state, sigma: next(calls), x, schedule)
    torch.testing.assert_close(landed, states[-1], rtol=1e-9, atol=1e-9)
    assert float(states[-1].std()) > 0.2  # spread kept (the data's is 0.5), not collapsed


def test_the_student_is_saved_loaded_and_sampled(
    student_model: CorrDiffModel, tmp_path: Path
) -> None:
    model = student_model
    assert model.student is not None and model.student_config is not None
    assert model.student_config.sampler.num_steps == 2 and not model.student_config.default
    assert model.provenance["student"]["samples"] == 8
    assert "student" in repr(model)
    path = model.save(tmp_path / "m")
    assert (path / "student.safetensors").is_file()
    back = load_model(path, device="cpu")
    assert back.student_config == model.student_config
    for key, value in model.student.state_dict().items():
        torch.testing.assert_close(back.student.state_dict()[key], value, rtol=0, atol=0)
    lr, _ = tiny_data(3)
    ens = downscale(lr, model, 3, student=True, seed=4, **KW)
    again = downscale(lr, path, 3, student=True, seed=4, **KW)
    np.testing.assert_allclose(again["t2m"].values, ens["t2m"].values, rtol=1e-6, atol=1e-6)
    assert ens.attrs["student"] and ens.attrs["num_steps"] == 2
    assert ens.attrs["sampler_source"] == "model (its distilled student)"
    teacher = downscale(lr, model, 3, seed=4, **KW)
    assert not teacher.attrs["student"]
    assert float(np.abs(teacher["t2m"].values - ens["t2m"].values).max()) > 1e-4


def test_student_members_are_per_time_and_member_whatever_the_chunking(
    student_model: CorrDiffModel,
) -> None:
    """Row by row (member_batch_size=1); equal to float32 rounding (the regression mean's
    batch of times differs)."""
    lr, _ = tiny_data(4)
    kw = {**KW, "student": True, "seed": 1, "member_batch_size": 1}
    whole = downscale(lr, student_model, 3, **kw)
    chunked = downscale(lr.chunk(time=1), student_model, 3, **kw)
    one = downscale(lr.isel(time=[2]), student_model, 3, **kw)
    np.testing.assert_allclose(chunked["u10m"].values, whole["u10m"].values, rtol=1e-5)
    np.testing.assert_allclose(one["u10m"].values[:, 0], whole["u10m"].values[:, 2], rtol=1e-5)


def test_the_default_flag_makes_the_student_sample_unless_the_call_sets_the_sampler(
    student_model: CorrDiffModel,
) -> None:
    model = copy.copy(student_model)
    model.student_config = dataclasses.replace(student_model.student_config, default=True)
    lr, _ = tiny_data(2)
    assert downscale(lr, model, 2, **KW).attrs["student"]
    assert not downscale(lr, model, 2, student=False, **KW).attrs["student"]
    assert not downscale(lr, model, 2, sampler="euler", **KW).attrs["student"]


def test_distillation_resumes_from_its_checkpoint(
    student_model: CorrDiffModel, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Called again on the finished checkpoint, the stage returns the same student."""
    folder = Path(student_model.provenance["student"]["config"]["runtime"]["checkpoint_dir"])
    assert (folder / "student-checkpoint.safetensors").is_file()
    lr, hr = tiny_data()
    again = distill(
        copy.deepcopy(tiny_model()), lr, hr, 2, config=_config(folder), duration=8,
        progress=False,
    )  # fmt: skip
    for key, value in student_model.student.state_dict().items():
        assert torch.equal(again.student.state_dict()[key], value), key


def test_sampling_options_beside_the_student_are_refused(student_model: CorrDiffModel) -> None:
    lr, _ = tiny_data(1)
    with pytest.raises(ValueError, match=r"\['num_steps', 'sampler'\] may not be passed"):
        downscale(lr, student_model, 2, student=True, sampler="euler", num_steps=4, **KW)
    with pytest.raises(ValueError, match="this model has no distilled student"):
        downscale(lr, tiny_model(), 2, student=True, **KW)


def test_a_stochastic_teacher_or_no_diffusion_network_is_refused() -> None:
    lr, hr = tiny_data()
    model = copy.copy(tiny_model())
    model.sampler = SamplerConfig(sampler="ancestral", num_steps=4)
    with pytest.raises(ValueError, match="'ancestral' is stochastic"):
        distill(model, lr, hr, 2, config=_config(), duration=2, progress=False)
    model = copy.copy(tiny_model())
    model.diffusion = None
    with pytest.raises(ValueError, match="no diffusion network to distil"):
        distill(model, lr, hr, 2, config=_config(), duration=2, progress=False)


def test_a_student_without_its_settings_is_refused() -> None:
    base = tiny_model()
    fields = {k: getattr(base, k) for k in ("regression", "diffusion", "grid", "invariants")}
    with pytest.raises(ValueError, match="student and student_config go together"):
        CorrDiffModel(
            **fields, input_variables=base.input_variables,
            output_variables=base.output_variables, input_normalizer=base.input_normalizer,
            output_normalizer=base.output_normalizer, student=copy.deepcopy(base.diffusion),
        )  # fmt: skip
    with pytest.raises(ValueError, match="a student samples with Euler steps"):
        StudentConfig(sampler=SamplerConfig(sampler="dpmpp_2m"))


def test_calibration_calibrates_the_teacher_even_where_the_student_is_the_default(
    student_model: CorrDiffModel,
) -> None:
    """calibrate sets model.sampler's factor, so it scores the teacher's members; with
    factor 1 its CRPS is the plain teacher's, not the student's."""
    model = copy.copy(student_model)
    model.student_config = dataclasses.replace(student_model.student_config, default=True)
    lr, hr = tiny_data(2)
    out = calibrate(model, lr, hr, scales=(1.0,), n_ensemble=2, device="cpu")
    teacher = downscale(lr, model, 2, student=False, **KW)
    expected = float(xv.crps(teacher["t2m"], hr["t2m"], fair=True))
    assert out.provenance["calibration"]["crps_fair"]["t2m"][0] == pytest.approx(expected)


def test_bad_arguments_to_distill_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    lr, hr = tiny_data()
    folder = tmp_path / "checkpoints"
    config = _config(folder)
    with pytest.raises(TypeError, match=r"model must be a CorrDiffModel, got str"):
        distill("model_dir", lr, hr, 2, config=config, progress=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"steps must be an int, got float"):
        distill(tiny_model(), lr, hr, 2.0, config=config, progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"steps=3 is invalid for a teacher of 4 steps"):
        distill(tiny_model(), lr, hr, 3, config=config, progress=False)
    assert not folder.exists()


def test_student_and_sampler_settings_are_checked() -> None:
    with pytest.raises(TypeError, match=r"sampler must be a SamplerConfig, got dict"):
        StudentConfig(sampler={"sampler": "euler"})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"s_churn=0.1 does not apply to sampler='dpmpp_2m'"):
        SamplerConfig(sampler="dpmpp_2m", s_churn=0.1)
    with pytest.raises(ValueError, match=r"s_churn=-1"):
        SamplerConfig(sampler="heun", num_steps=12, s_churn=-1.0)
    stored = SamplerConfig(sampler="heun", num_steps=12, s_churn=0.0)
    assert SamplerConfig.from_dict(stored.to_dict()) == stored
    assert "s_churn" not in SamplerConfig().to_dict()  # older models' config.json unchanged

"""Distillation of the residual diffusion network into a few-step student.

The teacher is the model's diffusion network with its own deterministic sampler
(``model.sampler``: Euler, Heun without churn, or DPM-Solver++(2M)) on its Karras schedule
of ``N`` levels. The student, a copy of the teacher's network trained further, takes
``steps = N / r`` Euler steps on every ``r``-th of those levels — again a Karras schedule
(the levels are evenly spaced in ``σ^(1/ρ)``, so every ``r``-th of them are too), ending at
the teacher's level ``N − r`` and then 0. One Euler step of the student from ``s_k`` to
``s_{k+1}`` is trained to land where ``r`` steps of the teacher land from the same state:
the teacher's trajectory from each sample's noise is recorded at the student's levels
``x_0, x_1, …, x_K`` and the student's denoiser at ``(x_k, s_k)`` is fitted to the one
output that makes its Euler (= DDIM) step reach ``x_{k+1}``,

.. math::

    D^\\star_k = \\frac{x_{k+1} - (s_{k+1}/s_k)\\, x_k}{1 - s_{k+1}/s_k}
    \\qquad (D^\\star_{K-1} = x_K \\text{ for the last step, to } \\sigma = 0),

with the mean squared error in the network's normalized residual units, on the diffusion
stage's training patches and conditions. This is one round of progressive distillation
(Salimans & Ho 2022), taken from ``N`` teacher steps to ``N / r`` at once, on the
teacher's own trajectories (Luhman & Luhman 2021 for one step) rather than on noised data:
the targets are a deterministic function of the noise and the condition, so the student
learns a map, not an average, and keeps the teacher's spread. Why not consistency
distillation: on the known-truth data the teacher needs only 4 evaluations, so a teacher
trajectory costs little and the direct targets are exact, while consistency training's
targets come from the student itself.

The stage runs in the shared loop (:func:`~xcorrdiff.train.loop.run_stage`): resumable
from ``student-checkpoint.safetensors`` in ``config.checkpoint_dir``, with the EMA and the
learning-rate schedule of ``config``.

References
----------
Salimans, T., Ho, J. (2022). Progressive distillation for fast sampling of diffusion
models. ICLR.

Luhman, E., Luhman, T. (2021). Knowledge distillation in iterative generative models for
improved sampling speed. arXiv:2101.02388.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import xarray as xr

from xcorrdiff._model_dir import state_digest
from xcorrdiff.config import SamplerConfig, StudentConfig
from xcorrdiff.diffusion import denoise, edm_sigmas, masked_mean, samplers
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.train.config import TrainConfig
from xcorrdiff.train.data import check_shape, crop_patch
from xcorrdiff.train.distributed import init_distributed
from xcorrdiff.train.loop import run_stage
from xcorrdiff.train.parts import model_parts, stage_fingerprint, stage_provenance, train_batches
from xcorrdiff.train.stages import DiffusionStage, model_data
from xcorrdiff.train.streams import stream_seed

__all__ = ["distill", "step_targets", "student_levels", "teacher_states"]

#: The teacher samplers a student can be distilled from (deterministic ones).
TEACHERS = ("euler", "heun", "dpmpp_2m")


def student_levels(teacher: SamplerConfig, steps: int) -> SamplerConfig:
    """The student's sampler: Euler on every ``r``-th of the teacher's ``N`` levels,
    ``r = N / steps`` (the Karras schedule from ``sigma_max`` to the teacher's level
    ``N − r``).

    Raises
    ------
    ValueError
        ``steps`` does not divide the teacher's step count, or is not below it.
    """
    n = teacher.num_steps
    if steps < 1 or steps >= n or n % steps:
        raise ValueError(
            f"steps={steps!r} is invalid for a teacher of {n} steps; expected a divisor of "
            f"{n} below it (each student step replaces {n}/steps teacher steps); set "
            "model.sampler.num_steps to a multiple of steps first"
        )
    levels = edm_sigmas(
        n, sigma_min=teacher.sigma_min, sigma_max=teacher.sigma_max, rho=teacher.rho
    ).tolist()
    low = levels[n - n // steps] if steps > 1 else teacher.sigma_min
    return SamplerConfig(
        sampler="euler", num_steps=steps, sigma_min=low, sigma_max=teacher.sigma_max,
        rho=teacher.rho, noise_scale=teacher.noise_scale,
    )  # fmt: skip


class _DistillStage:
    """The loss of the student on the teacher's trajectories, on the diffusion stage's
    patches and conditions."""

    def __init__(
        self, source: DiffusionStage, teacher: torch.nn.Module, sampler: SamplerConfig, steps: int
    ) -> None:
        self.source, self.teacher, self.steps = source, teacher, steps
        self.sampler = sampler
        device = source.device
        self.sigmas = edm_sigmas(
            sampler.num_steps, sigma_min=sampler.sigma_min, sigma_max=sampler.sigma_max,
            rho=sampler.rho, net=teacher, dtype=torch.float32, device=device,
        )  # fmt: skip
        self.stride = sampler.num_steps // steps
        self.levels = self.sigmas[:: self.stride].tolist()  # the student's, ending in 0
        self.noise = torch.Generator(device=device).manual_seed(
            stream_seed(source.config.runtime.seed, "student.noise")
        )
        scale = sampler.noise_scale
        self.noise_scale = None if scale is None else torch.tensor(scale, device=device)

    def loss(self, student: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        residual, condition, mask = self.source.patches(batch)
        x = torch.randn(residual.shape, generator=self.noise, device=residual.device)
        x = x * self.sigmas[0]
        if self.noise_scale is not None:
            x = x * self.noise_scale.reshape(1, -1, 1, 1)

        def teacher(state: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return denoise(self.teacher, state, sigma.expand(state.shape[0]), condition)

        states = teacher_states(teacher, x, self.sigmas, self.sampler.sampler, self.stride)
        total = residual.new_zeros(())
        for k, target in enumerate(step_targets(states, self.levels)):
            sigma = residual.new_full((residual.shape[0],), self.levels[k])
            error = (denoise(student, states[k], sigma, condition) - target) ** 2
            total = total + masked_mean(error, mask)
        return total / self.steps


def teacher_states(
    denoiser: samplers.Denoiser, x: torch.Tensor, sigmas: torch.Tensor, sampler: str, stride: int
) -> list[torch.Tensor]:
    """The teacher's trajectory from ``x`` at every ``stride``-th level of ``sigmas`` (the
    student's levels): ``x`` itself, then the state after each ``stride`` steps; the last is
    the teacher's sample."""
    states = [x]

    def record(info: Mapping[str, Any]) -> None:
        if (info["i"] + 1) % stride == 0:
            states.append(info["x"])

    with torch.no_grad():
        getattr(samplers, sampler)(denoiser, x, sigmas, callback=record)
    return states


def step_targets(states: list[torch.Tensor], levels: list[float]) -> list[torch.Tensor]:
    """The denoised field ``D*_k`` whose Euler step from ``(states[k], levels[k])`` lands on
    ``states[k + 1]`` at ``levels[k + 1]`` (0 after the last level): the student's targets."""
    targets = []
    for k in range(len(states) - 1):
        ratio = (levels[k + 1] if k + 1 < len(levels) else 0.0) / levels[k]
        targets.append((states[k + 1] - ratio * states[k]) / (1.0 - ratio))
    return targets


def distill(
    model: CorrDiffModel,
    lr: xr.Dataset,
    hr: xr.Dataset,
    steps: int = 2,
    *,
    config: TrainConfig | None = None,
    duration: int | None = None,
    default: bool = False,
    progress: bool = True,
) -> CorrDiffModel:
    """Distil the model's diffusion network into a ``steps``-evaluation student.

    See the module docstring for the method. The teacher is ``model.sampler`` (a
    deterministic sampler whose step count ``steps`` divides).

    Parameters
    ----------
    model : CorrDiffModel
        A model with a diffusion network (trained or loaded).
    lr, hr : xarray.Dataset
        Training data, as for :func:`~xcorrdiff.train.stages.fit_diffusion` (only the
        conditions are used: the student learns from the teacher, not from ``hr``'s values).
    steps : int, default 2
        The student's network evaluations per sample.
    config : TrainConfig, optional
        Optimizer, schedule, patches, seed and ``checkpoint_dir`` (the stage writes
        ``student-checkpoint.safetensors`` there and resumes from it). Default
        ``TrainConfig(preset="tiny")``.
    duration : int, optional
        Training samples; default ``config``'s ``diffusion_duration``.
    default : bool, default False
        Make the student the model's default sampler (``downscale(student=None)``).
    progress : bool, default True
        Show a progress bar.

    Returns
    -------
    CorrDiffModel
        A new bundle: ``model`` with ``student`` (the EMA of the trained copy) and
        ``student_config``; ``provenance["student"]`` records the teacher, the levels and
        the training.

    Raises
    ------
    ValueError
        No diffusion network; a stochastic teacher sampler; ``steps`` not a divisor of the
        teacher's steps below it; bad data (as for ``fit_diffusion``).
    """
    config = config if config is not None else TrainConfig()
    teacher_sampler = _check(model, steps)
    sampler = student_levels(teacher_sampler, steps)
    patch = check_shape(config, model.shape)
    data = model_data(model, lr, hr, config)
    patch = crop_patch(config, patch, model.shape, len(data.train))
    parallel = init_distributed(config.runtime.device)
    assert model.diffusion is not None  # checked above
    teacher = model.diffusion.to(parallel.device).eval().requires_grad_(False)
    if model.regression is None:
        raise ValueError(
            "model has no regression stage (a rectified-flow DiT that generates whole fields); "
            "xcorrdiff does not train such models further"
        )
    regression = model.regression.to(parallel.device).eval().requires_grad_(False)
    source = DiffusionStage(
        data, config, parallel.device, regression, patch, model.regression_grid(),
        model.regression_skip(),
    )  # fmt: skip
    stage = _DistillStage(source, teacher, teacher_sampler, steps)
    student = copy.deepcopy(teacher).requires_grad_(True)
    norms = {"input": model.input_normalizer, "output": model.output_normalizer}
    parts = {
        **model_parts(model, data, student, norms),
        "teacher_digest": state_digest(teacher),
        "teacher_sampler": teacher_sampler.to_dict(),
        "student_steps": steps,
    }
    seed = config.runtime.seed
    total = config.schedule.diffusion_duration if duration is None else duration
    result = run_stage(
        stage="student", net=student, loss_fn=stage.loss,
        batches=train_batches(
            data, config, parallel, patch_shape=patch, seed=stream_seed(seed, "student.batches")
        ),
        config=config, duration=total, fingerprint=stage_fingerprint("student", config, parts),
        device=parallel.device, generators={"noise": stage.noise},
        patches_per_sample=config.data.patches_per_sample, progress=progress,
        seed=stream_seed(seed, "student.dropout"),
    )  # fmt: skip
    out = copy.copy(model)
    out.student = result.ema.eval().requires_grad_(False)
    out.student_config = StudentConfig(sampler=sampler, default=default)
    out.provenance = {
        **model.provenance,
        "student": {
            **stage_provenance(data, result),
            "teacher_sampler": teacher_sampler.to_dict(),
            "steps": steps,
            "levels": stage.levels,
            "config": config.to_dict(),
        },
    }
    return out


def _check(model: CorrDiffModel, steps: int) -> SamplerConfig:
    """The teacher's sampler, checked; ``steps`` checked by :func:`student_levels`."""
    if not isinstance(model, CorrDiffModel):
        raise TypeError(f"model must be a CorrDiffModel, got {type(model).__name__}")
    if model.diffusion is None:
        raise ValueError("model has no diffusion network to distil; train it with fit first")
    teacher = model.sampler
    if teacher.sampler not in TEACHERS:
        raise ValueError(
            f"model.sampler.sampler={teacher.sampler!r} is stochastic; a student is distilled "
            f"from a deterministic teacher, one of {list(TEACHERS)}: set model.sampler first"
        )
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise TypeError(f"steps must be an int, got {type(steps).__name__}")
    return teacher

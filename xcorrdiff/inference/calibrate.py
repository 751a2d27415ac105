"""Calibration of a model's ensemble spread on held-out data.

An under-dispersed ensemble (spread/skill below 1) is common after short training: the
denoiser's posterior is too narrow. :func:`calibrate` (also ``xcorrdiff.calibrate``;
torch-free at import, like :mod:`xcorrdiff.inference.api`) widens or narrows it by a
sampling temperature, a factor on each output channel's initial noise
(:attr:`~xcorrdiff.config.SamplerConfig.noise_scale`): for Gaussian data a factor τ
scales the members' departures from their mean by τ exactly (the ODE's map is affine), and
on a trained network it widens the ensemble and restores fine-scale power. The factor is
chosen per output variable as the candidate of least fair CRPS on the held-out times; the
returned model carries it and a record of the search in ``provenance["calibration"]``.

The stochastic modes do not widen an ensemble: on the demo model (12 steps, 8 members)
churn and re-noising *lower* spread/skill (t2m 0.78 → 0.74 with ``s_churn=12``, → 0.71 with
``ancestral``), so they are not the knob; docs/performance.md has the measurements.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from xcorrdiff._checks import check_int

if TYPE_CHECKING:
    from xcorrdiff.model import CorrDiffModel

__all__ = ["SCALES", "calibrate"]

#: The candidate factors of :func:`calibrate`.
SCALES: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0)


def calibrate(
    model: CorrDiffModel,
    lr: xr.Dataset,
    hr: xr.Dataset,
    *,
    scales: Sequence[float] = SCALES,
    n_ensemble: int = 16,
    seed: int = 0,
    student: bool = False,
    **downscale_options: Any,
) -> CorrDiffModel:
    """A copy of ``model`` whose sampler's ``noise_scale`` minimizes the fair CRPS on
    ``(lr, hr)``, held-out data the model was not trained on.

    Parameters
    ----------
    model : CorrDiffModel
        A model with a diffusion network; its own sampler is calibrated.
    lr, hr : xarray.Dataset
        Held-out inputs and truth (``hr`` holds the model's output variables on its grid,
        at the times of ``lr``).
    scales : sequence of float
        Candidate factors (positive); 1 is the uncalibrated model.
    n_ensemble : int, default 16
        Members per candidate (at least 2).
    seed : int, default 0
        Seed of the members, the same for every candidate.
    student : bool, default False
        Calibrate the distilled student's sampler (``model.student_config.sampler``)
        instead of the model's own.
    **downscale_options
        Passed to :func:`~xcorrdiff.inference.api.downscale` (``device``,
        ``member_batch_size``, ``patch_shape``...; not the sampler, which stays the model's).

    Returns
    -------
    CorrDiffModel
        The same networks, with ``sampler.noise_scale`` set per output variable and
        ``provenance["calibration"]``: the candidates, each variable's fair CRPS and
        spread/skill per candidate, the chosen factors, the times and members used (with
        ``student=True``: ``student_config.sampler.noise_scale`` and
        ``provenance["student_calibration"]``).

    Raises
    ------
    ValueError
        No diffusion network, bad candidates or ensemble size, a sampler option among
        ``downscale_options``, or ``hr`` lacking an output variable.
    """
    candidates = _check(model, hr, scales, n_ensemble, downscale_options, student)
    from xcorrdiff import verify

    names = list(model.output_names)
    crps: dict[str, list[float]] = {n: [] for n in names}
    ratio: dict[str, list[float]] = {n: [] for n in names}
    for scale in candidates:
        trial = _with_scale(model, (scale,) * len(names), student)
        ens = _members(trial, lr, n_ensemble, seed, downscale_options, student)
        truth = hr.sel(time=ens["time"]) if "time" in ens.dims else hr
        for n in names:
            crps[n].append(float(verify.crps(ens[n], truth[n], fair=True)))
            ratio[n].append(float(verify.spread_skill(ens[n], truth[n])))
    chosen = tuple(candidates[int(np.argmin(crps[n]))] for n in names)
    result = _with_scale(model, chosen, student)
    result.provenance = {
        **model.provenance,
        "student_calibration" if student else "calibration": {
            "parameter": "noise_scale",
            "candidates": list(candidates),
            "crps_fair": crps,
            "spread_skill": ratio,
            "chosen": dict(zip(names, chosen, strict=True)),
            "times": int(lr.sizes.get("time", 1)),
            "n_ensemble": n_ensemble,
            "seed": seed,
        },
    }
    return result


def _with_scale(model: CorrDiffModel, scale: tuple[float, ...], student: bool) -> CorrDiffModel:
    """A shallow copy of ``model`` whose (student's) sampler has the noise factors ``scale``."""
    trial = copy.copy(model)
    if student:
        assert model.student_config is not None  # checked by _check
        sampler = dataclasses.replace(model.student_config.sampler, noise_scale=scale)
        trial.student_config = dataclasses.replace(model.student_config, sampler=sampler)
    else:
        trial.sampler = dataclasses.replace(model.sampler, noise_scale=scale)
    return trial


def _check(
    model: CorrDiffModel,
    hr: xr.Dataset,
    scales: Sequence[float],
    n_ensemble: int,
    options: dict[str, Any],
    student: bool,
) -> list[float]:
    if model.diffusion is None:
        raise ValueError("model has no diffusion network to calibrate; train it with fit first")
    if not isinstance(student, bool):
        raise ValueError(f"student={student!r} is invalid; expected True or False")
    if student and model.student is None:
        raise ValueError(
            "student=True but the model has no distilled student; train one with "
            "xcorrdiff.train.distill first, or calibrate the model's own sampler"
        )
    check_int("n_ensemble", n_ensemble, minimum=2)
    candidates = [float(s) for s in scales]
    if not candidates or not all(np.isfinite(s) and s > 0 for s in candidates):
        raise ValueError(f"scales={list(scales)!r} is invalid; expected positive finite numbers")
    sampler_options = sorted(
        set(options)
        & {"sampler", "num_steps", "s_churn", "renoise", "student", "n_ensemble", "seed"}
    )
    if sampler_options:
        raise ValueError(
            f"{sampler_options} may not be passed to calibrate: it calibrates the model's own "
            f"sampler ({model.sampler.sampler}, {model.sampler.num_steps} steps); set "
            "model.sampler first to calibrate another"
        )
    missing = [n for n in model.output_names if n not in hr.data_vars]
    if missing:
        raise ValueError(
            f"hr lacks the model's output variables {missing}; it has {list(hr.data_vars)}"
        )
    return candidates


def _members(
    trial: CorrDiffModel,
    lr: xr.Dataset,
    n_ensemble: int,
    seed: int,
    options: dict[str, Any],
    student: bool,
) -> xr.Dataset:
    from xcorrdiff.inference.api import downscale

    # the sampler calibrated is the one that samples, whichever is the model's default
    return downscale(lr, trial, n_ensemble, seed=seed, student=student, **options).compute()

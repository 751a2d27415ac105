"""Calibration of a model's ensemble spread on held-out data.

An under-dispersed ensemble (spread/skill below 1) is common after short training: the
denoiser's posterior is too narrow. :func:`calibrate` (also ``xcorrdiff.calibrate``;
torch-free at import, like :mod:`xcorrdiff.inference.api`) widens or narrows it by a
sampling temperature, a factor on each output channel's initial noise
(:attr:`~xcorrdiff.config.SamplerConfig.noise_scale`): for Gaussian data a factor τ
scales the members' departures from their mean by τ exactly (the ODE's map is affine), and
on a trained network it widens the ensemble and restores fine-scale power. The factor is
chosen per output variable from the fair CRPS of each candidate on the held-out times,
by the one-standard-error rule (``rule="one_se"``, the default): of the candidates whose
fair CRPS lies within one standard error of the least, the one nearest 1 (the least
change). The standard error is that of the mean paired difference from the best
candidate over blocks of the held-out data (each time cut into 4 × 4 spatial blocks):
near its minimum the CRPS curve is flat, and on a few held-out times its argmin follows
their weather rather than the model, so the least CRPS alone (``rule="least_crps"``)
over-widens the ensemble on the days after (docs/performance.md, "Calibration on real
data"). The returned model carries the factor and a record of the search in
``provenance["calibration"]``.

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

__all__ = ["RULES", "SCALES", "calibrate", "choose", "with_noise_scale"]

#: The candidate factors of :func:`calibrate`.
SCALES: tuple[float, ...] = (0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0)
#: How :func:`calibrate` chooses among the candidates.
RULES: tuple[str, ...] = ("one_se", "least_crps")
#: Blocks per spatial dimension of each held-out time, the units of the standard error.
BLOCKS = 4


def calibrate(
    model: CorrDiffModel,
    lr: xr.Dataset,
    hr: xr.Dataset,
    *,
    scales: Sequence[float] = SCALES,
    n_ensemble: int = 16,
    seed: int = 0,
    student: bool = False,
    rule: str = "one_se",
    **downscale_options: Any,
) -> CorrDiffModel:
    """A copy of ``model`` whose sampler's ``noise_scale`` is chosen by the fair CRPS on
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
    rule : {"one_se", "least_crps"}, default "one_se"
        ``"one_se"``: the candidate nearest 1 (in ratio) among those whose fair CRPS is
        within one standard error of the least; ``"least_crps"``: the least fair CRPS.
    **downscale_options
        Passed to :func:`~xcorrdiff.inference.api.downscale` (``device``,
        ``member_batch_size``, ``patch_shape``...; not the sampler, which stays the model's).

    Returns
    -------
    CorrDiffModel
        The same networks, with ``sampler.noise_scale`` set per output variable and
        ``provenance["calibration"]``: the candidates, each variable's fair CRPS and
        spread/skill per candidate, each candidate's standard error of its difference from
        the least, the rule, the chosen factors, the times and members used (with
        ``student=True``: ``student_config.sampler.noise_scale`` and
        ``provenance["student_calibration"]``).

    Raises
    ------
    ValueError
        No diffusion network, bad candidates, ensemble size or rule, a sampler option among
        ``downscale_options``, or ``hr`` lacking an output variable.
    """
    candidates = _check(model, hr, scales, n_ensemble, downscale_options, student, rule)
    from xcorrdiff import verify

    names = list(model.output_names)
    crps: dict[str, list[float]] = {n: [] for n in names}
    ratio: dict[str, list[float]] = {n: [] for n in names}
    blocks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for scale in candidates:
        trial = with_noise_scale(model, (scale,) * len(names), student)
        ens = _members(trial, lr, n_ensemble, seed, downscale_options, student)
        truth = hr.sel(time=ens["time"]) if "time" in ens.dims else hr
        for n in names:
            crps[n].append(float(verify.crps(ens[n], truth[n], fair=True)))
            ratio[n].append(float(verify.spread_skill(ens[n], truth[n])))
            blocks[n].append(block_means(verify.crps(ens[n], truth[n], fair=True, dim=[])))
    errors = {n: standard_errors(crps[n], blocks[n]) for n in names}
    chosen = tuple(choose(candidates, crps[n], errors[n], rule) for n in names)
    result = with_noise_scale(model, chosen, student)
    result.provenance = {
        **model.provenance,
        "student_calibration" if student else "calibration": {
            "parameter": "noise_scale",
            "candidates": list(candidates),
            "crps_fair": crps,
            "spread_skill": ratio,
            "standard_error": errors,
            "rule": rule,
            "chosen": dict(zip(names, chosen, strict=True)),
            "times": int(lr.sizes.get("time", 1)),
            "n_ensemble": n_ensemble,
            "seed": seed,
        },
    }
    return result


def block_means(field: xr.DataArray) -> np.ndarray:
    """The mean of a per-point score over each time and each of ``BLOCKS`` pieces of every
    other dimension (NaN points skipped; NaN where a block has none), flattened."""
    other = [d for d in field.dims if d != "time"]
    values = field.transpose(*[d for d in field.dims if d == "time"], *other).values
    pieces = [values.reshape((-1, *values.shape[values.ndim - len(other) :]))]
    for axis in range(1, pieces[0].ndim):
        pieces = [
            part
            for piece in pieces
            for part in np.array_split(piece, min(BLOCKS, piece.shape[axis]), axis=axis)
        ]
    means = []
    for piece in pieces:
        flat = piece.reshape(piece.shape[0], -1)
        count = np.isfinite(flat).sum(axis=1)
        total = np.where(np.isfinite(flat), flat, 0.0).sum(axis=1)
        means.append(np.where(count > 0, total / np.maximum(count, 1), np.nan))
    return np.stack(means, axis=1).ravel()


def standard_errors(crps: list[float], blocks: list[np.ndarray]) -> list[float]:
    """Per candidate, the standard error of the mean over blocks of its score's difference
    from the best candidate's (0 for the best, and where fewer than two blocks are valid)."""
    best = blocks[int(np.argmin(crps))]
    errors = []
    for values in blocks:
        diff = values - best
        diff = diff[np.isfinite(diff)]
        n = diff.size
        errors.append(float(np.std(diff, ddof=1) / np.sqrt(n)) if n > 1 else 0.0)
    return errors


def choose(candidates: list[float], crps: list[float], errors: list[float], rule: str) -> float:
    """The candidate ``rule`` picks: the least ``crps``, or (``"one_se"``) the one nearest 1
    in ratio among those within one standard error of the least (ties: the lower score)."""
    _check_rule(rule)
    least = int(np.argmin(crps))
    if rule == "least_crps":
        return candidates[least]
    near = [k for k in range(len(candidates)) if crps[k] - crps[least] <= errors[k]]
    return candidates[min(near, key=lambda k: (abs(np.log(candidates[k])), crps[k]))]


def _check_rule(rule: str) -> None:
    if rule not in RULES:
        raise ValueError(f"rule={rule!r} is invalid; expected one of {list(RULES)}")


def with_noise_scale(
    model: CorrDiffModel, scale: tuple[float, ...], student: bool = False
) -> CorrDiffModel:
    """A shallow copy of ``model`` whose sampler (``student=True``: the student's) has the
    per-output initial-noise factors ``scale``."""
    trial = copy.copy(model)
    if student:
        if model.student_config is None:
            raise ValueError("student=True but the model has no distilled student")
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
    rule: str,
) -> list[float]:
    _check_rule(rule)
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

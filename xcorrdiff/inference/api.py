"""The public downscaling API: :func:`downscale` and :func:`downscale_to_zarr`.

This module holds the two functions' signatures, the one place where each option of a
downscale request and its default is written, and their documentation. It imports neither
torch nor the pipeline (so the ``.corrdiff`` accessor can delegate to it at import time);
the work runs in:

* :mod:`~xcorrdiff.inference.request` — every argument checked and resolved, once, into a
  frozen request from which the provenance and the store's resume record follow;
* :mod:`~xcorrdiff.inference.pipeline` — ``downscale``: check → prepare → mean → sample →
  label, lazily, one dask chunk of ``time`` at a time (see its module docstring for the
  random streams and the distributed behaviour);
* :mod:`~xcorrdiff.inference.to_zarr` — ``downscale_to_zarr``: resumable output, chunk by
  chunk.

``xcorrdiff.downscale`` and ``xcorrdiff.downscale_to_zarr`` are these functions.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

if TYPE_CHECKING:
    import torch

    from xcorrdiff.config import SamplerName
    from xcorrdiff.data.fill import FillMethod
    from xcorrdiff.inference.handles import ModelRef
    from xcorrdiff.inference.to_zarr import ZarrRun
    from xcorrdiff.model import CorrDiffModel


#: Names of the inference internals this module re-exports, loaded on first access.
_LAZY = {
    "DownscaleRequest": "xcorrdiff.inference.request",
    "ZarrRun": "xcorrdiff.inference.to_zarr",
    "cache_info": "xcorrdiff.inference.handles",
    "get_model": "xcorrdiff.inference.handles",
    "resolve_model": "xcorrdiff.inference.handles",
    "member_seed": "xcorrdiff.inference.blocks",
}


__all__ = ["DEFAULTS", "OPTIONS", "downscale", "downscale_to_zarr", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The request's options among a call's arguments (its ``locals()``)."""
    return {name: value for name, value in values.items() if name in OPTIONS}


def downscale(
    lr: xr.Dataset,
    model: CorrDiffModel | str | os.PathLike[str] | ModelRef | None = None,
    n_ensemble: int = 32,
    *,
    seed: int = 0,
    sampler: SamplerName | None = None,
    num_steps: int | None = None,
    s_churn: float | None = None,
    renoise: float | None = None,
    student: bool | None = None,
    patch_shape: Sequence[int] | None = None,
    overlap: int | None = None,
    region: Mapping[str, Any] | None = None,
    observations: xr.Dataset | None = None,
    guidance_scale: float = 1.0,
    fill_missing: FillMethod | None = None,
    return_mean: bool = False,
    check_plausibility: bool = True,
    member_batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str | torch.dtype | None = None,
    dtype: str | torch.dtype | None = None,
) -> xr.Dataset:
    """Generate an ensemble of HR fields from LR inputs with a CorrDiff model.

    Parameters
    ----------
    lr : xarray.Dataset
        Low-resolution inputs with CF ``units``: the model's input variables on
        ``(time, lat, lon)`` (any grid covering the model's domain, any convertible
        units) or already on the HR grid (the output of ``lr.corrdiff.regrid(hr)``, with
        or without the HR invariants; coordinates equal to the model's up to rounding).
        A single time without a ``time`` dimension works too. A lead-time-aware model
        takes forecasts on ``(time, lead_time, ...)`` and returns ``(member, time,
        lead_time, y, x)`` with a ``valid_time`` (:mod:`xcorrdiff.data.lead_time`).
        Dask-backed input gives dask-backed output (one task per ``time`` chunk);
        numpy-backed input is computed at once.
    model : CorrDiffModel or path-like, optional
        A model with a diffusion network, or the directory of a saved one. Default: the
        model of :func:`xcorrdiff.set_options`.
    n_ensemble : int, default 32
        Number of members (>= 1).
    seed : int, default 0
        Seed of the members' random streams (see the module docstring).
    sampler : {"euler", "heun", "dpmpp_2m", "ancestral"}, optional
        A name of :data:`xcorrdiff.config.SAMPLERS`. Default: the model's own sampler
        settings (``model.sampler``). An explicit value overrides them and the output's
        ``sampler_source`` attribute says so. ``"euler"``: first-order steps of the
        probability-flow ODE (deterministic given the initial noise; the same as DDIM).
        ``"heun"``: second-order steps with churn (EDM Algorithm 2). ``"dpmpp_2m"``:
        DPM-Solver++(2M), second order at one network evaluation per step.
        ``"ancestral"``: Euler steps that re-draw a fraction ``renoise`` of the noise.
        See docs/performance.md for their cost and skill by step count.
    num_steps : int, optional
        Denoising steps. Default: the model's ``sampler.num_steps`` when the sampler is the
        model's (12 Euler for models trained with xcorrdiff), else the sampler's
        ``default_steps`` in :data:`~xcorrdiff.config.SAMPLERS` (12; 18 for Heun). Counts
        below a sampler's ``min_steps`` are refused.
    s_churn : float, optional
        EDM churn of ``"euler"`` and ``"heun"``; default the model's stored churn
        (``model.sampler.s_churn``: 0 for an imported Earth2Studio package) when the sampler is
        the model's, else 0 for Euler and ``0.1 * num_steps`` for Heun. Refused for the
        other samplers.
    renoise : float, optional
        Fraction in ``[0, 1]`` of each step's noise that ``"ancestral"`` draws afresh;
        default 1. Refused for the other samplers.
    student : bool, optional
        Sample with the model's distilled few-step student (:func:`xcorrdiff.train.distill`)
        instead of its diffusion network: Euler steps on the noise levels it was distilled
        at (``model.student_config.sampler``), so ``sampler``, ``num_steps``, ``s_churn``
        and ``renoise`` are refused with it. Default: the model's choice
        (``model.student_config.default``; False for a model without a student). True for
        a model without a student is refused.
    patch_shape : (int, int), optional
        Sample patch by patch (multi-diffusion) with patches of this size; any domain size,
        rectangular patches; sides divisible by the network's downsampling factor. Default:
        the whole domain at once.
    overlap : int, optional
        Pixels shared by neighbouring patches, blended with raised-cosine weights; default
        a quarter of the smaller patch side.
    region : mapping, optional
        Generate only a sub-rectangle of the model's grid: ``{"y": slice(a, b), "x":
        slice(c, d)}`` (labels of the grid's dimensions) or ``{"lat": (south, north),
        "lon": (west, east)}``. The regression mean is computed on the whole domain and
        cut; the members equal a whole-domain run's on the region up to the patch layout
        (:mod:`xcorrdiff.inference.region`).
    observations : xarray.Dataset, optional
        Station values to guide the sampler toward (diffusion posterior sampling,
        :mod:`xcorrdiff.diffusion.guidance`): a ``station`` dim with 1-D ``lat``/``lon``,
        some output variables in convertible units on the input's times (or without time),
        optional ``<name>_error`` standard deviations
        (:mod:`xcorrdiff.inference.observations`). ``None`` (default): unguided, exactly as
        without the argument.
    guidance_scale : float, default 1.0
        ζ, the weight of the observations' log-likelihood (1: the Bayesian posterior under
        the Gaussian approximation of :mod:`xcorrdiff.diffusion.guidance`; larger pulls
        harder).
    fill_missing : {"nearest"}, optional
        Fill NaN in the input from the nearest valid cell of its own grid before it is
        used (land-only or masked coarse input: :func:`xcorrdiff.data.fill_nearest`).
        Default: NaN input is refused.
    return_mean : bool, default False
        Add the regression mean as ``<variable>_mean`` on ``(time, y, x)``.
    check_plausibility : bool, default True
        Refuse inputs more than 50 training standard deviations from the training mean, or
        outside the physical bounds of their quantity (absolute temperatures, speeds): such
        values are fill values or unit mistakes, and the networks turn them into NaN or
        nonsense (:mod:`xcorrdiff.data.plausibility`). ``False`` lets an expert pass them;
        NaN/inf inputs are always refused.
    member_batch_size : int, optional
        Samples (time, member pairs) per network batch; default ``min(n_ensemble, 16)``.
        The largest size tried: a batch that runs out of device memory is retried at half
        the size, which then holds for later chunks (the samples do not change: each has
        its own random stream).
    device : str or torch.device, optional
        Default: the option ``device``, else CUDA when available, else the CPU.
    precision : {"float32", "bfloat16", "float16"}, optional
        Network precision under autocast (the sampler's state and updates stay float32);
        ``"float16"`` needs CUDA, ``"bfloat16"`` runs on the CPU too (fast only where the
        CPU has bfloat16 instructions). Default float32.
    dtype : optional
        Deprecated spelling of ``precision`` (warns).

    Returns
    -------
    xarray.Dataset
        The output variables on ``(member, time, y, x)`` of the model's HR grid (its ``y``,
        ``x``, ``lat``, ``lon``), float32, with ``units``/``long_name`` and provenance in
        ``attrs``: every field of the request (:mod:`xcorrdiff.inference.request`: model
        hash, sampler, steps, churn, seed, region, precision...) and the library version.

    Raises
    ------
    ValueError
        No model; a regression-only model; bad arguments; NaN/inf or implausible values in
        numpy-backed input (in dask-backed input when computed); units that do not convert;
        an input grid that does not cover the model's domain; repeated time stamps.
    KeyError
        Input variables missing (all are listed).

    Examples
    --------
    >>> ens = lr.corrdiff.downscale(model, n_ensemble=16, seed=1)  # doctest: +SKIP
    >>> ens.corrdiff.crps(hr)  # doctest: +SKIP
    """
    from xcorrdiff.inference.pipeline import run_downscale

    return run_downscale(lr, model, _options(locals()))


def downscale_to_zarr(
    lr: xr.Dataset,
    store: str | os.PathLike[str],
    model: CorrDiffModel | str | os.PathLike[str] | ModelRef | None = None,
    n_ensemble: int = 32,
    *,
    time_chunk: int = 1,
    resume: bool = True,
    overwrite: bool = False,
    recompute_changed: bool = False,
    seed: int = 0,
    sampler: SamplerName | None = None,
    num_steps: int | None = None,
    s_churn: float | None = None,
    renoise: float | None = None,
    student: bool | None = None,
    patch_shape: Sequence[int] | None = None,
    overlap: int | None = None,
    region: Mapping[str, Any] | None = None,
    observations: xr.Dataset | None = None,
    guidance_scale: float = 1.0,
    fill_missing: FillMethod | None = None,
    return_mean: bool = False,
    check_plausibility: bool = True,
    member_batch_size: int | None = None,
    device: str | torch.device | None = None,
    precision: str | torch.dtype | None = None,
    dtype: str | torch.dtype | None = None,
    verify_against: xr.Dataset | None = None,
) -> ZarrRun:
    """Downscale into a zarr store chunk by chunk, resuming where an earlier run stopped.

    Before anything is written, the whole input is read once (one dask computation, a time
    chunk per task): NaN/inf values and implausible values are refused, and each chunk's
    values are fingerprinted. Each ``time`` chunk is then one task: it samples its members,
    writes its own region of the store (whole zarr chunks, so tasks never share a file)
    and marks the chunk done, recording its input fingerprint and the SHA-256 of what it
    wrote. A killed run leaves finished chunks marked; calling again with the same
    arguments computes only the others. The store's ``xcorrdiff_status`` attribute says
    "complete" once every chunk is written, and "incomplete: ..." until then. The tasks
    run on the active dask scheduler: the default threaded one, or a
    ``dask.distributed`` ``Client`` (one model load per worker; with ``device="cuda"`` or
    CUDA auto-detected, each worker pins its own GPU, see
    :func:`xcorrdiff.inference.handles.worker_device`).

    Parameters
    ----------
    lr : xarray.Dataset
        Low-resolution inputs with a ``time`` dimension (see :func:`downscale`);
        numpy- or dask-backed, rechunked to ``time_chunk``.
    store : path-like
        Output zarr store, on a file system every worker sees. Its folder must exist. The
        working directory, its parents, the home directory and folders holding the input
        are refused.
    model, n_ensemble
        As for :func:`downscale`.
    time_chunk : int, default 1
        Times per task and per zarr chunk.
    resume : bool, default True
        If ``store`` exists, continue it: check that it was written for the same request
        (every field of :class:`~xcorrdiff.inference.request.DownscaleRequest` not marked
        runtime-only: model hash, members, seed, sampler, steps, churn, sigmas, patches,
        region, guidance, fill; and the time chunk, time stamps and input grid), that each
        finished chunk was computed from the same input values (fingerprints) and still
        holds what was written (checksums; damaged chunks are computed again, with a
        warning), then compute only the chunks not done.
    overwrite : bool, default False
        Replace an existing ``store`` (takes precedence over ``resume``). Only a store
        xcorrdiff wrote (holding nothing else) or an empty folder is ever replaced.
    recompute_changed : bool, default False
        When resuming, recompute the finished chunks whose input changed instead of
        refusing to resume.
    seed, sampler, num_steps, s_churn, renoise, student, patch_shape, overlap, region, observations, \
guidance_scale, fill_missing, return_mean, check_plausibility, member_batch_size, device, \
precision, dtype
        As for :func:`downscale`.
    verify_against : xarray.Dataset, optional
        The truth on the output grid at every output time (variables named as the
        outputs'; those it lacks are not scored). Each task scores what it wrote as it
        writes it (:mod:`xcorrdiff.inference.scoring`), checked before anything is
        written; ``run.verification`` holds the sums
        (:func:`xcorrdiff.verify.scores_from_sums`). Not part of the request: a store
        resumed with other truth is rescored from what it holds.

    Returns
    -------
    ZarrRun
        The store's path, the number of chunks, and which chunks this call computed, found
        done, found changed and repaired; ``run.open()`` opens the ensemble.

    Raises
    ------
    ValueError
        Bad arguments (as for :func:`downscale`); no ``time`` dimension; NaN/inf or
        implausible input values; a refused ``store`` path; ``store`` exists but records
        another request (every differing key is named) or no request, or its finished
        chunks were computed from other input values.
    FileExistsError
        ``store`` exists and both ``resume`` and ``overwrite`` are False, or ``overwrite``
        would replace something xcorrdiff did not write.

    Notes
    -----
    The request is recorded in ``store/.xcorrdiff/request.json`` (and as the JSON attr
    ``xcorrdiff_request``); a chunk is done once ``store/.xcorrdiff/done/<index>`` exists,
    written atomically after its region. A call that fails before any chunk is finished
    removes the store it created. The runtime-only fields (device, precision, member batch
    size, threads) are not checked on resume: resuming on another device gives members that
    are equally valid but may differ in the last bits from those of an uninterrupted run.

    Examples
    --------
    >>> run = xcorrdiff.downscale_to_zarr(lr, "ens.zarr", "model_dir", 8, time_chunk=4)  # doctest: +SKIP
    >>> run.computed, run.skipped  # doctest: +SKIP
    """
    from xcorrdiff.inference.to_zarr import run_to_zarr

    return run_to_zarr(
        lr, store, model, time_chunk=time_chunk, resume=resume, overwrite=overwrite,
        recompute_changed=recompute_changed, options=_options(locals()),
        verify_against=verify_against,
    )  # fmt: skip


_PARAMETERS = inspect.signature(downscale).parameters
#: The options of a downscale request: the arguments of :func:`downscale` after ``lr`` and
#: ``model``, in order; :func:`downscale_to_zarr`, the accessor and the command line take
#: the same names.
OPTIONS: tuple[str, ...] = tuple(_PARAMETERS)[2:]
#: Their defaults.
DEFAULTS: dict[str, Any] = {name: _PARAMETERS[name].default for name in OPTIONS}

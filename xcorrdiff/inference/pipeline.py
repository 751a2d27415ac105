"""The inference pipeline: LR data in, an HR ensemble ``(member, time, y, x)`` out.

``downscale(lr, model, n_ensemble)`` runs, lazily and one dask chunk of ``time`` at a time:

1. the prepare step of the model (:meth:`~xcorrdiff.model.CorrDiffModel.prepare`): select
   the input variables → convert units → regrid onto the HR grid → add the invariants →
   normalize;
2. the regression UNet, once per time: the conditional mean μ, shared by every member;
3. the EDM sampler (:func:`~xcorrdiff.diffusion.euler` or :func:`~xcorrdiff.diffusion.heun`)
   on the residual, members batched, on the whole domain or patch by patch
   (:class:`~xcorrdiff.diffusion.PatchGrid`, tapered blending over the overlaps);
4. ``μ + residual`` → denormalize (inverse transforms included) → a Dataset on the model's
   HR grid with CF attributes and provenance.

Randomness: member ``m`` at time ``t`` draws all its noise (initial latent, churn) from its
own :class:`torch.Generator`, seeded with
``np.random.SeedSequence([seed, t_hi, t_lo, m]).generate_state(1, np.uint64)`` where
``t_hi, t_lo`` are the two 32-bit halves of the time stamp (nanoseconds since 1970, shifted
to be non-negative). A member's numbers therefore depend on the seed, its time stamp and
its index only, never on the chunking of ``time``, the member batch size, the ensemble size
or the dask workers. (Float results can still differ in the last bits between batch sizes,
as CPU convolutions may sum in another order.)

Distributed: the model enters the dask graph once, as a single key holding a small
picklable reference (the saved model directory and the SHA-256 of its files, or the
in-memory model). Each process loads or moves the model once and caches it by that hash.

References
----------
Mardani, M., et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment, 6, 124.

Karras, T., Aittala, M., Aila, T., Laine, S. (2022). Elucidating the design space of
diffusion-based generative models. NeurIPS.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch
import xarray as xr

from xcorrdiff.data.conventions import standardize
from xcorrdiff.data.convert import array_to_dataset, dataset_to_array
from xcorrdiff.data.lead_time import LEAD, map_leads
from xcorrdiff.inference.blocks import (
    Settings,
    mean_block,
    sample_block,
    time_keys,
)
from xcorrdiff.inference.handles import (
    ModelRef,
    resolve_model,
)
from xcorrdiff.inference.memory import check_memory
from xcorrdiff.inference.observations import StationData, check_guidance, prepare_observations
from xcorrdiff.inference.region import check_region, resolve_region
from xcorrdiff.inference.settings import (
    MEMBER,
    TIME,
    SamplerName,
    check_input,
    diffusion_factor,
    downscale_settings,
    model_of,
    network_config,
)
from xcorrdiff.model import CorrDiffModel

# --- the pipeline -----------------------------------------------------------------------


def _output_attrs(model: CorrDiffModel) -> dict[Hashable, dict[str, Any]]:
    mapping = [
        name
        for name, coord in model.grid.coords.items()
        if not coord.dims and "grid_mapping_name" in coord.attrs
    ]
    attrs: dict[Hashable, dict[str, Any]] = {}
    for v in model.output_variables:
        entry: dict[str, Any] = {"units": v.units, "long_name": v.long_name or v.name}
        if mapping:
            entry["grid_mapping"] = str(mapping[0])
        attrs[v.name] = entry
    return attrs


def _provenance(ref: ModelRef, settings: Settings, version: str) -> dict[str, Any]:
    patch = (
        f"{settings.patch_shape[0]}x{settings.patch_shape[1]}"
        if settings.patch_shape is not None
        else "whole domain"
    )
    return {
        "title": "CorrDiff downscaled ensemble",
        "Conventions": "CF-1.8",
        "source": f"xcorrdiff {version}: CorrDiff regression + residual diffusion",
        "xcorrdiff_version": version,
        "model_id": ref.model_id,
        "model_hash": f"sha256:{ref.digest}",
        "sampler": settings.sampler,
        "sampler_source": settings.sampler_source,
        "num_steps": settings.num_steps,
        "s_churn": settings.s_churn,
        "sigma_min": settings.sigma_min,
        "sigma_max": settings.sigma_max,
        "rho": settings.rho,
        "seed": settings.seed,
        "n_ensemble": settings.n_ensemble,
        "patch_shape": patch,
        "overlap": settings.overlap,
        "random_streams": (
            "member m at time t: torch.Generator seeded with np.random.SeedSequence("
            "[seed, t_ns_hi, t_ns_lo, m]).generate_state(1, np.uint64)"
            + (
                ""
                if settings.lead_label is None
                else "; lead-time label appended, t the valid time"
            )
        ),
    }


def downscale(
    lr: xr.Dataset,
    model: CorrDiffModel | str | os.PathLike[str] | ModelRef | None = None,
    n_ensemble: int = 32,
    *,
    seed: int = 0,
    sampler: SamplerName | None = None,
    num_steps: int | None = None,
    s_churn: float | None = None,
    patch_shape: Sequence[int] | None = None,
    overlap: int | None = None,
    member_batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    return_mean: bool = False,
    check_plausibility: bool = True,
    region: Mapping[str, Any] | None = None,
    observations: xr.Dataset | None = None,
    guidance_scale: float = 1.0,
) -> xr.Dataset:
    """Generate an ensemble of HR fields from LR inputs with a CorrDiff model.

    Parameters
    ----------
    lr : xarray.Dataset
        Low-resolution inputs with CF ``units``: the model's input variables on
        ``(time, lat, lon)`` (any rectilinear grid covering the model's domain, any
        convertible units) or already on the HR grid. A single time without a ``time``
        dimension works too. A lead-time-aware model takes forecasts on ``(time,
        lead_time, ...)`` and returns ``(member, time, lead_time, y, x)`` with a
        ``valid_time`` (:mod:`xcorrdiff.data.lead_time`). Dask-backed input gives
        dask-backed output (one task per ``time`` chunk); numpy-backed input is computed at
        once.
    model : CorrDiffModel or path-like, optional
        A model with a diffusion network, or the directory of a saved one. Default: the
        model of :func:`xcorrdiff.set_options`.
    n_ensemble : int, default 32
        Number of members (>= 1).
    seed : int, default 0
        Seed of the members' random streams (see the module docstring).
    sampler : {"euler", "heun"}, optional
        Default: the model's own sampler settings (``model.sampler``). An explicit value
        overrides them and the output's ``sampler_source`` attribute says so.
        ``"euler"``: first-order steps of the probability-flow ODE (deterministic given the
        initial noise). ``"heun"``: second-order steps with churn (EDM Algorithm 2).
    num_steps : int, optional
        Denoising steps. Default: the model's ``sampler.num_steps`` when the sampler is the
        model's (12 Euler for models trained with xcorrdiff), else :data:`DEFAULT_STEPS`
        (12 Euler, 18 Heun).
    s_churn : float, optional
        EDM churn; default 0 for Euler and ``0.1 * num_steps`` for Heun.
    patch_shape : (int, int), optional
        Sample patch by patch (multi-diffusion) with patches of this size; any domain size,
        rectangular patches; sides divisible by the network's downsampling factor. Default:
        the whole domain at once.
    overlap : int, optional
        Pixels shared by neighbouring patches, blended with raised-cosine weights; default
        a quarter of the smaller patch side.
    member_batch_size : int, optional
        Samples (time, member pairs) per network batch; default ``min(n_ensemble, 16)``.
        The largest size tried: a batch that runs out of device memory is retried at half
        the size, which then holds for later chunks (the samples do not change: each has
        its own random stream).
    device : str or torch.device, optional
        Default: the option ``device``, else CUDA when available, else the CPU.
    dtype : {"float32", "bfloat16", "float16"}, optional
        Network precision; reduced precision (autocast) needs CUDA. Default float32.
    return_mean : bool, default False
        Add the regression mean as ``<variable>_mean`` on ``(time, y, x)``.
    check_plausibility : bool, default True
        Refuse inputs more than 50 training standard deviations from the training mean, or
        outside the physical bounds of their quantity (absolute temperatures, speeds): such
        values are fill values or unit mistakes, and the networks turn them into NaN or
        nonsense (:mod:`xcorrdiff.data.plausibility`). ``False`` lets an expert pass them;
        NaN/inf inputs are always refused.
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

    Returns
    -------
    xarray.Dataset
        The output variables on ``(member, time, y, x)`` of the model's HR grid (its ``y``,
        ``x``, ``lat``, ``lon``), float32, with ``units``/``long_name`` and provenance in
        ``attrs`` (model id and hash, sampler, steps, churn, seed, library version).

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
    ref, resolved = _diffusion_model(model)
    settings = downscale_settings(
        resolved, n_ensemble=n_ensemble, seed=seed, sampler=sampler, num_steps=num_steps,
        s_churn=s_churn, patch_shape=patch_shape, overlap=overlap,
        member_batch_size=member_batch_size, device=device, dtype=dtype,
        check_plausibility=check_plausibility,
    )  # fmt: skip
    settings = dataclasses.replace(
        settings, region=resolve_region(resolved.grid, resolved.grid_dims, region)
    )
    check_region(settings.region, settings.patch_shape, diffusion_factor(resolved))
    settings = dataclasses.replace(
        settings, guidance_scale=check_guidance(observations, guidance_scale, settings.region)
    )
    lr = standardize(lr, role="lr")
    run = _Run(ref, resolved, settings, observations, return_mean, member_batch_size is not None)
    out = _by_lead(lr, run) if resolved.lead_times or LEAD in lr.dims else _downscale_one(lr, run)
    if observations is not None:  # what a resumed store must have been guided by (values
        # loaded first: a token of a lazily opened file would not be reproducible)
        token = dask.base.tokenize(observations.compute())
        out.attrs["observations_digest"] = f"dask-token:{token}"
    return out


@dataclasses.dataclass(frozen=True)
class _Run:
    """What one :func:`downscale` call settled before looking at the data."""

    ref: ModelRef
    model: CorrDiffModel
    settings: Settings
    observations: xr.Dataset | None
    return_mean: bool
    explicit_batch: bool


def _downscale_one(lr: xr.Dataset, run: _Run) -> xr.Dataset:
    """:func:`downscale` of checked settings on a standardized ``lr`` without lead times."""
    from xcorrdiff._version import __version__

    ref, model, settings, observations = run.ref, run.model, run.settings, run.observations
    check_input(lr, model, settings.ranges)
    single = TIME not in lr.dims
    condition = model.prepare(lr.expand_dims(TIME) if single else lr)
    array, lazy = _condition_array(condition, model)
    settings = _fit_memory(settings, model, array, lazy, run.explicit_batch)
    times = condition[TIME].values if TIME in condition.coords else None
    keys = da.from_array(time_keys(times, array.shape[0]), chunks=(array.chunks[0],))
    stations = None if observations is None else prepare_observations(observations, model, times)
    mean, samples = _graph(array, keys, ref, settings, stations)
    out = _label(model, settings, condition, samples, mean if run.return_mean else None)
    out.attrs = _provenance(ref, settings, __version__)
    if stations is not None:
        out.attrs.update(guidance="DPS (Chung et al. 2023) toward station observations",
                         guidance_scale=settings.guidance_scale,
                         n_stations=int(stations.values.shape[-1]))  # fmt: skip
    if single:
        out = out.isel({TIME: 0})
    return out if lazy else out.compute(scheduler="sync")


def _by_lead(lr: xr.Dataset, run: _Run) -> xr.Dataset:
    """A lead-time-aware model on forecasts ``(time, lead_time, ...)``: each lead on its own
    (valid times for the time features, the observations and the noise keys; the lead's
    label in the condition and the random streams), labelled ``(member, time, lead_time,
    y, x)`` with the initialisation ``time`` and a 2-D ``valid_time``."""
    if not run.model.lead_times:
        raise ValueError(
            f"lr has a {LEAD!r} dimension but the model is not lead-time-aware; select one "
            f"lead (lr.sel({LEAD}=...)) or train a model on forecasts"
        )

    def one(sub: xr.Dataset, label: int) -> xr.Dataset:
        lead = dataclasses.replace(run.settings, lead_label=label)
        return _downscale_one(sub, dataclasses.replace(run, settings=lead))

    return map_leads(lr, run.model.lead_times, one).transpose(MEMBER, TIME, LEAD, ...)


def _diffusion_model(model: Any) -> tuple[ModelRef, CorrDiffModel]:
    ref = resolve_model(model)
    resolved = model_of(ref)
    if resolved.diffusion is None:
        raise ValueError(
            "model has no diffusion network (regression only); train it with "
            "xcorrdiff.train.fit_diffusion(model, lr, hr) or use model.regression_mean(lr)"
        )
    return ref, resolved


def _condition_array(condition: xr.Dataset, model: CorrDiffModel) -> tuple[da.Array, bool]:
    """The normalized condition as one dask array ``(time, channel, y, x)``; lazy or not."""
    y_dim, x_dim = model.grid_dims
    stacked = dataset_to_array(
        condition, list(model.condition_variables), dims=(TIME, y_dim, x_dim)
    )
    if isinstance(stacked, da.Array):
        return stacked.rechunk({1: -1, 2: -1, 3: -1}), True
    return da.from_array(stacked, chunks=(stacked.shape[0], -1, -1, -1)), False


def _fit_memory(
    settings: Settings, model: CorrDiffModel, array: da.Array, lazy: bool, explicit: bool
) -> Settings:
    """The settings with a member batch size that fits the device's memory."""
    batch = check_memory(
        diffusion_config=network_config(model.diffusion),
        regression_config=network_config(model.regression),
        sample_shape=settings.patch_shape or model.shape,
        grid_shape=model.shape,
        n_outputs=settings.n_outputs,
        n_ensemble=settings.n_ensemble,
        times_held=max(array.chunks[0], default=1),
        member_batch_size=settings.member_batch_size,
        explicit_batch=explicit,
        device=torch.device(settings.device),
        dtype=settings.dtype,
        eager=not lazy,
    ).member_batch_size
    return dataclasses.replace(settings, member_batch_size=batch)


def _graph(
    array: da.Array,
    keys: da.Array,
    ref: ModelRef,
    settings: Settings,
    stations: StationData | None = None,
) -> tuple[da.Array, da.Array]:
    """The regression means ``(time, c, y, x)`` and samples ``(member, time, c, y, x)``."""
    handle = dask.delayed(ref, name=f"xcorrdiff-model-{ref.digest[:16]}-{id(ref):x}")
    token = dask.base.tokenize(array.name, ref.digest, settings, stations)
    n_out, n_ensemble = settings.n_outputs, settings.n_ensemble
    mean = da.blockwise(
        mean_block, "tcyx", array, "tkyx", handle, None,
        settings=settings, new_axes={"c": n_out}, concatenate=True, dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), np.float32), name=f"xcorrdiff-mean-{token}",
    )  # fmt: skip
    h, w = settings.out_shape(array.shape[2:])
    guide: tuple[Any, ...] = ()
    if stations is not None:
        paired = np.stack([stations.values, stations.sigma], axis=1)  # (time, 2, c, station)
        guide = (da.from_array(paired, chunks=(array.chunks[0], -1, -1, -1)), "tvcs",
                 stations.geometry, None)  # fmt: skip
    samples = da.blockwise(
        sample_block, "mtcyx", array, "tkyx", mean, "tcyx", keys, "t", handle, None, *guide,
        settings=settings, new_axes={"m": n_ensemble}, concatenate=True, dtype=np.float32,
        meta=np.empty((0, 0, 0, 0, 0), np.float32), name=f"xcorrdiff-sample-{token}",
        adjust_chunks={"y": h, "x": w},
    )  # fmt: skip
    if settings.region is not None:
        y0, y1, x0, x1 = settings.region
        mean = mean[..., y0:y1, x0:x1]
    return mean, samples


def _label(
    model: CorrDiffModel,
    settings: Settings,
    condition: xr.Dataset,
    samples: da.Array,
    mean: da.Array | None,
) -> xr.Dataset:
    """Denormalized members (and means) on the model's HR grid, with CF attributes."""
    y_dim, x_dim = model.grid_dims
    names = list(model.output_names)
    normalizer = model.output_normalizer
    physical = normalizer.denormalize_array(samples, names, channel_axis=-3)
    attrs = _output_attrs(model)
    grid = model.grid
    if settings.region is not None:
        y0, y1, x0, x1 = settings.region
        grid = grid.isel({y_dim: slice(y0, y1), x_dim: slice(x0, x1)})
    coords: dict[Hashable, Any] = {
        MEMBER: (MEMBER, np.arange(settings.n_ensemble), {"long_name": "ensemble member"}),
        **dict(grid.coords.items()),
    }
    if TIME in condition.coords:
        coords[TIME] = condition[TIME].variable
    out = array_to_dataset(
        physical, names, coords=coords, attrs=attrs, dims=(TIME, y_dim, x_dim), member_dim=MEMBER
    )
    if mean is not None:
        mean_phys = normalizer.denormalize_array(mean, names, channel_axis=-3)
        mean_ds = array_to_dataset(mean_phys, names, dims=(TIME, y_dim, x_dim))
        for name in names:
            out[f"{name}_mean"] = mean_ds[name].assign_attrs(
                {**attrs[name], "long_name": f"regression mean of {attrs[name]['long_name']}"}
            )
    return model.finish(out, region=settings.region)

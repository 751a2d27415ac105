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
from collections.abc import Hashable, Mapping
from typing import Any

import dask
import dask.array as da
import numpy as np
import torch
import xarray as xr

from xcorrdiff.data.convert import array_to_dataset, dataset_to_array
from xcorrdiff.data.lead_time import LEAD, lead_labels, map_leads
from xcorrdiff.inference.blocks import (
    Settings,
    caller,
    mean_block,
    sample_block,
    time_keys,
)
from xcorrdiff.inference.flow import check_flow_request, flow_block, flow_scalars
from xcorrdiff.inference.handles import (
    ModelRef,
    resolve_model,
)
from xcorrdiff.inference.memory import check_memory
from xcorrdiff.inference.observations import StationData, prepare_observations
from xcorrdiff.inference.request import DownscaleRequest, make_request
from xcorrdiff.inference.settings import (
    MEMBER,
    TIME,
    check_input,
    input_ranges,
    model_of,
    network_config,
    prepare_input,
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


def _provenance(request: DownscaleRequest, version: str, flow: bool = False) -> dict[str, Any]:
    """The output's attributes: what it is, and every field of the request."""
    method = (
        "rectified-flow DiT (whole fields)" if flow else "CorrDiff regression + residual diffusion"
    )
    return {
        "title": "CorrDiff downscaled ensemble",
        "Conventions": "CF-1.8",
        "source": f"xcorrdiff {version}: {method}",
        "xcorrdiff_version": version,
        **request.attrs(),
        "random_streams": (
            "member m at time t: torch.Generator seeded with np.random.SeedSequence("
            "[seed, t_ns_hi, t_ns_lo, m]).generate_state(1, np.uint64)"
            + (
                ""
                if request.lead_labels is None
                else "; lead-time label appended, t the valid time"
            )
        ),
    }


def run_downscale(lr: xr.Dataset, model: Any, options: Mapping[str, Any]) -> xr.Dataset:
    """:func:`~xcorrdiff.inference.api.downscale` with its ``options`` (by name)."""
    ref, resolved = diffusion_model(model)
    request = make_request(ref, resolved, options)
    observations = options.get("observations")
    if resolved.regression is None:
        check_flow_request(request, observations, resolved, lr)
    return run_request(prepare_input(lr, resolved, request), ref, resolved, request, observations)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What one :func:`downscale` call settled before looking at the data."""

    ref: ModelRef
    model: CorrDiffModel
    request: DownscaleRequest
    observations: xr.Dataset | None
    lead_label: int | None = None


def run_request(
    lr: xr.Dataset,
    ref: ModelRef,
    model: CorrDiffModel,
    request: DownscaleRequest,
    observations: xr.Dataset | None,
) -> xr.Dataset:
    """:func:`downscale` of a built request on an input made ready by :func:`prepare_input`."""
    run = _Run(ref, model, request, observations)
    return _by_lead(lr, run) if model.lead_times or LEAD in lr.dims else _downscale_one(lr, run)


def _downscale_one(lr: xr.Dataset, run: _Run) -> xr.Dataset:
    """:func:`downscale` of a checked request on a standardized ``lr`` without lead times."""
    from xcorrdiff._version import __version__

    ref, model, request, observations = run.ref, run.model, run.request, run.observations
    ranges = input_ranges(model, request.inputs.check_plausibility)
    check_input(lr, model, ranges)
    single = TIME not in lr.dims
    condition = model.prepare(lr.expand_dims(TIME) if single else lr)
    array, lazy = _condition_array(condition, model)
    request = _fit_memory(request, model, array, lazy)
    settings = Settings(
        request=request, condition_variables=tuple(model.condition_variables),
        output_names=tuple(model.output_names), caller=caller(), ranges=ranges,
        lead_label=run.lead_label,
    )  # fmt: skip
    times = condition[TIME].values if TIME in condition.coords else None
    keys = da.from_array(time_keys(times, array.shape[0]), chunks=(array.chunks[0],))
    stations = None
    if observations is not None:
        stations = prepare_observations(
            observations, model, times, check_plausibility=request.inputs.check_plausibility
        )
    if model.regression is None:
        scalars = da.from_array(
            flow_scalars(model, times, array.shape[0]), chunks=(array.chunks[0], -1)
        )
        mean, samples = None, _flow_graph(array, scalars, keys, ref, settings)
    else:
        mean, samples = _graph(array, keys, ref, settings, stations)
    out = _label(model, settings, condition, samples, mean if request.return_mean else None)
    out.attrs = _provenance(request, __version__, flow=model.regression is None)
    if stations is not None:
        out.attrs.update(guidance="DPS (Chung et al. 2023) toward station observations",
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
    labels = lead_labels(lr[LEAD].values, run.model.lead_times) if LEAD in lr.dims else ()
    request = run.request.replace(lead_labels=tuple(int(k) for k in labels))

    def one(sub: xr.Dataset, label: int) -> xr.Dataset:
        return _downscale_one(sub, dataclasses.replace(run, request=request, lead_label=label))

    return map_leads(lr, run.model.lead_times, one).transpose(MEMBER, TIME, LEAD, ...)


def diffusion_model(model: Any) -> tuple[ModelRef, CorrDiffModel]:
    """The model reference and the model, refused without a diffusion network."""
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
    request: DownscaleRequest, model: CorrDiffModel, array: da.Array, lazy: bool
) -> DownscaleRequest:
    """The request with a member batch size that fits the device's memory."""
    runtime = request.runtime
    batch = check_memory(
        diffusion_config=network_config(model.diffusion),
        regression_config=network_config(model.regression),
        sample_shape=request.domain.patch_shape or model.shape,
        grid_shape=model.shape,
        n_outputs=len(model.output_variables),
        n_ensemble=request.ensemble.n_ensemble,
        times_held=max(array.chunks[0], default=1),
        member_batch_size=runtime.member_batch_size,
        explicit_batch=runtime.explicit_batch,
        device=torch.device(runtime.device),
        dtype=runtime.precision,
        eager=not lazy,
    ).member_batch_size
    return request.replace("runtime", member_batch_size=batch)


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
    n_out, n_ensemble = settings.n_outputs, settings.request.ensemble.n_ensemble
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
    region = settings.request.domain.region
    if region is not None:
        y0, y1, x0, x1 = region
        mean = mean[..., y0:y1, x0:x1]
    return mean, samples


def _flow_graph(
    array: da.Array, scalars: da.Array, keys: da.Array, ref: ModelRef, settings: Settings
) -> da.Array:
    """The members ``(member, time, c, y, x)`` of a rectified-flow model."""
    handle = dask.delayed(ref, name=f"xcorrdiff-model-{ref.digest[:16]}-{id(ref):x}")
    token = dask.base.tokenize(array.name, scalars.name, ref.digest, settings)
    h, w = settings.out_shape(array.shape[2:])
    return da.blockwise(
        flow_block, "mtcyx", array, "tkyx", scalars, "tj", keys, "t", handle, None,
        settings=settings, new_axes={"m": settings.request.ensemble.n_ensemble, "c": settings.n_outputs},
        concatenate=True, dtype=np.float32, meta=np.empty((0, 0, 0, 0, 0), np.float32),
        name=f"xcorrdiff-flow-{token}", adjust_chunks={"y": h, "x": w},
    )  # fmt: skip


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
    grid, region = model.grid, settings.request.domain.region
    if region is not None:
        y0, y1, x0, x1 = region
        grid = grid.isel({y_dim: slice(y0, y1), x_dim: slice(x0, x1)})
    members = np.arange(settings.request.ensemble.n_ensemble)
    coords: dict[Hashable, Any] = {
        MEMBER: (MEMBER, members, {"long_name": "ensemble member"}),
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
    return model.finish(out, region=region)

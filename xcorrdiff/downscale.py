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

import math
import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import torch
import xarray as xr

from xcorrdiff.data.convert import array_to_dataset, dataset_to_array
from xcorrdiff.inference.blocks import (
    DTYPES,
    Settings,
    caller_threads,
    mean_block,
    member_seed,
    sample_block,
    time_keys,
)
from xcorrdiff.inference.handles import (
    ModelRef,
    cache_info,
    get_model,
    model_on,
    resolve_model,
)
from xcorrdiff.inference.store import (
    check_request,
    chunk_bounds,
    done_chunks,
    init_store,
    request_record,
    write_tasks,
)
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.options import OPTIONS

__all__ = [
    "DEFAULT_HEUN_CHURN",
    "DEFAULT_STEPS",
    "ZarrRun",
    "cache_info",
    "downscale",
    "downscale_to_zarr",
    "get_model",
    "member_seed",
    "resolve_model",
]

SamplerName = Literal["euler", "heun"]
TIME = "time"
MEMBER = "member"

#: Default number of steps per sampler (see docs/downscaling.md for the measurements).
DEFAULT_STEPS: dict[str, int] = {"euler": 12, "heun": 18}
#: Default churn of the Heun sampler, per step: ``s_churn = DEFAULT_HEUN_CHURN * num_steps``
#: (EDM's ``gamma`` = 0.1 at every step).
DEFAULT_HEUN_CHURN = 0.1

# --- argument checks ----------------------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")
    return int(value)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        device = OPTIONS["device"]
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"device={device!r} is invalid; expected 'cpu', 'cuda', 'cuda:N' or None"
        ) from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available; use device='cpu'"
        )
    return resolved


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> str:
    if dtype is None:
        return "float32"
    names = {v: k for k, v in DTYPES.items() if k in ("float32", "bfloat16", "float16")}
    name = names.get(dtype) if isinstance(dtype, torch.dtype) else dtype
    if name not in DTYPES:
        raise ValueError(
            f"dtype={dtype!r} is invalid; expected None, 'float32', 'bfloat16' or 'float16'"
        )
    canonical = names[DTYPES[name]]
    if canonical != "float32" and device.type != "cuda":
        raise ValueError(
            f"dtype={dtype!r} (reduced-precision inference) needs a CUDA device, got "
            f"device={str(device)!r}; use dtype=None (float32) on the CPU"
        )
    return canonical


def _resolve_patches(
    model: CorrDiffModel, patch_shape: Sequence[int] | None, overlap: int | None
) -> tuple[tuple[int, int] | None, int]:
    if patch_shape is None:
        if overlap not in (None, 0):
            raise ValueError(
                f"overlap={overlap!r} needs patch_shape; without it the whole domain "
                f"{model.shape} is sampled at once"
            )
        return None, 0
    try:
        patch = tuple(int(v) for v in patch_shape)
    except (TypeError, ValueError):
        raise ValueError(f"patch_shape={patch_shape!r} is invalid; expected (y, x)") from None
    if len(patch) != 2 or any(v < 1 for v in patch):
        raise ValueError(f"patch_shape={patch_shape!r} is invalid; expected two positive sides")
    shape = model.shape
    if patch[0] > shape[0] or patch[1] > shape[1]:
        raise ValueError(
            f"patch_shape={patch} is larger than the model's HR grid {shape}; use a smaller "
            "patch or patch_shape=None for the whole domain"
        )
    assert model.diffusion is not None
    factor = int(getattr(getattr(model.diffusion, "model", None), "input_shape_mult", 1))
    if patch[0] % factor or patch[1] % factor:
        raise ValueError(
            f"patch_shape={patch} is invalid for this diffusion network; expected sides "
            f"divisible by {factor} (its downsampling factor)"
        )
    overlap = min(patch) // 4 if overlap is None else _check_int("overlap", overlap, 0)
    if overlap >= min(patch):
        raise ValueError(
            f"overlap={overlap} must be smaller than the patch sides {patch}; reduce it"
        )
    return (patch[0], patch[1]), overlap


def _check_input(lr: xr.Dataset, model: CorrDiffModel) -> None:
    if not isinstance(lr, xr.Dataset):
        raise TypeError(
            f"lr must be an xarray.Dataset, got {type(lr).__name__}; wrap a DataArray with "
            "da.to_dataset(name=...)"
        )
    missing = [name for name in model.input_names if name not in lr.data_vars]
    if missing:
        raise KeyError(
            f"lr lacks the model's input variables {missing}; the model needs "
            f"{list(model.input_names)} and lr has {sorted(map(str, lr.data_vars))}. Rename "
            "or add them (units are converted)"
        )
    for name in model.input_names:
        data = lr[name].data
        if isinstance(data, da.Array):
            continue  # checked block by block, after regridding
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        if bad:
            raise ValueError(
                f"lr variable {name!r} has {bad} NaN/inf values (of {np.size(data)}); fill "
                f"them (e.g. lr[{name!r}].interpolate_na(...)) or drop those times before "
                "downscaling"
            )


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
        ),
    }


def downscale(
    lr: xr.Dataset,
    model: CorrDiffModel | str | os.PathLike[str] | None = None,
    n_ensemble: int = 32,
    *,
    seed: int = 0,
    sampler: SamplerName = "euler",
    num_steps: int | None = None,
    s_churn: float | None = None,
    patch_shape: Sequence[int] | None = None,
    overlap: int | None = None,
    member_batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    return_mean: bool = False,
) -> xr.Dataset:
    """Generate an ensemble of HR fields from LR inputs with a CorrDiff model.

    Parameters
    ----------
    lr : xarray.Dataset
        Low-resolution inputs with CF ``units``: the model's input variables on
        ``(time, lat, lon)`` (any rectilinear grid covering the model's domain, any
        convertible units) or already on the HR grid. A single time without a ``time``
        dimension works too. Dask-backed input gives dask-backed output (one task per
        ``time`` chunk); numpy-backed input is computed at once.
    model : CorrDiffModel or path-like, optional
        A model with a diffusion network, or the directory of a saved one. Default: the
        model of :func:`xcorrdiff.set_options`.
    n_ensemble : int, default 32
        Number of members (>= 1).
    seed : int, default 0
        Seed of the members' random streams (see the module docstring).
    sampler : {"euler", "heun"}, default "euler"
        ``"euler"``: first-order steps of the probability-flow ODE (deterministic given the
        initial noise). ``"heun"``: second-order steps with churn (EDM Algorithm 2).
    num_steps : int, optional
        Denoising steps. Default: the model's ``sampler.num_steps`` when ``sampler`` is the
        model's sampler (12 Euler for models trained with xcorrdiff), else
        :data:`DEFAULT_STEPS` (12 Euler, 18 Heun).
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

    Returns
    -------
    xarray.Dataset
        The output variables on ``(member, time, y, x)`` of the model's HR grid (its ``y``,
        ``x``, ``lat``, ``lon``), float32, with ``units``/``long_name`` and provenance in
        ``attrs`` (model id and hash, sampler, steps, churn, seed, library version).

    Raises
    ------
    ValueError
        No model; a regression-only model; bad arguments; NaN/inf in numpy-backed input (in
        dask-backed input when computed); units that do not convert; an input grid that
        does not cover the model's domain.
    KeyError
        Input variables missing (all are listed).

    Examples
    --------
    >>> ens = lr.corrdiff.downscale(model, n_ensemble=16, seed=1)  # doctest: +SKIP
    >>> ens.corrdiff.crps(hr)  # doctest: +SKIP
    """
    from xcorrdiff import __version__

    ref = resolve_model(model)
    resolved = model_on(ref, torch.device("cpu")) if ref.model is None else ref.model
    if resolved.diffusion is None:
        raise ValueError(
            "model has no diffusion network (regression only); train it with "
            "xcorrdiff.train.fit_diffusion(model, lr, hr) or use model.regression_mean(lr)"
        )
    n_ensemble = _check_int("n_ensemble", n_ensemble, 1)
    seed = _check_int("seed", seed, 0)
    if sampler not in DEFAULT_STEPS:
        raise ValueError(f"sampler={sampler!r} is invalid; expected one of {list(DEFAULT_STEPS)}")
    if num_steps is None:
        stored = resolved.sampler
        num_steps = stored.num_steps if stored.sampler == sampler else DEFAULT_STEPS[sampler]
    num_steps = _check_int("num_steps", num_steps, 1)
    if s_churn is None:
        s_churn = DEFAULT_HEUN_CHURN * num_steps if sampler == "heun" else 0.0
    if not isinstance(s_churn, (int, float)) or not 0 <= s_churn < math.inf:
        raise ValueError(f"s_churn={s_churn!r} is invalid; expected a finite number >= 0")
    patch, overlap = _resolve_patches(resolved, patch_shape, overlap)
    batch = min(n_ensemble, 16) if member_batch_size is None else member_batch_size
    batch = _check_int("member_batch_size", batch, 1)
    torch_device = _resolve_device(device)
    precision = _resolve_dtype(dtype, torch_device)
    _check_input(lr, resolved)

    single = TIME not in lr.dims
    if single:
        lr = lr.expand_dims(TIME)
    condition = resolved.prepare(lr)
    y_dim, x_dim = resolved.grid_dims
    stacked = dataset_to_array(
        condition, list(resolved.condition_variables), dims=(TIME, y_dim, x_dim)
    )
    lazy = isinstance(stacked, da.Array)
    if isinstance(stacked, da.Array):
        array = stacked.rechunk({1: -1, 2: -1, 3: -1})
    else:
        array = da.from_array(stacked, chunks=(stacked.shape[0], -1, -1, -1))
    times = condition[TIME].values if TIME in condition.coords else None
    keys = da.from_array(time_keys(times, array.shape[0]), chunks=(array.chunks[0],))

    settings = Settings(
        sampler=sampler,
        num_steps=num_steps,
        s_churn=float(s_churn),
        sigma_min=resolved.sampler.sigma_min,
        sigma_max=resolved.sampler.sigma_max,
        rho=resolved.sampler.rho,
        seed=seed,
        n_ensemble=n_ensemble,
        member_batch_size=batch,
        patch_shape=patch,
        overlap=overlap,
        device=str(torch_device),
        dtype=precision,
        condition_variables=tuple(resolved.condition_variables),
        n_outputs=len(resolved.output_variables),
        caller_threads=caller_threads(),
    )
    handle = dask.delayed(ref, name=f"xcorrdiff-model-{ref.digest[:16]}-{id(ref):x}")
    token = dask.base.tokenize(array.name, ref.digest, settings)
    n_out = settings.n_outputs
    mean = da.blockwise(
        mean_block, "tcyx", array, "tkyx", handle, None,
        settings=settings, new_axes={"c": n_out}, concatenate=True, dtype=np.float32,
        meta=np.empty((0, 0, 0, 0), np.float32), name=f"xcorrdiff-mean-{token}",
    )  # fmt: skip
    samples = da.blockwise(
        sample_block, "mtcyx", array, "tkyx", mean, "tcyx", keys, "t", handle, None,
        settings=settings, new_axes={"m": n_ensemble}, concatenate=True, dtype=np.float32,
        meta=np.empty((0, 0, 0, 0, 0), np.float32), name=f"xcorrdiff-sample-{token}",
    )  # fmt: skip
    names = list(resolved.output_names)
    normalizer = resolved.output_normalizer
    physical = normalizer.denormalize_array(samples, names, channel_axis=-3)

    attrs = _output_attrs(resolved)
    coords: dict[Hashable, Any] = {
        MEMBER: (MEMBER, np.arange(n_ensemble), {"long_name": "ensemble member"}),
        **dict(resolved.grid.coords.items()),
    }
    if times is not None:
        coords[TIME] = condition[TIME].variable
    out = array_to_dataset(
        physical, names, coords=coords, attrs=attrs, dims=(TIME, y_dim, x_dim), member_dim=MEMBER
    )
    if return_mean:
        mean_phys = normalizer.denormalize_array(mean, names, channel_axis=-3)
        mean_ds = array_to_dataset(mean_phys, names, dims=(TIME, y_dim, x_dim))
        for name in names:
            out[f"{name}_mean"] = mean_ds[name].assign_attrs(
                {**attrs[name], "long_name": f"regression mean of {attrs[name]['long_name']}"}
            )
    out.attrs = _provenance(ref, settings, __version__)
    if single:
        out = out.isel({TIME: 0})
    if not lazy:
        out = out.compute(scheduler="sync")
    return out


# --- resumable output to zarr -------------------------------------------------------------


@dataclass(frozen=True)
class ZarrRun:
    """What :func:`downscale_to_zarr` did.

    Attributes
    ----------
    store : str
        Absolute path of the zarr store.
    n_chunks : int
        Time chunks of the request.
    computed : tuple of int
        Chunks computed and written by this call.
    skipped : tuple of int
        Chunks already complete in the store (resumed), not recomputed.
    """

    store: str
    n_chunks: int
    computed: tuple[int, ...]
    skipped: tuple[int, ...]

    def open(self) -> xr.Dataset:
        """The ensemble in the store, lazily (``xr.open_zarr``)."""
        return xr.open_zarr(self.store, consolidated=False)


def downscale_to_zarr(
    lr: xr.Dataset,
    store: str | os.PathLike[str],
    model: CorrDiffModel | str | os.PathLike[str] | None = None,
    n_ensemble: int = 32,
    *,
    time_chunk: int = 1,
    resume: bool = True,
    overwrite: bool = False,
    seed: int = 0,
    sampler: SamplerName = "euler",
    num_steps: int | None = None,
    s_churn: float | None = None,
    patch_shape: Sequence[int] | None = None,
    overlap: int | None = None,
    member_batch_size: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    return_mean: bool = False,
) -> ZarrRun:
    """Downscale into a zarr store chunk by chunk, resuming where an earlier run stopped.

    Each ``time`` chunk is one task: it samples its members, writes its own region of the
    store (whole zarr chunks, so tasks never share a file) and then marks the chunk done.
    A killed run leaves finished chunks marked; calling again with the same arguments
    computes only the others. The tasks run on the active dask scheduler: the default
    threaded one, or a ``dask.distributed`` ``Client`` (one model load per worker; with
    ``device="cuda"`` or CUDA auto-detected, each worker pins its own GPU, see
    :func:`xcorrdiff.inference.handles.worker_device`).

    Parameters
    ----------
    lr : xarray.Dataset
        Low-resolution inputs with a ``time`` dimension (see :func:`downscale`);
        numpy- or dask-backed, rechunked to ``time_chunk``.
    store : path-like
        Output zarr store, on a file system every worker sees.
    model, n_ensemble, seed, sampler, num_steps, s_churn, patch_shape, overlap, \
member_batch_size, device, dtype, return_mean
        As for :func:`downscale`.
    time_chunk : int, default 1
        Times per task and per zarr chunk.
    resume : bool, default True
        If ``store`` exists, continue it: check that it was written for the same request
        (model hash, variables, members, seed, sampler, steps, churn, sigmas, patches,
        precision, time chunk and time stamps) and compute only the chunks not done.
    overwrite : bool, default False
        Replace an existing ``store`` (takes precedence over ``resume``).

    Returns
    -------
    ZarrRun
        The store's path, the number of chunks, and which chunks this call computed and
        which it found done; ``run.open()`` opens the ensemble.

    Raises
    ------
    ValueError
        Bad arguments (as for :func:`downscale`); no ``time`` dimension; ``store`` exists
        but records another request (every differing key is named) or no request.
    FileExistsError
        ``store`` exists and both ``resume`` and ``overwrite`` are False.

    Notes
    -----
    The request is recorded in ``store/.xcorrdiff/request.json`` (and as the JSON attr
    ``xcorrdiff_request``); a chunk is done once ``store/.xcorrdiff/done/<index>`` exists,
    written atomically after its region. The member batch size and the device are not
    part of the request: resuming on another device gives members that are equally
    valid but may differ in the last bits from those of an uninterrupted run.

    Examples
    --------
    >>> run = xcorrdiff.downscale_to_zarr(lr, "ens.zarr", "model_dir", 8, time_chunk=4)  # doctest: +SKIP
    >>> run.computed, run.skipped  # doctest: +SKIP
    """
    time_chunk = _check_int("time_chunk", time_chunk, 1)
    for name, flag in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name}={flag!r} is invalid; expected True or False")
    if not isinstance(lr, xr.Dataset) or TIME not in lr.dims:
        dims = tuple(lr.dims) if isinstance(lr, xr.Dataset) else type(lr).__name__
        raise ValueError(
            f"lr has dimensions {dims}; downscale_to_zarr needs an xarray.Dataset with a "
            "'time' dimension (use lr.expand_dims('time') for a single time)"
        )
    path = Path(store).expanduser().resolve()
    exists = path.exists()
    if exists and not (resume or overwrite):
        raise FileExistsError(
            f"store={os.fspath(store)!r} already exists; pass resume=True to continue it, "
            "overwrite=True to replace it, or choose another path"
        )
    ens = downscale(
        lr.chunk({TIME: time_chunk}), model, n_ensemble, seed=seed, sampler=sampler,
        num_steps=num_steps, s_churn=s_churn, patch_shape=patch_shape, overlap=overlap,
        member_batch_size=member_batch_size, device=device, dtype=dtype,
        return_mean=return_mean,
    )  # fmt: skip
    bounds = chunk_bounds(ens.sizes[TIME], time_chunk)
    wanted: dict[Hashable, tuple[int, ...]] = {d: (ens.sizes[d],) for d in ens.dims if d != TIME}
    wanted[TIME] = tuple(b - a for a, b in bounds)
    if dict(ens.chunksizes) != wanted:
        ens = ens.chunk({d: c[0] if d != TIME else time_chunk for d, c in wanted.items()})
    request = request_record(
        ens, time_chunk=time_chunk, dtype=_resolve_dtype(dtype, _resolve_device(device))
    )
    if exists and not overwrite:
        check_request(path, request)
        done = done_chunks(path)
    else:
        init_store(ens, path, request, time_chunk=time_chunk, overwrite=exists)
        done = set()
    pending = [i for i in range(len(bounds)) if i not in done]
    if pending:
        dask.compute(*write_tasks(ens, path, bounds, pending))
    return ZarrRun(
        store=os.fspath(path),
        n_chunks=len(bounds),
        computed=tuple(pending),
        skipped=tuple(sorted(i for i in done if i < len(bounds))),
    )

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
import shutil
import warnings
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
from xcorrdiff.data.plausibility import ExpectedRange, expected_ranges
from xcorrdiff.data.units import convert_units
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
from xcorrdiff.inference.memory import check_memory
from xcorrdiff.inference.ownership import check_store_path, input_sources, remove_own_store
from xcorrdiff.inference.scan import check_scans, grid_digest, scan_input
from xcorrdiff.inference.store import (
    check_request,
    chunk_bounds,
    damaged_chunks,
    done_chunks,
    forget_chunks,
    init_store,
    read_markers,
    remove_orphan_markers,
    request_record,
    set_status,
    time_axes,
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


def _model_of(ref: ModelRef) -> CorrDiffModel:
    """The model a reference points at, on the CPU (loaded once per process and cached)."""
    return model_on(ref, torch.device("cpu")) if ref.model is None else ref.model


def _network_config(net: torch.nn.Module | None) -> dict[str, Any]:
    """The constructor arguments of a network (its inner SongUNet's, as in config.json)."""
    return dict(getattr(net, "config", None) or {})


def _input_ranges(
    model: CorrDiffModel, check_plausibility: bool
) -> tuple[ExpectedRange, ...] | None:
    if not isinstance(check_plausibility, bool):
        raise ValueError(
            f"check_plausibility={check_plausibility!r} is invalid; expected True or False"
        )
    if not check_plausibility:
        return None
    return expected_ranges(model.input_variables, model.input_normalizer.stats)


def _inputs_in_model_units(lr: xr.Dataset, model: CorrDiffModel) -> xr.Dataset:
    """The model's input variables of ``lr`` in the model's units (lazy for dask)."""
    return convert_units(
        lr[list(model.input_names)], {v.name: v.units for v in model.input_variables if v.units}
    )


def _check_input(
    lr: xr.Dataset, model: CorrDiffModel, ranges: tuple[ExpectedRange, ...] | None
) -> None:
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
    if any(isinstance(lr[name].data, da.Array) for name in model.input_names):
        return  # checked block by block, after regridding
    inputs = _inputs_in_model_units(lr, model)
    for name in model.input_names:
        data = np.asarray(inputs[name].values)
        finite = np.isfinite(data)
        bad = int(data.size - np.count_nonzero(finite))
        if bad:
            raise ValueError(
                f"lr variable {name!r} has {bad} NaN/inf values (of {data.size}); fill them "
                f"(e.g. lr[{name!r}].interpolate_na(...)) or drop those times before "
                "downscaling"
            )
    for expected in ranges or ():
        values = np.asarray(inputs[expected.name].values)
        if values.size:
            expected.check(float(values.min()), float(values.max()))


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
    model: CorrDiffModel | str | os.PathLike[str] | ModelRef | None = None,
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
    check_plausibility: bool = True,
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
    check_plausibility : bool, default True
        Refuse inputs more than 50 training standard deviations from the training mean, or
        outside the physical bounds of their quantity (absolute temperatures, speeds): such
        values are fill values or unit mistakes, and the networks turn them into NaN or
        nonsense (:mod:`xcorrdiff.data.plausibility`). ``False`` lets an expert pass them;
        NaN/inf inputs are always refused.

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
    from xcorrdiff import __version__

    ref = resolve_model(model)
    resolved = _model_of(ref)
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
    ranges = _input_ranges(resolved, check_plausibility)
    _check_input(lr, resolved, ranges)

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
    batch = check_memory(
        diffusion_config=_network_config(resolved.diffusion),
        regression_config=_network_config(resolved.regression),
        sample_shape=patch or resolved.shape,
        grid_shape=resolved.shape,
        n_outputs=len(resolved.output_variables),
        n_ensemble=n_ensemble,
        times_held=max(array.chunks[0], default=1),
        member_batch_size=batch,
        explicit_batch=member_batch_size is not None,
        device=torch_device,
        dtype=precision,
        eager=not lazy,
    ).member_batch_size
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
        output_names=tuple(resolved.output_names),
        caller_threads=caller_threads(),
        ranges=ranges,
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
        Chunks already complete in the store (resumed, verified), not recomputed.
    changed : tuple of int
        Finished chunks recomputed because their input changed (``recompute_changed=True``).
    repaired : tuple of int
        Finished chunks recomputed because their blocks no longer matched their checksums.
    """

    store: str
    n_chunks: int
    computed: tuple[int, ...]
    skipped: tuple[int, ...]
    changed: tuple[int, ...] = ()
    repaired: tuple[int, ...] = ()

    def open(self) -> xr.Dataset:
        """The ensemble in the store, lazily (``xr.open_zarr``)."""
        return xr.open_zarr(self.store, consolidated=False)


def _check_flags(**flags: object) -> None:
    for name, flag in flags.items():
        if not isinstance(flag, bool):
            raise ValueError(f"{name}={flag!r} is invalid; expected True or False")


def _changed_chunks(
    markers: dict[int, dict[str, Any]], digests: Sequence[str], times: np.ndarray,
    bounds: Sequence[tuple[int, int]], recompute: bool, path: Path,
) -> list[int]:  # fmt: skip
    """Finished chunks whose recorded input fingerprint differs from the new input's."""
    changed = sorted(i for i, m in markers.items() if m.get("input_digest") != digests[i])
    if changed and not recompute:
        first, last = times[bounds[changed[0]][0]], times[bounds[changed[-1]][1] - 1]
        raise ValueError(
            f"the input differs from the one store={os.fspath(path)!r} was written from, at "
            f"{len(changed)} of its {len(markers)} finished time chunks (times {first} to "
            f"{last}); resuming would mix results of two inputs. Pass recompute_changed=True "
            "(CLI: --recompute-changed) to recompute those chunks, overwrite=True to start "
            "again, or write to another store"
        )
    return changed


def _resume_state(
    path: Path, ens: xr.Dataset, request: dict[str, Any], digests: Sequence[str],
    bounds: Sequence[tuple[int, int]], recompute_changed: bool,
) -> tuple[set[int], list[int], list[int]]:  # fmt: skip
    """``(done, changed, damaged)`` of an existing store, after checking it may be resumed."""
    check_request(path, request)
    remove_orphan_markers(path)
    markers = {i: m for i, m in read_markers(path).items() if i < len(bounds)}
    times = ens[TIME].values
    changed = _changed_chunks(markers, digests, times, bounds, recompute_changed, path)
    kept = {i: m for i, m in markers.items() if i not in changed}
    damaged = damaged_chunks(path, kept, time_axes(ens))
    if damaged:
        warnings.warn(
            f"store={os.fspath(path)!r}: {len(damaged)} finished time chunks {damaged[:5]} no "
            "longer match their checksums (damaged on disk); computing them again",
            UserWarning,
            stacklevel=3,
        )
    forget_chunks(path, [*changed, *damaged])
    return set(kept) - set(damaged), changed, damaged


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
    check_plausibility: bool = True,
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
    model, n_ensemble, seed, sampler, num_steps, s_churn, patch_shape, overlap, \
member_batch_size, device, dtype, return_mean, check_plausibility
        As for :func:`downscale`.
    time_chunk : int, default 1
        Times per task and per zarr chunk.
    resume : bool, default True
        If ``store`` exists, continue it: check that it was written for the same request
        (model hash, variables, members, seed, sampler, steps, churn, sigmas, patches,
        precision, time chunk, time stamps and input grid), that each finished chunk was
        computed from the same input values (fingerprints) and still holds what was
        written (checksums; damaged chunks are computed again, with a warning), then
        compute only the chunks not done.
    overwrite : bool, default False
        Replace an existing ``store`` (takes precedence over ``resume``). Only a store
        xcorrdiff wrote (holding nothing else) or an empty folder is ever replaced.
    recompute_changed : bool, default False
        When resuming, recompute the finished chunks whose input changed instead of
        refusing to resume.

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
    removes the store it created. The member batch size and the device are not part of
    the request: resuming on another device gives members that are equally valid but may
    differ in the last bits from those of an uninterrupted run.

    Examples
    --------
    >>> run = xcorrdiff.downscale_to_zarr(lr, "ens.zarr", "model_dir", 8, time_chunk=4)  # doctest: +SKIP
    >>> run.computed, run.skipped  # doctest: +SKIP
    """
    time_chunk = _check_int("time_chunk", time_chunk, 1)
    _check_flags(resume=resume, overwrite=overwrite, recompute_changed=recompute_changed)
    if not isinstance(lr, xr.Dataset) or TIME not in lr.dims:
        dims = tuple(lr.dims) if isinstance(lr, xr.Dataset) else type(lr).__name__
        raise ValueError(
            f"lr has dimensions {dims}; downscale_to_zarr needs an xarray.Dataset with a "
            "'time' dimension (use lr.expand_dims('time') for a single time)"
        )
    path = check_store_path(store, protected=input_sources(lr))
    exists = path.exists() or path.is_symlink()
    if exists and not (resume or overwrite):
        raise FileExistsError(
            f"store={os.fspath(store)!r} already exists; pass resume=True to continue it, "
            "overwrite=True to replace it, or choose another path"
        )
    ref = resolve_model(model)  # its files are hashed once, here
    ens = downscale(
        lr.chunk({TIME: time_chunk}), ref, n_ensemble, seed=seed, sampler=sampler,
        num_steps=num_steps, s_churn=s_churn, patch_shape=patch_shape, overlap=overlap,
        member_batch_size=member_batch_size, device=device, dtype=dtype,
        return_mean=return_mean, check_plausibility=check_plausibility,
    )  # fmt: skip
    bounds = chunk_bounds(ens.sizes[TIME], time_chunk)
    ens = _chunked_like(ens, bounds, time_chunk)
    resolved = _model_of(ref)
    inputs = _inputs_in_model_units(lr, resolved)
    scans = scan_input(inputs.chunk({TIME: time_chunk}), bounds)
    check_scans(scans, bounds, ens[TIME].values, _input_ranges(resolved, check_plausibility))
    digests = [s.digest for s in scans]
    request = request_record(
        ens, time_chunk=time_chunk, dtype=_resolve_dtype(dtype, _resolve_device(device)),
        input_grid_digest=grid_digest(inputs),
    )  # fmt: skip
    if exists and overwrite:
        remove_own_store(path)
    changed: list[int] = []
    damaged: list[int] = []
    resumed = path.exists()
    if resumed:
        done, changed, damaged = _resume_state(
            path, ens, request, digests, bounds, recompute_changed
        )
    else:
        _create_store(ens, path, request, time_chunk=time_chunk, n_chunks=len(bounds))
        done = set()
    pending = [i for i in range(len(bounds)) if i not in done]
    _write_pending(ens, path, bounds, pending, digests, created=not resumed)
    return ZarrRun(
        store=os.fspath(path), n_chunks=len(bounds), computed=tuple(pending),
        skipped=tuple(sorted(done)), changed=tuple(changed), repaired=tuple(damaged),
    )  # fmt: skip


def _chunked_like(
    ens: xr.Dataset, bounds: Sequence[tuple[int, int]], time_chunk: int
) -> xr.Dataset:
    """``ens`` with one dask chunk per time chunk and one along every other dimension."""
    wanted: dict[Hashable, tuple[int, ...]] = {d: (ens.sizes[d],) for d in ens.dims if d != TIME}
    wanted[TIME] = tuple(b - a for a, b in bounds)
    if dict(ens.chunksizes) != wanted:
        ens = ens.chunk({d: c[0] if d != TIME else time_chunk for d, c in wanted.items()})
    return ens


def _create_store(ens: xr.Dataset, path: Path, request: dict[str, Any], **kw: int) -> None:
    """Create the store; a failure half-way (a full or read-only disk) removes what it made."""
    try:
        init_store(ens, path, request, **kw)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)  # it did not exist: all of it is ours
        raise


def _write_pending(
    ens: xr.Dataset, path: Path, bounds: Sequence[tuple[int, int]], pending: Sequence[int],
    digests: Sequence[str], *, created: bool,
) -> None:  # fmt: skip
    """Compute and write the pending chunks; mark the store complete at the end.

    If this call created the store and fails before any chunk is finished, the store (ours,
    holding nothing of value) is removed.
    """
    n = len(bounds)
    try:
        if pending:
            set_status(path, n - len(pending), n)
            dask.compute(*write_tasks(ens, path, bounds, pending, digests))
    except BaseException:
        if created and not done_chunks(path):
            shutil.rmtree(path, ignore_errors=True)
        raise
    set_status(path, n, n)

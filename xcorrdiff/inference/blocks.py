"""The per-chunk work of the inference pipeline: random streams, regression, sampling.

These functions run inside dask tasks on numpy blocks of normalized data; everything they
need besides the model travels in a small frozen :class:`Settings`.
"""

from __future__ import annotations

import hashlib
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from xcorrdiff._checks import autocast, nonfinite_counts
from xcorrdiff.config import SAMPLERS
from xcorrdiff.data.plausibility import ExpectedRange
from xcorrdiff.data.transforms import TRANSFORMS
from xcorrdiff.diffusion import (
    Denoiser,
    PatchGrid,
    StationGuidance,
    build_condition,
    edm_sigmas,
    initial_state,
    mean_of_inputs,
    samplers,
)
from xcorrdiff.inference.handles import ModelRef, model_on, worker_device
from xcorrdiff.inference.request import DownscaleRequest
from xcorrdiff.inference.settings import FILL_HINT
from xcorrdiff.model import CorrDiffModel
from xcorrdiff.nn import SongUNetPosEmbd

__all__ = [
    "Settings",
    "caller",
    "mean_block",
    "member_generators",
    "member_seed",
    "sample_block",
    "time_keys",
]


def time_keys(times: np.ndarray | None, n: int) -> np.ndarray:
    """Non-negative 64-bit keys of the time stamps: the identity of each time's noise.

    Parameters
    ----------
    times : numpy.ndarray or None
        The ``time`` coordinate (datetime64, timedelta64, numbers, cftime or other objects),
        or ``None`` when the input has none.
    n : int
        Number of times.

    Returns
    -------
    numpy.ndarray of uint64
        Datetimes: nanoseconds since 1970 plus ``2**63``; numbers: their float64 bits;
        other objects (cftime): the first 8 bytes of the SHA-256 of ``str(value)``.
        Without a time coordinate the position ``0 … n-1`` is the key, with a
        :class:`UserWarning` (members then depend on which times were selected).

    Raises
    ------
    ValueError
        Two times share a stamp: their members would draw the same noise.
    """
    if times is None:
        warnings.warn(
            f"the input has no 'time' coordinate, so the members' random streams are keyed "
            f"by position (0 … {n - 1}): selecting other times changes them. Give the input a "
            "time coordinate (lr.assign_coords(time=...)) for streams that follow the time stamps",
            UserWarning,
            stacklevel=3,
        )
        return np.arange(n, dtype=np.uint64)
    values = np.asarray(times)
    unique, counts = np.unique(values.astype(str), return_counts=True)
    if (counts > 1).any():
        repeated = [str(v) for v in unique[counts > 1][:5]]
        raise ValueError(
            f"the input's time coordinate repeats stamps {repeated} ({int((counts > 1).sum())} "
            "repeated in all); each time's members draw noise keyed by its stamp, so repeated "
            "stamps would get identical noise. Drop the duplicates first, e.g. "
            "lr.drop_duplicates('time')"
        )
    if np.issubdtype(values.dtype, np.datetime64) or np.issubdtype(values.dtype, np.timedelta64):
        ns = values.astype("datetime64[ns]" if values.dtype.kind == "M" else "timedelta64[ns]")
        return (ns.astype(np.int64).astype(np.uint64) + np.uint64(2**63)).astype(np.uint64)
    if np.issubdtype(values.dtype, np.number):
        return values.astype(np.float64).view(np.uint64).copy()
    keys = [
        int.from_bytes(hashlib.sha256(str(v).encode()).digest()[:8], "little") for v in values
    ]  # cftime and other objects
    return np.asarray(keys, dtype=np.uint64)


def member_seed(seed: int, time_key: int, member: int, lead: int | None = None) -> int:
    """The 64-bit seed of one member's random stream at one time (and lead time).

    Parameters
    ----------
    seed : int
        User seed (>= 0).
    time_key : int
        64-bit key of the time stamp (nanoseconds since 1970 plus 2**63 for datetimes).
    member : int
        Member index (>= 0).
    lead : int, optional
        Lead-time label of a lead-time-aware model (appended to the entropy; ``None`` for
        other models, whose streams are unchanged).

    Returns
    -------
    int
        ``np.random.SeedSequence([seed, time_key >> 32, time_key & 0xFFFFFFFF, member
        (, lead)])``'s first 64-bit state word.

    Examples
    --------
    >>> member_seed(0, 2**63, 0) == member_seed(0, 2**63, 0) != member_seed(0, 2**63, 1)
    True
    """
    key = int(time_key)
    entropy = [int(seed), key >> 32, key & 0xFFFFFFFF, int(member)]
    sequence = np.random.SeedSequence(entropy if lead is None else [*entropy, int(lead)])
    return int(sequence.generate_state(1, dtype=np.uint64)[0])


# --- settings and the per-block work ---------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Everything a block needs besides the model (small and picklable): the call's
    request and what the model makes of it."""

    request: DownscaleRequest
    condition_variables: tuple[str, ...]
    output_names: tuple[str, ...]
    #: ``(host, pid)`` of the process that built the graph (see :func:`_use_caller_threads`);
    #: ``None`` leaves each thread's torch thread count as it is.
    caller: tuple[str, int] | None = None
    #: What the model expects of each input channel (the first channels of a condition);
    #: ``None`` skips the plausibility check.
    ranges: tuple[ExpectedRange, ...] | None = None
    #: The lead-time label of every sample of a lead-time-aware model, else None.
    lead_label: int | None = None

    @property
    def n_outputs(self) -> int:
        return len(self.output_names)

    def lead(self, n: int, device: torch.device) -> torch.Tensor | None:
        """The lead-time labels of ``n`` samples (None for other models)."""
        if self.lead_label is None:
            return None
        return torch.full((n,), self.lead_label, dtype=torch.long, device=device)

    @property
    def origin(self) -> tuple[int, int]:
        """Top-left pixel of the generated rectangle in the model's grid."""
        region = self.request.domain.region
        return (0, 0) if region is None else (region[0], region[2])

    def out_shape(self, shape: tuple[int, int]) -> tuple[int, int]:
        """Shape of the generated rectangle of a grid of ``shape``."""
        if self.request.domain.region is None:
            return shape
        y0, y1, x0, x1 = self.request.domain.region
        return (y1 - y0, x1 - x0)


def member_generators(
    rows: Sequence[tuple[int, int]], time_keys: np.ndarray, settings: Settings, device: torch.device
) -> list[torch.Generator]:
    """One generator per ``(time, member)`` row of a block, seeded by :func:`member_seed`
    from the request's seed, the time's key and the lead-time label."""
    seed = settings.request.ensemble.seed
    return [
        torch.Generator(device=device).manual_seed(
            member_seed(seed, int(time_keys[t]), m, settings.lead_label)
        )
        for t, m in rows
    ]


def caller() -> tuple[str, int]:
    """This process's identity."""
    return (socket.gethostname(), os.getpid())


def _use_caller_threads(settings: Settings) -> None:
    """In the process that built the graph, compute with the caller's torch thread count.

    PyTorch sets OpenMP's thread count per thread, once, when the thread first computes:
    a dask pool thread keeps the count it started with even after the caller changes
    ``torch.set_num_threads``, and a different count changes the order of floating-point
    reductions (results then differ in the last bit depending on which thread ran a
    block). Blocks run elsewhere (distributed workers) keep their own process's count.
    """
    if settings.caller is None:
        return
    threads = settings.request.runtime.threads
    if settings.caller == caller() and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _check_finite(condition: np.ndarray, names: Sequence[str]) -> None:
    bad = nonfinite_counts(condition, names, axis=1)
    if not bad:
        return
    raise ValueError(
        f"the input has NaN/inf values after regridding onto the HR grid: {bad} (variable: "
        f"count); {FILL_HINT}"
    )


def _check_ranges(condition: np.ndarray, ranges: Sequence[ExpectedRange] | None) -> None:
    """Check the input channels of a normalized condition block against their ranges."""
    for channel, expected in enumerate(ranges or ()):
        z = condition[:, channel]
        low, high = (float(v) * expected.std + expected.mean for v in (z.min(), z.max()))
        inverse = TRANSFORMS[expected.transform].inverse
        low, high = float(inverse(low)), float(inverse(high))
        expected.check(low, high)


def _check_outputs(values: np.ndarray, names: Sequence[str], what: str) -> None:
    """Refuse NaN/inf produced by the networks from finite input."""
    bad = nonfinite_counts(values, names, axis=-3)
    if not bad:
        return
    raise FloatingPointError(
        f"the {what} produced NaN/inf from finite input: {bad} (variable: count). The input is "
        "probably far outside what the model was trained on (check its values and units), or "
        "reduced precision overflowed (try dtype=None)"
    )


#: Batch sizes that ran out of memory, per (device, work, shape): later blocks start below.
_OOM_LIMITS: dict[tuple[str, str, tuple[int, ...]], int] = {}


def _free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_in_batches(
    n: int,
    size: int,
    work: Callable[[slice], None],
    *,
    device: torch.device,
    key: tuple[str, tuple[int, ...]],
) -> int:
    """Call ``work`` on consecutive slices of ``range(n)``, halving them on out-of-memory.

    A batch that raises :class:`torch.OutOfMemoryError` is retried at half the size (its
    results are only kept once it succeeds), and the smaller size holds for the rest of
    this and of later calls with the same ``device`` and ``key``. Every sample has its own
    random stream, so the batch size never changes which sample a row gets.

    Returns
    -------
    int
        The batch size in use at the end.
    """
    limit_key = (str(device), *key)
    size = max(1, min(size, _OOM_LIMITS.get(limit_key, size)))
    start = 0
    while start < n:
        rows = slice(start, min(start + size, n))
        try:
            work(rows)
        except torch.OutOfMemoryError as exc:
            _free_memory(device)
            if size == 1:
                raise torch.OutOfMemoryError(
                    f"{key[0]}: one sample of shape {key[1]} does not fit in {device}'s memory "
                    "even alone; sample patch by patch (patch_shape=...) or use bfloat16 "
                    f"(dtype='bfloat16'). Original error: {exc}"
                ) from exc
            size = max(1, size // 2)
            _OOM_LIMITS[limit_key] = size
            continue
        start = rows.stop
    return size


def mean_block(condition: np.ndarray, ref: ModelRef, settings: Settings) -> np.ndarray:
    """Regression mean μ ``(time, C_out, y, x)`` of a block of normalized conditions."""
    _check_finite(condition, settings.condition_variables)
    _check_ranges(condition, settings.ranges)
    _use_caller_threads(settings)
    runtime = settings.request.runtime
    device = worker_device(runtime.device)
    model = model_on(ref, device)
    out = np.empty((condition.shape[0], settings.n_outputs, *condition.shape[2:]), np.float32)
    grid, skip = model.regression_grid(), model.regression_skip()

    def work(rows: slice) -> None:
        x = torch.from_numpy(np.ascontiguousarray(condition[rows], np.float32)).to(device)
        with autocast(device, runtime.precision):
            lead = settings.lead(x.shape[0], device)
            mean = mean_of_inputs(model.regression, x, settings.n_outputs, grid, lead, skip)
        out[rows] = mean.float().cpu().numpy()

    with torch.inference_mode():
        run_in_batches(
            condition.shape[0],
            runtime.member_batch_size,
            work,
            device=device,
            key=("regression", condition.shape[1:]),
        )
    _check_outputs(out, settings.output_names, "regression network")
    return out


def _patch_grid(model: CorrDiffModel, settings: Settings) -> PatchGrid | None:
    shape = settings.out_shape(model.shape)
    domain = settings.request.domain
    if domain.patch_shape is not None:
        return PatchGrid(shape, domain.patch_shape, domain.overlap, blend="taper")
    if domain.region is not None or model.conditioning.get("global_lowres", True):
        # One patch over the generated rectangle: the sampler appends the global input
        # (identity-resized on the whole domain).
        return PatchGrid(shape, shape, 0)
    return None


def _residual_scale(model: CorrDiffModel, device: torch.device) -> torch.Tensor | None:
    """The model's per-output residual scale ``(1, C_out, 1, 1)``, or None."""
    scales = model.residual_scale
    if scales is None:
        return None
    values = [scales[v.name] for v in model.output_variables]
    return torch.tensor(values, device=device).reshape(1, -1, 1, 1)


def _denoiser(
    net: torch.nn.Module,
    model: CorrDiffModel,
    grid: PatchGrid | None,
    precision: str,
    inputs: torch.Tensor,
    mean: torch.Tensor,
    origin: tuple[int, int] = (0, 0),
    lead: torch.Tensor | None = None,
) -> Denoiser:
    """``net`` (the model's diffusion network or its student) with the condition of these
    rows bound (the block's patch grid, built once per block: its blending weights are
    computed at construction)."""
    hr_mean = bool(model.conditioning.get("hr_mean", True))
    condition = build_condition(inputs, mean if hr_mean else None, lead)
    return Denoiser(
        net,
        condition,
        grid=grid,
        origin=origin,
        global_inputs=bool(model.conditioning.get("global_lowres", True)),
        positional=isinstance(getattr(net, "model", None), SongUNetPosEmbd),
        precision=precision,
    )


def _station_tensors(
    observations: np.ndarray | None,
    geometry: np.ndarray | None,
    settings: Settings,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The block's observations ``(time, 2, C_out, S)`` and corners ``(3, 4, S)`` on the
    device, moved once per block (None without guidance)."""
    if observations is None or geometry is None or settings.request.guidance.guidance_scale <= 0:
        return None
    obs = torch.from_numpy(np.ascontiguousarray(observations)).to(device)
    return obs, torch.from_numpy(geometry).to(device)


def _guidance(
    stations: tuple[torch.Tensor, torch.Tensor] | None,
    times: torch.Tensor,
    mu: torch.Tensor,
    scale: torch.Tensor | None,
    settings: Settings,
) -> StationGuidance | None:
    """The DPS potential for the batch's rows (None without observations)."""
    if stations is None:
        return None
    obs, place = stations[0][times], stations[1]
    return StationGuidance(
        rows=place[0].long(), cols=place[1].long(), weights=place[2], values=obs[:, 0],
        sigma=obs[:, 1], mean=mu, scale=scale, strength=settings.request.guidance.guidance_scale,
    )  # fmt: skip


def sample_block(
    condition: np.ndarray,
    mean: np.ndarray,
    time_keys: np.ndarray,
    ref: ModelRef,
    observations: np.ndarray | None = None,
    geometry: np.ndarray | None = None,
    *,
    settings: Settings,
) -> np.ndarray:
    """Samples ``μ + s · residual``, ``(member, time, C_out, y, x)``, normalized.

    ``s`` is the model's ``residual_scale`` (1 when it has none). With ``observations``
    (``(time, 2, C_out, S)``: normalized values and error std) and ``geometry``
    (``(3, 4, S)``: corner rows, columns, weights) the sampler is guided toward them
    (:mod:`xcorrdiff.diffusion.guidance`).
    """
    _use_caller_threads(settings)
    request = settings.request
    sampling, runtime = request.sampling, request.runtime
    device = worker_device(runtime.device)
    model = model_on(ref, device)
    net = model.student if sampling.student else model.diffusion
    assert net is not None  # checked by downscale
    n_times, n_members = condition.shape[0], request.ensemble.n_ensemble
    n_cond, n_out = condition.shape[1], settings.n_outputs
    sigmas = edm_sigmas(
        sampling.num_steps,
        sigma_min=sampling.sigma_min,
        sigma_max=sampling.sigma_max,
        rho=sampling.rho,
        net=net,
        device=device,
    )
    rows = [(t, m) for t in range(n_times) for m in range(n_members)]
    shape = settings.out_shape(condition.shape[2:])
    (y0, x0), (h, w) = settings.origin, shape
    out = np.empty((n_members, n_times, n_out, *shape), np.float32)
    cond_t = torch.from_numpy(np.ascontiguousarray(condition, np.float32)).to(device)
    mean_t = torch.from_numpy(np.ascontiguousarray(mean, np.float32)).to(device)
    scale = _residual_scale(model, device)
    grid = _patch_grid(model, settings)
    stations = _station_tensors(observations, geometry, settings, device)
    noise = SAMPLERS[sampling.sampler].noise_arguments(sampling.s_churn, sampling.renoise)
    noise_scale = (
        None
        if sampling.noise_scale is None
        else torch.tensor(sampling.noise_scale, dtype=torch.float64, device=device)[:, None, None]
    )

    def work(batch: slice) -> None:
        times = torch.tensor([t for t, _ in rows[batch]], device=device)
        generators = member_generators(rows[batch], time_keys, settings, device)
        mu = mean_t[times]
        lead = settings.lead(len(times), device)
        denoiser = _denoiser(
            net, model, grid, runtime.precision, cond_t[times], mu, settings.origin, lead
        )
        mu = mu[..., y0 : y0 + h, x0 : x0 + w]
        frame = (tuple(condition.shape[2:]), settings.origin)
        x = initial_state(generators, (n_out, *shape), sigmas, frame=frame)
        if noise_scale is not None:
            x = x * noise_scale.to(x.dtype)
        guide = _guidance(stations, times, mu, scale, settings)
        residual = getattr(samplers, sampling.sampler)(
            denoiser, x, sigmas, generators=generators, frame=frame, guidance=guide,
            **noise,
        )  # fmt: skip
        if scale is not None:
            residual = residual * scale.to(residual.dtype)
        values = (mu.to(residual.dtype) + residual).float().cpu().numpy()
        for k, (t, m) in enumerate(rows[batch]):
            out[m, t] = values[k]

    with torch.no_grad() if stations is not None else torch.inference_mode():  # autograd
        run_in_batches(
            len(rows),
            runtime.member_batch_size,
            work,
            device=device,
            key=("sampling", (n_cond, *condition.shape[2:])),
        )
    _check_outputs(out, settings.output_names, "diffusion sampler")
    return out

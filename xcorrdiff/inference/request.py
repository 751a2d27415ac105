"""One downscale request, built once from a call's arguments (as ``TrainConfig`` is).

:func:`make_request` checks every argument of :func:`~xcorrdiff.inference.api.downscale`
against the model and resolves it (the model's own sampler settings by default, the region
in pixels of the model's grid, a digest of the observations' values) into a frozen, nested
:class:`DownscaleRequest`. Everything else follows from that record by rule:

* the provenance attributes of the output (:meth:`DownscaleRequest.attrs`): every field,
  ``None`` left out;
* the resume record of a zarr store (:meth:`DownscaleRequest.fingerprint`): every field not
  marked runtime-only where it is defined (``field(metadata=RUNTIME_ONLY)``), so a resumed
  store is checked against every setting that changes its numbers, with no hand-kept list;
* the blocks' settings (:class:`~xcorrdiff.inference.blocks.Settings` carries the request).

Each field is named after the argument of ``downscale`` it comes from
(:data:`~xcorrdiff.inference.api.OPTIONS`, whose signature holds every default), and the
command line's flag is that name with dashes (``--num-steps``): a new option is one field
here (with its check), one argument of ``downscale`` (and of ``downscale_to_zarr``, checked
to agree by the tests) and one flag.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dask
import torch
import xarray as xr

from xcorrdiff._checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    precision_name,
    resolve_device,
)
from xcorrdiff.config import RUNTIME_ONLY, SAMPLERS, check_steps
from xcorrdiff.data.fill import FILL_METHODS
from xcorrdiff.inference.handles import ModelRef
from xcorrdiff.inference.observations import check_guidance
from xcorrdiff.inference.region import check_region, resolve_region
from xcorrdiff.model import CorrDiffModel

__all__ = [
    "DownscaleRequest",
    "make_request",
]


# --- the record -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class EnsembleRequest:
    """How many members, from which seed."""

    n_ensemble: int
    seed: int


@dataclass(frozen=True, kw_only=True)
class SamplerRequest:
    """The EDM sampler: the model's own settings unless the call overrode them."""

    sampler: str
    num_steps: int
    s_churn: float
    #: ``"ancestral"``'s fraction of re-drawn noise; None for the other samplers.
    renoise: float | None
    #: The model's per-channel factors on the initial noise (calibration); None: 1.
    noise_scale: tuple[float, ...] | None
    sigma_min: float
    sigma_max: float
    rho: float
    #: Where the settings came from: ``"model"`` or ``"argument (the model's: ...)"``.
    sampler_source: str = field(metadata=RUNTIME_ONLY)
    #: Whether the model's distilled student samples (with its own settings above).
    student: bool = False


@dataclass(frozen=True, kw_only=True)
class DomainRequest:
    """Where the members are generated: patches, and the region in pixels of the model's
    grid ``(y0, y1, x0, x1)`` (None: the whole domain)."""

    patch_shape: tuple[int, int] | None
    overlap: int
    region: tuple[int, int, int, int] | None


@dataclass(frozen=True, kw_only=True)
class GuidanceRequest:
    """Station guidance: ζ (0 when unguided) and a digest of the observations' values."""

    guidance_scale: float
    observations_digest: str | None


@dataclass(frozen=True, kw_only=True)
class InputRequest:
    """What is done to the input before it is used."""

    fill_missing: str | None
    check_plausibility: bool = field(metadata=RUNTIME_ONLY)


@dataclass(frozen=True, kw_only=True)
class RuntimeRequest:
    """Where and how the numbers are computed: equally valid members whatever these are
    (they may differ in the last bits), so none is checked when a store resumes."""

    device: str = field(metadata=RUNTIME_ONLY)
    precision: str = field(metadata=RUNTIME_ONLY)
    member_batch_size: int = field(metadata=RUNTIME_ONLY)
    #: Whether the call gave ``member_batch_size`` (else the memory check may lower it).
    explicit_batch: bool = field(metadata=RUNTIME_ONLY)
    #: torch intra-op threads of the calling thread.
    threads: int = field(metadata=RUNTIME_ONLY)


@dataclass(frozen=True, kw_only=True)
class DownscaleRequest:
    """What one call of :func:`~xcorrdiff.inference.api.downscale` asked for, resolved."""

    model_hash: str
    model_id: str = field(metadata=RUNTIME_ONLY)
    ensemble: EnsembleRequest
    sampling: SamplerRequest
    domain: DomainRequest
    guidance: GuidanceRequest
    inputs: InputRequest
    return_mean: bool
    #: Lead-time labels of the forecasts (lead-time-aware models), else None.
    lead_labels: tuple[int, ...] | None = None
    runtime: RuntimeRequest

    def leaves(self) -> Iterator[tuple[str, Any, bool]]:
        """``(name, value, runtime_only)`` of every field, groups flattened."""
        yield from _leaves(self, runtime_only=False)

    def fingerprint(self) -> dict[str, Any]:
        """Every field that changes the numbers (all but the runtime-only), JSON-able."""
        return {name: _jsonable(value) for name, value, runtime in self.leaves() if not runtime}

    def attrs(self) -> dict[str, Any]:
        """Provenance attributes: every field (None left out), netCDF-safe."""
        return {name: _attr(name, value) for name, value, _ in self.leaves() if value is not None}

    def replace(self, group: str | None = None, **changes: Any) -> DownscaleRequest:
        """A copy with ``changes`` made in ``group`` (or at the top level)."""
        if group is None:
            return dataclasses.replace(self, **changes)
        return dataclasses.replace(
            self, **{group: dataclasses.replace(getattr(self, group), **changes)}
        )


def _leaves(record: Any, *, runtime_only: bool) -> Iterator[tuple[str, Any, bool]]:
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        runtime = runtime_only or bool(f.metadata.get("runtime_only", False))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield from _leaves(value, runtime_only=runtime)
        else:
            yield f.name, value, runtime


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _attr(name: str, value: Any) -> Any:
    if name == "patch_shape":
        return f"{value[0]}x{value[1]}"
    if isinstance(value, bool):
        return int(value)  # netCDF has no booleans
    return _jsonable(value)


# --- building it ------------------------------------------------------------------------------


def resolve_precision(precision: Any, dtype: Any, device: torch.device) -> str:
    """The network precision; ``dtype`` is its deprecated spelling (warns)."""
    argument = "precision"
    if dtype is not None:
        warnings.warn(
            "dtype= is deprecated; pass precision= (the same values: 'float32', 'bfloat16', "
            "'float16')",
            DeprecationWarning,
            stacklevel=5,  # the caller of downscale or downscale_to_zarr
        )
        if precision is not None and precision_name(precision) != precision_name(dtype):
            raise ValueError(
                f"precision={precision!r} and dtype={dtype!r} disagree; pass precision only"
            )
        precision, argument = dtype, "dtype"
    if precision is None:
        return "float32"
    name = precision_name(precision, argument=argument)
    if name == "float16" and device.type != "cuda":
        raise ValueError(
            f"{argument}={precision!r} (half-precision inference) needs a CUDA device, got "
            f"device={str(device)!r}; on the CPU use {argument}=None (float32) or 'bfloat16'"
        )
    return name


def _use_student(
    model: CorrDiffModel,
    student: bool | None,
    sampler: str | None,
    num_steps: int | None,
    s_churn: float | None,
    renoise: float | None,
) -> bool:
    """Whether the student samples: ``student``, else the model's default; sampler
    options beside it, or a student the model lacks, are refused."""
    config = model.student_config
    given = {"sampler": sampler, "num_steps": num_steps, "s_churn": s_churn, "renoise": renoise}
    given = {k: v for k, v in given.items() if v is not None}
    if student is None:  # the model's default, unless the call sets the teacher's sampler
        return config is not None and config.default and not given
    if check_bool("student", student) and config is None:
        raise ValueError(
            "student=True but this model has no distilled student; distil one with "
            "xcorrdiff.train.distill(model, lr, hr, steps=2), or pass student=False"
        )
    if student and given:
        assert config is not None
        raise ValueError(
            f"{sorted(given)} may not be passed with student=True: the student samples on "
            f"the levels it was distilled at ({config.sampler.num_steps} Euler steps); pass "
            "student=False to sample the teacher with other settings"
        )
    return bool(student)


def _sampler(
    model: CorrDiffModel,
    sampler: str | None,
    num_steps: int | None,
    s_churn: float | None,
    renoise: float | None,
    student: bool | None = None,
) -> SamplerRequest:
    """The sampler's settings: the model's unless the call names them; each sampler's noise
    argument (:data:`~xcorrdiff.config.SAMPLERS`) defaulted, the other refused."""
    if _use_student(model, student, sampler, num_steps, s_churn, renoise):
        assert model.student_config is not None  # checked by _use_student
        own = model.student_config.sampler
        return SamplerRequest(
            sampler=own.sampler, num_steps=own.num_steps, s_churn=0.0, renoise=None,
            noise_scale=own.noise_scale, sigma_min=float(own.sigma_min),
            sigma_max=float(own.sigma_max), rho=float(own.rho),
            sampler_source="model (its distilled student)", student=True,
        )  # fmt: skip
    stored = model.sampler
    if sampler is not None and sampler not in SAMPLERS:
        raise ValueError(
            f"sampler={sampler!r} is invalid; expected None (the model's) or one of "
            f"{list(SAMPLERS)}"
        )
    name = stored.sampler if sampler is None else sampler
    info = SAMPLERS[name]
    if num_steps is None:
        num_steps = stored.num_steps if name == stored.sampler else info.default_steps
    # a rectified-flow model's Heun has no minimum (its straight paths do not diverge)
    flow = model.regression is None
    num_steps = (
        check_int("num_steps", num_steps, minimum=1) if flow else check_steps(name, num_steps)
    )
    given = {"s_churn": s_churn, "renoise": renoise}
    for argument, value in given.items():
        if value is not None and info.noise != argument:
            raise ValueError(
                f"{argument}={value!r} does not apply to sampler={name!r}; it is an argument "
                f"of {[n for n, i in SAMPLERS.items() if i.noise == argument]}"
            )
    if info.noise == "s_churn" and s_churn is None:
        stored_churn = stored.s_churn if name == stored.sampler else None
        s_churn = info.default_noise * num_steps if stored_churn is None else stored_churn
    if info.noise == "renoise":
        renoise = info.default_noise if renoise is None else renoise
        if check_positive("renoise", renoise, allow_zero=True) > 1:
            raise ValueError(f"renoise={renoise!r} is invalid; expected a fraction in [0, 1]")
    churn = check_positive("s_churn", s_churn, allow_zero=True) if s_churn is not None else 0.0
    return SamplerRequest(
        sampler=name,
        num_steps=num_steps,
        s_churn=float(churn),
        renoise=None if renoise is None else float(renoise),
        noise_scale=stored.noise_scale,
        sigma_min=float(stored.sigma_min),
        sigma_max=float(stored.sigma_max),
        rho=float(stored.rho),
        sampler_source="model" if sampler is None else f"argument (the model's: {stored.sampler})",
    )


def diffusion_factor(model: CorrDiffModel) -> int:
    """The diffusion network's downsampling factor: sample sides must be multiples of it."""
    assert model.diffusion is not None
    return int(getattr(getattr(model.diffusion, "model", None), "input_shape_mult", 1))


def _patches(
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
    factor = diffusion_factor(model)
    if patch[0] % factor or patch[1] % factor:
        raise ValueError(
            f"patch_shape={patch} is invalid for this diffusion network; expected sides "
            f"divisible by {factor} (its downsampling factor)"
        )
    overlap = min(patch) // 4 if overlap is None else check_int("overlap", overlap, minimum=0)
    if overlap >= min(patch):
        raise ValueError(
            f"overlap={overlap} must be smaller than the patch sides {patch}; reduce it"
        )
    return (patch[0], patch[1]), overlap


def _domain(
    model: CorrDiffModel,
    patch_shape: Sequence[int] | None,
    overlap: int | None,
    region: Mapping[str, Any] | None,
) -> DomainRequest:
    patch, overlap = _patches(model, patch_shape, overlap)
    pixels = resolve_region(model.grid, model.grid_dims, region)
    check_region(pixels, patch, diffusion_factor(model))
    return DomainRequest(patch_shape=patch, overlap=overlap, region=pixels)


def _guidance(
    observations: xr.Dataset | None, guidance_scale: float, region: Any
) -> GuidanceRequest:
    scale = check_guidance(observations, guidance_scale, region)
    digest = None
    if observations is not None:  # the loaded values: a lazily opened file's token would
        # not be reproducible in a new process
        digest = f"dask-token:{dask.base.tokenize(observations.compute())}"
    return GuidanceRequest(guidance_scale=scale, observations_digest=digest)


def make_request(
    ref: ModelRef, model: CorrDiffModel, options: Mapping[str, Any]
) -> DownscaleRequest:
    """Every option of :func:`~xcorrdiff.inference.api.downscale` checked and resolved.

    Parameters
    ----------
    ref, model
        The model's reference (its hash) and the model.
    options : mapping
        Every option by name: the arguments of ``downscale`` after ``lr`` and ``model``
        (:data:`~xcorrdiff.inference.api.OPTIONS`, whose defaults are
        :data:`~xcorrdiff.inference.api.DEFAULTS`).

    Raises
    ------
    ValueError
        Naming the argument, the value received and what was expected.
    """
    o = options
    n_ensemble = check_int("n_ensemble", o["n_ensemble"], minimum=1)
    domain = _domain(model, o["patch_shape"], o["overlap"], o["region"])
    if o["fill_missing"] is not None:
        check_choice("fill_missing", o["fill_missing"], [None, *FILL_METHODS])
    device = resolve_device(o["device"])
    batch = o["member_batch_size"]
    return DownscaleRequest(
        model_hash=f"sha256:{ref.digest}",
        model_id=ref.model_id,
        ensemble=EnsembleRequest(n_ensemble=n_ensemble, seed=check_int("seed", o["seed"])),
        sampling=_sampler(
            model, o["sampler"], o["num_steps"], o["s_churn"], o["renoise"], o["student"]
        ),
        domain=domain,
        guidance=_guidance(o["observations"], o["guidance_scale"], domain.region),
        inputs=InputRequest(
            fill_missing=o["fill_missing"],
            check_plausibility=check_bool("check_plausibility", o["check_plausibility"]),
        ),
        return_mean=check_bool("return_mean", o["return_mean"]),
        runtime=RuntimeRequest(
            device=str(device),
            precision=resolve_precision(o["precision"], o["dtype"], device),
            member_batch_size=check_int(
                "member_batch_size", min(n_ensemble, 16) if batch is None else batch, minimum=1
            ),
            explicit_batch=batch is not None,
            threads=torch.get_num_threads(),
        ),
    )

"""TrainConfig: the settings of both training stages, in five frozen groups.

``TrainConfig(preset=name, **overrides)`` takes flat keyword overrides for convenience
(``TrainConfig(preset="tiny", batch_size=4)``) and sorts them into the groups:

``data``          what each step sees: patch shape, patches per sample, batch size, split,
                  output transforms;
``model``         the two networks and the EDM/CorrDiff constants of the loss;
``optimization``  Adam, gradient clipping, EMA, what to do with non-finite values;
``schedule``      stage lengths, learning-rate warm-up and decay, validation and
                  checkpoint periods;
``runtime``       seed, device, precision, memory format, compilation, workers, checkpoint
                  directory.

A checkpoint resumes only under the same configuration. Its fingerprint
(:meth:`TrainConfig.fingerprint`) is derived by rule: every field of every group counts
unless its own definition marks it ``runtime_only`` (``field(metadata=RUNTIME_ONLY)``), so
a new field is part of the fingerprint unless someone decides otherwise where it is
defined.

Three presets are provided by name; explicit values override the preset's:

``"tiny"``
    A small network for CPU tests and the demo: 32 channels, ``channel_mult (1, 2)``, no
    attention (not even at the bottleneck), one block per level, 64×64 patches, batch size
    1 (on this problem the number of optimizer steps, not of samples, limits learning).
    On a short record (fewer than 20 training times) the regression predicts each output
    that is also an input as that input plus a correction, and the diffusion stage learns
    out-of-fold residuals on crops of at most a quarter of the domain (``input_skip``,
    ``residual_folds`` and ``diffusion_crops`` ``"auto"``; measured in
    docs/user-guide/training.md).
``"mini"``
    PhysicsNeMo's CorrDiff-Mini (HRRR-Mini, 64×64): 64 channels, ``channel_mult (1, 2, 2)``,
    attention at 16, four blocks, dropout 0.13, four sinusoidal grid channels, batch 256,
    learning rate 2e-4.
``"normal"``
    The CWA (Taiwan) network of Mardani et al. (2025): 128 channels,
    ``channel_mult (1, 2, 2, 2, 2)``, attention at 28, four blocks, dropout 0.13, 448×448
    patches, 16 patches per sample with the regression mean reused across them.

Durations, warm-up, decay period, EMA half-life and the validation and checkpoint periods
are counted in training samples (times), PhysicsNeMo's ``nimg``.

Examples
--------
>>> cfg = TrainConfig(preset="tiny", batch_size=4)
>>> cfg.data.batch_size, cfg.data.patch_shape
(4, (64, 64))
>>> "batch_size" in cfg.fingerprint()["data"], "device" in cfg.fingerprint()["runtime"]
(True, False)

References
----------
Mardani, M. et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment 6, 124.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, get_args

from xcorrdiff._checks import check_bool, check_choice, check_int, check_positive, precision_name
from xcorrdiff.config import RUNTIME_ONLY, NetworkConfig
from xcorrdiff.data.normalize import Transform
from xcorrdiff.data.time_features import check_time_features
from xcorrdiff.train.presets import PRESET_VALUES

__all__ = [
    "PRESETS",
    "RUNTIME_ONLY",
    "DataConfig",
    "ModelConfig",
    "OptimizationConfig",
    "RuntimeConfig",
    "ScheduleConfig",
    "TrainConfig",
]

PresetName = Literal["tiny", "mini", "normal"]
#: Records with fewer training times than this are short: a validation split warns, and the
#: ``"auto"`` input skip and cross-fitting switch on.
SHORT_RECORD = 20
OnNonfinite = Literal["raise", "skip"]
PRESETS: tuple[str, ...] = get_args(PresetName)
#: Training precisions (float16 would need loss scaling, which the loop does not do).
TRAIN_PRECISIONS = ("float32", "bfloat16")


def _check_fraction(name: str, value: float, *, low_open: bool, high_open: bool) -> None:
    ok = (value > 0.0 if low_open else value >= 0.0) and (
        value < 1.0 if high_open else value <= 1.0
    )
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{name}={value!r} is invalid; expected a value in {interval}")


def _network(name: str, value: Any) -> NetworkConfig:
    if isinstance(value, dict):
        return NetworkConfig.from_dict(value)
    if not isinstance(value, NetworkConfig):
        raise TypeError(
            f"{name}={value!r} is invalid; expected a NetworkConfig or a dict of its fields"
        )
    return value


def _named_pairs(value: Any, argname: str, expected: str, convert: Any) -> tuple[Any, ...]:
    """A mapping (or pairs) of variable names to values, as sorted ``(name, value)`` pairs."""
    pairs = value.items() if isinstance(value, Mapping) else value
    try:
        return tuple(sorted((str(name), convert(item)) for name, item in pairs))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{argname}={value!r} is invalid; expected a mapping of variable names to {expected}"
        ) from exc


def _transforms(value: Any) -> tuple[tuple[str, Transform], ...]:
    normalized = _named_pairs(
        value, "output_transforms", "transforms, e.g. {'precip': 'log1p'}", str
    )
    for name, kind in normalized:
        check_choice(f"output_transforms[{name!r}]", kind, get_args(Transform))
    return normalized


def _bounds(value: Any) -> tuple[tuple[str, tuple[Any, Any]], ...]:
    expected = "(low, high), e.g. {'precip': (0, None), 'hurs': ('0 %', '100 %')}"
    normalized = _named_pairs(value, "output_bounds", expected, tuple)
    for name, pair in normalized:
        if len(pair) != 2 or not all(v is None or isinstance(v, int | float | str) for v in pair):
            raise ValueError(
                f"output_bounds[{name!r}]={pair!r} is invalid; expected (low, high), each a "
                "number in the variable's units, a quantity string such as '0 mm h-1', or None"
            )
    return normalized


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    """What each optimizer step sees.

    Parameters
    ----------
    patch_shape : (int, int)
        ``(y, x)`` size of the diffusion training patches; clipped to the domain when the
        domain is smaller.
    patches_per_sample : int
        Diffusion patches drawn from each sample; the regression mean μ is computed once on
        the full domain and reused for all of them (NVIDIA's "multi-iteration patching").
    batch_size : int
        Samples (times) per optimizer step; a diffusion step sees
        ``batch_size * patches_per_sample`` patches.
    validation_fraction : float
        Fraction of times, taken from the end of the record, held out for validation.
    output_transforms : mapping of str to {"none", "log1p", "asinh", "fourth_root", "logit"}
        Transform applied to an output variable before normalization, e.g.
        ``{"precip": "log1p"}``; inverted when downscaling
        (:mod:`xcorrdiff.data.transforms`). Stored as sorted pairs.
    regression_patch_shape : (int, int), optional
        Train the regression network on random patches of this size (``patches_per_sample``
        per sample), each with the whole domain's inputs resized to the patch as global
        context, so that a step's cost no longer grows with the domain's area; μ is then
        computed patch by patch and blended. ``None`` (PhysicsNeMo's CorrDiff): the whole
        domain at once.
    output_bounds : mapping of str to (low, high)
        Physical bounds of output variables, applied (clipped) to every downscaled member and
        mean: each a number in the variable's units, a quantity pint understands
        (``"0 mm h-1"``, ``"100 %"``) or None (unbounded), e.g. ``{"precip": (0, None)}``.
        Stored in the model; they do not change training (not part of the fingerprint).
    time_features : sequence of {"cos_zenith", "hour_of_day", "day_of_year"}
        Condition channels computed from each sample's time and the HR grid's lat/lon
        (:mod:`xcorrdiff.data.time_features`); stored in the model and computed again when
        downscaling.
    """

    patch_shape: tuple[int, int]
    patches_per_sample: int
    batch_size: int
    validation_fraction: float = 0.1
    output_transforms: tuple[tuple[str, Transform], ...] = ()
    regression_patch_shape: tuple[int, int] | None = None
    time_features: tuple[str, ...] = ()
    output_bounds: tuple[tuple[str, tuple[Any, Any]], ...] = field(
        default=(), metadata=RUNTIME_ONLY
    )

    def __post_init__(self) -> None:
        shape = tuple(self.patch_shape)
        object.__setattr__(self, "patch_shape", shape)
        object.__setattr__(self, "output_transforms", _transforms(self.output_transforms))
        object.__setattr__(self, "output_bounds", _bounds(self.output_bounds))
        object.__setattr__(self, "time_features", check_time_features(self.time_features))
        if self.regression_patch_shape is not None:
            patch = tuple(self.regression_patch_shape)
            if len(patch) != 2:
                raise ValueError(
                    f"regression_patch_shape={patch!r} is invalid; expected two sides (y, x)"
                )
            for side in patch:
                check_int("regression_patch_shape side", side, minimum=1)
            object.__setattr__(self, "regression_patch_shape", patch)
        if len(shape) != 2:
            raise ValueError(f"patch_shape={shape!r} is invalid; expected two sides (y, x)")
        for side in shape:
            check_int("patch_shape side", side, minimum=1)
        check_int("patches_per_sample", self.patches_per_sample, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        _check_fraction(
            "validation_fraction", self.validation_fraction, low_open=False, high_open=True
        )

    @property
    def patches_per_step(self) -> int:
        """Diffusion patches per optimizer step."""
        return self.batch_size * self.patches_per_sample


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The two networks and the constants of the CorrDiff losses.

    Parameters
    ----------
    regression, diffusion : NetworkConfig
        Hyperparameters of the regression UNet and of the diffusion denoiser.
    hr_mean_conditioning : bool
        Condition the diffusion model on the regression mean μ as well as on the input.
    global_lowres : bool
        Also give the diffusion model, on every patch, the whole domain's input resized to the
        patch (PhysicsNeMo's patch-based conditioning). False: the patch's own input only, as
        Earth2Studio's ``CorrDiff`` samples (the model can then be exported to it).
    residual_scaling : bool
        Divide each output's residual ``HR − μ`` by ``s = rms / sigma_data`` before the
        diffusion model learns it (``rms`` measured with the trained regression on up to
        64 training times; stored in the model as ``residual_scale``). PhysicsNeMo does not
        scale (``False``, the ``mini`` and ``normal`` presets); ``tiny`` does (see
        docs/user-guide/training.md for the measurement).
    P_mean, P_std : float
        Log-normal noise-level distribution of the residual EDM loss.
    sigma_data : float
        EDM data standard deviation.
    lead_time_channels : int
        Learned lead-time embedding channels when the data have a ``lead_time`` dimension.
    input_skip : bool or "auto"
        Predict each output that is also an input (same name, units and transform) as that
        input regridded onto the HR grid plus the regression network's correction
        (:mod:`xcorrdiff.diffusion.input_skip`), so that a short record cannot teach the
        network each training day's level instead of the mapping. ``True`` needs such an
        output; ``"auto"`` (the ``tiny`` preset) skips the outputs that have one when the
        record is short (fewer than 20 training times) and none otherwise. PhysicsNeMo
        has no skip (``False``: ``mini``, ``normal``); a model with one cannot be exported
        to Earth2Studio.
    residual_folds : int or "auto"
        ``k >= 2``: the diffusion stage learns out-of-fold residuals. The training times
        are cut into ``k`` contiguous folds, a regression like the model's is trained on
        the other ``k − 1`` folds for each, and the residual ``HR − μ`` of a training time
        comes from the regression that did not see it, so the diffusion learns residuals
        of the size it meets on new data rather than the shrinking ones of a regression
        that fits its training times ever closer (:mod:`xcorrdiff.train.crossfit`). Costs
        ``k`` more regression trainings; the model keeps the regression trained on all
        times. ``"auto"`` (the ``tiny`` preset): 3 folds (at most one per time) when the
        record is short (2 to 19 training times), else 0. ``0`` (PhysicsNeMo): the
        residuals of the model's regression.
    diffusion_crops : bool or "auto"
        Train the diffusion on random patches at most a quarter of the domain's side
        (``patch_shape`` capped; at least twice the network's downsampling factor), so
        that each training time gives many different crops;
        with whole-domain patches a short record's residuals are memorized, one per time,
        and the ensemble collapses as training goes on. ``"auto"`` (``tiny``): on short
        records (fewer than 20 training times).
    """

    regression: NetworkConfig
    diffusion: NetworkConfig
    hr_mean_conditioning: bool = True
    global_lowres: bool = True
    residual_scaling: bool = False
    P_mean: float = 0.0
    P_std: float = 1.2
    sigma_data: float = 0.5
    lead_time_channels: int = 4
    input_skip: bool | Literal["auto"] = False
    residual_folds: int | Literal["auto"] = 0
    diffusion_crops: bool | Literal["auto"] = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "regression", _network("regression", self.regression))
        object.__setattr__(self, "diffusion", _network("diffusion", self.diffusion))
        check_bool("hr_mean_conditioning", self.hr_mean_conditioning)
        check_bool("global_lowres", self.global_lowres)
        check_bool("residual_scaling", self.residual_scaling)
        check_positive("P_std", self.P_std)
        check_positive("sigma_data", self.sigma_data)
        check_int("lead_time_channels", self.lead_time_channels, minimum=1)
        for name in ("input_skip", "diffusion_crops"):
            if not (getattr(self, name) == "auto" or isinstance(getattr(self, name), bool)):
                raise ValueError(
                    f'{name}={getattr(self, name)!r} is invalid; expected True, False or "auto"'
                )
        if self.residual_folds != "auto" and check_int(
            "residual_folds", self.residual_folds, minimum=0, hint=', or "auto"'
        ) == 1:  # fmt: skip
            raise ValueError(
                "residual_folds=1 is invalid; expected 0 (the model's own residuals), a "
                'number of folds >= 2, or "auto"'
            )

    def skips_inputs(self, n_train: int) -> bool | None:
        """Whether the regression skips its inputs on a record of ``n_train`` training times:
        True (an output must qualify), None (those that qualify), or False."""
        if self.input_skip == "auto":
            return None if n_train < SHORT_RECORD else False
        return bool(self.input_skip)

    def crops(self, n_train: int) -> bool:
        """Whether the diffusion trains on crops of at most a quarter of the domain's side."""
        if self.diffusion_crops == "auto":
            return n_train < SHORT_RECORD
        return bool(self.diffusion_crops)

    def folds(self, n_train: int) -> int:
        """The cross-fit folds of the diffusion stage on ``n_train`` training times (0: none)."""
        if self.residual_folds == "auto":
            return min(3, n_train) if 2 <= n_train < SHORT_RECORD else 0
        return int(self.residual_folds)


@dataclass(frozen=True, kw_only=True)
class OptimizationConfig:
    """Adam, clipping, the EMA of the weights and the non-finite policy.

    Parameters
    ----------
    learning_rate : float
        Base Adam learning rate.
    betas : (float, float)
        Adam betas.
    grad_clip : float or None
        Maximum gradient norm; ``None`` disables clipping.
    ema_halflife : int
        Half-life of the exponential moving average of weights, in samples (EDM).
    ema_rampup_ratio : float or None
        EDM's EMA ramp-up: the half-life is at most ``ratio * samples_seen``.
    on_nonfinite : {"raise", "skip"}
        A non-finite loss or gradient stops training (``"raise"``) or skips the batch and
        counts it (``"skip"``). Runtime-only.
    """

    learning_rate: float
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0e6
    ema_halflife: int = 500_000
    ema_rampup_ratio: float | None = 0.05
    on_nonfinite: OnNonfinite = field(default="raise", metadata=RUNTIME_ONLY)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        check_positive("learning_rate", self.learning_rate)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas={self.betas!r} is invalid; expected two values in [0, 1)")
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        check_int("ema_halflife", self.ema_halflife, minimum=0)
        if self.ema_rampup_ratio is not None:
            check_positive("ema_rampup_ratio", self.ema_rampup_ratio)
        check_choice("on_nonfinite", self.on_nonfinite, get_args(OnNonfinite))


@dataclass(frozen=True, kw_only=True)
class ScheduleConfig:
    """Stage lengths, the learning-rate schedule and the periodic work, in samples.

    Parameters
    ----------
    regression_duration, diffusion_duration : int
        Training length of each stage (runtime-only: a finished stage may be extended).
    lr_rampup : int
        Linear warm-up length; 0 means no warm-up.
    lr_decay : float
        Multiplicative decay per ``lr_decay_rate`` samples after the warm-up (1 = none).
    lr_decay_rate : int
        Decay period.
    validation_every, checkpoint_every : int
        Validation and checkpoint periods (runtime-only); a checkpoint is also written at
        the end of a stage.
    """

    regression_duration: int = field(metadata=RUNTIME_ONLY)
    diffusion_duration: int = field(metadata=RUNTIME_ONLY)
    lr_rampup: int = 0
    lr_decay: float = 1.0
    lr_decay_rate: int = 1_000_000
    validation_every: int = field(metadata=RUNTIME_ONLY)
    checkpoint_every: int = field(metadata=RUNTIME_ONLY)

    def __post_init__(self) -> None:
        for name in ("regression_duration", "diffusion_duration", "lr_decay_rate"):
            check_int(name, getattr(self, name), minimum=1)
        for name in ("validation_every", "checkpoint_every"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("lr_rampup", self.lr_rampup, minimum=0)
        _check_fraction("lr_decay", self.lr_decay, low_open=True, high_open=False)


@dataclass(frozen=True, kw_only=True)
class RuntimeConfig:
    """Where and how the steps run; only ``seed`` and ``precision`` change the numbers.

    Parameters
    ----------
    seed : int
        Root of every random stream (see :mod:`xcorrdiff.train.streams`).
    precision : {"float32", "bfloat16"}
        ``"bfloat16"`` runs forward passes under ``torch.autocast``; ``"fp32"``/``"bf16"``
        are accepted and normalized.
    device : str or None
        ``None`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    channels_last : bool
        Use the NHWC memory format for networks and batches.
    compile : bool
        Compile the networks with ``torch.compile`` (eager with a warning if that fails).
    num_workers : int
        DataLoader worker processes preparing batches (0: the training process).
    checkpoint_dir : str or None
        Directory for checkpoints and the JSON-lines log; ``None`` keeps nothing on disk.
    """

    seed: int = 0
    precision: str = "float32"
    device: str | None = field(default=None, metadata=RUNTIME_ONLY)
    channels_last: bool = field(default=False, metadata=RUNTIME_ONLY)
    compile: bool = field(default=False, metadata=RUNTIME_ONLY)
    num_workers: int = field(default=0, metadata=RUNTIME_ONLY)
    checkpoint_dir: str | None = field(default=None, metadata=RUNTIME_ONLY)

    def __post_init__(self) -> None:
        check_int("seed", self.seed, minimum=0)
        name = precision_name(self.precision)
        check_choice("precision", name, TRAIN_PRECISIONS)
        object.__setattr__(self, "precision", name)
        if self.device == "auto":
            object.__setattr__(self, "device", None)
        if self.device is not None and (not isinstance(self.device, str) or not self.device):
            raise ValueError(
                f"device={self.device!r} is invalid; expected None (CUDA when available), "
                "'cpu', 'cuda' or 'cuda:N'"
            )
        check_bool("channels_last", self.channels_last)
        check_bool("compile", self.compile)
        check_int("num_workers", self.num_workers, minimum=0)
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", str(self.checkpoint_dir))


_GROUPS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimization": OptimizationConfig,
    "schedule": ScheduleConfig,
    "runtime": RuntimeConfig,
}
#: Which group each flat keyword belongs to.
_GROUP_OF = {f.name: group for group, cls in _GROUPS.items() for f in dataclasses.fields(cls)}


def _group_values(flat: Mapping[str, Any], given: Any, name: str) -> Any:
    """A group from the flat values of its fields, or the group given whole."""
    cls = _GROUPS[name]
    if isinstance(given, cls):
        return given
    if isinstance(given, Mapping):
        flat = {**flat, **given}
    elif given is not None:
        raise TypeError(
            f"{name}={given!r} is invalid; expected a {cls.__name__} or a dict of its fields"
        )
    own = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in flat.items() if k in own})


@dataclass(frozen=True, init=False)
class TrainConfig:
    """Settings of both training stages, in five groups (see the module docstring).

    ``TrainConfig(preset="tiny", batch_size=4)``: the preset supplies every value that is
    not given; flat keywords go to their group, and a whole group may be given instead
    (``data=DataConfig(...)`` or a dict of its fields). Keyword-only.

    Attributes
    ----------
    preset : {"tiny", "mini", "normal"}
    data : DataConfig
    model : ModelConfig
    optimization : OptimizationConfig
    schedule : ScheduleConfig
    runtime : RuntimeConfig
    """

    preset: str
    data: DataConfig
    model: ModelConfig
    optimization: OptimizationConfig
    schedule: ScheduleConfig
    runtime: RuntimeConfig

    GROUPS: ClassVar[tuple[str, ...]] = tuple(_GROUPS)

    def __init__(self, *, preset: str = "tiny", **values: Any) -> None:
        if preset not in PRESET_VALUES:
            raise ValueError(
                f"preset={preset!r} is not a known preset; expected one of {list(PRESETS)}"
            )
        unknown = sorted(set(values) - set(_GROUP_OF) - set(_GROUPS))
        if unknown:
            raise TypeError(
                f"TrainConfig got unknown settings {unknown}; expected group names "
                f"{list(_GROUPS)} or fields among {sorted(_GROUP_OF)}"
            )
        flat = {**PRESET_VALUES[preset], **{k: v for k, v in values.items() if k in _GROUP_OF}}
        object.__setattr__(self, "preset", preset)
        for name in _GROUPS:
            object.__setattr__(self, name, _group_values(flat, values.get(name), name))
        self._check_patches()

    def _check_patches(self) -> None:
        factor = self.model.diffusion.downsampling_factor
        if any(side % factor for side in self.data.patch_shape):
            raise ValueError(
                f"patch_shape={self.data.patch_shape!r} is invalid for the diffusion network "
                f"with channel_mult={self.model.diffusion.channel_mult}; expected sides "
                f"divisible by {factor}"
            )

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some settings changed: flat fields or whole groups (preset kept)."""
        values: dict[str, Any] = {name: getattr(self, name) for name in _GROUPS}
        for key, value in changes.items():
            if key in _GROUP_OF and key not in _GROUPS:
                group = _GROUP_OF[key]
                values[group] = dataclasses.replace(values[group], **{key: value})
            else:
                values[key] = value
        preset = values.pop("preset", self.preset)
        return TrainConfig(preset=preset, **values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able nested dictionary of every resolved field."""
        return {"preset": self.preset, **{name: _jsonable(getattr(self, name)) for name in _GROUPS}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output (or the flat layout of earlier versions);
        unknown keys are an error."""
        names = {"preset", *_GROUPS, *_GROUP_OF}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"TrainConfig.from_dict got unknown keys {unknown}; expected keys among "
                f"{sorted(names)}"
            )
        values = dict(data)
        for name in _GROUPS:
            if isinstance(values.get(name), Mapping):
                values[name] = dict(values[name])
        return cls(**values)

    def fingerprint(self) -> dict[str, Any]:
        """Every field that must agree for a checkpoint to resume: all but the runtime-only.

        Derived from the groups' field definitions (``RUNTIME_ONLY`` metadata), never from
        a hand-kept list.
        """
        out: dict[str, Any] = {}
        for name in _GROUPS:
            group = getattr(self, name)
            out[name] = {
                f.name: _jsonable(getattr(group, f.name))
                for f in dataclasses.fields(group)
                if not f.metadata.get("runtime_only", False)
            }
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, NetworkConfig):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value

"""Frozen, keyword-only configuration for CorrDiff networks, training and sampling.

Three training presets are provided by name, with explicit keyword arguments overriding
the preset's values:

``"tiny"``
    A small network for CPU tests and the demo: 32 channels, ``channel_mult (1, 2)``, no
    attention (not even at the bottleneck), one block per level, 64×64 patches, batch size
    1 (on this problem the number of optimizer steps, not of samples, limits learning).
    The 128×128 example (``examples/train_tiny.py``) trains both stages in about an hour
    on one CPU core.
``"mini"``
    PhysicsNeMo's CorrDiff-Mini (HRRR-Mini, 64×64): 64 channels, ``channel_mult (1, 2, 2)``,
    attention at 16, four blocks, dropout 0.13, four sinusoidal grid channels, batch 256,
    learning rate 2e-4.
``"normal"``
    The CWA (Taiwan) network of Mardani et al. (2025): 128 channels,
    ``channel_mult (1, 2, 2, 2, 2)``, attention at 28, four blocks, dropout 0.13, 448×448
    patches, 16 patches per sample with the regression mean reused across them.

Examples
--------
>>> from xcorrdiff.config import TrainConfig
>>> cfg = TrainConfig(preset="tiny", batch_size=4)
>>> cfg.batch_size, cfg.patch_shape
(4, (64, 64))

References
----------
Mardani, M. et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment 6, 124.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from xcorrdiff.data.normalize import Transform

PresetName = Literal["tiny", "mini", "normal"]
Precision = Literal["fp32", "bf16"]
OnNonfinite = Literal["raise", "skip"]
EmbeddingType = Literal["positional", "fourier", "zero"]
GridType = Literal["sinusoidal", "sinusoidal_octave", "learnable", "linear", "none"]
SamplerName = Literal["euler", "heun"]

PRESETS: tuple[str, ...] = get_args(PresetName)


class _Unset:
    """Sentinel for "take this field from the preset"."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<from preset>"


_UNSET: Any = _Unset()


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        expected = "a finite number >= 0" if allow_zero else "a finite number > 0"
        raise ValueError(f"{name}={value!r} is invalid; expected {expected}")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is invalid; expected one of {list(choices)}")


@dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """Hyperparameters of one SongUNet (regression or diffusion).

    The names follow PhysicsNeMo's ``SongUNetPosEmbd`` constructor so that
    :meth:`to_kwargs` can be passed to it directly (the image size and channel counts are
    added by the model builder, since they depend on the data).

    Parameters
    ----------
    model_channels : int
        Base channel count of the UNet.
    channel_mult : tuple of int
        Channel multiplier per resolution level; the UNet downsamples ``len - 1`` times.
    attn_resolutions : tuple of int
        Resolutions (in pixels, square) at which self-attention blocks are used.
    bottleneck_attention : bool
        Self-attention in the first bottleneck block, over every pixel of the coarsest level
        (PhysicsNeMo's SongUNet always has it). Its cost grows with the square of that
        level's pixel count: with ``channel_mult (1, 2)`` on a 128×128 domain it attends over
        4,096 pixels and takes most of the training step.
    num_blocks : int
        Residual blocks per resolution level.
    dropout : float
        Dropout probability in the residual blocks, in ``[0, 1)``.
    embedding_type : {"positional", "fourier", "zero"}
        Noise-level embedding; ``"zero"`` disables it (PhysicsNeMo's regression UNet).
    gridtype : {"sinusoidal", "sinusoidal_octave", "learnable", "linear", "none"}
        Positional grid concatenated to the input.
    N_grid_channels : int
        Number of positional grid channels.
    """

    model_channels: int
    channel_mult: tuple[int, ...]
    attn_resolutions: tuple[int, ...] = ()
    bottleneck_attention: bool = True
    num_blocks: int = 1
    dropout: float = 0.0
    embedding_type: EmbeddingType = "positional"
    gridtype: GridType = "sinusoidal"
    N_grid_channels: int = 4

    def __post_init__(self) -> None:
        _check_int("model_channels", self.model_channels, minimum=1)
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attn_resolutions", tuple(self.attn_resolutions))
        if not self.channel_mult:
            raise ValueError("channel_mult=() is invalid; expected at least one level, e.g. (1, 2)")
        for m in self.channel_mult:
            _check_int("channel_mult entry", m, minimum=1)
        for r in self.attn_resolutions:
            _check_int("attn_resolutions entry", r, minimum=1)
        if not isinstance(self.bottleneck_attention, bool):
            raise ValueError(
                f"bottleneck_attention={self.bottleneck_attention!r} is invalid; expected a bool"
            )
        _check_int("num_blocks", self.num_blocks, minimum=1)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} is invalid; expected a value in [0, 1)")
        _check_choice("embedding_type", self.embedding_type, get_args(EmbeddingType))
        _check_choice("gridtype", self.gridtype, get_args(GridType))
        _check_int("N_grid_channels", self.N_grid_channels, minimum=0)

    @property
    def downsampling_factor(self) -> int:
        """Factor by which patch (or domain) sides must be divisible."""
        return int(2 ** (len(self.channel_mult) - 1))

    def to_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments in PhysicsNeMo's names (JSON-able)."""
        return {
            "model_channels": self.model_channels,
            "channel_mult": list(self.channel_mult),
            "attn_resolutions": list(self.attn_resolutions),
            "bottleneck_attention": self.bottleneck_attention,
            "num_blocks": self.num_blocks,
            "dropout": self.dropout,
            "embedding_type": self.embedding_type,
            "gridtype": self.gridtype,
            "N_grid_channels": self.N_grid_channels,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary; the inverse of :meth:`from_dict`."""
        return self.to_kwargs()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """Default sampler settings stored with a model.

    Parameters
    ----------
    sampler : {"euler", "heun"}
        Time integrator. ``"euler"`` with 12 steps follows NVIDIA's optimized CorrDiff.
    num_steps : int
        Number of denoising steps.
    sigma_min, sigma_max : float
        Noise range of the Karras et al. (2022) schedule.
    rho : float
        Schedule exponent.
    """

    sampler: SamplerName = "euler"
    num_steps: int = 12
    sigma_min: float = 0.002
    sigma_max: float = 800.0
    rho: float = 7.0

    def __post_init__(self) -> None:
        _check_choice("sampler", self.sampler, get_args(SamplerName))
        _check_int("num_steps", self.num_steps, minimum=1)
        _check_positive("sigma_min", self.sigma_min)
        _check_positive("sigma_max", self.sigma_max)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(
                f"sigma_min={self.sigma_min!r} must be smaller than sigma_max={self.sigma_max!r}"
            )
        _check_positive("rho", self.rho)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplerConfig:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


_TINY_NET: dict[str, Any] = {
    "model_channels": 32,
    "channel_mult": (1, 2),
    "num_blocks": 1,
    "bottleneck_attention": False,
}
_TINY_REGRESSION = NetworkConfig(**_TINY_NET, embedding_type="zero")
_TINY_DIFFUSION = NetworkConfig(**_TINY_NET, embedding_type="positional")
_MINI_NET: dict[str, Any] = {
    "model_channels": 64,
    "channel_mult": (1, 2, 2),
    "attn_resolutions": (16,),
    "num_blocks": 4,
    "dropout": 0.13,
    "gridtype": "sinusoidal",
    "N_grid_channels": 4,
}
_NORMAL_NET: dict[str, Any] = {
    "model_channels": 128,
    "channel_mult": (1, 2, 2, 2, 2),
    "attn_resolutions": (28,),
    "num_blocks": 4,
    "dropout": 0.13,
    "gridtype": "sinusoidal",
    "N_grid_channels": 4,
}

# Values every preset shares unless it says otherwise.
_COMMON: dict[str, Any] = {
    "lr_rampup": 0,
    "lr_decay": 1.0,
    "lr_decay_rate": 1_000_000,
    "betas": (0.9, 0.999),
    "grad_clip": 1.0e6,
    "ema_halflife": 500_000,
    "ema_rampup_ratio": 0.05,
    "precision": "fp32",
    "channels_last": False,
    "compile": False,
    "num_workers": 0,
    "validation_fraction": 0.1,
    "checkpoint_dir": None,
    "seed": 0,
    "device": "auto",
    "on_nonfinite": "raise",
    "P_mean": 0.0,
    "P_std": 1.2,
    "sigma_data": 0.5,
    "hr_mean_conditioning": True,
    "residual_scaling": False,
    "output_transforms": (),
}

_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "regression": _TINY_REGRESSION,
        "diffusion": _TINY_DIFFUSION,
        "patch_shape": (64, 64),
        "patches_per_sample": 4,
        "batch_size": 1,
        "learning_rate": 4e-3,
        "lr_rampup": 128,
        "lr_decay": 0.5,
        "lr_decay_rate": 2_048,
        "ema_halflife": 256,
        "regression_duration": 8_192,
        "diffusion_duration": 2_048,
        "validation_every": 1_024,
        "checkpoint_every": 1_024,
        "device": "cpu",
        "residual_scaling": True,
    },
    "mini": {
        "regression": NetworkConfig(**_MINI_NET, embedding_type="zero"),
        "diffusion": NetworkConfig(**_MINI_NET, embedding_type="zero"),
        "patch_shape": (64, 64),
        "patches_per_sample": 1,
        "batch_size": 256,
        "learning_rate": 2e-4,
        "lr_decay": 0.7,
        "lr_decay_rate": 2_000_000,
        "regression_duration": 2_000_000,
        "diffusion_duration": 8_000_000,
        "validation_every": 100_000,
        "checkpoint_every": 500_000,
    },
    "normal": {
        "regression": NetworkConfig(**_NORMAL_NET, embedding_type="zero"),
        "diffusion": NetworkConfig(**_NORMAL_NET, embedding_type="positional"),
        "patch_shape": (448, 448),
        "patches_per_sample": 16,
        "batch_size": 256,
        "learning_rate": 2e-4,
        "lr_decay": 0.7,
        "lr_decay_rate": 5_000_000,
        "precision": "bf16",
        "channels_last": True,
        "compile": True,
        "num_workers": 4,
        "regression_duration": 10_000_000,
        "diffusion_duration": 50_000_000,
        "validation_every": 250_000,
        "checkpoint_every": 500_000,
    },
}


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Settings of both training stages (regression UNet, residual diffusion).

    ``TrainConfig(preset=name, **overrides)``: the preset supplies every value that is not
    given explicitly. Durations, warm-up, decay period, EMA half-life and the validation and
    checkpoint periods are counted in training samples (times), PhysicsNeMo's ``nimg``.

    Parameters
    ----------
    preset : {"tiny", "mini", "normal"}
        Named set of defaults (see the module docstring).
    regression, diffusion : NetworkConfig
        Hyperparameters of the regression UNet and of the diffusion denoiser.
    patch_shape : tuple of int
        ``(y, x)`` size of the diffusion training patches; clipped to the domain when the
        domain is smaller.
    patches_per_sample : int
        Diffusion patches drawn from each sample; the regression mean μ is computed once on
        the full domain and reused for all of them (NVIDIA's "multi-iteration patching").
    batch_size : int
        Samples (times) per optimizer step; a diffusion step sees
        ``batch_size * patches_per_sample`` patches.
    learning_rate : float
        Base Adam learning rate.
    lr_rampup : int
        Linear warm-up length in samples; 0 means no warm-up.
    lr_decay : float
        Multiplicative decay per ``lr_decay_rate`` samples after the warm-up (1 = none).
    lr_decay_rate : int
        Decay period in samples.
    betas : tuple of float
        Adam betas.
    grad_clip : float or None
        Maximum gradient norm; ``None`` disables clipping.
    ema_halflife : int
        Half-life of the exponential moving average of weights, in samples (EDM).
    ema_rampup_ratio : float or None
        EDM's EMA ramp-up: the half-life is at most ``ratio * samples_seen``.
    precision : {"fp32", "bf16"}
        ``"bf16"`` runs forward passes under ``torch.autocast(dtype=torch.bfloat16)``.
    channels_last : bool
        Use the NHWC memory format for networks and batches.
    compile : bool
        Wrap the networks with ``torch.compile``; falls back to eager mode with a warning
        when compilation fails.
    num_workers : int
        Background threads preparing batches (0 prepares them in the training loop).
    regression_duration, diffusion_duration : int
        Training length of each stage, in samples.
    validation_fraction : float
        Fraction of times, taken from the end of the record, held out for validation.
    validation_every : int
        Validation period in samples.
    checkpoint_dir : str or None
        Directory for checkpoints and the JSON-lines log; ``None`` keeps nothing on disk.
    checkpoint_every : int
        Checkpoint period in samples (a checkpoint is also written at the end of a stage).
    seed : int
        Seed of every random stream (initialisation, batches, patches, noise, dropout).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
    on_nonfinite : {"raise", "skip"}
        A non-finite loss or gradient stops training with an error (``"raise"``) or skips the
        batch and counts it (``"skip"``).
    P_mean, P_std : float
        Log-normal noise-level distribution of the residual EDM loss.
    sigma_data : float
        EDM data standard deviation.
    hr_mean_conditioning : bool
        Condition the diffusion model on the regression mean μ as well as on the input.
    residual_scaling : bool
        Divide each output's residual ``HR − μ`` by ``s = rms / sigma_data`` before the
        diffusion model learns it (``rms`` measured with the trained regression on up to
        64 training times; stored in the model as ``residual_scale``), so every channel's
        residual has the standard deviation EDM's noise levels and loss weights assume.
        PhysicsNeMo's CorrDiff does not scale (``False``, the ``mini`` and ``normal``
        presets): its residuals keep the scale of the normalized outputs, which after a
        good regression is far below ``sigma_data`` and differs between variables. The
        ``tiny`` preset scales (see docs/user-guide/training.md for the measurement).
    output_transforms : mapping of str to {"none", "log1p"}
        Transform applied to an output variable before normalization, e.g.
        ``{"precip": "log1p"}`` for a heavy-tailed, non-negative field; inverted when
        downscaling. Stored as sorted ``(name, transform)`` pairs. Default: none.
    """

    preset: PresetName = "tiny"
    regression: NetworkConfig = field(default=_UNSET)
    diffusion: NetworkConfig = field(default=_UNSET)
    patch_shape: tuple[int, int] = field(default=_UNSET)
    patches_per_sample: int = field(default=_UNSET)
    batch_size: int = field(default=_UNSET)
    learning_rate: float = field(default=_UNSET)
    lr_rampup: int = field(default=_UNSET)
    lr_decay: float = field(default=_UNSET)
    lr_decay_rate: int = field(default=_UNSET)
    betas: tuple[float, float] = field(default=_UNSET)
    grad_clip: float | None = field(default=_UNSET)
    ema_halflife: int = field(default=_UNSET)
    ema_rampup_ratio: float | None = field(default=_UNSET)
    precision: Precision = field(default=_UNSET)
    channels_last: bool = field(default=_UNSET)
    compile: bool = field(default=_UNSET)
    num_workers: int = field(default=_UNSET)
    regression_duration: int = field(default=_UNSET)
    diffusion_duration: int = field(default=_UNSET)
    validation_fraction: float = field(default=_UNSET)
    validation_every: int = field(default=_UNSET)
    checkpoint_dir: str | None = field(default=_UNSET)
    checkpoint_every: int = field(default=_UNSET)
    seed: int = field(default=_UNSET)
    device: str = field(default=_UNSET)
    on_nonfinite: OnNonfinite = field(default=_UNSET)
    P_mean: float = field(default=_UNSET)
    P_std: float = field(default=_UNSET)
    sigma_data: float = field(default=_UNSET)
    hr_mean_conditioning: bool = field(default=_UNSET)
    residual_scaling: bool = field(default=_UNSET)
    output_transforms: tuple[tuple[str, Transform], ...] = field(default=_UNSET)

    def __post_init__(self) -> None:
        if self.preset not in _PRESETS:
            raise ValueError(
                f"preset={self.preset!r} is not a known preset; expected one of {list(PRESETS)}"
            )
        defaults = {**_COMMON, **_PRESETS[self.preset]}
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is _UNSET:
                object.__setattr__(self, f.name, defaults[f.name])
        self._normalize_types()
        self._validate()

    def _normalize_types(self) -> None:
        for name in ("regression", "diffusion"):
            value = getattr(self, name)
            if isinstance(value, dict):
                object.__setattr__(self, name, NetworkConfig.from_dict(value))
            elif not isinstance(value, NetworkConfig):
                raise TypeError(
                    f"{name}={value!r} is invalid; expected a NetworkConfig or a dict of its fields"
                )
        object.__setattr__(self, "patch_shape", tuple(self.patch_shape))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if self.checkpoint_dir is not None:
            object.__setattr__(self, "checkpoint_dir", str(self.checkpoint_dir))
        transforms = self.output_transforms
        pairs = transforms.items() if isinstance(transforms, Mapping) else transforms
        try:
            normalized = tuple(sorted((str(name), str(kind)) for name, kind in pairs))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"output_transforms={transforms!r} is invalid; expected a mapping of variable "
                "names to transforms, e.g. {'precip': 'log1p'}"
            ) from exc
        object.__setattr__(self, "output_transforms", normalized)

    def _validate(self) -> None:
        if len(self.patch_shape) != 2:
            raise ValueError(
                f"patch_shape={self.patch_shape!r} is invalid; expected two sides (y, x)"
            )
        for side in self.patch_shape:
            _check_int("patch_shape side", side, minimum=1)
        factor = self.diffusion.downsampling_factor
        if any(side % factor for side in self.patch_shape):
            raise ValueError(
                f"patch_shape={self.patch_shape!r} is invalid for the diffusion network with "
                f"channel_mult={self.diffusion.channel_mult}; expected sides divisible by {factor}"
            )
        for name in (
            "patches_per_sample",
            "batch_size",
            "lr_decay_rate",
            "regression_duration",
            "diffusion_duration",
            "validation_every",
            "checkpoint_every",
        ):
            _check_int(name, getattr(self, name), minimum=1)
        _check_int("lr_rampup", self.lr_rampup, minimum=0)
        _check_int("ema_halflife", self.ema_halflife, minimum=0)
        _check_int("num_workers", self.num_workers, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        _check_positive("learning_rate", self.learning_rate)
        if not 0.0 < self.lr_decay <= 1.0:
            raise ValueError(f"lr_decay={self.lr_decay!r} is invalid; expected a value in (0, 1]")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas={self.betas!r} is invalid; expected two values in [0, 1)")
        if self.grad_clip is not None:
            _check_positive("grad_clip", self.grad_clip)
        if self.ema_rampup_ratio is not None:
            _check_positive("ema_rampup_ratio", self.ema_rampup_ratio)
        _check_choice("precision", self.precision, get_args(Precision))
        _check_choice("on_nonfinite", self.on_nonfinite, get_args(OnNonfinite))
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction={self.validation_fraction!r} is invalid; "
                "expected a value in [0, 1)"
            )
        _check_positive("P_std", self.P_std)
        _check_positive("sigma_data", self.sigma_data)
        for name, kind in self.output_transforms:
            _check_choice(f"output_transforms[{name!r}]", kind, get_args(Transform))
        for name in ("channels_last", "compile", "hr_mean_conditioning", "residual_scaling"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{name}={getattr(self, name)!r} is invalid; expected True or False"
                )
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(
                f"device={self.device!r} is invalid; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
            )

    @property
    def patches_per_step(self) -> int:
        """Diffusion patches per optimizer step."""
        return self.batch_size * self.patches_per_sample

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (the preset is kept)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary of every resolved field."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, NetworkConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"TrainConfig.from_dict got unknown keys {unknown}; expected keys among "
                f"{sorted(names)}"
            )
        return cls(**data)

"""Frozen, keyword-only configuration of the networks and of the sampler a model carries.

* :class:`NetworkConfig` — hyperparameters of one SongUNet (regression or diffusion), in
  PhysicsNeMo's names.
* :class:`SamplerConfig` — the default sampler settings stored with a model.
* :data:`SAMPLERS` — the samplers a model or a call may name, with their defaults.
* :class:`StudentConfig` — a distilled few-step student's sampler and whether it is the
  model's default (:func:`xcorrdiff.train.distill`).

The training settings are :class:`xcorrdiff.train.TrainConfig`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from xcorrdiff._checks import check_bool, check_choice, check_int, check_positive

EmbeddingType = Literal["positional", "fourier", "zero"]
GridType = Literal["sinusoidal", "sinusoidal_octave", "learnable", "linear", "none"]
SamplerName = Literal["euler", "heun", "dpmpp_2m", "ancestral"]

#: Field metadata of a setting that may change between a run and its resumption (a
#: training checkpoint, a zarr store): not part of their fingerprints.
RUNTIME_ONLY: Mapping[str, bool] = {"runtime_only": True}


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
        check_int("model_channels", self.model_channels, minimum=1)
        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))
        object.__setattr__(self, "attn_resolutions", tuple(self.attn_resolutions))
        if not self.channel_mult:
            raise ValueError("channel_mult=() is invalid; expected at least one level, e.g. (1, 2)")
        for m in self.channel_mult:
            check_int("channel_mult entry", m, minimum=1)
        for r in self.attn_resolutions:
            check_int("attn_resolutions entry", r, minimum=1)
        check_bool("bottleneck_attention", self.bottleneck_attention)
        check_int("num_blocks", self.num_blocks, minimum=1)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} is invalid; expected a value in [0, 1)")
        check_choice("embedding_type", self.embedding_type, get_args(EmbeddingType))
        check_choice("gridtype", self.gridtype, get_args(GridType))
        check_int("N_grid_channels", self.N_grid_channels, minimum=0)

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
class SamplerInfo:
    """What the rest of the library needs to know of one sampler of
    :mod:`xcorrdiff.diffusion.samplers` (the function of the same name).

    Parameters
    ----------
    default_steps : int
        Steps when a call names the sampler without ``num_steps``.
    corrector : bool
        Two denoiser evaluations per step but the last (Heun), else one.
    noise : {"s_churn", "renoise"} or None
        The argument that makes it stochastic beyond its initial noise, if any.
    default_noise : float
        That argument's default, per step for ``s_churn`` (``s_churn = default_noise ×
        num_steps``).
    min_steps : int
        The fewest steps it is allowed: fewer are refused with this number in the message.
    summary : str
        One line for help texts.
    """

    default_steps: int
    corrector: bool = False
    noise: str | None = None
    default_noise: float = 0.0
    min_steps: int = 1
    summary: str = ""

    def evaluations(self, num_steps: int) -> int:
        """Denoiser evaluations (NFE) of ``num_steps`` steps."""
        return 2 * num_steps - 1 if self.corrector else num_steps

    def noise_arguments(self, s_churn: float, renoise: float | None) -> dict[str, float]:
        """The keyword arguments that set the sampler's noise: ``s_churn``, ``renoise``
        (its default when None) or none."""
        if self.noise == "s_churn":
            return {"s_churn": s_churn}
        if self.noise == "renoise":
            return {"renoise": self.default_noise if renoise is None else renoise}
        return {}


#: The samplers, by the name ``SamplerConfig.sampler``, ``downscale(sampler=...)`` and the
#: CLI's ``--sampler`` take; the function of each is ``xcorrdiff.diffusion.samplers.<name>``.
#: (This table lives here, not beside the functions, because ``import xcorrdiff`` and the
#: CLI's argument parser must not import torch.)
SAMPLERS: Mapping[str, SamplerInfo] = {
    "euler": SamplerInfo(
        default_steps=12, noise="s_churn",
        summary="first-order steps of the probability-flow ODE (= DDIM, exponential Euler)",
    ),
    # Heun below 12 steps: its corrector multiplies the network's error at small σ by the
    # step length (demo model, 8 members: CRPS 8.76 at 3 steps, 0.387 at 6, 0.313 at 12, against
    # 0.294 for 12 Euler steps; high-k power 2e7, 9.0, 1.47 × the truth's; docs/downscaling.md).
    "heun": SamplerInfo(
        default_steps=18, corrector=True, noise="s_churn", default_noise=0.1, min_steps=12,
        summary="second-order steps with churn (EDM Algorithm 2), 2 evaluations per step",
    ),
    "dpmpp_2m": SamplerInfo(
        default_steps=12,
        summary="DPM-Solver++(2M): second order, 1 evaluation per step, deterministic",
    ),
    "ancestral": SamplerInfo(
        default_steps=12, noise="renoise", default_noise=1.0,
        summary="Euler steps that re-draw a fraction renoise of the noise (DDIM-eta)",
    ),
}  # fmt: skip
assert set(SAMPLERS) == set(get_args(SamplerName))


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """Default sampler settings stored with a model.

    Parameters
    ----------
    sampler : str
        A name of :data:`SAMPLERS`. ``"euler"`` with 12 steps follows NVIDIA's optimized
        CorrDiff; a newly trained model gets :data:`NEW_MODEL_SAMPLER` instead.
    num_steps : int
        Number of denoising steps (a count below the sampler's ``min_steps`` is kept, so
        that any stored model loads, and refused when sampling with it; pass a larger
        ``num_steps`` to ``downscale``).
    sigma_min, sigma_max : float
        Noise range of the Karras et al. (2022) schedule.
    rho : float
        Schedule exponent.
    noise_scale : tuple of float, optional
        Per output channel, a factor on the initial noise (a sampling temperature: 1 is
        the trained model; above 1 widens the ensemble), as chosen by
        :func:`xcorrdiff.inference.calibrate.calibrate`. None: 1 for every channel.
    s_churn : float, optional
        EDM churn of ``"euler"``/``"heun"`` (an imported Earth2Studio package's Heun runs
        without churn: 0). None: the sampler's default (:data:`SAMPLERS`).
    """

    sampler: SamplerName = "euler"
    num_steps: int = 12
    sigma_min: float = 0.002
    sigma_max: float = 800.0
    rho: float = 7.0
    noise_scale: tuple[float, ...] | None = None
    s_churn: float | None = None

    def __post_init__(self) -> None:
        check_choice("sampler", self.sampler, list(SAMPLERS))
        check_int("num_steps", self.num_steps, minimum=1)
        check_positive("sigma_min", self.sigma_min)
        check_positive("sigma_max", self.sigma_max)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(
                f"sigma_min={self.sigma_min!r} must be smaller than sigma_max={self.sigma_max!r}"
            )
        check_positive("rho", self.rho)
        if self.noise_scale is not None:
            object.__setattr__(self, "noise_scale", tuple(float(v) for v in self.noise_scale))
            for v in self.noise_scale:
                check_positive("noise_scale entry", v)
        if self.s_churn is not None:
            if SAMPLERS[self.sampler].noise != "s_churn":
                raise ValueError(
                    f"s_churn={self.s_churn!r} does not apply to sampler={self.sampler!r}"
                )
            check_positive("s_churn", self.s_churn, allow_zero=True)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary (``noise_scale`` and ``s_churn`` left out when None, as older
        models have them)."""
        data = dataclasses.asdict(self)
        for key in ("noise_scale", "s_churn"):
            if data[key] is None:
                del data[key]
        if self.noise_scale is not None:
            data["noise_scale"] = list(self.noise_scale)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplerConfig:
        """Rebuild from :meth:`to_dict` output."""
        return cls(**data)


@dataclass(frozen=True, kw_only=True)
class StudentConfig:
    """The settings of a model's distilled student network (:func:`xcorrdiff.train.distill`).

    Parameters
    ----------
    sampler : SamplerConfig
        The student's own schedule: Euler steps on the noise levels it was distilled at
        (every ``r``-th level of the teacher's schedule, itself a Karras schedule). Other
        samplers or step counts are refused with the student.
    default : bool, default False
        Whether ``downscale`` uses the student when its ``student`` argument is None.
    """

    sampler: SamplerConfig
    default: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.sampler, SamplerConfig):
            raise TypeError(f"sampler must be a SamplerConfig, got {type(self.sampler).__name__}")
        if self.sampler.sampler != "euler":
            raise ValueError(
                f"a student samples with Euler steps on its distilled levels; got "
                f"sampler={self.sampler.sampler!r}"
            )
        check_bool("default", self.default)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dictionary; the inverse of :meth:`from_dict`."""
        return {"sampler": self.sampler.to_dict(), "default": self.default}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudentConfig:
        """Rebuild from :meth:`to_dict` output."""
        return cls(sampler=SamplerConfig.from_dict(data["sampler"]), default=data["default"])


#: The sampler a newly trained model samples with: DPM-Solver++(2M), 6 steps. Chosen from
#: the cost-skill grid on real data (docs/performance.md, "Samplers on real data"): the
#: cheapest setting within 2 % of the best CRPS with spread/skill in 0.85-1.15 (CRPS 0.259 vs
#: Euler 12's 0.263 for all five training seeds, spread/skill 0.87 vs 0.64, half the
#: evaluations). A well-trained model may prefer fewer steps (the demo model: 4).
NEW_MODEL_SAMPLER = SamplerConfig(sampler="dpmpp_2m", num_steps=6)


def check_steps(sampler: str, num_steps: object) -> int:
    """``num_steps`` as an int, refused below the sampler's ``min_steps``."""
    num_steps = check_int("num_steps", num_steps, minimum=1)
    least = SAMPLERS[sampler].min_steps
    if num_steps < least:
        raise ValueError(
            f"num_steps={num_steps} is too few for sampler={sampler!r}: it needs at least "
            f"{least} (fewer diverge); use num_steps>={least}, or a one-evaluation sampler "
            f"such as 'dpmpp_2m' for fewer evaluations"
        )
    return num_steps

"""The two networks of CorrDiff, built from a TrainConfig and the data's channel counts."""

from __future__ import annotations

from typing import Any

import torch

from xcorrdiff.nn import EDMPrecondSuperResolution, UNet
from xcorrdiff.train.config import TrainConfig

__all__ = ["build_diffusion", "build_regression", "seeded_init"]


def _lead_time(config: TrainConfig, kwargs: dict[str, Any], lead_time_steps: int) -> int:
    """Set the lead-time network type in ``kwargs`` (when ``lead_time_steps``); return the
    channels the inner network appends itself (grid and lead-time embedding)."""
    grid = kwargs["N_grid_channels"] if kwargs["gridtype"] != "none" else 0
    kwargs["model_type"] = "SongUNetPosLtEmbd" if lead_time_steps else "SongUNetPosEmbd"
    if not lead_time_steps:
        return grid
    channels = config.model.lead_time_channels
    kwargs.update(lead_time_channels=channels, lead_time_steps=lead_time_steps)
    return grid + channels


def build_regression(
    config: TrainConfig,
    *,
    shape: tuple[int, int],
    in_channels: int,
    out_channels: int,
    lead_time_steps: int = 0,
) -> UNet:
    """The regression UNet of ``config.regression`` for ``in_channels`` condition channels
    (lead-time-aware, :class:`~xcorrdiff.nn.SongUNetPosLtEmbd`, for ``lead_time_steps`` > 0).

    Returns
    -------
    xcorrdiff.nn.UNet
        ``img_in_channels = in_channels + N_grid_channels (+ lead_time_channels)``
        (PhysicsNeMo's convention).
    """
    kwargs = config.model.regression.to_kwargs()
    appended = _lead_time(config, kwargs, lead_time_steps)
    return UNet(
        img_resolution=list(shape),
        img_in_channels=in_channels + appended,
        img_out_channels=out_channels,
        **kwargs,
    )


def build_diffusion(
    config: TrainConfig,
    *,
    shape: tuple[int, int],
    in_channels: int,
    out_channels: int,
    lead_time_steps: int = 0,
) -> EDMPrecondSuperResolution:
    """The residual denoiser of ``config.diffusion``.

    Its condition is ``[μ (if hr_mean_conditioning), condition patch, whole-domain condition
    resized to the patch (if global_lowres)]``, as PhysicsNeMo's patch-based
    ``ResidualLoss`` builds it.
    """
    kwargs = config.model.diffusion.to_kwargs()
    appended = _lead_time(config, kwargs, lead_time_steps)
    copies = 2 if config.model.global_lowres else 1
    cond = (out_channels if config.model.hr_mean_conditioning else 0) + copies * in_channels
    return EDMPrecondSuperResolution(
        img_resolution=list(shape),
        img_in_channels=cond + appended,
        img_out_channels=out_channels,
        sigma_data=config.model.sigma_data,
        **kwargs,
    )


def seeded_init(seed: int, build: Any) -> Any:
    """Build a network under a fixed torch seed, leaving the global stream as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()

"""The two networks of CorrDiff, built from a TrainConfig and the data's channel counts."""

from __future__ import annotations

from typing import Any

import torch

from xcorrdiff.nn import EDMPrecondSuperResolution, UNet
from xcorrdiff.train.config import TrainConfig

__all__ = ["build_diffusion", "build_regression", "seeded_init"]


def build_regression(
    config: TrainConfig, *, shape: tuple[int, int], in_channels: int, out_channels: int
) -> UNet:
    """The regression UNet of ``config.regression`` for ``in_channels`` condition channels.

    Returns
    -------
    xcorrdiff.nn.UNet
        ``img_in_channels = in_channels + N_grid_channels`` (PhysicsNeMo's convention).
    """
    kwargs = config.model.regression.to_kwargs()
    grid = kwargs["N_grid_channels"] if kwargs["gridtype"] != "none" else 0
    return UNet(
        img_resolution=list(shape),
        img_in_channels=in_channels + grid,
        img_out_channels=out_channels,
        model_type="SongUNetPosEmbd",
        **kwargs,
    )


def build_diffusion(
    config: TrainConfig, *, shape: tuple[int, int], in_channels: int, out_channels: int
) -> EDMPrecondSuperResolution:
    """The residual denoiser of ``config.diffusion``.

    Its condition is ``[μ (if hr_mean_conditioning), condition patch, whole-domain condition
    resized to the patch]``, as PhysicsNeMo's patch-based ``ResidualLoss`` builds it.
    """
    kwargs = config.model.diffusion.to_kwargs()
    grid = kwargs["N_grid_channels"] if kwargs["gridtype"] != "none" else 0
    cond = (out_channels if config.model.hr_mean_conditioning else 0) + 2 * in_channels
    return EDMPrecondSuperResolution(
        img_resolution=list(shape),
        img_in_channels=cond + grid,
        img_out_channels=out_channels,
        model_type="SongUNetPosEmbd",
        sigma_data=config.model.sigma_data,
        **kwargs,
    )


def seeded_init(seed: int, build: Any) -> Any:
    """Build a network under a fixed torch seed, leaving the global stream as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()

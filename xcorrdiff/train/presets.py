"""The flat values of the three presets of :class:`~xcorrdiff.train.config.TrainConfig`
(described in :mod:`xcorrdiff.train.config`); the groups' own defaults fill in the rest."""

from __future__ import annotations

from typing import Any

from xcorrdiff.config import NetworkConfig

__all__ = ["PRESET_VALUES"]

_TINY_NET: dict[str, Any] = {
    "model_channels": 32,
    "channel_mult": (1, 2),
    "num_blocks": 1,
    "bottleneck_attention": False,
}
_MINI_NET: dict[str, Any] = {
    "model_channels": 64,
    "channel_mult": (1, 2, 2),
    "attn_resolutions": (16,),
    "num_blocks": 4,
    "dropout": 0.13,
    "gridtype": "sinusoidal",
    "N_grid_channels": 4,
}
_NORMAL_NET: dict[str, Any] = {**_MINI_NET, "model_channels": 128}
_NORMAL_NET.update(channel_mult=(1, 2, 2, 2, 2), attn_resolutions=(28,))

_MINI: dict[str, Any] = {
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
}

PRESET_VALUES: dict[str, dict[str, Any]] = {
    "tiny": {
        "regression": NetworkConfig(**_TINY_NET, embedding_type="zero"),
        "diffusion": NetworkConfig(**_TINY_NET, embedding_type="positional"),
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
        "residual_scaling": True,
        "input_skip": "auto",
        "residual_folds": "auto",
        "diffusion_crops": "auto",
    },
    "mini": _MINI,
    # The paper's CWA network: CorrDiff-Mini's optimizer, larger networks and patches.
    "normal": {
        **_MINI,
        "regression": NetworkConfig(**_NORMAL_NET, embedding_type="zero"),
        "diffusion": NetworkConfig(**_NORMAL_NET, embedding_type="positional"),
        "patch_shape": (448, 448),
        "patches_per_sample": 16,
        "lr_decay_rate": 5_000_000,
        "precision": "bfloat16",
        "channels_last": True,
        "compile": True,
        "num_workers": 4,
        "regression_duration": 10_000_000,
        "diffusion_duration": 50_000_000,
        "validation_every": 250_000,
    },
}

"""Networks (pure torch): SongUNet, EDM preconditioning, the DiT, PhysicsNeMo checkpoint import.

State_dict-compatible with PhysicsNeMo 2.2.2, so its CorrDiff checkpoints load with
:func:`load_physicsnemo` and give the same outputs.
"""

from __future__ import annotations

from .compile import maybe_compile, set_channels_last
from .dit import DiT
from .flow_dit import FlowDiT
from .physicsnemo import CheckpointError, load_physicsnemo
from .precond import (
    CorrDiffRegressionUNet,
    EDMPrecondSR,
    EDMPrecondSuperResolution,
    UNet,
    edm_scalings,
)
from .song_unet import SongUNet
from .song_unet_pos import SongUNetPosEmbd
from .song_unet_pos_lt import SongUNetPosLtEmbd

__all__ = [
    "CheckpointError",
    "CorrDiffRegressionUNet",
    "DiT",
    "EDMPrecondSR",
    "EDMPrecondSuperResolution",
    "FlowDiT",
    "SongUNet",
    "SongUNetPosEmbd",
    "SongUNetPosLtEmbd",
    "UNet",
    "edm_scalings",
    "load_physicsnemo",
    "maybe_compile",
    "set_channels_last",
]

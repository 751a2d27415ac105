"""EDM math (pure torch): sigma schedules, samplers, losses, patch geometry.

* :mod:`~xcorrdiff.diffusion.schedules` — :func:`edm_sigmas`.
* :mod:`~xcorrdiff.diffusion.samplers` — :func:`euler`, :func:`heun`, :func:`draw_latents`.
* :mod:`~xcorrdiff.diffusion.losses` — :func:`regression_loss`, :func:`residual_loss`,
  :func:`edm_loss_weight`.
* :mod:`~xcorrdiff.diffusion.patching` — :class:`PatchGrid`, :func:`random_patch_offsets`,
  :func:`extract_patches`.
"""

from __future__ import annotations

from xcorrdiff.diffusion.losses import edm_loss_weight, regression_loss, residual_loss
from xcorrdiff.diffusion.patching import PatchGrid, extract_patches, random_patch_offsets
from xcorrdiff.diffusion.samplers import draw_latents, euler, heun
from xcorrdiff.diffusion.schedules import edm_sigmas

__all__ = [
    "PatchGrid",
    "draw_latents",
    "edm_loss_weight",
    "edm_sigmas",
    "euler",
    "extract_patches",
    "heun",
    "random_patch_offsets",
    "regression_loss",
    "residual_loss",
]

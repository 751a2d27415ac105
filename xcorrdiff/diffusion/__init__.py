"""EDM math (pure torch): the CorrDiff condition, sigma schedules, samplers, losses, patches.

* :mod:`~xcorrdiff.diffusion.conditioning` — :class:`Condition` and its functions
  (:func:`build_condition`, :func:`crop_condition`, :func:`unfold_condition`), the
  :class:`Denoiser` the samplers call, :func:`regression_mean`, :func:`mean_of_inputs`.
* :mod:`~xcorrdiff.diffusion.schedules` — :func:`edm_sigmas`.
* :mod:`~xcorrdiff.diffusion.samplers` — :func:`euler`, :func:`heun`, :func:`dpmpp_2m`,
  :func:`ancestral` (the names of :data:`xcorrdiff.config.SAMPLERS`), :func:`initial_state`,
  :func:`draw_latents`.
* :mod:`~xcorrdiff.diffusion.losses` — :func:`regression_loss`, :func:`residual_loss`,
  :func:`edm_loss_weight`.
* :mod:`~xcorrdiff.diffusion.patching` — :class:`PatchGrid`, :func:`random_patch_offsets`,
  :func:`extract_patches`.
* :mod:`~xcorrdiff.diffusion.guidance` — :class:`StationGuidance` (diffusion posterior
  sampling toward station observations).
"""

from __future__ import annotations

from xcorrdiff.diffusion.conditioning import (
    Condition,
    Denoiser,
    build_condition,
    crop_condition,
    denoise,
    mean_of_inputs,
    patched_regression_mean,
    regression_mean,
    unfold_condition,
)
from xcorrdiff.diffusion.guidance import StationGuidance
from xcorrdiff.diffusion.losses import edm_loss_weight, masked_mean, regression_loss, residual_loss
from xcorrdiff.diffusion.patching import (
    PatchGrid,
    extract_patches,
    random_patch_offsets,
    regression_grid,
)
from xcorrdiff.diffusion.samplers import (
    ancestral,
    dpmpp_2m,
    draw_latents,
    euler,
    heun,
    initial_state,
)
from xcorrdiff.diffusion.schedules import edm_sigmas

__all__ = [
    "Condition",
    "Denoiser",
    "PatchGrid",
    "StationGuidance",
    "ancestral",
    "build_condition",
    "crop_condition",
    "denoise",
    "dpmpp_2m",
    "draw_latents",
    "edm_loss_weight",
    "edm_sigmas",
    "euler",
    "extract_patches",
    "heun",
    "initial_state",
    "masked_mean",
    "mean_of_inputs",
    "patched_regression_mean",
    "random_patch_offsets",
    "regression_grid",
    "regression_loss",
    "regression_mean",
    "residual_loss",
    "unfold_condition",
]

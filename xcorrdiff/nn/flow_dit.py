"""FlowDiT: a DiT that generates whole fields by rectified flow, with its conditioning.

The network of NVIDIA's CorrDiff-family ``CorrDiffEra5Hrrr`` (Earth2Studio 0.19): a
:class:`~xcorrdiff.nn.DiT` whose input is the state concatenated with the conditioning
channels (PhysicsNeMo's ``ConcatConditionWrapper``) and whose scalar conditions are the
``[sin, cos]`` of the year's phase at the valid time and one "present" flag per input that
training dropped at random (1 at inference). It generates the fields themselves, not a
residual: there is no regression stage. What a sampler needs besides the weights lives
here too: the prediction (``"x0"`` or ``"flow"``), the factor on the time fed to the
network, and the rectified-flow schedule (``t_max``, the SD3 ``shift``, the clamp of the
x0-to-velocity denominator); :mod:`xcorrdiff.diffusion.rectified_flow` integrates it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .dit import DiT
from .song_unet import json_config

__all__ = ["FlowDiT", "year_phase_conditions"]

#: Hours of the year of Earth2Studio's day-of-year phase (365.25 days).
HOURS_PER_YEAR = 8766.0


def year_phase_conditions(times: np.ndarray, presence_flags: int, day_of_year: bool) -> np.ndarray:
    """The scalar conditions ``(time, n)`` of each valid time: ``sin``, ``cos`` of
    ``2π (t - Jan 1 of its year) / 365.25 d`` (with ``day_of_year``), then
    ``presence_flags`` ones (every input present), as Earth2Studio computes them."""
    stamps = np.asarray(times, dtype="datetime64[ns]")
    years = stamps.astype("datetime64[Y]")
    seconds = (stamps - years.astype("datetime64[ns]")) / np.timedelta64(1, "s")
    phase = 2.0 * math.pi * seconds / (HOURS_PER_YEAR * 3600.0)
    parts = [np.sin(phase), np.cos(phase)] if day_of_year else []
    parts += [np.ones(stamps.shape)] * presence_flags
    return (
        np.stack(parts, axis=-1).astype(np.float32)
        if parts
        else np.zeros((len(stamps), 0), np.float32)
    )


class FlowDiT(nn.Module):
    """A rectified-flow DiT with its conditioning layout and schedule.

    Parameters
    ----------
    dit : mapping
        The :class:`~xcorrdiff.nn.DiT` constructor arguments (PhysicsNeMo's).
    out_channels : int
        Channels of the generated state (the DiT's input is these plus the conditioning).
    condition_order : sequence of int
        For each conditioning channel the DiT takes, its index among the model's condition
        channels (xcorrdiff's order: inputs, invariants, time features).
    prediction : {"x0", "flow"}, default "x0"
        What the DiT predicts.
    time_scale : float, default 999
        Factor on the time ``t ∈ [0, 1]`` before the DiT's time embedding.
    day_of_year : bool, default True
        Scalar conditions begin with the year's phase (:func:`year_phase_conditions`).
    presence_flags : int, default 0
        "Present" flags after it (all 1).
    t_max, shift, x0v_clip : float
        The rectified-flow schedule (:func:`~xcorrdiff.diffusion.rectified_flow.flow_times`)
        and the clamp of :func:`~xcorrdiff.diffusion.rectified_flow.velocity`.
    """

    def __init__(
        self,
        dit: Mapping[str, Any],
        out_channels: int,
        condition_order: Sequence[int],
        prediction: str = "x0",
        time_scale: float = 999.0,
        day_of_year: bool = True,
        presence_flags: int = 0,
        t_max: float = 0.99,
        shift: float = 1.0,
        x0v_clip: float = 0.05,
    ) -> None:
        self.config = json_config(locals())
        super().__init__()
        if prediction not in ("x0", "flow"):
            raise ValueError(f"prediction={prediction!r} is invalid; expected 'x0' or 'flow'")
        self.dit = DiT(**dit)
        self.out_channels = int(out_channels)
        self.condition_order: torch.Tensor
        self.register_buffer(
            "condition_order",
            torch.tensor(list(condition_order), dtype=torch.long),
            persistent=False,
        )
        expected = self.dit.in_channels - self.out_channels
        if len(condition_order) != expected:
            raise ValueError(
                f"condition_order has {len(condition_order)} channels but the DiT takes "
                f"{self.dit.in_channels} = {self.out_channels} state + {expected} conditioning"
            )
        scalars = (2 if day_of_year else 0) + int(presence_flags)
        if scalars != self.dit.condition_dim:
            raise ValueError(
                f"{scalars} scalar conditions (day_of_year={day_of_year}, presence_flags="
                f"{presence_flags}) but the DiT takes condition_dim={self.dit.condition_dim}"
            )
        self.prediction, self.time_scale = prediction, float(time_scale)
        self.day_of_year, self.presence_flags = bool(day_of_year), int(presence_flags)
        self.t_max, self.shift, self.x0v_clip = float(t_max), float(shift), float(x0v_clip)

    @property
    def input_shape(self) -> tuple[int, int]:
        """The one domain size the DiT takes."""
        return self.dit.input_size

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor, scalars: torch.Tensor
    ) -> torch.Tensor:
        """The DiT's prediction for state ``x`` ``(n, C_out, H, W)`` at times ``t``
        ``(n,)`` given the model's condition ``(n, C_cond, H, W)`` and scalars ``(n, k)``."""
        inputs = torch.cat([x, condition.index_select(1, self.condition_order).to(x.dtype)], dim=1)
        vector = scalars.to(x.dtype) if scalars.shape[1] else None
        return self.dit(inputs, t * self.time_scale, vector)

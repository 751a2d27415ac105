"""Rectified-flow sampling: the ODE of the CorrDiff-family DiT (Earth2Studio's
``CorrDiffEra5Hrrr``).

The path from data ``x₀`` (``t = 0``) to noise ``ε`` (``t = 1``) is straight,
``x_t = (1 - t) x₀ + t ε``, and its velocity ``v = dx/dt = ε - x₀`` is what the network
gives: directly (``prediction="flow"``), or through its estimate of ``x₀``
(``prediction="x0"``) as ``v = (x_t - x̂₀) / max(t, clip)``, the denominator clamped where
``t → 0`` and ``x̂₀ → x_t`` (:func:`velocity`). Sampling integrates ``dx/dt = v`` from
``t_max`` down to 0 on :func:`flow_times` (linear in ``t``, then the SD3 resolution shift
``t ↦ a t / (1 + (a - 1) t)``, which spends the steps at high noise where a network
trained on small patches meets a large domain), starting from ``t_max · ε``
(:func:`flow_initial_state`), by :func:`flow_euler` or :func:`flow_heun` (whose last step,
to ``t = 0``, is an Euler step).

Randomness is the EDM samplers': one :class:`torch.Generator` per member, its unit noise
drawn by :func:`~xcorrdiff.diffusion.samplers.draw_latents`, so a member's sample depends
on its own generator and inputs only. Both integrators are deterministic given the
initial state; Earth2Studio's rectified-flow model has no stochastic mode.

References
----------
Liu, X., Gong, C., Liu, Q. (2023). Flow straight and fast: learning to generate and
transfer data with rectified flow. ICLR.

Esser, P., et al. (2024). Scaling rectified flow transformers for high-resolution image
synthesis (SD3). ICML. Section 5.3.2 (resolution-dependent shift).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

from .samplers import Frame, draw_latents

__all__ = [
    "PREDICTIONS",
    "flow_euler",
    "flow_heun",
    "flow_initial_state",
    "flow_times",
    "velocity",
]

#: What a rectified-flow network predicts: the velocity, or the clean data.
PREDICTIONS = ("flow", "x0")
#: ``v(x, t) -> velocity``, ``t`` of shape ``(batch,)``: what the integrators call.
Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def flow_times(
    num_steps: int,
    *,
    t_max: float = 0.99,
    shift: float = 1.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The ``num_steps + 1`` decreasing times from ``t_max`` to 0, shifted.

    Parameters
    ----------
    num_steps : int
        Integration steps (at least 1).
    t_max : float, default 0.99
        The first time, in (0, 1): the velocity of an ``x0`` network is singular at 1.
    shift : float, default 1
        SD3's ``a`` (positive; 1 leaves the times linear; Earth2Studio's model uses 12–32).
    dtype, device
        Of the times (``linspace`` and the shift computed in ``dtype``).

    Returns
    -------
    torch.Tensor
        ``(num_steps + 1,)``, ending in exactly 0.
    """
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps={num_steps!r} is invalid; expected an integer >= 1")
    if not 0.0 < t_max < 1.0:
        raise ValueError(f"t_max={t_max!r} is invalid; expected a number in (0, 1)")
    if not shift > 0.0:
        raise ValueError(f"shift={shift!r} is invalid; expected a positive number")
    t = torch.linspace(t_max, 0.0, num_steps + 1, dtype=dtype, device=device)
    return t if shift == 1.0 else shift * t / (1.0 + (shift - 1.0) * t)


def velocity(
    x: torch.Tensor, output: torch.Tensor, t: torch.Tensor, *, prediction: str, clip: float
) -> torch.Tensor:
    """The velocity at ``(x, t)`` from a network's ``output`` (``t``: ``(batch,)``).

    ``prediction="flow"``: the output itself; ``"x0"``: ``(x - output) / max(t, clip)``.
    """
    if prediction == "flow":
        return output
    if prediction != "x0":
        raise ValueError(
            f"prediction={prediction!r} is invalid; expected one of {list(PREDICTIONS)}"
        )
    return (x - output) / t.clamp(min=clip).reshape(-1, *([1] * (x.ndim - 1)))


def flow_initial_state(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    times: torch.Tensor,
    *,
    frame: Frame | None = None,
) -> torch.Tensor:
    """``times[0]`` times each member's unit noise (float32 draws, in ``times.dtype``)."""
    latents = draw_latents(generators, shape, dtype=times.dtype, device=times.device, frame=frame)
    return times[0] * latents


def flow_euler(v: Velocity, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """``x ← x + (t_{i+1} - t_i) v(x, t_i)`` over ``times``; one evaluation per step."""
    for t_cur, t_next in itertools.pairwise(times):
        x = x + (t_next - t_cur) * v(x, t_cur.expand(x.shape[0]))
    return x


def flow_heun(v: Velocity, x: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Heun's second-order steps over ``times`` (two evaluations per step), the last step
    to ``t = 0`` an Euler step (one evaluation)."""
    for t_cur, t_next in itertools.pairwise(times):
        h = t_next - t_cur
        d_cur = v(x, t_cur.expand(x.shape[0]))
        if t_next == 0:
            x = x + h * d_cur
            continue
        d_next = v(x + h * d_cur, t_next.expand(x.shape[0]))
        x = x + h * (0.5 * d_cur + 0.5 * d_next)
    return x

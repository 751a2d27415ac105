"""Learning-rate schedule and exponential moving average of weights.

The learning rate follows the closed formula (counts in training samples ``n``)

.. math::

    \\mathrm{lr}(n) = \\mathrm{base} \\cdot \\min(n / \\mathrm{rampup}, 1)
    \\cdot \\mathrm{decay}^{\\lfloor \\max(n - \\mathrm{rampup}, 0) / \\mathrm{decay\\_rate} \\rfloor}

with ``rampup = 0`` meaning no warm-up. PhysicsNeMo's CorrDiff example multiplies the
optimizer's *current* learning rate by the decay factor on every step once past the warm-up,
so with ``rampup = 0`` (where nothing resets the rate) the decay compounds step after step;
this module evaluates the formula afresh at each step instead.

The EMA follows Karras et al. (2022, EDM): a half-life in samples, optionally limited to
``ramp-up ratio × samples seen`` early in training, giving
``beta = 0.5 ** (batch_size / halflife)``.
"""

from __future__ import annotations

import torch


def learning_rate(n: int, *, base: float, rampup: int, decay: float, decay_rate: int) -> float:
    """Learning rate after ``n`` training samples.

    Parameters
    ----------
    n : int
        Samples seen so far (``>= 0``).
    base : float
        Base learning rate.
    rampup : int
        Warm-up length in samples; 0 means no warm-up.
    decay : float
        Decay factor applied once per ``decay_rate`` samples after the warm-up.
    decay_rate : int
        Decay period in samples.

    Returns
    -------
    float
        ``base * min(n / rampup, 1) * decay ** floor(max(n - rampup, 0) / decay_rate)``.

    Examples
    --------
    >>> learning_rate(50, base=1.0, rampup=100, decay=0.5, decay_rate=10)
    0.5
    >>> learning_rate(125, base=1.0, rampup=100, decay=0.5, decay_rate=10)
    0.25
    """
    if n < 0:
        raise ValueError(f"n={n!r} is invalid; expected a sample count >= 0")
    warm = min(n / rampup, 1.0) if rampup > 0 else 1.0
    return float(base * warm * decay ** (max(n - rampup, 0) // decay_rate))


def ema_beta(
    samples_seen: int, batch_size: int, *, halflife: int, rampup_ratio: float | None
) -> float:
    """EDM's EMA decay for one step of ``batch_size`` samples.

    Parameters
    ----------
    samples_seen : int
        Samples seen after this step.
    batch_size : int
        Samples in this step.
    halflife : int
        EMA half-life in samples.
    rampup_ratio : float or None
        When given, the half-life is at most ``rampup_ratio * samples_seen``.

    Returns
    -------
    float
        ``0.5 ** (batch_size / max(halflife', 1e-8))``; 0 means "copy the weights".
    """
    ema_samples = float(halflife)
    if rampup_ratio is not None:
        ema_samples = min(ema_samples, samples_seen * rampup_ratio)
    return float(0.5 ** (batch_size / max(ema_samples, 1e-8)))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, net: torch.nn.Module, beta: float) -> None:
    """``ema ← beta · ema + (1 − beta) · net`` for parameters; buffers are copied."""
    for p_ema, p_net in zip(ema.parameters(), net.parameters(), strict=True):
        p_ema.copy_(p_net.detach().lerp(p_ema, beta))
    for b_ema, b_net in zip(ema.buffers(), net.buffers(), strict=True):
        b_ema.copy_(b_net)

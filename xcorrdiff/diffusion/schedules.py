"""Noise-level schedules for EDM sampling (Karras et al. 2022, eq. 5)."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["edm_sigmas"]


def edm_sigmas(
    num_steps: int,
    *,
    sigma_min: float = 0.002,
    sigma_max: float = 800.0,
    rho: float = 7.0,
    net: Any = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The EDM noise levels :math:`\sigma_0 > \dots > \sigma_{N-1} > \sigma_N = 0`.

    .. math::

        \sigma_i = \Big(\sigma_{max}^{1/\rho} + \tfrac{i}{N-1}
        \big(\sigma_{min}^{1/\rho} - \sigma_{max}^{1/\rho}\big)\Big)^{\rho},
        \qquad i = 0, \dots, N-1,

    with a trailing zero. When ``net`` is given, ``sigma_min``/``sigma_max`` are first
    clamped to its range (``net.sigma_min``, ``net.sigma_max``) and the levels are passed
    through ``net.round_sigma``, in this order and in ``dtype`` — PhysicsNeMo's arithmetic
    (float64 in its ``deterministic_sampler``, float32 in its ``stochastic_sampler``).

    Parameters
    ----------
    num_steps : int
        Number of noise levels ``N`` before the trailing zero (network evaluations of an
        Euler sampler), at least 1. ``N = 1`` gives ``[sigma_max, 0]``.
    sigma_min, sigma_max : float
        Smallest and largest noise level, ``0 < sigma_min <= sigma_max``, in units of the
        normalised data. Defaults are CorrDiff's (PhysicsNeMo ``stochastic_sampler``).
    rho : float
        Schedule curvature, positive; larger values spend more steps at low noise.
    net : object, optional
        A denoiser with ``sigma_min``, ``sigma_max`` and ``round_sigma`` attributes (each
        optional).
    dtype : torch.dtype
        Floating dtype of the schedule; samplers carry their state in this dtype.
    device : torch.device or str, optional
        Device of the schedule.

    Returns
    -------
    torch.Tensor
        ``(num_steps + 1,)`` decreasing noise levels ending in 0.

    Raises
    ------
    ValueError
        If ``num_steps < 1``, the noise range is empty or not positive, or ``rho <= 0``.

    Examples
    --------
    >>> [round(s, 4) for s in edm_sigmas(4, sigma_min=0.002, sigma_max=80.0).tolist()]
    [80.0, 9.7232, 0.47, 0.002, 0.0]
    """
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if net is not None:
        sigma_min = max(sigma_min, getattr(net, "sigma_min", 0.0))
        sigma_max = min(sigma_max, getattr(net, "sigma_max", float("inf")))
    if not 0 < sigma_min <= sigma_max < float("inf"):
        raise ValueError(
            f"need 0 < sigma_min <= sigma_max < inf (after clamping to the network's range), "
            f"got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}"
        )
    step_indices = torch.arange(num_steps, dtype=dtype, device=device)
    ramp = step_indices / max(num_steps - 1, 1)
    sigmas = (
        sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))
    ) ** rho
    round_sigma = getattr(net, "round_sigma", None)
    if round_sigma is not None:
        sigmas = torch.as_tensor(round_sigma(sigmas)).to(dtype=dtype, device=sigmas.device)
    return torch.cat([sigmas, sigmas.new_zeros(1)])

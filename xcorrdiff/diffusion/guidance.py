r"""Observation guidance of the residual sampler: diffusion posterior sampling (DPS).

The samplers integrate EDM's probability-flow ODE, ``dx/dσ = (x − D(x, σ))/σ`` (Karras et
al. 2022). For the posterior given observations ``y`` the score gains the likelihood's,
``dx/dσ = (x − D)/σ − σ ∇ₓ log p(y | x)``, and diffusion posterior sampling (Chung, Kim,
McCann, Klasky & Ye 2023, ICLR) approximates the likelihood through the denoised estimate:

.. math::

    -\log p(y \mid x_\sigma) \approx G(x_\sigma) = \frac{\zeta}{2} \sum
    \frac{\big(y - H(\mu + s\,D(x_\sigma, \sigma))\big)^2}{\sigma_y^2 + s^2\,
    \sigma^2 / (1 + \sigma^2)}

with :math:`\mu` the regression mean, :math:`s` the residual scale, :math:`\sigma_y` the
observations' error standard deviations (all in normalized units), :math:`H` the
observation operator and :math:`\zeta` the guidance scale. The variance adds the error of the
denoised estimate itself, :math:`\sigma^2/(1 + \sigma^2)` for unit-variance data (as in
ΠGDM, Song et al. 2023), so that the pull is weak while the state is mostly noise and
:math:`\zeta = 1` is the Bayesian weighting; the samplers add :math:`\sigma\,\nabla_x G`
to the ODE's slope at every denoiser evaluation.

:math:`H` is bilinear interpolation at the stations' fractional grid indices
(:func:`xcorrdiff.data.points.locate_points`): four corners and weights per station. A
missing observation (NaN) takes no part.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["StationGuidance"]


@dataclass(frozen=True)
class StationGuidance:
    """The DPS potential ``G`` (module docstring) per sample, for a batch of samples.

    Parameters
    ----------
    rows, cols : torch.Tensor
        ``(4, S)`` long: the grid row and column of each station's four corners, in the
        frame of the sampled state.
    weights : torch.Tensor
        ``(4, S)``: the bilinear weights of the corners.
    values : torch.Tensor
        ``(n, C, S)`` normalized observations of each sample's time; NaN where missing.
    sigma : torch.Tensor
        ``(n, C, S)`` (or broadcastable) normalized error standard deviations, > 0.
    mean : torch.Tensor
        ``(n, C, H, W)`` regression mean of the sampled frame.
    scale : torch.Tensor or None
        ``(1, C, 1, 1)`` residual scale ``s`` (None: 1).
    strength : float
        The guidance scale ``ζ`` (> 0).
    trusted_sigma : float, default 10
        The highest noise level at which the network's Jacobian carries the pull; above it
        the samplers take the Jacobian there (:func:`~xcorrdiff.diffusion.samplers.
        _guided_denoise`). EDM training draws ``ln σ ~ N(0, 1.2²)`` (``P_mean``, ``P_std``):
        σ = 10 is 1.9 standard deviations up, σ = 80 (the second level of a 4-step
        schedule) 3.7 and σ_max = 800 5.6, where the network has hardly ever been trained
        and its Jacobian, multiplied by ``σ²`` in the pull, is noise. On the demo model
        (``asv_benchmarks/guided_sampling.py``, DPM-Solver++(2M), 4 steps) the pull taken
        through the untrained levels put spikes at the stations and made held-out stations
        one grid point away 26 % worse than unguided; from σ = 10 they gain 15 %.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    weights: torch.Tensor
    values: torch.Tensor
    sigma: torch.Tensor
    mean: torch.Tensor
    scale: torch.Tensor | None
    strength: float
    trusted_sigma: float = 10.0

    def at_stations(self, fields: torch.Tensor) -> torch.Tensor:
        """``H``: ``(n, C, H, W)`` fields at the stations, ``(n, C, S)``."""
        return sum(
            fields[:, :, self.rows[k], self.cols[k]] * self.weights[k].to(fields.dtype)
            for k in range(self.rows.shape[0])
        )  # type: ignore[return-value]

    def misfit(self, denoised: torch.Tensor) -> torch.Tensor:
        """``y − H(μ + s·D)``, ``(n, C, S)``; 0 where there is no observation."""
        residual = denoised if self.scale is None else denoised * self.scale.to(denoised.dtype)
        estimate = self.at_stations(self.mean.to(denoised.dtype) + residual)
        observed = ~torch.isnan(self.values)
        return torch.where(observed, self.values.to(estimate.dtype) - estimate, 0.0)

    def __call__(self, denoised: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The potential ``G`` per sample, ``(n,)``, at noise level ``sigma``."""
        error = self.misfit(denoised)
        s2 = 1.0 if self.scale is None else self.scale.reshape(1, -1, 1).to(error.dtype) ** 2
        variance = self.sigma.to(error.dtype) ** 2 + s2 * sigma**2 / (1 + sigma**2)
        return 0.5 * self.strength * (error.square() / variance).sum(dim=(1, 2))

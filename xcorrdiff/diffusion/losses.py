"""CorrDiff training losses: regression MSE and the residual EDM denoising loss.

Both take the CorrDiff condition as one object
(:class:`~xcorrdiff.diffusion.conditioning.Condition`) and return the unreduced
per-element loss, as PhysicsNeMo's ``RegressionLoss`` and
``ResidualLoss`` do; the caller reduces (e.g. ``.mean()`` or a weighted sum).

References
----------
Karras, T., et al. (2022). Elucidating the design space of diffusion-based generative models.
NeurIPS. Section 5 (``P_mean``, ``P_std``, loss weight ``λ(σ)``).

Mardani, M., et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment, 6, 124.
"""

from __future__ import annotations

from typing import Any

import torch

from xcorrdiff.diffusion.conditioning import Condition, denoise, regression_mean
from xcorrdiff.diffusion.input_skip import InputSkip

__all__ = ["edm_loss_weight", "masked_mean", "regression_loss", "residual_loss"]


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float = 0.5) -> torch.Tensor:
    r"""EDM loss weight :math:`\lambda(\sigma) = (\sigma^2 + \sigma_d^2) / (\sigma\sigma_d)^2`.

    Parameters
    ----------
    sigma : torch.Tensor
        Noise levels, any shape, positive.
    sigma_data : float
        Standard deviation of the (normalised) data, :math:`\sigma_d`.

    Returns
    -------
    torch.Tensor
        Weights, the shape of ``sigma``.
    """
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def masked_mean(loss: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of a per-element loss over the observed elements (``mask`` 1), or of all.

    Parameters
    ----------
    loss : torch.Tensor
        Per-element loss, e.g. of :func:`regression_loss`.
    mask : torch.Tensor, optional
        1 where the target is observed, 0 where it is missing, broadcastable to ``loss``;
        ``None`` averages every element.

    Returns
    -------
    torch.Tensor
        A scalar; 0 (with gradient) when no element is observed.
    """
    if mask is None:
        return loss.mean()
    mask = mask.to(loss.dtype)
    return (loss * mask).sum() / mask.expand_as(loss).sum().clamp_min(1.0)


def regression_loss(
    net: Any, y: torch.Tensor, condition: Condition, skip: InputSkip | None = None
) -> torch.Tensor:
    """Squared error of the regression network's conditional mean, ``(μ - y)²``.

    μ is :func:`~xcorrdiff.diffusion.conditioning.regression_mean` (PhysicsNeMo's regression
    UNet is called on a zero-filled state). With an input ``skip`` each channel's error is
    divided by its ``γ²``: the loss of the network's correction in its own units
    (:mod:`xcorrdiff.diffusion.input_skip`).

    Parameters
    ----------
    net : callable
        Regression network ``net(x, inputs) -> (batch, C_hr, H, W)``.
    y : torch.Tensor
        Target fields ``(batch, C_hr, H, W)``.
    condition : Condition
        The whole-domain condition (its ``inputs``).

    Returns
    -------
    torch.Tensor
        Per-element loss ``(batch, C_hr, H, W)``.

    Raises
    ------
    ValueError
        If ``y`` and the condition differ in batch or spatial shape.
    """
    _check_rows(y, condition)
    error = (regression_mean(net, condition, y.shape[1], skip) - y) ** 2
    return error if skip is None else error * skip.loss_weight(error)


def residual_loss(
    net: Any,
    residual: torch.Tensor,
    condition: Condition,
    *,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    P_mean: float = 0.0,
    P_std: float = 1.2,
    sigma_data: float = 0.5,
) -> torch.Tensor:
    r"""Denoising score-matching loss on the residual ``r = (y - μ) / s`` (CorrDiff).

    With ``ln σ ~ N(P_mean, P_std²)`` and ``ε ~ N(0, 1)``:

    .. math::

        \mathcal{L} = \lambda(\sigma)\,\big(D(r + \sigma\varepsilon;\, \sigma, c) - r\big)^2,
        \qquad \lambda(\sigma) = \frac{\sigma^2 + \sigma_d^2}{(\sigma\sigma_d)^2}.

    The residual and the condition ``c`` come in the same rows: the whole domain, or
    patches (:func:`~xcorrdiff.diffusion.patching.extract_patches` of the residual and
    :func:`~xcorrdiff.diffusion.conditioning.crop_condition` of the condition). Equal to
    PhysicsNeMo's ``ResidualLoss`` for the same draws.

    Parameters
    ----------
    net : callable
        Denoiser ``D``, e.g. an EDM-preconditioned SongUNet.
    residual : torch.Tensor
        ``(n, C_hr, h, w)``: the target minus the regression mean (detached), optionally
        divided by a per-channel scale.
    condition : Condition
        The condition of the same ``n`` rows.
    sigma : torch.Tensor, optional
        Noise levels, ``(n,)`` or ``(n, 1, 1, 1)``; drawn from ``generator`` when omitted.
    noise : torch.Tensor, optional
        Unit-variance noise shaped like ``residual``; drawn (after ``sigma``) when omitted.
    generator : torch.Generator, optional
        Random stream for the draws; ``None`` uses torch's global stream.
    P_mean, P_std : float
        Log-normal noise-level distribution (CorrDiff: 0 and 1.2).
    sigma_data : float
        Data standard deviation in the loss weight.

    Returns
    -------
    torch.Tensor
        Per-element loss, the shape of ``residual``.

    Raises
    ------
    ValueError
        On inconsistent shapes or draws of the wrong shape.
    """
    _check_rows(residual, condition)
    n = residual.shape[0]
    device = generator.device if generator is not None else residual.device
    if sigma is None:
        rnd_normal = torch.randn((n,), generator=generator, device=device)
        sigma = (rnd_normal * P_std + P_mean).exp().to(residual.device)
    if sigma.numel() != n:
        raise ValueError(
            f"sigma must hold {n} noise levels (one per row), got {tuple(sigma.shape)}"
        )
    sigma = sigma.reshape(n, 1, 1, 1).to(residual.dtype)
    if noise is None:
        noise = torch.randn(
            residual.shape, generator=generator, device=device, dtype=residual.dtype
        )
    if noise.shape != residual.shape:
        raise ValueError(
            f"noise must have the shape of the residual {tuple(residual.shape)}, got {tuple(noise.shape)}"
        )
    denoised = denoise(
        net, residual + noise.to(residual.device) * sigma, sigma.reshape(n), condition
    )
    return edm_loss_weight(sigma, sigma_data) * (denoised - residual) ** 2


def _check_rows(y: torch.Tensor, condition: Condition) -> None:
    inputs = condition.inputs
    if y.ndim != 4 or inputs.ndim != 4:
        raise ValueError(
            f"the target and the condition's inputs must be (batch, C, H, W), got shapes "
            f"{tuple(y.shape)} and {tuple(inputs.shape)}"
        )
    if y.shape[0] != inputs.shape[0] or y.shape[-2:] != inputs.shape[-2:]:
        raise ValueError(
            f"the target {tuple(y.shape)} and the condition's inputs {tuple(inputs.shape)} must "
            "share rows and spatial shape (regrid the input onto the target grid first)"
        )

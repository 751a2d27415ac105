"""CorrDiff training losses: regression MSE and the residual EDM denoising loss.

Both return the unreduced per-element loss, as PhysicsNeMo's ``RegressionLoss`` and
``ResidualLoss`` do; the caller reduces (e.g. ``.mean()`` or a weighted sum).

References
----------
Karras, T., et al. (2022). Elucidating the design space of diffusion-based generative models.
NeurIPS. Section 5 (``P_mean``, ``P_std``, loss weight ``λ(σ)``).

Mardani, M., et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment, 6, 124.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from xcorrdiff.diffusion.patching import extract_patches

__all__ = ["edm_loss_weight", "regression_loss", "residual_loss"]


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


def regression_loss(net: Any, y: torch.Tensor, img_lr: torch.Tensor) -> torch.Tensor:
    """Squared error of the regression network's conditional mean, ``(net(0, img_lr) - y)²``.

    The network is called as ``net(zeros_like(y), img_lr)`` (PhysicsNeMo's regression
    UNet takes a zero-filled ``x``).

    Parameters
    ----------
    net : callable
        Regression network ``net(x, img_lr) -> (batch, C_hr, H, W)``.
    y : torch.Tensor
        Target fields ``(batch, C_hr, H, W)``.
    img_lr : torch.Tensor
        Low-resolution input on the same grid, ``(batch, C_lr, H, W)``.

    Returns
    -------
    torch.Tensor
        Per-element loss ``(batch, C_hr, H, W)``.

    Raises
    ------
    ValueError
        If ``y`` and ``img_lr`` differ in batch or spatial shape.
    """
    _check_pair(y, img_lr)
    return (net(torch.zeros_like(y), img_lr) - y) ** 2


def residual_loss(
    net: Any,
    y: torch.Tensor,
    img_lr: torch.Tensor,
    mean: torch.Tensor,
    *,
    offsets: torch.Tensor | None = None,
    patch_shape: Sequence[int] | None = None,
    hr_mean_conditioning: bool = True,
    residual_scale: torch.Tensor | None = None,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    P_mean: float = 0.0,
    P_std: float = 1.2,
    sigma_data: float = 0.5,
) -> torch.Tensor:
    r"""Denoising score-matching loss on the residual ``r = y - mean`` (CorrDiff).

    With ``ln σ ~ N(P_mean, P_std²)`` and ``ε ~ N(0, 1)``:

    .. math::

        \mathcal{L} = \lambda(\sigma)\,\big(D(r + \sigma\varepsilon;\, \sigma, c) - r\big)^2,
        \qquad \lambda(\sigma) = \frac{\sigma^2 + \sigma_d^2}{(\sigma\sigma_d)^2},

    where the condition is ``c = cat(mean, img_lr)`` (or ``img_lr`` alone without
    ``hr_mean_conditioning``). ``mean`` is the regression network's output, computed once
    per sample by the caller and treated as a constant, so it can serve many patches.

    With ``offsets`` the loss is taken on patches: ``r`` and ``c`` are cut at the given
    corners — the same patches for every member (``(k, 2)``, as PhysicsNeMo) or each
    member's own (``(batch, k, 2)``, so a batch covers ``batch * k`` distinct patches) — and
    the member's ``img_lr`` resized to the patch size is appended to ``c`` of each of its
    rows (global low-res input, as PhysicsNeMo), so ``C_cond = C_hr + 2 C_lr``. The network
    is then called with ``embedding_selector=``, a function mapping a whole-domain
    positional embedding ``(N_pe, H, W)`` to each row's own patch of it,
    ``(batch * k, N_pe, ph, pw)``.

    The network is called as ``net(r + σε, c, σ[, embedding_selector=...])`` with ``σ`` of
    shape ``(n,)``. Equal to PhysicsNeMo's ``ResidualLoss`` for the same draws.

    Parameters
    ----------
    net : callable
        Denoiser ``D``, e.g. an EDM-preconditioned SongUNet.
    y : torch.Tensor
        Target fields ``(batch, C_hr, H, W)``.
    img_lr : torch.Tensor
        Low-resolution input on the same grid, ``(batch, C_lr, H, W)``.
    mean : torch.Tensor
        Regression mean ``(batch, C_hr, H, W)`` (detached here).
    offsets : torch.Tensor, optional
        Int top-left ``(y, x)`` corners of the patches: ``(k, 2)`` shared by all members
        (see :func:`~xcorrdiff.diffusion.patching.random_patch_offsets`), or
        ``(batch, k, 2)``, member ``b``'s own (a ``PairedBatchStream`` batch's
        ``"offsets"``). Rows are member-major: row ``b * k + j`` is patch ``j`` of
        member ``b``.
    patch_shape : (int, int), optional
        Patch size ``(ph, pw)``; required with ``offsets``.
    hr_mean_conditioning : bool
        Prepend ``mean`` to the condition (CorrDiff's configurations do).
    residual_scale : torch.Tensor, optional
        Per-channel scale ``s`` ``(C_hr,)``: the denoiser learns ``r / s`` instead of ``r``
        (the condition keeps the unscaled ``mean``), so that every channel's residual has
        the standard deviation ``sigma_data`` the EDM design assumes. ``None`` (PhysicsNeMo)
        is ``s = 1``.
    sigma : torch.Tensor, optional
        Noise levels, ``(n,)`` or ``(n, 1, 1, 1)`` with ``n = batch`` (``batch * k`` with
        patches, member-major); drawn from ``generator`` when omitted.
    noise : torch.Tensor, optional
        Unit-variance noise ``ε`` shaped like the (patched) residual; drawn from
        ``generator`` (after ``sigma``) when omitted.
    generator : torch.Generator, optional
        Random stream for the draws; ``None`` uses torch's global stream.
    P_mean, P_std : float
        Log-normal noise-level distribution (CorrDiff: 0 and 1.2).
    sigma_data : float
        Data standard deviation in the loss weight.

    Returns
    -------
    torch.Tensor
        Per-element loss ``(n, C_hr, h, w)``: ``(batch, C_hr, H, W)`` on the whole domain,
        ``(batch * k, C_hr, ph, pw)`` on patches.

    Raises
    ------
    ValueError
        On inconsistent shapes (``(batch, k, 2)`` offsets of another batch size included),
        ``offsets`` without ``patch_shape``, or draws of the wrong shape.
    """
    _check_pair(y, img_lr)
    if mean.shape != y.shape:
        raise ValueError(f"mean must have the shape of y {tuple(y.shape)}, got {tuple(mean.shape)}")
    residual = y - mean.detach()
    if residual_scale is not None:
        if residual_scale.shape != (y.shape[1],):
            raise ValueError(
                f"residual_scale must hold one scale per channel, shape ({y.shape[1]},), got "
                f"{tuple(residual_scale.shape)}"
            )
        residual = residual / residual_scale.to(residual).reshape(1, -1, 1, 1)
    condition = torch.cat([mean.detach(), img_lr], dim=1) if hr_mean_conditioning else img_lr
    net_kwargs: dict[str, Any] = {}
    if offsets is not None:
        if patch_shape is None:
            raise ValueError("patch_shape is required with offsets, got None")
        shape = (int(patch_shape[0]), int(patch_shape[1]))
        where = offsets
        batch = y.shape[0]
        residual = extract_patches(residual, where, shape)
        num = where.shape[-2]
        resized = F.interpolate(img_lr, size=shape, mode="bilinear")
        condition = torch.cat(
            [
                extract_patches(condition, where, shape),
                resized.repeat_interleave(num, dim=0),
            ],
            dim=1,
        )
        if where.ndim == 3:
            # Each row's own slice of the grid: (B, k, 2) corners flattened member-major.
            rows = where.reshape(-1, 2)
            net_kwargs["embedding_selector"] = lambda emb: extract_patches(emb, rows, shape)
        else:
            net_kwargs["embedding_selector"] = lambda emb: extract_patches(
                emb[None].expand(batch, -1, -1, -1), where, shape
            )
    elif patch_shape is not None:
        raise ValueError("patch_shape is only used with offsets; pass offsets or drop it")

    n = residual.shape[0]
    if sigma is None:
        device = generator.device if generator is not None else residual.device
        rnd_normal = torch.randn((n,), generator=generator, device=device)
        sigma = (rnd_normal * P_std + P_mean).exp().to(residual.device)
    elif sigma.numel() != n:
        raise ValueError(
            f"sigma must hold {n} noise levels (one per row), got shape {tuple(sigma.shape)}"
        )
    sigma = sigma.reshape(n, 1, 1, 1).to(residual.dtype)
    if noise is None:
        device = generator.device if generator is not None else residual.device
        noise = torch.randn(
            residual.shape, generator=generator, device=device, dtype=residual.dtype
        ).to(residual.device)
    elif noise.shape != residual.shape:
        raise ValueError(
            f"noise must have the shape of the residual {tuple(residual.shape)}, "
            f"got {tuple(noise.shape)}"
        )
    denoised = net(residual + noise * sigma, condition, sigma.reshape(n), **net_kwargs)
    return edm_loss_weight(sigma, sigma_data) * (denoised - residual) ** 2


def _check_pair(y: torch.Tensor, img_lr: torch.Tensor) -> None:
    if y.ndim != 4 or img_lr.ndim != 4:
        raise ValueError(
            f"y and img_lr must be (batch, C, H, W), got shapes {tuple(y.shape)} and "
            f"{tuple(img_lr.shape)}"
        )
    if y.shape[0] != img_lr.shape[0] or y.shape[-2:] != img_lr.shape[-2:]:
        raise ValueError(
            f"y {tuple(y.shape)} and img_lr {tuple(img_lr.shape)} must share batch size and "
            "spatial shape (regrid the input onto the target grid first)"
        )

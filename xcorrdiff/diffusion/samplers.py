"""EDM samplers for conditional (super-resolution) diffusion, whole-domain or patch by patch.

Both samplers have one shape (k-diffusion style)::

    euler(net, img_lr, sigmas, *, latents=None, generators=None, mean_hr=None,
          patching=None, s_churn=0.0, s_min=0.0, s_max=inf, s_noise=1.0, callback=None)
    heun(...)   # the same arguments

* ``net`` is a denoiser ``D(x; sigma, condition)`` called as ``net(x, condition, sigma)``
  with ``x`` ``(n, C_out, h, w)``, ``condition`` ``(n, C_cond, h, w)`` and ``sigma`` a
  ``(n,)`` tensor; it returns the denoised ``(n, C_out, h, w)``. It may carry
  ``sigma_min``, ``sigma_max`` and ``round_sigma`` (PhysicsNeMo's preconditioners and
  ``xcorrdiff.nn`` do); they are used when ``sigmas`` is an int. With ``patching`` the
  call gains ``embedding_selector=``: a function mapping a whole-domain positional
  embedding ``(N_pe, H, W)`` to the rows' patches ``(n, N_pe, h, w)``.
* The condition is ``cat(mean_hr, img_lr)`` on the whole domain. With ``patching`` it is cut
  into the grid's patches and ``img_lr``, resized bilinearly to the patch size, is appended
  to every patch (PhysicsNeMo's global low-res input), giving
  ``C_cond = C_mean + 2 * C_lr``.
* ``sigmas`` is a schedule from :func:`~xcorrdiff.diffusion.schedules.edm_sigmas` (ending
  in 0), or an int number of steps for ``edm_sigmas(num_steps, net=net)``. The sample is
  carried in ``sigmas.dtype`` (float64 by default); the network's output is cast to it.

Randomness: one :class:`torch.Generator` per batch member. Member ``b``'s initial latent is
``torch.randn((C_out, H, W), generator=generators[b], dtype=torch.float32)``, drawn on the
generator's device, then cast to the sample's dtype and device, and scaled by
``sigmas[0]``; its churn noise is drawn the same way, from the same generator, at each step
where churn is active. A member's sample therefore depends only on its own generator, its
own inputs and the schedule, never on the rest of the batch. Explicit ``latents`` (unit
variance) replace the first draw.

With ``s_churn > 0`` noise is really injected (EDM Algorithm 2): at each step with
``s_min <= sigma <= s_max`` the noise level is raised to
``sigma_hat = sigma (1 + gamma)``, ``gamma = min(s_churn / N, sqrt(2) - 1)``, by adding
``sqrt(sigma_hat² - sigma²) · s_noise · ε``. PhysicsNeMo's CorrDiff runs its "stochastic"
sampler with churn 0, i.e. as a deterministic ODE (their issue #1163); ``heun`` with
``s_churn=0`` reproduces it.

References
----------
Karras, T., Aittala, M., Aila, T., Laine, S. (2022). Elucidating the design space of
diffusion-based generative models. NeurIPS. Algorithms 1 and 2.

Mardani, M., et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment, 6, 124.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from xcorrdiff.diffusion.patching import PatchGrid
from xcorrdiff.diffusion.schedules import edm_sigmas

__all__ = ["draw_latents", "euler", "heun"]

Callback = Callable[[dict[str, Any]], None]


def draw_latents(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Standard-normal draws, one ``(C, H, W)`` field per member from its own generator.

    Each field is drawn as float32 on its generator's device, then cast to ``dtype`` and
    moved to ``device``, so a seed gives the same field whatever the sampling dtype.

    Parameters
    ----------
    generators : sequence of torch.Generator
        One generator per member.
    shape : (int, int, int)
        Shape ``(C, H, W)`` of one member's field.
    dtype : torch.dtype
        Dtype of the result.
    device : torch.device or str, optional
        Device of the result; defaults to the first generator's device.

    Returns
    -------
    torch.Tensor
        ``(len(generators), C, H, W)``.

    Raises
    ------
    ValueError
        If ``generators`` is empty or ``shape`` is not three positive sizes.
    """
    if len(generators) == 0:
        raise ValueError("generators must hold one torch.Generator per member, got none")
    if len(shape) != 3 or any(int(s) <= 0 for s in shape):
        raise ValueError(f"shape must be (C, H, W) of positive sizes, got {tuple(shape)!r}")
    device = generators[0].device if device is None else device
    draws = [
        torch.randn(tuple(shape), generator=g, device=g.device, dtype=torch.float32)
        for g in generators
    ]
    return torch.stack([d.to(device) for d in draws]).to(dtype)


def euler(
    net: Any,
    img_lr: torch.Tensor,
    sigmas: torch.Tensor | int,
    *,
    latents: torch.Tensor | None = None,
    generators: Sequence[torch.Generator] | None = None,
    mean_hr: torch.Tensor | None = None,
    patching: PatchGrid | None = None,
    s_churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = float("inf"),
    s_noise: float = 1.0,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Sample with first-order (Euler) steps of the probability-flow ODE.

    With ``s_churn=0`` this equals PhysicsNeMo's ``deterministic_sampler(solver="euler")``.
    See the module docstring for the call convention, conditioning and randomness.

    Parameters
    ----------
    net : callable
        Denoiser ``net(x, condition, sigma[, embedding_selector=...])``.
    img_lr : torch.Tensor
        Low-resolution input on the high-resolution grid, ``(batch, C_lr, H, W)``.
    sigmas : torch.Tensor or int
        ``(N + 1,)`` decreasing noise levels ending in 0, or ``N`` for
        ``edm_sigmas(N, net=net)``.
    latents : torch.Tensor, optional
        Unit-variance initial noise ``(batch, C_out, H, W)``; drawn from ``generators``
        when omitted (needs ``net.img_out_channels``).
    generators : sequence of torch.Generator, optional
        One per member; needed when ``latents`` is omitted or ``s_churn > 0``.
    mean_hr : torch.Tensor, optional
        Regression mean ``(batch or 1, C_mean, H, W)`` prepended to the condition.
    patching : PatchGrid, optional
        Denoise patch by patch on this grid and blend with its weights.
    s_churn, s_min, s_max, s_noise : float
        Stochasticity (EDM Algorithm 2): amount, active noise range, noise scale.
    callback : callable, optional
        Called after every step with a dict ``i``, ``x``, ``sigma``, ``sigma_hat``,
        ``denoised``.

    Returns
    -------
    torch.Tensor
        Samples ``(batch, C_out, H, W)`` in ``sigmas.dtype``.

    Raises
    ------
    ValueError
        On inconsistent shapes, a bad schedule, or missing generators.
    """
    return _sample(
        net, img_lr, sigmas, second_order=False, latents=latents, generators=generators,
        mean_hr=mean_hr, patching=patching, s_churn=s_churn, s_min=s_min, s_max=s_max,
        s_noise=s_noise, callback=callback,
    )  # fmt: skip


def heun(
    net: Any,
    img_lr: torch.Tensor,
    sigmas: torch.Tensor | int,
    *,
    latents: torch.Tensor | None = None,
    generators: Sequence[torch.Generator] | None = None,
    mean_hr: torch.Tensor | None = None,
    patching: PatchGrid | None = None,
    s_churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = float("inf"),
    s_noise: float = 1.0,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Sample with Heun's second-order method (EDM Algorithm 2), Euler on the last step.

    With ``s_churn=0`` this equals PhysicsNeMo's ``stochastic_sampler`` (what CorrDiff
    runs); with ``s_churn > 0`` it injects fresh noise from each member's generator.
    Two network evaluations per step (one on the last step).

    Parameters
    ----------
    net, img_lr, sigmas, latents, generators, mean_hr, patching : see :func:`euler`
        Network, condition, schedule, initial noise, random streams, regression mean and
        patch grid, exactly as for :func:`euler`.
    s_churn, s_min, s_max, s_noise : float
        Stochasticity (EDM Algorithm 2); ``s_churn=0`` is the deterministic ODE.
    callback : callable, optional
        Called after every step, as for :func:`euler`.

    Returns
    -------
    torch.Tensor
        Samples ``(batch, C_out, H, W)`` in ``sigmas.dtype``.

    Raises
    ------
    ValueError
        On inconsistent shapes, a bad schedule, or missing generators.

    Examples
    --------
    >>> net = lambda x, cond, sigma: cond[:, : x.shape[1]].to(x.dtype)  # data = the condition
    >>> img_lr = torch.randn(2, 3, 16, 16)
    >>> gens = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    >>> latents = draw_latents(gens, (3, 16, 16))
    >>> out = heun(net, img_lr, edm_sigmas(8), latents=latents, generators=gens, s_churn=2.0)
    >>> out.shape, bool(torch.allclose(out, img_lr.double()))
    (torch.Size([2, 3, 16, 16]), True)
    """
    return _sample(
        net, img_lr, sigmas, second_order=True, latents=latents, generators=generators,
        mean_hr=mean_hr, patching=patching, s_churn=s_churn, s_min=s_min, s_max=s_max,
        s_noise=s_noise, callback=callback,
    )  # fmt: skip


def _check_inputs(
    img_lr: torch.Tensor,
    sigmas: torch.Tensor,
    latents: torch.Tensor | None,
    generators: Sequence[torch.Generator] | None,
    mean_hr: torch.Tensor | None,
    patching: PatchGrid | None,
    s_churn: float,
) -> None:
    if img_lr.ndim != 4:
        raise ValueError(f"img_lr must have shape (batch, C_lr, H, W), got {tuple(img_lr.shape)}")
    batch, spatial = img_lr.shape[0], tuple(img_lr.shape[-2:])
    if sigmas.ndim != 1 or sigmas.numel() < 2 or not sigmas.is_floating_point():
        raise ValueError(
            f"sigmas must be a 1-D floating tensor of at least 2 noise levels, got dtype "
            f"{sigmas.dtype} and shape {tuple(sigmas.shape)}"
        )
    if sigmas[-1] != 0 or bool((sigmas[:-1] <= 0).any()):
        raise ValueError(
            f"sigmas must be positive and end in 0 (see edm_sigmas), got {sigmas.tolist()}"
        )
    if latents is not None and (
        latents.ndim != 4 or latents.shape[0] != batch or tuple(latents.shape[-2:]) != spatial
    ):
        raise ValueError(
            f"latents must have shape ({batch}, C_out, {spatial[0]}, {spatial[1]}) to match "
            f"img_lr, got {tuple(latents.shape)}"
        )
    if generators is not None and len(generators) != batch:
        raise ValueError(
            f"generators must hold one torch.Generator per member ({batch}), got {len(generators)}"
        )
    if generators is None and (latents is None or s_churn > 0):
        why = "s_churn > 0 draws fresh noise" if latents is not None else "latents is None"
        raise ValueError(f"generators is required ({why}): pass one torch.Generator per member")
    if mean_hr is not None and (
        mean_hr.ndim != 4
        or mean_hr.shape[0] not in (1, batch)
        or tuple(mean_hr.shape[-2:]) != spatial
    ):
        raise ValueError(
            f"mean_hr must have shape (1 or {batch}, C_mean, {spatial[0]}, {spatial[1]}) to "
            f"match img_lr, got {tuple(mean_hr.shape)}"
        )
    if patching is not None and patching.domain_shape != spatial:
        raise ValueError(
            f"patching covers a {patching.domain_shape} domain but img_lr is {spatial}; "
            "build the PatchGrid for the high-resolution grid"
        )
    if s_churn < 0:
        raise ValueError(f"s_churn must be non-negative, got {s_churn!r}")


@torch.no_grad()
def _sample(
    net: Any,
    img_lr: torch.Tensor,
    sigmas: torch.Tensor | int,
    *,
    second_order: bool,
    latents: torch.Tensor | None,
    generators: Sequence[torch.Generator] | None,
    mean_hr: torch.Tensor | None,
    patching: PatchGrid | None,
    s_churn: float,
    s_min: float,
    s_max: float,
    s_noise: float,
    callback: Callback | None,
) -> torch.Tensor:
    if isinstance(sigmas, int):
        sigmas = edm_sigmas(sigmas, net=net, device=img_lr.device)
    _check_inputs(img_lr, sigmas, latents, generators, mean_hr, patching, s_churn)
    sigmas = sigmas.to(img_lr.device)
    dtype, device, batch = sigmas.dtype, img_lr.device, img_lr.shape[0]
    num_steps = sigmas.numel() - 1

    if latents is None:
        channels = getattr(net, "img_out_channels", None)
        if channels is None:
            raise ValueError(
                "latents is None and net has no img_out_channels attribute; pass latents "
                "of shape (batch, C_out, H, W)"
            )
        assert generators is not None  # checked above
        latents = draw_latents(generators, (channels, *img_lr.shape[-2:]), device=device)
    out_shape = tuple(latents.shape[1:])

    condition = img_lr
    if mean_hr is not None:
        condition = torch.cat([mean_hr.expand(batch, -1, -1, -1), img_lr], dim=1)
    net_kwargs: dict[str, Any] = {}
    if patching is not None:
        grid = patching
        condition = grid.unfold(condition, global_input=img_lr)
        net_kwargs["embedding_selector"] = lambda emb: grid.unfold(
            emb[None].expand(batch, -1, -1, -1)
        )

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if patching is not None:
            x = patching.unfold(x)
        denoised = net(x, condition, sigma.expand(x.shape[0]), **net_kwargs).to(dtype)
        return patching.fold(denoised) if patching is not None else denoised

    round_sigma = getattr(net, "round_sigma", None)
    gamma_max = math.sqrt(2.0) - 1.0
    levels = sigmas.tolist()  # host copies for the branch tests (no device syncs in the loop)
    x = latents.to(device=device, dtype=dtype) * sigmas[0]
    for i in range(num_steps):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]

        # Increase noise temporarily.
        gamma = min(s_churn / num_steps, gamma_max) if s_min <= levels[i] <= s_max else 0.0
        sigma_hat = sigma
        if gamma > 0:
            sigma_hat = sigma + gamma * sigma
            if round_sigma is not None:
                sigma_hat = torch.as_tensor(round_sigma(sigma_hat)).to(sigma)
            assert generators is not None  # checked above
            eps = draw_latents(generators, out_shape, dtype=dtype, device=device)
            x = x + (sigma_hat**2 - sigma**2).sqrt() * s_noise * eps

        # Euler step.
        denoised = denoise(x, sigma_hat)
        d = (x - denoised) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * d

        # Second-order correction.
        if second_order and levels[i + 1] > 0:
            denoised_next = denoise(x_next, sigma_next)
            d_next = (x_next - denoised_next) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * (0.5 * d + 0.5 * d_next)

        x = x_next
        if callback is not None:
            callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})
    return x

"""EDM samplers in k-diffusion's shape: ``sampler(denoiser, x, sigmas, *, generators, ...)``.

:func:`euler` (= DDIM), :func:`heun`, :func:`dpmpp_2m` and :func:`ancestral`; their names,
default step counts, evaluations per step and noise arguments are the table
:data:`xcorrdiff.config.SAMPLERS`, from which ``downscale`` and the CLI take them.

* ``denoiser`` is ``D(x, sigma)`` for the whole state ``x`` ``(n, C, H, W)`` and one noise
  level ``sigma`` (a 0-d tensor); it returns the denoised ``(n, C, H, W)``. For CorrDiff it
  is a :class:`~xcorrdiff.diffusion.conditioning.Denoiser`: the network with its condition
  bound, denoising patch by patch on a grid when asked, so the samplers know nothing of
  conditions or patches. ``round_sigma``, when the denoiser has it, rounds the churned level.
* ``x`` is the initial state: unit noise times ``sigmas[0]``
  (:func:`initial_state`). The sample is carried in ``sigmas.dtype`` (float64 by default).
* ``sigmas`` is a schedule from :func:`~xcorrdiff.diffusion.schedules.edm_sigmas`, ending
  in 0.

Randomness: one :class:`torch.Generator` per batch member. Member ``b``'s initial noise is
``torch.randn((C, H, W), generator=generators[b], dtype=torch.float32)`` on the generator's
device (:func:`draw_latents`); its churn (or re-noising) noise is drawn the same way,
from the same generator, at each step where it is active. A member's sample therefore depends only on
its own generator, its own inputs and the schedule, never on the rest of the batch.

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

Lu, C., et al. (2022). DPM-Solver++: fast solver for guided sampling of diffusion
probabilistic models. arXiv:2211.01095.

Song, J., Meng, C., Ermon, S. (2021). Denoising diffusion implicit models. ICLR.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

__all__ = [
    "Guidance",
    "ancestral",
    "dpmpp_2m",
    "draw_latents",
    "euler",
    "heun",
    "initial_state",
]

Callback = Callable[[dict[str, Any]], None]
#: ``((H_full, W_full), (y0, x0))``: where a sub-domain state lies in the whole domain.
Frame = tuple[tuple[int, int], tuple[int, int]]
#: ``D(x, sigma) -> denoised``: what the samplers call.
Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``G(denoised, sigma) -> (batch,)``: a negative log-likelihood the guided samplers descend.
Guidance = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def draw_latents(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    frame: Frame | None = None,
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
    frame : ((int, int), (int, int)), optional
        ``((H_full, W_full), (y0, x0))``: draw each field on the whole ``H_full × W_full``
        domain and return its ``(H, W)`` window at ``(y0, x0)``, so that a sub-domain gets
        the numbers a whole-domain draw puts there.

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
    full, (y0, x0) = (tuple(shape[1:]), (0, 0)) if frame is None else frame
    draws = [
        torch.randn((shape[0], *full), generator=g, device=g.device, dtype=torch.float32)[
            :, y0 : y0 + shape[1], x0 : x0 + shape[2]
        ]
        for g in generators
    ]
    return torch.stack([d.to(device) for d in draws]).to(dtype)


def initial_state(
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    sigmas: torch.Tensor,
    *,
    frame: Frame | None = None,
) -> torch.Tensor:
    """The samplers' initial state: each member's unit noise (:func:`draw_latents`, in
    ``frame`` when given) times ``sigmas[0]``, in ``sigmas.dtype`` on ``sigmas.device``."""
    latents = draw_latents(generators, shape, device=sigmas.device, frame=frame)
    return latents.to(dtype=sigmas.dtype) * sigmas[0]


def euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generators: Sequence[torch.Generator] | None = None,
    s_churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = float("inf"),
    s_noise: float = 1.0,
    callback: Callback | None = None,
    frame: Frame | None = None,
    guidance: Guidance | None = None,
) -> torch.Tensor:
    """Sample with first-order (Euler) steps of the probability-flow ODE.

    With ``s_churn=0`` this equals PhysicsNeMo's ``deterministic_sampler(solver="euler")``.
    See the module docstring for the call convention and randomness.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma)``, e.g. :class:`~xcorrdiff.diffusion.conditioning.Denoiser`.
    x : torch.Tensor
        Initial state ``(batch, C, H, W)``: unit noise times ``sigmas[0]``.
    sigmas : torch.Tensor
        ``(N + 1,)`` decreasing noise levels ending in 0.
    generators : sequence of torch.Generator, optional
        One per member; needed when ``s_churn > 0``.
    s_churn, s_min, s_max, s_noise : float
        Stochasticity (EDM Algorithm 2): amount, active noise range, noise scale.
    callback : callable, optional
        Called after every step with a dict ``i``, ``x``, ``sigma``, ``sigma_hat``,
        ``denoised``.
    frame : ((int, int), (int, int)), optional
        Where the state lies in a larger domain (:func:`draw_latents`): the churn noise is
        drawn on that domain and cut, as for a whole-domain run.
    guidance : callable, optional
        ``G(denoised, sigma) -> (batch,)``, an approximate ``−log p(y | x)``, e.g.
        :class:`~xcorrdiff.diffusion.guidance.StationGuidance`: each step adds the
        likelihood's score to the ODE's slope, ``dx/dσ = (x − D)/σ + σ ∇ₓ G(D(x, σ), σ)``
        (diffusion posterior sampling; every denoiser call then runs with gradients, Heun's
        corrector included, so both samplers keep their order). ``None``: no guidance,
        unchanged sampling.

    Returns
    -------
    torch.Tensor
        Samples ``(batch, C, H, W)`` in ``sigmas.dtype``.

    Raises
    ------
    ValueError
        On a bad state or schedule, or churn without generators.
    """
    return _sample(
        denoiser, x, sigmas, second_order=False, generators=generators, s_churn=s_churn,
        s_min=s_min, s_max=s_max, s_noise=s_noise, callback=callback, frame=frame,
        guidance=guidance,
    )  # fmt: skip


def heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generators: Sequence[torch.Generator] | None = None,
    s_churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = float("inf"),
    s_noise: float = 1.0,
    callback: Callback | None = None,
    frame: Frame | None = None,
    guidance: Guidance | None = None,
) -> torch.Tensor:
    """Sample with Heun's second-order method (EDM Algorithm 2), Euler on the last step.

    With ``s_churn=0`` this equals PhysicsNeMo's ``stochastic_sampler`` (what CorrDiff
    runs); with ``s_churn > 0`` it injects fresh noise from each member's generator.
    Two denoiser evaluations per step (one on the last step).

    Parameters
    ----------
    denoiser, x, sigmas, generators : see :func:`euler`
        Denoiser, initial state, schedule and random streams, exactly as for :func:`euler`.
    s_churn, s_min, s_max, s_noise : float
        Stochasticity (EDM Algorithm 2); ``s_churn=0`` is the deterministic ODE.
    callback, frame, guidance : optional
        As for :func:`euler`.

    Returns
    -------
    torch.Tensor
        Samples ``(batch, C, H, W)`` in ``sigmas.dtype``.

    Raises
    ------
    ValueError
        On a bad state or schedule, or churn without generators.

    Examples
    --------
    >>> from xcorrdiff.diffusion import edm_sigmas
    >>> data = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    >>> denoiser = lambda x, sigma: data  # every sample is `data`
    >>> gens = [torch.Generator().manual_seed(seed) for seed in (0, 1)]
    >>> sigmas = edm_sigmas(8)
    >>> out = heun(denoiser, initial_state(gens, (3, 16, 16), sigmas), sigmas, generators=gens,
    ...            s_churn=2.0)
    >>> out.shape, bool(torch.allclose(out, data))
    (torch.Size([2, 3, 16, 16]), True)
    """
    return _sample(
        denoiser, x, sigmas, second_order=True, generators=generators, s_churn=s_churn,
        s_min=s_min, s_max=s_max, s_noise=s_noise, callback=callback, frame=frame,
        guidance=guidance,
    )  # fmt: skip


def _check_inputs(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    generators: Sequence[torch.Generator] | None,
    s_churn: float,
    noise_name: str = "s_churn",
) -> None:
    """Refuse a bad state, schedule or member streams; ``s_churn`` is the value of the
    sampler's noise argument ``noise_name`` (which draws fresh noise when positive)."""
    if x.ndim != 4:
        raise ValueError(f"x must have shape (batch, C, H, W), got {tuple(x.shape)}")
    if (
        not isinstance(sigmas, torch.Tensor)
        or sigmas.ndim != 1
        or sigmas.numel() < 2
        or not sigmas.is_floating_point()
    ):
        raise ValueError(
            f"sigmas must be a 1-D floating tensor of at least 2 noise levels (see edm_sigmas), "
            f"got {sigmas!r}"
        )
    if sigmas[-1] != 0 or bool((sigmas[:-1] <= 0).any()):
        raise ValueError(
            f"sigmas must be positive and end in 0 (see edm_sigmas), got {sigmas.tolist()}"
        )
    if generators is not None and len(generators) != x.shape[0]:
        raise ValueError(
            f"generators must hold one torch.Generator per member ({x.shape[0]}), got {len(generators)}"
        )
    if s_churn < 0:
        raise ValueError(f"{noise_name} must be non-negative, got {s_churn!r}")
    if s_churn > 0 and generators is None:
        raise ValueError(
            f"generators is required ({noise_name} > 0 draws fresh noise): pass one "
            "torch.Generator per member"
        )


def _start(
    x: torch.Tensor,
    sigmas: torch.Tensor,
    generators: Sequence[torch.Generator] | None,
    noise: float,
    noise_name: str = "s_churn",
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Every sampler's start: the inputs checked (:func:`_check_inputs`), the schedule on
    the state's device, the state in the schedule's dtype, and host copies of the levels
    for the branch tests (no device syncs in the loop)."""
    _check_inputs(x, sigmas, generators, noise, noise_name)
    sigmas = sigmas.to(x.device)
    return x.to(sigmas.dtype), sigmas, sigmas.tolist()


def _report(
    callback: Callback | None,
    i: int,
    x: torch.Tensor,
    sigma: torch.Tensor,
    sigma_hat: torch.Tensor,
    denoised: torch.Tensor,
) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


def _denoise(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: torch.Tensor,
    guidance: Guidance | None,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``D(x, σ)`` and the denoised estimate the step uses: ``D`` itself, or with guidance
    ``D − σ² ∇ₓG(D(x, σ), σ)``, which puts the likelihood's score ``−∇ₓG`` into every
    sampler's slope ``(x − D)/σ`` as ``σ ∇ₓG``."""
    if guidance is None:
        denoised = denoiser(x, sigma).to(dtype)
        return denoised, denoised
    denoised, pull = _guided_denoise(denoiser, x, sigma, guidance, dtype)
    return denoised, denoised - sigma**2 * pull


def _slope(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: torch.Tensor,
    guidance: Guidance | None,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``D(x, σ)`` and ``dx/dσ`` there: ``(x − D)/σ``, plus ``σ ∇ₓG`` (the likelihood's
    score) with guidance."""
    denoised, estimate = _denoise(denoiser, x, sigma, guidance, dtype)
    return denoised, (x - estimate) / sigma


def _guided_denoise(
    denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, guidance: Guidance, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """``D(x, σ)`` and the gradient of the guidance potential at it, ``∇ₓ G(D(x, σ), σ)``:
    ``J(x, σ)ᵀ ∇_D G``, a vector–Jacobian product through the denoiser.

    Above the guidance's ``trusted_sigma`` (:class:`~xcorrdiff.diffusion.guidance.
    StationGuidance`) the network was never trained, and its Jacobian, which the pull
    multiplies by ``σ²``, is noise; there ``σ² J(x, σ)`` is the prior covariance of the data
    (Tweedie: ``Cov[x₀ | x_σ] = σ² J``, which tends to ``Cov[x₀]`` as σ grows), so the
    Jacobian is taken at the trusted level ``σ_t`` on the state scaled to it:
    ``J(x, σ) ≈ (σ_t/σ)² J(x σ_t/σ, σ_t)`` (exact for Gaussian data up to ``1/(1 + σ_t²)``).
    """
    trusted = getattr(guidance, "trusted_sigma", math.inf)
    if float(sigma) <= trusted:
        with torch.enable_grad():
            state = x.detach().requires_grad_(True)
            denoised = denoiser(state, sigma).to(dtype)
            (pull,) = torch.autograd.grad(guidance(denoised, sigma).sum(), state)
        return denoised.detach(), pull
    denoised = denoiser(x, sigma).to(dtype)
    level, scale = torch.full_like(sigma, trusted), trusted / sigma
    with torch.enable_grad():
        estimate = denoised.detach().requires_grad_(True)
        (outer,) = torch.autograd.grad(guidance(estimate, sigma).sum(), estimate)
        state = (x * scale).detach().requires_grad_(True)
        near = denoiser(state, level).to(dtype)
        (pull,) = torch.autograd.grad(near, state, grad_outputs=outer)
    return denoised, pull * scale**2


@torch.no_grad()
def _sample(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    second_order: bool,
    generators: Sequence[torch.Generator] | None,
    s_churn: float,
    s_min: float,
    s_max: float,
    s_noise: float,
    callback: Callback | None,
    frame: Frame | None = None,
    guidance: Guidance | None = None,
) -> torch.Tensor:
    x, sigmas, levels = _start(x, sigmas, generators, s_churn)
    dtype, device = sigmas.dtype, x.device
    num_steps = sigmas.numel() - 1
    round_sigma = getattr(denoiser, "round_sigma", None)
    gamma_max = math.sqrt(2.0) - 1.0
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
            eps = draw_latents(
                generators, tuple(x.shape[1:]), dtype=dtype, device=device, frame=frame
            )
            x = x + (sigma_hat**2 - sigma**2).sqrt() * s_noise * eps

        # Euler step.
        denoised, d = _slope(denoiser, x, sigma_hat, guidance, dtype)
        x_next = x + (sigma_next - sigma_hat) * d

        # Second-order correction.
        if second_order and levels[i + 1] > 0:
            _, d_next = _slope(denoiser, x_next, sigma_next, guidance, dtype)
            x_next = x + (sigma_next - sigma_hat) * (0.5 * d + 0.5 * d_next)

        x = x_next
        _report(callback, i, x, sigma, sigma_hat, denoised)
    return x


@torch.no_grad()
def dpmpp_2m(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generators: Sequence[torch.Generator] | None = None,
    callback: Callback | None = None,
    frame: Frame | None = None,
    guidance: Guidance | None = None,
) -> torch.Tensor:
    r"""Sample with DPM-Solver++(2M): second order, one denoiser evaluation per step.

    Lu et al. (2022), Algorithm 2, in EDM's parametrization (:math:`\alpha = 1`,
    :math:`\lambda = -\log\sigma`, :math:`h_i = \log(\sigma_i/\sigma_{i+1})`). Each step is
    exact for the linear part of the ODE and uses the data prediction ``D``::

        x ← (σ_{i+1}/σ_i) x + (1 − σ_{i+1}/σ_i) D̂_i,
        D̂_i = D_i  on the first step and the step to σ = 0 (then it is Euler, i.e. DDIM),
        D̂_i = (1 + 1/(2r)) D_i − 1/(2r) D_{i−1},  r = h_{i−1} / h_i,  otherwise.

    Every update is a combination of the state and denoised fields, never a division by a
    small σ, so it stays bounded at any step count. Deterministic: ``generators`` is
    accepted for the common call convention and not used.

    Parameters
    ----------
    denoiser, x, sigmas, callback, frame, guidance : see :func:`euler`
        With ``guidance`` the denoised field is ``D − σ² ∇ₓG``, the slope of :func:`euler`.
    generators : sequence of torch.Generator, optional
        Unused (no noise is drawn after the initial state).

    Returns
    -------
    torch.Tensor
        Samples ``(batch, C, H, W)`` in ``sigmas.dtype``.

    References
    ----------
    Lu, C., Zhou, Y., Bao, F., Chen, J., Li, C., Zhu, J. (2022). DPM-Solver++: fast solver for
    guided sampling of diffusion probabilistic models. arXiv:2211.01095.
    """
    x, sigmas, levels = _start(x, sigmas, generators, 0.0)
    previous = None
    for i in range(sigmas.numel() - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, estimate = _denoise(denoiser, x, sigma, guidance, sigmas.dtype)
        combined = estimate
        if previous is not None and levels[i + 1] > 0:
            r = math.log(levels[i - 1] / levels[i]) / math.log(levels[i] / levels[i + 1])
            combined = (1 + 1 / (2 * r)) * estimate - (1 / (2 * r)) * previous
        ratio = sigma_next / sigma
        x = ratio * x + (1 - ratio) * combined
        previous = estimate
        _report(callback, i, x, sigma, sigma, denoised)
    return x


@torch.no_grad()
def ancestral(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    generators: Sequence[torch.Generator] | None = None,
    renoise: float = 1.0,
    callback: Callback | None = None,
    frame: Frame | None = None,
    guidance: Guidance | None = None,
) -> torch.Tensor:
    r"""Sample with re-noising Euler steps (ancestral sampling; DDIM with :math:`\eta`).

    Each step moves to the lower level ``σ_down`` along the ODE and draws the rest of
    ``σ_{i+1}`` afresh from the member's generator::

        σ_up = renoise · σ_{i+1} · sqrt(1 − σ_{i+1}² / σ_i²),   σ_down = sqrt(σ_{i+1}² − σ_up²)
        x ← D + (σ_down / σ_i) (x − D) + σ_up ε

    ``renoise=0`` is :func:`euler` without churn (DDIM); ``renoise=1`` draws the DDPM
    posterior's variance given ``x₀ = D`` (Song et al. 2021, η = 1; k-diffusion's Euler
    ancestral). Noise is drawn as churn is (:func:`draw_latents`, in ``frame``), so a member
    depends only on its own generator.

    Parameters
    ----------
    denoiser, x, sigmas, callback, frame, guidance : see :func:`euler`
    generators : sequence of torch.Generator
        One per member; required when ``renoise > 0``.
    renoise : float, default 1
        Fraction ``η`` in ``[0, 1]`` of each step's noise that is drawn afresh.

    Returns
    -------
    torch.Tensor
        Samples ``(batch, C, H, W)`` in ``sigmas.dtype``.

    Raises
    ------
    ValueError
        On a bad state or schedule, ``renoise`` outside ``[0, 1]``, or ``renoise > 0``
        without generators.
    """
    if not 0.0 <= renoise <= 1.0:
        raise ValueError(f"renoise={renoise!r} is invalid; expected a fraction in [0, 1]")
    x, sigmas, levels = _start(x, sigmas, generators, renoise, "renoise")
    dtype, device = sigmas.dtype, x.device
    for i in range(sigmas.numel() - 1):
        sigma, following = levels[i], levels[i + 1]
        denoised, estimate = _denoise(denoiser, x, sigmas[i], guidance, dtype)
        up = renoise * following * math.sqrt(max(1.0 - following**2 / sigma**2, 0.0))
        down = math.sqrt(max(following**2 - up**2, 0.0))
        x = estimate + (down / sigma) * (x - estimate)
        if up > 0:
            assert generators is not None  # checked above
            shape = tuple(x.shape[1:])
            x = x + up * draw_latents(generators, shape, dtype=dtype, device=device, frame=frame)
        _report(callback, i, x, sigmas[i], sigmas[i], denoised)
    return x

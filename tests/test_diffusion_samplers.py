"""EDM schedule and samplers: exact cases, accuracy order, churn, per-member randomness."""

from __future__ import annotations

import itertools
import math
import pathlib
import sys

import pytest
import torch

from xcorrdiff.config import SAMPLERS
from xcorrdiff.diffusion import (
    Denoiser,
    PatchGrid,
    ancestral,
    build_condition,
    dpmpp_2m,
    draw_latents,
    edm_sigmas,
    euler,
    heun,
    initial_state,
    samplers,
)

sys.path.insert(0, str(pathlib.Path(__file__).parent / "fixtures"))

from toy_denoisers import ToyDenoiser

#: Every sampler of the table, as the inference blocks call it.
ALL = [getattr(samplers, name) for name in SAMPLERS]


def _run(sampler, net, img_lr, sigmas, *, latents=None, generators=None, mean_hr=None,
         patching=None, **kwargs):  # fmt: skip
    """A sampler called as the inference blocks call it: the condition bound to the network
    in a Denoiser (patch by patch on ``patching``), the initial state from the latents or
    the members' generators."""
    denoiser = Denoiser(net, build_condition(img_lr, mean_hr), grid=patching)
    if latents is None:
        x = initial_state(generators, (net.img_out_channels, *img_lr.shape[-2:]), sigmas)
    else:
        x = latents.to(sigmas.dtype) * sigmas[0]
    return sampler(denoiser, x, sigmas, generators=generators, **kwargs)


# -- schedule ---------------------------------------------------------------------------------


def test_edm_sigmas_formula_and_endpoints() -> None:
    sigmas = edm_sigmas(6, sigma_min=0.01, sigma_max=50.0, rho=5.0)
    i = torch.arange(6, dtype=torch.float64)
    expected = (50.0 ** (1 / 5) + i / 5 * (0.01 ** (1 / 5) - 50.0 ** (1 / 5))) ** 5
    torch.testing.assert_close(sigmas[:-1], expected, rtol=1e-15, atol=0)
    assert sigmas[-1] == 0 and sigmas.dtype == torch.float64 and sigmas.shape == (7,)
    assert math.isclose(float(sigmas[0]), 50.0) and math.isclose(float(sigmas[-2]), 0.01)
    assert bool((sigmas[1:] < sigmas[:-1]).all())
    one = edm_sigmas(1, sigma_max=3.0)
    assert one.shape == (2,) and math.isclose(float(one[0]), 3.0) and one[1] == 0


class _Range:
    sigma_min = 0.05
    sigma_max = 10.0

    @staticmethod
    def round_sigma(sigma: torch.Tensor) -> torch.Tensor:
        return torch.round(sigma * 100) / 100


def test_edm_sigmas_clamped_and_rounded_by_net() -> None:
    sigmas = edm_sigmas(5, sigma_min=0.002, sigma_max=800.0, net=_Range(), dtype=torch.float32)
    assert sigmas.dtype == torch.float32
    assert sigmas[0] == 10.0 and sigmas[-2] == torch.tensor(0.05, dtype=torch.float32)
    assert torch.equal(sigmas, torch.round(sigmas * 100) / 100)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, "num_steps must be a positive int"),
        ({"num_steps": 4, "rho": 0.0}, "rho must be positive"),
        ({"num_steps": 4, "sigma_min": 5.0, "sigma_max": 1.0}, "sigma_min=5.0, sigma_max=1.0"),
        ({"num_steps": 4, "sigma_min": 0.0}, "need 0 < sigma_min"),
        ({"num_steps": 4, "dtype": torch.int64}, "floating dtype"),
    ],
)
def test_edm_sigmas_rejects_bad_input(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        edm_sigmas(**kwargs)


# -- analytic denoisers -----------------------------------------------------------------------


class PointMass:
    """Ideal denoiser for data concentrated at ``mu = condition[:, :C]``: D = mu."""

    sigma_min, sigma_max = 0.0, float("inf")
    img_out_channels = 2

    def __call__(self, x, condition, sigma, **kwargs):
        return condition[:, : x.shape[1]].to(x.dtype).expand_as(x)


class Gaussian:
    """Ideal pointwise denoiser for data ~ N(mu, s²): D = mu + (x - mu) s² / (s² + σ²)."""

    sigma_min, sigma_max = 0.0, float("inf")
    img_out_channels = 2

    def __init__(self, s: float = 0.7) -> None:
        self.s = s

    def __call__(self, x, condition, sigma, **kwargs):
        mu = condition[:, : x.shape[1]].to(x.dtype)
        sigma = sigma.reshape(-1, 1, 1, 1).to(x.dtype)
        return mu + (x - mu) * self.s**2 / (self.s**2 + sigma**2)


def _inputs(batch: int = 2, shape: tuple[int, int] = (12, 18), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    img_lr = torch.randn(batch, 3, *shape, generator=g)
    latents = torch.randn(batch, 2, *shape, generator=g)
    return img_lr, latents


@pytest.mark.parametrize("sampler", ALL)
def test_point_mass_is_recovered_exactly(sampler) -> None:
    img_lr, latents = _inputs()
    out = _run(sampler, PointMass(), img_lr, edm_sigmas(7), latents=latents, generators=_gens(1, 2))
    torch.testing.assert_close(out, img_lr[:, :2].double(), rtol=0, atol=1e-12)


def test_every_name_of_the_table_is_a_sampler() -> None:
    assert set(SAMPLERS) == {"euler", "heun", "dpmpp_2m", "ancestral"}
    for name, info in SAMPLERS.items():
        assert callable(getattr(samplers, name)) and info.default_steps >= info.min_steps
        assert info.evaluations(4) == (7 if name == "heun" else 4)


def test_gaussian_ode_solution_and_convergence_order() -> None:
    # The probability-flow ODE dx/dσ = (x - D)/σ = (x - mu) σ / (s² + σ²) has the solution
    # x(σ) - mu ∝ sqrt(s² + σ²): it maps x(σ0) to mu + (x(σ0) - mu) s / sqrt(s² + σ0²).
    img_lr, latents = _inputs()
    net = Gaussian(0.7)
    mu = img_lr[:, :2].double()

    def error(sampler, num_steps: int) -> float:
        sigmas = edm_sigmas(num_steps, sigma_max=80.0)
        x0 = latents.double() * sigmas[0]
        exact = mu + (x0 - mu) * 0.7 / math.sqrt(0.49 + float(sigmas[0]) ** 2)
        out = _run(sampler, net, img_lr, sigmas, latents=latents)
        return float((out - exact).abs().max() / exact.abs().max())

    assert error(heun, 32) < 1e-2
    assert error(heun, 32) < error(euler, 32) / 5
    # Second order: doubling the steps cuts Heun's and DPM-Solver++(2M)'s error by about
    # four, Euler's by two.
    assert error(heun, 32) / error(heun, 64) > 3.5
    assert 1.7 < error(euler, 32) / error(euler, 64) < 2.3
    assert error(dpmpp_2m, 32) / error(dpmpp_2m, 64) > 3.5
    # ... at one evaluation per step, about as accurate as Heun at two.
    assert error(dpmpp_2m, 32) < min(error(euler, 32) / 5, 1.2 * error(heun, 32))


def test_euler_is_ddim_and_ancestral_without_renoise_is_euler() -> None:
    """In EDM's σ parametrization the exponential-Euler (DDIM) update
    x ← (σ'/σ) x + (1 − σ'/σ) D is Euler's step; ``ancestral(renoise=0)`` is the same."""
    net = ToyDenoiser(2, 3, (12, 18), seed=4)
    img_lr, latents = _inputs()
    sigmas = edm_sigmas(6, sigma_max=80.0, net=net)
    denoiser = Denoiser(net, build_condition(img_lr))
    x = latents.double() * sigmas[0]
    for i in range(6):
        ratio = sigmas[i + 1] / sigmas[i]
        x = ratio * x + (1 - ratio) * denoiser(x, sigmas[i]).double()
    plain = _run(euler, net, img_lr, sigmas, latents=latents)
    torch.testing.assert_close(plain, x, rtol=0, atol=1e-10)
    still = _run(ancestral, net, img_lr, sigmas, latents=latents, renoise=0.0)
    torch.testing.assert_close(still, plain, rtol=0, atol=1e-10)


def _ancestral_variance(s: float, sigmas: torch.Tensor, renoise: float) -> float:
    """The exact variance of ``ancestral`` on data N(mu, s²) with the ideal denoiser: each
    step maps x − mu to c (x − mu) + σ_up ε, c = a + (σ_down/σ)(1 − a), a = s²/(s² + σ²)."""
    levels = sigmas.tolist()
    v = levels[0] ** 2
    for sigma, following in itertools.pairwise(levels):
        up = renoise * following * math.sqrt(1 - following**2 / sigma**2)
        down = math.sqrt(following**2 - up**2)
        a = s**2 / (s**2 + sigma**2)
        v = (a + down / sigma * (1 - a)) ** 2 * v + up**2
    return v


@pytest.mark.parametrize("sampler", ALL)
def test_samples_follow_the_exact_law_of_gaussian_data(sampler) -> None:
    """Data N(mu, 0.7²) per pixel with its ideal denoiser: every sampler's members have
    mean mu and standard deviation 0.7 (2 × 2 × 64 × 64 draws: the sampling error of the sd
    is about 0.5 %) — the second-order ones at 32 steps, the first-order ones at 512 (at 32
    they are 9 % (Euler) and 15 % (ancestral) short: first-order steps lose spread) — and
    ``ancestral``'s variance is the one its update rule gives at any step count."""
    shape = (64, 64)
    img_lr, _ = _inputs(shape=shape)
    mu = img_lr[:, :2].double()
    sigmas = edm_sigmas(32 if sampler in (heun, dpmpp_2m) else 512, sigma_max=80.0)
    out = _run(sampler, Gaussian(0.7), img_lr, sigmas, generators=_gens(5, 6))
    z = (out - mu) / 0.7
    assert abs(float(z.mean())) < 0.02 and abs(float(z.std()) - 1) < 0.02
    if sampler is ancestral:
        for steps, renoise in ((3, 1.0), (8, 0.5)):
            few = edm_sigmas(steps, sigma_max=80.0)
            out = _run(ancestral, Gaussian(0.7), img_lr, few, generators=_gens(5, 6),
                       renoise=renoise)  # fmt: skip
            exact = math.sqrt(_ancestral_variance(0.7, few, renoise))
            assert abs(float((out - mu).std()) / exact - 1) < 0.02


# -- patches ----------------------------------------------------------------------------------


@pytest.mark.parametrize("blend", ["uniform", "taper"])
@pytest.mark.parametrize("layout", ["shift", "reflect"])
def test_patched_pointwise_denoiser_equals_whole_domain(blend, layout) -> None:
    # A pointwise denoiser gives every overlapping patch the same value, so blending must
    # reproduce the whole-domain sample (the condition's first channels are mean_hr in both).
    img_lr, latents = _inputs(shape=(23, 31))
    mean_hr = torch.randn(1, 2, 23, 31)
    grid = PatchGrid((23, 31), (10, 12), 3, layout=layout, blend=blend)
    whole = _run(heun, Gaussian(), img_lr, edm_sigmas(6), latents=latents, mean_hr=mean_hr)
    patched = _run(
        heun, Gaussian(), img_lr, edm_sigmas(6), latents=latents, mean_hr=mean_hr, patching=grid
    )
    torch.testing.assert_close(patched, whole, rtol=0, atol=1e-12)


def test_patched_call_convention() -> None:
    calls = []

    class Recorder(Gaussian):
        def __call__(self, x, condition, sigma, embedding_selector=None):
            emb = torch.arange(23 * 31, dtype=torch.float32).reshape(1, 23, 31)
            calls.append((x.shape, condition.shape, sigma.shape, embedding_selector(emb)))
            return super().__call__(x, condition, sigma)

    img_lr, latents = _inputs(shape=(23, 31))
    grid = PatchGrid((23, 31), (10, 12), 3)
    _run(
        euler,
        Recorder(),
        img_lr,
        edm_sigmas(2),
        latents=latents,
        mean_hr=img_lr[:, :2],
        patching=grid,
    )
    assert len(calls) == 2
    x_shape, cond_shape, sigma_shape, emb = calls[0]
    n = 2 * grid.num_patches
    assert x_shape == (n, 2, 10, 12) and sigma_shape == (n,)
    assert cond_shape == (n, 2 + 3 + 3, 10, 12)  # mean_hr, img_lr, global img_lr
    full = torch.arange(23 * 31, dtype=torch.float32).reshape(1, 1, 23, 31).expand(2, 1, 23, 31)
    assert torch.equal(emb, grid.unfold(full))


# -- randomness -------------------------------------------------------------------------------


def _gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_draw_latents_one_stream_per_member() -> None:
    latents = draw_latents(_gens(3, 4), (2, 5, 6), dtype=torch.float64)
    assert latents.shape == (2, 2, 5, 6) and latents.dtype == torch.float64
    alone = torch.randn(2, 5, 6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(latents[1], alone.double())


@pytest.mark.parametrize("sampler", [euler, heun])
def test_churn_injects_noise_from_member_generators(sampler) -> None:
    net = ToyDenoiser(2, 3, (12, 18), seed=1)
    img_lr, latents = _inputs()
    img_lr = img_lr[:1].expand(2, -1, -1, -1)  # same condition and latents for both members
    latents = latents[:1].expand(2, -1, -1, -1)
    sigmas = edm_sigmas(8, sigma_max=80.0, net=net)
    churned = _run(
        sampler, net, img_lr, sigmas, latents=latents, generators=_gens(1, 2), s_churn=10.0
    )
    assert float((churned[0] - churned[1]).abs().max()) > 1e-3
    plain = _run(sampler, net, img_lr, sigmas, latents=latents, generators=_gens(1, 2), s_churn=0.0)
    assert torch.equal(plain[0], plain[1])
    # Churn restricted to a noise range that the schedule never visits is no churn.
    off = _run(
        sampler,
        net,
        img_lr,
        sigmas,
        latents=latents,
        generators=_gens(1, 2),
        s_churn=10.0,
        s_min=100.0,
    )
    assert torch.equal(off, plain)
    again = _run(
        sampler, net, img_lr, sigmas, latents=latents, generators=_gens(1, 2), s_churn=10.0
    )
    assert torch.equal(churned, again)


def test_ancestral_renoises_from_member_generators() -> None:
    net = ToyDenoiser(2, 3, (12, 18), seed=1)
    img_lr, latents = _inputs()
    img_lr, latents = img_lr[:1].expand(2, -1, -1, -1), latents[:1].expand(2, -1, -1, -1)
    sigmas = edm_sigmas(8, sigma_max=80.0, net=net)

    def run(renoise: float) -> torch.Tensor:
        return _run(ancestral, net, img_lr, sigmas, latents=latents, generators=_gens(1, 2),
                    renoise=renoise)  # fmt: skip

    noisy = run(0.5)
    assert float((noisy[0] - noisy[1]).abs().max()) > 1e-3
    assert torch.equal(noisy, run(0.5))
    still = run(0.0)
    assert torch.equal(still[0], still[1])
    with pytest.raises(
        ValueError, match=r"renoise=1.5 is invalid; expected a fraction in \[0, 1\]"
    ):
        run(1.5)
    with pytest.raises(ValueError, match=r"generators is required \(renoise > 0"):
        _run(ancestral, net, img_lr, sigmas, renoise=0.5, latents=latents)


class RowWise(torch.nn.Module):
    """Runs a network one row at a time: its outputs cannot depend on the batch.

    (CPU convolutions may pick batch-size dependent kernels that differ in the last bit; the
    sampler's contract is about its own arithmetic and random draws.)
    """

    def __init__(self, net: ToyDenoiser) -> None:
        super().__init__()
        self.net = net
        self.round_sigma, self.img_out_channels = net.round_sigma, net.img_out_channels
        self.sigma_min, self.sigma_max = net.sigma_min, net.sigma_max

    def forward(self, x, condition, sigma, embedding_selector=None):
        pos = embedding_selector(self.net.pos_embd) if embedding_selector else None
        rows = []
        for i in range(x.shape[0]):
            sel = None if pos is None else (lambda emb, i=i: pos[i : i + 1])
            rows.append(self.net(x[i : i + 1], condition[i : i + 1], sigma[i : i + 1],
                                 embedding_selector=sel))  # fmt: skip
        return torch.cat(rows)


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("patched", [False, True], ids=["whole", "patch"])
def test_member_sample_does_not_depend_on_its_batch(patched, name) -> None:
    shape = (14, 20)
    net = RowWise(ToyDenoiser(2, 3 + (3 if patched else 0), shape, seed=2))
    grid = PatchGrid(shape, (8, 12), 2, blend="taper") if patched else None
    img_lr, _ = _inputs(batch=3, shape=shape)
    sigmas = edm_sigmas(3, sigma_max=80.0, net=net)
    kwargs = {"patching": grid, **SAMPLERS[name].noise_arguments(5.0, 0.7)}
    sampler = getattr(samplers, name)
    batch = _run(sampler, net, img_lr, sigmas, generators=_gens(10, 11, 12), **kwargs)
    alone = _run(sampler, net, img_lr[1:2], sigmas, generators=_gens(11), **kwargs)
    assert torch.equal(batch[1:2], alone)
    assert float((batch[0] - batch[1]).abs().max()) > 1e-3


def test_callback_sees_every_step() -> None:
    net = ToyDenoiser(2, 3, (12, 18), seed=3, sigma_max=80.0)
    img_lr, latents = _inputs()
    seen = []
    sigmas = edm_sigmas(4, net=net)
    out = _run(heun, net, img_lr, sigmas, latents=latents, callback=seen.append)
    assert [s["i"] for s in seen] == [0, 1, 2, 3]
    assert float(seen[0]["sigma"]) == 80.0 and float(seen[-1]["sigma"]) > 0
    assert torch.equal(seen[-1]["x"], out)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"generators": None, "s_churn": 1.0}, r"generators is required \(s_churn > 0"),
        ({"generators": "one"}, r"one torch.Generator per member \(2\), got 3"),
        ({"sigmas": torch.tensor([5.0, 1.0])}, "must be positive and end in 0"),
        ({"sigmas": torch.tensor([5, 0])}, "1-D floating tensor"),
        ({"sigmas": 3}, "1-D floating tensor"),
        ({"x": torch.zeros(2, 12, 18)}, r"x must have shape \(batch, C, H, W\)"),
        ({"s_churn": -1.0}, "s_churn must be non-negative"),
    ],
)
def test_sampler_rejects_bad_input(kwargs, match) -> None:
    img_lr, latents = _inputs()
    sigmas = edm_sigmas(3)
    args = {"sigmas": sigmas, "x": latents.double() * sigmas[0], "generators": _gens(1, 2)}
    args.update(kwargs)
    if args["generators"] == "one":
        args["generators"] = _gens(1, 2, 3)
    denoiser = Denoiser(Gaussian(), build_condition(img_lr))
    with pytest.raises(ValueError, match=match):
        heun(denoiser, args.pop("x"), args.pop("sigmas"), **args)


def test_condition_and_patches_are_checked_where_they_are_built() -> None:
    img_lr, _ = _inputs()
    with pytest.raises(ValueError, match=r"mean must have shape \(1 or 2, C_out, 12, 18\)"):
        build_condition(img_lr, torch.zeros(2, 1, 12, 17))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, C, 12, 19\)"):
        Denoiser(Gaussian(), build_condition(img_lr), grid=PatchGrid((12, 19), (6, 6)))

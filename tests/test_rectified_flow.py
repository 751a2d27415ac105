"""Rectified-flow sampling: the shifted time grid, the velocity of an x0 network, Euler and
Heun against known solutions and the exact law of Gaussian data, and Earth2Studio's own
``CorrDiffEra5Hrrr`` members reproduced from its package.

``tests/fixtures/era5_hrrr`` (written by ``tests/fixtures/make_era5_hrrr_fixtures.py``)
holds a small random package of Earth2Studio's ``CorrDiffEra5Hrrr`` layout and what
Earth2Studio 0.19.0 computed with it: the conditioning of two ERA5 times, one velocity, and
two seeded members per time with its Heun (4 steps, shift 12) and with 3 Euler steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from xcorrdiff.diffusion.rectified_flow import (
    flow_euler,
    flow_heun,
    flow_initial_state,
    flow_times,
    velocity,
)
from xcorrdiff.nn import DiT, load_physicsnemo

FIXTURE = Path(__file__).parent / "fixtures" / "era5_hrrr"
OUTPUTS = ["u10m", "v10m", "t2m"]


def test_flow_times_are_linear_then_shifted_and_end_at_zero() -> None:
    t = flow_times(4, t_max=0.8, dtype=torch.float64)
    torch.testing.assert_close(t, torch.tensor([0.8, 0.6, 0.4, 0.2, 0.0], dtype=torch.float64))
    shifted = flow_times(4, t_max=0.8, shift=3.0, dtype=torch.float64)
    torch.testing.assert_close(shifted, 3 * t / (1 + 2 * t))
    assert shifted[-1] == 0 and bool((shifted[:-1] > t[:-1]).all())  # steps spent near noise


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_steps": 0}, r"num_steps=0 is invalid; expected an integer >= 1"),
        ({"num_steps": 2, "t_max": 1.0}, r"t_max=1.0 is invalid; expected a number in \(0, 1\)"),
        ({"num_steps": 2, "shift": 0.0}, r"shift=0.0 is invalid; expected a positive number"),
    ],
)
def test_flow_times_refuse_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        flow_times(**kwargs)


def test_velocity_of_an_x0_network_clamps_its_denominator() -> None:
    x, x0 = torch.full((2, 1, 2, 2), 3.0), torch.ones(2, 1, 2, 2)
    v = velocity(x, x0, torch.tensor([0.5, 0.01]), prediction="x0", clip=0.05)
    assert v[0].unique().item() == pytest.approx(4.0) and v[1].unique().item() == pytest.approx(
        40.0
    )
    assert velocity(x, x0, torch.tensor([0.5, 0.5]), prediction="flow", clip=0.05) is x0
    with pytest.raises(ValueError, match=r"prediction='eps' is invalid; expected one of"):
        velocity(x, x0, torch.tensor([0.5, 0.5]), prediction="eps", clip=0.05)


@pytest.mark.parametrize(("integrate", "order"), [(flow_euler, 1), (flow_heun, 2)])
def test_the_integrators_converge_at_their_order(integrate, order: int) -> None:
    """``dx/dt = x`` from ``t = 1``: ``x(0) = x(1) / e``; halving the step divides the
    error by ``2 ** order``."""
    x1 = torch.ones(1, 1, 1, 1, dtype=torch.float64)
    errors = []
    for steps in (16, 32):
        t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
        errors.append(abs(float(integrate(lambda x, _t: x, x1, t)) - math.exp(-1)))
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.15)


@pytest.mark.parametrize("integrate", [flow_euler, flow_heun])
def test_samples_of_gaussian_data_follow_its_law(integrate) -> None:
    """Data ``N(mu, s²)`` with its exact x0-predictor ``E[x0 | x_t]``: the samples' mean and
    spread are the data's (to the start at ``t_max · ε`` and the step error)."""
    mu, s = 1.5, 0.6

    def x0_hat(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.reshape(-1, 1, 1, 1)
        gain = (1 - t) * s**2 / ((1 - t) ** 2 * s**2 + t**2)
        return mu + gain * (x - (1 - t) * mu)

    times = flow_times(48, t_max=0.999, dtype=torch.float64)
    gens = [torch.Generator().manual_seed(i) for i in range(64)]
    x = flow_initial_state(gens, (1, 8, 8), times)

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return velocity(x, x0_hat(x, t), t, prediction="x0", clip=1e-3)

    samples = integrate(v, x, times)
    assert float(samples.mean()) == pytest.approx(mu, abs=0.03)
    assert float(samples.std()) == pytest.approx(s, rel=0.04)


def test_a_member_depends_on_its_own_generator_only() -> None:
    times = flow_times(3, shift=4.0)
    one = flow_initial_state([torch.Generator().manual_seed(5)], (2, 4, 4), times)
    two = flow_initial_state(
        [torch.Generator().manual_seed(9), torch.Generator().manual_seed(5)], (2, 4, 4), times
    )
    torch.testing.assert_close(two[1:], one, rtol=0, atol=0)
    expected = torch.randn((1, 2, 4, 4), generator=torch.Generator().manual_seed(5)) * times[0]
    torch.testing.assert_close(one, expected, rtol=0, atol=0)  # Earth2Studio's latents


def _reference() -> tuple[dict, DiT, torch.Tensor, torch.Tensor]:
    ref = dict(np.load(FIXTURE / "reference.npz"))
    net = load_physicsnemo(FIXTURE / "package" / "x_pred" / "dit.mdlus")
    stats = json.loads((FIXTURE / "package" / "x_pred" / "stats.json").read_text())["hrrr"]
    mean = torch.tensor([stats[v]["mean"] for v in OUTPUTS]).reshape(1, -1, 1, 1)
    std = torch.tensor([stats[v]["std"] for v in OUTPUTS]).reshape(1, -1, 1, 1)
    return ref, net, mean, std


def _velocity(net: DiT, cond: torch.Tensor, vec: torch.Tensor, prediction: str = "x0"):  # type: ignore[no-untyped-def]
    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        out = net(torch.cat([x, cond.expand(n, -1, -1, -1)], 1), t * 999.0, vec.expand(n, -1))
        return velocity(x, out, t, prediction=prediction, clip=0.05)

    return v


@torch.no_grad()
def test_one_velocity_equals_earth2studio_s() -> None:
    ref, net, _, _ = _reference()
    v = _velocity(net, torch.from_numpy(ref["cond_concat_0"]), torch.from_numpy(ref["cond_vec_0"]))
    out = v(torch.from_numpy(ref["velocity_x"]), torch.tensor([0.7]))
    torch.testing.assert_close(out, torch.from_numpy(ref["velocity"]), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("case", "steps", "prediction"), [("heun", 4, "x0"), ("euler", 3, "x0"), ("flow", 4, "flow")]
)
@torch.no_grad()
def test_seeded_members_equal_earth2studio_s(case: str, steps: int, prediction: str) -> None:
    """Given Earth2Studio's conditioning, our DiT and integrators give its members from the
    same seeds: equal to float32 rounding (its ODE right-hand side goes through a score
    and back, ours is the velocity itself), in physical units; ``flow``: Heun with the
    network read as a velocity predictor."""
    ref, net, mean, std = _reference()
    integrate = flow_euler if case == "euler" else flow_heun
    times = flow_times(steps, t_max=0.99, shift=12.0)
    for k in range(2):
        v = _velocity(
            net, torch.from_numpy(ref[f"cond_concat_{k}"]), torch.from_numpy(ref[f"cond_vec_{k}"]),
            prediction,
        )  # fmt: skip
        gens = [torch.Generator().manual_seed(7 + i) for i in range(2)]
        members = integrate(v, flow_initial_state(gens, (3, 16, 24), times), times) * std + mean
        expected = torch.from_numpy(ref[f"members_{case}"][:, k])
        assert float((expected - mean).abs().max()) > 10  # the network moves the fields
        torch.testing.assert_close(members, expected, rtol=1e-6, atol=5e-4)

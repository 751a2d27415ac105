"""Our Earth2Studio export, run by the real Earth2Studio 0.19.0 (fixtures of
``tests/fixtures/make_earth2studio_fixtures.py``): the package ``save(format="earth2studio")``
wrote, loaded by Earth2Studio's own ``CorrDiff.load_model``, against the same package read
by :meth:`~xcorrdiff.CorrDiffModel.from_earth2studio`.

* the condition: our prepare step (xarray's bilinear ``interp`` from the input's own grid,
  the invariants, the normalization) against Earth2Studio's ``preprocess_input`` (its own
  bilinear interpolation);
* the regression mean, physical units;
* members from the same latents: Earth2Studio's member ``i`` starts from the latents of
  seed ``11 + i`` (PhysicsNeMo's ``StackedRandomGenerator``: ``torch.randn`` of a CPU
  generator seeded with it), which are our ``draw_latents`` of a generator seeded the
  same; our Heun without churn on our network reads of the package, from Earth2Studio's
  condition, against Earth2Studio's stochastic sampler.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import xcorrdiff
from xcorrdiff.diffusion import Denoiser, build_condition, edm_sigmas, heun, initial_state
from xcorrdiff.diffusion.conditioning import mean_of_inputs

FIXTURES = Path(__file__).parent / "fixtures" / "earth2studio_run"


@pytest.fixture(scope="module")
def run() -> tuple[xcorrdiff.CorrDiffModel, xr.Dataset, dict[str, np.ndarray]]:
    model = xcorrdiff.CorrDiffModel.from_earth2studio(FIXTURES / "package", device="cpu")
    inputs = xr.open_dataset(FIXTURES / "inputs.nc").load()
    with np.load(FIXTURES / "reference.npz") as data:
        reference = {k: data[k] for k in data.files}
    return model, inputs, reference


def test_the_fixture_is_earth2studio_0_19_on_physicsnemo_2_2_2() -> None:
    versions = json.loads((FIXTURES / "versions.json").read_text())
    assert versions["earth2studio"] == "0.19.0"
    assert versions["nvidia-physicsnemo"] == "2.2.2"


def test_our_condition_is_earth2studios(run) -> None:  # type: ignore[no-untyped-def]
    """Both interpolate bilinearly from the input's 0.05° grid: equal to float32 rounding of
    the normalized channels."""
    model, inputs, reference = run
    ours = model.prepare(inputs)
    first = ours[model.input_names[0]]
    stacked = np.stack(
        [
            ours[v].broadcast_like(first).transpose(*first.dims).values
            for v in model.condition_variables
        ],
        axis=1,
    )
    assert stacked.shape == reference["condition"].shape
    np.testing.assert_allclose(stacked, reference["condition"], rtol=0, atol=2e-5)


def test_our_regression_mean_is_earth2studios(run) -> None:  # type: ignore[no-untyped-def]
    model, inputs, reference = run
    mean = model.regression_mean(inputs)
    ours = np.stack([mean[v].values for v in model.output_names], axis=1)
    assert reference["mean"].std(axis=(2, 3)).min() > 0.05  # a field, not a constant
    np.testing.assert_allclose(ours, reference["mean"], rtol=0, atol=2e-4)  # K, m s-1


def test_our_members_from_the_same_latents_are_earth2studios(run) -> None:  # type: ignore[no-untyped-def]
    model, _, reference = run
    assert (model.sampler.sampler, model.sampler.s_churn) == ("heun", 0.0)
    steps, seed = int(reference["steps"]), int(reference["seed"])
    n_out = len(model.output_names)
    norm = model.output_normalizer
    center = np.array([norm.stats[v].mean for v in model.output_names])[:, None, None]
    scale = np.array([norm.stats[v].std for v in model.output_names])[:, None, None]
    sigmas = edm_sigmas(steps, sigma_min=model.sampler.sigma_min,
                        sigma_max=model.sampler.sigma_max, net=model.diffusion)  # fmt: skip
    for t, condition in enumerate(torch.from_numpy(reference["condition"])):
        inputs = condition[None]
        with torch.no_grad():
            mu = mean_of_inputs(model.regression, inputs, n_out, None)
        members = reference["members"][t]
        generators = [torch.Generator().manual_seed(seed + i) for i in range(len(members))]
        x = initial_state(generators, (n_out, *inputs.shape[-2:]), sigmas)
        denoiser = Denoiser(
            model.diffusion, build_condition(inputs.expand(len(members), -1, -1, -1),
                                             mu.expand(len(members), -1, -1, -1)),
            global_inputs=False,
        )  # fmt: skip
        residual = heun(denoiser, x, sigmas, s_churn=0.0)
        ours = (mu.double() + residual).numpy() * scale + center
        np.testing.assert_allclose(ours, members, rtol=0, atol=1e-3)  # K, m s-1
        assert np.abs(members[0] - members[1]).max() > 1.0  # the members differ

"""xcorrdiff.diffusion against PhysicsNeMo 2.2.2 (fixtures from make_diffusion_fixtures.py).

Every comparison feeds our code the numbers PhysicsNeMo consumed (inputs, initial latents,
noise draws, patch corners) and checks the outputs. PhysicsNeMo orders patch rows
patch-major and column-major over the grid; ours are member-major and row-major, so rows
are permuted before comparing.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xcorrdiff.diffusion import (
    Condition,
    Denoiser,
    PatchGrid,
    build_condition,
    crop_condition,
    edm_sigmas,
    euler,
    extract_patches,
    heun,
    random_patch_offsets,
    regression_loss,
    residual_loss,
    unfold_condition,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))

from toy_denoisers import ToyDenoiser, ToyRegression  # noqa: E402

pytestmark = pytest.mark.numerics

# Must match tests/fixtures/make_diffusion_fixtures.py.
BATCH, C_OUT, C_LR = 2, 2, 3
DOMAIN = (24, 40)
PATCH, OVERLAP, BOUNDARY = (16, 16), 4, 2
EULER_STEPS, HEUN_STEPS = 9, 8
SIGMA_MIN, SIGMA_MAX = 0.002, 800.0
GRID_CASES = {
    "grid_a": (PATCH, OVERLAP, BOUNDARY),
    "grid_b": ((12, 16), 0, 0),
    "grid_c": ((10, 14), 3, 0),
    "grid_d": ((9, 13), 2, 1),
}


def _load(name: str) -> dict[str, torch.Tensor]:
    with np.load(FIXTURES / "physicsnemo_diffusion" / f"{name}.npz") as data:
        return {k: torch.from_numpy(data[k]) for k in data.files}


def rel_err(ours: torch.Tensor, theirs: torch.Tensor, label: str | None = None) -> float:
    """max |ours - theirs| / max |theirs|; printed (``pytest -s``) when ``label`` is given."""
    theirs = theirs.to(ours.dtype)
    err = float((ours - theirs).abs().max() / theirs.abs().max())
    if label is not None:
        print(f"\nphysicsnemo-equality case={label} max_rel_err={err:.2e}")
    return err


def from_grid_rows(t: torch.Tensor, grid: PatchGrid, batch: int) -> torch.Tensor:
    """GridPatching2D rows ``(ix * Py + iy) * B + b`` → ours ``b * P + iy * Px + ix``."""
    py, px = grid.grid_shape
    t = t.reshape(px, py, batch, *t.shape[1:])
    return t.permute(2, 1, 0, *range(3, t.ndim)).reshape(batch * py * px, *t.shape[3:])


def from_patch_major(t: torch.Tensor, num: int, batch: int) -> torch.Tensor:
    """RandomPatching2D rows ``p * B + b`` → ours ``b * P + p``."""
    return t.reshape(num, batch, *t.shape[1:]).transpose(0, 1).reshape(t.shape)


@pytest.fixture(scope="module")
def sampler_data() -> dict[str, torch.Tensor]:
    return _load("samplers")


def _sampler_case(patched: bool) -> tuple[ToyDenoiser, PatchGrid | None]:
    if patched:
        net = ToyDenoiser(C_OUT, C_OUT + 2 * C_LR, DOMAIN, seed=5)
        grid = PatchGrid(DOMAIN, PATCH, OVERLAP, boundary=BOUNDARY, layout="reflect")
        return net, grid
    return ToyDenoiser(C_OUT, C_OUT + C_LR, DOMAIN, seed=0), None


def _denoiser(net: ToyDenoiser, data: dict[str, torch.Tensor], grid: PatchGrid | None) -> Denoiser:
    return Denoiser(net, build_condition(data["img_lr"], data["mean_hr"]), grid=grid)


def _start(data: dict[str, torch.Tensor], sigmas: torch.Tensor) -> torch.Tensor:
    return data["latents"].to(sigmas.dtype) * sigmas[0]


@pytest.mark.parametrize("patched", [False, True], ids=["whole", "patch"])
def test_euler_matches_deterministic_sampler(sampler_data, patched) -> None:
    net, grid = _sampler_case(patched)
    sigmas = edm_sigmas(EULER_STEPS, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, net=net)
    ours = euler(_denoiser(net, sampler_data, grid), _start(sampler_data, sigmas), sigmas)
    theirs = sampler_data["euler_patch" if patched else "euler_whole"]
    assert ours.dtype == theirs.dtype == torch.float64
    assert (
        rel_err(ours, theirs, f"euler-vs-deterministic_sampler[{'patch' if patched else 'whole'}]")
        <= 1e-5
    )


@pytest.mark.parametrize("patched", [False, True], ids=["whole", "patch"])
def test_heun_matches_stochastic_sampler(sampler_data, patched) -> None:
    net, grid = _sampler_case(patched)
    sigmas = edm_sigmas(
        HEUN_STEPS, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, net=net, dtype=torch.float32
    )
    denoiser = _denoiser(net, sampler_data, grid)
    ours = heun(denoiser, _start(sampler_data, sigmas), sigmas, s_churn=0.0)
    theirs = sampler_data["heun_patch" if patched else "heun_whole"]
    assert ours.dtype == theirs.dtype == torch.float32
    assert (
        rel_err(ours, theirs, f"heun-vs-stochastic_sampler[{'patch' if patched else 'whole'}]")
        <= 1e-5
    )


def test_patched_and_whole_samples_differ(sampler_data) -> None:
    # Guards against a vacuous comparison: the fixtures are not all the same field.
    assert rel_err(sampler_data["heun_patch"], sampler_data["heun_whole"]) > 1e-2
    assert rel_err(sampler_data["euler_whole"], sampler_data["heun_whole"]) > 1e-3


@pytest.fixture(scope="module")
def patch_data() -> dict[str, torch.Tensor]:
    return _load("patching")


@pytest.mark.parametrize("case", sorted(GRID_CASES))
def test_unfold_matches_grid_patching_apply(patch_data, case) -> None:
    patch, overlap, boundary = GRID_CASES[case]
    grid = PatchGrid(DOMAIN, patch, overlap, boundary=boundary, layout="reflect")
    theirs = patch_data[f"{case}_apply"]
    assert theirs.shape[0] == grid.num_patches * BATCH
    # PhysicsNeMo's additional_input: resized to the patch and appended to every patch, as
    # unfold_condition appends the global inputs.
    extra = F.interpolate(patch_data["extra"], size=grid.patch_shape, mode="bilinear")
    with_extra = Condition(inputs=grid.unfold(patch_data["x"]),
                           global_inputs=extra.repeat_interleave(grid.num_patches, dim=0))  # fmt: skip
    assert torch.equal(with_extra.channels(), from_grid_rows(theirs, grid, BATCH))
    unfolded = unfold_condition(build_condition(patch_data["x"]), grid)
    assert torch.equal(unfolded.inputs, with_extra.inputs)


@pytest.mark.parametrize("case", sorted(GRID_CASES))
def test_fold_matches_grid_patching_fuse(patch_data, case) -> None:
    patch, overlap, boundary = GRID_CASES[case]
    grid = PatchGrid(DOMAIN, patch, overlap, boundary=boundary, layout="reflect")
    noisy = from_grid_rows(patch_data[f"{case}_noisy"], grid, BATCH)
    assert rel_err(grid.fold(noisy), patch_data[f"{case}_fuse"], f"fold-vs-fuse[{case}]") <= 1e-6
    assert torch.equal(grid.fold(grid.unfold(patch_data["x"])), patch_data["x"])
    assert rel_err(patch_data[f"{case}_roundtrip"], patch_data["x"]) <= 1e-6


def test_random_offsets_match_random_patching(patch_data) -> None:
    ours = random_patch_offsets(DOMAIN, PATCH, 5, torch.Generator().manual_seed(7))
    assert torch.equal(ours, patch_data["random_offsets_seed7"])


@pytest.fixture(scope="module")
def loss_data() -> dict[str, torch.Tensor]:
    return _load("losses")


def test_regression_loss_matches(loss_data) -> None:
    reg = ToyRegression(C_OUT, C_LR, seed=11)
    with torch.no_grad():
        ours = regression_loss(reg, loss_data["y"], build_condition(loss_data["img_lr"]))
    assert rel_err(ours, loss_data["regression_loss"], "RegressionLoss") <= 1e-6


def test_residual_loss_matches_whole_domain(loss_data) -> None:
    net = ToyDenoiser(C_OUT, C_OUT + C_LR, DOMAIN, seed=0)
    reg = ToyRegression(C_OUT, C_LR, seed=11)
    y, img_lr = loss_data["y"], loss_data["img_lr"]
    with torch.no_grad():
        mean = reg(torch.zeros_like(y), img_lr)
        ours = residual_loss(
            net, y - mean, build_condition(img_lr, mean),
            sigma=(loss_data["residual_whole_rnd"] * 1.2 + 0.0).exp(),
            noise=loss_data["residual_whole_eps"],
        )  # fmt: skip
    assert rel_err(ours, loss_data["residual_whole"], "ResidualLoss[whole]") <= 1e-5


def test_residual_loss_matches_random_patches(loss_data) -> None:
    net = ToyDenoiser(C_OUT, C_OUT + 2 * C_LR, DOMAIN, seed=5)
    reg = ToyRegression(C_OUT, C_LR, seed=11)
    y, img_lr = loss_data["y"], loss_data["img_lr"]
    offsets = loss_data["residual_patch_offsets"]
    num = offsets.shape[0]
    with torch.no_grad():
        mean = reg(torch.zeros_like(y), img_lr)
        condition = crop_condition(build_condition(img_lr, mean), offsets, PATCH)
        ours = residual_loss(
            net, extract_patches(y - mean, offsets, PATCH), condition,
            sigma=from_patch_major((loss_data["residual_patch_rnd"] * 1.2).exp(), num, BATCH),
            noise=from_patch_major(loss_data["residual_patch_eps"], num, BATCH),
        )  # fmt: skip
    theirs = from_patch_major(loss_data["residual_patch"], num, BATCH)
    assert ours.shape == (BATCH * num, C_OUT, *PATCH)
    assert rel_err(ours, theirs, "ResidualLoss[patches]") <= 1e-5

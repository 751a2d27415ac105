"""Patch multi-diffusion: any domain size, rectangular patches, no seams at tile borders."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import tiny_data, tiny_model

from xcorrdiff.diffusion import PatchGrid
from xcorrdiff.inference.api import downscale


def _borders(starts: list[int], patch: int, size: int) -> set[int]:
    """Indices ``i`` such that the step ``i-1 → i`` crosses a patch edge inside the domain."""
    edges = {s for s in starts if s > 0} | {s + patch for s in starts if s + patch < size}
    return edges


def _gradient_ratio(field: np.ndarray, borders: set[int], axis: int) -> float:
    """Mean |step| across the borders over mean |step| elsewhere, along ``axis``."""
    steps = np.abs(np.diff(field, axis=axis))  # step k goes from k to k + 1
    at = np.zeros(steps.shape[axis], dtype=bool)
    at[[b - 1 for b in borders]] = True
    shape = [1] * steps.ndim
    shape[axis] = -1
    mask = np.broadcast_to(at.reshape(shape), steps.shape)
    return float(steps[mask].mean() / steps[~mask].mean())


@pytest.mark.parametrize(("patch_shape", "overlap"), [((16, 24), 6), ((16, 16), 4)])
def test_no_seams_across_tile_borders(patch_shape: tuple[int, int], overlap: int) -> None:
    """32×48 domain, patches that do not divide it: gradients at tile borders are within
    1.2× of the gradients elsewhere, in both directions and for every variable."""
    lr, _ = tiny_data(2)
    model = tiny_model()
    ens = downscale(
        lr, model, n_ensemble=4, num_steps=4, seed=0, device="cpu",
        patch_shape=patch_shape, overlap=overlap,
    )  # fmt: skip
    grid = PatchGrid(model.shape, patch_shape, overlap, blend="taper")
    ys = _borders(grid._starts_y, patch_shape[0], model.shape[0])
    xs = _borders(grid._starts_x, patch_shape[1], model.shape[1])
    assert ys and xs  # there are interior borders along both axes
    assert ens.attrs["patch_shape"] == f"{patch_shape[0]}x{patch_shape[1]}"
    for name in ("t2m", "u10m"):
        values = ens[name].values  # (member, time, y, x)
        assert np.isfinite(values).all()
        for borders, axis in ((ys, 2), (xs, 3)):
            ratio = _gradient_ratio(values, borders, axis)
            assert ratio < 1.2, (name, axis, ratio)


def test_patched_and_whole_domain_agree_in_distribution() -> None:
    """Patching changes the samples but not their scale: same spread within 25 %."""
    lr, _ = tiny_data(2)
    model = tiny_model()
    kw = {"n_ensemble": 6, "num_steps": 4, "seed": 1, "device": "cpu"}
    whole = downscale(lr, model, **kw)  # type: ignore[arg-type]
    patched = downscale(lr, model, patch_shape=(16, 24), overlap=6, **kw)  # type: ignore[arg-type]
    assert not np.allclose(whole["u10m"].values, patched["u10m"].values)
    for name in ("t2m", "u10m"):
        a = float(whole[name].std("member").mean())
        b = float(patched[name].std("member").mean())
        assert 0.75 < b / a < 1.25, (name, a, b)


def test_default_overlap_is_a_quarter_patch() -> None:
    lr, _ = tiny_data(1)
    ens = downscale(lr, tiny_model(), n_ensemble=1, num_steps=2, device="cpu", patch_shape=(16, 24))
    assert ens.attrs["overlap"] == 4


def test_seam_metric_detects_unblended_tiles() -> None:
    """The same metric on tiles without overlap finds a seam (the check is not vacuous)."""
    lr, _ = tiny_data(2)
    model = tiny_model()
    ens = downscale(
        lr, model, n_ensemble=4, num_steps=4, seed=0, device="cpu",
        patch_shape=(16, 24), overlap=0,
    )  # fmt: skip
    grid = PatchGrid(model.shape, (16, 24), 0)
    ys = _borders(grid._starts_y, 16, model.shape[0])
    xs = _borders(grid._starts_x, 24, model.shape[1])
    ratios = [
        _gradient_ratio(ens[name].values, borders, axis)
        for name in ("t2m", "u10m")
        for borders, axis in ((ys, 2), (xs, 3))
    ]
    assert max(ratios) > 1.2

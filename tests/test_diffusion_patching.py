"""Patch geometry: coverage, unfold/fold identity, blending weights, random patches, errors."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from xcorrdiff.diffusion import (
    PatchGrid,
    build_condition,
    extract_patches,
    random_patch_offsets,
    unfold_condition,
)

GRIDS = [  # (domain, patch, overlap, extra kwargs)
    ((45, 70), (16, 24), 4, {}),
    ((33, 29), (8, 8), 3, {}),
    ((31, 47), (10, 12), 0, {}),  # overlap 0, nothing divides
    ((17, 17), (17, 17), 5, {}),  # one patch
    ((20, 7), (6, 7), 2, {}),  # one patch wide
    ((45, 70), (16, 24), 4, {"layout": "reflect", "boundary": 2}),
    ((31, 47), (10, 12), 0, {"layout": "reflect"}),
]
IDS = [f"{d[0]}x{d[1]}-p{p[0]}x{p[1]}-o{o}-{k.get('layout', 'shift')}" for d, p, o, k in GRIDS]


def _canvas_sum(grid: PatchGrid, values: torch.Tensor) -> torch.Tensor:
    """Brute-force Σ over patches of per-patch values ``(P, ph, pw)``, cropped to the domain."""
    top, bottom, left, right = grid.padding
    height, width = grid.domain_shape
    canvas = torch.zeros(height + top + bottom, width + left + right, dtype=values.dtype)
    ph, pw = grid.patch_shape
    for (y, x), v in zip(grid.offsets.tolist(), values, strict=True):
        canvas[y : y + ph, x : x + pw] += v
    return canvas[top : top + height, left : left + width]


@pytest.mark.parametrize("blend", ["uniform", "taper"])
@pytest.mark.parametrize(("domain", "patch", "overlap", "kwargs"), GRIDS, ids=IDS)
def test_fold_unfold_is_identity(domain, patch, overlap, kwargs, blend) -> None:
    grid = PatchGrid(domain, patch, overlap, blend=blend, **kwargs)
    x = torch.randn(3, 2, *domain, generator=torch.Generator().manual_seed(0))
    patches = grid.unfold(x)
    assert patches.shape == (3 * grid.num_patches, 2, *patch)
    assert torch.equal(grid.fold(patches), x)
    x64 = x.double()
    assert torch.equal(grid.fold(grid.unfold(x64)), x64)


@pytest.mark.parametrize(("domain", "patch", "overlap", "kwargs"), GRIDS, ids=IDS)
def test_every_pixel_covered_and_edges_reached(domain, patch, overlap, kwargs) -> None:
    grid = PatchGrid(domain, patch, overlap, **kwargs)
    assert grid.coverage().shape == domain
    assert int(grid.coverage().min()) >= 1
    assert grid.num_patches == grid.grid_shape[0] * grid.grid_shape[1] == len(grid.offsets)
    if grid.layout == "shift":
        assert grid.offsets.min() == 0
        assert int(grid.offsets[:, 0].max()) == domain[0] - patch[0]
        assert int(grid.offsets[:, 1].max()) == domain[1] - patch[1]
        # Interior neighbours overlap by exactly `overlap`; only the last one may overlap more.
        ys = sorted(set(grid.offsets[:, 0].tolist()))
        steps = [b - a for a, b in itertools.pairwise(ys)]
        assert all(s == patch[0] - overlap for s in steps[:-1])
        assert all(0 < s <= patch[0] - overlap for s in steps)


@pytest.mark.parametrize("blend", ["uniform", "taper"])
@pytest.mark.parametrize(("domain", "patch", "overlap", "kwargs"), GRIDS, ids=IDS)
def test_weights_sum_to_one(domain, patch, overlap, kwargs, blend) -> None:
    grid = PatchGrid(domain, patch, overlap, blend=blend, **kwargs)
    assert grid.weights.shape == (grid.num_patches, *patch)
    assert bool((grid.weights > 0).all())
    total = _canvas_sum(grid, grid.weights)
    torch.testing.assert_close(total, torch.ones(domain, dtype=torch.float64), atol=1e-12, rtol=0)


def test_uniform_fold_is_plain_average() -> None:
    grid = PatchGrid((21, 26), (8, 10), 3)
    patches = torch.randn(2 * grid.num_patches, 1, 8, 10, dtype=torch.float64)
    per_member = patches.reshape(2, grid.num_patches, 8, 10)
    for b in range(2):
        expected = _canvas_sum(grid, per_member[b]) / grid.coverage()
        torch.testing.assert_close(grid.fold(patches)[b, 0], expected, atol=1e-12, rtol=0)


def test_taper_fold_is_weighted_average_and_smooth() -> None:
    grid = PatchGrid((21, 26), (8, 10), 3, blend="taper")
    patches = torch.randn(grid.num_patches, 1, 8, 10, dtype=torch.float64)
    expected = _canvas_sum(grid, grid.weights * patches[:, 0])
    torch.testing.assert_close(grid.fold(patches)[0, 0], expected, atol=1e-12, rtol=0)
    # Away from the overlaps a patch has full weight; inside them strictly less, ramping.
    w = grid.weights[0]  # top-left patch: overlaps on its right and bottom only
    assert torch.equal(w[:5, :7], torch.ones(5, 7, dtype=torch.float64))
    row = w[0, 7:]
    assert bool((row < 1).all()) and bool((row[1:] < row[:-1]).all())


def test_unfolded_condition_appends_resized_global_inputs() -> None:
    grid = PatchGrid((24, 30), (12, 12), 2)
    x = torch.randn(2, 3, 24, 30)
    mean = torch.randn(2, 2, 24, 30)
    out = unfold_condition(build_condition(x, mean), grid).channels()
    assert out.shape == (2 * grid.num_patches, 2 + 3 + 3, 12, 12)
    resized = F.interpolate(x, size=(12, 12), mode="bilinear")
    for b in range(2):
        rows = out[b * grid.num_patches : (b + 1) * grid.num_patches]
        assert torch.equal(rows[:, :2], extract_patches(mean[b], grid.offsets, (12, 12)))
        assert torch.equal(rows[:, 2:5], extract_patches(x[b], grid.offsets, (12, 12)))
        assert torch.equal(rows[:, 5:], resized[b].expand(grid.num_patches, -1, -1, -1))
    plain = unfold_condition(build_condition(x), grid, global_inputs=False).channels()
    assert torch.equal(plain, grid.unfold(x))


def test_weights_cached_per_device_and_dtype() -> None:
    grid = PatchGrid((20, 20), (8, 8), 2, blend="taper")
    x = torch.randn(1, 1, 20, 20)
    grid.fold(grid.unfold(x))
    grid.fold(grid.unfold(x.double()))
    assert set(grid._cache) == {(x.device, torch.float32), (x.device, torch.float64)}


def test_extract_patches_matches_slicing() -> None:
    x = torch.randn(3, 2, 13, 17)
    offsets = torch.tensor([[0, 0], [5, 11], [9, 3], [0, 11]])
    out = extract_patches(x, offsets, (4, 6))
    assert out.shape == (3 * 4, 2, 4, 6)
    for b in range(3):
        for i, (y, xx) in enumerate(offsets.tolist()):
            assert torch.equal(out[b * 4 + i], x[b, :, y : y + 4, xx : xx + 6])
    single = extract_patches(x[1], offsets, (4, 6))
    assert torch.equal(single, out[4:8])


def test_extract_patches_per_member_matches_slicing() -> None:
    x = torch.randn(3, 2, 13, 17)
    offsets = torch.tensor(
        [[[0, 0], [5, 11], [9, 3]], [[9, 11], [0, 0], [4, 4]], [[1, 2], [1, 2], [7, 0]]]
    )
    out = extract_patches(x, offsets, (4, 6))
    assert out.shape == (3 * 3, 2, 4, 6)
    for b in range(3):
        for j, (y, xx) in enumerate(offsets[b].tolist()):
            assert torch.equal(out[b * 3 + j], x[b, :, y : y + 4, xx : xx + 6])
    channels_last = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(extract_patches(channels_last, offsets, (4, 6)), out)


def test_extract_patches_shared_corners_equal_per_member_copies() -> None:
    x = torch.randn(4, 3, 20, 24, dtype=torch.float64)
    offsets = random_patch_offsets((20, 24), (8, 10), 5, torch.Generator().manual_seed(2))
    shared = extract_patches(x, offsets, (8, 10))
    assert torch.equal(extract_patches(x, offsets.expand(4, -1, -1), (8, 10)), shared)


def test_extract_patches_per_member_gradient_is_a_scatter_add() -> None:
    x = torch.randn(2, 1, 6, 7, requires_grad=True)
    offsets = torch.tensor([[[0, 0], [1, 1]], [[2, 3], [2, 3]]])
    extract_patches(x, offsets, (3, 3)).sum().backward()
    expected = torch.zeros(2, 1, 6, 7)
    for b in range(2):
        for y, xx in offsets[b].tolist():
            expected[b, :, y : y + 3, xx : xx + 3] += 1
    assert x.grad is not None and torch.equal(x.grad, expected)


def test_random_patch_offsets_in_range_and_reproducible() -> None:
    offsets = random_patch_offsets((10, 7), (8, 4), 400, torch.Generator().manual_seed(3))
    assert offsets.shape == (400, 2) and offsets.dtype == torch.long
    assert set(offsets[:, 0].tolist()) == {0, 1, 2}
    assert set(offsets[:, 1].tolist()) == {0, 1, 2, 3}
    again = random_patch_offsets((10, 7), (8, 4), 400, torch.Generator().manual_seed(3))
    assert torch.equal(offsets, again)
    other = random_patch_offsets((10, 7), (8, 4), 400, torch.Generator().manual_seed(4))
    assert not torch.equal(offsets, other)
    patches = extract_patches(torch.randn(2, 1, 10, 7), offsets, (8, 4))
    assert patches.shape == (800, 1, 8, 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"domain_shape": (10, 10), "patch_shape": (12, 8)}, r"patch_shape \(12, 8\) is larger"),
        ({"domain_shape": (10, 10), "patch_shape": (8, 8), "overlap": 8}, "overlap = 8 must be"),
        ({"domain_shape": (10, 10), "patch_shape": (8, 8), "overlap": -1}, "non-negative int"),
        ({"domain_shape": (10, 0), "patch_shape": (8, 8)}, "domain_shape must be positive"),
        ({"domain_shape": (10, 10), "patch_shape": (0, 8)}, "patch_shape must be positive"),
        ({"domain_shape": (10, 10, 3), "patch_shape": (8, 8)}, r"pair of ints \(y, x\)"),
        (
            {"domain_shape": (10, 10), "patch_shape": (8, 8), "boundary": 1},
            "needs layout='reflect'",
        ),
        ({"domain_shape": (10, 10), "patch_shape": (8, 8), "layout": "wrap"}, "layout must be"),
        ({"domain_shape": (10, 10), "patch_shape": (8, 8), "blend": "gauss"}, "blend must be"),
        (
            {
                "domain_shape": (10, 10),
                "patch_shape": (8, 8),
                "layout": "reflect",
                "boundary": 2,
                "overlap": 4,
            },
            r"overlap \+ 2 \* boundary = 8",
        ),
    ],
)
def test_patch_grid_rejects_bad_input(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        PatchGrid(**kwargs)


def test_bad_tensors_rejected() -> None:
    grid = PatchGrid((20, 20), (8, 8), 2)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, C, 20, 20\)"):
        grid.unfold(torch.zeros(1, 1, 20, 21))
    with pytest.raises(ValueError, match="not a multiple of the 9 patches"):
        grid.fold(torch.zeros(10, 1, 8, 8))
    with pytest.raises(ValueError, match=r"patches must have shape \(batch \* 9, C, 8, 8\)"):
        grid.fold(torch.zeros(9, 1, 8, 7))
    with pytest.raises(ValueError, match="outside the"):
        extract_patches(torch.zeros(1, 1, 10, 10), torch.tensor([[3, 4]]), (8, 4))
    with pytest.raises(ValueError, match="integer tensor of shape"):
        extract_patches(torch.zeros(1, 1, 10, 10), torch.tensor([[0.0, 1.0]]), (4, 4))
    with pytest.raises(ValueError, match=r"\(n, 2\) or \(batch, k, 2\)"):
        extract_patches(
            torch.zeros(1, 1, 10, 10), torch.zeros(1, 1, 1, 2, dtype=torch.long), (4, 4)
        )
    with pytest.raises(ValueError, match=r"need x of shape \(2, C, H, W\), got \(3, 1, 10, 10\)"):
        extract_patches(torch.zeros(3, 1, 10, 10), torch.zeros(2, 1, 2, dtype=torch.long), (4, 4))
    with pytest.raises(ValueError, match=r"need x of shape \(1, C, H, W\)"):
        extract_patches(torch.zeros(1, 10, 10), torch.zeros(1, 1, 2, dtype=torch.long), (4, 4))
    with pytest.raises(ValueError, match="outside the"):
        extract_patches(torch.zeros(2, 1, 10, 10), torch.tensor([[[0, 0]], [[0, 7]]]), (4, 4))
    with pytest.raises(ValueError, match=r"patch_shape \(8, 11\) is larger"):
        random_patch_offsets((10, 10), (8, 11), 3)
    with pytest.raises(ValueError, match="n must be a positive int"):
        random_patch_offsets((10, 10), (8, 8), 0)

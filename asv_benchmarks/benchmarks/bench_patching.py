"""Patch geometry benchmarks: grid unfold/fold for multi-diffusion, random training patches.

Sizes: a CorrDiff-Mini-scale domain and, in the second parameter set, the CONUS layout of
the optimisation write-up scaled by 1/7 (a 3 x 5 grid of patches). Fold weights are cached
by :class:`~xcorrdiff.diffusion.PatchGrid` at construction; ``time_fold_rebuilding_grid``
measures what recomputing them on every call would cost.
"""

from __future__ import annotations

import torch

from xcorrdiff.diffusion import PatchGrid, extract_patches, random_patch_offsets

CHANNELS = 4


class GridUnfoldFold:
    """``PatchGrid.unfold`` / ``fold`` with overlap 4 and boundary 2 (PhysicsNeMo's layout)."""

    params = (((128, 128), (160, 256), (448, 448)), (1, 4))
    param_names = ("domain", "members")
    timeout = 120

    def setup(self, domain: tuple[int, int], members: int) -> None:
        torch.set_num_threads(1)
        self.grid = PatchGrid(domain, (64, 64), 4, boundary=2, layout="reflect")
        self.x = torch.randn(members, CHANNELS, *domain, dtype=torch.float64)
        self.patches = self.grid.unfold(self.x)

    def time_unfold(self, domain: tuple[int, int], members: int) -> None:
        self.grid.unfold(self.x)

    def time_fold(self, domain: tuple[int, int], members: int) -> None:
        self.grid.fold(self.patches)

    def time_fold_rebuilding_grid(self, domain: tuple[int, int], members: int) -> None:
        PatchGrid(domain, (64, 64), 4, boundary=2, layout="reflect").fold(self.patches)

    def peakmem_fold(self, domain: tuple[int, int], members: int) -> None:
        self.grid.fold(self.patches)


class GridConstruction:
    """Building a grid, blending weights included (done once per domain)."""

    params = (("uniform", "taper"),)
    param_names = ("blend",)

    def time_patch_grid(self, blend: str) -> None:
        PatchGrid((1056, 1792), (448, 448), 4, blend=blend)  # type: ignore[arg-type]


class TrainingPatches:
    """Random patch corners and extraction of k patches from a whole-domain batch."""

    params = ((4, 16),)
    param_names = ("k",)

    def setup(self, k: int) -> None:
        torch.set_num_threads(1)
        self.x = torch.randn(1, 32, 160, 256)
        self.gen = torch.Generator().manual_seed(0)

    def time_extract_patches(self, k: int) -> None:
        offsets = random_patch_offsets((160, 256), (64, 64), k, generator=self.gen)
        extract_patches(self.x, offsets, (64, 64))

"""Patch geometry for multi-diffusion: grids that cover the whole domain, unfold and fold.

Two kinds of patches are used by CorrDiff (Mardani et al. 2025):

* **Random training patches** — :func:`random_patch_offsets` draws top-left corners and
  :func:`extract_patches` cuts them out of a batch: the same corners for every member
  (PhysicsNeMo), or each member its own.
* **A fixed grid at generation** — :class:`PatchGrid` tiles an ``(H, W)`` domain with
  ``(ph, pw)`` patches that overlap by ``overlap`` pixels and cover every pixel, edges
  included. :meth:`PatchGrid.unfold` cuts a batch into patches and :meth:`PatchGrid.fold`
  blends them back with per-pixel weights computed once, at construction.

Batch layout is member-major everywhere: patch ``p`` of member ``b`` sits at row
``b * P + p`` of a ``(batch * P, C, ph, pw)`` tensor, and the ``P`` patches of a member are
in row-major grid order (``y`` outer, ``x`` inner). PhysicsNeMo's ``GridPatching2D`` uses a
patch-major, column-major order instead; the numbers are the same, only the rows differ.

References
----------
Mardani, M., et al. (2025). Residual corrective diffusion modeling for km-scale atmospheric
downscaling. Communications Earth & Environment, 6, 124.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["PatchGrid", "extract_patches", "random_patch_offsets"]

Layout = Literal["shift", "reflect"]
Blend = Literal["uniform", "taper"]


def _pair(name: str, value: Sequence[int]) -> tuple[int, int]:
    """Validate a ``(y, x)`` pair of positive integers."""
    try:
        pair = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair of ints (y, x), got {value!r}") from None
    if len(pair) != 2 or any(int(v) != v for v in value):
        raise ValueError(f"{name} must be a pair of ints (y, x), got {value!r}")
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair[0], pair[1]


def _check_fits(domain_shape: tuple[int, int], patch_shape: tuple[int, int]) -> None:
    if patch_shape[0] > domain_shape[0] or patch_shape[1] > domain_shape[1]:
        raise ValueError(
            f"patch_shape {patch_shape} is larger than the domain {domain_shape}; "
            "use a smaller patch or pad the domain"
        )


def random_patch_offsets(
    domain_shape: Sequence[int],
    patch_shape: Sequence[int],
    n: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw top-left corners of ``n`` random patches that lie inside the domain.

    The draws are the same as PhysicsNeMo's ``RandomPatching2D.reset_patch_indices``:
    all ``y`` first, then all ``x``, each uniform over the valid range.

    Parameters
    ----------
    domain_shape : (int, int)
        Domain size ``(H, W)`` in pixels.
    patch_shape : (int, int)
        Patch size ``(ph, pw)`` in pixels, at most the domain size.
    n : int
        Number of patches, at least 1.
    generator : torch.Generator, optional
        Random stream; the offsets are drawn on its device. ``None`` uses torch's global
        CPU stream.

    Returns
    -------
    torch.Tensor
        Integer tensor ``(n, 2)`` (int64) of top-left ``(y, x)`` corners, with
        ``0 <= y <= H - ph`` and ``0 <= x <= W - pw``.

    Raises
    ------
    ValueError
        If a shape is not a pair of positive ints, the patch is larger than the domain, or
        ``n < 1``.
    """
    domain = _pair("domain_shape", domain_shape)
    patch = _pair("patch_shape", patch_shape)
    _check_fits(domain, patch)
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive int (number of patches), got {n!r}")
    device = generator.device if generator is not None else None
    ys = torch.randint(
        0, domain[0] - patch[0] + 1, (n,), dtype=torch.long, device=device, generator=generator
    )
    xs = torch.randint(
        0, domain[1] - patch[1] + 1, (n,), dtype=torch.long, device=device, generator=generator
    )
    return torch.stack([ys, xs], dim=1)


def extract_patches(
    x: torch.Tensor, offsets: torch.Tensor, patch_shape: Sequence[int]
) -> torch.Tensor:
    """Cut patches out of a batch: the same corners for every member, or each its own.

    Parameters
    ----------
    x : torch.Tensor
        Fields ``(batch, C, H, W)``, or a single field ``(C, H, W)`` (shared corners only).
    offsets : torch.Tensor
        Integer top-left ``(y, x)`` corners: ``(n, 2)`` cut from every member (e.g. from
        :func:`random_patch_offsets`), or ``(batch, k, 2)``, member ``b``'s own ``k``
        corners (e.g. a :class:`~xcorrdiff.data.batching.PairedBatchStream` batch's
        ``"offsets"``).
    patch_shape : (int, int)
        Patch size ``(ph, pw)``.

    Returns
    -------
    torch.Tensor
        ``(batch * n, C, ph, pw)`` in member-major order (row ``b * n + i`` is patch ``i``
        of member ``b``; ``n = k`` for per-member corners), or ``(n, C, ph, pw)`` for a
        3-D ``x``.

    Raises
    ------
    ValueError
        If ``x`` is not 3-D or 4-D, ``offsets`` is not an integer ``(n, 2)`` or
        ``(batch, k, 2)`` tensor with the batch size of ``x``, or a patch reaches outside
        the domain.

    Examples
    --------
    >>> x = torch.arange(2 * 5 * 6.0).reshape(2, 1, 5, 6)
    >>> offsets = torch.tensor([[[0, 0], [3, 4]], [[1, 2], [0, 4]]])  # (batch, k, 2)
    >>> patches = extract_patches(x, offsets, (2, 2))
    >>> patches.shape
    torch.Size([4, 1, 2, 2])
    >>> torch.equal(patches[3], x[1, :, 0:2, 4:6])
    True
    """
    if x.ndim not in (3, 4):
        raise ValueError(
            f"x must have shape (batch, C, H, W) or (C, H, W), got shape {tuple(x.shape)}"
        )
    ph, pw = _pair("patch_shape", patch_shape)
    if offsets.ndim not in (2, 3) or offsets.shape[-1] != 2 or offsets.is_floating_point():
        raise ValueError(
            f"offsets must be an integer tensor of shape (n, 2) or (batch, k, 2) with (y, x) "
            f"corners, got dtype {offsets.dtype} and shape {tuple(offsets.shape)}"
        )
    if offsets.ndim == 3 and (x.ndim != 4 or offsets.shape[0] != x.shape[0]):
        raise ValueError(
            f"per-member offsets of shape {tuple(offsets.shape)} need x of shape "
            f"({offsets.shape[0]}, C, H, W), got {tuple(x.shape)}; pass (n, 2) offsets to "
            "cut the same patches from every member"
        )
    height, width = x.shape[-2:]
    offsets = offsets.to(device=x.device, dtype=torch.long)
    if offsets.numel() and (
        offsets.min() < 0
        or int(offsets[..., 0].max()) + ph > height
        or int(offsets[..., 1].max()) + pw > width
    ):
        raise ValueError(
            f"offsets put a {(ph, pw)} patch outside the {(height, width)} domain: "
            f"y must lie in [0, {height - ph}] and x in [0, {width - pw}]"
        )
    if offsets.ndim == 3:
        return _gather_per_member(x, offsets, (ph, pw))
    return _gather(x, offsets, (ph, pw))


def _gather(x: torch.Tensor, offsets: torch.Tensor, patch_shape: tuple[int, int]) -> torch.Tensor:
    """:func:`extract_patches` without validation (``offsets`` already on ``x.device``)."""
    ph, pw = patch_shape
    rows = offsets[:, :1] + torch.arange(ph, device=x.device)  # (n, ph)
    cols = offsets[:, 1:] + torch.arange(pw, device=x.device)  # (n, pw)
    patches = x[..., rows[:, :, None], cols[:, None, :]]  # (..., C, n, ph, pw)
    if x.ndim == 3:
        return patches.movedim(1, 0)
    batch, channels = x.shape[:2]
    return patches.movedim(2, 1).reshape(batch * offsets.shape[0], channels, ph, pw)


def _gather_per_member(
    x: torch.Tensor, offsets: torch.Tensor, patch_shape: tuple[int, int]
) -> torch.Tensor:
    """Per-member :func:`extract_patches`: ``x`` ``(B, C, H, W)``, ``offsets`` ``(B, k, 2)``.

    One ``torch.gather`` over the flattened domain (its backward is a scatter-add of the
    patch size, unlike indexing a strided window view).
    """
    ph, pw = patch_shape
    batch, channels, height, width = x.shape
    num = offsets.shape[1]
    rows = offsets[..., :1] + torch.arange(ph, device=x.device)  # (B, k, ph)
    cols = offsets[..., 1:] + torch.arange(pw, device=x.device)  # (B, k, pw)
    flat = (rows[..., :, None] * width + cols[..., None, :]).reshape(batch, 1, -1)
    patches = torch.gather(
        x.reshape(batch, channels, height * width), 2, flat.expand(-1, channels, -1)
    )  # (B, C, k * ph * pw)
    return patches.reshape(batch, channels, num, ph, pw).movedim(2, 1).reshape(-1, channels, ph, pw)


def _starts_shift(size: int, patch: int, overlap: int) -> list[int]:
    """Starts ``0, s, 2s, ...`` with stride ``s = patch - overlap``, the last one at the edge."""
    stride = patch - overlap
    num = 1 if size == patch else math.ceil((size - patch) / stride) + 1
    return [min(i * stride, size - patch) for i in range(num)]


def _starts_reflect(size: int, patch: int, overlap: int, boundary: int) -> tuple[list[int], int]:
    """PhysicsNeMo ``GridPatching2D`` starts (padded frame) and the padding after the domain."""
    stride = patch - overlap - boundary
    num = math.ceil(size / stride)
    starts = [i * stride for i in range(num)]
    pad_after = starts[-1] + patch - boundary - size
    return starts, pad_after


def _taper_windows(starts: list[int], patch: int) -> torch.Tensor:
    """Raised-cosine ramps over the overlap with each neighbour, ``(len(starts), patch)``.

    Over an overlap of ``o`` pixels the ramps are ``sin²(π t / 2)`` with ``t = j / (o + 1)``,
    so the rising ramp of one patch and the falling ramp of its neighbour sum to one. Sides
    without a neighbour (the domain edges) keep weight one.
    """
    index = torch.arange(patch, dtype=torch.float64)
    windows = torch.ones(len(starts), patch, dtype=torch.float64)
    for k, start in enumerate(starts):
        if k > 0:
            left = min(max(starts[k - 1] + patch - start, 0), patch)
            t = ((index + 1) / (left + 1)).clamp(max=1.0)
            windows[k] *= torch.sin(0.5 * math.pi * t) ** 2
        if k < len(starts) - 1:
            right = min(max(start + patch - starts[k + 1], 0), patch)
            t = ((patch - index) / (right + 1)).clamp(max=1.0)
            windows[k] *= torch.sin(0.5 * math.pi * t) ** 2
    return windows


class PatchGrid:
    """A grid of overlapping patches that covers every pixel of an ``(H, W)`` domain.

    Parameters
    ----------
    domain_shape : (int, int)
        Domain size ``(H, W)`` in pixels; need not be divisible by anything.
    patch_shape : (int, int)
        Patch size ``(ph, pw)``; rectangular patches are fine.
    overlap : int, default 0
        Pixels shared by neighbouring patches, ``0 <= overlap < min(ph, pw)``.
    boundary : int, default 0
        PhysicsNeMo's ``boundary_pix``: extra reflect padding on every side of the domain
        (``layout="reflect"`` only). Neighbours then share ``overlap + boundary`` pixels.
    layout : {"shift", "reflect"}, default "shift"
        ``"shift"``: patches start every ``ph - overlap`` pixels and the last one is shifted
        back to end at the domain edge, so nothing is padded (the last overlap may be
        larger). ``"reflect"``: PhysicsNeMo's ``GridPatching2D`` layout — stride
        ``ph - overlap - boundary``, ``ceil(H / stride)`` patches, the domain reflect-padded
        by ``boundary`` before and as much as needed after.
    blend : {"uniform", "taper"}, default "uniform"
        How :meth:`fold` weighs overlapping patches. ``"uniform"``: the plain average
        (PhysicsNeMo). ``"taper"``: a separable raised-cosine ramp over each overlap,
        normalised so that the weights of every pixel sum to one.

    Attributes
    ----------
    offsets : torch.Tensor
        ``(P, 2)`` int64 top-left ``(y, x)`` of each patch in the padded frame (the domain
        frame for ``layout="shift"``), in row-major grid order.
    grid_shape : (int, int)
        Number of patches along ``y`` and ``x``; ``num_patches`` is their product.
    padding : (int, int, int, int)
        Reflect padding ``(top, bottom, left, right)`` applied by :meth:`unfold`.
    weights : torch.Tensor
        ``(P, ph, pw)`` float64 blending weights used by :meth:`fold`; at every domain pixel
        the weights of the patches that cover it sum to one.

    Raises
    ------
    ValueError
        If a size is not positive, the patch is larger than the domain, the overlap is
        negative, or ``overlap + 2 * boundary`` is not smaller than the patch.

    Examples
    --------
    >>> grid = PatchGrid((45, 70), (16, 24), overlap=4, blend="taper")
    >>> grid.grid_shape, grid.num_patches
    ((4, 4), 16)
    >>> x = torch.randn(2, 3, 45, 70)
    >>> patches = grid.unfold(x)
    >>> patches.shape
    torch.Size([32, 3, 16, 24])
    >>> bool((grid.fold(patches) - x).abs().max() < 1e-6)
    True
    """

    def __init__(
        self,
        domain_shape: Sequence[int],
        patch_shape: Sequence[int],
        overlap: int = 0,
        *,
        boundary: int = 0,
        layout: Layout = "shift",
        blend: Blend = "uniform",
    ) -> None:
        self.domain_shape = _pair("domain_shape", domain_shape)
        self.patch_shape = _pair("patch_shape", patch_shape)
        if layout not in ("shift", "reflect"):
            raise ValueError(f"layout must be 'shift' or 'reflect', got {layout!r}")
        if blend not in ("uniform", "taper"):
            raise ValueError(f"blend must be 'uniform' or 'taper', got {blend!r}")
        if int(overlap) != overlap or overlap < 0:
            raise ValueError(f"overlap must be a non-negative int (pixels), got {overlap!r}")
        if int(boundary) != boundary or boundary < 0:
            raise ValueError(f"boundary must be a non-negative int (pixels), got {boundary!r}")
        if boundary and layout != "reflect":
            raise ValueError(
                f"boundary={boundary} needs layout='reflect' (PhysicsNeMo's padded grid); "
                "the 'shift' layout never pads"
            )
        _check_fits(self.domain_shape, self.patch_shape)
        if 2 * boundary + overlap >= min(self.patch_shape):
            what = "overlap + 2 * boundary" if boundary else "overlap"
            raise ValueError(
                f"{what} = {overlap + 2 * boundary} must be smaller than the patch size "
                f"{min(self.patch_shape)} (patch_shape {self.patch_shape}); "
                "reduce the overlap or use larger patches"
            )
        self.overlap = int(overlap)
        self.boundary = int(boundary)
        self.layout: Layout = layout
        self.blend: Blend = blend

        starts: list[list[int]] = []
        pads: list[tuple[int, int]] = []
        for size, patch in zip(self.domain_shape, self.patch_shape, strict=True):
            if layout == "shift":
                starts.append(_starts_shift(size, patch, self.overlap))
                pads.append((0, 0))
            else:
                # Both pads are smaller than the patch, hence than the domain (reflect-safe).
                axis_starts, after = _starts_reflect(size, patch, self.overlap, self.boundary)
                starts.append(axis_starts)
                pads.append((self.boundary, after))
        self._starts_y, self._starts_x = starts
        self.grid_shape = (len(self._starts_y), len(self._starts_x))
        self.num_patches = self.grid_shape[0] * self.grid_shape[1]
        self.padding = (pads[0][0], pads[0][1], pads[1][0], pads[1][1])
        self._canvas_shape = (
            self.domain_shape[0] + pads[0][0] + pads[0][1],
            self.domain_shape[1] + pads[1][0] + pads[1][1],
        )
        self._corners = [(y, x) for y in self._starts_y for x in self._starts_x]
        self.offsets = torch.tensor(self._corners, dtype=torch.long).reshape(-1, 2)
        self.weights = self._blend_weights()
        self._cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._offsets_cache: dict[torch.device, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (
            f"PatchGrid(domain_shape={self.domain_shape}, patch_shape={self.patch_shape}, "
            f"overlap={self.overlap}, boundary={self.boundary}, layout={self.layout!r}, "
            f"blend={self.blend!r}, grid_shape={self.grid_shape})"
        )

    # -- weights ---------------------------------------------------------------------------

    def _blend_weights(self) -> torch.Tensor:
        """Normalised per-patch weights ``(P, ph, pw)`` in float64, computed once."""
        ph, pw = self.patch_shape
        if self.blend == "uniform":
            win_y = torch.ones(self.grid_shape[0], ph, dtype=torch.float64)
            win_x = torch.ones(self.grid_shape[1], pw, dtype=torch.float64)
        else:
            win_y = _taper_windows(self._starts_y, ph)
            win_x = _taper_windows(self._starts_x, pw)
        raw = (win_y[:, None, :, None] * win_x[None, :, None, :]).reshape(-1, ph, pw)
        total = torch.zeros(self._canvas_shape, dtype=torch.float64)
        for (y, x), w in zip(self._corners, raw, strict=True):
            total[y : y + ph, x : x + pw] += w
        return raw / extract_patches(total[None], self.offsets, self.patch_shape)[:, 0]

    def _weights_as(self, like: torch.Tensor) -> torch.Tensor:
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = self.weights.to(device=like.device, dtype=like.dtype)[:, None]
        return self._cache[key]

    def _offsets_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._offsets_cache:
            self._offsets_cache[device] = self.offsets.to(device)
        return self._offsets_cache[device]

    def coverage(self) -> torch.Tensor:
        """Number of patches covering each domain pixel, ``(H, W)`` int64 (at least 1)."""
        ph, pw = self.patch_shape
        count = torch.zeros(self._canvas_shape, dtype=torch.long)
        for y, x in self._corners:
            count[y : y + ph, x : x + pw] += 1
        return self._crop(count)

    def _crop(self, canvas: torch.Tensor) -> torch.Tensor:
        top, _, left, _ = self.padding
        height, width = self.domain_shape
        return canvas[..., top : top + height, left : left + width]

    # -- unfold / fold ---------------------------------------------------------------------

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """Cut a batch of fields into the grid's patches.

        Parameters
        ----------
        x : torch.Tensor
            Fields ``(batch, C, H, W)`` on the grid's domain.

        Returns
        -------
        torch.Tensor
            Patches ``(batch * P, C, ph, pw)``, member-major.

        Raises
        ------
        ValueError
            If ``x`` is not ``(batch, C, H, W)`` on this domain.
        """
        if x.ndim != 4 or tuple(x.shape[-2:]) != self.domain_shape:
            raise ValueError(
                f"x must have shape (batch, C, {self.domain_shape[0]}, {self.domain_shape[1]}) "
                f"for this grid, got {tuple(x.shape)}"
            )
        if any(self.padding):
            top, bottom, left, right = self.padding
            x = F.pad(x, (left, right, top, bottom), mode="reflect")
        return _gather(x, self._offsets_on(x.device), self.patch_shape)

    def fold(self, patches: torch.Tensor) -> torch.Tensor:
        """Blend patches back into whole fields with the grid's cached weights.

        The result is ``Σ_p w_p x_p`` (per pixel, over the patches covering it), computed as
        ``ref + Σ_p w_p (x_p - ref)`` with ``ref`` one of the covering patches, so that
        patches that agree fold back bit for bit: ``fold(unfold(x)) == x`` exactly for
        ``blend="uniform"`` and ``"taper"`` alike.

        Parameters
        ----------
        patches : torch.Tensor
            ``(batch * P, C, ph, pw)``, member-major as returned by :meth:`unfold`.

        Returns
        -------
        torch.Tensor
            Fields ``(batch, C, H, W)``.

        Raises
        ------
        ValueError
            If the patch size differs or the first dimension is not a multiple of ``P``.
        """
        ph, pw = self.patch_shape
        num = self.num_patches
        if patches.ndim != 4 or tuple(patches.shape[-2:]) != self.patch_shape:
            raise ValueError(
                f"patches must have shape (batch * {num}, C, {ph}, {pw}), "
                f"got {tuple(patches.shape)}"
            )
        if patches.shape[0] % num:
            raise ValueError(
                f"patches.shape[0] = {patches.shape[0]} is not a multiple of the "
                f"{num} patches of this grid"
            )
        batch, channels = patches.shape[0] // num, patches.shape[1]
        per_member = patches.reshape(batch, num, channels, ph, pw)
        ref = patches.new_zeros(batch, channels, *self._canvas_shape)
        for k, (y, x) in enumerate(self._corners):
            ref[..., y : y + ph, x : x + pw] = per_member[:, k]
        ref_patches = _gather(ref, self._offsets_on(ref.device), self.patch_shape)
        delta = (patches - ref_patches) * self._weights_as(patches).repeat(batch, 1, 1, 1)
        delta = delta.reshape(batch, num, channels, ph, pw)
        total = torch.zeros_like(ref)
        for k, (y, x) in enumerate(self._corners):
            total[..., y : y + ph, x : x + pw] += delta[:, k]
        return self._crop(ref + total)


def regression_grid(
    domain_shape: Sequence[int], patch_shape: Sequence[int] | None
) -> PatchGrid | None:
    """The patches a regression trained on patches computes μ on: a quarter-patch overlap,
    tapered blending; None for a whole-domain regression."""
    if patch_shape is None:
        return None
    return PatchGrid(domain_shape, patch_shape, min(patch_shape) // 4, blend="taper")

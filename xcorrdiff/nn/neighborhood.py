"""Two-dimensional neighborhood attention, as NATTEN's ``na2d`` computes it (pure torch).

Each query token at ``(i, j)`` of an ``H × W`` token grid attends to the ``k_h × k_w``
keys of the window whose first row is ``clamp(i - k_h // 2, 0, H - k_h)`` (and likewise
for columns): the window is centred where it can be and shifted inwards at the borders,
so every query sees exactly ``k_h · k_w`` keys (Hassani et al. 2023, "Neighborhood
Attention Transformer"; NATTEN's CPU kernel computes the start as
``max(i - n, 0) + (i + n >= H) · (H - i - n - 1)`` with ``n = k_h // 2``, the same
number). Odd kernel sizes and dilation 1 only, as the CorrDiff-family DiT uses.

The keys and values of each query's window are gathered row block by row block, so the
memory beyond the inputs stays under :data:`GATHER_BYTES`.
"""

from __future__ import annotations

import torch

__all__ = ["GATHER_BYTES", "neighborhood_attention_2d", "window_starts"]

#: Most bytes of gathered keys and values held at once (per call).
GATHER_BYTES = 256 << 20


def window_starts(
    length: int, kernel_size: int, device: torch.device | None = None
) -> torch.Tensor:
    """The first index of each position's window along an axis of ``length`` tokens."""
    index = torch.arange(length, device=device)
    return (index - kernel_size // 2).clamp(0, length - kernel_size)


def _kernel(kernel_size: int | tuple[int, int], height: int, width: int) -> tuple[int, int]:
    sizes = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(sizes) != 2 or any(not isinstance(s, int) or s < 1 or s % 2 == 0 for s in sizes):
        raise ValueError(f"kernel_size={kernel_size!r} is invalid; expected odd positive sizes")
    if sizes[0] > height or sizes[1] > width:
        raise ValueError(
            f"kernel_size={kernel_size!r} is larger than the {height} x {width} token grid"
        )
    return sizes[0], sizes[1]


def neighborhood_attention_2d(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int | tuple[int, int],
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """Neighborhood attention of ``q`` over ``k`` and ``v``, each ``(B, H, W, heads, D)``.

    Parameters
    ----------
    q, k, v : torch.Tensor
        Queries, keys and values on an ``H × W`` token grid (NATTEN's layout).
    kernel_size : int or (int, int)
        Window size (odd), at most the grid's size.
    scale : float, optional
        Factor on the logits; default ``D ** -0.5``.

    Returns
    -------
    torch.Tensor
        ``(B, H, W, heads, D)``.
    """
    batch, height, width, heads, dim = q.shape
    kh, kw = _kernel(kernel_size, height, width)
    scale = dim**-0.5 if scale is None else scale
    rows = window_starts(height, kh, q.device)[:, None] + torch.arange(kh, device=q.device)
    cols = window_starts(width, kw, q.device)[:, None] + torch.arange(kw, device=q.device)
    per_row = 2 * batch * width * kh * kw * heads * dim * k.element_size()
    step = max(1, GATHER_BYTES // max(per_row, 1))
    out = []
    for start in range(0, height, step):
        block = rows[start : start + step]  # (r, kh)
        keys = k[:, block][:, :, :, cols]  # (B, r, kh, W, kw, heads, D)
        values = v[:, block][:, :, :, cols]
        logits = torch.einsum("brwnd,brawcnd->brwnac", q[:, start : start + step] * scale, keys)
        logits = logits.flatten(-2)
        weights = logits.softmax(dim=-1).unflatten(-1, (kh, kw))
        out.append(torch.einsum("brwnac,brawcnd->brwnd", weights, values))
    return torch.cat(out, dim=1)

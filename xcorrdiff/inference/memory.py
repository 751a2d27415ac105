"""How much memory a downscaling call needs, estimated before anything is allocated.

Two things grow with a request: the activations of the networks for one batch of samples
(members × patch or domain pixels × channels), and the ensemble itself (members × times ×
outputs × grid, float32), held whole for numpy input and one time chunk at a time for dask
input. :func:`check_memory` compares both with the device's memory and, for a request that
cannot fit, raises an error with the estimate and the knob to turn; a default member batch
too large for the device is lowered instead (an explicit one is an error).

The activation estimate counts, per sample, the skip connections a SongUNet keeps during a
forward pass (every encoder output), four working tensors of its widest level, and the
attention matrices of its attention levels (pixels² each, as a CPU forward materialises
them), in the network's precision. It is a lower bound of the peak (allocator overheads and
temporaries add to it), so a request it refuses would not have fitted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xcorrdiff._resources import device_memory, format_bytes, physical_memory

__all__ = ["MemoryPlan", "activation_bytes", "check_memory"]

_FLOAT32 = 4


def activation_bytes(
    config: Mapping[str, Any], shape: tuple[int, int], bytes_per_value: int = 4
) -> int:
    """Activation bytes of one sample through a SongUNet of ``config`` at ``shape`` pixels.

    Parameters
    ----------
    config : mapping
        The network's constructor arguments (``model_channels``, ``channel_mult``,
        ``num_blocks``, ``attn_resolutions``, ``bottleneck_attention``, ``img_resolution``).
    shape : (int, int)
        Pixels processed (the patch, or the whole domain).
    bytes_per_value : int, default 4
        2 under bfloat16/float16 autocast.
    """
    if isinstance(config.get("dit"), Mapping):
        return _dit_activation_bytes(config["dit"], bytes_per_value)
    mult = list(config.get("channel_mult", (1, 2, 2, 2)))
    channels = int(config.get("model_channels", 128))
    blocks = int(config.get("num_blocks", 4))
    attention = set(config.get("attn_resolutions", ()))
    resolution = config.get("img_resolution", shape[0])
    net_rows = resolution if isinstance(resolution, int) else int(resolution[0])
    pixels = shape[0] * shape[1]
    skips = widest = attend = 0
    for level, m in enumerate(mult):
        level_pixels = pixels // 4**level
        width = channels * m * level_pixels
        skips += (blocks + 1) * width
        widest = max(widest, width)
        if (net_rows >> level) in attention:
            attend += 2 * blocks * level_pixels**2
    if config.get("bottleneck_attention", True):
        attend += (pixels // 4 ** (len(mult) - 1)) ** 2
    return bytes_per_value * (skips + 4 * widest + attend)


def _dit_activation_bytes(config: Mapping[str, Any], bytes_per_value: int) -> int:
    """Activation bytes of one sample through a DiT: per token, the residual stream, q, k,
    v, the MLP's hidden layer and working copies (about ``(8 + 2 mlp_ratio)`` widths), and
    the attention weights (every token pair, or the neighbourhood window)."""
    size, patch = config["input_size"], config.get("patch_size", 8)
    sides = (size, size) if isinstance(size, int) else tuple(size)
    patches = (patch, patch) if isinstance(patch, int) else tuple(patch)
    tokens = (sides[0] // patches[0]) * (sides[1] // patches[1])
    hidden, heads = int(config.get("hidden_size", 384)), int(config.get("num_heads", 8))
    width = (8 + 2 * float(config.get("mlp_ratio", 4.0))) * hidden
    kernel = int((config.get("attn_kwargs") or {}).get("attn_kernel", 3))
    neighborhood = str(config.get("attention_backend", "timm")).startswith("natten2d")
    window = kernel**2 if neighborhood else tokens  # natten2d and natten2d_rope: the window
    return int(bytes_per_value * tokens * (width + heads * window))


@dataclass(frozen=True)
class MemoryPlan:
    """The estimate behind a request: per-sample activations, output, and the batch used."""

    per_sample: int
    output: int
    member_batch_size: int
    available: int


def check_memory(
    *,
    diffusion_config: Mapping[str, Any],
    regression_config: Mapping[str, Any],
    sample_shape: tuple[int, int],
    grid_shape: tuple[int, int],
    n_outputs: int,
    n_ensemble: int,
    times_held: int,
    member_batch_size: int,
    explicit_batch: bool,
    device: Any,
    dtype: str,
    eager: bool,
) -> MemoryPlan:
    """Check that a request fits ``device``; returns the plan (with a possibly lowered batch).

    Parameters
    ----------
    diffusion_config, regression_config : mapping
        The networks' constructor arguments.
    sample_shape : (int, int)
        Pixels the sampler processes at once (patch or domain).
    grid_shape : (int, int)
        The HR grid.
    n_outputs, n_ensemble : int
        Output variables and members.
    times_held : int
        Times whose whole ensemble is in memory at once: all of them for numpy input
        (``eager``), one time chunk for dask input.
    member_batch_size : int
        Samples per network batch.
    explicit_batch : bool
        Whether the caller chose ``member_batch_size`` (an error if too large) or it is the
        default (lowered to fit).
    device : torch.device or str
        Where the networks run.
    dtype : str
        ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    eager : bool
        Numpy input: the whole ensemble is returned in memory.

    Raises
    ------
    MemoryError
        With the estimate, the memory available and the argument to change.
    """
    available = device_memory(device)
    width = _FLOAT32 if dtype == "float32" else 2
    per_sample = max(
        activation_bytes(diffusion_config, sample_shape, width),
        activation_bytes(regression_config, grid_shape, width) if regression_config else 0,
    )
    if per_sample > available:
        raise MemoryError(
            f"one sample needs about {format_bytes(per_sample)} of activations on {device}, "
            f"which has {format_bytes(available)}; sample patch by patch (patch_shape=..., "
            "e.g. (256, 256)) or use dtype='bfloat16' on a GPU"
        )
    fits = max(1, available // per_sample)
    if member_batch_size > fits:
        if explicit_batch:
            raise MemoryError(
                f"member_batch_size={member_batch_size} needs about "
                f"{format_bytes(member_batch_size * per_sample)} of activations on {device}, "
                f"which has {format_bytes(available)}; use member_batch_size <= {fits}"
            )
        member_batch_size = int(fits)
    output = 3 * _FLOAT32 * n_ensemble * times_held * n_outputs * math.prod(grid_shape)
    host = physical_memory()
    if output > host:
        knob = (
            "pass dask-backed input (lr.chunk(time=1)) to compute it lazily, or write it with "
            "downscale_to_zarr"
            if eager
            else "use fewer members or a smaller time chunk"
        )
        held = "the whole ensemble" if eager else "one time chunk of the ensemble"
        raise MemoryError(
            f"{held} ({n_ensemble} members x {times_held} times x {n_outputs} variables x "
            f"{grid_shape[0]}x{grid_shape[1]}, float32, with working copies) needs about "
            f"{format_bytes(output)}, more than the {format_bytes(host)} of this machine; "
            f"{knob}"
        )
    return MemoryPlan(per_sample, output, member_batch_size, available)

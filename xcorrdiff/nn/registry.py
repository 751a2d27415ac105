"""The network classes a saved model or a checkpoint may name, and building one safely.

A model's ``config.json`` (or a PhysicsNeMo ``args.json``) names a class from a fixed table
and gives its constructor arguments. :func:`build_network` checks those arguments against
bounds and the network's size against the machine's memory *before* anything is allocated
(a quick upper bound; where that is too large, the exact size measured on PyTorch's
``meta`` device), so a damaged or crafted configuration gets an error instead of a request
for hundreds of gigabytes. The built network's state dict must then match the weight
file's tensors exactly.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from xcorrdiff._checks import check_int
from xcorrdiff._resources import format_bytes, physical_memory

from .dit import DiT
from .flow_dit import FlowDiT
from .precond import EDMPrecondSR, EDMPrecondSuperResolution, UNet
from .song_unet import SongUNet
from .song_unet_pos import SongUNetPosEmbd
from .song_unet_pos_lt import SongUNetPosLtEmbd

__all__ = ["NETWORK_CLASSES", "build_network", "check_network_kwargs"]

NETWORK_CLASSES: dict[str, type[torch.nn.Module]] = {
    "UNet": UNet,
    "CorrDiffRegressionUNet": UNet,
    "EDMPrecondSuperResolution": EDMPrecondSuperResolution,
    "EDMPrecondSR": EDMPrecondSR,
    "SongUNet": SongUNet,
    "SongUNetPosEmbd": SongUNetPosEmbd,
    "SongUNetPosLtEmbd": SongUNetPosLtEmbd,
    "DiT": DiT,
    "FlowDiT": FlowDiT,
}

# Inclusive bounds of the integer constructor arguments (far beyond any CorrDiff network).
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "img_in_channels": (0, 4096),
    "img_out_channels": (1, 4096),
    "in_channels": (1, 8192),
    "out_channels": (1, 4096),
    "model_channels": (1, 4096),
    "num_blocks": (1, 64),
    "channel_mult_emb": (1, 64),
    "channel_mult_noise": (1, 64),
    "N_grid_channels": (0, 1024),
    "label_dim": (0, 65536),
    "augment_dim": (0, 1024),
    "lead_time_steps": (0, 4096),
    "lead_time_channels": (1, 1024),
    "checkpoint_level": (0, 64),
    "hidden_size": (1, 16384),
    "depth": (1, 256),
    "num_heads": (1, 256),
    "condition_dim": (0, 65536),
}
_MAX_SIDE = 1 << 15
_MAX_LIST = 16


def _fail(where: str, key: str, value: object, expected: str) -> ValueError:
    return ValueError(f"{where}: {key}={value!r} is invalid; expected {expected}")


def _check_int(where: str, key: str, value: object, low: int, high: int) -> None:
    check_int(f"{where}: {key}", value, minimum=low, maximum=high)


def _check_int_list(
    where: str, key: str, value: object, low: int, high: int, longest: int = _MAX_LIST
) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) > longest:
        raise _fail(where, key, value, f"a list of at most {longest} integers")
    for item in value:
        _check_int(where, f"{key} entry", item, low, high)


def _check_sides(where: str, key: str, value: object) -> None:
    """A size in pixels: one side, or two sides ``(y, x)``."""
    if isinstance(value, int) and not isinstance(value, bool):
        _check_int(where, key, value, 1, _MAX_SIDE)
        return
    _check_int_list(where, key, value, 1, _MAX_SIDE)
    if len(value) != 2:  # type: ignore[arg-type]
        raise _fail(where, key, value, "an integer or two sides (y, x)")


def check_network_kwargs(kwargs: Mapping[str, Any], *, where: str) -> None:
    """Check the integer and list constructor arguments against generous bounds.

    Raises
    ------
    ValueError
        An argument out of bounds or of the wrong type, named with ``where`` (the file).
    """
    for key, (low, high) in _INT_BOUNDS.items():
        if key in kwargs and kwargs[key] is not None:
            _check_int(where, key, kwargs[key], low, high)
    if isinstance(kwargs.get("dit"), Mapping):  # a FlowDiT
        _check_int(where, "out_channels", kwargs.get("out_channels"), 1, 4096)
        order = kwargs.get("condition_order", [])
        _check_int_list(where, "condition_order", order, 0, 8191, longest=8192)
        check_network_kwargs(kwargs["dit"], where=where)
        return
    if "input_size" in kwargs:  # a DiT
        _check_sides(where, "input_size", kwargs["input_size"])
        _check_sides(where, "patch_size", kwargs.get("patch_size", 8))
        return
    _check_sides(where, "img_resolution", kwargs.get("img_resolution"))
    _check_int_list(where, "channel_mult", kwargs.get("channel_mult", [1]), 1, 64)
    _check_int_list(where, "attn_resolutions", kwargs.get("attn_resolutions", []), 1, _MAX_SIDE)
    _check_int_list(where, "resample_filter", kwargs.get("resample_filter", [1, 1]), 0, 64)


def _grid_bytes(kwargs: Mapping[str, Any]) -> int:
    """Bytes of the positional grid a network computes at construction (numpy float64)."""
    if kwargs.get("gridtype", "none") == "none":
        return 0
    resolution = kwargs["img_resolution"]
    sides = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    return 12 * int(kwargs.get("N_grid_channels", 4)) * math.prod(sides)


def _meta_network(cls: type[torch.nn.Module], kwargs: Mapping[str, Any], where: str) -> Any:
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: the network arguments are not valid: {exc}") from exc


def _check_shapes(
    net: torch.nn.Module, shapes: Mapping[str, Sequence[int]], where: str, weights: str
) -> None:
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    found = {k: tuple(v) for k, v in shapes.items()}
    if expected == found:
        return
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = [
        f"{k}: {found[k]} vs {expected[k]}"
        for k in expected
        if k in found and found[k] != expected[k]
    ]
    parts = [
        f"{len(missing)} missing (e.g. {missing[:2]})" if missing else "",
        f"{len(extra)} unexpected (e.g. {extra[:2]})" if extra else "",
        f"{len(wrong)} of other shapes (e.g. {wrong[:2]})" if wrong else "",
    ]
    raise ValueError(
        f"{where}: the network it describes does not match the tensors of {weights}: "
        f"{'; '.join(p for p in parts if p)}; the files do not belong together (restore the "
        "model directory or save it again)"
    )


def build_network(
    name: object,
    kwargs: Mapping[str, Any],
    *,
    where: str,
    state_shapes: Mapping[str, Sequence[int]] | None = None,
    weights: str = "the weight file",
    max_bytes: int | None = None,
) -> torch.nn.Module:
    """Build a network from the class table after checking what it would allocate.

    Parameters
    ----------
    name : str
        A key of :data:`NETWORK_CLASSES`.
    kwargs : mapping
        Constructor arguments.
    where : str
        The file the description came from, named in every error.
    state_shapes : mapping of str to shape, optional
        The tensors of the weight file (names and shapes, read from its header): the
        network's state dict must have exactly these.
    weights : str
        Name of the weight file, for messages.
    max_bytes : int, optional
        Most bytes the network (weights and buffers) may take; default half this machine's
        memory.

    Returns
    -------
    torch.nn.Module
        The network, on the CPU, with freshly initialised weights.

    Raises
    ------
    ValueError
        An unknown class, arguments out of bounds, a network larger than ``max_bytes`` or
        one whose state dict does not match ``state_shapes``.
    """
    if name not in NETWORK_CLASSES:
        raise ValueError(
            f"{where}: the network class {name!r} is not supported; expected one of "
            f"{sorted(NETWORK_CLASSES)}"
        )
    check_network_kwargs(kwargs, where=where)
    budget = physical_memory() // 2 if max_bytes is None else max_bytes
    grid = _grid_bytes(kwargs)
    if grid > budget:
        raise ValueError(
            f"{where}: the network's positional grid alone would take {format_bytes(grid)}, "
            f"more than the {format_bytes(budget)} allowed; the file is damaged or was not "
            "written by xcorrdiff"
        )
    cls = NETWORK_CLASSES[str(name)]
    if grid + _upper_bound_bytes(kwargs) > budget:  # measure exactly (slow the first time)
        meta = _meta_network(cls, kwargs, where)
        size = grid + sum(
            t.numel() * t.element_size() for t in (*meta.parameters(), *meta.buffers())
        )
        if size > budget:
            raise ValueError(
                f"{where}: the {name} it describes would take {format_bytes(size)}, more than "
                f"the {format_bytes(budget)} allowed (half of this machine's memory); the file "
                "is damaged or describes a network too large for this machine"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            net = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: the network arguments are not valid: {exc}") from exc
    if state_shapes is not None:
        _check_shapes(net, state_shapes, where, weights)
    return net


def _upper_bound_bytes(kwargs: Mapping[str, Any]) -> int:
    """A generous upper bound of a network's float32 weights (within ~10x of the truth)."""
    if isinstance(kwargs.get("dit"), Mapping):
        return _upper_bound_bytes(kwargs["dit"])
    if "input_size" in kwargs:  # a DiT: 12 h² per block (attention, MLP at ratio 4, adaLN)
        hidden, depth = int(kwargs.get("hidden_size", 384)), int(kwargs.get("depth", 12))
        ratio = float(kwargs.get("mlp_ratio", 4.0))
        size = kwargs["input_size"]
        tokens = size * size if isinstance(size, int) else math.prod(size)
        per_block = (4 + 2 * ratio + 6) * hidden**2
        return int(8 * (depth * per_block + tokens * hidden + 64 * hidden**2))
    mult = kwargs.get("channel_mult", (1, 2, 2, 2))
    widest = int(kwargs.get("model_channels", 128)) * max(mult, default=1)
    channels = int(kwargs.get("img_in_channels", kwargs.get("in_channels", 1))) + int(
        kwargs.get("img_out_channels", kwargs.get("out_channels", 1))
    )
    embedding = int(kwargs.get("model_channels", 128)) * int(kwargs.get("channel_mult_emb", 4))
    blocks = len(mult) * (2 * int(kwargs.get("num_blocks", 4)) + 4)
    per_block = 9 * 2 * (2 * widest) ** 2 + 8 * widest**2 + 4 * embedding * widest
    return 4 * (blocks * per_block + 9 * channels * widest + 64 * widest**2 + 2 * embedding**2)

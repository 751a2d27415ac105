"""Group normalization as CorrDiff uses it: PhysicsNeMo's ``GroupNorm`` (parameter names and
group count rule) in torch, or NVIDIA apex's fused kernel when it imports on a CUDA machine.
"""

from __future__ import annotations

import importlib
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

__all__ = [
    "ACTIVATIONS",
    "GroupNorm",
    "apex_group_norm_available",
    "group_norm_groups",
    "make_group_norm",
]


def group_norm_groups(
    num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4
) -> int:
    """Number of groups PhysicsNeMo uses for ``num_channels`` channels.

    ``min(num_groups, ceil(num_channels / min_channels_per_group))``, which must divide
    ``num_channels``.

    Raises
    ------
    ValueError
        If the resulting number of groups does not divide ``num_channels``.
    """
    groups = min(num_groups, (num_channels + min_channels_per_group - 1) // min_channels_per_group)
    if num_channels % groups != 0:
        raise ValueError(
            f"num_channels {num_channels} is not divisible by the {groups} groups derived from "
            f"num_groups={num_groups} and min_channels_per_group={min_channels_per_group}; "
            "choose a channel count that is a multiple of both"
        )
    return groups


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "silu": F.silu,
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
}


class GroupNorm(torch.nn.Module):
    """Group normalisation with an optional fused activation (PhysicsNeMo ``GroupNorm``).

    Parameters
    ----------
    num_channels : int
        Channels of the input.
    num_groups : int, default 32
        Desired number of groups, reduced so each group has at least
        ``min_channels_per_group`` channels (see :func:`group_norm_groups`).
    min_channels_per_group : int, default 4
        Minimum channels per group.
    eps : float, default 1e-5
        Added to the variance.
    act : {"silu", "relu", "gelu", "tanh"} or None
        Activation applied after normalisation.

    Notes
    -----
    Input and output ``(batch, num_channels, y, x)``, any memory format (NCHW or
    channels-last). Training uses :func:`torch.nn.functional.group_norm` (biased
    variance). Evaluation reproduces PhysicsNeMo 2.2.2's inference path, which normalises
    by the *unbiased* group variance ``var_u = var_b · n / (n - 1)`` with ``n`` elements
    per group; that equals ``group_norm(x, eps·(n-1)/n) · sqrt((n-1)/n)`` (before the
    affine map), so the fused torch kernel still does the work.
    """

    def __init__(
        self,
        num_channels: int,
        num_groups: int = 32,
        min_channels_per_group: int = 4,
        eps: float = 1e-5,
        act: str | None = None,
    ) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.num_groups = group_norm_groups(num_channels, num_groups, min_channels_per_group)
        self.eps = eps
        self.act = act.lower() if act else None
        if self.act is not None and self.act not in ACTIVATIONS:
            raise ValueError(
                f"act {act!r} is not supported; expected one of {sorted(ACTIVATIONS)} or None"
            )
        self.weight = torch.nn.Parameter(torch.ones(num_channels))
        self.bias = torch.nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape ``(batch, num_channels, y, x)``."""
        weight, bias = self.weight.to(x.dtype), self.bias.to(x.dtype)
        if self.training:
            x = F.group_norm(x, self.num_groups, weight, bias, self.eps)
        else:
            n = x.numel() // (x.shape[0] * self.num_groups)
            ratio = (n - 1) / n if n > 1 else 1.0
            # The affine map (scale folded with sqrt(ratio)) inside the fused kernel: one pass.
            x = F.group_norm(x, self.num_groups, weight * math.sqrt(ratio), bias, self.eps * ratio)
        if self.act is not None:
            x = ACTIVATIONS[self.act](x)
        return x


def apex_group_norm_available() -> bool:
    """Whether NVIDIA apex's fused channels-last GroupNorm can be used (apex + CUDA)."""
    return _apex_group_norm_class() is not None


def _apex_group_norm_class() -> Any:
    if not torch.cuda.is_available():
        return None
    try:
        module = importlib.import_module("apex.contrib.group_norm")
    except ImportError:
        return None
    return getattr(module, "GroupNorm", None)


def make_group_norm(
    num_channels: int,
    eps: float = 1e-5,
    act: str | None = None,
    use_apex_gn: bool = False,
) -> torch.nn.Module:
    """Group norm layer: ours by default, NVIDIA apex's fused NHWC kernel on request.

    Parameters
    ----------
    num_channels : int
        Channels of the input.
    eps : float, default 1e-5
        Added to the variance.
    act : str or None
        Activation fused after normalisation.
    use_apex_gn : bool, default False
        Use ``apex.contrib.group_norm.GroupNorm`` (same ``weight``/``bias`` names; fused
        GroupNorm+activation for channels-last CUDA tensors, torch fallback otherwise).
        When apex or CUDA is missing, a warning is issued and :class:`GroupNorm` is used.

    Returns
    -------
    torch.nn.Module
        A module mapping ``(batch, num_channels, y, x)`` to the same shape.
    """
    if use_apex_gn:
        apex_cls = _apex_group_norm_class()
        if apex_cls is not None:
            groups = group_norm_groups(num_channels)
            module: torch.nn.Module = apex_cls(
                groups, num_channels, eps=eps, affine=True, act=act or ""
            )
            return module
        warnings.warn(
            "use_apex_gn=True but apex.contrib.group_norm (with CUDA) is not available; "
            "using torch group norm instead (install NVIDIA apex with --group_norm for the fused kernel)",
            RuntimeWarning,
            stacklevel=2,
        )
    return GroupNorm(num_channels=num_channels, eps=eps, act=act)
